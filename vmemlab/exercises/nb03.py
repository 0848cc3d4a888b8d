"""Exercises of notebook 03: migratetypes, fallback, and fragmentation.

Hand-sized questions run on the teaching geometry (8-page pageblocks,
order-4 = 16-page largest blocks); the fragmentation questions run on a
1 GiB x86-64 guest.  The machines are built here so the notebook and its
checkers see the same thing; every answer comes from running them.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import vmemlab as vm
from vmemlab import workload
from vmemlab.constants import GiB, MigrateType
from vmemlab.metrics import fragmentation_index, unusable_index
from vmemlab.profiles import PROFILES

from . import Case, FunctionExercise, LazyHints, ValueExercise
from .answers import whole_number

TEACH_PAGES = 64
KERNEL_GFP = "GFP_KERNEL"
# The first profile whose fallback claims a pageblock, then steals the smallest block
# (Linux 6.15, c2f6ea38fc1b); 5.8 takes the largest block first.
CLAIM_STEAL = next(name for name, p in PROFILES.items() if p.fallback == "claim_steal")


# -- the notebook's machines ---------------------------------------------------
def teaching(kernel: str = CLAIM_STEAL, trace: bool = False, **kw: Any) -> vm.Machine:
    """A fresh 64-page teaching machine: four order-4 blocks, 8 Movable pageblocks."""
    return vm.Machine(boot_memory=TEACH_PAGES * 4096, geometry="teaching", kernel=kernel,
                      seed=0, trace=trace, **kw)


FALLBACK_OPS = ",".join(["+0:M"] * TEACH_PAGES + ["-6", "-7", "-15"])


def fallback_machine(kernel: str = CLAIM_STEAL, trace: bool = False) -> vm.Machine:
    """Every page taken by user memory, then pfns 6, 7 and 15 freed again.

    Pageblock 0 (pfns 0-7) keeps a free order-1 block at pfn 6; pageblock 1
    (pfns 8-15) a free page at pfn 15; both pageblocks are Movable and full
    of movable pages otherwise.
    """
    m = teaching(kernel, trace)
    workload.run_ops(m, FALLBACK_OPS)
    return m


def fresh_machine() -> vm.Machine:
    """A new traced 64-page teaching machine, for your own experiments."""
    return teaching(trace=True)


def sparse_machine() -> vm.Machine:
    """The teaching machine filled with slab pages, then a random 40% of them freed."""
    m = teaching()
    slab = m.activity("slab", size=TEACH_PAGES * 4096)
    slab.release(fraction=0.4)
    return m


def slab_guest() -> vm.Machine:
    """A 1 GiB x86-64 guest: kmalloc fills what it can, then a random 40% is freed."""
    m = vm.Machine(boot_memory=1 * GiB, seed=0)
    slab = m.activity("slab", size="1G")   # stops at the watermarks, as the kernel does
    slab.release(fraction=0.4)
    return m


def movable_guest() -> vm.Machine:
    """A 1 GiB x86-64 guest: a program maps all the memory it can without waking
    reclaim (free pages above the zones' high watermarks), then frees a random 60%."""
    m = vm.Machine(boot_memory=1 * GiB, seed=0)
    spare = sum(max(0, z.free - z.high) for z in m.zones.values())
    m.activity("anon", size=spare * m.geometry.page_size).release(fraction=0.6)
    return m


def grouping_guest(grouping: bool = True) -> vm.Machine:
    """A 1 GiB guest filled to 90% (70% user, 20% kernel, 10% reclaimable slab, in
    chunks of 64 KiB on average), after every user process has exited.

    ``grouping=False`` boots it with page_group_by_mobility_disabled set.
    """
    m = vm.Machine(boot_memory=1 * GiB, seed=1, mobility_grouping=grouping)
    acts = workload.fill(m, fraction=0.9, chunk="64k")
    acts["movable"].release()
    return m


def count_allocations(m: vm.Machine, order: int, gfp: str = KERNEL_GFP) -> int:
    """Call alloc_pages(order, gfp) until it fails; return how many succeeded."""
    n = 0
    while m.alloc_pages(order, gfp) is not None:
        n += 1
    return n


def free_percent(m: vm.Machine) -> float:
    """MemFree as a share of MemTotal, in percent (/proc/meminfo)."""
    rows = dict(m.proc.meminfo_rows())
    return 100.0 * rows["MemFree"] / rows["MemTotal"]


def pageblock_counts(m: vm.Machine) -> dict[str, int]:
    """Pageblocks per migratetype over all zones (pagetypeinfo's last table)."""
    total = [0] * len(MigrateType)
    for z in m.node.zones:
        if z.populated():
            total = [a + b for a, b in zip(total, m.proc.pageblock_counts(z), strict=True)]
    return {str(MigrateType(t)): n for t, n in enumerate(total)}


# -- answer forms --------------------------------------------------------------
class Milli(int):
    """An index scaled by 1000 that prints as debugfs does: 798 -> "0.798"."""

    def __repr__(self) -> str:
        q = int(self / 1000)
        return f"{q}.{abs(self - q * 1000):03d}"

    __str__ = __repr__


def _milli(x: object) -> Milli:
    if isinstance(x, bool):
        raise TypeError('an index is a number such as 0.798 (or the text "0.798")')
    if isinstance(x, str):
        try:
            x = float(x)
        except ValueError:
            raise ValueError('write the index as debugfs prints it, e.g. "0.798"') from None
    if isinstance(x, int) and abs(x) > 1:
        value = x                          # already scaled by 1000, as the kernel keeps it
    elif isinstance(x, (int, float)):
        value = round(x * 1000)
    else:
        raise TypeError("an index is a number such as 0.798")
    if not -1000 <= value <= 1000:
        raise ValueError("the index runs from -1.000 to 1.000")
    return Milli(value)


_count = whole_number("a count")


_pfn = whole_number("a pfn", 0, TEACH_PAGES - 1,
                    f"this machine has pfns 0 to {TEACH_PAGES - 1}")

_COMPARE = {"fewer": "fewer", "less": "fewer", "<": "fewer", "same": "same",
            "about the same": "same", "=": "same", "more": "more", ">": "more"}


def _comparison(x: object) -> str:
    if not isinstance(x, str) or x.strip().lower() not in _COMPARE:
        raise ValueError('answer "fewer", "same" or "more"')
    return _COMPARE[x.strip().lower()]


# -- 03.first_claim -----------------------------------------------------------
def _first_claim() -> int:
    m = teaching()
    m.alloc_pages(0, KERNEL_GFP)
    return pageblock_counts(m)["Unmovable"]


def _explain_first_claim(n: int) -> str:
    m = teaching()
    pfn = m.alloc_pages(0, KERNEL_GFP)
    geo = m.geometry
    return (f"At boot every pageblock is Movable (mm/mm_init.c, memmap_init_range()), so "
            f"the Unmovable lists are empty and GFP_KERNEL falls back. __rmqueue_claim() "
            f"looks for the largest free block on a fallback list: an order-"
            f"{geo.max_page_order} block of {geo.max_order_nr_pages} pages. A block of at "
            f"least pageblock_order changes owner whole (try_to_claim_block(): "
            f"change_pageblock_range()), so its {n} pageblocks become Unmovable, and then "
            f"expand() splits it for the order-0 page at pfn {pfn}. Pageblock map after:\n"
            + m.pageblock_map().rstrip())


first_claim = ValueExercise(
    "03.first_claim",
    "On a fresh 64-page teaching machine, the first alloc_pages(0, GFP_KERNEL) runs. How "
    "many pageblocks are Unmovable afterwards?",
    _first_claim, _explain_first_claim, _count,
    hints={1: "The page is one page, but the free block the allocator borrowed is bigger "
              "than one pageblock.",
           0: "Every pageblock starts Movable, and this request is Unmovable: something "
              "has to give."})


# -- 03.fallback_pfn ----------------------------------------------------------
def _fallback_pfn(kernel: str = CLAIM_STEAL) -> int:
    return fallback_machine(kernel).alloc_pages(0, KERNEL_GFP)


def _explain_fallback(pfn: int) -> str:
    old = _fallback_pfn("5.8")
    m = fallback_machine()
    per = m.geometry.pageblock_nr_pages
    free = [int((m.node.mm.state[s:s + per] == vm.PageState.FREE).sum()) for s in (0, per)]
    return (f"Nothing is free on the Unmovable lists, so the request falls back to the "
            f"Movable lists. First __rmqueue_claim() tries to claim a whole pageblock, "
            f"largest free block first: the order-1 block at pfn 6 lives in pageblock 0, "
            f"where only {free[0]} pages are free and {per - free[0]} hold movable pages, "
            f"short of the half a claim needs (free + alike >= {per // 2} of {per}; for an "
            f"unmovable request only non-movable pages are alike); the page at pfn 15 "
            f"({free[1]} free in its pageblock) fails the same test. Then "
            f"__rmqueue_steal() takes the *smallest* fallback block and leaves its "
            f"pageblock Movable: pfn {pfn}. (mm/page_alloc.c, Linux 6.15, the rework "
            f"\"don't steal single pages from biggest buddy\".) Linux 5.8 to 6.14 took the "
            f"largest fallback block instead (__rmqueue_fallback()) and returns pfn {old}, "
            f"splitting the order-1 block and leaving pfn {old + 1} free on the Unmovable "
            f"list inside a Movable pageblock.")


fallback_pfn = ValueExercise(
    "03.fallback_pfn",
    "On the machine above (claim, then steal: Linux 6.15 and later), which pfn does "
    "alloc_pages(0, GFP_KERNEL) return?",
    _fallback_pfn, _explain_fallback, _pfn,
    hints={6: "pfn 6 is what Linux 5.8 to 6.14 return: they took the largest fallback block "
              "first. 6.15 claims largest-first, but *steals* smallest-first.",
           7: "The allocator hands out the first page of a block."})


# -- 03.frag_index -------------------------------------------------------------
FRAG_ORDER = 3


def _frag_index() -> Milli:
    m = sparse_machine()
    return Milli(fragmentation_index(m.node.zone(vm.ZoneType.NORMAL), FRAG_ORDER))


def _explain_frag(value: Milli) -> str:
    m = sparse_machine()
    counts = [a.nr_free for a in m.node.zone(vm.ZoneType.NORMAL).free_area]
    pages = sum(n << o for o, n in enumerate(counts))
    blocks = sum(counts)
    step = pages * 1000 // (1 << FRAG_ORDER)
    return (f"buddyinfo {' '.join(map(str, counts))}: free_pages = {pages}, "
            f"free_blocks_total = {blocks}, and no block of order >= {FRAG_ORDER}, so "
            f"free_blocks_suitable = 0. index = 1000 - (1000 + free_pages x 1000 / "
            f"2**{FRAG_ORDER}) / free_blocks_total = 1000 - (1000 + {step}) / {blocks} = "
            f"{int(value)}, printed {value} (mm/vmstat.c, __fragmentation_index()). Close "
            f"to 1: the order-{FRAG_ORDER} allocation fails because free memory is in "
            f"pieces, not because it is short.")


def _frag_hints() -> dict:
    m = sparse_machine()
    return {Milli(1000): "1.000 is the unusable free index at this order: the share of free "
                         "memory in blocks too small. The fragmentation index is another "
                         "formula.",
            Milli(-1000): "-1.000 means the allocation would succeed; is there a free block "
                          f"of order {FRAG_ORDER} in {m.proc.buddyinfo().split()[4:]}?"}


frag_index = ValueExercise(
    "03.frag_index",
    "From the buddyinfo of the sparse teaching machine, what does extfrag_index print at "
    "order 3?",
    _frag_index, _explain_frag, _milli, hints=LazyHints(_frag_hints))


# -- 03.unusable_free_index ---------------------------------------------------
@cache
def _unusable_cases() -> tuple[Case, ...]:
    rows = [[a.nr_free for a in z.free_area]
            for m in (teaching(), sparse_machine(), slab_guest())
            for z in m.node.zones if z.populated()]
    rows.append([0] * 11)
    return tuple(Case((tuple(row), order), unusable_index(row, order))
                 for row in rows for order in range(len(row)))


def _explain_unusable(case: Case) -> str:
    counts, order = case.args
    if not any(counts):
        return ("With no free memory at all the kernel answers 1000: nothing is usable "
                "(mm/vmstat.c, unusable_free_index()).")
    return (f"free_pages = sum of count x 2**o = {sum(n << o for o, n in enumerate(counts))}; "
            f"usable pages are those in blocks of order >= {order}; the index is the "
            f"unusable share x 1000, rounded down (mm/vmstat.c, unusable_free_index()).")


unusable_free_index = FunctionExercise(
    "03.unusable_free_index",
    "Write unusable_free_index(nr_free, order): nr_free is a buddyinfo row (free blocks "
    "per order); return the index x 1000 as an int, as the kernel computes it.",
    "unusable_free_index", _unusable_cases, _explain_unusable,
    "free = sum(n << o for o, n in enumerate(nr_free)); usable = sum(n << o for o, n in "
    "enumerate(nr_free) if o >= order); return 1000 if free == 0 else "
    "(free - usable) * 1000 // free")


# -- 03.order9_count -----------------------------------------------------------
def _order9_count() -> int:
    return count_allocations(slab_guest(), 9)


def _explain_order9(n: int) -> str:
    m = slab_guest()
    lines = []
    for z in m.node.zones:
        if z.populated():
            c = [a.nr_free for a in z.free_area]
            lines.append(f"{z.name} has {c[9]} free order-9 and {c[10]} order-10 blocks, "
                         f"good for {c[9]} + 2 x {c[10]} = {c[9] + 2 * c[10]}")
    before = free_percent(m)
    count_allocations(m, 9)
    return ("Only free blocks of order 9 or more can serve an order-9 request; smaller ones "
            "never combine unless their buddies are free too. " + "; ".join(lines)
            + f". So {n} allocations succeed, and the next fails with {free_percent(m):.0f}% "
            f"of memory still free ({before:.0f}% before). The big blocks were left because "
            f"the slab fill stopped at the zone watermarks, and ZONE_DMA's last block is "
            f"reachable because GFP_KERNEL may fall back to DMA (lowmem_reserve permitting).")


def _order9_hints() -> dict:
    m = slab_guest()
    naive = sum(z.nr_free_pages for z in m.node.zones) // 512
    dma = m.node.zone(vm.ZoneType.DMA).free_area
    return {0: "Look at the last two columns of buddyinfo: a few big blocks survived.",
            naive: "That is free memory / 2 MiB: true only if free memory were in whole "
                   "2 MiB blocks.",
            _order9_count() - dma[9].nr_free - 2 * dma[10].nr_free:
                "Right for DMA32; ZONE_DMA can serve GFP_KERNEL too when DMA32 is out."}


order9_count = ValueExercise(
    "03.order9_count",
    "In the 1 GiB guest whose buddyinfo is printed above, how many alloc_pages(9, "
    "GFP_KERNEL) calls in a row succeed before the first one fails?",
    _order9_count, _explain_order9, _count, hints=LazyHints(_order9_hints))


# -- 03.grouping_off -----------------------------------------------------------
@cache
def _grouping_counts() -> tuple[int, int]:
    return (count_allocations(grouping_guest(True), 9, "GFP_HIGHUSER_MOVABLE"),
            count_allocations(grouping_guest(False), 9, "GFP_HIGHUSER_MOVABLE"))


def _grouping_off() -> str:
    on, off = _grouping_counts()
    return "fewer" if off < on * 0.9 else "more" if off > on * 1.1 else "same"


def _explain_grouping(answer: str) -> str:
    on, off = _grouping_counts()
    return (f"With grouping, {on} order-9 allocations succeed; without it, {off}. Both "
            f"guests hold the same kernel pages and have the same free memory, but with "
            f"grouping the kernel pages were packed into Unmovable and Reclaimable "
            f"pageblocks, so when the user processes exited whole pageblocks became free. "
            f"Without it (gfp_migratetype() returns MIGRATE_UNMOVABLE for everything), "
            f"kernel pages were interleaved with user pages in every pageblock and stay "
            f"behind as splinters.")


grouping_off = ValueExercise(
    "03.grouping_off",
    "Boot the same guest with mobility grouping off and run the same workload. Compared "
    "with grouping on, do fewer, about the same, or more order-9 allocations succeed "
    "after the user processes exit?",
    _grouping_off, _explain_grouping, _comparison,
    hints={"same": "Free memory is the same in both; look at where the kernel pages are.",
           "more": "Grouping exists to keep big blocks free; what happens without it?"})
