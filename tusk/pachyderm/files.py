"""File bytes in and out of Pachyderm's PFS API: ``ModifyFile``'s request
stream as tusk's, ``add_file`` URL sources (fetched by the daemon, never from
internal addresses) and ``GetFileTAR``'s tar stream.
"""

from __future__ import annotations

import io
import ipaddress
import socket
import tarfile
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf import wrappers_pb2

from pfs import errors
from tusk.api import pfs_pb2 as t
from tusk.pachyderm import convert as cv
from tusk.pachyderm_api import pfs_pb2 as p
from tusk.server import GET_FILE_PIECE

#: Bytes of an ``add_file`` URL source read per message.
URL_PIECE = 4 << 20
#: How long the end of a ModifyFile stream waits to see whether it was a
#: cancellation (see :func:`_cancelled`); added to each SDK put's latency.
CANCEL_GRACE = 0.03


class ModifyStream:
    """Pachyderm's ModifyFile requests as tusk's: ``set_commit`` opens the
    stream, each op is one tusk request, and ``done`` follows only a normal
    end of the stream while the call is active (a client's cancellation also
    ends the request iterator, and must commit nothing)."""

    def __init__(self, requests: Iterator[p.ModifyFileRequest], ctx: grpc.ServicerContext
                 ) -> None:
        self._it = self._translate(requests, ctx)

    def __iter__(self) -> Iterator[t.ModifyFileRequest]:
        return self._it

    def __next__(self) -> t.ModifyFileRequest:
        return next(self._it)

    def _translate(self, requests: Iterator[p.ModifyFileRequest], ctx: grpc.ServicerContext
                   ) -> Iterator[t.ModifyFileRequest]:
        commit: t.Commit | None = None
        for req in requests:
            kind = req.WhichOneof("body")
            if kind == "set_commit":
                target = cv.commit(req.set_commit)
                if commit is None:
                    commit = target
                    yield t.ModifyFileRequest(commit=target)
                elif target != commit:
                    raise errors.InvalidArgument(
                        "ModifyFile: one stream writes one commit; open another stream "
                        "for another commit")
                continue
            if commit is None:
                raise errors.InvalidArgument(
                    "ModifyFile: the first message must be set_commit (the branch or "
                    "open commit to write)")
            if kind == "add_file":
                yield from self._add_file(req.add_file)
            elif kind == "delete_file":
                yield t.ModifyFileRequest(ops=[t.FileOp(
                    delete_file=t.DeleteFile(path=req.delete_file.path))])
            elif kind == "copy_file":
                cp = req.copy_file
                src = cv.file(cp.src)
                if not src.commit.repo:
                    src.commit.repo = commit.repo
                yield t.ModifyFileRequest(ops=[t.FileOp(copy_file=t.CopyFile(
                    src=src, dst_path=cp.dst, append=cp.append))])
            else:
                raise errors.InvalidArgument("ModifyFile: empty request (no operation set)")
        if commit is None:
            raise errors.InvalidArgument("ModifyFile: empty stream (no set_commit)")
        if not _cancelled(ctx):
            yield t.ModifyFileRequest(done=True)

    @staticmethod
    def _add_file(add: p.AddFile) -> Iterator[t.ModifyFileRequest]:
        source = add.WhichOneof("source")
        if source == "raw":
            yield _append(add.path, add.raw.value)
        elif source == "url":
            if add.url.recursive:
                raise errors.InvalidArgument(
                    f"add_file from {add.url.url} with recursive: only single http(s) "
                    "objects can be fetched; list them and add each")
            for piece in fetch_url(add.url.url):
                yield _append(add.path, piece)
        else:
            # An add_file without a source creates the file empty.
            yield _append(add.path, b"")


def _append(path: str, data: bytes) -> t.ModifyFileRequest:
    """One tusk append op, built in place: nested constructors would copy
    ``data`` (up to 19 MiB from Pachyderm's SDK) once per level."""
    req = t.ModifyFileRequest()
    add = req.ops.add().add_file
    add.path = path
    add.append = True
    if data:
        add.data = data
    return req


def _cancelled(ctx: grpc.ServicerContext) -> bool:
    """Whether a request stream that just ended was cancelled by the client.

    grpcio's server ends the request iterator the same way for a client's
    half-close (the normal end) and, when the two events race, for its
    cancellation: the cancellation shows a moment later, when the server's
    poller handles the call's close. Pachyderm's protocol has no end marker,
    so the stream's end commits; waiting up to :data:`CANCEL_GRACE` for the
    termination callback (which only a cancellation fires at this point: a
    half-closed call is still waiting for its answer) tells the two apart.
    """
    ended = threading.Event()
    if not ctx.add_callback(ended.set):
        return True  # already terminated
    ended.wait(CANCEL_GRACE)
    return ended.is_set() or not ctx.is_active()


def check_url(url: str) -> None:
    """Refuse URLs tusk's daemon must not fetch: other schemes, and hosts in
    private, link-local or otherwise internal address ranges (loopback is
    allowed: a user's own machine serving its files)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise errors.InvalidArgument(
            f"cannot fetch {url!r}: only http:// and https:// URLs with a host are supported")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 0, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise errors.InvalidArgument(f"cannot fetch {url}: {parts.hostname}: {exc}") from None
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        internal = (ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved
                    or ip.is_unspecified)
        if internal and not ip.is_loopback:
            raise errors.InvalidArgument(
                f"cannot fetch {url}: {parts.hostname} resolves to {ip}, a private or "
                "internal address the daemon does not contact; download the file "
                "yourself and put it")


def fetch_url(url: str) -> Iterator[bytes]:
    """Stream an http(s) URL's body in pieces (``add_file`` URL sources)."""
    check_url(url)
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            while piece := resp.read(URL_PIECE):
                yield piece
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise errors.FailedPrecondition(f"cannot download {url}: {reason}") from None


def tar_stream(pfs: Any, repo: str, ref: str, path: str
                ) -> Iterator[wrappers_pb2.BytesValue]:
    """A tar of ``path`` (a file, a directory's subtree or a glob's matches),
    streamed in pieces of at most ``GET_FILE_PIECE``."""
    if any(ch in path for ch in "*?["):
        infos = list(pfs.glob_file(repo, ref, path))
    else:
        info = pfs.inspect_file(repo, ref, path)
        infos = list(pfs.walk_file(repo, ref, path)) if info.file_type.name == "DIR" else [info]
    buf = _Sink()
    with tarfile.open(fileobj=buf, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for info in infos:
            entry = tarfile.TarInfo(info.path.strip("/") or ".")
            entry.mtime = int(info.committed or 0)
            if info.file_type.name == "DIR":
                entry.type, entry.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(entry)
            else:
                entry.size, entry.mode = info.size_bytes, 0o644
                reader = io.BufferedReader(_ChunkReader(pfs.get_file(repo, ref, info.path)))
                tar.addfile(entry, reader)
            yield from buf.drain()
    yield from buf.drain(final=True)


class _Sink(io.RawIOBase):
    """A write-only file collecting what tarfile writes, drained in pieces."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._parts.append(data)
        self._size += len(data)
        return len(data)

    def drain(self, final: bool = False) -> Iterator[wrappers_pb2.BytesValue]:
        if self._size < GET_FILE_PIECE and not (final and self._size):
            return
        data = b"".join(self._parts)
        self._parts, self._size = [], 0
        for i in range(0, len(data), GET_FILE_PIECE):
            yield wrappers_pb2.BytesValue(value=data[i:i + GET_FILE_PIECE])


class _ChunkReader(io.RawIOBase):
    """A file's chunks as a readable file (what ``tarfile.addfile`` reads)."""

    def __init__(self, chunks: Any) -> None:
        self._chunks = iter(chunks)
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._rest:
            try:
                self._rest = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._rest))
        b[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n


__all__ = ["URL_PIECE", "ModifyStream", "check_url", "fetch_url", "tar_stream"]
