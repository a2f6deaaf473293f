"""``pps_v2.API`` over tusk's PPS service (to be filled in)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tusk.pachyderm_api import pps_pb2_grpc

if TYPE_CHECKING:
    import grpc

    from tusk.pachyderm import Core


class PPSAdapter(pps_pb2_grpc.APIServicer):
    def __init__(self, core: Core) -> None:
        self.core = core


def add_to_server(server: grpc.Server, core: Core) -> None:
    pps_pb2_grpc.add_APIServicer_to_server(  # type: ignore[no-untyped-call]
        PPSAdapter(core), server)
