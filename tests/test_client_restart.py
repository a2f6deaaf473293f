"""A client made right after the daemon restarts works at once: gRPC's
global subchannel pool would hand it the old connection's backoff state and
fail it with a stale "connection refused" (seen in CI after a kill -9)."""

from __future__ import annotations

from pathlib import Path

from tests.daemons import DaemonProc
from tusk.client import Client


def test_new_client_after_a_restart_connects_at_once(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path, args=["--s3-address", "off", "--http-address", "off"]).start()
    try:
        for i in range(5):
            old = Client(d.address)
            old.create_repo(f"r{i}")
            d.kill9()
            try:
                old.inspect_repo(f"r{i}")  # fails: puts its connection into backoff
            except Exception:
                pass
            d.start()
            assert Client(d.address).inspect_repo(f"r{i}").repo.name == f"r{i}"
    finally:
        d.stop()
