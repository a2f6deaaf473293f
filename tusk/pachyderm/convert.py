"""Pachyderm's messages (``pfs_v2``) to tusk's (``tusk.pfs``) and back.

The two differ in shape, not meaning:

* A Pachyderm ``Repo`` is ``{name, type, project{name}}``; a tusk repo name is
  its full name, ``NAME`` in the default project and ``PROJECT/NAME`` in any
  other (``pfs.names``).
* A Pachyderm ``Commit`` nests ``Repo`` and ``Branch``; tusk's is flat
  ``{repo, id, branch}``. Pachyderm's SDK sends ``Commit(id=...)`` with an
  empty repo and the repo in ``branch.repo``: either is taken.
* ``FileInfo.hash`` is bytes in Pachyderm, hex text in tusk.
"""

from __future__ import annotations

from typing import Any, cast

from google.protobuf import timestamp_pb2

from tusk.api import pfs_pb2 as t
from tusk.pachyderm_api import pfs_pb2 as p

DEFAULT_PROJECT = "default"


# --- to tusk ------------------------------------------------------------------------


def repo_name(repo: p.Repo) -> str:
    """A Pachyderm repo's full tusk name ("" when the name is unset)."""
    if not repo.name:
        return ""
    project = repo.project.name
    if not project or project == DEFAULT_PROJECT:
        return repo.name
    return f"{project}/{repo.name}"


def project_name(project: p.Project) -> str:
    return project.name or DEFAULT_PROJECT


def repo(r: p.Repo) -> t.Repo:
    return t.Repo(name=repo_name(r), type=r.type)


def branch(b: p.Branch) -> t.Branch:
    return t.Branch(repo=repo(b.repo), name=b.name)


def commit_repo(c: p.Commit) -> str:
    return repo_name(c.repo) or repo_name(c.branch.repo)


def commit(c: p.Commit) -> t.Commit:
    return t.Commit(repo=commit_repo(c), id=c.id, branch=c.branch.name)


def file(f: p.File) -> t.File:
    return t.File(commit=commit(f.commit), path=f.path, datum=f.datum)


# --- to Pachyderm -------------------------------------------------------------------


def split(full: str) -> tuple[str, str]:
    """``PROJECT/NAME`` -> (project, name); a bare name is in ``default``."""
    if "/" in full:
        project, _, name = full.partition("/")
        return project, name
    return DEFAULT_PROJECT, full


def to_repo(name: str, repo_type: str = "user") -> p.Repo:
    project, bare = split(name)
    return p.Repo(name=bare, type=repo_type or "user", project=p.Project(name=project))


def to_repo_msg(r: t.Repo) -> p.Repo:
    return to_repo(r.name, r.type)


def to_branch(b: t.Branch) -> p.Branch:
    return p.Branch(repo=to_repo_msg(b.repo), name=b.name)


def to_commit(c: t.Commit, repo_type: str = "user") -> p.Commit:
    # Pachyderm 2.x answers name a commit by repo and ID only: a commit is not
    # tied to a branch (``Commit.branch`` is for requests).
    return p.Commit(repo=to_repo(c.repo, repo_type), id=c.id)


def _copy_ts(dst: timestamp_pb2.Timestamp, src: timestamp_pb2.Timestamp) -> None:
    if src.seconds or src.nanos:
        dst.CopyFrom(src)


def to_repo_info(ri: t.RepoInfo) -> p.RepoInfo:
    out = p.RepoInfo(repo=to_repo_msg(ri.repo), description=ri.description,
                     size_bytes_upper_bound=ri.size_bytes_upper_bound,
                     branches=[to_branch(b) for b in ri.branches], metadata=dict(ri.metadata))
    _copy_ts(out.created, ri.created)
    out.details.size_bytes = ri.details.size_bytes or ri.size_bytes_upper_bound
    return out


def to_branch_info(bi: t.BranchInfo) -> p.BranchInfo:
    out = p.BranchInfo(branch=to_branch(bi.branch),
                       provenance=[to_branch(b) for b in bi.provenance],
                       subvenance=[to_branch(b) for b in bi.subvenance],
                       direct_provenance=[to_branch(b) for b in bi.direct_provenance],
                       metadata=dict(bi.metadata))
    if bi.head.id:
        out.head.CopyFrom(to_commit(bi.head, bi.branch.repo.type))
    _copy_ts(out.created_at, bi.created)
    return out


def to_commit_info(ci: t.CommitInfo, repo_type: str = "user") -> p.CommitInfo:
    out = p.CommitInfo(
        commit=to_commit(ci.commit, repo_type),
        origin=p.CommitOrigin(kind=cast(Any, int(ci.origin))),
        description=ci.description,
        child_commits=[to_commit(c, repo_type) for c in ci.child_commits],
        direct_provenance=[to_commit(c) for c in ci.direct_provenance],
        direct_subvenance=[to_commit(c) for c in ci.direct_subvenance],
        error=ci.error, size_bytes_upper_bound=ci.size_bytes_upper_bound,
        metadata=dict(ci.metadata))
    if ci.parent_commit.id:
        out.parent_commit.CopyFrom(to_commit(ci.parent_commit, repo_type))
    _copy_ts(out.started, ci.started)
    _copy_ts(out.created_at, ci.started)
    _copy_ts(out.finishing, ci.finishing)
    _copy_ts(out.finished, ci.finished)
    if ci.state == t.FINISHED:
        out.details.size_bytes = ci.details.size_bytes or ci.size_bytes_upper_bound
    return out


def to_file(f: t.File) -> p.File:
    return p.File(commit=to_commit(f.commit), path=f.path, datum=f.datum)


def to_file_info(fi: t.FileInfo) -> p.FileInfo:
    out = p.FileInfo(file=to_file(fi.file), file_type=cast(Any, int(fi.file_type)),
                     size_bytes=fi.size_bytes, hash=bytes.fromhex(fi.hash) if fi.hash else b"")
    _copy_ts(out.committed, fi.committed)
    return out


def to_project_info(pi: t.ProjectInfo) -> p.ProjectInfo:
    out = p.ProjectInfo(project=p.Project(name=pi.project.name), description=pi.description,
                        metadata=dict(pi.metadata))
    _copy_ts(out.created_at, pi.created)
    return out


__all__ = [
    "DEFAULT_PROJECT",
    "branch",
    "commit",
    "commit_repo",
    "file",
    "project_name",
    "repo",
    "repo_name",
    "split",
    "to_branch",
    "to_branch_info",
    "to_commit",
    "to_commit_info",
    "to_file",
    "to_file_info",
    "to_project_info",
    "to_repo",
    "to_repo_msg",
]
