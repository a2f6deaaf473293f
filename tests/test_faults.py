"""Faults with real servers: a real ``tusk daemon`` killed with SIGKILL mid-write,
and etcd or S3 going away under a running daemon.

What must hold (DESIGN.md, "Processes"): any process can be killed at any
moment; on restart nothing partial is visible and every finished commit reads
back byte-identical. A backing service that goes away makes requests fail
within seconds with a message naming it, and when it comes back the daemon
serves again without a restart.

Backends: ``embedded`` (SQLite + local directory, the default) and ``real``
(etcd + S3 on SeaweedFS) for the kill tests; dedicated etcd / SeaweedFS
servers (``etcd_factory`` / ``seaweedfs_factory``) for the outages.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pfs import gc
from pfs.api import PFS, open_pfs
from pfs.blobs import BlobStore
from pfs.errors import TuskError, Unavailable
from pfs.metadata import MemoryMetadataStore
from pfs.model import CommitState
from pfs.objects import MemoryObjectStore, ObjectStore, open_object_store
from tests.daemons import DaemonProc, wait_for
from tusk.api import pfs_pb2
from tusk.client import Client

MiB = 1024 * 1024

Snapshot = dict[str, dict[str, str]]  # commit id -> path -> sha256


def _snapshot(c: Client, repo: str) -> Snapshot:
    """Every file of every commit of ``repo``, hashed; fails on an unfinished commit."""
    out: Snapshot = {}
    for ci in c.list_commit(repo):
        assert ci.state == pfs_pb2.FINISHED, f"commit {ci.commit.id} is {ci.state}"
        files: dict[str, str] = {}
        for fi in c.walk_file(repo, ci.commit.id, "/"):
            if fi.file_type != pfs_pb2.FILE:
                continue
            h = hashlib.sha256()
            for piece in c.get_file(repo, ci.commit.id, fi.file.path):
                h.update(piece)
            files[fi.file.path] = h.hexdigest()
        out[ci.commit.id] = files
    return out


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _repo() -> str:
    return f"f{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["embedded", "real"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """Daemon flags for one backend (the data dir is the DaemonProc's)."""
    if request.param == "embedded":
        return []
    etcd = request.getfixturevalue("etcd_endpoint")
    s3 = request.getfixturevalue("s3_endpoint")
    return ["--metadata", f"etcd://{etcd}/tusk-test/{uuid.uuid4().hex}",
            "--storage", f"s3://f{uuid.uuid4().hex[:12]}/p?endpoint=http://{s3}"]


@pytest.fixture
def daemon(backend: list[str], tmp_path: Path) -> Iterator[DaemonProc]:
    d = DaemonProc(tmp_path, backend)
    yield d
    d.close()


def _objects(d: DaemonProc, backend: list[str]) -> ObjectStore:
    """The daemon's object store, opened here to watch it."""
    flags = dict(zip(backend[::2], backend[1::2], strict=True))
    return open_object_store(flags.get("--storage") or str(d.data_dir / "objects"))


def _open_core(d: DaemonProc, backend: list[str]) -> object:
    """The same stores, opened in process (the daemon must be stopped)."""
    flags = dict(zip(backend[::2], backend[1::2], strict=True))
    return open_pfs(str(d.data_dir), flags.get("--metadata"), flags.get("--storage"))


@pytest.mark.slow
def test_kill9_during_a_large_put_file(daemon: DaemonProc, backend: list[str]) -> None:
    daemon.start()
    c = daemon.client()
    repo = _repo()
    c.create_repo(repo)
    c.put_files(repo, "master", {"/a.txt": b"one\n", "/big.bin": os.urandom(3 * MiB)})
    c.put_files(repo, "master", {"/b.txt": b"two\n", "/dir/c.bin": os.urandom(600_000)})
    before = _snapshot(c, repo)
    head = c.inspect_branch(repo, "master").head.id
    objects = _objects(daemon, backend)
    packs_before = len(list(objects.list("packs/")))

    total, sent = 300 * MiB, [0]
    failure: list[BaseException] = []

    def pieces() -> Iterator[bytes]:
        while sent[0] < total:
            piece = os.urandom(4 * MiB)
            sent[0] += len(piece)
            yield piece

    def upload() -> None:
        try:
            with daemon.client().modify_file(repo, "master") as mf:
                mf.put_file("/huge.bin", pieces())
        except BaseException as exc:
            failure.append(exc)

    t = threading.Thread(target=upload)
    t.start()
    # Kill once the daemon has stored some of the upload (a pack is ~8 MiB).
    wait_for(lambda: len(list(objects.list("packs/"))) >= packs_before + 2, 60,
             "the daemon to store part of the upload", 0.02)
    daemon.kill9()
    t.join(60)
    assert not t.is_alive() and failure, "the upload should have failed with the daemon"
    assert sent[0] < total
    assert isinstance(failure[0], TuskError), repr(failure[0])

    daemon.start()
    c2 = daemon.client()
    assert c2.inspect_branch(repo, "master").head.id == head  # nothing new became visible
    assert _snapshot(c2, repo) == before
    assert daemon.stop() == 0

    # The killed upload's packs are garbage: GC frees them, the data stays intact.
    core = _open_core(daemon, backend)
    try:
        stats = gc.collect(core, grace_seconds=0)  # type: ignore[arg-type]
        assert stats.packs_deleted >= 1 and stats.bytes_deleted >= 4 * MiB
    finally:
        core.meta.close()  # type: ignore[attr-defined]
    daemon.start()
    assert _snapshot(daemon.client(), repo) == before


@pytest.mark.slow
@pytest.mark.parametrize("when", ["asked", "finishing"])
def test_kill9_during_finish_commit_with_many_layers(daemon: DaemonProc, when: str) -> None:
    daemon.start()
    c = daemon.client()
    repo = _repo()
    c.create_repo(repo)
    c.put_files(repo, "master", {"/base.txt": b"base\n"})
    before = _snapshot(c, repo)
    head = c.inspect_branch(repo, "master").head.id

    ci = c.start_commit(repo, "master")
    cid = ci.commit.id
    expected = {"/base.txt": _sha(b"base\n")}
    for layer in range(40):  # one upload = one layer of the open commit
        files = {f"/l{layer:02d}/f{i:03d}.txt": f"{layer}/{i}\n".encode() for i in range(25)}
        files[f"/l{layer:02d}/blob.bin"] = os.urandom(100_000)
        with c.modify_file(repo, cid) as mf:
            for path, data in files.items():
                mf.put_file(path, data)
        expected.update({p: _sha(d) for p, d in files.items()})

    finish_error: list[BaseException] = []

    def finish() -> None:
        try:
            daemon.client().finish_commit(repo, cid)
        except BaseException as exc:
            finish_error.append(exc)

    watcher = daemon.client()
    t = threading.Thread(target=finish)
    t.start()
    if when == "finishing":
        # Kill while the index is being built (the commit says FINISHING).
        def finishing() -> bool:
            state = watcher.inspect_commit(repo, cid).state
            assert state != pfs_pb2.FINISHED, "finished before it could be killed"
            return state == pfs_pb2.FINISHING

        wait_for(finishing, 30, "the commit to be FINISHING", 0.0)
    daemon.kill9()
    t.join(30)

    daemon.start()
    c2 = daemon.client()
    info = c2.inspect_commit(repo, cid)
    state = pfs_pb2.CommitState.Name(info.state)
    if info.state == pfs_pb2.FINISHING:
        # The restarted daemon recovers a finish that was under way.
        info = c2.wait_commit(repo, cid, timeout=30)
    if info.state != pfs_pb2.FINISHED:
        # The request never landed: the commit is still open and whole.
        assert info.state in (pfs_pb2.STARTED, pfs_pb2.READY), state
        assert c2.inspect_branch(repo, "master").head.id == cid
        c2.finish_commit(repo, cid)
    print(f"finish killed when {when}: {state} after restart")
    got = _snapshot(c2, repo)
    assert got[cid] == expected, f"commit {cid} (state after restart: {state}) lost content"
    for old_id, files in before.items():
        assert got[old_id] == files
    assert c2.inspect_branch(repo, "master").head.id == cid and head in got


def _put_fresh(c: Client, repo: str, path: str, size: int) -> str:
    data = os.urandom(size)
    c.put_file_bytes(repo, "master", path, data)
    return _sha(data)


def _fails_naming(service: str, fn: object, limit: float) -> str:
    """Run ``fn``; it must raise a TuskError naming ``service`` within ``limit`` s."""
    t0 = time.monotonic()
    with pytest.raises(TuskError) as ei:
        fn()  # type: ignore[operator]
    took = time.monotonic() - t0
    msg = str(ei.value)
    assert service in msg, msg
    assert took < limit, f"took {took:.1f} s to fail: {msg}"
    return msg


@pytest.mark.slow
def test_etcd_outage_fails_fast_and_recovers(etcd_factory: object, s3_endpoint: str,
                                             tmp_path: Path) -> None:
    etcd = etcd_factory()  # type: ignore[operator]
    d = DaemonProc(tmp_path, [
        "--metadata", f"etcd://{etcd.endpoint}/tusk", "--master-ttl", "2",
        "--storage", f"s3://f{uuid.uuid4().hex[:12]}/p?endpoint=http://{s3_endpoint}"])
    try:
        d.start()
        c = d.client()
        repo = _repo()
        c.create_repo(repo)
        big = _put_fresh(c, repo, "/big.bin", 2 * MiB)
        before = _snapshot(c, repo)

        etcd.stop()
        t_down = time.monotonic()
        _fails_naming("etcd", lambda: c.inspect_repo(repo), 10)
        _fails_naming("etcd", lambda: _put_fresh(c, repo, "/during.bin", 100_000), 10)
        time.sleep(1)  # down longer than the master lease TTL: etcd renews leases on restart
        assert time.monotonic() - t_down > 2
        etcd.start()

        def serving() -> bool:
            try:
                c.inspect_repo(repo)
                return True
            except TuskError:
                return False

        took = wait_for(serving, 30, "the daemon to serve again after etcd came back", 0.2)
        assert d.running(), d.log()
        assert _snapshot(c, repo) == before
        assert before[c.inspect_branch(repo, "master").head.id]["/big.bin"] == big
        after = _put_fresh(c, repo, "/after.bin", 300_000)
        assert _sha(c.get_file_bytes(repo, "master", "/after.bin")) == after
        time.sleep(1.5)  # a keepalive round after the outage: still master, still running
        assert d.running() and "no longer master" not in d.log()
        print(f"etcd outage: recovered {took:.1f} s after restart")
    finally:
        d.close()


@pytest.mark.slow
def test_s3_outage_fails_fast_and_recovers(etcd_endpoint: str, seaweedfs_factory: object,
                                           tmp_path: Path) -> None:
    s3 = seaweedfs_factory()  # type: ignore[operator]
    s3.start()
    d = DaemonProc(tmp_path, [
        "--metadata", f"etcd://{etcd_endpoint}/tusk-test/{uuid.uuid4().hex}",
        "--storage", f"s3://f{uuid.uuid4().hex[:12]}/p?endpoint=http://{s3.endpoint}"])
    try:
        d.start()
        c = d.client()
        repo = _repo()
        c.create_repo(repo)
        unread = _put_fresh(c, repo, "/unread.bin", 3 * MiB)  # never read: not in any cache
        head = c.inspect_branch(repo, "master").head.id

        s3.kill()
        _fails_naming("S3", lambda: c.get_file_bytes(repo, "master", "/unread.bin"), 15)
        _fails_naming("S3", lambda: _put_fresh(c, repo, "/during.bin", 1 * MiB), 15)
        assert c.inspect_branch(repo, "master").head.id == head  # the failed put left nothing
        s3.start()

        def serving() -> bool:
            try:
                return _sha(c.get_file_bytes(repo, "master", "/unread.bin")) == unread
            except TuskError:
                return False

        wait_for(serving, 30, "reads to work again after S3 came back", 0.2)
        assert d.running(), d.log()
        after = _put_fresh(c, repo, "/after.bin", 1 * MiB)
        assert _sha(c.get_file_bytes(repo, "master", "/after.bin")) == after
        snap = _snapshot(c, repo)
        assert snap[head] == {"/unread.bin": unread}
    finally:
        d.close()


class _FlakyObjects(MemoryObjectStore):
    """A memory object store whose writes fail while ``down`` (an S3 outage)."""

    down = False

    def put(self, key: str, data: bytes) -> None:
        if self.down:
            raise Unavailable("S3", "test outage")
        super().put(key, data)


def test_finish_interrupted_by_an_outage_completes_when_the_store_is_back() -> None:
    objects = _FlakyObjects()
    pfs = PFS(MemoryMetadataStore(), BlobStore(objects))
    pfs.create_repo("r")
    c = pfs.start_commit("r", "master")
    with pfs.modify_file("r", "master") as w:
        w.put_file("/a", [b"x" * 1000])
    objects.down = True
    with pytest.raises(Unavailable):
        pfs.finish_commit("r", c.id)
    objects.down = False
    # Without a restart: the commit must finish once S3 is back (or a retry
    # of finish_commit must finish it).
    pfs.inspect_commit("r", c.id, wait=CommitState.FINISHED, timeout=3)
