# ruff: noqa: F811  (pytest fixtures imported from tests.test_cli are parameters here)
"""Pachyderm's pipeline API (``pps_v2``) through Pachyderm's own Python SDK.

A real ``tusk daemon`` serves both APIs on one address: data goes in with
tusk's CLI (so these tests pin only the PPS adapter), pipelines, jobs,
datums, logs and secrets go through ``pachyderm_sdk.Client`` unmodified.
Pipelines run in the Docker runner.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.test_cli import Tusk, tusk  # noqa: F401
from tests.test_pps_cli import IMAGE, busybox_image, put_files  # noqa: F401

pachyderm_sdk = pytest.importorskip("pachyderm_sdk")
from pachyderm_sdk import Client  # noqa: E402
from pachyderm_sdk.api import pfs, pps  # noqa: E402

pytestmark = pytest.mark.docker


def _n(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


@pytest.fixture
def client(tusk: Tusk, busybox_image: str) -> Iterator[Client]:
    host, _, port = tusk.address.rpartition(":")
    c = Client(host=host, port=int(port))
    yield c
    c._channel.close()  # the SDK has no public close


def _pipeline(client: Client, repo: str, stdin: list[str], project: str = "default"
              ) -> pps.Pipeline:
    pipeline = pps.Pipeline(name=_n("p"), project=pfs.Project(name=project))
    client.pps.create_pipeline(
        pipeline=pipeline,
        input=pps.Input(pfs=pps.PfsInput(repo=repo, project=project, glob="/*")),
        transform=pps.Transform(image=IMAGE, cmd=["sh"], stdin=stdin),
    )
    return pipeline


def _file(tusk: Tusk, repo: str, path: str) -> str:
    return tusk.ok("get", "file", f"{repo}@master:{path}")


def test_job_runs_and_is_listed_inspected_and_its_datum_shown(
        tusk: Tusk, client: Client, tmp_path: Path) -> None:
    repo = _n("in")
    tusk.ok("create", "repo", repo)
    pipeline = _pipeline(client, repo, [f"cp /pfs/{repo}/a.txt /pfs/out/copied.txt"])
    commit = put_files(tusk, repo, {"a.txt": b"hello"}, tmp_path)

    job = client.pps.inspect_job(job=pps.Job(pipeline=pipeline, id=commit), wait=True,
                                 details=True)
    assert job.state == pps.JobState.JOB_SUCCESS, job.reason
    assert (job.data_processed, job.data_total, job.data_failed) == (1, 1, 0)
    assert job.job.pipeline.name == pipeline.name
    assert job.job.pipeline.project.name == "default"
    assert job.output_commit.id == commit
    assert job.details.transform.image == IMAGE
    assert job.details.input.pfs.commit == commit
    assert _file(tusk, pipeline.name, "/copied.txt") == "hello"

    info = client.pps.inspect_pipeline(pipeline=pipeline, details=True)
    assert info.state == pps.PipelineState.PIPELINE_RUNNING
    assert info.details.transform.cmd == ["sh"]
    assert info.details.input.pfs.repo == repo
    assert info.details.input.pfs.glob == "/*"
    assert info.last_job_state == pps.JobState.JOB_SUCCESS
    assert json.loads(info.effective_spec_json)["pipeline"]["name"] == pipeline.name
    assert pipeline.name in [p.pipeline.name for p in client.pps.list_pipeline()]

    listed = list(client.pps.list_job(pipeline=pipeline))
    assert commit in [j.job.id for j in listed]
    assert not listed[0].details.transform.image  # details only when asked for
    by_commit = list(client.pps.list_job(
        pipeline=pipeline, input_commit=[pfs.Commit(id=commit, repo=pfs.Repo(name=repo))]))
    assert [j.job.id for j in by_commit] == [commit]

    datums = list(client.pps.list_datum(job=job.job))
    assert len(datums) == 1
    assert datums[0].state == pps.DatumState.SUCCESS
    assert [f.file.path for f in datums[0].data] == ["/a.txt"]
    assert datums[0].data[0].file.commit.repo.name == repo
    assert client.pps.inspect_datum(datum=datums[0].datum).datum.id == datums[0].datum.id

    with pytest.raises(grpc.RpcError, match="could not be found for job ID " + commit):
        client.pps.restart_datum(job=job.job, data_filters=["/a.txt"])


def test_failing_job_has_failure_state_reason_and_logs(
        tusk: Tusk, client: Client, tmp_path: Path) -> None:
    repo = _n("in")
    tusk.ok("create", "repo", repo)
    pipeline = _pipeline(client, repo, ["echo about to fail", "exit 3"])
    commit = put_files(tusk, repo, {"a.txt": b"x"}, tmp_path)

    job = client.pps.inspect_job(job=pps.Job(pipeline=pipeline, id=commit), wait=True)
    assert job.state == pps.JobState.JOB_FAILURE
    assert job.reason
    assert job.data_failed == 1
    assert job.finished.year > 2000

    logs = list(client.pps.get_logs(job=job.job))
    user = [m for m in logs if m.user]
    assert "about to fail" in [m.message for m in user]
    assert all(m.job_id == commit and m.pipeline_name == pipeline.name for m in logs)
    assert all(m.datum_id for m in user)
    master = list(client.pps.get_logs(pipeline=pipeline, master=True))
    assert master and all(m.master and not m.user for m in master)
    (datum,) = client.pps.list_datum(job=job.job)
    assert datum.state == pps.DatumState.FAILED
    by_datum = list(client.pps.get_logs(datum=datum.datum))
    assert "about to fail" in [m.message for m in by_datum]


def test_followed_logs_stream_the_lines_already_there(
        tusk: Tusk, client: Client, tmp_path: Path) -> None:
    repo = _n("in")
    tusk.ok("create", "repo", repo)
    pipeline = _pipeline(client, repo, ["echo line-from-user-code"])
    commit = put_files(tusk, repo, {"a.txt": b"x"}, tmp_path)
    client.pps.inspect_job(job=pps.Job(pipeline=pipeline, id=commit), wait=True)

    stream = client.pps.get_logs(pipeline=pipeline, follow=True)
    seen = []
    for m in stream:
        seen.append(m.message)
        if m.message == "line-from-user-code":
            break
    stream.close()
    assert "line-from-user-code" in seen


def test_pipeline_in_a_project_stops_starts_and_is_deleted(
        tusk: Tusk, client: Client, tmp_path: Path) -> None:
    project, repo = _n("proj"), _n("in")
    tusk.ok("create", "project", project)
    tusk.ok("create", "repo", f"{project}/{repo}")
    pipeline = _pipeline(client, repo, ["true"], project=project)

    client.pps.stop_pipeline(pipeline=pipeline)
    assert client.pps.inspect_pipeline(pipeline=pipeline).stopped
    client.pps.start_pipeline(pipeline=pipeline)
    info = client.pps.inspect_pipeline(pipeline=pipeline)
    assert not info.stopped
    assert info.pipeline.project.name == project

    listed = list(client.pps.list_pipeline(projects=[pfs.Project(name=project)]))
    assert [p.pipeline.name for p in listed] == [pipeline.name]
    assert list(client.pps.list_pipeline(projects=[pfs.Project(name=_n("none"))])) == []

    with pytest.raises(grpc.RpcError, match=r"pipeline.*have a cron input"):
        client.pps.run_cron(pipeline=pipeline)

    client.pps.delete_pipeline(pipeline=pipeline)
    assert not client.pps.pipeline_exists(pipeline)
    client.pps.delete_pipeline(pipeline=pipeline)  # a missing one: no error
    with pytest.raises(grpc.RpcError) as err:
        client.pps.delete_pipeline(pipeline=pipeline, must_exist=True)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_invalid_spec_is_rejected_with_the_field_named(tusk: Tusk, client: Client) -> None:
    repo = _n("in")
    tusk.ok("create", "repo", repo)
    with pytest.raises(grpc.RpcError) as err:
        client.pps.create_pipeline(
            pipeline=pps.Pipeline(name=_n("p")),
            input=pps.Input(pfs=pps.PfsInput(repo=repo, glob="/*")),
            transform=pps.Transform(image=IMAGE))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "transform.cmd" in (err.value.details() or "")


def test_generate_datums_in_batches(tusk: Tusk, client: Client, tmp_path: Path) -> None:
    repo = _n("in")
    tusk.ok("create", "repo", repo)
    put_files(tusk, repo, {f"f{i}": b"x" for i in range(7)}, tmp_path)
    stream = client.pps.generate_datums(
        input_spec=pps.Input(pfs=pps.PfsInput(repo=repo, glob="/*")), batch_size=3)
    assert len(next(stream)) == 3
    assert len(stream.send(2)) == 2
    assert len(next(stream)) == 2
    with pytest.raises(StopIteration):
        next(stream)


def test_secrets_round_trip(client: Client) -> None:
    name = _n("secret")
    client.pps.create_secret(name=name, data={"k": "v"})
    assert client.pps.inspect_secret(secret=pps.Secret(name=name)).secret.name == name
    with pytest.raises(grpc.RpcError) as err:
        client.pps.create_secret(name=name, data={"k": "v"})
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert name in [s.secret.name for s in client.pps.list_secret().secret_info]
    client.pps.delete_secret(secret=pps.Secret(name=name))
    with pytest.raises(grpc.RpcError) as err:
        client.pps.inspect_secret(secret=pps.Secret(name=name))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_rerun_makes_a_new_version_whose_jobs_list_job_shows_by_history(
        tusk: Tusk, client: Client, tmp_path: Path) -> None:
    repo = _n("in")
    tusk.ok("create", "repo", repo)
    pipeline = _pipeline(client, repo, ["cp -r /pfs/*/* /pfs/out/"])
    commit = put_files(tusk, repo, {"a.txt": b"x"}, tmp_path)
    client.pps.inspect_job(job=pps.Job(pipeline=pipeline, id=commit), wait=True)
    old = {j.job.id for j in client.pps.list_job(pipeline=pipeline)}

    client.pps.rerun_pipeline(pipeline=pipeline, reprocess=True)
    assert client.pps.inspect_pipeline(pipeline=pipeline).version == 2
    subscription = client.pps.subscribe_job(pipeline=pipeline)
    for job in subscription:  # existing jobs first, then each change
        if job.pipeline_version == 2 and job.state == pps.JobState.JOB_SUCCESS:
            break
    subscription.close()  # the SDK's generator: closing it cancels the call

    current = list(client.pps.list_job(pipeline=pipeline))
    assert current and all(j.pipeline_version == 2 for j in current)
    assert not old & {j.job.id for j in current}
    every = {j.job.id for j in client.pps.list_job(pipeline=pipeline, history=-1)}
    assert old < every
