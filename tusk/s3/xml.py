"""S3's XML: the answers the server writes, and the two request bodies it reads
(DeleteObjects and CompleteMultipartUpload).

Answers are built as text with every value escaped (they are small; the
largest is a listing page of at most 1000 keys). Request bodies are parsed
with the standard library's expat-based ElementTree, whose expat (>= 2.4)
refuses entity-expansion bombs; the server also caps their size.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from urllib.parse import quote
from xml.sax.saxutils import escape

from tusk.s3.backend import (
    BucketInfo,
    DeleteResult,
    ListPage,
    ObjectInfo,
    PartInfo,
    S3Error,
    UploadInfo,
)

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'
OWNER = "<Owner><ID>tusk</ID><DisplayName>tusk</DisplayName></Owner>"


def iso8601(t: float) -> str:
    """``2024-01-02T03:04:05.000Z``, the time format of S3's XML."""
    ms = int((t % 1) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{ms:03d}Z"


def http_date(t: float) -> str:
    """RFC 7231 date, as in Last-Modified."""
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(t))


def _e(tag: str, value: object) -> str:
    return f"<{tag}>{escape(str(value))}</{tag}>"


def _doc(root: str, body: str) -> bytes:
    return (f'{HEAD}<{root} xmlns="{NS}">{body}</{root}>').encode()


def error(err: S3Error, request_id: str) -> bytes:
    extra = "".join(_e(k, v) for k, v in err.extra.items())
    return (f"{HEAD}<Error>{_e('Code', err.code)}{_e('Message', err.message)}"
            f"{_e('Resource', err.resource)}{extra}{_e('RequestId', request_id)}"
            "</Error>").encode()


def list_buckets(buckets: Iterable[BucketInfo]) -> bytes:
    items = "".join(f"<Bucket>{_e('Name', b.name)}{_e('CreationDate', iso8601(b.created))}"
                    "</Bucket>" for b in buckets)
    return _doc("ListAllMyBucketsResult", f"{OWNER}<Buckets>{items}</Buckets>")


def location(region: str) -> bytes:
    # us-east-1 is answered as an empty constraint, as AWS does.
    return _doc("LocationConstraint", "" if region == "us-east-1" else escape(region))


def versioning(enabled: bool) -> bytes:
    return _doc("VersioningConfiguration", _e("Status", "Enabled") if enabled else "")


def _key(k: str, url: bool) -> str:
    return quote(k, safe="/") if url else k


def _contents(o: ObjectInfo, url: bool, owner: bool) -> str:
    return (f"<Contents>{_e('Key', _key(o.key, url))}"
            f"{_e('LastModified', iso8601(o.last_modified))}{_e('ETag', quote_etag(o.etag))}"
            f"{_e('Size', o.size)}{_e('StorageClass', 'STANDARD')}"
            f"{OWNER if owner else ''}</Contents>")


def list_objects(bucket: str, page: ListPage, prefix: str, delimiter: str, max_keys: int,
                 url: bool, v2: bool, marker: str = "", continuation: str = "",
                 start_after: str = "", next_token: str = "", fetch_owner: bool = False
                 ) -> bytes:
    """ListObjects (v1) or ListObjectsV2. As S3 does, v1 names each object's
    owner and V2 only when asked (``fetch-owner=true``): it is a fifth of a
    page, and boto3 spends its time parsing pages."""
    parts = [_e("Name", bucket), _e("Prefix", _key(prefix, url))]
    if v2:
        if continuation:
            parts.append(_e("ContinuationToken", continuation))
        if start_after:
            parts.append(_e("StartAfter", _key(start_after, url)))
        parts.append(_e("KeyCount", len(page.objects) + len(page.common_prefixes)))
    else:
        parts.append(_e("Marker", _key(marker, url)))
    parts.append(_e("MaxKeys", max_keys))
    if delimiter:
        parts.append(_e("Delimiter", _key(delimiter, url)))
    if url:
        parts.append(_e("EncodingType", "url"))
    parts.append(_e("IsTruncated", "true" if page.truncated else "false"))
    if page.truncated:
        if v2:
            parts.append(_e("NextContinuationToken", next_token))
        elif delimiter:
            parts.append(_e("NextMarker", _key(page.next_start_after, url)))
    owner = not v2 or fetch_owner
    parts.extend(_contents(o, url, owner) for o in page.objects)
    parts.extend(f"<CommonPrefixes>{_e('Prefix', _key(p, url))}</CommonPrefixes>"
                 for p in page.common_prefixes)
    return _doc("ListBucketResult", "".join(parts))


def quote_etag(etag: str) -> str:
    return f'"{etag}"'


def copy_result(info: ObjectInfo, part: bool = False) -> bytes:
    return _doc("CopyPartResult" if part else "CopyObjectResult",
                _e("LastModified", iso8601(info.last_modified)) + _e("ETag", quote_etag(info.etag)))


def initiate(bucket: str, key: str, upload_id: str) -> bytes:
    return _doc("InitiateMultipartUploadResult",
                _e("Bucket", bucket) + _e("Key", key) + _e("UploadId", upload_id))


def complete(location_url: str, bucket: str, key: str, info: ObjectInfo) -> bytes:
    return _doc("CompleteMultipartUploadResult",
                _e("Location", location_url) + _e("Bucket", bucket) + _e("Key", key)
                + _e("ETag", quote_etag(info.etag)))


def list_parts(bucket: str, key: str, upload_id: str, parts: Sequence[PartInfo], after: int,
               max_parts: int, truncated: bool) -> bytes:
    body = [_e("Bucket", bucket), _e("Key", key), _e("UploadId", upload_id),
            _e("PartNumberMarker", after), _e("MaxParts", max_parts),
            _e("IsTruncated", "true" if truncated else "false")]
    if truncated and parts:
        body.append(_e("NextPartNumberMarker", parts[-1].number))
    body.append(OWNER.replace("Owner>", "Initiator>") + OWNER + _e("StorageClass", "STANDARD"))
    body.extend(f"<Part>{_e('PartNumber', p.number)}{_e('LastModified', iso8601(p.last_modified))}"
                f"{_e('ETag', quote_etag(p.etag))}{_e('Size', p.size)}</Part>" for p in parts)
    return _doc("ListPartsResult", "".join(body))


def list_uploads(bucket: str, prefix: str, uploads: Sequence[UploadInfo]) -> bytes:
    body = [_e("Bucket", bucket), _e("KeyMarker", ""), _e("UploadIdMarker", ""),
            _e("Prefix", prefix), _e("MaxUploads", 1000), _e("IsTruncated", "false")]
    body.extend(f"<Upload>{_e('Key', u.key)}{_e('UploadId', u.upload_id)}"
                f"{OWNER.replace('Owner>', 'Initiator>')}{OWNER}"
                f"{_e('StorageClass', 'STANDARD')}{_e('Initiated', iso8601(u.initiated))}</Upload>"
                for u in uploads)
    return _doc("ListMultipartUploadsResult", "".join(body))


def delete_result(results: Sequence[DeleteResult], quiet: bool) -> bytes:
    out = []
    for r in results:
        if r.error is None:
            if not quiet:
                out.append(f"<Deleted>{_e('Key', r.key)}</Deleted>")
        else:
            out.append(f"<Error>{_e('Key', r.key)}{_e('Code', r.error.code)}"
                       f"{_e('Message', r.error.message)}</Error>")
    return _doc("DeleteResult", "".join(out))


# -- request bodies -------------------------------------------------------------


def _parse(body: bytes) -> ET.Element:
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise S3Error("MalformedXML", "the XML body may not declare a DOCTYPE or entities")
    try:
        return ET.fromstring(body)
    except ET.ParseError as e:
        raise S3Error("MalformedXML", f"the XML body is not well-formed ({e}); "
                      "send the document S3's API describes") from e


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if _local(c.tag) == name]


def _text(el: ET.Element, name: str) -> str | None:
    for c in el:
        if _local(c.tag) == name:
            return c.text or ""
    return None


def parse_delete(body: bytes) -> tuple[list[str], bool]:
    """DeleteObjects' ``<Delete>``: the keys, and Quiet."""
    root = _parse(body)
    if _local(root.tag) != "Delete":
        raise S3Error("MalformedXML", "DeleteObjects expects a <Delete> document")
    keys = []
    for obj in _children(root, "Object"):
        k = _text(obj, "Key")
        if k is None:
            raise S3Error("MalformedXML", "every <Object> of <Delete> needs a <Key>")
        keys.append(k)
    if len(keys) > 1000:
        raise S3Error("MalformedXML", f"DeleteObjects takes at most 1000 keys, got {len(keys)}")
    quiet = (_text(root, "Quiet") or "").strip().lower() == "true"
    return keys, quiet


def parse_complete(body: bytes) -> list[tuple[int, str]]:
    """CompleteMultipartUpload's parts: (PartNumber, ETag without quotes)."""
    root = _parse(body)
    if _local(root.tag) != "CompleteMultipartUpload":
        raise S3Error("MalformedXML", "CompleteMultipartUpload expects a "
                      "<CompleteMultipartUpload> document listing <Part>s")
    parts = []
    for p in _children(root, "Part"):
        n, etag = _text(p, "PartNumber"), _text(p, "ETag")
        if n is None or not n.strip().isdigit():
            raise S3Error("MalformedXML", "every <Part> needs a numeric <PartNumber>")
        parts.append((int(n), (etag or "").strip().strip('"')))
    if not parts:
        raise S3Error("MalformedXML", "CompleteMultipartUpload lists no <Part>: "
                      "name every uploaded part with its ETag")
    return parts
