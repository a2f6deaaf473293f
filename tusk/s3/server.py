"""The S3 REST API over HTTP, for any :class:`~tusk.s3.backend.BucketResolver`.

Build one :class:`S3Server` per set of buckets and serve it::

    from tusk.s3.backend import FixedBuckets
    from tusk.s3.server import S3Server

    server = S3Server(FixedBuckets({"images": images_bucket, "out": out_bucket}),
                      credentials=None)          # None: accept any signature
    port = server.serve("127.0.0.1:0")          # or server.serve_socket(listening_sock)
    ...
    server.close()                              # stops accepting, waits for calls

Requests are path-style (``http://host:port/bucket/key``). Each connection
is handled by its own thread (keep-alive: a client reuses its connections),
bodies stream both ways in 1 MiB pieces, and every error is S3's XML with
S3's code and a message naming the fix; an unexpected exception becomes
``InternalError`` with its text, never a traceback on the wire.

Signatures (SigV4, header or presigned) are checked by :mod:`tusk.s3.sigv4`
against ``credentials`` (access key -> secret key) before a bucket is
touched; uploads in ``aws-chunked`` framing are decoded (and each chunk's
signature checked) as they stream.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from collections.abc import Iterator, Mapping
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tusk.s3 import sigv4
from tusk.s3 import xml as sxml
from tusk.s3.backend import Bucket, BucketResolver, ObjectInfo, S3Error
from tusk.s3.names import validate_key

log = logging.getLogger("tusk.s3")

#: Bytes per socket write and per read of a request body.
PIECE = 1 << 20
#: Largest XML request body accepted (DeleteObjects of 1000 long keys fits).
MAX_XML_BODY = 4 << 20
#: Socket buffers: large ones keep a fast loopback link busy.
SOCKET_BUFFER = 4 << 20
DEFAULT_REGION = "us-east-1"

# Sub-resources a request may name that this gateway does not implement.
_UNSUPPORTED = ("acl", "policy", "cors", "lifecycle", "tagging", "website", "logging",
                "notification", "replication", "encryption", "object-lock", "retention",
                "legal-hold", "torrent", "restore", "select", "accelerate", "analytics",
                "inventory", "metrics", "ownershipControls", "publicAccessBlock",
                "requestPayment", "intelligent-tiering", "attributes")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, s3: S3Server, address: tuple[str, int] | None,
                 sock: socket.socket | None) -> None:
        self.s3 = s3
        if sock is not None:
            super().__init__(sock.getsockname()[:2], _Handler, bind_and_activate=False)
            self.socket.close()
            self.socket = sock
            self.server_address = sock.getsockname()
        else:
            assert address is not None
            super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = self.socket.accept()
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        except OSError:
            pass
        return conn, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("S3 connection from %s ended with an error", client_address, exc_info=True)


class S3Server:
    """An S3 endpoint over a :class:`BucketResolver`.

    Args:
        resolver: bucket names to buckets (:mod:`tusk.s3.backend`).
        credentials: access key -> secret key; None accepts every request
            unchecked (say so to the user: anyone reaching the port may write).
        region: what GetBucketLocation answers, and the region clients sign for
            (any region's signature is accepted: it is part of what is signed).
    """

    def __init__(self, resolver: BucketResolver, credentials: Mapping[str, str] | None = None,
                 region: str = DEFAULT_REGION) -> None:
        self.resolver = resolver
        self.credentials = dict(credentials) if credentials is not None else None
        self.region = region
        self._http: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- serving ------------------------------------------------------------

    def serve(self, address: str) -> int:
        """Listen on ``host:port`` (port 0: any free port) in background
        threads; returns the port. Raises OSError if it cannot bind."""
        host, _, port = address.rpartition(":")
        return self._start(_HTTPServer(self, (host.strip("[]") or "127.0.0.1", int(port)), None))

    def serve_socket(self, sock: socket.socket) -> int:
        """Serve on an already bound and listening TCP socket (a parent that
        bound it, e.g. to hand a datum's gateway its port before it starts);
        returns its port. The server owns the socket from now on."""
        return self._start(_HTTPServer(self, None, sock))

    def _start(self, http: _HTTPServer) -> int:
        self._http = http
        self._thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="tusk-s3", daemon=True)
        self._thread.start()
        return int(http.server_address[1])

    @property
    def port(self) -> int:
        assert self._http is not None, "not serving"
        return int(self._http.server_address[1])

    def close(self) -> None:
        """Stop accepting connections and close the listening socket.
        Requests in flight run to their end on their own threads."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


def serve(resolver: BucketResolver, address: str,
          credentials: Mapping[str, str] | None = None) -> S3Server:
    """Start an :class:`S3Server` on ``address``; ``server.port`` is its port."""
    s = S3Server(resolver, credentials)
    s.serve(address)
    return s


def serve_socket(resolver: BucketResolver, sock: socket.socket,
                 credentials: Mapping[str, str] | None = None) -> S3Server:
    """Start an :class:`S3Server` on a listening socket."""
    s = S3Server(resolver, credentials)
    s.serve_socket(sock)
    return s


# -- request handling -------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tusk-s3"
    sys_version = ""
    rbufsize = 1 << 16
    server: _HTTPServer

    # BaseHTTPRequestHandler logs every request to stderr; route to logging.
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # -- plumbing -------------------------------------------------------------

    def _handle(self, method: str) -> None:
        self._rid = uuid.uuid4().hex[:16].upper()
        self._body_read = False
        self._sent = False
        s3 = self.server.s3
        try:
            split = urlsplit(self.path)
            path = unquote(split.path)
            self._query = parse_qsl(split.query, keep_blank_values=True)
            self._q = dict(self._query)
            self._h = {k.lower(): v for k, v in self.headers.items()}
            self._method = method
            self._resource = path
            self._verified = sigv4.verify(method, path, self._query, self._h, s3.credentials)
            _Request(self, s3, method, path).dispatch()
        except S3Error as e:
            self._error(e)
        except Exception as e:  # an answer, never a traceback on the wire
            log.exception("S3 %s %s failed", method, self.path)
            self._error(S3Error("InternalError", f"{type(e).__name__}: {e}"))
        if not self._body_read and self._has_body():
            # The body was not consumed: the connection cannot be reused.
            self.close_connection = True

    def _has_body(self) -> bool:
        te = self._h.get("transfer-encoding", "") if hasattr(self, "_h") else ""
        return bool(te) or int((self._h if hasattr(self, "_h") else {}).get(
            "content-length", "0") or 0) > 0

    def _error(self, e: S3Error) -> None:
        if self._sent:
            # Headers are out: the only honest signal left is a cut connection.
            self.close_connection = True
            return
        if e.code not in ("NotModified",) and e.status >= 500:
            log.warning("S3 %s %s: %s", getattr(self, "_method", "?"), self.path, e)
        if not e.resource:
            e.resource = getattr(self, "_resource", "")
        body = b"" if e.status == 304 else sxml.error(e, self._rid)
        headers = {"Content-Type": "application/xml"}
        if e.status == 416 and "ActualObjectSize" in e.extra:
            headers["Content-Range"] = f"bytes */{e.extra['ActualObjectSize']}"
        self.send(e.status, body, headers, head=getattr(self, "_method", "") == "HEAD")

    def send(self, status: int, body: bytes = b"", headers: Mapping[str, str] | None = None,
             head: bool = False, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("x-amz-request-id", self._rid)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if status != 304 and status != 204:
            self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self._sent = True
        if body and not head:
            self.wfile.write(body)

    def body_stream(self) -> Iterator[bytes]:
        """The request body, decoded (aws-chunked, HTTP chunked) and checked."""
        self._body_read = True
        h = self._h
        length_s = h.get("content-length")
        te = h.get("transfer-encoding", "").lower()
        payload = self._verified.payload
        ce = h.get("content-encoding", "")
        if payload.startswith("STREAMING-") or "aws-chunked" in ce:
            length = int(length_s) if length_s and "chunked" not in te else None
            if "chunked" in te:
                return iter(sigv4.ChunkedReader(_HTTPChunked(self.rfile), None, self._verified))
            return iter(sigv4.ChunkedReader(self.rfile, length, self._verified))
        if "chunked" in te:
            pieces: Iterator[bytes] = iter(_HTTPChunked(self.rfile))
        elif length_s is None:
            raise S3Error("MissingContentLength", "send a Content-Length header (or "
                          "Transfer-Encoding: chunked) with the body")
        else:
            try:
                length = int(length_s)
            except ValueError as e:
                raise S3Error("InvalidArgument", "Content-Length is not a number") from e
            pieces = sigv4.body_pieces(self.rfile, length, PIECE)
        if len(payload) == 64:  # a signed payload: its SHA-256 is checked as it streams
            pieces = sigv4.sha256_checked(pieces, payload)
        return pieces

    def body_bytes(self, limit: int = MAX_XML_BODY) -> bytes:
        out = bytearray()
        for p in self.body_stream():
            out += p
            if len(out) > limit:
                raise S3Error("EntityTooLarge", f"this request's body is limited to {limit} bytes")
        return bytes(out)


class _HTTPChunked:
    """Reads an HTTP/1.1 ``Transfer-Encoding: chunked`` body as a file."""

    def __init__(self, f: Any) -> None:
        self._f = f
        self._left = 0
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        while True:
            data = self.read(PIECE)
            if not data:
                return
            yield data

    def readline(self, limit: int = -1) -> bytes:
        out = bytearray()
        while limit < 0 or len(out) < limit:
            c = self.read(1)
            if not c:
                break
            out += c
            if c == b"\n":
                break
        return bytes(out)

    def read(self, n: int) -> bytes:
        out = bytearray()
        while n > 0 and not self._done:
            if self._left == 0:
                line = self._f.readline(4096).strip()
                size = int(line.split(b";")[0] or b"0", 16)
                if size == 0:
                    while self._f.readline(4096).strip():
                        pass
                    self._done = True
                    break
                self._left = size
            data = self._f.read(min(n, self._left))
            if not data:
                raise S3Error("IncompleteBody", "the chunked body ended early")
            out += data
            n -= len(data)
            self._left -= len(data)
            if self._left == 0:
                self._f.readline(4096)
        return bytes(out)


def _etag_match(header: str, etag: str) -> bool:
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or any(t.removeprefix("W/").strip('"') == etag for t in tags)


def _parse_http_date(value: str) -> float | None:
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` -> (offset, length);
    None for a header to ignore (malformed or several ranges: S3 answers
    the whole object). ``InvalidRange`` when it starts past the end."""
    v = value.strip()
    if not v.startswith("bytes=") or "," in v:
        return None
    spec = v[len("bytes="):].strip()
    a, sep, b = spec.partition("-")
    if not sep:
        return None
    try:
        if a == "":
            n = int(b)
            if n <= 0:
                if size == 0:
                    return None
                raise ValueError
            n = min(n, size)
            return (size - n, n)
        start = int(a)
        end = int(b) if b else size - 1
    except ValueError:
        raise _invalid_range(value, size) from None
    if start < 0 or end < start:
        return None
    if start >= size:
        raise _invalid_range(value, size)
    end = min(end, size - 1)
    return (start, end - start + 1)


def _invalid_range(value: str, size: int) -> S3Error:
    return S3Error("InvalidRange", f"the range {value!r} is not satisfiable: the object is "
                   f"{size} bytes; ask for a range that starts before its end",
                   RangeRequested=value, ActualObjectSize=str(size))


def _int_param(q: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    v = q.get(name)
    if v is None or v == "":
        return default
    try:
        n = int(v)
    except ValueError:
        raise S3Error("InvalidArgument", f"{name} must be an integer, got {v!r}") from None
    if n < lo:
        raise S3Error("InvalidArgument", f"{name} must be at least {lo}, got {n}")
    return min(n, hi)


class _Request:
    """One request's routing: path-style ``/bucket/key`` and sub-resources."""

    def __init__(self, h: _Handler, s3: S3Server, method: str, path: str) -> None:
        self.h = h
        self.s3 = s3
        self.method = method
        self.q = h._q
        bucket, _, key = path.lstrip("/").partition("/")
        self.bucket_name = bucket
        self.key = key

    def dispatch(self) -> None:
        for sub in _UNSUPPORTED:
            if sub in self.q:
                if sub == "acl" and self.method == "GET":
                    return self._acl()
                if sub == "tagging" and self.method == "GET":
                    return self.h.send(200, sxml._doc("Tagging", "<TagSet></TagSet>"),
                                       {"Content-Type": "application/xml"})
                raise S3Error("NotImplemented", f"the {sub!r} sub-resource is not implemented "
                              "by tusk's S3 gateway (data, listing and multipart are)")
        if not self.bucket_name:
            if self.method == "GET":
                return self.h.send(200, sxml.list_buckets(self.s3.resolver.list_buckets()),
                                   {"Content-Type": "application/xml"})
            raise S3Error("MethodNotAllowed", f"{self.method} / is not an S3 operation: "
                          "name a bucket", "/")
        if not self.key:
            return self._bucket_op()
        validate_key(self.key, self.bucket_name)
        return self._object_op()

    def _acl(self) -> None:
        grant = ('<AccessControlList><Grant><Grantee xmlns:xsi="http://www.w3.org/2001/'
                 'XMLSchema-instance" xsi:type="CanonicalUser"><ID>tusk</ID>'
                 '<DisplayName>tusk</DisplayName></Grantee><Permission>FULL_CONTROL'
                 '</Permission></Grant></AccessControlList>')
        self.h.send(200, sxml._doc("AccessControlPolicy", sxml.OWNER + grant),
                    {"Content-Type": "application/xml"})

    def bucket(self) -> Bucket:
        return self.s3.resolver.bucket(self.bucket_name)

    def xml(self, body: bytes, status: int = 200) -> None:
        self.h.send(status, body, {"Content-Type": "application/xml"})

    # -- buckets ----------------------------------------------------------------

    def _bucket_op(self) -> None:
        m, q, name = self.method, self.q, self.bucket_name
        if m == "PUT":
            if "versioning" in q:
                raise S3Error("NotImplemented", "bucket versioning is fixed: commit buckets "
                              "are versions (GET with versionId=<commit ID>)")
            self.h.body_bytes()  # a CreateBucketConfiguration (region) is ignored
            self.s3.resolver.create_bucket(name)
            return self.h.send(200, b"", {"Location": f"/{name}"})
        if m == "DELETE":
            self.s3.resolver.delete_bucket(name)
            return self.h.send(204)
        if m == "HEAD":
            self.bucket()
            return self.h.send(200, b"", {"x-amz-bucket-region": self.s3.region})
        if m == "POST":
            if "delete" in q:
                return self._delete_objects()
            raise S3Error("MethodNotAllowed", "POST on a bucket is only DeleteObjects (?delete)")
        if m != "GET":
            raise S3Error("MethodNotAllowed", f"{m} is not allowed on a bucket")
        b = self.bucket()
        if "location" in q:
            return self.xml(sxml.location(self.s3.region))
        if "versioning" in q:
            return self.xml(sxml.versioning(b.versioned))
        if "uploads" in q:
            prefix = q.get("prefix", "")
            return self.xml(sxml.list_uploads(name, prefix, b.list_multipart_uploads(prefix)))
        if "versions" in q:
            raise S3Error("NotImplemented", "ListObjectVersions is not implemented: list a "
                          "commit's objects through its bucket <commit>.<branch>.<repo>.<project>")
        return self._list(b)

    def _list(self, b: Bucket) -> None:
        q = self.q
        v2 = q.get("list-type") == "2"
        prefix = q.get("prefix", "")
        delimiter = q.get("delimiter", "")
        enc = q.get("encoding-type", "")
        if enc and enc != "url":
            raise S3Error("InvalidArgument", f"encoding-type {enc!r} is not valid: use 'url'")
        max_keys = _int_param(q, "max-keys", 1000, 0, 1000)
        token = q.get("continuation-token", "")
        start_after = q.get("start-after", "") if v2 else q.get("marker", "")
        begin = start_after
        if v2 and token:
            begin = _decode_token(token)
        if max_keys == 0:
            from tusk.s3.backend import ListPage

            page = ListPage()
        else:
            page = b.list_objects(prefix, begin, delimiter, max_keys)
        next_token = _encode_token(page.next_start_after) if page.truncated else ""
        self.xml(sxml.list_objects(self.bucket_name, page, prefix, delimiter, max_keys,
                                   enc == "url", v2, marker=q.get("marker", ""),
                                   continuation=token, start_after=q.get("start-after", ""),
                                   next_token=next_token,
                                   fetch_owner=q.get("fetch-owner", "") == "true"))

    def _delete_objects(self) -> None:
        b = self.bucket()
        keys, quiet = sxml.parse_delete(self.h.body_bytes())
        for k in keys:
            validate_key(k, self.bucket_name)
        self.xml(sxml.delete_result(b.delete_objects(keys), quiet))

    # -- objects -------------------------------------------------------------------

    def _object_op(self) -> None:
        m, q = self.method, self.q
        if m in ("GET", "HEAD"):
            if "uploadId" in q and m == "GET":
                return self._list_parts()
            return self._get(head=m == "HEAD")
        if m == "PUT":
            if "uploadId" in q and "partNumber" in q:
                return self._upload_part()
            if "x-amz-copy-source" in self.h._h:
                return self._copy()
            return self._put()
        if m == "POST":
            if "uploads" in q:
                b = self.bucket()
                self.h.body_bytes()
                uid = b.create_multipart(self.key, self.h._h.get("content-type", ""))
                return self.xml(sxml.initiate(self.bucket_name, self.key, uid))
            if "uploadId" in q:
                return self._complete()
            raise S3Error("MethodNotAllowed", "POST on an object is only "
                          "CreateMultipartUpload (?uploads) or Complete (?uploadId=)")
        if m == "DELETE":
            b = self.bucket()
            if "uploadId" in q:
                b.abort_multipart(q["uploadId"])
                return self.h.send(204)
            b.delete_object(self.key)
            return self.h.send(204)
        raise S3Error("MethodNotAllowed", f"{m} is not allowed on an object")

    def _obj_headers(self, info: ObjectInfo) -> dict[str, str]:
        h = {"ETag": sxml.quote_etag(info.etag),
             "Last-Modified": sxml.http_date(info.last_modified),
             "Accept-Ranges": "bytes",
             "Content-Type": info.content_type}
        if info.version_id:
            h["x-amz-version-id"] = info.version_id
        return h

    def _get(self, head: bool) -> None:
        b = self.bucket()
        version = self.q.get("versionId") or None
        data = b.get_object(self.key, version)
        info = data.info
        hd = self.h._h
        headers = self._obj_headers(info)
        # Conditions, in RFC 7232's order (S3 follows it).
        im, inm = hd.get("if-match"), hd.get("if-none-match")
        if im is not None and not _etag_match(im, info.etag):
            raise S3Error("PreconditionFailed", "If-Match does not match the object's ETag "
                          f"{sxml.quote_etag(info.etag)}", f"/{self.bucket_name}/{self.key}",
                          Condition="If-Match")
        if im is None:
            ius = _parse_http_date(hd.get("if-unmodified-since", ""))
            if ius is not None and int(info.last_modified) > ius:
                raise S3Error("PreconditionFailed", "the object was modified after "
                              "If-Unmodified-Since", Condition="If-Unmodified-Since")
        if inm is not None:
            if _etag_match(inm, info.etag):
                return self.h.send(304, b"", headers)
        else:
            ims = _parse_http_date(hd.get("if-modified-since", ""))
            if ims is not None and int(info.last_modified) <= ims:
                return self.h.send(304, b"", headers)
        offset, length, status = 0, info.size, 200
        rng = hd.get("range")
        if rng:
            r = _parse_range(rng, info.size)
            if r is not None:
                offset, length = r
                status = 206
                headers["Content-Range"] = (f"bytes {offset}-{offset + length - 1}/{info.size}")
        for k, v in self.q.items():
            if k.startswith("response-") and k[9:] in (
                    "content-type", "content-disposition", "content-encoding",
                    "content-language", "cache-control", "expires"):
                headers["-".join(w.capitalize() for w in k[9:].split("-"))] = v
        self.h.send(status, b"", headers, head=head, length=length)
        if head or length == 0:
            return
        w = self.h.wfile
        for piece in data.read(offset, length):
            w.write(piece)

    def _put(self) -> None:
        b = self.bucket()
        info = b.put_object(self.key, self.h.body_stream(), self.h._h.get("content-type", ""))
        headers = {"ETag": sxml.quote_etag(info.etag)}
        if info.version_id:
            headers["x-amz-version-id"] = info.version_id
        self.h.send(200, b"", headers)

    def _copy_source(self) -> tuple[Bucket, str, str | None]:
        src = unquote(self.h._h["x-amz-copy-source"])
        src, _, qs = src.partition("?")
        sb, _, sk = src.lstrip("/").partition("/")
        if not sb or not sk:
            raise S3Error("InvalidArgument", "x-amz-copy-source must be /bucket/key "
                          f"(got {src!r})")
        validate_key(sk, sb)
        version = dict(parse_qsl(qs)).get("versionId") or None
        return self.s3.resolver.bucket(sb), sk, version

    def _copy(self) -> None:
        b = self.bucket()
        directive = self.h._h.get("x-amz-metadata-directive", "COPY")
        src, sk, version = self._copy_source()
        if src.name == b.name and sk == self.key and version is None and directive != "REPLACE":
            raise S3Error("InvalidRequest", "this copy request is illegal because it tries to "
                          "copy an object to itself without changing anything; "
                          "set x-amz-metadata-directive: REPLACE")
        self.h.body_bytes()
        info = b.copy_object(self.key, src, sk, version)
        self.xml(sxml.copy_result(info))

    # -- multipart --------------------------------------------------------------------

    def _part_number(self) -> int:
        return _int_param(self.q, "partNumber", 0, 1, 10000)

    def _upload_part(self) -> None:
        b = self.bucket()
        n = self._part_number()
        uid = self.q["uploadId"]
        if "x-amz-copy-source" in self.h._h:
            src, sk, version = self._copy_source()
            rng = None
            r = self.h._h.get("x-amz-copy-source-range")
            if r:
                try:
                    a, _, z = r.removeprefix("bytes=").partition("-")
                    rng = (int(a), int(z))
                except ValueError:
                    raise S3Error("InvalidArgument", "x-amz-copy-source-range must be "
                                  "bytes=first-last") from None
            self.h.body_bytes()
            part = b.upload_part_copy(uid, n, src, sk, version, rng)
            info = ObjectInfo(self.key, part.size, part.etag, part.last_modified)
            return self.xml(sxml.copy_result(info, part=True))
        part = b.upload_part(uid, n, self.h.body_stream())
        self.h.send(200, b"", {"ETag": sxml.quote_etag(part.etag)})

    def _complete(self) -> None:
        b = self.bucket()
        parts = sxml.parse_complete(self.h.body_bytes())
        info = b.complete_multipart(self.q["uploadId"], parts)
        host = self.h._h.get("host", "")
        self.xml(sxml.complete(f"http://{host}/{self.bucket_name}/{self.key}",
                               self.bucket_name, self.key, info))

    def _list_parts(self) -> None:
        b = self.bucket()
        after = _int_param(self.q, "part-number-marker", 0, 0, 10000)
        max_parts = _int_param(self.q, "max-parts", 1000, 1, 1000)
        parts, truncated = b.list_parts(self.q["uploadId"], after, max_parts)
        self.xml(sxml.list_parts(self.bucket_name, self.key, self.q["uploadId"], parts,
                                 after, max_parts, truncated))


def _encode_token(start_after: str) -> str:
    import base64

    return base64.urlsafe_b64encode(start_after.encode()).decode()


def _decode_token(token: str) -> str:
    import base64
    import binascii

    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise S3Error("InvalidArgument", "the continuation-token is not one this gateway "
                      "gave out: start the listing again without it") from None

