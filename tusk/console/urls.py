"""The console's URL scheme, in one place (pages link with these; routes
match them). Every page has a stable URL naming what it shows by ID, so it
can be sent to a colleague:

==========================================  =====================================
``/projects``, ``/``                        projects
``/projects/P/dag`` (+ ``dag.json``)        the DAG, live
``/projects/P/repos``                       repos and pipelines of a project
``/repos/P/R``                              a repo: branches, recent commits
``/repos/P/R/branches/B``                   a branch's history (``?from=ID``)
``/repos/P/R/commits/ID``                   a commit: provenance, subvenance, job
``/repos/P/R/files/ID/PATH``                a directory (paged) or a file preview
``/repos/P/R/raw/ID/PATH``                  the file's bytes (download)
``/repos/P/R/diff/OLD/NEW?path=/``          what changed between two commits
``/commit-sets/ID``                         every commit and job of a global ID
``/pipelines/P/NAME``                       spec, versions, jobs
``/jobs/P/PIPELINE/ID``                     a job's datums
``/jobs/P/PIPELINE/ID/logs``                its logs, following (+ ``logs.json``)
``/lineage/P/R/ID/PATH``                    where a file came from and went
==========================================  =====================================

``P`` is the project (``default`` too), ``R`` a repo's name inside it.
"""

from __future__ import annotations

from pfs.paths import qualify, split_repo
from tusk.console.html import url

__all__ = ["full_name"]


def full_name(project: str, name: str) -> str:
    """The repo or pipeline name PFS and PPS use (``name`` in the default
    project, else ``project/name``)."""
    return qualify(project, name)


def _pn(repo: str) -> tuple[str, str]:
    return split_repo(repo)


def project_dag(project: str) -> str:
    return url("projects", project, "dag")


def project_repos(project: str) -> str:
    return url("projects", project, "repos")


def repo(repo: str) -> str:
    return url("repos", *_pn(repo))


def branch(repo: str, branch: str, start: str | None = None) -> str:
    return url("repos", *_pn(repo), "branches", branch, query={"from": start})


def commit(repo: str, cid: str) -> str:
    return url("repos", *_pn(repo), "commits", cid)


def files(repo: str, cid: str, path: str = "/", after: str | None = None) -> str:
    return url("repos", *_pn(repo), "files", cid, path, query={"after": after})


def raw(repo: str, cid: str, path: str, inline: bool = False) -> str:
    return url("repos", *_pn(repo), "raw", cid, path, query={"inline": "1" if inline else None})


def diff(repo: str, old: str, new: str, path: str = "/") -> str:
    return url("repos", *_pn(repo), "diff", old, new,
               query={"path": path if path != "/" else None})


def commit_set(cid: str) -> str:
    return url("commit-sets", cid)


def pipeline(name: str) -> str:
    return url("pipelines", *_pn(name))


def job(pipeline: str, jid: str, page: int = 0) -> str:
    return url("jobs", *_pn(pipeline), jid, query={"page": page or None})


def logs(pipeline: str, jid: str) -> str:
    return url("jobs", *_pn(pipeline), jid, "logs")


def logs_json(pipeline: str, jid: str) -> str:
    return url("jobs", *_pn(pipeline), jid, "logs.json")


def lineage(repo: str, cid: str, path: str) -> str:
    return url("lineage", *_pn(repo), cid, path)


def url_projects() -> str:
    return url("projects")
