"""One master per data set: the daemon's election through the metadata store.

Two ``tusk daemon`` processes pointed at the same data (the same etcd prefix,
or the same SQLite file) would both finish commits, run pipeline masters and
collect garbage, and each would undo the other's work. So before it serves, a
daemon becomes *master*: it creates the key :data:`MASTER_KEY` with a lease,
in a create-if-absent transaction (``Compare(key, 0)``), the value saying who
holds it (:class:`MasterInfo`). A thread keeps the lease alive; a clean
shutdown revokes it, which deletes the key at once.

A second daemon finds the key taken. By default it waits (logging once who
holds it) and polls until the key disappears -- because the holder stopped,
or because its lease expired after it died -- then takes over. With
``--no-wait`` it refuses with :class:`MasterHeld` instead.

Liveness is the lease's: etcd expires it ``ttl`` seconds after the last
keepalive; the SQLite store uses wall-clock expiry shared by every process
opening the file, so two daemons on one data directory exclude each other the
same way. One shortcut: a holder on *this* machine (same host name, boot and
PID namespace) whose PID no longer exists is known dead, so its key is taken
over at once instead of after the TTL (a supervisor restarting a crashed
daemon need not wait). A live PID -- even a reused one -- means "wait".

Losing the lease while serving (the store says it expired: e.g. etcd was
unreachable for longer than the TTL, or the process was frozen) means another
daemon may already be master. The daemon then must stop writing; the simplest
correct reaction is to exit non-zero at once (:func:`exit_on_lost`) and let
a supervisor restart it, which then waits its turn. Merely *not reaching* the
store is not a loss: every write goes through the store too, so an
unreachable store already stops writes, and etcd renews leases when it comes
back, so the daemon recovers without a restart.

Limitation: there is no fencing token. Between the lease expiring and the
next keepalive noticing it (at most ``ttl / 3``), an old master whose store
connection just came back could still commit one transaction. Closing that
window needs every PFS transaction to compare the master key's revision.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from pfs.errors import FailedPrecondition, NotFound, TuskError, Unavailable
from pfs.metadata import Compare, Delete, MetadataStore, Put

log = logging.getLogger("tusk.election")

#: The metadata key whose holder is the master daemon.
MASTER_KEY = "masters/daemon"
#: Default lease TTL in seconds: how long a dead master blocks a successor.
DEFAULT_TTL = 10.0


def _read_text(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _machine_identity() -> tuple[str, str]:
    """(boot id, PID namespace) of this process: with the host name they say
    whether a PID recorded by another process means the same PID space."""
    boot = _read_text("/proc/sys/kernel/random/boot_id")
    try:
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = ""
    return boot, pidns


@dataclass(frozen=True)
class MasterInfo:
    """Who holds the master key (its JSON value)."""

    host: str
    pid: int
    address: str
    started: float
    boot_id: str = ""
    pid_ns: str = ""

    @staticmethod
    def of_this_process(address: str) -> MasterInfo:
        boot, pidns = _machine_identity()
        return MasterInfo(host=socket.gethostname(), pid=os.getpid(), address=address,
                          started=time.time(), boot_id=boot, pid_ns=pidns)

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @staticmethod
    def decode(data: bytes) -> MasterInfo:
        try:
            d = json.loads(data)
            return MasterInfo(host=str(d.get("host", "?")), pid=int(d.get("pid", 0)),
                              address=str(d.get("address", "?")),
                              started=float(d.get("started", 0.0)),
                              boot_id=str(d.get("boot_id", "")), pid_ns=str(d.get("pid_ns", "")))
        except (ValueError, TypeError, AttributeError):
            # A value we cannot parse still means "held": describe it vaguely.
            return MasterInfo(host="?", pid=0, address="?", started=0.0)

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started)) \
            if self.started else "?"
        return f"pid {self.pid} on {self.host}, address {self.address}, started {when}"

    def same_pid_space(self, other: MasterInfo) -> bool:
        """Whether this holder's PID can be checked from ``other``'s process."""
        return (self.host == other.host and bool(self.boot_id) and self.boot_id == other.boot_id
                and bool(self.pid_ns) and self.pid_ns == other.pid_ns)


class MasterHeld(FailedPrecondition):
    """Another live daemon is master for this data (``--no-wait``).

    Attributes:
        holder: who holds the master key.
    """

    def __init__(self, holder: MasterInfo, store: str) -> None:
        super().__init__(
            f"another tusk daemon ({holder.describe()}) is master for this data ({store}); "
            f"stop it first, or start this one without --no-wait to wait for it to stop")
        self.holder = holder


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # unknown: assume alive, i.e. wait for the lease
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def exit_on_lost(reason: str) -> None:
    """The daemon's reaction to a lost lease: log and exit with status 3 at
    once (no graceful stop: a graceful stop would let in-flight calls write)."""
    log.critical("%s; exiting so that a supervisor can restart this daemon", reason)
    for h in logging.getLogger().handlers:
        h.flush()
    sys.stderr.flush()
    os._exit(3)


class Election:
    """Campaign for, keep and resign the master key of one metadata store.

    Args:
        meta: the store (the election does not close it; see :func:`become_master`).
        me: what to record as the holder.
        ttl: lease TTL in seconds (etcd rounds up to whole seconds).
        on_lost: called once, from the keepalive thread, if the lease is lost
            while held; the default exits the process (:func:`exit_on_lost`).
        poll: seconds between checks while waiting for the holder to go.
        key: the key to hold (tests use others).
    """

    def __init__(self, meta: MetadataStore, me: MasterInfo, ttl: float = DEFAULT_TTL,
                 on_lost: Callable[[str], None] = exit_on_lost, poll: float = 0.25,
                 key: str = MASTER_KEY) -> None:
        if ttl <= 0:
            raise ValueError(f"ttl must be > 0, got {ttl}")
        self.meta = meta
        self.me = me
        self.ttl = ttl
        self.on_lost = on_lost
        self.poll = poll
        self.key = key
        self.lease = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def held(self) -> bool:
        """Whether this election currently holds the key (as far as it knows)."""
        return self.lease != 0

    def _try_acquire(self) -> tuple[bool, MasterInfo | None]:
        """One attempt. Returns (won, holder when lost)."""
        lease = self.meta.grant_lease(self.ttl)
        try:
            if self.meta.txn([Compare(self.key, 0)], [Put(self.key, self.me.encode(), lease)]):
                self.lease = lease
                return True, None
        except BaseException:
            self.meta.revoke_lease(lease)
            raise
        self.meta.revoke_lease(lease)
        kv = self.meta.get(self.key)
        if kv is None:
            return False, None  # released meanwhile: retry at once
        holder = MasterInfo.decode(kv.value)
        if holder.same_pid_space(self.me) and holder.pid != self.me.pid \
                and not _pid_alive(holder.pid):
            # Its process is gone (SIGKILL, crash): don't wait out the lease.
            log.warning("the previous master (%s) is no longer running; taking over",
                        holder.describe())
            if kv.lease:
                self.meta.revoke_lease(kv.lease)
            else:
                self.meta.txn([Compare(self.key, kv.mod_revision)], [Delete(self.key)])
            return False, None
        return False, holder

    def campaign(self, wait: bool = True, cancel: threading.Event | None = None) -> bool:
        """Become master, waiting for the current one to go if ``wait``.

        Returns True once master; False if ``cancel`` was set while waiting.
        Starts the keepalive thread.

        Raises:
            MasterHeld: the key is held and ``wait`` is False.
            pfs.errors.Unavailable: the store cannot be reached.
        """
        said = False
        while True:
            try:
                won, holder = self._try_acquire()
            except Unavailable as exc:
                if not said:
                    raise  # unreachable at start: say so, as opening the PFS would
                # While waiting, a store hiccup (etcd restarting, a frozen
                # SQLite writer holding the lock) only delays the takeover.
                log.debug("cannot campaign now: %s", exc)
                time.sleep(self.poll)
                continue
            if won:
                if said:
                    log.warning("the previous master is gone; this daemon is master now")
                self._thread = threading.Thread(target=self._keepalive_loop, daemon=True,
                                                name="tusk-master-keepalive")
                self._thread.start()
                return True
            if holder is None:
                continue
            if not wait:
                raise MasterHeld(holder, self.meta.describe())
            if not said:
                log.warning("another tusk daemon (%s) is master for this data; waiting for "
                            "it to stop (or stop it first)", holder.describe())
                said = True
            # Poll rather than watch: cheap, identical on every backend, and
            # indifferent to outages of the store while we wait.
            while True:
                if cancel is not None and cancel.wait(self.poll):
                    return False
                if cancel is None:
                    time.sleep(self.poll)
                try:
                    kv = self.meta.get(self.key)
                except TuskError as exc:
                    log.debug("cannot read %s while waiting: %s", self.key, exc)
                    continue
                if kv is None:
                    break
                holder = MasterInfo.decode(kv.value)
                if holder.same_pid_space(self.me) and not _pid_alive(holder.pid):
                    break  # _try_acquire takes over from the dead process

    def _keepalive_loop(self) -> None:
        interval = self.ttl / 3
        unreachable_since: float | None = None
        while not self._stop.wait(interval):
            lease = self.lease
            if not lease:
                return
            try:
                self.meta.keepalive(lease)
                kv = self.meta.get(self.key)
                if kv is None or kv.lease != lease:
                    lost = "the master key was deleted or taken by another daemon"
                else:
                    lost = ""
            except NotFound:
                lost = f"the master lease expired (no keepalive for over {self.ttl:.0f} s)"
            except TuskError as exc:
                # Unreachable is not lost: writes fail anyway, and the lease
                # may well survive (etcd renews leases when it comes back).
                if unreachable_since is None:
                    unreachable_since = time.monotonic()
                    log.warning("cannot renew the master lease: %s", exc)
                continue
            if self._stop.is_set():
                return  # resigned while we were checking: not a loss
            if lost:
                self.lease = 0
                self.on_lost(f"this daemon is no longer master: {lost}")
                return
            if unreachable_since is not None:
                log.warning("master lease renewed again after %.1f s",
                            time.monotonic() - unreachable_since)
                unreachable_since = None

    def resign(self) -> None:
        """Stop the keepalive and revoke the lease (deleting the key). Idempotent;
        errors are logged, not raised: the lease then simply expires."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        lease, self.lease = self.lease, 0
        if lease:
            try:
                self.meta.revoke_lease(lease)
            except TuskError as exc:
                log.warning("could not release the master lease (it expires in %.0f s): %s",
                            self.ttl, exc)


class Mastership:
    """The daemon's election with the store it opened for it (closed on resign)."""

    def __init__(self, election: Election) -> None:
        self.election = election

    def resign(self) -> None:
        self.election.resign()
        self.election.meta.close()


def become_master(metadata_url: str, address: str, wait: bool = True,
                  ttl: float = DEFAULT_TTL,
                  on_lost: Callable[[str], None] = exit_on_lost) -> Mastership:
    """Open ``metadata_url`` and campaign for the daemon's master key.

    Uses its own store connection, because it must run before the PFS opens
    (opening it recovers half-finished commits: that is already master work).

    Raises:
        MasterHeld: with ``wait=False``, when another daemon is master.
        pfs.errors.TuskError: the store cannot be opened or reached.
    """
    from pfs.metadata import open_metadata_store

    meta = open_metadata_store(metadata_url)
    election = Election(meta, MasterInfo.of_this_process(address), ttl=ttl, on_lost=on_lost)
    try:
        election.campaign(wait=wait)
    except BaseException:
        election.resign()
        meta.close()
        raise
    return Mastership(election)
