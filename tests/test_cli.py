"""End-to-end tests of the ``tusk`` command line, run as a user runs it.

A real ``tusk daemon`` (subprocess, free port, temporary data dir) serves the
whole module; every command is a separate ``tusk`` process with
``TUSK_ADDRESS`` set. Each test uses its own repo names, so tests don't
interfere. The behaviours pinned here are pachctl's (pachyderm-reference.md
3.3) plus tusk's exit-code table (``cli/main.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

TUSK = [shutil.which("tusk")] if shutil.which("tusk") else [sys.executable, "-m", "tusk.entry"]
ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(address: str, config: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["TUSK_ADDRESS"] = address
    # The CLI's config (the active transaction) per daemon, never the user's own.
    env["TUSK_CONFIG"] = config or os.path.join(
        tempfile.gettempdir(), f"tusk-test-config-{address.replace(':', '-')}.json")
    # The URL test serves files on 127.0.0.1: never route that through a proxy.
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@dataclass
class Result:
    code: int
    out: str
    err: str
    raw: bytes


class Tusk:
    """Runs ``tusk`` commands against one daemon."""

    def __init__(self, address: str) -> None:
        self.address = address

    def run(
        self, *args: str, input: bytes | None = None, cwd: Path | None = None, timeout: float = 60
    ) -> Result:
        p = subprocess.run(
            [*TUSK, *args],
            input=input,
            capture_output=True,
            check=False,
            env=_env(self.address),
            cwd=cwd,
            timeout=timeout,
        )
        return Result(p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(), p.stdout)

    def ok(self, *args: str, input: bytes | None = None, cwd: Path | None = None) -> str:
        r = self.run(*args, input=input, cwd=cwd)
        assert r.code == 0, f"tusk {' '.join(args)} failed ({r.code}): {r.err}"
        return r.out

    def fails(self, *args: str, input: bytes | None = None, code: int = 1) -> str:
        """Run a command that must fail with ``code`` and one ``error:`` line; return it."""
        r = self.run(*args, input=input)
        assert r.code == code, f"expected exit {code}, got {r.code}: {r.out!r} {r.err!r}"
        lines = r.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), r.err
        return lines[0]


@pytest.fixture(scope="module")
def tusk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tusk]:
    data = tmp_path_factory.mktemp("daemon")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    log_path = data / "daemon.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*TUSK, "daemon", "--data-dir", str(data / "data"), "--address", address],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_env(address),
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"daemon exited: {log_path.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("daemon did not start listening within 30 s")
                time.sleep(0.05)
        yield Tusk(address)
    finally:
        # Only the process this fixture started, by its PID.
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def repo(tusk: Tusk) -> str:
    name = "r" + uuid.uuid4().hex[:10]
    tusk.ok("create", "repo", name)
    return name


def _lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.strip()]


def _table(out: str) -> list[list[str]]:
    """Rows of a table (header dropped), split on runs of 2+ spaces."""
    import re

    return [re.split(r"\s{2,}", line.strip()) for line in _lines(out)[1:]]


# --- repos and branches --------------------------------------------------------


def test_repo_lifecycle(tusk: Tusk) -> None:
    name = "r" + uuid.uuid4().hex[:10]
    tusk.ok("create", "repo", name, "-d", "first")
    out = tusk.ok("list", "repo")
    assert _lines(out)[0].split() == ["NAME", "CREATED", "SIZE", "(MASTER)", "DESCRIPTION"]
    row = next(r for r in _table(out) if r[0] == name)
    assert row[-1] == "first" and row[1].endswith("ago")
    tusk.ok("update", "repo", name, "-d", "second")
    info = tusk.ok("inspect", "repo", name)
    assert f"Name: {name}" in info and "Description: second" in info
    # plural synonym
    assert name in tusk.ok("list", "repos")
    err = tusk.fails("create", "repo", name)
    assert "already exists" in err
    tusk.ok("delete", "repo", name)
    err = tusk.fails("inspect", "repo", name)
    assert "not found" in err


def test_raw_json_and_yaml(tusk: Tusk, repo: str) -> None:
    out = tusk.ok("inspect", "repo", repo, "--raw")
    msg = json.loads(out)
    assert msg["repo"]["name"] == repo
    docs = list(yaml.safe_load_all(tusk.ok("list", "repo", "--raw", "-o", "yaml")))
    assert repo in [d["repo"]["name"] for d in docs]
    # one JSON object per line
    for line in _lines(tusk.ok("list", "repo", "--raw")):
        assert "repo" in json.loads(line)


def test_output_flag_needs_raw(tusk: Tusk, repo: str) -> None:
    err = tusk.fails("list", "repo", "-o", "yaml", code=2)
    assert err == "error: cannot set --output (-o) without --raw"


def test_branches(tusk: Tusk, repo: str) -> None:
    tusk.ok("put", "file", f"{repo}@master:/a", "-f", "-", input=b"a")
    head = json.loads(tusk.ok("inspect", "commit", f"{repo}@master", "--raw"))["commit"]["id"]
    tusk.ok("create", "branch", f"{repo}@dev", "--head", "master")
    out = tusk.ok("list", "branch", repo)
    assert _lines(out)[0].split() == ["BRANCH", "HEAD"]
    assert ["dev", head] in _table(out) and ["master", head] in _table(out)
    assert f"Head Commit: {repo}@{head}" in tusk.ok("inspect", "branch", f"{repo}@dev")
    tusk.ok("delete", "branch", f"{repo}@dev")
    assert "dev" not in [r[0] for r in _table(tusk.ok("list", "branches", repo))]


def test_branch_provenance(tusk: Tusk, repo: str) -> None:
    other = repo + "out"
    tusk.ok("create", "repo", other)
    tusk.ok("create", "branch", f"{repo}@master")
    tusk.ok("create", "branch", f"{other}@master", "-p", f"{repo}@master")
    info = tusk.ok("inspect", "branch", f"{other}@master")
    assert f"{repo}@master" in info


# --- commits -------------------------------------------------------------------


def test_start_put_stdin_finish_list(tusk: Tusk, repo: str) -> None:
    commit = tusk.ok("start", "commit", f"{repo}@master").strip()
    assert len(commit) == 32 and int(commit, 16) >= 0
    tusk.ok("put", "file", f"{repo}@{commit}:/file", "-f", "-", input=b"x\n")
    tusk.ok("finish", "commit", f"{repo}@{commit}")
    out = tusk.ok("list", "commit", repo)
    assert _lines(out)[0].split() == [
        "REPO",
        "BRANCH",
        "COMMIT",
        "FINISHED",
        "SIZE",
        "ORIGIN",
        "DESCRIPTION",
    ]
    assert commit in out
    assert tusk.run("get", "file", f"{repo}@master:/file").raw == b"x\n"


def test_commit_messages_and_inspect(tusk: Tusk, repo: str) -> None:
    c = tusk.ok("start", "commit", f"{repo}@master", "-m", "hello").strip()
    tusk.ok("finish", "commit", f"{repo}@master", "-m", "bye")
    info = tusk.ok("inspect", "commit", f"{repo}@{c}")
    assert f"Commit: {repo}@{c}" in info
    assert "Original Branch: master" in info
    assert "Description: bye" in info
    for key in ("Parent:", "Started:", "Finished:", "Size:"):
        assert key in info


def test_ancestry(tusk: Tusk, repo: str) -> None:
    ids = []
    for i in range(3):
        tusk.ok("put", "file", f"{repo}@master:/f", "-f", "-", input=f"v{i}".encode())
        ids.append(
            json.loads(tusk.ok("inspect", "commit", f"{repo}@master", "--raw"))["commit"]["id"]
        )
    assert tusk.run("get", "file", f"{repo}@master^:/f").raw == b"v1"
    assert tusk.run("get", "file", f"{repo}@master^^:/f").raw == b"v0"
    assert tusk.run("get", "file", f"{repo}@master~2:/f").raw == b"v0"
    assert tusk.run("get", "file", f"{repo}@master.3:/f").raw == b"v2"

    def commit_id(ref: str) -> str:
        return str(
            json.loads(tusk.ok("inspect", "commit", f"{repo}@{ref}", "--raw"))["commit"]["id"]
        )

    assert commit_id("master^") == ids[1]
    assert commit_id("master^2") == ids[0]
    assert commit_id(f"master={ids[2]}") == ids[2]
    # list commit walks back from a ref, newest first
    out = tusk.ok("list", "commit", f"{repo}@master^", "--raw")
    listed = [json.loads(line)["commit"]["id"] for line in _lines(out)]
    assert listed[:2] == [ids[1], ids[0]]
    assert len(_lines(tusk.ok("list", "commit", f"{repo}@master", "-n", "2", "--raw"))) == 2


def test_malformed_ref_is_a_usage_error(tusk: Tusk) -> None:
    err = tusk.fails("inspect", "commit", "a@@b", code=2)
    assert err == 'error: invalid commit reference "a@@b": expected REPO@BRANCH-OR-COMMIT'


def test_wait_commit_blocks_until_finished(tusk: Tusk, repo: str) -> None:
    c = tusk.ok("start", "commit", f"{repo}@master").strip()
    waiter = subprocess.Popen(
        [*TUSK, "wait", "commit", f"{repo}@{c}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(tusk.address),
    )
    try:
        time.sleep(0.5)
        assert waiter.poll() is None, "wait commit returned before the commit finished"
        tusk.ok("finish", "commit", f"{repo}@{c}")
        out, err = waiter.communicate(timeout=30)
    finally:
        if waiter.poll() is None:
            os.kill(waiter.pid, signal.SIGKILL)
            waiter.wait()
    assert waiter.returncode == 0, err
    assert f"Commit: {repo}@{c}" in out.decode()
    assert "Finished:" in out.decode()


def test_subscribe_commit_streams_ids(tusk: Tusk, repo: str) -> None:
    tusk.ok("put", "file", f"{repo}@master:/a", "-f", "-", input=b"1")
    first = json.loads(tusk.ok("inspect", "commit", f"{repo}@master", "--raw"))["commit"]["id"]
    sub = subprocess.Popen(
        [*TUSK, "subscribe", "commit", f"{repo}@master"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(tusk.address),
    )
    try:
        assert sub.stdout is not None
        got = [sub.stdout.readline().decode().strip()]
        tusk.ok("put", "file", f"{repo}@master:/b", "-f", "-", input=b"2")
        got.append(sub.stdout.readline().decode().strip())
        second = json.loads(tusk.ok("inspect", "commit", f"{repo}@master", "--raw"))["commit"]["id"]
        assert first in got and second in got
        sub.send_signal(signal.SIGINT)  # Ctrl-C ends a subscription cleanly
        assert sub.wait(timeout=10) == 0
    finally:
        if sub.poll() is None:
            os.kill(sub.pid, signal.SIGKILL)
            sub.wait()


def test_delete_commit(tusk: Tusk, repo: str) -> None:
    tusk.ok("put", "file", f"{repo}@master:/a", "-f", "-", input=b"1")
    first = json.loads(tusk.ok("inspect", "commit", f"{repo}@master", "--raw"))["commit"]["id"]
    tusk.ok("put", "file", f"{repo}@master:/b", "-f", "-", input=b"2")
    err = tusk.fails("delete", "commit", f"{repo}@{first}")
    assert "children" in err
    tusk.ok("delete", "commit", f"{repo}@master")
    assert (
        json.loads(tusk.ok("inspect", "commit", f"{repo}@master", "--raw"))["commit"]["id"] == first
    )


def test_list_commit_sets(tusk: Tusk, repo: str) -> None:
    tusk.ok("put", "file", f"{repo}@master:/a", "-f", "-", input=b"1")
    c = json.loads(tusk.ok("inspect", "commit", f"{repo}@master", "--raw"))["commit"]["id"]
    out = tusk.ok("list", "commit")
    assert _lines(out)[0].split() == ["ID", "SUBCOMMITS", "PROGRESS", "CREATED", "MODIFIED"]
    assert c in out
    assert c in tusk.ok("list", "commit", c)


# --- put file ------------------------------------------------------------------


def _names(tusk: Tusk, ref: str) -> list[str]:
    return [
        json.loads(line)["file"]["path"] for line in _lines(tusk.ok("glob", "file", ref, "--raw"))
    ]


def test_put_file_target_paths(tusk: Tusk, repo: str, tmp_path: Path) -> None:
    nested = tmp_path / "abs" / "nested" / "dir"
    nested.mkdir(parents=True)
    src = nested / "testfile.txt"
    src.write_bytes(b"data")
    tusk.ok("put", "file", f"{repo}@master", "-f", str(src))
    tusk.ok("put", "file", f"{repo}@master", "-f", str(src), "--full-path")
    tusk.ok("put", "file", f"{repo}@master:dir/", "-f", str(src))
    tusk.ok("put", "file", f"{repo}@master:/a/b.txt", "-f", str(src))
    files = _names(tusk, f"{repo}@master:/**")
    assert "/testfile.txt" in files
    assert str(src) in files  # --full-path
    assert "/dir/testfile.txt" in files
    assert "/a/b.txt" in files


def test_put_file_recursive_puts_contents_under_the_target(
    tusk: Tusk, repo: str, tmp_path: Path
) -> None:
    d = tmp_path / "dir"
    (d / "sub").mkdir(parents=True)
    (d / "one").write_bytes(b"1")
    (d / "sub" / "two").write_bytes(b"22")
    tusk.ok("put", "file", "-r", f"{repo}@master:/", "-f", str(d))
    assert sorted(n for n in _names(tusk, f"{repo}@master:/**") if not n.endswith("/")) == [
        "/one",
        "/sub/two",
    ]
    err = tusk.fails("put", "file", f"{repo}@master:/x", "-f", str(d))
    assert "use -r" in err


def test_several_sources_make_one_commit(tusk: Tusk, repo: str, tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / name).write_bytes(name.encode())
    tusk.ok(
        "put",
        "file",
        f"{repo}@master:/pre",
        "-f",
        str(tmp_path / "a"),
        "-f",
        str(tmp_path / "b"),
        "-f",
        str(tmp_path / "c"),
    )
    files = _names(tusk, f"{repo}@master:/pre/*")
    assert files == ["/pre/a", "/pre/b", "/pre/c"]
    assert len(_lines(tusk.ok("list", "commit", f"{repo}@master", "--raw"))) <= 2  # + empty head
    user = _lines(tusk.ok("list", "commit", f"{repo}@master", "--origin", "USER", "--raw"))
    assert len(user) == 1


def test_put_file_append(tusk: Tusk, repo: str) -> None:
    tusk.ok("put", "file", f"{repo}@master:/f", "-f", "-", input=b"foo\n")
    tusk.ok("put", "file", f"{repo}@master:/f", "-a", "-f", "-", input=b"bar\n")
    assert tusk.run("get", "file", f"{repo}@master:/f").raw == b"foo\nbar\n"
    tusk.ok("put", "file", f"{repo}@master:/f", "-f", "-", input=b"new")
    assert tusk.run("get", "file", f"{repo}@master:/f").raw == b"new"


def test_stdin_needs_a_filename(tusk: Tusk, repo: str) -> None:
    err = tusk.fails("put", "file", f"{repo}@master", "-f", "-", input=b"x", code=2)
    assert "must specify filename when reading data from stdin" in err


def test_put_on_a_missing_repo_fails_before_uploading(tusk: Tusk, tmp_path: Path) -> None:
    src = tmp_path / "big"
    src.write_bytes(b"x" * 1024)
    err = tusk.fails("put", "file", "nosuchrepo123@master:/f", "-f", str(src))
    assert "not found" in err


def test_put_missing_local_file(tusk: Tusk, repo: str, tmp_path: Path) -> None:
    err = tusk.fails("put", "file", f"{repo}@master", "-f", str(tmp_path / "nope"))
    assert "no such file" in err


# --- get / list / inspect / glob ----------------------------------------------------


def test_get_file_binary_offset_and_output(tusk: Tusk, repo: str, tmp_path: Path) -> None:
    data = bytes(range(256)) * 100
    tusk.ok("put", "file", f"{repo}@master:/bin", "-f", "-", input=data)
    assert tusk.run("get", "file", f"{repo}@master:/bin").raw == data
    assert tusk.run("get", "file", f"{repo}@master:/bin", "--offset", "10").raw == data[10:]
    tusk.ok("get", "file", f"{repo}@master:/bin", "-o", str(tmp_path / "out"))
    assert (tmp_path / "out").read_bytes() == data


def test_get_file_errors(tusk: Tusk, repo: str) -> None:
    tusk.ok("put", "file", f"{repo}@master:/dir/a", "-f", "-", input=b"a")
    tusk.ok("put", "file", f"{repo}@master:/dir/b", "-f", "-", input=b"b")
    assert "not found" in tusk.fails("get", "file", f"{repo}@bad:/foo")
    assert "not found" in tusk.fails("get", "file", f"{repo}@master:/bad")
    assert "Try again with the -r flag" in tusk.fails("get", "file", f"{repo}@master:/dir")
    assert "Try again with the -r flag" in tusk.fails("get", "file", f"{repo}@master:/dir/*")


def test_get_file_tree_round_trip(tusk: Tusk, repo: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = {"a.txt": b"A", "x/b.bin": bytes(range(256)), "x/y/z": b"", "x/y/w": b"w" * 5000}
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    tusk.ok("put", "file", "-r", f"{repo}@master:/tree", "-f", str(src))
    out = tmp_path / "out"
    tusk.ok("get", "file", "-r", f"{repo}@master:/tree", "-o", str(out))
    got = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert got == files


def test_list_inspect_glob_file(tusk: Tusk, repo: str) -> None:
    tusk.ok("put", "file", f"{repo}@master:/dir/a", "-f", "-", input=b"aaaa")
    tusk.ok("put", "file", f"{repo}@master:/top", "-f", "-", input=b"t")
    out = tusk.ok("list", "file", f"{repo}@master")
    assert _lines(out)[0].split() == ["NAME", "TYPE", "SIZE"]
    assert _table(out) == [["/dir/", "dir", "4 B"], ["/top", "file", "1 B"]]
    assert _table(tusk.ok("list", "file", f"{repo}@master:/dir")) == [["/dir/a", "file", "4 B"]]
    info = tusk.ok("inspect", "file", f"{repo}@master:/dir/a")
    assert "Path: /dir/a" in info and "Type: file" in info and "Size: 4 B" in info
    assert [r[0] for r in _table(tusk.ok("glob", "file", f"{repo}@master:/*"))] == ["/dir/", "/top"]


# --- diff / delete / copy ---------------------------------------------------------


def test_diff_file_shows_the_old_content(tusk: Tusk, repo: str) -> None:
    tusk.ok("put", "file", f"{repo}@master:/data", "-f", "-", input=b"foo\n")
    tusk.ok("put", "file", f"{repo}@master:/data", "-f", "-", input=b"bar\n")
    out = tusk.ok("diff", "file", f"{repo}@master:/data", f"{repo}@master^:/data")
    assert "-foo" in out and "+bar" in out
    assert _lines(out)[0].split() == ["OP", "SIZE", "NAME"]
    names = tusk.ok("diff", "file", f"{repo}@master:/data", f"{repo}@master^:/data", "--name-only")
    assert "/data" in names and "-foo" not in names


def test_delete_file_and_directory(tusk: Tusk, repo: str) -> None:
    for p in ("/dir/a", "/dir/sub/b", "/keep"):
        tusk.ok("put", "file", f"{repo}@master:{p}", "-f", "-", input=b"x")
    tusk.ok("delete", "file", f"{repo}@master:/keep")
    err = tusk.fails("delete", "file", f"{repo}@master:/dir")
    assert "-r" in err
    tusk.ok("delete", "file", "-r", f"{repo}@master:/dir")
    assert _table(tusk.ok("list", "file", f"{repo}@master")) == []
    # deleting a missing path is a no-op, as in pachctl
    tusk.ok("delete", "file", f"{repo}@master:/nothing")


def test_copy_file(tusk: Tusk, repo: str) -> None:
    other = repo + "b"
    tusk.ok("create", "repo", other)
    tusk.ok("put", "file", f"{repo}@master:/files/0", "-f", "-", input=b"zero")
    tusk.ok("put", "file", f"{repo}@master:/files/1", "-f", "-", input=b"one")
    tusk.ok("copy", "file", f"{repo}@master:/files/0", f"{repo}@master:/file0")
    assert tusk.run("get", "file", f"{repo}@master:/file0").raw == b"zero"
    tusk.ok("copy", "file", f"{repo}@master:/files", f"{other}@master:/all")
    assert tusk.run("get", "file", f"{other}@master:/all/1").raw == b"one"
    tusk.ok("copy", "file", "-a", f"{repo}@master:/files/1", f"{repo}@master:/file0")
    assert tusk.run("get", "file", f"{repo}@master:/file0").raw == b"zeroone"


# --- process-level behaviour ---------------------------------------------------------


def test_no_daemon_fails_fast_with_a_hint(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens here
    start = time.monotonic()
    p = subprocess.run(
        [*TUSK, "list", "repo"],
        capture_output=True,
        check=False,
        env=_env(f"127.0.0.1:{port}"),
        timeout=30,
    )
    elapsed = time.monotonic() - start
    err = p.stderr.decode().strip()
    assert p.returncode == 3, err
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert "tusk daemon" in err
    assert elapsed < 5, f"took {elapsed:.1f} s"


def test_usage_errors_exit_2(tusk: Tusk) -> None:
    assert "invalid choice" in tusk.fails("frobnicate", "repo", code=2)
    assert "required" in tusk.fails("create", "repo", code=2)
    assert tusk.run("list").code == 2  # no noun: help on stderr


def test_version(tusk: Tusk) -> None:
    out = tusk.ok("version")
    assert out.split()[:2] == ["COMPONENT", "VERSION"] and "tusk" in out


def test_put_file_from_an_http_url(tusk: Tusk, repo: str, tmp_path: Path) -> None:
    import functools
    import http.server
    import threading

    (tmp_path / "liberty.png").write_bytes(b"\x89PNG" + bytes(range(256)) * 40)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/liberty.png"
        tusk.ok("put", "file", f"{repo}@master", "-f", url)
        tusk.ok("put", "file", f"{repo}@master:/img/x.png", "-f", url)
        missing = f"http://127.0.0.1:{server.server_address[1]}/nope.png"
        assert "cannot download" in tusk.fails("put", "file", f"{repo}@master:/n", "-f", missing)
    finally:
        server.shutdown()
        server.server_close()
    data = (tmp_path / "liberty.png").read_bytes()
    assert tusk.run("get", "file", f"{repo}@master:/liberty.png").raw == data
    assert tusk.run("get", "file", f"{repo}@master:/img/x.png").raw == data
    assert "/n" not in _names(tusk, f"{repo}@master:/*")  # the failed put left nothing


def test_subscribe_from_and_raw(tusk: Tusk, repo: str) -> None:
    for i in range(3):
        tusk.ok("put", "file", f"{repo}@master:/f", "-f", "-", input=str(i).encode())
    ids = [
        json.loads(line)["commit"]["id"]
        for line in _lines(tusk.ok("list", "commit", f"{repo}@master", "--raw"))
    ][::-1]
    sub = subprocess.Popen(
        [*TUSK, "subscribe", "commit", f"{repo}@master", "--from", ids[1], "--raw"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(tusk.address),
    )
    try:
        assert sub.stdout is not None
        first = json.loads(sub.stdout.readline())
        # --from: the stream starts at (or right after) the given commit, never before it
        assert first["commit"]["id"] in ids[1:]
        sub.send_signal(signal.SIGINT)
        assert sub.wait(timeout=10) == 0
    finally:
        if sub.poll() is None:
            os.kill(sub.pid, signal.SIGKILL)
            sub.wait()


def test_wait_commit_set_and_full_timestamps(tusk: Tusk, repo: str) -> None:
    c = tusk.ok("start", "commit", f"{repo}@master").strip()
    tusk.ok("finish", "commit", f"{repo}@{c}")
    out = tusk.ok("wait", "commit", c)
    assert _lines(out)[0].split()[0] == "REPO" and c in out
    info = tusk.ok("inspect", "commit", f"{repo}@{c}", "--full-timestamps")
    started = next(line for line in info.splitlines() if line.startswith("Started:"))
    assert "ago" not in started and started.split()[1].count("-") == 2


def test_get_file_recursive_glob(tusk: Tusk, repo: str, tmp_path: Path) -> None:
    for p in ("/d1/a", "/d2/b", "/other"):
        tusk.ok("put", "file", f"{repo}@master:{p}", "-f", "-", input=p.encode())
    out = tmp_path / "out"
    tusk.ok("get", "file", "-r", f"{repo}@master:/d*", "-o", str(out))
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert got == ["d1/a", "d2/b"]
    assert "add -o DIR" in tusk.fails("get", "file", "-r", f"{repo}@master:/d1", code=2)


def test_address_flag_overrides_the_environment(tusk: Tusk, repo: str) -> None:
    closed = Tusk(f"127.0.0.1:{_free_port()}")  # TUSK_ADDRESS points nowhere
    assert repo in closed.ok("list", "repo", "--address", tusk.address)
    assert repo in closed.ok("--address", tusk.address, "list", "repo")
    closed.fails("list", "repo", code=3)
