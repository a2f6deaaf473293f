"""PPS's user-facing model: pipelines, jobs, datums and log lines.

Frozen dataclasses returned by ``pps.api.PPS``; the gRPC server converts them
to the messages of ``proto/pps.proto`` (same field names). States and their
meaning follow Pachyderm (reference 2.7).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple

from pfs.model import CommitRef


class JobState(str, Enum):
    CREATED = "CREATED"        # output commit exists; not picked up yet
    STARTING = "STARTING"      # waiting for its input commits to finish
    UNRUNNABLE = "UNRUNNABLE"  # an input is the output of a failed job (terminal)
    RUNNING = "RUNNING"        # processing datums
    EGRESSING = "EGRESSING"
    FINISHING = "FINISHING"    # all datums done; building the output commit
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    KILLED = "KILLED"


TERMINAL_JOB_STATES = frozenset(
    {JobState.SUCCESS, JobState.FAILURE, JobState.KILLED, JobState.UNRUNNABLE})


class PipelineState(str, Enum):
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    RESTARTING = "RESTARTING"
    FAILURE = "FAILURE"
    PAUSED = "PAUSED"
    STANDBY = "STANDBY"
    CRASHING = "CRASHING"


class DatumState(str, Enum):
    SUCCESS = "success"
    SKIPPED = "skipped"
    FAILED = "failed"
    RECOVERED = "recovered"
    PENDING = "-"


@dataclass(frozen=True)
class PipelineInfo:
    name: str
    version: int
    spec: dict[str, Any]       # the canonical spec (Pachyderm field names, defaults filled)
    state: PipelineState
    reason: str
    created: float
    last_job_state: JobState | None
    salt: str
    stopped: bool
    description: str = ""


@dataclass(frozen=True)
class JobInfo:
    pipeline: str
    id: str
    state: JobState
    reason: str
    created: float
    started: float | None
    finished: float | None
    data_processed: int
    data_skipped: int
    data_failed: int
    data_recovered: int
    data_total: int
    pipeline_version: int
    salt: str
    output_commit: CommitRef
    input_commits: tuple[CommitRef, ...] = ()
    restart: int = 0
    # download/process/upload seconds and bytes
    stats: dict[str, float] = field(default_factory=dict)


class DatumFile(NamedTuple):
    """One input file of a datum (lineage).

    A NamedTuple rather than a frozen dataclass: jobs decode one per datum
    of their inputs, 10^4-10^6 at a time, and a tuple is built ~5x faster
    (and packs to msgpack as it is).
    """

    input: str     # input name
    repo: str
    commit: str
    path: str
    hash: str      # hex


@dataclass(frozen=True)
class DatumInfo:
    id: str
    pipeline: str
    job_id: str
    state: DatumState
    files: tuple[DatumFile, ...]
    hash: str
    reason: str = ""
    attempts: int = 0
    duration: float = 0.0
    outputs: tuple[str, ...] = ()  # output paths this datum wrote (lineage)
    stats: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class LogLine:
    pipeline: str
    job_id: str
    datum_id: str
    ts: float
    stream: str  # "stdout" | "stderr" | "system"
    message: str
    worker: str = ""
    master: bool = False  # a job event of the pipeline's master, not a datum's line
