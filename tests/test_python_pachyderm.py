"""python-pachyderm 7.x, Pachyderm's older Python client (protobuf 3, so its own
virtual environment ``.venvs/python-pachyderm``), against a fresh tusk daemon:
a repo, a file put and read back, a pipeline (``alpine``, ``sh`` copying its
input to its output) and a wait for its output commit and job."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemons import DaemonProc

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.docker]

PROGRAM = textwrap.dedent('''
    import sys

    import python_pachyderm
    from python_pachyderm.service import pps_proto

    client = python_pachyderm.Client(host=sys.argv[1], port=int(sys.argv[2]))
    version = client.get_remote_version()
    print("server", version.major, version.minor, version.micro)

    client.create_repo("images", description="from python-pachyderm")
    with client.commit("images", "master") as commit:
        client.put_file_bytes(commit, "/a.dat", b"DATA")
        client.put_file_bytes(commit, "/b.dat", b"MORE")
    assert [r.repo.name for r in client.list_repo()] == ["images"]
    assert client.get_file(("images", "master"), "/a.dat").read() == b"DATA"

    client.create_pipeline(
        "copy",
        transform=pps_proto.Transform(cmd=["sh"], image="alpine",
                                      stdin=["cp /pfs/images/*.dat /pfs/out/"]),
        input=pps_proto.Input(pfs=pps_proto.PFSInput(glob="/*", repo="images")),
    )
    finished = client.wait_commit(("copy", "master"))
    assert finished and all(ci.finished.seconds for ci in finished), finished
    assert client.get_file(("copy", "master"), "/a.dat").read() == b"DATA"
    assert client.get_file(("copy", "master"), "/b.dat").read() == b"MORE"
    jobs = list(client.list_job("copy"))
    assert [pps_proto.JobState.Name(j.state) for j in jobs] == ["JOB_SUCCESS"], jobs
    assert jobs[0].data_processed == 2, jobs[0]
    print("ok")
''')


@pytest.fixture(scope="module")
def python_pachyderm() -> str:
    """The interpreter of ``.venvs/python-pachyderm`` (made by scripts/sdk-suite)."""
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "sdk-suite"),
                          "--venv", "python-pachyderm"], capture_output=True, text=True,
                         timeout=900)
    if run.returncode != 0:
        msg = f"cannot prepare .venvs/python-pachyderm (no package index?): {run.stderr[-2000:]}"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return run.stdout.strip().splitlines()[-1]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProc]:
    d = DaemonProc(tmp_path).start()
    yield d
    d.close()


def test_python_pachyderm_7_runs_a_pipeline(busybox_image: str, python_pachyderm: str,
                                             daemon: DaemonProc, tmp_path: Path) -> None:
    # busybox_image: a Docker engine and deploy/images/build.sh's images, alpine too.
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    env = dict(os.environ, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    run = subprocess.run([python_pachyderm, str(program), "127.0.0.1", str(daemon.port)],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0 and run.stdout.endswith("ok\n"), (
        f"exit {run.returncode}\n{run.stdout}\n{run.stderr[-4000:]}\n"
        f"daemon log:\n{daemon.log()[-3000:]}")
    assert "server 2 12" in run.stdout
