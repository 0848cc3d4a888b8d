"""TraceViewer and HypervisorPanel in a real browser: JupyterLab 4 and Voila, headless Chromium.

Skipped, saying why, without Playwright (the Python package), Debian's
Chromium (/usr/bin/chromium) or Voila.  Each test starts its own server on
a free port (its log goes to server.log in the test's directory) with a
one-cell notebook.  The TraceViewer tests press the slider's arrow key and
check that the kernel-side caption and the heatmap image changed in the
page; the HypervisorPanel tests move the requested-size slider with the
keyboard, click ``qom-set``, and check that the status text says what the
guest did and that the heatmap and the subblock map changed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("needs Chromium (apt-get install chromium)", allow_module_level=True)

TOKEN = "vmemlab-test"
CELL = """\
import vmemlab as vm
from vmemlab.viz import TraceViewer
m = vm.Machine(boot_memory=256 * 4096, geometry="teaching", trace=True)
m.step("boot")
m.alloc_pages(3, "GFP_KERNEL")
m.step("8 kernel pages")
m.activity("anon", size="64k")
m.step("16 anon pages")
TraceViewer(m.trace, zoom="page")
"""
PANEL_CELL = """\
import vmemlab as vm
from vmemlab.viz import HypervisorPanel
m = vm.Machine(boot_memory=256 * 4096, geometry="teaching")
m.add_virtio_mem(region_size="2M")
HypervisorPanel(m)
"""
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]


def _notebook(path: Path, cell: str = CELL) -> Path:
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": "viewer",
                     "metadata": {}, "outputs": [], "source": cell}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                      "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(cmd: list[str], url: str, cwd: Path) -> subprocess.Popen:
    """Start a server; its log goes to a file (a pipe nobody reads would fill and block it)."""
    log = cwd / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[2]} exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise RuntimeError(f"{cmd[2]} did not answer at {url}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def headless() -> Iterator[object]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


def _run_all_cells(page, shows: str = "text=step 0/2: boot", attempts: int = 3) -> None:
    """Run the notebook until ``shows`` appears; retried, as the kernel may still be starting."""
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                           timeout=60_000)
    for _ in range(attempts):
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        try:
            page.locator(shows).first.wait_for(timeout=20_000)
            return
        except sync_api.TimeoutError:
            continue
    raise AssertionError(f"the notebook's cell never showed {shows!r}")


def _step_and_check(page) -> None:
    """Press → on the slider; the caption and the image must change."""
    page.wait_for_selector(".widget-slider .noUi-handle", timeout=60_000)
    caption = page.locator("text=step 0/2: boot")
    caption.wait_for(timeout=60_000)
    image = page.locator(".widget-image").first
    src0 = image.get_attribute("src")
    page.locator(".widget-slider .noUi-handle").first.focus()
    page.keyboard.press("ArrowRight")
    page.locator("text=step 1/2: 8 kernel pages").wait_for(timeout=30_000)
    deadline = time.monotonic() + 10
    while image.get_attribute("src") == src0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert image.get_attribute("src") != src0
    assert "mm_page_alloc: pfn=0x0 order=3" in page.content()


def _image_srcs(page) -> list[str | None]:
    images = page.locator(".widget-image")
    return [images.nth(i).get_attribute("src") for i in range(images.count())]


def _qom_set_and_check(page, label: str = "= 96 KiB", action: str = "96K",
                       plugged: str = "size (plugged) 96 KiB") -> None:
    """Three device blocks more with the keyboard, click qom-set; the guest plugs them."""
    page.locator("text=last action: (none yet)").first.wait_for(timeout=90_000)
    page.wait_for_selector(".widget-slider .noUi-handle", timeout=60_000)
    srcs0 = _image_srcs(page)
    assert len(srcs0) == 3                                  # heatmap, subblocks, chart
    page.locator(".widget-slider .noUi-handle").first.focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    page.locator(f"text={label}").first.wait_for(timeout=30_000)
    page.locator("button:has-text('qom-set')").first.click()
    page.locator(f"text=last action: qom-set vmem0 requested-size {action}").first.wait_for(
        timeout=30_000)
    assert plugged in page.content()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
            a == b for a, b in zip(_image_srcs(page)[:2], srcs0[:2], strict=True)):
        time.sleep(0.1)
    srcs = _image_srcs(page)
    assert srcs[0] != srcs0[0] and srcs[1] != srcs0[1]   # heatmap and subblock map redrawn


@contextlib.contextmanager
def _lab(tmp_path: Path, cell: str) -> Iterator[str]:
    """A JupyterLab server with viewer.ipynb holding ``cell``; yields the notebook's URL."""
    _notebook(tmp_path / "viewer.ipynb", cell)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = _serve([sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
                     f"--port={port}", f"--IdentityProvider.token={TOKEN}",
                     f"--ServerApp.root_dir={tmp_path}", "--ServerApp.port_retries=0",
                     "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
                     "--LabApp.expose_app_in_browser=True",
                     "--allow-root"], f"{base}/api/status?token={TOKEN}", tmp_path)
    try:
        yield f"{base}/lab/tree/viewer.ipynb?token={TOKEN}"
    finally:
        _stop(server)


@contextlib.contextmanager
def _voila(tmp_path: Path, cell: str | None, notebook: str = "viewer.ipynb") -> Iterator[str]:
    """A Voila server rendering ``notebook`` (viewer.ipynb holding ``cell``); yields its URL."""
    pytest.importorskip("voila", reason="needs voila")
    if cell is not None:
        _notebook(tmp_path / notebook, cell)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = _serve([sys.executable, "-m", "voila", notebook, "--no-browser",
                     f"--port={port}", "--Voila.ip=127.0.0.1"], base, tmp_path)
    try:
        yield base
    finally:
        _stop(server)


def test_trace_viewer_steps_in_jupyterlab(headless, tmp_path):
    with _lab(tmp_path, CELL) as url:
        page = headless.new_page()
        page.goto(url)
        _run_all_cells(page)
        _step_and_check(page)
        page.close()


def test_trace_viewer_steps_in_voila(headless, tmp_path):
    with _voila(tmp_path, CELL) as url:
        page = headless.new_page()
        page.goto(url)
        _step_and_check(page)
        assert page.locator(".jp-InputArea").count() == 0      # sources stripped
        page.close()


def test_hypervisor_panel_plugs_in_jupyterlab(headless, tmp_path):
    with _lab(tmp_path, PANEL_CELL) as url:
        page = headless.new_page()
        page.goto(url)
        _run_all_cells(page, shows="text=last action: (none yet)")
        _qom_set_and_check(page)
        page.close()


def test_hypervisor_panel_plugs_in_voila(headless, tmp_path):
    with _voila(tmp_path, PANEL_CELL) as url:
        page = headless.new_page()
        page.goto(url)
        _qom_set_and_check(page)
        assert page.locator(".jp-InputArea").count() == 0      # sources stripped
        page.close()


NOTEBOOK_07 = Path(__file__).resolve().parent.parent / "notebooks" / "07_virtio_mem_driver.ipynb"
# Cells tagged voila-hide (the exercises) stay out of the app: Voila runs nbconvert's
# TagRemovePreprocessor with this configuration (voila.json where Voila starts).
VOILA_JSON = {"TagRemovePreprocessor": {"remove_cell_tags": ["voila-hide"]}}


def test_notebook_07_is_an_app_in_voila(headless, tmp_path):
    """Notebook 07 as the Voila app: prose, figures and the panel; the exercises left out."""
    shutil.copy(NOTEBOOK_07, tmp_path / NOTEBOOK_07.name)
    (tmp_path / "voila.json").write_text(json.dumps(VOILA_JSON))
    with _voila(tmp_path, None, NOTEBOOK_07.name) as url:
        page = headless.new_page()
        page.goto(url, timeout=120_000)
        _qom_set_and_check(page, "= 1030 MiB", "1030M", "size (plugged) 1030 MiB")
        text = page.content()
        assert "The hypervisor panel" in text and "Probe: the driver meets its device" in text
        assert "Exercise 7.1" not in text and "No prediction yet" not in text
        assert "import nb07 as ex" not in text                  # code stripped
        page.close()
