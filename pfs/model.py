"""PFS's user-facing model: what repos, branches, commits and files look like.

These frozen dataclasses are what ``pfs.api.PFS`` returns. The gRPC server
converts them to the messages of ``proto/pfs.proto`` (same field names).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum


class CommitState(str, Enum):
    """Increasingly specific commit states (Pachyderm's ``CommitState``)."""

    STARTED = "STARTED"      # exists
    READY = "READY"          # every provenant commit is finished
    FINISHING = "FINISHING"  # finish requested, index being built
    FINISHED = "FINISHED"


STATE_ORDER = {s: i for i, s in enumerate(CommitState)}


class OriginKind(str, Enum):
    USER = "USER"  # a user's change (put file, start commit, ...)
    AUTO = "AUTO"  # made by propagation (pipeline outputs) or as a branch's empty head
    FSCK = "FSCK"


class FileType(str, Enum):
    FILE = "FILE"
    DIR = "DIR"


@dataclass(frozen=True)
class BranchRef:
    repo: str
    name: str

    def __str__(self) -> str:
        return f"{self.repo}@{self.name}"


@dataclass(frozen=True)
class CommitRef:
    repo: str
    id: str
    branch: str = ""

    def __str__(self) -> str:
        return f"{self.repo}@{self.id}"


@dataclass(frozen=True)
class RepoInfo:
    name: str  # the full name: NAME, or PROJECT/NAME outside the default project
    type: str  # "user" | "spec" | "meta"
    description: str
    created: float
    size_bytes: int  # size of the HEAD of master (Pachyderm's rule)
    branches: tuple[str, ...] = ()
    project: str = "default"
    metadata: Mapping[str, str] = field(default_factory=dict)  # user key/values


@dataclass(frozen=True)
class ProjectInfo:
    name: str
    description: str
    created: float
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BranchInfo:
    repo: str
    name: str
    head: str  # commit id ("" only while being created)
    created: float
    direct_provenance: tuple[BranchRef, ...] = ()
    provenance: tuple[BranchRef, ...] = ()  # transitive closure
    subvenance: tuple[BranchRef, ...] = ()  # transitive closure of the inverse
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CommitInfo:
    repo: str
    id: str
    branch: str
    origin: OriginKind
    state: CommitState
    description: str
    parent: str  # "" for a root commit
    children: tuple[str, ...]
    started: float
    finishing: float | None
    finished: float | None
    error: str
    size_bytes: int | None  # known once finished
    direct_provenance: tuple[CommitRef, ...] = ()
    direct_subvenance: tuple[CommitRef, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FileInfo:
    repo: str
    commit: str
    path: str  # "/a/b" for files, "/a/" for directories, "/" for the root
    file_type: FileType
    size_bytes: int
    hash: str  # hex
    committed: float | None = None
    datum: str = ""  # the pipeline datum that wrote this file (lineage); "" for user puts
