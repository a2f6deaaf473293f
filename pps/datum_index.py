"""A successful job's datum index, sharded so a job updates it instead of
rewriting it.

The index says, for every datum of a job, its hash, its state, the job that
ran it, the outputs it wrote and its input files: the next job skips a datum
whose ID and hash are in it, and lineage reads it. At a million datums one
object of all of them costs seconds to read and write, and a job that
changed one file would still pay it. So the index is cut by the first 1, 2
or 3 hex characters of the datum ID (the manifest's ``chars``, by the index's
size: :func:`chars_for`) into 16, 256 or 4,096 *shards* (a datum ID is a
hash: entries spread evenly), each shard one content-addressed
object (``pps/<pipeline>/shards/<hash>``), and a job's index is a small
*manifest* (``pps/<pipeline>/<job>/datums``) naming its shards, the number of
datums and the input commits the index describes. A job that changed a few
datums writes those shards and a new manifest; every other shard is shared
with the previous job's index.

A manifest also records the input commits (by input name) and a fingerprint
of the input spec it was planned from: the next job plans only from the
difference between those commits and its own (:mod:`pps.controller.planner`).

Indexes written before sharding (one msgpack list) still read:
:meth:`DatumIndex.manifest` converts them on first use.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import blake3
import msgpack

from pfs.errors import ObjectNotFound
from pfs.objects import ObjectStore
from pps import keys
from pps.records import DatumIndexEntry

__all__ = ["SHARD_CHARS", "DatumIndex", "Manifest", "chars_for"]

#: Most hex characters of the datum ID that pick its shard (16**3 = 4,096
#: shards: about 250 datums per shard at a million).
SHARD_CHARS = 3
#: Datums per shard on average before an index takes one more character.
SHARD_FILL = 512


def chars_for(count: int) -> int:
    """How many hex characters shard an index of ``count`` datums: as few
    shards as keep them under :data:`SHARD_FILL` datums on average (a first
    job of 10,000 datums writes 256 shards, not 4,096: 10x faster)."""
    chars = 1
    while chars < SHARD_CHARS and count > SHARD_FILL * 16 ** chars:
        chars += 1
    return chars
_FORMAT = 2


@dataclass(frozen=True)
class Manifest:
    """A job's index: shard prefix -> shard object key, and what it describes.

    Attributes:
        shards: only non-empty shards are listed.
        count: datums in the index.
        commits: input name -> the commit the index's datums were planned at
            (empty for an index converted from the old format).
        fingerprint: of the input spec and salt it was planned with.
        retry: IDs of datums that did not succeed (recovered): the next job
            runs them again even though their inputs did not change.
        chars: hex characters of a datum ID naming its shard (3 in indexes
            written before it was recorded).
    """

    shards: dict[str, str] = field(default_factory=dict)
    count: int = 0
    commits: dict[str, str] = field(default_factory=dict)
    fingerprint: str = ""
    retry: tuple[str, ...] = ()
    chars: int = SHARD_CHARS

    def encode(self) -> bytes:
        data: bytes = msgpack.packb({"format": _FORMAT, "shards": self.shards,
                                     "count": self.count, "commits": self.commits,
                                     "fingerprint": self.fingerprint,
                                     "retry": list(self.retry), "chars": self.chars})
        return data

    @staticmethod
    def decode(raw: dict[str, Any]) -> Manifest:
        return Manifest(dict(raw["shards"]), int(raw["count"]), dict(raw.get("commits") or {}),
                        str(raw.get("fingerprint") or ""), tuple(raw.get("retry") or ()),
                        int(raw.get("chars") or SHARD_CHARS))


def _encode_shard(entries: Iterable[DatumIndexEntry]) -> bytes:
    data: bytes = msgpack.packb([list(e) for e in entries])
    return data


def _decode_shard(data: bytes) -> dict[str, DatumIndexEntry]:
    out: dict[str, DatumIndexEntry] = {}
    for v in msgpack.unpackb(data, raw=False, use_list=False):
        out[v[0]] = DatumIndexEntry(v[0], v[1], v[2], v[3], v[4], v[5])
    return out


class DatumIndex:
    """The datum indexes of one pipeline's jobs in the object store."""

    #: Decoded shards kept (they are immutable: keyed by content).
    CACHE = 64

    def __init__(self, objects: ObjectStore, pipeline: str) -> None:
        self.objects = objects
        self.pipeline = pipeline
        self._shards: OrderedDict[str, dict[str, DatumIndexEntry]] = OrderedDict()
        self._lock = threading.Lock()  # the master and API threads share it

    # -- reading --------------------------------------------------------------------

    def manifest(self, job: str) -> Manifest | None:
        """The index of ``job``; None when it has none (not successful)."""
        try:
            data = self.objects.get(keys.index_object(self.pipeline, job))
        except ObjectNotFound:
            return None
        raw = msgpack.unpackb(data, raw=False, use_list=False)
        if isinstance(raw, dict) and raw.get("format") == _FORMAT:
            return Manifest.decode(raw)
        # Written before sharding: one list of every entry. Shard it once.
        entries = [DatumIndexEntry.decode(v) for v in raw]
        m = self.write(None, entries, (), {}, "")
        self.objects.put(keys.index_object(self.pipeline, job), m.encode())
        return m

    def shard(self, key: str) -> dict[str, DatumIndexEntry]:
        with self._lock:
            got = self._shards.get(key)
            if got is not None:
                self._shards.move_to_end(key)
                return got
        got = _decode_shard(self.objects.get(key))
        with self._lock:
            self._shards[key] = got
            if len(self._shards) > self.CACHE:
                self._shards.popitem(last=False)
        return got

    def lookup(self, m: Manifest, ids: Iterable[str]) -> dict[str, DatumIndexEntry]:
        """The entries of ``ids`` that are in the index (reads only their shards)."""
        by_shard: dict[str, list[str]] = {}
        for i in ids:
            by_shard.setdefault(i[:m.chars], []).append(i)
        out: dict[str, DatumIndexEntry] = {}
        for prefix, wanted in by_shard.items():
            key = m.shards.get(prefix)
            if key is None:
                continue
            shard = self.shard(key)
            for i in wanted:
                e = shard.get(i)
                if e is not None:
                    out[i] = e
        return out

    def find_prefix(self, m: Manifest, prefix: str) -> Iterator[DatumIndexEntry]:
        """Entries whose ID starts with ``prefix`` (at least one character)."""
        for p in sorted(m.shards):
            if p.startswith(prefix[:m.chars]) or prefix.startswith(p):
                for e in self._read(m.shards[p]).values():
                    if e.id.startswith(prefix):
                        yield e

    def entries(self, m: Manifest) -> Iterator[DatumIndexEntry]:
        """Every entry, shard by shard (memory: one shard at a time)."""
        for p in sorted(m.shards):
            yield from self._read(m.shards[p]).values()

    def _read(self, key: str) -> dict[str, DatumIndexEntry]:
        with self._lock:
            got = self._shards.get(key)
        return got if got is not None else _decode_shard(self.objects.get(key))

    # -- writing --------------------------------------------------------------------

    def write(self, base: Manifest | None, puts: Iterable[DatumIndexEntry],
              removes: Iterable[str], commits: Mapping[str, str],
              fingerprint: str) -> Manifest:
        """A new index: ``base`` with ``puts`` added (or replaced) and
        ``removes`` taken out. Writes only the shards that change; the
        caller stores the manifest (:meth:`put_manifest`). An index that
        grew past its shard width (:func:`chars_for`) is written again whole
        with one more character."""
        puts = list(puts)
        chars = base.chars if base is not None else chars_for(len(puts))
        changes: dict[str, dict[str, DatumIndexEntry | None]] = {}
        for i in removes:
            changes.setdefault(i[:chars], {})[i] = None
        for e in puts:
            changes.setdefault(e.id[:chars], {})[e.id] = e
        shards = dict(base.shards) if base is not None else {}
        count = base.count if base is not None else 0
        retry = set(base.retry) if base is not None else set()
        for prefix, change in changes.items():
            old_key = shards.get(prefix)
            cur = dict(self._read(old_key)) if old_key is not None else {}
            before = len(cur)
            for i, put in change.items():
                retry.discard(i)
                if put is None:
                    cur.pop(i, None)
                else:
                    cur[i] = put
                    if put.state != "success":
                        retry.add(i)
            count += len(cur) - before
            if not cur:
                shards.pop(prefix, None)
                continue
            data = _encode_shard(cur[i] for i in sorted(cur))
            key = keys.index_shard(self.pipeline, blake3.blake3(data).hexdigest())
            if key != old_key:
                self.objects.put(key, data)
            shards[prefix] = key
        m = Manifest(shards, count, dict(commits), fingerprint, tuple(sorted(retry)), chars)
        if chars_for(count) > chars:
            return self.write(None, list(self.entries(m)), (), commits, fingerprint)
        return m

    def put_manifest(self, job: str, m: Manifest) -> None:
        self.objects.put(keys.index_object(self.pipeline, job), m.encode())
