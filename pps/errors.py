"""Typed errors of the pipeline system.

Every class derives from :class:`PPSError` and from the generic category in
``pfs.errors`` (``InvalidArgument``, ``NotFound``...) so the server's single status
table maps them without knowing PPS. Callers match on the class, never on the text.
"""

from __future__ import annotations

from pfs.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    TuskError,
    register,
)


class PPSError(TuskError):
    """Root of every PPS error."""


class InvalidSpec(PPSError, InvalidArgument):
    """A pipeline spec is malformed or inconsistent.

    Attributes:
        path: the dotted field path the problem is about (``transform.cmd``,
            ``input.cross[1].pfs.glob``), or ``""`` for the document as a whole.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


class MissingInputCommit(PPSError, InvalidArgument):
    """Datum enumeration was asked for an input whose commit was not given."""

    def __init__(self, input_name: str) -> None:
        super().__init__(
            f'no commit was given for input "{input_name}": resolve every input '
            "of the pipeline to a commit before enumerating datums"
        )
        self.input_name = input_name


class PipelineNotFound(PPSError, NotFound):
    def __init__(self, pipeline: str) -> None:
        super().__init__(
            f"pipeline {pipeline} not found (list pipelines with `tusk list pipeline`)"
        )
        self.pipeline = pipeline


class PipelineExists(PPSError, AlreadyExists):
    def __init__(self, pipeline: str) -> None:
        super().__init__(
            f"pipeline {pipeline} already exists (use `tusk update pipeline` to change it)"
        )
        self.pipeline = pipeline


class JobNotFound(PPSError, NotFound):
    def __init__(self, pipeline: str, job: str) -> None:
        super().__init__(f"job {pipeline}@{job} not found")
        self.pipeline = pipeline
        self.job = job


class DatumNotFound(PPSError, NotFound):
    def __init__(self, pipeline: str, job: str, datum: str) -> None:
        super().__init__(f"datum {datum} not found in job {pipeline}@{job}")
        self.pipeline = pipeline
        self.job = job
        self.datum = datum


class PipelineStateError(PPSError, FailedPrecondition):
    """An operation is not allowed in the pipeline's or job's current state."""


for _cls in (
    PPSError,
    InvalidSpec,
    MissingInputCommit,
    PipelineNotFound,
    PipelineExists,
    JobNotFound,
    DatumNotFound,
    PipelineStateError,
):
    register(_cls)
