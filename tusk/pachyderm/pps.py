"""``pps_v2.API`` (Pachyderm's pipeline service) over tusk's PPS service.

Every call becomes a call of :class:`tusk.pps_server.PPSServicer` with the
same gRPC context, so validation, status codes, deadlines, cancellation and
transactions (the ``pach-transaction`` metadata) are tusk's own. This module
holds the servicer, one thin method per call, and the pipeline calls; the
work is split by job:

* :mod:`tusk.pachyderm.pps_convert`: names and messages both ways. Pachyderm
  names a pipeline ``{project{name}, name}``, tusk by its full name (``NAME``
  in the default project, ``PROJECT/NAME`` in any other); Pachyderm sends a
  spec as a typed ``CreatePipelineRequest``, tusk takes JSON text in
  Pachyderm's dialect; ``PipelineInfo.details`` and ``JobInfo.details`` are
  parsed back from tusk's canonical spec.
* :mod:`tusk.pachyderm.pps_jobs`: listing, paging and following jobs, job
  sets, datums and logs.
* :mod:`tusk.pachyderm.pps_secrets`: secrets, kept in the metadata store.

Where Pachyderm's answer differs from tusk's in substance (``DeletePipeline``
of a missing pipeline succeeds unless ``must_exist``; ``RestartDatum`` on a
finished job is "datum ... could not be found"; ``RunCron`` of a pipeline
without cron input), the adapter checks first and answers Pachyderm's way.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, NoReturn, TypeVar

import grpc
from google.protobuf import empty_pb2

from pfs import errors
from tusk.api import pps_pb2 as t
from tusk.pachyderm import pps_convert as pc
from tusk.pachyderm import pps_jobs, pps_secrets
from tusk.pachyderm_api import pps_pb2 as p
from tusk.pachyderm_api import pps_pb2_grpc
from tusk.server import _abort

if TYPE_CHECKING:
    from tusk.pachyderm import Core

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

    # pipelines

    @_unary
    def CreatePipeline(self, req: p.CreatePipelineRequest, ctx: grpc.ServicerContext
                       ) -> empty_pb2.Empty:
        self.core.pps.CreatePipeline(t.CreatePipelineRequest(
            spec_json=pc.spec_json(req), update=req.update, reprocess=req.reprocess,
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
        spec = pc.spec_dict(info.spec) if info.HasField("spec") else {}
        return p.CreatePipelineV2Response(
            effective_create_pipeline_request_json=json.dumps(spec, sort_keys=True))

    @_unary
    def InspectPipeline(self, req: p.InspectPipelineRequest, ctx: grpc.ServicerContext
                        ) -> p.PipelineInfo:
        return pc.to_pipeline_info(self._pipeline(pc.full_name(req.pipeline), ctx))

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
            treq.pipeline.name = pc.full_name(req.pipeline)
        projects = pc.project_filter(req.projects)
        items: Iterator[t.PipelineInfo] = (
            pi for pi in self.core.pps.ListPipeline(treq, ctx)
            if not projects or pc.project_of(pi.pipeline.name) in projects)
        if req.HasField("page") and req.page.page_size > 0:
            start = req.page.page_index * req.page.page_size
            items = islice(items, start, start + req.page.page_size)
        for pi in items:
            yield pc.to_pipeline_info(pi)

    @_unary
    def DeletePipeline(self, req: p.DeletePipelineRequest, ctx: grpc.ServicerContext
                       ) -> empty_pb2.Empty:
        if req.all:
            self._delete_pipelines(set(), req.force, req.keep_repo, ctx)
            return empty_pb2.Empty()
        name = pc.full_name(req.pipeline)
        # Pachyderm: deleting a missing pipeline succeeds unless must_exist.
        if req.must_exist or self._exists(name):
            self.core.pps.DeletePipeline(t.DeletePipelineRequest(
                pipeline=t.Pipeline(name=name), force=req.force, keep_repo=req.keep_repo), ctx)
        return empty_pb2.Empty()

    @_unary
    def DeletePipelines(self, req: p.DeletePipelinesRequest, ctx: grpc.ServicerContext
                        ) -> p.DeletePipelinesResponse:
        projects = pc.project_filter(req.projects)
        if not req.all and not projects:
            raise errors.InvalidArgument(
                "name the projects whose pipelines to delete (projects), or set all")
        deleted = self._delete_pipelines(set() if req.all else projects, req.force,
                                         req.keep_repo, ctx)
        return p.DeletePipelinesResponse(pipelines=[pc.to_pipeline(n) for n in deleted])

    def _delete_pipelines(self, projects: set[str], force: bool, keep_repo: bool,
                          ctx: grpc.ServicerContext) -> list[str]:
        """Delete the pipelines of ``projects`` (empty: all), each after the
        pipelines reading its output, so no deletion needs ``force``."""
        reads: dict[str, set[str]] = {}
        for pi in self.core.pps.ListPipeline(t.ListPipelineRequest(all_projects=True), ctx):
            if not projects or pc.project_of(pi.pipeline.name) in projects:
                reads[pi.pipeline.name] = set(pc.input_repos(pc.spec_dict(pi.spec).get("input")))
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
            t.StartPipelineRequest(pipeline=t.Pipeline(name=pc.full_name(req.pipeline))), ctx)
        return empty_pb2.Empty()

    @_unary
    def StopPipeline(self, req: p.StopPipelineRequest, ctx: grpc.ServicerContext
                     ) -> empty_pb2.Empty:
        name = pc.full_name(req.pipeline)
        if req.must_exist or self._exists(name):
            self.core.pps.StopPipeline(t.StopPipelineRequest(pipeline=t.Pipeline(name=name)), ctx)
        return empty_pb2.Empty()

    @_unary
    def RerunPipeline(self, req: p.RerunPipelineRequest, ctx: grpc.ServicerContext
                      ) -> empty_pb2.Empty:
        """A new version with the same spec, so a new job runs over the inputs'
        current heads (``reprocess``: every datum again)."""
        name = pc.full_name(req.pipeline)
        spec = pc.spec_dict(self._pipeline(name, ctx).spec)
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
        name = pc.full_name(req.pipeline)
        spec = pc.spec_dict(self._pipeline(name, ctx).spec)
        if not any(pc.cron_inputs(spec.get("input"))):
            raise errors.FailedPrecondition(
                f"pipeline {name} does not have a cron input: run cron ticks the cron "
                "inputs (input.cron) of a pipeline; give it one, or commit to its input")
        self.core.pps.RunCron(t.RunCronRequest(pipeline=t.Pipeline(name=name)), ctx)
        return empty_pb2.Empty()

    # jobs

    @_unary
    def InspectJob(self, req: p.InspectJobRequest, ctx: grpc.ServicerContext) -> p.JobInfo:
        ji = self.core.pps.InspectJob(
            t.InspectJobRequest(job=pc.job_ref(req.job), wait=req.wait), ctx)
        spec = pps_jobs.spec_lookup(self.core, ctx)(ji) if req.details else None
        return pc.to_job_info(ji, spec)

    @_stream
    def ListJob(self, req: p.ListJobRequest, ctx: grpc.ServicerContext) -> Iterator[p.JobInfo]:
        if req.jq_filter:
            raise _unsupported("jq_filter", "filter the jobs on the client")
        yield from pps_jobs.list_jobs(self.core, req, ctx)

    @_stream
    def SubscribeJob(self, req: p.SubscribeJobRequest, ctx: grpc.ServicerContext
                     ) -> Iterator[p.JobInfo]:
        yield from pps_jobs.subscribe_jobs(self.core, req, ctx)

    @_stream
    def InspectJobSet(self, req: p.InspectJobSetRequest, ctx: grpc.ServicerContext
                      ) -> Iterator[p.JobInfo]:
        yield from pps_jobs.inspect_job_set(self.core, req, ctx)

    @_stream
    def ListJobSet(self, req: p.ListJobSetRequest, ctx: grpc.ServicerContext
                   ) -> Iterator[p.JobSetInfo]:
        if req.jq_filter:
            raise _unsupported("jq_filter", "filter the job sets on the client")
        yield from pps_jobs.list_job_sets(self.core, req, ctx)

    @_unary
    def StopJob(self, req: p.StopJobRequest, ctx: grpc.ServicerContext) -> empty_pb2.Empty:
        self.core.pps.StopJob(t.StopJobRequest(job=pc.job_ref(req.job)), ctx)
        return empty_pb2.Empty()

    @_unary
    def DeleteJob(self, req: p.DeleteJobRequest, ctx: grpc.ServicerContext) -> empty_pb2.Empty:
        self.core.pps.DeleteJob(t.DeleteJobRequest(job=pc.job_ref(req.job)), ctx)
        return empty_pb2.Empty()

    # datums

    @_stream
    def ListDatum(self, req: p.ListDatumRequest, ctx: grpc.ServicerContext
                  ) -> Iterator[p.DatumInfo]:
        yield from pps_jobs.list_datums(self.core, req, ctx)

    @_unary
    def InspectDatum(self, req: p.InspectDatumRequest, ctx: grpc.ServicerContext
                     ) -> p.DatumInfo:
        return pc.to_datum_info(self.core.pps.InspectDatum(t.InspectDatumRequest(
            datum=t.Datum(job=pc.job_ref(req.datum.job), id=req.datum.id)), ctx))

    @_stream
    def CreateDatum(self, requests: Iterator[p.CreateDatumRequest], ctx: grpc.ServicerContext
                    ) -> Iterator[p.DatumInfo]:
        yield from pps_jobs.create_datums(self.core, requests, ctx)

    @_unary
    def RestartDatum(self, req: p.RestartDatumRequest, ctx: grpc.ServicerContext
                     ) -> empty_pb2.Empty:
        pps_jobs.restart_datum(self.core, req, ctx)
        return empty_pb2.Empty()

    # logs

    @_stream
    def GetLogs(self, req: p.GetLogsRequest, ctx: grpc.ServicerContext
                ) -> Iterator[p.LogMessage]:
        yield from pps_jobs.get_logs(self.core, req, ctx)

    # secrets

    @_unary
    def CreateSecret(self, req: p.CreateSecretRequest, ctx: grpc.ServicerContext
                     ) -> empty_pb2.Empty:
        pps_secrets.create_secret(self.core.pps.pps.meta, req.file)
        return empty_pb2.Empty()

    @_unary
    def InspectSecret(self, req: p.InspectSecretRequest, ctx: grpc.ServicerContext
                      ) -> p.SecretInfo:
        return pps_secrets.inspect_secret(self.core.pps.pps.meta, req.secret.name)

    @_unary
    def ListSecret(self, req: empty_pb2.Empty, ctx: grpc.ServicerContext) -> p.SecretInfos:
        return p.SecretInfos(secret_info=pps_secrets.list_secrets(self.core.pps.pps.meta))

    @_unary
    def DeleteSecret(self, req: p.DeleteSecretRequest, ctx: grpc.ServicerContext
                     ) -> empty_pb2.Empty:
        pps_secrets.delete_secret(self.core.pps.pps.meta, req.secret.name)
        return empty_pb2.Empty()


def add_to_server(server: grpc.Server, core: Core) -> None:
    pps_pb2_grpc.add_APIServicer_to_server(  # type: ignore[no-untyped-call]
        PPSAdapter(core), server)


__all__ = ["PPSAdapter", "add_to_server"]
