"""Pipeline specs: parse, validate, default and serialise them.

A spec is JSON or YAML with Pachyderm's field names (reference 2.1). The text is read
as JSON when its first non-blank character is ``{`` or ``[`` (several JSON objects
may follow one another), otherwise as a YAML stream (several documents, each a
pipeline or a list of pipelines).

Parsing produces frozen dataclasses with every default filled in, so the rest of tusk
never has to remember one. :meth:`PipelineSpec.to_dict` gives a canonical JSON-able
dict that parses back to an equal spec, and :meth:`PipelineSpec.spec_hash` a stable
digest of it.

Every problem is an :class:`~pps.errors.InvalidSpec` whose ``path`` names the field
(``input.cross[1].pfs.glob``) and whose message says what was expected.

Fields Pachyderm uses only to shape Kubernetes pods (``pod_patch``, ``tolerations``,
``scheduling_spec``, ``transform.debug``...) are accepted and kept verbatim in
``extras`` so a Pachyderm spec loads unchanged; fields whose behaviour tusk does not
implement (``spout``, ``service``, ``transform.secrets``...)
are rejected with a message saying so, rather than silently ignored.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import blake3
import yaml

from pfs.errors import InvalidArgument
from pfs.glob import compile_glob
from pfs.paths import qualify, split_repo
from pps.errors import InvalidSpec

__all__ = [
    "DEFAULT_DATUM_TRIES",
    "DEFAULT_IMAGE",
    "CronInput",
    "Egress",
    "GPUSpec",
    "Input",
    "Metadata",
    "PFSInput",
    "ParallelismSpec",
    "PipelineRef",
    "PipelineSpec",
    "ResourceSpec",
    "Transform",
    "format_duration",
    "parse_bytes",
    "parse_cpu",
    "parse_duration",
    "parse_spec",
    "parse_specs",
    "spec_from_dict",
]

#: Pachyderm's DefaultUserImage. A spec without ``transform.image`` keeps ""
#: and runs in the daemon's ``--default-image``, which defaults to this.
DEFAULT_IMAGE = "ubuntu:20.04"
DEFAULT_DATUM_TRIES = 3  # Pachyderm's DefaultDatumTries
DEFAULT_PROJECT = "default"
MAX_NAME_LENGTH = 63
REPROCESS_SPECS = ("until_success", "every_job")

_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
_INPUT_KINDS = ("pfs", "cross", "union", "join", "group", "cron")

# Pachyderm fields that only shape Kubernetes objects: accepted, kept, not acted on.
_K8S_ONLY_TOP = (
    "scheduling_spec",
    "pod_spec",
    "pod_patch",
    "tolerations",
    "sidecar_resource_limits",
    "sidecar_resource_requests",
    "datum_set_spec",
    "maximum_expected_uptime",
    "spec_commit",
    "dry_run",
)
_K8S_ONLY_TRANSFORM = ("debug", "image_pull_secrets", "memory_volume", "dockerfile")
# Real Pachyderm fields whose behaviour tusk does not implement.
_UNSUPPORTED_TOP = ("spout", "service", "tf_job", "determined")
_UNSUPPORTED_TRANSFORM = ("secrets", "datum_batching")
_UNSUPPORTED_PFS = ("trigger", "propagation_spec")


# --- value parsers (also used by the CLI and the server) ---------------------------

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def parse_duration(value: str | float) -> float:
    """Parse a Go-style duration (``1s``, ``5m``, ``1h30m``, ``1.5h``) to seconds.

    A bare number is taken as seconds.

    Raises:
        ValueError: if the text is not a duration.
        TypeError: for a boolean.
    """
    if isinstance(value, bool):
        raise TypeError(f"expected a string or a number, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0 or not math.isfinite(value):
            raise ValueError(value)
        return float(value)
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if number < 0 or not math.isfinite(number):
            raise ValueError(value)
        return number
    if not text:
        raise ValueError(value)
    total = 0.0
    pos = 0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            raise ValueError(value)
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text):
        raise ValueError(value)
    return total


def format_duration(seconds: float) -> str:
    """Render seconds as a duration string :func:`parse_duration` reads back exactly."""
    if seconds == int(seconds):
        whole = int(seconds)
        h, rest = divmod(whole, 3600)
        m, s = divmod(rest, 60)
        out = (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{s}s" if s else "")
        return out or "0s"
    return f"{seconds!r}s"


_BYTES_UNITS = {
    "": 1,
    "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "KB": 10**3, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50,
    "B": 1,
}  # fmt: skip
_BYTES_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*$")


def parse_bytes(value: str | float) -> int:
    """Parse a memory/disk quantity (``64M``, ``1Gi``, ``512MB``, ``1048576``) to bytes.

    Kubernetes suffixes (``M`` = 10^6, ``Mi`` = 2^20) plus the ``MB``/``MiB``
    spellings people write anyway. Fractions round down to whole bytes.

    Raises:
        ValueError: if the text is not a quantity.
        TypeError: for a boolean.
    """
    if isinstance(value, bool):
        raise TypeError(f"expected a string or a number, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0 or not math.isfinite(value):
            raise ValueError(value)
        return int(value)
    m = _BYTES_RE.match(value)
    if m is None or m.group(2) not in _BYTES_UNITS:
        raise ValueError(value)
    return int(float(m.group(1)) * _BYTES_UNITS[m.group(2)])


def parse_cpu(value: str | float) -> float:
    """Parse a CPU quantity (``0.5``, ``2``, ``500m``) to cores.

    Raises:
        ValueError: if the text is not a CPU quantity.
        TypeError: for a boolean.
    """
    if isinstance(value, bool):
        raise TypeError(f"expected a string or a number, got {value!r}")
    if isinstance(value, (int, float)):
        cores = float(value)
    else:
        text = value.strip()
        cores = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    if cores < 0 or not math.isfinite(cores):
        raise ValueError(value)
    return cores


# --- the spec model ----------------------------------------------------------------


@dataclass(frozen=True)
class PipelineRef:
    """``pipeline{name, project}``."""

    name: str
    project: str = DEFAULT_PROJECT


@dataclass(frozen=True)
class Transform:
    """``transform``: what to run for each datum, and in which image."""

    cmd: tuple[str, ...]
    image: str = ""  # "": the daemon's --default-image
    stdin: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    err_cmd: tuple[str, ...] = ()
    err_stdin: tuple[str, ...] = ()
    accept_return_code: tuple[int, ...] = ()
    user: str = ""
    working_dir: str = ""
    extras: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PFSInput:
    """``input.pfs``: a glob over one branch of one repo."""

    name: str
    repo: str
    glob: str
    branch: str = "master"
    project: str = DEFAULT_PROJECT
    repo_type: str = "user"
    join_on: str = ""
    outer_join: bool = False
    group_by: str = ""
    lazy: bool = False
    empty_files: bool = False
    reference: bool = False
    #: Not staged at /pfs/<name>: the user code reads bucket ``<name>`` of the
    #: worker's S3 gateway (``S3_ENDPOINT``), which shows exactly the files
    #: /pfs/<name> would have held.
    s3: bool = False


@dataclass(frozen=True)
class CronInput:
    """``input.cron``: ticks committed to ``repo`` on a schedule; datums are ``/*``."""

    name: str
    spec: str
    repo: str
    project: str = DEFAULT_PROJECT
    overwrite: bool = False
    start: str = ""

    branch = "master"
    glob = "/*"


@dataclass(frozen=True)
class Input:
    """One input node: exactly one of the six fields is set (see :attr:`kind`)."""

    pfs: PFSInput | None = None
    cross: tuple[Input, ...] = ()
    union: tuple[Input, ...] = ()
    join: tuple[Input, ...] = ()
    group: tuple[Input, ...] = ()
    cron: CronInput | None = None

    @property
    def kind(self) -> str:
        """``"pfs"``, ``"cross"``, ``"union"``, ``"join"``, ``"group"`` or ``"cron"``."""
        for k in _INPUT_KINDS:
            if getattr(self, k):
                return k
        raise AssertionError("empty input node")  # parsing never builds one

    @property
    def children(self) -> tuple[Input, ...]:
        """Sub-inputs of a cross/union/join/group node (empty for leaves)."""
        return self.cross or self.union or self.join or self.group

    def leaves(self) -> Iterator[PFSInput | CronInput]:
        """Every pfs and cron input below this node, left to right."""
        if self.pfs is not None:
            yield self.pfs
        elif self.cron is not None:
            yield self.cron
        else:
            for c in self.children:
                yield from c.leaves()


@dataclass(frozen=True)
class ParallelismSpec:
    """``parallelism_spec``: number of workers (0 or absent means 1)."""

    constant: int = 1


@dataclass(frozen=True)
class GPUSpec:
    type: str
    number: int


@dataclass(frozen=True)
class ResourceSpec:
    """``resource_limits`` / ``resource_requests``; cpu in cores, memory/disk in bytes."""

    cpu: float | None = None
    memory: int | None = None
    disk: int | None = None
    gpu: GPUSpec | None = None


@dataclass(frozen=True)
class Metadata:
    """``metadata``: annotations and labels (Kubernetes pod metadata in Pachyderm)."""

    annotations: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Egress:
    """``egress``: after each successful job the output commit is mirrored to
    ``url`` (``s3://BUCKET[/PREFIX][?endpoint=URL&region=R]``; see
    :mod:`pps.egress`). Pachyderm's ``URL`` and ``object_storage.url`` both
    land here."""

    url: str


@dataclass(frozen=True)
class PipelineSpec:
    """A parsed, validated, defaulted pipeline spec.

    ``update`` and ``reprocess`` are request flags of ``CreatePipelineRequest``
    allowed in spec files; they are not part of :meth:`spec_hash`. ``extras`` holds
    the Kubernetes-only fields, verbatim. Objects holding mappings are immutable by
    convention but not hashable.
    """

    pipeline: PipelineRef
    transform: Transform
    input: Input
    description: str = ""
    parallelism_spec: ParallelismSpec = ParallelismSpec()
    resource_limits: ResourceSpec | None = None
    resource_requests: ResourceSpec | None = None
    datum_timeout: float | None = None
    datum_tries: int = DEFAULT_DATUM_TRIES
    job_timeout: float | None = None
    output_branch: str = "master"
    reprocess_spec: str = "until_success"
    salt: str = ""
    autoscaling: bool = False
    egress: Egress | None = None
    #: The user code writes its output to bucket ``out`` of the worker's S3
    #: gateway; datums are never skipped (Pachyderm's noSkip).
    s3_out: bool = False
    metadata: Metadata = Metadata()
    extras: Mapping[str, Any] = field(default_factory=dict)
    update: bool = False
    reprocess: bool = False

    @property
    def name(self) -> str:
        """The pipeline's full name, ``NAME`` or ``PROJECT/NAME`` outside the
        default project (also its output repo's). ``pipeline.name`` is the bare one."""
        return qualify(self.pipeline.project, self.pipeline.name)

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON-able dict: Pachyderm field names, every default filled."""
        d: dict[str, Any] = {
            "pipeline": {"name": self.pipeline.name, "project": self.pipeline.project},
            "description": self.description,
            "transform": _transform_to_dict(self.transform),
            "input": _input_to_dict(self.input),
            "parallelism_spec": {"constant": self.parallelism_spec.constant},
        }
        if self.resource_limits is not None:
            d["resource_limits"] = _resources_to_dict(self.resource_limits)
        if self.resource_requests is not None:
            d["resource_requests"] = _resources_to_dict(self.resource_requests)
        if self.datum_timeout is not None:
            d["datum_timeout"] = format_duration(self.datum_timeout)
        d["datum_tries"] = self.datum_tries
        if self.job_timeout is not None:
            d["job_timeout"] = format_duration(self.job_timeout)
        d["output_branch"] = self.output_branch
        d["reprocess_spec"] = self.reprocess_spec
        d["salt"] = self.salt
        d["autoscaling"] = self.autoscaling
        if self.egress is not None:  # only when set: existing specs keep their spec_hash
            d["egress"] = {"URL": self.egress.url}
        if self.s3_out:  # only when set: existing specs keep their spec_hash
            d["s3_out"] = True
        d["metadata"] = {
            "annotations": dict(self.metadata.annotations),
            "labels": dict(self.metadata.labels),
        }
        for k, v in self.extras.items():
            d[k] = v
        if self.update:
            d["update"] = True
        if self.reprocess:
            d["reprocess"] = True
        return d

    def warnings(self) -> tuple[str, ...]:
        """One line per field that is accepted and recorded but not acted on
        (it only shapes Kubernetes objects in Pachyderm)."""
        used = list(self.extras)
        if self.resource_requests is not None:
            used.append("resource_requests")
        if self.autoscaling:
            used.append("autoscaling")
        if self.metadata.annotations or self.metadata.labels:
            used.append("metadata")
        used += [f"transform.{k}" for k in self.transform.extras]
        return tuple(f'field "{k}" is recorded but not used by tusk: in Pachyderm it only '
                     "shapes Kubernetes objects" for k in sorted(used))

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys, no whitespace)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def spec_hash(self) -> str:
        """32 hex chars of BLAKE3 over the canonical JSON, request flags excluded."""
        d = self.to_dict()
        d.pop("update", None)
        d.pop("reprocess", None)
        text = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return blake3.blake3(text.encode()).hexdigest()[:32]


def _transform_to_dict(t: Transform) -> dict[str, Any]:
    d: dict[str, Any] = {
        "image": t.image,
        "cmd": list(t.cmd),
        "stdin": list(t.stdin),
        "env": dict(t.env),
        "err_cmd": list(t.err_cmd),
        "err_stdin": list(t.err_stdin),
        "accept_return_code": list(t.accept_return_code),
        "user": t.user,
        "working_dir": t.working_dir,
    }
    d.update(t.extras)
    return d


def _input_to_dict(inp: Input) -> dict[str, Any]:
    if inp.pfs is not None:
        p = inp.pfs
        return {
            "pfs": {
                "name": p.name,
                "project": p.project,
                "repo": split_repo(p.repo)[1],
                "repo_type": p.repo_type,
                "branch": p.branch,
                "glob": p.glob,
                "join_on": p.join_on,
                "outer_join": p.outer_join,
                "group_by": p.group_by,
                "lazy": p.lazy,
                "empty_files": p.empty_files,
                "reference": p.reference,
                # Only when set: existing specs keep their spec_hash.
                **({"s3": True} if p.s3 else {}),
            }
        }
    if inp.cron is not None:
        c = inp.cron
        return {
            "cron": {
                "name": c.name,
                "project": c.project,
                "repo": split_repo(c.repo)[1],
                "spec": c.spec,
                "overwrite": c.overwrite,
                "start": c.start,
            }
        }
    return {inp.kind: [_input_to_dict(c) for c in inp.children]}


def _resources_to_dict(r: ResourceSpec) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if r.cpu is not None:
        d["cpu"] = r.cpu
    if r.memory is not None:
        d["memory"] = str(r.memory)
    if r.disk is not None:
        d["disk"] = str(r.disk)
    if r.gpu is not None:
        d["gpu"] = {"type": r.gpu.type, "number": r.gpu.number}
    return d


# --- parsing -----------------------------------------------------------------------


def parse_specs(text: str, default_project: str = DEFAULT_PROJECT) -> list[PipelineSpec]:
    """Parse every pipeline in a JSON or YAML document (``default_project``:
    the project of a pipeline whose spec names none).

    Raises:
        InvalidSpec: on a syntax error or an invalid pipeline; when the text holds
            several pipelines the message says which one.
    """
    docs = _load_documents(text)
    if not docs:
        raise InvalidSpec("", "no pipeline spec found: the document is empty")
    specs: list[PipelineSpec] = []
    for i, doc in enumerate(docs):
        try:
            specs.append(spec_from_dict(doc, default_project))
        except InvalidSpec as e:
            if len(docs) == 1:
                raise
            raise InvalidSpec(e.path, f"pipeline {i + 1} of {len(docs)}: {e.message}") from e
    return specs


def parse_spec(text: str, default_project: str = DEFAULT_PROJECT) -> PipelineSpec:
    """Parse a document holding exactly one pipeline."""
    specs = parse_specs(text, default_project)
    if len(specs) != 1:
        raise InvalidSpec("", f"expected one pipeline spec, found {len(specs)}")
    return specs[0]


def _load_documents(text: str) -> list[Any]:
    stripped = text.lstrip()
    docs: list[Any] = []
    if stripped[:1] in ("{", "["):
        decoder = json.JSONDecoder()
        pos = 0
        while True:
            while pos < len(stripped) and stripped[pos].isspace():
                pos += 1
            if pos >= len(stripped):
                break
            try:
                obj, pos = decoder.raw_decode(stripped, pos)
            except json.JSONDecodeError as e:
                raise InvalidSpec(
                    "",
                    f"cannot parse pipeline spec as JSON: {e.msg} "
                    f"(line {e.lineno} column {e.colno})",
                ) from e
            docs.extend(obj if isinstance(obj, list) else [obj])
    else:
        try:
            for obj in yaml.safe_load_all(text):
                if obj is None:
                    continue
                docs.extend(obj if isinstance(obj, list) else [obj])
        except yaml.YAMLError as e:
            raise InvalidSpec("", f"cannot parse pipeline spec as YAML: {e}") from e
    return docs


def spec_from_dict(raw: Any, default_project: str = DEFAULT_PROJECT) -> PipelineSpec:
    """Validate one pipeline given as a dict (decoded JSON/YAML) and fill defaults;
    ``default_project`` is the project of a pipeline whose spec names none."""
    d = _obj(raw, "", "a pipeline spec object")
    d = _check_fields(
        d,
        "",
        (
            "pipeline", "description", "transform", "input", "parallelism_spec",
            "resource_limits", "resource_requests", "datum_timeout", "datum_tries",
            "job_timeout", "output_branch", "reprocess_spec", "salt", "autoscaling",
            "metadata", "update", "reprocess", "egress", "s3_out",
            *_K8S_ONLY_TOP,
        ),
        _UNSUPPORTED_TOP,
    )  # fmt: skip

    if "pipeline" not in d:
        raise InvalidSpec("pipeline.name", 'missing required field "pipeline.name"')
    pd = _obj(d["pipeline"], "pipeline", 'an object like {"name": "edges"}')
    pd = _check_fields(pd, "pipeline", ("name", "project"), ())
    if "name" not in pd or pd["name"] in ("", None):
        raise InvalidSpec("pipeline.name", 'missing required field "pipeline.name"')
    name = _name(pd["name"], "pipeline.name")
    project = _project(pd.get("project"), "pipeline.project", default_project or DEFAULT_PROJECT)
    pipeline = PipelineRef(name, project)

    if "transform" not in d or d["transform"] is None:
        raise InvalidSpec("transform.cmd", "nothing to run: no transform.cmd")
    transform = _transform(d["transform"])

    if "input" not in d or d["input"] is None:
        raise InvalidSpec(
            "input",
            'missing required field "input" (one of pfs, cross, union, join, group, cron)',
        )
    inp = _input(d["input"], "input", pipeline)
    _check_names(inp, "input")

    par = ParallelismSpec()
    if d.get("parallelism_spec") is not None:
        ps = _obj(d["parallelism_spec"], "parallelism_spec", 'an object like {"constant": 2}')
        ps = _check_fields(ps, "parallelism_spec", ("constant",), ("coefficient",))
        c = _nonneg_int(ps.get("constant", 0), "parallelism_spec.constant")
        par = ParallelismSpec(c or 1)

    datum_tries = _nonneg_int(d.get("datum_tries", 0), "datum_tries") or DEFAULT_DATUM_TRIES
    reprocess_spec = _str(d.get("reprocess_spec") or "until_success", "reprocess_spec")
    if reprocess_spec not in REPROCESS_SPECS:
        raise InvalidSpec(
            "reprocess_spec",
            f'"reprocess_spec" must be "until_success" or "every_job", got {_show(reprocess_spec)}',
        )
    output_branch = _name(d.get("output_branch") or "master", "output_branch")

    extras = {k: d[k] for k in _K8S_ONLY_TOP if k in d}
    return PipelineSpec(
        pipeline=pipeline,
        transform=transform,
        input=inp,
        description=_str(d.get("description", ""), "description"),
        parallelism_spec=par,
        resource_limits=_resources(d.get("resource_limits"), "resource_limits"),
        resource_requests=_resources(d.get("resource_requests"), "resource_requests"),
        datum_timeout=_duration(d.get("datum_timeout"), "datum_timeout"),
        datum_tries=datum_tries,
        job_timeout=_duration(d.get("job_timeout"), "job_timeout"),
        output_branch=output_branch,
        reprocess_spec=reprocess_spec,
        salt=_str(d.get("salt", ""), "salt"),
        autoscaling=_bool(d.get("autoscaling", False), "autoscaling"),
        egress=_egress(d.get("egress")),
        s3_out=_bool(d.get("s3_out", False), "s3_out"),
        metadata=_metadata(d.get("metadata")),
        extras=extras,
        update=_bool(d.get("update", False), "update"),
        reprocess=_bool(d.get("reprocess", False), "reprocess"),
    )


def _egress(raw: Any) -> Egress | None:
    """``egress`` as Pachyderm writes it: ``{"URL": ...}`` (also ``url``) or
    ``{"object_storage": {"url": ...}}``; only S3 targets (``s3://``)."""
    if raw is None:
        return None
    e = _obj(raw, "egress", 'an object like {"URL": "s3://bucket/prefix"}')
    urls: list[tuple[str, Any]] = []
    for key, value in e.items():
        name = _snake(str(key))
        if name in ("URL", "url"):
            urls.append((f"egress.{key}", value))
        elif name == "object_storage":
            o = _obj(value, f"egress.{key}", 'an object like {"url": "s3://bucket/prefix"}')
            for k, v in o.items():
                if k not in ("url", "URL"):
                    raise InvalidSpec(f"egress.{key}.{k}",
                                      f'unknown field "egress.{key}.{k}" (did you mean "url"?)')
                urls.append((f"egress.{key}.{k}", v))
        elif name == "sql_database":
            raise InvalidSpec(f"egress.{key}", f'field "egress.{key}" is not supported by tusk: '
                                               "egress goes to S3 (egress.URL)")
        else:
            raise InvalidSpec(f"egress.{key}",
                              f'unknown field "egress.{key}" (did you mean "egress.URL"?)')
    if not urls:
        raise InvalidSpec("egress.URL", 'egress needs a target: {"URL": "s3://bucket/prefix"}')
    path, url = urls[0]
    for other, value in urls[1:]:
        if value != url:
            raise InvalidSpec(other, f'"{path}" and "{other}" name different targets: keep one')
    url = _str(url, path)
    if not url.lower().startswith("s3://"):
        scheme = url.split("://", 1)[0] + "://" if "://" in url else url
        raise InvalidSpec(path, f'"{path}": tusk egresses to S3 only (s3://BUCKET/PREFIX), not '
                                f"{_show(scheme)}")
    from pfs.s3urls import check_endpoint_address, parse_s3_url

    try:
        loc = parse_s3_url(url)
        if loc.endpoint:
            # Literal addresses only here (no DNS while parsing); names are
            # checked again when the job egresses.
            check_endpoint_address(loc.endpoint, allow_private=True, resolve=False,
                                   what="egress endpoint")
    except InvalidArgument as exc:
        raise InvalidSpec(path, f'"{path}": {exc}') from None
    return Egress(url)


def _transform(raw: Any) -> Transform:
    t = _obj(raw, "transform", 'an object like {"image": "...", "cmd": ["..."]}')
    t = _check_fields(
        t,
        "transform",
        ("image", "cmd", "stdin", "env", "err_cmd", "err_stdin", "accept_return_code",
         "user", "working_dir", *_K8S_ONLY_TRANSFORM),
        _UNSUPPORTED_TRANSFORM,
    )  # fmt: skip
    cmd = _str_list(t.get("cmd"), "transform.cmd")
    if not cmd:
        raise InvalidSpec("transform.cmd", "nothing to run: no transform.cmd")
    codes = t.get("accept_return_code") or []
    if not isinstance(codes, list):
        raise InvalidSpec(
            "transform.accept_return_code",
            f'"transform.accept_return_code" must be a list of integers, got {_show(codes)}',
        )
    return Transform(
        cmd=cmd,
        image=_str(t.get("image") or "", "transform.image"),
        stdin=_str_list(t.get("stdin"), "transform.stdin"),
        env=_str_map(t.get("env"), "transform.env"),
        err_cmd=_str_list(t.get("err_cmd"), "transform.err_cmd"),
        err_stdin=_str_list(t.get("err_stdin"), "transform.err_stdin"),
        accept_return_code=tuple(
            _int(c, f"transform.accept_return_code[{i}]") for i, c in enumerate(codes)
        ),
        user=_str(t.get("user") or "", "transform.user"),
        working_dir=_str(t.get("working_dir") or "", "transform.working_dir"),
        extras={k: t[k] for k in _K8S_ONLY_TRANSFORM if k in t},
    )


def _input(raw: Any, path: str, pipeline: PipelineRef) -> Input:
    d = _obj(raw, path, "an input object with one of pfs, cross, union, join, group, cron")
    d = _check_fields(d, path, _INPUT_KINDS, ())
    present = [k for k in _INPUT_KINDS if d.get(k) not in (None, [], {})]
    if len(present) != 1:
        got = "none" if not present else " and ".join(present)
        raise InvalidSpec(
            path,
            f'"{path}" must set exactly one of pfs, cross, union, join, group, cron; got {got}',
        )
    kind = present[0]
    if kind == "pfs":
        return Input(pfs=_pfs(d["pfs"], f"{path}.pfs", pipeline))
    if kind == "cron":
        return Input(cron=_cron(d["cron"], f"{path}.cron", pipeline))
    items = d[kind]
    if not isinstance(items, list):
        raise InvalidSpec(
            f"{path}.{kind}", f'"{path}.{kind}" must be a list of inputs, got {_show(items)}'
        )
    children = tuple(_input(c, f"{path}.{kind}[{i}]", pipeline) for i, c in enumerate(items))
    if kind == "join":
        for i, c in enumerate(children):
            cpath = f"{path}.join[{i}]"
            if c.pfs is None:
                raise InvalidSpec(
                    cpath, f'"{cpath}" must be a pfs input: a join combines pfs inputs only'
                )
            if not c.pfs.join_on:
                raise InvalidSpec(
                    f"{cpath}.pfs.join_on",
                    f'"{cpath}.pfs.join_on" is required in a join '
                    '(e.g. "$1", a capture group of the glob)',
                )
    if kind == "group":
        for i, c in enumerate(children):
            cpath = f"{path}.group[{i}]"
            if c.join:
                missing = [
                    j for j, g in enumerate(c.join) if g.pfs is not None and not g.pfs.group_by
                ]
                if missing:
                    jpath = f"{cpath}.join[{missing[0]}].pfs.group_by"
                    raise InvalidSpec(
                        jpath,
                        f'"{jpath}" is required in a group '
                        '(e.g. "$1", a capture group of the glob)',
                    )
                continue
            if c.pfs is None:
                raise InvalidSpec(
                    cpath, f'"{cpath}" must be a pfs or join input: a group combines those only'
                )
            if not c.pfs.group_by:
                raise InvalidSpec(
                    f"{cpath}.pfs.group_by",
                    f'"{cpath}.pfs.group_by" is required in a group '
                    '(e.g. "$1", a capture group of the glob)',
                )
    if kind == "cross":
        return Input(cross=children)
    if kind == "union":
        return Input(union=children)
    if kind == "join":
        return Input(join=children)
    return Input(group=children)


def _pfs(raw: Any, path: str, pipeline: PipelineRef) -> PFSInput:
    p = _obj(raw, path, 'an object like {"repo": "data", "glob": "/*"}')
    p = _check_fields(
        p,
        path,
        ("name", "repo", "repo_type", "branch", "glob", "join_on", "outer_join", "group_by",
         "lazy", "empty_files", "reference", "project", "commit", "s3"),
        _UNSUPPORTED_PFS,
    )  # fmt: skip
    if not p.get("repo"):
        raise InvalidSpec(f"{path}.repo", f'missing required field "{path}.repo"')
    repo = _name(p["repo"], f"{path}.repo")
    if p.get("commit"):
        raise InvalidSpec(
            f"{path}.commit",
            f'"{path}.commit" cannot be set in a spec: the input commit is chosen per job',
        )
    if "glob" not in p or p["glob"] in (None, ""):
        raise InvalidSpec(f"{path}.glob", f'missing required field "{path}.glob" (e.g. "/*")')
    glob = _glob(p["glob"], f"{path}.glob")
    repo_type = _str(p.get("repo_type") or "user", f"{path}.repo_type")
    if repo_type not in ("user", "meta", "spec"):
        raise InvalidSpec(
            f"{path}.repo_type",
            f'"{path}.repo_type" must be "user", "meta" or "spec", got {_show(repo_type)}',
        )
    input_name = _name(p.get("name") or repo, f"{path}.name")
    if input_name == "out":
        # /pfs/out is the datum's output directory; an input there would shadow it.
        raise InvalidSpec(
            f"{path}.name",
            f'"{path}.name" cannot be "out" (that is /pfs/out, the output directory); '
            "set another name for this input",
        )
    project = _project(p.get("project"), f"{path}.project", pipeline.project)
    s3 = _bool(p.get("s3", False), f"{path}.s3")
    for flag in ("lazy", "empty_files"):
        if s3 and p.get(flag):
            # As Pachyderm: both shape /pfs/<name>, which an s3 input does not have.
            raise InvalidSpec(
                f"{path}.{flag}",
                f'"{path}.{flag}" cannot be set with "{path}.s3": an s3 input is read '
                f"through the S3 gateway, not from /pfs/{input_name}; drop one of them",
            )
    return PFSInput(
        name=input_name,
        repo=qualify(project, repo),
        glob=glob,
        branch=_name(p.get("branch") or "master", f"{path}.branch"),
        project=project,
        repo_type=repo_type,
        join_on=_str(p.get("join_on") or "", f"{path}.join_on"),
        outer_join=_bool(p.get("outer_join", False), f"{path}.outer_join"),
        group_by=_str(p.get("group_by") or "", f"{path}.group_by"),
        lazy=_bool(p.get("lazy", False), f"{path}.lazy"),
        empty_files=_bool(p.get("empty_files", False), f"{path}.empty_files"),
        reference=_bool(p.get("reference", False), f"{path}.reference"),
        s3=s3,
    )


def _cron(raw: Any, path: str, pipeline: PipelineRef) -> CronInput:
    c = _obj(raw, path, 'an object like {"name": "tick", "spec": "@every 1m"}')
    c = _check_fields(c, path, ("name", "spec", "repo", "project", "overwrite", "start"), ())
    if not c.get("name"):
        raise InvalidSpec(f"{path}.name", f'missing required field "{path}.name"')
    name = _name(c["name"], f"{path}.name")
    if not c.get("spec"):
        raise InvalidSpec(
            f"{path}.spec", f'missing required field "{path}.spec" (e.g. "@every 1m")'
        )
    spec = _str(c["spec"], f"{path}.spec")
    _check_cron(spec, f"{path}.spec")
    project = _project(c.get("project"), f"{path}.project", pipeline.project)
    start = c.get("start") or ""
    if not isinstance(start, str):
        # YAML turns an unquoted timestamp into a datetime; keep it as RFC 3339 text.
        start = start.isoformat() if hasattr(start, "isoformat") else _str(start, f"{path}.start")
    return CronInput(
        name=name,
        spec=spec,
        repo=qualify(project, _name(c.get("repo") or f"{pipeline.name}_{name}",
                                    f"{path}.repo")),
        project=project,
        overwrite=_bool(c.get("overwrite", False), f"{path}.overwrite"),
        start=start,
    )


def _check_cron(spec: str, path: str) -> None:
    if spec.startswith("@every "):
        try:
            if parse_duration(spec[len("@every ") :]) > 0:
                return
        except ValueError:
            pass
        raise InvalidSpec(path, f'"{path}" has a bad duration: {_show(spec)} (e.g. "@every 1h30m")')
    try:
        from croniter import croniter  # deferred: only cron inputs need it
    except ImportError:  # pragma: no cover - croniter is a declared dependency
        return
    if not croniter.is_valid(spec):
        raise InvalidSpec(
            path,
            f'"{path}" must be a cron schedule like "*/5 * * * *" or "@daily", got {_show(spec)}',
        )


def _check_names(inp: Input, path: str) -> list[str]:
    """Return the input names visible in one datum of ``inp``, checking uniqueness.

    A union's members are alternatives (never in the same datum) so they may share
    a name; every other combination puts all its children's names side by side.
    """
    if inp.pfs is not None:
        return [inp.pfs.name]
    if inp.cron is not None:
        return [inp.cron.name]
    per_child = [_check_names(c, f"{path}.{inp.kind}[{i}]") for i, c in enumerate(inp.children)]
    if inp.union:
        return sorted({n for names in per_child for n in names})
    seen: set[str] = set()
    out: list[str] = []
    for names in per_child:
        for n in names:
            if n in seen:
                raise InvalidSpec(
                    f"{path}.{inp.kind}",
                    f'{path}.{inp.kind}: name "{n}" was used more than once '
                    '(give each input a distinct "name")',
                )
            seen.add(n)
            out.append(n)
    return out


def _resources(raw: Any, path: str) -> ResourceSpec | None:
    if raw is None:
        return None
    r = _obj(raw, path, 'an object like {"cpu": 1, "memory": "1Gi"}')
    r = _check_fields(r, path, ("cpu", "memory", "disk", "gpu"), ())
    cpu = mem = disk = None
    if r.get("cpu") not in (None, ""):
        try:
            cpu = parse_cpu(r["cpu"])
        except (ValueError, TypeError):
            raise InvalidSpec(
                f"{path}.cpu",
                f'"{path}.cpu" must be a number of cores like 0.5 or "500m", got {_show(r["cpu"])}',
            ) from None
    for key in ("memory", "disk"):
        if r.get(key) not in (None, ""):
            try:
                value = parse_bytes(r[key])
            except (ValueError, TypeError):
                raise InvalidSpec(
                    f"{path}.{key}",
                    f'"{path}.{key}" must be a quantity of bytes like "64M", "1Gi" or "512MB", '
                    f"got {_show(r[key])}",
                ) from None
            if key == "memory":
                mem = value
            else:
                disk = value
    gpu = None
    if r.get("gpu") is not None:
        g = _obj(r["gpu"], f"{path}.gpu", 'an object like {"type": "nvidia.com/gpu", "number": 1}')
        g = _check_fields(g, f"{path}.gpu", ("type", "number"), ())
        gpu = GPUSpec(
            type=_str(g.get("type", ""), f"{path}.gpu.type"),
            number=_nonneg_int(g.get("number", 0), f"{path}.gpu.number"),
        )
    return ResourceSpec(cpu=cpu, memory=mem, disk=disk, gpu=gpu)


def _metadata(raw: Any) -> Metadata:
    if raw is None:
        return Metadata()
    m = _obj(raw, "metadata", 'an object like {"labels": {"team": "x"}}')
    m = _check_fields(m, "metadata", ("annotations", "labels"), ())
    return Metadata(
        annotations=_str_map(m.get("annotations"), "metadata.annotations"),
        labels=_str_map(m.get("labels"), "metadata.labels"),
    )


# --- small typed readers ------------------------------------------------------------


def _show(value: Any) -> str:
    """A value as the user wrote it, JSON-quoted so strings and numbers differ."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _obj(value: Any, path: str, expected: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        where = f'"{path}"' if path else "the document"
        raise InvalidSpec(path, f"{where} must be {expected}, got {_show(value)}")
    # An explicit null means "not set", as in protobuf's JSON mapping.
    return {k: v for k, v in value.items() if v is not None}


def _snake(key: str) -> str:
    """``joinOn`` -> ``join_on``: protobuf's JSON name back to the field name."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", lambda m: "_" + m.group(1).lower(), key)


def _camel(name: str) -> str:
    """``join_on`` -> ``joinOn`` (protobuf's JSON name of a field)."""
    first, *rest = name.split("_")
    return first + "".join(w[:1].upper() + w[1:] for w in rest)


def _check_fields(
    d: Mapping[str, Any], path: str, known: Sequence[str], unsupported: Sequence[str]
) -> dict[str, Any]:
    """Check an object's field names; return it with snake_case names.

    Every field may be spelled as the proto field (``join_on``) or as its
    JSON name (``joinOn``), as protobuf's JSON parser (and so Pachyderm)
    accepts; one field given both ways is an error. Unknown fields are
    named with the nearest valid name, in the user's spelling.
    """
    prefix = f"{path}." if path else ""
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in d.items():
        name = _snake(key) if isinstance(key, str) else key
        full = f"{prefix}{key}"
        if name in known:
            if name in out:
                raise InvalidSpec(full, f'field "{prefix}{name}" is set twice, as '
                                        f'"{spelled[name]}" and "{key}": keep one')
            out[name] = value
            spelled[name] = str(key)
            continue
        if name in unsupported:
            raise InvalidSpec(full, f'field "{full}" is not supported by tusk')
        camel = isinstance(key, str) and any(c.isupper() for c in key)
        choices = {(_camel(k) if camel else k): k for k in known}
        close = difflib.get_close_matches(str(key), list(choices), n=1, cutoff=0.6)
        hint = f' (did you mean "{prefix}{close[0]}"?)' if close else ""
        raise InvalidSpec(full, f'unknown field "{full}"{hint}')
    return out


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise InvalidSpec(path, f'"{path}" must be a string, got {_show(value)}')
    return value


def _bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidSpec(path, f'"{path}" must be true or false, got {_show(value)}')
    return value


_INT_TEXT = re.compile(r"-?\d+")


def _as_int(value: Any) -> Any:
    """protobuf's JSON mapping: integers may be numbers (2, 2.0) or strings
    ("2", the usual form of 64-bit ones); anything else is left as it is."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        return int(value)
    return value


def _int(value: Any, path: str) -> int:
    value = _as_int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSpec(path, f'"{path}" must be an integer, got {_show(value)}')
    return value


def _nonneg_int(value: Any, path: str) -> int:
    value = _as_int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidSpec(path, f'"{path}" must be a non-negative integer, got {_show(value)}')
    return value


def _str_list(value: Any, path: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidSpec(path, f'"{path}" must be a list of strings, got {_show(value)}')
    return tuple(value)


def _str_map(value: Any, path: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidSpec(path, f'"{path}" must be an object of string values, got {_show(value)}')
    return dict(value)


def _name(value: Any, path: str) -> str:
    """Pachyderm's name rule (reference 1.1) plus the 63-character limit."""
    name = _str(value, path)
    if not _NAME_RE.match(name):
        raise InvalidSpec(
            path,
            f'"{path}": name ({name}) invalid: only alphanumeric characters, '
            "underscores, and dashes are allowed",
        )
    if not name[0].isalnum():
        raise InvalidSpec(
            path, f'"{path}": name ({name}) invalid: must start with a letter or digit'
        )
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidSpec(
            path,
            f'"{path}": name ({name}) invalid: {len(name)} characters, '
            f"at most {MAX_NAME_LENGTH} allowed",
        )
    return name


def _project(value: Any, path: str, default: str) -> str:
    """A project: a name, or Pachyderm's message form ``{"name": "..."}``."""
    if isinstance(value, Mapping):
        value = _check_fields(value, path, ("name",), ()).get("name")
        path = f"{path}.name"
    return _name(value or default, path)


def _glob(value: Any, path: str) -> str:
    text = _str(value, path)
    try:
        return compile_glob(text).pattern
    except InvalidArgument as e:
        raise InvalidSpec(path, f'"{path}": {e.message}') from e


def _duration(value: Any, path: str) -> float | None:
    if value in (None, ""):
        return None
    try:
        return parse_duration(value)
    except (ValueError, TypeError, AttributeError):
        raise InvalidSpec(
            path, f'"{path}" must be a duration like "30s", "5m" or "1h30m", got {_show(value)}'
        ) from None
