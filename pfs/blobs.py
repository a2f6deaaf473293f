"""Content addressing: chunking, packing, hashing and verified reads.

Everything PFS stores in the object store goes through this module:

* **Chunks.** File content is split into content-defined chunks (FastCDC,
  512 KiB min / 1 MiB average / 8 MiB max, restic's sizes) so a new version
  of a large file stores only the chunks that changed: an edit costs its own
  size plus its two neighbouring chunks, typically ~2 MiB more. Content under
  ``SMALL_FILE`` bytes is one chunk. A chunk's ID is the BLAKE3 digest of its
  bytes. Chunking is a pure function of the content (:func:`cdc_lengths`), so
  the daemon's streaming writer and a client's direct writer
  (:mod:`pfs.direct`) cut the same file the same way and dedup each other.
* **Packs.** Chunks are never one object each: a writer appends chunks (and
  index nodes) to an in-memory pack and writes it as one object of about
  ``PACK_TARGET`` bytes (``packs/<id[:2]>/<id>``). Many small files therefore
  cost one object per ~8 MiB, not one per file.
* **References.** A :data:`ChunkRef` says where a chunk is: ``(digest, size,
  pack_id, offset)``. File index entries carry these, so a read needs no
  lookup table. Every read verifies the digest; a mismatch raises
  :class:`pfs.errors.Corruption` and the bytes are never returned.
* **Dedup.** Before appending a chunk a writer asks a :class:`DedupIndex`
  whether that digest is already stored; if so it reuses the reference. The
  index is a *cache* (a local SQLite file): a miss only costs space, never
  correctness. Garbage collection must call :meth:`DedupIndex.forget_pack`
  for every pack it deletes.

The on-storage format is described in ``docs/storage-format.md``.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import blake3
import msgpack

from pfs.errors import Corruption, ObjectNotFound
from pfs.objects import ObjectStore

# A chunk's location: (blake3 digest, size, pack id, offset in pack).
ChunkRef = tuple[bytes, int, str, int]

SMALL_FILE = 256 * 1024
# The gear-hash scan is the costliest per-byte step we run in Python; a 512 KiB
# minimum skips half of the bytes (with 128 KiB it scanned 75% and put a 1 GiB
# file ~0.2 s slower), at the price of a coarser edit granularity.
CDC_MIN = 512 * 1024
CDC_AVG = 1024 * 1024
CDC_MAX = 8 * 1024 * 1024
PACK_TARGET = 8 * 1024 * 1024
# How much incoming data is buffered before chunking. Any window gives the same
# chunks as chunking the whole content at once (the last chunk of a window is
# carried into the next); a larger one only costs memory.
CDC_WINDOW = 32 * 1024 * 1024

PACK_MAGIC = b"TUSKPACK1"


def digest(data: bytes | memoryview) -> bytes:
    """The content ID of ``data`` (32-byte BLAKE3)."""
    return blake3.blake3(data).digest()


def cdc_lengths(view: bytes | bytearray | memoryview, final: bool = True) -> list[int]:
    """The lengths of the content-defined chunks of ``view``, in order.

    With ``final=False`` the last chunk is left out: ``view`` is a window of a
    longer stream and its last chunk may be cut short by the window's end (the
    caller carries those bytes into the next window).
    """
    lengths = list(iter_cdc_lengths(view))
    return lengths if final else lengths[:-1]


def iter_cdc_lengths(view: bytes | bytearray | memoryview) -> Iterator[int]:
    """:func:`cdc_lengths` of the whole of ``view``, as they are found."""
    # Imported here: the package pulls in click (~50 ms), which clients that
    # never chunk (most CLI commands import pfs.blobs) should not pay for.
    from fastcdc import fastcdc  # the Cython chunker (the package picks it)

    for c in fastcdc(view, min_size=CDC_MIN, avg_size=CDC_AVG, max_size=CDC_MAX):
        yield c.length


def pack_footer(entries: Iterable[tuple[bytes, int, int]]) -> bytes:
    """The bytes that end a pack holding ``entries`` ((digest, offset, size) each)."""
    # msgpack is untyped (packb returns Any); without a default it returns bytes.
    footer: bytes = msgpack.packb([[h, off, size] for h, off, size in entries])
    return footer + len(footer).to_bytes(4, "big") + PACK_MAGIC


def pack_key(pack_id: str) -> str:
    """Object store key of a pack."""
    return f"packs/{pack_id[:2]}/{pack_id}"


def as_ref(value: Sequence[Any]) -> ChunkRef:
    """Normalise a ref that went through msgpack (lists) back to a tuple."""
    h, size, pack, off = value
    return (bytes(h), int(size), str(pack), int(off))


def ref_to_str(ref: ChunkRef) -> str:
    """A compact text form of a ref, for JSON metadata records."""
    return f"{ref[0].hex()}:{ref[1]}:{ref[2]}:{ref[3]}"


def ref_from_str(text: str) -> ChunkRef:
    h, size, pack, off = text.split(":")
    return (bytes.fromhex(h), int(size), pack, int(off))


class DedupIndex:
    """digest -> (pack, offset) for chunks already stored. A cache, see module doc.

    Backed by SQLite at ``path``, or by a dict when ``path`` is None.
    """

    def __init__(self, path: str | None = None) -> None:
        self._lock = threading.Lock()
        self._mem: dict[bytes, tuple[str, int]] | None = None
        self._db: sqlite3.Connection | None = None
        if path is None:
            self._mem = {}
        else:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # A lost cache entry only costs space, so don't pay for fsyncs.
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS chunks (digest BLOB PRIMARY KEY, pack TEXT NOT NULL,"
                " off INTEGER NOT NULL)"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS chunks_pack ON chunks(pack)")

    def get(self, h: bytes) -> tuple[str, int] | None:
        with self._lock:
            if self._mem is not None:
                return self._mem.get(h)
            assert self._db is not None
            row = self._db.execute("SELECT pack, off FROM chunks WHERE digest=?", (h,)).fetchone()
            return (row[0], row[1]) if row else None

    def add_many(self, entries: Iterable[tuple[bytes, str, int]]) -> None:
        with self._lock:
            if self._mem is not None:
                for h, pack, off in entries:
                    self._mem.setdefault(h, (pack, off))
                return
            assert self._db is not None
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO chunks (digest, pack, off) VALUES (?, ?, ?)", entries
            )
            self._db.execute("COMMIT")

    def forget_pack(self, pack: str) -> None:
        """Drop every entry pointing into ``pack`` (call before deleting it)."""
        with self._lock:
            if self._mem is not None:
                for h in [h for h, (p, _) in self._mem.items() if p == pack]:
                    del self._mem[h]
                return
            assert self._db is not None
            self._db.execute("DELETE FROM chunks WHERE pack=?", (pack,))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


class BlobStore:
    """Verified reads of chunks and index nodes, and the factory of writers.

    Thread-safe. Keeps an LRU cache of small blobs (index nodes) so tree
    walks don't re-read packs.
    """

    def __init__(self, objects: ObjectStore, index: DedupIndex | None = None,
                 cache_bytes: int = 64 * 1024 * 1024) -> None:
        self.objects = objects
        self.index = index if index is not None else DedupIndex(None)
        self._lock = threading.Lock()
        # Packs being filled by live writers: readable before they are written.
        self._pending: dict[str, bytearray] = {}
        self._cache: OrderedDict[bytes, bytes] = OrderedDict()
        self._cache_bytes = 0
        self._cache_limit = cache_bytes
        #: Bytes of chunks this process appended to packs, and bytes of chunks
        #: it found already stored (deduplicated), since it started: counters
        #: for monitoring (``tusk.metrics``). Chunks clients copy themselves
        #: (``pfs.direct``) are not counted.
        self.bytes_written = 0
        self.bytes_deduped = 0

    def _count(self, written: int, deduped: int) -> None:
        with self._lock:
            self.bytes_written += written
            self.bytes_deduped += deduped

    def writer(self) -> BlobWriter:
        """A writer for one upload stream (not shared between threads)."""
        return BlobWriter(self)

    # -- reads ---------------------------------------------------------------

    def read_chunk(self, ref: ChunkRef | Sequence[Any]) -> bytes:
        """The bytes of one chunk, verified against its digest."""
        h, size, pack, off = as_ref(ref) if not isinstance(ref, tuple) else ref
        cached = self._cache_get(h)
        if cached is not None:
            return cached
        with self._lock:
            buf = self._pending.get(pack)
            data = bytes(buf[off:off + size]) if buf is not None else None
        if data is None:
            try:
                data = self.objects.get(pack_key(pack), off, size)
            except ObjectNotFound as e:
                raise Corruption(
                    f"chunk {h.hex()[:16]} is missing: pack {pack} is gone from the object store "
                    f"({self.objects.describe()}); the data it held is lost"
                ) from e
        if len(data) != size or digest(data) != h:
            raise Corruption(
                f"chunk {h.hex()[:16]} in pack {pack} (offset {off}) does not match its hash: "
                f"the object store ({self.objects.describe()}) returned corrupt bytes"
            )
        if size <= 256 * 1024:
            self._cache_put(h, data)
        return data

    def read_chunks(self, refs: Iterable[ChunkRef | Sequence[Any]],
                    offset: int = 0) -> Iterator[bytes]:
        """Stream the concatenation of ``refs`` from byte ``offset``."""
        for ref in refs:
            size = int(ref[1])
            if offset >= size:
                offset -= size
                continue
            data = self.read_chunk(ref)
            if offset:
                data = data[offset:]
                offset = 0
            yield data

    # NodeStore protocol (pfs.tree): index nodes are blobs like any other.
    def get_node(self, ref: Any) -> bytes:
        return self.read_chunk(ref)

    # -- cache ---------------------------------------------------------------

    def _cache_get(self, h: bytes) -> bytes | None:
        with self._lock:
            data = self._cache.get(h)
            if data is not None:
                self._cache.move_to_end(h)
            return data

    def _cache_put(self, h: bytes, data: bytes) -> None:
        with self._lock:
            if h in self._cache:
                return
            self._cache[h] = data
            self._cache_bytes += len(data)
            while self._cache_bytes > self._cache_limit and self._cache:
                _, old = self._cache.popitem(last=False)
                self._cache_bytes -= len(old)


class BlobWriter:
    """Appends chunks to packs for one upload stream.

    Call :meth:`flush` before recording any returned ref in metadata: only
    then are the packs durable. A writer that is dropped without flushing
    leaves nothing visible (its pending packs are discarded).
    """

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        self._pack_id = ""
        self._buf = bytearray()
        self._entries: list[tuple[bytes, int, int]] = []
        # digest -> ref for chunks written by this writer (before the index knows them)
        self._local: dict[bytes, ChunkRef] = {}
        self.bytes_written = 0  # new bytes appended to packs (after dedup)
        self.bytes_deduped = 0

    def _new_pack(self) -> None:
        self._pack_id = uuid.uuid4().hex
        self._buf = bytearray()
        self._entries = []
        with self._store._lock:
            self._store._pending[self._pack_id] = self._buf

    def write_chunk(self, data: bytes | memoryview) -> ChunkRef:
        """Store one chunk (deduplicated) and return its ref."""
        h = digest(data)
        size = len(data)
        ref = self._local.get(h)
        if ref is None:
            hit = self._store.index.get(h)
            if hit is not None:
                ref = (h, size, hit[0], hit[1])
        if ref is not None:
            self.bytes_deduped += size
            self._store._count(0, size)
            return ref
        if not self._pack_id:
            self._new_pack()
        off = len(self._buf)
        self._buf += data
        self._entries.append((h, off, size))
        ref = (h, size, self._pack_id, off)
        self._local[h] = ref
        self.bytes_written += size
        self._store._count(size, 0)
        if len(self._buf) >= PACK_TARGET:
            self._write_pack()
        return ref

    def put_node(self, data: bytes) -> ChunkRef:
        """NodeStore protocol: index nodes are stored as chunks."""
        return self.write_chunk(data)

    def get_node(self, ref: Any) -> bytes:
        """NodeStore protocol: reads see this writer's unflushed packs too."""
        return self._store.read_chunk(ref)

    def write_stream(self, pieces: Iterable[bytes]) -> tuple[list[ChunkRef], int]:
        """Chunk a stream of bytes; returns (refs, total size). Streams: memory
        stays under ``CDC_WINDOW`` plus one piece."""
        refs: list[ChunkRef] = []
        total = 0
        buf = bytearray()
        chunked_any = False
        for piece in pieces:
            if not piece:
                continue
            buf += piece
            total += len(piece)
            if len(buf) >= CDC_WINDOW:
                # Emit every chunk but the last: the last may be cut short by
                # the window's end, so it is carried into the next window.
                cut = 0
                view = memoryview(buf)
                for n in cdc_lengths(view, final=False):
                    refs.append(self.write_chunk(view[cut:cut + n]))
                    cut += n
                view.release()
                del buf[:cut]
                chunked_any = True
        if buf:
            if len(buf) < SMALL_FILE and not chunked_any:
                refs.append(self.write_chunk(bytes(buf)))
            else:
                view = memoryview(buf)
                off = 0
                for n in cdc_lengths(view):
                    refs.append(self.write_chunk(view[off:off + n]))
                    off += n
                view.release()
        return refs, total

    def _write_pack(self) -> None:
        if not self._pack_id or not self._buf:
            return
        pack_id, buf, entries = self._pack_id, self._buf, self._entries
        data = bytes(buf) + pack_footer(entries)
        self._store.objects.put(pack_key(pack_id), data)
        self._store.index.add_many((h, pack_id, off) for h, off, _ in entries)
        with self._store._lock:
            self._store._pending.pop(pack_id, None)
        # The dedup index knows these chunks now; keeping them here too would
        # grow with the upload (~190 bytes a file: 190 MiB at a million files).
        self._local.clear()
        self._pack_id = ""
        self._buf = bytearray()
        self._entries = []

    def flush(self) -> None:
        """Make every ref returned so far durable."""
        self._write_pack()

    def discard(self) -> None:
        """Forget the pending pack (nothing was recorded, nothing is visible)."""
        with self._store._lock:
            self._store._pending.pop(self._pack_id, None)
        self._pack_id = ""
        self._buf = bytearray()
        self._entries = []


def read_pack_footer(data: bytes) -> list[tuple[bytes, int, int]]:
    """The (digest, offset, size) list written at the end of a pack."""
    if not data.endswith(PACK_MAGIC):
        raise Corruption("pack has no footer: not a tusk pack or truncated")
    n = int.from_bytes(data[-len(PACK_MAGIC) - 4:-len(PACK_MAGIC)], "big")
    start = len(data) - len(PACK_MAGIC) - 4 - n
    return [(bytes(h), int(o), int(s)) for h, o, s in msgpack.unpackb(data[start:start + n])]
