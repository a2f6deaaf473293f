"""``pfs_v2.API`` (Pachyderm's PFS service) over tusk's own PFS service.

Each call becomes the matching call of :class:`tusk.server.PFSServicer`
with the caller's context (wrapped to speak Pachyderm's error texts), so
validation, errors and transactions are tusk's. What Pachyderm does
differently is done here:

* Answers: ``CreateRepo``, ``CreateBranch``, ``FinishCommit``... return
  ``Empty``; ``StartCommit`` returns a ``Commit``; listings stream one item
  per message.
* ``ModifyFile`` has no end marker: the stream's normal end commits, a
  cancelled or broken stream commits nothing (tusk's ``done`` is sent only
  when the stream ended and the call is still active). ``add_file`` appends,
  so clients overwrite with ``delete_file`` first.
* ``DeleteRepo`` with ``force`` of a missing repo is not an error.
* ``GetFileTAR`` streams a tar of a file, a directory or a glob's matches.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import grpc
from google.protobuf import empty_pb2, wrappers_pb2

from pfs import errors
from tusk.api import pfs_pb2 as t
from tusk.pachyderm import convert as cv
from tusk.pachyderm.context import wrap
from tusk.pachyderm.files import ModifyStream, tar_stream
from tusk.pachyderm_api import pfs_pb2 as p
from tusk.pachyderm_api import pfs_pb2_grpc
from tusk.server import commit_ref

if TYPE_CHECKING:
    from tusk.pachyderm import Core

def _empty() -> empty_pb2.Empty:
    return empty_pb2.Empty()


def _abort(ctx: grpc.ServicerContext, exc: errors.TuskError) -> None:
    """End the call with ``exc``'s status, as tusk's servicers do."""
    from tusk.server import STATUS_BY_CODE

    wrap(ctx).abort(STATUS_BY_CODE.get(exc.code, grpc.StatusCode.INTERNAL), exc.message)


class PFSAdapter(pfs_pb2_grpc.APIServicer):
    """Implements ``pfs_v2.API``; methods not defined here answer UNIMPLEMENTED."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.tusk = core.pfs

    # projects

    def CreateProject(self, req: p.CreateProjectRequest, ctx: grpc.ServicerContext
                      ) -> empty_pb2.Empty:
        self.tusk.CreateProject(t.CreateProjectRequest(
            project=t.Project(name=req.project.name), description=req.description,
            update=req.update), wrap(ctx))
        return _empty()

    def InspectProject(self, req: p.InspectProjectRequest, ctx: grpc.ServicerContext
                       ) -> p.ProjectInfo:
        return cv.to_project_info(self.tusk.InspectProject(
            t.Project(name=cv.project_name(req.project)), wrap(ctx)))

    def InspectProjectV2(self, req: p.InspectProjectV2Request, ctx: grpc.ServicerContext
                         ) -> p.InspectProjectV2Response:
        info = self.InspectProject(p.InspectProjectRequest(project=req.project), ctx)
        return p.InspectProjectV2Response(info=info, defaults_json="{}")

    def ListProject(self, req: p.ListProjectRequest, ctx: grpc.ServicerContext
                    ) -> Iterator[p.ProjectInfo]:
        for pi in self.tusk.ListProject(t.ListProjectRequest(), wrap(ctx)):
            yield cv.to_project_info(pi)

    def DeleteProject(self, req: p.DeleteProjectRequest, ctx: grpc.ServicerContext
                      ) -> empty_pb2.Empty:
        self.tusk.DeleteProject(t.DeleteProjectRequest(
            project=t.Project(name=cv.project_name(req.project)), force=req.force), wrap(ctx))
        return _empty()

    # repos

    def CreateRepo(self, req: p.CreateRepoRequest, ctx: grpc.ServicerContext
                   ) -> empty_pb2.Empty:
        self.tusk.CreateRepo(t.CreateRepoRequest(
            repo=cv.repo(req.repo), description=req.description, update=req.update), wrap(ctx))
        return _empty()

    def InspectRepo(self, req: p.InspectRepoRequest, ctx: grpc.ServicerContext) -> p.RepoInfo:
        return cv.to_repo_info(self.tusk.InspectRepo(
            t.InspectRepoRequest(repo=cv.repo(req.repo)), wrap(ctx)))

    def ListRepo(self, req: p.ListRepoRequest, ctx: grpc.ServicerContext
                 ) -> Iterator[p.RepoInfo]:
        kind = "" if req.type == "all" else req.type
        if not req.projects:
            requests = [t.ListRepoRequest(type=kind, all_projects=True)]
        else:
            requests = [t.ListRepoRequest(type=kind, project=cv.project_name(pr))
                        for pr in req.projects]
        for r in requests:
            for ri in self.tusk.ListRepo(r, wrap(ctx)):
                yield cv.to_repo_info(ri)

    def DeleteRepo(self, req: p.DeleteRepoRequest, ctx: grpc.ServicerContext
                   ) -> p.DeleteRepoResponse:
        name = cv.repo_name(req.repo)
        if req.force and name and not self._repo_exists(name):
            return p.DeleteRepoResponse(deleted=False)
        self.tusk.DeleteRepo(t.DeleteRepoRequest(repo=cv.repo(req.repo), force=req.force),
                             wrap(ctx))
        return p.DeleteRepoResponse(deleted=True)

    def _repo_exists(self, name: str) -> bool:
        try:
            self.tusk.pfs.inspect_repo(name)
        except errors.NotFound:
            return False
        return True

    def DeleteRepos(self, req: p.DeleteReposRequest, ctx: grpc.ServicerContext
                    ) -> p.DeleteReposResponse:
        if req.all:
            repos = list(self.tusk.pfs.list_repo(type="user", project=None))
        elif req.projects:
            repos = [r for pr in req.projects
                     for r in self.tusk.pfs.list_repo(type="user",
                                                      project=cv.project_name(pr))]
        else:
            _abort(ctx, errors.InvalidArgument(
                "DeleteRepos needs projects to delete the repos of, or all"))
            raise AssertionError("unreachable")
        out = p.DeleteReposResponse()
        for name in self._downstream_first([ri.name for ri in repos]):
            self.tusk.DeleteRepo(t.DeleteRepoRequest(repo=t.Repo(name=name),
                                                     force=req.force), wrap(ctx))
            out.repos.append(cv.to_repo(name))
        return out

    def _downstream_first(self, names: list[str]) -> list[str]:
        """``names`` ordered so a repo comes after every repo computed from it."""
        core = self.tusk.pfs
        wanted = set(names)
        subvenance = {n: {b.repo for bi in core.list_branch(n) for b in bi.subvenance}
                      & wanted - {n} for n in names}
        order: list[str] = []
        done: set[str] = set()
        while len(order) < len(names):
            ready = [n for n in names if n not in done and subvenance[n] <= done]
            for n in ready or [n for n in names if n not in done]:  # a cycle cannot happen
                order.append(n)
                done.add(n)
        return order

    def DeleteAll(self, req: empty_pb2.Empty, ctx: grpc.ServicerContext) -> empty_pb2.Empty:
        """Every repo of every project (Pachyderm's PFS DeleteAll; delete the
        pipelines first, with PPS DeleteAll, as Pachyderm's clients do)."""
        self.DeleteRepos(p.DeleteReposRequest(all=True, force=True), ctx)
        return _empty()

    # commits

    def StartCommit(self, req: p.StartCommitRequest, ctx: grpc.ServicerContext) -> p.Commit:
        treq = t.StartCommitRequest(branch=cv.branch(req.branch), description=req.description)
        if req.parent.id or req.parent.branch.name:
            treq.parent.CopyFrom(cv.commit(req.parent))
        ci = self.tusk.StartCommit(treq, wrap(ctx))
        return cv.to_commit(ci.commit, req.branch.repo.type)

    def FinishCommit(self, req: p.FinishCommitRequest, ctx: grpc.ServicerContext
                     ) -> empty_pb2.Empty:
        treq = t.FinishCommitRequest(commit=cv.commit(req.commit), error=req.error,
                                     force=req.force)
        if req.description:
            treq.description = req.description
        self.tusk.FinishCommit(treq, wrap(ctx))
        return _empty()

    def InspectCommit(self, req: p.InspectCommitRequest, ctx: grpc.ServicerContext
                      ) -> p.CommitInfo:
        ci = self.tusk.InspectCommit(t.InspectCommitRequest(
            commit=cv.commit(req.commit), wait=cast(Any, int(req.wait))), wrap(ctx))
        return cv.to_commit_info(ci, req.commit.repo.type or req.commit.branch.repo.type)

    def ListCommit(self, req: p.ListCommitRequest, ctx: grpc.ServicerContext
                   ) -> Iterator[p.CommitInfo]:
        treq = t.ListCommitRequest(repo=cv.repo(req.repo), origin_kind=cast(Any,
                                   int(req.origin_kind)))
        if req.to.id or req.to.branch.name:
            treq.to.CopyFrom(self._in_repo(req.to, req.repo))
        stop = ""
        if req.HasField("from") and (getattr(req, "from").id or getattr(req, "from").branch.name):
            stop = self._resolve(self._in_repo(getattr(req, "from"), req.repo), ctx)
        if not req.reverse and not stop:
            treq.number = req.number
        found: list[p.CommitInfo] = []
        for ci in self.tusk.ListCommit(treq, wrap(ctx)):
            if stop and ci.commit.id == stop:
                break
            found.append(cv.to_commit_info(ci, req.repo.type))
        if req.reverse:
            found.reverse()
        if req.number:
            found = found[:req.number]
        yield from found

    @staticmethod
    def _in_repo(c: p.Commit, repo: p.Repo) -> t.Commit:
        out = cv.commit(c)
        if not out.repo:
            out.repo = cv.repo_name(repo)
        return out

    def _resolve(self, c: t.Commit, ctx: grpc.ServicerContext) -> str:
        return self.tusk.InspectCommit(t.InspectCommitRequest(commit=c), wrap(ctx)).commit.id

    def SubscribeCommit(self, req: p.SubscribeCommitRequest, ctx: grpc.ServicerContext
                        ) -> Iterator[p.CommitInfo]:
        treq = t.SubscribeCommitRequest(repo=cv.repo(req.repo), branch=req.branch,
                                        state=cast(Any, int(req.state)))
        start = getattr(req, "from")
        if start.id or start.branch.name:
            treq.from_commit.CopyFrom(self._in_repo(start, req.repo))
        for ci in self.tusk.SubscribeCommit(treq, wrap(ctx)):
            if req.origin_kind and int(ci.origin) != int(req.origin_kind):
                continue
            yield cv.to_commit_info(ci, req.repo.type)

    def SquashCommit(self, req: p.SquashCommitRequest, ctx: grpc.ServicerContext
                     ) -> p.SquashCommitResponse:
        self.tusk.SquashCommit(t.SquashCommitRequest(commit=cv.commit(req.commit),
                                                     recursive=req.recursive), wrap(ctx))
        return p.SquashCommitResponse()

    def DropCommit(self, req: p.DropCommitRequest, ctx: grpc.ServicerContext
                   ) -> p.DropCommitResponse:
        self.tusk.DropCommit(t.DropCommitRequest(commit=cv.commit(req.commit),
                                                 recursive=req.recursive), wrap(ctx))
        return p.DropCommitResponse()

    def InspectCommitSet(self, req: p.InspectCommitSetRequest, ctx: grpc.ServicerContext
                         ) -> Iterator[p.CommitInfo]:
        for ci in self.tusk.InspectCommitSet(t.InspectCommitSetRequest(
                commit_set=t.CommitSet(id=req.commit_set.id), wait=req.wait), wrap(ctx)):
            yield cv.to_commit_info(ci)

    def ListCommitSet(self, req: p.ListCommitSetRequest, ctx: grpc.ServicerContext
                      ) -> Iterator[p.CommitSetInfo]:
        project = req.project.name
        for cs in self.tusk.ListCommitSet(t.ListCommitSetRequest(), wrap(ctx)):
            commits = [c for c in cs.commits
                       if not project or cv.split(c.commit.repo)[0] == project]
            if commits:
                yield p.CommitSetInfo(commit_set=p.CommitSet(id=cs.commit_set.id),
                                      commits=[cv.to_commit_info(c) for c in commits])

    def SquashCommitSet(self, req: p.SquashCommitSetRequest, ctx: grpc.ServicerContext
                        ) -> empty_pb2.Empty:
        self.tusk.SquashCommitSet(t.CommitSetRequest(
            commit_set=t.CommitSet(id=req.commit_set.id)), wrap(ctx))
        return _empty()

    def DropCommitSet(self, req: p.DropCommitSetRequest, ctx: grpc.ServicerContext
                      ) -> empty_pb2.Empty:
        self.tusk.DropCommitSet(t.CommitSetRequest(
            commit_set=t.CommitSet(id=req.commit_set.id)), wrap(ctx))
        return _empty()

    def FindCommits(self, req: p.FindCommitsRequest, ctx: grpc.ServicerContext
                    ) -> Iterator[p.FindCommitsResponse]:
        searched = 0
        last: t.Commit | None = None
        path = req.file_path or "/"
        # tusk lists the commits that changed the path; Pachyderm also reports
        # how many it looked at and the last one.
        for ci in self.tusk.FindCommits(t.FindCommitsRequest(
                start=cv.commit(req.start), path=path, limit=req.limit), wrap(ctx)):
            searched += 1
            last = ci.commit
            yield p.FindCommitsResponse(found_commit=cv.to_commit(ci.commit),
                                        commits_searched=searched)
        if last is not None:
            yield p.FindCommitsResponse(last_searched_commit=cv.to_commit(last),
                                        commits_searched=searched)

    # branches

    def CreateBranch(self, req: p.CreateBranchRequest, ctx: grpc.ServicerContext
                     ) -> empty_pb2.Empty:
        if req.HasField("trigger") and req.trigger.branch:
            _abort(ctx, errors.InvalidArgument(
                "branch triggers are not supported by tusk yet: move the branch with "
                "CreateBranch(head=...) when the condition holds"))
        treq = t.CreateBranchRequest(branch=cv.branch(req.branch),
                                     provenance=[cv.branch(b) for b in req.provenance])
        if req.head.id or req.head.branch.name:
            treq.head.CopyFrom(self._in_repo(req.head, req.branch.repo))
        self.tusk.CreateBranch(treq, wrap(ctx))
        return _empty()

    def InspectBranch(self, req: p.InspectBranchRequest, ctx: grpc.ServicerContext
                      ) -> p.BranchInfo:
        return cv.to_branch_info(self.tusk.InspectBranch(
            t.InspectBranchRequest(branch=cv.branch(req.branch)), wrap(ctx)))

    def ListBranch(self, req: p.ListBranchRequest, ctx: grpc.ServicerContext
                   ) -> Iterator[p.BranchInfo]:
        infos = [cv.to_branch_info(bi) for bi in self.tusk.ListBranch(
            t.ListBranchRequest(repo=cv.repo(req.repo)), wrap(ctx))]
        if req.reverse:
            infos.reverse()
        yield from infos

    def DeleteBranch(self, req: p.DeleteBranchRequest, ctx: grpc.ServicerContext
                     ) -> empty_pb2.Empty:
        self.tusk.DeleteBranch(t.DeleteBranchRequest(branch=cv.branch(req.branch),
                                                     force=req.force), wrap(ctx))
        return _empty()

    # files

    def ModifyFile(self, requests: Iterator[p.ModifyFileRequest], ctx: grpc.ServicerContext
                   ) -> empty_pb2.Empty:
        self.tusk.ModifyFile(ModifyStream(requests, ctx), wrap(ctx))
        return _empty()

    def GetFile(self, req: p.GetFileRequest, ctx: grpc.ServicerContext
                ) -> Iterator[wrappers_pb2.BytesValue]:
        if req.url:
            _abort(ctx, errors.InvalidArgument(
                "GetFile to a URL (egress of a file) is not supported by tusk yet: "
                "read the file and upload it yourself"))
        yield from self.tusk.GetFile(t.GetFileRequest(file=cv.file(req.file),
                                                      offset=req.offset), wrap(ctx))

    def GetFileTAR(self, req: p.GetFileRequest, ctx: grpc.ServicerContext
                   ) -> Iterator[wrappers_pb2.BytesValue]:
        f = cv.file(req.file)
        try:
            yield from tar_stream(self.tusk.pfs, f.commit.repo, commit_ref(f.commit),
                                   f.path or "/")
        except errors.TuskError as exc:
            _abort(ctx, exc)

    def InspectFile(self, req: p.InspectFileRequest, ctx: grpc.ServicerContext) -> p.FileInfo:
        return cv.to_file_info(self.tusk.InspectFile(
            t.InspectFileRequest(file=cv.file(req.file)), wrap(ctx)))

    def ListFile(self, req: p.ListFileRequest, ctx: grpc.ServicerContext
                 ) -> Iterator[p.FileInfo]:
        batches = self.tusk.ListFile(t.ListFileRequest(file=cv.file(req.file)), wrap(ctx))
        yield from _page(batches, req.pagination_marker.path, req.number, req.reverse)

    def WalkFile(self, req: p.WalkFileRequest, ctx: grpc.ServicerContext
                 ) -> Iterator[p.FileInfo]:
        batches = self.tusk.WalkFile(t.WalkFileRequest(file=cv.file(req.file)), wrap(ctx))
        yield from _page(batches, req.pagination_marker.path, req.number, req.reverse)

    def GlobFile(self, req: p.GlobFileRequest, ctx: grpc.ServicerContext
                 ) -> Iterator[p.FileInfo]:
        batches = self.tusk.GlobFile(t.GlobFileRequest(commit=cv.commit(req.commit),
                                                       pattern=req.pattern), wrap(ctx))
        lower, upper = req.path_range.lower, req.path_range.upper
        for fi in _page(batches, "", 0, False):
            if (lower and fi.file.path < lower) or (upper and fi.file.path >= upper):
                continue
            yield fi

    def DiffFile(self, req: p.DiffFileRequest, ctx: grpc.ServicerContext
                 ) -> Iterator[p.DiffFileResponse]:
        new = cv.file(req.new_file)
        if req.HasField("old_file") and (req.old_file.path or "/") != (new.path or "/"):
            try:
                yield from self._diff_paths(new, req.old_file)
            except errors.TuskError as exc:
                _abort(ctx, exc)
            return
        treq = t.DiffFileRequest(new_file=new, shallow=req.shallow)
        if req.HasField("old_file"):
            old = t.File(path=req.old_file.path)
            if req.old_file.commit.id or req.old_file.commit.branch.name:
                old.commit.CopyFrom(cv.commit(req.old_file.commit))
            treq.old_file.CopyFrom(old)
        for batch in self.tusk.DiffFile(treq, wrap(ctx)):
            for d in batch.diffs:
                out = p.DiffFileResponse()
                if d.HasField("new_file"):
                    out.new_file.CopyFrom(cv.to_file_info(d.new_file))
                if d.HasField("old_file"):
                    out.old_file.CopyFrom(cv.to_file_info(d.old_file))
                yield out

    def _diff_paths(self, new: t.File, old_msg: p.File) -> Iterator[p.DiffFileResponse]:
        """Pachyderm's diff of two different paths: the two path-filtered
        trees compared by absolute path (tusk's own diff compares one path)."""
        old = cv.file(old_msg)
        if not old.commit.repo:
            old.commit.repo = new.commit.repo
        if not (old.commit.id or old.commit.branch):
            parent = self.tusk.pfs.inspect_commit(new.commit.repo, commit_ref(new.commit))
            old.commit.id = parent.parent or ""
        new_infos = self._subtree(new)
        old_infos = self._subtree(old) if (old.commit.id or old.commit.branch) else {}
        for path in sorted(set(new_infos) | set(old_infos)):
            n, o = new_infos.get(path), old_infos.get(path)
            if n is not None and o is not None and n.hash == o.hash:
                continue
            out = p.DiffFileResponse()
            if n is not None:
                out.new_file.CopyFrom(cv.to_file_info(n))
            if o is not None:
                out.old_file.CopyFrom(cv.to_file_info(o))
            yield out

    def _subtree(self, f: t.File) -> dict[str, t.FileInfo]:
        from tusk.server import file_info_msg

        core = self.tusk.pfs
        repo, ref = f.commit.repo, commit_ref(f.commit)
        try:
            top = core.inspect_file(repo, ref, f.path or "/")
        except errors.NotFound:
            return {}
        infos = core.walk_file(repo, ref, top.path) if top.file_type.name == "DIR" else [top]
        return {fi.path: file_info_msg(fi) for fi in infos if fi.file_type.name != "DIR"}

    def Fsck(self, req: p.FsckRequest, ctx: grpc.ServicerContext) -> Iterator[p.FsckResponse]:
        # tusk's commits are checked when written (content addresses, CAS on
        # metadata); there is nothing for a user-triggered check to report.
        return iter(())


def _page(batches: Iterator[t.FileInfoBatch], marker: str, number: int, reverse: bool
          ) -> Iterator[p.FileInfo]:
    """Flatten tusk's batches into Pachyderm's FileInfos, after ``marker``
    (exclusive), at most ``number`` of them, optionally in reverse."""
    infos = (fi for b in batches for fi in b.file_infos)
    if reverse:
        ordered = [fi for fi in infos if not marker or fi.file.path < marker]
        ordered.reverse()
        selected: Iterator[t.FileInfo] = iter(ordered)
    else:
        selected = (fi for fi in infos if not marker or fi.file.path > marker)
    for n, fi in enumerate(selected):
        if number and n >= number:
            return
        yield cv.to_file_info(fi)


def add_to_server(server: grpc.Server, core: Core) -> None:
    pfs_pb2_grpc.add_APIServicer_to_server(  # type: ignore[no-untyped-call]
        PFSAdapter(core), server)


__all__ = ["PFSAdapter", "add_to_server"]
