"""Exercises of notebook 02, the buddy allocator, on a 64-page teaching machine.

The machine boots with four free order-4 blocks (16 pages each, pfns 0, 16,
32, 48).  Every answer is computed by running it.
"""

from __future__ import annotations

import vmemlab as vm
from vmemlab.page_alloc import find_buddy_pfn

from . import Case, FunctionExercise, ValueExercise


def machine() -> vm.Machine:
    """The notebook's machine: 64 pages of teaching geometry, nothing allocated."""
    return vm.Machine(boot_memory=64 * 4096, geometry="teaching", seed=0)


def _order(x: object) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        raise TypeError("an order is a whole number, 0 to 4 here")
    if not 0 <= x <= 4:
        raise ValueError("orders on the teaching geometry run from 0 to 4")
    return x


def _pfn(x: object) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        raise TypeError("a pfn is a whole number")
    if not 0 <= x < 64:
        raise ValueError("this machine has pfns 0 to 63")
    return x


# -- 02.second_alloc ------------------------------------------------------
def _second_alloc() -> int:
    m = machine()
    m.alloc_pages(0, "GFP_KERNEL")
    return m.alloc_pages(1, "GFP_KERNEL")


def _explain_second_alloc(pfn: int) -> str:
    m = machine()
    m.alloc_pages(0, "GFP_KERNEL")
    free = m.proc.buddyinfo().split()[4:]
    return (f"After the order-0 allocation split the block at pfn 0, the free counts per "
            f"order were {' '.join(free)}: halves of 1, 2, 4 and 8 pages at pfns 1, 2, 4 "
            f"and 8.  An order-1 request takes the smallest free block that is big enough, "
            f"the order-1 half at pfn {pfn}, without splitting anything.")


second_alloc = ValueExercise(
    "02.second_alloc",
    "alloc_pages(0) returned pfn 0. Which pfn does the next alloc_pages(1) return?",
    _second_alloc, _explain_second_alloc, _pfn,
    hints={1: "pfn 1 is free, but only as an order-0 block; an order-1 block is 2 pages "
              "aligned to 2.",
           16: "A new order-4 block is split only when no smaller free block fits; "
               "the split of the first one left an order-1 half."})


# -- 02.merge_order -------------------------------------------------------
def _merge_steps() -> tuple[int, list[str]]:
    """Free pfn 2 (order 1), then pfn 0 (order 0); follow the second merge."""
    m = machine()
    m.alloc_pages(0, "GFP_KERNEL")
    m.alloc_pages(1, "GFP_KERNEL")
    m.free_pages(2, 1)
    steps, pfn, order = [], 0, 0
    while order < m.geometry.max_page_order:
        buddy = find_buddy_pfn(pfn, order)
        if not m.node.mm.page_is_buddy_head(buddy, order):
            break
        steps.append(f"order {order}: buddy pfn {buddy} is free, merge into "
                     f"{min(pfn, buddy)}-{min(pfn, buddy) + (2 << order) - 1}")
        pfn, order = min(pfn, buddy), order + 1
    m.free_pages(0, 0)
    assert m.node.mm.order[pfn] == order, "the model merged differently"
    return order, steps


def _explain_merge(order: int) -> str:
    _, steps = _merge_steps()
    return ("Freeing pfn 0 merges for as long as the buddy of the merged block is free:\n  "
            + "\n  ".join(steps) + f"\nThe block that goes on the list has order {order}.")


merge_order = ValueExercise(
    "02.merge_order",
    "Free pfn 2 (order 1), then pfn 0 (order 0). What order is the block the second "
    "free puts on the free list?",
    lambda: _merge_steps()[0], _explain_merge, _order,
    hints={1: "Merging does not stop at the first buddy: the merged block has a buddy too.",
           0: "Page 1, the buddy of page 0, is free, so at least one merge happens."})


# -- 02.find_buddy --------------------------------------------------------
def _buddy_cases() -> list[Case]:
    return [Case((pfn, order), find_buddy_pfn(pfn, order))
            for order in range(4) for pfn in range(0, 64, 1 << order)]


find_buddy = FunctionExercise(
    "02.find_buddy",
    "Write find_buddy(pfn, order): the pfn of the buddy of the order-`order` block at pfn.",
    "find_buddy", _buddy_cases,
    lambda case: (f"An order-{case.args[1]} block and its buddy differ only in bit "
                  f"{case.args[1]} of the pfn (mm/internal.h, __find_buddy_pfn())."),
    "return pfn ^ (1 << order)")
