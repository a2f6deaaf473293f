# ruff: noqa: F811  (pytest fixtures imported from tests.test_cli are parameters here)
"""Projects: namespaces of repos and pipelines, as in Pachyderm 2.5+.

``default`` exists from the start and holds everything made without a project
(including data made before projects existed). A repo of another project is
named ``PROJECT/REPO`` wherever a repo is named, or through ``--project`` /
``TUSK_PROJECT``; pipelines live in ``pipeline.project`` and may read inputs of
other projects (``input.pfs.project``).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from pfs import errors
from pfs.api import PFS
from tests.test_cli import Tusk, _table, tusk  # noqa: F401
from tests.test_pps_cli import IMAGE, busybox_image, put_files  # noqa: F401


def _n(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


# --- the core -------------------------------------------------------------------------


def test_default_project_exists_and_holds_unqualified_repos(pfs: PFS) -> None:
    assert [p.name for p in pfs.list_project()] == ["default"]
    pfs.create_repo("plain")
    assert pfs.inspect_repo("plain").project == "default"
    with pytest.raises(errors.FailedPrecondition, match="default"):
        pfs.delete_project("default")


def test_repos_of_two_projects_are_apart(pfs: PFS) -> None:
    pfs.create_project("lab", "experiments")
    pfs.create_repo("data")
    pfs.create_repo("lab/data")
    for repo, path in (("lab/data", "/x"), ("data", "/y")):
        w = pfs.modify_file(repo, "master")
        w.put_file(path, [repo.encode()])
        w.close()
    assert [f.path for f in pfs.list_file("data", "master")] == ["/y"]
    assert b"".join(pfs.get_file("lab/data", "master", "/x")) == b"lab/data"
    assert {(r.project, r.name) for r in pfs.list_repo(project=None)} == {
        ("default", "data"), ("lab", "lab/data")}
    assert [r.name for r in pfs.list_repo(project="lab")] == ["lab/data"]
    assert [r.name for r in pfs.list_repo(project="default")] == ["data"]
    # A repo named like the project does not see the project's branches.
    pfs.create_repo("lab")
    assert pfs.list_branch("lab") == []
    with pytest.raises(errors.NotFound, match="project nope not found"):
        pfs.create_repo("nope/data")


def test_project_with_repos_needs_force_to_delete(pfs: PFS) -> None:
    pfs.create_project("tmp")
    pfs.create_repo("tmp/a")
    with pytest.raises(errors.FailedPrecondition, match="--force"):
        pfs.delete_project("tmp")
    pfs.delete_project("tmp", force=True)
    with pytest.raises(errors.NotFound):
        pfs.inspect_repo("tmp/a")
    with pytest.raises(errors.NotFound, match="project tmp not found"):
        pfs.inspect_project("tmp")
    with pytest.raises(errors.InvalidArgument):
        pfs.create_project("bad.name")


# --- end to end ---------------------------------------------------------------------------


def _spec_file(tmp: Path, *specs: dict[str, Any]) -> str:
    path = tmp / f"{uuid.uuid4().hex}.json"
    path.write_text("\n".join(json.dumps(s) for s in specs))
    return str(path)


def test_project_commands_and_cross_project_pipeline(busybox_image: str, tusk: Tusk,
                                                     tmp_path: Path) -> None:
    staging, prod = _n("staging"), _n("prod")
    tusk.ok("create", "project", staging, "-d", "raw data")
    tusk.ok("create", "project", prod)
    projects = {row[1] if row[0] in ("*", "") else row[0] for row in
                _table(tusk.ok("list", "project"))}
    assert {"default", staging, prod} <= projects
    assert "raw data" in tusk.ok("inspect", "project", staging)
    tusk.ok("update", "project", staging, "-d", "cleaned data")
    assert "cleaned data" in tusk.ok("inspect", "project", staging)
    assert "already exists" in tusk.fails("create", "project", staging)

    # A repo of another project: PROJECT/REPO, or --project.
    tusk.ok("create", "repo", "images", "--project", staging)
    put_files(tusk, f"{staging}/images", {"a.txt": b"alpha\n"}, tmp_path)
    assert tusk.ok("get", "file", f"{staging}/images@master:/a.txt") == "alpha\n"
    assert tusk.ok("get", "file", "images@master:/a.txt", "--project", staging) == "alpha\n"
    assert "not found" in tusk.fails("inspect", "repo", "images")  # not in default
    assert "project nope" in tusk.fails("create", "repo", "nope/images")
    names = [r[0] for r in _table(tusk.ok("list", "repo", "--project", staging))]
    assert names == [f"{staging}/images"]
    assert f"{staging}/images" in [r[0] for r in _table(tusk.ok("list", "repo", "-A"))]
    assert f"{staging}/images" not in [r[0] for r in _table(tusk.ok("list", "repo"))]

    # A pipeline in one project reading a repo of another.
    spec = {"pipeline": {"name": "edges", "project": {"name": prod}},
            "input": {"pfs": {"repo": "images", "project": staging, "glob": "/*"}},
            "transform": {"image": IMAGE, "cmd": ["sh", "-c",
                          'tr a-z A-Z < "$images" > /pfs/out/$(basename "$images")']}}
    tusk.ok("create", "pipeline", "-f", _spec_file(tmp_path, spec))
    job = tusk.ok("wait", "job", f"{prod}/edges@master")
    assert "State: success" in job
    assert tusk.ok("get", "file", f"{prod}/edges@master:/a.txt") == "ALPHA\n"
    assert [r[0] for r in _table(tusk.ok("list", "pipeline", "--project", prod))] == [
        f"{prod}/edges"]
    assert "not found" in tusk.fails("inspect", "pipeline", "edges")
    assert tusk.ok("inspect", "pipeline", "edges", "--project", prod)

    # A typo in a cross-project name is named in the error.
    bad = dict(spec, pipeline={"name": "edges2", "project": prod},
               input={"pfs": {"repo": "imagez", "project": staging, "glob": "/*"}})
    err = tusk.fails("create", "pipeline", "-f", _spec_file(tmp_path, bad))
    assert f"input repo {staging}/imagez" in err
    bad_project = dict(spec, pipeline={"name": "edges3", "project": "prodd"})
    assert "project prodd not found" in tusk.fails("create", "pipeline", "-f",
                                                   _spec_file(tmp_path, bad_project))

    # A project with repos is deleted only with --force (its pipelines go too).
    assert "--force" in tusk.fails("delete", "project", prod)
    tusk.ok("delete", "project", prod, "--force")
    assert "not found" in tusk.fails("inspect", "pipeline", f"{prod}/edges")
    assert tusk.ok("get", "file", f"{staging}/images@master:/a.txt") == "alpha\n"
