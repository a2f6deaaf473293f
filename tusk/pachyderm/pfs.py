"""``pfs_v2.API`` over tusk's PFS service (to be filled in)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tusk.pachyderm_api import pfs_pb2_grpc

if TYPE_CHECKING:
    import grpc

    from tusk.pachyderm import Core


class PFSAdapter(pfs_pb2_grpc.APIServicer):
    def __init__(self, core: Core) -> None:
        self.core = core


def add_to_server(server: grpc.Server, core: Core) -> None:
    pfs_pb2_grpc.add_APIServicer_to_server(  # type: ignore[no-untyped-call]
        PFSAdapter(core), server)
