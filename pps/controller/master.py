"""The master of one pipeline: drives its jobs, one at a time, in order.

CREATED -> STARTING (wait for the input commits) -> RUNNING (plan, queue
units, wait for them, re-queue lost ones) -> FINISHING (merge) ->
[EGRESSING (mirror the finished output commit to S3, :mod:`pps.egress`)] ->
SUCCESS, or FAILURE / UNRUNNABLE / KILLED with a reason. Every change of the job
record is a compare-and-swap that gives up when the job became terminal
meanwhile (``stop job``), so the master never resurrects a stopped job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pfs.errors import NotFound, TuskError
from pfs.tree import FileEntry
from pps.controller.merge import OwnerLookup, counts, merge_outcome, write_output
from pps.controller.planner import Base, PFSSource, plan_job
from pps.jobs import is_terminal
from pps.model import JobState
from pps.records import DatumResult, EgressManifest, JobRec

if TYPE_CHECKING:
    from pps.controller import Controller

log = logging.getLogger("tusk.pps")

#: Egress tries per job, and the wait before the second (doubled after each):
#: an outage of a few seconds costs nothing, a longer one fails the job with
#: the reason, and `rerun pipeline` egresses again without reprocessing.
EGRESS_TRIES = 3
EGRESS_BACKOFF = 2.0
#: Seconds between two reads of a running job's unit records, per unit.
SCAN_PER_UNIT = 0.001


def master_loop(ctl: Controller) -> None:
    jobs = ctl.env.jobs
    while not ctl.stopped:
        try:
            job = next((j for j in jobs.of_pipeline(ctl.name) if not is_terminal(j)), None)
            if job is None:
                ctl.wait()
                continue
            drive(ctl, job)
        except TuskError as e:
            log.warning("pipeline %s master: %s (retrying)", ctl.name, e)
            ctl.wait(1.0)
        except Exception:
            log.exception("pipeline %s master crashed (retrying)", ctl.name)
            ctl.wait(1.0)


def _alive(ctl: Controller, j: JobRec) -> JobRec | None:
    """The job's current record, or None if it ended (killed) or is gone."""
    cur = ctl.env.jobs.find(j.pipeline, j.id)
    return None if cur is None or is_terminal(cur) else cur


def drive(ctl: Controller, j: JobRec) -> None:
    """Take ``j`` as far as it goes now (to its end, unless the controller stops)."""
    jobs, pfs = ctl.env.jobs, ctl.env.pfs
    if pfs.get_commit(ctl.name, j.id) is None:
        jobs.advance(j, state=JobState.KILLED.value, reason="output commit was deleted",
                     finished=time.time())
        return
    if j.state == JobState.CREATED.value:
        nj = jobs.advance(j, state=JobState.STARTING.value)
        if nj is None:
            return
        j = nj
    # STARTING: wait for the input commits to finish.
    failed: list[str] = []
    while True:
        cur = _alive(ctl, j)
        if cur is None or ctl.stopped:
            return
        j = cur
        out = pfs.get_commit(ctl.name, j.id)
        if out is None:
            return
        pending: list[str] = []
        failed = []
        for repo, _, cid in out.provenance:
            c = pfs.get_commit(repo, cid)
            if c is None:
                continue
            if c.finished is None:
                pending.append(repo)
            elif c.error:
                failed.append(repo)
        if not pending:
            break
        ctl.wait()
    if failed:
        jobs.end(j, JobState.UNRUNNABLE, "unrunnable because the following upstream "
                 "pipelines failed: " + ", ".join(sorted(set(failed))))
        return
    if j.units < 0:
        nj = _plan(ctl, j)
        if nj is None:
            return
        j = nj
    # RUNNING: wait for every unit, re-queueing units of dead workers. The
    # master wakes at every change; reading every unit's record at each
    # wake-up would cost O(units) per unit, O(units^2) per job. So the done
    # records are read at most every SCAN_PER_UNIT x units seconds (1 ms for
    # a one-unit job, a second for a thousand units), and lost claims (which
    # need a lease to expire first) every second, or every few for big jobs.
    timeout = ctl.spec.job_timeout
    scanned = lost_checked = 0.0
    while True:
        cur = _alive(ctl, j)
        if cur is None or ctl.stopped:
            return
        j = cur
        if timeout and j.started and time.time() - j.started > timeout:
            kill(ctl, j, f"job exceeded its job_timeout ({timeout:g}s)")
            return
        now = time.monotonic()
        every = min(1.0, SCAN_PER_UNIT * j.units)
        wait = 5.0
        if now - scanned >= every:
            scanned = now
            done, _ = _update_counts(ctl, j)
            if done >= j.units:
                break
            # Claims are lost only when a lease ends (seconds): a job of 10^4
            # units looks for them every few seconds, not every second.
            if now - lost_checked >= min(10.0, max(1.0, SCAN_PER_UNIT * j.units / 2)):
                lost_checked = now
                ctl.queue.requeue_lost(j.id, j.units)
        else:
            wait = every - (now - scanned)
        if timeout and j.started:
            wait = max(0.05, min(wait, j.started + timeout - time.time()))
        ctl.wait(wait)
    _finish(ctl, j)


def kill(ctl: Controller, j: JobRec, reason: str) -> None:
    ctl.queue.drop(j.id)
    ctl.env.jobs.end(j, JobState.KILLED, reason)


def _plan(ctl: Controller, j: JobRec) -> JobRec | None:
    jobs, pfs = ctl.env.jobs, ctl.env.pfs
    out = pfs.get_commit(ctl.name, j.id)
    if out is None:
        return None
    prov = {(r, b): cid for r, b, cid in out.provenance}
    commits: dict[str, str] = {}
    for leaf in ctl.spec.input.leaves():
        repo = getattr(leaf, "repo", "")
        branch = getattr(leaf, "branch", "master")
        cid = prov.get((repo, branch))
        if cid is None:
            cid = next((c for (r, _), c in prov.items() if r == repo), None)
        if cid is None:
            cid = pfs.resolve(repo, branch).id
        commits[leaf.name] = cid
    plan = plan_job(ctl.spec, j.salt, commits, PFSSource(pfs), _base(ctl, j), ctl.key_tables)
    jobs.put_plan(ctl.name, j.id, plan)
    # The unit count is recorded before the units are queued: a master that
    # dies between the two finds the missing units lost, and queues them.
    nj = jobs.advance(j, units=plan.units, data_total=plan.data_total,
                      data_skipped=plan.data_total - len(plan.process),
                      state=JobState.RUNNING.value, started=time.time())
    if nj is not None:
        ctl.queue.enqueue(j.id, plan.units)
    return nj


def _base(ctl: Controller, j: JobRec) -> Base | None:
    """The index of the last successful job before ``j`` (reference 2.4)."""
    jobs = ctl.env.jobs
    for prev in reversed(jobs.of_pipeline(ctl.name)):
        if prev.created >= j.created or prev.id == j.id:
            continue
        # A job that failed only in egress has a complete output and index.
        complete = prev.state == JobState.SUCCESS.value or (
            prev.state == JobState.FAILURE.value and prev.egress_failed)
        if complete and prev.output_branch == j.output_branch:
            di = jobs.datum_index(ctl.name)
            m = di.manifest(prev.id)
            return Base(prev.id, di, m) if m is not None else None
    return None


def _all_results(ctl: Controller, j: JobRec) -> tuple[list[DatumResult], str]:
    """Every datum result of ``j``'s done units, and the error of a unit that
    used up its tries ("" if none)."""
    results: list[DatumResult] = []
    lost = ""
    for unit, done, res in ctl.env.jobs.results(j):
        if done.error and not lost:
            lost = (f"work unit {unit} failed {done.tries} times without finishing: "
                    f"{done.error}")
        for r in res:
            r.logs = []  # not merged: a job of 10^5 datums would hold them all
        results.extend(res)
    return results, lost


def _update_counts(ctl: Controller, j: JobRec) -> tuple[int, bool]:
    """Refresh the job's datum counts from its done units' records (no
    results object is read: the master wakes at every unit's end, and a
    job's units would be read again at each wake-up). Returns how many units
    are done, and whether the counts are exact (every done record carries
    them; records of older versions do not)."""
    processed = failed = recovered = done = 0
    exact = True
    for _, rec in ctl.queue.done_units(j.id):
        done += 1
        if rec.attempt == -1 and not rec.error:
            exact = False  # written before units carried counts
        processed += rec.processed
        failed += rec.failed
        recovered += rec.recovered
    if exact and (processed, failed, recovered) != (
            j.data_processed, j.data_failed, j.data_recovered):
        ctl.env.jobs.advance(j, data_processed=processed, data_failed=failed,
                             data_recovered=recovered)
    return done, exact


def _finish(ctl: Controller, j: JobRec) -> None:
    jobs, pfs = ctl.env.jobs, ctl.env.pfs
    results, lost = _all_results(ctl, j)
    plan = jobs.plan(ctl.name, j.id)
    if plan is None:
        raise NotFound(f"the plan of job {ctl.name}@{j.id} is missing from the object store")
    processed, failed, recovered = counts(results)
    outcome = merge_outcome(j.id, plan, results, _owners(ctl, j))
    tally = {"data_processed": processed, "data_failed": failed,
             "data_recovered": recovered, "stats": outcome.stats or {}}
    if lost or outcome.failure:
        jobs.end(j, JobState.FAILURE, lost or outcome.failure, **tally)
        return
    if j.state != JobState.EGRESSING.value:  # else merged before a restart
        nj = jobs.advance(j, state=JobState.FINISHING.value, **tally)
        if nj is None:
            return
        j = nj
        c = pfs.get_commit(ctl.name, j.id)
        if c is not None and c.finishing is None:
            write_output(pfs, ctl.name, j.id, outcome, results)
        try:
            jobs.put_index(ctl.name, j.id, plan, outcome.puts)
        except NotFound as e:
            jobs.end(j, JobState.FAILURE, f"{e}; run the job again with `tusk rerun pipeline "
                     f"{ctl.name}`")
            return
    if ctl.spec.egress is not None:
        nj = _egress(ctl, j, ctl.spec.egress.url)
        if nj is None:
            return
        j = nj
    reason = ""
    if processed == 0 and recovered == 0 and j.data_total:
        reason = "there were no datums to process"
    jobs.end(j, JobState.SUCCESS, reason)


def _owners(ctl: Controller, j: JobRec) -> OwnerLookup:
    """Who wrote each of some paths in ``j``'s output commit before its merge
    (lookups for a few paths, one walk for many)."""
    def owners(paths: Sequence[str]) -> dict[str, str]:
        tree = ctl.env.pfs.commit_tree(ctl.name, j.id)
        if tree.root is None:
            return {}
        out: dict[str, str] = {}
        if len(paths) > 2000:
            wanted = set(paths)
            for f in tree.files():
                if f.path in wanted:
                    out[f.path] = f.datum
            return out
        for p in paths:
            e = tree.lookup(p)
            if isinstance(e, FileEntry):
                out[p] = e.datum
        return out
    return owners


def _previous_manifest(ctl: Controller, j: JobRec, url: str) -> EgressManifest | None:
    """What the latest earlier egress of this pipeline to ``url`` left there."""
    jobs = ctl.env.jobs
    for prev in reversed(jobs.of_pipeline(ctl.name)):
        if prev.created >= j.created or prev.id == j.id:
            continue
        m = jobs.egress_manifest(ctl.name, prev.id)
        if m is not None and m.url == url:
            return m
    return None


def _egress(ctl: Controller, j: JobRec, url: str) -> JobRec | None:
    """EGRESSING: finish the output commit, then mirror it to ``url`` with
    :data:`EGRESS_TRIES` tries. Returns the job record to end as a success,
    or None when the job ended here (failed egress, killed) or the
    controller stopped (a new master resumes the egress)."""
    from pps.egress import EgressStopped, mirror  # the S3 SDK: only when egressing

    jobs, pfs = ctl.env.jobs, ctl.env.pfs
    # Egress reads a finished commit; downstream pipelines need not wait for it.
    jobs.finish_output(j)
    if j.state != JobState.EGRESSING.value:
        nj = jobs.advance(j, state=JobState.EGRESSING.value)
        if nj is None:
            return None
        j = nj
    previous = _previous_manifest(ctl, j, url)
    saved: list[EgressManifest] = []
    checked = [time.monotonic()]

    def save(m: EgressManifest) -> None:
        saved[:] = [m]
        jobs.put_egress_manifest(ctl.name, j.id, m)

    def keep_going() -> bool:
        # A stop job or stop pipeline ends the mirror between two files (the
        # record is read at most once a second, not once per file).
        if ctl.stopped:
            return False
        now = time.monotonic()
        if now - checked[0] < 1.0:
            return True
        checked[0] = now
        return _alive(ctl, j) is not None

    delay = EGRESS_BACKOFF
    for attempt in range(1, EGRESS_TRIES + 1):
        try:
            result = mirror(pfs, ctl.name, j.id, url, previous, save, keep_going)
        except EgressStopped:
            return None
        except TuskError as e:
            if saved:
                previous = saved[0]
            if attempt == EGRESS_TRIES:
                jobs.end(j, JobState.FAILURE,
                         f"egress to {url} failed after {EGRESS_TRIES} tries: {e}. The output "
                         f"commit is complete; once the target works, `tusk rerun pipeline "
                         f"{ctl.name}` egresses again without reprocessing datums",
                         egress_failed=True)
                return None
            log.warning("pipeline %s job %s: egress try %d failed: %s", ctl.name, j.id,
                        attempt, e)
            nj = jobs.advance(j, reason=f"egress try {attempt} of {EGRESS_TRIES} failed, "
                                        f"retrying in {delay:g}s: {e}")
            if nj is None:
                return None
            j = nj
            deadline = time.monotonic() + delay
            while (left := deadline - time.monotonic()) > 0:
                if ctl.stopped or _alive(ctl, j) is None:
                    return None
                ctl.wait(left)
            delay *= 2
            continue
        log.info("pipeline %s job %s: egress to %s: %d uploaded, %d unchanged, %d deleted",
                 ctl.name, j.id, url, result.uploaded, result.skipped, result.deleted)
        return jobs.advance(j, reason="", stats={**j.stats, **result.stats()})
    return None
