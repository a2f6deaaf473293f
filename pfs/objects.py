"""The object store interface: where chunks, packs and index nodes live.

Implementations (each passes ``tests/test_object_store_contract.py``):

* :class:`MemoryObjectStore` -- a dict, for fast unit tests.
* :class:`LocalObjectStore`  -- a local directory (the embedded default).
* ``pfs.objects_s3.S3ObjectStore`` -- any S3 server through the ``minio`` SDK.

Contract (every implementation):

* Keys are ``/``-separated strings of printable ASCII without ``..``
  components, e.g. ``packs/ab/abcdef...``. Keys never start with ``/``.
* ``put`` is atomic: a reader sees either no object or the whole new value,
  never a partial write, even if the writer is killed mid-write. Overwriting
  an existing key replaces it (callers only overwrite with identical bytes for
  content-addressed keys, so replays are idempotent).
* ``get`` of a missing key raises :class:`pfs.errors.ObjectNotFound`.
  ``offset``/``length`` read a byte range; a range past the end is truncated.
* ``delete`` of a missing key is a no-op.
* ``list(prefix)`` yields every key that starts with ``prefix``, sorted,
  streamed (never materialised as one list by the store).
* A backend that cannot reach its server raises
  :class:`pfs.errors.Unavailable` naming the service and endpoint.
* All methods are safe to call from several threads at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable


@runtime_checkable
class ObjectStore(Protocol):
    """Blob storage addressed by string keys. See the module docstring."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically."""
        ...

    def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        """Return the bytes of ``key`` (or the range ``[offset, offset+length)``)."""
        ...

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        ...

    def size(self, key: str) -> int:
        """Size in bytes of ``key``; raises ObjectNotFound when missing."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; missing is not an error."""
        ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield keys starting with ``prefix`` in sorted order."""
        ...

    def describe(self) -> str:
        """A short human description, e.g. ``local:/root/.tusk/objects``."""
        ...
