"""Exercises of notebook 04, alloc_contig_range(), on tiny teaching machines.

The teaching geometry has 4 KiB pages, 8-page pageblocks and 16-page
max-order blocks (x86-64: 512 and 1024 pages), so every pfn fits on a
line.  Each exercise states its own machine; every answer, and every
explanation, comes from running the model.
"""

from __future__ import annotations

import vmemlab as vm
from vmemlab.constants import errname
from vmemlab.page_isolation import isolation_range as _isolation_range
from vmemlab.profiles import PROFILES
from vmemlab.trace import Trace

from . import Case, FunctionExercise, ValueExercise
from .answers import Rc, errno_rc, whole_number

PHASES = ("isolate", "drain", "migrate", "test", "take", "trim", "undo")
TEACH_PAGES = 256
# The first profile that refuses unsupported gfp flags (Linux 6.14,
# __alloc_contig_verify_gfp_mask()).
GFP_CHECK = next(name for name, p in PROFILES.items() if p.contig_gfp_check)


def teaching(kernel: str = "6.12", pages: int = TEACH_PAGES, **kw) -> vm.Machine:
    """A flat teaching machine: one Normal zone, ``pages`` pages, nothing allocated."""
    return vm.Machine(boot_memory=pages * 4096, geometry="teaching", kernel=kernel, seed=0,
                      **kw)


def fresh_machine() -> vm.Machine:
    """A new empty 256-page teaching machine, traced, for your own experiments."""
    return teaching(trace=True)


def machine(trace: bool = False) -> vm.Machine:
    """The notebook's machine: 256 pages with user memory, page cache and slab.

    The notebook builds it with the same calls: anonymous memory (32 pages
    and their page table), 4 pages of clean page cache, 2 pages of slab.
    """
    m = teaching(trace=trace)
    m.activity("anon", size="128k")
    m.activity("page_cache", size="16k")
    m.activity("slab", size="8k")
    return m


# -- answer forms ----------------------------------------------------------
_count = whole_number("a number of pages")


def _phase(x: object) -> str:
    if not isinstance(x, str):
        raise TypeError(f"a phase is one of the names {', '.join(PHASES)}")
    name = x.strip().lower()
    if name not in PHASES:
        raise ValueError(f"the phases are {', '.join(PHASES)}")
    return name


def _pfn_pair(x: object) -> tuple[int, int]:
    if not isinstance(x, (tuple, list)) or len(x) != 2:
        raise TypeError("give two pfns: (outer_start, outer_end)")
    a, b = x
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (a, b)):
        raise TypeError("pfns are whole numbers")
    if not 0 <= a < b <= TEACH_PAGES:
        raise ValueError(f"need 0 <= outer_start < outer_end <= {TEACH_PAGES}")
    return int(a), int(b)


def _pfn_or_none(x: object) -> int | None:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, int):
        raise TypeError("alloc_contig_pages() returns a pfn or None")
    if not 0 <= x < TEACH_PAGES:
        raise ValueError(f"this machine has pfns 0 to {TEACH_PAGES - 1}")
    return x


# -- 04.nr_migrated ---------------------------------------------------------
NR_MIGRATED_RANGE = (0x14, 0x3C)


def _migrate_phase() -> tuple[vm.Machine, object]:
    m = machine()
    c = m.contig_range(*NR_MIGRATED_RANGE)
    while c.phase != "test":
        c.step()
    return m, c


def _explain_nr_migrated(n: int) -> str:
    m = machine()
    lo, hi = NR_MIGRATED_RANGE
    before = m.page_map(0, 0x40)
    _, c = _migrate_phase()
    return (f"Before the call (pfns 0x00-0x3f):\n{before}"
            f"alloc_contig_range({lo:#x}, {hi:#x}) migrates only the pages in use inside "
            f"[{lo:#x}, {hi:#x}) (mm/page_alloc.c, __alloc_contig_migrate_range(cc, start, end)): "
            f"the anonymous pages from {lo:#x} to 0x2f, {c.stats.nr_migrated} of them. The "
            f"{c.stats.dropped} clean page-cache pages at 0x30-0x33 are not copied but dropped "
            "(reclaim_clean_pages_from_list(): the file can be read again), and the anonymous "
            f"pages 0x10-0x13 lie in an isolated pageblock but before {lo:#x}, so nobody "
            "touches them.")


nr_migrated = ValueExercise(
    "04.nr_migrated",
    "On the notebook's machine, how many pages does the migrate phase of "
    "alloc_contig_range(0x14, 0x3c) copy to a new place?",
    lambda: _migrate_phase()[1].stats.nr_migrated, _explain_nr_migrated, _count,
    hints={32: "Two traps give 32: the anonymous pages 0x10-0x13 are below the range's "
               "start (isolated with their pageblock, but never migrated), and clean page "
               "cache is dropped rather than copied.",
           36: "Count only pages inside [0x14, 0x3c), and remember that clean page cache "
               "is not copied.",
           0: "Pages in use inside the range must go somewhere before the range is free.",
           4: "The page cache is the part that is *not* copied."})


# -- 04.failing_phase -------------------------------------------------------
def _pinned_run():
    m = teaching()
    pin = m.activity("pin", size="32k")
    first = int(pin.pages()[0])
    c = m.contig_range(first, first + 8)
    c.run()
    return m, c


def _failing_phase() -> str:
    _, c = _pinned_run()
    return next(r.phase for r in c.results if r.rc)


def _explain_failing_phase(phase: str) -> str:
    _, c = _pinned_run()
    lines = "\n  ".join(str(r) for r in c.results)
    return ("The phases ran like this:\n  " + lines + "\n"
            "has_unmovable_pages() (mm/page_isolation.c) sees an anonymous page on the LRU "
            "and lets isolation succeed: it cannot know about the pin. The migration scan "
            "(isolate_migratepages_block()) skips an anonymous page whose reference count "
            "exceeds its map count, and alloc_contig_range() deliberately ignores -EBUSY from "
            "migration. The page is still there when test_pages_isolated() walks the range, "
            f"so the {phase} phase returns -EBUSY and undo runs.")


failing_phase = ValueExercise(
    "04.failing_phase",
    "Eight long-term pinned anonymous pages fill pfns 0-7. Which phase of "
    "alloc_contig_range(0, 8) reports the failure?",
    _failing_phase, _explain_failing_phase, _phase,
    hints={"isolate": "Isolation only refuses pages it knows can never move (slab, page "
                      "tables, reserved pages). A pinned anonymous page is still an LRU page.",
           "migrate": "The migrate phase does fail to move the page, but the kernel ignores "
                      "-EBUSY there on purpose: pages may still be freed before the check.",
           "take": "The phase before take already checks that every page is free.",
           "undo": "undo always runs and never fails; it cleans up after the failure."})


# -- 04.outer_range ---------------------------------------------------------
OUTER_RANGE = (5, 13)


def _outer_run():
    m = teaching()
    c = m.contig_range(*OUTER_RANGE)
    c.run()
    return m, c


def _outer_pair() -> tuple[int, int]:
    _, c = _outer_run()
    return c.outer_start, c.outer_end


def _explain_outer(pair: tuple[int, int]) -> str:
    m = teaching()
    buddy = m.proc.buddyinfo().strip()
    _, c = _outer_run()
    trim = next(r for r in c.results if r.phase == "trim")
    return (f"The empty machine's free lists: {buddy}, i.e. sixteen free order-4 blocks of "
            "16 pages. Pages 5 to 12 sit inside the free block [0, 16). The test phase starts "
            "at find_large_buddy(5), the head of the free buddy that straddles pfn 5: "
            f"outer_start = {pair[0]}. isolate_freepages_range() (mm/compaction.c) takes whole "
            f"free blocks, so it stops at the end of that block: outer_end = {pair[1]}. "
            f"Then trim gives the rest back with free_contig_range(): {trim.text}.")


outer_range = ValueExercise(
    "04.outer_range",
    "On an empty 256-page teaching machine, alloc_contig_range(5, 13) takes whole free "
    "blocks off the free lists. Which pfns does the take phase cover: "
    "(outer_start, outer_end)?",
    lambda: _outer_pair(), _explain_outer,
    _pfn_pair,
    hints={(5, 13): "Free pages are taken as whole buddy blocks; a block is never split "
                    "while it is taken.",
           (0, 8): "Pageblocks are 8 pages, but free blocks can be bigger: the empty machine "
                   "has 16-page blocks.",
           (8, 16): "Pfn 5 is not in [8, 16).",
           (0, 13): "The last block taken ends where that block ends, not at 13."})


# -- 04.rc_no_room ----------------------------------------------------------
def _no_room():
    m = teaching()
    anon = m.activity("anon", size="64k")
    m.activity("kernel", size=str((TEACH_PAGES - 17) * 4096))
    lo = int(anon.pages()[0])
    c = m.contig_range(lo, lo + 16)
    c.run()
    return m, c, lo


def _explain_no_room(rc: int) -> str:
    m, c, lo = _no_room()
    mig = next(r for r in c.results if r.phase == "migrate")
    return (f"Free pages after the setup: {m.zones['Normal'].free}. Isolation of "
            f"[{lo:#x}, {lo + 16:#x}) succeeds: it holds only anonymous pages. Each of them "
            "needs a destination page outside the isolated range, from the ordinary "
            "allocator (alloc_migration_target(), mm/migrate.c). There is none, so "
            f"migrate_pages() fails with -ENOMEM and the migrate phase stops: '{mig.text}'. "
            f"The call returns {errname(rc)}; nothing was lost, the pages stay where they were.")


rc_no_room = ValueExercise(
    "04.rc_no_room",
    "A machine whose memory is all in use: 16 anonymous pages, the rest kernel memory. "
    "What does alloc_contig_range() return for the 16 anonymous pages' range?",
    lambda: Rc(_no_room()[1].rc), _explain_no_room, errno_rc,
    hints={vm.EBUSY: "-EBUSY means something in the range cannot move or is still busy. "
                  "These pages could move, if only there were somewhere to put them.",
           0: "Migration has to copy each page somewhere first.",
           vm.EINTR: "-EINTR needs a fatal signal; nobody sent one."})


# -- 04.isolation_range -----------------------------------------------------
_X86 = {}


def _x86(kernel: str) -> vm.Machine:
    if kernel not in _X86:
        _X86[kernel] = vm.Machine(boot_memory="256M", kernel=kernel, seed=0)
    return _X86[kernel]


ISOLATION_CASES = ((0x40000, 0x40200), (0x40200, 0x40400), (0x40000, 0x40400),
                   (0x40100, 0x40300), (0x40201, 0x40202), (0x3FF00, 0x40100),
                   (0x40400, 0x40a00))


def _isolation_cases() -> list[Case]:
    return [Case((s, e, k), _isolation_range(_x86(k).node, s, e))
            for k in ("6.12", "5.8") for s, e in ISOLATION_CASES]


def _explain_isolation(case: Case) -> str:
    s, e, k = case.args
    if k == "5.8":
        return ("Linux 5.8 (up to 5.18) isolates whole MAX_ORDER blocks: "
                "pfn_max_align_down(start) and pfn_max_align_up(end) round to "
                "max(MAX_ORDER_NR_PAGES, pageblock_nr_pages) = 1024 pages (4 MiB) "
                "(mm/page_alloc.c, alloc_contig_range() in 5.10).")
    return ("Since 5.19 start_isolate_page_range() covers the pageblocks of [start, end): "
            "pageblock_start_pfn(start) to pageblock_align(end), 512-page (2 MiB) units "
            "(mm/page_isolation.c).")


isolation_range = FunctionExercise(
    "04.isolation_range",
    "Write isolation_range(start_pfn, end_pfn, kernel): the pfn range "
    "(iso_start, iso_end) whose pageblocks alloc_contig_range() isolates on x86-64, "
    "for kernel '6.12' or '5.8'.",
    "isolation_range", _isolation_cases, _explain_isolation,
    "n = 512 if kernel == '6.12' else 1024; "
    "return (start_pfn // n * n, -(-end_pfn // n) * n)")


def claiming_page(m: vm.Machine, limit: int = 1 << 16) -> int:
    """Allocate GFP_KERNEL pages on traced ``m`` until one falls back and claims a
    free pageblock of another type; return that page's pfn.

    A booted guest first fills the kernel's own Unmovable pageblocks; the
    first page that does not fit takes the largest free Movable block, a whole
    4 MiB one on x86-64, and claims it (mm_page_alloc_extfrag with
    change_ownership=1), so the other pageblock of that block is free.
    """
    if not isinstance(m.trace, Trace):
        raise ValueError("claiming_page() needs a machine built with trace=True")
    for _ in range(limit):
        seen = len(m.trace.events("mm_page_alloc_extfrag"))
        pfn = m.alloc_pages(0, "GFP_KERNEL")
        if pfn is None:
            break
        new = m.trace.events("mm_page_alloc_extfrag")[seen:]
        if any(e.change_ownership for e in new):
            return pfn
    raise ValueError(f"no GFP_KERNEL page claimed a pageblock within {limit} allocations")


# -- 04.gigantic --------------------------------------------------------------
GIGANTIC_PAGES = 32


def gigantic_machine() -> vm.Machine:
    """128 pages of boot memory (ZONE_NORMAL, filled with kernel memory) and a
    128-page DIMM onlined to ZONE_MOVABLE (empty)."""
    m = teaching(pages=128, auto_online_blocks="online_movable")
    m.add_dimm(128 * 4096)
    m.activity("kernel", size=str(m.zones["Normal"].free * 4096))
    return m


def _gigantic() -> int | None:
    return gigantic_machine().alloc_contig_pages(GIGANTIC_PAGES, "GFP_HIGHUSER | __GFP_COMP")


def _explain_gigantic(pfn: int | None) -> str:
    m = gigantic_machine()
    free = {name: z.free for name, z in m.zones.items() if z.present}
    got = "None" if pfn is None else f"pfn {pfn}"
    movable = m.alloc_contig_pages(GIGANTIC_PAGES, "GFP_HIGHUSER_MOVABLE | __GFP_COMP")
    return (f"Free pages per zone: {free}. alloc_contig_pages() walks the zonelist of its "
            "gfp mask (mm/page_alloc.c, alloc_contig_pages_noprof()). A gigantic hugetlb "
            "page is allocated with GFP_HIGHUSER, not GFP_HIGHUSER_MOVABLE, because "
            "hugepage_movable_supported() is false for gigantic sizes (include/linux/"
            "hugetlb.h); gfp_zone(GFP_HIGHUSER) is ZONE_NORMAL, so ZONE_MOVABLE is never "
            f"tried, and ZONE_NORMAL is full: {got}. With GFP_HIGHUSER_MOVABLE the same "
            f"call would have returned pfn {movable}, in ZONE_MOVABLE.")


gigantic = ValueExercise(
    "04.gigantic",
    "ZONE_NORMAL is full of kernel memory, ZONE_MOVABLE (pfns 128-255) is empty. "
    "What does alloc_contig_pages(32, 'GFP_HIGHUSER | __GFP_COMP') return: a pfn or None?",
    _gigantic, _explain_gigantic, _pfn_or_none,
    hints={128: "128 is where ZONE_MOVABLE starts. Which zones may a GFP_HIGHUSER "
                "allocation use?",
           0: "Pfn 0 is in ZONE_NORMAL, whose pages are all kernel memory: unmovable."})
