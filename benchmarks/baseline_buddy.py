"""A plain per-page Python buddy allocator: the yardstick issue 16 names.

Free lists are Python sets per order, one call per allocation, merging on
free, and a dict remembering each allocation's order (so it can be freed):
the straightforward way to write a buddy allocator in Python.  It models
nothing else (no zones, migratetypes, watermarks or page states), so it is
a generous baseline.

To be compared fairly with vmemlab it boots from the same free ranges as
the guest's memblock_free_all() (largest aligned chunks, ascending) and
replays the allocations vmemlab's fill made (``replay``), one call per page.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_ORDER = 10


class SetBuddy:
    def __init__(self, free_ranges: Iterable[tuple[int, int]]) -> None:
        """Boot: every [start, end) range freed in the largest aligned chunks."""
        self.free: list[set[int]] = [set() for _ in range(MAX_ORDER + 1)]
        self.order_of: dict[int, int] = {}
        self.allocated: dict[int, int] = {}
        for start, end in free_ranges:
            while start < end:
                order = MAX_ORDER if start == 0 else min(MAX_ORDER,
                                                         (start & -start).bit_length() - 1)
                while start + (1 << order) > end:
                    order -= 1
                self.free[order].add(start)
                self.order_of[start] = order
                start += 1 << order

    def alloc(self, order: int) -> int | None:
        for o in range(order, MAX_ORDER + 1):
            if self.free[o]:
                pfn = self.free[o].pop()
                del self.order_of[pfn]
                while o > order:
                    o -= 1
                    buddy = pfn + (1 << o)
                    self.free[o].add(buddy)
                    self.order_of[buddy] = o
                self.allocated[pfn] = order
                return pfn
        return None

    def free_page(self, pfn: int) -> None:
        order = self.allocated.pop(pfn)
        while order < MAX_ORDER:
            buddy = pfn ^ (1 << order)
            if self.order_of.get(buddy) != order:
                break
            self.free[order].discard(buddy)
            del self.order_of[buddy]
            pfn &= buddy
            order += 1
        self.free[order].add(pfn)
        self.order_of[pfn] = order

    def replay(self, allocations: Iterable[tuple[int, int]]) -> int:
        """``n`` calls of alloc(order) for each (order, n); returns the pages obtained."""
        got = 0
        alloc = self.alloc
        for order, n in allocations:
            for _ in range(n):
                if alloc(order) is None:
                    return got
                got += 1 << order
        return got
