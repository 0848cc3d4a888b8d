"""Bulk allocation and freeing of order-0 pages, vectorized.

Filling a 16 GiB guest is four million page allocations; doing them one
Python call at a time would take seconds.  These functions give *exactly*
the result of the equivalent loop of single calls (same pfns, same free
lists, same pageblock types, same events), but work a free block at a time
and mark pages in the memmap with numpy slices:

* ``alloc_pages_bulk(node, gfp, n)`` == ``n`` calls of ``alloc_pages(0, gfp)``,
  stopping at the first failure.  Taking order-0 pages one by one from a
  block of order k hands out its pages in ascending order (``expand`` keeps
  the lower half and the next smallest block is always the upper half just
  freed), so a whole block can be taken at once.
* ``free_pages_bulk(node, pfns)`` == freeing each page in ascending pfn
  order.  A run of consecutive pages is freed as the aligned blocks it
  decomposes into, at most a pageblock each, which merges to the same
  result as page-by-page frees.  Pages of MIGRATE_ISOLATE pageblocks (the
  sources of an alloc_contig_range() migration) are rebuilt pageblock by
  pageblock with numpy; there only the order on the ISOLATE lists, which
  nothing reads, may differ.

The kernel's counterpart, alloc_pages_bulk(), exists for the same reason
(fewer trips through the allocator).  Kernel: mm/page_alloc.c,
alloc_pages_bulk_noprof(), free_pages_bulk(); tests/test_bulk.py checks the
equivalence on random machines.
"""

from __future__ import annotations

from itertools import islice
from typing import TYPE_CHECKING

import numpy as np

from .constants import MigrateType, PageKind, PageState
from .freelist import account_freepages, add_to_free_list, del_page_from_free_list
from .gfp import Gfp
from .page_alloc import (
    AllocFlags,
    AllocRequest,
    alloc_block,
    alloc_flags_nofragment,
    free_one_page,
    prep_new_page,
    rmqueue,
    watermark_headroom,
    zone_uncharge,
)
from .trace import MmPageAlloc, MmPageFree

if TYPE_CHECKING:
    from collections import OrderedDict

    from .node import Node
    from .zone import Zone

_GFP_KSWAPD = int(Gfp.KSWAPD_RECLAIM)
_ISOLATE = int(MigrateType.ISOLATE)
_REBUILD_MIN = 64  # isolated pages freed at once, from which rebuilding pageblocks pays
_FREE = int(PageState.FREE)
# Few or long runs are marked slice by slice; many short ones by fancy indexing.
_SLICE_RUNS = 32
_SLICE_RUN = 64


Runs = tuple[np.ndarray, np.ndarray]  # first pfns and lengths, in allocation order
RunLists = tuple[list[int], list[int]]  # the same, while being collected


def alloc_pages_bulk(node: Node, gfp: str | int, nr_pages: int,
                     kind: PageKind | None = None, owner: int = -1,
                     fast_only: bool = False) -> np.ndarray:
    """Allocate up to ``nr_pages`` order-0 pages; return their pfns in allocation order.

    Stops early, like the loop it replaces, at the first page the allocator
    cannot provide even after reclaim.  With ``fast_only`` it stops where
    the next page would need the slow path (kswapd, the min watermark,
    direct reclaim).
    """
    return _expand(*alloc_bulk_runs(node, gfp, nr_pages, kind, owner, fast_only))


def alloc_bulk_runs(node: Node, gfp: str | int, nr_pages: int,
                    kind: PageKind | None = None, owner: int = -1,
                    fast_only: bool = False) -> Runs:
    """``alloc_pages_bulk`` as runs of consecutive pfns (cheap for large fills)."""
    req = AllocRequest(node, 0, gfp, kind)
    if nr_pages < 0:
        raise ValueError(f"nr_pages={nr_pages} must not be negative")
    zonelist = node.zonelist(req.highest)
    starts: list[int] = []
    lengths: list[int] = []
    out = (starts, lengths)
    remaining = nr_pages
    fast = AllocFlags.WMARK_LOW
    if zonelist:
        fast |= alloc_flags_nofragment(node, zonelist[0])
    if req.gfp & _GFP_KSWAPD:
        fast |= AllocFlags.KSWAPD
    while remaining and zonelist:
        remaining -= _bulk_from_freelist(node, zonelist, req, remaining, fast, owner, out)
        if not remaining or fast_only:
            break
        got = alloc_block(node, req)  # the slow path, for one page
        if got is None:
            break
        zone, pfn = got
        prep_new_page(zone, pfn, req, owner)
        starts.append(pfn)
        lengths.append(1)
        remaining -= 1
    return np.array(starts, np.int64), np.array(lengths, np.int64)


def _expand(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The pfns of runs, run after run."""
    total = int(lengths.sum())
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(total, dtype=np.int64)


def _bulk_from_freelist(node: Node, zonelist: list[Zone], req: AllocRequest, limit: int,
                        alloc_flags: int, owner: int, out: RunLists) -> int:
    """get_page_from_freelist() for many pages: zone by zone, pass by pass."""
    taken = 0
    passes = [alloc_flags]
    if alloc_flags & AllocFlags.NOFRAGMENT:
        passes.append(alloc_flags & ~AllocFlags.NOFRAGMENT)
    for flags in passes:
        for zone in zonelist:
            while taken < limit:
                room = watermark_headroom(zone, flags, req.highest)
                if room <= 0:
                    break
                got = _rmqueue_bulk(zone, min(limit - taken, room), req, flags, owner, out)
                if not got:
                    break
                taken += got
            if taken == limit:
                return taken
    return taken


def _rmqueue_bulk(zone: Zone, n: int, req: AllocRequest, alloc_flags: int, owner: int,
                  out: RunLists) -> int:
    """Take ``n`` order-0 pages from one zone: whole blocks, then fallback steps."""
    got = 0
    while got < n:
        got += _take_smallest_bulk(zone, n - got, req, owner, out)
        if got == n:
            break
        pfn = rmqueue(zone, 0, req.mt, alloc_flags)  # one fallback step
        if pfn is None:
            break
        prep_new_page(zone, pfn, req, owner)
        out[0].append(pfn)
        out[1].append(1)
        got += 1
    return got


def _take_smallest_bulk(zone: Zone, want: int, req: AllocRequest, owner: int,
                        out: RunLists) -> int:
    """Repeated __rmqueue_smallest(order 0) on the requester's own lists.

    Order by order, the blocks at the head of the list are taken whole, a
    list at a time; only the last block may be split, its tail left as
    expand() would leave it.
    """
    mt = req.mt
    starts: list[int] = []
    lengths: list[int] = []
    taken = 0
    for order, area in enumerate(zone.free_area):
        lst = area.free_list[mt]
        if not lst:
            continue
        whole = min(len(lst), (want - taken) >> order)
        if whole:
            starts += _pop_whole_blocks(zone, lst, whole, order, mt)
            lengths += [1 << order] * whole
            taken += whole << order
        if taken < want and lst:
            pfn = next(iter(lst))
            del_page_from_free_list(zone, pfn, order, mt)
            _free_tail(zone, pfn + want - taken, pfn + (1 << order), mt)
            starts.append(pfn)
            lengths.append(want - taken)
            taken = want
        if taken == want:
            break
    if taken:
        _hand_out(zone, starts, lengths, taken, req, owner)
        out[0].extend(starts)
        out[1].extend(lengths)
    return taken


def _pop_whole_blocks(zone: Zone, lst: OrderedDict[int, None], n: int, order: int,
                      mt: int) -> list[int]:
    """Take the first ``n`` blocks off ``lst``; return their head pfns.

    The heads' buddy order and list mark are not reset here: every page is
    marked allocated right after (``_hand_out``).
    """
    if n == 1:
        heads = [next(iter(lst))]
        del lst[heads[0]]
    elif n == len(lst):
        heads = list(lst)
        lst.clear()
    else:
        heads = list(islice(lst, n))
        for pfn in heads:
            del lst[pfn]
    account_freepages(zone, -(n << order), mt)
    return heads


def _free_tail(zone: Zone, start: int, end: int, mt: int) -> None:
    """Put ``[start, end)`` back as the aligned blocks expand() would have left.

    Every lower order's list is empty here (that is why a larger block was
    split), so each remainder block lands alone at the head of its list.
    """
    while start < end:
        order = _largest_aligned_order(start, end - start)
        add_to_free_list(zone, start, order, mt)
        start += 1 << order


def _largest_aligned_order(pfn: int, nr: int) -> int:
    """The order of the biggest naturally aligned block at ``pfn`` within ``nr`` pages."""
    order = (pfn & -pfn).bit_length() - 1 if pfn else 63
    return min(order, nr.bit_length() - 1)


def _hand_out(zone: Zone, starts: list[int], lengths: list[int], nr_pages: int,
              req: AllocRequest, owner: int) -> None:
    """prep_new_page() for order-0 pages taken off the lists, in allocation order."""
    node = zone.node
    if len(starts) <= _SLICE_RUNS or len(starts) * _SLICE_RUN < nr_pages:
        for start, end in _coalesce(starts, lengths):
            node.mm.mark_allocated(start, end, req.kind, owner)
    else:
        pfns = _expand(np.array(starts, np.int64), np.array(lengths, np.int64))
        node.mm.mark_allocated_pfns(pfns, req.kind, owner)
    zone.nr_kind[req.kind] += nr_pages
    node.count_event(zone.pgalloc_event, nr_pages)
    if node.trace.enabled:
        for start, n in zip(starts, lengths, strict=True):
            for p in range(start, start + n):
                node.emit(MmPageAlloc(p, 0, req.mt, req.gfp))


def _coalesce(starts: list[int], lengths: list[int]) -> list[tuple[int, int]]:
    """Runs as [start, end) ranges, neighbours joined."""
    ranges: list[tuple[int, int]] = []
    for start, n in zip(starts, lengths, strict=True):
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], start + n)
        else:
            ranges.append((start, start + n))
    return ranges


def free_pages_bulk(node: Node, pfns: np.ndarray) -> None:
    """Free order-0 allocated pages as if one by one in ascending pfn order.

    The caller guarantees every pfn is an allocated order-0 page (activities
    and migration do); use ``free_pages`` for checked single frees.
    """
    pfns = np.asarray(pfns, dtype=np.int64)
    if not len(pfns):
        return
    if len(pfns) > 1 and not np.all(pfns[1:] > pfns[:-1]):
        pfns = np.unique(pfns)
    mm, pbo = node.mm, node.geo.pageblock_order
    zones = mm.pb_zone[pfns >> pbo]
    node.count_event("pgfree", len(pfns))
    if node.trace.enabled:
        for p in pfns.tolist():
            node.emit(MmPageFree(p, 0))
    for zidx in np.flatnonzero(np.bincount(zones)).tolist():
        zone_pfns = pfns[zones == zidx]
        zone = node.zones[zidx]
        zone_uncharge(zone, mm.kind[zone_pfns])
        mm.state[zone_pfns] = PageState.FREE
        mm.kind[zone_pfns] = PageKind.NONE
        mm.flags[zone_pfns] = 0
        mm.owner[zone_pfns] = -1
        mm.order[zone_pfns] = -1
        isolated = mm.pb_mt[zone_pfns >> pbo] == _ISOLATE
        if np.count_nonzero(isolated) >= _REBUILD_MIN:  # else page by page is cheaper
            _free_into_isolated(zone, zone_pfns[isolated])
            zone_pfns = zone_pfns[~isolated]
            if not len(zone_pfns):
                continue
        heads, orders = _aligned_blocks(zone_pfns, pbo)
        mts = mm.pb_mt[heads >> pbo]
        for pfn, order, mt in zip(heads.tolist(), orders.tolist(), mts.tolist(), strict=True):
            free_one_page(zone, pfn, order, mt)


def _free_into_isolated(zone: Zone, pfns: np.ndarray) -> None:
    """Free pages of MIGRATE_ISOLATE pageblocks: rebuild those pageblocks' free blocks.

    Below pageblock_order buddies always merge, so after any sequence of
    frees a pageblock's free blocks are the canonical buddy decomposition
    of its free pages.  That decomposition is computed for every touched
    pageblock at once; whole free pageblocks go through free_one_page(),
    which merges them further as the profile allows.  Only the order of
    blocks on the ISOLATE lists can differ from page-by-page frees, and
    nothing reads it: undoing isolation and taking the range walk pfns.
    The pages are already marked free in the memmap.
    """
    mm, pbo = zone.node.mm, zone.node.geo.pageblock_order
    per = 1 << pbo
    base = np.unique(pfns >> pbo) << pbo
    span = (base[:, None] + np.arange(per, dtype=np.int64)).ravel()
    free = mm.state[span] == _FREE
    old = span[free & (mm.order[span] >= 0)]
    for pfn, order, mt in zip(old.tolist(), mm.order[old].tolist(), mm.owner[old].tolist(),
                              strict=True):
        del_page_from_free_list(zone, pfn, order, mt)
    heads, orders = _buddy_decomposition(free.reshape(len(base), per), base, pbo)
    for pfn, order in zip(heads.tolist(), orders.tolist(), strict=True):
        if order == pbo:
            free_one_page(zone, pfn, order, _ISOLATE)
        else:
            add_to_free_list(zone, pfn, order, _ISOLATE)


def _buddy_decomposition(free: np.ndarray, base: np.ndarray,
                         max_order: int) -> tuple[np.ndarray, np.ndarray]:
    """The maximal aligned all-free blocks of each row of ``free``, by pfn."""
    rows = len(base)
    covered = np.zeros_like(free)
    heads, orders = [], []
    for order in range(max_order, -1, -1):
        size = 1 << order
        whole = (free.reshape(rows, -1, size).all(axis=2)
                 & ~covered.reshape(rows, -1, size).any(axis=2))
        row, col = np.nonzero(whole)
        heads.append(base[row] + col * size)
        orders.append(np.full(len(row), order, np.int64))
        covered.reshape(rows, -1, size)[whole] = True
    head = np.concatenate(heads)
    by_pfn = np.argsort(head, kind="stable")
    return head[by_pfn], np.concatenate(orders)[by_pfn]


def _aligned_blocks(pfns: np.ndarray, max_order: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut sorted pfns into naturally aligned blocks of at most ``max_order``.

    Each run of consecutive pages becomes the blocks split_large_buddy()
    and free_pages_prepare() would free, in ascending order; a pageblock's
    type cannot change before its own pages are freed (only free buddies
    are retyped), so looking up every block's type up front is safe.
    """
    start, left = _runs(pfns)
    heads, orders = [], []
    while len(start):
        align = np.where(start == 0, max_order, _log2_floor(start & -start))
        order = np.minimum(np.minimum(align, _log2_floor(left)), max_order)
        heads.append(start)
        orders.append(order)
        start = start + (1 << order)
        left = left - (1 << order)
        keep = left > 0
        start, left = start[keep], left[keep]
    head = np.concatenate(heads)
    by_pfn = np.argsort(head, kind="stable")
    return head[by_pfn], np.concatenate(orders)[by_pfn]


def _runs(pfns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First pfn and length of each run of consecutive ascending pfns."""
    breaks = np.flatnonzero(np.diff(pfns) != 1) + 1
    return (pfns[np.concatenate([[0], breaks])],
            np.diff(np.concatenate([[0], breaks, [len(pfns)]])))


def _log2_floor(x: np.ndarray) -> np.ndarray:
    """floor(log2(x)) for positive integers, exactly (frexp, not a float log)."""
    return np.frexp(x.astype(np.float64))[1].astype(np.int64) - 1
