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

Names are validated (``pfs.paths``) before they reach a key. A repo of a
project other than ``default`` is named ``PROJECT/NAME``; in a key that name
is one component, ``PROJECT.NAME`` (``.`` cannot appear in a name), so a repo
``lab`` never shares a prefix with the repos of project ``lab``.

    projects/<project>                    ProjectRec (``default`` is implicit)
"""

from __future__ import annotations

ALL_REPOS = "repos/"
ALL_PROJECTS = "projects/"


def _r(repo: str) -> str:
    """A repo's full name as one key component."""
    return repo.replace("/", ".")


def repo_from_key(component: str) -> str:
    """The inverse of :func:`_r`: a key component back to a repo's full name."""
    return component.replace(".", "/")


def project(name: str) -> str:
    return f"projects/{name}"
ALL_BRANCHES = "branches/"
ALL_COMMITSETS = "commitsets/"
ALL_FINISHING = "finishing/"
ALL_TRASH = "trash/"


def repo(name: str) -> str:
    return f"repos/{_r(name)}"


def repo_trash(name: str) -> str:
    return f"trash/{_r(name)}"


def branch(repo: str, name: str) -> str:
    return f"branches/{_r(repo)}/{name}"


def branch_prefix(repo: str) -> str:
    return f"branches/{_r(repo)}/"


def commit(repo: str, cid: str) -> str:
    return f"commits/{_r(repo)}/{cid}"


def commit_prefix(repo: str) -> str:
    return f"commits/{_r(repo)}/"


def child(repo: str, parent: str, cid: str) -> str:
    return f"children/{_r(repo)}/{parent}/{cid}"


def children_prefix(repo: str, parent: str) -> str:
    return f"children/{_r(repo)}/{parent}/"


def layer(repo: str, cid: str, seq: int) -> str:
    return f"layers/{_r(repo)}/{cid}/{seq:010d}"


def layer_prefix(repo: str, cid: str) -> str:
    return f"layers/{_r(repo)}/{cid}/"


def commitset_member(cid: str, repo: str) -> str:
    return f"commitsets/{cid}/{_r(repo)}"


def commitset_prefix(cid: str) -> str:
    return f"commitsets/{cid}/"


def finishing(repo: str, cid: str) -> str:
    return f"finishing/{_r(repo)}/{cid}"


def repo_prefixes(repo: str) -> list[str]:
    """Every prefix holding records of ``repo`` (for deleting it)."""
    r = _r(repo)
    return [branch_prefix(repo), commit_prefix(repo), f"children/{r}/", f"layers/{r}/",
            f"finishing/{r}/"]


ALL_PINS = "pins/"


def pin_prefix(name: str) -> str:
    """Chunk refs kept alive under a name (:meth:`pfs.api.PFS.pin_chunks`)."""
    return f"{ALL_PINS}{name}/"


def pin(name: str, seq: int) -> str:
    return f"{pin_prefix(name)}{seq:06d}"
