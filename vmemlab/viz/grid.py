"""Heatmap grids: physical memory as a 2-D array of cell classes.

A grid lays a pfn range out row by row (row-major, like a page map): cell
``(row, col)`` covers pages ``start_pfn + (row * width + col) * pages_per_cell``
onwards.  Two zooms:

* ``"page"``: one cell per page, or per 2**k pages on big machines;
* ``"pageblock"`` (the default): one cell per pageblock, coloured by its
  migratetype, with ``fill`` = the share of its pages that are not free.

Big machines are reduced to at most ``max_side`` x ``max_side`` cells (512 by
default) by giving each cell the highest-priority class among its pages
(``classes.PRIORITY``: what would stop an unplug wins), or the most common
one (``reduce="mode"``).  Never by interpolation: every cell holds a class
that some page really has.  Widths are powers of two, so rows start at
pageblock and memory-block boundaries when the range does.

Zone boundaries, memory-block edges, virtio-mem device regions and axis
ticks are data here too (``overlay_paths``, ``range_outline``,
``row_ticks``), so this module needs only numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..constants import PageKind, PageState, format_size
from .classes import (
    CLASS_LABELS,
    PB_BASE,
    PB_CODES,
    RANK,
    UNRANK,
    CellClass,
    classify_pages,
    mark_isolated,
    mark_no_flags,
    mark_runs,
)
from .source import (
    DeviceSpan,
    MemView,
    ZoneSpan,
    mem_view,
    memory_block_edges,
    present_memory_blocks,
    zone_spans,
)

MAX_SIDE = 512
ZOOMS = ("page", "pageblock")
REDUCTIONS = ("priority", "mode")
_FREE, _ALLOCATED = int(PageState.FREE), int(PageState.ALLOCATED)


@dataclass(frozen=True)
class Grid:
    """A pfn range as ``cells`` (rows x width CellClass codes).

    ``fill`` (pageblock zoom only) is the share of each cell's pages that are
    not free, 0..1.  Cells past ``end_pfn`` are NOT_PRESENT padding.
    """

    zoom: str
    cells: np.ndarray
    fill: np.ndarray | None
    start_pfn: int
    end_pfn: int
    pages_per_cell: int
    page_shift: int

    @property
    def rows(self) -> int:
        return int(self.cells.shape[0])

    @property
    def width(self) -> int:
        return int(self.cells.shape[1])

    @property
    def nr_cells(self) -> int:
        """Cells that cover memory (the rest of the last row is padding)."""
        return -(-(self.end_pfn - self.start_pfn) // self.pages_per_cell)

    @property
    def row_pages(self) -> int:
        return self.width * self.pages_per_cell

    def cell_index(self, pfn: int) -> int:
        """The linear index of the cell holding ``pfn``."""
        return (pfn - self.start_pfn) // self.pages_per_cell

    def rowcol(self, pfn: int) -> tuple[int, int]:
        """The (row, col) of the cell holding ``pfn``."""
        return divmod(self.cell_index(pfn), self.width)

    def pfn_at(self, row: int, col: int) -> int:
        """The first pfn of cell (row, col)."""
        return self.start_pfn + (row * self.width + col) * self.pages_per_cell

    def contains(self, pfn: int) -> bool:
        return self.start_pfn <= pfn < self.end_pfn


# ------------------------------------------------------------------ layout
def plan_cells(nr_units: int, max_side: int = MAX_SIDE,
               width: int | None = None) -> tuple[int, int, int]:
    """(units per cell, width, rows) for ``nr_units`` units on a grid.

    Units per cell is the smallest power of two that keeps the grid within
    ``max_side`` x ``max_side``; the width defaults to the power of two at or
    above the square root of the cell count.
    """
    if nr_units <= 0:
        raise ValueError(f"nr_units={nr_units} must be positive")
    if max_side < 1 or (width is not None and not 1 <= width <= max_side):
        raise ValueError(f"width={width} must be within 1..max_side={max_side}")
    per = 1
    while True:
        ncells = -(-nr_units // per)
        w = width or min(max_side, 1 << max(0, int(np.ceil(np.log2(np.sqrt(ncells))))))
        rows = -(-ncells // w)
        if rows <= max_side:
            return per, w, rows
        per *= 2


def _to_2d(flat: np.ndarray, width: int, rows: int, pad: float | int) -> np.ndarray:
    out = np.full(rows * width, pad, flat.dtype)
    out[:flat.size] = flat
    return out.reshape(rows, width)


def _reduce_ranked(ranked: np.ndarray, per: int, how: str) -> np.ndarray:
    """Reduce ranked page classes to one class code per ``per`` pages."""
    if per == 1:
        return UNRANK[ranked]
    pad = (-ranked.size) % per
    if pad:
        ranked = np.concatenate([ranked, np.zeros(pad, ranked.dtype)])
    blocks = ranked.reshape(-1, per)
    if how == "priority":
        return UNRANK[blocks.max(axis=1)]
    best = np.zeros(blocks.shape[0], np.uint8)
    best_n = np.zeros(blocks.shape[0], np.int64)
    for rank in np.unique(ranked).tolist():   # ascending: ties go to the higher rank
        n = np.count_nonzero(blocks == rank, axis=1)
        take = n >= best_n
        best[take], best_n[take] = rank, n[take]
    return UNRANK[best]


# ------------------------------------------------------------------ grids
def classify_view(view: MemView, lo: int, hi: int, ranked: bool = False) -> np.ndarray:
    """Page classes of ``[lo, hi)`` (pageblock-aligned ``lo``), every rule applied.

    The table lookup, then isolation (a pageblock property), pages held by
    alloc_contig_range() callers, and a real machine's flagless pages.
    """
    codes = classify_pages(view.state[lo:hi], view.kind[lo:hi], view.flags[lo:hi], ranked)
    mark_isolated(codes, view.pb_mt, view.geo.pageblock_nr_pages,
                  lo // view.geo.pageblock_nr_pages, ranked)
    mark_runs(codes, view.contig, lo, CellClass.CONTIG, CellClass.UNMOVABLE, ranked)
    if view.real:
        mark_no_flags(codes, view.flags[lo:hi], ranked)
    return codes


def page_classes(src: Any, start_pfn: int = 0, end_pfn: int | None = None) -> np.ndarray:
    """The CellClass code of every page in ``[start_pfn, end_pfn)`` (1-D)."""
    view = mem_view(src)
    start_pfn, end_pfn = _check_range(view, start_pfn, end_pfn)
    per_pb = view.geo.pageblock_nr_pages
    lo, hi = start_pfn // per_pb * per_pb, -(-end_pfn // per_pb) * per_pb
    return classify_view(view, lo, hi)[start_pfn - lo:end_pfn - lo]


def page_grid(src: Any, start_pfn: int = 0, end_pfn: int | None = None, *,
              max_side: int = MAX_SIDE, width: int | None = None,
              reduce: str = "priority") -> Grid:
    """One cell per page (or per 2**k pages when the range is large)."""
    view = mem_view(src)
    start_pfn, end_pfn = _check_range(view, start_pfn, end_pfn)
    _check_choice("reduce", reduce, REDUCTIONS)
    per, w, rows = plan_cells(end_pfn - start_pfn, max_side, width)
    per_pb = view.geo.pageblock_nr_pages
    lo, hi = start_pfn // per_pb * per_pb, -(-end_pfn // per_pb) * per_pb
    ranked = classify_view(view, lo, hi, ranked=True)
    flat = _reduce_ranked(ranked[start_pfn - lo:end_pfn - lo], per, reduce)
    cells = _to_2d(flat, w, rows, int(CellClass.NOT_PRESENT))
    return Grid("page", cells, None, start_pfn, end_pfn, per, view.geo.page_shift)


def pageblock_classes(src: Any, start_pfn: int = 0,
                      end_pfn: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per pageblock of the range: its class code and its fill (share not free).

    A pageblock with buddy memory gets ``PB_BASE + migratetype`` (PB_UNKNOWN
    for a type the model does not know, as on a real machine); one without
    gets the page class of what it holds (reserved, PageOffline, offline, not
    present, in that order) and fill 1.
    """
    view = mem_view(src)
    per = view.geo.pageblock_nr_pages
    start_pfn, end_pfn = _check_range(view, start_pfn, end_pfn)
    lo, hi = start_pfn // per, -(-end_pfn // per)
    state = view.state[lo * per:hi * per].reshape(-1, per)
    free = np.count_nonzero(state == _FREE, axis=1)
    used = np.count_nonzero(state == _ALLOCATED, axis=1)
    codes = PB_CODES[view.pb_mt[lo:hi]]
    fill = 1.0 - free.astype(np.float32) / np.float32(per)
    dead = np.flatnonzero(free + used == 0)
    if dead.size:
        kind = view.kind[lo * per:hi * per].reshape(-1, per)
        codes[dead] = _dead_pageblock_classes(state[dead], kind[dead])
        fill[dead] = 1.0
    return codes, fill


def _dead_pageblock_classes(state: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """Classes of pageblocks without free or allocated pages (rows of ``state``, ``kind``)."""
    out = np.full(state.shape[0], int(CellClass.NOT_PRESENT), np.uint8)
    offline = state == PageState.PAGE_OFFLINE
    balloon = offline & (kind == PageKind.BALLOON)
    for mask, cls in ((state == PageState.OFFLINE, CellClass.OFFLINE),
                      (balloon, CellClass.BALLOON),
                      (offline & ~balloon, CellClass.PAGE_OFFLINE),
                      (state == PageState.RESERVED, CellClass.RESERVED)):    # later wins
        out[mask.any(axis=1)] = cls
    return out


def pageblock_grid(src: Any, start_pfn: int = 0, end_pfn: int | None = None, *,
                   max_side: int = MAX_SIDE, width: int | None = None) -> Grid:
    """One cell per pageblock (or per 2**k pageblocks on huge machines).

    A cell of several pageblocks shows the highest-priority class and their
    mean fill.
    """
    view = mem_view(src)
    per_pb = view.geo.pageblock_nr_pages
    start_pfn, end_pfn = _check_range(view, start_pfn, end_pfn)
    start_pfn, end_pfn = start_pfn // per_pb * per_pb, -(-end_pfn // per_pb) * per_pb
    codes, fill = pageblock_classes(view, start_pfn, end_pfn)
    k, w, rows = plan_cells(codes.size, max_side, width)
    if k > 1:
        codes = _reduce_ranked(RANK[codes], k, "priority")
        pad = (-fill.size) % k
        fill = np.concatenate([fill, np.ones(pad, fill.dtype)]).reshape(-1, k).mean(axis=1)
    cells = _to_2d(codes, w, rows, int(CellClass.NOT_PRESENT))
    fill2 = _to_2d(fill.astype(np.float32), w, rows, 1.0)
    return Grid("pageblock", cells, fill2, start_pfn, end_pfn, k * per_pb, view.geo.page_shift)


def heatmap_grid(src: Any, zoom: str = "pageblock", start_pfn: int = 0,
                 end_pfn: int | None = None, *, max_side: int = MAX_SIDE,
                 width: int | None = None, reduce: str = "priority") -> Grid:
    """The grid of ``src`` at ``zoom`` ("page" or "pageblock")."""
    _check_choice("zoom", zoom, ZOOMS)
    if zoom == "page":
        return page_grid(src, start_pfn, end_pfn, max_side=max_side, width=width, reduce=reduce)
    return pageblock_grid(src, start_pfn, end_pfn, max_side=max_side, width=width)


def _check_range(view: MemView, start_pfn: int, end_pfn: int | None) -> tuple[int, int]:
    end_pfn = view.nr_pfns if end_pfn is None else int(end_pfn)
    if not 0 <= start_pfn < end_pfn <= view.nr_pfns:
        raise ValueError(f"pfn range [{start_pfn:#x}, {end_pfn:#x}) is not inside "
                         f"[0, {view.nr_pfns:#x})")
    return int(start_pfn), end_pfn


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{what}={value!r} is not one of {list(choices)}")


# ------------------------------------------------------------------ overlays
def boundary_path(grid: Grid, pfn: int) -> np.ndarray | None:
    """The line between the cells before and from ``pfn``, in image coordinates.

    A staircase of (x, y) points (imshow's pixel centres are integers, origin
    top-left), or None when ``pfn`` is not strictly inside the grid.
    """
    c = grid.cell_index(pfn)
    if not 0 < c < grid.nr_cells:
        return None
    row, col = divmod(c, grid.width)
    right, top, bottom = grid.width - 0.5, row - 0.5, row + 0.5
    if col == 0:
        return np.array([(-0.5, top), (right, top)])
    x = col - 0.5
    return np.array([(-0.5, bottom), (x, bottom), (x, top), (right, top)])


def range_outline(grid: Grid, start_pfn: int, end_pfn: int) -> np.ndarray | None:
    """The closed outline of the cells of ``[start_pfn, end_pfn)``, in image coordinates.

    One polygon (first point repeated at the end) around the run of cells:
    a rectangle when the range fills whole rows or sits in one row, else
    the row-major shape with a notch at each end.  None when the range
    misses the grid.
    """
    start_pfn, end_pfn = max(start_pfn, grid.start_pfn), min(end_pfn, grid.end_pfn)
    if start_pfn >= end_pfn:
        return None
    r0, c0 = grid.rowcol(start_pfn)
    r1, c1 = grid.rowcol(end_pfn - 1)
    left, right = -0.5, grid.width - 0.5
    if r0 == r1:
        pts = [(c0 - 0.5, r0 - 0.5), (c1 + 0.5, r0 - 0.5), (c1 + 0.5, r0 + 0.5),
               (c0 - 0.5, r0 + 0.5)]
    else:
        pts = [(c0 - 0.5, r0 - 0.5), (right, r0 - 0.5), (right, r1 - 0.5),
               (c1 + 0.5, r1 - 0.5), (c1 + 0.5, r1 + 0.5), (left, r1 + 0.5),
               (left, r0 + 0.5), (c0 - 0.5, r0 + 0.5)]
    out: list[tuple[float, float]] = []
    for p in pts:                   # drop repeated and straight-through corners
        if out and p == out[-1]:
            continue
        if len(out) >= 2 and (out[-2][0] == out[-1][0] == p[0] or out[-2][1] == out[-1][1] == p[1]):
            out[-1] = p
        else:
            out.append(p)
    while len(out) > 3 and (out[-2][0] == out[-1][0] == out[0][0]
                            or out[-2][1] == out[-1][1] == out[0][1]):
        out.pop()
    out.append(out[0])
    return np.array(out, dtype=float)


@dataclass(frozen=True)
class Overlay:
    """What is drawn over a heatmap: zone starts, memory-block edges, device regions."""

    zones: tuple[ZoneSpan, ...]
    zone_paths: tuple[np.ndarray, ...]
    block_edges: tuple[int, ...]
    block_paths: tuple[np.ndarray, ...]
    devices: tuple[DeviceSpan, ...] = ()
    device_paths: tuple[np.ndarray, ...] = ()


def overlay_paths(grid: Grid, src: Any, max_block_edges: int = 256) -> Overlay:
    """Zone boundaries, memory-block edges and virtio-mem regions of ``src`` in ``grid``.

    Zone paths mark each zone's start and end; block edges are left out when
    there are more than ``max_block_edges`` (they would hide the picture);
    each virtio-mem device inside the grid gets the outline of its region.
    """
    view = mem_view(src)
    zones = tuple(z for z in zone_spans(view)
                  if z.end_pfn > grid.start_pfn and z.start_pfn < grid.end_pfn)
    bounds = sorted({p for z in zones for p in (z.start_pfn, z.end_pfn)})
    zone_paths = tuple(p for p in (boundary_path(grid, b) for b in bounds) if p is not None)
    edges = memory_block_edges(view, grid.start_pfn, grid.end_pfn)
    if len(edges) > max_block_edges:
        edges = []
    block_paths = tuple(p for p in (boundary_path(grid, e) for e in edges) if p is not None)
    devices = tuple(d for d in view.devices
                    if d.end_pfn > grid.start_pfn and d.start_pfn < grid.end_pfn)
    device_paths = tuple(p for p in (range_outline(grid, d.start_pfn, d.end_pfn)
                                     for d in devices) if p is not None)
    return Overlay(zones, zone_paths, tuple(edges), block_paths, devices, device_paths)


def row_ticks(grid: Grid, max_ticks: int = 8) -> list[tuple[int, int]]:
    """(row, first pfn of the row) for up to ``max_ticks`` evenly spaced rows."""
    step = 1
    while -(-grid.rows // step) > max_ticks:
        step *= 2
    return [(r, grid.pfn_at(r, 0)) for r in range(0, grid.rows, step)]


def format_addr(addr: int) -> str:
    """A physical address as a size when it is round ("4 GiB"), else hex."""
    return "0" if addr == 0 else (format_size(addr) if addr % 1024 == 0 else f"{addr:#x}")


# ------------------------------------------------------------------ text
def cell_counts(grid: Grid) -> dict[CellClass, int]:
    """How many cells (padding excluded) show each class."""
    flat = grid.cells.reshape(-1)[:grid.nr_cells]
    counts = np.bincount(flat, minlength=len(CellClass))
    return {CellClass(c): int(n) for c, n in enumerate(counts) if n}


def describe_cell(grid: Grid) -> str:
    """What one cell means: "1 page (4 KiB)" or "4 pageblocks (8 MiB)"."""
    size = format_size(grid.pages_per_cell << grid.page_shift)
    if grid.zoom == "page":
        unit = "page" if grid.pages_per_cell == 1 else f"{grid.pages_per_cell} pages"
        return f"{unit} ({size})"
    return f"{grid.pages_per_cell} pages ({size})"


def heatmap_summary(grid: Grid, src: Any | None = None) -> str:
    """The text beside a heatmap: range, cell size, zones, blocks, cell counts."""
    span = (grid.end_pfn - grid.start_pfn) << grid.page_shift
    lines = [f"{grid.zoom} map of pfn [{grid.start_pfn:#x}, {grid.end_pfn:#x}) "
             f"({format_size(span)}): {grid.rows} x {grid.width} cells, "
             f"one cell = {describe_cell(grid)}"]
    if grid.pages_per_cell > 1 and grid.zoom == "page":
        lines.append("a cell shows the highest-priority class among its pages")
    if src is not None:
        view = mem_view(src)
        ov = overlay_paths(grid, view)
        lines += [f"zone {z.name}: pfn [{z.start_pfn:#x}, {z.end_pfn:#x})" for z in ov.zones]
        lines += [f"virtio-mem {d.name}: pfn [{d.start_pfn:#x}, {d.end_pfn:#x}) "
                  f"({format_size((d.end_pfn - d.start_pfn) << grid.page_shift)}), usable "
                  f"{format_size((d.usable_end_pfn - d.start_pfn) << grid.page_shift)}"
                  for d in ov.devices]
        per = view.geo.pages_per_memory_block
        present = present_memory_blocks(view)[grid.start_pfn // per:-(-grid.end_pfn // per)]
        lines.append(f"memory blocks with memory: {int(present.sum())} of "
                     f"{format_size(view.geo.memory_block_size)}")
    counts = cell_counts(grid)
    lines.append("cells: " + ", ".join(f"{CLASS_LABELS[c]} {n}" for c, n in counts.items()))
    if grid.fill is not None:
        live = grid.cells.reshape(-1)[:grid.nr_cells] >= PB_BASE
        if live.any():
            mean = float(grid.fill.reshape(-1)[:grid.nr_cells][live].mean())
            lines.append(f"pageblocks in use: {mean:.0%} of their pages on average")
    return "\n".join(lines) + "\n"
