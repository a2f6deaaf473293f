"""PPS methods of the tusk SDK (mixed into :class:`tusk.client.Client`).

Pipelines, jobs, datums and logs over ``proto/pps.proto``. Methods return the
messages of :mod:`tusk.api.pps_pb2`; listing methods return streaming
iterators; errors come back typed (``PipelineNotFound``, ``InvalidSpec``... from
:mod:`pps.errors`, imported here so the client can rebuild them by name).

Jobs are named by pipeline and ID; the ID may also be a ref of the pipeline's
output repo (``"master"``, ``"master^"``): the server resolves it.

Example::

    from tusk.client import Client

    c = Client()
    c.create_pipeline({
        "pipeline": {"name": "copy"},
        "transform": {"image": "tusk/busybox:latest", "cmd": ["cp", "-r", "/pfs/in/.", "/pfs/out"]},
        "input": {"pfs": {"repo": "in", "glob": "/*"}},
    })
    job = c.wait_job("copy", "master")       # the job of the output branch's head
    print(job.state, job.data_processed)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pps.errors  # noqa: F401  (registers the PPS error classes for rebuilding)
from tusk.api import pps_pb2, pps_pb2_grpc

if TYPE_CHECKING:
    import grpc

    from tusk.client import Stream

#: A pipeline spec: a dict (decoded JSON/YAML), or the JSON/YAML text of ONE pipeline.
SpecLike = Mapping[str, Any] | str


def _spec_text(spec: SpecLike) -> str:
    # Text goes to the server untouched, so its error messages quote what the
    # user wrote; a dict is encoded as JSON.
    return spec if isinstance(spec, str) else json.dumps(spec)


def _pipeline(name: str) -> pps_pb2.Pipeline:
    return pps_pb2.Pipeline(name=name)


def _job(pipeline: str, job: str) -> pps_pb2.Job:
    return pps_pb2.Job(pipeline=_pipeline(pipeline), id=job)


class PPSMixin:
    """The PPS half of :class:`tusk.client.Client` (needs its channel and address)."""

    # Provided by Client.
    _channel: grpc.Channel
    address: str
    _pps_stub_: Any = None

    def metadata(self) -> tuple[tuple[str, str], ...]:
        raise NotImplementedError  # Client's: the active transaction

    # plumbing

    def _pps_stub(self) -> Any:
        if self._pps_stub_ is None:
            # Same channel as PFS: one connection per client.
            self._pps_stub_ = pps_pb2_grpc.APIStub(self._channel)  # type: ignore[no-untyped-call]
        return self._pps_stub_

    def _pps_call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        # Imported here: tusk.client imports this module to build Client.
        import grpc

        from tusk.client import translate

        try:
            return getattr(self._pps_stub(), method)(request, timeout=timeout,
                                                     metadata=self.metadata())
        except grpc.RpcError as err:
            raise translate(err, self.address) from None

    def _pps_stream(self, method: str, request: Any, timeout: float | None = None
                    ) -> Stream[Any]:
        from tusk.client import _stream

        call = getattr(self._pps_stub(), method)(request, timeout=timeout,
                                                 metadata=self.metadata())
        return _stream(call, self.address)

    # pipelines

    def create_pipeline(self, spec: SpecLike, update: bool = False, reprocess: bool = False,
                        dry_run: bool = False, project: str = "") -> pps_pb2.PipelineInfo:
        """Create a pipeline (``update=True``: replace an existing one's spec; with
        ``reprocess=True`` every datum is processed again). ``dry_run=True``
        checks the spec (and its input repos) and creates nothing. The answer's
        ``warnings`` list fields that are recorded but not used. ``project``: of
        a spec that names none ("" = default)."""
        r: pps_pb2.PipelineInfo = self._pps_call("CreatePipeline", pps_pb2.CreatePipelineRequest(
            spec_json=_spec_text(spec), update=update, reprocess=reprocess, dry_run=dry_run,
            default_project=project))
        return r

    def update_pipeline(self, spec: SpecLike, reprocess: bool = False) -> pps_pb2.PipelineInfo:
        """``create_pipeline(spec, update=True)``."""
        return self.create_pipeline(spec, update=True, reprocess=reprocess)

    def inspect_pipeline(self, name: str) -> pps_pb2.PipelineInfo:
        r: pps_pb2.PipelineInfo = self._pps_call(
            "InspectPipeline", pps_pb2.InspectPipelineRequest(pipeline=_pipeline(name)))
        return r

    def list_pipeline(self, pipeline: str = "", history: int = 0, project: str = "",
                      all_projects: bool = False) -> Stream[pps_pb2.PipelineInfo]:
        """The pipelines of ``project`` ("" = default; or of every project), or
        only ``pipeline``, newest first; ``history``: also up to that many
        earlier versions of each (-1: all of them)."""
        req = pps_pb2.ListPipelineRequest(history=history, project=project,
                                          all_projects=all_projects)
        if pipeline:
            req.pipeline.CopyFrom(_pipeline(pipeline))
        return self._pps_stream("ListPipeline", req)

    def delete_pipeline(self, name: str, force: bool = False, keep_repo: bool = False) -> None:
        """Delete a pipeline, its jobs and (unless ``keep_repo``) its output repo;
        ``force`` even if other pipelines read its output."""
        self._pps_call("DeletePipeline", pps_pb2.DeletePipelineRequest(
            pipeline=_pipeline(name), force=force, keep_repo=keep_repo))

    def start_pipeline(self, name: str) -> None:
        """Restart a stopped pipeline: one new job over the current input heads."""
        self._pps_call("StartPipeline", pps_pb2.StartPipelineRequest(pipeline=_pipeline(name)))

    def run_cron(self, name: str) -> None:
        """Tick every cron input of pipeline ``name`` now (a job follows)."""
        self._pps_call("RunCron", pps_pb2.RunCronRequest(pipeline=_pipeline(name)))

    def stop_pipeline(self, name: str) -> None:
        """Stop a pipeline: running jobs are killed, new input commits make no jobs."""
        self._pps_call("StopPipeline", pps_pb2.StopPipelineRequest(pipeline=_pipeline(name)))

    # jobs

    def list_job(self, pipeline: str | None = None, number: int = 0) -> Stream[pps_pb2.JobInfo]:
        """Jobs of one pipeline (``None``: of every pipeline), newest first; at most
        ``number`` of them (0: all)."""
        return self._pps_stream("ListJob", pps_pb2.ListJobRequest(
            pipeline=_pipeline(pipeline) if pipeline else None, number=number))

    def inspect_job(self, pipeline: str, job: str, wait: bool = False,
                    timeout: float | None = None) -> pps_pb2.JobInfo:
        """A job by ID or output-repo ref; ``wait=True`` blocks until it is terminal
        (SUCCESS, FAILURE, KILLED or UNRUNNABLE), at most ``timeout`` seconds."""
        r: pps_pb2.JobInfo = self._pps_call(
            "InspectJob", pps_pb2.InspectJobRequest(job=_job(pipeline, job), wait=wait),
            timeout=timeout)
        return r

    def wait_job(self, pipeline: str, job: str, timeout: float | None = None
                 ) -> pps_pb2.JobInfo:
        """Block until the job is terminal (``tusk wait job``)."""
        return self.inspect_job(pipeline, job, wait=True, timeout=timeout)

    def stop_job(self, pipeline: str, job: str) -> None:
        """Kill a job that is not terminal yet (state KILLED); later jobs proceed."""
        self._pps_call("StopJob", pps_pb2.StopJobRequest(job=_job(pipeline, job)))

    def delete_job(self, pipeline: str, job: str) -> None:
        """Stop the job if it runs and forget it (record, results, logs); its
        output commit stays."""
        self._pps_call("DeleteJob", pps_pb2.DeleteJobRequest(job=_job(pipeline, job)))

    def restart_datum(self, pipeline: str, job: str, data: list[str]) -> pps_pb2.DatumInfo:
        """Kill a running datum's user code and run it again; ``data`` is its ID
        (or a prefix) or the paths of its input files."""
        r: pps_pb2.DatumInfo = self._pps_call("RestartDatum", pps_pb2.RestartDatumRequest(
            job=_job(pipeline, job), data_filters=data))
        return r

    def list_job_set(self, number: int = 0) -> Stream[pps_pb2.JobSetInfo]:
        """Job sets (the jobs of one commit set across pipelines), newest first."""
        return self._pps_stream("ListJobSet", pps_pb2.ListJobSetRequest(number=number))

    def inspect_job_set(self, id: str, wait: bool = False) -> Stream[pps_pb2.JobInfo]:
        """The jobs of job set ``id``, upstream first; ``wait``: each once terminal."""
        return self._pps_stream("InspectJobSet", pps_pb2.InspectJobSetRequest(
            job_set=pps_pb2.JobSet(id=id), wait=wait))

    # datums and logs

    def list_datum(self, pipeline: str, job: str) -> Stream[pps_pb2.DatumInfo]:
        """The datums of a job: processed, skipped, failed, recovered or pending."""
        return self._pps_stream("ListDatum", pps_pb2.ListDatumRequest(job=_job(pipeline, job)))

    def list_datum_for_spec(self, spec: SpecLike) -> Stream[pps_pb2.DatumInfo]:
        """The datums a (not created) pipeline would have over its inputs' heads."""
        return self._pps_stream("ListDatum", pps_pb2.ListDatumRequest(spec_json=_spec_text(spec)))

    def inspect_datum(self, pipeline: str, job: str, datum: str) -> pps_pb2.DatumInfo:
        """One datum of a job; ``datum`` may be a unique prefix of its ID."""
        r: pps_pb2.DatumInfo = self._pps_call("InspectDatum", pps_pb2.InspectDatumRequest(
            datum=pps_pb2.Datum(job=_job(pipeline, job), id=datum)))
        return r

    def file_lineage(self, repo: str, ref: str, path: str, downstream: bool = False,
                     max_depth: int = 0, max_nodes: int = 0) -> pps_pb2.LineageTree:
        """The lineage of ``repo@ref:path`` as a tree (``pps.lineage``).

        Upstream (the default): the datum that wrote the file, its input files,
        and so on through every upstream pipeline to user commits.
        ``downstream``: every datum that read it and the outputs they wrote,
        through every pipeline below. ``max_depth`` (pipelines crossed, 0: 32)
        and ``max_nodes`` (0: 10,000) bound the tree; nodes cut off say
        ``truncated``.
        """
        from tusk.api import pfs_pb2

        r: pps_pb2.LineageTree = self._pps_call("FileLineage", pps_pb2.FileLineageRequest(
            file=pfs_pb2.File(commit=pfs_pb2.Commit(repo=repo, id=ref), path=path),
            direction=pps_pb2.DOWNSTREAM if downstream else pps_pb2.UPSTREAM,
            max_depth=max_depth, max_nodes=max_nodes))
        return r

    def get_logs(self, pipeline: str, job: str | None = None, datum: str | None = None,
                 follow: bool = False, master: bool = False, worker: bool = False,
                 tail: int = 0, since: float = 0.0) -> Stream[pps_pb2.LogMessage]:
        """Log lines of a pipeline's jobs: the master's job events (``master``
        set on them) and the workers' lines (user code output, per-datum
        ``system`` messages). ``master``/``worker`` keep one kind; ``tail`` the
        last N lines; ``since`` lines newer than that many seconds. With
        ``follow`` the stream never ends by itself: stop iterating (or close
        it) to end it."""
        return self._pps_stream("GetLogs", pps_pb2.GetLogsRequest(
            pipeline=_pipeline(pipeline), job=job or "", datum=datum or "", follow=follow,
            master=master, worker=worker, tail=tail, since_seconds=since))
