"""``tusk inspect file --lineage``: a file's lineage as an indented tree.

A thin wrapper over the client's ``file_lineage`` (``pps.lineage`` in the
daemon). Upstream (the default) the tree reads: the file, the datum that
wrote it, that datum's input files (each under its input's name), and so on
back to user data. ``--downstream``: the file, the datums that read it, the
outputs they wrote, and so on. ``--raw`` prints the ``LineageTree`` message.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from cli import refs
from cli.common import Context, printer
from cli.output import enum_name


def add_lineage_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lineage", action="store_true",
                   help="the datum that wrote the file and its input files, transitively "
                        "back to user commits (a tree)")
    p.add_argument("--downstream", action="store_true",
                   help="with --lineage (implied): every output computed from the file, "
                        "through every pipeline below")
    p.add_argument("--max-depth", type=int, default=0, metavar="N",
                   help="pipelines to cross at most (default 32)")
    p.add_argument("--max-nodes", type=int, default=0, metavar="N",
                   help="tree nodes at most (default 10000; cut-off nodes say so)")


def run_file_lineage(ctx: Context, args: argparse.Namespace) -> int:
    p = printer(args)
    fref = refs.parse_file(args.file_ref)
    tree = ctx.client().file_lineage(fref.repo, fref.ref, fref.path or "/",
                                     downstream=args.downstream, max_depth=args.max_depth,
                                     max_nodes=args.max_nodes)
    if p.raw:
        p.message(tree)
        return 0
    for line in tree_lines(tree.root):
        p.out.write(line + "\n")
    if tree.truncated:
        p.out.write(f"(truncated at {tree.nodes} nodes or the depth limit: raise --max-nodes "
                    "or --max-depth, or start from a file further along)\n")
    p.out.flush()
    return 0


def _file_text(f: Any) -> str:
    c = f.file.commit
    text = f"{c.repo}@{c.id}:{f.file.path}"
    if f.input:
        text = f"{f.input}: {text}"
    if f.user_data:
        text += "  (user data)"
    return text


def _datum_text(d: Any) -> str:
    j = d.datum.job
    state = enum_name(d, "state").lower()
    where = f"{j.pipeline.name}@{j.id}" if j.id else "?"
    return f"datum {d.datum.id[:12]}  job {where}  {state}"


def tree_lines(node: Any, depth: int = 0) -> Iterator[str]:
    """The node and its subtree, two spaces of indent per level."""
    kind = node.WhichOneof("kind")
    text = _file_text(node.file) if kind == "file" else _datum_text(node.datum)
    if node.repeated:
        text += "  (shown above)"
    if node.note:
        text += f"  ({node.note})"
    yield "  " * depth + text
    for child in node.children:
        yield from tree_lines(child, depth + 1)
    if node.truncated:
        yield "  " * (depth + 1) + "... (truncated)"


def raw_file_info(fi: Any, datum: Any | None) -> dict[str, Any]:
    """``inspect file --raw``: the FileInfo with, for a file a pipeline wrote,
    its datum's input files under ``datum_inputs``."""
    from cli.output import message_dict

    data = message_dict(fi)
    if datum is not None:
        data["datum_inputs"] = [message_dict(f) for f in datum.files]
    return data
