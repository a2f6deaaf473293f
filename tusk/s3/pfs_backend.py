"""Buckets over PFS: the daemon's S3 gateway.

Every branch of every repo is a bucket (:mod:`tusk.s3.names`); objects are
files (key ``a/b.txt`` is the file ``/a/b.txt``). A put makes one commit on
the branch, or joins its open commit if its head is open (as ``put file``
does); a commit's bucket ``<commit>.<branch>.<repo>.<project>`` is read-only,
and any commit of the repo can be read through ``versionId=<commit ID>``.

ETags are the file's content hash (BLAKE3 over its chunk digests, 64 hex), so
the same content under any key or commit has the same ETag; it is not an MD5.
Directories exist only through their files: a "directory marker" put (a key
ending in ``/`` with an empty body, as s3fs and rclone make) is accepted and
stores nothing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from pfs import errors as pe
from pfs.api import PFS, FileWriter
from pfs.model import FileInfo, FileType
from pfs.paths import COMMIT_ID_RE
from tusk.s3.backend import (
    Bucket,
    BucketInfo,
    DeleteResult,
    ListPage,
    ObjectData,
    ObjectInfo,
    PartInfo,
    S3Error,
    UploadInfo,
    no_such_bucket,
    no_such_key,
    page_from_sorted,
    read_only,
)
from tusk.s3.multipart import MultipartStore
from tusk.s3.names import BucketName, bucket_name, parse_bucket

#: Longer than any key (1024 bytes): ``x + _TOP`` sorts after every key that
#: starts with ``x``, so a listing seeks past a rolled-up common prefix.
_TOP = "~" * 1100


@contextlib.contextmanager
def s3_errors(resource: str) -> Iterator[None]:
    """Translate PFS's errors into S3's (one table)."""
    try:
        yield
    except S3Error:
        raise
    except pe.RepoNotFound as e:
        raise S3Error("NoSuchBucket", f"{e}; create it with CreateBucket (or `tusk create repo`)",
                      resource) from e
    except pe.BranchNotFound as e:
        raise S3Error("NoSuchBucket", f"{e}; create it with CreateBucket", resource) from e
    except pe.CommitNotFound as e:
        raise S3Error("NoSuchVersion", f"{e}", resource) from e
    except pe.FileNotFound as e:
        raise S3Error("NoSuchKey", str(e), resource) from e
    except pe.InvalidArgument as e:
        raise S3Error("InvalidArgument", str(e), resource) from e
    except pe.FailedPrecondition as e:
        raise S3Error("AccessDenied", str(e), resource) from e
    except pe.AlreadyExists as e:
        raise S3Error("BucketAlreadyOwnedByYou", str(e), resource) from e
    except pe.Unavailable as e:
        raise S3Error("ServiceUnavailable", str(e), resource) from e
    except pe.NotFound as e:
        raise S3Error("NoSuchKey", str(e), resource) from e


def _path(key: str) -> str:
    return "/" + key


def _object(key: str, fi: FileInfo, fallback_time: float) -> ObjectInfo:
    return ObjectInfo(key, fi.size_bytes, fi.hash, fi.committed or fallback_time, fi.commit)


@dataclass
class _Data:
    """An object of PFS opened for reading (:class:`~tusk.s3.backend.ObjectData`)."""

    pfs: PFS
    repo: str
    path: str
    info: ObjectInfo

    def read(self, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        left = self.info.size - offset if length is None else length
        if left <= 0:
            return
        # The commit ID, not the branch: the bytes are those of the version
        # that was inspected, even if the branch moves meanwhile.
        for piece in self.pfs.get_file(self.repo, self.info.version_id, self.path, offset):
            if len(piece) >= left:
                yield piece[:left]
                return
            left -= len(piece)
            yield piece


class PfsBucket:
    """A branch (writable unless it has provenance) or a commit (read-only)."""

    def __init__(self, pfs: PFS, uploads: MultipartStore, name: str, parsed: BucketName) -> None:
        self.pfs = pfs
        self.uploads = uploads
        self._name = name
        self.repo = parsed.repo
        self.branch = parsed.branch
        self.commit = parsed.commit

    @property
    def name(self) -> str:
        return self._name

    @property
    def read_only(self) -> bool:
        return bool(self.commit)

    @property
    def versioned(self) -> bool:
        return True

    @property
    def ref(self) -> str:
        return self.commit or self.branch

    def _res(self, key: str = "") -> str:
        return f"/{self._name}/{key}" if key else f"/{self._name}"

    def _writable(self) -> None:
        if self.commit:
            raise read_only(self._name, "it is one commit; write to the branch's bucket "
                            f"{bucket_name(self.repo, self.branch)}")

    def _version_ref(self, version_id: str | None) -> str:
        if not version_id or version_id == "null":
            return self.ref
        if not COMMIT_ID_RE.match(version_id):
            raise S3Error("NoSuchVersion", f"versionId {version_id!r} is not a commit ID "
                          "(32 hex digits)", self._res())
        return version_id

    # -- reads ---------------------------------------------------------------

    def _inspect(self, key: str, version_id: str | None) -> FileInfo:
        res = self._res(key)
        if key.endswith("/"):
            raise no_such_key(self._name, key, "directories exist only through their files")
        with s3_errors(res):
            try:
                fi = self.pfs.inspect_file(self.repo, self._version_ref(version_id), _path(key))
            except pe.FileNotFound:
                raise no_such_key(self._name, key) from None
        if fi.file_type != FileType.FILE:
            raise no_such_key(self._name, key, "it is a directory: list it with prefix "
                              f"{key.rstrip('/')}/")
        return fi

    def head_object(self, key: str, version_id: str | None = None) -> ObjectInfo:
        return _object(key, self._inspect(key, version_id), time.time())

    def get_object(self, key: str, version_id: str | None = None) -> ObjectData:
        fi = self._inspect(key, version_id)
        return _Data(self.pfs, self.repo, _path(key), _object(key, fi, time.time()))

    def list_objects(self, prefix: str = "", start_after: str = "", delimiter: str = "",
                     max_keys: int = 1000) -> ListPage:
        # Seek to the later of start_after and just before the prefix, inside
        # the deepest directory the prefix names.
        directory = "/" + prefix[:prefix.rfind("/") + 1] if "/" in prefix else "/"
        begin = "/" + start_after if start_after else ""
        if prefix:
            before_prefix = "/" + prefix[:-1] + chr(ord(prefix[-1]) - 1) + _TOP
            begin = max(begin, before_prefix)
        now = time.time()

        def entries(after: str) -> Iterator[ObjectInfo]:
            with s3_errors(self._res()):
                for fi in self.pfs.list_file_after(self.repo, self.ref, directory, after):
                    yield _object(fi.path[1:], fi, now)

        with s3_errors(self._res()):
            return page_from_sorted(entries(begin), prefix, start_after, delimiter, max_keys,
                                    skip_to=lambda cp: entries("/" + cp + _TOP))

    def is_empty(self) -> bool:
        with s3_errors(self._res()):
            return next(self.pfs.list_file_after(self.repo, self.ref, "/"), None) is None

    # -- writes ----------------------------------------------------------------

    def _commit(self, key: str, change: Callable[[FileWriter], None]) -> str:
        """Apply ``change`` through one FileWriter; returns the commit ID."""
        with s3_errors(self._res(key)):
            w = self.pfs.modify_file(self.repo, self.branch)
            try:
                change(w)
            except BaseException:
                w.abort()
                raise
            return w.close().id

    def put_object(self, key: str, body: Iterable[bytes], content_type: str = "") -> ObjectInfo:
        self._writable()
        if key.endswith("/"):
            if any(body):
                raise S3Error("InvalidArgument", f"key {key!r} ends with '/': it names a "
                              "directory, which holds no bytes; drop the trailing '/'",
                              self._res(key))
            return ObjectInfo(key, 0, _EMPTY_ETAG, time.time())
        cid = self._commit(key, lambda w: w.put_file(_path(key), body))
        return self.head_object(key, cid)

    def copy_object(self, key: str, source: Bucket, source_key: str,
                    source_version: str | None = None) -> ObjectInfo:
        self._writable()
        if isinstance(source, PfsBucket):
            fi = source._inspect(source_key, source_version)
            cid = self._commit(key, lambda w: w.copy_file(
                source.repo, fi.commit, _path(source_key), _path(key)))
        else:
            data = source.get_object(source_key, source_version)
            cid = self._commit(key, lambda w: w.put_file(_path(key), data.read()))
        return self.head_object(key, cid)

    def _exists(self, key: str) -> bool:
        try:
            self._inspect(key, None)
        except S3Error as e:
            if e.code == "NoSuchKey":
                return False
            raise
        return True

    def delete_object(self, key: str) -> None:
        self._writable()
        if self._exists(key):
            self._commit(key, lambda w: w.delete_file(_path(key)))

    def delete_objects(self, keys: Sequence[str]) -> list[DeleteResult]:
        self._writable()
        present = [k for k in dict.fromkeys(keys) if self._exists(k)]
        if present:
            def change(w: FileWriter) -> None:
                for k in present:
                    w.delete_file(_path(k))

            self._commit(present[0], change)
        return [DeleteResult(k) for k in keys]

    # -- multipart ---------------------------------------------------------------

    def create_multipart(self, key: str, content_type: str = "") -> str:
        self._writable()
        if key.endswith("/"):
            raise S3Error("InvalidArgument", f"key {key!r} ends with '/': drop the trailing '/'",
                          self._res(key))
        return self.uploads.create(self.repo, self.branch, key, content_type)

    def upload_part(self, upload_id: str, number: int, body: Iterable[bytes]) -> PartInfo:
        self._writable()
        self.uploads.upload(upload_id, self.repo, self.branch)
        with s3_errors(self._res()):
            return self.uploads.upload_part(upload_id, number, body)

    def upload_part_copy(self, upload_id: str, number: int, source: Bucket, source_key: str,
                         source_version: str | None = None,
                         byte_range: tuple[int, int] | None = None) -> PartInfo:
        self._writable()
        self.uploads.upload(upload_id, self.repo, self.branch)
        data = source.get_object(source_key, source_version)
        if byte_range is None:
            off, length = 0, data.info.size
        else:
            off, last = byte_range
            if off < 0 or last < off or last >= data.info.size:
                raise S3Error("InvalidRange", f"x-amz-copy-source-range bytes={off}-{last} is "
                              f"outside the {data.info.size}-byte source")
            length = last - off + 1
        with s3_errors(self._res()):
            return self.uploads.upload_part(upload_id, number, data.read(off, length))

    def complete_multipart(self, upload_id: str, parts: Sequence[tuple[int, str]]) -> ObjectInfo:
        self._writable()
        rec = self.uploads.upload(upload_id, self.repo, self.branch)
        refs, size = self.uploads.assemble(upload_id, list(parts))
        cid = self._commit(rec.key, lambda w: w.put_chunks(_path(rec.key), refs, size))
        self.uploads.drop(upload_id)
        return self.head_object(rec.key, cid)

    def abort_multipart(self, upload_id: str) -> None:
        self.uploads.upload(upload_id, self.repo, self.branch)
        self.uploads.drop(upload_id)

    def list_parts(self, upload_id: str, after: int = 0, max_parts: int = 1000
                   ) -> tuple[list[PartInfo], bool]:
        self.uploads.upload(upload_id, self.repo, self.branch)
        return self.uploads.list_parts(upload_id, after, max_parts)

    def list_multipart_uploads(self, prefix: str = "") -> list[UploadInfo]:
        return self.uploads.list_uploads(self.repo, self.branch, prefix)


_EMPTY_ETAG = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"  # BLAKE3("")


class PfsBuckets:
    """The daemon's :class:`~tusk.s3.backend.BucketResolver` over all of PFS."""

    def __init__(self, pfs: PFS, uploads: MultipartStore | None = None) -> None:
        self.pfs = pfs
        self.uploads = uploads if uploads is not None else MultipartStore(pfs)

    def bucket(self, name: str) -> Bucket:
        p = parse_bucket(name)
        res = f"/{name}"
        with s3_errors(res):
            try:
                self.pfs.inspect_repo(p.repo)
            except (pe.RepoNotFound, pe.NotFound):
                raise no_such_bucket(name, f"there is no repo {p.repo}; create the bucket "
                                     "(or `tusk create repo`) first") from None
            if p.commit:
                try:
                    self.pfs.resolve(p.repo, p.commit)
                except pe.NotFound:
                    raise no_such_bucket(name, f"repo {p.repo} has no commit {p.commit}") \
                        from None
            else:
                try:
                    self.pfs.inspect_branch(p.repo, p.branch)
                except pe.NotFound:
                    raise no_such_bucket(name, f"repo {p.repo} has no branch {p.branch}; "
                                         "create the bucket first") from None
        return PfsBucket(self.pfs, self.uploads, name, p)

    def list_buckets(self) -> list[BucketInfo]:
        out = []
        for r in self.pfs.list_repo(type="user", project=None):
            for b in self.pfs.list_branch(r.name):
                out.append(BucketInfo(bucket_name(r.name, b.name), b.created))
        out.sort(key=lambda b: b.name)
        return out

    def create_bucket(self, name: str) -> None:
        p = parse_bucket(name)
        res = f"/{name}"
        if p.commit:
            raise S3Error("InvalidBucketName", f"{name!r} names a commit, which cannot be "
                          "created; create BRANCH.REPO[.PROJECT]", res, BucketName=name)
        with s3_errors(res):
            try:
                self.pfs.inspect_repo(p.repo)
            except pe.NotFound:
                try:
                    self.pfs.create_repo(p.repo)
                except pe.AlreadyExists:
                    pass
                except pe.NotFound as e:
                    raise S3Error("InvalidBucketName", f"{e}: create the project first "
                                  f"(`tusk create project {p.project}`)", res) from e
            try:
                self.pfs.inspect_branch(p.repo, p.branch)
            except pe.NotFound:
                self.pfs.create_branch(p.repo, p.branch)
                return
        raise S3Error("BucketAlreadyOwnedByYou", f"bucket {name!r} exists already (repo "
                      f"{p.repo}, branch {p.branch})", res, BucketName=name)

    def delete_bucket(self, name: str) -> None:
        b = self.bucket(name)
        assert isinstance(b, PfsBucket)
        res = f"/{name}"
        if b.commit:
            raise S3Error("AccessDenied", f"{name!r} is a commit's bucket: delete the commit "
                          "with `tusk delete commit` instead", res)
        if not b.is_empty():
            raise S3Error("BucketNotEmpty", f"bucket {name!r} holds objects: delete them first "
                          "(DeleteObjects), or the repo with `tusk delete repo`", res,
                          BucketName=name)
        with s3_errors(res):
            branches = self.pfs.list_branch(b.repo)
            if [x.name for x in branches] == [b.branch]:
                self.pfs.delete_repo(b.repo)
            else:
                self.pfs.delete_branch(b.repo, b.branch)

