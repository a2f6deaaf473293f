"""``tusk worker`` processes join a daemon's deployment through its stores.

A real daemon and a real worker process share the embedded stores (SQLite
file + local directory, as on one host) — and, in the second test, etcd and
S3 (as across hosts). Both run datums of the same job.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.test_pps import IMAGE, _docker_ok

pytestmark = [pytest.mark.docker, pytest.mark.slow]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tusk(*args: str, env: dict[str, str], **kw: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tusk.entry", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT, **kw)


@pytest.fixture
def deployment(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    ok, why = _docker_ok()
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no Docker engine: {why}")
        pytest.skip(f"no Docker engine ({why}): run deploy/services.sh up")
    subprocess.run(["bash", os.path.join(ROOT, "deploy/images/build.sh"), "busybox"], check=True,
                   capture_output=True)
    stores: list[str] = []
    if request.param == "real":
        etcd = request.getfixturevalue("etcd_endpoint")
        s3 = request.getfixturevalue("s3_endpoint")
        stores = ["--metadata", f"etcd://{etcd}/w-{uuid.uuid4().hex[:8]}",
                  "--storage", f"s3://w-{uuid.uuid4().hex[:10]}/o?endpoint=http://{s3}"]
    address = f"127.0.0.1:{_port()}"
    env = {**os.environ, "TUSK_ADDRESS": address}
    daemon = _tusk("daemon", "--data-dir", str(tmp_path / "d"), "--address", address, *stores,
                   env=env)
    # The worker has its own data dir (scratch, cache) unless stores are shared files.
    wdir = str(tmp_path / ("d" if not stores else "w"))
    worker = _tusk("worker", "--data-dir", wdir, *stores, env=env)
    from tusk.client import Client

    client = Client(address)
    deadline = time.monotonic() + 30
    while True:
        try:
            list(client.list_repo())  # a stream: iterate to make the call
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    yield client
    for p in (worker, daemon):
        p.send_signal(signal.SIGTERM)
    for p in (worker, daemon):
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()


@pytest.mark.parametrize("deployment", ["embedded", "real"], indirect=True)
def test_worker_process_runs_datums_of_the_daemons_jobs(deployment: Any) -> None:
    client = deployment
    client.create_repo("data")
    client.put_files("data", "master", {f"/f{i}": str(i).encode() for i in range(12)})
    client.create_pipeline(json.dumps({
        "pipeline": {"name": "dbl"},
        "transform": {"image": IMAGE, "cmd": ["sh", "-c",
                      'sleep 0.4; echo ran; cat $data $data > /pfs/out/$(basename $data)']},
        "input": {"pfs": {"repo": "data", "glob": "/*"}}}))
    job = client.inspect_job("dbl", "master", wait=True)
    from tusk.api import pps_pb2

    assert job.state == pps_pb2.JOB_SUCCESS, job.reason
    out = {f.file.path: client.get_file_bytes("dbl", "master", f.file.path)
           for f in client.list_file("dbl", "master", "/")}
    assert out == {f"/f{i}": str(i).encode() * 2 for i in range(12)}
    workers = {m.worker for m in client.get_logs("dbl", worker=True)}
    assert len(workers) == 2, workers  # the daemon's worker and the worker process
