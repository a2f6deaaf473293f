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


# --- the container itself (Docker only) ---------------------------------------------------

DOCKER_DEFAULT_CAPS = 0x00000000A80425FB  # Docker's default capability set (moby)


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
