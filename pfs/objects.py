"""The object store interface: where chunks, packs and index nodes live.

Implementations (each passes ``tests/test_object_store_contract.py``):

* :class:`MemoryObjectStore` -- a dict, for fast unit tests.
* :class:`LocalObjectStore`  -- a local directory (the embedded default).
* ``pfs.objects_s3.S3ObjectStore`` -- any S3 server through the ``minio`` SDK.

Contract (every implementation):

* Keys are ``/``-separated strings of printable ASCII without ``..``
  components, e.g. ``packs/ab/abcdef...``. Keys never start with ``/``.
* ``put`` is atomic: a reader sees either no object or the whole new value,
  never a partial write, even if the writer is killed mid-write. Overwriting
  an existing key replaces it (callers only overwrite with identical bytes for
  content-addressed keys, so replays are idempotent).
* ``get`` of a missing key raises :class:`pfs.errors.ObjectNotFound`.
  ``offset``/``length`` read a byte range; a range past the end is truncated.
* ``delete`` of a missing key is a no-op.
* ``list(prefix)`` yields every key that starts with ``prefix``, sorted,
  streamed (never materialised as one list by the store).
* A backend that cannot reach its server raises
  :class:`pfs.errors.Unavailable` naming the service and endpoint.
* All methods are safe to call from several threads at once.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Iterator
from typing import BinaryIO, Protocol, runtime_checkable
from urllib.parse import parse_qs, unquote, urlsplit

from pfs.errors import InvalidArgument, ObjectNotFound, Unavailable


@runtime_checkable
class ObjectStore(Protocol):
    """Blob storage addressed by string keys. See the module docstring."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically."""
        ...

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return the bytes of ``key`` (or the range ``[offset, offset+length)``)."""
        ...

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        ...

    def size(self, key: str) -> int:
        """Size in bytes of ``key``; raises ObjectNotFound when missing."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; missing is not an error."""
        ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield keys starting with ``prefix`` in sorted order."""
        ...

    def describe(self) -> str:
        """A short human description, e.g. ``local:/root/.tusk/objects``."""
        ...


# --- implementations ---------------------------------------------------------
#
# Everything below the Protocol is the implementations and the URL factory.
# ``pfs.objects_s3`` is imported lazily by :func:`open_object_store` so that the
# embedded configuration never pays for (or requires) the ``minio`` SDK.
# (The imports they need, all cheap, are at the top of the module.)


def check_key(key: str) -> None:
    """Raise :class:`InvalidArgument` unless ``key`` obeys the key grammar.

    The grammar is the contract's: non-empty ``/``-separated components of
    printable ASCII (space to ``~``), no leading or trailing ``/``, no empty,
    ``.`` or ``..`` components. Every backend checks it so that a key that
    works on one backend works on all of them (S3 would accept ``a//b``; a
    directory could not hold it).
    """
    if not key:
        raise InvalidArgument("object key is empty")
    if not all(" " <= ch <= "~" for ch in key):
        raise InvalidArgument(f"object key {key!r} must be printable ASCII")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InvalidArgument(
                f"object key {key!r} has an empty, '.' or '..' component "
                "(keys look like packs/ab/abcdef...)"
            )


def check_prefix(prefix: str) -> None:
    """Reject list prefixes that could escape a local root (``/x``, ``../x``)."""
    if prefix.startswith("/") or ".." in prefix.split("/"):
        raise InvalidArgument(f"object key prefix {prefix!r} must be relative without '..'")


def check_range(offset: int, length: int | None) -> None:
    if offset < 0 or (length is not None and length < 0):
        raise InvalidArgument(f"invalid byte range: offset={offset} length={length}")


class MemoryObjectStore:
    """An :class:`ObjectStore` in a dict, for fast unit tests.

    Values are immutable ``bytes``, so a reader holding a value is never
    affected by a later overwrite; one lock makes every method atomic.
    """

    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes) -> None:
        """Store a copy of ``data`` under ``key``."""
        check_key(key)
        value = bytes(data)  # callers may pass a bytearray/memoryview they reuse
        with self._lock:
            self._objects[key] = value

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return the object's bytes, or a range of them (truncated at the end)."""
        check_key(key)
        check_range(offset, length)
        with self._lock:
            value = self._objects.get(key)
        if value is None:
            raise ObjectNotFound(key)
        end = len(value) if length is None else offset + length
        return value[offset:end]

    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""
        check_key(key)
        with self._lock:
            return key in self._objects

    def size(self, key: str) -> int:
        """Length of the stored value; ObjectNotFound when missing."""
        check_key(key)
        with self._lock:
            value = self._objects.get(key)
        if value is None:
            raise ObjectNotFound(key)
        return len(value)

    def delete(self, key: str) -> None:
        """Forget ``key``; a missing key is not an error."""
        check_key(key)
        with self._lock:
            self._objects.pop(key, None)

    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield matching keys in sorted order.

        The matching keys are copied and sorted under the lock (a snapshot):
        the data already lives in memory, and a sorted snapshot is what makes
        iteration safe against concurrent puts.
        """
        check_prefix(prefix)
        with self._lock:
            keys = sorted(k for k in self._objects if k.startswith(prefix))
        yield from keys

    def describe(self) -> str:
        """``memory``."""
        return "memory"


#: Components starting with this are the LocalObjectStore's in-flight temp
#: files. Such names are refused as keys there and skipped by ``list``.
TEMP_PREFIX = ".tmp-"


class LocalObjectStore:
    """An :class:`ObjectStore` in a local directory: key ``a/b/c`` is file ``ROOT/a/b/c``.

    * ``put`` writes ``.tmp-<uuid>`` in the target directory and renames it
      over the key with :func:`os.replace`, which is atomic on POSIX: a reader
      or a process killed mid-put leaves either the old object or the whole
      new one. With ``fsync=True`` the temp file is fsynced before the rename
      and the directory after it (and every directory the put created), so a
      *machine* crash cannot lose an acknowledged put either; without it a
      crash of the OS may (the kernel flushes later), a killed process may not.
    * Fan-out is the caller's business: keys already look like
      ``packs/ab/abcd...``. Directories are never removed by ``delete``
      (removing them would race with a concurrent ``put`` into them).
    * Limitations of a file system, not of the contract: a key cannot also be
      a prefix of another key (``a`` and ``a/b``), and key components starting
      with ``.tmp-`` are reserved. Temp files of a killed writer stay behind
      (invisible to ``list``); nothing sweeps them yet.
    """

    def __init__(self, root: str, fsync: bool = False) -> None:
        """Open (creating if needed) the store rooted at ``root``.

        Raises:
            Unavailable: the root cannot be created or is not writable.
        """
        self._root = os.path.abspath(root)
        self._fsync = fsync
        try:
            os.makedirs(self._root, exist_ok=True)
        except OSError as exc:
            raise Unavailable(
                "local object store",
                f"{self._root}: {exc.strerror or exc}",
                hint="choose a writable directory with --storage or --data-dir",
            ) from exc
        if not os.access(self._root, os.W_OK | os.X_OK):
            raise Unavailable(
                "local object store",
                f"{self._root} is not writable",
                hint="fix its permissions or choose another directory",
            )

    @property
    def root(self) -> str:
        """The absolute root directory."""
        return self._root

    def _path(self, key: str) -> str:
        check_key(key)
        if any(part.startswith(TEMP_PREFIX) for part in key.split("/")):
            raise InvalidArgument(
                f"object key {key!r}: components starting with {TEMP_PREFIX!r} are reserved"
            )
        return os.path.join(self._root, key)

    def _makedirs(self, directory: str) -> None:
        """Create ``directory`` and its parents; with fsync, make the new entries durable."""
        if os.path.isdir(directory):
            return
        if not self._fsync:
            os.makedirs(directory, exist_ok=True)
            return
        missing: list[str] = []
        d = directory
        while not os.path.isdir(d):
            missing.append(d)
            d = os.path.dirname(d)
        os.makedirs(directory, exist_ok=True)
        # A new directory entry is durable only once its parent is fsynced.
        for created in missing:
            _fsync_dir(os.path.dirname(created))

    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` to a temp file beside the key, then rename it over the key."""
        with self.writing(key) as f:
            f.write(data)

    @contextlib.contextmanager
    def writing(self, key: str) -> Iterator[BinaryIO]:
        """Write an object through a file: ``with store.writing(key) as f: f.write(...)``.

        The same guarantees as :meth:`put` (a temp file renamed over the key when
        the block ends without an exception; nothing visible otherwise), for
        writers that produce an object in pieces (:mod:`pfs.direct`).
        """
        path = self._path(key)
        directory = os.path.dirname(path)
        try:
            self._makedirs(directory)
        except (FileExistsError, NotADirectoryError) as exc:
            raise InvalidArgument(
                f"object key {key!r} conflicts with an existing key that is a prefix of it"
            ) from exc
        tmp = os.path.join(directory, f"{TEMP_PREFIX}{uuid.uuid4().hex}")
        try:
            with open(tmp, "xb") as f:
                yield f
                if self._fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
        except IsADirectoryError as exc:
            _unlink_quietly(tmp)
            raise InvalidArgument(
                f"object key {key!r} conflicts with existing keys under {key}/"
            ) from exc
        except BaseException:
            _unlink_quietly(tmp)
            raise
        if self._fsync:
            _fsync_dir(directory)

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Read the object, or ``length`` bytes at ``offset`` (seek, not read-and-slice)."""
        path = self._path(key)
        check_range(offset, length)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        try:  # raw reads: no buffered file object per chunk read
            if length is None:
                length = os.fstat(fd).st_size - offset
            parts = []
            while length > 0:
                piece = os.pread(fd, length, offset)
                if not piece:
                    break
                parts.append(piece)
                offset += len(piece)
                length -= len(piece)
            return b"".join(parts)
        except IsADirectoryError as exc:
            raise ObjectNotFound(key) from exc
        finally:
            os.close(fd)

    def exists(self, key: str) -> bool:
        """Whether a regular file exists for ``key``."""
        return os.path.isfile(self._path(key))

    def size(self, key: str) -> int:
        """File size of ``key``; ObjectNotFound when missing."""
        path = self._path(key)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        if not os.path.isfile(path):
            raise ObjectNotFound(key)
        return st.st_size

    def delete(self, key: str) -> None:
        """Unlink the file; missing is a no-op."""
        path = self._path(key)
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            pass
        except IsADirectoryError:
            pass  # a prefix of other keys, not an object: nothing to delete

    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield keys starting with ``prefix``, sorted, walking directories lazily.

        Only one directory's entries are held at a time. Entries are sorted by
        name with ``/`` appended to directories, which is exactly their keys'
        sort order: every key under directory ``a`` starts with ``a/`` and so
        sorts after a sibling file ``a-b`` (``-`` < ``/``), as S3 sorts them.
        The walk starts at the deepest directory named by ``prefix``.
        """
        check_prefix(prefix)
        base = prefix.rpartition("/")[0]
        start = os.path.join(self._root, base) if base else self._root
        yield from self._walk(start, base + "/" if base else "", prefix)

    def _walk(self, directory: str, key_prefix: str, prefix: str) -> Iterator[str]:
        try:
            with os.scandir(directory) as it:
                entries = [
                    (e.name + "/" if e.is_dir(follow_symlinks=False) else e.name)
                    for e in it
                    if not e.name.startswith(TEMP_PREFIX)
                ]
        except (FileNotFoundError, NotADirectoryError):
            return  # the prefix names nothing, or a directory vanished mid-walk
        entries.sort()
        for name in entries:
            key = key_prefix + name
            if name.endswith("/"):
                # Descend only where keys can match: the subtree's keys all
                # start with ``key``, so either one is a prefix of the other.
                if key.startswith(prefix) or prefix.startswith(key):
                    yield from self._walk(os.path.join(directory, name[:-1]), key, prefix)
            elif key.startswith(prefix):
                yield key

    def describe(self) -> str:
        """``local:<root>``."""
        return f"local:{self._root}"


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def open_object_store(url: str) -> ObjectStore:
    """Open the object store that ``url`` names.

    URL grammar::

        memory://                        a fresh MemoryObjectStore (tests only)
        file:///ABS/DIR[?fsync=1]        LocalObjectStore at /ABS/DIR
        DIR                              a plain path (no "://"): LocalObjectStore,
                                         relative paths and ~ are resolved
        s3://BUCKET[/PREFIX][?endpoint=SCHEME://HOST[:PORT]][&region=REGION]
                                         S3ObjectStore; SCHEME http or https
                                         decides TLS; without endpoint, AWS S3
                                         (https://s3.amazonaws.com)

    Examples: ``/var/lib/tusk/objects``,
    ``s3://tusk/objects?endpoint=http://127.0.0.1:8333``,
    ``s3://my-bucket/tusk?endpoint=https://s3.eu-west-1.amazonaws.com&region=eu-west-1``.

    Credentials never go in the URL (URLs end up in logs and process
    listings): the S3 store reads ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
    (or ``MINIO_ROOT_USER``/``MINIO_ROOT_PASSWORD``) from the environment.

    Raises:
        InvalidArgument: the URL does not fit the grammar (unknown scheme or
            query parameter, endpoint without scheme, ...).
        Unavailable: the store cannot be reached or created.
    """
    if "://" not in url:
        if not url:
            raise InvalidArgument("object store URL is empty")
        return LocalObjectStore(os.path.abspath(os.path.expanduser(url)))
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}

    def unknown(allowed: set[str]) -> None:
        extra = set(query) - allowed
        if extra:
            raise InvalidArgument(
                f"object store URL {url!r}: unknown parameter(s) {', '.join(sorted(extra))}"
                f" (allowed: {', '.join(sorted(allowed)) or 'none'})"
            )

    scheme = parts.scheme.lower()
    if scheme == "memory":
        unknown(set())
        return MemoryObjectStore()
    if scheme == "file":
        unknown({"fsync"})
        if parts.netloc not in ("", "localhost"):
            raise InvalidArgument(
                f"object store URL {url!r}: file URLs take no host; write file:///ABS/DIR"
            )
        path = unquote(parts.path)
        if not path:
            raise InvalidArgument(f"object store URL {url!r} names no directory")
        fsync = query.get("fsync", "0").lower() in ("1", "true", "yes")
        return LocalObjectStore(path, fsync=fsync)
    if scheme == "s3":
        unknown({"endpoint", "region"})
        bucket = parts.netloc
        if not bucket:
            raise InvalidArgument(f"object store URL {url!r} names no bucket: s3://BUCKET/PREFIX")
        endpoint_url = query.get("endpoint", "https://s3.amazonaws.com")
        ep = urlsplit(endpoint_url)
        if ep.scheme not in ("http", "https") or not ep.netloc or ep.path not in ("", "/"):
            raise InvalidArgument(
                f"object store URL {url!r}: endpoint must look like http://HOST:PORT or "
                "https://HOST[:PORT] (the scheme decides TLS)"
            )
        from pfs.objects_s3 import S3ObjectStore  # lazy: the minio SDK is optional

        return S3ObjectStore(
            ep.netloc,
            bucket,
            prefix=unquote(parts.path).strip("/"),
            secure=ep.scheme == "https",
            region=query.get("region") or None,
        )
    raise InvalidArgument(
        f"object store URL {url!r}: unknown scheme {parts.scheme!r} "
        "(use a directory, file:///DIR, s3://BUCKET/PREFIX?endpoint=... or memory://)"
    )
