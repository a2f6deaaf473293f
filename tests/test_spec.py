"""Pipeline spec parsing, defaults, validation messages and canonical form (reference 2.1)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from pfs.errors import InvalidArgument
from pps.errors import InvalidSpec
from pps.spec import (
    DEFAULT_IMAGE,
    PipelineSpec,
    format_duration,
    parse_bytes,
    parse_cpu,
    parse_duration,
    parse_spec,
    parse_specs,
    spec_from_dict,
)

MINIMAL = {
    "pipeline": {"name": "wordcount"},
    "transform": {"image": "wordcount-image", "cmd": ["/binary", "/pfs/data", "/pfs/out"]},
    "input": {"pfs": {"repo": "data", "glob": "/*"}},
}


def spec(**overrides: Any) -> dict[str, Any]:
    """MINIMAL with top-level fields replaced (a deep copy, safe to mutate)."""
    d: dict[str, Any] = json.loads(json.dumps(MINIMAL))
    d.update(overrides)
    return d


def invalid(d: Any) -> InvalidSpec:
    with pytest.raises(InvalidSpec) as exc:
        spec_from_dict(d)
    assert isinstance(exc.value, InvalidArgument)
    return exc.value


# --- parsing and defaults ------------------------------------------------------------


def test_minimal_spec_defaults() -> None:
    s = parse_spec(json.dumps(MINIMAL))
    assert s.name == "wordcount"
    assert s.pipeline.project == "default"
    assert s.transform.cmd == ("/binary", "/pfs/data", "/pfs/out")
    pfs = s.input.pfs
    assert pfs is not None
    assert (pfs.name, pfs.repo, pfs.branch, pfs.glob) == ("data", "data", "master", "/*")
    assert s.datum_tries == 3
    assert s.parallelism_spec.constant == 1
    assert s.output_branch == "master"
    assert s.reprocess_spec == "until_success"
    assert s.input.kind == "pfs"


def test_default_image() -> None:
    d = spec(transform={"cmd": ["true"]})
    # No image: the spec keeps "" and the daemon's --default-image applies.
    assert spec_from_dict(d).transform.image == ""
    assert DEFAULT_IMAGE == "ubuntu:20.04"


def test_yaml_spec_and_glob_cleaning() -> None:
    s = parse_spec(
        """
pipeline:
  name: edges
description: A pipeline that performs image edge detection.
transform:
  cmd: [python3, /edges.py]
  image: pachyderm/opencv:1.0
  env: {MODE: fast}
input:
  pfs:
    repo: images
    glob: "*/"
datum_timeout: 1h30m
resource_limits: {cpu: 500m, memory: 1Gi}
"""
    )
    assert s.name == "edges"
    assert s.input.pfs is not None and s.input.pfs.glob == "/*"
    assert s.transform.env == {"MODE": "fast"}
    assert s.datum_timeout == 5400.0
    assert s.resource_limits is not None
    assert s.resource_limits.cpu == 0.5
    assert s.resource_limits.memory == 2**30


def test_several_json_pipelines_back_to_back() -> None:
    a = spec(pipeline={"name": "a"})
    b = spec(pipeline={"name": "b"})
    text = json.dumps(a, indent=2) + "\n" + json.dumps(b)
    assert [s.name for s in parse_specs(text)] == ["a", "b"]


def test_yaml_multi_document_and_list() -> None:
    text = "pipeline: {name: a}\ntransform: {cmd: [x]}\ninput: {pfs: {repo: r, glob: /}}\n---\n"
    text += "- pipeline: {name: b}\n  transform: {cmd: [x]}\n  input: {pfs: {repo: r, glob: /}}\n"
    assert [s.name for s in parse_specs(text)] == ["a", "b"]


def test_error_in_second_pipeline_says_which() -> None:
    text = json.dumps(spec(pipeline={"name": "a"})) + json.dumps(spec(pipeline={"name": "b.c"}))
    with pytest.raises(InvalidSpec) as exc:
        parse_specs(text)
    assert "pipeline 2 of 2" in str(exc.value)
    assert exc.value.path == "pipeline.name"


def test_syntax_errors() -> None:
    with pytest.raises(InvalidSpec, match="cannot parse pipeline spec as JSON"):
        parse_specs('{"pipeline": ')
    with pytest.raises(InvalidSpec, match="cannot parse pipeline spec as YAML"):
        parse_specs("pipeline: [unclosed")
    with pytest.raises(InvalidSpec, match="empty"):
        parse_specs("   ")


def test_cron_defaults() -> None:
    s = spec_from_dict(spec(input={"cron": {"name": "tick", "spec": "@every 10s"}}))
    assert s.input.cron is not None
    assert s.input.cron.repo == "wordcount_tick"
    assert s.input.cron.overwrite is False
    bad = invalid(spec(input={"cron": {"name": "tick", "spec": "not a schedule"}}))
    assert bad.path == "input.cron.spec"


def test_parallelism_zero_means_one_and_datum_tries_zero_means_default() -> None:
    s = spec_from_dict(spec(parallelism_spec={"constant": 0}, datum_tries=0))
    assert s.parallelism_spec.constant == 1
    assert s.datum_tries == 3


def test_kubernetes_only_fields_are_kept() -> None:
    d = spec(pod_patch="[]", tolerations=[])
    d["transform"]["debug"] = True
    s = spec_from_dict(d)
    assert s.extras == {"pod_patch": "[]", "tolerations": []}
    assert s.transform.extras == {"debug": True}
    assert s.to_dict()["pod_patch"] == "[]"


# --- validation messages -------------------------------------------------------------


def test_unknown_field_suggests_the_right_one() -> None:
    d = spec()
    d["transform"]["imag"] = "x"
    e = invalid(d)
    assert str(e) == 'unknown field "transform.imag" (did you mean "transform.image"?)'
    assert e.path == "transform.imag"


def test_unknown_top_level_field() -> None:
    e = invalid(spec(paralelism_spec={"constant": 2}))
    assert str(e) == 'unknown field "paralelism_spec" (did you mean "parallelism_spec"?)'


def test_unsupported_field_is_rejected_not_ignored() -> None:
    e = invalid(spec(spout={}))
    assert "not supported" in str(e) and e.path == "spout"


def test_wrong_type() -> None:
    e = invalid(spec(parallelism_spec={"constant": "two"}))
    assert str(e) == '"parallelism_spec.constant" must be a non-negative integer, got "two"'
    assert invalid(spec(datum_tries=-1)).path == "datum_tries"
    assert "must be a list of strings" in str(invalid(spec(transform={"cmd": "echo hi"})))


def test_missing_required_fields() -> None:
    d = spec()
    del d["pipeline"]
    assert invalid(d).path == "pipeline.name"
    assert invalid(spec(pipeline={})).path == "pipeline.name"
    e = invalid(spec(transform={"image": "x"}))
    assert str(e) == "nothing to run: no transform.cmd"
    d = spec()
    del d["input"]
    assert invalid(d).path == "input"
    e = invalid(spec(input={"pfs": {"repo": "data"}}))
    assert e.path == "input.pfs.glob"
    assert invalid(spec(input={"pfs": {"glob": "/*"}})).path == "input.pfs.repo"


@pytest.mark.parametrize(
    "name", ["/repo", "lenny.123", "lenny:", "lenny,", "lenny#", "-lead", "x" * 64]
)
def test_invalid_pipeline_names(name: str) -> None:
    e = invalid(spec(pipeline={"name": name}))
    assert e.path == "pipeline.name"
    assert f"name ({name}) invalid" in str(e)


@pytest.mark.parametrize("name", ["lenny", "lenny123", "lenny_123", "lenny-123", "x" * 63])
def test_valid_pipeline_names(name: str) -> None:
    assert spec_from_dict(spec(pipeline={"name": name})).name == name


def test_invalid_input_names_and_repos() -> None:
    assert invalid(spec(input={"pfs": {"repo": "a.b", "glob": "/"}})).path == "input.pfs.repo"
    e = invalid(spec(input={"pfs": {"repo": "out", "glob": "/"}}))
    assert e.path == "input.pfs.name"


def test_bad_glob() -> None:
    e = invalid(spec(input={"pfs": {"repo": "data", "glob": "/foo("}}))
    assert e.path == "input.pfs.glob"
    assert 'glob "/foo(" is invalid' in str(e)


def test_input_node_must_have_exactly_one_kind() -> None:
    e = invalid(spec(input={}))
    assert "exactly one of pfs, cross, union, join, group, cron; got none" in str(e)
    e = invalid(
        spec(
            input={
                "pfs": {"repo": "a", "glob": "/"},
                "cross": [{"pfs": {"repo": "b", "glob": "/"}}],
            }
        )
    )
    assert "got pfs and cross" in str(e)
    nested = spec(input={"cross": [{"pfs": {"repo": "a", "glob": "/"}}, {}]})
    assert invalid(nested).path == "input.cross[1]"


def test_duplicate_names_in_cross_and_join() -> None:
    a = {"pfs": {"repo": "a", "glob": "/*"}}
    e = invalid(spec(input={"cross": [a, a]}))
    assert 'name "a" was used more than once' in str(e)
    j = {"pfs": {"repo": "a", "glob": "/(*)", "join_on": "$1"}}
    assert 'name "a" was used more than once' in str(invalid(spec(input={"join": [j, j]})))
    # Union members are alternatives: the same name is fine...
    s = spec_from_dict(spec(input={"union": [a, a]}))
    assert len(s.input.union) == 2
    # ...but not next to a crossed input of the same name.
    assert "more than once" in str(invalid(spec(input={"cross": [{"union": [a, a]}, a]})))


def test_join_needs_join_on_and_group_needs_group_by() -> None:
    a = {"pfs": {"repo": "a", "glob": "/(*)", "join_on": "$1"}}
    b = {"pfs": {"repo": "b", "glob": "/(*)"}}
    e = invalid(spec(input={"join": [a, b]}))
    assert e.path == "input.join[1].pfs.join_on"
    e = invalid(spec(input={"group": [b]}))
    assert e.path == "input.group[0].pfs.group_by"


def test_reprocess_spec_values() -> None:
    assert spec_from_dict(spec(reprocess_spec="every_job")).reprocess_spec == "every_job"
    e = invalid(spec(reprocess_spec="sometimes"))
    assert str(e) == '"reprocess_spec" must be "until_success" or "every_job", got "sometimes"'


def test_bad_duration_and_quantities() -> None:
    assert invalid(spec(datum_timeout="soon")).path == "datum_timeout"
    assert invalid(spec(resource_limits={"memory": "lots"})).path == "resource_limits.memory"
    assert invalid(spec(resource_limits={"cpu": "fast"})).path == "resource_limits.cpu"


# --- value parsers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("5m", 300.0), ("1h30m", 5400.0), ("1.5h", 5400.0), ("300ms", 0.3), ("2", 2.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


@pytest.mark.parametrize(
    ("text", "n"),
    [("64M", 64 * 10**6), ("1Gi", 2**30), ("512MB", 512 * 10**6), ("100", 100), ("1.5Ki", 1536)],
)
def test_parse_bytes(text: str, n: int) -> None:
    assert parse_bytes(text) == n


def test_parse_cpu() -> None:
    assert parse_cpu("0.5") == 0.5
    assert parse_cpu("500m") == 0.5
    assert parse_cpu(2) == 2.0


# --- canonical form ------------------------------------------------------------------

FULL: dict[str, Any] = {
    "pipeline": {"name": "full", "project": "default"},
    "description": "everything",
    "transform": {
        "image": "img",
        "cmd": ["sh"],
        "stdin": ["echo hi"],
        "env": {"A": "1"},
        "err_cmd": ["true"],
        "accept_return_code": [1, 2],
        "user": "root",
        "working_dir": "/w",
    },
    "input": {
        "cross": [
            {"union": [{"pfs": {"repo": "a", "glob": "/*"}},
                       {"pfs": {"repo": "b", "name": "a", "glob": "/"}}]},
            {
                "group": [
                    {
                        "join": [
                            {"pfs": {"repo": "c", "glob": "/(*)", "join_on": "$1", "group_by": "$1",
                                     "outer_join": True}},
                            {"pfs": {"repo": "d", "glob": "/(*)", "join_on": "$1", "group_by": "$1",
                                     "reference": True, "lazy": True, "empty_files": True}},
                        ]
                    }
                ]
            },
            {"cron": {"name": "tick", "spec": "*/5 * * * *", "overwrite": True}},
        ]
    },
    "parallelism_spec": {"constant": 4},
    "resource_limits": {"cpu": 1, "memory": "64M", "gpu": {"type": "nvidia.com/gpu", "number": 1}},
    "resource_requests": {"memory": "1Gi", "disk": "10G"},
    "datum_timeout": "90s",
    "datum_tries": 5,
    "job_timeout": "1h",
    "output_branch": "out-branch",
    "reprocess_spec": "every_job",
    "salt": "abc",
    "autoscaling": True,
    "metadata": {"labels": {"team": "x"}},
}  # fmt: skip


def test_round_trip_is_canonical() -> None:
    s = spec_from_dict(FULL)
    d = s.to_dict()
    json.dumps(d)  # JSON-able
    again = spec_from_dict(d)
    assert again == s
    assert again.to_dict() == d
    assert d["input"]["cross"][2]["cron"]["repo"] == "full_tick"
    assert d["input"]["cross"][0]["union"][0]["pfs"]["project"] == "default"
    assert d["datum_timeout"] == "1m30s"


def test_round_trip_minimal_fills_defaults() -> None:
    d = spec_from_dict(MINIMAL).to_dict()
    assert d["datum_tries"] == 3
    assert d["output_branch"] == "master"
    assert d["parallelism_spec"] == {"constant": 1}
    assert d["input"]["pfs"]["branch"] == "master"
    assert d["transform"]["image"] == "wordcount-image"


def test_spec_hash() -> None:
    a = spec_from_dict(MINIMAL)
    assert a.spec_hash() == spec_from_dict(a.to_dict()).spec_hash()
    assert len(a.spec_hash()) == 32
    assert a.spec_hash() != spec_from_dict(spec(salt="x")).spec_hash()
    assert a.spec_hash() == spec_from_dict(spec(update=True)).spec_hash()
    assert isinstance(a, PipelineSpec)


def test_null_means_unset() -> None:
    s = spec_from_dict(spec(description=None, datum_tries=None, autoscaling=None, salt=None))
    assert (s.description, s.datum_tries, s.autoscaling, s.salt) == ("", 3, False, "")
    assert invalid(spec(transform=None)).path == "transform.cmd"


# --- Pachyderm's JSON spellings ----------------------------------------------------------

CAMEL: dict[str, Any] = {
    "pipeline": {"name": "inner", "project": {"name": "default"}},
    "description": "a join written the way Pachyderm's examples write it",
    "input": {"join": [
        {"pfs": {"repo": "stores", "branch": "master", "glob": "/STOREID(*).txt",
                 "joinOn": "$1", "outerJoin": True}},
        {"pfs": {"repo": "purchases", "glob": "/*_STOREID(*).txt", "joinOn": "$1",
                 "emptyFiles": True}},
    ]},
    "transform": {"cmd": ["sh"], "stdin": ["true"], "acceptReturnCode": ["4", 5],
                  "workingDir": "/app", "errCmd": ["true"]},
    "parallelismSpec": {"constant": "2"},
    "datumTries": "4",
    "datumTimeout": "1m30s",
    "jobTimeout": "1h",
    "reprocessSpec": "every_job",
    "outputBranch": "master",
}


def test_camel_case_fields_mean_the_same_as_snake_case() -> None:
    s = spec_from_dict(CAMEL)
    stores, purchases = (c.pfs for c in s.input.join)
    assert stores is not None and purchases is not None
    assert (stores.join_on, stores.outer_join, purchases.empty_files) == ("$1", True, True)
    assert s.transform.accept_return_code == (4, 5)
    assert (s.transform.working_dir, s.transform.err_cmd) == ("/app", ("true",))
    assert (s.parallelism_spec.constant, s.datum_tries) == (2, 4)
    assert (s.datum_timeout, s.job_timeout, s.reprocess_spec) == (90.0, 3600.0, "every_job")
    # The canonical form is snake_case, so both spellings store the same spec.
    text = json.dumps(CAMEL)
    for camel in ("joinOn", "outerJoin", "emptyFiles", "acceptReturnCode", "workingDir",
                  "errCmd", "parallelismSpec", "datumTries", "datumTimeout", "jobTimeout",
                  "reprocessSpec", "outputBranch"):
        text = text.replace(f'"{camel}"', '"' + re.sub(r"([A-Z])", r"_\1", camel).lower() + '"')
    snake = json.loads(text)
    assert "join_on" in text and "joinOn" not in text
    assert spec_from_dict(snake).to_json() == s.to_json()


@pytest.mark.parametrize("pfs_fields, words", [
    ({"joinOnn": "$1"}, 'unknown field "input.pfs.joinOnn" (did you mean "input.pfs.joinOn"?)'),
    ({"join_onn": "$1"}, 'unknown field "input.pfs.join_onn" (did you mean "input.pfs.join_on"?)'),
    ({"joinOn": "$1", "join_on": "$1"}, 'is set twice, as "joinOn" and "join_on"'),
    ({"project": "bad.name"}, 'input.pfs.project": name (bad.name) invalid'),
])
def test_field_errors_use_the_users_spelling(pfs_fields: dict[str, Any], words: str) -> None:
    raw = {"pipeline": {"name": "p"}, "transform": {"cmd": ["x"]},
           "input": {"pfs": {"repo": "a", "glob": "/*", **pfs_fields}}}
    with pytest.raises(InvalidSpec) as info:
        spec_from_dict(raw)
    assert words in str(info.value)


def test_projects_qualify_repo_and_pipeline_names() -> None:
    s = spec_from_dict({"pipeline": {"name": "edges", "project": {"name": "prod"}},
                        "transform": {"cmd": ["x"]},
                        "input": {"cross": [
                            {"pfs": {"repo": "images", "project": "staging", "glob": "/*"}},
                            {"pfs": {"repo": "labels", "glob": "/"}},
                            {"cron": {"name": "tick", "spec": "@every 1m"}}]}})
    assert s.name == "prod/edges" and s.pipeline.name == "edges"
    images, labels, tick = list(s.input.leaves())
    assert (images.repo, images.name) == ("staging/images", "images")
    assert labels.repo == "prod/labels"  # an input's project defaults to the pipeline's
    assert tick.repo == "prod/edges_tick"
    d = s.to_dict()  # the canonical form keeps names and projects apart
    assert d["input"]["cross"][0]["pfs"]["repo"] == "images"
    assert d["input"]["cross"][0]["pfs"]["project"] == "staging"
    assert spec_from_dict(d).to_json() == s.to_json()


def test_kubernetes_only_fields_are_recorded_with_one_warning_each() -> None:
    s = spec_from_dict({"pipeline": {"name": "p"}, "transform": {"cmd": ["x"]},
                        "input": {"pfs": {"repo": "a", "glob": "/*"}},
                        "podPatch": "[]", "resourceRequests": {"cpu": 1, "memory": "1G"},
                        "schedulingSpec": {"nodeSelector": {"a": "b"}}, "autoscaling": True})
    warned = [w.split('"')[1] for w in s.warnings()]
    assert warned == ["autoscaling", "pod_patch", "resource_requests", "scheduling_spec"]
    assert s.to_dict()["pod_patch"] == "[]"  # recorded as given
    assert spec_from_dict({"pipeline": {"name": "p"}, "transform": {"cmd": ["x"]},
                           "input": {"pfs": {"repo": "a", "glob": "/*"}}}).warnings() == ()
