"""Parsing of pachctl-style references and put-file target paths.

Everything here is a pure function over strings (and, for directory uploads,
over a list of relative paths handed in by the caller), so it is unit-tested
without a daemon.

Reference grammar (pachyderm-reference.md 1.3 and 3.1)::

    REPO                      a repo (``list commit repo``)
    REPO@BRANCH               the head of a branch
    REPO@ID                   a commit by its 32-hex id
    REPO@BRANCH=ID            a commit id reached through a branch
    REPO@REF^ / ^^ / ^3       ancestors (``~`` is the same as ``^``)
    REPO@REF~2
    REPO@BRANCH.N             the N-th commit from the oldest on the branch
    REPO@REF:/PATH            a file (``REPO@REF:PATH`` means the same)
    PROJECT/REPO@...          a repo of another project than the current one

The CLI does not resolve ancestry: the ref string (branch or id plus suffix)
goes to the server verbatim as ``ref`` and the server resolves it. The CLI only
checks the *shape*, so a typo gets a message naming the expected form instead
of a "not found" from the server.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

# Repo and branch names: Pachyderm's rule (alphanumerics, ``_`` and ``-``).
_NAME = r"[A-Za-z0-9_-]+"
_NAME_RE = re.compile(rf"^{_NAME}$")
# A repo (or pipeline) may name its project: ``PROJECT/NAME``.
_REPO_RE = re.compile(rf"^(?:{_NAME}/)?{_NAME}$")

#: The project of names given without one (``--project`` / ``$TUSK_PROJECT``);
#: set once by ``cli.main`` before a command runs.
_project: list[str] = ["default"]


def set_project(project: str | None) -> None:
    """Make ``project`` the project of names given without one."""
    if project and not _NAME_RE.match(project):
        raise RefError(f'invalid project name "{project}": only alphanumeric characters, '
                       "underscores, and dashes are allowed")
    _project[0] = project or "default"


def current_project() -> str:
    return _project[0]


def qualified(name: str) -> str:
    """A repo or pipeline name as the API takes it: ``PROJECT/NAME``, or bare
    in the default project (``default/x`` is ``x``)."""
    project, sep, bare = name.rpartition("/")
    if not sep:
        project = _project[0]
    return bare if project == "default" else f"{project}/{bare}"


def pipeline_name(name: str) -> str:
    """A pipeline named on the command line, qualified with the current project."""
    if not _REPO_RE.match(name):
        raise RefError(f'invalid pipeline name "{name}": expected NAME or PROJECT/NAME')
    return qualified(name)
# A ref: a branch name or commit id, optionally ``branch=id``, then at most one
# ancestry suffix: a run of ``^`` or of ``~`` (not mixed), ``^N``/``~N``, or ``.N``.
_REF_RE = re.compile(rf"^(?P<base>{_NAME}(?:={_NAME})?)(?P<anc>\^+|~+|[\^~][0-9]+|\.[0-9]+)?$")

COMMIT_FORM = "REPO@BRANCH-OR-COMMIT"
FILE_FORM = "REPO@BRANCH-OR-COMMIT[:PATH]"


class RefError(ValueError):
    """A reference string that does not have the expected shape.

    The message names the expected form, so it tells the user how to fix it.
    """


@dataclass(frozen=True)
class FileRef:
    """A parsed ``repo@ref[:path]``.

    Attributes:
        repo: the repo name.
        ref: branch or commit id with any ancestry suffix, as the user wrote it.
        path: clean absolute path (``/a/b``), or ``None`` when no path was given.
        trailing_slash: the user's path ended in ``/`` (``repo@master:dir/``),
            which ``put file`` reads as "a directory to put the source into".
    """

    repo: str
    ref: str
    path: str | None = None
    trailing_slash: bool = False

    @property
    def put_path(self) -> str | None:
        """The path as ``put file``'s target rules need it (trailing ``/`` kept)."""
        if self.path is None or not self.trailing_slash or self.path == "/":
            return self.path
        return self.path + "/"

    def __str__(self) -> str:
        s = f"{self.repo}@{self.ref}"
        return s if self.path is None else f"{s}:{self.path}"


def _invalid(text: str, what: str, form: str) -> RefError:
    return RefError(f'invalid {what} reference "{text}": expected {form}')


def check_repo_name(name: str) -> str:
    """``name`` qualified with the current project if it is a valid repo name
    (``NAME`` or ``PROJECT/NAME``), else raise :class:`RefError`."""
    if not _REPO_RE.match(name):
        raise RefError(
            f'invalid repo name "{name}": only alphanumeric characters, '
            "underscores, and dashes are allowed (and PROJECT/ before it)"
        )
    return qualified(name)


def _split(text: str, what: str, form: str, whole: str | None = None) -> tuple[str, str | None]:
    """Split ``repo[@ref]`` into its parts, validating both.

    ``whole`` is the user's full argument (with its path), quoted in errors.
    """
    repo, sep, ref = text.partition("@")
    if not _REPO_RE.match(repo) or (sep and not _REF_RE.match(ref)):
        raise _invalid(whole or text, what, form)
    return qualified(repo), (ref if sep else None)


def parse_repo_ref(text: str, what: str = "commit") -> tuple[str, str | None]:
    """Parse ``REPO`` or ``REPO@REF``; the ref is ``None`` for a bare repo.

    Used by commands where the ref is optional (``list commit repo``).
    """
    return _split(text, what, "REPO[@BRANCH-OR-COMMIT]")


def parse_commit(text: str) -> tuple[str, str]:
    """Parse ``REPO@REF`` (a ref is required)."""
    repo, ref = _split(text, "commit", COMMIT_FORM)
    if ref is None:
        raise _invalid(text, "commit", COMMIT_FORM)
    return repo, ref


def parse_branch(text: str) -> tuple[str, str]:
    """Parse ``REPO@BRANCH``: a plain branch name, no id and no ancestry."""
    repo, _, branch = text.partition("@")
    if not _REPO_RE.match(repo) or not _NAME_RE.match(branch):
        raise _invalid(text, "branch", "REPO@BRANCH")
    return qualified(repo), branch


def clean_path(path: str) -> str:
    """Make a repo path absolute and clean (``a//b/`` -> ``/a/b``).

    ``..`` and ``.`` components are kept as written (``normpath`` would resolve
    them), so the server rejects them with its own message instead of the CLI
    silently writing somewhere else.
    """
    parts = [p for p in path.split("/") if p]
    return "/" + "/".join(parts)


def parse_file(text: str) -> FileRef:
    """Parse ``REPO@REF[:PATH]``; ``PATH`` may omit its leading ``/``.

    An empty path after ``:`` is the same as no path.
    """
    head, colon, path = text.partition(":")
    repo, ref = _split(head, "file", FILE_FORM, whole=text)
    if ref is None:
        raise _invalid(text, "file", FILE_FORM)
    if not colon or path == "":
        return FileRef(repo, ref, None)
    return FileRef(repo, ref, clean_path(path), trailing_slash=path.endswith("/"))


# --- put file target paths (reference 1.6 "Target path rules") ----------------


def _source_name(source: str, full_path: bool) -> str:
    """The part of a local source path that names it inside the repo.

    ``--full-path`` keeps the whole (cleaned) source path; otherwise only its
    basename. A trailing ``/`` on a directory source is ignored.
    """
    cleaned = posixpath.normpath(source.replace("\\", "/"))
    name = cleaned.lstrip("/") if full_path else posixpath.basename(cleaned)
    if name in ("", ".", ".."):
        raise RefError(
            f'cannot name source "{source}" inside the repo: give a target path (REPO@BRANCH:PATH)'
        )
    return name


def _join(prefix: str, name: str) -> str:
    return clean_path(f"{prefix}/{name}")


def target_path(source: str, path: str | None, n_sources: int, full_path: bool) -> str:
    """Where one non-recursive source lands in the repo.

    Rules (pachctl ``put file``):

    * no path: the source's basename at the root (``--full-path``: its whole path);
    * one source and a path: exactly that path, unless it ends in ``/``, then
      ``path/basename``;
    * several sources and a path: the path is a prefix (``path/basename``).

    Raises:
        RefError: ``source`` is ``-`` (stdin) and no path was given.
    """
    if source == "-":
        # stdin has no name of its own, so it needs an exact target path.
        if path is None or n_sources > 1 or path.endswith("/"):
            raise RefError("must specify filename when reading data from stdin")
        return clean_path(path)
    if path is None:
        return _join("/", _source_name(source, full_path))
    if n_sources > 1 or path.endswith("/"):
        return _join(path, _source_name(source, full_path))
    return clean_path(path)


def dir_target_root(source: str, path: str | None, n_sources: int, full_path: bool) -> str:
    """The repo directory that receives the *contents* of a ``-r`` directory source.

    With one source and an explicit path the contents go directly under that
    path (``put file -r repo@master:/ -f dir`` writes ``/<file>``, not
    ``/dir/<file>``). Without a path the directory keeps its name at the root
    (or its full path with ``--full-path``), and with several sources the path
    is a prefix for each source's name, as for files.
    """
    if path is None:
        return _join("/", _source_name(source, full_path))
    if n_sources > 1:
        return _join(path, _source_name(source, full_path))
    return clean_path(path)


def dir_targets(root: str, rel_paths: Iterable[str]) -> Iterable[tuple[str, str]]:
    """Pair each file below a directory source with its repo path.

    Args:
        root: the repo directory from :func:`dir_target_root`.
        rel_paths: file paths relative to the source directory (``a/b.txt``),
            as produced by walking it; consumed lazily.

    Yields:
        ``(rel_path, repo_path)`` pairs, in the order of ``rel_paths``.
    """
    for rel in rel_paths:
        yield rel, _join(root, rel.replace("\\", "/"))
