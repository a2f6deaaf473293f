"""The controller of one pipeline version: a master, workers and cron threads.

Where each part lives:

* :mod:`~pps.controller.planner`: which datums a job runs (pure).
* :mod:`~pps.controller.queue`: work units in the metadata store: queue,
  claim, done, retry (compare-and-swap, leases).
* :mod:`~pps.controller.merge`: a job's results into its output commit.
* :mod:`~pps.controller.master`: the master loop driving each job
  CREATED -> STARTING -> RUNNING -> FINISHING -> terminal.
* :mod:`~pps.controller.worker_loop`: a worker claiming units and running
  their datums (``pps.worker``) in one runner session.
* :mod:`~pps.controller.cron`: ticks of cron inputs.

A :class:`Controller` gets everything from outside through a
:class:`ControllerEnv`, so tests can run one over in-memory stores and a fake
runner in milliseconds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pfs.api import PFS
from pps.controller.delta import KeyTables
from pps.controller.queue import WorkQueue
from pps.gateway import GatewayFactory
from pps.jobs import Jobs
from pps.runners import Runner
from pps.spec import PipelineSpec

__all__ = ["Controller", "ControllerEnv"]


@dataclass
class ControllerEnv:
    """What a controller uses of the service that owns it.

    Attributes:
        masters: run masters and cron (a daemon); False for ``tusk worker``.
        instance: this process's worker identity (recorded on claims).
        lease: the current lease ID that claims are tied to.
        runner: the runner (created on first use).
        wait: block until woken (a metadata change, a notification) or the
            timeout passes, unless the event is set.
        notify: wake every waiter.
        tick: commit one cron tick (pipeline, cron input, epoch seconds).
        default_image: image for a transform without one.
        s3_gateways: makes a datum's S3 gateway (``pfs.s3`` inputs,
            ``s3_out``; see :mod:`pps.gateway`); None: such datums fail.
    """

    pfs: PFS
    jobs: Jobs
    scratch_dir: str
    masters: bool
    instance: str
    lease: Callable[[], int]
    runner: Callable[[], Runner]
    wait: Callable[[threading.Event, float], None]
    notify: Callable[[], None]
    tick: Callable[[str, object, float], None]
    default_image: str
    s3_gateways: GatewayFactory | None = None


class Controller:
    """The threads of one pipeline version."""

    def __init__(self, env: ControllerEnv, name: str, version: int, spec: PipelineSpec,
                 workers: int | None = None) -> None:
        self.env = env
        self.name = name
        self.version = version
        self.spec = spec
        self.queue = WorkQueue(env.pfs.meta, name)
        #: Join/group inputs' matches by key, kept between jobs (planning).
        self.key_tables = KeyTables()
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        #: The datum workers of this process, by worker slot (restart datum).
        self.datum_workers: dict[int, Any] = {}
        self.workers = workers if workers is not None else max(
            1, spec.parallelism_spec.constant or 1)

    def start(self) -> None:
        from pps.controller.cron import cron_inputs, cron_loop
        from pps.controller.master import master_loop
        from pps.controller.worker_loop import worker_loop

        def thread(target: Callable[..., None], name: str, *args: object) -> None:
            self.threads.append(threading.Thread(target=target, args=(self, *args),
                                                 name=name, daemon=True))

        if self.env.masters:
            thread(master_loop, f"pps-master-{self.name}")
        for i in range(self.workers):
            thread(worker_loop, f"pps-worker-{self.name}-{i}", i)
        if self.env.masters:
            for cron in cron_inputs(self.spec):
                thread(cron_loop, f"pps-cron-{self.name}-{cron.name}", cron)
        for t in self.threads:
            t.start()

    def wait(self, seconds: float = 5.0) -> None:
        """Sleep until woken (metadata watch, notifications) or ``seconds``."""
        self.env.wait(self.stop_event, seconds)

    @property
    def stopped(self) -> bool:
        return self.stop_event.is_set()

    def stop(self, join: bool = True) -> None:
        """Stop the threads. Callers holding the service's lock must not join:
        the threads need that lock to notice the stop."""
        self.stop_event.set()
        self.env.notify()
        if not join:
            return
        for t in self.threads:
            if t is not threading.current_thread():
                t.join(timeout=30)
