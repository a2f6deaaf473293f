"""The S3 object store: any S3-compatible server (AWS S3, MinIO, SeaweedFS).

Only plain S3 calls are used (HEAD/GET/PUT/DELETE object, ListObjectsV2,
bucket create), through the ``minio`` SDK, so every S3-compatible server works.

Failure behaviour, chosen so that a dead server is reported in seconds instead
of the SDK's defaults (5-minute timeouts, 5 retries):

* connect timeout 3 s; read timeout 10 s per socket read (not per request,
  so a slow 16 MiB transfer is fine, but a hung server is noticed); up to 2
  retries with short backoff for connection errors and 5xx answers, at most
  1 after a read error. A refused connection fails in about 0.4 s, a hung
  (stopped) server in about 20 s.
* Connection and protocol failures (including a truncated body) raise
  :class:`pfs.errors.Unavailable`; a missing key raises
  :class:`pfs.errors.ObjectNotFound`. A range read never returns a silently
  truncated body: urllib3 enforces Content-Length.
"""

from __future__ import annotations

import datetime
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager

import urllib3
from minio import Minio
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError

from pfs.errors import InvalidArgument, ObjectNotFound, Unavailable
from pfs.objects import check_key, check_prefix, check_range

#: The SDK refuses part sizes below 5 MiB; passing max(len, 5 MiB) as the part
#: size makes it send one PutObject instead of a multipart upload.
_MIN_PART_SIZE = 5 * 1024 * 1024

#: S3 error codes that mean "your credentials do not let you in".
_ACCESS_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"}
)

_HINT = (
    "is the S3 server running and the endpoint right? For a local one run "
    "`deploy/services.sh up DIR`"
)


def _credentials(
    access_key: str | None, secret_key: str | None
) -> tuple[str | None, str | None, str | None]:
    """Explicit keys, else AWS_* env, else MINIO_ROOT_* env, else anonymous.

    Reading the environment here (not only in the CLI) is deliberate: it is
    the convention of every S3 tool, and keeps secrets out of URLs and flags.
    """
    if access_key is not None or secret_key is not None:
        return access_key, secret_key, None
    env = os.environ
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        return env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env.get("AWS_SESSION_TOKEN")
    if env.get("MINIO_ROOT_USER") and env.get("MINIO_ROOT_PASSWORD"):
        return env["MINIO_ROOT_USER"], env["MINIO_ROOT_PASSWORD"], None
    return None, None, None


class S3ObjectStore:
    """An :class:`pfs.objects.ObjectStore` in an S3 bucket, optionally under a key prefix.

    Key ``k`` is stored as object ``PREFIX/k`` (or ``k`` without a prefix).
    The bucket is created when missing. Thread-safe: the SDK client and its
    urllib3 pool are shared by all threads.
    """

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        prefix: str = "",
        access_key: str | None = None,
        secret_key: str | None = None,
        secure: bool = False,
        region: str | None = None,
    ) -> None:
        """Connect to ``endpoint`` (``HOST:PORT``) and ensure ``bucket`` exists.

        ``endpoint`` may also be written ``http://HOST:PORT`` or
        ``https://HOST``; the scheme then overrides ``secure``.

        Raises:
            InvalidArgument: bad endpoint or bucket name.
            Unavailable: the server cannot be reached or refuses access.
        """
        if "://" in endpoint:
            scheme, _, endpoint = endpoint.partition("://")
            secure = scheme.lower() == "https"
        endpoint = endpoint.rstrip("/")
        self._endpoint = endpoint
        self._secure = secure
        self._bucket = bucket
        self._prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._where = f"{'https' if secure else 'http'}://{endpoint}/{bucket}"
        key, secret, token = _credentials(access_key, secret_key)
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=3.0, read=10.0),
            # Enough connections for the callers' upload/download thread pools;
            # block=False opens extra ones instead of waiting for a free slot.
            maxsize=32,
            retries=urllib3.Retry(
                total=2,
                read=1,
                backoff_factor=0.2,
                status_forcelist=[500, 502, 503, 504],
                respect_retry_after_header=False,
            ),
        )
        try:
            self._client = Minio(
                endpoint,
                access_key=key,
                secret_key=secret,
                session_token=token,
                secure=secure,
                region=region,
                http_client=http,
            )
        except ValueError as exc:
            raise InvalidArgument(f"S3 endpoint {endpoint!r}: {exc}") from exc
        with self._errors():
            try:
                exists = self._client.bucket_exists(bucket)
            except ValueError as exc:
                raise InvalidArgument(f"S3 bucket name {bucket!r}: {exc}") from exc
            if not exists:
                try:
                    self._client.make_bucket(bucket, location=region)
                except S3Error as exc:
                    # Another process (a second worker) created it first.
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise

    @contextmanager
    def _errors(self, key: str | None = None) -> Iterator[None]:
        """Translate SDK and transport errors into tusk's typed errors."""
        try:
            yield
        except S3Error as exc:
            if exc.code == "NoSuchKey" and key is not None:
                raise ObjectNotFound(key) from exc
            if exc.code in _ACCESS_CODES:
                raise Unavailable(
                    "S3",
                    f"{self._where}: access denied ({exc.code})",
                    hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to keys of this server",
                ) from exc
            if exc.code == "NoSuchBucket":
                raise Unavailable(
                    "S3",
                    f"{self._where}: the bucket does not exist (deleted while in use?)",
                    hint="recreate it, or restart the daemon to create it",
                ) from exc
            raise Unavailable("S3", f"{self._where}: {exc.code}: {exc.message}") from exc
        except (ServerError, InvalidResponseError) as exc:
            raise Unavailable("S3", f"{self._where}: {exc}", hint=_HINT) from exc
        except urllib3.exceptions.HTTPError as exc:
            # Covers refused connections, timeouts, exhausted retries and
            # truncated bodies (ProtocolError).
            raise Unavailable("S3", f"{self._where}: {_short(exc)}", hint=_HINT) from exc
        except MinioException as exc:
            raise Unavailable("S3", f"{self._where}: {exc}", hint=_HINT) from exc

    def _name(self, key: str) -> str:
        check_key(key)
        return self._prefix + key

    def put(self, key: str, data: bytes) -> None:
        """One PutObject of known length (S3 PUTs are atomic)."""
        name = self._name(key)
        with self._errors(key):
            self._client.put_object(
                self._bucket,
                name,
                io.BytesIO(data),
                len(data),
                part_size=max(len(data), _MIN_PART_SIZE),
            )

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """GetObject, with a Range header when a range is asked for."""
        name = self._name(key)
        check_range(offset, length)
        if length == 0:
            # The SDK treats length 0 as "to the end"; an empty range still
            # has to say whether the key exists.
            self.size(key)
            return b""
        with self._errors(key):
            try:
                response = self._client.get_object(
                    self._bucket, name, offset=offset, length=length or 0
                )
            except S3Error as exc:
                if exc.code == "InvalidRange":  # offset at or past the end
                    return b""
                raise
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

    def exists(self, key: str) -> bool:
        """HeadObject."""
        try:
            self.size(key)
        except ObjectNotFound:
            return False
        return True

    def size(self, key: str) -> int:
        """HeadObject's Content-Length."""
        name = self._name(key)
        with self._errors(key):
            stat = self._client.stat_object(self._bucket, name)
        return int(stat.size or 0)

    def delete(self, key: str) -> None:
        """DeleteObject (S3 answers success for a missing key too)."""
        name = self._name(key)
        with self._errors(key):
            try:
                self._client.remove_object(self._bucket, name)
            except S3Error as exc:
                if exc.code != "NoSuchKey":  # some servers do say so
                    raise

    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield keys under ``prefix`` in byte order, one "directory" level at a time.

        S3 promises recursive listings in key order, but SeaweedFS answers in
        directory-walk order (``x/1`` before ``x-1``), and its delimiter
        listings put a level's objects before its sub-prefixes. So this lists
        level by level (delimiter ``/``), sorts each level's entries with
        ``/`` kept on sub-prefixes -- exactly their keys' order -- and
        descends into sub-prefixes in place. That is correct on every server.

        Costs: one request per 1000 entries *per level* (257 for a 256-way
        fan-out, where a recursive listing of few keys would need one), and
        the names of one level are held in memory at a time (tusk's keys are
        fanned out, so levels stay small).
        """
        check_prefix(prefix)
        with self._errors():
            yield from self._list_level(self._prefix + prefix, len(self._prefix))

    def _list_level(self, prefix: str, strip: int) -> Iterator[str]:
        names = sorted(
            obj.object_name
            for obj in self._client.list_objects(self._bucket, prefix=prefix, recursive=False)
            # SeaweedFS lists an empty directory "d/" under prefix "d/" itself.
            if obj.object_name is not None and not (obj.is_dir and obj.object_name == prefix)
        )
        for name in names:
            if name.endswith("/"):
                yield from self._list_level(name, strip)
            else:
                yield name[strip:]

    def presign(self, method: str, key: str, expires: datetime.timedelta) -> str:
        """A URL that lets its holder ``GET`` or ``PUT`` object ``key`` until it
        expires, with no credentials of its own (SigV4 query-string signing:
        computed here, no request to the server)."""
        name = self._name(key)
        with self._errors(key):
            if method == "PUT":
                return self._client.presigned_put_object(self._bucket, name, expires=expires)
            if method == "GET":
                return self._client.presigned_get_object(self._bucket, name, expires=expires)
        raise InvalidArgument(f"presign: method {method!r} is neither GET nor PUT")

    def describe(self) -> str:
        """``s3://BUCKET/PREFIX?endpoint=SCHEME://HOST:PORT``."""
        scheme = "https" if self._secure else "http"
        path = f"/{self._prefix.rstrip('/')}" if self._prefix else ""
        return f"s3://{self._bucket}{path}?endpoint={scheme}://{self._endpoint}"


def _short(exc: BaseException) -> str:
    """The innermost reason of a urllib3 error, without its long repr chain."""
    reason = getattr(exc, "reason", None)
    if reason is not None:
        return f"{type(reason).__name__}: {reason}"
    return f"{type(exc).__name__}: {exc}"
