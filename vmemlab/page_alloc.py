"""The buddy allocator: split, merge, fallback, watermarks, and the alloc/free paths.

A free block of order *o* is 2**o pages whose first pfn is a multiple of
2**o.  Allocating takes the smallest block of the wanted migratetype and
splits it (``expand``); freeing merges a block with its buddy
(``pfn ^ (1 << order)``) for as long as the buddy is free (``free_one_page``).
When the wanted migratetype has no free block, the allocator borrows from
another type (vmemlab.fallback), possibly claiming a whole pageblock.  When
reclaim cannot free enough, the OOM killer may kill a process
(vmemlab.oom); an allocation that still cannot be satisfied returns None.

Simplifications (also in docs/glossary.md): per-CPU page lists only hold
what boot left on them (vmemlab.pcp; a page is freed straight into the buddy
allocator and allocations never take from the lists), no highatomic reserve
and no CMA (the simulated kernel is built without CONFIG_CMA).  Compaction
is vmemlab.compaction's, with its own simplifications.

Kernel: mm/page_alloc.c
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .constants import MIGRATE_PCPTYPES, MigrateType, PageKind, PageState, ZoneType
from .freelist import (
    Tail,
    add_to_free_list,
    del_page_from_free_list,
    expand_to_tail,
    get_page_from_free_area,
)
from .gfp import Gfp, format_gfp, gfp_migratetype, gfp_zone, parse_gfp
from .oom import current_comm, oom_may_kill, out_of_memory
from .pcp import drain_all_pages
from .trace import MmPageAlloc, MmPageFree, WarnAlloc

if TYPE_CHECKING:
    from .node import Node
    from .zone import Zone

# Plain ints: comparing numpy scalars with IntEnum members is slow.
_FREE = int(PageState.FREE)
_UNMOVABLE, _MOVABLE, _RECLAIMABLE = (MigrateType.UNMOVABLE, MigrateType.MOVABLE,
                                      MigrateType.RECLAIMABLE)

class AllocFlags:
    """Internal allocation flags, plain ints as the kernel's #defines.

    Kernel: mm/internal.h, ALLOC_*
    """

    WMARK_MIN = 0
    WMARK_LOW = 1
    WMARK_HIGH = 2
    NO_WATERMARKS = 0x04
    OOM = 0x08
    NON_BLOCK = 0x10
    MIN_RESERVE = 0x20
    CPUSET = 0x40
    CMA = 0x80
    NOFRAGMENT = 0x100
    HIGHATOMIC = 0x200
    KSWAPD = 0x800


ALLOC_WMARK_MASK = AllocFlags.NO_WATERMARKS - 1
_GFP_HIGH, _GFP_KSWAPD = int(Gfp.HIGH), int(Gfp.KSWAPD_RECLAIM)
_GFP_DIRECT = int(Gfp.DIRECT_RECLAIM)
_GFP_NOMEMALLOC, _GFP_NOWARN = int(Gfp.NOMEMALLOC), int(Gfp.NOWARN)
_TAIL_MIN_ORDER = 3   # smaller splits are as quick on the lists
ALLOC_RESERVES = (AllocFlags.OOM | AllocFlags.NON_BLOCK | AllocFlags.MIN_RESERVE
                  | AllocFlags.HIGHATOMIC)

DEFAULT_KIND = {_UNMOVABLE: PageKind.KERNEL, _MOVABLE: PageKind.ANON,
                _RECLAIMABLE: PageKind.SLAB_RECLAIMABLE}


# ---------------------------------------------------------------- watermarks
def zone_watermark_ok(zone: Zone, order: int, mark: int, highest_zoneidx: int,
                      alloc_flags: int) -> bool:
    """Would an allocation of ``order`` keep the zone above ``mark``?

    Free pages, minus the request and the pages this caller may not use,
    must stay above the mark plus the zone's lowmem reserve against the
    caller's highest zone.  For order > 0 a free block of at least that order
    must also exist on an ordinary list.

    Kernel: mm/page_alloc.c, __zone_watermark_ok()
    """
    free_pages = zone.nr_free_pages - ((1 << order) - 1)
    if not alloc_flags & ALLOC_RESERVES:
        free_pages -= zone.nr_free_highatomic
    if free_pages <= _effective_min(mark, alloc_flags) + zone.lowmem_reserve[highest_zoneidx]:
        return False
    if order == 0:
        return True
    for o in range(order, len(zone.free_area)):
        area = zone.free_area[o]
        if any(area.free_list[mt] for mt in range(MIGRATE_PCPTYPES)):
            return True
    return False


def _effective_min(mark: int, alloc_flags: int) -> int:
    """Lower the mark for callers allowed into the reserves (__GFP_HIGH, atomic, OOM)."""
    if alloc_flags & ALLOC_RESERVES:
        if alloc_flags & AllocFlags.MIN_RESERVE:
            mark -= mark // 2
            if alloc_flags & AllocFlags.NON_BLOCK:
                mark -= mark // 4
        if alloc_flags & AllocFlags.OOM:
            mark -= mark // 2
    return mark


def watermark_headroom(zone: Zone, alloc_flags: int, highest_zoneidx: int) -> int:
    """How many order-0 allocations in a row pass zone_watermark_ok()."""
    mark = zone.wmark_pages(alloc_flags & ALLOC_WMARK_MASK)
    free_pages = zone.nr_free_pages
    if not alloc_flags & ALLOC_RESERVES:
        free_pages -= zone.nr_free_highatomic
    return max(0, free_pages - _effective_min(mark, alloc_flags)
               - zone.lowmem_reserve[highest_zoneidx])


# ---------------------------------------------------------- split and merge
def expand(zone: Zone, pfn: int, low: int, high: int, mt: int) -> None:
    """Split an order-``high`` block down to order ``low``, freeing upper halves.

    Each halving puts the upper half at the head of the next lower order's
    list, so the caller keeps the block's first 2**low pages.  For an
    order-0 page out of a larger block, with the type's lists below it empty
    (as the search or a fallback leaves them), the halves are kept as one
    ``Tail`` that the next order-0 allocations take from (vmemlab.freelist).

    Kernel: mm/page_alloc.c, expand()
    """
    if low == 0 and high >= _TAIL_MIN_ORDER and expand_to_tail(zone, pfn, high, mt):
        return
    while high > low:
        high -= 1
        add_to_free_list(zone, pfn + (1 << high), high, mt)


def page_del_and_expand(zone: Zone, pfn: int, order: int, high: int, mt: int) -> None:
    """Take a block off its list and split it to ``order``.  Kernel: mm/page_alloc.c"""
    del_page_from_free_list(zone, pfn, high, mt)
    expand(zone, pfn, order, high, mt)


def find_buddy_pfn(pfn: int, order: int) -> int:
    """The pfn of the other half of the order+1 block containing ``pfn``.

    >>> find_buddy_pfn(8, 1)
    10

    Kernel: mm/internal.h, __find_buddy_pfn()
    """
    return pfn ^ (1 << order)


def _page_is_buddy(zone: Zone, pfn: int, order: int) -> bool:
    """PageBuddy head of exactly ``order`` in the same zone.  Kernel: mm/internal.h"""
    mm = zone.node.mm
    if pfn >= mm.nr_pfns or mm.state.item(pfn) != _FREE or mm.order.item(pfn) != order:
        return False
    return mm.pb_zone.item(pfn >> zone.node.geo.pageblock_order) == zone.zid


def _merge_blocked(zone: Zone, mt: int, buddy_mt: int) -> bool:
    """Whether merging across pageblocks of these types is refused (by profile)."""
    if mt == buddy_mt:
        return False
    if zone.node.profile.merge_barrier == "unmergeable":
        return not (MigrateType(mt).mergeable and MigrateType(buddy_mt).mergeable)
    # 5.10: only ISOLATE vs non-ISOLATE, and only while the zone isolates.
    return zone.nr_isolate_pageblock > 0 and MigrateType.ISOLATE in (mt, buddy_mt)


def free_one_page(zone: Zone, pfn: int, order: int, mt: int, to_tail: bool = False) -> int:
    """Merge a freed block with its free buddies and put it on a free list.

    Below pageblock_order buddies always merge.  At and above it, the
    profile's rule decides whether two pageblocks of different types may
    merge; since 6.10 a merge retypes the buddy's pageblock to ``mt``.  The
    result goes to the tail of the list if ``to_tail`` (FPI_TO_TAIL) or if
    the next higher buddy is free, so the block is likely to merge again.
    Returns the head pfn of the block that was put on the list.

    Kernel: mm/page_alloc.c, __free_one_page(), buddy_merge_likely()
    """
    node = zone.node
    mm, pbo = node.mm, node.geo.pageblock_order
    max_order = node.geo.max_page_order
    # _page_is_buddy() inlined: this loop runs for every freed block.
    state, border, pb_zone = mm.state.item, mm.order.item, mm.pb_zone.item
    nr, zid = mm.nr_pfns, zone.zid
    buddy = pfn
    while order < max_order:
        buddy = pfn ^ (1 << order)
        if (buddy >= nr or state(buddy) != _FREE or border(buddy) != order
                or pb_zone(buddy >> pbo) != zid):
            break
        if order >= pbo:
            buddy_mt = mm.pb_mt.item(buddy >> pbo)
            if _merge_blocked(zone, mt, buddy_mt):
                break
            if node.profile.freelist_hygiene and buddy_mt != mt:
                mm.change_pageblock_range(buddy, order, mt)
        del_page_from_free_list(zone, buddy, order, mm.owner.item(buddy))
        pfn &= buddy
        order += 1
    if not to_tail and order < max_order - 1:
        higher = buddy & pfn
        to_tail = _page_is_buddy(zone, higher ^ (1 << (order + 1)), order + 1)
    add_to_free_list(zone, pfn, order, mt, tail=to_tail)
    return pfn


def free_pages_ok(zone: Zone, pfn: int, order: int, to_tail: bool = False) -> None:
    """Free a block whose pages are already marked FREE in the memmap.

    Since 6.10 a block larger than a pageblock is freed one pageblock at a
    time, each with its own pageblock's type (split_large_buddy()); before,
    the whole block went to the list of its first pageblock's type.

    Kernel: mm/page_alloc.c, free_one_page() / split_large_buddy()
    """
    mm, pbo = zone.node.mm, zone.node.geo.pageblock_order
    if order <= pbo or not zone.node.profile.freelist_hygiene:
        free_one_page(zone, pfn, order, int(mm.pb_mt[pfn >> pbo]), to_tail)
        return
    for piece in range(pfn, pfn + (1 << order), 1 << pbo):
        free_one_page(zone, piece, pbo, int(mm.pb_mt[piece >> pbo]), to_tail)


# ----------------------------------------------------------------- rmqueue
def rmqueue_smallest(zone: Zone, order: int, mt: int) -> int | None:
    """Take the smallest free block of at least ``order`` from ``mt``'s lists.

    Kernel: mm/page_alloc.c, __rmqueue_smallest()
    """
    if order == 0:
        tail = zone.free_area[0].free_list[mt].pending
        if type(tail) is Tail:   # the smallest blocks of this type: take the first page
            return tail.take(1)
    for current_order in range(order, len(zone.free_area)):
        pfn = get_page_from_free_area(zone.free_area[current_order], mt)
        if pfn is not None:
            page_del_and_expand(zone, pfn, order, current_order, mt)
            return pfn
    return None


def rmqueue(zone: Zone, order: int, mt: int, alloc_flags: int) -> int | None:
    """Take a block of ``order`` for migratetype ``mt`` from one zone.

    First the requested type's lists; then the profile's fallback
    (vmemlab.fallback).  Kernel: mm/page_alloc.c, __rmqueue()
    """
    page = rmqueue_smallest(zone, order, mt)
    if page is not None:
        return page
    from .fallback import rmqueue_other_type  # fallback builds on this module

    return rmqueue_other_type(zone, order, mt, alloc_flags)


# -------------------------------------------------------------- allocation
def alloc_flags_nofragment(node: Node, zone: Zone | None) -> int:
    """ALLOC_NOFRAGMENT when the preferred zone is Normal and DMA32 exists.

    The allocator then prefers falling back to DMA32 over splitting another
    type's pageblock in Normal.  Kernel: mm/page_alloc.c, alloc_flags_nofragment()
    """
    if zone is None or zone.idx != ZoneType.NORMAL:
        return 0
    return AllocFlags.NOFRAGMENT if node.zone(ZoneType.DMA32).populated() else 0


def gfp_to_alloc_flags(gfp: int, order: int) -> int:
    """Slow-path flags: the min watermark, reserves for __GFP_HIGH and atomics.

    Kernel: mm/page_alloc.c, gfp_to_alloc_flags()
    """
    flags = AllocFlags.WMARK_MIN | AllocFlags.CPUSET
    if gfp & _GFP_HIGH:
        flags |= AllocFlags.MIN_RESERVE
    if gfp & _GFP_KSWAPD:
        flags |= AllocFlags.KSWAPD
    if not gfp & _GFP_DIRECT:
        if not gfp & _GFP_NOMEMALLOC:
            flags |= AllocFlags.NON_BLOCK
        if order > 0:
            flags |= AllocFlags.HIGHATOMIC
    return flags


def get_page_from_freelist(node: Node, order: int, mt: int, highest: int,
                           alloc_flags: int) -> tuple[Zone, int] | None:
    """Walk the zonelist and take a block from the first zone that has one.

    Under ALLOC_NOFRAGMENT the walk is repeated without it if every zone
    refused.  Kernel: mm/page_alloc.c, get_page_from_freelist()
    """
    while True:
        for zone in node.zonelist(ZoneType(highest)):
            mark = zone.wmark_pages(alloc_flags & ALLOC_WMARK_MASK)
            if not zone_watermark_ok(zone, order, mark, highest, alloc_flags):
                continue
            pfn = rmqueue(zone, order, mt, alloc_flags)
            if pfn is not None:
                return zone, pfn
        if not alloc_flags & AllocFlags.NOFRAGMENT:
            return None
        alloc_flags &= ~AllocFlags.NOFRAGMENT


def check_order(node: Node, order: int) -> None:
    """Raise ValueError unless ``order`` is a valid buddy order for this machine."""
    if not isinstance(order, (int, np.integer)) or isinstance(order, bool) \
            or not 0 <= order <= node.geo.max_page_order:
        raise ValueError(f"order={order!r} must be an int in 0..MAX_PAGE_ORDER="
                         f"{node.geo.max_page_order}")


class AllocRequest:
    """What one allocation asks for, decoded once (the kernel's alloc_context)."""

    __slots__ = ("gfp", "order", "highest", "mt", "kind")

    def __init__(self, node: Node, order: int, gfp: str | int, kind: PageKind | None) -> None:
        check_order(node, order)
        mask = parse_gfp(gfp)
        self.gfp = int(mask)
        self.order = int(order)
        self.highest = int(gfp_zone(mask))
        self.mt = int(node.gfp_migratetype(gfp_migratetype(mask)))
        self.kind = int(kind) if kind is not None else int(DEFAULT_KIND[gfp_migratetype(mask)])


def alloc_block(node: Node, req: AllocRequest) -> tuple[Zone, int] | None:
    """Allocate one block: fast path, kswapd, the min watermark, direct compaction
    (order > 0 only, vmemlab.compaction) and reclaim, then the OOM killer.

    Returns (zone, head pfn) of a block still marked FREE in the memmap;
    ``prep_new_page`` hands it to its owner.  When reclaim makes no more
    progress the per-CPU lists are drained once; then an allocation that may
    OOM (vmemlab.oom) kills a process and tries again, unless the process
    killed is the one allocating.

    Kernel: mm/page_alloc.c, __alloc_pages() and __alloc_pages_slowpath()
    """
    from .compaction import direct_compact_after_reclaim, direct_compact_first
    from .reclaim import direct_reclaim, wakeup_kswapd  # both free via this module

    zonelist = node.zonelist(req.highest)
    if not zonelist:
        return None
    flags = AllocFlags.WMARK_LOW | alloc_flags_nofragment(node, zonelist[0])
    if req.gfp & _GFP_KSWAPD:
        flags |= AllocFlags.KSWAPD
    got = get_page_from_freelist(node, req.order, req.mt, req.highest, flags)
    if got is not None:
        return got
    slow = gfp_to_alloc_flags(req.gfp, req.order)
    if slow & AllocFlags.KSWAPD:
        wakeup_kswapd(node, req.order, req.highest, req.gfp)
    got = get_page_from_freelist(node, req.order, req.mt, req.highest, slow)
    if got is None and req.order and req.gfp & _GFP_DIRECT:
        got = direct_compact_first(node, req, slow)
    while got is None:
        while got is None and req.gfp & _GFP_DIRECT:
            if not direct_reclaim(node, req.order, req.highest):
                break
            got = get_page_from_freelist(node, req.order, req.mt, req.highest, slow)
        if got is None and req.gfp & _GFP_DIRECT and drain_all_pages(node):
            got = get_page_from_freelist(node, req.order, req.mt, req.highest, slow)
        if got is None and req.order and req.gfp & _GFP_DIRECT:
            got = direct_compact_after_reclaim(node, req, slow)
        if got is not None or not oom_may_kill(req):
            break
        got, progress = alloc_pages_may_oom(node, req)
        if got is not None or not progress or _current_killed(node):
            break
        got = get_page_from_freelist(node, req.order, req.mt, req.highest, slow)
    if got is None and not req.gfp & _GFP_NOWARN and not _current_killed(node):
        warn_alloc(node, req)
    return got


def _current_killed(node: Node) -> bool:
    """The allocating process was the OOM victim: it dies, its allocation is moot."""
    return node.current is not None and node.current.killed


def alloc_pages_may_oom(node: Node, req: AllocRequest) -> tuple[tuple[Zone, int] | None, bool]:
    """The last try at the high watermark, then the OOM killer: (block, progress).

    Kernel: mm/page_alloc.c, __alloc_pages_may_oom()
    """
    got = get_page_from_freelist(node, req.order, req.mt, req.highest,
                                 AllocFlags.WMARK_HIGH | AllocFlags.CPUSET)
    if got is not None:
        return got, True
    return None, out_of_memory(node, req)


WARN_ALLOC_INTERVAL_S = 10.0  # nopage_rs: one report per 10 s


def warn_alloc(node: Node, req: AllocRequest) -> None:
    """Report a failed allocation, at most once per 10 s in the log.

    Kernel: mm/page_alloc.c, warn_alloc() (ratelimited by nopage_rs)
    """
    node.emit(WarnAlloc(req.order, req.gfp))
    node.count_event("allocstall_fail")
    now = node.clock()
    if now - node.last_warn_alloc >= WARN_ALLOC_INTERVAL_S:
        node.last_warn_alloc = now
        node.printk(f"{current_comm(node)[0]}: page allocation failure: order:{req.order}, "
                    f"mode:{req.gfp:#x}({format_gfp(req.gfp)}), nodemask=(null)")


def prep_new_page(zone: Zone, pfn: int, req: AllocRequest, owner: int) -> None:
    """Hand a block taken from the free lists to its owner.

    Kernel: mm/page_alloc.c, prep_new_page() (plus the accounting vmstat does)
    """
    node = zone.node
    n = 1 << req.order
    node.mm.mark_allocated(pfn, pfn + n, req.kind, owner, req.order)
    zone.nr_kind[req.kind] += n
    node.count_event(zone.pgalloc_event, n)
    if node.trace.enabled:
        node.emit(MmPageAlloc(pfn, req.order, req.mt, req.gfp))


def alloc_pages(node: Node, order: int, gfp: str | int = "GFP_KERNEL",
                kind: PageKind | None = None, owner: int | None = None,
                name: str = "alloc_pages") -> int | None:
    """Allocate 2**order contiguous pages; return the first pfn or None.

    ``kind`` says what the pages are used for (default: from the gfp's
    migratetype: kernel memory, anonymous memory, reclaimable slab).  With
    no ``owner`` the allocation becomes its own owner, which ``free_pages``
    checks and which follows the pages if they are migrated.

    Kernel: include/linux/gfp.h alloc_pages(), mm/page_alloc.c __alloc_pages()
    """
    req = AllocRequest(node, order, gfp, kind)
    got = alloc_block(node, req)
    if got is None:
        return None
    zone, pfn = got
    if owner is None:
        rec = node.new_owner(req.kind, name, raw=True)
        rec.pfn = rec.first_pfn = pfn
        rec.order, owner = req.order, rec.id
    prep_new_page(zone, pfn, req, owner)
    return pfn


# ------------------------------------------------------------------- freeing
def free_block(node: Node, pfn: int, order: int, to_tail: bool = False) -> None:
    """Return an allocated block to the buddy allocator (no argument checks).

    Kernel: mm/page_alloc.c, __free_pages() -> free_one_page()
    """
    zone = node.page_zone(pfn)
    end = pfn + (1 << order)
    zone_uncharge(zone, node.mm.kind[pfn:end])
    node.mm.mark_free(pfn, end)
    if node.trace.enabled:
        node.emit(MmPageFree(pfn, order))
    node.count_event("pgfree", 1 << order)
    free_pages_ok(zone, pfn, order, to_tail)


def zone_uncharge(zone: Zone, kinds: np.ndarray) -> None:
    """Subtract pages of the given kinds from the zone's per-kind counters."""
    counts = np.bincount(kinds, minlength=len(zone.nr_kind))
    zone.nr_kind -= counts[: len(zone.nr_kind)]


def free_pages(node: Node, pfn: int, order: int) -> None:
    """Free a block that ``alloc_pages`` returned.

    Raises ValueError, changing nothing, if ``pfn``/``order`` is not an
    allocation made by ``alloc_pages`` (a double free, a wrong order, a page
    of an activity, a page that was migrated away).

    Kernel: mm/page_alloc.c, __free_pages()
    """
    _check_raw_free(node, pfn, order)
    owner = node.owners[int(node.mm.owner[pfn])]
    owner.pfn = -1
    free_block(node, pfn, order)


def _check_raw_free(node: Node, pfn: int, order: int) -> None:
    mm = node.mm
    mm.check_pfn(pfn)
    check_order(node, order)
    state = PageState(int(mm.state[pfn]))
    if state != PageState.ALLOCATED:
        raise ValueError(f"pfn={pfn:#x} is not allocated (it is {state.name}); "
                         f"double free?{_migrated_hint(node, pfn)}")
    owner = node.owners[int(mm.owner[pfn])]
    if not owner.raw:
        raise ValueError(f"pfn={pfn:#x} belongs to {owner.name!r} (owner {owner.id}), "
                         f"not to an alloc_pages() call{_migrated_hint(node, pfn)}")
    if owner.pfn != pfn:
        raise ValueError(f"pfn={pfn:#x} is not the first page of its allocation; "
                         f"alloc_pages() returned {owner.pfn:#x}")
    if owner.order != order:
        raise ValueError(f"order={order} does not match: pfn={pfn:#x} was allocated "
                         f"with order {owner.order}")


def _migrated_hint(node: Node, pfn: int) -> str:
    """Explain a stale pfn: its allocation was migrated (e.g. by alloc_contig_range)."""
    for o in node.owners:
        if o.raw and o.first_pfn == pfn and o.pfn not in (pfn, -1):
            return f" (its allocation was migrated to pfn {o.pfn:#x})"
    return ""
