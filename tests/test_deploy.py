"""``deploy/`` stays true to the daemon.

The Kubernetes manifests and the compose file are never applied in CI (no
image registry, no cluster), so nothing else notices when they rot. Here,
offline and in milliseconds:

* every Kubernetes document validates against the schema of a pinned
  Kubernetes release (``kubernetes-validate``, which ships the schemas;
  strict, so a misspelt field fails too), and the compose file against the
  Compose Specification's schema (the copy ``check-jsonschema`` ships);
* every ``tusk`` command line in them parses with tusk's own parsers (the
  ones ``tusk.entry`` dispatches to), with the ``TUSK_*`` variables the
  container sets in the environment, so a renamed flag fails here; their
  store URLs parse with the real URL parsers and name services of the same
  file, on ports those services declare;
* ports, images and S3 credentials agree across containers and files;
* the node's (or host's) Docker socket is mounted only into a tusk
  process started with ``--runner=docker``, with a comment next to the
  mount saying so and what to do instead.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S_FILES = sorted((DEPLOY / "k8s").glob("*.yaml"))
COMPOSE_FILE = DEPLOY / "docker-compose.yml"

#: The Kubernetes release the manifests must be valid for: the oldest minor
#: still maintained upstream when kubernetes-validate 1.37.0 (pyproject.toml)
#: came out, so a field newer than what most clusters run fails here.
KUBERNETES_VERSION = "1.35.0"
#: The image tusk itself runs from (the other images are etcd, MinIO, ...).
TUSK_IMAGE = "tusk:latest"
DOCKER_SOCKET = "/var/run/docker.sock"
#: Kinds whose spec holds a pod template (CronJob's is one level deeper).
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


# --- what the files hold ------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    """A path in a container and, for a bind of the node's (host's) own files,
    the path there (None for a volume Kubernetes or Docker manages)."""

    path: str
    host_path: str | None


@dataclass
class Container:
    """One container of a manifest or compose file, in terms both share."""

    where: str  # "deploy/k8s/tusk.yaml Deployment/tusk container tusk"
    source: str  # "k8s:FILE" or "compose"
    image: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # literal values only
    env_refs: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> secret, key
    env_secrets: list[str] = field(default_factory=list)  # envFrom secretRefs
    mounts: list[Mount] = field(default_factory=list)
    ports: dict[int, str | None] = field(default_factory=dict)  # container port -> name
    annotations: dict[str, str] = field(default_factory=dict)  # pod's, or compose labels

    def __str__(self) -> str:
        return self.where


def k8s_documents(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def _pod_templates(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    kind = doc.get("kind")
    if kind == "Pod":
        yield doc
    elif kind in POD_TEMPLATE_KINDS:
        yield doc["spec"]["template"]
    elif kind == "CronJob":
        yield doc["spec"]["jobTemplate"]["spec"]["template"]


def _pod_volumes(doc: dict[str, Any], pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The volumes a pod's containers may mount: its own and its claim templates."""
    claims = doc["spec"].get("volumeClaimTemplates", []) if doc["kind"] == "StatefulSet" else []
    return {**{c["metadata"]["name"]: {"persistentVolumeClaim": {}} for c in claims},
            **{v["name"]: v for v in pod.get("volumes", [])}}


def k8s_containers(path: Path) -> list[Container]:
    out = []
    for doc in k8s_documents(path):
        for template in _pod_templates(doc):
            pod = template["spec"]
            volumes = _pod_volumes(doc, pod)
            for c in [*pod.get("initContainers", []), *pod["containers"]]:
                container = Container(
                    where=f"{path.relative_to(ROOT)} {doc['kind']}/{doc['metadata']['name']} "
                          f"container {c['name']}",
                    source=f"k8s:{path.name}",
                    image=c["image"],
                    argv=[*c.get("command", []), *c.get("args", [])],
                    annotations=template.get("metadata", {}).get("annotations", {}),
                )
                for e in c.get("env", []):
                    if "value" in e:
                        container.env[e["name"]] = str(e["value"])
                    elif "secretKeyRef" in e.get("valueFrom", {}):
                        ref = e["valueFrom"]["secretKeyRef"]
                        container.env_refs[e["name"]] = (ref["name"], ref["key"])
                    else:
                        container.env[e["name"]] = "<from the pod>"
                container.env_secrets = [
                    e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e]
                for m in c.get("volumeMounts", []):
                    # An unknown volume is test_k8s_mounts_name_volumes's to report.
                    host = volumes.get(m["name"], {}).get("hostPath", {}).get("path")
                    container.mounts.append(Mount(m["mountPath"], host))
                container.ports = {p["containerPort"]: p.get("name")
                                   for p in c.get("ports", [])}
                out.append(container)
    return out


def compose_file() -> dict[str, Any]:
    with COMPOSE_FILE.open() as f:
        doc: dict[str, Any] = yaml.safe_load(f)
    return doc


def _words(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def compose_containers() -> list[Container]:
    out = []
    for name, svc in compose_file()["services"].items():
        env = svc.get("environment", {})
        if isinstance(env, list):
            env = dict(item.partition("=")[::2] for item in env)
        container = Container(
            where=f"{COMPOSE_FILE.relative_to(ROOT)} service {name}",
            source="compose",
            image=svc.get("image", ""),
            argv=[*_words(svc.get("entrypoint")), *_words(svc.get("command"))],
            env={k: str(v) for k, v in env.items()},
            annotations=svc.get("labels", {}),
        )
        for v in svc.get("volumes", []):
            if isinstance(v, str):
                source, _, rest = v.partition(":")
                target = rest.split(":")[0]
                kind = "bind" if source.startswith(("/", ".", "~")) else "volume"
            else:
                source, target, kind = v.get("source", ""), v["target"], v["type"]
            container.mounts.append(Mount(target, source if kind == "bind" else None))
        for p in svc.get("ports", []):
            target = p["target"] if isinstance(p, dict) else str(p).rsplit(":", 1)[-1]
            container.ports[int(str(target).split("/")[0])] = None
        out.append(container)
    return out


def all_containers() -> list[Container]:
    return [c for path in K8S_FILES for c in k8s_containers(path)] + compose_containers()


def tusk_containers() -> list[Container]:
    return [c for c in all_containers() if c.argv and os.path.basename(c.argv[0]) == "tusk"]


# --- tusk's own parsers ---------------------------------------------------------


def _exact(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``parser`` and its subcommands' parsers without prefix matching: a file
    that says ``--http-addr`` breaks the day another flag starts so too."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _exact(sub)
    return parser


_K8S_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def parse_tusk(container: Container) -> argparse.Namespace:
    """Parse the container's tusk command line as ``tusk.entry.main`` would,
    with the ``TUSK_*`` variables it sets (flags' defaults read them) and no
    others; fails the test with argparse's message when it does not parse."""
    argv = container.argv[1:]
    saved = {k: v for k, v in os.environ.items() if k.startswith("TUSK_")}
    for k in saved:
        del os.environ[k]
    os.environ.update({k: v for k, v in container.env.items() if k.startswith("TUSK_")})
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            if argv and argv[0] in ("daemon", "worker"):  # tusk.entry's dispatch
                from tusk.daemon import build_parser as server_parser

                return _exact(server_parser()).parse_args(argv)
            from cli.common import UsageError
            from cli.main import build_parser as cli_parser

            try:
                return _exact(cli_parser()).parse_args(argv)
            except UsageError as exc:
                raise SystemExit(str(exc)) from exc
    except SystemExit as exc:
        pytest.fail(f"{container}: `tusk {shlex.join(argv)}` does not parse: "
                    f"{(err.getvalue().strip().splitlines() or [str(exc)])[-1]}")
    finally:
        for k in [k for k in os.environ if k.startswith("TUSK_")]:
            del os.environ[k]
        os.environ.update(saved)


def env_names_tusk_reads(verb: str) -> set[str]:
    """The ``TUSK_*`` names in the source of what ``tusk VERB`` runs."""
    if verb in ("daemon", "worker"):
        sources = [ROOT / "tusk" / "daemon.py"]
    else:
        sources = [*sorted((ROOT / "cli").glob("*.py")), ROOT / "tusk" / "client.py"]
    return {m for src in sources for m in re.findall(r"\"(TUSK_[A-Z0-9_]+)\"", src.read_text())}


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


@dataclass(frozen=True)
class Stores:
    metadata_endpoint: str  # HOST:PORT of etcd
    s3_endpoint: str  # HOST:PORT of the S3 server
    bucket: str


def parse_stores(args: argparse.Namespace, monkeypatch: pytest.MonkeyPatch) -> Stores:
    """``--metadata`` and ``--storage`` through the real URL parsers, with the
    etcd and S3 stores' constructors (which connect) replaced by recorders."""
    import pfs.metadata_etcd
    import pfs.objects_s3
    from pfs.metadata import open_metadata_store
    from pfs.objects import open_object_store

    seen: dict[str, Any] = {}

    class Etcd:
        def __init__(self, endpoint: str, prefix: str = "") -> None:
            seen["etcd"] = endpoint

    class S3:
        def __init__(self, endpoint: str, bucket: str, **kwargs: Any) -> None:
            seen["s3"] = (endpoint, bucket)

    monkeypatch.setattr(pfs.metadata_etcd, "EtcdMetadataStore", Etcd)
    monkeypatch.setattr(pfs.objects_s3, "S3ObjectStore", S3)
    assert args.metadata and args.storage, "a deployment names its stores (etcd and S3)"
    open_metadata_store(args.metadata)
    open_object_store(args.storage)
    assert "etcd" in seen, f"--metadata={args.metadata} is not etcd"
    assert "s3" in seen, f"--storage={args.storage} is not S3"
    return Stores(seen["etcd"], seen["s3"][0], seen["s3"][1])


# --- schemas --------------------------------------------------------------------


K8S_DOCUMENTS = [
    pytest.param(doc, id=f"{path.name}:{doc['kind']}/{doc['metadata']['name']}")
    for path in K8S_FILES for doc in k8s_documents(path)
]


def test_there_is_something_to_check() -> None:
    assert K8S_FILES and COMPOSE_FILE.exists()
    assert tusk_containers(), "no tusk command line found in deploy/"


@pytest.mark.parametrize("doc", K8S_DOCUMENTS)
def test_k8s_document_is_valid(doc: dict[str, Any]) -> None:
    problem = ""
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        # Outside the handler: the schema in the chained traceback runs to pages.
        problem = f"{exc.message} at {'.'.join(map(str, exc.path)) or '(top)'}"
    if problem:
        pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} is not valid Kubernetes "
                    f"{KUBERNETES_VERSION}: {problem}")


def test_compose_file_is_valid() -> None:
    text = (files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text()
    schema = json.loads(text)
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    errors = [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
              for e in validator.iter_errors(compose_file())]
    assert not errors, f"{COMPOSE_FILE.relative_to(ROOT)} breaks the Compose Specification:\n" \
        + "\n".join(errors)


# --- tusk's command lines -----------------------------------------------------


@pytest.mark.parametrize("container", tusk_containers(), ids=str)
def test_tusk_command_line_parses(container: Container) -> None:
    args = parse_tusk(container)
    verb = container.argv[1]
    unknown = {k for k in container.env if k.startswith("TUSK_")} - env_names_tusk_reads(verb)
    assert not unknown, f"{container}: tusk {verb} reads no {', '.join(sorted(unknown))}"
    if container.source.startswith("k8s"):
        # Kubernetes leaves an undefined $(VAR) as it is, silently.
        refs = {v for word in container.argv for v in _K8S_VAR.findall(word)}
        missing = refs - set(container.env) - set(container.env_refs)
        assert not missing, f"{container}: $({', '.join(sorted(missing))}) is not in its env"
    if verb in ("daemon", "worker"):
        assert args.runner != "auto", (
            f"{container}: pass --runner (docker or process) so the deployment says which "
            "runner it needs (auto looks for a Docker engine)")


def test_every_tusk_image_runs_a_tusk_command() -> None:
    for c in all_containers():
        if c.image == TUSK_IMAGE:
            assert c in tusk_containers(), f"{c}: runs the tusk image without a tusk command"


def _daemons(source: str) -> list[tuple[Container, argparse.Namespace]]:
    return [(c, args) for c in tusk_containers() if c.source == source
            for args in [parse_tusk(c)] if args.command == "daemon"]


def _servers(source: str) -> list[tuple[Container, argparse.Namespace]]:
    return [(c, args) for c in tusk_containers() if c.source == source
            for args in [parse_tusk(c)] if args.command in ("daemon", "worker")]


SOURCES = [f"k8s:{p.name}" for p in K8S_FILES] + ["compose"]


@pytest.mark.parametrize("source", SOURCES)
def test_daemon_listens_on_declared_ports(source: str) -> None:
    daemons = _daemons(source)
    assert len(daemons) == 1, f"{source}: one tusk daemon (the master), not {len(daemons)}"
    c, args = daemons[0]
    for flag, address in (("--address", args.address), ("--http-address", args.http_address)):
        assert address, f"{c}: {flag} is needed: the default listens on loopback only"
        host, port = host_port(address)
        assert host in ("0.0.0.0", "", "[::]"), f"{c}: {flag}={address} is not reachable"
        assert port in c.ports, f"{c}: {flag}={address} but the container declares no port {port}"
    _, metrics_port = host_port(args.http_address)
    if "prometheus.io/port" in c.annotations:
        assert int(c.annotations["prometheus.io/port"]) == metrics_port, \
            f"{c}: Prometheus scrapes a port the daemon does not serve /metrics on"


@pytest.mark.parametrize("source", SOURCES)
def test_stores_are_services_of_the_same_file(source: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    servers = _servers(source)
    stores = {c.where: parse_stores(args, monkeypatch) for c, args in servers}
    assert len(set(stores.values())) == 1, f"daemon and workers must share their stores: {stores}"
    store = next(iter(stores.values()))
    services = k8s_service_ports(source) if source.startswith("k8s") else compose_services()
    for what, endpoint in (("etcd", store.metadata_endpoint), ("S3", store.s3_endpoint)):
        host, port = host_port(endpoint)
        assert host in services, f"{source}: the {what} endpoint {endpoint} is no service there"
        if source.startswith("k8s"):
            assert port in services[host], f"{source}: Service {host} has no port {port}"


def test_compose_prometheus_scrapes_the_daemon() -> None:
    compose = compose_file()
    (c, args), = _daemons("compose")
    service = c.where.rsplit(" ", 1)[-1]
    _, port = host_port(args.http_address)
    targets = {t for cfg in compose.get("configs", {}).values() if "content" in cfg
               for job in yaml.safe_load(cfg["content"]).get("scrape_configs", [])
               for sc in job.get("static_configs", []) for t in sc["targets"]}
    assert targets == {f"{service}:{port}"}, \
        f"Prometheus scrapes {targets}, the daemon serves /metrics on {service}:{port}"


def k8s_service_ports(source: str) -> dict[str, set[int]]:
    path = DEPLOY / "k8s" / source.removeprefix("k8s:")
    return {doc["metadata"]["name"]: {p["port"] for p in doc["spec"]["ports"]}
            for doc in k8s_documents(path) if doc["kind"] == "Service"}


def compose_services() -> dict[str, set[int]]:
    return {name: set() for name in compose_file()["services"]}


@pytest.mark.parametrize("path", K8S_FILES, ids=lambda p: p.name)
def test_k8s_services_reach_declared_ports(path: Path) -> None:
    docs = k8s_documents(path)
    templates = [t for doc in docs for t in _pod_templates(doc)]
    for svc in (d for d in docs if d["kind"] == "Service"):
        selector = svc["spec"]["selector"]
        pods = [t for t in templates
                if selector.items() <= t.get("metadata", {}).get("labels", {}).items()]
        assert pods, f"Service {svc['metadata']['name']} selects no pod of {path.name}"
        declared = {p.get(k) for t in pods for c in t["spec"]["containers"]
                    for p in c.get("ports", []) for k in ("containerPort", "name")}
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert target in declared, \
                f"Service {svc['metadata']['name']} sends port {port['port']} to {target}, " \
                "which its pods do not declare"
        for key in ("prometheus.io/port",):
            value = svc["metadata"].get("annotations", {}).get(key)
            if value is not None:
                assert int(value) in {p["port"] for p in svc["spec"]["ports"]}, \
                    f"Service {svc['metadata']['name']}: {key}={value} is none of its ports"


@pytest.mark.parametrize("path", K8S_FILES, ids=lambda p: p.name)
def test_k8s_mounts_name_volumes(path: Path) -> None:
    for doc in k8s_documents(path):
        for template in _pod_templates(doc):
            volumes = _pod_volumes(doc, template["spec"])
            for c in template["spec"]["containers"]:
                for m in c.get("volumeMounts", []):
                    assert m["name"] in volumes, \
                        f"{doc['metadata']['name']}/{c['name']} mounts no volume {m['name']!r}"


def _secret_keys(path: Path) -> dict[str, set[str]]:
    return {d["metadata"]["name"]: {*d.get("stringData", {}), *d.get("data", {})}
            for d in k8s_documents(path) if d["kind"] == "Secret"}


@pytest.mark.parametrize("source", SOURCES)
def test_s3_credentials_are_minios(source: str) -> None:
    """tusk signs with the keys MinIO was started with (one place to change them)."""
    minio = [c for c in all_containers() if c.source == source and "minio" in c.image]
    assert len(minio) == 1, f"{source}: one MinIO"
    if source == "compose":
        for c, _ in _servers(source):
            assert c.env.get("AWS_ACCESS_KEY_ID") == minio[0].env["MINIO_ROOT_USER"]
            assert c.env.get("AWS_SECRET_ACCESS_KEY") == minio[0].env["MINIO_ROOT_PASSWORD"]
        return
    keys = _secret_keys(DEPLOY / "k8s" / source.removeprefix("k8s:"))
    user = minio[0].env_refs["MINIO_ROOT_USER"]
    password = minio[0].env_refs["MINIO_ROOT_PASSWORD"]
    assert user[1] in keys[user[0]] and password[1] in keys[password[0]]
    for c, _ in _servers(source):
        # envFrom: the Secret's keys become the container's variables.
        assert user[0] in c.env_secrets and user[1] == "AWS_ACCESS_KEY_ID", c
        assert password[0] in c.env_secrets and password[1] == "AWS_SECRET_ACCESS_KEY", c


def test_images_agree_across_files() -> None:
    by_name: dict[str, set[str]] = {}
    for c in all_containers():
        name = c.image.rsplit("/", 1)[-1].split(":")[0]
        by_name.setdefault(name, set()).add(c.image)
    different = {name: images for name, images in by_name.items() if len(images) > 1}
    assert not different, f"the same program from different images: {different}"
    assert TUSK_IMAGE in {c.image for c in tusk_containers()}


# --- the Docker socket ------------------------------------------------------------


def _is_docker_socket(path: str | None) -> bool:
    return path is not None and path.rstrip("/").endswith("docker.sock")


@pytest.mark.parametrize("container", all_containers(), ids=str)
def test_docker_socket_only_for_the_docker_runner(container: Container) -> None:
    socket_mounts = [m for m in container.mounts
                     if _is_docker_socket(m.host_path) or _is_docker_socket(m.path)]
    args = parse_tusk(container) if container in tusk_containers() else None
    runner = getattr(args, "runner", None)
    if socket_mounts:
        assert runner == "docker", (
            f"{container} mounts the Docker socket but does not run the docker runner "
            f"(--runner={runner}): nothing else in tusk needs it")
        assert all(m.path == DOCKER_SOCKET for m in socket_mounts), container
    if runner != "docker":
        return
    assert socket_mounts or "DOCKER_HOST" in container.env, \
        f"{container}: --runner=docker without an engine's socket or DOCKER_HOST"
    assert args is not None
    # The engine resolves the runner's bind mounts (under DATA_DIR/scratch) on
    # the node, so the data directory must be at the same path there.
    data_dir = args.data_dir
    same_path = [m for m in container.mounts
                 if m.host_path == m.path and (data_dir + "/").startswith(m.path.rstrip("/") + "/")]
    assert same_path, (f"{container}: --runner=docker needs --data-dir={data_dir} on a hostPath "
                       "(bind) mount at the same path on the node")


def _comment_block_above(lines: list[str], i: int) -> str:
    """The comment on line ``i`` and the comment lines right above it, or
    above the list item line ``i`` belongs to (``- name: x`` / ``hostPath: ...``)."""
    j = i
    while j > 0 and not lines[j].lstrip().startswith("- ") \
            and not lines[j - 1].lstrip().startswith("#"):
        j -= 1
    if j != i and lines[j].lstrip().startswith("- "):
        i = j
    block = [lines[i].partition("#")[2]] if "#" in lines[i] else []
    j = i - 1
    while j >= 0 and lines[j].lstrip().startswith("#"):
        block.insert(0, lines[j].lstrip()[1:])
        j -= 1
    return " ".join(" ".join(block).split())


@pytest.mark.parametrize("path", [*K8S_FILES, COMPOSE_FILE], ids=lambda p: p.name)
def test_docker_socket_mounts_say_why(path: Path) -> None:
    lines = path.read_text().splitlines()
    found = 0
    for i, line in enumerate(lines):
        if "docker.sock" not in line.partition("#")[0]:
            continue
        found += 1
        why = _comment_block_above(lines, i).lower()
        assert "only for the docker runner" in why and "--runner=process" in why, (
            f"{path.relative_to(ROOT)}:{i + 1} mounts the Docker socket; the comment right "
            "above it must say it is only for the docker runner and that --runner=process "
            f"does without it (found: {why!r})")
    assert found, f"{path.relative_to(ROOT)} mounts no Docker socket: drop this check's case"


# --- the --runner flag the files pass --------------------------------------------


def test_runner_flag_names_a_runner() -> None:
    from pps.runners import RUNNER_NAMES, RunnerUnavailable, runner_named

    assert set(RUNNER_NAMES) == {"auto", "docker", "process"}
    with pytest.raises(ValueError, match="unknown runner"):
        runner_named("podman")
    try:
        runner = runner_named("process")
    except RunnerUnavailable as exc:
        assert set(exc.reasons) == {"process"}  # never falls back to docker
    else:
        assert runner.name == "process"


def test_explicit_runner_is_checked_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from tusk import daemon

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    rc = daemon.main(["worker", "--runner", "docker", "--data-dir", str(tmp_path)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "--runner docker" in err and "the docker runner cannot run user code here" in err
