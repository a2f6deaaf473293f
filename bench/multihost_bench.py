"""Throughput of ``tusk worker`` on two hosts against one (issue #16).

The deployment of ``tests/test_multihost.py``: etcd, SeaweedFS (S3), ``tusk
daemon --no-workers`` and two worker hosts, each in its own network namespace
behind a router namespace (``tests/multihost.py``); each worker host runs one
``tusk worker --runner process`` (bubblewrap, its own scratch). 200 CPU-bound
datums (each a ``python3 -c`` loop calibrated at the start of the run to burn
0.2 s of CPU) run as the first job of a new pipeline with
``parallelism_spec.constant: 1`` (one worker per host), once with only host
``w1``'s worker running (the baseline: ``w2``'s worker is stopped) and once
with both; rounds alternate. One line, as ``bench/pps_bench.py`` prints it::

    multihost  tusk=2-HOST  baseline=1-HOST  ratio=R  target=ratio<=0.588  PASS|FAIL  (details)

``ratio`` is the 2-host job wall over the 1-host one (medians; server-side
created -> finished): the target, throughput >= 1.7x, is ratio <= 1/1.7. The
details say why when it is missed: datums running at once (the sum of the
datums' process time over the job wall), how much longer a datum took with
two hosts busy, the machine's own speedup running the same code two at a time
(measured between the jobs), and how many datums each host ran and how long
before the job's end it went idle. Results go to
``bench/out/multihost-results-TIMESTAMP.json`` and
``bench/out/multihost-latest.json``. Never fails: exit code 0.

Needs root (network namespaces), ``ip``, bubblewrap, etcd and SeaweedFS
(``deploy/services.sh up`` installs them).

Usage::

    python bench/multihost_bench.py [--quick] [--datums N] [--cpu-seconds S] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # tests.multihost and the client

from pps_bench import OUT_DIR, Result, _ts, job_wall, put_files, wait_job  # noqa: E402

from tests.multihost import Cluster, netns_problem  # noqa: E402

#: The interpreter the datums run: the first python3 on the sandbox's PATH.
_SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _python() -> str:
    found = shutil.which("python3", path=_SANDBOX_PATH)
    if found is None:
        raise RuntimeError("no python3 on the sandbox's PATH (apt-get install -y python3)")
    return found


def calibrate(python: str, seconds: float) -> int:
    """Loop iterations of ``x += i`` taking ``seconds`` of CPU in ``python``."""
    probe = 2_000_000
    code = ("import time\nt=time.process_time()\nx=0\n"
            f"for i in range({probe}): x+=i\nprint(time.process_time()-t)")
    took = min(float(subprocess.run([python, "-S", "-c", code], check=True,
                                    capture_output=True, text=True).stdout) for _ in range(3))
    return max(10_000, int(probe * seconds / took))


def host_speedup(python: str, code: str, count: int = 16) -> float:
    """The machine's own speedup now: ``count`` runs of the datum's code one at
    a time vs two at a time (other tenants share the cores)."""
    def batch(width: int) -> float:
        t0 = time.perf_counter()
        for _ in range(0, count, width):
            procs = [subprocess.Popen([python, "-S", "-c", code], stdout=subprocess.DEVNULL)
                     for _ in range(width)]
            for p in procs:
                p.wait()
        return time.perf_counter() - t0

    return batch(1) / batch(2)


def split(cluster: Cluster, c: Any, pipeline: str, job: str, finished: float
          ) -> dict[str, tuple[int, float]]:
    """Per host: datums run, and seconds before the job's end it went idle
    (from the worker instance and time of each datum's log line)."""
    per: dict[str, list[float]] = {}
    for m in c.get_logs(pipeline, job, worker=True):
        if m.stream == "stdout":
            per.setdefault(cluster.host_of(m.worker), []).append(_ts(m.ts))
    return {host: (len(ts), finished - max(ts)) for host, ts in sorted(per.items())}


def run_job(cluster: Cluster, c: Any, name: str, python: str, code: str, n: int
            ) -> tuple[float, float, dict[str, tuple[int, float]]]:
    """A new pipeline's first job over the ``cpu`` repo: (wall, summed datum
    process seconds, per-host split)."""
    c.create_pipeline(json.dumps({
        "pipeline": {"name": name},
        "transform": {"cmd": [python, "-S", "-c", code]},
        "input": {"pfs": {"repo": "cpu", "glob": "/*"}},
        "parallelism_spec": {"constant": 1}}))
    jobs = list(c.list_job(name))
    info = wait_job(c, name, str(jobs[0].job.id))
    if info.data_processed != n:
        raise RuntimeError(f"{name} processed {info.data_processed} datums, not {n}")
    per_host = split(cluster, c, name, str(info.job.id), _ts(info.finished))
    c.delete_pipeline(name)
    return job_wall(info), float(info.stats.get("process_seconds", 0.0)), per_host


def bench(workdir: Path, n: int, cpu_seconds: float, rounds: int) -> Result:
    python = _python()
    iters = calibrate(python, cpu_seconds)
    # Each datum prints one line: its log line names the worker instance (so
    # the host) and when it ended.
    code = f"x=0\nfor i in range({iters}): x+=i\nprint('done')"
    walls: dict[int, list[float]] = {1: [], 2: []}
    cpu: dict[int, list[float]] = {1: [], 2: []}
    hosts_split: dict[int, list[dict[str, tuple[int, float]]]] = {1: [], 2: []}
    host: list[float] = []
    cluster = Cluster(workdir, workers=2)
    try:
        cluster.start()
        c = cluster.client()
        c.create_repo("cpu")
        put_files(c, "cpu", {f"/d{i:04d}": b"x" for i in range(n)})
        w2 = cluster.workers["w2"]
        host.append(host_speedup(python, code))
        for r in range(rounds):
            for hosts in (1, 2):
                if hosts == 1:
                    cluster.stop_worker(w2)
                elif w2.proc is None or w2.proc.poll() is not None:
                    cluster.start_worker(w2)
                wall, secs, per = run_job(cluster, c, f"cpu{hosts}h{r}{uuid.uuid4().hex[:4]}",
                                          python, code, n)
                walls[hosts].append(wall)
                cpu[hosts].append(secs)
                hosts_split[hosts].append(per)
                print(f"#   round {r + 1}, {hosts} host(s): {wall:.1f}s, datums per host "
                      + ", ".join(f"{h} {k}" for h, (k, _) in per.items())
                      + f"; load average {os.getloadavg()[0]:.2f}", flush=True)
                host.append(host_speedup(python, code))
    finally:
        cluster.close()
    one, two = statistics.median(walls[1]), statistics.median(walls[2])
    busy = {h: statistics.median(cpu[h]) / statistics.median(walls[h]) for h in (1, 2)}
    slowdown = statistics.median(cpu[2]) / statistics.median(cpu[1])
    last = hosts_split[2][-1]
    note = (f"{n} datums of ~{cpu_seconds:g}s CPU ({iters} iterations), {rounds} round(s); "
            f"job wall 1 host {one:.1f}s, 2 hosts {two:.1f}s; throughput x{one / two:.2f} "
            f"(per round: " + ", ".join(f"x{a / b:.2f}" for a, b in zip(walls[1], walls[2],
                                                                    strict=True)) + ") "
            f"(target >= 1.7, i.e. time ratio <= {1 / 1.7:.3f}); the machine itself ran the "
            f"same code x{statistics.median(host):.2f} faster two at a time; datums running "
            f"at once: 1 host {busy[1]:.2f}, 2 hosts {busy[2]:.2f}; a datum took "
            f"x{slowdown:.2f} as long with 2 hosts; 2-host datums per host: "
            + ", ".join(f"{h} {k} (idle for the last {idle:.1f}s)"
                        for h, (k, idle) in last.items()))
    return Result("multihost", "s", walls[2], walls[1], 1 / 1.7, note=note,
                  extra={"walls": walls, "process_seconds": cpu, "iterations": iters,
                         "host_speedup": host, "split": hosts_split, "busy": busy,
                         "slowdown": slowdown})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="40 datums, 1 round")
    p.add_argument("--datums", type=int, help="CPU-bound datums per job (default 200)")
    p.add_argument("--cpu-seconds", type=float, default=0.2, help="CPU per datum (default 0.2)")
    p.add_argument("--rounds", type=int, help="(1 host, 2 hosts) pairs (default 2)")
    p.add_argument("--tmp", help="where the processes' data and logs go")
    args = p.parse_args(argv)
    n = args.datums or (40 if args.quick else 200)
    rounds = args.rounds or (1 if args.quick else 2)
    started = time.time()
    print(f"# tusk multi-host benchmark: {n} CPU datums, tusk daemon --no-workers and 1 vs 2 "
          f"worker hosts (network namespaces), process runner; load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    problem = netns_problem()
    results: list[Result] = []
    problems: dict[str, str] = {}
    if problem:
        problems["multihost"] = f"SKIP: {problem}"
        print(f"multihost       SKIP ({problem})", flush=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="tusk-multihost-bench-", dir=args.tmp))
        try:
            r = bench(root, n, args.cpu_seconds, rounds)
            results.append(r)
            print(r.line(), flush=True)
        except KeyboardInterrupt:
            print("# interrupted", flush=True)
        except Exception as exc:
            problems["multihost"] = f"ERROR: {exc}"
            print(f"multihost       ERROR ({type(exc).__name__}: {exc})", flush=True)
            traceback.print_exc(file=sys.stderr)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    print(f"# {sum(r.passed for r in results)}/{len(results)} targets met in "
          f"{time.time() - started:.0f}s; load average {os.getloadavg()[0]:.2f}", flush=True)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    doc = {"when": stamp, "datums": n, "cpu_seconds": args.cpu_seconds, "rounds": rounds,
           "host": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "machine": platform.machine(), "load_avg": os.getloadavg()},
           "seconds": time.time() - started,
           "results": [r.as_json() for r in results], "problems": problems}
    for target in (OUT_DIR / f"multihost-results-{stamp}.json",
                   OUT_DIR / "multihost-latest.json"):
        target.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"# results: {OUT_DIR / f'multihost-results-{stamp}.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
