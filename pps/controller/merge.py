"""Merging a job's results into its output commit.

Pure decisions (:func:`merge_outcome`) and the one write that applies them
(:func:`write_output`). Every output path must come from exactly one datum:
a path written by two datums (including a skipped datum's kept output) fails
the job, as in Pachyderm.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pfs.api import PFS
from pps.records import DatumIndexEntry, DatumResult, Plan


@dataclass(frozen=True)
class MergeOutcome:
    """What the master does with a job whose units are all done.

    Attributes:
        failure: why the job fails ("" when it succeeds).
        delete: output paths to delete (of removed or reprocessed datums, and
            not written again by this job).
        puts: index entries of the datums this job ran (and, for a plan of
            the old format, the skipped ones): the job's index is its base
            index with these added and the plan's removed datums taken out.
        stats: the datums' summed timings and byte counts.
    """

    failure: str
    delete: tuple[str, ...] = ()
    puts: tuple[DatumIndexEntry, ...] = ()
    stats: dict[str, float] | None = None


def counts(results: Sequence[DatumResult]) -> tuple[int, int, int]:
    """``(processed, failed, recovered)`` datums among ``results``."""
    processed = sum(1 for r in results if r.state == "success")
    failed = sum(1 for r in results if r.state == "failed")
    return processed, failed, len(results) - processed - failed


#: Given output paths, the datum that wrote each one in the output commit as
#: it is before the merge ("" for a file no datum wrote; absent: no file).
OwnerLookup = Callable[[Sequence[str]], Mapping[str, str]]


def merge_outcome(job: str, plan: Plan, results: Sequence[DatumResult],
                  owners: OwnerLookup | None = None) -> MergeOutcome:
    stats: dict[str, float] = {}
    for r in results:
        for k, v in r.stats.items():
            stats[k] = stats.get(k, 0.0) + v
    failed = [r for r in results if r.state == "failed"]
    if failed:
        first = failed[0]
        return MergeOutcome(f"datum {first.id[:12]} failed: {first.reason}", stats=stats)
    owner: dict[str, str] = {}
    for s in plan.skipped:
        for p in s.outputs:
            owner[p] = s.id
    # Outputs kept from skipped datums are found in the output commit itself
    # (each file is tagged with its datum): a datum being replaced or removed
    # gives its paths up.
    # Decoded once: a plan's pages are decoded on each pass over them.
    planned = {d.id: d for d in plan.process}
    replaced = set(planned) | set(plan.removed)
    paths = [o.path for r in results for o in r.outputs]
    existing = owners(paths) if owners is not None and paths else {}
    for r in results:
        for o in r.outputs:
            other = owner.get(o.path)
            if other is None:
                tag = existing.get(o.path)
                if tag and tag not in replaced:
                    other = tag
            if other is not None and other != r.id:
                return MergeOutcome(
                    f"output path {o.path} was written by two datums, {other[:12]} and "
                    f"{r.id[:12]}: each output path must come from one datum (name outputs "
                    "after $PACH_DATUM_ID, and merge them in a downstream pipeline)", stats=stats)
            owner[o.path] = r.id
    puts = list(plan.skipped) + [
        DatumIndexEntry(id=r.id, hash=r.hash, state=r.state, job=job,
                        outputs=tuple(o.path for o in r.outputs),
                        files=planned[r.id].files() if r.id in planned else ())
        for r in results]
    delete = tuple(sorted(p for p in set(plan.delete) if p not in owner))
    return MergeOutcome("", delete=delete, puts=tuple(puts), stats=stats)


def write_output(pfs: PFS, repo: str, commit: str, outcome: MergeOutcome,
                 results: Sequence[DatumResult]) -> None:
    """Apply a successful outcome to the open output commit: one layer, each
    file tagged with the datum that wrote it (lineage)."""
    w = pfs.modify_file(repo, commit)
    for p in outcome.delete:
        w.delete_file(p)
    for r in results:
        for o in r.outputs:
            w.put_chunks(o.path, list(o.chunks), o.size, datum=r.id)
    w.close()
