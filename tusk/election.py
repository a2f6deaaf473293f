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

The keepalive notices a loss only at its next round (up to ``ttl / 3``
later), so noticing alone cannot stop a resumed master from writing first.
The *fencing token* does: the master key's revision when this daemon took it
(:attr:`Election.token`; the key keeps it exactly as long as it is held, and a
successor re-creates it at a higher one). The daemon writes only through
:meth:`Election.fenced` (``pfs.metadata_fence``), which adds
``Compare(MASTER_KEY, token)`` to every metadata write -- every PFS, PPS,
transaction and server write, ``put`` and ``delete`` included -- so the store
itself refuses, atomically, any write made after the key changed. A refused
write raises :class:`pfs.errors.NotMaster` (never an ordinary CAS conflict,
so retry loops stop) and reports the loss like the keepalive does: the
daemon exits with status 3. Both backends evaluate the compare inside the
write transaction (an etcd Txn; SQLite under its write lock). Lease calls
and the object store are not fenced: new objects become reachable only
through (fenced) metadata, and what a resumed master's garbage collector may
still delete is in ``docs/gc-and-masters.md``.
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
from pfs.metadata_fence import FencedMetadataStore

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
        #: The fencing token: the key's mod_revision when this election took
        #: it (0 when not held). See :meth:`fenced`.
        self.token = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost_lock = threading.Lock()
        self._lost_reported = False

    @property
    def held(self) -> bool:
        """Whether this election currently holds the key (as far as it knows)."""
        return self.lease != 0

    def _try_acquire(self) -> tuple[bool, MasterInfo | None]:
        """One attempt. Returns (won, holder when lost)."""
        lease = self.meta.grant_lease(self.ttl)
        try:
            result = self.meta.txn_result([Compare(self.key, 0)],
                                          [Put(self.key, self.me.encode(), lease)])
            if result.succeeded:
                # The key now has the txn's revision, and keeps it while held.
                self.lease, self.token = lease, result.revision
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
                self._report_lost(f"this daemon is no longer master: {lost}")
                return
            if unreachable_since is not None:
                log.warning("master lease renewed again after %.1f s",
                            time.monotonic() - unreachable_since)
                unreachable_since = None

    def _report_lost(self, reason: str) -> None:
        """Call ``on_lost`` once, whoever notices first: the keepalive, or a
        write refused by the fence (:meth:`fenced`)."""
        with self._lost_lock:
            first, self._lost_reported = not self._lost_reported, True
            self.lease = 0
        if first:
            self.on_lost(reason)

    def fenced(self, meta: MetadataStore) -> FencedMetadataStore:
        """``meta`` wrapped so that every write holds only while this election
        still holds the key at :attr:`token` (``pfs.metadata_fence``). A write
        refused by the fence reports the loss like the keepalive does.

        Raises:
            FailedPrecondition: the key is not held (campaign first).
        """
        if not self.token:
            raise FailedPrecondition(f"{self.key} is not held by this process: campaign first")
        return FencedMetadataStore(meta, self.key, self.token, on_fenced=self._report_lost)

    def resign(self) -> None:
        """Stop the keepalive and revoke the lease (deleting the key). Idempotent;
        errors are logged, not raised: the lease then simply expires."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        lease, self.lease, self.token = self.lease, 0, 0
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

    def fenced(self, meta: MetadataStore) -> MetadataStore:
        """``meta`` with every write fenced by this mastership (see
        :meth:`Election.fenced`): the daemon writes only through it."""
        return self.election.fenced(meta)

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
