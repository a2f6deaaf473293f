"""The per-datum S3 gateway's buckets (tusk.s3.worker_scope) and the spec and
planner parts of pipelines over S3, without Docker: fast logic tests.

The end-to-end tier, with real containers and sandboxes, is tests/test_pps_s3.py.
"""

from __future__ import annotations

import os
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pfs.api import PFS, open_pfs
from pps.controller.planner import plan_job
from pps.errors import InvalidSpec
from pps.gateway import S3Scope
from pps.records import DatumIndexEntry, DatumInputRec
from pps.runners._files import move_children
from pps.spec import spec_from_dict
from tusk.s3.backend import S3Error
from tusk.s3.worker_scope import InputBucket, OutBucket, _Gate, datum_gateways


@pytest.fixture
def pfs(tmp_path: Any) -> Iterator[PFS]:
    p = open_pfs(str(tmp_path / "data"))
    yield p
    p.meta.close()


def _commit(pfs: PFS, repo: str, files: dict[str, bytes]) -> str:
    pfs.create_repo(repo)
    with pfs.modify_file(repo, "master") as w:
        for path, data in files.items():
            w.put_file(path, [data])
    return pfs.inspect_commit(repo, "master").id


def _read(bucket: Any, key: str, offset: int = 0, length: int | None = None) -> bytes:
    return b"".join(bucket.get_object(key).read(offset, length))


# -- input buckets ------------------------------------------------------------------


def test_input_bucket_shows_exactly_the_datums_paths(pfs: PFS) -> None:
    c = _commit(pfs, "in", {"/x/1": b"one", "/x/2": b"two", "/x-y": b"dash", "/y/3": b"three"})
    tree = pfs.commit_tree("in", c)
    b = InputBucket("in", tree, ["/x"], pfs.blobs.read_chunks, c, 0.0)
    assert [o.key for o in b.list_objects().objects] == ["x/1", "x/2"]
    assert _read(b, "x/2") == b"two" and _read(b, "x/2", 1, 1) == b"w"
    for hidden in ("y/3", "x-y"):
        with pytest.raises(S3Error) as e:
            b.get_object(hidden)
        assert e.value.code == "NoSuchKey"
    whole = InputBucket("in", tree, ["/"], pfs.blobs.read_chunks, c, 0.0)
    # Byte order of keys ("x-y" before "x/1"), pages, prefixes and roll-ups.
    assert [o.key for o in whole.list_objects().objects] == ["x-y", "x/1", "x/2", "y/3"]
    page = whole.list_objects(max_keys=2)
    assert [o.key for o in page.objects] == ["x-y", "x/1"] and page.truncated
    rest = whole.list_objects(start_after=page.next_start_after)
    assert [o.key for o in rest.objects] == ["x/2", "y/3"]
    assert [o.key for o in whole.list_objects(prefix="x/").objects] == ["x/1", "x/2"]
    rolled = whole.list_objects(delimiter="/")
    assert rolled.common_prefixes == ["x/", "y/"] and [o.key for o in rolled.objects] == ["x-y"]


def test_input_bucket_is_read_only(pfs: PFS) -> None:
    c = _commit(pfs, "in", {"/a": b"a"})
    b = InputBucket("in", pfs.commit_tree("in", c), ["/"], pfs.blobs.read_chunks, c, 0.0)
    for write in (lambda: b.put_object("b", [b"x"]), lambda: b.delete_object("a"),
                  lambda: b.create_multipart("b")):
        with pytest.raises(S3Error) as e:
            write()
        assert e.value.code == "AccessDenied"


# -- the out bucket: never through a link, nothing after the datum ---------------------


@pytest.fixture
def out(tmp_path: Any) -> tuple[OutBucket, _Gate, str]:
    root, tmp = tmp_path / "out", tmp_path / "out.s3tmp"
    root.mkdir()
    tmp.mkdir()
    gate = _Gate()
    return OutBucket(str(root), str(tmp), gate), gate, str(root)


def test_out_bucket_writes_files_under_the_output_dir(out: tuple[OutBucket, _Gate, str]) -> None:
    b, _, root = out
    info = b.put_object("d/e/f.txt", [b"hel", b"lo"])
    assert info.size == 5 and info.etag == "5d41402abc4b2a76b9719d911017c592"  # md5("hello")
    assert Path(root, "d/e/f.txt").read_bytes() == b"hello"
    assert b.head_object("d/e/f.txt").etag == info.etag
    assert [o.key for o in b.list_objects().objects] == ["d/e/f.txt"]
    b.delete_object("d/e/f.txt")
    b.delete_object("never/was")  # S3: deleting a missing key succeeds
    assert not os.path.exists(os.path.join(root, "d/e/f.txt"))
    uid = b.create_multipart("big")
    p1 = b.upload_part(uid, 1, [b"a" * 10])
    p2 = b.upload_part(uid, 2, [b"b"])
    done = b.complete_multipart(uid, [(1, p1.etag), (2, p2.etag)])
    assert done.etag.endswith("-2") and Path(root, "big").read_bytes() == b"a" * 10 + b"b"
    with pytest.raises(S3Error):
        b.put_object("a//b", [b"x"])


def test_out_bucket_never_follows_links_user_code_planted(
        out: tuple[OutBucket, _Gate, str], tmp_path: Any) -> None:
    b, _, root = out
    outside = tmp_path / "host"
    outside.mkdir()
    (outside / "secret").write_bytes(b"host file")
    os.symlink(str(outside), os.path.join(root, "dirlink"))
    os.symlink(str(outside / "secret"), os.path.join(root, "filelink"))
    # A write below a link to a host directory is refused.
    with pytest.raises(S3Error) as e:
        b.put_object("dirlink/planted", [b"x"])
    assert e.value.code == "InvalidRequest"
    assert sorted(os.listdir(outside)) == ["secret"]
    # A write onto a link replaces the link, not its target.
    b.put_object("filelink", [b"mine"])
    assert (outside / "secret").read_bytes() == b"host file"
    assert not os.path.islink(os.path.join(root, "filelink"))
    # Reads and listings do not go through links either.
    os.symlink(str(outside / "secret"), os.path.join(root, "readlink"))
    with pytest.raises(S3Error) as e:
        b.get_object("readlink")
    assert e.value.code == "NoSuchKey"
    with pytest.raises(S3Error):
        b.get_object("dirlink/secret")
    assert [o.key for o in b.list_objects().objects] == ["filelink"]
    b.delete_object("dirlink/secret")
    assert (outside / "secret").exists()


def test_nothing_lands_in_out_after_the_datum_is_over(out: tuple[OutBucket, _Gate, str]) -> None:
    b, gate, root = out
    started, release = threading.Event(), threading.Event()
    errors: list[Exception] = []

    def slow_body() -> Iterator[bytes]:
        yield b"first"
        started.set()
        release.wait(5)
        yield b"second"

    def upload() -> None:
        try:
            b.put_object("late", slow_body())
        except S3Error as e:
            errors.append(e)

    t = threading.Thread(target=upload)
    t.start()
    started.wait(5)
    with gate.lock:  # what DatumS3Gateway.stop does
        gate.closed = True
    release.set()
    t.join(5)
    assert [getattr(e, "code", "") for e in errors] == ["ServiceUnavailable"]
    with pytest.raises(S3Error):
        b.put_object("after", [b"x"])
    with pytest.raises(S3Error):
        b.delete_object("x")
    assert os.listdir(root) == []


def test_gateway_over_http_accepts_unsigned_requests_and_stops(pfs: PFS, tmp_path: Any) -> None:
    c = _commit(pfs, "in", {"/f": b"input"})
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rec = DatumInputRec("in", "in", "master", c, "/", True, "")
    gw = datum_gateways(pfs.commit_tree, pfs.blobs.read_chunks)(
        S3Scope({"in": (rec,)}, str(out_dir)))
    assert gw.env["S3_ENDPOINT"] == "http://127.0.0.1:9000"
    sock = socket.create_server(("127.0.0.1", 0))  # the runner makes it in the sandbox
    port = sock.getsockname()[1]
    gw.serve(sock)
    base = f"http://127.0.0.1:{port}"
    try:
        assert urllib.request.urlopen(f"{base}/in/f").read() == b"input"
        req = urllib.request.Request(f"{base}/out/r.txt", data=b"result", method="PUT")
        assert urllib.request.urlopen(req).status == 200
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(urllib.request.Request(f"{base}/in/g", data=b"x",
                                                          method="PUT"))
        assert e.value.code == 403
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{base}/other/x")
        assert e.value.code == 404
    finally:
        gw.stop()
    assert (out_dir / "r.txt").read_bytes() == b"result"
    assert not os.path.exists(f"{out_dir}.s3tmp")
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{base}/in/f", timeout=2)


# -- collecting /pfs/out next to bucket out (docker runner) ----------------------------


def test_move_children_merges_directories_and_refuses_duplicates(tmp_path: Any) -> None:
    src, dst, host = tmp_path / "src", tmp_path / "dst", tmp_path / "host"
    for d in (src / "d", dst / "d", host):
        d.mkdir(parents=True)
    (src / "d" / "from_pfs_out").write_bytes(b"1")
    (dst / "d" / "from_s3").write_bytes(b"2")
    move_children(str(src), str(dst))
    assert sorted(os.listdir(dst / "d")) == ["from_pfs_out", "from_s3"]
    assert os.listdir(src) == []
    # The same file written both ways fails rather than picking one.
    (src / "d").mkdir()
    (src / "d" / "from_s3").write_bytes(b"3")
    with pytest.raises(FileExistsError):
        move_children(str(src), str(dst))
    # A link where a directory is expected is moved as a link, never entered.
    (src / "d" / "from_s3").unlink()
    (src / "d").rmdir()
    (host / "h").write_bytes(b"host")
    os.symlink(str(host), str(src / "d"))
    with pytest.raises(FileExistsError):
        move_children(str(src), str(dst))
    assert (host / "h").read_bytes() == b"host"


# -- spec and planner ----------------------------------------------------------------


def _spec(**extra: Any) -> dict[str, Any]:
    return {"pipeline": {"name": "p"}, "transform": {"cmd": ["true"]},
            "input": {"pfs": {"repo": "r", "glob": "/", **extra.pop("pfs", {})}}, **extra}


def test_spec_accepts_s3_and_s3_out_and_keeps_other_hashes() -> None:
    plain = spec_from_dict(_spec())
    s = spec_from_dict(_spec(pfs={"s3": True}, s3_out=True))
    assert s.s3_out and s.input.pfs is not None and s.input.pfs.s3
    assert spec_from_dict(s.to_dict()) == s
    assert "s3_out" not in plain.to_dict() and "s3" not in plain.to_dict()["input"]["pfs"]
    assert s.spec_hash() != plain.spec_hash()
    assert spec_from_dict(_spec(s3Out=True)).s3_out  # camelCase, as Pachyderm's JSON
    for flag in ("lazy", "empty_files"):
        with pytest.raises(InvalidSpec, match=f"input.pfs.{flag}"):
            spec_from_dict(_spec(pfs={"s3": True, flag: True}))


class _Source:
    def glob(self, repo: str, commit: str, pattern: str) -> Iterator[Any]:
        from pps.datums import Match
        yield Match(path="/a", is_dir=False, hash=b"h", size=1)


def test_s3_out_plans_every_datum_again() -> None:
    for s3_out, processed in ((False, 0), (True, 1)):
        spec = spec_from_dict(_spec(pfs={"glob": "/*"}, s3_out=s3_out))
        first = plan_job(spec, "", {"r": "c1"}, _Source(), {})
        d = first.process[0]
        base = {d.id: DatumIndexEntry(d.id, d.hash, "success", "j1", ("/out",))}
        plan = plan_job(spec, "", {"r": "c2"}, _Source(), base)
        assert len(plan.process) == processed
        assert plan.data_total - len(plan.process) == 1 - processed
