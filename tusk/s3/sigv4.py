"""AWS Signature Version 4: checking a request's signature, and decoding
aws-chunked bodies (checking each chunk's signature).

Two ways a request carries a signature:

* the ``Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
  Signature=...`` header (with ``x-amz-date`` and ``x-amz-content-sha256``);
* presigned URLs: ``X-Amz-Algorithm``, ``X-Amz-Credential``, ``X-Amz-Date``,
  ``X-Amz-Expires``, ``X-Amz-SignedHeaders``, ``X-Amz-Signature`` in the query.

The canonical request is rebuilt from the *decoded* path, re-encoded with
AWS's rules (every byte but ``A-Za-z0-9-._~`` and ``/``), as S3 itself does.
Streaming uploads (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``) chain a signature
per chunk from the header's (the "seed"); :class:`ChunkedReader` checks them.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

from tusk.s3.backend import S3Error

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED = "UNSIGNED-PAYLOAD"
STREAMING = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
#: How far a request's date may be from ours (AWS: 15 minutes).
MAX_SKEW = 15 * 60

_AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=([^,\s]+)\s*,\s*SignedHeaders=([^,\s]+)\s*,"
    r"\s*Signature=([0-9a-fA-F]+)")


def uri_encode(s: str, slash: bool = True) -> str:
    """AWS's URI encoding: unreserved characters stay, others are %XX (UTF-8)."""
    return quote(s, safe="-_.~" + ("/" if slash else ""))


def canonical_query(params: Sequence[tuple[str, str]], skip: str = "") -> str:
    pairs = sorted((uri_encode(k, False), uri_encode(v, False)) for k, v in params if k != skip)
    return "&".join(f"{k}={v}" for k, v in pairs)


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def _hmac_hex(key: bytes, msg: str) -> str:
    return hmac.new(key, msg.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Verified:
    """What a checked signature established, for the body that follows.

    Attributes:
        access_key: the signer ("" when nothing was checked).
        payload: the ``x-amz-content-sha256`` value (a hex digest to check
            the body against, UNSIGNED-PAYLOAD, or a STREAMING-... mode).
        signing_key, amz_date, scope, seed: what chunk signatures chain
            from (empty when not checked).
    """

    access_key: str
    payload: str
    signing_key: bytes = b""
    amz_date: str = ""
    scope: str = ""
    seed: str = ""


def _parse_amz_date(value: str) -> float:
    try:
        return float(calendar.timegm(time.strptime(value, "%Y%m%dT%H%M%SZ")))
    except ValueError as e:
        raise S3Error("AccessDenied", f"X-Amz-Date {value!r} is not in the form "
                      "YYYYMMDDTHHMMSSZ") from e


def verify(method: str, path: str, query: Sequence[tuple[str, str]],
           headers: Mapping[str, str], credentials: Mapping[str, str] | None,
           now: float | None = None) -> Verified:
    """Check a request's signature against ``credentials`` (access key ->
    secret). With ``credentials`` None every request is accepted unchecked.

    Args:
        path: the decoded request path (``/bucket/a b``).
        query: decoded query parameters, in order.
        headers: request headers, names in lower case.

    Raises:
        S3Error: ``AccessDenied`` (no or malformed signature),
            ``InvalidAccessKeyId``, ``SignatureDoesNotMatch``,
            ``RequestTimeTooSkewed``.
    """
    payload = headers.get("x-amz-content-sha256", UNSIGNED)
    if credentials is None:
        return Verified("", payload)
    now = time.time() if now is None else now
    qd = dict(query)
    auth = headers.get("authorization", "")
    presigned = "X-Amz-Signature" in qd
    if presigned:
        if qd.get("X-Amz-Algorithm") != ALGORITHM:
            raise S3Error("AccessDenied", f"presigned URLs must use {ALGORITHM}")
        credential = qd.get("X-Amz-Credential", "")
        signed_headers = qd.get("X-Amz-SignedHeaders", "")
        signature = qd["X-Amz-Signature"]
        amz_date = qd.get("X-Amz-Date", "")
        try:
            expires = int(qd.get("X-Amz-Expires", "0"))
        except ValueError as e:
            raise S3Error("AuthorizationQueryParametersError",
                          "X-Amz-Expires must be a number of seconds") from e
        t = _parse_amz_date(amz_date)
        if now > t + expires:
            raise S3Error("AccessDenied", "the presigned URL has expired: presign a new one")
        payload = UNSIGNED if "x-amz-content-sha256" not in headers else payload
    else:
        if not auth and "AWSAccessKeyId" in qd:
            raise S3Error("AccessDenied", "presigned URLs of AWS signature V2 are not "
                          "supported: presign with signature V4 (boto3: Config("
                          "signature_version='s3v4'))")
        if not auth:
            raise S3Error("AccessDenied", "the request is not signed: this gateway needs "
                          "AWS Signature V4 with the daemon's --s3-access-key and secret")
        if auth.startswith("AWS "):
            raise S3Error("AccessDenied", "AWS signature V2 is not supported: configure "
                          "the client for signature V4 (s3v4)")
        m = _AUTH_RE.match(auth)
        if m is None:
            raise S3Error("AccessDenied", "malformed Authorization header: expected "
                          "'AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...'")
        credential, signed_headers, signature = m.group(1), m.group(2), m.group(3)
        amz_date = headers.get("x-amz-date", "")
        if not amz_date:
            raise S3Error("AccessDenied", "a signed request needs an x-amz-date header")
        t = _parse_amz_date(amz_date)
        if abs(now - t) > MAX_SKEW:
            raise S3Error("RequestTimeTooSkewed", "the request's time differs from the "
                          "server's by more than 15 minutes: fix the client's clock")
    cparts = credential.split("/")
    if len(cparts) != 5 or cparts[4] != "aws4_request":
        raise S3Error("AccessDenied", f"malformed credential scope {credential!r}")
    access_key, date, region, service = cparts[:4]
    secret = credentials.get(access_key)
    if secret is None:
        raise S3Error("InvalidAccessKeyId", f"the access key {access_key!r} is not one this "
                      "gateway knows: use the daemon's --s3-access-key")
    names = signed_headers.split(";")
    if "host" not in names:
        raise S3Error("AccessDenied", "the signature must cover the host header")
    canon_headers = "".join(
        f"{n}:{' '.join(headers.get(n, '').split())}\n" for n in names)
    canonical = "\n".join([
        method, uri_encode(path), canonical_query(query, "X-Amz-Signature" if presigned else ""),
        canon_headers, signed_headers, payload])
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = signing_key(secret, date, region, service)
    expected = _hmac_hex(key, to_sign)
    if not hmac.compare_digest(expected, signature.lower()):
        raise S3Error("SignatureDoesNotMatch",
                      "the request signature we calculated does not match the signature you "
                      "provided: check the secret key and the signing method",
                      AWSAccessKeyId=access_key, StringToSign=to_sign,
                      CanonicalRequest=canonical)
    return Verified(access_key, payload, key, amz_date, scope, signature.lower())


# -- bodies ------------------------------------------------------------------------


class Reader(Protocol):
    """What bodies are read from: a buffered socket file, or a decoder of
    HTTP chunked transfer encoding."""

    def read(self, n: int, /) -> bytes: ...

    def readline(self, limit: int = -1, /) -> bytes: ...


def body_pieces(f: Reader, length: int, piece: int = 1 << 20) -> Iterator[bytes]:
    """``length`` bytes of ``f`` in pieces; ``IncompleteBody`` if it ends early."""
    left = length
    while left > 0:
        data = f.read(min(piece, left))
        if not data:
            raise S3Error("IncompleteBody", f"the body ended {left} bytes short of its "
                          "Content-Length")
        left -= len(data)
        yield data


def sha256_checked(pieces: Iterator[bytes], expected: str) -> Iterator[bytes]:
    """Pass ``pieces`` through; at the end, ``XAmzContentSHA256Mismatch`` if
    their SHA-256 is not ``expected`` (before the consumer sees the end, so
    a put that raises writes nothing)."""
    h = hashlib.sha256()
    for p in pieces:
        h.update(p)
        yield p
    if h.hexdigest() != expected.lower():
        raise S3Error("XAmzContentSHA256Mismatch", "the body's SHA-256 does not match "
                      "x-amz-content-sha256: the body was altered or truncated in transit")


class ChunkedReader:
    """Decodes an ``aws-chunked`` body (``<hex size>[;chunk-signature=<sig>]\\r\\n
    <data>\\r\\n`` ... ``0...\\r\\n`` [trailers] ``\\r\\n``), checking each
    chunk's signature when ``verified`` carries a signing key and the mode is
    signed. Trailer headers (checksums) are read and ignored.
    """

    def __init__(self, f: Reader, length: int | None, verified: Verified) -> None:
        self._f = f
        self._left = length  # bytes of the encoded body still unread (None: unknown)
        self._v = verified
        self._check = bool(verified.signing_key) and verified.payload in (STREAMING,
                                                                          STREAMING_TRAILER)
        self._prev = verified.seed

    def _read(self, n: int) -> bytes:
        if self._left is not None and n > self._left:
            raise S3Error("IncompleteBody", "an aws-chunked chunk runs past the "
                          "body's Content-Length")
        data = self._f.read(n)
        if len(data) < n:
            raise S3Error("IncompleteBody", "the aws-chunked body ended in the middle of a chunk")
        if self._left is not None:
            self._left -= n
        return data

    def _line(self) -> bytes:
        line = self._f.readline(4096)
        if self._left is not None:
            self._left -= len(line)
            if self._left < 0:
                raise S3Error("IncompleteBody", "the aws-chunked framing runs past "
                              "the body's Content-Length")
        if not line.endswith(b"\r\n"):
            raise S3Error("IncompleteBody", "malformed aws-chunked body: a chunk header "
                          "is cut short or too long")
        return line[:-2]

    def __iter__(self) -> Iterator[bytes]:
        while True:
            head = self._line()
            size_s, _, ext = head.partition(b";")
            try:
                size = int(size_s, 16)
            except ValueError as e:
                raise S3Error("IncompleteBody", f"malformed aws-chunked chunk header "
                              f"{head[:60]!r}") from e
            data = self._read(size) if size else b""
            if self._check:
                sig = b""
                for kv in ext.split(b";"):
                    k, _, val = kv.partition(b"=")
                    if k.strip() == b"chunk-signature":
                        sig = val.strip()
                to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", self._v.amz_date,
                                     self._v.scope, self._prev, EMPTY_SHA256,
                                     hashlib.sha256(data).hexdigest()])
                want = _hmac_hex(self._v.signing_key, to_sign)
                if not hmac.compare_digest(want.encode(), sig.lower()):
                    raise S3Error("SignatureDoesNotMatch", "a chunk's signature of the "
                                  "aws-chunked body does not match: the body was altered")
                self._prev = want
            if size == 0:
                break
            if self._read(2) != b"\r\n":
                raise S3Error("IncompleteBody", "malformed aws-chunked body: a chunk's data "
                              "is not followed by CRLF")
            yield data
        # Trailers (x-amz-checksum-*, x-amz-trailer-signature) up to an empty line.
        while self._left is None or self._left > 0:
            line = self._f.readline(4096)
            if self._left is not None:
                self._left -= len(line)
            if not line or line in (b"\r\n", b"\n"):
                break
        if self._left:
            # Whatever remains of the declared length: read it so keep-alive works.
            while self._left > 0:
                got = self._f.read(min(self._left, 1 << 16))
                if not got:
                    break
                self._left -= len(got)
