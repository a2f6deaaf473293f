"""Every metadata key and object key PPS uses, built in one place.

Metadata (small records; JSON unless noted)::

    pipelines/<pipeline>                  PipelineRec
    pipeline_versions/<pipeline>/<v:06d>  PipelineRec of each version (list pipeline --history)
    jobs/<pipeline>/<job>                 JobRec
    queue/<pipeline>/<job>/<unit:06d>     UnitTicket   a unit waiting for a worker
    claims/<pipeline>/<job>/<unit:06d>    UnitTicket   a unit a worker holds (on its lease)
    done/<pipeline>/<job>/<unit:06d>      UnitDone     a finished unit and its results object
    attempts/<pipeline>/<job>/<unit:06d>  UnitTicket   attempts started (outlives a lost claim)
    cron/<pipeline>/<input>               {"last": epoch seconds of the last tick}

Objects (msgpack; per-datum data never goes into metadata)::

    pps/<pipeline>/<job>/plan                    Plan
    pps/<pipeline>/<job>/units/<unit:06d>-<try>  list of DatumResult (one attempt of a unit)
    pps/<pipeline>/<job>/datums                  list of DatumIndexEntry (a successful job's index)

A unit moves queue -> claims -> done; each attempt writes its own results
object, and ``done`` names the one that counts, so a worker that lost its
claim cannot overwrite the results of the attempt that replaced it.
"""

from __future__ import annotations

ALL_PIPELINES = "pipelines/"


def pipeline(name: str) -> str:
    return f"pipelines/{name}"


def pipeline_version(name: str, version: int) -> str:
    return f"pipeline_versions/{name}/{version:06d}"


def pipeline_versions(name: str) -> str:
    return f"pipeline_versions/{name}/"


def jobs(pipeline: str) -> str:
    """Prefix of every job of ``pipeline``."""
    return f"jobs/{pipeline}/"


def job(pipeline: str, job_id: str) -> str:
    return f"jobs/{pipeline}/{job_id}"


def queue_prefix(pipeline: str, job_id: str = "") -> str:
    return f"queue/{pipeline}/{job_id}/" if job_id else f"queue/{pipeline}/"


def queued(pipeline: str, job_id: str, unit: int) -> str:
    return f"queue/{pipeline}/{job_id}/{unit:06d}"


def claim(pipeline: str, job_id: str, unit: int) -> str:
    return f"claims/{pipeline}/{job_id}/{unit:06d}"


def claim_prefix(pipeline: str, job_id: str) -> str:
    return f"claims/{pipeline}/{job_id}/"


def attempts_prefix(pipeline: str, job_id: str) -> str:
    return f"attempts/{pipeline}/{job_id}/"


def attempts(pipeline: str, job_id: str, unit: int) -> str:
    return f"attempts/{pipeline}/{job_id}/{unit:06d}"


def done_prefix(pipeline: str, job_id: str) -> str:
    return f"done/{pipeline}/{job_id}/"


def done(pipeline: str, job_id: str, unit: int) -> str:
    return f"done/{pipeline}/{job_id}/{unit:06d}"


def unit_of(key: str) -> tuple[str, int]:
    """``(job, unit)`` of a queue, claim or done key."""
    _, _, job_id, n = key.split("/")
    return job_id, int(n)


def cron(pipeline: str, input_name: str) -> str:
    return f"cron/{pipeline}/{input_name}"


def per_pipeline_prefixes(pipeline: str) -> tuple[str, ...]:
    """Every metadata prefix holding records of ``pipeline`` (deleted with it)."""
    return tuple(f"{kind}/{pipeline}/" for kind in (
        "pipeline_versions", "jobs", "queue", "claims", "done", "attempts", "cron"))


def plan_object(pipeline: str, job_id: str) -> str:
    return f"pps/{pipeline}/{job_id}/plan"


def unit_object(pipeline: str, job_id: str, unit: int, attempt: int) -> str:
    return f"pps/{pipeline}/{job_id}/units/{unit:06d}-{attempt}"


def index_object(pipeline: str, job_id: str) -> str:
    return f"pps/{pipeline}/{job_id}/datums"
