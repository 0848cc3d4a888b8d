"""Fragmentation metrics of mm/vmstat.c.

Both indices look only at the free lists' block counts (all migratetypes
together) and return integers scaled by 1000, like the kernel:

* ``unusable_free_index(zone, order)``: the share of free memory that is in
  blocks too small for an allocation of ``order`` (0 = none, 1000 = all).
* ``fragmentation_index(zone, order)``: when an allocation of ``order``
  would fail, whether for lack of memory (towards 0) or because free memory
  is fragmented (towards 1000); -1000 when it would succeed.

Kernel: mm/vmstat.c, fill_contig_page_info(), unusable_free_index(),
__fragmentation_index(), extfrag_for_order()
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .zone import Zone


class ContigPageInfo(NamedTuple):
    """Kernel: mm/vmstat.c, struct contig_page_info"""

    free_pages: int
    free_blocks_total: int
    free_blocks_suitable: int


def fill_contig_page_info(nr_free: Sequence[int], suitable_order: int) -> ContigPageInfo:
    """Sum the free blocks per order into pages, blocks, and blocks big enough.

    >>> fill_contig_page_info([4, 0, 1], 1)
    ContigPageInfo(free_pages=8, free_blocks_total=5, free_blocks_suitable=2)
    """
    free_pages = sum(n << o for o, n in enumerate(nr_free))
    total = sum(nr_free)
    suitable = sum(n << (o - suitable_order) for o, n in enumerate(nr_free)
                   if o >= suitable_order)
    return ContigPageInfo(free_pages, total, suitable)


def unusable_index(nr_free: Sequence[int], order: int) -> int:
    """Kernel: mm/vmstat.c, unusable_free_index()"""
    info = fill_contig_page_info(nr_free, order)
    if info.free_pages == 0:
        return 1000
    return (info.free_pages - (info.free_blocks_suitable << order)) * 1000 // info.free_pages


def fragmentation_index_of(nr_free: Sequence[int], order: int) -> int:
    """Kernel: mm/vmstat.c, __fragmentation_index()"""
    info = fill_contig_page_info(nr_free, order)
    if not info.free_blocks_total:
        return 0
    if info.free_blocks_suitable:
        return -1000
    return 1000 - (1000 + info.free_pages * 1000 // (1 << order)) // info.free_blocks_total


def extfrag_for_order(nr_free: Sequence[int], order: int) -> int:
    """The proactive-compaction score, 0..100.  Kernel: mm/vmstat.c, extfrag_for_order()"""
    info = fill_contig_page_info(nr_free, order)
    if info.free_pages == 0:
        return 0
    return (info.free_pages - (info.free_blocks_suitable << order)) * 100 // info.free_pages


def nr_free_per_order(zone: Zone) -> list[int]:
    """free_area[order].nr_free for every order (what /proc/buddyinfo prints)."""
    return [area.nr_free for area in zone.free_area]


def unusable_free_index(zone: Zone, order: int) -> int:
    """The zone's unusable free space index at ``order`` (x1000)."""
    return unusable_index(nr_free_per_order(zone), order)


def fragmentation_index(zone: Zone, order: int) -> int:
    """The zone's external fragmentation index at ``order`` (x1000)."""
    return fragmentation_index_of(nr_free_per_order(zone), order)
