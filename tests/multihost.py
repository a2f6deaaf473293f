"""Several "hosts" on this machine: network namespaces joined by a router.

Why: ``tusk worker`` runs on other hosts that reach the daemon's etcd and S3
over a network, and loopback cannot show what happens when one of those
hosts' link goes down. Separate network stacks can. Each "host" here is a
network namespace with one veth pair to a *router* namespace, a /30 of the
link-local block 169.254.X.0/24 per pair (never a private range, never 127.x
on a veth). The router forwards between its links; the test process (the root
namespace) reaches the hosts through a link of its own and one route for the
/24. No namespace has a default route, so no packet can leave the machine.

Cutting a host's link is ``ip link set LINK down`` on the router's side of the
pair: the host keeps its address and its sockets and its packets go nowhere,
as when a cable is pulled (connections time out; nothing is refused).

:class:`Network` owns the namespaces; :class:`Cluster` runs a tusk deployment
on it: etcd, SeaweedFS (S3) and ``tusk daemon --no-workers`` each on a host of
their own, and ``tusk worker`` processes (process runner, their own data and
scratch directories) on further hosts. Every process is started through ``ip
netns exec`` (which execs, so the PID is the program's) and ended by that PID;
:meth:`Network.close` then kills what is still inside the namespaces (the
descendants of those processes), and deleting the namespaces removes the veths
and the route with them. Used by ``tests/test_multihost.py`` and
``bench/multihost_bench.py``.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent

#: Third octets of 169.254.X.0/24 a network may take (clear of the
#: well-known 169.254.169.254; a free one is picked at random).
_OCTETS = range(100, 200)
_ETCD_PORT = 2379
_DAEMON_PORT = 1650
#: Every port ``weed mini`` opens (see tests/fixtures/s3.py).
_WEED_PORT_FLAGS = ("s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "filer.port",
                    "filer.port.grpc", "volume.port", "volume.port.grpc", "admin.port",
                    "admin.port.grpc")


def netns_problem() -> str:
    """Why network namespaces cannot be made here, or "" when they can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are a Linux feature"
    if os.geteuid() != 0:
        return "not root: creating network namespaces and veth pairs needs CAP_NET_ADMIN"
    if shutil.which("ip") is None:
        return "no `ip` command: apt-get install -y iproute2"
    probe = f"tkprobe{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"the kernel refuses a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return ""


def _ip(*args: str, ns: str | None = None) -> str:
    """Run ``ip [-n NS] ARGS``; RuntimeError with its stderr when it fails."""
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {r.stderr.strip()}")
    return r.stdout


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of processes on the hosts: no proxies (every address is
    on this machine), no S3 keys (the test SeaweedFS has open auth) and no
    TUSK_* settings (the flags say everything)."""
    drop = {"http_proxy", "https_proxy", "all_proxy", "grpc_proxy", "no_proxy",
            "aws_access_key_id", "aws_secret_access_key", "aws_session_token",
            "minio_root_user", "minio_root_password", "s3_bucket"}
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in drop and not k.startswith("TUSK_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    env["NO_PROXY"] = env["no_proxy"] = "*"
    env.update(extra or {})
    return env


@dataclass
class Host:
    """One network namespace with one link to the router.

    Attributes:
        role: short name (``etcd``, ``w1``...).
        ns: the namespace's name.
        address: its address on the link.
        link: the router's end of the link (in the router namespace).
    """

    role: str
    ns: str
    address: str
    link: str


class Network:
    """Hosts (network namespaces) joined by a router namespace; see the module docstring."""

    def __init__(self) -> None:
        self.tag = f"tk{uuid.uuid4().hex[:5]}"
        self.router = f"{self.tag}-router"
        self.root_link = f"{self.tag}-t"  # the test's own end, in the root namespace
        self.octet = 0
        self.hosts: dict[str, Host] = {}
        self.procs: list[subprocess.Popen[bytes]] = []
        self._namespaces: list[str] = []

    # -- building ----------------------------------------------------------------

    def up(self) -> Network:
        """Create the router and the test's link to it; pick a free /24."""
        self._add_ns(self.router)
        _ip("netns", "exec", self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        taken = _ip("-4", "-o", "addr") + _ip("-4", "route")
        free = [x for x in _OCTETS if f"169.254.{x}." not in taken]
        random.shuffle(free)
        for x in free[:5]:
            self.octet = x
            try:
                _ip("link", "add", self.root_link, "type", "veth", "peer", "name", "to-test",
                    "netns", self.router)
                _ip("addr", "add", f"{self._addr(0, 2)}/30", "dev", self.root_link)
                _ip("link", "set", self.root_link, "up")
                _ip("addr", "add", f"{self._addr(0, 1)}/30", "dev", "to-test", ns=self.router)
                _ip("link", "set", "to-test", "up", ns=self.router)
                # Fails if another run took this /24 meanwhile: then try another.
                _ip("route", "add", self._subnet(), "via", self._addr(0, 1), "dev",
                    self.root_link)
                return self
            except RuntimeError:
                subprocess.run(["ip", "link", "del", self.root_link], capture_output=True)
        raise RuntimeError("no free 169.254.X.0/24 for the test network")

    def _addr(self, link: int, end: int) -> str:
        """Address ``end`` (1: router, 2: host) of link number ``link``'s /30."""
        return f"169.254.{self.octet}.{4 * link + end}"

    def _subnet(self) -> str:
        return f"169.254.{self.octet}.0/24"

    def _add_ns(self, name: str) -> None:
        _ip("netns", "add", name)
        self._namespaces.append(name)
        _ip("link", "set", "lo", "up", ns=name)

    def add_host(self, role: str) -> Host:
        """A new namespace linked to the router, with a route to the others."""
        n = len(self.hosts) + 1
        ns, link = f"{self.tag}-{role}", f"to-{role}"
        self._add_ns(ns)
        _ip("link", "add", link, "netns", self.router, "type", "veth", "peer", "name", "eth0",
            "netns", ns)
        _ip("addr", "add", f"{self._addr(n, 1)}/30", "dev", link, ns=self.router)
        _ip("link", "set", link, "up", ns=self.router)
        _ip("addr", "add", f"{self._addr(n, 2)}/30", "dev", "eth0", ns=ns)
        _ip("link", "set", "eth0", "up", ns=ns)
        _ip("route", "add", self._subnet(), "via", self._addr(n, 1), ns=ns)
        host = Host(role, ns, self._addr(n, 2), link)
        self.hosts[role] = host
        return host

    # -- using -------------------------------------------------------------------

    def cut(self, host: Host) -> None:
        """Pull the cable: the router's end of the host's link goes down."""
        _ip("link", "set", host.link, "down", ns=self.router)

    def restore(self, host: Host) -> None:
        _ip("link", "set", host.link, "up", ns=self.router)

    def popen(self, host: Host, argv: Sequence[str], log: IO[bytes],
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` on ``host``; its PID is recorded and killed by :meth:`close`."""
        proc = subprocess.Popen(["ip", "netns", "exec", host.ns, *argv], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env if env is not None else child_env(),
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def reaches(self, host: Host, address: str, port: int, timeout: float = 1.0) -> bool:
        """Whether a TCP connection from ``host`` to ``address:port`` opens."""
        code = (f"import socket; socket.create_connection(({address!r}, {port}), "
                f"timeout={timeout}).close()")
        r = subprocess.run(["ip", "netns", "exec", host.ns, sys.executable, "-S", "-c", code],
                           capture_output=True, timeout=timeout + 30)
        return r.returncode == 0

    # -- tearing down ------------------------------------------------------------

    def close(self) -> None:
        """Kill every process started here (by PID), then whatever is left in
        the namespaces, then delete them (their veths and the route go too)."""
        for proc in self.procs:
            kill(proc)
        for ns in self._namespaces:
            for _ in range(50):
                r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
                pids = [int(p) for p in r.stdout.split()]
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.1)
        for ns in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self._namespaces.clear()
        subprocess.run(["ip", "link", "del", self.root_link], capture_output=True)


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``proc`` (by PID) and reap it."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)


def wait_for(cond: Callable[[], Any], timeout: float, what: str, poll: float = 0.05) -> Any:
    """Poll ``cond`` until it returns something true, and return that.
    AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return int(r.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _tcp_ok(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=1).close()
        return True
    except OSError:
        return False


@dataclass
class WorkerHost:
    """A host running ``tusk worker``.

    Attributes:
        instances: the worker instance IDs its processes announced, oldest
            first (a restarted worker is a new instance).
    """

    host: Host
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    instances: list[str] = field(default_factory=list)

    @property
    def instance(self) -> str:
        return self.instances[-1]

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"


_ANNOUNCE = re.compile(r"tusk worker (\w+) running datums")


class Cluster:
    """A tusk deployment over :class:`Network` hosts (see the module docstring).

    Args:
        workdir: data directories and logs of every process.
        workers: how many worker hosts (``w1``, ``w2``...), one ``tusk worker`` each.
        claim_ttl: the workers' ``--claim-ttl`` (seconds a silent worker's
            claims outlive it).
    """

    def __init__(self, workdir: Path, workers: int = 2, claim_ttl: float = 3.0) -> None:
        self.workdir = workdir
        self.claim_ttl = claim_ttl
        self.net = Network()
        self.workers: dict[str, WorkerHost] = {}
        self._n_workers = workers
        self._weed_ports: list[int] = []
        self._clients: list[Any] = []
        self.daemon: subprocess.Popen[bytes] | None = None

    # -- start -------------------------------------------------------------------

    def start(self) -> Cluster:
        """Build the network and start etcd, SeaweedFS, the daemon and the workers."""
        from tests.fixtures.common import free_ports

        net = self.net.up()
        etcd, s3, daemon = (net.add_host(r) for r in ("etcd", "s3", "daemon"))
        for i in range(1, self._n_workers + 1):
            role = f"w{i}"
            d = self.workdir / role
            d.mkdir(parents=True, exist_ok=True)
            self.workers[role] = WorkerHost(net.add_host(role), d, d / "worker.log")
        self.etcd_url = f"{etcd.address}:{_ETCD_PORT}"
        self._start_etcd(etcd)
        # Ports free on the root namespace's loopback: weed names a unix
        # socket in /tmp after each port, and those are shared by every
        # namespace.
        self._weed_ports = free_ports(len(_WEED_PORT_FLAGS))
        self.s3_url = f"{s3.address}:{self._weed_ports[0]}"
        self._start_weed(s3)
        self.metadata = f"etcd://{self.etcd_url}/tusk"
        self.storage = f"s3://tusk/objects?endpoint=http://{self.s3_url}"
        self.address = f"{daemon.address}:{_DAEMON_PORT}"
        self._start_daemon(daemon)
        for w in self.workers.values():
            self.start_worker(w)
        return self

    def _log(self, name: str) -> IO[bytes]:
        return open(self.workdir / f"{name}.log", "ab")  # the child keeps a copy

    def _start_etcd(self, host: Host) -> None:
        from tests.fixtures.etcd import require_etcd

        binary = require_etcd()
        client, peer = f"http://{self.etcd_url}", "http://127.0.0.1:2380"
        with self._log("etcd") as log:
            proc = self.net.popen(host, [
                binary, "--name", "tusk", "--data-dir", str(self.workdir / "etcd"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"tusk={peer}", "--log-level", "error"], log)
        self._wait_up(proc, "etcd", lambda: _http_ok(f"http://{self.etcd_url}/health"))

    def _start_weed(self, host: Host) -> None:
        from tests.fixtures.s3 import require_weed

        weed = require_weed()
        d = self.workdir / "seaweedfs"
        d.mkdir(exist_ok=True)
        with self._log("seaweedfs") as log:
            proc = self.net.popen(host, [
                weed, "mini", f"-dir={d}", f"-ip={host.address}", f"-ip.bind={host.address}",
                "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
                "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.volumeSizeLimitMB=128",
                *(f"-{f}={p}" for f, p in zip(_WEED_PORT_FLAGS, self._weed_ports, strict=True))],
                log)
        self._wait_up(proc, "seaweedfs", lambda: _http_ok(f"http://{self.s3_url}/"), 60)

    def _start_daemon(self, host: Host) -> None:
        with self._log("daemon") as log:
            self.daemon = self.net.popen(host, [
                sys.executable, "-m", "tusk.entry", "daemon",
                "--data-dir", str(self.workdir / "daemon"), "--address", self.address,
                "--metadata", self.metadata, "--storage", self.storage, "--no-workers",
                "--gc-interval", "0", "--s3-address", "off", "--http-address", "off"], log)
        addr, _, port = self.address.rpartition(":")
        self._wait_up(self.daemon, "daemon", lambda: _tcp_ok(addr, int(port)), 60)

    def _wait_up(self, proc: subprocess.Popen[bytes], name: str, ok: Callable[[], bool],
                 timeout: float = 30) -> None:
        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n"
                                     f"{self.log_tail(name)}")
            return ok()

        try:
            wait_for(up, timeout, f"{name} to answer")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail(name)}") from None

    def log_tail(self, name: str, size: int = 3000) -> str:
        try:
            return (self.workdir / f"{name}.log").read_text(errors="replace")[-size:]
        except OSError:
            return "(no log)"

    # -- workers -----------------------------------------------------------------

    def start_worker(self, w: WorkerHost) -> str:
        """Start ``tusk worker`` on ``w``'s host; returns its instance ID."""
        offset = w.log_path.stat().st_size if w.log_path.exists() else 0
        with open(w.log_path, "ab") as log:
            w.proc = self.net.popen(w.host, [
                sys.executable, "-m", "tusk.entry", "worker", "--data-dir", str(w.data_dir),
                "--metadata", self.metadata, "--storage", self.storage, "--runner", "process",
                "--claim-ttl", f"{self.claim_ttl:g}"], log)
        proc = w.proc

        def announced() -> str:
            if proc.poll() is not None:
                raise AssertionError(f"worker on {w.host.role} exited with {proc.returncode}:"
                                     f"\n{w.log()[offset:][-3000:]}")
            m = _ANNOUNCE.search(w.log()[offset:])
            return m.group(1) if m else ""

        w.instances.append(wait_for(announced, 60, f"the worker on {w.host.role} to start"))
        return w.instance

    def kill9_worker(self, w: WorkerHost) -> None:
        """SIGKILL the host's worker process (by PID), as a crash would."""
        assert w.proc is not None
        kill(w.proc)

    def stop_worker(self, w: WorkerHost) -> None:
        """SIGTERM the host's worker and wait (SIGKILL after 30 s)."""
        assert w.proc is not None
        if w.proc.poll() is None:
            w.proc.send_signal(signal.SIGTERM)
            try:
                w.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                kill(w.proc)

    def host_of(self, instance: str) -> str:
        """The role of the host whose worker announced ``instance`` ("?" if none)."""
        return next((r for r, w in self.workers.items() if instance in w.instances), "?")

    def scratch_outputs(self, w: WorkerHost) -> list[str]:
        """Files the datum running on ``w`` now has written to ``/pfs/out``
        (the sandbox's output is a host directory under the worker's scratch)."""
        found: list[str] = []
        for out in (w.data_dir / "scratch").glob("worker-*/*/datum/out"):
            try:
                found += [p.name for p in out.iterdir()]
            except OSError:
                pass
        return found

    # -- clients -----------------------------------------------------------------

    def client(self) -> Any:
        """A client of the daemon (closed by :meth:`close`), once it answers."""
        from tusk.client import Client

        c = Client(self.address)
        self._clients.append(c)

        def answers() -> bool:
            try:
                list(c.list_repo())
                return True
            except Exception:
                return False

        wait_for(answers, 60, f"the daemon at {self.address} to answer", poll=0.2)
        return c

    def meta(self) -> Any:
        """The deployment's metadata store, read from the test (root) namespace."""
        from pfs.metadata import open_metadata_store

        return open_metadata_store(self.metadata)

    # -- stop --------------------------------------------------------------------

    def close(self) -> None:
        for c in self._clients:
            try:
                c.close()
            except Exception:
                pass
        self.net.close()
        for port in self._weed_ports:
            for kind in ("s3", "s3-grpc", "filer", "filer-grpc", "master-grpc", "volume-grpc",
                         "admin-grpc"):
                try:
                    os.unlink(f"/tmp/seaweedfs-{kind}-{port}.sock")
                except OSError:
                    pass
