"""The daemon's HTTP server: a route table over a small threaded server.

It serves ``/metrics`` (:mod:`tusk.metrics`) now; the web console's pages are
meant to be added as further routes (``server.route(pattern, handler)``), not
as a second server. Read-only by design: only GET and HEAD are answered
(anything else is 405 with ``Allow: GET, HEAD``), and the default address is
loopback. A handler gets a :class:`Request` (path, query, the pattern's named
groups) and returns a :class:`Response`; an exception in a handler is logged
and answered 500 without a traceback (nothing internal reaches a browser).

The standard library's ``ThreadingHTTPServer`` is enough here: a scrape or a
page is one short request, one thread each, and no dependency is added for it.
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["DEFAULT_HTTP_ADDRESS", "HTTPServer", "Request", "Response", "Route"]

log = logging.getLogger("tusk.http")

#: Loopback by default: metrics and (later) pages are for this machine unless
#: the operator chooses otherwise.
DEFAULT_HTTP_ADDRESS = "127.0.0.1:1680"


@dataclass(frozen=True)
class Request:
    """One GET or HEAD request.

    Attributes:
        path: the URL path, percent-decoded.
        query: the query string's parameters (each may repeat).
        params: the route pattern's named groups.
        headers: request headers (lower-case names).
    """

    path: str
    query: Mapping[str, list[str]] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()

    @staticmethod
    def text(status: int, text: str) -> Response:
        return Response(status, text.encode())


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    """A path pattern (a regular expression matched against the whole path;
    named groups become :attr:`Request.params`) and its handler."""

    pattern: re.Pattern[str]
    handler: Handler


class HTTPServer:
    """A threaded HTTP server answering GET and HEAD from a route table.

    Routes are tried in the order they were added; the first whose pattern
    matches the whole path answers. Routes may be added before or after
    :meth:`serve`.
    """

    def __init__(self) -> None:
        self._routes: list[Route] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        #: ``http://HOST:PORT`` once serving (for messages and links).
        self.url = ""

    def route(self, pattern: str, handler: Handler) -> None:
        """Answer paths matching ``pattern`` (e.g. ``/metrics``,
        ``/repos/(?P<repo>[^/]+)``) with ``handler``."""
        with self._lock:
            self._routes.append(Route(re.compile(pattern), handler))

    def dispatch(self, path: str, query: str = "",
                 headers: Mapping[str, str] | None = None) -> Response:
        """The response to a GET of ``path`` (what the server sends; tests and
        the console's own code may call it directly)."""
        with self._lock:
            routes = list(self._routes)
        for r in routes:
            m = r.pattern.fullmatch(path)
            if m is None:
                continue
            req = Request(path=path, query=urllib.parse.parse_qs(query),
                          params={k: v for k, v in m.groupdict().items() if v is not None},
                          headers=dict(headers or {}))
            try:
                return r.handler(req)
            except Exception:
                log.exception("HTTP handler for %s failed", path)
                return Response.text(500, "internal error: the daemon's log has the details\n")
        return Response.text(404, f"not found: {path}\n")

    def serve(self, address: str) -> int:
        """Listen on ``host:port`` (port 0: any free port) in a background
        thread; returns the port.

        Raises:
            OSError: the address cannot be bound.
            ValueError: the address is not ``host:port``.
        """
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"{address!r} is not HOST:PORT")
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            server_version = "tusk"
            protocol_version = "HTTP/1.1"

            def _answer(self, head: bool) -> None:
                url = urllib.parse.urlsplit(self.path)
                path = urllib.parse.unquote(url.path)
                resp = outer.dispatch(path, url.query,
                                      {k.lower(): v for k, v in self.headers.items()})
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.content_type)
                self.send_header("Content-Length", str(len(resp.body)))
                self.send_header("X-Content-Type-Options", "nosniff")
                for k, v in resp.headers:
                    self.send_header(k, v)
                self.end_headers()
                if not head:
                    self.wfile.write(resp.body)

            def do_GET(self) -> None:
                self._answer(head=False)

            def do_HEAD(self) -> None:
                self._answer(head=True)

            def _refuse(self) -> None:
                body = b"only GET and HEAD are served\n"
                self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
                self.send_header("Allow", "GET, HEAD")
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

            def log_message(self, format: str, *args: object) -> None:
                log.debug("%s %s", self.address_string(), format % args)

        server = ThreadingHTTPServer((host.strip("[]") or "127.0.0.1", int(port)), _Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="tusk-http",
                                        daemon=True)
        self._thread.start()
        bound = int(server.server_address[1])
        self.url = f"http://{host.strip('[]') or '127.0.0.1'}:{bound}"
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
