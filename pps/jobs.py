"""Job records and the objects of a job's datums: reading them, and changing
them only by compare-and-swap.

Several writers touch one job record: its pipeline's master (state, counts),
``stop job`` and ``stop pipeline`` (from any API thread or process), the
job-timeout check. Each goes through :meth:`Jobs.update`, which re-reads and
retries on conflict, and no writer moves a job out of a terminal state: once
KILLED, always KILLED.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pfs.api import PFS
from pfs.errors import NotFound, ObjectNotFound, TuskError
from pps import keys
from pps.datum_index import DatumIndex
from pps.errors import JobNotFound
from pps.model import TERMINAL_JOB_STATES, JobState
from pps.records import (
    DatumIndexEntry,
    DatumResult,
    EgressManifest,
    JobRec,
    Plan,
    UnitDone,
    decode_results,
    update_record,
)

log = logging.getLogger("tusk.pps")


def is_terminal(j: JobRec) -> bool:
    return JobState(j.state) in TERMINAL_JOB_STATES


class Jobs:
    """The job records of every pipeline, and their plan/result objects."""

    def __init__(self, pfs: PFS, notify: Callable[[], None]) -> None:
        self.pfs = pfs
        self.meta = pfs.meta
        self.objects = pfs.objects
        self._notify = notify
        self._indexes: dict[str, DatumIndex] = {}
        #: Called with (pipeline, results) when a worker of this process has
        #: recorded a unit's datum results (monitoring: ``tusk.metrics``
        #: observes datum durations). Must not raise or block.
        self.datum_observers: list[Callable[[str, Sequence[DatumResult]], None]] = []

    # -- records ------------------------------------------------------------------

    def find(self, pipeline: str, job: str) -> JobRec | None:
        kv = self.meta.get(keys.job(pipeline, job))
        return JobRec.decode(kv.value) if kv is not None else None

    def get(self, pipeline: str, job: str) -> JobRec:
        j = self.find(pipeline, job)
        if j is None:
            raise JobNotFound(pipeline, job)
        return j

    def of_pipeline(self, pipeline: str) -> list[JobRec]:
        """Every job of ``pipeline``, oldest first."""
        jobs = [JobRec.decode(kv.value) for kv in self.meta.range(keys.jobs(pipeline))]
        jobs.sort(key=lambda j: j.created)
        return jobs

    def update(self, pipeline: str, job: str,
               change: Callable[[JobRec], JobRec | None]) -> JobRec | None:
        """Compare-and-swap ``change`` onto the job record (see
        :func:`pps.records.update_record`); wakes whoever waits on jobs."""
        new = update_record(self.meta, keys.job(pipeline, job), JobRec, change)
        if new is not None:
            self._notify()
        return new

    def advance(self, j: JobRec, **fields: Any) -> JobRec | None:
        """Set ``fields`` unless the job is terminal (or gone) by now.

        Returns:
            The new record, or None when the job ended meanwhile: the caller
            (a master) must stop working on it.
        """
        def change(cur: JobRec) -> JobRec | None:
            if is_terminal(cur):
                return None
            return dataclasses.replace(cur, **fields)

        return self.update(j.pipeline, j.id, change)

    def end(self, j: JobRec, state: JobState, reason: str, **fields: Any) -> JobRec | None:
        """Make the job terminal: finish its output commit (with ``reason`` as
        the commit's error unless it succeeded), then the record. Whoever sees
        the terminal state sees the commit finished. A job already terminal
        stays as it is (None is returned)."""
        cur = self.find(j.pipeline, j.id)
        if cur is None or is_terminal(cur):
            return None
        self.finish_output(j, error="" if state == JobState.SUCCESS else reason)
        return self.advance(j, state=state.value, reason=reason, finished=time.time(), **fields)

    def finish_output(self, j: JobRec, error: str = "") -> None:
        try:
            c = self.pfs.get_commit(j.pipeline, j.id)
            if c is not None and c.finishing is None:
                self.pfs.finish_commit(j.pipeline, j.id, error=error, force=True)
        except TuskError as e:
            log.warning("could not finish output commit %s@%s: %s", j.pipeline, j.id, e)

    def datums_done(self, pipeline: str, results: Sequence[DatumResult]) -> None:
        """Tell :attr:`datum_observers` a unit's datums are recorded."""
        for observe in self.datum_observers:
            try:
                observe(pipeline, results)
            except Exception:
                log.exception("a datum observer failed")

    # -- objects ------------------------------------------------------------------

    def _get(self, key: str) -> bytes | None:
        try:
            return self.objects.get(key)
        except ObjectNotFound:
            return None

    def plan(self, pipeline: str, job: str, skipped: bool = True) -> Plan | None:
        """The job's plan (None before it is planned); ``skipped=False``: see
        :meth:`pps.records.Plan.decode`."""
        data = self._get(keys.plan_object(pipeline, job))
        return Plan.decode(data, skipped) if data is not None else None

    def put_plan(self, pipeline: str, job: str, plan: Plan) -> None:
        self.objects.put(keys.plan_object(pipeline, job), plan.encode())

    def datum_index(self, pipeline: str) -> DatumIndex:
        """The datum indexes of ``pipeline``'s jobs (kept: it caches shards)."""
        di = self._indexes.get(pipeline)
        if di is None:
            di = self._indexes[pipeline] = DatumIndex(self.objects, pipeline)
        return di

    def index(self, pipeline: str, job: str) -> list[DatumIndexEntry]:
        """Every entry of the job's datum index (empty when it has none)."""
        di = self.datum_index(pipeline)
        m = di.manifest(job)
        return list(di.entries(m)) if m is not None else []

    def put_index(self, pipeline: str, job: str, plan: Plan,
                  puts: Sequence[DatumIndexEntry]) -> None:
        """Write the job's index: its plan's base index with ``puts`` added
        and the plan's removed datums taken out (only changed shards are
        written).

        Raises:
            NotFound: the base job's index is gone (the job was deleted
                while this one ran): the job must be planned again.
        """
        di = self.datum_index(pipeline)
        base = None
        if plan.base:
            base = di.manifest(plan.base)
            if base is None:
                raise NotFound(f"the datum index of job {pipeline}@{plan.base}, which job "
                               f"{job} was planned against, is gone (was that job deleted?)")
        di.put_manifest(job, di.write(base, puts, plan.removed, plan.commits,
                                      plan.fingerprint))

    def egress_manifest(self, pipeline: str, job: str) -> EgressManifest | None:
        """What the job's egress left in S3 (None if it has not egressed)."""
        data = self._get(keys.egress_object(pipeline, job))
        return EgressManifest.decode(data) if data is not None else None

    def put_egress_manifest(self, pipeline: str, job: str, m: EgressManifest) -> None:
        self.objects.put(keys.egress_object(pipeline, job), m.encode())

    def unit_results(self, pipeline: str, job: str, unit: int,
                     done: UnitDone) -> list[DatumResult] | None:
        """The results a done unit counts (None when its object is missing)."""
        if done.error:
            return []
        key = (keys.unit_object(pipeline, job, unit, done.attempt) if done.attempt >= 0
               else keys.legacy_unit_object(pipeline, job, unit))
        data = self._get(key)
        return decode_results(data) if data is not None else None

    def results(self, j: JobRec) -> Iterator[tuple[int, UnitDone, list[DatumResult]]]:
        """``(unit, done record, results)`` of every done unit of ``j``."""
        if j.units <= 0:
            return
        for kv in self.meta.range(keys.done_prefix(j.pipeline, j.id)):
            unit = keys.unit_of(kv.key)[1]
            done = UnitDone.decode(kv.value)
            res = self.unit_results(j.pipeline, j.id, unit, done)
            if res is not None:
                yield unit, done, res
