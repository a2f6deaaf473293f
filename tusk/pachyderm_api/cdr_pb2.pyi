from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HashAlgo(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN_HASH: _ClassVar[HashAlgo]
    BLAKE2b_256: _ClassVar[HashAlgo]

class CipherAlgo(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN_CIPHER: _ClassVar[CipherAlgo]
    CHACHA20: _ClassVar[CipherAlgo]

class CompressAlgo(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNKNOWN_COMPRESS: _ClassVar[CompressAlgo]
    GZIP: _ClassVar[CompressAlgo]
UNKNOWN_HASH: HashAlgo
BLAKE2b_256: HashAlgo
UNKNOWN_CIPHER: CipherAlgo
CHACHA20: CipherAlgo
UNKNOWN_COMPRESS: CompressAlgo
GZIP: CompressAlgo

class Ref(_message.Message):
    __slots__ = ("http", "content_hash", "size_limits", "cipher", "compress", "slice", "concat")
    HTTP_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    SIZE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    CIPHER_FIELD_NUMBER: _ClassVar[int]
    COMPRESS_FIELD_NUMBER: _ClassVar[int]
    SLICE_FIELD_NUMBER: _ClassVar[int]
    CONCAT_FIELD_NUMBER: _ClassVar[int]
    http: Http
    content_hash: ContentHash
    size_limits: SizeLimits
    cipher: Cipher
    compress: Compress
    slice: Slice
    concat: Concat
    def __init__(self, http: _Optional[_Union[Http, _Mapping]] = ..., content_hash: _Optional[_Union[ContentHash, _Mapping]] = ..., size_limits: _Optional[_Union[SizeLimits, _Mapping]] = ..., cipher: _Optional[_Union[Cipher, _Mapping]] = ..., compress: _Optional[_Union[Compress, _Mapping]] = ..., slice: _Optional[_Union[Slice, _Mapping]] = ..., concat: _Optional[_Union[Concat, _Mapping]] = ...) -> None: ...

class Http(_message.Message):
    __slots__ = ("url", "headers")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    URL_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    url: str
    headers: _containers.ScalarMap[str, str]
    def __init__(self, url: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ContentHash(_message.Message):
    __slots__ = ("inner", "algo", "hash")
    INNER_FIELD_NUMBER: _ClassVar[int]
    ALGO_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    inner: Ref
    algo: HashAlgo
    hash: bytes
    def __init__(self, inner: _Optional[_Union[Ref, _Mapping]] = ..., algo: _Optional[_Union[HashAlgo, str]] = ..., hash: _Optional[bytes] = ...) -> None: ...

class SizeLimits(_message.Message):
    __slots__ = ("inner", "min", "max")
    INNER_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    inner: Ref
    min: int
    max: int
    def __init__(self, inner: _Optional[_Union[Ref, _Mapping]] = ..., min: _Optional[int] = ..., max: _Optional[int] = ...) -> None: ...

class Cipher(_message.Message):
    __slots__ = ("inner", "algo", "key", "nonce")
    INNER_FIELD_NUMBER: _ClassVar[int]
    ALGO_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    inner: Ref
    algo: CipherAlgo
    key: bytes
    nonce: bytes
    def __init__(self, inner: _Optional[_Union[Ref, _Mapping]] = ..., algo: _Optional[_Union[CipherAlgo, str]] = ..., key: _Optional[bytes] = ..., nonce: _Optional[bytes] = ...) -> None: ...

class Compress(_message.Message):
    __slots__ = ("inner", "algo")
    INNER_FIELD_NUMBER: _ClassVar[int]
    ALGO_FIELD_NUMBER: _ClassVar[int]
    inner: Ref
    algo: CompressAlgo
    def __init__(self, inner: _Optional[_Union[Ref, _Mapping]] = ..., algo: _Optional[_Union[CompressAlgo, str]] = ...) -> None: ...

class Slice(_message.Message):
    __slots__ = ("inner", "start", "end")
    INNER_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    inner: Ref
    start: int
    end: int
    def __init__(self, inner: _Optional[_Union[Ref, _Mapping]] = ..., start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class Concat(_message.Message):
    __slots__ = ("refs",)
    REFS_FIELD_NUMBER: _ClassVar[int]
    refs: _containers.RepeatedCompositeFieldContainer[Ref]
    def __init__(self, refs: _Optional[_Iterable[_Union[Ref, _Mapping]]] = ...) -> None: ...
