"""``repo``, ``branch`` and ``commit`` commands: thin wrappers over the client.

Each ``run_*`` function is one pachctl command (pachyderm-reference.md 3.2);
the client method of the same name does the work. Refs are passed to the
server verbatim (``master^2``, ``master.1``, ``branch=id``): it resolves them.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Iterator
from typing import Any

from cli import progress as progress_
from cli import refs
from cli.common import (
    COMMIT_SET_ID_RE,
    Context,
    UsageError,
    add_output_flags,
    api_errors,
    noun_parser,
    printer,
)
from cli.output import Printer, enum_name, human_size, timestamp

# --- rendering ----------------------------------------------------------------

REPO_HEADER = ("NAME", "CREATED", "SIZE (MASTER)", "DESCRIPTION")
BRANCH_HEADER = ("BRANCH", "HEAD")
COMMIT_HEADER = ("REPO", "BRANCH", "COMMIT", "FINISHED", "SIZE", "ORIGIN", "DESCRIPTION")
COMMIT_SET_HEADER = ("ID", "SUBCOMMITS", "PROGRESS", "CREATED", "MODIFIED")


def _commit_str(c: Any) -> str:
    return f"{c.repo}@{c.id}"


def _branch_str(b: Any) -> str:
    return f"{b.repo.name}@{b.name}"


def _finished(ci: Any) -> bool:
    return timestamp(ci, "finished") is not None


def repo_row(p: Printer, ri: Any) -> list[str]:
    return [
        ri.repo.name,
        p.when(timestamp(ri, "created")),
        human_size(ri.size_bytes_upper_bound),
        ri.description,
    ]


def repo_block(p: Printer, ri: Any) -> Iterator[tuple[str, str]]:
    yield "Name", ri.repo.name
    if ri.repo.type and ri.repo.type != "user":
        yield "Type", ri.repo.type
    yield "Description", ri.description
    yield "Created", p.when(timestamp(ri, "created"))
    yield "Size of HEAD on master", human_size(ri.size_bytes_upper_bound)
    if len(ri.branches):
        yield "Branches", ", ".join(b.name for b in ri.branches)


def branch_row(p: Printer, bi: Any) -> list[str]:
    return [bi.branch.name, bi.head.id or "-"]


def branch_block(p: Printer, bi: Any) -> Iterator[tuple[str, str]]:
    yield "Name", _branch_str(bi.branch)
    yield "Head Commit", _commit_str(bi.head) if bi.head.id else "<none>"
    yield "Created", p.when(timestamp(bi, "created"))
    if len(bi.direct_provenance):
        yield "Direct Provenance", ", ".join(_branch_str(b) for b in bi.direct_provenance)
    if len(bi.provenance):
        yield "Provenance", ", ".join(_branch_str(b) for b in bi.provenance)
    if len(bi.subvenance):
        yield "Subvenance", ", ".join(_branch_str(b) for b in bi.subvenance)


def commit_row(p: Printer, ci: Any) -> list[str]:
    done = _finished(ci)
    return [
        ci.commit.repo,
        ci.commit.branch or "-",
        ci.commit.id,
        p.when(timestamp(ci, "finished")) if done else "-",
        human_size(ci.size_bytes_upper_bound) if done else "-",
        enum_name(ci, "origin"),
        ci.description,
    ]


def commit_block(p: Printer, ci: Any) -> Iterator[tuple[str, str]]:
    yield "Commit", _commit_str(ci.commit)
    yield "Original Branch", ci.commit.branch or "-"
    yield "Origin", enum_name(ci, "origin")
    yield "State", enum_name(ci, "state")
    if ci.description:
        yield "Description", ci.description
    yield "Parent", ci.parent_commit.id if ci.HasField("parent_commit") else "<none>"
    if len(ci.child_commits):
        yield "Children", ", ".join(c.id for c in ci.child_commits)
    yield "Started", p.when(timestamp(ci, "started"))
    if ci.HasField("finishing"):
        yield "Finishing", p.when(timestamp(ci, "finishing"))
    yield "Finished", p.when(timestamp(ci, "finished"))
    yield "Size", human_size(ci.size_bytes_upper_bound) if _finished(ci) else "-"
    if ci.error:
        yield "Error", ci.error
    if len(ci.direct_provenance):
        yield "Provenance", ", ".join(_commit_str(c) for c in ci.direct_provenance)
    if len(ci.direct_subvenance):
        yield "Subvenance", ", ".join(_commit_str(c) for c in ci.direct_subvenance)
    for k in sorted(ci.metadata):
        yield f"Metadata {k}", ci.metadata[k]


def commit_set_row(p: Printer, cs: Any) -> list[str]:
    commits = list(cs.commits)
    done = sum(1 for c in commits if _finished(c))
    started = [t for c in commits if (t := timestamp(c, "started")) is not None]
    modified = [
        t
        for c in commits
        for t in (timestamp(c, "started"), timestamp(c, "finished"))
        if t is not None
    ]
    return [
        cs.commit_set.id,
        str(len(commits)),
        f"{done}/{len(commits)}",
        p.when(min(started) if started else None),
        p.when(max(modified) if modified else None),
    ]


def _show(p: Printer, items: Iterable[Any], header: tuple[str, ...], row: Any) -> int:
    p.items(items, header, lambda m: row(p, m))
    return 0


# --- repos --------------------------------------------------------------------


def run_create_repo(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client().create_repo(refs.check_repo_name(args.repo), description=args.description)
    return 0


def run_update_repo(ctx: Context, args: argparse.Namespace) -> int:
    # pachctl's `update repo` is create-or-update; only the description changes.
    ctx.client().create_repo(
        refs.check_repo_name(args.repo), description=args.description, update=True
    )
    return 0


def run_list_repo(ctx: Context, args: argparse.Namespace) -> int:
    p = printer(args)
    if args.all and args.type:
        raise UsageError("cannot set both --all and --type")
    repo_type: str | None = None if args.all else (args.type or "user")
    items = ctx.client().list_repo(type=repo_type, project=refs.current_project(),
                                   all_projects=args.all_projects)
    return _show(p, items, REPO_HEADER, repo_row)


# --- projects ------------------------------------------------------------------

PROJECT_HEADER = ("ACTIVE", "PROJECT", "CREATED", "DESCRIPTION")


def run_create_project(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client().create_project(args.project, description=args.description or "")
    return 0


def run_update_project(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client().create_project(args.project, description=args.description or "", update=True)
    return 0


def run_inspect_project(ctx: Context, args: argparse.Namespace) -> int:
    p = printer(args)

    def lines(m: Any) -> Any:
        yield "Name", m.project.name
        yield "Description", m.description or "-"
        yield "Created", p.when(timestamp(m, "created"))

    p.block(ctx.client().inspect_project(args.project), lines)
    return 0


def run_list_project(ctx: Context, args: argparse.Namespace) -> int:
    p = printer(args)
    active = refs.current_project()
    return _show(p, ctx.client().list_project(), PROJECT_HEADER, lambda p_, m: [
        "*" if m.project.name == active else "", m.project.name,
        p_.when(timestamp(m, "created")), m.description or "-"])


def run_delete_project(ctx: Context, args: argparse.Namespace) -> int:
    ctx.client().delete_project(args.project, force=args.force)
    return 0


def run_inspect_repo(ctx: Context, args: argparse.Namespace) -> int:
    p = printer(args)
    p.block(ctx.client().inspect_repo(refs.check_repo_name(args.repo)), lambda m: repo_block(p, m))
    return 0


def run_delete_repo(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    if args.all == (args.repo is not None):
        raise UsageError("give either a REPO or --all")
    if args.repo is not None:
        client.delete_repo(refs.check_repo_name(args.repo), force=args.force)
        return 0
    # --all: user repos only, as pachctl (spec/meta repos go with their pipelines).
    # Names are collected first: deleting while the listing streams would
    # change what the stream walks over.
    names = [ri.repo.name for ri in client.list_repo(type="user")]
    for name in names:
        client.delete_repo(name, force=args.force)
    return 0


# --- branches -----------------------------------------------------------------


def run_create_branch(ctx: Context, args: argparse.Namespace) -> int:
    repo, branch = refs.parse_branch(args.branch)
    head: str | None = None
    if args.head:
        # --head takes a ref in the same repo, or repo@ref naming that repo.
        if "@" in args.head:
            head_repo, head = refs.parse_commit(args.head)
            if head_repo != repo:
                raise UsageError(
                    f"--head {args.head} is in repo {head_repo}, but the branch is in {repo}: "
                    "a branch's head must be a commit of its own repo"
                )
        else:
            refs.parse_commit(f"{repo}@{args.head}")  # shape check only
            head = args.head
    provenance = [refs.parse_branch(b) for b in args.provenance]
    ctx.client().create_branch(repo, branch, head=head, provenance=provenance)
    return 0


def run_list_branch(ctx: Context, args: argparse.Namespace) -> int:
    p = printer(args)
    repo = refs.check_repo_name(args.repo)
    return _show(p, ctx.client().list_branch(repo), BRANCH_HEADER, branch_row)


def run_inspect_branch(ctx: Context, args: argparse.Namespace) -> int:
    p = printer(args)
    repo, branch = refs.parse_branch(args.branch)
    p.block(ctx.client().inspect_branch(repo, branch), lambda m: branch_block(p, m))
    return 0


def run_delete_branch(ctx: Context, args: argparse.Namespace) -> int:
    repo, branch = refs.parse_branch(args.branch)
    ctx.client().delete_branch(repo, branch, force=args.force)
    return 0


# --- commits ------------------------------------------------------------------


def run_start_commit(ctx: Context, args: argparse.Namespace) -> int:
    repo, branch = refs.parse_branch(args.branch)
    parent = args.parent
    if parent is not None and "@" in parent:
        parent_repo, parent = refs.parse_commit(parent)
        if parent_repo != repo:
            raise UsageError(f"--parent {args.parent} must be a commit of repo {repo}")
    ci = ctx.client().start_commit(repo, branch, parent=parent, description=args.message or "")
    # Only the id, so scripts can do `c=$(tusk start commit repo@master)`.
    print(ci.commit.id, flush=True)
    return 0


def run_finish_commit(ctx: Context, args: argparse.Namespace) -> int:
    repo, ref = refs.parse_commit(args.commit)
    ctx.client().finish_commit(repo, ref, description=args.message, force=args.force)
    return 0


def _origin(args: argparse.Namespace) -> str | None:
    if args.all and args.origin:
        raise UsageError("cannot set both --all and --origin")
    return str(args.origin).upper() if args.origin else None


def run_list_commit(ctx: Context, args: argparse.Namespace) -> int:
    p = printer(args)
    if args.number < 0:
        raise UsageError("--number must be >= 0")
    origin = _origin(args)
    client = ctx.client()
    if args.target is None:
        return _show(
            p, client.list_commit_set(number=args.number), COMMIT_SET_HEADER, commit_set_row
        )
    if "@" not in args.target and COMMIT_SET_ID_RE.match(args.target):
        # `list commit <id>`: the commits of one commit set (global id).
        return _show(p, client.inspect_commit_set(args.target), COMMIT_HEADER, commit_row)
    repo, ref = refs.parse_repo_ref(args.target)
    items = client.list_commit(repo, ref, number=args.number, origin=origin)
    return _show(p, items, COMMIT_HEADER, commit_row)


def run_inspect_commit(ctx: Context, args: argparse.Namespace) -> int:
    p = printer(args)
    repo, ref = refs.parse_commit(args.commit)
    p.block(ctx.client().inspect_commit(repo, ref), lambda m: commit_block(p, m))
    return 0


def run_wait_commit(ctx: Context, args: argparse.Namespace) -> int:
    p = printer(args)
    client = ctx.client()
    if "@" not in args.commit and COMMIT_SET_ID_RE.match(args.commit):
        # A commit set: wait for every commit in it.
        return _show(
            p, client.inspect_commit_set(args.commit, wait=True), COMMIT_HEADER, commit_row
        )
    repo, ref = refs.parse_commit(args.commit)
    mode = progress_.choose(args.progress, quiet=p.raw)
    if mode == "off":
        ci = client.inspect_commit(repo, ref, wait="FINISHED")
    else:
        ci = _wait_commit_with_progress(client, repo, ref, mode)
    p.block(ci, lambda m: commit_block(p, m))
    return 0


def _wait_commit_with_progress(client: Any, repo: str, ref: str, mode: progress_.Mode) -> Any:
    """Wait for a commit, showing its job's datums if a pipeline is computing it
    (an output commit shares its job's ID), else a spinner."""
    from cli import pps_cmds

    cid = client.inspect_commit(repo, ref).commit.id
    try:
        client.inspect_job(repo, cid)
    except api_errors().NotFound:  # a user commit (or the job is gone): nothing to count
        with progress_.Spinner(f"wait commit {repo}@{cid}", mode):
            return client.inspect_commit(repo, cid, wait="FINISHED")
    with progress_.Datums(f"{repo}@{cid}", mode) as bar:
        pps_cmds.wait_job_with(client, repo, cid, bar)
    # The job is terminal once its output commit is finished, or about to be.
    return client.inspect_commit(repo, cid, wait="FINISHED")


def run_subscribe_commit(ctx: Context, args: argparse.Namespace) -> int:
    p = printer(args)
    repo, branch = refs.parse_branch(args.branch)
    stream = ctx.client().subscribe_commit(repo, branch, from_commit=args.from_commit, new=args.new)
    try:
        for ci in stream:
            if p.raw:
                p.message(ci)
            else:
                print(ci.commit.id, flush=True)
    except KeyboardInterrupt:
        # Ctrl-C is how a user ends a subscription: not an error.
        cancel = getattr(stream, "cancel", None)
        if cancel is not None:
            cancel()
        return 0
    return 0


def _commit_or_set(text: str) -> tuple[str, str] | None:
    """``REPO@COMMIT`` -> (repo, ref); a bare commit-set ID -> None."""
    if "@" not in text and COMMIT_SET_ID_RE.match(text):
        return None
    return refs.parse_commit(text)


def run_delete_commit(ctx: Context, args: argparse.Namespace) -> int:
    target = _commit_or_set(args.commit)
    if target is None:
        ctx.client().drop_commit_set(args.commit)
    else:
        ctx.client().delete_commit(*target, recursive=args.recursive)
    return 0


def run_find_commit(ctx: Context, args: argparse.Namespace) -> int:
    """``find commit REPO@REF:PATH``: the commits that changed a file, newest first."""
    p = printer(args)
    if args.limit < 0:
        raise UsageError("--limit must be >= 0")
    f = refs.parse_file(args.file)
    items = ctx.client().find_commits(f.repo, f.ref, f.path or "/", limit=args.limit)
    return _show(p, items, COMMIT_HEADER, commit_row)


def run_squash_commit(ctx: Context, args: argparse.Namespace) -> int:
    target = _commit_or_set(args.commit)
    if target is None:
        ctx.client().squash_commit_set(args.commit)
    else:
        ctx.client().squash_commit(*target, recursive=args.recursive)
    return 0


# --- registration -------------------------------------------------------------


def register(verbs: dict[str, Any]) -> None:
    """Add the repo, branch and commit commands to the verbs' subparsers."""
    # repo
    p = noun_parser(verbs["create"], "repo", run_create_repo, "create a new repo")
    p.add_argument("repo", metavar="REPO")
    p.add_argument("-d", "--description", default="", help="a description of the repo")

    p = noun_parser(verbs["update"], "repo", run_update_repo, "update a repo's description")
    p.add_argument("repo", metavar="REPO")
    p.add_argument("-d", "--description", required=True, help="the new description")

    p = noun_parser(verbs["list"], "repo", run_list_repo, "list repos")
    p.add_argument("--all", action="store_true", help="list repos of every type (user, spec, meta)")
    p.add_argument("--type", choices=("user", "spec", "meta"), help="list only repos of this type")
    p.add_argument("-A", "--all-projects", action="store_true",
                   help="list the repos of every project")
    add_output_flags(p)

    for verb, run, help_ in (
        ("create", run_create_project, "create a project (a namespace of repos and pipelines)"),
        ("update", run_update_project, "change a project's description"),
    ):
        p = noun_parser(verbs[verb], "project", run, help_)
        p.add_argument("project", metavar="PROJECT")
        p.add_argument("-d", "--description", help="what the project is for")
    p = noun_parser(verbs["inspect"], "project", run_inspect_project, "show a project")
    p.add_argument("project", metavar="PROJECT")
    add_output_flags(p)
    p = noun_parser(verbs["list"], "project", run_list_project,
                    "list projects (* marks the current one: --project, $TUSK_PROJECT)")
    add_output_flags(p)
    p = noun_parser(verbs["delete"], "project", run_delete_project,
                    "delete a project (one with repos only with --force)")
    p.add_argument("project", metavar="PROJECT")
    p.add_argument("-f", "--force", action="store_true",
                   help="also delete its repos and pipelines")

    p = noun_parser(verbs["inspect"], "repo", run_inspect_repo, "show a repo's details")
    p.add_argument("repo", metavar="REPO")
    add_output_flags(p)

    p = noun_parser(verbs["delete"], "repo", run_delete_repo, "delete a repo")
    p.add_argument("repo", metavar="REPO", nargs="?")
    p.add_argument("--all", action="store_true", help="delete every user repo")
    p.add_argument(
        "-f", "--force", action="store_true", help="delete even if other repos depend on it"
    )

    # branch
    p = noun_parser(
        verbs["create"],
        "branch",
        run_create_branch,
        "create or update a branch",
        "create a branch, or move an existing one (--head) or change its provenance",
    )
    p.add_argument("branch", metavar="REPO@BRANCH")
    p.add_argument("--head", help="the commit or branch the branch points at (a ref in REPO)")
    p.add_argument(
        "-p",
        "--provenance",
        action="append",
        default=[],
        metavar="REPO@BRANCH",
        help="a branch this branch has provenance on (repeatable)",
    )

    p = noun_parser(verbs["list"], "branch", run_list_branch, "list a repo's branches")
    p.add_argument("repo", metavar="REPO")
    add_output_flags(p)

    p = noun_parser(verbs["inspect"], "branch", run_inspect_branch, "show a branch's details")
    p.add_argument("branch", metavar="REPO@BRANCH")
    add_output_flags(p)

    p = noun_parser(verbs["delete"], "branch", run_delete_branch, "delete a branch")
    p.add_argument("branch", metavar="REPO@BRANCH")
    p.add_argument(
        "-f", "--force", action="store_true", help="delete even if other branches depend on it"
    )

    # commit
    p = noun_parser(
        verbs["start"], "commit", run_start_commit, "start a commit on a branch (prints its ID)"
    )
    p.add_argument("branch", metavar="REPO@BRANCH")
    p.add_argument("-m", "--message", "--description", dest="message", help="commit message")
    p.add_argument("-p", "--parent", help="the parent commit (default: the branch's head)")

    p = noun_parser(verbs["finish"], "commit", run_finish_commit, "finish an open commit")
    p.add_argument("commit", metavar="REPO@BRANCH-OR-COMMIT")
    p.add_argument(
        "-m", "--message", "--description", dest="message", help="commit message (replaces it)"
    )
    p.add_argument(
        "-f", "--force", action="store_true", help="finish even a pipeline's output commit"
    )

    p = noun_parser(
        verbs["list"],
        "commit",
        run_list_commit,
        "list commits",
        "list the commits of REPO[@BRANCH], the commits of a commit set ID, "
        "or (no argument) every commit set",
    )
    p.add_argument("target", nargs="?", metavar="REPO[@BRANCH-OR-COMMIT] | ID")
    p.add_argument("-n", "--number", type=int, default=0, help="list at most N commits")
    p.add_argument(
        "--origin",
        type=str.upper,
        choices=("USER", "AUTO", "FSCK"),
        help="only commits of this origin (default: every origin)",
    )
    p.add_argument("--all", action="store_true", help="commits of every origin (the default)")
    add_output_flags(p)

    p = noun_parser(verbs["inspect"], "commit", run_inspect_commit, "show a commit's details")
    p.add_argument("commit", metavar="REPO@BRANCH-OR-COMMIT")
    add_output_flags(p)

    p = noun_parser(
        verbs["wait"], "commit", run_wait_commit, "wait until a commit (or commit set) is finished"
    )
    p.add_argument("commit", metavar="REPO@BRANCH-OR-COMMIT | ID")
    add_output_flags(p)
    progress_.add_progress_flags(
        p, "the datums done of the commit's job (a spinner for a user's commit)")

    p = noun_parser(
        verbs["subscribe"],
        "commit",
        run_subscribe_commit,
        "print the ID of each commit of a branch as it finishes (Ctrl-C to stop)",
    )
    p.add_argument("branch", metavar="REPO@BRANCH")
    p.add_argument("--from", dest="from_commit", help="start after this commit")
    p.add_argument("--new", action="store_true", help="only commits made from now on")
    add_output_flags(p, timestamps=False)

    p = noun_parser(
        verbs["delete"],
        "commit",
        run_delete_commit,
        "delete (drop) a commit that has no children, or every commit of a commit set (ID)",
    )
    p.add_argument("commit", metavar="REPO@COMMIT|ID")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="also the commits computed from it (pipelines' output commits)")

    p = noun_parser(verbs["find"], "commit", run_find_commit,
                    "list the commits that changed a file or directory, newest first")
    p.add_argument("file", metavar="REPO@BRANCH-OR-COMMIT:PATH")
    p.add_argument("--limit", type=int, default=0, help="at most N commits")
    add_output_flags(p)

    p = noun_parser(
        verbs["squash"],
        "commit",
        run_squash_commit,
        "fold a commit into its children (they keep their content), or every commit of a "
        "commit set (ID)",
    )
    p.add_argument("commit", metavar="REPO@COMMIT|ID")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="also the commits computed from it (pipelines' output commits)")
