"""The S3 gateway a pipeline worker offers one datum (``pfs.s3``, ``s3_out``).

:func:`datum_gateways` builds the :data:`pps.gateway.GatewayFactory` the
daemon hands to PPS. Per datum it makes an :class:`~tusk.s3.server.S3Server`
over fixed buckets (:class:`~tusk.s3.backend.FixedBuckets`):

* ``<input name>`` (:class:`InputBucket`): read-only, the files
  ``/pfs/<input name>`` would have held (the datum's paths of that input in
  its commit), keys being their full paths without the leading ``/``;
* ``out`` (:class:`OutBucket`) with ``s3_out``: files in the datum's host
  output directory, which the worker then collects exactly like ``/pfs/out``.

The runner serves it on the sandbox's own loopback (``pps.runners.netns``), so
only the datum's user code can reach it; that is why it accepts every
request unsigned or signed with any key (``credentials=None``): nothing a
signature could keep out can connect. ``AWS_*`` variables are still set so
SDKs that insist on credentials sign happily.

Safety of ``out`` (the worker runs as root, the user code is untrusted and,
under the process runner, sees the same directory at ``/pfs/out`` and may
plant links in it): every path is walked from a directory descriptor one
component at a time with ``O_NOFOLLOW``, bodies are written to a temporary
file in a directory the sandbox cannot see and renamed into place relative
to the parent's descriptor, and files are opened with ``O_NOFOLLOW`` and
checked with ``fstat``. A link planted by user code is never followed.

End of a datum: :meth:`DatumS3Gateway.stop` closes a gate under a lock;
every change to ``out`` (mkdir, rename, unlink) happens under that lock after
checking the gate, so once ``stop`` returns nothing more lands in the output
directory, even from a request still streaming on a kept-alive connection
(which then answers ``ServiceUnavailable``).
"""

from __future__ import annotations

import errno
import hashlib
import heapq
import os
import shutil
import socket
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from pfs.api import PFS
from pfs.blobs import ChunkRef
from pfs.tree import FileEntry, Tree
from pps.gateway import OUT_BUCKET, DatumGateway, GatewayFactory, S3Scope
from tusk.s3.backend import (
    Bucket,
    DeleteResult,
    FixedBuckets,
    ListPage,
    ObjectData,
    ObjectInfo,
    PartInfo,
    S3Error,
    UploadInfo,
    no_such_key,
    page_from_sorted,
    read_only,
)
from tusk.s3.server import DEFAULT_REGION, S3Server

__all__ = ["DATUM_PORT", "DatumS3Gateway", "InputBucket", "OutBucket", "datum_gateways",
           "pfs_datum_gateways"]

#: The port of the gateway on the sandbox's loopback (its own network
#: namespace: nothing else of the host listens there).
DATUM_PORT = 9000
#: What the AWS_* variables say (any key and secret are accepted).
ACCESS_KEY = "tusk"
SECRET_KEY = "tusk-datum-gateway"

PIECE = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

TreeFor = Callable[[str, str], Tree]
ReadChunks = Callable[[list[ChunkRef], int], Iterator[bytes]]


class _Gate:
    """Open while the datum runs; every change to ``out`` holds ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.closed = False

    def check(self, resource: str = "") -> None:
        if self.closed:
            raise S3Error("ServiceUnavailable", "the datum this gateway served is over",
                          resource)


class _GatedBuckets(FixedBuckets):
    def __init__(self, buckets: dict[str, Bucket], gate: _Gate, created: float) -> None:
        super().__init__(buckets, created)
        self._gate = gate

    def bucket(self, name: str) -> Bucket:
        self._gate.check(f"/{name}")
        return super().bucket(name)


# -- inputs -----------------------------------------------------------------------


class _ChunkData:
    def __init__(self, info: ObjectInfo, refs: list[ChunkRef], read: ReadChunks) -> None:
        self._info, self._refs, self._read = info, refs, read

    @property
    def info(self) -> ObjectInfo:
        return self._info

    def read(self, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        left = self._info.size - offset if length is None else length
        for piece in self._read(self._refs, offset):
            if left <= 0:
                return
            if len(piece) > left:
                piece = piece[:left]
            left -= len(piece)
            yield piece


class InputBucket:
    """One s3 input of a datum: the files at its paths in its commit, read-only.

    Args:
        name: the bucket (the input's name).
        tree: the input commit's index.
        paths: the datum's paths of this input (``/`` for the whole commit);
            a key is visible if its path is one of them or below one.
        read_chunks: ``(refs, offset)`` -> the bytes from ``offset``.
        commit: the commit ID (objects' version).
    """

    read_only = True
    versioned = False

    def __init__(self, name: str, tree: Tree, paths: Sequence[str], read_chunks: ReadChunks,
                 commit: str, modified: float) -> None:
        self._name = name
        self._tree = tree
        norm = sorted({("/" + p.strip("/")) if p.strip("/") else "/" for p in paths})
        # A path below another one adds nothing.
        self._paths = [p for p in norm if not any(_under(p, q) for q in norm if q != p)]
        self._read = read_chunks
        self._commit = commit
        self._modified = modified

    @property
    def name(self) -> str:
        return self._name

    def _visible(self, path: str) -> bool:
        return any(_under(path, p) for p in self._paths)

    def _info(self, e: FileEntry) -> ObjectInfo:
        return ObjectInfo(e.path.lstrip("/"), e.size, e.hash.hex(), self._modified)

    def _entries(self, start_after: str) -> Iterator[ObjectInfo]:
        its = [self._tree.files_in_byte_order(p, start_after) for p in self._paths]
        for e in heapq.merge(*its, key=lambda f: f.path):
            yield self._info(e)

    def list_objects(self, prefix: str = "", start_after: str = "", delimiter: str = "",
                     max_keys: int = 1000) -> ListPage:
        # Seek: every key with ``prefix`` sorts after ``prefix`` minus its last character.
        seek = max(start_after, prefix[:-1]) if prefix else start_after
        return page_from_sorted(
            self._entries("/" + seek if seek else ""), prefix, start_after, delimiter,
            max_keys, skip_to=lambda cp: self._entries("/" + cp + "\U0010ffff"))

    def _file(self, key: str) -> FileEntry:
        path = "/" + key
        e = self._tree.lookup(path) if self._visible(path) else None
        if not isinstance(e, FileEntry):
            raise no_such_key(self._name, key, f"input {self._name} of this datum at commit "
                              f"{self._commit}")
        return e

    def head_object(self, key: str, version_id: str | None = None) -> ObjectInfo:
        return self._info(self._file(key))

    def get_object(self, key: str, version_id: str | None = None) -> ObjectData:
        e = self._file(key)
        return _ChunkData(self._info(e), self._tree.chunks(e), self._read)

    def _denied(self) -> S3Error:
        return read_only(self._name, "it is an input of the datum; write to bucket "
                         f"{OUT_BUCKET!r} (s3_out: true) instead")

    def put_object(self, key: str, body: Iterable[bytes], content_type: str = "") -> ObjectInfo:
        raise self._denied()

    def copy_object(self, key: str, source: Bucket, source_key: str,
                    source_version: str | None = None) -> ObjectInfo:
        raise self._denied()

    def delete_object(self, key: str) -> None:
        raise self._denied()

    def delete_objects(self, keys: Sequence[str]) -> list[DeleteResult]:
        raise self._denied()

    def is_empty(self) -> bool:
        return next(self._entries(""), None) is None

    def create_multipart(self, key: str, content_type: str = "") -> str:
        raise self._denied()

    def upload_part(self, upload_id: str, number: int, body: Iterable[bytes]) -> PartInfo:
        raise self._denied()

    def upload_part_copy(self, upload_id: str, number: int, source: Bucket, source_key: str,
                         source_version: str | None = None,
                         byte_range: tuple[int, int] | None = None) -> PartInfo:
        raise self._denied()

    def complete_multipart(self, upload_id: str, parts: Sequence[tuple[int, str]]) -> ObjectInfo:
        raise self._denied()

    def abort_multipart(self, upload_id: str) -> None:
        raise self._denied()

    def list_parts(self, upload_id: str, after: int = 0, max_parts: int = 1000
                   ) -> tuple[list[PartInfo], bool]:
        raise S3Error("NoSuchUpload", "input buckets have no uploads")

    def list_multipart_uploads(self, prefix: str = "") -> list[UploadInfo]:
        return []


def _under(path: str, root: str) -> bool:
    return root == "/" or path == root or path.startswith(root + "/")


# -- out ----------------------------------------------------------------------------


class _FileData:
    def __init__(self, info: ObjectInfo, fd: int) -> None:
        self._info, self._fd = info, fd

    @property
    def info(self) -> ObjectInfo:
        return self._info

    def read(self, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        left = self._info.size - offset if length is None else length
        try:
            while left > 0:
                piece = os.pread(self._fd, min(PIECE, left), offset)
                if not piece:
                    return
                offset += len(piece)
                left -= len(piece)
                yield piece
        finally:
            self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()


class OutBucket:
    """Bucket ``out``: objects are files under the datum's host output directory.

    See the module docstring for why no path here follows a link. Keys with
    an empty component (``a//b``) are refused; a key ending in ``/`` (a
    "folder" some tools create) makes the directory only.
    """

    read_only = False
    versioned = False

    def __init__(self, root: str, tmp: str, gate: _Gate) -> None:
        self._root = root
        self._tmp = tmp
        self._gate = gate
        self._etags: dict[tuple[int, int, int], str] = {}  # (ino, mtime_ns, size) -> md5
        self._uploads: dict[str, tuple[str, float]] = {}  # upload id -> (key, started)
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return OUT_BUCKET

    # -- paths ------------------------------------------------------------------

    def _parts(self, key: str) -> list[str]:
        parts = key.split("/")
        if key.endswith("/"):
            parts = parts[:-1]
        if any(p == "" for p in parts):
            raise S3Error("InvalidArgument", f"the key {key!r} has an empty path component "
                          "(//): it cannot name a file of the output", f"/out/{key}")
        return parts

    def _open_dir(self, parts: Sequence[str], key: str, create: bool) -> int | None:
        """A descriptor of directory ``parts`` under the root, never through a link.

        None when it does not exist (and ``create`` is False).
        """
        fd = os.open(self._root, _DIR_FLAGS)
        try:
            for i, p in enumerate(parts):
                try:
                    nxt = os.open(p, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    try:
                        os.mkdir(p, 0o777, dir_fd=fd)
                    except FileExistsError:
                        pass
                    nxt = os.open(p, _DIR_FLAGS, dir_fd=fd)
                except OSError as e:
                    if e.errno in (errno.ENOTDIR, errno.ELOOP):
                        if not create:
                            os.close(fd)
                            return None
                        raise S3Error("InvalidRequest", f"{'/'.join(parts[:i + 1])} is not a "
                                      f"directory in the output, so {key!r} cannot be "
                                      "written below it", f"/out/{key}") from None
                    raise
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_file(self, key: str) -> tuple[int, os.stat_result]:
        parts = self._parts(key)
        if key.endswith("/"):
            raise no_such_key(OUT_BUCKET, key)
        d = self._open_dir(parts[:-1], key, create=False)
        if d is None:
            raise no_such_key(OUT_BUCKET, key)
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=d)
        except OSError:
            raise no_such_key(OUT_BUCKET, key) from None
        finally:
            os.close(d)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise no_such_key(OUT_BUCKET, key, "not a regular file")
        return fd, st

    def _etag(self, fd: int, st: os.stat_result) -> str:
        k = (st.st_ino, st.st_mtime_ns, st.st_size)
        etag = self._etags.get(k)
        if etag is None:
            h = hashlib.md5(usedforsecurity=False)
            offset = 0
            while piece := os.pread(fd, PIECE, offset):
                h.update(piece)
                offset += len(piece)
            etag = h.hexdigest()
            self._etags[k] = etag
        return etag

    def _info(self, key: str, fd: int, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(key, st.st_size, self._etag(fd, st), st.st_mtime)

    # -- reading ----------------------------------------------------------------

    def _walk(self, fd: int, prefix: str, start_after: str) -> Iterator[ObjectInfo]:
        with os.scandir(fd) as it:
            entries = []
            for e in it:
                st = e.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    entries.append((e.name + "/", True))
                elif stat.S_ISREG(st.st_mode):
                    entries.append((e.name, False))
        for name, is_dir in sorted(entries):  # byte order of full keys
            key = prefix + name
            if is_dir:
                if start_after[:len(key)] > key:
                    continue  # every key below sorts before start_after
                try:
                    sub = os.open(name[:-1], _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    continue
                try:
                    yield from self._walk(sub, key, start_after)
                finally:
                    os.close(sub)
            elif key > start_after:
                try:
                    f = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                                | os.O_CLOEXEC, dir_fd=fd)
                except OSError:
                    continue
                try:
                    yield self._info(key, f, os.fstat(f))
                finally:
                    os.close(f)

    def _entries(self, start_after: str) -> Iterator[ObjectInfo]:
        fd = os.open(self._root, _DIR_FLAGS)
        try:
            yield from self._walk(fd, "", start_after)
        finally:
            os.close(fd)

    def list_objects(self, prefix: str = "", start_after: str = "", delimiter: str = "",
                     max_keys: int = 1000) -> ListPage:
        # Walks the datum's own output (pruning what sorts before the seek point).
        seek = max(start_after, prefix[:-1]) if prefix else start_after
        return page_from_sorted(self._entries(seek), prefix, start_after, delimiter, max_keys,
                                skip_to=lambda cp: self._entries(cp + "\U0010ffff"))

    def head_object(self, key: str, version_id: str | None = None) -> ObjectInfo:
        fd, st = self._open_file(key)
        try:
            return self._info(key, fd, st)
        finally:
            os.close(fd)

    def get_object(self, key: str, version_id: str | None = None) -> ObjectData:
        fd, st = self._open_file(key)
        try:
            info = self._info(key, fd, st)
        except BaseException:
            os.close(fd)
            raise
        return _FileData(info, fd)

    def is_empty(self) -> bool:
        return next(self._entries(""), None) is None

    # -- writing ----------------------------------------------------------------

    def _spool(self, body: Iterable[bytes], key: str) -> tuple[str, int, str]:
        """Write ``body`` to a new file in the private temp directory:
        (its name there, size, md5 hex)."""
        name = uuid.uuid4().hex
        path = os.path.join(self._tmp, name)
        h = hashlib.md5(usedforsecurity=False)
        size = 0
        try:
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644),
                      "wb") as f:
                for piece in body:
                    self._gate.check(f"/out/{key}")  # a datum that ended stops its uploads
                    f.write(piece)
                    h.update(piece)
                    size += len(piece)
        except BaseException:
            _unlink(path)
            raise
        return name, size, h.hexdigest()

    def _commit(self, key: str, tmp_name: str) -> os.stat_result:
        """Move a spooled file to ``key`` (under the gate's lock)."""
        parts = self._parts(key)
        tmp_fd = os.open(self._tmp, _DIR_FLAGS)
        try:
            with self._gate.lock:
                self._gate.check(f"/out/{key}")
                d = self._open_dir(parts[:-1], key, create=True)
                assert d is not None
                try:
                    try:
                        os.rename(tmp_name, parts[-1], src_dir_fd=tmp_fd, dst_dir_fd=d)
                    except (IsADirectoryError, NotADirectoryError):
                        raise S3Error("InvalidRequest", f"{key!r} is a directory in the "
                                      "output (other keys are below it)",
                                      f"/out/{key}") from None
                    return os.stat(parts[-1], dir_fd=d, follow_symlinks=False)
                finally:
                    os.close(d)
        finally:
            os.close(tmp_fd)
            _unlink(os.path.join(self._tmp, tmp_name))

    def put_object(self, key: str, body: Iterable[bytes], content_type: str = "") -> ObjectInfo:
        parts = self._parts(key)
        if key.endswith("/"):  # a "folder": the directory only
            for _ in body:
                pass
            with self._gate.lock:
                self._gate.check(f"/out/{key}")
                d = self._open_dir(parts, key, create=True)
                if d is not None:
                    os.close(d)
            return ObjectInfo(key, 0, hashlib.md5(b"", usedforsecurity=False).hexdigest(),
                              time.time())
        name, size, md5 = self._spool(body, key)
        st = self._commit(key, name)
        self._etags[(st.st_ino, st.st_mtime_ns, st.st_size)] = md5
        return ObjectInfo(key, size, md5, st.st_mtime)

    def copy_object(self, key: str, source: Bucket, source_key: str,
                    source_version: str | None = None) -> ObjectInfo:
        data = source.get_object(source_key, source_version)
        return self.put_object(key, data.read(0, None))

    def delete_object(self, key: str) -> None:
        parts = self._parts(key)
        with self._gate.lock:
            self._gate.check(f"/out/{key}")
            d = self._open_dir(parts[:-1], key, create=False)
            if d is None:
                return
            try:
                os.unlink(parts[-1], dir_fd=d)
            except (FileNotFoundError, IsADirectoryError, PermissionError):
                pass  # S3: deleting what is not an object succeeds
            finally:
                os.close(d)

    def delete_objects(self, keys: Sequence[str]) -> list[DeleteResult]:
        out: list[DeleteResult] = []
        for k in keys:
            try:
                self.delete_object(k)
                out.append(DeleteResult(k))
            except S3Error as e:
                out.append(DeleteResult(k, e))
        return out

    # -- multipart: parts are spooled files; completion concatenates them -----

    def _part_path(self, upload_id: str, number: int) -> str:
        return os.path.join(self._tmp, f"{upload_id}.{number:05d}")

    def _upload(self, upload_id: str) -> tuple[str, float]:
        with self._lock:
            u = self._uploads.get(upload_id)
        if u is None:
            raise S3Error("NoSuchUpload", f"no upload {upload_id!r} in bucket 'out' (completed, "
                          "aborted, or from another datum)")
        return u

    def create_multipart(self, key: str, content_type: str = "") -> str:
        self._parts(key)
        self._gate.check(f"/out/{key}")
        uid = uuid.uuid4().hex
        with self._lock:
            self._uploads[uid] = (key, time.time())
        return uid

    def upload_part(self, upload_id: str, number: int, body: Iterable[bytes]) -> PartInfo:
        key, _ = self._upload(upload_id)
        name, size, md5 = self._spool(body, key)
        os.replace(os.path.join(self._tmp, name), self._part_path(upload_id, number))
        return PartInfo(number, size, md5, time.time())

    def upload_part_copy(self, upload_id: str, number: int, source: Bucket, source_key: str,
                         source_version: str | None = None,
                         byte_range: tuple[int, int] | None = None) -> PartInfo:
        data = source.get_object(source_key, source_version)
        if byte_range is None:
            return self.upload_part(upload_id, number, data.read(0, None))
        first, last = byte_range
        return self.upload_part(upload_id, number, data.read(first, last - first + 1))

    def _part_infos(self, upload_id: str) -> list[PartInfo]:
        prefix = f"{upload_id}."
        infos = []
        for n in sorted(os.listdir(self._tmp)):
            if n.startswith(prefix):
                p = os.path.join(self._tmp, n)
                h = hashlib.md5(usedforsecurity=False)
                with open(p, "rb") as f:
                    while piece := f.read(PIECE):
                        h.update(piece)
                st = os.stat(p)
                infos.append(PartInfo(int(n[len(prefix):]), st.st_size, h.hexdigest(),
                                      st.st_mtime))
        return infos

    def complete_multipart(self, upload_id: str, parts: Sequence[tuple[int, str]]) -> ObjectInfo:
        key, _ = self._upload(upload_id)
        numbers = [n for n, _ in parts]
        if numbers != sorted(set(numbers)):
            raise S3Error("InvalidPartOrder", "parts must be listed in ascending order, once each")
        have = {p.number: p for p in self._part_infos(upload_id)}
        digests = b""
        for n, etag in parts:
            p = have.get(n)
            if p is None or p.etag != etag.strip('"'):
                raise S3Error("InvalidPart", f"part {n} was not uploaded, or its ETag differs")
            digests += bytes.fromhex(p.etag)

        def body() -> Iterator[bytes]:
            for n in numbers:
                with open(self._part_path(upload_id, n), "rb") as f:
                    while piece := f.read(PIECE):
                        yield piece

        name, size, _ = self._spool(body(), key)
        st = self._commit(key, name)
        etag = f"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(parts)}"
        self._etags[(st.st_ino, st.st_mtime_ns, st.st_size)] = etag
        self.abort_multipart(upload_id)
        return ObjectInfo(key, size, etag, st.st_mtime)

    def abort_multipart(self, upload_id: str) -> None:
        self._upload(upload_id)
        with self._lock:
            self._uploads.pop(upload_id, None)
        for n in os.listdir(self._tmp):
            if n.startswith(f"{upload_id}."):
                _unlink(os.path.join(self._tmp, n))

    def list_parts(self, upload_id: str, after: int = 0, max_parts: int = 1000
                   ) -> tuple[list[PartInfo], bool]:
        self._upload(upload_id)
        parts = [p for p in self._part_infos(upload_id) if p.number > after]
        return parts[:max_parts], len(parts) > max_parts

    def list_multipart_uploads(self, prefix: str = "") -> list[UploadInfo]:
        with self._lock:
            return sorted((UploadInfo(uid, k, t) for uid, (k, t) in self._uploads.items()
                           if k.startswith(prefix)), key=lambda u: (u.key, u.initiated))


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# -- the gateway ----------------------------------------------------------------------


class DatumS3Gateway:
    """One datum's gateway (a :class:`pps.gateway.DatumGateway`)."""

    def __init__(self, buckets: dict[str, Bucket], gate: _Gate, tmp: str | None,
                 port: int) -> None:
        self._gate = gate
        self._tmp = tmp
        self._port = port
        self._server = S3Server(_GatedBuckets(buckets, gate, time.time()), credentials=None)
        self._sock: socket.socket | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def env(self) -> Mapping[str, str]:
        return {
            "S3_ENDPOINT": f"http://127.0.0.1:{self._port}",
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": DEFAULT_REGION,
            "AWS_DEFAULT_REGION": DEFAULT_REGION,
        }

    def serve(self, sock: socket.socket) -> None:
        self._server.serve_socket(sock)
        self._sock = sock

    def stop(self) -> None:
        with self._gate.lock:
            self._gate.closed = True
        sock, self._sock = self._sock, None
        if sock is not None:
            # stop() runs after every datum, and closing waits for the accept
            # loop to notice (its poll: 200 ms per datum measured with the
            # default). Shutting the listener down wakes that poll at once.
            try:
                sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass
            self._server.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


def datum_gateways(tree_for: TreeFor, read_chunks: ReadChunks,
                   port: int = DATUM_PORT) -> GatewayFactory:
    """The factory PPS calls per datum run (see :mod:`pps.gateway`).

    Args:
        tree_for: ``(repo, commit)`` -> the commit's index.
        read_chunks: ``(refs, offset)`` -> the bytes of the chunks from ``offset``.
    """

    def make(scope: S3Scope) -> DatumGateway:
        gate = _Gate()
        now = time.time()
        buckets: dict[str, Bucket] = {}
        for name, recs in scope.inputs.items():
            first = recs[0]
            buckets[name] = InputBucket(name, tree_for(first.repo, first.commit),
                                        [r.path or "/" for r in recs], read_chunks,
                                        first.commit, now)
        tmp = None
        if scope.out_dir is not None:
            # Beside the output directory (same filesystem: renames), out of the
            # sandbox's sight (only out_dir itself is shown as /pfs/out).
            tmp = f"{scope.out_dir.rstrip('/')}.s3tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            os.makedirs(tmp, mode=0o700)
            buckets[OUT_BUCKET] = OutBucket(scope.out_dir, tmp, gate)
        return DatumS3Gateway(buckets, gate, tmp, port)

    return make


def pfs_datum_gateways(pfs: PFS, port: int = DATUM_PORT) -> GatewayFactory:
    """:func:`datum_gateways` reading commits and chunks of ``pfs``."""
    return datum_gateways(pfs.commit_tree, pfs.blobs.read_chunks, port)
