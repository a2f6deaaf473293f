"""A client of someone else's S3 server: stream objects in and out.

Used by ``put file -f s3://...`` (in the client process) and by pipeline
egress (in the daemon). URLs, configuration, the address policy and the
errors are in :mod:`pfs.s3urls`; this module adds the ``minio`` SDK, which
is imported only when a transfer happens.

Bytes are always streamed: :meth:`S3Remote.read` yields pieces of a GET's
body and :meth:`S3Remote.upload` sends from an iterable in bounded parts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError

from pfs.errors import InvalidArgument
from pfs.s3urls import (
    AWS_DEFAULT_ENDPOINT,
    ENDPOINT_HINT,
    S3URL,
    S3AccessDenied,
    S3Config,
    S3NoSuchBucket,
    S3NoSuchKey,
    S3Unreachable,
    parse_endpoint,
)

__all__ = ["PART_SIZE", "READ_PIECE", "RemoteObject", "S3Remote"]

#: Size of the pieces a download is read in.
READ_PIECE = 1 << 20

#: Upload part size: the SDK holds one part in memory; 16 MiB parts keep that
#: small and reach 160 GB within S3's 10,000-part limit (larger files get
#: larger parts, see :meth:`S3Remote.upload`).
PART_SIZE = 16 << 20
_MAX_PARTS = 10_000

_ACCESS_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled",
     "InvalidToken", "ExpiredToken"})


# --- the client ------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteObject:
    """One object of a listing."""

    key: str
    size: int
    etag: str


def _etag(value: str | None) -> str:
    return (value or "").strip('"')


def _short(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    if reason is not None:
        exc = reason
    text = str(exc)
    # urllib3's connection errors repeat the connection object's repr.
    if ": " in text and "<" in text:
        text = text.rsplit(": ", 1)[-1]
    return f"{type(exc).__name__}: {text}"


class _Reader:
    """A binary reader over an iterable of byte pieces (for uploads)."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._it = iter(pieces)
        self._buf = b""
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            piece = next(self._it, None)
            if piece is None:
                break
            self._buf += piece
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        self.count += len(out)
        return out


class S3Remote:
    """A client of one S3 server for reads, uploads, listings and deletes of
    other people's buckets. Thread-safe (the SDK's client is).

    Failure behaviour: connect timeout 5 s, 30 s per socket read, up to 3
    retries with backoff for refused connections and 5xx answers. A body
    that breaks off mid-transfer is not retried here: the caller's unit of
    work (a ``put file`` commit, an egress try) fails as a whole.
    """

    def __init__(self, config: S3Config, hint: str = ENDPOINT_HINT) -> None:
        """``config`` must be complete (:meth:`pfs.s3urls.S3Config.for_url`);
        ``hint`` says in errors where the endpoint is set."""
        self.hint = hint
        self.endpoint_url = config.endpoint or AWS_DEFAULT_ENDPOINT
        netloc, secure = parse_endpoint(self.endpoint_url)
        self.endpoint_url = f"{'https' if secure else 'http'}://{netloc}"
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5.0, read=30.0),
            maxsize=8,
            retries=urllib3.Retry(total=3, read=0, backoff_factor=0.2,
                                  status_forcelist=[500, 502, 503, 504],
                                  respect_retry_after_header=False),
        )
        try:
            self._client = Minio(
                netloc,
                access_key=config.access_key or None,
                secret_key=config.secret_key or None,
                session_token=config.session_token or None,
                secure=secure,
                region=config.region or None,
                http_client=http,
            )
        except ValueError as exc:
            raise InvalidArgument(f"S3 endpoint {self.endpoint_url!r}: {exc}") from None

    def _list_hint(self, url: S3URL, key: str) -> str:
        parent = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
        return (f"`aws s3 ls s3://{url.bucket}/{parent} --endpoint-url {self.endpoint_url}`")

    @contextmanager
    def errors(self, url: S3URL, key: str | None = None) -> Iterator[None]:
        """Translate SDK and transport errors into this module's typed errors."""
        where = url.child(key) if key is not None else str(url)
        try:
            yield
        except S3Error as exc:
            if exc.code == "NoSuchKey":
                raise S3NoSuchKey(where, self._list_hint(url, key or url.key)) from None
            if exc.code == "NoSuchBucket":
                raise S3NoSuchBucket(f"s3://{url.bucket}", self.endpoint_url, self.hint) from None
            if exc.code in _ACCESS_CODES:
                raise S3AccessDenied(where, self.endpoint_url, exc.code) from None
            raise S3Unreachable(where, self.endpoint_url,
                                f"{exc.code}: {exc.message}", hint=self.hint) from None
        except (ServerError, InvalidResponseError) as exc:
            raise S3Unreachable(where, self.endpoint_url, str(exc)[:300], hint=self.hint) from None
        except urllib3.exceptions.HTTPError as exc:
            raise S3Unreachable(where, self.endpoint_url, _short(exc), hint=self.hint) from None
        except MinioException as exc:
            raise S3Unreachable(where, self.endpoint_url, str(exc)[:300], hint=self.hint) from None
        except ValueError as exc:  # the SDK's own checks of names
            raise InvalidArgument(f"{where}: {exc}") from None
        except OSError as exc:
            raise S3Unreachable(where, self.endpoint_url, _short(exc), hint=self.hint) from None

    def stat(self, url: S3URL, key: str) -> RemoteObject:
        """Size and ETag of one object (raises :class:`S3NoSuchKey` if missing)."""
        with self.errors(url, key):
            o = self._client.stat_object(url.bucket, key)
        return RemoteObject(key, int(o.size or 0), _etag(o.etag))

    def read(self, url: S3URL, key: str, piece: int = READ_PIECE) -> Iterator[bytes]:
        """Stream one object's bytes in pieces of up to ``piece``.

        The GET is sent at the first ``next()``, so a missing key or a dead
        server raises there, before any byte is yielded.
        """
        with self.errors(url, key):
            resp = self._client.get_object(url.bucket, key)
        try:
            while True:
                with self.errors(url, key):
                    data = resp.read(piece)
                if not data:
                    return
                yield data
        finally:
            resp.close()
            resp.release_conn()

    def list(self, url: S3URL, prefix: str) -> Iterator[RemoteObject]:
        """Every object whose key starts with ``prefix``, in key order, lazily
        (one ListObjectsV2 page at a time). Directory markers (keys ending in
        ``/``) are skipped."""
        with self.errors(url):
            for o in self._client.list_objects(url.bucket, prefix=prefix or None,
                                               recursive=True):
                name = o.object_name or ""
                if not name or name.endswith("/"):
                    continue
                yield RemoteObject(name, int(o.size or 0), _etag(o.etag))

    def bucket_exists(self, url: S3URL) -> bool:
        with self.errors(url):
            return bool(self._client.bucket_exists(url.bucket))

    def upload(self, url: S3URL, key: str, pieces: Iterable[bytes], size: int) -> str:
        """Upload ``size`` bytes from ``pieces`` to ``key``; returns the new ETag.

        One PUT up to :data:`PART_SIZE`, a multipart upload above it (one part
        in memory at a time).
        """
        part = max(PART_SIZE, -(-size // _MAX_PARTS))
        reader = _Reader(pieces)
        with self.errors(url, key):
            result = self._client.put_object(
                url.bucket, key, reader, length=size,  # type: ignore[arg-type]
                part_size=part, num_parallel_uploads=1)
        if reader.count != size:
            raise S3Unreachable(url.child(key), self.endpoint_url,
                                f"sent {reader.count} of {size} bytes", hint=self.hint)
        return _etag(result.etag)

    def delete(self, url: S3URL, keys: Iterable[str]) -> int:
        """Delete ``keys`` (batched DeleteObjects); returns how many were asked."""
        count = 0

        def objects() -> Iterator[DeleteObject]:
            nonlocal count
            for k in keys:
                count += 1
                yield DeleteObject(k)

        with self.errors(url):
            for err in self._client.remove_objects(url.bucket, objects()):
                raise S3Unreachable(url.child(err.name or ""), self.endpoint_url,
                                    f"delete failed: {err.code}: {err.message}", hint=self.hint)
        return count

