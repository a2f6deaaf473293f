"""What every console page reads: the daemon's own PFS and PPS objects.

The console runs inside the daemon, so pages call the core directly (no gRPC
round trip) and must stay read-only: nothing here or in the pages calls a
method that changes state.
"""

from __future__ import annotations

from dataclasses import dataclass

from pfs.api import PFS
from pfs.paths import split_repo
from pps.api import PPS
from pps.records import JobRec
from pps.spec import spec_from_dict
from tusk.console.urls import full_name

__all__ = ["Console", "PipelineSummary"]


@dataclass(frozen=True)
class PipelineSummary:
    """A pipeline as the DAG shows it: its state and its last job."""

    name: str
    state: str
    reason: str
    inputs: tuple[str, ...]  # full repo names
    last_job: JobRec | None
    version: int


@dataclass(frozen=True)
class Console:
    pfs: PFS
    pps: PPS

    def pipeline_names(self) -> set[str]:
        return {p.name for p in self.pps.list_pipeline()}

    def summaries(self, project: str) -> list[PipelineSummary]:
        """Every pipeline of ``project`` with its last job.

        One range read of each pipeline's job records (PPS.list_pipeline
        reads them once for the last state; the last record here comes from
        the same kind of read), never a read per job.
        """
        out = []
        for info in self.pps.list_pipeline(project):
            jobs = self.pps.jobs.of_pipeline(info.name)
            last = jobs[-1] if jobs else None
            spec = spec_from_dict(info.spec)
            inputs = tuple(sorted({full_name(leaf.project, leaf.repo)
                                   for leaf in spec.input.leaves()}))
            out.append(PipelineSummary(info.name, info.state.value, info.reason, inputs,
                                       last, info.version))
        out.sort(key=lambda s: s.name)
        return out

    @staticmethod
    def project_of(name: str) -> str:
        return split_repo(name)[0]

    def is_pipeline(self, repo: str) -> bool:
        try:
            self.pps.inspect_pipeline(repo)
        except Exception:  # PipelineNotFound, or a record that cannot be read
            return False
        return True

