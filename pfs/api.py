"""The PFS service: repos, branches, commits and files.

This is the core the gRPC server adapts (``tusk.server``); it knows nothing
of gRPC. State lives in two stores:

* the metadata store (``pfs.metadata``) holds small JSON records, with keys
  built only in :mod:`pfs.keys`;
* the object store holds packs of chunks and index nodes (``pfs.blobs``) and
  the layers of open commits (``pfs.changes``).

Visibility rule: every change that readers can see is one metadata
transaction made *after* the object-store writes it refers to are durable.
A process killed at any moment therefore leaves either the old state or the
new one, never a partial commit; unreferenced packs are garbage.

Commit sets (reference 1.4): creating a commit on a branch creates, in the
same transaction, an open ``AUTO`` commit with the same ID on every branch
downstream of it (branch provenance), recording the exact upstream commits.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pfs import keys
from pfs.blobs import (
    BlobStore,
    ChunkRef,
    DedupIndex,
    as_ref,
    pack_key,
    ref_from_str,
    ref_to_str,
)
from pfs.changes import SPILL_AT, ChangeRun, merge_layers, read_layer, write_layer
from pfs.errors import (
    AlreadyExists,
    BranchNotFound,
    CommitFinished,
    CommitNotFound,
    Conflict,
    FailedPrecondition,
    FileNotFound,
    InvalidArgument,
    NotFound,
    ObjectNotFound,
    RepoExists,
    RepoNotFound,
    TuskError,
)
from pfs.metadata import (
    Compare,
    Delete,
    KeyValue,
    MetadataStore,
    Op,
    Put,
    ReadResult,
    get_many,
    range_rest,
)
from pfs.model import (
    STATE_ORDER,
    BranchInfo,
    BranchRef,
    CommitInfo,
    CommitRef,
    CommitState,
    FileInfo,
    FileType,
    OriginKind,
    ProjectInfo,
    RepoInfo,
)
from pfs.objects import ObjectStore
from pfs.paths import (
    COMMIT_ID_RE,
    DEFAULT_PROJECT,
    clean_dir_path,
    clean_path,
    is_glob,
    parse_ref,
    split_repo,
    validate_branch_name,
    validate_project_name,
    validate_repo_name,
)
from pfs.tree import (
    AppendFile,
    Change,
    DeletePath,
    DirEntry,
    FileEntry,
    PutFile,
    Tree,
)
from pfs.tree import apply as tree_apply

Entry = FileEntry | DirEntry


def new_id() -> str:
    """A commit ID: 32 hex digits (a UUIDv4 without dashes, as Pachyderm)."""
    return uuid.uuid4().hex


# --- records -----------------------------------------------------------------

# How long a presigned URL of the direct path stays valid: a client asks for
# upload URLs a few packs ahead of need, so minutes are plenty.
PRESIGN_TTL = datetime.timedelta(minutes=15)


@dataclass(frozen=True)
class StorageInfo:
    """See :meth:`PFS.storage_info` (and ``StorageInfo`` in pfs.proto)."""

    local_root: str = ""
    store_id: str = ""
    probe_url: str = ""


@dataclass
class RepoRec:
    name: str
    type: str = "user"
    description: str = ""
    created: float = 0.0
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class BranchRec:
    repo: str
    name: str
    head: str = ""
    created: float = 0.0
    provenance: list[list[str]] = field(default_factory=list)  # direct: [[repo, branch]]
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class CommitRec:
    repo: str
    id: str
    branch: str = ""
    origin: str = "USER"
    description: str = ""
    parent: str = ""
    started: float = 0.0
    finishing: float | None = None
    finished: float | None = None
    error: str = ""
    tree: str = ""  # ref of the root node ("" = empty tree), set when finished
    size: int | None = None
    provenance: list[list[str]] = field(default_factory=list)  # [[repo, branch, id]]
    metadata: dict[str, str] = field(default_factory=dict)
    layers: int = 0  # number of layers recorded (open commits)


def _dump(rec: Any) -> bytes:
    return json.dumps(rec.__dict__, separators=(",", ":")).encode()


def _load(cls: type[Any], data: bytes) -> Any:
    return cls(**json.loads(data))


# --- the service -------------------------------------------------------------


class PFS:
    """Repos, branches, commits and files. Thread-safe. See the module docstring."""

    def __init__(self, meta: MetadataStore, blobs: BlobStore,
                 clock: Callable[[], float] = time.time, recover: bool = True) -> None:
        self.meta = meta
        self.blobs = blobs
        self.objects: ObjectStore = blobs.objects
        self.clock = clock
        # One writer of metadata at a time inside this process; the
        # transactions' compares guard against other processes.
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._provisional: dict[tuple[str, str, int], Tree] = {}
        self._retrying = False  # a background retry of interrupted finishes runs
        # Hooks for PPS. ``txn_hooks`` see the commits a transaction is about
        # to create and return extra ops for the same transaction (job
        # records); the others are called inside the lock after the txn.
        self.txn_hooks: list[Callable[[list[CommitRec]], list[Op]]] = []
        self.on_commits_created: list[Callable[[list[CommitRec]], None]] = []
        self.on_commit_finished: list[Callable[[CommitRec], None]] = []
        self.protected_repos: Callable[[str], str | None] = lambda repo: None
        #: Called with a project's name before ``delete_project(force=True)``
        #: deletes its repos (PPS deletes the project's pipelines).
        self.project_deleters: list[Callable[[str], None]] = []
        # (repo, branch) -> the head last seen: a guess of which commit to
        # read alongside the branch (see ``_resolve``), never trusted as data.
        self._head_hints: dict[tuple[str, str], str] = {}
        if recover:  # only the master finishes what a killed process left
            self._recover()

    # -- records ---------------------------------------------------------------

    def _get_repo(self, name: str) -> RepoRec:
        kv = self.meta.get(keys.repo(name))
        if kv is None:
            raise RepoNotFound(name)
        rec: RepoRec = _load(RepoRec, kv.value)
        return rec

    def _get_branch(self, repo: str, name: str) -> BranchRec | None:
        kv = self.meta.get(keys.branch(repo, name))
        return _load(BranchRec, kv.value) if kv else None

    def _get_commit(self, repo: str, cid: str) -> CommitRec | None:
        kv = self.meta.get(keys.commit(repo, cid))
        return _load(CommitRec, kv.value) if kv else None

    def get_commit(self, repo: str, cid: str) -> CommitRec | None:
        """The record of commit ``cid`` (a full ID, no ref syntax) in ``repo``,
        or None when there is none. One metadata read; for services built on
        PFS (PPS) that track commits by ID."""
        return self._get_commit(repo, cid)

    def commit_tree(self, repo: str, cid: str) -> Tree:
        """The file index of commit ``cid`` as it is now (an open commit:
        its parent plus the layers written so far).

        Raises:
            NotFound: no such commit.
        """
        rec = self._get_commit(repo, cid)
        if rec is None:
            raise NotFound(f"commit {repo}@{cid} not found (it may have been deleted or "
                           "squashed)")
        return self._commit_tree(rec)

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold PFS's lock on changes of this process: no repo, branch or
        commit changes here meanwhile. For a service that must create its
        own records and PFS's together (a pipeline and its output repo)."""
        with self._lock:
            yield

    def _branches(self, repo: str) -> list[BranchRec]:
        return [_load(BranchRec, kv.value) for kv in self.meta.range(keys.branch_prefix(repo))]

    def _all_branches(self) -> list[BranchRec]:
        return [_load(BranchRec, kv.value) for kv in self.meta.range(keys.ALL_BRANCHES)]

    def _children(self, repo: str, cid: str) -> list[str]:
        prefix = keys.children_prefix(repo, cid)
        return [kv.key[len(prefix):] for kv in self.meta.range(prefix)]

    # -- ref resolution -----------------------------------------------------

    def resolve(self, repo: str, ref: str) -> CommitRec:
        """The commit ``ref`` names in ``repo`` (see ``pfs.paths.parse_ref``)."""
        return self._resolve(repo, ref)[0]

    def _resolve(self, repo: str, ref: str,
                 for_info: bool = False) -> tuple[CommitRec, ReadResult]:
        """:meth:`resolve`, plus the read the commit record came from.

        Performance: on etcd every read is a network round trip, so the repo,
        the branch and the commit are read in one ``read_many`` (one snapshot).
        The branch's head is not known before the branch is read, so the
        commit read alongside it is a guess: the head this process saw last
        (or the name itself, if it looks like a commit ID). A wrong guess only
        costs a second read; the answer always comes from the branch record in
        the same snapshot. With ``for_info`` the ranges :meth:`_commit_info`
        needs are read in the same round trip too.
        """
        p = parse_ref(ref)
        exact = not p.back and not p.forward  # the commit read is the answer

        def info_prefixes(cid: str) -> tuple[str, ...]:
            return self._info_prefixes(repo, cid) if for_info and exact and cid else ()

        want = [keys.repo(repo)]
        if p.commit_id:
            guess = p.commit_id
        else:
            want.append(keys.branch(repo, p.base))
            guess = self._head_hints.get((repo, p.base), "")
            if not guess and COMMIT_ID_RE.match(p.base):
                guess = p.base
        if guess:
            want.append(keys.commit(repo, guess))
        snap = self.meta.read_many(want, info_prefixes(guess))
        if snap.kvs[keys.repo(repo)] is None:
            raise RepoNotFound(repo)

        def commit(cid: str) -> CommitRec | None:
            nonlocal snap
            key = keys.commit(repo, cid)
            if key not in snap.kvs:
                snap = self.meta.read_many([key], info_prefixes(cid))
            kv = snap.kvs[key]
            return _load(CommitRec, kv.value) if kv is not None else None

        rec: CommitRec | None = None
        if p.commit_id:
            rec = commit(p.commit_id)
            if rec is None:
                raise CommitNotFound(repo, p.commit_id)
        else:
            bkv = snap.kvs[keys.branch(repo, p.base)]
            br: BranchRec | None = _load(BranchRec, bkv.value) if bkv is not None else None
            if br is not None and br.head:
                self._remember_head(repo, p.base, br.head)
                rec = commit(br.head)
            elif COMMIT_ID_RE.match(p.base):
                self._head_hints.pop((repo, p.base), None)
                rec = commit(p.base)
                if rec is None:
                    rec = self._resolve_in_set(repo, p.base)
                if rec is None:
                    raise CommitNotFound(repo, p.base)
            else:
                self._head_hints.pop((repo, p.base), None)
                raise BranchNotFound(repo, p.base)
        assert rec is not None
        if p.back:
            for _ in range(p.back):
                if not rec.parent:
                    raise NotFound(f"commit {repo}@{ref} not found: the branch history has fewer "
                                   f"than {p.back} ancestors")
                parent = self._get_commit(repo, rec.parent)
                if parent is None:
                    raise CommitNotFound(repo, rec.parent)
                rec = parent
        if p.forward:
            chain = self._ancestry(rec)
            if p.forward > len(chain):
                raise NotFound(f"commit {repo}@{ref} not found: the branch has only "
                               f"{len(chain)} commits")
            rec = chain[-p.forward]
        return rec, snap

    _HEAD_HINTS_MAX = 4096
    """Branches whose heads ``_resolve`` remembers; beyond that it forgets all
    (a forgotten hint costs one more read, never a wrong answer)."""

    def _remember_head(self, repo: str, branch: str, head: str) -> None:
        if len(self._head_hints) >= self._HEAD_HINTS_MAX:
            self._head_hints.clear()
        self._head_hints[(repo, branch)] = head

    @staticmethod
    def _info_prefixes(repo: str, cid: str) -> tuple[str, str]:
        """The ranges :meth:`_commit_info` reads: commit set members, children."""
        return keys.commitset_prefix(cid), keys.children_prefix(repo, cid)

    def _ancestry(self, rec: CommitRec) -> list[CommitRec]:
        """``rec`` and its ancestors, newest first."""
        out = [rec]
        while out[-1].parent:
            parent = self._get_commit(rec.repo, out[-1].parent)
            if parent is None:
                break
            out.append(parent)
        return out

    def _resolve_in_set(self, repo: str, set_id: str) -> CommitRec | None:
        """A commit set ID used in a repo without such a commit: the repo's
        commit found in the provenance of the set (reference 1.4)."""
        for kv in self.meta.range(keys.commitset_prefix(set_id)):
            other_repo = keys.repo_from_key(kv.key.rsplit("/", 1)[1])
            rec = self._get_commit(other_repo, set_id)
            if rec is None:
                continue
            for prov_repo, _, prov_id in rec.provenance:
                if prov_repo == repo:
                    return self._get_commit(repo, prov_id)
        return None

    # -- repos ---------------------------------------------------------------

    def create_repo(self, name: str, description: str = "", update: bool = False,
                    type: str = "user") -> RepoInfo:
        validate_repo_name(name)
        self._check_project(name)
        with self._lock:
            kv = self.meta.get(keys.repo(name))
            if kv is not None:
                if not update:
                    raise RepoExists(name)
                rec: RepoRec = _load(RepoRec, kv.value)
                rec.description = description
                self.meta.txn([Compare(kv.key, kv.mod_revision)], [Put(kv.key, _dump(rec))])
            else:
                self._finish_repo_cleanup(name)
                rec = RepoRec(name=name, type=type, description=description, created=self.clock())
                if not self.meta.txn([Compare(keys.repo(name), 0)],
                                     [Put(keys.repo(name), _dump(rec))]):
                    raise RepoExists(name)
            self._changed.notify_all()
        return self.inspect_repo(name)

    def inspect_repo(self, name: str) -> RepoInfo:
        rec = self._get_repo(name)
        return self._repo_info(rec)

    def _repo_info(self, rec: RepoRec) -> RepoInfo:
        branches = self._branches(rec.name)
        size = 0
        for b in branches:
            if b.name == "master" and b.head:
                c = self._get_commit(rec.name, b.head)
                if c is not None and c.size is not None:
                    size = c.size
        return RepoInfo(name=rec.name, type=rec.type, description=rec.description,
                        created=rec.created, size_bytes=size,
                        branches=tuple(b.name for b in branches),
                        project=split_repo(rec.name)[0], metadata=dict(rec.metadata))

    def list_repo(self, type: str | None = "user", project: str | None = None
                  ) -> list[RepoInfo]:
        """Repos newest first: of ``type`` (None: every type) and of ``project``
        (None: every project)."""
        out = []
        for kv in self.meta.range(keys.ALL_REPOS):
            rec: RepoRec = _load(RepoRec, kv.value)
            if project is not None and split_repo(rec.name)[0] != project:
                continue
            if type is None or rec.type == type:
                out.append(self._repo_info(rec))
        out.sort(key=lambda r: r.created, reverse=True)
        return out

    # -- projects ----------------------------------------------------------------

    def _project_rec(self, name: str) -> ProjectInfo | None:
        if name == DEFAULT_PROJECT:
            kv = self.meta.get(keys.project(name))
            if kv is None:
                return ProjectInfo(DEFAULT_PROJECT, "The default project.", 0.0)
        else:
            kv = self.meta.get(keys.project(name))
            if kv is None:
                return None
        d = json.loads(kv.value)
        return ProjectInfo(name=d["name"], description=d.get("description", ""),
                           created=d.get("created", 0.0), metadata=d.get("metadata", {}))

    def inspect_project(self, name: str) -> ProjectInfo:
        info = self._project_rec(name)
        if info is None:
            raise NotFound(f"project {name} not found (list them with `tusk list project`, "
                           f"create it with `tusk create project {name}`)")
        return info

    def _check_project(self, repo: str) -> None:
        project = split_repo(repo)[0]
        if project != DEFAULT_PROJECT:
            self.inspect_project(project)

    def list_project(self) -> list[ProjectInfo]:
        out = {DEFAULT_PROJECT: self.inspect_project(DEFAULT_PROJECT)}
        for kv in self.meta.range(keys.ALL_PROJECTS):
            d = json.loads(kv.value)
            out[d["name"]] = ProjectInfo(d["name"], d.get("description", ""),
                                         d.get("created", 0.0), d.get("metadata", {}))
        return sorted(out.values(), key=lambda p: (p.name != DEFAULT_PROJECT, p.created, p.name))

    def create_project(self, name: str, description: str = "", update: bool = False
                       ) -> ProjectInfo:
        validate_project_name(name)
        with self._lock:
            existing = self._project_rec(name)
            exists = existing is not None and (
                name != DEFAULT_PROJECT or self.meta.get(keys.project(name)) is not None)
            if name == DEFAULT_PROJECT and not update:
                raise AlreadyExists(f"project {name} already exists")
            if exists and not update:
                raise AlreadyExists(f"project {name} already exists")
            created = existing.created if existing is not None else self.clock()
            metadata = dict(existing.metadata) if existing is not None else {}
            self.meta.put(keys.project(name), json.dumps(
                {"name": name, "description": description, "created": created,
                 "metadata": metadata}).encode())
        return self.inspect_project(name)

    def delete_project(self, name: str, force: bool = False) -> None:
        """Delete a project. One that holds repos is refused unless ``force``,
        which deletes them (and, through :attr:`project_deleters`, what other
        services keep in it: pipelines)."""
        if name == DEFAULT_PROJECT:
            raise FailedPrecondition("the default project cannot be deleted")
        self.inspect_project(name)
        repos = self.list_repo(type=None, project=name)
        if repos and not force:
            raise FailedPrecondition(
                f"project {name} holds repos ({', '.join(r.name for r in repos[:5])}"
                f"{', ...' if len(repos) > 5 else ''}): delete them first, or use --force")
        for hook in self.project_deleters:
            hook(name)
        for r in self.list_repo(type=None, project=name):
            try:
                self.delete_repo(r.name, force=True)
            except NotFound:
                pass
        self.meta.delete(keys.project(name))

    def delete_repo(self, name: str, force: bool = False) -> None:
        with self._lock:
            self._get_repo(name)
            reason = self.protected_repos(name)
            if reason and not force:
                raise FailedPrecondition(reason)
            if not force:
                users = sorted({f"{b.repo}@{b.name}" for b in self._all_branches()
                                if b.repo != name and any(p[0] == name for p in b.provenance)})
                if users:
                    raise FailedPrecondition(
                        f"repo {name} cannot be deleted because it is in the provenance of "
                        f"{', '.join(users)}; delete those first or use --force")
            # The repo disappears atomically; its records are removed after.
            self.meta.txn([], [Delete(keys.repo(name)), Put(keys.repo_trash(name), b"")])
            if force:
                for b in self._all_branches():
                    if b.repo != name and any(p[0] == name for p in b.provenance):
                        b.provenance = [p for p in b.provenance if p[0] != name]
                        self.meta.put(keys.branch(b.repo, b.name), _dump(b))
            self._finish_repo_cleanup(name)
            self._changed.notify_all()

    def _finish_repo_cleanup(self, name: str) -> None:
        if self.meta.get(keys.repo_trash(name)) is None:
            return
        for prefix in keys.repo_prefixes(name):
            while True:
                batch = [kv.key for kv in self.meta.range(prefix, limit=100)]
                if not batch:
                    break
                self.meta.txn([], [Delete(k) for k in batch])
        self.meta.delete(keys.repo_trash(name))

    # -- user metadata -------------------------------------------------------------

    def edit_metadata(self, change: Callable[[Mapping[str, str]], dict[str, str]], *,
                      project: str | None = None, repo: str | None = None,
                      branch: str | None = None, commit: str | None = None) -> None:
        """Replace the metadata map of one project, repo, branch (``repo`` and
        ``branch``) or commit (``repo`` and ``commit``, any ref) with
        ``change(current)``, by compare-and-swap (``change`` may run again).

        Raises:
            NotFound: no such project, repo, branch or commit.
            Conflict: the record kept changing meanwhile.
        """
        for _ in range(100):
            if project is not None:
                self.inspect_project(project)
                key = keys.project(project)
                kv = self.meta.get(key)
                d: dict[str, Any] = json.loads(kv.value) if kv is not None else {
                    "name": project, "description": "The default project.", "created": 0.0}
                d["metadata"] = change(d.get("metadata") or {})
                value = json.dumps(d).encode()
            else:
                if repo is None:
                    raise InvalidArgument("edit_metadata needs a project or a repo")
                rec: Any
                cls: type[Any]
                if branch is not None:
                    key, cls = keys.branch(repo, branch), BranchRec
                elif commit is not None:
                    key, cls = keys.commit(repo, self.resolve(repo, commit).id), CommitRec
                else:
                    key, cls = keys.repo(repo), RepoRec
                kv = self.meta.get(key)
                if kv is None:
                    self._get_repo(repo)  # RepoNotFound first
                    if branch is not None:
                        raise BranchNotFound(repo, branch)
                    raise NotFound(f"commit {repo}@{commit} not found")
                rec = _load(cls, kv.value)
                rec.metadata = change(rec.metadata)
                value = _dump(rec)
            if self.meta.txn([Compare(key, kv.mod_revision if kv is not None else 0)],
                             [Put(key, value)]):
                return
        raise Conflict(f"the metadata of {project or repo} kept changing; try again")

    # -- branches --------------------------------------------------------------

    def _branch_info(self, b: BranchRec, all_branches: list[BranchRec] | None = None) -> BranchInfo:
        allb = all_branches if all_branches is not None else self._all_branches()
        by_key = {(x.repo, x.name): x for x in allb}
        prov = self._closure((b.repo, b.name), lambda k: [tuple(p) for p in by_key[k].provenance]
                             if k in by_key else [])
        sub_edges: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for x in allb:
            for p in x.provenance:
                sub_edges.setdefault((p[0], p[1]), []).append((x.repo, x.name))
        subv = self._closure((b.repo, b.name), lambda k: sub_edges.get(k, []))
        return BranchInfo(
            repo=b.repo, name=b.name, head=b.head, created=b.created,
            direct_provenance=tuple(BranchRef(p[0], p[1]) for p in b.provenance),
            provenance=tuple(BranchRef(r, n) for r, n in prov),
            subvenance=tuple(BranchRef(r, n) for r, n in subv),
            metadata=dict(b.metadata))

    @staticmethod
    def _closure(start: tuple[str, str],
                 edges: Callable[[tuple[str, str]], Iterable[Any]]) -> list[tuple[str, str]]:
        seen: list[tuple[str, str]] = []
        todo = [tuple(e) for e in edges(start)]
        while todo:
            k = todo.pop()
            if k in seen or k == start:
                continue
            seen.append(k)
            todo.extend(tuple(e) for e in edges(k))
        return seen

    def inspect_branch(self, repo: str, branch: str) -> BranchInfo:
        self._get_repo(repo)
        b = self._get_branch(repo, branch)
        if b is None:
            raise BranchNotFound(repo, branch)
        return self._branch_info(b)

    def list_branch(self, repo: str) -> list[BranchInfo]:
        self._get_repo(repo)
        allb = self._all_branches()
        out = [self._branch_info(b, allb) for b in allb if b.repo == repo]
        out.sort(key=lambda b: b.created, reverse=True)
        return out

    def create_branch(self, repo: str, branch: str, head: str | None = None,
                      provenance: Sequence[BranchRef] = ()) -> BranchInfo:
        validate_branch_name(branch)
        with self._lock:
            self._get_repo(repo)
            prov = [[p.repo, p.name] for p in provenance]
            for p in provenance:
                self._get_repo(p.repo)
                if p.repo == repo:
                    raise InvalidArgument(
                        f"branch {repo}@{branch} cannot be in its own provenance (a repo cannot "
                        f"be in the provenance of its own branch)")
                if self._get_branch(p.repo, p.name) is None:
                    # Provenance branches are created (empty) if missing.
                    self.create_branch(p.repo, p.name)
            self._validate_dag(repo, branch, prov)
            existing = self._get_branch(repo, branch)
            now = self.clock()
            if existing is None:
                rec = BranchRec(repo=repo, name=branch, created=now, provenance=prov)
            else:
                rec = existing
                if provenance or head is None:
                    rec.provenance = prov if provenance else rec.provenance
            if head is not None:
                target = self.resolve(repo, head)
                if target.id == rec.head and existing is not None:
                    self.meta.put(keys.branch(repo, branch), _dump(rec))
                    return self.inspect_branch(repo, branch)
                rec.head = target.id
                self._commit_txn([], [rec], created_on=rec, set_id=target.id)
            elif existing is None or provenance:
                # A new branch gets an empty head commit: finished when the
                # branch has no provenance, else open (its producer finishes it).
                parent = existing.head if existing else ""
                c = CommitRec(repo=repo, id=new_id(), branch=branch, origin="AUTO",
                              parent=parent, started=now)
                if rec.provenance:
                    c.provenance = self._provenance_heads(rec, {})
                else:
                    c.finished = now
                    c.finishing = now
                    c.size = 0
                    c.tree = ""
                    if parent:
                        prev = self._get_commit(repo, parent)
                        c.tree = prev.tree if prev and prev.finished else ""
                        c.size = prev.size if prev and prev.finished else 0
                rec.head = c.id
                self._commit_txn([c], [rec], created_on=rec, set_id=c.id)
            else:
                self.meta.put(keys.branch(repo, branch), _dump(rec))
            self._changed.notify_all()
        return self.inspect_branch(repo, branch)

    def _validate_dag(self, repo: str, branch: str, prov: list[list[str]]) -> None:
        allb = {(b.repo, b.name): b for b in self._all_branches()}
        allb[(repo, branch)] = BranchRec(repo=repo, name=branch, provenance=prov)
        upstream = self._closure((repo, branch), lambda k: [tuple(p) for p in allb[k].provenance]
                                 if k in allb else [])
        if (repo, branch) in upstream:
            raise InvalidArgument(f"branch {repo}@{branch} would be in its own provenance (cycle)")
        repos_seen: dict[str, str] = {repo: branch}
        for r, n in upstream:
            if r in repos_seen and repos_seen[r] != n:
                raise InvalidArgument(
                    f"multiple branches from the same repo, {r!r}, cannot participate in a DAG")
            repos_seen[r] = n

    def set_branch_provenance(self, repo: str, branch: str, provenance: Sequence[BranchRef],
                              new_head: bool) -> None:
        """Replace a branch's provenance (pipelines: stop/start). With
        ``new_head`` a new open head commit over the provenance heads is made
        and propagated, as when a branch is created with provenance."""
        with self._lock:
            b = self._get_branch(repo, branch)
            if b is None:
                raise BranchNotFound(repo, branch)
            prov = [[p.repo, p.name] for p in provenance]
            self._validate_dag(repo, branch, prov)
            b.provenance = prov
            if not new_head:
                self.meta.put(keys.branch(repo, branch), _dump(b))
                self._changed.notify_all()
                return
            c = CommitRec(repo=repo, id=new_id(), branch=branch, origin="AUTO", parent=b.head,
                          started=self.clock())
            c.provenance = self._provenance_heads(b, {})
            b.head = c.id
            self._commit_txn([c], [b], created_on=b, set_id=c.id)

    def delete_branch(self, repo: str, branch: str, force: bool = False) -> None:
        with self._lock:
            self._get_repo(repo)
            b = self._get_branch(repo, branch)
            if b is None:
                raise BranchNotFound(repo, branch)
            users = [x for x in self._all_branches() if [repo, branch] in x.provenance]
            if users and not force:
                names = ", ".join(f"{x.repo}@{x.name}" for x in users)
                raise FailedPrecondition(
                    f'branch "{repo}@{branch}" cannot be deleted because it\'s in the direct '
                    f"provenance of [{names}]")
            ops: list[Op] = [Delete(keys.branch(repo, branch))]
            for x in users:
                x.provenance = [p for p in x.provenance if p != [repo, branch]]
                ops.append(Put(keys.branch(x.repo, x.name), _dump(x)))
            self.meta.txn([], ops)
            self._changed.notify_all()

    # -- commit transactions ---------------------------------------------------

    def _provenance_heads(self, b: BranchRec,
                          new: dict[tuple[str, str], CommitRec]) -> list[list[str]]:
        out = []
        for pr, pn in b.provenance:
            if (pr, pn) in new:
                out.append([pr, pn, new[(pr, pn)].id])
            else:
                pb = self._get_branch(pr, pn)
                if pb is not None and pb.head:
                    out.append([pr, pn, pb.head])
        return out

    def _commit_txn(self, commits: list[CommitRec], branches: list[BranchRec],
                    created_on: BranchRec | list[BranchRec] | None, set_id: str,
                    extra_ops: Sequence[Op] = (),
                    compares: Sequence[Compare] = ()) -> list[CommitRec]:
        """Write ``commits`` and ``branches`` plus, for the branches commits were
        created on, a propagated AUTO commit with ID ``set_id`` on every
        downstream branch (one, whatever the number of origins reaching it:
        one job for a transaction's commits to several inputs). One
        transaction. Returns the propagated commits."""
        ops: list[Op] = list(extra_ops)
        created: dict[tuple[str, str], CommitRec] = {}
        origins = ([] if created_on is None else
                   list(created_on) if isinstance(created_on, list) else [created_on])
        for on in origins:
            created[(on.repo, on.name)] = next(
                (c for c in commits if c.repo == on.repo and c.id == on.head),
                CommitRec(repo=on.repo, id=on.head))
        propagated: list[CommitRec] = []
        if origins:
            allb = self._all_branches()
            by_key = {(b.repo, b.name): b for b in allb}
            for b in branches:
                by_key[(b.repo, b.name)] = b
            sub_edges: dict[tuple[str, str], list[tuple[str, str]]] = {}
            for b in by_key.values():
                for p in b.provenance:
                    sub_edges.setdefault((p[0], p[1]), []).append((b.repo, b.name))
            downstream: set[tuple[str, str]] = set()
            for on in origins:
                downstream |= set(self._closure((on.repo, on.name),
                                                lambda k: sub_edges.get(k, [])))
            downstream -= {(on.repo, on.name) for on in origins}

            def prov_size(k: tuple[str, str]) -> int:
                return len(self._closure(k, lambda x: [tuple(p) for p in by_key[x].provenance]
                                         if x in by_key else []))

            now = self.clock()
            for k in sorted(downstream, key=prov_size):
                b = by_key[k]
                cid = set_id
                if self._get_commit(b.repo, cid) is not None:
                    cid = new_id()
                c = CommitRec(repo=b.repo, id=cid, branch=b.name, origin="AUTO",
                              parent=b.head, started=now)
                c.provenance = self._provenance_heads(b, created)
                b.head = c.id
                created[k] = c
                propagated.append(c)
                branches = [x for x in branches if (x.repo, x.name) != k] + [b]
        for c in list(commits) + propagated:
            ops.append(Put(keys.commit(c.repo, c.id), _dump(c)))
            if c.parent:
                ops.append(Put(keys.child(c.repo, c.parent, c.id), b""))
            ops.append(Put(keys.commitset_member(c.id, c.repo), b""))
        for b in branches:
            ops.append(Put(keys.branch(b.repo, b.name), _dump(b)))
        for txn_hook in self.txn_hooks:
            ops += txn_hook(list(commits) + propagated)
        if not self.meta.txn(list(compares), ops):
            raise TuskError("a concurrent change to the same branch won; retry the command")
        everything = list(commits) + propagated
        for hook in self.on_commits_created:
            hook(everything)
        for c in commits:
            if c.finished is not None:
                for fhook in self.on_commit_finished:
                    fhook(c)
        self._changed.notify_all()
        return propagated

    # -- commits ---------------------------------------------------------------

    def start_commit(self, repo: str, branch: str, parent: str | None = None,
                     description: str = "", origin: str = "USER",
                     allow_output: bool = False) -> CommitInfo:
        validate_branch_name(branch)
        with self._lock:
            self._get_repo(repo)
            b = self._get_branch(repo, branch)
            if b is not None and b.provenance and not allow_output:
                raise FailedPrecondition(
                    f"cannot start a commit on an output branch ({repo}@{branch} has provenance)")
            parent_rec: CommitRec | None = None
            if parent:
                parent_rec = self.resolve(repo, parent)
            elif b is not None and b.head:
                parent_rec = self._get_commit(repo, b.head)
            if parent_rec is not None and parent_rec.finished is None:
                raise FailedPrecondition(
                    f"parent commit {parent_rec.id} has not been finished; finish it with "
                    f"`tusk finish commit {repo}@{parent_rec.id}` first")
            c = CommitRec(repo=repo, id=new_id(), branch=branch, origin=origin,
                          description=description,
                          parent=parent_rec.id if parent_rec else "", started=self.clock())
            if b is None:
                b = BranchRec(repo=repo, name=branch, created=c.started)
            b.head = c.id
            self._commit_txn([c], [b], created_on=b, set_id=c.id)
        return self.inspect_commit(repo, c.id)

    def start_commits(self, starts: Sequence[tuple[str, str, str | None, str]],
                      set_id: str | None = None) -> list[CommitInfo]:
        """Start several commits at once, all with one ID (a transaction's):
        ``(repo, branch, parent or None, description)`` each, on distinct
        branches. Downstream branches get one commit each in the same set."""
        if not starts:
            return []
        sid = set_id or new_id()
        with self._lock:
            seen: set[tuple[str, str]] = set()
            commits: list[CommitRec] = []
            branches: list[BranchRec] = []
            now = self.clock()
            for repo, branch, parent, description in starts:
                validate_branch_name(branch)
                if (repo, branch) in seen:
                    raise FailedPrecondition(
                        f"{repo}@{branch} has two commits started in one transaction")
                seen.add((repo, branch))
                self._get_repo(repo)
                b = self._get_branch(repo, branch)
                if b is not None and b.provenance:
                    raise FailedPrecondition(f"cannot start a commit on an output branch "
                                             f"({repo}@{branch} has provenance)")
                prec = (self.resolve(repo, parent) if parent else
                        self._get_commit(repo, b.head) if b is not None and b.head else None)
                if prec is not None and prec.finished is None:
                    raise FailedPrecondition(
                        f"parent commit {prec.id} has not been finished; finish it with "
                        f"`tusk finish commit {repo}@{prec.id}` first")
                if self._get_commit(repo, sid) is not None:
                    raise FailedPrecondition(f"{repo} already has a commit {sid}")
                c = CommitRec(repo=repo, id=sid, branch=branch, description=description,
                              parent=prec.id if prec else "", started=now)
                if b is None:
                    b = BranchRec(repo=repo, name=branch, created=now)
                b.head = c.id
                commits.append(c)
                branches.append(b)
            self._commit_txn(commits, branches, created_on=list(branches), set_id=sid)
        return [self.inspect_commit(c.repo, c.id) for c in commits]

    def finish_commit(self, repo: str, ref: str, description: str | None = None,
                      error: str = "", force: bool = False) -> CommitInfo:
        with self._lock:
            c = self.resolve(repo, ref)
            if c.finished is not None:
                raise CommitFinished(repo, c.id)
            if c.finishing is not None:
                # Finishing was requested but not completed (e.g. a store
                # outage interrupted it): asking again completes it.
                self._complete_finishing_or_retry(repo, c.id)
                return self.inspect_commit(repo, c.id)
            if not force and self.protected_repos(repo) and c.origin == "AUTO":
                raise FailedPrecondition(
                    f"cannot finish a pipeline output commit ({repo}@{c.id}), use "
                    f"`tusk stop job {repo}@{c.id}` instead (or --force)")
            c.finishing = self.clock()
            if description is not None:
                c.description = description
            c.error = error
            self.meta.txn([], [Put(keys.commit(repo, c.id), _dump(c)),
                               Put(keys.finishing(repo, c.id), b"")])
        self._complete_finishing_or_retry(repo, c.id)
        return self.inspect_commit(repo, c.id)

    def _complete_finishing_or_retry(self, repo: str, cid: str) -> None:
        try:
            self._complete_finishing(repo, cid)
        except TuskError:
            # The finish is recorded (finishing/ key): complete it in the
            # background once the stores answer again, without a restart.
            self._schedule_finish_retry()
            raise

    def _schedule_finish_retry(self) -> None:
        with self._lock:
            if self._retrying:
                return
            self._retrying = True

        def loop() -> None:
            delay = 0.5
            try:
                while True:
                    time.sleep(delay)
                    try:
                        pending = list(self.meta.range(keys.ALL_FINISHING))
                        for kv in pending:
                            rk, cid = kv.key[len(keys.ALL_FINISHING):].split("/", 1)
                            r = keys.repo_from_key(rk)
                            self._complete_finishing(r, cid)
                        if not any(True for _ in self.meta.range(keys.ALL_FINISHING, limit=1)):
                            return
                    except TuskError:
                        pass
                    delay = min(delay * 2, 10.0)
            finally:
                with self._lock:
                    self._retrying = False

        threading.Thread(target=loop, name="pfs-finish-retry", daemon=True).start()

    def _complete_finishing(self, repo: str, cid: str) -> None:
        """Build the tree of a FINISHING commit and mark it FINISHED, if its
        parent is finished; then do the same for its waiting children."""
        with self._lock:
            c = self._get_commit(repo, cid)
            if c is None or c.finished is not None or c.finishing is None:
                return
            if c.parent:
                p = self._get_commit(repo, c.parent)
                if p is not None and p.finished is None:
                    return  # finished when the parent finishes
            tree, writer = self._build_tree(c)
            writer.flush()
            c.tree = ref_to_str(tree.root) if tree.root is not None else ""
            c.size = tree.size()
            c.finished = self.clock()
            c.layers = 0
            ops: list[Op] = [Put(keys.commit(repo, cid), _dump(c)),
                             Delete(keys.finishing(repo, cid))]
            ops += [Delete(kv.key) for kv in self.meta.range(keys.layer_prefix(repo, cid))]
            self.meta.txn([], ops[:120])
            for op in ops[120:]:
                self.meta.delete(op.key)
            self._provisional = {k: v for k, v in self._provisional.items() if k[:2] != (repo, cid)}
            for hook in self.on_commit_finished:
                hook(c)
            self._changed.notify_all()
            children = self._children(repo, cid)
        for child in children:
            self._complete_finishing(repo, child)

    def _base_tree(self, c: CommitRec) -> Tree:
        """The content a commit starts from: its nearest ancestor without an
        error (children exclude an errored parent's content)."""
        pid = c.parent
        while pid:
            p = self._get_commit(c.repo, pid)
            if p is None:
                break
            if p.finished is None:
                return self._commit_tree(p)
            if not p.error:
                return Tree(self.blobs, ref_from_str(p.tree) if p.tree else None)
            pid = p.parent
        return Tree(self.blobs, None)

    def _layer_keys(self, c: CommitRec) -> list[str]:
        return [kv.value.decode() for kv in self.meta.range(keys.layer_prefix(c.repo, c.id))]

    def _build_tree(self, c: CommitRec, extra: Iterable[Change] | None = None,
                    base: Tree | None = None) -> tuple[Tree, Any]:
        writer = self.blobs.writer()
        base = base if base is not None else self._base_tree(c)
        layers: list[Iterable[Change]] = [read_layer(self.objects, k) for k in self._layer_keys(c)]
        if extra is not None:
            layers.append(extra)
        if not layers:
            return base, writer
        tree = tree_apply(writer, base, merge_layers(layers))
        return tree, writer

    def _commit_tree(self, c: CommitRec) -> Tree:
        """The current content of a commit (open commits: parent + layers)."""
        if c.finished is not None:
            return Tree(self.blobs, ref_from_str(c.tree) if c.tree else None)
        nlayers = len(self._layer_keys(c))
        key = (c.repo, c.id, nlayers)
        t = self._provisional.get(key)
        if t is None:
            overlay = _OverlayStore(self.blobs)
            base = self._base_tree(c)
            layers = [read_layer(self.objects, k) for k in self._layer_keys(c)]
            t = tree_apply(overlay, base, merge_layers(layers)) if layers else base
            t = Tree(overlay, t.root)
            self._provisional[key] = t
        return t

    def _state(self, c: CommitRec,
               known: Mapping[str, KeyValue | None] | None = None) -> CommitState:
        """``c``'s state; ``known`` may already hold its provenance commits."""
        if c.finished is not None:
            return CommitState.FINISHED
        if c.finishing is not None:
            return CommitState.FINISHING
        wanted = [keys.commit(pr, pid) for pr, _, pid in c.provenance]
        if known is None or any(k not in known for k in wanted):
            known = get_many(self.meta, wanted)
        for k in wanted:
            kv = known[k]
            if kv is not None and _load(CommitRec, kv.value).finished is None:
                return CommitState.STARTED
        return CommitState.READY

    def _commit_info(self, c: CommitRec, read: ReadResult | None = None) -> CommitInfo:
        """``c`` as :class:`CommitInfo`. ``read`` may already hold the ranges
        of :meth:`_info_prefixes` (from :meth:`_resolve`); else they are read
        here, both in one round trip. Other commits are read only when there
        are any to read: subvenance candidates and, for an open commit, its
        provenance (one more round trip for both)."""
        set_prefix, child_prefix = self._info_prefixes(c.repo, c.id)
        if read is None or set_prefix not in read.ranges or child_prefix not in read.ranges:
            read = self.meta.read_many([], (set_prefix, child_prefix))
        others = [other for other in (keys.repo_from_key(kv.key.rsplit("/", 1)[1])
                                      for kv in range_rest(self.meta, read, set_prefix))
                  if other != c.repo]
        children = [kv.key[len(child_prefix):] for kv in range_rest(self.meta, read, child_prefix)]
        needs_prov = c.finished is None and c.finishing is None
        known = get_many(self.meta, [keys.commit(other, c.id) for other in others]
                         + ([keys.commit(pr, pid) for pr, _, pid in c.provenance]
                            if needs_prov else []))
        subv = []
        for other in others:
            kv = known[keys.commit(other, c.id)]
            if kv is None:
                continue
            oc: CommitRec = _load(CommitRec, kv.value)
            if any(p[0] == c.repo and p[2] == c.id for p in oc.provenance):
                subv.append(CommitRef(oc.repo, oc.id, oc.branch))
        return CommitInfo(
            repo=c.repo, id=c.id, branch=c.branch, origin=OriginKind(c.origin),
            state=self._state(c, known), description=c.description, parent=c.parent,
            children=tuple(children), started=c.started,
            finishing=c.finishing, finished=c.finished, error=c.error, size_bytes=c.size,
            direct_provenance=tuple(CommitRef(r, i, b) for r, b, i in c.provenance),
            direct_subvenance=tuple(subv), metadata=dict(c.metadata))

    def inspect_commit(self, repo: str, ref: str, wait: CommitState | None = None,
                       timeout: float | None = None) -> CommitInfo:
        c, read = self._resolve(repo, ref, for_info=True)
        if wait is None:
            return self._commit_info(c, read)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                rec = self._get_commit(repo, c.id)
                if rec is None:
                    raise CommitNotFound(repo, c.id)
                if STATE_ORDER[self._state(rec)] >= STATE_ORDER[wait]:
                    return self._commit_info(rec)
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TuskError(
                        f"timed out waiting for commit {repo}@{c.id} to be {wait.value}")
                # Poll too: another process may finish commits in a shared store.
                self._changed.wait(0.5 if left is None else min(0.5, left))

    def list_commit(self, repo: str, ref: str | None = None, number: int = 0,
                    origin: OriginKind | None = None) -> Iterator[CommitInfo]:
        if ref:
            recs: Iterable[CommitRec] = self._ancestry(self.resolve(repo, ref))
        else:
            self._get_repo(repo)
            allc = [_load(CommitRec, kv.value) for kv in self.meta.range(keys.commit_prefix(repo))]
            recs = sorted(allc, key=lambda c: c.started, reverse=True)
        n = 0
        for c in recs:
            if origin is not None and c.origin != origin.value:
                continue
            yield self._commit_info(c)
            n += 1
            if number and n >= number:
                return

    def find_commits(self, repo: str, ref: str, path: str, limit: int = 0
                     ) -> Iterator[CommitInfo]:
        """The commits, walking back from ``ref``, that changed ``path`` (a file
        or a directory: added, modified or deleted), newest first. Each step
        compares the entry's Merkle hash with the parent's: no file is read."""
        p = clean_path(path)
        n = 0
        for c in self._ancestry(self.resolve(repo, ref)):
            entry = self._commit_tree(c).lookup(p)
            parent = self._get_commit(repo, c.parent) if c.parent else None
            before = self._commit_tree(parent).lookup(p) if parent is not None else None
            h_now = entry.hash if entry is not None else None
            h_before = before.hash if before is not None else None
            if h_now != h_before:
                yield self._commit_info(c)
                n += 1
                if limit and n >= limit:
                    return

    def subscribe_commit(self, repo: str, branch: str, from_commit: str | None = None,
                         state: CommitState = CommitState.FINISHED, new: bool = False,
                         cancel: threading.Event | None = None) -> Iterator[CommitInfo]:
        self._get_repo(repo)
        seen: set[str] = set()
        if new:
            b = self._get_branch(repo, branch)
            if b is not None and b.head:
                seen.update(c.id for c in self._ancestry(self._get_commit(repo, b.head)))  # type: ignore[arg-type]
        elif from_commit:
            start = self.resolve(repo, from_commit)
            seen.update(c.id for c in self._ancestry(start)[1:])
        while cancel is None or not cancel.is_set():
            b = self._get_branch(repo, branch)
            ready: list[CommitRec] = []
            if b is not None and b.head:
                head = self._get_commit(repo, b.head)
                if head is not None:
                    for c in reversed(self._ancestry(head)):
                        if c.id in seen:
                            continue
                        if STATE_ORDER[self._state(c)] < STATE_ORDER[state]:
                            break
                        ready.append(c)
            for c in ready:
                seen.add(c.id)
                yield self._commit_info(c)
            with self._changed:
                self._changed.wait(0.5)

    def subvenant_commits(self, repo: str, cid: str) -> list[tuple[str, str]]:
        """The commits computed from ``repo@cid``: the members of its commit set
        whose provenance reaches it, downstream first (the order to remove them)."""
        members = [keys.repo_from_key(kv.key.rsplit("/", 1)[1])
                   for kv in self.meta.range(keys.commitset_prefix(cid))]
        recs = {r: self._get_commit(r, cid) for r in members if r != repo}
        down: dict[str, int] = {}  # repo -> depth below repo@cid

        def depth(r: str, seen: frozenset[str]) -> int:
            if r in down:
                return down[r]
            rec = recs.get(r)
            best = -1
            for pr, _, pid in (rec.provenance if rec is not None else []):
                if pid != cid or pr in seen:
                    continue
                if pr == repo:
                    best = max(best, 1)
                elif pr in recs:
                    d = depth(pr, seen | {r})
                    if d > 0:
                        best = max(best, d + 1)
            down[r] = best
            return best

        for r in recs:
            depth(r, frozenset())
        return [(r, cid) for r in sorted((r for r, d in down.items() if d > 0),
                                         key=lambda r: -down[r])]

    def _check_subvenance(self, verb: str, repo: str, cid: str, recursive: bool
                          ) -> list[tuple[str, str]]:
        subs = self.subvenant_commits(repo, cid)
        if subs and not recursive:
            names = ", ".join(f"{r}@{c}" for r, c in subs)
            raise FailedPrecondition(
                f"cannot {verb} commit {repo}@{cid}: commits were computed from it ({names}); "
                f"{verb} them too with --recursive (-r)")
        return subs

    def delete_commit(self, repo: str, ref: str, recursive: bool = False) -> None:
        """Drop a commit (reference 1.7): its data goes, branch heads on it move
        to its parent (or to a new empty commit). Refused when it has children;
        when commits were computed from it (subvenance) unless ``recursive``,
        which drops those first."""
        with self._lock:
            c = self.resolve(repo, ref)
            subs = self._check_subvenance("drop", repo, c.id, recursive)
            for r, cid in [*subs, (repo, c.id)]:
                if self._children(r, cid):
                    raise FailedPrecondition(
                        f"cannot drop commit {r}@{cid}: it has children (drop them first, "
                        "or squash it to keep its data in them)")
            for r, cid in [*subs, (repo, c.id)]:
                rec = self._get_commit(r, cid)
                if rec is not None:
                    self._drop_one(rec)
            self._changed.notify_all()

    def _drop_one(self, c: CommitRec) -> None:
        repo = c.repo
        ops: list[Op] = [Delete(keys.commit(repo, c.id)),
                         Delete(keys.commitset_member(c.id, repo)),
                         Delete(keys.finishing(repo, c.id))]
        if c.parent:
            ops.append(Delete(keys.child(repo, c.parent, c.id)))
        new_commits: list[CommitRec] = []
        for b in self._branches(repo):
            if b.head == c.id:
                if c.parent:
                    b.head = c.parent
                else:
                    e = CommitRec(repo=repo, id=new_id(), branch=b.name, origin="AUTO",
                                  started=self.clock(), finishing=self.clock(),
                                  finished=self.clock(), size=0)
                    new_commits.append(e)
                    b.head = e.id
                ops.append(Put(keys.branch(repo, b.name), _dump(b)))
        for e in new_commits:
            ops.append(Put(keys.commit(repo, e.id), _dump(e)))
            ops.append(Put(keys.commitset_member(e.id, repo), b""))
        ops += [Delete(kv.key) for kv in self.meta.range(keys.layer_prefix(repo, c.id))]
        self.meta.txn([], ops)

    def squash_commit(self, repo: str, ref: str, recursive: bool = False) -> None:
        """Squash a commit into its children (reference 1.7): the commit goes,
        its children take its parent as theirs and keep their content (every
        finished commit's index is whole, so no data moves). Refused for a
        commit without children ("use the drop operation instead"), an open
        commit or one with open children, a branch head, and when commits were
        computed from it unless ``recursive`` (which squashes those too)."""
        with self._lock:
            c = self.resolve(repo, ref)
            subs = self._check_subvenance("squash", repo, c.id, recursive)
            plan: list[tuple[CommitRec, list[CommitRec]]] = []
            for r, cid in [*subs, (repo, c.id)]:
                rec = self._get_commit(r, cid)
                if rec is None:
                    continue
                kids = [k for k in (self._get_commit(r, x) for x in self._children(r, cid))
                        if k is not None]
                where = f"{r}@{cid}"
                if not kids:
                    raise FailedPrecondition(
                        f"cannot squash commit {where}: it has no children, so squashing would "
                        "lose its data; use the drop operation instead (tusk delete commit)")
                if rec.finished is None or any(k.finished is None for k in kids):
                    raise FailedPrecondition(
                        f"cannot squash commit {where}: it or one of its children is not "
                        "finished yet; finish them (and wait for them) first")
                heads = [b.name for b in self._branches(r) if b.head == cid]
                if heads:
                    raise FailedPrecondition(
                        f"cannot squash commit {where}: it is the head of branch "
                        f"{', '.join(heads)}")
                plan.append((rec, kids))
            for rec, kids in plan:
                ops: list[Op] = [Delete(keys.commit(rec.repo, rec.id)),
                                 Delete(keys.commitset_member(rec.id, rec.repo))]
                if rec.parent:
                    ops.append(Delete(keys.child(rec.repo, rec.parent, rec.id)))
                for k in kids:
                    ops.append(Delete(keys.child(rec.repo, rec.id, k.id)))
                    k.parent = rec.parent
                    ops.append(Put(keys.commit(rec.repo, k.id), _dump(k)))
                    if rec.parent:
                        ops.append(Put(keys.child(rec.repo, rec.parent, k.id), b""))
                self.meta.txn([], ops)
            self._changed.notify_all()

    def commit_set_members(self, set_id: str) -> list[str]:
        """The repos with a commit in commit set ``set_id``."""
        return [keys.repo_from_key(kv.key.rsplit("/", 1)[1])
                for kv in self.meta.range(keys.commitset_prefix(set_id))]

    def delete_commit_set(self, set_id: str) -> None:
        """Drop every commit of a commit set (``tusk delete commit ID``)."""
        self._commit_set_op(set_id, self.delete_commit)

    def squash_commit_set(self, set_id: str) -> None:
        """Squash every commit of a commit set (``tusk squash commit ID``)."""
        self._commit_set_op(set_id, self.squash_commit)

    def _commit_set_op(self, set_id: str, op: Callable[..., None]) -> None:
        with self._lock:
            repos = self.commit_set_members(set_id)
            if not repos:
                raise NotFound(f"commit set {set_id} not found (list them with `tusk list commit`)")
            # Upstream first: each op takes what was computed from its commit along.
            remaining = set(repos)
            for r in repos:
                if r in remaining and self._get_commit(r, set_id) is not None:
                    subs = {x for x, _ in self.subvenant_commits(r, set_id)}
                    upstream = any(r in {x for x, _ in self.subvenant_commits(o, set_id)}
                                   for o in remaining if o != r)
                    if upstream:
                        continue
                    op(r, set_id, recursive=True)
                    remaining -= subs | {r}
            for r in sorted(remaining):
                if self._get_commit(r, set_id) is not None:
                    op(r, set_id, recursive=True)

    def inspect_commit_set(self, set_id: str, wait: bool = False) -> list[CommitInfo]:
        out = []
        members = [keys.repo_from_key(kv.key.rsplit("/", 1)[1])
                   for kv in self.meta.range(keys.commitset_prefix(set_id))]
        if not members:
            raise NotFound(f"commit set {set_id} not found")
        for repo in members:
            if wait:
                out.append(self.inspect_commit(repo, set_id, wait=CommitState.FINISHED))
            else:
                rec = self._get_commit(repo, set_id)
                if rec is not None:
                    out.append(self._commit_info(rec))
        return out

    def list_commit_set(self, number: int = 0) -> Iterator[tuple[str, list[CommitInfo]]]:
        sets: dict[str, float] = {}
        for kv in self.meta.range(keys.ALL_COMMITSETS):
            sid, rk = kv.key[len(keys.ALL_COMMITSETS):].split("/", 1)
            repo = keys.repo_from_key(rk)
            rec = self._get_commit(repo, sid)
            if rec is not None:
                sets[sid] = min(sets.get(sid, rec.started), rec.started)
        n = 0
        for sid in sorted(sets, key=lambda s: sets[s], reverse=True):
            yield sid, self.inspect_commit_set(sid)
            n += 1
            if number and n >= number:
                return

    # -- files -----------------------------------------------------------------

    def modify_file(self, repo: str, ref: str) -> FileWriter:
        """A writer for one atomic change (see :class:`FileWriter`)."""
        self._get_repo(repo)
        p = parse_ref(ref)
        target: CommitRec | None = None
        branch = ""
        if p.back or p.forward or p.commit_id:
            target = self.resolve(repo, ref)
        else:
            b = self._get_branch(repo, p.base)
            if b is not None:
                branch = b.name
                if b.provenance:
                    raise FailedPrecondition(
                        f"cannot write to output branch {repo}@{b.name}: it has provenance")
                head = self._get_commit(repo, b.head) if b.head else None
                if head is not None and head.finishing is None:
                    target = head
            elif COMMIT_ID_RE.match(p.base):
                target = self.resolve(repo, ref)
            else:
                validate_branch_name(p.base)
                branch = p.base
        if target is not None and target.finishing is not None:
            raise CommitFinished(repo, target.id)
        return FileWriter(self, repo, branch, target)

    def _file_info(self, repo: str, c: CommitRec, e: Entry) -> FileInfo:
        is_dir = isinstance(e, DirEntry)
        return FileInfo(repo=repo, commit=c.id, path=e.path,
                        file_type=FileType.DIR if is_dir else FileType.FILE,
                        size_bytes=e.size, hash=e.hash.hex(), committed=c.finished,
                        datum="" if is_dir else e.datum)  # type: ignore[union-attr]

    def _lookup(self, repo: str, ref: str, path: str) -> tuple[CommitRec, Tree, Entry]:
        c = self.resolve(repo, ref)
        tree = self._commit_tree(c)
        p = clean_dir_path(path)
        e = tree.lookup(p)
        if e is None:
            raise FileNotFound(repo, c.id, p)
        return c, tree, e

    def get_file(self, repo: str, ref: str, path: str, offset: int = 0) -> Iterator[bytes]:
        """Stream one file's bytes from ``offset``."""
        _, refs = self.file_chunks(repo, ref, path)
        return self.blobs.read_chunks(refs, offset)

    def file_chunks(self, repo: str, ref: str, path: str) -> tuple[int, Iterator[ChunkRef]]:
        """One file's size and chunk refs, for readers that fetch chunks
        themselves (:mod:`pfs.direct`); the same errors as :meth:`get_file`."""
        c = self.resolve(repo, ref)
        tree = self._commit_tree(c)
        if is_glob(path):
            from pfs.glob import compile_glob

            matches = list(_take(tree.glob(compile_glob(path)), 2))
            if not matches:
                raise FileNotFound(repo, c.id, path)
            if len(matches) > 1 or isinstance(matches[0], DirEntry):
                raise InvalidArgument(
                    f"{path} matches more than one file or a directory. Try again with the -r flag")
            e: Entry = matches[0]
        else:
            p = clean_dir_path(path)
            found = tree.lookup(p)
            if found is None:
                raise FileNotFound(repo, c.id, p)
            e = found
        if isinstance(e, DirEntry):
            raise InvalidArgument(f"{e.path} is a directory. Try again with the -r flag")
        return e.size, iter(tree.chunks(e))

    def storage_info(self) -> StorageInfo:
        """Where a client may move file bytes itself (:mod:`pfs.direct`): the
        root of a local store, or a presigned GET of an S3 store's ID object;
        neither for an in-memory store."""
        from pfs.direct import store_id
        from pfs.objects import LocalObjectStore

        if isinstance(self.objects, LocalObjectStore):
            return StorageInfo(self.objects.root, store_id(self.objects))
        presign = getattr(self.objects, "presign", None)
        if presign is None:
            return StorageInfo()
        from pfs.direct import STORE_ID_KEY

        sid = store_id(self.objects)
        return StorageInfo(store_id=sid, probe_url=presign("GET", STORE_ID_KEY, PRESIGN_TTL))

    def presign_packs(self, count: int) -> list[tuple[str, str]]:
        """``count`` fresh pack IDs, each with a presigned PUT URL of its key:
        a client uploads the packs of a direct put itself (S3 stores only).

        The IDs are new random ones, so a URL can only create a pack, never
        overwrite one; it expires after :data:`PRESIGN_TTL`.
        """
        presign = getattr(self.objects, "presign", None)
        if presign is None:
            raise FailedPrecondition(
                f"the object store {self.objects.describe()} cannot presign uploads; "
                "put the file through the daemon (TUSK_DIRECT=0)")
        if not 0 < count <= 1000:
            raise InvalidArgument(f"presign of {count} packs: ask for 1 to 1000")
        out = []
        for _ in range(count):
            pack = uuid.uuid4().hex
            out.append((pack, presign("PUT", pack_key(pack), PRESIGN_TTL)))
        return out

    def presign_pack_reads(self, packs: Sequence[str]) -> list[tuple[str, str]]:
        """A presigned GET URL of each pack (S3 stores only): a client reads a
        file's chunks itself, verifying each one, instead of through the daemon."""
        presign = getattr(self.objects, "presign", None)
        if presign is None:
            raise FailedPrecondition(
                f"the object store {self.objects.describe()} cannot presign reads; "
                "get the file through the daemon (TUSK_DIRECT=0)")
        if len(packs) > 10000:
            raise InvalidArgument(f"presign of {len(packs)} packs: ask for at most 10000")
        return [(p, presign("GET", pack_key(p), PRESIGN_TTL)) for p in packs]

    def find_chunks(self, hashes: Sequence[bytes]) -> list[tuple[str, int] | None]:
        """(pack, offset) of a stored copy of each digest, or None: the dedup
        lookup of a direct put (through the index, so GC counts the hits)."""
        return [self.blobs.index.get(bytes(h)) for h in hashes]

    def inspect_file(self, repo: str, ref: str, path: str) -> FileInfo:
        c, _, e = self._lookup(repo, ref, path)
        return self._file_info(repo, c, e)

    def list_file(self, repo: str, ref: str, path: str = "/",
                  start_after: str | None = None) -> Iterator[FileInfo]:
        """The immediate children of directory ``path`` in name order (a file:
        just that file), lazily. ``start_after``: only children whose name
        sorts after this name (seeking, so a page of a huge directory costs
        about the page: the web console's file browser)."""
        c, tree, e = self._lookup(repo, ref, path)
        if isinstance(e, FileEntry):
            yield self._file_info(repo, c, e)
            return
        for child in tree.list_dir(e.path, start_after):
            yield self._file_info(repo, c, child)

    def walk_file(self, repo: str, ref: str, path: str = "/") -> Iterator[FileInfo]:
        c, tree, e = self._lookup(repo, ref, path)
        for x in tree.walk(e.path):
            yield self._file_info(repo, c, x)

    def list_file_after(self, repo: str, ref: str, path: str = "/",
                        start_after: str = "") -> Iterator[FileInfo]:
        """The files at or below directory ``path``, in plain string order of
        their paths (``/a-c`` before ``/a/b``), strictly after the path
        ``start_after``: lazy and seeking, so a page of a huge directory costs
        about the page (:meth:`pfs.tree.Tree.files_in_byte_order`). A missing
        ``path`` yields nothing."""
        c = self.resolve(repo, ref)
        tree = self._commit_tree(c)
        for e in tree.files_in_byte_order(clean_dir_path(path), start_after):
            yield self._file_info(repo, c, e)

    # -- chunks stored ahead of a commit ---------------------------------------

    def store_stream(self, data: Iterable[bytes]) -> tuple[list[ChunkRef], int]:
        """Chunk and store a stream of bytes now, ahead of any commit; returns
        its chunk refs (durable) and size. Memory stays bounded (one chunking
        window). Nothing references the chunks yet: record them with
        :meth:`pin_chunks` (or in a commit, :meth:`FileWriter.put_chunks`)
        before the garbage collector's grace period (``pfs.gc``) runs out."""
        w = self.blobs.writer()
        try:
            refs, size = w.write_stream(data)
            w.flush()
        except BaseException:
            w.discard()
            raise
        return refs, size

    def pin_chunks(self, name: str, refs: Sequence[ChunkRef]) -> None:
        """Keep ``refs`` alive under ``name`` (printable ASCII, no spaces or ``/``)
        until :meth:`unpin_chunks`: the garbage collector marks every pinned
        chunk. Stored as ``pins/<name>/<seq>`` metadata keys of at most
        :data:`PIN_REFS` refs each, written in one transaction; pinning a name
        again replaces its refs."""
        if not name or "/" in name or any(not 0x21 <= ord(ch) <= 0x7E for ch in name):
            raise InvalidArgument(f"pin name {name!r}: use printable ASCII without spaces "
                                  "or '/'")
        texts = [ref_to_str(as_ref(r)) for r in refs]
        groups = [texts[i:i + PIN_REFS] for i in range(0, len(texts), PIN_REFS)] or [[]]
        prefix = keys.pin_prefix(name)
        old = [kv.key for kv in self.meta.range(prefix)]
        ops: list[Op] = [Delete(k) for k in old[len(groups):]]
        ops += [Put(keys.pin(name, i), json.dumps({"chunks": g}).encode())
                for i, g in enumerate(groups)]
        if len(ops) > 128:
            raise InvalidArgument(f"pin of {len(texts)} chunks under one name: split it "
                                  f"(at most {127 * PIN_REFS} refs per name)")
        self.meta.txn([], ops)

    def pinned_chunks(self, name: str) -> list[ChunkRef]:
        """The refs pinned under ``name``, in order (``[]`` if none)."""
        out: list[ChunkRef] = []
        for kv in self.meta.range(keys.pin_prefix(name)):
            out.extend(ref_from_str(t) for t in json.loads(kv.value)["chunks"])
        return out

    def unpin_chunks(self, name: str) -> None:
        """Release what :meth:`pin_chunks` kept under ``name`` (idempotent)."""
        for kv in list(self.meta.range(keys.pin_prefix(name))):
            self.meta.delete(kv.key)

    def glob_file(self, repo: str, ref: str, pattern: str) -> Iterator[FileInfo]:
        from pfs.glob import compile_glob

        c = self.resolve(repo, ref)
        tree = self._commit_tree(c)
        for x in tree.glob(compile_glob(pattern)):
            yield self._file_info(repo, c, x)

    def diff_file(self, new_repo: str, new_ref: str, new_path: str = "/",
                  old_repo: str | None = None, old_ref: str | None = None,
                  old_path: str | None = None,
                  shallow: bool = False) -> Iterator[tuple[FileInfo | None, FileInfo | None]]:
        new_c = self.resolve(new_repo, new_ref)
        new_tree = self._commit_tree(new_c)
        old_repo = old_repo or new_repo
        if old_ref is None:
            old_c = self._get_commit(new_repo, new_c.parent) if new_c.parent else None
        else:
            old_c = self.resolve(old_repo, old_ref)
        old_tree = self._commit_tree(old_c) if old_c is not None else Tree(self.blobs, None)
        path = clean_dir_path(new_path)
        if old_path is not None and clean_dir_path(old_path) != path:
            raise InvalidArgument("diff file compares the same path in two commits; "
                                  "give OLD as REPO@COMMIT:PATH with the same path")
        for n, o in new_tree.diff(old_tree, path):
            yield (self._file_info(new_repo, new_c, n) if n is not None else None,
                   self._file_info(old_repo, old_c, o) if o is not None and old_c else None)

    # -- recovery ------------------------------------------------------------

    def _recover(self) -> None:
        """Finish what a killed process left half done (idempotent)."""
        for kv in self.meta.range(keys.ALL_TRASH):
            self._finish_repo_cleanup(keys.repo_from_key(kv.key[len(keys.ALL_TRASH):]))
        # Layer keys beyond one transaction are deleted after a commit is
        # marked finished; a crash in between leaves them: sweep them here.
        stray = []
        for kv in self.meta.range("layers/"):
            _, rk, cid, _ = kv.key.split("/", 3)
            repo = keys.repo_from_key(rk)
            rec = self._get_commit(repo, cid)
            if rec is None or rec.finished is not None:
                stray.append(kv.key)
        for i in range(0, len(stray), 100):
            self.meta.txn([], [Delete(k) for k in stray[i:i + 100]])
        for kv in list(self.meta.range(keys.ALL_FINISHING)):
            rk, cid = kv.key[len(keys.ALL_FINISHING):].split("/", 1)
            repo = keys.repo_from_key(rk)
            try:
                self._complete_finishing(repo, cid)
            except TuskError:
                pass


#: Chunk refs per ``pins/`` metadata value (~110 bytes each: ~45 KiB a value).
PIN_REFS = 400


def _take(it: Iterator[Entry], n: int) -> Iterator[Entry]:
    for i, x in enumerate(it):
        if i >= n:
            return
        yield x


class _OverlayStore:
    """Node store for provisional trees of open commits: new nodes stay in
    memory, existing ones are read from the blob store."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self.nodes: dict[bytes, bytes] = {}

    def put_node(self, data: bytes) -> ChunkRef:
        from pfs.blobs import digest

        h = digest(data)
        self.nodes[h] = data
        return (h, len(data), "", 0)

    def get_node(self, ref: Any) -> bytes:
        r = as_ref(ref)
        data = self.nodes.get(r[0])
        return data if data is not None else self.blobs.read_chunk(r)


class FileWriter:
    """One atomic modification: a ``put file`` invocation.

    Targets either an open commit (changes are added to it as a layer) or a
    branch whose head is finished (a new commit is made and finished in one
    step). Nothing is visible until :meth:`close`; :meth:`abort` (or an
    exception inside ``with``) discards everything.
    """

    def __init__(self, pfs: PFS, repo: str, branch: str, target: CommitRec | None) -> None:
        self.pfs = pfs
        self.repo = repo
        self.branch = branch
        self.target = target
        self._writer = pfs.blobs.writer()
        self._run = ChangeRun()
        self._layers: list[str] = []  # spilled runs (object keys), oldest first
        self._closed = False

    def __enter__(self) -> FileWriter:
        return self

    def __exit__(self, et: Any, ev: Any, tb: Any) -> None:
        if et is None:
            self.close()
        else:
            self.abort()

    def _add(self, change: Change) -> None:
        self._run.add(change)
        if self._run.count >= SPILL_AT:
            self._writer.flush()
            self._layers.append(write_layer(self.pfs.objects, self._run.sorted_changes()))
            self._run.clear()

    def put_file(self, path: str, data: Iterable[bytes], append: bool = False,
                 datum: str = "") -> None:
        p = clean_path(path)
        if p == "/":
            raise InvalidArgument("cannot put a file at the root path '/': give a file name")
        refs, size = self._writer.write_stream(data)
        cls = AppendFile if append else PutFile
        self._add(cls(p, size, tuple(refs), datum))

    def put_chunks(self, path: str, chunks: Sequence[ChunkRef], size: int,
                   append: bool = False, datum: str = "") -> None:
        """Add a file made of chunks already stored (copy by reference)."""
        p = clean_path(path)
        cls = AppendFile if append else PutFile
        self._add(cls(p, size, tuple(chunks), datum))

    def put_direct(self, path: str, chunks: Sequence[ChunkRef], size: int,
                   new_packs: Mapping[str, int], append: bool = False) -> None:
        """Add a file whose chunks a client stored itself (:mod:`pfs.direct`).

        Checks that the refs add up to ``size`` and that every pack the client
        says it wrote exists and is long enough, then teaches the dedup index
        those chunks. Reads verify every chunk, so a wrong digest cannot
        return wrong bytes.
        """
        if sum(r[1] for r in chunks) != size or any(r[1] <= 0 or r[3] < 0 for r in chunks):
            raise InvalidArgument(
                f"put of {path}: the chunk list does not add up to {size} bytes; "
                "the client sent an inconsistent file (nothing was written)")
        objects = self.pfs.objects
        for pack, length in new_packs.items():
            key = pack_key(pack)
            try:
                have = objects.size(key)
            except ObjectNotFound:
                have = -1
            if have < length:
                raise FailedPrecondition(
                    f"put of {path}: pack {pack} the client wrote is "
                    f"{'missing' if have < 0 else f'{have} bytes, not {length}'} in "
                    f"{objects.describe()}; nothing was written: put the file again")
        ends: dict[str, int] = {}  # pack -> end of the furthest chunk in it
        for r in chunks:
            ends[r[2]] = max(ends.get(r[2], 0), r[3] + r[1])
        for pack, end in ends.items():
            if pack in new_packs:
                have = new_packs[pack]
            else:
                try:
                    have = objects.size(pack_key(pack))
                except ObjectNotFound:
                    have = -1
            if end > have:
                raise FailedPrecondition(
                    f"put of {path}: a chunk lies outside pack {pack} ({end} > {have} bytes); "
                    "nothing was written: put the file again")
        self.pfs.blobs.index.add_many((r[0], r[2], r[3]) for r in chunks if r[2] in new_packs)
        self.put_chunks(path, chunks, size, append=append)

    def delete_file(self, path: str) -> None:
        self._add(DeletePath(clean_dir_path(path)))

    def copy_file(self, src_repo: str, src_ref: str, src_path: str, dst_path: str,
                  append: bool = False) -> None:
        _, tree, e = self.pfs._lookup(src_repo, src_ref, src_path)
        dst = clean_dir_path(dst_path)
        if isinstance(e, FileEntry):
            self.put_chunks(dst, tree.chunks(e), e.size, append=append, datum=e.datum)
            return
        base = e.path.rstrip("/")
        for f in tree.files(e.path):
            rel = f.path[len(base):]
            self.put_chunks((dst.rstrip("/") + rel), tree.chunks(f), f.size, append=append,
                            datum=f.datum)

    def abort(self) -> None:
        self._closed = True
        self._writer.discard()
        self._run.clear()

    def close(self) -> CommitInfo:
        """Make the change visible in one metadata transaction."""
        if self._closed:
            raise FailedPrecondition("this file writer is already closed")
        self._closed = True
        try:
            if self.target is not None:
                return self._close_into_open_commit()
            return self._close_as_new_commit()
        except BaseException:
            self._writer.discard()
            raise

    def _close_into_open_commit(self) -> CommitInfo:
        pfs, t = self.pfs, self.target
        assert t is not None
        if self._run:
            self._layers.append(write_layer(pfs.objects, self._run.sorted_changes()))
            self._run.clear()
        self._writer.flush()
        with pfs._lock:
            kv = pfs.meta.get(keys.commit(self.repo, t.id))
            if kv is None:
                raise CommitNotFound(self.repo, t.id)
            rec: CommitRec = _load(CommitRec, kv.value)
            if rec.finishing is not None:
                raise CommitFinished(self.repo, t.id)
            existing = len(pfs._layer_keys(rec))
            ops: list[Op] = [Put(keys.layer(self.repo, t.id, existing + i), k.encode())
                             for i, k in enumerate(self._layers)]
            rec.layers = existing + len(self._layers)
            ops.append(Put(kv.key, _dump(rec)))
            if not pfs.meta.txn([Compare(kv.key, kv.mod_revision)], ops):
                raise TuskError("the commit changed while writing; retry the command")
            pfs._changed.notify_all()
            return pfs._commit_info(rec)

    def _close_as_new_commit(self) -> CommitInfo:
        pfs = self.pfs
        with pfs._lock:
            b = pfs._get_branch(self.repo, self.branch)
            parent = pfs._get_commit(self.repo, b.head) if b is not None and b.head else None
            if parent is not None and parent.finishing is None:
                raise FailedPrecondition(
                    f"branch {self.repo}@{self.branch} has an open commit now; retry the command")
            now = pfs.clock()
            c = CommitRec(repo=self.repo, id=new_id(), branch=self.branch, origin="USER",
                          parent=parent.id if parent else "", started=now)
            extra = list(self._run.sorted_changes())
            layers: list[Iterable[Change]] = [read_layer(pfs.objects, k) for k in self._layers]
            layers.append(extra)
            base = pfs._base_tree(c)
            tree = tree_apply(self._writer, base, merge_layers(layers))
            self._writer.flush()
            c.tree = ref_to_str(tree.root) if tree.root is not None else ""
            c.size = tree.size()
            c.finishing = c.finished = pfs.clock()
            if b is None:
                b = BranchRec(repo=self.repo, name=self.branch, created=now)
            b.head = c.id
            pfs._commit_txn([c], [b], created_on=b, set_id=c.id)
            return pfs._commit_info(c)


# --- wiring ------------------------------------------------------------------


def open_pfs(data_dir: str, metadata_url: str | None = None,
             storage_url: str | None = None, recover: bool = True,
             wrap_meta: Callable[[MetadataStore], MetadataStore] | None = None) -> PFS:
    """Build a PFS over the given stores (None: the embedded defaults under
    ``data_dir``: SQLite at ``meta.db`` and a local directory ``objects/``).

    ``wrap_meta`` wraps the metadata store before anything uses it (the
    master daemon fences every write with it: ``pfs.metadata_fence``); the
    PFS and everything built on it then write only through the wrapper."""
    from pfs.metadata import open_metadata_store
    from pfs.objects import open_object_store

    os.makedirs(data_dir, exist_ok=True)
    meta = open_metadata_store(metadata_url or os.path.join(data_dir, "meta.db"))
    if wrap_meta is not None:
        meta = wrap_meta(meta)
    objects = open_object_store(storage_url or os.path.join(data_dir, "objects"))
    index = None if (storage_url or "").startswith("memory") else DedupIndex(
        os.path.join(data_dir, "cache", "chunks.db"))
    return PFS(meta, BlobStore(objects, index), recover=recover)


__all__ = ["PFS", "FileWriter", "new_id", "open_pfs", "replace"]
