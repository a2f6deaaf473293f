"""The console's route table, and how a page's failure becomes an answer.

Every page handler is wrapped by :func:`_guard`: something the URL names
that does not exist (``pfs.errors.NotFound`` and its kin, PPS's too) is a 404
page saying what is missing; a malformed request a 400 page; anything else
is logged with its traceback and answered by a 500 page that shows none of
it. Pages are read-only, so a failure never leaves anything half done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import resources
from typing import Protocol

from pfs.errors import InvalidArgument, NotFound
from tusk.console.context import Console
from tusk.console.page import SECURITY_HEADERS, BadRequest, NotFoundPage, error_page
from tusk.console.pages import dag, files, lineage, pfs_pages, pps_pages
from tusk.http import Request, Response

__all__ = ["ROUTES", "register"]

log = logging.getLogger("tusk.console")

Page = Callable[[Console, Request], Response]

_SEG = "[^/]+"
_P = f"(?P<project>{_SEG})"
_R = f"{_P}/(?P<repo>{_SEG})"

#: (pattern, page), tried in order; each pattern matches a whole path.
ROUTES: list[tuple[str, Page]] = [
    ("/", dag.projects_page),
    ("/projects/?", dag.projects_page),
    (f"/projects/{_P}/dag", dag.dag_page),
    (f"/projects/{_P}/dag\\.json", dag.dag_json),
    (f"/projects/{_P}/repos", dag.repos_page),
    (f"/repos/{_R}", pfs_pages.repo_page),
    (f"/repos/{_R}/branches/(?P<branch>{_SEG})", pfs_pages.branch_page),
    (f"/repos/{_R}/commits/(?P<commit>{_SEG})", pfs_pages.commit_page),
    (f"/repos/{_R}/files/(?P<commit>{_SEG})(?P<path>/.*)?", files.browse),
    (f"/repos/{_R}/raw/(?P<commit>{_SEG})(?P<path>/.*)", files.raw),
    (f"/repos/{_R}/diff/(?P<old>{_SEG})/(?P<new>{_SEG})", files.diff),
    (f"/commit-sets/(?P<id>{_SEG})", pfs_pages.commit_set_page),
    (f"/pipelines/{_P}/(?P<name>{_SEG})", pps_pages.pipeline_page),
    (f"/jobs/{_P}/(?P<pipeline>{_SEG})/(?P<id>{_SEG})", pps_pages.job_page),
    (f"/jobs/{_P}/(?P<pipeline>{_SEG})/(?P<id>{_SEG})/logs", pps_pages.logs_page),
    (f"/jobs/{_P}/(?P<pipeline>{_SEG})/(?P<id>{_SEG})/logs\\.json", pps_pages.logs_json),
    (f"/lineage/{_R}/(?P<commit>{_SEG})(?P<path>/.*)?", lineage.lineage_page),
]

#: Any other path under the console's prefixes: a 404 page (not the HTTP
#: server's plain-text one), so a mistyped link still looks like the console.
_ELSE = "/(?:projects|repos|commit-sets|pipelines|jobs|lineage|static)(?:/.*)?"

_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".svg": "image/svg+xml"}  # our own icon; never a repo's file


def _guard(c: Console, page: Page) -> Callable[[Request], Response]:
    def handler(req: Request) -> Response:
        try:
            return page(c, req)
        except (NotFoundPage, NotFound) as exc:
            return error_page(404, str(exc) or "not found")
        except (BadRequest, InvalidArgument) as exc:
            return error_page(400, str(exc) or "bad request")
        except Exception:
            log.exception("console page %s failed", req.path)
            return error_page(500, "The page failed; the daemon's log has the details.")

    return handler


def _static() -> dict[str, Response]:
    """The shipped assets, read once (they are part of the package)."""
    out = {}
    root = resources.files("tusk.console") / "static"
    for entry in root.iterdir():
        ext = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and ext in _STATIC_TYPES:
            headers = tuple(h for h in SECURITY_HEADERS if h[0] != "Cache-Control")
            out[entry.name] = Response(200, entry.read_bytes(), _STATIC_TYPES[ext],
                                       (*headers, ("Cache-Control", "max-age=300")))
    return out


class _Router(Protocol):
    """What the HTTP server's route table needs: patterns and handlers."""

    def route(self, pattern: str, handler: Callable[[Request], Response]) -> None: ...


def register(server: _Router, c: Console) -> None:
    """Add the console's pages to ``server`` (a :class:`tusk.http.HTTPServer`)."""
    for pattern, page in ROUTES:
        server.route(pattern, _guard(c, page))
    assets = _static()

    def static(req: Request) -> Response:
        found = assets.get(req.params["name"])
        return found if found is not None else error_page(404, "no such asset")

    server.route("/static/(?P<name>[A-Za-z0-9_.-]+)", static)
    server.route(_ELSE, lambda req: error_page(404, f"nothing at {req.path}"))
