"""PFS pages: a repo, a branch's history, a commit, a commit set."""

from __future__ import annotations

from pfs.errors import NotFound
from pfs.model import CommitInfo, CommitRef
from pfs.paths import split_repo
from pps.model import JobInfo
from tusk.console import urls
from tusk.console.context import Console
from tusk.console.html import Markup, fmt, join
from tusk.console.page import (
    NotFoundPage,
    ago,
    counts,
    duration,
    html_page,
    link,
    progress_bar,
    short,
    size,
    state_badge,
    table,
)
from tusk.console.urls import full_name
from tusk.http import Request, Response

#: Commits per page of a branch's history.
HISTORY_PAGE = 50


def _repo_name(req: Request) -> str:
    return full_name(req.params["project"], req.params["repo"])


def _crumbs(repo: str) -> list[tuple[str, str]]:
    project = split_repo(repo)[0]
    return [("projects", urls.url_projects()), (project, urls.project_dag(project)),
            (repo, urls.repo(repo))]


def _refs(refs: tuple[CommitRef, ...]) -> Markup:
    return join((link(urls.commit(r.repo, r.id), f"{r.repo}@{short(r.id)}") for r in refs),
                Markup("<br>"))


def commit_rows(repo: str, commits: list[CommitInfo]) -> list[list[object]]:
    return [[link(urls.commit(repo, ci.id), short(ci.id)), ci.branch, ci.origin.value.lower(),
             state_badge(ci.state.value), ago(ci.started), size(ci.size_bytes), ci.description,
             link(urls.files(repo, ci.id), "files")] for ci in commits]


COMMIT_HEADERS = ["commit", "branch", "origin", "state", "started", "size", "description", ""]


def repo_page(c: Console, req: Request) -> Response:
    repo = _repo_name(req)
    info = c.pfs.inspect_repo(repo)
    rows: list[list[object]] = []
    for b in sorted(info.branches):
        bi = c.pfs.inspect_branch(repo, b)
        rows.append([link(urls.branch(repo, b), b),
                     link(urls.commit(repo, bi.head), short(bi.head)) if bi.head else "",
                     join((str(p) for p in bi.direct_provenance), ", "),
                     link(urls.files(repo, bi.head), "files") if bi.head else ""])
    is_pipe = c.is_pipeline(repo)
    recent = list(c.pfs.list_commit(repo, number=20))
    body = fmt(
        "<p>{desc} {kind} · {size} · created {created}</p><h2>Branches</h2>{branches}"
        "<h2>Recent commits</h2>{commits}",
        desc=info.description,
        kind=link(urls.pipeline(repo), "output of pipeline " + repo) if is_pipe else "user data",
        size=size(info.size_bytes), created=ago(info.created),
        branches=table(["branch", "head", "provenance", ""], rows),
        commits=table(COMMIT_HEADERS, commit_rows(repo, recent)))
    return html_page(f"Repo {repo}", body, _crumbs(repo)[:-1], project=split_repo(repo)[0])


def branch_page(c: Console, req: Request) -> Response:
    repo = _repo_name(req)
    b = req.params["branch"]
    bi = c.pfs.inspect_branch(repo, b)
    start = (req.query.get("from") or [""])[0]
    commits = list(c.pfs.list_commit(repo, start or b, number=HISTORY_PAGE + 1))
    more = commits[HISTORY_PAGE] if len(commits) > HISTORY_PAGE else None
    commits = commits[:HISTORY_PAGE]
    nav = []
    if start:
        nav.append(link(urls.branch(repo, b), "newest"))
    if more is not None:
        nav.append(link(urls.branch(repo, b, more.id), "older →"))
    body = fmt(
        "<p>head {head} · provenance {prov} · subvenance {sub}</p>"
        "<h2>History{frm}</h2>{table}<p class=\"pager\">{nav}</p>",
        head=link(urls.commit(repo, bi.head), short(bi.head)) if bi.head else "none",
        prov=join((str(p) for p in bi.direct_provenance), ", ") or "none",
        sub=join((str(p) for p in bi.subvenance), ", ") or "none",
        frm=f" from {short(start)}" if start else "",
        table=table(COMMIT_HEADERS, commit_rows(repo, commits)),
        nav=join(nav, " · "))
    return html_page(f"Branch {repo}@{b}", body, _crumbs(repo), project=split_repo(repo)[0])


def _job_rows(jobs: list[JobInfo]) -> list[list[object]]:
    return [[link(urls.pipeline(j.pipeline), j.pipeline), link(urls.job(j.pipeline, j.id),
             short(j.id)), state_badge(j.state.value),
             progress_bar(j.data_processed, j.data_skipped, j.data_failed, j.data_total),
             counts(j.data_processed, j.data_skipped, j.data_failed, j.data_total),
             duration(j.started, j.finished), j.reason] for j in jobs]


JOB_HEADERS = ["pipeline", "job", "state", "datums", "", "duration", "reason"]


def commit_page(c: Console, req: Request) -> Response:
    repo = _repo_name(req)
    ci = c.pfs.inspect_commit(repo, req.params["commit"])
    job = None
    if c.is_pipeline(repo):
        try:
            job = c.pps.inspect_job(repo, ci.id)
        except NotFound:
            job = None
    facts = [
        ("ID (commit set)", link(urls.commit_set(ci.id), ci.id)),
        ("branch", link(urls.branch(repo, ci.branch), ci.branch) if ci.branch else ""),
        ("origin", ci.origin.value.lower()), ("state", state_badge(ci.state.value)),
        ("parent", link(urls.commit(repo, ci.parent), short(ci.parent)) if ci.parent else "none"),
        ("children", join((link(urls.commit(repo, k), short(k)) for k in ci.children), ", ")
         or "none"),
        ("started", ago(ci.started)), ("finished", ago(ci.finished)),
        ("size", size(ci.size_bytes)), ("description", ci.description),
        ("error", ci.error),
        ("provenance", _refs(ci.direct_provenance) or "none (user data)"),
        ("subvenance", _refs(ci.direct_subvenance) or "none"),
    ]
    links = [link(urls.files(repo, ci.id), "browse files")]
    if ci.parent:
        links.append(link(urls.diff(repo, ci.parent, ci.id), "diff with parent"))
    body = fmt("<p>{links}</p>{facts}{job}",
               links=join(links, " · "),
               facts=table(["", ""], [[k, v] for k, v in facts], cls="facts"),
               job=fmt("<h2>Job</h2>{}", table(JOB_HEADERS, _job_rows([job])))
               if job else "")
    return html_page(f"Commit {repo}@{short(ci.id)}", body, _crumbs(repo),
                     project=split_repo(repo)[0])


def commit_set_page(c: Console, req: Request) -> Response:
    cid = req.params["id"]
    try:
        commits = c.pfs.inspect_commit_set(cid)
    except NotFound as exc:
        raise NotFoundPage(f"commit set {cid} not found") from exc
    try:
        jobs = c.pps.inspect_job_set(cid)
    except NotFound:
        jobs = []
    commits.sort(key=lambda ci: (len(ci.direct_provenance) > 0, ci.started, ci.repo))
    rows = [[link(urls.repo(ci.repo), ci.repo),
             link(urls.commit(ci.repo, ci.id), short(ci.id)), ci.branch,
             ci.origin.value.lower(), state_badge(ci.state.value),
             _refs(ci.direct_provenance) or "user data", _refs(ci.direct_subvenance) or "none",
             link(urls.files(ci.repo, ci.id), "files")] for ci in commits]
    body = fmt("<h2>Commits</h2>{commits}<h2>Jobs</h2>{jobs}",
               commits=table(["repo", "commit", "branch", "origin", "state", "provenance",
                              "subvenance", ""], rows),
               jobs=table(JOB_HEADERS, _job_rows(jobs)))
    project = split_repo(commits[0].repo)[0] if commits else None
    return html_page(f"Commit set {cid}", body, [("projects", urls.url_projects())],
                     project=project)
