"""Validation of names and file paths, and parsing of commit ancestry refs.

Rules follow Pachyderm (reference 1.1, 1.3, 1.6):

* Repo, branch and pipeline names: ``[a-zA-Z0-9_-]+``, repos at most 63 chars.
  A branch name may not look like a commit ID.
* File paths: printable ASCII only, no glob characters, no ``.``/``..``
  components; cleaned to an absolute path (``a//b/`` -> ``/a/b``).
* Refs: ``branch``, ``<id>``, ``branch=<id>``, followed by ``^``/``~`` (one
  parent each, or ``^N``/``~N``), or ``.N`` (N-th commit from the oldest).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pfs.errors import InvalidArgument, InvalidName, InvalidPath

NAME_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
COMMIT_ID_RE = re.compile(r"^[0-9a-f]{32}$")
UUID4_RE = re.compile(r"^[0-9a-f]{12}4[0-9a-f]{19}$")
GLOB_CHARS = set("*?[]{}!()@+^")


#: The project every name without one belongs to (Pachyderm's).
DEFAULT_PROJECT = "default"


def split_repo(repo: str) -> tuple[str, str]:
    """``"lab/data"`` -> ``("lab", "data")``; ``"data"`` -> ``("default", "data")``.

    A repo's full name is ``PROJECT/NAME``, or just ``NAME`` in the default
    project (so data made before projects existed is the default project's).
    """
    project, sep, name = repo.rpartition("/")
    return (project, name) if sep else (DEFAULT_PROJECT, name)


def qualify(project: str | None, name: str) -> str:
    """A repo's (or pipeline's) full name: ``name`` in the default project,
    else ``project/name``. A ``name`` that already names a project wins."""
    if "/" in name or not project or project == DEFAULT_PROJECT:
        if name.startswith(DEFAULT_PROJECT + "/"):
            return name[len(DEFAULT_PROJECT) + 1:]
        return name
    return f"{project}/{name}"


def validate_project_name(name: str) -> None:
    if not name or not NAME_RE.match(name) or not name[0].isalnum():
        raise InvalidArgument(
            f"project name ({name}) invalid: only alphanumeric characters, underscores, and "
            "dashes are allowed, starting with a letter or digit")
    if len(name) > 51:
        raise InvalidArgument(f"project name ({name}) invalid: at most 51 characters")


def validate_repo_name(name: str) -> None:
    """A repo's full name: ``NAME`` or ``PROJECT/NAME`` (see :func:`split_repo`)."""
    project, sep, bare = name.rpartition("/")
    if sep:
        if project == DEFAULT_PROJECT or "/" in project:
            raise InvalidName(name, "repo name")
        validate_project_name(project)
    if not bare or not NAME_RE.match(bare):
        raise InvalidName(name, "repo name")
    if len(bare) > 63:
        raise InvalidArgument(f"repo name ({name}) invalid: at most 63 characters are allowed")


def validate_branch_name(name: str) -> None:
    if not name or not NAME_RE.match(name):
        raise InvalidName(name, "branch name")
    if UUID4_RE.match(name):
        raise InvalidArgument(
            f"branch name ({name}) invalid: branch name cannot be a UUID V4 (it would be "
            "mistaken for a commit ID)"
        )


def clean_path(path: str) -> str:
    """Validate a file path and return it cleaned to ``/a/b`` form."""
    for ch in path:
        if not (0x20 <= ord(ch) <= 0x7E):
            raise InvalidPath(path, f"character {ch!r} is not printable ASCII")
        if ch in GLOB_CHARS:
            raise InvalidPath(
                path, f"character {ch!r} is a glob character and cannot be in a file name")
    parts = [p for p in path.split("/") if p]
    for p in parts:
        if p in (".", ".."):
            raise InvalidPath(path, "'.' and '..' path components are not allowed")
    return "/" + "/".join(parts)


def clean_dir_path(path: str) -> str:
    """Like :func:`clean_path` but accepts glob-free directory paths with a
    trailing slash and the root; returns ``/`` or ``/a/b``."""
    if path in ("", "/"):
        return "/"
    return clean_path(path)


def is_glob(path: str) -> bool:
    return any(ch in "*?[" for ch in path)


@dataclass(frozen=True)
class ParsedRef:
    """A commit ref split into its base and an ancestry step."""

    base: str  # branch name or commit id
    commit_id: str  # set for ``branch=id``
    back: int  # parents to walk back
    forward: int  # 1-based index from the oldest commit on the branch (0 = unused)


_FWD_RE = re.compile(r"^(.*)\.([0-9]+)$")


def parse_ref(ref: str) -> ParsedRef:
    """Parse ``master``, ``<id>``, ``master=<id>``, ``master^2``, ``master~~``, ``master.1``."""
    if not ref:
        raise InvalidArgument("empty commit reference: give a branch name or a commit ID")
    m = _FWD_RE.match(ref)
    if m:
        base, forward = m.group(1), int(m.group(2))
        if forward < 1:
            raise InvalidArgument(f"invalid commit reference {ref!r}: .N counts from 1")
        back = 0
    else:
        i = len(ref)
        while i > 0 and (ref[i - 1] in "^~" or ref[i - 1].isdigit()):
            i -= 1
        # Digits right after the base (no ^/~ before them) belong to the base.
        suffix = ref[i:]
        while suffix and suffix[0].isdigit():
            i += 1
            suffix = suffix[1:]
        base = ref[:i]
        back = 0
        if suffix:
            if "^" in suffix and "~" in suffix:
                raise InvalidArgument(f"invalid commit reference {ref!r}: cannot mix '^' and '~'")
            for m2 in re.finditer(r"([\^~])([0-9]*)", suffix):
                back += int(m2.group(2)) if m2.group(2) else 1
        forward = 0
    commit_id = ""
    if "=" in base:
        base, commit_id = base.split("=", 1)
    if not base and not commit_id:
        raise InvalidArgument(f"invalid commit reference {ref!r}")
    return ParsedRef(base=base, commit_id=commit_id, back=back, forward=forward)
