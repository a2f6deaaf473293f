"""``versionpb_v2``, ``admin_v2``, ``transaction_v2``, ``auth_v2`` and
``metadata.API`` (to be filled in)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc

    from tusk.pachyderm import Core


def add_to_server(server: grpc.Server, core: Core) -> None:
    del server, core
