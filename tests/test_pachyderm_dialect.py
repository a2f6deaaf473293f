# ruff: noqa: F811  (pytest fixtures imported from tests.test_cli are parameters here)
"""Pachyderm's spec dialect and pipeline commands, end to end through the CLI.

Specs here are written the way Pachyderm's own examples write them today
(protobuf JSON names: ``joinOn``, ``outerJoin``, ``groupBy``, ``emptyFiles``,
integers as strings, a jsonnet template with ``--arg``), with our own data
shaped like those examples' (stores and purchases joined by store ID, lab
results grouped by patient, fruits and prices linked with ``emptyFiles``).
Each runs in a real ``tusk daemon`` with the Docker runner.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli import Tusk, _table, tusk  # noqa: F401
from tests.test_pps_cli import IMAGE, _needs_docker, block, busybox_image, put_files  # noqa: F401

pytestmark = pytest.mark.docker


def _n(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def _spec_file(tmp: Path, *specs: dict[str, Any]) -> str:
    path = tmp / f"{uuid.uuid4().hex}.json"
    path.write_text("\n".join(json.dumps(s, indent=2) for s in specs))
    return str(path)


def _files(tusk: Tusk, repo: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in tusk.ok("glob", "file", f"{repo}@master:/**", "--raw").splitlines():
        info = json.loads(line)
        if info.get("file_type", "FILE") in ("FILE", 1):
            path = info["file"]["path"]
            out[path] = tusk.ok("get", "file", f"{repo}@master:{path}")
    return out


def _wait_head(tusk: Tusk, pipeline: str) -> dict[str, str]:
    return block(tusk.ok("wait", "job", f"{pipeline}@master"))


def test_camel_case_join_runs_end_to_end(tusk: Tusk, tmp_path: Path) -> None:
    stores, purchases, name = _n("stores"), _n("purchases"), _n("inner_join")
    for r in (stores, purchases):
        tusk.ok("create", "repo", r)
    put_files(tusk, stores, {"STOREID1.txt": b'{"zip": "02108"}\n',
                             "STOREID2.txt": b'{"zip": "90210"}\n',
                             "STOREID4.txt": b'{"zip": "94107"}\n'}, tmp_path)
    put_files(tusk, purchases, {"ORDERW1_STOREID1.txt": b"sku 1\n",
                                "ORDERW2_STOREID1.txt": b"sku 2\n",
                                "ORDERW3_STOREID2.txt": b"sku 3\n",
                                "ORDERW9_STOREID0.txt": b"sku 9\n"}, tmp_path)
    spec = {
        "pipeline": {"name": name},
        "description": "purchases by store, camelCase as Pachyderm writes it",
        "input": {"join": [
            {"pfs": {"repo": stores, "branch": "master", "glob": "/STOREID(*).txt",
                     "joinOn": "$1", "outerJoin": True}},
            {"pfs": {"repo": purchases, "branch": "master", "glob": "/*_STOREID(*).txt",
                     "joinOn": "$1"}},
        ]},
        "transform": {"image": IMAGE, "cmd": ["sh"], "stdin": [
            f'id="$PACH_DATUM_{stores}_JOIN_ON"',
            'mkdir -p "/pfs/out/$id"',
            f'for f in /pfs/{purchases}/*; do [ -e "$f" ] && cp "$f" "/pfs/out/$id/"; done',
            "true",
        ], "acceptReturnCode": ["1"]},
        "parallelismSpec": {"constant": "1"},
        "datumTries": "2",
        "datumTimeout": "60s",
    }
    tusk.ok("create", "pipeline", "-f", _spec_file(tmp_path, spec))
    job = _wait_head(tusk, name)
    assert job["State"] == "success", job
    files = _files(tusk, name)
    # Store 4 has no purchase (outer join on stores: its datum still runs);
    # store 0's purchase has no store and the purchases side is inner: dropped.
    assert files == {"/1/ORDERW1_STOREID1.txt": "sku 1\n", "/1/ORDERW2_STOREID1.txt": "sku 2\n",
                     "/2/ORDERW3_STOREID2.txt": "sku 3\n"}
    # One datum per matching (store, purchase) pair, plus store 4 alone.
    datums = tusk.ok("list", "datum", f"{name}@master", "--raw").splitlines()
    assert len(datums) == 4


def test_camel_case_group_and_empty_files_links(tusk: Tusk, tmp_path: Path) -> None:
    lab, fruits, prices = _n("labresults"), _n("fruits"), _n("pricing")
    group, shuffle = _n("group_by_patient"), _n("shuffle")
    for r in (lab, fruits, prices):
        tusk.ok("create", "repo", r)
    put_files(tusk, lab, {"T1-LIPID-PATID1-CLIA7.txt": b"a\n", "T2-LIPID-PATID2-CLIA7.txt": b"b\n",
                          "T3-LIPID-PATID1-CLIA8.txt": b"c\n"}, tmp_path)
    put_files(tusk, fruits, {"apple.jpeg": b"APPLE-PIXELS", "mango.jpeg": b"MANGO-PIXELS"},
              tmp_path)
    put_files(tusk, prices, {"apple.json": b'{"price_usd": 100}',
                             "mango.json": b'{"price_usd": 10}'}, tmp_path)
    group_spec = {
        "pipeline": {"name": group},
        "input": {"group": [{"pfs": {"repo": lab, "branch": "master",
                                     "glob": "/*-PATID(*)-*.txt", "groupBy": "$1"}}]},
        "transform": {"image": IMAGE, "cmd": ["sh"], "stdin": [
            f'mkdir -p "/pfs/out/$PACH_DATUM_{lab}_GROUP_BY"',
            f'cp /pfs/{lab}/* "/pfs/out/$PACH_DATUM_{lab}_GROUP_BY/"']},
    }
    shuffle_spec = {
        "input": {"union": [{"pfs": {"glob": "/*.jpeg", "repo": fruits, "emptyFiles": True}},
                            {"pfs": {"glob": "/*.json", "repo": prices, "emptyFiles": True}}]},
        "pipeline": {"name": shuffle},
        "transform": {"image": IMAGE, "cmd": ["sh"], "stdin": [
            f"for f in /pfs/{fruits}/*.jpeg; do [ -e $f ] || continue; n=$(basename $f .jpeg);"
            " mkdir -p /pfs/out/$n; ln -s $f /pfs/out/$n/img.jpeg; done",
            f"for f in /pfs/{prices}/*.json; do [ -e $f ] || continue; n=$(basename $f .json);"
            " mkdir -p /pfs/out/$n; ln -s $f /pfs/out/$n/cost.json; done"]},
    }
    tusk.ok("create", "pipeline", "-f", _spec_file(tmp_path, group_spec, shuffle_spec))
    assert _wait_head(tusk, group)["State"] == "success"
    assert _files(tusk, group) == {"/1/T1-LIPID-PATID1-CLIA7.txt": "a\n",
                                   "/1/T3-LIPID-PATID1-CLIA8.txt": "c\n",
                                   "/2/T2-LIPID-PATID2-CLIA7.txt": "b\n"}
    assert _wait_head(tusk, shuffle)["State"] == "success"
    # emptyFiles stages empty files; the links still store the real content.
    assert _files(tusk, shuffle) == {"/apple/img.jpeg": "APPLE-PIXELS",
                                     "/apple/cost.json": '{"price_usd": 100}',
                                     "/mango/img.jpeg": "MANGO-PIXELS",
                                     "/mango/cost.json": '{"price_usd": 10}'}


JSONNET = """
function(suffix, src)
[
  {
    pipeline: { name: "tmpl-" + suffix },
    description: "made from a template over " + src,
    input: { pfs: { repo: src, glob: "/*" } },
    transform: { image: "%(image)s", cmd: ["sh", "-c", "cp /pfs/" + src + "/* /pfs/out/"] },
  },
  {
    pipeline: { name: "tmpl-" + suffix + "-count" },
    input: { pfs: { repo: "tmpl-" + suffix, glob: "/" } },
    transform: { image: "%(image)s",
                 cmd: ["sh", "-c", "ls /pfs/tmpl-" + suffix + " | wc -l > /pfs/out/n"] },
  },
]
"""


def test_jsonnet_template_with_args(tusk: Tusk, tmp_path: Path) -> None:
    src, suffix = _n("images"), uuid.uuid4().hex[:6]
    tusk.ok("create", "repo", src)
    put_files(tusk, src, {"a": b"1", "b": b"2"}, tmp_path)
    tmpl = tmp_path / "edges.jsonnet"
    tmpl.write_text(JSONNET % {"image": IMAGE})
    tusk.ok("create", "pipeline", "--jsonnet", str(tmpl), "--arg", f"suffix={suffix}",
            "--arg", f"src={src}")
    assert _wait_head(tusk, f"tmpl-{suffix}-count")["State"] == "success"
    assert tusk.ok("get", "file", f"tmpl-{suffix}-count@master:/n").strip() == "2"
    err = tusk.fails("create", "pipeline", "--jsonnet", str(tmpl), "--arg", f"suffix={suffix}x")
    assert "jsonnet template" in err and "src" in err
    assert "expected KEY=VALUE" in tusk.fails("create", "pipeline", "--jsonnet", str(tmpl),
                                              "--arg", "novalue", code=2)


def test_dry_run_validate_and_warnings(tusk: Tusk, tmp_path: Path) -> None:
    src, name = _n("data"), _n("checked")
    tusk.ok("create", "repo", src)
    spec = {"pipeline": {"name": name}, "input": {"pfs": {"repo": src, "glob": "/*"}},
            "transform": {"image": IMAGE, "cmd": ["true"]},
            "podPatch": "[]", "resourceRequests": {"cpu": 1}}
    path = _spec_file(tmp_path, spec)
    r = tusk.run("validate", "pipeline", "-f", path)
    assert r.code == 0 and f"pipeline {name}: valid" in r.out
    assert 'field "pod_patch" is recorded but not used by tusk' in r.err
    assert 'field "resource_requests"' in r.err
    r = tusk.run("create", "pipeline", "--dry-run", "-f", path)
    assert r.code == 0 and "nothing changed" in r.out
    assert "not found" in tusk.fails("inspect", "pipeline", name)
    bad = dict(spec, input={"pfs": {"repo": src, "glob": "/*", "joinOnn": "$1"}})
    err = tusk.fails("validate", "pipeline", "-f", _spec_file(tmp_path, bad))
    assert 'unknown field "input.pfs.joinOnn" (did you mean "input.pfs.joinOn"?)' in err
    missing = dict(spec, input={"pfs": {"repo": "no-such-repo", "glob": "/*"}})
    err = tusk.fails("create", "pipeline", "--dry-run", "-f", _spec_file(tmp_path, missing))
    assert "input repo no-such-repo" in err and "tusk create repo no-such-repo" in err
    r = tusk.run("create", "pipeline", "-f", path)
    assert r.code == 0 and "warning: pipeline" in r.err
    assert "only http:// and https://" in tusk.fails("create", "pipeline", "-f", "ftp://x/y.json")
    assert "could not fetch the spec" in tusk.fails("create", "pipeline", "-f",
                                                    "http://127.0.0.1:9/spec.json")


def test_list_spec_history_rerun_edit_and_draw(tusk: Tusk, tmp_path: Path) -> None:
    src, name = _n("words"), _n("upper")
    tusk.ok("create", "repo", src)
    put_files(tusk, src, {"a.txt": b"one\n", "b.txt": b"two\n"}, tmp_path)
    spec = {"pipeline": {"name": name}, "input": {"pfs": {"repo": src, "glob": "/*"}},
            "transform": {"image": IMAGE, "cmd": ["sh", "-c",
                          f'tr a-z A-Z < "${src}" > /pfs/out/$(basename "${src}")']},
            "datumTries": 2}
    tusk.ok("create", "pipeline", "-f", _spec_file(tmp_path, spec))
    assert _wait_head(tusk, name)["State"] == "success"

    # --spec prints a spec that creates the same pipeline under another name.
    printed = json.loads(tusk.ok("list", "pipeline", name, "--spec"))
    assert printed["datum_tries"] == 2 and printed["input"]["pfs"]["repo"] == src
    printed["pipeline"]["name"] = name + "-copy"
    tusk.ok("create", "pipeline", "-f", _spec_file(tmp_path, printed))
    assert _wait_head(tusk, name + "-copy")["State"] == "success"

    # rerun: a new job over the same inputs; --reprocess runs every datum again.
    before = len(_table(tusk.ok("list", "job", "-p", name)))
    tusk.ok("rerun", "pipeline", name, "--reprocess")
    jobs = _table(tusk.ok("list", "job", "-p", name))
    assert len(jobs) == before + 1
    job = _wait_head(tusk, name)
    assert job["State"] == "success" and job["Data Processed"] == "2", job

    # edit: $EDITOR changes the spec, the pipeline gets a new version.
    editor = tmp_path / "editor.py"
    editor.write_text("import sys\np = sys.argv[1]\ns = open(p).read()\n"
                      "open(p, 'w').write(s.replace('a-z A-Z', 'a-z a-z'))\n")
    r = tusk.run("edit", "pipeline", name, "--reprocess", "--editor",
                 f"{sys.executable} {editor}")
    assert r.code == 0, r.err
    assert _wait_head(tusk, name)["State"] == "success"
    assert tusk.ok("get", "file", f"{name}@master:/a.txt") == "one\n"
    history = _table(tusk.ok("list", "pipeline", name, "--history", "all"))
    assert [row[1] for row in history] == ["3", "2", "1"]
    assert len(_table(tusk.ok("list", "pipeline", name, "--history", "1"))) == 2
    specs = tusk.ok("list", "pipeline", name, "--history", "all", "--spec", "-o", "yaml")
    assert specs.count("---") == 2 and "a-z a-z" in specs and "a-z A-Z" in specs

    # An editor that fails changes nothing.
    err = tusk.fails("edit", "pipeline", name, "--editor", "false")
    assert "exited with code 1" in err

    out = tusk.ok("draw", "pipeline")
    assert f"[repo] {src}" in out and f"[pipeline] {name}  <-  {src}:/*" in out
    lines = out.splitlines()
    assert lines.index(f"  [repo] {src}") < next(
        i for i, line in enumerate(lines) if f"[pipeline] {name} " in line)


def test_rerun_and_edit_of_a_missing_pipeline_say_so(tusk: Tusk) -> None:
    assert "not found" in tusk.fails("rerun", "pipeline", "nope-nope")
    env_editor = os.environ.get("EDITOR")
    assert "not found" in tusk.fails("edit", "pipeline", "nope-nope", "--editor", "true")
    assert os.environ.get("EDITOR") == env_editor


def test_logs_master_worker_tail_and_since(tusk: Tusk, tmp_path: Path) -> None:
    src, name = _n("logsin"), _n("logs")
    tusk.ok("create", "repo", src)
    put_files(tusk, src, {"a": b"1", "b": b"2", "bad": b"3"}, tmp_path)
    spec = {"pipeline": {"name": name}, "input": {"pfs": {"repo": src, "glob": "/*"}},
            "transform": {"image": IMAGE, "cmd": ["sh", "-c",
                          f'echo "hello from $(basename ${src})"; '
                          f'[ "$(basename ${src})" != bad ] || {{ echo broken >&2; exit 3; }}']},
            "datumTries": 1}
    tusk.ok("create", "pipeline", "-f", _spec_file(tmp_path, spec))
    job = _wait_head(tusk, name)
    assert job["State"].startswith("failure"), job
    every = tusk.ok("logs", "-p", name).splitlines()
    master = tusk.ok("logs", "-p", name, "--master").splitlines()
    worker = tusk.ok("logs", "-p", name, "--worker").splitlines()
    assert len(master) == 3 and len(every) == len(master) + len(worker)
    assert "created" in master[0] and "running: 3 datums to process, 0 skipped" in master[1]
    assert "finished: failure" in master[2] and "exited with code 3" in master[2]
    assert every[0] == master[0] and every[-1] == master[2]  # job events frame its datums
    assert {"hello from a", "hello from b", "hello from bad", "broken"} <= set(worker)
    assert not any("finished" in line for line in worker)
    assert tusk.ok("logs", "-p", name, "--tail", "1").splitlines() == [master[2]]
    assert tusk.ok("logs", "-p", name, "--since", "1h").splitlines() == every
    raw = [json.loads(x) for x in tusk.ok("logs", "-p", name, "--master", "--raw").splitlines()]
    assert all(m.get("master") for m in raw)
    assert "expected a duration" in tusk.fails("logs", "-p", name, "--since", "yesterday",
                                               code=2)


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts_complete_verbs_nouns_and_flags(shell: str, tusk: Tusk,
                                                           tmp_path: Path) -> None:
    import shutil
    import subprocess

    script = tmp_path / f"tusk.{shell}"
    script.write_text(tusk.ok("completion", shell))
    if shell == "zsh":
        if shutil.which("zsh") is None:
            assert "bashcompinit" in script.read_text()
            return
        check = subprocess.run(["zsh", "-n", str(script)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        return
    probe = (f"source {script}; "
             "COMP_WORDS=(tusk cre); COMP_CWORD=1; _tusk; echo \"${COMPREPLY[*]}\"; "
             "COMP_WORDS=(tusk create pi); COMP_CWORD=2; _tusk; echo \"${COMPREPLY[*]}\"; "
             "COMP_WORDS=(tusk create pipeline --js); COMP_CWORD=3; _tusk; "
             "echo \"${COMPREPLY[*]}\"; "
             "COMP_WORDS=(tusk logs --ta); COMP_CWORD=2; _tusk; echo \"${COMPREPLY[*]}\"")
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["create", "pipeline pipelines", "--jsonnet", "--tail"]


def test_job_sets_delete_job_and_commit_history_commands(tusk: Tusk, tmp_path: Path) -> None:
    src, one, two = _n("setin"), _n("one"), _n("two")
    tusk.ok("create", "repo", src)
    put_files(tusk, src, {"a": b"1"}, tmp_path)
    specs = [{"pipeline": {"name": one}, "input": {"pfs": {"repo": src, "glob": "/*"}},
              "transform": {"image": IMAGE, "cmd": ["sh", "-c", f"cp /pfs/{src}/* /pfs/out/"]}},
             {"pipeline": {"name": two}, "input": {"pfs": {"repo": one, "glob": "/"}},
              "transform": {"image": IMAGE, "cmd": ["sh", "-c", f"ls /pfs/{one} > /pfs/out/ls"]}}]
    tusk.ok("create", "pipeline", "-f", _spec_file(tmp_path, *specs))
    _wait_head(tusk, two)
    cid = put_files(tusk, src, {"b": b"2"}, tmp_path)  # one commit set through both pipelines

    waited = tusk.ok("wait", "job", cid)
    assert waited.count(f"ID: {cid}") == 2 and waited.count("State: success") == 2
    sets = _table(tusk.ok("list", "job"))
    row = next(r for r in sets if r[0] == cid)
    assert row[1:3] == ["2", "2/2"]
    jobs = _table(tusk.ok("list", "job", cid))
    assert sorted(r[0] for r in jobs) == sorted([one, two])
    assert len(_table(tusk.ok("list", "job", "-x"))) >= 4
    assert tusk.ok("inspect", "job", cid).count("Pipeline: ") == 2
    assert "job set" in tusk.fails("inspect", "job", "0" * 32)

    # find commit: the commits of the input that changed /b.
    found = [json.loads(x)["commit"]["id"]
             for x in tusk.ok("find", "commit", f"{src}@master:/b", "--raw").splitlines()]
    assert found == [cid]

    # delete job: forgotten, its output commit stays.
    tusk.ok("delete", "job", f"{two}@{cid}")
    assert "not found" in tusk.fails("inspect", "job", f"{two}@{cid}")
    assert json.loads(tusk.ok("inspect", "commit", f"{two}@{cid}", "--raw"))["commit"]["id"] == cid

    # squash/delete commit: subvenant commits need -r.
    err = tusk.fails("delete", "commit", f"{src}@{cid}")
    assert "--recursive (-r)" in err and f"{one}@{cid}" in err
    err = tusk.fails("squash", "commit", f"{src}@{cid}")
    assert "cannot squash" in err and "--recursive (-r)" in err
    first = json.loads(tusk.ok("inspect", "commit", f"{src}@master^", "--raw"))["commit"]["id"]
    assert "use the drop operation instead" in tusk.fails("squash", "commit", f"{src}@{cid}",
                                                          "-r")
    tusk.ok("squash", "commit", f"{src}@{first}", "-r")
    assert "not found" in tusk.fails("inspect", "commit", f"{src}@{first}")
    assert tusk.ok("get", "file", f"{src}@master:/a") == "1"
    tusk.ok("delete", "commit", cid)  # the whole commit set
    for repo in (src, one, two):
        assert "not found" in tusk.fails("inspect", "commit", f"{repo}@{cid}")


def test_transaction_runs_queued_changes_together_one_job(tusk: Tusk, tmp_path: Path) -> None:
    left, right, name = _n("left"), _n("right"), _n("both")
    for r in (left, right):
        tusk.ok("create", "repo", r)
        put_files(tusk, r, {"seed": b"0"}, tmp_path)
    spec = {"pipeline": {"name": name},
            "input": {"cross": [{"pfs": {"repo": left, "glob": "/"}},
                                {"pfs": {"repo": right, "glob": "/"}}]},
            "transform": {"image": IMAGE, "cmd": ["sh", "-c",
                          f"find /pfs/{left}/ /pfs/{right}/ -type f | wc -l > /pfs/out/n"]}}
    tusk.ok("create", "pipeline", "-f", _spec_file(tmp_path, spec))
    _wait_head(tusk, name)
    jobs_before = len(_table(tusk.ok("list", "job", "-p", name)))

    txn = tusk.ok("start", "transaction").strip()
    assert "already active" in tusk.fails("start", "transaction")
    r = tusk.run("start", "commit", f"{left}@master")
    assert r.code == 0 and "queued in transaction" in r.err
    assert r.out.strip() == tusk.run("start", "commit", f"{right}@master").out.strip()
    new_repo = _n("later")
    tusk.ok("create", "repo", new_repo)
    assert "not found" in tusk.fails("inspect", "repo", new_repo)  # queued, not run yet
    info = tusk.ok("inspect", "transaction")
    assert f"ID: {txn}" in info and info.count("StartCommit") == 2 and "CreateRepo" in info
    assert [row[0] for row in _table(tusk.ok("list", "transaction"))] == [txn]
    out = tusk.ok("finish", "transaction")
    assert "3 request(s) applied" in out
    commit_set = out.strip().rsplit(" ", 1)[1]
    tusk.ok("inspect", "repo", new_repo)
    # The two commits started in the transaction share one ID: one job for both.
    for r in (left, right):
        tusk.ok("put", "file", f"{r}@{commit_set}:/x", "-f", "-", input=b"1\n")
        tusk.ok("finish", "commit", f"{r}@{commit_set}")
    waited = tusk.ok("wait", "job", commit_set)
    assert waited.count("ID: ") == 1 and "State: success" in waited
    assert tusk.ok("get", "file", f"{name}@{commit_set}:/n").strip() == "4"
    assert len(_table(tusk.ok("list", "job", "-p", name))) >= jobs_before + 1
    assert "no transaction" in tusk.fails("finish", "transaction", code=2)

    # A transaction left open changes nothing; deleting it discards its requests.
    txn2 = tusk.ok("start", "transaction").strip()
    tusk.ok("create", "repo", _n("never"))
    tusk.ok("stop", "transaction")
    assert [row[0] for row in _table(tusk.ok("list", "transaction"))] == [txn2]
    tusk.ok("resume", "transaction", txn2)
    tusk.ok("delete", "transaction")
    assert _table(tusk.ok("list", "transaction")) == []
    assert "not found" in tusk.fails("finish", "transaction", txn2)


def test_create_pipeline_from_a_url(tusk: Tusk, tmp_path: Path) -> None:
    import functools
    import http.server
    import threading

    src, name = _n("urlin"), _n("fromurl")
    tusk.ok("create", "repo", src)
    served = tmp_path / "served"
    served.mkdir()
    (served / "p.json").write_text(json.dumps(
        {"pipeline": {"name": name}, "input": {"pfs": {"repo": src, "glob": "/*"}},
         "transform": {"image": IMAGE, "cmd": ["true"]}}))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        tusk.ok("create", "pipeline", "-f", f"{base}/p.json")
        assert "HTTP 404" in tusk.fails("create", "pipeline", "-f", f"{base}/missing.json")
    finally:
        server.shutdown()
    assert name in tusk.ok("inspect", "pipeline", name)


def test_restart_datum_reruns_a_hung_datum(tusk: Tusk, tmp_path: Path) -> None:
    src, name = _n("hungin"), _n("hung")
    tusk.ok("create", "repo", src)
    put_files(tusk, src, {"a": b"1"}, tmp_path)
    # /tmp outlives a datum in the worker's container: the second run is quick.
    spec = {"pipeline": {"name": name}, "input": {"pfs": {"repo": src, "glob": "/*"}},
            "datumTries": 1,
            "transform": {"image": IMAGE, "cmd": ["sh", "-c",
                          "if [ -e /tmp/ran-once ]; then echo done > /pfs/out/a; "
                          "else touch /tmp/ran-once; sleep 600; fi"]}}
    tusk.ok("create", "pipeline", "-f", _spec_file(tmp_path, spec))
    import time as _time

    job = json.loads(tusk.ok("list", "job", "-p", name, "--raw").splitlines()[0])["job"]["id"]
    for _ in range(200):
        state = json.loads(tusk.ok("inspect", "job", f"{name}@{job}", "--raw"))["state"]
        if state == "JOB_RUNNING":
            break
        _time.sleep(0.05)
    assert "not found" in tusk.fails("restart", "datum", f"{name}@{job}", "/a,/b")
    # The job runs before its datum's container does: ask until the hung run
    # is killed and the second one has finished the job.
    restarted = False
    for _ in range(100):
        r = tusk.run("restart", "datum", f"{name}@{job}", "/a")
        if r.code != 0:
            assert "not running" in r.err, r.err
            break
        restarted = True
        _time.sleep(0.2)
    assert restarted
    done = block(tusk.ok("wait", "job", f"{name}@{job}"))
    assert done["State"] == "success", done
    assert tusk.ok("get", "file", f"{name}@master:/a") == "done\n"
    assert "not running" in tusk.fails("restart", "datum", f"{name}@{job}", "/a")


def test_a_transaction_with_a_bad_request_changes_nothing(tusk: Tusk, tmp_path: Path) -> None:
    good, made_in_txn, name = _n("good"), _n("fresh"), _n("piped")
    txn = tusk.ok("start", "transaction").strip()
    try:
        tusk.ok("create", "repo", good)
        tusk.ok("create", "repo", made_in_txn)
        spec = {"pipeline": {"name": name},  # reads a repo made earlier in the transaction
                "input": {"pfs": {"repo": made_in_txn, "glob": "/*"}},
                "transform": {"image": IMAGE, "cmd": ["true"]}}
        tusk.ok("create", "pipeline", "-f", _spec_file(tmp_path, spec))
        # A dry run changes nothing, so it runs at once (here: the repo is not made yet).
        err = tusk.fails("create", "pipeline", "--dry-run", "-f", _spec_file(tmp_path, spec))
        assert f"input repo {made_in_txn}" in err
        tusk.ok("start", "commit", "no-such-repo@master")
        err = tusk.fails("finish", "transaction")
        assert "was not applied, nothing changed: its request 4 (StartCommit)" in err
        assert "repo no-such-repo not found" in err
    finally:
        tusk.run("stop", "transaction")
    for repo in (good, made_in_txn):
        assert "not found" in tusk.fails("inspect", "repo", repo)
    assert txn in [row[0] for row in _table(tusk.ok("list", "transaction"))]
    tusk.ok("delete", "transaction", txn)

    # The same requests without the bad one apply, the pipeline included.
    tusk.ok("start", "transaction")
    tusk.ok("create", "repo", made_in_txn)
    tusk.ok("create", "pipeline", "-f", _spec_file(tmp_path, spec))
    assert "2 request(s) applied" in tusk.ok("finish", "transaction")
    assert name in tusk.ok("inspect", "pipeline", name)
