"""Shared test fixtures.

Real servers: ``tests.fixtures.etcd`` and ``tests.fixtures.s3`` start throwaway
etcd and SeaweedFS servers (or use the ones ``deploy/services.sh up`` started,
through ``TUSK_TEST_ETCD`` / ``TUSK_TEST_S3``). Without a server a test skips
and says why; with ``CI=true`` it fails instead.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

# Before anything imports grpc (test modules do, ahead of tusk): see tusk/__init__.py.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

import pytest

from pfs.api import PFS, open_pfs

pytest_plugins = ["tests.fixtures.etcd", "tests.fixtures.s3"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The shell-only image ``deploy/images/build.sh`` builds from Debian packages.
IMAGE = "tusk/busybox:latest"


def _docker_ok() -> tuple[bool, str]:
    try:
        import docker

        docker.from_env(timeout=5).ping()
        return True, ""
    except Exception as e:
        return False, str(e)


@pytest.fixture(scope="session")
def busybox_image() -> str:
    ok, why = _docker_ok()
    if not ok:
        msg = f"no Docker engine ({why}): run deploy/services.sh up"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    subprocess.run(["bash", os.path.join(ROOT, "deploy/images/build.sh")], check=True,
                   capture_output=True)
    return IMAGE


BACKENDS = ["memory", "embedded", "real"]


@pytest.fixture(params=BACKENDS)
def pfs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PFS]:
    """A PFS core on each backend: in-memory, embedded (SQLite + local
    directory), and real (etcd + S3 on SeaweedFS)."""
    data_dir = str(tmp_path_factory.mktemp("pfs"))
    if request.param == "memory":
        svc = open_pfs(data_dir, "memory://", "memory://")
    elif request.param == "embedded":
        svc = open_pfs(data_dir)
    else:
        etcd = request.getfixturevalue("etcd_endpoint")
        s3 = request.getfixturevalue("s3_endpoint")
        bucket = f"tusk-{uuid.uuid4().hex[:12]}"
        svc = open_pfs(data_dir, f"etcd://{etcd}/t-{uuid.uuid4().hex[:8]}",
                       f"s3://{bucket}/objects?endpoint=http://{s3}")
    yield svc
    svc.meta.close()
    if request.param == "real":
        from tests.fixtures.s3 import drop_bucket  # a plugin: pytest imports it first

        drop_bucket(bucket)
