"""Scratch benchmark of per-datum overhead (not a test; tests never assert timings).

    python -m pps.runners._bench [N]

Runs N (default 1000) no-op datums (`true`) through one docker session, then N
datums that read one small input file and write one output file, then N/10
no-op datums through the process runner; prints median and mean ms per datum.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

from pps.runners import DatumRun, Runner, RunnerSpec
from pps.runners.docker import DockerRunner
from pps.runners.process import ProcessRunner


def _measure(runner: Runner, n: int, with_files: bool, scratch: str) -> list[float]:
    inp = os.path.join(scratch, "input")
    os.makedirs(inp, exist_ok=True)
    with open(os.path.join(inp, "f.txt"), "w") as f:
        f.write("data\n")
    session = runner.start(RunnerSpec("tusk/busybox:latest"), tempfile.mkdtemp(dir=scratch))
    times: list[float] = []
    try:
        for i in range(n):
            out = os.path.join(scratch, f"out-{runner.name}-{with_files}-{i}")
            if with_files:
                d = DatumRun(
                    ("cp", "/pfs/in/f.txt", "/pfs/out/f.txt"),
                    None,
                    {"PACH_DATUM_ID": str(i)},
                    {"in": inp},
                    out,
                )
            else:
                d = DatumRun(("true",), None, {"PACH_DATUM_ID": str(i)}, {}, out)
            t = time.perf_counter()
            r = session.run(d)
            times.append(time.perf_counter() - t)
            if not r.ok:
                raise SystemExit(f"datum {i} failed: {r}")
    finally:
        session.close()
    return times


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with tempfile.TemporaryDirectory() as scratch:
        cases: list[tuple[str, Runner, int, bool]] = [
            ("docker, no-op", DockerRunner(), n, False),
            ("docker, 1 input file + 1 output file", DockerRunner(), n, True),
            ("process (bwrap), no-op", ProcessRunner(), max(1, n // 10), False),
        ]
        for label, runner, count, files in cases:
            ok, why = runner.available()
            if not ok:
                print(f"{label}: skipped ({why})")
                continue
            times = _measure(runner, count, files, scratch)
            print(
                f"{label}: {count} datums, median {statistics.median(times) * 1e3:.2f} ms, "
                f"mean {statistics.mean(times) * 1e3:.2f} ms, "
                f"p99 {sorted(times)[int(len(times) * 0.99) - 1] * 1e3:.2f} ms"
            )


if __name__ == "__main__":
    main()
