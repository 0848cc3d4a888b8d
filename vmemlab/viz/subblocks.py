"""Draw one virtio-mem device's subblock map, and plugged vs requested size over time.

``draw_subblocks(ax, src, device)`` draws ``vmemlab.viz.vmemgrid``'s grid:
one row per memory block (big block in BBM), one cell per subblock, a
narrow strip on the left with each block's own class (its zone), the
device region (wine) and its usable region (dashed black) outlined, thin
lines between blocks, memory block ids on the left axis and physical
addresses on the right.  ``update_subblocks`` swaps in a new state with
``set_data``.  ``draw_plug_series`` plots a ``VmemSeries`` (requested-size,
size, usable region) with ``draw_timeseries``.  Every function takes an
Axes and returns what it drew.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib import patheffects
from matplotlib.collections import LineCollection, PatchCollection
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from ..constants import GiB, MiB, format_size
from .classes import SUBBLOCK_CLASSES, CellClass
from .figures import LABEL_PT, TICK_PT, TITLE_PT
from .fragplots import ChartArtists, draw_timeseries
from .grid import MAX_SIDE
from .heatmap import HATCH_MAX_CELLS, _draw_hatches, beside_right_axis
from .palette import (
    BLOCK_LINE,
    CLASS_HATCHES,
    DEVICE_LINE,
    HATCH_EDGE,
    USABLE_LINE,
    add_legend,
    class_cmap,
    note_classes,
    shown,
)
from .vmemgrid import SubblockGrid, SubblockOverlay, row_labels, subblock_grid, subblock_overlay
from .vmemseries import VmemSeries

C = CellClass
# Content mode: what plugged online subblocks can hold, then the block classes.
CONTENT_CLASSES = (C.NOT_PRESENT, C.PAGE_OFFLINE, C.SB_PLUGGED, C.OFFLINE, C.FREE, C.ISOLATED,
                   C.MOVABLE, C.BALLOON, C.RECLAIMABLE, C.UNMOVABLE, C.CONTIG, C.PINNED,
                   C.RESERVED, C.SB_KERNEL, C.SB_MOVABLE)
def strip_x(width: int) -> tuple[float, float]:
    """Where the block-state strip goes, left of column 0, in cell units (about 2% wide)."""
    w = max(0.25, 0.02 * width)
    return -0.5 - 1.5 * w, -0.5 - 0.5 * w
_HALO = [patheffects.withStroke(linewidth=3.2, foreground="#FFFFFF")]


@dataclass
class SubblockArtists:
    """What ``draw_subblocks`` drew, and how to recompute its grid."""

    ax: Any
    image: Any
    strip: Any
    grid: SubblockGrid
    device_line: Any
    usable_line: Any
    block_lines: Any
    hatches: list[Any]
    legend: Any
    address_axis: Any
    options: dict[str, Any] = field(default_factory=dict)
    overlay: SubblockOverlay | None = None
    legend_shows: tuple[CellClass, ...] = ()

    def artists(self) -> list[Any]:
        """Everything drawn over the axes' background, in drawing order."""
        out = [self.image, self.strip, *self.hatches, self.block_lines, self.usable_line,
               self.device_line]
        return [a for a in out if a is not None]


def draw_subblocks(ax: Any, src: Any, device: int | str | Any = 0, *, content: bool = False,
                   max_side: int = MAX_SIDE, legend: bool | str = True,
                   hatch_max_cells: int = HATCH_MAX_CELLS, title: str | None = None,
                   compact: bool = False) -> SubblockArtists:
    """Draw the subblock map of one virtio-mem device of ``src`` (Machine, Snapshot, Frame).

    ``content=True`` colours plugged online subblocks by what their pages
    hold (free, movable, unmovable...) instead of by their block's zone.
    ``legend`` is True (to the right), "below" (under the figure) or False.
    ``compact`` leaves out the address axis and shortens the axis labels,
    for maps side by side.
    """
    grid = subblock_grid(src, device, content=content, max_side=max_side)
    sx = strip_x(grid.width)
    options = {"device": grid.device, "content": content, "max_side": max_side,
               "hatch_max_cells": hatch_max_cells, "strip_x": sx}
    cmap, norm = class_cmap()
    ax.set_facecolor("#FFFFFF")
    image = ax.imshow(grid.cells, cmap=cmap, norm=norm, interpolation="nearest",
                      aspect="auto")
    strip = ax.imshow(grid.strip.reshape(-1, 1), cmap=cmap, norm=norm,
                      interpolation="nearest", aspect="auto",
                      extent=(*sx, grid.rows - 0.5, -0.5))
    note_classes(ax, grid.cells, grid.strip)
    hatches = _draw_hatches(ax, grid, hatch_max_cells) + _strip_hatches(ax, grid, sx)
    ov = subblock_overlay(grid)
    block_lines = ax.add_collection(LineCollection(ov.block_paths, colors=BLOCK_LINE,
                                                   linewidths=0.5))
    usable_line = ax.add_collection(LineCollection(
        [p for p in (ov.usable_path,) if p is not None], colors=USABLE_LINE, linewidths=1.4,
        linestyles="dashed", path_effects=_HALO))
    device_line = ax.add_collection(LineCollection(
        [p for p in (ov.device_path,) if p is not None], colors=DEVICE_LINE, linewidths=2.0,
        path_effects=_HALO))
    address_axis = _label_axes(ax, grid, compact)
    ax.set_xlim(sx[0] - 0.05 * (sx[1] - sx[0]) - 0.02, grid.width - 0.5)
    ax.set_ylim(grid.rows - 0.5, -0.5)
    ax.set_title(title or f"{grid.device}: {grid.column_name}s ({grid.view.mode})",
                 fontsize=TITLE_PT)
    options["legend"] = legend
    art = SubblockArtists(ax, image, strip, grid, device_line, usable_line, block_lines,
                          hatches, None, address_axis, options, ov)
    _legend(art)
    return art


def _legend(art: SubblockArtists) -> None:
    """(Re)draw the legend: the classes the map shows now, then the two outlines."""
    if art.legend is not None:
        art.legend.remove()
        art.legend = None
    grid, legend = art.grid, art.options["legend"]
    classes = CONTENT_CLASSES if grid.content else SUBBLOCK_CLASSES
    art.legend_shows = tuple(shown(classes, art.ax))
    if not legend:
        return
    extra = [Line2D([], [], color=DEVICE_LINE, linewidth=2.0, label="device region"),
             Line2D([], [], color=USABLE_LINE, linewidth=1.4, linestyle="dashed",
                    label="usable region")]
    below = legend == "below"
    art.legend = add_legend(art.ax, art.legend_shows,
                            f"{grid.column_name} (strip: the {grid.unit_name})",
                            extra=extra, where="below" if below else "right",
                            **({"ncols": 2} if below else {"bbox_to_anchor": (
                                beside_right_axis(art.ax, 0.0, art.address_axis), 1.0)}))


def update_subblocks(art: SubblockArtists, src: Any) -> SubblockGrid:
    """Show ``src`` in an existing subblock map: new image data, same artists."""
    o = art.options
    grid = subblock_grid(src, o["device"], content=o["content"], max_side=o["max_side"])
    if grid.cells.shape != art.grid.cells.shape:
        raise ValueError(f"{grid.device} changed shape ({art.grid.cells.shape} -> "
                         f"{grid.cells.shape}): draw it again")
    art.image.set_data(grid.cells)
    art.strip.set_data(grid.strip.reshape(-1, 1))
    note_classes(art.ax, grid.cells, grid.strip)
    for h in art.hatches:
        h.remove()
    art.hatches = (_draw_hatches(art.ax, grid, o["hatch_max_cells"])
                   + _strip_hatches(art.ax, grid, o["strip_x"]))
    ov = subblock_overlay(grid)
    if art.overlay is None or not _same_path(ov.usable_path, art.overlay.usable_path):
        art.usable_line.set_segments([p for p in (ov.usable_path,) if p is not None])
        art.overlay = ov              # a new overlay object tells renderers to redraw it
    art.grid = grid
    if tuple(shown(CONTENT_CLASSES if grid.content else SUBBLOCK_CLASSES, art.ax)) \
            != art.legend_shows:
        _legend(art)
    return grid


def _same_path(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None
                                         and a.shape == b.shape and bool((a == b).all()))


def _strip_hatches(ax: Any, grid: SubblockGrid, sx: tuple[float, float]) -> list[Any]:
    """The kernel-zone hatch on strip rows too, so zone never relies on hue alone."""
    rows = np.flatnonzero(grid.strip == C.SB_KERNEL)
    if not rows.size or grid.rows > 64:
        return []
    x0, x1 = sx
    rects = [Rectangle((x0, r - 0.5), x1 - x0, 1.0) for r in rows.tolist()]
    return [ax.add_collection(PatchCollection(rects, facecolor="none",
                                              edgecolor=HATCH_EDGE[C.SB_KERNEL],
                                              hatch=CLASS_HATCHES[C.SB_KERNEL],
                                              linewidth=0.0))]


def _label_axes(ax: Any, grid: SubblockGrid, compact: bool = False) -> Any:
    """Memory block ids on the left, physical addresses on the right, columns below.

    ``compact``: no address axis (None is returned) and short axis labels.
    """
    step = 1
    while -(-grid.rows // step) > 12:
        step *= 2
    rows = list(range(0, grid.rows, step))
    left, right_labels = row_labels(grid, rows)
    ax.set_yticks(rows, labels=left, fontsize=TICK_PT)
    if not compact:
        ax.set_ylabel(f"{grid.unit_name} (first memory block of the row)"
                      if grid.view.mode == "BBM" else "memory block", fontsize=LABEL_PT)
    cstep = 1
    while -(-grid.width // cstep) > 8:
        cstep *= 2
    cols = list(range(0, grid.width, cstep))
    ax.set_xticks(cols, labels=[str(c) for c in cols], fontsize=TICK_PT)
    per = (f"{grid.units_per_row} {grid.unit_name}s per row, " if grid.units_per_row > 1
           else "")
    cell = format_size(grid.pages_per_cell << grid.page_shift)
    ax.set_xlabel(f"{grid.column_name} ({cell})" if compact else
                  f"{grid.column_name} in the {grid.unit_name} ({per}one cell = {cell})",
                  fontsize=LABEL_PT)
    if compact:
        return None
    right = ax.secondary_yaxis("right")
    right.set_yticks(rows, labels=right_labels, fontsize=TICK_PT)
    right.set_ylabel("physical address", fontsize=LABEL_PT)
    return right


# ------------------------------------------------------------------ series
def draw_plug_series(ax: Any, series: VmemSeries, *, unit: str | None = None,
                     usable: bool = True, legend: bool = True,
                     markers: bool = False) -> ChartArtists:
    """requested-size, size (plugged) and the usable region of one device over time.

    ``unit`` is "MiB" or "GiB" (default: GiB when the region is at least
    4 GiB).  Steps hold each value until the next sample; ``markers`` dots
    the samples.
    """
    unit = unit or ("GiB" if series.region_size >= 4 * GiB else "MiB")
    scale = {"MiB": MiB, "GiB": GiB}.get(unit)
    if scale is None:
        raise ValueError(f"unit={unit!r} is not one of ['MiB', 'GiB']")
    lines = {"requested-size": series.requested / scale, "size (plugged)": series.plugged / scale}
    if usable:
        lines["usable region"] = series.usable / scale
    out = draw_timeseries(ax, series.time, lines, ylabel=unit, legend=legend, markers=markers)
    ax.set_ylim(-0.02 * series.region_size / scale, 1.05 * series.region_size / scale)
    ax.set_title(f"{series.device}: plugged vs requested", fontsize=TITLE_PT)
    return out
