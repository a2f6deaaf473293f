"""Files: a directory (paged), a file's preview, its download, and diffs.

A directory is listed a page at a time (:data:`DIR_PAGE` entries) through
``PFS.list_file(start_after=...)``, which seeks in the tree: a page of a
10,000-file directory costs about the page, and the next page's URL names the
last entry shown (``?after=NAME``), so it stays valid as long as the commit
does (commits are immutable). "Previous" scans names from the start up to
the page (names only, no page rendering): linear in the position, a few
milliseconds for 10,000 entries.

Previews read at most :data:`PREVIEW_BYTES`; nothing a file holds is ever
rendered as HTML: HTML and SVG are shown as text, images only for PNG, JPEG,
GIF and WebP (and then through ``<img>``, which never runs scripts), and
downloads are ``application/octet-stream`` attachments otherwise.
"""

from __future__ import annotations

import collections
import csv
import difflib
import io
import itertools
import json
import posixpath

from pfs.model import FileInfo, FileType
from pfs.paths import split_repo
from tusk.console import urls
from tusk.console.context import Console
from tusk.console.html import Markup, fmt, join
from tusk.console.page import (
    BadRequest,
    ago,
    html_page,
    link,
    raw_response,
    short,
    size,
    table,
)
from tusk.console.urls import full_name
from tusk.http import Request, Response

DIR_PAGE = 200
PREVIEW_BYTES = 1 << 20
TABLE_ROWS = 500
#: Downloads are answered from memory (tusk.http sends whole bodies).
DOWNLOAD_MAX = 256 << 20
DIFF_ENTRIES = 500
DIFF_TEXT_MAX = 64 << 10
DIFF_TEXTS = 20
#: The only types served as themselves: images a browser never runs code from.
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".gif": "image/gif", ".webp": "image/webp"}


def _path(req: Request) -> str:
    p = req.params.get("path") or "/"
    return p if p.startswith("/") else "/" + p


def _crumbs(repo: str, cid: str, path: str) -> list[tuple[str, str]]:
    project = split_repo(repo)[0]
    out = [("projects", urls.url_projects()), (project, urls.project_dag(project)),
           (repo, urls.repo(repo)), (short(cid), urls.commit(repo, cid)),
           ("/", urls.files(repo, cid))]
    acc = ""
    parts = [x for x in path.split("/") if x]
    for comp in parts[:-1]:
        acc += "/" + comp
        out.append((comp, urls.files(repo, cid, acc + "/")))
    return out


def _read(c: Console, repo: str, cid: str, path: str, limit: int) -> bytes:
    buf = bytearray()
    for chunk in c.pfs.get_file(repo, cid, path):
        buf += chunk
        if len(buf) >= limit:
            break
    return bytes(buf[:limit])


def _name(info: FileInfo) -> str:
    return info.path.rstrip("/").rsplit("/", 1)[-1] or "/"


def _is_dir(info: FileInfo) -> bool:
    return info.file_type == FileType.DIR


def browse(c: Console, req: Request) -> Response:
    repo = full_name(req.params["project"], req.params["repo"])
    ref = req.params["commit"]
    path = _path(req)
    info = c.pfs.inspect_file(repo, ref, path)
    cid = info.commit
    if _is_dir(info):
        return _directory(c, req, repo, cid, info)
    return _file(c, repo, cid, info)


def _directory(c: Console, req: Request, repo: str, cid: str, info: FileInfo) -> Response:
    path = info.path
    after = (req.query.get("after") or [""])[0] or None
    entries = list(itertools.islice(c.pfs.list_file(repo, cid, path, start_after=after),
                                    DIR_PAGE + 1))
    more = len(entries) > DIR_PAGE
    entries = entries[:DIR_PAGE]
    rows: list[list[object]] = []
    for e in entries:
        name = _name(e)
        if _is_dir(e):
            rows.append([link(urls.files(repo, cid, e.path), name + "/"), "dir",
                         size(e.size_bytes), "", ""])
        else:
            rows.append([link(urls.files(repo, cid, e.path), name), "file", size(e.size_bytes),
                         link(urls.raw(repo, cid, e.path), "download"),
                         link(urls.lineage(repo, cid, e.path), "lineage")])
    nav: list[Markup] = []
    if after:
        prev = _previous_start(c, repo, cid, path, after)
        nav.append(link(urls.files(repo, cid, path), "⇤ first"))
        nav.append(link(urls.files(repo, cid, path, prev), "← previous"))
    if more:
        nav.append(link(urls.files(repo, cid, path, _name(entries[-1])), "next →"))
    body = fmt(
        '<p>{repo}@{commit} · {path} · {size} · <a href="{lineage}">lineage</a></p>'
        '<p class="pager">{nav}</p>{table}<p class="pager">{nav}</p>',
        repo=repo, commit=link(urls.commit(repo, cid), short(cid)), path=path,
        size=size(info.size_bytes), lineage=urls.lineage(repo, cid, path),
        nav=join(nav, " · "),
        table=table(["name", "type", "size", "", ""], rows, cls="files"))
    title = f"{repo}@{short(cid)}:{path}"
    return html_page(title, body, _crumbs(repo, cid, path), project=split_repo(repo)[0])


def _previous_start(c: Console, repo: str, cid: str, path: str, after: str) -> str | None:
    """The ``after`` of the page before the one starting after ``after``
    (None: that page is the first)."""
    window: collections.deque[str] = collections.deque(maxlen=DIR_PAGE + 1)
    k = 0
    for e in c.pfs.list_file(repo, cid, path):
        name = _name(e)
        if name > after:
            break
        window.append(name)
        k += 1
    # The previous page is the DIR_PAGE names ending at `after`; it starts
    # after the name before them.
    return window[0] if k > DIR_PAGE else None


def _kind(path: str) -> str:
    ext = posixpath.splitext(path)[1].lower()
    if ext in IMAGE_TYPES:
        return "image"
    return {".csv": "csv", ".tsv": "tsv", ".json": "json"}.get(ext, "text")


def _file(c: Console, repo: str, cid: str, info: FileInfo) -> Response:
    path = info.path
    kind = _kind(path)
    head = Markup("")
    if kind == "image":
        preview = fmt('<img class="preview" src="{}" alt="{}">',
                      urls.raw(repo, cid, path, inline=True), _name(info))
    else:
        data = _read(c, repo, cid, path, PREVIEW_BYTES)
        cut = info.size_bytes > len(data)
        preview = _text_preview(kind, data, cut)
        if cut:
            head = fmt('<p class="hint">The first {} shown.</p>', size(len(data)))
    written = Markup("user data (put by a user)")
    if info.datum:
        written = fmt("written by datum {} · {}", info.datum[:12],
                      link(urls.lineage(repo, cid, path), "lineage"))
    body = fmt(
        '<p>{size} · committed {when} · {written} · <a href="{raw}">download</a> · '
        '<a href="{lineage}">lineage</a></p>{head}{preview}',
        size=size(info.size_bytes), when=ago(info.committed), written=written,
        raw=urls.raw(repo, cid, path), lineage=urls.lineage(repo, cid, path),
        head=head, preview=preview)
    return html_page(f"{repo}@{short(cid)}:{path}", body, _crumbs(repo, cid, path),
                     project=split_repo(repo)[0])


def _text_preview(kind: str, data: bytes, cut: bool) -> Markup:
    if b"\0" in data[:8192]:
        return Markup('<p class="hint">Binary file: download it to see it.</p>')
    text = data.decode("utf-8", errors="replace")
    if kind in ("csv", "tsv"):
        rows = list(itertools.islice(csv.reader(io.StringIO(text),
                                                delimiter="," if kind == "csv" else "\t"),
                                     TABLE_ROWS + 1))
        if cut and rows:
            rows = rows[:-1]  # the last line may be cut in the middle
        if rows:
            header, body = rows[0], rows[1:TABLE_ROWS]
            width = max(len(r) for r in rows)
            header += [""] * (width - len(header))
            note = (fmt('<p class="hint">First {} rows shown.</p>', TABLE_ROWS)
                    if len(rows) > TABLE_ROWS or cut else Markup(""))
            return note + table(header, [list(r) + [""] * (width - len(r)) for r in body],
                                cls="csv")
    if kind == "json" and not cut:
        try:
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    return fmt('<pre class="file">{}</pre>', text)


def raw(c: Console, req: Request) -> Response:
    repo = full_name(req.params["project"], req.params["repo"])
    path = _path(req)
    info = c.pfs.inspect_file(repo, req.params["commit"], path)
    if _is_dir(info):
        raise BadRequest(f"{path} is a directory: download its files one by one, or use "
                         f"`tusk get file -r {repo}@{info.commit}:{path}`")
    if info.size_bytes > DOWNLOAD_MAX:
        raise BadRequest(f"{path} is {size(info.size_bytes)}: the console serves files up "
                         f"to {size(DOWNLOAD_MAX)}; use `tusk get file "
                         f"{repo}@{info.commit}:{path}`")
    data = _read(c, repo, info.commit, path, info.size_bytes + 1)
    ext = posixpath.splitext(path)[1].lower()
    ctype = IMAGE_TYPES.get(ext, "application/octet-stream")
    inline = (req.query.get("inline") or [""])[0] == "1" and ext in IMAGE_TYPES
    return raw_response(data, ctype, _name(info), inline=inline)


def diff(c: Console, req: Request) -> Response:
    repo = full_name(req.params["project"], req.params["repo"])
    old_ref, new_ref = req.params["old"], req.params["new"]
    path = (req.query.get("path") or ["/"])[0] or "/"
    new_c = c.pfs.inspect_commit(repo, new_ref)
    old_c = c.pfs.inspect_commit(repo, old_ref)
    pairs = list(itertools.islice(
        c.pfs.diff_file(repo, new_c.id, path, old_ref=old_c.id), DIFF_ENTRIES + 1))
    more = len(pairs) > DIFF_ENTRIES
    rows: list[list[object]] = []
    texts: list[Markup] = []
    for new, old in pairs[:DIFF_ENTRIES]:
        f = new or old
        assert f is not None
        if new is not None and old is None:
            change = "added"
        elif new is None:
            change = "deleted"
        else:
            change = "modified"
        dir_ = _is_dir(f)
        where = new_c.id if new is not None else old_c.id
        rows.append([fmt('<span class="chg-{}">{}</span>', change, change),
                     link(urls.files(repo, where, f.path), f.path),
                     size(old.size_bytes) if old else "", size(new.size_bytes) if new else ""])
        if (not dir_ and len(texts) < DIFF_TEXTS and _kind(f.path) != "image"
                and (old is None or old.size_bytes <= DIFF_TEXT_MAX)
                and (new is None or new.size_bytes <= DIFF_TEXT_MAX)):
            a = _read(c, repo, old_c.id, f.path, DIFF_TEXT_MAX) if old else b""
            b = _read(c, repo, new_c.id, f.path, DIFF_TEXT_MAX) if new else b""
            if b"\0" not in a and b"\0" not in b:
                lines = difflib.unified_diff(
                    a.decode("utf-8", "replace").splitlines(keepends=True),
                    b.decode("utf-8", "replace").splitlines(keepends=True),
                    f"{short(old_c.id)}:{f.path}", f"{short(new_c.id)}:{f.path}")
                texts.append(fmt("<details><summary>{}</summary><pre class=\"diff\">{}"
                                 "</pre></details>", f.path, "".join(lines)))
    body = fmt(
        "<p>{old} → {new} under {path}</p>{table}{more}<h2>Text changes</h2>{texts}",
        old=link(urls.commit(repo, old_c.id), short(old_c.id)),
        new=link(urls.commit(repo, new_c.id), short(new_c.id)), path=path,
        table=table(["change", "path", "old size", "new size"], rows),
        more=fmt('<p class="hint">First {} changes shown.</p>', DIFF_ENTRIES) if more else "",
        texts=join(texts) or Markup("<p>none</p>"))
    return html_page(f"Diff of {repo}: {short(old_c.id)} → {short(new_c.id)}", body,
                     _crumbs(repo, new_c.id, "/")[:4], project=split_repo(repo)[0])


