import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tusk.pachyderm_api import pps_pb2 as _pps_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LogLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOG_LEVEL_UNSET: _ClassVar[LogLevel]
    LOG_LEVEL_DEBUG: _ClassVar[LogLevel]
    LOG_LEVEL_INFO: _ClassVar[LogLevel]
    LOG_LEVEL_ERROR: _ClassVar[LogLevel]
LOG_LEVEL_UNSET: LogLevel
LOG_LEVEL_DEBUG: LogLevel
LOG_LEVEL_INFO: LogLevel
LOG_LEVEL_ERROR: LogLevel

class LogQuery(_message.Message):
    __slots__ = ("user", "admin")
    USER_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    user: UserLogQuery
    admin: AdminLogQuery
    def __init__(self, user: _Optional[_Union[UserLogQuery, _Mapping]] = ..., admin: _Optional[_Union[AdminLogQuery, _Mapping]] = ...) -> None: ...

class AdminLogQuery(_message.Message):
    __slots__ = ("logql", "pod", "pod_container", "app", "master", "storage", "user")
    LOGQL_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    POD_CONTAINER_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    MASTER_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    logql: str
    pod: str
    pod_container: PodContainer
    app: str
    master: PipelineLogQuery
    storage: PipelineLogQuery
    user: UserLogQuery
    def __init__(self, logql: _Optional[str] = ..., pod: _Optional[str] = ..., pod_container: _Optional[_Union[PodContainer, _Mapping]] = ..., app: _Optional[str] = ..., master: _Optional[_Union[PipelineLogQuery, _Mapping]] = ..., storage: _Optional[_Union[PipelineLogQuery, _Mapping]] = ..., user: _Optional[_Union[UserLogQuery, _Mapping]] = ...) -> None: ...

class PodContainer(_message.Message):
    __slots__ = ("pod", "container")
    POD_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    pod: str
    container: str
    def __init__(self, pod: _Optional[str] = ..., container: _Optional[str] = ...) -> None: ...

class UserLogQuery(_message.Message):
    __slots__ = ("project", "pipeline", "datum", "job", "pipeline_job", "job_datum", "pipeline_datum")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    DATUM_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_JOB_FIELD_NUMBER: _ClassVar[int]
    JOB_DATUM_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_DATUM_FIELD_NUMBER: _ClassVar[int]
    project: str
    pipeline: PipelineLogQuery
    datum: str
    job: str
    pipeline_job: PipelineJobLogQuery
    job_datum: JobDatumLogQuery
    pipeline_datum: PipelineDatumLogQuery
    def __init__(self, project: _Optional[str] = ..., pipeline: _Optional[_Union[PipelineLogQuery, _Mapping]] = ..., datum: _Optional[str] = ..., job: _Optional[str] = ..., pipeline_job: _Optional[_Union[PipelineJobLogQuery, _Mapping]] = ..., job_datum: _Optional[_Union[JobDatumLogQuery, _Mapping]] = ..., pipeline_datum: _Optional[_Union[PipelineDatumLogQuery, _Mapping]] = ...) -> None: ...

class PipelineLogQuery(_message.Message):
    __slots__ = ("project", "pipeline")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    project: str
    pipeline: str
    def __init__(self, project: _Optional[str] = ..., pipeline: _Optional[str] = ...) -> None: ...

class PipelineJobLogQuery(_message.Message):
    __slots__ = ("pipeline", "job")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    pipeline: PipelineLogQuery
    job: str
    def __init__(self, pipeline: _Optional[_Union[PipelineLogQuery, _Mapping]] = ..., job: _Optional[str] = ...) -> None: ...

class JobDatumLogQuery(_message.Message):
    __slots__ = ("job", "datum")
    JOB_FIELD_NUMBER: _ClassVar[int]
    DATUM_FIELD_NUMBER: _ClassVar[int]
    job: str
    datum: str
    def __init__(self, job: _Optional[str] = ..., datum: _Optional[str] = ...) -> None: ...

class PipelineDatumLogQuery(_message.Message):
    __slots__ = ("pipeline", "datum")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    DATUM_FIELD_NUMBER: _ClassVar[int]
    pipeline: PipelineLogQuery
    datum: str
    def __init__(self, pipeline: _Optional[_Union[PipelineLogQuery, _Mapping]] = ..., datum: _Optional[str] = ...) -> None: ...

class LogFilter(_message.Message):
    __slots__ = ("time_range", "limit", "regex", "level", "user_logs_only")
    TIME_RANGE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    REGEX_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    USER_LOGS_ONLY_FIELD_NUMBER: _ClassVar[int]
    time_range: TimeRangeLogFilter
    limit: int
    regex: RegexLogFilter
    level: LogLevel
    user_logs_only: bool
    def __init__(self, time_range: _Optional[_Union[TimeRangeLogFilter, _Mapping]] = ..., limit: _Optional[int] = ..., regex: _Optional[_Union[RegexLogFilter, _Mapping]] = ..., level: _Optional[_Union[LogLevel, str]] = ..., user_logs_only: _Optional[bool] = ...) -> None: ...

class TimeRangeLogFilter(_message.Message):
    __slots__ = ("until", "offset")
    FROM_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    until: _timestamp_pb2.Timestamp
    offset: int
    def __init__(self, until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., offset: _Optional[int] = ..., **kwargs) -> None: ...

class RegexLogFilter(_message.Message):
    __slots__ = ("pattern", "negate")
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    NEGATE_FIELD_NUMBER: _ClassVar[int]
    pattern: str
    negate: bool
    def __init__(self, pattern: _Optional[str] = ..., negate: _Optional[bool] = ...) -> None: ...

class GetLogsRequest(_message.Message):
    __slots__ = ("query", "filter", "tail", "want_paging_hint")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    WANT_PAGING_HINT_FIELD_NUMBER: _ClassVar[int]
    query: LogQuery
    filter: LogFilter
    tail: bool
    want_paging_hint: bool
    def __init__(self, query: _Optional[_Union[LogQuery, _Mapping]] = ..., filter: _Optional[_Union[LogFilter, _Mapping]] = ..., tail: _Optional[bool] = ..., want_paging_hint: _Optional[bool] = ...) -> None: ...

class GetLogsResponse(_message.Message):
    __slots__ = ("paging_hint", "log")
    PAGING_HINT_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    paging_hint: PagingHint
    log: LogMessage
    def __init__(self, paging_hint: _Optional[_Union[PagingHint, _Mapping]] = ..., log: _Optional[_Union[LogMessage, _Mapping]] = ...) -> None: ...

class PagingHint(_message.Message):
    __slots__ = ("older", "newer")
    OLDER_FIELD_NUMBER: _ClassVar[int]
    NEWER_FIELD_NUMBER: _ClassVar[int]
    older: GetLogsRequest
    newer: GetLogsRequest
    def __init__(self, older: _Optional[_Union[GetLogsRequest, _Mapping]] = ..., newer: _Optional[_Union[GetLogsRequest, _Mapping]] = ...) -> None: ...

class VerbatimLogMessage(_message.Message):
    __slots__ = ("line", "timestamp")
    LINE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    line: bytes
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, line: _Optional[bytes] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LogMessage(_message.Message):
    __slots__ = ("verbatim", "object", "native_timestamp", "pps_log_message")
    VERBATIM_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    NATIVE_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    PPS_LOG_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    verbatim: VerbatimLogMessage
    object: _struct_pb2.Struct
    native_timestamp: _timestamp_pb2.Timestamp
    pps_log_message: _pps_pb2.LogMessage
    def __init__(self, verbatim: _Optional[_Union[VerbatimLogMessage, _Mapping]] = ..., object: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., native_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., pps_log_message: _Optional[_Union[_pps_pb2.LogMessage, _Mapping]] = ...) -> None: ...
