"""Reclaim, in brief: kswapd and direct reclaim drop the oldest clean page cache.

When an allocation finds a zone below its low watermark it wakes kswapd,
which reclaims until some eligible zone is above its high watermark again
(``pgdat_balanced``).  If that is not enough the allocating task reclaims
itself (direct reclaim), SWAP_CLUSTER_MAX pages at a time.

What vmemlab reclaims: clean page cache (PageKind.FILE without the DIRTY
or PINNED flag), oldest first.  Age is the order of allocation: each batch
of page cache gets a new, larger owner id, and within a batch lower pfns
count as older.  Anonymous memory and tmpfs need swap, which the simulated
guest does not have, so they are never reclaimed; ramfs pages are
unevictable.  There is no active/inactive split and no slab shrinking (a
simplification named in docs/glossary.md): enough for "the page cache
grows until reclaim pushes back".  kswapd runs synchronously, at the moment
it is woken, and reclaims in rounds of the eligible zones' high watermarks,
as kswapd_shrink_node() sets nr_to_reclaim.

Kernel: mm/vmscan.c, wakeup_kswapd(), balance_pgdat(), pgdat_balanced(),
kswapd_shrink_node(), try_to_free_pages()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .constants import PageFlag, PageKind, PageState
from .gfp import Gfp
from .trace import MmVmscanKswapdWake, MmVmscanLruShrinkInactive
from .zone import SWAP_CLUSTER_MAX, WMARK_HIGH

if TYPE_CHECKING:
    from .node import Node
    from .zone import Zone


def _eligible(node: Node, highest: int) -> list[Zone]:
    return [z for z in node.zones[: highest + 1] if z.managed()]


def pgdat_balanced(node: Node, order: int, highest: int) -> bool:
    """True if any zone the request could use is above its high watermark.

    Kernel: mm/vmscan.c, pgdat_balanced()
    """
    from .page_alloc import zone_watermark_ok

    return any(zone_watermark_ok(z, order, z.wmark_pages(WMARK_HIGH), highest, 0)
               for z in _eligible(node, highest))


def nr_reclaimable(node: Node, highest: int) -> int:
    """Page-cache pages in eligible zones (an upper bound on what reclaim finds)."""
    return int(sum(z.nr_kind[PageKind.FILE] for z in _eligible(node, highest)))


def wakeup_kswapd(node: Node, order: int, highest: int, gfp: int = 0) -> int:
    """Wake kswapd if the node is unbalanced; it reclaims until balanced.

    For a high-order request kcompactd is woken too: by kswapd when it is
    done, or instead of it when the node has enough free memory (then only
    for a caller that cannot compact itself, without __GFP_DIRECT_RECLAIM).
    Returns the number of pages reclaimed.  Kernel: mm/vmscan.c,
    wakeup_kswapd(), kswapd_try_to_sleep()
    """
    from .compaction import wakeup_kcompactd

    if pgdat_balanced(node, 0, highest):
        if order and not gfp & Gfp.DIRECT_RECLAIM:
            wakeup_kcompactd(node, order, highest)
        return 0
    if not nr_reclaimable(node, highest):
        return 0
    node.emit(MmVmscanKswapdWake(node.node_id, highest, order))
    node.count_event("pageoutrun")
    reclaimed = 0
    batch = sum(max(z.high_wmark_pages(), SWAP_CLUSTER_MAX) for z in _eligible(node, highest))
    while not pgdat_balanced(node, 0, highest):
        got = shrink_lru(node, highest, batch, "pgsteal_kswapd")
        reclaimed += got
        if not got:
            break
    if order:
        wakeup_kcompactd(node, order, highest)     # kswapd goes to sleep
    return reclaimed


def direct_reclaim(node: Node, order: int, highest: int) -> int:
    """Reclaim SWAP_CLUSTER_MAX pages for a blocked allocation; 0 means no progress.

    Kernel: mm/vmscan.c, try_to_free_pages()
    """
    if not nr_reclaimable(node, highest):
        return 0
    node.count_event("allocstall")
    return shrink_lru(node, highest, SWAP_CLUSTER_MAX, "pgsteal_direct")


def reclaim_candidates(node: Node, highest: int) -> np.ndarray:
    """Pfns of clean, unpinned page cache in eligible zones, oldest first."""
    mm = node.mm
    parts = []
    for z in _eligible(node, highest):
        if not z.nr_kind[PageKind.FILE]:
            continue
        pbo = node.geo.pageblock_order
        s = z.zone_start_pfn >> pbo << pbo
        e = -(-z.zone_end_pfn >> pbo) << pbo
        hit = ((mm.kind[s:e] == PageKind.FILE) & (mm.state[s:e] == PageState.ALLOCATED)
               & ((mm.flags[s:e] & (PageFlag.DIRTY | PageFlag.PINNED)) == 0))
        hit &= np.repeat(mm.pb_zone[s >> pbo:e >> pbo] == z.idx, 1 << pbo)
        parts.append(s + np.flatnonzero(hit))
    if not parts:
        return np.zeros(0, np.int64)
    pfns = np.concatenate(parts)
    return pfns[np.lexsort((pfns, mm.owner[pfns]))]


def shrink_lru(node: Node, highest: int, nr_to_reclaim: int, counter: str) -> int:
    """Drop up to ``nr_to_reclaim`` of the oldest clean page-cache pages.

    Kernel: mm/vmscan.c, shrink_inactive_list() / shrink_folio_list()
    """
    from .bulk import free_pages_bulk  # bulk allocates through reclaim

    victims = reclaim_candidates(node, highest)[:nr_to_reclaim]
    if len(victims):
        free_pages_bulk(node, victims)
        node.count_event(counter, len(victims))
    node.emit(MmVmscanLruShrinkInactive(node.node_id, len(victims), len(victims)))
    return len(victims)
