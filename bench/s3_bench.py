"""S3 gateway speed targets: boto3 against ``tusk daemon --s3-address``.

The daemon serves S3's REST API over PFS (``tusk/s3/``). These benchmarks drive
it with boto3 as a user would and compare it with a baseline **measured in the
same run**, interleaved, medians::

    NAME  tusk=MEDIAN  baseline=MEDIAN  ratio=R  target=...  PASS|FAIL   (details)

``ratio`` is always ``tusk / baseline`` and the target an upper bound on it, so a
throughput target ("at least 0.7x") is printed as a time ratio (<= 1/0.7 = 1.43);
the details repeat it in the issue's terms. Where the target is an absolute limit
(200 ms) the limit is printed as the baseline. Every benchmark starts its own
``tusk daemon`` subprocess(es) on free loopback ports with a temporary data
directory; the script ends only the processes it started, by PID.

* ``s3_get_1gib``: GetObject of a 1 GiB file with boto3, reading the body as a
  stream (``Body.read(1 MiB)`` in a loop) vs ``tusk get file REPO@master:/big >
  /dev/null`` with ``TUSK_DIRECT=0`` (the CLI streams through the daemon's
  gRPC, as any remote client does). Target: throughput >= 0.7x.
  ``s3_get_1gib_download_fileobj`` (boto3's ranged, threaded download) is
  informational.
* ``s3_put_1gib_multipart``: boto3 ``upload_file`` (multipart, 8 MiB parts, 10
  threads: boto3's defaults, pinned) of 1 GiB of fresh random bytes to the
  gateway (a fresh daemon per put) vs the same call, same file, same config to
  SeaweedFS directly (a fresh bucket per put, deleted after). Target:
  throughput >= 0.7x.
* ``s3_list_100k_first_page``: ``list_objects_v2(Prefix=...)`` on a prefix
  holding 100,000 keys, first page (1000 keys), median of many calls. Target:
  < 200 ms. ``s3_list_100k_first_page_server`` is the same request as a raw
  unsigned HTTP GET with urllib (the server alone, no boto3 parsing).

Results go to ``bench/out/s3-results-TIMESTAMP.json`` and
``bench/out/s3-latest.json``. The exit code is always 0.
``docs/benchmarks-s3.md`` describes the scenarios and the last results.

Usage::

    python bench/s3_bench.py [--quick] [--only NAME[,NAME...]] [--runs N] [--tmp DIR]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import mmap
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import traceback
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "bench" / "out"
sys.path.insert(0, str(REPO_ROOT))  # `python bench/s3_bench.py` imports tusk

# tusk's client (in this process and the CLI's) must stream through gRPC, not
# read the daemon's object store itself: Client.direct_target() reads this.
os.environ["TUSK_DIRECT"] = "0"

MiB = 1024 * 1024
GiB = 1024 * MiB
READ_AMT = MiB  # Body.read(amt) piece size
PART = 8 * MiB  # boto3's default multipart threshold and part size

# Processes this script started, so an interrupted run ends them (by PID only).
_CHILDREN: list[subprocess.Popen[bytes]] = []


# --- sizes --------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """The scale of every scenario: the issue's numbers, or smaller for ``--quick``."""

    get_size: int
    get_runs: int  # per side
    put_size: int
    put_runs: int  # per side
    list_keys: int
    list_calls: int  # per side


FULL = Sizes(get_size=GiB, get_runs=5, put_size=GiB, put_runs=3,
             list_keys=100_000, list_calls=30)
QUICK = Sizes(get_size=64 * MiB, get_runs=3, put_size=64 * MiB, put_runs=2,
              list_keys=10_000, list_calls=10)


# --- results ------------------------------------------------------------------


@dataclass
class Result:
    """One printed line: ``tusk / baseline <= target``."""

    name: str
    unit: str  # "s"
    tusk_runs: list[float]
    baseline_runs: list[float]
    target: float
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tusk(self) -> float:
        return statistics.median(self.tusk_runs)

    @property
    def baseline(self) -> float:
        return statistics.median(self.baseline_runs)

    @property
    def ratio(self) -> float:
        return self.tusk / self.baseline if self.baseline else float("inf")

    @property
    def passed(self) -> bool:
        return self.ratio <= self.target

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        text = (f"{self.name:<30} tusk={fmt(self.tusk, self.unit):<9} "
                f"baseline={fmt(self.baseline, self.unit):<9} ratio={self.ratio:<7.3f} "
                f"target=<={self.target:<6.3g} {verdict}")
        return f"{text}  ({self.note})" if self.note else text

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(tusk=self.tusk, baseline=self.baseline, ratio=self.ratio, passed=self.passed)
        return d


def fmt(value: float, unit: str) -> str:
    if unit == "s":
        if value < 0.01:
            return f"{value * 1000:.2f}ms"
        return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.2f}s"
    return f"{value:.3g}"


def mib_s(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / MiB if seconds else 0.0


class Skip(Exception):
    """A benchmark cannot run here (no boto3, no SeaweedFS); the message says why."""


# --- processes ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _end_children() -> None:
    for proc in _CHILDREN:
        if proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


atexit.register(_end_children)


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def tusk_exe() -> str:
    """The interpreter's own ``tusk`` script (not a version manager's shim)."""
    script = os.path.join(sysconfig.get_path("scripts"), "tusk")
    return script if os.access(script, os.X_OK) else (shutil.which("tusk") or "tusk")


def daemon_env() -> dict[str, str]:
    """No ambient TUSK_* settings (an S3 key would turn signature checks on);
    this checkout first on the import path (the daemon and the CLI run this
    tree's code whatever the editable install points at); TUSK_DIRECT=0."""
    drop = ("TUSK_ADDRESS", "TUSK_METADATA", "TUSK_STORAGE", "TUSK_DATA_DIR",
            "TUSK_S3_ADDRESS", "TUSK_S3_ACCESS_KEY", "TUSK_S3_SECRET_KEY")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["TUSK_DIRECT"] = "0"
    return env


def compile_bytecode() -> None:
    """Write the bytecode caches of tusk's packages, as installing a wheel does
    (this sandbox sets PYTHONDONTWRITEBYTECODE=1: every CLI process would
    compile its modules from source again, a cost no installed tusk pays)."""
    import compileall

    for package in ("cli", "pfs", "pps", "tusk"):
        compileall.compile_dir(str(REPO_ROOT / package), quiet=1)


CLK_TCK = os.sysconf("SC_CLK_TCK")
WARM_BYTES = 2 * GiB


def settle() -> None:
    """Before a timed step that moves ~1 GiB: flush dirty pages, then touch and
    free ``WARM_BYTES`` so the step finds warm pages (these VMs hand freed memory
    back to the host, and the first touch of such a page is a host page fault:
    see bench/README.md, "Warm pages before each large step")."""
    os.sync()
    block = mmap.mmap(-1, WARM_BYTES)
    page = b"\1" * mmap.PAGESIZE
    for at in range(0, WARM_BYTES, mmap.PAGESIZE):
        block[at:at + mmap.PAGESIZE] = page
    block.close()


class Daemon:
    """One ``tusk daemon`` with its gRPC API and S3 gateway on free loopback
    ports, no S3 credentials (any signature accepted), data under ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.s3_port = free_port()
        self.s3_url = f"http://127.0.0.1:{self.s3_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.with_name(data_dir.name + ".log")

    def start(self, timeout: float = 60.0) -> Daemon:
        args = [tusk_exe(), "daemon", "--data-dir", str(self.data_dir),
                "--address", self.address, "--s3-address", f"127.0.0.1:{self.s3_port}",
                "--log-level", "WARNING"]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=daemon_env())
        _CHILDREN.append(self.proc)
        deadline = time.monotonic() + timeout
        while b"listening on" not in self.log.read_bytes():
            if self.proc.poll() is not None:
                raise RuntimeError(f"tusk daemon exited {self.proc.returncode}: "
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"tusk daemon did not start in {timeout} s")
            time.sleep(0.02)
        if b"S3 gateway on" not in self.log.read_bytes():
            raise RuntimeError(f"tusk daemon started without its S3 gateway: "
                               f"{self.log.read_text(errors='replace')[-2000:]}")
        return self

    def cpu_seconds(self) -> float:
        """User + system CPU time of the daemon so far (all its threads)."""
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime

    def peak_rss(self) -> int:
        """The daemon's peak resident set size (VmHWM), in bytes."""
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM in /proc status")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Context:
    """Shared state of one run: sizes and the temp root."""

    def __init__(self, sizes: Sizes, root: Path) -> None:
        self.sizes = sizes
        self.root = root

    def scratch(self, name: str) -> Path:
        d = self.root / f"{name}-{uuid.uuid4().hex[:8]}"
        d.mkdir()
        return d

    def daemon(self, name: str) -> Daemon:
        return Daemon(self.scratch(name) / "data")


def write_random_file(path: Path, size: int) -> Path:
    """Incompressible, non-repeating content: nothing dedups, within the file
    or against anything written before."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(16 * MiB, left)
            f.write(os.urandom(n))
            left -= n
    return path


def boto3_client(endpoint: str, pool: int = 10) -> Any:
    """A path-style boto3 S3 client with throwaway credentials (neither the
    gateway without keys nor SeaweedFS with open auth checks them)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise Skip("boto3 is not installed: pip install boto3") from None
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="bench", aws_secret_access_key="bench-secret",
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=pool,
                      retries={"max_attempts": 1}))


def transfer_config() -> Any:
    """boto3's defaults written out (8 MiB threshold and parts, 10 threads),
    the classic transfer manager: the same on both sides of the put."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=PART, multipart_chunksize=PART,
                          max_concurrency=10, use_threads=True,
                          preferred_transfer_client="classic")


class NullWriter:
    """A write-only sink for ``download_fileobj`` that counts bytes."""

    def __init__(self) -> None:
        self.n = 0

    def write(self, data: bytes) -> int:
        self.n += len(data)
        return len(data)


# --- 1. s3_get_1gib ---------------------------------------------------------------


def bench_get(ctx: Context) -> list[Result]:
    """Read one file of random bytes back: boto3 GetObject stream vs ``tusk get file``."""
    from tusk.client import Client

    size, runs = ctx.sizes.get_size, ctx.sizes.get_runs
    with ctx.daemon("get") as d:
        s3 = boto3_client(d.s3_url)
        src = write_random_file(ctx.root / "get-input.bin", size)
        with Client(d.address) as tc:
            if tc.direct_target() is not None:
                raise RuntimeError("tusk's client took the direct path despite TUSK_DIRECT=0")
            tc.create_repo("bench")
            with tc.modify_file("bench", "master") as mf:
                mf.put_file_from_path("/big.bin", src)
        src.unlink()
        head = s3.head_object(Bucket="bench", Key="big.bin")
        if head["ContentLength"] != size:
            raise RuntimeError(f"the gateway says {head['ContentLength']} bytes, not {size}")

        def s3_stream() -> int:
            body = s3.get_object(Bucket="bench", Key="big.bin")["Body"]
            n = 0
            while piece := body.read(READ_AMT):
                n += len(piece)
            body.close()
            return n

        def s3_download() -> int:
            sink = NullWriter()
            s3.download_fileobj("bench", "big.bin", sink, Config=transfer_config())
            return sink.n

        def tusk_cli() -> int:
            with open(os.devnull, "wb") as null:
                subprocess.run([tusk_exe(), "--address", d.address, "get", "file",
                                "bench@master:/big.bin"], stdout=null,
                               stderr=subprocess.PIPE, env=daemon_env(), check=True)
            return size  # checked once below, untimed

        def tusk_client() -> int:
            with Client(d.address) as tc:
                return sum(len(p) for p in tc.get_file("bench", "master", "/big.bin"))

        # The CLI's byte count, once, untimed (`wc -c` of its stdout).
        out = subprocess.run([tusk_exe(), "--address", d.address, "get", "file",
                              "bench@master:/big.bin"], capture_output=True,
                             env=daemon_env(), check=True).stdout
        if len(out) != size:
            raise RuntimeError(f"tusk get file printed {len(out)} bytes, not {size}")
        del out

        fns: dict[str, Callable[[], int]] = {
            "s3_stream": s3_stream, "tusk_cli": tusk_cli,
            "s3_download_fileobj": s3_download, "tusk_client": tusk_client}
        keys = list(fns)
        times: dict[str, list[float]] = {k: [] for k in keys}
        cpu: dict[str, list[float]] = {k: [] for k in keys}
        for r in range(runs):
            for k in keys[r % len(keys):] + keys[:r % len(keys)]:  # rotate the order
                settle()
                cpu0 = d.cpu_seconds()
                t0 = time.perf_counter()
                n = fns[k]()
                times[k].append(time.perf_counter() - t0)
                cpu[k].append(d.cpu_seconds() - cpu0)
                if n != size:
                    raise RuntimeError(f"{k} read {n} bytes, not {size}")
        rss = d.peak_rss()
    shutil.rmtree(d.data_dir.parent, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: mib_s(size, v) for k, v in med.items()}
    dcpu = {k: statistics.median(v) for k, v in cpu.items()}
    note = (f"{size / MiB:.0f} MiB, {runs} runs each, rotating order; get_object stream "
            f"{rate['s3_stream']:.0f} MiB/s vs tusk get file {rate['tusk_cli']:.0f} MiB/s = "
            f"{rate['s3_stream'] / rate['tusk_cli']:.2f}x (target >= 0.7x); tusk.client "
            f"get_file in process {rate['tusk_client']:.0f} MiB/s; daemon CPU s: S3 "
            f"{dcpu['s3_stream']:.1f}, gRPC {dcpu['tusk_cli']:.1f}; daemon VmHWM "
            f"{rss / MiB:.0f} MiB")
    dl_note = (f"download_fileobj (8 MiB ranged GETs, 10 threads) "
               f"{rate['s3_download_fileobj']:.0f} MiB/s = "
               f"{rate['s3_download_fileobj'] / rate['tusk_cli']:.2f}x tusk get file; "
               f"daemon CPU {dcpu['s3_download_fileobj']:.1f} s; informational")
    extra = {"size": size, "seconds": times, "daemon_cpu": cpu, "mib_s": rate,
             "daemon_peak_rss": rss}
    return [Result("s3_get_1gib", "s", times["s3_stream"], times["tusk_cli"], 1 / 0.7,
                   note=note, extra=extra),
            Result("s3_get_1gib_download_fileobj", "s", times["s3_download_fileobj"],
                   times["tusk_cli"], 1 / 0.7, note=dl_note)]


# --- 2. s3_put_1gib_multipart ----------------------------------------------------


def seaweedfs_endpoint() -> str:
    """SeaweedFS's S3 address from ``deploy/services.sh`` (``TUSK_TEST_S3``, or
    ``/work/services/env``), checked to answer."""
    address = os.environ.get("TUSK_TEST_S3", "")
    env_file = Path(os.environ.get("TUSK_SERVICES_DIR", "/work/services")) / "env"
    if not address and env_file.exists():
        for line in env_file.read_text().splitlines():
            if line.startswith("export TUSK_TEST_S3="):
                address = line.split("=", 1)[1].strip().strip("'\"")
    if not address:
        raise Skip("no SeaweedFS: run `bash deploy/services.sh up /work/services; "
                   "source /work/services/env` (TUSK_TEST_S3=host:port)")
    url = f"http://{address}"
    try:
        with socket.create_connection(tuple(address.rsplit(":", 1)), timeout=5):  # type: ignore[arg-type]
            pass
    except OSError as exc:
        raise Skip(f"SeaweedFS at {address} does not answer ({exc})") from None
    return url


def _put_tusk(ctx: Context, src: Path, size: int) -> dict[str, float]:
    """A fresh daemon (empty store: nothing to dedup against); CreateBucket
    (untimed), one timed ``upload_file``, then checks (untimed)."""
    d = ctx.daemon("put-tusk").start()
    try:
        s3 = boto3_client(d.s3_url)
        s3.create_bucket(Bucket="bench")
        settle()
        cpu0, t0 = d.cpu_seconds(), time.perf_counter()
        s3.upload_file(str(src), "bench", "big.bin", Config=transfer_config())
        seconds = time.perf_counter() - t0
        cpu = d.cpu_seconds() - cpu0
        got = s3.head_object(Bucket="bench", Key="big.bin")["ContentLength"]
        if got != size:
            raise RuntimeError(f"the gateway stored {got} bytes, not {size}")
        return {"seconds": seconds, "daemon_cpu": cpu, "daemon_peak_rss": d.peak_rss()}
    finally:
        d.stop()
        shutil.rmtree(d.data_dir.parent, ignore_errors=True)


def _put_seaweedfs(endpoint: str, src: Path, size: int) -> dict[str, float]:
    """A fresh bucket; one timed ``upload_file``; the object and bucket deleted."""
    s3 = boto3_client(endpoint)
    bucket = f"tusk-s3-bench-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    try:
        settle()
        t0 = time.perf_counter()
        s3.upload_file(str(src), bucket, "big.bin", Config=transfer_config())
        seconds = time.perf_counter() - t0
        got = s3.head_object(Bucket=bucket, Key="big.bin")["ContentLength"]
        if got != size:
            raise RuntimeError(f"SeaweedFS stored {got} bytes, not {size}")
        return {"seconds": seconds}
    finally:
        with contextlib.suppress(Exception):
            s3.delete_object(Bucket=bucket, Key="big.bin")
        with contextlib.suppress(Exception):
            s3.delete_bucket(Bucket=bucket)


def bench_put(ctx: Context) -> list[Result]:
    """Multipart upload of fresh random bytes: tusk's gateway vs SeaweedFS directly."""
    boto3_client("http://127.0.0.1:1")  # Skip early without boto3
    endpoint = seaweedfs_endpoint()
    size, runs = ctx.sizes.put_size, ctx.sizes.put_runs
    runs_by: dict[str, list[dict[str, float]]] = {"tusk": [], "seaweedfs": []}
    for r in range(runs):
        # New random content every round: the tusk side puts to a fresh daemon
        # and SeaweedFS to a fresh bucket, so nothing dedups or overwrites; both
        # sides of a round put the same file, the order alternating.
        src = write_random_file(ctx.root / f"put-input-{r}.bin", size)
        try:
            for side in (("tusk", "seaweedfs") if r % 2 == 0 else ("seaweedfs", "tusk")):
                if side == "tusk":
                    runs_by[side].append(_put_tusk(ctx, src, size))
                else:
                    runs_by[side].append(_put_seaweedfs(endpoint, src, size))
        finally:
            src.unlink()
    secs = {k: [x["seconds"] for x in v] for k, v in runs_by.items()}
    rate = {k: mib_s(size, statistics.median(v)) for k, v in secs.items()}
    dcpu = statistics.median(x["daemon_cpu"] for x in runs_by["tusk"])
    rss = max(x["daemon_peak_rss"] for x in runs_by["tusk"])
    note = (f"{size / MiB:.0f} MiB, {runs} runs each, {PART // MiB} MiB parts x 10 threads; "
            f"gateway {rate['tusk']:.0f} MiB/s vs SeaweedFS {rate['seaweedfs']:.0f} MiB/s = "
            f"{rate['tusk'] / rate['seaweedfs']:.2f}x (target >= 0.7x); daemon CPU "
            f"{dcpu:.1f} s, VmHWM {rss / MiB:.0f} MiB")
    return [Result("s3_put_1gib_multipart", "s", secs["tusk"], secs["seaweedfs"], 1 / 0.7,
                   note=note, extra={"runs": runs_by, "size": size, "mib_s": rate,
                                     "seaweedfs": endpoint})]


# --- 3. s3_list_100k_first_page ---------------------------------------------------


@contextlib.contextmanager
def seaweedfs_page(keys: int) -> Any:
    """A fresh SeaweedFS bucket holding ``keys`` tiny objects under ``keys/``
    (yields (client, bucket), or None without SeaweedFS); emptied and deleted after."""
    try:
        endpoint = seaweedfs_endpoint()
    except Skip:
        yield None
        return
    from concurrent.futures import ThreadPoolExecutor

    s3 = boto3_client(endpoint, pool=16)
    bucket = f"tusk-s3-bench-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    names = [f"keys/{i:07d}.txt" for i in range(keys)]
    try:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b"x"), names))
        yield s3, bucket
    finally:
        with contextlib.suppress(Exception):
            for at in range(0, len(names), 1000):
                s3.delete_objects(Bucket=bucket, Delete={
                    "Objects": [{"Key": k} for k in names[at:at + 1000]], "Quiet": True})
        with contextlib.suppress(Exception):
            s3.delete_bucket(Bucket=bucket)


def bench_list(ctx: Context) -> list[Result]:
    """First page of ListObjectsV2 on a prefix of 100,000 keys: boto3 and raw HTTP."""
    import re

    from botocore.parsers import RestXMLParser

    from tusk.client import Client

    n, calls = ctx.sizes.list_keys, ctx.sizes.list_calls
    limit = 0.2
    with ctx.daemon("list") as d, seaweedfs_page(1001) as weed:
        s3 = boto3_client(d.s3_url)
        # One commit through tusk's own client, no files on disk; a few keys
        # before and after the prefix so the listing has to seek to it.
        t0 = time.perf_counter()
        with Client(d.address) as tc:
            tc.create_repo("bench")
            with tc.modify_file("bench", "master") as mf:
                for i in range(100):
                    mf.put_file(f"/a/{i:03d}.txt", b"a")
                for i in range(n):
                    mf.put_file(f"/keys/{i:07d}.txt", b"%d\n" % i)
                for i in range(100):
                    mf.put_file(f"/z/{i:03d}.txt", b"z")
        create_s = time.perf_counter() - t0
        url = f"{d.s3_url}/bench?list-type=2&prefix=keys%2F"

        def raw() -> bytes:
            with urllib.request.urlopen(url, timeout=60) as r:
                body: bytes = r.read()
            return body

        fns: dict[str, Callable[[], object]] = {
            "boto3": lambda: s3.list_objects_v2(Bucket="bench", Prefix="keys/"),
            "raw": raw}
        if weed is not None:
            wc, wb = weed
            fns["seaweedfs_boto3"] = lambda: wc.list_objects_v2(Bucket=wb, Prefix="keys/")

        first: dict[str, Any] = s3.list_objects_v2(Bucket="bench", Prefix="keys/")
        keys = [o["Key"] for o in first.get("Contents", [])]
        if (len(keys) != 1000 or keys[0] != "keys/0000000.txt" or not first["IsTruncated"]):
            raise RuntimeError(f"unexpected first page: {len(keys)} keys, "
                               f"first {keys[:1]}, truncated {first.get('IsTruncated')}")
        body = raw()
        if body.count(b"<Key>") != 1000:
            raise RuntimeError(f"raw listing has {body.count(b'<Key>')} keys, not 1000")
        for fn in fns.values():  # warm every path
            for _ in range(3):
                fn()
        names = list(fns)
        times: dict[str, list[float]] = {k: [] for k in names}
        for i in range(calls):
            for k in names[i % len(names):] + names[:i % len(names)]:  # rotate the order
                t0 = time.perf_counter()
                fns[k]()
                times[k].append(time.perf_counter() - t0)
        # A page from the middle (StartAfter seeks to key n/2), informational.
        mid_after = f"keys/{n // 2:07d}.txt"
        mid = []
        for _ in range(max(5, calls // 3)):
            t0 = time.perf_counter()
            page = s3.list_objects_v2(Bucket="bench", Prefix="keys/", StartAfter=mid_after)
            mid.append(time.perf_counter() - t0)
        if page["Contents"][0]["Key"] != f"keys/{n // 2 + 1:07d}.txt":
            raise RuntimeError(f"StartAfter page starts at {page['Contents'][0]['Key']}")
        rss = d.peak_rss()
    shutil.rmtree(d.data_dir.parent, ignore_errors=True)

    # boto3's parsing alone: the raw body through botocore's parser, as sent and
    # without the <Owner> elements (ListObjectsV2 sends them only on FetchOwner).
    op = s3.meta.service_model.operation_model("ListObjectsV2")
    parser = RestXMLParser()
    no_owner = re.sub(rb"<Owner>.*?</Owner>", b"", body)

    def parse_time(data: bytes) -> float:
        ts = []
        for _ in range(7):
            t0 = time.perf_counter()
            parser.parse({"body": data, "headers": {}, "status_code": 200}, op.output_shape)
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    parse, parse_no_owner = parse_time(body), parse_time(no_owner)
    med = {k: statistics.median(v) for k, v in times.items()}
    m = statistics.median(mid)
    weed_note = (f"; boto3 on a 1000-key page of SeaweedFS {med['seaweedfs_boto3'] * 1000:.0f}ms"
                 if "seaweedfs_boto3" in med else "")
    note = (f"{n} keys under keys/ (+200 around it, one commit made in {create_s:.1f}s), "
            f"1000-key page ({len(body) / 1024:.0f} KiB of XML), {calls} calls each, "
            f"rotating; raw GET {med['raw'] * 1000:.1f}ms; botocore parse of that body "
            f"{parse * 1000:.0f}ms, {parse_no_owner * 1000:.0f}ms without <Owner> "
            f"({len(no_owner) / 1024:.0f} KiB){weed_note}; StartAfter the middle key "
            f"{m * 1000:.0f}ms; daemon VmHWM {rss / MiB:.0f} MiB; baseline: the 200 ms limit")
    raw_note = ("the same request as an unsigned urllib GET (body read whole, not "
                "parsed): the server and transport alone; informational")
    extra = {"keys": n, "create_seconds": create_s, "seconds": times, "middle_page": mid,
             "parse": parse, "parse_without_owner": parse_no_owner, "body_bytes": len(body)}
    return [Result("s3_list_100k_first_page", "s", times["boto3"], [limit], 1.0,
                   note=note, extra=extra),
            Result("s3_list_100k_first_page_server", "s", times["raw"], [limit], 1.0,
                   note=raw_note)]


BENCHMARKS: dict[str, Callable[[Context], list[Result]]] = {
    "s3_get_1gib": bench_get,  # and s3_get_1gib_download_fileobj
    "s3_put_1gib_multipart": bench_put,
    "s3_list_100k_first_page": bench_list,  # and ..._server
}


# --- main ---------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="64 MiB get and put, 10,000 keys, fewer runs (about a minute)")
    p.add_argument("--only", metavar="NAME[,NAME]",
                   help=f"run only these: {', '.join(BENCHMARKS)}")
    p.add_argument("--runs", type=int, help="override the number of gets and puts per side")
    p.add_argument("--tmp", help="where temporary data goes (default: the system temp dir)")
    args = p.parse_args(argv)

    sizes = QUICK if args.quick else FULL
    if args.runs:
        sizes = Sizes(**{**asdict(sizes), "put_runs": args.runs, "get_runs": args.runs})
    names = list(BENCHMARKS)
    if args.only:
        wanted = []
        for w in (n.strip() for n in args.only.split(",")):
            base = next((b for b in BENCHMARKS if w == b or w.startswith(b + "_")), w)
            if w:
                wanted.append(base)
        unknown = [n for n in wanted if n not in BENCHMARKS]
        if unknown:
            print(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}",
                  file=sys.stderr)
            return 0
        names = [n for n in BENCHMARKS if n in wanted]

    signal.signal(signal.SIGTERM, _on_sigterm)
    root = Path(tempfile.mkdtemp(prefix="tusk-s3-bench-", dir=args.tmp))
    ctx = Context(sizes, root)
    results: list[Result] = []
    problems: dict[str, str] = {}
    started = time.time()
    print(f"# tusk S3 gateway benchmarks ({'quick' if args.quick else 'full'}): "
          f"tusk=boto3 against tusk daemon's S3 gateway; baselines: tusk get file "
          f"(TUSK_DIRECT=0), boto3 to SeaweedFS, the 200 ms limit; temp data in {root}",
          flush=True)
    try:
        compile_bytecode()
        for name in names:
            t0 = time.perf_counter()
            try:
                for r in BENCHMARKS[name](ctx):
                    results.append(r)
                    print(r.line(), flush=True)
            except Skip as exc:
                problems[name] = f"SKIP: {exc}"
                print(f"{name:<30} SKIP ({exc})", flush=True)
            except Exception as exc:
                problems[name] = f"ERROR: {exc}"
                print(f"{name:<30} ERROR ({type(exc).__name__}: {exc})", flush=True)
                traceback.print_exc(file=sys.stderr)
            print(f"#   {name} took {time.perf_counter() - t0:.0f}s", flush=True)
    except KeyboardInterrupt:
        print("# interrupted", flush=True)
    finally:
        _end_children()
        shutil.rmtree(root, ignore_errors=True)

    passed = sum(r.passed for r in results)
    print(f"# {passed}/{len(results)} targets met in {time.time() - started:.0f}s", flush=True)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    versions = {}
    for dist in ("boto3", "botocore", "s3transfer", "urllib3"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[dist] = version(dist)
    doc = {
        "when": stamp, "quick": args.quick, "sizes": asdict(sizes),
        "host": {"python": platform.python_version(), "cpus": os.cpu_count(),
                 "machine": platform.machine(), "load_avg": os.getloadavg(),
                 "versions": versions},
        "seconds": time.time() - started,
        "results": [r.as_json() for r in results], "problems": problems,
    }
    for target in (OUT_DIR / f"s3-results-{stamp}.json", OUT_DIR / "s3-latest.json"):
        target.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"# results: {OUT_DIR / f's3-results-{stamp}.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
