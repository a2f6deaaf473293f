# ruff: noqa: F811  (pytest fixtures imported from tests.test_cli are parameters here)
"""S3 data in and out, run as a user runs it: ``tusk put file -f s3://...`` and a
Docker pipeline with ``egress``, against a real S3 server (SeaweedFS).

A real ``tusk daemon`` subprocess (``tests/test_cli.py``'s fixture) serves the
module; every command is a ``tusk`` process. ``tests/test_s3_data.py`` pins
the same behaviour through the Python client and the controller.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from minio import Minio

from tests.daemons import free_port, wait_for
from tests.test_cli import Tusk, tusk  # noqa: F401
from tests.test_pps_cli import UPPER, block, create, put_files, spec, wait

pytestmark = pytest.mark.s3


@pytest.fixture
def repo(tusk: Tusk) -> str:
    name = "r" + uuid.uuid4().hex[:10]
    tusk.ok("create", "repo", name)
    return name


@pytest.fixture
def bucket(s3_endpoint: str, s3_bucket: str) -> str:
    Minio(s3_endpoint, secure=False).make_bucket(s3_bucket)
    return s3_bucket


def _put_objects(endpoint: str, bucket: str, objects: dict[str, bytes]) -> None:
    m = Minio(endpoint, secure=False)
    for key, data in objects.items():
        m.put_object(bucket, key, io.BytesIO(data), len(data))


def _objects(endpoint: str, bucket: str) -> dict[str, bytes]:
    m = Minio(endpoint, secure=False)
    out = {}
    for o in m.list_objects(bucket, recursive=True):
        assert o.object_name is not None
        resp = m.get_object(bucket, o.object_name)
        try:
            out[o.object_name] = resp.read()
        finally:
            resp.close()
            resp.release_conn()
    return out


def _commits(tusk: Tusk, repo: str) -> int:
    return len([line for line in tusk.ok("list", "commit", repo, "--raw").splitlines()
                if line.strip()])


# --- put file -f s3://... -----------------------------------------------------------------


def test_put_file_from_s3_an_object_and_a_prefix(
        tusk: Tusk, repo: str, s3_endpoint: str, bucket: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    big = os.urandom(5 * 1024 * 1024 + 3)
    _put_objects(s3_endpoint, bucket, {"data/big.bin": big, "data/sub/a.txt": b"a\n",
                                       "data/b.txt": b"b\n", "unrelated": b"x"})
    r = tusk.run("put", "file", f"{repo}@master:/one.bin", "-f", f"s3://{bucket}/data/big.bin",
                 "--s3-endpoint", f"http://{s3_endpoint}", "--progress")
    assert r.code == 0, r.err
    assert r.err.splitlines()[-1].startswith("put file: 1 file, 5 MiB (")
    assert tusk.run("get", "file", f"{repo}@master:/one.bin").raw == big

    # The endpoint from the environment, as every S3 tool reads it; a prefix
    # with -r lands under the target directory, in one commit.
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://{s3_endpoint}")
    before = _commits(tusk, repo)
    r = tusk.run("put", "file", "-r", f"{repo}@master:/tree", "-f", f"s3://{bucket}/data",
                 "--progress")
    assert r.code == 0, r.err
    assert "put file: 3 files" in r.err.splitlines()[-1]
    assert _commits(tusk, repo) == before + 1
    files = tusk.ok("list", "file", f"{repo}@master:/tree")
    assert "/tree/big.bin" in files and "/tree/b.txt" in files and "/tree/sub/" in files
    assert tusk.ok("get", "file", f"{repo}@master:/tree/sub/a.txt") == "a\n"
    # Without a path the key's basename is the name, as for local files.
    tusk.ok("put", "file", f"{repo}@master", "-f", f"s3://{bucket}/data/b.txt")
    assert tusk.ok("get", "file", f"{repo}@master:/b.txt") == "b\n"


def test_bad_s3_sources_name_the_problem_and_commit_nothing(
        tusk: Tusk, repo: str, s3_endpoint: str, bucket: str) -> None:
    _put_objects(s3_endpoint, bucket, {"k": b"v"})
    ep = ["--s3-endpoint", f"http://{s3_endpoint}"]
    before = _commits(tusk, repo)
    err = tusk.fails("put", "file", f"{repo}@master:/x", "-f", "s3:///key", code=2)
    assert "names no bucket: write s3://BUCKET/KEY" in err
    err = tusk.fails("put", "file", f"{repo}@master:/x", "-f", f"s3://{bucket}/", *ep)
    assert "names a bucket but no key" in err
    err = tusk.fails("put", "file", f"{repo}@master:/x", "-f", f"s3://{bucket}/nope", *ep)
    assert f"s3://{bucket}/nope: no such key; check the key, or list the bucket with " \
           f"`aws s3 ls s3://{bucket}/ --endpoint-url http://{s3_endpoint}`" in err
    # One put file is one commit: the good source before the bad one is not kept.
    err = tusk.fails("put", "file", f"{repo}@master:/d/", "-f", f"s3://{bucket}/k",
                     "-f", f"s3://{bucket}/missing", *ep)
    assert "no such key" in err
    dead = f"http://127.0.0.1:{free_port()}"
    err = tusk.fails("put", "file", f"{repo}@master:/x", "-f", f"s3://{bucket}/k",
                     "--s3-endpoint", dead)
    assert f"cannot reach S3 at {dead}" in err and "--s3-endpoint" in err
    err = tusk.fails("put", "file", f"{repo}@master:/x", "-f", f"s3://{bucket}/k",
                     "--s3-endpoint", "ftp://host")
    assert "use http://HOST:PORT" in err
    assert _commits(tusk, repo) == before


# --- egress in a Docker pipeline -------------------------------------------------------


def _job(tusk: Tusk, pipeline: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(tusk.ok("inspect", "job", f"{pipeline}@master", "--raw"))
    return out


@pytest.mark.docker
def test_pipeline_egress_mirrors_output_and_retries_without_reprocessing(
        tusk: Tusk, repo: str, tmp_path: Path, busybox_image: str,
        seaweedfs_factory: Callable[..., Any]) -> None:
    server = seaweedfs_factory()  # nothing listens on its port until start()
    target = f"s3://egress/out?endpoint=http://{server.endpoint}"
    put_files(tusk, repo, {"a.txt": b"hello\n", "b.txt": b"world\n"}, tmp_path)
    p = "eg" + uuid.uuid4().hex[:8]
    create(tusk, tmp_path, spec(p, repo, UPPER, egress={"URL": target}))

    info = wait(tusk, f"{p}@master")
    assert info["State"] == "failure"
    job = _job(tusk, p)
    assert job["reason"].startswith(f"egress to {target} failed after 3 tries: ")
    assert f"cannot reach S3 at http://{server.endpoint}" in job["reason"]
    assert f"tusk rerun pipeline {p}" in job["reason"]
    assert (info["Data Processed"], info["Data Skipped"]) == ("2", "0")
    # The output itself is complete.
    assert tusk.ok("get", "file", f"{p}@master:/a.txt") == "HELLO\n"

    server.start()
    Minio(server.endpoint, secure=False).make_bucket("egress")
    first = job["job"]["id"]
    tusk.ok("rerun", "pipeline", p)
    wait_for(lambda: _job(tusk, p)["job"]["id"] != first, 30, "the rerun's job")
    info = wait(tusk, f"{p}@master")
    assert info["State"] == "success: there were no datums to process", info
    assert (info["Data Processed"], info["Data Skipped"]) == ("0", "2")
    assert _objects(server.endpoint, "egress") == {"out/a.txt": b"HELLO\n",
                                                   "out/b.txt": b"WORLD\n"}

    # A new input file: one datum runs, one object is uploaded, one unchanged.
    put_files(tusk, repo, {"c.txt": b"more\n"}, tmp_path)
    wait_for(lambda: block(tusk.ok("inspect", "job", f"{p}@master"))["Data Total"] == "3",
             30, "the job over the new commit")
    info = wait(tusk, f"{p}@master")
    assert info["State"] == "success", info
    assert (info["Data Processed"], info["Data Skipped"]) == ("1", "2")
    stats = _job(tusk, p)["stats"]
    assert (stats["egress_uploaded"], stats["egress_skipped"]) == (1, 2)
    assert _objects(server.endpoint, "egress")["out/c.txt"] == b"MORE\n"


def test_egress_to_the_metadata_service_is_refused_at_create(
        tusk: Tusk, repo: str, tmp_path: Path) -> None:
    bad = spec("eg" + uuid.uuid4().hex[:8], repo, UPPER,
               egress={"URL": "s3://b-u-c/out?endpoint=http://169.254.169.254"})
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    err = tusk.fails("create", "pipeline", "-f", str(path))
    assert "egress.URL" in err and "never sends data to" in err
