"""The PPS service: pipelines, jobs, datums and logs, over PFS.

How a commit becomes output (reference 2.8, DESIGN.md "Processes"):

1. A pipeline's output branch has provenance on its input branches, so a
   commit on an input makes PFS create, in the same transaction, an open
   output commit with the same ID; :meth:`PPS._txn_hook` adds the job record
   (state CREATED) to that very transaction.
2. One *master* thread per pipeline (``pps.controller.master``) drives its
   jobs in order: it waits for the job's input commits to finish (STARTING),
   plans datums (``pps.controller.planner``: unchanged ones are skipped),
   writes the plan as an object and queues *work units* (batches of datums,
   ``pps.controller.queue``) as small metadata keys.
3. *Worker* threads (``parallelism_spec.constant`` of them,
   ``pps.controller.worker_loop``) claim units by compare-and-swap, run each
   datum in a long-lived runner session (``pps.worker``), write the unit's
   results as one object, and mark the unit done. A claim carries a lease: a
   dead worker's unit is re-queued, a bounded number of times.
4. The master merges the results (``pps.controller.merge``): outputs of
   reprocessed and removed datums are deleted, new outputs added (each file
   tagged with its datum), a path written by two datums fails the job; then
   it finishes the output commit.

This module holds the service's API (pipelines, jobs, datums, logs) and the
lifecycle of the controllers; records are in ``pps.records``, keys in
``pps.keys``, job record changes (compare-and-swap) in ``pps.jobs``.
Per-datum state, timings and logs live in objects, never one metadata record
per datum.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

from pfs.api import PFS, CommitRec
from pfs.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    TuskError,
)
from pfs.metadata import Delete, Op, Put
from pfs.model import BranchRef, CommitRef
from pfs.paths import split_repo
from pps import keys
from pps.controller import Controller, ControllerEnv
from pps.controller.cron import cron_inputs
from pps.controller.master import kill
from pps.controller.planner import PFSSource, planned
from pps.datums import enumerate_datums
from pps.errors import DatumNotFound, PipelineExists, PipelineNotFound
from pps.gateway import GatewayFactory
from pps.jobs import Jobs, is_terminal
from pps.logs import new_lines
from pps.model import (
    DatumInfo,
    DatumState,
    JobInfo,
    JobState,
    LogLine,
    PipelineInfo,
    PipelineState,
)
from pps.records import (
    DatumIndexEntry,
    DatumResult,
    JobRec,
    PipelineRec,
    Plan,
    PlannedDatum,
    update_record,
)
from pps.runners import Runner
from pps.spec import DEFAULT_IMAGE, CronInput, PipelineSpec, spec_from_dict

log = logging.getLogger("tusk.pps")

CLAIM_TTL = 10.0


class PPS:
    """Pipelines over a PFS. Thread-safe. See the module docstring."""

    def __init__(self, pfs: PFS, scratch_dir: str,
                 runner: Runner | Callable[[], Runner] | None = None,
                 start: bool = True, role: str = "all",
                 default_image: str = DEFAULT_IMAGE, claim_ttl: float = CLAIM_TTL,
                 s3_gateways: GatewayFactory | None = None) -> None:
        """``role="all"``: masters, cron and workers (the daemon). ``"master"``:
        masters and cron but no workers, for a daemon whose datums all run in
        ``tusk worker`` processes (``--no-workers``). ``"worker"``: only workers,
        for ``tusk worker`` processes that join a deployment through the shared
        metadata and object stores. ``runner``: a runner
        or a factory of one (the best available when None). ``claim_ttl``:
        seconds after which a silent worker's units go to others. ``s3_gateways``:
        makes the S3 gateway of a datum of a pipeline with ``pfs.s3`` inputs or
        ``s3_out`` (:mod:`pps.gateway`; ``tusk.s3.worker_scope`` has one)."""
        if role not in ("all", "master", "worker"):
            raise ValueError(f"role must be 'all', 'master' or 'worker', not {role!r}")
        self.pfs = pfs
        self.meta = pfs.meta
        self.objects = pfs.objects
        self.scratch_dir = scratch_dir
        # Datum directories under it are world-writable while user code of
        # any uid runs (Docker's /pfs/out): only this process's user may
        # reach them.
        os.makedirs(scratch_dir, exist_ok=True)
        os.chmod(scratch_dir, 0o700)
        self.default_image = default_image
        self.claim_ttl = claim_ttl
        self._runner_arg = runner
        self._runner: Runner | None = None
        self._lock = threading.RLock()
        # Its own lock, never PPS's: notifiers run inside PFS's lock (commit
        # hooks) while create_pipeline holds PPS's lock and then takes PFS's,
        # so sharing one would deadlock the two.
        self._wake = threading.Condition(threading.Lock())
        self._wakes = 0  # notifications so far (under _wake)
        self._seen = threading.local()  # per looping thread: _wakes when its last wait ended
        self._controllers: dict[str, Controller] = {}
        self._closed = False
        self._lease = 0
        self._lease_thread: threading.Thread | None = None
        self.instance = uuid.uuid4().hex[:12]
        self.role = role
        self._watch: Any = None
        self.jobs = Jobs(pfs, self._notify)
        self._env = ControllerEnv(
            pfs=pfs, jobs=self.jobs, scratch_dir=scratch_dir, masters=role != "worker",
            instance=self.instance, lease=lambda: self._lease, runner=self.runner,
            wait=self._wait, notify=self._notify, tick=self._tick, default_image=default_image,
            s3_gateways=s3_gateways)
        if role != "worker":
            pfs.txn_hooks.append(self._txn_hook)
            pfs.on_commit_finished.append(lambda c: self._notify())
            pfs.on_commits_created.append(lambda cs: self._notify())
            pfs.protected_repos = self._protected_repo
            pfs.project_deleters.append(self._delete_project_pipelines)
        if start:
            self.start()

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        self._lease = self.meta.grant_lease(self.claim_ttl)
        self._lease_thread = threading.Thread(target=self._keepalive, name="pps-lease", daemon=True)
        self._lease_thread.start()
        # Writes by other processes (workers, another daemon's clients) reach
        # us through a watch, so masters and workers react without polling.
        self._watch = self.meta.watch("", start_revision=self.meta.revision() + 1)
        threading.Thread(target=self._watch_loop, name="pps-watch", daemon=True).start()
        self._resync()

    def _resync(self) -> None:
        """Start, update or stop controllers to match the pipeline records."""
        recs = {r.name: r for r in self._pipelines()}
        with self._lock:
            gone = [n for n in self._controllers if n not in recs]
            stopped = [self._controllers.pop(n) for n in gone]
        for c in stopped:
            c.stop(join=False)
        for rec in recs.values():
            self._sync_controller(rec)

    def _watch_loop(self) -> None:
        try:
            for ev in self._watch:
                if self._closed:
                    return
                if ev.key.startswith(keys.ALL_PIPELINES) and self.role == "worker":
                    self._resync()
                elif ev.type == "PUT" and (target := keys.parse_restart(ev.key)) is not None:
                    self._restart_here(*target)
                self._notify()
        except TuskError as e:
            if not self._closed:
                log.warning("metadata watch ended: %s (falling back to polling)", e)

    def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        with self._lock:
            self._closed = True
            ctrls = list(self._controllers.values())
            self._controllers.clear()
        self._notify()
        for c in ctrls:
            c.stop()
        if self._lease:
            try:
                self.meta.revoke_lease(self._lease)
            except TuskError:
                pass

    def _keepalive(self) -> None:
        while not self._closed:
            time.sleep(self.claim_ttl / 3)
            if self._closed:
                return
            try:
                try:
                    self.meta.keepalive(self._lease)
                except NotFound:
                    # Expired: this host was cut off or paused past the TTL,
                    # and its claims went to other workers. Claim on a new
                    # lease; if that grant fails too (a flapping link), the
                    # next round tries again: this thread must not end.
                    old = self._lease
                    self._lease = self.meta.grant_lease(self.claim_ttl)
                    log.warning("lease %x expired (its claims went to other workers); "
                                "claiming on lease %x", old, self._lease)
            except TuskError as e:
                log.warning("lease keepalive failed: %s", e)

    @property
    def lease_id(self) -> int:
        """The lease this process's claims are tied to (revoked: its units go
        to other workers)."""
        return self._lease

    def _notify(self) -> None:
        with self._wake:
            self._wakes += 1
            self._wake.notify_all()

    def _wait(self, stop: threading.Event, seconds: float) -> None:
        # Woken by in-process notifications and by the metadata watch; the
        # timeout is only a safety net. A notification that came while this
        # thread was busy (after its last wait ended) ends the wait at once:
        # a loop checks, then waits, and a change landing in between (the
        # last unit of a job done by a worker in another process) would
        # otherwise be slept through until the timeout.
        with self._wake:
            seen = getattr(self._seen, "wakes", self._wakes)
            if not stop.is_set() and seen == self._wakes:
                self._wake.wait(seconds)
            self._seen.wakes = self._wakes

    def runner(self) -> Runner:
        """The runner workers use (created on first use)."""
        with self._lock:
            if self._runner is None:
                arg = self._runner_arg
                if arg is None:
                    from pps.runners import default_runner

                    self._runner = default_runner()
                elif hasattr(arg, "start"):  # a runner, not a factory of one
                    self._runner = cast(Runner, arg)
                else:
                    self._runner = arg()
            assert self._runner is not None
            return self._runner

    # -- records -----------------------------------------------------------------

    def _pipelines(self) -> list[PipelineRec]:
        return [PipelineRec.decode(kv.value) for kv in self.meta.range(keys.ALL_PIPELINES)]

    def _find_pipeline(self, name: str) -> PipelineRec | None:
        kv = self.meta.get(keys.pipeline(name))
        return PipelineRec.decode(kv.value) if kv is not None else None

    def _get_pipeline(self, name: str) -> PipelineRec:
        rec = self._find_pipeline(name)
        if rec is None:
            raise PipelineNotFound(name)
        return rec

    def _update_pipeline(self, name: str,
                         change: Callable[[PipelineRec], PipelineRec | None]) -> PipelineRec:
        """Compare-and-swap ``change`` onto the pipeline's record."""
        rec = update_record(self.meta, keys.pipeline(name), PipelineRec, change)
        if rec is None:
            return self._get_pipeline(name)
        return rec

    def _delete_project_pipelines(self, project: str) -> None:
        """Before a project is deleted (with force): its pipelines go, users first."""
        mine = [r.name for r in self._pipelines() if split_repo(r.name)[0] == project]
        for name in mine:
            self.delete_pipeline(name, force=True)

    def _protected_repo(self, repo: str) -> str | None:
        if self.meta.get(keys.pipeline(repo)) is not None:
            return ("cannot delete a repo associated with a pipeline - delete the pipeline "
                    f"instead (`tusk delete pipeline {repo}`)")
        return None

    def _txn_hook(self, commits: list[CommitRec]) -> list[Op]:
        """Job records for new output commits, in the commits' transaction."""
        ops: list[Op] = []
        for c in commits:
            rec = self._find_pipeline(c.repo)
            if rec is None:
                continue
            if rec.stopped or c.branch != rec.spec.get("output_branch", "master"):
                continue
            job = JobRec(pipeline=rec.name, id=c.id, created=c.started, version=rec.version,
                         salt=rec.salt, output_branch=c.branch)
            ops.append(Put(keys.job(rec.name, c.id), job.encode()))
        return ops

    # -- pipelines -------------------------------------------------------------

    def _input_branches(self, spec: PipelineSpec) -> list[BranchRef]:
        out: list[BranchRef] = []
        for leaf in spec.input.leaves():
            ref = BranchRef(leaf.repo, leaf.branch)
            if ref not in out:
                out.append(ref)
        return out

    def create_pipeline(self, spec: PipelineSpec | dict[str, Any], update: bool = False,
                        reprocess: bool = False) -> PipelineInfo:
        if isinstance(spec, dict):
            spec = spec_from_dict(spec)
        name = spec.name
        update = update or spec.update
        reprocess = reprocess or spec.reprocess
        inputs = self._input_branches(spec)
        for cron in cron_inputs(spec):
            try:
                self.pfs.inspect_repo(cron.repo)
            except NotFound:
                self.pfs.create_repo(cron.repo, f"Cron ticks ({cron.spec}) for pipeline {name}.")
        self._check_inputs(spec)
        with self._lock, self.pfs.exclusive():
            existing = self._find_pipeline(name)
            now = time.time()
            if existing is not None and not update:
                raise PipelineExists(name)
            if existing is None:
                try:
                    self.pfs.inspect_repo(name)
                    raise AlreadyExists(
                        f"pipeline {name} cannot be created because a repo with the same name "
                        f"already exists (delete the repo or choose another pipeline name)")
                except NotFound:
                    pass
                rec = PipelineRec(name=name, spec=spec.to_dict(),
                                  salt=spec.salt or uuid.uuid4().hex, created=now,
                                  state="RUNNING")
                self.meta.txn([], [Put(keys.pipeline(name), rec.encode()),
                                   Put(keys.pipeline_version(name, rec.version), rec.encode())])
                try:
                    self.pfs.create_repo(name, f"Output repo for pipeline {name}.")
                    self.pfs.create_branch(name, spec.output_branch, provenance=inputs)
                except BaseException:
                    self.meta.delete(keys.pipeline(name))
                    raise
            else:
                old_branch = existing.spec.get("output_branch", "master")
                if old_branch != spec.output_branch:
                    raise InvalidArgument("changing output_branch on update is not supported: "
                                          "delete and re-create the pipeline")
                new_spec = spec.to_dict()

                def change(cur: PipelineRec) -> PipelineRec:
                    return dataclasses.replace(
                        cur, spec=new_spec, version=cur.version + 1,
                        salt=uuid.uuid4().hex if reprocess else cur.salt)

                rec = self._update_pipeline(name, change)
                self.meta.put(keys.pipeline_version(name, rec.version), rec.encode())
                if not rec.stopped:
                    # A new job over the current inputs, with the new spec.
                    self.pfs.create_branch(name, spec.output_branch, provenance=inputs)
            self._sync_controller(rec)
        self._notify()
        return self.inspect_pipeline(name)

    def _check_inputs(self, spec: PipelineSpec) -> None:
        crons = {c.repo for c in cron_inputs(spec)}
        for b in self._input_branches(spec):
            if b.repo == spec.name:
                raise InvalidArgument(f"pipeline {spec.name} cannot read its own output repo")
            if b.repo in crons:
                continue  # made with the pipeline
            try:
                self.pfs.inspect_repo(b.repo)
            except NotFound:
                raise NotFound(
                    f"input repo {b.repo} of pipeline {spec.name} not found: create it with "
                    f"`tusk create repo {b.repo}` (input.pfs.repo)") from None

    def check_pipeline(self, spec: PipelineSpec | dict[str, Any],
                       update: bool = False) -> PipelineInfo:
        """What :meth:`create_pipeline` would make of ``spec``, changing nothing:
        the same checks (a valid spec, existing input repos, no clash with an
        existing pipeline or repo unless ``update``) and the resulting info."""
        if isinstance(spec, dict):
            spec = spec_from_dict(spec)
        self._check_inputs(spec)
        existing = self._find_pipeline(spec.name)
        if existing is not None and not (update or spec.update):
            raise PipelineExists(spec.name)
        if existing is None:
            try:
                self.pfs.inspect_repo(spec.name)
                raise AlreadyExists(
                    f"pipeline {spec.name} cannot be created because a repo with the same "
                    "name already exists (delete the repo or choose another pipeline name)")
            except NotFound:
                pass
        return PipelineInfo(name=spec.name, version=existing.version + 1 if existing else 1,
                            spec=spec.to_dict(), state=PipelineState.STARTING, reason="",
                            created=time.time(), last_job_state=None,
                            salt=existing.salt if existing else "", stopped=False,
                            description=spec.description)

    def _sync_controller(self, rec: PipelineRec) -> None:
        with self._lock:
            if self._closed:
                return
            old = self._controllers.get(rec.name)
            if old is not None and old.version == rec.version:
                return
            if old is not None:
                old.stop(join=False)
            ctrl = Controller(self._env, rec.name, rec.version, spec_from_dict(rec.spec),
                              workers=0 if self.role == "master" else None)
            self._controllers[rec.name] = ctrl
            ctrl.start()

    def _pipeline_info(self, rec: PipelineRec) -> PipelineInfo:
        jobs = self.jobs.of_pipeline(rec.name)
        last = JobState(jobs[-1].state) if jobs else None
        state = PipelineState.PAUSED if rec.stopped else PipelineState(rec.state)
        return PipelineInfo(name=rec.name, version=rec.version, spec=rec.spec, state=state,
                            reason=rec.reason, created=rec.created, last_job_state=last,
                            salt=rec.salt, stopped=rec.stopped,
                            description=rec.spec.get("description", ""))

    def inspect_pipeline(self, name: str) -> PipelineInfo:
        return self._pipeline_info(self._get_pipeline(name))

    def list_pipeline(self, project: str | None = None) -> list[PipelineInfo]:
        """Pipelines newest first, of ``project`` (None: of every project)."""
        out = [self._pipeline_info(r) for r in self._pipelines()
               if project is None or split_repo(r.name)[0] == project]
        out.sort(key=lambda p: p.created, reverse=True)
        return out

    def pipeline_history(self, name: str, history: int = -1) -> list[PipelineInfo]:
        """Pipeline ``name``'s current version and up to ``history`` earlier
        ones (-1: all), newest first."""
        cur = self._pipeline_info(self._get_pipeline(name))
        out = [cur]
        if history == 0:
            return out
        older = [PipelineRec.decode(kv.value)
                 for kv in self.meta.range(keys.pipeline_versions(name))]
        older = [r for r in older if r.version < cur.version]
        older.sort(key=lambda r: r.version, reverse=True)
        if history > 0:
            older = older[:history]
        for r in older:
            out.append(dataclasses.replace(
                self._pipeline_info(r), state=PipelineState.PAUSED, last_job_state=None))
        return out

    def _consumers(self, name: str) -> list[str]:
        out = []
        for r in self._pipelines():
            spec = spec_from_dict(r.spec)
            if any(getattr(leaf, "repo", "") == name for leaf in spec.input.leaves()):
                out.append(r.name)
        return out

    def delete_pipeline(self, name: str, force: bool = False, keep_repo: bool = False) -> None:
        rec = self._get_pipeline(name)
        users = self._consumers(name)
        if users and not force:
            raise FailedPrecondition(
                f"cannot delete pipeline {name}: pipelines {', '.join(users)} read its output; "
                "delete them first or use --force")
        with self._lock:
            ctrl = self._controllers.pop(name, None)
        if ctrl is not None:
            ctrl.stop()
        with self.pfs.exclusive():
            self.meta.delete(keys.pipeline(name))
            for prefix in keys.per_pipeline_prefixes(name):
                while True:
                    batch = [kv.key for kv in self.meta.range(prefix, limit=100)]
                    if not batch:
                        break
                    self.meta.txn([], [Delete(k) for k in batch])
            out_branch = rec.spec.get("output_branch", "master")
            if keep_repo:
                try:
                    self.pfs.set_branch_provenance(name, out_branch, [], new_head=False)
                except NotFound:
                    pass
                return
            for cron in cron_inputs(spec_from_dict(rec.spec)):
                try:
                    self.pfs.delete_repo(cron.repo, force=True)
                except NotFound:
                    pass
            try:
                self.pfs.delete_repo(name, force=True)
            except NotFound:
                pass

    def stop_pipeline(self, name: str) -> None:
        with self._lock:
            rec = self._update_pipeline(
                name, lambda cur: dataclasses.replace(cur, stopped=True))
            self.pfs.set_branch_provenance(name, rec.spec.get("output_branch", "master"), [],
                                           new_head=False)
            for j in self.jobs.of_pipeline(name):
                if not is_terminal(j):
                    self._kill_job(j, "pipeline stopped")

    def start_pipeline(self, name: str) -> None:
        with self._lock:
            if not self._get_pipeline(name).stopped:
                return
            rec = self._update_pipeline(
                name, lambda cur: dataclasses.replace(cur, stopped=False))
            spec = spec_from_dict(rec.spec)
            self.pfs.set_branch_provenance(name, spec.output_branch, self._input_branches(spec),
                                           new_head=True)

    def run_cron(self, name: str) -> None:
        """Tick every cron input of pipeline ``name`` now (``tusk run cron``)."""
        rec = self._get_pipeline(name)
        crons = cron_inputs(spec_from_dict(rec.spec))
        if not crons:
            raise FailedPrecondition(f"pipeline {name} has no cron input")
        for cron in crons:
            self._tick(name, cron, time.time())

    def _tick(self, pipeline: str, cron: object, when: float) -> None:
        """Commit one tick file (named by its RFC 3339 time) to the cron repo."""
        assert isinstance(cron, CronInput)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
        with self.pfs.modify_file(cron.repo, "master") as w:
            if cron.overwrite:
                w.delete_file("/")
            w.put_file(f"/{stamp}", [b""])
        self.meta.put(keys.cron(pipeline, cron.name), json.dumps({"last": when}).encode())

    # -- jobs ----------------------------------------------------------------------

    def _job_info(self, j: JobRec) -> JobInfo:
        inputs: tuple[CommitRef, ...] = ()
        c = self.pfs.get_commit(j.pipeline, j.id)
        if c is not None:
            inputs = tuple(CommitRef(r, i, b) for r, b, i in c.provenance)
        return JobInfo(pipeline=j.pipeline, id=j.id, state=JobState(j.state), reason=j.reason,
                       created=j.created, started=j.started, finished=j.finished,
                       data_processed=j.data_processed, data_skipped=j.data_skipped,
                       data_failed=j.data_failed, data_recovered=j.data_recovered,
                       data_total=j.data_total, pipeline_version=j.version, salt=j.salt,
                       output_commit=CommitRef(j.pipeline, j.id, j.output_branch),
                       input_commits=inputs, restart=j.restart, stats=dict(j.stats))

    def list_job(self, pipeline: str | None = None, number: int = 0) -> list[JobInfo]:
        if pipeline:
            self._get_pipeline(pipeline)
        names = [pipeline] if pipeline else [r.name for r in self._pipelines()]
        jobs = [j for n in names for j in self.jobs.of_pipeline(n)]
        jobs.sort(key=lambda j: j.created, reverse=True)
        if number:
            jobs = jobs[:number]
        return [self._job_info(j) for j in jobs]

    def inspect_job(self, pipeline: str, job: str, wait: bool = False,
                    timeout: float | None = None) -> JobInfo:
        j = self._resolve_job(pipeline, job)
        if not wait:
            return self._job_info(j)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._wake:
            while True:
                j = self.jobs.get(pipeline, j.id)
                if is_terminal(j):
                    return self._job_info(j)
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TuskError(f"timed out waiting for job {pipeline}@{j.id} "
                                    f"(state {j.state})")
                self._wake.wait(0.5 if left is None else min(0.5, left))

    def _resolve_job(self, pipeline: str, job: str) -> JobRec:
        self._get_pipeline(pipeline)
        if job:
            j = self.jobs.find(pipeline, job)
            if j is not None:
                return j
        # A commit ref on the output repo names the job with the same ID.
        c = self.pfs.resolve(pipeline, job or "master")
        return self.jobs.get(pipeline, c.id)

    def inspect_job_set(self, set_id: str, wait: bool = False,
                        timeout: float | None = None) -> list[JobInfo]:
        """The jobs of every pipeline with ID ``set_id`` (a commit set's jobs),
        upstream pipelines first; ``wait``: each once it is terminal."""
        jobs = [j for p in self._pipelines() if (j := self.jobs.find(p.name, set_id)) is not None]
        if not jobs:
            raise NotFound(f"job set {set_id} not found: no pipeline has a job with that ID "
                           "(list them with `tusk list job`)")
        jobs.sort(key=lambda j: j.created)
        if wait:
            return [self.inspect_job(j.pipeline, j.id, wait=True, timeout=timeout) for j in jobs]
        return [self._job_info(j) for j in jobs]

    def list_job_set(self, number: int = 0) -> list[tuple[str, list[JobInfo]]]:
        """Job sets, newest first: ``(id, its jobs)``."""
        by_id: dict[str, list[JobRec]] = {}
        for p in self._pipelines():
            for j in self.jobs.of_pipeline(p.name):
                by_id.setdefault(j.id, []).append(j)
        order = sorted(by_id, key=lambda i: min(j.created for j in by_id[i]), reverse=True)
        if number:
            order = order[:number]
        return [(i, [self._job_info(j) for j in sorted(by_id[i], key=lambda j: j.created)])
                for i in order]

    def delete_job(self, pipeline: str, job: str) -> None:
        """Stop the job if it runs, then forget it: its record, queue entries,
        plan, results and logs. Its output commit stays. A later job that
        would have skipped datums against it runs them instead."""
        j = self._resolve_job(pipeline, job)
        if not is_terminal(j):
            self._kill_job(j, "job deleted by the user (delete job)")
        with self.pfs.exclusive():
            for prefix in (keys.queue_prefix(pipeline, j.id), keys.claim_prefix(pipeline, j.id),
                           keys.done_prefix(pipeline, j.id), keys.attempts_prefix(pipeline, j.id)):
                for kv in list(self.meta.range(prefix)):
                    self.meta.delete(kv.key)
            self.meta.delete(keys.job(pipeline, j.id))
        for key in list(self.objects.list(keys.job_objects(pipeline, j.id))):
            try:
                self.objects.delete(key)
            except TuskError:
                pass
        self._notify()

    def restart_datum(self, pipeline: str, job: str, data: Sequence[str]) -> DatumInfo:
        """Kill a running datum's user code and run it again (``restart datum``;
        the killed attempt does not count against ``datum_tries``).

        ``data`` names the datum: its ID (or a unique prefix), or the paths of
        its input files (all of them, in any order). The request reaches the
        worker running the datum in whichever process through the metadata
        store's watch.

        Raises:
            FailedPrecondition: the job is not running.
            DatumNotFound: no datum of the job matches.
        """
        j = self._resolve_job(pipeline, job)
        if j.state != JobState.RUNNING.value:
            raise FailedPrecondition(
                f"job {pipeline}@{j.id} is {j.state.lower()}, not running: restart datum "
                "restarts datums of a running job (rerun a finished one with "
                f"`tusk rerun pipeline {pipeline}`)")
        plan = self.jobs.plan(pipeline, j.id, skipped=False)
        wanted = sorted(data)
        match = None
        for d in plan.process if plan is not None else ():
            if (len(wanted) == 1 and d.id.startswith(wanted[0])) or sorted(
                    f.path for f in d.files()) == wanted:
                match = d
                break
        if match is None:
            raise DatumNotFound(pipeline, j.id, ",".join(data))
        key = keys.restart(pipeline, j.id, match.id)
        self.meta.put(key, b"")
        self.meta.delete(key)
        for info in self.list_datum(pipeline, j.id):
            if info.id == match.id:
                return info
        raise DatumNotFound(pipeline, j.id, match.id)

    def _restart_here(self, pipeline: str, job: str, datum: str) -> None:
        with self._lock:
            ctrl = self._controllers.get(pipeline)
        for worker in list(ctrl.datum_workers.values()) if ctrl is not None else []:
            if worker.interrupt(job, datum):
                log.info("pipeline %s job %s: datum %s restarted", pipeline, job, datum[:12])

    def stop_job(self, pipeline: str, job: str) -> None:
        j = self._resolve_job(pipeline, job)
        if not is_terminal(j):
            self._kill_job(j, "job stopped by the user (stop job)")

    def _kill_job(self, j: JobRec, reason: str) -> None:
        with self._lock:
            ctrl = self._controllers.get(j.pipeline)
        if ctrl is not None:
            kill(ctrl, j, reason)
        else:
            self.jobs.end(j, JobState.KILLED, reason)

    # -- datums and logs --------------------------------------------------------------

    def _results(self, j: JobRec) -> Iterator[DatumResult]:
        for _, _, results in self.jobs.results(j):
            yield from results

    def list_datum(self, pipeline: str, job: str) -> Iterator[DatumInfo]:
        """The job's datums: those it ran (with their results), those still
        pending, then those skipped (streamed from the index it updates)."""
        j = self._resolve_job(pipeline, job)
        plan = self.jobs.plan(pipeline, j.id)
        # Unit by unit: a job of 10^5 datums starts streaming at once.
        ran: set[str] = set()
        listed: set[int] = set()
        for unit, _, results in self.jobs.results(j) if plan is not None else ():
            planned_here = {d.id: d for d in plan.unit(unit)} if plan is not None else {}
            for r in results:
                ran.add(r.id)
                yield self._datum_info(j, r, planned_here.get(r.id))
            if results:
                listed.add(unit)
        for n in range(plan.units if plan is not None else 0):
            for pd in plan.unit(n) if plan is not None else ():
                if n in listed and pd.id in ran:
                    continue
                yield DatumInfo(id=pd.id, pipeline=pipeline, job_id=j.id,
                                state=DatumState.PENDING, files=pd.files(), hash=pd.hash)
        if plan is None:
            return
        for s in plan.skipped:
            yield self._skipped_info(j, s)
        for s in self._skipped(pipeline, plan):
            yield self._skipped_info(j, s)

    def _skipped(self, pipeline: str, plan: Plan) -> Iterator[DatumIndexEntry]:
        """The skipped datums of a job planned against a base index: the base
        index's datums it neither ran nor removed."""
        if not plan.base:
            return
        di = self.jobs.datum_index(pipeline)
        m = di.manifest(plan.base)
        if m is None:
            return
        skip = set(plan.removed) | {d.id for d in plan.process}
        for e in di.entries(m):
            if e.id not in skip:
                yield e

    @staticmethod
    def _skipped_info(j: JobRec, s: DatumIndexEntry) -> DatumInfo:
        return DatumInfo(id=s.id, pipeline=j.pipeline, job_id=j.id, state=DatumState.SKIPPED,
                         files=s.datum_files(), hash=s.hash, outputs=s.outputs)

    def _datum_info(self, j: JobRec, r: DatumResult, pd: PlannedDatum | None) -> DatumInfo:
        return DatumInfo(id=r.id, pipeline=j.pipeline, job_id=j.id, state=DatumState(r.state),
                         files=pd.files() if pd else (), hash=r.hash, reason=r.reason,
                         attempts=r.attempts, duration=r.duration,
                         outputs=tuple(o.path for o in r.outputs), stats=r.stats)

    def inspect_datum(self, pipeline: str, job: str, datum: str) -> DatumInfo:
        j = self._resolve_job(pipeline, job)
        plan = self.jobs.plan(pipeline, j.id)
        if plan is not None and plan.base and datum and not any(
                d.id.startswith(datum) for d in plan.process):
            # A skipped datum: look in its shard of the index, not through
            # every datum of the job.
            di = self.jobs.datum_index(pipeline)
            m = di.manifest(plan.base)
            removed = set(plan.removed)
            for e in di.find_prefix(m, datum) if m is not None else ():
                if e.id not in removed:
                    return self._skipped_info(j, e)
        for d in self.list_datum(pipeline, j.id):
            if d.id == datum or d.id.startswith(datum):
                return d
        raise DatumNotFound(pipeline, job, datum)

    def list_datum_for_spec(self, spec: PipelineSpec | dict[str, Any]) -> list[DatumInfo]:
        """Datums a spec would have over the current input heads (nothing is created)."""
        if isinstance(spec, dict):
            spec = spec_from_dict(spec)
        commits = {leaf.name: self.pfs.resolve(leaf.repo, leaf.branch).id
                   for leaf in spec.input.leaves()}
        out = []
        for d in enumerate_datums(spec.input, commits, PFSSource(self.pfs)):
            pd = planned(d, "")
            out.append(DatumInfo(id=d.id, pipeline=spec.name, job_id="", state=DatumState.PENDING,
                                 files=pd.files(), hash=""))
        return out

    def get_logs(self, pipeline: str, job: str | None = None, datum: str | None = None,
                 follow: bool = False, cancel: threading.Event | None = None,
                 master: bool = False, worker: bool = False, tail: int = 0,
                 since: float = 0.0) -> Iterator[LogLine]:
        """Log lines of a pipeline's jobs, oldest job first.

        Two kinds: the master's (job created, running with N datums, finished
        with its state and reason: ``LogLine.master``) and the workers' (the
        user code's stdout/stderr and per-datum ``system`` messages).
        ``master``/``worker`` keep only one kind; ``tail`` keeps only the last
        N lines of what exists now; ``since`` only lines newer than that many
        seconds. With ``follow`` new lines stream until ``cancel`` is set.
        """
        self._get_pipeline(pipeline)
        if datum:
            master = False
            worker = True
        kinds = (not worker or master, not master or worker)  # (master lines, worker lines)
        cutoff = time.time() - since if since > 0 else 0.0
        seen: set[tuple[str, int | str]] = set()
        first = True
        while True:
            jobs = [self._resolve_job(pipeline, job)] if job else self.jobs.of_pipeline(pipeline)
            batch = [line for line in new_lines(self.jobs, pipeline, jobs, datum, seen, kinds)
                     if line.ts >= cutoff]
            if first and tail > 0:
                batch = batch[-tail:]
            first = False
            yield from batch
            if not follow or (cancel is not None and cancel.is_set()):
                return
            with self._wake:
                self._wake.wait(0.5)
            if cancel is not None and cancel.is_set():
                return


__all__ = ["CLAIM_TTL", "DEFAULT_IMAGE", "PPS"]
