"""Tests for pfs.tree: the commit file index (Merkle tree with content-defined pages)."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import blake3
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pfs import tree as T
from pfs.errors import Corruption, InvalidPath
from pfs.tree import (
    AppendFile,
    Change,
    DeletePath,
    DirEntry,
    FileEntry,
    MemoryNodeStore,
    PathNotFound,
    PutFile,
    Tree,
    apply,
    build,
    file_hash,
    sort_key,
)

# --- helpers ------------------------------------------------------------------


def chunk(data: bytes) -> tuple[bytes, int]:
    return (blake3.blake3(data).digest(), len(data))


def put(path: str, data: str = "", datum: str = "") -> PutFile:
    b = (data or path).encode()
    return PutFile(path, len(b), (chunk(b),), datum)


def tree_of(store: MemoryNodeStore, paths: dict[str, str]) -> Tree:
    return build(
        store, [put(p, d) for p, d in sorted(paths.items(), key=lambda kv: sort_key(kv[0]))]
    )


class CountingStore(MemoryNodeStore):
    """Counts reads and writes; passes refs back as msgpack lists like the real store."""

    def __init__(self) -> None:
        super().__init__()
        self.puts = 0
        self.gets = 0

    def put_node(self, data: bytes) -> Any:
        self.puts += 1
        return ["mem", super().put_node(data)]

    def get_node(self, ref: Any) -> bytes:
        self.gets += 1
        assert ref[0] == "mem"
        return super().get_node(ref[1])


class FnMatcher:
    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.depth = pattern.count("/")

    def match(self, path: str) -> bool:
        if path == "/":
            return self.pattern == "/"
        return path.count("/") == self.depth and fnmatch.fnmatchcase(path, self.pattern)

    def may_match_under(self, dir_path: str) -> bool:
        depth = 0 if dir_path == "/" else dir_path.count("/")
        if depth >= self.depth:
            return False
        prefix = "/".join(self.pattern.split("/")[: depth + 1])
        return dir_path == "/" or fnmatch.fnmatchcase(dir_path, prefix)


@contextmanager
def small_pages(bits: int = 1) -> Iterator[None]:
    """Shrink pages (avg 2**bits entries) so small trees exercise pages and indexes."""
    old = T._BOUNDARY_MASK, T._INDEX_MIN
    T._BOUNDARY_MASK, T._INDEX_MIN = (1 << bits) - 1, 2
    try:
        yield
    finally:
        T._BOUNDARY_MASK, T._INDEX_MIN = old


# --- basics ---------------------------------------------------------------------


def test_empty_tree_has_fixed_hash_and_root() -> None:
    s = MemoryNodeStore()
    t = Tree(s, None)
    assert t.hash() == T.EMPTY_HASH == build(s, []).hash()
    assert t.size() == 0
    assert t.lookup("/") == DirEntry("/", 0, T.EMPTY_HASH)
    assert list(t.list_dir("/")) == []
    assert [e.path for e in t.walk()] == ["/"]


def test_file_hash() -> None:
    assert file_hash([]) == blake3.blake3(b"").digest()
    a, b = chunk(b"a"), chunk(b"b")
    assert file_hash([a, b]) == blake3.blake3(a[0] + b[0]).digest()


def test_sort_key_is_component_wise() -> None:
    assert sorted(["/a-c", "/a/b", "/a"], key=sort_key) == ["/a", "/a/b", "/a-c"]


def test_walk_order_pachyderm_example() -> None:
    t = tree_of(MemoryNodeStore(), {"/dir/bar": "1", "/dir/dir2/buzz": "22", "/foo": "333"})
    assert [e.path for e in t.walk()] == [
        "/",
        "/dir/",
        "/dir/bar",
        "/dir/dir2/",
        "/dir/dir2/buzz",
        "/foo",
    ]
    assert [e.path for e in t.walk("/dir")] == ["/dir/", "/dir/bar", "/dir/dir2/", "/dir/dir2/buzz"]
    assert [e.path for e in t.files()] == ["/dir/bar", "/dir/dir2/buzz", "/foo"]
    assert t.size() == 6
    d = t.lookup("/dir/")
    assert isinstance(d, DirEntry) and d.path == "/dir/" and d.size == 3


def test_lookup_and_entries() -> None:
    t = tree_of(MemoryNodeStore(), {"/a/b.txt": "hello"})
    f = t.lookup("/a/b.txt")
    assert isinstance(f, FileEntry)
    assert f.size == 5 and f.chunks == (chunk(b"hello"),) and f.hash == file_hash([chunk(b"hello")])
    assert t.lookup("a/b.txt") == f  # leading slash optional
    assert t.lookup("/a/b.txt/") == f
    assert t.lookup("/nope") is None
    assert t.lookup("/a/b.txt/x") is None


def test_list_dir_sorted_paginates_and_errors() -> None:
    t = tree_of(MemoryNodeStore(), {"/d/b": "", "/d/a-c": "", "/d/a/x": "", "/d/c": ""})
    assert [e.path for e in t.list_dir("/d")] == ["/d/a/", "/d/a-c", "/d/b", "/d/c"]
    assert [e.path for e in t.list_dir("/d", start_after="a-c")] == ["/d/b", "/d/c"]
    assert [e.path for e in t.list_dir("/d", start_after="/d/a/")] == ["/d/a-c", "/d/b", "/d/c"]
    assert [e.path for e in t.list_dir("/d/b")] == ["/d/b"]  # a file lists itself
    with pytest.raises(PathNotFound):
        list(t.list_dir("/missing"))


def test_delete_dir_and_last_file_removes_dir() -> None:
    s = MemoryNodeStore()
    t = tree_of(s, {"/d/x": "", "/d/sub/y": "", "/e": ""})
    t2 = apply(s, t, [DeletePath("/d/")])
    assert [e.path for e in t2.walk()] == ["/", "/e"]
    t3 = apply(s, t, [DeletePath("/d/sub/y")])
    assert [e.path for e in t3.walk()] == ["/", "/d/", "/d/x", "/e"]
    t4 = apply(s, t, [DeletePath("/")])
    assert t4.root is None and t4.hash() == T.EMPTY_HASH
    assert apply(s, t, [DeletePath("/e/under-a-file"), DeletePath("/missing")]).hash() == t.hash()


def test_collisions() -> None:
    s = MemoryNodeStore()
    t = tree_of(s, {"/foo": "", "/dir/x": ""})
    with pytest.raises(InvalidPath):
        apply(s, t, [put("/dir")])
    with pytest.raises(InvalidPath):
        apply(s, t, [put("/foo/bar")])
    with pytest.raises(InvalidPath):
        build(s, [put("/foo"), put("/foo/bar")])
    with pytest.raises(InvalidPath):
        apply(s, t, [AppendFile("/dir", 1, (chunk(b"x"),))])
    with pytest.raises(InvalidPath):
        apply(s, t, [put("/")])
    # Delete first, then the other kind is fine.
    t2 = apply(s, t, [DeletePath("/dir"), put("/dir")])
    assert isinstance(t2.lookup("/dir"), FileEntry)
    t3 = apply(s, t, [DeletePath("/foo"), put("/foo/bar")])
    assert isinstance(t3.lookup("/foo"), DirEntry)


def test_out_of_order_changes_rejected() -> None:
    s = MemoryNodeStore()
    with pytest.raises(ValueError):
        build(s, [put("/b"), put("/a")])
    with pytest.raises(ValueError):
        build(s, [put("/a-c"), put("/a/b")])
    with pytest.raises(InvalidPath):
        build(s, [put("/a//b")])


def test_same_path_changes_apply_in_order() -> None:
    s = MemoryNodeStore()
    t = build(s, [put("/x", "1"), put("/x", "2")])
    assert t.lookup("/x") == build(s, [put("/x", "2")]).lookup("/x")
    t2 = apply(s, t, [DeletePath("/x"), put("/x", "3")])
    assert t2.hash() == build(s, [put("/x", "3")]).hash()


def test_append() -> None:
    s = MemoryNodeStore()
    t = build(s, [put("/f", "ab", datum="d1")])
    t2 = apply(
        s, t, [AppendFile("/f", 2, (chunk(b"cd"),), "d2"), AppendFile("/g", 1, (chunk(b"g"),))]
    )
    f = t2.lookup("/f")
    assert isinstance(f, FileEntry)
    assert f.size == 4 and f.datum == "d2"
    assert f.chunks == (chunk(b"ab"), chunk(b"cd"))
    assert f.hash == file_hash([chunk(b"ab"), chunk(b"cd")])
    assert t2.lookup("/g") is not None


def test_large_chunk_lists_live_in_their_own_node() -> None:
    s = MemoryNodeStore()
    chunks = tuple(chunk(str(i).encode()) for i in range(T.INLINE_CHUNKS + 5))
    t = build(s, [PutFile("/big", 100, chunks)])
    f = t.lookup("/big")
    assert isinstance(f, FileEntry) and f.chunks is None
    assert t.chunks(f) == list(chunks)
    t2 = apply(s, t, [AppendFile("/big", 1, (chunk(b"z"),))])
    f2 = t2.lookup("/big")
    assert isinstance(f2, FileEntry)
    assert t2.chunks(f2) == list(chunks) + [chunk(b"z")] and f2.size == 101


def test_datum_is_part_of_the_hash() -> None:
    s = MemoryNodeStore()
    assert build(s, [put("/a", datum="x")]).hash() != build(s, [put("/a", datum="y")]).hash()
    f = build(s, [put("/a", datum="x")]).lookup("/a")
    assert isinstance(f, FileEntry) and f.datum == "x"


def test_diff_includes_parent_dirs_in_walk_order() -> None:
    s = MemoryNodeStore()
    empty = Tree(s, None)
    t1 = tree_of(s, {"/foo": "1"})
    pairs = [(n and n.path, o and o.path) for n, o in t1.diff(empty)]
    assert pairs == [("/", "/"), ("/foo", None)]
    t2 = tree_of(s, {"/a/b/c": "1", "/a/b/d": "1", "/a/e": "1", "/z": "1"})
    t3 = apply(s, t2, [put("/a/b/c", "changed"), DeletePath("/a/e"), put("/a/f/g")])
    pairs = [(n and n.path, o and o.path) for n, o in t3.diff(t2)]
    assert pairs == [
        ("/", "/"),
        ("/a/", "/a/"),
        ("/a/b/", "/a/b/"),
        ("/a/b/c", "/a/b/c"),
        (None, "/a/e"),
        ("/a/f/", None),
        ("/a/f/g", None),
    ]
    assert [(n and n.path, o and o.path) for n, o in t3.diff(t2, "/a/b")] == [
        ("/a/b/", "/a/b/"),
        ("/a/b/c", "/a/b/c"),
    ]
    assert list(t3.diff(t3)) == []
    # A file replaced by a directory.
    t4 = apply(s, t2, [DeletePath("/z"), put("/z/y")])
    assert [(n and n.path, o and o.path) for n, o in t4.diff(t2)] == [
        ("/", "/"),
        ("/z/", "/z"),
        ("/z/y", None),
    ]


def test_glob_prunes() -> None:
    s = CountingStore()
    t = tree_of(s, {"/a/x.txt": "", "/a/y.csv": "", "/b/x.txt": "", "/top.txt": ""})
    got = [e.path for e in t.glob(FnMatcher("/a/*.txt"))]
    assert got == ["/a/x.txt"]
    assert [e.path for e in t.glob(FnMatcher("/*"))] == ["/a/", "/b/", "/top.txt"]
    s.gets = 0
    list(t.glob(FnMatcher("/a/*")))
    assert s.gets == 2  # root page and /a's page; /b is never read


def test_glob_with_real_glob() -> None:
    glob = pytest.importorskip("pfs.glob")
    t = tree_of(MemoryNodeStore(), {"/a/x.txt": "", "/b/c/x.txt": ""})
    assert [e.path for e in t.glob(glob.compile_glob("/"))] == ["/"]
    assert [e.path for e in t.glob(glob.compile_glob("/**.txt"))] == ["/a/x.txt", "/b/c/x.txt"]


def test_refs_round_trip_as_lists() -> None:
    s = CountingStore()
    paths = {f"/d/{i:03d}": str(i) for i in range(60)}
    with small_pages(2):
        t = tree_of(s, paths)
        ref = msgpack.unpackb(msgpack.packb(t.root))  # comes back as a list
        t2 = Tree(s, ref)
        assert t2.hash() == t.hash()
        assert [e.path for e in t2.files()] == sorted(paths)
        t3 = apply(s, t2, [DeletePath("/d/010")])
        assert len(list(t3.files())) == 59


def test_nodes_carry_format_version() -> None:
    s = MemoryNodeStore()
    t = tree_of(s, {"/a": ""})
    for data in s.nodes.values():
        assert msgpack.unpackb(data)[0] == T.FORMAT_VERSION
    assert t.root is not None
    s.nodes[bytes(t.root)] = msgpack.packb([99, 0, []])
    with pytest.raises(Corruption):
        Tree(s, t.root).hash()


# --- properties -------------------------------------------------------------------

NAMES = st.sampled_from(["a", "b", "a-", "a0", "ab"])
PATHS = st.lists(NAMES, min_size=1, max_size=3).map(lambda cs: "/" + "/".join(cs))
CONTENT = st.sampled_from(["", "x", "yy", "zzz"])
DATUMS = st.sampled_from(["", "d1"])

Model = dict[str, tuple[tuple[str, ...], str]]
"""path -> (content of each chunk, datum)."""


def model_apply(files: Model, changes: list[Change]) -> None:
    """Reference semantics on a dict; raises InvalidPath like the tree."""
    for c in changes:
        p = c.path.rstrip("/") or "/"
        if isinstance(c, DeletePath):
            for q in [q for q in files if p == "/" or q == p or q.startswith(p + "/")]:
                del files[q]
            continue
        if p == "/" or any(q.startswith(p + "/") for q in files):
            raise InvalidPath(p, "a directory is there")
        parts = p.split("/")
        if any("/".join(parts[:i]) in files for i in range(2, len(parts))):
            raise InvalidPath(p, "below a file")
        pieces = tuple(ch[2] for ch in c.chunks)
        if isinstance(c, AppendFile) and p in files:
            pieces = files[p][0] + pieces
        files[p] = (pieces, c.datum)


def chunks_of(pieces: tuple[str, ...]) -> tuple[Any, ...]:
    # A 3rd element carries the content so the model can follow appends.
    return tuple((blake3.blake3(c.encode()).digest(), len(c), c) for c in pieces)


def change_for(kind: str, path: str, content: str, datum: str) -> Change:
    chunks = chunks_of((content,))
    if kind == "put":
        return PutFile(path, len(content), chunks, datum)
    if kind == "append":
        return AppendFile(path, len(content), chunks, datum)
    return DeletePath(path + ("/" if kind == "delete/" else ""))


CHANGES = st.lists(
    st.builds(
        change_for,
        st.sampled_from(["put", "append", "delete", "delete/"]),
        PATHS | st.just("/"),
        CONTENT,
        DATUMS,
    ),
    max_size=12,
)


def build_model(store: MemoryNodeStore, files: Model) -> Tree:
    return build(
        store,
        [
            PutFile(p, sum(map(len, pieces)), chunks_of(pieces), d)
            for p, (pieces, d) in sorted(files.items(), key=lambda kv: sort_key(kv[0]))
        ],
    )


def run_property(initial: list[str], changes: list[Change]) -> None:
    s = MemoryNodeStore()
    files: Model = {}
    try:
        model_apply(files, [change_for("put", p, "x", "") for p in initial])
    except InvalidPath:
        return  # initial set with collisions: not a valid tree
    base = build_model(s, files)
    changes = sorted(changes, key=lambda c: sort_key(c.path.rstrip("/") or "/"))  # stable
    expected = dict(files)
    try:
        model_apply(expected, changes)
    except InvalidPath:
        with pytest.raises(InvalidPath):
            apply(s, base, changes)
        return
    got = apply(s, base, changes)
    fresh = build_model(s, expected)
    assert got.hash() == fresh.hash()
    assert got.root == fresh.root  # same nodes, so the same refs too
    assert [(f.path, f.size, f.datum) for f in got.files()] == [
        (p, sum(map(len, pc)), d)
        for p, (pc, d) in sorted(expected.items(), key=lambda kv: sort_key(kv[0]))
    ]
    walked = [e.path for e in got.walk()]
    assert walked == sorted(walked, key=lambda p: sort_key(p.rstrip("/") or "/"))
    # Diff lists exactly the changed files, and only entries that really differ.
    changed = {p for p in set(files) | set(expected) if files.get(p) != expected.get(p)}
    pairs = list(got.diff(base))
    assert {e.path for pair in pairs for e in pair if isinstance(e, FileEntry)} == changed
    assert all(n != o for n, o in pairs)
    diff_paths = [(n or o).path for n, o in pairs]  # type: ignore[union-attr]
    assert diff_paths == sorted(diff_paths, key=lambda p: sort_key(p.rstrip("/") or "/"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(PATHS, max_size=15), CHANGES)
def test_property_incremental_equals_fresh(initial: list[str], changes: list[Change]) -> None:
    run_property(initial, changes)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(PATHS, max_size=15), CHANGES)
def test_property_incremental_equals_fresh_small_pages(
    initial: list[str], changes: list[Change]
) -> None:
    with small_pages(1):
        run_property(initial, changes)


FLAT_NAMES = st.integers(0, 400).map(lambda i: f"/f{i:03d}")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sets(FLAT_NAMES, max_size=300),
    st.lists(st.tuples(st.booleans(), FLAT_NAMES), max_size=20),
    st.integers(1, 3),
)
def test_property_paged_flat_dir(
    initial: set[str], edits: list[tuple[bool, str]], bits: int
) -> None:
    """Many pages and index levels: incremental result equals a fresh build."""
    with small_pages(bits):
        s = CountingStore()
        base = build(s, [put(p) for p in sorted(initial, key=sort_key)])
        model = set(initial)
        changes: list[Change] = []
        for is_put, p in sorted(edits, key=lambda e: sort_key(e[1])):
            changes.append(put(p) if is_put else DeletePath(p))
            (model.add if is_put else model.discard)(p)
        got = apply(s, base, changes)
        fresh = build(s, [put(p) for p in sorted(model, key=sort_key)])
        assert got.hash() == fresh.hash()
        assert msgpack.packb(got.root) == msgpack.packb(fresh.root)  # refs: tuple or list
        assert [e.path for e in got.list_dir()] == sorted(model)
        start = sorted(model)[len(model) // 2] if model else None
        assert [e.path for e in got.list_dir("/", start_after=start)] == [
            p for p in sorted(model) if start is None or p > start
        ]
        for p in list(model)[:5]:
            assert got.lookup(p) is not None
        diffed = {(n or o).path for n, o in got.diff(base)} - {"/"}  # type: ignore[union-attr]
        assert diffed == model ^ initial  # a re-put with the same content is no change


# --- scale -----------------------------------------------------------------------


@pytest.mark.slow
def test_scale_flat_directory() -> None:
    s = CountingStore()
    n = 200_000
    base = build(s, (put(f"/f{i:07d}", "x") for i in range(n)))
    assert base.lookup("/f0123456") is not None
    s.puts = 0
    t = apply(s, base, [put("/f0100000", "changed")])
    assert s.puts < 10, s.puts
    s.puts = 0
    t2 = apply(s, base, [put("/f0100000x", "new"), DeletePath("/f0150000")])
    assert s.puts < 12, s.puts
    s.gets = 0
    first = next(Tree(s, t.root).list_dir("/"))
    assert first.path == "/f0000000"
    assert s.gets <= 2, s.gets
    s.gets = 0
    pairs = [(n and n.path, o and o.path) for n, o in t2.diff(base)]
    assert pairs == [("/", "/"), ("/f0100000x", None), (None, "/f0150000")]
    assert s.gets < 20, s.gets  # diff reads only the pages that differ
    assert t.size() == base.size() + len("changed") - 1


def tree_height(s: MemoryNodeStore, ref: Any) -> int:
    node = T._load(s, ref)
    return 1 if node[1] == 0 else 1 + tree_height(s, node[3][0][4])


def test_paged_directory_update_reuses_nodes() -> None:
    with small_pages(2):
        s = CountingStore()
        names = [f"/d/{i:04d}" for i in range(2000)]
        base = build(s, (put(p) for p in names))
        d = base.lookup("/d")
        assert isinstance(d, DirEntry)
        dref = T._find(s, base.root, "d")[T._PAYLOAD]  # type: ignore[index]
        height = tree_height(s, dref)
        assert height >= 4
        written_fresh = s.puts
        for change in ([put("/d/1000", "new")], [DeletePath("/d/0999")], [put("/d/1000x")]):
            s.puts = 0
            t = apply(s, base, change)
            # Pages are ~4 entries and index nodes ~4 items here, so a carry may touch
            # a couple of nodes per level; nothing like the ~900 of a full rebuild.
            assert s.puts <= 3 * height + 3, (change, s.puts, written_fresh)
            expected = (
                sorted(set(names) - {"/d/0999"}) if isinstance(change[0], DeletePath) else None
            )
            if expected is not None:
                assert [e.path for e in t.list_dir("/d")] == expected


def test_shrinking_to_a_reused_one_item_tail_node() -> None:
    """The old tail index node holds one item and is all that is left: not the top."""
    with small_pages(1):
        for n in range(3, 300):
            s = MemoryNodeStore()
            names = [f"/{i:03d}" for i in range(n)]
            base = build(s, (put(p) for p in names))
            root = T._load(s, base.root)
            if root[1] != 1:
                continue
            last = root[3][-1]
            tail = T._load(s, last[4])
            if tail[1] == 1 and len(tail[3]) == 1:
                break
        else:
            pytest.fail("no tree with a one-item tail index node found")
        keep = [p for p in names if p[1:] >= last[0]]
        t = apply(s, base, [DeletePath(p) for p in names if p[1:] < last[0]])
        fresh = build(s, (put(p) for p in keep))
        assert msgpack.packb(t.root) == msgpack.packb(fresh.root)
        assert [e.path for e in t.list_dir()] == keep


def test_shrinking_a_paged_directory_to_one_page() -> None:
    with small_pages(1):
        s = MemoryNodeStore()
        names = [f"/{i:03d}" for i in range(200)]
        base = build(s, (put(p) for p in names))
        keep = names[-1]
        t = apply(s, base, [DeletePath(p) for p in names[:-1]])
        assert msgpack.packb(t.root) == msgpack.packb(build(s, [put(keep)]).root)
        assert T._load(s, t.root)[1] == 0  # a lone leaf page, not an index over it
