"""Project-level checks: import boundary, lint, and the README's front door."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 lab.py test" in ci


def test_no_unfinished_markers_in_the_package():
    pattern = re.compile(r"raise NotImplementedError|TODO|FIXME|XXX")
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "vmemlab").rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, hits
