"""TraceViewer in a real browser: JupyterLab 4 and Voila, driven by headless Chromium.

Skipped, saying why, without Playwright (the Python package), Debian's
Chromium (/usr/bin/chromium) or Voila.  Each test starts its own server on
a free port with a notebook that records three frames, presses the slider's
arrow key and checks that the kernel-side caption and the heatmap image
changed in the page.
"""

from __future__ import annotations

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
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]


def _notebook(path: Path) -> Path:
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": "viewer",
                     "metadata": {}, "outputs": [], "source": CELL}],
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


def _run_all_cells(page, attempts: int = 3) -> None:
    """Run the notebook until its output shows; retried, as the kernel may still be starting."""
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                           timeout=60_000)
    for _ in range(attempts):
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        try:
            page.locator("text=step 0/2: boot").wait_for(timeout=20_000)
            return
        except sync_api.TimeoutError:
            continue
    raise AssertionError("the TraceViewer cell produced no output")


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


def test_trace_viewer_steps_in_jupyterlab(headless, tmp_path):
    _notebook(tmp_path / "viewer.ipynb")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = _serve([sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
                     f"--port={port}", f"--IdentityProvider.token={TOKEN}",
                     f"--ServerApp.root_dir={tmp_path}", "--ServerApp.port_retries=0",
                     "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
                     "--LabApp.expose_app_in_browser=True",
                     "--allow-root"], f"{base}/api/status?token={TOKEN}", tmp_path)
    try:
        page = headless.new_page()
        page.goto(f"{base}/lab/tree/viewer.ipynb?token={TOKEN}")
        _run_all_cells(page)
        _step_and_check(page)
        page.close()
    finally:
        _stop(server)


def test_trace_viewer_steps_in_voila(headless, tmp_path):
    pytest.importorskip("voila", reason="needs voila")
    _notebook(tmp_path / "viewer.ipynb")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    server = _serve([sys.executable, "-m", "voila", "viewer.ipynb", "--no-browser",
                     f"--port={port}", "--Voila.ip=127.0.0.1"], base, tmp_path)
    try:
        page = headless.new_page()
        page.goto(base)
        _step_and_check(page)
        assert page.locator(".jp-InputArea").count() == 0      # sources stripped
        page.close()
    finally:
        _stop(server)
