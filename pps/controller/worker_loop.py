"""A worker of one pipeline: claims work units and runs their datums.

One runner session per worker (for Docker: one long-lived container), started
at the first claimed unit. Per unit: read the plan, run each datum
(``pps.worker.DatumWorker``, which never raises for a datum's failure), write
the attempt's results object, mark the unit done, all while still holding the
claim. Anything that goes wrong outside a datum (the plan is unreadable, the
results cannot be written, the runner cannot start) gives the unit back with
the error, and the queue counts it against the unit's tries; a worker that
lost its claim meanwhile drops its results instead of overwriting another's.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pfs.blobs import ChunkRef
from pfs.errors import NotFound, TuskError
from pfs.tree import Tree
from pps import keys
from pps.controller.merge import counts
from pps.controller.queue import Claim
from pps.jobs import is_terminal
from pps.records import DatumResult, Plan, encode_results
from pps.runners import RunnerSpec, Session
from pps.worker import DatumWorker

if TYPE_CHECKING:
    from pps.controller import Controller

log = logging.getLogger("tusk.pps")

#: Seconds between a worker's checks that its job still runs and its claim holds.
CHECK_EVERY = 0.25


def runner_spec(ctl: Controller) -> RunnerSpec:
    """What the pipeline asks of its runner (an empty image: the daemon's default)."""
    limits = ctl.spec.resource_limits
    t = ctl.spec.transform
    return RunnerSpec(image=t.image or ctl.env.default_image, user=t.user or None,
                      working_dir=t.working_dir or None,
                      memory_bytes=limits.memory if limits and limits.memory else None,
                      cpus=limits.cpu if limits and limits.cpu else None)


def worker_loop(ctl: Controller, index: int) -> None:
    env = ctl.env
    session: Session | None = None
    worker: DatumWorker | None = None
    plans = _PlanCache(ctl)
    # Stable per worker slot: after a crash the runner finds (and removes) the
    # dead instance's container by this work dir.
    scratch = os.path.join(env.scratch_dir,
                           f"{ctl.name.replace('/', '.')}-v{ctl.version}-w{index}")
    try:
        while not ctl.stopped:
            try:
                claim = ctl.queue.claim(env.instance, env.lease())
            except TuskError as e:
                log.warning("pipeline %s worker %d: cannot claim work: %s", ctl.name, index, e)
                ctl.wait(1.0)
                continue
            if claim is None:
                ctl.wait()
                continue
            try:
                if worker is None:
                    os.makedirs(scratch, exist_ok=True)
                    session = env.runner().start(runner_spec(ctl),
                                                 os.path.join(scratch, "runner"))
                    worker = DatumWorker(ctl.spec, session, os.path.join(scratch, "datum"),
                                         lambda repo, commit: _tree(ctl, repo, commit),
                                         lambda refs: _chunks(ctl, refs),
                                         env.pfs.blobs.writer, env.s3_gateways)
                    ctl.datum_workers[index] = worker
                run_unit(ctl, worker, claim, plans)
            except Exception as e:
                log.exception("pipeline %s worker %d: unit %d of job %s failed", ctl.name,
                              index, claim.unit, claim.job)
                try:
                    ctl.queue.give_back(claim, f"{type(e).__name__}: {e}")
                except TuskError:
                    pass  # the claim's lease ends, and the master re-queues it
                ctl.wait(0.2)
    finally:
        ctl.datum_workers.pop(index, None)
        if session is not None:
            session.close()
        shutil.rmtree(scratch, ignore_errors=True)


class _PlanCache:
    """The plan of the job this worker last ran a unit of.

    A job's units are claimed one after the other by the same workers, and a
    plan never changes once its units are queued (a master that re-plans
    writes the same plan), so each worker reads and decodes it once per job
    instead of once per unit.
    """

    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        self.job = ""
        self.plan: Plan | None = None

    def get(self, job: str) -> Plan:
        if self.plan is None or self.job != job:
            plan = self.ctl.env.jobs.plan(self.ctl.name, job, skipped=False)
            if plan is None:
                raise NotFound(f"the plan of job {self.ctl.name}@{job} is missing")
            self.job, self.plan = job, plan
        return self.plan


def run_unit(ctl: Controller, worker: DatumWorker, claim: Claim, plans: _PlanCache) -> None:
    """Run every datum of a claimed unit and record the results."""
    env = ctl.env
    plan = plans.get(claim.job)
    results: list[DatumResult] = []
    checked = 0.0
    worker.begin_unit()
    try:
        datums = list(plan.unit(claim.unit))
        for i, d in enumerate(datums):
            # Between datums: stop if the job ended (stop job, timeout) or the
            # claim was lost. Two metadata reads, so at most every CHECK_EVERY
            # seconds: datums of a millisecond would otherwise pay for them.
            if ctl.stopped:
                ctl.queue.release(claim)
                return
            now = time.monotonic()
            if now - checked >= CHECK_EVERY:
                checked = now
                j = env.jobs.find(ctl.name, claim.job)
                if j is None or is_terminal(j) or not ctl.queue.still_held(claim):
                    ctl.queue.release(claim)
                    return
            r = worker.run(claim.job, d, datums[i + 1] if i + 1 < len(datums) else None)
            r.worker = env.instance
            results.append(r)
        worker.end_unit()  # the outputs are durable before the results name them
    finally:
        worker.end_unit(keep=False)  # a unit given up: nothing of it is kept
    env.pfs.objects.put(keys.unit_object(ctl.name, claim.job, claim.unit, claim.attempt),
                        encode_results(results))
    if not ctl.queue.complete(claim, counts(results)):
        log.warning("pipeline %s: unit %d of job %s was handed to another worker while this "
                    "one ran it; its results are dropped", ctl.name, claim.unit, claim.job)
    else:
        env.jobs.datums_done(ctl.name, results)
    env.notify()


def _tree(ctl: Controller, repo: str, commit: str) -> Tree:
    return ctl.env.pfs.commit_tree(repo, commit)


def _chunks(ctl: Controller, refs: list[ChunkRef]) -> Iterator[bytes]:
    return ctl.env.pfs.blobs.read_chunks(refs)
