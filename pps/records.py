"""The records PPS stores: one frozen dataclass each, with its one codec.

Metadata records (``PipelineRec``, ``JobRec``, ``UnitTicket``, ``UnitDone``)
are JSON; object records (``Plan``, ``DatumResult``, ``DatumIndexEntry``) are
msgpack. Their keys are in :mod:`pps.keys`. Shared records change only through
:func:`update_record` (compare-and-swap on the record's revision), never by a
blind write: a ``stop job`` racing a master's count update must win.

The msgpack shapes are those written before these classes existed, so data
made by earlier versions still reads.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, Self, TypeVar

import msgpack

from pfs.blobs import ChunkRef, as_ref
from pfs.metadata import Compare, MetadataStore, Put
from pps.model import DatumFile

__all__ = [
    "DatumIndexEntry",
    "DatumInputRec",
    "DatumResult",
    "EgressManifest",
    "JobRec",
    "OutputFile",
    "PipelineRec",
    "Plan",
    "PlannedDatum",
    "UnitDone",
    "UnitTicket",
    "decode_results",
    "encode_results",
    "update_record",
]


def _pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj)
    return data


class _JSONRecord:
    """JSON codec for a flat dataclass record (unknown fields are ignored, so a
    newer daemon's records still load in an older reader's shape)."""

    def encode(self) -> bytes:
        return json.dumps(dataclasses.asdict(self),  # type: ignore[call-overload]
                          separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> Self:
        raw = json.loads(data) if data else {}
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in raw.items() if k in names})


@dataclass(frozen=True)
class PipelineRec(_JSONRecord):
    """A pipeline: its canonical spec and what the controller needs to know."""

    name: str
    spec: dict[str, Any]
    version: int = 1
    salt: str = ""
    created: float = 0.0
    stopped: bool = False
    state: str = "STARTING"
    reason: str = ""


@dataclass(frozen=True)
class JobRec(_JSONRecord):
    """A job (one per output commit); ``units`` is -1 until it is planned."""

    pipeline: str
    id: str
    state: str = "CREATED"
    reason: str = ""
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    version: int = 1
    salt: str = ""
    output_branch: str = "master"
    data_processed: int = 0
    data_skipped: int = 0
    data_failed: int = 0
    data_recovered: int = 0
    data_total: int = 0
    units: int = -1
    restart: int = 0
    stats: dict[str, float] = field(default_factory=dict)
    #: The job failed in egress only: its output commit and datum index are
    #: complete, so the next job skips its datums as after a success.
    egress_failed: bool = False


@dataclass(frozen=True)
class UnitTicket(_JSONRecord):
    """A work unit's queue or claim entry.

    Attributes:
        tries: attempts started before this one (0 for the first).
        worker: the claiming worker's instance id (claims only).
        error: why the previous attempt ended without results.
    """

    tries: int = 0
    worker: str = ""
    error: str = ""


@dataclass(frozen=True)
class UnitDone(_JSONRecord):
    """A finished unit.

    Attributes:
        attempt: whose results object counts (``units/<n>-<attempt>``); -1
            with ``error`` for a unit that used up its tries, -1 without it
            for a unit done before attempts were numbered (``units/<n>``).
        tries: attempts made, when it used them up.
        error: why its last attempt ended without results.
        processed, failed, recovered: the unit's datum counts by outcome.
    """

    attempt: int = -1
    tries: int = 0
    error: str = ""
    processed: int = 0  # datums of the unit that succeeded, failed, were recovered:
    failed: int = 0     # the master's progress counts come from these records
    recovered: int = 0  # alone, without reading any results object


class _Codec(Protocol):
    def encode(self) -> bytes: ...


R = TypeVar("R", bound=_JSONRecord)


def update_record(meta: MetadataStore, key: str, cls: type[R],
                  change: Callable[[R], R | None], attempts: int = 100) -> R | None:
    """Change the record at ``key`` by compare-and-swap on its revision.

    ``change`` gets the current record and returns the new one, or None to
    leave it as it is (e.g. a job already terminal). It may be called several
    times: it must not have side effects.

    Returns:
        The record as written, or None when ``key`` is absent or ``change``
        returned None.
    """
    for _ in range(attempts):
        kv = meta.get(key)
        if kv is None:
            return None
        new = change(cls.decode(kv.value))
        if new is None:
            return None
        if meta.txn([Compare(key, kv.mod_revision)], [Put(key, new.encode())]):
            return new
    raise RuntimeError(f"record {key} kept changing under {attempts} compare-and-swap attempts")


# --- egress ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EgressManifest:
    """What one job's egress left under its S3 prefix: for each object key the
    tusk file hash, the size and the ETag S3 gave it. The next job skips a
    file whose hash is unchanged while the object still has that size and
    ETag, and deletes only keys listed here (objects it wrote) that are no
    longer in the commit. ``complete`` is False for a manifest saved by a
    failed egress (it lists what may be there).
    """

    url: str
    entries: dict[str, tuple[str, int, str]]
    complete: bool = True

    def encode(self) -> bytes:
        return _pack({"url": self.url, "complete": self.complete,
                      "entries": [[k, *v] for k, v in sorted(self.entries.items())]})

    @staticmethod
    def decode(data: bytes) -> EgressManifest:
        raw = msgpack.unpackb(data)
        entries = {e[0]: (str(e[1]), int(e[2]), str(e[3])) for e in raw["entries"]}
        return EgressManifest(raw["url"], entries, bool(raw.get("complete", True)))


# --- datums --------------------------------------------------------------------------


@dataclass(frozen=True)
class DatumInputRec:
    """One input of a planned datum (what ``pps.datums.DatumInput`` carries)."""

    name: str
    repo: str
    branch: str
    commit: str
    path: str
    is_dir: bool
    hash: str
    join_on: str = ""
    group_by: str = ""
    empty_files: bool = False

    def encode(self) -> list[Any]:
        return [self.name, self.repo, self.branch, self.commit, self.path, self.is_dir,
                self.hash, self.join_on, self.group_by, self.empty_files]

    @staticmethod
    def decode(v: Sequence[Any]) -> DatumInputRec:
        return DatumInputRec(*v)

    def file(self) -> DatumFile:
        return DatumFile(self.name, self.repo, self.commit, self.path, self.hash)


@dataclass(frozen=True)
class PlannedDatum:
    """A datum a job runs: its ID, its hash (inputs + salt) and its inputs."""

    id: str
    hash: str
    inputs: tuple[DatumInputRec, ...]

    def encode(self) -> list[Any]:
        return [self.id, self.hash, [i.encode() for i in self.inputs]]

    @staticmethod
    def decode(v: Sequence[Any]) -> PlannedDatum:
        return PlannedDatum(v[0], v[1], tuple(DatumInputRec.decode(i) for i in v[2]))

    def files(self) -> tuple[DatumFile, ...]:
        return tuple(i.file() for i in self.inputs)


#: A datum's input file as stored: the fields of :class:`pps.model.DatumFile`.
FileTuple = tuple[str, str, str, str, str]


class DatumIndexEntry(NamedTuple):
    """A datum in a successful job's index: what a later job compares to skip it.

    A NamedTuple rather than a frozen dataclass, with its input files kept
    as the plain tuples msgpack gives back: every job decodes and re-encodes
    one entry per datum of its inputs (10^4-10^6), and only ``list datum``
    needs the files as :class:`~pps.model.DatumFile` (:meth:`datum_files`).

    Attributes:
        job: the job that ran it (its outputs and logs are that job's).
        outputs: the output paths it wrote.
        files: its input files as that job saw them (lineage).
    """

    id: str
    hash: str
    state: str
    job: str
    outputs: tuple[str, ...] = ()
    files: tuple[FileTuple, ...] = ()

    def encode(self) -> dict[str, Any]:
        # Tuples pack as msgpack arrays: nothing to convert.
        return {"id": self.id, "hash": self.hash, "state": self.state, "job": self.job,
                "outputs": self.outputs, "files": self.files}

    @staticmethod
    def decode(v: dict[str, Any]) -> DatumIndexEntry:
        """From what ``msgpack.unpackb(..., use_list=False)`` gives (tuples)."""
        return DatumIndexEntry(v["id"], v["hash"], v["state"], v.get("job", ""),
                               tuple(v.get("outputs") or ()), tuple(v.get("files") or ()))

    def datum_files(self) -> tuple[DatumFile, ...]:
        return tuple(DatumFile._make(f) for f in self.files)


@dataclass(frozen=True)
class Plan:
    """What a job runs: the datums to process (split into units of
    ``unit_size``) and output paths to delete first.

    Attributes:
        skipped: datums skipped, in plans written before the index was
            sharded (newer plans leave skipped datums in the base index).
        base: the job whose index this job's index updates ("" for none).
        removed: IDs of the base index's datums that are gone.
        total: datums of the job (processed and skipped).
        commits: input name -> the input commit the job planned at.
        fingerprint: of the input spec and salt (see the planner).
    """

    process: tuple[PlannedDatum, ...]
    skipped: tuple[DatumIndexEntry, ...]
    unit_size: int
    delete: tuple[str, ...]
    base: str = ""
    removed: tuple[str, ...] = ()
    total: int = -1
    commits: dict[str, str] = field(default_factory=dict)
    fingerprint: str = ""

    @property
    def units(self) -> int:
        return -(-len(self.process) // self.unit_size) if self.process else 0

    @property
    def data_total(self) -> int:
        return self.total if self.total >= 0 else len(self.process) + len(self.skipped)

    def unit(self, n: int) -> Sequence[PlannedDatum]:
        if isinstance(self.process, PagedDatums):
            return self.process.page(n)
        return self.process[n * self.unit_size:(n + 1) * self.unit_size]

    def encode(self) -> bytes:
        # One msgpack blob per unit: a worker decodes only the units it
        # claims, `list datum` streams unit by unit; at 10^5 datums decoding
        # the whole plan at once takes seconds.
        pages = [_pack([d.encode() for d in self.unit(n)]) for n in range(self.units)]
        return _pack({"pages": pages, "count": len(self.process),
                      "skipped": [s.encode() for s in self.skipped],
                      "unit_size": self.unit_size, "delete": list(self.delete),
                      "base": self.base, "removed": list(self.removed), "total": self.total,
                      "commits": self.commits, "fingerprint": self.fingerprint})

    @staticmethod
    def decode(data: bytes, skipped: bool = True) -> Plan:
        """The plan in ``data`` (its datums decoded unit by unit, when used);
        ``skipped=False`` leaves the skipped datums of an old plan out."""
        v = msgpack.unpackb(data, raw=False, use_list=False)
        size = int(v.get("unit_size") or 64)
        process: Sequence[PlannedDatum]
        if "pages" in v:
            process = PagedDatums(v["pages"], size, int(v["count"]))
        else:
            process = tuple(PlannedDatum.decode(d) for d in v["process"])
        return Plan(process=process,  # type: ignore[arg-type]
                    skipped=tuple(DatumIndexEntry.decode(s) for s in v["skipped"])
                    if skipped else (),
                    unit_size=size, delete=tuple(v.get("delete", ())),
                    base=str(v.get("base") or ""), removed=tuple(v.get("removed") or ()),
                    total=int(v.get("total", -1)), commits=dict(v.get("commits") or {}),
                    fingerprint=str(v.get("fingerprint") or ""))


class PagedDatums(Sequence[PlannedDatum]):
    """A plan's datums, one encoded page per unit, decoded when read."""

    def __init__(self, pages: Sequence[bytes], unit_size: int, count: int) -> None:
        self.pages = pages
        self.unit_size = unit_size
        self.n = count
        self._cache: dict[int, tuple[PlannedDatum, ...]] = {}

    def page(self, n: int) -> tuple[PlannedDatum, ...]:
        got = self._cache.get(n)
        if got is None:
            if len(self._cache) > 8:
                self._cache.clear()
            got = tuple(PlannedDatum.decode(d)
                        for d in msgpack.unpackb(self.pages[n], raw=False, use_list=False))
            self._cache[n] = got
        return got

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[PlannedDatum]:
        for n in range(len(self.pages)):
            yield from self.page(n)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return tuple(self)[i]
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.page(i // self.unit_size)[i % self.unit_size]


# --- results ------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputFile:
    """A file a datum wrote: its path and content (chunks in the object store)."""

    path: str
    size: int
    chunks: tuple[ChunkRef, ...]

    def encode(self) -> list[Any]:
        return [self.path, self.size, [list(c) for c in self.chunks]]

    @staticmethod
    def decode(v: Sequence[Any]) -> OutputFile:
        return OutputFile(v[0], int(v[1]), tuple(as_ref(c) for c in v[2]))


@dataclass
class DatumResult:
    """What happened to one datum in a unit (built up while the datum runs).

    Attributes:
        state: ``"success"``, ``"failed"`` or ``"recovered"``.
        logs: ``(epoch seconds, stream, text)``; stream is stdout, stderr or system.
        worker: instance id of the worker that ran it.
    """

    id: str
    hash: str
    state: str
    reason: str = ""
    attempts: int = 0
    started: float = 0.0
    duration: float = 0.0
    outputs: list[OutputFile] = field(default_factory=list)
    logs: list[tuple[float, str, str]] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)
    worker: str = ""

    def encode(self) -> dict[str, Any]:
        return {"id": self.id, "hash": self.hash, "state": self.state, "reason": self.reason,
                "attempts": self.attempts, "started": self.started, "duration": self.duration,
                "outputs": [o.encode() for o in self.outputs],
                "logs": [list(x) for x in self.logs], "stats": self.stats,
                "worker": self.worker}

    @staticmethod
    def decode(v: dict[str, Any]) -> DatumResult:
        return DatumResult(id=v["id"], hash=v["hash"], state=v["state"], reason=v["reason"],
                           attempts=v["attempts"], started=v.get("started", 0.0),
                           duration=v["duration"],
                           outputs=[OutputFile.decode(o) for o in v["outputs"]],
                           logs=[(float(t), str(s), str(x)) for t, s, x in v["logs"]],
                           stats=dict(v.get("stats", {})), worker=v.get("worker", ""))


def encode_results(results: Sequence[DatumResult]) -> bytes:
    return _pack([r.encode() for r in results])


def decode_results(data: bytes) -> list[DatumResult]:
    return [DatumResult.decode(v) for v in msgpack.unpackb(data, raw=False)]
