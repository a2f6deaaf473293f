"""The embedded metadata store: :class:`~pfs.metadata.MetadataStore` on one SQLite file.

The default backend when no etcd is configured. It gives the etcd data model
(global revision, per-key mod/create revisions, atomic compare-and-swap
transactions, watches from a past revision, leases) on a local file:

* **Crash safety.** Every write is one SQLite transaction opened with
  ``BEGIN IMMEDIATE`` in WAL mode: a process killed at any instant leaves
  either all of a txn or none of it. ``synchronous=FULL`` by default so a
  committed write also survives power loss (like etcd's fsync per write).
* **Threads.** One connection guarded by a lock. SQLite serialises writers
  anyway, and a single connection keeps transaction boundaries obvious.
* **Processes.** Several processes may open the same file. The global
  revision and the event log live in the DB, so a write from any process is
  seen by ``get``/``range`` at once and by ``watch`` within a poll interval
  (~50 ms); writes from this process wake local watchers immediately.
* **History.** Every write appends rows to ``events``; the background thread
  keeps the newest ``history`` revisions and discards older ones (a watch
  asking for discarded history gets :class:`~pfs.metadata.RevisionCompacted`).
* **Leases** use the wall clock (they are shared between processes). Expiry is
  checked lazily before each operation and by a background thread, and
  deletes the lease's keys in one revision with DELETE events.

Schema (``user_version`` 1)::

    meta(k PRIMARY KEY, v)                 -- 'revision', 'compacted'
    kv(key PRIMARY KEY, value, mod_revision, create_revision, lease)
    events(revision, seq, type, key, value, PRIMARY KEY(revision, seq))
    leases(id INTEGER PRIMARY KEY AUTOINCREMENT, ttl, expires_at)
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Literal

from pfs.errors import FailedPrecondition, InvalidArgument, NotFound, TuskError, Unavailable
from pfs.metadata import (
    RANGE_PAGE,
    Compare,
    Event,
    KeyValue,
    Op,
    Put,
    ReadResult,
    RevisionCompacted,
    TxnResult,
    Watch,
    prefix_end,
    validate_read,
    validate_txn,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta VALUES ('revision', 0), ('compacted', 0);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL,
    mod_revision INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    lease INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_lease ON kv (lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS events (
    revision INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    type INTEGER NOT NULL,          -- 0 PUT, 1 DELETE (etcd's numbering)
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (revision, seq)
) WITHOUT ROWID;
-- AUTOINCREMENT: a lease id is never reused, so a stale holder's keepalive
-- can never extend somebody else's lease.
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ttl REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_expiry ON leases (expires_at);
PRAGMA user_version = 1;
"""

POLL_INTERVAL = 0.05
"""How often a waiting watch looks for writes from other processes."""
#: Seconds a lease of another process sharing the file may outlive its deadline
#: before a read here revokes it (etcd's own lessor checks every 0.5 s).
EXPIRY_LAG = 0.1

_EVENT_TYPES: tuple[Literal["PUT"], Literal["DELETE"]] = ("PUT", "DELETE")

_SEQ_MAX = 1 << 62
"""A seq past any real one: cursor (rev, _SEQ_MAX) = "all of rev delivered"."""


class _Cursor:
    """Position in the event log: the last (revision, seq) already delivered."""

    __slots__ = ("rev", "seq")

    def __init__(self, rev: int, seq: int) -> None:
        self.rev = rev
        self.seq = seq


class _SQLiteWatch:
    """Streams ``events`` rows after a cursor, polling for other processes' writes."""

    def __init__(self, store: SQLiteMetadataStore, prefix: str, start_revision: int) -> None:
        self._store = store
        self._prefix = prefix
        self._end = prefix_end(prefix)
        # (start_revision - 1, max) = "everything from start_revision on".
        self._cursor = _Cursor(start_revision - 1, _SEQ_MAX)
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()
        with self._store._cond:
            self._store._cond.notify_all()

    def __iter__(self) -> Iterator[Event]:
        store = self._store
        while not self._cancelled.is_set() and not store._closed:
            try:
                batch = store._events_after(self._prefix, self._end, self._cursor)
            except FailedPrecondition:
                if store._closed:
                    return  # close() ends every watch, as in the other backends
                raise
            if batch:
                yield from batch
                continue
            with store._cond:
                if self._cancelled.is_set():
                    return
                # Local writers notify; other processes are only seen by
                # polling, hence the timeout.
                store._cond.wait(timeout=POLL_INTERVAL)


class SQLiteMetadataStore:
    """A :class:`~pfs.metadata.MetadataStore` in one SQLite file (see module docstring).

    Args:
        path: the database file; created (with its directory) if missing.
        synchronous: SQLite's ``synchronous`` pragma. ``FULL`` (default)
            survives power loss; ``NORMAL`` is still atomic on a process
            crash but may lose the newest commits on power loss.
        history: how many revisions of events to keep for ``watch``.
        busy_timeout: seconds to wait for another process's write lock
            before raising :class:`~pfs.errors.Unavailable`.
    """

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "FULL",
                 history: int = 100_000, busy_timeout: float = 10.0) -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise InvalidArgument(f"unknown sqlite synchronous mode {synchronous!r}")
        self._path = os.path.abspath(os.fspath(path))
        self._history = history
        os.makedirs(os.path.dirname(self._path), exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a
        # transaction is exactly one of our txns and never an implicit one.
        self._conn = sqlite3.connect(self._path, timeout=busy_timeout,
                                     isolation_level=None, check_same_thread=False)
        self._lock = threading.RLock()  # guards self._conn
        self._cond = threading.Condition()  # local writes wake local watchers
        self._closed = False
        #: No lease of ours expires before this time.time() (a lower bound,
        #: lowered by grant_lease), so reads skip the expiry query until then.
        self._quiet_until = 0.0
        with self._lock:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            try:
                # executescript runs in autocommit mode, so the BEGIN/COMMIT
                # are in the script: two processes creating the file at once
                # serialise on the write lock, and the DDL is idempotent.
                self._conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
            except sqlite3.OperationalError as exc:
                self._conn.close()
                raise self._unavailable(exc) from exc
        self._stop = threading.Event()
        self._janitor = threading.Thread(target=self._janitor_loop, daemon=True,
                                         name=f"tusk-sqlite-janitor:{self._path}")
        self._janitor.start()

    # -- plumbing --------------------------------------------------------------

    def _unavailable(self, exc: sqlite3.Error) -> Unavailable:
        return Unavailable("sqlite", f"{self._path}: {exc}",
                           hint="another process may hold the database lock for too long, "
                                "or the disk is full or read-only")

    def _check_open(self) -> None:
        if self._closed:
            raise FailedPrecondition(f"metadata store {self.describe()} is closed")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            self._check_open()
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                raise self._unavailable(exc) from exc

    def _write(self, body: Any) -> Any:
        """Run ``body()`` inside ``BEGIN IMMEDIATE`` ... ``COMMIT``.

        IMMEDIATE takes the write lock up front: a deferred transaction that
        reads and then upgrades to a writer can fail with SQLITE_BUSY without
        waiting, which is exactly the compare-and-swap path.
        """
        with self._lock:
            self._check_open()
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    result = body()
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise self._unavailable(exc) from exc
        return result

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _current_revision_locked(self) -> int:
        row = self._conn.execute("SELECT v FROM meta WHERE k = 'revision'").fetchone()
        return int(row[0])

    def _bump_locked(self) -> int:
        rev = self._current_revision_locked() + 1
        self._conn.execute("UPDATE meta SET v = ? WHERE k = 'revision'", (rev,))
        return rev

    def _check_lease_locked(self, lease: int) -> None:
        if not lease:
            return
        row = self._conn.execute("SELECT expires_at FROM leases WHERE id = ?",
                                 (lease,)).fetchone()
        if row is None or row[0] <= time.time():
            raise NotFound(f"lease {lease:x} not found (expired or revoked); grant a new one")

    def _put_locked(self, rev: int, seq: int, key: str, value: bytes, lease: int) -> None:
        self._conn.execute(
            "INSERT INTO kv (key, value, mod_revision, create_revision, lease) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
            "value = excluded.value, mod_revision = excluded.mod_revision, "
            "lease = excluded.lease",
            (key, value, rev, rev, lease))
        self._conn.execute("INSERT INTO events VALUES (?, ?, 0, ?, ?)", (rev, seq, key, value))

    def _delete_locked(self, rev: int, seq: int, key: str) -> bool:
        cur = self._conn.execute("DELETE FROM kv WHERE key = ?", (key,))
        if cur.rowcount == 0:
            return False
        self._conn.execute("INSERT INTO events VALUES (?, ?, 1, ?, x'')", (rev, seq, key))
        return True

    def _expire_due(self) -> None:
        """Revoke every lease past its deadline (cheap when none is)."""
        now = time.time()
        if now < self._quiet_until:
            return
        with self._lock:
            first = self._read("SELECT MIN(expires_at) FROM leases")[0][0]
            if first is None or first > now:
                # Another process sharing the file may grant a shorter lease
                # meanwhile: look again within EXPIRY_LAG whatever the bound.
                self._quiet_until = min(first if first is not None else math.inf,
                                        now + EXPIRY_LAG)
                return

            def body() -> bool:
                ids = [r[0] for r in self._conn.execute(
                    "SELECT id FROM leases WHERE expires_at <= ?", (now,))]
                changed = False
                for lid in ids:
                    changed |= self._revoke_locked(lid)
                return changed

            changed = self._write(body)
        if changed:
            self._notify()

    def _revoke_locked(self, lease: int) -> bool:
        """Delete a lease and its keys, all in one new revision. In a txn."""
        self._conn.execute("DELETE FROM leases WHERE id = ?", (lease,))
        keys = [r[0] for r in self._conn.execute(
            "SELECT key FROM kv WHERE lease = ? ORDER BY key", (lease,))]
        if not keys:
            return False
        rev = self._bump_locked()
        for seq, key in enumerate(keys):
            self._delete_locked(rev, seq, key)
        return True

    def _events_after(self, prefix: str, end: str | None, cursor: _Cursor) -> list[Event]:
        """The next page of events under ``prefix`` after ``cursor``; advances it."""
        self._expire_due()
        with self._lock:
            rows = self._read("SELECT k, v FROM meta")
            meta = {k: v for k, v in rows}
            head, compacted = int(meta["revision"]), int(meta["compacted"])
            # The next revision this watch needs: the cursor's own one if it
            # was only partly delivered (a page ended inside a txn).
            needed = cursor.rev + 1 if cursor.seq >= _SEQ_MAX else cursor.rev
            if needed <= compacted:
                raise RevisionCompacted(needed, compacted)
            params: list[Any] = [cursor.rev, cursor.seq, head, prefix]
            sql = ("SELECT revision, seq, type, key, value FROM events "
                   "WHERE (revision, seq) > (?, ?) AND revision <= ? AND key >= ?")
            if end is not None:
                sql += " AND key < ?"
                params.append(end)
            sql += f" ORDER BY revision, seq LIMIT {RANGE_PAGE}"
            rows = self._read(sql, params)
        if len(rows) < RANGE_PAGE:
            # Everything up to head has been seen, matching or not: skip past
            # it so the next poll does not rescan unrelated events.
            cursor.rev, cursor.seq = head, _SEQ_MAX
        else:
            cursor.rev, cursor.seq = rows[-1][0], rows[-1][1]
        return [Event(_EVENT_TYPES[t], k, bytes(v), r) for r, _s, t, k, v in rows]

    def _janitor_loop(self) -> None:
        """Expire leases (even if nobody calls us) and trim old history."""
        last_trim = 0.0
        while not self._stop.wait(0.1):
            try:
                self._expire_due()
                if time.monotonic() - last_trim > 5.0:
                    last_trim = time.monotonic()
                    self._trim_history()
            except (TuskError, sqlite3.Error):
                # Locked by another process for too long, or closing: the
                # next round retries; lazy expiry on access still works.
                continue

    def _trim_history(self) -> None:
        def body() -> None:
            keep_from = self._current_revision_locked() - self._history
            row = self._conn.execute("SELECT v FROM meta WHERE k = 'compacted'").fetchone()
            if keep_from <= int(row[0]):
                return
            self._conn.execute("DELETE FROM events WHERE revision <= ?", (keep_from,))
            self._conn.execute("UPDATE meta SET v = ? WHERE k = 'compacted'", (keep_from,))

        self._write(body)

    # -- MetadataStore ---------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        self._expire_due()
        rows = self._read("SELECT key, value, mod_revision, create_revision, lease "
                          "FROM kv WHERE key = ?", (key,))
        if not rows:
            return None
        k, v, m, c, le = rows[0]
        return KeyValue(k, bytes(v), m, c, le)

    def read_many(self, keys: Sequence[str], prefixes: Sequence[str] = (),
                  range_limit: int = RANGE_PAGE) -> ReadResult:
        validate_read(keys, prefixes, range_limit)
        self._expire_due()
        cols = "key, value, mod_revision, create_revision, lease"
        with self._lock:
            self._check_open()
            try:
                # A deferred read transaction: every SELECT below sees the
                # same WAL snapshot, even while other processes write.
                self._conn.execute("BEGIN")
                try:
                    rev = self._current_revision_locked()
                    found: dict[str, KeyValue] = {}
                    unique = list(dict.fromkeys(keys))
                    for i in range(0, len(unique), 100):  # under SQLite's variable limit
                        part = unique[i:i + 100]
                        for k, v, m, c, le in self._conn.execute(
                                f"SELECT {cols} FROM kv WHERE key IN ({','.join('?' * len(part))})",
                                part):
                            found[k] = KeyValue(k, bytes(v), m, c, le)
                    ranges: dict[str, list[KeyValue]] = {}
                    more: set[str] = set()
                    for prefix in prefixes:
                        end = prefix_end(prefix)
                        sql = f"SELECT {cols} FROM kv WHERE key >= ?"
                        params: list[Any] = [prefix]
                        if end is not None:
                            sql += " AND key < ?"
                            params.append(end)
                        # One row past the limit tells whether the range was cut short.
                        rows = self._conn.execute(
                            sql + f" ORDER BY key LIMIT {range_limit + 1}", params).fetchall()
                        if len(rows) > range_limit:
                            more.add(prefix)
                        ranges[prefix] = [KeyValue(k, bytes(v), m, c, le)
                                          for k, v, m, c, le in rows[:range_limit]]
                finally:
                    self._conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise self._unavailable(exc) from exc
        return ReadResult(rev, {k: found.get(k) for k in keys}, ranges, frozenset(more))

    def range(self, prefix: str, start_after: str | None = None,
              limit: int | None = None) -> Iterator[KeyValue]:
        end = prefix_end(prefix)
        if start_after is None or start_after < prefix:
            cursor, op = prefix, ">="
        else:
            cursor, op = start_after, ">"
        left = limit
        self._expire_due()
        # One short query per page: never an open read transaction across a
        # yield (it would pin the WAL and block this connection's writers).
        while left is None or left > 0:
            page = RANGE_PAGE if left is None else min(RANGE_PAGE, left)
            sql = ("SELECT key, value, mod_revision, create_revision, lease "
                   f"FROM kv WHERE key {op} ?")
            params: list[Any] = [cursor]
            if end is not None:
                sql += " AND key < ?"
                params.append(end)
            rows = self._read(sql + f" ORDER BY key LIMIT {page}", params)
            for k, v, m, c, le in rows:
                yield KeyValue(k, bytes(v), m, c, le)
            if len(rows) < page:
                return
            if left is not None:
                left -= len(rows)
            cursor, op = rows[-1][0], ">"

    def put(self, key: str, value: bytes, lease: int = 0) -> int:
        self._expire_due()

        def body() -> int:
            self._check_lease_locked(lease)
            rev = self._bump_locked()
            self._put_locked(rev, 0, key, bytes(value), lease)
            return rev

        rev: int = self._write(body)
        self._notify()
        return rev

    def delete(self, key: str) -> bool:
        self._expire_due()

        def body() -> bool:
            if not self._conn.execute("SELECT 1 FROM kv WHERE key = ?", (key,)).fetchone():
                return False  # like etcd: deleting nothing makes no revision
            return self._delete_locked(self._bump_locked(), 0, key)

        existed: bool = self._write(body)
        if existed:
            self._notify()
        return existed

    def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> bool:
        return self.txn_result(compares, ops).succeeded

    def txn_result(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        validate_txn(compares, ops)
        self._expire_due()

        def body() -> tuple[TxnResult, bool]:
            current = self._current_revision_locked()
            for c in compares:
                row = self._conn.execute("SELECT mod_revision FROM kv WHERE key = ?",
                                         (c.key,)).fetchone()
                if (row[0] if row else 0) != c.mod_revision:
                    return TxnResult(False, current), False
            for op in ops:
                if isinstance(op, Put):
                    self._check_lease_locked(op.lease)
            rev = current + 1
            changed, deleted = False, 0
            for seq, op in enumerate(ops):
                if isinstance(op, Put):
                    self._put_locked(rev, seq, op.key, bytes(op.value), op.lease)
                    changed = True
                elif self._delete_locked(rev, seq, op.key):
                    changed, deleted = True, deleted + 1
            if not changed:  # a txn that changes nothing makes no revision (as etcd)
                return TxnResult(True, current), False
            self._conn.execute("UPDATE meta SET v = ? WHERE k = 'revision'", (rev,))
            return TxnResult(True, rev, deleted), True

        out: tuple[TxnResult, bool] = self._write(body)
        if out[1]:
            self._notify()
        return out[0]

    def revision(self) -> int:
        self._expire_due()
        return int(self._read("SELECT v FROM meta WHERE k = 'revision'")[0][0])

    def watch(self, prefix: str, start_revision: int | None = None) -> Watch:
        start = self.revision() + 1 if start_revision is None else max(1, start_revision)
        return _SQLiteWatch(self, prefix, start)

    def grant_lease(self, ttl: float) -> int:
        if ttl <= 0:
            raise InvalidArgument(f"lease ttl must be > 0, got {ttl}")

        def body() -> int:
            cur = self._conn.execute("INSERT INTO leases (ttl, expires_at) VALUES (?, ?)",
                                     (ttl, time.time() + ttl))
            assert cur.lastrowid is not None
            return cur.lastrowid

        with self._lock:
            self._quiet_until = min(self._quiet_until, time.time() + ttl)  # <= its expiry
            lid: int = self._write(body)
        return lid

    def keepalive(self, lease: int) -> None:
        self._expire_due()

        def body() -> bool:
            cur = self._conn.execute(
                "UPDATE leases SET expires_at = ? + ttl WHERE id = ? AND expires_at > ?",
                (time.time(), lease, time.time()))
            return cur.rowcount == 1

        if not self._write(body):
            raise NotFound(f"lease {lease:x} not found (expired or revoked); grant a new one")

    def revoke_lease(self, lease: int) -> None:
        """Delete the lease and its keys; revoking an unknown lease is a no-op."""
        if self._write(lambda: self._revoke_locked(lease)):
            self._notify()

    def close(self) -> None:
        self._stop.set()
        if self._janitor is not threading.current_thread():
            self._janitor.join(timeout=5)
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()
        self._notify()

    def describe(self) -> str:
        return f"sqlite:{self._path}"
