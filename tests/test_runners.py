"""Contract tests of the step runners, against a real Docker engine and real bubblewrap.

Every runner must pass the tests in ``TestContract``; the docker runner has more
(container reuse, memory limit, missing image, unreachable engine). A runner
whose backend is missing is skipped visibly, or fails when ``CI=true``.

    python -m pytest tests/test_runners.py -q -p no:cacheprovider
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from pps.runners import (
    OUTPUT_CAP,
    DatumRun,
    Runner,
    RunnerSpec,
    RunResult,
    Session,
    default_runner,
)
from pps.runners.docker import LABEL, SESSION_LABEL, DockerRunner, DockerSession
from pps.runners.process import ProcessRunner

REPO = Path(__file__).resolve().parent.parent
BUSYBOX = "tusk/busybox:latest"
#: Every container these tests create carries tusk.test=<this>, for cleanup.
TEST_LABEL = "tusk.test"
RUN_ID = uuid.uuid4().hex[:12]


def _unavailable(why: str) -> None:
    """Skip visibly, or fail when CI must have every backend."""
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def docker_runner() -> Iterator[DockerRunner]:
    runner = DockerRunner(labels={TEST_LABEL: RUN_ID})
    ok, why = runner.available()
    if not ok:
        _unavailable(f"no Docker engine: run deploy/services.sh up ({why})")
    build = subprocess.run(
        [str(REPO / "deploy/images/build.sh"), "busybox"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    yield runner
    # Whatever a failing test left behind.
    client = runner.client()
    for container in client.containers.list(all=True, filters={"label": f"{TEST_LABEL}={RUN_ID}"}):
        container.remove(force=True)


@pytest.fixture(scope="session")
def process_runner() -> ProcessRunner:
    runner = ProcessRunner()
    ok, why = runner.available()
    if not ok:
        _unavailable(f"no usable bubblewrap: {why}")
    return runner


@pytest.fixture(params=["docker", pytest.param("process")])
def runner(request: pytest.FixtureRequest) -> Runner:
    if request.param == "docker":
        request.applymarker(pytest.mark.docker)
        return request.getfixturevalue("docker_runner")  # type: ignore[no-any-return]
    return request.getfixturevalue("process_runner")  # type: ignore[no-any-return]


StartSession = Callable[..., Session]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Session]]:
    """start(runner, **spec fields) -> a session closed at teardown."""
    sessions: list[Session] = []

    def _start(runner: Runner, **spec: Any) -> Session:
        spec.setdefault("image", BUSYBOX)
        work = tmp_path / f"work{len(sessions)}"
        work.mkdir()
        session = runner.start(RunnerSpec(**spec), str(work))
        sessions.append(session)
        return session

    yield _start
    for session in sessions:
        session.close()


class Datums:
    """Builds DatumRuns with fresh output directories under tmp_path."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.count = 0

    def out(self) -> Path:
        self.count += 1
        return self.tmp / f"out{self.count}"

    def __call__(
        self,
        *cmd: str,
        stdin: bytes | None = None,
        env: dict[str, str] | None = None,
        inputs: dict[str, Path] | None = None,
        timeout: float | None = None,
    ) -> DatumRun:
        return DatumRun(
            cmd=cmd,
            stdin=stdin,
            env=env or {},
            inputs={k: str(v) for k, v in (inputs or {}).items()},
            out_dir=str(self.out()),
            timeout=timeout,
        )


@pytest.fixture
def datum(tmp_path: Path) -> Datums:
    return Datums(tmp_path)


def put_files(root: Path, files: dict[str, bytes]) -> Path:
    """Create ``files`` (relative path -> content) under ``root``; return root."""
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def sh(script: str) -> tuple[str, ...]:
    return ("sh", "-c", script)


def assert_ran(result: RunResult, code: int = 0) -> None:
    assert result.error == "", result
    assert result.exit_code == code, result


# -------------------------------------------- the contract: every runner


class TestContract:
    def test_argv_is_not_run_through_a_shell(
        self, runner: Runner, start: StartSession, datum: Datums
    ) -> None:
        s = start(runner)
        r = s.run(datum("echo", "$HOME", "a  b", "*", ";", "`id`"))
        assert_ran(r)
        assert r.stdout == b"$HOME a  b * ; `id`\n"

    def test_stdin_is_fed_and_empty_when_none(
        self, runner: Runner, start: StartSession, datum: Datums
    ) -> None:
        s = start(runner)
        payload = bytes(range(256)) * 1000
        r = s.run(datum("cat", stdin=payload))
        assert_ran(r)
        assert r.stdout == payload
        r = s.run(datum("cat"))
        assert_ran(r)
        assert r.stdout == b""

    def test_env_is_visible(self, runner: Runner, start: StartSession, datum: Datums) -> None:
        s = start(runner)
        env = {"PACH_JOB_ID": "j1", "PACH_DATUM_ID": "d 1 'q' $x", "my-repo": "/pfs/my-repo/a"}
        r = s.run(datum("env", env=env))
        assert_ran(r)
        lines = r.stdout.decode().splitlines()
        for key, value in env.items():
            assert f"{key}={value}" in lines
        assert any(line.startswith("PATH=") for line in lines)

    def test_inputs_are_visible_and_read_only(
        self, runner: Runner, start: StartSession, datum: Datums, tmp_path: Path
    ) -> None:
        images = put_files(tmp_path / "images", {"a/1.png": b"one", "b.png": b"two"})
        labels = put_files(tmp_path / "labels", {"x.txt": b"label"})
        s = start(runner)
        r = s.run(
            datum(
                *sh("cat /pfs/images/a/1.png /pfs/images/b.png /pfs/labels/x.txt"),
                inputs={"images": images, "labels": labels},
            )
        )
        assert_ran(r)
        assert r.stdout == b"onetwolabel"
        for attempt in (
            "echo x > /pfs/images/b.png",
            "touch /pfs/images/new",
            "rm /pfs/labels/x.txt",
            "mkdir /pfs/images/d",
            "touch /pfs/new",
        ):
            r = s.run(datum(*sh(attempt), inputs={"images": images, "labels": labels}))
            assert r.exit_code not in (0, None), (attempt, r)
            assert b"Read-only file system" in r.stderr, (attempt, r)
        assert (images / "b.png").read_bytes() == b"two"
        assert sorted(p.name for p in images.iterdir()) == ["a", "b.png"]
        assert (labels / "x.txt").read_bytes() == b"label"

    def test_inputs_do_not_outlive_their_datum(
        self, runner: Runner, start: StartSession, datum: Datums, tmp_path: Path
    ) -> None:
        data = put_files(tmp_path / "data", {"f": b"1"})
        s = start(runner)
        assert_ran(s.run(datum("cat", "/pfs/data/f", inputs={"data": data})))
        r = s.run(datum("ls", "/pfs/data"))
        assert r.exit_code != 0
        assert (data / "f").read_bytes() == b"1"
        # Also when the datum is killed (a runner may lend the directory itself).
        r = s.run(datum("sleep", "30", inputs={"data": data}, timeout=0.5))
        assert r.timed_out, r
        assert sorted(p.name for p in data.iterdir()) == ["f"]
        assert_ran(s.run(datum("cat", "/pfs/data/f", inputs={"data": data})))

    def test_output_is_collected_on_the_host(
        self, runner: Runner, start: StartSession, datum: Datums
    ) -> None:
        s = start(runner)
        d = datum(*sh("mkdir -p /pfs/out/dir && echo hi > /pfs/out/dir/f && echo top > /pfs/out/t"))
        assert_ran(s.run(d))
        out = Path(d.out_dir)
        assert (out / "dir/f").read_bytes() == b"hi\n"
        assert (out / "t").read_bytes() == b"top\n"
        # The next datum starts with an empty /pfs/out, and its output goes to its own dir.
        d2 = datum(*sh("ls -A /pfs/out; echo 2 > /pfs/out/second"))
        r = s.run(d2)
        assert_ran(r)
        assert r.stdout == b""
        assert sorted(os.listdir(d2.out_dir)) == ["second"]
        assert sorted(os.listdir(out)) == ["dir", "t"]

    def test_exit_codes_and_captured_streams(
        self, runner: Runner, start: StartSession, datum: Datums
    ) -> None:
        s = start(runner)
        r = s.run(datum(*sh("echo out; echo err >&2; exit 3")))
        assert_ran(r, 3)
        assert (r.stdout, r.stderr) == (b"out\n", b"err\n")
        assert_ran(s.run(datum("true")), 0)
        assert_ran(s.run(datum(*sh("exit 255"))), 255)

    def test_missing_command_exits_127(
        self, runner: Runner, start: StartSession, datum: Datums
    ) -> None:
        r = start(runner).run(datum("/no/such/command"))
        assert_ran(r, 127)
        assert r.stderr

    def test_output_keeps_the_tail_beyond_the_cap(
        self, runner: Runner, start: StartSession, datum: Datums
    ) -> None:
        r = start(runner).run(datum(*sh(f"head -c {OUTPUT_CAP + 5000} /dev/zero; echo END")))
        assert_ran(r)
        assert len(r.stdout) == OUTPUT_CAP
        assert r.stdout.endswith(b"\0END\n")

    def test_timeout_kills_the_datum_and_the_session_goes_on(
        self, runner: Runner, start: StartSession, datum: Datums
    ) -> None:
        s = start(runner)
        r = s.run(datum(*sh("echo started; sleep 30 & sleep 30"), timeout=0.5))
        assert r.timed_out and r.exit_code is None
        assert "timeout" in r.error
        assert r.duration < 15
        assert_ran(s.run(datum("echo", "next")))

    def test_interrupt_kills_the_running_datum_and_the_session_goes_on(
        self, runner: Runner, start: StartSession, datum: Datums
    ) -> None:
        """``restart datum``: interrupt() from another thread ends a hung datum."""
        import threading

        s = start(runner)
        s.interrupt()  # between datums: nothing to do, nothing breaks
        results: list[RunResult] = []
        t = threading.Thread(target=lambda: results.append(s.run(datum(*sh("sleep 600")))))
        t.start()
        deadline = time.monotonic() + 30
        while t.is_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
            s.interrupt()  # until the datum has started and is killed
        t.join(5)
        assert results, "the datum was not interrupted"
        assert not results[0].ok and results[0].duration < 30
        assert_ran(s.run(datum("echo", "next")))

    def test_working_dir_and_user(self, runner: Runner, start: StartSession, datum: Datums) -> None:
        s = start(runner, working_dir="/work", user="65534")
        r = s.run(datum(*sh("pwd; id -u; echo x > /pfs/out/by-nobody")))
        assert_ran(r)
        assert r.stdout.decode().split() == ["/work", "65534"]

    def test_output_dir_must_be_empty(
        self, runner: Runner, start: StartSession, datum: Datums
    ) -> None:
        s = start(runner)
        d = datum(*sh("echo new > /pfs/out/new"))
        put_files(Path(d.out_dir), {"old": b"old"})
        r = s.run(d)
        assert r.exit_code is None and "not empty" in r.error
        assert sorted(os.listdir(d.out_dir)) == ["old"]
        r = s.run(datum("ls", "-A", "/pfs/out"))
        assert_ran(r)
        assert r.stdout == b""

    def test_missing_input_dir_is_reported(
        self, runner: Runner, start: StartSession, datum: Datums, tmp_path: Path
    ) -> None:
        r = start(runner).run(datum("true", inputs={"data": tmp_path / "nope"}))
        assert r.exit_code is None and "nope" in r.error

    def test_bad_input_name_is_a_caller_error(
        self, runner: Runner, start: StartSession, datum: Datums, tmp_path: Path
    ) -> None:
        s = start(runner)
        for name in ("out", "a/b", ""):
            with pytest.raises(ValueError):
                s.run(datum("true", inputs={name: tmp_path}))


# ------------------------------------------------------------ docker only


def containers(runner: DockerRunner, session: DockerSession | None = None) -> list[Any]:
    label = f"{SESSION_LABEL}={session.session_id}" if session else f"{LABEL}=1"
    found: list[Any] = runner.client().containers.list(all=True, filters={"label": [label]})
    return found


@pytest.mark.docker
class TestProcess:
    """The process runner runs the host's own binaries with the host's system
    directories in view: under a root worker its user code must not be root."""

    def test_user_code_of_a_root_worker_has_no_root_and_no_capabilities(
        self, process_runner: ProcessRunner, start: StartSession, datum: Datums
    ) -> None:
        if os.geteuid() != 0:
            pytest.skip("the worker is not root: bubblewrap gives user code a user "
                        "namespace of the worker's own (unprivileged) user")
        s = start(process_runner)
        r = s.run(datum(*sh(
            "id -u; id -g; grep -E '^Cap(Eff|Prm|Bnd):' /proc/self/status; "
            "(mkdir /tmp/m && mount -t tmpfs none /tmp/m) >/dev/null 2>&1 "
            "&& echo mounted || echo no-mount; "
            "cat /etc/shadow >/dev/null 2>&1 && echo shadow-read || echo shadow-denied; "
            "echo t > /tmp/t && echo x > /pfs/out/x && echo wrote")))
        assert_ran(r)
        lines = r.stdout.decode().split("\n")
        assert lines[:2] == ["65534", "65534"], r.stdout
        caps = dict(line.split(":\t") for line in lines[2:5])
        assert {k: int(v, 16) for k, v in caps.items()} == {
            "CapPrm": 0, "CapEff": 0, "CapBnd": 0}, caps
        assert "no-mount" in lines and "wrote" in lines, r.stdout
        if os.path.exists("/etc/shadow") and not os.stat("/etc/shadow").st_mode & 0o004:
            assert "shadow-denied" in lines, r.stdout

    def test_the_spec_user_is_a_host_user_without_root(
        self, process_runner: ProcessRunner, start: StartSession, datum: Datums
    ) -> None:
        if os.geteuid() != 0:
            pytest.skip("the worker is not root: user code cannot be another host user")
        s = start(process_runner, user="1234:2345")
        r = s.run(datum(*sh("id -u; id -g; grep '^CapEff:' /proc/self/status; "
                            "cat /etc/shadow >/dev/null 2>&1 && echo shadow-read || "
                            "echo shadow-denied")))
        assert_ran(r)
        out = r.stdout.decode().split()
        assert out[:4] == ["1234", "2345", "CapEff:", "0000000000000000"], out
        if os.path.exists("/etc/shadow") and not os.stat("/etc/shadow").st_mode & 0o004:
            # Mapped onto the worker's root in a user namespace, root's files
            # would be this user's own.
            assert out[4] == "shadow-denied", out


    def test_the_datum_environment_reaches_only_the_user_code(
        self, process_runner: ProcessRunner, start: StartSession, datum: Datums
    ) -> None:
        """transform.env is the user's: LD_PRELOAD given to bubblewrap (the
        worker's user, on the host) or to setpriv (still root) would load the
        user's library there. Each process that gets the variable says so on
        stderr when the library is missing: only the user code may."""
        s = start(process_runner)
        r = s.run(datum(*sh("echo $LD_PRELOAD"), env={"LD_PRELOAD": "/tusk-no-such.so"}))
        assert_ran(r)
        assert r.stdout == b"/tusk-no-such.so\n"
        assert r.stderr.count(b"/tusk-no-such.so") == 1, r.stderr

    def test_system_accounts_and_odd_working_dirs_are_refused(
        self, process_runner: ProcessRunner, start: StartSession, datum: Datums,
        tmp_path: Path
    ) -> None:
        if os.geteuid() != 0:
            pytest.skip("the worker is not root: user code runs as the worker's own user")
        for user in ("0", "root", "65534:42", "1234:0"):
            r = start(process_runner, user=user).run(datum("true"))
            assert r.exit_code is None and "system accounts" in r.error, (user, r)
        planted = tmp_path / "planted"
        for wd in (f"/proc/self/root/oldroot{planted}", "/work/../proc", "/dev/x", "work"):
            r = start(process_runner, working_dir=wd).run(datum("true"))
            assert r.exit_code is None and "working_dir" in r.error, (wd, r)
        assert not planted.exists()

    def test_the_workers_keyrings_are_out_of_reach(
        self, process_runner: ProcessRunner, start: StartSession, datum: Datums
    ) -> None:
        """The sandbox inherits the worker's session keyring, whose keys any
        possessor may read (Kerberos tickets live there): the keyring calls
        are refused."""
        import platform

        if platform.machine() != "x86_64":
            pytest.skip("the keyring filter is written for x86-64 hosts")
        if not os.path.exists("/usr/bin/python3"):
            pytest.skip("the host has no /usr/bin/python3 to make the call with")
        call = ("import ctypes; l = ctypes.CDLL(None, use_errno=True); "
                "r = l.syscall(250, 0, -3, 0); print(r, ctypes.get_errno())")  # keyctl
        r = start(process_runner).run(datum("/usr/bin/python3", "-c", call))
        assert_ran(r)
        assert r.stdout.split() == [b"-1", b"1"], r  # EPERM
        r = start(process_runner).run(datum(*sh("echo still runs")))
        assert_ran(r)
        assert r.stdout == b"still runs\n"

    def test_the_output_directory_belongs_to_the_user_code_alone(
        self, process_runner: ProcessRunner, start: StartSession, datum: Datums
    ) -> None:
        if os.geteuid() != 0:
            pytest.skip("the worker is not root: user code runs as the worker's own user")
        d = datum(*sh("echo x > /pfs/out/x"))
        assert_ran(start(process_runner).run(d))
        st = os.stat(d.out_dir)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 65534, 0o700)


def test_a_log_tail_stops_at_the_size_it_saw(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A process left running by the datum may keep appending to its stdout:
    reading the tail must end (and not grow) anyway."""
    from pps.runners import _files

    path = tmp_path / "stdout"
    path.write_bytes(b"a" * 100_000)
    real_pread = os.pread
    calls = []

    def pread_while_appending(fd: int, n: int, off: int) -> bytes:
        calls.append(off)
        if len(calls) > 50:
            raise AssertionError("read_tail chased the end of a growing file")
        with open(path, "ab") as f:
            f.write(b"b" * 65536)
        return real_pread(fd, n, off)

    monkeypatch.setattr(_files.os, "pread", pread_while_appending)
    tail = _files.read_tail(str(path), cap=4096)
    assert tail == b"a" * 4096
    assert len(calls) <= 2


class TestDocker:
    def test_one_container_serves_every_datum(
        self, docker_runner: DockerRunner, start: StartSession, datum: Datums
    ) -> None:
        s = start(docker_runner)
        assert isinstance(s, DockerSession)
        assert_ran(s.run(datum(*sh("echo marker > /tmp/marker"))))
        first = s.container_id
        r = s.run(datum("cat", "/tmp/marker"))
        assert_ran(r)
        assert r.stdout == b"marker\n"
        assert s.container_id == first
        assert len(containers(docker_runner, s)) == 1
        c = containers(docker_runner, s)[0]
        assert c.labels[LABEL] == "1"
        assert c.attrs["HostConfig"]["NetworkMode"] == "none"
        assert c.attrs["HostConfig"]["Init"] is True

    def test_sh_c_runs_in_the_agents_subshell_as_sh_c_would(
        self, docker_runner: DockerRunner, start: StartSession, datum: Datums
    ) -> None:
        """``sh -c SCRIPT`` is evaluated by the agent's subshell (no exec of a
        new shell), and the script cannot tell but for $0."""
        s = start(docker_runner)
        # The command line of the shell running the script (cut's parent).
        me = "tr '\\0' ' ' < /proc/$(cut -d' ' -f4 /proc/self/stat)/cmdline"
        inline = s.run(datum(*sh(me)))
        assert_ran(inline)
        assert b"/.tusk/agent.sh" in inline.stdout  # the agent's subshell ran it
        # Not with an argument after SCRIPT, nor when SCRIPT uses $$: a real sh -c.
        for cmd, inlined in ((("/bin/sh", "-c", me), True), (("sh", "-c", me, "zero"), False),
                             (sh(me + " # $$"), False)):
            r = s.run(datum(*cmd))
            assert_ran(r)
            assert (b"/.tusk/agent.sh" in r.stdout) is inlined, (cmd, r.stdout)
        # The datum's PATH may name another sh: then it runs as asked.
        r = s.run(datum(*sh(me), env={"PATH": "/bin:/usr/bin"}))
        assert_ran(r)
        assert b"/.tusk/agent.sh" not in r.stdout
        # No agent variable or function leaks; no positional parameters; the
        # environment, stdin and exit status are sh -c's.
        r = s.run(datum(*sh('set | grep -c _tusk_; echo "$# [$FOO]"; read x; echo "got $x"; '
                            "exit 7"), stdin=b"line\n", env={"FOO": "a b"}))
        assert_ran(r, 7)
        assert r.stdout == b"0\n0 [a b]\ngot line\n"
        r = s.run(datum(*sh("if then")))
        assert_ran(r, 2)
        assert b"syntax error" in r.stderr
        # exec and cd in one datum do not reach the next.
        assert_ran(s.run(datum(*sh("cd /tmp && exec true"))))
        r = s.run(datum(*sh("pwd")))
        assert_ran(r)
        assert r.stdout == b"/\n"

    def test_a_link_in_place_of_stdout_does_not_read_a_host_file(
        self, docker_runner: DockerRunner, start: StartSession, datum: Datums, tmp_path: Path
    ) -> None:
        """The agent's io/ is writable by user code: a symlink (or FIFO) put
        where the host reads the datum's stdout and stderr is not followed."""
        secret = tmp_path / "secret"
        secret.write_text("HOST SECRET\n")
        s = start(docker_runner)
        for stream in ("stdout", "stderr"):
            for plant in (f"ln -sf {secret} /.tusk/io/{stream}",
                          f"rm /.tusk/io/{stream}; mkfifo /.tusk/io/{stream}"):
                r = s.run(datum(*sh(plant)))
                assert_ran(r)
                assert b"SECRET" not in r.stdout + r.stderr, (plant, r)
        r = s.run(datum(*sh("echo fine; echo also >&2")))
        assert_ran(r)
        assert (r.stdout, r.stderr) == (b"fine\n", b"also\n")

    def test_what_user_code_puts_in_place_of_the_datum_script_is_replaced_not_written(
        self, docker_runner: DockerRunner, start: StartSession, datum: Datums, tmp_path: Path
    ) -> None:
        """The host writes each datum's script over the last one in place. A
        link, hard link or FIFO put there by user code is replaced: no host
        file is written through it, and the next datum runs its own script."""
        host_file = tmp_path / "host-file"
        host_file.write_text("the host's\n")
        s = start(docker_runner)
        assert_ran(s.run(datum("true")))
        script = Path(s._io) / "datum.sh"  # type: ignore[attr-defined]
        with open(script, "rb") as held:  # its inode cannot be reused while held
            assert_ran(s.run(datum("true")))
            assert os.fstat(held.fileno()).st_nlink == 1, "the script was made anew"
            assert script.stat().st_ino == os.fstat(held.fileno()).st_ino
        for plant in (f"ln -sf {host_file} /.tusk/io/datum.sh",
                      "ln /.tusk/io/datum.sh /.tusk/io/other",
                      "rm /.tusk/io/datum.sh; mkfifo /.tusk/io/datum.sh",
                      "head -c 100000 /dev/zero >> /.tusk/io/datum.sh"):
            assert_ran(s.run(datum(*sh(plant))))
            r = s.run(datum(*sh("echo $PACH_DATUM_ID")))
            assert_ran(r)
            assert host_file.read_text() == "the host's\n", plant
        r = s.run(datum("sh", "-c", "echo $X", env={"X": "mine"}))
        assert_ran(r)
        assert r.stdout == b"mine\n"

    def _run_within(self, runner: DockerRunner, s: DockerSession, d: DatumRun,
                    seconds: float) -> RunResult | None:
        """``s.run(d)``, or None if it has not returned after ``seconds`` (the
        container is then killed, which ends the run)."""
        got: list[RunResult] = []
        th = threading.Thread(target=lambda: got.append(s.run(d)), daemon=True)
        th.start()
        th.join(seconds)
        if th.is_alive():
            runner.client().containers.get(s.container_id).kill()
            th.join(30)
            return None
        return got[0]

    def test_a_flood_into_the_response_fifo_does_not_outlast_the_timeout(
        self, docker_runner: DockerRunner, start: StartSession, datum: Datums
    ) -> None:
        """io/resp is writable from the container: bytes without a newline
        there must not keep the host reading (past the timeout, into memory)."""
        s = start(docker_runner)
        assert isinstance(s, DockerSession)
        for plant in ("cat /dev/zero > /.tusk/io/resp", "echo bogus > /.tusk/io/resp; sleep 60"):
            r = self._run_within(docker_runner, s, datum(*sh(plant), timeout=3), 20)
            assert r is not None, f"{plant}: still running 20 s into a 3 s timeout"
            assert r.exit_code is None and "/.tusk/io/resp" in r.error, r
            assert_ran(s.run(datum("true")))

    def test_a_full_request_fifo_does_not_block_the_host(
        self, docker_runner: DockerRunner, start: StartSession, datum: Datums
    ) -> None:
        """Left behind by one datum, a process stops the agent and fills io/req:
        the host's request for the next datum must not block (before its timeout)."""
        s = start(docker_runner)
        assert isinstance(s, DockerSession)
        fill = "kill -STOP $PPID; head -c 65536 /dev/zero > /.tusk/io/req; touch /tmp/full"
        assert_ran(s.run(datum(*sh(f"(sleep 0.5; {fill}) >/dev/null 2>&1 &"))))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            # The agent is stopped: look from the engine's side.
            probe = docker_runner.client().containers.get(s.container_id)
            if probe.exec_run(["test", "-e", "/tmp/full"]).exit_code == 0:
                break
            time.sleep(0.1)
        r = self._run_within(docker_runner, s, datum("true", timeout=3), 20)
        assert r is not None, "still running 20 s into a 3 s timeout"
        assert r.exit_code is None and "/.tusk/io/req" in r.error, r
        assert_ran(s.run(datum("true")))

    def test_directories_nested_deeper_than_python_recurses_do_not_wedge_the_session(
        self, docker_runner: DockerRunner, start: StartSession, datum: Datums
    ) -> None:
        """A process left behind nests 1100 directories in io/ and /pfs/out:
        a new container (which empties both) and close() still work."""
        s = start(docker_runner)
        assert isinstance(s, DockerSession)
        deep = "i=0; while [ $i -lt 1100 ]; do mkdir a; cd a; i=$((i+1)); done"

        def plant() -> None:
            assert_ran(s.run(datum(*sh(f"(sleep 0.3; (cd /.tusk/io && {deep}); "
                                       f"(cd /pfs/out && {deep}); touch /tmp/deep) "
                                       ">/dev/null 2>&1 &"))))
            container = docker_runner.client().containers.get(s.container_id)
            deadline = time.monotonic() + 60
            while container.exec_run(["test", "-e", "/tmp/deep"]).exit_code != 0:
                assert time.monotonic() < deadline
                time.sleep(0.2)

        plant()
        docker_runner.client().containers.get(s.container_id).kill()
        r = s.run(datum(*sh("ls /pfs/out /.tusk/io")))
        assert_ran(r)
        assert b"a" not in r.stdout.split()
        plant()
        s.close()
        assert not os.path.exists(s._out)

    def test_close_removes_the_container(
        self, docker_runner: DockerRunner, start: StartSession, datum: Datums
    ) -> None:
        s = start(docker_runner)
        assert isinstance(s, DockerSession)
        assert len(containers(docker_runner, s)) == 1
        s.close()
        assert containers(docker_runner, s) == []
        s.close()  # idempotent

    def test_missing_image_says_how_to_build_it(
        self, docker_runner: DockerRunner, start: StartSession, datum: Datums
    ) -> None:
        s = start(docker_runner, image="tusk/nope:1")
        r = s.run(datum("true"))
        assert r.exit_code is None
        assert "tusk/nope:1 not found" in r.error
        assert "deploy/images/build.sh" in r.error

    def test_image_without_sh_is_explained(
        self, docker_runner: DockerRunner, start: StartSession, datum: Datums, tmp_path: Path
    ) -> None:
        name = f"tusk/test-nosh:{RUN_ID}"
        (tmp_path / "root/etc").mkdir(parents=True)
        subprocess.run(
            f"tar -C {tmp_path}/root -c . | docker import - {name}",
            shell=True,
            check=True,
            capture_output=True,
        )
        try:
            r = start(docker_runner, image=name).run(datum("true"))
            assert r.exit_code is None
            assert "/bin/sh" in r.error
        finally:
            docker_runner.client().images.remove(name, force=True)

    def test_memory_limit_kills_the_datum_and_the_next_one_runs(
        self, docker_runner: DockerRunner, start: StartSession, datum: Datums
    ) -> None:
        s = start(docker_runner, memory_bytes=32 << 20)
        # The shell keeps the whole 200 MB string in memory.
        r = s.run(datum(*sh("x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}")))
        assert r.oom_killed, r
        assert r.exit_code is None
        assert "memory limit (32 MiB)" in r.error
        assert_ran(s.run(datum("echo", "fine")))

    @pytest.mark.parametrize("counter", ["host", "agent"])
    def test_an_oom_kill_of_a_child_is_reported_though_the_code_exits_0(
        self, docker_runner: DockerRunner, start: StartSession, datum: Datums, counter: str
    ) -> None:
        """The OOM-kill counter is what catches a kill the exit status hides,
        whether the host reads it (the usual path) or the agent does."""
        s = start(docker_runner, memory_bytes=32 << 20)
        assert isinstance(s, DockerSession)
        assert_ran(s.run(datum("true")))
        assert s._oom_fd >= 0, "the host did not open the container's OOM-kill counter"
        if counter == "agent":
            s._close_oom_counter()
        r = s.run(datum(*sh(
            "(x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}); echo survived")))
        assert r.oom_killed, r
        assert "memory limit (32 MiB)" in r.error
        assert_ran(s.run(datum("echo", "fine")))

    def test_container_death_mid_datum_is_reported_and_repaired(
        self, docker_runner: DockerRunner, start: StartSession, datum: Datums
    ) -> None:
        s = start(docker_runner)
        assert isinstance(s, DockerSession)
        first = s.container_id
        # The datum's parent is the agent: killing it ends the container.
        r = s.run(datum(*sh("kill -9 $PPID; sleep 5")))
        assert r.exit_code is None
        assert "died during the datum" in r.error
        r = s.run(datum("echo", "again"))
        assert_ran(r)
        assert s.container_id != first
        assert len(containers(docker_runner, s)) == 1

    def test_container_killed_between_datums_is_replaced_transparently(
        self, docker_runner: DockerRunner, start: StartSession, datum: Datums
    ) -> None:
        s = start(docker_runner)
        assert isinstance(s, DockerSession)
        assert_ran(s.run(datum("true")))
        first = s.container_id
        container = docker_runner.client().containers.get(first)
        container.kill()
        container.wait()
        assert_ran(s.run(datum("echo", "still here")))
        assert s.container_id != first

    def test_containers_left_by_a_dead_worker_are_removed(
        self, docker_runner: DockerRunner, tmp_path: Path
    ) -> None:
        work = str(tmp_path / "work")
        crashed = docker_runner.start(RunnerSpec(BUSYBOX), work)
        assert isinstance(crashed, DockerSession)
        # A worker that dies never calls close(); its successor reuses its work_dir.
        successor = docker_runner.start(RunnerSpec(BUSYBOX), work)
        try:
            assert containers(docker_runner, crashed) == []
            assert len(containers(docker_runner, successor)) == 1
        finally:
            successor.close()

    def test_default_runner_is_docker_when_an_engine_answers(
        self, docker_runner: DockerRunner
    ) -> None:
        assert default_runner().name == "docker"

    def test_unreachable_engine_is_explained(self, tmp_path: Path, datum: Datums) -> None:
        runner = DockerRunner(base_url=f"unix://{tmp_path}/no-docker.sock")
        ok, why = runner.available()
        assert not ok
        assert "Docker engine unreachable at unix://" in why
        s = runner.start(RunnerSpec(BUSYBOX), str(tmp_path / "w"))
        r = s.run(datum("true"))
        s.close()
        assert r.exit_code is None
        assert "Docker engine unreachable" in r.error
        assert "deploy/services.sh up" in r.error

    def test_python_image_runs_python(
        self, docker_runner: DockerRunner, start: StartSession, datum: Datums, tmp_path: Path
    ) -> None:
        try:
            docker_runner.client().images.get("tusk/python:3.11")
        except docker.errors.ImageNotFound:
            pytest.skip("tusk/python:3.11 not built: deploy/images/build.sh python")
        data = put_files(tmp_path / "nums", {"n.txt": b"1 2 3"})
        s = start(docker_runner, image="tusk/python:3.11")
        code = (
            "import os; n = sum(map(int, open('/pfs/nums/n.txt').read().split())); "
            "open('/pfs/out/sum', 'w').write(str(n)); print(os.environ['PACH_DATUM_ID'])"
        )
        d = datum("python3", "-c", code, env={"PACH_DATUM_ID": "abc"}, inputs={"nums": data})
        r = s.run(d)
        assert_ran(r)
        assert r.stdout == b"abc\n"
        assert (Path(d.out_dir) / "sum").read_text() == "6"


# ----------------------------------------------------------- process only


def test_runners_satisfy_the_protocols(tmp_path: Path) -> None:
    # Checked by mypy as much as at run time.
    runners: list[Runner] = [DockerRunner(base_url="unix:///nonexistent.sock"), ProcessRunner()]
    for runner in runners:
        session: Session = runner.start(RunnerSpec(BUSYBOX), str(tmp_path / runner.name))
        session.close()


def test_process_runner_says_the_image_is_ignored(
    process_runner: ProcessRunner, tmp_path: Path
) -> None:
    s = process_runner.start(RunnerSpec(BUSYBOX, memory_bytes=1 << 20), str(tmp_path))
    assert any("ignored" in w for w in s.warnings)
    assert any("not enforced" in w for w in s.warnings)


def test_process_runner_without_bwrap_explains(tmp_path: Path, datum: Datums) -> None:
    runner = ProcessRunner(bwrap=str(tmp_path / "no-bwrap"))
    ok, why = runner.available()
    assert not ok and "apt-get install -y bubblewrap" in why
    r = runner.start(RunnerSpec(BUSYBOX), str(tmp_path)).run(datum("true"))
    assert r.exit_code is None and "bubblewrap" in r.error


def test_clear_dir_does_not_follow_a_directory_swapped_for_a_link(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """User code still running can swap a directory of /pfs/out for a symlink
    between the scan and the descent: nothing outside is removed."""
    from pps.runners import _files

    outside = put_files(tmp_path / "outside", {"keep": b"host file"})
    out = put_files(tmp_path / "out", {"d/x": b"1", "f": b"2"})
    real_scandir = os.scandir
    swapped = []

    class Listing(list[Any]):
        def __enter__(self) -> Listing:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    def racing_scandir(arg: Any) -> Listing:
        with real_scandir(arg) as it:
            entries = Listing(it)
        if not swapped and any(e.name == "d" for e in entries):  # the scan saw a directory
            swapped.append(True)
            (out / "d" / "x").unlink()
            (out / "d").rmdir()
            (out / "d").symlink_to(outside)
        return entries

    monkeypatch.setattr(_files.os, "scandir", racing_scandir)
    _files.clear_dir(str(out))
    assert list(out.iterdir()) == []
    assert (outside / "keep").read_bytes() == b"host file"


def test_clear_dir_empties_a_tree_deeper_than_python_recurses(tmp_path: Path) -> None:
    """User code can nest directories as deep as it likes: a tree left there
    must not make every later clear of the worker's scratch fail."""
    from pps.runners._files import clear_dir

    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(1500):
            os.mkdir("a", dir_fd=fd)
            sub = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = sub
        os.close(os.open("f", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    finally:
        os.close(fd)
    (tmp_path / "outside").write_bytes(b"kept")
    clear_dir(str(out))
    assert list(out.iterdir()) == []
    assert (tmp_path / "outside").read_bytes() == b"kept"
