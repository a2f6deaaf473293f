"""Reads of jobs, job sets, datums and logs for ``pps_v2.API``.

tusk's PPS service lists jobs, datums and log lines; Pachyderm's calls also
filter them (projects, input commits, history, datum states, data filters),
page them (``number``, ``reverse``, a pagination marker), follow them
(``SubscribeJob``) and enumerate the datums of an input in batches
(``CreateDatum``). That work is done here, over tusk's servicer with the
caller's context; the answers are converted with :mod:`tusk.pachyderm.pps_convert`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any

import grpc

from pfs import errors
from tusk.api import pps_pb2 as t
from tusk.pachyderm import convert
from tusk.pachyderm import pps_convert as pc
from tusk.pachyderm_api import pps_pb2 as p
from tusk.pps_server import job_info_msg

if TYPE_CHECKING:
    from tusk.pachyderm import Core

#: Datums per answer of ``CreateDatum`` when the request asks for 0 (Pachyderm
#: leaves the default to the server).
DEFAULT_DATUM_BATCH = 100

#: How often ``SubscribeJob`` re-reads the pipeline's jobs (one metadata range).
SUBSCRIBE_POLL_SECONDS = 0.5

#: The spec a job ran with (its pipeline version's canonical spec), if known.
SpecOf = Callable[[t.JobInfo], dict[str, Any] | None]


def spec_lookup(core: Core, ctx: grpc.ServicerContext) -> SpecOf:
    """A lookup of the spec a job ran with, reading each pipeline's history once."""
    cache: dict[str, dict[int, dict[str, Any]]] = {}

    def spec_of(ji: t.JobInfo) -> dict[str, Any] | None:
        name = ji.job.pipeline.name
        if name not in cache:
            req = t.ListPipelineRequest(pipeline=t.Pipeline(name=name), history=-1)
            cache[name] = {pi.version: pc.spec_dict(pi.spec)
                           for pi in core.pps.ListPipeline(req, ctx)}
        versions = cache[name]
        return versions.get(ji.pipeline_version) or next(iter(versions.values()), None)
    return spec_of


def _job_info(ji: t.JobInfo, spec_of: SpecOf | None) -> p.JobInfo:
    return pc.to_job_info(ji, spec_of(ji) if spec_of else None)


# --- jobs -------------------------------------------------------------------------------


def list_jobs(core: Core, req: p.ListJobRequest, ctx: grpc.ServicerContext
              ) -> Iterator[p.JobInfo]:
    """``ListJob``: tusk's job listing filtered and paged Pachyderm's way."""
    treq = t.ListJobRequest()
    if req.HasField("pipeline") and req.pipeline.name:
        treq.pipeline.name = pc.full_name(req.pipeline)
    projects = pc.project_filter(req.projects)
    wanted = [(convert.commit_repo(c), c.id) for c in req.input_commit]
    marker = pc.ts_seconds(req.pagination_marker) if req.HasField("pagination_marker") else None
    current: dict[str, int] = {}

    def keep(ji: t.JobInfo) -> bool:
        name = ji.job.pipeline.name
        if projects and pc.project_of(name) not in projects:
            return False
        if wanted and not any(
                any((not repo or c.repo == repo) and (not cid or c.id == cid)
                    for c in ji.input_commits) for repo, cid in wanted):
            return False
        if marker is not None:
            created = pc.ts_seconds(ji.created)
            if (created <= marker) if req.reverse else (created >= marker):
                return False
        if req.history >= 0:
            # history: jobs of the current version and of N versions before it.
            if name not in current:
                try:
                    current[name] = core.pps.pps.inspect_pipeline(name).version
                except errors.NotFound:  # deleted meanwhile: its jobs are going too
                    current[name] = 0
            if ji.pipeline_version < current[name] - req.history:
                return False
        return True

    jobs: Iterable[t.JobInfo] = (ji for ji in core.pps.ListJob(treq, ctx) if keep(ji))
    if req.reverse:
        jobs = reversed(list(jobs))
    if req.number > 0:
        jobs = islice(jobs, req.number)
    spec_of = spec_lookup(core, ctx) if req.details else None
    for ji in jobs:
        yield _job_info(ji, spec_of)


def subscribe_jobs(core: Core, req: p.SubscribeJobRequest, ctx: grpc.ServicerContext
                   ) -> Iterator[p.JobInfo]:
    """The pipeline's jobs, oldest first, then each job again whenever it
    changes, until the client cancels."""
    name = pc.full_name(req.pipeline)
    cancel = threading.Event()
    ctx.add_callback(cancel.set)
    spec_of = spec_lookup(core, ctx) if req.details else None
    sent: dict[str, bytes] = {}
    while ctx.is_active() and not cancel.is_set():
        for info in reversed(core.pps.pps.list_job(name)):
            ji = job_info_msg(info)
            key = ji.SerializeToString(deterministic=True)
            if sent.get(info.id) != key:
                sent[info.id] = key
                yield _job_info(ji, spec_of)
        cancel.wait(SUBSCRIBE_POLL_SECONDS)


def inspect_job_set(core: Core, req: p.InspectJobSetRequest, ctx: grpc.ServicerContext
                    ) -> Iterator[p.JobInfo]:
    if not req.job_set.id:
        raise errors.InvalidArgument("job set ID is required: set job_set.id")
    try:
        core.pps.pps.inspect_job_set(req.job_set.id)
    except errors.NotFound:
        return  # Pachyderm: a commit set no pipeline processed has no jobs
    spec_of = spec_lookup(core, ctx) if req.details else None
    for ji in core.pps.InspectJobSet(
            t.InspectJobSetRequest(job_set=t.JobSet(id=req.job_set.id), wait=req.wait), ctx):
        yield _job_info(ji, spec_of)


def list_job_sets(core: Core, req: p.ListJobSetRequest, ctx: grpc.ServicerContext
                  ) -> Iterator[p.JobSetInfo]:
    """``ListJobSet``: tusk's job sets filtered by project and paged."""
    projects = pc.project_filter(req.projects)
    marker = pc.ts_seconds(req.pagination_marker) if req.HasField("pagination_marker") else None
    spec_of = spec_lookup(core, ctx) if req.details else None
    sets: list[p.JobSetInfo] = []
    for js in core.pps.ListJobSet(t.ListJobSetRequest(), ctx):
        jobs = [ji for ji in js.jobs
                if not projects or pc.project_of(ji.job.pipeline.name) in projects]
        if not jobs:
            continue
        created = min(pc.ts_seconds(ji.created) for ji in jobs)
        if marker is not None and ((created <= marker) if req.reverse else (created >= marker)):
            continue
        sets.append(p.JobSetInfo(job_set=p.JobSet(id=js.job_set.id), jobs=[
            _job_info(ji, spec_of) for ji in jobs]))
    if req.reverse:
        sets.reverse()
    yield from sets[:req.number] if req.number > 0 else sets


# --- datums -----------------------------------------------------------------------------


def preview_datums(core: Core, inp: p.Input, ctx: grpc.ServicerContext
                   ) -> Iterator[t.DatumInfo]:
    """The datums of an input over its current heads (no pipeline involved)."""
    yield from core.pps.ListDatum(
        t.ListDatumRequest(spec_json=pc.preview_spec_json(inp)), ctx)


def list_datums(core: Core, req: p.ListDatumRequest, ctx: grpc.ServicerContext
                ) -> Iterator[p.DatumInfo]:
    """``ListDatum``: a job's datums, or an input's preview, filtered by state and paged."""
    if req.HasField("input"):
        datums = preview_datums(core, req.input, ctx)
    elif req.HasField("job"):
        datums = core.pps.ListDatum(t.ListDatumRequest(job=pc.job_ref(req.job)), ctx)
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
        yield pc.to_datum_info(di)


def create_datums(core: Core, requests: Iterator[p.CreateDatumRequest],
                  ctx: grpc.ServicerContext) -> Iterator[p.DatumInfo]:
    """Datums of an input in batches: ``start`` gives the input and the first
    batch's size, each ``continue`` asks for the next batch; the stream ends
    after the last datum."""
    first = next(requests, None)
    if first is None or first.WhichOneof("body") != "start":
        raise errors.InvalidArgument(
            "the first CreateDatumRequest must be `start`, with the input to enumerate")
    datums = preview_datums(core, first.start.input, ctx)
    number = first.start.number or DEFAULT_DATUM_BATCH
    while True:
        batch = list(islice(datums, number))
        for di in batch:
            yield pc.to_datum_info(di)
        if len(batch) < number:
            return
        req = next(requests, None)
        if req is None:
            return
        if req.WhichOneof("body") != "continue":
            raise errors.InvalidArgument(
                "after `start`, each CreateDatumRequest must be `continue`")
        number = getattr(req, "continue").number or number


def restart_datum(core: Core, req: p.RestartDatumRequest, ctx: grpc.ServicerContext) -> None:
    """``RestartDatum``, answering "could not be found" where Pachyderm does."""
    ref = pc.job_ref(req.job)
    job = core.pps.InspectJob(t.InspectJobRequest(job=ref), ctx)
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
        core.pps.pps.restart_datum(ref.pipeline.name, job.job.id, filters)
    except errors.NotFound:
        raise not_found from None
    except errors.FailedPrecondition:  # the job finished meanwhile
        raise not_found from None


# --- logs -------------------------------------------------------------------------------


def get_logs(core: Core, req: p.GetLogsRequest, ctx: grpc.ServicerContext
             ) -> Iterator[p.LogMessage]:
    """``GetLogs`` of a pipeline, job or datum, data filters applied here."""
    job = req.job if req.HasField("job") and req.job.id else req.datum.job
    if req.HasField("pipeline") and req.pipeline.name:
        pipeline = req.pipeline
    elif job.pipeline.name:
        pipeline = job.pipeline
    else:
        raise errors.InvalidArgument("name the pipeline, job or datum whose logs to get")
    name = pc.full_name(pipeline)
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
        datums = _matching_datums(core, pc.job_ref(job), list(req.data_filters), ctx)
    for line in core.pps.GetLogs(treq, ctx):
        if datums is None or line.datum_id in datums:
            yield pc.to_log_message(line)


def _matching_datums(core: Core, job: t.Job, filters: list[str], ctx: grpc.ServicerContext
                     ) -> set[str]:
    """IDs of the job's datums a filter names: by ID prefix, or by input path
    (every filter must match one of the datum's files)."""
    out = set()
    for di in core.pps.ListDatum(t.ListDatumRequest(job=job), ctx):
        paths = {f.path for f in di.files} | {f.path.lstrip("/") for f in di.files}
        if all(di.datum.id.startswith(f) or f in paths for f in filters):
            out.add(di.datum.id)
    return out


__all__ = [
    "DEFAULT_DATUM_BATCH",
    "SUBSCRIBE_POLL_SECONDS",
    "SpecOf",
    "create_datums",
    "get_logs",
    "inspect_job_set",
    "list_datums",
    "list_job_sets",
    "list_jobs",
    "preview_datums",
    "restart_datum",
    "spec_lookup",
    "subscribe_jobs",
]
