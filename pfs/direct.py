"""The direct path: a client moves file bytes itself instead of through the daemon.

Streaming a large file through gRPC costs several copies of every byte in
Python (about 160 MB/s up here). When the daemon's object store is a local
directory the client can reach, the client does the byte work itself, as
restic or DVC do, and the daemon only records the result. The client proves it
sees the same directory by reading the store's ID file (:func:`store_id`).

* **put** (:func:`put_local_file`): cut the file into the same content-defined
  chunks the daemon would (:func:`pfs.blobs.cdc_lengths`), hash each one, ask
  the daemon which digests it already stores (the ``find`` callback: the
  daemon's dedup index, so GC sees those hits), and append only the new chunks
  to packs written straight into the store, each a temp file renamed into
  place as :meth:`pfs.objects.LocalObjectStore.writing` does. The daemon then
  records the file from its chunk refs (``FileWriter.put_direct``), after
  checking that every new pack exists and is long enough. Nothing becomes
  visible before the ModifyFile stream ends; a client killed midway leaves
  only unreferenced packs, which GC removes after its grace period.
* **put to S3** (:class:`PresignedUploads`): the same, except that new chunks
  are gathered into 16 MiB packs in memory and each pack is PUT to a URL the
  daemon presigned for a fresh pack ID, a few at once; the client needs no
  credentials, only a route to the S3 server, which it proves by fetching the
  store's ID object through a presigned GET (:func:`open_presigned`).
* **get from S3** (:func:`read_presigned_into`): ranged GETs of runs of
  adjacent chunks, through presigned URLs of their packs, a few at once, each
  chunk verified before any of its bytes are written.
* **get** (:func:`read_into`, local stores): read each chunk from its pack, verify its
  digest, and only then hand it to the caller: a corrupt chunk raises
  :class:`~pfs.errors.Corruption` and its bytes are never written.

Speed: chunking holds the GIL (the fastcdc extension does not release it), so
on a put it runs in a forked child, which chunks and hashes the file and
streams (length, digest) records through a pipe while this process looks
them up and copies the new chunks (``copy_file_range`` releases the GIL). A
local file from ``_SPLIT_MIN`` is put as two halves at once, each with its
own child, thread and packs (:func:`_store_split`). On a get a thread reads
and verifies while the caller's thread writes. Both fall back to one thread
where ``fork`` is unavailable. The child maps the file; if the file shrinks
under it the child dies (SIGBUS) and the put fails, naming the file.

The trust model: a client that can write the store directory can damage it
anyway. The daemon checks the packs a client names exist and are long enough;
every read still verifies every chunk, so a wrong ref shows up as corruption,
never as wrong bytes.
"""

from __future__ import annotations

import gc
import mmap
import os
import queue
import signal
import struct
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast

import blake3

from pfs.blobs import (
    CDC_MAX,
    ChunkRef,
    cdc_lengths,
    iter_cdc_lengths,
    pack_footer,
    pack_key,
)
from pfs.errors import Corruption, FailedPrecondition, ObjectNotFound, TuskError, Unavailable
from pfs.objects import LocalObjectStore, ObjectStore

STORE_ID_KEY = "store-id"
# A direct put fills packs of ~64 MiB, not the streaming writer's 8 MiB (sized
# for packing small files and for S3 requests): creating and renaming 128
# files per GiB made the put about twice as slow as one copy of the data.
# Reads address chunks by offset, so pack size costs them nothing; GC frees a
# pack once none of its chunks is referenced, and a large file's chunks
# mostly live and die together.
DIRECT_PACK_TARGET = 64 * 1024 * 1024
# Bytes read per window on a put: larger than CDC_MAX (a chunk always fits)
# and small enough that a window's chunks are still in the CPU cache when
# they are written after the dedup lookup.
_WINDOW = 2 * CDC_MAX
_U64 = struct.Struct("<Q")

# find(digests) -> for each digest, (pack, offset) of a stored copy, or None.
FindChunks = Callable[[Sequence[bytes]], Sequence[tuple[str, int] | None]]


def store_id(store: ObjectStore) -> str:
    """The store's random ID, created on first use (the daemon calls this at start)."""
    try:
        return store.get(STORE_ID_KEY).decode()
    except ObjectNotFound:
        store.put(STORE_ID_KEY, uuid.uuid4().hex.encode())
        return store.get(STORE_ID_KEY).decode()


def open_if_same(root: str, expected_id: str) -> LocalObjectStore | None:
    """The local store at ``root`` if this process sees the daemon's store there
    (same ID file, writable), else None (another machine, container or user)."""
    if not root or not expected_id or not os.path.isdir(root):
        return None
    try:
        with open(os.path.join(root, STORE_ID_KEY), "rb") as f:
            if f.read().decode() != expected_id:
                return None
    except (OSError, UnicodeDecodeError):
        return None
    if not os.access(os.path.join(root, "packs") if os.path.isdir(
            os.path.join(root, "packs")) else root, os.W_OK | os.X_OK):
        return None
    try:
        return LocalObjectStore(root)
    except TuskError:
        return None


@dataclass
class DirectPut:
    """What a direct put wrote: the file's refs and the packs it created."""

    refs: list[ChunkRef] = field(default_factory=list)
    size: int = 0
    new_packs: dict[str, int] = field(default_factory=dict)  # pack id -> bytes
    bytes_written: int = 0
    bytes_deduped: int = 0
    halves: str = ""  # put as two halves: "joined", or "dropped" (the first did it all)


# --- put ----------------------------------------------------------------------


class _PackWriter:
    """Appends chunks to packs written straight into a local store."""

    def __init__(self, store: LocalObjectStore, result: DirectPut) -> None:
        self._store = store
        self._result = result
        self._ctx: Any = None
        self._f: BinaryIO | None = None
        self._id = ""
        self._len = 0
        self._entries: list[tuple[bytes, int, int]] = []

    def _begin(self) -> BinaryIO:
        if self._f is None:
            self._id = uuid.uuid4().hex
            self._ctx = self._store.writing(pack_key(self._id))
            self._f = self._ctx.__enter__()
            self._len = 0
            self._entries = []
        assert self._f is not None
        return self._f

    def _added(self, h: bytes, n: int) -> ChunkRef:
        ref = (h, n, self._id, self._len)
        self._entries.append((h, self._len, n))
        self._len += n
        if self._len >= DIRECT_PACK_TARGET:
            self.close()
        return ref

    def copy_run(self, fd: int, run: Sequence[tuple[bytes, int, int]]) -> list[ChunkRef]:
        """Append chunks that are adjacent in the file ``fd`` ((digest, offset,
        length) each, in file order), copied in the kernel a pack at a time."""
        refs: list[ChunkRef] = []
        i = 0
        while i < len(run):
            out = self._begin().fileno()
            # Take chunks until this pack is full; copy their span in one call.
            j, span, room = i, 0, DIRECT_PACK_TARGET - self._len
            while j < len(run) and (span < room or j == i):
                span += run[j][2]
                j += 1
            _copy(fd, out, run[i][1], span)
            for h, _, n in run[i:j]:
                refs.append(self._added(h, n))
            i = j
        return refs

    def close(self) -> None:
        if self._f is None:
            return
        footer = pack_footer(self._entries)
        os.write(self._f.fileno(), footer)  # everything went through the fd
        ctx, self._f, self._ctx = self._ctx, None, None
        ctx.__exit__(None, None, None)  # renames the temp file into place
        self._result.new_packs[self._id] = self._len + len(footer)

    def finish(self) -> None:
        """Close the last pack: every pack is then in the store."""
        self.close()

    def abort(self) -> None:
        if self._f is None:
            return
        ctx, self._f, self._ctx = self._ctx, None, None
        err = RuntimeError("direct put aborted")
        ctx.__exit__(RuntimeError, err, None)  # removes the temp file

    def discard(self) -> None:
        """Abort, and delete the packs already written (nothing refers to them)."""
        self.abort()
        for pack in self._result.new_packs:
            self._store.delete(pack_key(pack))
        self._result.new_packs.clear()


class PresignedUploads:
    """Where the packs of a direct put to an S3 store go: presigned PUT URLs.

    The daemon hands out fresh pack IDs with URLs it signed (``presign``,
    called for a few packs at a time); this process uploads each pack with a
    plain HTTP PUT, without any credentials of its own.
    """

    def __init__(self, presign: Callable[[int], Sequence[tuple[str, str]]],
                 http: Any = None) -> None:
        self._presign = presign
        self.http = http if http is not None else _http_pool()  # shared with reads
        self._ready: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def next_pack(self) -> tuple[str, str]:
        """A new pack ID and the URL to PUT it to."""
        with self._lock:
            if not self._ready:
                self._ready = list(reversed(self._presign(_PRESIGN_BATCH)))
            return self._ready.pop()

    def upload(self, pack: str, url: str, body: memoryview) -> None:
        """PUT one pack (S3 PUTs are atomic: it exists whole or not at all)."""
        import urllib3

        where = url.split("?", 1)[0]
        try:
            r = self.http.request("PUT", url, body=body, preload_content=True,
                                   headers={"Content-Length": str(len(body))})
        except urllib3.exceptions.HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            raise Unavailable("S3", f"upload of pack {pack} to {where}: {reason}",
                              hint="set TUSK_DIRECT=0 to send files through the daemon") from exc
        if r.status != 200:
            raise Unavailable("S3", f"upload of pack {pack} to {where} answered {r.status}: "
                              f"{r.data[:300].decode(errors='replace')}",
                              hint="set TUSK_DIRECT=0 to send files through the daemon")


def _http_pool() -> Any:
    import urllib3

    return urllib3.PoolManager(
        maxsize=_UPLOADS + 1,
        timeout=urllib3.Timeout(connect=3.0, read=60.0),
        retries=urllib3.Retry(total=2, read=1, backoff_factor=0.2,
                              status_forcelist=[500, 502, 503, 504], allowed_methods=None,
                              respect_retry_after_header=False))


def open_presigned(probe_url: str, expected_id: str,
                   presign: Callable[[int], Sequence[tuple[str, str]]]) -> PresignedUploads | None:
    """Uploads through presigned URLs if this process reaches the daemon's S3
    server (it can fetch the store's ID object), else None."""
    import urllib3

    if not probe_url or not expected_id:
        return None
    http = _http_pool()
    try:
        r = http.request("GET", probe_url, retries=False,
                         timeout=urllib3.Timeout(connect=2.0, read=5.0))
    except urllib3.exceptions.HTTPError:
        return None
    if r.status != 200 or r.data != expected_id.encode():
        return None
    return PresignedUploads(presign, http)


# Packs uploaded to S3 hold ~16 MiB (one PUT each; the streaming writer's are
# 8 MiB). Up to _UPLOADS go at once while this process fills the next: one
# PUT at a time reaches ~130 MiB/s here, three ~175 MiB/s.
UPLOAD_PACK_TARGET = 16 * 1024 * 1024
_UPLOADS = 3
_PRESIGN_BATCH = 8  # URLs per PresignPacks round trip
# Room for a pack's chunks past the target (the last one may overshoot it by
# up to CDC_MAX) and its footer (~50 bytes a chunk).
_UPLOAD_BUFFER = UPLOAD_PACK_TARGET + CDC_MAX + 256 * 1024


class _UploadPackWriter:
    """Appends chunks to packs in memory and uploads each one when full."""

    def __init__(self, target: PresignedUploads, result: DirectPut) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._target = target
        self._result = result
        self._pool = ThreadPoolExecutor(_UPLOADS, thread_name_prefix="tusk-upload")
        self._free: queue.Queue[bytearray] = queue.Queue()
        self._buffers = 0  # allocated so far (at most _UPLOADS + 1)
        self._uploads: list[Any] = []  # futures, in order
        self._buf: bytearray | None = None
        self._id = self._url = ""
        self._len = 0
        self._entries: list[tuple[bytes, int, int]] = []

    def _begin(self) -> bytearray:
        if self._buf is None:
            self._check_uploads()
            if self._free.empty() and self._buffers <= _UPLOADS:
                self._buffers += 1
                self._buf = bytearray(_UPLOAD_BUFFER)
            else:
                self._buf = self._free.get()  # waits for an upload to end
            self._id, self._url = self._target.next_pack()
            self._len = 0
            self._entries = []
        return self._buf

    def _check_uploads(self) -> None:
        """Raise the error of the first failed upload, if one failed."""
        while self._uploads and self._uploads[0].done():
            self._uploads.pop(0).result()

    def copy_run(self, fd: int, run: Sequence[tuple[bytes, int, int]]) -> list[ChunkRef]:
        """As :meth:`_PackWriter.copy_run`, reading the span into the pack buffer."""
        refs: list[ChunkRef] = []
        i = 0
        while i < len(run):
            buf = self._begin()
            j, span, room = i, 0, UPLOAD_PACK_TARGET - self._len
            while j < len(run) and (span < room or j == i):
                span += run[j][2]
                j += 1
            with memoryview(buf) as view:
                _read_exact(fd, view[self._len:self._len + span], run[i][1])
            for h, _, n in run[i:j]:
                refs.append((h, n, self._id, self._len))
                self._entries.append((h, self._len, n))
                self._len += n
            if self._len >= UPLOAD_PACK_TARGET:
                self.close()
            i = j
        return refs

    def close(self) -> None:
        """Finish the current pack and start its upload."""
        buf = self._buf
        if buf is None:
            return
        footer = pack_footer(self._entries)
        end = self._len + len(footer)
        buf[self._len:end] = footer
        self._buf = None
        self._result.new_packs[self._id] = end

        def upload(pack: str = self._id, url: str = self._url) -> None:
            try:
                with memoryview(buf) as view, view[:end] as body:
                    self._target.upload(pack, url, body)
            finally:
                self._free.put(buf)

        self._uploads.append(self._pool.submit(upload))

    def finish(self) -> None:
        """Close the last pack and wait for every upload; raise the first error."""
        self.close()
        try:
            for f in self._uploads:
                f.result()
        finally:
            self._uploads.clear()
            self._pool.shutdown(wait=True)

    def abort(self) -> None:
        """Stop: queued uploads are dropped, running ones end (their packs
        stay unreferenced until GC removes them)."""
        self._buf = None
        for f in self._uploads:
            f.cancel()
        self._pool.shutdown(wait=True)
        self._uploads.clear()


def _read_exact(fd: int, into: memoryview, off: int) -> None:
    done = 0
    while done < len(into):
        k = os.preadv(fd, [into[done:]], off + done)
        if k == 0:
            raise FailedPrecondition(
                f"the file shrank while tusk was reading it (at offset {off + done}); "
                "nothing was recorded: put it again")
        done += k


_RECORD = struct.Struct("<Q32s")  # a chunk: its length and its BLAKE3 digest


def _chunk_records(fd: int, size: int, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """(length, digest) of each chunk of the file open at ``fd``, chunking from
    byte ``start`` (0: the file's true chunks), as found.

    Reads the file through a map; called in a forked child.
    """
    if size <= start:
        return
    with mmap.mmap(fd, size, prot=mmap.PROT_READ) as mm, memoryview(mm) as view, \
            view[start:] as tail:
        off = start
        for n in iter_cdc_lengths(tail):
            yield n, blake3.blake3(view[off:off + n]).digest()
            off += n


def _chunk_records_inline(fd: int, size: int) -> Iterator[tuple[int, bytes]]:
    """:func:`_chunk_records` without a map, one window at a time (no fork)."""
    buf = bytearray()
    pos = 0
    while pos < size:
        piece = os.pread(fd, 4 * _WINDOW, pos)
        if not piece:
            break
        pos += len(piece)
        buf += piece
        with memoryview(buf) as view:
            cut = 0
            for n in cdc_lengths(view, final=pos >= size):
                yield n, blake3.blake3(view[cut:cut + n]).digest()
                cut += n
        del buf[:cut]
    if buf:  # the file changed size: the caller's checks report it
        yield len(buf), blake3.blake3(buf).digest()


class _Chunker:
    """A forked child chunking the file from ``start``; :meth:`records` reads it.

    With ``resync=True`` the child first moves ``start`` to the next true cut
    (:func:`_resync_cut`) and sends it ahead of the records: read it with
    :meth:`first_offset`.
    """

    def __init__(self, fd: int, size: int, start: int, resync: bool = False) -> None:
        import fastcdc  # noqa: F401  # imported before fork: the child must not import

        r, w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(r)
            os.close(w)
            raise
        if pid == 0:  # the child: compute, write, leave without any cleanup
            # No garbage collection: it would only touch (and copy) the parent's
            # pages; the child allocates little and exits at once.
            gc.disable()
            status = 1
            try:
                os.close(r)
                if resync:
                    start = _resync_cut(fd, size, start)
                    os.write(w, _U64.pack(start))
                batch = bytearray()
                for n, h in _chunk_records(fd, size, start):
                    batch += _RECORD.pack(n, h)
                    if len(batch) >= 4 * _RECORD.size:  # first records leave within ~4 MiB
                        os.write(w, batch)
                        batch.clear()
                if batch:
                    os.write(w, batch)
                status = 0
            finally:
                os._exit(status)
        os.close(w)
        self.pid, self._r, self.status, self._killed = pid, r, -1, False
        # kill() may come from another thread than the one reading: the lock
        # keeps it from signalling a PID that close() has already reaped.
        self._lock = threading.Lock()

    def first_offset(self) -> int:
        """Where the records start (``resync=True`` only; before :meth:`records`)."""
        head = b""
        while len(head) < _U64.size:
            more = os.read(self._r, _U64.size - len(head))
            if not more:
                self.close(kill=False)  # raises if the child died
                raise _ChunkerDied("the chunker process of this put ended early")
            head += more
        return int(_U64.unpack(head)[0])

    def records(self) -> Iterator[tuple[int, bytes]]:
        pending = b""
        while True:
            block = os.read(self._r, 64 * 1024)
            if not block:
                break
            block = pending + block
            whole = len(block) - len(block) % _RECORD.size
            pending = block[whole:]
            yield from _RECORD.iter_unpack(block[:whole])
        self.close(kill=False)

    def kill(self) -> None:
        """Stop the child now (from any thread); its records end early, quietly."""
        with self._lock:
            if self.status < 0 and not self._killed:
                self._killed = True
                os.kill(self.pid, signal.SIGKILL)

    def close(self, kill: bool = True) -> None:
        if self.status >= 0:
            return
        os.close(self._r)
        if kill:
            self.kill()
        with self._lock:
            _, self.status = os.waitpid(self.pid, 0)
        if self._killed or self.status == 0:
            return
        if os.WIFSIGNALED(self.status) and os.WTERMSIG(self.status) == signal.SIGBUS:
            raise FailedPrecondition(  # its map of the file lost pages: the file shrank
                "the file changed while tusk was reading it (it shrank); nothing was "
                "recorded: put it again once it is stable")
        how = (f"signal {os.WTERMSIG(self.status)}" if os.WIFSIGNALED(self.status)
               else f"exit status {os.waitstatus_to_exitcode(self.status)}")
        raise _ChunkerDied(
            f"the chunker process of this put died ({how}); nothing was recorded: put the "
            "file again, or set TUSK_DIRECT=0 to send it through the daemon")


class _ChunkerDied(TuskError):
    """A forked chunker was killed by something other than the file shrinking."""



# A local file from this size is put as two halves at once, each chunked and
# hashed by its own child while a thread of this process copies its new
# chunks: chunking, hashing and copying each cost about as much as `cp`, and
# one stream in file order leaves a core idle for much of the put.
_SPLIT_MIN = 64 * 1024 * 1024
# The second half's chunker starts this far before the middle so that its cuts
# have met the file's true cuts by the time it gets there (CDC cuts depend
# only on the bytes since the previous cut). Measured on random data, 2 MiB
# was always enough.
_RESYNC = 2 * CDC_MAX
# ...and it trusts a cut only after this many content-defined ones in a row:
# in a run without any (zeros: every chunk CDC_MAX long) chunkers started at
# different offsets keep different cuts until content brings them together.
_RESYNC_RUN = 3


def _resync_cut(fd: int, size: int, mid: int) -> int:
    """A cut at or after ``mid`` that the true chunking almost surely makes:
    of a chunking started ``_RESYNC`` bytes earlier, the first cut from
    ``mid`` on that ends ``_RESYNC_RUN`` content-defined chunks in a row
    (from 0: simply the first). ``size`` if there is none. Called in a child.
    """
    start = max(0, mid - _RESYNC)
    run = _RESYNC_RUN if start == 0 else 0
    with mmap.mmap(fd, size, prot=mmap.PROT_READ) as mm, memoryview(mm) as view, \
            view[start:] as tail:
        off = start
        for n in iter_cdc_lengths(tail):
            off += n
            run = run + 1 if n < CDC_MAX else 0
            if off >= mid and run >= _RESYNC_RUN:
                return off
    return size


def _records_from_child(fd: int, size: int) -> Iterator[tuple[int, bytes]]:
    """:func:`_chunk_records` of the whole file, computed by a forked child."""
    child = _Chunker(fd, size, 0)
    try:
        yield from child.records()
    finally:
        child.close()


def _store_split(fd: int, size: int, find: FindChunks, store: LocalObjectStore,
                 result: DirectPut) -> None:
    """Store the file as two halves at once (see ``_SPLIT_MIN``).

    The first child chunks from 0; the second from a cut near the middle that
    the true chunking almost surely also makes (:func:`_resync_cut`). Each
    half's new chunks go into packs of their own, the second half's from a
    thread. When the first child reaches that cut, it stops and the two
    halves' refs are joined: the same chunks as one sequential pass. If
    instead it steps over the cut (content whose cuts have not met by then),
    the second half's work is dropped, its packs deleted (but those holding a
    chunk the first half refers to), and the first child goes on to the end,
    as a single pass would.

    A chunk repeated in both halves is stored once if one half has stored it
    when the other looks; if both meet it at the same moment, it is stored
    twice (each copy is whole and verified: only space is lost).
    """
    from concurrent.futures import ThreadPoolExecutor

    first = _Chunker(fd, size, 0)
    second: _Chunker | None = None
    packs = _PackWriter(store, result)
    later = DirectPut()
    later_packs = _PackWriter(store, later)
    try:
        second = _Chunker(fd, size, size // 2, resync=True)
        cut = second.first_offset()
        met = False
        stored: dict[bytes, ChunkRef] = {}  # shared: either half may refer to the other's

        def up_to_cut() -> Iterator[tuple[int, bytes]]:
            nonlocal met
            off = 0
            for n, h in first.records():
                yield n, h
                off += n
                if off == cut:
                    met = True
                    return
                if off > cut and second is not None:
                    second.kill()  # missed: its half is dropped below

        with ThreadPoolExecutor(1, thread_name_prefix="tusk-half") as pool:
            def second_half() -> int:
                assert second is not None
                end = _store_chunks(fd, size, cut, second.records(), find, later_packs, later,
                                    stored)
                later_packs.finish()
                return end

            pending = pool.submit(second_half)
            try:
                end = _store_chunks(fd, size, 0, up_to_cut(), find, packs, result, stored)
            except BaseException:
                second.kill()
                raise
            finally:
                first.close()
            if met:
                end = pending.result()  # raises what went wrong in the second half
            else:
                second.kill()
                pending.exception()  # waits; whatever went wrong there, the half is dropped
        packs.finish()
        result.halves = "joined" if met else "dropped"
        if met:
            result.refs += later.refs
            result.new_packs.update(later.new_packs)
            result.bytes_written += later.bytes_written
            result.bytes_deduped += later.bytes_deduped
        else:  # keep only the packs of the second half that the first refers to
            used = {ref[2] for ref in result.refs} & set(later.new_packs)
            result.new_packs.update((p, later.new_packs.pop(p)) for p in used)
            later_packs.discard()
        result.size = end
    except BaseException:
        packs.abort()
        later_packs.abort()
        raise
    finally:
        first.close()
        if second is not None:
            second.close()


def _can_fork() -> bool:
    """Whether chunker children may be forked: not where gRPC's fork handlers
    are on (``GRPC_ENABLE_FORK_SUPPORT`` set true; importing :mod:`tusk` sets it
    false by default), which can crash the child while gRPC threads run."""
    return hasattr(os, "fork") and os.environ.get(
        "GRPC_ENABLE_FORK_SUPPORT", "0").lower() not in ("1", "true", "yes", "on")


def put_local_file(store: LocalObjectStore | PresignedUploads, path: str, find: FindChunks,
                   use_fork: bool = True) -> DirectPut:
    """Store the local file ``path`` as chunks in ``store`` (see the module doc):
    a local store the packs are written into, or presigned uploads to S3.

    Returns the refs to record; on any error the packs written so far stay
    unreferenced (GC removes them) and nothing is recorded. If a forked
    chunker dies (not of the file shrinking), the put starts over without one.
    """
    if use_fork and _can_fork():
        try:
            return _put_local_file(store, path, find, True)
        except _ChunkerDied:
            pass
    return _put_local_file(store, path, find, False)


def _put_local_file(store: LocalObjectStore | PresignedUploads, path: str, find: FindChunks,
                    use_fork: bool) -> DirectPut:
    result = DirectPut()
    fd = os.open(path, os.O_RDONLY)
    try:
        before = os.fstat(fd)
        size = before.st_size
        if use_fork and size >= _SPLIT_MIN and isinstance(store, LocalObjectStore):
            _store_split(fd, size, find, store, result)
        else:
            _store_whole(fd, size, store, find, use_fork, result)
        after = os.fstat(fd)
        if result.size != size or (after.st_size, after.st_mtime_ns) != (
                before.st_size, before.st_mtime_ns):
            raise FailedPrecondition(
                f"{path} changed while tusk was reading it ({size} bytes before, "
                f"{after.st_size} after); nothing was recorded: put it again once it is stable")
    finally:
        os.close(fd)
    return result


def _store_whole(fd: int, size: int, store: LocalObjectStore | PresignedUploads,
                 find: FindChunks, use_fork: bool, result: DirectPut) -> None:
    """Store the file as one stream in file order: chunked by a forked child
    (or here, one window at a time, without ``use_fork``). Puts to S3 take
    this path at any size: there the network, not chunking, sets the pace."""
    records = _records_from_child(fd, size) if use_fork and size \
        else _chunk_records_inline(fd, size)
    packs: _PackWriter | _UploadPackWriter = (
        _PackWriter(store, result) if isinstance(store, LocalObjectStore)
        else _UploadPackWriter(store, result))
    try:
        result.size = _store_chunks(fd, size, 0, records, find, packs, result)
        packs.finish()
    except BaseException:
        packs.abort()
        close = getattr(records, "close", None)
        if close is not None:
            close()
        raise


def _copy(src: int, dst: int, off: int, n: int) -> None:
    """Append ``n`` bytes of ``src`` at ``off`` to ``dst`` (in the kernel when it can)."""
    done = 0
    while done < n:
        try:
            k = os.copy_file_range(src, dst, n - done, off + done)
        except OSError:  # another file system, or no copy_file_range: copy here
            k = os.write(dst, os.pread(src, min(n - done, 8 << 20), off + done))
        if k == 0:
            raise FailedPrecondition(
                f"the file shrank while tusk was reading it (at offset {off + done}); "
                "nothing was recorded: put it again")
        done += k


_PENDING: ChunkRef = (b"", 0, "", 0)
_BATCH = 64  # chunks per dedup lookup (one round trip to the daemon each)


def _store_chunks(fd: int, size: int, start: int, records: Iterator[tuple[int, bytes]],
                  find: FindChunks, packs: _PackWriter | _UploadPackWriter,
                  result: DirectPut, local: dict[bytes, ChunkRef] | None = None) -> int:
    """Look each batch of chunks up; copy the new ones from the file into packs.

    ``records`` are the chunks of the file from offset ``start``, in order;
    their refs are appended to ``result``. Returns the offset they end at.
    ``local`` maps the chunks this put stored so far (the daemon can't know
    them yet) to their refs; two halves of a split put share it.
    The lookup of a batch (a round trip to the daemon) runs in a thread while
    the previous batch is copied and the next one read.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    off = start
    batch: list[tuple[bytes, int, int]] = []  # (digest, file offset, length)
    if local is None:
        local = {}

    def store(batch: list[tuple[bytes, int, int]],
              found: Sequence[tuple[str, int] | None]) -> None:
        # New chunks next to each other in the file are copied in one call.
        run: list[tuple[bytes, int, int]] = []
        slots: list[int] = []

        def copy() -> None:
            for slot, ref in zip(slots, packs.copy_run(fd, run), strict=True):
                result.refs[slot] = ref
                local.setdefault(ref[0], ref)
            run.clear()
            slots.clear()

        for (h, at, n), hit in zip(batch, found, strict=True):
            ref = (h, n, hit[0], hit[1]) if hit is not None else local.get(h)
            if ref is not None:
                result.bytes_deduped += n
                result.refs.append(ref)
                continue
            if h in (r[0] for r in run):  # a repeat inside this run: store it once
                copy()
                result.refs.append(local[h])
                result.bytes_deduped += n
                continue
            if run and run[-1][1] + run[-1][2] != at:
                copy()
            run.append((h, at, n))
            slots.append(len(result.refs))
            result.refs.append(_PENDING)  # filled in by copy()
            result.bytes_written += n
        copy()

    with ThreadPoolExecutor(1, thread_name_prefix="tusk-find") as lookups:
        pending: tuple[list[tuple[bytes, int, int]], Future[Any]] | None = None

        def flush() -> None:
            nonlocal pending, batch
            asked = lookups.submit(find, [h for h, _, _ in batch])
            if pending is not None:  # the previous batch, in file order
                store(pending[0], pending[1].result())
            pending, batch = (batch, asked), []

        for n, h in records:
            if n <= 0 or n > CDC_MAX or off + n > size:
                raise FailedPrecondition(
                    f"the file changed while tusk was reading it (a chunk of {n} bytes at "
                    f"offset {off} of {size}); nothing was recorded: put it again")
            batch.append((h, off, n))
            off += n
            if len(batch) >= _BATCH:
                flush()
        if batch:
            flush()
        if pending is not None:
            store(pending[0], pending[1].result())
    return off


# --- get ----------------------------------------------------------------------

_END = object()
_READ_BUFFERS = 4  # chunk buffers in flight on a get (each CDC_MAX bytes)


def read_into(store: LocalObjectStore, refs: Sequence[ChunkRef],
              write: Callable[[memoryview], Any], offset: int = 0) -> int:
    """Write the concatenation of ``refs`` (from byte ``offset``) through ``write``.

    A thread reads and verifies chunks ahead while this one writes; only
    verified bytes are ever passed to ``write``, as a view into a reused
    buffer (valid until ``write`` returns). Returns the bytes written.
    """
    todo: list[tuple[ChunkRef, int]] = []
    for ref in refs:
        n = ref[1]
        if offset >= n:
            offset -= n
            continue
        todo.append((ref, offset))
        offset = 0
    # Reused buffers: fresh memory for every chunk costs more than the copy
    # itself (first-touch page faults), and would grow with the queue.
    free: queue.Queue[bytearray] = queue.Queue()
    for _ in range(min(_READ_BUFFERS, max(1, len(todo)))):
        free.put(bytearray(max((r[1] for r, _ in todo), default=0)))
    ready: queue.Queue[object] = queue.Queue()
    stop = threading.Event()

    def reader() -> None:
        fds: dict[str, int] = {}
        try:
            for ref, skip in todo:
                buf = free.get()
                if stop.is_set():
                    return
                _read_verified(store, fds, ref, buf)
                ready.put((buf, skip, ref[1]))
            ready.put(_END)
        except BaseException as exc:  # handed to the writing thread
            ready.put(exc)
        finally:
            for fd in fds.values():
                os.close(fd)

    t = threading.Thread(target=reader, name="tusk-direct-read", daemon=True)
    t.start()
    total = 0
    try:
        while True:
            item = ready.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            buf, skip, n = cast(tuple[bytearray, int, int], item)
            with memoryview(buf) as view:
                write(view[skip:n])
            total += n - skip
            free.put(buf)
    finally:
        stop.set()
        free.put(bytearray(0))  # a reader waiting for a buffer wakes, sees stop
        t.join()
    return total


def _read_verified(store: LocalObjectStore, fds: dict[str, int], ref: ChunkRef,
                   buf: bytearray) -> None:
    """Read one chunk into ``buf[:size]`` and check its digest."""
    h, n, pack, off = ref
    fd = fds.get(pack)
    if fd is None:
        if len(fds) >= 64:
            os.close(fds.pop(next(iter(fds))))
        try:
            fd = os.open(os.path.join(store.root, pack_key(pack)), os.O_RDONLY)
        except FileNotFoundError as e:
            raise Corruption(
                f"chunk {h.hex()[:16]} is missing: pack {pack} is gone from the object store "
                f"({store.describe()}); the data it held is lost") from e
        fds[pack] = fd
    with memoryview(buf) as view:
        got = 0
        while got < n:
            k = os.preadv(fd, [view[got:n]], off + got)
            if k == 0:
                break
            got += k
        if got != n or blake3.blake3(view[:n]).digest() != h:
            raise Corruption(
                f"chunk {h.hex()[:16]} in pack {pack} (offset {off}) does not match its hash: "
                f"the object store ({store.describe()}) returned corrupt bytes")


# --- get from S3 -----------------------------------------------------------------

_RUN_MAX = 16 * 1024 * 1024  # bytes per ranged GET (adjacent chunks of one pack)
_READS = 3  # ranged GETs in flight
_READS_AHEAD = 6  # runs fetched ahead of the writer (memory: ~6 x 16 MiB)


def read_presigned_into(urls: Mapping[str, str], refs: Sequence[ChunkRef],
                        write: Callable[[memoryview], Any], offset: int = 0,
                        http: Any = None) -> int:
    """:func:`read_into` for an S3 store: ``urls`` maps each pack to a presigned
    GET URL. Adjacent chunks of a pack are fetched in one ranged GET, a few at
    once; each chunk is verified before any of its bytes reach ``write``.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    http = http if http is not None else _http_pool()
    # Runs of chunks adjacent in one pack: (pack, start, [(ref, skip)]).
    runs: list[tuple[str, int, list[tuple[ChunkRef, int]]]] = []
    for ref in refs:
        n = ref[1]
        if offset >= n:
            offset -= n
            continue
        last = runs[-1] if runs else None
        if last is not None and last[0] == ref[2] and ref[3] == last[2][-1][0][3] + \
                last[2][-1][0][1] and ref[3] + n - last[1] <= _RUN_MAX:
            last[2].append((ref, offset))
        else:
            runs.append((ref[2], ref[3], [(ref, offset)]))
        offset = 0

    def fetch(run: tuple[str, int, list[tuple[ChunkRef, int]]]) -> bytes:
        pack, start, chunks = run
        end = chunks[-1][0][3] + chunks[-1][0][1]
        url = urls.get(pack)
        if url is None:
            raise Corruption(f"no URL for pack {pack}: the daemon did not presign it")
        body = _get_range(http, pack, url, start, end)
        with memoryview(body) as view:
            for (h, n, _, off), _skip in chunks:
                if blake3.blake3(view[off - start:off - start + n]).digest() != h:
                    raise Corruption(
                        f"chunk {h.hex()[:16]} in pack {pack} (offset {off}) does not match "
                        "its hash: the S3 server returned corrupt bytes")
        return body

    total = 0
    with ThreadPoolExecutor(_READS, thread_name_prefix="tusk-read") as pool:
        ahead: list[Future[bytes]] = []
        nxt = 0
        try:
            for run in runs:
                while nxt < len(runs) and len(ahead) < _READS_AHEAD:
                    ahead.append(pool.submit(fetch, runs[nxt]))
                    nxt += 1
                body = ahead.pop(0).result()
                start = run[1]
                with memoryview(body) as view:
                    for (_, n, _, off), skip in run[2]:
                        write(view[off - start + skip:off - start + n])
                        total += n - skip
        finally:
            for f in ahead:
                f.cancel()
    return total


def _get_range(http: Any, pack: str, url: str, start: int, end: int) -> bytes:
    import urllib3

    where = url.split("?", 1)[0]
    try:
        r = http.request("GET", url, headers={"Range": f"bytes={start}-{end - 1}"},
                         preload_content=True)
    except urllib3.exceptions.HTTPError as exc:
        reason = getattr(exc, "reason", None) or exc
        raise Unavailable("S3", f"read of pack {pack} from {where}: {reason}",
                          hint="set TUSK_DIRECT=0 to read files through the daemon") from exc
    if r.status == 404:
        raise Corruption(f"pack {pack} is gone from the object store ({where}); "
                         "the data it held is lost")
    if r.status not in (200, 206):
        raise Unavailable("S3", f"read of pack {pack} from {where} answered {r.status}: "
                          f"{r.data[:300].decode(errors='replace')}",
                          hint="set TUSK_DIRECT=0 to read files through the daemon")
    data: bytes = r.data
    if r.status == 200:  # a server that ignores Range sends the whole object
        data = data[start:end]
    if len(data) != end - start:
        raise Corruption(f"pack {pack} is shorter than its chunks say ({where}): "
                         f"{len(data)} bytes at {start}, not {end - start}")
    return data


__all__ = ["DirectPut", "open_if_same", "put_local_file", "read_into", "read_presigned_into",
           "store_id"]
