"""The console's pages, one module per area: the DAG, PFS (repos, branches,
commits, commit sets), files (browser, previews, downloads, diffs), PPS
(pipelines, jobs, datums, logs) and lineage. Each page is a function
``(Console, Request) -> Response`` registered by :mod:`tusk.console.routes`.
"""
