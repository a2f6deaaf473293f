"""The object store contract (``pfs.objects`` module docstring), run against every backend.

Memory and local always run; S3 runs against a real SeaweedFS (``s3_endpoint``
from ``tests/fixtures/s3.py``) and skips visibly without one. Run with::

    python -m pytest tests/test_object_store_contract.py -p tests.fixtures.s3
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pfs.errors import InvalidArgument, ObjectNotFound, Unavailable
from pfs.objects import (
    LocalObjectStore,
    MemoryObjectStore,
    ObjectStore,
    open_object_store,
)
from tests.fixtures.s3 import SeaweedFS

MiB = 1024 * 1024


@pytest.fixture(
    params=["memory", "local", pytest.param("s3", marks=pytest.mark.s3)],
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """A fresh, empty store of each kind."""
    kind = request.param
    if kind == "memory":
        return MemoryObjectStore()
    if kind == "local":
        return LocalObjectStore(str(tmp_path / "objects"))
    from pfs.objects_s3 import S3ObjectStore

    endpoint: str = request.getfixturevalue("s3_endpoint")
    bucket: str = request.getfixturevalue("s3_bucket")
    # A prefix, so the suite also proves keys come back without it.
    return S3ObjectStore(endpoint, bucket, prefix="tusk/objects")


def put_all(store: ObjectStore, objects: dict[str, bytes]) -> None:
    """Store every key -> value of ``objects``."""
    for key, value in objects.items():
        store.put(key, value)


# --- put / get ---------------------------------------------------------------


def test_implements_the_protocol(store: ObjectStore) -> None:
    assert isinstance(store, ObjectStore)
    assert store.describe()


def test_put_then_get_returns_the_bytes(store: ObjectStore) -> None:
    store.put("packs/ab/abcdef", b"hello")
    assert store.get("packs/ab/abcdef") == b"hello"


def test_overwrite_replaces_the_value(store: ObjectStore) -> None:
    store.put("k", b"first version")
    store.put("k", b"second")
    assert store.get("k") == b"second"
    assert store.size("k") == 6


def test_binary_data_and_the_empty_object_round_trip(store: ObjectStore) -> None:
    every_byte = bytes(range(256)) * 3
    put_all(store, {"bin": every_byte, "empty": b""})
    assert store.get("bin") == every_byte
    assert store.get("empty") == b""
    assert store.size("empty") == 0
    assert store.exists("empty")
    assert store.get("empty", offset=0, length=10) == b""


def test_a_large_object_round_trips(store: ObjectStore) -> None:
    data = os.urandom(16 * MiB)
    store.put("big/one", data)
    assert store.size("big/one") == len(data)
    assert store.get("big/one") == data
    assert store.get("big/one", offset=9 * MiB, length=MiB) == data[9 * MiB : 10 * MiB]


def test_keys_with_nested_slashes(store: ObjectStore) -> None:
    key = "a/b/c/d/e/f/g.bin"
    store.put(key, b"deep")
    assert store.get(key) == b"deep"
    assert list(store.list("a/b/c/")) == [key]


def test_missing_get_raises_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound) as info:
        store.get("no/such/key")
    assert info.value.key == "no/such/key"
    with pytest.raises(ObjectNotFound):
        store.get("no/such/key", offset=3, length=0)


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b", "a/", "./a", "tab\there", "é"])
def test_invalid_keys_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidArgument):
        store.put(key, b"x")


# --- ranges ------------------------------------------------------------------


def test_range_reads(store: ObjectStore) -> None:
    store.put("r", b"0123456789")
    assert store.get("r", offset=2, length=3) == b"234"
    assert store.get("r", offset=4) == b"456789"
    assert store.get("r", length=4) == b"0123"
    assert store.get("r", offset=0, length=10) == b"0123456789"


def test_range_past_the_end_is_truncated(store: ObjectStore) -> None:
    store.put("r", b"0123456789")
    assert store.get("r", offset=8, length=100) == b"89"
    assert store.get("r", offset=10, length=5) == b""
    assert store.get("r", offset=10) == b""
    assert store.get("r", offset=50, length=5) == b""


def test_zero_length_range_is_empty(store: ObjectStore) -> None:
    store.put("r", b"0123456789")
    assert store.get("r", offset=0, length=0) == b""
    assert store.get("r", offset=5, length=0) == b""


def test_negative_range_is_refused(store: ObjectStore) -> None:
    store.put("r", b"0123")
    with pytest.raises(InvalidArgument):
        store.get("r", offset=-1)
    with pytest.raises(InvalidArgument):
        store.get("r", length=-1)


# --- exists / size / delete --------------------------------------------------


def test_exists_size_delete(store: ObjectStore) -> None:
    assert not store.exists("d/x")
    with pytest.raises(ObjectNotFound):
        store.size("d/x")
    store.put("d/x", b"12345")
    assert store.exists("d/x")
    assert store.size("d/x") == 5
    store.delete("d/x")
    assert not store.exists("d/x")
    with pytest.raises(ObjectNotFound):
        store.get("d/x")
    assert list(store.list("d/")) == []


def test_deleting_a_missing_key_is_a_no_op(store: ObjectStore) -> None:
    store.delete("never/existed")
    store.put("once", b"1")
    store.delete("once")
    store.delete("once")


def test_a_prefix_of_keys_is_not_an_object(store: ObjectStore) -> None:
    store.put("dir/file", b"1")
    assert not store.exists("dir")
    with pytest.raises(ObjectNotFound):
        store.get("dir")
    store.delete("dir")
    assert store.get("dir/file") == b"1"


# --- list --------------------------------------------------------------------


def test_list_is_sorted_and_isolated_by_prefix(store: ObjectStore) -> None:
    # "-" < "/" < "0": a naive per-directory walk would put x/... before x-1.
    keys = ["y/1", "x0", "x/2/3", "x/1", "x-1", "w", "x/2/30", "x/20"]
    put_all(store, {k: k.encode() for k in keys})
    assert list(store.list()) == sorted(keys)
    assert list(store.list("x")) == ["x-1", "x/1", "x/2/3", "x/2/30", "x/20", "x0"]
    assert list(store.list("x/")) == ["x/1", "x/2/3", "x/2/30", "x/20"]
    assert list(store.list("x/2")) == ["x/2/3", "x/2/30", "x/20"]
    assert list(store.list("x/2/")) == ["x/2/3", "x/2/30"]
    assert list(store.list("x/2/3")) == ["x/2/3", "x/2/30"]
    assert list(store.list("z")) == []
    assert list(store.list("x/9/")) == []


def test_list_streams(store: ObjectStore) -> None:
    store.put("s/1", b"")
    it = store.list("s/")
    assert isinstance(it, Iterator)
    assert next(it) == "s/1"


def test_list_pages_through_more_than_1000_keys(store: ObjectStore) -> None:
    # S3 answers at most 1000 keys per ListObjectsV2 call: 1100 in one level
    # (S3ObjectStore lists level by level) plus some in sub-levels.
    keys = [f"many/{i:05d}" for i in range(1100)] + [f"many/{i % 7}/{i}" for i in range(70)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: store.put(k, k.encode()), keys))
    assert list(store.list("many/")) == sorted(keys)
    assert list(store.list("many/3/")) == sorted(k for k in keys if k.startswith("many/3/"))
    assert list(store.list("many/01")) == [f"many/{i:05d}" for i in range(1000, 1100)]


# --- concurrency -------------------------------------------------------------


def test_concurrent_puts_from_threads(store: ObjectStore) -> None:
    def writer(t: int) -> None:
        for i in range(25):
            store.put(f"c/{t}/{i}", f"{t}:{i}".encode() * 100)
            # Everyone also races on one shared key.
            store.put("c/shared", bytes([t]) * 4096)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for t in range(8):
        for i in range(25):
            assert store.get(f"c/{t}/{i}") == f"{t}:{i}".encode() * 100
    shared = store.get("c/shared")
    assert len(shared) == 4096 and len(set(shared)) == 1  # one writer's whole value
    assert len(list(store.list("c/"))) == 8 * 25 + 1


# --- the URL factory ---------------------------------------------------------


def test_open_object_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(open_object_store("memory://"), MemoryObjectStore)
    local = open_object_store(f"file://{tmp_path}/a")
    assert isinstance(local, LocalObjectStore) and local.root == str(tmp_path / "a")
    monkeypatch.chdir(tmp_path)
    plain = open_object_store("rel/dir")
    assert isinstance(plain, LocalObjectStore) and plain.root == str(tmp_path / "rel/dir")
    for bad in (
        "ftp://x",
        "file://host/dir",
        "s3://",
        "s3://b?endpoint=127.0.0.1:1",
        "s3://b?endpoint=http://h:1&color=red",
        "memory://?x=1",
        "",
    ):
        with pytest.raises(InvalidArgument):
            open_object_store(bad)


@pytest.mark.s3
def test_open_object_store_s3_url(s3_endpoint: str, s3_bucket: str) -> None:
    store = open_object_store(f"s3://{s3_bucket}/pre/fix?endpoint=http://{s3_endpoint}")
    store.put("k", b"v")
    assert store.describe() == f"s3://{s3_bucket}/pre/fix?endpoint=http://{s3_endpoint}"
    assert list(store.list()) == ["k"]
    other = open_object_store(f"s3://{s3_bucket}?endpoint=http://{s3_endpoint}")
    assert list(other.list()) == ["pre/fix/k"]
    assert other.describe() == f"s3://{s3_bucket}?endpoint=http://{s3_endpoint}"


# --- local: atomic put against SIGKILL ---------------------------------------

_WRITER = textwrap.dedent(
    """
    import sys
    from pfs.objects import LocalObjectStore
    LocalObjectStore(sys.argv[1]).put("big/victim", b"N" * (200 * 1024 * 1024))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("had_old_value", [True, False])
def test_local_put_killed_mid_write_leaves_old_or_nothing(
    tmp_path: Path, had_old_value: bool
) -> None:
    root = tmp_path / "objects"
    store = LocalObjectStore(str(root))
    if had_old_value:
        store.put("big/victim", b"old value")
    (root / "big").mkdir(exist_ok=True)
    repo = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(root)],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    killed_mid_write = False
    deadline = time.monotonic() + 60
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            temps = [p for p in (root / "big").iterdir() if p.name.startswith(".tmp-")]
            if temps and _size_or_zero(temps[0]) > 0:
                os.kill(proc.pid, signal.SIGKILL)
                killed_mid_write = True
                break
            time.sleep(0.001)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert killed_mid_write, "the writer finished before it could be killed"

    if had_old_value:
        assert store.get("big/victim") == b"old value"
    else:
        assert not store.exists("big/victim")
        with pytest.raises(ObjectNotFound):
            store.get("big/victim")
    # The temp file stays behind but is never listed.
    assert list(store.list()) == (["big/victim"] if had_old_value else [])


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def test_local_fsync_mode_round_trips(tmp_path: Path) -> None:
    store = LocalObjectStore(str(tmp_path / "o"), fsync=True)
    store.put("n/e/w/key", b"durable")
    assert store.get("n/e/w/key") == b"durable"


def test_local_unwritable_root_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(Unavailable):
        LocalObjectStore(str(blocker / "objects"))


# --- S3: outage and recovery -------------------------------------------------


@pytest.mark.s3
@pytest.mark.slow
def test_s3_outage_raises_unavailable_then_recovers(
    seaweedfs_factory: Callable[[], SeaweedFS], s3_bucket: str
) -> None:
    from pfs.objects_s3 import S3ObjectStore

    server = seaweedfs_factory()
    server.start()
    store = S3ObjectStore(server.endpoint, s3_bucket)
    store.put("before/outage", b"precious")

    server.kill()
    for op in (
        lambda: store.get("before/outage"),
        lambda: store.put("during/outage", b"x"),
        lambda: list(store.list()),
        lambda: store.exists("before/outage"),
    ):
        started = time.monotonic()
        with pytest.raises(Unavailable) as info:
            op()
        assert time.monotonic() - started < 10
        assert server.endpoint in str(info.value)

    server.start()
    # The S3 port answers before the volume server has re-registered; wait for
    # the data rather than sleeping a guessed time.
    deadline = time.monotonic() + 60
    while True:
        try:
            assert store.get("before/outage") == b"precious"
            break
        except Unavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    store.put("after/outage", b"new")
    assert list(store.list()) == ["after/outage", "before/outage"]
