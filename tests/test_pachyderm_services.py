"""Pachyderm's small services on tusk (``tusk.pachyderm.services``): version,
admin, transactions, auth (not activated) and metadata, through an in-process
server and Pachyderm's wire schema (``tusk.pachyderm_api``)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any, cast

import grpc
import pytest
from google.protobuf import empty_pb2

from pfs import errors
from pfs.api import PFS, open_pfs
from tusk.pachyderm import Core, services
from tusk.pachyderm import pfs as pfs_adapter
from tusk.pachyderm_api import (
    admin_pb2,
    admin_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    metadata_pb2,
    metadata_pb2_grpc,
    pfs_pb2,
    pfs_pb2_grpc,
    transaction_pb2,
    transaction_pb2_grpc,
    version_pb2,
    version_pb2_grpc,
)
from tusk.server import PFSServicer


def _serve(pfs: PFS) -> tuple[grpc.Server, grpc.Channel]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    # These services use only the PFS side of the core.
    core = Core(pfs=PFSServicer(pfs), pps=cast(Any, None))
    services.add_to_server(server, core)
    pfs_adapter.add_to_server(server, core)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, grpc.insecure_channel(f"127.0.0.1:{port}")


class Stubs:
    def __init__(self, channel: grpc.Channel) -> None:
        self.version = version_pb2_grpc.APIStub(channel)  # type: ignore[no-untyped-call]
        self.admin = admin_pb2_grpc.APIStub(channel)  # type: ignore[no-untyped-call]
        self.txn = transaction_pb2_grpc.APIStub(channel)  # type: ignore[no-untyped-call]
        self.auth = auth_pb2_grpc.APIStub(channel)  # type: ignore[no-untyped-call]
        self.meta = metadata_pb2_grpc.APIStub(channel)  # type: ignore[no-untyped-call]
        self.pfs = pfs_pb2_grpc.APIStub(channel)  # type: ignore[no-untyped-call]


@pytest.fixture
def core_pfs(tmp_path: Any) -> Iterator[PFS]:
    svc = open_pfs(str(tmp_path), "memory://", "memory://")
    yield svc
    svc.meta.close()


@pytest.fixture
def api(core_pfs: PFS) -> Iterator[Stubs]:
    server, channel = _serve(core_pfs)
    yield Stubs(channel)
    channel.close()
    server.stop(None)


def _repo(name: str, project: str = "default") -> pfs_pb2.Repo:
    return pfs_pb2.Repo(name=name, type="user", project=pfs_pb2.Project(name=project))


def _in_txn(txn_id: str) -> tuple[tuple[str, str]]:
    return (("pach-transaction", txn_id),)


def test_version_is_the_pachyderm_release_served(api: Stubs) -> None:
    v = api.version.GetVersion(empty_pb2.Empty())
    assert (v.major, v.minor, v.micro) == services.VERSION
    assert v.additional.startswith("tusk-")


def test_cluster_id_is_stable_per_deployment(core_pfs: PFS) -> None:
    first, ch1 = _serve(core_pfs)
    cid = Stubs(ch1).admin.InspectCluster(admin_pb2.InspectClusterRequest()).id
    ch1.close()
    first.stop(None)
    second, ch2 = _serve(core_pfs)  # a restart on the same metadata store
    assert Stubs(ch2).admin.InspectCluster(admin_pb2.InspectClusterRequest()).id == cid
    assert len(cid) == 32
    ch2.close()
    second.stop(None)


def test_inspect_cluster_warns_of_another_client_version(api: Stubs) -> None:
    same = api.admin.InspectCluster(admin_pb2.InspectClusterRequest(
        client_version=version_pb2.Version(major=2, minor=12, micro=0)))
    assert same.warnings_ok and not same.warnings
    other = api.admin.InspectCluster(admin_pb2.InspectClusterRequest(
        client_version=version_pb2.Version(major=2, minor=7, micro=1)))
    assert other.warnings_ok and "2.7.1" in other.warnings[0]


@pytest.mark.parametrize("call", ["WhoAmI", "GetConfiguration", "Authorize", "GetRoleBinding"])
def test_auth_is_not_activated(api: Stubs, call: str) -> None:
    request_type = {"WhoAmI": auth_pb2.WhoAmIRequest,
                    "GetConfiguration": auth_pb2.GetConfigurationRequest,
                    "Authorize": auth_pb2.AuthorizeRequest,
                    "GetRoleBinding": auth_pb2.GetRoleBindingRequest}[call]
    with pytest.raises(grpc.RpcError) as err:
        getattr(api.auth, call)(request_type())
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert err.value.details() == "the auth service is not activated"


def test_transaction_queues_pachyderm_requests_and_finishes(api: Stubs) -> None:
    txn = api.txn.StartTransaction(transaction_pb2.StartTransactionRequest())
    api.pfs.CreateRepo(pfs_pb2.CreateRepoRequest(repo=_repo("queued")), metadata=_in_txn(txn.id))
    listed = api.pfs.ListRepo(pfs_pb2.ListRepoRequest())
    assert [r.repo.name for r in listed] == []  # queued, not run

    info = api.txn.InspectTransaction(transaction_pb2.InspectTransactionRequest(transaction=txn))
    assert info.transaction.id == txn.id
    assert [r.create_repo.repo.name for r in info.requests] == ["queued"]
    infos = api.txn.ListTransaction(transaction_pb2.ListTransactionRequest())
    assert [i.transaction.id for i in infos.transaction_info] == [txn.id]

    # The SDK sends FinishTransaction with the transaction in its metadata.
    done = api.txn.FinishTransaction(transaction_pb2.FinishTransactionRequest(transaction=txn),
                                     metadata=_in_txn(txn.id))
    assert [r.create_repo.repo.name for r in done.requests] == ["queued"]
    assert [r.repo.name for r in api.pfs.ListRepo(pfs_pb2.ListRepoRequest())] == ["queued"]
    with pytest.raises(grpc.RpcError) as err:
        api.txn.InspectTransaction(transaction_pb2.InspectTransactionRequest(transaction=txn))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_an_empty_transaction_id_in_metadata_means_none(api: Stubs) -> None:
    api.pfs.CreateRepo(pfs_pb2.CreateRepoRequest(repo=_repo("direct")), metadata=_in_txn(""))
    assert [r.repo.name for r in api.pfs.ListRepo(pfs_pb2.ListRepoRequest())] == ["direct"]


def test_deleted_transaction_runs_nothing(api: Stubs) -> None:
    txn = api.txn.StartTransaction(transaction_pb2.StartTransactionRequest())
    api.pfs.CreateRepo(pfs_pb2.CreateRepoRequest(repo=_repo("never")), metadata=_in_txn(txn.id))
    api.txn.DeleteTransaction(transaction_pb2.DeleteTransactionRequest(transaction=txn))
    assert list(api.pfs.ListRepo(pfs_pb2.ListRepoRequest())) == []
    with pytest.raises(grpc.RpcError) as err:
        api.txn.DeleteTransaction(transaction_pb2.DeleteTransactionRequest(transaction=txn))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_batch_transaction_runs_its_requests_together(api: Stubs) -> None:
    reqs = [transaction_pb2.TransactionRequest(create_repo=pfs_pb2.CreateRepoRequest(
        repo=_repo(name))) for name in ("b1", "b2")]
    reqs.append(transaction_pb2.TransactionRequest(start_commit=pfs_pb2.StartCommitRequest(
        branch=pfs_pb2.Branch(repo=_repo("b1"), name="master"))))
    info = api.txn.BatchTransaction(transaction_pb2.BatchTransactionRequest(requests=reqs))
    assert len(info.requests) == 3 and len(info.responses) == 3
    commit_id = info.responses[2].commit.id
    assert commit_id
    assert sorted(r.repo.name for r in api.pfs.ListRepo(pfs_pb2.ListRepoRequest())) == [
        "b1", "b2"]
    ci = api.pfs.InspectCommit(pfs_pb2.InspectCommitRequest(
        commit=pfs_pb2.Commit(repo=_repo("b1"), id=commit_id)))
    assert ci.commit.id == commit_id
    assert not list(api.txn.ListTransaction(
        transaction_pb2.ListTransactionRequest()).transaction_info)


def test_batch_transaction_that_fails_changes_nothing(api: Stubs) -> None:
    reqs = [transaction_pb2.TransactionRequest(create_repo=pfs_pb2.CreateRepoRequest(
                repo=_repo("ok"))),
            transaction_pb2.TransactionRequest(delete_repo=pfs_pb2.DeleteRepoRequest(
                repo=_repo("missing")))]
    with pytest.raises(grpc.RpcError) as err:
        api.txn.BatchTransaction(transaction_pb2.BatchTransactionRequest(requests=reqs))
    assert err.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION)
    assert list(api.pfs.ListRepo(pfs_pb2.ListRepoRequest())) == []
    assert not list(api.txn.ListTransaction(
        transaction_pb2.ListTransactionRequest()).transaction_info)


def test_batch_request_without_an_operation_is_refused(api: Stubs) -> None:
    with pytest.raises(grpc.RpcError) as err:
        api.txn.BatchTransaction(transaction_pb2.BatchTransactionRequest(
            requests=[transaction_pb2.TransactionRequest()]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not list(api.txn.ListTransaction(
        transaction_pb2.ListTransactionRequest()).transaction_info)


# --- metadata -----------------------------------------------------------------------


def _add(key: str, value: str) -> metadata_pb2.Edit:
    return metadata_pb2.Edit(add_key=metadata_pb2.EditAddKey(key=key, value=value))


def test_edit_map_follows_pachyderms_rules() -> None:
    m = services.edit_map({}, _add("a", "1"))
    assert m == {"a": "1"}
    with pytest.raises(errors.InvalidArgument, match="already exists"):
        services.edit_map(m, _add("a", "2"))
    edit = metadata_pb2.Edit(edit_key=metadata_pb2.EditEditKey(key="a", value="2"))
    assert services.edit_map(m, edit) == {"a": "2"}
    edit = metadata_pb2.Edit(delete_key=metadata_pb2.EditDeleteKey(key="zz"))
    assert services.edit_map(m, edit) == m
    edit = metadata_pb2.Edit(replace=metadata_pb2.EditReplace(replacement={"x": "y"}))
    assert services.edit_map(m, edit) == {"x": "y"}
    with pytest.raises(errors.InvalidArgument, match="may not be empty"):
        services.edit_map(m, _add("", "v"))


def test_edit_metadata_of_repo_branch_commit_project_cluster(api: Stubs, core_pfs: PFS) -> None:
    core_pfs.create_project("lab")
    core_pfs.create_repo("lab/data")
    commit = core_pfs.start_commit("lab/data", "master")
    repo_picker = pfs_pb2.RepoPicker(name=pfs_pb2.RepoPickerRepoName(
        project=pfs_pb2.ProjectPicker(name="lab"), name="data"))
    branch_picker = pfs_pb2.BranchPicker(name=pfs_pb2.BranchPickerBranchName(
        repo=repo_picker, name="master"))
    edits = [
        metadata_pb2.Edit(repo=repo_picker, add_key=metadata_pb2.EditAddKey(key="r", value="1")),
        metadata_pb2.Edit(branch=branch_picker,
                          add_key=metadata_pb2.EditAddKey(key="b", value="2")),
        metadata_pb2.Edit(commit=pfs_pb2.CommitPicker(id=pfs_pb2.CommitPickerCommitByGlobalId(
            repo=repo_picker, id=commit.id)), add_key=metadata_pb2.EditAddKey(key="c", value="3")),
        metadata_pb2.Edit(project=pfs_pb2.ProjectPicker(name="lab"),
                          add_key=metadata_pb2.EditAddKey(key="p", value="4")),
        metadata_pb2.Edit(cluster=metadata_pb2.ClusterPicker(),
                          add_key=metadata_pb2.EditAddKey(key="k", value="5")),
    ]
    api.meta.EditMetadata(metadata_pb2.EditMetadataRequest(edits=edits))
    assert core_pfs.inspect_repo("lab/data").metadata == {"r": "1"}
    assert core_pfs.inspect_branch("lab/data", "master").metadata == {"b": "2"}
    assert core_pfs.inspect_commit("lab/data", commit.id).metadata == {"c": "3"}
    assert core_pfs.inspect_project("lab").metadata == {"p": "4"}
    assert api.admin.InspectCluster(admin_pb2.InspectClusterRequest()).metadata == {"k": "5"}
    # Updating the project keeps its metadata.
    core_pfs.create_project("lab", description="new", update=True)
    assert core_pfs.inspect_project("lab").metadata == {"p": "4"}


def test_edit_metadata_of_a_missing_repo_is_not_found(api: Stubs) -> None:
    picker = pfs_pb2.RepoPicker(name=pfs_pb2.RepoPickerRepoName(name="nope"))
    with pytest.raises(grpc.RpcError) as err:
        api.meta.EditMetadata(metadata_pb2.EditMetadataRequest(edits=[
            metadata_pb2.Edit(repo=picker, add_key=metadata_pb2.EditAddKey(key="a", value="b"))]))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def _raw(channel: grpc.Channel, method: str) -> Any:
    """A unary call sending and receiving raw bytes (no message types needed)."""
    return channel.unary_unary(method, request_serializer=None, response_deserializer=None)


@pytest.fixture
def channel(core_pfs: PFS) -> Iterator[grpc.Channel]:
    server, ch = _serve(core_pfs)
    yield ch
    ch.close()
    server.stop(None)


def test_health_check_is_serving(channel: grpc.Channel) -> None:
    assert _raw(channel, "/grpc.health.v1.Health/Check")(b"") == b"\x08\x01"


def test_enterprise_is_not_active_and_identity_is_auth(channel: grpc.Channel) -> None:
    assert _raw(channel, "/enterprise_v2.API/GetState")(b"") == b""  # state NONE
    assert _raw(channel, "/license_v2.API/DeleteAll")(b"") == b""  # nothing to delete
    with pytest.raises(grpc.RpcError) as err:
        _raw(channel, "/enterprise_v2.API/Activate")(b"")
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "does not exist on tusk" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        _raw(channel, "/identity_v2.API/DeleteAll")(b"")
    assert err.value.details() == "the auth service is not activated"


def test_debug_and_storage_say_what_to_use_instead(channel: grpc.Channel) -> None:
    for method, hint in (("/debug_v2.Debug/Binary", "daemon's log"),
                         ("/storage.Fileset/ReadFileset", "ModifyFile")):
        call = channel.unary_stream(method, request_serializer=None,
                                    response_deserializer=None)
        with pytest.raises(grpc.RpcError) as err:
            list(call(b""))
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert hint in err.value.details()
