"""The generic PFS pieces the S3 gateway stands on: listing in plain string
order from a seek point, chunks stored ahead of a commit and pinned against
GC, and multipart uploads assembled by reference."""

from __future__ import annotations

import os
import random
import uuid

import pytest

from pfs import gc
from pfs.api import PFS
from pfs.errors import Corruption
from tusk.s3.backend import S3Error
from tusk.s3.multipart import MultipartStore
from tusk.s3.pfs_backend import PfsBuckets


def _name() -> str:
    return "r" + uuid.uuid4().hex[:8]


def test_list_file_after_is_string_order_from_any_point(pfs: PFS) -> None:
    repo = _name()
    pfs.create_repo(repo)
    paths = ["/a", "/a-b", "/a.txt", "/a/b", "/a/b-c", "/a/b/c", "/a0", "/b c/d", "/z"]
    paths = [p for p in paths if not any(q.startswith(p + "/") for q in paths)]
    with pfs.modify_file(repo, "master") as w:
        for p in paths:
            w.put_file(p, [p.encode()])
    want = sorted(paths)
    assert [f.path for f in pfs.list_file_after(repo, "master")] == want
    rnd = random.Random(7)
    for after in [*want, "/", "/a", "/a.", "/a/", "/a/b/", "/zz", *(rnd.choice(want) + "x"
                                                                   for _ in range(5))]:
        assert [f.path for f in pfs.list_file_after(repo, "master", "/", after)] \
            == [p for p in want if p > after], after
    assert [f.path for f in pfs.list_file_after(repo, "master", "/a")] == ["/a/b-c", "/a/b/c"]
    assert list(pfs.list_file_after(repo, "master", "/missing")) == []


def test_pinned_chunks_survive_gc_until_unpinned(pfs: PFS) -> None:
    data = os.urandom(3 * 1024 * 1024)
    refs, size = pfs.store_stream([data])
    assert size == len(data)
    pfs.pin_chunks("test-pin", refs)
    gc.collect(pfs, grace_seconds=0)
    assert b"".join(pfs.blobs.read_chunks(pfs.pinned_chunks("test-pin"))) == data
    pfs.unpin_chunks("test-pin")
    assert pfs.pinned_chunks("test-pin") == []
    gc.collect(pfs, grace_seconds=0)
    with pytest.raises(Corruption):  # the pack is gone
        b"".join(pfs.blobs.read_chunks(refs))


def test_multipart_parts_survive_gc_and_complete_by_reference(pfs: PFS) -> None:
    buckets = PfsBuckets(pfs, MultipartStore(pfs))
    name = _name()
    buckets.create_bucket(name)
    b = buckets.bucket(name)
    uid = b.create_multipart("big/obj")
    p1, p2 = os.urandom(5 * 1024 * 1024), os.urandom(1234)
    e1 = b.upload_part(uid, 1, [p1]).etag
    e2 = b.upload_part(uid, 2, [p2[:100], p2[100:]]).etag
    gc.collect(pfs, grace_seconds=0)  # the parts are pinned: nothing of them goes
    with pytest.raises(S3Error) as ei:
        b.complete_multipart(uid, [(1, e1), (3, "x")])
    assert ei.value.code == "InvalidPart"
    info = b.complete_multipart(uid, [(1, e1), (2, e2)])
    assert info.size == len(p1) + len(p2)
    data = b.get_object("big/obj")
    assert b"".join(data.read()) == p1 + p2
    assert b"".join(data.read(len(p1) - 3, 10)) == (p1 + p2)[len(p1) - 3:len(p1) + 7]
    assert list(pfs.meta.range("pins/")) == [] and list(pfs.meta.range("s3/")) == []
    gc.collect(pfs, grace_seconds=0)
    assert b"".join(b.get_object("big/obj").read()) == p1 + p2


def test_abandoned_uploads_are_swept(pfs: PFS) -> None:
    store = MultipartStore(pfs, ttl=10)
    buckets = PfsBuckets(pfs, store)
    name = _name()
    buckets.create_bucket(name)
    b = buckets.bucket(name)
    uid = b.create_multipart("k")
    b.upload_part(uid, 1, [b"abc"])
    import time

    assert store.sweep(now=time.time() + 5) == 0
    assert store.sweep(now=time.time() + 3600) == 1
    assert list(pfs.meta.range("pins/")) == []
    with pytest.raises(S3Error) as ei:
        b.list_parts(uid)
    assert ei.value.code == "NoSuchUpload"
