"""The master's fencing token (``pfs.metadata_fence``, ``tusk.election``).

A master whose lease expired -- frozen, or cut off from the store for longer
than the TTL -- must not be able to write anything, even before its keepalive
notices: every write it makes compares the master key's revision.

Two tiers:

* in process, on every backend (memory, SQLite, a real etcd): take the key
  with a lease, write through the fenced store, lose the lease (expiry,
  revocation, a successor taking the key) and show that every write path
  is refused with :class:`NotMaster`, nothing lands, CAS loops do not spin,
  and ``on_fenced`` runs once;
* real ``tusk daemon`` processes: a master frozen (SIGSTOP) past its lease
  while a successor takes over, then resumed with writes in flight, and a
  master whose lease is revoked under it, writing at once: nothing either
  writes lands, and it exits with status 3.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from pfs.errors import NotMaster, TuskError
from pfs.metadata import (
    Compare,
    Delete,
    MemoryMetadataStore,
    MetadataStore,
    Op,
    Put,
    TxnResult,
)
from pfs.metadata_etcd import EtcdMetadataStore
from pfs.metadata_fence import FencedMetadataStore
from pfs.metadata_sqlite import SQLiteMetadataStore
from pps.records import JobRec, update_record
from tests.daemons import DaemonProc, wait_for
from tusk.client import Client
from tusk.election import MASTER_KEY, Election, MasterInfo

KEY = "masters/test"


@dataclass
class Stores:
    """Two connections to one store: the master's, and everybody else's."""

    mine: MetadataStore
    other: MetadataStore
    ttl: float  # a lease TTL the backend honours exactly enough for the test


@pytest.fixture(params=["memory", "sqlite", pytest.param("etcd", marks=pytest.mark.etcd)])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    if request.param == "memory":
        m = MemoryMetadataStore()
        yield Stores(m, m, 0.5)
        m.close()
        return
    if request.param == "sqlite":
        a: MetadataStore = SQLiteMetadataStore(tmp_path / "meta.db")
        b: MetadataStore = SQLiteMetadataStore(tmp_path / "meta.db")
        ttl = 0.5
    else:
        endpoint = request.getfixturevalue("etcd_endpoint")
        prefix = f"tusk-test/{uuid.uuid4().hex}/"
        a, b = EtcdMetadataStore(endpoint, prefix), EtcdMetadataStore(endpoint, prefix)
        ttl = 1.0  # etcd rounds up to whole seconds (and may hold a lease a little longer)
    yield Stores(a, b, ttl)
    for kv in list(b.range("")):
        b.delete(kv.key)  # etcd may be shared (TUSK_TEST_ETCD)
    a.close()
    b.close()


def take(meta: MetadataStore, ttl: float, key: str = KEY) -> tuple[int, int]:
    """Take ``key`` with a fresh lease, as the election does: (lease, token)."""
    lease = meta.grant_lease(ttl)
    result = meta.txn_result([Compare(key, 0)], [Put(key, b"me", lease)])
    assert result.succeeded
    return lease, result.revision


class Reasons(list[str]):
    """``on_fenced`` that records its reasons."""

    def __call__(self, reason: str) -> None:
        self.append(reason)


def every_write(fenced: MetadataStore, tag: str) -> list[tuple[str, Callable[[], object]]]:
    """One attempt of each write path, all on keys under ``data/``."""
    return [
        ("put", lambda: fenced.put(f"data/{tag}/put", b"x")),
        ("put with a lease", lambda: fenced.put(
            f"data/{tag}/leased", b"x", lease=fenced.grant_lease(30))),
        ("delete", lambda: fenced.delete("data/existing")),
        ("txn", lambda: fenced.txn([], [Put(f"data/{tag}/txn", b"x")])),
        ("txn with compares", lambda: fenced.txn(
            [Compare(f"data/{tag}/cas", 0)], [Put(f"data/{tag}/cas", b"x")])),
        ("txn_result", lambda: fenced.txn_result([], [Delete("data/existing")])),
        ("update_record", lambda: update_record(
            fenced, "data/job", JobRec, lambda j: replace(j, state="RUNNING"))),
    ]


def assert_refused(stores: Stores, fenced: FencedMetadataStore, reasons: Reasons,
                   tag: str) -> None:
    """Every write path raises NotMaster; nothing of it lands; one report."""
    before = {kv.key: kv.mod_revision for kv in stores.other.range("data/")}
    for what, write in every_write(fenced, tag):
        with pytest.raises(NotMaster) as info:
            write()
        assert info.value.key == KEY and info.value.revision == fenced.token, what
    assert {kv.key: kv.mod_revision for kv in stores.other.range("data/")} == before
    assert len(reasons) == 1 and f"{KEY} changed" in reasons[0]


def seed(meta: MetadataStore) -> None:
    meta.put("data/existing", b"x")
    meta.put("data/job", JobRec(pipeline="p", id="j").encode())


def test_fenced_writes_land_while_the_key_is_held(stores: Stores) -> None:
    """While the key is held, the fenced store keeps the contract: writes
    land, and a caller's own failed compare is an ordinary False, not a
    fenced failure."""
    seed(stores.other)
    lease, token = take(stores.other, 30)
    reasons = Reasons()
    fenced = FencedMetadataStore(stores.mine, KEY, token, on_fenced=reasons)
    rev = fenced.put("data/a", b"1")
    kv = stores.other.get("data/a")
    assert kv is not None and kv.mod_revision == rev
    assert fenced.delete("data/a") is True and fenced.delete("data/a") is False
    assert fenced.txn([Compare("data/b", 0)], [Put("data/b", b"1")])
    assert not fenced.txn([Compare("data/b", 0)], [Put("data/b", b"2")])  # a CAS conflict
    assert update_record(fenced, "data/job", JobRec, lambda j: replace(j, state="RUNNING"))
    assert not reasons and not fenced.fenced
    stores.other.revoke_lease(lease)


@pytest.mark.parametrize("how", ["expired", "revoked", "taken over"])
def test_fenced_writes_are_refused_once_the_key_is_lost(stores: Stores, how: str) -> None:
    seed(stores.other)
    lease, token = take(stores.mine, stores.ttl)
    reasons = Reasons()
    fenced = FencedMetadataStore(stores.mine, KEY, token, on_fenced=reasons)
    fenced.put("data/before", b"ok")  # held: lands
    if how == "revoked":
        stores.other.revoke_lease(lease)
    else:
        # No keepalive: the lease runs out, as when the master is frozen.
        wait_for(lambda: stores.other.get(KEY) is None, stores.ttl + 10, "the lease to expire")
        if how == "taken over":
            _, successor = take(stores.other, 30)
            assert successor > token
    assert_refused(stores, fenced, reasons, how.replace(" ", "-"))
    assert fenced.fenced
    kv = stores.other.get("data/before")
    assert kv is not None and kv.value == b"ok"


def test_refused_update_record_does_not_spin(stores: Stores,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A CAS loop meets NotMaster on its first attempt and stops: a fenced
    failure is not a conflict to retry."""
    seed(stores.other)
    lease, token = take(stores.mine, 30)
    fenced = FencedMetadataStore(stores.mine, KEY, token)
    stores.other.revoke_lease(lease)
    attempts: list[int] = []
    inner_txn = stores.mine.txn_result

    def counting(compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        attempts.append(1)
        return inner_txn(compares, ops)

    monkeypatch.setattr(stores.mine, "txn_result", counting)
    with pytest.raises(NotMaster):
        update_record(fenced, "data/job", JobRec, lambda j: replace(j, state="RUNNING"))
    assert len(attempts) == 1
    with pytest.raises(NotMaster):  # and later writes are refused without a round trip
        fenced.put("data/z", b"")
    assert len(attempts) == 1


def test_election_fences_its_writes_and_reports_the_loss_once(stores: Stores) -> None:
    """``Election.fenced``: the token is the key's revision when taken; a
    refused write reports the loss through ``on_lost``, and the keepalive
    noticing too does not report it again."""
    lost = Reasons()
    e = Election(stores.mine, MasterInfo.of_this_process("127.0.0.1:1"), ttl=3.0,
                 on_lost=lost, key=KEY)
    assert e.campaign(wait=False)
    kv = stores.other.get(KEY)
    assert kv is not None and e.token == kv.mod_revision == kv.create_revision
    fenced = e.fenced(stores.mine)
    fenced.put("data/x", b"1")
    stores.other.revoke_lease(e.lease)
    with pytest.raises(NotMaster):
        fenced.put("data/y", b"1")
    assert stores.other.get("data/y") is None and not e.held
    time.sleep(1.5)  # past a keepalive round (every ttl/3 = 1 s), which finds the lease gone
    assert len(lost) == 1 and "no longer master" in lost[0]
    e.resign()


def test_fenced_refuses_without_a_token() -> None:
    e = Election(MemoryMetadataStore(), MasterInfo.of_this_process("x"), key=KEY)
    with pytest.raises(TuskError, match="campaign first"):
        e.fenced(e.meta)
    with pytest.raises(ValueError):
        FencedMetadataStore(MemoryMetadataStore(), KEY, 0)


# --- real daemons ----------------------------------------------------------------

TTL = 2.0  # etcd's minimum is about that


@pytest.fixture(params=["sqlite", pytest.param("etcd", marks=pytest.mark.etcd)])
def backend(request: pytest.FixtureRequest, tmp_path: Path
            ) -> Iterator[tuple[Callable[[str, float], DaemonProc], Callable[[], MetadataStore]]]:
    """(``make(name, ttl)``: a daemon, not started, on the test's shared data;
    ``open()``: the test's own connection to that data's metadata store)."""
    made: list[DaemonProc] = []
    opened: list[MetadataStore] = []
    if request.param == "sqlite":
        shared = tmp_path / "shared"

        def make(name: str, ttl: float) -> DaemonProc:
            d = DaemonProc(tmp_path, ["--master-ttl", str(ttl)], data_dir=shared, name=name)
            made.append(d)
            return d

        def open_store() -> MetadataStore:
            opened.append(SQLiteMetadataStore(shared / "meta.db"))
            return opened[-1]
    else:
        endpoint = request.getfixturevalue("etcd_endpoint")
        prefix = f"tusk-test/{uuid.uuid4().hex}"
        storage = str(tmp_path / "objects")

        def make(name: str, ttl: float) -> DaemonProc:
            d = DaemonProc(tmp_path, ["--metadata", f"etcd://{endpoint}/{prefix}",
                                      "--storage", storage, "--master-ttl", str(ttl)],
                           data_dir=tmp_path / f"data-{name}", name=name)
            made.append(d)
            return d

        def open_store() -> MetadataStore:
            opened.append(EtcdMetadataStore(endpoint, prefix + "/"))
            return opened[-1]

    yield make, open_store
    for d in made:
        d.close()
    for s in opened:
        s.close()


def _waiting(d: DaemonProc) -> bool:
    return "is master for this data; waiting for it to stop" in d.log()


class InFlight:
    """Writes sent to a (frozen) daemon from threads: new repos and new
    commits on ``repo``. They wait in its socket until it resumes."""

    def __init__(self, client: Client, repo: str, n: int = 8) -> None:
        tag = uuid.uuid4().hex[:8]
        self.repos = [f"late{i}x{tag}" for i in range(n)]
        self.files = [f"/late{i}x{tag}.txt" for i in range(n)]
        self.outcomes: dict[str, str] = {}
        writes = [(name, lambda name=name: client.create_repo(name)) for name in self.repos]
        writes += [(path, lambda path=path: client.put_file_bytes(repo, "master", path, b"late"))
                   for path in self.files]
        self.threads = [threading.Thread(target=self._run, args=w, daemon=True) for w in writes]
        for t in self.threads:
            t.start()

    def _run(self, what: str, write: Callable[[], object]) -> None:
        try:
            write()
            self.outcomes[what] = "done"
        except TuskError as exc:
            self.outcomes[what] = f"{type(exc).__name__}: {exc}"

    def join(self) -> dict[str, str]:
        for t in self.threads:
            t.join(60)
        assert not any(t.is_alive() for t in self.threads), "a write to the old master hangs"
        return self.outcomes


def assert_nothing_landed(b: DaemonProc, repo: str, files_before: set[str],
                          late: InFlight, a_log: str) -> None:
    """B, the master now, sees none of the writes A received after its lease."""
    cb = b.client()
    repos = {r.repo.name for r in cb.list_repo()}
    files = {f.file.path for f in cb.list_file(repo, "master", "/")}
    landed = (repos & set(late.repos)) | (files - files_before)
    assert not landed, f"writes of the old master landed: {landed}\n{late.outcomes}\n{a_log}"
    assert all(o != "done" for o in late.outcomes.values()), late.outcomes
    cb.create_repo(f"after{uuid.uuid4().hex[:8]}")  # B serves writes
    assert b.running()


def start_a_then_b(make: Callable[[str, float], DaemonProc], ttl: float
                   ) -> tuple[DaemonProc, Client, DaemonProc, str, set[str]]:
    """A master with a repo and one commit; B waiting. The client's channel
    to A is up (so later calls are sent even while A is frozen)."""
    a = make("a", ttl).start()
    ca = a.client()
    repo = f"r{uuid.uuid4().hex[:8]}"
    ca.create_repo(repo)
    ca.put_file_bytes(repo, "master", "/before.txt", b"from a\n")
    b = make("b", ttl).start(wait=False)
    wait_for(lambda: _waiting(b), 20, f"b to wait\n{b.log()}")
    return a, ca, b, repo, {"/before.txt"}


@pytest.mark.slow
def test_master_frozen_past_its_lease_writes_nothing_after_resuming(backend: tuple[
        Callable[[str, float], DaemonProc], Callable[[], MetadataStore]]) -> None:
    """The issue's scenario as it happens: A is master, B waits; A is frozen
    (SIGSTOP) past its lease, which expires, and B takes over. Writes sent
    to A while it is frozen are in flight when it resumes (SIGCONT), racing
    its keepalive, which notices the loss at once. Nothing of them lands,
    and A exits with status 3.

    Without the fence this fails only sometimes (the keepalive usually wins
    the race); the next test makes the same window deterministic."""
    make, _ = backend
    a, ca, b, repo, before = start_a_then_b(make, TTL)
    a.signal(signal.SIGSTOP)
    late = InFlight(ca, repo)
    b.wait_listening(TTL + 20)  # A's lease expired while frozen: B is master now
    a.signal(signal.SIGCONT)
    late.join()
    assert_nothing_landed(b, repo, before, late, a.log())
    assert a.wait_exit(TTL + 10) == 3, a.log()
    assert "no longer master" in a.log()


@pytest.mark.slow
def test_frozen_master_resumed_before_its_keepalive_cannot_write(backend: tuple[
        Callable[[str, float], DaemonProc], Callable[[], MetadataStore]]) -> None:
    """The window the fence closes, made wide and deterministic: A (lease
    TTL 60 s: a keepalive every 20 s) is frozen, and its lease is revoked
    -- what its expiry does, without waiting a minute -- so B takes over.
    A resumes with writes in flight while its keepalive is still seconds
    away: only the fence stands between them and the store. Every one is
    refused, A exits 3 saying the fence stopped it, and B sees none."""
    make, open_store = backend
    a, ca, b, repo, before = start_a_then_b(make, 60.0)
    a.signal(signal.SIGSTOP)
    meta = open_store()
    kv = meta.get(MASTER_KEY)
    assert kv is not None and kv.lease
    meta.revoke_lease(kv.lease)
    b.wait_listening(20)
    late = InFlight(ca, repo)
    time.sleep(0.5)  # the requests reach A's socket
    a.signal(signal.SIGCONT)
    late.join()
    assert_nothing_landed(b, repo, before, late, a.log())
    assert a.wait_exit(20) == 3, a.log()
    assert "a write was refused because masters/daemon changed" in a.log(), a.log()
