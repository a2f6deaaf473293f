"""The PPS service: pipelines, jobs, datums and logs, over PFS.

How a commit becomes output (reference 2.8, DESIGN.md "Processes"):

1. A pipeline's output branch has provenance on its input branches, so a
   commit on an input makes PFS create, in the same transaction, an open
   output commit with the same ID; :meth:`PPS._txn_hook` adds the job record
   (state CREATED) to that very transaction.
2. One *master* thread per pipeline drives its jobs in order: it waits for
   the job's input commits to finish (STARTING), enumerates datums
   (``pps.datums``), compares their hashes with the last successful job to
   skip unchanged ones, writes the datums to run as a *plan* object and
   queues *work units* (batches of datums) as small metadata keys.
3. *Worker* threads (``parallelism_spec.constant`` of them) claim units by
   compare-and-swap, run each datum in a long-lived runner session
   (``pps.worker``), write the unit's results as one object, and mark the
   unit done. A claim carries a lease: a dead worker's unit is re-queued.
4. The master merges the results: outputs of reprocessed and removed datums
   are deleted, new outputs added (each file tagged with its datum), a path
   written by two datums fails the job; then it finishes the output commit.

Per-datum state, timings and logs live in objects (``pps/<pipeline>/<job>/``),
never one metadata record per datum.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack

from pfs.api import PFS, CommitRec
from pfs.blobs import as_ref
from pfs.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ObjectNotFound,
    TuskError,
)
from pfs.glob import compile_glob
from pfs.metadata import Compare, Delete, Op, Put
from pfs.model import BranchRef, CommitRef, CommitState
from pfs.tree import DirEntry, Tree
from pps.datums import Datum, Match, enumerate_datums
from pps.model import (
    TERMINAL_JOB_STATES,
    DatumFile,
    DatumInfo,
    DatumState,
    JobInfo,
    JobState,
    LogLine,
    PipelineInfo,
    PipelineState,
)
from pps.runners import Runner, RunnerSpec, Session
from pps.spec import PipelineSpec, spec_from_dict
from pps.worker import DatumInputRec, DatumResult, DatumWorker, PlannedDatum

log = logging.getLogger("tusk.pps")

UNIT_TARGET = 64  # most datums per work unit (amortises metadata and object writes)


def unit_size(datums: int, workers: int) -> int:
    """Datums per work unit: about four units per worker so work spreads and
    a slow unit doesn't hold a job (Pachyderm: datums / (workers x 4)), at
    most UNIT_TARGET so metadata and result objects stay amortised."""
    return max(1, min(UNIT_TARGET, -(-datums // (max(1, workers) * 4))))
CLAIM_TTL = 10.0


# --- keys --------------------------------------------------------------------

def _k_pipeline(name: str) -> str:
    return f"pipelines/{name}"


def _k_job(p: str, job: str) -> str:
    return f"jobs/{p}/{job}"


def _k_queue(p: str, job: str, n: int) -> str:
    return f"queue/{p}/{job}/{n:06d}"


def _k_claim(p: str, job: str, n: int) -> str:
    return f"claims/{p}/{job}/{n:06d}"


def _k_done(p: str, job: str, n: int) -> str:
    return f"done/{p}/{job}/{n:06d}"


def _o_plan(p: str, job: str) -> str:
    return f"pps/{p}/{job}/plan"


def _o_unit(p: str, job: str, n: int) -> str:
    return f"pps/{p}/{job}/units/{n:06d}"


def _o_index(p: str, job: str) -> str:
    return f"pps/{p}/{job}/datums"


# --- records -----------------------------------------------------------------


@dataclass
class PipelineRec:
    name: str
    spec: dict[str, Any]
    version: int = 1
    salt: str = ""
    created: float = 0.0
    stopped: bool = False
    state: str = "STARTING"
    reason: str = ""


@dataclass
class JobRec:
    pipeline: str
    id: str
    state: str = "CREATED"
    reason: str = ""
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    version: int = 1
    salt: str = ""
    output_branch: str = "master"
    data_processed: int = 0
    data_skipped: int = 0
    data_failed: int = 0
    data_recovered: int = 0
    data_total: int = 0
    units: int = -1  # -1: not planned yet
    restart: int = 0
    stats: dict[str, float] = field(default_factory=dict)


def _dump(rec: Any) -> bytes:
    return json.dumps(rec.__dict__, separators=(",", ":")).encode()


def _load(cls: type[Any], data: bytes) -> Any:
    return cls(**json.loads(data))


class _PFSSource:
    """``pps.datums.InputSource`` over PFS commits."""

    def __init__(self, pfs: PFS) -> None:
        self.pfs = pfs

    def glob(self, repo: str, commit: str, pattern: str) -> Iterator[Match]:
        tree = self.pfs._commit_tree(self.pfs.resolve(repo, commit))
        for e in tree.glob(compile_glob(pattern)):
            path = e.path.rstrip("/") or "/"
            yield Match(path=path, is_dir=isinstance(e, DirEntry), hash=e.hash, size=e.size)


# --- the service -------------------------------------------------------------


class PPS:
    """Pipelines over a PFS. Thread-safe. See the module docstring."""

    def __init__(self, pfs: PFS, scratch_dir: str, runner: Runner | Callable[[], Runner] | None = None,
                 start: bool = True, role: str = "all") -> None:
        """``role="all"``: masters, cron and workers (the daemon). ``"worker"``:
        only workers, for ``tusk worker`` processes that join a deployment
        through the shared metadata and object stores."""
        self.pfs = pfs
        self.meta = pfs.meta
        self.objects = pfs.objects
        self.scratch_dir = scratch_dir
        self._runner = runner
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._controllers: dict[str, _Controller] = {}
        self._closed = False
        self._lease = 0
        self._lease_thread: threading.Thread | None = None
        self.instance = uuid.uuid4().hex[:12]
        self.role = role
        self._watch: Any = None
        if role == "all":
            pfs.txn_hooks.append(self._txn_hook)
            pfs.on_commit_finished.append(lambda c: self._notify())
            pfs.on_commits_created.append(lambda cs: self._notify())
            pfs.protected_repos = self._protected_repo
        if start:
            self.start()

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        self._lease = self.meta.grant_lease(CLAIM_TTL)
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
                if ev.key.startswith("pipelines/") and self.role == "worker":
                    self._resync()
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
            self._wake.notify_all()
        for c in ctrls:
            c.stop()
        if self._lease:
            try:
                self.meta.revoke_lease(self._lease)
            except TuskError:
                pass

    def _keepalive(self) -> None:
        while not self._closed:
            time.sleep(CLAIM_TTL / 3)
            if self._closed:
                return
            try:
                self.meta.keepalive(self._lease)
            except NotFound:
                self._lease = self.meta.grant_lease(CLAIM_TTL)
            except TuskError as e:
                log.warning("lease keepalive failed: %s", e)

    def _notify(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def runner(self) -> Runner:
        if self._runner is None:
            from pps.runners import default_runner

            self._runner = default_runner()
        if callable(self._runner) and not hasattr(self._runner, "start"):
            self._runner = self._runner()
        return self._runner  # type: ignore[return-value]

    # -- records -----------------------------------------------------------------

    def _pipelines(self) -> list[PipelineRec]:
        return [_load(PipelineRec, kv.value) for kv in self.meta.range("pipelines/")]

    def _get_pipeline(self, name: str) -> PipelineRec:
        kv = self.meta.get(_k_pipeline(name))
        if kv is None:
            from pps.errors import PipelineNotFound

            raise PipelineNotFound(name)
        rec: PipelineRec = _load(PipelineRec, kv.value)
        return rec

    def _put_pipeline(self, rec: PipelineRec) -> None:
        self.meta.put(_k_pipeline(rec.name), _dump(rec))

    def _get_job(self, pipeline: str, job: str) -> JobRec:
        kv = self.meta.get(_k_job(pipeline, job))
        if kv is None:
            from pps.errors import JobNotFound

            raise JobNotFound(pipeline, job)
        rec: JobRec = _load(JobRec, kv.value)
        return rec

    def _put_job(self, rec: JobRec) -> None:
        self.meta.put(_k_job(rec.pipeline, rec.id), _dump(rec))
        self._notify()

    def _jobs(self, pipeline: str) -> list[JobRec]:
        jobs = [_load(JobRec, kv.value) for kv in self.meta.range(f"jobs/{pipeline}/")]
        jobs.sort(key=lambda j: j.created)
        return jobs

    def _protected_repo(self, repo: str) -> str | None:
        if self.meta.get(_k_pipeline(repo)) is not None:
            return ("cannot delete a repo associated with a pipeline - delete the pipeline "
                    f"instead (`tusk delete pipeline {repo}`)")
        return None

    def _txn_hook(self, commits: list[CommitRec]) -> list[Op]:
        """Job records for new output commits, in the commits' transaction."""
        ops: list[Op] = []
        for c in commits:
            kv = self.meta.get(_k_pipeline(c.repo))
            if kv is None:
                continue
            rec: PipelineRec = _load(PipelineRec, kv.value)
            if rec.stopped or c.branch != rec.spec.get("output_branch", "master"):
                continue
            job = JobRec(pipeline=rec.name, id=c.id, created=c.started, version=rec.version,
                         salt=rec.salt, output_branch=c.branch)
            ops.append(Put(_k_job(rec.name, c.id), _dump(job)))
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
        for cron in _cron_inputs(spec):
            try:
                self.pfs.inspect_repo(cron.repo)
            except NotFound:
                self.pfs.create_repo(cron.repo, f"Cron ticks ({cron.spec}) for pipeline {name}.")
        for b in inputs:
            try:
                self.pfs.inspect_repo(b.repo)
            except NotFound:
                raise NotFound(
                    f"input repo {b.repo} of pipeline {name} not found: create it with "
                    f"`tusk create repo {b.repo}` (input.pfs.repo)") from None
            if b.repo == name:
                raise InvalidArgument(f"pipeline {name} cannot read its own output repo")
        with self._lock, self.pfs._lock:
            kv = self.meta.get(_k_pipeline(name))
            now = time.time()
            if kv is not None and not update:
                from pps.errors import PipelineExists

                raise PipelineExists(name)
            if kv is None:
                try:
                    self.pfs.inspect_repo(name)
                    raise AlreadyExists(
                        f"pipeline {name} cannot be created because a repo with the same name "
                        f"already exists (delete the repo or choose another pipeline name)")
                except NotFound:
                    pass
                rec = PipelineRec(name=name, spec=spec.to_dict(), salt=spec.salt or uuid.uuid4().hex,
                                  created=now, state="RUNNING")
                self._put_pipeline(rec)
                try:
                    self.pfs.create_repo(name, f"Output repo for pipeline {name}.")
                    self.pfs.create_branch(name, spec.output_branch, provenance=inputs)
                except BaseException:
                    self.meta.delete(_k_pipeline(name))
                    raise
            else:
                rec = _load(PipelineRec, kv.value)
                old_branch = rec.spec.get("output_branch", "master")
                rec.spec = spec.to_dict()
                rec.version += 1
                if reprocess:
                    rec.salt = uuid.uuid4().hex
                self._put_pipeline(rec)
                if old_branch != spec.output_branch:
                    raise InvalidArgument("changing output_branch on update is not supported: "
                                          "delete and re-create the pipeline")
                if not rec.stopped:
                    # A new job over the current inputs, with the new spec.
                    self.pfs.create_branch(name, spec.output_branch, provenance=inputs)
            self._sync_controller(rec)
        self._notify()
        return self.inspect_pipeline(name)

    def _sync_controller(self, rec: PipelineRec) -> None:
        with self._lock:
            if self._closed:
                return
            old = self._controllers.get(rec.name)
            spec = spec_from_dict(rec.spec)
            if old is not None and old.version == rec.version:
                return
            if old is not None:
                old.stop(join=False)
            ctrl = _Controller(self, rec.name, rec.version, spec)
            self._controllers[rec.name] = ctrl
            ctrl.start()

    def _pipeline_info(self, rec: PipelineRec) -> PipelineInfo:
        jobs = self._jobs(rec.name)
        last = JobState(jobs[-1].state) if jobs else None
        state = PipelineState.PAUSED if rec.stopped else PipelineState(rec.state)
        return PipelineInfo(name=rec.name, version=rec.version, spec=rec.spec, state=state,
                            reason=rec.reason, created=rec.created, last_job_state=last,
                            salt=rec.salt, stopped=rec.stopped,
                            description=rec.spec.get("description", ""))

    def inspect_pipeline(self, name: str) -> PipelineInfo:
        return self._pipeline_info(self._get_pipeline(name))

    def list_pipeline(self) -> list[PipelineInfo]:
        out = [self._pipeline_info(r) for r in self._pipelines()]
        out.sort(key=lambda p: p.created, reverse=True)
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
        with self.pfs._lock:
            self.meta.delete(_k_pipeline(name))
            for prefix in (f"jobs/{name}/", f"queue/{name}/", f"claims/{name}/", f"done/{name}/"):
                while True:
                    batch = [kv.key for kv in self.meta.range(prefix, limit=100)]
                    if not batch:
                        break
                    self.meta.txn([], [Delete(k) for k in batch])
            if not keep_repo:
                for cron in _cron_inputs(spec_from_dict(rec.spec)):
                    try:
                        self.pfs.delete_repo(cron.repo, force=True)
                    except NotFound:
                        pass
            if keep_repo:
                b = self.pfs._get_branch(name, rec.spec.get("output_branch", "master"))
                if b is not None:
                    self.pfs.set_branch_provenance(name, b.name, [], new_head=False)
            else:
                try:
                    self.pfs.delete_repo(name, force=True)
                except NotFound:
                    pass

    def stop_pipeline(self, name: str) -> None:
        with self._lock:
            rec = self._get_pipeline(name)
            rec.stopped = True
            self._put_pipeline(rec)
            self.pfs.set_branch_provenance(name, rec.spec.get("output_branch", "master"), [],
                                           new_head=False)
            for j in self._jobs(name):
                if JobState(j.state) not in TERMINAL_JOB_STATES:
                    self._kill_job(j, "pipeline stopped")

    def start_pipeline(self, name: str) -> None:
        with self._lock:
            rec = self._get_pipeline(name)
            if not rec.stopped:
                return
            rec.stopped = False
            self._put_pipeline(rec)
            spec = spec_from_dict(rec.spec)
            self.pfs.set_branch_provenance(name, spec.output_branch, self._input_branches(spec),
                                           new_head=True)

    def run_cron(self, name: str) -> None:
        """Tick every cron input of pipeline ``name`` now (``tusk run cron``)."""
        rec = self._get_pipeline(name)
        crons = _cron_inputs(spec_from_dict(rec.spec))
        if not crons:
            raise FailedPrecondition(f"pipeline {name} has no cron input")
        for cron in crons:
            self._tick(name, cron, time.time())

    def _tick(self, pipeline: str, cron: Any, when: float) -> None:
        """Commit one tick file (named by its RFC 3339 time) to the cron repo."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))
        with self.pfs.modify_file(cron.repo, "master") as w:
            if cron.overwrite:
                w.delete_file("/")
            w.put_file(f"/{stamp}", [b""])
        self.meta.put(f"cron/{pipeline}/{cron.name}", json.dumps({"last": when}).encode())

    # -- jobs ----------------------------------------------------------------------

    def _job_info(self, j: JobRec) -> JobInfo:
        inputs: tuple[CommitRef, ...] = ()
        c = self.pfs._get_commit(j.pipeline, j.id)
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
        names = [pipeline] if pipeline else [r.name for r in self._pipelines()]
        if pipeline:
            self._get_pipeline(pipeline)
        jobs = [j for n in names for j in self._jobs(n)]
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
                j = self._get_job(pipeline, j.id)
                if JobState(j.state) in TERMINAL_JOB_STATES:
                    return self._job_info(j)
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TuskError(f"timed out waiting for job {pipeline}@{j.id} "
                                    f"(state {j.state})")
                self._wake.wait(0.5 if left is None else min(0.5, left))

    def _resolve_job(self, pipeline: str, job: str) -> JobRec:
        self._get_pipeline(pipeline)
        if job and self.meta.get(_k_job(pipeline, job)) is not None:
            return self._get_job(pipeline, job)
        # A commit ref on the output repo names the job with the same ID.
        c = self.pfs.resolve(pipeline, job or "master")
        return self._get_job(pipeline, c.id)

    def stop_job(self, pipeline: str, job: str) -> None:
        j = self._resolve_job(pipeline, job)
        if JobState(j.state) in TERMINAL_JOB_STATES:
            return
        self._kill_job(j, "job stopped by the user (stop job)")

    def _kill_job(self, j: JobRec, reason: str) -> None:
        with self._lock:
            j = self._get_job(j.pipeline, j.id)
            if JobState(j.state) in TERMINAL_JOB_STATES:
                return
            self._drop_queue(j)
            self._end_job(j, JobState.KILLED, reason)

    def _end_job(self, j: JobRec, state: JobState, reason: str) -> None:
        """Finish the output commit (with the reason as its error), then mark
        the job terminal: whoever sees the terminal state sees the commit."""
        self._finish_output(j, error=reason)
        j.state = state.value
        j.reason = reason
        j.finished = time.time()
        self._put_job(j)

    def _drop_queue(self, j: JobRec) -> None:
        keys = [kv.key for kv in self.meta.range(f"queue/{j.pipeline}/{j.id}/")]
        for i in range(0, len(keys), 100):
            self.meta.txn([], [Delete(k) for k in keys[i:i + 100]])

    def _finish_output(self, j: JobRec, error: str = "") -> None:
        try:
            c = self.pfs._get_commit(j.pipeline, j.id)
            if c is not None and c.finishing is None:
                self.pfs.finish_commit(j.pipeline, j.id, error=error, force=True)
        except TuskError as e:
            log.warning("could not finish output commit %s@%s: %s", j.pipeline, j.id, e)

    # -- datums and logs --------------------------------------------------------------

    def _read_obj(self, key: str) -> Any:
        try:
            return msgpack.unpackb(self.objects.get(key), raw=False)
        except ObjectNotFound:
            return None

    def _unit_results(self, j: JobRec) -> Iterator[dict[str, Any]]:
        if j.units <= 0:
            return
        for n in range(j.units):
            data = self._read_obj(_o_unit(j.pipeline, j.id, n))
            if data is not None:
                yield from data

    def list_datum(self, pipeline: str, job: str) -> Iterator[DatumInfo]:
        j = self._resolve_job(pipeline, job)
        plan = self._read_obj(_o_plan(pipeline, j.id)) or {"process": [], "skipped": []}
        inputs = {d[0]: PlannedDatum.decode(d) for d in plan["process"]}
        done: set[str] = set()
        for r in self._unit_results(j):
            done.add(r["id"])
            yield self._datum_info(j, r["id"], r, inputs.get(r["id"]))
        for d in plan["process"]:
            if d[0] not in done:
                pd = PlannedDatum.decode(d)
                yield DatumInfo(id=pd.id, pipeline=pipeline, job_id=j.id, state=DatumState.PENDING,
                                files=_files(pd), hash=pd.hash)
        for s in plan["skipped"]:
            yield DatumInfo(id=s["id"], pipeline=pipeline, job_id=j.id, state=DatumState.SKIPPED,
                            files=tuple(DatumFile(*f) for f in s.get("files", [])), hash=s["hash"],
                            outputs=tuple(s.get("outputs", [])))

    def _datum_info(self, j: JobRec, did: str, r: dict[str, Any],
                    pd: PlannedDatum | None) -> DatumInfo:
        return DatumInfo(id=did, pipeline=j.pipeline, job_id=j.id, state=DatumState(r["state"]),
                         files=_files(pd) if pd else (), hash=r["hash"], reason=r["reason"],
                         attempts=r["attempts"], duration=r["duration"],
                         outputs=tuple(o[0] for o in r["outputs"]), stats=r.get("stats", {}))

    def inspect_datum(self, pipeline: str, job: str, datum: str) -> DatumInfo:
        for d in self.list_datum(pipeline, job):
            if d.id == datum or d.id.startswith(datum):
                return d
        from pps.errors import DatumNotFound

        raise DatumNotFound(pipeline, job, datum)

    def list_datum_for_spec(self, spec: PipelineSpec | dict[str, Any]) -> list[DatumInfo]:
        """Datums a spec would have over the current input heads (nothing is created)."""
        if isinstance(spec, dict):
            spec = spec_from_dict(spec)
        commits = {}
        for leaf in spec.input.leaves():
            commits[leaf.name] = self.pfs.resolve(leaf.repo, leaf.branch).id  # type: ignore[union-attr]
        out = []
        for d in enumerate_datums(spec.input, commits, _PFSSource(self.pfs)):
            pd = _planned(d, "")
            out.append(DatumInfo(id=d.id, pipeline=spec.name, job_id="", state=DatumState.PENDING,
                                 files=_files(pd), hash=""))
        return out

    def get_logs(self, pipeline: str, job: str | None = None, datum: str | None = None,
                 follow: bool = False, cancel: threading.Event | None = None) -> Iterator[LogLine]:
        self._get_pipeline(pipeline)
        seen: set[tuple[str, int]] = set()
        while True:
            jobs = [self._resolve_job(pipeline, job)] if job else self._jobs(pipeline)
            for j in jobs:
                if j.units <= 0:
                    continue
                for n in range(j.units):
                    if (j.id, n) in seen:
                        continue
                    data = self._read_obj(_o_unit(pipeline, j.id, n))
                    if data is None:
                        continue
                    seen.add((j.id, n))
                    for r in data:
                        if datum and not r["id"].startswith(datum):
                            continue
                        for ts, stream, text in r["logs"]:
                            for line in text.splitlines():
                                yield LogLine(pipeline=pipeline, job_id=j.id, datum_id=r["id"],
                                              ts=ts, stream=stream, message=line,
                                              worker=r.get("worker", ""))
            if not follow or (cancel is not None and cancel.is_set()):
                return
            with self._wake:
                self._wake.wait(0.5)
            if cancel is not None and cancel.is_set():
                return


def _cron_inputs(spec: PipelineSpec) -> list[Any]:
    return [leaf for leaf in spec.input.leaves() if hasattr(leaf, "overwrite")]


def _next_tick(schedule: str, after: float) -> float:
    """The first scheduled time strictly after ``after`` (epoch seconds)."""
    from pps.spec import parse_duration

    if schedule.startswith("@every "):
        return after + parse_duration(schedule[len("@every "):])
    import datetime

    from croniter import croniter

    base = datetime.datetime.fromtimestamp(after, tz=datetime.timezone.utc)
    nxt: float = croniter(schedule, base).get_next(float)
    return nxt


def _parse_start(start: str, default: float) -> float:
    if not start:
        return default
    import datetime

    return datetime.datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp()


def _files(pd: PlannedDatum | None) -> tuple[DatumFile, ...]:
    if pd is None:
        return ()
    return tuple(DatumFile(i.name, i.repo, i.commit, i.path, i.hash) for i in pd.inputs)


def _planned(d: Datum, salt: str) -> PlannedDatum:
    return PlannedDatum(
        id=d.id, hash=d.hash(salt) if salt is not None else "",
        inputs=tuple(DatumInputRec(name=i.name, repo=i.repo, branch=i.branch, commit=i.commit,
                                   path=i.path, is_dir=i.is_dir, hash=i.hash.hex(),
                                   join_on=i.join_on, group_by=i.group_by,
                                   empty_files=i.empty_files) for i in d.inputs))


# --- per-pipeline master and workers ------------------------------------------


class _Controller:
    """The master thread and worker threads of one pipeline version."""

    def __init__(self, pps: PPS, name: str, version: int, spec: PipelineSpec) -> None:
        self.pps = pps
        self.name = name
        self.version = version
        self.spec = spec
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        if self.pps.role == "all":
            self.threads.append(threading.Thread(target=self._master_loop,
                                                 name=f"pps-master-{self.name}", daemon=True))
        n = max(1, self.spec.parallelism_spec.constant or 1)
        for i in range(n):
            self.threads.append(threading.Thread(target=self._worker_loop, args=(i,),
                                                 name=f"pps-worker-{self.name}-{i}", daemon=True))
        for cron in _cron_inputs(self.spec) if self.pps.role == "all" else []:
            self.threads.append(threading.Thread(target=self._cron_loop, args=(cron,),
                                                 name=f"pps-cron-{self.name}-{cron.name}",
                                                 daemon=True))
        for t in self.threads:
            t.start()

    MAX_CATCH_UP = 100  # ticks made at once for a start time in the past

    def _cron_loop(self, cron: Any) -> None:
        pps = self.pps
        while not self.stop_event.is_set():
            try:
                rec = pps._get_pipeline(self.name)
                kv = pps.meta.get(f"cron/{self.name}/{cron.name}")
                last = (json.loads(kv.value)["last"] if kv is not None
                        else _parse_start(cron.start, rec.created) - 1e-6)
                due = _next_tick(cron.spec, last)
                now = time.time()
                if rec.stopped or due > now:
                    self.stop_event.wait(min(1.0, max(0.01, due - now)))
                    continue
                for _ in range(self.MAX_CATCH_UP):
                    pps._tick(self.name, cron, due)
                    due = _next_tick(cron.spec, due)
                    if due > time.time():
                        break
            except TuskError as e:
                log.warning("pipeline %s cron %s: %s", self.name, cron.name, e)
                self.stop_event.wait(1.0)

    def stop(self, join: bool = True) -> None:
        """Stop the threads. Callers holding the PPS lock must not join: the
        threads need that lock to notice the stop."""
        self.stop_event.set()
        self.pps._notify()
        if not join:
            return
        for t in self.threads:
            if t is not threading.current_thread():
                t.join(timeout=30)

    def _wait(self, seconds: float = 5.0) -> None:
        # Woken by in-process notifications and by the metadata watch; the
        # timeout is only a safety net.
        with self.pps._wake:
            if not self.stop_event.is_set():
                self.pps._wake.wait(seconds)

    # -- master ----------------------------------------------------------------------

    def _master_loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                job = next((j for j in self.pps._jobs(self.name)
                            if JobState(j.state) not in TERMINAL_JOB_STATES), None)
                if job is None:
                    self._wait()
                    continue
                self._drive(job)
            except TuskError as e:
                log.warning("pipeline %s master: %s (retrying)", self.name, e)
                self._wait(1.0)
            except Exception:
                log.exception("pipeline %s master crashed (retrying)", self.name)
                self._wait(1.0)

    def _alive(self, j: JobRec) -> JobRec | None:
        """The job's current record, or None if it was killed/deleted."""
        try:
            cur = self.pps._get_job(j.pipeline, j.id)
        except NotFound:
            return None
        if JobState(cur.state) in TERMINAL_JOB_STATES:
            return None
        return cur

    def _drive(self, j: JobRec) -> None:
        pps, pfs = self.pps, self.pps.pfs
        out = pfs._get_commit(self.name, j.id)
        if out is None:
            j.state, j.reason, j.finished = "KILLED", "output commit was deleted", time.time()
            pps._put_job(j)
            return
        if j.state == JobState.CREATED.value:
            j.state = JobState.STARTING.value
            pps._put_job(j)
        # STARTING: wait for the input commits (and the parent output commit).
        while True:
            cur = self._alive(j)
            if cur is None or self.stop_event.is_set():
                return
            j = cur
            out = pfs._get_commit(self.name, j.id)
            if out is None:
                return
            pending = []
            failed = []
            for r, _, cid in out.provenance:
                c = pfs._get_commit(r, cid)
                if c is None:
                    continue
                if c.finished is None:
                    pending.append(r)
                elif c.error:
                    failed.append(r)
            if not pending:
                break
            self._wait()
        if failed:
            pps._end_job(j, JobState.UNRUNNABLE,
                         "unrunnable because the following upstream pipelines failed: "
                         + ", ".join(sorted(set(failed))))
            return
        if j.units < 0:
            self._plan(j, out)
            j = self.pps._get_job(j.pipeline, j.id)
        # RUNNING: wait for every unit, re-queueing units of dead workers.
        while True:
            cur = self._alive(j)
            if cur is None or self.stop_event.is_set():
                return
            j = cur
            if self.spec.job_timeout and j.started and time.time() - j.started > self.spec.job_timeout:
                pps._kill_job(j, f"job exceeded its job_timeout ({self.spec.job_timeout:g}s)")
                return
            done = sum(1 for _ in pps.meta.range(f"done/{self.name}/{j.id}/"))
            if done >= j.units:
                break
            self._requeue_dead(j)
            self._update_counts(j)
            wait = 5.0
            if self.spec.job_timeout and j.started:
                wait = max(0.05, min(wait, j.started + self.spec.job_timeout - time.time()))
            self._wait(wait)
        self._merge(j)

    def _plan(self, j: JobRec, out: CommitRec) -> None:
        pps = self.pps
        commits: dict[str, str] = {}
        prov = {(r, b): cid for r, b, cid in out.provenance}
        for leaf in self.spec.input.leaves():
            repo = getattr(leaf, "repo", "")
            cid = prov.get((repo, getattr(leaf, "branch", "master")))
            if cid is None:
                cid = next((c for (r, _), c in prov.items() if r == repo), None)
            if cid is None:
                cid = pps.pfs.resolve(repo, getattr(leaf, "branch", "master")).id
            commits[leaf.name] = cid
        base = self._base_index(j)
        no_skip = self.spec.reprocess_spec == "every_job"
        process: list[list[Any]] = []
        skipped: list[dict[str, Any]] = []
        current: set[str] = set()
        for d in enumerate_datums(self.spec.input, commits, _PFSSource(pps.pfs)):
            pd = _planned(d, j.salt)
            if pd.id in current:
                continue
            current.add(pd.id)
            b = base.get(pd.id)
            if b is not None and not no_skip and b["hash"] == pd.hash and b["state"] == "success":
                # Keep the inputs of the run that produced the outputs (lineage).
                skipped.append({**b, "files": b.get("files") or
                                [list(f.__dict__.values()) for f in _files(pd)]})
            else:
                process.append(pd.encode())
        removed = [b for did, b in base.items() if did not in current]
        reprocessed_outputs = [p for d in process if d[0] in base for p in base[d[0]]["outputs"]]
        plan = {"process": process, "skipped": skipped, "unit_size": unit_size(
                    len(process), self.spec.parallelism_spec.constant or 1),
                "delete": [p for b in removed for p in b["outputs"]] + reprocessed_outputs}
        pps.objects.put(_o_plan(self.name, j.id), msgpack.packb(plan))
        size = unit_size(len(process), self.spec.parallelism_spec.constant or 1)
        nunits = (len(process) + size - 1) // size
        ops: list[Op] = [Put(_k_queue(self.name, j.id, n), b"") for n in range(nunits)]
        for i in range(0, len(ops), 100):
            pps.meta.txn([], ops[i:i + 100])
        j.units = nunits
        j.data_total = len(process) + len(skipped)
        j.data_skipped = len(skipped)
        j.state = JobState.RUNNING.value
        j.started = time.time()
        pps._put_job(j)

    def _base_index(self, j: JobRec) -> dict[str, dict[str, Any]]:
        """Datums of the last successful job before ``j`` (reference 2.4)."""
        for prev in reversed(self.pps._jobs(self.name)):
            if prev.created >= j.created or prev.id == j.id:
                continue
            if prev.state == JobState.SUCCESS.value and prev.output_branch == j.output_branch:
                data = self.pps._read_obj(_o_index(self.name, prev.id)) or []
                return {d["id"]: d for d in data}
        return {}

    def _requeue_dead(self, j: JobRec) -> None:
        meta = self.pps.meta
        for n in range(j.units):
            if meta.get(_k_done(self.name, j.id, n)) is not None:
                continue
            if meta.get(_k_queue(self.name, j.id, n)) is not None:
                continue
            if meta.get(_k_claim(self.name, j.id, n)) is not None:
                continue
            # Neither queued, claimed nor done: its worker died. Retry it.
            meta.txn([Compare(_k_queue(self.name, j.id, n), 0), Compare(_k_claim(self.name, j.id, n), 0)],
                     [Put(_k_queue(self.name, j.id, n), b"")])

    def _update_counts(self, j: JobRec) -> None:
        processed = failed = recovered = 0
        for r in self.pps._unit_results(j):
            if r["state"] == "success":
                processed += 1
            elif r["state"] == "failed":
                failed += 1
            else:
                recovered += 1
        if (processed, failed, recovered) != (j.data_processed, j.data_failed, j.data_recovered):
            j.data_processed, j.data_failed, j.data_recovered = processed, failed, recovered
            self.pps._put_job(j)

    def _merge(self, j: JobRec) -> None:
        pps, pfs = self.pps, self.pps.pfs
        results = list(pps._unit_results(j))
        plan = pps._read_obj(_o_plan(self.name, j.id))
        failed = [r for r in results if r["state"] == "failed"]
        j.data_processed = sum(1 for r in results if r["state"] == "success")
        j.data_failed = len(failed)
        j.data_recovered = sum(1 for r in results if r["state"] == "recovered")
        stats: dict[str, float] = {}
        for r in results:
            for k, v in r.get("stats", {}).items():
                stats[k] = stats.get(k, 0.0) + v
        j.stats = stats
        if failed:
            first = failed[0]
            pps._end_job(j, JobState.FAILURE, f"datum {first['id'][:12]} failed: {first['reason']}")
            return
        # Every output path must come from exactly one datum.
        owner: dict[str, str] = {}
        deleted = set(plan["delete"])
        for s in plan["skipped"]:
            for p in s["outputs"]:
                owner[p] = s["id"]
        collision = ""
        for r in results:
            for o in r["outputs"]:
                other = owner.get(o[0])
                if other is not None and other != r["id"]:
                    collision = (f"output path {o[0]} was written by two datums, {other[:12]} and "
                                 f"{r['id'][:12]}: each output path must come from one datum "
                                 "(name outputs after $PACH_DATUM_ID, and merge them in a "
                                 "downstream pipeline)")
                    break
                owner[o[0]] = r["id"]
            if collision:
                break
        if collision:
            pps._end_job(j, JobState.FAILURE, collision)
            return
        j.state = JobState.FINISHING.value
        pps._put_job(j)
        c = pfs._get_commit(self.name, j.id)
        if c is not None and c.finishing is None:
            w = pfs.modify_file(self.name, j.id)
            for p in sorted(deleted):
                if p not in owner:
                    w.delete_file(p)
            for r in results:
                for path, size, chunks in r["outputs"]:
                    w.put_chunks(path, [as_ref(x) for x in chunks], size, datum=r["id"])
            w.close()
        planned = {d[0]: PlannedDatum.decode(d) for d in plan["process"]}
        index = list(plan["skipped"]) + [
            {"id": r["id"], "hash": r["hash"], "state": r["state"], "job": j.id,
             "outputs": [o[0] for o in r["outputs"]],
             "files": [list(f.__dict__.values()) for f in _files(planned.get(r["id"]))]}
            for r in results]
        pps.objects.put(_o_index(self.name, j.id), msgpack.packb(index))
        if c is not None and c.finishing is None:
            pfs.finish_commit(self.name, j.id, force=True)
        j = pps._get_job(self.name, j.id)
        if JobState(j.state) in TERMINAL_JOB_STATES:
            return
        j.state = JobState.SUCCESS.value
        j.finished = time.time()
        if j.data_processed == 0 and j.data_recovered == 0:
            j.reason = "there were no datums to process" if j.data_total else ""
        j.stats = stats
        pps._put_job(j)

    # -- workers -----------------------------------------------------------------

    def _worker_loop(self, index: int) -> None:
        pps = self.pps
        session: Session | None = None
        worker: DatumWorker | None = None
        # Stable per worker slot: after a crash the runner finds (and removes) the
        # dead instance's container by this work dir.
        scratch = os.path.join(pps.scratch_dir, f"{self.name}-v{self.version}-w{index}")
        try:
            while not self.stop_event.is_set():
                claimed = self._claim()
                if claimed is None:
                    self._wait()
                    continue
                job_id, n = claimed
                try:
                    if worker is None:
                        os.makedirs(scratch, exist_ok=True)
                        session = pps.runner().start(self._runner_spec(), os.path.join(scratch, "runner"))
                        worker = DatumWorker(self.spec, session, os.path.join(scratch, "datum"),
                                             self._tree_for, self._read_chunks, pps.pfs.blobs.writer)
                    self._run_unit(worker, job_id, n)
                except Exception as e:
                    log.exception("pipeline %s worker %d: unit %d of job %s failed", self.name,
                                  index, n, job_id)
                    # Give the unit back; the master re-queues it.
                    pps.meta.delete(_k_claim(self.name, job_id, n))
                    if isinstance(e, TuskError):
                        self._wait(1.0)
        finally:
            if session is not None:
                session.close()
            shutil.rmtree(scratch, ignore_errors=True)

    def _runner_spec(self) -> RunnerSpec:
        limits = self.spec.resource_limits
        t = self.spec.transform
        return RunnerSpec(image=t.image, user=t.user or None, working_dir=t.working_dir or None,
                          memory_bytes=limits.memory if limits and limits.memory else None,
                          cpus=limits.cpu if limits and limits.cpu else None)

    def _claim(self) -> tuple[str, int] | None:
        meta = self.pps.meta
        for kv in meta.range(f"queue/{self.name}/", limit=16):
            _, _, job_id, n = kv.key.split("/")
            ok = meta.txn([Compare(kv.key, kv.mod_revision)],
                          [Delete(kv.key),
                           Put(_k_claim(self.name, job_id, int(n)), self.pps.instance.encode(),
                               lease=self.pps._lease)])
            if ok:
                return job_id, int(n)
        return None

    def _tree_for(self, repo: str, commit: str) -> Tree:
        pfs = self.pps.pfs
        rec = pfs._get_commit(repo, commit)
        if rec is None:
            raise NotFound(f"input commit {repo}@{commit} no longer exists")
        return pfs._commit_tree(rec)

    def _read_chunks(self, refs: list[Any]) -> Iterator[bytes]:
        return self.pps.pfs.blobs.read_chunks(refs)

    def _run_unit(self, worker: DatumWorker, job_id: str, n: int) -> None:
        pps = self.pps
        plan = pps._read_obj(_o_plan(self.name, job_id))
        size = plan.get("unit_size", UNIT_TARGET)
        datums = [PlannedDatum.decode(d) for d in plan["process"][n * size:(n + 1) * size]]
        results: list[DatumResult] = []
        for d in datums:
            j = pps._get_job(self.name, job_id)
            if JobState(j.state) in TERMINAL_JOB_STATES or self.stop_event.is_set():
                pps.meta.delete(_k_claim(self.name, job_id, n))
                return
            results.append(worker.run(job_id, d))
        pps.objects.put(_o_unit(self.name, job_id, n),
                        msgpack.packb([{**r.encode(), "worker": pps.instance} for r in results]))
        pps.meta.txn([], [Delete(_k_claim(self.name, job_id, n)),
                          Put(_k_done(self.name, job_id, n), b"")])
        pps._notify()
