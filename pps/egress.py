"""Egress: mirror a successful job's output commit to an S3 prefix.

A pipeline with ``"egress": {"URL": "s3://BUCKET/PREFIX"}`` gets, after each
job whose datums all succeeded, every file of its output commit uploaded to
``PREFIX/<path without the leading />`` on that S3 server, streamed from the
object store (one upload part in memory at a time). The master drives it
(:func:`pps.controller.master`); the job is EGRESSING meanwhile.

What a mirror does, in one pass over the commit:

* a file whose tusk hash is the one the previous egress recorded
  (:class:`pps.records.EgressManifest`) while the object still has the size
  and ETag that upload got is skipped: later jobs send only what changed;
* every other file is uploaded;
* keys the previous egress wrote that the commit no longer has are deleted.
  Objects tusk did not write are never touched, so a shared prefix is safe.

Where to send: the URL's ``?endpoint=`` (chosen by the pipeline's author),
else the daemon's ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (chosen by its
operator), else AWS. Credentials only from the daemon's environment
(``AWS_ACCESS_KEY_ID``...). An endpoint from the spec must not be link-local,
multicast or reserved (the cloud metadata service), nor private unless the
operator sets ``TUSK_EGRESS_ALLOW_PRIVATE=1``; loopback is allowed. The
operator's own endpoint is trusted but for the link-local rule.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pfs.api import PFS
from pfs.errors import TuskError
from pfs.s3urls import S3URL, S3Config, S3NoSuchBucket, check_endpoint_address, parse_s3_url
from pps.records import EgressManifest

__all__ = ["ALLOW_PRIVATE_ENV", "EgressResult", "EgressStopped", "mirror", "target"]

#: Set to 1 in the daemon's environment to let specs name private addresses.
ALLOW_PRIVATE_ENV = "TUSK_EGRESS_ALLOW_PRIVATE"
#: Where an egress endpoint is set, for error messages.
HINT = "?endpoint= in the spec's egress.URL, or the daemon's AWS_ENDPOINT_URL_S3"


class EgressStopped(Exception):
    """The job ended or the controller stopped while the mirror ran."""


@dataclass(frozen=True)
class EgressResult:
    """What one mirror did."""

    uploaded: int
    skipped: int
    deleted: int
    bytes: int

    def stats(self) -> dict[str, float]:
        """As job stats (``inspect job --raw``)."""
        return {"egress_uploaded": float(self.uploaded), "egress_skipped": float(self.skipped),
                "egress_deleted": float(self.deleted), "egress_bytes": float(self.bytes)}


def target(url: str, env: Mapping[str, str] | None = None) -> tuple[S3URL, S3Config]:
    """The egress target of ``url`` and how to reach it, after the address policy.

    Raises:
        InvalidArgument: a malformed URL, or an endpoint the policy refuses.
    """
    e = os.environ if env is None else env
    loc = parse_s3_url(url)
    cfg = S3Config().for_url(loc, env=e, prefer_url=True)
    allow_private = e.get(ALLOW_PRIVATE_ENV, "") in ("1", "true", "yes")
    # The spec's endpoint is the pipeline author's choice; the environment's
    # is the operator's. Both are checked when used (DNS may have changed).
    check_endpoint_address(cfg.endpoint, allow_private=allow_private or not loc.endpoint,
                           what="egress endpoint")
    return loc, cfg


def mirror(pfs: PFS, repo: str, commit: str, url: str, previous: EgressManifest | None,
           save: Callable[[EgressManifest], None],
           keep_going: Callable[[], bool] = lambda: True) -> EgressResult:
    """Mirror ``repo@commit`` (finished) to ``url``; ``save`` records the new
    manifest (also, marked incomplete, when the mirror fails part-way, so
    the next try knows what it may have left behind).

    Raises:
        S3NoSuchBucket, S3AccessDenied, S3Unreachable, InvalidArgument:
            the target's problem, with what to do about it.
        EgressStopped: ``keep_going()`` turned False (checked between files).
    """
    from pfs.s3remote import S3Remote  # the S3 SDK, only for pipelines that egress

    loc, cfg = target(url)
    remote = S3Remote(cfg, hint=HINT)
    if not remote.bucket_exists(loc):
        # Buckets on someone else's server are theirs to create.
        raise S3NoSuchBucket(f"s3://{loc.bucket}", remote.endpoint_url, HINT)
    prefix = loc.prefix
    there = {o.key: (o.size, o.etag) for o in remote.list(loc, prefix)}
    known = previous.entries if previous is not None and previous.url == url else {}
    entries: dict[str, tuple[str, int, str]] = {}
    uploaded = skipped = sent = 0
    try:
        for fi in pfs.walk_file(repo, commit, "/"):
            if fi.path.endswith("/"):
                continue
            if not keep_going():
                raise EgressStopped()
            key = prefix + fi.path.lstrip("/")
            old = known.get(key)
            if (old is not None and old[0] == fi.hash and old[1] == fi.size_bytes
                    and there.get(key) == (old[1], old[2])):
                entries[key] = old
                skipped += 1
                continue
            etag = remote.upload(loc, key, pfs.get_file(repo, commit, fi.path), fi.size_bytes)
            entries[key] = (fi.hash, fi.size_bytes, etag)
            uploaded += 1
            sent += fi.size_bytes
        stale = sorted(k for k in known if k not in entries and k in there)
        deleted = remote.delete(loc, stale)
    except (TuskError, EgressStopped):
        # What may be there now: this try's uploads and the earlier ones.
        save(EgressManifest(url, {**known, **entries}, complete=False))
        raise
    save(EgressManifest(url, entries))
    return EgressResult(uploaded, skipped, deleted, sent)
