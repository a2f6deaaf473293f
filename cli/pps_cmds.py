"""``pipeline``, ``job``, ``datum`` and ``logs`` commands: thin wrappers over the client.

Each ``run_*`` function is one pachctl command (pachyderm-reference.md 3.2);
the client method of the same name does the work. Jobs are written
``PIPELINE@ID``; the ID may also be a ref of the pipeline's output repo
(``edges@master``, ``edges@master^``), which the server resolves.

Spec files (``-f FILE``, ``-f -`` for stdin) may hold several pipelines. The
CLI splits them only to send one per request; each piece goes to the server as
text, and the server validates it, so its error message -- which names the
offending field -- reaches the user unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from cli import progress as progress_
from cli import refs
from cli.common import (
    PLURALS,
    CLIError,
    Context,
    UsageError,
    add_output_flags,
    noun_parser,
    printer,
)
from cli.output import Printer, enum_name, human_duration, human_size, message_dict, timestamp

PIPELINE_HEADER = ("NAME", "VERSION", "INPUT", "CREATED", "STATE / LAST JOB", "DESCRIPTION")
JOB_SET_HEADER = ("ID", "SUBJOBS", "PROGRESS", "CREATED", "MODIFIED")
JOB_HEADER = ("PIPELINE", "ID", "STARTED", "DURATION", "RESTART", "PROGRESS", "DL", "UL", "STATE")
DATUM_HEADER = ("ID", "FILES", "STATUS", "TIME")

JOB_FORM = "PIPELINE@JOB-ID (or PIPELINE@BRANCH for the job of the output branch's head)"
#: How much of a failed job's reason ``list job`` shows (pachctl trims it too).
_REASON_IN_TABLE = 40

# --- references and spec files ------------------------------------------------


def parse_job(text: str) -> tuple[str, str]:
    """``PIPELINE@ID`` -> (pipeline, id-or-ref)."""
    try:
        pipeline, ref = refs.parse_repo_ref(text, "job")
    except refs.RefError:
        ref = None
    if ref is None:
        raise refs.RefError(f'invalid job reference "{text}": expected {JOB_FORM}')
    return pipeline, ref


#: The longest a spec fetched with ``-f URL`` may be (a spec is small).
_MAX_SPEC_BYTES = 4 << 20


def _read_text(source: str) -> str:
    """A spec file's text: a path, ``-`` (stdin) or an http(s) URL."""
    if source == "-":
        return sys.stdin.read()
    if "://" in source:
        return _fetch_url(source)
    try:
        with open(source, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise CLIError(f"spec file {source} not found") from None
    except IsADirectoryError:
        raise CLIError(f"spec file {source} is a directory: give a JSON or YAML file") from None


def _fetch_url(url: str) -> str:
    import urllib.error
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CLIError(f"cannot read a spec from {url}: only http:// and https:// URLs "
                       "(or a file path, or - for stdin) are supported")
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            data: bytes = resp.read(_MAX_SPEC_BYTES + 1)
    except urllib.error.HTTPError as e:
        raise CLIError(f"could not fetch the spec at {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise CLIError(f"could not fetch the spec at {url}: {reason}") from None
    if len(data) > _MAX_SPEC_BYTES:
        raise CLIError(f"the spec at {url} is larger than {_MAX_SPEC_BYTES >> 20} MiB: "
                       "is it really a pipeline spec?")
    return data.decode("utf-8", errors="replace")


def _jsonnet(source: str, args: list[str]) -> str:
    """Evaluate a jsonnet template (Pachyderm's ``--jsonnet``; each ``--arg
    k=v`` is a top-level argument, a string) to JSON text."""
    import _jsonnet  # the jsonnet package's binding

    tla: dict[str, str] = {}
    for a in args:
        key, sep, value = a.partition("=")
        if not sep or not key:
            raise UsageError(f"--arg {a!r}: expected KEY=VALUE")
        tla[key] = value
    try:
        out: str = _jsonnet.evaluate_snippet(source, _read_text(source), tla_vars=tla)
    except RuntimeError as e:
        msg = str(e).strip().splitlines()
        raise CLIError(f"jsonnet template {source} failed: {msg[0] if msg else e}"
                       + (" (pass its arguments with --arg KEY=VALUE)"
                          if "argument" in str(e) else "")) from None
    return out


def split_specs(text: str) -> list[str]:
    """The pipelines of a spec file, as one text per pipeline.

    A file holding one pipeline, or one the CLI cannot parse, is returned whole:
    the server then parses it and reports any problem in its own words. Several
    pipelines (JSON objects one after another or in a list, YAML documents or
    lists) are re-encoded as one JSON text each.
    """
    import yaml  # here, not at the top: ~15 ms of every command's start-up

    stripped = text.lstrip()
    docs: list[Any] = []
    try:
        if stripped[:1] in ("{", "["):
            decoder = json.JSONDecoder()
            pos = 0
            while True:
                while pos < len(stripped) and stripped[pos].isspace():
                    pos += 1
                if pos >= len(stripped):
                    break
                obj, pos = decoder.raw_decode(stripped, pos)
                docs.extend(obj if isinstance(obj, list) else [obj])
        else:
            for obj in yaml.safe_load_all(text):
                if obj is not None:
                    docs.extend(obj if isinstance(obj, list) else [obj])
    except (ValueError, yaml.YAMLError):
        return [text]
    if len(docs) <= 1:
        return [text]
    # default=str: YAML may hold dates; the server reports them as wrong types.
    return [json.dumps(d, default=str) for d in docs]


# --- rendering ----------------------------------------------------------------


def _state_word(name: str, prefix: str) -> str:
    """``JOB_SUCCESS`` -> ``success`` (pachctl's words)."""
    if name.endswith("STATE_UNKNOWN"):
        return "-"
    return name.removeprefix(prefix).lower()


def job_state(ji: Any) -> str:
    return _state_word(enum_name(ji, "state"), "JOB_")


def _indent(text: str) -> str:
    # Continuation lines of a multi-line value (a stderr tail) stay inside the block.
    return "\n  ".join(text.splitlines()) or text


def input_shorthand(inp: Mapping[str, Any] | None) -> str:
    """A spec's input the way pachctl's INPUT column shows it: ``images:/*``,
    crosses as ``(a:/* ⨯ b:/)``, unions with ``∪``, joins with ``⋈``."""
    if not inp:
        return "-"
    if "pfs" in inp:
        p = inp["pfs"]
        branch = p.get("branch") or "master"
        name = _full(p)
        repo = name if branch == "master" else f"{name}@{branch}"
        return f"{repo}:{p.get('glob', '')}"
    if "cron" in inp:
        c = inp["cron"]
        return f"{c.get('name', '?')}:{c.get('spec', '')}"
    for kind, sep in (("cross", " ⨯ "), ("union", " ∪ "), ("join", " ⋈ "), ("group", ", ")):
        if kind in inp:
            inner = sep.join(input_shorthand(c) for c in inp[kind])
            return f"group({inner})" if kind == "group" else f"({inner})"
    return "?"


def _spec(pi: Any) -> dict[str, Any]:
    spec: dict[str, Any] = message_dict(pi).get("spec", {})
    return spec


def pipeline_row(p: Printer, pi: Any) -> list[str]:
    state = _state_word(enum_name(pi, "state"), "PIPELINE_")
    last = _state_word(enum_name(pi, "last_job_state"), "JOB_")
    return [
        pi.pipeline.name,
        str(pi.version),
        input_shorthand(_spec(pi).get("input")),
        p.when(timestamp(pi, "created_at")),
        f"{state} / {last}",
        pi.description,
    ]


def _num(v: Any) -> str:
    # Struct numbers are doubles: print 2.0 as 2.
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def pipeline_block(p: Printer, pi: Any) -> Iterator[tuple[str, str]]:
    spec = _spec(pi)
    transform = spec.get("transform", {})
    yield "Name", pi.pipeline.name
    yield "Description", pi.description
    yield "Version", str(pi.version)
    yield "Created", p.when(timestamp(pi, "created_at"))
    yield "State", _state_word(enum_name(pi, "state"), "PIPELINE_")
    if pi.reason:
        yield "Reason", _indent(pi.reason)
    yield "Stopped", str(pi.stopped).lower()
    yield "Last Job State", _state_word(enum_name(pi, "last_job_state"), "JOB_")
    yield "Input", input_shorthand(spec.get("input"))
    yield "Output Branch", str(spec.get("output_branch", "master"))
    yield "Image", str(transform.get("image", ""))
    yield "Cmd", json.dumps(transform.get("cmd", []))
    if transform.get("stdin"):
        yield "Stdin", _indent("\n".join(transform["stdin"]))
    yield "Parallelism", _num(spec.get("parallelism_spec", {}).get("constant", 1))
    yield "Datum Tries", _num(spec.get("datum_tries", 3))
    if spec.get("datum_timeout"):
        yield "Datum Timeout", str(spec["datum_timeout"])
    if spec.get("job_timeout"):
        yield "Job Timeout", str(spec["job_timeout"])
    yield "Reprocess Spec", str(spec.get("reprocess_spec", "until_success"))
    yield "Salt", pi.salt


def progress(ji: Any) -> str:
    """pachctl's PROGRESS: ``processed + skipped / total`` (recovered added when any)."""
    if ji.data_recovered:
        return f"{ji.data_processed} + {ji.data_skipped} + {ji.data_recovered} / {ji.data_total}"
    return f"{ji.data_processed} + {ji.data_skipped} / {ji.data_total}"


def _duration(ji: Any) -> str:
    started, finished = timestamp(ji, "started"), timestamp(ji, "finished")
    if started is None or finished is None:
        return "-"
    return human_duration(finished - started)


def _bytes_stat(ji: Any, key: str) -> str:
    return human_size(int(ji.stats[key])) if key in ji.stats else "-"


def _secs(v: float) -> str:
    return f"{v * 1000:.0f}ms" if v < 1 else f"{v:.2f}s"


def job_row(p: Printer, ji: Any) -> list[str]:
    state = job_state(ji)
    if ji.reason and state in ("failure", "killed", "unrunnable"):
        first = ji.reason.splitlines()[0]
        if len(first) > _REASON_IN_TABLE:
            first = first[: _REASON_IN_TABLE - 3] + "..."
        state = f"{state}: {first}"
    return [
        ji.job.pipeline.name,
        ji.job.id,
        p.when(timestamp(ji, "started")),
        _duration(ji),
        str(ji.restart),
        progress(ji),
        _bytes_stat(ji, "download_bytes"),
        _bytes_stat(ji, "upload_bytes"),
        state,
    ]


def job_block(p: Printer, ji: Any) -> Iterator[tuple[str, str]]:
    state = job_state(ji)
    yield "ID", ji.job.id
    yield "Pipeline", ji.job.pipeline.name
    yield "Pipeline Version", str(ji.pipeline_version)
    if state == "success" and ji.reason:
        # pachctl: "success: there were no datums to process" when all were skipped.
        yield "State", f"{state}: {ji.reason}"
    else:
        yield "State", state
        if ji.reason:
            yield "Reason", _indent(ji.reason)
    yield "Created", p.when(timestamp(ji, "created"))
    yield "Started", p.when(timestamp(ji, "started"))
    yield "Finished", p.when(timestamp(ji, "finished"))
    yield "Duration", _duration(ji)
    yield "Progress", progress(ji)
    yield "Data Processed", str(ji.data_processed)
    yield "Data Skipped", str(ji.data_skipped)
    yield "Data Failed", str(ji.data_failed)
    yield "Data Recovered", str(ji.data_recovered)
    yield "Data Total", str(ji.data_total)
    yield "Data Downloaded", _bytes_stat(ji, "download_bytes")
    yield "Data Uploaded", _bytes_stat(ji, "upload_bytes")
    for key, label in (
        ("download_seconds", "Download Time"),
        ("process_seconds", "Process Time"),
        ("upload_seconds", "Upload Time"),
    ):
        if key in ji.stats:
            yield label, _secs(ji.stats[key])
    yield "Restarts", str(ji.restart)
    yield "Salt", ji.salt
    yield "Input Commits", ", ".join(f"{c.repo}@{c.id}" for c in ji.input_commits) or "-"
    yield "Output Commit", f"{ji.output_commit.repo}@{ji.output_commit.id}"


def _datum_state(di: Any) -> str:
    name = enum_name(di, "state")
    return "-" if name in ("STARTING", "UNKNOWN") else name.lower()


def _datum_file(f: Any) -> str:
    return f"{f.repo}@{f.commit}:{f.path}"


def datum_row(p: Printer, di: Any) -> list[str]:
    preview = not di.datum.HasField("job")
    return [
        "-" if preview else di.datum.id,
        ", ".join(_datum_file(f) for f in di.files),
        _datum_state(di),
        human_duration(di.duration) if di.duration else "-",
    ]


def datum_block(p: Printer, di: Any) -> Iterator[tuple[str, str]]:
    yield "ID", di.datum.id
    yield "Job ID", f"{di.datum.job.pipeline.name}@{di.datum.job.id}"
    yield "State", _datum_state(di)
    if di.reason:
        yield "Reason", _indent(di.reason)
    yield "Attempts", str(di.attempts)
    yield "Total Time", _secs(di.duration) if di.duration else "-"
    for key, label in (("download_bytes", "Data Downloaded"), ("upload_bytes", "Data Uploaded")):
        if key in di.stats:
            yield label, human_size(int(di.stats[key]))
    for key, label in (
        ("download_seconds", "Download Time"),
        ("process_seconds", "Process Time"),
        ("upload_seconds", "Upload Time"),
    ):
        if key in di.stats:
            yield label, _secs(di.stats[key])
    yield "Hash", di.hash or "-"
    yield (
        "Inputs",
        _indent("\n".join(f"{f.input}: {_datum_file(f)}" for f in di.files))
        if len(di.files)
        else "-",
    )
    yield "Outputs", ", ".join(di.outputs) or "-"


# --- pipelines ----------------------------------------------------------------


def _spec_texts(args: argparse.Namespace) -> list[str]:
    """One text per pipeline from ``-f FILE|URL|-`` or ``--jsonnet T --arg k=v``."""
    jsonnet = getattr(args, "jsonnet", None)
    if jsonnet and args.file:
        raise UsageError("give either -f or --jsonnet, not both")
    if jsonnet:
        return split_specs(_jsonnet(jsonnet, getattr(args, "arg", None) or []))
    if getattr(args, "arg", None):
        raise UsageError("--arg goes with --jsonnet")
    if not args.file:
        raise UsageError("give the spec file with -f FILE (or -f - for stdin, -f URL, "
                         "or --jsonnet TEMPLATE)")
    return split_specs(_read_text(args.file))


def _create(ctx: Context, args: argparse.Namespace, update: bool) -> int:
    client = ctx.client()
    dry_run = bool(getattr(args, "dry_run", False))
    for text in _spec_texts(args):
        info = client.create_pipeline(text, update=update,
                                      reprocess=getattr(args, "reprocess", False),
                                      dry_run=dry_run, project=refs.current_project())
        for w in info.warnings:
            print(f"warning: pipeline {info.pipeline.name}: {w}", file=sys.stderr)
        if dry_run:
            print(f"pipeline {info.pipeline.name}: valid, nothing changed (--dry-run)")
    return 0


def run_validate_pipeline(ctx: Context, args: argparse.Namespace) -> int:
    args.dry_run = True
    return _create(ctx, args, update=True)


def clean_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A stored spec as a create-compatible one: the API's Struct carries
    numbers as doubles (``datum_tries: 3.0``); whole ones become integers."""
    def fix(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, Mapping):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v

    out: dict[str, Any] = fix(dict(spec))
    return out


def _dump_spec(spec: Mapping[str, Any], fmt: str) -> str:
    if fmt == "yaml":
        import yaml

        text: str = yaml.safe_dump(dict(spec), sort_keys=False)
        return text
    return json.dumps(spec, indent=2) + "\n"


def run_edit_pipeline(ctx: Context, args: argparse.Namespace) -> int:
    import os
    import shlex
    import subprocess
    import tempfile

    client = ctx.client()
    spec = clean_spec(_spec(client.inspect_pipeline(args.pipeline)))
    fmt = args.output or "json"
    editor = args.editor or os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.TemporaryDirectory(prefix="tusk-edit-") as tmp:
        path = os.path.join(tmp, f"{args.pipeline.replace('/', '.')}.{fmt}")
        before = _dump_spec(spec, fmt)
        with open(path, "w", encoding="utf-8") as f:
            f.write(before)
        try:
            rc = subprocess.call([*shlex.split(editor), path])
        except FileNotFoundError:
            raise CLIError(f"editor {editor!r} not found: set $EDITOR or pass --editor") from None
        if rc != 0:
            raise CLIError(f"editor {editor!r} exited with code {rc}: pipeline not changed")
        with open(path, encoding="utf-8") as f:
            text = f.read()
    if text == before:
        print(f"pipeline {args.pipeline}: no changes", file=sys.stderr)
        return 0
    info = client.create_pipeline(text, update=True, reprocess=args.reprocess)
    for w in info.warnings:
        print(f"warning: pipeline {info.pipeline.name}: {w}", file=sys.stderr)
    return 0


def run_rerun_pipeline(ctx: Context, args: argparse.Namespace) -> int:
    """A new job of the pipeline over its inputs' current heads (its spec
    unchanged); with ``--reprocess`` every datum runs again."""
    client = ctx.client()
    spec = clean_spec(_spec(client.inspect_pipeline(args.pipeline)))
    client.create_pipeline(json.dumps(spec), update=True, reprocess=args.reprocess)
    return 0


def run_create_pipeline(ctx: Context, args: argparse.Namespace) -> int:
    return _create(ctx, args, update=False)


def run_update_pipeline(ctx: Context, args: argparse.Namespace) -> int:
    return _create(ctx, args, update=True)


def _history(text: str | None) -> int:
    if text is None or text == "none":
        return 0
    if text == "all":
        return -1
    try:
        n = int(text)
    except ValueError:
        n = -2
    if n < -1:
        raise UsageError(f"--history {text!r}: expected none, all or a number of versions")
    return n


def run_list_pipeline(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    history = _history(args.history)
    if args.pipeline and not history:
        items: Any = [client.inspect_pipeline(args.pipeline)]
    else:
        items = client.list_pipeline(args.pipeline or "", history=history,
                                     project=refs.current_project(),
                                     all_projects=args.all_projects)
    if args.spec:
        if args.raw:
            raise UsageError("--spec prints specs; drop --raw (use -o yaml for YAML)")
        fmt = args.output or "json"
        for i, pi in enumerate(items):
            text = _dump_spec(clean_spec(_spec(pi)), fmt)
            sys.stdout.write(("---\n" if fmt == "yaml" and i else "") + text)
        return 0
    p = printer(args)
    p.items(items, PIPELINE_HEADER, lambda m: pipeline_row(p, m))
    return 0


def run_draw_pipeline(ctx: Context, args: argparse.Namespace) -> int:
    """The DAG of repos and pipelines as text, inputs before what reads them."""
    client = ctx.client()
    pipelines = {pi.pipeline.name: pi for pi in client.list_pipeline(all_projects=True)}
    repos = sorted(r.repo.name for r in client.list_repo(all_projects=True))
    sys.stdout.write(draw_dag(repos, {n: _spec(pi) for n, pi in pipelines.items()},
                              {n: pipeline_state(pi) for n, pi in pipelines.items()}))
    return 0


def _full(leaf: Mapping[str, Any]) -> str:
    """An input's repo as the API names it: PROJECT/REPO outside the default project."""
    repo = str(leaf.get("repo") or leaf.get("name") or "?")
    project = leaf.get("project") or "default"
    return repo if project == "default" else f"{project}/{repo}"


def _leaf_inputs(inp: Mapping[str, Any] | None) -> list[str]:
    if not inp:
        return []
    if "pfs" in inp:
        return [_full(inp["pfs"])]
    if "cron" in inp:
        return [_full(inp["cron"])]
    out: list[str] = []
    for kind in ("cross", "union", "join", "group"):
        for child in inp.get(kind) or []:
            out += _leaf_inputs(child)
    return out


def draw_dag(repos: list[str], specs: Mapping[str, Mapping[str, Any]],
             states: Mapping[str, str]) -> str:
    """Render the DAG: one line per repo or pipeline, by level (a pipeline sits
    one level below its deepest input), each pipeline with its inputs."""
    level: dict[str, int] = {r: 0 for r in repos if r not in specs}

    def depth(name: str, seen: tuple[str, ...] = ()) -> int:
        if name in level:
            return level[name]
        if name not in specs or name in seen:
            return 0
        d = 1 + max((depth(i, (*seen, name)) for i in _leaf_inputs(specs[name].get("input"))),
                    default=0)
        level[name] = d
        return d

    for name in specs:
        depth(name)
    lines: list[str] = []
    for lvl in range(max(level.values(), default=-1) + 1):
        names = sorted(n for n, v in level.items() if v == lvl)
        if not names:
            continue
        lines.append(f"level {lvl}" + (" (input repos)" if lvl == 0 else ""))
        for n in names:
            if n not in specs:
                lines.append(f"  [repo] {n}")
                continue
            inputs = input_shorthand(specs[n].get("input"))
            lines.append(f"  [pipeline] {n}  <-  {inputs}  ({states.get(n, '-')})")
    return "\n".join(lines) + "\n" if lines else "no repos or pipelines\n"


def pipeline_state(pi: Any) -> str:
    state = _state_word(enum_name(pi, "state"), "PIPELINE_")
    last = _state_word(enum_name(pi, "last_job_state"), "JOB_")
    return f"{state} / {last}"


def run_inspect_pipeline(ctx: Context, args: argparse.Namespace) -> int:
    p = printer(args)
    p.block(ctx.client().inspect_pipeline(args.pipeline), lambda m: pipeline_block(p, m))
    return 0


def run_delete_pipeline(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    if args.all == (args.pipeline is not None):
        raise UsageError("give either a PIPELINE or --all")
    if args.pipeline is not None:
        client.delete_pipeline(args.pipeline, force=args.force, keep_repo=args.keep_repo)
        return 0
    # --all: names first (deleting while the listing streams would change it);
    # force, since consumers of a deleted pipeline are deleted next anyway.
    names = [pi.pipeline.name for pi in client.list_pipeline()]
    for name in names:
        client.delete_pipeline(name, force=True, keep_repo=args.keep_repo)
    return 0


def run_start_pipeline(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client().start_pipeline(args.pipeline)
    return 0


def run_run_cron(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client().run_cron(args.pipeline)
    return 0


def run_stop_pipeline(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client().stop_pipeline(args.pipeline)
    return 0


# --- jobs -----------------------------------------------------------------------


def _terminal(ji: Any) -> bool:
    return _state_word(enum_name(ji, "state"), "JOB_") in (
        "success", "failure", "killed", "unrunnable")


def job_set_row(p: Printer, js: Any) -> list[str]:
    jobs = list(js.jobs)
    created = [t for j in jobs if (t := timestamp(j, "created")) is not None]
    modified = [t for j in jobs for t in (timestamp(j, "created"), timestamp(j, "started"),
                                          timestamp(j, "finished")) if t is not None]
    return [js.job_set.id, str(len(jobs)), f"{sum(1 for j in jobs if _terminal(j))}/{len(jobs)}",
            p.when(min(created) if created else None),
            p.when(max(modified) if modified else None)]


def _is_set_id(text: str) -> bool:
    return "@" not in text and len(text) == 32 and all(c in "0123456789abcdef" for c in text)


def run_list_job(ctx: Context, args: argparse.Namespace) -> int:
    p = printer(args)
    if args.number < 0:
        raise UsageError("--number must be >= 0")
    client = ctx.client()
    if args.target and _is_set_id(args.target):
        # `list job ID`: the jobs of one job set.
        items: Any = client.inspect_job_set(args.target)
    elif args.target:
        # `list job P@ID` (pachctl): that one job.
        items = [client.inspect_job(*parse_job(args.target))]
    elif args.pipeline or args.expand:
        items = client.list_job(args.pipeline, number=args.number)
    else:
        # No argument: job sets, as pachctl (-x lists their jobs instead).
        p.items(client.list_job_set(number=args.number), JOB_SET_HEADER,
                lambda m: job_set_row(p, m))
        return 0
    p.items(items, JOB_HEADER, lambda m: job_row(p, m))
    return 0


def _blocks(p: Printer, jobs: Any) -> None:
    for i, ji in enumerate(jobs):
        if i and not p.raw:
            p.out.write("\n")
        p.block(ji, lambda m: job_block(p, m))


def run_inspect_job(ctx: Context, args: argparse.Namespace) -> int:
    p = printer(args)
    if _is_set_id(args.job):
        _blocks(p, ctx.client().inspect_job_set(args.job))
        return 0
    p.block(ctx.client().inspect_job(*parse_job(args.job)), lambda m: job_block(p, m))
    return 0


def run_wait_job(ctx: Context, args: argparse.Namespace) -> int:
    # Exit 0 whatever the final state (as pachctl): the state is printed.
    p = printer(args)
    mode = progress_.choose(args.progress, quiet=p.raw)
    if _is_set_id(args.job):
        jobs = ctx.client().inspect_job_set(args.job, wait=True)
        if mode != "off":
            # Jobs arrive as each ends; gathered first, so no block is drawn over.
            with progress_.Spinner(f"wait job set {args.job}", mode):
                jobs = list(jobs)
        _blocks(p, jobs)
        return 0
    pipeline, job = parse_job(args.job)
    if mode == "off":
        ji = ctx.client().wait_job(pipeline, job)
    else:
        with progress_.Datums(f"{pipeline}@{job}", mode) as bar:
            ji = wait_job_with(ctx.client(), pipeline, job, bar)
    p.block(ji, lambda m: job_block(p, m))
    return 0


#: How often a waiting bar asks for the job's counts.
_POLL_SECONDS = 0.5


def wait_job_with(client: Any, pipeline: str, job: str, bar: progress_.Datums) -> Any:
    """Wait for a job to be terminal, showing its datums on ``bar``.

    Blocks on the server's own wait, at most :data:`_POLL_SECONDS` at a time,
    so the job's end is seen at once; between waits it reads the counts.
    """
    import tusk.client

    ji = client.inspect_job(pipeline, job)
    while not _terminal(ji):
        _show_datums(bar, ji)
        try:
            ji = client.wait_job(pipeline, job, timeout=_POLL_SECONDS)
        except tusk.client.DeadlineExceeded:
            ji = client.inspect_job(pipeline, job)
    _show_datums(bar, ji)
    return ji


def _show_datums(bar: progress_.Datums, ji: Any) -> None:
    # Recovered datums are failed ones whose output was kept: done, like skipped.
    done = ji.data_processed + ji.data_skipped + ji.data_failed + ji.data_recovered
    total = ji.data_total
    bar.update(min(done, total) if total else done, total, job_state(ji))


def run_stop_job(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client().stop_job(*parse_job(args.job))
    return 0


def run_restart_datum(ctx: Context, args: argparse.Namespace) -> int:
    data = [x for x in args.datum.split(",") if x]
    if not data:
        raise UsageError("name the datum: its ID, or its input files' paths separated by commas")
    info = ctx.client().restart_datum(*parse_job(args.job), data)
    print(f"datum {info.datum.id} restarted", file=sys.stderr)
    return 0


def run_delete_job(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client().delete_job(*parse_job(args.job))
    return 0


# --- datums and logs ------------------------------------------------------------


def run_list_datum(ctx: Context, args: argparse.Namespace) -> int:
    p = printer(args)
    client = ctx.client()
    if (args.job is None) == (args.file is None):
        raise UsageError("give either PIPELINE@JOB or -f SPEC-FILE (a preview)")
    if args.file is not None:
        specs = split_specs(_read_text(args.file))
        if len(specs) != 1:
            raise UsageError(f"-f {args.file} holds {len(specs)} pipelines; preview one at a time")
        items = client.list_datum_for_spec(specs[0])
    else:
        items = client.list_datum(*parse_job(args.job))
    p.items(items, DATUM_HEADER, lambda m: datum_row(p, m))
    return 0


def run_inspect_datum(ctx: Context, args: argparse.Namespace) -> int:
    p = printer(args)
    pipeline, job = parse_job(args.job)
    p.block(ctx.client().inspect_datum(pipeline, job, args.datum), lambda m: datum_block(p, m))
    return 0


def parse_duration(text: str) -> float:
    """``30s``, ``10m``, ``1h30m``, ``24h`` -> seconds (Go's duration syntax)."""
    import re

    units = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise UsageError(f"--since {text!r}: expected a duration like 30s, 10m or 24h")
    return sum(float(n) * units[u] for n, u in parts)


def run_logs(ctx: Context, args: argparse.Namespace) -> int:
    p = printer(args)
    pipeline, job = args.pipeline, args.job
    if job and "@" in job:
        jp, job = parse_job(job)
        if pipeline and pipeline != jp:
            raise UsageError(f"--job {args.job} is not a job of pipeline {pipeline}")
        pipeline = jp
    if not pipeline:
        raise UsageError("give the pipeline with -p PIPELINE (or -j PIPELINE@JOB)")
    if args.tail is not None and args.tail < 0:
        raise UsageError(f"--tail {args.tail}: give a number of lines, 0 or more")
    since = 0.0
    if args.since:
        since = parse_duration(args.since)
    stream = ctx.client().get_logs(pipeline, job=job, datum=args.datum, follow=args.follow,
                                   master=args.master, worker=args.worker,
                                   tail=args.tail or 0, since=since)
    try:
        for line in stream:
            if p.raw:
                p.message(line)
            else:
                print(line.message, flush=args.follow)
    except KeyboardInterrupt:
        # Ctrl-C is how a user ends `logs -f`: not an error.
        stream.close()
    return 0


# --- registration -------------------------------------------------------------


def _verb(sub: Any, verbs: dict[str, Any], name: str, help: str) -> Any:
    """The noun subparsers of ``name``, creating the verb if cli.main lacks it."""
    if name not in verbs:
        vp = sub.add_parser(name, help=help, description=help)
        verbs[name] = vp.add_subparsers(dest="noun", metavar="<noun>", parser_class=type(vp))
        vp.set_defaults(verb_parser=vp)
    return verbs[name]


def _spec_flag(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "-f",
        "--file",
        required=required,
        metavar="FILE",
        help="pipeline spec, JSON or YAML, one or more pipelines ('-' for stdin, or an "
             "http(s) URL)",
    )


def _create_flags(p: argparse.ArgumentParser, reprocess: bool) -> None:
    _spec_flag(p, required=False)
    p.add_argument("--jsonnet", metavar="TEMPLATE",
                   help="a jsonnet template (file or URL) that yields one or more pipelines")
    p.add_argument("--arg", action="append", metavar="KEY=VALUE",
                   help="a top-level argument of the --jsonnet template (repeatable)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the spec (and that its inputs exist); change nothing")
    if reprocess:
        p.add_argument("--reprocess", action="store_true",
                       help="reprocess every datum, even those already processed")


def register(verbs: dict[str, Any], sub: Any) -> None:
    """Add the pipeline, job, datum and logs commands.

    Args:
        verbs: the verbs' noun subparsers, by verb (see ``cli.main``).
        sub: the top-level subparsers, for the verbs only PPS has (``stop``)
            and ``logs``, which takes no noun.
    """
    # `list pipelines` etc. behave like the singular, as for PFS's nouns.
    for noun in ("pipeline", "job", "datum"):
        PLURALS.setdefault(noun, noun + "s")
    stop = _verb(sub, verbs, "stop", "stop a pipeline or job")

    # pipeline
    p = noun_parser(
        verbs["create"], "pipeline", run_create_pipeline, "create pipelines from a spec file"
    )
    _create_flags(p, reprocess=False)

    p = noun_parser(
        verbs["update"],
        "pipeline",
        run_update_pipeline,
        "update pipelines from a spec file",
        "update pipelines; unchanged datums are skipped unless --reprocess",
    )
    _create_flags(p, reprocess=True)

    validate = _verb(sub, verbs, "validate", "check a spec without applying it")
    p = noun_parser(validate, "pipeline", run_validate_pipeline,
                    "check pipeline specs (fields, inputs); change nothing")
    _create_flags(p, reprocess=False)

    edit = _verb(sub, verbs, "edit", "edit a resource in $EDITOR")
    p = noun_parser(edit, "pipeline", run_edit_pipeline,
                    "edit a pipeline's spec in $EDITOR, then update the pipeline")
    p.add_argument("pipeline", metavar="PIPELINE")
    p.add_argument("--editor", help="the editor to run (default: $VISUAL, $EDITOR, vi)")
    p.add_argument("--reprocess", action="store_true",
                   help="reprocess every datum after the update")
    p.add_argument("-o", "--output", choices=("json", "yaml"), default=None,
                   help="format to edit the spec in (default json)")

    rerun = _verb(sub, verbs, "rerun", "run a pipeline again")
    p = noun_parser(rerun, "pipeline", run_rerun_pipeline,
                    "start a new job of a pipeline over its inputs' current heads")
    p.add_argument("pipeline", metavar="PIPELINE")
    p.add_argument("--reprocess", action="store_true",
                   help="reprocess every datum, not only those never processed")

    draw = _verb(sub, verbs, "draw", "draw a resource")
    p = noun_parser(draw, "pipeline", run_draw_pipeline,
                    "draw the DAG of repos and pipelines as text")

    p = noun_parser(verbs["list"], "pipeline", run_list_pipeline, "list pipelines")
    p.add_argument("pipeline", nargs="?", metavar="PIPELINE")
    p.add_argument("-s", "--spec", action="store_true",
                   help="print each pipeline's spec, ready for create pipeline -f")
    p.add_argument("--history", metavar="none|all|N",
                   help="also earlier versions: all, or the N before the current one")
    p.add_argument("-A", "--all-projects", action="store_true",
                   help="list the pipelines of every project")
    add_output_flags(p)

    p = noun_parser(verbs["inspect"], "pipeline", run_inspect_pipeline, "show a pipeline's details")
    p.add_argument("pipeline", metavar="PIPELINE")
    add_output_flags(p)

    p = noun_parser(
        verbs["delete"],
        "pipeline",
        run_delete_pipeline,
        "delete a pipeline, its jobs and its output repo",
    )
    p.add_argument("pipeline", nargs="?", metavar="PIPELINE")
    p.add_argument("--all", action="store_true", help="delete every pipeline")
    p.add_argument(
        "-f", "--force", action="store_true", help="delete even if other pipelines read its output"
    )
    p.add_argument("--keep-repo", action="store_true", help="keep the output repo")

    p = noun_parser(verbs["start"], "pipeline", run_start_pipeline, "restart a stopped pipeline")
    p.add_argument("pipeline", metavar="PIPELINE")

    run = _verb(sub, verbs, "run", "tick a pipeline's cron inputs now")
    p = noun_parser(run, "cron", run_run_cron, "tick every cron input of a pipeline now")
    p.add_argument("pipeline", metavar="PIPELINE")

    p = noun_parser(
        stop, "pipeline", run_stop_pipeline, "stop a pipeline: kill its jobs, start no new ones"
    )
    p.add_argument("pipeline", metavar="PIPELINE")

    # job
    p = noun_parser(verbs["list"], "job", run_list_job,
                    "list job sets (no argument), the jobs of one (ID), or jobs (-p, -x)")
    p.add_argument("target", nargs="?", metavar="ID|PIPELINE@JOB")
    p.add_argument("-p", "--pipeline", help="only jobs of this pipeline")
    p.add_argument("-x", "--expand", action="store_true",
                   help="list every job instead of job sets")
    p.add_argument("-n", "--number", type=int, default=0, help="list at most N jobs")
    add_output_flags(p)

    p = noun_parser(verbs["inspect"], "job", run_inspect_job,
                    "show a job's details (or every job of a job set: ID)")
    p.add_argument("job", metavar="PIPELINE@JOB|ID")
    add_output_flags(p)

    p = noun_parser(
        verbs["wait"],
        "job",
        run_wait_job,
        "wait until a job (or every job of a job set: ID) is done "
        "(success, failure, killed or unrunnable)",
    )
    p.add_argument("job", metavar="PIPELINE@JOB|ID")
    add_output_flags(p)
    progress_.add_progress_flags(p, "the job's datums done of its total")

    p = noun_parser(stop, "job", run_stop_job, "kill a running job")
    p.add_argument("job", metavar="PIPELINE@JOB")

    restart = _verb(sub, verbs, "restart", "restart a running datum")
    p = noun_parser(restart, "datum", run_restart_datum,
                    "kill a running datum's user code and run it again (no try is used)")
    p.add_argument("job", metavar="PIPELINE@JOB")
    p.add_argument("datum", metavar="DATUM-ID|PATH1,PATH2,...")

    p = noun_parser(verbs["delete"], "job", run_delete_job,
                    "stop a job if it runs and forget it (its output commit stays)")
    p.add_argument("job", metavar="PIPELINE@JOB")

    # datum
    p = noun_parser(
        verbs["list"],
        "datum",
        run_list_datum,
        "list a job's datums, or preview a spec's datums (-f)",
    )
    p.add_argument("job", nargs="?", metavar="PIPELINE@JOB")
    _spec_flag(p, required=False)
    add_output_flags(p)

    p = noun_parser(verbs["inspect"], "datum", run_inspect_datum, "show a datum's details")
    p.add_argument("job", metavar="PIPELINE@JOB")
    p.add_argument("datum", metavar="DATUM-ID")
    add_output_flags(p)

    # logs: a verb without a noun, as in pachctl.
    p = sub.add_parser(
        "logs",
        help="print the logs of a pipeline's user code",
        description="print the logs of a pipeline's user code",
    )
    p.add_argument(
        "--address", default=argparse.SUPPRESS, metavar="HOST:PORT", help="the daemon's address"
    )
    p.add_argument("-p", "--pipeline", help="the pipeline")
    p.add_argument("-j", "--job", metavar="JOB", help="only this job (ID or PIPELINE@JOB)")
    p.add_argument("--datum", metavar="DATUM-ID", help="only this datum (ID or prefix)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument("--master", action="store_true",
                   help="only the master's lines: job created, running, finished and why")
    p.add_argument("--worker", action="store_true",
                   help="only the workers' lines: user code output and datum messages")
    p.add_argument("-t", "--tail", type=int, metavar="N", help="only the last N lines")
    p.add_argument("--since", metavar="DURATION",
                   help="only lines newer than this, e.g. 10m, 24h (default: all)")
    add_output_flags(p, timestamps=False)
    p.set_defaults(run=run_logs)
