import datetime

from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import wrappers_pb2 as _wrappers_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OriginKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORIGIN_KIND_UNKNOWN: _ClassVar[OriginKind]
    USER: _ClassVar[OriginKind]
    AUTO: _ClassVar[OriginKind]
    FSCK: _ClassVar[OriginKind]

class CommitState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMMIT_STATE_UNKNOWN: _ClassVar[CommitState]
    STARTED: _ClassVar[CommitState]
    READY: _ClassVar[CommitState]
    FINISHING: _ClassVar[CommitState]
    FINISHED: _ClassVar[CommitState]

class FileType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESERVED: _ClassVar[FileType]
    FILE: _ClassVar[FileType]
    DIR: _ClassVar[FileType]
ORIGIN_KIND_UNKNOWN: OriginKind
USER: OriginKind
AUTO: OriginKind
FSCK: OriginKind
COMMIT_STATE_UNKNOWN: CommitState
STARTED: CommitState
READY: CommitState
FINISHING: CommitState
FINISHED: CommitState
RESERVED: FileType
FILE: FileType
DIR: FileType

class Repo(_message.Message):
    __slots__ = ("name", "type", "project")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    project: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., project: _Optional[str] = ...) -> None: ...

class Project(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ProjectInfo(_message.Message):
    __slots__ = ("project", "description", "created", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    project: Project
    description: str
    created: _timestamp_pb2.Timestamp
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, project: _Optional[_Union[Project, _Mapping]] = ..., description: _Optional[str] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CreateProjectRequest(_message.Message):
    __slots__ = ("project", "description", "update")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    project: Project
    description: str
    update: bool
    def __init__(self, project: _Optional[_Union[Project, _Mapping]] = ..., description: _Optional[str] = ..., update: _Optional[bool] = ...) -> None: ...

class DeleteProjectRequest(_message.Message):
    __slots__ = ("project", "force")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    project: Project
    force: bool
    def __init__(self, project: _Optional[_Union[Project, _Mapping]] = ..., force: _Optional[bool] = ...) -> None: ...

class ListProjectRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Branch(_message.Message):
    __slots__ = ("repo", "name")
    REPO_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    repo: Repo
    name: str
    def __init__(self, repo: _Optional[_Union[Repo, _Mapping]] = ..., name: _Optional[str] = ...) -> None: ...

class Commit(_message.Message):
    __slots__ = ("repo", "id", "branch")
    REPO_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    repo: str
    id: str
    branch: str
    def __init__(self, repo: _Optional[str] = ..., id: _Optional[str] = ..., branch: _Optional[str] = ...) -> None: ...

class CommitSet(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class File(_message.Message):
    __slots__ = ("commit", "path", "datum")
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    DATUM_FIELD_NUMBER: _ClassVar[int]
    commit: Commit
    path: str
    datum: str
    def __init__(self, commit: _Optional[_Union[Commit, _Mapping]] = ..., path: _Optional[str] = ..., datum: _Optional[str] = ...) -> None: ...

class RepoInfo(_message.Message):
    __slots__ = ("repo", "created", "size_bytes_upper_bound", "description", "branches", "details", "metadata")
    class Details(_message.Message):
        __slots__ = ("size_bytes",)
        SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
        size_bytes: int
        def __init__(self, size_bytes: _Optional[int] = ...) -> None: ...
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REPO_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_UPPER_BOUND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    BRANCHES_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    repo: Repo
    created: _timestamp_pb2.Timestamp
    size_bytes_upper_bound: int
    description: str
    branches: _containers.RepeatedCompositeFieldContainer[Branch]
    details: RepoInfo.Details
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, repo: _Optional[_Union[Repo, _Mapping]] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., size_bytes_upper_bound: _Optional[int] = ..., description: _Optional[str] = ..., branches: _Optional[_Iterable[_Union[Branch, _Mapping]]] = ..., details: _Optional[_Union[RepoInfo.Details, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class BranchInfo(_message.Message):
    __slots__ = ("branch", "head", "provenance", "subvenance", "direct_provenance", "created", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    SUBVENANCE_FIELD_NUMBER: _ClassVar[int]
    DIRECT_PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    branch: Branch
    head: Commit
    provenance: _containers.RepeatedCompositeFieldContainer[Branch]
    subvenance: _containers.RepeatedCompositeFieldContainer[Branch]
    direct_provenance: _containers.RepeatedCompositeFieldContainer[Branch]
    created: _timestamp_pb2.Timestamp
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, branch: _Optional[_Union[Branch, _Mapping]] = ..., head: _Optional[_Union[Commit, _Mapping]] = ..., provenance: _Optional[_Iterable[_Union[Branch, _Mapping]]] = ..., subvenance: _Optional[_Iterable[_Union[Branch, _Mapping]]] = ..., direct_provenance: _Optional[_Iterable[_Union[Branch, _Mapping]]] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CommitInfo(_message.Message):
    __slots__ = ("commit", "origin", "description", "parent_commit", "child_commits", "started", "finishing", "finished", "direct_provenance", "direct_subvenance", "error", "size_bytes_upper_bound", "state", "details", "metadata")
    class Details(_message.Message):
        __slots__ = ("size_bytes",)
        SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
        size_bytes: int
        def __init__(self, size_bytes: _Optional[int] = ...) -> None: ...
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARENT_COMMIT_FIELD_NUMBER: _ClassVar[int]
    CHILD_COMMITS_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    FINISHING_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    DIRECT_PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    DIRECT_SUBVENANCE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_UPPER_BOUND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    commit: Commit
    origin: OriginKind
    description: str
    parent_commit: Commit
    child_commits: _containers.RepeatedCompositeFieldContainer[Commit]
    started: _timestamp_pb2.Timestamp
    finishing: _timestamp_pb2.Timestamp
    finished: _timestamp_pb2.Timestamp
    direct_provenance: _containers.RepeatedCompositeFieldContainer[Commit]
    direct_subvenance: _containers.RepeatedCompositeFieldContainer[Commit]
    error: str
    size_bytes_upper_bound: int
    state: CommitState
    details: CommitInfo.Details
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, commit: _Optional[_Union[Commit, _Mapping]] = ..., origin: _Optional[_Union[OriginKind, str]] = ..., description: _Optional[str] = ..., parent_commit: _Optional[_Union[Commit, _Mapping]] = ..., child_commits: _Optional[_Iterable[_Union[Commit, _Mapping]]] = ..., started: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finishing: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., direct_provenance: _Optional[_Iterable[_Union[Commit, _Mapping]]] = ..., direct_subvenance: _Optional[_Iterable[_Union[Commit, _Mapping]]] = ..., error: _Optional[str] = ..., size_bytes_upper_bound: _Optional[int] = ..., state: _Optional[_Union[CommitState, str]] = ..., details: _Optional[_Union[CommitInfo.Details, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class FileInfo(_message.Message):
    __slots__ = ("file", "file_type", "committed", "size_bytes", "hash", "datum")
    FILE_FIELD_NUMBER: _ClassVar[int]
    FILE_TYPE_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    DATUM_FIELD_NUMBER: _ClassVar[int]
    file: File
    file_type: FileType
    committed: _timestamp_pb2.Timestamp
    size_bytes: int
    hash: str
    datum: str
    def __init__(self, file: _Optional[_Union[File, _Mapping]] = ..., file_type: _Optional[_Union[FileType, str]] = ..., committed: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., size_bytes: _Optional[int] = ..., hash: _Optional[str] = ..., datum: _Optional[str] = ...) -> None: ...

class CommitSetInfo(_message.Message):
    __slots__ = ("commit_set", "commits")
    COMMIT_SET_FIELD_NUMBER: _ClassVar[int]
    COMMITS_FIELD_NUMBER: _ClassVar[int]
    commit_set: CommitSet
    commits: _containers.RepeatedCompositeFieldContainer[CommitInfo]
    def __init__(self, commit_set: _Optional[_Union[CommitSet, _Mapping]] = ..., commits: _Optional[_Iterable[_Union[CommitInfo, _Mapping]]] = ...) -> None: ...

class CreateRepoRequest(_message.Message):
    __slots__ = ("repo", "description", "update")
    REPO_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    repo: Repo
    description: str
    update: bool
    def __init__(self, repo: _Optional[_Union[Repo, _Mapping]] = ..., description: _Optional[str] = ..., update: _Optional[bool] = ...) -> None: ...

class InspectRepoRequest(_message.Message):
    __slots__ = ("repo",)
    REPO_FIELD_NUMBER: _ClassVar[int]
    repo: Repo
    def __init__(self, repo: _Optional[_Union[Repo, _Mapping]] = ...) -> None: ...

class ListRepoRequest(_message.Message):
    __slots__ = ("type", "project", "all_projects")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ALL_PROJECTS_FIELD_NUMBER: _ClassVar[int]
    type: str
    project: str
    all_projects: bool
    def __init__(self, type: _Optional[str] = ..., project: _Optional[str] = ..., all_projects: _Optional[bool] = ...) -> None: ...

class DeleteRepoRequest(_message.Message):
    __slots__ = ("repo", "force")
    REPO_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    repo: Repo
    force: bool
    def __init__(self, repo: _Optional[_Union[Repo, _Mapping]] = ..., force: _Optional[bool] = ...) -> None: ...

class CreateBranchRequest(_message.Message):
    __slots__ = ("head", "branch", "provenance")
    HEAD_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    head: Commit
    branch: Branch
    provenance: _containers.RepeatedCompositeFieldContainer[Branch]
    def __init__(self, head: _Optional[_Union[Commit, _Mapping]] = ..., branch: _Optional[_Union[Branch, _Mapping]] = ..., provenance: _Optional[_Iterable[_Union[Branch, _Mapping]]] = ...) -> None: ...

class InspectBranchRequest(_message.Message):
    __slots__ = ("branch",)
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    branch: Branch
    def __init__(self, branch: _Optional[_Union[Branch, _Mapping]] = ...) -> None: ...

class ListBranchRequest(_message.Message):
    __slots__ = ("repo",)
    REPO_FIELD_NUMBER: _ClassVar[int]
    repo: Repo
    def __init__(self, repo: _Optional[_Union[Repo, _Mapping]] = ...) -> None: ...

class DeleteBranchRequest(_message.Message):
    __slots__ = ("branch", "force")
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    branch: Branch
    force: bool
    def __init__(self, branch: _Optional[_Union[Branch, _Mapping]] = ..., force: _Optional[bool] = ...) -> None: ...

class StartCommitRequest(_message.Message):
    __slots__ = ("parent", "description", "branch")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    parent: Commit
    description: str
    branch: Branch
    def __init__(self, parent: _Optional[_Union[Commit, _Mapping]] = ..., description: _Optional[str] = ..., branch: _Optional[_Union[Branch, _Mapping]] = ...) -> None: ...

class FinishCommitRequest(_message.Message):
    __slots__ = ("commit", "description", "error", "force")
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    commit: Commit
    description: str
    error: str
    force: bool
    def __init__(self, commit: _Optional[_Union[Commit, _Mapping]] = ..., description: _Optional[str] = ..., error: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class InspectCommitRequest(_message.Message):
    __slots__ = ("commit", "wait")
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    commit: Commit
    wait: CommitState
    def __init__(self, commit: _Optional[_Union[Commit, _Mapping]] = ..., wait: _Optional[_Union[CommitState, str]] = ...) -> None: ...

class ListCommitRequest(_message.Message):
    __slots__ = ("repo", "to", "number", "origin_kind")
    REPO_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_KIND_FIELD_NUMBER: _ClassVar[int]
    repo: Repo
    to: Commit
    number: int
    origin_kind: OriginKind
    def __init__(self, repo: _Optional[_Union[Repo, _Mapping]] = ..., to: _Optional[_Union[Commit, _Mapping]] = ..., number: _Optional[int] = ..., origin_kind: _Optional[_Union[OriginKind, str]] = ...) -> None: ...

class FindCommitsRequest(_message.Message):
    __slots__ = ("start", "path", "limit")
    START_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    start: Commit
    path: str
    limit: int
    def __init__(self, start: _Optional[_Union[Commit, _Mapping]] = ..., path: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class SubscribeCommitRequest(_message.Message):
    __slots__ = ("repo", "branch", "from_commit", "state", "new")
    REPO_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    FROM_COMMIT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NEW_FIELD_NUMBER: _ClassVar[int]
    repo: Repo
    branch: str
    from_commit: Commit
    state: CommitState
    new: bool
    def __init__(self, repo: _Optional[_Union[Repo, _Mapping]] = ..., branch: _Optional[str] = ..., from_commit: _Optional[_Union[Commit, _Mapping]] = ..., state: _Optional[_Union[CommitState, str]] = ..., new: _Optional[bool] = ...) -> None: ...

class DropCommitRequest(_message.Message):
    __slots__ = ("commit", "recursive")
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    commit: Commit
    recursive: bool
    def __init__(self, commit: _Optional[_Union[Commit, _Mapping]] = ..., recursive: _Optional[bool] = ...) -> None: ...

class SquashCommitRequest(_message.Message):
    __slots__ = ("commit", "recursive")
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    commit: Commit
    recursive: bool
    def __init__(self, commit: _Optional[_Union[Commit, _Mapping]] = ..., recursive: _Optional[bool] = ...) -> None: ...

class Transaction(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class TransactionInfo(_message.Message):
    __slots__ = ("transaction", "started", "commit_set", "requests")
    TRANSACTION_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    COMMIT_SET_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    transaction: Transaction
    started: _timestamp_pb2.Timestamp
    commit_set: str
    requests: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, transaction: _Optional[_Union[Transaction, _Mapping]] = ..., started: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., commit_set: _Optional[str] = ..., requests: _Optional[_Iterable[str]] = ...) -> None: ...

class ListTransactionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CommitSetRequest(_message.Message):
    __slots__ = ("commit_set",)
    COMMIT_SET_FIELD_NUMBER: _ClassVar[int]
    commit_set: CommitSet
    def __init__(self, commit_set: _Optional[_Union[CommitSet, _Mapping]] = ...) -> None: ...

class InspectCommitSetRequest(_message.Message):
    __slots__ = ("commit_set", "wait")
    COMMIT_SET_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    commit_set: CommitSet
    wait: bool
    def __init__(self, commit_set: _Optional[_Union[CommitSet, _Mapping]] = ..., wait: _Optional[bool] = ...) -> None: ...

class ListCommitSetRequest(_message.Message):
    __slots__ = ("number",)
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    number: int
    def __init__(self, number: _Optional[int] = ...) -> None: ...

class AddFile(_message.Message):
    __slots__ = ("path", "append", "data", "more")
    PATH_FIELD_NUMBER: _ClassVar[int]
    APPEND_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    path: str
    append: bool
    data: bytes
    more: bool
    def __init__(self, path: _Optional[str] = ..., append: _Optional[bool] = ..., data: _Optional[bytes] = ..., more: _Optional[bool] = ...) -> None: ...

class DeleteFile(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class CopyFile(_message.Message):
    __slots__ = ("src", "dst_path", "append")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_PATH_FIELD_NUMBER: _ClassVar[int]
    APPEND_FIELD_NUMBER: _ClassVar[int]
    src: File
    dst_path: str
    append: bool
    def __init__(self, src: _Optional[_Union[File, _Mapping]] = ..., dst_path: _Optional[str] = ..., append: _Optional[bool] = ...) -> None: ...

class ChunkRef(_message.Message):
    __slots__ = ("hash", "size", "pack", "offset")
    HASH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    PACK_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    hash: bytes
    size: int
    pack: str
    offset: int
    def __init__(self, hash: _Optional[bytes] = ..., size: _Optional[int] = ..., pack: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class AddFileChunks(_message.Message):
    __slots__ = ("path", "append", "size", "chunks", "new_packs")
    class NewPacksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    PATH_FIELD_NUMBER: _ClassVar[int]
    APPEND_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    NEW_PACKS_FIELD_NUMBER: _ClassVar[int]
    path: str
    append: bool
    size: int
    chunks: _containers.RepeatedCompositeFieldContainer[ChunkRef]
    new_packs: _containers.ScalarMap[str, int]
    def __init__(self, path: _Optional[str] = ..., append: _Optional[bool] = ..., size: _Optional[int] = ..., chunks: _Optional[_Iterable[_Union[ChunkRef, _Mapping]]] = ..., new_packs: _Optional[_Mapping[str, int]] = ...) -> None: ...

class FileOp(_message.Message):
    __slots__ = ("add_file", "delete_file", "copy_file", "add_chunks")
    ADD_FILE_FIELD_NUMBER: _ClassVar[int]
    DELETE_FILE_FIELD_NUMBER: _ClassVar[int]
    COPY_FILE_FIELD_NUMBER: _ClassVar[int]
    ADD_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    add_file: AddFile
    delete_file: DeleteFile
    copy_file: CopyFile
    add_chunks: AddFileChunks
    def __init__(self, add_file: _Optional[_Union[AddFile, _Mapping]] = ..., delete_file: _Optional[_Union[DeleteFile, _Mapping]] = ..., copy_file: _Optional[_Union[CopyFile, _Mapping]] = ..., add_chunks: _Optional[_Union[AddFileChunks, _Mapping]] = ...) -> None: ...

class ModifyFileRequest(_message.Message):
    __slots__ = ("commit", "ops", "done")
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    commit: Commit
    ops: _containers.RepeatedCompositeFieldContainer[FileOp]
    done: bool
    def __init__(self, commit: _Optional[_Union[Commit, _Mapping]] = ..., ops: _Optional[_Iterable[_Union[FileOp, _Mapping]]] = ..., done: _Optional[bool] = ...) -> None: ...

class GetFileRequest(_message.Message):
    __slots__ = ("file", "offset")
    FILE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    file: File
    offset: int
    def __init__(self, file: _Optional[_Union[File, _Mapping]] = ..., offset: _Optional[int] = ...) -> None: ...

class InspectFileRequest(_message.Message):
    __slots__ = ("file",)
    FILE_FIELD_NUMBER: _ClassVar[int]
    file: File
    def __init__(self, file: _Optional[_Union[File, _Mapping]] = ...) -> None: ...

class ListFileRequest(_message.Message):
    __slots__ = ("file",)
    FILE_FIELD_NUMBER: _ClassVar[int]
    file: File
    def __init__(self, file: _Optional[_Union[File, _Mapping]] = ...) -> None: ...

class WalkFileRequest(_message.Message):
    __slots__ = ("file",)
    FILE_FIELD_NUMBER: _ClassVar[int]
    file: File
    def __init__(self, file: _Optional[_Union[File, _Mapping]] = ...) -> None: ...

class GlobFileRequest(_message.Message):
    __slots__ = ("commit", "pattern")
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    commit: Commit
    pattern: str
    def __init__(self, commit: _Optional[_Union[Commit, _Mapping]] = ..., pattern: _Optional[str] = ...) -> None: ...

class DiffFileRequest(_message.Message):
    __slots__ = ("new_file", "old_file", "shallow")
    NEW_FILE_FIELD_NUMBER: _ClassVar[int]
    OLD_FILE_FIELD_NUMBER: _ClassVar[int]
    SHALLOW_FIELD_NUMBER: _ClassVar[int]
    new_file: File
    old_file: File
    shallow: bool
    def __init__(self, new_file: _Optional[_Union[File, _Mapping]] = ..., old_file: _Optional[_Union[File, _Mapping]] = ..., shallow: _Optional[bool] = ...) -> None: ...

class DiffFileResponse(_message.Message):
    __slots__ = ("new_file", "old_file")
    NEW_FILE_FIELD_NUMBER: _ClassVar[int]
    OLD_FILE_FIELD_NUMBER: _ClassVar[int]
    new_file: FileInfo
    old_file: FileInfo
    def __init__(self, new_file: _Optional[_Union[FileInfo, _Mapping]] = ..., old_file: _Optional[_Union[FileInfo, _Mapping]] = ...) -> None: ...

class FileInfoBatch(_message.Message):
    __slots__ = ("file_infos",)
    FILE_INFOS_FIELD_NUMBER: _ClassVar[int]
    file_infos: _containers.RepeatedCompositeFieldContainer[FileInfo]
    def __init__(self, file_infos: _Optional[_Iterable[_Union[FileInfo, _Mapping]]] = ...) -> None: ...

class DiffFileBatch(_message.Message):
    __slots__ = ("diffs",)
    DIFFS_FIELD_NUMBER: _ClassVar[int]
    diffs: _containers.RepeatedCompositeFieldContainer[DiffFileResponse]
    def __init__(self, diffs: _Optional[_Iterable[_Union[DiffFileResponse, _Mapping]]] = ...) -> None: ...

class StorageInfo(_message.Message):
    __slots__ = ("local_root", "store_id", "probe_url")
    LOCAL_ROOT_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    PROBE_URL_FIELD_NUMBER: _ClassVar[int]
    local_root: str
    store_id: str
    probe_url: str
    def __init__(self, local_root: _Optional[str] = ..., store_id: _Optional[str] = ..., probe_url: _Optional[str] = ...) -> None: ...

class PresignPacksRequest(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class PresignedPack(_message.Message):
    __slots__ = ("pack", "url")
    PACK_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    pack: str
    url: str
    def __init__(self, pack: _Optional[str] = ..., url: _Optional[str] = ...) -> None: ...

class PresignPacksResponse(_message.Message):
    __slots__ = ("packs",)
    PACKS_FIELD_NUMBER: _ClassVar[int]
    packs: _containers.RepeatedCompositeFieldContainer[PresignedPack]
    def __init__(self, packs: _Optional[_Iterable[_Union[PresignedPack, _Mapping]]] = ...) -> None: ...

class PresignPackReadsRequest(_message.Message):
    __slots__ = ("packs",)
    PACKS_FIELD_NUMBER: _ClassVar[int]
    packs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, packs: _Optional[_Iterable[str]] = ...) -> None: ...

class FindChunksRequest(_message.Message):
    __slots__ = ("hashes",)
    HASHES_FIELD_NUMBER: _ClassVar[int]
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class FindChunksResponse(_message.Message):
    __slots__ = ("chunks",)
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedCompositeFieldContainer[ChunkRef]
    def __init__(self, chunks: _Optional[_Iterable[_Union[ChunkRef, _Mapping]]] = ...) -> None: ...

class FileChunks(_message.Message):
    __slots__ = ("chunks", "size")
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedCompositeFieldContainer[ChunkRef]
    size: int
    def __init__(self, chunks: _Optional[_Iterable[_Union[ChunkRef, _Mapping]]] = ..., size: _Optional[int] = ...) -> None: ...
