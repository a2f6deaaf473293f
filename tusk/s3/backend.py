"""What the S3 server calls: buckets resolved by name, and their operations.

The HTTP side (:mod:`tusk.s3.server`) parses requests, checks signatures and
writes S3's XML; everything about *data* goes through two small interfaces
defined here, so one server class serves several worlds:

* the daemon's gateway over all of PFS (:mod:`tusk.s3.pfs_backend`): every
  branch of every repo is a bucket (``branch.repo[.project]``), a commit's
  bucket is read-only;
* a per-datum gateway of a pipeline worker, whose buckets are fixed: e.g. the
  bucket ``<input name>`` is one input commit (read-only) and ``out`` a
  directory on the host.

:class:`BucketResolver` maps a bucket name to a :class:`Bucket` (or raises
:class:`S3Error` ``NoSuchBucket``); a :class:`Bucket` lists, reads, writes and
deletes objects, and runs multipart uploads. Implementations raise only
:class:`S3Error` (with S3's error code) for anything the client did wrong;
any other exception becomes a 500 ``InternalError`` whose message is the
exception's text (never a traceback).

Contract, for every implementation:

* Keys are S3 object keys without a leading ``/`` (``a/b.txt``). The server
  rejects keys with ``..`` or ``.`` components, NUL or other control
  characters, and empty keys, before any backend sees them.
* :meth:`Bucket.list_objects` returns keys in ascending byte order, strictly
  after ``start_after`` (``""``: from the start), only those starting with
  ``prefix``; with a ``delimiter``, keys containing it after the prefix are
  rolled up into common prefixes (each counted once against ``max_keys``).
  It must cost O(page), not O(bucket): implementations seek, they do not
  walk from the start (see :func:`page_from_sorted` for a helper that does
  the roll-up over any sorted iterator of keys that starts at the seek
  point).
* :meth:`Bucket.get_object` returns an :class:`ObjectData`: the object's
  :class:`ObjectInfo` at once (so the server can answer conditional and
  range requests) and :meth:`ObjectData.read` to stream a byte range later.
  Reading must stream (yield pieces of at most a few MiB), never load the
  whole object.
* :meth:`Bucket.put_object` consumes an iterable of byte pieces (already
  decoded from aws-chunked framing and signature-checked) and must not hold
  the whole body in memory. It is atomic: readers see the old object or the
  new one, never part; if iterating ``body`` raises, nothing is written.
* ``version_id`` selects an older version where the backend has versions (PFS:
  a commit ID); ``None`` means the current one.
* ETags are returned *without* quotes; the server adds them.
* Read-only buckets raise ``S3Error("AccessDenied", ...)`` for writes.
* Multipart uploads are invisible until :meth:`Bucket.complete_multipart`;
  aborting (or never completing) leaves nothing visible.

Thread safety: the server calls these from many threads at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

# -- errors -------------------------------------------------------------------

#: S3 error code -> HTTP status. Codes not listed here answer 400.
STATUS: dict[str, int] = {
    "AccessDenied": 403,
    "BadDigest": 400,
    "BucketAlreadyExists": 409,
    "BucketAlreadyOwnedByYou": 409,
    "BucketNotEmpty": 409,
    "EntityTooLarge": 400,
    "EntityTooSmall": 400,
    "IncompleteBody": 400,
    "InternalError": 500,
    "InvalidAccessKeyId": 403,
    "InvalidArgument": 400,
    "InvalidBucketName": 400,
    "InvalidDigest": 400,
    "InvalidPart": 400,
    "InvalidPartOrder": 400,
    "InvalidRange": 416,
    "InvalidRequest": 400,
    "MalformedXML": 400,
    "MethodNotAllowed": 405,
    "MissingContentLength": 411,
    "NoSuchBucket": 404,
    "NoSuchKey": 404,
    "NoSuchUpload": 404,
    "NoSuchVersion": 404,
    "NotImplemented": 501,
    "NotModified": 304,
    "PreconditionFailed": 412,
    "RequestTimeTooSkewed": 403,
    "ServiceUnavailable": 503,
    "SignatureDoesNotMatch": 403,
    "XAmzContentSHA256Mismatch": 400,
}


class S3Error(Exception):
    """An S3 error answer: ``code`` (S3's), a message that names the problem
    and the fix, and the resource (``/bucket/key``) it concerns."""

    def __init__(self, code: str, message: str, resource: str = "",
                 status: int | None = None, **extra: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.resource = resource
        self.status = status if status is not None else STATUS.get(code, 400)
        #: More elements for the XML body (e.g. ``BucketName``, ``Key``).
        self.extra = dict(extra)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def no_such_bucket(name: str, hint: str = "") -> S3Error:
    return S3Error("NoSuchBucket", f"the bucket {name!r} does not exist"
                   + (f": {hint}" if hint else ""), f"/{name}", BucketName=name)


def no_such_key(bucket: str, key: str, hint: str = "") -> S3Error:
    return S3Error("NoSuchKey", f"no object {key!r} in bucket {bucket!r}"
                   + (f" ({hint})" if hint else ""), f"/{bucket}/{key}", Key=key)


def read_only(bucket: str, why: str = "") -> S3Error:
    return S3Error("AccessDenied", f"bucket {bucket!r} is read-only"
                   + (f": {why}" if why else ""), f"/{bucket}")


# -- records ------------------------------------------------------------------


@dataclass(frozen=True)
class BucketInfo:
    """A bucket in ListBuckets: its name and creation time (epoch seconds)."""

    name: str
    created: float


@dataclass(frozen=True)
class ObjectInfo:
    """An object's metadata.

    Attributes:
        key: the object key (no leading slash).
        size: length in bytes.
        etag: entity tag *without* quotes (stable for the same content).
        last_modified: epoch seconds.
        version_id: the version this is (PFS: the commit ID); "" if unversioned.
        content_type: the MIME type to answer with.
    """

    key: str
    size: int
    etag: str
    last_modified: float
    version_id: str = ""
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class ListPage:
    """One page of a listing.

    Attributes:
        objects: the keys of this page, in byte order.
        common_prefixes: rolled-up prefixes (with a delimiter), in byte order.
        truncated: more keys follow.
        next_start_after: where the next page starts (the last key or common
            prefix of this page), when ``truncated``.
    """

    objects: list[ObjectInfo] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    next_start_after: str = ""


@dataclass(frozen=True)
class PartInfo:
    """An uploaded part: number (1..10000), size, etag (no quotes), time."""

    number: int
    size: int
    etag: str
    last_modified: float


@dataclass(frozen=True)
class UploadInfo:
    """A multipart upload in progress: its ID, object key, start time."""

    upload_id: str
    key: str
    initiated: float


@dataclass(frozen=True)
class DeleteResult:
    """The outcome of one key of DeleteObjects: ``error`` is None on success."""

    key: str
    error: S3Error | None = None


# -- interfaces ---------------------------------------------------------------


class ObjectData(Protocol):
    """An object opened for reading."""

    @property
    def info(self) -> ObjectInfo:
        """Its metadata (known before any byte is read)."""
        ...

    def read(self, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Stream ``length`` bytes (None: to the end) from ``offset``, in
        pieces of at most a few MiB. The server checks ranges first, so
        ``0 <= offset <= size`` always."""
        ...


@runtime_checkable
class Bucket(Protocol):
    """One bucket's objects. See the module docstring for the contract."""

    @property
    def name(self) -> str:
        """The bucket's name, as the client spelled it."""
        ...

    @property
    def read_only(self) -> bool:
        """True if every write answers AccessDenied."""
        ...

    @property
    def versioned(self) -> bool:
        """True if objects have versions (GetBucketVersioning answers Enabled)."""
        ...

    def list_objects(self, prefix: str = "", start_after: str = "", delimiter: str = "",
                     max_keys: int = 1000) -> ListPage:
        """One page of keys (see the module contract: byte order, seek, roll-up)."""
        ...

    def head_object(self, key: str, version_id: str | None = None) -> ObjectInfo:
        """An object's metadata; ``NoSuchKey`` (or ``NoSuchVersion``) if absent."""
        ...

    def get_object(self, key: str, version_id: str | None = None) -> ObjectData:
        """Open an object for reading; the same errors as :meth:`head_object`."""
        ...

    def put_object(self, key: str, body: Iterable[bytes],
                   content_type: str = "") -> ObjectInfo:
        """Store ``body`` (streamed) under ``key``, atomically."""
        ...

    def copy_object(self, key: str, source: Bucket, source_key: str,
                    source_version: str | None = None) -> ObjectInfo:
        """Make ``key`` a copy of ``source``'s ``source_key`` (by reference
        where both buckets share storage; otherwise by streaming)."""
        ...

    def delete_object(self, key: str) -> None:
        """Remove ``key``. Deleting a missing key succeeds (S3's rule)."""
        ...

    def delete_objects(self, keys: Sequence[str]) -> list[DeleteResult]:
        """Remove several keys at once (one commit for PFS); one result each."""
        ...

    def is_empty(self) -> bool:
        """True if the bucket holds no object (DeleteBucket's precondition)."""
        ...

    # -- multipart ----------------------------------------------------------

    def create_multipart(self, key: str, content_type: str = "") -> str:
        """Start an upload of ``key``; returns its upload ID."""
        ...

    def upload_part(self, upload_id: str, number: int, body: Iterable[bytes]) -> PartInfo:
        """Store part ``number`` (1..10000) of an upload, streamed; a part
        uploaded again replaces the earlier one. ``NoSuchUpload`` if the
        upload is unknown (completed, aborted or swept)."""
        ...

    def upload_part_copy(self, upload_id: str, number: int, source: Bucket, source_key: str,
                         source_version: str | None = None,
                         byte_range: tuple[int, int] | None = None) -> PartInfo:
        """UploadPartCopy: part ``number`` is (a range, inclusive, of) another object."""
        ...

    def complete_multipart(self, upload_id: str, parts: Sequence[tuple[int, str]]) -> ObjectInfo:
        """Assemble the object from ``parts`` ((number, etag) in ascending
        order; ``InvalidPartOrder`` otherwise, ``InvalidPart`` if one is
        missing or its etag differs) and make it visible atomically."""
        ...

    def abort_multipart(self, upload_id: str) -> None:
        """Drop an upload and its parts (``NoSuchUpload`` if unknown)."""
        ...

    def list_parts(self, upload_id: str, after: int = 0, max_parts: int = 1000
                   ) -> tuple[list[PartInfo], bool]:
        """Parts numbered above ``after``, ascending; and whether more follow."""
        ...

    def list_multipart_uploads(self, prefix: str = "") -> list[UploadInfo]:
        """Uploads in progress in this bucket whose key starts with ``prefix``."""
        ...


@runtime_checkable
class BucketResolver(Protocol):
    """Bucket names to buckets: what an :class:`~tusk.s3.server.S3Server` serves."""

    def bucket(self, name: str) -> Bucket:
        """The bucket called ``name``; ``S3Error("NoSuchBucket")`` if there is
        none, ``S3Error("InvalidBucketName")`` if the name cannot be one."""
        ...

    def list_buckets(self) -> list[BucketInfo]:
        """Every bucket, sorted by name."""
        ...

    def create_bucket(self, name: str) -> None:
        """CreateBucket. A fixed set of buckets raises ``AccessDenied`` (or
        ``BucketAlreadyOwnedByYou`` for one that exists)."""
        ...

    def delete_bucket(self, name: str) -> None:
        """DeleteBucket: ``BucketNotEmpty`` unless it holds no object."""
        ...


# -- helpers for implementations -----------------------------------------------


class FixedBuckets:
    """A :class:`BucketResolver` over a fixed mapping of names to buckets
    (a per-datum gateway: inputs read-only, ``out`` writable). Buckets can be
    neither created nor deleted."""

    def __init__(self, buckets: dict[str, Bucket], created: float = 0.0) -> None:
        self._buckets = dict(buckets)
        self._created = created

    def bucket(self, name: str) -> Bucket:
        b = self._buckets.get(name)
        if b is None:
            raise no_such_bucket(name, "this gateway serves only "
                                 + ", ".join(sorted(self._buckets)))
        return b

    def list_buckets(self) -> list[BucketInfo]:
        return [BucketInfo(n, self._created) for n in sorted(self._buckets)]

    def create_bucket(self, name: str) -> None:
        if name in self._buckets:
            raise S3Error("BucketAlreadyOwnedByYou", f"bucket {name!r} exists already",
                          f"/{name}", BucketName=name)
        raise S3Error("AccessDenied", f"this gateway serves a fixed set of buckets "
                      f"({', '.join(sorted(self._buckets))}); {name!r} cannot be created",
                      f"/{name}")

    def delete_bucket(self, name: str) -> None:
        self.bucket(name)
        raise S3Error("AccessDenied", f"this gateway serves a fixed set of buckets; "
                      f"{name!r} cannot be deleted", f"/{name}")


def page_from_sorted(entries: Iterable[ObjectInfo], prefix: str, start_after: str,
                     delimiter: str, max_keys: int,
                     skip_to: Callable[[str], Iterable[ObjectInfo]] | None = None) -> ListPage:
    """Build a :class:`ListPage` from ``entries``: objects in ascending key
    order, starting at or before the first key after ``start_after`` that has
    ``prefix`` (earlier keys are skipped here).

    With a delimiter, every key under a common prefix after the first is
    skipped; ``skip_to(cp)`` (optional) returns a fresh iterator of the
    entries after every key starting with ``cp``, so a roll-up of many keys
    costs one seek instead of a scan.
    """
    objects: list[ObjectInfo] = []
    prefixes: list[str] = []
    it: Iterator[ObjectInfo] = iter(entries)
    last = ""
    count = 0
    while True:
        e = next(it, None)
        if e is None:
            return ListPage(objects, prefixes, False, "")
        k = e.key
        if k <= start_after or (prefixes and k.startswith(prefixes[-1])):
            continue
        if not k.startswith(prefix):
            if k > prefix:
                return ListPage(objects, prefixes, False, "")
            continue
        if count >= max_keys:
            return ListPage(objects, prefixes, True, last)
        if delimiter:
            i = k.find(delimiter, len(prefix))
            if i >= 0:
                cp = k[:i + len(delimiter)]
                if cp <= start_after:
                    continue
                prefixes.append(cp)
                last = cp
                count += 1
                if skip_to is not None:
                    it = iter(skip_to(cp))
                continue
        objects.append(e)
        last = k
        count += 1

__all__ = [
    "STATUS",
    "Bucket",
    "BucketInfo",
    "BucketResolver",
    "DeleteResult",
    "FixedBuckets",
    "ListPage",
    "ObjectData",
    "ObjectInfo",
    "PartInfo",
    "S3Error",
    "UploadInfo",
    "no_such_bucket",
    "no_such_key",
    "page_from_sorted",
    "read_only",
]
