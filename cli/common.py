"""What every command module shares: the per-invocation context and flag helpers.

Command functions have the signature ``run(ctx, args) -> int``. They stay thin:
parse the user's references, make one or a few client calls, print. They
raise errors and never print them; :func:`cli.main.main` maps every error to a
message and an exit code in one place.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cli.output import Printer

# An unqualified 32-hex string is a commit set (global) id, as in pachctl.
COMMIT_SET_ID_RE = re.compile(r"^[0-9a-fA-F]{32}$")

# Plural synonyms of nouns (pachctl's TestSynonyms: identical commands).
PLURALS = {"repo": "repos", "branch": "branches", "commit": "commits", "file": "files",
           "project": "projects"}


class CLIError(Exception):
    """A problem found by the CLI itself (a local file is missing, ...); exit code 1."""


class UsageError(Exception):
    """The command line is wrong (conflicting flags, bad reference); exit code 2."""


@dataclass
class Context:
    """Per-invocation state: where the daemon is, and the client once connected.

    The client is created on first use so ``--help`` and usage errors never
    touch the network.
    """

    address: str | None
    #: The transaction supported requests join (``tusk start transaction``).
    transaction: str | None = None
    _client: Any = field(default=None, repr=False)

    def client(self) -> Any:
        """The ``tusk.client.Client`` for this invocation (created lazily)."""
        if self._client is None:
            from tusk.client import Client

            self._client = Client(self.address or None, transaction=self.transaction)
        return self._client

    def close(self) -> None:
        """Release the client's channel, if one was opened."""
        if self._client is not None:
            close = getattr(self._client, "close", None)
            if close is not None:
                close()
            self._client = None


def api_errors() -> Any:
    """The module of the typed errors the client raises (``pfs.errors``).

    Reached through ``tusk.client`` so the CLI depends on the client only (an
    import-linter contract forbids importing ``pfs`` here). Imported lazily:
    loading gRPC is the slowest part of starting the CLI, and ``--help`` and
    usage errors don't need it.
    """
    import tusk.client

    # tusk.client imports pfs.errors as `errors` without re-exporting it.
    return tusk.client.errors  # type: ignore[attr-defined]


Command = Callable[[Context, argparse.Namespace], int]


def add_output_flags(p: argparse.ArgumentParser, timestamps: bool = True) -> None:
    """``--raw``, ``-o/--output json|yaml`` and ``--full-timestamps``."""
    p.add_argument(
        "--raw", action="store_true", help="print the API messages (JSON) instead of a table"
    )
    p.add_argument(
        "-o",
        "--output",
        choices=("json", "yaml"),
        default=None,
        help="format of --raw output (default json)",
    )
    if timestamps:
        p.add_argument("--full-timestamps", action="store_true", help="print absolute timestamps")


def printer(args: argparse.Namespace) -> Printer:
    """The :class:`Printer` the output flags ask for.

    Raises:
        UsageError: ``-o`` without ``--raw`` (pachctl's rule).
    """
    raw = bool(getattr(args, "raw", False))
    fmt = getattr(args, "output", None)
    if fmt is not None and not raw:
        raise UsageError("cannot set --output (-o) without --raw")
    return Printer(
        raw=raw,
        fmt=fmt or "json",
        full_timestamps=bool(getattr(args, "full_timestamps", False)),
    )


def noun_parser(
    verb: Any,
    noun: str,
    run: Command,
    help: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """Add ``<verb> <noun>`` (and its plural synonym) to a verb's subparsers."""
    aliases = [PLURALS[noun]] if noun in PLURALS else []
    p: argparse.ArgumentParser = verb.add_parser(
        noun, aliases=aliases, help=help, description=description or help
    )
    # --address is global, but users put it after the command too; SUPPRESS
    # keeps an absent one from overwriting the global value.
    p.add_argument(
        "--address", default=argparse.SUPPRESS, metavar="HOST:PORT", help="the daemon's address"
    )
    p.add_argument("--project", default=argparse.SUPPRESS, metavar="PROJECT",
                   help="the project of names given without one (default: $TUSK_PROJECT, "
                        "else default)")
    p.set_defaults(run=run)
    return p
