"""The gRPC API end to end: tusk.client -> tusk.server -> pfs.api (memory stores).

One in-process server on port 0 serves the whole module; each test uses its own
repo names, so tests do not see each other's state.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from pfs import errors
from pfs.api import open_pfs
from tusk.api import pfs_pb2
from tusk.client import Client
from tusk.server import serve

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    pfs = open_pfs(str(tmp_path_factory.mktemp("tusk")), metadata_url="memory://",
                   storage_url="memory://")
    server, port = serve(pfs, "127.0.0.1:0")
    c = Client(f"127.0.0.1:{port}")
    yield c
    c.close()
    server.stop(0).wait()


@pytest.fixture
def repo(client: Client) -> str:
    name = "r" + uuid.uuid4().hex[:10]
    client.create_repo(name, description="test repo")
    return name


def paths(infos: Iterator[pfs_pb2.FileInfo]) -> list[str]:
    return [fi.file.path for fi in infos]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- repos --------------------------------------------------------------------------


def test_repo_round_trip(client: Client) -> None:
    name = "r" + uuid.uuid4().hex[:10]
    ri = client.create_repo(name, description="hello")
    assert ri.repo.name == name and ri.repo.type == "user" and ri.description == "hello"
    assert ri.created.seconds > 0
    assert client.inspect_repo(name).description == "hello"
    assert name in [r.repo.name for r in client.list_repo()]
    assert name in [r.repo.name for r in client.list_repo(type=None)]
    client.create_repo(name, description="changed", update=True)
    assert client.inspect_repo(name).description == "changed"
    client.delete_repo(name)
    assert name not in [r.repo.name for r in client.list_repo()]


def test_errors_come_back_typed_with_the_same_message(client: Client, repo: str) -> None:
    with pytest.raises(errors.RepoNotFound) as exc:
        client.inspect_repo("no-such-repo")
    assert str(exc.value) == errors.RepoNotFound("no-such-repo").message
    assert exc.value.repo == "no-such-repo"  # structured fields survive too
    with pytest.raises(errors.RepoExists) as exists:
        client.create_repo(repo)
    assert str(exists.value) == errors.RepoExists(repo).message
    with pytest.raises(errors.InvalidName):
        client.create_repo("bad.name")
    with pytest.raises(errors.BranchNotFound):
        client.inspect_branch(repo, "nope")
    # Errors raised while a stream is being read are typed too.
    with pytest.raises(errors.RepoNotFound):
        list(client.list_branch("no-such-repo"))


# --- branches -------------------------------------------------------------------------


def test_branch_round_trip(client: Client, repo: str) -> None:
    first = client.put_file_bytes(repo, "master", "/a", b"1")
    client.put_file_bytes(repo, "master", "/a", b"2")
    bi = client.create_branch(repo, "old", head="master^")
    assert bi.branch.name == "old" and bi.branch.repo.name == repo
    assert bi.head.id == first.commit.id
    assert client.inspect_branch(repo, "old").head.id == first.commit.id
    assert [b.branch.name for b in client.list_branch(repo)] == ["old", "master"]
    client.delete_branch(repo, "old")
    assert [b.branch.name for b in client.list_branch(repo)] == ["master"]
    assert client.get_file_bytes(repo, first.commit.id, "/a") == b"1"


def test_branch_provenance(client: Client, repo: str) -> None:
    out = repo + "-out"
    client.create_repo(out)
    client.create_branch(repo, "master")
    bi = client.create_branch(out, "master", provenance=[f"{repo}@master"])
    assert [(b.repo.name, b.name) for b in bi.direct_provenance] == [(repo, "master")]
    assert [(b.repo.name, b.name) for b in client.inspect_branch(repo, "master").subvenance] \
        == [(out, "master")]
    # A commit upstream opens a commit with the same ID downstream (a commit set).
    ci = client.put_file_bytes(repo, "master", "/x", b"x")
    down = client.inspect_commit(out, "master")
    assert down.commit.id == ci.commit.id and down.origin == pfs_pb2.AUTO
    assert [(c.repo, c.id) for c in down.direct_provenance] == [(repo, ci.commit.id)]
    members = {(c.commit.repo, c.commit.id) for c in client.inspect_commit_set(ci.commit.id)}
    assert {(repo, ci.commit.id), (out, ci.commit.id)} <= members
    client.finish_commit(out, "master", force=True)
    sets = list(client.list_commit_set())
    assert ci.commit.id in [s.commit_set.id for s in sets]


# --- commits ----------------------------------------------------------------------------


def test_commit_round_trip(client: Client, repo: str) -> None:
    ci = client.start_commit(repo, "master", description="first")
    assert ci.state == pfs_pb2.READY and ci.commit.branch == "master"  # no provenance: ready
    assert not ci.HasField("finished")
    with client.modify_file(repo, ci.commit.id) as mf:
        mf.put_file("/f", b"data")
    # An open commit does not finish by itself. (The core's own timeout, given the
    # call's remaining deadline, may fire first; it is a TuskError too.)
    with pytest.raises(errors.TuskError, match="timed out"):
        client.inspect_commit(repo, "master", wait="FINISHED", timeout=0.3)
    done = client.finish_commit(repo, ci.commit.id, description="final")
    assert done.state == pfs_pb2.FINISHED and done.HasField("finished")
    assert done.description == "final"
    assert client.wait_commit(repo, "master", timeout=5).size_bytes_upper_bound == 4
    with pytest.raises(errors.CommitFinished):
        client.put_file_bytes(repo, ci.commit.id, "/g", b"late")

    second = client.put_file_bytes(repo, "master", "/g", b"more")
    assert second.parent_commit.id == ci.commit.id
    assert [c.commit.id for c in client.list_commit(repo, "master")] == \
        [second.commit.id, ci.commit.id]
    assert [c.commit.id for c in client.list_commit(repo, number=1)] == [second.commit.id]
    assert [c.commit.id for c in client.list_commit(repo, origin="USER")] == \
        [second.commit.id, ci.commit.id]
    assert client.inspect_commit(repo, "master.1").commit.id == ci.commit.id
    assert client.inspect_commit(repo, f"master={second.commit.id}").commit.id == \
        second.commit.id
    assert [c.id for c in client.inspect_commit(repo, ci.commit.id).child_commits] == \
        [second.commit.id]

    client.drop_commit(repo, second.commit.id)
    assert client.inspect_branch(repo, "master").head.id == ci.commit.id
    with pytest.raises(errors.NotFound):
        client.inspect_commit(repo, second.commit.id)


def test_subscribe_commit_streams_new_commits(client: Client, repo: str) -> None:
    a = client.put_file_bytes(repo, "master", "/a", b"a")
    sub = client.subscribe_commit(repo, "master")
    assert next(sub).commit.id == a.commit.id
    b = client.put_file_bytes(repo, "master", "/b", b"b")
    assert next(sub).commit.id == b.commit.id
    sub.close()  # cancels the server-side subscription


# --- files ------------------------------------------------------------------------------


def test_file_round_trip(client: Client, repo: str) -> None:
    client.put_files(repo, "master", {"/dir/a": b"aaa", "/dir/sub/b": b"bb", "/top": b"t"})
    assert client.get_file_bytes(repo, "master", "/dir/a") == b"aaa"
    assert client.get_file_bytes(repo, "master", "/dir/a", offset=1) == b"aa"
    fi = client.inspect_file(repo, "master", "/dir/a")
    assert fi.file_type == pfs_pb2.FILE and fi.size_bytes == 3 and fi.hash
    assert client.inspect_file(repo, "master", "/dir").file_type == pfs_pb2.DIR
    assert paths(client.list_file(repo, "master", "/dir")) == ["/dir/a", "/dir/sub/"]
    assert paths(client.walk_file(repo, "master")) == \
        ["/", "/dir/", "/dir/a", "/dir/sub/", "/dir/sub/b", "/top"]
    assert paths(client.glob_file(repo, "master", "/dir/*")) == ["/dir/a", "/dir/sub/"]
    with pytest.raises(errors.InvalidArgument, match="-r flag"):
        client.get_file_bytes(repo, "master", "/dir")
    with pytest.raises(errors.FileNotFound):
        client.inspect_file(repo, "master", "/nope")

    with client.modify_file(repo, "master") as mf:
        mf.put_file("/top", b"+more", append=True)
        mf.delete_file("/dir/sub")
        mf.copy_file(repo, "master", "/dir/a", "/copy")
    assert client.get_file_bytes(repo, "master", "/top") == b"t+more"
    assert client.get_file_bytes(repo, "master", "/copy") == b"aaa"
    diff = {(d.new_file.file.path if d.HasField("new_file") else None,
             d.old_file.file.path if d.HasField("old_file") else None)
            for d in client.diff_file(repo, "master")}
    assert ("/top", "/top") in diff and ("/copy", None) in diff and (None, "/dir/sub/b") in diff
    old = {d.old_file.file.path for d in client.diff_file(
        repo, "master", "/top", old_ref="master^", old_path="/top")}
    assert old == {"/top"}


def test_empty_and_iterable_and_fileobj_puts(client: Client, repo: str, tmp_path: Path) -> None:
    local = tmp_path / "f.bin"
    local.write_bytes(b"from disk")
    with client.modify_file(repo, "master") as mf:
        mf.put_file("/empty", b"")
        mf.put_file("/iter", iter([b"a", b"b", b"c"]))
        with open(local, "rb") as f:
            mf.put_file("/fileobj", f)
        mf.put_file_from_path("/path", local)
    assert client.get_file_bytes(repo, "master", "/empty") == b""
    assert client.inspect_file(repo, "master", "/empty").size_bytes == 0
    assert client.get_file_bytes(repo, "master", "/iter") == b"abc"
    assert client.get_file_bytes(repo, "master", "/fileobj") == b"from disk"
    assert client.get_file_bytes(repo, "master", "/path") == b"from disk"


def test_two_thousand_small_files_make_one_commit(client: Client, repo: str) -> None:
    files = {f"/small/{i:05d}.txt": b"file %d\n" % i for i in range(2000)}
    ci = client.put_files(repo, "master", files)
    assert [c.commit.id for c in client.list_commit(repo)] == [ci.commit.id]
    listed = list(client.list_file(repo, "master", "/small"))
    assert len(listed) == 2000
    assert client.get_file_bytes(repo, "master", "/small/01234.txt") == b"file 1234\n"
    assert ci.size_bytes_upper_bound == sum(len(v) for v in files.values())


def test_listings_stream_in_batches_and_can_stop_early(client: Client, repo: str) -> None:
    client.put_files(repo, "master", {f"/many/{i:05d}": b"" for i in range(5000)})
    walked = list(client.walk_file(repo, "master", "/many"))
    assert len(walked) == 5001 and walked[0].file.path == "/many/"
    assert [fi.file.path for fi in walked[1:]] == [f"/many/{i:05d}" for i in range(5000)]
    head = client.glob_file(repo, "master", "/many/*")
    assert next(head).file.path == "/many/00000"
    head.close()  # cancels the rest on the server
    assert len(list(client.diff_file(repo, "master"))) == 5002  # /, /many/, 5000 files


def test_64_mib_file_streams_in_pieces(client: Client, repo: str, tmp_path: Path) -> None:
    local = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    with open(local, "wb") as f:
        f.writelines(block[i:] + block[:i] for i in range(64))  # distinct MiBs, cheap
    want = hashlib.sha256(local.read_bytes()).hexdigest()
    with client.modify_file(repo, "master") as mf:
        mf.put_file_from_path("/big.bin", local)
    assert client.inspect_file(repo, "master", "/big.bin").size_bytes == 64 << 20
    got = hashlib.sha256()
    pieces = 0
    for piece in client.get_file(repo, "master", "/big.bin"):
        got.update(piece)
        pieces += 1
    assert got.hexdigest() == want
    assert pieces > 1  # streamed, not one 64 MiB message


def test_cancelled_upload_leaves_nothing_visible(client: Client, repo: str) -> None:
    class Boom(Exception):
        pass

    # To a branch: no commit appears.
    with pytest.raises(Boom), client.modify_file(repo, "master") as mf:
        mf.put_file("/partial", os.urandom(10 << 20))  # several messages sent
        raise Boom()
    assert list(client.list_commit(repo)) == []

    # Into an open commit: the commit stays without the cancelled changes.
    open_ci = client.start_commit(repo, "master")
    with pytest.raises(Boom), client.modify_file(repo, open_ci.commit.id) as mf:
        mf.put_file("/partial", os.urandom(10 << 20))
        raise Boom()
    client.put_file_bytes(repo, open_ci.commit.id, "/kept", b"k")
    client.finish_commit(repo, open_ci.commit.id)
    assert paths(client.walk_file(repo, "master")) == ["/", "/kept"]


def test_stream_without_its_final_message_is_not_applied(client: Client, repo: str) -> None:
    # What the server sees when a cancellation looks like a normal end of stream.
    msgs = [pfs_pb2.ModifyFileRequest(commit=pfs_pb2.Commit(repo=repo, id="master")),
            pfs_pb2.ModifyFileRequest(ops=[pfs_pb2.FileOp(
                add_file=pfs_pb2.AddFile(path="/a", data=b"a"))])]
    with pytest.raises(grpc.RpcError) as exc:
        client._stub.ModifyFile(iter(msgs))
    assert exc.value.code() == grpc.StatusCode.ABORTED
    assert list(client.list_commit(repo)) == []


def test_upload_to_a_missing_repo_fails_fast(client: Client) -> None:
    start = time.monotonic()
    with pytest.raises(errors.RepoNotFound), client.modify_file("no-such-repo", "master") as mf:
        for _ in range(64):  # would be 256 MiB; fails after the queue fills
            mf.put_file("/x", b"\0" * (4 << 20), append=True)
    assert time.monotonic() - start < 10


def test_dead_daemon_is_unavailable_fast() -> None:
    port = free_port()
    c = Client(f"127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(errors.Unavailable) as exc:
        c.inspect_repo("x")
    elapsed = time.monotonic() - start
    assert elapsed < 3, elapsed
    assert str(exc.value) == (
        f"tusk daemon is unreachable: 127.0.0.1:{port}: connection refused "
        "(start it with `tusk daemon` or set TUSK_ADDRESS)")
    with pytest.raises(errors.Unavailable):
        list(c.list_repo())
    with pytest.raises(errors.Unavailable):
        c.put_file_bytes("x", "master", "/a", b"a")
    c.close()


# --- the daemon process --------------------------------------------------------------


def _start_daemon(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "tusk.entry", "daemon", "--data-dir", str(tmp_path / "data"),
         "--address", f"127.0.0.1:{port}"],
        stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def test_daemon_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    proc = _start_daemon(tmp_path, port)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith(f"tusk daemon listening on 127.0.0.1:{port} (metadata: "), line
        c = Client(f"127.0.0.1:{port}")
        c.create_repo("d")
        c.put_file_bytes("d", "master", "/f", b"persisted")

        # A second daemon on the same address says so in one line and exits 1.
        second = _start_daemon(tmp_path / "2", port)
        _, err = second.communicate(timeout=30)
        assert second.returncode == 1
        assert err.strip().count("\n") == 0 and "in use" in err, err

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        c.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # The embedded stores keep the data across a restart.
    proc = _start_daemon(tmp_path, port)
    try:
        assert proc.stderr is not None
        proc.stderr.readline()
        with Client(f"127.0.0.1:{port}") as c:
            assert c.get_file_bytes("d", "master", "/f") == b"persisted"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_worker_without_reachable_stores_fails_with_one_line(tmp_path: Path) -> None:
    # A worker is tested end to end in tests/test_worker.py; here: a store it
    # cannot open is a clear one-line error and exit 1, not a traceback.
    res = subprocess.run([sys.executable, "-m", "tusk.entry", "worker", "--data-dir",
                          str(tmp_path), "--metadata", "bogus://x"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 1
    assert res.stderr.strip().startswith("tusk worker:") and "bogus" in res.stderr


def test_generated_stubs_are_current() -> None:
    pytest.importorskip("grpc_tools")
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen-proto"), "--check"],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
