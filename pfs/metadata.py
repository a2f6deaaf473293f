"""The metadata store interface: small records with compare-and-swap and watches.

Modelled on etcd's data model, so the etcd backend is a thin adapter and the
embedded backends (memory, SQLite) behave the same way.

Implementations (each passes ``tests/test_metadata_store_contract.py``):

* :class:`MemoryMetadataStore` -- in-process, for unit tests.
* ``pfs.metadata_sqlite.SQLiteMetadataStore`` -- the embedded default.
* ``pfs.metadata_etcd.EtcdMetadataStore`` -- a real etcd (3.4+).

Contract:

* Keys are str (printable ASCII), values are bytes. Values are small
  (well under etcd's 1.5 MiB request limit; callers keep them < 64 KiB).
* Every write bumps one global, strictly increasing ``revision``; each key
  carries the ``mod_revision`` of its last write (``create_revision`` too).
* ``txn`` is atomic and isolated: if every :class:`Compare` holds, all ops are
  applied under one new revision and it returns True; otherwise nothing is
  written and it returns False. A txn carries at most 128 ops and 128
  compares. ``Compare(key, mod_revision=0)`` means "key does not exist".
  ``txn_result`` is the same call answering a :class:`TxnResult` (the
  revision it wrote at, how many keys it deleted): what a wrapper needs to
  build ``put`` and ``delete`` out of transactions
  (``pfs.metadata_fence``).
* ``range(prefix)`` yields ``KeyValue`` sorted by key, streamed in pages (the
  store never loads an unbounded number of keys at once).
* ``read_many(keys, prefixes, range_limit)`` reads several keys and the first
  ``range_limit`` keys under each of several prefixes *in one round trip and
  at one revision* (a consistent snapshot: etcd answers it with one read-only
  Txn). A call carries at most 128 keys + prefixes, like a txn; prefixes cut
  short are listed in :attr:`ReadResult.more` (continue with ``range``, or
  with :func:`range_rest`). :func:`get_many` splits any number of keys into
  such calls.
* ``watch(prefix, start_revision)`` yields :class:`Event` for every write to a
  key under ``prefix`` with revision >= ``start_revision`` (or, if None, after
  the watch starts), in revision order, until ``cancel()``; iteration blocks
  waiting for events. Events from other processes sharing the store arrive
  too (SQLite: by polling; etcd: natively).
* Leases: ``grant_lease(ttl)`` returns an id; keys put with that lease are
  deleted (producing DELETE events) when the lease expires or is revoked;
  ``keepalive(lease)`` extends it; an expired lease's keepalive raises
  :class:`pfs.errors.NotFound`.
* A backend that cannot reach its server raises :class:`pfs.errors.Unavailable`.
* Safe to use from several threads at once.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from pfs.errors import FailedPrecondition, InvalidArgument, NotFound

MAX_TXN_OPS = 128
"""etcd's default ``--max-txn-ops``; every backend enforces it so code that
passes on SQLite cannot fail later on etcd."""


RANGE_PAGE = 500
"""Keys fetched per page by ``range``: bounded memory for any number of keys."""


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int
    lease: int = 0


@dataclass(frozen=True)
class Compare:
    """Holds when ``key``'s mod_revision equals ``mod_revision`` (0 = absent)."""

    key: str
    mod_revision: int


@dataclass(frozen=True)
class Put:
    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True)
class Delete:
    key: str


Op = Put | Delete


@dataclass(frozen=True)
class Event:
    type: Literal["PUT", "DELETE"]
    key: str
    value: bytes  # empty for DELETE
    mod_revision: int


@dataclass(frozen=True)
class TxnResult:
    """What one :meth:`MetadataStore.txn_result` did.

    Attributes:
        succeeded: every compare held and the ops were applied (``txn``'s answer).
        revision: the store's revision after the call: the txn's own when it
            wrote something, else the revision it was evaluated at.
        deleted: how many existing keys its :class:`Delete` ops removed.
    """

    succeeded: bool
    revision: int
    deleted: int = 0


@dataclass(frozen=True)
class ReadResult:
    """What one :meth:`MetadataStore.read_many` saw, all at ``revision``.

    Attributes:
        revision: the store revision the reads were made at.
        kvs: every key asked for, mapped to its ``KeyValue`` or None if absent.
        ranges: every prefix asked for, mapped to its first keys, sorted.
        more: the prefixes that hold more keys than ``ranges`` shows.
    """

    revision: int
    kvs: Mapping[str, KeyValue | None]
    ranges: Mapping[str, Sequence[KeyValue]]
    more: frozenset[str] = frozenset()


class Watch(Protocol):
    def __iter__(self) -> Iterator[Event]: ...

    def cancel(self) -> None: ...


@runtime_checkable
class MetadataStore(Protocol):
    """A small transactional key-value store. See the module docstring."""

    def get(self, key: str) -> KeyValue | None: ...

    def range(self, prefix: str, start_after: str | None = None,
              limit: int | None = None) -> Iterator[KeyValue]: ...

    def read_many(self, keys: Sequence[str], prefixes: Sequence[str] = (),
                  range_limit: int = RANGE_PAGE) -> ReadResult:
        """Several gets and bounded ranges in one round trip, at one revision.

        Raises:
            InvalidArgument: more than :data:`MAX_TXN_OPS` keys + prefixes, or
                ``range_limit`` < 1.
        """
        ...

    def put(self, key: str, value: bytes, lease: int = 0) -> int:
        """Unconditional write; returns the new revision."""
        ...

    def delete(self, key: str) -> bool:
        """Unconditional delete; returns whether the key existed."""
        ...

    def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> bool: ...

    def txn_result(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        """``txn``, answering what it did (``txn`` is ``txn_result(...).succeeded``)."""
        ...

    def revision(self) -> int:
        """The store's current revision."""
        ...

    def watch(self, prefix: str, start_revision: int | None = None) -> Watch: ...

    def grant_lease(self, ttl: float) -> int: ...

    def keepalive(self, lease: int) -> None: ...

    def revoke_lease(self, lease: int) -> None: ...

    def close(self) -> None: ...

    def describe(self) -> str:
        """A short human description, e.g. ``sqlite:/root/.tusk/meta.db``."""
        ...


# --- shared by every backend -------------------------------------------------
#
# Everything below the Protocol is implementation: helpers that keep the three
# backends' edge cases identical, the in-memory backend and the URL factory.


class RevisionCompacted(FailedPrecondition):
    """A watch asked for history the store no longer keeps.

    Attributes:
        requested: the revision the watch needed next.
        compacted: the newest revision that was discarded.
    """

    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(
            f"revision {requested} has been compacted (history kept from revision "
            f"{compacted + 1}); re-read the current state with range() and watch "
            f"from its revision"
        )
        self.requested = requested
        self.compacted = compacted


def validate_txn(compares: Sequence[Compare], ops: Sequence[Op]) -> None:
    """Reject transactions that etcd would reject, in every backend alike.

    Raises:
        InvalidArgument: more than :data:`MAX_TXN_OPS` ops or compares, or one
            key written twice in the same txn (etcd: "duplicate key given in
            txn request").
    """
    if len(ops) > MAX_TXN_OPS:
        raise InvalidArgument(
            f"a metadata transaction carries at most {MAX_TXN_OPS} ops, got {len(ops)}; "
            f"split it into smaller transactions"
        )
    if len(compares) > MAX_TXN_OPS:
        raise InvalidArgument(
            f"a metadata transaction carries at most {MAX_TXN_OPS} compares, "
            f"got {len(compares)}")
    seen: set[str] = set()
    for op in ops:
        if op.key in seen:
            raise InvalidArgument(f"key {op.key!r} is written twice in one transaction")
        seen.add(op.key)
    for c in compares:
        if c.mod_revision < 0:
            raise InvalidArgument(f"compare on {c.key!r}: mod_revision must be >= 0")


def validate_read(keys: Sequence[str], prefixes: Sequence[str], range_limit: int) -> None:
    """Reject a ``read_many`` that etcd would reject (or that is unbounded).

    Raises:
        InvalidArgument: more than :data:`MAX_TXN_OPS` keys + prefixes (etcd
            counts a Txn's reads against the same limit), or ``range_limit`` < 1.
    """
    if len(keys) + len(prefixes) > MAX_TXN_OPS:
        raise InvalidArgument(
            f"a metadata read carries at most {MAX_TXN_OPS} keys and prefixes, got "
            f"{len(keys) + len(prefixes)}; split it (get_many does) into smaller reads")
    if range_limit < 1:
        raise InvalidArgument(f"range_limit must be >= 1, got {range_limit}")


def get_many(store: MetadataStore, keys: Iterable[str]) -> dict[str, KeyValue | None]:
    """Any number of keys, :data:`MAX_TXN_OPS` per round trip.

    Each batch is a snapshot; different batches may see different revisions.
    """
    out: dict[str, KeyValue | None] = {}
    batch: list[str] = []
    for key in keys:
        batch.append(key)
        if len(batch) == MAX_TXN_OPS:
            out.update(store.read_many(batch).kvs)
            batch = []
    if batch:
        out.update(store.read_many(batch).kvs)
    return out


def range_rest(store: MetadataStore, result: ReadResult, prefix: str) -> Iterator[KeyValue]:
    """Every key under ``prefix``: those ``result`` holds, then (if it was cut
    short) the rest from ``store.range``, which is read at a later revision."""
    first = result.ranges[prefix]
    yield from first
    if prefix in result.more and first:
        yield from store.range(prefix, start_after=first[-1].key)


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix``.

    Returns None when there is no such bound (empty prefix, or all ``\\x7f``),
    meaning "to the end of the key space".
    """
    p = prefix.rstrip("\x7f")
    if not p:
        return None
    return p[:-1] + chr(ord(p[-1]) + 1)


# --- the in-memory backend ---------------------------------------------------


@dataclass
class _MemLease:
    ttl: float
    expires_at: float  # time.monotonic()
    keys: set[str]


class _MemoryWatch:
    """A cursor over the memory store's event log."""

    def __init__(self, store: MemoryMetadataStore, prefix: str, start_revision: int) -> None:
        self._store = store
        self._prefix = prefix
        self._next_rev = start_revision
        self._pos: int | None = None  # index into the store's log, found lazily
        self._cancelled = False

    def cancel(self) -> None:
        with self._store._cond:
            self._cancelled = True
            self._store._cond.notify_all()

    def __iter__(self) -> Iterator[Event]:
        store = self._store
        while True:
            with store._cond:
                batch: list[Event] = []
                while not self._cancelled and not store._closed:
                    store._expire_locked()
                    if self._pos is None:
                        self._pos = bisect.bisect_left(store._log_revs, self._next_rev)
                    log = store._log
                    while self._pos < len(log) and len(batch) < RANGE_PAGE:
                        ev = log[self._pos]
                        self._pos += 1
                        if ev.key.startswith(self._prefix):
                            batch.append(ev)
                    if batch:
                        break
                    # Wake at the next lease expiry: expiring leases produce
                    # DELETE events even when nobody else touches the store.
                    store._cond.wait(timeout=store._until_next_expiry_locked())
                if not batch:  # cancelled, or the store was closed
                    return
            # Yield outside the lock so a slow consumer never blocks writers.
            yield from batch


class MemoryMetadataStore:
    """An in-process :class:`MetadataStore` for unit tests.

    Keeps the full event history in memory (no compaction): fine for tests,
    not for long-running processes. Leases use the monotonic clock and expire
    lazily, on the next access or while a watcher waits.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._kv: dict[str, KeyValue] = {}
        self._keys: list[str] = []  # sorted, for range
        self._rev = 0
        self._log: list[Event] = []
        self._log_revs: list[int] = []  # parallel to _log, for bisect
        self._leases: dict[int, _MemLease] = {}
        self._next_lease = 1
        self._closed = False

    # -- internals (call with self._cond held) --

    def _until_next_expiry_locked(self) -> float | None:
        if not self._leases:
            return None
        soonest = min(le.expires_at for le in self._leases.values())
        return max(0.0, soonest - time.monotonic()) + 0.001

    def _expire_locked(self) -> None:
        now = time.monotonic()
        expired = [lid for lid, le in self._leases.items() if le.expires_at <= now]
        for lid in expired:
            self._revoke_locked(lid)

    def _revoke_locked(self, lease: int) -> None:
        le = self._leases.pop(lease, None)
        if le is None or not le.keys:
            return
        # Like etcd: all of a lease's keys go in one revision.
        self._rev += 1
        for key in sorted(le.keys):
            self._remove_locked(key)
            self._emit_locked(Event("DELETE", key, b"", self._rev))
        self._cond.notify_all()

    def _emit_locked(self, ev: Event) -> None:
        self._log.append(ev)
        self._log_revs.append(ev.mod_revision)

    def _remove_locked(self, key: str) -> bool:
        old = self._kv.pop(key, None)
        if old is None:
            return False
        i = bisect.bisect_left(self._keys, key)
        del self._keys[i]
        if old.lease and old.lease in self._leases:
            self._leases[old.lease].keys.discard(key)
        return True

    def _put_locked(self, key: str, value: bytes, lease: int) -> None:
        old = self._kv.get(key)
        if old is None:
            bisect.insort(self._keys, key)
            create = self._rev
        else:
            create = old.create_revision
            if old.lease and old.lease in self._leases:
                self._leases[old.lease].keys.discard(key)
        if lease:
            self._leases[lease].keys.add(key)
        self._kv[key] = KeyValue(key, bytes(value), self._rev, create, lease)
        self._emit_locked(Event("PUT", key, bytes(value), self._rev))

    def _check_lease_locked(self, lease: int) -> None:
        if lease and lease not in self._leases:
            raise NotFound(f"lease {lease:x} not found (expired or revoked); grant a new one")

    def _check_open(self) -> None:
        if self._closed:
            raise FailedPrecondition("metadata store is closed")

    # -- MetadataStore --

    def get(self, key: str) -> KeyValue | None:
        with self._cond:
            self._check_open()
            self._expire_locked()
            return self._kv.get(key)

    def read_many(self, keys: Sequence[str], prefixes: Sequence[str] = (),
                  range_limit: int = RANGE_PAGE) -> ReadResult:
        validate_read(keys, prefixes, range_limit)
        with self._cond:  # one lock hold: one revision
            self._check_open()
            self._expire_locked()
            ranges: dict[str, list[KeyValue]] = {}
            more: set[str] = set()
            for prefix in prefixes:
                end = prefix_end(prefix)
                i = bisect.bisect_left(self._keys, prefix)
                # One key past the limit tells whether the range was cut short.
                found = [k for k in self._keys[i:i + range_limit + 1] if end is None or k < end]
                if len(found) > range_limit:
                    more.add(prefix)
                ranges[prefix] = [self._kv[k] for k in found[:range_limit]]
            return ReadResult(self._rev, {k: self._kv.get(k) for k in keys}, ranges,
                              frozenset(more))

    def range(self, prefix: str, start_after: str | None = None,
              limit: int | None = None) -> Iterator[KeyValue]:
        end = prefix_end(prefix)
        cursor = prefix if start_after is None or start_after < prefix else start_after
        inclusive = start_after is None or start_after < prefix
        left = limit
        while left is None or left > 0:
            page = RANGE_PAGE if left is None else min(RANGE_PAGE, left)
            with self._cond:
                self._check_open()
                self._expire_locked()
                i = (bisect.bisect_left if inclusive else bisect.bisect_right)(self._keys, cursor)
                keys = self._keys[i:i + page]
                if end is not None:
                    keys = [k for k in keys if k < end]
                items = [self._kv[k] for k in keys]
            if not items:
                return
            yield from items
            if left is not None:
                left -= len(items)
            cursor, inclusive = items[-1].key, False
            if len(items) < page:
                return

    def put(self, key: str, value: bytes, lease: int = 0) -> int:
        with self._cond:
            self._check_open()
            self._expire_locked()
            self._check_lease_locked(lease)
            self._rev += 1
            self._put_locked(key, value, lease)
            self._cond.notify_all()
            return self._rev

    def delete(self, key: str) -> bool:
        with self._cond:
            self._check_open()
            self._expire_locked()
            if key not in self._kv:
                return False  # like etcd: deleting nothing makes no revision
            self._rev += 1
            self._remove_locked(key)
            self._emit_locked(Event("DELETE", key, b"", self._rev))
            self._cond.notify_all()
            return True

    def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> bool:
        return self.txn_result(compares, ops).succeeded

    def txn_result(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        validate_txn(compares, ops)
        with self._cond:
            self._check_open()
            self._expire_locked()
            for c in compares:
                kv = self._kv.get(c.key)
                if (kv.mod_revision if kv else 0) != c.mod_revision:
                    return TxnResult(False, self._rev)
            for op in ops:
                if isinstance(op, Put):
                    self._check_lease_locked(op.lease)
            if not any(isinstance(op, Put) or op.key in self._kv for op in ops):
                return TxnResult(True, self._rev)  # nothing changes: no new revision (as etcd)
            self._rev += 1
            deleted = 0
            for op in ops:
                if isinstance(op, Put):
                    self._put_locked(op.key, op.value, op.lease)
                elif self._remove_locked(op.key):
                    self._emit_locked(Event("DELETE", op.key, b"", self._rev))
                    deleted += 1
            self._cond.notify_all()
            return TxnResult(True, self._rev, deleted)

    def revision(self) -> int:
        with self._cond:
            self._expire_locked()
            return self._rev

    def watch(self, prefix: str, start_revision: int | None = None) -> Watch:
        with self._cond:
            self._check_open()
            self._expire_locked()
            start = self._rev + 1 if start_revision is None else max(1, start_revision)
        return _MemoryWatch(self, prefix, start)

    def grant_lease(self, ttl: float) -> int:
        if ttl <= 0:
            raise InvalidArgument(f"lease ttl must be > 0, got {ttl}")
        with self._cond:
            self._check_open()
            lid = self._next_lease
            self._next_lease += 1
            self._leases[lid] = _MemLease(ttl, time.monotonic() + ttl, set())
            self._cond.notify_all()  # watchers recompute their wake-up time
            return lid

    def keepalive(self, lease: int) -> None:
        with self._cond:
            self._check_open()
            self._expire_locked()
            le = self._leases.get(lease)
            if le is None:
                raise NotFound(f"lease {lease:x} not found (expired or revoked); grant a new one")
            le.expires_at = time.monotonic() + le.ttl

    def revoke_lease(self, lease: int) -> None:
        """Delete the lease and its keys; revoking an unknown lease is a no-op."""
        with self._cond:
            self._check_open()
            self._expire_locked()
            self._revoke_locked(lease)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def describe(self) -> str:
        return "memory:"


# --- the factory ------------------------------------------------------------


def open_metadata_store(url: str) -> MetadataStore:
    """Open a metadata store from a URL.

    Accepted forms:

    * ``memory://`` -- a fresh :class:`MemoryMetadataStore`.
    * ``sqlite:///abs/path.db`` or a plain filesystem path -- SQLite.
    * ``etcd://HOST:PORT[/PREFIX]`` -- etcd; every key is stored under
      ``PREFIX/`` (a ``/`` is appended so ``a`` and ``ab`` cannot collide).

    Backends are imported lazily so the memory store never needs grpc.

    Raises:
        InvalidArgument: the URL has an unknown scheme or no path/host.
    """
    if url.startswith("memory:"):
        return MemoryMetadataStore()
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:").removeprefix("//")
        if not path:
            raise InvalidArgument(f"metadata url {url!r} has no path: use sqlite:///abs/path.db")
        from pfs.metadata_sqlite import SQLiteMetadataStore

        return SQLiteMetadataStore(path)
    if url.startswith("etcd://"):
        rest = url.removeprefix("etcd://")
        endpoint, _, prefix = rest.partition("/")
        if not endpoint:
            raise InvalidArgument(
                f"metadata url {url!r} has no endpoint: use etcd://127.0.0.1:2379[/prefix]")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        from pfs.metadata_etcd import EtcdMetadataStore

        return EtcdMetadataStore(endpoint, prefix)
    if "://" in url:
        raise InvalidArgument(
            f"unknown metadata store url {url!r}: use memory://, sqlite:///path.db or "
            f"etcd://host:port[/prefix]"
        )
    from pfs.metadata_sqlite import SQLiteMetadataStore

    return SQLiteMetadataStore(url)
