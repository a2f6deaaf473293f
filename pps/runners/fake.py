"""A scripted runner for fast tests of everything above the runner.

No process is started: a *behaviour* (a function of the :class:`DatumRun`)
says what each datum does — its exit code, the files and links it leaves in
``/pfs/out``, its output streams, a delay, a runner-level error, an exception
(a crash of the machinery), or a block until the test releases it. The
controller's logic (skipping, merging, collisions, retries, ``err_cmd``,
timeouts, stop, parallel workers, a worker's death) is then tested in
milliseconds on any machine; Docker and bubblewrap stay the integration tier.

It keeps the :class:`~pps.runners.Session` contract: :meth:`FakeSession.run`
reports failures in its :class:`RunResult` and leaves ``/pfs/out`` holding
exactly what the behaviour wrote.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pps.runners import DatumRun, RunnerSpec, RunResult

__all__ = ["Act", "FakeRunner", "FakeSession", "input_path"]


@dataclass(frozen=True)
class Act:
    """What one run of the user code does.

    Attributes:
        exit_code: the user code's exit status.
        files: path under ``/pfs/out`` -> content to write there.
        links: path under ``/pfs/out`` -> symlink target (as user code would
            ``ln -s`` it).
        fifos: paths under ``/pfs/out`` to make named pipes at.
        stdout, stderr: what the user code printed.
        delay: seconds it runs (past the datum's timeout: killed, timed out).
        error: a runner-level failure (engine gone...), reported as such.
        crash: raised from ``run``, as a bug in the machinery would be.
        block: the run waits for this event (a hung datum the test controls).
    """

    exit_code: int = 0
    files: Mapping[str, bytes] = field(default_factory=dict)
    links: Mapping[str, str] = field(default_factory=dict)
    fifos: tuple[str, ...] = ()
    stdout: bytes = b""
    stderr: bytes = b""
    delay: float = 0.0
    error: str = ""
    crash: BaseException | None = None
    block: threading.Event | None = None


Behaviour = Callable[[DatumRun], Act]


def input_path(datum: DatumRun, pfs_path: str) -> str:
    """The host file behind ``/pfs/<input>/...`` of a datum (to read an input)."""
    parts = pfs_path.strip("/").split("/")
    if len(parts) < 2 or parts[0] != "pfs" or parts[1] not in datum.inputs:
        raise ValueError(f"{pfs_path} is not under an input of this datum")
    return os.path.join(datum.inputs[parts[1]], *parts[2:])


def copy_inputs(datum: DatumRun) -> Act:
    """The default behaviour: every input file, copied to ``/pfs/out`` under its
    base name (what ``cp /pfs/<input>/* /pfs/out/`` does)."""
    files: dict[str, bytes] = {}
    for src in datum.inputs.values():
        for root, _, names in os.walk(src):
            for n in names:
                with open(os.path.join(root, n), "rb") as f:
                    files[n] = f.read()
    return Act(files=files)


class FakeRunner:
    """A runner whose user code is a Python function. Thread-safe.

    Attributes:
        runs: every datum run so far, in order (err_cmd runs included).
        sessions: every session started.
    """

    name = "fake"

    def __init__(self, behaviour: Behaviour = copy_inputs) -> None:
        self.behaviour = behaviour
        self.runs: list[DatumRun] = []
        self.sessions: list[FakeSession] = []
        self.specs: list[RunnerSpec] = []
        self._lock = threading.Lock()

    def available(self) -> tuple[bool, str]:
        return True, ""

    def start(self, spec: RunnerSpec, work_dir: str) -> FakeSession:
        s = FakeSession(self)
        with self._lock:
            self.sessions.append(s)
            self.specs.append(spec)
        return s

    def record(self, datum: DatumRun) -> None:
        with self._lock:
            self.runs.append(datum)


class FakeSession:
    """One worker's session of a :class:`FakeRunner`."""

    def __init__(self, runner: FakeRunner) -> None:
        self.runner = runner
        self.warnings: tuple[str, ...] = ()
        self.closed = False
        self._interrupted = threading.Event()
        self._running = threading.Event()

    def run(self, datum: DatumRun) -> RunResult:
        datum.validate()
        started = time.monotonic()
        problem = datum.out_dir_problem()
        if problem:
            return RunResult(None, b"", b"", 0.0, error=problem)
        self.runner.record(datum)
        act = self.runner.behaviour(datum)
        self._interrupted.clear()
        self._running.set()
        try:
            if act.block is not None:
                deadline = None if datum.timeout is None else time.monotonic() + datum.timeout
                while not act.block.is_set() and not self._interrupted.is_set():
                    if deadline is not None and time.monotonic() > deadline:
                        break
                    act.block.wait(0.01)
        finally:
            self._running.clear()
        if self._interrupted.is_set():
            return RunResult(None, b"", b"", time.monotonic() - started,
                             error="user code was killed by signal 9")
        if act.crash is not None:
            raise act.crash
        if act.delay:
            if datum.timeout is not None and act.delay > datum.timeout:
                time.sleep(datum.timeout)
                return RunResult(None, act.stdout, act.stderr, time.monotonic() - started,
                                 timed_out=True)
            time.sleep(act.delay)
        if act.error:
            return RunResult(None, act.stdout, act.stderr, time.monotonic() - started,
                             error=act.error)
        os.makedirs(datum.out_dir, exist_ok=True)
        for path, data in act.files.items():
            dst = os.path.join(datum.out_dir, path.lstrip("/"))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with open(dst, "wb") as f:
                f.write(data)
        for path, target in act.links.items():
            dst = os.path.join(datum.out_dir, path.lstrip("/"))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.symlink(target, dst)
        for path in act.fifos:
            os.mkfifo(os.path.join(datum.out_dir, path.lstrip("/")))
        return RunResult(act.exit_code, act.stdout, act.stderr, time.monotonic() - started)

    def interrupt(self) -> None:
        if self._running.is_set():
            self._interrupted.set()

    def close(self) -> None:
        self.closed = True
