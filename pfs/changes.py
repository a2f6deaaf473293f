"""Pending changes of a commit: buffered, spilled as sorted layers, merged.

One upload (``put file`` invocation) produces a *run* of changes. A run is
kept in memory until it holds ``SPILL_AT`` changes, then written, sorted, as
a *layer* object (``layers/<uuid>``), so memory stays bounded however many
files are uploaded. An open commit is its parent's tree plus its layers in
order; finishing applies :func:`merge_layers` of all of them to the parent's
tree (``pfs.tree.apply``).

Ordering rule: applying a layer's changes in sorted order (``sort_key``) must
give the same result as applying them in the order they were made. A run
ensures this by dropping buffered changes under a path when that path is
deleted later in the run. Across layers, :func:`merge_layers` keeps a later
layer's delete from being undone by an earlier layer's put under it.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Iterable, Iterator, Sequence

import msgpack

from pfs.blobs import as_ref
from pfs.objects import ObjectStore
from pfs.tree import AppendFile, Change, DeletePath, PutFile, sort_key

SPILL_AT = 100_000

_PUT, _APPEND, _DELETE = 0, 1, 2


def encode_change(c: Change) -> list[object]:
    if isinstance(c, PutFile):
        return [_PUT, c.path, c.size, [list(r) for r in c.chunks], c.datum]
    if isinstance(c, AppendFile):
        return [_APPEND, c.path, c.size, [list(r) for r in c.chunks], c.datum]
    return [_DELETE, c.path]


def decode_change(v: list[object]) -> Change:
    op = v[0]
    if op == _DELETE:
        return DeletePath(str(v[1]))
    chunks = tuple(as_ref(r) for r in v[3])  # type: ignore[attr-defined]
    cls = PutFile if op == _PUT else AppendFile
    return cls(str(v[1]), int(v[2]), chunks, str(v[4]))  # type: ignore[call-overload]


def _under(path: str, prefix: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


class ChangeRun:
    """Changes of one upload, in memory, normalised for sorted application."""

    def __init__(self) -> None:
        self._by_path: dict[str, list[Change]] = {}
        self.count = 0

    def add(self, change: Change) -> None:
        path = change.path.rstrip("/") or "/"
        if isinstance(change, DeletePath):
            # Changes made earlier under the deleted path are void.
            for p in [p for p in self._by_path if _under(p, path)]:
                self.count -= len(self._by_path.pop(p))
        self._by_path.setdefault(path, []).append(change)
        self.count += 1

    def __bool__(self) -> bool:
        return self.count > 0

    def sorted_changes(self) -> Iterator[Change]:
        for p in sorted(self._by_path, key=sort_key):
            yield from self._by_path[p]

    def clear(self) -> None:
        self._by_path.clear()
        self.count = 0


def write_layer(objects: ObjectStore, changes: Iterable[Change]) -> str:
    """Write a sorted run as a layer object; returns its key."""
    packer = msgpack.Packer()
    buf = bytearray()
    for c in changes:
        buf += packer.pack(encode_change(c))
    key = f"layers/{uuid.uuid4().hex}"
    objects.put(key, bytes(buf))
    return key


LAYER_READ = 4 * 1024 * 1024


def read_layer(objects: ObjectStore, key: str) -> Iterator[Change]:
    """Stream a layer's changes, reading it in ranges: finishing a commit
    merges all its layers at once, so whole layers in memory would add up."""
    unpacker = msgpack.Unpacker(raw=False)
    offset = 0
    while True:
        piece = objects.get(key, offset, LAYER_READ)
        unpacker.feed(piece)
        for v in unpacker:
            yield decode_change(v)
        if len(piece) < LAYER_READ:
            return
        offset += len(piece)


def merge_layers(layers: Sequence[Iterable[Change]]) -> Iterator[Change]:
    """Merge sorted layers (oldest first) into one sorted change stream whose
    in-order application equals applying the layers one after the other."""
    if len(layers) == 1:
        yield from layers[0]
        return

    def keyed(i: int, it: Iterable[Change]) -> Iterator[tuple[str, int, int, Change]]:
        for seq, c in enumerate(it):
            yield (sort_key(c.path.rstrip("/") or "/"), i, seq, c)

    # Deletes seen so far whose subtree we are still inside: (path, layer).
    stack: list[tuple[str, int]] = []
    for _, layer, _, c in heapq.merge(*(keyed(i, it) for i, it in enumerate(layers))):
        path = c.path.rstrip("/") or "/"
        while stack and not _under(path, stack[-1][0]):
            stack.pop()
        if any(dl > layer for _, dl in stack):
            continue  # a later layer deleted this subtree
        if isinstance(c, DeletePath):
            stack.append((path, layer))
        yield c
