"""Exercises of notebook 10, history: virtio-mem and its allocator from Linux 5.8 to 6.15.

Every behaviour that changed between the releases vmemlab models ("5.8",
"6.1", "6.12", "6.15") is a field of ``vmemlab.profiles.KernelProfile``,
documented with the upstream release and change that brought it
(``vmemlab.profiles.history``).  Each exercise runs the same calls on two
machines, the last profile before a change and the first one with it
(``around(field)``, read from the profiles), and asks for the pair of
results.  The scenarios are small functions here, so the notebook can print
their source, and the checkers run exactly what the notebook runs.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import vmemlab as vm
from vmemlab.constants import GiB, MiB, errname, format_size
from vmemlab.profiles import PROFILES, behaviour_fields, history
from vmemlab.realmem.proctext import parse_pagetypeinfo

from . import Case, FunctionExercise, PartHints, ValueExercise
from .answers import Rc, errno_rc, whole_number

ALL = tuple(PROFILES)                   # every modelled release, oldest first


def around(field: str) -> tuple[str, str]:
    """(the last profile before ``field`` took its newest value, the first one with it)."""
    newest = getattr(PROFILES[ALL[-1]], field)
    after = next(k for k in ALL if getattr(PROFILES[k], field) == newest)
    if after == ALL[0]:
        raise ValueError(f"field={field!r} is the same in every profile")
    return ALL[ALL.index(after) - 1], after


def _version(release: str) -> tuple[int, ...]:
    return tuple(int(x) for x in release.split("."))


def timeline() -> str:
    """Every change the profiles model, by upstream release: what changed and where."""
    rows = sorted((_version(history(f)[1]), f) for f in behaviour_fields())
    lines = [f"{'release':<9}{'first profile':<15}{'field':<27}where", f"{'':<9}change"]
    for _, name in rows:
        where, release, change = history(name)
        lines += [f"{release:<9}{around(name)[1]:<15}{name:<27}{where}", f"{'':<9}{change}"]
    return "\n".join(lines)


# The pairs of releases each experiment compares, read from the profiles.
SUBBLOCK = around("sbm_subblock")              # 4 MiB -> 2 MiB subblocks (5.19)
BBM = around("big_block_mode")                 # Big Block Mode (5.11)
MOVABLE = around("movable_partial_allowed")    # ZONE_MOVABLE no longer special (5.10, 5.14)
ISOLATION = around("contig_align")             # pageblock-granular isolation (5.19)
HYGIENE = around("freelist_hygiene")           # free-list hygiene (6.10)
FALLBACK = around("fallback")                  # claim, then steal (6.15)
GFP_CHECK = around("contig_gfp_check")         # unsupported gfp flags refused (6.14)
STORY = (ALL[0], ALL[-1])                      # the oldest and the newest release


# -- answer forms ----------------------------------------------------------------
def _pair(one: Any, what: str, kernels: tuple[str, str]) -> Any:
    a, b = kernels

    def accept(x: object) -> tuple:
        if isinstance(x, dict):
            if set(map(str, x)) != set(kernels):
                raise ValueError(f'a dict needs the keys "{a}" and "{b}"')
            x = tuple(x[k] if k in x else x[float(k)] for k in kernels)
        if isinstance(x, str) or not isinstance(x, (tuple, list)) or len(x) != 2:
            raise TypeError(f"give two {what}: (on {a}, on {b})")
        return tuple(one(v) for v in x)
    return accept


def _mib(x: object) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        raise TypeError("a size is a whole number of MiB")
    if not 0 <= x <= 1024:
        raise ValueError("the device holds at most 1024 MiB")
    return x


def _count(limit: int) -> Any:
    return whole_number("a count", 0, limit, f"this machine has {limit} pageblocks")

def _pfn(x: object) -> int:
    return whole_number("a pfn", 0, TEACH_PAGES - 1,
                        f"this machine has pfns 0 to {TEACH_PAGES - 1}")(x)


class PairHints(PartHints):
    """Hints for a pair answer: one table per kernel, looked up separately."""

    def __init__(self, truth: Any, kernels: tuple[str, str],
                 per_kernel: tuple[dict, dict]) -> None:
        super().__init__(truth)
        self._kernels, self._per = kernels, per_kernel

    def lines(self, guess: Any, truth: Any) -> list[str]:
        return [f"on {k}: {table[g]}" for k, g, t, table in
                zip(self._kernels, guess, truth, self._per, strict=True)
                if g != t and g in table]


# -- 10.granularity: 4 MiB vs 2 MiB subblocks ------------------------------------------
def granularity(kernel: str) -> vm.Machine:
    """A 2 GiB guest asks for 130 MiB from a 1 GiB virtio-mem device."""
    m = vm.Machine(boot_memory=2 * GiB, kernel=kernel, seed=0)
    dev = m.add_virtio_mem(region_size=1 * GiB)
    dev.requested_size = 130 * MiB
    m.settle()
    return m


def _granularity() -> tuple[int, int]:
    return tuple(granularity(k).virtio_mem[0].size // MiB for k in SUBBLOCK)


def _explain_granularity(truth: tuple[int, int]) -> str:
    parts = []
    for k, size in zip(SUBBLOCK, truth, strict=True):
        m = granularity(k)
        view = m.virtio_mem[0].driver.view()
        sb = view.sb_pages << m.geometry.page_shift
        parts.append(f"{k}: subblocks of {format_size(sb)}; the driver plugs "
                     f"130 MiB // {format_size(sb)} = {130 * MiB // sb} subblocks = "
                     f"{size} MiB and the pass ends with rc 0")
    return ("; ".join(parts) + ".  The driver divides the difference by the subblock size "
            "(diff / sb_size), so a remainder smaller than one subblock is never plugged; "
            f"the device happily accepts 2 MiB blocks, the {SUBBLOCK[0]} driver just never "
            "asks for one alone.")


granularity_size = ValueExercise(
    "10.granularity_size",
    f"The host sets requested-size 130M on a 2 GiB guest's 1 GiB device (2 MiB device "
    f"blocks).  How many MiB end up plugged: (on {SUBBLOCK[0]}, on {SUBBLOCK[1]})?",
    _granularity, _explain_granularity, _pair(_mib, "sizes in MiB", SUBBLOCK),
    hints=PairHints(_granularity, SUBBLOCK,
                    ({130: "the old driver plugs 4 MiB subblocks (MAX_ORDER-1 = order 10), "
                           "whatever the device's block size.",
                      132: "the driver rounds the difference down, never up: it must not "
                           "plug more than requested."},
                     {128: "since 5.19 the subblock is one pageblock, 2 MiB, the same as "
                           "QEMU's block here."})))


# -- 10.plug_unit: write it -------------------------------------------------------------
BLOCK_SIZES_MIB = (1, 2, 4, 8, 64, 128, 256, 1024)


def _probe(kernel: str, block_mib: int) -> tuple[str | None, int | None]:
    m = vm.Machine(boot_memory=2 * GiB, kernel=kernel, seed=0)
    dev = m.add_virtio_mem(region_size=2 * GiB, block_size=block_mib * MiB)
    mode = dev.driver.mode
    if mode is None:
        return None, None
    return mode.name, mode.unit_size // MiB if mode.name == "BBM" else mode.sb_size // MiB


@lru_cache(maxsize=1)
def _unit_cases() -> tuple[Case, ...]:
    return tuple(Case((k, b), _probe(k, b)[1]) for k in BBM for b in BLOCK_SIZES_MIB)


def _explain_unit(case: Case) -> str:
    kernel, block_mib = case.args
    mode, unit = _probe(kernel, block_mib)
    old = PROFILES[kernel].sbm_subblock == "max_order"
    if mode is None:
        return (f"On {kernel} a device block of {block_mib} MiB is larger than a 128 MiB "
                "memory block and there is no Big Block Mode yet: the driver logs \"The "
                "block size is not supported (too big).\" and fails with -EINVAL.")
    floor = "max(4 MiB MAX_ORDER-1 chunk, 2 MiB pageblock)" if old else "one 2 MiB pageblock"
    if mode == "BBM":
        return (f"On {kernel} the subblock would be max({floor}, {block_mib} MiB), not "
                f"smaller than a 128 MiB memory block, so the driver uses Big Block Mode "
                f"with big blocks of max(device block, memory block) = {unit} MiB.")
    if unit == 128:
        return (f"On {kernel} the subblock is max({floor}, {block_mib} MiB) = 128 MiB, a whole "
                "memory block; with no Big Block Mode yet, the driver still uses Sub Block "
                "Mode with one subblock per memory block.")
    return (f"On {kernel} the subblock is max({floor}, device block {block_mib} MiB) = "
            f"{unit} MiB, smaller than a 128 MiB memory block, so Sub Block Mode.")


plug_unit = FunctionExercise(
    "10.plug_unit",
    f"Write plug_unit(kernel, block_mib): how many MiB the x86-64 guest driver plugs or "
    f"unplugs at a time for a device with block_mib MiB blocks (its subblock in SBM, its big "
    f"block in BBM), or None if the driver refuses the device.  kernel is {BBM[0]!r} or "
    f"{BBM[1]!r}.",
    "plug_unit", _unit_cases, _explain_unit,
    f'sb = max(4 if kernel == "{BBM[0]}" else 2, block_mib); '
    f'return sb if sb < 128 or (kernel == "{BBM[0]}" and sb == 128) else '
    f'(None if kernel == "{BBM[0]}" else max(block_mib, 128))')


# -- 10.movable_states: ONLINE_MOVABLE never unplugged ----------------------------------
def movable(kernel: str) -> vm.Machine:
    """All hotplugged memory onlined to ZONE_MOVABLE: grow to 300 MiB, shrink to 100."""
    m = vm.Machine(boot_memory=2 * GiB, kernel=kernel, seed=0,
                   auto_online_blocks="online_movable", trace=True)
    dev = m.add_virtio_mem(region_size=1 * GiB)
    dev.requested_size = 300 * MiB
    m.settle()
    m.step("grown to 300 MiB")
    dev.requested_size = 100 * MiB
    m.settle()
    m.step("asked to shrink to 100 MiB")
    return m


def states_by_step(m: vm.Machine, blocks: int = 4) -> str:
    """The device's first memory-block states and plugged size at each recorded step."""
    lines = []
    for frame in m.trace:
        view = frame.state.extra["virtio_mem"][0]
        lines.append(f"{frame.label:<28} plugged {format_size(view.plugged_size):>8}:  "
                     + ", ".join(view.mb_states[:blocks]))
    return "\n".join(lines)


@lru_cache(maxsize=len(ALL))
def _movable_run(kernel: str) -> tuple[tuple[str, ...], tuple[str, ...], int, int]:
    m = movable(kernel)
    grown, shrunk = (f.state.extra["virtio_mem"][0] for f in m.trace)
    dev = m.virtio_mem[0]
    n = 4
    return grown.mb_states[:n], shrunk.mb_states[:n], dev.size // MiB, dev.driver.last_rc


def _movable() -> tuple[int, int]:
    return tuple(_movable_run(k)[2] for k in MOVABLE)


def _explain_movable(truth: tuple[int, int]) -> str:
    out = []
    for k in MOVABLE:
        grown, shrunk, size, rc = _movable_run(k)
        out.append(f"{k}: after growing {', '.join(grown)}; after the shrink "
                   f"{', '.join(shrunk)}: {size} MiB plugged, last rc {errname(rc)}")
    old, new = MOVABLE
    order = {k: ", ".join(PROFILES[k].sbm_unplug_order) for k in MOVABLE}
    return ("\n".join(out) + f"\nThe {old} driver refused to online the partly plugged third "
            "block to ZONE_MOVABLE (\"memory block has holes, MOVABLE not supported\"), so it "
            f"stayed OFFLINE_PARTIAL; its unplug order ({order[old]}) never visits "
            "ONLINE_MOVABLE blocks, so after removing the offline block it is stuck and "
            f"retries on a timer.  {new} walks {order[new]}: MOVABLE_PARTIAL first, "
            "then whole MOVABLE blocks.")


movable_states = ValueExercise(
    "10.movable_states",
    "Every hotplugged block is onlined to ZONE_MOVABLE.  The device grows to 300 MiB, then "
    f"the host asks for 100 MiB.  How many MiB stay plugged: (on {MOVABLE[0]}, on "
    f"{MOVABLE[1]})?",
    _movable, _explain_movable, _pair(_mib, "sizes in MiB", MOVABLE),
    hints=PairHints(_movable, MOVABLE,
                    ({100: "the old driver never unplugs from an ONLINE_MOVABLE block: it "
                           "treats ZONE_MOVABLE like gigantic pages, off limits.",
                      300: "the partly plugged block never got online in the old driver, "
                           "and offline memory can always be unplugged."},
                     {256: "the newer driver unplugs from ZONE_MOVABLE first: that is where "
                           "unplug is most reliable.",
                      128: "the driver can unplug single subblocks of a block, not only "
                           "whole memory blocks."})))


# -- 10.isolation: MAX_ORDER-aligned vs pageblock isolation -----------------------------
TEACH_PAGES = 64


def teaching(kernel: str, trace: bool = False) -> vm.Machine:
    """64 pages of teaching geometry: 8-page pageblocks, 16-page max-order blocks."""
    return vm.Machine(boot_memory=TEACH_PAGES * 4096, geometry="teaching", kernel=kernel,
                      seed=0, trace=trace)


def fresh_machine(kernel: str = ALL[-1]) -> vm.Machine:
    """A new 64-page teaching machine of any profile, traced, for your own experiments."""
    return teaching(kernel, trace=True)


def isolation(kernel: str) -> tuple[vm.Machine, Any]:
    """One kernel page at pfn 0, then alloc_contig_range() of pageblock 1, [8, 16)."""
    m = teaching(kernel)
    m.alloc_pages(0, "GFP_KERNEL")
    return m, m.contig_range(8, 16)


def _isolation() -> tuple[int, int]:
    return tuple(Rc(isolation(k)[1].run()) for k in ISOLATION)


def _explain_isolation(truth: tuple[int, int]) -> str:
    out = []
    for k in ISOLATION:
        _, c = isolation(k)
        c.run()
        first = c.results[0]
        out.append(f"{k}: {first.phase}: {errname(first.rc)}, {first.text}; "
                   f"result {errname(c.rc)}")
    return ("\n".join(out) + f"\n{ISOLATION[0]} isolates the whole MAX_ORDER-aligned 16-page "
            "block around [8, 16) (4 MiB on x86-64), so the kernel page at pfn 0, outside the "
            "range, makes has_unmovable_pages() fail.  Since 5.19 only the pageblocks of "
            "the range are isolated and checked.")


isolation_rc = ValueExercise(
    "10.isolation_rc",
    "A kernel page sits at pfn 0; pfns 1-15 are free.  What does alloc_contig_range(8, 16) "
    f"return: (on {ISOLATION[0]}, on {ISOLATION[1]})?",
    _isolation, _explain_isolation, _pair(errno_rc, "return codes", ISOLATION),
    hints=PairHints(_isolation, ISOLATION,
                    ({0: "the old kernel rounds the isolated range out to the MAX_ORDER-"
                         "aligned block, which includes pfn 0."},
                     {vm.EBUSY: "since 5.19 isolation works at pageblock granularity: only "
                                "[8, 16) is checked, and it is all free."})))


# -- 10.hygiene: merging retypes pageblocks (6.10) ------------------------------------------
def hygiene(kernel: str) -> vm.Machine:
    """A kernel page claims pageblock 0; then everything in pageblocks 0-1 is freed."""
    m = teaching(kernel)
    a = m.alloc_pages(0, "GFP_HIGHUSER_MOVABLE")      # pfn 0
    b = m.alloc_pages(3, "GFP_HIGHUSER_MOVABLE")      # pfns 8-15: pageblock 1
    for _ in range(3):
        m.alloc_pages(4, "GFP_HIGHUSER_MOVABLE")      # pfns 16-63: the rest
    k = m.alloc_pages(0, "GFP_KERNEL")                # falls back, claims pageblock 0
    m.free_pages(k, 0)
    m.free_pages(a, 0)                                # pageblock 0 is free again
    m.free_pages(b, 3)                                # pageblock 1 merges with it
    return m


def unmovable_pageblocks(m: vm.Machine) -> int:
    """The Unmovable count of /proc/pagetypeinfo's "Number of blocks type" table."""
    p = parse_pagetypeinfo(m.proc.pagetypeinfo())
    i = p.type_names.index("Unmovable")
    return sum(row.counts[i] for row in p.blocks)


def _hygiene() -> tuple[int, int]:
    return tuple(unmovable_pageblocks(hygiene(k)) for k in HYGIENE)


def _explain_hygiene(truth: tuple[int, int]) -> str:
    out = []
    for k, n in zip(HYGIENE, truth, strict=True):
        m = hygiene(k)
        p = parse_pagetypeinfo(m.proc.pagetypeinfo())
        lists = [f"{r.type} order {o}" for r in p.free for o, c in enumerate(r.counts) if c]
        out.append(f"{k}: {n} Unmovable pageblock(s); free blocks on: {', '.join(lists)}")
    return ("\n".join(out) + "\nThe GFP_KERNEL page claimed pageblock 0 (Unmovable).  When "
            "pageblock 1 (Movable) is freed, its order-3 buddy is pageblock 0, free: the two "
            "merge into one order-4 block on the Movable list in both kernels.  Since 6.10 "
            "the merge also retypes the buddy's pageblock (change_pageblock_range() in "
            f"__free_one_page()), so a free block never spans pageblocks of two types; "
            f"{HYGIENE[0]} leaves pageblock 0 Unmovable under a block on the Movable list.")


hygiene_blocks = ValueExercise(
    "10.hygiene_blocks",
    "After the last free, how many pageblocks does /proc/pagetypeinfo count as Unmovable: "
    f"(on {HYGIENE[0]}, on {HYGIENE[1]})?",
    _hygiene, _explain_hygiene, _pair(_count(TEACH_PAGES // 8), "counts", HYGIENE),
    hints=PairHints(_hygiene, HYGIENE,
                    ({0: "nothing before 6.10 retypes a pageblock when buddies merge; only a "
                         "claim (or an isolation undo) does."},
                     {1: "since 6.10 merging two pageblocks of different types retypes the "
                         "buddy's pageblock."})))


# -- 10.fallback: largest-first vs claim-then-steal -------------------------------------
def fallback(kernel: str) -> tuple[vm.Machine, int]:
    """All 64 pages movable; free pfns 5, 6, 7 and 15; then one GFP_KERNEL page."""
    m = teaching(kernel, trace=True)
    for _ in range(TEACH_PAGES):
        m.alloc_pages(0, "GFP_HIGHUSER_MOVABLE")
    for pfn in (5, 6, 7, 15):
        m.free_pages(pfn, 0)
    return m, m.alloc_pages(0, "GFP_KERNEL")


def _fallback() -> tuple[int, int]:
    return tuple(fallback(k)[1] for k in FALLBACK)


def _explain_fallback(truth: tuple[int, int]) -> str:
    out = []
    for k in ALL:
        m, pfn = fallback(k)
        p = parse_pagetypeinfo(m.proc.pagetypeinfo())
        un = [f"order {o}" for r in p.free if r.type == "Unmovable"
              for o, c in enumerate(r.counts) if c]
        out.append(f"{k}: pfn {pfn}; free blocks left on the Unmovable list: "
                   f"{', '.join(un) or 'none'}")
    old, new = FALLBACK
    return ("\n".join(out) + "\nNo Unmovable block is free, so every kernel falls back to "
            "Movable ones, and a claim of pageblock 0 fails (3 free pages < 4 needed).  Up to "
            f"{old} (__rmqueue_fallback()) the allocator takes the largest fallback block, the "
            "order-1 block at pfn 6.  Before 6.10 it then moved all free pages of pageblock 0 "
            "to the Unmovable list anyway and took the smallest of them, pfn 5; with free-list "
            "hygiene (6.10) only the page it needs is split off the block, pfn 6, and pfn 7 "
            f"stays on the Movable list.  {new} (__rmqueue_claim(), then __rmqueue_steal()) "
            "steals the smallest suitable block instead, the single page at pfn 15, and "
            "leaves pageblock 0's free pages alone.")


fallback_pfn = ValueExercise(
    "10.fallback_pfn",
    "Every page is movable except the free pfns 5, 6, 7 and 15.  Which pfn does "
    f"alloc_pages(0, GFP_KERNEL) return: (on {FALLBACK[0]}, on {FALLBACK[1]})?",
    _fallback, _explain_fallback, _pair(_pfn, "pfns", FALLBACK),
    hints=PairHints(_fallback, FALLBACK,
                    ({15: "before 6.15 the allocator goes for the largest fallback block "
                          "first.",
                      5: "with free-list hygiene (6.10) a failed claim no longer moves the "
                         "pageblock's free pages to the Unmovable list."},
                     {5: "6.15 claims only when the claim succeeds; otherwise it steals the "
                         "smallest block that fits.",
                      6: "6.15 steals the smallest suitable block."})))


# -- the gfp check of alloc_contig_range() (6.14) ----------------------------------------------
def gfp_check(kernel: str) -> int:
    """alloc_contig_range() of one free pageblock with __GFP_NOFAIL, which it cannot honour."""
    return teaching(kernel).alloc_contig_range(0, 8, "GFP_KERNEL | __GFP_NOFAIL")


# -- 10.same_story: one scenario on every kernel ----------------------------------------------
@lru_cache(maxsize=len(ALL))  # run once per kernel; the notebook and the checker share it
def scenario(kernel: str) -> vm.Machine:
    """Grow a 1 GiB guest by 1 GiB in ZONE_NORMAL, fill it, then ask for everything back."""
    m = vm.Machine(boot_memory=1 * GiB, kernel=kernel, seed=1, trace=True)
    dev = m.add_virtio_mem(region_size=2 * GiB, requested_size=1 * GiB)
    m.settle()                                   # onlined to ZONE_NORMAL (contig-zones)
    m.step("grown to 1 GiB")
    m.activity("anon", size=512 * MiB)           # user memory and its page tables
    m.activity("files", count=50_000)            # dentries and inodes
    m.activity("slab", size=32 * MiB)            # kernel objects
    m.step("workload running")
    dev.requested_size = 0                       # the host wants all of it back
    m.settle()
    m.step("asked for 0")
    return m


ROWS = {
    "grown": "plugged after growing to 1 GiB",
    "plug_requests": "PLUG requests sent",
    "shrunk": "plugged after asking for 0",
    "unplug_requests": "UNPLUG requests sent",
    "blocks_left": "memory blocks still added",
    "states": "states of those blocks",
    "last_rc": "the driver's last rc",
}


@lru_cache(maxsize=len(ALL))
def scenario_rows(kernel: str) -> dict[str, str]:
    """The scenario's results, one short text per row of ``ROWS``."""
    m = scenario(kernel)
    grown, _, shrunk = (f.state.extra["virtio_mem"][0] for f in m.trace)
    dev = m.virtio_mem[0]
    count = {name: len(m.trace.events(f"virtio_mem_{name}_request")) for name in
             ("plug", "unplug")}
    left = [s for s in shrunk.mb_states if s != "UNUSED"]
    states = ", ".join(f"{s} x{left.count(s)}" if left.count(s) > 1 else s
                       for s in dict.fromkeys(left))
    return {"grown": format_size(grown.plugged_size),
            "plug_requests": str(count["plug"]),
            "shrunk": format_size(dev.size),
            "unplug_requests": str(count["unplug"]),
            "blocks_left": str(len(left)),
            "states": states,
            "last_rc": errname(dev.driver.last_rc)}


def side_by_side(mark: bool = True) -> str:
    """The scenario's rows on every kernel; ``mark`` flags rows where the oldest and the
    newest release differ."""
    rows = {k: scenario_rows(k) for k in ALL}
    widths = {k: max(len(k), *(len(r[key]) for key in ROWS)) + 3
              for k, r in rows.items()}
    lines = [f"{'row':<16}{'':<31}" + "".join(f"{k:>{widths[k]}}" for k in ALL)]
    for key, label in ROWS.items():
        a, b = rows[STORY[0]][key], rows[STORY[1]][key]
        flag = "  <- differs" if mark and a != b else ""
        lines.append(f"{key:<16}{label:<31}"
                     + "".join(f"{rows[k][key]:>{widths[k]}}" for k in ALL) + flag)
    return "\n".join(lines)


class RowSet(frozenset):
    """A set of row names that prints in a fixed (sorted) order."""

    def __repr__(self) -> str:
        return "{" + ", ".join(map(repr, sorted(self))) + "}"

    __str__ = __repr__


def _differ() -> RowSet:
    a, b = (scenario_rows(k) for k in STORY)
    return RowSet(k for k in ROWS if a[k] != b[k])


def _rows(x: object) -> RowSet:
    if isinstance(x, str) or not isinstance(x, (set, frozenset, list, tuple)):
        raise TypeError(f"give a set of row names, such as {{'grown', 'last_rc'}}; the "
                        f"rows are {', '.join(ROWS)}")
    bad = [r for r in x if r not in ROWS]
    if bad:
        raise ValueError(f"{bad} are not rows; the rows are {', '.join(ROWS)}")
    return RowSet(x)


class SetHints(PartHints):
    """Hints for a set answer: one per row wrongly included, one per row missed."""

    def __init__(self, truth: Any, extra: dict[str, str], missed: dict[str, str]) -> None:
        super().__init__(truth)
        self._extra, self._missed = extra, missed

    def lines(self, guess: Any, truth: Any) -> list[str]:
        return ([f"{r}: {self._extra[r]}" for r in sorted(guess - truth) if r in self._extra]
                + [f"{r}: {self._missed[r]}" for r in sorted(truth - guess)
                   if r in self._missed])


def _explain_differ(truth: frozenset[str]) -> str:
    old, new = STORY
    a, b = scenario_rows(old), scenario_rows(new)
    same = [k for k in ALL[1:] if scenario_rows(k) == b]
    return (f"Rows that differ between {old} and {new}: {', '.join(sorted(truth))}.\n"
            f"Both plug the same {a['grown']} with {a['plug_requests']} requests (one per "
            "128 MiB memory block) and both get stuck in ZONE_NORMAL, where unmovable kernel "
            f"pages cannot be migrated: {a['shrunk']} on {old}, {b['shrunk']} on {new}, last "
            f"rc {a['last_rc']} in both, so both retry on a timer.  {new} sends about twice "
            f"the UNPLUG requests ({b['unplug_requests']} vs {a['unplug_requests']}) because "
            "each covers a 2 MiB subblock, not 4 MiB; the finer grain frees only a little "
            "more, because grouping by mobility already packs unmovable pages into few "
            "pageblocks.  The states spell the same thing in each release's names.  "
            f"{', '.join(same)} tell the same story: the allocator changes after 5.19 "
            "do not change this outcome.")


same_story = ValueExercise(
    "10.same_story",
    f"Run scenario() on {STORY[0]} and on {STORY[1]}.  Which rows of the side-by-side table "
    "differ?",
    _differ, _explain_differ, _rows,
    hints=SetHints(_differ,
                   extra={"grown": "the device blocks are 2 MiB in both; 1 GiB is a whole "
                                   "number of 4 MiB subblocks too.",
                          "plug_requests": "plugging a whole memory block is one request "
                                           "in both releases.",
                          "last_rc": "neither reaches 0 MiB in ZONE_NORMAL: both end "
                                     "with -EBUSY and arm the retry timer.",
                          "blocks_left": "a block whose subblocks are not all unplugged "
                                         "stays added in both releases."},
                   missed={"unplug_requests": "one UNPLUG request per subblock freed: "
                                              "how big is a subblock?",
                           "states": "the two releases name the states of online blocks "
                                     "differently.",
                           "shrunk": "finer subblocks waste less around each unmovable "
                                     "page."}))
