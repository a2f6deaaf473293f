"""Process runner: user code as host processes, in a bubblewrap sandbox per datum.

For machines without a Docker engine. The pipeline's image is ignored (the
host's own binaries run), but the ``/pfs`` contract holds: bubblewrap gives each
datum a private mount namespace whose root is an empty tmpfs, with the host's
system directories read-only, the inputs read-only at ``/pfs/<name>``, the output
directory writable at ``/pfs/out``, a private ``/tmp`` and (by default) no
network. About 7 ms per datum here, against 0.8 ms for a bare subprocess.

Not enforced: ``memory_bytes`` and ``cpus`` (listed in the session's warnings).
Unlike a container, nothing persists between datums (``/tmp`` is new each time).
"""

from __future__ import annotations

import json
import os
import platform
import pwd
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from typing import Self

from pps.runners import DatumRun, LoopbackService, RunnerSpec, RunResult
from pps.runners._files import read_tail
from pps.runners.netns import NetnsError, listen_in_netns, netns_supported

__all__ = ["ProcessRunner", "ProcessSession"]

#: Host directories presented read-only in the sandbox (when they exist).
#: /etc brings passwd, ld.so.cache and certificates; /opt holds some toolchains.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _system_binds() -> list[str]:
    """bwrap arguments presenting SYSTEM_DIRS; merged-/usr symlinks stay symlinks."""
    args: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def _keyring_filter() -> bytes:
    """A seccomp program (classic BPF, for bwrap's ``--seccomp``) refusing
    the kernel keyring calls (``add_key``, ``request_key``, ``keyctl``) with
    EPERM, on x86-64 and its 32-bit calls; everything else is allowed.

    The sandbox inherits the worker's session keyring, and a possessor may
    read its keys whatever its uid (Kerberos tickets live there, for one);
    the keyrings would also let datums of different pipelines talk.
    """
    x86_64, i386 = 0xC000003E, 0x40000003
    allow, deny = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
    # (op, k, jump-if-true label, jump-if-false label); None: fall through.
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    prog: list[tuple[int, int, str | None, str | None]] = [
        (ld, 4, None, None),  # seccomp_data.arch
        (jeq, x86_64, None, "not64"),
        (ld, 0, None, None),  # seccomp_data.nr
        (jge, 0x40000000, "deny", None),  # the x32 ABI: none of it
        (jeq, 248, "deny", None), (jeq, 249, "deny", None), (jeq, 250, "deny", None),
        (ret, allow, None, None),
        (jeq, i386, None, "allow"),  # not64
        (ld, 0, None, None),
        (jeq, 286, "deny", None), (jeq, 287, "deny", None), (jeq, 288, "deny", None),
        (ret, allow, None, None),  # allow
        (ret, deny, None, None),  # deny
    ]
    labels = {"not64": 8, "allow": 13, "deny": 14}
    out = b""
    for i, (op, k, jt, jf) in enumerate(prog):
        t = labels[jt] - i - 1 if jt else 0
        f = labels[jf] - i - 1 if jf else 0
        out += struct.pack("=HBBI", op, t, f, k)
    return out


#: The keyring filter, where it applies (x86-64 hosts); None elsewhere.
KEYRING_FILTER = _keyring_filter() if platform.machine() in ("x86_64", "AMD64") else None


#: The host user a root worker runs user code as when the spec names none.
NOBODY = (65534, 65534)


def _resolve_user(user: str) -> tuple[int, int]:
    """(uid, gid) of ``user`` (``name``, ``uid`` or ``uid:gid``) on this host.

    Raises:
        ValueError: an unknown user name.
    """
    name, _, group = user.partition(":")
    if name.isdigit():
        uid = int(name)
        return uid, int(group) if group.isdigit() else uid
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ValueError(f"user {name!r} does not exist on this host") from None
    return entry.pw_uid, int(group) if group.isdigit() else entry.pw_gid


#: Under a root worker, the lowest uid and gid user code may run as: below
#: are the host's system accounts and groups (root, shadow, disk, adm...),
#: which own files of the read-only system directories.
MIN_ID = 1000


def _spec_problem(spec: RunnerSpec, datum: DatumRun) -> str:
    """Why this runner refuses ``spec``/``datum`` ("" if it does not)."""
    if "=" in datum.cmd[0]:
        return (f"cmd[0] {datum.cmd[0]!r} contains '=': the process runner cannot run it "
                "(name the program without '=')")
    wd = spec.working_dir
    if wd and wd != "/":
        parts = wd.split("/")
        if (not wd.startswith("/") or any(p in ("", ".", "..") for p in parts[1:])
                or parts[1] in ("proc", "dev", "sys")):
            return (f"working_dir {wd!r} is not allowed by the process runner: give a "
                    "normalized absolute path (no '.', '..' or '//') outside /proc, /dev "
                    "and /sys")
    return ""


def _user_args(user: str | None, setpriv: str
               ) -> tuple[list[str], list[str], tuple[int, int] | None]:
    """(bwrap arguments, command prefix, host uid and gid of the user code
    when it is not the worker's own) that run user code as ``user``.

    Under a root worker, bubblewrap stays in the host's user namespace, so
    its sandbox would keep root's capabilities: enough to read root-only
    host files through the read-only system directories (/etc/shadow), to
    mount, or to open any host file by handle. So the command runs through
    ``setpriv``, as the spec's user or else nobody (65534), with no
    capabilities, an empty bounding set and no new privileges. A worker that
    is not root gets a user namespace from bubblewrap (capabilities only
    inside it); there ``user`` only maps the ids the code sees.

    Raises:
        ValueError: an unknown user name.
    """
    if os.geteuid() == 0:
        uid, gid = _resolve_user(user) if user else NOBODY
        if min(uid, gid) < MIN_ID:
            raise ValueError(
                f"user {user!r} is uid {uid}, gid {gid} on this host: under a root worker "
                f"the process runner runs user code as a host user, and ids below {MIN_ID} "
                "are the host's system accounts and groups (owners of files in /etc, /usr); "
                f"give a uid and gid of {MIN_ID} or more, leave user empty (nobody), or use "
                "the Docker runner")
        return [], [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                    "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"], (uid, gid)
    if not user:
        return [], [], None
    uid, gid = _resolve_user(user)
    # A user namespace maps the chosen ids onto the caller's own: the code sees
    # uid/gid as asked, and files it writes belong to the worker on the host.
    return ["--unshare-user", "--uid", str(uid), "--gid", str(gid)], [], None


def _start_service(proc: subprocess.Popen[bytes], service: LoopbackService, info_r: int,
                   block_w: int) -> str:
    """Serve ``service`` inside the sandbox, then let the user code start.

    Returns "" on success, else why not (the caller kills the sandbox). Closes
    both descriptors.
    """
    try:
        info = b""
        deadline = time.monotonic() + 30.0
        pid = 0
        while not pid:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([info_r], [], [], left)[0]:
                return "bubblewrap did not report its sandbox's pid in 30 s"
            chunk = os.read(info_r, 4096)
            if not chunk:
                return "bubblewrap exited before reporting its sandbox's pid"
            info += chunk
            try:
                pid = int(json.loads(info)["child-pid"])
            except (ValueError, KeyError, TypeError):
                continue  # not the whole object yet
        try:
            sock = listen_in_netns(pid, service.port, check=lambda: _parent_pid(pid) == proc.pid)
        except NetnsError as exc:
            return str(exc)
        service.serve(sock)
        os.write(block_w, b"x")
        return ""
    finally:
        os.close(info_r)
        os.close(block_w)


def _parent_pid(pid: int) -> int:
    """The parent of ``pid`` (0 if unknown): the sandbox's init is bwrap's child."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    fields = stat[stat.rfind(b")") + 2:].split()
    return int(fields[1]) if len(fields) > 1 else 0


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class ProcessRunner:
    """Runs user code on the host under bubblewrap.

    Args:
        bwrap: the bubblewrap executable (found on PATH when ``None``).
    """

    name = "process"

    def __init__(self, bwrap: str | None = None) -> None:
        self.bwrap = bwrap or shutil.which("bwrap") or "bwrap"
        #: util-linux's setpriv, run inside the sandbox (from the read-only
        #: /usr) to drop root before the user code (:func:`_user_args`).
        self.setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
        #: coreutils' env: sets the datum's environment after the drop.
        self.env_cmd = shutil.which("env") or "/usr/bin/env"
        self._available: tuple[bool, str] | None = None

    def available(self) -> tuple[bool, str]:
        """Whether bubblewrap exists and can build a sandbox here (checked once)."""
        if self._available is None:
            self._available = self._probe()
        return self._available

    def _probe(self) -> tuple[bool, str]:
        if shutil.which(self.bwrap) is None:
            return False, (
                "bubblewrap (bwrap) is not installed: apt-get install -y bubblewrap, "
                "or run with a Docker engine"
            )
        if os.geteuid() == 0 and not os.path.isfile(self.setpriv):
            return False, (
                "setpriv (util-linux) is not installed, and a root worker needs it to run "
                "user code without root: apt-get install -y util-linux"
            )
        _, prefix, _ = _user_args(None, self.setpriv)
        argv = [
            self.bwrap,
            "--tmpfs",
            "/",
            *_system_binds(),
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--perms",
            "1777",
            "--tmpfs",
            "/tmp",
            "--unshare-net",
            "--unshare-pid",
            "--die-with-parent",
            "--",
            *prefix,
            "true",
        ]
        try:
            proc = subprocess.run(argv, check=False, capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"bubblewrap does not run here: {exc}"
        if proc.returncode != 0:
            return False, (
                "bubblewrap cannot create namespaces here: "
                f"{proc.stderr.decode(errors='replace').strip()}; install bubblewrap "
                "with user namespaces allowed, or run with a Docker engine"
            )
        return True, ""

    def start(self, spec: RunnerSpec, work_dir: str) -> ProcessSession:
        """A session; nothing is started until the first datum."""
        return ProcessSession(self, spec, work_dir)


class ProcessSession:
    """Runs each datum in a fresh bubblewrap sandbox.

    Attributes:
        warnings: what the spec asked that this runner does not do.
    """

    def __init__(self, runner: ProcessRunner, spec: RunnerSpec, work_dir: str) -> None:
        self.runner = runner
        self.spec = spec
        self._work_dir = os.path.abspath(work_dir)
        os.makedirs(self._work_dir, exist_ok=True)
        warnings = [
            (
                f"process runner: image {spec.image} is ignored; user code runs the host's "
                "binaries (/usr, /bin, /etc... read-only)"
            )
        ]
        if spec.memory_bytes is not None or spec.cpus is not None:
            warnings.append("process runner: resource limits (memory, cpu) are not enforced")
        self.warnings: tuple[str, ...] = tuple(warnings)
        self._closed = False
        self._proc: subprocess.Popen[bytes] | None = None  # the running datum's sandbox

    def run(self, datum: DatumRun) -> RunResult:
        """Run one datum in a new sandbox; see :class:`pps.runners.Session`."""
        datum.validate()
        if self._closed:
            raise RuntimeError("session is closed")
        started = time.monotonic()
        ok, why = self.runner.available()
        if not ok:
            return RunResult(None, b"", b"", time.monotonic() - started, error=why)
        try:
            user_args, prefix, owner = _user_args(self.spec.user, self.runner.setpriv)
        except ValueError as exc:
            return RunResult(None, b"", b"", time.monotonic() - started, error=str(exc))
        problem = datum.out_dir_problem() or _spec_problem(self.spec, datum)
        if problem:
            return RunResult(None, b"", b"", time.monotonic() - started, error=problem)
        missing = [src for src in datum.inputs.values() if not os.path.isdir(src)]
        if missing:
            return RunResult(
                None,
                b"",
                b"",
                time.monotonic() - started,
                error=f"input directory does not exist: {missing[0]}",
            )
        if datum.service is not None:
            why = ("the sandbox would share the host's network"
                   if self.spec.network != "none" else netns_supported()[1])
            if why:
                return RunResult(None, b"", b"", time.monotonic() - started,
                                 error=f"could not serve the datum's S3 gateway: {why}")
        os.makedirs(datum.out_dir, exist_ok=True)
        if owner is not None:
            # User code runs as another host user than a root worker: /pfs/out
            # is that user's alone (not world-writable for the datum's run).
            os.chown(datum.out_dir, *owner)
        os.chmod(datum.out_dir, 0o700)
        with tempfile.TemporaryDirectory(dir=self._work_dir, prefix="datum-") as scratch:
            return self._run_in(datum, scratch, (user_args, prefix), started)

    def _run_in(
        self, datum: DatumRun, scratch: str, user: tuple[list[str], list[str]], started: float
    ) -> RunResult:
        # bwrap reports {"exit-code": N} on this pipe only when the command really
        # ran, which tells a sandbox that could not be built from user code that
        # exited 1 (bwrap's own errors also exit 1).
        status_r, status_w = os.pipe()
        try:
            return self._run_sandbox(datum, scratch, user, started, status_r, status_w)
        finally:
            os.close(status_r)

    def _run_sandbox(
        self,
        datum: DatumRun,
        scratch: str,
        user: tuple[list[str], list[str]],
        started: float,
        status_r: int,
        status_w: int,
    ) -> RunResult:
        argv = [
            self.runner.bwrap,
            "--json-status-fd",
            str(status_w),
            "--die-with-parent",  # a dead worker leaves no stray user code behind
            "--unshare-pid",  # and killing bwrap kills the whole sandbox
            "--unshare-ipc",
            "--unshare-uts",
            *(["--unshare-net"] if self.spec.network == "none" else []),
            *user[0],
            "--tmpfs",
            "/",
            *_system_binds(),
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--perms",
            "1777",
            "--tmpfs",
            "/tmp",
            "--dir",
            "/pfs",
        ]
        for name, src in datum.inputs.items():
            argv += ["--ro-bind", os.path.abspath(src), f"/pfs/{name}"]
        argv += ["--bind", os.path.abspath(datum.out_dir), "/pfs/out"]
        if self.spec.working_dir:
            argv += ["--dir", self.spec.working_dir, "--chdir", self.spec.working_dir]
        else:
            argv += ["--chdir", "/"]
        # Read-only like the rest of the image; /tmp and the binds keep their modes.
        argv += ["--remount-ro", "/"]
        # A loopback service: bwrap reports the sandbox's pid on info_w, then
        # waits on block_r while the service's socket is made in its network
        # namespace; only then does the user code start.
        info_r = info_w = block_r = block_w = -1
        if datum.service is not None:
            info_r, info_w = os.pipe()
            block_r, block_w = os.pipe()
            argv += ["--info-fd", str(info_w), "--block-fd", str(block_r)]
        seccomp_r = -1
        if KEYRING_FILTER is not None:
            # bwrap reads the program to its end: a pipe holds it whole.
            seccomp_r, seccomp_w = os.pipe()
            os.write(seccomp_w, KEYRING_FILTER)
            os.close(seccomp_w)
            argv += ["--seccomp", str(seccomp_r)]
        # The datum's environment (transform.env is the user's) reaches only
        # the user code: `env -i` sets it after setpriv dropped root. Given to
        # bwrap or setpriv, LD_PRELOAD & co. would run the user's library as
        # the worker, on the host (bwrap) or with root's capabilities.
        env_args = [f"{k}={v}" for k, v in
                    {"PATH": DEFAULT_PATH, "HOME": "/tmp", **datum.env}.items()]
        argv += ["--", *user[1], self.runner.env_cmd, "-i", "--", *env_args, *datum.cmd]
        env = {"PATH": DEFAULT_PATH}
        out_path = os.path.join(scratch, "stdout")
        err_path = os.path.join(scratch, "stderr")
        timed_out = False
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            try:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.PIPE if datum.stdin is not None else subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=env,
                    pass_fds=tuple(fd for fd in (status_w, info_w, block_r, seccomp_r)
                                   if fd >= 0),
                    start_new_session=True,  # its own process group, killed as one
                )
            except OSError as exc:
                for fd in (info_r, block_w):
                    if fd >= 0:
                        os.close(fd)
                return RunResult(
                    None,
                    b"",
                    b"",
                    time.monotonic() - started,
                    error=f"could not run bubblewrap: {exc}",
                )
            finally:
                # The child has its copies; EOF comes when it exits.
                for fd in (status_w, info_w, block_r, seccomp_r):
                    if fd >= 0:
                        os.close(fd)
            self._proc = proc
            service_error = ""
            if datum.service is not None:
                service_error = _start_service(proc, datum.service, info_r, block_w)
            try:
                if service_error:
                    _kill(proc)
                    proc.communicate(None if datum.stdin is None else b"", timeout=30)
                else:
                    proc.communicate(datum.stdin, timeout=datum.timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
            finally:
                self._proc = None
                # Before the output is collected: no request may write into it later.
                if datum.service is not None:
                    datum.service.stop()
        if service_error:
            return RunResult(None, b"", b"", time.monotonic() - started,
                             error=f"could not serve the datum's S3 gateway: {service_error}")
        with os.fdopen(os.dup(status_r), "rb") as f:
            status = f.read()
        stdout, stderr = read_tail(out_path), read_tail(err_path)
        duration = time.monotonic() - started
        if timed_out:
            return RunResult(
                None,
                stdout,
                stderr,
                duration,
                timed_out=True,
                error=f"datum exceeded its timeout of {datum.timeout:g} s and was killed",
            )
        code = proc.returncode
        if b'"exit-code"' not in status:
            if stderr.startswith(b"bwrap: execvp "):
                # The command does not exist in the sandbox: a user error, with
                # a shell's status for it, as the docker runner reports.
                return RunResult(127, stdout, stderr, duration)
            return RunResult(
                None,
                stdout,
                stderr,
                duration,
                error="bubblewrap could not build the sandbox: "
                + stderr.decode(errors="replace").strip(),
            )
        if code < 0:
            return RunResult(
                None, stdout, stderr, duration, error=f"user code was killed by signal {-code}"
            )
        return RunResult(code, stdout, stderr, duration)

    def interrupt(self) -> None:
        """Kill the running datum's sandbox (its whole process group)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        """Nothing runs between datums; only marks the session closed."""
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
