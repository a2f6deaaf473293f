"""``tusk daemon`` and ``tusk worker``: the server processes.

``tusk daemon`` runs in the foreground, serving the whole gRPC API (PFS now, PPS
later through :data:`EXTRA_SERVICES`) over the stores named by ``--metadata`` and
``--storage`` (embedded defaults under ``--data-dir``). SIGTERM and SIGINT stop it
gracefully: in-flight calls get a few seconds to finish; an upload that does not
finish is aborted, so nothing partial becomes visible.

Only this module (and the CLI) read the environment: ``TUSK_DATA_DIR``,
``TUSK_METADATA``, ``TUSK_STORAGE``, ``TUSK_RUNNER`` (and the others each flag's
help names) override the defaults, flags override both. ``deploy/``'s compose
file and Kubernetes manifest pass these flags; ``tests/test_deploy.py`` parses
their command lines with :func:`build_parser`, so renaming a flag fails there.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from pfs import errors
from pps.runners import RUNNER_NAMES, Runner, RunnerUnavailable
from pps.spec import DEFAULT_IMAGE
from tusk.http import DEFAULT_HTTP_ADDRESS  # metrics (and later the web console), loopback

if TYPE_CHECKING:
    import grpc

    from pfs.api import PFS
    from pfs.metadata import MetadataStore
    from pps.api import PPS
    from tusk.http import HTTPServer
    from tusk.metrics import DaemonMetrics
    from tusk.s3.server import S3Server

DEFAULT_ADDRESS = "127.0.0.1:1650"
#: The S3 gateway's default address (Pachyderm's gateway port is 30600).
DEFAULT_S3_ADDRESS = "127.0.0.1:30600"
DEFAULT_DATA_DIR = "~/.tusk"
#: Seconds in-flight calls get to finish after SIGTERM/SIGINT.
SHUTDOWN_GRACE = 5.0

#: Hooks adding further services to the daemon's server, given the PFS it built
#: (the PPS service registers here): ``hook(pfs) -> registrar(server)``.
EXTRA_SERVICES: list[Callable[[PFS], Callable[[grpc.Server], None]]] = []

log = logging.getLogger("tusk.daemon")


def _add_runner_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runner", choices=RUNNER_NAMES,
                   default=os.environ.get("TUSK_RUNNER", "auto"),
                   help="how user code runs: docker (the pipeline's image, on the Docker "
                        "engine at $DOCKER_HOST or /var/run/docker.sock), process (host "
                        "binaries in bubblewrap; no engine needed) or auto (docker when an "
                        "engine answers, else process); an explicit choice is checked at "
                        "start (default: $TUSK_RUNNER or auto)")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``tusk daemon`` and ``tusk worker`` (argv[0] is the verb)."""
    p = argparse.ArgumentParser(prog="tusk", description="tusk server processes")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("daemon", help="serve the tusk API (foreground)")
    d.add_argument("--data-dir", default=os.environ.get("TUSK_DATA_DIR", DEFAULT_DATA_DIR),
                   help="where embedded stores live (default: $TUSK_DATA_DIR or ~/.tusk)")
    d.add_argument("--address", default=DEFAULT_ADDRESS,
                   help=f"host:port to listen on (default: {DEFAULT_ADDRESS})")
    d.add_argument("--metadata", default=os.environ.get("TUSK_METADATA"),
                   help="metadata store URL, e.g. etcd://127.0.0.1:2379 "
                        "(default: $TUSK_METADATA or SQLite at DATA_DIR/meta.db)")
    d.add_argument("--storage", default=os.environ.get("TUSK_STORAGE"),
                   help="object store URL, e.g. s3://bucket (default: $TUSK_STORAGE "
                        "or the directory DATA_DIR/objects)")
    d.add_argument("--s3-address", default=None,
                   help="host:port of the S3 gateway ('' or 'off' disables it; default: "
                        f"$TUSK_S3_ADDRESS or {DEFAULT_S3_ADDRESS}, skipped with a warning "
                        "if that default is taken)")
    d.add_argument("--s3-access-key", default=os.environ.get("TUSK_S3_ACCESS_KEY"),
                   help="access key S3 clients sign with (default: $TUSK_S3_ACCESS_KEY; "
                        "none: every request is accepted unchecked)")
    d.add_argument("--s3-secret-key", default=os.environ.get("TUSK_S3_SECRET_KEY"),
                   help="its secret key (default: $TUSK_S3_SECRET_KEY)")
    d.add_argument("--http-address", default=None,
                   help="host:port serving /metrics (Prometheus) over HTTP ('' or 'off' "
                        f"disables it; default: $TUSK_HTTP_ADDRESS or {DEFAULT_HTTP_ADDRESS}, "
                        "skipped with a warning if that default is taken)")
    d.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    # One master per data set (tusk.election) and garbage collection (pfs.gc).
    d.add_argument("--no-wait", action="store_true",
                   help="exit 1 if another daemon is master for this data (default: wait)")
    d.add_argument("--master-ttl", type=float, default=10.0,
                   help="seconds a dead master blocks a successor (lease TTL; default 10)")
    d.add_argument("--gc-interval", type=float, default=600.0,
                   help="seconds between garbage collections (default 600; 0 disables)")
    d.add_argument("--gc-grace", type=float, default=3600.0,
                   help="never collect objects younger than this many seconds (default 3600)")
    d.add_argument("--default-image", default=os.environ.get("TUSK_DEFAULT_IMAGE", DEFAULT_IMAGE),
                   help="image of a pipeline whose transform names none (default: "
                        f"$TUSK_DEFAULT_IMAGE or {DEFAULT_IMAGE}, Pachyderm's default)")
    d.add_argument("--no-workers", action="store_true",
                   help="run no datums in the daemon: its masters plan jobs and merge "
                        "results, and `tusk worker` processes (on this host or others) "
                        "run every datum")
    _add_runner_flag(d)
    w = sub.add_parser("worker", help="run datums for every pipeline, joining a daemon's "
                                      "deployment through its metadata and object stores")
    w.add_argument("--data-dir", default=os.environ.get("TUSK_DATA_DIR", DEFAULT_DATA_DIR),
                   help="scratch space and the dedup cache (default: $TUSK_DATA_DIR or ~/.tusk)")
    w.add_argument("--metadata", default=os.environ.get("TUSK_METADATA"),
                   help="the daemon's metadata store URL (default: $TUSK_METADATA or SQLite "
                        "at DATA_DIR/meta.db)")
    w.add_argument("--storage", default=os.environ.get("TUSK_STORAGE"),
                   help="the daemon's object store URL (default: $TUSK_STORAGE or "
                        "DATA_DIR/objects)")
    w.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    w.add_argument("--default-image", default=os.environ.get("TUSK_DEFAULT_IMAGE", DEFAULT_IMAGE),
                   help="image of a pipeline whose transform names none (as the daemon's)")
    w.add_argument("--claim-ttl", type=float, default=None,
                   help="seconds the work this worker claimed stays its own after it stops "
                        "answering (crashed, cut off): then other workers run it again "
                        "(its lease's TTL; etcd rounds up to whole seconds, at least 2; "
                        "default 10)")
    _add_runner_flag(w)
    return p


def _pick_runner(verb: str, name: str) -> tuple[Runner | None, str]:
    """``--runner NAME`` as the runner PPS gets, or why it cannot be had.

    ``auto`` stays lazy (None: PPS picks the best runner at the first datum,
    so a daemon that only serves PFS needs neither); an explicit choice is
    checked now, so a deployment without an engine or bubblewrap fails at
    start with the reason instead of failing every datum."""
    if name == "auto":
        return None, ""
    from pps.runners import runner_named

    try:
        return runner_named(name), ""
    except (ValueError, RunnerUnavailable) as exc:
        return None, f"tusk {verb}: --runner {name}: {exc}"


def _preload_runners() -> None:
    """Import the runners' modules (docker-py: ~0.13 s) in the background
    now, not when the first job's workers start: the runner is still picked
    then (``--runner auto`` stays lazy), but its import is off the job's path."""
    def load() -> None:
        import pps.runners.docker
        import pps.runners.process  # noqa: F401

    threading.Thread(target=load, name="tusk-preload-runners", daemon=True).start()


def _describe(store: object, fallback: str) -> str:
    describe = getattr(store, "describe", None)
    return str(describe()) if callable(describe) else fallback


def _bindable(address: str) -> bool:
    """Whether ``address`` can be bound now.

    Checked before gRPC binds because gRPC core reports a failed bind with its
    own multi-line log on stderr; this keeps the daemon's answer to one line.
    SO_REUSEADDR matches gRPC's own socket setup (TIME_WAIT ports are fine).
    """
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (OSError, ValueError):
        return False
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(sockaddr)
            except OSError:
                return False
    return True


def _s3_settings(args: argparse.Namespace) -> tuple[str, bool, dict[str, str] | None]:
    """(address or "", whether it was asked for explicitly, credentials)."""
    explicit = args.s3_address is not None or "TUSK_S3_ADDRESS" in os.environ
    address = args.s3_address if args.s3_address is not None else os.environ.get(
        "TUSK_S3_ADDRESS", DEFAULT_S3_ADDRESS)
    if address.strip().lower() in ("", "off", "none", "0"):
        address = ""
    creds = None
    if args.s3_access_key or args.s3_secret_key:
        creds = {args.s3_access_key or "": args.s3_secret_key or ""}
    return address, explicit, creds


def _start_s3(pfs: PFS, address: str, explicit: bool, credentials: dict[str, str] | None,
              notes: list[str]) -> tuple[S3Server | None, str]:
    """Start the S3 gateway; (server or None, error message if it must stop).
    Lines for the operator go to ``notes``, printed after the daemon's
    "listening" line (the first line is what scripts wait for)."""
    if not address:
        return None, ""
    from tusk.s3.multipart import MultipartStore
    from tusk.s3.pfs_backend import PfsBuckets
    from tusk.s3.server import S3Server

    if credentials is None:
        notes.append("tusk daemon: the S3 gateway has no credentials (--s3-access-key/"
                     "--s3-secret-key or TUSK_S3_ACCESS_KEY/TUSK_S3_SECRET_KEY): it accepts "
                     "every request unchecked")
    elif "" in credentials or "" in credentials.values():
        return None, "give both --s3-access-key and --s3-secret-key (or neither)"
    uploads = MultipartStore(pfs)
    server = S3Server(PfsBuckets(pfs, uploads), credentials)
    try:
        port = server.serve(address)
    except (OSError, ValueError) as exc:
        msg = (f"cannot serve S3 on {address} ({exc}): pick another --s3-address, "
               "or --s3-address off")
        if explicit:
            return None, msg
        notes.append(f"tusk daemon: warning: {msg}; continuing without the S3 gateway")
        return None, ""
    uploads.start_sweeper()
    host = address.rsplit(":", 1)[0] or "127.0.0.1"
    notes.append(f"tusk daemon: S3 gateway on http://{host}:{port}")
    return server, ""


def _http_settings(args: argparse.Namespace) -> tuple[str, bool]:
    """(address or "" for none, whether it was asked for explicitly)."""
    explicit = args.http_address is not None or "TUSK_HTTP_ADDRESS" in os.environ
    address = args.http_address if args.http_address is not None else os.environ.get(
        "TUSK_HTTP_ADDRESS", DEFAULT_HTTP_ADDRESS)
    if address.strip().lower() in ("", "off", "none", "0"):
        address = ""
    return address, explicit


def _start_http(metrics: DaemonMetrics, address: str, explicit: bool,
                pps: PPS | None = None) -> tuple[HTTPServer | None, str]:
    """Serve /metrics and (given ``pps``) the web console's pages; (server or
    None, error message if the daemon must stop)."""
    if not address:
        return None, ""
    from tusk.http import HTTPServer

    server = HTTPServer()
    for pattern, handler in metrics.routes():
        server.route(pattern, handler)
    if pps is not None:
        from tusk import console

        console.register(server, pps.pfs, pps)
    try:
        server.serve(address)
    except (OSError, ValueError) as exc:
        msg = (f"cannot serve HTTP on {address} ({exc}): pick another --http-address, "
               "or --http-address off")
        if explicit:
            return None, msg
        print(f"tusk daemon: warning: {msg}; continuing without metrics",
              file=sys.stderr, flush=True)
        return None, ""
    return server, ""


def run_daemon(data_dir: str, address: str, metadata: str | None, storage: str | None,
               gc_interval: float = 0.0, gc_grace: float = 3600.0,
               default_image: str = DEFAULT_IMAGE,
               s3: tuple[str, bool, dict[str, str] | None] = ("", False, None),
               http: tuple[str, bool] = ("", False), runner: Runner | None = None,
               fence: Callable[[MetadataStore], MetadataStore] | None = None,
               workers: bool = True) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit code. ``workers``:
    False runs no datums here (``--no-workers``): ``tusk worker`` processes do.
    ``runner``: the one the daemon's workers use (the best available when None).
    ``fence``: wraps the metadata store every write goes through (the
    master's fencing token: :meth:`tusk.election.Mastership.fenced`)."""
    from pfs.api import open_pfs
    from pfs.gc import Collector
    from tusk.server import AddressInUse, serve

    data_dir = os.path.expanduser(data_dir)
    if not _bindable(address):
        print(f"tusk daemon: {AddressInUse(address)}", file=sys.stderr)
        return 1
    from pps.api import PPS
    from tusk.pachyderm import registrar as pachyderm_registrar
    from tusk.pps_server import registrar as pps_registrar
    from tusk.s3.worker_scope import pfs_datum_gateways

    try:
        pfs = open_pfs(data_dir, metadata_url=metadata, storage_url=storage, wrap_meta=fence)
        # PPS resumes its pipelines' masters and workers at once; datums are
        # staged under DATA_DIR/scratch.
        pps = PPS(pfs, scratch_dir=os.path.join(data_dir, "scratch"),
                  role="all" if workers else "master", runner=runner,
                  default_image=default_image, s3_gateways=pfs_datum_gateways(pfs))
    except errors.TuskError as exc:
        print(f"tusk daemon: {exc}", file=sys.stderr)
        return 1
    # Before serving: GC tracks dedup hits from the first writer on.
    collector = Collector(pfs, gc_interval, gc_grace).start()
    from tusk.metrics import DaemonMetrics

    metrics = DaemonMetrics(pps)
    try:
        server, port = serve(pfs, address, registrars=[
            pps_registrar(pps), pachyderm_registrar(pps),
            *(hook(pfs) for hook in EXTRA_SERVICES)], interceptors=[metrics.interceptor()])
    except AddressInUse as exc:
        collector.stop()
        pps.close()
        print(f"tusk daemon: {exc}", file=sys.stderr)
        return 1
    host = address.rsplit(":", 1)[0]
    meta_desc = _describe(pfs.meta, metadata or os.path.join(data_dir, "meta.db"))
    storage_desc = storage or os.path.join(data_dir, "objects")
    notes: list[str] = []
    s3_server, s3_error = _start_s3(pfs, *s3, notes)
    http_server, http_error = _start_http(metrics, *http, pps=pps) if not s3_error else (None, "")
    if s3_error or http_error:
        s3_error = s3_error or http_error
        if s3_server is not None:
            s3_server.close()
        server.stop(0)
        collector.stop()
        pps.close()
        print(f"tusk daemon: {s3_error}", file=sys.stderr)
        return 1
    print(f"tusk daemon listening on {host}:{port} "
          f"(metadata: {meta_desc}, storage: {storage_desc})", file=sys.stderr, flush=True)
    if runner is None and workers:
        _preload_runners()
    for note in notes:
        print(note, file=sys.stderr, flush=True)
    if http_server is not None:
        print(f"tusk daemon: metrics on {http_server.url}/metrics, console on "
              f"{http_server.url}/", file=sys.stderr, flush=True)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        # A timed wait keeps the main thread responsive to signals.
        while not stop.wait(1.0):
            pass
        log.info("stopping (up to %.0f s for in-flight calls)", SHUTDOWN_GRACE)
        if s3_server is not None:
            s3_server.close()
        if http_server is not None:
            http_server.close()
        server.stop(SHUTDOWN_GRACE).wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        collector.stop()
        pps.close()  # after the server: no call can reach PPS any more
        close = getattr(pfs.meta, "close", None)
        if callable(close):
            close()
    return 0


def run_worker(data_dir: str, metadata: str | None, storage: str | None,
               default_image: str = DEFAULT_IMAGE, runner: Runner | None = None,
               claim_ttl: float | None = None) -> int:
    """``tusk worker``: claim and run datum units of every pipeline until
    SIGTERM/SIGINT. Workers are not masters: they never finish commits or
    plan jobs, so any number may run, on any host that reaches the stores.
    ``claim_ttl``: seconds its claims outlive it (None: PPS's default)."""
    from pfs.api import open_pfs
    from pps.api import CLAIM_TTL, PPS
    from tusk.s3.worker_scope import pfs_datum_gateways

    try:
        pfs = open_pfs(data_dir, metadata_url=metadata, storage_url=storage, recover=False)
        pps = PPS(pfs, scratch_dir=os.path.join(data_dir, "scratch", f"worker-{os.getpid()}"),
                  role="worker", default_image=default_image,
                  claim_ttl=claim_ttl if claim_ttl is not None else CLAIM_TTL, runner=runner,
                  s3_gateways=pfs_datum_gateways(pfs))
    except errors.TuskError as exc:
        print(f"tusk worker: {exc}", file=sys.stderr)
        return 1
    print(f"tusk worker {pps.instance} running datums (metadata: "
          f"{_describe(pfs.meta, metadata or data_dir)}, storage: "
          f"{storage or os.path.join(data_dir, 'objects')})", file=sys.stderr, flush=True)
    if runner is None:
        _preload_runners()
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        pps.close()
        pfs.meta.close()
    return 0


def main(argv: list[str]) -> int:
    """Entry point for ``tusk daemon ...`` and ``tusk worker ...`` (argv[0] is the verb)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runner, runner_error = _pick_runner(args.command, args.runner)
    if runner_error:
        print(runner_error, file=sys.stderr)
        return 1
    if args.command == "worker":
        return run_worker(os.path.expanduser(args.data_dir), args.metadata, args.storage,
                          default_image=args.default_image, claim_ttl=args.claim_ttl,
                          runner=runner)
    # Become master for this data before anything touches it (opening the PFS
    # already recovers half-finished commits): see tusk.election.
    from tusk.election import become_master

    if not _bindable(args.address):  # fail now rather than after waiting
        from tusk.server import AddressInUse

        print(f"tusk daemon: {AddressInUse(args.address)}", file=sys.stderr)
        return 1
    data_dir = os.path.expanduser(args.data_dir)
    try:
        master = become_master(args.metadata or os.path.join(data_dir, "meta.db"), args.address,
                               wait=not args.no_wait, ttl=args.master_ttl)
    except errors.TuskError as exc:
        print(f"tusk daemon: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    try:
        return run_daemon(args.data_dir, args.address, args.metadata, args.storage,
                          gc_interval=args.gc_interval, gc_grace=args.gc_grace,
                          default_image=args.default_image, s3=_s3_settings(args),
                          http=_http_settings(args), workers=not args.no_workers,
                          runner=runner, fence=master.fenced)
    finally:
        master.resign()  # last: a successor starts only once this one has stopped


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
