"""``/metrics`` of a real ``tusk daemon --http-address``: scraped with urllib,
parsed with prometheus_client's own parser, and checked to move as PFS calls
and a pipeline (Docker) run. Plus the HTTP server's rules (GET/HEAD only,
404, a failing handler answers 500 without a traceback)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemons import DaemonProc, free_port, wait_for
from tusk.http import HTTPServer, Request, Response

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProc, str]]:
    port = free_port()
    d = DaemonProc(tmp_path_factory.mktemp("metrics"),
                   args=["--http-address", f"127.0.0.1:{port}", "--s3-address", "off"])
    d.start()
    url = f"http://127.0.0.1:{port}/metrics"
    # start() waits for the gRPC port; the HTTP server is bound just after it.
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the daemon's /metrics did not answer in 30 s"
            time.sleep(0.05)
    try:
        yield d, url
    finally:
        d.close()


def test_commits_and_api_requests_are_counted(daemon: tuple[DaemonProc, str]) -> None:
    d, url = daemon
    before = scrape(url)
    c = d.client()
    repo = "m" + uuid.uuid4().hex[:8]
    c.create_repo(repo)
    with c.modify_file(repo, "master") as mf:
        mf.put_file("/a.txt", b"hello metrics\n" * 1000)
    with c.modify_file(repo, "master") as mf:  # the same bytes again: deduplicated
        mf.put_file("/b.txt", b"hello metrics\n" * 1000)
    with pytest.raises(Exception):  # noqa: B017  (any typed not-found error)
        c.inspect_repo("no-such-repo-" + repo)
    after = scrape(url)

    assert value(after, "tusk_commits_finished_total", repo_type="user") >= value(
        before, "tusk_commits_finished_total", repo_type="user") + 2
    ok = value(after, "tusk_api_requests_total", service="tusk.pfs.API",
               method="CreateRepo", code="OK")
    assert ok == value(before, "tusk_api_requests_total", service="tusk.pfs.API",
                       method="CreateRepo", code="OK") + 1
    assert value(after, "tusk_api_requests_total", service="tusk.pfs.API",
                 method="InspectRepo", code="NOT_FOUND") >= 1
    assert value(after, "tusk_api_request_duration_seconds_count", service="tusk.pfs.API",
                 method="CreateRepo") >= 1
    assert value(after, "tusk_storage_written_bytes_total") > value(
        before, "tusk_storage_written_bytes_total")
    assert value(after, "tusk_storage_deduplicated_bytes_total") > value(
        before, "tusk_storage_deduplicated_bytes_total")


def test_only_get_and_head(daemon: tuple[DaemonProc, str]) -> None:
    _, url = daemon
    head = urllib.request.Request(url, method="HEAD")
    with urllib.request.urlopen(head, timeout=10) as r:
        assert r.status == 200 and r.read() == b""
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(urllib.request.Request(url, data=b"x", method="POST"), timeout=10)
    assert e.value.code == 405 and e.value.headers["Allow"] == "GET, HEAD"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url.replace("/metrics", "/nope"), timeout=10)
    assert e.value.code == 404


def test_routes_and_a_failing_handler() -> None:
    server = HTTPServer()

    def boom(req: Request) -> Response:
        raise RuntimeError("secret internals")

    server.route(r"/repos/(?P<repo>[^/]+)", lambda r: Response.text(200, r.params["repo"]))
    server.route("/boom", boom)
    port = server.serve("127.0.0.1:0")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/repos/a%20b", timeout=10) as r:
            assert r.read() == b"a b"
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/boom", timeout=10)
        assert e.value.code == 500 and b"secret" not in e.value.read()
    finally:
        server.close()


@pytest.mark.docker
def test_a_pipeline_moves_job_and_datum_series(daemon: tuple[DaemonProc, str],
                                               busybox_image: str, tmp_path: Path) -> None:
    d, url = daemon
    c = d.client()
    repo, pipe = "in" + uuid.uuid4().hex[:8], "up" + uuid.uuid4().hex[:8]
    c.create_repo(repo)
    with c.modify_file(repo, "master") as mf:
        mf.put_file("/a.txt", b"a\n")
        mf.put_file("/b.txt", b"b\n")
    c.create_pipeline({
        "pipeline": {"name": pipe},
        "transform": {"image": busybox_image,
                      "cmd": ["sh", "-c", 'tr a-z A-Z < "$in" > "/pfs/out/$(basename "$in")"']},
        "input": {"pfs": {"repo": repo, "glob": "/*", "name": "in"}},
        "parallelism_spec": {"constant": 2},
    })
    job = c.wait_job(pipe, "master", timeout=120)
    assert job.data_processed == 2
    s = scrape(url)
    assert value(s, "tusk_jobs", pipeline=pipe, state="success") == 1
    assert value(s, "tusk_datums_processed_total", pipeline=pipe) == 2
    assert value(s, "tusk_workers", pipeline=pipe) == 2
    assert value(s, "tusk_queue_depth", pipeline=pipe) == 0
    assert value(s, "tusk_datum_duration_seconds_count", pipeline=pipe, state="success") == 2
    assert value(s, "tusk_commits_finished_total", repo_type="pipeline") >= 1
    assert value(s, "tusk_api_requests_total", service="tusk.pps.API", method="InspectJob",
                 code="OK") >= 1

    # A second commit: one datum runs, one is skipped.
    with c.modify_file(repo, "master") as mf:
        mf.put_file("/a.txt", b"aa\n")
    c.wait_job(pipe, "master", timeout=120)
    wait_for(lambda: value(scrape(url), "tusk_jobs", pipeline=pipe, state="success") == 2,
             10, "the second job in the metrics")
    s = scrape(url)
    assert value(s, "tusk_datums_processed_total", pipeline=pipe) == 3
    assert value(s, "tusk_datums_skipped_total", pipeline=pipe) == 1


def test_the_grafana_dashboard_uses_only_served_series(daemon: tuple[DaemonProc, str]) -> None:
    import json
    import re

    from tests.daemons import ROOT

    dash = json.loads((ROOT / "deploy/grafana/tusk-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\btusk_\w+", e)}
    d, url = daemon
    d.client().create_repo("dash" + uuid.uuid4().hex[:8])  # at least one API call counted
    served = {name for name, _ in scrape(url)}
    missing = used - served - {"tusk_datum_duration_seconds_bucket"}  # only after a datum
    assert not missing, f"the dashboard queries series /metrics does not serve: {missing}"
