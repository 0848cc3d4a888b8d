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
  result as page-by-page frees.

The kernel's counterpart, alloc_pages_bulk(), exists for the same reason
(fewer trips through the allocator).  Kernel: mm/page_alloc.c,
alloc_pages_bulk_noprof(), free_pages_bulk(); tests/test_bulk.py checks the
equivalence on random machines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .constants import PageKind, PageState
from .freelist import add_to_free_list, del_page_from_free_list
from .gfp import Gfp
from .page_alloc import (
    AllocFlags,
    AllocRequest,
    alloc_block,
    alloc_flags_nofragment,
    free_pages_ok,
    prep_new_page,
    rmqueue,
    watermark_headroom,
    zone_uncharge,
)
from .trace import MmPageAlloc, MmPageFree

if TYPE_CHECKING:
    from .node import Node
    from .zone import Zone

_GFP_KSWAPD = int(Gfp.KSWAPD_RECLAIM)


Run = tuple[int, int]  # (first pfn, number of pages)


def alloc_pages_bulk(node: Node, gfp: str | int, nr_pages: int,
                     kind: PageKind | None = None, owner: int = -1) -> np.ndarray:
    """Allocate up to ``nr_pages`` order-0 pages; return their pfns in allocation order.

    Stops early, like the loop it replaces, at the first page the allocator
    cannot provide even after reclaim.
    """
    runs = alloc_bulk_runs(node, gfp, nr_pages, kind, owner)
    if not runs:
        return np.zeros(0, np.int64)
    return np.concatenate([np.arange(s, s + n, dtype=np.int64) for s, n in runs])


def alloc_bulk_runs(node: Node, gfp: str | int, nr_pages: int,
                    kind: PageKind | None = None, owner: int = -1,
                    fast_only: bool = False) -> list[Run]:
    """``alloc_pages_bulk`` returning runs of consecutive pfns instead of pfns.

    With ``fast_only`` it stops where the next page would need the slow
    path (kswapd, the min watermark, direct reclaim).
    """
    req = AllocRequest(node, 0, gfp, kind)
    if nr_pages < 0:
        raise ValueError(f"nr_pages={nr_pages} must not be negative")
    zonelist = node.zonelist(req.highest)
    out: list[Run] = []
    remaining = nr_pages
    if not zonelist:
        return out
    fast = AllocFlags.WMARK_LOW | alloc_flags_nofragment(node, zonelist[0])
    if req.gfp & _GFP_KSWAPD:
        fast |= AllocFlags.KSWAPD
    while remaining:
        remaining -= _bulk_from_freelist(node, zonelist, req, remaining, fast, owner, out)
        if not remaining or fast_only:
            break
        got = alloc_block(node, req)  # the slow path, for one page
        if got is None:
            break
        zone, pfn = got
        prep_new_page(zone, pfn, req, owner)
        out.append((pfn, 1))
        remaining -= 1
    return out


def _bulk_from_freelist(node: Node, zonelist: list[Zone], req: AllocRequest, limit: int,
                        alloc_flags: int, owner: int, out: list[Run]) -> int:
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
                  out: list[Run]) -> int:
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
        out.append((pfn, 1))
        got += 1
    return got


def _take_smallest_bulk(zone: Zone, want: int, req: AllocRequest, owner: int,
                        out: list[Run]) -> int:
    """Repeated __rmqueue_smallest(order 0) on the requester's own lists."""
    taken = 0
    mt = req.mt
    runs: list[list[int]] = []
    for order, area in enumerate(zone.free_area):
        lst = area.free_list[mt]
        while lst and taken < want:
            pfn = next(iter(lst))
            size = 1 << order
            use = min(size, want - taken)
            del_page_from_free_list(zone, pfn, order, mt)
            _free_tail(zone, pfn + use, pfn + size, mt)
            if runs and runs[-1][0] + runs[-1][1] == pfn:
                runs[-1][1] += use
            else:
                runs.append([pfn, use])
            taken += use
        if taken == want:
            break
    for pfn, n in runs:
        _hand_out(zone, pfn, n, req, owner)
        out.append((pfn, n))
    return taken


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


def _hand_out(zone: Zone, pfn: int, n: int, req: AllocRequest, owner: int) -> None:
    node = zone.node
    node.mm.mark_allocated(pfn, pfn + n, req.kind, owner, 0)
    zone.nr_kind[req.kind] += n
    node.count_event(zone.pgalloc_event, n)
    if node.trace.enabled:
        for p in range(pfn, pfn + n):
            node.emit(MmPageAlloc(p, 0, req.mt, req.gfp))


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
    mm, geo = node.mm, node.geo
    zones = mm.pb_zone[pfns >> geo.pageblock_order]
    for zidx in np.flatnonzero(np.bincount(zones)).tolist():
        zone_pfns = pfns[zones == zidx]
        zone = node.zones[zidx]
        zone_uncharge(zone, mm.kind[zone_pfns])
        mm.state[zone_pfns] = PageState.FREE
        mm.kind[zone_pfns] = PageKind.NONE
        mm.flags[zone_pfns] = 0
        mm.owner[zone_pfns] = -1
        mm.order[zone_pfns] = -1
    node.count_event("pgfree", len(pfns))
    if node.trace.enabled:
        for p in pfns.tolist():
            node.emit(MmPageFree(p, 0))
    for start, n in _runs(pfns):
        _free_run(node, start, n)


def _runs(pfns: np.ndarray) -> list[tuple[int, int]]:
    """Split sorted pfns into (start, length) runs of consecutive pages."""
    breaks = np.flatnonzero(np.diff(pfns) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(pfns)]])
    return list(zip(pfns[starts].tolist(), (ends - starts).tolist(), strict=True))


def _free_run(node: Node, start: int, n: int) -> None:
    """Free a run as aligned blocks of at most a pageblock (split_large_buddy())."""
    pbo = node.geo.pageblock_order
    end = start + n
    while start < end:
        order = min(_largest_aligned_order(start, end - start), pbo)
        free_pages_ok(node.page_zone(start), start, order)
        start += 1 << order
