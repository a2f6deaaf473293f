"""Step runners: how a worker runs a pipeline's user code, once per datum.

A worker owns one :class:`Session` per pipeline: it is started once (the
expensive part: a container start costs hundreds of milliseconds) and then runs
every datum the worker claims, one after the other. Each datum sees

* its input files read-only at ``/pfs/<input name>/...``,
* an empty, writable ``/pfs/out`` whose content lands in the host directory
  :attr:`DatumRun.out_dir` once the datum is over,
* the environment, stdin, argv (never through a shell) and timeout the caller
  built (Pachyderm's ``PACH_JOB_ID``, ``PACH_DATUM_ID``, input variables...),
* optionally a :class:`LoopbackService` (the worker's S3 gateway) listening on
  ``127.0.0.1:<port>`` of the sandbox's *own* loopback, while the sandbox
  still has no network (:mod:`pps.runners.netns`).

Two implementations:

* :class:`pps.runners.docker.DockerRunner`: the pipeline's image, one long-lived
  container per session with a small agent inside it (no ``docker exec`` per
  datum).
* :class:`pps.runners.process.ProcessRunner`: host binaries in a bubblewrap
  sandbox that presents the same ``/pfs`` paths, for machines without an engine.

Contract shared by every runner (and pinned by ``tests/test_runners.py``):

* :meth:`Session.run` never raises for a failure of the user code *or* of the
  runner's machinery (engine gone, image missing, container killed): it returns
  a :class:`RunResult` with ``exit_code=None`` and ``error`` saying what happened
  and how to fix it. It raises :class:`ValueError` only for a malformed
  :class:`DatumRun` (a caller bug), e.g. an input named ``out``.
* A session runs one datum at a time; it is not thread-safe.
* After :meth:`Session.run` returns, the session's own copies of the inputs are
  gone and ``/pfs/out`` is empty again: nothing leaks from one datum's ``/pfs``
  into the next one. Other state (``/tmp`` in a container) may persist, as it
  does in a Pachyderm worker.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "OUTPUT_CAP",
    "RUNNER_NAMES",
    "DatumRun",
    "LoopbackService",
    "RunResult",
    "Runner",
    "RunnerSpec",
    "RunnerUnavailable",
    "Session",
    "default_runner",
    "runner_named",
]

#: How much of each of stdout and stderr a :class:`RunResult` keeps (the tail).
OUTPUT_CAP = 1 << 20


@dataclass(frozen=True)
class RunnerSpec:
    """What a pipeline asks of its runner; fixed for the life of a session.

    Attributes:
        image: Docker image of the user code (ignored by the process runner).
        user: ``name``, ``uid`` or ``uid:gid`` the user code runs as.
        working_dir: directory the user code starts in (the image's own default
            when ``None``).
        memory_bytes: ``resource_limits.memory``; the user code is killed when
            its container exceeds it.
        cpus: ``resource_limits.cpu`` (fractions allowed).
        network: ``"none"`` (the default: no network at all) or ``"host"``.
    """

    image: str
    user: str | None = None
    working_dir: str | None = None
    memory_bytes: int | None = None
    cpus: float | None = None
    network: str = "none"

    def __post_init__(self) -> None:
        if self.network not in ("none", "host"):
            raise ValueError(f"network must be 'none' or 'host', not {self.network!r}")
        if self.memory_bytes is not None and self.memory_bytes <= 0:
            raise ValueError(f"memory_bytes must be positive, not {self.memory_bytes}")
        if self.cpus is not None and self.cpus <= 0:
            raise ValueError(f"cpus must be positive, not {self.cpus}")


class LoopbackService(Protocol):
    """A service the worker offers one datum inside its sandbox (the S3 gateway).

    The session creates a socket listening on ``127.0.0.1:port`` inside the
    sandbox's own network namespace before the user code starts, hands it to
    :meth:`serve`, and calls :meth:`stop` once the user code is over and
    before the datum's output is collected. A session that cannot do this
    (no network namespace of its own, no privilege to enter one) fails the
    datum with an error saying so, without running the user code.
    """

    @property
    def port(self) -> int:
        """The port the user code expects (the caller put it in the env)."""
        ...

    def serve(self, sock: socket.socket) -> None:
        """Serve ``sock`` (listening; ownership passes here) from other threads."""
        ...

    def stop(self) -> None:
        """Stop serving and close the socket. When it returns, no request of this
        datum is being handled and none will be. Idempotent."""
        ...


@dataclass(frozen=True)
class DatumRun:
    """One execution of the user code.

    Attributes:
        cmd: argv; executed directly, never through a shell.
        stdin: bytes fed to the user code's stdin (empty stdin when ``None``).
        env: environment variables added to the image's own environment.
        inputs: input name -> host directory whose content appears, read-only,
            at ``/pfs/<name>``. A runner may move the directory away while the
            datum runs; it is back, unchanged, when :meth:`Session.run` returns.
        out_dir: host directory (created if missing, expected empty) that
            receives what the user code wrote under ``/pfs/out``.
        timeout: ``datum_timeout`` in seconds; the user code is killed past it.
        service: served on the sandbox's loopback during the datum (see
            :class:`LoopbackService`); None for none.
        while_running: the caller's own work to overlap with the user code
            (staging the next datum): a runner may call it once after the
            user code started, from the thread that called :meth:`Session.run`.
            It must not raise. A runner that does not call it loses nothing:
            the caller runs it afterwards.
    """

    cmd: tuple[str, ...]
    stdin: bytes | None
    env: dict[str, str]
    inputs: dict[str, str]
    out_dir: str
    timeout: float | None = None
    service: LoopbackService | None = None
    while_running: Callable[[], None] | None = None

    def validate(self) -> None:
        """Raise ValueError when the request cannot be honoured by any runner."""
        if not self.cmd:
            raise ValueError("cmd is empty: nothing to run")
        for name in self.inputs:
            if not name or "/" in name or name in (".", "..", "out") or "\0" in name:
                raise ValueError(
                    f"input name {name!r} cannot be mounted at /pfs/<name>: "
                    "it must be one path component other than 'out'"
                )
        for key in self.env:
            if not key or "=" in key or "\0" in key:
                raise ValueError(f"environment variable name {key!r} is not valid")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"timeout must be positive, not {self.timeout}")

    def out_dir_problem(self) -> str:
        """Why :attr:`out_dir` cannot receive this datum's output ("" if it can).

        Checked by each runner before it runs anything: output merged into a
        non-empty directory could not be told apart from what was there.
        """
        try:
            with os.scandir(self.out_dir) as it:
                if next(it, None) is not None:
                    return f"output directory {self.out_dir} is not empty"
        except FileNotFoundError:
            return ""
        except NotADirectoryError:
            return f"output directory {self.out_dir} is not a directory"
        return ""


@dataclass(frozen=True)
class RunResult:
    """What happened to one :class:`DatumRun`.

    Attributes:
        exit_code: the user code's exit status; ``None`` when it never ran or
            was killed (timeout, memory limit, container death).
        stdout: the last :data:`OUTPUT_CAP` bytes the user code wrote to stdout.
        stderr: the same for stderr.
        duration: wall-clock seconds spent in :meth:`Session.run`.
        timed_out: the datum exceeded its timeout and was killed.
        oom_killed: the user code was killed for exceeding the memory limit.
        error: runner-level failure in plain words, with how to fix it; empty
            when the user code ran to completion (whatever its exit status).
    """

    exit_code: int | None
    stdout: bytes
    stderr: bytes
    duration: float
    timed_out: bool = False
    oom_killed: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        """True when the user code ran and exited 0."""
        return self.exit_code == 0 and not self.error


class Session(Protocol):
    """One worker's handle on a started runner; runs datums sequentially.

    Attributes:
        warnings: things the caller should log once, e.g. that the process
            runner ignores the image.
    """

    warnings: tuple[str, ...]

    def run(self, datum: DatumRun) -> RunResult:
        """Run one datum to completion; see the module docstring for the contract."""
        ...

    def close(self) -> None:
        """Release everything the session holds (its container). Idempotent."""
        ...

    def interrupt(self) -> None:
        """Kill the user code of the datum running now, from another thread
        (``restart datum``): its :meth:`run` returns soon, with the user code
        killed. Does nothing between datums."""
        ...


class Runner(Protocol):
    """A way of running user code; stateless apart from its connection."""

    name: str

    def start(self, spec: RunnerSpec, work_dir: str) -> Session:
        """Start a session for one worker.

        Args:
            spec: the pipeline's requirements.
            work_dir: a host scratch directory owned by this worker alone; the
                session keeps its mounts and agent files there.

        Never raises for an unusable backend: the failure is reported by every
        :meth:`Session.run` until it goes away (an engine may come back).
        """
        ...

    def available(self) -> tuple[bool, str]:
        """Whether this runner can work here, and if not, why and what to do."""
        ...


@dataclass
class RunnerUnavailable(Exception):
    """No runner can work on this machine.

    Attributes:
        reasons: runner name -> why it cannot be used.
    """

    reasons: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        if len(self.reasons) == 1:  # one runner was asked for by name (runner_named)
            ((name, why),) = self.reasons.items()
            return f"the {name} runner cannot run user code here: {why}"
        lines = "; ".join(f"{name}: {why}" for name, why in self.reasons.items())
        return (
            "no step runner can run user code here "
            f"({lines}). Start a Docker engine (deploy/services.sh up) or "
            "install bubblewrap (apt-get install -y bubblewrap)."
        )


def default_runner() -> Runner:
    """The best runner this machine offers.

    Docker when an engine answers, else the process runner when bubblewrap
    works.

    Raises:
        RunnerUnavailable: neither works; the message says how to get either.
    """
    # Imported here so that importing the data types does not import docker-py.
    from pps.runners.docker import DockerRunner
    from pps.runners.process import ProcessRunner

    reasons: dict[str, str] = {}
    candidates: list[Runner] = [DockerRunner(), ProcessRunner()]
    for runner in candidates:
        ok, why = runner.available()
        if ok:
            return runner
        reasons[runner.name] = why
    raise RunnerUnavailable(reasons)


#: What ``--runner`` of ``tusk daemon`` and ``tusk worker`` accepts.
RUNNER_NAMES = ("auto", "docker", "process")


def runner_named(name: str) -> Runner:
    """The runner ``--runner NAME`` picks, checked now rather than at the first datum.

    ``auto`` is :func:`default_runner`; ``docker`` and ``process`` are that
    runner alone, never the other one as a fallback (a deployment that mounts
    no Docker socket says ``process`` and so never looks for an engine).

    Raises:
        ValueError: ``name`` is not one of :data:`RUNNER_NAMES`.
        RunnerUnavailable: the runner cannot work here; the message says why.
    """
    if name == "auto":
        return default_runner()
    runner: Runner
    if name == "docker":
        from pps.runners.docker import DockerRunner

        runner = DockerRunner()
    elif name == "process":
        from pps.runners.process import ProcessRunner

        runner = ProcessRunner()
    else:
        raise ValueError(f"unknown runner {name!r} (choose from {', '.join(RUNNER_NAMES)})")
    ok, why = runner.available()
    if not ok:
        raise RunnerUnavailable({runner.name: why})
    return runner
