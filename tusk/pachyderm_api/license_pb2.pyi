import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from tusk.pachyderm_api import enterprise_pb2 as _enterprise_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ActivateRequest(_message.Message):
    __slots__ = ("activation_code", "expires")
    ACTIVATION_CODE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    activation_code: str
    expires: _timestamp_pb2.Timestamp
    def __init__(self, activation_code: _Optional[str] = ..., expires: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ActivateResponse(_message.Message):
    __slots__ = ("info",)
    INFO_FIELD_NUMBER: _ClassVar[int]
    info: _enterprise_pb2.TokenInfo
    def __init__(self, info: _Optional[_Union[_enterprise_pb2.TokenInfo, _Mapping]] = ...) -> None: ...

class GetActivationCodeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetActivationCodeResponse(_message.Message):
    __slots__ = ("state", "info", "activation_code")
    STATE_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_CODE_FIELD_NUMBER: _ClassVar[int]
    state: _enterprise_pb2.State
    info: _enterprise_pb2.TokenInfo
    activation_code: str
    def __init__(self, state: _Optional[_Union[_enterprise_pb2.State, str]] = ..., info: _Optional[_Union[_enterprise_pb2.TokenInfo, _Mapping]] = ..., activation_code: _Optional[str] = ...) -> None: ...

class DeactivateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeactivateResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AddClusterRequest(_message.Message):
    __slots__ = ("id", "address", "secret", "user_address", "cluster_deployment_id", "enterprise_server")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    USER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ENTERPRISE_SERVER_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    secret: str
    user_address: str
    cluster_deployment_id: str
    enterprise_server: bool
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ..., secret: _Optional[str] = ..., user_address: _Optional[str] = ..., cluster_deployment_id: _Optional[str] = ..., enterprise_server: _Optional[bool] = ...) -> None: ...

class AddClusterResponse(_message.Message):
    __slots__ = ("secret",)
    SECRET_FIELD_NUMBER: _ClassVar[int]
    secret: str
    def __init__(self, secret: _Optional[str] = ...) -> None: ...

class DeleteClusterRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteClusterResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ClusterStatus(_message.Message):
    __slots__ = ("id", "address", "version", "auth_enabled", "client_id", "last_heartbeat", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    AUTH_ENABLED_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    version: str
    auth_enabled: bool
    client_id: str
    last_heartbeat: _timestamp_pb2.Timestamp
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ..., version: _Optional[str] = ..., auth_enabled: _Optional[bool] = ..., client_id: _Optional[str] = ..., last_heartbeat: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UpdateClusterRequest(_message.Message):
    __slots__ = ("id", "address", "user_address", "cluster_deployment_id", "secret")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    USER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    user_address: str
    cluster_deployment_id: str
    secret: str
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ..., user_address: _Optional[str] = ..., cluster_deployment_id: _Optional[str] = ..., secret: _Optional[str] = ...) -> None: ...

class UpdateClusterResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListClustersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListClustersResponse(_message.Message):
    __slots__ = ("clusters",)
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    clusters: _containers.RepeatedCompositeFieldContainer[ClusterStatus]
    def __init__(self, clusters: _Optional[_Iterable[_Union[ClusterStatus, _Mapping]]] = ...) -> None: ...

class DeleteAllRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeleteAllResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("id", "secret", "version", "auth_enabled", "client_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    AUTH_ENABLED_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    secret: str
    version: str
    auth_enabled: bool
    client_id: str
    def __init__(self, id: _Optional[str] = ..., secret: _Optional[str] = ..., version: _Optional[str] = ..., auth_enabled: _Optional[bool] = ..., client_id: _Optional[str] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("license",)
    LICENSE_FIELD_NUMBER: _ClassVar[int]
    license: _enterprise_pb2.LicenseRecord
    def __init__(self, license: _Optional[_Union[_enterprise_pb2.LicenseRecord, _Mapping]] = ...) -> None: ...

class UserClusterInfo(_message.Message):
    __slots__ = ("id", "cluster_deployment_id", "address", "enterprise_server")
    ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ENTERPRISE_SERVER_FIELD_NUMBER: _ClassVar[int]
    id: str
    cluster_deployment_id: str
    address: str
    enterprise_server: bool
    def __init__(self, id: _Optional[str] = ..., cluster_deployment_id: _Optional[str] = ..., address: _Optional[str] = ..., enterprise_server: _Optional[bool] = ...) -> None: ...

class ListUserClustersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListUserClustersResponse(_message.Message):
    __slots__ = ("clusters",)
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    clusters: _containers.RepeatedCompositeFieldContainer[UserClusterInfo]
    def __init__(self, clusters: _Optional[_Iterable[_Union[UserClusterInfo, _Mapping]]] = ...) -> None: ...
