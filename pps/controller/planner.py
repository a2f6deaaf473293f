"""Planning a job: which datums run, which are skipped, what output goes.

Pure logic over a datum source and the previous successful job's index: no
metadata, no threads. A datum is skipped when the last successful job ran one
with the same ID and hash (inputs and pipeline salt unchanged) and it
succeeded (reference 2.4); its outputs are kept. Nothing is skipped with
``reprocess_spec: every_job`` or ``s3_out``. Outputs of datums that are
gone, or run again, are deleted before the new outputs are merged.

Two ways to plan, with the same result:

* **From the difference** (:mod:`pps.controller.delta`) between the input
  commits of the last successful job's index and the current ones: only the
  datums a changed path touches are looked at, and looked up in the index.
  Work is proportional to the change, not to the input.
* **In full**: every datum is enumerated and looked up. For a first job, a
  changed spec or salt, ``every_job``, an index of an older format, or an
  input shape the difference does not cover.

Either way the plan lists only the datums to process: skipped ones stay in
the index, which the job updates (:mod:`pps.datum_index`) when it succeeds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import blake3

from pfs.api import PFS
from pfs.errors import NotFound
from pfs.glob import compile_glob
from pfs.tree import DirEntry
from pps.controller.delta import Delta, KeyTables, Row, ident_id, input_delta
from pps.datum_index import DatumIndex, Manifest
from pps.datums import Datum, InputSource, LeafMaker, Match, enumerate_datums
from pps.records import DatumIndexEntry, DatumInputRec, Plan, PlannedDatum
from pps.spec import Input, PFSInput, PipelineSpec

#: Most datums per work unit (amortises metadata and object writes).
UNIT_TARGET = 64


def unit_size(datums: int, workers: int) -> int:
    """Datums per work unit: about four units per worker so work spreads and
    a slow unit doesn't hold a job (Pachyderm: datums / (workers x 4)), at
    most UNIT_TARGET so metadata and result objects stay amortised."""
    return max(1, min(UNIT_TARGET, -(-datums // (max(1, workers) * 4))))


class PFSSource:
    """``pps.datums.InputSource`` (and the delta's ``DiffSource``) over PFS commits."""

    def __init__(self, pfs: PFS) -> None:
        self.pfs = pfs

    def glob(self, repo: str, commit: str, pattern: str) -> Iterator[Match]:
        tree = self.pfs.commit_tree(repo, commit)
        for e in tree.glob(compile_glob(pattern)):
            path = e.path.rstrip("/") or "/"
            yield Match(path=path, is_dir=isinstance(e, DirEntry), hash=e.hash, size=e.size)

    def diff(self, repo: str, old: str, new: str, pattern: str
             ) -> tuple[list[str], list[Match]]:
        glob = compile_glob(pattern)
        new_tree = self.pfs.commit_tree(repo, new)
        old_tree = self.pfs.commit_tree(repo, old)
        gone: list[str] = []
        now: list[Match] = []
        for n, o in new_tree.diff(old_tree):
            if o is not None:
                p = o.path.rstrip("/") or "/"
                if glob.match(p) is not None:
                    gone.append(p)
            if n is not None:
                p = n.path.rstrip("/") or "/"
                if glob.match(p) is not None:
                    now.append(Match(path=p, is_dir=isinstance(n, DirEntry), hash=n.hash,
                                     size=n.size))
        return gone, now

    def lookup(self, repo: str, commit: str, path: str) -> Match | None:
        e = self.pfs.commit_tree(repo, commit).lookup(path)
        if e is None:
            return None
        return Match(path=e.path.rstrip("/") or "/", is_dir=isinstance(e, DirEntry),
                     hash=e.hash, size=e.size)


def planned(d: Datum, salt: str) -> PlannedDatum:
    """The record of a datum as a job runs it (its hash includes the salt)."""
    return PlannedDatum(
        id=d.id, hash=d.hash(salt),
        inputs=tuple(DatumInputRec(name=i.name, repo=i.repo, branch=i.branch, commit=i.commit,
                                   path=i.path, is_dir=i.is_dir, hash=i.hash.hex(),
                                   join_on=i.join_on, group_by=i.group_by,
                                   empty_files=i.empty_files) for i in d.inputs))


def fingerprint(spec: PipelineSpec, salt: str) -> str:
    """What an index must have been planned with for a job to plan from the
    difference to it: the same input tree and salt."""
    return blake3.blake3(repr((spec.input, salt)).encode()).hexdigest()


@dataclass
class Base:
    """The last successful job's index, as a job plans against it."""

    job: str
    index: DatumIndex
    manifest: Manifest

    def get(self, ids: Iterable[str]) -> dict[str, DatumIndexEntry]:
        return self.index.lookup(self.manifest, ids)

    def ids(self) -> Iterator[str]:
        for e in self.index.entries(self.manifest):
            yield e.id


class _DictBase:
    """A base given as a dict (tests, and callers without an index)."""

    def __init__(self, entries: Mapping[str, DatumIndexEntry]) -> None:
        self.entries = entries
        self.job = ""
        self.manifest = Manifest(count=len(entries))

    def get(self, ids: Iterable[str]) -> dict[str, DatumIndexEntry]:
        return {i: self.entries[i] for i in ids if i in self.entries}

    def ids(self) -> Iterator[str]:
        return iter(self.entries)


def plan_job(spec: PipelineSpec, salt: str, commits: Mapping[str, str], source: InputSource,
             base: Base | Mapping[str, DatumIndexEntry] | None,
             tables: KeyTables | None = None) -> Plan:
    """The plan of a job over input commits ``commits`` (input name -> commit ID).

    Args:
        base: the index of the last successful job (None or empty for none).
        tables: the master's join/group key tables, kept between jobs.
    """
    # s3_out: as Pachyderm (noSkip), every datum runs again. Code writing
    # through S3 (Spark, Kubeflow...) tends to write job-level results that
    # are not a function of one datum's files, so reusing them would be wrong.
    no_skip = spec.reprocess_spec == "every_job" or spec.s3_out
    fp = fingerprint(spec, salt)
    b: Base | _DictBase | None
    if base is None:
        b = None
    elif isinstance(base, Base):
        b = base
    else:
        b = _DictBase(base) if base else None
    if (isinstance(b, Base) and not no_skip and b.manifest.fingerprint == fp
            and hasattr(source, "diff") and set(commits) <= set(b.manifest.commits)):
        try:
            delta = input_delta(spec.input, b.manifest.commits, commits,
                                source,  # type: ignore[arg-type]
                                tables if tables is not None else KeyTables())
        except NotFound:
            delta = None  # a base commit is gone (squashed, dropped): plan in full
        retry = _retry_rows(spec, commits, source, b) if delta is not None else None
        if delta is not None and retry is not None:
            delta.new.extend(retry)
            return _from_delta(spec, salt, commits, b, delta, fp)
    return _in_full(spec, salt, commits, source, b, no_skip, fp)


def _retry_rows(spec: PipelineSpec, commits: Mapping[str, str], source: InputSource,
                b: Base) -> list[Row] | None:
    """The current rows of the base index's datums that did not succeed
    (recovered): they run again though nothing changed. None when one cannot
    be rebuilt (plan in full)."""
    if not b.manifest.retry:
        return []
    leaves = {leaf.name: leaf for leaf in spec.input.leaves()}
    rows: list[Row] = []
    for e in b.get(b.manifest.retry).values():
        row = []
        for name, repo, _, path, _ in e.files:
            leaf = leaves.get(name)
            commit = commits.get(name)
            look = getattr(source, "lookup", None)
            if leaf is None or commit is None or look is None:
                return None
            m = look(repo, commit, path)
            if m is None:
                break  # gone: the delta has it
            inp = Input(pfs=leaf) if isinstance(leaf, PFSInput) else Input(cron=leaf)
            row.append(LeafMaker(inp, commit).make(m))
        else:
            if not row or Datum(tuple(row)).id != e.id:
                return None
            rows.append(tuple(row))
    return rows


def _finish(spec: PipelineSpec, process: list[PlannedDatum], delete: list[str],
            removed: list[str], total: int, b: Base | _DictBase | None,
            commits: Mapping[str, str], fp: str) -> Plan:
    workers = spec.parallelism_spec.constant or 1
    return Plan(process=tuple(process), skipped=(),
                unit_size=unit_size(len(process), workers), delete=tuple(delete),
                base=b.job if b is not None else "", removed=tuple(removed), total=total,
                commits=dict(commits), fingerprint=fp)


def _from_delta(spec: PipelineSpec, salt: str, commits: Mapping[str, str], b: Base,
                delta: Delta, fp: str) -> Plan:
    old_ids = {ident_id(i) for i in delta.old}
    new: dict[str, PlannedDatum] = {}
    for row in delta.new:
        pd = planned(Datum(row), salt)
        new.setdefault(pd.id, pd)
    known = b.get(old_ids | new.keys())
    process: list[PlannedDatum] = []
    delete: list[str] = []
    added = 0
    for did, pd in new.items():
        e = known.get(did)
        if e is None:
            added += 1
            process.append(pd)
        elif e.hash != pd.hash or e.state != "success":
            process.append(pd)
            delete.extend(e.outputs)
    removed = [i for i in old_ids if i not in new and i in known]
    for i in removed:
        delete.extend(known[i].outputs)
    total = b.manifest.count - len(removed) + added
    return _finish(spec, process, delete, removed, total, b, commits, fp)


def _in_full(spec: PipelineSpec, salt: str, commits: Mapping[str, str], source: InputSource,
             b: Base | _DictBase | None, no_skip: bool, fp: str) -> Plan:
    current: dict[str, PlannedDatum] = {}
    for d in enumerate_datums(spec.input, commits, source):
        if d.id not in current:
            current[d.id] = planned(d, salt)
    if b is None:
        return _finish(spec, list(current.values()), [], [], len(current), None, commits, fp)
    known = b.get(current)
    process: list[PlannedDatum] = []
    delete: list[str] = []
    for did, pd in current.items():
        e = known.get(did)
        if e is not None and not no_skip and e.hash == pd.hash and e.state == "success":
            continue
        process.append(pd)
        if e is not None:
            delete.extend(e.outputs)
    removed = [i for i in b.ids() if i not in current]
    for e in b.get(removed).values():
        delete.extend(e.outputs)
    return _finish(spec, process, delete, removed, len(current), b, commits, fp)
