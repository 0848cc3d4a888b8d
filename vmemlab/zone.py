"""Zones: free areas, size counters and watermarks.

A zone owns the free lists of its pages: ``free_area[order].free_list[mt]``.
Each list is a ``FreeList`` of head pfns in list order (first = the head
of the kernel's list), so ``list_add`` / ``list_add_tail`` /
``list_first_entry`` / ``list_del`` are all O(1) and deterministic.

The size counters follow ``/proc/zoneinfo``: ``spanned_pages`` covers the
zone's pfn span including holes, ``present_pages`` the memory that exists,
``managed_pages`` what the buddy allocator manages (present minus reserved
and PageOffline pages).  ``nr_free_pages`` is NR_FREE_PAGES, which does not
count free pages on MIGRATE_ISOLATE lists.

Kernel: include/linux/mmzone.h (struct zone, struct free_area), mm/page_alloc.c
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .constants import MAX_NR_ZONES, MIGRATE_TYPES, MigrateType, PageKind, ZoneType
from .listhead import FreeList

if TYPE_CHECKING:
    from .node import Node

WMARK_MIN, WMARK_LOW, WMARK_HIGH, WMARK_PROMO = range(4)
SWAP_CLUSTER_MAX = 32
# sysctl vm.lowmem_reserve_ratio: DMA, DMA32, Normal, Movable, Device
LOWMEM_RESERVE_RATIO = (256, 256, 32, 0, 0)
WATERMARK_SCALE_FACTOR = 10


class FreeArea:
    """Free blocks of one order: one ordered list per migratetype.

    Kernel: include/linux/mmzone.h, struct free_area
    """

    __slots__ = ("free_list",)

    def __init__(self) -> None:
        self.free_list: list[FreeList] = [FreeList() for _ in range(MIGRATE_TYPES)]

    @property
    def nr_free(self) -> int:
        """Number of free blocks of this order across all migratetypes."""
        return sum(len(lst) for lst in self.free_list)

    def empty(self, mt: int) -> bool:
        """Kernel: free_area_empty()"""
        return not self.free_list[mt]


class Zone:
    """One zone of the node.  Kernel: include/linux/mmzone.h, struct zone"""

    def __init__(self, node: Node, idx: ZoneType) -> None:
        self.node = node
        self.idx = idx
        self.zid = int(idx)  # plain int for hot comparisons with numpy scalars
        self.name = str(idx)
        self.pgalloc_event = f"pgalloc_{self.name.lower()}"
        self.zone_start_pfn = 0
        self.spanned_pages = 0
        self.present_pages = 0
        self.present_early_pages = 0
        self.managed_pages = 0
        self.nr_free_pages = 0
        self.nr_free_highatomic = 0
        self.nr_isolate_pageblock = 0
        self.watermark = [0, 0, 0, 0]
        self.watermark_boost = 0
        self.lowmem_reserve = [0] * MAX_NR_ZONES
        self.free_area = [FreeArea() for _ in range(node.geo.nr_page_orders)]
        # Allocated pages per PageKind (the zone's NR_ZONE_* vmstat counters).
        self.nr_kind = np.zeros(len(PageKind), np.int64)

    def __repr__(self) -> str:
        return (f"<Zone {self.name} start_pfn={self.zone_start_pfn:#x} "
                f"spanned={self.spanned_pages} managed={self.managed_pages} "
                f"free={self.nr_free_pages}>")

    # -- span ------------------------------------------------------------
    @property
    def zone_end_pfn(self) -> int:
        return self.zone_start_pfn + self.spanned_pages

    def populated(self) -> bool:
        """Kernel: populated_zone()"""
        return self.present_pages > 0

    def managed(self) -> bool:
        """Kernel: managed_zone()"""
        return self.managed_pages > 0

    def spans(self, pfn: int) -> bool:
        """Kernel: zone_spans_pfn()"""
        return self.zone_start_pfn <= pfn < self.zone_end_pfn

    def grow_span(self, start: int, end: int) -> None:
        """Widen the span to include ``[start, end)``.  Kernel: resize_zone_range()"""
        if self.spanned_pages == 0:
            self.zone_start_pfn, self.spanned_pages = start, end - start
            return
        new_start = min(self.zone_start_pfn, start)
        new_end = max(self.zone_end_pfn, end)
        self.zone_start_pfn, self.spanned_pages = new_start, new_end - new_start

    # -- watermarks ------------------------------------------------------
    def wmark_pages(self, i: int) -> int:
        """Kernel: wmark_pages()"""
        return self.watermark[i] + self.watermark_boost

    def min_wmark_pages(self) -> int:
        """Below this only reserve-allowed allocations succeed."""
        return self.wmark_pages(WMARK_MIN)

    def low_wmark_pages(self) -> int:
        """Below this an allocation wakes kswapd."""
        return self.wmark_pages(WMARK_LOW)

    def high_wmark_pages(self) -> int:
        """kswapd reclaims until free pages are above this."""
        return self.wmark_pages(WMARK_HIGH)


def calculate_min_free_kbytes(lowmem_kbytes: int) -> int:
    """min_free_kbytes = clamp(sqrt(lowmem_kbytes * 16), 128, 262144).

    Kernel: mm/page_alloc.c, calculate_min_free_kbytes()
    """
    return max(128, min(262144, math.isqrt(lowmem_kbytes * 16)))


def recommended_min_free_kbytes(node: Node, current: int) -> int:
    """khugepaged's higher floor when THP is enabled.

    pageblock_nr_pages * nr_populated_zones * (2 + MIGRATE_PCPTYPES**2) pages,
    at most 5% of the buffer pages; never lowers ``current``.

    Kernel: mm/khugepaged.c, set_recommended_min_free_kbytes()
    """
    geo = node.geo
    nr_zones = sum(1 for z in node.zones if z.populated() and z.idx != ZoneType.MOVABLE)
    recommended = geo.pageblock_nr_pages * nr_zones * 2
    recommended += geo.pageblock_nr_pages * nr_zones * 3 * 3
    recommended = min(recommended, nr_free_buffer_pages(node) // 20)
    recommended_kb = recommended << (geo.page_shift - 10)
    return max(current, recommended_kb)


def nr_free_buffer_pages(node: Node) -> int:
    """Managed pages above the high watermark in zones up to ZONE_NORMAL.

    Kernel: mm/page_alloc.c, nr_free_buffer_pages() / nr_free_zone_pages()
    """
    return sum(max(0, z.managed_pages - z.high_wmark_pages())
               for z in node.zones if z.idx <= ZoneType.NORMAL)


def setup_per_zone_wmarks(node: Node) -> None:
    """Split min_free_kbytes over the zones and derive low/high/promo.

    Each kernel zone gets a share of ``min`` proportional to its managed
    pages.  Since 6.5 ZONE_MOVABLE is left out of the split and gets a small
    fixed minimum, clamp(managed / 1024, 32, 128), like highmem; before, it
    took its proportional share like any zone (profile ``movable_wmark``).
    The gap between the marks is max(share/4, managed * watermark_scale_factor
    / 10000).

    Kernel: mm/page_alloc.c, __setup_per_zone_wmarks()
    """
    pages_min = node.min_free_kbytes >> (node.geo.page_shift - 10)
    capped = node.profile.movable_wmark == "capped"
    lowmem = sum(z.managed_pages for z in node.zones
                 if z.idx <= ZoneType.NORMAL or (z.idx == ZoneType.MOVABLE and not capped))
    for z in node.zones:
        share = pages_min * z.managed_pages // lowmem if lowmem else 0
        wmin = share
        if z.idx == ZoneType.MOVABLE and capped:
            wmin = max(SWAP_CLUSTER_MAX, min(128, z.managed_pages // 1024))
        elif z.idx == ZoneType.DEVICE:
            wmin = 0
        gap = max(share >> 2, z.managed_pages * WATERMARK_SCALE_FACTOR // 10000)
        z.watermark = [wmin, wmin + gap, wmin + 2 * gap, wmin + 3 * gap]
        z.watermark_boost = 0


def setup_per_zone_lowmem_reserve(node: Node) -> None:
    """Protect lower zones from allocations that could have used higher ones.

    lowmem_reserve[j] of zone i is (managed pages of zones i+1..j) / ratio[i].

    Kernel: mm/page_alloc.c, setup_per_zone_lowmem_reserve()
    """
    zones = node.zones
    for i, z in enumerate(zones):
        ratio = LOWMEM_RESERVE_RATIO[i]
        clear = not ratio or not z.managed_pages
        upper = 0
        z.lowmem_reserve = [0] * MAX_NR_ZONES
        for j in range(i + 1, MAX_NR_ZONES):
            upper += zones[j].managed_pages
            z.lowmem_reserve[j] = 0 if clear else upper // ratio


def calculate_totalreserve_pages(node: Node) -> int:
    """Pages the allocator keeps back: per zone max(lowmem_reserve) + high mark.

    Kernel: mm/page_alloc.c, calculate_totalreserve_pages()
    """
    total = 0
    for i, z in enumerate(node.zones):
        most = max(z.lowmem_reserve[i:], default=0) + z.high_wmark_pages()
        total += min(most, z.managed_pages)
    return total


def init_per_zone_wmark_min(node: Node) -> None:
    """Recompute min_free_kbytes, watermarks and reserves after a size change.

    Kernel: mm/page_alloc.c, init_per_zone_wmark_min(); called at boot and
    after memory is onlined or offlined.
    """
    if node.min_free_kbytes_user is not None:
        node.min_free_kbytes = node.min_free_kbytes_user
    else:
        lowmem_kb = nr_free_buffer_pages(node) << (node.geo.page_shift - 10)
        node.min_free_kbytes = calculate_min_free_kbytes(lowmem_kb)
        if node.geo.thp:
            setup_per_zone_wmarks(node)
            node.min_free_kbytes = recommended_min_free_kbytes(node, node.min_free_kbytes)
    setup_per_zone_wmarks(node)
    setup_per_zone_lowmem_reserve(node)


def migratetype_name(mt: int) -> str:
    return str(MigrateType(mt))
