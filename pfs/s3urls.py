"""S3 locations outside tusk's own store: URLs, configuration, address policy, errors.

``put file -f s3://bucket/key`` (in the client) and pipeline egress (in the
daemon) both talk to *someone else's* S3 server; :mod:`pfs.s3remote` is the
client they use. This module holds the parts without network I/O, so that
spec validation and the CLI do not load the S3 SDK (~0.3 s to import):

* :func:`parse_s3_url`: ``s3://BUCKET[/KEY-OR-PREFIX][?endpoint=URL&region=R]``
  into an :class:`S3URL`, with the bucket and key checked against S3's rules,
  so a typo fails before any request.
* :class:`S3Config`: endpoint, region and credentials, explicit or from the
  usual AWS variables (:meth:`S3Config.for_url`, which documents the
  precedence).
* :func:`check_endpoint_address`: the address policy for endpoints a remote
  party chose (egress targets): no link-local (cloud metadata), multicast or
  reserved addresses, private ranges only when allowed.
* The typed errors every failure becomes, each naming the URL, the problem
  and the fix (:class:`S3NoSuchKey`, :class:`S3NoSuchBucket`,
  :class:`S3AccessDenied`, :class:`S3Unreachable`).

Kept apart from :mod:`pfs.objects_s3`: tusk's own store has its own keys,
bucket creation and error policy.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from pfs.errors import InvalidArgument, NotFound, TuskError

__all__ = [
    "AWS_DEFAULT_ENDPOINT",
    "ENDPOINT_HINT",
    "S3URL",
    "S3AccessDenied",
    "S3Config",
    "S3NoSuchBucket",
    "S3NoSuchKey",
    "S3Unreachable",
    "check_bucket",
    "check_endpoint_address",
    "check_key",
    "parse_endpoint",
    "parse_s3_url",
]

#: Where requests go when neither a flag, the URL nor the environment names an endpoint.
AWS_DEFAULT_ENDPOINT = "https://s3.amazonaws.com"

# S3's bucket naming rules (AWS; MinIO and SeaweedFS follow them).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_QUERY_FIELDS = ("endpoint", "region")
_SECRET_FIELDS = ("access_key", "secret_key", "accesskey", "secretkey", "session_token",
                  "aws_access_key_id", "aws_secret_access_key", "password", "token")

# --- errors ------------------------------------------------------------------------


class S3NoSuchKey(NotFound):
    """The object does not exist."""

    def __init__(self, url: str, hint: str) -> None:
        super().__init__(f"{url}: no such key; check the key, or list the bucket with {hint}")
        self.url = url


#: How a ``put file`` user sets the endpoint (the default hint of the errors).
ENDPOINT_HINT = "--s3-endpoint, ?endpoint= in the URL, or AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL"


class S3NoSuchBucket(NotFound):
    """The bucket does not exist on that server."""

    def __init__(self, url: str, endpoint: str, hint: str = ENDPOINT_HINT) -> None:
        super().__init__(
            f"{url}: no such bucket at {endpoint}; create it, or check the bucket name and "
            f"the endpoint ({hint})")
        self.url = url
        self.endpoint = endpoint


class S3AccessDenied(TuskError):
    """The server refused the credentials (or has none for an anonymous request)."""

    code = "PERMISSION_DENIED"

    def __init__(self, url: str, endpoint: str, s3_code: str) -> None:
        super().__init__(
            f"{url}: access denied by {endpoint} ({s3_code}); set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary keys) to keys "
            "this server accepts")
        self.url = url
        self.endpoint = endpoint
        self.s3_code = s3_code


class S3Unreachable(TuskError):
    """The server cannot be reached, broke a transfer off, or answered nonsense.

    Not a subclass of :class:`pfs.errors.Unavailable`: that one means "tusk's
    own services are down", and the CLI's hint for it (start the daemon)
    would mislead here.
    """

    code = "UNAVAILABLE"

    def __init__(self, url: str, endpoint: str, detail: str, hint: str = ENDPOINT_HINT) -> None:
        super().__init__(
            f"{url}: cannot reach S3 at {endpoint}: {detail}; check that the server runs "
            f"and the endpoint is right ({hint})")
        self.url = url
        self.endpoint = endpoint
        self.detail = detail


# --- URLs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class S3URL:
    """A parsed ``s3://`` URL.

    Attributes:
        bucket: the bucket name.
        key: the object key or prefix, without a leading ``/`` ("" for the
            whole bucket); a trailing ``/`` is kept as written.
        endpoint: ``?endpoint=`` (normalised ``http(s)://HOST[:PORT]``), or "".
        region: ``?region=``, or "".
    """

    bucket: str
    key: str
    endpoint: str = ""
    region: str = ""

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def prefix(self) -> str:
        """The key as a directory prefix: "" for the bucket, else ending in ``/``."""
        key = self.key.strip("/")
        return f"{key}/" if key else ""

    def child(self, key: str) -> str:
        """The ``s3://`` URL of another key in the same bucket (for messages)."""
        return f"s3://{self.bucket}/{key}"


def parse_endpoint(text: str, what: str = "S3 endpoint") -> tuple[str, bool]:
    """``http(s)://HOST[:PORT]`` (or bare ``HOST[:PORT]``, meaning https) as
    ``(HOST[:PORT], secure)``.

    Raises:
        InvalidArgument: another scheme, no host, or a path/query in the URL.
    """
    raw = text.strip()
    if "://" not in raw:
        raw = "https://" + raw
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme not in ("http", "https"):
        raise InvalidArgument(
            f"{what} {text!r}: use http://HOST:PORT or https://HOST, not {parts.scheme}://")
    try:
        port = parts.port
    except ValueError:
        raise InvalidArgument(f"{what} {text!r}: the port is not a number from 0 to 65535"
                              ) from None
    if not parts.hostname:
        raise InvalidArgument(f"{what} {text!r} names no host: use http://HOST:PORT")
    if parts.path.strip("/") or parts.query or parts.fragment or parts.username:
        raise InvalidArgument(
            f"{what} {text!r}: give only the scheme, host and port (http://HOST:PORT); "
            "the bucket goes in the s3:// URL and credentials in AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY")
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"  # IPv6
    netloc = f"{host}:{port}" if port else host
    return netloc, parts.scheme == "https"


def check_bucket(bucket: str, url: str) -> None:
    """Raise :class:`InvalidArgument` unless ``bucket`` is a valid S3 bucket name."""
    if not bucket:
        raise InvalidArgument(
            f"{url!r} names no bucket: write s3://BUCKET/KEY (s3://BUCKET/PREFIX with -r)")
    if (not _BUCKET_RE.match(bucket) or ".." in bucket
            or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", bucket)):
        raise InvalidArgument(
            f"{url!r}: {bucket!r} is not a valid bucket name (3-63 characters: lowercase "
            "letters, digits, '.' and '-', starting and ending with a letter or digit)")


def check_key(key: str, url: str) -> None:
    """Raise :class:`InvalidArgument` for keys S3 refuses (over 1024 bytes, control
    characters) or that tusk cannot map to a repo path (``.``/``..`` components)."""
    if len(key.encode()) > 1024:
        raise InvalidArgument(f"{url!r}: the key is longer than S3's 1024 bytes")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
        raise InvalidArgument(f"{url!r}: the key contains control characters")
    if any(part in (".", "..") for part in key.split("/")):
        raise InvalidArgument(f"{url!r}: the key has a '.' or '..' component")


def parse_s3_url(url: str, *, need_key: bool = False) -> S3URL:
    """Parse and check ``s3://BUCKET[/KEY][?endpoint=URL&region=R]``.

    Args:
        url: the URL; the key is percent-decoded (``%20`` is a space).
        need_key: the URL must name an object (not only a bucket).

    Raises:
        InvalidArgument: not an s3:// URL, a bad bucket or key, unknown or
            secret-carrying query fields, a bad endpoint. The message says
            how to write it instead.
    """
    if not url.lower().startswith("s3://"):
        raise InvalidArgument(f"{url!r} is not an s3:// URL: write s3://BUCKET/KEY")
    rest = url[len("s3://"):]
    rest, _, query = rest.partition("?")
    if "#" in rest:
        raise InvalidArgument(f"{url!r}: '#' is not allowed in an s3:// URL (write it as %23)")
    bucket, _, key = rest.partition("/")
    check_bucket(bucket, url)
    key = urllib.parse.unquote(key)
    check_key(key, url)
    if need_key and not key.strip("/"):
        raise InvalidArgument(
            f"{url!r} names a bucket but no key: write s3://{bucket}/KEY "
            "(or use -r to put every object under a prefix)")
    fields: dict[str, str] = {}
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True,
                                              strict_parsing=False):
        low = name.lower()
        if low in _SECRET_FIELDS:
            raise InvalidArgument(
                f"{url!r}: credentials do not go in the URL (it is stored and shown); set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY where the transfer runs")
        if low not in _QUERY_FIELDS:
            raise InvalidArgument(
                f"{url!r}: unknown URL parameter {name!r} (known: endpoint, region)")
        if low in fields:
            raise InvalidArgument(f"{url!r}: {name!r} is given twice")
        fields[low] = value
    endpoint = ""
    if "endpoint" in fields:
        netloc, secure = parse_endpoint(fields["endpoint"], f"{url!r}: endpoint")
        endpoint = f"{'https' if secure else 'http'}://{netloc}"
    return S3URL(bucket, key, endpoint, fields.get("region", ""))


# --- configuration ---------------------------------------------------------------------


@dataclass(frozen=True)
class S3Config:
    """Explicit endpoint, region and credentials for an S3 server (flags, or a
    caller's own settings); empty strings mean "not set". Credentials never
    come from a URL. :meth:`for_url` fills the gaps from the URL and the
    environment.
    """

    endpoint: str = ""
    region: str = ""
    access_key: str = ""
    secret_key: str = ""
    session_token: str = ""

    def for_url(self, url: S3URL, env: Mapping[str, str] | None = None,
                prefer_url: bool = False) -> S3Config:
        """The settings to reach ``url``, every gap filled.

        Endpoint: this config's (a flag), else the URL's ``?endpoint=``, else
        ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL`` (the AWS CLI's
        service-specific and global variables), else AWS
        (:data:`AWS_DEFAULT_ENDPOINT`). With ``prefer_url`` the URL's comes
        first (egress: the pipeline names its target). Region likewise, from
        ``?region=``, ``AWS_REGION``, ``AWS_DEFAULT_REGION``. Keys: this
        config's, else ``AWS_ACCESS_KEY_ID`` + ``AWS_SECRET_ACCESS_KEY`` (+
        ``AWS_SESSION_TOKEN``); without them requests are anonymous (public
        buckets).

        The environment is read here (``env`` defaults to ``os.environ``), as
        every S3 tool does, so that keys stay out of URLs, flags and specs.
        """
        e = os.environ if env is None else env
        endpoint = self.endpoint or url.endpoint
        if prefer_url and url.endpoint:
            endpoint = url.endpoint
        endpoint = (endpoint or e.get("AWS_ENDPOINT_URL_S3", "")
                    or e.get("AWS_ENDPOINT_URL", "") or AWS_DEFAULT_ENDPOINT)
        region = self.region or url.region
        if prefer_url and url.region:
            region = url.region
        region = region or e.get("AWS_REGION", "") or e.get("AWS_DEFAULT_REGION", "")
        key, secret, token = self.access_key, self.secret_key, self.session_token
        if not (key and secret):
            key, secret = e.get("AWS_ACCESS_KEY_ID", ""), e.get("AWS_SECRET_ACCESS_KEY", "")
            token = e.get("AWS_SESSION_TOKEN", "")
            if not (key and secret):
                key = secret = token = ""
        return S3Config(endpoint, region, key, secret, token)


# --- address policy -------------------------------------------------------------------


def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    host = host.strip("[]")
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise InvalidArgument(f"S3 endpoint host {host!r} does not resolve: {exc}") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def _is(host: str, ip: object) -> str:
    return f"{host} is" if host.strip("[]") == str(ip) else f"{host} resolves to {ip}"


def check_endpoint_address(endpoint: str, *, allow_private: bool, resolve: bool = True,
                           what: str = "S3 endpoint") -> None:
    """Refuse endpoints a daemon must not contact on someone else's behalf.

    Always refused: link-local addresses (169.254.0.0/16 with the cloud
    metadata service 169.254.169.254, fe80::/10), multicast, unspecified
    (0.0.0.0, ::) and reserved ranges. Private ranges (10/8, 172.16/12,
    192.168/16, fc00::/7, 100.64/10) only with ``allow_private``. Loopback
    is allowed (a server on the daemon's own host).

    ``resolve=False`` checks only a literal IP (no DNS; for spec validation).
    A name is checked by what it resolves to now; a later lookup may
    differ (DNS rebinding), which only a network policy can rule out.

    Raises:
        InvalidArgument: naming the address and why it is refused.
    """
    netloc, _ = parse_endpoint(endpoint, what)
    parsed = urllib.parse.urlsplit("//" + netloc)
    host = parsed.hostname or ""
    try:
        ips = _addresses(host, parsed.port or 443) if resolve else [
            ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        return  # a name, not checked without DNS
    for ip in ips:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.is_loopback:
            continue
        if ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
            raise InvalidArgument(
                f"{what} {endpoint}: {_is(host, ip)}, a link-local, multicast or reserved "
                "address (such as the cloud metadata service) that tusk never sends data to; "
                "use the S3 server's own address")
        shared = ip in ipaddress.ip_network("100.64.0.0/10")
        if (ip.is_private or shared) and not allow_private:
            raise InvalidArgument(
                f"{what} {endpoint}: {_is(host, ip)}, a private address; the daemon sends "
                "egress there only if its operator allows private targets "
                "(TUSK_EGRESS_ALLOW_PRIVATE=1 in the daemon's environment)")


