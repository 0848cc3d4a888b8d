"""Draw a heatmap of physical memory on a matplotlib Axes, and update it in place.

``draw_heatmap(ax, src)`` draws the grid of ``vmemlab.viz.grid`` with the
palette's colours (``interpolation="nearest"``: no invented colours), zone
boundaries (solid), memory-block edges (dashed) and the region of each
virtio-mem device (a wine outline) over it, pfns on the left axis and
physical addresses on the right, hatches on small maps, and a legend.  It
returns the artists; ``update_heatmap(artists, src)`` swaps in a new state
with ``set_data`` instead of drawing again (and moves the outlines when
zones or memory blocks changed).  ``zoom="subblock"`` draws one virtio-mem
device's subblock map instead (``vmemlab.viz.subblocks``).  Nothing here
creates a figure or calls ``plt.show()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib import patheffects
from matplotlib.collections import LineCollection, PatchCollection
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from .classes import PAGE_CLASSES, PAGEBLOCK_CLASSES, CellClass
from .grid import (
    MAX_SIDE,
    Grid,
    Overlay,
    describe_cell,
    format_addr,
    heatmap_grid,
    overlay_paths,
    row_ticks,
)
from .palette import (
    BLOCK_LINE,
    CLASS_HATCHES,
    DEVICE_LINE,
    FILL_FLOOR,
    HATCH_EDGE,
    ZONE_LINE,
    add_legend,
    class_cmap,
)
from .source import DeviceSpan, ZoneSpan

HATCH_MAX_CELLS = 64 * 64


@dataclass
class HeatmapArtists:
    """What ``draw_heatmap`` drew, and how to recompute its grid."""

    ax: Any
    image: Any
    grid: Grid
    zone_lines: Any
    block_lines: Any
    zone_labels: list[Any]
    hatches: list[Any]
    legend: Any
    address_axis: Any
    options: dict[str, Any] = field(default_factory=dict)
    device_lines: Any = None
    overlay: Overlay | None = None

    def artists(self) -> list[Any]:
        """Everything drawn over the axes' background, in drawing order."""
        out = [self.image, *self.hatches, self.block_lines, self.device_lines, self.zone_lines,
               *self.zone_labels]
        return [a for a in out if a is not None]


def image_alpha(grid: Grid) -> np.ndarray | None:
    """Per-cell alpha: pageblocks are paler the emptier they are."""
    if grid.fill is None:
        return None
    alpha = FILL_FLOOR + (1.0 - FILL_FLOOR) * grid.fill
    return np.where(grid.cells >= int(CellClass.PB_UNMOVABLE), alpha, 1.0).astype(np.float32)


def draw_heatmap(ax: Any, src: Any, zoom: str = "pageblock", start_pfn: int = 0,
                 end_pfn: int | None = None, *, max_side: int = MAX_SIDE,
                 width: int | None = None, reduce: str = "priority",
                 legend: bool | str = True,
                 hatch_max_cells: int = HATCH_MAX_CELLS,
                 title: str | None = None, **kw: Any) -> Any:
    """Draw the memory of ``src`` (Machine, Snapshot or Frame) on ``ax``.

    ``zoom`` is "pageblock" (the default), "page", or "subblock" (one
    virtio-mem device, ``device=`` and ``content=`` as in
    ``vmemlab.viz.subblocks.draw_subblocks``, which then does the drawing).
    ``legend`` is True (to the right), "below" (under the figure) or False.
    """
    if zoom == "subblock":
        from .subblocks import draw_subblocks
        return draw_subblocks(ax, src, max_side=max_side, legend=legend,
                              hatch_max_cells=hatch_max_cells, title=title, **kw)
    if kw:
        raise TypeError(f"draw_heatmap() got unexpected keyword arguments {sorted(kw)}")
    options = {"zoom": zoom, "start_pfn": start_pfn, "end_pfn": end_pfn,
               "max_side": max_side, "width": width, "reduce": reduce,
               "hatch_max_cells": hatch_max_cells}
    grid = heatmap_grid(src, zoom, start_pfn, end_pfn, max_side=max_side, width=width,
                        reduce=reduce)
    cmap, norm = class_cmap()
    ax.set_facecolor("#FFFFFF")
    image = ax.imshow(grid.cells, cmap=cmap, norm=norm, interpolation="nearest",
                      aspect="auto", alpha=image_alpha(grid))
    hatches = _draw_hatches(ax, grid, hatch_max_cells)
    ov = overlay_paths(grid, src)
    block_lines = ax.add_collection(LineCollection(
        ov.block_paths, colors=BLOCK_LINE, linewidths=0.8, linestyles="dashed"))
    device_lines = ax.add_collection(LineCollection(
        ov.device_paths, colors=DEVICE_LINE, linewidths=1.8,
        path_effects=[patheffects.withStroke(linewidth=3.5, foreground="#FFFFFF")]))
    zone_lines = ax.add_collection(LineCollection(
        ov.zone_paths, colors=ZONE_LINE, linewidths=1.5,
        path_effects=[patheffects.withStroke(linewidth=3.5, foreground="#FFFFFF")]))
    labels = _zone_labels(ax, grid, ov.zones, ov.devices)
    address_axis = _label_axes(ax, grid)
    ax.set_xlim(-0.5, grid.width - 0.5)
    ax.set_ylim(grid.rows - 0.5, -0.5)
    if title:
        ax.set_title(title, fontsize="medium")
    leg = None
    if legend:
        classes = legend_classes(grid)
        extra = [Line2D([], [], color=DEVICE_LINE, linewidth=1.8,
                        label="virtio-mem region")] if ov.devices else []
        leg = add_legend(ax, classes, "page" if grid.zoom == "page"
                         else "pageblock (pale: mostly free)", extra=extra,
                         where="below" if legend == "below" else "right")
    return HeatmapArtists(ax, image, grid, zone_lines, block_lines, labels, hatches, leg,
                          address_axis, options, device_lines, ov)


def legend_classes(grid: Grid) -> tuple[CellClass, ...]:
    """The classes a heatmap's legend lists: all of its zoom's (the same every time)."""
    if grid.zoom == "page":
        return PAGE_CLASSES
    unknown = bool((grid.cells == CellClass.PB_UNKNOWN).any())
    return PAGEBLOCK_CLASSES + ((CellClass.PB_UNKNOWN,) if unknown else ())


def update_heatmap(art: Any, src: Any) -> Grid:
    """Show ``src`` in an existing heatmap: new image data, same artists.

    The axes are redrawn only when the grid's shape or range changed;
    outlines move when zones, memory blocks or devices changed (memory was
    onlined, added or removed); hatches follow the new cells.
    """
    if not isinstance(art, HeatmapArtists):
        from .subblocks import update_subblocks
        return update_subblocks(art, src)
    o = art.options
    grid = heatmap_grid(src, o["zoom"], o["start_pfn"], o["end_pfn"], max_side=o["max_side"],
                        width=o["width"], reduce=o["reduce"])
    same = (grid.cells.shape == art.grid.cells.shape and grid.start_pfn == art.grid.start_pfn
            and grid.pages_per_cell == art.grid.pages_per_cell)
    art.image.set_data(grid.cells)
    alpha = image_alpha(grid)
    if alpha is not None:
        art.image.set_alpha(alpha)
    for h in art.hatches:
        h.remove()
    art.hatches = _draw_hatches(art.ax, grid, o["hatch_max_cells"])
    art.grid = grid
    if not same:
        _redraw_overlays(art, src)
    else:
        ov = overlay_paths(grid, src)
        old = art.overlay
        if old is None or (ov.zones, ov.block_edges, ov.devices) != (
                old.zones, old.block_edges, old.devices):
            _move_outlines(art, ov)
    return grid


def _move_outlines(art: HeatmapArtists, ov: Overlay) -> None:
    """Put the outlines and zone labels where ``ov`` says (same grid, same axes)."""
    art.block_lines.set_segments(ov.block_paths)
    art.zone_lines.set_segments(ov.zone_paths)
    if art.device_lines is not None:
        art.device_lines.set_segments(ov.device_paths)
    for t in art.zone_labels:
        t.remove()
    art.zone_labels = _zone_labels(art.ax, art.grid, ov.zones, ov.devices)
    art.overlay = ov


def _redraw_overlays(art: HeatmapArtists, src: Any) -> None:
    grid, ax = art.grid, art.ax
    _move_outlines(art, overlay_paths(grid, src))
    art.image.set_extent((-0.5, grid.width - 0.5, grid.rows - 0.5, -0.5))
    ax.set_xlim(-0.5, grid.width - 0.5)
    ax.set_ylim(grid.rows - 0.5, -0.5)
    art.address_axis.remove()
    art.address_axis = _label_axes(ax, grid)


def hatch_runs(grid: Grid, cls: CellClass) -> np.ndarray:
    """(row, first col, length) of each horizontal run of ``cls`` cells."""
    rows, w = grid.cells.shape
    padded = np.zeros((rows, w + 1), np.int8)
    padded[:, :w] = grid.cells == cls
    d = np.diff(np.concatenate([[0], padded.reshape(-1)]))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return np.stack([starts // (w + 1), starts % (w + 1), ends - starts], axis=1)


def _draw_hatches(ax: Any, grid: Grid, max_cells: int) -> list[Any]:
    """One hatched PatchCollection per hatched class present, on small maps only."""
    if grid.cells.size > max_cells:
        return []
    out = []
    for cls, pattern in CLASS_HATCHES.items():
        runs = hatch_runs(grid, cls)
        if not len(runs):
            continue
        rects = [Rectangle((c - 0.5, r - 0.5), n, 1.0) for r, c, n in runs.tolist()]
        out.append(ax.add_collection(PatchCollection(
            rects, facecolor="none", edgecolor=HATCH_EDGE[cls], hatch=pattern,
            linewidth=0.0)))
    return out


def zone_label_positions(grid: Grid, zones: Sequence[ZoneSpan | DeviceSpan]
                         ) -> list[tuple[float, float]]:
    """(x, y) of each zone's (or device's) name: at its first cell, moved right past a
    neighbour's."""
    out: list[tuple[float, float]] = []
    near_rows = max(1.0, 0.05 * grid.rows)
    label_cols = max(1.0, 0.12 * grid.width)
    for z in zones:
        row, col = grid.rowcol(max(z.start_pfn, grid.start_pfn))
        x, y = col - 0.4, row - 0.4
        if out and y - out[-1][1] < near_rows and abs(x - out[-1][0]) < label_cols:
            x = out[-1][0] + label_cols
        out.append((x, y))
    return out


def _zone_labels(ax: Any, grid: Grid, zones: Sequence[ZoneSpan],
                 devices: Sequence[DeviceSpan] = ()) -> list[Any]:
    """Zone names (black box) and device names (wine box) at their first cell."""
    named = sorted([*zones, *devices], key=lambda s: s.start_pfn)
    out = []
    for z, (x, y) in zip(named, zone_label_positions(grid, named), strict=True):
        edge = DEVICE_LINE if isinstance(z, DeviceSpan) else ZONE_LINE
        box = {"boxstyle": "square,pad=0.15", "facecolor": "#FFFFFF", "edgecolor": edge,
               "linewidth": 0.5, "alpha": 0.85}
        out.append(ax.text(x, y, z.name, fontsize="x-small", ha="left", va="top", bbox=box,
                           color=edge))
    return out


def _label_axes(ax: Any, grid: Grid) -> Any:
    """pfn ticks on the left, physical addresses on the right; returns the right axis."""
    ticks = row_ticks(grid)
    rows = [r for r, _ in ticks]
    ax.set_yticks(rows, labels=[f"{pfn:#x}" for _, pfn in ticks], fontsize="x-small")
    ax.set_ylabel("pfn at row start", fontsize="small")
    cols = _col_ticks(grid.width)
    ax.set_xticks(cols, labels=[f"+{c * grid.pages_per_cell:#x}" for c in cols],
                  fontsize="x-small")
    ax.set_xlabel(f"pages into the row (one cell = {describe_cell(grid)})", fontsize="small")
    right = ax.secondary_yaxis("right")
    shift = grid.page_shift
    right.set_yticks(rows, labels=[format_addr(pfn << shift) for _, pfn in ticks],
                     fontsize="x-small")
    right.set_ylabel("physical address", fontsize="small")
    return right


def _col_ticks(width: int, max_ticks: int = 8) -> list[int]:
    step = 1
    while -(-width // step) > max_ticks:
        step *= 2
    return list(range(0, width, step))
