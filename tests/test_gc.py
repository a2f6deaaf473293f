"""Garbage collection (``pfs.gc``): deleting a repo eventually frees the chunks
only it referenced; chunks shared with other repos stay readable.

Runs on the ``pfs`` fixture: memory, embedded (SQLite + local directory) and
real (etcd + S3 on SeaweedFS).
"""

from __future__ import annotations

import hashlib
import os
import uuid

import msgpack
import pytest

from pfs import gc
from pfs.api import PFS
from pfs.blobs import pack_key, ref_from_str


def _name(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def _put(pfs: PFS, repo: str, files: dict[str, bytes], branch: str = "master") -> str:
    """One commit with ``files``; returns its id."""
    with pfs.modify_file(repo, branch) as w:
        for path, data in files.items():
            w.put_file(path, [data])
    return pfs.inspect_commit(repo, branch).id


def _packs(pfs: PFS) -> dict[str, int]:
    return {k: pfs.objects.size(k) for k in pfs.objects.list("packs/")}


def _digest_all(pfs: PFS, repo: str) -> dict[tuple[str, str], str]:
    """sha256 of every file of every finished commit of ``repo``."""
    out = {}
    for ci in pfs.list_commit(repo):
        if ci.finished is None:
            continue
        for f in pfs.walk_file(repo, ci.id, "/"):
            if f.path.endswith("/"):
                continue
            h = hashlib.sha256()
            for piece in pfs.get_file(repo, ci.id, f.path):
                h.update(piece)
            out[(ci.id, f.path)] = h.hexdigest()
    return out


def test_deleting_a_repo_frees_its_unique_packs_and_keeps_shared_ones(pfs: PFS) -> None:
    a, b = _name("a"), _name("b")
    pfs.create_repo(a)
    pfs.create_repo(b)
    shared = os.urandom(2 * 1024 * 1024)
    unique = os.urandom(24 * 1024 * 1024)  # > 32 chunks: a chunk-list node, several packs
    _put(pfs, a, {"/shared.bin": shared, "/small.txt": b"a\n"})
    _put(pfs, a, {"/unique.bin": unique})  # its own upload, so its own packs
    _put(pfs, b, {"/copy.bin": shared, "/dir/b.txt": b"b\n"})  # dedups into a's pack
    before_b = _digest_all(pfs, b)
    packs_before = _packs(pfs)

    assert gc.collect(pfs, grace_seconds=0).packs_deleted == 0  # everything is live
    assert _packs(pfs) == packs_before

    pfs.delete_repo(a)
    stats = gc.collect(pfs, grace_seconds=0)
    packs_after = _packs(pfs)
    freed = sum(packs_before.values()) - sum(packs_after.values())
    assert stats.packs_deleted >= 3 and len(packs_after) == len(packs_before) - stats.packs_deleted
    assert freed >= len(unique), f"only {freed} bytes freed"
    assert stats.bytes_deleted >= freed
    # b shares a's first pack (its chunks were deduplicated into it): kept.
    assert _digest_all(pfs, b) == before_b
    # A fresh read through a new blob cache too (the LRU could mask a loss).
    pfs.blobs._cache.clear()
    assert _digest_all(pfs, b) == before_b

    again = gc.collect(pfs, grace_seconds=0)
    assert again.packs_deleted == 0 and again.layers_deleted == 0
    assert _packs(pfs) == packs_after


def test_grace_period_keeps_young_unreferenced_packs(pfs: PFS) -> None:
    a = _name("g")
    pfs.create_repo(a)
    _put(pfs, a, {"/x.bin": os.urandom(300_000)})
    before = _packs(pfs)
    pfs.delete_repo(a)
    stats = gc.collect(pfs)  # default grace: an hour
    assert stats.packs_deleted == 0 and stats.packs_young >= 1
    assert _packs(pfs) == before


def test_open_commit_layers_and_their_packs_survive(pfs: PFS) -> None:
    r = _name("o")
    pfs.create_repo(r)
    base = os.urandom(500_000)
    _put(pfs, r, {"/base.bin": base})
    ci = pfs.start_commit(r, "master")
    layer_data = [os.urandom(400_000) for _ in range(3)]
    for i, data in enumerate(layer_data):  # three uploads: three layers, three packs
        with pfs.modify_file(r, "master") as w:
            w.put_file(f"/open/{i}.bin", [data])
    # Garbage next to it: a pack and a layer nothing references.
    orphan_pack = uuid.uuid4().hex
    pfs.objects.put(pack_key(orphan_pack), b"not referenced")
    pfs.objects.put(f"layers/{uuid.uuid4().hex}", b"")
    stats = gc.collect(pfs, grace_seconds=0)
    assert stats.layers_live == 3
    assert stats.layers_deleted == 1 and stats.packs_deleted == 1
    assert not pfs.objects.exists(pack_key(orphan_pack))
    pfs.blobs._cache.clear()
    for i, data in enumerate(layer_data):  # the open commit still reads
        assert b"".join(pfs.get_file(r, ci.id, f"/open/{i}.bin")) == data
    pfs.finish_commit(r, ci.id)
    pfs.blobs._cache.clear()
    assert b"".join(pfs.get_file(r, "master", "/base.bin")) == base
    for i, data in enumerate(layer_data):
        assert b"".join(pfs.get_file(r, "master", f"/open/{i}.bin")) == data
    # Finishing dropped the layers' records: their objects are garbage now.
    after = gc.collect(pfs, grace_seconds=0)
    assert after.layers_live == 0 and after.layers_deleted == 3 and after.packs_deleted == 0
    assert b"".join(pfs.get_file(r, "master", "/open/2.bin")) == layer_data[2]


def test_chunk_refs_in_pps_objects_keep_their_packs(pfs: PFS) -> None:
    r = _name("p")
    pfs.create_repo(r)
    data = os.urandom(200_000)
    _put(pfs, r, {"/out.bin": data})
    tree = pfs._commit_tree(pfs.resolve(r, "master"))
    entry = tree.lookup("/out.bin")
    refs = tree.chunks(entry)  # type: ignore[arg-type]
    # A unit result as PPS writes it: output files with chunk refs.
    result = {"id": "d1", "outputs": [["/out.bin", len(data), [list(x) for x in refs]]]}
    pfs.objects.put(f"pps/{r}/job/units/000000", msgpack.packb([result]))
    pfs.delete_repo(r)
    stats = gc.collect(pfs, grace_seconds=0)
    assert stats.pps_objects >= 1
    pfs.blobs._cache.clear()
    assert b"".join(pfs.blobs.read_chunks(refs)) == data
    pfs.objects.delete(f"pps/{r}/job/units/000000")
    assert gc.collect(pfs, grace_seconds=0).packs_deleted >= 1


def test_a_missing_node_aborts_without_deleting(pfs: PFS) -> None:
    r, junk = _name("m"), _name("j")
    pfs.create_repo(r)
    pfs.create_repo(junk)
    _put(pfs, junk, {"/j.bin": os.urandom(100_000)})
    pfs.delete_repo(junk)
    _put(pfs, r, {"/d/f.txt": b"x"})
    root = ref_from_str(pfs.resolve(r, "master").tree)
    before = _packs(pfs)
    pfs.objects.delete(pack_key(root[2]))  # the tree's index is gone
    pfs.blobs._cache.clear()
    with pytest.raises(Exception, match="missing"):
        gc.collect(pfs, grace_seconds=0)
    assert len(_packs(pfs)) == len(before) - 1  # only the one we deleted


def test_collector_thread_hook(pfs: PFS) -> None:
    c = gc.Collector(pfs, interval=0, grace_seconds=0).start()  # interval 0: no thread
    stats = c.run_once()
    assert c.last is stats and stats.seconds >= 0
    c.stop()


def test_a_dedup_hit_on_an_old_orphan_pack_keeps_it(pfs: PFS) -> None:
    """A writer handed a chunk of an old unreferenced pack (dedup) records its
    commit later: GC must not delete that pack meanwhile."""
    from pfs.objects import LocalObjectStore

    if not isinstance(pfs.objects, LocalObjectStore):
        pytest.skip("ages are set through file mtimes here")
    gc.track_dedup_hits(pfs.blobs)  # as the daemon does at start
    old, other, c = _name("old"), _name("oth"), _name("c")
    for r in (old, other, c):
        pfs.create_repo(r)
    data = os.urandom(300_000)
    _put(pfs, old, {"/f.bin": data})
    _put(pfs, other, {"/g.bin": os.urandom(300_000)})
    pfs.delete_repo(old)
    pfs.delete_repo(other)
    two_hours_ago = os.stat(pfs.objects.root).st_mtime - 7200
    for k in pfs.objects.list("packs/"):
        os.utime(os.path.join(pfs.objects.root, k), (two_hours_ago, two_hours_ago))
    w = pfs.modify_file(c, "master")
    w.put_file("/same.bin", [data])  # deduplicated into old's pack, not yet recorded
    stats = gc.collect(pfs, grace_seconds=3600)
    assert stats.packs_deleted == 1  # other's pack only
    w.close()
    pfs.blobs._cache.clear()
    assert b"".join(pfs.get_file(c, "master", "/same.bin")) == data
