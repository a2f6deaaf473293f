"""File lineage across pipelines: what an output file was computed from, and
what was computed from an input file, transitively.

The records this reads already exist; nothing new is stored:

* every file a pipeline wrote carries the ID of the datum that wrote it
  (``FileEntry.datum``, set by the merge);
* a successful job's datum index (``pps/<pipeline>/<job>/datums``,
  :class:`~pps.records.DatumIndexEntry`) holds, for every datum of the job
  (processed or skipped), the job that ran it, its input files
  ``(input, repo, commit, path, hash)`` and the output paths it wrote.

**Upstream** (:meth:`Lineage.upstream`): file -> the datum that wrote it (from
the index of the job whose ID is the file's commit; a commit with no such
index, e.g. one made by a failed job, is followed back to its ancestors) ->
that datum's input files -> for inputs in a pipeline's output repo, the
datums that wrote them (a directory input: every distinct datum that wrote a
file below it) -> ... until files no pipeline wrote (user commits).

**Downstream** (:meth:`Lineage.downstream`): file ``repo@C:path`` -> for each
pipeline reading ``repo``, its successful jobs whose input commit in ``repo``
is ``C`` or holds ``path`` with the same content -> the datums of those jobs
whose inputs cover ``path`` (the path itself, a directory above it, or, for a
directory, a path below it), each once (a datum skipped by a later job is the
run that wrote its outputs) -> the output files they wrote (at the commit of
the job that ran them) -> ...

Bounds: ``max_depth`` pipelines are crossed at most and ``max_nodes`` nodes are
built at most; where a limit cut children off the node says ``truncated``,
and so does the result. A node reached a second time (a diamond in the DAG)
is marked ``repeated`` and not expanded again, so the tree stays linear in
what it shows.

Cost: each job's index is decoded once per call and looked up through maps
(by datum ID upstream, by input path downstream), so a 10,000-file
directory costs one decode per job rather than one per file.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

from pfs.api import PFS
from pfs.errors import NotFound
from pfs.tree import DirEntry, Entry, FileEntry, Tree
from pps import keys
from pps.datum_index import Manifest
from pps.jobs import Jobs
from pps.model import JobState
from pps.records import DatumIndexEntry, JobRec, PipelineRec
from pps.spec import spec_from_dict

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_NODES",
    "MAX_NODES_LIMIT",
    "DatumNode",
    "Direction",
    "FileNode",
    "Lineage",
    "LineageNode",
    "LineageResult",
]

DEFAULT_MAX_DEPTH = 32
DEFAULT_MAX_NODES = 10_000
#: The most nodes one call may ask for (a node is ~100 bytes on the wire).
MAX_NODES_LIMIT = 100_000
#: Ancestors of an output commit searched for a datum's index (a commit made
#: by a failed job keeps its parent's files, written by earlier jobs).
_MAX_ANCESTORS = 100
#: Lookups in one directory before it is listed once instead (see ``_entry``).
_LOOKUPS_BEFORE_LISTING = 8


class Direction(str, Enum):
    UPSTREAM = "upstream"
    DOWNSTREAM = "downstream"


@dataclass(frozen=True)
class FileNode:
    """A file or directory at one commit.

    Attributes:
        commit: a full commit ID.
        input: upstream, the name of the input under which the parent datum
            read it ("" for the root and downstream).
        user_data: no pipeline wrote it (a user commit): a root of provenance.
    """

    repo: str
    commit: str
    path: str
    is_dir: bool = False
    hash: str = ""
    input: str = ""
    user_data: bool = False


@dataclass(frozen=True)
class DatumNode:
    """A datum of a pipeline, named by the job that ran it."""

    pipeline: str
    job: str
    id: str
    state: str


@dataclass(frozen=True)
class LineageNode:
    """One node of the tree: a file (whose children are datums) or a datum
    (whose children are files).

    Attributes:
        truncated: children were left out (``max_depth`` or ``max_nodes``).
        repeated: the node appears earlier in the tree, expanded there.
        note: why a node has no children where some were expected.
    """

    file: FileNode | None = None
    datum: DatumNode | None = None
    children: tuple[LineageNode, ...] = ()
    truncated: bool = False
    repeated: bool = False
    note: str = ""

    def walk(self) -> Iterator[LineageNode]:
        """This node and every node below it, depth first."""
        yield self
        for c in self.children:
            yield from c.walk()


@dataclass(frozen=True)
class LineageResult:
    root: LineageNode
    direction: Direction
    nodes: int
    truncated: bool


def _norm(path: str) -> str:
    """``/a/b/`` -> ``/a/b``; the root stays ``/``."""
    p = "/" + path.strip("/")
    return p


def _ancestors(path: str) -> Iterator[str]:
    """The directories above ``path`` (normalized), nearest first, ``/`` last."""
    p = _norm(path)
    while p != "/":
        p = p.rsplit("/", 1)[0] or "/"
        yield p


@dataclass
class _PathIndex:
    """A job's datums by the normalized paths of their inputs in one repo."""

    by_path: dict[str, list[int]] = field(default_factory=dict)
    sorted_paths: list[str] = field(default_factory=list)

    def covering(self, path: str, is_dir: bool) -> list[int]:
        """Datums whose input in the repo is ``path``, a directory above it,
        or (``is_dir``) a path below it."""
        p = _norm(path)
        out: list[int] = list(self.by_path.get(p, ()))
        for a in _ancestors(p):
            out.extend(self.by_path.get(a, ()))
        if is_dir:
            prefix = p if p == "/" else p + "/"
            i = bisect.bisect_left(self.sorted_paths, prefix)
            while i < len(self.sorted_paths) and self.sorted_paths[i].startswith(prefix):
                if self.sorted_paths[i] != p:
                    out.extend(self.by_path[self.sorted_paths[i]])
                i += 1
        return out


class _Budget:
    def __init__(self, max_nodes: int) -> None:
        self.left = max_nodes
        self.used = 0
        self.truncated = False

    def take(self) -> bool:
        if self.left <= 0:
            self.truncated = True
            return False
        self.left -= 1
        self.used += 1
        return True


class Lineage:
    """Lineage queries over one PFS and its PPS records. One instance per
    query: it caches indexes, trees and records for that query only (data
    changes between queries)."""

    def __init__(self, pfs: PFS, jobs: Jobs) -> None:
        self.pfs = pfs
        self.jobs = jobs
        self._pipelines: dict[str, PipelineRec] | None = None
        self._indexes: dict[tuple[str, str], dict[str, DatumIndexEntry] | None] = {}
        self._entries: dict[tuple[str, str], list[DatumIndexEntry]] = {}
        self._path_indexes: dict[tuple[str, str, str], _PathIndex] = {}
        self._manifests: dict[tuple[str, str], Manifest] = {}
        self._trees: dict[tuple[str, str], Tree | None] = {}
        self._job_inputs: dict[str, list[tuple[JobRec, dict[str, str]]]] = {}
        self._listings: dict[tuple[str, str, str], dict[str, Entry]] = {}
        self._lookups: dict[tuple[str, str, str], int] = {}
        self._consumers_of: dict[str, list[str]] = {}

    # -- records -------------------------------------------------------------------

    def pipelines(self) -> dict[str, PipelineRec]:
        if self._pipelines is None:
            self._pipelines = {
                r.name: r for r in (PipelineRec.decode(kv.value)
                                    for kv in self.pfs.meta.range(keys.ALL_PIPELINES))}
        return self._pipelines

    def _tree(self, repo: str, commit: str) -> Tree | None:
        key = (repo, commit)
        if key not in self._trees:
            try:
                self._trees[key] = self.pfs.commit_tree(repo, commit)
            except NotFound:
                self._trees[key] = None
        return self._trees[key]

    def _entry(self, repo: str, commit: str, path: str) -> Entry | None:
        """The tree entry at ``path`` (None: absent). Single lookups go down
        the tree; from the ninth in one directory on, the directory is listed
        once and looked up in memory (a lookup decodes a page per level: 10^4
        of them in one directory cost seconds, one listing milliseconds)."""
        tree = self._tree(repo, commit)
        if tree is None:
            return None
        p = _norm(path)
        if p == "/":
            return tree.lookup("/")
        parent = p.rsplit("/", 1)[0] or "/"
        key = (repo, commit, parent)
        listing = self._listings.get(key)
        if listing is None:
            n = self._lookups.get(key, 0) + 1
            self._lookups[key] = n
            if n <= _LOOKUPS_BEFORE_LISTING:
                return tree.lookup(p)
            try:
                listing = {_norm(e.path): e for e in tree.list_dir(parent)}
            except NotFound:
                listing = {}
            self._listings[key] = listing
        return listing.get(p)

    def _hash_at(self, repo: str, commit: str, path: str) -> str | None:
        e = self._entry(repo, commit, path)
        return e.hash.hex() if e is not None else None

    def _index(self, pipeline: str, job: str) -> dict[str, DatumIndexEntry] | None:
        """The job's datum index by datum ID; None when it has none (not
        successful, deleted)."""
        key = (pipeline, job)
        if key not in self._indexes:
            j = self.jobs.find(pipeline, job)
            if j is None or (j.state != JobState.SUCCESS.value and not j.egress_failed):
                self._indexes[key] = None
            else:
                entries = self.jobs.index(pipeline, job)
                self._entries[key] = entries
                self._indexes[key] = {e.id: e for e in entries}
        return self._indexes[key]

    def _lookup(self, pipeline: str, job: str, datum: str) -> DatumIndexEntry | None:
        """One datum of the job's index, reading only its shard (an upstream
        walk from one output file need not load an index of 10^6 datums)."""
        if (pipeline, job) in self._indexes:
            index = self._indexes[(pipeline, job)]
            return index.get(datum) if index is not None else None
        j = self.jobs.find(pipeline, job)
        if j is None or (j.state != JobState.SUCCESS.value and not j.egress_failed):
            return None
        di = self.jobs.datum_index(pipeline)
        m = self._manifests.get((pipeline, job))
        if m is None:
            m = di.manifest(job)
            if m is None:
                return None
            self._manifests[(pipeline, job)] = m
        return di.lookup(m, [datum]).get(datum)

    def _path_index(self, pipeline: str, job: str, repo: str) -> _PathIndex:
        key = (pipeline, job, repo)
        pi = self._path_indexes.get(key)
        if pi is None:
            pi = _PathIndex()
            self._index(pipeline, job)
            for n, e in enumerate(self._entries.get((pipeline, job), ())):
                for f in e.files:
                    if f[1] == repo:
                        pi.by_path.setdefault(_norm(f[3]), []).append(n)
            pi.sorted_paths = sorted(pi.by_path)
            self._path_indexes[key] = pi
        return pi

    def _find_datum(self, pipeline: str, commit: str, datum: str) -> DatumIndexEntry | None:
        """The index entry of ``datum`` as of output commit ``commit`` (or the
        nearest ancestor with an index holding it)."""
        cid: str | None = commit
        for _ in range(_MAX_ANCESTORS):
            if not cid:
                return None
            found = self._lookup(pipeline, cid, datum)
            if found is not None:
                return found
            rec = self.pfs.get_commit(pipeline, cid)
            cid = rec.parent if rec is not None else None
        return None

    def _consumers(self, repo: str) -> list[str]:
        """Pipelines with an input reading ``repo``."""
        if not self._consumers_of and self.pipelines():
            by_repo: dict[str, list[str]] = {}
            for name, rec in sorted(self.pipelines().items()):
                try:
                    leaves = spec_from_dict(rec.spec).input.leaves()
                except Exception:  # a spec this version cannot read: no lineage through it
                    continue
                for r in dict.fromkeys(leaf.repo for leaf in leaves):
                    by_repo.setdefault(r, []).append(name)
            self._consumers_of = by_repo
        return self._consumers_of.get(repo, [])

    def _successful_jobs(self, pipeline: str) -> list[tuple[JobRec, dict[str, str]]]:
        """The pipeline's jobs with an index, oldest first, each with its input
        commits by repo (from its output commit's provenance)."""
        if pipeline not in self._job_inputs:
            out = []
            for j in self.jobs.of_pipeline(pipeline):
                if j.state != JobState.SUCCESS.value and not j.egress_failed:
                    continue
                c = self.pfs.get_commit(pipeline, j.id)
                if c is None:
                    continue
                out.append((j, {r: cid for r, _, cid in c.provenance}))
            self._job_inputs[pipeline] = out
        return self._job_inputs[pipeline]

    # -- queries -----------------------------------------------------------------------

    def upstream(self, repo: str, ref: str, path: str, max_depth: int = DEFAULT_MAX_DEPTH,
                 max_nodes: int = DEFAULT_MAX_NODES) -> LineageResult:
        """What ``repo@ref:path`` was computed from, back to user commits.

        Raises:
            FileNotFound: no such file (RepoNotFound, CommitNotFound... likewise).
        """
        info = self.pfs.inspect_file(repo, ref, path)
        budget = _Budget(max(1, max_nodes))
        budget.take()  # the root; every other node is taken by its parent
        seen: set[tuple[str, ...]] = set()
        is_dir = info.path.endswith("/") or info.path == "/"
        root = self._up_file(FileNode(repo, info.commit, info.path, is_dir, info.hash),
                             info.datum, max_depth, budget, seen)
        return LineageResult(root, Direction.UPSTREAM, budget.used, budget.truncated)

    def downstream(self, repo: str, ref: str, path: str, max_depth: int = DEFAULT_MAX_DEPTH,
                   max_nodes: int = DEFAULT_MAX_NODES) -> LineageResult:
        """Everything computed from ``repo@ref:path``, through every pipeline
        downstream.

        Raises:
            FileNotFound: no such file (RepoNotFound, CommitNotFound... likewise).
        """
        info = self.pfs.inspect_file(repo, ref, path)
        budget = _Budget(max(1, max_nodes))
        budget.take()  # the root; every other node is taken by its parent
        seen: set[tuple[str, ...]] = set()
        is_dir = info.path.endswith("/") or info.path == "/"
        node = FileNode(repo, info.commit, info.path, is_dir, info.hash,
                        user_data=not info.datum and repo not in self.pipelines())
        root = self._down_file(node, max_depth, budget, seen)
        return LineageResult(root, Direction.DOWNSTREAM, budget.used, budget.truncated)

    # -- upstream ----------------------------------------------------------------------

    def _up_file(self, f: FileNode, datum: str | None, depth: int, budget: _Budget,
                 seen: set[tuple[str, ...]]) -> LineageNode:
        """``datum``: the file's datum tag when known (None: look it up)."""
        key = ("f", f.repo, f.commit, _norm(f.path))
        if key in seen:
            return LineageNode(file=f, repeated=True)
        seen.add(key)
        if f.repo not in self.pipelines() and not datum:
            # No pipeline writes this repo: data from user commits.
            return LineageNode(file=_user(f))
        datums: list[str] = []
        if f.is_dir or datum is None:
            entry = self._entry(f.repo, f.commit, f.path)
            if entry is None:
                return LineageNode(file=f, note="not found at this commit (deleted or squashed)")
            if isinstance(entry, DirEntry):
                f = FileNode(f.repo, f.commit, f.path, True, f.hash or entry.hash.hex(), f.input)
                found: dict[str, None] = {}
                tree = self._tree(f.repo, f.commit)
                assert tree is not None
                for e in tree.walk(entry.path):
                    if isinstance(e, FileEntry) and e.datum:
                        found.setdefault(e.datum, None)
                datums = list(found)
            else:
                datums = [entry.datum] if entry.datum else []
        elif datum:
            datums = [datum]
        if not datums:
            return LineageNode(file=_user(f))
        if depth <= 0:
            budget.truncated = True
            return LineageNode(file=f, truncated=True)
        children: list[LineageNode] = []
        truncated = False
        for d in datums:
            if not budget.take():
                truncated = True
                break
            children.append(self._up_datum(f.repo, f.commit, d, depth - 1, budget, seen))
        return LineageNode(file=f, children=tuple(children), truncated=truncated)

    def _up_datum(self, pipeline: str, commit: str, datum: str, depth: int, budget: _Budget,
                  seen: set[tuple[str, ...]]) -> LineageNode:
        entry = self._find_datum(pipeline, commit, datum)
        if entry is None:
            return LineageNode(datum=DatumNode(pipeline, "", datum, ""),
                               note="its job's records are gone (job or pipeline deleted)")
        node = DatumNode(pipeline, entry.job or commit, entry.id, entry.state)
        key = ("d", pipeline, node.job, entry.id)
        if key in seen:
            return LineageNode(datum=node, repeated=True)
        seen.add(key)
        children: list[LineageNode] = []
        truncated = False
        for inp, repo, cid, path, h in entry.files:
            if not budget.take():
                truncated = True
                break
            f = FileNode(repo, cid, path, path.endswith("/"), h, inp)
            children.append(self._up_file(f, None if repo in self.pipelines() else "",
                                          depth, budget, seen))
        return LineageNode(datum=node, children=tuple(children), truncated=truncated)

    # -- downstream --------------------------------------------------------------------

    def _down_file(self, f: FileNode, depth: int, budget: _Budget,
                   seen: set[tuple[str, ...]]) -> LineageNode:
        key = ("f", f.repo, f.commit, _norm(f.path))
        if key in seen:
            return LineageNode(file=f, repeated=True)
        seen.add(key)
        consumers = self._consumers(f.repo)
        if not consumers:
            return LineageNode(file=f)
        if depth <= 0:
            budget.truncated = True
            return LineageNode(file=f, truncated=True)
        my_hash = f.hash or self._hash_at(f.repo, f.commit, f.path) or ""
        children: list[LineageNode] = []
        truncated = False
        for q in consumers:
            done: set[tuple[str, str]] = set()
            for j, inputs in self._successful_jobs(q):
                cid = inputs.get(f.repo)
                if cid is None:
                    continue
                if cid != f.commit and self._hash_at(f.repo, cid, f.path) != my_hash:
                    continue
                index = self._index(q, j.id)
                if index is None:
                    continue
                entries = self._entries[(q, j.id)]
                for n in self._path_index(q, j.id, f.repo).covering(f.path, f.is_dir):
                    e = entries[n]
                    ran = e.job or j.id
                    if (ran, e.id) in done:
                        continue
                    done.add((ran, e.id))
                    if truncated or not budget.take():
                        truncated = True
                        break
                    children.append(self._down_datum(q, ran, e, depth - 1, budget, seen))
                if truncated:
                    break
            if truncated:
                break
        return LineageNode(file=f, children=tuple(children), truncated=truncated)

    def _down_datum(self, pipeline: str, job: str, e: DatumIndexEntry, depth: int,
                    budget: _Budget, seen: set[tuple[str, ...]]) -> LineageNode:
        node = DatumNode(pipeline, job, e.id, e.state)
        key = ("d", pipeline, job, e.id)
        if key in seen:
            return LineageNode(datum=node, repeated=True)
        seen.add(key)
        children: list[LineageNode] = []
        truncated = False
        for out in e.outputs:
            if not budget.take():
                truncated = True
                break
            h = self._hash_at(pipeline, job, out) or ""
            children.append(self._down_file(FileNode(pipeline, job, out, False, h),
                                            depth, budget, seen))
        return LineageNode(datum=node, children=tuple(children), truncated=truncated)


def _user(f: FileNode) -> FileNode:
    return FileNode(f.repo, f.commit, f.path, f.is_dir, f.hash, f.input, user_data=True)
