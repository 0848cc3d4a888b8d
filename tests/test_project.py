"""Project-level checks: import boundary, lint, and the README's front door."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
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


def test_lab_py_runs_the_command_line_from_the_callers_folder(tmp_path):
    """`python3 lab.py run SCENARIO.toml` is `python -m vmemlab run ...` in the .venv."""
    shutil.copy(ROOT / "scenarios" / "00_happy_path.toml", tmp_path / "s.toml")
    res = subprocess.run([sys.executable, str(ROOT / "lab.py"), "run", "s.toml", "--check"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert res.stdout.startswith("vmemlab run s.toml:")


def test_lab_py_passes_every_cli_subcommand_through():
    from vmemlab.cli import build_parser

    sys.path.insert(0, str(ROOT))
    import lab

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(lab.CLI) == set(sub.choices)


_NO_MATPLOTLIB = """import importlib.abc, sys
class NoMatplotlib(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] == "matplotlib":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoMatplotlib())
from vmemlab.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_run_png_without_matplotlib_says_so_before_running(tmp_path):
    png = tmp_path / "final.png"
    res = subprocess.run([sys.executable, "-c", _NO_MATPLOTLIB, "run",
                          str(ROOT / "scenarios" / "00_happy_path.toml"), "--png", str(png)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "--png" in res.stderr and "needs vmemlab.viz with matplotlib" in res.stderr
    assert res.stdout == "" and not png.exists()          # the scenario never ran


def test_readme_commands_work_from_a_fresh_clone():
    """Every command the README shows runs through lab.py (which sets up the .venv)."""
    readme = (ROOT / "README.md").read_text()
    shell = [ln.strip().removeprefix("$ ") for block in re.findall(
        r"```(?:sh|bash|console)\n(.*?)```", readme, re.S) for ln in block.splitlines()
        if ln.strip().startswith(("$ ", "python"))]
    assert shell and all(ln.startswith("python3 lab.py") for ln in shell), shell
    bare = re.findall(r"(?<!\.venv/bin/)python3? -m vmemlab", readme)
    assert not bare, "python -m vmemlab needs the .venv: write python3 lab.py ..."


_HANG = """\
import subprocess, time
from pathlib import Path

import pytest

@pytest.mark.timeout(2)
def test_ignores_its_timeout():
    child = subprocess.Popen(["sleep", "600"], start_new_session=True)
    Path("child.pid").write_text(str(child.pid))
    try:
        time.sleep(60)
    except BaseException:     # pytest-timeout's Failed, swallowed
        time.sleep(60)
"""


def test_a_test_past_its_timeout_is_stopped_with_what_it_started(tmp_path):
    """pytest-timeout fails it; if it does not end, tests/conftest.py's hard stop does."""
    (tmp_path / "conftest.py").write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n"
        "from tests.conftest import pytest_runtest_protocol  # noqa: F401\n")
    (tmp_path / "test_hang.py").write_text(_HANG)
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "-p", "no:xdist", "test_hang.py"], cwd=tmp_path, text=True,
                         capture_output=True,
                         env={**os.environ, "VMEMLAB_TEST_HARD_GRACE": "2"}, timeout=240)
    assert res.returncode == 3, res.stdout[-2000:] + res.stderr[-2000:]
    assert "test_ignores_its_timeout: still running after 4 s" in res.stderr
    pid = int((tmp_path / "child.pid").read_text())

    def alive() -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
        except OSError:
            return False
    deadline = time.monotonic() + 30
    while alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(), "the test's child process outlived it"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 lab.py test" in ci


def test_no_unfinished_markers_in_the_package():
    pattern = re.compile(r"raise NotImplementedError|TODO|FIXME|XXX")
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "vmemlab").rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, hits
