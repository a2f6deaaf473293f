"""A transaction whose request fails *while* running (after every request
passed the preflight check: a race with another client, a store outage) puts
back what its earlier requests changed (``tusk.transactions`` undo journal).

The servicer is tusk's real PFS service on a real embedded PFS; the race is
made by running a conflicting call between the check and the replay.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import empty_pb2

from pfs import errors
from pfs.api import PFS, open_pfs
from tusk.api import pfs_pb2
from tusk.server import PFSServicer
from tusk.transactions import METADATA_KEY


class _Ctx:
    """A servicer context carrying a transaction ID in its metadata."""

    def __init__(self, txn: str = "") -> None:
        self.txn = txn

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ((METADATA_KEY, self.txn),) if self.txn else ()

    def abort(self, code: Any, details: str) -> None:
        raise RuntimeError(f"{code}: {details}")

    def set_trailing_metadata(self, md: Any) -> None:
        pass

    def time_remaining(self) -> float | None:
        return None


@pytest.fixture
def core(tmp_path: Path) -> Iterator[tuple[PFS, PFSServicer]]:
    pfs = open_pfs(str(tmp_path / "data"))
    try:
        yield pfs, PFSServicer(pfs)
    finally:
        pfs.meta.close()


def _queue(svc: PFSServicer) -> str:
    txn = svc.StartTransaction(empty_pb2.Empty(), _Ctx()).transaction.id
    ctx = _Ctx(txn)
    svc.CreateRepo(pfs_pb2.CreateRepoRequest(repo=pfs_pb2.Repo(name="first")), ctx)
    svc.CreateBranch(pfs_pb2.CreateBranchRequest(branch=pfs_pb2.Branch(
        repo=pfs_pb2.Repo(name="old"), name="dev")), ctx)
    svc.DeleteBranch(pfs_pb2.DeleteBranchRequest(branch=pfs_pb2.Branch(
        repo=pfs_pb2.Repo(name="old"), name="keep")), ctx)
    svc.StartCommit(pfs_pb2.StartCommitRequest(branch=pfs_pb2.Branch(
        repo=pfs_pb2.Repo(name="old"), name="master")), ctx)
    svc.CreateRepo(pfs_pb2.CreateRepoRequest(repo=pfs_pb2.Repo(name="raced")), ctx)
    return txn


def test_a_request_failing_during_replay_undoes_the_earlier_ones(
        core: tuple[PFS, PFSServicer]) -> None:
    pfs, svc = core
    pfs.create_repo("old")
    with pfs.modify_file("old", "master") as w:
        w.put_file("/a", [b"a"])
    keep_head = pfs.create_branch("old", "keep", head="master").head
    commits_before = [c.id for c in pfs.list_commit("old", None)]
    txn = _queue(svc)

    # Another client takes the name between the check and the replay.
    hub = svc.txns
    real = hub.handlers["CreateRepo"]
    calls = 0

    def racing(data: bytes, ctx: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            pfs.create_repo("raced")
        return real(data, ctx)

    hub.handlers["CreateRepo"] = racing
    try:
        with pytest.raises(errors.FailedPrecondition) as err:
            hub.finish(txn)
    finally:
        hub.handlers["CreateRepo"] = real
    msg = str(err.value)
    assert "stopped at its CreateRepo request" in msg
    assert "undone; nothing changed" in msg, msg

    names = {r.name for r in pfs.list_repo(project=None)}
    assert "first" not in names  # created, then undone
    assert {b.name for b in pfs.list_branch("old")} == {"master", "keep"}
    assert pfs.inspect_branch("old", "keep").head == keep_head  # deleted, then restored
    assert [c.id for c in pfs.list_commit("old", None)] == commits_before  # started, dropped


def test_irreversible_requests_are_named(core: tuple[PFS, PFSServicer]) -> None:
    pfs, svc = core
    pfs.create_repo("gone")
    txn = svc.StartTransaction(empty_pb2.Empty(), _Ctx()).transaction.id
    ctx = _Ctx(txn)
    svc.DeleteRepo(pfs_pb2.DeleteRepoRequest(repo=pfs_pb2.Repo(name="gone")), ctx)
    svc.CreateRepo(pfs_pb2.CreateRepoRequest(repo=pfs_pb2.Repo(name="later")), ctx)
    hub = svc.txns
    real = hub.handlers["CreateRepo"]

    def racing(data: bytes, c: Any) -> Any:
        pfs.create_repo("later")
        return real(data, c)

    hub.handlers["CreateRepo"] = racing
    try:
        with pytest.raises(errors.FailedPrecondition) as err:
            hub.finish(txn)
    finally:
        hub.handlers["CreateRepo"] = real
    assert "DeleteRepo (cannot be undone)" in str(err.value)
    assert "check those by hand" in str(err.value)
