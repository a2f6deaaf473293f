"""PPS pages: a pipeline (spec, versions, jobs), a job (datums, failures),
and a job's logs, following live.

Jobs are read as records, one range read per pipeline (``Jobs.of_pipeline``),
never one read per job; a job's datums come from its plan and result objects
(``PPS.list_datum``) and its logs from the same result objects, read once
per page and grouped by datum.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from pfs.paths import split_repo
from pps.model import TERMINAL_JOB_STATES, DatumInfo, DatumState, JobState, LogLine
from pps.records import JobRec
from tusk.console import urls
from tusk.console.context import Console
from tusk.console.html import Markup, fmt, join
from tusk.console.page import (
    ago,
    counts,
    duration,
    html_page,
    json_response,
    link,
    progress_bar,
    short,
    state_badge,
    table,
)
from tusk.console.urls import full_name
from tusk.http import Request, Response

JOBS_PAGE = 100
DATUMS_PAGE = 200
FAILED_SHOWN = 20
STDERR_LINES = 40
LOG_LINES = 5000


def _page(req: Request) -> int:
    try:
        return max(0, int((req.query.get("page") or ["0"])[0]))
    except ValueError:
        return 0


def _pager(base: Callable[[int], str], page: int, more: bool,
           labels: tuple[str, str] = ("← previous", "next →")) -> Markup:
    nav = []
    if page > 0:
        nav.append(link(base(page - 1), labels[0]))
    if more:
        nav.append(link(base(page + 1), labels[1]))
    return fmt('<p class="pager">{}</p>', join(nav, " · "))


def _crumbs(name: str) -> list[tuple[str, str]]:
    project = split_repo(name)[0]
    return [("projects", urls.url_projects()), (project, urls.project_dag(project))]


def _job_row(name: str, j: JobRec) -> list[object]:
    return [link(urls.job(name, j.id), short(j.id)), state_badge(j.state), j.version,
            progress_bar(j.data_processed, j.data_skipped, j.data_failed, j.data_total),
            counts(j.data_processed, j.data_skipped, j.data_failed, j.data_total),
            ago(j.started or j.created), duration(j.started, j.finished),
            j.reason.splitlines()[0][:200] if j.reason else ""]


def pipeline_page(c: Console, req: Request) -> Response:
    name = full_name(req.params["project"], req.params["name"])
    versions = c.pps.pipeline_history(name)
    cur = versions[0]
    page = _page(req)
    jobs = c.pps.jobs.of_pipeline(name)
    jobs.reverse()
    shown = jobs[page * JOBS_PAGE:(page + 1) * JOBS_PAGE]
    more = len(jobs) > (page + 1) * JOBS_PAGE
    spec_inputs = sorted({full_name(leaf.project, leaf.repo)
                          for leaf in _leaves(cur.spec)})

    def pages(p: int) -> str:
        return urls.pipeline(name) + (f"?page={p}" if p else "")

    older = join(fmt("<details><summary>version {} · created {}</summary>"
                     '<pre class="spec">{}</pre></details>', v.version, ago(v.created),
                     json.dumps(v.spec, indent=2, sort_keys=True))
                 for v in versions[1:])
    body = fmt(
        "<p>{state} {reason} · version {version} · inputs {inputs} · output repo {out}</p>"
        "<h2>Jobs ({n})</h2>{pager}{jobs}{pager}"
        "<h2>Spec (version {version})</h2><pre class=\"spec\">{spec}</pre>"
        "<h2>Earlier versions</h2>{older}",
        state=state_badge(cur.state.value), reason=cur.reason, version=cur.version,
        inputs=join((link(urls.repo(r), r) for r in spec_inputs), ", "),
        out=link(urls.repo(name), name), n=len(jobs),
        pager=_pager(pages, page, more, ("← newer", "older →")),
        jobs=table(["job", "state", "version", "datums", "", "started", "duration",
                    "reason"], [_job_row(name, j) for j in shown]),
        spec=json.dumps(cur.spec, indent=2, sort_keys=True),
        older=older or Markup("<p>none</p>"))
    return html_page(f"Pipeline {name}", body, _crumbs(name), project=split_repo(name)[0])


def _leaves(spec: dict[str, Any]) -> list[Any]:
    from pps.spec import spec_from_dict

    return list(spec_from_dict(spec).input.leaves())


def _inputs(d: DatumInfo) -> Markup:
    return join((fmt("{}: {}", f.input, link(urls.files(f.repo, f.commit, f.path),
                                                f"{f.repo}@{short(f.commit)}:{f.path}"))
                 for f in d.files), Markup("<br>"))


def job_page(c: Console, req: Request) -> Response:
    name = full_name(req.params["project"], req.params["pipeline"])
    j = c.pps.inspect_job(name, req.params["id"])
    datums = list(c.pps.list_datum(name, j.id))
    failed = [d for d in datums if d.state == DatumState.FAILED]
    stderr: dict[str, list[LogLine]] = {}
    if failed:
        wanted = {d.id for d in failed[:FAILED_SHOWN]}
        for line in c.pps.get_logs(name, j.id, worker=True):
            if line.datum_id in wanted and line.stream == "stderr":
                stderr.setdefault(line.datum_id, []).append(line)
    fails = join(fmt(
        '<div class="failed"><h3>datum {id}</h3><p>{inputs}</p><p class="error">{reason}</p>'
        "<details open><summary>stderr (last {n} lines)</summary><pre>{err}</pre></details>"
        "</div>", id=d.id[:12], inputs=_inputs(d), reason=d.reason or "(no reason recorded)",
        n=STDERR_LINES,
        err="\n".join(ln.message for ln in stderr.get(d.id, [])[-STDERR_LINES:]) or "(none)")
        for d in failed[:FAILED_SHOWN])
    page = _page(req)
    shown = datums[page * DATUMS_PAGE:(page + 1) * DATUMS_PAGE]
    more = len(datums) > (page + 1) * DATUMS_PAGE

    def pages(p: int) -> str:
        return urls.job(name, j.id, p)

    rows: list[list[object]] = [
        [d.id[:12], state_badge(d.state.value if d.state != DatumState.PENDING else "pending"),
         _inputs(d), f"{d.duration:.2f} s" if d.duration else "", d.attempts or "",
         len(d.outputs), d.reason.splitlines()[0][:200] if d.reason else ""] for d in shown]
    facts: list[list[object]] = [
        ["state", state_badge(j.state.value)], ["reason", fmt('<pre>{}</pre>', j.reason)
                                                 if j.reason else ""],
        ["pipeline", link(urls.pipeline(name), f"{name} (version {j.pipeline_version})")],
        ["commit set", link(urls.commit_set(j.id), j.id)],
        ["output commit", link(urls.commit(name, j.id), f"{name}@{short(j.id)}")],
        ["input commits", join((link(urls.commit(r.repo, r.id), f"{r.repo}@{short(r.id)}")
                                for r in j.input_commits), Markup("<br>"))],
        ["datums", fmt("{} {}", progress_bar(j.data_processed, j.data_skipped, j.data_failed,
                                             j.data_total),
                       counts(j.data_processed, j.data_skipped, j.data_failed, j.data_total))],
        ["created", ago(j.created)], ["started", ago(j.started)],
        ["finished", ago(j.finished)], ["duration", duration(j.started, j.finished)],
        ["logs", link(urls.logs(name, j.id), "logs (live)")],
    ]
    body = fmt(
        "{facts}<h2>Failed datums ({nf})</h2>{fails}<h2>Datums ({n})</h2>{pager}{table}{pager}",
        facts=table(["", ""], facts, cls="facts"), nf=len(failed),
        fails=fails or Markup("<p>none</p>"), n=len(datums), pager=_pager(pages, page, more),
        table=table(["datum", "state", "inputs", "time", "attempts", "outputs", "reason"],
                    rows))
    return html_page(f"Job {name}@{short(j.id)}", body,
                     [*_crumbs(name), (name, urls.pipeline(name))], project=split_repo(name)[0])


def _log_lines(c: Console, name: str, job: str) -> tuple[list[LogLine], bool]:
    j = c.pps.inspect_job(name, job)
    lines = list(c.pps.get_logs(name, j.id))
    return lines[-LOG_LINES:], JobState(j.state) in TERMINAL_JOB_STATES


def _line_json(ln: LogLine) -> dict[str, Any]:
    return {"ts": time.strftime("%H:%M:%S", time.localtime(ln.ts)), "stream": ln.stream,
            "datum": ln.datum_id[:12], "message": ln.message}


def logs_page(c: Console, req: Request) -> Response:
    name = full_name(req.params["project"], req.params["pipeline"])
    j = c.pps.inspect_job(name, req.params["id"])
    lines, done = _log_lines(c, name, j.id)
    rendered = join(fmt('<div class="log {stream}"><span class="ts">{ts}</span> '
                        '<span class="datum">{datum}</span> <span class="msg">{message}</span>'
                        "</div>", **_line_json(ln)) for ln in lines)
    body = fmt(
        '<p>{job} · <span id="log-status">{status}</span></p>'
        '<div id="logs" data-logs-url="{url}" data-done="{done}">{lines}</div>',
        job=link(urls.job(name, j.id), f"job {short(j.id)}"),
        status="finished" if done else "following…", url=urls.logs_json(name, j.id),
        done="1" if done else "0", lines=rendered)
    return html_page(f"Logs of {name}@{short(j.id)}", body,
                     [*_crumbs(name), (name, urls.pipeline(name)),
                      (short(j.id), urls.job(name, j.id))], project=split_repo(name)[0])


def logs_json(c: Console, req: Request) -> Response:
    name = full_name(req.params["project"], req.params["pipeline"])
    lines, done = _log_lines(c, name, req.params["id"])
    return json_response({"done": done, "lines": [_line_json(ln) for ln in lines]})


