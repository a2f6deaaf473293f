"""Cron inputs: a thread per cron input commits a tick file on schedule.

The time of the last tick is kept in the metadata store (``cron/<pipeline>/
<input>``), so a restarted daemon neither repeats nor loses ticks: a start
time in the past catches up by at most :data:`MAX_CATCH_UP` ticks at once.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from typing import TYPE_CHECKING

from pfs.errors import TuskError
from pps import keys
from pps.records import PipelineRec
from pps.spec import CronInput, PipelineSpec, parse_duration

if TYPE_CHECKING:
    from pps.controller import Controller

log = logging.getLogger("tusk.pps")

MAX_CATCH_UP = 100  # ticks made at once for a start time in the past


def cron_inputs(spec: PipelineSpec) -> list[CronInput]:
    return [leaf for leaf in spec.input.leaves() if isinstance(leaf, CronInput)]


def next_tick(schedule: str, after: float) -> float:
    """The first scheduled time strictly after ``after`` (epoch seconds)."""
    if schedule.startswith("@every "):
        return after + parse_duration(schedule[len("@every "):])
    from croniter import croniter

    base = datetime.datetime.fromtimestamp(after, tz=datetime.UTC)
    nxt: float = croniter(schedule, base).get_next(float)
    return nxt


def parse_start(start: str, default: float) -> float:
    if not start:
        return default
    return datetime.datetime.fromisoformat(start).timestamp()


def cron_loop(ctl: Controller, cron: CronInput) -> None:
    meta = ctl.env.pfs.meta
    while not ctl.stopped:
        try:
            kv = meta.get(keys.pipeline(ctl.name))
            if kv is None:
                return
            rec = PipelineRec.decode(kv.value)
            last_kv = meta.get(keys.cron(ctl.name, cron.name))
            last = (json.loads(last_kv.value)["last"] if last_kv is not None
                    else parse_start(cron.start, rec.created) - 1e-6)
            due = next_tick(cron.spec, last)
            now = time.time()
            if rec.stopped or due > now:
                ctl.stop_event.wait(min(1.0, max(0.01, due - now)))
                continue
            for _ in range(MAX_CATCH_UP):
                ctl.env.tick(ctl.name, cron, due)
                due = next_tick(cron.spec, due)
                if due > time.time():
                    break
        except TuskError as e:
            log.warning("pipeline %s cron %s: %s", ctl.name, cron.name, e)
            ctl.stop_event.wait(1.0)
