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
    pps/<pipeline>/<job>/datums                  a successful job's datum index (its manifest)
    pps/<pipeline>/shards/<hash>                 a shard of datum indexes (pps.datum_index)
    pps/<pipeline>/<job>/egress                  EgressManifest (what the job's egress left in S3)

A unit moves queue -> claims -> done; each attempt writes its own results
object, and ``done`` names the one that counts, so a worker that lost its
claim cannot overwrite the results of the attempt that replaced it.
"""

from __future__ import annotations


def _p(pipeline: str) -> str:
    """A pipeline's full name (``PROJECT/NAME`` outside ``default``) as one key component."""
    return pipeline.replace("/", ".")

ALL_PIPELINES = "pipelines/"


def pipeline(name: str) -> str:
    return f"pipelines/{_p(name)}"


def pipeline_version(name: str, version: int) -> str:
    return f"pipeline_versions/{_p(name)}/{version:06d}"


def pipeline_versions(name: str) -> str:
    return f"pipeline_versions/{_p(name)}/"


def jobs(pipeline: str) -> str:
    """Prefix of every job of ``pipeline``."""
    return f"jobs/{_p(pipeline)}/"


def job(pipeline: str, job_id: str) -> str:
    return f"jobs/{_p(pipeline)}/{job_id}"


def queue_prefix(pipeline: str, job_id: str = "") -> str:
    return f"queue/{_p(pipeline)}/{job_id}/" if job_id else f"queue/{_p(pipeline)}/"


def queued(pipeline: str, job_id: str, unit: int) -> str:
    return f"queue/{_p(pipeline)}/{job_id}/{unit:06d}"


def claim(pipeline: str, job_id: str, unit: int) -> str:
    return f"claims/{_p(pipeline)}/{job_id}/{unit:06d}"


def claim_prefix(pipeline: str, job_id: str) -> str:
    return f"claims/{_p(pipeline)}/{job_id}/"


def attempts_prefix(pipeline: str, job_id: str) -> str:
    return f"attempts/{_p(pipeline)}/{job_id}/"


def attempts(pipeline: str, job_id: str, unit: int) -> str:
    return f"attempts/{_p(pipeline)}/{job_id}/{unit:06d}"


def done_prefix(pipeline: str, job_id: str) -> str:
    return f"done/{_p(pipeline)}/{job_id}/"


def done(pipeline: str, job_id: str, unit: int) -> str:
    return f"done/{_p(pipeline)}/{job_id}/{unit:06d}"


def unit_of(key: str) -> tuple[str, int]:
    """``(job, unit)`` of a queue, claim or done key."""
    _, _, job_id, n = key.split("/")
    return job_id, int(n)


def restart(pipeline: str, job_id: str, datum_id: str) -> str:
    """Written and removed at once: its watch event asks the worker running
    the datum to restart it (``restart datum``)."""
    return f"restart/{_p(pipeline)}/{job_id}/{datum_id}"


def parse_restart(key: str) -> tuple[str, str, str] | None:
    """``(pipeline, job, datum)`` of a :func:`restart` key, None for another key."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != "restart":
        return None
    return parts[1].replace(".", "/"), parts[2], parts[3]


def cron(pipeline: str, input_name: str) -> str:
    return f"cron/{_p(pipeline)}/{input_name}"


def per_pipeline_prefixes(pipeline: str) -> tuple[str, ...]:
    """Every metadata prefix holding records of ``pipeline`` (deleted with it)."""
    return tuple(f"{kind}/{_p(pipeline)}/" for kind in (
        "pipeline_versions", "jobs", "queue", "claims", "done", "attempts", "cron"))


def plan_object(pipeline: str, job_id: str) -> str:
    return f"pps/{_p(pipeline)}/{job_id}/plan"


def unit_object(pipeline: str, job_id: str, unit: int, attempt: int) -> str:
    return f"pps/{_p(pipeline)}/{job_id}/units/{unit:06d}-{attempt}"


def legacy_unit_object(pipeline: str, job_id: str, unit: int) -> str:
    """Where a unit's results were before attempts were numbered."""
    return f"pps/{_p(pipeline)}/{job_id}/units/{unit:06d}"


def job_objects(pipeline: str, job_id: str) -> str:
    """Prefix of every object of a job."""
    return f"pps/{_p(pipeline)}/{job_id}/"


def index_object(pipeline: str, job_id: str) -> str:
    return f"pps/{_p(pipeline)}/{job_id}/datums"


def index_shard(pipeline: str, digest: str) -> str:
    return f"pps/{_p(pipeline)}/shards/{digest}"


def egress_object(pipeline: str, job_id: str) -> str:
    return f"pps/{_p(pipeline)}/{job_id}/egress"
