"""Typed errors shared by every tusk package.

Every error a user can meet is a subclass of :class:`TuskError`. Each carries a
``code`` (a gRPC-like category, mapped to a status code in exactly one table in
``tusk.server`` and back in ``tusk.client``) and a message that says what went
wrong *and what to do about it*. Callers match on the class, never on the text.
"""

from __future__ import annotations

from typing import ClassVar


class TuskError(Exception):
    """Root of every tusk error.

    Attributes:
        code: one of NOT_FOUND, ALREADY_EXISTS, INVALID_ARGUMENT,
            FAILED_PRECONDITION, UNAVAILABLE, DATA_LOSS, INTERNAL, ABORTED.
    """

    code: ClassVar[str] = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NotFound(TuskError):
    code = "NOT_FOUND"


class AlreadyExists(TuskError):
    code = "ALREADY_EXISTS"


class InvalidArgument(TuskError):
    code = "INVALID_ARGUMENT"


class FailedPrecondition(TuskError):
    code = "FAILED_PRECONDITION"


class Unavailable(TuskError):
    """A backing service (etcd, S3, Docker, the daemon) cannot be reached."""

    code = "UNAVAILABLE"

    def __init__(self, service: str, detail: str, hint: str = "") -> None:
        msg = f"{service} is unreachable: {detail}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)
        self.service = service
        self.detail = detail


class Corruption(TuskError):
    """Stored bytes do not match their content hash. Never returned as data."""

    code = "DATA_LOSS"


class Conflict(TuskError):
    """A compare-and-swap lost a race; the caller may retry."""

    code = "ABORTED"


class NotMaster(FailedPrecondition):
    """A write was refused because this process is no longer the master: the
    key it holds (``pfs.metadata_fence``) changed since it took it. Never
    retried: no later attempt can succeed (revisions only grow).

    Attributes:
        key: the master key.
        revision: the key's revision when this process took it (its fencing token).
    """

    def __init__(self, key: str, revision: int) -> None:
        super().__init__(
            f"this tusk daemon is no longer the master for its data (its lease on {key} "
            f"expired and another daemon may have taken over): it stops writing; send the "
            f"request again, to the current master")
        self.key = key
        self.revision = revision


# --- PFS objects -------------------------------------------------------------


class RepoNotFound(NotFound):
    def __init__(self, repo: str) -> None:
        super().__init__(f"repo {repo} not found (list repos with `tusk list repo`)")
        self.repo = repo


class RepoExists(AlreadyExists):
    def __init__(self, repo: str) -> None:
        super().__init__(f"repo {repo} already exists")
        self.repo = repo


class BranchNotFound(NotFound):
    def __init__(self, repo: str, branch: str) -> None:
        super().__init__(
            f"branch {branch} not found in repo {repo} "
            f"(list branches with `tusk list branch {repo}`)"
        )
        self.repo = repo
        self.branch = branch


class CommitNotFound(NotFound):
    def __init__(self, repo: str, commit: str) -> None:
        super().__init__(f"commit {repo}@{commit} not found")
        self.repo = repo
        self.commit = commit


class CommitFinished(FailedPrecondition):
    def __init__(self, repo: str, commit: str) -> None:
        super().__init__(
            f"commit {commit} (repo {repo}) has already finished; write to the branch instead "
            f"to make a new commit, or start one with `tusk start commit {repo}@BRANCH`"
        )
        self.repo = repo
        self.commit = commit


class FileNotFound(NotFound):
    def __init__(self, repo: str, commit: str, path: str) -> None:
        super().__init__(f"file {path} not found in repo {repo} at commit {commit}")
        self.repo = repo
        self.commit = commit
        self.path = path


class InvalidName(InvalidArgument):
    def __init__(self, name: str, what: str = "name") -> None:
        super().__init__(
            f"{what} ({name}) invalid: only alphanumeric characters, underscores, "
            "and dashes are allowed"
        )
        self.name = name


class InvalidPath(InvalidArgument):
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"path {path!r} is invalid: {reason}")
        self.path = path
        self.reason = reason


class ObjectNotFound(NotFound):
    """An object store key does not exist."""

    def __init__(self, key: str) -> None:
        super().__init__(f"object {key} not found in the object store")
        self.key = key


ALL_ERRORS: dict[str, type[TuskError]] = {}


def register(cls: type[TuskError]) -> type[TuskError]:
    """Record an error class so the client can rebuild it from its name."""
    ALL_ERRORS[cls.__name__] = cls
    return cls


for _cls in list(globals().values()):
    if isinstance(_cls, type) and issubclass(_cls, TuskError):
        register(_cls)
