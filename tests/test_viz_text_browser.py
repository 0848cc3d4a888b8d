"""Panel and viewer text as a student sees it at 1400 px: measured in a real browser.

A one-cell notebook shows the HypervisorPanel of notebook 00's guest after a
qom-set and a TraceViewer of the same unplug, in JupyterLab and as a Voila
app, in a 1400 x 1000 window.  The page itself is measured, so a stylesheet
(JupyterLab's, Voila's) that shrinks, wraps or swaps the font fails here:

* every text of the widgets is 11 px or more (getComputedStyle);
* the text drawn inside each picture is 10 px or more on screen: the
  picture's smallest font (printed by the cell, in PNG pixels) times the
  picture's displayed size over its natural size;
* the /proc, status and kernel-log panes use a fixed-width font (the width
  of "i"s equals that of "M"s) and never wrap a line (each pane is as tall
  as its lines);
* no word and no number with its unit is broken across two lines.

Skipped, saying why, without Playwright, Debian's Chromium or Voila.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from .browser import (
    _CELLS_JS,
    PageProblems,
    jupyterlab,
    lab_url,
    require_browser,
    screenshot,
    voila,
    wait_until,
)

pytestmark = pytest.mark.browser
require_browser()

WINDOW = {"width": 1400, "height": 1000}
MIN_CSS_PX = 11.0
MIN_PICTURE_PX = 10.0
CELL = """\
import json
from vmemlab.exercises import nb00 as ex
from vmemlab.viz import HypervisorPanel, TraceViewer
m, dev, app = ex.demo_guest(trace=True)
ex.shrink(m, dev)
viewer = TraceViewer(m.trace)
panel = HypervisorPanel(ex.demo_guest(trace=False)[0])
panel.apply(512)
sizes = {"heatmap": max(panel.heatmap.min_text_px, viewer.renderer.min_text_px),
         "subblocks": panel.subblocks.min_text_px, "series": panel.chart.min_text_px}
print("VIZTEXT " + json.dumps({k: min(v, 99) for k, v in sizes.items()}))
display(panel, viewer)
"""

# Everything the page shows of the two widgets, measured where it is drawn.
MEASURE_JS = """() => {
  const roots = [...document.querySelectorAll('.vmemlab-panel, .vmemlab-trace-viewer')];
  const texts = [], pres = [], images = [], broken = [];
  for (const root of roots) {
    for (const el of root.querySelectorAll('*')) {
      const own = [...el.childNodes].filter(n => n.nodeType === 3 && n.textContent.trim());
      const r = el.getBoundingClientRect();
      if (!own.length || r.width === 0) continue;
      const cs = getComputedStyle(el);
      texts.push({tag: el.tagName, size: parseFloat(cs.fontSize),
                  text: el.textContent.trim().slice(0, 60)});
      if (el.tagName === 'PRE') continue;
      for (const node of own) {          // a word (or number+unit) on two lines is broken
        const re = /\\S+/g; let m;
        while ((m = re.exec(node.textContent)) !== null) {
          const range = document.createRange();
          range.setStart(node, m.index); range.setEnd(node, m.index + m[0].length);
          const lines = new Set([...range.getClientRects()].map(q => Math.round(q.top)));
          if (lines.size > 1) broken.push(m[0]);
        }
      }
    }
    for (const pre of root.querySelectorAll('pre')) {
      const cs = getComputedStyle(pre);
      const probe = (s) => { const span = document.createElement('span');
        span.textContent = s; pre.appendChild(span);
        const w = span.getBoundingClientRect().width; span.remove(); return w; };
      const lineHeight = parseFloat(cs.lineHeight);
      pres.push({whiteSpace: cs.whiteSpace, family: cs.fontFamily,
                 narrow: probe('iiiiiiiiiiiiiiiiiiii'), wide: probe('MMMMMMMMMMMMMMMMMMMM'),
                 lines: pre.textContent.replace(/\\n$/, '').split('\\n').length,
                 height: pre.scrollHeight, lineHeight, text: pre.textContent.slice(0, 40)});
    }
    for (const img of root.querySelectorAll('img')) {
      const name = [...img.classList].find(c => c.startsWith('vmemlab-'));
      images.push({name, natural: img.naturalWidth, shown: img.clientWidth});
    }
  }
  return {texts, pres, images, broken};
}"""


def _notebook(path: Path) -> None:
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": "text",
                     "metadata": {}, "outputs": [], "source": CELL}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                      "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))


# Fire a JupyterLab command without awaiting its promise (run-all's may never settle).
_COMMAND_JS = "(cmd) => { window.jupyterapp.commands.execute(cmd); return true; }"


def _run_all(page, notebook: str, timeout: float = 420) -> list[str]:
    """Run every cell, re-sending Run All until a cell starts; every wait is bounded.

    Returns the error outputs.
    """
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                           timeout=120_000)
    assert page.evaluate(_CELLS_JS)["path"] == notebook, "another notebook is in front"
    total = page.evaluate(_CELLS_JS)["pending"]
    started = False
    for _ in range(5):
        page.evaluate(_COMMAND_JS, "notebook:run-all-cells")
        with contextlib.suppress(AssertionError):
            wait_until(lambda: page.evaluate(_CELLS_JS),
                       lambda s: s["pending"] < total or s["kernel"] == "busy",
                       "Run All to start a cell", timeout=30)
            started = True
            break
    assert started, "Run All never started a cell"
    state = wait_until(lambda: page.evaluate(_CELLS_JS),
                       lambda s: not s["pending"] and s["kernel"] == "idle",
                       "every cell to run", timeout=timeout)
    return state["errors"]


@contextlib.contextmanager
def _lab(page, tmp_path: Path) -> Iterator[None]:
    _notebook(tmp_path / "text.ipynb")
    with jupyterlab(tmp_path) as base:
        page.goto(lab_url(base, "text.ipynb"))
        assert not _run_all(page, "text.ipynb")
        yield


@contextlib.contextmanager
def _voila(page, tmp_path: Path) -> Iterator[None]:
    _notebook(tmp_path / "text.ipynb")
    with voila(tmp_path, "text.ipynb") as url:
        page.goto(url)
        yield


def _picture_sizes(page) -> dict[str, float]:
    """The smallest font of each picture, in PNG pixels, as the cell printed it."""
    out = page.locator(".jp-OutputArea-output", has_text="VIZTEXT")
    line = wait_until(lambda: out.first.inner_text() if out.count() else "",
                      lambda t: "VIZTEXT" in t, "the cell's picture sizes", timeout=240)
    found = re.search(r"VIZTEXT\s*(\{[^}]*\})", str(line))
    assert found, f"no picture sizes in {str(line)[:300]!r}"
    return json.loads(found.group(1))


def _measure(page) -> dict:
    page.wait_for_selector(".vmemlab-panel", timeout=240_000)
    page.wait_for_selector(".vmemlab-trace-viewer", timeout=240_000)
    return wait_until(lambda: page.evaluate(MEASURE_JS),
                      lambda m: len(m["images"]) == 4 and all(i["natural"] for i in m["images"])
                      and len(m["pres"]) >= 4, "both widgets drawn", timeout=120)


@pytest.mark.parametrize("app", [_lab, _voila], ids=["jupyterlab", "voila"])
def test_panel_and_viewer_text_is_readable_at_1400_px(page, tmp_path, app):
    problems = PageProblems(page)
    page.set_viewport_size(WINDOW)
    with app(page, tmp_path):
        pictures = _picture_sizes(page)
        m = _measure(page)
        screenshot(page, f"viz-text-{app.__name__.strip('_')}")
    problems.check()

    small = [t for t in m["texts"] if t["size"] < MIN_CSS_PX]
    assert not small, f"text under {MIN_CSS_PX} px: {small[:5]}"

    for img in m["images"]:
        key = img["name"].removeprefix("vmemlab-")
        on_screen = pictures[key] * img["shown"] / img["natural"]
        assert on_screen >= MIN_PICTURE_PX, (
            f"{key}: {pictures[key]:.1f} px text shown at {img['shown']}/{img['natural']} "
            f"= {on_screen:.1f} px")

    for pre in m["pres"]:
        assert pre["whiteSpace"] == "pre", pre
        assert abs(pre["narrow"] - pre["wide"]) <= 1.0, f"not fixed-width: {pre}"
        assert pre["height"] <= pre["lines"] * pre["lineHeight"] + 4, f"a line wraps: {pre}"
    procs = [p for p in m["pres"] if p["text"].startswith("Node 0, zone")]
    assert procs, "the /proc pane shows buddyinfo"

    assert not m["broken"], f"broken across lines: {m['broken'][:10]}"
