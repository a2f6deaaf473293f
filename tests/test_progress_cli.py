# ruff: noqa: F811  (pytest fixtures imported from other test modules are parameters here)
"""Progress bars of ``put file``, ``get file``, ``wait job`` and ``wait commit``.

The rule pinned: a bar (rich's, with escape codes) only on a terminal, and
never a byte of it on a pipe or in ``--raw`` output; ``--progress`` forces a
bar on a terminal and the plain lines elsewhere; ``--no-progress`` silences.
End-to-end tests run ``tusk`` with stderr on a pseudo-terminal (``pty``)
against a real daemon (``tests/test_cli.py``'s fixture); the pipeline tests
run a real job in Docker. The unit tests drive ``cli/progress.py`` with a
stream that says it is a terminal.
"""

from __future__ import annotations

import io
import json
import os
import pty
import re
import struct
import subprocess
import termios
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from fcntl import ioctl
from pathlib import Path

import pytest

from cli import progress
from tests.test_cli import TUSK, Tusk, _env, tusk  # noqa: F401
from tests.test_pps_cli import IMAGE, busybox_image, create, put_files  # noqa: F401

#: Any escape sequence (CSI, or a bare ESC): none may reach a pipe.
ESC = "\x1b"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class PtyRun:
    code: int
    tty: str       # what was written to the terminal (stderr), escape codes removed
    tty_raw: str   # the same with escape codes
    out: bytes     # stdout, a pipe


def run_on_tty(t: Tusk, *args: str, extra_env: dict[str, str] | None = None,
               stdout_on_tty: bool = False, timeout: float = 120,
               after_start: Callable[[Callable[[], str]], None] | None = None) -> PtyRun:
    """Run ``tusk ARGS`` with stderr (and stdout if asked) on a new pseudo-terminal.

    ``after_start(seen)`` runs while the command does; ``seen()`` is what the
    terminal got so far (escape codes removed).
    """
    master, slave = pty.openpty()
    # A wide terminal, so rich lays the whole bar out on one line.
    ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    env = {**_env(t.address), "TERM": "xterm-256color", **(extra_env or {})}
    env.pop("COLUMNS", None)
    proc = subprocess.Popen([*TUSK, *args], stdin=subprocess.DEVNULL,
                            stdout=slave if stdout_on_tty else subprocess.PIPE,
                            stderr=slave, env=env)
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every copy of the terminal's other end is closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    if after_start is not None:
        after_start(lambda: _ANSI.sub("", b"".join(chunks).decode(errors="replace")))
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    os.close(master)
    raw = b"".join(chunks).decode(errors="replace")
    return PtyRun(proc.returncode, _ANSI.sub("", raw), raw, out or b"")


@pytest.fixture
def repo(tusk: Tusk) -> str:
    name = "pg" + uuid.uuid4().hex[:8]
    tusk.ok("create", "repo", name)
    return name


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 MiB of random bytes: past the 8 MiB at which a known total shows a bar."""
    path = tmp_path_factory.mktemp("big") / "big.bin"
    path.write_bytes(os.urandom(20 << 20))
    return path


# --- put file and get file on a terminal, and on pipes ---------------------------------


def test_put_file_of_a_big_file_draws_a_bar_on_a_terminal(
        tusk: Tusk, repo: str, big: Path) -> None:
    r = run_on_tty(tusk, "put", "file", f"{repo}@master:/big.bin", "-f", str(big))
    assert r.code == 0, r.tty
    assert ESC in r.tty_raw, r.tty_raw              # drawn, not printed as lines
    assert "put file" in r.tty and "21.0/21.0 MB" in r.tty and "1/1 files" in r.tty, r.tty
    assert r.out == b""
    assert tusk.run("get", "file", f"{repo}@master:/big.bin").raw == big.read_bytes()


def test_many_small_files_draw_a_bar_too(tusk: Tusk, repo: str, tmp_path: Path) -> None:
    for i in range(12):
        (tmp_path / f"f{i:02}.txt").write_bytes(b"x%d\n" % i)
    r = run_on_tty(tusk, "put", "file", "-r", f"{repo}@master:/d", "-f", str(tmp_path))
    assert r.code == 0, r.tty
    assert "12/12 files" in r.tty, r.tty


def test_a_small_quick_put_draws_nothing(tusk: Tusk, repo: str, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"a\n")
    r = run_on_tty(tusk, "put", "file", f"{repo}@master:/a.txt", "-f", str(tmp_path / "a.txt"))
    assert r.code == 0, r.tty
    assert r.tty_raw == ""


def test_get_file_to_a_pipe_stays_byte_identical_while_the_terminal_shows_the_bar(
        tusk: Tusk, repo: str, big: Path) -> None:
    tusk.ok("put", "file", f"{repo}@master:/big.bin", "-f", str(big))
    r = run_on_tty(tusk, "get", "file", f"{repo}@master:/big.bin")
    assert r.code == 0, r.tty
    assert r.out == big.read_bytes()
    assert "get file" in r.tty and "21.0/21.0 MB" in r.tty, r.tty


def test_get_file_into_a_local_file_and_a_directory(
        tusk: Tusk, repo: str, big: Path, tmp_path: Path) -> None:
    tusk.ok("put", "file", f"{repo}@master:/d/big.bin", "-f", str(big))
    tusk.ok("put", "file", f"{repo}@master:/d/small.txt", "-f", "-", input=b"s\n")
    r = run_on_tty(tusk, "get", "file", f"{repo}@master:/d/big.bin", "-o", str(tmp_path / "one"))
    assert r.code == 0 and "21.0/21.0 MB" in r.tty, r.tty
    assert (tmp_path / "one").read_bytes() == big.read_bytes()
    # A directory: its size is the total; files are counted as they come.
    r = run_on_tty(tusk, "get", "file", "-r", f"{repo}@master:/d", "-o", str(tmp_path / "dir"))
    assert r.code == 0 and "2 files" in r.tty and "21.0/21.0 MB" in r.tty, r.tty
    assert (tmp_path / "dir" / "big.bin").read_bytes() == big.read_bytes()


def test_piped_stderr_gets_no_bar_and_no_escape_codes(
        tusk: Tusk, repo: str, big: Path) -> None:
    # FORCE_COLOR makes rich itself draw on pipes: the terminal test is tusk's own.
    env = {"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"}
    for args in (["put", "file", f"{repo}@master:/big.bin", "-f", str(big)],
                 ["get", "file", f"{repo}@master:/big.bin"]):
        p = subprocess.run([*TUSK, *args], capture_output=True, check=False,
                           env={**_env(tusk.address), **env}, timeout=120)
        assert p.returncode == 0, p.stderr
        assert p.stderr == b"", p.stderr
        if args[0] == "get":
            assert p.stdout == big.read_bytes()


def test_progress_without_a_terminal_prints_plain_lines(
        tusk: Tusk, repo: str, big: Path) -> None:
    r = tusk.run("put", "file", f"{repo}@master:/big.bin", "-f", str(big), "--progress")
    assert r.code == 0, r.err
    assert ESC not in r.err
    assert r.err.splitlines()[-1].startswith("put file: 1 file, 20 MiB ("), r.err
    r = tusk.run("get", "file", f"{repo}@master:/big.bin", "--progress")
    assert r.code == 0 and r.raw == big.read_bytes()
    assert ESC not in r.err and r.err.splitlines()[-1].startswith("get file: 1 file, 20 MiB (")


def test_no_progress_silences_the_terminal(tusk: Tusk, repo: str, big: Path) -> None:
    r = run_on_tty(tusk, "put", "file", f"{repo}@master:/big.bin", "-f", str(big),
                   "--no-progress")
    assert r.code == 0 and r.tty_raw == "", r.tty_raw
    r = run_on_tty(tusk, "get", "file", f"{repo}@master:/big.bin", "--no-progress")
    assert r.code == 0 and r.tty_raw == "" and r.out == big.read_bytes()


def test_file_content_printed_on_the_terminal_gets_no_bar(
        tusk: Tusk, repo: str, tmp_path: Path) -> None:
    data = b"line\n" * (2 << 20)  # 10 MiB of text
    (tmp_path / "t.txt").write_bytes(data)
    tusk.ok("put", "file", f"{repo}@master:/t.txt", "-f", str(tmp_path / "t.txt"))
    r = run_on_tty(tusk, "get", "file", f"{repo}@master:/t.txt", stdout_on_tty=True)
    assert r.code == 0
    assert "get file" not in r.tty and ESC not in r.tty_raw


def test_wait_commit_of_a_user_commit_spins_until_it_is_finished(
        tusk: Tusk, repo: str) -> None:
    tusk.ok("start", "commit", f"{repo}@master")

    def finish_once_spinning(seen: Callable[[], str]) -> None:
        deadline = time.monotonic() + 30
        while f"wait commit {repo}@" not in seen():
            assert time.monotonic() < deadline, f"no spinner: {seen()!r}"
            time.sleep(0.02)
        tusk.ok("finish", "commit", f"{repo}@master")

    r = run_on_tty(tusk, "wait", "commit", f"{repo}@master", "--progress",
                   after_start=finish_once_spinning)
    assert r.code == 0, r.tty
    assert repo.encode() in r.out and ESC.encode() not in r.out, r.out


# --- a real job in Docker -----------------------------------------------------------------


@pytest.mark.docker
def test_wait_job_and_wait_commit_show_the_datums_of_a_real_job(
        tusk: Tusk, repo: str, tmp_path: Path, busybox_image: str) -> None:
    pipeline = "pp" + uuid.uuid4().hex[:8]
    put_files(tusk, repo, {f"f{i}.txt": b"x\n" for i in range(3)}, tmp_path)
    # Slow enough that the wait starts while the job runs; --progress forces
    # the bar anyway, so the test does not hang on timing.
    create(tusk, tmp_path, {
        "pipeline": {"name": pipeline},
        "transform": {"image": IMAGE, "cmd": ["sh", "-c", 'sleep 1; cp "$in" /pfs/out/']},
        "input": {"pfs": {"repo": repo, "glob": "/*", "name": "in"}},
    })
    # The output commit's wait shows its job's datums (most likely while it runs).
    r = run_on_tty(tusk, "wait", "commit", f"{pipeline}@master", "--progress")
    assert r.code == 0 and "3/3 datums success" in r.tty, r.tty
    assert pipeline.encode() in r.out and ESC.encode() not in r.out

    r = run_on_tty(tusk, "wait", "job", f"{pipeline}@master", "--progress")
    assert r.code == 0, r.tty
    assert f"{pipeline}@master" in r.tty and "3/3 datums success" in r.tty, r.tty
    assert b"success" in r.out and ESC.encode() not in r.out

    # --raw output gets no automatic bar, and stays one JSON object.
    r = run_on_tty(tusk, "wait", "job", f"{pipeline}@master", "--raw")
    assert r.code == 0 and r.tty_raw == "", r.tty_raw
    assert json.loads(r.out)["state"] == "JOB_SUCCESS"
    # Piped, with --progress: the plain line.
    p = tusk.run("wait", "job", f"{pipeline}@master", "--progress")
    assert p.code == 0 and ESC not in p.err
    assert f"{pipeline}@master: 3/3 datums success" in p.err, p.err


# --- cli/progress.py on its own -------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_choose_follows_the_flags_and_the_terminal() -> None:
    tty, pipe = _Terminal(), io.StringIO()
    assert progress.choose(None, tty) == "auto"
    assert progress.choose(None, tty, quiet=True) == "off"
    assert progress.choose(None, pipe) == "off"
    assert progress.choose(True, tty, quiet=True) == "bar"
    assert progress.choose(True, pipe) == "text"
    assert progress.choose(False, tty) == "off"


def test_auto_bars_wait_for_a_big_total_or_the_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = _Terminal()
    with progress.Transfer("put file", "auto", total_bytes=100, total_files=1, stream=tty) as t:
        t.advance(100)
        t.file_done("/a")
        assert not t.shown
    assert tty.getvalue() == ""
    with progress.Transfer("put file", "auto", total_bytes=progress.BIG_BYTES + 1,
                           stream=tty) as t:
        assert t.shown
    monkeypatch.setattr(progress, "DELAY", 0.01)
    with progress.Datums("p@master", "auto", stream=tty) as d:
        d.update(1, 4, "running")
        deadline = time.monotonic() + 10
        while not d.shown and time.monotonic() < deadline:
            time.sleep(0.01)
        assert d.shown
        d.update(4, 4, "success")
    assert "4/4 datums success" in _ANSI.sub("", tty.getvalue())


def test_off_writes_nothing_and_text_writes_lines() -> None:
    s = io.StringIO()
    with progress.Transfer("put file", "off", stream=s) as t:
        t.advance(10)
        t.file_done("/a")
    assert s.getvalue() == ""
    with progress.Datums("p@j", "text", stream=s) as d:
        d.update(0, 0, "starting")
        d.update(2, 2, "success")
    assert s.getvalue().splitlines()[-1].startswith("p@j: 2/2 datums success (")
    assert ESC not in s.getvalue()
