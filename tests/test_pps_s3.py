"""Pipelines over S3: ``input.pfs.s3`` and ``s3_out`` (docs/decisions.md,
"Pipelines over S3"), with a real Docker engine and real bubblewrap.

The user code reaches the worker's per-datum S3 gateway at ``$S3_ENDPOINT``
(the sandbox's own loopback) and nothing else: the container keeps
``network_mode=none``, and a test proves that the host's loopback services
stay out of reach.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from pfs.api import PFS, open_pfs
from pps.api import PPS
from pps.model import JobState
from pps.runners import DatumRun, RunnerSpec
from pps.runners.netns import NetnsError, listen_in_netns
from pps.runners.process import ProcessRunner
from tests.conftest import IMAGE
from tusk.s3.worker_scope import pfs_datum_gateways

pytestmark = pytest.mark.docker

PYTHON = "tusk/python:3.11"
TEST_LABEL = "tusk.test"


@pytest.fixture
def env(busybox_image: str, tmp_path: Any) -> Iterator[tuple[PFS, PPS]]:
    pfs = open_pfs(str(tmp_path / "data"))
    pps = PPS(pfs, str(tmp_path / "scratch"), s3_gateways=pfs_datum_gateways(pfs))
    yield pfs, pps
    pps.close()
    pfs.meta.close()


def put(pfs: PFS, repo: str, files: dict[str, bytes]) -> str:
    with pfs.modify_file(repo, "master") as w:
        for p, data in files.items():
            w.put_file(p, [data])
    return pfs.inspect_commit(repo, "master").id


def files(pfs: PFS, repo: str) -> dict[str, bytes]:
    return {f.path: b"".join(pfs.get_file(repo, "master", f.path))
            for f in pfs.walk_file(repo, "master") if not f.path.endswith("/")}


def wait_job(pps: PPS, pipeline: str, job: str) -> Any:
    j = pps.inspect_job(pipeline, job, wait=True, timeout=120)
    if j.state != JobState.SUCCESS:
        logs = [e.message for e in pps.get_logs(pipeline, job, worker=True)]
        pytest.fail(f"job {pipeline}@{job} ended {j.state}: {j.reason}; logs: {logs}")
    return j


# A tiny S3 client with urllib only (boto3 is not in the images): PUT and GET
# path-style, unsigned (the datum's gateway accepts that).
S3_PUT = """
import os, sys, urllib.request
ep = os.environ["S3_ENDPOINT"]
def get(path):
    return urllib.request.urlopen(ep + path).read()
def put(path, data):
    r = urllib.request.Request(ep + path, data=data, method="PUT")
    return urllib.request.urlopen(r).status
"""


def test_s3_input_is_read_through_the_gateway_not_staged(env: tuple[PFS, PPS]) -> None:
    pfs, pps = env
    pfs.create_repo("raw")
    head = put(pfs, "raw", {"/a.txt": b"alpha\n", "/d/b.txt": b"beta\n"})
    cmd = ('set -e; [ ! -e /pfs/raw ] || { echo "/pfs/raw is staged"; exit 3; }; '
           'wget -qO /pfs/out/a.txt "$S3_ENDPOINT/raw/a.txt"; '
           'wget -qO /pfs/out/b.txt "$S3_ENDPOINT/raw/d/b.txt"; '
           'wget -qO /pfs/out/list.xml "$S3_ENDPOINT/raw?list-type=2"; '
           'echo "$raw_COMMIT $S3_ENDPOINT $AWS_ACCESS_KEY_ID $AWS_REGION" > /pfs/out/env')
    pps.create_pipeline({
        "pipeline": {"name": "s3in"},
        "transform": {"image": IMAGE, "cmd": ["sh", "-c", cmd]},
        "input": {"pfs": {"repo": "raw", "glob": "/", "s3": True}},
    })
    wait_job(pps, "s3in", pps.list_job("s3in")[0].id)
    out = files(pfs, "s3in")
    assert out["/a.txt"] == b"alpha\n" and out["/b.txt"] == b"beta\n"
    listing = out["/list.xml"].decode()
    assert "<Key>a.txt</Key>" in listing and "<Key>d/b.txt</Key>" in listing
    commit, endpoint, key, region = out["/env"].decode().split()
    assert commit == head and endpoint == "http://127.0.0.1:9000" and key and region


def test_s3_input_bucket_shows_only_the_datums_files(env: tuple[PFS, PPS]) -> None:
    """glob other than "/": the bucket holds what /pfs/<name> would have held."""
    pfs, pps = env
    pfs.create_repo("parts")
    put(pfs, "parts", {"/x/1": b"one", "/y/2": b"two"})
    cmd = 'wget -qO- "$S3_ENDPOINT/parts?list-type=2" > /pfs/out/$PACH_DATUM_ID'
    pps.create_pipeline({
        "pipeline": {"name": "scoped"},
        "transform": {"image": IMAGE, "cmd": ["sh", "-c", cmd]},
        "input": {"pfs": {"repo": "parts", "glob": "/*", "s3": True}},
    })
    wait_job(pps, "scoped", pps.list_job("scoped")[0].id)
    listings = sorted(v.decode() for v in files(pfs, "scoped").values())
    assert len(listings) == 2
    assert "<Key>x/1</Key>" in listings[0] and "y/2" not in listings[0]
    assert "<Key>y/2</Key>" in listings[1] and "x/1" not in listings[1]


def test_s3_out_becomes_the_output_commit_and_is_never_skipped(env: tuple[PFS, PPS]) -> None:
    pfs, pps = env
    pfs.create_repo("src")
    first = put(pfs, "src", {"/a": b"aa", "/b": b"bb"})
    script = S3_PUT + """
name = os.path.basename(os.environ["src"])
data = open(os.environ["src"], "rb").read()
assert put("/out/up/" + name, data.upper()) == 200
assert get("/out/up/" + name) == data.upper()
assert put("/out/runs/" + name + "-" + os.environ["PACH_JOB_ID"], b"x") == 200
"""
    pps.create_pipeline({
        "pipeline": {"name": "s3o"},
        "transform": {"image": PYTHON, "cmd": ["python3", "-c", script]},
        "input": {"pfs": {"repo": "src", "glob": "/*"}},
        "s3_out": True,
    })
    first = pps.list_job("s3o")[0].id
    j = wait_job(pps, "s3o", first)
    assert (j.data_processed, j.data_skipped) == (2, 0)
    assert files(pfs, "s3o") == {"/up/a": b"AA", "/up/b": b"BB",
                                 f"/runs/a-{first}": b"x", f"/runs/b-{first}": b"x"}
    # Datums whose inputs did not change run again (noSkip), and what they
    # wrote last time is replaced by what they write now.
    second = put(pfs, "src", {"/c": b"cc"})
    j = wait_job(pps, "s3o", second)
    assert (j.data_processed, j.data_skipped, j.data_total) == (3, 0, 3)
    assert files(pfs, "s3o") == {"/up/a": b"AA", "/up/b": b"BB", "/up/c": b"CC",
                                 **{f"/runs/{n}-{second}": b"x" for n in "abc"}}


def test_user_code_cannot_reach_host_loopback_services(env: tuple[PFS, PPS]) -> None:
    """The gateway is reachable; a service on the host (here a listener on every
    address of the host, and etcd when one runs) is not."""
    pfs, pps = env
    host_srv = socket.create_server(("0.0.0.0", 0))
    port = host_srv.getsockname()[1]
    accepted: list[Any] = []

    def accept() -> None:
        host_srv.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(host_srv.accept()[1])
            except OSError:
                pass

    stop = threading.Event()
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    targets = [f"127.0.0.1:{port}", f"172.17.0.1:{port}"]
    etcd = os.environ.get("TUSK_TEST_ETCD")
    if etcd:
        targets.append(etcd)
    # (busybox wget's -T crashes: without it a connect with no route fails at once)
    probes = " ".join(
        f'if e=$(wget -qO /dev/null "http://{t}/" 2>&1); then echo "REACHED {t}"; '
        f'else echo "failed {t}: $e"; fi;' for t in targets)
    cmd = f'{{ wget -qO- "$S3_ENDPOINT/raw/f"; {probes} }} > /pfs/out/report'
    try:
        pfs.create_repo("raw")
        put(pfs, "raw", {"/f": b"gateway ok\n"})
        pps.create_pipeline({
            "pipeline": {"name": "probe"},
            "transform": {"image": IMAGE, "cmd": ["sh", "-c", cmd]},
            "input": {"pfs": {"repo": "raw", "glob": "/", "s3": True}},
            "s3_out": True,
        })
        wait_job(pps, "probe", pps.list_job("probe")[0].id)
        report = files(pfs, "probe")["/report"].decode()
    finally:
        stop.set()
        t.join()
        host_srv.close()
    assert report.startswith("gateway ok\n"), report  # the positive control
    for target in targets:
        line = next(ln for ln in report.splitlines() if target in ln)
        # Refused by the sandbox's own loopback, or no route at all; not a crash.
        assert line.startswith(f"failed {target}: wget: can't connect"), report
        assert "Connection refused" in line or "unreachable" in line, report
    assert accepted == []


def test_s3_pipeline_without_a_gateway_fails_the_datum_saying_why(
        busybox_image: str, tmp_path: Any) -> None:
    pfs = open_pfs(str(tmp_path / "data"))
    pps = PPS(pfs, str(tmp_path / "scratch"))  # no s3_gateways
    try:
        pfs.create_repo("raw")
        put(pfs, "raw", {"/f": b"x"})
        pps.create_pipeline({
            "pipeline": {"name": "nogw"}, "datum_tries": 1,
            "transform": {"image": IMAGE, "cmd": ["true"]},
            "input": {"pfs": {"repo": "raw", "glob": "/", "s3": True}},
        })
        job = pps.list_job("nogw")[0].id
        j = pps.inspect_job("nogw", job, wait=True, timeout=60)
        assert j.state == JobState.FAILURE
        reasons = [d.reason for d in pps.list_datum("nogw", job)]
        assert any("without an S3 gateway" in r for r in reasons), reasons
    finally:
        pps.close()
        pfs.meta.close()


# -- the network-namespace socket, under both runners ------------------------------


def test_listener_in_a_no_network_container_is_its_own_loopback(busybox_image: str) -> None:
    client = docker.from_env()
    ct = client.containers.run(IMAGE, ["sleep", "60"], network_mode="none", detach=True,
                               labels={TEST_LABEL: uuid.uuid4().hex})
    try:
        ct.reload()
        pid = int(ct.attrs["State"]["Pid"])
        sock = listen_in_netns(pid, 0)
        port = sock.getsockname()[1]

        def answer() -> None:
            conn, _ = sock.accept()
            conn.recv(4096)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\ninside")
            conn.close()

        t = threading.Thread(target=answer, daemon=True)
        t.start()
        r = ct.exec_run(["wget", "-qO-", f"http://127.0.0.1:{port}/"])
        assert (r.exit_code, r.output) == (0, b"inside")
        # The same port on the host's loopback is not this socket.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        sock.close()
    finally:
        ct.remove(force=True)


def test_listener_refuses_the_workers_own_namespace() -> None:
    with pytest.raises(NetnsError, match="shares the worker's network namespace"):
        listen_in_netns(os.getpid(), 0)


class _Echo:
    """A LoopbackService answering one HTTP request with a fixed body."""

    port = 9000

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.stopped = False

    def serve(self, sock: socket.socket) -> None:
        self.sock = sock

        def answer() -> None:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            conn.recv(4096)
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 7\r\n\r\nsandbox")
            conn.close()

        threading.Thread(target=answer, daemon=True).start()

    def stop(self) -> None:
        self.stopped = True
        if self.sock is not None:
            self.sock.close()


def test_process_runner_serves_a_loopback_service_in_the_sandbox(tmp_path: Any) -> None:
    runner = ProcessRunner()
    ok, why = runner.available()
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    session = runner.start(RunnerSpec(image="ignored"), str(tmp_path / "w"))
    svc = _Echo()
    try:
        r = session.run(DatumRun(
            cmd=("sh", "-c", "wget -qO- http://127.0.0.1:9000/"), stdin=None, env={},
            inputs={}, out_dir=str(tmp_path / "out"), service=svc))
    finally:
        session.close()
    assert (r.exit_code, r.stdout, r.error) == (0, b"sandbox", ""), r.stderr
    assert svc.stopped
    # And the sandbox is not the host: nothing listens on the host's 9000 for it.
    t0 = time.monotonic()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", 9000), timeout=1).close()
    assert time.monotonic() - t0 < 5


def test_s3_pipeline_under_the_process_runner(tmp_path: Any) -> None:
    """bubblewrap: the same buckets, served in the sandbox's own namespace."""
    runner = ProcessRunner()
    ok, why = runner.available()
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    pfs = open_pfs(str(tmp_path / "data"))
    pps = PPS(pfs, str(tmp_path / "scratch"), runner=runner,
              s3_gateways=pfs_datum_gateways(pfs))
    try:
        pfs.create_repo("raw")
        put(pfs, "raw", {"/a": b"abc"})
        script = S3_PUT + 'put("/out/copy", get("/raw/a").upper())'
        pps.create_pipeline({
            "pipeline": {"name": "bw"},
            "transform": {"cmd": ["/usr/bin/python3", "-c", script]},
            "input": {"pfs": {"repo": "raw", "glob": "/", "s3": True}},
            "s3_out": True,
        })
        wait_job(pps, "bw", pps.list_job("bw")[0].id)
        assert files(pfs, "bw") == {"/copy": b"ABC"}
    finally:
        pps.close()
        pfs.meta.close()
