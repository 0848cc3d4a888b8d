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
from .freelist import (
    account_freepages,
    del_page_from_free_list,
    groups,
    move_blocks_to_free_list,
    move_to_free_list,
)
from .page_alloc import _merge_blocked, _page_is_buddy, free_one_page
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
_ISOLATE_BATCH = 2   # plain pageblocks in a row from which they are isolated together
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
    On any failure everything isolated so far is undone: -EBUSY.  Runs of
    pageblocks in between that need nothing special are isolated together
    (``_isolate_plain``), with the same result.

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
    plain = _plain_blocks(node, iso_start, iso_end, unmovable)
    i = 0
    while i < len(blocks):
        pfn = blocks[i]
        j = (pfn - iso_start) // pb
        run = _plain_run(node, plain, blocks, i, iso_start, pb)
        if run >= _ISOLATE_BATCH:
            _isolate_plain(node, pfn, run)
            done += blocks[i:i + run]
            i += run
            continue
        i += 1
        if not _has_memmap(node, pfn):
            continue
        if unmovable[j] is None and not has_free[j] and _quick_isolate(node, pfn):
            done.append(pfn)
            continue
        rc = set_migratetype_isolate(node, pfn, flags, iso_start, iso_end, unmovable[j])
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


def _plain_blocks(node: Node, iso_start: int, iso_end: int,
                  unmovable: list[int | None]) -> np.ndarray:
    """Pageblocks whose isolation ``_isolate_plain`` can do at once.

    Not the outer two (their edges are checked), with a memmap, in a zone
    that spans them, not isolated yet, without unmovable pages, and (since
    6.10) not inside a free buddy bigger than a pageblock (those are split
    first), unless it is a free max-order block of two pageblocks both
    isolated here (``_split_pairs``).
    """
    mm, geo = node.mm, node.geo
    pbo = geo.pageblock_order
    starts = np.arange(iso_start, iso_end, geo.pageblock_nr_pages)
    idx = starts >> pbo
    zones = mm.pb_zone[idx].astype(np.int64)
    ok = ((mm.pb_mt[idx] != _ISOLATE) & mm.section_online[starts // geo.pages_per_section]
          & np.array([u is None for u in unmovable]) & (zones < len(node.zones)))
    ok[[0, -1]] = False
    for zid in set(zones[ok].tolist()):
        zone = node.zones[zid]
        here = zones == zid
        ok[here] &= ((starts[here] >= zone.zone_start_pfn)
                     & (starts[here] + geo.pageblock_nr_pages <= zone.zone_end_pfn))
    if not node.profile.freelist_hygiene:
        return ok
    covered = np.zeros(len(starts), bool)
    for o in [0, *range(pbo + 1, geo.max_page_order + 1)]:
        head = starts >> o << o
        order = mm.order[head].astype(np.int64)
        covered |= ((mm.state[head] == _FREE) & (order > pbo)
                    & (head + np.left_shift(1, np.maximum(order, 0)) > starts))
    pairs = np.zeros(len(starts), bool)
    if geo.max_page_order == pbo + 1:
        first = np.flatnonzero((mm.state[starts[:-1]] == _FREE)
                               & (mm.order[starts[:-1]] == pbo + 1))
        first = first[ok[first] & ok[first + 1]]
        zone = node.page_zone(iso_start)
        split = [zone is not None and _merge_blocked(zone, int(t), _ISOLATE)
                 for t in mm.pb_mt[idx[first + 1]].tolist()]
        first = first[np.array(split, bool)] if len(first) else first
        pairs[first] = pairs[first + 1] = True
    return ok & (~covered | pairs)


def _plain_run(node: Node, plain: np.ndarray, blocks: list[int], i: int, iso_start: int,
               pb: int) -> int:
    """How many blocks from ``blocks[i]`` on are plain, consecutive and in one zone."""
    j = (blocks[i] - iso_start) // pb
    if not plain[j]:
        return 0
    zones = node.mm.pb_zone[(iso_start >> node.geo.pageblock_order) + j:
                            (iso_start >> node.geo.pageblock_order) + len(plain)]
    same = plain[j:] & (zones == zones[0])
    n = int(np.argmin(same)) if not same.all() else len(same)
    while n and blocks[i + n - 1] != blocks[i] + (n - 1) * pb:   # 6.12 takes the ends first
        n -= 1
    return n


def _isolate_plain(node: Node, start: int, count: int) -> None:
    """set_migratetype_isolate() of ``count`` plain pageblocks from ``start``, at once.

    Each pageblock's free blocks go to the tails of the ISOLATE lists,
    pageblock by pageblock in pfn order: since 6.10 only those on the
    pageblock's own list (a whole free pageblock always), before all.
    """
    mm, geo = node.mm, node.geo
    pbo = geo.pageblock_order
    end = start + count * geo.pageblock_nr_pages
    zone = node.page_zone(start)
    heads = start + np.flatnonzero((mm.state[start:end] == _FREE) & (mm.order[start:end] >= 0))
    orders = mm.order[heads].astype(np.int64)
    if node.profile.freelist_hygiene and (orders > pbo).any():
        _split_pairs(zone, heads[orders > pbo])
        heads = np.sort(np.concatenate([heads[orders <= pbo],
                                        heads[orders > pbo] + geo.pageblock_nr_pages]))
        orders = mm.order[heads].astype(np.int64)
    lists = mm.owner[heads].astype(np.int64)
    if node.profile.freelist_hygiene:
        move = (lists == mm.pb_mt[heads >> pbo]) | (orders == pbo)
        heads, orders, lists = heads[move], orders[move], lists[move]
    move_blocks_to_free_list(zone, heads, orders, lists, _ISOLATE)
    mm.pb_mt[start >> pbo:end >> pbo] = mm.pageblock_type(MigrateType.ISOLATE)
    zone.nr_isolate_pageblock += count


def _split_pairs(zone: Zone, heads: np.ndarray) -> None:
    """The first half of move_freepages_block_isolate() for free max-order blocks of two
    pageblocks: each is taken off its list and freed again a pageblock at a time
    (split_large_buddy()); the first half, already isolated, goes to the head of
    the ISOLATE list, the second to its own type's list (it cannot merge with an
    isolated buddy), from which isolating its pageblock moves it right after.
    """
    mm, pbo = zone.node.mm, zone.node.geo.pageblock_order
    area = zone.free_area
    for mt, sel in groups(mm.owner[heads].astype(np.int64)):
        area[pbo + 1].free_list[mt].remove_many(heads[sel])
        account_freepages(zone, -(len(heads[sel]) << (pbo + 1)), mt)
    mm.pb_mt[heads >> pbo] = mm.pageblock_type(MigrateType.ISOLATE)
    mm.order[heads] = pbo
    mm.owner[heads] = _ISOLATE
    area[pbo].free_list[_ISOLATE].extend(heads)
    second = heads + (1 << pbo)
    types = mm.pb_mt[second >> pbo].astype(np.int64)
    mm.order[second] = pbo
    mm.owner[second] = types
    for mt, sel in groups(types):
        area[pbo].free_list[mt].extend(second[sel])
        account_freepages(zone, len(second[sel]) << pbo, mt)


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
