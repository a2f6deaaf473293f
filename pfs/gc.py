"""Garbage collection of the object store: packs and layers nothing references.

Deleting a repo (or a commit) only removes metadata records: the packs its
commits used stay in the object store, because packs are shared -- a pack
holds many chunks, and any chunk may be used by other files, commits and
repos (dedup). :func:`collect` frees what is no longer reachable, by
mark-and-sweep:

**Mark** every pack that something live references:

* every commit's tree (``CommitRec.tree``, finished commits): each node ref's
  pack and each file chunk ref's pack, walking the whole Merkle tree. Node
  digests already visited are skipped, so subtrees shared by many commits
  (the common case: a commit shares all but O(k log n) nodes with its parent)
  are read once per collection;
* the layers of open (and finishing) commits, ``layers/<repo>/<id>/<seq>`` in
  the metadata store: the layer objects themselves, and the packs of every
  chunk their changes reference (decoded with :func:`pfs.changes.read_layer`);
* chunks pinned ahead of any commit (``pins/<name>/<seq>`` in the metadata
  store, :meth:`pfs.api.PFS.pin_chunks`: e.g. the parts of an S3 multipart
  upload, which may take longer than the grace period to complete);
* every PPS object under ``pps/`` (plans, unit results, datum indexes): these
  hold output chunk refs of datums whose output a later job keeps. They are
  scanned generically: any msgpack list ``[digest (32 bytes), size, pack id
  (32 hex), offset]`` is a chunk ref. (A false positive only keeps a pack.)

**Sweep** the packs (``packs/``) and layer objects (``layers/``) that are
unmarked *and older than the grace period*, calling
:meth:`pfs.blobs.DedupIndex.forget_pack` before deleting each pack.

Why a grace period: a writer uploads its packs (and spilled layers) first and
records the commit that references them afterwards, in one metadata
transaction (``pfs.api``'s visibility rule). Between the two, the packs are
referenced by nothing GC can see. Objects younger than ``grace_seconds`` are
therefore never deleted; the default (an hour) must exceed the longest
upload. Ages come from the store (:func:`_age`): a local file's mtime, an S3
object's ``LastModified``.

The other race is dedup: a writer may reuse a chunk of an *old* unreferenced
pack (through the :class:`~pfs.blobs.DedupIndex`) and record its commit
after the mark phase. Three guards close it for writers in this process
(the daemon, which runs GC, is the only master -- see ``tusk.election``):
:func:`track_dedup_hits` wraps the blob store's index so every pack handed
out by a dedup hit in the last ``grace_seconds`` counts as live; candidates
are forgotten by the index *before* a second, incremental mark pass over the
metadata (which re-reads only commits recorded meanwhile -- visited nodes are
skipped); and whatever fails during marking aborts the sweep: GC never
deletes on a partial view (an unreadable node may hide references).

Limits: writers in *other* processes (``tusk worker``) are protected by the
grace period for the packs they create, but their dedup hits on an old
unreferenced pack are not seen here (each process has its own dedup cache):
such a worker's unit result could lose chunks GC deleted meanwhile. Closing
that needs workers to re-check (or re-write) deduplicated chunks whose pack
is older than the grace period. The marked set holds pack IDs
(tens of thousands: fine) and the visited set node digests (32 bytes per
node ever reachable). The LocalObjectStore's ``.tmp-*`` files of killed
writers are not swept here.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgpack

from pfs.blobs import BlobStore, as_ref, ref_from_str
from pfs.changes import read_layer
from pfs.errors import Corruption, NotFound, ObjectNotFound, TuskError
from pfs.objects import LocalObjectStore, ObjectStore
from pfs.tree import FORMAT_VERSION, AppendFile, PutFile

if TYPE_CHECKING:  # pfs.api is the caller; importing it at runtime is not needed
    from pfs.api import PFS

log = logging.getLogger("tusk.gc")

PACKS = "packs/"
LAYERS = "layers/"
PPS = "pps/"
#: Metadata prefixes GC reads (keys are built by ``pfs.keys``; these are its
#: ``commits/`` and ``layers/`` families).
_META_COMMITS = "commits/"
_META_LAYERS = "layers/"
_META_PINS = "pins/"

# Node format v1 (pfs.tree's module docstring): [version, kind, ...].
_NODE_LEAF, _NODE_INDEX, _NODE_CHUNKS = 0, 1, 2
_K_FILE_INLINE, _K_FILE_REF, _K_DIR = 0, 1, 2


@dataclass
class GCStats:
    """What one collection did."""

    commits: int = 0            # commit records read
    nodes: int = 0              # distinct tree nodes read
    layers_live: int = 0        # layer objects referenced by open commits
    pps_objects: int = 0        # PPS objects scanned
    packs_total: int = 0        # packs in the store
    packs_live: int = 0         # packs referenced (of those listed)
    packs_young: int = 0        # unreferenced packs kept by the grace period
    packs_deleted: int = 0
    bytes_deleted: int = 0      # packs and layers
    layers_deleted: int = 0
    seconds: float = 0.0
    marked: set[str] = field(default_factory=set, repr=False)  # live pack ids


# --- dedup-hit tracking -----------------------------------------------------------


class _TrackedIndex:
    """A :class:`~pfs.blobs.DedupIndex` wrapper that remembers, per pack, when
    a writer was last handed a chunk in it (a dedup hit). Packs a writer
    creates need no tracking: they are young, which the grace period covers."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self.touched: dict[str, float] = {}  # pack id -> time.monotonic()

    def _touch(self, pack: str) -> None:
        with self._lock:
            self.touched[pack] = time.monotonic()

    def get(self, h: bytes) -> tuple[str, int] | None:
        hit: tuple[str, int] | None = self.inner.get(h)
        if hit is not None:
            self._touch(hit[0])
        return hit

    def add_many(self, entries: Iterable[tuple[bytes, str, int]]) -> None:
        self.inner.add_many(entries)

    def forget_pack(self, pack: str) -> None:
        self.inner.forget_pack(pack)

    def close(self) -> None:
        self.inner.close()

    def recent(self, within: float) -> set[str]:
        """Packs touched in the last ``within`` seconds; forgets older entries."""
        cutoff = time.monotonic() - within
        with self._lock:
            for p in [p for p, t in self.touched.items() if t < cutoff]:
                del self.touched[p]
            return set(self.touched)


def track_dedup_hits(blobs: BlobStore) -> _TrackedIndex:
    """Wrap ``blobs.index`` (once) so GC sees packs recently handed to writers.

    The daemon calls this at start, before any writer exists; :func:`collect`
    calls it too (then only writers that started after it are tracked).
    """
    index = blobs.index
    if isinstance(index, _TrackedIndex):
        return index
    tracked = _TrackedIndex(index)
    blobs.index = tracked  # type: ignore[assignment]  # duck-typed DedupIndex
    return tracked


# --- object ages -----------------------------------------------------------------

# Stores whose objects carry no time (MemoryObjectStore): the first time GC saw
# each key stands in for its creation time.
_first_seen: weakref.WeakKeyDictionary[Any, dict[str, float]] = weakref.WeakKeyDictionary()


def _age(objects: ObjectStore, key: str, now: float) -> float | None:
    """Seconds since ``key`` was written, or None if it no longer exists.

    Handles the known stores: a store may offer ``modified(key) -> float``
    (epoch seconds); a :class:`~pfs.objects.LocalObjectStore` file's mtime
    (``put`` renames a fresh temp file, so mtime is the write time); an
    ``S3ObjectStore`` object's ``LastModified`` (one HEAD, through the store's
    own client and error mapping). Anything else: the time GC first saw it.
    """
    modified = getattr(objects, "modified", None)
    if callable(modified):
        try:
            return now - float(modified(key))
        except ObjectNotFound:
            return None
    if isinstance(objects, LocalObjectStore):
        try:
            return now - os.stat(os.path.join(objects.root, key)).st_mtime
        except FileNotFoundError:
            return None
    try:
        from pfs.objects_s3 import S3ObjectStore
    except ImportError:  # the minio SDK is optional
        S3ObjectStore = None  # type: ignore[assignment,misc]
    if S3ObjectStore is not None and isinstance(objects, S3ObjectStore):
        try:
            with objects._errors(key):
                st = objects._client.stat_object(objects._bucket, objects._name(key))
        except ObjectNotFound:
            return None
        if st.last_modified is None:
            return 0.0  # unknown: treat as brand new (never deletes too early)
        return now - st.last_modified.timestamp()
    seen = _first_seen.setdefault(objects, {})
    return now - seen.setdefault(key, now)


# --- mark ---------------------------------------------------------------------


def _pack_of(key: str) -> str:
    return key.rsplit("/", 1)[-1]


class _Marker:
    """The mark phase's state: live packs and layers, visited node digests."""

    def __init__(self, pfs: PFS) -> None:
        self.pfs = pfs
        self.blobs: BlobStore = pfs.blobs
        self.packs: set[str] = set()
        self.layers: set[str] = set()
        self.visited: set[bytes] = set()
        self.commits_seen: set[str] = set()
        self.stats = GCStats(marked=self.packs)

    def _chunks(self, refs: Iterable[Any]) -> None:
        for r in refs:
            self.packs.add(str(r[2]))

    def tree(self, root: Any) -> None:
        """Mark every node and chunk of the tree at ``root`` (iteratively)."""
        stack = [root]
        while stack:
            ref = stack.pop()
            self.packs.add(str(ref[2]))
            h = bytes(ref[0])
            if h in self.visited:
                continue  # same digest, same content: its children are marked
            node = msgpack.unpackb(self.blobs.read_chunk(as_ref(ref)), use_list=False, raw=False)
            if not isinstance(node, tuple) or len(node) < 3 or node[0] != FORMAT_VERSION:
                raise Corruption(f"tree node {h.hex()[:16]} has an unknown format; "
                                 f"garbage collection stopped without deleting anything")
            kind = node[1]
            if kind == _NODE_LEAF:
                for e in node[2]:
                    k, payload = e[1], e[4]
                    if k == _K_FILE_INLINE:
                        self._chunks(payload)
                    else:  # a chunk-list node, or a directory's top node
                        stack.append(payload)
            elif kind == _NODE_INDEX:
                stack.extend(item[4] for item in node[3])
            elif kind == _NODE_CHUNKS:
                self._chunks(node[2])
            else:
                raise Corruption(f"tree node {h.hex()[:16]} has unknown kind {kind!r}")
            self.visited.add(h)
            self.stats.nodes += 1

    def metadata(self) -> None:
        """Mark from the metadata store: commit trees, open commits' layers, pins.

        Incremental when run again: commits and nodes already seen are skipped.
        """
        import json

        meta = self.pfs.meta
        for kv in meta.range(_META_COMMITS):
            if kv.key in self.commits_seen:
                continue
            rec = json.loads(kv.value)
            self.stats.commits += 1
            tree = rec.get("tree") or ""
            if tree:
                self.tree(ref_from_str(tree))
            if rec.get("finished") is not None:
                # A finished commit never changes its tree: skip it next pass.
                self.commits_seen.add(kv.key)
        for kv in meta.range(_META_LAYERS):
            key = kv.value.decode()
            if key in self.layers:
                continue
            self.layers.add(key)
            try:
                for c in read_layer(self.blobs.objects, key):
                    if isinstance(c, (PutFile, AppendFile)):
                        self._chunks(c.chunks)
            except ObjectNotFound:
                # Its commit finished (and dropped the key) since we listed it.
                if meta.get(kv.key) is not None:
                    raise
        for kv in meta.range(_META_PINS):
            self._chunks(ref_from_str(t) for t in json.loads(kv.value).get("chunks", ()))
        self.stats.layers_live = len(self.layers)

    def pps_objects(self) -> None:
        """Mark chunk refs found anywhere in the PPS objects (see module doc)."""
        objects = self.blobs.objects
        for key in objects.list(PPS):
            try:
                data = objects.get(key)
            except ObjectNotFound:
                continue  # deleted with its pipeline since the listing
            self.stats.pps_objects += 1
            unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
            unpacker.feed(data)
            try:
                for obj in unpacker:
                    self._scan(obj)
            except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
                continue  # not msgpack (a log, JSON...): it holds no chunk refs

    def _scan(self, obj: Any) -> None:
        stack = [obj]
        while stack:
            o = stack.pop()
            if isinstance(o, (list, tuple)):
                if (len(o) == 4 and isinstance(o[0], bytes) and len(o[0]) == 32
                        and isinstance(o[1], int) and isinstance(o[2], str) and len(o[2]) == 32
                        and isinstance(o[3], int) and _is_hex(o[2])):
                    self.packs.add(o[2])
                else:
                    stack.extend(o)
            elif isinstance(o, dict):
                stack.extend(o.values())


def _is_hex(s: str) -> bool:
    try:
        int(s, 16)
    except ValueError:
        return False
    return True


# --- sweep --------------------------------------------------------------------


def _candidates(objects: ObjectStore, prefix: str, live: set[str], name: Any,
                grace: float, now: float, stats: GCStats) -> Iterator[tuple[str, str]]:
    """(key, name) of unmarked objects under ``prefix`` old enough to delete."""
    for key in objects.list(prefix):
        n = name(key)
        if prefix == PACKS:
            stats.packs_total += 1
        if n in live:
            if prefix == PACKS:
                stats.packs_live += 1
            continue
        if grace > 0:
            age = _age(objects, key, now)
            if age is None:
                continue  # already gone
            if age < grace:
                if prefix == PACKS:
                    stats.packs_young += 1
                continue
        yield key, n


def collect(pfs: PFS, grace_seconds: float = 3600) -> GCStats:
    """Delete packs and layer objects that nothing references (see module doc).

    Safe to run while the daemon serves; idempotent. Only the master daemon
    should run it (one collector at a time).

    Args:
        pfs: the service whose stores to collect.
        grace_seconds: never delete objects younger than this (0: no grace,
            only for tests and quiescent stores).

    Returns:
        What was marked and deleted.

    Raises:
        pfs.errors.TuskError: the mark phase failed (nothing was deleted), or
            a store became unreachable during the sweep (some was).
    """
    t0 = time.monotonic()
    objects = pfs.objects
    tracked = track_dedup_hits(pfs.blobs)
    marker = _Marker(pfs)
    stats = marker.stats
    marker.metadata()
    marker.pps_objects()
    now = time.time()

    packs = list(_candidates(objects, PACKS, marker.packs, _pack_of, grace_seconds, now, stats))
    layers = list(_candidates(objects, LAYERS, marker.layers, lambda k: k, grace_seconds, now,
                              stats))
    # No new dedup hit may land in a candidate from here on...
    for _, pack in packs:
        pfs.blobs.index.forget_pack(pack)
    # ...and whatever was recorded or handed out during the first pass counts.
    marker.metadata()
    # Packs handed out since this run started always count; with a grace
    # period, so do those handed out within it (a writer may still record).
    recent = tracked.recent(max(grace_seconds, time.monotonic() - t0))
    for key, pack in packs:
        if pack in marker.packs or pack in recent:
            stats.packs_live += 1
            continue
        stats.bytes_deleted += _size(objects, key)
        objects.delete(key)
        stats.packs_deleted += 1
    for key, name in layers:
        if name in marker.layers:
            continue
        stats.bytes_deleted += _size(objects, key)
        objects.delete(key)
        stats.layers_deleted += 1
    stats.seconds = time.monotonic() - t0
    log.info("gc: %d commits, %d nodes, %d of %d packs live, %d young; deleted %d packs and "
             "%d layers (%.1f MB) in %.1f s", stats.commits, stats.nodes, stats.packs_live,
             stats.packs_total, stats.packs_young, stats.packs_deleted, stats.layers_deleted,
             stats.bytes_deleted / 1e6, stats.seconds)
    return stats


def _size(objects: ObjectStore, key: str) -> int:
    try:
        return objects.size(key)
    except NotFound:
        return 0


# --- background ---------------------------------------------------------------


class Collector:
    """Runs :func:`collect` every ``interval`` seconds on a daemon thread.

    Errors are logged and the next run tried at the next interval: an
    unreachable store or a corrupt node must not stop the daemon.
    """

    def __init__(self, pfs: PFS, interval: float, grace_seconds: float = 3600) -> None:
        self.pfs = pfs
        self.interval = interval
        self.grace = grace_seconds
        self.last: GCStats | None = None
        self._stop = threading.Event()
        self._run_lock = threading.Lock()
        track_dedup_hits(pfs.blobs)  # before any writer: see collect()
        self._thread = threading.Thread(target=self._loop, name="tusk-gc", daemon=True)

    def start(self) -> Collector:
        if self.interval > 0:
            self._thread.start()
        return self

    def run_once(self) -> GCStats:
        """Collect now (the test hook); serialised with the background runs."""
        with self._run_lock:
            self.last = collect(self.pfs, self.grace)
            return self.last

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except TuskError as exc:
                log.warning("garbage collection failed (will retry in %.0f s): %s",
                            self.interval, exc)
            except Exception:  # a bug in GC must not take the daemon down
                log.exception("garbage collection failed (will retry in %.0f s)", self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
