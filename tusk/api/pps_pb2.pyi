import datetime

from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tusk.api import pfs_pb2 as _pfs_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PipelineState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PIPELINE_STATE_UNKNOWN: _ClassVar[PipelineState]
    PIPELINE_STARTING: _ClassVar[PipelineState]
    PIPELINE_RUNNING: _ClassVar[PipelineState]
    PIPELINE_RESTARTING: _ClassVar[PipelineState]
    PIPELINE_FAILURE: _ClassVar[PipelineState]
    PIPELINE_PAUSED: _ClassVar[PipelineState]
    PIPELINE_STANDBY: _ClassVar[PipelineState]
    PIPELINE_CRASHING: _ClassVar[PipelineState]

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNKNOWN: _ClassVar[JobState]
    JOB_CREATED: _ClassVar[JobState]
    JOB_STARTING: _ClassVar[JobState]
    JOB_RUNNING: _ClassVar[JobState]
    JOB_FAILURE: _ClassVar[JobState]
    JOB_SUCCESS: _ClassVar[JobState]
    JOB_KILLED: _ClassVar[JobState]
    JOB_EGRESSING: _ClassVar[JobState]
    JOB_FINISHING: _ClassVar[JobState]
    JOB_UNRUNNABLE: _ClassVar[JobState]

class DatumState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN: _ClassVar[DatumState]
    FAILED: _ClassVar[DatumState]
    SUCCESS: _ClassVar[DatumState]
    SKIPPED: _ClassVar[DatumState]
    STARTING: _ClassVar[DatumState]
    RECOVERED: _ClassVar[DatumState]

class LineageDirection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPSTREAM: _ClassVar[LineageDirection]
    DOWNSTREAM: _ClassVar[LineageDirection]
PIPELINE_STATE_UNKNOWN: PipelineState
PIPELINE_STARTING: PipelineState
PIPELINE_RUNNING: PipelineState
PIPELINE_RESTARTING: PipelineState
PIPELINE_FAILURE: PipelineState
PIPELINE_PAUSED: PipelineState
PIPELINE_STANDBY: PipelineState
PIPELINE_CRASHING: PipelineState
JOB_STATE_UNKNOWN: JobState
JOB_CREATED: JobState
JOB_STARTING: JobState
JOB_RUNNING: JobState
JOB_FAILURE: JobState
JOB_SUCCESS: JobState
JOB_KILLED: JobState
JOB_EGRESSING: JobState
JOB_FINISHING: JobState
JOB_UNRUNNABLE: JobState
UNKNOWN: DatumState
FAILED: DatumState
SUCCESS: DatumState
SKIPPED: DatumState
STARTING: DatumState
RECOVERED: DatumState
UPSTREAM: LineageDirection
DOWNSTREAM: LineageDirection

class Pipeline(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class PipelineInfo(_message.Message):
    __slots__ = ("pipeline", "version", "spec", "state", "reason", "created_at", "last_job_state", "salt", "stopped", "description", "warnings")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_JOB_STATE_FIELD_NUMBER: _ClassVar[int]
    SALT_FIELD_NUMBER: _ClassVar[int]
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    version: int
    spec: _struct_pb2.Struct
    state: PipelineState
    reason: str
    created_at: _timestamp_pb2.Timestamp
    last_job_state: JobState
    salt: str
    stopped: bool
    description: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., version: _Optional[int] = ..., spec: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., state: _Optional[_Union[PipelineState, str]] = ..., reason: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_job_state: _Optional[_Union[JobState, str]] = ..., salt: _Optional[str] = ..., stopped: _Optional[bool] = ..., description: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("pipeline", "id")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    id: str
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., id: _Optional[str] = ...) -> None: ...

class JobInfo(_message.Message):
    __slots__ = ("job", "state", "reason", "created", "started", "finished", "data_processed", "data_skipped", "data_failed", "data_recovered", "data_total", "pipeline_version", "salt", "output_commit", "input_commits", "restart", "stats")
    class StatsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    JOB_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    DATA_PROCESSED_FIELD_NUMBER: _ClassVar[int]
    DATA_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    DATA_FAILED_FIELD_NUMBER: _ClassVar[int]
    DATA_RECOVERED_FIELD_NUMBER: _ClassVar[int]
    DATA_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    SALT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_COMMIT_FIELD_NUMBER: _ClassVar[int]
    INPUT_COMMITS_FIELD_NUMBER: _ClassVar[int]
    RESTART_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    job: Job
    state: JobState
    reason: str
    created: _timestamp_pb2.Timestamp
    started: _timestamp_pb2.Timestamp
    finished: _timestamp_pb2.Timestamp
    data_processed: int
    data_skipped: int
    data_failed: int
    data_recovered: int
    data_total: int
    pipeline_version: int
    salt: str
    output_commit: _pfs_pb2.Commit
    input_commits: _containers.RepeatedCompositeFieldContainer[_pfs_pb2.Commit]
    restart: int
    stats: _containers.ScalarMap[str, float]
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., state: _Optional[_Union[JobState, str]] = ..., reason: _Optional[str] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., data_processed: _Optional[int] = ..., data_skipped: _Optional[int] = ..., data_failed: _Optional[int] = ..., data_recovered: _Optional[int] = ..., data_total: _Optional[int] = ..., pipeline_version: _Optional[int] = ..., salt: _Optional[str] = ..., output_commit: _Optional[_Union[_pfs_pb2.Commit, _Mapping]] = ..., input_commits: _Optional[_Iterable[_Union[_pfs_pb2.Commit, _Mapping]]] = ..., restart: _Optional[int] = ..., stats: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Datum(_message.Message):
    __slots__ = ("job", "id")
    JOB_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    job: Job
    id: str
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., id: _Optional[str] = ...) -> None: ...

class DatumFile(_message.Message):
    __slots__ = ("input", "repo", "commit", "path", "hash")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    REPO_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    input: str
    repo: str
    commit: str
    path: str
    hash: str
    def __init__(self, input: _Optional[str] = ..., repo: _Optional[str] = ..., commit: _Optional[str] = ..., path: _Optional[str] = ..., hash: _Optional[str] = ...) -> None: ...

class DatumInfo(_message.Message):
    __slots__ = ("datum", "state", "files", "hash", "reason", "attempts", "duration", "outputs", "stats")
    class StatsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    DATUM_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    datum: Datum
    state: DatumState
    files: _containers.RepeatedCompositeFieldContainer[DatumFile]
    hash: str
    reason: str
    attempts: int
    duration: float
    outputs: _containers.RepeatedScalarFieldContainer[str]
    stats: _containers.ScalarMap[str, float]
    def __init__(self, datum: _Optional[_Union[Datum, _Mapping]] = ..., state: _Optional[_Union[DatumState, str]] = ..., files: _Optional[_Iterable[_Union[DatumFile, _Mapping]]] = ..., hash: _Optional[str] = ..., reason: _Optional[str] = ..., attempts: _Optional[int] = ..., duration: _Optional[float] = ..., outputs: _Optional[_Iterable[str]] = ..., stats: _Optional[_Mapping[str, float]] = ...) -> None: ...

class LogMessage(_message.Message):
    __slots__ = ("pipeline_name", "job_id", "datum_id", "ts", "stream", "message", "worker", "master")
    PIPELINE_NAME_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DATUM_ID_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    MASTER_FIELD_NUMBER: _ClassVar[int]
    pipeline_name: str
    job_id: str
    datum_id: str
    ts: _timestamp_pb2.Timestamp
    stream: str
    message: str
    worker: str
    master: bool
    def __init__(self, pipeline_name: _Optional[str] = ..., job_id: _Optional[str] = ..., datum_id: _Optional[str] = ..., ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stream: _Optional[str] = ..., message: _Optional[str] = ..., worker: _Optional[str] = ..., master: _Optional[bool] = ...) -> None: ...

class LineageFile(_message.Message):
    __slots__ = ("file", "is_dir", "hash", "input", "user_data")
    FILE_FIELD_NUMBER: _ClassVar[int]
    IS_DIR_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    USER_DATA_FIELD_NUMBER: _ClassVar[int]
    file: _pfs_pb2.File
    is_dir: bool
    hash: str
    input: str
    user_data: bool
    def __init__(self, file: _Optional[_Union[_pfs_pb2.File, _Mapping]] = ..., is_dir: _Optional[bool] = ..., hash: _Optional[str] = ..., input: _Optional[str] = ..., user_data: _Optional[bool] = ...) -> None: ...

class LineageDatum(_message.Message):
    __slots__ = ("datum", "state")
    DATUM_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    datum: Datum
    state: DatumState
    def __init__(self, datum: _Optional[_Union[Datum, _Mapping]] = ..., state: _Optional[_Union[DatumState, str]] = ...) -> None: ...

class LineageNode(_message.Message):
    __slots__ = ("file", "datum", "children", "truncated", "repeated", "note")
    FILE_FIELD_NUMBER: _ClassVar[int]
    DATUM_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    REPEATED_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    file: LineageFile
    datum: LineageDatum
    children: _containers.RepeatedCompositeFieldContainer[LineageNode]
    truncated: bool
    repeated: bool
    note: str
    def __init__(self, file: _Optional[_Union[LineageFile, _Mapping]] = ..., datum: _Optional[_Union[LineageDatum, _Mapping]] = ..., children: _Optional[_Iterable[_Union[LineageNode, _Mapping]]] = ..., truncated: _Optional[bool] = ..., repeated: _Optional[bool] = ..., note: _Optional[str] = ...) -> None: ...

class LineageTree(_message.Message):
    __slots__ = ("root", "direction", "nodes", "truncated")
    ROOT_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    root: LineageNode
    direction: LineageDirection
    nodes: int
    truncated: bool
    def __init__(self, root: _Optional[_Union[LineageNode, _Mapping]] = ..., direction: _Optional[_Union[LineageDirection, str]] = ..., nodes: _Optional[int] = ..., truncated: _Optional[bool] = ...) -> None: ...

class CreatePipelineRequest(_message.Message):
    __slots__ = ("spec_json", "update", "reprocess", "dry_run", "default_project")
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    REPROCESS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_PROJECT_FIELD_NUMBER: _ClassVar[int]
    spec_json: str
    update: bool
    reprocess: bool
    dry_run: bool
    default_project: str
    def __init__(self, spec_json: _Optional[str] = ..., update: _Optional[bool] = ..., reprocess: _Optional[bool] = ..., dry_run: _Optional[bool] = ..., default_project: _Optional[str] = ...) -> None: ...

class InspectPipelineRequest(_message.Message):
    __slots__ = ("pipeline",)
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ...) -> None: ...

class ListPipelineRequest(_message.Message):
    __slots__ = ("pipeline", "history", "project", "all_projects")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ALL_PROJECTS_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    history: int
    project: str
    all_projects: bool
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., history: _Optional[int] = ..., project: _Optional[str] = ..., all_projects: _Optional[bool] = ...) -> None: ...

class DeletePipelineRequest(_message.Message):
    __slots__ = ("pipeline", "force", "keep_repo")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    KEEP_REPO_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    force: bool
    keep_repo: bool
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., force: _Optional[bool] = ..., keep_repo: _Optional[bool] = ...) -> None: ...

class StartPipelineRequest(_message.Message):
    __slots__ = ("pipeline",)
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ...) -> None: ...

class RunCronRequest(_message.Message):
    __slots__ = ("pipeline",)
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ...) -> None: ...

class StopPipelineRequest(_message.Message):
    __slots__ = ("pipeline",)
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ...) -> None: ...

class ListJobRequest(_message.Message):
    __slots__ = ("pipeline", "number")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    number: int
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., number: _Optional[int] = ...) -> None: ...

class InspectJobRequest(_message.Message):
    __slots__ = ("job", "wait")
    JOB_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    job: Job
    wait: bool
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., wait: _Optional[bool] = ...) -> None: ...

class StopJobRequest(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class DeleteJobRequest(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class JobSet(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class JobSetInfo(_message.Message):
    __slots__ = ("job_set", "jobs")
    JOB_SET_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    job_set: JobSet
    jobs: _containers.RepeatedCompositeFieldContainer[JobInfo]
    def __init__(self, job_set: _Optional[_Union[JobSet, _Mapping]] = ..., jobs: _Optional[_Iterable[_Union[JobInfo, _Mapping]]] = ...) -> None: ...

class ListJobSetRequest(_message.Message):
    __slots__ = ("number",)
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    number: int
    def __init__(self, number: _Optional[int] = ...) -> None: ...

class InspectJobSetRequest(_message.Message):
    __slots__ = ("job_set", "wait")
    JOB_SET_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    job_set: JobSet
    wait: bool
    def __init__(self, job_set: _Optional[_Union[JobSet, _Mapping]] = ..., wait: _Optional[bool] = ...) -> None: ...

class RestartDatumRequest(_message.Message):
    __slots__ = ("job", "data_filters")
    JOB_FIELD_NUMBER: _ClassVar[int]
    DATA_FILTERS_FIELD_NUMBER: _ClassVar[int]
    job: Job
    data_filters: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., data_filters: _Optional[_Iterable[str]] = ...) -> None: ...

class ListDatumRequest(_message.Message):
    __slots__ = ("job", "spec_json")
    JOB_FIELD_NUMBER: _ClassVar[int]
    SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    job: Job
    spec_json: str
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., spec_json: _Optional[str] = ...) -> None: ...

class InspectDatumRequest(_message.Message):
    __slots__ = ("datum",)
    DATUM_FIELD_NUMBER: _ClassVar[int]
    datum: Datum
    def __init__(self, datum: _Optional[_Union[Datum, _Mapping]] = ...) -> None: ...

class GetLogsRequest(_message.Message):
    __slots__ = ("pipeline", "job", "datum", "follow", "master", "worker", "tail", "since_seconds")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    DATUM_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    MASTER_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    SINCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    job: str
    datum: str
    follow: bool
    master: bool
    worker: bool
    tail: int
    since_seconds: float
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., job: _Optional[str] = ..., datum: _Optional[str] = ..., follow: _Optional[bool] = ..., master: _Optional[bool] = ..., worker: _Optional[bool] = ..., tail: _Optional[int] = ..., since_seconds: _Optional[float] = ...) -> None: ...

class FileLineageRequest(_message.Message):
    __slots__ = ("file", "direction", "max_depth", "max_nodes")
    FILE_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    MAX_DEPTH_FIELD_NUMBER: _ClassVar[int]
    MAX_NODES_FIELD_NUMBER: _ClassVar[int]
    file: _pfs_pb2.File
    direction: LineageDirection
    max_depth: int
    max_nodes: int
    def __init__(self, file: _Optional[_Union[_pfs_pb2.File, _Mapping]] = ..., direction: _Optional[_Union[LineageDirection, str]] = ..., max_depth: _Optional[int] = ..., max_nodes: _Optional[int] = ...) -> None: ...
