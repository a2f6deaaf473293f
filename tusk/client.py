"""The tusk Python SDK: a client for the daemon's gRPC API (``proto/pfs.proto``).

The CLI uses only this module. Methods mirror the PFS API and return the proto
messages of :mod:`tusk.api.pfs_pb2`; listing methods return iterators that stream
(stop iterating early and the call is cancelled on the server). Errors come back
as the typed classes of :mod:`pfs.errors` (``RepoNotFound``, ``CommitFinished``...)
with the server's message; a daemon that is not running fails within about a
second with :class:`pfs.errors.Unavailable`.

Commits are named by *refs* exactly as users type them: a branch (``"master"``),
a commit id, ``"master^2"``, ``"master.1"``, ``"branch=id"``.

Example::

    from tusk.client import Client

    c = Client()                       # $TUSK_ADDRESS or 127.0.0.1:1650
    c.create_repo("images")
    with c.modify_file("images", "master") as mf:      # one commit
        mf.put_file("/a.txt", b"hello\\n")
        mf.put_file_from_path("/big.bin", "local/big.bin")  # streamed in 4 MiB pieces
    print(c.get_file_bytes("images", "master", "/a.txt"))
    for fi in c.list_file("images", "master", "/"):
        print(fi.file.path, fi.size_bytes)
    print(mf.commit_info.commit.id)    # the commit the block made
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import stat
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Self, TypeVar

import grpc
from google.protobuf import empty_pb2, wrappers_pb2

from pfs import errors
from pfs.s3urls import S3Config as S3Config  # re-exported: the CLI builds one
from tusk.api import pfs_pb2, pfs_pb2_grpc
from tusk.pps_client import PPSMixin

if TYPE_CHECKING:  # tusk.s3_import loads the S3 SDK (~0.3 s): only when used
    from tusk.s3_import import Progress

DEFAULT_ADDRESS = "127.0.0.1:1650"
#: Size of one ModifyFile message (packed small files) and of one piece of a
#: large file. Far below MAX_MESSAGE_BYTES; big enough that per-message overhead
#: is negligible.
PIECE_BYTES = 4 * 1024 * 1024
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: Messages queued ahead of the gRPC sender: bounds an upload's memory (~16 MiB).
_QUEUE_DEPTH = 4

# Inverse of tusk.server.STATUS_BY_CODE, for errors without the tusk-error metadata.
_ERROR_BY_STATUS: dict[grpc.StatusCode, type[errors.TuskError]] = {
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.DATA_LOSS: errors.Corruption,
    grpc.StatusCode.ABORTED: errors.Conflict,
    grpc.StatusCode.INTERNAL: errors.TuskError,
}

_T = TypeVar("_T")
Ref = str
#: What listing methods return: close() it (or stop iterating and drop it) to
#: cancel the call on the server.
Stream = Generator[_T, None, None]
BranchSpec = str | tuple[str, str]  # "repo@branch" or (repo, branch)


class DeadlineExceeded(errors.TuskError):
    """A call's deadline (``timeout=``) passed before it completed."""

    code = "ABORTED"


class Cancelled(errors.TuskError):
    """The call was cancelled (by this client, or the server went away mid-call)."""

    code = "ABORTED"


# --- errors -----------------------------------------------------------------------


def _rebuild(name: str, message: str, fields: Mapping[str, Any]) -> errors.TuskError | None:
    cls = errors.ALL_ERRORS.get(name)
    if cls is None:
        return None
    # The classes' constructors build their message from fields; the server's
    # message is authoritative, so bypass __init__ and set both directly.
    exc = cls.__new__(cls)
    errors.TuskError.__init__(exc, message)
    for k, v in fields.items():
        setattr(exc, k, v)
    return exc


def translate(err: grpc.RpcError, address: str) -> errors.TuskError:
    """Turn a gRPC error into the typed tusk error it carries."""
    # grpc is untyped; a failed call's RpcError is also a grpc.Call with these methods.
    code: grpc.StatusCode = err.code()
    details: str = err.details() or ""
    trailers = dict(err.trailing_metadata() or ())
    name = trailers.get("tusk-error")
    if name:
        try:
            fields = json.loads(trailers.get("tusk-error-fields") or "{}")
        except ValueError:
            fields = {}
        exc = _rebuild(str(name), details, fields if isinstance(fields, dict) else {})
        if exc is not None:
            return exc
    if code == grpc.StatusCode.UNAVAILABLE:
        # No metadata: the transport failed, i.e. the daemon itself is not there.
        detail = f"{address}: connection refused" if "refused" in details.lower() \
            else f"{address}: {details}"
        return errors.Unavailable("tusk daemon", detail,
                                  hint="start it with `tusk daemon` or set TUSK_ADDRESS")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"the call to {address} timed out: {details}")
    if code == grpc.StatusCode.CANCELLED:
        return Cancelled(f"the call to {address} was cancelled: {details}")
    cls = _ERROR_BY_STATUS.get(code, errors.TuskError)
    exc = cls.__new__(cls)
    errors.TuskError.__init__(exc, details or f"{code.name} from {address}")
    return exc


def _stream(call: Any, address: str) -> Stream[Any]:
    """Iterate a server stream, translating errors and cancelling it if abandoned."""
    try:
        yield from call
    except grpc.RpcError as err:
        raise translate(err, address) from None
    finally:
        call.cancel()  # a no-op when the stream already ended


# --- builders -----------------------------------------------------------------------


def _commit(repo: str, ref: Ref) -> pfs_pb2.Commit:
    # The server resolves `id` as any ref string (branch, id, ancestry, branch=id).
    return pfs_pb2.Commit(repo=repo, id=ref)


def _file(repo: str, ref: Ref, path: str) -> pfs_pb2.File:
    return pfs_pb2.File(commit=_commit(repo, ref), path=path)


def _branch(spec: BranchSpec) -> pfs_pb2.Branch:
    if isinstance(spec, tuple):
        repo, name = spec
    else:
        repo, sep, name = spec.partition("@")
        if not sep or not repo or not name:
            raise errors.InvalidArgument(f"branch {spec!r} must look like repo@branch")
    return pfs_pb2.Branch(repo=pfs_pb2.Repo(name=repo), name=name)


_STATE_NAMES = ("STARTED", "READY", "FINISHING", "FINISHED")
_ORIGIN_NAMES = ("USER", "AUTO", "FSCK")


def _enum(value: str | int | None, names: Sequence[str], what: str) -> str | None:
    """An enum given as a name ("FINISHED", any case, or a ``pfs.model`` str enum),
    a proto number (1-based, as in pfs.proto), or None (unset) -> its proto name."""
    if value is None or value == 0:
        return None
    if isinstance(value, int):
        if not 0 < value <= len(names):
            raise errors.InvalidArgument(f"{what} number {value} invalid")
        return names[value - 1]
    name = str(getattr(value, "value", value)).upper()
    if name not in names:
        raise errors.InvalidArgument(f"{what} {value!r} invalid: use one of {', '.join(names)}")
    return name


# --- the client ------------------------------------------------------------------------


class Client(PPSMixin):  # pipelines, jobs, datums, logs: tusk/pps_client.py
    """A connection to a tusk daemon. Thread-safe; share one per process.

    Args:
        address: ``host:port`` of the daemon; default ``$TUSK_ADDRESS`` or
            ``127.0.0.1:1650``. A ``grpc://`` prefix is accepted.
    """

    def __init__(self, address: str | None = None, transaction: str | None = None) -> None:
        """``transaction``: queue supported requests in this transaction
        (see :meth:`start_transaction`) instead of running them."""
        self.transaction = transaction
        addr = address or os.environ.get("TUSK_ADDRESS") or DEFAULT_ADDRESS
        self.address = addr.removeprefix("grpc://")
        self._channel = grpc.insecure_channel(self.address, options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # Fail fast when nothing listens: retry the connection after a short
            # backoff instead of gRPC's default exponential one.
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 1000),
            ("grpc.enable_retries", 0),
            # A channel of its own: gRPC's global subchannel pool would hand a new
            # Client the connection state of an older one to the same address, so
            # right after a daemon restart it could fail at once with the old
            # "connection refused" while that subchannel waits out its backoff.
            ("grpc.use_local_subchannel_pool", 1),
        ])
        self._stub = pfs_pb2_grpc.APIStub(self._channel)  # type: ignore[no-untyped-call]
        self._direct: Any = _UNSET

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # plumbing

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC metadata every call carries (the active transaction, if any)."""
        return (("pach-transaction", self.transaction),) if self.transaction else ()

    def _call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=timeout,
                                               metadata=self.metadata())
        except grpc.RpcError as err:
            raise translate(err, self.address) from None

    def _stream(self, method: str, request: Any, timeout: float | None = None) -> Stream[Any]:
        call = getattr(self._stub, method)(request, timeout=timeout, metadata=self.metadata())
        return _stream(call, self.address)

    # transactions

    def start_transaction(self) -> pfs_pb2.TransactionInfo:
        """A new transaction. Set ``client.transaction`` to its ID (or use
        :meth:`transaction_context`) to queue requests in it."""
        r: pfs_pb2.TransactionInfo = self._call("StartTransaction", empty_pb2.Empty())
        return r

    def finish_transaction(self, id: str) -> pfs_pb2.TransactionInfo:
        """Run a transaction's queued requests, in order; every commit started
        in it gets its one commit-set ID (one job downstream)."""
        saved, self.transaction = self.transaction, None
        try:
            r: pfs_pb2.TransactionInfo = self._call(
                "FinishTransaction", pfs_pb2.Transaction(id=id))
        finally:
            self.transaction = saved if saved != id else None
        return r

    def inspect_transaction(self, id: str) -> pfs_pb2.TransactionInfo:
        r: pfs_pb2.TransactionInfo = self._call("InspectTransaction", pfs_pb2.Transaction(id=id))
        return r

    def list_transaction(self) -> Stream[pfs_pb2.TransactionInfo]:
        return self._stream("ListTransaction", pfs_pb2.ListTransactionRequest())

    def delete_transaction(self, id: str) -> None:
        """Discard a transaction and its queued requests."""
        self._call("DeleteTransaction", pfs_pb2.Transaction(id=id))
        if self.transaction == id:
            self.transaction = None

    @contextlib.contextmanager
    def transaction_context(self) -> Iterator[pfs_pb2.TransactionInfo]:
        """``with client.transaction_context(): ...``: the block's supported
        requests are queued, then run together when it ends (discarded if it
        raises)."""
        info = self.start_transaction()
        saved, self.transaction = self.transaction, info.transaction.id
        try:
            yield info
        except BaseException:
            self.transaction = saved
            self.delete_transaction(info.transaction.id)
            raise
        self.transaction = saved
        self.finish_transaction(info.transaction.id)

    # repos

    def create_repo(self, name: str, description: str = "", update: bool = False
                    ) -> pfs_pb2.RepoInfo:
        """Create a repo (``update=True``: an existing one only gets the new description)."""
        r: pfs_pb2.RepoInfo = self._call("CreateRepo", pfs_pb2.CreateRepoRequest(
            repo=pfs_pb2.Repo(name=name), description=description, update=update))
        return r

    def inspect_repo(self, name: str) -> pfs_pb2.RepoInfo:
        r: pfs_pb2.RepoInfo = self._call("InspectRepo",
                                         pfs_pb2.InspectRepoRequest(repo=pfs_pb2.Repo(name=name)))
        return r

    def list_repo(self, type: str | None = "user", project: str = "",
                  all_projects: bool = False) -> Stream[pfs_pb2.RepoInfo]:
        """Repos of one type ("user", "spec", "meta"; ``None``: every type) in
        ``project`` ("" = default) or in every project."""
        return self._stream("ListRepo", pfs_pb2.ListRepoRequest(
            type=type or "", project=project, all_projects=all_projects))

    # projects (a repo or pipeline of a project other than "default" is
    # named PROJECT/NAME wherever a repo or pipeline is named)

    def create_project(self, name: str, description: str = "", update: bool = False
                       ) -> pfs_pb2.ProjectInfo:
        r: pfs_pb2.ProjectInfo = self._call("CreateProject", pfs_pb2.CreateProjectRequest(
            project=pfs_pb2.Project(name=name), description=description, update=update))
        return r

    def inspect_project(self, name: str) -> pfs_pb2.ProjectInfo:
        r: pfs_pb2.ProjectInfo = self._call("InspectProject", pfs_pb2.Project(name=name))
        return r

    def list_project(self) -> Stream[pfs_pb2.ProjectInfo]:
        return self._stream("ListProject", pfs_pb2.ListProjectRequest())

    def delete_project(self, name: str, force: bool = False) -> None:
        """Delete a project; one with repos only with ``force`` (which deletes
        its repos and pipelines)."""
        self._call("DeleteProject", pfs_pb2.DeleteProjectRequest(
            project=pfs_pb2.Project(name=name), force=force))

    def delete_repo(self, name: str, force: bool = False) -> None:
        self._call("DeleteRepo", pfs_pb2.DeleteRepoRequest(repo=pfs_pb2.Repo(name=name),
                                                           force=force))

    # branches

    def create_branch(self, repo: str, branch: str, head: Ref | None = None,
                      provenance: Iterable[BranchSpec] = ()) -> pfs_pb2.BranchInfo:
        """Create or move a branch; ``provenance`` items are "repo@branch" or (repo, branch)."""
        req = pfs_pb2.CreateBranchRequest(
            branch=pfs_pb2.Branch(repo=pfs_pb2.Repo(name=repo), name=branch),
            head=_commit(repo, head) if head else None,
            provenance=[_branch(p) for p in provenance])
        r: pfs_pb2.BranchInfo = self._call("CreateBranch", req)
        return r

    def inspect_branch(self, repo: str, branch: str) -> pfs_pb2.BranchInfo:
        r: pfs_pb2.BranchInfo = self._call("InspectBranch", pfs_pb2.InspectBranchRequest(
            branch=pfs_pb2.Branch(repo=pfs_pb2.Repo(name=repo), name=branch)))
        return r

    def list_branch(self, repo: str) -> Stream[pfs_pb2.BranchInfo]:
        """Branches of ``repo``, newest first."""
        return self._stream("ListBranch", pfs_pb2.ListBranchRequest(repo=pfs_pb2.Repo(name=repo)))

    def delete_branch(self, repo: str, branch: str, force: bool = False) -> None:
        self._call("DeleteBranch", pfs_pb2.DeleteBranchRequest(
            branch=pfs_pb2.Branch(repo=pfs_pb2.Repo(name=repo), name=branch), force=force))

    # commits

    def start_commit(self, repo: str, branch: str, parent: Ref | None = None,
                     description: str = "") -> pfs_pb2.CommitInfo:
        r: pfs_pb2.CommitInfo = self._call("StartCommit", pfs_pb2.StartCommitRequest(
            branch=pfs_pb2.Branch(repo=pfs_pb2.Repo(name=repo), name=branch),
            parent=_commit(repo, parent) if parent else None, description=description))
        return r

    def finish_commit(self, repo: str, ref: Ref, description: str | None = None,
                      error: str = "", force: bool = False) -> pfs_pb2.CommitInfo:
        """Finish an open commit (``description=None`` keeps the current one)."""
        r: pfs_pb2.CommitInfo = self._call("FinishCommit", pfs_pb2.FinishCommitRequest(
            commit=_commit(repo, ref), description=description, error=error, force=force))
        return r

    def inspect_commit(self, repo: str, ref: Ref, wait: str | int | None = None,
                       timeout: float | None = None) -> pfs_pb2.CommitInfo:
        """Inspect a commit; ``wait="FINISHED"`` (or STARTED/READY/FINISHING) blocks
        until it reaches that state, at most ``timeout`` seconds (then DeadlineExceeded)."""
        r: pfs_pb2.CommitInfo = self._call("InspectCommit", pfs_pb2.InspectCommitRequest(
            commit=_commit(repo, ref), wait=_enum(wait, _STATE_NAMES, "state")), timeout=timeout)
        return r

    def wait_commit(self, repo: str, ref: Ref, timeout: float | None = None
                    ) -> pfs_pb2.CommitInfo:
        """Block until the commit is finished (``tusk wait commit``)."""
        return self.inspect_commit(repo, ref, wait="FINISHED", timeout=timeout)

    def list_commit(self, repo: str, ref: Ref | None = None, number: int = 0,
                    origin: str | int | None = None) -> Stream[pfs_pb2.CommitInfo]:
        """Commits newest first, walking back from ``ref`` (None: every commit of the repo)."""
        return self._stream("ListCommit", pfs_pb2.ListCommitRequest(
            repo=pfs_pb2.Repo(name=repo), to=_commit(repo, ref) if ref else None,
            number=number, origin_kind=_enum(origin, _ORIGIN_NAMES, "origin")))

    def find_commits(self, repo: str, ref: Ref, path: str, limit: int = 0
                     ) -> Stream[pfs_pb2.CommitInfo]:
        """The commits, walking back from ``ref``, that changed ``path``, newest first."""
        return self._stream("FindCommits", pfs_pb2.FindCommitsRequest(
            start=_commit(repo, ref), path=path, limit=limit))

    def subscribe_commit(self, repo: str, branch: str, from_commit: Ref | None = None,
                         state: str | int | None = "FINISHED", new: bool = False
                         ) -> Stream[pfs_pb2.CommitInfo]:
        """Stream the branch's commits as they reach ``state``; never ends by itself
        (stop iterating, or close the iterator, to end the subscription)."""
        return self._stream("SubscribeCommit", pfs_pb2.SubscribeCommitRequest(
            repo=pfs_pb2.Repo(name=repo), branch=branch,
            from_commit=_commit(repo, from_commit) if from_commit else None,
            state=_enum(state, _STATE_NAMES, "state"), new=new))

    def drop_commit(self, repo: str, ref: Ref, recursive: bool = False) -> None:
        """Delete a commit without children (branch heads move to its parent);
        ``recursive``: the commits computed from it too (refused otherwise)."""
        self._call("DropCommit", pfs_pb2.DropCommitRequest(commit=_commit(repo, ref),
                                                           recursive=recursive))

    delete_commit = drop_commit

    def squash_commit(self, repo: str, ref: Ref, recursive: bool = False) -> None:
        """Fold a commit into its children, which keep their content; refused
        for a commit without children (drop it instead)."""
        self._call("SquashCommit", pfs_pb2.SquashCommitRequest(commit=_commit(repo, ref),
                                                               recursive=recursive))

    def drop_commit_set(self, id: str) -> None:
        """Drop every commit of commit set ``id``."""
        self._call("DropCommitSet", pfs_pb2.CommitSetRequest(
            commit_set=pfs_pb2.CommitSet(id=id)))

    def squash_commit_set(self, id: str) -> None:
        """Squash every commit of commit set ``id``."""
        self._call("SquashCommitSet", pfs_pb2.CommitSetRequest(
            commit_set=pfs_pb2.CommitSet(id=id)))

    def inspect_commit_set(self, id: str, wait: bool = False) -> Stream[pfs_pb2.CommitInfo]:
        """The commits sharing a global ID (``wait``: as each one finishes)."""
        return self._stream("InspectCommitSet", pfs_pb2.InspectCommitSetRequest(
            commit_set=pfs_pb2.CommitSet(id=id), wait=wait))

    def list_commit_set(self, number: int = 0) -> Stream[pfs_pb2.CommitSetInfo]:
        return self._stream("ListCommitSet", pfs_pb2.ListCommitSetRequest(number=number))

    # files

    def modify_file(self, repo: str, ref: Ref) -> ModifyFile:
        """A context manager for one atomic change: one commit (or one addition
        to an open commit). Leaving the block with an exception aborts it."""
        return ModifyFile(self, repo, ref)

    def put_file_bytes(self, repo: str, ref: Ref, path: str, data: bytes,
                       append: bool = False) -> pfs_pb2.CommitInfo:
        with self.modify_file(repo, ref) as mf:
            mf.put_file(path, data, append=append)
        assert mf.commit_info is not None  # set by a successful close
        return mf.commit_info

    def put_files(self, repo: str, ref: Ref, files: Mapping[str, bytes]) -> pfs_pb2.CommitInfo:
        """Write many files in one commit."""
        with self.modify_file(repo, ref) as mf:
            for path, data in files.items():
                mf.put_file(path, data)
        assert mf.commit_info is not None  # set by a successful close
        return mf.commit_info

    def get_file(self, repo: str, ref: Ref, path: str, offset: int = 0) -> Stream[bytes]:
        """Stream a file's bytes (a directory fails: "Try again with the -r flag")."""
        stream: Stream[wrappers_pb2.BytesValue] = self._stream(
            "GetFile", pfs_pb2.GetFileRequest(file=_file(repo, ref, path), offset=offset))
        return (m.value for m in stream)

    def read_file_into(self, repo: str, ref: Ref, path: str, write: Callable[[memoryview], Any],
                       offset: int = 0) -> int:
        """Pass a file's bytes to ``write`` (from ``offset``); returns the byte count.

        Where there is a direct path (see :meth:`direct_target`) the chunks are
        read and verified straight from the object store (the daemon's local
        directory, or S3 through presigned URLs), several times faster than
        :meth:`get_file`; elsewhere they stream through the daemon. ``write``
        may get views into reused buffers: copy what it keeps.
        """
        from pfs.direct import PresignedUploads, read_into, read_presigned_into
        from pfs.objects import LocalObjectStore

        target = self.direct_target()
        if target is None:
            total = 0
            for piece in self.get_file(repo, ref, path, offset):
                write(memoryview(piece))
                total += len(piece)
            return total
        refs = [(bytes(c.hash), c.size, c.pack, c.offset)
                for m in self._stream("GetFileChunks", pfs_pb2.GetFileRequest(
                    file=_file(repo, ref, path))) for c in m.chunks]
        if isinstance(target, LocalObjectStore):
            return read_into(target, refs, write, offset)
        assert isinstance(target, PresignedUploads)
        packs = sorted({r[2] for r in refs})
        resp: pfs_pb2.PresignPacksResponse = self._call(
            "PresignPackReads", pfs_pb2.PresignPackReadsRequest(packs=packs))
        urls = {p.pack: p.url for p in resp.packs}
        return read_presigned_into(urls, refs, write, offset, target.http)

    def get_file_bytes(self, repo: str, ref: Ref, path: str, offset: int = 0) -> bytes:
        return b"".join(self.get_file(repo, ref, path, offset))

    def inspect_file(self, repo: str, ref: Ref, path: str) -> pfs_pb2.FileInfo:
        r: pfs_pb2.FileInfo = self._call("InspectFile", pfs_pb2.InspectFileRequest(
            file=_file(repo, ref, path)))
        return r

    # the direct path

    def direct_store(self) -> Any | None:
        """The daemon's object store, if this process can read and write it
        itself (a local directory it sees, proven by its ID file), else None.

        Large files then move without passing through the daemon (see
        :mod:`pfs.direct`). ``TUSK_DIRECT=0`` turns this off.
        """
        target = self.direct_target()
        from pfs.objects import LocalObjectStore

        return target if isinstance(target, LocalObjectStore) else None

    def direct_target(self) -> Any | None:
        """Where a direct put writes packs: the daemon's local store (as
        :meth:`direct_store`), or, for an S3 store whose server this process
        reaches, uploads to URLs the daemon presigns; else None (stream)."""
        if self._direct is _UNSET:
            target: Any = None
            if os.environ.get("TUSK_DIRECT", "1").lower() not in ("0", "false", "no", "off"):
                try:
                    info = self._call("InspectStorage", empty_pb2.Empty(), timeout=30)
                except errors.TuskError:
                    info = None  # an older daemon, or none: the streaming path reports it
                if info is not None and info.local_root:
                    from pfs.direct import open_if_same

                    target = open_if_same(info.local_root, info.store_id)
                elif info is not None and info.probe_url:
                    from pfs.direct import open_presigned

                    target = open_presigned(info.probe_url, info.store_id, self.presign_packs)
            self._direct = target
        return self._direct

    def presign_packs(self, count: int) -> list[tuple[str, str]]:
        """``count`` new pack IDs with presigned upload URLs (S3 stores)."""
        resp: pfs_pb2.PresignPacksResponse = self._call(
            "PresignPacks", pfs_pb2.PresignPacksRequest(count=count))
        return [(p.pack, p.url) for p in resp.packs]

    def find_chunks(self, hashes: Sequence[bytes]) -> list[tuple[str, int] | None]:
        """(pack, offset) of the daemon's stored copy of each digest, or None."""
        resp: pfs_pb2.FindChunksResponse = self._call(
            "FindChunks", pfs_pb2.FindChunksRequest(hashes=hashes))
        return [(c.pack, c.offset) if c.pack else None for c in resp.chunks]

    def _file_infos(self, method: str, request: Any) -> Stream[pfs_pb2.FileInfo]:
        # The server sends FileInfoBatch messages (see pfs.proto); callers see entries.
        batches: Stream[pfs_pb2.FileInfoBatch] = self._stream(method, request)
        try:
            for batch in batches:
                yield from batch.file_infos
        finally:
            batches.close()

    def list_file(self, repo: str, ref: Ref, path: str = "/") -> Stream[pfs_pb2.FileInfo]:
        """Immediate children of a directory, sorted (directories end in "/")."""
        return self._file_infos("ListFile", pfs_pb2.ListFileRequest(file=_file(repo, ref, path)))

    def walk_file(self, repo: str, ref: Ref, path: str = "/") -> Stream[pfs_pb2.FileInfo]:
        """The whole subtree under ``path`` in pre-order, directories included."""
        return self._file_infos("WalkFile", pfs_pb2.WalkFileRequest(file=_file(repo, ref, path)))

    def glob_file(self, repo: str, ref: Ref, pattern: str) -> Stream[pfs_pb2.FileInfo]:
        """Files and directories matching a glob pattern."""
        return self._file_infos("GlobFile", pfs_pb2.GlobFileRequest(
            commit=_commit(repo, ref), pattern=pattern))

    def diff_file(self, new_repo: str, new_ref: Ref, new_path: str = "/",
                  old_repo: str | None = None, old_ref: Ref | None = None,
                  old_path: str | None = None, shallow: bool = False
                  ) -> Stream[pfs_pb2.DiffFileResponse]:
        """Changed entries as (new_file, old_file) pairs; the old side defaults to
        the same path in the new commit's parent."""
        old: pfs_pb2.File | None = None
        if old_ref is not None or old_path is not None or old_repo is not None:
            old = pfs_pb2.File(path=old_path or "")
            if old_ref is not None:
                old.commit.CopyFrom(_commit(old_repo or new_repo, old_ref))
        batches: Stream[pfs_pb2.DiffFileBatch] = self._stream("DiffFile", pfs_pb2.DiffFileRequest(
            new_file=_file(new_repo, new_ref, new_path), old_file=old, shallow=shallow))
        try:
            for batch in batches:
                yield from batch.diffs
        finally:
            batches.close()


_END = object()  # end-of-stream marker in the request queue
_UNSET = object()
# Files from this size take the direct path when it is available (smaller ones
# share messages and packs with their neighbours, which is cheaper).
_DIRECT_MIN = 8 * 1024 * 1024


class ModifyFile:
    """One ModifyFile stream; use as a context manager (see :meth:`Client.modify_file`).

    Small files are packed into shared messages of up to ~4 MiB and large ones sent
    in ~4 MiB pieces, so both many tiny files and huge files move at full speed.
    A background gRPC thread sends while the caller reads the next data; a bounded
    queue keeps memory at a few pieces. After the block, :attr:`commit_info` holds
    the resulting commit.
    """

    def __init__(self, client: Client, repo: str, ref: Ref) -> None:
        self._client = client
        self._queue: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_DEPTH)
        # Ops are built in place in the pending message: nesting constructors
        # (FileOp(add_file=AddFile(data=...))) copies the data at every level,
        # which costs more than the whole gRPC send for large pieces.
        self._msg = pfs_pb2.ModifyFileRequest()
        self._buffered = 0
        self._closed = False
        self.commit_info: pfs_pb2.CommitInfo | None = None
        self._queue.put(pfs_pb2.ModifyFileRequest(commit=_commit(repo, ref)))
        self._future: Any = client._stub.ModifyFile.future(self._requests())

    def _requests(self) -> Iterator[pfs_pb2.ModifyFileRequest]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            assert isinstance(item, pfs_pb2.ModifyFileRequest)
            yield item

    def _release(self) -> None:
        # Unblocks the gRPC sender thread if it waits for a message that will never come.
        try:
            self._queue.put_nowait(_END)
        except queue.Full:
            pass  # the sender is not waiting on an empty queue

    def _fail_if_done(self) -> None:
        # A call that ended before we finished sending means the server failed
        # (e.g. the repo does not exist): report that error now.
        if self._future.done():
            self._release()
            self._result()
            raise Cancelled("the upload ended before it was complete")

    def _result(self) -> pfs_pb2.CommitInfo:
        try:
            r: pfs_pb2.CommitInfo = self._future.result()
            return r
        except grpc.RpcError as err:
            raise translate(err, self._client.address) from None
        except grpc.FutureCancelledError:
            raise Cancelled("the upload was cancelled") from None

    def _send(self, item: object) -> None:
        while True:
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                self._fail_if_done()

    def _flush(self) -> None:
        if self._msg.ops:
            self._send(self._msg)
            self._msg, self._buffered = pfs_pb2.ModifyFileRequest(), 0

    def _new_op(self) -> pfs_pb2.FileOp:
        if self._closed:
            raise errors.FailedPrecondition("this modify_file block is already closed")
        op: pfs_pb2.FileOp = self._msg.ops.add()
        return op

    def _added(self, size: int) -> None:
        self._buffered += size + 64  # rough per-op framing
        if self._buffered >= PIECE_BYTES:
            self._flush()

    def _add_piece(self, path: str, data: bytes, append: bool, more: bool) -> None:
        add = self._new_op().add_file
        add.path = path
        add.data = data
        add.append = append
        add.more = more
        self._added(len(data))

    def put_file(self, path: str, data: bytes | IO[bytes] | Iterable[bytes],
                 append: bool = False) -> None:
        """Write a file (overwrite; ``append=True`` appends to existing content).

        ``data`` is bytes, a binary file object (read in 4 MiB pieces), or an
        iterable of byte strings.
        """
        if isinstance(data, (bytes, bytearray, memoryview)):
            pieces: Iterable[bytes] = _slices(bytes(data))
        elif hasattr(data, "read"):
            f: IO[bytes] = data  # type: ignore[assignment]
            pieces = iter(lambda: f.read(PIECE_BYTES), b"")
        else:
            pieces = _resize(data)
        # One piece of look-ahead tells whether more follow (`more` flag).
        it = iter(pieces)
        cur = next(it, b"")
        for nxt in it:
            self._add_piece(path, cur, append, True)
            cur = nxt
        self._add_piece(path, cur, append, False)

    def put_file_from_path(self, path: str, local_path: str | os.PathLike[str],
                           append: bool = False, progress: Progress | None = None) -> None:
        """Put a local file at ``path``.

        A large regular file takes the direct path where there is one
        (:meth:`Client.direct_target`): this process chunks it and writes the
        new chunks into the object store itself (a local directory, or S3
        through presigned uploads), and the daemon records the refs.
        Anything else streams in 4 MiB pieces. ``progress`` hears of each
        piece as it is read (of a direct put: of the whole file once stored,
        which at ~1 GB/s is soon), then of the file.
        """
        local = os.fspath(local_path)
        with open(local, "rb") as f:
            st = os.fstat(f.fileno())
            if stat.S_ISREG(st.st_mode) and st.st_size >= _DIRECT_MIN:
                store = self._client.direct_target()
                if store is not None:
                    self._put_direct(store, path, local, append)
                    if progress is not None:
                        progress.advance(st.st_size)
                        progress.file_done(path)
                    return
            if progress is None:
                self.put_file(path, f, append=append)
                return
            self.put_file(path, _reported(iter(lambda: f.read(PIECE_BYTES), b""), progress),
                          append=append)
            progress.file_done(path)

    def put_file_from_s3(self, path: str, url: str, config: S3Config | None = None,
                         append: bool = False, progress: Progress | None = None) -> None:
        """Stream the object ``s3://BUCKET/KEY`` of any S3 server into ``path``.

        The bytes pass through this process, never whole in memory (the daemon
        fetches nothing). Endpoint, region and keys: ``config``'s, else the
        URL's ``?endpoint=URL&region=R``, else the AWS variables of this
        process's environment (``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``,
        ``AWS_ACCESS_KEY_ID``...; see :meth:`pfs.s3urls.S3Config.for_url`).
        A failure raises out of the block, which then commits nothing (see
        :mod:`tusk.s3_import`).
        """
        from tusk.s3_import import put_file_from_s3

        put_file_from_s3(self, path, url, config, append=append, progress=progress)

    def put_files_from_s3(self, path: str, url: str, config: S3Config | None = None,
                          append: bool = False, progress: Progress | None = None) -> int:
        """Put every object under the prefix ``s3://BUCKET/PREFIX`` below the
        directory ``path`` (``PREFIX/a/b`` lands at ``path/a/b``); returns the
        number of files. Streamed like :meth:`put_file_from_s3`."""
        from tusk.s3_import import put_files_from_s3

        return put_files_from_s3(self, path, url, config, append=append, progress=progress)

    def _put_direct(self, store: Any, path: str, local: str, append: bool) -> None:
        from pfs.direct import put_local_file

        self._fail_if_done()
        result = put_local_file(store, local, self._client.find_chunks)
        op = self._new_op().add_chunks
        op.path = path
        op.append = append
        op.size = result.size
        for h, n, pack, off in result.refs:
            c = op.chunks.add()
            c.hash, c.size, c.pack, c.offset = h, n, pack, off
        op.new_packs.update(result.new_packs)
        self._added(80 * len(result.refs))

    def delete_file(self, path: str) -> None:
        """Delete a file or a directory's subtree (a missing path is a no-op)."""
        self._new_op().delete_file.path = path
        self._added(len(path))

    def copy_file(self, src_repo: str, src_ref: Ref, src_path: str, dst_path: str,
                  append: bool = False) -> None:
        """Copy a file or directory by reference (no data moves)."""
        cp = self._new_op().copy_file
        cp.src.CopyFrom(_file(src_repo, src_ref, src_path))
        cp.dst_path = dst_path
        cp.append = append
        self._added(len(src_path) + len(dst_path))

    def close(self) -> pfs_pb2.CommitInfo:
        """Send what is buffered, end the stream and wait for the commit."""
        if self._closed:
            if self.commit_info is None:
                raise errors.FailedPrecondition("this modify_file block was aborted")
            return self.commit_info
        # The final message carries `done`: without it the server aborts.
        self._msg.done = True
        self._send(self._msg)
        self._msg, self._buffered = pfs_pb2.ModifyFileRequest(), 0
        self._closed = True
        self._send(_END)
        self.commit_info = self._result()
        return self.commit_info

    def abort(self) -> None:
        """Cancel the stream: nothing sent so far becomes visible."""
        self._closed = True
        self._future.cancel()
        self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if et is None:
            self.close()
        else:
            self.abort()


def _reported(pieces: Iterator[bytes], progress: Progress) -> Iterator[bytes]:
    for piece in pieces:
        progress.advance(len(piece))
        yield piece


def _slices(data: bytes) -> Iterator[bytes]:
    if len(data) <= PIECE_BYTES:
        yield data
        return
    view = memoryview(data)
    for i in range(0, len(data), PIECE_BYTES):
        yield bytes(view[i:i + PIECE_BYTES])


def _resize(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Cut an iterable of byte strings into pieces of at most PIECE_BYTES (small
    ones are passed through; packing happens at the message level)."""
    for chunk in chunks:
        yield from _slices(bytes(chunk))
