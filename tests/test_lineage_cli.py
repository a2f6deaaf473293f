# ruff: noqa: F811  (pytest fixtures imported from other test modules are parameters here)
"""``tusk inspect file --lineage`` end to end: a real daemon, a two-stage
pipeline in Docker (``tusk/busybox:latest``), every command a ``tusk``
process, and the same tree through the Python client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import Tusk, tusk  # noqa: F401
from tests.test_pps_cli import (  # noqa: F401
    UPPER,
    _name,
    _needs_docker,
    busybox_image,
    create,
    put_files,
    spec,
    wait,
)
from tusk.client import Client

pytestmark = pytest.mark.docker


@pytest.fixture
def two_stages(tusk: Tusk, tmp_path: Path) -> tuple[str, str, str, str]:
    """``data`` -> ``first`` (upper-cases each file) -> ``second`` (copies
    each file with a suffix); returns (data, first, second, data commit)."""
    data, first, second = _name("in"), _name("up"), _name("sfx")
    tusk.ok("create", "repo", data)
    commit = put_files(tusk, data, {"a.txt": b"hello\n", "b.txt": b"world\n"}, tmp_path)
    create(tusk, tmp_path, spec(first, data, UPPER),
           spec(second, first, 'cp "$in" "/pfs/out/$(basename "$in").2"'))
    assert wait(tusk, f"{second}@master")["State"] == "success"
    return data, first, second, commit


def _walk(node: dict) -> list[dict]:
    return [node, *(n for c in node.get("children", []) for n in _walk(c))]


def test_upstream_tree_back_to_the_user_commit(
        tusk: Tusk, two_stages: tuple[str, str, str, str]) -> None:
    data, first, second, commit = two_stages
    out = tusk.ok("inspect", "file", f"{second}@master:/a.txt.2", "--lineage")
    lines = out.splitlines()
    assert lines[0].startswith(f"{second}@") and lines[0].endswith(":/a.txt.2")
    assert lines[1].startswith("  datum ") and f"job {second}@" in lines[1]
    assert lines[2].startswith(f"    in: {first}@") and lines[2].endswith(":/a.txt")
    assert lines[3].startswith("      datum ") and f"job {first}@" in lines[3]
    assert lines[4] == f"        in: {data}@{commit}:/a.txt  (user data)"
    assert len(lines) == 5

    raw = json.loads(tusk.ok("inspect", "file", f"{second}@master:/a.txt.2", "--lineage",
                             "--raw"))
    assert raw.get("direction", "UPSTREAM") == "UPSTREAM" and raw["nodes"] == "5"
    nodes = _walk(raw["root"])
    datums = [n["datum"] for n in nodes if "datum" in n]
    assert [d["datum"]["job"]["pipeline"]["name"] for d in datums] == [second, first]
    assert all(d["state"] == "SUCCESS" for d in datums)
    # The datums' inputs are in the raw tree: each datum node's children.
    leaf = nodes[-1]["file"]
    assert leaf["file"]["commit"] == {"repo": data, "id": commit}
    assert leaf["file"]["path"] == "/a.txt" and leaf["user_data"] and leaf["input"] == "in"


def test_inspect_file_raw_includes_the_datum_inputs(
        tusk: Tusk, two_stages: tuple[str, str, str, str]) -> None:
    _, first, second, _ = two_stages
    raw = json.loads(tusk.ok("inspect", "file", f"{second}@master:/a.txt.2", "--raw"))
    assert raw["file"]["path"] == "/a.txt.2" and raw["datum"]
    [inp] = raw["datum_inputs"]
    assert (inp["input"], inp["repo"], inp["path"]) == ("in", first, "/a.txt")


def test_downstream_tree_from_an_input_file(
        tusk: Tusk, two_stages: tuple[str, str, str, str]) -> None:
    data, first, second, _ = two_stages
    out = tusk.ok("inspect", "file", f"{data}@master:/b.txt", "--downstream")
    lines = out.splitlines()
    assert lines[0].startswith(f"{data}@") and lines[0].endswith(":/b.txt  (user data)")
    assert f"job {first}@" in lines[1]
    assert lines[2].startswith(f"    {first}@") and lines[2].endswith(":/b.txt")
    assert f"job {second}@" in lines[3]
    assert lines[4].startswith(f"        {second}@") and lines[4].endswith(":/b.txt.2")
    assert "a.txt" not in out

    # The same through the Python client, over the whole input directory.
    with Client(tusk.address) as c:
        tree = c.file_lineage(data, "master", "/", downstream=True)
    outputs = sorted(n.file.file.path for n in _nodes(tree.root)
                     if n.WhichOneof("kind") == "file" and n.file.file.commit.repo == second)
    assert outputs == ["/a.txt.2", "/b.txt.2"] and not tree.truncated


def test_limits_and_a_missing_file(tusk: Tusk, two_stages: tuple[str, str, str, str]) -> None:
    data, _, second, _ = two_stages
    out = tusk.ok("inspect", "file", f"{second}@master:/a.txt.2", "--lineage", "--max-depth", "1")
    assert "... (truncated)" in out and data not in out
    assert "(truncated at" in out.splitlines()[-1]
    err = tusk.fails("inspect", "file", f"{second}@master:/nope", "--lineage")
    assert "/nope" in err and "not found" in err


def _nodes(node):  # type: ignore[no-untyped-def]
    yield node
    for c in node.children:
        yield from _nodes(c)
