"""A gRPC context that rewrites tusk's error texts into Pachyderm's.

The adapter passes Pachyderm's calls to tusk's servicers with the real
context, so status codes, deadlines, cancellation and the transaction
metadata carry over unchanged. Only the words differ where Pachyderm's
clients match them (its SDK's tests do, by regex): :class:`PachydermContext`
forwards everything and rewrites the details of an ``abort``.
"""

from __future__ import annotations

import re
from typing import Any, cast

import grpc

# (tusk's message, Pachyderm's): a message matching the pattern gets the
# replacement prepended, so tusk's advice on what to do is kept.
_REWRITES: tuple[tuple[re.Pattern[str], str], ...] = (
    # start commit on a branch whose head is open
    (re.compile(r"^(?!parent commit).*(?:head|parent).*(?:still open|not finished|is open)",
                re.I | re.S),
     "parent commit has not been finished: "),
)


def pachyderm_details(details: str) -> str:
    """tusk's error text, prefixed with Pachyderm's words where they differ."""
    for pattern, prefix in _REWRITES:
        if pattern.search(details):
            return prefix + details
    return details


class PachydermContext:
    """Wraps a ``grpc.ServicerContext``; see the module docstring."""

    def __init__(self, ctx: grpc.ServicerContext) -> None:
        self._ctx = ctx

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self._ctx.abort(code, pachyderm_details(details))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)


def wrap(ctx: grpc.ServicerContext) -> grpc.ServicerContext:
    """``ctx`` as a :class:`PachydermContext` (typed as the context it wraps)."""
    return cast(grpc.ServicerContext, PachydermContext(ctx))


__all__ = ["PachydermContext", "pachyderm_details", "wrap"]
