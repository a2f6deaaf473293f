"""Pipelines through the core (PFS + PPS in-process) with a real Docker engine.

Each test pins a behaviour of pachyderm-reference.md section 2. Containers run
the ``tusk/busybox:latest`` image built from Debian packages by
``deploy/images/build.sh``, with no network.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pfs import errors
from pfs.api import PFS, open_pfs
from pps.api import PPS
from pps.model import JobState
from tests.conftest import IMAGE, _docker_ok

__all__ = ["IMAGE", "_docker_ok"]  # other test modules import them from here

pytestmark = pytest.mark.docker

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def env(busybox_image: str, tmp_path: Any) -> Iterator[tuple[PFS, PPS]]:
    pfs = open_pfs(str(tmp_path / "data"))
    pps = PPS(pfs, str(tmp_path / "scratch"))
    yield pfs, pps
    pps.close()
    pfs.meta.close()


def put(pfs: PFS, repo: str, files: dict[str, bytes], deletes: tuple[str, ...] = ()) -> str:
    with pfs.modify_file(repo, "master") as w:
        for p in deletes:
            w.delete_file(p)
        for p, data in files.items():
            w.put_file(p, [data])
    return pfs.inspect_commit(repo, "master").id


def spec(name: str, cmd: str, input: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"pipeline": {"name": name},
            "transform": {"image": IMAGE, "cmd": ["sh", "-c", cmd]},
            "input": input, **extra}


def pfs_in(repo: str, glob: str = "/*", **kw: Any) -> dict[str, Any]:
    return {"pfs": {"repo": repo, "glob": glob, **kw}}


def wait_job(pps: PPS, pipeline: str, job: str) -> Any:
    return pps.inspect_job(pipeline, job, wait=True, timeout=120)


def files(pfs: PFS, repo: str, ref: str = "master") -> dict[str, bytes]:
    return {f.path: b"".join(pfs.get_file(repo, ref, f.path))
            for f in pfs.walk_file(repo, ref) if not f.path.endswith("/")}


COPY_UPPER = 'for f in /pfs/data/*; do tr a-z A-Z < "$f" > /pfs/out/$(basename "$f"); done'


def test_job_runs_skips_unchanged_and_records_provenance(env: tuple[PFS, PPS]) -> None:
    pfs, pps = env
    pfs.create_repo("data")
    put(pfs, "data", {f"/f{i}": f"v{i}\n".encode() for i in range(6)})
    pps.create_pipeline(spec("up", COPY_UPPER + "; echo did $PACH_DATUM_ID", pfs_in("data")))
    first = pps.list_job("up")[0]
    j = wait_job(pps, "up", first.id)
    assert j.state == JobState.SUCCESS, j.reason
    assert (j.data_processed, j.data_skipped, j.data_total) == (6, 0, 6)
    assert files(pfs, "up") == {f"/f{i}": f"V{i}\n".encode() for i in range(6)}

    cid = put(pfs, "data", {"/f2": b"changed\n"}, deletes=("/f5",))
    jobs = pps.list_job("up")
    assert jobs[0].id == cid  # the job has the input commit's ID
    j = wait_job(pps, "up", cid)
    assert j.state == JobState.SUCCESS
    assert (j.data_processed, j.data_skipped, j.data_total) == (1, 4, 5)
    out = files(pfs, "up")
    assert out["/f2"] == b"CHANGED\n" and "/f5" not in out and out["/f0"] == b"V0\n"
    # Provenance: the output commit names the input commit it came from.
    oc = pfs.inspect_commit("up", "master")
    assert oc.id == cid and [(p.repo, p.id) for p in oc.direct_provenance] == [("data", cid)]
    # Lineage: the output file names the datum that wrote it, and that datum's inputs.
    datum = pfs.inspect_file("up", "master", "/f2").datum
    info = pps.inspect_datum("up", cid, datum)
    assert [(f.repo, f.commit, f.path) for f in info.files] == [("data", cid, "/f2")]
    states = sorted(d.state.value for d in pps.list_datum("up", cid))
    assert states == ["skipped"] * 4 + ["success"]
    logs = [entry.message for entry in pps.get_logs("up", cid, worker=True)]
    assert logs == [f"did {datum}"]


def test_environment_and_directory_datums(env: tuple[PFS, PPS]) -> None:
    pfs, pps = env
    pfs.create_repo("data")
    put(pfs, "data", {"/a/x": b"1", "/a/y": b"2", "/b/z": b"3"})
    cmd = ('echo "$PACH_JOB_ID $PACH_DATUM_ID $PPS_PIPELINE_NAME $data $data_COMMIT" '
           '> /pfs/out/$PACH_DATUM_ID; ls -R /pfs/data >> /pfs/out/$PACH_DATUM_ID; '
           'touch /pfs/data/readonly 2>/dev/null && echo WRITABLE >> /pfs/out/$PACH_DATUM_ID; true')
    pps.create_pipeline(spec("envp", cmd, pfs_in("data", "/*")))
    job = pps.list_job("envp")[0]
    assert wait_job(pps, "envp", job.id).state == JobState.SUCCESS
    out = files(pfs, "envp")
    assert len(out) == 2  # one datum per top-level directory
    head = pfs.inspect_commit("data", "master").id
    texts = sorted((v.decode() for v in out.values()), key=lambda t: "/pfs/data/b" in t)
    assert texts[0].startswith(f"{job.id} ") and f" envp /pfs/data/a {head}" in texts[0]
    assert "x" in texts[0] and "y" in texts[0] and "WRITABLE" not in texts[0]
    assert f" envp /pfs/data/b {head}" in texts[1] and "x" not in texts[1]


def test_cross_and_union(env: tuple[PFS, PPS]) -> None:
    pfs, pps = env
    for r in ("left", "right"):
        pfs.create_repo(r)
        put(pfs, r, {f"/{r}{i}": b"x" for i in range(2 if r == "left" else 3)})
    name_out = 'echo > "/pfs/out/$(basename ${left:-none})-$(basename ${right:-none})"'
    pps.create_pipeline(spec("cross", name_out, {"cross": [pfs_in("left"), pfs_in("right")]}))
    pps.create_pipeline(spec("union", name_out, {"union": [pfs_in("left"), pfs_in("right")]}))
    for p, n in (("cross", 6), ("union", 5)):
        j = wait_job(pps, p, pps.list_job(p)[0].id)
        assert j.state == JobState.SUCCESS, j.reason
        assert j.data_total == n and len(files(pfs, p)) == n


def test_failure_retries_reason_and_downstream_unrunnable(env: tuple[PFS, PPS]) -> None:
    pfs, pps = env
    pfs.create_repo("data")
    put(pfs, "data", {"/ok": b"1", "/bad": b"2"})
    cmd = ('if [ -e /pfs/data/bad ]; then echo "cannot parse bad" >&2; exit 3; fi; '
           'cp /pfs/data/* /pfs/out/')
    pps.create_pipeline(spec("fails", cmd, pfs_in("data"), datum_tries=2))
    pps.create_pipeline(spec("after", "cp -r /pfs/fails/* /pfs/out/ 2>/dev/null; true",
                             pfs_in("fails")))
    jid = pps.list_job("fails")[0].id
    j = wait_job(pps, "fails", jid)
    assert j.state == JobState.FAILURE
    assert "exit" in j.reason and "3" in j.reason and "cannot parse bad" in j.reason
    assert (j.data_failed, j.data_processed) == (1, 1)
    assert pfs.inspect_commit("fails", jid).error == j.reason
    tries = [m.message for m in pps.get_logs("fails", jid)
             if "errored running user code" in m.message]
    assert len(tries) == 2
    # "after" was created after that commit: its first job has its own ID.
    down = wait_job(pps, "after", pps.list_job("after")[0].id)
    assert down.state == JobState.UNRUNNABLE and "fails" in down.reason


def test_two_datums_writing_one_path_fail_the_job(env: tuple[PFS, PPS]) -> None:
    pfs, pps = env
    pfs.create_repo("data")
    put(pfs, "data", {"/a": b"1", "/b": b"2"})
    pps.create_pipeline(spec("clash", "echo $PACH_DATUM_ID > /pfs/out/same", pfs_in("data")))
    j = wait_job(pps, "clash", pps.list_job("clash")[0].id)
    assert j.state == JobState.FAILURE
    assert "/same" in j.reason and "two datums" in j.reason


def test_chained_pipelines_share_the_commit_id(env: tuple[PFS, PPS]) -> None:
    pfs, pps = env
    pfs.create_repo("data")
    put(pfs, "data", {"/a": b"abc"})
    pps.create_pipeline(spec("one", "cp /pfs/data/* /pfs/out/", pfs_in("data")))
    pps.create_pipeline(spec("two",
                             'for f in /pfs/one/*; do rev "$f" > /pfs/out/$(basename $f); done',
                             pfs_in("one")))
    cid = put(pfs, "data", {"/b": b"xyz\n"})
    assert wait_job(pps, "one", cid).state == JobState.SUCCESS
    assert wait_job(pps, "two", cid).state == JobState.SUCCESS
    assert files(pfs, "two")["/b"] == b"zyx\n"
    assert {c.repo for c in pfs.inspect_commit_set(cid)} == {"data", "one", "two"}
    assert [j.id for j in pps.list_job("two")].count(cid) == 1


def test_update_keeps_outputs_until_inputs_change_reprocess_reruns(env: tuple[PFS, PPS]) -> None:
    pfs, pps = env
    pfs.create_repo("data")
    put(pfs, "data", {"/a": b"1"})
    pps.create_pipeline(spec("upd", "echo foo > /pfs/out/a", pfs_in("data")))
    wait_job(pps, "upd", pps.list_job("upd")[0].id)
    pps.create_pipeline(spec("upd", "echo bar > /pfs/out/$(ls /pfs/data)", pfs_in("data")),
                        update=True)
    j = wait_job(pps, "upd", pps.list_job("upd")[0].id)
    assert j.data_skipped == 1 and files(pfs, "upd")["/a"] == b"foo\n"
    put(pfs, "data", {"/b": b"2"})
    wait_job(pps, "upd", pps.list_job("upd")[0].id)
    assert files(pfs, "upd") == {"/a": b"foo\n", "/b": b"bar\n"}
    pps.create_pipeline(spec("upd", "echo buzz > /pfs/out/$(ls /pfs/data)", pfs_in("data")),
                        update=True, reprocess=True)
    j = wait_job(pps, "upd", pps.list_job("upd")[0].id)
    assert j.data_processed == 2 and files(pfs, "upd") == {"/a": b"buzz\n", "/b": b"buzz\n"}
    assert len(pps.list_job("upd")) == 4


def test_stop_job_and_later_jobs_proceed(env: tuple[PFS, PPS]) -> None:
    pfs, pps = env
    pfs.create_repo("data")
    put(pfs, "data", {"/slow": b"1"})
    pps.create_pipeline(spec("sl",
                             'if [ -e /pfs/data/slow ]; then sleep 30; fi; '
                             'cp /pfs/data/* /pfs/out/',
                             pfs_in("data", "/")))
    first = pps.list_job("sl")[0].id
    deadline = time.monotonic() + 30
    while pps.inspect_job("sl", first).state != JobState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.05)
    pps.stop_job("sl", first)
    assert pps.inspect_job("sl", first).state == JobState.KILLED
    cid = put(pfs, "data", {"/fast": b"2"}, deletes=("/slow",))
    assert wait_job(pps, "sl", cid).state == JobState.SUCCESS
    assert files(pfs, "sl") == {"/fast": b"2"}


def test_pipeline_rules(env: tuple[PFS, PPS]) -> None:
    pfs, pps = env
    with pytest.raises(errors.NotFound, match="input repo nope"):
        pps.create_pipeline(spec("p", "true", pfs_in("nope")))
    pfs.create_repo("data")
    pfs.create_repo("taken")
    with pytest.raises(errors.AlreadyExists, match="repo with the same name"):
        pps.create_pipeline(spec("taken", "true", pfs_in("data")))
    pps.create_pipeline(spec("p", "true", pfs_in("data")))
    with pytest.raises(errors.AlreadyExists):
        pps.create_pipeline(spec("p", "true", pfs_in("data")))
    with pytest.raises(errors.FailedPrecondition, match="delete the pipeline"):
        pfs.delete_repo("p")
    with pytest.raises(errors.FailedPrecondition, match="stop job"):
        pfs.finish_commit("p", "master")
    pps.delete_pipeline("p")
    with pytest.raises(errors.RepoNotFound):
        pfs.inspect_repo("p")


def test_daemon_killed_mid_job_resumes_with_identical_output(busybox_image: str,
                                                             tmp_path: Any) -> None:
    """kill -9 of the process running PPS mid-job; a new process resumes the
    job and the output equals an uninterrupted run's."""
    data = str(tmp_path / "data")
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {ROOT!r})
        from pfs.api import open_pfs
        from pps.api import PPS
        import pps.controller.planner
        pps.controller.planner.UNIT_TARGET = 2
        pfs = open_pfs({data!r})
        svc = PPS(pfs, {str(tmp_path / "scratch")!r})
        pfs.create_repo("data")
        with pfs.modify_file("data", "master") as w:
            for i in range(12):
                w.put_file(f"/f{{i:02d}}", [str(i).encode()])
        svc.create_pipeline({{"pipeline": {{"name": "slow"}},
            "transform": {{"image": {IMAGE!r}, "cmd": ["sh", "-c",
                "sleep 0.3; for f in /pfs/data/*; do cat $f $f > /pfs/out/$(basename $f); done"]}},
            "input": {{"pfs": {{"repo": "data", "glob": "/*"}}}}}})
        print("started", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        done_dir = None
        deadline = time.monotonic() + 60
        # Kill once some, but not all, units are done.
        while time.monotonic() < deadline:
            probe = open_pfs(data)
            n = sum(1 for _ in probe.meta.range("done/slow/"))
            probe.meta.close()
            if n >= 2:
                done_dir = n
                break
            time.sleep(0.1)
        assert done_dir is not None and done_dir < 6
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    import pps.controller.planner as api

    old = api.UNIT_TARGET
    api.UNIT_TARGET = 2
    try:
        pfs = open_pfs(data)
        svc = PPS(pfs, str(tmp_path / "scratch"))
        job = svc.list_job("slow")[0]
        j = svc.inspect_job("slow", job.id, wait=True, timeout=120)
        assert j.state == JobState.SUCCESS, j.reason
        assert j.data_processed == 12
        assert files(pfs, "slow") == {f"/f{i:02d}": str(i).encode() * 2 for i in range(12)}
        svc.close()
        pfs.meta.close()
    finally:
        api.UNIT_TARGET = old


def test_cron_input_ticks_and_run_cron(env: tuple[PFS, PPS]) -> None:
    pfs, pps = env
    pps.create_pipeline(spec("tick", "cp /pfs/clock/* /pfs/out/",
                             {"cron": {"name": "clock", "spec": "@every 1s", "overwrite": True}}))
    assert pfs.inspect_repo("tick_clock").name == "tick_clock"
    deadline = time.monotonic() + 30
    while len(pps.list_job("tick")) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    jobs = pps.list_job("tick")
    assert len(jobs) >= 3  # the first job plus at least two ticks
    last = wait_job(pps, "tick", jobs[0].id)
    assert last.state == JobState.SUCCESS
    ticks = [f.path for f in pfs.list_file("tick_clock", "master")]
    assert len(ticks) == 1  # overwrite keeps only the latest tick
    n = len(pps.list_job("tick"))
    pps.stop_pipeline("tick")
    pps.start_pipeline("tick")
    pps.run_cron("tick")
    assert len(pps.list_job("tick")) >= n + 1
    pps.delete_pipeline("tick")
    with pytest.raises(errors.RepoNotFound):
        pfs.inspect_repo("tick_clock")


def test_join_and_group_with_keys_in_env(env: tuple[PFS, PPS]) -> None:
    pfs, pps = env
    pfs.create_repo("readings")
    pfs.create_repo("params")
    put(pfs, "readings", {f"/dev/{i}.txt": f"r{i}".encode() for i in range(1, 6)})
    put(pfs, "params", {f"/{i}.txt": f"p{i}".encode() for i in range(1, 9)})
    cmd = ('echo "$PACH_DATUM_readings_JOIN_ON $(cat $readings 2>/dev/null) $(cat $params)" '
           '> /pfs/out/$PACH_DATUM_params_JOIN_ON')
    pps.create_pipeline(spec("joined", cmd, {"join": [
        pfs_in("readings", "/*/(*).txt", join_on="$1"),
        pfs_in("params", "/(*).txt", join_on="$1", outer_join=True)]}))
    j = wait_job(pps, "joined", pps.list_job("joined")[0].id)
    assert j.state == JobState.SUCCESS, j.reason
    out = files(pfs, "joined")
    assert len(out) == 8  # 5 inner matches + 3 outer-only params
    assert out["/3"] == b"3 r3 p3\n" and out["/7"] == b"  p7\n"  # outer-only: no readings
    pfs.create_repo("labs")
    put(pfs, "labs", {"/a-1-lab1.txt": b"1", "/b-1-lab2.txt": b"2", "/c-2-lab1.txt": b"3"})
    pps.create_pipeline(spec("grouped", 'ls /pfs/labs | wc -l > /pfs/out/$PACH_DATUM_labs_GROUP_BY',
                             {"group": [pfs_in("labs", "/*-(*)-lab*.txt", group_by="$1")]}))
    g = wait_job(pps, "grouped", pps.list_job("grouped")[0].id)
    assert g.state == JobState.SUCCESS, g.reason
    assert {k: v.strip() for k, v in files(pfs, "grouped").items()} == {"/1": b"2", "/2": b"1"}


def test_err_cmd_recovers_and_accept_return_code(env: tuple[PFS, PPS]) -> None:
    pfs, pps = env
    pfs.create_repo("data")
    put(pfs, "data", {"/good": b"1", "/bad": b"2"})
    pps.create_pipeline({**spec("rec", 'test -e /pfs/data/bad && exit 1; cp /pfs/data/* /pfs/out/',
                                pfs_in("data")),
                         "transform": {"image": IMAGE,
                                       "cmd": ["sh", "-c",
                                               'test -e /pfs/data/bad && exit 1; '
                                               'cp /pfs/data/* /pfs/out/'],
                                       "err_cmd": ["true"]},
                         "datum_tries": 1})
    j = wait_job(pps, "rec", pps.list_job("rec")[0].id)
    assert j.state == JobState.SUCCESS
    assert (j.data_processed, j.data_recovered) == (1, 1)
    assert files(pfs, "rec") == {"/good": b"1"}  # a recovered datum writes no output
    pps.create_pipeline({"pipeline": {"name": "acc"},
                         "transform": {"image": IMAGE,
                                       "cmd": ["sh", "-c", "cp /pfs/data/* /pfs/out/; exit 1"],
                                       "accept_return_code": [1]},
                         "input": pfs_in("data")})
    assert wait_job(pps, "acc", pps.list_job("acc")[0].id).state == JobState.SUCCESS


def test_datum_timeout_and_job_timeout(env: tuple[PFS, PPS]) -> None:
    pfs, pps = env
    pfs.create_repo("data")
    put(pfs, "data", {"/a": b"1"})
    pps.create_pipeline(spec("dt", "sleep 20", pfs_in("data"), datum_timeout="1s", datum_tries=1))
    j = wait_job(pps, "dt", pps.list_job("dt")[0].id)
    assert j.state == JobState.FAILURE and "timeout" in j.reason
    pps.create_pipeline(spec("jt", "sleep 20", pfs_in("data"), job_timeout="2s"))
    j = wait_job(pps, "jt", pps.list_job("jt")[0].id)
    assert j.state == JobState.KILLED and "job_timeout" in j.reason


def test_parallel_workers_share_datums(env: tuple[PFS, PPS]) -> None:
    pfs, pps = env
    import pps.controller.planner as api

    pfs.create_repo("data")
    put(pfs, "data", {f"/f{i:02d}": b"x" for i in range(8)})
    old = api.UNIT_TARGET
    api.UNIT_TARGET = 1  # one datum per unit, so both workers get work
    try:
        pps.create_pipeline(spec("par", 'sleep 0.3; hostname > /pfs/out/$(basename $data)',
                                 pfs_in("data"), parallelism_spec={"constant": 2}))
        j = wait_job(pps, "par", pps.list_job("par")[0].id)
    finally:
        api.UNIT_TARGET = old
    assert j.state == JobState.SUCCESS and j.data_processed == 8
    workers = {v.strip() for v in files(pfs, "par").values()}
    assert len(workers) == 2  # two containers (one per worker) did the work


def test_empty_files_and_reference_inputs(env: tuple[PFS, PPS]) -> None:
    pfs, pps = env
    pfs.create_repo("big")
    pfs.create_repo("ref")
    put(pfs, "big", {"/blob": b"x" * 100_000})
    put(pfs, "ref", {"/table": b"v1"})
    cmd = 'wc -c < $big > /pfs/out/size; cat $ref > /pfs/out/ref'
    pps.create_pipeline(spec("ef", cmd, {"cross": [pfs_in("big", empty_files=True),
                                                   pfs_in("ref", reference=True)]}))
    j = wait_job(pps, "ef", pps.list_job("ef")[0].id)
    assert j.state == JobState.SUCCESS
    out = files(pfs, "ef")
    assert out["/size"].strip() == b"0" and out["/ref"] == b"v1"
    cid = put(pfs, "ref", {"/table": b"v2"})
    j = wait_job(pps, "ef", cid)
    # A reference input's content is not part of the datum hash: no rerun.
    assert (j.data_processed, j.data_skipped) == (0, 1)


def test_process_runner_presents_the_same_contract(tmp_path: Any) -> None:
    from pps.runners.process import ProcessRunner

    runner = ProcessRunner()
    ok, why = runner.available()
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    pfs = open_pfs(str(tmp_path / "data"))
    pps = PPS(pfs, str(tmp_path / "scratch"), runner=runner)
    try:
        pfs.create_repo("data")
        put(pfs, "data", {"/a": b"hello"})
        pps.create_pipeline(spec("host",
                                 'cat $data > /pfs/out/a; echo "$PACH_DATUM_ID" > /pfs/out/id',
                                 pfs_in("data")))
        j = wait_job(pps, "host", pps.list_job("host")[0].id)
        assert j.state == JobState.SUCCESS, j.reason
        out = files(pfs, "host")
        assert out["/a"] == b"hello"
        assert out["/id"].strip() == pfs.inspect_file("host", "master", "/a").datum.encode()
    finally:
        pps.close()
        pfs.meta.close()


def test_missing_image_fails_the_job_saying_so(env: tuple[PFS, PPS]) -> None:
    pfs, pps = env
    pfs.create_repo("data")
    put(pfs, "data", {"/a": b"1"})
    pps.create_pipeline({**spec("noimg", "true", pfs_in("data"), datum_tries=1),
                         "transform": {"image": "tusk/does-not-exist:1", "cmd": ["true"]}})
    j = wait_job(pps, "noimg", pps.list_job("noimg")[0].id)
    assert j.state == JobState.FAILURE
    assert "tusk/does-not-exist:1" in j.reason and "not found" in j.reason


def test_recovered_datums_are_retried_and_every_job_never_skips(env: tuple[PFS, PPS]) -> None:
    pfs, pps = env
    pfs.create_repo("data")
    put(pfs, "data", {"/good": b"1", "/bad": b"2"})
    pps.create_pipeline({"pipeline": {"name": "rt"},
                         "transform": {"image": IMAGE, "cmd": ["sh", "-c",
                                       'test -e /pfs/data/bad && exit 1; cp /pfs/data/* /pfs/out/'],
                                       "err_cmd": ["true"]},
                         "input": pfs_in("data"), "datum_tries": 1})
    wait_job(pps, "rt", pps.list_job("rt")[0].id)
    cid = put(pfs, "data", {"/new": b"3"})
    j = wait_job(pps, "rt", cid)
    # good: skipped; new: processed; bad: recovered last time, so tried again.
    assert (j.data_processed, j.data_skipped, j.data_recovered) == (1, 1, 1)
    pps.create_pipeline(spec("ej", "cp /pfs/data/* /pfs/out/", pfs_in("data"),
                             reprocess_spec="every_job"))
    wait_job(pps, "ej", pps.list_job("ej")[0].id)
    cid = put(pfs, "data", {"/more": b"4"})
    j = wait_job(pps, "ej", cid)
    assert (j.data_processed, j.data_skipped) == (4, 0)
