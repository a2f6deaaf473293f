"""The DAG of a project's repos and pipelines, drawn as SVG, kept live.

The page draws the layout once (:mod:`tusk.console.layout`); ``dag.json``
answers the states only (each pipeline's state and its last job's state and
datum counts) and ``console.js`` polls it every two seconds, updating the
nodes in place. ``shape`` (a hash of the nodes and edges) tells the script
when a pipeline or repo appeared or went, and the page reloads.
"""

from __future__ import annotations

import hashlib
from typing import Any

from tusk.console import urls
from tusk.console.context import Console, PipelineSummary
from tusk.console.html import Markup, fmt, join
from tusk.console.layout import NODE_H, NODE_W, layout
from tusk.console.page import (
    NotFoundPage,
    html_page,
    json_response,
    link,
    progress_bar,
    size,
    state_badge,
    table,
)
from tusk.http import Request, Response

BAR_W = NODE_W - 20


def _graph(c: Console, project: str) -> tuple[list[str], list[tuple[str, str]],
                                              list[PipelineSummary]]:
    try:
        c.pfs.inspect_project(project)
    except Exception as exc:
        raise NotFoundPage(f"project {project!r} not found") from exc
    pipes = c.summaries(project)
    names = {p.name for p in pipes}
    repos = [r.name for r in c.pfs.list_repo(type="user", project=project)
             if r.name not in names]
    edges = [(i, p.name) for p in pipes for i in p.inputs]
    nodes = sorted(set(repos) | names | {i for i, _ in edges})
    return nodes, edges, pipes


def _shape(nodes: list[str], edges: list[tuple[str, str]]) -> str:
    h = hashlib.blake2b(digest_size=8)
    for n in nodes:
        h.update(n.encode() + b"\0")
    for a, b in sorted(edges):
        h.update(f"{a}\0{b}\1".encode())
    return h.hexdigest()


def _job_json(p: PipelineSummary) -> dict[str, Any] | None:
    j = p.last_job
    if j is None:
        return None
    return {"id": j.id, "state": j.state.lower(), "processed": j.data_processed,
            "skipped": j.data_skipped, "failed": j.data_failed, "total": j.data_total,
            "url": urls.job(p.name, j.id)}


def dag_json(c: Console, req: Request) -> Response:
    project = req.params["project"]
    nodes, edges, pipes = _graph(c, project)
    return json_response({
        "shape": _shape(nodes, edges),
        "pipelines": {p.name: {"state": p.state.lower(), "reason": p.reason,
                               "job": _job_json(p)} for p in pipes}})


def _job_line(p: PipelineSummary) -> tuple[str, int, int, int, int]:
    j = p.last_job
    if j is None:
        return ("no job yet", 0, 0, 0, 0)
    return (f"job {j.state.lower()} {j.data_processed + j.data_skipped + j.data_failed}"
            f"/{j.data_total}", j.data_processed, j.data_skipped, j.data_failed, j.data_total)


def _svg(nodes: list[str], edges: list[tuple[str, str]], pipes: list[PipelineSummary]) -> Markup:
    lay = layout(nodes, edges)
    by_name = {p.name: p for p in pipes}
    parts: list[Markup] = []
    for pts in lay.edges.values():
        d = " ".join(f"{x:.0f},{y:.0f}" for x, y in pts)
        parts.append(fmt('<polyline class="edge" points="{}" marker-end="url(#arrow)"/>', d))
    for n, (x, y) in lay.nodes.items():
        p = by_name.get(n)
        if p is None:
            parts.append(fmt(
                '<a href="{href}"><g class="node repo" transform="translate({x},{y})">'
                '<rect width="{w}" height="{h}" rx="6"/>'
                '<text x="10" y="22" class="name">{name}</text>'
                '<text x="10" y="42" class="sub">repo</text></g></a>',
                href=urls.repo(n), x=f"{x:.0f}", y=f"{y:.0f}", w=NODE_W, h=NODE_H, name=n))
            continue
        label, pr, sk, fa, tot = _job_line(p)
        t = max(tot, pr + sk + fa, 1)
        w1, w2, w3 = (BAR_W * pr / t, BAR_W * sk / t, BAR_W * fa / t)
        parts.append(fmt(
            '<a href="{href}"><g class="node pipeline" data-pipeline="{name}" '
            'transform="translate({x},{y})">'
            '<rect width="{w}" height="{h}" rx="6"/>'
            '<text x="10" y="17" class="name">{name}</text>'
            '<text x="10" y="32" class="sub"><tspan data-field="state">{state}</tspan></text>'
            '<text x="10" y="46" class="sub" data-field="job">{label}</text>'
            '<rect class="bar-bg" x="10" y="50" width="{bw}" height="4"/>'
            '<rect class="bar-p" data-field="bar-p" x="10" y="50" width="{w1}" height="4"/>'
            '<rect class="bar-s" data-field="bar-s" x="{x2}" y="50" width="{w2}" height="4"/>'
            '<rect class="bar-f" data-field="bar-f" x="{x3}" y="50" width="{w3}" height="4"/>'
            "</g></a>",
            href=urls.pipeline(n), name=n, x=f"{x:.0f}", y=f"{y:.0f}", w=NODE_W, h=NODE_H,
            state=f"pipeline {p.state.lower()}", label=label, bw=BAR_W,
            w1=f"{w1:.1f}", x2=f"{10 + w1:.1f}", w2=f"{w2:.1f}", x3=f"{10 + w1 + w2:.1f}",
            w3=f"{w3:.1f}"))
    return fmt(
        '<svg class="dag" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        'role="img" aria-label="DAG"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" '
        'refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z"/></marker></defs>{parts}</svg>',
        w=f"{lay.width:.0f}", h=f"{lay.height:.0f}", parts=join(parts))


def dag_page(c: Console, req: Request) -> Response:
    project = req.params["project"]
    nodes, edges, pipes = _graph(c, project)
    rows = []
    for p in pipes:
        j = p.last_job
        rows.append([
            link(urls.pipeline(p.name), p.name), state_badge(p.state),
            link(urls.job(p.name, j.id), j.id[:12]) if j else "",
            fmt('<span data-pipeline-job-state="{}">{}</span>', p.name,
                state_badge(j.state if j else None)),
            progress_bar(j.data_processed, j.data_skipped, j.data_failed, j.data_total)
            if j else "",
        ])
    body = fmt(
        '<div id="dag" data-state-url="{state}" data-shape="{shape}">{svg}</div>'
        '<p class="hint">Updates every 2 s. <span id="dag-status"></span></p>'
        "<h2>Pipelines</h2>{table}",
        state=urls.project_dag(project) + ".json", shape=_shape(nodes, edges),
        svg=_svg(nodes, edges, pipes) if nodes else Markup("<p>No repos yet.</p>"),
        table=table(["pipeline", "state", "last job", "job state", "datums"], rows))
    return html_page(f"DAG of {project}", body, [("projects", urls.url_projects())],
                     project=project)


def projects_page(c: Console, req: Request) -> Response:
    rows: list[list[object]] = [
        [link(urls.project_dag(p.name), p.name), p.description,
         link(urls.project_repos(p.name), "repos")]
        for p in sorted(c.pfs.list_project(), key=lambda p: p.name)]
    return html_page("Projects", table(["project", "description", ""], rows))


def repos_page(c: Console, req: Request) -> Response:
    project = req.params["project"]
    try:
        c.pfs.inspect_project(project)
    except Exception as exc:
        raise NotFoundPage(f"project {project!r} not found") from exc
    pipes = {p.name for p in c.pps.list_pipeline(project)}
    rows: list[list[object]] = []
    for r in sorted(c.pfs.list_repo(type="user", project=project), key=lambda r: r.name):
        rows.append([link(urls.repo(r.name), r.name),
                     link(urls.pipeline(r.name), "output of pipeline") if r.name in pipes
                     else "user data",
                     size(r.size_bytes), ", ".join(r.branches), r.description])
    return html_page(f"Repos of {project}",
                     table(["repo", "kind", "size", "branches", "description"], rows),
                     [("projects", urls.url_projects()),
                      (project, urls.project_dag(project))], project=project)
