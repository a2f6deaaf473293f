"""The MetadataStore contract, run against every backend (memory, SQLite, etcd).

Plus backend-specific behaviour: SQLite shared between processes and killed
mid-transaction; etcd going away and coming back under the same store object.

The etcd cases need the ``tests.fixtures.etcd`` plugin (loaded from
``tests/conftest.py`` or with ``-p tests.fixtures.etcd``).
"""

from __future__ import annotations

import functools
import itertools
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pfs.errors import InvalidArgument, NotFound, Unavailable
from pfs.metadata import (
    MAX_TXN_OPS,
    Compare,
    Delete,
    Event,
    MemoryMetadataStore,
    MetadataStore,
    Put,
    RevisionCompacted,
    Watch,
    get_many,
    open_metadata_store,
    range_rest,
)
from pfs.metadata_etcd import EtcdMetadataStore
from pfs.metadata_fence import FencedMetadataStore
from pfs.metadata_sqlite import SQLiteMetadataStore

REPO_ROOT = Path(__file__).resolve().parent.parent

# --- helpers -----------------------------------------------------------------


def wait_for(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``cond`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


class Collector:
    """Drains a watch on a background thread so tests never block on ``next``."""

    def __init__(self, w: Watch) -> None:
        self.watch = w
        self.events: queue.Queue[Event | BaseException] = queue.Queue()
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for ev in self.watch:
                self.events.put(ev)
        except Exception as exc:
            self.events.put(exc)
        finally:
            self.done.set()

    def take(self, n: int, timeout: float = 10.0) -> list[Event]:
        """The next ``n`` events; fails the test if they do not come in time."""
        out: list[Event] = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            try:
                item = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"got {len(out)} of {n} watch events in {timeout} s: {out}")
            if isinstance(item, BaseException):
                raise item
            out.append(item)
        return out

    def quiet(self, seconds: float = 0.3) -> bool:
        """True if no event arrives within ``seconds``."""
        try:
            item = self.events.get(timeout=seconds)
        except queue.Empty:
            return True
        self.events.put(item)
        return False

    def cancel(self) -> None:
        self.watch.cancel()
        assert self.done.wait(10), "watch iteration did not end after cancel()"


#: The key the fenced variants hold; sorts after every key the tests write.
FENCE_KEY = "~fence"


@pytest.fixture(params=["memory", "sqlite", pytest.param("etcd", marks=pytest.mark.etcd),
                        "fenced-sqlite", pytest.param("fenced-etcd", marks=pytest.mark.etcd)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    """A fresh, empty store of each kind (etcd: a unique prefix on a shared server).

    ``fenced-*``: the backend behind :class:`FencedMetadataStore` holding
    :data:`FENCE_KEY` (the wrapper the master daemon writes through), which
    must keep the whole contract while the fence holds."""
    base: MetadataStore
    kind = request.param.removeprefix("fenced-")
    if kind == "memory":
        base = MemoryMetadataStore()
    elif kind == "sqlite":
        base = SQLiteMetadataStore(tmp_path / "meta.db")
    else:
        endpoint = request.getfixturevalue("etcd_endpoint")
        base = EtcdMetadataStore(endpoint, prefix=f"tusk-test/{uuid.uuid4().hex}/")
    s = base
    if request.param.startswith("fenced-"):
        s = FencedMetadataStore(base, FENCE_KEY, base.put(FENCE_KEY, b"holder"))
    yield s
    if isinstance(base, EtcdMetadataStore) and not base._closed:
        _wipe(base)  # the server may be shared (TUSK_TEST_ETCD): leave nothing behind
    s.close()


def _wipe(s: EtcdMetadataStore) -> None:
    """Delete every key under the store's prefix in one DeleteRange."""
    from pyetcd import etcdrpc

    from pfs.metadata_etcd import _bytes_prefix_end

    s._call(s._kv.DeleteRange, etcdrpc.DeleteRangeRequest(
        key=s._p, range_end=_bytes_prefix_end(s._p)))


def put_keys(s: MetadataStore, items: dict[str, bytes]) -> None:
    """Write many keys in transactions of at most 100 ops (fast on etcd too)."""
    batch = list(items.items())
    for i in range(0, len(batch), 100):
        assert s.txn([], [Put(k, v) for k, v in batch[i:i + 100]])


# --- basic key-value ---------------------------------------------------------


def test_get_put_delete(store: MetadataStore) -> None:
    assert isinstance(store, MetadataStore)
    assert store.get("a") is None
    r1 = store.put("a", b"one")
    kv = store.get("a")
    assert kv is not None and kv.value == b"one"
    assert kv.mod_revision == kv.create_revision == r1 and kv.lease == 0
    r2 = store.put("a", b"two")
    kv = store.get("a")
    assert kv is not None and kv.value == b"two"
    assert kv.mod_revision == r2 and kv.create_revision == r1
    assert store.delete("a") is True
    assert store.get("a") is None
    assert store.delete("a") is False
    store.put("empty", b"")
    kv = store.get("empty")
    assert kv is not None and kv.value == b""


def test_revisions_strictly_increase(store: MetadataStore) -> None:
    seen = [store.revision()]
    for i in range(20):
        seen.append(store.put(f"k{i % 3}", str(i).encode()))
        assert store.revision() == seen[-1]
    store.delete("k0")
    seen.append(store.revision())
    assert store.txn([], [Put("k1", b"x"), Put("k2", b"y")])
    seen.append(store.revision())
    assert all(a < b for a, b in itertools.pairwise(seen)), seen
    # A txn's ops all share its one revision.
    k1, k2 = store.get("k1"), store.get("k2")
    assert k1 and k2 and k1.mod_revision == k2.mod_revision == seen[-1]


def test_range_sorted_start_after_limit_and_prefix_isolation(store: MetadataStore) -> None:
    keys = ["a/3", "a/1", "a/10", "a/2", "ab", "a", "b/1", "a/sub/x"]
    for k in keys:
        store.put(k, k.encode())
    got = [kv.key for kv in store.range("a/")]
    assert got == sorted(k for k in keys if k.startswith("a/"))
    assert all(kv.value == kv.key.encode() for kv in store.range("a/"))
    assert [kv.key for kv in store.range("a/", start_after="a/10")] == ["a/2", "a/3", "a/sub/x"]
    assert [kv.key for kv in store.range("a/", limit=2)] == ["a/1", "a/10"]
    assert [kv.key for kv in store.range("a/", start_after="a/1", limit=2)] == ["a/10", "a/2"]
    assert [kv.key for kv in store.range("a/", start_after="a/sub/x")] == []
    assert [kv.key for kv in store.range("a/", start_after="0")] == [
        "a/1", "a/10", "a/2", "a/3", "a/sub/x"]
    assert [kv.key for kv in store.range("c")] == []
    assert [kv.key for kv in store.range("") if kv.key != FENCE_KEY] == sorted(keys)


def test_range_streams_many_keys(store: MetadataStore) -> None:
    n = 5000
    put_keys(store, {f"many/{i:05d}": b"v%d" % i for i in range(n)})
    store.put("manz", b"outside")
    count, last = 0, ""
    for kv in store.range("many/"):
        assert kv.key > last
        last = kv.key
        count += 1
    assert count == n
    # Resuming with start_after over page boundaries loses nothing.
    first = [kv.key for kv in store.range("many/", limit=1234)]
    rest = [kv.key for kv in store.range("many/", start_after=first[-1])]
    assert len(first) == 1234 and len(first) + len(rest) == n and first[-1] < rest[0]


# --- batched reads -----------------------------------------------------------


def test_read_many_gets_and_bounded_ranges(store: MetadataStore) -> None:
    for k in ["a/3", "a/1", "a/2", "ab", "a", "b/1", "b/2", "c/only"]:
        store.put(k, k.encode())
    store.delete("b/2")
    r = store.read_many(["a", "zz", "b/1", "b/2"], ["a/", "b/", "c/", "d/"], range_limit=2)
    assert r.revision == store.revision()
    # Every key asked for is answered; absent (and deleted) keys are None.
    assert set(r.kvs) == {"a", "zz", "b/1", "b/2"}
    assert r.kvs["zz"] is None and r.kvs["b/2"] is None
    for k in ("a", "b/1"):
        assert r.kvs[k] == store.get(k)
    # Ranges are sorted, stay inside their prefix ("ab" is not under "a/"),
    # stop at range_limit and say so in ``more``.
    assert [kv.key for kv in r.ranges["a/"]] == ["a/1", "a/2"]
    assert [kv.key for kv in r.ranges["b/"]] == ["b/1"]
    assert [kv.key for kv in r.ranges["c/"]] == ["c/only"]
    assert list(r.ranges["d/"]) == []
    assert r.more == {"a/"}
    assert r.ranges["a/"][0] == store.get("a/1")
    # Exactly range_limit keys is not "more".
    assert store.read_many([], ["a/"], range_limit=3).more == frozenset()
    # range_rest continues a cut-short range with range().
    assert [kv.key for kv in range_rest(store, r, "a/")] == ["a/1", "a/2", "a/3"]
    assert [kv.key for kv in range_rest(store, r, "b/")] == ["b/1"]
    # Nothing asked: just the revision.
    empty = store.read_many([])
    assert empty.revision == store.revision() and not empty.kvs and not empty.ranges


def test_read_many_limits(store: MetadataStore) -> None:
    with pytest.raises(InvalidArgument):
        store.read_many([f"k{i}" for i in range(MAX_TXN_OPS)], ["p/"])
    with pytest.raises(InvalidArgument):
        store.read_many([], ["p/"], range_limit=0)
    assert len(store.read_many([f"k{i}" for i in range(MAX_TXN_OPS)]).kvs) == MAX_TXN_OPS
    # get_many splits any number of keys into allowed reads.
    put_keys(store, {f"g/{i:03d}": b"%d" % i for i in range(0, 300, 2)})
    got = get_many(store, [f"g/{i:03d}" for i in range(300)])
    assert len(got) == 300
    for i in range(300):
        kv = got[f"g/{i:03d}"]
        assert (kv.value if kv else None) == (b"%d" % i if i % 2 == 0 else None)


def _check_snapshots(writer_store: MetadataStore, reader_store: MetadataStore,
                     seconds: float = 1.0) -> int:
    """A writer adds ``r/<n>`` and sets ``count`` = n in one txn while a reader
    reads both with read_many: every read must see them agree. Returns reads."""
    writer_store.put("count", b"0")
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            n = 0
            while not stop.is_set():
                n += 1
                writer_store.txn([], [Put(f"r/{n:06d}", b""), Put("count", str(n).encode())])
        except Exception as exc:
            errors.append(exc)

    t = threading.Thread(target=write)
    t.start()
    reads, deadline = 0, time.monotonic() + seconds
    try:
        while time.monotonic() < deadline or reads < 20:
            # Ranges first in the request, the key last: a reader that is not
            # a snapshot sees more r/ keys than count says, or fewer.
            r = reader_store.read_many(["count"], ["r/"], range_limit=100_000)
            count = r.kvs["count"]
            assert count is not None
            assert len(r.ranges["r/"]) == int(count.value), (len(r.ranges["r/"]), count)
            assert count.mod_revision <= r.revision
            reads += 1
    finally:
        stop.set()
        t.join()
    assert not errors, errors
    return reads


def test_read_many_is_one_snapshot(store: MetadataStore) -> None:
    _check_snapshots(store, store)


def test_sqlite_read_many_is_one_snapshot_across_connections(tmp_path: Path) -> None:
    """Another connection (as another process) writing: still one snapshot."""
    reader = SQLiteMetadataStore(tmp_path / "meta.db", synchronous="OFF")
    writer = SQLiteMetadataStore(tmp_path / "meta.db", synchronous="OFF")
    try:
        _check_snapshots(writer, reader)
    finally:
        writer.close()
        reader.close()


# --- transactions ------------------------------------------------------------


def test_txn_success_and_failure(store: MetadataStore) -> None:
    assert store.txn([Compare("x", 0)], [Put("x", b"1"), Put("y", b"1")])
    x = store.get("x")
    assert x is not None
    rev = store.revision()
    # Failure: a stale compare writes nothing and makes no revision.
    assert not store.txn([Compare("x", x.mod_revision), Compare("y", 0)],
                         [Put("x", b"2"), Delete("y"), Put("z", b"2")])
    assert store.revision() == rev
    assert store.get("z") is None
    y = store.get("y")
    assert y is not None and y.value == b"1"
    # Success with delete and put together.
    assert store.txn([Compare("x", x.mod_revision)], [Delete("y"), Put("x", b"3")])
    assert store.get("y") is None
    x2 = store.get("x")
    assert x2 is not None and x2.value == b"3" and x2.mod_revision > x.mod_revision
    # Compare-absent fails once the key exists.
    assert not store.txn([Compare("x", 0)], [Put("x", b"4")])


def test_txn_result_says_what_the_txn_did(store: MetadataStore) -> None:
    """``txn_result``: the revision a txn wrote at, and how many keys it
    deleted; a txn that fails or changes nothing makes no revision."""
    store.put("a", b"1")
    store.put("b", b"1")
    before = store.revision()
    r = store.txn_result([], [Put("c", b"1"), Delete("a"), Delete("b"), Delete("nope")])
    assert r.succeeded and r.revision > before
    assert r.revision == store.revision() and r.deleted == 2
    c = store.get("c")
    assert c is not None and c.mod_revision == r.revision
    failed = store.txn_result([Compare("c", 0)], [Put("c", b"2")])
    assert not failed.succeeded and failed.revision == r.revision and failed.deleted == 0
    noop = store.txn_result([], [Delete("nope")])
    assert noop.succeeded and noop.revision == r.revision and noop.deleted == 0
    assert store.revision() == r.revision


def test_txn_limits(store: MetadataStore) -> None:
    with pytest.raises(InvalidArgument):
        store.txn([], [Put(f"k{i}", b"") for i in range(129)])
    with pytest.raises(InvalidArgument):  # etcd's --max-txn-ops counts compares too
        store.txn([Compare(f"k{i}", 0) for i in range(129)], [Put("k", b"1")])
    with pytest.raises(InvalidArgument):
        store.txn([], [Put("k", b"1"), Delete("k")])
    assert store.get("k0") is None and store.get("k") is None
    assert store.txn([], [Put(f"k{i}", b"") for i in range(128)])


def _race_create(store: MetadataStore, key: str, n: int) -> list[int]:
    """``n`` threads create ``key`` if absent at the same moment; returns the winners."""
    barrier = threading.Barrier(n)
    wins: list[int] = []

    def contend(me: int) -> None:
        barrier.wait()
        if store.txn([Compare(key, 0)], [Put(key, str(me).encode())]):
            wins.append(me)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return wins


def test_create_if_absent_race_has_one_winner(store: MetadataStore) -> None:
    for round_ in range(5):
        wins = _race_create(store, f"race/{round_}", 4)
        assert len(wins) == 1, wins
        kv = store.get(f"race/{round_}")
        assert kv is not None and kv.value == str(wins[0]).encode()


def test_thread_safety_cas_counter(store: MetadataStore) -> None:
    """Many threads increment one counter by compare-and-swap: no lost update."""
    store.put("counter", b"0")
    per_thread, n_threads = 15, 4
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            for _ in range(per_thread):
                while True:
                    kv = store.get("counter")
                    assert kv is not None
                    if store.txn([Compare("counter", kv.mod_revision)],
                                 [Put("counter", str(int(kv.value) + 1).encode())]):
                        break
                # Readers alongside writers.
                list(store.range("counter"))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    kv = store.get("counter")
    assert kv is not None and int(kv.value) == per_thread * n_threads


# --- watches -----------------------------------------------------------------


def test_watch_from_start_revision_sees_past_then_live(store: MetadataStore) -> None:
    r1 = store.put("w/a", b"1")
    store.put("other", b"x")
    store.put("w/b", b"2")
    store.delete("w/a")
    c = Collector(store.watch("w/", start_revision=r1))
    try:
        past = c.take(3)
        assert [(e.type, e.key, e.value) for e in past] == [
            ("PUT", "w/a", b"1"), ("PUT", "w/b", b"2"), ("DELETE", "w/a", b"")]
        assert past[0].mod_revision == r1
        r_live = store.put("w/c", b"3")
        live = c.take(1)
        assert (live[0].key, live[0].mod_revision) == ("w/c", r_live)
    finally:
        c.cancel()


def test_watch_without_start_sees_only_new_events(store: MetadataStore) -> None:
    store.put("n/old", b"0")
    w = store.watch("n/")
    store.put("n/new", b"1")  # after watch() returned, before iteration began
    c = Collector(w)
    try:
        (ev,) = c.take(1)
        assert ev.key == "n/new"
        assert c.quiet(0.3)
    finally:
        c.cancel()


def test_watch_order_and_txn_events(store: MetadataStore) -> None:
    c = Collector(store.watch("o/"))
    try:
        revs = [store.put(f"o/{i % 4}", b"%d" % i) for i in range(30)]
        assert store.txn([], [Put("o/t2", b"b"), Put("o/t1", b"a"), Delete("o/0")])
        evs = c.take(33)
        assert [e.mod_revision for e in evs[:30]] == revs
        assert [e.value for e in evs[:30]] == [b"%d" % i for i in range(30)]
        tail = evs[30:]
        assert len({e.mod_revision for e in tail}) == 1 and tail[0].mod_revision > revs[-1]
        assert [(e.type, e.key) for e in tail] == [
            ("PUT", "o/t2"), ("PUT", "o/t1"), ("DELETE", "o/0")]
    finally:
        c.cancel()


def test_watch_cancel_ends_iteration(store: MetadataStore) -> None:
    c = Collector(store.watch("c/"))
    store.put("c/1", b"")
    c.take(1)
    c.cancel()
    store.put("c/2", b"")
    assert c.done.is_set()


def test_close_ends_watches(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    stores: list[MetadataStore] = [MemoryMetadataStore(), SQLiteMetadataStore(tmp_path / "c.db")]
    if request.config.pluginmanager.hasplugin("tests.fixtures.etcd"):
        endpoint = request.getfixturevalue("etcd_endpoint")
        stores.append(EtcdMetadataStore(endpoint, prefix=f"tusk-test/{uuid.uuid4().hex}/"))
    for s in stores:
        c = Collector(s.watch(""))
        s.put("k", b"")
        c.take(1)
        s.close()
        assert c.done.wait(10), f"{s.describe()}: close() did not end its watch"


def test_concurrent_watchers_see_same_stream(store: MetadataStore) -> None:
    cs = [Collector(store.watch("m/")) for _ in range(3)]
    try:
        for i in range(10):
            store.put(f"m/{i}", b"")
        streams = [[(e.key, e.mod_revision) for e in c.take(10)] for c in cs]
        assert streams[0] == streams[1] == streams[2]
    finally:
        for c in cs:
            c.cancel()


# --- leases ------------------------------------------------------------------


def test_lease_expiry_deletes_keys_with_delete_events(store: MetadataStore) -> None:
    c = Collector(store.watch("l/"))
    try:
        lease = store.grant_lease(1)
        store.put("l/a", b"1", lease=lease)
        assert store.txn([], [Put("l/b", b"2", lease=lease), Put("l/keep", b"3")])
        kv = store.get("l/a")
        assert kv is not None and kv.lease == lease
        assert [e.type for e in c.take(3)] == ["PUT", "PUT", "PUT"]
        # Nobody touches the store: the expiry must still produce events
        # (etcd's minimum TTL is ~2 s, so allow plenty of time).
        dels = c.take(2, timeout=10)
        assert sorted((e.type, e.key) for e in dels) == [("DELETE", "l/a"), ("DELETE", "l/b")]
        assert store.get("l/a") is None and store.get("l/b") is None
        assert store.get("l/keep") is not None
        with pytest.raises(NotFound):
            store.keepalive(lease)
        with pytest.raises(NotFound):
            store.put("l/c", b"", lease=lease)
    finally:
        c.cancel()


def test_keepalive_keeps_lease_alive(store: MetadataStore) -> None:
    lease = store.grant_lease(1)
    store.put("ka", b"v", lease=lease)
    # Well past any ttl the backend may have rounded 1 s up to (etcd: ~2 s).
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        store.keepalive(lease)
        assert store.get("ka") is not None
        time.sleep(0.2)
    wait_for(lambda: store.get("ka") is None, timeout=10, what="lease expiry after keepalives stop")


def test_revoke_lease(store: MetadataStore) -> None:
    lease = store.grant_lease(60)
    store.put("rv/a", b"", lease=lease)
    store.put("rv/b", b"", lease=lease)
    store.put("rv/b", b"detached")  # re-put without lease detaches the key
    store.revoke_lease(lease)
    assert store.get("rv/a") is None
    kv = store.get("rv/b")
    assert kv is not None and kv.value == b"detached"
    store.revoke_lease(lease)  # idempotent
    with pytest.raises(NotFound):
        store.keepalive(lease)


def test_put_with_unknown_lease_fails(store: MetadataStore) -> None:
    with pytest.raises(NotFound):
        store.put("x", b"", lease=0x7EADBEEF)
    assert store.get("x") is None
    with pytest.raises(NotFound):
        store.txn([], [Put("x", b"", lease=0x7EADBEEF)])
    assert store.get("x") is None


# --- factory -----------------------------------------------------------------


def test_open_metadata_store_urls(tmp_path: Path) -> None:
    for url in ("memory://",):
        s = open_metadata_store(url)
        assert isinstance(s, MemoryMetadataStore)
        s.close()
    for url in (f"sqlite://{tmp_path}/a.db", str(tmp_path / "b.db")):
        s = open_metadata_store(url)
        assert isinstance(s, SQLiteMetadataStore)
        s.put("k", b"v")
        s.close()
    assert (tmp_path / "a.db").exists() and (tmp_path / "b.db").exists()
    s = open_metadata_store("etcd://127.0.0.1:1/tusk")  # no I/O until used
    assert isinstance(s, EtcdMetadataStore) and s.describe() == "etcd://127.0.0.1:1/tusk/"
    s.close()
    with pytest.raises(InvalidArgument):
        open_metadata_store("redis://localhost")


# --- SQLite: several processes, crashes --------------------------------------


def _python(code: str, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args],
                            cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def test_sqlite_sees_other_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    s = SQLiteMetadataStore(path)
    try:
        s.put("p/mine", b"0")
        c = Collector(s.watch("p/"))
        proc = _python("""
            import sys
            from pfs.metadata import Compare, Put
            from pfs.metadata_sqlite import SQLiteMetadataStore
            s = SQLiteMetadataStore(sys.argv[1])
            s.put("p/theirs", b"1")
            assert s.txn([Compare("p/mine", s.get("p/mine").mod_revision)],
                         [Put("p/mine", b"2"), Put("p/t2", b"3")])
            s.close()
        """, str(path))
        assert proc.wait(30) == 0
        kv = s.get("p/theirs")
        assert kv is not None and kv.value == b"1"
        evs = c.take(3)
        assert [(e.key, e.value) for e in evs] == [
            ("p/theirs", b"1"), ("p/mine", b"2"), ("p/t2", b"3")]
        assert s.revision() == evs[-1].mod_revision
        c.cancel()
    finally:
        s.close()


_TXN_LOOP = """
    import sys
    from pfs.metadata import Compare, Put
    from pfs.metadata_sqlite import SQLiteMetadataStore
    # synchronous=OFF makes txns fast so the kill lands mid-write often;
    # atomicity on a process crash does not depend on it (WAL + rollback).
    s = SQLiteMetadataStore(sys.argv[1], synchronous="OFF")
    while True:
        kv = s.get("g/00")
        n = int(kv.value.split(b"|")[0]) + 1 if kv else 0
        s.txn([Compare("g/00", kv.mod_revision if kv else 0)],
              [Put(f"g/{i:02d}", b"%d|" % n + b"x" * 400) for i in range(20)])
"""


def _reached_revision(path: Path, target: int, writer: subprocess.Popen[bytes]) -> bool:
    assert writer.poll() is None, "the writer process died on its own"
    if not path.exists():
        return False
    try:
        with sqlite3.connect(path, timeout=5) as db:
            row = db.execute("SELECT v FROM meta WHERE k='revision'").fetchone()
    except sqlite3.OperationalError:
        return False  # schema not created yet
    return bool(row) and int(row[0]) >= target


def test_sqlite_sigkill_mid_txn_leaves_consistent_db(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    for round_ in range(5):
        proc = _python(_TXN_LOOP, str(path))
        try:
            target = 150 * (round_ + 1)
            wait_for(functools.partial(_reached_revision, path, target, proc),
                     timeout=20, what=f"revision {target}")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        s = SQLiteMetadataStore(path)
        try:
            group = list(s.range("g/"))
            assert len(group) == 20
            assert len({kv.value for kv in group}) == 1, "a txn was half-applied"
            assert len({kv.mod_revision for kv in group}) == 1
            assert s.revision() == group[0].mod_revision
        finally:
            s.close()
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            (max_ev,) = db.execute("SELECT max(revision) FROM events").fetchone()
            assert max_ev == group[0].mod_revision


def test_sqlite_lease_granted_by_other_process_expires_here(tmp_path: Path) -> None:
    path = tmp_path / "lease.db"
    s = SQLiteMetadataStore(path)
    try:
        c = Collector(s.watch("x/"))
        proc = _python("""
            import sys
            from pfs.metadata_sqlite import SQLiteMetadataStore
            s = SQLiteMetadataStore(sys.argv[1])
            s.put("x/k", b"v", lease=s.grant_lease(0.5))
            s.close()
        """, str(path))
        assert proc.wait(30) == 0
        evs = c.take(2, timeout=10)
        assert [(e.type, e.key) for e in evs] == [("PUT", "x/k"), ("DELETE", "x/k")]
        c.cancel()
    finally:
        s.close()


def test_sqlite_reads_skip_the_expiry_query_but_not_a_new_short_lease(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads look for expired leases only when one may be due: a lease
    granted here lowers that bound, so it still expires on time."""
    import pfs.metadata_sqlite as ms

    monkeypatch.setattr(ms, "EXPIRY_LAG", 60.0)  # nothing else makes a read look
    s = SQLiteMetadataStore(tmp_path / "q.db")
    try:
        s.put("long", b"v", lease=s.grant_lease(60))
        assert s.get("long") is not None  # bound: the 60 s lease's deadline
        s.put("short", b"v", lease=s.grant_lease(0.3))
        time.sleep(0.4)
        assert s.get("short") is None
        assert s.get("long") is not None
    finally:
        s.close()


def test_sqlite_watch_on_compacted_history(tmp_path: Path) -> None:
    s = SQLiteMetadataStore(tmp_path / "h.db", history=10)
    try:
        for i in range(30):
            s.put("h", b"%d" % i)
        s._trim_history()  # normally the background thread's job, every few seconds
        c = Collector(s.watch("h", start_revision=1))
        item = c.events.get(timeout=10)
        assert isinstance(item, RevisionCompacted) and item.compacted == 20
        c2 = Collector(s.watch("h", start_revision=21))
        assert len(c2.take(10)) == 10
        c2.cancel()
    finally:
        s.close()


# --- etcd: outages -----------------------------------------------------------


@pytest.mark.etcd
def test_etcd_outage_raises_unavailable_then_recovers(etcd_factory: Any) -> None:
    server = etcd_factory()
    s = EtcdMetadataStore(server.endpoint, prefix="outage/", timeout=2.0)
    try:
        s.put("k", b"before")
        c = Collector(s.watch("k"))
        server.stop()
        for op in (lambda: s.get("k"), lambda: s.put("k", b"x"), s.revision):
            t0 = time.monotonic()
            with pytest.raises(Unavailable) as info:
                op()
            assert time.monotonic() - t0 < 5
            assert "deploy/services.sh up" in str(info.value) and info.value.service == "etcd"
        server.start()  # same port, same data dir
        wait_for(lambda: _get_or_none(s, "k") == b"before", timeout=15, what="etcd back")
        rev = s.put("k", b"after")
        (ev,) = c.take(1, timeout=15)  # the watch resumed by itself
        assert (ev.value, ev.mod_revision) == (b"after", rev)
        # A frozen server (connections open, no answers) also times out.
        server.freeze()
        t0 = time.monotonic()
        with pytest.raises(Unavailable):
            s.get("k")
        assert time.monotonic() - t0 < 5
        server.thaw()
        wait_for(lambda: _get_or_none(s, "k") == b"after", timeout=15, what="etcd thawed")
        c.cancel()
    finally:
        s.close()


def _get_or_none(s: MetadataStore, key: str) -> bytes | None:
    try:
        kv = s.get(key)
    except Unavailable:
        return None
    return kv.value if kv else None


@pytest.mark.etcd
def test_etcd_prefix_isolation(etcd_endpoint: str) -> None:
    base = f"tusk-test/{uuid.uuid4().hex}/"
    a = EtcdMetadataStore(etcd_endpoint, prefix=base + "a/")
    b = EtcdMetadataStore(etcd_endpoint, prefix=base + "b/")
    try:
        a.put("k", b"a")
        assert b.get("k") is None and list(b.range("")) == []
        assert [kv.key for kv in a.range("")] == ["k"]
    finally:
        _wipe(a)
        a.close()
        b.close()
