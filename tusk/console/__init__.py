"""The web console: read-only pages over the daemon's PFS and PPS.

Served by the daemon's HTTP server (:mod:`tusk.http`, ``--http-address``)
next to ``/metrics``: :func:`register` adds its routes. Pages are rendered
on the server from the core objects in-process (no gRPC hop, no client-side
framework); the DAG is laid out in Python (:mod:`.layout`) and drawn as SVG;
``static/console.js`` (vanilla, no build step) only polls small JSON
endpoints to keep the DAG and logs live. Every value shown passes through
one escaping helper (:mod:`.html`); every answer carries a strict
Content-Security-Policy (no inline script or style).

Modules: ``routes`` (URL table, errors to 404/400/500), ``urls`` (the URL
scheme), ``page`` (frame, headers, small widgets), ``pages/*`` (one per
area), ``layout`` (DAG layout), ``static/`` (CSS, JS).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pfs.api import PFS
    from pps.api import PPS
    from tusk.http import HTTPServer

__all__ = ["register"]


def register(server: HTTPServer, pfs: PFS, pps: PPS) -> None:
    """Serve the console's pages on ``server`` over ``pfs`` and ``pps``."""
    from tusk.console.context import Console
    from tusk.console.routes import register as add_routes

    add_routes(server, Console(pfs, pps))
