"""PFS behaviour through the core API, on every backend (see conftest ``pfs``).

Each test pins a Pachyderm behaviour from pachyderm-reference.md sections 1.x.
"""

from __future__ import annotations

import os

import pytest

from pfs import errors
from pfs.api import PFS
from pfs.model import BranchRef, CommitState, FileType, OriginKind


def put(pfs: PFS, repo: str, ref: str, files: dict[str, bytes], append: bool = False) -> str:
    with pfs.modify_file(repo, ref) as w:
        for path, data in files.items():
            w.put_file(path, [data], append=append)
    return w  # type: ignore[return-value]


def put_files(pfs: PFS, repo: str, ref: str, files: dict[str, bytes], append: bool = False) -> str:
    w = pfs.modify_file(repo, ref)
    for path, data in files.items():
        w.put_file(path, [data], append=append)
    return w.close().id


def read(pfs: PFS, repo: str, ref: str, path: str) -> bytes:
    return b"".join(pfs.get_file(repo, ref, path))


def paths(infos: object) -> list[str]:
    return [i.path for i in infos]  # type: ignore[attr-defined]


# --- repos -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lenny", "lenny123", "lenny_123", "lenny-123"])
def test_valid_repo_names(pfs: PFS, name: str) -> None:
    assert pfs.create_repo(name).name == name


@pytest.mark.parametrize("name", ["/repo", "lenny.123", "lenny:", "lenny,", "lenny#", "a" * 64])
def test_invalid_repo_names(pfs: PFS, name: str) -> None:
    with pytest.raises(errors.InvalidArgument):
        pfs.create_repo(name)
    assert pfs.list_repo() == []


def test_create_existing_repo_and_recreate_deleted(pfs: PFS) -> None:
    pfs.create_repo("data", "first")
    with pytest.raises(errors.RepoExists, match="repo data already exists"):
        pfs.create_repo("data")
    assert pfs.create_repo("data", "second", update=True).description == "second"
    put_files(pfs, "data", "master", {"/a": b"1"})
    pfs.delete_repo("data")
    with pytest.raises(errors.RepoNotFound):
        pfs.inspect_repo("data")
    pfs.create_repo("data")
    assert list(pfs.list_commit("data")) == []
    assert pfs.list_branch("data") == []


def test_repo_size_is_master_head(pfs: PFS) -> None:
    pfs.create_repo("r")
    put_files(pfs, "r", "branch", {"/a": b"12345"})
    assert pfs.inspect_repo("r").size_bytes == 0
    put_files(pfs, "r", "master", {"/a": b"123"})
    assert pfs.inspect_repo("r").size_bytes == 3


def test_missing_repo_errors(pfs: PFS) -> None:
    with pytest.raises(errors.RepoNotFound, match="repo nope not found"):
        pfs.modify_file("nope", "master")
    with pytest.raises(errors.RepoNotFound):
        pfs.create_branch("nope", "master")


# --- commits -----------------------------------------------------------------


def test_each_modify_is_one_commit_even_empty(pfs: PFS) -> None:
    pfs.create_repo("r")
    put_files(pfs, "r", "master", {"/a": b"1", "/b": b"2"})
    assert len(list(pfs.list_commit("r", "master"))) == 1
    put_files(pfs, "r", "master", {"/c": b"3"})
    assert len(list(pfs.list_commit("r", "master"))) == 2
    pfs.modify_file("r", "master").close()
    assert len(list(pfs.list_commit("r", "master"))) == 3
    assert paths(pfs.list_file("r", "master")) == ["/a", "/b", "/c"]


def test_overwrite_by_default_append_with_flag(pfs: PFS) -> None:
    pfs.create_repo("r")
    for i in range(5):
        put_files(pfs, "r", "master", {"/f": str(i).encode()})
    assert read(pfs, "r", "master", "/f") == b"4"
    w = pfs.modify_file("r", "master")
    for s in (b"foo\n", b"bar\n", b"buzz\n"):
        w.put_file("/g", [s], append=True)
    w.close()
    assert read(pfs, "r", "master", "/g") == b"foo\nbar\nbuzz\n"
    put_files(pfs, "r", "master", {"/g": b"foo\nbar\nbuzz\n"}, append=True)
    assert read(pfs, "r", "master", "/g") == b"foo\nbar\nbuzz\n" * 2


def test_open_commit_lifecycle(pfs: PFS) -> None:
    pfs.create_repo("r")
    c = pfs.start_commit("r", "master")
    assert c.state in (CommitState.READY, CommitState.STARTED)
    with pytest.raises(errors.FailedPrecondition, match="has not been finished"):
        pfs.start_commit("r", "master")
    put_files(pfs, "r", c.id, {"/a": b"1"})
    put_files(pfs, "r", "master", {"/b": b"2"})  # goes into the open head
    assert paths(pfs.list_file("r", c.id)) == ["/a", "/b"]
    done = pfs.finish_commit("r", c.id, description="msg")
    assert done.state == CommitState.FINISHED and done.description == "msg"
    with pytest.raises(errors.CommitFinished):
        pfs.modify_file("r", c.id)
    with pytest.raises(errors.CommitFinished):
        pfs.finish_commit("r", c.id)
    assert len(list(pfs.list_commit("r", "master"))) == 1


def test_errored_commits_are_excluded_from_children(pfs: PFS) -> None:
    pfs.create_repo("r")
    put_files(pfs, "r", "master", {"/f1": b"1"})
    c2 = pfs.start_commit("r", "master")
    put_files(pfs, "r", c2.id, {"/f2": b"2"})
    pfs.finish_commit("r", c2.id, error="boom")
    put_files(pfs, "r", "master", {"/f3": b"3"})
    assert paths(pfs.list_file("r", "master")) == ["/f1", "/f3"]
    assert paths(pfs.list_file("r", c2.id)) == ["/f1", "/f2"]
    assert pfs.inspect_commit("r", c2.id).error == "boom"


def test_ancestry_syntax(pfs: PFS) -> None:
    pfs.create_repo("r")
    ids = [put_files(pfs, "r", "master", {"/f": str(i).encode()}) for i in range(4)]
    assert pfs.inspect_commit("r", "master").id == ids[3]
    assert pfs.inspect_commit("r", "master^").id == ids[2]
    assert pfs.inspect_commit("r", "master~2").id == ids[1]
    assert pfs.inspect_commit("r", "master^^^").id == ids[0]
    assert pfs.inspect_commit("r", "master.1").id == ids[0]
    assert pfs.inspect_commit("r", "master.3").id == ids[2]
    assert pfs.inspect_commit("r", f"master={ids[1]}").id == ids[1]
    assert read(pfs, "r", "master^2", "/f") == b"1"
    with pytest.raises(errors.NotFound):
        pfs.inspect_commit("r", "master^4")
    with pytest.raises(errors.NotFound):
        pfs.inspect_commit("r", "master.5")
    with pytest.raises(errors.InvalidArgument, match="mix"):
        pfs.inspect_commit("r", "master^~")


def test_inspect_errors_name_what_is_missing(pfs: PFS) -> None:
    pfs.create_repo("r")
    cid = put_files(pfs, "r", "master", {"/a": b"1"})
    missing = "0" * 32
    with pytest.raises(errors.RepoNotFound, match="repo nope not found"):
        pfs.inspect_commit("nope", "master")
    with pytest.raises(errors.RepoNotFound, match="repo nope not found"):
        pfs.inspect_commit("nope", cid)
    with pytest.raises(errors.BranchNotFound, match="branch dev not found in repo r"):
        pfs.inspect_commit("r", "dev")
    with pytest.raises(errors.CommitNotFound, match=f"commit r@{missing} not found"):
        pfs.inspect_commit("r", missing)
    with pytest.raises(errors.CommitNotFound, match=f"commit r@{missing} not found"):
        pfs.inspect_commit("r", f"master={missing}")
    # The repo is checked first, even while its records are still around.
    pfs.delete_repo("r")
    with pytest.raises(errors.RepoNotFound):
        pfs.inspect_commit("r", cid)


def test_inspect_sees_changes_made_by_another_process(pfs: PFS) -> None:
    """Two PFS cores on one store: what one remembers of a branch never hides
    what the other changed (heads, children, dropped commits, branches)."""
    other = PFS(pfs.meta, pfs.blobs, recover=False)
    pfs.create_repo("r")
    first = put_files(pfs, "r", "master", {"/a": b"1"})
    info = pfs.inspect_commit("r", "master")
    assert (info.id, info.children) == (first, ())
    second = put_files(other, "r", "master", {"/a": b"2"})
    info = pfs.inspect_commit("r", "master")
    assert (info.id, info.parent, info.children) == (second, first, ())
    assert pfs.inspect_commit("r", "master").id == second  # and again, on the new guess
    assert pfs.inspect_commit("r", first).children == (second,)
    assert pfs.inspect_commit("r", "master^").children == (second,)
    other.delete_commit("r", second)
    info = pfs.inspect_commit("r", "master")
    assert (info.id, info.children) == (first, ())
    with pytest.raises(errors.CommitNotFound):
        pfs.inspect_commit("r", second)
    other.delete_branch("r", "master")
    with pytest.raises(errors.BranchNotFound):
        pfs.inspect_commit("r", "master")
    third = put_files(other, "r", "master", {"/a": b"3"})
    assert pfs.inspect_commit("r", "master").id == third
    assert pfs.inspect_commit("r", first).id == first


def test_inspect_commit_reads_once_when_the_head_is_known() -> None:
    """``inspect commit`` of a branch costs one metadata read (one etcd round
    trip) once this core has seen its head, two before or when it moved; by
    ID, one."""
    from pfs.blobs import BlobStore
    from pfs.metadata import MemoryMetadataStore
    from pfs.objects import MemoryObjectStore

    class CountingStore(MemoryMetadataStore):
        reads = 0

        def get(self, key):  # type: ignore[no-untyped-def]
            self.reads += 1
            return super().get(key)

        def range(self, prefix, start_after=None, limit=None):  # type: ignore[no-untyped-def]
            self.reads += 1
            return super().range(prefix, start_after, limit)

        def read_many(self, keys, prefixes=(), range_limit=500):  # type: ignore[no-untyped-def]
            self.reads += 1
            return super().read_many(keys, prefixes, range_limit)

    meta = CountingStore()
    svc = PFS(meta, BlobStore(MemoryObjectStore()))

    def reads(ref: str) -> int:
        before = meta.reads
        svc.inspect_commit("r", ref)
        return meta.reads - before

    svc.create_repo("r")
    first = put_files(svc, "r", "master", {"/a": b"1"})
    assert reads("master") == 2  # not seen yet: branch, then commit
    assert reads("master") == 1
    put_files(PFS(meta, svc.blobs, recover=False), "r", "master", {"/a": b"2"})
    assert reads("master") == 2  # the head moved elsewhere: one more read
    assert reads("master") == 1
    assert reads(first) == 1


def test_drop_commit(pfs: PFS) -> None:
    pfs.create_repo("r")
    first = put_files(pfs, "r", "master", {"/a": b"1"})
    second = put_files(pfs, "r", "master", {"/b": b"2"})
    with pytest.raises(errors.FailedPrecondition, match="children"):
        pfs.delete_commit("r", first)
    pfs.delete_commit("r", second)
    assert pfs.inspect_commit("r", "master").id == first
    pfs.delete_commit("r", first)
    head = pfs.inspect_commit("r", "master")
    assert head.id not in (first, second) and head.size_bytes == 0
    assert paths(pfs.list_file("r", "master")) == []


def test_squash_commit_folds_it_into_its_children(pfs: PFS) -> None:
    pfs.create_repo("r")
    first = put_files(pfs, "r", "master", {"/a": b"1"})
    second = put_files(pfs, "r", "master", {"/b": b"2"})
    third = put_files(pfs, "r", "master", {"/a": b"3"})
    with pytest.raises(errors.FailedPrecondition, match="use the drop operation instead"):
        pfs.squash_commit("r", third)
    pfs.squash_commit("r", second)
    with pytest.raises(errors.NotFound):
        pfs.inspect_commit("r", second)
    assert pfs.inspect_commit("r", third).parent == first
    assert [c.id for c in pfs.list_commit("r", "master")] == [third, first]
    # The children keep their content: /b, written by the squashed commit, stays.
    assert read(pfs, "r", third, "/b") == b"2" and read(pfs, "r", third, "/a") == b"3"
    assert read(pfs, "r", "master^", "/a") == b"1"


def test_squash_refuses_open_children_and_branch_heads(pfs: PFS) -> None:
    pfs.create_repo("r")
    first = put_files(pfs, "r", "master", {"/a": b"1"})
    pfs.create_branch("r", "pinned", head=first)
    put_files(pfs, "r", "master", {"/b": b"2"})
    with pytest.raises(errors.FailedPrecondition, match="head of branch pinned"):
        pfs.squash_commit("r", first)
    pfs.delete_branch("r", "pinned")
    second = pfs.inspect_commit("r", "master").id
    pfs.start_commit("r", "master")  # an open child of the second commit
    with pytest.raises(errors.FailedPrecondition, match="not finished yet"):
        pfs.squash_commit("r", second)


def _finish_open(pfs: PFS, repo: str) -> None:
    """Finish every open commit of ``repo``, oldest first (what a pipeline does)."""
    for c in reversed(list(pfs.list_commit(repo))):
        if c.state not in (CommitState.FINISHING, CommitState.FINISHED):
            pfs.finish_commit(repo, c.id)
    head = pfs.inspect_commit(repo, "master")
    pfs.inspect_commit(repo, head.id, wait=CommitState.FINISHED, timeout=10)


def test_drop_and_squash_with_subvenance_need_recursive(pfs: PFS) -> None:
    pfs.create_repo("in")
    pfs.create_repo("out")
    pfs.create_branch("out", "master", provenance=[BranchRef("in", "master")])
    c1 = put_files(pfs, "in", "master", {"/a": b"1"})
    _finish_open(pfs, "out")
    assert pfs.subvenant_commits("in", c1) == [("out", c1)]
    with pytest.raises(errors.FailedPrecondition, match=r"out@.*--recursive \(-r\)"):
        pfs.delete_commit("in", c1)
    c2 = put_files(pfs, "in", "master", {"/b": b"2"})
    _finish_open(pfs, "out")
    with pytest.raises(errors.FailedPrecondition, match="--recursive"):
        pfs.squash_commit("in", c1)
    pfs.squash_commit("in", c1, recursive=True)
    for repo in ("in", "out"):
        with pytest.raises(errors.NotFound):
            pfs.inspect_commit(repo, c1)
    pfs.delete_commit("in", c2, recursive=True)
    assert pfs.inspect_commit("in", "master").size_bytes == 0
    with pytest.raises(errors.NotFound):
        pfs.inspect_commit("out", c2)


def test_commit_set_drop_removes_every_member(pfs: PFS) -> None:
    pfs.create_repo("in")
    pfs.create_repo("out")
    pfs.create_branch("out", "master", provenance=[BranchRef("in", "master")])
    c1 = put_files(pfs, "in", "master", {"/a": b"1"})
    _finish_open(pfs, "out")
    pfs.delete_commit_set(c1)
    assert pfs.commit_set_members(c1) == []
    with pytest.raises(errors.NotFound, match="commit set"):
        pfs.delete_commit_set(c1)


def test_find_commits_that_changed_a_path(pfs: PFS) -> None:
    pfs.create_repo("r")
    c1 = put_files(pfs, "r", "master", {"/a": b"1", "/d/x": b"x"})
    put_files(pfs, "r", "master", {"/b": b"2"})
    c3 = put_files(pfs, "r", "master", {"/a": b"3"})
    w = pfs.modify_file("r", "master")
    w.delete_file("/a")
    c4 = w.close().id
    assert [c.id for c in pfs.find_commits("r", "master", "/a")] == [c4, c3, c1]
    assert [c.id for c in pfs.find_commits("r", "master", "/a", limit=1)] == [c4]
    assert [c.id for c in pfs.find_commits("r", "master", "/d")] == [c1]
    assert list(pfs.find_commits("r", "master", "/nope")) == []


def test_wait_and_subscribe(pfs: PFS) -> None:
    import threading

    pfs.create_repo("r")
    c = pfs.start_commit("r", "master")
    got: list[str] = []
    stop = threading.Event()

    def sub() -> None:
        for ci in pfs.subscribe_commit("r", "master", cancel=stop):
            got.append(ci.id)
            if len(got) == 2:
                return

    t = threading.Thread(target=sub)
    t.start()
    threading.Timer(0.2, lambda: pfs.finish_commit("r", c.id)).start()
    info = pfs.inspect_commit("r", c.id, wait=CommitState.FINISHED, timeout=10)
    assert info.state == CommitState.FINISHED
    second = put_files(pfs, "r", "master", {"/x": b"x"})
    t.join(10)
    stop.set()
    assert got == [c.id, second]


# --- files -------------------------------------------------------------------


def test_get_file_errors_and_offset(pfs: PFS) -> None:
    pfs.create_repo("r")
    put_files(pfs, "r", "master", {"/dir/a": b"hello", "/file": b"0123456789"})
    with pytest.raises(errors.InvalidArgument, match="Try again with the -r flag"):
        read(pfs, "r", "master", "/dir")
    with pytest.raises(errors.InvalidArgument, match="Try again with the -r flag"):
        read(pfs, "r", "master", "/dir/*x*") if False else read(pfs, "r", "master", "/*")
    with pytest.raises(errors.FileNotFound, match="not found"):
        read(pfs, "r", "master", "/bad")
    with pytest.raises(errors.BranchNotFound, match="not found"):
        read(pfs, "r", "bad", "/file")
    assert b"".join(pfs.get_file("r", "master", "/file", offset=4)) == b"456789"
    assert b"".join(pfs.get_file("r", "master", "/file", offset=10)) == b""


@pytest.mark.parametrize("bad", ["\x1f", "\x7f", "\x0b", "foobar*", "../foo", "foo/../bar", "a?"])
def test_invalid_paths_write_nothing(pfs: PFS, bad: str) -> None:
    pfs.create_repo("r")
    with pytest.raises(errors.InvalidPath), pfs.modify_file("r", "master") as w:
        w.put_file("/ok", [b"fine"])
        w.put_file(bad, [b"x"])
    assert list(pfs.list_commit("r")) == []


def test_valid_odd_paths(pfs: PFS) -> None:
    pfs.create_repo("r")
    put_files(pfs, "r", "master", {"foo bar": b"1", "~": b"2", "a//b/": b"3"})
    assert paths(pfs.walk_file("r", "master")) == ["/", "/a/", "/a/b", "/foo bar", "/~"]


def test_delete_file_and_dir(pfs: PFS) -> None:
    pfs.create_repo("r")
    put_files(pfs, "r", "master", {"/dir/a": b"1", "/dir/sub/b": b"2", "/c": b"3"})
    with pfs.modify_file("r", "master") as w:
        w.delete_file("/nope")  # missing: no-op
        w.delete_file("/dir/")
    assert paths(pfs.walk_file("r", "master")) == ["/", "/c"]
    with pfs.modify_file("r", "master") as w:
        w.put_file("/x", [b"x"])
        w.delete_file("/x")
    assert paths(pfs.walk_file("r", "master")) == ["/", "/c"]
    with pfs.modify_file("r", "master") as w:
        w.delete_file("/")
        w.put_file("/y", [b"y"])
    assert paths(pfs.walk_file("r", "master")) == ["/", "/y"]


def test_copy_file_by_reference(pfs: PFS) -> None:
    pfs.create_repo("r")
    pfs.create_repo("other")
    put_files(pfs, "r", "master", {f"/files/{i}": str(i).encode() * 1000 for i in range(3)})
    stored_before = sum(1 for _ in pfs.objects.list("packs/"))
    with pfs.modify_file("r", "master") as w:
        w.copy_file("r", "master", "/files/0", "/file0")
        w.copy_file("r", "master", "/", "/all")
    with pfs.modify_file("other", "master") as w:
        w.copy_file("r", "master", "/files", "/copied")
    assert read(pfs, "r", "master", "/file0") == b"0" * 1000
    assert paths(pfs.list_file("r", "master", "/all/files")) == [
        f"/all/files/{i}" for i in range(3)]
    assert read(pfs, "other", "master", "/copied/2") == b"2" * 1000
    # Copies store no file data: at most the new index nodes' packs.
    data_bytes = sum(pfs.objects.size(k) for k in pfs.objects.list("packs/"))
    assert sum(1 for _ in pfs.objects.list("packs/")) <= stored_before + 2
    assert data_bytes < 3000 + 3 * 4096 + 20_000


def test_walk_order(pfs: PFS) -> None:
    pfs.create_repo("r")
    put_files(pfs, "r", "master", {"dir/bar": b"1", "dir/dir2/buzz": b"2", "foo": b"3"})
    assert paths(pfs.walk_file("r", "master")) == [
        "/", "/dir/", "/dir/bar", "/dir/dir2/", "/dir/dir2/buzz", "/foo"]
    info = pfs.inspect_file("r", "master", "/dir")
    assert info.file_type == FileType.DIR and info.size_bytes == 2
    assert pfs.inspect_file("r", "master", "/").size_bytes == 3


def test_glob_file_counts(pfs: PFS) -> None:
    pfs.create_repo("r")
    files = {}
    for i in range(100):
        files[f"/file{i}"] = b"x"
        files[f"/dir1/file{i}"] = b"y"
        files[f"/dir2/dir3/file{i}"] = b"z"
    put_files(pfs, "r", "master", files)
    count = lambda pattern: sum(1 for _ in pfs.glob_file("r", "master", pattern))  # noqa: E731
    assert count("*") == 102
    assert count("file*") == 100
    assert count("dir1/*") == 100
    assert count("dir2/dir3/*") == 100
    assert count("*/*") == 101
    assert sum(i.size_bytes for i in pfs.glob_file("r", "master", "**file1?")) == 30


def test_diff_file(pfs: PFS) -> None:
    pfs.create_repo("r")
    put_files(pfs, "r", "master", {"/foo": b"foo\n"})
    d = list(pfs.diff_file("r", "master"))
    assert [n.path for n, _ in d if n] == ["/", "/foo"]
    assert [o for _, o in d if o] == []
    put_files(pfs, "r", "master", {"/foo": b"bar\n"})
    d = list(pfs.diff_file("r", "master"))
    assert ("/foo", "/foo") in [(n.path, o.path) for n, o in d if n and o]
    old = next(o for n, o in d if o and o.path == "/foo")
    assert old.hash != next(n for n, _ in d if n and n.path == "/foo").hash


# --- provenance ----------------------------------------------------------------


def test_provenance_closure_and_same_id_propagation(pfs: PFS) -> None:
    for r in "ABCDE":
        pfs.create_repo(r)
    pfs.create_branch("B", "master", provenance=[BranchRef("A", "master")])
    pfs.create_branch("C", "master",
                      provenance=[BranchRef("B", "master"), BranchRef("E", "master")])
    pfs.create_branch("D", "master", provenance=[BranchRef("C", "master")])
    assert len(pfs.inspect_branch("B", "master").provenance) == 1
    assert len(pfs.inspect_branch("C", "master").provenance) == 3
    assert len(pfs.inspect_branch("D", "master").provenance) == 4
    assert len(pfs.inspect_branch("A", "master").subvenance) == 3
    cid = put_files(pfs, "A", "master", {"/f": b"1"})
    for r in "BCD":
        c = pfs.inspect_commit(r, "master")
        assert c.id == cid and c.origin == OriginKind.AUTO
        assert c.state != CommitState.FINISHED
    c = pfs.inspect_commit("C", "master")
    assert {(p.repo, p.id) for p in c.direct_provenance} == {
        ("B", cid), ("E", pfs.inspect_commit("E", "master").id)}
    assert {x.repo for x in pfs.inspect_commit_set(cid)} == {"A", "B", "C", "D"}
    with pytest.raises(errors.FailedPrecondition, match="output branch"):
        pfs.start_commit("B", "master")


def test_commit_state_ready_waits_for_provenance(pfs: PFS) -> None:
    pfs.create_repo("A")
    pfs.create_repo("B")
    pfs.create_branch("B", "master", provenance=[BranchRef("A", "master")])
    a = pfs.start_commit("A", "master")
    assert pfs.inspect_commit("B", a.id).state == CommitState.STARTED
    with pytest.raises(errors.TuskError, match="timed out"):
        pfs.inspect_commit("B", a.id, wait=CommitState.READY, timeout=0.3)
    pfs.finish_commit("A", a.id)
    ready = pfs.inspect_commit("B", a.id, wait=CommitState.READY, timeout=5)
    assert ready.state == CommitState.READY


def test_branch_rules(pfs: PFS) -> None:
    pfs.create_repo("in")
    pfs.create_repo("out")
    pfs.create_branch("out", "master", provenance=[BranchRef("in", "master")])
    with pytest.raises(errors.FailedPrecondition,
                       match=r'branch "in@master" cannot be deleted because it\'s in the direct '
                             r"provenance of \[out@master\]"):
        pfs.delete_branch("in", "master")
    with pytest.raises(errors.BranchNotFound):
        pfs.delete_branch("in", "nope")
    with pytest.raises(errors.InvalidArgument, match="UUID"):
        pfs.create_branch("in", "0123456789ab4123456789abcdef0123")
    with pytest.raises(errors.InvalidArgument, match="own provenance"):
        pfs.create_branch("in", "x", provenance=[BranchRef("in", "master")])
    with pytest.raises(errors.FailedPrecondition, match="provenance"):
        pfs.delete_repo("in")
    pfs.delete_branch("in", "master", force=True)
    assert pfs.inspect_branch("out", "master").direct_provenance == ()


def test_create_branch_head_and_empty_head(pfs: PFS) -> None:
    pfs.create_repo("r")
    first = put_files(pfs, "r", "staging", {"/a": b"1"})
    put_files(pfs, "r", "staging", {"/b": b"2"})
    pfs.create_branch("r", "master", head="staging^")
    assert pfs.inspect_branch("r", "master").head == first
    e = pfs.create_branch("r", "empty")
    head = pfs.inspect_commit("r", "empty")
    assert head.id == e.head and head.state == CommitState.FINISHED and head.size_bytes == 0


# --- storage -------------------------------------------------------------------


def stored_bytes(pfs: PFS) -> int:
    return sum(pfs.objects.size(k) for k in pfs.objects.list("packs/"))


def test_identical_content_stored_once_across_repos(pfs: PFS) -> None:
    data = os.urandom(3 << 20)
    pfs.create_repo("a")
    pfs.create_repo("b")
    put_files(pfs, "a", "master", {"/x": data})
    before = stored_bytes(pfs)
    put_files(pfs, "b", "master", {"/y": data, "/z": data})
    assert stored_bytes(pfs) - before < 64 * 1024  # only index nodes
    assert read(pfs, "b", "master", "/z") == data


def test_new_version_stores_changed_chunks_only(pfs: PFS) -> None:
    size = 48 << 20
    data = bytearray(os.urandom(size))
    pfs.create_repo("r")
    put_files(pfs, "r", "master", {"/big": bytes(data)})
    one = stored_bytes(pfs)
    for v in range(3):
        mid = size // 2 + v * 4096
        data[mid:mid + (1 << 20)] = os.urandom(1 << 20)
        put_files(pfs, "r", "master", {"/big": bytes(data)})
    assert read(pfs, "r", "master", "/big") == bytes(data)
    # Each 1 MiB edit stores the edit plus at most two 2 MiB neighbours.
    assert stored_bytes(pfs) < one + 3 * (5 << 20)


def test_many_small_files_are_packed(pfs: PFS) -> None:
    pfs.create_repo("r")
    put_files(pfs, "r", "master", {f"/f{i:05d}": os.urandom(4096) for i in range(3000)})
    assert sum(1 for _ in pfs.objects.list("packs/")) <= 6
    assert sum(1 for _ in pfs.list_file("r", "master")) == 3000


def test_corrupt_chunk_is_reported_never_returned(pfs: PFS) -> None:
    pfs.create_repo("r")
    put_files(pfs, "r", "master", {"/a": b"precious data" * 100})
    pfs.blobs._cache.clear()
    pfs.blobs._cache_bytes = 0
    key = next(k for k in pfs.objects.list("packs/"))
    raw = bytearray(pfs.objects.get(key))
    raw[5] ^= 0xFF
    pfs.objects.put(key, bytes(raw))
    with pytest.raises(errors.Corruption, match="does not match its hash"):
        read(pfs, "r", "master", "/a")
