"""Reference parsing and put-file target paths of the CLI (pure functions)."""

from __future__ import annotations

import pytest

from cli import refs
from cli.output import human_duration, human_size, relative_time
from cli.refs import FileRef, RefError

ID = "0123456789abcdef0123456789abcdef"


# --- commits and branches ------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("repo@master", ("repo", "master")),
        (f"repo@{ID}", ("repo", ID)),
        (f"repo@master={ID}", ("repo", f"master={ID}")),
        ("repo@master^", ("repo", "master^")),
        ("repo@master^^", ("repo", "master^^")),
        ("repo@master^3", ("repo", "master^3")),
        ("repo@master~2", ("repo", "master~2")),
        ("repo@master~~", ("repo", "master~~")),
        ("repo@master.1", ("repo", "master.1")),
        ("my-repo_2@dev-x", ("my-repo_2", "dev-x")),
    ],
)
def test_commit_refs_pass_through_verbatim(text: str, expected: tuple[str, str]) -> None:
    assert refs.parse_commit(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "a@@b",
        "repo",
        "repo@",
        "@master",
        "re po@master",
        "repo@master^~",
        "repo@master.x",
        "repo@mas ter",
        "repo@master^-1",
        "repo@master:/x",
    ],
)
def test_malformed_commit_refs_say_the_expected_form(text: str) -> None:
    with pytest.raises(RefError) as e:
        refs.parse_commit(text)
    assert str(e.value) == (f'invalid commit reference "{text}": expected REPO@BRANCH-OR-COMMIT')


def test_repo_ref_is_optional_for_list_commit() -> None:
    assert refs.parse_repo_ref("repo") == ("repo", None)
    assert refs.parse_repo_ref("repo@master^") == ("repo", "master^")
    with pytest.raises(RefError, match="expected REPO"):
        refs.parse_repo_ref("a@@b")


def test_branch_refs_take_plain_names_only() -> None:
    assert refs.parse_branch("repo@dev") == ("repo", "dev")
    for bad in ("repo", "repo@master^", f"repo@master={ID}", "repo@"):
        with pytest.raises(RefError, match="expected REPO@BRANCH"):
            refs.parse_branch(bad)


def test_repo_names() -> None:
    assert refs.check_repo_name("images-2_x") == "images-2_x"
    for bad in ("bad.name", "a/b/c", "/name", "proj/"):
        with pytest.raises(RefError, match="alphanumeric"):
            refs.check_repo_name(bad)


def test_names_take_the_current_project() -> None:
    try:
        assert refs.check_repo_name("lab/images") == "lab/images"
        assert refs.check_repo_name("default/images") == "images"
        refs.set_project("lab")
        assert refs.check_repo_name("images") == "lab/images"
        assert refs.parse_commit("images@master") == ("lab/images", "master")
        assert refs.parse_commit("other/images@master") == ("other/images", "master")
        assert refs.parse_file("images@master:/a").repo == "lab/images"
        assert refs.pipeline_name("edges") == "lab/edges"
        with pytest.raises(RefError, match="project"):
            refs.set_project("bad.project")
    finally:
        refs.set_project(None)
    assert refs.check_repo_name("images") == "images"


# --- files ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("repo@master:/path", FileRef("repo", "master", "/path")),
        ("repo@master:path", FileRef("repo", "master", "/path")),
        ("repo@master:/a/b.txt", FileRef("repo", "master", "/a/b.txt")),
        ("repo@master", FileRef("repo", "master", None)),
        ("repo@master:", FileRef("repo", "master", None)),
        ("repo@master:/", FileRef("repo", "master", "/", trailing_slash=True)),
        ("repo@master:dir/", FileRef("repo", "master", "/dir", trailing_slash=True)),
        ("repo@master^2:/x", FileRef("repo", "master^2", "/x")),
        (f"repo@master={ID}:/x", FileRef("repo", f"master={ID}", "/x")),
        ("repo@master.1:x//y", FileRef("repo", "master.1", "/x/y")),
        # glob characters (including @ and :) belong to the path
        ("repo@master:/dir/*", FileRef("repo", "master", "/dir/*")),
        ("repo@master:/@(a|b):c", FileRef("repo", "master", "/@(a|b):c")),
    ],
)
def test_file_refs(text: str, expected: FileRef) -> None:
    assert refs.parse_file(text) == expected


@pytest.mark.parametrize("text", ["a@@b:/x", "repo:/x", "repo", "@m:/x"])
def test_malformed_file_refs(text: str) -> None:
    with pytest.raises(RefError) as e:
        refs.parse_file(text)
    assert "expected REPO@BRANCH-OR-COMMIT[:PATH]" in str(e.value)
    assert text in str(e.value)


def test_put_path_keeps_the_trailing_slash() -> None:
    assert refs.parse_file("r@m:dir/").put_path == "/dir/"
    assert refs.parse_file("r@m:/").put_path == "/"
    assert refs.parse_file("r@m:/a").put_path == "/a"
    assert refs.parse_file("r@m").put_path is None


def test_file_ref_str() -> None:
    assert str(refs.parse_file("r@m:x")) == "r@m:/x"
    assert str(refs.parse_file("r@m")) == "r@m"


# --- put file targets (reference 1.6 / 3.3) -------------------------------------


def test_no_path_puts_the_basename_at_the_root() -> None:
    assert refs.target_path("/abs/nested/dir/testfile.txt", None, 1, False) == "/testfile.txt"
    assert refs.target_path("rel/f.txt", None, 1, False) == "/f.txt"


def test_full_path_keeps_the_source_path() -> None:
    assert (
        refs.target_path("/abs/nested/dir/testfile.txt", None, 1, True)
        == "/abs/nested/dir/testfile.txt"
    )
    assert refs.target_path("./rel/f.txt", None, 1, True) == "/rel/f.txt"


def test_single_source_with_a_path_lands_exactly_there() -> None:
    assert refs.target_path("/tmp/file", "/a/b.txt", 1, False) == "/a/b.txt"


def test_path_ending_in_slash_is_a_directory() -> None:
    assert refs.target_path("/tmp/file", "/dir/", 1, False) == "/dir/file"
    assert refs.target_path("/tmp/file", "/", 1, False) == "/file"


def test_several_sources_use_the_path_as_a_prefix() -> None:
    assert refs.target_path("/tmp/a", "/pre", 2, False) == "/pre/a"
    assert refs.target_path("/tmp/b", "/pre/", 2, False) == "/pre/b"
    assert refs.target_path("/tmp/b", "/pre", 2, True) == "/pre/tmp/b"


def test_stdin_needs_an_exact_path() -> None:
    assert refs.target_path("-", "/file", 1, False) == "/file"
    for path, n in ((None, 1), ("/dir/", 1), ("/", 1), ("/pre", 2)):
        with pytest.raises(RefError, match="must specify filename when reading data from stdin"):
            refs.target_path("-", path, n, False)


def test_unnameable_source_needs_a_path() -> None:
    with pytest.raises(RefError, match="give a target path"):
        refs.target_path(".", None, 1, False)
    assert refs.target_path(".", "/x", 1, False) == "/x"


def test_recursive_dir_contents_go_under_the_target_not_its_name() -> None:
    root = refs.dir_target_root("/tmp/dir", "/", 1, False)
    assert root == "/"
    assert list(refs.dir_targets(root, ["a.txt", "sub/b.txt"])) == [
        ("a.txt", "/a.txt"),
        ("sub/b.txt", "/sub/b.txt"),
    ]
    assert refs.dir_target_root("/tmp/dir/", "/data", 1, False) == "/data"
    assert refs.dir_target_root("/tmp/dir/", "/data/", 1, False) == "/data"


def test_recursive_dir_without_path_keeps_its_name() -> None:
    assert refs.dir_target_root("/tmp/dir", None, 1, False) == "/dir"
    assert refs.dir_target_root("/tmp/dir", None, 1, True) == "/tmp/dir"
    assert refs.dir_target_root("/tmp/dir", "/pre", 2, False) == "/pre/dir"


# --- output values ---------------------------------------------------------------


@pytest.mark.parametrize(
    "n, text",
    [
        (0, "0 B"),
        (512, "512 B"),
        (1229, "1.2 KiB"),
        (1024, "1 KiB"),
        (5 * 1024**2, "5 MiB"),
        (3 * 1024**3 // 2, "1.5 GiB"),
    ],
)
def test_human_size(n: int, text: str) -> None:
    assert human_size(n) == text


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0.2, "Less than a second"),
        (1, "1 second"),
        (5, "5 seconds"),
        (70, "About a minute"),
        (600, "10 minutes"),
        (3600, "About an hour"),
        (5 * 3600, "5 hours"),
        (3 * 86400, "3 days"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_relative_time() -> None:
    assert relative_time(95.0, now=100.0) == "5 seconds ago"
    assert relative_time(None) == "-"
