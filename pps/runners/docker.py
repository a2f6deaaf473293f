"""Docker runner: one long-lived container per worker, datums run by an agent inside it.

Why an agent: a container start costs 230-330 ms here and a ``docker exec``
about 60 ms, both far above the per-datum budget. So a session starts the
pipeline's image once, with its entrypoint replaced by a small POSIX shell loop
(the agent, bind-mounted read-only at ``/.tusk``; any image with ``/bin/sh``
works, busybox or Debian). Per datum the host writes a script, sends one line on
a FIFO and reads the exit status back on another: about a millisecond of
overhead, no Docker API call on the normal path.

Layout of the session's ``work_dir`` on the host (and inside the container)::

    agent/agent.sh   -> /.tusk/agent.sh   read-only
    agent/io/        -> /.tusk/io/        read-write: req, resp FIFOs, datum.sh,
                                          stdin, stdout, stderr of the current datum
    pfs/             -> /pfs              read-only; pfs/<name> is filled per datum
    out/             -> /pfs/out          read-write; emptied into DatumRun.out_dir

A bind mount shows later changes inside its source directory, so staging a
datum is renaming the caller's staged directory to ``pfs/<name>`` (and back
after the datum; hard links or copies across filesystems) and collecting its
output is a rename per top-level entry. A ``sh -c SCRIPT`` command runs in
the agent's subshell without a new shell (:meth:`DockerSession._inline_script`).

Failure handling: the agent holds the response FIFO open for its whole life, so
the host sees end-of-file the instant the container dies (memory limit, crash)
without polling the engine; the session then reports the cause and starts a new
container at the next datum. A datum past its timeout is killed through the
host's view of the container's processes (``docker top``), or, when that is not
possible, by discarding the container.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import select
import shlex
import shutil
import signal
import socket
import stat
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Self

import docker
import docker.errors
import requests.exceptions

from pps.runners import DatumRun, RunnerSpec, RunResult
from pps.runners._files import clear_dir, link_tree, move_children, read_tail, remove_tree
from pps.runners.netns import NetnsError, listen_in_netns

__all__ = ["LABEL", "SESSION_LABEL", "WORKDIR_LABEL", "DockerRunner", "DockerSession"]

#: Every container a docker runner creates carries this label (value "1").
LABEL = "tusk.runner"
#: ... and this one, whose value is the session's id.
SESSION_LABEL = "tusk.session"
#: ... and this one, whose value is the session's work_dir on the host.
WORKDIR_LABEL = "tusk.workdir"

#: A fork bomb in user code must not take the machine down.
PIDS_LIMIT = 4096

_AGENT_DIR = "/.tusk"
_IO_DIR = _AGENT_DIR + "/io"

# The agent. POSIX sh only (busybox ash, dash, bash): no `timeout`, no `setsid`,
# nothing an image might lack. Its per-datum work uses builtins alone, so the
# only fork per datum is the child shell that runs the datum script.
_AGENT_SCRIPT = r"""# tusk runner agent: runs /.tusk/io/datum.sh once per request line.
# Protocol: the host writes one line to io/req per datum; the agent answers
# "<exit status> <OOM kills in this container so far>" on io/resp. The count
# is "-" when the request line is "h": the host reads the counter itself.
# Its variables start with _tusk_: a datum script unsets them all (AGENT_VARS).
_tusk_io=/.tusk/io
_tusk_oom_kills() {
    _tusk_n=-
    for _tusk_f in /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events; do
        if [ -r "$_tusk_f" ]; then
            while read -r _tusk_k _tusk_v; do
                if [ "$_tusk_k" = oom_kill ]; then _tusk_n=$_tusk_v; fi
            done <"$_tusk_f"
            _tusk_of=$_tusk_f
            break
        fi
    done
}
# resp first: the host opened it for reading before starting the container, so
# this does not block, and the host sees EOF only when this shell is gone.
exec 3>"$_tusk_io/resp"
_tusk_of=-
_tusk_oom_kills
# Whether `sh` on the image's PATH is this very shell: then a `sh -c SCRIPT`
# command runs as SCRIPT in the subshell below (no exec).
_tusk_sh=-
_tusk_ifs=$IFS
IFS=:
for _tusk_d in $PATH; do
    if [ -f "${_tusk_d:-.}/sh" ] && [ -x "${_tusk_d:-.}/sh" ]; then
        if [ "${_tusk_d:-.}/sh" -ef /bin/sh ]; then _tusk_sh=/bin/sh; fi
        break
    fi
done
IFS=$_tusk_ifs
echo "ready $_tusk_n $_tusk_sh $_tusk_of" >&3
exec 4<"$_tusk_io/req"
while read -r _tusk_req <&4; do
    # A forked subshell sources the script (which execs the user's command):
    # one exec per datum fewer than running a new /bin/sh on it.
    ( . "$_tusk_io/datum.sh" ) 3>&- 4<&-
    _tusk_rc=$?
    # `read` takes a byte per system call: the counter file costs ~90 calls.
    if [ "$_tusk_req" = h ]; then _tusk_n=-; else _tusk_oom_kills; fi
    echo "$_tusk_rc $_tusk_n" >&3
done
"""

#: What a datum script unsets before it evaluates user code in the agent's subshell.
_AGENT_VARS = "unset _tusk_io _tusk_n _tusk_f _tusk_k _tusk_v _tusk_req _tusk_rc _tusk_sh " \
    "_tusk_ifs _tusk_d _tusk_of; " \
    "unset -f _tusk_oom_kills"
#: A script mentioning one of these runs in a shell of its own (see _inline_script).
_SUBSHELL_TELLS = ("$$", "${$", "$0", "${0", "PPID")
#: Where the agent may find its container's OOM-kill counter (cgroup v1, v2).
_OOM_FILES = ("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events")

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class _Failure(Exception):
    """A runner-level failure; its message goes to RunResult.error verbatim."""


class _AgentGone(Exception):
    """The agent's end of the response FIFO closed: the container is dead."""


class _Tampered(Exception):
    """The FIFOs carry what the agent never would: user code wrote into io/resp
    or io/req (both writable from the container), or stopped the agent. Its
    message goes to RunResult.error; the container is discarded."""


#: The agent's lines are "ready N /bin/sh" or "<status> <N>": anything longer
#: than this without a newline was written by something else.
_MAX_LINE = 256


class DockerRunner:
    """Runs user code in the pipeline's image through a Docker engine.

    Args:
        base_url: the engine's address (``unix:///var/run/docker.sock``,
            ``tcp://...``); ``DOCKER_HOST`` or the default socket when ``None``.
        labels: extra labels put on every container (tests use one to clean up).
        api_timeout: seconds before a Docker API call is abandoned.
        start_timeout: seconds a new container has to get its agent ready.
    """

    name = "docker"

    def __init__(
        self,
        base_url: str | None = None,
        *,
        labels: Mapping[str, str] | None = None,
        api_timeout: float = 60.0,
        start_timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url
        self.labels = dict(labels or {})
        self.api_timeout = api_timeout
        self.start_timeout = start_timeout
        self._client_obj: docker.DockerClient | None = None

    @property
    def engine_address(self) -> str:
        """Where the engine is expected, for messages."""
        return self.base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"

    def unreachable(self, exc: BaseException) -> str:
        """The error text for an engine that does not answer."""
        return (
            f"Docker engine unreachable at {self.engine_address}: {exc}; "
            "start it with deploy/services.sh up"
        )

    def client(self) -> docker.DockerClient:
        """A connected client (created on first use, then reused).

        Raises:
            _Failure: the engine does not answer.
        """
        if self._client_obj is None:
            try:
                if self.base_url is None:
                    self._client_obj = docker.from_env(timeout=int(self.api_timeout))
                else:
                    self._client_obj = docker.DockerClient(
                        base_url=self.base_url, timeout=int(self.api_timeout)
                    )
            except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
                raise _Failure(self.unreachable(exc)) from exc
        return self._client_obj

    def available(self) -> tuple[bool, str]:
        """True when the engine answers a ping."""
        try:
            self.client().ping()
        except _Failure as exc:
            return False, str(exc)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            return False, self.unreachable(exc)
        return True, ""

    def start(self, spec: RunnerSpec, work_dir: str) -> DockerSession:
        """Start a container for ``spec``; failures are reported by each ``run``."""
        return DockerSession(self, spec, work_dir)


class DockerSession:
    """One container running the agent; see the module docstring.

    Attributes:
        session_id: value of the container's ``tusk.session`` label.
        warnings: always empty for this runner.
    """

    def __init__(self, runner: DockerRunner, spec: RunnerSpec, work_dir: str) -> None:
        self.runner = runner
        self.spec = spec
        self.session_id = uuid.uuid4().hex[:16]
        self.warnings: tuple[str, ...] = ()
        work_dir = os.path.abspath(work_dir)
        self._work_dir = work_dir
        self._agent_dir = os.path.join(work_dir, "agent")
        self._io = os.path.join(self._agent_dir, "io")
        self._pfs = os.path.join(work_dir, "pfs")
        self._out = os.path.join(work_dir, "out")
        self._container: Any = None  # docker.models.containers.Container
        self._resp_fd = -1
        self._req_fd = -1
        self._poll = select.poll()
        self._buf = b""
        self._oom_kills = -1
        #: The container's OOM-kill counter file, opened from the host (-1:
        #: the agent reads it after each datum instead).
        self._oom_fd = -1
        #: Input name -> the caller's directory now renamed to pfs/<name>.
        self._lent: dict[str, str] = {}
        #: The container's `sh` (on the image's PATH) is the agent's /bin/sh.
        self._sh_is_agent = False
        self._init_pid: int | None = None  # the container's init, as this host sees it
        self._closed = False
        self.start_error = ""
        try:
            self._start_container()
        except _Failure as exc:
            # Reported by run(), which retries: the engine or image may appear.
            self.start_error = str(exc)

    # ---------------------------------------------------------------- public

    @property
    def container_id(self) -> str | None:
        """Id of the current container (None when none is running)."""
        return None if self._container is None else str(self._container.id)

    def run(self, datum: DatumRun) -> RunResult:
        """Run one datum in the session's container; see :class:`pps.runners.Session`."""
        datum.validate()
        if self._closed:
            raise RuntimeError("session is closed")
        started = time.monotonic()
        problem = datum.out_dir_problem()
        if problem:
            return RunResult(None, b"", b"", time.monotonic() - started, error=problem)
        if self._container is not None and self._agent_hung_up():
            # Died between datums (killed from outside, engine restarted): this
            # datum has not started, so a new container runs it transparently.
            self._discard_container()
        if self._container is None:
            try:
                self._start_container()
            except _Failure as exc:
                return RunResult(None, b"", b"", time.monotonic() - started, error=str(exc))
        service = datum.service
        if service is not None:
            try:
                service.serve(self._listen(service.port))
            except (NetnsError, _Failure) as exc:
                return RunResult(None, b"", b"", time.monotonic() - started,
                                 error=f"could not serve the datum's S3 gateway: {exc}")
        try:
            try:
                result = self._run_staged(datum, started)
            finally:
                # Before the output moves: no request may write into it later.
                if service is not None:
                    service.stop()
        finally:
            try:
                self._unstage(datum)
            except OSError as exc:
                unstage_error = f"could not collect the datum's output into {datum.out_dir}: {exc}"
            else:
                unstage_error = ""
        if unstage_error:
            return dataclasses.replace(result, exit_code=None, error=unstage_error)
        return result

    def interrupt(self) -> None:
        """Kill the running datum's processes (the agent stays); or, when they
        cannot be reached, the container (a new one runs the next datum)."""
        if self._container is None:
            return
        if not self._kill_datum_processes():
            try:
                self._container.kill()
            except (docker.errors.DockerException, requests.exceptions.RequestException):
                pass

    def close(self) -> None:
        """Remove the container and the session's files. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._discard_container()
        # Not shutil.rmtree: io/ and out/ hold what user code made, which may
        # nest deeper than it recurses (remove_tree does not).
        for d in (self._agent_dir, self._pfs, self._out):
            try:
                remove_tree(d)
            except OSError:
                pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------- one datum

    def _listen(self, port: int) -> socket.socket:
        """A socket listening on 127.0.0.1:``port`` of the container's own loopback.

        The container keeps ``network_mode=none``: the socket is made inside
        its network namespace (:mod:`pps.runners.netns`), found through the
        pid of its init, checked to be in the container's cgroup.
        """
        if self.spec.network != "none":
            raise _Failure(f"the container has network {self.spec.network!r}; a loopback "
                           "service needs a container without network")
        pid, cid = self._host_pid(), str(self._container.id)
        return listen_in_netns(pid, port, check=lambda: _in_container(pid, cid))

    def _host_pid(self) -> int:
        """The pid of the container's init, as this host sees it.

        Raises:
            _Failure: the engine does not answer or say it.
        """
        container = self._container
        if self._init_pid is None:
            try:
                container.reload()
                self._init_pid = int(container.attrs["State"]["Pid"])
            except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
                raise _Failure(self.runner.unreachable(exc)) from exc
            except (KeyError, TypeError, ValueError):
                raise _Failure("the engine did not say the container's pid") from None
        if self._init_pid <= 0:
            raise _Failure(f"container {str(container.id)[:12]} is not running")
        return self._init_pid

    def _run_staged(self, datum: DatumRun, started: float) -> RunResult:
        def result(exit_code: int | None, **kw: Any) -> RunResult:
            return RunResult(
                exit_code,
                read_tail(os.path.join(self._io, "stdout")),
                read_tail(os.path.join(self._io, "stderr")),
                time.monotonic() - started,
                **kw,
            )

        try:
            self._stage(datum)
        except OSError as exc:
            return result(None, error=f"could not stage the datum's files: {exc}")
        try:
            try:
                # Non-blocking: the agent drains req between datums, so a full
                # pipe means user code filled it (and stopped the agent); a
                # blocking write would wait forever, before any timeout.
                os.write(self._req_fd, b"h\n" if self._oom_fd >= 0 else b"r\n")
            except BlockingIOError:
                raise _Tampered("the runner agent's request FIFO is full: user code wrote "
                                "into /.tusk/io/req; the container was discarded") from None
            deadline = None if datum.timeout is None else time.monotonic() + datum.timeout
            if datum.while_running is not None:
                datum.while_running()
            line = self._read_line(None if deadline is None
                                   else max(0.0, deadline - time.monotonic()))
            if line is None:
                return self._timed_out(datum, result)
            status, _, oom = line.partition(b" ")
            try:
                code = int(status)
            except ValueError:
                raise _Tampered(_garbled(line)) from None
        except (_AgentGone, BrokenPipeError):
            return result(None, **self._death_report())
        except _Tampered as exc:
            self._discard_container()
            return result(None, error=str(exc))
        oom_killed = self._note_oom_kills(oom if self._oom_fd < 0 else self._read_oom_counter())
        if oom_killed:
            res = result(
                None,
                oom_killed=True,
                error=f"user code was killed for exceeding the container's memory limit "
                f"({_mib(self.spec.memory_bytes)}); a new container runs the next datum",
            )
            # The kernel may still be killing in there (the agent too, after
            # its answer): the next datum must not find a dying container.
            self._discard_container()
            return res
        return result(code)

    def _timed_out(self, datum: DatumRun, result: Callable[..., RunResult]) -> RunResult:
        error = f"datum exceeded its timeout of {datum.timeout:g} s and was killed"
        if self._kill_datum_processes():
            try:
                # The agent answers once its child is gone; anything else means
                # the kill did not take, and the container cannot be trusted.
                if self._read_line(10.0) is not None:
                    return result(None, timed_out=True, error=error)
            except (_AgentGone, _Tampered):
                pass
        self._discard_container()
        return result(None, timed_out=True, error=error)

    def _stage(self, datum: DatumRun) -> None:
        """Write the datum's script and stdin; link its inputs under pfs/."""
        lines = [
            # Redirect first, so that even a failing `exec` reports into stderr.
            "exec <{} >{} 2>{}".format(
                _IO_DIR + "/stdin" if datum.stdin is not None else "/dev/null",
                _IO_DIR + "/stdout",
                _IO_DIR + "/stderr",
            )
        ]
        odd: list[str] = []
        for key, value in datum.env.items():
            if _IDENTIFIER.match(key):
                lines.append(f"export {key}={shlex.quote(value)}")
            else:
                # Not a shell name (an input called "my-repo"): only env(1) can set it.
                odd.append(shlex.quote(f"{key}={value}"))
        script = self._inline_script(datum)
        if script is not None and not odd:
            # `sh -c SCRIPT` where that sh is the agent's own shell: the
            # subshell evaluates SCRIPT itself, saving an exec per datum. It
            # sees what `sh -c` would: the exported environment and no
            # positional parameters (only $0 differs: the agent's path).
            lines.insert(1, _AGENT_VARS)
            lines.append(f"eval {shlex.quote(script)}")
        else:
            argv = " ".join(shlex.quote(a) for a in datum.cmd)
            lines.append(f"exec env {' '.join(odd)} {argv}" if odd else f"exec {argv}")
        _write_script(os.path.join(self._io, "datum.sh"), ("\n".join(lines) + "\n").encode())
        if datum.stdin is not None:
            _write(os.path.join(self._io, "stdin"), datum.stdin)
        for name, src in datum.inputs.items():
            dst = os.path.join(self._pfs, name)
            # The caller's staged directory itself, lent for the datum and put
            # back by _unstage: one rename instead of a link per file. The
            # mount is read-only, so user code cannot change it.
            try:
                os.rename(src, dst)
            except OSError as exc:
                if exc.errno == errno.EXDEV:
                    link_tree(src, dst)
                    continue
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                remove_tree(dst)  # a leftover of a datum that could not unstage
                os.rename(src, dst)
            self._lent[name] = src

    def _inline_script(self, datum: DatumRun) -> str | None:
        """SCRIPT of a ``sh -c SCRIPT`` command the agent's subshell can run as
        is; None for any other command (it is exec'd).

        Only when ``sh`` is the agent's /bin/sh (by the image's PATH, which the
        datum's environment does not change), nothing follows SCRIPT (no
        ``$0``, ``$1`` ... to set), and SCRIPT does not ask for what differs
        in a subshell: its shell's pid (``$$``, the same for every datum
        there, so ``/tmp/x.$$`` would clash), its name or its parent.
        """
        cmd = datum.cmd
        if len(cmd) != 3 or cmd[1] != "-c" or "PATH" in datum.env:
            return None
        if any(marker in cmd[2] for marker in _SUBSHELL_TELLS):
            return None
        if cmd[0] == "/bin/sh" or (cmd[0] == "sh" and self._sh_is_agent):
            return cmd[2]
        return None

    def _unstage(self, datum: DatumRun) -> None:
        """Empty pfs/ and out/ again, handing the output to the caller."""
        for name in datum.inputs:
            lent = self._lent.pop(name, None)
            if lent is not None:
                try:
                    os.rename(os.path.join(self._pfs, name), lent)
                    continue
                except OSError:
                    pass
            try:
                remove_tree(os.path.join(self._pfs, name))
            except OSError:
                shutil.rmtree(os.path.join(self._pfs, name), ignore_errors=True)
        for leftover in ("stdin", "stdout", "stderr"):
            path = os.path.join(self._io, leftover)
            try:
                if leftover != "stdin" and _empty_file(path):
                    continue  # the next datum's redirection truncates it: nothing to free
                os.unlink(path)
            except FileNotFoundError:
                pass
        try:
            move_children(self._out, datum.out_dir)
        finally:
            # Never let one datum's output leak into the next one.
            clear_dir(self._out)

    # ------------------------------------------------------------ the agent

    def _read_line(self, timeout: float | None) -> bytes | None:
        """The next line from the agent, or None after ``timeout`` seconds.

        Raises:
            _AgentGone: the agent (so the container) is gone.
            _Tampered: more than a line's worth without a newline: user code
                writes into io/resp (left unbounded, a flood there would grow
                this buffer and keep this loop reading past any timeout).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buf:
            if len(self._buf) > _MAX_LINE:
                raise _Tampered(_garbled(self._buf))
            wait_ms: int | None = None
            if deadline is not None:
                wait_ms = max(0, int((deadline - time.monotonic()) * 1000) + 1)
            if not self._poll.poll(wait_ms):
                return None
            try:
                chunk = os.read(self._resp_fd, 4096)
            except BlockingIOError:
                continue
            if not chunk:
                raise _AgentGone()
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def _agent_hung_up(self) -> bool:
        """True if the agent's end of the response FIFO is closed (one poll, no wait)."""
        return any(ev & (select.POLLHUP | select.POLLERR) for _, ev in self._poll.poll(0))

    def _note_oom_kills(self, field: bytes) -> bool:
        """Record the container's OOM-kill count; True if it grew."""
        try:
            count = int(field)
        except ValueError:  # "-": no memory cgroup visible in this container
            return False
        if count < 0:
            return False
        grew = self._oom_kills >= 0 and count > self._oom_kills
        self._oom_kills = count
        return grew

    def _start_container(self) -> None:
        """Create and start a fresh container, and wait for its agent.

        Raises:
            _Failure: engine unreachable, image missing, or the agent never
                became ready (with the container's log).
        """
        client = self.runner.client()
        self._discard_container()
        spec = self.spec
        try:
            client.images.get(spec.image)
        except docker.errors.ImageNotFound:
            raise _Failure(
                f"image {spec.image} not found: build it with deploy/images/build.sh "
                "(images are never pulled: no registry is reachable)"
            ) from None
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise _Failure(self.runner.unreachable(exc)) from exc
        self._remove_stale_containers(client)
        self._prepare_dirs()
        self._resp_fd = os.open(os.path.join(self._io, "resp"), os.O_RDONLY | os.O_NONBLOCK)
        self._poll = select.poll()
        self._poll.register(self._resp_fd, select.POLLIN)
        self._buf = b""
        labels = {
            **self.runner.labels,
            LABEL: "1",
            SESSION_LABEL: self.session_id,
            WORKDIR_LABEL: self._work_dir,
        }
        try:
            self._container = client.containers.create(
                spec.image,
                entrypoint=["/bin/sh", _AGENT_DIR + "/agent.sh"],
                init=True,  # reaps orphans and makes removal immediate
                network_mode=spec.network,
                labels=labels,
                mem_limit=spec.memory_bytes,
                # Equal to mem_limit: no swap, so exceeding the limit is an OOM
                # kill rather than a slow crawl.
                memswap_limit=spec.memory_bytes,
                nano_cpus=None if spec.cpus is None else int(spec.cpus * 1e9),
                pids_limit=PIDS_LIMIT,
                # User code is untrusted: no setuid escalation inside, no
                # capabilities beyond Docker's default set, nothing of the
                # host but this session's own directories (below).
                security_opt=["no-new-privileges"],
                # Nor device nodes: one left in io/ or /pfs/out would be the
                # host's device when the worker opens the file there.
                cap_drop=["MKNOD"],
                privileged=False,
                # "" and None: the image's own USER and WORKDIR apply.
                user=spec.user or "",
                working_dir=spec.working_dir,
                volumes={
                    self._agent_dir: {"bind": _AGENT_DIR, "mode": "ro"},
                    self._io: {"bind": _IO_DIR, "mode": "rw"},
                    self._pfs: {"bind": "/pfs", "mode": "ro"},
                    self._out: {"bind": "/pfs/out", "mode": "rw"},
                },
                detach=True,
            )
            self._container.start()
        except docker.errors.ImageNotFound:
            raise _Failure(
                f"image {spec.image} not found: build it with deploy/images/build.sh"
            ) from None
        except docker.errors.APIError as exc:
            self._discard_container()
            raise _Failure(f"could not start a container of {spec.image}: {exc}") from exc
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            self._discard_container()
            raise _Failure(self.runner.unreachable(exc)) from exc
        self._await_agent()

    def _remove_stale_containers(self, client: docker.DockerClient) -> None:
        """Remove containers left on this work_dir by a worker that died.

        The work_dir belongs to one worker, so any other container mounting it
        is a leftover (its agent exits when its host end closes, but the
        stopped container stays until someone removes it).
        """
        try:
            stale = client.containers.list(
                all=True, filters={"label": [f"{LABEL}=1", f"{WORKDIR_LABEL}={self._work_dir}"]}
            )
            for container in stale:
                container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise _Failure(self.runner.unreachable(exc)) from exc

    def _await_agent(self) -> None:
        """Wait for the agent's "ready" line, then open the request FIFO."""
        deadline = time.monotonic() + self.runner.start_timeout
        line: bytes | None = None
        while line is None:
            try:
                line = self._read_line(0.05)
            except (_AgentGone, _Tampered):
                break
            if line is None:
                if time.monotonic() > deadline:
                    break
                self._container.reload()
                if self._container.status not in ("created", "running"):
                    break
        if line is None or not line.startswith(b"ready"):
            raise _Failure(self._not_ready_message())
        fields = line.split(b" ")
        self._note_oom_kills(fields[1] if len(fields) > 1 else b"-")
        self._sh_is_agent = len(fields) > 2 and fields[2] == b"/bin/sh"
        if len(fields) > 3 and self._oom_kills >= 0:
            self._open_oom_counter(fields[3].decode(errors="replace"))
        # The agent opens req right after "ready"; until then a non-blocking
        # open for writing fails with ENXIO (no reader).
        req = os.path.join(self._io, "req")
        while True:
            try:
                self._req_fd = os.open(req, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as exc:
                if exc.errno != errno.ENXIO or time.monotonic() > deadline:
                    raise _Failure(self._not_ready_message()) from exc
                time.sleep(0.0005)
        # Left non-blocking: see _run_staged.

    def _open_oom_counter(self, path: str) -> None:
        """Open the container's OOM-kill counter from the host, through its
        init's root (``/proc/<pid>/root``), so the agent need not read it
        after each datum. Done before any user code ran in the container:
        what is opened is the cgroup file the agent just read, which user
        code cannot replace afterwards. On any doubt the agent keeps counting.
        """
        if path not in _OOM_FILES:
            return
        try:
            fd = os.open(f"/proc/{self._host_pid()}/root{path}",
                         os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, _Failure):
            return
        self._oom_fd = fd
        if not stat.S_ISREG(os.fstat(fd).st_mode) or self._read_oom_counter() != str(
                self._oom_kills).encode():
            self._close_oom_counter()

    def _read_oom_counter(self) -> bytes:
        """The ``oom_kill`` count of the counter file opened by
        :meth:`_open_oom_counter` (b"-" when it cannot be read)."""
        try:
            data = os.pread(self._oom_fd, 4096, 0)
        except OSError:
            return b"-"
        for line in data.split(b"\n"):
            key, _, value = line.partition(b" ")
            if key == b"oom_kill":
                return value.strip()
        return b"-"

    def _close_oom_counter(self) -> None:
        if self._oom_fd >= 0:
            try:
                os.close(self._oom_fd)
            except OSError:
                pass
        self._oom_fd = -1

    def _not_ready_message(self) -> str:
        logs = ""
        status = "unknown"
        try:
            self._container.reload()
            status = self._container.status
            logs = self._container.logs(tail=20).decode(errors="replace").strip()
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            pass
        self._discard_container()
        return (
            f"the runner agent did not start in a container of {self.spec.image} "
            f"(container {status}; it needs /bin/sh in the image)" + (f": {logs}" if logs else "")
        )

    def _prepare_dirs(self) -> None:
        """Fresh agent files and FIFOs, empty pfs/ and out/ (with out/ as mount point)."""
        os.makedirs(self._agent_dir, exist_ok=True)
        remove_tree(self._io)  # user code's files, maybe nested too deep for shutil.rmtree
        os.makedirs(self._io)
        # World-writable: user code may run as any uid and its redirections
        # create stdout/stderr here.
        os.chmod(self._io, 0o777)
        for fifo in ("req", "resp"):
            os.mkfifo(os.path.join(self._io, fifo), 0o666)
            os.chmod(os.path.join(self._io, fifo), 0o666)
        _write(os.path.join(self._agent_dir, "agent.sh"), _AGENT_SCRIPT.encode())
        os.chmod(os.path.join(self._agent_dir, "agent.sh"), 0o755)
        for d in (self._pfs, self._out):
            os.makedirs(d, exist_ok=True)
            clear_dir(d)
        os.chmod(self._pfs, 0o755)
        os.chmod(self._out, 0o777)
        os.mkdir(os.path.join(self._pfs, "out"))

    # ---------------------------------------------------- killing and death

    def _kill_datum_processes(self) -> bool:
        """SIGKILL every process in the container but its init and the agent.

        Uses the host's pids from ``docker top``, so it needs this process to
        share the engine's pid namespace; each pid is checked to belong to the
        container's cgroup before it is signalled. Returns False when nothing
        could be killed this way (the caller then discards the container).
        """
        container = self._container
        if container is None:
            return False
        killed_any = False
        try:
            for _ in range(3):  # again, in case a process forked meanwhile
                top = container.top()
                titles = top["Titles"]
                ipid, ippid, icmd = titles.index("PID"), titles.index("PPID"), titles.index("CMD")
                procs = [(int(p[ipid]), int(p[ippid]), p[icmd]) for p in top["Processes"] or []]
                pids = {pid for pid, _, _ in procs}
                init = {pid for pid, ppid, _ in procs if ppid not in pids}
                targets = [
                    pid
                    for pid, ppid, cmd in procs
                    if pid not in init and not (ppid in init and _AGENT_DIR + "/agent.sh" in cmd)
                ]
                if not targets:
                    break
                for pid in targets:
                    if not _in_container(pid, str(container.id)):
                        continue
                    try:
                        os.kill(pid, signal.SIGKILL)
                        killed_any = True
                    except (ProcessLookupError, PermissionError):
                        pass
        except (docker.errors.DockerException, requests.exceptions.RequestException, ValueError):
            return False
        return killed_any

    def _death_report(self) -> dict[str, Any]:
        """Fields of the RunResult for a container that died mid-datum."""
        container = self._container
        state: dict[str, Any] = {}
        logs = ""
        try:
            # The engine records the exit a moment after the FIFO closes.
            for _ in range(50):
                container.reload()
                state = container.attrs.get("State", {})
                if not state.get("Running"):
                    break
                time.sleep(0.02)
            logs = container.logs(tail=10).decode(errors="replace").strip()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            self._discard_container()
            return {"error": self.runner.unreachable(exc)}
        self._discard_container()
        if state.get("OOMKilled"):
            return {
                "oom_killed": True,
                "error": "container was killed for exceeding its memory limit "
                f"({_mib(self.spec.memory_bytes)}); a new one runs the next datum",
            }
        msg = (
            f"container {str(container.id)[:12]} of {self.spec.image} died during the datum "
            f"(exit code {state.get('ExitCode', '?')}"
            + (f", {state['Error']}" if state.get("Error") else "")
            + "); a new one runs the next datum"
        )
        return {"error": msg + (f". Last log lines: {logs}" if logs else "")}

    def _discard_container(self) -> None:
        """Close the FIFOs and force-remove the container, if any."""
        for fd in (self._req_fd, self._resp_fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._req_fd = self._resp_fd = -1
        self._close_oom_counter()
        self._buf = b""
        self._oom_kills = -1
        self._init_pid = None
        container, self._container = self._container, None
        if container is not None:
            try:
                container.remove(force=True)
            except docker.errors.NotFound:
                pass
            except (docker.errors.DockerException, requests.exceptions.RequestException):
                # Engine gone: its containers went with it (or it will clean up
                # on restart); nothing more this session can do.
                pass


def _empty_file(path: str) -> bool:
    """Whether ``path`` is an empty regular file (not a link, FIFO...).

    An empty stdout is kept from one datum to the next: creating and
    unlinking it costs two journaled changes per datum, truncating an empty
    file none. A written one is unlinked (ext4 would flush it on the next
    truncation), and so is anything user code put in its place."""
    st = os.lstat(path)
    return stat.S_ISREG(st.st_mode) and st.st_size == 0


#: Slack a datum script's file keeps for longer scripts (blank space).
_SCRIPT_ROOM = 512


def _write_script(path: str, script: bytes) -> None:
    """Write a datum script to ``path``, over the last one in place when it can.

    The script is padded with blank space to the file's size, so the file
    is neither truncated (ext4 would flush it when it is closed) nor made
    anew (two journaled directory changes per datum). io/ is writable by
    user code: anything but this session's own regular file there (a link,
    a FIFO, a file linked elsewhere, one grown out of bounds) is replaced
    instead (:func:`_write`), never written through.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        fd = -1
    if fd >= 0:
        try:
            st = os.fstat(fd)
            if (stat.S_ISREG(st.st_mode) and st.st_nlink == 1
                    and len(script) <= st.st_size <= len(script) + 4 * _SCRIPT_ROOM):
                data = script + b" " * (st.st_size - len(script))
                if os.pwrite(fd, data, 0) == len(data):
                    return
        finally:
            os.close(fd)
    _write(path, script + b" " * _SCRIPT_ROOM)


def _write(path: str, data: bytes) -> None:
    # A new file, not a truncated one: ext4 (auto_da_alloc) flushes a file
    # truncated and rewritten when it is closed, about 1 ms per datum here,
    # against 40 us for unlink + create.
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    # Readable by any uid the agent may run as (the usual umask leaves 0o644).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _garbled(data: bytes) -> str:
    return (f"the runner agent's response FIFO carried {data[:40]!r}, which the agent never "
            "writes: user code wrote into /.tusk/io/resp; the container was discarded")


def _in_container(pid: int, container_id: str) -> bool:
    """True if host ``pid`` is in the container's cgroup (guards against pid reuse
    or a pid namespace that differs from the engine's)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return container_id in f.read()
    except OSError:
        return False


def _mib(n: int | None) -> str:
    return "no limit" if n is None else f"{n / (1 << 20):g} MiB"
