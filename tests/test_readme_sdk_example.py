# ruff: noqa: F811  (pytest fixtures imported from other test modules are parameters here)
"""The README's Pachyderm SDK example runs as written against a real daemon
(only the port differs), so the README cannot drift from what works."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_cli import Tusk, _env, tusk  # noqa: F401
from tests.test_pps_cli import _needs_docker, busybox_image  # noqa: F401

pytestmark = pytest.mark.docker
README = Path(__file__).resolve().parent.parent / "README.md"


def _example() -> str:
    text = README.read_text()
    section = text[text.index("### Pachyderm's SDK and specs"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's Pachyderm SDK section has no python example"
    return match.group(1)


def test_readme_sdk_example_runs(tusk: Tusk, busybox_image: str) -> None:
    pytest.importorskip("pachyderm_sdk", reason="pachyderm-sdk is a dev dependency")
    code = _example()
    assert 'port=1650' in code
    port = tusk.address.rsplit(":", 1)[1]
    code = code.replace("port=1650", f"port={port}")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=180, env=_env(tusk.address), check=False)
    assert proc.returncode == 0, proc.stderr
    assert "HELLO TUSK" in proc.stdout
