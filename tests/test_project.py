"""Project-level checks: import boundary, lint, and the README's front door."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_import_vmemlab_pulls_no_plotting_or_widgets():
    code = ("import sys, vmemlab, vmemlab.machine, vmemlab.workload; "
            "bad = [m for m in ('matplotlib', 'ipywidgets', 'IPython') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_ruff_is_clean():
    res = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr


def test_readme_has_exactly_two_setup_commands():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```(?:sh|bash|console)?\n(.*?)```", readme, re.S)
    assert block, "README must open with a code block holding the two commands"
    commands = [ln for ln in block[1].splitlines() if ln.strip() and not ln.startswith("#")]
    assert [c.split("#")[0].strip() for c in commands] == ["python3 lab.py",
                                                           "python3 lab.py test"]


def test_the_open_command_serves_the_start_notebook(tmp_path):
    """`python3 lab.py` (here with --no-browser) starts JupyterLab on 00_start_here."""
    from .browser import free_port, server

    port, token = free_port(), "vmemlab-front-door"
    cmd = [sys.executable, str(ROOT / "lab.py"), "--no-browser", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}"]
    # Given a file, JupyterLab serves its folder (notebooks/) and opens the file.
    url = f"http://127.0.0.1:{port}/api/contents/00_start_here.ipynb"
    query = f"{url}?content=0&token={token}"
    with (server(cmd, query, tmp_path, timeout=120),       # entered in order: server first
          urllib.request.urlopen(query, timeout=10) as reply):
        assert json.load(reply)["type"] == "notebook"
    with pytest.raises(OSError):                             # and it was stopped
        urllib.request.urlopen(query, timeout=5)
    log = (tmp_path / "server.log").read_text()
    assert "Running as root is not recommended" not in log, log[-1000:]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 lab.py test" in ci


def test_no_unfinished_markers_in_the_package():
    pattern = re.compile(r"raise NotImplementedError|TODO|FIXME|XXX")
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "vmemlab").rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, hits
