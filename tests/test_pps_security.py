"""Untrusted pipeline code against real runners: it cannot reach the host.

What a malicious or careless ``cmd`` does in ``/pfs/out`` (links to the
host's files, dangling links, FIFOs) is run through PPS with the Docker
runner and the bubblewrap process runner, and the container's own
privileges are read from inside it. ``tests/test_controller.py`` covers the
same rules in milliseconds with a scripted runner.
"""

from __future__ import annotations

import io
import os
import tarfile
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from pfs.api import PFS, open_pfs
from pps.api import PPS
from pps.model import JobInfo, JobState
from pps.runners import Runner
from tests.conftest import IMAGE
from tests.test_pps import files, put

SECRET = b"the host's secret, never to be read by a pipeline\n"


@pytest.fixture(params=["docker", "process"])
def runner(request: pytest.FixtureRequest) -> Runner:
    if request.param == "docker":
        request.getfixturevalue("busybox_image")
        from pps.runners.docker import DockerRunner

        return DockerRunner()
    from pps.runners.process import ProcessRunner

    r = ProcessRunner()
    ok, why = r.available()
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no usable bubblewrap: {why}")
        pytest.skip(f"no usable bubblewrap ({why}): apt-get install -y bubblewrap")
    return r


@pytest.fixture
def stack(runner: Runner, tmp_path: Any) -> Iterator[tuple[PFS, PPS, str]]:
    secret = tmp_path / "host-secret.txt"
    secret.write_bytes(SECRET)
    pfs = open_pfs(str(tmp_path / "data"))
    pps = PPS(pfs, str(tmp_path / "scratch"), runner=runner)
    pfs.create_repo("data")
    put(pfs, "data", {"/a.txt": b"alpha\n", "/sub/b.txt": b"beta\n"})
    yield pfs, pps, str(secret)
    pps.close()
    pfs.meta.close()


def run(pps: PPS, name: str, script: str, glob: str = "/", **extra: Any) -> JobInfo:
    pps.create_pipeline({"pipeline": {"name": name},
                         "transform": {"image": IMAGE, "cmd": ["sh", "-c", script]},
                         "input": {"pfs": {"repo": "data", "glob": glob}},
                         "datum_tries": 1, **extra})
    job = pps.list_job(name)[0].id
    return pps.inspect_job(name, job, wait=True, timeout=120)


def test_the_scratch_directory_is_the_workers_alone(stack: tuple[PFS, PPS, str],
                                                    tmp_path: Any) -> None:
    """Datum directories under it are world-writable while user code runs
    (any uid may run in a container): no other host user may reach them."""
    _, pps, _ = stack
    assert os.stat(pps.scratch_dir).st_mode & 0o777 == 0o700


def test_link_to_a_host_file_fails_and_never_reads_it(stack: tuple[PFS, PPS, str]) -> None:
    pfs, pps, secret = stack
    j = run(pps, "leak", f"ln -s {secret} /pfs/out/leak")
    assert j.state == JobState.FAILURE
    assert "/pfs/out/leak is a symlink to" in j.reason and secret in j.reason
    assert "write the file into /pfs/out instead of linking it" in j.reason
    assert all(SECRET not in v for v in files(pfs, "leak").values())


def test_link_to_host_etc_fails(stack: tuple[PFS, PPS, str]) -> None:
    pfs, pps, _ = stack
    j = run(pps, "etc", "ln -s /etc /pfs/out/etc")
    assert j.state == JobState.FAILURE and "'/etc'" in j.reason
    assert files(pfs, "etc") == {}


def test_dangling_link_fails_the_job_instead_of_hanging_it(stack: tuple[PFS, PPS, str]) -> None:
    _, pps, _ = stack
    j = run(pps, "dangle", "ln -s /nonexistent /pfs/out/x")
    assert j.state == JobState.FAILURE and "/pfs/out/x is a symlink to '/nonexistent'" in j.reason


def test_fifo_fails_the_job_instead_of_blocking_it(stack: tuple[PFS, PPS, str]) -> None:
    _, pps, _ = stack
    j = run(pps, "fifo", "mkfifo /pfs/out/pipe")
    assert j.state == JobState.FAILURE and "/pfs/out/pipe is a named pipe (FIFO)" in j.reason


def test_pachyderms_link_idiom_stores_the_inputs_content(stack: tuple[PFS, PPS, str]) -> None:
    """``ln -s /pfs/<input>/file /pfs/out/file`` (Pachyderm's examples/shuffle),
    one datum per file or directory."""
    pfs, pps, _ = stack
    j = run(pps, "shuffle", 'ln -s "$data" /pfs/out/$(basename "$data")', glob="/*")
    assert j.state == JobState.SUCCESS, j.reason
    assert files(pfs, "shuffle") == {"/a.txt": b"alpha\n", "/sub/b.txt": b"beta\n"}


def test_relative_links_resolve_as_the_container_sees_them(stack: tuple[PFS, PPS, str]) -> None:
    pfs, pps, _ = stack
    j = run(pps, "rel", 'mkdir /pfs/out/d; ln -s ../../data/a.txt /pfs/out/d/a.txt; '
                        'ln -s ../data/sub /pfs/out/subdir')
    assert j.state == JobState.SUCCESS, j.reason
    assert files(pfs, "rel") == {"/d/a.txt": b"alpha\n", "/subdir/b.txt": b"beta\n"}


def test_a_directory_swapped_for_a_link_during_the_upload_reads_no_host_file(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """User code still running after the datum (a background process, its cwd
    in a directory moved from /pfs/out to the worker's output directory) swaps
    a directory for a link to the host's files while the worker walks it: the
    worker must not read through it. Deterministic: the swap is done by the
    worker's own listing of that directory (the Docker test below does it for real)."""
    from pfs.blobs import BlobStore
    from pfs.metadata import MemoryMetadataStore
    from pfs.objects import MemoryObjectStore
    from pps.runners.fake import Act, FakeRunner

    host = tmp_path / "host"
    host.mkdir()
    (host / "a").write_bytes(SECRET)
    (host / "passwd").write_bytes(SECRET)
    outs: list[str] = []

    def behaviour(d: Any) -> Act:
        outs.append(d.out_dir)
        return Act(files={"/X/d/a": b"mine\n", "/X/d/passwd": b"mine too\n"})

    real_scandir = os.scandir

    class Listing:
        """What os.scandir returns, read in full before the swap."""

        def __init__(self, entries: list[Any]) -> None:
            self.it = iter(entries)

        def __iter__(self) -> Any:
            return self

        def __next__(self) -> Any:
            return next(self.it)

        def __enter__(self) -> Any:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def close(self) -> None:
            pass

    def racing_scandir(*args: Any) -> Any:
        with real_scandir(*args) as it:
            entries = list(it)
        if sorted(e.name for e in entries) == ["a", "passwd"] and outs:
            d = os.path.join(outs[-1], "X", "d")
            if os.path.isdir(d) and not os.path.islink(d):
                os.rename(d, d + ".real")
                os.symlink(host, d)
        return Listing(entries)

    pfs = PFS(MemoryMetadataStore(), BlobStore(MemoryObjectStore()))
    pps = PPS(pfs, str(tmp_path / "scratch"), runner=FakeRunner(behaviour))
    try:
        pfs.create_repo("data")
        put(pfs, "data", {"/a.txt": b"alpha\n"})
        monkeypatch.setattr(os, "scandir", racing_scandir)
        j = run(pps, "swap", "true")
        monkeypatch.undo()
        assert j.state == JobState.FAILURE, files(pfs, "swap")
        assert "/pfs/out/X/d/a could not be read safely" in j.reason, j.reason
    finally:
        monkeypatch.undo()
        pps.close()


# --- the container itself (Docker only) ---------------------------------------------------

DOCKER_DEFAULT_CAPS = 0x00000000A80425FB  # Docker's default capability set (moby)
CAP_MKNOD = 1 << 27


@pytest.fixture
def docker_stack(busybox_image: str, tmp_path: Any) -> Iterator[tuple[PFS, PPS]]:
    from pps.runners.docker import DockerRunner

    pfs = open_pfs(str(tmp_path / "data"))
    pps = PPS(pfs, str(tmp_path / "scratch"), runner=DockerRunner())
    pfs.create_repo("data")
    put(pfs, "data", {"/a.txt": b"alpha\n"})
    yield pfs, pps
    pps.close()
    pfs.meta.close()


def test_user_code_cannot_make_a_device_node_for_the_worker_to_open(
        docker_stack: tuple[PFS, PPS]) -> None:
    _, pps = docker_stack
    j = run(pps, "mknod", "mknod /pfs/out/dev c 1 3")
    assert j.state == JobState.FAILURE
    assert "mknod: /pfs/out/dev: Operation not permitted" in j.reason, j.reason


def test_container_has_no_new_privileges_and_only_default_capabilities(
        docker_stack: tuple[PFS, PPS]) -> None:
    pfs, pps = docker_stack
    j = run(pps, "privs", "grep -E '^(NoNewPrivs|CapEff|CapPrm):' /proc/self/status "
                          "> /pfs/out/status; cat /proc/self/mountinfo > /pfs/out/mounts")
    assert j.state == JobState.SUCCESS, j.reason
    out = files(pfs, "privs")
    status = dict(line.split(":\t") for line in out["/status"].decode().splitlines())
    assert status["NoNewPrivs"].strip() == "1"
    assert int(status["CapEff"], 16) & ~DOCKER_DEFAULT_CAPS == 0
    # No device nodes: one in /pfs/out or the agent's io/ would be the host's
    # device for the worker that opens it.
    assert int(status["CapEff"], 16) & CAP_MKNOD == 0
    # Bind mounts (a root other than "/") are only the session's own
    # directories, the files Docker writes itself for every container, and its
    # init (init=True); /proc, /sys and /dev are the kernel's, masked by Docker.
    binds = set()
    for line in out["/mounts"].decode().splitlines():
        fields = line.split()
        root, point = fields[3], fields[4]
        if root != "/" and not point.startswith(("/proc", "/sys", "/dev")):
            binds.add(point)
    allowed = {"/pfs", "/pfs/out", "/.tusk", "/.tusk/io", "/etc/hosts", "/etc/hostname",
               "/etc/resolv.conf", "/sbin/docker-init"}
    assert binds <= allowed, binds - allowed


def test_a_background_process_swapping_an_output_directory_reads_no_host_file(
        docker_stack: tuple[PFS, PPS], tmp_path: Any) -> None:
    """The real attack: a process left running by the datum waits until the
    worker reads X/d/big (its access time changes), then swaps d for a link to
    a host directory; the worker's walk of d goes on to X/d/passwd."""
    pfs, pps = docker_stack
    host = tmp_path / "host"
    host.mkdir()
    (host / "passwd").write_bytes(SECRET)
    script = ("mkdir -p /pfs/out/X/d; head -c 100000000 /dev/urandom > /pfs/out/X/d/big; "
              "echo mine > /pfs/out/X/d/passwd; "
              "(cd /pfs/out/X; t=$(stat -c %x d/big); "
              "while [ \"$(stat -c %x d/big)\" = \"$t\" ]; do :; done; "
              f"mv d real; ln -s {host} d) >/dev/null 2>&1 &")
    j = run(pps, "swap", script)
    assert all(SECRET not in v for v in files(pfs, "swap").values())
    assert j.state == JobState.FAILURE, sorted(files(pfs, "swap"))
    assert "/pfs/out/X/d/passwd" in j.reason, j.reason


@pytest.fixture
def workdir_image(busybox_image: str) -> Iterator[str]:
    """An image with its own WORKDIR and USER, built from tusk/busybox (no network)."""
    import docker

    client = docker.from_env()
    tag = f"tusk-test/workdir:{uuid.uuid4().hex[:8]}"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))

        add("Dockerfile", f"FROM {busybox_image}\nCOPY main.sh /app/inner/main.sh\n"
                          "WORKDIR /app\nUSER 4321:4321\n".encode())
        add("main.sh", b'echo "$(id -u) $(pwd)" > /pfs/out/who\n', 0o755)
    buf.seek(0)
    client.images.build(fileobj=buf, custom_context=True, tag=tag, network_mode="none",
                        rm=True)
    yield tag
    client.images.remove(tag, force=True)


def test_image_workdir_and_user_apply_when_the_spec_names_none(
        docker_stack: tuple[PFS, PPS], workdir_image: str) -> None:
    pfs, pps = docker_stack
    pps.create_pipeline({"pipeline": {"name": "wd"},
                         "transform": {"image": workdir_image, "cmd": ["sh", "inner/main.sh"]},
                         "input": {"pfs": {"repo": "data", "glob": "/"}}})
    j = pps.inspect_job("wd", pps.list_job("wd")[0].id, wait=True, timeout=120)
    assert j.state == JobState.SUCCESS, j.reason
    assert files(pfs, "wd")["/who"] == b"4321 /app\n"
    pps.create_pipeline({"pipeline": {"name": "wd2"},
                         "transform": {"image": workdir_image, "cmd": ["sh", "/app/inner/main.sh"],
                                       "user": "0", "working_dir": "/tmp"},
                         "input": {"pfs": {"repo": "data", "glob": "/"}}})
    j = pps.inspect_job("wd2", pps.list_job("wd2")[0].id, wait=True, timeout=120)
    assert j.state == JobState.SUCCESS, j.reason
    assert files(pfs, "wd2")["/who"] == b"0 /tmp\n"
