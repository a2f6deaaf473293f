"""A listening TCP socket inside another process's network namespace.

Why: a pipeline's S3 gateway must be reachable by the user code, and by
nothing else, while the sandbox keeps no network (Docker's
``network_mode="none"``, bubblewrap's ``--unshare-net``). Such a sandbox still
has its own loopback interface. A socket bound to ``127.0.0.1`` *inside the
sandbox's network namespace* is reachable from the sandbox's loopback only,
and the worker can serve it from the host process: a socket stays in the
namespace it was created in, whichever thread later calls ``accept`` on it.
The sandbox gets no route to the host, and the host's own loopback services
(the daemon's gRPC port, etcd, S3) stay out of its reach.

How: a short-lived thread enters the target namespace with ``setns(2)``
(``os.setns`` exists only from Python 3.12, so through ``ctypes``), creates
and binds the socket there, and switches back. ``setns`` with
``CLONE_NEWNET`` changes the namespace of the calling *thread* only; the
thread is a fresh OS thread that exits right after, so even a failed switch
back cannot leave another part of the worker in the sandbox's namespace.

Entering a namespace needs ``CAP_SYS_ADMIN`` (the worker runs as root).

Process identity: a pid can be reused once its process dies. The target is
pinned with a pidfd before its namespace file is opened, the caller's
``check`` (e.g. "is this pid in the container's cgroup") runs after, and the
pidfd must still show the process alive at the end, so the namespace opened
is the checked process's. A namespace equal to the worker's own is refused
outright: serving there would expose the gateway on the host's loopback.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import socket
import threading
from collections.abc import Callable

__all__ = ["NetnsError", "listen_in_netns", "netns_supported"]

CLONE_NEWNET = 0x40000000
# Lets the bind succeed before the sandbox has brought its loopback up
# (bubblewrap does so while we bind); connections work once it is up.
_IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)

_libc: ctypes.CDLL | None = None


class NetnsError(Exception):
    """The socket could not be made; the message says why and what to do."""


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def netns_supported() -> tuple[bool, str]:
    """Whether this process can enter other network namespaces, and if not why."""
    if not hasattr(os, "pidfd_open"):
        return False, "this platform has no pidfd_open (Linux 5.3 or later is needed)"
    if os.geteuid() != 0:
        return False, (
            "the worker is not root: entering a sandbox's network namespace needs "
            "CAP_SYS_ADMIN; run the daemon or `tusk worker` as root"
        )
    return True, ""


def listen_in_netns(pid: int, port: int, *, host: str = "127.0.0.1", backlog: int = 64,
                    check: Callable[[], bool] | None = None) -> socket.socket:
    """A TCP socket listening on ``host:port`` in the network namespace of ``pid``.

    Args:
        pid: a process of the sandbox (its init), in this process's pid namespace.
        port: the port to bind (0: any free one; read it from ``getsockname``).
        check: called once the namespace is pinned; must return True if ``pid``
            is still the sandbox's process (e.g. a cgroup check).

    Raises:
        NetnsError: not root, the process is gone or failed ``check``, its
            namespace is the worker's own, or the bind failed (port taken).
    """
    ok, why = netns_supported()
    if not ok:
        raise NetnsError(why)
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise NetnsError(f"the sandbox's process {pid} is gone") from None
    try:
        try:
            target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NetnsError(f"the sandbox's process {pid} is gone") from None
        try:
            if check is not None and not check():
                raise NetnsError(f"process {pid} is not the sandbox's any more")
            if select.select([pidfd], [], [], 0)[0]:  # readable: it exited
                raise NetnsError(f"the sandbox's process {pid} exited")
            own = os.stat("/proc/thread-self/ns/net").st_ino
            if os.fstat(target).st_ino == own:
                raise NetnsError(
                    f"process {pid} shares the worker's network namespace: refusing to "
                    "serve there (it would be the host's loopback); the sandbox must "
                    "have no network (network_mode none / --unshare-net)"
                )
            return _bind_in(target, host, port, backlog)
        finally:
            os.close(target)
    finally:
        os.close(pidfd)


def _bind_in(target: int, host: str, port: int, backlog: int) -> socket.socket:
    result: list[socket.socket] = []
    failure: list[BaseException] = []

    def work() -> None:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    # A datum's listener replaces the previous datum's on the
                    # same port while its connections may sit in TIME_WAIT.
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.setsockopt(socket.IPPROTO_IP, _IP_FREEBIND, 1)
                    s.bind((host, port))
                    s.listen(backlog)
                except BaseException:
                    s.close()
                    raise
                result.append(s)
            finally:
                # If this fails the thread still ends, and its namespace with it.
                _setns(home)
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)
        finally:
            os.close(home)

    t = threading.Thread(target=work, name="tusk-netns-listen", daemon=True)
    t.start()
    t.join()
    if failure:
        exc = failure[0]
        for s in result:
            s.close()
        if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
            raise NetnsError(
                f"port {port} is taken inside the sandbox (by a process the user code "
                "left running?); the datum cannot get its S3 gateway"
            ) from exc
        if isinstance(exc, OSError) and exc.errno == errno.EPERM:
            raise NetnsError(
                "entering the sandbox's network namespace was refused (EPERM): the "
                "worker needs CAP_SYS_ADMIN (run it as root)"
            ) from exc
        raise NetnsError(f"could not listen inside the sandbox: {exc}") from exc
    return result[0]
