"""Running datums: stage inputs, run user code, collect ``/pfs/out``.

A worker owns one runner :class:`~pps.runners.Session` (for Docker: one
long-lived container) and a scratch directory. For each datum it

1. writes the datum's input files under ``scratch/in/<input>/<path>`` (the
   runner shows them read-only at ``/pfs/<input>/<path>``),
2. runs ``transform.cmd`` with Pachyderm's environment variables, retrying
   up to ``datum_tries`` times and running ``err_cmd`` after a failed attempt,
3. uploads every file the code wrote to ``scratch/out`` (``/pfs/out``) as
   chunks into packs, tagged with the datum ID,

and returns a :class:`DatumResult`. The caller (``pps.api``) batches results
per work unit into one object; nothing here touches metadata.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pfs.blobs import BlobWriter, ChunkRef
from pfs.errors import InvalidPath, TuskError
from pfs.paths import clean_path
from pfs.tree import DirEntry, FileEntry, Tree
from pps.runners import DatumRun, RunResult, Session
from pps.spec import PipelineSpec

LOG_TAIL = 64 * 1024
PIECE = 4 * 1024 * 1024


@dataclass(frozen=True)
class DatumInputRec:
    """One input of a planned datum (what ``pps.datums.DatumInput`` carries)."""

    name: str
    repo: str
    branch: str
    commit: str
    path: str
    is_dir: bool
    hash: str
    join_on: str = ""
    group_by: str = ""
    empty_files: bool = False

    def encode(self) -> list[Any]:
        return [self.name, self.repo, self.branch, self.commit, self.path, self.is_dir,
                self.hash, self.join_on, self.group_by, self.empty_files]

    @staticmethod
    def decode(v: list[Any]) -> DatumInputRec:
        return DatumInputRec(*v)


@dataclass(frozen=True)
class PlannedDatum:
    id: str
    hash: str
    inputs: tuple[DatumInputRec, ...]

    def encode(self) -> list[Any]:
        return [self.id, self.hash, [i.encode() for i in self.inputs]]

    @staticmethod
    def decode(v: list[Any]) -> PlannedDatum:
        return PlannedDatum(v[0], v[1], tuple(DatumInputRec.decode(i) for i in v[2]))


@dataclass
class OutputFile:
    path: str
    size: int
    chunks: list[ChunkRef]

    def encode(self) -> list[Any]:
        return [self.path, self.size, [list(c) for c in self.chunks]]


@dataclass
class DatumResult:
    id: str
    hash: str
    state: str  # "success" | "failed" | "recovered"
    reason: str = ""
    attempts: int = 0
    started: float = 0.0
    duration: float = 0.0
    outputs: list[OutputFile] = field(default_factory=list)
    logs: list[tuple[float, str, str]] = field(default_factory=list)  # (ts, stream, text)
    stats: dict[str, float] = field(default_factory=dict)

    def encode(self) -> dict[str, Any]:
        return {"id": self.id, "hash": self.hash, "state": self.state, "reason": self.reason,
                "attempts": self.attempts, "started": self.started, "duration": self.duration,
                "outputs": [o.encode() for o in self.outputs],
                "logs": [list(x) for x in self.logs], "stats": self.stats}


TreeFor = Callable[[str, str], Tree]  # (repo, commit) -> tree


class DatumWorker:
    """Runs datums for one pipeline with one runner session."""

    def __init__(self, spec: PipelineSpec, session: Session, scratch: str,
                 tree_for: TreeFor, read_chunks: Callable[[list[ChunkRef]], Iterator[bytes]],
                 writer: Callable[[], BlobWriter]) -> None:
        self.spec = spec
        self.session = session
        self.scratch = scratch
        self.tree_for = tree_for
        self.read_chunks = read_chunks
        self.new_writer = writer
        self.in_dir = os.path.join(scratch, "in")
        self.out_dir = os.path.join(scratch, "out")

    # -- staging ---------------------------------------------------------------

    def _reset_dirs(self) -> None:
        for d in (self.in_dir, self.out_dir):
            if os.path.isdir(d):
                for name in os.listdir(d):
                    p = os.path.join(d, name)
                    if os.path.isdir(p) and not os.path.islink(p):
                        shutil.rmtree(p, onerror=_force_remove)
                    else:
                        os.unlink(p)
            os.makedirs(d, exist_ok=True)
        # User code may run as another uid: let it write /pfs/out.
        os.chmod(self.out_dir, 0o777)

    def _stage(self, inputs: tuple[DatumInputRec, ...]) -> tuple[dict[str, str], int]:
        dirs: dict[str, str] = {}
        nbytes = 0
        for inp in inputs:
            base = os.path.join(self.in_dir, inp.name)
            os.makedirs(base, exist_ok=True)
            dirs[inp.name] = base
            tree = self.tree_for(inp.repo, inp.commit)
            entry = tree.lookup(inp.path if inp.path != "" else "/")
            if entry is None:
                continue
            files: Iterator[FileEntry]
            if isinstance(entry, DirEntry):
                files = tree.files(entry.path)
            else:
                files = iter([entry])
            for f in files:
                dst = os.path.join(base, f.path.lstrip("/"))
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                with open(dst, "wb") as fh:
                    if not inp.empty_files:
                        for piece in self.read_chunks(tree.chunks(f)):
                            fh.write(piece)
                            nbytes += len(piece)
        return dirs, nbytes

    def _env(self, job_id: str, d: PlannedDatum) -> dict[str, str]:
        env = {
            "PACH_JOB_ID": job_id,
            "PACH_OUTPUT_COMMIT_ID": job_id,
            "PACH_DATUM_ID": d.id,
            "PPS_PIPELINE_NAME": self.spec.name,
            "PPS_PROJECT_NAME": "default",
        }
        for inp in d.inputs:
            env[inp.name] = f"/pfs/{inp.name}{inp.path if inp.path != '/' else ''}"
            env[f"{inp.name}_COMMIT"] = inp.commit
            if inp.join_on:
                env[f"PACH_DATUM_{inp.name}_JOIN_ON"] = inp.join_on
            if inp.group_by:
                env[f"PACH_DATUM_{inp.name}_GROUP_BY"] = inp.group_by
        env.update(self.spec.transform.env)
        return env

    # -- running ---------------------------------------------------------------

    def run(self, job_id: str, d: PlannedDatum) -> DatumResult:
        """Process one datum (with retries); never raises for user-code failures."""
        t = self.spec.transform
        res = DatumResult(id=d.id, hash=d.hash, state="failed", started=time.time())
        tries = max(1, self.spec.datum_tries)
        accept = {0, *t.accept_return_code}
        t0 = time.monotonic()
        for attempt in range(1, tries + 1):
            res.attempts = attempt
            self._reset_dirs()
            try:
                td = time.monotonic()
                inputs, nin = self._stage(d.inputs)
                res.stats["download_seconds"] = time.monotonic() - td
                res.stats["download_bytes"] = float(nin)
            except TuskError as e:
                res.reason = f"could not read the datum's input files: {e}"
                res.logs.append((time.time(), "system", res.reason))
                continue
            env = self._env(job_id, d)
            run = DatumRun(cmd=tuple(t.cmd), stdin=_stdin(t.stdin), env=env, inputs=inputs,
                           out_dir=self.out_dir, timeout=self.spec.datum_timeout)
            tp = time.monotonic()
            rr = self.session.run(run)
            res.stats["process_seconds"] = time.monotonic() - tp
            _log_output(res, rr)
            if rr.error == "" and not rr.timed_out and rr.exit_code in accept:
                tu = time.monotonic()
                try:
                    res.outputs, nout = self._collect()
                except InvalidPath as e:
                    res.reason = ("cannot upload file produced by the user code because its "
                                  f"name cannot be represented in PFS: {e}")
                    res.logs.append((time.time(), "system", res.reason))
                    continue
                res.stats["upload_seconds"] = time.monotonic() - tu
                res.stats["upload_bytes"] = float(nout)
                res.state = "success"
                res.reason = ""
                break
            res.reason = _failure_reason(rr, self.spec.datum_timeout)
            res.logs.append((time.time(), "system",
                             f"errored running user code (attempt {attempt}/{tries}): {res.reason}"))
            if t.err_cmd:
                er = self.session.run(DatumRun(cmd=tuple(t.err_cmd), stdin=_stdin(t.err_stdin),
                                               env=env, inputs=inputs, out_dir=self.out_dir,
                                               timeout=self.spec.datum_timeout))
                _log_output(res, er)
                if er.error == "" and er.exit_code == 0:
                    res.state = "recovered"
                    res.outputs = []
                    res.logs.append((time.time(), "system",
                                     "err_cmd succeeded: datum recovered (no output written)"))
                    break
        res.duration = time.monotonic() - t0
        self._reset_dirs()
        return res

    def _collect(self) -> tuple[list[OutputFile], int]:
        """Upload every file under ``/pfs/out`` (symlinks followed)."""
        outputs: list[OutputFile] = []
        writer = self.new_writer()
        total = 0
        for root, dirs, files in os.walk(self.out_dir, followlinks=True):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                rel = os.path.relpath(full, self.out_dir)
                path = clean_path("/" + rel.replace(os.sep, "/"))
                with open(full, "rb") as fh:
                    refs, size = writer.write_stream(iter(lambda: fh.read(PIECE), b""))
                outputs.append(OutputFile(path, size, refs))
                total += size
        writer.flush()
        return outputs, total


def _stdin(lines: tuple[str, ...]) -> bytes | None:
    return ("\n".join(lines) + "\n").encode() if lines else None


def _tail_lines(data: bytes, n: int = 5) -> str:
    text = data[-4096:].decode(errors="replace").strip()
    return "\n".join(text.splitlines()[-n:])


def _failure_reason(rr: RunResult, timeout: float | None) -> str:
    if rr.error:
        return rr.error
    if rr.timed_out:
        return f"datum timed out after {timeout:g}s (datum_timeout)"
    tail = _tail_lines(rr.stderr)
    msg = f"user code exited with code {rr.exit_code}"
    return f"{msg}; last lines of stderr:\n{tail}" if tail else msg


def _log_output(res: DatumResult, rr: RunResult) -> None:
    now = time.time()
    for stream, data in (("stdout", rr.stdout), ("stderr", rr.stderr)):
        if data:
            res.logs.append((now, stream, data[-LOG_TAIL:].decode(errors="replace")))


def _force_remove(func: Any, path: str, exc: Any) -> None:
    # Files written by user code as another uid may be read-only.
    os.chmod(os.path.dirname(path), stat.S_IRWXU)
    func(path)
