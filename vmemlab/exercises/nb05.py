"""Exercises of notebook 05, memory hotplug, on small x86-64 guests.

Memory blocks are 128 MiB, as on any x86-64 guest with less than 64 GiB
of boot memory.  Every answer, and every explanation, comes from
running the model: plugging DIMMs, onlining and offlining blocks.
"""

from __future__ import annotations

from functools import cache

import vmemlab as vm
from vmemlab.constants import ZoneType

from . import Case, FunctionExercise, ValueExercise
from .answers import Rc, errno_rc, whole_number

MEM = "/sys/devices/system/memory"
BLOCK = 128 * vm.MiB


def fresh_machine() -> vm.Machine:
    """The notebook's 2 GiB guest, just booted, for your own experiments."""
    return vm.Machine(boot_memory=2 * vm.GiB, seed=0)


def where(m: vm.Machine, act: object, zones: bool = False) -> dict[str, int]:
    """How many of an activity's pages sit in each memory block (and its zone)."""
    pages = act.pages()
    counts = {}
    for blk in m.memory_blocks:
        n = int(((pages >= blk.start_pfn) & (pages < blk.end_pfn)).sum())
        if n:
            counts[f"memory{blk.id} ({blk.valid_zones})" if zones else f"memory{blk.id}"] = n
    return counts


def dimm_zones(m: vm.Machine, dimm: object) -> set[str]:
    """The zones of a DIMM's memory blocks, as valid_zones prints them."""
    return {b.valid_zones for b in m.memory_blocks if b.group == dimm.name}


def kernel_early_pages(m: vm.Machine) -> int:
    """Present pages of the kernel zones at boot: what auto-movable measures against."""
    return sum(z.present_early_pages for z in m.node.zones if z.idx != ZoneType.MOVABLE)


_count = whole_number("the answer", out_of_range="the answer cannot be negative")


# -- 05.memmap_kb -------------------------------------------------------------
@cache
def _memmap_run() -> tuple[int, int, int, str, int]:
    m = vm.Machine(boot_memory=2 * vm.GiB, auto_online_blocks="offline", seed=0)
    free, total = m.proc.meminfo_kb("MemFree"), m.proc.meminfo_kb("MemTotal")
    m.add_dimm(1 * vm.GiB)
    memmap = next(line for line in m.proc.vmstat().splitlines()
                  if line.startswith("nr_memmap_pages "))
    return (free - m.proc.meminfo_kb("MemFree"), total, m.proc.meminfo_kb("MemTotal"), memmap,
            m.node.geo.page_size // vm.KiB)


def _explain_memmap(drop: int) -> str:
    _, total0, total1, memmap, page_kb = _memmap_run()
    memmap_kb = int(memmap.split()[1]) * page_kb
    return (f"Adding 1 GiB allocates its memmap at once, before any block is online: one "
            "64-byte struct page per 4 KiB page, 262144 pages x 64 bytes = 16 MiB, i.e. "
            "2 MiB per 128 MiB section, allocated with GFP_KERNEL from the memory the guest "
            "already has (vmemmap_populate(), mm/sparse-vmemmap.c); vmstat says "
            f"'{memmap}'. {_beyond_memmap(drop, memmap_kb)}MemFree drops by {drop} kB. "
            f"MemTotal stays {total1} kB (it was {total0} kB): offline memory is not counted "
            "until it is onlined.")


def _beyond_memmap(drop: int, memmap_kb: int) -> str:
    """The part of the drop that is not the memmap: the new blocks' kernel objects."""
    rest = drop - memmap_kb
    if rest <= 0:
        return ""
    return (f"The other {rest} kB are slab for the new blocks' kernel objects (struct "
            "memory_block, its sysfs files, the section's usage map and the resource; "
            "create_memory_block_devices(), sparse_add_section()). ")


memmap_kb = ValueExercise(
    "05.memmap_kb",
    "A 2 GiB guest with auto_online_blocks=offline gets a 1 GiB DIMM. By how many kB "
    "does MemFree drop?",
    lambda: _memmap_run()[0], _explain_memmap, _count,
    hints={0: "The blocks stay offline, but adding memory already costs something: the "
              "struct pages that describe it.",
           1048576: "Offline memory is not in MemFree at all; the question is what adding "
                    "it costs the memory you already have.",
           16: "That is the memmap in MiB; the question asks for kB.",
           2048: "2 MiB is the memmap of one 128 MiB block; a 1 GiB DIMM has 8.",
           16384: "That is the memmap alone. Adding memory also creates kernel objects for "
                  "each new memory block (its device, its sysfs files); they come from the "
                  "slab, a few pages more."})


# -- 05.auto_movable_count ----------------------------------------------------
def _auto_movable_run() -> tuple[list[str], int]:
    m = vm.Machine(boot_memory=1 * vm.GiB, online_policy="auto-movable", seed=0)
    zones = []
    for _ in range(5):
        d = m.add_dimm(1 * vm.GiB)
        zones.append("/".join(sorted(dimm_zones(m, d))))
    return zones, kernel_early_pages(m)


def _explain_auto_movable(n: int) -> str:
    zones, early = _auto_movable_run()
    limit = 301 * early // 100
    return (f"The DIMMs went to {', '.join(zones)}. auto-movable onlines a DIMM to "
            "ZONE_MOVABLE only if all of ZONE_MOVABLE stays within auto_movable_ratio "
            "(301%) of the kernel zones' present pages at boot "
            "(auto_movable_can_online_movable(), mm/memory_hotplug.c). Boot memory here is "
            f"{early} present pages (a little under 1 GiB: holes and the BIOS area are not "
            f"present), so ZONE_MOVABLE may hold {limit} pages: three 1 GiB DIMMs "
            f"({3 * 262144} pages) fit, a fourth would not. Hotplugged kernel memory does not "
            f"raise the limit, so every later DIMM goes to ZONE_NORMAL: {n} Movable.")


auto_movable_count = ValueExercise(
    "05.auto_movable_count",
    "A 1 GiB guest with online_policy=auto-movable gets five 1 GiB DIMMs, one after the "
    "other. How many of them are onlined to ZONE_MOVABLE?",
    lambda: sum(z == "Movable" for z in _auto_movable_run()[0]), _explain_auto_movable,
    _count,
    hints={5: "auto-movable has a limit: ZONE_MOVABLE may be at most 301% of the boot "
              "kernel memory.",
           0: "auto-movable does put hotplugged memory in ZONE_MOVABLE, up to a limit.",
           4: "The kernel-side count is present pages, which are a little less than 1 GiB; "
              "3.01 x that is less than 4 GiB.",
           1: "The ratio is 301%, not 100%."})


# -- 05.goes_movable ------------------------------------------------------------
@cache
def _movable_cases() -> tuple[Case, ...]:
    cases = []
    for boot in (512 * vm.MiB, 1 * vm.GiB, 2 * vm.GiB):
        for ratio in (301, 100):
            m = vm.Machine(boot_memory=boot, online_policy="auto-movable",
                           auto_movable_ratio=ratio, seed=0)
            early = kernel_early_pages(m)
            for size in (boot, boot, 256 * vm.MiB, boot, BLOCK):
                movable = m.zones["Movable"].present
                d = m.add_dimm(size)
                cases.append(Case((early, movable, size >> 12, ratio),
                                  dimm_zones(m, d) == {"Movable"}))
    return tuple(cases)


goes_movable = FunctionExercise(
    "05.goes_movable",
    "Write goes_movable(kernel_early_pages, movable_pages, dimm_pages, ratio): does the "
    "auto-movable policy online a new DIMM of dimm_pages pages to ZONE_MOVABLE?",
    "goes_movable", _movable_cases,
    lambda case: ("auto_movable_can_online_movable() (mm/memory_hotplug.c) allows ZONE_MOVABLE "
                  "when movable pages plus the new ones stay at or below ratio percent of the "
                  "boot kernel pages: "
                  f"{case.args[1]} + {case.args[2]} vs {case.args[3]} * {case.args[0]} // 100 "
                  f"= {case.args[3] * case.args[0] // 100}."),
    "return movable_pages + dimm_pages <= ratio * kernel_early_pages // 100")


# -- 05.offline_movable_rc ------------------------------------------------------
def offline_machine() -> tuple[vm.Machine, object]:
    """A 2 GiB guest with a 256 MiB DIMM: memory32 in ZONE_NORMAL, memory33 in
    ZONE_MOVABLE; 64 MiB of anonymous memory and 64 KiB of slab."""
    m = vm.Machine(boot_memory=2 * vm.GiB, auto_online_blocks="offline", seed=0)
    m.add_dimm(2 * BLOCK)
    m.online_memory_block(32, "online_kernel")
    m.online_memory_block(33, "online_movable")
    anon = m.activity("anon", size=64 * vm.MiB)
    m.activity("slab", size=64 * vm.KiB)
    return m, anon


def _offline_movable() -> Rc:
    m, _ = offline_machine()
    return Rc(m.offline_memory_block(33))


def _explain_offline_movable(rc: Rc) -> str:
    m, anon = offline_machine()
    before = where(m, anon).get("memory33", 0)
    m.offline_memory_block(33)
    return (f"memory33 held {before} pages of anonymous memory. In ZONE_MOVABLE "
            "has_unmovable_pages() (mm/page_isolation.c) refuses only reserved pages and "
            "trusts the rest: only movable allocations may be there. Isolation succeeds, "
            "offline_pages() migrates every page to ZONE_NORMAL or DMA32, and the block goes "
            f"offline: {rc}. Afterwards memory32 holds {where(m, anon).get('memory32', 0)} of "
            "the anonymous pages; the process never noticed.")


offline_movable_rc = ValueExercise(
    "05.offline_movable_rc",
    "memory33 is in ZONE_MOVABLE and holds 64 MiB of a process's anonymous memory; "
    "ZONE_NORMAL and DMA32 have plenty of free memory. What does "
    "echo offline > memory33/state return?",
    _offline_movable, _explain_offline_movable, errno_rc,
    hints={vm.EBUSY: "Pages in use are not a problem as long as they can move, and every "
                     "page in ZONE_MOVABLE can.",
           vm.ENOMEM: "There is plenty of free memory outside memory33 to migrate to."})


# -- 05.offline_pinned_rc -------------------------------------------------------
def pinned_machine() -> vm.Machine:
    """A 2 GiB guest with a 128 MiB DIMM onlined to ZONE_NORMAL holding 64 KiB of
    long-term pinned memory."""
    m = vm.Machine(boot_memory=2 * vm.GiB, auto_online_blocks="online_kernel", seed=0)
    m.add_dimm(BLOCK)
    m.activity("pin", size="64k")
    return m


def _offline_pinned() -> tuple[Rc, float, str]:
    m = pinned_machine()
    t0 = m.now
    rc = m.offline_memory_block(32, timeout=30)
    return Rc(rc), m.now - t0, m.dmesg()


def _explain_offline_pinned(rc: Rc) -> str:
    _, waited, dmesg = _offline_pinned()
    log = "\n  ".join(dmesg.splitlines()[-3:])
    return ("A pinned anonymous page is still an LRU page, so has_unmovable_pages() accepts "
            "it and isolation succeeds. offline_pages() (mm/memory_hotplug.c) then repeats "
            "'migrate what is movable, test' with no retry limit; migrating a pinned page "
            "fails every time. Only a signal ends the loop: after the 30 s of timeout "
            f"(simulated {waited:.1f} s) it returns {rc}. The kernel log:\n  {log}")


offline_pinned_rc = ValueExercise(
    "05.offline_pinned_rc",
    "memory32 is in ZONE_NORMAL and holds 64 KiB of long-term pinned pages (vfio), "
    "nothing else. What does timeout 30 sh -c 'echo offline > memory32/state' return?",
    lambda: _offline_pinned()[0], _explain_offline_pinned, errno_rc,
    hints={vm.EBUSY: "-EBUSY comes from isolation, which only refuses pages it knows can "
                     "never move. A pinned anonymous page looks movable to it.",
           0: "A pinned page cannot be migrated while the pin is held.",
           vm.ENOMEM: "There is free memory to migrate to; the page itself refuses to move."})
