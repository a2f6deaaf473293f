"""A fenced metadata store: every write carries its holder's fencing token.

The master daemon holds a key with a lease (``tusk.election``). A lease can
expire while its holder still believes it holds it -- the process was frozen
(SIGSTOP, a VM pause, a long GC), or cut off from the store for longer than
the TTL -- and by then another daemon may be master. The old master's
keepalive notices within a third of the TTL, but any write it makes before
that would land next to the new master's. So the old master must not be
*able* to write, whatever it believes.

:class:`FencedMetadataStore` wraps the store the master writes through and
adds ``Compare(key, revision)`` to every write, where ``revision`` is the
key's ``mod_revision`` when the master took it: its *fencing token*. The key
keeps that revision exactly as long as the master holds it: expiry or
revocation deletes it, and a successor re-creates it at a later revision
(revisions only grow, so the token can never hold again). The compare is
evaluated by the store inside the same atomic transaction as the write, so
there is no window: a write either commits while the key is still the
master's, or not at all.

Every write path goes through one transaction with the fence:

* ``txn`` / ``txn_result``: the caller's compares plus the fence (so a
  fenced txn carries at most ``MAX_TXN_OPS - 1`` compares of its own).
* ``put`` / ``delete``: a one-op transaction with the fence (``txn_result``
  gives the revision ``put`` returns and whether ``delete`` removed a key).

When a transaction fails, the wrapper tells a fenced failure from an
ordinary compare-and-swap conflict by reading the key: if it still has the
token's revision now, it had it when the transaction ran (it could not have
come back), so the caller's own compare failed and ``txn`` returns False as
usual; otherwise the wrapper raises :class:`pfs.errors.NotMaster`. That
error is never a conflict to retry: CAS loops (``pps.records.update_record``)
raise it instead of spinning, and ``on_fenced`` (the daemon: exit with
status 3, ``tusk.election.exit_on_lost``) runs once. After the first fenced
failure every write is refused without a round trip.

Not fenced: reads (they change nothing), and lease calls. ``grant_lease`` and
``keepalive`` write no key; ``revoke_lease`` deletes only the keys put under
that lease by their holder (the daemon's own datum claims), which cannot be
made conditional on etcd and only gives up what the old master held. A write
with a lease (``Put(key, value, lease)``) is an ordinary write: fenced.

Cost: one more compare per transaction, evaluated by the store (an indexed
lookup in SQLite; a field of the same Txn request on etcd); ``put`` and
``delete`` become one-op transactions (the same single round trip). A failed
transaction costs one extra ``get`` to classify it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence

from pfs.errors import NotMaster, TuskError
from pfs.metadata import (
    RANGE_PAGE,
    Compare,
    Delete,
    KeyValue,
    MetadataStore,
    Op,
    Put,
    ReadResult,
    TxnResult,
    Watch,
)


class FencedMetadataStore:
    """A :class:`~pfs.metadata.MetadataStore` whose writes hold only while
    ``key`` still has the revision ``token`` (see the module docstring).

    Args:
        inner: the store to write through (closed by :meth:`close`).
        key: the key held by this process (the master key).
        token: that key's ``mod_revision`` when it was taken (the fencing token).
        on_fenced: called once, with a reason, by the first write refused
            because the key changed; it may exit the process. The write then
            raises :class:`~pfs.errors.NotMaster`.
    """

    def __init__(self, inner: MetadataStore, key: str, token: int,
                 on_fenced: Callable[[str], None] | None = None) -> None:
        if token <= 0:
            raise ValueError(f"a fencing token is a positive revision, got {token}")
        self.inner = inner
        self.key = key
        self.token = token
        self._fence = Compare(key, token)
        self._on_fenced = on_fenced
        self._lock = threading.Lock()
        self._fenced = False

    @property
    def fenced(self) -> bool:
        """Whether a write has been refused (every later one is too)."""
        return self._fenced

    def _refuse(self) -> NotMaster:
        """Record the loss (calling ``on_fenced`` the first time) and return the error."""
        with self._lock:
            first, self._fenced = not self._fenced, True
        if first and self._on_fenced is not None:
            try:
                kv = self.inner.get(self.key)
                now = "deleted" if kv is None else f"at revision {kv.mod_revision}"
            except TuskError as exc:
                now = f"unknown: {exc}"
            self._on_fenced(f"this daemon is no longer master: a write was refused because "
                            f"{self.key} changed (taken at revision {self.token}, now {now})")
        return NotMaster(self.key, self.token)

    def _still_held(self) -> bool:
        """After a failed transaction: did the fence hold when it ran?

        If the key has the token's revision now, it had it then too: once it
        changes it never returns to an old revision.
        """
        kv = self.inner.get(self.key)
        return kv is not None and kv.mod_revision == self.token

    def _apply(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        if self._fenced:
            raise self._refuse()
        result = self.inner.txn_result([*compares, self._fence], ops)
        if not result.succeeded and not self._still_held():
            raise self._refuse()
        return result

    # -- writes: fenced --------------------------------------------------------

    def txn_result(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        """The transaction with the fence added.

        Raises:
            NotMaster: the key is no longer this holder's; nothing was written.
        """
        return self._apply(compares, ops)

    def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> bool:
        """False only when one of the caller's compares failed.

        Raises:
            NotMaster: the key is no longer this holder's; nothing was written.
        """
        return self._apply(compares, ops).succeeded

    def put(self, key: str, value: bytes, lease: int = 0) -> int:
        result = self._apply((), [Put(key, value, lease)])
        if not result.succeeded:  # no compare of the caller's: only the fence can fail
            raise self._refuse()
        return result.revision

    def delete(self, key: str) -> bool:
        result = self._apply((), [Delete(key)])
        if not result.succeeded:
            raise self._refuse()
        return result.deleted > 0

    # -- reads and leases: passed through ----------------------------------------

    def get(self, key: str) -> KeyValue | None:
        return self.inner.get(key)

    def range(self, prefix: str, start_after: str | None = None,
              limit: int | None = None) -> Iterator[KeyValue]:
        return self.inner.range(prefix, start_after, limit)

    def read_many(self, keys: Sequence[str], prefixes: Sequence[str] = (),
                  range_limit: int = RANGE_PAGE) -> ReadResult:
        return self.inner.read_many(keys, prefixes, range_limit)

    def revision(self) -> int:
        return self.inner.revision()

    def watch(self, prefix: str, start_revision: int | None = None) -> Watch:
        return self.inner.watch(prefix, start_revision)

    def grant_lease(self, ttl: float) -> int:
        return self.inner.grant_lease(ttl)

    def keepalive(self, lease: int) -> None:
        self.inner.keepalive(lease)

    def revoke_lease(self, lease: int) -> None:
        self.inner.revoke_lease(lease)

    def close(self) -> None:
        self.inner.close()

    def describe(self) -> str:
        return self.inner.describe()
