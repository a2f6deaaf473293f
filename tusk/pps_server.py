"""The gRPC adapter for PPS: ``proto/pps.proto``'s service on top of ``pps.api.PPS``.

Like :mod:`tusk.server` for PFS, this module only translates: requests become
calls on the core, the frozen dataclasses of ``pps.model`` become messages, and
typed errors become gRPC statuses through the one table in :mod:`tusk.server`
(its ``_unary``/``_stream`` wrappers are reused, not copied).

Pipeline specs arrive as text and are parsed here with ``pps.spec.parse_spec``
so every validation error (an ``InvalidSpec`` naming the field) reaches the
client unchanged.

Calls that block -- ``InspectJob`` with ``wait`` and ``GetLogs`` with ``follow``
-- end when the client goes away: a callback on the call context sets an event
the wait checks, so an abandoned call never holds a server thread for good.

Register the service with :func:`registrar` (``tusk.server.serve(...,
registrars=[registrar(pps)])``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import grpc
from google.protobuf import empty_pb2, struct_pb2

from pfs import errors
from pps import lineage, model
from pps.spec import parse_spec
from tusk.api import pps_pb2, pps_pb2_grpc
from tusk.server import _commit, _stream, _ts, _unary
from tusk.transactions import Preview, TxnRecord, hub_for, transactional

if TYPE_CHECKING:
    from pps.api import PPS

#: How often a waiting ``InspectJob`` re-reads the job. The core's own wait
#: cannot be cancelled by a departing client, so the servicer polls instead;
#: a job record read is one metadata ``get``.
JOB_POLL_SECONDS = 0.1


# --- model -> messages ----------------------------------------------------------


def _pipeline(name: str) -> pps_pb2.Pipeline:
    return pps_pb2.Pipeline(name=name)


def _job(pipeline: str, job_id: str) -> pps_pb2.Job:
    return pps_pb2.Job(pipeline=_pipeline(pipeline), id=job_id)


def _job_state(state: model.JobState | None) -> str:
    # Message constructors take enum values by name; the names are Pachyderm's.
    return "JOB_STATE_UNKNOWN" if state is None else f"JOB_{state.value}"


#: pps.model.DatumState (pachctl's lowercase words) -> Pachyderm's enum names.
_DATUM_STATE: dict[model.DatumState, str] = {
    model.DatumState.SUCCESS: "SUCCESS",
    model.DatumState.SKIPPED: "SKIPPED",
    model.DatumState.FAILED: "FAILED",
    model.DatumState.RECOVERED: "RECOVERED",
    model.DatumState.PENDING: "STARTING",
}


def pipeline_info_msg(pi: model.PipelineInfo) -> pps_pb2.PipelineInfo:
    spec = struct_pb2.Struct()
    # Struct has only doubles: integers such as datum_tries come back as 2.0.
    spec.update(pi.spec)
    return pps_pb2.PipelineInfo(
        pipeline=_pipeline(pi.name),
        version=pi.version,
        spec=spec,
        state=f"PIPELINE_{pi.state.value}",
        reason=pi.reason,
        created_at=_ts(pi.created),
        last_job_state=_job_state(pi.last_job_state),
        salt=pi.salt,
        stopped=pi.stopped,
        description=pi.description,
    )


def job_info_msg(ji: model.JobInfo) -> pps_pb2.JobInfo:
    return pps_pb2.JobInfo(
        job=_job(ji.pipeline, ji.id),
        state=_job_state(ji.state),
        reason=ji.reason,
        created=_ts(ji.created),
        started=_ts(ji.started),
        finished=_ts(ji.finished),
        data_processed=ji.data_processed,
        data_skipped=ji.data_skipped,
        data_failed=ji.data_failed,
        data_recovered=ji.data_recovered,
        data_total=ji.data_total,
        pipeline_version=ji.pipeline_version,
        salt=ji.salt,
        output_commit=_commit(ji.output_commit),
        input_commits=[_commit(c) for c in ji.input_commits],
        restart=ji.restart,
        stats=ji.stats,
    )


def datum_info_msg(di: model.DatumInfo) -> pps_pb2.DatumInfo:
    return pps_pb2.DatumInfo(
        # A preview datum belongs to no job: leave `job` unset.
        datum=pps_pb2.Datum(job=_job(di.pipeline, di.job_id) if di.job_id else None, id=di.id),
        state=_DATUM_STATE[di.state],
        files=[pps_pb2.DatumFile(input=f.input, repo=f.repo, commit=f.commit, path=f.path,
                                 hash=f.hash) for f in di.files],
        hash=di.hash,
        reason=di.reason,
        attempts=di.attempts,
        duration=di.duration,
        outputs=list(di.outputs),
        stats=di.stats,
    )


def log_msg(line: model.LogLine) -> pps_pb2.LogMessage:
    return pps_pb2.LogMessage(
        pipeline_name=line.pipeline,
        job_id=line.job_id,
        datum_id=line.datum_id,
        ts=_ts(line.ts),
        stream=line.stream,
        message=line.message,
        worker=line.worker,
        master=line.master,
    )


def _fill_lineage(msg: pps_pb2.LineageNode, node: lineage.LineageNode) -> None:
    # Filled in place, top-down (children.add()): assigning built children
    # would copy each subtree once per level above it.
    msg.truncated, msg.repeated, msg.note = node.truncated, node.repeated, node.note
    if node.file is not None:
        f = node.file
        msg.file.file.commit.repo, msg.file.file.commit.id = f.repo, f.commit
        msg.file.file.path = f.path
        msg.file.is_dir, msg.file.hash = f.is_dir, f.hash
        msg.file.input, msg.file.user_data = f.input, f.user_data
    elif node.datum is not None:
        d = node.datum
        if d.job:
            msg.datum.datum.job.CopyFrom(_job(d.pipeline, d.job))
        msg.datum.datum.id = d.id
        known = d.state in model.DatumState._value2member_map_
        msg.datum.state = pps_pb2.DatumState.Value(
            _DATUM_STATE[model.DatumState(d.state)] if known else "UNKNOWN")
    for c in node.children:
        _fill_lineage(msg.children.add(), c)


def lineage_msg(res: lineage.LineageResult) -> pps_pb2.LineageTree:
    tree = pps_pb2.LineageTree(
        nodes=res.nodes, truncated=res.truncated,
        direction="DOWNSTREAM" if res.direction == lineage.Direction.DOWNSTREAM else "UPSTREAM")
    _fill_lineage(tree.root, res.root)
    return tree


# --- messages -> core arguments ---------------------------------------------------


def _name(p: pps_pb2.Pipeline) -> str:
    if not p.name:
        raise errors.InvalidArgument("pipeline name is required")
    return p.name


def _job_ref(j: pps_pb2.Job) -> tuple[str, str]:
    if not j.id:
        raise errors.InvalidArgument(
            f"no job given for pipeline {j.pipeline.name or '?'}: use PIPELINE@JOB-ID "
            "(or PIPELINE@BRANCH for the job of the output branch's head)")
    return _name(j.pipeline), j.id


def _cancel_event(ctx: grpc.ServicerContext) -> threading.Event:
    """An event set when the call ends for any reason (client cancel, deadline)."""
    cancel = threading.Event()
    ctx.add_callback(cancel.set)
    if not ctx.is_active():  # ended before the callback was registered
        cancel.set()
    return cancel


# --- the servicer -----------------------------------------------------------------


def _txn_pipeline(_: object, txn: TxnRecord, req: pps_pb2.CreatePipelineRequest
                  ) -> pps_pb2.PipelineInfo:
    """A CreatePipeline queued in a transaction: the spec is checked now."""
    spec = parse_spec(req.spec_json, req.default_project or "default")
    info = pps_pb2.PipelineInfo(pipeline=pps_pb2.Pipeline(name=spec.name))
    info.warnings.extend(spec.warnings())
    return info


class PPSServicer:
    """Implements service ``tusk.pps.API`` by delegating to a :class:`pps.api.PPS`.

    Not a subclass of the generated ``APIServicer`` (an untyped base);
    ``add_APIServicer_to_server`` only looks methods up by name.
    """

    def __init__(self, pps: PPS) -> None:
        self.pps = pps
        self.txns = hub_for(pps.pfs.meta)
        self.txns.register(self, {"CreatePipeline": pps_pb2.CreatePipelineRequest})
        self.txns.checkers["CreatePipeline"] = self._check_create_pipeline
        self.txns.undoers["CreatePipeline"] = self._undo_create_pipeline

    def _undo_create_pipeline(self, data: bytes) -> Callable[[], None] | None:
        """A new pipeline is deleted again; an updated one keeps its new
        version (a spec update cannot be taken back, its jobs may have run)."""
        req = pps_pb2.CreatePipelineRequest.FromString(data)
        name = parse_spec(req.spec_json, req.default_project or "default").name
        try:
            self.pps.inspect_pipeline(name)
        except errors.NotFound:
            return lambda: self.pps.delete_pipeline(name, force=True)
        return None

    def _check_create_pipeline(self, data: bytes, pv: Preview) -> None:
        """A queued CreatePipeline, checked against what the earlier requests do."""
        req = pps_pb2.CreatePipelineRequest.FromString(data)
        spec = parse_spec(req.spec_json, req.default_project or "default")

        def exists(repo: str) -> bool:
            if repo in pv.repos:
                return pv.repos[repo]
            try:
                self.pps.pfs.inspect_repo(repo)
            except errors.NotFound:
                return False
            return True

        crons = {c.repo for c in spec.input.leaves() if hasattr(c, "overwrite")}
        for leaf in spec.input.leaves():
            if leaf.repo not in crons and not exists(leaf.repo):
                raise errors.NotFound(
                    f"input repo {leaf.repo} of pipeline {spec.name} not found: create it "
                    f"with `tusk create repo {leaf.repo}` (input.pfs.repo)")
        known = pv.pipelines.get(spec.name)
        if known is None:
            try:
                self.pps.inspect_pipeline(spec.name)
                known = True
            except errors.NotFound:
                known = False
        update = req.update or spec.update
        if known and not update:
            raise errors.AlreadyExists(f"pipeline {spec.name} already exists")
        if not known and exists(spec.name):
            raise errors.AlreadyExists(
                f"pipeline {spec.name} cannot be created because a repo with the same name "
                "already exists (delete the repo or choose another pipeline name)")
        pv.pipelines[spec.name] = True
        pv.repos[spec.name] = True

    # pipelines

    @transactional(_txn_pipeline, direct=lambda req: bool(req.dry_run))
    @_unary
    def CreatePipeline(self, req: pps_pb2.CreatePipelineRequest, ctx: grpc.ServicerContext
                       ) -> pps_pb2.PipelineInfo:
        spec = parse_spec(req.spec_json, req.default_project or "default")
        if req.dry_run:
            msg = pipeline_info_msg(self.pps.check_pipeline(spec, update=req.update))
        else:
            msg = pipeline_info_msg(
                self.pps.create_pipeline(spec, update=req.update, reprocess=req.reprocess))
        msg.warnings.extend(spec.warnings())
        return msg

    @_unary
    def InspectPipeline(self, req: pps_pb2.InspectPipelineRequest, ctx: grpc.ServicerContext
                        ) -> pps_pb2.PipelineInfo:
        return pipeline_info_msg(self.pps.inspect_pipeline(_name(req.pipeline)))

    @_stream
    def ListPipeline(self, req: pps_pb2.ListPipelineRequest, ctx: grpc.ServicerContext
                     ) -> Iterator[pps_pb2.PipelineInfo]:
        name = _name(req.pipeline) if req.HasField("pipeline") else ""
        project = None if req.all_projects else (req.project or "default")
        if not req.history and not name:
            items = self.pps.list_pipeline(project=project)
        else:
            names = [name] if name else [p.name for p in self.pps.list_pipeline(project=project)]
            items = [pi for n in names for pi in self.pps.pipeline_history(n, req.history)]
        for pi in items:
            yield pipeline_info_msg(pi)

    @_unary
    def DeletePipeline(self, req: pps_pb2.DeletePipelineRequest, ctx: grpc.ServicerContext
                       ) -> empty_pb2.Empty:
        self.pps.delete_pipeline(_name(req.pipeline), force=req.force, keep_repo=req.keep_repo)
        return empty_pb2.Empty()

    @_unary
    def StartPipeline(self, req: pps_pb2.StartPipelineRequest, ctx: grpc.ServicerContext
                      ) -> empty_pb2.Empty:
        self.pps.start_pipeline(_name(req.pipeline))
        return empty_pb2.Empty()

    @_unary
    def RunCron(self, req: pps_pb2.RunCronRequest, ctx: grpc.ServicerContext) -> empty_pb2.Empty:
        self.pps.run_cron(_name(req.pipeline))
        return empty_pb2.Empty()

    @_unary
    def StopPipeline(self, req: pps_pb2.StopPipelineRequest, ctx: grpc.ServicerContext
                     ) -> empty_pb2.Empty:
        self.pps.stop_pipeline(_name(req.pipeline))
        return empty_pb2.Empty()

    # jobs

    @_stream
    def ListJob(self, req: pps_pb2.ListJobRequest, ctx: grpc.ServicerContext
                ) -> Iterator[pps_pb2.JobInfo]:
        pipeline = req.pipeline.name if req.HasField("pipeline") else None
        for ji in self.pps.list_job(pipeline or None, number=req.number):
            yield job_info_msg(ji)

    @_unary
    def InspectJob(self, req: pps_pb2.InspectJobRequest, ctx: grpc.ServicerContext
                   ) -> pps_pb2.JobInfo:
        pipeline, ref = _job_ref(req.job)
        ji = self.pps.inspect_job(pipeline, ref)
        if not req.wait:
            return job_info_msg(ji)
        # Poll by the resolved ID (a branch ref would move on to later jobs);
        # the call's deadline or the client's cancel ends the wait.
        cancel = _cancel_event(ctx)
        while ji.state not in model.TERMINAL_JOB_STATES:
            if cancel.wait(JOB_POLL_SECONDS):
                raise errors.Conflict(
                    f"stopped waiting for job {pipeline}@{ji.id}: the call ended "
                    f"(state {ji.state.value})")
            ji = self.pps.inspect_job(pipeline, ji.id)
        return job_info_msg(ji)

    @_unary
    def StopJob(self, req: pps_pb2.StopJobRequest, ctx: grpc.ServicerContext
                ) -> empty_pb2.Empty:
        self.pps.stop_job(*_job_ref(req.job))
        return empty_pb2.Empty()

    @_unary
    def DeleteJob(self, req: pps_pb2.DeleteJobRequest, ctx: grpc.ServicerContext
                  ) -> empty_pb2.Empty:
        self.pps.delete_job(*_job_ref(req.job))
        return empty_pb2.Empty()

    @_unary
    def RestartDatum(self, req: pps_pb2.RestartDatumRequest, ctx: grpc.ServicerContext
                     ) -> pps_pb2.DatumInfo:
        if not req.data_filters:
            raise errors.InvalidArgument("name the datum: its ID, or its input files' paths")
        pipeline, ref = _job_ref(req.job)
        return datum_info_msg(self.pps.restart_datum(pipeline, ref, list(req.data_filters)))

    @_stream
    def ListJobSet(self, req: pps_pb2.ListJobSetRequest, ctx: grpc.ServicerContext
                   ) -> Iterator[pps_pb2.JobSetInfo]:
        for set_id, jobs in self.pps.list_job_set(number=req.number):
            yield pps_pb2.JobSetInfo(job_set=pps_pb2.JobSet(id=set_id),
                                     jobs=[job_info_msg(j) for j in jobs])

    @_stream
    def InspectJobSet(self, req: pps_pb2.InspectJobSetRequest, ctx: grpc.ServicerContext
                      ) -> Iterator[pps_pb2.JobInfo]:
        if not req.job_set.id:
            raise errors.InvalidArgument("job set id is required")
        for ji in self.pps.inspect_job_set(req.job_set.id, wait=req.wait):
            yield job_info_msg(ji)

    # datums and logs

    @_stream
    def ListDatum(self, req: pps_pb2.ListDatumRequest, ctx: grpc.ServicerContext
                  ) -> Iterator[pps_pb2.DatumInfo]:
        target = req.WhichOneof("target")
        if target == "spec_json":
            datums: Iterator[model.DatumInfo] = iter(
                self.pps.list_datum_for_spec(parse_spec(req.spec_json)))
        elif target == "job":
            datums = self.pps.list_datum(*_job_ref(req.job))
        else:
            raise errors.InvalidArgument("ListDatum needs a job or a spec (spec_json)")
        for di in datums:
            yield datum_info_msg(di)

    @_unary
    def InspectDatum(self, req: pps_pb2.InspectDatumRequest, ctx: grpc.ServicerContext
                     ) -> pps_pb2.DatumInfo:
        pipeline, job = _job_ref(req.datum.job)
        if not req.datum.id:
            raise errors.InvalidArgument("datum id is required")
        return datum_info_msg(self.pps.inspect_datum(pipeline, job, req.datum.id))

    @_stream
    def GetLogs(self, req: pps_pb2.GetLogsRequest, ctx: grpc.ServicerContext
                ) -> Iterator[pps_pb2.LogMessage]:
        cancel = _cancel_event(ctx)
        if req.tail < 0 or req.since_seconds < 0:
            raise errors.InvalidArgument("tail and since must not be negative")
        for line in self.pps.get_logs(_name(req.pipeline), job=req.job or None,
                                      datum=req.datum or None, follow=req.follow,
                                      cancel=cancel, master=req.master, worker=req.worker,
                                      tail=req.tail, since=req.since_seconds):
            yield log_msg(line)

    @_unary
    def FileLineage(self, req: pps_pb2.FileLineageRequest, ctx: grpc.ServicerContext
                    ) -> pps_pb2.LineageTree:
        c = req.file.commit
        if not c.repo:
            raise errors.InvalidArgument("a file is required: REPO@REF:/PATH")
        if req.max_depth < 0 or req.max_nodes < 0:
            raise errors.InvalidArgument("max_depth and max_nodes must not be negative")
        if req.max_nodes > lineage.MAX_NODES_LIMIT:
            raise errors.InvalidArgument(
                f"max_nodes is at most {lineage.MAX_NODES_LIMIT}: ask for a smaller tree "
                "(or start from a file further down)")
        q = lineage.Lineage(self.pps.pfs, self.pps.jobs)
        query = q.downstream if req.direction == pps_pb2.DOWNSTREAM else q.upstream
        return lineage_msg(query(c.repo, c.id or c.branch or "master", req.file.path or "/",
                                 max_depth=req.max_depth or lineage.DEFAULT_MAX_DEPTH,
                                 max_nodes=req.max_nodes or lineage.DEFAULT_MAX_NODES))


# --- serving -------------------------------------------------------------------------


def registrar(pps: PPS) -> Callable[[grpc.Server], None]:
    """A ``tusk.server.serve`` registrar adding the PPS service for ``pps``."""
    def register(server: grpc.Server) -> None:
        pps_pb2_grpc.add_APIServicer_to_server(  # type: ignore[no-untyped-call]
            PPSServicer(pps), server)
    return register


__all__ = [
    "JOB_POLL_SECONDS",
    "PPSServicer",
    "datum_info_msg",
    "job_info_msg",
    "lineage_msg",
    "log_msg",
    "pipeline_info_msg",
    "registrar",
]
