# ruff: noqa: F811  (pytest fixtures imported from tests.test_cli are parameters here)
"""Pachyderm's PFS API (``pfs_v2``) on a real tusk daemon, driven by
Pachyderm's own SDK (``pachyderm_sdk``, from PyPI) and by raw gRPC calls for
what the SDK cannot do on purpose (cancel a stream half way, die mid-write).

The SDK's own test suite runs separately (tests/test_pachyderm_sdk_suite.py);
these pin what it does not check: no partial commit from a cancelled or broken
``ModifyFile``, a hundred open followers not starving other calls, data
written through one API read back through the other.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator

import grpc
import pytest

from tests.test_cli import Tusk, tusk  # noqa: F401

pachyderm_sdk = pytest.importorskip(
    "pachyderm_sdk", reason="pachyderm-sdk is a dev dependency: pip install -e '.[dev]'")
from pachyderm_sdk import Client  # noqa: E402
from pachyderm_sdk.api import pfs  # noqa: E402

from tusk.pachyderm_api import pfs_pb2 as p  # noqa: E402
from tusk.pachyderm_api import pfs_pb2_grpc  # noqa: E402


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(tusk: Tusk) -> Iterator[Client]:
    host, port = tusk.address.rsplit(":", 1)
    c = Client(host=host, port=int(port))
    yield c
    c._channel.close()


def test_sdk_round_trip_in_a_project_and_read_back_by_tusk(client: Client, tusk: Tusk) -> None:
    project = pfs.Project(name=_name("proj"))
    client.pfs.create_project(project=project)
    repo = pfs.Repo(name="images", project=project)
    client.pfs.create_repo(repo=repo, description="camera roll")
    branch = pfs.Branch(repo=repo, name="master")
    big = os.urandom(5 << 20)  # above grpcio's 4 MiB default message limit
    with client.pfs.commit(branch=branch) as commit:
        commit.put_file_from_bytes(path="/a/one.txt", data=b"one\n")
        commit.put_file_from_bytes(path="/a/big.bin", data=big)
        commit.put_file_from_bytes(path="/empty", data=b"")
    info = client.pfs.inspect_commit(commit=commit, wait=pfs.CommitState.FINISHED)
    assert info.finished and info.commit.id == commit.id
    assert info.commit.repo.project.name == project.name

    got = client.pfs.pfs_file(pfs.File(commit=commit, path="/a/big.bin")).read()
    assert got == big
    names = sorted(fi.file.path for fi in client.pfs.walk_file(
        file=pfs.File(commit=commit, path="/")))
    assert names == ["/", "/a/", "/a/big.bin", "/a/one.txt", "/empty"]
    with client.pfs.pfs_tar_file(pfs.File(commit=commit, path="/a")) as tar:
        members = {m.name: m for m in tar}
    assert {"a/one.txt", "a/big.bin"} <= set(members)
    assert members["a/big.bin"].size == len(big)

    # The same data through tusk's own CLI: the project/repo naming agrees.
    out = tusk.ok("get", "file", f"{project.name}/images@master:/a/one.txt")
    assert out == "one\n"
    # Overwrite (delete + add) and append, as the SDK does them.
    with client.pfs.commit(branch=branch) as c2:
        c2.put_file_from_bytes(path="/a/one.txt", data=b"uno\n")
        c2.put_file_from_bytes(path="/empty", data=b"more", append=True)
    assert tusk.ok("get", "file", f"{project.name}/images@master:/a/one.txt") == "uno\n"
    assert tusk.ok("get", "file", f"{project.name}/images@master:/empty") == "more"
    commits = list(client.pfs.list_commit(repo=repo))
    assert [c.commit.id for c in commits][:2] == [c2.id, commit.id]


def test_errors_keep_pachyderm_codes(client: Client) -> None:
    missing = pfs.Branch.from_uri(f"{_name('nope')}@master")
    with pytest.raises(grpc.RpcError) as err:
        client.pfs.start_commit(branch=missing)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "not found" in err.value.details()
    assert not client.pfs.repo_exists(missing.repo)
    # force-deleting a repo that is not there is not an error (Pachyderm's rule)
    client.pfs.delete_repo(repo=missing.repo, force=True)


def _stub(tusk: Tusk) -> tuple[grpc.Channel, pfs_pb2_grpc.APIStub]:
    channel = grpc.insecure_channel(tusk.address)
    return channel, pfs_pb2_grpc.APIStub(channel)  # type: ignore[no-untyped-call]


def _repo(client: Client) -> pfs.Repo:
    repo = pfs.Repo(name=_name("cancel"))
    client.pfs.create_repo(repo=repo)
    with client.pfs.commit(branch=pfs.Branch(repo=repo, name="master")) as c:
        c.put_file_from_bytes(path="/kept", data=b"kept")
    return repo


def _files(client: Client, repo: pfs.Repo) -> list[str]:
    head = pfs.Commit(branch=pfs.Branch(repo=repo, name="master"))
    client.pfs.wait_commit(head)
    return sorted(fi.file.path for fi in client.pfs.walk_file(file=pfs.File(commit=head)))


def test_cancelled_modify_file_commits_nothing(client: Client, tusk: Tusk) -> None:
    repo = _repo(client)
    before = [c.commit.id for c in client.pfs.list_commit(repo=repo)]
    sent = threading.Event()
    release = threading.Event()

    def requests() -> Iterator[p.ModifyFileRequest]:
        yield p.ModifyFileRequest(set_commit=p.Commit(
            branch=p.Branch(repo=p.Repo(name=repo.name, type="user"), name="master")))
        yield p.ModifyFileRequest(add_file=p.AddFile(path="/partial", raw={"value": b"x" * 1000}))
        sent.set()
        release.wait(30)  # the client never ends the stream normally

    channel, stub = _stub(tusk)
    try:
        future = stub.ModifyFile.future(requests())
        assert sent.wait(10)
        time.sleep(0.3)  # the server has read the add_file
        future.cancel()
        release.set()
        with pytest.raises(grpc.FutureCancelledError):
            future.result()
    finally:
        channel.close()
    # Nothing of it is visible (once the server has seen the cancellation, the
    # stream's open commit is gone), and the branch takes new writes at once.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(list(client.pfs.list_commit(repo=repo))) != len(
            before):
        time.sleep(0.1)
    after = list(client.pfs.list_commit(repo=repo))
    assert [c.commit.id for c in after] == before, [
        (c.commit.id, c.finished, c.error) for c in after]
    assert _files(client, repo) == ["/", "/kept"]
    with client.pfs.commit(branch=pfs.Branch(repo=repo, name="master")) as c:
        c.put_file_from_bytes(path="/after", data=b"ok")
    assert _files(client, repo) == ["/", "/after", "/kept"]


_WRITER = textwrap.dedent("""
    import sys, time, grpc
    from tusk.pachyderm_api import pfs_pb2 as p, pfs_pb2_grpc
    address, repo = sys.argv[1:3]
    def requests():
        yield p.ModifyFileRequest(set_commit=p.Commit(
            branch=p.Branch(repo=p.Repo(name=repo, type="user"), name="master")))
        for i in range(1000):
            yield p.ModifyFileRequest(add_file=p.AddFile(path=f"/f{i}", raw={"value": b"y" * 100}))
        print("streaming", flush=True)
        time.sleep(120)
    stub = pfs_pb2_grpc.APIStub(grpc.insecure_channel(address))
    stub.ModifyFile(requests())
""")


def test_writer_killed_mid_stream_commits_nothing(client: Client, tusk: Tusk) -> None:
    repo = _repo(client)
    before = [c.commit.id for c in client.pfs.list_commit(repo=repo)]
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, tusk.address, repo.name],
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "streaming"
        time.sleep(0.5)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # only the process this test started
        proc.wait()
    time.sleep(1.0)  # the server notices the broken connection
    assert [c.commit.id for c in client.pfs.list_commit(repo=repo)] == before
    assert _files(client, repo) == ["/", "/kept"]


def test_a_hundred_followers_leave_other_calls_answering(client: Client, tusk: Tusk) -> None:
    repo = pfs.Repo(name=_name("follow"))
    client.pfs.create_repo(repo=repo)
    channel, stub = _stub(tusk)
    got: list[int] = [0] * 100
    streams = []
    try:
        for _ in range(100):
            streams.append(stub.SubscribeCommit(p.SubscribeCommitRequest(
                repo=p.Repo(name=repo.name, type="user"), branch="master",
                state=p.FINISHED)))

        def follow(i: int) -> None:
            try:
                for _ in streams[i]:
                    got[i] += 1
            except grpc.RpcError:
                pass

        threads = [threading.Thread(target=follow, args=(i,), daemon=True) for i in range(100)]
        for th in threads:
            th.start()
        time.sleep(1.0)
        # Every other call still answers promptly.
        start = time.monotonic()
        other = Client(host=tusk.address.rsplit(":", 1)[0], port=int(tusk.address.rsplit(":")[1]))
        assert other.pfs.repo_exists(repo)
        with other.pfs.commit(branch=pfs.Branch(repo=repo, name="master")) as c:
            c.put_file_from_bytes(path="/x", data=b"x")
        assert time.monotonic() - start < 10
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and min(got) < 1:
            time.sleep(0.1)
        assert min(got) >= 1, f"{got.count(0)} followers saw no commit"
    finally:
        for s in streams:
            s.cancel()
        channel.close()


def test_delete_repos_of_a_project_deletes_downstream_first(client: Client) -> None:
    project = pfs.Project(name=_name("del"))
    client.pfs.create_project(project=project)
    up, down = pfs.Repo(name="up", project=project), pfs.Repo(name="down", project=project)
    # "down" created first, so listing order alone would delete "up" first.
    client.pfs.create_repo(repo=down)
    client.pfs.create_repo(repo=up)
    client.pfs.create_branch(branch=pfs.Branch(repo=down, name="master"),
                             provenance=[pfs.Branch(repo=up, name="master")])
    with pytest.raises(grpc.RpcError):  # up is protected by its subvenance
        client.pfs.delete_repo(repo=up)
    deleted = client.pfs.delete_repos(projects=[project])
    assert [r.name for r in deleted.repos] == ["down", "up"]
    assert list(client.pfs.list_repo(projects=[project])) == []
