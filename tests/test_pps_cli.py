# ruff: noqa: F811  (pytest fixtures imported from tests.test_cli are parameters here)
"""End-to-end tests of the pipeline commands, run as a user runs them.

A real ``tusk daemon`` subprocess (the fixture of ``tests/test_cli.py``) runs
pipelines in a real Docker engine with the image ``tusk/busybox:latest``
(built by ``deploy/images/build.sh``). Every command is a separate ``tusk``
process. Jobs are waited for with ``tusk wait job``, never with sleeps. Each
test uses its own repo and pipeline names, so tests share one daemon.

The behaviours pinned are Pachyderm's (pachyderm-reference.md 2.4-2.9, 3.1-3.2).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

# `tusk` is test_cli's module-scoped daemon fixture (this module gets its own daemon).
from tests.test_cli import ROOT, Tusk, _lines, _table, tusk  # noqa: F401

pytestmark = pytest.mark.docker

IMAGE = "tusk/busybox:latest"


# --- fixtures and builders ------------------------------------------------------


def _unavailable(why: str) -> None:
    """Skip visibly, or fail when CI must have every backend."""
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="session")
def busybox_image() -> str:
    """The runner image; skips (fails in CI) without a Docker engine."""
    from pps.runners.docker import DockerRunner

    ok, why = DockerRunner().available()
    if not ok:
        _unavailable(f"no Docker engine: run deploy/services.sh up ({why})")
    build = subprocess.run(
        ["bash", str(ROOT / "deploy/images/build.sh"), "busybox"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    return IMAGE


@pytest.fixture(autouse=True)
def _needs_docker(busybox_image: str) -> None:
    """Every test here runs containers; a session fixture runs before the daemon starts."""


def _name(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:8]


@pytest.fixture
def repo(tusk: Tusk) -> str:
    name = _name("in")
    tusk.ok("create", "repo", name)
    return name


def put_files(tusk: Tusk, repo: str, files: dict[str, bytes], tmp: Path) -> str:
    """Put ``files`` into ``repo@master`` in ONE commit; returns its ID."""
    src = tmp / uuid.uuid4().hex
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)
    tusk.ok("put", "file", "-r", f"{repo}@master:/", "-f", str(src))
    return str(json.loads(tusk.ok("inspect", "commit", f"{repo}@master", "--raw"))["commit"]["id"])


def spec(name: str, repo: str, script: str, glob: str = "/*", **extra: Any) -> dict[str, Any]:
    """A pipeline running ``sh -c script`` over ``repo`` (input named ``in``)."""
    return {
        "pipeline": {"name": name},
        "transform": {"image": IMAGE, "cmd": ["sh", "-c", script]},
        "input": {"pfs": {"repo": repo, "glob": glob, "name": "in"}},
        **extra,
    }


#: Upper-cases each datum's file into /pfs/out under the same name.
UPPER = 'tr a-z A-Z < "$in" > "/pfs/out/$(basename "$in")"'


def create(
    tusk: Tusk, tmp: Path, *specs: dict[str, Any], update: bool = False, reprocess: bool = False
) -> None:
    path = tmp / f"{uuid.uuid4().hex}.json"
    path.write_text("\n".join(json.dumps(s) for s in specs))
    args = ["update" if update else "create", "pipeline", "-f", str(path)]
    tusk.ok(*args, *(["--reprocess"] if reprocess else []))


def block(out: str) -> dict[str, str]:
    """A ``Key: value`` block as a dict (continuation lines joined with newlines)."""
    d: dict[str, str] = {}
    key = ""
    for line in out.splitlines():
        if line.startswith("  ") and key:
            d[key] += "\n" + line.strip()
            continue
        key, _, value = line.partition(": ")
        d[key] = value
    return d


def wait(tusk: Tusk, job: str) -> dict[str, str]:
    return block(tusk.ok("wait", "job", job))


def jobs(tusk: Tusk, pipeline: str) -> list[list[str]]:
    out = tusk.ok("list", "job", "-p", pipeline)
    assert _lines(out)[0].split() == [
        "PIPELINE",
        "ID",
        "STARTED",
        "DURATION",
        "RESTART",
        "PROGRESS",
        "DL",
        "UL",
        "STATE",
    ]
    return _table(out)


# --- creating and running ---------------------------------------------------------


def test_json_pipeline_runs_and_output_appears(tusk: Tusk, repo: str, tmp_path: Path) -> None:
    in_commit = put_files(tusk, repo, {"a.txt": b"hello\n", "b.txt": b"world\n"}, tmp_path)
    p = _name("up")
    create(tusk, tmp_path, spec(p, repo, UPPER, description="shout"))

    info = wait(tusk, f"{p}@master")
    assert info["State"] == "success"
    assert (info["Data Processed"], info["Data Skipped"], info["Data Total"]) == ("2", "0", "2")
    assert info["Input Commits"] == f"{repo}@{in_commit}"
    assert tusk.ok("get", "file", f"{p}@master:/a.txt") == "HELLO\n"
    assert tusk.ok("get", "file", f"{p}@master:/b.txt") == "WORLD\n"

    [row] = jobs(tusk, p)
    assert row[0] == p and row[5] == "2 + 0 / 2" and row[-1] == "success"

    out = tusk.ok("list", "pipeline")
    assert _lines(out)[0].split() == [
        "NAME",
        "VERSION",
        "INPUT",
        "CREATED",
        "STATE",
        "/",
        "LAST",
        "JOB",
        "DESCRIPTION",
    ]
    row = next(r for r in _table(out) if r[0] == p)
    assert row[1] == "1" and row[2] == f"{repo}:/*" and row[4] == "running / success"
    assert row[5] == "shout"

    # The output commit's provenance names the input commit (same commit set ID).
    commit = tusk.ok("inspect", "commit", f"{p}@master")
    assert f"{repo}@{in_commit}" in block(commit)["Provenance"]

    pi = block(tusk.ok("inspect", "pipeline", p))
    assert pi["Name"] == p and pi["Input"] == f"{repo}:/*" and pi["Image"] == IMAGE


def test_yaml_file_with_two_chained_pipelines(tusk: Tusk, repo: str, tmp_path: Path) -> None:
    put_files(tusk, repo, {"a.txt": b"x\n", "b.txt": b"y\n", "c.txt": b"z\n"}, tmp_path)
    first, second = _name("up"), _name("count")
    text = yaml.safe_dump_all(
        [
            spec(first, repo, UPPER),
            {
                "pipeline": {"name": second},
                "transform": {
                    "image": IMAGE,
                    "cmd": ["sh", "-c", "cat /pfs/up/* | wc -l > /pfs/out/n"],
                },
                "input": {"pfs": {"repo": first, "name": "up", "glob": "/"}},
            },
        ]
    )
    tusk.ok("create", "pipeline", "-f", "-", input=text.encode())
    assert wait(tusk, f"{first}@master")["State"] == "success"
    assert wait(tusk, f"{second}@master")["State"] == "success"
    assert tusk.ok("get", "file", f"{second}@master:/n").strip() == "3"
    # Cross and union inputs render like pachctl's INPUT column.
    row = next(r for r in _table(tusk.ok("list", "pipeline")) if r[0] == second)
    assert row[2] == f"{first}:/"


def test_incremental_processing_and_datums(tusk: Tusk, repo: str, tmp_path: Path) -> None:
    put_files(tusk, repo, {"a": b"1\n", "b": b"2\n", "c": b"3\n"}, tmp_path)
    p = _name("inc")
    create(tusk, tmp_path, spec(p, repo, UPPER))
    first = wait(tusk, f"{p}@master")
    assert first["Progress"] == "3 + 0 / 3"

    # Change one file: the next job processes it and skips the other two.
    put_files(tusk, repo, {"b": b"two\n"}, tmp_path)
    second = wait(tusk, f"{p}@master")
    assert second["ID"] != first["ID"]
    assert (second["Data Processed"], second["Data Skipped"]) == ("1", "2")
    assert tusk.ok("get", "file", f"{p}@master:/b") == "TWO\n"
    assert tusk.ok("get", "file", f"{p}@master:/a") == "1\n"
    rows = jobs(tusk, p)
    assert [r[1] for r in rows] == [second["ID"], first["ID"]]  # newest first
    assert rows[0][5] == "1 + 2 / 3"

    out = tusk.ok("list", "datum", f"{p}@{second['ID']}")
    assert _lines(out)[0].split() == ["ID", "FILES", "STATUS", "TIME"]
    states = {r[1].rsplit(":", 1)[1]: r[2] for r in _table(out)}
    assert states == {"/a": "skipped", "/b": "success", "/c": "skipped"}

    # inspect datum by an ID prefix; a datum keeps its ID across jobs.
    datum_id = next(r[0] for r in _table(out) if r[1].endswith(":/b"))
    d = block(tusk.ok("inspect", "datum", f"{p}@{second['ID']}", datum_id[:12]))
    assert d["ID"] == datum_id and d["State"] == "success" and ":/b" in d["Inputs"]
    d = block(tusk.ok("inspect", "datum", f"{p}@{first['ID']}", datum_id))
    assert d["State"] == "success"

    # A job with nothing new to do: pachctl's wording.
    tusk.ok("put", "file", f"{repo}@master:/a", "-f", "-", input=b"1\n")
    third = wait(tusk, f"{p}@master")
    assert third["State"] == "success: there were no datums to process"
    assert third["Progress"] == "0 + 3 / 3"


def test_logs_show_what_the_container_printed(tusk: Tusk, repo: str, tmp_path: Path) -> None:
    put_files(tusk, repo, {"one": b"1", "two": b"2"}, tmp_path)
    p = _name("log")
    create(tusk, tmp_path, spec(p, repo, 'echo "saw $(basename $in)"; echo "to-stderr" >&2'))
    job = wait(tusk, f"{p}@master")["ID"]
    out = _lines(tusk.ok("logs", "-p", p))
    assert "saw one" in out and "saw two" in out and "to-stderr" in out
    assert "saw one" in _lines(tusk.ok("logs", "-p", p, "-j", job))
    assert "saw one" in _lines(tusk.ok("logs", "-j", f"{p}@{job}"))
    raw = [json.loads(line) for line in _lines(tusk.ok("logs", "-p", p, "--raw"))]
    saw_one = next(m for m in raw if m["message"] == "saw one")
    assert saw_one["pipeline_name"] == p and saw_one["job_id"] == job
    # --datum narrows to one datum.
    only = _lines(tusk.ok("logs", "-p", p, "--datum", saw_one["datum_id"]))
    assert "saw one" in only and "saw two" not in only


# --- updates ------------------------------------------------------------------------


def test_update_keeps_outputs_until_inputs_change_and_reprocess(
    tusk: Tusk, repo: str, tmp_path: Path
) -> None:
    put_files(tusk, repo, {"a": b"."}, tmp_path)
    p = _name("upd")

    def writes(word: str) -> dict[str, Any]:
        return spec(p, repo, f'echo {word} > "/pfs/out/$(basename $in)"')

    create(tusk, tmp_path, writes("foo"))
    wait(tusk, f"{p}@master")
    assert tusk.ok("get", "file", f"{p}@master:/a") == "foo\n"

    # Plain update: a new job, but the unchanged datum is skipped (same salt).
    create(tusk, tmp_path, writes("bar"), update=True)
    info = wait(tusk, f"{p}@master")
    assert info["Pipeline Version"] == "2" and info["Data Skipped"] == "1"
    assert tusk.ok("get", "file", f"{p}@master:/a") == "foo\n"
    put_files(tusk, repo, {"b": b"."}, tmp_path)
    wait(tusk, f"{p}@master")
    assert tusk.ok("get", "file", f"{p}@master:/a") == "foo\n"
    assert tusk.ok("get", "file", f"{p}@master:/b") == "bar\n"

    # --reprocess: a new salt, every datum runs again with the new code.
    create(tusk, tmp_path, writes("buzz"), update=True, reprocess=True)
    info = wait(tusk, f"{p}@master")
    assert (info["Data Processed"], info["Data Skipped"]) == ("2", "0")
    assert tusk.ok("get", "file", f"{p}@master:/a") == "buzz\n"
    assert tusk.ok("get", "file", f"{p}@master:/b") == "buzz\n"
    assert len(jobs(tusk, p)) == 4
    assert block(tusk.ok("inspect", "pipeline", p))["Version"] == "3"


# --- failures -------------------------------------------------------------------------


def test_failing_datum_fails_the_job_and_downstream_is_unrunnable(
    tusk: Tusk, repo: str, tmp_path: Path
) -> None:
    put_files(tusk, repo, {"a": b"."}, tmp_path)
    bad, after = _name("bad"), _name("after")
    create(
        tusk,
        tmp_path,
        spec(bad, repo, "echo the-disk-is-on-fire >&2; exit 3", glob="/", datum_tries=2),
        spec(after, bad, "true", glob="/"),
    )
    info = wait(tusk, f"{bad}@master")
    assert info["State"] == "failure"
    assert "exited with code 3" in info["Reason"] and "the-disk-is-on-fire" in info["Reason"]
    assert info["Data Failed"] == "1"
    down = wait(tusk, f"{after}@master")
    assert down["State"] == "unrunnable" and bad in down["Reason"]

    [row] = jobs(tusk, bad)
    assert row[-1].startswith("failure: ")
    [datum] = _table(tusk.ok("list", "datum", f"{bad}@master"))
    assert datum[2] == "failed"
    d = block(tusk.ok("inspect", "datum", f"{bad}@master", datum[0]))
    assert d["Attempts"] == "2" and "exited with code 3" in d["Reason"]
    # One "errored running user code" line per attempt (datum_tries: 2).
    logs = tusk.ok("logs", "-p", bad)
    assert logs.count("errored running user code") == 2
    # The failed job's output commit carries the reason as its error.
    assert "exited with code 3" in tusk.ok("inspect", "commit", f"{bad}@master")


def test_malformed_spec_names_the_field(tusk: Tusk, repo: str, tmp_path: Path) -> None:
    p = _name("bad")
    path = tmp_path / "s.json"
    path.write_text(json.dumps({**spec(p, repo, "true"), "datum_trys": 2}))
    err = tusk.fails("create", "pipeline", "-f", str(path))
    assert '"datum_trys"' in err and "datum_tries" in err
    # YAML too, and a field deep in the input.
    y = spec(p, repo, "true")
    y["input"]["pfs"]["glog"] = "/*"
    err = tusk.fails("create", "pipeline", "-f", "-", input=yaml.safe_dump(y).encode())
    assert "input.pfs.glog" in err
    err = tusk.fails("create", "pipeline", "-f", "-", input=b"{not json")
    assert "JSON" in err
    tusk.fails("inspect", "pipeline", p)  # nothing was created


def test_missing_input_repo_is_named(tusk: Tusk, tmp_path: Path) -> None:
    missing = _name("nope")
    path = tmp_path / "s.json"
    path.write_text(json.dumps(spec(_name("p"), missing, "true")))
    err = tusk.fails("create", "pipeline", "-f", str(path))
    assert f"input repo {missing}" in err and "not found" in err


def test_unknown_pipeline_and_bad_job_reference(tusk: Tusk) -> None:
    p = _name("ghost")
    assert "not found" in tusk.fails("inspect", "pipeline", p)
    assert "not found" in tusk.fails("wait", "job", f"{p}@master")
    err = tusk.fails("inspect", "job", p, code=2)
    assert "PIPELINE@JOB-ID" in err


# --- lifecycle -----------------------------------------------------------------------


def test_delete_pipeline_and_its_output_repo(tusk: Tusk, repo: str, tmp_path: Path) -> None:
    put_files(tusk, repo, {"a": b"."}, tmp_path)
    p = _name("del")
    create(tusk, tmp_path, spec(p, repo, UPPER))
    wait(tusk, f"{p}@master")
    err = tusk.fails("delete", "repo", p)
    assert "delete the pipeline" in err
    tusk.ok("delete", "pipeline", p)
    assert p not in [r[0] for r in _table(tusk.ok("list", "repo"))]
    assert "not found" in tusk.fails("inspect", "repo", p)
    assert "not found" in tusk.fails("inspect", "pipeline", p)
    # The input repo is untouched.
    tusk.ok("inspect", "repo", repo)


def test_delete_pipeline_keep_repo(tusk: Tusk, repo: str, tmp_path: Path) -> None:
    put_files(tusk, repo, {"a": b"x"}, tmp_path)
    p = _name("keep")
    create(tusk, tmp_path, spec(p, repo, UPPER))
    wait(tusk, f"{p}@master")
    tusk.ok("delete", "pipeline", p, "--keep-repo")
    assert tusk.ok("get", "file", f"{p}@master:/a") == "X"
    tusk.ok("delete", "repo", p)  # no longer a pipeline's repo


def test_stop_and_start_pipeline(tusk: Tusk, repo: str, tmp_path: Path) -> None:
    put_files(tusk, repo, {"a": b"a"}, tmp_path)
    p = _name("stop")
    create(tusk, tmp_path, spec(p, repo, UPPER))
    wait(tusk, f"{p}@master")
    tusk.ok("stop", "pipeline", p)
    row = next(r for r in _table(tusk.ok("list", "pipeline")) if r[0] == p)
    assert row[4].startswith("paused")
    assert block(tusk.ok("inspect", "pipeline", p))["Stopped"] == "true"

    # While stopped, input commits make no jobs.
    put_files(tusk, repo, {"b": b"b"}, tmp_path)
    assert len(jobs(tusk, p)) == 1

    # Starting makes one job over the current inputs.
    tusk.ok("start", "pipeline", p)
    info = wait(tusk, f"{p}@master")
    assert info["State"] == "success"
    assert len(jobs(tusk, p)) == 2
    assert tusk.ok("get", "file", f"{p}@master:/b") == "B"


def test_stop_job(tusk: Tusk, repo: str, tmp_path: Path) -> None:
    put_files(tusk, repo, {"a": b"a"}, tmp_path)
    p = _name("slow")
    # Short enough that the daemon's shutdown never waits long for it.
    create(tusk, tmp_path, spec(p, repo, "sleep 2", glob="/"))
    tusk.ok("stop", "job", f"{p}@master")
    info = wait(tusk, f"{p}@master")
    assert info["State"] == "killed" and "stop" in info["Reason"]


def test_list_datum_preview_from_spec(tusk: Tusk, repo: str, tmp_path: Path) -> None:
    c = put_files(tusk, repo, {"x": b"1", "y": b"2", "z": b"3"}, tmp_path)
    p = _name("prev")
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec(p, repo, "true")))
    rows = _table(tusk.ok("list", "datum", "-f", str(path)))
    assert sorted(r[1] for r in rows) == [f"{repo}@{c}:/{n}" for n in "xyz"]
    assert all(r[0] == "-" and r[2] == "-" for r in rows)
    assert "not found" in tusk.fails("inspect", "pipeline", p)  # preview creates nothing


def test_raw_output(tusk: Tusk, repo: str, tmp_path: Path) -> None:
    put_files(tusk, repo, {"a": b"a"}, tmp_path)
    p = _name("raw")
    create(tusk, tmp_path, spec(p, repo, UPPER, datum_tries=2))
    wait(tusk, f"{p}@master")
    [job] = [json.loads(line) for line in _lines(tusk.ok("list", "job", "-p", p, "--raw"))]
    assert job["job"]["pipeline"]["name"] == p and job["state"] == "JOB_SUCCESS"
    pi = yaml.safe_load(tusk.ok("inspect", "pipeline", p, "--raw", "-o", "yaml"))
    assert pi["pipeline"]["name"] == p and pi["state"] == "PIPELINE_RUNNING"
    assert pi["spec"]["datum_tries"] == 2
    ji = json.loads(tusk.ok("inspect", "job", f"{p}@master", "--raw"))
    assert ji["output_commit"]["repo"] == p
    [d] = [json.loads(line) for line in _lines(tusk.ok("list", "datum", f"{p}@master", "--raw"))]
    assert d["state"] == "SUCCESS" and d["files"][0]["path"] == "/a"
    assert (
        tusk.fails("list", "pipeline", "-o", "yaml", code=2)
        == "error: cannot set --output (-o) without --raw"
    )


def test_cron_pipeline_and_run_cron(tusk: Tusk, tmp_path: Path) -> None:
    p = _name("cron")
    create(tusk, tmp_path, {
        "pipeline": {"name": p},
        "transform": {"image": IMAGE, "cmd": ["sh", "-c", "ls /pfs/tick > /pfs/out/ticks"]},
        "input": {"cron": {"name": "tick", "spec": "@daily", "overwrite": True}}})
    wait(tusk, f"{p}@master")
    before = len(jobs(tusk, p))
    tusk.ok("run", "cron", p)
    info = wait(tusk, f"{p}@master")
    assert info["State"] == "success"
    assert len(jobs(tusk, p)) == before + 1
    # The tick file is named by its time, e.g. 2026-11-24T05:20:51Z.
    assert tusk.ok("get", "file", f"{p}@master:/ticks").strip().endswith("Z")
    tusk.ok("delete", "pipeline", p)
