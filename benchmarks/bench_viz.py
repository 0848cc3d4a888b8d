"""Picture benchmarks: heatmap updates of big guests, a widget step, a panel step.

    .venv/bin/python benchmarks/bench_viz.py            # print the table
    .venv/bin/python benchmarks/bench_viz.py --write    # also update RESULTS.md

Each guest is ``vm.Machine(boot_memory=N GiB)`` filled to 75% with
``workload.fill``.  An *update* is what a widget does per step:
``HeatmapRenderer.update(state)`` = compute the grid, ``set_data`` on the one
image, paint the cells' colours into the saved background with numpy, blend
the saved overlay layer (and, on small maps, the hatches) on top, encode PNG
bytes.  Updates
alternate between two snapshots (50% and 75% full), so every one changes
the picture.  The *full redraw* draws a new figure and encodes it, for
comparison.  A *panel step* is one HypervisorPanel action in a 4 GiB guest
with a 4 GiB virtio-mem device: ``qom-set`` a new requested-size, settle the
guest (the simulated work: the driver plugs or unplugs), then redraw the
heatmap, the subblock map, the plugged-vs-requested chart and the text;
the two parts are timed apart.  Times are wall clock in one process; the
cases of a table take turns (one repeat of each, then the next round), and
the figure is the median of the repeats (best / median shown).

Goal 5 (issue 16): a widget step in a 4 GiB guest (TraceViewer, the
HypervisorPanel's view) under 50 ms median, a 64 GiB page-zoom heatmap
update under 100 ms median.
"""

from __future__ import annotations

import itertools
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import vmemlab as vm
from vmemlab import workload
from vmemlab.viz.figures import figure_png, new_figure
from vmemlab.viz.grid import heatmap_grid
from vmemlab.viz.heatmap import draw_heatmap
from vmemlab.viz.panel import HypervisorPanel
from vmemlab.viz.render import HeatmapRenderer
from vmemlab.viz.widgets import TraceViewer

sys.path.insert(0, str(Path(__file__).parent))
from harness import interleaved, load
from results import update_section

REPEAT = 10
REDRAW_REPEAT = 3
GUESTS_GIB = (4, 16, 64)
ZOOMS = ("pageblock", "page")


def best_median(times: list[float]) -> tuple[float, float]:
    return min(times), statistics.median(times)


def two_states(gib: int) -> tuple[object, object]:
    """Snapshots of one guest at 50% and at 75% full."""
    m = vm.Machine(boot_memory=gib * vm.GiB, seed=0)
    workload.fill(m, 0.5)
    half = m.snapshot()
    workload.fill(m, 0.75)
    return half, m.snapshot()


def full_redraw(state: object, zoom: str) -> bytes:
    fig, ax = new_figure("heatmap")
    draw_heatmap(ax, state, zoom)
    return figure_png(fig)


def bench_heatmaps() -> list[str]:
    """Rows of grid, in-place update and full redraw times; the cases take turns.

    Each case alternates between the guest's two states, so every update
    changes the picture.
    """
    quick, redraws, labels = {}, {}, {}
    for gib in GUESTS_GIB:
        states = two_states(gib)
        for zoom in ZOOMS:
            r = HeatmapRenderer(states[0], zoom)
            labels[gib, zoom] = (f"{'x'.join(map(str, r.grid.cells.shape))} "
                                 f"({r.grid.pages_per_cell} pages)")
            grid, update, redraw = (itertools.cycle(states) for _ in range(3))
            quick[gib, zoom, "grid"] = lambda z=zoom, s=grid: heatmap_grid(next(s), z)
            quick[gib, zoom, "update"] = lambda r=r, s=update: r.update(next(s))
            redraws[gib, zoom, "redraw"] = lambda z=zoom, s=redraw: full_redraw(next(s), z)
    times = interleaved(quick, REPEAT) | interleaved(redraws, REDRAW_REPEAT)
    rows = []
    for gib in GUESTS_GIB:
        for zoom in ZOOMS:
            cells = [ms(best_median(times[gib, zoom, kind]))
                     for kind in ("grid", "update", "redraw")]
            rows.append(f"| {gib} GiB | {zoom} | {labels[gib, zoom]} | " + " | ".join(cells)
                        + " |")
            print(rows[-1], flush=True)
    return rows


def trace_viewer_steps(gib: int = 4, frames: int = 6) -> tuple[TraceViewer, Callable]:
    """A TraceViewer over a fill recorded in frames, and a step: move the slider on."""
    m = vm.Machine(boot_memory=gib * vm.GiB, seed=0, trace=True)
    m.step("boot")
    for i in range(1, frames + 1):
        workload.fill(m, 0.75 * i / frames)
        m.step(f"fill {i}")
    v = TraceViewer(m.trace)
    order = itertools.cycle(list(range(1, frames + 1)) + list(range(frames - 1, -1, -1)))
    return v, lambda: setattr(v.slider, "value", next(order))


def panel_steps(gib: int = 4) -> tuple[HypervisorPanel, Callable]:
    """A HypervisorPanel and a step: apply() alternating between two requested sizes.

    The guest is half full of a 70/20/10 mix; every step plugs or unplugs
    256 MiB (128 subblocks), so each one changes the pictures.
    """
    m = vm.Machine(boot_memory=gib * vm.GiB, seed=0, auto_online_blocks="online_movable")
    m.add_virtio_mem(region_size=gib * vm.GiB, requested_size=gib * vm.GiB // 2)
    m.settle()
    workload.fill(m, 0.5)
    p = HypervisorPanel(m)
    sizes = itertools.cycle([p.requested.value - 128, p.requested.value])
    return p, lambda: p.apply(next(sizes))


def bench_widgets(gib: int = 4, repeat: int = 2 * REPEAT) -> list[str]:
    """TraceViewer and HypervisorPanel steps, taking turns; the panel's model and view apart."""
    viewer, viewer_step = trace_viewer_steps(gib)
    panel, panel_step = panel_steps(gib)
    model, view = [], []

    def panel_case() -> None:
        panel_step()
        model.append(panel.timings["model"])
        view.append(panel.timings["view"])

    times = interleaved({"viewer": viewer_step, "panel": panel_case}, repeat)
    cells = "x".join(map(str, viewer.renderer.grid.cells.shape))
    device = f"HypervisorPanel step, {gib} GiB guest + {gib} GiB device"
    rows = [f"| TraceViewer step, {gib} GiB guest, pageblock zoom ({cells} cells) "
            f"| {ms(best_median(times['viewer']))} |",
            f"| {device}: view: heatmap + subblock map + chart + text "
            f"| {ms(best_median(view))} |",
            f"| {device}: model: qom-set and settle (plug or unplug 256 MiB) "
            f"| {ms(best_median(model))} |",
            f"| {device}: whole step | {ms(best_median(times['panel']))} |"]
    for row in rows:
        print(row, flush=True)
    return rows


def ms(t: tuple[float, float]) -> str:
    return f"{t[0] * 1e3:.0f} ms / {t[1] * 1e3:.0f} ms"


def main(argv: list[str]) -> None:
    start_load = load()
    head = ["| guest (75% full) | zoom | cells (one cell =) | grid only | update in place "
            "(grid + set_data + paint + PNG) | full redraw + PNG |",
            "|---|---|---|---|---|---|"]
    rows = bench_heatmaps()
    widget = ["| widget | step (best / median) |", "|---|---|", *bench_widgets()]
    note = ("Times are best / median (the goal is on the median).  Maps of at most 64x64 "
            "cells (here the 4 GiB pageblock map) also carry hatches on unmovable, pinned "
            "and isolated cells, redrawn with each update.")
    body = "\n".join(head + rows + ["", note, ""] + widget)
    body += ("\n\nGoals (issues 6 and 16): a 64 GiB guest's page-zoom heatmap updates in "
             "under 100 ms; a widget step in a 4 GiB guest in under 50 ms (for the panel: its "
             "view part; the simulated work is listed apart); medians.  These views were made "
             "fast for issue 6 (grids reduced with numpy, one image updated in place and "
             "painted into a saved background); issue 16 changed only how they are timed.")
    print(body)
    if "--write" in argv:
        update_section("viz", body, f"Heatmaps: {REPEAT} repeats per case ({REDRAW_REPEAT} for "
                       "full redraws), the cases taking turns; widgets: "
                       f"{2 * REPEAT} steps each, the two taking turns; best and median, wall "
                       "clock, one process.",
                       start_load)


if __name__ == "__main__":
    main(sys.argv[1:])
