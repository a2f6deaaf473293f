"""File lineage (``pps.lineage``) over in-memory stores and the fake runner.

The pipelines: ``data`` -> ``a`` (``/*``, copies each file) -> ``b`` (``/*``,
copies each file), and ``a`` -> ``agg`` (``/``, one datum over the whole
directory, writing ``/all``). ``tests/test_lineage_cli.py`` runs the same
kind of DAG in Docker through the CLI.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from pfs.errors import FileNotFound
from pps.lineage import Lineage, LineageNode
from pps.runners import DatumRun
from pps.runners.fake import Act, copy_inputs
from tests.test_controller import Stack, make  # noqa: F401  (the fixture)


def concat_or_copy(datum: DatumRun) -> Act:
    """``agg`` concatenates every file of its input into ``/all``; others copy."""
    if "agg_in" in datum.inputs:
        data = b""
        for root, _, names in sorted(os.walk(datum.inputs["agg_in"])):
            for n in sorted(names):
                with open(os.path.join(root, n), "rb") as f:
                    data += f.read()
        return Act(files={"all": data})
    return copy_inputs(datum)


def dag(make: Callable[..., Stack], files: dict[str, bytes]) -> Stack:  # noqa: F811
    s = make(concat_or_copy)
    s.pfs.create_repo("data")
    s.put("data", files)
    s.pipeline("a", repo="data")
    s.pipeline("b", repo="a")
    s.pps.create_pipeline({"pipeline": {"name": "agg"},
                           "transform": {"image": "test/img:1", "cmd": ["x"]},
                           "input": {"pfs": {"repo": "a", "glob": "/", "name": "agg_in"}}})
    for p in ("a", "b", "agg"):
        s.last_job(p)
    return s


def files(node: LineageNode) -> list[tuple[str, str]]:
    return [(n.file.repo, n.file.path) for n in node.walk() if n.file is not None]


def test_upstream_goes_back_to_the_user_commit(make: Callable[..., Stack]) -> None:  # noqa: F811
    s = dag(make, {"/x.txt": b"x", "/y.txt": b"y"})
    data_commit = s.pfs.inspect_commit("data", "master").id
    res = Lineage(s.pfs, s.pps.jobs).upstream("b", "master", "/x.txt")
    root = res.root
    assert root.file is not None and (root.file.repo, root.file.path) == ("b", "/x.txt")
    [d_b] = root.children
    assert d_b.datum is not None and d_b.datum.pipeline == "b" and d_b.datum.state == "success"
    [f_a] = d_b.children
    assert f_a.file is not None and (f_a.file.repo, f_a.file.path, f_a.file.input) == (
        "a", "/x.txt", "a")
    [d_a] = f_a.children
    [f_data] = d_a.children
    assert f_data.file is not None and f_data.file.user_data
    assert (f_data.file.repo, f_data.file.commit, f_data.file.path) == (
        "data", data_commit, "/x.txt")
    assert not f_data.children and not res.truncated and res.nodes == 5


def test_directory_input_expands_to_every_datum_that_wrote_it(
        make: Callable[..., Stack]) -> None:  # noqa: F811
    s = dag(make, {"/x.txt": b"x", "/y.txt": b"y"})
    res = Lineage(s.pfs, s.pps.jobs).upstream("agg", "master", "/all")
    [d_agg] = res.root.children
    [f_dir] = d_agg.children
    assert f_dir.file is not None and f_dir.file.is_dir and f_dir.file.repo == "a"
    assert len(f_dir.children) == 2  # the datums of a that wrote /x.txt and /y.txt
    assert sorted(p for r, p in files(res.root) if r == "data") == ["/x.txt", "/y.txt"]


def test_downstream_reaches_every_output(make: Callable[..., Stack]) -> None:  # noqa: F811
    s = dag(make, {"/x.txt": b"x", "/y.txt": b"y"})
    res = Lineage(s.pfs, s.pps.jobs).downstream("data", "master", "/x.txt")
    got = files(res.root)
    assert ("a", "/x.txt") in got and ("b", "/x.txt") in got and ("agg", "/all") in got
    assert ("a", "/y.txt") not in got and ("b", "/y.txt") not in got


def test_downstream_after_a_skip_names_the_run_that_wrote_the_output(
        make: Callable[..., Stack]) -> None:  # noqa: F811
    s = dag(make, {"/x.txt": b"x", "/y.txt": b"y"})
    first = s.pfs.inspect_commit("a", "master").id
    s.put("data", {"/y.txt": b"yy"})  # x's datums are skipped in the new jobs
    for p in ("a", "b", "agg"):
        s.last_job(p)
    res = Lineage(s.pfs, s.pps.jobs).downstream("data", "master", "/x.txt")
    datums_of_a = [n.datum for n in res.root.children if n.datum is not None]
    assert [(d.pipeline, d.job) for d in datums_of_a] == [("a", first)]
    up = Lineage(s.pfs, s.pps.jobs).upstream("b", "master", "/x.txt")
    assert any(n.datum is not None and n.datum.job == first for n in up.root.walk())


def test_limits_mark_the_tree_truncated(make: Callable[..., Stack]) -> None:  # noqa: F811
    s = dag(make, {"/x.txt": b"x"})
    deep = Lineage(s.pfs, s.pps.jobs).upstream("b", "master", "/x.txt", max_depth=1)
    assert deep.truncated and not any(n.file and n.file.repo == "data" for n in deep.root.walk())
    assert any(n.truncated for n in deep.root.walk())
    small = Lineage(s.pfs, s.pps.jobs).downstream("data", "master", "/", max_nodes=3)
    assert small.truncated and small.nodes == 3


def test_missing_file_is_file_not_found(make: Callable[..., Stack]) -> None:  # noqa: F811
    s = dag(make, {"/x.txt": b"x"})
    try:
        Lineage(s.pfs, s.pps.jobs).upstream("b", "master", "/nope")
    except FileNotFound:
        pass
    else:
        raise AssertionError("expected FileNotFound")


def test_ten_thousand_files(make: Callable[..., Stack]) -> None:  # noqa: F811
    """A file's lineage in a 10,000-file directory, and the whole directory's
    downstream tree (each job's index is decoded once per query, then looked
    up by datum ID or path: about 0.5 s here, where a scan per file would be
    10^8 comparisons)."""
    s = make(concat_or_copy)
    s.pfs.create_repo("data")
    s.put("data", {f"/f{i:05d}": b"%d" % i for i in range(10_000)})
    s.pipeline("a", repo="data", parallelism_spec={"constant": 4})
    s.last_job("a", timeout=300)
    q = Lineage(s.pfs, s.pps.jobs)
    up = q.upstream("a", "master", "/f09999")
    assert [n.file.path for n in up.root.walk() if n.file is not None] == ["/f09999"] * 2
    down = q.downstream("data", "master", "/", max_nodes=30_000)
    assert down.nodes == 1 + 2 * 10_000 and not down.truncated
