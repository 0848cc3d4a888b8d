"""The front door in a real browser: what `python3 lab.py` opens, the Voilà apps, culling.

* ``python3 lab.py`` (in a fresh copy of the repository sharing this
  .venv, with --no-browser as on a headless machine) prints a URL; loaded in
  Chromium it shows notebook 00 from my_notebooks/, with no Launcher, no
  news pop-up and no instructor (nbgrader) menus, and the server logs no
  warning on the way.
* Every Voilà route the README advertises (``voila/render/notebooks/NN``
  on that server, the route Binder's links take) shows an app a student
  can use: the prose and figures, no exercise or code cell, no error,
  widgets that work.  Then the server's log must hold no warning.
* A Voilà page's kernel is shut down when the page closes, and culled when
  the page dies without saying so.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from .browser import (
    CULL_IDLE,
    CULL_INTERVAL,
    ROOT,
    PageProblems,
    free_port,
    jupyter_env,
    kernels,
    play_and_check,
    poll,
    requested_size_and_check,
    require_browser,
    screenshot,
    server,
    voila_url,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]
require_browser()

sys.path.insert(0, str(ROOT / "tools"))
from binder_links import VOILA  # noqa: E402  (the notebooks advertised as Voilà apps)

HIDE = "voila-hide"


# -- python3 lab.py ------------------------------------------------------------------
def fresh_copy(tmp_path: Path) -> Path:
    """The files a student's clone has that lab.py uses, sharing this checkout's .venv."""
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("lab.py", "requirements.txt", "pyproject.toml"):
        shutil.copy(ROOT / name, clone / name)
    for name in ("notebooks", "jupyter-config"):
        shutil.copytree(ROOT / name, clone / name)
    (clone / ".venv").symlink_to(ROOT / ".venv")
    return clone


def printed_url(log: Path) -> str:
    found = re.findall(r"http://127\.0\.0\.1:\d+/\S+", log.read_text())
    return found[-1] if found else ""


@dataclass
class StudentLab:
    """``python3 lab.py --no-browser`` running in a fresh copy: the URL it printed, its log."""

    clone: Path
    url: str
    log: Path

    @property
    def base(self) -> str:
        return self.url.split("/lab/", 1)[0]

    @property
    def token(self) -> str:
        return self.url.rsplit("token=", 1)[1]


@pytest.fixture(scope="module")
def student_lab(tmp_path_factory) -> Iterator[StudentLab]:
    home = tmp_path_factory.mktemp("student")
    clone = fresh_copy(home)
    port = free_port()
    cmd = [sys.executable, str(clone / "lab.py"), "--no-browser", f"--port={port}",
           "--ServerApp.port_retries=0"]
    env = {k: v for k, v in jupyter_env(home).items() if k != "JUPYTER_CONFIG_PATH"}
    log = clone / "server.log"
    with server(cmd, f"http://127.0.0.1:{port}/api", clone, env=env):
        yield StudentLab(clone, str(poll(lambda: printed_url(log), bool, "the URL", 60)), log)
    with pytest.raises(OSError):                             # and it was stopped
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=5)


def test_the_open_command_opens_notebook_00_for_a_student(student_lab, page):
    lab = student_lab
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/lab/tree/my_notebooks/"
                        r"00_start_here\.ipynb\?token=\w+", lab.url), lab.url
    assert (lab.clone / "my_notebooks" / "00_start_here.ipynb").read_bytes() == (
        lab.clone / "notebooks" / "00_start_here.ipynb").read_bytes()
    with PageProblems(page) as problems:
        page.goto(lab.url, wait_until="domcontentloaded", timeout=180_000)
        config = json.loads(page.locator("#jupyter-config-data").text_content(timeout=60_000))
        for plugin in ("@jupyter/nbgrader", "@jupyterlab/apputils-extension:announcements"):
            assert plugin in config["disabledExtensions"], plugin
        tab = page.locator("li.lm-TabBar-tab.jp-mod-current").first
        tab.wait_for(timeout=180_000)
        page.locator(".jp-NotebookPanel .jp-MarkdownOutput h1").first.wait_for(
            timeout=180_000)
        page.locator(".jp-StatusBar-TextItem:has-text('Python 3 (ipykernel) | Idle')").wait_for(
            timeout=180_000)     # the kernel started: every start-up step has run
        assert "00_start_here.ipynb" in tab.inner_text()
        assert page.locator(".jp-Launcher").count() == 0, "the Launcher is open"
        menus = page.locator(".lm-MenuBar-content").first.inner_text()
        assert "File" in menus and "Nbgrader" not in menus, menus
        body = page.inner_text("body")
        assert "Jupyter news" not in body and "Create Assignment" not in body
        screenshot(page, "lab-open-command")
    problems.check()


# -- the Voilà apps ----------------------------------------------------------------
def _lines(cells) -> set[str]:
    """Distinctive lines (20+ characters) of these cells' markdown and saved outputs."""
    text = []
    for cell in cells:
        if cell.cell_type == "markdown":
            text.append(cell.source)
        for out in cell.get("outputs", []):
            text.append("".join(out.get("text", "")) + "".join(
                out.get("data", {}).get("text/plain", "")))
    return {ln.strip().lstrip("#").strip() for chunk in text for ln in chunk.splitlines()
            if len(ln.strip()) >= 20}


def _headings(cells) -> list[str]:
    return [re.sub(r"[`*_]", "", ln.lstrip("#").strip()) for c in cells
            if c.cell_type == "markdown" for ln in c.source.splitlines()
            if ln.startswith("#")]


@pytest.mark.parametrize("name", sorted(VOILA))
def test_the_voila_app_is_one_a_student_can_use(page, student_lab, name):
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    hidden = [c for c in nb.cells if HIDE in c.metadata.get("tags", [])]
    shown = [c for c in nb.cells if HIDE not in c.metadata.get("tags", [])]
    assert hidden, f"{name} hides no cell from its app"
    with PageProblems(page) as problems:
        page.goto(f"{student_lab.base}/voila/render/notebooks/{name}?token={student_lab.token}",
                  timeout=300_000)
        source = "\n".join(c.source for c in shown)
        if "HypervisorPanel(" in source:
            page.locator(".vmemlab-panel").first.wait_for(timeout=300_000)
        body = page.inner_text("body")
        for heading in _headings(shown):
            assert heading in body, f"the app lacks {heading!r}"
        leaked = sorted(ln for ln in (_lines(hidden) | set(_headings(hidden)))
                        - _lines(shown) - set(_headings(shown)) if ln in body)
        assert not leaked, f"the app shows hidden cells: {leaked[:5]}"
        assert "No prediction yet" not in body
        assert page.locator(".jp-CodeCell .jp-InputArea").count() == 0, "code is shown"
        assert "Traceback" not in body
        assert page.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
        if "HypervisorPanel(" in source:
            assert "qom-set" in requested_size_and_check(page)
        if "TraceViewer(" in source:
            play_and_check(page)
        screenshot(page, f"voila-{name[:2]}")
    problems.check()


def test_the_open_command_logs_no_warning(student_lab):
    """Run after the other tests of this module: the lab, the kernel and Voila have run."""
    noise = [ln for ln in student_lab.log.read_text().splitlines()
             if re.search(r"^\[[WE] |Warning|WARNING|not trusted|Traceback", ln)]
    assert not noise, "\n".join(noise)


# -- Voilà kernels do not outlive their page ---------------------------------------
def _one_cell(path: Path) -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print('vmemlab ' + 'culling test')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)
    return path.name


def _open_app(context, base: str, path: str) -> tuple[object, str]:
    """A Voilà page showing ``path``, and the id of the kernel it started."""
    before = set(kernels(base))
    page = context.new_page()
    page.goto(voila_url(base, path), timeout=180_000)
    page.locator("text=vmemlab culling test").first.wait_for(timeout=180_000)
    new = poll(lambda: set(kernels(base)) - before, bool, "the app's kernel", 60)
    assert len(new) == 1, new
    return page, new.pop()


def test_a_voila_kernel_ends_with_its_page(context, lab_server, lab_site):
    name = "widgets/" + _one_cell(lab_site / "widgets" / "cull.ipynb")
    page, kernel = _open_app(context, lab_server, name)
    page.close(run_before_unload=True)       # a tab closed: Voilà asks to shut it down
    poll(lambda: kernel in kernels(lab_server), lambda alive: not alive,
         "the closed page's kernel to shut down", 60)
    page, kernel = _open_app(context, lab_server, name)
    closed = time.monotonic()
    page.close(run_before_unload=False)      # a tab that died: no word to the server
    bound = CULL_IDLE + 2 * CULL_INTERVAL + 30
    poll(lambda: kernel in kernels(lab_server), lambda alive: not alive,
         "the dead page's kernel to be culled", bound, every=1)
    assert time.monotonic() - closed >= CULL_IDLE - CULL_INTERVAL, "gone before culling"


def test_the_shipped_configuration_culls_and_hides():
    config = json.loads((ROOT / "jupyter-config" / "jupyter_server_config.json").read_text())
    cull = config["MappingKernelManager"]
    assert 0 < cull["cull_idle_timeout"] <= 900 and 0 < cull["cull_interval"] <= 120
    assert cull["cull_connected"] is False       # a page still open keeps its kernel
    assert config["TagRemovePreprocessor"]["remove_cell_tags"] == [HIDE]
    assert config["VoilaConfiguration"]["strip_sources"] is True
