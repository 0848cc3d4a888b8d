"""Every notebook as a student uses it: JupyterLab and Voilà in headless Chromium.

nbval cannot run JavaScript, so it cannot tell whether a widget renders or
a Play button moves the heatmap.  Here the session's JupyterLab server (on
a copy of notebooks/, so nothing is saved into the repository; see
tests/conftest.py) opens each notebook in the shared JupyterLab page, runs
all its cells, and checks that no cell printed an error or a traceback and
that the page logged no JavaScript error.  Where a notebook has a trace
viewer the test presses Play and waits for the caption, the heatmap and the
/proc pane to change; where it has the hypervisor panel it moves the
requested-size slider and presses qom-set.  Screenshots land in
test-output/browser/.  The Voilà apps are tests/test_browser_lab.py's.
"""

from __future__ import annotations

import pytest

from .browser import (
    ROOT,
    PageProblems,
    play_and_check,
    requested_size_and_check,
    require_browser,
    screenshot,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]
require_browser()

NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_and_its_widgets_work_in_jupyterlab(lab, name):
    page = lab.page
    with PageProblems(page) as problems:
        errors = lab.run(f"notebooks/{name}")
        assert not errors, f"{name}: " + "\n".join(errors)
        screenshot(page, f"lab-{name[:2]}-top")
        source = (ROOT / "notebooks" / name).read_text()
        if "TraceViewer(" in source:
            assert page.locator(".vmemlab-trace-viewer").count(), "no TraceViewer rendered"
            play_and_check(page)
            screenshot(page, f"lab-{name[:2]}-trace-viewer")
        if "HypervisorPanel(" in source:
            assert page.locator(".vmemlab-panel").count(), "no HypervisorPanel rendered"
            assert "qom-set" in requested_size_and_check(page)
            screenshot(page, f"lab-{name[:2]}-panel")
    problems.check()


def test_the_widget_notebooks_are_among_those_driven():
    text = {n: (ROOT / "notebooks" / n).read_text() for n in NOTEBOOKS}
    assert "TraceViewer(" in text["02_buddy_allocator.ipynb"]
    assert "HypervisorPanel(" in text["07_virtio_mem_driver.ipynb"]
