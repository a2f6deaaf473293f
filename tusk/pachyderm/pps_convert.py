"""Pachyderm's PPS messages and tusk's, one into the other.

Pure functions, no calls: the adapter (:mod:`tusk.pachyderm.pps`) and its
helpers use them to name pipelines and jobs both ways, to read tusk's
canonical spec (a ``Struct``) back as a dict, to build the spec JSON tusk's
``CreatePipeline`` takes, and to turn tusk's ``PipelineInfo``, ``JobInfo``,
``DatumInfo`` and ``LogMessage`` into Pachyderm's (states by enum name,
``details`` filled field by field from the spec).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message

from pfs import errors
from pps.spec import parse_duration
from tusk.api import pfs_pb2 as tpfs
from tusk.api import pps_pb2 as t
from tusk.pachyderm import convert
from tusk.pachyderm_api import pfs_pb2 as pfs
from tusk.pachyderm_api import pps_pb2 as p

log = logging.getLogger(__name__)

#: Request-only fields of ``CreatePipelineRequest``: flags of tusk's request,
#: not part of the spec.
_REQUEST_FLAGS = ("update", "reprocess", "dry_run")

#: Spec fields that are durations: tusk writes Go's form ("1m30s"), protobuf's
#: JSON mapping wants seconds ("90s").
_DURATIONS = ("datum_timeout", "job_timeout", "maximum_expected_uptime")



# --- names ----------------------------------------------------------------------------


def full_name(pipeline: p.Pipeline) -> str:
    """A Pachyderm pipeline's tusk name (``NAME`` or ``PROJECT/NAME``)."""
    if not pipeline.name:
        raise errors.InvalidArgument("pipeline name is required: set pipeline.name")
    return convert.repo_name(pfs.Repo(name=pipeline.name, project=pipeline.project))


def to_pipeline(full: str) -> p.Pipeline:
    project, name = convert.split(full)
    return p.Pipeline(name=name, project=pfs.Project(name=project))


def project_of(full: str) -> str:
    return convert.split(full)[0]


def project_filter(projects: Iterable[pfs.Project]) -> set[str]:
    """A request's project filter (empty: every project)."""
    return {convert.project_name(pr) for pr in projects}


def job_ref(job: p.Job) -> t.Job:
    if not job.id:
        raise errors.InvalidArgument(
            f"no job ID given for pipeline {job.pipeline.name or '?'}: set job.id")
    return t.Job(pipeline=t.Pipeline(name=full_name(job.pipeline)), id=job.id)


def to_job(job: t.Job) -> p.Job:
    return p.Job(pipeline=to_pipeline(job.pipeline.name), id=job.id)


# --- values ---------------------------------------------------------------------------


def _copy_ts(dst: timestamp_pb2.Timestamp, src: timestamp_pb2.Timestamp) -> None:
    if src.seconds or src.nanos:
        dst.CopyFrom(src)


def ts_seconds(ts: timestamp_pb2.Timestamp) -> float:
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


def spec_dict(spec: struct_pb2.Struct) -> dict[str, Any]:
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
        if key.endswith("seconds"):
            field = key.removesuffix("seconds") + "_time"
            if field in ("download_time", "process_time", "upload_time"):
                getattr(out, field).FromNanoseconds(round(value * 1e9))
        elif key in ("download_bytes", "upload_bytes"):
            setattr(out, key, int(value))


def cron_inputs(node: Any) -> Iterator[dict[str, Any]]:
    """The cron inputs of a canonical spec's ``input``."""
    if isinstance(node, dict):
        if isinstance(node.get("cron"), dict):
            yield node["cron"]
        for v in node.values():
            if isinstance(v, list):
                for c in v:
                    yield from cron_inputs(c)


def input_repos(node: Any) -> Iterator[str]:
    """The full names of the pfs repos a canonical spec's ``input`` reads."""
    if isinstance(node, dict):
        leaf = node.get("pfs")
        if isinstance(leaf, dict):
            yield convert.repo_name(pfs.Repo(name=leaf.get("repo", ""),
                                             project=pfs.Project(name=leaf.get("project", ""))))
        for v in node.values():
            if isinstance(v, list):
                for c in v:
                    yield from input_repos(c)


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
    spec = spec_dict(pi.spec)
    parallelism = _parallelism(spec)
    text = json.dumps(spec, sort_keys=True)
    out = p.PipelineInfo(
        pipeline=to_pipeline(pi.pipeline.name), version=pi.version, stopped=pi.stopped,
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
        job=to_job(ji.job), pipeline_version=ji.pipeline_version, restart=ji.restart,
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
        out.datum.job.CopyFrom(to_job(di.datum.job))
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


def preview_spec_json(inp: p.Input) -> str:
    """The spec text of a throwaway pipeline reading ``inp``: tusk's
    ``ListDatum`` enumerates the datums of such a spec over the inputs' heads."""
    spec = {"pipeline": {"name": "datums"}, "transform": {"cmd": ["true"]},
            "input": json_format.MessageToDict(inp, preserving_proto_field_name=True)}
    return json.dumps(spec)


__all__ = [
    "cron_inputs",
    "full_name",
    "input_repos",
    "job_ref",
    "preview_spec_json",
    "project_filter",
    "project_of",
    "spec_dict",
    "spec_json",
    "to_datum_info",
    "to_job",
    "to_job_info",
    "to_log_message",
    "to_pipeline",
    "to_pipeline_info",
    "ts_seconds",
]
