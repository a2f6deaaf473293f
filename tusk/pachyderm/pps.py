"""``pps_v2.API`` (Pachyderm's pipeline service) over tusk's PPS service.

Every call becomes a call of :class:`tusk.pps_server.PPSServicer` with the
same gRPC context, so validation, status codes, deadlines, cancellation and
transactions (the ``pach-transaction`` metadata) are tusk's own. This module
only reshapes messages:

* Pachyderm names a pipeline ``{project{name}, name}``; tusk by its full name
  (``NAME`` in the default project, ``PROJECT/NAME`` in any other).
* Pachyderm sends a pipeline spec as a typed ``CreatePipelineRequest``; tusk
  takes the spec as JSON text in Pachyderm's dialect, so the request is
  printed with protobuf's JSON mapping and handed over as it is.
* tusk keeps the canonical spec of each pipeline version as a JSON object;
  ``PipelineInfo.details`` and ``JobInfo.details`` are parsed back from it.

Where Pachyderm's answer differs from tusk's in substance (``DeletePipeline``
of a missing pipeline succeeds unless ``must_exist``; ``RestartDatum`` on a
finished job is "datum ... could not be found"; ``RunCron`` of a pipeline
without cron input), the adapter checks first and answers Pachyderm's way.

Secrets are Kubernetes secrets in Pachyderm. tusk keeps each one's manifest
in the metadata store (``pachyderm/secrets/<name>``) so the secret calls
round-trip; no pipeline reads them (``transform.secrets`` is not supported).
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message

from pfs import errors
from pfs.metadata import Compare, Put
from pps.spec import parse_duration
from tusk.api import pfs_pb2 as tpfs
from tusk.api import pps_pb2 as t
from tusk.pachyderm import convert
from tusk.pachyderm_api import pfs_pb2 as pfs
from tusk.pachyderm_api import pps_pb2 as p
from tusk.pachyderm_api import pps_pb2_grpc
from tusk.pps_server import job_info_msg
from tusk.server import _abort

if TYPE_CHECKING:
    from tusk.pachyderm import Core

log = logging.getLogger(__name__)

#: Datums per answer of ``CreateDatum`` when the request asks for 0 (Pachyderm
#: leaves the default to the server).
DEFAULT_DATUM_BATCH = 100

#: How often ``SubscribeJob`` re-reads the pipeline's jobs (one metadata range).
SUBSCRIBE_POLL_SECONDS = 0.5

#: Request-only fields of ``CreatePipelineRequest``: flags of tusk's request,
#: not part of the spec.
_REQUEST_FLAGS = ("update", "reprocess", "dry_run")

#: Spec fields that are durations: tusk writes Go's form ("1m30s"), protobuf's
#: JSON mapping wants seconds ("90s").
_DURATIONS = ("datum_timeout", "job_timeout", "maximum_expected_uptime")

_SECRETS_PREFIX = "pachyderm/secrets/"


def _secret_key(name: str) -> str:
    """The metadata key of secret ``name`` (this module's only keys)."""
    return _SECRETS_PREFIX + name


# --- errors -------------------------------------------------------------------------

_R = TypeVar("_R")
_Req = TypeVar("_Req")
_Self = TypeVar("_Self")


def _end(ctx: grpc.ServicerContext, exc: Exception) -> NoReturn:
    """End the call with the status for ``exc``, unless tusk's servicer has
    already ended it (its handlers abort the shared context themselves)."""
    code = ctx.code()
    if code is not None and code != grpc.StatusCode.OK:
        raise exc
    _abort(ctx, exc)
    raise exc  # unreachable: _abort raises


def _unary(fn: Callable[[_Self, _Req, grpc.ServicerContext], _R]
           ) -> Callable[[_Self, _Req, grpc.ServicerContext], _R]:
    @functools.wraps(fn)
    def wrapper(self: _Self, request: _Req, context: grpc.ServicerContext) -> _R:
        try:
            return fn(self, request, context)
        except Exception as exc:  # every error must become a status
            _end(context, exc)
    return wrapper


def _stream(fn: Callable[[_Self, _Req, grpc.ServicerContext], Iterator[_R]]
            ) -> Callable[[_Self, _Req, grpc.ServicerContext], Iterator[_R]]:
    @functools.wraps(fn)
    def wrapper(self: _Self, request: _Req, context: grpc.ServicerContext) -> Iterator[_R]:
        try:
            yield from fn(self, request, context)
        except Exception as exc:
            _end(context, exc)
    return wrapper


def _unsupported(field: str, instead: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(f"{field} is not supported by tusk: {instead}")


# --- names ----------------------------------------------------------------------------


def _full_name(pipeline: p.Pipeline) -> str:
    """A Pachyderm pipeline's tusk name (``NAME`` or ``PROJECT/NAME``)."""
    if not pipeline.name:
        raise errors.InvalidArgument("pipeline name is required: set pipeline.name")
    return convert.repo_name(pfs.Repo(name=pipeline.name, project=pipeline.project))


def _to_pipeline(full: str) -> p.Pipeline:
    project, name = convert.split(full)
    return p.Pipeline(name=name, project=pfs.Project(name=project))


def _project_of(full: str) -> str:
    return convert.split(full)[0]


def _projects(projects: Iterable[pfs.Project]) -> set[str]:
    """A request's project filter (empty: every project)."""
    return {convert.project_name(pr) for pr in projects}


def _job_ref(job: p.Job) -> t.Job:
    if not job.id:
        raise errors.InvalidArgument(
            f"no job ID given for pipeline {job.pipeline.name or '?'}: set job.id")
    return t.Job(pipeline=t.Pipeline(name=_full_name(job.pipeline)), id=job.id)


def _to_job(job: t.Job) -> p.Job:
    return p.Job(pipeline=_to_pipeline(job.pipeline.name), id=job.id)


# --- values ---------------------------------------------------------------------------


def _copy_ts(dst: timestamp_pb2.Timestamp, src: timestamp_pb2.Timestamp) -> None:
    if src.seconds or src.nanos:
        dst.CopyFrom(src)


def _seconds(ts: timestamp_pb2.Timestamp) -> float:
    return float(ts.ToNanoseconds()) / 1e9


def _plain(value: Any) -> Any:
    """A Struct's value with integral floats back to ints (Struct has only doubles)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _spec_dict(spec: struct_pb2.Struct) -> dict[str, Any]:
    out: dict[str, Any] = _plain(json_format.MessageToDict(spec))
    return out


def _json_duration(value: Any) -> str:
    seconds = parse_duration(value)
    return f"{int(seconds)}s" if seconds.is_integer() else f"{seconds:.9f}s"


def _wire_input(node: Any) -> Any:
    """tusk's canonical input to protobuf's JSON mapping (an unset cron start
    is "" in tusk, absent in protobuf)."""
    if isinstance(node, dict):
        out = {k: _wire_input(v) for k, v in node.items()}
        if isinstance(out.get("cron"), dict) and not out["cron"].get("start"):
            out["cron"].pop("start", None)
        return out
    if isinstance(node, list):
        return [_wire_input(v) for v in node]
    return node


def _fill_details(target: Message, spec: dict[str, Any]) -> None:
    """Set the fields of a ``PipelineInfoDetails``/``JobInfoDetails`` that the
    spec has, field by field: one tusk keeps verbatim for Kubernetes
    (``pod_patch``...) that does not parse is left out, not fatal."""
    names = target.DESCRIPTOR.fields_by_name
    for key, value in spec.items():
        if key not in names or value in (None, ""):
            continue
        if key in _DURATIONS:
            try:
                value = _json_duration(value)
            except (ValueError, TypeError):
                continue
        elif key == "input":
            value = _wire_input(value)
        try:
            json_format.ParseDict({key: value}, target, ignore_unknown_fields=True)
        except json_format.ParseError as e:
            log.debug("spec field %s not shown in details: %s", key, e)


def _parallelism(spec: dict[str, Any]) -> int:
    constant = spec.get("parallelism_spec", {}).get("constant", 1)
    return int(constant) if isinstance(constant, (int, float, str)) else 1


def _process_stats(stats: Iterable[tuple[str, float]], out: p.ProcessStats) -> None:
    """tusk's stats map (``download_seconds``, ``upload_bytes``...) into
    Pachyderm's ``ProcessStats``."""
    for key, value in stats:
        if key.endswith("_seconds"):
            field = key.removesuffix("_seconds") + "_time"
            if field in ("download_time", "process_time", "upload_time"):
                getattr(out, field).FromNanoseconds(round(value * 1e9))
        elif key in ("download_bytes", "upload_bytes"):
            setattr(out, key, int(value))


def _cron_inputs(node: Any) -> Iterator[dict[str, Any]]:
    """The cron inputs of a canonical spec's ``input``."""
    if isinstance(node, dict):
        if isinstance(node.get("cron"), dict):
            yield node["cron"]
        for v in node.values():
            if isinstance(v, list):
                for c in v:
                    yield from _cron_inputs(c)


def _input_repos(node: Any) -> Iterator[str]:
    """The full names of the pfs repos a canonical spec's ``input`` reads."""
    if isinstance(node, dict):
        leaf = node.get("pfs")
        if isinstance(leaf, dict):
            yield convert.repo_name(pfs.Repo(name=leaf.get("repo", ""),
                                             project=pfs.Project(name=leaf.get("project", ""))))
        for v in node.values():
            if isinstance(v, list):
                for c in v:
                    yield from _input_repos(c)


def _set_input_commits(node: p.Input, commits: list[tpfs.Commit]) -> None:
    """Fill ``pfs.commit``/``cron.commit`` of a job's input with its input commits."""
    by_repo = {c.repo: c.id for c in commits}
    if node.HasField("pfs"):
        leaf = node.pfs
        full = convert.repo_name(pfs.Repo(name=leaf.repo, project=pfs.Project(name=leaf.project)))
        leaf.commit = by_repo.get(full, "")
    if node.HasField("cron"):
        cron = node.cron
        full = convert.repo_name(pfs.Repo(name=cron.repo, project=pfs.Project(name=cron.project)))
        cron.commit = by_repo.get(full, "")
    for children in (node.join, node.group, node.cross, node.union):
        for child in children:
            _set_input_commits(child, commits)


# --- tusk's answers -> Pachyderm's -----------------------------------------------------


def to_pipeline_info(pi: t.PipelineInfo) -> p.PipelineInfo:
    """tusk's ``PipelineInfo`` as Pachyderm's, ``details`` filled from the spec."""
    spec = _spec_dict(pi.spec)
    parallelism = _parallelism(spec)
    text = json.dumps(spec, sort_keys=True)
    out = p.PipelineInfo(
        pipeline=_to_pipeline(pi.pipeline.name), version=pi.version, stopped=pi.stopped,
        state=t.PipelineState.Name(pi.state), reason=pi.reason,
        last_job_state=t.JobState.Name(pi.last_job_state), parallelism=parallelism,
        type="PIPELINE_TYPE_TRANSFORM", user_spec_json=text, effective_spec_json=text)
    d = out.details
    _fill_details(d, spec)
    _copy_ts(d.created_at, pi.created_at)
    _copy_ts(d.updated_at, pi.created_at)
    d.description = pi.description
    d.salt = pi.salt
    d.reason = pi.reason
    d.workers_requested = parallelism
    running = pi.state in (t.PIPELINE_RUNNING, t.PIPELINE_STANDBY)
    d.workers_available = parallelism if running else 0
    return out


def to_job_info(ji: t.JobInfo, spec: dict[str, Any] | None = None) -> p.JobInfo:
    """tusk's ``JobInfo`` as Pachyderm's; ``details`` from ``spec`` (the
    pipeline version's canonical spec) when given."""
    out = p.JobInfo(
        job=_to_job(ji.job), pipeline_version=ji.pipeline_version, restart=ji.restart,
        data_processed=ji.data_processed, data_skipped=ji.data_skipped,
        data_total=ji.data_total, data_failed=ji.data_failed,
        data_recovered=ji.data_recovered, state=t.JobState.Name(ji.state), reason=ji.reason)
    if ji.output_commit.id:
        out.output_commit.CopyFrom(convert.to_commit(ji.output_commit))
    _copy_ts(out.created, ji.created)
    _copy_ts(out.started, ji.started)
    _copy_ts(out.finished, ji.finished)
    _process_stats(ji.stats.items(), out.stats)
    if spec is not None:
        d = out.details
        _fill_details(d, spec)
        d.salt = ji.salt
        _set_input_commits(d.input, list(ji.input_commits))
    return out


def to_datum_info(di: t.DatumInfo) -> p.DatumInfo:
    out = p.DatumInfo(state=t.DatumState.Name(di.state))
    out.datum.id = di.datum.id
    if di.datum.HasField("job"):
        out.datum.job.CopyFrom(_to_job(di.datum.job))
    for f in di.files:
        kind = "DIR" if f.path.endswith("/") else "FILE"
        info = pfs.FileInfo(file=pfs.File(commit=convert.to_commit(
            tpfs.Commit(repo=f.repo, id=f.commit)), path=f.path), file_type=kind)
        if f.hash:
            info.hash = bytes.fromhex(f.hash)
        out.data.append(info)
    _process_stats(di.stats.items(), out.stats)
    return out


def to_log_message(line: t.LogMessage) -> p.LogMessage:
    project, name = convert.split(line.pipeline_name)
    out = p.LogMessage(
        project_name=project, pipeline_name=name, job_id=line.job_id,
        worker_id=line.worker, datum_id=line.datum_id, master=line.master,
        user=line.stream in ("stdout", "stderr"), message=line.message)
    _copy_ts(out.ts, line.ts)
    return out


def spec_json(req: p.CreatePipelineRequest) -> str:
    """A typed ``CreatePipelineRequest`` as the spec text tusk's CreatePipeline takes."""
    spec = json_format.MessageToDict(req, preserving_proto_field_name=True)
    for flag in _REQUEST_FLAGS:
        spec.pop(flag, None)
    # An empty message is an unset field in effect (clients differ in
    # whether they send one); tusk would reject e.g. an empty "egress".
    spec = {k: v for k, v in spec.items() if v != {}}
    return json.dumps(spec)


# --- the servicer ----------------------------------------------------------------------


class PPSAdapter(pps_pb2_grpc.APIServicer):
    """Implements ``pps_v2.API`` by delegating to tusk's ``PPSServicer``.

    Calls not defined here answer UNIMPLEMENTED (the generated base class).
    """

    def __init__(self, core: Core) -> None:
        self.core = core

    # helpers

    def _pipeline(self, name: str, ctx: grpc.ServicerContext) -> t.PipelineInfo:
        return self.core.pps.InspectPipeline(
            t.InspectPipelineRequest(pipeline=t.Pipeline(name=name)), ctx)

    def _exists(self, name: str) -> bool:
        try:
            self.core.pps.pps.inspect_pipeline(name)
        except errors.NotFound:
            return False
        return True

    def _specs(self, ctx: grpc.ServicerContext) -> Callable[[t.JobInfo], dict[str, Any] | None]:
        """A lookup of the spec a job ran with, reading each pipeline's history once."""
        cache: dict[str, dict[int, dict[str, Any]]] = {}

        def spec_of(ji: t.JobInfo) -> dict[str, Any] | None:
            name = ji.job.pipeline.name
            if name not in cache:
                req = t.ListPipelineRequest(pipeline=t.Pipeline(name=name), history=-1)
                cache[name] = {pi.version: _spec_dict(pi.spec)
                               for pi in self.core.pps.ListPipeline(req, ctx)}
            versions = cache[name]
            return versions.get(ji.pipeline_version) or next(iter(versions.values()), None)
        return spec_of

    def _preview(self, inp: p.Input, ctx: grpc.ServicerContext) -> Iterator[t.DatumInfo]:
        """The datums of an input over its current heads (no pipeline involved)."""
        spec = {"pipeline": {"name": "datums"}, "transform": {"cmd": ["true"]},
                "input": json_format.MessageToDict(inp, preserving_proto_field_name=True)}
        yield from self.core.pps.ListDatum(t.ListDatumRequest(spec_json=json.dumps(spec)), ctx)

    # pipelines

    @_unary
    def CreatePipeline(self, req: p.CreatePipelineRequest, ctx: grpc.ServicerContext
                       ) -> empty_pb2.Empty:
        self.core.pps.CreatePipeline(t.CreatePipelineRequest(
            spec_json=spec_json(req), update=req.update, reprocess=req.reprocess,
            dry_run=req.dry_run), ctx)
        return empty_pb2.Empty()

    @_unary
    def CreatePipelineV2(self, req: p.CreatePipelineV2Request, ctx: grpc.ServicerContext
                         ) -> p.CreatePipelineV2Response:
        if not req.create_pipeline_request_json.strip():
            raise errors.InvalidArgument(
                "create_pipeline_request_json is empty: send the pipeline spec as JSON")
        info = self.core.pps.CreatePipeline(t.CreatePipelineRequest(
            spec_json=req.create_pipeline_request_json, update=req.update,
            reprocess=req.reprocess, dry_run=req.dry_run), ctx)
        spec = _spec_dict(info.spec) if info.HasField("spec") else {}
        return p.CreatePipelineV2Response(
            effective_create_pipeline_request_json=json.dumps(spec, sort_keys=True))

    @_unary
    def InspectPipeline(self, req: p.InspectPipelineRequest, ctx: grpc.ServicerContext
                        ) -> p.PipelineInfo:
        return to_pipeline_info(self._pipeline(_full_name(req.pipeline), ctx))

    @_stream
    def ListPipeline(self, req: p.ListPipelineRequest, ctx: grpc.ServicerContext
                     ) -> Iterator[p.PipelineInfo]:
        if req.jq_filter:
            raise _unsupported("jq_filter", "filter the pipelines on the client")
        if req.HasField("commit_set") and req.commit_set.id:
            raise _unsupported("commit_set", "list pipelines without it (tusk lists "
                               "the current versions, or history with `history`)")
        treq = t.ListPipelineRequest(history=req.history, all_projects=True)
        if req.HasField("pipeline") and req.pipeline.name:
            treq.pipeline.name = _full_name(req.pipeline)
        projects = _projects(req.projects)
        items: Iterator[t.PipelineInfo] = (
            pi for pi in self.core.pps.ListPipeline(treq, ctx)
            if not projects or _project_of(pi.pipeline.name) in projects)
        if req.HasField("page") and req.page.page_size > 0:
            start = req.page.page_index * req.page.page_size
            items = islice(items, start, start + req.page.page_size)
        for pi in items:
            yield to_pipeline_info(pi)

    @_unary
    def DeletePipeline(self, req: p.DeletePipelineRequest, ctx: grpc.ServicerContext
                       ) -> empty_pb2.Empty:
        if req.all:
            self._delete_pipelines(set(), req.force, req.keep_repo, ctx)
            return empty_pb2.Empty()
        name = _full_name(req.pipeline)
        # Pachyderm: deleting a missing pipeline succeeds unless must_exist.
        if req.must_exist or self._exists(name):
            self.core.pps.DeletePipeline(t.DeletePipelineRequest(
                pipeline=t.Pipeline(name=name), force=req.force, keep_repo=req.keep_repo), ctx)
        return empty_pb2.Empty()

    @_unary
    def DeletePipelines(self, req: p.DeletePipelinesRequest, ctx: grpc.ServicerContext
                        ) -> p.DeletePipelinesResponse:
        projects = _projects(req.projects)
        if not req.all and not projects:
            raise errors.InvalidArgument(
                "name the projects whose pipelines to delete (projects), or set all")
        deleted = self._delete_pipelines(set() if req.all else projects, req.force,
                                         req.keep_repo, ctx)
        return p.DeletePipelinesResponse(pipelines=[_to_pipeline(n) for n in deleted])

    def _delete_pipelines(self, projects: set[str], force: bool, keep_repo: bool,
                          ctx: grpc.ServicerContext) -> list[str]:
        """Delete the pipelines of ``projects`` (empty: all), each after the
        pipelines reading its output, so no deletion needs ``force``."""
        reads: dict[str, set[str]] = {}
        for pi in self.core.pps.ListPipeline(t.ListPipelineRequest(all_projects=True), ctx):
            if not projects or _project_of(pi.pipeline.name) in projects:
                reads[pi.pipeline.name] = set(_input_repos(_spec_dict(pi.spec).get("input")))
        order: list[str] = []
        left = dict(reads)
        while left:
            # Leaves first: pipelines whose output no remaining pipeline reads.
            leaves = [n for n in left if not any(n in r for m, r in left.items() if m != n)]
            for n in leaves or list(left):
                order.append(n)
                left.pop(n)
        for name in order:
            self.core.pps.DeletePipeline(t.DeletePipelineRequest(
                pipeline=t.Pipeline(name=name), force=force, keep_repo=keep_repo), ctx)
        return order

    @_unary
    def StartPipeline(self, req: p.StartPipelineRequest, ctx: grpc.ServicerContext
                      ) -> empty_pb2.Empty:
        self.core.pps.StartPipeline(
            t.StartPipelineRequest(pipeline=t.Pipeline(name=_full_name(req.pipeline))), ctx)
        return empty_pb2.Empty()

    @_unary
    def StopPipeline(self, req: p.StopPipelineRequest, ctx: grpc.ServicerContext
                     ) -> empty_pb2.Empty:
        name = _full_name(req.pipeline)
        if req.must_exist or self._exists(name):
            self.core.pps.StopPipeline(t.StopPipelineRequest(pipeline=t.Pipeline(name=name)), ctx)
        return empty_pb2.Empty()

    @_unary
    def RerunPipeline(self, req: p.RerunPipelineRequest, ctx: grpc.ServicerContext
                      ) -> empty_pb2.Empty:
        """A new version with the same spec, so a new job runs over the inputs'
        current heads (``reprocess``: every datum again)."""
        name = _full_name(req.pipeline)
        spec = _spec_dict(self._pipeline(name, ctx).spec)
        self.core.pps.CreatePipeline(t.CreatePipelineRequest(
            spec_json=json.dumps(spec), update=True, reprocess=req.reprocess), ctx)
        return empty_pb2.Empty()

    @_unary
    def DeleteAll(self, req: empty_pb2.Empty, ctx: grpc.ServicerContext) -> empty_pb2.Empty:
        """Every pipeline of every project (Pachyderm's PPS part of ``delete all``)."""
        self._delete_pipelines(set(), True, False, ctx)
        return empty_pb2.Empty()

    @_unary
    def RunCron(self, req: p.RunCronRequest, ctx: grpc.ServicerContext) -> empty_pb2.Empty:
        name = _full_name(req.pipeline)
        spec = _spec_dict(self._pipeline(name, ctx).spec)
        if not any(_cron_inputs(spec.get("input"))):
            raise errors.FailedPrecondition(
                f"pipeline {name} does not have a cron input: run cron ticks the cron "
                "inputs (input.cron) of a pipeline; give it one, or commit to its input")
        self.core.pps.RunCron(t.RunCronRequest(pipeline=t.Pipeline(name=name)), ctx)
        return empty_pb2.Empty()

    # jobs

    @_unary
    def InspectJob(self, req: p.InspectJobRequest, ctx: grpc.ServicerContext) -> p.JobInfo:
        ji = self.core.pps.InspectJob(
            t.InspectJobRequest(job=_job_ref(req.job), wait=req.wait), ctx)
        return to_job_info(ji, self._specs(ctx)(ji) if req.details else None)

    @_stream
    def ListJob(self, req: p.ListJobRequest, ctx: grpc.ServicerContext) -> Iterator[p.JobInfo]:
        if req.jq_filter:
            raise _unsupported("jq_filter", "filter the jobs on the client")
        treq = t.ListJobRequest()
        if req.HasField("pipeline") and req.pipeline.name:
            treq.pipeline.name = _full_name(req.pipeline)
        projects = _projects(req.projects)
        wanted = [(convert.commit_repo(c), c.id) for c in req.input_commit]
        marker = _seconds(req.pagination_marker) if req.HasField("pagination_marker") else None
        current: dict[str, int] = {}

        def keep(ji: t.JobInfo) -> bool:
            name = ji.job.pipeline.name
            if projects and _project_of(name) not in projects:
                return False
            if wanted and not any(
                    any((not repo or c.repo == repo) and (not cid or c.id == cid)
                        for c in ji.input_commits) for repo, cid in wanted):
                return False
            if marker is not None:
                created = _seconds(ji.created)
                if (created <= marker) if req.reverse else (created >= marker):
                    return False
            if req.history >= 0:
                # history: jobs of the current version and of N versions before it.
                if name not in current:
                    try:
                        current[name] = self.core.pps.pps.inspect_pipeline(name).version
                    except errors.NotFound:  # deleted meanwhile: its jobs are going too
                        current[name] = 0
                if ji.pipeline_version < current[name] - req.history:
                    return False
            return True

        jobs: Iterable[t.JobInfo] = (ji for ji in self.core.pps.ListJob(treq, ctx) if keep(ji))
        if req.reverse:
            jobs = reversed(list(jobs))
        if req.number > 0:
            jobs = islice(jobs, req.number)
        spec_of = self._specs(ctx) if req.details else None
        for ji in jobs:
            yield to_job_info(ji, spec_of(ji) if spec_of else None)

    @_stream
    def SubscribeJob(self, req: p.SubscribeJobRequest, ctx: grpc.ServicerContext
                     ) -> Iterator[p.JobInfo]:
        """The pipeline's jobs, oldest first, then each job again whenever it
        changes, until the client cancels."""
        name = _full_name(req.pipeline)
        cancel = threading.Event()
        ctx.add_callback(cancel.set)
        spec_of = self._specs(ctx) if req.details else None
        sent: dict[str, bytes] = {}
        while ctx.is_active() and not cancel.is_set():
            for info in reversed(self.core.pps.pps.list_job(name)):
                ji = job_info_msg(info)
                key = ji.SerializeToString(deterministic=True)
                if sent.get(info.id) != key:
                    sent[info.id] = key
                    yield to_job_info(ji, spec_of(ji) if spec_of else None)
            cancel.wait(SUBSCRIBE_POLL_SECONDS)

    @_stream
    def InspectJobSet(self, req: p.InspectJobSetRequest, ctx: grpc.ServicerContext
                      ) -> Iterator[p.JobInfo]:
        if not req.job_set.id:
            raise errors.InvalidArgument("job set ID is required: set job_set.id")
        try:
            self.core.pps.pps.inspect_job_set(req.job_set.id)
        except errors.NotFound:
            return  # Pachyderm: a commit set no pipeline processed has no jobs
        spec_of = self._specs(ctx) if req.details else None
        for ji in self.core.pps.InspectJobSet(
                t.InspectJobSetRequest(job_set=t.JobSet(id=req.job_set.id), wait=req.wait), ctx):
            yield to_job_info(ji, spec_of(ji) if spec_of else None)

    @_stream
    def ListJobSet(self, req: p.ListJobSetRequest, ctx: grpc.ServicerContext
                   ) -> Iterator[p.JobSetInfo]:
        if req.jq_filter:
            raise _unsupported("jq_filter", "filter the job sets on the client")
        projects = _projects(req.projects)
        marker = _seconds(req.pagination_marker) if req.HasField("pagination_marker") else None
        spec_of = self._specs(ctx) if req.details else None
        sets: list[p.JobSetInfo] = []
        for js in self.core.pps.ListJobSet(t.ListJobSetRequest(), ctx):
            jobs = [ji for ji in js.jobs
                    if not projects or _project_of(ji.job.pipeline.name) in projects]
            if not jobs:
                continue
            created = min(_seconds(ji.created) for ji in jobs)
            if marker is not None and ((created <= marker) if req.reverse else (created >= marker)):
                continue
            sets.append(p.JobSetInfo(job_set=p.JobSet(id=js.job_set.id), jobs=[
                to_job_info(ji, spec_of(ji) if spec_of else None) for ji in jobs]))
        if req.reverse:
            sets.reverse()
        yield from sets[:req.number] if req.number > 0 else sets

    @_unary
    def StopJob(self, req: p.StopJobRequest, ctx: grpc.ServicerContext) -> empty_pb2.Empty:
        self.core.pps.StopJob(t.StopJobRequest(job=_job_ref(req.job)), ctx)
        return empty_pb2.Empty()

    @_unary
    def DeleteJob(self, req: p.DeleteJobRequest, ctx: grpc.ServicerContext) -> empty_pb2.Empty:
        self.core.pps.DeleteJob(t.DeleteJobRequest(job=_job_ref(req.job)), ctx)
        return empty_pb2.Empty()

    # datums

    @_stream
    def ListDatum(self, req: p.ListDatumRequest, ctx: grpc.ServicerContext
                  ) -> Iterator[p.DatumInfo]:
        if req.HasField("input"):
            datums = self._preview(req.input, ctx)
        elif req.HasField("job"):
            datums = self.core.pps.ListDatum(t.ListDatumRequest(job=_job_ref(req.job)), ctx)
        else:
            raise errors.InvalidArgument("ListDatum needs a job, or an input to preview")
        states = {p.DatumState.Name(s) for s in req.filter.state}
        items: Iterable[t.DatumInfo] = (
            di for di in datums if not states or t.DatumState.Name(di.state) in states)
        if req.reverse:
            items = reversed(list(items))
        if req.pagination_marker:
            # The marker is the last datum ID of the previous page.
            rest = iter(items)
            for di in rest:
                if di.datum.id == req.pagination_marker:
                    break
            items = rest
        if req.number > 0:
            items = islice(items, req.number)
        for di in items:
            yield to_datum_info(di)

    @_unary
    def InspectDatum(self, req: p.InspectDatumRequest, ctx: grpc.ServicerContext
                     ) -> p.DatumInfo:
        return to_datum_info(self.core.pps.InspectDatum(t.InspectDatumRequest(
            datum=t.Datum(job=_job_ref(req.datum.job), id=req.datum.id)), ctx))

    @_stream
    def CreateDatum(self, requests: Iterator[p.CreateDatumRequest], ctx: grpc.ServicerContext
                    ) -> Iterator[p.DatumInfo]:
        """Datums of an input in batches: ``start`` gives the input and the first
        batch's size, each ``continue`` asks for the next batch; the stream ends
        after the last datum."""
        first = next(requests, None)
        if first is None or first.WhichOneof("body") != "start":
            raise errors.InvalidArgument(
                "the first CreateDatumRequest must be `start`, with the input to enumerate")
        datums = self._preview(first.start.input, ctx)
        number = first.start.number or DEFAULT_DATUM_BATCH
        while True:
            batch = list(islice(datums, number))
            for di in batch:
                yield to_datum_info(di)
            if len(batch) < number:
                return
            req = next(requests, None)
            if req is None:
                return
            if req.WhichOneof("body") != "continue":
                raise errors.InvalidArgument(
                    "after `start`, each CreateDatumRequest must be `continue`")
            number = getattr(req, "continue").number or number

    @_unary
    def RestartDatum(self, req: p.RestartDatumRequest, ctx: grpc.ServicerContext
                     ) -> empty_pb2.Empty:
        ref = _job_ref(req.job)
        job = self.core.pps.InspectJob(t.InspectJobRequest(job=ref), ctx)
        filters = list(req.data_filters)
        not_found = errors.NotFound(
            f"datum matching filter [{' '.join(filters)}] could not be found for job ID "
            f"{job.job.id}: only a datum being processed by a running job can be restarted "
            "(list them with list_datum)")
        # Pachyderm restarts a datum by asking the workers processing it: with
        # no filter, or a job that is not running, none is.
        if not filters or job.state != t.JOB_RUNNING:
            raise not_found
        try:
            self.core.pps.pps.restart_datum(ref.pipeline.name, job.job.id, filters)
        except errors.NotFound:
            raise not_found from None
        except errors.FailedPrecondition:  # the job finished meanwhile
            raise not_found from None
        return empty_pb2.Empty()

    # logs

    @_stream
    def GetLogs(self, req: p.GetLogsRequest, ctx: grpc.ServicerContext
                ) -> Iterator[p.LogMessage]:
        job = req.job if req.HasField("job") and req.job.id else req.datum.job
        if req.HasField("pipeline") and req.pipeline.name:
            pipeline = req.pipeline
        elif job.pipeline.name:
            pipeline = job.pipeline
        else:
            raise errors.InvalidArgument("name the pipeline, job or datum whose logs to get")
        name = _full_name(pipeline)
        treq = t.GetLogsRequest(pipeline=t.Pipeline(name=name), job=job.id,
                                datum=req.datum.id, follow=req.follow, tail=req.tail)
        # Pachyderm's master=false means the workers' lines, which always
        # include the worker framework's own; tusk's datums log nothing of
        # their own when the user code is silent, so the job events (tusk's
        # master lines, flagged as such) come along.
        treq.master = req.master
        if req.HasField("since"):
            treq.since_seconds = req.since.ToNanoseconds() / 1e9
        datums: set[str] | None = None
        if req.data_filters and not req.datum.id:
            if not job.id:
                raise errors.InvalidArgument("data_filters need a job: set job too")
            datums = self._matching_datums(_job_ref(job), list(req.data_filters), ctx)
        for line in self.core.pps.GetLogs(treq, ctx):
            if datums is None or line.datum_id in datums:
                yield to_log_message(line)

    def _matching_datums(self, job: t.Job, filters: list[str], ctx: grpc.ServicerContext
                         ) -> set[str]:
        """IDs of the job's datums a filter names: by ID prefix, or by input path
        (every filter must match one of the datum's files)."""
        out = set()
        for di in self.core.pps.ListDatum(t.ListDatumRequest(job=job), ctx):
            paths = {f.path for f in di.files} | {f.path.lstrip("/") for f in di.files}
            if all(di.datum.id.startswith(f) or f in paths for f in filters):
                out.add(di.datum.id)
        return out

    # secrets

    @_unary
    def CreateSecret(self, req: p.CreateSecretRequest, ctx: grpc.ServicerContext
                     ) -> empty_pb2.Empty:
        try:
            manifest = json.loads(req.file)
        except ValueError as e:
            raise errors.InvalidArgument(
                f"secret is not JSON ({e}): send a Kubernetes Secret manifest") from None
        name = manifest.get("metadata", {}).get("name") if isinstance(manifest, dict) else None
        if not isinstance(name, str) or not name:
            raise errors.InvalidArgument(
                "secret has no name: set metadata.name in the Secret manifest")
        record = json.dumps({"manifest": manifest, "created": time.time()}).encode()
        meta = self.core.pps.pps.meta
        if not meta.txn([Compare(_secret_key(name), 0)], [Put(_secret_key(name), record)]):
            raise errors.AlreadyExists(
                f"secret {name} already exists: delete it first to replace it")
        return empty_pb2.Empty()

    def _secret_info(self, name: str, value: bytes) -> p.SecretInfo:
        record = json.loads(value)
        out = p.SecretInfo(secret=p.Secret(name=name),
                           type=record["manifest"].get("type") or "Opaque")
        out.creation_timestamp.FromNanoseconds(round(record["created"] * 1e9))
        return out

    @_unary
    def InspectSecret(self, req: p.InspectSecretRequest, ctx: grpc.ServicerContext
                      ) -> p.SecretInfo:
        kv = self.core.pps.pps.meta.get(_secret_key(req.secret.name))
        if not req.secret.name or kv is None:
            raise errors.NotFound(
                f"secret {req.secret.name or '?'} not found (list them with list_secret)")
        return self._secret_info(req.secret.name, kv.value)

    @_unary
    def ListSecret(self, req: empty_pb2.Empty, ctx: grpc.ServicerContext) -> p.SecretInfos:
        return p.SecretInfos(secret_info=[
            self._secret_info(kv.key.removeprefix(_SECRETS_PREFIX), kv.value)
            for kv in self.core.pps.pps.meta.range(_SECRETS_PREFIX)])

    @_unary
    def DeleteSecret(self, req: p.DeleteSecretRequest, ctx: grpc.ServicerContext
                     ) -> empty_pb2.Empty:
        if not req.secret.name or not self.core.pps.pps.meta.delete(
                _secret_key(req.secret.name)):
            raise errors.NotFound(
                f"secret {req.secret.name or '?'} not found (list them with list_secret)")
        return empty_pb2.Empty()


def add_to_server(server: grpc.Server, core: Core) -> None:
    pps_pb2_grpc.add_APIServicer_to_server(  # type: ignore[no-untyped-call]
        PPSAdapter(core), server)


__all__ = [
    "DEFAULT_DATUM_BATCH",
    "SUBSCRIBE_POLL_SECONDS",
    "PPSAdapter",
    "add_to_server",
    "spec_json",
    "to_datum_info",
    "to_job_info",
    "to_log_message",
    "to_pipeline_info",
]
