"""Where pictures get their arrays: a live machine, a snapshot, or a frame.

``mem_view(src)`` returns the same small bundle of read-only arrays for a
``Machine`` (its live memmap, no copy), a ``Snapshot`` (the copies a trace
frame keeps) or a ``Frame`` (its snapshot), so every picture takes any of
them.  ``vmem_views(src)`` does the same for virtio-mem devices: the
driver's ``VirtioMemView`` of each device, live or as a frame recorded it.
Numpy only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..constants import NO_ZONE, Geometry, PageState, ZoneType


@dataclass(frozen=True)
class DeviceSpan:
    """A virtio-mem device's region and usable region, in pfns (half-open)."""

    name: str
    start_pfn: int
    end_pfn: int
    usable_end_pfn: int


_NO_RUNS = np.zeros((0, 2), np.int64)


@dataclass(frozen=True)
class MemView:
    """The per-page and per-pageblock arrays one picture needs.

    ``contig`` gives the (start, end) pfn runs of pages taken by
    ``alloc_contig_range()`` and still held; ``real`` says the arrays come
    from a real machine's /proc/kpageflags.
    """

    geo: Geometry
    state: np.ndarray
    kind: np.ndarray
    flags: np.ndarray
    pb_mt: np.ndarray
    pb_zone: np.ndarray
    time: float = 0.0
    devices: tuple[DeviceSpan, ...] = ()
    contig_of: Callable[[], np.ndarray] = field(default=lambda: _NO_RUNS)
    real: bool = False

    @property
    def contig(self) -> np.ndarray:
        """(start, end) pfn runs of pages held by alloc_contig_range() callers."""
        return self.contig_of()

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
                       float(getattr(src, "now", 0.0)), _spans(vmem_views(src)),
                       node.contig_runs)
    if isinstance(getattr(src, "state", None), np.ndarray) and hasattr(src, "geo"):
        extra = getattr(src, "extra", None) or {}
        return MemView(src.geo, src.state, src.kind, src.flags, src.pb_mt, src.pb_zone,
                       float(src.time), _spans(vmem_views(src)),
                       _runs_of(extra.get("contig")), extra.get("source") == "real")
    if hasattr(src, "events") and hasattr(src, "state"):
        if src.state is None:
            raise ValueError(f"frame {getattr(src, 'index', '?')} kept no state "
                             "(the trace records one every record_every frames)")
        return mem_view(src.state)
    raise ValueError(f"cannot draw {type(src).__name__}: pass a Machine, Snapshot or Frame")


def _runs_of(runs: Any) -> Callable[[], np.ndarray]:
    arr = _NO_RUNS if runs is None else np.asarray(runs, np.int64).reshape(-1, 2)
    return lambda: arr


def vmem_views(src: Any) -> list[Any]:
    """The ``VirtioMemView`` of each bound virtio-mem device of a Machine, Snapshot or Frame.

    A live machine is asked now (``dev.driver.view()``); a snapshot or frame
    gives what it recorded (``extra["virtio_mem"]``); anything else has none.
    """
    devices = getattr(src, "virtio_mem", None)
    if isinstance(devices, list) and hasattr(src, "node"):
        return [d.driver.view() for d in devices
                if getattr(d, "driver", None) is not None and d.driver.mode is not None]
    extra = getattr(src, "extra", None)
    if isinstance(extra, dict):
        return list(extra.get("virtio_mem", ()))
    state = getattr(src, "state", None)
    if state is not None and hasattr(src, "events"):
        return vmem_views(state)
    return []


def _spans(views: list[Any]) -> tuple[DeviceSpan, ...]:
    return tuple(DeviceSpan(v.name, v.start_pfn, v.start_pfn + v.nr_pages,
                            v.start_pfn + v.usable_pages) for v in views)


@dataclass(frozen=True)
class ZoneSpan:
    """A zone's pfn span as the pageblock array records it."""

    name: str
    start_pfn: int
    end_pfn: int


def zone_spans(view: MemView) -> list[ZoneSpan]:
    """Each run of pageblocks owned by one zone: its name and pfn span, in pfn order.

    Pageblocks of no zone (holes, memory not added) do not end a run, but a
    pageblock of another zone does: zones whose spans interleave (a block
    onlined movable between kernel blocks) give one span per stretch, so
    every stretch is outlined and named.
    """
    pbo = view.geo.pageblock_order
    idx = np.flatnonzero(view.pb_zone != NO_ZONE)
    if not idx.size:
        return []
    zones = view.pb_zone[idx]
    cuts = np.flatnonzero(zones[1:] != zones[:-1]) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [idx.size]))
    return [ZoneSpan(str(ZoneType(int(zones[a]))), int(idx[a]) << pbo, (int(idx[b - 1]) + 1) << pbo)
            for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]


def present_memory_blocks(view: MemView) -> np.ndarray:
    """One bool per memory block of the memmap: does it hold any page that exists?"""
    per = view.geo.pages_per_memory_block
    nr_blocks = -(-view.nr_pfns // per)
    state = view.state
    if (int(PageState.ABSENT) == 0 and state.dtype.itemsize == 1 and per % 8 == 0
            and view.nr_pfns == nr_blocks * per and state.flags.c_contiguous):
        # any non-zero byte is a page that exists: test 8 pages per uint64
        return state.view(np.uint64).reshape(nr_blocks, per // 8).any(axis=1)
    present = np.zeros(nr_blocks * per, bool)
    present[:view.nr_pfns] = state != PageState.ABSENT
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
