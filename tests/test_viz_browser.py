"""TraceViewer and HypervisorPanel in a real browser: JupyterLab 4 and Voila, headless Chromium.

Skipped, saying why, without Playwright (the Python package), Debian's
Chromium (/usr/bin/chromium) or Voila.  Each test opens a one-cell notebook
on the session's JupyterLab server (tests/conftest.py), in the shared
JupyterLab page or as a Voila app; tests/test_browser_notebooks.py drives
the real notebooks.  The TraceViewer tests press the slider's arrow key and
check that the kernel-side caption and the heatmap image changed in the
page; the HypervisorPanel tests move the requested-size slider with the
keyboard, click ``qom-set``, and check that the status text says what the
guest did and that the heatmap and the subblock map changed.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from .browser import (
    PageProblems,
    require_browser,
    voila_url,
    wait_for_change,
    wait_until,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]
require_browser()

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


def _notebook(path: Path, cell: str = CELL) -> Path:
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": "viewer",
                     "metadata": {}, "outputs": [], "source": cell}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                      "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))
    return path


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
    wait_for_change(lambda: image.get_attribute("src"), src0, "the heatmap image", timeout=60)
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
    wait_until(lambda: _image_srcs(page)[:2],                # heatmap and subblock map redrawn
               lambda srcs: srcs[0] != srcs0[0] and srcs[1] != srcs0[1],
               "the heatmap and the subblock map to change", timeout=60)


def _site_notebook(site: Path, cell: str) -> str:
    """Write ``cell`` as a notebook under the site's widgets/; its path there."""
    name = "panel.ipynb" if "HypervisorPanel(" in cell else "trace_viewer.ipynb"
    return f"widgets/{_notebook(site / 'widgets' / name, cell).name}"


@contextlib.contextmanager
def _lab(page, lab, site: Path, cell: str) -> Iterator[None]:
    assert not lab.run(_site_notebook(site, cell))
    yield


@contextlib.contextmanager
def _voila(page, lab, site: Path, cell: str) -> Iterator[None]:
    page.goto(voila_url(lab.base, _site_notebook(site, cell)), timeout=180_000)
    yield
    assert page.locator(".jp-CodeCell .jp-InputArea").count() == 0   # code stripped


@pytest.mark.parametrize("app", [_lab, _voila], ids=["jupyterlab", "voila"])
@pytest.mark.parametrize(("cell", "check"), [(CELL, _step_and_check),
                                             (PANEL_CELL, _qom_set_and_check)],
                         ids=["trace_viewer_steps", "hypervisor_panel_plugs"])
def test_widget_in_a_real_browser(page, lab, lab_site, app, cell, check):
    shown = lab.page if app is _lab else page
    with PageProblems(shown) as problems, app(shown, lab, lab_site, cell):
        check(shown)
    problems.check()
