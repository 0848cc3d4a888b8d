"""Exercises of notebook 02, the buddy allocator, on a 64-page teaching machine.

The machine boots with four free order-4 blocks (16 pages each, pfns 0, 16,
32, 48), all in Movable pageblocks.  Allocations ask for movable memory
(GFP_HIGHUSER_MOVABLE, user pages), so every block comes straight from the
free lists without borrowing from another migratetype (that is notebook
03).  Every answer is computed by running the model.
"""

from __future__ import annotations

import re
from functools import cache

import vmemlab as vm
from vmemlab import workload
from vmemlab.constants import GiB
from vmemlab.page_alloc import find_buddy_pfn
from vmemlab.zone import Zone

from . import Case, FunctionExercise, LazyHints, ValueExercise
from .answers import whole_number

PAGES = 64
USER = "GFP_HIGHUSER_MOVABLE"


def machine(trace: bool = False) -> vm.Machine:
    """The notebook's machine: 64 pages of teaching geometry, nothing allocated."""
    return vm.Machine(boot_memory=PAGES * 4096, geometry="teaching", seed=0, trace=trace)


def fresh_machine() -> vm.Machine:
    """A new traced copy of the notebook's 64-page machine, for your own experiments."""
    return machine(trace=True)


def free_blocks(m: vm.Machine, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """(pfn, order) of every free block with its head in [start, end), by pfn."""
    end = m.node.mm.nr_pfns if end is None else end
    out = []
    for zone in m.node.zones:
        for order, area in enumerate(zone.free_area):
            for lst in area.free_list:
                out += [(pfn, order) for pfn in lst if start <= pfn < end]
    return sorted(out)


_order = whole_number("an order", 0, 4, "orders on the teaching geometry run from 0 to 4")


_pfn = whole_number("a pfn", 0, PAGES - 1, f"this machine has pfns 0 to {PAGES - 1}")


def _pfns(x: object) -> tuple[int, ...]:
    if isinstance(x, (str, bytes)) or not hasattr(x, "__iter__"):
        raise TypeError("list the pfns, e.g. [3, 5]")
    pfns = tuple(sorted(_pfn(v) for v in x))
    if len(set(pfns)) != len(pfns):
        raise ValueError("a pfn is listed twice")
    return pfns


# -- 02.split_leftovers -------------------------------------------------------
def _split_leftovers() -> tuple[int, ...]:
    m = machine()
    pfn = m.alloc_pages(0, USER)
    block = 1 << m.geometry.max_page_order
    return tuple(p for p, _ in free_blocks(m, pfn, pfn + block))


def _explain_split(pfns: tuple[int, ...]) -> str:
    m = machine()
    m.alloc_pages(0, USER)
    top = m.geometry.max_page_order
    halves = ", ".join(f"pfn {p} (order {o}, {1 << o} page{'s' if o else ''})"
                       for p, o in reversed(free_blocks(m, 0, 1 << top)))
    return (f"No block of order 0 was free, so the allocator took the order-{top} block at "
            f"pfn 0 and halved it {top} times (mm/page_alloc.c, expand()): each time the "
            f"upper half goes on the free list one order lower and the lower half is split "
            f"again. The halves left behind: {halves}. Pages are never listed one by one: "
            f"each free block is one list entry, its first page.")


split_leftovers = ValueExercise(
    "02.split_leftovers",
    "On the fresh machine, alloc_pages(0) returns pfn 0. Which free blocks does the split "
    "leave inside the first 16 pages? List their first pfns.",
    _split_leftovers, _explain_split, _pfns,
    hints={tuple(range(1, 16)): "Free pages are kept as blocks, not one by one: 15 free "
                                "pages here make only a few list entries.",
           (8,): "The split goes all the way down to order 0; each halving leaves a block.",
           (1,): "Only one block? Halving 16 pages down to 1 takes four halvings."})


# -- 02.second_alloc ------------------------------------------------------
def _second_alloc() -> int:
    m = machine()
    m.alloc_pages(0, USER)
    return m.alloc_pages(1, USER)


def _explain_second_alloc(pfn: int) -> str:
    m = machine()
    m.alloc_pages(0, USER)
    free = m.proc.buddyinfo().split()[4:]
    return (f"After the first split the free counts per order were {' '.join(free)} "
            f"(/proc/buddyinfo). An order-1 request takes the first block on the order-1 "
            f"list if there is one (mm/page_alloc.c, __rmqueue_smallest()): the half at "
            f"pfn {pfn}. Nothing is split this time.")


second_alloc = ValueExercise(
    "02.second_alloc",
    "alloc_pages(0) returned pfn 0. Which pfn does the next alloc_pages(1) return?",
    _second_alloc, _explain_second_alloc, _pfn,
    hints={1: "pfn 1 is free, but only as an order-0 block; an order-1 block is 2 pages "
              "aligned to 2.",
           16: "A new order-4 block is split only when no smaller free block fits; "
               "the split of the first one left an order-1 half."})


# -- 02.find_buddy --------------------------------------------------------
def _buddy_cases() -> list[Case]:
    return [Case((pfn, order), find_buddy_pfn(pfn, order))
            for order in range(4) for pfn in range(0, PAGES, 1 << order)]


find_buddy = FunctionExercise(
    "02.find_buddy",
    "Write find_buddy(pfn, order): the pfn of the buddy of the order-`order` block at pfn.",
    "find_buddy", _buddy_cases,
    lambda case: (f"An order-{case.args[1]} block and its buddy differ only in bit "
                  f"{case.args[1]} of the pfn (mm/internal.h, __find_buddy_pfn())."),
    "return pfn ^ (1 << order)")


# -- 02.merge_order -------------------------------------------------------
@cache
def _merge_steps() -> tuple[int, tuple[str, ...]]:
    """Allocate pfn 0 (order 0) and pfn 2 (order 1); free pfn 2, then pfn 0."""
    m = machine()
    m.alloc_pages(0, USER)
    m.alloc_pages(1, USER)
    m.free_pages(2, 1)
    steps, pfn, order = [], 0, 0
    while order < m.geometry.max_page_order:
        buddy = find_buddy_pfn(pfn, order)
        if (buddy, order) not in free_blocks(m):
            break
        steps.append(f"order {order}: buddy pfn {buddy} is free, merge into pfns "
                     f"{min(pfn, buddy)}-{min(pfn, buddy) + (2 << order) - 1}")
        pfn, order = min(pfn, buddy), order + 1
    m.free_pages(0, 0)
    if (pfn, order) not in free_blocks(m):
        raise AssertionError("the model merged differently from the buddy rule")
    return order, tuple(steps)


def _explain_merge(order: int) -> str:
    _, steps = _merge_steps()
    return ("Freeing pfn 0 merges for as long as the buddy of the merged block is free "
            "(mm/page_alloc.c, __free_one_page()):\n  " + "\n  ".join(steps)
            + f"\nThe block that goes on the list has order {order}.")


merge_order = ValueExercise(
    "02.merge_order",
    "Free pfn 2 (order 1), then pfn 0 (order 0). What order is the block the second "
    "free puts on the free list?",
    lambda: _merge_steps()[0], _explain_merge, _order,
    hints={1: "Merging does not stop at the first buddy: the merged block has a buddy too.",
           0: "Page 1, the buddy of page 0, is free, so at least one merge happens."})


# -- 02.buddyinfo_after ---------------------------------------------------
OPS = "+1:M,+0:M,+2:M,-0,+0:M,-1"


def ops_listing(compute: bool = False) -> str:
    """The OSTEP-style listing of OPS on a fresh machine (``?`` unless ``compute``)."""
    return workload.format_ops(workload.run_ops(machine(), OPS), compute=compute)


def _buddyinfo_after() -> tuple[int, ...]:
    m = machine()
    workload.run_ops(m, OPS)
    return tuple(m.node.zone(vm.ZoneType.NORMAL).free_area[o].nr_free
                 for o in range(m.geometry.nr_page_orders))


def _counts(x: object) -> tuple[int, ...]:
    if isinstance(x, str):
        nums = [int(v) for v in re.findall(r"\d+", x)]
    elif hasattr(x, "__iter__") and not isinstance(x, bytes):
        nums = list(x)
    else:
        raise TypeError("give the five counts, e.g. [1, 0, 0, 1, 3], or the buddyinfo line")
    if len(nums) < 5:
        raise ValueError("buddyinfo has five columns here, one per order 0..4")
    counts = tuple(nums[-5:])
    if any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in counts):
        raise ValueError("each column is a count of free blocks, 0 or more")
    return counts


def _explain_buddyinfo(counts: tuple[int, ...]) -> str:
    m = machine()
    workload.run_ops(m, OPS)
    blocks = ", ".join(f"pfn {p} (order {o})" for p, o in free_blocks(m, 0, 16))
    return (ops_listing(compute=True)
            + f"Free blocks left in pfns 0-15: {blocks}; the other three order-4 blocks "
              f"were never touched. /proc/buddyinfo counts free blocks per order "
              f"(mm/vmstat.c, frag_show_print()):\n" + m.proc.buddyinfo().rstrip())


buddyinfo_after = ValueExercise(
    "02.buddyinfo_after",
    f"Run {OPS} on the fresh machine. What does /proc/buddyinfo print for orders 0..4?",
    _buddyinfo_after, _explain_buddyinfo, _counts)


# -- 02.low_watermark -----------------------------------------------------
_int_pages = whole_number("a watermark", out_of_range="a watermark is never negative")

@cache
def _guest() -> vm.Machine:
    """A 4 GiB x86-64 guest, just booted (the watermark question)."""
    return vm.Machine(boot_memory=4 * GiB, seed=0)


def _low_watermark() -> int:
    return _guest().zones["Normal"].low


def _explain_low(low: int) -> str:
    z = _guest().zones["Normal"]
    quarter, scaled = z.min // 4, z.managed * 10 // 10000
    return (f"low = min + max(min / 4, managed x watermark_scale_factor / 10000) = "
            f"{z.min} + max({quarter}, {scaled}) = {low} (mm/page_alloc.c, "
            f"__setup_per_zone_wmarks(); vm.watermark_scale_factor defaults to 10). "
            f"high adds the same distance again: {z.high}.")


low_watermark = ValueExercise(
    "02.low_watermark",
    "Given the min watermark and managed pages of the 4 GiB guest's ZONE_NORMAL, what is "
    "its low watermark, in pages?",
    _low_watermark, _explain_low,
    _int_pages,
    hints=LazyHints(lambda: _low_hints(_guest().zones["Normal"])))


def _low_hints(z: Zone) -> dict[int, str]:
    """Hints for the sums a student may make of min, min/4 and managed/1000."""
    scaled = z.managed * 10 // 10000
    return {z.min + scaled: "managed / 1000 is the scaled distance, but the larger of it and "
                            "min/4 wins.",
            z.high: "That is the high watermark: it adds the distance to min twice."}

