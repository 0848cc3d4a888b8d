"""Free-list primitives: put a free block on a list, take it off, move it.

These are the only functions that change ``zone.free_area`` one block at a
time (vmemlab.bulk and vmemlab.merge change it in batches); they also keep
the head page's buddy order and list membership in the memmap and
NR_FREE_PAGES right.
Pages on MIGRATE_ISOLATE lists are not counted as free, as in the kernel's
account_freepages(), which is why isolated memory vanishes from "pages free"
in /proc/zoneinfo while /proc/buddyinfo still shows it.

Kernel: mm/page_alloc.c, __add_to_free_list(), move_to_free_list(),
__del_page_from_free_list(), get_page_from_free_area(), account_freepages()
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .constants import MIGRATE_TYPES, MigrateType

if TYPE_CHECKING:
    from .listhead import FreeList
    from .zone import FreeArea, Zone

_ISOLATE = int(MigrateType.ISOLATE)
_HIGHATOMIC = int(MigrateType.HIGHATOMIC)
_MOVE_BATCH = 32   # blocks moved at once from which numpy pays


def account_freepages(zone: Zone, nr_pages: int, mt: int) -> None:
    """Adjust NR_FREE_PAGES (and the highatomic counter) for list ``mt``."""
    if mt == _ISOLATE:
        return
    zone.nr_free_pages += nr_pages
    if mt == _HIGHATOMIC:
        zone.nr_free_highatomic += nr_pages


def add_to_free_list(zone: Zone, pfn: int, order: int, mt: int, tail: bool = False) -> None:
    """Put the free block at ``pfn`` on ``free_list[mt]`` of its order.

    New blocks go to the head of the list, or to the tail when the caller
    expects them to merge soon (FPI_TO_TAIL, buddy_merge_likely()).
    """
    zone.free_area[order].free_list[mt].add(pfn, tail)
    mm = zone.node.mm
    mm.head_order[pfn] = order
    mm.head_owner[pfn] = mt
    if mt != _ISOLATE:
        account_freepages(zone, 1 << order, mt)


def del_page_from_free_list(zone: Zone, pfn: int, order: int, mt: int) -> None:
    """Take the free block at ``pfn`` off its list (it is being used or merged)."""
    zone.free_area[order].free_list[mt].remove(pfn)
    mm = zone.node.mm
    mm.head_order[pfn] = -1
    mm.head_owner[pfn] = -1
    if mt != _ISOLATE:
        account_freepages(zone, -(1 << order), mt)


def move_to_free_list(zone: Zone, pfn: int, order: int, old_mt: int, new_mt: int) -> None:
    """Move a free block to the tail of another migratetype's list."""
    area = zone.free_area[order]
    area.free_list[old_mt].remove(pfn)
    area.free_list[new_mt].add(pfn, tail=True)
    zone.node.mm.head_owner[pfn] = new_mt
    account_freepages(zone, -(1 << order), old_mt)
    account_freepages(zone, 1 << order, new_mt)


def move_blocks_to_free_list(zone: Zone, heads: Sequence[int], orders: Sequence[int],
                             old_mts: Sequence[int], new_mt: int) -> int:
    """move_to_free_list() for many blocks, in the given order; returns pages moved."""
    if len(heads) < _MOVE_BATCH:
        moved = 0
        for pfn, order, old_mt in zip(heads, orders, old_mts, strict=True):
            move_to_free_list(zone, int(pfn), int(order), int(old_mt), new_mt)
            moved += 1 << int(order)
        return moved
    heads = np.asarray(heads, np.int64)
    orders = np.asarray(orders, np.int64)
    old_mts = np.asarray(old_mts, np.int64)
    area = zone.free_area
    for key, sel in groups(orders * MIGRATE_TYPES + old_mts):
        area[key // MIGRATE_TYPES].free_list[key % MIGRATE_TYPES].remove_many(heads[sel])
    for order, sel in groups(orders):
        area[order].free_list[new_mt].extend(heads[sel], tail=True)
    zone.node.mm.owner[heads] = new_mt
    pages = np.bincount(old_mts, weights=np.left_shift(1, orders), minlength=MIGRATE_TYPES)
    for old_mt in np.flatnonzero(pages).tolist():
        account_freepages(zone, -int(pages[old_mt]), old_mt)
        account_freepages(zone, int(pages[old_mt]), new_mt)
    return int(pages.sum())


def groups(key: np.ndarray) -> Iterator[tuple[int, np.ndarray | slice]]:
    """Each distinct (small, non-negative) key with the indices holding it, in order."""
    if not len(key):
        return
    if key.min() == key.max():
        yield int(key[0]), slice(None)
        return
    by = np.argsort(key.astype(np.int16), kind="stable")
    for part in np.split(by, np.flatnonzero(np.diff(key[by])) + 1):
        yield int(key[part[0]]), part


def expand_to_tail(zone: Zone, pfn: int, high: int, mt: int) -> bool:
    """expand() of an order-0 page off the block at ``pfn`` as one ``Tail``, if it may.

    It may when ``mt``'s lists below ``high`` are empty, with nothing kept
    aside for them: then the pieces would be alone there.  False (nothing
    done) otherwise.
    """
    lists = [area.free_list[mt] for area in zone.free_area[:high]]
    for lst in lists:
        if not lst.idle():
            return False
    Tail(zone, mt, pfn + 1, pfn + (1 << high), lists)
    return True


class Tail:
    """The rest [start, end) of a block split for order-0 pages, kept off the lists.

    expand() puts its aligned pieces on the empty lists of the orders below
    the block's (empty: that is why the block was split), and the next
    allocation of the same type takes them back first, smallest, i.e.
    lowest, first.  Until other code looks at those lists (``FreeList.pending``),
    the pieces stay here as one range that the next order-0 allocations
    (vmemlab.bulk, rmqueue_smallest()) take from the front in O(1).
    Everything else is kept exact meanwhile: the memmap (each piece head's
    buddy order and list) and NR_FREE_PAGES.
    """

    __slots__ = ("zone", "mt", "start", "end", "lists")

    def __init__(self, zone: Zone, mt: int, start: int, end: int,
                 lists: list[FreeList]) -> None:
        """``lists``: ``mt``'s lists of the orders below the split block's, in order."""
        self.zone, self.mt, self.start, self.end = zone, mt, start, end
        self.lists = lists
        if start == end:
            return
        self._mark_heads(start, end)
        account_freepages(zone, end - start, mt)
        for lst in self.lists:
            lst.pending = self

    def take(self, n: int) -> int:
        """Take the first ``n`` pages (as the allocator would, piece by piece); their start."""
        start = self.start
        self.start += n
        account_freepages(self.zone, -n, self.mt)
        if self.start == self.end:
            self._release()
            return start
        # Pieces wholly taken are marked allocated by the caller; the piece
        # split now leaves smaller pieces behind, up to its own end.
        edge, size = start, self.end - start
        while edge < self.start:
            low = size & -size
            edge += low
            size -= low
        self._mark_heads(self.start, edge)
        return start

    def __call__(self) -> None:
        """Put the pieces on their lists (someone is about to look)."""
        self._release()
        for pfn, order in split_pieces(self.start, self.end):
            self.lists[order].add(pfn)
        self.start = self.end

    def _release(self) -> None:
        for lst in self.lists:
            lst.pending = None

    def _mark_heads(self, start: int, end: int) -> None:
        """set_buddy_order() and the list mark of the pieces of [start, end)."""
        mm, mt = self.zone.node.mm, self.mt
        order, owner = mm.head_order, mm.head_owner
        size = end - start
        while size:
            low = size & -size
            order[start] = low.bit_length() - 1
            owner[start] = mt
            start += low
            size -= low


def split_pieces(start: int, end: int) -> list[tuple[int, int]]:
    """The naturally aligned blocks [start, end) splits into, lowest first.

    ``end`` is aligned to the block the range was split from, so the
    pieces' sizes are the bits of ``end - start``, smallest first.
    """
    out = []
    size = end - start
    while size:
        low = size & -size
        out.append((start, low.bit_length() - 1))
        start += low
        size -= low
    return out


def get_page_from_free_area(area: FreeArea, mt: int) -> int | None:
    """The first block on ``free_list[mt]`` (list_first_entry_or_null)."""
    return area.free_list[mt].first()


def free_list_mt(zone: Zone, pfn: int) -> int:
    """The migratetype of the list a free block head is on."""
    return int(zone.node.mm.owner[pfn])
