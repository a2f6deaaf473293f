"""The console's page frame and responses: security headers on every answer,
and the errors a page may end in (404 and 400 say what was not found or
wrong; anything else is a 500 without internals, logged by :mod:`.routes`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from tusk.console.html import Markup, esc, fmt, join, url
from tusk.http import Response

__all__ = ["SECURITY_HEADERS", "BadRequest", "NotFoundPage", "html_page", "json_response",
           "raw_response"]

#: Every console answer: only our own scripts, styles and images (data: for
#: none), no framing, no plugins; no MIME sniffing (tusk.http adds that one).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CSP),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
)


class NotFoundPage(Exception):
    """Answer 404 with this message (something named in the URL is missing)."""


class BadRequest(Exception):
    """Answer 400 with this message (the URL or its query is malformed)."""


def html_page(title: str, body: Markup, crumbs: list[tuple[str, str]] | None = None,
              status: int = 200, project: str | None = None) -> Response:
    """A whole HTML page: header, breadcrumbs (label, href), ``body``."""
    trail = join(fmt('<a href="{}">{}</a> / ', href, label) for label, href in crumbs or [])
    nav = fmt('<a href="{}">projects</a>', url("projects"))
    if project:
        nav += fmt(' · <a href="{}">DAG of {}</a> · <a href="{}">repos</a>',
                   url("projects", project, "dag"), project, url("projects", project, "repos"))
    doc = fmt(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>{title} · tusk</title>"
        '<link rel="icon" href="/static/favicon.svg">'
        '<link rel="stylesheet" href="/static/console.css">'
        '<script src="/static/console.js" defer></script></head>'
        '<body><header><a class="brand" href="/">tusk</a> <nav>{nav}</nav></header>'
        '<main><p class="crumbs">{trail}</p><h1>{title}</h1>{body}</main>'
        "<footer>read-only console · {now}</footer></body></html>",
        title=title, nav=nav, trail=trail, body=body,
        now=time.strftime("%Y-%m-%d %H:%M:%S"))
    return Response(status, doc.encode(), "text/html; charset=utf-8", SECURITY_HEADERS)


def error_page(status: int, message: str) -> Response:
    titles = {400: "Bad request", 404: "Not found", 500: "Internal error"}
    body = fmt('<p class="error">{}</p><p><a href="/">Back to the projects</a></p>', message)
    return html_page(titles.get(status, "Error"), body, status=status)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(data, separators=(",", ":")).encode(),
                    "application/json", SECURITY_HEADERS)


def raw_response(body: bytes, content_type: str, filename: str | None = None,
                 inline: bool = False) -> Response:
    """File bytes. ``filename``: sent as an attachment with that name (RFC
    6266 ``filename*``), unless ``inline``."""
    headers = list(SECURITY_HEADERS)
    if filename is not None:
        from urllib.parse import quote

        ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_"
                             for c in filename) or "file"
        kind = "inline" if inline else "attachment"
        headers.append(("Content-Disposition",
                        f"{kind}; filename=\"{ascii_name}\"; "
                        f"filename*=UTF-8''{quote(filename, safe='')}"))
    return Response(200, body, content_type, tuple(headers))


def ago(ts: float | None) -> str:
    """A timestamp as local time (empty for None)."""
    if not ts:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def duration(start: float | None, end: float | None) -> str:
    """``1m 12s``, ``3.4 s``; running durations count to now; empty if not started."""
    if not start:
        return ""
    secs = (end or time.time()) - start
    if secs < 60:
        return f"{secs:.1f} s"
    m, s = divmod(int(secs), 60)
    if m < 60:
        return f"{m}m {s}s"
    h, m = divmod(m, 60)
    return f"{h}h {m}m"


def size(n: int | None) -> str:
    if n is None:
        return ""
    f = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if f < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{f:.1f} {unit}"
        f /= 1024
    return f"{n} B"


def state_badge(state: str | None) -> Markup:
    """A state as a colored label (the class is derived from a fixed set)."""
    if not state:
        return Markup('<span class="badge">—</span>')
    s = str(state).upper()
    cls = {"SUCCESS": "ok", "FINISHED": "ok", "RUNNING": "run", "STARTING": "run",
           "CREATED": "run", "FINISHING": "run", "EGRESSING": "run", "STARTED": "run",
           "FAILURE": "bad", "FAILED": "bad", "KILLED": "bad", "CRASHING": "bad",
           "UNRUNNABLE": "bad", "PAUSED": "idle", "STANDBY": "idle",
           "SKIPPED": "idle", "PENDING": "idle", "READY": "run"}.get(s, "idle")
    return fmt('<span class="badge {}">{}</span>', cls, s.lower())


def progress_bar(processed: int, skipped: int, failed: int, total: int,
                 width: int = 160) -> Markup:
    """processed/skipped/failed of total as a stacked SVG bar (attributes
    only: the CSP allows no inline styles)."""
    total = max(total, processed + skipped + failed, 1)
    parts = []
    x = 0.0
    for n, cls in ((processed, "p"), (skipped, "s"), (failed, "f")):
        w = width * n / total
        parts.append(fmt('<rect class="bar-{}" x="{}" y="0" width="{}" height="10"/>',
                         cls, f"{x:.1f}", f"{w:.1f}"))
        x += w
    return fmt('<svg class="bar" width="{w}" height="10" viewBox="0 0 {w} 10" role="img" '
               'aria-label="{label}"><rect class="bar-bg" x="0" y="0" width="{w}" '
               'height="10"/>{parts}</svg>',
               w=width, parts=join(parts),
               label=f"{processed} processed, {skipped} skipped, {failed} failed of {total}")


def counts(processed: int, skipped: int, failed: int, total: int) -> Markup:
    return fmt('<span class="counts">{} processed · {} skipped · {} failed / {}</span>',
               processed, skipped, failed, total)


def table(headers: Sequence[object], rows: Sequence[Sequence[object]], cls: str = "") -> Markup:
    head = join(fmt("<th>{}</th>", h) for h in headers)
    body = join(fmt("<tr>{}</tr>", join(fmt("<td>{}</td>", c) for c in r)) for r in rows)
    if not rows:
        body = fmt('<tr><td colspan="{}" class="empty">none</td></tr>', len(headers))
    return fmt('<table class="{}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
               cls, head, body)


def link(href: str, label: object) -> Markup:
    return fmt('<a href="{}">{}</a>', href, label)


def short(cid: str) -> str:
    return cid[:12]


def escape(value: object) -> Markup:
    """Re-export of :func:`tusk.console.html.esc` for page modules."""
    return esc(value)
