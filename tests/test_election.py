"""One master per data set (``tusk.election``), with real daemon processes.

Two ``tusk daemon`` processes on the same data -- the same etcd prefix, or the
same SQLite data directory -- must not both serve: the second waits without
listening until the first stops (or dies, or loses its lease), or refuses
with ``--no-wait``.
"""

from __future__ import annotations

import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pfs.errors import NotFound
from pfs.metadata import MemoryMetadataStore
from tests.daemons import DaemonProc, wait_for
from tusk.election import MASTER_KEY, Election, MasterHeld, MasterInfo

TTL = 2.0  # etcd's minimum is about that; keeps the expiry tests short

Make = Callable[[str], DaemonProc]


@pytest.fixture(params=["sqlite", "etcd"])
def make_daemon(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Make]:
    """``make(name)``: a daemon (not started) on the test's shared data."""
    made: list[DaemonProc] = []
    if request.param == "sqlite":
        shared = tmp_path / "shared"

        def make(name: str) -> DaemonProc:
            d = DaemonProc(tmp_path, ["--master-ttl", str(TTL)], data_dir=shared, name=name)
            made.append(d)
            return d
    else:
        endpoint = request.getfixturevalue("etcd_endpoint")
        meta = f"etcd://{endpoint}/tusk-test/{uuid.uuid4().hex}"
        storage = str(tmp_path / "objects")

        def make(name: str) -> DaemonProc:
            d = DaemonProc(tmp_path, ["--metadata", meta, "--storage", storage,
                                      "--master-ttl", str(TTL)],
                           data_dir=tmp_path / f"data-{name}", name=name)
            made.append(d)
            return d

    yield make
    for d in made:
        d.close()


def _waiting(d: DaemonProc) -> bool:
    return "is master for this data; waiting for it to stop" in d.log()


@pytest.mark.slow
def test_second_daemon_waits_until_the_first_stops(make_daemon: Make) -> None:
    a = make_daemon("a").start()
    repo = f"r{uuid.uuid4().hex[:8]}"
    ca = a.client()
    ca.create_repo(repo)
    ca.put_file_bytes(repo, "master", "/f.txt", b"from a\n")

    b = make_daemon("b").start(wait=False)
    wait_for(lambda: _waiting(b), 20, f"b to say it waits\n{b.log()}")
    assert f"pid {a.pid} " in b.log() and a.address in b.log()
    time.sleep(1.0)  # b keeps waiting: not listening, still running
    assert b.running() and not b.listening()
    assert b.log().count("is master for this data") == 1  # said once

    assert a.stop() == 0
    took = b.wait_listening(15)
    assert took < 10
    assert b.client().get_file_bytes(repo, "master", "/f.txt") == b"from a\n"


@pytest.mark.slow
def test_no_wait_refuses_with_the_holder_named(make_daemon: Make) -> None:
    a = make_daemon("a").start()
    b = make_daemon("b")
    b.args.append("--no-wait")
    b.start(wait=False)
    assert b.wait_exit(20) == 1
    log = b.log()
    assert f"another tusk daemon (pid {a.pid} " in log and a.address in log
    assert "is master for this data" in log and "stop it first" in log
    assert not b.listening() and a.listening()


@pytest.mark.slow
def test_killed_master_is_replaced(make_daemon: Make) -> None:
    a = make_daemon("a").start()
    b = make_daemon("b").start(wait=False)
    wait_for(lambda: _waiting(b), 20, "b to wait")
    a.kill9()
    # Same machine: b sees the PID is gone and need not wait out the lease;
    # elsewhere the lease would expire after TTL. Either way: within TTL + slack.
    b.wait_listening(TTL + 10)
    b.client().create_repo(f"r{uuid.uuid4().hex[:8]}")


@pytest.mark.slow
def test_frozen_master_is_replaced_after_the_ttl_and_then_exits(make_daemon: Make) -> None:
    """A master that cannot renew its lease (frozen, or cut off from etcd for
    longer than the TTL) is replaced once the lease expires, and exits as soon
    as it notices, instead of serving writes next to the new master."""
    a = make_daemon("a").start()
    b = make_daemon("b").start(wait=False)
    wait_for(lambda: _waiting(b), 20, "b to wait")
    a.signal(signal.SIGSTOP)
    t0 = time.monotonic()
    b.wait_listening(TTL + 15)
    assert time.monotonic() - t0 >= TTL - 1.0  # the lease had to expire first
    a.signal(signal.SIGCONT)
    assert a.wait_exit(TTL + 10) == 3
    assert "no longer master" in a.log()
    assert b.running()
    b.client().create_repo(f"r{uuid.uuid4().hex[:8]}")


# --- the election object, in process ------------------------------------------------


def test_election_in_process_waits_for_a_foreign_holder_lease() -> None:
    """A holder on another machine is never declared dead by PID: only its
    lease expiring lets the waiter in."""
    meta = MemoryMetadataStore()
    other = MasterInfo(host="elsewhere", pid=1, address="10.0.0.1:1650", started=time.time())
    lease = meta.grant_lease(0.6)
    meta.put(MASTER_KEY, other.encode(), lease=lease)
    me = MasterInfo.of_this_process("127.0.0.1:1")
    lost: list[str] = []
    e = Election(meta, me, ttl=1.0, on_lost=lost.append, poll=0.05)
    with pytest.raises(MasterHeld, match=re.escape("pid 1 on elsewhere, address 10.0.0.1:1650")):
        e.campaign(wait=False)
    t0 = time.monotonic()
    assert e.campaign(wait=True)
    assert time.monotonic() - t0 >= 0.4
    kv = meta.get(MASTER_KEY)
    assert kv is not None and MasterInfo.decode(kv.value).pid == me.pid
    e.resign()
    assert meta.get(MASTER_KEY) is None and not lost


def test_election_reports_a_lost_lease_once() -> None:
    meta = MemoryMetadataStore()
    lost: list[str] = []
    done = threading.Event()

    def on_lost(reason: str) -> None:
        lost.append(reason)
        done.set()

    e = Election(meta, MasterInfo.of_this_process("x"), ttl=0.3, on_lost=on_lost)
    assert e.campaign(wait=False)
    meta.revoke_lease(e.lease)  # as an expiry would
    assert done.wait(5)
    time.sleep(0.3)
    assert len(lost) == 1 and "no longer master" in lost[0]
    with pytest.raises(NotFound):
        meta.keepalive(1)
    e.resign()


def test_election_cancel_while_waiting() -> None:
    meta = MemoryMetadataStore()
    first = Election(meta, MasterInfo(host="h", pid=1, address="a", started=0.0), ttl=5)
    assert first.campaign(wait=False)
    cancel = threading.Event()
    second = Election(meta, MasterInfo.of_this_process("b"), ttl=5, poll=0.05)
    threading.Timer(0.2, cancel.set).start()
    assert second.campaign(wait=True, cancel=cancel) is False
    first.resign()
