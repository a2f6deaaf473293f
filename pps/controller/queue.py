"""The work queue of one pipeline: units of a job's datums, claimed by workers.

A unit is in exactly one of three places (keys in :mod:`pps.keys`):
``queue/`` (waiting), ``claims/`` (held by a worker, on that worker's lease)
or ``done/`` (its results object is written). Every move is one metadata
transaction guarded by compare-and-swap, so two workers never hold one unit
and a worker that lost its claim (lease expired, unit handed to another)
cannot mark it done.

A unit that comes back without results (its worker raised, or died and its
lease expired) is queued again, at most ``max_tries`` attempts in all; then it
is marked done with the last error (:class:`UnitDone` ``error``) and the
master fails the job with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from pfs.metadata import Compare, Delete, MetadataStore, Op, Put
from pps import keys
from pps.records import UnitDone, UnitTicket

#: Attempts a unit gets before its job fails (each loses a worker or raises).
MAX_UNIT_TRIES = 3
_BATCH = 100  # keys per transaction: etcd rejects large ones


@dataclass(frozen=True)
class Claim:
    """A unit a worker holds: what it needs to finish or give it back."""

    job: str
    unit: int
    attempt: int          # 0-based: how many attempts came before this one
    key: str
    mod_revision: int     # the claim key's revision, checked when the unit is done


class WorkQueue:
    """The queue of one pipeline's units in the metadata store."""

    def __init__(self, meta: MetadataStore, pipeline: str, max_tries: int = MAX_UNIT_TRIES) -> None:
        self.meta = meta
        self.pipeline = pipeline
        self.max_tries = max_tries

    def enqueue(self, job: str, units: int) -> None:
        """Queue units ``0..units-1`` of ``job`` (first attempts)."""
        first = UnitTicket().encode()
        ops: list[Op] = [Put(keys.queued(self.pipeline, job, n), first) for n in range(units)]
        for i in range(0, len(ops), _BATCH):
            self.meta.txn([], ops[i:i + _BATCH])

    def claim(self, worker: str, lease: int) -> Claim | None:
        """Take the first queued unit of any job of this pipeline, or None."""
        for kv in self.meta.range(keys.queue_prefix(self.pipeline), limit=16):
            job, n = keys.unit_of(kv.key)
            ticket = UnitTicket.decode(kv.value)
            claim_key = keys.claim(self.pipeline, job, n)
            held = UnitTicket(tries=ticket.tries, worker=worker, error=ticket.error)
            # The try is counted outside the claim too: a claim's key goes with
            # its lease when the worker dies, and the count must survive it.
            tried = UnitTicket(tries=ticket.tries + 1, worker=worker).encode()
            ok = self.meta.txn([Compare(kv.key, kv.mod_revision), Compare(claim_key, 0)],
                               [Delete(kv.key), Put(claim_key, held.encode(), lease=lease),
                                Put(keys.attempts(self.pipeline, job, n), tried)])
            if ok:
                got = self.meta.get(claim_key)
                if got is None:  # lease ended at once: the master re-queues it
                    continue
                return Claim(job, n, ticket.tries, claim_key, got.mod_revision)
        return None

    def still_held(self, c: Claim) -> bool:
        """True while ``c`` is this worker's claim (not expired, not handed on)."""
        kv = self.meta.get(c.key)
        return kv is not None and kv.mod_revision == c.mod_revision

    def complete(self, c: Claim, counts: tuple[int, int, int] = (0, 0, 0)) -> bool:
        """Mark the unit done with attempt ``c.attempt``'s results and their
        ``(processed, failed, recovered)`` counts; False (and nothing written)
        when the claim was lost meanwhile."""
        done = UnitDone(c.attempt, processed=counts[0], failed=counts[1], recovered=counts[2])
        return self.meta.txn(
            [Compare(c.key, c.mod_revision), Compare(keys.done(self.pipeline, c.job, c.unit), 0)],
            [Delete(c.key), Put(keys.done(self.pipeline, c.job, c.unit), done.encode())])

    def give_back(self, c: Claim, error: str) -> None:
        """The attempt failed without results: queue the unit again (one try used)."""
        ticket = UnitTicket(tries=c.attempt + 1, error=error)
        self.meta.txn([Compare(c.key, c.mod_revision)],
                      [Delete(c.key), self._next(c.job, c.unit, ticket)])

    def release(self, c: Claim) -> None:
        """Give the unit back without using a try (the job ended or the worker stops)."""
        self.meta.txn([Compare(c.key, c.mod_revision)], [Delete(c.key)])

    def done_units(self, job: str) -> Iterator[tuple[int, UnitDone]]:
        """``(unit, record)`` of every finished unit of ``job``, in unit order."""
        for kv in self.meta.range(keys.done_prefix(self.pipeline, job)):
            yield keys.unit_of(kv.key)[1], UnitDone.decode(kv.value)

    def requeue_lost(self, job: str, units: int) -> int:
        """Queue again every unit that is neither queued, claimed nor done
        (its worker died: the claim's lease ended); a unit with no tries left
        is marked done with the error instead. Returns how many units moved."""
        got = self.meta.read_many(
            [], [keys.queue_prefix(self.pipeline, job), keys.claim_prefix(self.pipeline, job),
                 keys.done_prefix(self.pipeline, job)], range_limit=max(1, units))
        if sum(len(kvs) for kvs in got.ranges.values()) >= units and not got.more:
            return 0
        moved = 0
        for n in range(units):
            q, c, d = (keys.queued(self.pipeline, job, n), keys.claim(self.pipeline, job, n),
                       keys.done(self.pipeline, job, n))
            if self.meta.get(q) or self.meta.get(c) or self.meta.get(d):
                continue
            kv = self.meta.get(keys.attempts(self.pipeline, job, n))
            tries = UnitTicket.decode(kv.value).tries if kv else 0
            error = "its worker stopped answering (died, or lost its lease) while running it"
            ticket = UnitTicket(tries=tries, error=error)
            moved += self.meta.txn([Compare(q, 0), Compare(c, 0), Compare(d, 0)],
                                   [self._next(job, n, ticket)])
        return moved

    def _next(self, job: str, n: int, ticket: UnitTicket) -> Op:
        """The write that hands a unit whose attempt failed to its next try, or
        ends it (done, with the error) when it has none left."""
        if ticket.tries >= self.max_tries:
            return Put(keys.done(self.pipeline, job, n),
                       UnitDone(attempt=-1, tries=ticket.tries, error=ticket.error).encode())
        return Put(keys.queued(self.pipeline, job, n), ticket.encode())

    def drop(self, job: str) -> None:
        """Remove every queued unit of ``job`` (it was stopped or failed)."""
        ks = [kv.key for kv in self.meta.range(keys.queue_prefix(self.pipeline, job))]
        for i in range(0, len(ks), _BATCH):
            self.meta.txn([], [Delete(k) for k in ks[i:i + _BATCH]])

