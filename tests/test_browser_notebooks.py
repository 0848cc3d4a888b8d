"""Every notebook as a student uses it: JupyterLab and Voilà in headless Chromium.

nbval cannot run JavaScript, so it cannot tell whether a widget renders or
a Play button moves the heatmap.  Here one JupyterLab server (on a copy of
notebooks/, so nothing is saved into the repository) opens each notebook,
runs all its cells, and checks that no cell printed an error or a
traceback and that the page logged no JavaScript error.  Where a notebook
has a trace viewer the test presses Play and waits for the caption, the
heatmap and the /proc pane to change; where it has the hypervisor panel it
moves the requested-size slider and presses qom-set.  The driver notebook
is also opened as the Voilà app.  Screenshots land in test-output/browser/.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .browser import (
    ROOT,
    PageProblems,
    jupyterlab,
    lab_url,
    play_and_check,
    requested_size_and_check,
    require_browser,
    run_all_cells,
    screenshot,
    voila,
)

pytestmark = pytest.mark.browser
require_browser()

NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
DRIVER = "07_virtio_mem_driver.ipynb"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A copy of the notebooks: running them must not save into the repository."""
    root = tmp_path_factory.mktemp("site")
    for name in NOTEBOOKS:
        shutil.copy(ROOT / "notebooks" / name, root / name)
    return root


@pytest.fixture(scope="module")
def lab(site: Path) -> Iterator[str]:
    with jupyterlab(site) as base:
        yield base


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_and_its_widgets_work_in_jupyterlab(page, lab, name):
    problems = PageProblems(page)
    page.goto(lab_url(lab, name), timeout=120_000)
    errors = run_all_cells(page, name)
    assert not errors, f"{name}: " + "\n".join(errors)
    page.locator(".jp-Notebook").first.wait_for()
    screenshot(page, f"lab-{name[:2]}-top")
    source = (ROOT / "notebooks" / name).read_text()
    if "TraceViewer(" in source:
        assert page.locator(".vmemlab-trace-viewer").count(), "the TraceViewer did not render"
        play_and_check(page)
        screenshot(page, f"lab-{name[:2]}-trace-viewer")
    if "HypervisorPanel(" in source:
        assert page.locator(".vmemlab-panel").count(), "the HypervisorPanel did not render"
        assert "qom-set" in requested_size_and_check(page)
        screenshot(page, f"lab-{name[:2]}-panel")
    problems.check()


def test_the_widget_notebooks_are_among_those_driven():
    text = {n: (ROOT / "notebooks" / n).read_text() for n in NOTEBOOKS}
    assert "TraceViewer(" in text["02_buddy_allocator.ipynb"]
    assert "HypervisorPanel(" in text[DRIVER]


def test_driver_notebook_as_a_voila_app(page, site):
    """07 as the app: prose, figures and a working panel; exercises and code left out."""
    problems = PageProblems(page)
    with voila(site, DRIVER) as url:
        page.goto(url, timeout=180_000)
        page.locator(".vmemlab-panel").first.wait_for(timeout=180_000)
        text = page.content()
        assert "Probe: the driver meets its device" in text
        assert "Exercise 7.1" not in text and "No prediction yet" not in text
        assert page.locator(".jp-CodeCell .jp-InputArea").count() == 0   # code stripped
        assert "Traceback" not in page.inner_text("body")
        assert "qom-set" in requested_size_and_check(page)
        screenshot(page, "voila-07-panel")
    problems.check()
