"""The gRPC adapter: ``proto/pfs.proto``'s service ``API`` on top of ``pfs.api.PFS``.

This module only translates. Requests become calls on the core PFS, the frozen
dataclasses of ``pfs.model`` become messages, and typed errors
(``pfs.errors.TuskError``) become gRPC statuses through one table
(:data:`STATUS_BY_CODE`). The error's class name and its simple fields travel in
trailing metadata so ``tusk.client`` rebuilds the same typed error.

Streams stay streams: list/walk/glob/diff results and file bytes are forwarded as
the core yields them, never collected into a list first.

Use :func:`serve` to start a server (``address`` may use port 0, e.g. in tests).
"""

from __future__ import annotations

import functools
import json
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent import futures
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf import empty_pb2, timestamp_pb2, wrappers_pb2

from pfs import errors, model
from pfs.blobs import ChunkRef
from pfs.paths import split_repo, validate_branch_name, validate_repo_name
from tusk.api import pfs_pb2, pfs_pb2_grpc
from tusk.transactions import Preview, TxnRecord, hub_for, transactional

if TYPE_CHECKING:
    from pfs.api import PFS, FileWriter

log = logging.getLogger(__name__)

#: Largest message either side accepts. ModifyFile packs up to ~4 MiB of ops per
#: message; the headroom lets a client choose bigger pieces without renegotiating.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

#: GetFile pieces: small core chunks are coalesced up to this size (fewer messages
#: means less per-message overhead in Python), larger ones are split to it.
GET_FILE_PIECE = 4 * 1024 * 1024

#: Trailing metadata keys carrying the typed error to the client.
ERROR_CLASS_KEY = "tusk-error"
ERROR_FIELDS_KEY = "tusk-error-fields"

#: The one table from ``TuskError.code`` to a gRPC status (the client inverts it).
STATUS_BY_CODE: dict[str, grpc.StatusCode] = {
    "NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "ALREADY_EXISTS": grpc.StatusCode.ALREADY_EXISTS,
    "INVALID_ARGUMENT": grpc.StatusCode.INVALID_ARGUMENT,
    "FAILED_PRECONDITION": grpc.StatusCode.FAILED_PRECONDITION,
    "UNAVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "DATA_LOSS": grpc.StatusCode.DATA_LOSS,
    "ABORTED": grpc.StatusCode.ABORTED,
    "INTERNAL": grpc.StatusCode.INTERNAL,
}

_COMMIT_ID = re.compile(r"^[0-9a-f]{32}$")


class AddressInUse(errors.FailedPrecondition):
    """The daemon's listen address cannot be bound."""

    def __init__(self, address: str) -> None:
        super().__init__(
            f"cannot listen on {address}: the address is in use or not available "
            "(stop the other daemon or pick another --address)"
        )
        self.address = address


# --- errors -------------------------------------------------------------------


def _abort(context: grpc.ServicerContext, exc: Exception) -> None:
    """End the RPC with the status for ``exc`` (always raises)."""
    if isinstance(exc, errors.TuskError):
        code = STATUS_BY_CODE.get(exc.code, grpc.StatusCode.INTERNAL)
        # Simple attributes (repo, branch, path, ...) let the client rebuild the
        # error with its structured fields, not only its message.
        fields = {k: v for k, v in vars(exc).items()
                  if k != "message" and isinstance(v, (str, int, float, bool))}
        context.set_trailing_metadata((
            (ERROR_CLASS_KEY, type(exc).__name__),
            (ERROR_FIELDS_KEY, json.dumps(fields, ensure_ascii=True)),
        ))
        context.abort(code, exc.message)
    if not context.is_active():
        # The client went away (cancel, deadline, disconnect): nobody reads the
        # status, and an RpcError from the request stream is the expected symptom.
        log.debug("call ended by the client: %s: %s", type(exc).__name__, exc)
        context.abort(grpc.StatusCode.CANCELLED, "cancelled by the client")
    log.exception("unexpected error in a gRPC call")
    context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")


_R = TypeVar("_R")
_Self = TypeVar("_Self")
_Req = TypeVar("_Req")


def _unary(fn: Callable[[_Self, _Req, grpc.ServicerContext], _R]
           ) -> Callable[[_Self, _Req, grpc.ServicerContext], _R]:
    """Wrap a unary handler so errors become statuses (see :func:`_abort`)."""
    @functools.wraps(fn)
    def wrapper(self: _Self, request: _Req, context: grpc.ServicerContext) -> _R:
        try:
            return fn(self, request, context)
        except Exception as exc:  # every error must become a status
            _abort(context, exc)
            raise  # unreachable: abort raises
    return wrapper


def _stream(fn: Callable[[_Self, _Req, grpc.ServicerContext], Iterator[_R]]
            ) -> Callable[[_Self, _Req, grpc.ServicerContext], Iterator[_R]]:
    """Wrap a server-streaming handler so errors mid-stream become statuses."""
    @functools.wraps(fn)
    def wrapper(self: _Self, request: _Req, context: grpc.ServicerContext) -> Iterator[_R]:
        try:
            yield from fn(self, request, context)
        except Exception as exc:
            _abort(context, exc)
    return wrapper


# --- model -> messages ----------------------------------------------------------


def _ts(t: float | None) -> timestamp_pb2.Timestamp | None:
    if t is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(round(t * 1e9))
    return ts


def _branch(repo: str, name: str, repo_type: str = "") -> pfs_pb2.Branch:
    return pfs_pb2.Branch(repo=pfs_pb2.Repo(name=repo, type=repo_type), name=name)


def _commit(ref: model.CommitRef) -> pfs_pb2.Commit:
    return pfs_pb2.Commit(repo=ref.repo, id=ref.id, branch=ref.branch)


def project_info_msg(pi: model.ProjectInfo) -> pfs_pb2.ProjectInfo:
    return pfs_pb2.ProjectInfo(project=pfs_pb2.Project(name=pi.name),
                               description=pi.description, created=_ts(pi.created),
                               metadata=pi.metadata)


def repo_info_msg(ri: model.RepoInfo) -> pfs_pb2.RepoInfo:
    return pfs_pb2.RepoInfo(
        repo=pfs_pb2.Repo(name=ri.name, type=ri.type, project=ri.project),
        created=_ts(ri.created),
        size_bytes_upper_bound=ri.size_bytes,
        description=ri.description,
        branches=[_branch(ri.name, b, ri.type) for b in ri.branches],
        details=pfs_pb2.RepoInfo.Details(size_bytes=ri.size_bytes),
        metadata=ri.metadata,
    )


def branch_info_msg(bi: model.BranchInfo) -> pfs_pb2.BranchInfo:
    return pfs_pb2.BranchInfo(
        branch=_branch(bi.repo, bi.name),
        head=pfs_pb2.Commit(repo=bi.repo, id=bi.head, branch=bi.name),
        provenance=[_branch(b.repo, b.name) for b in bi.provenance],
        subvenance=[_branch(b.repo, b.name) for b in bi.subvenance],
        direct_provenance=[_branch(b.repo, b.name) for b in bi.direct_provenance],
        created=_ts(bi.created),
        metadata=bi.metadata,
    )


def commit_info_msg(ci: model.CommitInfo) -> pfs_pb2.CommitInfo:
    size = ci.size_bytes or 0
    return pfs_pb2.CommitInfo(
        commit=pfs_pb2.Commit(repo=ci.repo, id=ci.id, branch=ci.branch),
        origin=pfs_pb2.OriginKind.Value(ci.origin.value),
        description=ci.description,
        parent_commit=pfs_pb2.Commit(repo=ci.repo, id=ci.parent) if ci.parent else None,
        child_commits=[pfs_pb2.Commit(repo=ci.repo, id=c) for c in ci.children],
        started=_ts(ci.started),
        finishing=_ts(ci.finishing),
        finished=_ts(ci.finished),
        direct_provenance=[_commit(c) for c in ci.direct_provenance],
        direct_subvenance=[_commit(c) for c in ci.direct_subvenance],
        error=ci.error,
        size_bytes_upper_bound=size,
        state=pfs_pb2.CommitState.Value(ci.state.value),
        details=pfs_pb2.CommitInfo.Details(size_bytes=size),
        metadata=ci.metadata,
    )


def file_info_msg(fi: model.FileInfo) -> pfs_pb2.FileInfo:
    return pfs_pb2.FileInfo(
        file=pfs_pb2.File(commit=pfs_pb2.Commit(repo=fi.repo, id=fi.commit),
                          path=fi.path, datum=fi.datum),
        file_type=pfs_pb2.FileType.Value(fi.file_type.value),
        committed=_ts(fi.committed),
        size_bytes=fi.size_bytes,
        hash=fi.hash,
        datum=fi.datum,
    )


# --- messages -> core arguments ---------------------------------------------------


def commit_ref(c: pfs_pb2.Commit) -> str:
    """The ref string a request's Commit names (see ``Commit`` in pfs.proto)."""
    if c.id and c.branch and _COMMIT_ID.match(c.id):
        return f"{c.branch}={c.id}"
    ref = c.id or c.branch
    if not ref:
        raise errors.InvalidArgument(
            f"no commit given for repo {c.repo or '?'}: name a branch or a commit id")
    return ref


def _need(name: str, what: str) -> str:
    if not name:
        raise errors.InvalidArgument(f"{what} is required")
    return name


def _state(s: int) -> model.CommitState | None:
    if s == pfs_pb2.COMMIT_STATE_UNKNOWN:
        return None
    return model.CommitState(pfs_pb2.CommitState.Name(s))


def _origin(o: int) -> model.OriginKind | None:
    if o == pfs_pb2.ORIGIN_KIND_UNKNOWN:
        return None
    return model.OriginKind(pfs_pb2.OriginKind.Name(o))


def _ref(c: pfs_pb2.ChunkRef) -> ChunkRef:
    if not c.pack or len(c.hash) != 32:
        raise errors.InvalidArgument("a chunk ref needs a 32-byte hash and a pack")
    return (bytes(c.hash), int(c.size), str(c.pack), int(c.offset))


def _rechunk(chunks: Iterable[bytes], size: int = GET_FILE_PIECE) -> Iterator[bytes]:
    """Coalesce small chunks and split big ones into pieces of at most ``size``."""
    buf: list[bytes] = []
    buffered = 0
    for chunk in chunks:
        if buffered + len(chunk) <= size:
            buf.append(chunk)
            buffered += len(chunk)
            continue
        if buf:
            yield b"".join(buf)
            buf, buffered = [], 0
        view = memoryview(chunk)
        while len(view) > size:
            yield bytes(view[:size])
            view = view[size:]
        if len(view):
            buf.append(bytes(view) if len(view) != len(chunk) else chunk)
            buffered = len(view)
    if buf:
        yield b"".join(buf)


# --- the servicer -----------------------------------------------------------------


def _txn_info(rec: TxnRecord) -> pfs_pb2.TransactionInfo:
    return pfs_pb2.TransactionInfo(transaction=pfs_pb2.Transaction(id=rec.id),
                                   started=_ts(rec.started), commit_set=rec.commit_set,
                                   requests=rec.requests)


# What a request queued in a transaction answers (see tusk.transactions).

def _txn_empty(_: object, txn: TxnRecord, req: object) -> empty_pb2.Empty:
    return empty_pb2.Empty()


def _txn_repo(_: object, txn: TxnRecord, req: pfs_pb2.CreateRepoRequest) -> pfs_pb2.RepoInfo:
    return pfs_pb2.RepoInfo(repo=req.repo, description=req.description)


def _txn_branch(_: object, txn: TxnRecord, req: pfs_pb2.CreateBranchRequest
                ) -> pfs_pb2.BranchInfo:
    return pfs_pb2.BranchInfo(branch=req.branch)


def _txn_start_commit(_: object, txn: TxnRecord, req: pfs_pb2.StartCommitRequest
                      ) -> pfs_pb2.CommitInfo:
    # Every commit of the transaction will have its commit-set ID.
    return pfs_pb2.CommitInfo(commit=pfs_pb2.Commit(
        repo=req.branch.repo.name, id=txn.commit_set, branch=req.branch.name))


def _txn_commit(_: object, txn: TxnRecord, req: pfs_pb2.FinishCommitRequest
                ) -> pfs_pb2.CommitInfo:
    return pfs_pb2.CommitInfo(commit=req.commit)


class PFSServicer:
    """Implements service ``tusk.pfs.API`` by delegating to a :class:`pfs.api.PFS`.

    Not a subclass of the generated ``APIServicer`` (an untyped base);
    ``add_APIServicer_to_server`` only looks methods up by name.
    """

    def __init__(self, pfs: PFS) -> None:
        self.pfs = pfs
        self.txns = hub_for(pfs.meta)
        self.txns.register(self, {
            "CreateRepo": pfs_pb2.CreateRepoRequest, "DeleteRepo": pfs_pb2.DeleteRepoRequest,
            "CreateBranch": pfs_pb2.CreateBranchRequest,
            "DeleteBranch": pfs_pb2.DeleteBranchRequest,
            "FinishCommit": pfs_pb2.FinishCommitRequest,
            "SquashCommit": pfs_pb2.SquashCommitRequest})
        self.txns.start_commits = self._start_commits
        self.txns.checkers.update({
            "CreateRepo": self._check_create_repo, "DeleteRepo": self._check_delete_repo,
            "CreateBranch": self._check_create_branch,
            "DeleteBranch": self._check_delete_branch,
            "StartCommit": self._check_start_commit, "FinishCommit": self._check_finish_commit,
            "SquashCommit": self._check_squash_commit})
        self.txns.undoers.update({
            "CreateRepo": self._undo_create_repo, "CreateBranch": self._undo_create_branch,
            "DeleteBranch": self._undo_delete_branch})
        self.txns.drop_commit_set = self.pfs.delete_commit_set

    # Undo of applied requests when a later one fails (tusk.transactions.replay):
    # each is computed just before its request runs.

    def _undo_create_repo(self, data: bytes) -> Callable[[], None] | None:
        name = pfs_pb2.CreateRepoRequest.FromString(data).repo.name
        try:
            old = self.pfs.inspect_repo(name)
        except errors.NotFound:
            return lambda: self.pfs.delete_repo(name, force=True)

        def restore() -> None:
            self.pfs.create_repo(name, old.description, update=True)
        return restore

    def _undo_create_branch(self, data: bytes) -> Callable[[], None] | None:
        req = pfs_pb2.CreateBranchRequest.FromString(data)
        undo = self._undo_branch(req.branch)
        if undo is None or req.HasField("head") or self._branch_known(req.branch):
            return undo
        # A new branch without a head got a new empty commit: drop it too.
        repo, name = req.branch.repo.name, req.branch.name

        def drop() -> None:
            head = self.pfs.inspect_branch(repo, name).head
            self.pfs.delete_branch(repo, name, force=True)
            if head:
                self.pfs.delete_commit(repo, head)
        return drop

    def _branch_known(self, branch: pfs_pb2.Branch) -> bool:
        try:
            self.pfs.inspect_branch(branch.repo.name, branch.name)
        except errors.NotFound:
            return False
        return True

    def _undo_delete_branch(self, data: bytes) -> Callable[[], None] | None:
        return self._undo_branch(pfs_pb2.DeleteBranchRequest.FromString(data).branch)

    def _undo_branch(self, branch: pfs_pb2.Branch) -> Callable[[], None] | None:
        repo, name = branch.repo.name, branch.name
        try:
            old = self.pfs.inspect_branch(repo, name)
        except errors.NotFound:
            return lambda: self.pfs.delete_branch(repo, name, force=True)
        return lambda: self._restore_branch(old)

    def _restore_branch(self, old: model.BranchInfo) -> None:
        self.pfs.create_branch(old.repo, old.name, head=old.head or None,
                               provenance=old.direct_provenance)

    # Checks of queued requests (tusk.transactions.preflight): each raises the
    # error its request would raise, given what the earlier requests do.

    def repo_exists(self, name: str, pv: Preview) -> bool:
        if name in pv.repos:
            return pv.repos[name]
        try:
            self.pfs.inspect_repo(name)
        except errors.NotFound:
            return False
        return True

    def _branch_exists(self, repo: str, branch: str, pv: Preview) -> bool:
        if (repo, branch) in pv.branches:
            return pv.branches[(repo, branch)]
        if pv.repos.get(repo) is not None:  # created or deleted in the transaction
            return False
        try:
            self.pfs.inspect_branch(repo, branch)
        except errors.NotFound:
            return False
        return True

    def _need_repo(self, name: str, pv: Preview) -> str:
        _need(name, "repo name")
        if not self.repo_exists(name, pv):
            raise errors.RepoNotFound(name)
        return name

    def _check_create_repo(self, data: bytes, pv: Preview) -> None:
        req = pfs_pb2.CreateRepoRequest.FromString(data)
        name = _need(req.repo.name, "repo name")
        validate_repo_name(name)
        project = split_repo(name)[0]
        if project != "default":
            self.pfs.inspect_project(project)
        if self.repo_exists(name, pv) and not req.update:
            raise errors.RepoExists(name)
        pv.repos[name] = True

    def _check_delete_repo(self, data: bytes, pv: Preview) -> None:
        req = pfs_pb2.DeleteRepoRequest.FromString(data)
        name = self._need_repo(req.repo.name, pv)
        reason = self.pfs.protected_repos(name)
        if reason and not req.force:
            raise errors.FailedPrecondition(reason)
        pv.repos[name] = False

    def _check_create_branch(self, data: bytes, pv: Preview) -> None:
        req = pfs_pb2.CreateBranchRequest.FromString(data)
        repo = self._need_repo(req.branch.repo.name, pv)
        validate_branch_name(_need(req.branch.name, "branch name"))
        for b in req.provenance:
            self._need_repo(b.repo.name, pv)
        pv.branches[(repo, req.branch.name)] = True

    def _check_delete_branch(self, data: bytes, pv: Preview) -> None:
        req = pfs_pb2.DeleteBranchRequest.FromString(data)
        repo = self._need_repo(req.branch.repo.name, pv)
        if not self._branch_exists(repo, req.branch.name, pv):
            raise errors.BranchNotFound(repo, req.branch.name)
        pv.branches[(repo, req.branch.name)] = False

    def _check_start_commit(self, data: bytes, pv: Preview) -> None:
        req = pfs_pb2.StartCommitRequest.FromString(data)
        repo = self._need_repo(req.branch.repo.name, pv)
        branch = _need(req.branch.name, "branch name")
        validate_branch_name(branch)
        key = (repo, branch)
        if key in pv.started:
            raise errors.FailedPrecondition(
                f"{repo}@{branch} has two commits started in one transaction")
        if self._branch_exists(repo, branch, pv) and pv.branches.get(key) is None:
            b = self.pfs.inspect_branch(repo, branch)
            if b.provenance:
                raise errors.FailedPrecondition(
                    f"cannot start a commit on an output branch ({repo}@{branch} has "
                    "provenance)")
        pv.started.add(key)
        pv.branches[key] = True

    def _check_finish_commit(self, data: bytes, pv: Preview) -> None:
        req = pfs_pb2.FinishCommitRequest.FromString(data)
        repo = self._need_repo(req.commit.repo, pv)
        ref = commit_ref(req.commit)
        if ref == pv.commit_set or (repo, ref) in pv.started:
            return  # started by this transaction
        if pv.repos.get(repo):
            raise errors.CommitNotFound(repo, ref)
        c = self.pfs.inspect_commit(repo, ref)
        if c.state == model.CommitState.FINISHED:
            raise errors.CommitFinished(repo, c.id)

    def _check_squash_commit(self, data: bytes, pv: Preview) -> None:
        req = pfs_pb2.SquashCommitRequest.FromString(data)
        repo = self._need_repo(req.commit.repo, pv)
        self.pfs.inspect_commit(repo, commit_ref(req.commit))

    def _start_commits(self, requests: list[bytes], set_id: str) -> None:
        starts = []
        for data in requests:
            req = pfs_pb2.StartCommitRequest()
            req.ParseFromString(data)
            parent = commit_ref(req.parent) if req.HasField("parent") else None
            starts.append((_need(req.branch.repo.name, "repo name"),
                           _need(req.branch.name, "branch name"), parent, req.description))
        self.pfs.start_commits(starts, set_id=set_id)

    # projects

    @_unary
    def CreateProject(self, req: pfs_pb2.CreateProjectRequest, ctx: grpc.ServicerContext
                      ) -> pfs_pb2.ProjectInfo:
        return project_info_msg(self.pfs.create_project(
            _need(req.project.name, "project name"), req.description, update=req.update))

    @_unary
    def InspectProject(self, req: pfs_pb2.Project, ctx: grpc.ServicerContext
                       ) -> pfs_pb2.ProjectInfo:
        return project_info_msg(self.pfs.inspect_project(_need(req.name, "project name")))

    @_stream
    def ListProject(self, req: pfs_pb2.ListProjectRequest, ctx: grpc.ServicerContext
                    ) -> Iterator[pfs_pb2.ProjectInfo]:
        for pi in self.pfs.list_project():
            yield project_info_msg(pi)

    @_unary
    def DeleteProject(self, req: pfs_pb2.DeleteProjectRequest, ctx: grpc.ServicerContext
                      ) -> empty_pb2.Empty:
        self.pfs.delete_project(_need(req.project.name, "project name"), force=req.force)
        return empty_pb2.Empty()

    # transactions

    @_unary
    def StartTransaction(self, req: empty_pb2.Empty, ctx: grpc.ServicerContext
                         ) -> pfs_pb2.TransactionInfo:
        return _txn_info(self.txns.log.start())

    @_unary
    def InspectTransaction(self, req: pfs_pb2.Transaction, ctx: grpc.ServicerContext
                           ) -> pfs_pb2.TransactionInfo:
        return _txn_info(self.txns.log.get(_need(req.id, "transaction id")))

    @_stream
    def ListTransaction(self, req: pfs_pb2.ListTransactionRequest, ctx: grpc.ServicerContext
                        ) -> Iterator[pfs_pb2.TransactionInfo]:
        for rec in self.txns.log.all():
            yield _txn_info(rec)

    @_unary
    def DeleteTransaction(self, req: pfs_pb2.Transaction, ctx: grpc.ServicerContext
                          ) -> empty_pb2.Empty:
        self.txns.log.delete(_need(req.id, "transaction id"))
        return empty_pb2.Empty()

    @_unary
    def FinishTransaction(self, req: pfs_pb2.Transaction, ctx: grpc.ServicerContext
                          ) -> pfs_pb2.TransactionInfo:
        return _txn_info(self.txns.finish(_need(req.id, "transaction id")))

    # repos

    @transactional(_txn_repo)
    @_unary
    def CreateRepo(self, req: pfs_pb2.CreateRepoRequest, ctx: grpc.ServicerContext
                   ) -> pfs_pb2.RepoInfo:
        if req.repo.type not in ("", "user"):
            raise errors.InvalidArgument(
                f"cannot create a {req.repo.type} repo directly: "
                "spec and meta repos are made by pipelines")
        ri = self.pfs.create_repo(_need(req.repo.name, "repo name"), req.description,
                                  update=req.update)
        return repo_info_msg(ri)

    @_unary
    def InspectRepo(self, req: pfs_pb2.InspectRepoRequest, ctx: grpc.ServicerContext
                    ) -> pfs_pb2.RepoInfo:
        return repo_info_msg(self.pfs.inspect_repo(_need(req.repo.name, "repo name")))

    @_stream
    def ListRepo(self, req: pfs_pb2.ListRepoRequest, ctx: grpc.ServicerContext
                 ) -> Iterator[pfs_pb2.RepoInfo]:
        project = None if req.all_projects else (req.project or "default")
        for ri in self.pfs.list_repo(type=req.type or None, project=project):
            yield repo_info_msg(ri)

    @transactional(_txn_empty)
    @_unary
    def DeleteRepo(self, req: pfs_pb2.DeleteRepoRequest, ctx: grpc.ServicerContext
                   ) -> empty_pb2.Empty:
        self.pfs.delete_repo(_need(req.repo.name, "repo name"), force=req.force)
        return empty_pb2.Empty()

    # branches

    @transactional(_txn_branch)
    @_unary
    def CreateBranch(self, req: pfs_pb2.CreateBranchRequest, ctx: grpc.ServicerContext
                     ) -> pfs_pb2.BranchInfo:
        repo = _need(req.branch.repo.name, "repo name")
        head: str | None = None
        if req.HasField("head"):
            if req.head.repo and req.head.repo != repo:
                raise errors.InvalidArgument(
                    f"branch head {req.head.repo}@... must be a commit in repo {repo}")
            head = commit_ref(req.head)
        prov = [model.BranchRef(b.repo.name, b.name) for b in req.provenance]
        bi = self.pfs.create_branch(repo, _need(req.branch.name, "branch name"), head=head,
                                    provenance=prov)
        return branch_info_msg(bi)

    @_unary
    def InspectBranch(self, req: pfs_pb2.InspectBranchRequest, ctx: grpc.ServicerContext
                      ) -> pfs_pb2.BranchInfo:
        return branch_info_msg(self.pfs.inspect_branch(
            _need(req.branch.repo.name, "repo name"), _need(req.branch.name, "branch name")))

    @_stream
    def ListBranch(self, req: pfs_pb2.ListBranchRequest, ctx: grpc.ServicerContext
                   ) -> Iterator[pfs_pb2.BranchInfo]:
        for bi in self.pfs.list_branch(_need(req.repo.name, "repo name")):
            yield branch_info_msg(bi)

    @transactional(_txn_empty)
    @_unary
    def DeleteBranch(self, req: pfs_pb2.DeleteBranchRequest, ctx: grpc.ServicerContext
                     ) -> empty_pb2.Empty:
        self.pfs.delete_branch(_need(req.branch.repo.name, "repo name"),
                               _need(req.branch.name, "branch name"), force=req.force)
        return empty_pb2.Empty()

    # commits

    @transactional(_txn_start_commit)
    @_unary
    def StartCommit(self, req: pfs_pb2.StartCommitRequest, ctx: grpc.ServicerContext
                    ) -> pfs_pb2.CommitInfo:
        parent = commit_ref(req.parent) if req.HasField("parent") else None
        ci = self.pfs.start_commit(_need(req.branch.repo.name, "repo name"),
                                   _need(req.branch.name, "branch name"),
                                   parent=parent, description=req.description)
        return commit_info_msg(ci)

    @transactional(_txn_commit)
    @_unary
    def FinishCommit(self, req: pfs_pb2.FinishCommitRequest, ctx: grpc.ServicerContext
                     ) -> pfs_pb2.CommitInfo:
        desc = req.description if req.HasField("description") else None
        ci = self.pfs.finish_commit(_need(req.commit.repo, "repo name"), commit_ref(req.commit),
                                    description=desc, error=req.error, force=req.force)
        return commit_info_msg(ci)

    @_unary
    def InspectCommit(self, req: pfs_pb2.InspectCommitRequest, ctx: grpc.ServicerContext
                      ) -> pfs_pb2.CommitInfo:
        # The client's deadline bounds a wait; without one the wait is unbounded.
        ci = self.pfs.inspect_commit(_need(req.commit.repo, "repo name"), commit_ref(req.commit),
                                     wait=_state(req.wait), timeout=ctx.time_remaining())
        return commit_info_msg(ci)

    @_stream
    def ListCommit(self, req: pfs_pb2.ListCommitRequest, ctx: grpc.ServicerContext
                   ) -> Iterator[pfs_pb2.CommitInfo]:
        ref = commit_ref(req.to) if req.HasField("to") else None
        for ci in self.pfs.list_commit(_need(req.repo.name, "repo name"), ref,
                                       number=req.number, origin=_origin(req.origin_kind)):
            yield commit_info_msg(ci)

    @_stream
    def FindCommits(self, req: pfs_pb2.FindCommitsRequest, ctx: grpc.ServicerContext
                    ) -> Iterator[pfs_pb2.CommitInfo]:
        if req.limit < 0:
            raise errors.InvalidArgument("limit must not be negative")
        for ci in self.pfs.find_commits(_need(req.start.repo, "repo name"),
                                        commit_ref(req.start), req.path or "/", limit=req.limit):
            yield commit_info_msg(ci)

    @_stream
    def SubscribeCommit(self, req: pfs_pb2.SubscribeCommitRequest, ctx: grpc.ServicerContext
                        ) -> Iterator[pfs_pb2.CommitInfo]:
        # The core blocks waiting for new commits; the event ends that wait
        # when the client goes away (cancel, deadline, disconnect).
        cancel = threading.Event()
        ctx.add_callback(cancel.set)
        from_commit = commit_ref(req.from_commit) if req.HasField("from_commit") else None
        state = _state(req.state) or model.CommitState.FINISHED
        for ci in self.pfs.subscribe_commit(
                _need(req.repo.name, "repo name"), _need(req.branch, "branch name"),
                from_commit=from_commit, state=state, new=req.new, cancel=cancel):
            yield commit_info_msg(ci)

    @_unary
    def DropCommit(self, req: pfs_pb2.DropCommitRequest, ctx: grpc.ServicerContext
                   ) -> empty_pb2.Empty:
        self.pfs.delete_commit(_need(req.commit.repo, "repo name"), commit_ref(req.commit),
                               recursive=req.recursive)
        return empty_pb2.Empty()

    @transactional(_txn_empty)
    @_unary
    def SquashCommit(self, req: pfs_pb2.SquashCommitRequest, ctx: grpc.ServicerContext
                     ) -> empty_pb2.Empty:
        self.pfs.squash_commit(_need(req.commit.repo, "repo name"), commit_ref(req.commit),
                               recursive=req.recursive)
        return empty_pb2.Empty()

    @_unary
    def DropCommitSet(self, req: pfs_pb2.CommitSetRequest, ctx: grpc.ServicerContext
                      ) -> empty_pb2.Empty:
        self.pfs.delete_commit_set(_need(req.commit_set.id, "commit set id"))
        return empty_pb2.Empty()

    @_unary
    def SquashCommitSet(self, req: pfs_pb2.CommitSetRequest, ctx: grpc.ServicerContext
                        ) -> empty_pb2.Empty:
        self.pfs.squash_commit_set(_need(req.commit_set.id, "commit set id"))
        return empty_pb2.Empty()

    @_stream
    def InspectCommitSet(self, req: pfs_pb2.InspectCommitSetRequest, ctx: grpc.ServicerContext
                         ) -> Iterator[pfs_pb2.CommitInfo]:
        for ci in self.pfs.inspect_commit_set(_need(req.commit_set.id, "commit set id"),
                                              wait=req.wait):
            yield commit_info_msg(ci)

    @_stream
    def ListCommitSet(self, req: pfs_pb2.ListCommitSetRequest, ctx: grpc.ServicerContext
                      ) -> Iterator[pfs_pb2.CommitSetInfo]:
        for set_id, commits in self.pfs.list_commit_set(number=req.number):
            yield pfs_pb2.CommitSetInfo(commit_set=pfs_pb2.CommitSet(id=set_id),
                                        commits=[commit_info_msg(c) for c in commits])

    # files

    @_unary
    def ModifyFile(self, requests: Iterator[pfs_pb2.ModifyFileRequest],
                   ctx: grpc.ServicerContext) -> pfs_pb2.CommitInfo:
        first = next(requests, None)
        if first is None or not first.HasField("commit"):
            raise errors.InvalidArgument("ModifyFile: the first message must name the commit")
        # Resolving the target here makes a missing repo fail before any upload.
        writer = self.pfs.modify_file(_need(first.commit.repo, "repo name"),
                                      commit_ref(first.commit))
        prefetch = _Prefetch(requests)
        try:
            stream = _OpStream(first, prefetch)
            self._apply_ops(writer, stream)
            if not stream.done or not ctx.is_active():
                # No `done` marker: the client cancelled (see ModifyFileRequest).
                raise errors.Conflict("ModifyFile ended without its final message "
                                      "(cancelled by the client); nothing was written")
            ci = writer.close()
        except BaseException:
            # Client cancellation surfaces here as an RpcError from `requests`.
            writer.abort()
            raise
        finally:
            prefetch.stop()
        return commit_info_msg(ci)

    @staticmethod
    def _apply_ops(writer: FileWriter, ops: _OpStream) -> None:
        for op in ops:
            kind = op.WhichOneof("op")
            if kind == "add_file":
                add = op.add_file
                if not add.more:
                    writer.put_file(add.path, (add.data,) if add.data else (), append=add.append)
                    continue
                pieces = _FilePieces(add, ops)
                writer.put_file(add.path, pieces, append=add.append)
                pieces.drain()
            elif kind == "delete_file":
                writer.delete_file(op.delete_file.path)
            elif kind == "add_chunks":
                ac = op.add_chunks
                writer.put_direct(ac.path, [_ref(c) for c in ac.chunks], ac.size,
                                  dict(ac.new_packs), append=ac.append)
            elif kind == "copy_file":
                cp = op.copy_file
                writer.copy_file(_need(cp.src.commit.repo, "copy source repo"),
                                 commit_ref(cp.src.commit), cp.src.path, cp.dst_path,
                                 append=cp.append)
            else:
                raise errors.InvalidArgument("ModifyFile: empty file op")

    @_stream
    def GetFile(self, req: pfs_pb2.GetFileRequest, ctx: grpc.ServicerContext
                ) -> Iterator[wrappers_pb2.BytesValue]:
        f = req.file
        chunks = self.pfs.get_file(_need(f.commit.repo, "repo name"), commit_ref(f.commit),
                                   f.path, offset=req.offset)
        for piece in _rechunk(chunks):
            yield wrappers_pb2.BytesValue(value=piece)

    @_unary
    def InspectStorage(self, req: empty_pb2.Empty, ctx: grpc.ServicerContext
                       ) -> pfs_pb2.StorageInfo:
        info = self.pfs.storage_info()
        return pfs_pb2.StorageInfo(local_root=info.local_root, store_id=info.store_id,
                                   probe_url=info.probe_url)

    @_unary
    def PresignPacks(self, req: pfs_pb2.PresignPacksRequest, ctx: grpc.ServicerContext
                     ) -> pfs_pb2.PresignPacksResponse:
        resp = pfs_pb2.PresignPacksResponse()
        for pack, url in self.pfs.presign_packs(req.count):
            resp.packs.add(pack=pack, url=url)
        return resp

    @_unary
    def PresignPackReads(self, req: pfs_pb2.PresignPackReadsRequest, ctx: grpc.ServicerContext
                         ) -> pfs_pb2.PresignPacksResponse:
        resp = pfs_pb2.PresignPacksResponse()
        for pack, url in self.pfs.presign_pack_reads(list(req.packs)):
            resp.packs.add(pack=pack, url=url)
        return resp

    @_unary
    def FindChunks(self, req: pfs_pb2.FindChunksRequest, ctx: grpc.ServicerContext
                   ) -> pfs_pb2.FindChunksResponse:
        found = self.pfs.find_chunks(list(req.hashes))
        resp = pfs_pb2.FindChunksResponse()
        for h, hit in zip(req.hashes, found, strict=True):
            c = resp.chunks.add()
            if hit is not None:
                c.hash, c.pack, c.offset = h, hit[0], hit[1]
        return resp

    @_stream
    def GetFileChunks(self, req: pfs_pb2.GetFileRequest, ctx: grpc.ServicerContext
                      ) -> Iterator[pfs_pb2.FileChunks]:
        f = req.file
        size, refs = self.pfs.file_chunks(_need(f.commit.repo, "repo name"),
                                          commit_ref(f.commit), f.path)
        msg = pfs_pb2.FileChunks(size=size)
        for h, n, pack, off in refs:
            c = msg.chunks.add()
            c.hash, c.size, c.pack, c.offset = h, n, pack, off
            if len(msg.chunks) >= 4096:
                yield msg
                msg = pfs_pb2.FileChunks()
        if msg.chunks or msg.size == size:
            yield msg

    @_unary
    def InspectFile(self, req: pfs_pb2.InspectFileRequest, ctx: grpc.ServicerContext
                    ) -> pfs_pb2.FileInfo:
        f = req.file
        return file_info_msg(self.pfs.inspect_file(
            _need(f.commit.repo, "repo name"), commit_ref(f.commit), f.path or "/"))

    @_stream
    def ListFile(self, req: pfs_pb2.ListFileRequest, ctx: grpc.ServicerContext
                 ) -> Iterator[pfs_pb2.FileInfoBatch]:
        f = req.file
        infos = self.pfs.list_file(_need(f.commit.repo, "repo name"), commit_ref(f.commit),
                                   f.path or "/")
        yield from _file_batches(infos)

    @_stream
    def WalkFile(self, req: pfs_pb2.WalkFileRequest, ctx: grpc.ServicerContext
                 ) -> Iterator[pfs_pb2.FileInfoBatch]:
        f = req.file
        infos = self.pfs.walk_file(_need(f.commit.repo, "repo name"), commit_ref(f.commit),
                                   f.path or "/")
        yield from _file_batches(infos)

    @_stream
    def GlobFile(self, req: pfs_pb2.GlobFileRequest, ctx: grpc.ServicerContext
                 ) -> Iterator[pfs_pb2.FileInfoBatch]:
        infos = self.pfs.glob_file(_need(req.commit.repo, "repo name"),
                                   commit_ref(req.commit), req.pattern)
        yield from _file_batches(infos)

    @_stream
    def DiffFile(self, req: pfs_pb2.DiffFileRequest, ctx: grpc.ServicerContext
                 ) -> Iterator[pfs_pb2.DiffFileBatch]:
        new = req.new_file
        new_repo = _need(new.commit.repo, "repo name")
        old_repo: str | None = None
        old_ref: str | None = None
        old_path: str | None = None
        if req.HasField("old_file"):
            old = req.old_file
            if old.HasField("commit"):
                old_repo = old.commit.repo or new_repo
                old_ref = commit_ref(old.commit)
            old_path = old.path or None
        pairs = self.pfs.diff_file(
            new_repo, commit_ref(new.commit), new.path or "/",
            old_repo=old_repo, old_ref=old_ref, old_path=old_path, shallow=req.shallow)
        diffs = (pfs_pb2.DiffFileResponse(new_file=file_info_msg(n) if n else None,
                                          old_file=file_info_msg(o) if o else None)
                 for n, o in pairs)
        for batch in _batches(diffs):
            yield pfs_pb2.DiffFileBatch(diffs=batch)


#: Largest number of entries in one FileInfoBatch / DiffFileBatch message.
MAX_BATCH = 1024
#: A batch is sent once it is this old, even if small (slow producers: glob, diff).
BATCH_SECONDS = 0.05


def _batches(items: Iterable[_R]) -> Iterator[list[_R]]:
    """Group a stream into batches of 1, 2, 4 ... MAX_BATCH items.

    Growing batches make the first entries arrive at once (a caller reading only
    the head of a listing) and amortise gRPC's per-message cost on long ones.
    """
    limit = 1
    batch: list[_R] = []
    started = time.monotonic()
    for item in items:
        if not batch:
            started = time.monotonic()
        batch.append(item)
        if len(batch) >= limit or time.monotonic() - started >= BATCH_SECONDS:
            yield batch
            batch = []
            limit = min(limit * 2, MAX_BATCH)
    if batch:
        yield batch


def _file_batches(infos: Iterable[model.FileInfo]) -> Iterator[pfs_pb2.FileInfoBatch]:
    for batch in _batches(file_info_msg(fi) for fi in infos):
        yield pfs_pb2.FileInfoBatch(file_infos=batch)


class _Prefetch:
    """Reads a request stream ahead on its own thread (a few messages deep).

    Receiving a message and storing the previous one then overlap: receiving
    waits on the network outside the GIL while ``put_file`` chunks and hashes.
    """

    _END = object()

    def __init__(self, it: Iterator[_R], depth: int = 4) -> None:
        self._it = it
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="tusk-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _pump(self) -> None:
        try:
            for item in self._it:
                if not self._put(item):
                    return
            self._put(self._END)
        except BaseException as exc:
            self._put(_Raised(exc))

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        item = self._queue.get()
        if item is self._END:
            self._queue.put(item)  # stay exhausted
            raise StopIteration
        if isinstance(item, _Raised):
            raise item.exc
        return item

    def stop(self) -> None:
        """Let the reader thread go (it ends with the call's request stream)."""
        self._stopped.set()


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _OpStream:
    """Every op of a ModifyFile stream, in order, across message boundaries.

    ``done`` tells, once exhausted, whether the client's final message arrived.
    """

    def __init__(self, first: pfs_pb2.ModifyFileRequest,
                 rest: Iterator[pfs_pb2.ModifyFileRequest]) -> None:
        self.done = False
        self._it = self._gen(first, rest)

    def _gen(self, first: pfs_pb2.ModifyFileRequest,
             rest: Iterator[pfs_pb2.ModifyFileRequest]) -> Iterator[pfs_pb2.FileOp]:
        req = first
        while True:
            yield from req.ops
            if req.done:
                self.done = True
                break
            nxt = next(rest, None)
            if nxt is None:
                return
            if nxt.HasField("commit"):
                raise errors.InvalidArgument(
                    "ModifyFile: only the first message may name the commit")
            req = nxt
        if next(rest, None) is not None:
            raise errors.InvalidArgument("ModifyFile: messages after the final (done) one")

    def __iter__(self) -> Iterator[pfs_pb2.FileOp]:
        return self._it

    def __next__(self) -> pfs_pb2.FileOp:
        return next(self._it)


class _FilePieces:
    """The data of one file whose AddFile ops continue (``more``) across the stream.

    An iterator handed to ``FileWriter.put_file``: it pulls ops from the shared op
    stream lazily, so a large file is never held in memory.
    """

    def __init__(self, first: pfs_pb2.AddFile, ops: _OpStream) -> None:
        self._path = first.path
        self._ops = ops
        self._next: bytes | None = first.data
        self._more = first.more

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        while True:
            if self._next is not None:
                data, self._next = self._next, None
                if data:
                    return data
            if not self._more:
                raise StopIteration
            op = next(self._ops, None)
            if op is None:
                raise errors.InvalidArgument(
                    f"ModifyFile: the stream ended in the middle of file {self._path}")
            if op.WhichOneof("op") != "add_file" or op.add_file.path != self._path:
                raise errors.InvalidArgument(
                    f"ModifyFile: file {self._path} was not continued (more=true) by its next op")
            self._next = op.add_file.data
            self._more = op.add_file.more

    def drain(self) -> None:
        """Consume what ``put_file`` left, so later ops are not read as this file's data."""
        for _ in self:
            pass


# --- serving -------------------------------------------------------------------------

#: Adds one more service to a server (e.g. PPS): ``fn(server)``.
Registrar = Callable[[grpc.Server], None]


def channel_options() -> list[tuple[str, Any]]:
    """gRPC options shared by the server and the client."""
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]


def serve(pfs: PFS, address: str = "127.0.0.1:0", *, registrars: Sequence[Registrar] = (),
          max_workers: int = 512, interceptors: Sequence[grpc.ServerInterceptor] = (),
          ) -> tuple[grpc.Server, int]:
    """Start a gRPC server for ``pfs`` (and any extra services) on ``address``.

    Args:
        pfs: the core file system to expose.
        address: ``host:port``; port 0 picks a free port (tests).
        registrars: callables adding further servicers (the PPS service).
        max_workers: threads serving calls; each open stream (a subscription, a
            followed log, an upload) holds one while it lasts, so this bounds the
            open followers (threads start on demand: an idle daemon has few).
        interceptors: wrap every call of every service (``tusk.metrics``
            counts and times them).

    Returns:
        The started server and the port it is bound to.

    Raises:
        AddressInUse: the address cannot be bound.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="tusk-grpc"),
        # SO_REUSEPORT (gRPC's default on Linux) would let a second daemon bind the
        # same port silently and split the traffic between the two.
        options=[*channel_options(), ("grpc.so_reuseport", 0)],
        interceptors=list(interceptors),
    )
    pfs_pb2_grpc.add_APIServicer_to_server(  # type: ignore[no-untyped-call]
        PFSServicer(pfs), server)
    for register in registrars:
        register(server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpc >= 1.50 raises instead of returning 0
        raise AddressInUse(address) from exc
    if port == 0:
        raise AddressInUse(address)
    server.start()
    return server, port
