"""``start|finish|stop|resume|list|inspect|delete transaction``.

As pachctl, the active transaction lives in the CLI's config file, so every
later command of the same user joins it until it is finished or stopped:
``$TUSK_CONFIG`` or ``~/.config/tusk/config.json`` (``{"active_transaction":
ID}``). While one is active, repo, branch, commit and pipeline changes are
queued on the daemon and run together at ``finish transaction``; each such
command prints a line saying so on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from cli.common import CLIError, Context, UsageError, add_output_flags, noun_parser, printer
from cli.output import Printer, timestamp

TXN_HEADER = ("ID", "STARTED", "REQUESTS")


def config_path() -> str:
    return os.environ.get("TUSK_CONFIG") or os.path.join(
        os.path.expanduser("~"), ".config", "tusk", "config.json")


def _load() -> dict[str, Any]:
    try:
        with open(config_path(), encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise CLIError(f"cannot read the CLI config {config_path()}: {e}; fix or delete it") from e
    return data if isinstance(data, dict) else {}


def active_transaction() -> str | None:
    value = _load().get("active_transaction")
    return str(value) if value else None


def _set_active(txn: str | None) -> None:
    data = _load()
    if txn:
        data["active_transaction"] = txn
    else:
        data.pop("active_transaction", None)
    path = config_path()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def _target(args: argparse.Namespace) -> str:
    txn = args.transaction or active_transaction()
    if not txn:
        raise UsageError("no transaction given and none is active "
                         "(start one with `tusk start transaction`)")
    return str(txn)


def _row(p: Printer, t: Any) -> list[str]:
    return [t.transaction.id, p.when(timestamp(t, "started")), str(len(t.requests))]


def run_start_transaction(ctx: Context, args: argparse.Namespace) -> int:
    current = active_transaction()
    if current:
        raise CLIError(f"transaction {current} is already active: finish it "
                       "(`tusk finish transaction`) or stop it (`tusk stop transaction`) first")
    ctx.transaction = None
    info = ctx.client().start_transaction()
    _set_active(info.transaction.id)
    print(info.transaction.id)
    return 0


def run_finish_transaction(ctx: Context, args: argparse.Namespace) -> int:
    txn = _target(args)
    client = ctx.client()
    client.transaction = None
    try:
        info = client.finish_transaction(txn)
    finally:
        if active_transaction() == txn:
            _set_active(None)
    print(f"transaction {txn} finished: {len(info.requests)} request(s) applied"
          + (f", commits in commit set {info.commit_set}"
             if any(r.startswith("StartCommit") for r in info.requests) else ""))
    return 0


def run_stop_transaction(ctx: Context, args: argparse.Namespace) -> int:
    txn = active_transaction()
    if not txn:
        raise UsageError("no transaction is active")
    _set_active(None)
    print(f"transaction {txn} stopped (still open: `tusk resume transaction {txn}`)",
          file=sys.stderr)
    return 0


def run_resume_transaction(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    client.transaction = None
    client.inspect_transaction(args.transaction)  # it must exist
    _set_active(args.transaction)
    return 0


def run_list_transaction(ctx: Context, args: argparse.Namespace) -> int:
    p = printer(args)
    client = ctx.client()
    client.transaction = None
    p.items(client.list_transaction(), TXN_HEADER, lambda t: _row(p, t))
    return 0


def run_inspect_transaction(ctx: Context, args: argparse.Namespace) -> int:
    p = printer(args)
    client = ctx.client()
    client.transaction = None
    info = client.inspect_transaction(_target(args))

    def lines(t: Any) -> Any:
        yield "ID", t.transaction.id
        yield "Started", p.when(timestamp(t, "started"))
        yield "Commit Set", t.commit_set
        yield "Requests", "\n  ".join(t.requests) or "-"

    p.block(info, lines)
    return 0


def run_delete_transaction(ctx: Context, args: argparse.Namespace) -> int:
    txn = _target(args)
    client = ctx.client()
    client.transaction = None
    client.delete_transaction(txn)
    if active_transaction() == txn:
        _set_active(None)
    return 0


def register(verbs: dict[str, Any], verb: Any) -> None:
    """Add the transaction commands (``verb`` creates a missing verb)."""
    for name, run, help_, arg in (
        ("start", run_start_transaction, "start a transaction; later changes are queued in it",
         None),
        ("finish", run_finish_transaction, "run a transaction's queued changes", "?"),
        ("stop", run_stop_transaction, "stop queueing in the active transaction (it stays open)",
         None),
        ("resume", run_resume_transaction, "make a stopped transaction active again", "1"),
        ("list", run_list_transaction, "list open transactions", None),
        ("inspect", run_inspect_transaction, "show a transaction's queued changes", "?"),
        ("delete", run_delete_transaction, "discard a transaction and its queued changes", "?"),
    ):
        p = noun_parser(verb(name), "transaction", run, help_)
        if arg == "?":
            p.add_argument("transaction", nargs="?", metavar="ID",
                           help="the transaction (default: the active one)")
        elif arg == "1":
            p.add_argument("transaction", metavar="ID")
        if name in ("list", "inspect"):
            add_output_flags(p)
