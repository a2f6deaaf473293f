"""The web console in a real browser: headless Chromium (Debian's package)
driven by Playwright, against a real ``tusk daemon`` running a real
two-stage Docker pipeline (``words`` -> ``upper`` -> ``count``), a pipeline
whose datum fails (``broken``), a slow one for live logs (``slow``) and a
10,000-file directory (``many``).

Every page is screenshot to ``$TUSK_SCREENSHOTS`` (default
``<repo>/.screenshots/``, git-ignored); the path is printed once.

Skips (failures when ``CI=true``) say why: no Docker engine, no Chromium at
``/usr/bin/chromium`` (``apt-get install chromium``; ``deploy/services.sh up``
installs it), or no Playwright (``pip install -e .[dev]``).
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemons import ROOT, DaemonProc, free_port, wait_for
from tusk.client import Client

CHROMIUM = os.environ.get("TUSK_CHROMIUM", "/usr/bin/chromium")
IMAGE = "tusk/busybox:latest"
SHOTS = Path(os.environ.get("TUSK_SCREENSHOTS", str(ROOT / ".screenshots")))
MANY = 10_000
# A 1x1 PNG (red pixel).
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de"
    "0000000c4944415408d763f8cfc0000003010100c9fe92ef0000000049454e44ae426082")
HOSTILE = b"<b>bold?</b><script>window.__pwned = 1</script><img src=x onerror=alert(1)>"

#: Loopback only: no proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(why)
    pytest.skip(why)


def _spec(name: str, repo: str, script: str, glob: str = "/*") -> dict[str, Any]:
    return {"pipeline": {"name": name},
            "transform": {"image": IMAGE, "cmd": ["sh", "-c", script]},
            "input": {"pfs": {"repo": repo, "glob": glob}}}


class Site:
    """The daemon, its console's base URL and the IDs the tests visit."""

    def __init__(self, daemon: DaemonProc, base: str, client: Client) -> None:
        self.daemon = daemon
        self.base = base
        self.c = client
        self.ids: dict[str, str] = {}

    def head(self, repo: str) -> str:
        return str(self.c.inspect_commit(repo, "master").commit.id)

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        try:
            with _OPENER.open(self.base + path, timeout=30) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()
        except urllib.error.URLError:
            return 0, {}, b""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    from pps.runners.docker import DockerRunner

    ok, why = DockerRunner().available()
    if not ok:
        _unavailable(f"no Docker engine: run deploy/services.sh up ({why})")
    import subprocess

    build = subprocess.run(["bash", str(ROOT / "deploy/images/build.sh"), "busybox"],
                           check=False, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    port = free_port()
    d = DaemonProc(tmp_path_factory.mktemp("console"),
                   ["--http-address", f"127.0.0.1:{port}", "--s3-address", "off"]).start()
    try:
        c = d.client()
        s = Site(d, f"http://127.0.0.1:{port}", c)
        wait_for(lambda: s.get("/")[0] == 200, 30, "the console to answer")
        c.create_repo("words", description="<i>words</i> & more")
        c.create_pipeline(_spec("upper", "words",
                                'tr a-z A-Z < "$words" > "/pfs/out/$(basename "$words")"'))
        c.create_pipeline(_spec("count", "upper",
                                'wc -c < "$upper" > "/pfs/out/$(basename "$upper")"'))
        c.create_pipeline(_spec("broken", "words",
                                "echo oops-on-stderr >&2; echo fine-on-stdout; exit 3", glob="/"))
        c.put_files("words", "master", {"/a.txt": b"hello\n", "/b.txt": b"world\n"})
        s.ids["first"] = s.head("words")
        c.put_files("words", "master", {
            "/<script>": HOSTILE, "/page.html": HOSTILE, "/table.csv": b"name,n\nx,1\ny,2\n",
            "/doc.json": b'{"k": [1, 2], "s": "<tag>"}', "/dot.png": PNG})
        s.ids["words"] = s.head("words")
        for p in ("upper", "count", "broken"):
            c.wait_job(p, s.ids["words"], timeout=180)
        c.create_repo("many")
        with c.modify_file("many", "master") as mf:
            for i in range(MANY):
                mf.put_file(f"/dir/f{i:05d}.txt", b"%d\n" % i)
        s.ids["many"] = s.head("many")
        c.create_repo("ticks")
        c.create_pipeline(_spec("slow", "ticks",
                                "echo slow-start; sleep 6; echo slow-done", glob="/"))
        SHOTS.mkdir(parents=True, exist_ok=True)
        print(f"\nconsole screenshots: {SHOTS}")
        yield s
    finally:
        d.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("no Playwright for Python: pip install -e '.[dev]'")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        _unavailable(f"no Chromium at {CHROMIUM}: apt-get install chromium "
                     "(deploy/services.sh up installs it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.errors = errors
    yield pg
    ctx.close()


def visit(page: Any, site: Site, path: str, shot: str, status: int = 200) -> Any:
    resp = page.goto(site.base + path)
    assert resp is not None and resp.status == status, (path, resp and resp.status)
    body = page.content()
    assert "Traceback" not in body
    page.screenshot(path=str(SHOTS / f"{shot}.png"), full_page=True)
    return resp


def no_script_errors(page: Any) -> None:
    """The page's own script ran without errors or CSP violations."""
    assert not page.errors, page.errors


# --- the DAG ---------------------------------------------------------------------


def test_dag_shows_repos_pipelines_states_and_links(page: Any, site: Site) -> None:
    visit(page, site, "/projects/default/dag", "dag")
    nodes = page.locator("svg.dag g.node.pipeline")
    names = sorted(nodes.evaluate_all("ns => ns.map(n => n.dataset.pipeline)"))
    assert {"upper", "count", "broken", "slow"} <= set(names)
    assert page.locator("svg.dag g.node.repo", has_text="words").count() == 1
    upper = page.locator('g.node.pipeline[data-pipeline="upper"]')
    assert "job success 7/7" in upper.text_content()
    assert "job failure" in page.locator('g.node.pipeline[data-pipeline="broken"]').text_content()
    # Edges: words -> upper -> count, words -> broken, ticks -> slow.
    assert page.locator("svg.dag polyline.edge").count() >= 4
    upper.click()
    page.wait_for_url("**/pipelines/default/upper")
    assert page.locator("h1").inner_text() == "Pipeline upper"
    no_script_errors(page)


def test_dag_updates_live_without_reload(page: Any, site: Site) -> None:
    visit(page, site, "/projects/default/dag", "dag-before")
    page.evaluate("window.__same_page = 1")
    slow = page.locator('g.node.pipeline[data-pipeline="slow"]')
    before = slow.text_content()
    site.c.put_files("ticks", "master", {"/t1": b"1"})
    # The running job shows up, then its success, without the page reloading.
    page.wait_for_function(
        """() => document.querySelector('g.node.pipeline[data-pipeline="slow"]')
                   .textContent.includes('job running')""", timeout=30_000)
    page.screenshot(path=str(SHOTS / "dag-live-running.png"), full_page=True)
    page.wait_for_function(
        """() => document.querySelector('g.node.pipeline[data-pipeline="slow"]')
                   .textContent.includes('job success 1/1')""", timeout=60_000)
    assert page.evaluate("window.__same_page") == 1
    assert slow.text_content() != before
    width = float(slow.locator('[data-field="bar-p"]').get_attribute("width"))
    assert width > 100  # the bar filled in place
    page.screenshot(path=str(SHOTS / "dag-live-after.png"), full_page=True)
    no_script_errors(page)


# --- PFS -------------------------------------------------------------------------


def test_commit_set_shows_every_commit_and_job(page: Any, site: Site) -> None:
    cid = site.ids["words"]
    visit(page, site, f"/commit-sets/{cid}", "commit-set")
    tables = page.locator("table")
    commits = tables.nth(0).inner_text()
    for repo in ("words", "upper", "count", "broken"):
        assert repo in commits
    assert f"words@{cid[:12]}" in commits  # provenance of upper's commit
    jobs = tables.nth(1).inner_text()
    assert "upper" in jobs and "count" in jobs and "broken" in jobs
    assert "failure" in jobs and "success" in jobs
    page.locator("table").nth(1).get_by_role("link", name="count").first.click()
    page.wait_for_url("**/pipelines/default/count")


def test_repo_branch_and_commit_pages(page: Any, site: Site) -> None:
    visit(page, site, "/repos/default/words", "repo")
    assert "<i>words</i> & more" in page.locator("main p:not(.crumbs)").first.inner_text()
    page.get_by_role("link", name="master", exact=True).first.click()
    page.wait_for_url("**/repos/default/words/branches/master")
    page.screenshot(path=str(SHOTS / "branch.png"), full_page=True)
    history = page.locator("table").inner_text()
    assert history.index(site.ids["words"][:12]) < history.index(site.ids["first"][:12])
    visit(page, site, f"/repos/default/upper/commits/{site.ids['words']}", "commit")
    facts = page.locator("table.facts").inner_text()
    assert f"words@{site.ids['words'][:12]}" in facts  # provenance
    assert f"count@{site.ids['words'][:12]}" in facts  # subvenance
    assert "success" in page.locator("main").inner_text()  # its job


def test_file_browser_previews_and_downloads(page: Any, site: Site) -> None:
    cid = site.ids["words"]
    visit(page, site, f"/repos/default/words/files/{cid}/", "files-dir")
    names = page.locator("table.files tbody tr td:first-child").all_inner_texts()
    assert names == sorted(names) and "table.csv" in names and "<script>" in names
    page.get_by_role("link", name="table.csv").click()
    page.wait_for_url("**/table.csv")
    page.screenshot(path=str(SHOTS / "file-csv.png"), full_page=True)
    assert page.locator("table.csv tbody tr").count() == 2
    assert page.locator("table.csv thead").inner_text().split() == ["name", "n"]
    visit(page, site, f"/repos/default/words/files/{cid}/doc.json", "file-json")
    assert '"k": [\n    1,' in page.locator("pre.file").inner_text()
    visit(page, site, f"/repos/default/words/files/{cid}/a.txt", "file-text")
    assert page.locator("pre.file").inner_text() == "hello\n"
    visit(page, site, f"/repos/default/words/files/{cid}/dot.png", "file-image")
    img = page.locator("img.preview")
    img.evaluate("i => i.decode()")
    assert img.evaluate("i => i.naturalWidth") == 1
    with page.expect_download() as dl:
        page.get_by_role("link", name="download").click()
    assert dl.value.suggested_filename == "dot.png"
    status, headers, body = site.get(f"/repos/default/words/raw/{cid}/a.txt")
    assert status == 200 and body == b"hello\n"
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-disposition"].startswith('attachment; filename="a.txt"')
    status, headers, body = site.get(f"/repos/default/words/raw/{cid}/dot.png")
    assert headers["content-type"] == "image/png" and body == PNG
    no_script_errors(page)


def test_diff_between_two_commits(page: Any, site: Site) -> None:
    old, new = site.ids["first"], site.ids["words"]
    visit(page, site, f"/repos/default/words/diff/{old}/{new}", "diff")
    text = page.locator("table").first.inner_text()
    assert "added" in text and "/table.csv" in text and "/a.txt" not in text
    csv = page.locator("details", has_text="/table.csv")
    csv.locator("summary").click()
    assert "+name,n" in csv.locator("pre.diff").inner_text()


def test_ten_thousand_files_page_200_at_a_time(page: Any, site: Site) -> None:
    cid = site.ids["many"]
    visit(page, site, f"/repos/default/many/files/{cid}/dir/", "files-10000-page1")
    rows = page.locator("table.files tbody tr")
    assert rows.count() == 200
    assert rows.first.inner_text().startswith("f00000.txt")
    assert page.locator("tr").count() < 210  # never all at once
    page.get_by_role("link", name="next →").first.click()
    page.wait_for_url("**after=f00199.txt")
    assert rows.count() == 200 and rows.first.inner_text().startswith("f00200.txt")
    page.screenshot(path=str(SHOTS / "files-10000-page2.png"), full_page=True)
    page.get_by_role("link", name="next →").first.click()
    page.wait_for_url("**after=f00399.txt")
    page.get_by_role("link", name="← previous").first.click()
    page.wait_for_url("**after=f00199.txt")
    assert rows.first.inner_text().startswith("f00200.txt")
    page.get_by_role("link", name="← previous").first.click()
    assert rows.first.inner_text().startswith("f00000.txt")
    visit(page, site, f"/repos/default/many/files/{cid}/dir/?after=f09799.txt", "files-10000-last")
    assert rows.count() == 200 and rows.last.inner_text().startswith("f09999.txt")
    assert page.get_by_role("link", name="next →").count() == 0


# --- PPS -------------------------------------------------------------------------


def test_pipeline_page_spec_versions_and_job_bars(page: Any, site: Site) -> None:
    visit(page, site, "/pipelines/default/upper", "pipeline")
    assert IMAGE in page.locator("pre.spec").first.inner_text()
    jobs = page.locator("table").first
    assert "success" in jobs.inner_text()
    assert "5 processed · 2 skipped · 0 failed / 7" in jobs.inner_text()  # a.txt, b.txt skipped
    assert jobs.locator("svg.bar").count() >= 1
    jobs.get_by_role("link").first.click()
    page.wait_for_url("**/jobs/default/upper/*")
    assert page.locator("h1").inner_text().startswith("Job upper@")


def test_job_page_datums_and_failed_datum_reason_and_stderr(page: Any, site: Site) -> None:
    cid = site.ids["words"]
    visit(page, site, f"/jobs/default/upper/{cid}", "job")
    datums = page.locator("table").nth(1)
    assert datums.locator("tbody tr").count() == 7
    assert "words@" in datums.inner_text() and "success" in datums.inner_text()
    visit(page, site, f"/jobs/default/broken/{cid}", "job-failed")
    failed = page.locator("div.failed")
    assert failed.count() == 1
    assert "oops-on-stderr" in failed.locator("pre").inner_text()
    assert "exit" in failed.locator(".error").inner_text().lower()
    assert "failure" in page.locator("table.facts").inner_text()


def test_logs_follow_a_running_job(page: Any, site: Site) -> None:
    site.c.put_files("ticks", "master", {"/t2": b"2"})
    jid = site.head("slow")
    visit(page, site, f"/jobs/default/slow/{jid}/logs", "logs-following")
    page.evaluate("window.__same_page = 1")
    assert "following" in page.locator("#log-status").inner_text()
    page.wait_for_function(
        "() => document.getElementById('logs').textContent.includes('slow-done')",
        timeout=60_000)
    page.wait_for_function(
        "() => document.getElementById('log-status').textContent === 'finished'",
        timeout=30_000)
    assert page.evaluate("window.__same_page") == 1
    assert "finished: success" in page.locator("#logs").inner_text()
    page.screenshot(path=str(SHOTS / "logs-finished.png"), full_page=True)
    no_script_errors(page)


# --- lineage ---------------------------------------------------------------------


def test_lineage_upstream_to_user_commit_and_downstream(page: Any, site: Site) -> None:
    cid = site.ids["words"]
    visit(page, site, f"/lineage/default/count/{cid}/a.txt", "lineage-upstream")
    tree = page.locator(".tree").first.inner_text()
    # a.txt was computed by the first jobs; the second skipped its datums.
    first = site.ids["first"][:12]
    assert "datum" in tree and f"count@{first}" in tree and f"upper@{first}:/a.txt" in tree
    assert f"user data words@{first}:/a.txt" in tree
    # Collapse and expand the first datum.
    top = page.locator(".tree details").first
    top.locator("summary").first.click()
    assert top.get_attribute("open") is None
    top.locator("summary").first.click()
    assert top.get_attribute("open") is not None
    visit(page, site, f"/lineage/default/words/{cid}/b.txt", "lineage-downstream")
    down = page.locator(".tree").nth(1).inner_text()
    assert "upper@" in down and "count@" in down and "/b.txt" in down


# --- bad input and escaping ---------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/repos/default/nope", "/repos/default/words/branches/nope",
    "/repos/default/words/commits/0123456789abcdef0123456789abcdef",
    "/repos/default/words/files/master/nope.txt", "/commit-sets/0123456789abcdef0123456789abcdef",
    "/pipelines/default/nope", "/jobs/default/upper/0123456789abcdef0123456789abcdef",
    "/jobs/default/nope/x/logs", "/lineage/default/words/master/nope", "/projects/nope/dag",
    "/repos/default/words/raw/master/nope",
])
def test_missing_things_give_a_404_page(page: Any, site: Site, path: str) -> None:
    name = "404" + path.replace("/", "_")
    visit(page, site, path, name, status=404)
    assert page.locator("h1").inner_text() == "Not found"
    assert "not found" in page.locator(".error").inner_text().lower()


def test_names_and_contents_are_shown_as_text(page: Any, site: Site) -> None:
    cid = site.ids["words"]
    visit(page, site, f"/repos/default/words/files/{cid}/", "escaping-dir")
    assert page.get_by_role("link", name="<script>", exact=True).count() == 1
    visit(page, site, f"/repos/default/words/files/{cid}/%3Cscript%3E", "escaping-file")
    assert page.locator("h1").inner_text().endswith(":/<script>")
    assert page.locator("pre.file").inner_text() == HOSTILE.decode()
    visit(page, site, f"/repos/default/words/files/{cid}/page.html", "escaping-html")
    assert page.locator("pre.file").inner_text() == HOSTILE.decode()
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main b").count() == 0 and page.locator("main img").count() == 0
    status, headers, body = site.get(f"/repos/default/words/raw/{cid}/page.html")
    assert status == 200 and body == HOSTILE
    assert headers["content-type"] == "application/octet-stream"
    assert headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]


def test_every_page_carries_the_security_headers(site: Site) -> None:
    cid = site.ids["words"]
    for path in ("/projects/default/dag", "/projects/default/dag.json",
                 f"/repos/default/words/files/{cid}/a.txt", "/pipelines/default/nope"):
        _, headers, _ = site.get(path)
        assert headers["content-security-policy"].startswith("default-src 'none'"), path
        assert headers["x-content-type-options"] == "nosniff", path

