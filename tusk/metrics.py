"""Prometheus metrics of a daemon (``/metrics`` on ``--http-address``).

Two kinds of series, so that ``pfs``/``pps`` never import ``prometheus_client``:

* **Read at scrape time** from the stores (:class:`StateCollector`, a custom
  collector): jobs by pipeline and state, datums processed/skipped/failed/
  recovered (sums over the job records, which the masters keep current while
  jobs run, so they move during a job and count datums run by ``tusk worker``
  processes too), work units queued (queue depth), workers per pipeline (its
  parallelism, running pipelines only), and bytes stored and deduplicated by
  this process (plain counters on ``pfs.blobs.BlobStore``). Nothing to keep in
  step: a restarted daemon reports the same job totals.
* **Events** the core reports through its existing hook lists:
  ``PFS.on_commit_finished`` (commits finished) and
  ``Jobs.datum_observers`` (datum durations, for this process's workers), and
  the gRPC server interceptor (requests by service, method and status code,
  with latencies; Pachyderm's API shares the server and is counted too).

Each daemon has its own registry (tests run several in one process).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from pfs.api import PFS
from pfs.errors import TuskError
from pps import keys as pps_keys
from pps.api import PPS
from pps.model import JobState
from pps.records import DatumResult, JobRec, PipelineRec
from tusk.http import Request, Response

__all__ = ["DaemonMetrics", "StateCollector"]

#: Datum durations: a no-op datum takes ~2 ms, real ones minutes to hours.
DATUM_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400)
#: API latencies: metadata calls take ~1 ms, uploads and waits much longer.
API_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def _split_method(full: str) -> tuple[str, str]:
    """``/tusk.pfs.API/PutFile`` -> ``("tusk.pfs.API", "PutFile")``."""
    service, _, method = full.lstrip("/").rpartition("/")
    return service or "unknown", method or full


class StateCollector(Collector):
    """Series read from the metadata store at each scrape (see the module
    docstring). A scrape reads every job record once: ~10 ms per 1,000 jobs
    on SQLite; one range read each on etcd."""

    def __init__(self, pps: PPS) -> None:
        self.pps = pps
        self.pfs = pps.pfs

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("tusk_jobs", "Jobs by pipeline and state (job records kept).",
                                 labels=["pipeline", "state"])
        datums = {
            outcome: CounterMetricFamily(
                f"tusk_datums_{outcome}", f"Datums {outcome}, summed over the pipeline's jobs.",
                labels=["pipeline"])
            for outcome in ("processed", "skipped", "failed", "recovered")}
        queue = GaugeMetricFamily("tusk_queue_depth",
                                  "Work units waiting for a worker (not yet claimed).",
                                  labels=["pipeline"])
        workers = GaugeMetricFamily("tusk_workers",
                                    "Workers of running pipelines (parallelism per process).",
                                    labels=["pipeline"])
        try:
            pipelines = [PipelineRec.decode(kv.value)
                         for kv in self.pfs.meta.range(pps_keys.ALL_PIPELINES)]
            for p in pipelines:
                states = dict.fromkeys((s.value for s in JobState), 0)
                sums = dict.fromkeys(datums, 0)
                for kv in self.pfs.meta.range(pps_keys.jobs(p.name)):
                    j = JobRec.decode(kv.value)
                    states[j.state] = states.get(j.state, 0) + 1
                    sums["processed"] += j.data_processed
                    sums["skipped"] += j.data_skipped
                    sums["failed"] += j.data_failed
                    sums["recovered"] += j.data_recovered
                for state, n in states.items():
                    jobs.add_metric([p.name, state.lower()], n)
                for outcome, n in sums.items():
                    datums[outcome].add_metric([p.name], n)
                depth = sum(1 for _ in self.pfs.meta.range(pps_keys.queue_prefix(p.name)))
                queue.add_metric([p.name], depth)
                par = p.spec.get("parallelism_spec", {}).get("constant") or 1
                workers.add_metric([p.name], 0 if p.stopped else int(par))
        except TuskError:
            pass  # the store is unreachable: these series are absent from this scrape
        yield jobs
        yield from datums.values()
        yield queue
        yield workers
        blobs = self.pfs.blobs
        yield CounterMetricFamily("tusk_storage_written_bytes",
                                  "Bytes of new chunks this daemon stored (after dedup).",
                                  value=blobs.bytes_written)
        yield CounterMetricFamily("tusk_storage_deduplicated_bytes",
                                  "Bytes of chunks this daemon found already stored.",
                                  value=blobs.bytes_deduped)


class _Interceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    """Counts every call by service, method and status code, and times it."""

    def __init__(self, record: Callable[[str, str, str, float], None]) -> None:
        self._record = record

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        service, method = _split_method(details.method)
        record = self._record

        def code_of(ctx: Any, failed: bool) -> str:
            code = ctx.code() if hasattr(ctx, "code") else None
            if code is None:
                return "UNKNOWN" if failed else "OK"
            return str(code.name)

        def unary_response(behavior: Callable[..., Any]) -> Callable[..., Any]:
            def call(request: Any, ctx: Any) -> Any:
                t0 = time.monotonic()
                failed = True
                try:
                    resp = behavior(request, ctx)
                    failed = False
                    return resp
                finally:
                    record(service, method, code_of(ctx, failed), time.monotonic() - t0)
            return call

        def stream_response(behavior: Callable[..., Any]) -> Callable[..., Any]:
            def call(request: Any, ctx: Any) -> Iterator[Any]:
                t0 = time.monotonic()
                code = "UNKNOWN"
                try:
                    yield from behavior(request, ctx)
                    code = code_of(ctx, failed=False)
                except GeneratorExit:  # the client went away mid-stream
                    code = "CANCELLED"
                    raise
                except BaseException:
                    code = code_of(ctx, failed=True)
                    raise
                finally:
                    record(service, method, code, time.monotonic() - t0)
            return call

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                unary_response(handler.unary_unary), handler.request_deserializer,
                handler.response_serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                unary_response(handler.stream_unary), handler.request_deserializer,
                handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                stream_response(handler.unary_stream), handler.request_deserializer,
                handler.response_serializer)
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                stream_response(handler.stream_stream), handler.request_deserializer,
                handler.response_serializer)
        return handler


class DaemonMetrics:
    """A daemon's metrics: its registry, the hooks feeding it, the gRPC
    interceptor and the ``/metrics`` route handler."""

    def __init__(self, pps: PPS) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(StateCollector(pps))
        self.commits_finished = Counter(
            "tusk_commits_finished", "Commits finished (user and pipeline output).",
            ["repo_type"], registry=self.registry)
        self.datum_seconds = Histogram(
            "tusk_datum_duration_seconds",
            "Seconds per datum (all attempts), by pipeline and outcome; datums run by "
            "this daemon's workers.", ["pipeline", "state"], buckets=DATUM_BUCKETS,
            registry=self.registry)
        self.requests = Counter(
            "tusk_api_requests", "gRPC calls by service, method and status code.",
            ["service", "method", "code"], registry=self.registry)
        self.request_seconds = Histogram(
            "tusk_api_request_duration_seconds", "gRPC call latency (streams: until they end).",
            ["service", "method"], buckets=API_BUCKETS, registry=self.registry)
        pfs: PFS = pps.pfs

        def finished(c: Any) -> None:
            # A pipeline's output repo has a pipeline record of the same name.
            try:
                kind = "pipeline" if pfs.meta.get(pps_keys.pipeline(c.repo)) else "user"
            except TuskError:
                kind = "unknown"
            self.commits_finished.labels(kind).inc()

        pfs.on_commit_finished.append(finished)
        pps.jobs.datum_observers.append(self._datums)

    def _datums(self, pipeline: str, results: Sequence[DatumResult]) -> None:
        for r in results:
            self.datum_seconds.labels(pipeline, r.state).observe(r.duration)

    def _record(self, service: str, method: str, code: str, seconds: float) -> None:
        self.requests.labels(service, method, code).inc()
        self.request_seconds.labels(service, method).observe(seconds)

    def interceptor(self) -> grpc.ServerInterceptor:
        return _Interceptor(self._record)

    def handle(self, req: Request) -> Response:
        """The ``/metrics`` route: Prometheus's text format."""
        return Response(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)

    def routes(self) -> Iterable[tuple[str, Callable[[Request], Response]]]:
        return [("/metrics", self.handle)]
