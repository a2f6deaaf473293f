"""The web console without a browser: the escaping helper, the DAG layout,
error pages, and paging, over in-memory stores and the fake runner
(``tests/test_console_browser.py`` drives the same pages in Chromium)."""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable

import pytest

from tests.test_controller import Stack, make  # noqa: F401  (the fixture)
from tusk import console
from tusk.console.context import Console
from tusk.console.html import Markup, esc, fmt, join, url
from tusk.console.layout import NODE_H, NODE_W, layout
from tusk.console.routes import _guard
from tusk.http import HTTPServer, Request, Response


def test_escaping_is_the_default() -> None:
    assert fmt("<p>{}</p>", "<script>&'\"") == "<p>&lt;script&gt;&amp;&#x27;&quot;</p>"
    assert fmt("<p>{}</p>", Markup("<b>ours</b>")) == "<p><b>ours</b></p>"
    assert esc(esc("<")) == "&lt;"  # escaping twice does not double-escape Markup
    assert join(["<a>", Markup("<br>")], "&") == "&lt;a&gt;&amp;<br>"
    assert Markup("<i>") + "<x>" == "<i>&lt;x&gt;"


def test_urls_quote_each_segment() -> None:
    assert url("repos", "default", "r", "files", "c", "/d/<script> a?b#c") == (
        "/repos/default/r/files/c/d/%3Cscript%3E%20a%3Fb%23c")
    assert url("repos", "p", "r", "files", "c", "/d/") == "/repos/p/r/files/c/d/"
    assert url("x", query={"after": "a&b", "none": None}) == "/x?after=a%26b"


def _crossings(lay: object, edges: list[tuple[str, str]]) -> int:
    from tusk.console.layout import Layout

    assert isinstance(lay, Layout)
    segs = [(lay.edges[e][0], lay.edges[e][-1]) for e in edges if len(lay.edges[e]) == 2]
    n = 0
    for (a1, a2), (b1, b2) in itertools.combinations(segs, 2):
        if a1[1] == b1[1] and a1[0] != b1[0] and a2[0] != b2[0]:
            n += (a1[0] < b1[0]) != (a2[0] < b2[0])
    return n


def test_layout_layers_by_longest_path_and_orders_to_avoid_crossings() -> None:
    edges = [("data", "a"), ("a", "b"), ("b", "c"), ("data", "c"),
             ("z", "y"), ("y", "x"), ("data2", "x")]
    lay = layout({n for e in edges for n in e}, edges)
    ys = {n: y for n, (_, y) in lay.nodes.items()}
    assert ys["data"] < ys["a"] < ys["b"] < ys["c"]  # c: below its deepest input
    for a, b in edges:
        assert ys[a] < ys[b]
        pts = lay.edges[(a, b)]
        assert pts[0][1] == ys[a] + NODE_H and pts[-1][1] == ys[b]
    # The long edge data -> c bends through a dummy slot per skipped layer.
    assert len(lay.edges[("data", "c")]) == 2 + 2 * 2
    # No two nodes overlap.
    for (_, (x1, y1)), (_, (x2, y2)) in itertools.combinations(lay.nodes.items(), 2):
        assert y1 != y2 or abs(x1 - x2) >= NODE_W
    # Two crossed chains come out uncrossed.
    crossed = [("p", "q2"), ("p2", "q")]
    lay2 = layout(["p", "p2", "q", "q2"], crossed)
    assert _crossings(lay2, crossed) == 0


def test_layout_survives_a_cycle_and_unknown_nodes() -> None:
    lay = layout(["a", "b"], [("a", "b"), ("b", "a"), ("a", "ghost")])
    assert set(lay.nodes) == {"a", "b"} and len(lay.edges) == 1


def test_a_failing_page_is_a_500_without_internals(
        make: Callable[..., Stack], caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    s = make()

    def broken(c: Console, req: Request) -> Response:
        raise RuntimeError("secret internal detail")

    with caplog.at_level(logging.ERROR, logger="tusk.console"):
        resp = _guard(Console(s.pfs, s.pps), broken)(Request(path="/x"))
    assert resp.status == 500
    assert b"secret" not in resp.body and b"Traceback" not in resp.body
    assert "secret internal detail" in caplog.text  # logged for the operator


def _server(s: Stack) -> HTTPServer:
    srv = HTTPServer()
    console.register(srv, s.pfs, s.pps)
    return srv


def test_missing_things_are_404_pages_and_bad_refs_400(make: Callable[..., Stack]) -> None:  # noqa: F811
    s = make()
    s.pfs.create_repo("data")
    cid = s.put("data", {"/a": b"a"})
    srv = _server(s)
    for path in ("/repos/default/nope", f"/repos/default/data/files/{cid}/nope",
                 "/repos/default/data/commits/" + "f" * 32, "/pipelines/default/nope",
                 "/jobs/default/nope/x", "/commit-sets/" + "0" * 32, "/projects/nope/dag",
                 "/static/nope.js", "/repos/default/data/files"):
        resp = srv.dispatch(path)
        assert resp.status == 404, path
        assert b"Not found" in resp.body and b"Traceback" not in resp.body, path
        assert dict(resp.headers)["Content-Security-Policy"].startswith("default-src 'none'")
    resp = srv.dispatch(f"/repos/default/data/raw/{cid}/")
    assert resp.status == 400  # a directory cannot be downloaded


def test_directory_pages_follow_the_ordered_listing(make: Callable[..., Stack]) -> None:  # noqa: F811
    s = make()
    s.pfs.create_repo("data")
    names = [f"f{i:04d}" for i in range(450)]
    cid = s.put("data", {f"/d/{n}": b"" for n in names})
    srv = _server(s)

    def page(query: str = "") -> tuple[list[str], dict[str, str]]:
        resp = srv.dispatch(f"/repos/default/data/files/{cid}/d/", query)
        assert resp.status == 200
        body = resp.body.decode()
        shown = re.findall(r'/files/[0-9a-f]+/d/(f\d{4})">', body)
        links = dict((label, href) for href, label in re.findall(
            r'<a href="([^"]+)">(next →|← previous)</a>', body))
        return shown, links

    first, links = page()
    assert first == names[:200] and "← previous" not in links
    second, links = page(links["next →"].split("?", 1)[1])
    assert second == names[200:400]
    assert links["← previous"].endswith("/d/")  # back to the first page
    third, links = page("after=" + names[399])
    assert third == names[400:] and "next →" not in links
    assert links["← previous"].endswith("after=" + names[199])
