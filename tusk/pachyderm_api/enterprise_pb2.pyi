import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NONE: _ClassVar[State]
    ACTIVE: _ClassVar[State]
    EXPIRED: _ClassVar[State]
    HEARTBEAT_FAILED: _ClassVar[State]

class PauseStatusResponsePauseStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNPAUSED: _ClassVar[PauseStatusResponsePauseStatus]
    PARTIALLY_PAUSED: _ClassVar[PauseStatusResponsePauseStatus]
    PAUSED: _ClassVar[PauseStatusResponsePauseStatus]
NONE: State
ACTIVE: State
EXPIRED: State
HEARTBEAT_FAILED: State
UNPAUSED: PauseStatusResponsePauseStatus
PARTIALLY_PAUSED: PauseStatusResponsePauseStatus
PAUSED: PauseStatusResponsePauseStatus

class LicenseRecord(_message.Message):
    __slots__ = ("activation_code", "expires")
    ACTIVATION_CODE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    activation_code: str
    expires: _timestamp_pb2.Timestamp
    def __init__(self, activation_code: _Optional[str] = ..., expires: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EnterpriseConfig(_message.Message):
    __slots__ = ("license_server", "id", "secret")
    LICENSE_SERVER_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    license_server: str
    id: str
    secret: str
    def __init__(self, license_server: _Optional[str] = ..., id: _Optional[str] = ..., secret: _Optional[str] = ...) -> None: ...

class EnterpriseRecord(_message.Message):
    __slots__ = ("license", "last_heartbeat", "heartbeat_failed")
    LICENSE_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FAILED_FIELD_NUMBER: _ClassVar[int]
    license: LicenseRecord
    last_heartbeat: _timestamp_pb2.Timestamp
    heartbeat_failed: bool
    def __init__(self, license: _Optional[_Union[LicenseRecord, _Mapping]] = ..., last_heartbeat: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., heartbeat_failed: _Optional[bool] = ...) -> None: ...

class TokenInfo(_message.Message):
    __slots__ = ("expires",)
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    expires: _timestamp_pb2.Timestamp
    def __init__(self, expires: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ActivateRequest(_message.Message):
    __slots__ = ("license_server", "id", "secret")
    LICENSE_SERVER_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    license_server: str
    id: str
    secret: str
    def __init__(self, license_server: _Optional[str] = ..., id: _Optional[str] = ..., secret: _Optional[str] = ...) -> None: ...

class ActivateResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStateResponse(_message.Message):
    __slots__ = ("state", "info", "activation_code")
    STATE_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_CODE_FIELD_NUMBER: _ClassVar[int]
    state: State
    info: TokenInfo
    activation_code: str
    def __init__(self, state: _Optional[_Union[State, str]] = ..., info: _Optional[_Union[TokenInfo, _Mapping]] = ..., activation_code: _Optional[str] = ...) -> None: ...

class GetActivationCodeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetActivationCodeResponse(_message.Message):
    __slots__ = ("state", "info", "activation_code")
    STATE_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_CODE_FIELD_NUMBER: _ClassVar[int]
    state: State
    info: TokenInfo
    activation_code: str
    def __init__(self, state: _Optional[_Union[State, str]] = ..., info: _Optional[_Union[TokenInfo, _Mapping]] = ..., activation_code: _Optional[str] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeactivateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeactivateResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PauseRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PauseResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UnpauseRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UnpauseResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PauseStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PauseStatusResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: PauseStatusResponsePauseStatus
    def __init__(self, status: _Optional[_Union[PauseStatusResponsePauseStatus, str]] = ...) -> None: ...
