"""Multipart uploads over PFS: parts stored as chunks as they arrive,
assembled by reference.

An upload never holds an object in memory, nor copies bytes at the end:

* **UploadPart** streams the part through PFS's chunker into packs
  (:meth:`pfs.api.PFS.store_stream`) and records the part's chunk refs as a
  *pin* (:meth:`pfs.api.PFS.pin_chunks`), which the garbage collector marks,
  so a part outlives GC's grace period however long the upload takes;
* **CompleteMultipartUpload** concatenates the parts' refs into one file
  (``FileWriter.put_chunks``, one commit, no byte copied) and then drops the
  upload's records and pins;
* **Abort**, or an upload older than :data:`UPLOAD_TTL` (swept by
  :meth:`MultipartStore.sweep`), drops the records and pins: the packs become
  unreferenced and GC frees them.

Records (JSON, in PFS's metadata store; keys built only here):

* ``s3/uploads/<upload id>``: ``{repo, branch, key, created, content_type}``
* ``s3/parts/<upload id>/<part number, 5 digits>``: ``{size, etag, time, pin}``
* pins ``s3-<upload id>-<part>-<token>`` (a part uploaded again gets a new
  token: its old pin is released only after the new record is written).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from pfs.api import PFS
from pfs.blobs import ChunkRef
from pfs.tree import file_hash
from tusk.s3.backend import PartInfo, S3Error, UploadInfo

#: Uploads older than this (seconds) are aborted by the sweep (S3 keeps them
#: until a lifecycle rule says otherwise; a day bounds what a crashed client
#: leaves behind).
UPLOAD_TTL = 24 * 3600.0
#: Seconds between sweeps in the daemon.
SWEEP_INTERVAL = 3600.0

_UPLOADS = "s3/uploads/"
_PARTS = "s3/parts/"


def _upload_key(uid: str) -> str:
    return f"{_UPLOADS}{uid}"


def _parts_prefix(uid: str) -> str:
    return f"{_PARTS}{uid}/"


def _part_key(uid: str, n: int) -> str:
    return f"{_parts_prefix(uid)}{n:05d}"


@dataclass(frozen=True)
class UploadRec:
    repo: str
    branch: str
    key: str
    created: float
    content_type: str = ""


@dataclass(frozen=True)
class PartRec:
    size: int
    etag: str
    time: float
    pin: str


def part_etag(refs: Iterable[ChunkRef]) -> str:
    """A part's ETag: from its content hash (32 hex, not an MD5)."""
    return file_hash(list(refs)).hex()[:32]


class MultipartStore:
    """Multipart uploads of every PFS bucket (see the module docstring)."""

    def __init__(self, pfs: PFS, ttl: float = UPLOAD_TTL) -> None:
        self.pfs = pfs
        self.meta = pfs.meta
        self.ttl = ttl
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- records ------------------------------------------------------------

    def upload(self, uid: str, repo: str, branch: str) -> UploadRec:
        """The upload ``uid`` of this repo and branch, or ``NoSuchUpload``."""
        kv = self.meta.get(_upload_key(uid)) if _valid_uid(uid) else None
        if kv is not None:
            rec = UploadRec(**json.loads(kv.value))
            if rec.repo == repo and rec.branch == branch:
                return rec
        raise S3Error("NoSuchUpload", f"no multipart upload {uid!r} in this bucket: it was "
                      "completed, aborted, or swept after "
                      f"{self.ttl / 3600:.0f} h; start a new upload", UploadId=uid)

    def create(self, repo: str, branch: str, key: str, content_type: str = "") -> str:
        uid = uuid.uuid4().hex
        rec = UploadRec(repo, branch, key, time.time(), content_type)
        self.meta.put(_upload_key(uid), json.dumps(asdict(rec)).encode())
        return uid

    def _parts(self, uid: str) -> list[tuple[int, PartRec]]:
        out = []
        for kv in self.meta.range(_parts_prefix(uid)):
            out.append((int(kv.key.rsplit("/", 1)[1]), PartRec(**json.loads(kv.value))))
        return out

    # -- operations ------------------------------------------------------------

    def put_part(self, uid: str, n: int, refs: list[ChunkRef], size: int) -> PartInfo:
        """Record part ``n`` made of stored ``refs`` (pinned before recorded)."""
        pin = f"s3-{uid}-{n}-{uuid.uuid4().hex[:8]}"
        self.pfs.pin_chunks(pin, refs)
        rec = PartRec(size, part_etag(refs), time.time(), pin)
        key = _part_key(uid, n)
        old = self.meta.get(key)
        self.meta.put(key, json.dumps(asdict(rec)).encode())
        if self.meta.get(_upload_key(uid)) is None:
            # Aborted (or completed) while this part streamed: leave nothing.
            self.meta.delete(key)
            self.pfs.unpin_chunks(pin)
            raise S3Error("NoSuchUpload", f"the multipart upload {uid!r} ended while this part "
                          "was uploading", UploadId=uid)
        if old is not None:
            self.pfs.unpin_chunks(PartRec(**json.loads(old.value)).pin)
        return PartInfo(n, size, rec.etag, rec.time)

    def upload_part(self, uid: str, n: int, body: Iterable[bytes]) -> PartInfo:
        refs, size = self.pfs.store_stream(body)
        return self.put_part(uid, n, refs, size)

    def assemble(self, uid: str, parts: list[tuple[int, str]]) -> tuple[list[ChunkRef], int]:
        """The refs and size of the object ``parts`` name (checked)."""
        for (a, _), (b, _) in itertools.pairwise(parts):
            if b <= a:
                raise S3Error("InvalidPartOrder", "the parts of CompleteMultipartUpload must be "
                              f"in ascending order of PartNumber (part {b} follows {a})",
                              UploadId=uid)
        have = dict(self._parts(uid))
        prev = 0
        refs: list[ChunkRef] = []
        size = 0
        for n, etag in parts:
            if n <= prev:
                raise S3Error("InvalidPartOrder", "the parts of CompleteMultipartUpload must be "
                              f"in ascending order of PartNumber (part {n} follows {prev})",
                              UploadId=uid)
            prev = n
            rec = have.get(n)
            if rec is None:
                raise S3Error("InvalidPart", f"part {n} was never uploaded (or not completely): "
                              "upload it, or leave it out of the list", UploadId=uid,
                              PartNumber=str(n))
            if etag and etag != rec.etag:
                raise S3Error("InvalidPart", f"part {n}'s ETag {etag!r} is not that of the "
                              f"uploaded part ({rec.etag!r}): name the part as UploadPart "
                              "answered", UploadId=uid, PartNumber=str(n))
            refs.extend(self.pfs.pinned_chunks(rec.pin))
            size += rec.size
        return refs, size

    def drop(self, uid: str) -> None:
        """Forget an upload: its record first (so no new part is accepted),
        then parts and pins."""
        self.meta.delete(_upload_key(uid))
        for n, rec in self._parts(uid):
            self.meta.delete(_part_key(uid, n))
            self.pfs.unpin_chunks(rec.pin)

    def list_parts(self, uid: str, after: int, max_parts: int) -> tuple[list[PartInfo], bool]:
        parts = [PartInfo(n, r.size, r.etag, r.time) for n, r in self._parts(uid) if n > after]
        return parts[:max_parts], len(parts) > max_parts

    def list_uploads(self, repo: str, branch: str, prefix: str) -> list[UploadInfo]:
        out = []
        for kv in self.meta.range(_UPLOADS):
            rec = UploadRec(**json.loads(kv.value))
            if rec.repo == repo and rec.branch == branch and rec.key.startswith(prefix):
                out.append(UploadInfo(kv.key[len(_UPLOADS):], rec.key, rec.created))
        out.sort(key=lambda u: (u.key, u.initiated))
        return out

    # -- sweeping -------------------------------------------------------------------

    def sweep(self, now: float | None = None) -> int:
        """Abort uploads older than the TTL; returns how many."""
        now = time.time() if now is None else now
        old = [kv.key[len(_UPLOADS):] for kv in self.meta.range(_UPLOADS)
               if now - float(json.loads(kv.value)["created"]) > self.ttl]
        for uid in old:
            self.drop(uid)
        # Parts whose upload record is gone (a process killed inside drop).
        for kv in self.meta.range(_PARTS):
            uid = kv.key[len(_PARTS):].split("/", 1)[0]
            if self.meta.get(_upload_key(uid)) is None:
                rec = PartRec(**json.loads(kv.value))
                if now - rec.time > 60:
                    self.meta.delete(kv.key)
                    self.pfs.unpin_chunks(rec.pin)
        return len(old)

    def start_sweeper(self, interval: float = SWEEP_INTERVAL) -> None:
        def loop() -> None:
            while True:
                try:
                    self.sweep()
                except Exception:  # a failed sweep is retried next time
                    import logging

                    logging.getLogger("tusk.s3").warning("sweep of multipart uploads failed",
                                                         exc_info=True)
                if self._stop.wait(interval):
                    return

        self._thread = threading.Thread(target=loop, name="tusk-s3-sweep", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


def _valid_uid(uid: str) -> bool:
    return len(uid) == 32 and all(c in "0123456789abcdef" for c in uid)
