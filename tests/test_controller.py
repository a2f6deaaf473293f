"""The pipeline controller's behaviour, with in-memory stores and a scripted runner.

Each test runs PFS + PPS in-process over ``MemoryMetadataStore`` and
``MemoryObjectStore`` with :class:`pps.runners.fake.FakeRunner`, so it takes
milliseconds and needs no Docker: skipping, merging, path collisions, retries,
``err_cmd``, timeouts, stop, parallel workers, a worker's death, and untrusted
output (links, special files). ``tests/test_pps.py`` runs the same kinds of
pipelines through a real Docker engine.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pfs.api import PFS
from pfs.blobs import BlobStore
from pfs.errors import Unavailable
from pfs.metadata import MemoryMetadataStore
from pfs.objects import MemoryObjectStore
from pps import keys
from pps.api import PPS
from pps.controller import planner
from pps.model import DatumState, JobInfo, JobState
from pps.records import JobRec
from pps.runners import DatumRun
from pps.runners.fake import Act, FakeRunner, copy_inputs, input_path


class Stack:
    """PFS + PPS over memory stores, with a fake runner."""

    def __init__(self, tmp: str, behaviour: Callable[[DatumRun], Act] = copy_inputs,
                 claim_ttl: float = 10.0) -> None:
        self.meta = MemoryMetadataStore()
        self.pfs = PFS(self.meta, BlobStore(MemoryObjectStore()))
        self.runner = FakeRunner(behaviour)
        self.pps = PPS(self.pfs, os.path.join(tmp, "scratch"), runner=self.runner,
                       claim_ttl=claim_ttl, default_image="test/default:1")

    def put(self, repo: str, files: dict[str, bytes], deletes: tuple[str, ...] = ()) -> str:
        with self.pfs.modify_file(repo, "master") as w:
            for p in deletes:
                w.delete_file(p)
            for p, data in files.items():
                w.put_file(p, [data])
        return self.pfs.inspect_commit(repo, "master").id

    def files(self, repo: str, ref: str = "master") -> dict[str, bytes]:
        tree = self.pfs.commit_tree(repo, self.pfs.resolve(repo, ref).id)
        return {f.path: b"".join(self.pfs.blobs.read_chunks(tree.chunks(f)))
                for f in tree.files("/")}

    def pipeline(self, name: str, repo: str = "data", glob: str = "/*", **extra: Any) -> None:
        transform = {"image": "test/img:1", "cmd": ["user-code"], **extra.pop("transform", {})}
        self.pps.create_pipeline({"pipeline": {"name": name}, "transform": transform,
                                  "input": {"pfs": {"repo": repo, "glob": glob}}, **extra})

    def last_job(self, pipeline: str, timeout: float = 10.0) -> JobInfo:
        jobs = self.pps.list_job(pipeline)
        assert jobs, f"no job of {pipeline}"
        return self.pps.inspect_job(pipeline, jobs[0].id, wait=True, timeout=timeout)

    def close(self) -> None:
        self.pps.close()


@pytest.fixture
def make(tmp_path: Any) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def _make(behaviour: Callable[[DatumRun], Act] = copy_inputs, **kw: Any) -> Stack:
        s = Stack(str(tmp_path / f"s{len(stacks)}"), behaviour, **kw)
        stacks.append(s)
        return s

    yield _make
    for s in stacks:
        s.close()


@pytest.fixture
def stack(make: Callable[..., Stack]) -> Stack:
    s = make()
    s.pfs.create_repo("data")
    return s


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def upper(datum: DatumRun) -> Act:
    """Upper-cases the datum's file into /pfs/out under its base name."""
    path = datum.env["data"]
    with open(input_path(datum, path), "rb") as f:
        return Act(files={os.path.basename(path): f.read().upper()})


# --- skipping and merging --------------------------------------------------------------


def test_only_changed_datums_run_and_outputs_are_merged(make: Callable[..., Stack]) -> None:
    s = make(upper)
    s.pfs.create_repo("data")
    s.put("data", {"/a": b"a", "/b": b"b", "/c": b"c"})
    s.pipeline("up")
    j = s.last_job("up")
    assert (j.state, j.data_processed, j.data_skipped) == (JobState.SUCCESS, 3, 0)
    runs = len(s.runner.runs)
    s.put("data", {"/b": b"bb"}, deletes=("/c",))
    j = s.last_job("up")
    assert (j.state, j.data_processed, j.data_skipped, j.data_total) == (
        JobState.SUCCESS, 1, 1, 2)
    assert len(s.runner.runs) == runs + 1
    assert s.files("up") == {"/a": b"A", "/b": b"BB"}  # /c's output went with /c


def test_two_datums_writing_one_path_fail_the_job(make: Callable[..., Stack]) -> None:
    s = make(lambda d: Act(files={"same": b"x"}))
    s.pfs.create_repo("data")
    s.put("data", {"/a": b"a", "/b": b"b"})
    s.pipeline("clash")
    j = s.last_job("clash")
    assert j.state == JobState.FAILURE
    assert "output path /same was written by two datums" in j.reason


def test_a_new_datum_writing_a_skipped_datums_output_fails_the_job(
        make: Callable[..., Stack]) -> None:
    # The skipped datum's output is known from the output commit's datum tags.
    s = make(lambda d: Act(files={"same": b"x"}))
    s.pfs.create_repo("data")
    s.put("data", {"/a": b"a"})
    s.pipeline("clash")
    assert s.last_job("clash").state == JobState.SUCCESS
    s.put("data", {"/b": b"b"})
    j = s.last_job("clash")
    assert (j.state, j.data_processed) == (JobState.FAILURE, 1)
    assert "output path /same was written by two datums" in j.reason


def test_list_datum_streams_skipped_datums_from_the_index(make: Callable[..., Stack]) -> None:
    s = make(upper)
    s.pfs.create_repo("data")
    s.put("data", {f"/f{i:02d}": b"x" for i in range(40)})
    s.pipeline("up")
    assert s.last_job("up").data_processed == 40
    s.put("data", {"/f07": b"changed"}, deletes=("/f09",))
    j = s.last_job("up")
    assert (j.data_processed, j.data_skipped, j.data_total) == (1, 38, 39)
    plan = s.pps.jobs.plan("up", j.id)
    assert plan is not None and len(plan.process) == 1 and not plan.skipped
    datums = list(s.pps.list_datum("up", j.id))
    assert [d.state for d in datums].count(DatumState.SUCCESS) == 1
    assert [d.state for d in datums].count(DatumState.SKIPPED) == 38
    assert {f.path for d in datums for f in d.files} == {
        f"/f{i:02d}" for i in range(40) if i != 9}
    skipped = next(d for d in datums if d.state == DatumState.SKIPPED)
    got = s.pps.inspect_datum("up", j.id, skipped.id[:10])
    assert (got.id, got.state) == (skipped.id, DatumState.SKIPPED)
    assert s.files("up")["/f07"] == b"CHANGED" and "/f09" not in s.files("up")


def test_salt_change_with_reprocess_runs_everything(make: Callable[..., Stack]) -> None:
    s = make(upper)
    s.pfs.create_repo("data")
    s.put("data", {"/a": b"a", "/b": b"b"})
    s.pipeline("up")
    s.last_job("up")
    s.pps.create_pipeline({"pipeline": {"name": "up"},
                           "transform": {"image": "test/img:2", "cmd": ["x"]},
                           "input": {"pfs": {"repo": "data", "glob": "/*"}}},
                          update=True, reprocess=True)
    j = s.pps.inspect_job("up", s.pps.list_job("up")[0].id, wait=True, timeout=10)
    assert (j.state, j.data_processed, j.data_skipped, j.pipeline_version) == (
        JobState.SUCCESS, 2, 0, 2)


# --- failures, retries, err_cmd, timeouts ---------------------------------------------


def test_failing_datum_is_tried_datum_tries_times(make: Callable[..., Stack]) -> None:
    s = make(lambda d: Act(exit_code=3, stderr=b"boom\n"))
    s.pfs.create_repo("data")
    s.put("data", {"/a": b"a"})
    s.pipeline("bad", datum_tries=2)
    j = s.last_job("bad")
    assert j.state == JobState.FAILURE and "exited with code 3" in j.reason and "boom" in j.reason
    assert len(s.runner.runs) == 2
    [d] = list(s.pps.list_datum("bad", j.id))
    assert (d.state, d.attempts) == (DatumState.FAILED, 2)


def test_accept_return_code_and_err_cmd_recovery(make: Callable[..., Stack]) -> None:
    def behaviour(d: DatumRun) -> Act:
        if d.cmd == ("recover",):
            return Act(exit_code=0)
        return Act(exit_code=7 if d.env["data"].endswith("a") else 9)

    s = make(behaviour)
    s.pfs.create_repo("data")
    s.put("data", {"/a": b"a", "/b": b"b"})
    s.pipeline("rc", transform={"accept_return_code": [7], "err_cmd": ["recover"]},
               datum_tries=1)
    j = s.last_job("rc")
    assert (j.state, j.data_processed, j.data_recovered) == (JobState.SUCCESS, 1, 1)


def test_datum_timeout_fails_the_datum(make: Callable[..., Stack]) -> None:
    s = make(lambda d: Act(delay=5.0))
    s.pfs.create_repo("data")
    s.put("data", {"/a": b"a"})
    s.pipeline("slow", datum_timeout="0.2s", datum_tries=1)
    j = s.last_job("slow")
    assert j.state == JobState.FAILURE and "datum_timeout" in j.reason


def test_job_timeout_kills_the_job(make: Callable[..., Stack]) -> None:
    gate = threading.Event()
    s = make(lambda d: Act(block=gate))
    s.pfs.create_repo("data")
    s.put("data", {"/a": b"a"})
    s.pipeline("jt", job_timeout="0.3s")
    try:
        j = s.last_job("jt")
    finally:
        gate.set()
    assert j.state == JobState.KILLED and "job_timeout" in j.reason


def test_exception_in_upload_fails_the_datum_and_the_job_ends(
        make: Callable[..., Stack], monkeypatch: pytest.MonkeyPatch) -> None:
    from pfs.blobs import BlobWriter

    def broken(self: BlobWriter, pieces: Any) -> Any:
        raise OSError(28, "No space left on device")

    s = make(upper)
    s.pfs.create_repo("data")
    s.put("data", {"/a": b"a"})
    monkeypatch.setattr(BlobWriter, "write_stream", broken)
    s.pipeline("up", datum_tries=2)
    j = s.last_job("up")
    assert j.state == JobState.FAILURE
    assert "uploading the datum's outputs failed" in j.reason and "No space left" in j.reason
    [d] = list(s.pps.list_datum("up", j.id))
    assert d.attempts == 2


def test_runner_crash_is_the_datums_failure(make: Callable[..., Stack]) -> None:
    s = make(lambda d: Act(crash=RuntimeError("engine exploded")))
    s.pfs.create_repo("data")
    s.put("data", {"/a": b"a"})
    s.pipeline("crash", datum_tries=3)
    j = s.last_job("crash")
    assert j.state == JobState.FAILURE and "engine exploded" in j.reason
    assert len(s.runner.runs) == 3


def test_unit_that_keeps_failing_outside_datums_fails_the_job(
        make: Callable[..., Stack], monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit whose results can never be written is given back, retried a
    bounded number of times, then the job fails with the reason."""
    s = make()
    s.pfs.create_repo("data")
    s.put("data", {"/a": b"a"})
    real_put = s.pfs.objects.put

    def put(key: str, data: bytes) -> None:
        if "/units/" in key:
            raise OSError(5, "Input/output error")
        real_put(key, data)

    monkeypatch.setattr(s.pfs.objects, "put", put)
    s.pipeline("p")
    j = s.last_job("p", timeout=20)
    assert j.state == JobState.FAILURE
    assert "failed 3 times" in j.reason and "Input/output error" in j.reason


# --- stop, parallel workers, worker death ---------------------------------------------


def test_stop_job_wins_over_a_running_jobs_updates(make: Callable[..., Stack],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The master keeps updating counts while datums finish; a stop job racing
    those updates must leave the job KILLED (compare-and-swap, no blind write)."""
    gates = [threading.Event() for _ in range(6)]
    n = iter(range(6))

    def behaviour(d: DatumRun) -> Act:
        return Act(block=gates[next(n)], files={d.env["data"].rsplit("/", 1)[1]: b"x"})

    monkeypatch.setattr(planner, "UNIT_TARGET", 1)
    s = make(behaviour)
    s.pfs.create_repo("data")
    s.put("data", {f"/f{i}": b"x" for i in range(6)})
    s.pipeline("p", parallelism_spec={"constant": 2})
    wait_for(lambda: len(s.runner.runs) >= 2)
    job = s.pps.list_job("p")[0].id
    gates[0].set()  # one datum finishes: the master updates counts meanwhile
    s.pps.stop_job("p", job)
    for g in gates:
        g.set()
    time.sleep(0.5)  # let the master and workers run on after the stop
    j = s.pps.inspect_job("p", job)
    assert j.state == JobState.KILLED, j
    assert "stop job" in j.reason


def test_master_update_after_stop_does_not_resurrect_the_job(stack: Stack) -> None:
    """The job record moves by compare-and-swap: a writer holding an old copy
    (as the master does between reads) cannot overwrite KILLED."""
    gate = threading.Event()
    stack.runner.behaviour = lambda d: Act(block=gate)
    stack.put("data", {"/a": b"a"})
    stack.pipeline("p")
    wait_for(lambda: bool(stack.runner.runs))
    job = stack.pps.list_job("p")[0].id
    stale = stack.pps.jobs.get("p", job)
    stack.pps.stop_job("p", job)
    assert stack.pps.jobs.advance(stale, data_processed=1) is None
    gate.set()
    assert stack.pps.inspect_job("p", job).state == JobState.KILLED
    kv = stack.meta.get(keys.job("p", job))
    assert kv is not None and JobRec.decode(kv.value).state == "KILLED"


def test_parallel_workers_each_run_datums(make: Callable[..., Stack],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    seen: set[str] = set()
    lock = threading.Lock()

    def behaviour(d: DatumRun) -> Act:
        with lock:
            seen.add(threading.current_thread().name)
        time.sleep(0.02)
        return copy_inputs(d)

    monkeypatch.setattr(planner, "UNIT_TARGET", 1)
    s = make(behaviour)
    s.pfs.create_repo("data")
    s.put("data", {f"/f{i:02d}": b"x" for i in range(12)})
    s.pipeline("par", parallelism_spec={"constant": 3})
    j = s.last_job("par")
    assert (j.state, j.data_processed) == (JobState.SUCCESS, 12)
    assert len(seen) == 3, seen
    assert len(s.runner.sessions) == 3


def test_dead_workers_unit_is_retried_elsewhere_without_duplicates(
        make: Callable[..., Stack]) -> None:
    """A worker process that stops answering loses its claim when its lease
    ends; the unit runs on another worker, and the dead one's late results
    are dropped, never merged."""
    gate = threading.Event()
    calls: list[str] = []

    def stuck_first(d: DatumRun) -> Act:
        calls.append(d.env["PACH_DATUM_ID"])
        if len(calls) == 1:
            return Act(block=gate, files={"out": b"late"})
        return Act(files={"out": b"fresh"})

    s = make(stuck_first, claim_ttl=0.6)
    s.pfs.create_repo("data")
    s.put("data", {"/a": b"a"})
    s.pipeline("p", parallelism_spec={"constant": 2})
    wait_for(lambda: bool(calls))
    # The worker "dies": its lease is revoked, as etcd does when keepalives stop.
    s.meta.revoke_lease(s.pps.lease_id)
    j = s.last_job("p", timeout=20)
    gate.set()
    assert (j.state, j.data_processed) == (JobState.SUCCESS, 1)
    assert s.files("p") == {"/out": b"fresh"}
    assert len(calls) == 2


# --- the default image, user and working dir ------------------------------------------


def test_empty_image_uses_the_daemons_default_image(stack: Stack) -> None:
    stack.put("data", {"/a": b"a"})
    stack.pps.create_pipeline({"pipeline": {"name": "noimg"},
                               "transform": {"cmd": ["x"], "user": "1000:1000",
                                             "working_dir": "/app"},
                               "input": {"pfs": {"repo": "data", "glob": "/*"}}})
    assert stack.last_job("noimg").state == JobState.SUCCESS
    spec = stack.runner.specs[0]
    assert (spec.image, spec.user, spec.working_dir) == ("test/default:1", "1000:1000", "/app")


# --- untrusted output: links and special files -----------------------------------------


def _run_one(make: Callable[..., Stack], act: Callable[[DatumRun], Act],
             files: dict[str, bytes] | None = None, **extra: Any) -> tuple[Stack, JobInfo]:
    s = make(act)
    s.pfs.create_repo("data")
    s.put("data", files or {"/a.txt": b"alpha", "/dir/b.txt": b"beta"})
    s.pipeline("p", glob="/", datum_tries=1, **extra)
    return s, s.last_job("p")


def test_link_to_an_input_file_is_stored_by_reference(make: Callable[..., Stack]) -> None:
    s, j = _run_one(make, lambda d: Act(links={"copy.txt": "/pfs/data/a.txt",
                                               "rel.txt": "../data/dir/b.txt",
                                               "tree": "/pfs/data/dir"}))
    assert j.state == JobState.SUCCESS, j.reason
    assert s.files("p") == {"/copy.txt": b"alpha", "/rel.txt": b"beta",
                            "/tree/b.txt": b"beta"}
    # No bytes copied: the output's chunks are the input's.
    inp = s.pfs.commit_tree("data", s.pfs.resolve("data", "master").id)
    out = s.pfs.commit_tree("p", s.pfs.resolve("p", "master").id)
    a_in, a_out = inp.lookup("/a.txt"), out.lookup("/copy.txt")
    assert a_in is not None and a_out is not None
    assert inp.chunks(a_in) == out.chunks(a_out)  # type: ignore[arg-type]


def test_link_to_empty_files_input_gives_the_real_content(make: Callable[..., Stack]) -> None:
    s = make(lambda d: Act(links={"a.txt": d.env["data"]}))
    s.pfs.create_repo("data")
    s.put("data", {"/a.txt": b"alpha"})
    s.pps.create_pipeline({"pipeline": {"name": "p"},
                           "transform": {"image": "x", "cmd": ["x"]},
                           "input": {"pfs": {"repo": "data", "glob": "/*",
                                             "empty_files": True}}})
    assert s.last_job("p").state == JobState.SUCCESS
    assert s.files("p") == {"/a.txt": b"alpha"}


def test_link_between_output_files_copies_the_content(make: Callable[..., Stack]) -> None:
    s, j = _run_one(make, lambda d: Act(files={"real.txt": b"r"},
                                        links={"alias.txt": "real.txt"}))
    assert j.state == JobState.SUCCESS, j.reason
    assert s.files("p") == {"/real.txt": b"r", "/alias.txt": b"r"}


@pytest.mark.parametrize("target, words", [
    ("/etc/passwd", "outside the datum's inputs"),
    ("/root", "outside the datum's inputs"),
    ("../../../../../../etc/hostname", "outside the datum's inputs"),
    ("/pfs/data/missing.txt", "does not exist"),
    ("/nonexistent", "outside the datum's inputs"),
    ("/pfs/other/x", "outside the datum's inputs"),
    ("/pfs", "not a file or directory"),
])
def test_link_outside_the_datum_fails_it_naming_the_link(
        make: Callable[..., Stack], target: str, words: str) -> None:
    _, j = _run_one(make, lambda d: Act(links={"leak": target}))
    assert j.state == JobState.FAILURE
    assert "/pfs/out/leak is a symlink to" in j.reason and repr(target) in j.reason
    assert words in j.reason
    assert "write the file into /pfs/out instead of linking it" in j.reason


def test_link_loop_fails_the_datum(make: Callable[..., Stack]) -> None:
    _, j = _run_one(make, lambda d: Act(links={"a": "b", "b": "a"}))
    assert j.state == JobState.FAILURE and "loop" in j.reason


def test_directory_link_to_its_own_parent_fails_the_datum(make: Callable[..., Stack]) -> None:
    _, j = _run_one(make, lambda d: Act(files={"d/x": b"x"}, links={"d/up": ".."}))
    assert j.state == JobState.FAILURE and "loop" in j.reason


def test_fifo_in_out_fails_the_datum_without_blocking(make: Callable[..., Stack]) -> None:
    _, j = _run_one(make, lambda d: Act(fifos=("pipe",)))
    assert j.state == JobState.FAILURE
    assert "/pfs/out/pipe is a named pipe (FIFO)" in j.reason


def test_link_to_a_host_file_never_reads_it(make: Callable[..., Stack], tmp_path: Any) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"host secret")
    s, j = _run_one(make, lambda d: Act(links={"leak": str(secret)}))
    assert j.state == JobState.FAILURE
    assert all(b"host secret" not in v for v in s.files("p").values())


def test_restart_datum_kills_and_reruns_without_using_a_try(make: Callable[..., Stack]) -> None:
    never = threading.Event()  # the first run hangs until killed
    calls: list[str] = []

    def behaviour(d: DatumRun) -> Act:
        calls.append(d.env["data"])
        if len(calls) == 1:
            return Act(block=never)
        return Act(files={"out": b"second run"})

    s = make(behaviour)
    s.pfs.create_repo("data")
    s.put("data", {"/a": b"a"})
    s.pipeline("p", datum_tries=1)
    wait_for(lambda: bool(calls))
    job = s.pps.list_job("p")[0].id
    with pytest.raises(Exception, match="not found"):
        s.pps.restart_datum("p", job, ["/nope"])
    info = s.pps.restart_datum("p", job, ["/a"])
    assert [f.path for f in info.files] == ["/a"]
    j = s.last_job("p")
    assert j.state == JobState.SUCCESS, j.reason
    assert s.files("p") == {"/out": b"second run"}
    [d] = list(s.pps.list_datum("p", job))
    assert d.attempts == 1  # the killed attempt did not count
    with pytest.raises(Exception, match="not running"):
        s.pps.restart_datum("p", job, ["/a"])


def test_a_finished_commit_never_waits_for_pps_lock(stack: Stack) -> None:
    """PFS runs its commit hooks (PPS's wake-up) inside its own lock, and
    create_pipeline takes PPS's lock and then PFS's: if the wake-up needed
    PPS's lock the two would deadlock (seen as a 300 s hang under load)."""
    holding = threading.Event()
    release = threading.Event()

    def hold_pps_lock() -> None:  # what create_pipeline does before taking PFS's lock
        with stack.pps._lock:
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold_pps_lock, daemon=True)
    holder.start()
    assert holding.wait(5)
    finisher = threading.Thread(target=stack.put, args=("data", {"/a": b"a"}), daemon=True)
    try:
        finisher.start()  # finishes a commit: runs PPS's hook inside PFS's lock
        finisher.join(5)
        assert not finisher.is_alive(), "finishing a commit waited for PPS's lock"
    finally:
        release.set()
        holder.join(5)


# --- roles: a daemon without workers, worker processes ---------------------------------


def test_a_master_without_workers_leaves_every_datum_to_worker_processes(tmp_path: Any) -> None:
    """``tusk daemon --no-workers`` (role "master") plans and merges but runs
    no datum; a ``tusk worker`` (role "worker", its own PFS over the same
    stores, as another process has) runs them all."""
    def copy_and_say(datum: DatumRun) -> Act:
        return Act(files=copy_inputs(datum).files, stdout=b"ran\n")

    meta, blobs = MemoryMetadataStore(), BlobStore(MemoryObjectStore())
    pfs = PFS(meta, blobs)
    master_runner, worker_runner = FakeRunner(copy_and_say), FakeRunner(copy_and_say)
    master = PPS(pfs, str(tmp_path / "m"), runner=master_runner, role="master",
                 default_image="test/default:1")
    worker: PPS | None = None
    try:
        pfs.create_repo("data")
        with pfs.modify_file("data", "master") as w:
            for name in ("a", "b", "c"):
                w.put_file(f"/{name}", [name.encode()])
        master.create_pipeline({"pipeline": {"name": "p"},
                                "transform": {"image": "test/img:1", "cmd": ["user-code"]},
                                "input": {"pfs": {"repo": "data", "glob": "/*"}}})
        [job] = master.list_job("p")
        wait_for(lambda: master.inspect_job("p", job.id).state == JobState.RUNNING)
        time.sleep(0.3)  # time enough for a worker of the master's to claim a unit
        assert master.inspect_job("p", job.id).data_processed == 0
        worker = PPS(PFS(meta, blobs, recover=False), str(tmp_path / "w"), runner=worker_runner,
                     role="worker", default_image="test/default:1")
        done = master.inspect_job("p", job.id, wait=True, timeout=10)
        assert (done.state, done.data_processed) == (JobState.SUCCESS, 3)
        assert master_runner.specs == [] and len(worker_runner.specs) == 1
        ran_by = [line.worker for line in master.get_logs("p", worker=True)]
        assert ran_by == [worker.instance] * 3
    finally:
        if worker is not None:
            worker.close()
        master.close()


class _FlakyGrants:
    """A metadata store whose next ``fail`` lease grants fail as an unreachable
    etcd's do; everything else goes to the wrapped store."""

    def __init__(self, inner: MemoryMetadataStore) -> None:
        self.inner = inner
        self.fail = 0

    def grant_lease(self, ttl: float) -> int:
        if self.fail:
            self.fail -= 1
            raise Unavailable("etcd", "no route to host")
        return self.inner.grant_lease(ttl)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_worker_whose_lease_expired_gets_a_new_one_even_if_the_first_grant_fails(
        tmp_path: Any) -> None:
    """A host cut off past its claim TTL finds its lease gone when it is back
    (keepalive: NotFound) and must claim on a new one; if the link flaps and
    that grant fails too, the keepalive thread must keep trying, or the worker
    would claim on a dead lease for ever."""
    meta = _FlakyGrants(MemoryMetadataStore())
    pfs = PFS(meta, BlobStore(MemoryObjectStore()))  # type: ignore[arg-type]
    pps = PPS(pfs, str(tmp_path / "s"), runner=FakeRunner(copy_inputs), claim_ttl=0.3,
              default_image="test/default:1")
    try:
        old = pps.lease_id
        meta.fail = 2
        meta.inner.revoke_lease(old)  # expired while the host was cut off
        wait_for(lambda: pps.lease_id != old and meta.fail == 0, timeout=5)
        pfs.create_repo("data")
        with pfs.modify_file("data", "master") as w:
            w.put_file("/a", [b"a"])
        pps.create_pipeline({"pipeline": {"name": "p"},
                             "transform": {"image": "test/img:1", "cmd": ["user-code"]},
                             "input": {"pfs": {"repo": "data", "glob": "/*"}}})
        [job] = pps.list_job("p")
        done = pps.inspect_job("p", job.id, wait=True, timeout=10)
        assert (done.state, done.data_processed) == (JobState.SUCCESS, 1)
    finally:
        pps.close()


def test_a_wake_up_that_comes_while_a_loop_is_busy_is_not_slept_through(
        make: Callable[..., Stack]) -> None:
    """A master checks its job, then waits to be woken; a worker in another
    process marking the last unit done wakes it through the metadata watch.
    If that wake-up lands between the check and the wait it must not be lost
    (it was: the job then finished at the 5 s timeout instead)."""
    pps = make().pps  # nothing in it writes metadata: no other wake-ups
    stop = threading.Event()
    pps._wait(stop, 0.01)  # the loop waited, and was woken or timed out
    pps._notify()  # a change lands while it checks its job
    t0 = time.monotonic()
    pps._wait(stop, 5.0)  # so its next wait ends at once
    assert time.monotonic() - t0 < 1.0
    t0 = time.monotonic()
    pps._wait(stop, 0.3)  # and the one after waits again
    assert time.monotonic() - t0 >= 0.25
