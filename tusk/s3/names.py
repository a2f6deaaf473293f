"""Bucket names and object keys.

Buckets name PFS branches and commits as Pachyderm's S3 gateway does, split
on ``.`` (repo, branch and project names cannot contain one):

========================================  ==========================================
``repo``                                  branch ``master`` of ``repo`` (project default)
``branch.repo``                           a branch of a repo in project ``default``
``branch.repo.project``                   a branch of a repo in another project
``commit.branch.repo.project``            one commit (read-only)
========================================  ==========================================

Object keys are checked before any backend sees them: no empty key, no
``.``/``..`` component, no NUL or other control character (a key can never
name anything outside its bucket).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tusk.s3.backend import S3Error

_PART_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
MAX_KEY = 1024


@dataclass(frozen=True)
class BucketName:
    """A parsed bucket name: the repo's full name (``NAME`` or ``PROJECT/NAME``),
    branch, project, and a commit ID for a commit's bucket ("" otherwise)."""

    repo: str
    branch: str
    project: str
    commit: str = ""


def parse_bucket(name: str) -> BucketName:
    """Parse a bucket name (see the module table).

    Raises:
        S3Error: ``InvalidBucketName`` for anything else, saying the forms.
    """
    parts = name.split(".")
    if not name or len(parts) > 4 or not all(_PART_RE.match(p) for p in parts):
        raise S3Error("InvalidBucketName", f"{name!r} is not a bucket name here: use "
                      "REPO, BRANCH.REPO, BRANCH.REPO.PROJECT or COMMIT.BRANCH.REPO.PROJECT "
                      "(names of letters, digits, '_' and '-')", f"/{name}", BucketName=name)
    commit = ""
    if len(parts) == 1:
        branch, repo, project = "master", parts[0], "default"
    elif len(parts) == 2:
        branch, repo = parts
        project = "default"
    elif len(parts) == 3:
        branch, repo, project = parts
    else:
        commit, branch, repo, project = parts
    full = repo if project == "default" else f"{project}/{repo}"
    return BucketName(full, branch, project, commit)


def bucket_name(repo: str, branch: str, commit: str = "") -> str:
    """The bucket of a repo's branch (or of one commit): ``branch.repo`` in
    the default project, ``branch.repo.project`` elsewhere."""
    project, _, bare = repo.rpartition("/")
    project = project or "default"
    if commit:
        return f"{commit}.{branch}.{bare}.{project}"
    return f"{branch}.{bare}" if project == "default" else f"{branch}.{bare}.{project}"


def validate_key(key: str, bucket: str = "") -> None:
    """Refuse keys that are empty, too long, have ``.``/``..`` components or
    control characters (``InvalidArgument``)."""
    res = f"/{bucket}/{key}"
    if not key:
        raise S3Error("InvalidArgument", "the object key is empty", res)
    if len(key.encode()) > MAX_KEY:
        raise S3Error("KeyTooLongError", f"the key is longer than {MAX_KEY} bytes", res)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise S3Error("InvalidArgument", "the object key contains a NUL or another control "
                      "character: remove it", res)
    if any(p in (".", "..") for p in key.split("/")):
        raise S3Error("InvalidArgument", f"the object key {key!r} has a '.' or '..' "
                      "component; keys name files inside the bucket: remove them", res)
