"""Draw a heatmap of physical memory on a matplotlib Axes, and update it in place.

``draw_heatmap(ax, src)`` draws the grid of ``vmemlab.viz.grid`` with the
palette's colours (``interpolation="nearest"``: no invented colours), zone
boundaries (solid), memory-block edges (dashed) and the region of each
virtio-mem device (a purple outline) over it, zone and device names in the
right margin (never over the data), pfns of row starts on the left axis and
physical addresses on the right (ticks on the rows' top edges), hatches and
a line around every cell on small maps, and a legend of the classes the
picture shows.  ``outline_range(art, start, end)`` outlines a pfn range
(what a caller asked for).  It
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
from .figures import LABEL_PT, TICK_PT, TITLE_PT
from .grid import (
    MAX_SIDE,
    Grid,
    Overlay,
    describe_cell,
    format_addr,
    heatmap_grid,
    overlay_paths,
    range_outline,
    row_ticks,
)
from .palette import (
    BLOCK_LINE,
    CELL_LINE,
    CLASS_HATCHES,
    DEVICE_LINE,
    FILL_FLOOR,
    HATCH_EDGE,
    RANGE_LINE,
    ZONE_LINE,
    add_legend,
    class_cmap,
    note_classes,
    shown,
)
from .source import DeviceSpan, ZoneSpan

HATCH_MAX_CELLS = 64 * 64
CHAR_EM = 0.62        # a tick label character's width, in font sizes (DejaVu Sans digits)
LEADER_PT = 10.0      # the line from the map's edge to a zone name
RANGE_STYLE = (0, (4.0, 1.5))
_HALO = [patheffects.withStroke(linewidth=3.5, foreground="#FFFFFF")]


@dataclass(frozen=True)
class RangeOutline:
    """A pfn range outlined on a heatmap (``outline_range``)."""

    start_pfn: int
    end_pfn: int
    label: str
    colour: str


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
    cell_lines: Any = None
    ranges: list[RangeOutline] = field(default_factory=list)
    range_lines: Any = None
    legend_shows: tuple[CellClass, ...] = ()

    def artists(self) -> list[Any]:
        """Everything drawn over the axes' background, in drawing order."""
        out = [self.image, *self.hatches, self.cell_lines, self.block_lines, self.device_lines,
               self.zone_lines, self.range_lines, *self.zone_labels]
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
                 title: str | None = None,
                 outline: Sequence[tuple[int, int] | tuple[int, int, str]] = (),
                 **kw: Any) -> Any:
    """Draw the memory of ``src`` (Machine, Snapshot or Frame) on ``ax``.

    ``zoom`` is "pageblock" (the default), "page", or "subblock" (one
    virtio-mem device, ``device=`` and ``content=`` as in
    ``vmemlab.viz.subblocks.draw_subblocks``, which then does the drawing).
    ``legend`` is True (to the right), "below" (under the figure) or False;
    it lists only the classes the picture shows.  ``outline`` lists pfn
    ranges ``(start, end)`` or ``(start, end, label)`` to outline, as
    ``outline_range`` does.  Zone and device names sit in the right margin,
    off the data, each joined to the row its span starts in.
    """
    if zoom == "subblock":
        from .subblocks import draw_subblocks
        return draw_subblocks(ax, src, max_side=max_side, legend=legend,
                              hatch_max_cells=hatch_max_cells, title=title, **kw)
    if kw:
        raise TypeError(f"draw_heatmap() got unexpected keyword arguments {sorted(kw)}")
    options = {"zoom": zoom, "start_pfn": start_pfn, "end_pfn": end_pfn,
               "max_side": max_side, "width": width, "reduce": reduce,
               "hatch_max_cells": hatch_max_cells, "legend": legend}
    grid = heatmap_grid(src, zoom, start_pfn, end_pfn, max_side=max_side, width=width,
                        reduce=reduce)
    cmap, norm = class_cmap()
    ax.set_facecolor("#FFFFFF")
    image = ax.imshow(grid.cells, cmap=cmap, norm=norm, interpolation="nearest",
                      aspect="auto", alpha=image_alpha(grid))
    note_classes(ax, _live_cells(grid))
    hatches = _draw_hatches(ax, grid, hatch_max_cells)
    cell_lines = ax.add_collection(LineCollection(
        cell_grid_paths(grid), colors=CELL_LINE, linewidths=0.5)) if small_grid(grid) else None
    ov = overlay_paths(grid, src)
    block_lines = ax.add_collection(LineCollection(
        ov.block_paths, colors=BLOCK_LINE, linewidths=0.8, linestyles="dashed"))
    device_lines = ax.add_collection(LineCollection(
        ov.device_paths, colors=DEVICE_LINE, linewidths=1.8, path_effects=_HALO))
    zone_lines = ax.add_collection(LineCollection(
        ov.zone_paths, colors=ZONE_LINE, linewidths=1.5, path_effects=_HALO))
    ax.set_xlim(-0.5, grid.width - 0.5)
    ax.set_ylim(grid.rows - 0.5, -0.5)
    labels = _zone_labels(ax, grid, ov.zones, ov.devices)
    options["margin"] = margin_for(ax, [*ov.zones, *ov.devices])
    address_axis = _label_axes(ax, grid, options["margin"])
    if title:
        ax.set_title(title, fontsize=TITLE_PT)
    art = HeatmapArtists(ax, image, grid, zone_lines, block_lines, labels, hatches, None,
                         address_axis, options, device_lines, ov, cell_lines)
    for r in outline:
        outline_range(art, *r, relegend=False)
    _legend(art)
    return art


def _live_cells(grid: Grid) -> np.ndarray:
    """The cells that cover memory (the padding after the last one is not part of the picture)."""
    return grid.cells.reshape(-1)[:grid.nr_cells]


def legend_classes(grid: Grid) -> tuple[CellClass, ...]:
    """The classes a heatmap's legend may list, in order (``add_legend`` keeps those shown)."""
    if grid.zoom == "page":
        return PAGE_CLASSES
    return PAGEBLOCK_CLASSES + (CellClass.PB_UNKNOWN,)


def _legend(art: HeatmapArtists) -> None:
    """(Re)draw the legend: the classes shown now, the device outline, outlined ranges."""
    legend = art.options["legend"]
    if art.legend is not None:
        art.legend.remove()
        art.legend = None
    art.legend_shows = tuple(shown(legend_classes(art.grid), art.ax))
    if not legend:
        return
    extra = [Line2D([], [], color=DEVICE_LINE, linewidth=1.8, label="virtio-mem region")] \
        if art.overlay is not None and art.overlay.devices else []
    extra += [Line2D([], [], color=r.colour, linewidth=2.2, linestyle=RANGE_STYLE, label=r.label)
              for r in art.ranges]
    title = "page" if art.grid.zoom == "page" else "pageblock (pale: mostly free)"
    where = "below" if legend == "below" else "right"
    place = {} if where == "below" else {"bbox_to_anchor": (beside_right_axis(
        art.ax, art.options.get("margin", 0.0), art.address_axis), 1.0)}
    art.legend = add_legend(art.ax, art.legend_shows, title, extra=extra, where=where, **place)


def outline_range(art: HeatmapArtists, start_pfn: int, end_pfn: int,
                  label: str | None = None, colour: str = RANGE_LINE,
                  relegend: bool = True) -> Any:
    """Outline the pfn range ``[start_pfn, end_pfn)`` on a heatmap (the cells it touches).

    The outline follows the grid when the heatmap is updated; the legend
    names it (``label``, default "requested [start, end)").  Returns the
    line collection of every outlined range.
    """
    start_pfn, end_pfn = int(start_pfn), int(end_pfn)
    if not start_pfn < end_pfn:
        raise ValueError(f"range [{start_pfn:#x}, {end_pfn:#x}) is empty")
    art.ranges.append(RangeOutline(start_pfn, end_pfn,
                                   label or f"requested [{start_pfn:#x}, {end_pfn:#x})",
                                   colour))
    _draw_ranges(art)
    if relegend:
        _legend(art)
    return art.range_lines


def _draw_ranges(art: HeatmapArtists) -> None:
    if art.range_lines is not None:
        art.range_lines.remove()
        art.range_lines = None
    if not art.ranges:
        return
    paths = [range_outline(art.grid, r.start_pfn, r.end_pfn) for r in art.ranges]
    keep = [(p, r.colour) for p, r in zip(paths, art.ranges, strict=True) if p is not None]
    art.range_lines = art.ax.add_collection(LineCollection(
        [p for p, _ in keep], colors=[c for _, c in keep], linewidths=2.2,
        linestyles=RANGE_STYLE, path_effects=_HALO))


def update_heatmap(art: Any, src: Any) -> Grid:
    """Show ``src`` in an existing heatmap: new image data, same artists.

    The axes are redrawn only when the grid's shape or range changed;
    outlines move when zones, memory blocks or devices changed (memory was
    onlined, added or removed); hatches follow the new cells; the legend is
    drawn again when the classes shown changed.
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
    note_classes(art.ax, _live_cells(grid))
    if not same:
        _redraw_overlays(art, src)
    else:
        ov = overlay_paths(grid, src)
        old = art.overlay
        if old is None or (ov.zones, ov.block_edges, ov.devices) != (
                old.zones, old.block_edges, old.devices):
            _move_outlines(art, ov)
    if tuple(shown(legend_classes(grid), art.ax)) != art.legend_shows:
        _legend(art)
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
    art.image.set_extent((-0.5, grid.width - 0.5, grid.rows - 0.5, -0.5))
    ax.set_xlim(-0.5, grid.width - 0.5)
    ax.set_ylim(grid.rows - 0.5, -0.5)
    ov = overlay_paths(grid, src)
    _move_outlines(art, ov)
    if art.cell_lines is not None:
        art.cell_lines.remove()
        art.cell_lines = None
    if small_grid(grid):
        art.cell_lines = ax.add_collection(LineCollection(
            cell_grid_paths(grid), colors=CELL_LINE, linewidths=0.5))
    _draw_ranges(art)
    art.address_axis.remove()
    art.options["margin"] = margin_for(ax, [*ov.zones, *ov.devices])
    art.address_axis = _label_axes(ax, grid, art.options["margin"])


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


# ------------------------------------------------------------------ small maps
CELL_GRID_MAX = 48


def small_grid(grid: Grid) -> bool:
    """A map small enough to draw a line around every cell (the cells can be counted)."""
    return grid.width <= CELL_GRID_MAX and grid.rows <= CELL_GRID_MAX


def cell_grid_paths(grid: Grid) -> list[np.ndarray]:
    """A line between every two columns and every two rows (inner lines only)."""
    right, bottom = grid.width - 0.5, grid.rows - 0.5
    return ([np.array([(c - 0.5, -0.5), (c - 0.5, bottom)]) for c in range(1, grid.width)]
            + [np.array([(-0.5, r - 0.5), (right, r - 0.5)]) for r in range(1, grid.rows)])


# ------------------------------------------------------------------ names in the margin
def _axes_points(ax: Any) -> tuple[float, float]:
    """The axes' size in points, as the figure lays it out before any layout engine runs."""
    fig = ax.figure
    pos = ax.get_position()
    return fig.get_figwidth() * 72.0 * pos.width, fig.get_figheight() * 72.0 * pos.height


def margin_for(ax: Any, spans: Sequence[Any]) -> float:
    """How far right of the axes (in axes widths) the address axis goes: room for names."""
    if not spans:
        return 0.0
    width_pt, _ = _axes_points(ax)
    longest = max(len(s.name) for s in spans)
    return (LEADER_PT + 6.0 + longest * TICK_PT * CHAR_EM) / max(width_pt, 1.0)


def beside_right_axis(ax: Any, margin: float, right_axis: Any) -> float:
    """Where a legend right of the map starts (axes widths): past the address axis and its
    label, so neither is covered."""
    if right_axis is None:
        return 1.0 + margin + 0.04
    labels = [t.get_text() for t in right_axis.get_yticklabels()]
    chars = max((len(t) for t in labels), default=0)
    width_pt, _ = _axes_points(ax)
    return 1.0 + margin + (chars * TICK_PT * CHAR_EM + 2.5 * LABEL_PT + 16.0) / max(width_pt, 1)


def dodge(wanted: Sequence[float], gap: float, lo: float = 0.0,
          hi: float = 1.0) -> list[float]:
    """Positions as near ``wanted`` (top first, descending) as keeps them ``gap`` apart in [lo, hi].

    A top-down pass pushes each label below the one above; a bottom-up pass
    then lifts labels that fell below ``lo``.  Positions keep their order.
    """
    out: list[float] = []
    for w in wanted:
        y = min(w, hi - gap / 2)
        if out:
            y = min(y, out[-1] - gap)
        out.append(y)
    floor = lo + gap / 2
    for i in range(len(out) - 1, -1, -1):
        below = out[i + 1] + gap if i + 1 < len(out) else floor
        out[i] = max(out[i], below)
    return out


def _zone_labels(ax: Any, grid: Grid, zones: Sequence[ZoneSpan],
                 devices: Sequence[DeviceSpan] = ()) -> list[Any]:
    """Zone names (black) and device names (purple) right of the map, off the data.

    Each name sits at the top edge of the row its span starts in, or as
    near as keeps the names apart, with a short line to the map's edge there.
    """
    named = sorted([*zones, *devices], key=lambda s: s.start_pfn)
    if not named:
        return []
    _, height_pt = _axes_points(ax)
    rows = [grid.rowcol(max(z.start_pfn, grid.start_pfn))[0] for z in named]
    wanted = [1.0 - r / grid.rows for r in rows]          # the top edge of the start row
    ys = dodge(wanted, gap=(TICK_PT * 1.5) / max(height_pt, 1.0))
    x_text = 1.0 + LEADER_PT / max(_axes_points(ax)[0], 1.0)
    out = []
    for z, want, y in zip(named, wanted, ys, strict=True):
        edge = DEVICE_LINE if isinstance(z, DeviceSpan) else ZONE_LINE
        out.append(ax.annotate(
            z.name, xy=(1.0, want), xycoords="axes fraction", xytext=(x_text, y),
            textcoords="axes fraction", fontsize=TICK_PT, ha="left", va="center",
            color=edge, annotation_clip=False,
            bbox={"boxstyle": "square,pad=0.15", "facecolor": "#FFFFFF", "edgecolor": edge,
                  "linewidth": 0.6},
            arrowprops={"arrowstyle": "-", "color": edge, "linewidth": 0.8,
                        "shrinkA": 0, "shrinkB": 0}))
    return out


# ------------------------------------------------------------------ ticks
def _label_axes(ax: Any, grid: Grid, margin: float = 0.0) -> Any:
    """pfn ticks on the left, physical addresses on the right, at row starts; returns the
    right axis.  ``margin`` (axes widths) moves the right axis out past the zone names."""
    width_pt, height_pt = _axes_points(ax)
    ticks = row_ticks(grid, max(2, int(height_pt // (TICK_PT * 2.2))))
    ys = [r - 0.5 for r, _ in ticks]                       # the top edge of the row
    ax.set_yticks(ys, labels=[f"{pfn:#x}" for _, pfn in ticks], fontsize=TICK_PT)
    ax.set_ylabel("pfn at row start", fontsize=LABEL_PT)
    cols = col_ticks(grid, width_pt)
    ax.set_xticks([c - 0.5 for c in cols],
                  labels=[f"+{c * grid.pages_per_cell:#x}" for c in cols], fontsize=TICK_PT)
    ax.set_xlabel(f"pages into the row (one cell = {describe_cell(grid)})", fontsize=LABEL_PT)
    right = ax.secondary_yaxis(1.0 + margin)
    shift = grid.page_shift
    right.set_yticks(ys, labels=[format_addr(pfn << shift) for _, pfn in ticks],
                     fontsize=TICK_PT)
    right.set_ylabel("physical address", fontsize=LABEL_PT)
    return right


def col_ticks(grid: Grid, width_pt: float) -> list[int]:
    """Columns to label, every 2**k-th, as many as fit ``width_pt`` without touching."""
    label = len(f"+{(grid.width - 1) * grid.pages_per_cell:#x}")
    room = label * TICK_PT * CHAR_EM + TICK_PT * 1.5
    fit = max(1, int(width_pt // room))
    step = 1
    while -(-grid.width // step) > fit:
        step *= 2
    return list(range(0, grid.width, step))
