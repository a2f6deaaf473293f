"""The direct path for large files (pfs.direct): the client chunks, stores and
reads packs itself when the daemon's object store is a local directory it sees.

Unit tests of the module on a real local directory store, then the whole path
through a daemon: the Python client against an in-process server, and the
``tusk`` CLI against a daemon process.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from pfs import direct, errors
from pfs.api import PFS, StorageInfo, open_pfs
from pfs.blobs import BlobStore, ChunkRef, pack_key
from pfs.objects import LocalObjectStore, MemoryObjectStore
from tests.daemons import DaemonProc
from tests.fixtures.common import free_ports
from tusk.api import pfs_pb2
from tusk.client import Client, _commit, translate
from tusk.server import serve

MiB = 1 << 20
ROOT = Path(__file__).resolve().parent.parent


def nothing_stored(hashes: list[bytes]) -> list[None]:
    return [None] * len(hashes)


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    """Random data around 40 MiB of zeros: zeros never match the chunker's mask,
    so they cut at the 8 MiB maximum, giving identical chunks (in-file duplicates,
    in each half of a split put too)."""
    data = os.urandom(7 * MiB) + bytes(40 * MiB) + os.urandom(4 * MiB)
    path = tmp_path / "input.bin"
    path.write_bytes(data)
    return path


@pytest.fixture(params=["whole", "split"])
def either_way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test on both put paths: one stream, or two halves at once (the
    path of files from ``_SPLIT_MIN``, lowered here to the test file's size)."""
    if request.param == "split":
        monkeypatch.setattr(direct, "_SPLIT_MIN", 1 * MiB)
    return str(request.param)


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(str(tmp_path / "objects"))


def read_all(store: LocalObjectStore, refs: list[ChunkRef], offset: int = 0) -> bytes:
    out = bytearray()
    direct.read_into(store, refs, out.extend, offset)
    return bytes(out)


# --- the module ---------------------------------------------------------------


@pytest.mark.parametrize("use_fork", [True, False], ids=["forked-chunker", "inline-chunker"])
def test_put_then_read_round_trips(store: LocalObjectStore, data_file: Path,
                                   use_fork: bool, either_way: str) -> None:
    r = direct.put_local_file(store, str(data_file), nothing_stored, use_fork=use_fork)
    data = data_file.read_bytes()
    assert r.size == len(data) == sum(ref[1] for ref in r.refs)
    assert read_all(store, r.refs) == data
    assert read_all(store, r.refs, offset=5 * MiB + 17) == data[5 * MiB + 17:]
    # Every pack it names exists with the size it reports.
    assert r.new_packs
    for pack, size in r.new_packs.items():
        assert store.size(pack_key(pack)) == size
    # The repeated zero chunks were stored once.
    assert r.bytes_deduped > 0
    assert r.bytes_written + r.bytes_deduped == len(data)


def test_chunks_match_the_daemons_streaming_writer(store: LocalObjectStore,
                                                   data_file: Path) -> None:
    """Same content, same chunks: a direct put and a streamed put dedup each other."""
    forked = direct.put_local_file(store, str(data_file), nothing_stored)
    inline = direct.put_local_file(store, str(data_file), nothing_stored, use_fork=False)
    data = data_file.read_bytes()
    writer = BlobStore(MemoryObjectStore()).writer()
    # Odd piece sizes: the streaming writer's windows must not change the cut.
    refs, _ = writer.write_stream(data[i:i + 3_000_001] for i in range(0, len(data), 3_000_001))
    streamed = [(h, n) for h, n, _, _ in refs]
    assert [(h, n) for h, n, _, _ in forked.refs] == streamed
    assert [(h, n) for h, n, _, _ in inline.refs] == streamed


def stored_packs(store: LocalObjectStore) -> set[str]:
    return {key.rsplit("/", 1)[1] for key in store.list("packs/")}


SPLIT_CONTENT = {
    "random": lambda: os.urandom(24 * MiB),
    "zeros-then-random": lambda: bytes(20 * MiB) + os.urandom(12 * MiB),
    "zeros": lambda: bytes(40 * MiB),
    # The middle (21.5 MiB) is not on the 8 MiB grid of the true cuts: no cut
    # there can be trusted, the first child chunks it all.
    "zeros-off-the-grid": lambda: bytes(43 * MiB),
    "zeros-across-the-middle": lambda: os.urandom(9 * MiB) + bytes(30 * MiB) + os.urandom(9 * MiB),
}


@pytest.mark.parametrize("content", list(SPLIT_CONTENT))
def test_a_split_put_gives_the_sequential_chunks(tmp_path: Path, content: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Large files are put as two halves at once; the halves must join into
    exactly the sequential chunks, or the second half is dropped and the
    first child's pass covers the file. Either way no other pack is left."""
    data = SPLIT_CONTENT[content]()
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    monkeypatch.setattr(direct, "_SPLIT_MIN", 1 * MiB)
    split_store = LocalObjectStore(str(tmp_path / "split"))
    split = direct.put_local_file(split_store, str(path), nothing_stored)
    inline = direct.put_local_file(LocalObjectStore(str(tmp_path / "inline")), str(path),
                                   nothing_stored, use_fork=False)
    assert [(h, n) for h, n, _, _ in split.refs] == [(h, n) for h, n, _, _ in inline.refs]
    assert split.size == len(data) == split.bytes_written + split.bytes_deduped
    assert read_all(split_store, split.refs) == data
    assert stored_packs(split_store) == set(split.new_packs)
    # Random data always resyncs; a middle in a run of zeros has no cut to trust.
    assert split.halves == {"random": "joined", "zeros-off-the-grid": "joined",
                            "zeros": "joined"}.get(content, split.halves)


def test_a_missed_resync_cut_drops_the_second_half(tmp_path: Path, store: LocalObjectStore,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """If the second child starts from a cut the true chunking does not make,
    its packs are deleted and the put still stores the sequential chunks."""
    data = os.urandom(24 * MiB)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    monkeypatch.setattr(direct, "_SPLIT_MIN", 1 * MiB)
    fd = os.open(path, os.O_RDONLY)
    try:
        true_cuts = set(itertools.accumulate(
            n for n, _ in direct._chunk_records_inline(fd, len(data))))
    finally:
        os.close(fd)
    wrong = len(data) // 2 + 12_345
    assert wrong not in true_cuts
    monkeypatch.setattr(direct, "_resync_cut", lambda fd, size, mid: wrong)
    r = direct.put_local_file(store, str(path), nothing_stored)
    assert r.halves == "dropped"
    assert read_all(store, r.refs) == data
    assert len(r.refs) == len(true_cuts)
    assert stored_packs(store) == set(r.new_packs)


def test_known_chunks_are_not_written_again(store: LocalObjectStore, data_file: Path,
                                            either_way: str) -> None:
    first = direct.put_local_file(store, str(data_file), nothing_stored)
    where = {h: (pack, off) for h, _, pack, off in first.refs}
    calls: list[int] = []

    def find(hashes: list[bytes]) -> list[tuple[str, int] | None]:
        calls.append(len(hashes))
        return [where.get(h) for h in hashes]

    again = direct.put_local_file(store, str(data_file), find)
    assert again.bytes_written == 0 and again.new_packs == {}
    # (A split put may have stored a chunk found in both halves twice: `where`
    # names one of its copies.)
    assert again.refs == [(h, n, *where[h]) for h, n, _, _ in first.refs]
    if either_way == "whole":  # (a split put may look the first child's overrun up too)
        assert sum(calls) == len(first.refs)


def test_a_corrupt_chunk_is_reported_and_never_written(store: LocalObjectStore,
                                                       data_file: Path) -> None:
    r = direct.put_local_file(store, str(data_file), nothing_stored)
    victim = r.refs[len(r.refs) // 2]
    path = os.path.join(store.root, pack_key(victim[2]))
    with open(path, "r+b") as f:
        f.seek(victim[3] + 10)
        byte = f.read(1)
        f.seek(victim[3] + 10)
        f.write(bytes([byte[0] ^ 0xFF]))
    out = bytearray()
    with pytest.raises(errors.Corruption, match="does not match its hash"):
        direct.read_into(store, r.refs, out.extend)
    # Only whole, verified chunks before the corrupt one reached the writer.
    good = sum(ref[1] for ref in r.refs[:len(r.refs) // 2])
    assert bytes(out) == data_file.read_bytes()[:len(out)]
    assert len(out) <= good


def test_a_missing_pack_is_reported(store: LocalObjectStore, data_file: Path) -> None:
    r = direct.put_local_file(store, str(data_file), nothing_stored)
    store.delete(pack_key(r.refs[-1][2]))
    with pytest.raises(errors.Corruption, match="is missing"):
        read_all(store, r.refs)


def test_a_file_that_changes_during_the_put_fails(store: LocalObjectStore,
                                                  data_file: Path, either_way: str) -> None:
    def find_and_grow(hashes: list[bytes]) -> list[None]:
        with open(data_file, "ab") as f:
            f.write(b"more")
        return [None] * len(hashes)

    with pytest.raises(errors.FailedPrecondition, match="changed while tusk was reading it"):
        direct.put_local_file(store, str(data_file), find_and_grow)
    # No temp file is left behind by the aborted pack.
    leftovers = [n for _, _, names in os.walk(store.root) for n in names if n.startswith(".tmp-")]
    assert leftovers == []


def test_a_chunker_that_dies_is_replaced_by_an_inline_pass(
        store: LocalObjectStore, data_file: Path, monkeypatch: pytest.MonkeyPatch,
        either_way: str) -> None:
    """A forked chunker killed by a signal (not SIGBUS: the file did not
    shrink) costs a restart without one, not the put."""
    def die(fd: int, size: int, start: int = 0) -> Iterator[tuple[int, bytes]]:
        os.kill(os.getpid(), signal.SIGKILL)  # runs in the forked child only
        yield 0, b""

    monkeypatch.setattr(direct, "_chunk_records", die)
    result = direct.put_local_file(store, str(data_file), nothing_stored)
    assert read_all(store, result.refs) == data_file.read_bytes()


def test_open_if_same_needs_the_daemons_store_id(store: LocalObjectStore) -> None:
    sid = direct.store_id(store)
    assert direct.store_id(store) == sid  # stable once created
    assert direct.open_if_same(store.root, sid) is not None
    assert direct.open_if_same(store.root, uuid.uuid4().hex) is None
    assert direct.open_if_same(store.root + "-elsewhere", sid) is None
    assert direct.open_if_same("", sid) is None


# --- through the daemon: Python client ------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[PFS, Client]]:
    pfs = open_pfs(str(tmp_path / "data"))  # the embedded default: SQLite + local dir
    server, port = serve(pfs, "127.0.0.1:0")
    c = Client(f"127.0.0.1:{port}")
    yield pfs, c
    c.close()
    server.stop(0).wait()


def test_client_put_and_get_take_the_direct_path(served: tuple[PFS, Client], data_file: Path,
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _, c = served
    assert c.direct_store() is not None
    c.create_repo("big")
    with c.modify_file("big", "master") as mf:
        mf.put_file_from_path("/direct.bin", data_file)
    # The same bytes through the streaming path (another client, direct off).
    monkeypatch.setenv("TUSK_DIRECT", "0")
    streaming = Client(c.address)
    assert streaming.direct_store() is None
    with streaming.modify_file("big", "master") as mf:
        mf.put_file_from_path("/streamed.bin", data_file)
    data = data_file.read_bytes()
    got = bytearray()
    assert c.read_file_into("big", "master", "/direct.bin", got.extend) == len(data)
    assert bytes(got) == data
    assert streaming.get_file_bytes("big", "master", "/direct.bin") == data
    assert c.get_file_bytes("big", "master", "/streamed.bin") == data
    # Same chunks either way, so the same file hash.
    a = c.inspect_file("big", "master", "/direct.bin")
    b = c.inspect_file("big", "master", "/streamed.bin")
    assert a.hash == b.hash and a.size_bytes == b.size_bytes == len(data)
    streaming.close()


def test_a_direct_put_naming_a_missing_pack_is_refused(served: tuple[PFS, Client]) -> None:
    _, c = served
    c.create_repo("forged")
    head = len(list(c.list_commit("forged")))
    req = pfs_pb2.ModifyFileRequest(commit=_commit("forged", "master"), done=True)
    add = req.ops.add().add_chunks
    add.path, add.size = "/x", 10
    ch = add.chunks.add()
    ch.hash, ch.size, ch.pack, ch.offset = b"\1" * 32, 10, "f" * 32, 0
    add.new_packs["f" * 32] = 100
    with pytest.raises(errors.FailedPrecondition, match="missing"):
        try:
            c._stub.ModifyFile(iter([req]))
        except grpc.RpcError as exc:  # translated as the client does
            raise translate(exc, c.address) from None
    assert len(list(c.list_commit("forged"))) == head  # nothing was committed


def test_an_in_memory_store_offers_no_direct_path(tmp_path: Path) -> None:
    pfs = open_pfs(str(tmp_path / "data"), metadata_url="memory://", storage_url="memory://")
    assert pfs.storage_info() == StorageInfo()
    with pytest.raises(errors.FailedPrecondition, match="cannot presign"):
        pfs.presign_packs(1)
    server, port = serve(pfs, "127.0.0.1:0")
    try:
        with Client(f"127.0.0.1:{port}") as c:
            assert c.direct_store() is None
            c.create_repo("r")
            with c.modify_file("r", "master") as mf:
                mf.put_file("/a", os.urandom(9 * MiB))
            assert len(c.get_file_bytes("r", "master", "/a")) == 9 * MiB
    finally:
        server.stop(0).wait()


# --- through the daemon: the CLI -------------------------------------------------


def test_cli_put_and_get_of_a_large_file(tmp_path: Path, data_file: Path) -> None:
    d = DaemonProc(tmp_path).start()
    try:
        env = dict(os.environ, TUSK_ADDRESS=d.address,
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))

        def tusk(*args: str, **kw: str) -> subprocess.CompletedProcess[bytes]:
            p = subprocess.run([sys.executable, "-m", "tusk.entry", *args],
                               capture_output=True, env={**env, **kw}, timeout=120, check=False)
            assert p.returncode == 0, p.stderr.decode()
            return p

        tusk("create", "repo", "big")
        tusk("put", "file", "big@master:/a.bin", "-f", str(data_file))
        tusk("put", "file", "big@master:/b.bin", "-f", str(data_file), TUSK_DIRECT="0")
        data = data_file.read_bytes()
        out = tmp_path / "out.bin"
        for path in ("/a.bin", "/b.bin"):
            tusk("get", "file", f"big@master:{path}", "-o", str(out))
            assert out.read_bytes() == data
            assert tusk("get", "file", f"big@master:{path}").stdout == data
            assert tusk("get", "file", f"big@master:{path}", "--offset", "1000").stdout \
                == data[1000:]
        # No gRPC fork warning leaks into the user's terminal.
        p = tusk("put", "file", "big@master:/c.bin", "-f", str(data_file))
        assert b"fork" not in p.stderr
        # The second put of the same bytes stored nothing new: 3 files, one copy.
        objects = d.data_dir / "objects" / "packs"
        stored = sum(f.stat().st_size for f in objects.rglob("*") if f.is_file())
        assert stored < 1.2 * len(data)
    finally:
        d.stop()


def test_kill9_of_the_cli_mid_direct_put_leaves_nothing_visible(tmp_path: Path) -> None:
    """The CLI dies while it writes packs itself: no commit appears, the
    orphaned packs are garbage for GC, and a new put works."""
    from pfs import gc
    from tests.daemons import wait_for

    src = tmp_path / "huge.bin"
    with open(src, "wb") as f:
        for _ in range(40):
            f.write(os.urandom(8 * MiB))  # 320 MiB: the put takes a while
    d = DaemonProc(tmp_path).start()
    try:
        c = d.client()
        c.create_repo("k")
        c.put_files("k", "master", {"/keep.txt": b"kept\n"})
        head = c.inspect_branch("k", "master").head.id
        packs = d.data_dir / "objects" / "packs"

        def complete_packs() -> int:  # not the temp file of the pack being written
            return sum(1 for p in packs.rglob("*") if p.is_file() and
                       not p.name.startswith(".tmp-"))

        before = complete_packs()
        env = dict(os.environ, TUSK_ADDRESS=d.address,
                   PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        cli = subprocess.Popen([sys.executable, "-m", "tusk.entry", "put", "file",
                                "k@master:/huge.bin", "-f", str(src)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: complete_packs() >= before + 2, 60,
                     "the CLI to write some packs", 0.01)
        finally:
            cli.kill()
            cli.wait(30)
        assert cli.returncode == -9, "the put finished before it could be killed"
        assert c.inspect_branch("k", "master").head.id == head
        assert [fi.file.path for fi in c.list_file("k", "master")] == ["/keep.txt"]
        assert d.stop() == 0
        core = open_pfs(str(d.data_dir))
        try:
            stats = gc.collect(core, grace_seconds=0)
            assert stats.packs_deleted >= 2
        finally:
            core.meta.close()
        d.start()
        c = d.client()
        assert c.get_file_bytes("k", "master", "/keep.txt") == b"kept\n"
        with c.modify_file("k", "master") as mf:
            mf.put_file_from_path("/huge.bin", src)
        got = bytearray()
        c.read_file_into("k", "master", "/huge.bin", got.extend)
        assert bytes(got) == src.read_bytes()
    finally:
        d.close()


# --- S3 stores: presigned uploads ---------------------------------------------------


def _s3_served(tmp_path: Path, endpoint: str, bucket: str) -> tuple[PFS, Any, Client]:
    pfs = open_pfs(str(tmp_path / "data"), metadata_url="memory://",
                   storage_url=f"s3://{bucket}/objects?endpoint=http://{endpoint}")
    server, port = serve(pfs, "127.0.0.1:0")
    return pfs, server, Client(f"127.0.0.1:{port}")


def _packs_in(pfs: PFS) -> dict[str, int]:
    return {k.rsplit("/", 1)[1]: pfs.objects.size(k) for k in pfs.objects.list("packs/")}


@pytest.mark.s3
def test_s3_put_uploads_packs_through_presigned_urls(tmp_path: Path, data_file: Path,
                                                     s3_endpoint: str, s3_bucket: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pfs, server, c = _s3_served(tmp_path, s3_endpoint, s3_bucket)
    try:
        assert isinstance(c.direct_target(), direct.PresignedUploads)
        assert c.direct_store() is None  # nothing to read locally: gets stream
        c.create_repo("big")
        before = _packs_in(pfs)
        with c.modify_file("big", "master") as mf:
            mf.put_file_from_path("/direct.bin", data_file)
        new = {p: n for p, n in _packs_in(pfs).items() if p not in before}
        # The file's chunks are in new packs the client uploaded: each holds its
        # distinct chunks and a footer, and all but the last reach the target.
        _, refs = pfs.file_chunks("big", "master", "/direct.bin")
        held: dict[str, dict[int, int]] = {}
        for _, n, pack, off in refs:
            held.setdefault(pack, {})[off] = n
        assert set(held) <= set(new) and len(held) >= 2
        for pack, chunks in held.items():
            body = sum(chunks.values())
            assert body < new[pack] < body + 4096
        assert sum(new[p] < direct.UPLOAD_PACK_TARGET for p in held) <= 1
        monkeypatch.setenv("TUSK_DIRECT", "0")
        with Client(c.address) as streaming:
            assert streaming.direct_target() is None
            with streaming.modify_file("big", "master") as mf:
                mf.put_file_from_path("/streamed.bin", data_file)
            data = data_file.read_bytes()
            assert streaming.get_file_bytes("big", "master", "/direct.bin") == data
            assert c.get_file_bytes("big", "master", "/streamed.bin") == data
        a = c.inspect_file("big", "master", "/direct.bin")
        b = c.inspect_file("big", "master", "/streamed.bin")
        assert a.hash == b.hash and a.size_bytes == len(data)
        # A second direct put of the same bytes uploads no chunk (the commit
        # itself stores a small pack of tree nodes).
        packs = _packs_in(pfs)
        with c.modify_file("big", "master") as mf:
            mf.put_file_from_path("/again.bin", data_file)
        _, again = pfs.file_chunks("big", "master", "/again.bin")
        assert {r[2] for r in again} <= set(held)
        added = set(_packs_in(pfs)) - set(packs)
        assert sum(_packs_in(pfs)[p] for p in added) < 64 * 1024
    finally:
        c.close()
        server.stop(0).wait()


@pytest.mark.s3
def test_presigned_uploads_need_no_keys_and_the_server_checks_them(
        tmp_path: Path, data_file: Path, seaweedfs_factory: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Against a server that checks SigV4: the daemon holds the keys, the
    client none; a URL changed to name another object is refused."""
    keys = ("tuskaccess", "tusksecret-" + uuid.uuid4().hex[:12])
    weed = seaweedfs_factory(keys)
    weed.start()
    for var in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys[0])  # the daemon's keys...
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys[1])
    pfs = open_pfs(str(tmp_path / "data"), metadata_url="memory://",
                   storage_url=f"s3://signed/objects?endpoint=http://{weed.endpoint}")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")  # ...gone before the client starts
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    server, port = serve(pfs, "127.0.0.1:0")
    try:
        with Client(f"127.0.0.1:{port}") as c:
            target = c.direct_target()
            assert isinstance(target, direct.PresignedUploads)
            c.create_repo("r")
            with c.modify_file("r", "master") as mf:
                mf.put_file_from_path("/a.bin", data_file)
            assert c.get_file_bytes("r", "master", "/a.bin") == data_file.read_bytes()
            pack, url = c.presign_packs(1)[0]
            forged = url.replace(pack, uuid.uuid4().hex)
            with pytest.raises(errors.Unavailable, match="answered 403"):
                target.upload(pack, forged, memoryview(b"x"))
            target.upload(pack, url, memoryview(b"x"))  # the URL as signed works
            assert pfs.objects.get(pack_key(pack)) == b"x"
    finally:
        server.stop(0).wait()


@pytest.mark.s3
def test_a_client_that_cannot_reach_s3_streams_instead(s3_endpoint: str, s3_bucket: str,
                                                       tmp_path: Path) -> None:
    pfs, server, c = _s3_served(tmp_path, s3_endpoint, s3_bucket)
    try:
        info = pfs.storage_info()
        assert info.probe_url and info.store_id and not info.local_root
        assert direct.open_presigned(info.probe_url, info.store_id, c.presign_packs) is not None
        # Another store's ID, or a server this process cannot reach: no direct path.
        assert direct.open_presigned(info.probe_url, uuid.uuid4().hex, c.presign_packs) is None
        (port,) = free_ports(1)
        dead = info.probe_url.replace(s3_endpoint, f"127.0.0.1:{port}")
        assert direct.open_presigned(dead, info.store_id, c.presign_packs) is None
    finally:
        c.close()
        server.stop(0).wait()


@pytest.mark.s3
def test_a_failed_upload_fails_the_put_and_commits_nothing(
        tmp_path: Path, data_file: Path, s3_endpoint: str, s3_bucket: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, server, c = _s3_served(tmp_path, s3_endpoint, s3_bucket)
    try:
        c.create_repo("r")
        c.put_files("r", "master", {"/keep.txt": b"kept\n"})
        head = c.inspect_branch("r", "master").head.id
        (port,) = free_ports(1)

        def presign_to_nowhere(count: int) -> list[tuple[str, str]]:
            return [(p, u.replace(s3_endpoint, f"127.0.0.1:{port}"))
                    for p, u in Client.presign_packs(c, count)]

        monkeypatch.setattr(c, "presign_packs", presign_to_nowhere)
        assert isinstance(c.direct_target(), direct.PresignedUploads)
        with pytest.raises(errors.Unavailable,
                           match=r"S3 is unreachable: upload of pack .*TUSK_DIRECT=0"), \
                c.modify_file("r", "master") as mf:
            mf.put_file_from_path("/big.bin", data_file)
        assert c.inspect_branch("r", "master").head.id == head
        assert [fi.file.path for fi in c.list_file("r", "master")] == ["/keep.txt"]
    finally:
        c.close()
        server.stop(0).wait()


@pytest.mark.s3
def test_s3_get_reads_packs_through_presigned_urls(tmp_path: Path, data_file: Path,
                                                   s3_endpoint: str, s3_bucket: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pfs, server, c = _s3_served(tmp_path, s3_endpoint, s3_bucket)
    try:
        c.create_repo("r")
        with c.modify_file("r", "master") as mf:
            mf.put_file_from_path("/a.bin", data_file)
        data = data_file.read_bytes()
        calls: list[str] = []
        real = direct.read_presigned_into

        def spy(*args: Any, **kw: Any) -> int:
            calls.append("presigned")
            return real(*args, **kw)

        monkeypatch.setattr(direct, "read_presigned_into", spy)
        for offset in (0, 1000, 7 * MiB + 5, len(data) - 1, len(data)):
            got = bytearray()
            assert c.read_file_into("r", "master", "/a.bin", got.extend, offset) \
                == len(data) - offset
            assert bytes(got) == data[offset:]
        assert len(calls) == 5  # every read took the presigned path
        # A corrupt pack: the read fails naming the chunk, and hands out no
        # bytes of the chunk that does not match.
        _, chunks = pfs.file_chunks("r", "master", "/a.bin")
        pack, at = next(iter(chunks))[2:]
        key = pack_key(pack)
        blob = bytearray(pfs.objects.get(key))
        blob[at + 10] ^= 0xFF
        pfs.objects.put(key, bytes(blob))
        got = bytearray()
        with pytest.raises(errors.Corruption, match="does not match its hash"):
            c.read_file_into("r", "master", "/a.bin", got.extend)
        assert got == b""
    finally:
        c.close()
        server.stop(0).wait()
