import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import wrappers_pb2 as _wrappers_pb2
from tusk.pachyderm_api import pfs_pb2 as _pfs_pb2
from tusk.pachyderm_api import taskapi_pb2 as _taskapi_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

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

class WorkerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_STATE_UNKNOWN: _ClassVar[WorkerState]
    POD_RUNNING: _ClassVar[WorkerState]
    POD_SUCCESS: _ClassVar[WorkerState]
    POD_FAILED: _ClassVar[WorkerState]

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

class TolerationOperator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EMPTY: _ClassVar[TolerationOperator]
    EXISTS: _ClassVar[TolerationOperator]
    EQUAL: _ClassVar[TolerationOperator]

class TaintEffect(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALL_EFFECTS: _ClassVar[TaintEffect]
    NO_SCHEDULE: _ClassVar[TaintEffect]
    PREFER_NO_SCHEDULE: _ClassVar[TaintEffect]
    NO_EXECUTE: _ClassVar[TaintEffect]

class PipelineInfoPipelineType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PIPELINT_TYPE_UNKNOWN: _ClassVar[PipelineInfoPipelineType]
    PIPELINE_TYPE_TRANSFORM: _ClassVar[PipelineInfoPipelineType]
    PIPELINE_TYPE_SPOUT: _ClassVar[PipelineInfoPipelineType]
    PIPELINE_TYPE_SERVICE: _ClassVar[PipelineInfoPipelineType]

class PipelinePageOrdering(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RECENT: _ClassVar[PipelinePageOrdering]
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
WORKER_STATE_UNKNOWN: WorkerState
POD_RUNNING: WorkerState
POD_SUCCESS: WorkerState
POD_FAILED: WorkerState
PIPELINE_STATE_UNKNOWN: PipelineState
PIPELINE_STARTING: PipelineState
PIPELINE_RUNNING: PipelineState
PIPELINE_RESTARTING: PipelineState
PIPELINE_FAILURE: PipelineState
PIPELINE_PAUSED: PipelineState
PIPELINE_STANDBY: PipelineState
PIPELINE_CRASHING: PipelineState
EMPTY: TolerationOperator
EXISTS: TolerationOperator
EQUAL: TolerationOperator
ALL_EFFECTS: TaintEffect
NO_SCHEDULE: TaintEffect
PREFER_NO_SCHEDULE: TaintEffect
NO_EXECUTE: TaintEffect
PIPELINT_TYPE_UNKNOWN: PipelineInfoPipelineType
PIPELINE_TYPE_TRANSFORM: PipelineInfoPipelineType
PIPELINE_TYPE_SPOUT: PipelineInfoPipelineType
PIPELINE_TYPE_SERVICE: PipelineInfoPipelineType
RECENT: PipelinePageOrdering

class SecretMount(_message.Message):
    __slots__ = ("name", "key", "mount_path", "env_var")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    MOUNT_PATH_FIELD_NUMBER: _ClassVar[int]
    ENV_VAR_FIELD_NUMBER: _ClassVar[int]
    name: str
    key: str
    mount_path: str
    env_var: str
    def __init__(self, name: _Optional[str] = ..., key: _Optional[str] = ..., mount_path: _Optional[str] = ..., env_var: _Optional[str] = ...) -> None: ...

class Transform(_message.Message):
    __slots__ = ("image", "cmd", "err_cmd", "env", "secrets", "image_pull_secrets", "stdin", "err_stdin", "accept_return_code", "debug", "user", "working_dir", "dockerfile", "memory_volume", "datum_batching")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CMD_FIELD_NUMBER: _ClassVar[int]
    ERR_CMD_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    SECRETS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PULL_SECRETS_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    ERR_STDIN_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_RETURN_CODE_FIELD_NUMBER: _ClassVar[int]
    DEBUG_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIR_FIELD_NUMBER: _ClassVar[int]
    DOCKERFILE_FIELD_NUMBER: _ClassVar[int]
    MEMORY_VOLUME_FIELD_NUMBER: _ClassVar[int]
    DATUM_BATCHING_FIELD_NUMBER: _ClassVar[int]
    image: str
    cmd: _containers.RepeatedScalarFieldContainer[str]
    err_cmd: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    secrets: _containers.RepeatedCompositeFieldContainer[SecretMount]
    image_pull_secrets: _containers.RepeatedScalarFieldContainer[str]
    stdin: _containers.RepeatedScalarFieldContainer[str]
    err_stdin: _containers.RepeatedScalarFieldContainer[str]
    accept_return_code: _containers.RepeatedScalarFieldContainer[int]
    debug: bool
    user: str
    working_dir: str
    dockerfile: str
    memory_volume: bool
    datum_batching: bool
    def __init__(self, image: _Optional[str] = ..., cmd: _Optional[_Iterable[str]] = ..., err_cmd: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., secrets: _Optional[_Iterable[_Union[SecretMount, _Mapping]]] = ..., image_pull_secrets: _Optional[_Iterable[str]] = ..., stdin: _Optional[_Iterable[str]] = ..., err_stdin: _Optional[_Iterable[str]] = ..., accept_return_code: _Optional[_Iterable[int]] = ..., debug: _Optional[bool] = ..., user: _Optional[str] = ..., working_dir: _Optional[str] = ..., dockerfile: _Optional[str] = ..., memory_volume: _Optional[bool] = ..., datum_batching: _Optional[bool] = ...) -> None: ...

class TfJob(_message.Message):
    __slots__ = ("tf_job",)
    TF_JOB_FIELD_NUMBER: _ClassVar[int]
    tf_job: str
    def __init__(self, tf_job: _Optional[str] = ...) -> None: ...

class Egress(_message.Message):
    __slots__ = ("url", "object_storage", "sql_database")
    URL_FIELD_NUMBER: _ClassVar[int]
    OBJECT_STORAGE_FIELD_NUMBER: _ClassVar[int]
    SQL_DATABASE_FIELD_NUMBER: _ClassVar[int]
    url: str
    object_storage: _pfs_pb2.ObjectStorageEgress
    sql_database: _pfs_pb2.SqlDatabaseEgress
    def __init__(self, url: _Optional[str] = ..., object_storage: _Optional[_Union[_pfs_pb2.ObjectStorageEgress, _Mapping]] = ..., sql_database: _Optional[_Union[_pfs_pb2.SqlDatabaseEgress, _Mapping]] = ...) -> None: ...

class Determined(_message.Message):
    __slots__ = ("workspaces",)
    WORKSPACES_FIELD_NUMBER: _ClassVar[int]
    workspaces: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, workspaces: _Optional[_Iterable[str]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("pipeline", "id")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    id: str
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., id: _Optional[str] = ...) -> None: ...

class Metadata(_message.Message):
    __slots__ = ("annotations", "labels")
    class AnnotationsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    annotations: _containers.ScalarMap[str, str]
    labels: _containers.ScalarMap[str, str]
    def __init__(self, annotations: _Optional[_Mapping[str, str]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Service(_message.Message):
    __slots__ = ("internal_port", "external_port", "ip", "type")
    INTERNAL_PORT_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_PORT_FIELD_NUMBER: _ClassVar[int]
    IP_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    internal_port: int
    external_port: int
    ip: str
    type: str
    def __init__(self, internal_port: _Optional[int] = ..., external_port: _Optional[int] = ..., ip: _Optional[str] = ..., type: _Optional[str] = ...) -> None: ...

class Spout(_message.Message):
    __slots__ = ("service",)
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    service: Service
    def __init__(self, service: _Optional[_Union[Service, _Mapping]] = ...) -> None: ...

class PfsInput(_message.Message):
    __slots__ = ("project", "name", "repo", "repo_type", "branch", "commit", "glob", "join_on", "outer_join", "group_by", "lazy", "empty_files", "s3", "trigger", "propagation_spec", "reference")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REPO_FIELD_NUMBER: _ClassVar[int]
    REPO_TYPE_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    GLOB_FIELD_NUMBER: _ClassVar[int]
    JOIN_ON_FIELD_NUMBER: _ClassVar[int]
    OUTER_JOIN_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    LAZY_FIELD_NUMBER: _ClassVar[int]
    EMPTY_FILES_FIELD_NUMBER: _ClassVar[int]
    S3_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    PROPAGATION_SPEC_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    project: str
    name: str
    repo: str
    repo_type: str
    branch: str
    commit: str
    glob: str
    join_on: str
    outer_join: bool
    group_by: str
    lazy: bool
    empty_files: bool
    s3: bool
    trigger: _pfs_pb2.Trigger
    propagation_spec: _pfs_pb2.PropagationSpec
    reference: bool
    def __init__(self, project: _Optional[str] = ..., name: _Optional[str] = ..., repo: _Optional[str] = ..., repo_type: _Optional[str] = ..., branch: _Optional[str] = ..., commit: _Optional[str] = ..., glob: _Optional[str] = ..., join_on: _Optional[str] = ..., outer_join: _Optional[bool] = ..., group_by: _Optional[str] = ..., lazy: _Optional[bool] = ..., empty_files: _Optional[bool] = ..., s3: _Optional[bool] = ..., trigger: _Optional[_Union[_pfs_pb2.Trigger, _Mapping]] = ..., propagation_spec: _Optional[_Union[_pfs_pb2.PropagationSpec, _Mapping]] = ..., reference: _Optional[bool] = ...) -> None: ...

class CronInput(_message.Message):
    __slots__ = ("name", "project", "repo", "commit", "spec", "overwrite", "start")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    REPO_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    name: str
    project: str
    repo: str
    commit: str
    spec: str
    overwrite: bool
    start: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., project: _Optional[str] = ..., repo: _Optional[str] = ..., commit: _Optional[str] = ..., spec: _Optional[str] = ..., overwrite: _Optional[bool] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Input(_message.Message):
    __slots__ = ("pfs", "join", "group", "cross", "union", "cron")
    PFS_FIELD_NUMBER: _ClassVar[int]
    JOIN_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    CROSS_FIELD_NUMBER: _ClassVar[int]
    UNION_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    pfs: PfsInput
    join: _containers.RepeatedCompositeFieldContainer[Input]
    group: _containers.RepeatedCompositeFieldContainer[Input]
    cross: _containers.RepeatedCompositeFieldContainer[Input]
    union: _containers.RepeatedCompositeFieldContainer[Input]
    cron: CronInput
    def __init__(self, pfs: _Optional[_Union[PfsInput, _Mapping]] = ..., join: _Optional[_Iterable[_Union[Input, _Mapping]]] = ..., group: _Optional[_Iterable[_Union[Input, _Mapping]]] = ..., cross: _Optional[_Iterable[_Union[Input, _Mapping]]] = ..., union: _Optional[_Iterable[_Union[Input, _Mapping]]] = ..., cron: _Optional[_Union[CronInput, _Mapping]] = ...) -> None: ...

class JobInput(_message.Message):
    __slots__ = ("name", "commit", "glob", "lazy")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    GLOB_FIELD_NUMBER: _ClassVar[int]
    LAZY_FIELD_NUMBER: _ClassVar[int]
    name: str
    commit: _pfs_pb2.Commit
    glob: str
    lazy: bool
    def __init__(self, name: _Optional[str] = ..., commit: _Optional[_Union[_pfs_pb2.Commit, _Mapping]] = ..., glob: _Optional[str] = ..., lazy: _Optional[bool] = ...) -> None: ...

class ParallelismSpec(_message.Message):
    __slots__ = ("constant",)
    CONSTANT_FIELD_NUMBER: _ClassVar[int]
    constant: int
    def __init__(self, constant: _Optional[int] = ...) -> None: ...

class InputFile(_message.Message):
    __slots__ = ("path", "hash")
    PATH_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    path: str
    hash: bytes
    def __init__(self, path: _Optional[str] = ..., hash: _Optional[bytes] = ...) -> None: ...

class Datum(_message.Message):
    __slots__ = ("job", "id")
    JOB_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    job: Job
    id: str
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., id: _Optional[str] = ...) -> None: ...

class DatumInfo(_message.Message):
    __slots__ = ("datum", "state", "stats", "pfs_state", "data", "image_id")
    DATUM_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    PFS_STATE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    datum: Datum
    state: DatumState
    stats: ProcessStats
    pfs_state: _pfs_pb2.File
    data: _containers.RepeatedCompositeFieldContainer[_pfs_pb2.FileInfo]
    image_id: str
    def __init__(self, datum: _Optional[_Union[Datum, _Mapping]] = ..., state: _Optional[_Union[DatumState, str]] = ..., stats: _Optional[_Union[ProcessStats, _Mapping]] = ..., pfs_state: _Optional[_Union[_pfs_pb2.File, _Mapping]] = ..., data: _Optional[_Iterable[_Union[_pfs_pb2.FileInfo, _Mapping]]] = ..., image_id: _Optional[str] = ...) -> None: ...

class Aggregate(_message.Message):
    __slots__ = ("count", "mean", "stddev", "fifth_percentile", "ninety_fifth_percentile")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STDDEV_FIELD_NUMBER: _ClassVar[int]
    FIFTH_PERCENTILE_FIELD_NUMBER: _ClassVar[int]
    NINETY_FIFTH_PERCENTILE_FIELD_NUMBER: _ClassVar[int]
    count: int
    mean: float
    stddev: float
    fifth_percentile: float
    ninety_fifth_percentile: float
    def __init__(self, count: _Optional[int] = ..., mean: _Optional[float] = ..., stddev: _Optional[float] = ..., fifth_percentile: _Optional[float] = ..., ninety_fifth_percentile: _Optional[float] = ...) -> None: ...

class ProcessStats(_message.Message):
    __slots__ = ("download_time", "process_time", "upload_time", "download_bytes", "upload_bytes")
    DOWNLOAD_TIME_FIELD_NUMBER: _ClassVar[int]
    PROCESS_TIME_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_TIME_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    download_time: _duration_pb2.Duration
    process_time: _duration_pb2.Duration
    upload_time: _duration_pb2.Duration
    download_bytes: int
    upload_bytes: int
    def __init__(self, download_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., process_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., upload_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., download_bytes: _Optional[int] = ..., upload_bytes: _Optional[int] = ...) -> None: ...

class AggregateProcessStats(_message.Message):
    __slots__ = ("download_time", "process_time", "upload_time", "download_bytes", "upload_bytes")
    DOWNLOAD_TIME_FIELD_NUMBER: _ClassVar[int]
    PROCESS_TIME_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_TIME_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    download_time: Aggregate
    process_time: Aggregate
    upload_time: Aggregate
    download_bytes: Aggregate
    upload_bytes: Aggregate
    def __init__(self, download_time: _Optional[_Union[Aggregate, _Mapping]] = ..., process_time: _Optional[_Union[Aggregate, _Mapping]] = ..., upload_time: _Optional[_Union[Aggregate, _Mapping]] = ..., download_bytes: _Optional[_Union[Aggregate, _Mapping]] = ..., upload_bytes: _Optional[_Union[Aggregate, _Mapping]] = ...) -> None: ...

class WorkerStatus(_message.Message):
    __slots__ = ("worker_id", "job_id", "datum_status")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DATUM_STATUS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    job_id: str
    datum_status: DatumStatus
    def __init__(self, worker_id: _Optional[str] = ..., job_id: _Optional[str] = ..., datum_status: _Optional[_Union[DatumStatus, _Mapping]] = ...) -> None: ...

class DatumStatus(_message.Message):
    __slots__ = ("started", "data")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    started: _timestamp_pb2.Timestamp
    data: _containers.RepeatedCompositeFieldContainer[InputFile]
    def __init__(self, started: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., data: _Optional[_Iterable[_Union[InputFile, _Mapping]]] = ...) -> None: ...

class ResourceSpec(_message.Message):
    __slots__ = ("cpu", "memory", "gpu", "disk")
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    DISK_FIELD_NUMBER: _ClassVar[int]
    cpu: float
    memory: str
    gpu: GpuSpec
    disk: str
    def __init__(self, cpu: _Optional[float] = ..., memory: _Optional[str] = ..., gpu: _Optional[_Union[GpuSpec, _Mapping]] = ..., disk: _Optional[str] = ...) -> None: ...

class GpuSpec(_message.Message):
    __slots__ = ("type", "number")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    type: str
    number: int
    def __init__(self, type: _Optional[str] = ..., number: _Optional[int] = ...) -> None: ...

class JobSetInfo(_message.Message):
    __slots__ = ("job_set", "jobs")
    JOB_SET_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    job_set: JobSet
    jobs: _containers.RepeatedCompositeFieldContainer[JobInfo]
    def __init__(self, job_set: _Optional[_Union[JobSet, _Mapping]] = ..., jobs: _Optional[_Iterable[_Union[JobInfo, _Mapping]]] = ...) -> None: ...

class JobInfo(_message.Message):
    __slots__ = ("job", "pipeline_version", "output_commit", "restart", "data_processed", "data_skipped", "data_total", "data_failed", "data_recovered", "stats", "state", "reason", "created", "started", "finished", "details", "auth_token")
    JOB_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_VERSION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_COMMIT_FIELD_NUMBER: _ClassVar[int]
    RESTART_FIELD_NUMBER: _ClassVar[int]
    DATA_PROCESSED_FIELD_NUMBER: _ClassVar[int]
    DATA_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    DATA_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DATA_FAILED_FIELD_NUMBER: _ClassVar[int]
    DATA_RECOVERED_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    AUTH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    job: Job
    pipeline_version: int
    output_commit: _pfs_pb2.Commit
    restart: int
    data_processed: int
    data_skipped: int
    data_total: int
    data_failed: int
    data_recovered: int
    stats: ProcessStats
    state: JobState
    reason: str
    created: _timestamp_pb2.Timestamp
    started: _timestamp_pb2.Timestamp
    finished: _timestamp_pb2.Timestamp
    details: JobInfoDetails
    auth_token: str
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., pipeline_version: _Optional[int] = ..., output_commit: _Optional[_Union[_pfs_pb2.Commit, _Mapping]] = ..., restart: _Optional[int] = ..., data_processed: _Optional[int] = ..., data_skipped: _Optional[int] = ..., data_total: _Optional[int] = ..., data_failed: _Optional[int] = ..., data_recovered: _Optional[int] = ..., stats: _Optional[_Union[ProcessStats, _Mapping]] = ..., state: _Optional[_Union[JobState, str]] = ..., reason: _Optional[str] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., details: _Optional[_Union[JobInfoDetails, _Mapping]] = ..., auth_token: _Optional[str] = ...) -> None: ...

class JobInfoDetails(_message.Message):
    __slots__ = ("transform", "parallelism_spec", "egress", "service", "spout", "worker_status", "resource_requests", "resource_limits", "sidecar_resource_limits", "input", "salt", "datum_set_spec", "datum_timeout", "job_timeout", "datum_tries", "scheduling_spec", "pod_spec", "pod_patch", "sidecar_resource_requests")
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    PARALLELISM_SPEC_FIELD_NUMBER: _ClassVar[int]
    EGRESS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    SPOUT_FIELD_NUMBER: _ClassVar[int]
    WORKER_STATUS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    SIDECAR_RESOURCE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    SALT_FIELD_NUMBER: _ClassVar[int]
    DATUM_SET_SPEC_FIELD_NUMBER: _ClassVar[int]
    DATUM_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    JOB_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    DATUM_TRIES_FIELD_NUMBER: _ClassVar[int]
    SCHEDULING_SPEC_FIELD_NUMBER: _ClassVar[int]
    POD_SPEC_FIELD_NUMBER: _ClassVar[int]
    POD_PATCH_FIELD_NUMBER: _ClassVar[int]
    SIDECAR_RESOURCE_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    transform: Transform
    parallelism_spec: ParallelismSpec
    egress: Egress
    service: Service
    spout: Spout
    worker_status: _containers.RepeatedCompositeFieldContainer[WorkerStatus]
    resource_requests: ResourceSpec
    resource_limits: ResourceSpec
    sidecar_resource_limits: ResourceSpec
    input: Input
    salt: str
    datum_set_spec: DatumSetSpec
    datum_timeout: _duration_pb2.Duration
    job_timeout: _duration_pb2.Duration
    datum_tries: int
    scheduling_spec: SchedulingSpec
    pod_spec: str
    pod_patch: str
    sidecar_resource_requests: ResourceSpec
    def __init__(self, transform: _Optional[_Union[Transform, _Mapping]] = ..., parallelism_spec: _Optional[_Union[ParallelismSpec, _Mapping]] = ..., egress: _Optional[_Union[Egress, _Mapping]] = ..., service: _Optional[_Union[Service, _Mapping]] = ..., spout: _Optional[_Union[Spout, _Mapping]] = ..., worker_status: _Optional[_Iterable[_Union[WorkerStatus, _Mapping]]] = ..., resource_requests: _Optional[_Union[ResourceSpec, _Mapping]] = ..., resource_limits: _Optional[_Union[ResourceSpec, _Mapping]] = ..., sidecar_resource_limits: _Optional[_Union[ResourceSpec, _Mapping]] = ..., input: _Optional[_Union[Input, _Mapping]] = ..., salt: _Optional[str] = ..., datum_set_spec: _Optional[_Union[DatumSetSpec, _Mapping]] = ..., datum_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., job_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., datum_tries: _Optional[int] = ..., scheduling_spec: _Optional[_Union[SchedulingSpec, _Mapping]] = ..., pod_spec: _Optional[str] = ..., pod_patch: _Optional[str] = ..., sidecar_resource_requests: _Optional[_Union[ResourceSpec, _Mapping]] = ...) -> None: ...

class Worker(_message.Message):
    __slots__ = ("name", "state")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: WorkerState
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[WorkerState, str]] = ...) -> None: ...

class Pipeline(_message.Message):
    __slots__ = ("project", "name")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    project: _pfs_pb2.Project
    name: str
    def __init__(self, project: _Optional[_Union[_pfs_pb2.Project, _Mapping]] = ..., name: _Optional[str] = ...) -> None: ...

class Toleration(_message.Message):
    __slots__ = ("key", "operator", "value", "effect", "toleration_seconds")
    KEY_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EFFECT_FIELD_NUMBER: _ClassVar[int]
    TOLERATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    key: str
    operator: TolerationOperator
    value: str
    effect: TaintEffect
    toleration_seconds: _wrappers_pb2.Int64Value
    def __init__(self, key: _Optional[str] = ..., operator: _Optional[_Union[TolerationOperator, str]] = ..., value: _Optional[str] = ..., effect: _Optional[_Union[TaintEffect, str]] = ..., toleration_seconds: _Optional[_Union[_wrappers_pb2.Int64Value, _Mapping]] = ...) -> None: ...

class PipelineInfo(_message.Message):
    __slots__ = ("pipeline", "version", "spec_commit", "stopped", "state", "reason", "last_job_state", "parallelism", "type", "auth_token", "details", "user_spec_json", "effective_spec_json", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SPEC_COMMIT_FIELD_NUMBER: _ClassVar[int]
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LAST_JOB_STATE_FIELD_NUMBER: _ClassVar[int]
    PARALLELISM_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    AUTH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    USER_SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_SPEC_JSON_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    version: int
    spec_commit: _pfs_pb2.Commit
    stopped: bool
    state: PipelineState
    reason: str
    last_job_state: JobState
    parallelism: int
    type: PipelineInfoPipelineType
    auth_token: str
    details: PipelineInfoDetails
    user_spec_json: str
    effective_spec_json: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., version: _Optional[int] = ..., spec_commit: _Optional[_Union[_pfs_pb2.Commit, _Mapping]] = ..., stopped: _Optional[bool] = ..., state: _Optional[_Union[PipelineState, str]] = ..., reason: _Optional[str] = ..., last_job_state: _Optional[_Union[JobState, str]] = ..., parallelism: _Optional[int] = ..., type: _Optional[_Union[PipelineInfoPipelineType, str]] = ..., auth_token: _Optional[str] = ..., details: _Optional[_Union[PipelineInfoDetails, _Mapping]] = ..., user_spec_json: _Optional[str] = ..., effective_spec_json: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PipelineInfoDetails(_message.Message):
    __slots__ = ("transform", "tf_job", "parallelism_spec", "egress", "created_at", "updated_at", "created_by", "recent_error", "workers_requested", "workers_available", "output_branch", "resource_requests", "resource_limits", "sidecar_resource_limits", "input", "description", "salt", "reason", "service", "spout", "datum_set_spec", "datum_timeout", "job_timeout", "datum_tries", "scheduling_spec", "pod_spec", "pod_patch", "s3_out", "metadata", "reprocess_spec", "unclaimed_tasks", "worker_rc", "autoscaling", "tolerations", "sidecar_resource_requests", "determined", "maximum_expected_uptime", "workers_started_at")
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    TF_JOB_FIELD_NUMBER: _ClassVar[int]
    PARALLELISM_SPEC_FIELD_NUMBER: _ClassVar[int]
    EGRESS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    RECENT_ERROR_FIELD_NUMBER: _ClassVar[int]
    WORKERS_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    WORKERS_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BRANCH_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    SIDECAR_RESOURCE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SALT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    SPOUT_FIELD_NUMBER: _ClassVar[int]
    DATUM_SET_SPEC_FIELD_NUMBER: _ClassVar[int]
    DATUM_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    JOB_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    DATUM_TRIES_FIELD_NUMBER: _ClassVar[int]
    SCHEDULING_SPEC_FIELD_NUMBER: _ClassVar[int]
    POD_SPEC_FIELD_NUMBER: _ClassVar[int]
    POD_PATCH_FIELD_NUMBER: _ClassVar[int]
    S3_OUT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    REPROCESS_SPEC_FIELD_NUMBER: _ClassVar[int]
    UNCLAIMED_TASKS_FIELD_NUMBER: _ClassVar[int]
    WORKER_RC_FIELD_NUMBER: _ClassVar[int]
    AUTOSCALING_FIELD_NUMBER: _ClassVar[int]
    TOLERATIONS_FIELD_NUMBER: _ClassVar[int]
    SIDECAR_RESOURCE_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    DETERMINED_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_EXPECTED_UPTIME_FIELD_NUMBER: _ClassVar[int]
    WORKERS_STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    transform: Transform
    tf_job: TfJob
    parallelism_spec: ParallelismSpec
    egress: Egress
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    created_by: str
    recent_error: str
    workers_requested: int
    workers_available: int
    output_branch: str
    resource_requests: ResourceSpec
    resource_limits: ResourceSpec
    sidecar_resource_limits: ResourceSpec
    input: Input
    description: str
    salt: str
    reason: str
    service: Service
    spout: Spout
    datum_set_spec: DatumSetSpec
    datum_timeout: _duration_pb2.Duration
    job_timeout: _duration_pb2.Duration
    datum_tries: int
    scheduling_spec: SchedulingSpec
    pod_spec: str
    pod_patch: str
    s3_out: bool
    metadata: Metadata
    reprocess_spec: str
    unclaimed_tasks: int
    worker_rc: str
    autoscaling: bool
    tolerations: _containers.RepeatedCompositeFieldContainer[Toleration]
    sidecar_resource_requests: ResourceSpec
    determined: Determined
    maximum_expected_uptime: _duration_pb2.Duration
    workers_started_at: _timestamp_pb2.Timestamp
    def __init__(self, transform: _Optional[_Union[Transform, _Mapping]] = ..., tf_job: _Optional[_Union[TfJob, _Mapping]] = ..., parallelism_spec: _Optional[_Union[ParallelismSpec, _Mapping]] = ..., egress: _Optional[_Union[Egress, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_by: _Optional[str] = ..., recent_error: _Optional[str] = ..., workers_requested: _Optional[int] = ..., workers_available: _Optional[int] = ..., output_branch: _Optional[str] = ..., resource_requests: _Optional[_Union[ResourceSpec, _Mapping]] = ..., resource_limits: _Optional[_Union[ResourceSpec, _Mapping]] = ..., sidecar_resource_limits: _Optional[_Union[ResourceSpec, _Mapping]] = ..., input: _Optional[_Union[Input, _Mapping]] = ..., description: _Optional[str] = ..., salt: _Optional[str] = ..., reason: _Optional[str] = ..., service: _Optional[_Union[Service, _Mapping]] = ..., spout: _Optional[_Union[Spout, _Mapping]] = ..., datum_set_spec: _Optional[_Union[DatumSetSpec, _Mapping]] = ..., datum_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., job_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., datum_tries: _Optional[int] = ..., scheduling_spec: _Optional[_Union[SchedulingSpec, _Mapping]] = ..., pod_spec: _Optional[str] = ..., pod_patch: _Optional[str] = ..., s3_out: _Optional[bool] = ..., metadata: _Optional[_Union[Metadata, _Mapping]] = ..., reprocess_spec: _Optional[str] = ..., unclaimed_tasks: _Optional[int] = ..., worker_rc: _Optional[str] = ..., autoscaling: _Optional[bool] = ..., tolerations: _Optional[_Iterable[_Union[Toleration, _Mapping]]] = ..., sidecar_resource_requests: _Optional[_Union[ResourceSpec, _Mapping]] = ..., determined: _Optional[_Union[Determined, _Mapping]] = ..., maximum_expected_uptime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., workers_started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PipelineInfos(_message.Message):
    __slots__ = ("pipeline_info",)
    PIPELINE_INFO_FIELD_NUMBER: _ClassVar[int]
    pipeline_info: _containers.RepeatedCompositeFieldContainer[PipelineInfo]
    def __init__(self, pipeline_info: _Optional[_Iterable[_Union[PipelineInfo, _Mapping]]] = ...) -> None: ...

class JobSet(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class InspectJobSetRequest(_message.Message):
    __slots__ = ("job_set", "wait", "details")
    JOB_SET_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    job_set: JobSet
    wait: bool
    details: bool
    def __init__(self, job_set: _Optional[_Union[JobSet, _Mapping]] = ..., wait: _Optional[bool] = ..., details: _Optional[bool] = ...) -> None: ...

class ListJobSetRequest(_message.Message):
    __slots__ = ("details", "projects", "pagination_marker", "number", "reverse", "jq_filter")
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    PAGINATION_MARKER_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    REVERSE_FIELD_NUMBER: _ClassVar[int]
    JQ_FILTER_FIELD_NUMBER: _ClassVar[int]
    details: bool
    projects: _containers.RepeatedCompositeFieldContainer[_pfs_pb2.Project]
    pagination_marker: _timestamp_pb2.Timestamp
    number: int
    reverse: bool
    jq_filter: str
    def __init__(self, details: _Optional[bool] = ..., projects: _Optional[_Iterable[_Union[_pfs_pb2.Project, _Mapping]]] = ..., pagination_marker: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., number: _Optional[int] = ..., reverse: _Optional[bool] = ..., jq_filter: _Optional[str] = ...) -> None: ...

class InspectJobRequest(_message.Message):
    __slots__ = ("job", "wait", "details")
    JOB_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    job: Job
    wait: bool
    details: bool
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., wait: _Optional[bool] = ..., details: _Optional[bool] = ...) -> None: ...

class ListJobRequest(_message.Message):
    __slots__ = ("projects", "pipeline", "input_commit", "history", "details", "jq_filter", "pagination_marker", "number", "reverse")
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    INPUT_COMMIT_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    JQ_FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGINATION_MARKER_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    REVERSE_FIELD_NUMBER: _ClassVar[int]
    projects: _containers.RepeatedCompositeFieldContainer[_pfs_pb2.Project]
    pipeline: Pipeline
    input_commit: _containers.RepeatedCompositeFieldContainer[_pfs_pb2.Commit]
    history: int
    details: bool
    jq_filter: str
    pagination_marker: _timestamp_pb2.Timestamp
    number: int
    reverse: bool
    def __init__(self, projects: _Optional[_Iterable[_Union[_pfs_pb2.Project, _Mapping]]] = ..., pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., input_commit: _Optional[_Iterable[_Union[_pfs_pb2.Commit, _Mapping]]] = ..., history: _Optional[int] = ..., details: _Optional[bool] = ..., jq_filter: _Optional[str] = ..., pagination_marker: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., number: _Optional[int] = ..., reverse: _Optional[bool] = ...) -> None: ...

class SubscribeJobRequest(_message.Message):
    __slots__ = ("pipeline", "details")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    details: bool
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., details: _Optional[bool] = ...) -> None: ...

class DeleteJobRequest(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class StopJobRequest(_message.Message):
    __slots__ = ("job", "reason")
    JOB_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job: Job
    reason: str
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class UpdateJobStateRequest(_message.Message):
    __slots__ = ("job", "state", "reason", "restart", "data_processed", "data_skipped", "data_failed", "data_recovered", "data_total", "stats")
    JOB_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RESTART_FIELD_NUMBER: _ClassVar[int]
    DATA_PROCESSED_FIELD_NUMBER: _ClassVar[int]
    DATA_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    DATA_FAILED_FIELD_NUMBER: _ClassVar[int]
    DATA_RECOVERED_FIELD_NUMBER: _ClassVar[int]
    DATA_TOTAL_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    job: Job
    state: JobState
    reason: str
    restart: int
    data_processed: int
    data_skipped: int
    data_failed: int
    data_recovered: int
    data_total: int
    stats: ProcessStats
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., state: _Optional[_Union[JobState, str]] = ..., reason: _Optional[str] = ..., restart: _Optional[int] = ..., data_processed: _Optional[int] = ..., data_skipped: _Optional[int] = ..., data_failed: _Optional[int] = ..., data_recovered: _Optional[int] = ..., data_total: _Optional[int] = ..., stats: _Optional[_Union[ProcessStats, _Mapping]] = ...) -> None: ...

class GetLogsRequest(_message.Message):
    __slots__ = ("pipeline", "job", "data_filters", "datum", "master", "follow", "tail", "use_loki_backend", "since")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    DATA_FILTERS_FIELD_NUMBER: _ClassVar[int]
    DATUM_FIELD_NUMBER: _ClassVar[int]
    MASTER_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    USE_LOKI_BACKEND_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    job: Job
    data_filters: _containers.RepeatedScalarFieldContainer[str]
    datum: Datum
    master: bool
    follow: bool
    tail: int
    use_loki_backend: bool
    since: _duration_pb2.Duration
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., job: _Optional[_Union[Job, _Mapping]] = ..., data_filters: _Optional[_Iterable[str]] = ..., datum: _Optional[_Union[Datum, _Mapping]] = ..., master: _Optional[bool] = ..., follow: _Optional[bool] = ..., tail: _Optional[int] = ..., use_loki_backend: _Optional[bool] = ..., since: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class LogMessage(_message.Message):
    __slots__ = ("project_name", "pipeline_name", "job_id", "worker_id", "datum_id", "master", "data", "user", "ts", "message")
    PROJECT_NAME_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_NAME_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    DATUM_ID_FIELD_NUMBER: _ClassVar[int]
    MASTER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    project_name: str
    pipeline_name: str
    job_id: str
    worker_id: str
    datum_id: str
    master: bool
    data: _containers.RepeatedCompositeFieldContainer[InputFile]
    user: bool
    ts: _timestamp_pb2.Timestamp
    message: str
    def __init__(self, project_name: _Optional[str] = ..., pipeline_name: _Optional[str] = ..., job_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., datum_id: _Optional[str] = ..., master: _Optional[bool] = ..., data: _Optional[_Iterable[_Union[InputFile, _Mapping]]] = ..., user: _Optional[bool] = ..., ts: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ...) -> None: ...

class RestartDatumRequest(_message.Message):
    __slots__ = ("job", "data_filters")
    JOB_FIELD_NUMBER: _ClassVar[int]
    DATA_FILTERS_FIELD_NUMBER: _ClassVar[int]
    job: Job
    data_filters: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., data_filters: _Optional[_Iterable[str]] = ...) -> None: ...

class InspectDatumRequest(_message.Message):
    __slots__ = ("datum",)
    DATUM_FIELD_NUMBER: _ClassVar[int]
    datum: Datum
    def __init__(self, datum: _Optional[_Union[Datum, _Mapping]] = ...) -> None: ...

class ListDatumRequest(_message.Message):
    __slots__ = ("job", "input", "filter", "pagination_marker", "number", "reverse")
    JOB_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGINATION_MARKER_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    REVERSE_FIELD_NUMBER: _ClassVar[int]
    job: Job
    input: Input
    filter: ListDatumRequestFilter
    pagination_marker: str
    number: int
    reverse: bool
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., input: _Optional[_Union[Input, _Mapping]] = ..., filter: _Optional[_Union[ListDatumRequestFilter, _Mapping]] = ..., pagination_marker: _Optional[str] = ..., number: _Optional[int] = ..., reverse: _Optional[bool] = ...) -> None: ...

class ListDatumRequestFilter(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: _containers.RepeatedScalarFieldContainer[DatumState]
    def __init__(self, state: _Optional[_Iterable[_Union[DatumState, str]]] = ...) -> None: ...

class StartCreateDatumRequest(_message.Message):
    __slots__ = ("input", "number")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    input: Input
    number: int
    def __init__(self, input: _Optional[_Union[Input, _Mapping]] = ..., number: _Optional[int] = ...) -> None: ...

class ContinueCreateDatumRequest(_message.Message):
    __slots__ = ("number",)
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    number: int
    def __init__(self, number: _Optional[int] = ...) -> None: ...

class CreateDatumRequest(_message.Message):
    __slots__ = ("start",)
    START_FIELD_NUMBER: _ClassVar[int]
    CONTINUE_FIELD_NUMBER: _ClassVar[int]
    start: StartCreateDatumRequest
    def __init__(self, start: _Optional[_Union[StartCreateDatumRequest, _Mapping]] = ..., **kwargs) -> None: ...

class DatumSetSpec(_message.Message):
    __slots__ = ("number", "size_bytes", "per_worker")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PER_WORKER_FIELD_NUMBER: _ClassVar[int]
    number: int
    size_bytes: int
    per_worker: int
    def __init__(self, number: _Optional[int] = ..., size_bytes: _Optional[int] = ..., per_worker: _Optional[int] = ...) -> None: ...

class SchedulingSpec(_message.Message):
    __slots__ = ("node_selector", "priority_class_name")
    class NodeSelectorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    node_selector: _containers.ScalarMap[str, str]
    priority_class_name: str
    def __init__(self, node_selector: _Optional[_Mapping[str, str]] = ..., priority_class_name: _Optional[str] = ...) -> None: ...

class RerunPipelineRequest(_message.Message):
    __slots__ = ("pipeline", "reprocess")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    REPROCESS_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    reprocess: bool
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., reprocess: _Optional[bool] = ...) -> None: ...

class CreatePipelineRequest(_message.Message):
    __slots__ = ("pipeline", "tf_job", "transform", "parallelism_spec", "egress", "update", "output_branch", "s3_out", "resource_requests", "resource_limits", "sidecar_resource_limits", "input", "description", "reprocess", "service", "spout", "datum_set_spec", "datum_timeout", "job_timeout", "salt", "datum_tries", "scheduling_spec", "pod_spec", "pod_patch", "spec_commit", "metadata", "reprocess_spec", "autoscaling", "tolerations", "sidecar_resource_requests", "dry_run", "determined", "maximum_expected_uptime")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    TF_JOB_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    PARALLELISM_SPEC_FIELD_NUMBER: _ClassVar[int]
    EGRESS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BRANCH_FIELD_NUMBER: _ClassVar[int]
    S3_OUT_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    SIDECAR_RESOURCE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REPROCESS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    SPOUT_FIELD_NUMBER: _ClassVar[int]
    DATUM_SET_SPEC_FIELD_NUMBER: _ClassVar[int]
    DATUM_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    JOB_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    SALT_FIELD_NUMBER: _ClassVar[int]
    DATUM_TRIES_FIELD_NUMBER: _ClassVar[int]
    SCHEDULING_SPEC_FIELD_NUMBER: _ClassVar[int]
    POD_SPEC_FIELD_NUMBER: _ClassVar[int]
    POD_PATCH_FIELD_NUMBER: _ClassVar[int]
    SPEC_COMMIT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    REPROCESS_SPEC_FIELD_NUMBER: _ClassVar[int]
    AUTOSCALING_FIELD_NUMBER: _ClassVar[int]
    TOLERATIONS_FIELD_NUMBER: _ClassVar[int]
    SIDECAR_RESOURCE_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    DETERMINED_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_EXPECTED_UPTIME_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    tf_job: TfJob
    transform: Transform
    parallelism_spec: ParallelismSpec
    egress: Egress
    update: bool
    output_branch: str
    s3_out: bool
    resource_requests: ResourceSpec
    resource_limits: ResourceSpec
    sidecar_resource_limits: ResourceSpec
    input: Input
    description: str
    reprocess: bool
    service: Service
    spout: Spout
    datum_set_spec: DatumSetSpec
    datum_timeout: _duration_pb2.Duration
    job_timeout: _duration_pb2.Duration
    salt: str
    datum_tries: int
    scheduling_spec: SchedulingSpec
    pod_spec: str
    pod_patch: str
    spec_commit: _pfs_pb2.Commit
    metadata: Metadata
    reprocess_spec: str
    autoscaling: bool
    tolerations: _containers.RepeatedCompositeFieldContainer[Toleration]
    sidecar_resource_requests: ResourceSpec
    dry_run: bool
    determined: Determined
    maximum_expected_uptime: _duration_pb2.Duration
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., tf_job: _Optional[_Union[TfJob, _Mapping]] = ..., transform: _Optional[_Union[Transform, _Mapping]] = ..., parallelism_spec: _Optional[_Union[ParallelismSpec, _Mapping]] = ..., egress: _Optional[_Union[Egress, _Mapping]] = ..., update: _Optional[bool] = ..., output_branch: _Optional[str] = ..., s3_out: _Optional[bool] = ..., resource_requests: _Optional[_Union[ResourceSpec, _Mapping]] = ..., resource_limits: _Optional[_Union[ResourceSpec, _Mapping]] = ..., sidecar_resource_limits: _Optional[_Union[ResourceSpec, _Mapping]] = ..., input: _Optional[_Union[Input, _Mapping]] = ..., description: _Optional[str] = ..., reprocess: _Optional[bool] = ..., service: _Optional[_Union[Service, _Mapping]] = ..., spout: _Optional[_Union[Spout, _Mapping]] = ..., datum_set_spec: _Optional[_Union[DatumSetSpec, _Mapping]] = ..., datum_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., job_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., salt: _Optional[str] = ..., datum_tries: _Optional[int] = ..., scheduling_spec: _Optional[_Union[SchedulingSpec, _Mapping]] = ..., pod_spec: _Optional[str] = ..., pod_patch: _Optional[str] = ..., spec_commit: _Optional[_Union[_pfs_pb2.Commit, _Mapping]] = ..., metadata: _Optional[_Union[Metadata, _Mapping]] = ..., reprocess_spec: _Optional[str] = ..., autoscaling: _Optional[bool] = ..., tolerations: _Optional[_Iterable[_Union[Toleration, _Mapping]]] = ..., sidecar_resource_requests: _Optional[_Union[ResourceSpec, _Mapping]] = ..., dry_run: _Optional[bool] = ..., determined: _Optional[_Union[Determined, _Mapping]] = ..., maximum_expected_uptime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class CreatePipelineV2Request(_message.Message):
    __slots__ = ("create_pipeline_request_json", "dry_run", "update", "reprocess")
    CREATE_PIPELINE_REQUEST_JSON_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    REPROCESS_FIELD_NUMBER: _ClassVar[int]
    create_pipeline_request_json: str
    dry_run: bool
    update: bool
    reprocess: bool
    def __init__(self, create_pipeline_request_json: _Optional[str] = ..., dry_run: _Optional[bool] = ..., update: _Optional[bool] = ..., reprocess: _Optional[bool] = ...) -> None: ...

class CreatePipelineV2Response(_message.Message):
    __slots__ = ("effective_create_pipeline_request_json",)
    EFFECTIVE_CREATE_PIPELINE_REQUEST_JSON_FIELD_NUMBER: _ClassVar[int]
    effective_create_pipeline_request_json: str
    def __init__(self, effective_create_pipeline_request_json: _Optional[str] = ...) -> None: ...

class InspectPipelineRequest(_message.Message):
    __slots__ = ("pipeline", "details")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    details: bool
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., details: _Optional[bool] = ...) -> None: ...

class ListPipelineRequest(_message.Message):
    __slots__ = ("pipeline", "history", "details", "jq_filter", "commit_set", "projects", "page")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    JQ_FILTER_FIELD_NUMBER: _ClassVar[int]
    COMMIT_SET_FIELD_NUMBER: _ClassVar[int]
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    history: int
    details: bool
    jq_filter: str
    commit_set: _pfs_pb2.CommitSet
    projects: _containers.RepeatedCompositeFieldContainer[_pfs_pb2.Project]
    page: PipelinePage
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., history: _Optional[int] = ..., details: _Optional[bool] = ..., jq_filter: _Optional[str] = ..., commit_set: _Optional[_Union[_pfs_pb2.CommitSet, _Mapping]] = ..., projects: _Optional[_Iterable[_Union[_pfs_pb2.Project, _Mapping]]] = ..., page: _Optional[_Union[PipelinePage, _Mapping]] = ...) -> None: ...

class PipelinePage(_message.Message):
    __slots__ = ("order", "page_size", "page_index")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_INDEX_FIELD_NUMBER: _ClassVar[int]
    order: PipelinePageOrdering
    page_size: int
    page_index: int
    def __init__(self, order: _Optional[_Union[PipelinePageOrdering, str]] = ..., page_size: _Optional[int] = ..., page_index: _Optional[int] = ...) -> None: ...

class DeletePipelineRequest(_message.Message):
    __slots__ = ("pipeline", "all", "force", "keep_repo", "must_exist")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    KEEP_REPO_FIELD_NUMBER: _ClassVar[int]
    MUST_EXIST_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    all: bool
    force: bool
    keep_repo: bool
    must_exist: bool
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., all: _Optional[bool] = ..., force: _Optional[bool] = ..., keep_repo: _Optional[bool] = ..., must_exist: _Optional[bool] = ...) -> None: ...

class DeletePipelinesRequest(_message.Message):
    __slots__ = ("projects", "force", "keep_repo", "all")
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    KEEP_REPO_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    projects: _containers.RepeatedCompositeFieldContainer[_pfs_pb2.Project]
    force: bool
    keep_repo: bool
    all: bool
    def __init__(self, projects: _Optional[_Iterable[_Union[_pfs_pb2.Project, _Mapping]]] = ..., force: _Optional[bool] = ..., keep_repo: _Optional[bool] = ..., all: _Optional[bool] = ...) -> None: ...

class DeletePipelinesResponse(_message.Message):
    __slots__ = ("pipelines",)
    PIPELINES_FIELD_NUMBER: _ClassVar[int]
    pipelines: _containers.RepeatedCompositeFieldContainer[Pipeline]
    def __init__(self, pipelines: _Optional[_Iterable[_Union[Pipeline, _Mapping]]] = ...) -> None: ...

class StartPipelineRequest(_message.Message):
    __slots__ = ("pipeline",)
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ...) -> None: ...

class StopPipelineRequest(_message.Message):
    __slots__ = ("pipeline", "must_exist")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    MUST_EXIST_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    must_exist: bool
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., must_exist: _Optional[bool] = ...) -> None: ...

class RunPipelineRequest(_message.Message):
    __slots__ = ("pipeline", "provenance", "job_id")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    provenance: _containers.RepeatedCompositeFieldContainer[_pfs_pb2.Commit]
    job_id: str
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., provenance: _Optional[_Iterable[_Union[_pfs_pb2.Commit, _Mapping]]] = ..., job_id: _Optional[str] = ...) -> None: ...

class RunCronRequest(_message.Message):
    __slots__ = ("pipeline",)
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    pipeline: Pipeline
    def __init__(self, pipeline: _Optional[_Union[Pipeline, _Mapping]] = ...) -> None: ...

class CheckStatusRequest(_message.Message):
    __slots__ = ("all", "project")
    ALL_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    all: bool
    project: _pfs_pb2.Project
    def __init__(self, all: _Optional[bool] = ..., project: _Optional[_Union[_pfs_pb2.Project, _Mapping]] = ...) -> None: ...

class CheckStatusResponse(_message.Message):
    __slots__ = ("project", "pipeline", "alerts")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    project: _pfs_pb2.Project
    pipeline: Pipeline
    alerts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, project: _Optional[_Union[_pfs_pb2.Project, _Mapping]] = ..., pipeline: _Optional[_Union[Pipeline, _Mapping]] = ..., alerts: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateSecretRequest(_message.Message):
    __slots__ = ("file",)
    FILE_FIELD_NUMBER: _ClassVar[int]
    file: bytes
    def __init__(self, file: _Optional[bytes] = ...) -> None: ...

class DeleteSecretRequest(_message.Message):
    __slots__ = ("secret",)
    SECRET_FIELD_NUMBER: _ClassVar[int]
    secret: Secret
    def __init__(self, secret: _Optional[_Union[Secret, _Mapping]] = ...) -> None: ...

class InspectSecretRequest(_message.Message):
    __slots__ = ("secret",)
    SECRET_FIELD_NUMBER: _ClassVar[int]
    secret: Secret
    def __init__(self, secret: _Optional[_Union[Secret, _Mapping]] = ...) -> None: ...

class Secret(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class SecretInfo(_message.Message):
    __slots__ = ("secret", "type", "creation_timestamp")
    SECRET_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CREATION_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    secret: Secret
    type: str
    creation_timestamp: _timestamp_pb2.Timestamp
    def __init__(self, secret: _Optional[_Union[Secret, _Mapping]] = ..., type: _Optional[str] = ..., creation_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SecretInfos(_message.Message):
    __slots__ = ("secret_info",)
    SECRET_INFO_FIELD_NUMBER: _ClassVar[int]
    secret_info: _containers.RepeatedCompositeFieldContainer[SecretInfo]
    def __init__(self, secret_info: _Optional[_Iterable[_Union[SecretInfo, _Mapping]]] = ...) -> None: ...

class ActivateAuthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ActivateAuthResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RunLoadTestRequest(_message.Message):
    __slots__ = ("dag_spec", "load_spec", "seed", "parallelism", "pod_patch", "state_id")
    DAG_SPEC_FIELD_NUMBER: _ClassVar[int]
    LOAD_SPEC_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PARALLELISM_FIELD_NUMBER: _ClassVar[int]
    POD_PATCH_FIELD_NUMBER: _ClassVar[int]
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    dag_spec: str
    load_spec: str
    seed: int
    parallelism: int
    pod_patch: str
    state_id: str
    def __init__(self, dag_spec: _Optional[str] = ..., load_spec: _Optional[str] = ..., seed: _Optional[int] = ..., parallelism: _Optional[int] = ..., pod_patch: _Optional[str] = ..., state_id: _Optional[str] = ...) -> None: ...

class RunLoadTestResponse(_message.Message):
    __slots__ = ("error", "state_id")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STATE_ID_FIELD_NUMBER: _ClassVar[int]
    error: str
    state_id: str
    def __init__(self, error: _Optional[str] = ..., state_id: _Optional[str] = ...) -> None: ...

class RenderTemplateRequest(_message.Message):
    __slots__ = ("template", "args")
    class ArgsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    template: str
    args: _containers.ScalarMap[str, str]
    def __init__(self, template: _Optional[str] = ..., args: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RenderTemplateResponse(_message.Message):
    __slots__ = ("json", "specs")
    JSON_FIELD_NUMBER: _ClassVar[int]
    SPECS_FIELD_NUMBER: _ClassVar[int]
    json: str
    specs: _containers.RepeatedCompositeFieldContainer[CreatePipelineRequest]
    def __init__(self, json: _Optional[str] = ..., specs: _Optional[_Iterable[_Union[CreatePipelineRequest, _Mapping]]] = ...) -> None: ...

class LokiRequest(_message.Message):
    __slots__ = ("since", "query")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    since: _duration_pb2.Duration
    query: str
    def __init__(self, since: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., query: _Optional[str] = ...) -> None: ...

class LokiLogMessage(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: str
    def __init__(self, message: _Optional[str] = ...) -> None: ...

class ClusterDefaults(_message.Message):
    __slots__ = ("create_pipeline_request",)
    CREATE_PIPELINE_REQUEST_FIELD_NUMBER: _ClassVar[int]
    create_pipeline_request: CreatePipelineRequest
    def __init__(self, create_pipeline_request: _Optional[_Union[CreatePipelineRequest, _Mapping]] = ...) -> None: ...

class GetClusterDefaultsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetClusterDefaultsResponse(_message.Message):
    __slots__ = ("cluster_defaults_json",)
    CLUSTER_DEFAULTS_JSON_FIELD_NUMBER: _ClassVar[int]
    cluster_defaults_json: str
    def __init__(self, cluster_defaults_json: _Optional[str] = ...) -> None: ...

class SetClusterDefaultsRequest(_message.Message):
    __slots__ = ("regenerate", "reprocess", "dry_run", "cluster_defaults_json")
    REGENERATE_FIELD_NUMBER: _ClassVar[int]
    REPROCESS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_DEFAULTS_JSON_FIELD_NUMBER: _ClassVar[int]
    regenerate: bool
    reprocess: bool
    dry_run: bool
    cluster_defaults_json: str
    def __init__(self, regenerate: _Optional[bool] = ..., reprocess: _Optional[bool] = ..., dry_run: _Optional[bool] = ..., cluster_defaults_json: _Optional[str] = ...) -> None: ...

class SetClusterDefaultsResponse(_message.Message):
    __slots__ = ("affected_pipelines",)
    AFFECTED_PIPELINES_FIELD_NUMBER: _ClassVar[int]
    affected_pipelines: _containers.RepeatedCompositeFieldContainer[Pipeline]
    def __init__(self, affected_pipelines: _Optional[_Iterable[_Union[Pipeline, _Mapping]]] = ...) -> None: ...

class CreatePipelineTransaction(_message.Message):
    __slots__ = ("create_pipeline_request", "user_json", "effective_json", "created_by")
    CREATE_PIPELINE_REQUEST_FIELD_NUMBER: _ClassVar[int]
    USER_JSON_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    create_pipeline_request: CreatePipelineRequest
    user_json: str
    effective_json: str
    created_by: str
    def __init__(self, create_pipeline_request: _Optional[_Union[CreatePipelineRequest, _Mapping]] = ..., user_json: _Optional[str] = ..., effective_json: _Optional[str] = ..., created_by: _Optional[str] = ...) -> None: ...

class ProjectDefaults(_message.Message):
    __slots__ = ("create_pipeline_request",)
    CREATE_PIPELINE_REQUEST_FIELD_NUMBER: _ClassVar[int]
    create_pipeline_request: CreatePipelineRequest
    def __init__(self, create_pipeline_request: _Optional[_Union[CreatePipelineRequest, _Mapping]] = ...) -> None: ...

class GetProjectDefaultsRequest(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: _pfs_pb2.Project
    def __init__(self, project: _Optional[_Union[_pfs_pb2.Project, _Mapping]] = ...) -> None: ...

class GetProjectDefaultsResponse(_message.Message):
    __slots__ = ("project_defaults_json", "created_by", "created_at")
    PROJECT_DEFAULTS_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    project_defaults_json: str
    created_by: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, project_defaults_json: _Optional[str] = ..., created_by: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetProjectDefaultsRequest(_message.Message):
    __slots__ = ("project", "regenerate", "reprocess", "dry_run", "project_defaults_json")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    REGENERATE_FIELD_NUMBER: _ClassVar[int]
    REPROCESS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    PROJECT_DEFAULTS_JSON_FIELD_NUMBER: _ClassVar[int]
    project: _pfs_pb2.Project
    regenerate: bool
    reprocess: bool
    dry_run: bool
    project_defaults_json: str
    def __init__(self, project: _Optional[_Union[_pfs_pb2.Project, _Mapping]] = ..., regenerate: _Optional[bool] = ..., reprocess: _Optional[bool] = ..., dry_run: _Optional[bool] = ..., project_defaults_json: _Optional[str] = ...) -> None: ...

class SetProjectDefaultsResponse(_message.Message):
    __slots__ = ("affected_pipelines",)
    AFFECTED_PIPELINES_FIELD_NUMBER: _ClassVar[int]
    affected_pipelines: _containers.RepeatedCompositeFieldContainer[Pipeline]
    def __init__(self, affected_pipelines: _Optional[_Iterable[_Union[Pipeline, _Mapping]]] = ...) -> None: ...

class PipelinesSummaryRequest(_message.Message):
    __slots__ = ("projects",)
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    projects: _containers.RepeatedCompositeFieldContainer[_pfs_pb2.ProjectPicker]
    def __init__(self, projects: _Optional[_Iterable[_Union[_pfs_pb2.ProjectPicker, _Mapping]]] = ...) -> None: ...

class PipelinesSummaryResponse(_message.Message):
    __slots__ = ("summaries",)
    SUMMARIES_FIELD_NUMBER: _ClassVar[int]
    summaries: _containers.RepeatedCompositeFieldContainer[PipelinesSummary]
    def __init__(self, summaries: _Optional[_Iterable[_Union[PipelinesSummary, _Mapping]]] = ...) -> None: ...

class PipelinesSummary(_message.Message):
    __slots__ = ("project", "active_pipelines", "paused_pipelines", "failed_pipelines", "unhealthy_pipelines")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_PIPELINES_FIELD_NUMBER: _ClassVar[int]
    PAUSED_PIPELINES_FIELD_NUMBER: _ClassVar[int]
    FAILED_PIPELINES_FIELD_NUMBER: _ClassVar[int]
    UNHEALTHY_PIPELINES_FIELD_NUMBER: _ClassVar[int]
    project: _pfs_pb2.Project
    active_pipelines: int
    paused_pipelines: int
    failed_pipelines: int
    unhealthy_pipelines: int
    def __init__(self, project: _Optional[_Union[_pfs_pb2.Project, _Mapping]] = ..., active_pipelines: _Optional[int] = ..., paused_pipelines: _Optional[int] = ..., failed_pipelines: _Optional[int] = ..., unhealthy_pipelines: _Optional[int] = ...) -> None: ...

class PipelinePicker(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: PipelinePickerPipelineName
    def __init__(self, name: _Optional[_Union[PipelinePickerPipelineName, _Mapping]] = ...) -> None: ...

class PipelinePickerPipelineName(_message.Message):
    __slots__ = ("project", "name")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    project: _pfs_pb2.ProjectPicker
    name: str
    def __init__(self, project: _Optional[_Union[_pfs_pb2.ProjectPicker, _Mapping]] = ..., name: _Optional[str] = ...) -> None: ...
