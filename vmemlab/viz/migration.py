"""Draw a migration step: which pages moved where, and which page made it fail.

``draw_migration(ax, src, events)`` draws the page map of ``src`` (the state
after the step), outlines the old cells (dashed) and new cells (solid) of
each run of consecutive moves, joins each pair with an arrow, draws the range that
``test_pages_isolated`` checked (dotted), and marks the busy page with a
cross.  ``vmemlab.viz.moves.migration_summary`` is the matching text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from matplotlib import patheffects
from matplotlib.collections import LineCollection, PatchCollection
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, Rectangle

from .classes import PAGE_CLASSES
from .figures import LABEL_PT
from .grid import MAX_SIDE, boundary_path
from .heatmap import HeatmapArtists, draw_heatmap
from .moves import MigrationStep, MoveRun, cell_centre, migration_step, move_runs, range_rects
from .palette import FAILED, MOVE_DST, MOVE_SRC, add_legend
from .source import mem_view

SMALL_MACHINE_PAGES = 64 * 64
_HALO = [patheffects.withStroke(linewidth=3.0, foreground="#FFFFFF")]


@dataclass
class MigrationArtists:
    """What ``draw_migration`` drew."""

    heatmap: HeatmapArtists
    step: MigrationStep
    sources: Any
    targets: Any
    arrows: list[Any]
    checked: Any
    busy: list[Any]
    legend: Any


def migration_window(src: Any, step: MigrationStep) -> tuple[int, int]:
    """The pfn range to draw: all of a small machine, else the memory blocks involved."""
    view = mem_view(src)
    rng = step.pfn_range()
    if view.nr_pfns <= SMALL_MACHINE_PAGES or rng is None:
        return 0, view.nr_pfns
    per = view.geo.pages_per_memory_block
    return rng[0] // per * per, min(view.nr_pfns, -(-rng[1] // per) * per)


def draw_migration(ax: Any, src: Any, events: Any, start_pfn: int | None = None,
                   end_pfn: int | None = None, *, max_arrows: int = 64,
                   max_side: int = MAX_SIDE, width: int | None = None, legend: bool = True,
                   title: str | None = None) -> MigrationArtists:
    """Draw ``src`` at page zoom with the moves and isolation checks of ``events``.

    ``events`` is a Frame, a Trace or a list of events; ``src`` is usually
    the same frame (its state after the step) or the machine.
    """
    step = migration_step(events)
    lo, hi = migration_window(src, step)
    start_pfn = lo if start_pfn is None else start_pfn
    end_pfn = hi if end_pfn is None else end_pfn
    hm = draw_heatmap(ax, src, "page", start_pfn, end_pfn, max_side=max_side, width=width,
                      legend=False, title=title)
    grid = hm.grid
    runs = move_runs(step)
    sources = _boxes(ax, grid, [(r.src_pfn, r.nr_pages) for r in runs], MOVE_SRC, "dashed")
    targets = _boxes(ax, grid, [(r.dst_pfn, r.nr_pages) for r in runs], MOVE_DST, "solid")
    arrows = [_arrow(ax, grid, r) for r in runs[:max_arrows]
              if grid.contains(r.src_pfn) and grid.contains(r.dst_pfn)]
    paths = [p for c in step.checks for p in (boundary_path(grid, c.start_pfn),
                                             boundary_path(grid, c.end_pfn)) if p is not None]
    checked = ax.add_collection(LineCollection(paths, colors=FAILED, linewidths=2.0,
                                               linestyles="dotted", path_effects=_HALO))
    busy = _mark_busy(ax, grid, step.busy_pfn)
    leg = None
    if legend:
        leg = add_legend(ax, PAGE_CLASSES, "page", extra=overlay_handles(step),
                         bbox_to_anchor=(1.3, 1.0))
    return MigrationArtists(hm, step, sources, targets, arrows, checked, busy, leg)


def overlay_handles(step: MigrationStep | None = None) -> list[Any]:
    """Legend entries for the marks a migration picture adds (those ``step`` draws)."""
    marks = [(True if step is None else bool(step.moves),
              Line2D([], [], color=MOVE_SRC, linestyle="dashed", label="moved from")),
             (True if step is None else bool(step.moves),
              Line2D([], [], color=MOVE_DST, linewidth=2.0, label="moved to")),
             (True if step is None else bool(step.checks),
              Line2D([], [], color=FAILED, linestyle="dotted", linewidth=2.0,
                     label="range tested for isolation")),
             (True if step is None else step.busy_pfn is not None,
              Line2D([], [], color=FAILED, marker="X", linestyle="none", markersize=9,
                     markeredgecolor="#FFFFFF", label="busy page (made it fail)"))]
    return [h for drawn, h in marks if drawn]


def _boxes(ax: Any, grid: Any, runs: list[tuple[int, int]], colour: str, style: str) -> Any:
    rects = [Rectangle((x, y), w, 1.0) for pfn, n in runs
             for x, y, w in range_rects(grid, pfn, pfn + n)]
    return ax.add_collection(PatchCollection(rects, facecolor="none", edgecolor=colour,
                                             linewidth=1.5, linestyle=style,
                                             path_effects=_HALO))


def _arrow(ax: Any, grid: Any, run: MoveRun) -> Any:
    """An arrow between the middles of the first row pieces of a run's source and target."""
    arrow = FancyArrowPatch(_first_piece_centre(grid, run.src_pfn, run.nr_pages),
                            _first_piece_centre(grid, run.dst_pfn, run.nr_pages),
                            arrowstyle="-|>", mutation_scale=10, linewidth=1.0,
                            color=MOVE_DST, connectionstyle="arc3,rad=0.25",
                            path_effects=_HALO)
    return ax.add_patch(arrow)


def _first_piece_centre(grid: Any, pfn: int, nr_pages: int) -> tuple[float, float]:
    x, y, w = range_rects(grid, pfn, pfn + nr_pages)[0]
    return x + w / 2, y + 0.5


def _mark_busy(ax: Any, grid: Any, pfn: int | None) -> list[Any]:
    if pfn is None or not grid.contains(pfn):
        return []
    x, y = cell_centre(grid, pfn)
    marker = ax.plot([x], [y], marker="X", markersize=14, color=FAILED,
                     markeredgecolor="#FFFFFF", linestyle="none")[0]
    label = ax.annotate(f"busy pfn {pfn:#x}", (x, y), xytext=(8, -8),
                        textcoords="offset points", fontsize=LABEL_PT, color=FAILED,
                        bbox={"boxstyle": "round,pad=0.2", "facecolor": "#FFFFFF",
                              "edgecolor": FAILED, "linewidth": 0.5})
    return [marker, label]
