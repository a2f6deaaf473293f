"""Pachyderm's gRPC API, served by the tusk daemon on its own address.

A thin adapter: each Pachyderm call is translated (``convert``) into the
matching call of tusk's own services (``tusk.server.PFSServicer``,
``tusk.pps_server.PPSServicer``) and the answer translated back, so
validation, errors, transactions and limits are the same whichever API a
client speaks. ``pfs/`` and ``pps/`` know nothing of it.

Modules, one per Pachyderm service group:

* ``pfs``: ``pfs_v2.API`` (repos, branches, commits, files, projects).
* ``pps``: ``pps_v2.API`` (pipelines, jobs, datums, logs, secrets).
* ``services``: ``versionpb_v2``, ``admin_v2``, ``transaction_v2``,
  ``auth_v2`` (auth is not activated), ``metadata.API``.

The wire schema is generated from the published ``pachyderm-sdk`` package
(``scripts/gen-pachyderm-proto`` -> ``tusk/pachyderm_api``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc

    from pps.api import PPS
    from tusk.pps_server import PPSServicer
    from tusk.server import PFSServicer


@dataclass(frozen=True)
class Core:
    """What every adapter module delegates to."""

    pfs: PFSServicer
    pps: PPSServicer


def registrar(pps: PPS) -> Callable[[grpc.Server], None]:
    """A ``tusk.server.serve`` registrar adding Pachyderm's services for ``pps``."""
    def register(server: grpc.Server) -> None:
        from tusk.pachyderm import pfs as pfs_api
        from tusk.pachyderm import pps as pps_api
        from tusk.pachyderm import services
        from tusk.pps_server import PPSServicer
        from tusk.server import PFSServicer

        core = Core(pfs=PFSServicer(pps.pfs), pps=PPSServicer(pps))
        for module in (pfs_api, pps_api, services):
            module.add_to_server(server, core)
    return register


__all__ = ["Core", "registrar"]
