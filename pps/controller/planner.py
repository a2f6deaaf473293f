"""Planning a job: which datums run, which are skipped, what output goes.

Pure logic over a datum source and the previous successful job's index: no
metadata, no threads. A datum is skipped when the last successful job ran one
with the same ID and hash (inputs and pipeline salt unchanged) and it
succeeded (reference 2.4); its outputs are kept. Nothing is skipped with
``reprocess_spec: every_job`` or ``s3_out``. Outputs of datums that are
gone, or run again, are deleted before the new outputs are merged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from pfs.api import PFS
from pfs.glob import compile_glob
from pfs.tree import DirEntry
from pps.datums import Datum, InputSource, Match, enumerate_datums
from pps.records import DatumIndexEntry, DatumInputRec, Plan, PlannedDatum
from pps.spec import PipelineSpec

#: Most datums per work unit (amortises metadata and object writes).
UNIT_TARGET = 64


def unit_size(datums: int, workers: int) -> int:
    """Datums per work unit: about four units per worker so work spreads and
    a slow unit doesn't hold a job (Pachyderm: datums / (workers x 4)), at
    most UNIT_TARGET so metadata and result objects stay amortised."""
    return max(1, min(UNIT_TARGET, -(-datums // (max(1, workers) * 4))))


class PFSSource:
    """``pps.datums.InputSource`` over PFS commits."""

    def __init__(self, pfs: PFS) -> None:
        self.pfs = pfs

    def glob(self, repo: str, commit: str, pattern: str) -> Iterator[Match]:
        tree = self.pfs.commit_tree(repo, commit)
        for e in tree.glob(compile_glob(pattern)):
            path = e.path.rstrip("/") or "/"
            yield Match(path=path, is_dir=isinstance(e, DirEntry), hash=e.hash, size=e.size)


def planned(d: Datum, salt: str) -> PlannedDatum:
    """The record of a datum as a job runs it (its hash includes the salt)."""
    return PlannedDatum(
        id=d.id, hash=d.hash(salt),
        inputs=tuple(DatumInputRec(name=i.name, repo=i.repo, branch=i.branch, commit=i.commit,
                                   path=i.path, is_dir=i.is_dir, hash=i.hash.hex(),
                                   join_on=i.join_on, group_by=i.group_by,
                                   empty_files=i.empty_files) for i in d.inputs))


def plan_job(spec: PipelineSpec, salt: str, commits: Mapping[str, str], source: InputSource,
             base: Mapping[str, DatumIndexEntry]) -> Plan:
    """The plan of a job over input commits ``commits`` (input name -> commit ID).

    Args:
        base: the index of the last successful job, by datum ID (empty for
            none, or when every datum must run).
    """
    # s3_out: as Pachyderm (noSkip), every datum runs again. Code writing
    # through S3 (Spark, Kubeflow...) tends to write job-level results that
    # are not a function of one datum's files, so reusing them would be wrong.
    no_skip = spec.reprocess_spec == "every_job" or spec.s3_out
    process: list[PlannedDatum] = []
    skipped: list[DatumIndexEntry] = []
    current: set[str] = set()
    for d in enumerate_datums(spec.input, commits, source):
        pd = planned(d, salt)
        if pd.id in current:
            continue
        current.add(pd.id)
        b = base.get(pd.id)
        if b is not None and not no_skip and b.hash == pd.hash and b.state == "success":
            # Keep the inputs of the run that produced the outputs (lineage).
            skipped.append(b if b.files else b._replace(files=pd.files()))
        else:
            process.append(pd)
    delete = [p for did, b in base.items() if did not in current for p in b.outputs]
    delete += [p for d in process if d.id in base for p in base[d.id].outputs]
    workers = spec.parallelism_spec.constant or 1
    return Plan(process=tuple(process), skipped=tuple(skipped),
                unit_size=unit_size(len(process), workers), delete=tuple(delete))
