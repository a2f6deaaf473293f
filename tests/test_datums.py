"""Datum enumeration, IDs and hashes (reference 2.2-2.4, iterator_test.go datum sets)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import blake3
import pytest

from pfs.glob import compile_glob
from pps.datums import Datum, DatumInput, Match, enumerate_datums, expand_key
from pps.errors import MissingInputCommit
from pps.spec import Input, spec_from_dict


class MemorySource:
    """An InputSource over in-memory commits: {repo: {commit: {path: content}}}."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, dict[str, bytes]]] = {}

    def put(self, repo: str, commit: str, files: dict[str, bytes] | Iterable[str]) -> None:
        if not isinstance(files, dict):
            files = {p: p.encode() for p in files}
        self.repos.setdefault(repo, {})[commit] = {"/" + p.lstrip("/"): c for p, c in files.items()}

    def glob(self, repo: str, commit: str, pattern: str) -> Iterable[Match]:
        files = self.repos[repo][commit]
        entries: dict[str, Match] = {}
        for path, content in files.items():
            entries[path] = Match(path, False, blake3.blake3(content).digest(), len(content))
            parts = path.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/" + "/".join(parts[:i])
                entries.setdefault(d, Match(d, True, b"", 0))
        entries["/"] = Match("/", True, b"", 0)
        for d, m in list(entries.items()):
            if m.is_dir:  # Merkle-ish: hash of the subtree's files
                h = blake3.blake3()
                for p in sorted(files):
                    if d == "/" or p.startswith(d + "/"):
                        h.update(p.encode() + entries[p].hash)
                entries[d] = Match(
                    d, True, h.digest(), sum(len(files[p]) for p in files if p.startswith(d))
                )
        g = compile_glob(pattern)
        return [entries[p] for p in sorted(entries) if g.match(p) is not None]


def make_input(d: dict[str, Any]) -> Input:
    """Parse an input tree through the real spec parser (so it is validated too)."""
    return spec_from_dict(
        {"pipeline": {"name": "p"}, "transform": {"cmd": ["x"]}, "input": d}
    ).input


def pfs(name: str, glob: str, repo: str = "repo", **kw: Any) -> dict[str, Any]:
    return {"pfs": {"name": name, "repo": repo, "glob": glob, **kw}}


FOO = [f"foo{i}" for i in range(50)]


@pytest.fixture
def src() -> MemorySource:
    s = MemorySource()
    s.put("repo", "c1", FOO)
    return s


def datums(
    src: MemorySource, d: dict[str, Any], commits: dict[str, str] | None = None
) -> list[Datum]:
    inp = make_input(d)
    if commits is None:
        commits = {leaf.name: "c1" for leaf in inp.leaves()}
    return list(enumerate_datums(inp, commits, src))


def path_sets(ds: list[Datum]) -> set[frozenset[str]]:
    """Datums as sets of paths (iterator_test.go compares these)."""
    out = {frozenset(i.path for i in d.inputs) for d in ds}
    assert len(out) == len(ds), "two datums with the same files"
    return out


def paths(ds: list[Datum]) -> list[tuple[str, ...]]:
    return [tuple(i.path for i in d.inputs) for d in ds]


# --- single pfs inputs (glob table of reference 2.2) -----------------------------------


def test_basic_globs(src: MemorySource) -> None:
    assert paths(datums(src, pfs("in", "/foo?1"))) == [
        ("/foo11",),
        ("/foo21",),
        ("/foo31",),
        ("/foo41",),
    ]
    assert paths(datums(src, pfs("in", "/foo*2"))) == [
        ("/foo12",), ("/foo2",), ("/foo22",), ("/foo32",), ("/foo42",)
    ]  # fmt: skip


def test_zero_datums(src: MemorySource) -> None:
    assert datums(src, pfs("in", "!(**)")) == []


def test_root_glob_is_one_directory_datum(src: MemorySource) -> None:
    (d,) = datums(src, pfs("in", "/"))
    assert d.inputs[0].path == "/" and d.inputs[0].is_dir


def test_directories_are_datums() -> None:
    s = MemorySource()
    s.put(
        "states",
        "c1",
        ["California/LA.json", "California/SF.json", "Colorado/Denver.json", "top.txt"],
    )
    ds = datums(s, pfs("states", "/*", repo="states"))
    assert paths(ds) == [("/California",), ("/Colorado",), ("/top.txt",)]
    assert [i.is_dir for d in ds for i in d.inputs] == [True, True, False]
    assert paths(datums(s, pfs("states", "/C*/*", repo="states"))) == [
        ("/California/LA.json",), ("/California/SF.json",), ("/Colorado/Denver.json",)
    ]  # fmt: skip


# --- exact datum sets of iterator_test.go (reference 2.3) ------------------------------


def test_union(src: MemorySource) -> None:
    ds = datums(src, {"union": [pfs("in1", "/foo?1"), pfs("in2", "/foo*2")]})
    assert len(ds) == 9
    assert path_sets(ds) == {frozenset([p]) for p in
                             ["/foo11", "/foo21", "/foo31", "/foo41",
                              "/foo2", "/foo12", "/foo22", "/foo32", "/foo42"]}  # fmt: skip
    assert [d.inputs[0].name for d in ds] == ["in1"] * 4 + ["in2"] * 5


def test_join(src: MemorySource) -> None:
    ds = datums(
        src,
        {
            "join": [
                pfs("in1", "/foo(?)(?)", join_on="$1$2"),
                pfs("in2", "/foo(?)(?)", join_on="$2$1"),
            ]
        },
    )
    assert len(ds) == 16
    expected = {frozenset([f"/foo{x}{y}", f"/foo{y}{x}"]) for x in range(1, 5) for y in range(1, 5)}
    got = {frozenset(i.path for i in d.inputs) for d in ds}
    assert got == expected
    # every datum has one file from each input, in spec order, with the join key
    for d in ds:
        a, b = d.inputs
        assert (a.name, b.name) == ("in1", "in2")
        assert a.join_on == b.join_on == a.path[-2:]
        assert b.path == "/foo" + a.path[-1] + a.path[-2]


def test_outer_join(src: MemorySource) -> None:
    ds = datums(
        src,
        {"join": [pfs("in1", "/foo1(?)", join_on="$1", outer_join=True),
                  pfs("in2", "/foo(?)1", join_on="$1", outer_join=True)]},
    )  # fmt: skip
    assert len(ds) == 10
    assert path_sets(ds) == {
        frozenset(["/foo10"]),
        frozenset(["/foo11"]),  # /foo11 from both inputs
        frozenset(["/foo12", "/foo21"]),
        frozenset(["/foo13", "/foo31"]),
        frozenset(["/foo14", "/foo41"]),
    } | {frozenset([f"/foo1{i}"]) for i in range(5, 10)}
    assert [len(d.inputs) for d in ds] == [1, 2, 2, 2, 2, 1, 1, 1, 1, 1]
    assert paths(ds)[1] == ("/foo11", "/foo11")


def test_inner_join_drops_unmatched_keys(src: MemorySource) -> None:
    ds = datums(
        src, {"join": [pfs("in1", "/foo1(?)", join_on="$1"), pfs("in2", "/foo(?)1", join_on="$1")]}
    )
    assert paths(ds) == [
        ("/foo11", "/foo11"),
        ("/foo12", "/foo21"),
        ("/foo13", "/foo31"),
        ("/foo14", "/foo41"),
    ]


def test_group(src: MemorySource) -> None:
    ds = datums(src, {"group": [pfs("in", "/foo(?)(?)", group_by="$1")]})
    assert len(ds) == 4
    assert path_sets(ds) == {frozenset(f"/foo{x}{y}" for y in range(10)) for x in range(1, 5)}
    assert all(i.group_by == i.path[4] for d in ds for i in d.inputs)


def test_group_two_inputs(src: MemorySource) -> None:
    ds = datums(
        src,
        {
            "group": [
                pfs("in1", "/foo(?)(?)", group_by="$1"),
                pfs("in2", "/foo(?)(?)", group_by="$2"),
            ]
        },
    )
    assert len(ds) == 10
    by_key = {d.inputs[0].group_by: d for d in ds}
    assert sorted(by_key) == [str(k) for k in range(10)]
    one = by_key["1"]
    assert [(i.name, i.path) for i in one.inputs] == (
        [("in1", f"/foo1{y}") for y in range(10)] + [("in2", f"/foo{x}1") for x in range(1, 5)]
    )
    assert [(i.name, i.path) for i in by_key["0"].inputs] == [
        ("in2", f"/foo{x}0") for x in range(1, 5)
    ]
    for k in "56789":
        assert {i.name for i in by_key[k].inputs} == {"in2"}
        assert len(by_key[k].inputs) == 4


def test_group_of_join(src: MemorySource) -> None:
    ds = datums(
        src,
        {"group": [{"join": [pfs("in1", "/foo(?)(?)", join_on="$1$2", group_by="$1"),
                             pfs("in2", "/foo(?)(?)", join_on="$2$1", group_by="$2")]}]},
    )  # fmt: skip
    assert len(ds) == 4
    for x, d in zip(range(1, 5), ds, strict=True):
        assert len(d.inputs) == 8
        assert {i.path for i in d.inputs if i.name == "in1"} == {f"/foo{x}{y}" for y in range(1, 5)}
        assert {i.path for i in d.inputs if i.name == "in2"} == {f"/foo{y}{x}" for y in range(1, 5)}
        assert [i.name for i in d.inputs] == ["in1"] * 4 + ["in2"] * 4


def test_cross_counts_and_empty_cross(src: MemorySource) -> None:
    ds = datums(src, {"cross": [pfs("in1", "/foo?1"), pfs("in2", "/foo*2")]})
    assert len(ds) == 20
    assert paths(ds)[:2] == [("/foo11", "/foo12"), ("/foo11", "/foo2")]
    assert datums(src, {"cross": [pfs("in1", "/foo?1"), pfs("in2", "!(**)")]}) == []
    nested = {
        "cross": [pfs("in1", "/foo?1"), {"cross": [pfs("in2", "/foo*2"), pfs("in3", "!(**)")]}]
    }
    assert datums(src, nested) == []


def test_nested_combinations(src: MemorySource) -> None:
    union_of_crosses = {
        "union": [
            {"cross": [pfs("a", "/foo?1"), pfs("b", "/foo*2")]},  # 4 x 5
            {"cross": [pfs("a", "/foo1?"), pfs("b", "/foo")]},  # 10 x 0
            {"cross": [pfs("a", "/foo4?"), pfs("b", "/foo3")]},  # 10 x 1
        ]
    }
    assert len(datums(src, union_of_crosses)) == 30
    cross_of_unions = {
        "cross": [
            {"union": [pfs("a", "/foo?1"), pfs("a", "/foo*2")]},  # 9, same name
            {"union": [pfs("b", "/foo1"), pfs("c", "/foo2")]},  # 2
        ]
    }
    ds = datums(src, cross_of_unions)
    assert len(ds) == 18
    assert {tuple(i.name for i in d.inputs) for d in ds} == {("a", "b"), ("a", "c")}
    union_of_group_and_pfs = {
        "union": [{"group": [pfs("g", "/foo(?)(?)", group_by="$1")]}, pfs("p", "/foo?1")]
    }
    assert [len(d.inputs) for d in datums(src, union_of_group_and_pfs)] == [
        10,
        10,
        10,
        10,
        1,
        1,
        1,
        1,
    ]


def test_union_of_the_same_input_twice_yields_each_datum_once(src: MemorySource) -> None:
    assert (
        len(datums(src, {"union": [pfs("in", "/foo?1"), pfs("in", "/foo1?")]})) == 13
    )  # foo11 once


# --- documentation examples -------------------------------------------------------------


@pytest.fixture
def sensors() -> MemorySource:
    s = MemorySource()
    s.put(
        "readings",
        "r1",
        [
            f"ID{n}/file{i}.txt"
            for n, i in zip([1234, 1234, 5678, 5678, 9999], range(1, 6), strict=True)
        ],
    )
    s.put("parameters", "p1", [f"file{i}.txt" for i in range(1, 9)])
    return s


def test_doc_join_readings_parameters(sensors: MemorySource) -> None:
    commits = {"readings": "r1", "parameters": "p1"}
    inner = {"join": [pfs("readings", "/*/(*).txt", repo="readings", join_on="$1"),
                      pfs("parameters", "/(*).txt", repo="parameters", join_on="$1")]}  # fmt: skip
    ds = datums(sensors, inner, commits)
    assert len(ds) == 5
    assert paths(ds)[0] == ("/ID1234/file1.txt", "/file1.txt")
    inner["join"][1]["pfs"]["outer_join"] = True
    ds = datums(sensors, inner, commits)
    assert len(ds) == 8
    assert [tuple(i.name for i in d.inputs) for d in ds][5:] == [("parameters",)] * 3


def test_doc_group_lab_results() -> None:
    s = MemorySource()
    s.put(
        "labs",
        "c1",
        [
            "T1-P1-lab1.txt",
            "T2-P1-lab2.txt",
            "T3-P1-lab3.txt",
            "T1-P2-lab1.txt",
            "T2-P2-lab2.txt",
            "T1-P3-lab1.txt",
        ],
    )
    ds = datums(s, {"group": [pfs("labs", "/*-(*)-lab*.txt", repo="labs", group_by="$1")]})
    assert [len(d.inputs) for d in ds] == [3, 2, 1]
    assert [d.inputs[0].group_by for d in ds] == ["P1", "P2", "P3"]


def test_cron_crossed_with_pfs(src: MemorySource) -> None:
    src.put("p_tick", "t1", ["2024-01-01T00:00:00Z"])
    ds = datums(src, {"cross": [pfs("in", "/foo?1"),
                                {"cron": {"name": "tick", "spec": "@every 1m"}}]},
                {"in": "c1", "tick": "t1"})  # fmt: skip
    assert len(ds) == 4
    assert ds[0].inputs[1].repo == "p_tick" and ds[0].inputs[1].path == "/2024-01-01T00:00:00Z"


def test_join_key_ignores_trailing_slash_of_directories() -> None:
    s = MemorySource()
    s.put("a", "c1", ["x/1", "y/1"])
    s.put("b", "c1", ["x.txt", "y.txt"])
    ds = datums(
        s,
        {
            "join": [
                pfs("a", "/(*)/", repo="a", join_on="$1"),
                pfs("b", "/(*).txt", repo="b", join_on="$1"),
            ]
        },
    )
    assert paths(ds) == [("/x", "/x.txt"), ("/y", "/y.txt")]


# --- identity and hashing (reference 2.4) ---------------------------------------------


def test_datum_id_is_stable_across_commits_and_hash_tracks_content() -> None:
    s = MemorySource()
    s.put("repo", "c1", {"a": b"1", "b": b"2"})
    s.put("repo", "c2", {"a": b"1", "b": b"changed"})
    spec = pfs("in", "/*")
    d1 = {d.inputs[0].path: d for d in datums(s, spec, {"in": "c1"})}
    d2 = {d.inputs[0].path: d for d in datums(s, spec, {"in": "c2"})}
    assert d1["/a"].id == d2["/a"].id and d1["/b"].id == d2["/b"].id
    assert len(d1["/a"].id) == 64
    assert d1["/a"].hash("salt") == d2["/a"].hash("salt")
    assert d1["/b"].hash("salt") != d2["/b"].hash("salt")
    assert d1["/a"].hash("salt") != d1["/a"].hash("other salt")
    assert d1["/a"].inputs[0].commit == "c1" and d2["/a"].inputs[0].commit == "c2"


def test_datum_id_depends_on_name_repo_branch_and_path() -> None:
    base = DatumInput("in", "repo", "master", "c", "/a", False, b"h", 1)
    variants = [
        DatumInput("in2", "repo", "master", "c", "/a", False, b"h", 1),
        DatumInput("in", "repo2", "master", "c", "/a", False, b"h", 1),
        DatumInput("in", "repo", "dev", "c", "/a", False, b"h", 1),
        DatumInput("in", "repo", "master", "c", "/b", False, b"h", 1),
    ]
    ids = {Datum((v,)).id for v in variants} | {Datum((base,)).id}
    assert len(ids) == 5
    # length prefixes: moving a character between fields changes the ID
    assert (
        Datum((DatumInput("ab", "c", "m", "x", "/p", False, b"", 0),)).id
        != Datum((DatumInput("a", "bc", "m", "x", "/p", False, b"", 0),)).id
    )


def test_reference_inputs_are_excluded_from_the_hash() -> None:
    s = MemorySource()
    s.put("data", "c1", {"x": b"1"})
    s.put("data", "c2", {"x": b"2"})
    s.put("model", "m1", {"m": b"v1"})
    spec = {
        "cross": [pfs("data", "/*", repo="data", reference=True), pfs("model", "/", repo="model")]
    }
    (a,) = datums(s, spec, {"data": "c1", "model": "m1"})
    (b,) = datums(s, spec, {"data": "c2", "model": "m1"})
    assert a.id == b.id and a.hash("") == b.hash("")
    assert a.inputs[0].reference


def test_missing_commit(src: MemorySource) -> None:
    with pytest.raises(MissingInputCommit, match='input "in2"'):
        datums(src, {"cross": [pfs("in1", "/foo?1"), pfs("in2", "/foo?2")]}, {"in1": "c1"})


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("$1", "a"),
        ("$2$1", "ba"),
        ("${1}x", "ax"),
        ("$1x", ""),
        ("$$1", "$1"),
        ("$0", "/a/b"),
        ("$9", ""),
        ("k", "k"),
    ],
)
def test_expand_key(template: str, expected: str) -> None:
    assert expand_key(template, "/a/b", ("a", "b")) == expected


# --- scale ------------------------------------------------------------------------------


def test_large_join_is_correct() -> None:
    n = 10_000
    s = MemorySource()
    s.put("left", "c1", [f"l/{i:05d}.txt" for i in range(n)])
    s.put("right", "c1", [f"{i:05d}.json" for i in range(0, 2 * n, 2)])
    spec = {"join": [pfs("left", "/l/(*).txt", repo="left", join_on="$1"),
                     pfs("right", "/(*).json", repo="right", join_on="$1")]}  # fmt: skip
    start = time.perf_counter()
    ds = datums(s, spec, {"left": "c1", "right": "c1"})
    elapsed = time.perf_counter() - start  # reported with -s; never asserted
    print(f"\njoin of {n} x {n} files -> {len(ds)} datums in {elapsed:.3f}s (incl. in-memory glob)")
    assert len(ds) == n // 2
    assert len({d.id for d in ds}) == n // 2
    assert paths(ds)[0] == ("/l/00000.txt", "/00000.json")
