"""Web console speed target: each page type answers within 300 ms (median)
on a DAG of 20 pipelines with 1,000 jobs.

Starts its own ``tusk daemon`` (temporary data dir, Docker runner, image
``tusk/busybox:latest`` from ``deploy/images/build.sh``) with the console on
a free loopback port, and builds the DAG through the Python client as a user
would: a repo ``src`` read by four pipelines, each read by four more (20
pipelines, a tree two deep), then 50 commits to ``src``, each making one job
per pipeline: 1,000 real jobs (plus the 20 from creating the pipelines), run
in Docker, no shortcut. Each commit rewrites ``/x`` (1 datum processed per
job) next to 5 files from the first commit (skipped), so job bars have
both colours. A repo ``many`` with a 10,000-file directory is timed too.

Then every page type is fetched with ``urllib`` N times (after one warm-up
fetch) and the median compared with the target::

    PAGE  median=...  p90=...  max=...  target=300 ms  PASS|FAIL  (URL)

Results go to ``bench/out/console-latest.json``; the exit code is always 0
(benchmarks report, tests assert). ``docs/benchmarks-console.md`` has the
numbers of a run.

Usage::

    python bench/console_bench.py [--quick] [--runs N] [--commits N]
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "bench" / "out"
sys.path.insert(0, str(REPO_ROOT))

BUSYBOX = "tusk/busybox:latest"
TARGET_MS = 300.0
_CHILDREN: list[subprocess.Popen[bytes]] = []
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _end_children() -> None:
    for proc in _CHILDREN:  # only what this script started, by PID
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


atexit.register(_end_children)


def start_daemon(data_dir: Path) -> tuple[Any, str]:
    from tusk.client import Client

    address = f"127.0.0.1:{free_port()}"
    http = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items()
           if k not in ("TUSK_ADDRESS", "TUSK_METADATA", "TUSK_STORAGE", "TUSK_DATA_DIR")}
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    log = data_dir.with_name("daemon.log")
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tusk.entry", "daemon", "--data-dir", str(data_dir),
             "--address", address, "--http-address", http, "--s3-address", "off",
             "--gc-interval", "0", "--log-level", "WARNING"],
            stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    _CHILDREN.append(proc)
    deadline = time.monotonic() + 60
    while b"console on" not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"tusk daemon did not start: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    return Client(address), f"http://{http}"


def spec(name: str, repo: str) -> dict[str, Any]:
    return {"pipeline": {"name": name},
            "transform": {"image": BUSYBOX,
                          "cmd": ["sh", "-c", 'cp "$in" "/pfs/out/$(basename "$in")"']},
            "input": {"pfs": {"repo": repo, "glob": "/*", "name": "in"}}}


def build(c: Any, commits: int) -> dict[str, str]:
    """The DAG, its jobs and the 10,000-file repo; returns IDs the pages use."""
    c.create_repo("src")
    names = [f"p{i:02d}" for i in range(20)]
    for i, n in enumerate(names):
        c.create_pipeline(spec(n, "src" if i < 4 else names[(i - 4) // 4]))
    c.put_files("src", "master", {f"/static{i}": b"%d\n" % i for i in range(5)})
    t0 = time.monotonic()
    first = ""
    for k in range(commits):
        ci = c.put_files("src", "master", {"/x": b"commit %d\n" % k})
        first = first or ci.commit.id
        print(f"\rcommits {k + 1}/{commits}", end="", flush=True)
    last = str(c.inspect_commit("src", "master").commit.id)
    for n in names:
        c.wait_job(n, last, timeout=1800)
    jobs = sum(1 for _ in c.list_job())
    print(f"\n{jobs} jobs in {time.monotonic() - t0:.0f} s")
    c.create_repo("many")
    with c.modify_file("many", "master") as mf:
        for i in range(10_000):
            mf.put_file(f"/dir/f{i:05d}.txt", b"%d\n" % i)
    return {"last": last, "first": str(first), "many": str(c.inspect_commit("many", "master")
                                                        .commit.id), "jobs": str(jobs)}


def fetch(base: str, path: str) -> tuple[float, int]:
    t = time.perf_counter()
    try:
        with _OPENER.open(base + path, timeout=60) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        e.read()
        status = e.code
    return (time.perf_counter() - t) * 1000, status


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 commits (200 jobs), 5 runs")
    ap.add_argument("--runs", type=int, default=21, help="fetches per page (median of them)")
    ap.add_argument("--commits", type=int, default=50, help="commits to src (20 jobs each)")
    args = ap.parse_args()
    if args.quick:
        args.commits, args.runs = 10, 5
    subprocess.run(["bash", str(REPO_ROOT / "deploy/images/build.sh"), "busybox"], check=True,
                   capture_output=True)
    with tempfile.TemporaryDirectory(prefix="tusk-console-bench-") as tmp:
        data = Path(tmp) / "data"
        c, base = start_daemon(data)
        ids = build(c, args.commits)
        last, first, many = ids["last"], ids["first"], ids["many"]
        leaf = "p19"
        pages = {
            "dag": "/projects/default/dag",
            "dag.json (live poll)": "/projects/default/dag.json",
            "repos": "/projects/default/repos",
            "repo": f"/repos/default/{leaf}",
            "branch history": f"/repos/default/{leaf}/branches/master",
            "commit": f"/repos/default/{leaf}/commits/{last}",
            "commit set": f"/commit-sets/{last}",
            "files: directory": f"/repos/default/src/files/{last}/",
            "files: preview": f"/repos/default/src/files/{last}/x",
            "files: download": f"/repos/default/src/raw/{last}/x",
            "files: 10,000 dir, page 1": f"/repos/default/many/files/{many}/dir/",
            "files: 10,000 dir, page 40": f"/repos/default/many/files/{many}/dir/?after=f07799.txt",
            "diff": f"/repos/default/src/diff/{first}/{last}",
            "pipeline (50+ jobs)": f"/pipelines/default/{leaf}",
            "job": f"/jobs/default/{leaf}/{last}",
            "logs": f"/jobs/default/{leaf}/{last}/logs",
            "logs.json (live poll)": f"/jobs/default/{leaf}/{last}/logs.json",
            "lineage (3 levels)": f"/lineage/default/{leaf}/{last}/x",
            "404 page": "/repos/default/nope",
        }
        results = []
        print(f"\n{'page':28} {'median':>9} {'p90':>9} {'max':>9}  target")
        for name, path in pages.items():
            fetch(base, path)  # warm-up
            times, statuses = [], set()
            for _ in range(args.runs):
                ms, status = fetch(base, path)
                times.append(ms)
                statuses.add(status)
            times.sort()
            med = statistics.median(times)
            p90 = times[min(len(times) - 1, int(len(times) * 0.9))]
            ok = med <= TARGET_MS and statuses <= {200, 404}
            print(f"{name:28} {med:7.1f}ms {p90:7.1f}ms {times[-1]:7.1f}ms  "
                  f"{TARGET_MS:.0f} ms {'PASS' if ok else 'FAIL'}  {sorted(statuses)} {path}")
            results.append({"page": name, "path": path, "median_ms": med, "p90_ms": p90,
                            "max_ms": times[-1], "statuses": sorted(statuses), "pass": ok})
        with contextlib.suppress(Exception):
            c.close()
        _end_children()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": platform.node(),
           "python": platform.python_version(), "commits": args.commits,
           "jobs": int(ids["jobs"]), "runs": args.runs, "target_ms": TARGET_MS,
           "results": results}
    (OUT_DIR / "console-latest.json").write_text(json.dumps(out, indent=2))
    print(f"{sum(r['pass'] for r in results)}/{len(results)} pages PASS; "
          f"{OUT_DIR / 'console-latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
