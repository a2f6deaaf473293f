"""The console's one escaping helper: every page is built from :class:`Markup`.

A page is text that is either *markup we wrote* or *data* (repo and file
names, file contents, log lines, reasons, specs). Data is always escaped, by
one function, :func:`esc`; :func:`fmt` fills a template whose arguments are
escaped unless they are already :class:`Markup`, so forgetting to escape is
not possible by accident: a plain ``str`` reaching a page goes through
``html.escape``. URLs are built by :func:`url`, which percent-quotes each path
segment (a file named ``<script>`` or ``a?b#c`` stays one segment) and the
query; the result is escaped again when placed in an attribute.

This is the pattern of MarkupSafe, hand-written in forty lines so the console
adds no dependency.
"""

from __future__ import annotations

import html
import urllib.parse
from collections.abc import Iterable, Mapping

__all__ = ["Markup", "esc", "fmt", "join", "url"]


class Markup(str):
    """A string that is already HTML (escaped data or our own tags)."""

    __slots__ = ()

    def __add__(self, other: str) -> Markup:
        return Markup(str.__add__(self, esc(other)))

    def __radd__(self, other: str) -> Markup:
        return Markup(str.__add__(esc(other), self))


def esc(value: object) -> Markup:
    """``value`` as HTML text: Markup unchanged, anything else ``str()``-ed
    and escaped (``& < > " '``)."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def fmt(template: str, *args: object, **kwargs: object) -> Markup:
    """``template.format(...)`` with every argument escaped (see :func:`esc`).

    The template itself is ours (a literal), never data.
    """
    return Markup(template.format(*(esc(a) for a in args),
                                  **{k: esc(v) for k, v in kwargs.items()}))


def join(parts: Iterable[object], sep: str = "") -> Markup:
    """Concatenate escaped ``parts`` (Markup kept as is)."""
    return Markup(esc(sep).join(esc(p) for p in parts))


def url(*segments: str, query: Mapping[str, object] | None = None) -> str:
    """A path from ``segments`` (each percent-quoted whole; a segment holding
    ``/``, like a file path, is quoted per component), plus a query string
    (``None`` values left out). Returns a plain ``str``: it is escaped where
    it is placed, like any other value."""
    parts: list[str] = []
    for seg in segments:
        for comp in seg.split("/"):
            if comp:
                parts.append(urllib.parse.quote(comp, safe=""))
    out = "/" + "/".join(parts)
    if segments and segments[-1].endswith("/") and len(parts) > 0:
        out += "/"
    if query:
        q = {k: str(v) for k, v in query.items() if v is not None and v != ""}
        if q:
            out += "?" + urllib.parse.urlencode(q)
    return out
