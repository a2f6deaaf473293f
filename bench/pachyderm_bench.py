"""Pachyderm API speed targets: the real ``pachyderm_sdk`` client against ``tusk daemon``.

The daemon also serves Pachyderm's gRPC API (``tusk/pachyderm/``), so
``pachyderm_sdk.Client(host, port)`` works against it. These benchmarks compare
that path with tusk's own client (:class:`tusk.client.Client`) on tusk's own API,
against the **same daemon build in the same run**, interleaved, medians::

    NAME  tusk=MEDIAN  baseline=MEDIAN  ratio=R  target=...  PASS|FAIL   (details)

Here ``tusk`` is the Pachyderm-API path (``pachyderm_sdk`` -> tusk's Pachyderm
service) and ``baseline`` is tusk's native path (``tusk.client`` -> tusk's own
service); ``ratio`` is always ``tusk / baseline`` and the target an upper bound
on it. Every benchmark starts its own ``tusk daemon`` subprocess(es) on a free
loopback port with a temporary data directory; the script ends only the
processes it started, by PID.

* ``sdk_inspect_commit``: latency of ``client.pfs.inspect_commit(commit)`` vs
  ``Client.inspect_commit(repo, id)`` on the same finished commit (target <= 1.5).
* ``sdk_put_1gib``: time to put 1 GiB of fresh random bytes with
  ``commit.put_file_from_file`` in ``with client.pfs.commit(branch=...)`` vs
  ``modify_file(...).put_file_from_path`` with ``TUSK_DIRECT=0`` (the client
  streams through gRPC); throughput >= 0.5x, i.e. time ratio <= 2.
* ``codec_modify_file``: parsing ModifyFileRequest messages with the generated
  protobuf (upb) classes in ``tusk.pachyderm_api`` vs the SDK's betterproto
  classes (informational; target "upb faster", ratio <= 1).

Results go to ``bench/out/pachyderm-results-TIMESTAMP.json`` and
``bench/out/pachyderm-latest.json``. The exit code is always 0.
``docs/benchmarks-pachyderm.md`` describes the scenarios and the last results.

Usage::

    python bench/pachyderm_bench.py [--quick] [--only NAME[,NAME...]] [--runs N] [--tmp DIR]
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
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "bench" / "out"
sys.path.insert(0, str(REPO_ROOT))  # `python bench/pachyderm_bench.py` imports tusk

# tusk's client must stream through gRPC, not write the daemon's object store
# itself: Client.direct_target() reads this on first use.
os.environ["TUSK_DIRECT"] = "0"

MiB = 1024 * 1024
GiB = 1024 * MiB

# Processes this script started, so an interrupted run ends them (by PID only).
_CHILDREN: list[subprocess.Popen[bytes]] = []


# --- sizes --------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """The scale of every scenario: the issue's numbers, or smaller for ``--quick``."""

    inspect_calls: int  # per client per round
    inspect_rounds: int
    put_size: int
    put_runs: int  # per side
    codec_small: int  # add_file messages of 100 bytes
    codec_large: int  # add_file messages of 1 MiB
    codec_rounds: int


FULL = Sizes(inspect_calls=300, inspect_rounds=5, put_size=GiB, put_runs=3,
             codec_small=10_000, codec_large=64, codec_rounds=5)
QUICK = Sizes(inspect_calls=100, inspect_rounds=3, put_size=64 * MiB, put_runs=2,
              codec_small=2_000, codec_large=16, codec_rounds=3)


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
        text = (f"{self.name:<24} tusk={fmt(self.tusk, self.unit):<9} "
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


def mb_s(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6 if seconds else 0.0


class Skip(Exception):
    """A benchmark cannot run here (no pachyderm_sdk); the message says why."""


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
    """No ambient TUSK_* settings; this checkout first on the import path (the
    daemon runs this tree's code whatever the editable install points at)."""
    drop = ("TUSK_ADDRESS", "TUSK_METADATA", "TUSK_STORAGE", "TUSK_DATA_DIR")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


CLK_TCK = os.sysconf("SC_CLK_TCK")


def sync() -> None:
    os.sync()


WARM_BYTES = 2 * GiB


def settle() -> None:
    """Before a timed step that moves ~1 GiB: flush dirty pages, then touch and
    free ``WARM_BYTES`` so the step finds warm pages (these VMs hand freed memory
    back to the host, and the first touch of such a page is a host page fault:
    see bench/README.md, "Warm pages before each large step")."""
    sync()
    block = mmap.mmap(-1, WARM_BYTES)
    page = b"\1" * mmap.PAGESIZE
    for at in range(0, WARM_BYTES, mmap.PAGESIZE):
        block[at:at + mmap.PAGESIZE] = page
    block.close()


class Daemon:
    """One ``tusk daemon`` on a free loopback port with its data under ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.with_name(data_dir.name + ".log")

    def start(self, timeout: float = 60.0) -> Daemon:
        args = [tusk_exe(), "daemon", "--data-dir", str(self.data_dir),
                "--address", self.address, "--log-level", "WARNING"]
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


def sdk() -> Any:
    try:
        import pachyderm_sdk
    except ImportError:
        raise Skip("pachyderm_sdk is not installed: pip install pachyderm-sdk") from None
    return pachyderm_sdk


def raw_channel(address: str) -> Any:
    """A plain grpcio channel with the SDK's own options (no interceptor): calls
    on it send and receive bytes as they are, no message classes involved."""
    import grpc
    from pachyderm_sdk.constants import GRPC_CHANNEL_OPTIONS

    return grpc.insecure_channel(address, options=GRPC_CHANNEL_OPTIONS)


def median_call(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --- 1. sdk_inspect_commit -------------------------------------------------------


def bench_inspect_commit(ctx: Context) -> list[Result]:
    """InspectCommit of one finished commit: pachyderm_sdk vs tusk.client, interleaved rounds."""
    pachyderm_sdk = sdk()
    from pachyderm_sdk.api import pfs

    from tusk.api import pfs_pb2 as tusk_pfs
    from tusk.client import Client
    from tusk.pachyderm_api import pfs_pb2 as pach_pfs

    calls, rounds = ctx.sizes.inspect_calls, ctx.sizes.inspect_rounds
    with ctx.daemon("inspect") as d:
        pc = pachyderm_sdk.Client("127.0.0.1", d.port)
        tc = Client(d.address)
        pc.pfs.create_repo(repo=pfs.Repo.from_uri("bench"))
        for i in range(3):  # a commit with a parent and a few files
            with pc.pfs.commit(branch=pfs.Branch.from_uri("bench@master")) as c:
                for j in range(5):
                    c.put_file_from_bytes(path=f"/d{i}/f{j}.txt", data=b"x" * (j + 1))
        info = pc.pfs.wait_commit(pfs.Commit.from_uri("bench@master"))
        commit = info.commit
        cid = commit.id
        if tc.inspect_commit("bench", cid).commit.id != cid:
            raise RuntimeError("tusk's client does not see the SDK's commit")

        # The same two RPCs with pre-encoded bytes on a plain channel (no message
        # classes, no interceptor): what the server and transport cost alone.
        ch = raw_channel(d.address)
        pach_req = bytes(pfs.InspectCommitRequest(commit=commit))
        tusk_req = tusk_pfs.InspectCommitRequest(
            commit=tusk_pfs.Commit(repo="bench", id=cid)).SerializeToString()
        pach_raw = ch.unary_unary("/pfs_v2.API/InspectCommit")
        tusk_raw = ch.unary_unary("/tusk.pfs.API/InspectCommit")
        resp = pach_raw(pach_req)

        fns: dict[str, Callable[[], object]] = {
            "sdk": lambda: pc.pfs.inspect_commit(commit=commit),
            "tusk": lambda: tc.inspect_commit("bench", cid),
            "raw_pachyderm": lambda: pach_raw(pach_req),
            "raw_tusk": lambda: tusk_raw(tusk_req),
        }
        per_call: dict[str, list[float]] = {k: [] for k in fns}
        for fn in fns.values():  # warm every connection
            for _ in range(20):
                fn()
        keys = list(fns)
        for r in range(rounds):
            for k in keys[r % len(keys):] + keys[:r % len(keys)]:  # rotate the order
                fn = fns[k]
                for _ in range(calls):
                    t0 = time.perf_counter()
                    fn()
                    per_call[k].append(time.perf_counter() - t0)

        # The SDK's own encoding and parsing, alone (client side).
        n = max(100, calls)
        seg = {k: statistics.median(v) for k, v in per_call.items()}
        seg["sdk_encode_request"] = median_call(
            lambda: bytes(pfs.InspectCommitRequest(commit=commit)), n)
        seg["sdk_parse_response"] = median_call(lambda: pfs.CommitInfo().parse(resp), n)
        seg["upb_parse_response"] = median_call(
            lambda: pach_pfs.CommitInfo.FromString(resp), n)
        seg["response_bytes"] = len(resp)
        ch.close()
        tc.close()
        pc._channel.close()
    client_side = seg["sdk_encode_request"] + seg["sdk_parse_response"]
    note = (f"median of {len(per_call['sdk'])} calls each, {rounds} rotating rounds; "
            f"SDK encode+parse {client_side * 1000:.2f}ms "
            f"(parse {seg['sdk_parse_response'] * 1000:.2f}ms of {seg['response_bytes']} B; "
            f"upb parses it in {seg['upb_parse_response'] * 1e6:.0f}us), bytes-only call "
            f"{seg['raw_pachyderm'] * 1000:.2f}ms, rest (interceptor, grpc) "
            f"{max(0.0, seg['sdk'] - client_side - seg['raw_pachyderm']) * 1000:.2f}ms")
    raw_note = ("bytes-only calls on a plain channel, Pachyderm API vs tusk's own: "
                "the server and transport alone; informational")
    return [Result("sdk_inspect_commit", "s", per_call["sdk"], per_call["tusk"], 1.5,
                   note=note, extra={"segments": seg}),
            Result("sdk_inspect_commit_server", "s", per_call["raw_pachyderm"],
                   per_call["raw_tusk"], 1.5, note=raw_note)]


# --- 2. sdk_put_1gib -------------------------------------------------------------


Prepared = tuple[Callable[[], None], dict[str, float]]


def _sdk_put(d: Daemon, repo: str, src: Path) -> Prepared:
    import pachyderm_sdk
    from pachyderm_sdk.api import pfs

    def put() -> None:
        pc = pachyderm_sdk.Client("127.0.0.1", d.port)
        try:
            with (pc.pfs.commit(branch=pfs.Branch.from_uri(f"{repo}@master")) as c,
                  open(src, "rb") as f):
                c.put_file_from_file(path="/big.bin", file=f)
            pc.pfs.wait_commit(pfs.Commit.from_uri(f"{repo}@master"))
        finally:
            pc._channel.close()

    return put, {}


def _tusk_put(d: Daemon, repo: str, src: Path) -> Prepared:
    from tusk.client import Client

    def put() -> None:
        with Client(d.address) as tc:
            if tc.direct_target() is not None:
                raise RuntimeError("tusk's client took the direct path despite TUSK_DIRECT=0")
            with tc.modify_file(repo, "master") as mf:
                mf.put_file_from_path("/big.bin", src)
            assert mf.commit_info is not None and mf.commit_info.HasField("finished")

    return put, {}


def _raw_put(d: Daemon, repo: str, src: Path) -> Prepared:
    """The SDK's exact ModifyFile messages (set_commit, delete_file, an empty
    add_file, then one add_file per 19 MiB), encoded by the SDK before the
    clock starts and streamed as bytes on a plain channel: the server and the
    transport alone, without the SDK's encoding. The commit is started
    untimed; its finish is timed."""
    import pachyderm_sdk
    from pachyderm_sdk.api import pfs
    from pachyderm_sdk.api.pfs.extension import BUFFER_SIZE

    pc = pachyderm_sdk.Client("127.0.0.1", d.port)
    commit = pc.pfs.start_commit(branch=pfs.Branch.from_uri(f"{repo}@master"))
    msgs = [bytes(pfs.ModifyFileRequest(set_commit=commit)),
            bytes(pfs.ModifyFileRequest(delete_file=pfs.DeleteFile(path="/big.bin"))),
            bytes(pfs.ModifyFileRequest(add_file=pfs.AddFile(path="/big.bin", raw=b"")))]
    encode = 0.0
    with open(src, "rb") as f:
        while data := f.read(BUFFER_SIZE):
            t0 = time.perf_counter()
            msgs.append(bytes(pfs.ModifyFileRequest(
                add_file=pfs.AddFile(path="/big.bin", raw=data))))
            encode += time.perf_counter() - t0

    def put() -> None:
        ch = raw_channel(d.address)
        try:
            ch.stream_unary("/pfs_v2.API/ModifyFile")(iter(msgs))
            pc.pfs.finish_commit(commit=commit)
            pc.pfs.wait_commit(commit)
        finally:
            ch.close()
            pc._channel.close()
            msgs.clear()

    return put, {"sdk_encode_seconds": encode}


PUTS = {"sdk": _sdk_put, "tusk": _tusk_put, "raw": _raw_put}


def _one_put(ctx: Context, side: str, src: Path, size: int) -> dict[str, float]:
    """A fresh daemon (empty store: nothing to dedup against), one timed put
    including the commit's finish, then checks (untimed)."""
    from tusk.client import Client

    d = ctx.daemon(f"put-{side}").start()
    try:
        with Client(d.address) as tc:
            tc.create_repo("bench")
        put, info = PUTS[side](d, "bench", src)
        settle()
        cpu_d0, cpu_c0 = d.cpu_seconds(), time.process_time()
        t0 = time.perf_counter()
        put()
        seconds = time.perf_counter() - t0
        cpu_d, cpu_c = d.cpu_seconds() - cpu_d0, time.process_time() - cpu_c0
        rss = d.peak_rss()
        with Client(d.address) as tc:
            got = tc.inspect_file("bench", "master", "/big.bin").size_bytes
        if got != size:
            raise RuntimeError(f"{side} put stored {got} bytes, not {size}")
        return {"seconds": seconds, "daemon_cpu": cpu_d, "client_cpu": cpu_c,
                "daemon_peak_rss": rss, **info}
    finally:
        d.stop()
        shutil.rmtree(d.data_dir.parent, ignore_errors=True)


def bench_put(ctx: Context) -> list[Result]:
    """Put a file of fresh random bytes: pachyderm_sdk vs tusk.client (TUSK_DIRECT=0)."""
    sdk()
    size, runs = ctx.sizes.put_size, ctx.sizes.put_runs
    runs_by: dict[str, list[dict[str, float]]] = {"sdk": [], "tusk": [], "raw": []}
    orders = [("sdk", "tusk", "raw"), ("tusk", "raw", "sdk"), ("raw", "sdk", "tusk")]
    for r in range(runs):
        # New random content every round; each put goes to its own fresh daemon,
        # so no side dedups against an earlier one. Every side of a round puts
        # the same file, in an order rotating from round to round.
        src = write_random_file(ctx.root / f"put-input-{r}.bin", size)
        try:
            for side in orders[r % 3]:
                runs_by[side].append(_one_put(ctx, side, src, size))
        finally:
            src.unlink()

    def med(side: str, key: str) -> float:
        return statistics.median(x[key] for x in runs_by[side])

    def mbs(side: str) -> float:
        return statistics.median(mb_s(size, x["seconds"]) for x in runs_by[side])

    def peak(side: str) -> float:
        return max(x["daemon_peak_rss"] for x in runs_by[side]) / MiB

    secs = {k: [x["seconds"] for x in v] for k, v in runs_by.items()}
    sdk_mbs, tusk_mbs, raw_mbs = mbs("sdk"), mbs("tusk"), mbs("raw")
    cpu = {k: f"{med(k, 'client_cpu'):.1f}/{med(k, 'daemon_cpu'):.1f}" for k in runs_by}
    note = (f"{size / MiB:.0f} MiB, {runs} runs each; SDK {sdk_mbs:.0f} MB/s vs tusk "
            f"{tusk_mbs:.0f} MB/s = {sdk_mbs / tusk_mbs:.2f}x (target >= 0.5x); CPU s "
            f"client/daemon: SDK {cpu['sdk']}, tusk {cpu['tusk']}; "
            f"daemon VmHWM SDK {peak('sdk'):.0f} MiB, tusk {peak('tusk'):.0f} MiB")
    raw_note = (f"the SDK's messages pre-encoded, streamed as bytes: {raw_mbs:.0f} MB/s vs "
                f"tusk {tusk_mbs:.0f} MB/s = {raw_mbs / tusk_mbs:.2f}x; CPU s client/daemon "
                f"{cpu['raw']}; daemon VmHWM {peak('raw'):.0f} MiB; the SDK's betterproto "
                f"encoding alone (untimed here): "
                f"{mb_s(size, med('raw', 'sdk_encode_seconds')):.0f} MB/s; informational")
    extra = {"runs": runs_by, "size": size, "sdk_mb_s": sdk_mbs, "tusk_mb_s": tusk_mbs,
             "raw_mb_s": raw_mbs}
    return [Result("sdk_put_1gib", "s", secs["sdk"], secs["tusk"], 2.0, note=note,
                   extra=extra),
            Result("sdk_put_1gib_server", "s", secs["raw"], secs["tusk"], 2.0, note=raw_note)]


# --- 3. codec_modify_file ----------------------------------------------------------


def _each(fn: Callable[[Any], object], items: list[Any]) -> float:
    """Seconds to call ``fn`` on every item (parse bytes, or serialize messages)."""
    t0 = time.perf_counter()
    for m in items:
        fn(m)
    return time.perf_counter() - t0


def bench_codec(ctx: Context) -> list[Result]:
    """Parse a ModifyFile stream: generated protobuf (upb) vs the SDK's betterproto."""
    sdk()
    from google.protobuf.internal import api_implementation
    from pachyderm_sdk.api import pfs

    from tusk.pachyderm_api import pfs_pb2

    def stream(n: int, size: int) -> list[bytes]:
        msgs = [pfs_pb2.ModifyFileRequest(set_commit=pfs_pb2.Commit(
            id="0" * 32, repo=pfs_pb2.Repo(name="bench", type="user",
                                           project=pfs_pb2.Project(name="default"))))]
        for i in range(n):
            m = pfs_pb2.ModifyFileRequest()
            m.add_file.path = f"/dir/f{i:06d}.bin"
            m.add_file.raw.value = os.urandom(size)
            msgs.append(m)
        return [m.SerializeToString() for m in msgs]

    def upb(b: bytes) -> Any:
        return pfs_pb2.ModifyFileRequest.FromString(b)

    def better(b: bytes) -> Any:
        return pfs.ModifyFileRequest().parse(b)

    # Both parse the same bytes to the same content.
    probe = stream(1, 100)[1]
    if bytes(better(probe)) != probe or upb(probe).SerializeToString() != probe:
        raise RuntimeError("the two codecs disagree on a ModifyFileRequest")

    results = []
    for name, n, size in (("codec_modify_file_100b", ctx.sizes.codec_small, 100),
                          ("codec_modify_file_1mib", ctx.sizes.codec_large, MiB)):
        msgs = stream(n, size)
        nbytes = sum(len(m) for m in msgs)
        times: dict[str, list[float]] = {"upb": [], "betterproto": []}
        encode: dict[str, list[float]] = {"upb": [], "betterproto": []}
        parsed_upb = [upb(m) for m in msgs]
        parsed_bp = [better(m) for m in msgs]
        for r in range(ctx.sizes.codec_rounds):
            for k in (("upb", "betterproto") if r % 2 == 0 else ("betterproto", "upb")):
                times[k].append(_each(upb if k == "upb" else better, msgs))
            # serializing too: the SDK client's side of a put (informational)
            encode["upb"].append(_each(lambda m: m.SerializeToString(), parsed_upb))
            encode["betterproto"].append(_each(bytes, parsed_bp))
        t_upb, t_bp = statistics.median(times["upb"]), statistics.median(times["betterproto"])
        e_upb = statistics.median(encode["upb"])
        e_bp = statistics.median(encode["betterproto"])
        count = len(msgs)
        note = (f"{n} add_file x {size} B (+ set_commit), {nbytes / 1e6:.1f} MB; parse: upb "
                f"{count / t_upb:,.0f} msg/s {mb_s(nbytes, t_upb):,.0f} MB/s, betterproto "
                f"{count / t_bp:,.0f} msg/s {mb_s(nbytes, t_bp):,.0f} MB/s "
                f"(upb x{t_bp / t_upb:.1f}); serialize: upb {count / e_upb:,.0f} msg/s "
                f"{mb_s(nbytes, e_upb):,.1f} MB/s, betterproto {count / e_bp:,.0f} msg/s "
                f"{mb_s(nbytes, e_bp):,.1f} MB/s; protobuf backend "
                f"{api_implementation.Type()}")
        results.append(Result(name, "s", times["upb"], times["betterproto"], 1.0, note=note,
                              extra={"messages": count, "bytes": nbytes, "encode": encode,
                                     "backend": api_implementation.Type()}))
    return results


BENCHMARKS: dict[str, Callable[[Context], list[Result]]] = {
    "sdk_inspect_commit": bench_inspect_commit,
    "sdk_put_1gib": bench_put,
    "codec_modify_file": bench_codec,  # codec_modify_file_100b and _1mib
}


# --- main ---------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="64 MiB put, fewer calls and rounds (about a minute)")
    p.add_argument("--only", metavar="NAME[,NAME]",
                   help=f"run only these: {', '.join(BENCHMARKS)}")
    p.add_argument("--runs", type=int, help="override the number of puts per side")
    p.add_argument("--tmp", help="where temporary data goes (default: the system temp dir)")
    args = p.parse_args(argv)

    sizes = QUICK if args.quick else FULL
    if args.runs:
        sizes = Sizes(**{**asdict(sizes), "put_runs": args.runs})
    names = list(BENCHMARKS)
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        wanted = ["codec_modify_file" if w.startswith("codec_modify_file") else w
                  for w in wanted]
        unknown = [n for n in wanted if n not in BENCHMARKS]
        if unknown:
            print(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}",
                  file=sys.stderr)
            return 0
        names = [n for n in BENCHMARKS if n in wanted]

    signal.signal(signal.SIGTERM, _on_sigterm)
    root = Path(tempfile.mkdtemp(prefix="tusk-pachyderm-bench-", dir=args.tmp))
    ctx = Context(sizes, root)
    results: list[Result] = []
    problems: dict[str, str] = {}
    started = time.time()
    print(f"# tusk Pachyderm API benchmarks ({'quick' if args.quick else 'full'}): "
          f"tusk=pachyderm_sdk against tusk daemon's Pachyderm API, baseline=tusk.client "
          f"(TUSK_DIRECT=0) against its own API; temp data in {root}", flush=True)
    try:
        for name in names:
            t0 = time.perf_counter()
            try:
                for r in BENCHMARKS[name](ctx):
                    results.append(r)
                    print(r.line(), flush=True)
            except Skip as exc:
                problems[name] = f"SKIP: {exc}"
                print(f"{name:<24} SKIP ({exc})", flush=True)
            except Exception as exc:
                problems[name] = f"ERROR: {exc}"
                print(f"{name:<24} ERROR ({type(exc).__name__}: {exc})", flush=True)
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
    for dist in ("pachyderm-sdk", "betterproto", "protobuf", "grpcio"):
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
    for target in (OUT_DIR / f"pachyderm-results-{stamp}.json",
                   OUT_DIR / "pachyderm-latest.json"):
        target.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"# results: {OUT_DIR / f'pachyderm-results-{stamp}.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
