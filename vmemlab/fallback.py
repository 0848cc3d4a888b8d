"""Migratetype fallback: what the allocator does when the wanted type has no free block.

An allocation that finds nothing on its own migratetype's lists borrows a
block from another type (``FALLBACKS``).  How it picks the block, and whether
it takes the whole pageblock, is the profile's ``fallback`` field:

* ``"largest_first"`` (5.8 to 6.14): ``rmqueue_fallback()`` takes the largest
  fallback buddy (the smallest one for a small movable request that may not
  claim) and ``steal_suitable_fallback()`` claims its pageblock when enough
  of it is free or alike.  Before freelist hygiene (6.10) the borrowed buddy,
  or every free page of a claimed pageblock, moves to the requester's lists
  and __rmqueue() retries __rmqueue_smallest(); since 6.10 only the request
  is split off the buddy, on the buddy's own type.
* ``"claim_steal"`` (6.15): ``rmqueue_claim()`` claims a whole pageblock
  from the largest fallback buddy or gives up; then ``rmqueue_steal()`` takes
  the *smallest* adequate fallback buddy and leaves its pageblock alone.

Watermark boosting on fallback is not modelled (docs/glossary.md).

Kernel: mm/page_alloc.c, __rmqueue(), __rmqueue_fallback(),
steal_suitable_fallback(), can_steal_fallback() (5.8-6.14); __rmqueue_claim(),
__rmqueue_steal(), try_to_claim_block(), should_try_claim_block() (6.15)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .constants import MigrateType, PageKind, PageState
from .freelist import (
    del_page_from_free_list,
    get_page_from_free_area,
    move_blocks_to_free_list,
    move_to_free_list,
)
from .page_alloc import AllocFlags, expand, page_del_and_expand, rmqueue_smallest
from .trace import MmPageAllocExtfrag

if TYPE_CHECKING:
    from .zone import FreeArea, Zone

_FREE = int(PageState.FREE)
_UNMOVABLE, _MOVABLE, _RECLAIMABLE = (MigrateType.UNMOVABLE, MigrateType.MOVABLE,
                                      MigrateType.RECLAIMABLE)

# Kernel: mm/page_alloc.c, fallbacks[]
FALLBACKS = {
    _UNMOVABLE: (_RECLAIMABLE, _MOVABLE),
    _MOVABLE: (_RECLAIMABLE, _UNMOVABLE),
    _RECLAIMABLE: (_UNMOVABLE, _MOVABLE),
}
_MOVABLE_KIND_TABLE = np.array([PageKind(k).lru or PageKind(k).movable_ops
                                for k in range(max(PageKind) + 1)], dtype=bool)


def can_steal_fallback(zone: Zone, order: int, start_mt: int) -> bool:
    """Is a block of ``order`` worth claiming whole for ``start_mt``?

    Large blocks always; unmovable and reclaimable requests always (they
    would otherwise pollute a movable block); small movable requests never.

    Kernel: mm/page_alloc.c, can_steal_fallback() (should_try_claim_block() in 6.15)
    """
    pbo = zone.node.geo.pageblock_order
    return (order >= pbo or order >= pbo // 2
            or start_mt in (_RECLAIMABLE, _UNMOVABLE)
            or zone.node.page_group_by_mobility_disabled)


should_try_claim_block = can_steal_fallback  # its name since 6.15


def find_suitable_fallback(zone: Zone, area: FreeArea, order: int, start_mt: int,
                           claimable: bool) -> int:
    """The first fallback type with a free block of ``order``; -1 none; -2 stop.

    With ``claimable`` (6.15's __rmqueue_claim()) a block not worth claiming
    stops the search (-2).  Kernel: mm/page_alloc.c, find_suitable_fallback()
    """
    if claimable and not should_try_claim_block(zone, order, start_mt):
        return -2
    for fallback_mt in FALLBACKS[start_mt]:   # IntEnum keys: an int finds them
        if area.free_list[fallback_mt]:
            return fallback_mt
    return -1


def _count_free_and_movable(zone: Zone, start: int) -> tuple[int, int]:
    """Free pages and LRU/movable_ops pages in the pageblock at ``start``."""
    mm = zone.node.mm
    end = start + zone.node.geo.pageblock_nr_pages
    state = mm.state[start:end]
    free_pages = int(np.count_nonzero(state == _FREE))
    kinds = mm.kind[start:end][state == PageState.ALLOCATED]
    movable = int(np.count_nonzero(_MOVABLE_KIND_TABLE[kinds]))
    return free_pages, movable


def move_freepages_block(zone: Zone, start: int, old_mt: int | None, new_mt: int) -> int:
    """Move the free blocks of one pageblock to ``new_mt``'s lists (tail).

    With ``old_mt`` given only blocks on that list move (6.10+); with None
    every free block moves wherever it was (move_freepages() before 6.10).
    Returns the number of pages moved.

    Kernel: mm/page_alloc.c, __move_freepages_block() / move_freepages_block()
    """
    mm = zone.node.mm
    end = start + zone.node.geo.pageblock_nr_pages
    heads = start + np.flatnonzero((mm.state[start:end] == _FREE) & (mm.order[start:end] >= 0))
    list_mts = mm.owner[heads]
    if old_mt is not None:
        heads = heads[list_mts == old_mt]
        list_mts = list_mts[list_mts == old_mt]
    return move_blocks_to_free_list(zone, heads.tolist(), mm.order[heads].tolist(),
                                    list_mts.tolist(), new_mt)


def _alike_pages(zone: Zone, start_mt: int, block_mt: int, free_pages: int,
                 movable: int) -> int:
    """Pages in the block compatible with the requester."""
    if start_mt == _MOVABLE:
        return movable
    if block_mt == _MOVABLE:
        return zone.node.geo.pageblock_nr_pages - (free_pages + movable)
    return 0


def _claim_threshold(zone: Zone, free_pages: int, alike: int) -> bool:
    """At least half the pageblock free or alike (or mobility grouping off)."""
    half = 1 << (zone.node.geo.pageblock_order - 1)
    return free_pages + alike >= half or zone.node.page_group_by_mobility_disabled


def try_to_claim_block(zone: Zone, pfn: int, current_order: int, order: int,
                       start_mt: int, block_mt: int) -> int | None:
    """Claim the whole pageblock of a fallback block, then allocate from it.

    A block of at least pageblock_order simply changes owner.  A smaller one
    moves its pageblock only if at least half the pageblock is free or
    "alike" (movable pages for a movable request; non-movable pages for an
    unmovable or reclaimable request taking from a movable block).  Returns
    None when the pageblock is not claimed (nothing changes then).

    Kernel: mm/page_alloc.c, try_to_claim_block() (6.15); the same steps
    open steal_suitable_fallback() in 6.10-6.14
    """
    node = zone.node
    geo = node.geo
    if current_order >= geo.pageblock_order:
        del_page_from_free_list(zone, pfn, current_order, block_mt)
        node.mm.change_pageblock_range(pfn, current_order, start_mt)
        expand(zone, pfn, order, current_order, start_mt)
        return pfn
    start = pfn & ~(geo.pageblock_nr_pages - 1)
    if not (zone.spans(start) and zone.spans(start + geo.pageblock_nr_pages - 1)):
        return None
    free_pages, movable = _count_free_and_movable(zone, start)
    if not _claim_threshold(zone, free_pages,
                            _alike_pages(zone, start_mt, block_mt, free_pages, movable)):
        return None
    move_freepages_block(zone, start, block_mt, start_mt)
    node.mm.set_pageblock_migratetype(start, MigrateType(start_mt))
    return rmqueue_smallest(zone, order, start_mt)


def steal_suitable_fallback(zone: Zone, pfn: int, current_order: int, order: int,
                            start_mt: int, block_mt: int, whole_block: bool) -> int | None:
    """Take a fallback buddy for ``start_mt``, claiming its pageblock if worthwhile.

    6.10-6.14 (freelist hygiene): claim as try_to_claim_block() does, else
    split just the request off the buddy, which stays on its own type's
    lists.  Before 6.10: retype the pageblock when it is worth it, move the
    buddy (or, for a whole-block attempt, every free page of the pageblock)
    to the requester's lists, and let __rmqueue() retry
    __rmqueue_smallest(), which this returns.

    Kernel: mm/page_alloc.c, steal_suitable_fallback()
    """
    if zone.node.profile.freelist_hygiene:
        if whole_block or current_order >= zone.node.geo.pageblock_order:
            page = try_to_claim_block(zone, pfn, current_order, order, start_mt, block_mt)
            if page is not None:
                return page
        page_del_and_expand(zone, pfn, order, current_order, block_mt)
        return pfn
    _steal_to_requester_lists(zone, pfn, current_order, start_mt, block_mt, whole_block)
    return rmqueue_smallest(zone, order, start_mt)


def _steal_to_requester_lists(zone: Zone, pfn: int, current_order: int, start_mt: int,
                              list_mt: int, whole_block: bool) -> None:
    """steal_suitable_fallback() before 6.10: lists change, the caller allocates."""
    node, geo = zone.node, zone.node.geo
    block_mt = int(node.mm.pb_mt[pfn >> geo.pageblock_order])
    if block_mt == MigrateType.HIGHATOMIC:
        move_to_free_list(zone, pfn, current_order, list_mt, start_mt)
        return
    if current_order >= geo.pageblock_order:
        node.mm.change_pageblock_range(pfn, current_order, start_mt)
        move_to_free_list(zone, pfn, current_order, list_mt, start_mt)
        return
    start = pfn & ~(geo.pageblock_nr_pages - 1)
    if not whole_block or not zone.spans(start + geo.pageblock_nr_pages - 1):
        move_to_free_list(zone, pfn, current_order, list_mt, start_mt)
        return
    _, movable = _count_free_and_movable(zone, start)
    free_pages = move_freepages_block(zone, start, None, start_mt)
    if _claim_threshold(zone, free_pages,
                        _alike_pages(zone, start_mt, block_mt, free_pages, movable)):
        node.mm.set_pageblock_migratetype(start, MigrateType(start_mt))


def _trace_extfrag(zone: Zone, pfn: int, order: int, fallback_order: int,
                   start_mt: int, fallback_mt: int) -> None:
    node = zone.node
    node.count_event("pgalloc_extfrag")
    if node.trace.enabled:
        owned = node.mm.get_pageblock_migratetype(pfn) == start_mt
        node.emit(MmPageAllocExtfrag(pfn, order, fallback_order, start_mt, fallback_mt,
                                     owned, fallback_order < node.geo.pageblock_order))


def _largest_fallback(zone: Zone, order: int, start_mt: int,
                      min_order: int) -> tuple[int, int, bool] | None:
    """__rmqueue_fallback()'s search: (order, type, can_steal) of the block to take.

    The largest fallback buddy first; a movable request that may not claim
    it takes the smallest adequate one instead (find_smallest).
    """
    for current_order in range(len(zone.free_area) - 1, min_order - 1, -1):
        fallback_mt = find_suitable_fallback(zone, zone.free_area[current_order],
                                             current_order, start_mt, False)
        if fallback_mt == -1:
            continue
        can_steal = can_steal_fallback(zone, current_order, start_mt)
        if can_steal or start_mt != _MOVABLE or current_order <= order:
            return current_order, fallback_mt, can_steal
        for smallest in range(order, len(zone.free_area)):
            fallback_mt = find_suitable_fallback(zone, zone.free_area[smallest],
                                                 smallest, start_mt, False)
            if fallback_mt != -1:
                return smallest, fallback_mt, can_steal_fallback(zone, smallest, start_mt)
        raise AssertionError("VM_BUG_ON: a fallback block was found before")
    return None


def rmqueue_fallback(zone: Zone, order: int, start_mt: int, alloc_flags: int) -> int | None:
    """Borrow from another migratetype, largest buddy first (5.8 to 6.14).

    Under ALLOC_NOFRAGMENT blocks smaller than a pageblock are left alone
    (the zonelist is walked again without it).  Before 6.10 a steal that
    still leaves the request unserved repeats, as __rmqueue()'s ``goto retry``.
    Returns the allocated head pfn, or None.

    Kernel: mm/page_alloc.c, __rmqueue_fallback() and __rmqueue()
    """
    pbo = zone.node.geo.pageblock_order
    hygiene = zone.node.profile.freelist_hygiene
    min_order = order
    if alloc_flags & AllocFlags.NOFRAGMENT and (order < pbo or not hygiene):
        min_order = pbo
    while True:
        found = _largest_fallback(zone, order, start_mt, min_order)
        if found is None:
            return None
        current_order, fallback_mt, can_steal = found
        head = get_page_from_free_area(zone.free_area[current_order], fallback_mt)
        page = steal_suitable_fallback(zone, head, current_order, order, start_mt,
                                       fallback_mt, can_steal)
        _trace_extfrag(zone, page if hygiene else head, order, current_order, start_mt,
                       fallback_mt)
        if page is not None or hygiene:
            return page


def rmqueue_claim(zone: Zone, order: int, start_mt: int, alloc_flags: int) -> int | None:
    """Try to claim a whole pageblock from another type, largest block first (6.15).

    Kernel: mm/page_alloc.c, __rmqueue_claim()
    """
    pbo = zone.node.geo.pageblock_order
    min_order = pbo if order < pbo and alloc_flags & AllocFlags.NOFRAGMENT else order
    for current_order in range(len(zone.free_area) - 1, min_order - 1, -1):
        area = zone.free_area[current_order]
        fallback_mt = find_suitable_fallback(zone, area, current_order, start_mt, True)
        if fallback_mt == -1:
            continue
        if fallback_mt == -2:
            break
        pfn = get_page_from_free_area(area, fallback_mt)
        page = try_to_claim_block(zone, pfn, current_order, order, start_mt, fallback_mt)
        if page is not None:
            _trace_extfrag(zone, page, order, current_order, start_mt, fallback_mt)
            return page
    return None


def rmqueue_steal(zone: Zone, order: int, start_mt: int) -> int | None:
    """Take the smallest adequate block of another type, leaving its pageblock alone (6.15).

    Kernel: mm/page_alloc.c, __rmqueue_steal()
    """
    for current_order in range(order, len(zone.free_area)):
        area = zone.free_area[current_order]
        fallback_mt = find_suitable_fallback(zone, area, current_order, start_mt, False)
        if fallback_mt == -1:
            continue
        pfn = get_page_from_free_area(area, fallback_mt)
        page_del_and_expand(zone, pfn, order, current_order, fallback_mt)
        _trace_extfrag(zone, pfn, order, current_order, start_mt, fallback_mt)
        return pfn
    return None


def rmqueue_other_type(zone: Zone, order: int, start_mt: int, alloc_flags: int) -> int | None:
    """The profile's fallback, after __rmqueue_smallest() found nothing.

    Kernel: mm/page_alloc.c, __rmqueue()
    """
    if zone.node.profile.fallback == "claim_steal":
        page = rmqueue_claim(zone, order, start_mt, alloc_flags)
        if page is None and not alloc_flags & AllocFlags.NOFRAGMENT:
            page = rmqueue_steal(zone, order, start_mt)
        return page
    return rmqueue_fallback(zone, order, start_mt, alloc_flags)
