"""A pipeline's log lines: the master's job events and the workers' datum lines.

Neither kind has a record of its own: the master's lines are made from the
job record (created, running with N datums, finished with counts and the
reason), and the workers' lines are the ``logs`` of each datum's result in
the job's unit objects. :meth:`pps.api.PPS.get_logs` streams them, following
new units and jobs as they appear.
"""

from __future__ import annotations

from collections.abc import Iterator

from pps.jobs import Jobs
from pps.model import LogLine
from pps.records import JobRec


def new_lines(jobs: Jobs, pipeline: str, job_recs: list[JobRec], datum: str | None,
              seen: set[tuple[str, int | str]], kinds: tuple[bool, bool]) -> Iterator[LogLine]:
    """The lines of ``job_recs`` not yet in ``seen`` (which this adds to), job
    by job: each job's created and running lines, its datums' lines (of
    ``datum`` only, when given), then its finished line.

    Args:
        kinds: (the master's lines, the workers' lines) to include.
    """
    for j in job_recs:
        events = job_events(j) if kinds[0] else []
        for key, ts, text in events:
            if key != "finished" and (j.id, key) not in seen:
                seen.add((j.id, key))
                yield LogLine(pipeline=pipeline, job_id=j.id, datum_id="", ts=ts,
                              stream="system", message=text, master=True)
        if kinds[1]:
            for unit, _, results in jobs.results(j):
                if (j.id, unit) in seen:
                    continue
                seen.add((j.id, unit))
                for r in results:
                    if datum and not r.id.startswith(datum):
                        continue
                    for ts, stream, text in r.logs:
                        for line in text.splitlines():
                            yield LogLine(pipeline=pipeline, job_id=j.id, datum_id=r.id,
                                          ts=ts, stream=stream, message=line, worker=r.worker)
        for key, ts, text in events:
            if key == "finished" and (j.id, key) not in seen:
                seen.add((j.id, key))
                yield LogLine(pipeline=pipeline, job_id=j.id, datum_id="", ts=ts,
                              stream="system", message=text, master=True)


def job_events(j: JobRec) -> list[tuple[str, float, str]]:
    """The master's lines of a job: ``(key, time, text)``."""
    out = [("created", j.created, f"job {j.id} created (pipeline version {j.version})")]
    if j.started is not None:
        todo = j.data_total - j.data_skipped
        out.append(("started", j.started, f"job {j.id} running: {todo} datums to process, "
                                          f"{j.data_skipped} skipped"))
    if j.finished is not None:
        state = j.state.lower()
        text = (f"job {j.id} finished: {state}; {j.data_processed} processed, "
                f"{j.data_skipped} skipped, {j.data_failed} failed, "
                f"{j.data_recovered} recovered")
        # A log line is one line: a reason with a stderr tail is folded.
        reason = " ".join(x.strip() for x in j.reason.splitlines() if x.strip())
        out.append(("finished", j.finished, text + (f"; {reason}" if reason else "")))
    return out
