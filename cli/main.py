"""``tusk <verb> <noun> [args]``: pachctl's grammar over ``tusk.client``.

This module builds the argument parser, runs the chosen command, and is the
ONE place where errors become messages and exit codes:

====  ======================================================================
code  meaning
====  ======================================================================
0     success (also: Ctrl-C on ``subscribe commit``; output pipe closed early)
1     the request failed: not found, already exists, invalid argument,
      failed precondition, ... (every ``TuskError`` but ``Unavailable``),
      or a local problem (a source file is missing)
2     usage error: unknown command or flag, malformed reference,
      conflicting flags (``-o`` without ``--raw``)
3     a service is unavailable: the daemon (or its storage) cannot be reached
130   interrupted (Ctrl-C)
====  ======================================================================

Every error is printed as one line, ``error: <message>``, on stderr; the
messages say how to fix the problem.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, NoReturn

from cli import file_cmds, pfs_cmds, pps_cmds, txn_cmds
from cli.common import CLIError, Context, UsageError, api_errors
from cli.refs import RefError, pipeline_name, set_project

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130

ADDRESS_ENV = "TUSK_ADDRESS"

VERBS = (
    ("create", "create a repo or branch"),
    ("update", "update a repo"),
    ("list", "list repos, branches, commits or files"),
    ("inspect", "show details of a repo, branch, commit or file"),
    ("delete", "delete a repo, branch, commit or file"),
    ("squash", "fold a commit into its children"),
    ("find", "find the commits that changed a file"),
    ("start", "start a commit"),
    ("finish", "finish a commit"),
    ("wait", "wait for a commit to finish"),
    ("subscribe", "follow the commits of a branch"),
    ("put", "put files into a repo"),
    ("get", "get files out of a repo"),
    ("glob", "list files matching a glob pattern"),
    ("diff", "compare files between commits"),
    ("copy", "copy files between commits"),
)

PROJECT_ENV = "TUSK_PROJECT"

#: Commands that join the active transaction (queued, run at its finish).
QUEUED = {("create", "repo"), ("update", "repo"), ("delete", "repo"), ("create", "branch"),
          ("delete", "branch"), ("start", "commit"), ("finish", "commit"), ("squash", "commit"),
          ("create", "pipeline"), ("update", "pipeline"), ("edit", "pipeline")}

START_DAEMON_HINT = (
    "start one with `tusk daemon --data-dir DIR`, "
    f"or point the CLI at a running one with --address HOST:PORT or ${ADDRESS_ENV}"
)


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors go through :func:`main`'s error handling."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _version() -> str:
    from importlib import metadata  # ~15 ms: only `tusk version` pays it

    try:
        return metadata.version("tusk")
    except metadata.PackageNotFoundError:
        return "unknown"


def run_version(ctx: Context, args: argparse.Namespace) -> int:
    """``tusk version``: the CLI's version (the API has no version call yet)."""
    print(f"{'COMPONENT':<12}VERSION")
    print(f"{'tusk':<12}{_version()}")
    return EXIT_OK


def run_completion(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``tusk completion bash|zsh``."""
    from cli.completion import bash_script, zsh_script

    sys.stdout.write(bash_script(parser) if args.shell == "bash" else zsh_script(parser))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree: ``tusk [--address A] <verb> <noun> [args]``."""
    parser = _Parser(
        prog="tusk",
        description=("Versioned data and pipelines "
                     "(pachctl's commands: replace `pachctl` with `tusk`)."),
    )
    parser.add_argument(
        "--address",
        default=None,
        metavar="HOST:PORT",
        help=f"the daemon's address (default: ${ADDRESS_ENV}, else the client's default)",
    )
    parser.add_argument(
        "--project",
        default=None,
        metavar="PROJECT",
        help="the project of repo and pipeline names given without one "
             "(default: $TUSK_PROJECT, else default); PROJECT/NAME names another",
    )
    sub = parser.add_subparsers(dest="verb", metavar="<verb>", parser_class=_Parser)
    verbs: dict[str, Any] = {}
    for verb, help in VERBS:
        vp = sub.add_parser(verb, help=help, description=help)
        verbs[verb] = vp.add_subparsers(dest="noun", metavar="<noun>", parser_class=_Parser)
        vp.set_defaults(verb_parser=vp)
    pfs_cmds.register(verbs)
    file_cmds.register(verbs)
    pps_cmds.register(verbs, sub)

    def verb_nouns(name: str) -> Any:
        if name not in verbs:
            vp = sub.add_parser(name, help=f"{name} a transaction",
                                description=f"{name} a transaction")
            verbs[name] = vp.add_subparsers(dest="noun", metavar="<noun>", parser_class=_Parser)
            vp.set_defaults(verb_parser=vp)
        return verbs[name]

    txn_cmds.register(verbs, verb_nouns)
    vp = sub.add_parser("completion", help="print a shell completion script",
                        description="print a completion script: source <(tusk completion bash)")
    vp.add_argument("shell", choices=("bash", "zsh"))
    vp.set_defaults(run=lambda ctx, args: run_completion(parser, args))
    vp = sub.add_parser("version", help="print the version")
    vp.add_argument("--client-only", action="store_true", help="accepted for pachctl compatibility")
    vp.set_defaults(run=run_version)
    return parser


def _fail(code: int, message: str) -> int:
    # One line, always: scripts grep it, users read it.
    message = " ".join(str(message).split("\n")).strip() or "unknown error"
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        pass
    print(f"error: {message}", file=sys.stderr)
    return code


def _unavailable_message(err: Exception) -> str:
    msg = str(err)
    if "tusk daemon" not in msg:
        msg = f"{msg} ({START_DAEMON_HINT})"
    return msg


def main(argv: list[str]) -> int:
    """Run one CLI command; returns its exit code (see the module's table)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        return _fail(EXIT_USAGE, str(e))
    run = getattr(args, "run", None)
    if run is None:
        # `tusk` or `tusk list`: show the relevant help rather than fail silently.
        (getattr(args, "verb_parser", None) or parser).print_help(sys.stderr)
        return EXIT_USAGE
    # Only the CLI reads the environment; the client takes an explicit address.
    ctx = Context(address=args.address or os.environ.get(ADDRESS_ENV) or None)
    try:
        ctx.transaction = txn_cmds.active_transaction()
        set_project(args.project or os.environ.get(PROJECT_ENV) or None)
        if isinstance(getattr(args, "pipeline", None), str):
            args.pipeline = pipeline_name(args.pipeline)
    except CLIError as e:
        return _fail(EXIT_ERROR, str(e))
    except RefError as e:
        return _fail(EXIT_USAGE, str(e))

    errors = api_errors()
    TuskError, Unavailable = errors.TuskError, errors.Unavailable

    try:
        code = int(run(ctx, args))
        if (ctx.transaction and (args.verb, getattr(args, "noun", None)) in QUEUED
                and not getattr(args, "dry_run", False)):
            print(f"queued in transaction {ctx.transaction}: it runs at "
                  "`tusk finish transaction`", file=sys.stderr)
        return code
    except (UsageError, RefError) as e:
        return _fail(EXIT_USAGE, str(e))
    except Unavailable as e:
        return _fail(EXIT_UNAVAILABLE, _unavailable_message(e))
    except TuskError as e:
        return _fail(EXIT_ERROR, str(e))
    except CLIError as e:
        return _fail(EXIT_ERROR, str(e))
    except OSError as e:
        if isinstance(e, BrokenPipeError):
            # The reader (`| head`) went away: stop quietly, and keep Python
            # from complaining again when it flushes stdout at exit.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return EXIT_OK
        where = f"{e.filename}: " if e.filename else ""
        return _fail(EXIT_ERROR, f"{where}{e.strerror or e}")
    except KeyboardInterrupt:
        return _fail(EXIT_INTERRUPTED, "interrupted")
    finally:
        ctx.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
