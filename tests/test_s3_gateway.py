"""The S3 gateway end to end: a real daemon (``tusk daemon --s3-address``)
and real clients: boto3, the ``minio`` SDK, the AWS CLI, rclone, s3fs with
pandas and pyarrow. Bad input answers S3's error codes.

A client that is not installed skips visibly, saying how to install it
(``scripts/test`` installs every one: the dev extra and rclone).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TUSK = [sys.executable, "-m", "tusk.entry"]
ACCESS, SECRET = "tuskaccess", "tusksecret-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(address: str) -> dict[str, str]:
    env = dict(os.environ)
    env["TUSK_ADDRESS"] = address
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["TUSK_CONFIG"] = os.path.join(str(ROOT), ".pytest-s3-config.json")
    for k in ("TUSK_S3_ADDRESS", "TUSK_S3_ACCESS_KEY", "TUSK_S3_SECRET_KEY"):
        env.pop(k, None)
    return env


@dataclass
class Gateway:
    address: str  # the gRPC address
    endpoint: str  # http://127.0.0.1:PORT
    data: Path
    log: Path

    def tusk(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*TUSK, *args], input=input, capture_output=True, check=False,
                              env=_env(self.address), timeout=120)


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            pytest.fail(f"daemon exited: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"daemon did not listen within 30 s: {log.read_text()}")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A daemon with the S3 gateway on a free port, credentials configured."""
    data = tmp_path_factory.mktemp("s3daemon")
    port, s3_port = _free_port(), _free_port()
    address = f"127.0.0.1:{port}"
    log = data / "daemon.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [*TUSK, "daemon", "--data-dir", str(data / "data"), "--address", address,
             "--s3-address", f"127.0.0.1:{s3_port}", "--s3-access-key", ACCESS,
             "--s3-secret-key", SECRET],
            stdout=f, stderr=subprocess.STDOUT, env=_env(address))
    try:
        _wait_port(port, proc, log)
        _wait_port(s3_port, proc, log)
        yield Gateway(address, f"http://127.0.0.1:{s3_port}", data, log)
    finally:
        os.kill(proc.pid, signal.SIGTERM)  # only the process this fixture started
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def _need(module: str) -> Any:
    return pytest.importorskip(module, reason=f"{module} is not installed: "
                               "pip install -e '.[dev]' (scripts/test does)")


@pytest.fixture
def s3(gw: Gateway) -> Any:
    boto3 = _need("boto3")
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=gw.endpoint, aws_access_key_id=ACCESS,
                        aws_secret_access_key=SECRET, region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"max_attempts": 1}))


def _name() -> str:
    return "r" + uuid.uuid4().hex[:10]


@pytest.fixture
def bucket(s3: Any) -> str:
    """A fresh repo's master branch, created through CreateBucket."""
    name = _name()
    s3.create_bucket(Bucket=name)
    return name


def _code(exc: Any) -> str:
    return str(exc.response["Error"]["Code"])


def _status(exc: Any) -> int:
    return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])


# -- boto3: buckets ------------------------------------------------------------------


def test_create_bucket_makes_repo_and_branch_listed_as_buckets(gw: Gateway, s3: Any) -> None:
    repo = _name()
    s3.create_bucket(Bucket=f"dev.{repo}")
    s3.create_bucket(Bucket=repo)  # master
    names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert {f"dev.{repo}", f"master.{repo}"} <= names
    out = gw.tusk("list", "branch", repo)
    assert out.returncode == 0 and b"dev" in out.stdout and b"master" in out.stdout
    s3.head_bucket(Bucket=f"master.{repo}")
    assert s3.get_bucket_location(Bucket=repo).get("LocationConstraint") in (None, "")
    assert s3.get_bucket_versioning(Bucket=repo)["Status"] == "Enabled"
    with pytest.raises(Exception) as ei:
        s3.create_bucket(Bucket=repo)
    assert _code(ei.value) == "BucketAlreadyOwnedByYou"


def test_delete_bucket_of_empty_repo_removes_it(gw: Gateway, s3: Any) -> None:
    repo = _name()
    s3.create_bucket(Bucket=repo)
    s3.put_object(Bucket=repo, Key="a", Body=b"x")
    with pytest.raises(Exception) as ei:
        s3.delete_bucket(Bucket=repo)
    assert _code(ei.value) == "BucketNotEmpty"
    s3.delete_object(Bucket=repo, Key="a")
    s3.delete_bucket(Bucket=repo)
    assert gw.tusk("inspect", "repo", repo).returncode != 0


def test_bucket_that_is_no_repo_is_no_such_bucket(s3: Any) -> None:
    for call in (lambda: s3.list_objects_v2(Bucket="nosuchrepo" + uuid.uuid4().hex[:6]),
                 lambda: s3.get_object(Bucket="master.nosuchrepozz", Key="a"),
                 lambda: s3.put_object(Bucket="nosuchrepozz", Key="a", Body=b"x")):
        with pytest.raises(Exception) as ei:
            call()
        assert _code(ei.value) == "NoSuchBucket", ei.value
        assert _status(ei.value) == 404


def test_invalid_bucket_name(s3: Any) -> None:
    import botocore.exceptions

    with pytest.raises(botocore.exceptions.ClientError) as ei:
        s3.list_objects_v2(Bucket="a.b.c.d.e")
    assert _code(ei.value) == "InvalidBucketName"


# -- boto3: objects ---------------------------------------------------------------------


def test_put_get_head_with_etag_range_and_conditions(s3: Any, bucket: str) -> None:
    body = os.urandom(3 * 1024 * 1024 + 7)
    put = s3.put_object(Bucket=bucket, Key="dir/blob.bin", Body=body)
    etag = put["ETag"]
    got = s3.get_object(Bucket=bucket, Key="dir/blob.bin")
    assert got["Body"].read() == body
    assert got["ETag"] == etag and got["ContentLength"] == len(body)
    head = s3.head_object(Bucket=bucket, Key="dir/blob.bin")
    assert head["ETag"] == etag and head["ContentLength"] == len(body)
    assert head["LastModified"] is not None
    r = s3.get_object(Bucket=bucket, Key="dir/blob.bin", Range="bytes=10-19")
    assert r["Body"].read() == body[10:20]
    assert r["ContentRange"] == f"bytes 10-19/{len(body)}"
    assert s3.get_object(Bucket=bucket, Key="dir/blob.bin",
                         Range="bytes=-5")["Body"].read() == body[-5:]
    assert s3.get_object(Bucket=bucket, Key="dir/blob.bin",
                         Range=f"bytes={len(body) - 3}-")["Body"].read() == body[-3:]
    with pytest.raises(Exception) as ei:
        s3.get_object(Bucket=bucket, Key="dir/blob.bin", IfNoneMatch=etag)
    assert _status(ei.value) == 304
    with pytest.raises(Exception) as ei:
        s3.get_object(Bucket=bucket, Key="dir/blob.bin", IfMatch='"nope"')
    assert _status(ei.value) == 412
    assert s3.get_object(Bucket=bucket, Key="dir/blob.bin", IfMatch=etag)["ContentLength"]
    with pytest.raises(Exception) as ei:
        s3.get_object(Bucket=bucket, Key="dir/blob.bin", IfModifiedSince=head["LastModified"])
    assert _status(ei.value) == 304


def test_range_past_end_is_invalid_range(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="small", Body=b"0123456789")
    with pytest.raises(Exception) as ei:
        s3.get_object(Bucket=bucket, Key="small", Range="bytes=100-200")
    assert _code(ei.value) == "InvalidRange" and _status(ei.value) == 416


def test_missing_key_and_dotdot_key(s3: Any, bucket: str) -> None:
    with pytest.raises(Exception) as ei:
        s3.get_object(Bucket=bucket, Key="nope.txt")
    assert _code(ei.value) == "NoSuchKey"
    for key in ("a/../b", "../etc/passwd", "x/./y"):
        with pytest.raises(Exception) as ei:
            s3.put_object(Bucket=bucket, Key=key, Body=b"x")
        assert _code(ei.value) == "InvalidArgument", key
        with pytest.raises(Exception) as ei:
            s3.get_object(Bucket=bucket, Key=key)
        assert _code(ei.value) == "InvalidArgument", key


def test_each_put_is_a_commit_and_versions_read_old_content(gw: Gateway, s3: Any,
                                                           bucket: str) -> None:
    v1 = s3.put_object(Bucket=bucket, Key="f", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="f", Body=b"two")["VersionId"]
    assert v1 != v2
    assert s3.get_object(Bucket=bucket, Key="f")["Body"].read() == b"two"
    assert s3.get_object(Bucket=bucket, Key="f", VersionId=v1)["Body"].read() == b"one"
    assert s3.head_object(Bucket=bucket, Key="f", VersionId=v1)["ContentLength"] == 3
    # A commit's bucket is read-only and holds that version.
    cb = f"{v1}.master.{bucket}.default"
    assert s3.get_object(Bucket=cb, Key="f")["Body"].read() == b"one"
    with pytest.raises(Exception) as ei:
        s3.put_object(Bucket=cb, Key="g", Body=b"x")
    assert _code(ei.value) == "AccessDenied"
    out = gw.tusk("list", "commit", f"{bucket}@master")
    assert out.stdout.count(b"\n") >= 3  # header + two commits (+ the branch's empty head)


def test_put_into_open_commit(gw: Gateway, s3: Any, bucket: str) -> None:
    assert gw.tusk("start", "commit", f"{bucket}@master").returncode == 0
    s3.put_object(Bucket=bucket, Key="a", Body=b"A")
    s3.put_object(Bucket=bucket, Key="b", Body=b"B")
    assert gw.tusk("finish", "commit", f"{bucket}@master").returncode == 0
    out = gw.tusk("list", "commit", f"{bucket}@master", "--raw")
    assert out.returncode == 0
    assert gw.tusk("get", "file", f"{bucket}@master:/b").stdout == b"B"


def test_delete_objects_quiet_and_copy_by_reference(s3: Any, bucket: str) -> None:
    for k in ("x/1", "x/2", "x/3"):
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    other = _name()
    s3.create_bucket(Bucket=other)
    s3.copy_object(Bucket=other, Key="copied", CopySource={"Bucket": bucket, "Key": "x/2"})
    s3.copy_object(Bucket=bucket, Key="x/2-again", CopySource=f"{bucket}/x/2")
    assert s3.get_object(Bucket=other, Key="copied")["Body"].read() == b"x/2"
    assert (s3.head_object(Bucket=other, Key="copied")["ETag"]
            == s3.head_object(Bucket=bucket, Key="x/2")["ETag"])
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "x/1"}, {"Key": "x/3"},
                                                            {"Key": "missing"}]})
    assert {d["Key"] for d in r["Deleted"]} == {"x/1", "x/3", "missing"}
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "x/2"}], "Quiet": True})
    assert not r.get("Deleted") and not r.get("Errors")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["x/2-again"]


def test_list_objects_v1_v2_prefix_delimiter_paging(s3: Any, bucket: str) -> None:
    keys = ["a-b", "a.txt", "a/b", "a/c/d", "b", "c d/e", "c%2F/f"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b".")
    got = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert got == sorted(keys)
    r = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [o["Key"] for o in r["Contents"]] == ["a-b", "a.txt", "b"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/", "c d/", "c%2F/"]
    r = s3.list_objects_v2(Bucket=bucket, Prefix="a/", Delimiter="/")
    assert [o["Key"] for o in r["Contents"]] == ["a/b"]
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["a/c/"]
    # Paging with max-keys 2 visits every key once, in order.
    seen, token = [], None
    while True:
        kw = {"ContinuationToken": token} if token else {}
        r = s3.list_objects_v2(Bucket=bucket, MaxKeys=2, **kw)
        seen += [o["Key"] for o in r.get("Contents", [])]
        if not r["IsTruncated"]:
            break
        token = r["NextContinuationToken"]
    assert seen == sorted(keys)
    r = s3.list_objects_v2(Bucket=bucket, StartAfter="a/b")
    assert [o["Key"] for o in r["Contents"]] == sorted(k for k in keys if k > "a/b")
    r = s3.list_objects(Bucket=bucket, Marker="a.txt", MaxKeys=2)
    assert [o["Key"] for o in r["Contents"]] == ["a/b", "a/c/d"] and r["IsTruncated"]
    r = s3.list_objects_v2(Bucket=bucket, Prefix="c ", EncodingType="url")
    # boto3 decodes only when it asked for url encoding itself: here the raw answer shows.
    assert [o["Key"] for o in r["Contents"]] == ["c%20d/e"]


def test_listing_a_large_prefix_pages_quickly(s3: Any, bucket: str, gw: Gateway) -> None:
    # 20,000 keys in one commit through the CLI (fast), then page through S3.
    src = gw.data / "many"
    (src / "d").mkdir(parents=True)
    for i in range(20000):
        (src / "d" / f"f{i:06d}").write_bytes(b"")
    out = gw.tusk("put", "file", "-r", f"{bucket}@master:/", "-f", str(src))
    assert out.returncode == 0, out.stderr
    r = s3.list_objects_v2(Bucket=bucket, Prefix="d/f01", MaxKeys=1000)
    assert r["KeyCount"] == 1000 and r["Contents"][0]["Key"] == "d/f010000"
    r2 = s3.list_objects_v2(Bucket=bucket, Prefix="d/f01",
                            ContinuationToken=r["NextContinuationToken"])
    assert r2["Contents"][0]["Key"] == "d/f011000"
    r = s3.list_objects_v2(Bucket=bucket, StartAfter="d/f019998")
    assert [o["Key"] for o in r["Contents"]] == ["d/f019999"]


# -- multipart ------------------------------------------------------------------------------


def test_multipart_upload_file_and_errors(s3: Any, bucket: str, tmp_path: Path) -> None:
    _need("boto3")
    from boto3.s3.transfer import TransferConfig

    data = os.urandom(23 * 1024 * 1024 + 11)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    cfg = TransferConfig(multipart_threshold=5 * 1024 * 1024,
                         multipart_chunksize=5 * 1024 * 1024)
    s3.upload_file(str(src), bucket, "big.bin", Config=cfg)
    assert s3.head_object(Bucket=bucket, Key="big.bin")["ContentLength"] == len(data)
    dst = tmp_path / "back.bin"
    s3.download_file(bucket, "big.bin", str(dst), Config=cfg)
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(data).digest()

    # Completing with a part that was never uploaded: InvalidPart; nothing visible.
    up = s3.create_multipart_upload(Bucket=bucket, Key="partial")["UploadId"]
    p1 = s3.upload_part(Bucket=bucket, Key="partial", UploadId=up, PartNumber=1,
                        Body=b"a" * (5 * 1024 * 1024))
    parts = s3.list_parts(Bucket=bucket, Key="partial", UploadId=up)["Parts"]
    assert [p["PartNumber"] for p in parts] == [1]
    uploads = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [u["UploadId"] for u in uploads] == [up]
    with pytest.raises(Exception) as ei:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="partial", UploadId=up,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]},
                                       {"PartNumber": 2, "ETag": '"0000"'}]})
    assert _code(ei.value) == "InvalidPart"
    with pytest.raises(Exception) as ei:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="partial", UploadId=up,
            MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": '"0000"'},
                                       {"PartNumber": 1, "ETag": p1["ETag"]}]})
    assert _code(ei.value) == "InvalidPartOrder"
    with pytest.raises(Exception) as ei:
        s3.head_object(Bucket=bucket, Key="partial")
    assert _status(ei.value) == 404
    s3.abort_multipart_upload(Bucket=bucket, Key="partial", UploadId=up)
    with pytest.raises(Exception) as ei:
        s3.list_parts(Bucket=bucket, Key="partial", UploadId=up)
    assert _code(ei.value) == "NoSuchUpload"
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


# -- signatures ----------------------------------------------------------------------------


def test_wrong_signature_and_unknown_key_are_refused(gw: Gateway, bucket: str) -> None:
    boto3 = _need("boto3")
    from botocore.config import Config

    def client(access: str, secret: str) -> Any:
        return boto3.client("s3", endpoint_url=gw.endpoint, aws_access_key_id=access,
                            aws_secret_access_key=secret, region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"},
                                          signature_version="s3v4",
                                          retries={"max_attempts": 1}))

    with pytest.raises(Exception) as ei:
        client(ACCESS, "wrong-secret").list_objects_v2(Bucket=bucket)
    assert _code(ei.value) == "SignatureDoesNotMatch" and _status(ei.value) == 403
    with pytest.raises(Exception) as ei:
        client("nobody", SECRET).put_object(Bucket=bucket, Key="k", Body=b"x")
    assert _code(ei.value) == "InvalidAccessKeyId" and _status(ei.value) == 403
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as he:
        urllib.request.urlopen(f"{gw.endpoint}/{bucket}/k")
    assert he.value.code == 403 and b"<Code>AccessDenied</Code>" in he.value.read()
    # A presigned URL works without any client.
    good = client(ACCESS, SECRET)
    good.put_object(Bucket=bucket, Key="pre", Body=b"presigned")
    url = good.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "pre"})
    assert urllib.request.urlopen(url).read() == b"presigned"
    with pytest.raises(urllib.error.HTTPError) as he:
        urllib.request.urlopen(url.replace("Signature=", "Signature=0"))
    assert he.value.code == 403


# -- other clients ----------------------------------------------------------------------------


def test_minio_sdk(gw: Gateway, bucket: str, tmp_path: Path) -> None:
    minio = _need("minio")
    import io

    c = minio.Minio(gw.endpoint.removeprefix("http://"), access_key=ACCESS, secret_key=SECRET,
                    secure=False, region="us-east-1")
    assert c.bucket_exists(bucket)
    data = os.urandom(12 * 1024 * 1024)
    # Unknown length: the SDK uploads in 5 MiB parts (multipart).
    c.put_object(bucket, "m/obj", io.BytesIO(data), length=-1, part_size=5 * 1024 * 1024)
    c.put_object(bucket, "m/small", io.BytesIO(b"hi"), length=2)
    resp = c.get_object(bucket, "m/obj")
    try:
        assert resp.read() == data
    finally:
        resp.close()
        resp.release_conn()
    assert sorted(o.object_name for o in c.list_objects(bucket, prefix="m/", recursive=True)) \
        == ["m/obj", "m/small"]
    c.remove_object(bucket, "m/small")
    assert [o.object_name for o in c.list_objects(bucket, prefix="m/")] == ["m/obj"]


def _aws(gw: Gateway, *args: str) -> subprocess.CompletedProcess[bytes]:
    aws = shutil.which("aws")
    if aws is None:
        pytest.skip("the AWS CLI is not installed: pip install awscli (scripts/test does)")
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS, AWS_SECRET_ACCESS_KEY=SECRET,
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=os.devnull,
               AWS_SHARED_CREDENTIALS_FILE=os.devnull, NO_PROXY="127.0.0.1")
    return subprocess.run([aws, "--endpoint-url", gw.endpoint, *args], capture_output=True,
                          env=env, timeout=300, check=False)


def _rclone(gw: Gateway, *args: str) -> subprocess.CompletedProcess[bytes]:
    rclone = shutil.which("rclone")
    if rclone is None:
        pytest.skip("rclone is not installed: apt-get install -y rclone (scripts/test does)")
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # no TLS here
    env.update(RCLONE_CONFIG_TUSK_TYPE="s3", RCLONE_CONFIG_TUSK_PROVIDER="Other",
               RCLONE_CONFIG_TUSK_ACCESS_KEY_ID=ACCESS,
               RCLONE_CONFIG_TUSK_SECRET_ACCESS_KEY=SECRET,
               RCLONE_CONFIG_TUSK_ENDPOINT=gw.endpoint, RCLONE_CONFIG_TUSK_REGION="us-east-1",
               RCLONE_CONFIG="/dev/null", NO_PROXY="127.0.0.1")
    return subprocess.run([rclone, *args], capture_output=True, env=env, timeout=300,
                          check=False)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_aws_cli_cp_ls_rm(gw: Gateway, bucket: str, tmp_path: Path) -> None:
    f = tmp_path / "up.bin"
    f.write_bytes(os.urandom(9 * 1024 * 1024))  # above the CLI's 8 MiB multipart threshold
    r = _aws(gw, "s3", "cp", str(f), f"s3://{bucket}/cli/up.bin")
    assert r.returncode == 0, r.stderr
    r = _aws(gw, "s3", "ls", f"s3://{bucket}/cli/")
    assert r.returncode == 0 and b"up.bin" in r.stdout, r.stderr
    back = tmp_path / "back.bin"
    r = _aws(gw, "s3", "cp", f"s3://{bucket}/cli/up.bin", str(back))
    assert r.returncode == 0 and back.read_bytes() == f.read_bytes(), r.stderr
    r = _aws(gw, "s3api", "get-object", "--bucket", bucket, "--key", "cli/nope", str(back))
    assert r.returncode != 0 and b"NoSuchKey" in r.stderr
    r = _aws(gw, "s3", "rm", f"s3://{bucket}/cli/up.bin")
    assert r.returncode == 0, r.stderr


def test_rclone_sync_then_aws_cp_recursive_is_byte_identical(gw: Gateway, bucket: str,
                                                             tmp_path: Path) -> None:
    src = tmp_path / "src"
    for rel, size in [("a.txt", 10), ("sub/b.bin", 300_000), ("sub/deep/c.bin", 7_000_000),
                      ("sub/deep/empty", 0), ("name with spaces.txt", 5), ("z-last", 1)]:
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(size))
    r = _rclone(gw, "sync", str(src), f"tusk:{bucket}/synced")
    assert r.returncode == 0, r.stderr.decode()
    dst = tmp_path / "dst"
    r = _aws(gw, "s3", "cp", "--recursive", f"s3://{bucket}/synced", str(dst))
    assert r.returncode == 0, r.stderr.decode()
    assert _tree(dst) == _tree(src)
    # A second sync after a change transfers it and deletes what went away.
    (src / "a.txt").write_bytes(b"changed")
    (src / "z-last").unlink()
    r = _rclone(gw, "sync", str(src), f"tusk:{bucket}/synced")
    assert r.returncode == 0, r.stderr.decode()
    r = _rclone(gw, "lsf", "-R", f"tusk:{bucket}/synced")
    assert b"z-last" not in r.stdout and b"a.txt" in r.stdout, r.stderr


def test_s3fs_pandas_csv_and_parquet(gw: Gateway, bucket: str) -> None:
    pd = _need("pandas")
    _need("s3fs")
    _need("pyarrow")
    opts = {"key": ACCESS, "secret": SECRET, "client_kwargs": {"endpoint_url": gw.endpoint,
                                                               "region_name": "us-east-1"}}
    df = pd.DataFrame({"x": range(1000), "y": [f"v{i}" for i in range(1000)]})
    df.to_csv(f"s3://{bucket}/tables/t.csv", index=False, storage_options=opts)
    back = pd.read_csv(f"s3://{bucket}/tables/t.csv", storage_options=opts)
    assert back.equals(df)
    df.to_parquet(f"s3://{bucket}/tables/t.parquet", storage_options=opts)
    back = pd.read_parquet(f"s3://{bucket}/tables/t.parquet", storage_options=opts)
    assert back.equals(df)
    out = gw.tusk("list", "file", f"{bucket}@master:/tables")
    assert b"t.csv" in out.stdout and b"t.parquet" in out.stdout
