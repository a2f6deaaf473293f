"""The etcd metadata store: :class:`~pfs.metadata.MetadataStore` on a real etcd (3.4+).

A thin adapter: the store's data model *is* etcd's, so every operation is one
etcd RPC. Revisions are etcd's revisions (``mod_revision`` / ``create_revision``;
the global revision is shared by every user of the cluster, so revisions seen
through a prefix increase strictly but with gaps). ``txn`` is an etcd Txn
comparing ``mod_revision`` (absence: ``create_revision == 0``); ``watch`` is a
native watch stream from ``start_revision``; leases are etcd leases, whose TTL
is whole seconds and at least etcd's minimum (about 2 s with default flags).

Client choice: we call etcd's gRPC API directly through the generated stubs
that ``etcd-sdk-python`` ships (``pyetcd.etcdrpc``), not through its
high-level client, because that client (a) marks an endpoint "failed" for 300 s
after one UNAVAILABLE, so a store would not recover when etcd comes back,
(b) multiplexes every watch on one shared stream and drops them all, without
resuming, when the stream breaks, and (c) lets raw ``grpc.RpcError`` escape
from some calls. With the stubs every call has a deadline, errors map to
:mod:`pfs.errors` in one function, and each watch resumes from its last
revision after a reconnect.

Failure behaviour: each call waits for a connection for at most ``timeout``
seconds (``wait_for_ready``, so a call made while etcd restarts succeeds once
it is back), then raises :class:`~pfs.errors.Unavailable`. The channel
reconnects on its own with a short backoff (at most 1 s), so the same store
object works again as soon as etcd does. A watch keeps retrying (resuming from
the next revision it needs) until cancelled. As with any etcd client, a write
that times out may or may not have been applied: callers re-read, and
compare-and-swap makes such retries safe.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import grpc  # etcd's own transport; see the module docstring
from pyetcd import etcdrpc

from pfs.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    TuskError,
    Unavailable,
)
from pfs.metadata import (
    RANGE_PAGE,
    Compare,
    Event,
    KeyValue,
    Op,
    Put,
    ReadResult,
    RevisionCompacted,
    TxnResult,
    Watch,
    validate_read,
    validate_txn,
)

_HINT = "is etcd running? start it with deploy/services.sh up"

# Codes meaning "cannot reach the server (now)": the caller may retry later.
_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    # A range page of large values may exceed grpc's 4 MiB default.
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    # Reconnect quickly after an outage: grpc's default backoff grows to
    # 120 s, which would keep a store "down" long after etcd is back.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # Notice a dead (e.g. frozen) server under an open watch stream. etcd
    # rejects pings more often than every 5 s, and pings without streams.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 0),
]


def _bytes_prefix_end(prefix: bytes) -> bytes:
    """etcd's range_end for "every key starting with prefix" (``\\0`` = to the end)."""
    p = prefix.rstrip(b"\xff")
    if not p:
        return b"\0"
    return p[:-1] + bytes([p[-1] + 1])


class _EtcdWatch:
    """One etcd watch stream, resumed from the next needed revision after errors."""

    def __init__(self, store: EtcdMetadataStore, key: bytes, range_end: bytes,
                 start_revision: int) -> None:
        self._store = store
        self._key = key
        self._range_end = range_end
        self._next_rev = start_revision
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._call: Any = None
        self._attempt_done: threading.Event | None = None

    def cancel(self) -> None:
        self._cancelled.set()
        with self._lock:
            call, done = self._call, self._attempt_done
        if done is not None:
            done.set()
        if call is not None:
            call.cancel()

    def _requests(self, create: Any, done: threading.Event) -> Iterator[Any]:
        yield create
        # Keep the send side open: etcd ends the stream when the client
        # half-closes. ``done`` is per attempt so no thread outlives its call.
        done.wait()

    def __iter__(self) -> Iterator[Event]:
        store = self._store
        backoff = 0.05
        while not self._cancelled.is_set():
            create = etcdrpc.WatchRequest(create_request=etcdrpc.WatchCreateRequest(
                key=self._key, range_end=self._range_end, start_revision=self._next_rev))
            done = threading.Event()
            call = store._watch_stub.Watch(self._requests(create, done), wait_for_ready=True)
            with self._lock:
                self._call, self._attempt_done = call, done
            if self._cancelled.is_set():  # cancel() ran before _call was set
                call.cancel()
            try:
                for resp in call:
                    if resp.compact_revision:
                        raise RevisionCompacted(self._next_rev, resp.compact_revision - 1)
                    if resp.canceled:
                        break  # server dropped the watch: re-create it
                    if not resp.events:
                        continue
                    for ev in resp.events:
                        yield Event("DELETE" if ev.type == 1 else "PUT",
                                    store._unkey(ev.kv.key),
                                    b"" if ev.type == 1 else bytes(ev.kv.value),
                                    ev.kv.mod_revision)
                    # etcd sends a revision's events in one response, so
                    # resuming after the last one never splits a txn.
                    self._next_rev = resp.events[-1].kv.mod_revision + 1
                    backoff = 0.05
            except grpc.RpcError as exc:
                if self._cancelled.is_set():
                    return
                if exc.code() not in _UNREACHABLE and exc.code() != grpc.StatusCode.CANCELLED:
                    raise store._error(exc) from None
                # Unreachable: wait a little and resume from _next_rev.
                self._cancelled.wait(backoff)
                backoff = min(1.0, backoff * 2)
            finally:
                done.set()
                call.cancel()


class EtcdMetadataStore:
    """A :class:`~pfs.metadata.MetadataStore` on etcd (see the module docstring).

    Args:
        endpoint: ``host:port`` of an etcd client URL (plain HTTP/2).
        prefix: prepended to every key, so several tusk instances or tests can
            share one etcd. Keys and events are returned without it.
        timeout: seconds any single call may take (including waiting for a
            connection) before :class:`~pfs.errors.Unavailable` is raised.
    """

    def __init__(self, endpoint: str, prefix: str = "", *, timeout: float = 3.0) -> None:
        self._endpoint = endpoint
        self._prefix = prefix
        self._p = prefix.encode()
        self._timeout = timeout
        self._channel = grpc.insecure_channel(endpoint, options=_CHANNEL_OPTIONS)
        self._kv = etcdrpc.KVStub(self._channel)
        self._lease = etcdrpc.LeaseStub(self._channel)
        self._watch_stub = etcdrpc.WatchStub(self._channel)
        self._watches: weakref.WeakSet[_EtcdWatch] = weakref.WeakSet()
        self._closed = False

    # -- plumbing --------------------------------------------------------------

    def _key(self, key: str) -> bytes:
        return self._p + key.encode()

    def _unkey(self, raw: bytes) -> str:
        return raw[len(self._p):].decode()

    def _error(self, exc: grpc.RpcError) -> TuskError:
        """The one place grpc errors become tusk errors."""
        code = exc.code()
        detail = exc.details() or str(code)
        if code in _UNREACHABLE:
            return Unavailable("etcd", f"{self._endpoint}: {detail}", hint=_HINT)
        if code == grpc.StatusCode.NOT_FOUND:
            return NotFound(f"etcd: {detail}")
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return InvalidArgument(f"etcd: {detail}")
        if code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.OUT_OF_RANGE):
            return FailedPrecondition(f"etcd: {detail}")
        if code == grpc.StatusCode.CANCELLED and self._closed:
            return FailedPrecondition(f"metadata store {self.describe()} is closed")
        return TuskError(f"etcd at {self._endpoint} failed: {code.name}: {detail}")

    def _call(self, method: Any, request: Any) -> Any:
        if self._closed:
            raise FailedPrecondition(f"metadata store {self.describe()} is closed")
        try:
            return method(request, timeout=self._timeout, wait_for_ready=True)
        except grpc.RpcError as exc:
            raise self._error(exc) from None
        except ValueError as exc:  # grpc raises this on a closed channel
            raise FailedPrecondition(f"metadata store {self.describe()}: {exc}") from None

    @staticmethod
    def _to_kv(kv: Any, key: str) -> KeyValue:
        return KeyValue(key, bytes(kv.value), kv.mod_revision, kv.create_revision, kv.lease)

    @staticmethod
    def _op(key: bytes, op: Op) -> Any:
        if isinstance(op, Put):
            return etcdrpc.RequestOp(request_put=etcdrpc.PutRequest(
                key=key, value=bytes(op.value), lease=op.lease))
        return etcdrpc.RequestOp(request_delete_range=etcdrpc.DeleteRangeRequest(key=key))

    # -- MetadataStore ---------------------------------------------------------

    def get(self, key: str) -> KeyValue | None:
        resp = self._call(self._kv.Range, etcdrpc.RangeRequest(key=self._key(key)))
        return self._to_kv(resp.kvs[0], key) if resp.kvs else None

    def read_many(self, keys: Sequence[str], prefixes: Sequence[str] = (),
                  range_limit: int = RANGE_PAGE) -> ReadResult:
        validate_read(keys, prefixes, range_limit)
        unique = list(dict.fromkeys(keys))
        reads = [etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(key=self._key(k)))
                 for k in unique]
        for prefix in prefixes:
            start = self._key(prefix)
            reads.append(etcdrpc.RequestOp(request_range=etcdrpc.RangeRequest(
                key=start, range_end=_bytes_prefix_end(start), limit=range_limit,
                sort_order=etcdrpc.RangeRequest.ASCEND, sort_target=etcdrpc.RangeRequest.KEY)))
        # A Txn without compares runs ``success``: all reads in one round
        # trip, at one revision (etcd serialises a txn like one write).
        resp = self._call(self._kv.Txn, etcdrpc.TxnRequest(success=reads))
        # One response per request op, in order: ``unique``'s gets, then the ranges.
        answers = [r.response_range for r in resp.responses]
        found = {k: self._to_kv(a.kvs[0], k) if a.kvs else None
                 for k, a in zip(unique, answers[:len(unique)], strict=True)}
        ranges: dict[str, list[KeyValue]] = {}
        more: set[str] = set()
        for prefix, a in zip(prefixes, answers[len(unique):], strict=True):
            ranges[prefix] = [self._to_kv(kv, self._unkey(kv.key)) for kv in a.kvs]
            if a.more:
                more.add(prefix)
        return ReadResult(int(resp.header.revision), {k: found[k] for k in keys}, ranges,
                          frozenset(more))

    def range(self, prefix: str, start_after: str | None = None,
              limit: int | None = None) -> Iterator[KeyValue]:
        start = self._key(prefix)
        end = _bytes_prefix_end(start)
        if start_after is not None and start_after >= prefix:
            start = self._key(start_after) + b"\0"  # the smallest key after it
        left = limit
        while left is None or left > 0:
            page = RANGE_PAGE if left is None else min(RANGE_PAGE, left)
            # Each page is read at the then-current revision (as in the
            # SQLite backend): keys come once each, in order, not a snapshot.
            resp = self._call(self._kv.Range, etcdrpc.RangeRequest(
                key=start, range_end=end, limit=page,
                sort_order=etcdrpc.RangeRequest.ASCEND, sort_target=etcdrpc.RangeRequest.KEY))
            for kv in resp.kvs:
                yield self._to_kv(kv, self._unkey(kv.key))
            if not resp.more or len(resp.kvs) < page:
                return
            if left is not None:
                left -= len(resp.kvs)
            start = bytes(resp.kvs[-1].key) + b"\0"

    def put(self, key: str, value: bytes, lease: int = 0) -> int:
        resp = self._call(self._kv.Put, etcdrpc.PutRequest(
            key=self._key(key), value=bytes(value), lease=lease))
        return int(resp.header.revision)

    def delete(self, key: str) -> bool:
        resp = self._call(self._kv.DeleteRange, etcdrpc.DeleteRangeRequest(key=self._key(key)))
        return bool(resp.deleted)

    def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> bool:
        return self.txn_result(compares, ops).succeeded

    def txn_result(self, compares: Sequence[Compare], ops: Sequence[Op]) -> TxnResult:
        validate_txn(compares, ops)
        cmps = []
        for c in compares:
            if c.mod_revision == 0:
                # "Absent" is create_revision == 0 (a missing key compares
                # as the zero KeyValue in etcd).
                cmps.append(etcdrpc.Compare(result=etcdrpc.Compare.EQUAL,
                                            target=etcdrpc.Compare.CREATE,
                                            key=self._key(c.key), create_revision=0))
            else:
                cmps.append(etcdrpc.Compare(result=etcdrpc.Compare.EQUAL,
                                            target=etcdrpc.Compare.MOD,
                                            key=self._key(c.key), mod_revision=c.mod_revision))
        resp = self._call(self._kv.Txn, etcdrpc.TxnRequest(
            compare=cmps, success=[self._op(self._key(op.key), op) for op in ops]))
        if not resp.succeeded:
            return TxnResult(False, int(resp.header.revision))
        # One response per op, in order; only deletes say how many keys went.
        deleted = sum(int(r.response_delete_range.deleted) for r, op in
                      zip(resp.responses, ops, strict=True) if not isinstance(op, Put))
        return TxnResult(True, int(resp.header.revision), deleted)

    def revision(self) -> int:
        resp = self._call(self._kv.Range, etcdrpc.RangeRequest(
            key=self._p or b"\0", count_only=True))
        return int(resp.header.revision)

    def watch(self, prefix: str, start_revision: int | None = None) -> Watch:
        # Fix the start now (not at first iteration) so events written between
        # watch() and iter() are not lost.
        start = self.revision() + 1 if start_revision is None else max(1, start_revision)
        key = self._key(prefix)
        w = _EtcdWatch(self, key, _bytes_prefix_end(key), start)
        self._watches.add(w)
        return w

    def grant_lease(self, ttl: float) -> int:
        if ttl <= 0:
            raise InvalidArgument(f"lease ttl must be > 0, got {ttl}")
        resp = self._call(self._lease.LeaseGrant,
                          etcdrpc.LeaseGrantRequest(TTL=max(1, math.ceil(ttl))))
        if resp.error:
            raise TuskError(f"etcd at {self._endpoint} refused a lease: {resp.error}")
        return int(resp.ID)

    def keepalive(self, lease: int) -> None:
        # One request on the bidi stream: etcd answers it before it sees the
        # client's half-close, so the response always arrives.
        def once(req: Any, **kw: Any) -> Any:
            for resp in self._lease.LeaseKeepAlive(iter([req]), **kw):
                return resp
            return None  # stream closed without an answer: treat as unknown lease

        resp = self._call(once, etcdrpc.LeaseKeepAliveRequest(ID=lease))
        if resp is None or resp.TTL <= 0:
            raise NotFound(f"lease {lease:x} not found (expired or revoked); grant a new one")

    def revoke_lease(self, lease: int) -> None:
        """Delete the lease and its keys; revoking an unknown lease is a no-op."""
        try:
            self._call(self._lease.LeaseRevoke, etcdrpc.LeaseRevokeRequest(ID=lease))
        except NotFound:
            pass

    def close(self) -> None:
        self._closed = True
        for w in list(self._watches):
            w.cancel()
        self._channel.close()

    def describe(self) -> str:
        return f"etcd://{self._endpoint}/{self._prefix}"
