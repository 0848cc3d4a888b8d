"""free_one_page() for a whole batch of pages, buddies merged level by level with numpy.

Freeing a million scattered pages one ``free_one_page()`` call at a time
takes seconds of Python.  ``free_pages_batch`` gives the *same* result
(the same free lists in the same order, the same buddy heads, pageblock
types and NR_FREE_PAGES) with a few numpy operations per order.

Why that is possible: the pages are freed in ascending pfn order.  When a
block of order *k* looks at its buddy, a buddy *below* it has already seen
every free of the batch inside it, and a buddy *above* it none.  So for
each aligned pair of order-*k* halves everything follows from the halves
alone:

* the pair merges when its upper half becomes a whole free block, if the
  lower half is then a whole free block (freed earlier in the batch, or
  free before it) and the profile lets their types merge
  (``_merge_blocked``; since 6.10 the buddy's pageblocks take the freed
  page's type); or when its lower half becomes whole while the upper half
  was a free block before the batch;
* the merged block carries on upwards with the migratetype of the page
  whose free completed it; a block that does not merge stops at its order
  and goes on its list at that moment: at the head, or at the tail when its
  order+1 buddy is free (buddy_merge_likely());
* it leaves the list again only if its upper buddy completes later in the
  batch and merges with it.

Blocks that stop at one order do so in pfn order, which is their time
order, so each list ends up as the kernel's list_add()/list_add_tail()/
list_del() sequence leaves it: ``FreeList.extend`` adds them in one go.

Kernel: mm/page_alloc.c, __free_one_page(), buddy_merge_likely().  The
kernel frees a batch (free_pcppages_bulk()) one page at a time; only the
simulator's cost differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .constants import MIGRATE_PCPTYPES, MIGRATE_TYPES, MigrateType, PageState
from .freelist import account_freepages, groups
from .page_alloc import _merge_blocked

if TYPE_CHECKING:
    from .zone import Zone

_FREE = int(PageState.FREE)
_UNMOVABLE = int(MigrateType.UNMOVABLE)


@dataclass
class _Blocks:
    """Blocks of one order that become whole and free in the batch, by pfn."""

    head: np.ndarray
    mt: np.ndarray      # the migratetype they are freed with (the list they go on)

    def select(self, keep: np.ndarray) -> _Blocks:
        return _Blocks(self.head[keep], self.mt[keep])


@dataclass
class _Stopped:
    """Blocks that stopped merging at one order: where their list wants them."""

    head: np.ndarray
    order: int
    mt: np.ndarray
    tail: np.ndarray    # put at the list's tail (buddy_merge_likely())


def free_pages_batch(zone: Zone, pfns: np.ndarray, mts: np.ndarray) -> None:
    """``free_one_page(zone, pfn, 0, mt)`` for each page, in ascending pfn order, at once.

    The pages must be sorted, already marked free in the memmap and carry
    no buddy order (``free_pages_bulk`` prepares them).
    """
    free_blocks_batch(zone, pfns, 0, mts)


def free_blocks_batch(zone: Zone, heads: np.ndarray, orders: np.ndarray | int,
                      mts: np.ndarray, to_tail: bool = False) -> None:
    """``free_one_page(zone, head, order, mt, to_tail)`` for each block, in pfn order, at once.

    The blocks must be sorted, disjoint, at most a pageblock each when the
    profile frees pageblock by pageblock, and their pages already marked
    free with no buddy order.  A block enters the merge at its own order
    (``orders`` may be one order for all).
    """
    node = zone.node
    max_order, pbo = node.geo.max_page_order, node.geo.pageblock_order
    hygiene = node.profile.freelist_hygiene
    blocked = _blocked_table(zone) if max_order > pbo else None
    if isinstance(orders, int):
        low = high = orders
    else:
        low, high = int(orders.min()), int(orders.max())
    cur = _Blocks(np.zeros(0, np.int64), np.zeros(0, np.uint8))
    stopped: list[_Stopped] = []
    gone: list[tuple[np.ndarray, int]] = []             # old free blocks merged away
    retype: list[tuple[np.ndarray, int, np.ndarray]] = []
    pending: tuple[_Blocks, int] | None = None   # stopped, awaiting their list end
    for k in range(low, max_order + 1):
        if low == high == k:
            cur = _Blocks(heads, mts)
        elif k <= high:
            new = orders == k
            cur = _merge_sorted(cur, _Blocks(heads[new], mts[new]))
        if pending is not None:
            stopped.append(_stop(zone, *pending, cur.head, to_tail))
            pending = None
        if not len(cur.head):
            if k >= high:
                break
            continue
        if k == max_order:
            n = len(cur.head)
            stopped.append(_Stopped(cur.head, k, cur.mt, np.full(n, to_tail)))
            break
        cur, ended, old, moves = _level(zone, cur, k, blocked, hygiene)
        pending = (ended, k)
        gone.append((old, k))
        if moves is not None:
            retype.append(moves)
    if pending is not None:
        stopped.append(_stop(zone, *pending, cur.head, to_tail))
    _apply(zone, stopped, gone, retype)


def _stop(zone: Zone, ended: _Blocks, k: int, next_heads: np.ndarray,
          to_tail: bool) -> _Stopped:
    """The blocks that stopped at order ``k``, with the end of the list each goes to."""
    tail = (np.ones(len(ended.head), bool) if to_tail
            else _merge_likely(zone, ended.head, k, next_heads))
    return _Stopped(ended.head, k, ended.mt, tail)


def _merge_sorted(a: _Blocks, b: _Blocks) -> _Blocks:
    """Two sets of blocks as one, sorted by head."""
    if not len(a.head):
        return b
    if not len(b.head):
        return a
    head = np.concatenate([a.head, b.head])
    by = np.argsort(head, kind="stable")
    return _Blocks(head[by], np.concatenate([a.mt, b.mt])[by])


def _level(zone: Zone, cur: _Blocks, k: int, blocked: np.ndarray | None,
           hygiene: bool) -> tuple[_Blocks, _Blocks, np.ndarray, tuple | None]:
    """One order: the blocks that merge upwards, those that stop, old blocks merged away."""
    mm, pbo = zone.node.mm, zone.node.geo.pageblock_order
    size = 1 << k
    head = cur.head
    pair = head >> (k + 1)
    lo = np.flatnonzero(pair[1:] == pair[:-1])      # both halves become whole in the batch
    hi = lo + 1
    buddy = head ^ size
    # A free block already (never true for a buddy that is freed in the batch:
    # its head carries no buddy order until the end).
    old = is_free_head(zone, buddy, k)
    merge = old.copy()
    merge[hi] = True
    moves = None
    if k >= pbo:
        # The buddy's type as free_one_page() reads it: its first pageblock's.
        # Since 6.10 a block that became whole in the batch has its own type
        # everywhere (merging retyped its buddies); before, nothing is retyped.
        other = np.zeros(len(head), np.uint8)
        other[old] = mm.pb_mt[buddy[old] >> pbo]
        other[hi] = cur.mt[lo] if hygiene else mm.pb_mt[head[lo] >> pbo]
        merge &= ~blocked[cur.mt, other]
        if hygiene:
            re = merge & (other != cur.mt)
            if re.any():
                moves = (buddy[re], k, cur.mt[re])
    keep = ~merge
    keep[lo[merge[hi]]] = False    # stopped here, but merged away later in the batch
    up = cur.select(merge)
    up.head &= ~size
    return up, cur.select(keep), buddy[merge & old], moves


def _merge_likely(zone: Zone, heads: np.ndarray, k: int, next_heads: np.ndarray) -> np.ndarray:
    """buddy_merge_likely() for blocks that stopped at order ``k``: go to the tail?

    Yes if the buddy of the order-(k+1) block around one is then a free
    block of order k+1.  A buddy above has not changed yet (an old free
    block or nothing); a buddy below is final: an old free block, or one
    that became whole at order k+1 in the batch (``next_heads``).
    """
    if k >= zone.node.geo.max_page_order - 1 or not len(heads):
        return np.zeros(len(heads), bool)
    big = 1 << (k + 1)
    q = (heads & ~(big - 1)) ^ big
    tail = is_free_head(zone, q, k + 1)
    below = q < heads
    span = (zone.node.mm.nr_pfns >> (k + 1)) + 1
    if len(next_heads) * 64 >= span:   # a bitmap of whole blocks is cheaper than searching
        whole = np.zeros(span, bool)
        whole[next_heads >> (k + 1)] = True
        tail |= below & whole[np.minimum(q >> (k + 1), span - 1)]
    elif len(next_heads):
        at = np.minimum(np.searchsorted(next_heads, q), len(next_heads) - 1)
        tail |= below & (next_heads[at] == q)
    return tail


def is_free_head(zone: Zone, pfns: np.ndarray, order: int) -> np.ndarray:
    """page_is_buddy() for many pfns: a free block head of ``order`` in ``zone``."""
    mm, pbo = zone.node.mm, zone.node.geo.pageblock_order
    inside = pfns if pfns.max(initial=0) < mm.nr_pfns else np.minimum(pfns, mm.nr_pfns - 1)
    out = (mm.order[inside] == order) & (mm.state[inside] == _FREE)
    maybe = np.flatnonzero(out)                    # few: check the rest only there
    if not len(maybe):
        return out
    p = pfns[maybe]
    out[maybe] = (p < mm.nr_pfns) & (mm.pb_zone[np.minimum(p, mm.nr_pfns - 1) >> pbo]
                                     == zone.zid)
    return out


def _blocked_table(zone: Zone) -> np.ndarray:
    """_merge_blocked() for every pair of types, as a lookup table."""
    return np.array([[_merge_blocked(zone, a, b) for b in range(MIGRATE_TYPES)]
                     for a in range(MIGRATE_TYPES)], bool)


def _apply(zone: Zone, stopped: list[_Stopped], gone: list[tuple[np.ndarray, int]],
           retype: list[tuple[np.ndarray, int, np.ndarray]]) -> None:
    """Write the outcome: memmap heads, free lists, NR_FREE_PAGES, pageblock types."""
    mm = zone.node.mm
    area = zone.free_area
    old = np.concatenate([np.zeros(0, np.int64)] + [h for h, _ in gone]).astype(np.int64)
    old_order = np.concatenate([np.zeros(0, np.int64)]
                               + [np.full(len(h), k, np.int64) for h, k in gone])
    old_mt = mm.owner[old].astype(np.int64)
    mm.order[old] = -1
    mm.owner[old] = -1
    for key, sel in groups(old_order * MIGRATE_TYPES + old_mt):
        area[key // MIGRATE_TYPES].free_list[key % MIGRATE_TYPES].remove_many(old[sel])
    pages = np.bincount(old_mt, weights=np.left_shift(1, old_order), minlength=MIGRATE_TYPES)
    pages = -pages.astype(np.int64)
    for s in stopped:
        head, mt, tail = s.head, s.mt, s.tail
        mm.order[head] = s.order
        mm.owner[head] = mt
        pages += np.bincount(mt, minlength=MIGRATE_TYPES) << s.order
        for key, sel in groups(mt * 2 + tail):
            area[s.order].free_list[key >> 1].extend(head[sel], tail=bool(key & 1))
    for mt in np.flatnonzero(pages).tolist():
        account_freepages(zone, int(pages[mt]), mt)
    for heads, k, mts in retype:
        _retype(zone, heads, k, mts)


def _retype(zone: Zone, heads: np.ndarray, order: int, mts: np.ndarray) -> None:
    """change_pageblock_range() of merged buddies, vectorized."""
    mm, pbo = zone.node.mm, zone.node.geo.pageblock_order
    per = 1 << (order - pbo)
    blocks = ((heads >> pbo)[:, None] + np.arange(per)).ravel()
    types = np.repeat(mts, per)
    if mm.mobility_disabled:
        types = np.where(types < MIGRATE_PCPTYPES, _UNMOVABLE, types)
    mm.pb_mt[blocks] = types
