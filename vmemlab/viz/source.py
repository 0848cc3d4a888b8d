"""Where pictures get their arrays: a live machine, a snapshot, or a frame.

``mem_view(src)`` returns the same small bundle of read-only arrays for a
``Machine`` (its live memmap, no copy), a ``Snapshot`` (the copies a trace
frame keeps) or a ``Frame`` (its snapshot), so every picture takes any of
them.  Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..constants import NO_ZONE, Geometry, PageState, ZoneType


@dataclass(frozen=True)
class MemView:
    """The per-page and per-pageblock arrays one picture needs."""

    geo: Geometry
    state: np.ndarray
    kind: np.ndarray
    flags: np.ndarray
    pb_mt: np.ndarray
    pb_zone: np.ndarray
    time: float = 0.0

    @property
    def nr_pfns(self) -> int:
        return int(self.state.size)


def mem_view(src: Any) -> MemView:
    """The arrays of a Machine, Snapshot, Frame, real-machine snapshot or MemView.

    Raises ValueError for anything else, and for a frame that kept no state.
    """
    if isinstance(src, MemView):
        return src
    if callable(getattr(src, "machine_snapshot", None)):      # vmemlab.snapshot.RealSnapshot
        return mem_view(src.machine_snapshot())
    node = getattr(src, "node", None)
    if node is not None and hasattr(node, "mm"):
        mm = node.mm
        return MemView(src.geometry, mm.state, mm.kind, mm.flags, mm.pb_mt, mm.pb_zone,
                       float(getattr(src, "now", 0.0)))
    if isinstance(getattr(src, "state", None), np.ndarray) and hasattr(src, "geo"):
        return MemView(src.geo, src.state, src.kind, src.flags, src.pb_mt, src.pb_zone,
                       float(src.time))
    if hasattr(src, "events") and hasattr(src, "state"):
        if src.state is None:
            raise ValueError(f"frame {getattr(src, 'index', '?')} kept no state "
                             "(the trace records one every record_every frames)")
        return mem_view(src.state)
    raise ValueError(f"cannot draw {type(src).__name__}: pass a Machine, Snapshot or Frame")


@dataclass(frozen=True)
class ZoneSpan:
    """A zone's pfn span as the pageblock array records it."""

    name: str
    start_pfn: int
    end_pfn: int


def zone_spans(view: MemView) -> list[ZoneSpan]:
    """Each zone that owns a pageblock: its name and pfn span, in pfn order."""
    pbo = view.geo.pageblock_order
    spans = []
    for z in np.unique(view.pb_zone).tolist():
        if z == NO_ZONE:
            continue
        idx = np.flatnonzero(view.pb_zone == z)
        spans.append(ZoneSpan(str(ZoneType(z)), int(idx[0]) << pbo, (int(idx[-1]) + 1) << pbo))
    return sorted(spans, key=lambda s: s.start_pfn)


def present_memory_blocks(view: MemView) -> np.ndarray:
    """One bool per memory block of the memmap: does it hold any page that exists?"""
    per = view.geo.pages_per_memory_block
    nr_blocks = -(-view.nr_pfns // per)
    present = np.zeros(nr_blocks * per, bool)
    present[:view.nr_pfns] = view.state != PageState.ABSENT
    return present.reshape(nr_blocks, per).any(axis=1)


def memory_block_edges(view: MemView, start_pfn: int = 0, end_pfn: int | None = None) -> list[int]:
    """The first pfn of each memory block inside ``(start_pfn, end_pfn)``.

    Only edges that touch memory count: an edge between two blocks without
    any page (a hole, memory not added) is left out.
    """
    end_pfn = view.nr_pfns if end_pfn is None else end_pfn
    per = view.geo.pages_per_memory_block
    present = present_memory_blocks(view)
    first = (start_pfn // per + 1) * per
    return [pfn for pfn in range(first, end_pfn, per)
            if present[pfn // per - 1] or (pfn // per < present.size and present[pfn // per])]
