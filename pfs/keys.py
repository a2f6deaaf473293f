"""Every metadata-store key PFS uses, built in one place.

Layout (values are JSON records of ``pfs.api`` unless noted)::

    repos/<repo>                          RepoRec
    branches/<repo>/<branch>              BranchRec
    commits/<repo>/<id>                   CommitRec
    children/<repo>/<parent>/<child>      (empty)   child index of a commit
    layers/<repo>/<id>/<seq:010d>         object key of a layer of an open commit
    commitsets/<id>/<repo>                (empty)   membership of a commit set
    finishing/<repo>/<id>                 (empty)   commits whose finish is in progress
    trash/<repo>                          (empty)   a deleted repo whose records are being removed

Names are validated (``pfs.paths``) before they reach a key, so ``/`` never
appears inside one component.
"""

from __future__ import annotations

ALL_REPOS = "repos/"
ALL_BRANCHES = "branches/"
ALL_COMMITSETS = "commitsets/"
ALL_FINISHING = "finishing/"
ALL_TRASH = "trash/"


def repo(name: str) -> str:
    return f"repos/{name}"


def repo_trash(name: str) -> str:
    return f"trash/{name}"


def branch(repo: str, name: str) -> str:
    return f"branches/{repo}/{name}"


def branch_prefix(repo: str) -> str:
    return f"branches/{repo}/"


def commit(repo: str, cid: str) -> str:
    return f"commits/{repo}/{cid}"


def commit_prefix(repo: str) -> str:
    return f"commits/{repo}/"


def child(repo: str, parent: str, cid: str) -> str:
    return f"children/{repo}/{parent}/{cid}"


def children_prefix(repo: str, parent: str) -> str:
    return f"children/{repo}/{parent}/"


def layer(repo: str, cid: str, seq: int) -> str:
    return f"layers/{repo}/{cid}/{seq:010d}"


def layer_prefix(repo: str, cid: str) -> str:
    return f"layers/{repo}/{cid}/"


def commitset_member(cid: str, repo: str) -> str:
    return f"commitsets/{cid}/{repo}"


def commitset_prefix(cid: str) -> str:
    return f"commitsets/{cid}/"


def finishing(repo: str, cid: str) -> str:
    return f"finishing/{repo}/{cid}"


def repo_prefixes(repo: str) -> list[str]:
    """Every prefix holding records of ``repo`` (for deleting it)."""
    return [branch_prefix(repo), commit_prefix(repo), f"children/{repo}/", f"layers/{repo}/",
            f"finishing/{repo}/"]
