from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import wrappers_pb2 as _wrappers_pb2
from tusk.pachyderm_api import cdr_pb2 as _cdr_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AppendFile(_message.Message):
    __slots__ = ("path", "data")
    PATH_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    path: str
    data: _wrappers_pb2.BytesValue
    def __init__(self, path: _Optional[str] = ..., data: _Optional[_Union[_wrappers_pb2.BytesValue, _Mapping]] = ...) -> None: ...

class DeleteFile(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class CopyFile(_message.Message):
    __slots__ = ("fileset_id", "src", "dst")
    FILESET_ID_FIELD_NUMBER: _ClassVar[int]
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    fileset_id: str
    src: str
    dst: str
    def __init__(self, fileset_id: _Optional[str] = ..., src: _Optional[str] = ..., dst: _Optional[str] = ...) -> None: ...

class CreateFilesetRequest(_message.Message):
    __slots__ = ("append_file", "delete_file", "copy_file")
    APPEND_FILE_FIELD_NUMBER: _ClassVar[int]
    DELETE_FILE_FIELD_NUMBER: _ClassVar[int]
    COPY_FILE_FIELD_NUMBER: _ClassVar[int]
    append_file: AppendFile
    delete_file: DeleteFile
    copy_file: CopyFile
    def __init__(self, append_file: _Optional[_Union[AppendFile, _Mapping]] = ..., delete_file: _Optional[_Union[DeleteFile, _Mapping]] = ..., copy_file: _Optional[_Union[CopyFile, _Mapping]] = ...) -> None: ...

class CreateFilesetResponse(_message.Message):
    __slots__ = ("fileset_id",)
    FILESET_ID_FIELD_NUMBER: _ClassVar[int]
    fileset_id: str
    def __init__(self, fileset_id: _Optional[str] = ...) -> None: ...

class FileFilter(_message.Message):
    __slots__ = ("path_range", "path_regex")
    PATH_RANGE_FIELD_NUMBER: _ClassVar[int]
    PATH_REGEX_FIELD_NUMBER: _ClassVar[int]
    path_range: PathRange
    path_regex: str
    def __init__(self, path_range: _Optional[_Union[PathRange, _Mapping]] = ..., path_regex: _Optional[str] = ...) -> None: ...

class ReadFilesetRequest(_message.Message):
    __slots__ = ("fileset_id", "filters", "empty_files")
    FILESET_ID_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    EMPTY_FILES_FIELD_NUMBER: _ClassVar[int]
    fileset_id: str
    filters: _containers.RepeatedCompositeFieldContainer[FileFilter]
    empty_files: bool
    def __init__(self, fileset_id: _Optional[str] = ..., filters: _Optional[_Iterable[_Union[FileFilter, _Mapping]]] = ..., empty_files: _Optional[bool] = ...) -> None: ...

class ReadFilesetResponse(_message.Message):
    __slots__ = ("path", "data")
    PATH_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    path: str
    data: _wrappers_pb2.BytesValue
    def __init__(self, path: _Optional[str] = ..., data: _Optional[_Union[_wrappers_pb2.BytesValue, _Mapping]] = ...) -> None: ...

class ReadFilesetCdrResponse(_message.Message):
    __slots__ = ("path", "ref")
    PATH_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    path: str
    ref: _cdr_pb2.Ref
    def __init__(self, path: _Optional[str] = ..., ref: _Optional[_Union[_cdr_pb2.Ref, _Mapping]] = ...) -> None: ...

class RenewFilesetRequest(_message.Message):
    __slots__ = ("fileset_id", "ttl_seconds")
    FILESET_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    fileset_id: str
    ttl_seconds: int
    def __init__(self, fileset_id: _Optional[str] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class ComposeFilesetRequest(_message.Message):
    __slots__ = ("fileset_ids", "ttl_seconds")
    FILESET_IDS_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    fileset_ids: _containers.RepeatedScalarFieldContainer[str]
    ttl_seconds: int
    def __init__(self, fileset_ids: _Optional[_Iterable[str]] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class ComposeFilesetResponse(_message.Message):
    __slots__ = ("fileset_id",)
    FILESET_ID_FIELD_NUMBER: _ClassVar[int]
    fileset_id: str
    def __init__(self, fileset_id: _Optional[str] = ...) -> None: ...

class ShardFilesetRequest(_message.Message):
    __slots__ = ("fileset_id", "num_files", "size_bytes")
    FILESET_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_FILES_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    fileset_id: str
    num_files: int
    size_bytes: int
    def __init__(self, fileset_id: _Optional[str] = ..., num_files: _Optional[int] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class PathRange(_message.Message):
    __slots__ = ("lower", "upper")
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    lower: str
    upper: str
    def __init__(self, lower: _Optional[str] = ..., upper: _Optional[str] = ...) -> None: ...

class ShardFilesetResponse(_message.Message):
    __slots__ = ("shards",)
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    shards: _containers.RepeatedCompositeFieldContainer[PathRange]
    def __init__(self, shards: _Optional[_Iterable[_Union[PathRange, _Mapping]]] = ...) -> None: ...
