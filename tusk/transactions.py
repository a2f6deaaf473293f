"""Transactions: requests queued by ID and run together (``start|finish transaction``).

Pachyderm's model (reference 1.4): ``start transaction`` returns an ID; while a
request carries it in the gRPC metadata ``pach-transaction``, the supported
requests are recorded instead of run, and ``finish transaction`` runs them in
order. Every commit started in one transaction gets the transaction's
commit-set ID in one metadata transaction, so a pipeline reading several of
those repos runs one job for all of them.

Before anything runs, every request is checked against the state the earlier
ones leave (:func:`preflight`: repos, branches, started commits, pipelines),
so a bad request fails the whole transaction with nothing changed.

What is stored (metadata, small records)::

    transactions/<id>                 {"id", "started", "commit_set"}
    transaction_ops/<id>/<seq:06d>    {"method", "request" (the request message, base64)}

Finishing replays each recorded request through the same servicer method
that would have run it (without the transaction metadata), so a queued
request behaves exactly as the direct one. The start-commit requests are run
together, at the position of the last of them (one commit set).

A request that still fails while running (a race with another client, a
store outage) stops the transaction there, and the requests already applied
are undone, newest first: before each request runs, its *undoer* (registered
per method beside its checker) records how to put back what it changes (a
created repo or branch is deleted, a moved or deleted branch gets its head
and provenance back, the started commits are dropped, a new pipeline is
deleted). Deleting a repo and finishing or squashing a commit cannot be
undone; the error names any such request that had run.
"""

from __future__ import annotations

import base64
import functools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc

from pfs import errors
from pfs.metadata import Compare, Delete, MetadataStore

#: The gRPC metadata key naming the caller's transaction (Pachyderm's).
METADATA_KEY = "pach-transaction"

_PREFIX = "transactions/"
_OPS = "transaction_ops/"


@dataclass
class TxnRecord:
    id: str
    started: float
    commit_set: str
    requests: list[str] = field(default_factory=list)


def transaction_id(ctx: grpc.ServicerContext | None) -> str:
    """The transaction a call belongs to ("" for none)."""
    if ctx is None:
        return ""
    for key, value in ctx.invocation_metadata() or ():
        if key == METADATA_KEY:
            return str(value)
    return ""


class TransactionLog:
    """The transactions of one deployment, in its metadata store."""

    def __init__(self, meta: MetadataStore) -> None:
        self.meta = meta
        self._lock = threading.Lock()

    def start(self) -> TxnRecord:
        rec = TxnRecord(id=uuid.uuid4().hex, started=time.time(), commit_set=uuid.uuid4().hex)
        self.meta.put(_PREFIX + rec.id, json.dumps(
            {"id": rec.id, "started": rec.started, "commit_set": rec.commit_set}).encode())
        return rec

    def get(self, txn_id: str) -> TxnRecord:
        kv = self.meta.get(_PREFIX + txn_id) if txn_id and "/" not in txn_id else None
        if kv is None:
            raise errors.NotFound(
                f"transaction {txn_id} not found (it was finished or deleted): list them with "
                "`tusk list transaction`, or stop using it with `tusk stop transaction`")
        d = json.loads(kv.value)
        rec = TxnRecord(id=d["id"], started=d["started"], commit_set=d["commit_set"])
        rec.requests = [_describe(m, r) for m, r in self.ops(txn_id)]
        return rec

    def all(self) -> Iterator[TxnRecord]:
        for kv in self.meta.range(_PREFIX):
            yield self.get(kv.key[len(_PREFIX):])

    def append(self, txn_id: str, method: str, request: Any) -> None:
        self.get(txn_id)
        with self._lock:
            seq = sum(1 for _ in self.meta.range(f"{_OPS}{txn_id}/"))
            body = {"method": method,
                    "request": base64.b64encode(request.SerializeToString()).decode()}
            self.meta.put(f"{_OPS}{txn_id}/{seq:06d}", json.dumps(body).encode())

    def ops(self, txn_id: str) -> list[tuple[str, bytes]]:
        out = []
        for kv in self.meta.range(f"{_OPS}{txn_id}/"):
            d = json.loads(kv.value)
            out.append((d["method"], base64.b64decode(d["request"])))
        return out

    def delete(self, txn_id: str) -> None:
        self.get(txn_id)
        keys = [kv.key for kv in self.meta.range(f"{_OPS}{txn_id}/")]
        for i in range(0, len(keys), 100):
            self.meta.txn([], [Delete(k) for k in keys[i:i + 100]])
        self.meta.delete(_PREFIX + txn_id)

    def claim(self, txn_id: str) -> TxnRecord:
        """Take the transaction for finishing: it is removed, so no request
        joins it while it runs and it cannot be finished twice."""
        rec = self.get(txn_id)
        kv = self.meta.get(_PREFIX + txn_id)
        if kv is None or not self.meta.txn([Compare(kv.key, kv.mod_revision)],
                                           [Delete(kv.key)]):
            raise errors.NotFound(f"transaction {txn_id} not found (finished meanwhile?)")
        return rec

    def drop_ops(self, txn_id: str) -> None:
        keys = [kv.key for kv in self.meta.range(f"{_OPS}{txn_id}/")]
        for i in range(0, len(keys), 100):
            self.meta.txn([], [Delete(k) for k in keys[i:i + 100]])


def _describe(method: str, data: bytes) -> str:
    """``StartCommit images@master``: a queued request for humans."""
    return method if not data else f"{method} ({len(data)} bytes)"


class TransactionHub:
    """The transaction log of one deployment and the handlers that replay its
    requests; shared by every servicer of one process (:func:`hub_for`)."""

    def __init__(self, meta: MetadataStore) -> None:
        self.log = TransactionLog(meta)
        self.handlers: dict[str, Callable[[bytes, Any], Any]] = {}
        self.checkers: dict[str, Checker] = {}
        self.undoers: dict[str, Undoer] = {}
        self.start_commits: Callable[[list[bytes], str], None] | None = None
        #: Drops the commits a transaction started (the undo of start_commits).
        self.drop_commit_set: Callable[[str], None] | None = None

    def register(self, servicer: Any, message_types: dict[str, type]) -> None:
        """Replay requests of ``servicer``'s transactional methods through it."""
        for method, cls in message_types.items():
            fn = getattr(servicer, method)

            def run(data: bytes, ctx: Any, _fn: Any = fn, _cls: Any = cls) -> Any:
                req = _cls()
                req.ParseFromString(data)
                return _fn(req, ctx)

            self.handlers[method] = run

    def finish(self, txn_id: str) -> TxnRecord:
        if self.start_commits is None:
            raise errors.FailedPrecondition("this server cannot start commits in a transaction")
        return replay(self.log, txn_id, self.handlers, self.start_commits, self.checkers,
                      undoers=self.undoers, drop_commit_set=self.drop_commit_set)


_hubs: dict[int, TransactionHub] = {}
_hubs_lock = threading.Lock()


def hub_for(meta: MetadataStore) -> TransactionHub:
    """The process's hub for ``meta`` (one per metadata store)."""
    with _hubs_lock:
        hub = _hubs.get(id(meta))
        if hub is None or hub.log.meta is not meta:
            hub = _hubs[id(meta)] = TransactionHub(meta)
        return hub


_F = TypeVar("_F", bound=Callable[..., Any])


def transactional(placeholder: Callable[[Any, TxnRecord, Any], Any],
                  direct: Callable[[Any], bool] = lambda req: False) -> Callable[[_F], _F]:
    """Make a servicer method join the caller's transaction when it names one.

    The servicer needs a ``txns`` attribute (a :class:`TransactionHub`, or
    None when transactions are off). Within a transaction the request is
    recorded and ``placeholder(servicer, txn, request)`` is answered instead
    (e.g. the commit a queued StartCommit will create). Requests for which
    ``direct(request)`` holds run at once even then (a dry run changes nothing).
    """
    def deco(fn: _F) -> _F:
        @functools.wraps(fn)
        def wrapper(self: Any, request: Any, context: Any) -> Any:
            txn_id = transaction_id(context)
            hub: TransactionHub | None = getattr(self, "txns", None)
            if not txn_id or hub is None or direct(request):
                return fn(self, request, context)
            try:
                hub.log.append(txn_id, fn.__name__, request)
                return placeholder(self, hub.log.get(txn_id), request)
            except Exception as exc:  # the same status mapping as every handler
                from tusk.server import _abort

                _abort(context, exc)
                raise
        wrapper.transactional = True  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]
    return deco


class _Replay:
    """A stand-in ServicerContext for replaying a request: no metadata, and an
    abort that raises what the handler would have sent as a status."""

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise _Aborted(code, details)

    def set_trailing_metadata(self, md: Any) -> None:
        pass

    def is_active(self) -> bool:
        return True

    def add_callback(self, cb: Callable[[], None]) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None


class _Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


@dataclass
class Preview:
    """What a transaction's earlier requests will have done, for checking the
    later ones before anything runs (a repo created by request 1 exists for
    request 2). Names not in the maps are looked up in the stores."""

    commit_set: str
    repos: dict[str, bool] = field(default_factory=dict)
    branches: dict[tuple[str, str], bool] = field(default_factory=dict)
    started: set[tuple[str, str]] = field(default_factory=set)
    pipelines: dict[str, bool] = field(default_factory=dict)


Checker = Callable[[bytes, Preview], None]
#: Given a queued request, just before it runs: a function putting back what
#: it is about to change, or None when there is nothing to put back.
Undoer = Callable[[bytes], "Callable[[], None] | None"]


def preflight(rec: TxnRecord, ops: list[tuple[str, bytes]], checkers: dict[str, Checker]) -> None:
    """Check every request against the state the earlier ones leave.

    Raises:
        FailedPrecondition: naming the first request that would fail; then
            nothing has run and the transaction is still open.
    """
    preview = Preview(commit_set=rec.commit_set)
    for i, (method, data) in enumerate(ops, 1):
        check = checkers.get(method)
        if check is None:
            raise errors.InvalidArgument(f"{method} cannot run in a transaction")
        try:
            check(data, preview)
        except errors.TuskError as exc:
            raise errors.FailedPrecondition(
                f"transaction {rec.id} was not applied, nothing changed: its request {i} "
                f"({method}) would fail: {exc}; fix it and queue the request again in a new "
                f"transaction, or delete this one (`tusk delete transaction {rec.id}`)"
            ) from None


def replay(log: TransactionLog, txn_id: str,
           handlers: dict[str, Callable[[bytes, Any], Any]],
           start_commits: Callable[[list[bytes], str], None],
           checkers: dict[str, Checker] | None = None, *,
           undoers: dict[str, Undoer] | None = None,
           drop_commit_set: Callable[[str], None] | None = None) -> TxnRecord:
    """Run a transaction's requests (see the module docstring for the order),
    after checking them all (:func:`preflight`) when ``checkers`` are given.

    Args:
        handlers: method name -> ``f(request bytes, context)`` running it.
        start_commits: runs every StartCommit request together, in one commit
            set with the given ID.
        undoers: method name -> :data:`Undoer`; a request whose method has
            none cannot be undone.
        drop_commit_set: undoes ``start_commits``.

    Raises:
        FailedPrecondition: a request failed; the ones applied before it were
            undone (the message says which could not be).
    """
    if checkers is not None:
        preflight(log.get(txn_id), log.ops(txn_id), checkers)
    rec = log.claim(txn_id)
    ops = log.ops(txn_id)
    starts = [i for i, (m, _) in enumerate(ops) if m == "StartCommit"]
    last_start = starts[-1] if starts else -1
    done: list[str] = []
    # (method, undo or None), in the order applied
    journal: list[tuple[str, Callable[[], None] | None]] = []
    method = ""
    try:
        for i, (method, data) in enumerate(ops):
            if method == "StartCommit":
                if i == last_start:
                    start_commits([ops[j][1] for j in starts], rec.commit_set)
                    done.extend(["StartCommit"] * len(starts))
                    undo_starts = None
                    if drop_commit_set is not None:
                        def undo_starts(set_id: str = rec.commit_set) -> None:
                            assert drop_commit_set is not None
                            drop_commit_set(set_id)
                    journal.append(("StartCommit", undo_starts))
                continue
            handler = handlers.get(method)
            if handler is None:
                raise errors.InvalidArgument(f"{method} cannot run in a transaction")
            undoer = (undoers or {}).get(method)
            undo = undoer(data) if undoer is not None else None
            handler(data, _Replay())
            done.append(method)
            journal.append((method, undo))
    except _Aborted as exc:
        raise _failed(rec, method, exc.details, _undo(journal)) from None
    except errors.TuskError as exc:
        raise _failed(rec, method, str(exc), _undo(journal)) from None
    finally:
        log.drop_ops(txn_id)
    rec.requests = done
    return rec


def _undo(journal: list[tuple[str, Callable[[], None] | None]]) -> list[str]:
    """Undo applied requests, newest first; returns what could not be undone."""
    kept: list[str] = []
    for method, undo in reversed(journal):
        if undo is None:
            kept.append(f"{method} (cannot be undone)")
            continue
        try:
            undo()
        except Exception as exc:  # keep undoing the rest; report this one
            kept.append(f"{method} (undo failed: {exc})")
    return kept


def _failed(rec: TxnRecord, method: str, why: str, kept: list[str]) -> errors.FailedPrecondition:
    if kept:
        tail = ("the requests applied before it were undone except: " + ", ".join(kept)
                + "; check those by hand")
    else:
        tail = "the requests applied before it were undone; nothing changed"
    return errors.FailedPrecondition(
        f"transaction {rec.id} stopped at its {method} request: {why} ({tail})")


__all__ = [
    "METADATA_KEY",
    "Checker",
    "Preview",
    "TransactionHub",
    "TransactionLog",
    "TxnRecord",
    "Undoer",
    "hub_for",
    "preflight",
    "replay",
    "transaction_id",
    "transactional",
]

