"""Pachyderm's small services: ``versionpb_v2``, ``admin_v2``, ``transaction_v2``,
``auth_v2`` and ``metadata.API``.

* ``versionpb_v2.API/GetVersion`` answers the Pachyderm release whose wire
  schema this adapter speaks (:data:`VERSION`), with tusk's own version in
  ``additional``; clients use it to show ``pachd`` 's version, none refuse it.
* ``admin_v2.API/InspectCluster``: a cluster ID created once per deployment
  (its metadata store), so it is stable across restarts of one data dir, and a
  warning when the client's major.minor differs from :data:`VERSION`.
* ``transaction_v2.API`` over tusk's transactions (``tusk.transactions``): a
  Pachyderm transaction *is* a tusk transaction, so requests sent by either
  API with ``pach-transaction`` metadata join it. ``BatchTransaction`` starts
  one, passes each request to the Pachyderm adapter's own handler with the
  transaction in the call's metadata (:class:`_InTransaction`), and finishes it;
  a request refused while queueing deletes it again (nothing ran).
* ``auth_v2.API``: auth is not activated on tusk; every call answers
  UNIMPLEMENTED "the auth service is not activated", the status and text
  Pachyderm answers then (the SDK turns it into ``AuthServiceNotActivated``).
* ``metadata.API/EditMetadata``: the metadata maps of the cluster (kept here)
  and of repos, branches, commits and projects (``pfs.api.PFS.edit_metadata``).
* ``debug_v2.Debug`` and ``storage.Fileset`` answer UNIMPLEMENTED saying what
  to use instead (rather than gRPC's bare "Method not found!"); ``identity_v2``
  as auth; ``enterprise_v2``/``license_v2`` as a cluster without a license
  (state NONE, nothing to delete); ``grpc.health.v1.Health/Check`` SERVING.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
from google.protobuf import empty_pb2

from pfs import errors
from pfs.metadata import Compare, Put
from tusk.api import pfs_pb2 as t
from tusk.api import pps_pb2 as tpps
from tusk.pachyderm import convert
from tusk.pachyderm_api import (
    admin_pb2,
    admin_pb2_grpc,
    auth_pb2,
    debug_pb2,
    enterprise_pb2,
    identity_pb2,
    license_pb2,
    metadata_pb2,
    metadata_pb2_grpc,
    pfs_pb2,
    pps_pb2,
    storage_pb2,
    transaction_pb2,
    transaction_pb2_grpc,
    version_pb2,
    version_pb2_grpc,
)
from tusk.server import STATUS_BY_CODE
from tusk.transactions import METADATA_KEY

if TYPE_CHECKING:
    from pfs.api import PFS
    from tusk.pachyderm import Core

#: The Pachyderm release whose API (pachyderm-sdk's schema) is served.
VERSION = (2, 12, 2)

#: The text Pachyderm's auth calls answer while auth is off; clients match it.
AUTH_NOT_ACTIVATED = "the auth service is not activated"

# Records of this module in the deployment's metadata store.
_CLUSTER_ID_KEY = "pachyderm/cluster_id"
_CLUSTER_METADATA_KEY = "pachyderm/cluster_metadata"


def _tusk_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tusk")
    except PackageNotFoundError:
        return "dev"


def version_msg() -> version_pb2.Version:
    major, minor, micro = VERSION
    return version_pb2.Version(major=major, minor=minor, micro=micro,
                               additional=f"tusk-{_tusk_version()}", platform="tusk")


# --- errors ---------------------------------------------------------------------------


class _Aborted(Exception):
    """What a handler called with an :class:`_InTransaction` context aborted with."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def _fail(ctx: grpc.ServicerContext, exc: Exception) -> NoReturn:
    """End the call with the status for ``exc`` (the table of ``tusk.server``)."""
    if isinstance(exc, _Aborted):
        ctx.abort(exc.code, exc.details)
    if isinstance(exc, errors.TuskError):
        ctx.abort(STATUS_BY_CODE.get(exc.code, grpc.StatusCode.INTERNAL), exc.message)
    ctx.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")
    raise AssertionError("unreachable: abort raises")


# --- version, admin -------------------------------------------------------------------


class VersionAdapter(version_pb2_grpc.APIServicer):
    def GetVersion(self, request: empty_pb2.Empty, context: grpc.ServicerContext
                   ) -> version_pb2.Version:
        return version_msg()


def cluster_id(pfs: PFS) -> str:
    """The deployment's cluster ID: made by the first call, then read."""
    kv = pfs.meta.get(_CLUSTER_ID_KEY)
    if kv is None:
        new = uuid.uuid4().hex
        # Create-if-absent: two daemons on one store agree on the first ID written.
        pfs.meta.txn([Compare(_CLUSTER_ID_KEY, 0)], [Put(_CLUSTER_ID_KEY, new.encode())])
        kv = pfs.meta.get(_CLUSTER_ID_KEY)
        assert kv is not None
    return kv.value.decode()


def cluster_metadata(pfs: PFS) -> dict[str, str]:
    kv = pfs.meta.get(_CLUSTER_METADATA_KEY)
    return {} if kv is None else dict(json.loads(kv.value))


class AdminAdapter(admin_pb2_grpc.APIServicer):
    def __init__(self, core: Core) -> None:
        self.core = core

    def InspectCluster(self, request: admin_pb2.InspectClusterRequest,
                       context: grpc.ServicerContext) -> admin_pb2.ClusterInfo:
        pfs = self.core.pfs.pfs
        try:
            cid = cluster_id(pfs)
            info = admin_pb2.ClusterInfo(id=cid, deployment_id=cid, warnings_ok=True,
                                         metadata=cluster_metadata(pfs))
        except Exception as exc:  # every error must become a status
            _fail(context, exc)
        cv = request.client_version
        if request.HasField("client_version") and (cv.major, cv.minor) != VERSION[:2]:
            info.warnings.append(
                f"client version {cv.major}.{cv.minor}.{cv.micro} does not match server "
                f"version {'.'.join(map(str, VERSION))}: some calls may not work as expected")
        return info


# --- transactions ---------------------------------------------------------------------


class _InTransaction:
    """The caller's context with ``pach-transaction: <txn>`` as its metadata, for
    queueing a request through the adapter's own handler. ``abort`` raises
    :class:`_Aborted` so the batch can clean up before the real call ends."""

    def __init__(self, real: grpc.ServicerContext, txn_id: str) -> None:
        self._real = real
        self._metadata = tuple((k, v) for k, v in (real.invocation_metadata() or ())
                               if k != METADATA_KEY) + ((METADATA_KEY, txn_id),)
        self._code: grpc.StatusCode | None = None
        self._details = ""

    def invocation_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self._metadata

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        raise _Aborted(code, details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def set_trailing_metadata(self, md: Any) -> None:
        self._real.set_trailing_metadata(md)

    def failed(self, exc: Exception) -> _Aborted:
        """What ended a handler: its abort, or the status it set before raising."""
        if isinstance(exc, _Aborted):
            return exc
        if self._code is not None and self._code != grpc.StatusCode.OK:
            return _Aborted(self._code, self._details or str(exc))
        if isinstance(exc, errors.TuskError):
            return _Aborted(STATUS_BY_CODE.get(exc.code, grpc.StatusCode.INTERNAL), exc.message)
        return _Aborted(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")

    def __getattr__(self, name: str) -> Any:  # is_active, peer, time_remaining...
        return getattr(self._real, name)


# TransactionRequest field -> (service, method) of the adapter handling it.
_BATCH_HANDLERS: dict[str, tuple[str, str]] = {
    "create_repo": ("pfs", "CreateRepo"),
    "delete_repo": ("pfs", "DeleteRepo"),
    "start_commit": ("pfs", "StartCommit"),
    "finish_commit": ("pfs", "FinishCommit"),
    "squash_commit_set": ("pfs", "SquashCommitSet"),
    "create_branch": ("pfs", "CreateBranch"),
    "delete_branch": ("pfs", "DeleteBranch"),
    "update_job_state": ("pps", "UpdateJobState"),
    "stop_job": ("pps", "StopJob"),
    "create_pipeline_v2": ("pps", "CreatePipeline"),
}


def _request_body(req: transaction_pb2.TransactionRequest) -> tuple[str, Any]:
    """The one request a TransactionRequest holds: (field, message)."""
    for fd, value in req.ListFields():
        if fd.name in _BATCH_HANDLERS:
            if fd.name == "create_pipeline_v2":
                return fd.name, value.create_pipeline_request
            return fd.name, value
    raise errors.InvalidArgument("a transaction request names no operation (create_repo, "
                                 "start_commit, create_branch, ...)")


def _pachyderm_request(method: str, data: bytes) -> transaction_pb2.TransactionRequest | None:
    """A queued tusk request as Pachyderm's TransactionRequest (None: no equivalent)."""
    out = transaction_pb2.TransactionRequest()
    if method == "CreateRepo":
        cr = t.CreateRepoRequest.FromString(data)
        out.create_repo.CopyFrom(pfs_pb2.CreateRepoRequest(
            repo=convert.to_repo_msg(cr.repo), description=cr.description, update=cr.update))
    elif method == "DeleteRepo":
        dr = t.DeleteRepoRequest.FromString(data)
        out.delete_repo.CopyFrom(pfs_pb2.DeleteRepoRequest(
            repo=convert.to_repo_msg(dr.repo), force=dr.force))
    elif method == "StartCommit":
        sc = t.StartCommitRequest.FromString(data)
        out.start_commit.CopyFrom(pfs_pb2.StartCommitRequest(
            branch=convert.to_branch(sc.branch), description=sc.description))
        if sc.parent.id or sc.parent.branch:
            out.start_commit.parent.CopyFrom(convert.to_commit(sc.parent))
    elif method == "FinishCommit":
        fc = t.FinishCommitRequest.FromString(data)
        out.finish_commit.CopyFrom(pfs_pb2.FinishCommitRequest(
            commit=convert.to_commit(fc.commit), description=fc.description, error=fc.error,
            force=fc.force))
    elif method == "CreateBranch":
        cb = t.CreateBranchRequest.FromString(data)
        out.create_branch.CopyFrom(pfs_pb2.CreateBranchRequest(
            branch=convert.to_branch(cb.branch),
            provenance=[convert.to_branch(b) for b in cb.provenance]))
        if cb.head.id or cb.head.branch:
            out.create_branch.head.CopyFrom(convert.to_commit(cb.head))
    elif method == "DeleteBranch":
        db = t.DeleteBranchRequest.FromString(data)
        out.delete_branch.CopyFrom(pfs_pb2.DeleteBranchRequest(
            branch=convert.to_branch(db.branch), force=db.force))
    elif method == "SquashCommit":
        sq = t.SquashCommitRequest.FromString(data)
        out.squash_commit_set.CopyFrom(pfs_pb2.SquashCommitSetRequest(
            commit_set=pfs_pb2.CommitSet(id=sq.commit.id)))
    elif method == "CreatePipeline":
        cp = tpps.CreatePipelineRequest.FromString(data)
        out.create_pipeline_v2.CopyFrom(pps_pb2.CreatePipelineTransaction(
            user_json=cp.spec_json))
    else:
        return None
    return out


class TransactionAdapter(transaction_pb2_grpc.APIServicer):
    """``transaction_v2.API`` over tusk's transactions (see the module docstring)."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self._handlers: dict[str, Any] = {}

    def _handler(self, service: str) -> Any:
        # The adapters are made on first use: BatchTransaction is rare.
        if service not in self._handlers:
            if service == "pfs":
                from tusk.pachyderm.pfs import PFSAdapter

                self._handlers[service] = PFSAdapter(self.core)
            else:
                from tusk.pachyderm.pps import PPSAdapter

                self._handlers[service] = PPSAdapter(self.core)
        return self._handlers[service]

    def _info(self, txn_id: str, responses: list[transaction_pb2.TransactionResponse] | None
              = None) -> transaction_pb2.TransactionInfo:
        hub = self.core.pfs.txns
        rec = hub.log.get(txn_id)
        out = transaction_pb2.TransactionInfo(transaction=transaction_pb2.Transaction(id=rec.id))
        out.started.FromNanoseconds(int(rec.started * 1e9))
        for method, data in hub.log.ops(txn_id):
            req = _pachyderm_request(method, data)
            if req is not None:
                out.requests.append(req)
        out.responses.extend(responses or ())
        return out

    def _finished_info(self, rec_id: str, started: float, requests:
                       list[transaction_pb2.TransactionRequest],
                       responses: list[transaction_pb2.TransactionResponse]
                       ) -> transaction_pb2.TransactionInfo:
        out = transaction_pb2.TransactionInfo(transaction=transaction_pb2.Transaction(id=rec_id),
                                              requests=requests, responses=responses)
        out.started.FromNanoseconds(int(started * 1e9))
        return out

    def StartTransaction(self, request: transaction_pb2.StartTransactionRequest,
                         context: grpc.ServicerContext) -> transaction_pb2.Transaction:
        try:
            rec = self.core.pfs.txns.log.start()
        except Exception as exc:  # every error must become a status
            _fail(context, exc)
        return transaction_pb2.Transaction(id=rec.id)

    def InspectTransaction(self, request: transaction_pb2.InspectTransactionRequest,
                           context: grpc.ServicerContext) -> transaction_pb2.TransactionInfo:
        try:
            return self._info(_need_id(request.transaction))
        except Exception as exc:  # every error must become a status
            _fail(context, exc)

    def ListTransaction(self, request: transaction_pb2.ListTransactionRequest,
                        context: grpc.ServicerContext) -> transaction_pb2.TransactionInfos:
        try:
            out = transaction_pb2.TransactionInfos()
            for rec in self.core.pfs.txns.log.all():
                try:
                    out.transaction_info.append(self._info(rec.id))
                except errors.NotFound:  # finished or deleted meanwhile
                    continue
            return out
        except Exception as exc:  # every error must become a status
            _fail(context, exc)

    def DeleteTransaction(self, request: transaction_pb2.DeleteTransactionRequest,
                          context: grpc.ServicerContext) -> empty_pb2.Empty:
        try:
            self.core.pfs.txns.log.delete(_need_id(request.transaction))
        except Exception as exc:  # every error must become a status
            _fail(context, exc)
        return empty_pb2.Empty()

    def DeleteAll(self, request: transaction_pb2.DeleteAllRequest,
                  context: grpc.ServicerContext) -> empty_pb2.Empty:
        try:
            log = self.core.pfs.txns.log
            for rec in list(log.all()):
                try:
                    log.delete(rec.id)
                except errors.NotFound:
                    continue
        except Exception as exc:  # every error must become a status
            _fail(context, exc)
        return empty_pb2.Empty()

    def FinishTransaction(self, request: transaction_pb2.FinishTransactionRequest,
                          context: grpc.ServicerContext) -> transaction_pb2.TransactionInfo:
        # The call carries its own ID as pach-transaction (the SDK's client
        # does so): nothing here is transactional, so it is not queued.
        try:
            txn_id = _need_id(request.transaction)
            before = self._info(txn_id)
            self.core.pfs.txns.finish(txn_id)
        except Exception as exc:  # every error must become a status
            _fail(context, exc)
        return self._finished_info(txn_id, before.started.ToNanoseconds() / 1e9,
                                   list(before.requests), [])

    def BatchTransaction(self, request: transaction_pb2.BatchTransactionRequest,
                         context: grpc.ServicerContext) -> transaction_pb2.TransactionInfo:
        log = self.core.pfs.txns.log
        try:
            rec = log.start()
        except Exception as exc:  # every error must become a status
            _fail(context, exc)
        inner = _InTransaction(context, rec.id)
        responses: list[transaction_pb2.TransactionResponse] = []
        try:
            for req in request.requests:
                field, body = _request_body(req)
                service, method = _BATCH_HANDLERS[field]
                answer = getattr(self._handler(service), method)(body, inner)
                response = transaction_pb2.TransactionResponse()
                if field == "start_commit" and isinstance(answer, pfs_pb2.Commit):
                    response.commit.CopyFrom(answer)
                responses.append(response)
            self.core.pfs.txns.finish(rec.id)
        except Exception as exc:  # every error must become a status
            _drop(log, rec.id)
            _fail(context, inner.failed(exc))
        return self._finished_info(rec.id, rec.started, list(request.requests), responses)


def _drop(log: Any, txn_id: str) -> None:
    """Forget a transaction whose batch failed (it may be gone already)."""
    try:
        log.delete(txn_id)
    except errors.TuskError:
        pass


def _need_id(txn: transaction_pb2.Transaction) -> str:
    if not txn.id:
        raise errors.InvalidArgument("transaction id is required")
    return txn.id


# --- auth -----------------------------------------------------------------------------


def _refuse(service: Any, message: str, answers: Mapping[str, bytes] | None = None
            ) -> grpc.GenericRpcHandler:
    """Every method of ``service`` (a service descriptor) answering UNIMPLEMENTED
    with ``message``, but those in ``answers`` (unary: method -> the encoded
    response, b"" for an empty message).

    Requests are not parsed (``request_deserializer`` is left out), so the
    handler needs no message types and covers methods added later too.
    """
    def refuse(request: Any, context: grpc.ServicerContext) -> NoReturn:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, message)
        raise AssertionError("unreachable: abort raises")

    def answer(response: bytes) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(lambda request, context: response)

    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for m in service.methods:
        if answers and m.name in answers:
            handlers[m.name] = answer(answers[m.name])
        elif m.client_streaming and m.server_streaming:
            handlers[m.name] = grpc.stream_stream_rpc_method_handler(refuse)
        elif m.client_streaming:
            handlers[m.name] = grpc.stream_unary_rpc_method_handler(refuse)
        elif m.server_streaming:
            handlers[m.name] = grpc.unary_stream_rpc_method_handler(refuse)
        else:
            handlers[m.name] = grpc.unary_unary_rpc_method_handler(refuse)
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


#: ``grpc.health.v1.HealthCheckResponse{status: SERVING}``, encoded (field 1 = 1):
#: the one health answer, without a dependency for one constant message.
_HEALTH_SERVING = b"\x08\x01"


def _health() -> grpc.GenericRpcHandler:
    """gRPC's standard health check (python-pachyderm's ``health_check``): a
    daemon that answers is serving."""
    return grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(lambda request, context: _HEALTH_SERVING),
    })


_NO_ENTERPRISE = ("Pachyderm Enterprise (licenses, enterprise activation) does not exist on "
                  "tusk: its features are either free (projects, transactions) or absent (auth)")


def _refusals() -> tuple[grpc.GenericRpcHandler, ...]:
    return (
        _refuse(auth_pb2.DESCRIPTOR.services_by_name["API"], AUTH_NOT_ACTIVATED),
        # Identity (OIDC clients, IdPs) is part of auth; clients that reset a
        # cluster (python-pachyderm's delete_all) expect auth's answer.
        _refuse(identity_pb2.DESCRIPTOR.services_by_name["API"], AUTH_NOT_ACTIVATED),
        # Not activated, as a Pachyderm cluster without a license: GetState
        # answers NONE, DeleteAll has nothing to delete.
        _refuse(enterprise_pb2.DESCRIPTOR.services_by_name["API"], _NO_ENTERPRISE,
                {"GetState": b""}),
        _refuse(license_pb2.DESCRIPTOR.services_by_name["API"], _NO_ENTERPRISE,
                {"DeleteAll": b""}),
        _health(),
        _refuse(debug_pb2.DESCRIPTOR.services_by_name["Debug"],
                "the debug service (dumps, profiles, binaries of pachd) is not available "
                "on tusk: read the daemon's log and `tusk logs` instead"),
        _refuse(storage_pb2.DESCRIPTOR.services_by_name["Fileset"],
                "the storage service (raw filesets) is not available on tusk: write files "
                "with ModifyFile in a commit instead"),
    )


# --- metadata -------------------------------------------------------------------------


def edit_map(current: Mapping[str, str], edit: metadata_pb2.Edit) -> dict[str, str]:
    """``current`` after one edit, with Pachyderm's rules: add_key refuses a key
    that exists, edit_key sets it whether or not, delete_key of a missing key
    is no error, replace sets the whole map.

    Raises:
        InvalidArgument: an add of an existing key, or no operation.
    """
    out = dict(current)
    op = edit.WhichOneof("op")
    if op == "replace":
        return dict(edit.replace.replacement)
    key = getattr(edit, op).key if op else ""
    if op and not key:
        raise errors.InvalidArgument(f"{op}: the metadata key may not be empty")
    if op == "add_key":
        if edit.add_key.key in out:
            raise errors.InvalidArgument(
                f"key {edit.add_key.key!r} already exists with value "
                f"{out[edit.add_key.key]!r}; use edit_key to change it")
        out[edit.add_key.key] = edit.add_key.value
    elif op == "edit_key":
        out[edit.edit_key.key] = edit.edit_key.value
    elif op == "delete_key":
        out.pop(edit.delete_key.key, None)
    else:
        raise errors.InvalidArgument("an edit names no operation "
                                     "(replace, add_key, edit_key, delete_key)")
    return out


def _picked_repo(picker: pfs_pb2.RepoPicker) -> str:
    name = picker.name
    if not name.name:
        raise errors.InvalidArgument("a repo picker needs a repo name")
    project = name.project.name or convert.DEFAULT_PROJECT
    return convert.repo_name(pfs_pb2.Repo(name=name.name, project=pfs_pb2.Project(name=project)))


class MetadataAdapter(metadata_pb2_grpc.APIServicer):
    def __init__(self, core: Core) -> None:
        self.core = core

    def EditMetadata(self, request: metadata_pb2.EditMetadataRequest,
                     context: grpc.ServicerContext) -> metadata_pb2.EditMetadataResponse:
        try:
            for edit in request.edits:
                self._edit(edit)
        except Exception as exc:  # every error must become a status
            _fail(context, exc)
        return metadata_pb2.EditMetadataResponse()

    def _edit(self, edit: metadata_pb2.Edit) -> None:
        pfs = self.core.pfs.pfs
        target = edit.WhichOneof("target")

        def change(current: Mapping[str, str]) -> dict[str, str]:
            return edit_map(current, edit)

        if target == "cluster":
            _edit_cluster(pfs, change)
        elif target == "repo":
            pfs.edit_metadata(change, repo=_picked_repo(edit.repo))
        elif target == "project":
            name = edit.project.name
            if not name:
                raise errors.InvalidArgument("a project picker needs a project name")
            pfs.edit_metadata(change, project=name)
        elif target == "branch":
            picker = edit.branch.name
            pfs.edit_metadata(change, repo=_picked_repo(picker.repo), branch=picker.name)
        elif target == "commit":
            which = edit.commit.WhichOneof("picker")
            if which == "id":
                pfs.edit_metadata(change, repo=_picked_repo(edit.commit.id.repo),
                                  commit=edit.commit.id.id)
            elif which == "branch_head":
                head = edit.commit.branch_head.name
                pfs.edit_metadata(change, repo=_picked_repo(head.repo), commit=head.name)
            else:
                raise errors.InvalidArgument(
                    f"commit picker {which!r} is not supported: pick the commit by id "
                    "or branch_head")
        elif target == "pipeline":
            raise errors.InvalidArgument(
                "pipeline metadata is not supported by tusk: edit the pipeline's spec "
                "(its metadata field) instead")
        else:
            raise errors.InvalidArgument("an edit names no target "
                                         "(project, repo, branch, commit, cluster)")


def _edit_cluster(pfs: PFS, change: Callable[[Mapping[str, str]], dict[str, str]]) -> None:
    for _ in range(100):  # compare-and-swap: another daemon may edit it too
        kv = pfs.meta.get(_CLUSTER_METADATA_KEY)
        current = {} if kv is None else dict(json.loads(kv.value))
        new = json.dumps(change(current), sort_keys=True).encode()
        if pfs.meta.txn([Compare(_CLUSTER_METADATA_KEY, 0 if kv is None else kv.mod_revision)],
                        [Put(_CLUSTER_METADATA_KEY, new)]):
            return
    raise errors.Conflict("the cluster's metadata changed 100 times while editing it; "
                         "try again")


# --- registration ---------------------------------------------------------------------


def add_to_server(server: grpc.Server, core: Core) -> None:
    version_pb2_grpc.add_APIServicer_to_server(  # type: ignore[no-untyped-call]
        VersionAdapter(), server)
    admin_pb2_grpc.add_APIServicer_to_server(  # type: ignore[no-untyped-call]
        AdminAdapter(core), server)
    transaction_pb2_grpc.add_APIServicer_to_server(  # type: ignore[no-untyped-call]
        TransactionAdapter(core), server)
    metadata_pb2_grpc.add_APIServicer_to_server(  # type: ignore[no-untyped-call]
        MetadataAdapter(core), server)
    server.add_generic_rpc_handlers(_refusals())


__all__ = [
    "AUTH_NOT_ACTIVATED",
    "VERSION",
    "AdminAdapter",
    "MetadataAdapter",
    "TransactionAdapter",
    "VersionAdapter",
    "add_to_server",
    "cluster_id",
    "edit_map",
    "version_msg",
]
