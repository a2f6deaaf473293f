"""A finished commit's immutable file index: a Merkle tree of content-addressed nodes.

A commit's content is a tree of directories and files, stored like git's trees: every
directory is a content-addressed node whose hash derives from its children, and a
directory's node is shared by every commit in which that directory did not change.
Large directories are split into *content-defined pages* (a prolly tree), so a flat
directory of a million files costs O(log n) new nodes to change, not one huge node.

The tree does not know where nodes live; it is given a :class:`NodeStore` (the real
one packs nodes into objects of the object store; :class:`MemoryNodeStore` is for
tests). Refs returned by the store are opaque and may come back from msgpack as lists
instead of tuples, so they are never compared by identity or type.

Node format (version 1)
=======================

Every node is one msgpack array whose first element is the format version
(:data:`FORMAT_VERSION`) and second the node kind:

* leaf page   ``[1, 0, entries]``; entry = ``[name, kind, size, hash, payload, datum]``
  where ``kind`` is 0 (file, ``payload`` = the inline chunk list, used when the file
  has at most :data:`INLINE_CHUNKS` chunks), 1 (file, ``payload`` = ref of a
  chunk-list node) or 2 (directory, ``payload`` = ref of the child directory's top
  node, ``datum`` = ``""``). ``hash`` is :func:`file_hash` for files and the child's
  directory hash for directories; ``size`` is the file size or the sum of the sizes
  of every file below the directory. Entries are sorted by name.
* index node  ``[1, 1, level, items]``; item = ``[first_name, count, size, hash, ref]``
  summarising one node of level ``level - 1`` (pages are level 0): the first entry
  name below it, the number of entries, the total size, its hash and its ref.
* chunk list  ``[1, 2, chunks]`` for files with more than :data:`INLINE_CHUNKS` chunks.

A directory is the sequence of its entries cut into pages by a content-defined rule:
an entry *ends* a page when ``blake3(b"\\x00" + name)`` has its low
:data:`BOUNDARY_BITS` bits zero (about 512 entries per page). If there are several
pages, their summaries are cut into index nodes the same way, one level up, with the
level number as the hash prefix, except that an index node never ends before it
holds :data:`INDEX_MIN_ITEMS` (512) items; this goes on until one node remains: that
node is the directory's top node (a leaf for a directory of one page). The minimum
makes index nodes wide (512 to ~1500 page summaries, ~50-130 KB): a directory of up
to ~260,000 entries has a single index node above its pages, so its first entry is
two reads away, and one of ~1,000,000 entries gets one more level; it also
guarantees that every level has fewer nodes than the one below. Where a node ends
depends only on the items since the node's start, and page boundaries only on
names, which is what makes the structure -- and so every hash -- a pure function of
the set of files.

Hashes (never including refs, which depend on the store):

* page hash  = blake3(msgpack(["P", [[name, is_dir, size, hash, datum], ...]]))
* index hash = blake3(msgpack(["I", level, [[first_name, count, size, hash], ...]]))
* a directory's hash is the hash of its top node; the empty directory (an empty
  tree) has the hash of an empty page, :data:`EMPTY_HASH`.

Because every node's hash covers its whole content, two subtrees with the same hash
are the same, and :meth:`Tree.diff` skips them without reading them.

Incremental update
==================

:func:`apply` merges a sorted stream of changes into a base tree, directory by
directory. Inside one directory it walks the old prolly tree from the left: a node
(page or index) whose key range holds no change is reused as-is (its ref and summary
are passed up without reading it) whenever the builder is at a node boundary at that
level; otherwise the node is read and its items are re-fed to the builder, so a
rebuilt page whose last entry is no longer a boundary carries its entries into the
next page. Writes are therefore O(k log n) for k changed files. :func:`build` is
:func:`apply` on an empty tree, which is also why incremental and from-scratch trees
are identical.

Limits: page sizes follow a geometric distribution, so they are bounded only
statistically; names crafted to avoid boundaries make one large page (correct, just
slower). A chunk list longer than :data:`INLINE_CHUNKS` is one node however long it
is, and appending to a file rewrites its whole chunk list.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import blake3
import msgpack

from pfs.errors import Corruption, InvalidPath, NotFound, ObjectNotFound

__all__ = [
    "BOUNDARY_BITS",
    "EMPTY_HASH",
    "FORMAT_VERSION",
    "INDEX_MIN_ITEMS",
    "INLINE_CHUNKS",
    "AppendFile",
    "Change",
    "ChunkRef",
    "DeletePath",
    "DirEntry",
    "FileEntry",
    "Matcher",
    "MemoryNodeStore",
    "NodeReader",
    "NodeRef",
    "NodeStore",
    "PathNotFound",
    "PutFile",
    "Tree",
    "apply",
    "build",
    "file_hash",
    "sort_key",
]

NodeRef = Any
"""Opaque, msgpack-serialisable reference to a stored node, chosen by the store."""

ChunkRef = Any
"""Opaque msgpack-able sequence: ``[0]`` is the chunk's 32-byte blake3 hash, ``[1]`` its size."""

FORMAT_VERSION = 1
"""Version of the node encoding; the first element of every node."""

INLINE_CHUNKS = 32
"""Files with at most this many chunks keep their chunk list inside their page."""

BOUNDARY_BITS = 9
"""An entry ends a page when this many low bits of its name hash are zero (~512/page)."""

INDEX_MIN_ITEMS = 512
"""An index node never ends before holding this many items (see the module docstring)."""

# Tests lower these to get many small pages and index levels from few entries;
# changing them changes the format (every hash), so production code never does.
_BOUNDARY_MASK = (1 << BOUNDARY_BITS) - 1
_INDEX_MIN = INDEX_MIN_ITEMS

_NODE_LEAF = 0
_NODE_INDEX = 1
_NODE_CHUNKS = 2

_K_FILE_INLINE = 0
_K_FILE_REF = 1
_K_DIR = 2

# Raw page entry positions.
_NAME, _KIND, _SIZE, _HASH, _PAYLOAD, _DATUM = range(6)

# Raw index item / node summary positions.
_FIRST, _COUNT, _ISIZE, _IHASH, _REF = range(5)

RawEntry = tuple[Any, ...]
"""A decoded page entry ``(name, kind, size, hash, payload, datum)``."""

Summary = tuple[Any, ...]
"""A node summary ``(first_name, count, size, hash, ref)``, as stored in index nodes."""


def _blake3(data: bytes) -> bytes:
    return blake3.blake3(data).digest()


def _page_hash(entries: Iterable[RawEntry]) -> bytes:
    material = [[e[_NAME], e[_KIND] == _K_DIR, e[_SIZE], e[_HASH], e[_DATUM]] for e in entries]
    return _blake3(msgpack.packb(["P", material]))


def _index_hash(level: int, items: Iterable[Summary]) -> bytes:
    material = [[it[_FIRST], it[_COUNT], it[_ISIZE], it[_IHASH]] for it in items]
    return _blake3(msgpack.packb(["I", level, material]))


EMPTY_HASH: bytes = _page_hash(())
"""Hash of the empty directory, i.e. of the empty tree."""


def file_hash(chunks: Iterable[ChunkRef]) -> bytes:
    """Return a file's content hash: blake3 over its chunks' 32-byte hashes, in order.

    Args:
        chunks: the file's chunk refs; element ``[0]`` of each is the chunk hash.

    Returns:
        32 bytes; ``blake3(b"")`` for an empty file.
    """
    if isinstance(chunks, (tuple, list)) and len(chunks) == 1:
        return _blake3(bytes(chunks[0][0]))  # the common one-chunk file, without a hasher
    h = blake3.blake3()
    for c in chunks:
        h.update(bytes(c[0]))
    return h.digest()


def sort_key(path: str) -> str:
    """Key that sorts absolute paths component-wise (``/a/b`` before ``/a-c``).

    Sorting by this key is the pre-order of the tree, so it is the order in which
    :func:`build` and :func:`apply` expect their input and :meth:`Tree.walk` yields.
    """
    return path.replace("/", "\x00")


def _is_boundary(level: int, name: str) -> bool:
    d = _blake3(bytes((level,)) + name.encode())
    return (d[0] | (d[1] << 8)) & _BOUNDARY_MASK == 0


# --- public data model --------------------------------------------------------


@dataclass(frozen=True)
class FileEntry:
    """A file in a tree.

    Attributes:
        path: absolute path, e.g. ``/a/b.txt``.
        size: size in bytes.
        hash: :func:`file_hash` of its chunks.
        chunks: the chunk list, or None when it lives in its own node (use
            :meth:`Tree.chunks`).
        datum: ID of the pipeline datum that wrote the file; ``""`` for user writes.
        chunks_ref: ref of the chunk-list node when ``chunks`` is None (internal).
    """

    path: str
    size: int
    hash: bytes
    chunks: tuple[ChunkRef, ...] | None
    datum: str = ""
    chunks_ref: NodeRef = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class DirEntry:
    """A directory in a tree (directories exist only through the files below them).

    Attributes:
        path: absolute path with a trailing slash, e.g. ``/a/``; the root is ``/``.
        size: sum of the sizes of every file below it.
        hash: Merkle hash over its children.
    """

    path: str
    size: int
    hash: bytes


Entry = FileEntry | DirEntry


@dataclass(frozen=True)
class PutFile:
    """Create or overwrite the file at ``path``; the tree computes its hash."""

    path: str
    size: int
    chunks: tuple[ChunkRef, ...]
    datum: str = ""


@dataclass(frozen=True)
class AppendFile:
    """Append chunks to the file at ``path`` (created if missing); datum is replaced."""

    path: str
    size: int
    chunks: tuple[ChunkRef, ...]
    datum: str = ""


@dataclass(frozen=True)
class DeletePath:
    """Delete a file, or a directory and everything below it (``/`` = everything).

    A missing path is a no-op. ``/dir`` and ``/dir/`` are the same.
    """

    path: str


Change = PutFile | AppendFile | DeletePath


class PathNotFound(NotFound):
    """Nothing (no file, no directory) exists at a path of a tree."""

    def __init__(self, path: str) -> None:
        super().__init__(f"path {path} not found (list its parent directory to see what exists)")
        self.path = path


# --- interfaces -------------------------------------------------------------


class NodeReader(Protocol):
    """Where tree nodes are read from: all a :class:`Tree` needs.

    ``get_node(ref)`` returns exactly the bytes stored under ``ref`` or raises
    (a :class:`pfs.errors.NotFound` subclass for a missing node).
    """

    def get_node(self, ref: NodeRef) -> bytes:
        """Return the bytes stored under ``ref``."""
        ...


class NodeStore(NodeReader, Protocol):
    """Where tree nodes live: a :class:`NodeReader` that can also store nodes, as
    :func:`apply` and :func:`build` need.

    Contract: ``put_node`` is content-addressed and idempotent (storing the same bytes
    twice may return equal refs, and must be safe); the returned ref is opaque and
    msgpack-serialisable, and may come back from msgpack as a list where it was a
    tuple. ``get_node(ref)`` returns exactly the bytes given to ``put_node`` or raises
    (a :class:`pfs.errors.NotFound` subclass for a missing node).
    """

    def put_node(self, data: bytes) -> NodeRef:
        """Store ``data``; return its ref."""
        ...


class Matcher(Protocol):
    """A path predicate used by :meth:`Tree.glob` (e.g. :class:`pfs.glob.Glob`)."""

    def match(self, path: str) -> bool | tuple[str, ...] | None:
        """Does ``path`` (``/a/b``, no trailing slash; the root is ``/``) match?

        Anything except None and False counts as a match, so a method returning
        capture groups (``()`` included) or None fits.
        """
        ...

    def may_match_under(self, dir_path: str) -> bool:
        """Could anything strictly under ``dir_path`` match? False prunes the walk."""
        ...


class MemoryNodeStore:
    """An in-memory :class:`NodeStore` for tests: ref = the 32-byte blake3 digest."""

    def __init__(self) -> None:
        self.nodes: dict[bytes, bytes] = {}

    def put_node(self, data: bytes) -> NodeRef:
        """Store ``data`` under its blake3 digest and return the digest."""
        ref = _blake3(data)
        self.nodes[ref] = data
        return ref

    def get_node(self, ref: NodeRef) -> bytes:
        """Return the node stored under ``ref``; ObjectNotFound if there is none."""
        try:
            return self.nodes[bytes(ref)]
        except KeyError:
            raise ObjectNotFound(bytes(ref).hex()) from None


# --- paths ------------------------------------------------------------------


def _norm(path: str) -> str:
    """Normalise a path: leading ``/``, no trailing ``/`` (except the root)."""
    # Fast path for the common, already-clean path: this runs once per change.
    if (
        path.startswith("/")
        and not path.endswith("/")
        and "//" not in path
        and "/." not in path
        and "\x00" not in path
    ):
        return path
    if not path.startswith("/"):
        path = "/" + path
    if len(path) > 1:
        path = path.rstrip("/") or "/"
    if "\x00" in path:
        raise InvalidPath(path, "paths cannot contain NUL characters")
    if path != "/":
        for comp in path[1:].split("/"):
            if comp in ("", ".", ".."):
                raise InvalidPath(path, "paths cannot contain empty, '.' or '..' components")
    return path


def _split(path: str) -> list[str]:
    return [] if path == "/" else path[1:].split("/")


# --- node encoding ------------------------------------------------------------


#: Decoded nodes kept, by digest (nodes are content-addressed and immutable,
#: so one node decoded once serves every tree and store that holds it). A
#: worker looks up one path per datum: the same few index nodes and pages.
_DECODED_MAX = 256
_decoded: OrderedDict[bytes, tuple[Any, ...]] = OrderedDict()
_decoded_lock = threading.Lock()


def _digest_of(ref: NodeRef) -> bytes | None:
    if isinstance(ref, bytes):
        return ref
    if isinstance(ref, (tuple, list)) and ref and isinstance(ref[0], bytes):
        return ref[0]
    return None


def _load(store: NodeReader, ref: NodeRef) -> tuple[Any, ...]:
    key = _digest_of(ref)
    if key is not None:
        with _decoded_lock:
            hit = _decoded.get(key)
            if hit is not None:
                _decoded.move_to_end(key)
                return hit
    # use_list=False: every array comes back as a tuple, so entries, chunk refs and
    # node refs compare equal however they were produced.
    node = msgpack.unpackb(store.get_node(ref), use_list=False, raw=False)
    if not isinstance(node, tuple) or len(node) < 3 or node[0] != FORMAT_VERSION:
        version = node[0] if isinstance(node, tuple) and node else None
        raise Corruption(
            f"tree node has unsupported format version {version!r} "
            f"(this tusk reads version {FORMAT_VERSION}); upgrade tusk"
        )
    if key is not None:
        with _decoded_lock:
            _decoded[key] = node
            if len(_decoded) > _DECODED_MAX:
                _decoded.popitem(last=False)
    return node


def _summarize(node: tuple[Any, ...], ref: NodeRef) -> Summary:
    """Summary of a loaded leaf or index node."""
    if node[1] == _NODE_LEAF:
        entries = node[2]
        first = entries[0][_NAME] if entries else ""
        return (first, len(entries), sum(e[_SIZE] for e in entries), _page_hash(entries), ref)
    items = node[3]
    return (
        items[0][_FIRST],
        sum(it[_COUNT] for it in items),
        sum(it[_ISIZE] for it in items),
        _index_hash(node[2], items),
        ref,
    )


def _chunk_ref_tuple(c: ChunkRef) -> ChunkRef:
    h = c[0]
    if not isinstance(h, (bytes, bytearray)) or len(h) != 32:
        raise ValueError(f"chunk ref {c!r}: element [0] must be a 32-byte hash")
    return tuple(c)


# --- building directories -----------------------------------------------------


class _Level:
    __slots__ = ("count", "pending")

    def __init__(self) -> None:
        self.pending: list[Any] = []  # items of the node being filled
        self.count = 0  # nodes closed at this level (written or reused)


class _DirBuilder:
    """Cuts one directory's entry stream into pages and index nodes, bottom-up."""

    def __init__(self, store: NodeStore) -> None:
        self._store = store
        self._levels: list[_Level] = [_Level()]
        self._reused: Summary | None = None  # last node reused from the old tree

    def _level(self, level: int) -> _Level:
        while len(self._levels) <= level:
            self._levels.append(_Level())
        return self._levels[level]

    def empty_upto(self, level: int) -> bool:
        """True if no level <= ``level`` has pending items (all are at a boundary)."""
        top = min(level, len(self._levels) - 1)
        return all(not self._levels[i].pending for i in range(top + 1))

    def add_entry(self, entry: RawEntry) -> None:
        """Append a page entry (entries must come in name order)."""
        lvl = self._levels[0]
        lvl.pending.append(entry)
        if _is_boundary(0, entry[_NAME]):
            self._write(0)

    def _add_item(self, level: int, item: Summary) -> None:
        lvl = self._level(level)
        lvl.pending.append(item)
        if len(lvl.pending) >= _INDEX_MIN and _is_boundary(level, item[_FIRST]):
            self._write(level)

    def _write(self, level: int) -> None:
        lvl = self._levels[level]
        items, lvl.pending = lvl.pending, []
        if level == 0:
            ref = self._store.put_node(msgpack.packb([FORMAT_VERSION, _NODE_LEAF, items]))
            summary: Summary = (
                items[0][_NAME],
                len(items),
                sum(e[_SIZE] for e in items),
                _page_hash(items),
                ref,
            )
        else:
            ref = self._store.put_node(msgpack.packb([FORMAT_VERSION, _NODE_INDEX, level, items]))
            summary = (
                items[0][_FIRST],
                sum(it[_COUNT] for it in items),
                sum(it[_ISIZE] for it in items),
                _index_hash(level, items),
                ref,
            )
        self.close_node(level, summary)

    def close_node(self, level: int, summary: Summary) -> None:
        """Record a finished node of ``level`` (written, or reused from the old tree).

        The node goes straight up as an item of ``level + 1``. That never writes a
        useless one-item index node: index nodes only end early after two items, and
        :meth:`finish` takes a lone item as the top instead of writing its parent.
        """
        self._level(level).count += 1
        self._add_item(level + 1, summary)

    def reuse_node(self, level: int, summary: Summary) -> None:
        """Pass up an old node unchanged; the caller checked ``empty_upto(level)``.

        Feeding its items would rebuild the very same node: the builder is at a node
        boundary, and where a node ends depends only on the items since its start.
        """
        self._reused = summary
        self.close_node(level, summary)

    def _nothing_above(self, level: int) -> bool:
        """True if every item is in the pending list of ``level`` or below."""
        return all(
            lvl.count == 0 and (i <= level or not lvl.pending)
            for i, lvl in enumerate(self._levels)
            if i >= level
        )

    def finish(self) -> Summary | None:
        """Flush every level; return the directory's top node summary (None if empty)."""
        level = 0
        while True:
            lvl = self._level(level)
            if lvl.pending:
                self._write(level)
            # Everything is now in nodes closed at `level` or above.
            up = self._level(level + 1)
            if self._nothing_above(level + 1):
                if not up.pending:
                    return None
                if len(up.pending) == 1:
                    top: Summary = up.pending[0]
                    return self._lone_top(top) if top is self._reused and level >= 1 else top
            level += 1

    def _lone_top(self, top: Summary) -> Summary:
        # A reused tail index node can hold a single item; when it ends up as the top,
        # a fresh build would have stopped one level lower, so step down into it.
        # (Nodes written here never do: finish() returns a lone item instead of
        # writing its parent.) Identity above is on our own summary tuple, not a ref.
        while True:
            node = _load(self._store, top[_REF])
            if node[1] != _NODE_INDEX or len(node[3]) != 1:
                return top
            top = node[3][0]


# --- applying changes -----------------------------------------------------------


class _Changes:
    """A peekable change stream that normalises paths and checks the order."""

    def __init__(self, changes: Iterable[Change]) -> None:
        self._it = iter(changes)
        self._last_key: str | None = None
        self._last_path = ""
        self.head: Change | None = None
        self.path = ""  # normalised path of head
        self.pop()

    def pop(self) -> None:
        """Advance to the next change (head None at the end)."""
        nxt = next(self._it, None)
        if nxt is None:
            self.head = None
            return
        if not isinstance(nxt, (PutFile, AppendFile, DeletePath)):
            raise TypeError(f"not a tree change: {nxt!r}")
        path = _norm(nxt.path)
        key = sort_key(path)
        if self._last_key is not None and key < self._last_key:
            raise ValueError(
                f"changes must be sorted by sort_key(path): {path!r} came after "
                f"{self._last_path!r}; sort them (stably) with pfs.tree.sort_key"
            )
        self._last_key = key
        self._last_path = path
        self.head = nxt
        self.path = path

    def child(self, prefix: str) -> str | None:
        """Name of the child of directory ``prefix`` the head change falls under."""
        if self.head is None or not self.path.startswith(prefix) or self.path == "/":
            return None
        rest = self.path[len(prefix) :]
        i = rest.find("/")
        return rest if i < 0 else rest[:i]


def _collision(path: str, what: str) -> InvalidPath:
    return InvalidPath(
        path,
        f"file / directory path collision: {what}; delete the existing path first",
    )


class _Applier:
    def __init__(self, store: NodeStore, changes: _Changes) -> None:
        self.store = store
        self.cs = changes

    def file_entry(
        self, name: str, size: int, chunks: tuple[ChunkRef, ...], datum: str
    ) -> RawEntry:
        h = file_hash(chunks)
        if len(chunks) <= INLINE_CHUNKS:
            return (name, _K_FILE_INLINE, size, h, chunks, datum)
        ref = self.store.put_node(msgpack.packb([FORMAT_VERSION, _NODE_CHUNKS, chunks]))
        return (name, _K_FILE_REF, size, h, ref, datum)

    def old_chunks(self, entry: RawEntry) -> tuple[ChunkRef, ...]:
        if entry[_KIND] == _K_FILE_INLINE:
            return tuple(entry[_PAYLOAD])
        return tuple(_load(self.store, entry[_PAYLOAD])[2])

    def apply_dir(self, old_ref: NodeRef | None, prefix: str) -> Summary | None:
        """Apply every head change under ``prefix`` to the directory at ``old_ref``."""
        b = _DirBuilder(self.store)
        if old_ref is None:
            self.merge_page(b, (), prefix, None)
        else:
            node = _load(self.store, old_ref)
            self.merge_node(b, node, prefix, None)
        return b.finish()

    def merge_node(
        self, b: _DirBuilder, node: tuple[Any, ...], prefix: str, hi: str | None
    ) -> None:
        """Re-feed an old node's content, merged with the changes below ``hi``."""
        if node[1] == _NODE_LEAF:
            self.merge_page(b, node[2], prefix, hi)
            return
        level = node[2] - 1  # level of the items
        items = node[3]
        for i, item in enumerate(items):
            item_hi = items[i + 1][_FIRST] if i + 1 < len(items) else hi
            k = self.cs.child(prefix)
            untouched = k is None or (item_hi is not None and k >= item_hi)
            if untouched and b.empty_upto(level):
                b.reuse_node(level, item)
            else:
                self.merge_node(b, _load(self.store, item[_REF]), prefix, item_hi)

    def merge_page(
        self, b: _DirBuilder, entries: tuple[RawEntry, ...], prefix: str, hi: str | None
    ) -> None:
        i, n = 0, len(entries)
        while True:
            k = self.cs.child(prefix)
            if k is None or (hi is not None and k >= hi):
                break
            while i < n and entries[i][_NAME] < k:
                b.add_entry(entries[i])
                i += 1
            old = None
            if i < n and entries[i][_NAME] == k:
                old = entries[i]
                i += 1
            new = self.apply_child(old, prefix, k)
            if new is not None:
                b.add_entry(new)
        while i < n:
            b.add_entry(entries[i])
            i += 1

    def apply_child(self, state: RawEntry | None, prefix: str, name: str) -> RawEntry | None:
        """Apply the head changes for ``prefix + name`` (itself, then below it)."""
        cs = self.cs
        path = prefix + name
        # Changes to the path itself sort before changes below it.
        while cs.head is not None and cs.path == path:
            ch = cs.head
            if isinstance(ch, DeletePath):
                state = None
            else:
                if state is not None and state[_KIND] == _K_DIR:
                    raise _collision(path, f"{path} is a directory")
                chunks = tuple(_chunk_ref_tuple(c) for c in ch.chunks)
                size = ch.size
                if isinstance(ch, AppendFile) and state is not None:
                    chunks = self.old_chunks(state) + chunks
                    size += state[_SIZE]
                state = self.file_entry(name, size, chunks, ch.datum)
            cs.pop()
        below = path + "/"
        if state is not None and state[_KIND] != _K_DIR:
            # Nothing can exist below a file: deletions there are no-ops, writes collide.
            while cs.head is not None and cs.path.startswith(below):
                if not isinstance(cs.head, DeletePath):
                    raise _collision(cs.path, f"{path} is a file")
                cs.pop()
            return state
        if cs.head is None or not cs.path.startswith(below):
            return state
        old_ref = state[_PAYLOAD] if state is not None else None
        top = self.apply_dir(old_ref, below)
        if top is None:
            return None
        return (name, _K_DIR, top[_ISIZE], top[_IHASH], top[_REF], "")


def apply(store: NodeStore, base: Tree, changes: Iterable[Change]) -> Tree:
    """Return a new tree: ``base`` with ``changes`` applied, in order, streaming.

    Only the nodes on the paths to changed entries are written; everything else is
    shared with ``base``. The result is identical (same root ref and hash) to
    :func:`build` over the resulting set of files.

    Args:
        store: where new nodes are written (and ``base``'s nodes are read).
        base: the tree to start from.
        changes: sorted by ``sort_key(path)`` (with ``/dir/`` counted as ``/dir``);
            changes to the same path are applied in the order given, so a caller
            that sorts must sort stably. The stream is consumed lazily.

    Returns:
        The new tree.

    Raises:
        ValueError: the changes are not sorted.
        pfs.errors.InvalidPath: a path is malformed, or a file would be put where a
            directory is or below a file.
    """
    cs = _Changes(changes)
    root: NodeRef | None = base.root
    while cs.head is not None and cs.path == "/":
        if not isinstance(cs.head, DeletePath):
            raise InvalidPath("/", "the root is a directory; a file cannot be written there")
        root = None
        cs.pop()
    top = _Applier(store, cs).apply_dir(root, "/")
    return Tree(store, None if top is None else top[_REF])


def build(store: NodeStore, entries: Iterable[PutFile]) -> Tree:
    """Build a tree from a stream of files sorted by ``sort_key(path)``, streaming.

    A later entry for the same path overwrites an earlier one.

    Raises:
        ValueError: the stream is not sorted.
        pfs.errors.InvalidPath: a path is malformed, or files collide with directories.
    """
    return apply(store, Tree(store, None), entries)


# --- reading ------------------------------------------------------------------


def _iter_node(store: NodeReader, ref: NodeRef, start_after: str | None) -> Iterator[RawEntry]:
    """Entries of the directory whose top node is ``ref``, names > ``start_after``."""
    node = _load(store, ref)
    if node[1] == _NODE_LEAF:
        entries = node[2]
        i = (
            0
            if start_after is None
            else bisect.bisect_right(entries, start_after, key=lambda e: e[_NAME])
        )
        yield from entries[i:]
        return
    items = node[3]
    j = 0
    if start_after is not None:
        j = max(0, bisect.bisect_right(items, start_after, key=lambda it: it[_FIRST]) - 1)
    for k in range(j, len(items)):
        yield from _iter_node(store, items[k][_REF], start_after if k == j else None)


def _find(store: NodeReader, ref: NodeRef, name: str) -> RawEntry | None:
    node = _load(store, ref)
    while node[1] == _NODE_INDEX:
        items = node[3]
        j = bisect.bisect_right(items, name, key=lambda it: it[_FIRST]) - 1
        if j < 0:
            return None
        node = _load(store, items[j][_REF])
    entries = node[2]
    i = bisect.bisect_left(entries, name, key=lambda e: e[_NAME])
    if i < len(entries) and entries[i][_NAME] == name:
        return entries[i]  # type: ignore[no-any-return]
    return None


class _Cursor:
    """Position in one directory's prolly tree that can step over whole subtrees.

    ``peek`` returns ``(level, item)``: ``level`` -1 for a page entry, otherwise the
    level of the node the summary ``item`` stands for.
    """

    def __init__(self, store: NodeReader, ref: NodeRef | None) -> None:
        self._store = store
        self._frames: list[list[Any]] = []  # [items, index, level of items]
        if ref is not None:
            self._push(ref)

    def _push(self, ref: NodeRef) -> None:
        node = _load(self._store, ref)
        if node[1] == _NODE_LEAF:
            self._frames.append([node[2], 0, -1])
        else:
            self._frames.append([node[3], 0, node[2] - 1])
        self._settle()

    def _settle(self) -> None:
        while self._frames and self._frames[-1][1] >= len(self._frames[-1][0]):
            self._frames.pop()

    def peek(self) -> tuple[int, Any] | None:
        if not self._frames:
            return None
        items, i, level = self._frames[-1]
        return level, items[i]

    def skip(self) -> None:
        self._frames[-1][1] += 1
        self._settle()

    def descend(self) -> None:
        items, i, _ = self._frames[-1]
        self._frames[-1][1] += 1
        self._settle()
        self._push(items[i][_REF])


def _same(a: RawEntry, b: RawEntry) -> bool:
    return bool(
        (a[_KIND] == _K_DIR) == (b[_KIND] == _K_DIR)
        and a[_SIZE] == b[_SIZE]
        and a[_HASH] == b[_HASH]
        and a[_DATUM] == b[_DATUM]
    )


class Tree:
    """An immutable file index, read lazily from a :class:`NodeReader` (such as
    a :class:`NodeStore`).

    Attributes:
        store: where the nodes live.
        root: ref of the root directory's top node; None for the empty tree.
    """

    def __init__(self, store: NodeReader, root: NodeRef | None) -> None:
        self.store = store
        self.root = root
        self._root_summary: Summary | None = None

    # -- root ------------------------------------------------------------------

    def _summary(self) -> Summary:
        if self._root_summary is None:
            if self.root is None:
                self._root_summary = ("", 0, 0, EMPTY_HASH, None)
            else:
                self._root_summary = _summarize(_load(self.store, self.root), self.root)
        return self._root_summary

    def hash(self) -> bytes:
        """Hash of the root directory; :data:`EMPTY_HASH` for the empty tree."""
        return bytes(self._summary()[_IHASH])

    def size(self) -> int:
        """Total size of every file in the tree."""
        return int(self._summary()[_ISIZE])

    def _root_entry(self) -> DirEntry:
        return DirEntry("/", self.size(), self.hash())

    # -- lookups ---------------------------------------------------------------

    def _raw(self, path: str) -> RawEntry | None:
        """Raw entry at a normalised, non-root path, or None."""
        ref = self.root
        parts = _split(path)
        for i, name in enumerate(parts):
            if ref is None:
                return None
            e = _find(self.store, ref, name)
            if e is None:
                return None
            if i == len(parts) - 1:
                return e
            if e[_KIND] != _K_DIR:
                return None
            ref = e[_PAYLOAD]
        return None

    @staticmethod
    def _public(prefix: str, e: RawEntry) -> Entry:
        if e[_KIND] == _K_DIR:
            return DirEntry(prefix + e[_NAME] + "/", e[_SIZE], e[_HASH])
        if e[_KIND] == _K_FILE_INLINE:
            return FileEntry(prefix + e[_NAME], e[_SIZE], e[_HASH], e[_PAYLOAD], e[_DATUM])
        return FileEntry(prefix + e[_NAME], e[_SIZE], e[_HASH], None, e[_DATUM], e[_PAYLOAD])

    @staticmethod
    def _parent_prefix(path: str) -> str:
        return path[: path.rfind("/") + 1]

    def lookup(self, path: str) -> Entry | None:
        """Return the file or directory at ``path``, or None.

        ``/`` always returns the root :class:`DirEntry` (size 0 for the empty tree).
        """
        path = _norm(path)
        if path == "/":
            return self._root_entry()
        e = self._raw(path)
        return None if e is None else self._public(self._parent_prefix(path), e)

    def list_dir(self, path: str = "/", start_after: str | None = None) -> Iterator[Entry]:
        """Yield the immediate children of a directory, sorted by name, lazily.

        Reads one node per prolly-tree level before the first entry, whatever the
        directory's size. For a file path, yields just that file (as Pachyderm does).

        Args:
            path: the directory.
            start_after: resume after this child (a name, or a full path whose last
                component is used), for pagination.

        Raises:
            PathNotFound: nothing exists at ``path`` (the root always exists).
        """
        path = _norm(path)
        if start_after is not None:
            start_after = start_after.rstrip("/").rsplit("/", 1)[-1]
        if path == "/":
            if self.root is not None:
                for e in _iter_node(self.store, self.root, start_after):
                    yield self._public("/", e)
            return
        found = self._raw(path)
        if found is None:
            raise PathNotFound(path)
        if found[_KIND] != _K_DIR:
            yield self._public(self._parent_prefix(path), found)
            return
        prefix = path + "/"
        for c in _iter_node(self.store, found[_PAYLOAD], start_after):
            yield self._public(prefix, c)

    def _walk_children(self, ref: NodeRef | None, prefix: str) -> Iterator[Entry]:
        if ref is None:
            return
        for e in _iter_node(self.store, ref, None):
            yield self._public(prefix, e)
            if e[_KIND] == _K_DIR:
                yield from self._walk_children(e[_PAYLOAD], prefix + e[_NAME] + "/")

    def walk(self, path: str = "/") -> Iterator[Entry]:
        """Yield the entry at ``path`` and everything below it, in pre-order.

        Children are visited in name order, so the order is that of
        ``sort_key``: ``/``, ``/dir/``, ``/dir/bar``, ``/dir/dir2/``, ``/dir/dir2/buzz``,
        ``/foo``. A missing path yields nothing.
        """
        path = _norm(path)
        if path == "/":
            yield self._root_entry()
            yield from self._walk_children(self.root, "/")
            return
        e = self._raw(path)
        if e is None:
            return
        yield self._public(self._parent_prefix(path), e)
        if e[_KIND] == _K_DIR:
            yield from self._walk_children(e[_PAYLOAD], path + "/")

    def files(self, path: str = "/") -> Iterator[FileEntry]:
        """Yield the files at or below ``path``, sorted by ``sort_key``."""
        for e in self.walk(path):
            if isinstance(e, FileEntry):
                yield e

    def files_in_byte_order(self, path: str = "/", start_after: str = "") -> Iterator[FileEntry]:
        """Yield the files at or below directory ``path`` in plain string order
        of their full paths (``/a-c`` before ``/a/b``, unlike :meth:`walk`),
        strictly after the full path ``start_after`` (``""``: from the first).

        Lazy and seeking: the first file costs O(depth x (log n + len of a
        name)) node reads whatever comes before ``start_after``, so a caller
        can page through a directory of millions of files a page at a time.
        """
        path = _norm(path)
        if path == "/":
            ref: NodeRef | None = self.root
            prefix = "/"
        else:
            e = self._raw(path)
            if e is None:
                return
            if e[_KIND] != _K_DIR:
                if start_after < path:
                    yield self._public(self._parent_prefix(path), e)  # type: ignore[misc]
                return
            ref, prefix = e[_PAYLOAD], path + "/"
        if ref is None:
            return
        if start_after and not start_after.startswith(prefix):
            if start_after >= prefix:
                return  # every path below comes before it
            start_after = ""
        yield from self._byte_order(ref, prefix, start_after[len(prefix):] if start_after else None)

    def _byte_order(self, ref: NodeRef, prefix: str, after: str | None) -> Iterator[FileEntry]:
        """Files below the directory node ``ref`` (paths ``prefix + rel``) in
        string order, with ``rel > after`` (``None``: all).

        Children come in name order; a directory ``d`` sorts as ``d/``, which
        may come after siblings ``d-x``, ``d.txt`` (characters below ``/``).
        A heap holds entries until no later sibling can sort before them:
        every later name is >= the current one, and an entry's sort key is
        >= its name.
        """
        heap: list[tuple[str, int, RawEntry, str | None]] = []
        stream: Iterator[RawEntry]
        c_name, c_after = "", None
        if after is None:
            stream = _iter_node(self.store, ref, None)
        else:
            c, slash, rest = after.partition("/")
            sub_after = rest if slash else None
            first: list[RawEntry] = []
            # Directories whose name is a proper prefix of c: their files
            # (n + "/...") sort after ``after`` iff "/" > the char of c after n.
            for k in range(1, len(c)):
                if c[k] > "/":
                    continue
                e = _find(self.store, ref, c[:k])
                if e is not None and e[_KIND] == _K_DIR:
                    first.append(e)
            e = _find(self.store, ref, c)
            if e is not None and e[_KIND] == _K_DIR:
                first.append(e)
            stream_rest = _iter_node(self.store, ref, c)
            if sub_after is not None:
                # Names c + t with t[0] < "/" sort before c + "/" + rest: drop them.
                stream_rest = (x for x in stream_rest
                               if not (x[_NAME].startswith(c) and x[_NAME][len(c)] < "/"))
            stream = itertools.chain(first, stream_rest)
            c_name, c_after = c, sub_after
        seq = 0

        def emit(item: tuple[str, int, RawEntry, str | None]) -> Iterator[FileEntry]:
            _, _, e, sub = item
            if e[_KIND] == _K_DIR:
                yield from self._byte_order(e[_PAYLOAD], prefix + e[_NAME] + "/", sub)
            else:
                yield self._public(prefix, e)  # type: ignore[misc]

        for e in stream:
            name = e[_NAME]
            while heap and heap[0][0] < name:
                yield from emit(heapq.heappop(heap))
            sub = None
            if after is not None and name == c_name and e[_KIND] == _K_DIR:
                sub = c_after
            key = name + "/" if e[_KIND] == _K_DIR else name
            seq += 1
            heapq.heappush(heap, (key, seq, e, sub))
        while heap:
            yield from emit(heapq.heappop(heap))

    def glob(self, matcher: Matcher) -> Iterator[Entry]:
        """Yield every file and directory that ``matcher`` matches, in walk order.

        Subtrees under a directory for which ``matcher.may_match_under`` is False
        are not read.
        """

        def hit(path: str) -> bool:
            r = matcher.match(path)
            return r is not None and r is not False

        if hit("/"):
            yield self._root_entry()
        if self.root is None or not matcher.may_match_under("/"):
            return
        yield from self._glob_dir(self.root, "/", matcher, hit)

    def _glob_dir(
        self, ref: NodeRef, prefix: str, matcher: Matcher, hit: Callable[[str], bool]
    ) -> Iterator[Entry]:
        for e in _iter_node(self.store, ref, None):
            path = prefix + e[_NAME]
            if hit(path):
                yield self._public(prefix, e)
            if e[_KIND] == _K_DIR and matcher.may_match_under(path):
                yield from self._glob_dir(e[_PAYLOAD], path + "/", matcher, hit)

    def chunks(self, entry: FileEntry) -> list[ChunkRef]:
        """Return a file's chunk list, reading its chunk-list node if needed."""
        if entry.chunks is not None:
            return list(entry.chunks)
        if entry.chunks_ref is None:
            raise ValueError(f"{entry.path}: entry carries neither chunks nor a chunk-list ref")
        return list(_load(self.store, entry.chunks_ref)[2])

    # -- diff ------------------------------------------------------------------

    def _locate(self, path: str) -> tuple[Entry, RawEntry | None] | None:
        """Public entry and raw entry (None for the root) at a normalised path."""
        if path == "/":
            return self._root_entry(), None
        e = self._raw(path)
        return None if e is None else (self._public(self._parent_prefix(path), e), e)

    def diff(self, old: Tree, path: str = "/") -> Iterator[tuple[Entry | None, Entry | None]]:
        """Yield ``(new, old)`` for every entry at or below ``path`` that differs.

        Added entries come as ``(new, None)``, removed ones as ``(None, old)``,
        changed ones (including every directory above a change, whose hash changed)
        with both sides. Pairs come in walk order. Subtrees -- directories and pages
        of large directories -- with equal hashes are skipped without being read.
        The root exists in every tree, so a diff at ``/`` that is not empty starts
        with the pair of roots.
        """
        path = _norm(path)
        new_side = self._locate(path)
        old_side = old._locate(path)
        if new_side is None and old_side is None:
            return
        prefix = self._parent_prefix(path) if path != "/" else ""
        if path == "/":
            assert new_side is not None and old_side is not None
            if new_side[0].hash == old_side[0].hash:
                return
            yield new_side[0], old_side[0]
            yield from self._diff_dirs(old, self.root, old.root, "/")
            return
        ne = new_side[1] if new_side is not None else None
        oe = old_side[1] if old_side is not None else None
        yield from self._diff_entries(old, ne, oe, prefix)

    def _diff_entries(
        self, old: Tree, ne: RawEntry | None, oe: RawEntry | None, prefix: str
    ) -> Iterator[tuple[Entry | None, Entry | None]]:
        if ne is not None and oe is not None and _same(ne, oe):
            return
        yield (
            None if ne is None else self._public(prefix, ne),
            None if oe is None else old._public(prefix, oe),
        )
        name = (ne if ne is not None else oe)[_NAME]  # type: ignore[index]
        sub = prefix + name + "/"
        nref = ne[_PAYLOAD] if ne is not None and ne[_KIND] == _K_DIR else None
        oref = oe[_PAYLOAD] if oe is not None and oe[_KIND] == _K_DIR else None
        if nref is not None or oref is not None:
            yield from self._diff_dirs(old, nref, oref, sub)

    def _diff_dirs(
        self, old: Tree, nref: NodeRef | None, oref: NodeRef | None, prefix: str
    ) -> Iterator[tuple[Entry | None, Entry | None]]:
        a, b = _Cursor(self.store, nref), _Cursor(old.store, oref)
        while True:
            pa, pb = a.peek(), b.peek()
            if pa is None and pb is None:
                return
            la = pa[0] if pa is not None else -2
            lb = pb[0] if pb is not None else -2
            if (
                pa is not None
                and pb is not None
                and la >= 0
                and la == lb
                and pa[1][_IHASH] == pb[1][_IHASH]
            ):
                # Same hash, same entries: both cursors stand at the same names.
                a.skip()
                b.skip()
                continue
            if la >= 0 or lb >= 0:
                if la >= lb:
                    a.descend()
                else:
                    b.descend()
                continue
            ne = pa[1] if pa is not None else None
            oe = pb[1] if pb is not None else None
            if ne is not None and oe is not None:
                if ne[_NAME] < oe[_NAME]:
                    oe = None
                elif oe[_NAME] < ne[_NAME]:
                    ne = None
            if ne is not None:
                a.skip()
            if oe is not None:
                b.skip()
            yield from self._diff_entries(old, ne, oe, prefix)
