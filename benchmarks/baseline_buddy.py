"""A plain per-page Python buddy allocator: the yardstick the issue names.

Free lists are Python sets per order, one call per allocation, merging on
free, and a dict remembering each allocation's order (so it can be freed):
the straightforward way to write a buddy allocator in Python.  It
models nothing else (no zones, migratetypes or watermarks), so it is a
generous baseline for vmemlab's fill.
"""

from __future__ import annotations

MAX_ORDER = 10


class SetBuddy:
    def __init__(self, nr_pages: int) -> None:
        self.free = [set() for _ in range(MAX_ORDER + 1)]
        self.order_of: dict[int, int] = {}
        self.allocated: dict[int, int] = {}
        for pfn in range(0, nr_pages, 1 << MAX_ORDER):
            self.free[MAX_ORDER].add(pfn)
            self.order_of[pfn] = MAX_ORDER

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
