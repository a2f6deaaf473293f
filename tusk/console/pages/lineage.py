"""Lineage of a file: where it came from (upstream, back to user commits)
and what was computed from it (downstream), as two expandable trees.

Calls :class:`pps.lineage.Lineage` in-process (the same core the
``FileLineage`` RPC and ``tusk inspect file --lineage`` use), bounded to
:data:`MAX_NODES` nodes per direction so a page stays small; a cut-off tree
says so. ``<details>`` elements make the tree expandable without script.
"""

from __future__ import annotations

from pfs.paths import split_repo
from pps.lineage import Lineage, LineageNode, LineageResult
from tusk.console import urls
from tusk.console.context import Console
from tusk.console.html import Markup, fmt, join
from tusk.console.page import html_page, link, short, state_badge
from tusk.console.urls import full_name
from tusk.http import Request, Response

MAX_NODES = 2000
#: Levels shown expanded when the page opens (deeper ones are one click away).
OPEN_LEVELS = 6


def _label(n: LineageNode) -> Markup:
    marks = []
    if n.repeated:
        marks.append(Markup(' <span class="mark">(shown above)</span>'))
    if n.truncated:
        marks.append(Markup(' <span class="mark">(cut off)</span>'))
    if n.note:
        marks.append(fmt(' <span class="mark">{}</span>', n.note))
    if n.file is not None:
        f = n.file
        kind = "user data" if f.user_data else ("dir" if f.is_dir else "file")
        via = fmt(" as input <code>{}</code>", f.input) if f.input else Markup("")
        return fmt('<span class="lnode file">{kind} {file}{via} · {lin}</span>{marks}',
                   kind=kind,
                   file=link(urls.files(f.repo, f.commit, f.path),
                             f"{f.repo}@{short(f.commit)}:{f.path}"),
                   via=via, lin=link(urls.lineage(f.repo, f.commit, f.path), "lineage"),
                   marks=join(marks))
    d = n.datum
    assert d is not None
    return fmt('<span class="lnode datum">datum {id} of {job} {state}</span>{marks}',
               id=d.id[:12], job=link(urls.job(d.pipeline, d.job),
                                      f"{d.pipeline}@{short(d.job)}"),
               state=state_badge(d.state), marks=join(marks))


def _tree(n: LineageNode, depth: int = 0) -> Markup:
    if not n.children:
        return fmt('<div class="leaf">{}</div>', _label(n))
    kids = join(_tree(k, depth + 1) for k in n.children)
    return fmt('<details{open}><summary>{label}</summary><div class="kids">{kids}</div>'
               "</details>", open=Markup(" open") if depth < OPEN_LEVELS else Markup(""),
               label=_label(n), kids=kids)


def _section(title: str, res: LineageResult, empty: str) -> Markup:
    note = (fmt('<p class="hint">Cut off after {} nodes.</p>', res.nodes)
            if res.truncated else Markup(""))
    body = _tree(res.root) if res.root.children else fmt("<p>{}</p>", empty)
    return fmt('<h2>{}</h2>{}<div class="tree">{}</div>', title, note, body)


def lineage_page(c: Console, req: Request) -> Response:
    repo = full_name(req.params["project"], req.params["repo"])
    ref = req.params["commit"]
    path = req.params.get("path") or "/"
    lin = Lineage(c.pfs, c.pps.jobs)
    up = lin.upstream(repo, ref, path, max_nodes=MAX_NODES)
    down = Lineage(c.pfs, c.pps.jobs).downstream(repo, ref, path, max_nodes=MAX_NODES)
    root = up.root.file
    assert root is not None
    body = fmt(
        "<p>{file}</p>{up}{down}",
        file=link(urls.files(repo, root.commit, root.path),
                  f"{repo}@{short(root.commit)}:{root.path}"),
        up=_section("Upstream: what it was computed from", up,
                    "User data: no pipeline wrote it."),
        down=_section("Downstream: what was computed from it", down,
                      "Nothing was computed from it (yet)."))
    project = split_repo(repo)[0]
    return html_page(f"Lineage of {repo}@{short(root.commit)}:{root.path}", body,
                     [("projects", urls.url_projects()), (project, urls.project_dag(project)),
                      (repo, urls.repo(repo))], project=project)
