"""What the master's fencing token costs (``pfs.metadata_fence``): small commits
with and without the fence, on the embedded SQLite default and on etcd.

Each run makes ``--commits`` one-file commits (``put file`` of a few bytes,
each its own commit, the metadata-heaviest case per byte) through the PFS
core in this process, once over the plain metadata store and once over the
same kind of store fenced by a held master key, alternating (plain, fenced,
plain, ...) so a noisy neighbour slows both. The daemon's gRPC layer is left
out on purpose: it adds the same time to both and would only dilute the
ratio. Before it, ``fence_txn`` times one-op transactions alone (the
fence's whole cost, undiluted; ``sqlite-nosync`` without fsync, so the
store's CPU time shows). Prints, per backend::

    fence_txn[sqlite]  fenced=MEDIANus  plain=MEDIANus  ratio=R
    fence_small_commits[sqlite]  fenced=MEDIAN  plain=MEDIAN  ratio=R  target=<= 1.05  PASS|FAIL

``ratio`` there is the median of the ratios of back-to-back pairs (runs
alternate which side goes first); on this shared machine single runs vary
by +-30%, so expect a few percent either way from noise alone.

Usage::

    python bench/fence_bench.py [--commits 1000] [--runs 7] [--no-etcd]

The exit code is always 0: benchmarks report, tests assert.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # the PFS core and the test fixtures' etcd helper

from pfs.api import PFS  # noqa: E402  (after the path setup above)
from pfs.blobs import BlobStore  # noqa: E402
from pfs.metadata import Compare, MetadataStore, Put  # noqa: E402
from pfs.metadata_fence import FencedMetadataStore  # noqa: E402
from pfs.objects import LocalObjectStore  # noqa: E402

TARGET = 1.05  # the fence may cost at most 5% on the smallest commits
MASTER_KEY = "masters/daemon"


def fenced(meta: MetadataStore) -> MetadataStore:
    """``meta`` fenced by a master key taken as the election takes it."""
    lease = meta.grant_lease(600)
    result = meta.txn_result([Compare(MASTER_KEY, 0)], [Put(MASTER_KEY, b"bench", lease)])
    assert result.succeeded
    return FencedMetadataStore(meta, MASTER_KEY, result.revision)


def one_run(open_meta: Callable[[], MetadataStore], fence: bool, commits: int,
            scratch: Path) -> float:
    """Seconds for ``commits`` one-file commits on a fresh store."""
    meta = open_meta()
    if fence:
        meta = fenced(meta)
    objects = scratch / f"objects-{uuid.uuid4().hex[:8]}"
    pfs = PFS(meta, BlobStore(LocalObjectStore(str(objects))))
    try:
        repo = f"r{uuid.uuid4().hex[:8]}"
        pfs.create_repo(repo)
        t0 = time.perf_counter()
        for i in range(commits):
            with pfs.modify_file(repo, "master") as w:
                w.put_file(f"/f{i}.txt", [b"%d\n" % i])
        return time.perf_counter() - t0
    finally:
        meta.close()
        shutil.rmtree(objects, ignore_errors=True)


def txn_run(open_meta: Callable[[], MetadataStore], fence: bool, n: int) -> float:
    """Seconds per one-op transaction (the fence's whole cost, undiluted)."""
    meta = open_meta()
    if fence:
        meta = fenced(meta)
    try:
        t0 = time.perf_counter()
        for i in range(n):
            meta.txn([], [Put(f"k/{i % 64}", b"v")])
        return (time.perf_counter() - t0) / n
    finally:
        meta.close()


def bench_txn(name: str, open_meta: Callable[[], MetadataStore], runs: int) -> None:
    per_txn: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(runs):
        for fence in (False, True):
            per_txn[fence].append(txn_run(open_meta, fence, 1000))
    p, f = statistics.median(per_txn[False]), statistics.median(per_txn[True])
    print(f"fence_txn[{name}]  fenced={1e6 * f:.1f}us  plain={1e6 * p:.1f}us  "
          f"ratio={f / p:.3f}  (one-op txns, 1000 per run, median of {runs})", flush=True)


def bench(name: str, open_meta: Callable[[], MetadataStore], commits: int, runs: int,
          scratch: Path) -> None:
    bench_txn(name, open_meta, runs)
    one_run(open_meta, True, min(commits, 50), scratch)  # warm up imports and caches
    plain: list[float] = []
    fence: list[float] = []
    for i in range(runs):
        # Pairs in alternating order, so neither side always runs first.
        for with_fence in ((False, True) if i % 2 == 0 else (True, False)):
            (fence if with_fence else plain).append(
                one_run(open_meta, with_fence, commits, scratch))
    p, f = statistics.median(plain), statistics.median(fence)
    # The ratio is the median of each back-to-back pair's ratio: less exposed
    # than the ratio of the medians to the load drifting during the run.
    ratio = statistics.median(a / b for a, b in zip(fence, plain, strict=True))
    print(f"fence_small_commits[{name}]  fenced={f:.3f}s  plain={p:.3f}s  ratio={ratio:.3f}  "
          f"target=<= {TARGET}  {'PASS' if ratio <= TARGET else 'FAIL'}   "
          f"({commits} commits, medians of {runs}, ratio of medians {f / p:.3f}; per commit "
          f"{1e3 * f / commits:.2f} ms vs {1e3 * p / commits:.2f} ms; runs "
          f"fenced={[round(x, 3) for x in fence]} plain={[round(x, 3) for x in plain]})",
          flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commits", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--no-etcd", action="store_true", help="SQLite only")
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="tusk-fence-bench-"))
    try:
        from pfs.metadata_sqlite import SQLiteMetadataStore

        # Without fsync the store's own CPU time shows, and the fence's next to it.
        bench_txn("sqlite-nosync", lambda: SQLiteMetadataStore(
            scratch / f"{uuid.uuid4().hex}.db", synchronous="OFF"), args.runs)
        bench("sqlite", lambda: SQLiteMetadataStore(scratch / f"{uuid.uuid4().hex}.db"),
              args.commits, args.runs, scratch)
        if args.no_etcd:
            return 0
        from pfs.metadata_etcd import EtcdMetadataStore
        from tests.fixtures.etcd import EtcdServer, etcd_binary

        binary = etcd_binary()
        if binary is None:
            print("fence_small_commits[etcd]  SKIP (etcd not found: apt-get install -y "
                  "etcd-server, or deploy/services.sh up)")
            return 0
        (scratch / "etcd").mkdir()
        etcd = EtcdServer(binary, str(scratch / "etcd"))
        etcd.start()
        try:
            bench("etcd", lambda: EtcdMetadataStore(etcd.endpoint, f"bench-{uuid.uuid4().hex}/"),
                  args.commits, args.runs, scratch)
        finally:
            etcd.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
