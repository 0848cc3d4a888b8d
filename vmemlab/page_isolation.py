"""Page isolation: fence off pageblocks so nothing is allocated from them.

Before ``alloc_contig_range`` or memory offlining can take a range, they set
its pageblocks to MIGRATE_ISOLATE.  Free pages in those blocks move to the
ISOLATE free lists, which the allocator never hands out, and pages freed
there later (old copies left by migration) land on the same lists.
Isolation first asks ``has_unmovable_pages``: if a pageblock holds a page
that could never be moved (a slab page, a page table, a reserved page) it
refuses with -EBUSY right away, instead of failing after a long migration.

In ZONE_MOVABLE only reserved pages count as unmovable: everything else is
assumed movable, which is the point of that zone.  Pinned LRU pages pass
this check in any zone (the kernel cannot see pins cheaply); they fail
later, in migration, with the same -EBUSY.

Kernel: mm/page_isolation.c (6.12), has_unmovable_pages(),
set_migratetype_isolate(), unset_migratetype_isolate(),
start_isolate_page_range(), undo_isolate_page_range(), test_pages_isolated()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .constants import EBUSY, MigrateType, PageFlag, PageKind, PageState, ZoneType
from .fallback import move_freepages_block
from .freelist import del_page_from_free_list, move_to_free_list
from .page_alloc import _page_is_buddy, free_one_page
from .trace import TestPagesIsolated

if TYPE_CHECKING:
    from .node import Node
    from .zone import Zone

MEMORY_OFFLINE = 0x1    # isolation flags (mm/internal.h)
REPORT_FAILURE = 0x2
_ISOLATE = int(MigrateType.ISOLATE)
_FREE, _ALLOCATED = int(PageState.FREE), int(PageState.ALLOCATED)
_RESERVED, _ABSENT = int(PageState.RESERVED), int(PageState.ABSENT)
_PAGE_OFFLINE = int(PageState.PAGE_OFFLINE)
# Kinds has_unmovable_pages() accepts: LRU pages and __PageMovable pages.
MOVABLE_KINDS = np.array([PageKind(k).lru or PageKind(k).movable_ops
                          for k in range(max(PageKind) + 1)], dtype=bool)


def unmovable_mask(node: Node, start: int, end: int, flags: int = 0) -> np.ndarray:
    """Per pfn of [start, end): would has_unmovable_pages() stop here?

    Reserved pages and holes always; in kernel zones also allocated pages
    that are neither LRU nor movable_ops, and PageOffline pages unless
    offlining memory.  Pages with a zero reference count (on a per-CPU
    list, see vmemlab.pcp) are skipped, as the kernel skips them.
    """
    mm, pbo = node.mm, node.geo.pageblock_order
    state = mm.state[start:end]
    bad = (state == _RESERVED) | (state == _ABSENT)
    zones = np.repeat(mm.pb_zone[start >> pbo:-(-end >> pbo)], 1 << pbo)
    off = start - (start >> pbo << pbo)
    kernel_zone = zones[off:off + (end - start)] != ZoneType.MOVABLE
    used = ((state == _ALLOCATED) & ~MOVABLE_KINDS[mm.kind[start:end]]
            & ((mm.flags[start:end] & PageFlag.REFCOUNT_ZERO) == 0))
    if not flags & MEMORY_OFFLINE:
        held = (state == _PAGE_OFFLINE) & ((mm.flags[start:end] & PageFlag.REFCOUNT_ZERO) == 0)
        used |= held & ~movable_ops_mask(node, mm.kind[start:end])
    return bad | (kernel_zone & used)


def movable_ops_mask(node: Node, kinds: np.ndarray) -> np.ndarray:
    """Pages whose owner registered movable_ops (balloon pages): __PageMovable()."""
    if not node.movable_ops:
        return np.zeros(len(kinds), bool)
    return np.isin(kinds, list(node.movable_ops))


def has_unmovable_pages(node: Node, start: int, end: int, flags: int = 0) -> int | None:
    """The first page in [start, end) (one pageblock) that can never move, or None.

    Kernel: mm/page_isolation.c, has_unmovable_pages()
    """
    hits = np.flatnonzero(unmovable_mask(node, start, end, flags))
    return start + int(hits[0]) if len(hits) else None


def find_large_buddy(node: Node, start: int) -> int:
    """The head of a free buddy that straddles ``start``, else ``start``.

    Kernel: mm/page_isolation.c (6.12) / mm/page_alloc.c, find_large_buddy()
    """
    mm = node.mm
    pfn, order = start, 0
    while not (mm.state.item(pfn) == _FREE and mm.order.item(pfn) >= 0):
        order += 1
        if order > node.geo.max_page_order:
            return start
        pfn &= ~0 << order
    return pfn if pfn + (1 << mm.order.item(pfn)) > start else start


def split_large_buddy(zone: Zone, pfn: int, order: int) -> None:
    """Free a removed block in pageblock pieces, each with its own type.

    Kernel: mm/page_alloc.c, split_large_buddy()
    """
    mm, pbo = zone.node.mm, zone.node.geo.pageblock_order
    step = 1 << min(order, pbo)
    for piece in range(pfn, pfn + (1 << order), step):
        free_one_page(zone, piece, min(order, pbo), int(mm.pb_mt[piece >> pbo]))


def move_freepages_block_isolate(zone: Zone, pfn: int, mt: int) -> bool:
    """Retype one pageblock and move its free pages to ``mt``'s lists.

    A free buddy larger than the pageblock is taken off its list and freed
    again in pageblock pieces, so only this block's part changes lists.
    Fails (False) if the pageblock straddles a zone boundary.

    Kernel: mm/page_alloc.c, move_freepages_block_isolate()
    """
    node = zone.node
    mm, geo = node.mm, node.geo
    mt = mm.pageblock_type(mt)  # lists follow the type the block really gets
    start = pfn >> geo.pageblock_order << geo.pageblock_order
    if not (zone.spans(start) and zone.spans(start + geo.pageblock_nr_pages - 1)):
        return False
    if node.profile.freelist_hygiene and geo.pageblock_order < geo.max_page_order:
        head = find_large_buddy(node, start)
        if head != start or (_page_is_buddy(zone, start, mm.order.item(start))
                             and mm.order.item(start) > geo.pageblock_order):
            order = mm.order.item(head)
            del_page_from_free_list(zone, head, order, int(mm.owner[head]))
            mm.set_pageblock_migratetype(start, MigrateType(mt))
            split_large_buddy(zone, head, order)
            return True
    old = None if not node.profile.freelist_hygiene else int(mm.pb_mt[start >> geo.pageblock_order])
    if mm.state.item(start) == _FREE and mm.order.item(start) == geo.pageblock_order:
        # The whole pageblock is one free block: move just that one.
        move_to_free_list(zone, start, geo.pageblock_order, int(mm.owner[start]), mt)
    else:
        move_freepages_block(zone, start, old, mt)
    mm.set_pageblock_migratetype(start, MigrateType(mt))
    return True


def set_migratetype_isolate(node: Node, pfn: int, flags: int, start: int, end: int,
                            unmovable: int | None = -1) -> int:
    """Isolate the pageblock of ``pfn`` unless it is already isolated or unmovable.

    ``unmovable`` may carry a precomputed has_unmovable_pages() answer.
    Returns 0 or -EBUSY.  Kernel: mm/page_isolation.c, set_migratetype_isolate()
    """
    mm, geo = node.mm, node.geo
    zone = node.page_zone(pfn)
    pb_start = pfn >> geo.pageblock_order << geo.pageblock_order
    if zone is None or mm.pb_mt.item(pfn >> geo.pageblock_order) == _ISOLATE:
        return EBUSY
    if unmovable == -1:
        lo, hi = max(pb_start, start), min(pb_start + geo.pageblock_nr_pages, end)
        unmovable = has_unmovable_pages(node, lo, hi, flags)
    if unmovable is not None:
        if flags & REPORT_FAILURE:
            node.printk(f"page:{unmovable:#x} dump_page: unmovable page")
        return EBUSY
    if not move_freepages_block_isolate(zone, pb_start, _ISOLATE):
        return EBUSY
    zone.nr_isolate_pageblock += 1
    return 0


def unset_migratetype_isolate(node: Node, pfn: int, mt: int) -> None:
    """Give an isolated pageblock type ``mt`` back; let its free pages merge again.

    Kernel: mm/page_isolation.c, unset_migratetype_isolate()
    """
    mm, geo = node.mm, node.geo
    zone = node.page_zone(pfn)
    start = pfn >> geo.pageblock_order << geo.pageblock_order
    if mm.pb_mt.item(start >> geo.pageblock_order) != _ISOLATE:
        return
    order = mm.order.item(start)
    if (mm.state.item(start) == _FREE and geo.pageblock_order <= order < geo.max_page_order
            and _page_is_buddy(zone, start ^ (1 << order), order)
            and mm.pb_mt.item((start ^ (1 << order)) >> geo.pageblock_order) != _ISOLATE):
        # __isolate_free_page() + __putback_isolated_page(): re-free so it merges.
        del_page_from_free_list(zone, start, order, _ISOLATE)
        mm.set_pageblock_migratetype(start, MigrateType(mt))
        free_one_page(zone, start, order, mt, to_tail=True)
    else:
        move_freepages_block_isolate(zone, start, mt)
    zone.nr_isolate_pageblock -= 1


def isolation_range(node: Node, start: int, end: int) -> tuple[int, int]:
    """The pageblocks alloc_contig_range isolates for [start, end), by profile.

    6.12 rounds to pageblocks; 5.8 to max(MAX_ORDER block, pageblock), 4 MiB
    on x86-64 (pfn_max_align_down/up).
    """
    geo = node.geo
    order = geo.pageblock_order
    if node.profile.contig_align == "max_order":
        order = max(geo.max_page_order, geo.pageblock_order)
    size = 1 << order
    return start // size * size, -(-end // size) * size


def start_isolate_page_range(node: Node, start: int, end: int, flags: int = 0) -> int:
    """Isolate every pageblock covering [start, end); all or nothing.

    6.12 isolates the first and last pageblock first (and refuses if a
    bigger in-use page straddles their outer edge), then the ones between.
    On any failure everything isolated so far is undone: -EBUSY.

    Kernel: mm/page_isolation.c, start_isolate_page_range()
    """
    pb = node.geo.pageblock_nr_pages
    iso_start, iso_end = isolation_range(node, start, end)
    blocks = list(range(iso_start, iso_end, pb))
    if node.profile.contig_align == "pageblock" and len(blocks) > 1:
        blocks = [blocks[0], blocks[-1]] + blocks[1:-1]
    done: list[int] = []
    unmovable = _unmovable_per_block(node, iso_start, iso_end, flags)
    has_free = np.any(node.mm.state[iso_start:iso_end].reshape(-1, pb) == _FREE, axis=1)
    for pfn in blocks:
        if not _has_memmap(node, pfn):
            continue
        i = (pfn - iso_start) // pb
        if unmovable[i] is None and not has_free[i] and _quick_isolate(node, pfn):
            done.append(pfn)
            continue
        rc = set_migratetype_isolate(node, pfn, flags, iso_start, iso_end, unmovable[i])
        if rc == 0 and pfn in (iso_start, iso_end - pb):
            _split_straddling_free(node, pfn, iso_start, iso_end)
            rc = _check_straddling(node, pfn, iso_start, iso_end)
            if rc:
                unset_migratetype_isolate(node, pfn, int(MigrateType.MOVABLE))
        if rc:
            for undo in reversed(done):
                unset_migratetype_isolate(node, undo, int(MigrateType.MOVABLE))
            return rc
        done.append(pfn)
    return 0


def first_unmovable(node: Node, start: int, end: int, flags: int = 0) -> int | None:
    """The page that makes start_isolate_page_range() fail, in the kernel's order."""
    pb = node.geo.pageblock_nr_pages
    iso_start, iso_end = isolation_range(node, start, end)
    per_block = _unmovable_per_block(node, iso_start, iso_end, flags)
    order = list(range(len(per_block)))
    if node.profile.contig_align == "pageblock" and len(order) > 1:
        order = [order[0], order[-1]] + order[1:-1]
    for i in order:
        if per_block[i] is not None and _has_memmap(node, iso_start + i * pb):
            return per_block[i]
    return None


def _quick_isolate(node: Node, pfn: int) -> bool:
    """Isolate a pageblock that holds no free page: only its type changes.

    Exactly what set_migratetype_isolate() does there (nothing to move), minus
    the walk.  False if it must take the full path (already isolated, zone edge).
    """
    mm, geo = node.mm, node.geo
    zone = node.page_zone(pfn)
    pb = pfn >> geo.pageblock_order
    if zone is None or mm.pb_mt.item(pb) == _ISOLATE or not (
            zone.spans(pfn) and zone.spans(pfn + geo.pageblock_nr_pages - 1)):
        return False
    mm.pb_mt[pb] = _ISOLATE
    zone.nr_isolate_pageblock += 1
    return True


def _unmovable_per_block(node: Node, start: int, end: int, flags: int) -> list[int | None]:
    """has_unmovable_pages() for every pageblock of [start, end) in one pass."""
    pb = node.geo.pageblock_nr_pages
    mask = unmovable_mask(node, start, end, flags).reshape(-1, pb)
    first = np.argmax(mask, axis=1)
    return [start + i * pb + int(f) if mask[i, f] else None for i, f in enumerate(first)]


def _has_memmap(node: Node, pfn: int) -> bool:
    """pfn_to_online_page(): the pfn's section exists and is online."""
    return bool(node.mm.section_online[pfn // node.geo.pages_per_section])


def _split_straddling_free(node: Node, pfn: int, iso_start: int, iso_end: int) -> None:
    """5.19-6.9: split a free buddy that crosses the outer edge of the isolated range.

    Without freelist hygiene isolating a pageblock moves only the free
    blocks whose head lies in it, so a buddy reaching in from outside would
    stay allocatable.  isolate_single_pageblock() therefore splits it at
    the boundary, each piece freed to its own pageblock's list.  From 6.10
    move_freepages_block_isolate() splits every such buddy already.

    Kernel: mm/page_isolation.c (6.1), isolate_single_pageblock(), split_free_page()
    """
    if node.profile.freelist_hygiene or node.profile.contig_align != "pageblock":
        return
    pb = node.geo.pageblock_nr_pages
    mm = node.mm
    for boundary in {iso_start, iso_end} & {pfn, pfn + pb}:
        head = find_large_buddy(node, boundary) if boundary < mm.nr_pfns else boundary
        if head == boundary:
            continue
        order = mm.order.item(head)
        zone = node.page_zone(head)
        del_page_from_free_list(zone, head, order, int(mm.owner[head]))
        split_large_buddy(zone, head, order)


def _check_straddling(node: Node, pfn: int, iso_start: int, iso_end: int) -> int:
    """Refuse if an allocated block crosses the outer edge of the isolated range.

    As 6.10+ does on every profile: 5.19-6.9 migrated such a page when it
    was an LRU or movable compound page, which vmemlab does not model
    (docs/glossary.md, "straddling in-use blocks").

    Kernel: mm/page_isolation.c, isolate_single_pageblock() (compound pages
    bigger than a pageblock that straddle the boundary: -EBUSY)
    """
    mm = node.mm
    max_pages = node.geo.max_order_nr_pages
    for boundary in {iso_start, iso_end} & {pfn, pfn + node.geo.pageblock_nr_pages}:
        lo = max(boundary // max_pages * max_pages - max_pages, 0)
        heads = lo + np.flatnonzero((mm.state[lo:boundary] == _ALLOCATED)
                                    & (mm.order[lo:boundary] > node.geo.pageblock_order))
        for head in heads.tolist():
            if head < boundary < head + (1 << mm.order.item(head)):
                return EBUSY
    return 0


def undo_isolate_page_range(node: Node, start: int, end: int,
                            mt: int = int(MigrateType.MOVABLE)) -> None:
    """Return every isolated pageblock covering [start, end) to type ``mt``.

    Up to 6.16 undo writes the caller's type (MIGRATE_MOVABLE for
    alloc_contig_range and offlining), not the type a block had before:
    an UNMOVABLE free block comes back MOVABLE.

    Kernel: mm/page_isolation.c, undo_isolate_page_range()
    """
    geo, mm = node.geo, node.mm
    pb, pbo = geo.pageblock_nr_pages, geo.pageblock_order
    iso_start, iso_end = isolation_range(node, start, end)
    blocks = np.arange(iso_start >> pbo, iso_end >> pbo)
    isolated = mm.pb_mt[blocks] == _ISOLATE
    has_free = np.any(mm.state[iso_start:iso_end].reshape(-1, pb) == _FREE, axis=1)
    # Blocks without free pages only change type (nothing to move or merge).
    quiet = blocks[isolated & ~has_free]
    mm.pb_mt[quiet] = mm.pageblock_type(mt)
    zones = mm.pb_zone[quiet]
    for zid in np.flatnonzero(np.bincount(zones, minlength=1)).tolist():
        node.zones[zid].nr_isolate_pageblock -= int(np.count_nonzero(zones == zid))
    for b in blocks[isolated & has_free].tolist():
        if _has_memmap(node, b << pbo):
            unset_migratetype_isolate(node, b << pbo, mt)


def test_pages_isolated(node: Node, start: int, end: int, flags: int = 0) -> int:
    """0 if every page of [start, end) is free on an isolated block, else -EBUSY.

    Free blocks are skipped whole; with MEMORY_OFFLINE, PageOffline pages
    whose driver dropped its reference count as free too.  Emits the
    test_pages_isolated event whose ``fin_pfn`` names the busy page.

    Kernel: mm/page_isolation.c, test_pages_isolated(),
    __test_page_isolated_in_pageblock()
    """
    mm, geo = node.mm, node.geo
    # First every pageblock must be isolated: the kernel checks pfn = start,
    # start + pageblock_nr_pages, ... and reports the first that is not.
    probes = np.arange(start, end, geo.pageblock_nr_pages)
    not_isolated = ((mm.pb_mt[probes >> geo.pageblock_order] != _ISOLATE)
                    & mm.section_online[probes // geo.pages_per_section])
    if np.any(not_isolated):
        fin = int(probes[np.argmax(not_isolated)])
    else:
        fin = _first_busy(node, start, end, flags)
    ret = 0 if fin >= end else EBUSY
    node.emit(TestPagesIsolated(start, end, fin, ret))
    return ret


def _first_busy(node: Node, start: int, end: int, flags: int) -> int:
    """Where the walk of __test_page_isolated_in_pageblock() stops."""
    mm = node.mm
    state = mm.state[start:end]
    ok = state == _FREE
    if flags & MEMORY_OFFLINE:
        ok |= (state == _PAGE_OFFLINE) & ((mm.flags[start:end] & PageFlag.REFCOUNT_ZERO) != 0)
    if mm.state.item(start) == _FREE and mm.order.item(start) < 0:
        return start  # a free page that is not a buddy head: the walk cannot start here
    busy = np.flatnonzero(~ok)
    return start + int(busy[0]) if len(busy) else end
