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
the two parts are timed apart.  Times are wall clock, one core: best and
median of ``REPEAT``.
"""

from __future__ import annotations

import statistics
import sys
import time
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
from results import update_section

REPEAT = 10
GUESTS_GIB = (4, 16, 64)
ZOOMS = ("pageblock", "page")


def timings(fn: Callable[[int], object], repeat: int = REPEAT) -> tuple[float, float]:
    """(best, median) seconds of ``fn(i)`` for i in range(repeat)."""
    times = []
    for i in range(repeat):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
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


def bench_heatmap(gib: int, states: tuple[object, object], zoom: str) -> str:
    """One table row: grid, in-place update and full redraw times of one guest and zoom."""
    r = HeatmapRenderer(states[0], zoom)
    shape = "x".join(map(str, r.grid.cells.shape))
    grid = timings(lambda i: heatmap_grid(states[i % 2], zoom))
    update = timings(lambda i: r.update(states[i % 2]))
    redraw = timings(lambda i: full_redraw(states[i % 2], zoom), repeat=3)
    return (f"| {gib} GiB | {zoom} | {shape} ({r.grid.pages_per_cell} pages) | {ms(grid)} "
            f"| {ms(update)} | {ms(redraw)} |")


def bench_heatmaps() -> list[str]:
    rows = []
    for gib in GUESTS_GIB:
        states = two_states(gib)
        for zoom in ZOOMS:
            rows.append(bench_heatmap(gib, states, zoom))
            print(rows[-1], flush=True)
    return rows


def bench_widget_step(gib: int = 4, frames: int = 6) -> str:
    """Median time of a TraceViewer step (slider change) over a fill recorded in frames."""
    m = vm.Machine(boot_memory=gib * vm.GiB, seed=0, trace=True)
    m.step("boot")
    for i in range(1, frames + 1):
        workload.fill(m, 0.75 * i / frames)
        m.step(f"fill {i}")
    v = TraceViewer(m.trace)
    order = list(range(1, frames + 1)) + list(range(frames - 1, -1, -1))
    step = timings(lambda i: setattr(v.slider, "value", order[i % len(order)]),
                   repeat=2 * len(order))
    row = (f"| TraceViewer step, {gib} GiB guest, pageblock zoom "
           f"({'x'.join(map(str, v.renderer.grid.cells.shape))} cells) | {ms(step)} |")
    print(row, flush=True)
    return row


def bench_panel_step(gib: int = 4, steps: int = 12) -> list[str]:
    """HypervisorPanel.apply() alternating between two requested sizes, model and view apart.

    The guest is half full of a 70/20/10 mix; every step plugs or unplugs
    256 MiB (128 subblocks), so each one changes the pictures.
    """
    m = vm.Machine(boot_memory=gib * vm.GiB, seed=0, auto_online_blocks="online_movable")
    m.add_virtio_mem(region_size=gib * vm.GiB, requested_size=gib * vm.GiB // 2)
    m.settle()
    workload.fill(m, 0.5)
    p = HypervisorPanel(m)
    base = p.requested.value
    model, view, total = [], [], []
    for i in range(steps):
        t = time.perf_counter()
        p.apply(base - 128 if i % 2 == 0 else base)
        total.append(time.perf_counter() - t)
        model.append(p.timings["model"])
        view.append(p.timings["view"])
    rows = []
    for name, times in (("view: heatmap + subblock map + chart + text", view),
                        ("model: qom-set and settle (plug or unplug 256 MiB)", model),
                        ("whole step", total)):
        rows.append(f"| HypervisorPanel step, {gib} GiB guest + {gib} GiB device: {name} "
                    f"| {ms((min(times), statistics.median(times)))} |")
        print(rows[-1], flush=True)
    return rows


def ms(t: tuple[float, float]) -> str:
    return f"{t[0] * 1e3:.0f} ms / {t[1] * 1e3:.0f} ms"


def main() -> None:
    head = ["| guest (75% full) | zoom | cells (one cell =) | grid only | update in place "
            "(grid + set_data + paint + PNG) | full redraw + PNG |",
            "|---|---|---|---|---|---|"]
    rows = bench_heatmaps()
    widget = ["| widget | step (best / median) |", "|---|---|", bench_widget_step(),
              *bench_panel_step()]
    note = ("Times are best / median.  Maps of at most 64x64 cells (here the 4 GiB "
            "pageblock map) also carry hatches on unmovable, pinned and isolated cells, "
            "redrawn with each update.")
    body = "\n".join(head + rows + ["", note, ""] + widget)
    body += ("\n\nGoals (issue 6): a 64 GiB guest's heatmap updates in under 100 ms; "
             "a widget step in a 4 GiB guest in under 50 ms (for the panel: its view part; "
             "the simulated work is listed apart).")
    print(body)
    if "--write" in sys.argv[1:]:
        update_section("viz", body)


if __name__ == "__main__":
    main()
