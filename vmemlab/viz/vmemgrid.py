"""virtio-mem as a grid: one row per memory block, one cell per subblock.

The *subblock zoom* shows one virtio-mem device the way its Linux driver
sees it.  In Sub Block Mode each row is a Linux memory block of the
device's region and each cell one subblock (2 MiB on x86-64 since 5.19,
4 MiB before); in Big Block Mode each row is a big block and each cell one
memory block of it.  A cell's class comes from the driver's bitmap
(``sb_plugged``) and the block's state (``mb_states``):

==========================  ===============================================
cell                        when
==========================  ===============================================
not present                 unplugged, and the block is not added to Linux
PageOffline (unplugged)     unplugged inside an added block (its memmap
                            exists; the pages are PageOffline)
plugged, not added          the PLUGGED state: an add that failed
offline section             plugged, the block added but offline
plugged, kernel zone        plugged, the block online in ZONE_NORMAL/DMA32
plugged, ZONE_MOVABLE       plugged, the block online in ZONE_MOVABLE
==========================  ===============================================

With ``content=True`` a plugged subblock of an online block shows instead
what its pages hold (free, movable, unmovable...: the page classes, the
highest priority wins), which is what decides whether it can be unplugged.
``strip`` keeps one class per row for the block itself, so the zone stays
visible either way.

The result is a ``Grid`` (row-major from the first block of the region), so
the heatmap's ticks, outlines and counts work on it; ``subblock_overlay``
gives the device region, the usable region and the block edges as paths,
``subblock_summary`` the same picture as text.  Numpy only.

Kernel: drivers/virtio/virtio_mem.c (enum virtio_mem_sbm_mb_state,
virtio_mem_sbm_test_sb_plugged(), enum virtio_mem_bbm_bb_state)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..constants import NO_ZONE, ZoneType, format_size
from ..virtio_mem import VirtioMemView
from .classes import CLASS_LABELS, RANK, UNRANK, CellClass
from .grid import MAX_SIDE, Grid, classify_view, format_addr, range_outline
from .source import MemView, mem_view, vmem_views

C = CellClass
# Block state -> class of its plugged subblocks, and of its unplugged ones.
_PLUGGED_CLASS = {
    "UNUSED": C.SB_PLUGGED, "PLUGGED": C.SB_PLUGGED,
    "OFFLINE": C.OFFLINE, "OFFLINE_PARTIAL": C.OFFLINE,
    "KERNEL": C.SB_KERNEL, "KERNEL_PARTIAL": C.SB_KERNEL,
    "MOVABLE": C.SB_MOVABLE, "MOVABLE_PARTIAL": C.SB_MOVABLE,
    "ONLINE": C.SB_KERNEL, "ONLINE_PARTIAL": C.SB_KERNEL,      # 5.8: partly plugged
    "ONLINE_MOVABLE": C.SB_MOVABLE,                            # blocks are never MOVABLE
}
_NOT_ADDED = ("UNUSED", "PLUGGED")
# The order state counts are printed in (SBM 6.12, SBM 5.8, BBM).
STATE_ORDER = ("UNUSED", "PLUGGED", "OFFLINE", "OFFLINE_PARTIAL", "KERNEL", "KERNEL_PARTIAL",
               "MOVABLE", "MOVABLE_PARTIAL", "ONLINE", "ONLINE_PARTIAL", "ONLINE_MOVABLE",
               "ADDED", "FAKE_OFFLINE")
MODE_NAMES = {"SBM": "Sub Block Mode", "BBM": "Big Block Mode"}


@dataclass(frozen=True)
class SubblockGrid(Grid):
    """One device as a grid: rows of blocks, cells of subblocks (``zoom="subblock"``).

    ``units`` holds one class per (block, column) from the driver's state,
    before any reduction; ``held`` (``content=True`` only) the same with
    plugged online cells replaced by what their pages hold; ``strip`` one
    class per row for the block itself; ``units_per_row`` is 1 unless a
    huge device was folded to fit ``max_side`` rows.
    """

    view: VirtioMemView
    units: np.ndarray
    held: np.ndarray | None
    strip: np.ndarray
    units_per_row: int
    mb_pages: int

    @property
    def content(self) -> bool:
        return self.held is not None

    @property
    def device(self) -> str:
        return self.view.name

    @property
    def unit_name(self) -> str:
        """What a row is: "memory block" (SBM) or "big block" (BBM)."""
        return "memory block" if self.view.mode == "SBM" else "big block"

    @property
    def column_name(self) -> str:
        """What a cell is: "subblock" (SBM) or "memory block" (BBM)."""
        return "subblock" if self.view.mode == "SBM" else "memory block"


def pick_view(src: Any, device: int | str | Any = 0) -> VirtioMemView:
    """The view of one device of ``src``: by index, by name ("vmem0"), or the device itself."""
    if isinstance(device, VirtioMemView):
        return device
    views = vmem_views(src)
    if not views:
        raise ValueError(f"{type(src).__name__} has no virtio-mem device with a bound driver "
                         "(a frame records them in extra['virtio_mem'])")
    name = getattr(device, "name", device)
    if isinstance(name, str):
        for v in views:
            if v.name == name:
                return v
        raise ValueError(f"device={name!r} is not one of {[v.name for v in views]}")
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool) \
            and 0 <= name < len(views):
        return views[int(name)]
    raise ValueError(f"device={device!r} must be an index below {len(views)}, a name in "
                     f"{[v.name for v in views]}, or a device")


# ------------------------------------------------------------------ classes
def column_pages(view: VirtioMemView, mb_pages: int) -> int:
    """Pages per cell: a subblock (SBM) or a memory block of the big block (BBM)."""
    return view.sb_pages if view.mode == "SBM" else min(mb_pages, view.unit_pages)


def unit_classes(view: VirtioMemView, mv: MemView) -> np.ndarray:
    """(blocks, columns) cell classes from the driver's bits and block states."""
    nr = len(view.mb_states)
    col = column_pages(view, mv.geo.pages_per_memory_block)
    cols = view.unit_pages // col
    if view.mode == "SBM":
        plugged = np.array([_PLUGGED_CLASS.get(s, C.SB_PLUGGED) for s in view.mb_states],
                           np.uint8)
        unplugged = np.array([C.NOT_PRESENT if s in _NOT_ADDED else C.PAGE_OFFLINE
                              for s in view.mb_states], np.uint8)
        bits = np.asarray(view.sb_plugged, bool).reshape(nr, cols)
        return np.where(bits, plugged[:, None], unplugged[:, None]).astype(np.uint8)
    out = np.full((nr, cols), int(C.NOT_PRESENT), np.uint8)
    pbo = mv.geo.pageblock_order
    for u, state in enumerate(view.mb_states):
        if state == "PLUGGED":
            out[u] = C.SB_PLUGGED
        elif state == "FAKE_OFFLINE":
            out[u] = C.PAGE_OFFLINE
        elif state == "ADDED":
            for c in range(cols):
                pfn = view.first_unit_pfn + u * view.unit_pages + c * col
                zone = int(mv.pb_zone[pfn >> pbo]) if (pfn >> pbo) < mv.pb_zone.size \
                    else NO_ZONE
                out[u, c] = (C.OFFLINE if zone == NO_ZONE else
                             C.SB_MOVABLE if zone == ZoneType.MOVABLE else C.SB_KERNEL)
    return out


def unit_strip(view: VirtioMemView, units: np.ndarray) -> np.ndarray:
    """One class per block for the block itself: its zone, offline, or not added."""
    if view.mode == "SBM":
        return np.array([C.NOT_PRESENT if s == "UNUSED" else
                         _PLUGGED_CLASS.get(s, C.SB_PLUGGED) for s in view.mb_states], np.uint8)
    return UNRANK[RANK[units].max(axis=1)] if units.size else np.zeros(0, np.uint8)


def content_classes(view: VirtioMemView, mv: MemView, units: np.ndarray) -> np.ndarray:
    """``units`` with each plugged online cell replaced by its pages' top class."""
    col = column_pages(view, mv.geo.pages_per_memory_block)
    start = view.first_unit_pfn
    end = min(start + units.size * col, mv.nr_pfns)
    ranked = classify_view(mv, start, end, ranked=True)
    pad = units.size * col - ranked.size
    if pad:
        ranked = np.concatenate([ranked, np.zeros(pad, ranked.dtype)])
    held = UNRANK[ranked.reshape(-1, col).max(axis=1)].reshape(units.shape)
    online = (units == C.SB_KERNEL) | (units == C.SB_MOVABLE)
    return np.where(online, held, units).astype(np.uint8)


def subblock_grid(src: Any, device: int | str | Any = 0, *, content: bool = False,
                  max_side: int = MAX_SIDE) -> SubblockGrid:
    """The subblock map of one virtio-mem device of a Machine, Snapshot or Frame.

    Rows run from the first memory block (big block) of the device's
    region to its last; a device of more than ``max_side`` blocks folds
    2**k blocks into each row, each cell then showing the highest-priority
    class of 2**k neighbours.
    """
    view = pick_view(src, device)
    mv = mem_view(src)
    nr = len(view.mb_states)
    if nr == 0:
        unit = format_size(view.unit_pages << mv.geo.page_shift)
        raise ValueError(f"{view.name}: no whole {unit} block fits in the region")
    units = unit_classes(view, mv)
    strip = unit_strip(view, units)
    held = content_classes(view, mv, units) if content else None
    cols = units.shape[1]
    k = 1
    while -(-nr // k) > max_side:
        k *= 2
    rows = -(-nr // k)
    flat = (units if held is None else held).reshape(-1)
    if k > 1:
        flat = np.concatenate([flat, np.zeros(rows * k * cols - flat.size, np.uint8)])
        flat = UNRANK[RANK[flat].reshape(-1, k).max(axis=1)]
        pad_strip = np.concatenate([strip, np.zeros(rows * k - nr, np.uint8)])
        strip = UNRANK[RANK[pad_strip].reshape(-1, k).max(axis=1)]
    col = column_pages(view, mv.geo.pages_per_memory_block)
    start = view.first_unit_pfn
    return SubblockGrid("subblock", flat.reshape(rows, cols).astype(np.uint8), None, start,
                        start + nr * view.unit_pages, col * k, mv.geo.page_shift, view, units,
                        held, strip.astype(np.uint8), k, mv.geo.pages_per_memory_block)


# ------------------------------------------------------------------ overlays
@dataclass(frozen=True)
class SubblockOverlay:
    """Paths over a subblock map: the device region, the usable region, block edges."""

    device_path: np.ndarray | None
    usable_path: np.ndarray | None
    block_paths: tuple[np.ndarray, ...]


def subblock_overlay(sg: SubblockGrid, max_edges: int = 64) -> SubblockOverlay:
    """Outlines of the region and its usable part; a line between blocks (and, in
    BBM, between the memory blocks of a big block) unless there are more than
    ``max_edges``."""
    v = sg.view
    device = range_outline(sg, v.start_pfn, v.start_pfn + v.nr_pages)
    usable = range_outline(sg, v.start_pfn, v.start_pfn + v.usable_pages) \
        if v.usable_pages else None
    edges: list[np.ndarray] = []
    if sg.units_per_row == 1 and sg.rows - 1 <= max_edges:
        right = sg.width - 0.5
        edges += [np.array([(-0.5, r - 0.5), (right, r - 0.5)]) for r in range(1, sg.rows)]
        if v.mode == "BBM" and sg.width > 1:
            bottom = sg.rows - 0.5
            edges += [np.array([(c - 0.5, -0.5), (c - 0.5, bottom)]) for c in range(1, sg.width)]
    return SubblockOverlay(device, usable, tuple(edges))


def row_labels(sg: SubblockGrid, rows: list[int]) -> tuple[list[str], list[str]]:
    """(left, right) tick labels of ``rows``: the memory block id and the physical address."""
    left, right = [], []
    for r in rows:
        pfn = sg.pfn_at(r, 0)
        left.append(f"memory{pfn // sg.mb_pages}")
        right.append(format_addr(pfn << sg.page_shift))
    return left, right


# ------------------------------------------------------------------ text
def state_counts(view: VirtioMemView) -> list[tuple[str, int]]:
    """(state, number of blocks) in a fixed order, states with no block left out."""
    counts = Counter(view.mb_states)
    known = [(s, counts[s]) for s in STATE_ORDER if counts[s]]
    return known + sorted((s, n) for s, n in counts.items() if s not in STATE_ORDER)


def subblock_summary(sg: SubblockGrid, max_partial: int = 6) -> str:
    """The text beside a subblock map: geometry, sizes, block states, cell counts."""
    v, shift = sg.view, sg.page_shift
    nr, cols = sg.units.shape
    col = column_pages(v, sg.mb_pages)
    def size(nbytes: int) -> str:
        return format_size(nbytes) if nbytes else "0"

    lines = [f"{v.name}: {MODE_NAMES.get(v.mode, v.mode)}, {nr} {sg.unit_name}s of "
             f"{size(v.unit_pages << shift)}, {cols} {sg.column_name}s of "
             f"{size(col << shift)} each"
             + (f" ({sg.units_per_row} {sg.unit_name}s per row)" if sg.units_per_row > 1
                else ""),
             f"region pfn [{v.start_pfn:#x}, {v.start_pfn + v.nr_pages:#x}) "
             f"({size(v.nr_pages << shift)}), usable {size(v.usable_pages << shift)}",
             f"requested-size {size(v.requested_size)}, size (plugged) {size(v.plugged_size)}",
             f"{sg.unit_name}s: " + ", ".join(f"{s} {n}" for s, n in state_counts(v))]
    base = sg.units.reshape(-1)
    plugged_mask = np.isin(base, [C.SB_KERNEL, C.SB_MOVABLE, C.OFFLINE, C.SB_PLUGGED])
    zones = Counter(CellClass(int(c)) for c in base[plugged_mask].tolist())
    where = ", ".join(f"{_ZONE_WORD[c]} {zones[c]}" for c in _ZONE_WORD if zones[c])
    unplugged = int((~plugged_mask).sum())
    offline = int((base == C.PAGE_OFFLINE).sum())
    lines.append(f"{sg.column_name}s: plugged {int(plugged_mask.sum())}"
                 + (f" ({where})" if where else "")
                 + f", unplugged {unplugged} (PageOffline {offline}, not added "
                 f"{unplugged - offline})")
    if sg.held is not None:
        online = np.isin(base, [C.SB_KERNEL, C.SB_MOVABLE])
        held = Counter(CellClass(int(c)) for c in sg.held.reshape(-1)[online].tolist())
        if held:
            lines.append(f"plugged online {sg.column_name}s by what they hold: "
                         + ", ".join(f"{CLASS_LABELS[c]} {n}" for c, n in sorted(held.items())))
    if v.mode == "SBM":
        partial = [(i, s) for i, s in enumerate(v.mb_states) if s.endswith("_PARTIAL")]
        if partial:
            first_id = v.first_unit_pfn // sg.mb_pages
            shown = [f"memory{first_id + i} {s} {int(np.count_nonzero(v.sb_plugged[i]))}/{cols}"
                     for i, s in partial[:max_partial]]
            more = f" and {len(partial) - max_partial} more" if len(partial) > max_partial else ""
            lines.append("partly plugged: " + ", ".join(shown) + more)
    return "\n".join(lines) + "\n"


_ZONE_WORD = {C.SB_KERNEL: "kernel zone", C.SB_MOVABLE: "ZONE_MOVABLE", C.OFFLINE: "offline",
              C.SB_PLUGGED: "not added"}

