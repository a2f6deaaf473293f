"""The contract between a PPS worker and the S3 gateway it offers one datum.

A pipeline with ``input.pfs.s3: true`` or ``s3_out: true`` reads or writes
through S3 instead of ``/pfs``. For each such datum the worker asks a
:data:`GatewayFactory` (injected by whoever builds the service, e.g. the
daemon, so that ``pps`` knows nothing of HTTP) for a :class:`DatumGateway`
over an :class:`S3Scope`, puts the gateway's :attr:`~DatumGateway.env` into
the user code's environment, and hands the gateway to the runner, which
serves it on the sandbox's own loopback (:class:`pps.runners.LoopbackService`,
:mod:`pps.runners.netns`).

What the buckets show (implemented in :mod:`tusk.s3.worker_scope`):

* bucket ``<input name>`` for each s3 input: read-only, exactly the files
  ``/pfs/<input name>`` would have held for this datum (its matched paths in
  the input commit, under their full paths as keys). With glob ``/`` that is
  the whole commit.
* bucket ``out`` with ``s3_out``: writable; objects land as files in the
  datum's host output directory, collected like ``/pfs/out``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from pps.records import DatumInputRec
from pps.runners import LoopbackService

__all__ = ["OUT_BUCKET", "DatumGateway", "GatewayFactory", "S3Scope"]

#: The bucket that receives the output with ``s3_out``.
OUT_BUCKET = "out"


@dataclass(frozen=True)
class S3Scope:
    """What one datum's gateway serves.

    Attributes:
        inputs: s3 input name -> the datum's inputs of that name (one for a
            plain input, several for a group), each a path in a commit.
        out_dir: host directory that bucket ``out`` writes into (the datum's
            output directory); None without ``s3_out`` (no ``out`` bucket).
    """

    inputs: Mapping[str, tuple[DatumInputRec, ...]]
    out_dir: str | None


class DatumGateway(LoopbackService, Protocol):
    """A datum's S3 gateway: a loopback service plus how user code finds it."""

    @property
    def env(self) -> Mapping[str, str]:
        """``S3_ENDPOINT`` (``http://127.0.0.1:<port>``) and the ``AWS_*``
        variables (access key, secret, region) the gateway accepts."""
        ...


#: Makes the gateway of one datum (one run of its user code).
GatewayFactory = Callable[[S3Scope], DatumGateway]
