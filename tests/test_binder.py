"""Binder: repo2docker accepts binder/, and the README's launch links are right.

``repo2docker --no-build`` renders the Dockerfile Binder would build,
without Docker: it must pick Python 3.11 from runtime.txt, keep the kernel
in the same environment as JupyterLab (or widgets would not render), and
install binder/requirements.txt.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from binder_links import BEGIN, END, binder_url, repository, updated_readme  # noqa: E402

REQUIREMENT_OF = {"vmemlab": "-e .", "numpy": "numpy", "matplotlib": "matplotlib",
                  "ipywidgets": "ipywidgets", "IPython": "ipywidgets"}  # ipywidgets needs IPython


def test_repo2docker_renders_the_binder_image():
    exe = shutil.which("jupyter-repo2docker", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("needs jupyter-repo2docker (in requirements.txt)")
    proc = subprocess.run([exe, "--no-build", "--debug", str(ROOT)], capture_output=True,
                          text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Building conda environment for python=3.11" in out
    assert "ENV KERNEL_PYTHON_PREFIX=${NB_PYTHON_PREFIX}" in out
    assert 'pip install --no-cache-dir -r "binder/requirements.txt"' in out
    assert 'ENV R2D_ENTRYPOINT="${REPO_DIR}/binder/start"' in out   # jupyter-config/ applies


def test_binder_start_puts_the_lab_configuration_first():
    """binder/start exports what lab.py sets: jupyter-config/ first on JUPYTER_CONFIG_PATH."""
    out = subprocess.run(["bash", str(ROOT / "binder/start"), "bash", "-c",
                          "echo $JUPYTER_CONFIG_PATH"], capture_output=True, text=True,
                         env={"JUPYTER_CONFIG_PATH": "/etc/x", "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == f"{ROOT / 'jupyter-config'}:/etc/x", out.stderr


def test_binder_requirements_cover_every_notebook_import():
    lines = {line.split(">=")[0].strip()
             for line in (ROOT / "binder/requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")}
    assert (ROOT / "binder/runtime.txt").read_text().strip() == "python-3.11"
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                         if c["cell_type"] == "code")
        for top in set(re.findall(r"^\s*(?:from|import)\s+(\w+)", code, re.M)):
            if top in sys.stdlib_module_names:
                continue
            assert REQUIREMENT_OF.get(top) in lines, f"{path.name} imports {top}"


def test_readme_links_every_notebook_from_one_repository_url():
    text = (ROOT / "README.md").read_text()
    assert text == updated_readme(), "README notebook table is stale: run tools/binder_links.py"
    section = text.split(BEGIN, 1)[1].split(END, 1)[0]
    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    for name in notebooks:
        assert binder_url(f"notebooks/{name}") in section
    assert len(re.findall(r"mybinder\.org/v2/gh/([\w.-]+/[\w.-]+)/", section)) >= len(notebooks)
    assert set(re.findall(r"mybinder\.org/v2/gh/([\w.-]+/[\w.-]+)/", section)) == {repository()}


def test_binder_url_encodes_the_path():
    url = binder_url("notebooks/07_virtio_mem_driver.ipynb", "voila/render")
    assert url.endswith("?urlpath=voila%2Frender%2Fnotebooks%2F07_virtio_mem_driver.ipynb")
