"""The metadata store interface: small records with compare-and-swap and watches.

Modelled on etcd's data model, so the etcd backend is a thin adapter and the
embedded backends (memory, SQLite) behave the same way.

Implementations (each passes ``tests/test_metadata_store_contract.py``):

* :class:`MemoryMetadataStore` -- in-process, for unit tests.
* ``pfs.metadata_sqlite.SQLiteMetadataStore`` -- the embedded default.
* ``pfs.metadata_etcd.EtcdMetadataStore`` -- a real etcd (3.4+).

Contract:

* Keys are str (printable ASCII), values are bytes. Values are small
  (well under etcd's 1.5 MiB request limit; callers keep them < 64 KiB).
* Every write bumps one global, strictly increasing ``revision``; each key
  carries the ``mod_revision`` of its last write (``create_revision`` too).
* ``txn`` is atomic and isolated: if every :class:`Compare` holds, all ops are
  applied under one new revision and it returns True; otherwise nothing is
  written and it returns False. A txn carries at most 128 ops.
  ``Compare(key, mod_revision=0)`` means "key does not exist".
* ``range(prefix)`` yields ``KeyValue`` sorted by key, streamed in pages (the
  store never loads an unbounded number of keys at once).
* ``watch(prefix, start_revision)`` yields :class:`Event` for every write to a
  key under ``prefix`` with revision >= ``start_revision`` (or, if None, after
  the watch starts), in revision order, until ``cancel()``; iteration blocks
  waiting for events. Events from other processes sharing the store arrive
  too (SQLite: by polling; etcd: natively).
* Leases: ``grant_lease(ttl)`` returns an id; keys put with that lease are
  deleted (producing DELETE events) when the lease expires or is revoked;
  ``keepalive(lease)`` extends it; an expired lease's keepalive raises
  :class:`pfs.errors.NotFound`.
* A backend that cannot reach its server raises :class:`pfs.errors.Unavailable`.
* Safe to use from several threads at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int
    lease: int = 0


@dataclass(frozen=True)
class Compare:
    """Holds when ``key``'s mod_revision equals ``mod_revision`` (0 = absent)."""

    key: str
    mod_revision: int


@dataclass(frozen=True)
class Put:
    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True)
class Delete:
    key: str


Op = Put | Delete


@dataclass(frozen=True)
class Event:
    type: Literal["PUT", "DELETE"]
    key: str
    value: bytes  # empty for DELETE
    mod_revision: int


class Watch(Protocol):
    def __iter__(self) -> Iterator[Event]: ...

    def cancel(self) -> None: ...


@runtime_checkable
class MetadataStore(Protocol):
    """A small transactional key-value store. See the module docstring."""

    def get(self, key: str) -> KeyValue | None: ...

    def range(self, prefix: str, start_after: str | None = None,
              limit: int | None = None) -> Iterator[KeyValue]: ...

    def put(self, key: str, value: bytes, lease: int = 0) -> int:
        """Unconditional write; returns the new revision."""
        ...

    def delete(self, key: str) -> bool:
        """Unconditional delete; returns whether the key existed."""
        ...

    def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> bool: ...

    def revision(self) -> int:
        """The store's current revision."""
        ...

    def watch(self, prefix: str, start_revision: int | None = None) -> Watch: ...

    def grant_lease(self, ttl: float) -> int: ...

    def keepalive(self, lease: int) -> None: ...

    def revoke_lease(self, lease: int) -> None: ...

    def close(self) -> None: ...

    def describe(self) -> str:
        """A short human description, e.g. ``sqlite:/root/.tusk/meta.db``."""
        ...
