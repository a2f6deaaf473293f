"""Scale: work proportional to the change, datums at container speed.

Like ``bench/pps_bench.py`` (whose daemon and client helpers this reuses):
each benchmark starts its own ``tusk daemon`` (embedded default, Docker
runner) and drives it through the Python client; every number is a median,
compared with a limit or a baseline measured in the same run; the script
reports and exits 0. ``docs/benchmarks-scale.md`` describes each line.

Benchmarks:

* ``change_one``: N one-line files (glob ``/*``, ``cp`` of each file,
  parallelism 2). The first job over all N datums is timed (with the rate of
  its first and last 10% of datums, from the datums' own start times), then
  ``list datum`` of that job (time to the first line), then 3 times one file
  changes: time from the put (which finishes the input commit) to the job's
  SUCCESS, which must process exactly 1 datum; the daemon's peak RSS during
  those jobs (peak reset first through ``/proc/PID/clear_refs``).
* ``join_change``: two inputs of N files joined on ``$1``; after the first
  job, 3 one-file changes (alternately left and right), timed the same way.
* ``first_run``: 10,000 files through ``tr a-z A-Z`` (the ``incremental``
  scenario of pps_bench) with parallelism 2 and 1, against ``dvc repro``'s
  first run of the same transform; 3 interleaved rounds, medians.
* ``plan_million``: in process, no daemon: an embedded PFS with 1,000,000
  files and a datum index of a job over all of them (written directly, as a
  successful first job leaves it), then one file changes: the time to plan
  the next job from the difference and write its updated index, and the
  process's peak RSS. This is the part of a job whose cost grows with the
  input; the daemon's own end-to-end run at that size is ``change_one
  --files 1000000`` (its first job runs a million containers' datums).

Usage::

    python bench/scale_bench.py [--only NAME,...] [--files N] [--join-files N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pps_bench as pb

CP = "for f in /pfs/in/*; do cp \"$f\" /pfs/out/; done"
JOIN = "for f in /pfs/left/* /pfs/right/*; do cp \"$f\" /pfs/out/; done"


def _rss_peak(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _put_many(c: Any, repo: str, n: int, fmt: str) -> None:
    with c.modify_file(repo, "master") as mf:
        for i in range(n):
            mf.put_file(fmt.format(i), b"line %d\n" % i)


def _watch(c: Any, pipeline: str, job: str, n: int) -> tuple[Any, float, float]:
    """Wait for the job, polling its processed count twice a second; returns
    the final info and the rates (datums/s) over its first and last 10%."""
    curve: list[tuple[float, int]] = []
    while True:
        info = c.inspect_job(pipeline, job)
        curve.append((time.perf_counter(), int(info.data_processed)))
        if pb.state_name(info) not in ("JOB_CREATED", "JOB_STARTING", "JOB_RUNNING"):
            break
        time.sleep(0.5)
    info = pb.wait_job(c, pipeline, job)

    def at(count: float) -> float:
        return next(t for t, k in curve if k >= count)

    try:
        first = (0.1 * n) / max(1e-9, at(0.1 * n) - at(1))
        last = (0.1 * n) / max(1e-9, at(n) - at(0.9 * n))
    except StopIteration:
        first = last = 0.0
    return info, first, last


def _warm_up(c: Any, pipeline: str, repo: str, paths: list[str]) -> list[float]:
    """Untimed changes after a daemon restart, one per worker: each starts a
    worker's container (230-330 ms here), which a long-running daemon's
    workers have done long before. Returns their times, for the notes."""
    took = []
    for p in paths:
        t0 = time.perf_counter()
        pb.wait_job(c, pipeline, pb.put_files(c, repo, {p: b"warm-up\n"}))
        took.append(time.perf_counter() - t0)
    return took


def _first_line(c: Any, pipeline: str, job: str) -> float:
    t0 = time.perf_counter()
    it = iter(c.list_datum(pipeline, job))
    next(it)
    took = time.perf_counter() - t0
    it.cancel() if hasattr(it, "cancel") else None
    return took


def bench_change_one(ctx: pb.Context, n: int) -> list[pb.Result]:
    pb.docker_client()
    runs: list[float] = []
    server: list[float] = []
    with ctx.daemon("change_one") as d:
        c = d.client
        c.create_repo("in")
        t0 = time.perf_counter()
        _put_many(c, "in", n, "/f{:07d}")
        ingest = time.perf_counter() - t0
        t0 = time.perf_counter()
        c.create_pipeline(pb.spec("copy", pb.BUSYBOX, ["sh", "-c", CP],
                                  {"pfs": {"repo": "in", "glob": "/*", "name": "in"}},
                                  parallelism=2))
        first, rate_first, rate_last = _watch(c, "copy", pb.first_job(c, "copy"), n)
        first_wall = time.perf_counter() - t0
        assert d.proc is not None
        first_peak = _rss_peak(d.proc.pid)
        if first.data_processed != n:
            raise RuntimeError(f"first job processed {first.data_processed}, not {n}")
        first_line = [_first_line(c, "copy", str(first.job.id)) for _ in range(3)]
        # A fresh daemon process on the same data: its peak RSS is that of
        # the change jobs, not what the first job's heap left behind.
        d.stop()
        d.start()
        c = d.client
        assert d.proc is not None
        _reset_peak(d.proc.pid)
        cold = _warm_up(c, "copy", "in", [f"/f{n - 1 - k:07d}" for k in range(2)])
        for i in range(3):
            path = f"/f{(i * 7919) % n:07d}"
            t0 = time.perf_counter()
            cid = pb.put_files(c, "in", {path: f"changed {i}\n".encode()})
            info = pb.wait_job(c, "copy", cid)
            runs.append(time.perf_counter() - t0)
            server.append(pb.job_wall(info))
            if info.data_processed != 1 or info.data_total != n:
                raise RuntimeError(f"change job processed {info.data_processed} of "
                                   f"{info.data_total}, not 1 of {n}")
            if c.get_file_bytes("copy", "master", path) != f"changed {i}\n".encode():
                raise RuntimeError("the output was not updated")
        peak = _rss_peak(d.proc.pid)
        lst = [_first_line(c, "copy", cid) for _ in range(3)]
    note = (f"{n} files (ingest {ingest:.1f}s); server job wall "
            f"{statistics.median(server) * 1000:.0f}ms; 1 processed / {n - 1} skipped; daemon "
            f"peak RSS {peak / 2**20:.0f} MiB (a daemon restarted after the first job); the "
            f"2 changes before the timed ones, each starting a worker's container: "
            f"{', '.join(f'{x * 1000:.0f}ms' for x in cold)}")
    first_note = (f"{n} datums, parallelism 2: {first_wall:.1f}s "
                  f"({first_wall / n * 1000:.2f} ms/datum); first 10% {rate_first:.0f} datums/s, "
                  f"last 10% {rate_last:.0f} datums/s; daemon peak RSS "
                  f"{first_peak / 2**20:.0f} MiB")
    return [
        pb.Result("change_one", "s", runs, [1.0] * len(runs), 1.0, limit=True, note=note,
                  extra={"server": server, "peak_rss": peak, "files": n}),
        pb.Result("steady_rate", "x", [rate_first / max(rate_last, 1e-9)], [1.0], 1.1,
                  note=first_note + " (ratio = first-10% rate / last-10% rate)",
                  extra={"first_wall": first_wall, "first_peak_rss": first_peak}),
        pb.Result("list_datum_first_line", "s", first_line + lst, [1.0], 1.0, limit=True,
                  note=f"list datum of the {n}-datum job and of a 1-processed job"),
    ]


def bench_join_change(ctx: pb.Context, n: int) -> list[pb.Result]:
    pb.docker_client()
    runs: list[float] = []
    server: list[float] = []
    with ctx.daemon("join_change") as d:
        c = d.client
        for r in ("left", "right"):
            c.create_repo(r)
            _put_many(c, r, n, "/{:06d}.txt")
        t0 = time.perf_counter()
        c.create_pipeline(pb.spec("joined", pb.BUSYBOX, ["sh", "-c", JOIN], {"join": [
            {"pfs": {"repo": "left", "glob": "/(*).txt", "join_on": "$1"}},
            {"pfs": {"repo": "right", "glob": "/(*).txt", "join_on": "$1"}}]}, parallelism=2))
        pb.wait_job(c, "joined", pb.first_job(c, "joined"), timeout=24 * 3600)
        first_wall = time.perf_counter() - t0
        d.stop()  # a fresh daemon: its master rebuilds the join's key tables once
        d.start()
        c = d.client
        cold = _warm_up(c, "joined", "left", ["/000001.txt", "/000002.txt"])
        for i in range(3):
            repo = ("left", "right")[i % 2]
            t0 = time.perf_counter()
            cid = pb.put_files(c, repo, {f"/{(i * 7919) % n:06d}.txt": f"c{i}\n".encode()})
            info = pb.wait_job(c, "joined", cid)
            runs.append(time.perf_counter() - t0)
            server.append(pb.job_wall(info))
            if info.data_processed != 1:
                raise RuntimeError(f"join change processed {info.data_processed}, not 1")
    return [pb.Result("join_change", "s", runs, [1.0] * len(runs), 1.0, limit=True,
                      note=f"join of 2 x {n} files; server job wall "
                           f"{statistics.median(server) * 1000:.0f}ms; first job "
                           f"{first_wall:.1f}s; the 2 changes before the timed ones (key tables "
                           f"rebuilt, workers' containers started): "
                           f"{', '.join(f'{x * 1000:.0f}ms' for x in cold)}")]


def bench_first_run(ctx: pb.Context, n: int = 10_000, rounds: int = 3) -> list[pb.Result]:
    """``rounds`` interleaved rounds of dvc, tusk at parallelism 2, tusk at 1:
    medians, so a noisy moment of a shared machine weighs on one round only."""
    pb.docker_client()
    if shutil.which("dvc") is None:
        raise pb.Skip("dvc is not installed: pip install -e '.[bench]'")
    files = pb.text_files(n)
    dvc: list[float] = []
    tusk: dict[int, list[float]] = {2: [], 1: []}
    # Each round's DVC repository is deleted only at the end: on this
    # machine's ext4 (mounted with online discard), removing its ~40,000
    # files made the kernel's file creation several times slower for the
    # next half minute (the daemon's system time 4 s -> 21 s, 20 s -> 38 s
    # for the same job), which would have been charged to tusk.
    # Each timed run also starts with no dirty pages: `dvc repro` leaves
    # ~120 MiB for the kernel to write back over the next 30 s (ext4 allocates
    # their blocks then), which would have run during tusk's job, and tusk's
    # ingest leaves some for the next round's dvc.
    roots: list[Path] = []
    for r in range(rounds):
        root = ctx.scratch(f"first_run{r}")
        roots.append(root)
        os.sync()
        t0 = time.perf_counter()
        pb._dvc_repo(root, files)
        dvc.append(time.perf_counter() - t0)
        for par in (2, 1):
            with ctx.daemon(f"first_run_p{par}_{r}") as d:
                c = d.client
                c.create_repo("words")
                pb.put_files(c, "words", files)
                os.sync()
                t0 = time.perf_counter()
                c.create_pipeline(pb.spec("upper", pb.BUSYBOX, ["sh", "-c", pb.UPPER], {"pfs": {
                    "repo": "words", "glob": "/*"}}, parallelism=par))
                info = pb.wait_job(c, "upper", pb.first_job(c, "upper"))
                tusk[par].append(time.perf_counter() - t0)
                if info.data_processed != n:
                    raise RuntimeError(f"processed {info.data_processed}, not {n}")
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)
    out: list[pb.Result] = []
    for par in (2, 1):
        rounds_text = ", ".join(f"{t:.1f}/{b:.1f}" for t, b in zip(tusk[par], dvc, strict=True))
        out.append(pb.Result(f"first_run_p{par}", "s", tusk[par], dvc,
                             0.5 if par == 2 else 1.0,
                             note=f"{n} files, `tr` per file, parallelism {par}; baseline: dvc "
                                  f"repro (git add + first repro); {rounds} rounds tusk/dvc: "
                                  f"{rounds_text} s"))
    return out


def bench_plan_million(ctx: pb.Context, n: int = 1_000_000) -> list[pb.Result]:
    from pfs.api import PFS
    from pfs.blobs import BlobStore
    from pfs.metadata_sqlite import SQLiteMetadataStore
    from pfs.objects import LocalObjectStore
    from pps.controller.planner import Base, PFSSource, plan_job
    from pps.datum_index import DatumIndex
    from pps.records import DatumIndexEntry
    from pps.spec import spec_from_dict

    root = ctx.scratch("plan_million")
    objects = LocalObjectStore(str(root / "objects"))
    pfs = PFS(SQLiteMetadataStore(str(root / "meta.db")), BlobStore(objects))
    pfs.create_repo("in")
    with pfs.modify_file("in", "master") as w:
        for i in range(n):
            w.put_file(f"/f{i:07d}", [b"line %d\n" % i])
    spec = spec_from_dict({"pipeline": {"name": "copy"}, "transform": {"cmd": ["cp"]},
                           "input": {"pfs": {"repo": "in", "glob": "/*"}}})

    def head() -> dict[str, str]:
        return {"in": pfs.inspect_commit("in", "master").id}

    di = DatumIndex(objects, "copy")
    plan = plan_job(spec, "", head(), PFSSource(pfs), None)
    puts = [DatumIndexEntry(d.id, d.hash, "success", "j0", (d.files()[0].path,),
                            tuple(tuple(f) for f in d.files())) for d in plan.process]
    m = di.write(None, puts, (), plan.commits, plan.fingerprint)
    di.put_manifest("j0", m)
    del puts, plan
    base = Base("j0", di, m)
    times: list[float] = []
    for i in range(5):
        with pfs.modify_file("in", "master") as w:
            w.put_file(f"/f{(i * 7919) % n:07d}", [b"changed %d\n" % i])
        t0 = time.perf_counter()
        fresh = DatumIndex(objects, "copy")  # nothing cached from the last run
        base = Base(base.job, fresh, fresh.manifest(base.job) or m)
        plan = plan_job(spec, "", head(), PFSSource(pfs), base)
        job = f"j{i + 1}"
        puts = [DatumIndexEntry(d.id, d.hash, "success", job, (d.files()[0].path,),
                                tuple(tuple(f) for f in d.files())) for d in plan.process]
        nm = fresh.write(base.manifest, puts, plan.removed, plan.commits, plan.fingerprint)
        fresh.put_manifest(job, nm)
        times.append(time.perf_counter() - t0)
        if len(plan.process) != 1 or plan.data_total != n:
            raise RuntimeError(f"planned {len(plan.process)} of {plan.data_total}")
        base = Base(job, fresh, nm)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    shutil.rmtree(root, ignore_errors=True)
    return [pb.Result("plan_million", "s", times, [1.0] * len(times), 1.0, limit=True,
                      note=f"{n} files: plan from the difference + index update, 1 of {n} "
                           f"datums planned; process peak RSS {peak / 2**20:.0f} MiB (it also "
                           f"built the million-file commit and the first index)")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="change_one,join_change,first_run,plan_million")
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--join-files", type=int, default=100_000)
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--profile", action="store_true",
                    help="sample each daemon with py-spy (bench/out/pps-profile-*)")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="tusk-scale-", dir=args.tmp))
    ctx = pb.Context(pb.FULL, root, profile=args.profile)
    results: list[pb.Result] = []
    todo = {"change_one": lambda: bench_change_one(ctx, args.files),
            "join_change": lambda: bench_join_change(ctx, args.join_files),
            "first_run": lambda: bench_first_run(ctx),
            "plan_million": lambda: bench_plan_million(ctx)}
    for name in args.only.split(","):
        try:
            got = todo[name]()
        except pb.Skip as e:
            print(f"{name}  SKIP  ({e})", flush=True)
            continue
        except Exception:
            print(f"{name}  ERROR\n{traceback.format_exc()}", flush=True)
            continue
        for r in got:
            print(r.line(), flush=True)
        results.extend(got)
    pb.OUT_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    data = json.dumps([r.as_json() for r in results], indent=2)
    (pb.OUT_DIR / f"scale-results-{stamp}.json").write_text(data)
    (pb.OUT_DIR / "scale-latest.json").write_text(data)
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
