"""Exercises of notebook 10, history: virtio-mem and its allocator from Linux 5.8 to 6.12.

Every behaviour that changed between the two releases is a field of
``vmemlab.profiles.KernelProfile``; each exercise runs the same calls on a
``kernel="5.8"`` and a ``kernel="6.12"`` machine and asks for the pair of
results.  The scenarios are small functions here, so the notebook can print
their source, and the checkers run exactly what the notebook runs.

"5.8" is vmemlab's reading of the release that merged virtio-mem (5.10.y
code plus the 2020 patches); "6.12" is 6.12.y as Debian ships it, with the
6.15 fallback rework backported (see vmemlab.profiles).
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from typing import Any

import vmemlab as vm
from vmemlab.constants import GiB, MiB, errname, format_size
from vmemlab.profiles import PROFILES, KernelProfile, behaviour_fields, history
from vmemlab.realmem.proctext import parse_pagetypeinfo

from . import Case, FunctionExercise, PartHints, ValueExercise
from .answers import Rc, errno_rc, whole_number

KERNELS = ("5.8", "6.12")

# Where each field of KernelProfile changed: (subsystem, release, change), as
# vmemlab.profiles documents it for every field.
CHANGED_IN: dict[str, tuple[str, str, str]] = {name: history(name)
                                               for name in behaviour_fields()}


def _short(value: Any) -> str:
    if isinstance(value, tuple):
        return ", ".join(map(str, value))
    if value is None:
        return "-"
    if isinstance(value, int) and not isinstance(value, bool) and value >= MiB:
        return format_size(value)
    return str(value)


def profile_table() -> str:
    """Every field of KernelProfile whose value differs, read from the two profiles."""
    old, new = PROFILES["5.8"], PROFILES["6.12"]
    names = [f.name for f in dataclasses.fields(KernelProfile) if f.name != "name"]
    missing = set(names) ^ set(CHANGED_IN)
    if missing:
        raise AssertionError(f"CHANGED_IN and KernelProfile disagree on {sorted(missing)}")
    lines, group = [f"{'field':<27}{'5.8':>14}{'6.12':>14}   changed in"], None
    for name in names:
        a, b = _short(getattr(old, name)), _short(getattr(new, name))
        where, release, change = CHANGED_IN[name]
        if where != group:
            lines.append(f"-- {where} " + "-" * (70 - len(where)))
            group = where
        mark = "" if a != b else "  (same)"
        if max(len(a), len(b)) <= 13:
            lines.append(f"{name:<27}{a:>14}{b:>14}   {release}: {change}{mark}")
        else:
            lines.append(f"{name:<27}{'':>28}   {release}: {change}{mark}")
            lines.append(f"    5.8   {a}")
            lines.append(f"    6.12  {b}")
    return "\n".join(lines)


# -- answer forms ----------------------------------------------------------------
def _pair(one: Any, what: str) -> Any:
    def accept(x: object) -> tuple:
        if isinstance(x, dict):
            if set(map(str, x)) != set(KERNELS):
                raise ValueError('a dict needs the keys "5.8" and "6.12"')
            x = (x["5.8"] if "5.8" in x else x[5.8], x["6.12"])
        if isinstance(x, str) or not isinstance(x, (tuple, list)) or len(x) != 2:
            raise TypeError(f"give two {what}: (on 5.8, on 6.12)")
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
    """Hints for a (5.8, 6.12) answer: one table per kernel, looked up separately."""

    def __init__(self, truth: Any, per_kernel: tuple[dict, dict]) -> None:
        super().__init__(truth)
        self._per = per_kernel

    def lines(self, guess: Any, truth: Any) -> list[str]:
        return [f"on {k}: {table[g]}" for k, g, t, table in
                zip(KERNELS, guess, truth, self._per, strict=True) if g != t and g in table]


# -- 10.granularity: 4 MiB vs 2 MiB subblocks ------------------------------------------
def granularity(kernel: str) -> vm.Machine:
    """A 2 GiB guest asks for 130 MiB from a 1 GiB virtio-mem device."""
    m = vm.Machine(boot_memory=2 * GiB, kernel=kernel, seed=0)
    dev = m.add_virtio_mem(region_size=1 * GiB)
    dev.requested_size = 130 * MiB
    m.settle()
    return m


def _granularity() -> tuple[int, int]:
    return tuple(granularity(k).virtio_mem[0].size // MiB for k in KERNELS)


def _explain_granularity(truth: tuple[int, int]) -> str:
    parts = []
    for k, size in zip(KERNELS, truth, strict=True):
        m = granularity(k)
        view = m.virtio_mem[0].driver.view()
        sb = view.sb_pages << m.geometry.page_shift
        parts.append(f"{k}: subblocks of {format_size(sb)}; the driver plugs "
                     f"130 MiB // {format_size(sb)} = {130 * MiB // sb} subblocks = "
                     f"{size} MiB and the pass ends with rc 0")
    return ("; ".join(parts) + ".  The driver divides the difference by the subblock size "
            "(diff / sb_size), so a remainder smaller than one subblock is never plugged; "
            "the device happily accepts 2 MiB blocks, the 5.8 driver just never asks for "
            "one alone.")


granularity_size = ValueExercise(
    "10.granularity_size",
    "The host sets requested-size 130M on a 2 GiB guest's 1 GiB device (2 MiB device "
    "blocks).  How many MiB end up plugged: (on 5.8, on 6.12)?",
    _granularity, _explain_granularity, _pair(_mib, "sizes in MiB"),
    hints=PairHints(_granularity, ({130: "5.8's driver plugs 4 MiB subblocks (MAX_ORDER-1 "
                                         "= order 10), whatever the device's block size.",
                                    132: "the driver rounds the difference down, never up: "
                                         "it must not plug more than requested."},
                                   {128: "since 5.19 the subblock is one pageblock, 2 MiB, "
                                         "the same as QEMU's block here."})))


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
    return tuple(Case((k, b), _probe(k, b)[1]) for k in KERNELS for b in BLOCK_SIZES_MIB)


def _explain_unit(case: Case) -> str:
    kernel, block_mib = case.args
    mode, unit = _probe(kernel, block_mib)
    if mode is None:
        return (f"On {kernel} a device block of {block_mib} MiB is larger than a 128 MiB "
                "memory block and there is no Big Block Mode yet: the driver logs \"The "
                "block size is not supported (too big).\" and fails with -EINVAL.")
    floor = "max(4 MiB MAX_ORDER-1 chunk, 2 MiB pageblock)" if kernel == "5.8" \
        else "one 2 MiB pageblock"
    if mode == "BBM":
        return (f"On {kernel} the subblock would be max({floor}, {block_mib} MiB), not "
                f"smaller than a 128 MiB memory block, so the driver uses Big Block Mode "
                f"with big blocks of max(device block, memory block) = {unit} MiB.")
    if unit == 128:
        return (f"On {kernel} the subblock is max({floor}, {block_mib} MiB) = 128 MiB, a whole "
                "memory block; with no Big Block Mode yet, 5.8 still uses Sub Block Mode "
                "with one subblock per memory block.")
    return (f"On {kernel} the subblock is max({floor}, device block {block_mib} MiB) = "
            f"{unit} MiB, smaller than a 128 MiB memory block, so Sub Block Mode.")


plug_unit = FunctionExercise(
    "10.plug_unit",
    "Write plug_unit(kernel, block_mib): how many MiB the x86-64 guest driver plugs or "
    "unplugs at a time for a device with block_mib MiB blocks (its subblock in SBM, "
    "its big block in BBM), or None if the driver refuses the device.",
    "plug_unit", _unit_cases, _explain_unit,
    'sb = max(4 if kernel == "5.8" else 2, block_mib); '
    'return sb if sb < 128 or (kernel == "5.8" and sb == 128) else '
    '(None if kernel == "5.8" else max(block_mib, 128))')


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


@lru_cache(maxsize=2)
def _movable_run(kernel: str) -> tuple[tuple[str, ...], tuple[str, ...], int, int]:
    m = movable(kernel)
    grown, shrunk = (f.state.extra["virtio_mem"][0] for f in m.trace)
    dev = m.virtio_mem[0]
    n = 4
    return grown.mb_states[:n], shrunk.mb_states[:n], dev.size // MiB, dev.driver.last_rc


def _movable() -> tuple[int, int]:
    return tuple(_movable_run(k)[2] for k in KERNELS)


def _explain_movable(truth: tuple[int, int]) -> str:
    out = []
    for k in KERNELS:
        grown, shrunk, size, rc = _movable_run(k)
        out.append(f"{k}: after growing {', '.join(grown)}; after the shrink "
                   f"{', '.join(shrunk)}: {size} MiB plugged, last rc {errname(rc)}")
    order = {k: ", ".join(PROFILES[k].sbm_unplug_order) for k in KERNELS}
    return ("\n".join(out) + f"\nThe 5.8 driver refused to online the partly plugged third "
            "block to ZONE_MOVABLE (\"memory block has holes, MOVABLE not supported\"), so it "
            f"stayed OFFLINE_PARTIAL; its unplug order ({order['5.8']}) never visits "
            "ONLINE_MOVABLE blocks, so after removing the offline block it is stuck and "
            f"retries on a timer.  6.12 walks {order['6.12']}: MOVABLE_PARTIAL first, "
            "then whole MOVABLE blocks.")


movable_states = ValueExercise(
    "10.movable_states",
    "Every hotplugged block is onlined to ZONE_MOVABLE.  The device grows to 300 MiB, then "
    "the host asks for 100 MiB.  How many MiB stay plugged: (on 5.8, on 6.12)?",
    _movable, _explain_movable, _pair(_mib, "sizes in MiB"),
    hints=PairHints(_movable, ({100: "5.8 never unplugs from an ONLINE_MOVABLE block: it "
                                     "treats ZONE_MOVABLE like gigantic pages, off limits.",
                                300: "the partly plugged block never got online in 5.8, "
                                     "and offline memory can always be unplugged."},
                               {256: "6.12 unplugs from ZONE_MOVABLE first: that is where "
                                     "unplug is most reliable.",
                                128: "the driver can unplug single subblocks of a block, "
                                     "not only whole memory blocks."})))


# -- 10.isolation: MAX_ORDER-aligned vs pageblock isolation -----------------------------
TEACH_PAGES = 64


def teaching(kernel: str, trace: bool = False) -> vm.Machine:
    """64 pages of teaching geometry: 8-page pageblocks, 16-page max-order blocks."""
    return vm.Machine(boot_memory=TEACH_PAGES * 4096, geometry="teaching", kernel=kernel,
                      seed=0, trace=trace)


def isolation(kernel: str) -> tuple[vm.Machine, Any]:
    """One kernel page at pfn 0, then alloc_contig_range() of pageblock 1, [8, 16)."""
    m = teaching(kernel)
    m.alloc_pages(0, "GFP_KERNEL")
    return m, m.contig_range(8, 16)


def _isolation() -> tuple[int, int]:
    return tuple(Rc(isolation(k)[1].run()) for k in KERNELS)


def _explain_isolation(truth: tuple[int, int]) -> str:
    out = []
    for k in KERNELS:
        _, c = isolation(k)
        c.run()
        first = c.results[0]
        out.append(f"{k}: {first.phase}: {errname(first.rc)}, {first.text}; "
                   f"result {errname(c.rc)}")
    return ("\n".join(out) + "\n5.8 isolates the whole MAX_ORDER-aligned 16-page block "
            "around [8, 16) (4 MiB on x86-64), so the kernel page at pfn 0, outside the "
            "range, makes has_unmovable_pages() fail.  Since 5.19 only the pageblocks of "
            "the range are isolated and checked.")


isolation_rc = ValueExercise(
    "10.isolation_rc",
    "A kernel page sits at pfn 0; pfns 1-15 are free.  What does alloc_contig_range(8, 16) "
    "return: (on 5.8, on 6.12)?",
    _isolation, _explain_isolation, _pair(errno_rc, "return codes"),
    hints=PairHints(_isolation, ({0: "in 5.8 the isolated range is rounded out to the "
                                     "MAX_ORDER-aligned block, which includes pfn 0."},
                                 {vm.EBUSY: "6.12 isolates pageblock granularity: only "
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
    return tuple(unmovable_pageblocks(hygiene(k)) for k in KERNELS)


def _explain_hygiene(truth: tuple[int, int]) -> str:
    out = []
    for k, n in zip(KERNELS, truth, strict=True):
        m = hygiene(k)
        p = parse_pagetypeinfo(m.proc.pagetypeinfo())
        lists = [f"{r.type} order {o}" for r in p.free for o, c in enumerate(r.counts) if c]
        out.append(f"{k}: {n} Unmovable pageblock(s); free blocks on: {', '.join(lists)}")
    return ("\n".join(out) + "\nThe GFP_KERNEL page claimed pageblock 0 (Unmovable).  When "
            "pageblock 1 (Movable) is freed, its order-3 buddy is pageblock 0, free: the two "
            "merge into one order-4 block on the Movable list in both kernels.  Since 6.10 "
            "the merge also retypes the buddy's pageblock (change_pageblock_range() in "
            "__free_one_page()), so a free block never spans pageblocks of two types; 5.8 "
            "leaves pageblock 0 Unmovable under a block on the Movable list.")


hygiene_blocks = ValueExercise(
    "10.hygiene_blocks",
    "After the last free, how many pageblocks does /proc/pagetypeinfo count as Unmovable: "
    "(on 5.8, on 6.12)?",
    _hygiene, _explain_hygiene, _pair(_count(TEACH_PAGES // 8), "counts"),
    hints=PairHints(_hygiene, ({0: "nothing in 5.8 retypes a pageblock when buddies merge; "
                                   "only a claim (or an isolation undo) does."},
                               {1: "since 6.10 merging two pageblocks of different types "
                                   "retypes the buddy's pageblock."})))


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
    return tuple(fallback(k)[1] for k in KERNELS)


def _explain_fallback(truth: tuple[int, int]) -> str:
    out = []
    for k in KERNELS:
        m, pfn = fallback(k)
        p = parse_pagetypeinfo(m.proc.pagetypeinfo())
        un = [f"order {o}" for r in p.free if r.type == "Unmovable"
              for o, c in enumerate(r.counts) if c]
        out.append(f"{k}: the page is pfn {pfn}; free blocks left on the Unmovable list: "
                   f"{', '.join(un) or 'none'}")
    return ("\n".join(out) + "\nNo Unmovable block is free, so both fall back to Movable "
            "ones, and a claim of pageblock 0 fails (3 free pages < 4 needed).  5.8 "
            "(__rmqueue_fallback()) takes the largest fallback block, the order-1 block at "
            "pfn 6, moves all free pages of pageblock 0 to the Unmovable list anyway and "
            "allocates the smallest of them, pfn 5.  6.12 (__rmqueue_claim() then "
            "__rmqueue_steal()) steals the smallest suitable block, the single page at pfn "
            "15, and leaves pageblock 0's free pages on the Movable list.")


fallback_pfn = ValueExercise(
    "10.fallback_pfn",
    "Every page is movable except the free pfns 5, 6, 7 and 15.  Which pfn does "
    "alloc_pages(0, GFP_KERNEL) return: (on 5.8, on 6.12)?",
    _fallback, _explain_fallback, _pair(_pfn, "pfns"),
    hints=PairHints(_fallback, ({15: "5.8 goes for the largest fallback block first.",
                                 6: "the order-1 block at 6 moved to the Unmovable list "
                                    "together with pfn 5; the allocation then takes the "
                                    "smallest block there."},
                                {5: "6.12 claims only when the claim succeeds; otherwise "
                                    "it steals the smallest block that fits.",
                                 6: "6.12 steals the smallest suitable block."})))


# -- 10.same_story: one scenario on both kernels ----------------------------------------------
@lru_cache(maxsize=2)        # run once per kernel; the notebook and the checker share it
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


@lru_cache(maxsize=2)
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
    """The scenario's rows for both kernels; ``mark`` flags the rows that differ."""
    a, b = (scenario_rows(k) for k in KERNELS)
    lines = [f"{'row':<16}{'':<31}{'5.8':>18}   6.12"]
    for key, label in ROWS.items():
        flag = "  <- differs" if mark and a[key] != b[key] else ""
        lines.append(f"{key:<16}{label:<31}{a[key]:>18}   {b[key]:<18}{flag}".rstrip())
    return "\n".join(lines)


class RowSet(frozenset):
    """A set of row names that prints in a fixed (sorted) order."""

    def __repr__(self) -> str:
        return "{" + ", ".join(map(repr, sorted(self))) + "}"

    __str__ = __repr__


def _differ() -> RowSet:
    a, b = (scenario_rows(k) for k in KERNELS)
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
    a = scenario_rows("5.8")
    b = scenario_rows("6.12")
    return (f"Rows that differ: {', '.join(sorted(truth))}.\n"
            f"Both kernels plug the same {a['grown']} with {a['plug_requests']} requests (one "
            "per 128 MiB memory block) and both get stuck in ZONE_NORMAL, where unmovable "
            f"kernel pages cannot be migrated: {a['shrunk']} on 5.8, {b['shrunk']} on 6.12, "
            f"last rc {a['last_rc']} in both, so both retry on a timer.  6.12 sends about "
            f"twice the UNPLUG requests ({b['unplug_requests']} vs {a['unplug_requests']}) "
            "because each covers a 2 MiB subblock, not 4 MiB; the finer grain frees only a "
            "little more, because grouping by mobility already packs unmovable pages into "
            "few pageblocks.  The states spell the same thing in each release's names.")


same_story = ValueExercise(
    "10.same_story",
    "Run scenario() on 5.8 and on 6.12.  Which rows of the side-by-side table differ?",
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
                           "states": "5.8 and 6.12 name the states of online blocks "
                                     "differently.",
                           "shrunk": "finer subblocks waste less around each unmovable "
                                     "page."}))
