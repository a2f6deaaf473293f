"""Real ``tusk daemon`` subprocesses for tests that kill, freeze and restart them.

:class:`DaemonProc` keeps its port across restarts (so a client reconnects to
the restarted daemon) and its log in a file the failure messages quote. Every
process it starts is ended by PID in :meth:`DaemonProc.close`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tusk.client import Client

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(cond: Callable[[], bool], timeout: float, what: str, poll: float = 0.05) -> float:
    """Poll ``cond`` until true; returns the seconds it took. AssertionError on timeout."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)
    return time.monotonic() - t0


class DaemonProc:
    """One ``tusk daemon`` on a fixed loopback port.

    Args:
        workdir: where its log (and, by default, its data dir) go.
        args: extra daemon flags (``--metadata``, ``--storage``...).
        data_dir: ``--data-dir`` (default ``workdir/data``).
    """

    def __init__(self, workdir: Path, args: Sequence[str] = (), data_dir: Path | None = None,
                 name: str = "daemon") -> None:
        self.workdir = workdir
        self.args = list(args)
        self.data_dir = data_dir or workdir / "data"
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._clients: list[Client] = []

    def start(self, wait: bool = True, timeout: float = 30) -> DaemonProc:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tusk.entry", "daemon", "--data-dir", str(self.data_dir),
                 "--address", self.address, "--gc-interval", "0", *self.args],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        if wait:
            self.wait_listening(timeout)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_listening(self, timeout: float = 30) -> float:
        def up() -> bool:
            if not self.running():
                raise AssertionError(f"daemon exited ({self.returncode()}):\n{self.log()}")
            return self.listening()

        return wait_for(up, timeout, f"the daemon to listen on {self.address}\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def kill9(self) -> None:
        """SIGKILL and reap."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, wait, return the exit code (SIGKILL if it does not stop)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # in case a test froze it
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return int(self.proc.returncode)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return int(self.proc.wait(timeout=timeout))

    def client(self) -> Client:
        c = Client(self.address)
        self._clients.append(c)
        return c

    def close(self) -> None:
        """End the process (by PID) and the clients."""
        for c in self._clients:
            c.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.kill9()
