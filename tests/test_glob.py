"""Pachyderm glob semantics (reference 1.6 TestGlobFile, 2.2 capture examples)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfs.errors import InvalidArgument
from pfs.glob import compile_glob


def with_dirs(files: list[str]) -> list[str]:
    """Files plus their implied directories (not the root), as `glob file` sees them."""
    out = set(files)
    for f in files:
        parts = f.strip("/").split("/")
        for i in range(1, len(parts)):
            out.add("/" + "/".join(parts[:i]))
    return sorted(out)


def glob_paths(pattern: str, paths: list[str]) -> list[str]:
    g = compile_glob(pattern)
    return [p for p in paths if g.match(p) is not None]


GLOB_FILE_TREE = with_dirs(
    [f"/file{i}" for i in range(100)]
    + [f"/dir1/file{i}" for i in range(100)]
    + [f"/dir2/dir3/file{i}" for i in range(100)]
)


@pytest.mark.parametrize(
    ("pattern", "count"),
    [("*", 102), ("file*", 100), ("dir1/*", 100), ("dir2/dir3/*", 100), ("*/*", 101)],
)
def test_glob_file_counts(pattern: str, count: int) -> None:
    assert len(glob_paths(pattern, GLOB_FILE_TREE)) == count


def test_glob_file_star_includes_directories() -> None:
    got = glob_paths("*", GLOB_FILE_TREE)
    assert "/dir1" in got and "/dir2" in got


def test_super_star_in_tar_examples() -> None:
    # `**file1?` selects file10..19 at every depth: 30 files (TestGlobFile tar = 30 bytes).
    assert len(glob_paths("**file1?", GLOB_FILE_TREE)) == 30
    assert len(glob_paths("dir2/dir3/file1?", GLOB_FILE_TREE)) == 10


DOC_TREE = with_dirs(
    [
        "/test1.txt",
        "/foo-1/test2.txt",
        "/foo-2/foo-2_1/test3.txt",
        "/foo-2/foo-2_1/anothertest.txt",
        "/foo-2/other.csv",
    ]
)


def test_super_star_doc_example() -> None:
    assert glob_paths("/**test*.txt", DOC_TREE) == [
        "/foo-1/test2.txt",
        "/foo-2/foo-2_1/anothertest.txt",
        "/foo-2/foo-2_1/test3.txt",
        "/test1.txt",
    ]


def test_super_star_matches_every_path_but_not_root() -> None:
    assert glob_paths("/**", DOC_TREE) == DOC_TREE
    assert compile_glob("/**").match("/") is None
    assert compile_glob("/").match("/") == ()
    assert compile_glob("/").match("/a") is None


@pytest.mark.parametrize(
    ("pattern", "path", "groups"),
    [
        ("/(*)", "/foo", ("foo",)),
        ("/*/bar-(*)", "/foo/bar-123", ("123",)),
        ("/(*)/*/(??)*.txt", "/foo/bar-123/ABC.txt", ("foo", "AB")),
        ("/*/(bar-(123))/*", "/foo/bar-123/ABC.txt", ("bar-123", "123")),
    ],
)
def test_capture_groups(pattern: str, path: str, groups: tuple[str, ...]) -> None:
    assert compile_glob(pattern).match(path) == groups


def test_capture_on_directory_path_ignores_trailing_slash() -> None:
    assert compile_glob("/(*)").match("/foo/") == ("foo",)
    assert compile_glob("/(*)/").match("/foo") == ("foo",)


def test_pattern_cleaning() -> None:
    assert compile_glob("*").pattern == "/*"
    assert compile_glob("/*/").pattern == "/*"
    assert compile_glob("//a//b").pattern == "/a/b"
    assert compile_glob("").pattern == "/"
    assert compile_glob("a/*") is compile_glob("a/*")  # cached


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        ("/foo?1", ["/foo11", "/fooa1"], ["/foo1", "/foo/1", "/foo111"]),
        ("/[ab]*", ["/a", "/bcd"], ["/c", "/a/b"]),
        ("/[!ab]*", ["/c"], ["/a", "/"]),
        ("/[a-c]", ["/b"], ["/d", "/"]),
        ("/{x,y}.txt", ["/x.txt", "/y.txt"], ["/z.txt"]),
        ("/!(foo)", ["/bar", "/fo", "/fooo"], ["/foo", "/a/b"]),
        ("/!(foo)*.txt", ["/bar.txt"], ["/foo.txt", "/foo1.txt"]),
        ("!(**)", [], ["/a", "/a/b", "/"]),
        ("/+(ab).c", ["/ab.c", "/abab.c"], ["/.c"]),
        ("/a\\*", ["/a*"], ["/ab"]),
        ("/(a|b)/c", ["/a/c", "/b/c"], ["/c/c"]),
    ],
)
def test_semantics(pattern: str, yes: list[str], no: list[str]) -> None:
    g = compile_glob(pattern)
    for p in yes:
        assert g.match(p) is not None, (pattern, p)
    for p in no:
        assert g.match(p) is None, (pattern, p)


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("/foo(", 'unclosed "("'),
        ("/foo)", 'unmatched ")"'),
        ("/[ab", 'unclosed "["'),
        ("/{a,b", 'unclosed "{"'),
        ("/a}", 'unmatched "}"'),
        ("/a\\", "trailing backslash"),
        ("/[z-a]", "bad range"),
    ],
)
def test_invalid_patterns(pattern: str, problem: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        compile_glob(pattern)
    assert problem in str(exc.value)
    assert pattern.rstrip("/") in str(exc.value)


@pytest.mark.parametrize(
    ("pattern", "dir_path", "expected"),
    [
        ("/dir1/*", "/", True),
        ("/dir1/*", "/dir1", True),
        ("/dir1/*", "/dir2", False),
        ("/dir1/*", "/dir1/x", False),
        ("/*/*", "/dir2", True),
        ("/*/*", "/dir2/dir3", False),
        ("/**", "/a/b/c", True),
        ("/a/**", "/b", False),
        ("/", "/", False),
        ("/{a,b}/c", "/b", True),
        ("/{a,b}/c", "/c", False),
    ],
)
def test_may_match_under(pattern: str, dir_path: str, expected: bool) -> None:
    assert compile_glob(pattern).may_match_under(dir_path) is expected


# --- property: pruning never hides a match -------------------------------------------

TOKENS = [
    "a",
    "b",
    "ab",
    "*",
    "?",
    "**",
    "/",
    "[ab]",
    "[!a]",
    "{a,b}",
    "{a,b/a}",
    "(a*)",
    "(*|b)",
    "!(a)",
]
COMPONENT = st.sampled_from(["a", "b", "ab", "ba", "aa", "b.a"])


@settings(max_examples=300, deadline=None)
@given(
    tokens=st.lists(st.sampled_from(TOKENS), min_size=1, max_size=6),
    paths=st.lists(st.lists(COMPONENT, min_size=1, max_size=4), min_size=1, max_size=20),
)
def test_may_match_under_never_prunes_a_match(tokens: list[str], paths: list[list[str]]) -> None:
    g = compile_glob("/" + "".join(tokens))
    for comps in paths:
        path = "/" + "/".join(comps)
        if g.match(path) is None:
            continue
        for depth in range(len(comps)):
            ancestor = "/" + "/".join(comps[:depth])
            assert g.may_match_under(ancestor), (g.pattern, path, ancestor)


# --- extglob, as documented by ohmyglob (Pachyderm's glob library) ----------------------


@pytest.mark.parametrize(
    ("pattern", "cases"),
    [
        ("@(a)", {"": False, "a": True, "aa": False}),
        ("*(a)", {"": True, "a": True, "aa": True, "aaX": False}),
        ("+(a)", {"": False, "a": True, "aa": True}),
        ("?(a)", {"": True, "a": True, "aa": False}),
        ("!(a)", {"": True, "a": False, "aa": True, "bbb": True}),
    ],
)
def test_extglob_operators(pattern: str, cases: dict[str, bool]) -> None:
    g = compile_glob("/x" + pattern)
    for text, expected in cases.items():
        assert (g.match("/x" + text) is not None) is expected, (pattern, text)


def test_extglob_captures_whole_repetition() -> None:
    assert compile_glob("test/a*(a|b)/*(*).go").match("/test/aaaa/x.go") == ("aaa", "x")


def test_repeated_star_does_not_backtrack_exponentially() -> None:
    # Nested quantifiers would take minutes here; pytest-timeout catches a regression.
    assert compile_glob("/*(*).go").match("/" + "a" * 200 + ".gx") is None
    assert compile_glob("/+(**).go").match("/" + "a/" * 100 + "x.gx") is None
