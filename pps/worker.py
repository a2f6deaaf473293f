"""Running datums: stage inputs, run user code, collect ``/pfs/out``.

A worker owns one runner :class:`~pps.runners.Session` (for Docker: one
long-lived container) and a scratch directory. For each datum it

1. writes the datum's input files under ``scratch/in/<input>/<path>`` (the
   runner shows them read-only at ``/pfs/<input>/<path>``),
2. runs ``transform.cmd`` with Pachyderm's environment variables, retrying
   up to ``datum_tries`` times and running ``err_cmd`` after a failed attempt,
3. uploads every file the code wrote to ``scratch/out`` (``/pfs/out``) as
   chunks into packs, tagged with the datum ID,

and returns a :class:`~pps.records.DatumResult`. The caller
(``pps.controller.worker_loop``) batches results per work unit into one
object; nothing here touches metadata.

Output is untrusted: see :meth:`DatumWorker._collect` for how links and
special files under ``/pfs/out`` are handled without touching the host.

Inputs with ``s3: true`` are not staged; with them or ``s3_out`` each run of
the user code gets an S3 gateway (:mod:`pps.gateway`) from the injected
factory, served on the sandbox's own loopback by the runner. Bucket ``out``
writes into the same host output directory as ``/pfs/out``, so its objects
are collected by the same code.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pfs.blobs import BlobWriter, ChunkRef
from pfs.errors import InvalidPath, TuskError
from pfs.paths import clean_path
from pfs.tree import DirEntry, FileEntry, Tree
from pps.gateway import DatumGateway, GatewayFactory, S3Scope
from pps.records import DatumInputRec, DatumResult, OutputFile, PlannedDatum
from pps.runners import DatumRun, RunResult, Session
from pps.runners._files import clear_dir
from pps.spec import PFSInput, PipelineSpec

LOG_TAIL = 64 * 1024
PIECE = 4 * 1024 * 1024


# The steps of an attempt, named in the reason of an unexpected exception.
_STAGE = "staging the datum's inputs"
_RUN = "running the user code"
_UPLOAD = "uploading the datum's outputs"

TreeFor = Callable[[str, str], Tree]  # (repo, commit) -> tree


class DatumWorker:
    """Runs datums for one pipeline with one runner session."""

    def __init__(self, spec: PipelineSpec, session: Session, scratch: str,
                 tree_for: TreeFor, read_chunks: Callable[[list[ChunkRef]], Iterator[bytes]],
                 writer: Callable[[], BlobWriter], gateways: GatewayFactory | None = None
                 ) -> None:
        """``gateways``: makes a datum's S3 gateway (needed by ``pfs.s3`` inputs
        and ``s3_out``; without it such datums fail saying so)."""
        self.spec = spec
        self.session = session
        self.scratch = scratch
        self.tree_for = tree_for
        self.read_chunks = read_chunks
        self.new_writer = writer
        # Two sets of datum directories: while one datum's user code runs
        # from one, the next datum's inputs are staged into the other.
        self._dirs = [(os.path.join(scratch, "in"), os.path.join(scratch, "out")),
                      (os.path.join(scratch, "in1"), os.path.join(scratch, "out1"))]
        self._cur = 0
        self.in_dir, self.out_dir = self._dirs[0]
        #: (datum, staged input dirs, bytes, seconds): the next datum, staged
        #: into the other directories while the current one ran.
        self._ahead: tuple[PlannedDatum, dict[str, str], int, float] | None = None
        self.gateways = gateways
        #: Inputs read through S3 (not staged at /pfs/<name>).
        self.s3_inputs = frozenset(leaf.name for leaf in spec.input.leaves()
                                   if isinstance(leaf, PFSInput) and leaf.s3)
        #: Inputs staged at /pfs/<name>.
        self.staged_inputs = frozenset(leaf.name for leaf in spec.input.leaves()) - self.s3_inputs
        self._step = _STAGE
        #: (job, datum) running now, for ``restart datum``; None between datums.
        self.current: tuple[str, str] | None = None
        #: The writer packing a unit's outputs (:meth:`begin_unit`), if any.
        self.unit_writer: BlobWriter | None = None
        #: Input trees read during the current unit, by (repo, commit): a
        #: unit's datums mostly share their input commits.
        self._trees: dict[tuple[str, str], Tree] = {}
        self._restart = False

    def _tree(self, repo: str, commit: str) -> Tree:
        tree = self._trees.get((repo, commit))
        if tree is None:
            tree = self._trees[(repo, commit)] = self.tree_for(repo, commit)
        return tree

    # -- staging ---------------------------------------------------------------

    def _reset_dirs(self, which: int | None = None) -> None:
        """Empty a set of datum directories (the current one by default)."""
        in_dir, out_dir = self._dirs[self._cur if which is None else which]
        for d in (in_dir, out_dir):
            try:
                if d == in_dir:
                    self._clear_inputs(in_dir)
                else:
                    _clear(d)
            except FileNotFoundError:
                os.makedirs(d, exist_ok=True)
        # User code may run as another uid: let it write /pfs/out.
        os.chmod(out_dir, 0o777)

    def _clear_inputs(self, in_dir: str) -> None:
        """Empty ``in_dir`` but keep the (emptied) directories of the pipeline's
        inputs: the next datum stages into them (a directory made and removed
        per datum costs two journaled changes). Only this worker writes here."""
        with os.scandir(in_dir) as it:
            entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        for name, is_dir in entries:
            path = os.path.join(in_dir, name)
            if not is_dir:
                os.unlink(path)
                continue
            _clear(path)
            if name not in self.staged_inputs:
                os.rmdir(path)

    def _stage(self, inputs: tuple[DatumInputRec, ...],
               in_dir: str | None = None) -> tuple[dict[str, str], int]:
        dirs: dict[str, str] = {}
        nbytes = 0
        for inp in inputs:
            if inp.name in self.s3_inputs:
                continue  # read through the gateway
            base = os.path.join(in_dir or self.in_dir, inp.name)
            if base not in dirs.values():
                try:
                    os.mkdir(base)
                except FileExistsError:  # kept, empty, by _clear_inputs
                    pass
            dirs[inp.name] = base
            tree = self._tree(inp.repo, inp.commit)
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
                parent = os.path.dirname(dst)
                if parent != base:
                    os.makedirs(parent, exist_ok=True)
                fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
                try:
                    if not inp.empty_files:
                        for piece in self.read_chunks(tree.chunks(f)):
                            _write_all(fd, piece)
                            nbytes += len(piece)
                finally:
                    os.close(fd)
        return dirs, nbytes

    def _env(self, job_id: str, d: PlannedDatum) -> dict[str, str]:
        env = {
            "PACH_JOB_ID": job_id,
            "PACH_OUTPUT_COMMIT_ID": job_id,
            "PACH_DATUM_ID": d.id,
            "PPS_PIPELINE_NAME": self.spec.pipeline.name,
            "PPS_PROJECT_NAME": self.spec.pipeline.project,
        }
        for inp in d.inputs:
            if inp.name not in self.s3_inputs:  # an s3 input has no /pfs/<name>
                env[inp.name] = f"/pfs/{inp.name}{inp.path if inp.path != '/' else ''}"
            env[f"{inp.name}_COMMIT"] = inp.commit
            if inp.join_on:
                env[f"PACH_DATUM_{inp.name}_JOIN_ON"] = inp.join_on
            if inp.group_by:
                env[f"PACH_DATUM_{inp.name}_GROUP_BY"] = inp.group_by
        env.update(self.spec.transform.env)
        return env

    # -- running ---------------------------------------------------------------

    def run(self, job_id: str, d: PlannedDatum, next_d: PlannedDatum | None = None
            ) -> DatumResult:
        """Process one datum (with retries); ``next_d``, the datum the caller
        runs next, is staged while this one's user code runs.

        Never raises for a failure of the user code, the runner or this
        worker's own steps: any exception while staging, running, collecting
        or uploading becomes the attempt's failure reason and counts toward
        ``datum_tries``, so a datum always ends.
        """
        res = DatumResult(id=d.id, hash=d.hash, state="failed", started=time.time())
        tries = max(1, self.spec.datum_tries)
        t0 = time.monotonic()
        attempt = 0
        self.current = (job_id, d.id)
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] is d:
            self._cur ^= 1  # its inputs are in the other directories
            self.in_dir, self.out_dir = self._dirs[self._cur]
        else:
            ahead = None
        try:
            while attempt < tries:
                attempt += 1
                res.attempts = attempt
                try:
                    if self._attempt(job_id, d, res, attempt, tries, ahead, next_d):
                        break
                except Exception as e:  # a bug or an I/O error of ours: still the datum's end
                    res.outputs = []
                    res.reason = f"{self._step} failed: {type(e).__name__}: {e}"
                    res.logs.append((time.time(), "system",
                                     f"attempt {attempt}/{tries}: {res.reason}"))
                if self._restart:
                    # `restart datum`: this attempt was killed on purpose; it
                    # does not count against datum_tries.
                    self._restart = False
                    attempt -= 1
                    res.logs.append((time.time(), "system",
                                     "datum restarted by the user (restart datum)"))
        finally:
            self.current = None
        res.duration = time.monotonic() - t0
        if self.unit_writer is None:  # outside a unit: nothing cleans up after this datum
            self._clean(res)
        return res

    def _clean(self, res: DatumResult | None = None) -> None:
        """Empty the scratch (the next attempt starts by emptying it anyway)."""
        self._ahead = None
        try:
            self._reset_dirs(0)
            self._reset_dirs(1)
        except OSError as e:
            if res is not None:
                res.logs.append((time.time(), "system", f"could not clean the scratch: {e}"))

    def interrupt(self, job_id: str, datum_id: str) -> bool:
        """Kill datum ``datum_id`` of ``job_id`` if it runs here now, and run it
        again (``restart datum``). Returns whether it was running here."""
        if self.current != (job_id, datum_id):
            return False
        self._restart = True
        self.session.interrupt()
        return True

    def _attempt(self, job_id: str, d: PlannedDatum, res: DatumResult, attempt: int,
                 tries: int, ahead: tuple[PlannedDatum, dict[str, str], int, float] | None,
                 next_d: PlannedDatum | None) -> bool:
        """One attempt at ``d``; True when the datum is done (success or recovered)."""
        t = self.spec.transform
        accept = {0, *t.accept_return_code}
        self._step = _STAGE
        try:
            if ahead is not None and attempt == 1:  # staged while the previous datum ran
                _, inputs, nin, seconds = ahead
            else:
                self._reset_dirs()
                td = time.monotonic()
                inputs, nin = self._stage(d.inputs)
                seconds = time.monotonic() - td
            res.stats["download_seconds"] = seconds
            res.stats["download_bytes"] = float(nin)
        except TuskError as e:
            res.reason = f"could not read the datum's input files: {e}"
            res.logs.append((time.time(), "system", res.reason))
            return False
        env = self._env(job_id, d)
        self._step = _RUN
        gateway = self._gateway(d)
        if gateway is not None:
            env = {**gateway.env, **env}  # transform.env may point elsewhere on purpose
        run = DatumRun(cmd=tuple(t.cmd), stdin=_stdin(t.stdin), env=env, inputs=inputs,
                       out_dir=self.out_dir, timeout=self.spec.datum_timeout, service=gateway,
                       while_running=None if next_d is None else lambda: self._stage_ahead(next_d))
        self._step = _RUN
        tp = time.monotonic()
        rr = self.session.run(run)
        res.stats["process_seconds"] = time.monotonic() - tp
        _log_output(res, rr)
        if rr.error == "" and not rr.timed_out and rr.exit_code in accept:
            self._step = _UPLOAD
            tu = time.monotonic()
            try:
                res.outputs, nout = self._collect(d)
            except InvalidPath as e:
                res.reason = ("cannot upload file produced by the user code because its "
                              f"name cannot be represented in PFS: {e}")
                res.logs.append((time.time(), "system", res.reason))
                return False
            except BadOutput as e:
                res.outputs = []
                res.reason = str(e)
                res.logs.append((time.time(), "system", res.reason))
                return False
            res.stats["upload_seconds"] = time.monotonic() - tu
            res.stats["upload_bytes"] = float(nout)
            res.state = "success"
            res.reason = ""
            return True
        res.reason = _failure_reason(rr, self.spec.datum_timeout)
        res.logs.append((time.time(), "system",
                         f"errored running user code (attempt {attempt}/{tries}): {res.reason}"))
        if t.err_cmd:
            self._step = _RUN
            er = self.session.run(DatumRun(cmd=tuple(t.err_cmd), stdin=_stdin(t.err_stdin),
                                           env=env, inputs=inputs, out_dir=self.out_dir,
                                           timeout=self.spec.datum_timeout,
                                           service=self._gateway(d)))
            _log_output(res, er)
            if er.error == "" and er.exit_code == 0:
                res.state = "recovered"
                res.outputs = []
                res.logs.append((time.time(), "system",
                                 "err_cmd succeeded: datum recovered (no output written)"))
                return True
        return False

    def _stage_ahead(self, d: PlannedDatum) -> None:
        """Stage ``d`` into the other directories (while the current datum's
        user code runs). Never raises: on any failure ``d`` stages itself
        again when it runs, and reports what fails then."""
        if self._ahead is not None and self._ahead[0] is d:
            return  # staged during an earlier attempt of the current datum
        self._ahead = None
        other = self._cur ^ 1
        try:
            t0 = time.monotonic()
            self._reset_dirs(other)
            inputs, nbytes = self._stage(d.inputs, self._dirs[other][0])
        except Exception:
            return
        self._ahead = (d, inputs, nbytes, time.monotonic() - t0)

    def _gateway(self, d: PlannedDatum) -> DatumGateway | None:
        """A new S3 gateway for one run of ``d``'s code; None if it needs none.

        Raises:
            NoGateway: the datum needs one and this worker has no factory.
        """
        scoped: dict[str, list[DatumInputRec]] = {}
        for inp in d.inputs:
            if inp.name in self.s3_inputs:
                scoped.setdefault(inp.name, []).append(inp)
        if not scoped and not self.spec.s3_out:
            return None
        if self.gateways is None:
            raise NoGateway("this worker was started without an S3 gateway for pipelines, "
                            "which s3 inputs and s3_out need: run the pipeline in a tusk "
                            "daemon or `tusk worker` (they provide one)")
        return self.gateways(S3Scope(
            inputs={k: tuple(v) for k, v in scoped.items()},
            out_dir=self.out_dir if self.spec.s3_out else None))

    def _collect(self, d: PlannedDatum) -> tuple[list[OutputFile], int]:
        """Upload what the user code left under ``/pfs/out``.

        Security: everything under ``out_dir`` was made by untrusted code, so
        nothing here follows a link on the host. The tree is walked with
        ``lstat``; regular files are opened with ``O_NOFOLLOW | O_NONBLOCK``
        and checked again with ``fstat``; a symlink is resolved the way the
        *container* sees it (:class:`_OutputLinks`), and may only name the
        datum's own inputs (stored by reference: no bytes copied) or other
        output files. Anything else fails the datum with :class:`BadOutput`.
        User code may still run meanwhile (a process left in the background,
        its cwd in a directory moved here from ``/pfs/out``) and swap any
        directory for a link: every path under ``out_dir`` is reached from
        ``out_dir`` one component at a time, never through a link
        (:func:`_open_beneath`).
        """
        links = _OutputLinks(self, d)
        outputs: list[OutputFile] = []
        writer = self.unit_writer if self.unit_writer is not None else self.new_writer()
        total = 0
        for path, src in links.walk():
            if isinstance(src, InputFile):  # by reference: no bytes copied
                outputs.append(OutputFile(path, src.entry.size, tuple(src.tree.chunks(src.entry))))
                total += src.entry.size
                continue
            fd = _open_regular(self.out_dir, src, path)
            try:
                refs, size = writer.write_stream(_read_pieces(fd))
            finally:
                os.close(fd)
            outputs.append(OutputFile(path, size, tuple(refs)))
            total += size
        if writer is not self.unit_writer:
            writer.flush()
        return outputs, total

    def begin_unit(self) -> None:
        """Pack the outputs of the next datums together (one pack object per
        unit, not per datum) until :meth:`end_unit`."""
        self.unit_writer = self.new_writer()
        self._trees.clear()

    def end_unit(self, keep: bool = True) -> None:
        """Make the unit's outputs durable (before its results are recorded),
        or drop them (``keep=False``: the unit was given up)."""
        writer, self.unit_writer = self.unit_writer, None
        self._trees.clear()
        if writer is not None:
            self._clean()  # the unit's last datum's files
            if keep:
                writer.flush()
            else:
                writer.discard()


@dataclass(frozen=True)
class InputFile:
    """An input file that a link in ``/pfs/out`` names: output by reference."""

    entry: FileEntry
    tree: Tree


class NoGateway(Exception):
    """The datum needs an S3 gateway (s3 inputs, ``s3_out``) and none is wired."""


class BadOutput(Exception):
    """Something under ``/pfs/out`` cannot become an output file; the message
    names it and says what to do instead."""


_LINK_FIX = "write the file into /pfs/out instead of linking it"
_MAX_LINKS = 40  # symlinks followed while resolving one path (Linux's own limit)


class _OutputLinks:
    """Walks ``/pfs/out`` and resolves its symlinks in the datum's namespace.

    The namespace is the one user code saw: ``/pfs/out/...`` is
    ``worker.out_dir``, ``/pfs/<input>/...`` is the datum's staged input, and
    every other path (the image's files, the host's) is *outside*: a link
    there is refused, never opened. Resolution goes one component at a time,
    so ``..`` and links inside link targets behave as the kernel would.
    """

    def __init__(self, worker: DatumWorker, d: PlannedDatum) -> None:
        self.w = worker
        self.inputs = {i.name: i for i in d.inputs}

    def _host(self, vpath: str) -> tuple[str, str] | None:
        """``(kind, host path)`` of a container path under ``/pfs``; None outside."""
        parts = vpath.strip("/").split("/")
        if len(parts) < 2 or parts[0] != "pfs":
            return None
        rest = "/".join(parts[2:])
        if parts[1] == "out":
            return "out", os.path.join(self.w.out_dir, rest)
        if parts[1] in self.inputs:
            return parts[1], os.path.join(self.w.in_dir, parts[1], rest)
        return None

    def resolve(self, link_vpath: str) -> tuple[str, str, str]:
        """Resolve the link at container path ``link_vpath``.

        Returns:
            ``(kind, final container path, host path)``; kind is ``"out"`` or
            an input name.

        Raises:
            BadOutput: dangling, a loop, or a target outside the datum's inputs
                and outputs.
        """
        host = self._host(link_vpath)
        assert host is not None
        first = self._readlink(host)
        todo = [c for c in first.split("/") if c]
        cur = "/" if first.startswith("/") else posixpath.dirname(link_vpath)
        hops = 1

        def bad(why: str) -> BadOutput:
            return BadOutput(f"/pfs/out{link_vpath[len('/pfs/out'):]} is a symlink to "
                             f"{first!r}, {why}; {_LINK_FIX}")

        while todo:
            c = todo.pop(0)
            if c == ".":
                continue
            if c == "..":
                cur = posixpath.dirname(cur)
                continue
            nxt = posixpath.join(cur, c)
            if nxt == "/pfs":
                cur = nxt
                continue
            mapped = self._host(nxt)
            if mapped is None:
                return_path = nxt if not todo else posixpath.join(nxt, *todo)
                raise bad(f"which resolves to {return_path}, outside the datum's inputs "
                          "(/pfs/<input>/...) and /pfs/out")
            try:
                st = self._lstat(mapped)
            except (FileNotFoundError, NotADirectoryError):
                raise bad(f"which does not exist in the datum's view ({nxt}): a link "
                          "may only name files of this datum's own inputs") from None
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > _MAX_LINKS:
                    raise bad(f"which is a loop (more than {_MAX_LINKS} links deep)")
                target = self._readlink(mapped)
                todo = [x for x in target.split("/") if x] + todo
                if target.startswith("/"):
                    cur = "/"
                continue
            if todo and not stat.S_ISDIR(st.st_mode):
                raise bad(f"which goes through {nxt}, not a directory")
            cur = nxt
        final = self._host(cur)
        if final is None or cur.rstrip("/").count("/") < 2:
            raise bad(f"which resolves to {cur}, not a file or directory of the datum's "
                      "inputs or outputs")
        return final[0], cur, final[1]

    def _lstat(self, host: tuple[str, str]) -> os.stat_result:
        """lstat of a ``(kind, host path)`` from :meth:`_host`."""
        if host[0] != "out" or os.path.normpath(host[1]) == os.path.normpath(self.w.out_dir):
            # The worker's own staging, or out_dir itself: no user code changes them.
            return os.lstat(host[1])
        fd, name = _parent_beneath(self.w.out_dir, host[1])
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        finally:
            os.close(fd)

    def _readlink(self, host: tuple[str, str]) -> str:
        if host[0] != "out":
            return os.readlink(host[1])
        fd, name = _parent_beneath(self.w.out_dir, host[1])
        try:
            return os.readlink(name, dir_fd=fd)
        finally:
            os.close(fd)

    def walk(self) -> Iterator[tuple[str, str | InputFile]]:
        """``(output path, source)`` for every output file, sorted by path.

        A source is a host path of a regular file under ``out_dir`` (to be
        opened safely) or the index entry of an input file.
        """
        yield from self._walk_dir(self.w.out_dir, "/", set())

    def _walk_dir(self, host_dir: str, out_path: str,
                  active: set[tuple[int, int]]) -> Iterator[tuple[str, str | InputFile]]:
        fd = _open_beneath(self.w.out_dir, host_dir, _DIR)
        try:
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino)
            if key in active:
                raise BadOutput(f"/pfs/out{out_path.rstrip('/')} links back to a directory "
                                f"that contains it (a loop); {_LINK_FIX}")
            active = active | {key}
            with os.scandir(fd) as it:
                entries = sorted((e.name, e.stat(follow_symlinks=False)) for e in it)
        finally:
            os.close(fd)
        for name, st in entries:
            path = posixpath.join(out_path, name)
            clean = clean_path(path)
            host = os.path.join(host_dir, name)
            if stat.S_ISDIR(st.st_mode):
                yield from self._walk_dir(host, path, active)
            elif stat.S_ISREG(st.st_mode):
                yield clean, host
            elif stat.S_ISLNK(st.st_mode):
                yield from self._walk_link(self._vpath(host), path, active)
            else:
                raise BadOutput(f"/pfs/out{path} is a {_kind(st.st_mode)}, which cannot be an "
                                "output file: write a regular file instead")

    def _vpath(self, host_path: str) -> str:
        rel = os.path.relpath(host_path, self.w.out_dir)
        return "/pfs/out/" + rel.replace(os.sep, "/")

    def _walk_link(self, vpath: str, out_path: str,
                   active: set[tuple[int, int]]) -> Iterator[tuple[str, str | InputFile]]:
        kind, target, host = self.resolve(vpath)
        st = self._lstat((kind, host))
        if kind == "out":
            if stat.S_ISDIR(st.st_mode):
                yield from self._walk_dir(host, out_path, active)
            elif stat.S_ISREG(st.st_mode):
                yield clean_path(out_path), host
            else:
                raise BadOutput(f"/pfs/out{out_path} links to {target}, a "
                                f"{_kind(st.st_mode)}: write a regular file instead")
            return
        # An input of this datum: its content by reference, from the commit's index.
        inp = self.inputs[kind]
        tree = self.w._tree(inp.repo, inp.commit)
        base_pfs = target[len(f"/pfs/{kind}"):] or "/"
        staged_root = os.path.join(self.w.in_dir, kind)
        if stat.S_ISREG(st.st_mode):
            files = [(clean_path(out_path), base_pfs)]
        else:
            files = []
            for root, dirs, names in os.walk(host):  # our own staging: no links in it
                dirs.sort()
                for n in sorted(names):
                    full = os.path.join(root, n)
                    pfs_path = "/" + os.path.relpath(full, staged_root).replace(os.sep, "/")
                    rel = os.path.relpath(full, host).replace(os.sep, "/")
                    files.append((clean_path(posixpath.join(out_path, rel)), pfs_path))
        for opath, pfs_path in files:
            entry = tree.lookup(pfs_path)
            if not isinstance(entry, FileEntry):
                raise BadOutput(f"/pfs/out{out_path} links to {target}, which is not in input "
                                f"{kind}'s commit {inp.commit}; {_LINK_FIX}")
            yield opath, InputFile(entry, tree)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device file"
    return "special file"


_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_beneath(root: str, path: str, flags: int) -> int:
    """Open ``path`` (``root`` itself or a path under it) with ``flags | O_NOFOLLOW``,
    from ``root`` one component at a time, each directory with ``O_NOFOLLOW``.

    A path string is resolved by the host's kernel, which follows a link at
    any component: a directory under ``root`` swapped for a link to ``/etc``
    after the walk saw it would lead the worker into the host's files. Here a
    component that is a link fails (ELOOP, or ENOTDIR for a file).
    """
    if path == root:
        parts = []
    elif path.startswith(root + os.sep):  # the usual case: no relpath (it is slow)
        parts = [p for p in path[len(root) + 1:].split(os.sep) if p and p != "."]
    else:
        rel = os.path.relpath(path, root)
        parts = [] if rel == "." else rel.split(os.sep)
    if ".." in parts:
        raise ValueError(f"{path} is not under {root}")
    fd = os.open(root, _DIR)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt = os.open(part, flags | os.O_NOFOLLOW | os.O_CLOEXEC if last else _DIR,
                          dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _parent_beneath(root: str, path: str) -> tuple[int, str]:
    """(descriptor of the parent directory, name) of ``path``, a path strictly
    under ``root`` (:func:`_open_beneath`); the caller closes the descriptor."""
    parent, name = os.path.split(path)
    return _open_beneath(root, parent, _DIR), name


def _open_regular(root: str, host_path: str, out_path: str) -> int:
    """Open an output file under ``root`` for reading without following links or blocking.

    :func:`_open_beneath` and ``O_NONBLOCK`` make a file (or a directory on
    its path) swapped for a link or a FIFO after the walk fail here instead of
    leading the worker elsewhere or hanging it; ``fstat`` checks that what was
    opened is a regular file.
    """
    try:
        fd = _open_beneath(root, host_path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise BadOutput(f"/pfs/out{out_path} could not be read safely ({e.strerror}): "
                        "write a regular file instead") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BadOutput(f"/pfs/out{out_path} is not a regular file: write a regular file instead")
    return fd  # O_NONBLOCK is moot for a regular file's reads


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_pieces(fd: int) -> Iterator[bytes]:
    """The file's bytes in :data:`PIECE`-sized reads (the last may be short)."""
    while True:
        piece = os.read(fd, PIECE)
        if not piece:
            return
        while len(piece) < PIECE:  # a short read: keep pieces whole for chunking
            more = os.read(fd, PIECE - len(piece))
            if not more:
                break
            piece += more
        yield piece


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


def _clear(d: str) -> None:
    """Remove everything in directory ``d`` (:func:`pps.runners._files.clear_dir`);
    what user code made unremovable (another uid's read-only directory) goes
    through shutil.rmtree with permissions fixed."""
    try:
        clear_dir(d)
    except PermissionError:
        os.chmod(d, stat.S_IRWXU)
        with os.scandir(d) as it:
            entries = list(it)
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path, onerror=_force_remove)
            else:
                os.unlink(e.path)


def _force_remove(func: Any, path: str, exc: Any) -> None:
    # Files written by user code as another uid may be read-only.
    os.chmod(os.path.dirname(path), stat.S_IRWXU)
    func(path)
