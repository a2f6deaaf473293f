"""Put objects of any S3 server into a commit, streamed through the client.

The bytes travel S3 -> this process -> the daemon's ``ModifyFile`` stream,
never whole in memory, and never fetched by the daemon: the daemon contacts
no address a remote user names (see ``docs/decisions.md``, "Data in and out
over S3"). Everything goes into the caller's :class:`tusk.client.ModifyFile`,
so one ``put file`` is one commit, and any failure (a missing key, refused
credentials, a connection broken mid-object) raises out of the ``with``
block, which aborts the stream: nothing is committed.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from pfs.errors import InvalidArgument
from pfs.s3remote import S3Remote
from pfs.s3urls import S3URL, S3Config, parse_s3_url

if TYPE_CHECKING:
    from tusk.client import ModifyFile

__all__ = ["Progress", "put_file_from_s3", "put_files_from_s3", "resolve"]


class Progress(Protocol):
    """Receives progress of a transfer (the CLI's ``--progress``)."""

    def advance(self, nbytes: int) -> None:
        """``nbytes`` more bytes were read from the source."""

    def file_done(self, path: str) -> None:
        """One more file was handed to the commit in full."""


def resolve(url: str, config: S3Config | None, need_key: bool) -> tuple[S3URL, S3Remote]:
    """Parse ``url`` and connect: ``config``'s settings first, then the URL's
    ``?endpoint=``/``?region=``, then the AWS variables of this process's
    environment (:meth:`pfs.s3urls.S3Config.for_url`)."""
    loc = parse_s3_url(url, need_key=need_key)
    return loc, S3Remote((config or S3Config()).for_url(loc))


def _counted(pieces: Iterator[bytes], progress: Progress | None) -> Iterator[bytes]:
    for piece in pieces:
        if progress is not None:
            progress.advance(len(piece))
        yield piece


def put_file_from_s3(mf: ModifyFile, path: str, url: str, config: S3Config | None = None,
                     append: bool = False, progress: Progress | None = None) -> None:
    """Stream the object ``url`` (``s3://BUCKET/KEY``) into ``path``.

    Raises:
        InvalidArgument: a malformed URL (no bucket, no key, bad endpoint).
        S3NoSuchKey, S3NoSuchBucket, S3AccessDenied, S3Unreachable: from the
            server, with what to do about it.
    """
    loc, remote = resolve(url, config, need_key=True)
    if loc.key.endswith("/"):
        raise InvalidArgument(
            f"{url!r} ends in '/', a prefix: use -r (put_files_from_s3) to put the objects "
            "under it")
    pieces = remote.read(loc, loc.key)
    # The GET goes out before the first piece reaches the stream, so a
    # missing key fails before anything about this file is sent.
    first = next(pieces, None)

    def chain() -> Iterator[bytes]:
        if first is not None:
            yield first
        yield from pieces

    mf.put_file(path, _counted(chain(), progress), append=append)
    if progress is not None:
        progress.file_done(path)


def put_files_from_s3(mf: ModifyFile, path: str, url: str, config: S3Config | None = None,
                      append: bool = False, progress: Progress | None = None) -> int:
    """Put every object under the prefix ``url`` below the repo directory ``path``.

    ``s3://b/photos`` and ``s3://b/photos/`` both mean the objects under
    ``photos/`` (as ``aws s3 cp --recursive``): ``photos/a/x.png`` lands at
    ``PATH/a/x.png``. ``s3://b`` means the whole bucket. Directory markers
    (keys ending in ``/``) are skipped. The listing is read page by page as
    the files go, so a huge prefix never sits in memory.

    Returns:
        How many files were put.

    Raises:
        InvalidArgument: a malformed URL, a key that is no valid repo path
            (``a//b``), or no object under the prefix.
        S3NoSuchBucket, S3AccessDenied, S3Unreachable, S3NoSuchKey: from the
            server (a key deleted between listing and reading is NoSuchKey).
    """
    loc, remote = resolve(url, config, need_key=False)
    prefix = loc.prefix
    count = 0
    for obj in remote.list(loc, prefix):
        rel = obj.key[len(prefix):]
        if any(part in ("", ".", "..") for part in rel.split("/")):
            raise InvalidArgument(
                f"{loc.child(obj.key)}: the key has an empty, '.' or '..' component and "
                "cannot be a repo path; rename the object or put it on its own with a path")
        target = posixpath.join("/" + path.strip("/"), rel) if path.strip("/") else "/" + rel
        mf.put_file(target, _counted(remote.read(loc, obj.key), progress), append=append)
        count += 1
        if progress is not None:
            progress.file_done(target)
    if count == 0:
        raise InvalidArgument(
            f"no objects under s3://{loc.bucket}/{prefix}: check the prefix, or list the "
            f"bucket with `aws s3 ls s3://{loc.bucket}/ --endpoint-url {remote.endpoint_url}`")
    return count
