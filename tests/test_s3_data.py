"""Data in and out over S3: ``put_file_from_s3`` and pipeline egress.

Three tiers, fastest first:

* URLs, configuration precedence, the address policy, egress spec parsing
  and the manifest codec: pure, no server.
* The Python client (in-process gRPC server over memory stores) streaming
  objects from a real S3 server (SeaweedFS: ``s3_endpoint``) into commits,
  and failures that must leave no commit.
* Egress driven by the pipeline controller (memory stores, scripted
  runner) to a real S3 server: mirrored keys, skipped unchanged objects,
  deleted stale ones, an unreachable target retried and failed with a
  reason, and a rerun that egresses without reprocessing datums.

``tests/test_s3_cli.py`` runs the same through the ``tusk`` command and a
Docker pipeline.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from minio import Minio

from pfs import errors
from pfs.api import open_pfs
from pfs.s3urls import (
    S3URL,
    S3AccessDenied,
    S3Config,
    S3NoSuchBucket,
    S3NoSuchKey,
    S3Unreachable,
    check_endpoint_address,
    parse_s3_url,
)
from pps.errors import InvalidSpec
from pps.model import JobState
from pps.records import EgressManifest
from pps.spec import spec_from_dict
from tests.daemons import free_port
from tests.test_controller import Stack, upper, wait_for
from tusk.client import Client
from tusk.server import serve

# --- URLs, configuration, address policy (no server) -----------------------------------


@pytest.mark.parametrize(("url", "problem"), [
    ("s3:///key", "names no bucket"),
    ("s3://", "names no bucket"),
    ("s3://My_Bucket/k", "not a valid bucket name"),
    ("s3://ab/k", "not a valid bucket name"),
    ("s3://bucket/a/../b", "'.' or '..'"),
    ("s3://bucket/k?endpoint=ftp://h", "not ftp://"),
    ("s3://bucket/k?endpoint=http://h/path", "give only the scheme, host and port"),
    ("s3://bucket/k?secret_key=x", "credentials do not go in the URL"),
    ("s3://bucket/k?colour=red", "unknown URL parameter 'colour'"),
    ("http://bucket/k", "not an s3:// URL"),
])
def test_bad_s3_urls_name_the_problem(url: str, problem: str) -> None:
    with pytest.raises(errors.InvalidArgument, match=problem.replace("?", r"\?")):
        parse_s3_url(url)


def test_url_parts_and_prefix() -> None:
    u = parse_s3_url("s3://my-bucket/in%20put/a.txt?endpoint=http://127.0.0.1:8333&region=eu")
    assert (u.bucket, u.key, u.endpoint, u.region) == (
        "my-bucket", "in put/a.txt", "http://127.0.0.1:8333", "eu")
    assert parse_s3_url("s3://my-bucket/photos").prefix == "photos/"
    assert parse_s3_url("s3://my-bucket/photos/").prefix == "photos/"
    assert parse_s3_url("s3://my-bucket").prefix == ""
    with pytest.raises(errors.InvalidArgument, match="names a bucket but no key"):
        parse_s3_url("s3://my-bucket/", need_key=True)


def test_endpoint_precedence_flag_then_url_then_environment() -> None:
    env = {"AWS_ENDPOINT_URL": "http://global:1", "AWS_ENDPOINT_URL_S3": "http://s3only:2",
           "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_REGION": "r1"}
    bare = S3URL("bucket", "k")
    with_ep = S3URL("bucket", "k", endpoint="http://url:3")
    assert S3Config().for_url(bare, env).endpoint == "http://s3only:2"
    del env["AWS_ENDPOINT_URL_S3"]
    assert S3Config().for_url(bare, env).endpoint == "http://global:1"
    assert S3Config().for_url(with_ep, env).endpoint == "http://url:3"
    assert S3Config(endpoint="http://flag:4").for_url(with_ep, env).endpoint == "http://flag:4"
    assert S3Config(endpoint="http://flag:4").for_url(
        with_ep, env, prefer_url=True).endpoint == "http://url:3"
    cfg = S3Config().for_url(bare, env)
    assert (cfg.access_key, cfg.secret_key, cfg.region) == ("k", "s", "r1")
    assert S3Config().for_url(bare, {}).endpoint == "https://s3.amazonaws.com"
    # Half a key pair is no key pair: anonymous, not a confusing signature error.
    assert S3Config().for_url(bare, {"AWS_ACCESS_KEY_ID": "k"}).access_key == ""


@pytest.mark.parametrize("endpoint", [
    "http://169.254.169.254", "http://[fe80::1]:9000", "http://0.0.0.0:9000",
    "http://224.0.0.1:9000", "http://[::ffff:169.254.169.254]:80"])
def test_link_local_metadata_and_multicast_endpoints_are_always_refused(endpoint: str) -> None:
    with pytest.raises(errors.InvalidArgument, match="never sends data to"):
        check_endpoint_address(endpoint, allow_private=True)


def test_private_endpoints_need_the_operators_consent_and_loopback_is_fine() -> None:
    for ep in ("http://10.0.0.5:9000", "http://172.16.1.1", "http://192.168.0.10:8333",
               "http://100.64.0.1"):
        with pytest.raises(errors.InvalidArgument, match="TUSK_EGRESS_ALLOW_PRIVATE"):
            check_endpoint_address(ep, allow_private=False)
        check_endpoint_address(ep, allow_private=True)
    check_endpoint_address("http://127.0.0.1:1", allow_private=False)
    check_endpoint_address("http://localhost:1", allow_private=False)


# --- egress in the spec -------------------------------------------------------------------


def _spec(**extra: Any) -> dict[str, Any]:
    return {"pipeline": {"name": "p"}, "transform": {"image": "i", "cmd": ["c"]},
            "input": {"pfs": {"repo": "data", "glob": "/*"}}, **extra}


@pytest.mark.parametrize("egress", [
    {"URL": "s3://bucket/out"}, {"url": "s3://bucket/out"},
    {"object_storage": {"url": "s3://bucket/out"}}, {"objectStorage": {"url": "s3://bucket/out"}},
    {"URL": "s3://bucket/out", "object_storage": {"url": "s3://bucket/out"}},
])
def test_egress_is_read_in_each_of_pachydermss_spellings(egress: dict[str, Any]) -> None:
    spec = spec_from_dict(_spec(egress=egress))
    assert spec.egress is not None and spec.egress.url == "s3://bucket/out"
    assert spec.to_dict()["egress"] == {"URL": "s3://bucket/out"}
    assert spec_from_dict(spec.to_dict()) == spec


def test_a_spec_without_egress_keeps_its_hash() -> None:
    spec = spec_from_dict(_spec())
    assert spec.egress is None and "egress" not in spec.to_dict()


@pytest.mark.parametrize(("egress", "path", "problem"), [
    ({"URL": "gs://bucket/out"}, "egress.URL", "S3 only"),
    ({"URL": "s3:///out"}, "egress.URL", "names no bucket"),
    ({"URL": "s3://bucket/out?endpoint=http://169.254.169.254"}, "egress.URL",
     "never sends data to"),
    ({"URL": "s3://bucket/out?access_key=AKIA"}, "egress.URL", "credentials do not go"),
    ({"sql_database": {"url": "snowflake://x"}}, "egress.sql_database", "not supported"),
    ({"URL": "s3://bucket/a", "object_storage": {"url": "s3://bucket/b"}},
     "egress.object_storage.url", "different targets"),
    ({}, "egress.URL", "needs a target"),
    ({"bucket": "x"}, "egress.bucket", "unknown field"),
])
def test_bad_egress_names_the_field(egress: dict[str, Any], path: str, problem: str) -> None:
    with pytest.raises(InvalidSpec, match=problem) as exc:
        spec_from_dict(_spec(egress=egress))
    assert exc.value.path == path


def test_egress_manifest_round_trips() -> None:
    m = EgressManifest("s3://b/p", {"p/a": ("h1", 3, "e1"), "p/b/c": ("h2", 0, "e2")},
                       complete=False)
    assert EgressManifest.decode(m.encode()) == m


# --- the Python client: put_file_from_s3 ----------------------------------------------


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
    client.create_repo(name)
    return name


@pytest.fixture
def bucket(s3_endpoint: str, s3_bucket: str) -> str:
    """An empty bucket on the test S3 server (dropped after the test)."""
    Minio(s3_endpoint, secure=False).make_bucket(s3_bucket)
    return s3_bucket


def _put_objects(endpoint: str, bucket: str, objects: dict[str, bytes]) -> None:
    import io

    m = Minio(endpoint, secure=False)
    for key, data in objects.items():
        m.put_object(bucket, key, io.BytesIO(data), len(data))


def _objects(endpoint: str, bucket: str, prefix: str = "") -> dict[str, bytes]:
    m = Minio(endpoint, secure=False)
    out = {}
    for o in m.list_objects(bucket, prefix=prefix or None, recursive=True):
        assert o.object_name is not None
        resp = m.get_object(bucket, o.object_name)
        try:
            out[o.object_name] = resp.read()
        finally:
            resp.close()
            resp.release_conn()
    return out


class _Counter:
    def __init__(self) -> None:
        self.bytes = 0
        self.files: list[str] = []

    def advance(self, nbytes: int) -> None:
        self.bytes += nbytes

    def file_done(self, path: str) -> None:
        self.files.append(path)


def _commits(client: Client, repo: str) -> int:
    return len(list(client.list_commit(repo)))


@pytest.mark.s3
def test_client_streams_an_object_and_a_prefix_in_one_commit(
        client: Client, repo: str, s3_endpoint: str, bucket: str) -> None:
    big = os.urandom(9 * 1024 * 1024 + 17)  # several pieces, not a multiple of any
    _put_objects(s3_endpoint, bucket, {"raw/big.bin": big, "raw/dir/a.txt": b"a\n",
                                       "raw/dir/b.txt": b"", "other/x": b"x"})
    cfg = S3Config(endpoint=f"http://{s3_endpoint}")
    progress = _Counter()
    before = _commits(client, repo)
    with client.modify_file(repo, "master") as mf:
        mf.put_file_from_s3("/one.bin", f"s3://{bucket}/raw/big.bin", cfg, progress=progress)
        n = mf.put_files_from_s3("/tree", f"s3://{bucket}/raw", cfg, progress=progress)
    assert n == 3
    assert _commits(client, repo) == before + 1
    assert hashlib.sha256(client.get_file_bytes(repo, "master", "/one.bin")).digest() == \
        hashlib.sha256(big).digest()
    assert client.get_file_bytes(repo, "master", "/tree/dir/a.txt") == b"a\n"
    assert client.get_file_bytes(repo, "master", "/tree/dir/b.txt") == b""
    assert client.get_file_bytes(repo, "master", "/tree/big.bin") == big
    assert progress.bytes == 2 * len(big) + 2
    assert progress.files == ["/one.bin", "/tree/big.bin", "/tree/dir/a.txt",
                              "/tree/dir/b.txt"]


@pytest.mark.s3
def test_endpoint_from_the_url_and_from_the_environment(
        client: Client, repo: str, s3_endpoint: str, bucket: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _put_objects(s3_endpoint, bucket, {"k": b"v"})
    with client.modify_file(repo, "master") as mf:
        mf.put_file_from_s3("/from-url", f"s3://{bucket}/k?endpoint=http://{s3_endpoint}")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://{s3_endpoint}")
    with client.modify_file(repo, "master") as mf:
        mf.put_file_from_s3("/from-env", f"s3://{bucket}/k")
    assert client.get_file_bytes(repo, "master", "/from-url") == b"v"
    assert client.get_file_bytes(repo, "master", "/from-env") == b"v"


@pytest.mark.s3
def test_a_missing_key_names_it_and_commits_nothing(
        client: Client, repo: str, s3_endpoint: str, bucket: str) -> None:
    _put_objects(s3_endpoint, bucket, {"there": b"1"})
    cfg = S3Config(endpoint=f"http://{s3_endpoint}")
    before = _commits(client, repo)
    with (pytest.raises(S3NoSuchKey, match=rf"s3://{bucket}/nope: no such key; .*aws s3 ls"),
          client.modify_file(repo, "master") as mf):
        mf.put_file("/first", b"written before the failure")
        mf.put_file_from_s3("/there", f"s3://{bucket}/there", cfg)
        mf.put_file_from_s3("/nope", f"s3://{bucket}/nope", cfg)
    assert _commits(client, repo) == before
    with (pytest.raises(S3NoSuchBucket, match="no such bucket"),
          client.modify_file(repo, "master") as mf):
        mf.put_files_from_s3("/", "s3://no-such-bucket-here/x", cfg)
    with (pytest.raises(errors.InvalidArgument, match="no objects under"),
          client.modify_file(repo, "master") as mf):
        mf.put_files_from_s3("/", f"s3://{bucket}/empty-prefix", cfg)
    assert _commits(client, repo) == before


@pytest.mark.s3
def test_a_dead_endpoint_fails_in_seconds_naming_the_fix(client: Client, repo: str) -> None:
    cfg = S3Config(endpoint=f"http://127.0.0.1:{free_port()}")
    before = _commits(client, repo)
    with (pytest.raises(S3Unreachable, match=r"cannot reach S3 at http://127\.0\.0\.1:\d+.*"
                                             "--s3-endpoint"),
          client.modify_file(repo, "master") as mf):
        mf.put_file_from_s3("/x", "s3://bucket/x", cfg)
    assert _commits(client, repo) == before


@pytest.mark.s3
def test_a_transfer_broken_mid_object_commits_nothing(
        client: Client, repo: str, s3_endpoint: str, bucket: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection breaks after some pieces of the second object: the pieces
    already sent and the whole first object must not become a commit."""
    from pfs import s3remote

    _put_objects(s3_endpoint, bucket, {"p/a": b"a" * 100, "p/b": os.urandom(3 << 20)})
    real = s3remote.S3Remote.read

    def flaky(self: Any, url: S3URL, key: str, piece: int = 1 << 20) -> Iterator[bytes]:
        for i, data in enumerate(real(self, url, key, piece)):
            if key == "p/b" and i == 1:
                raise S3Unreachable(url.child(key), self.endpoint_url,
                                    "ProtocolError: connection broken")
            yield data

    monkeypatch.setattr(s3remote.S3Remote, "read", flaky)
    before = _commits(client, repo)
    with (pytest.raises(S3Unreachable, match="connection broken"),
          client.modify_file(repo, "master") as mf):
        mf.put_files_from_s3("/", f"s3://{bucket}/p", S3Config(f"http://{s3_endpoint}"))
    assert _commits(client, repo) == before


@pytest.mark.s3
def test_refused_credentials_say_which_variables_to_set(
        client: Client, repo: str, seaweedfs_factory: Callable[..., Any]) -> None:
    server = seaweedfs_factory(keys=("admin", "secret-secret"))
    server.start()
    cfg = S3Config(endpoint=f"http://{server.endpoint}", access_key="admin",
                   secret_key="wrong-wrong")
    with (pytest.raises(S3AccessDenied, match=r"access denied .*AWS_ACCESS_KEY_ID"),
          client.modify_file(repo, "master") as mf):
        mf.put_file_from_s3("/x", "s3://bucket/x", cfg)


# --- egress through the controller ------------------------------------------------------


@pytest.fixture
def stack(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    from pps.controller import master

    monkeypatch.setattr(master, "EGRESS_BACKOFF", 0.05)
    s = Stack(str(tmp_path), upper)
    s.pfs.create_repo("data")
    yield s
    s.close()


def _egress_spec(s: Stack, name: str, url: str) -> None:
    s.pipeline(name, egress={"URL": url})


@pytest.mark.s3
def test_egress_mirrors_each_jobs_output_skipping_unchanged_files(
        stack: Stack, s3_endpoint: str, bucket: str) -> None:
    url = f"s3://{bucket}/out?endpoint=http://{s3_endpoint}"
    _put_objects(s3_endpoint, bucket, {"out/not-ours.txt": b"kept", "elsewhere": b"kept"})
    stack.put("data", {"/a": b"a", "/b": b"b", "/sub": b"s"})
    _egress_spec(stack, "up", url)
    j = stack.last_job("up")
    assert j.state == JobState.SUCCESS, j.reason
    assert _objects(s3_endpoint, bucket) == {
        "out/a": b"A", "out/b": b"B", "out/sub": b"S",
        "out/not-ours.txt": b"kept", "elsewhere": b"kept"}
    assert j.stats["egress_uploaded"] == 3
    # b changes, sub goes: one upload, two unchanged, one delete; and an
    # object tusk did not write stays.
    stack.put("data", {"/b": b"bb"}, deletes=("/sub",))
    wait_for(lambda: len(stack.pps.list_job("up")) == 2)
    j = stack.last_job("up")
    assert j.state == JobState.SUCCESS, j.reason
    assert (j.stats["egress_uploaded"], j.stats["egress_skipped"],
            j.stats["egress_deleted"]) == (1, 1, 1)
    assert _objects(s3_endpoint, bucket) == {
        "out/a": b"A", "out/b": b"BB", "out/not-ours.txt": b"kept", "elsewhere": b"kept"}


@pytest.mark.s3
def test_an_object_changed_behind_tusks_back_is_uploaded_again(
        stack: Stack, s3_endpoint: str, bucket: str) -> None:
    url = f"s3://{bucket}/o?endpoint=http://{s3_endpoint}"
    stack.put("data", {"/a": b"a", "/b": b"b"})
    _egress_spec(stack, "up", url)
    assert stack.last_job("up").state == JobState.SUCCESS
    _put_objects(s3_endpoint, bucket, {"o/a": b"tampered"})
    stack.put("data", {"/c": b"c"})
    wait_for(lambda: len(stack.pps.list_job("up")) == 2)
    j = stack.last_job("up")
    assert (j.stats["egress_uploaded"], j.stats["egress_skipped"]) == (2, 1)
    assert _objects(s3_endpoint, bucket)["o/a"] == b"A"


@pytest.mark.s3
def test_unreachable_target_fails_the_job_and_a_rerun_egresses_without_reprocessing(
        stack: Stack, seaweedfs_factory: Callable[..., Any]) -> None:
    server = seaweedfs_factory()  # its port is chosen, nothing listens there yet
    url = f"s3://egress-later/out?endpoint=http://{server.endpoint}"
    stack.put("data", {"/a": b"a", "/b": b"b"})
    _egress_spec(stack, "up", url)
    j = stack.last_job("up")
    assert j.state == JobState.FAILURE
    assert j.reason.startswith(f"egress to {url} failed after 3 tries: ")
    assert f"cannot reach S3 at http://{server.endpoint}" in j.reason
    assert "tusk rerun pipeline up" in j.reason
    assert (j.data_processed, j.data_skipped) == (2, 0)
    # The output commit is complete and not an error: downstream may use it.
    c = stack.pfs.inspect_commit("up", j.id)
    assert c.finished is not None and not c.error
    assert stack.files("up") == {"/a": b"A", "/b": b"B"}
    runs = len(stack.runner.runs)
    # The target comes up, and the pipeline is rerun (its spec unchanged):
    # every datum is skipped, only the egress runs.
    server.start()
    Minio(server.endpoint, secure=False).make_bucket("egress-later")
    spec = dict(stack.pps.inspect_pipeline("up").spec)
    stack.pps.create_pipeline(spec, update=True)
    wait_for(lambda: len(stack.pps.list_job("up")) == 2)
    j = stack.last_job("up")
    assert j.state == JobState.SUCCESS, j.reason
    assert (j.data_processed, j.data_skipped) == (0, 2)
    assert len(stack.runner.runs) == runs
    assert _objects(server.endpoint, "egress-later") == {"out/a": b"A", "out/b": b"B"}


@pytest.mark.s3
def test_a_missing_bucket_fails_the_egress_naming_it(stack: Stack, s3_endpoint: str) -> None:
    url = f"s3://tusk-no-such-bucket/out?endpoint=http://{s3_endpoint}"
    stack.put("data", {"/a": b"a"})
    _egress_spec(stack, "up", url)
    j = stack.last_job("up")
    assert j.state == JobState.FAILURE
    assert "s3://tusk-no-such-bucket: no such bucket at" in j.reason
    assert "egress.URL" in j.reason  # where to fix the endpoint
