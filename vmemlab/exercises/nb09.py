"""Exercises of notebook 09, virtio-mem vs virtio-balloon.

Two kinds of machine.  The x86-64 guest of the notebook: 2 GiB of boot
RAM (all of it below 4 GiB, so in ZONE_DMA32 and ZONE_DMA) plus a 2 GiB
virtio-mem device, fully plugged and onlined to ZONE_MOVABLE, then 3 GiB of
file reads of which a seeded half is dropped again.  And tiny teaching
machines (8-page pageblocks, 64-page memory blocks) where every balloon page
shows in a page map.  The notebook builds each machine with the same calls
as the functions here; every answer and every explanation comes from
running the model.
"""

from __future__ import annotations

from functools import cache

import numpy as np

import vmemlab as vm
from vmemlab.constants import format_size

from . import Case, FunctionExercise, ValueExercise
from .answers import whole_number

PAGE = 4096
GUEST_BOOT = 2 * vm.GiB
VMEM_SIZE = 2 * vm.GiB
GIVE_BACK = 512 * vm.MiB
TEACH_PAGES = 256
BALLOON_TEACH = 24


# -- helpers the notebook calls ------------------------------------------------
def meminfo(m: vm.Machine, *fields: str) -> str:
    """The lines of /proc/meminfo for ``fields``, exactly as the kernel prints them."""
    lines = m.proc.meminfo().splitlines(keepends=True)
    return "".join(line for f in fields for line in lines if line.split(":")[0] == f)


def balloon_zones(m: vm.Machine) -> dict[str, int]:
    """Pages in the balloon per zone (zones with memory only)."""
    pfns = np.array(m.balloon.pages if m.balloon else [], np.int64)
    return {z.name: int(((pfns >= z.start_pfn) & (pfns < z.end_pfn)).sum())
            for z in m.zones.values() if z.present}


def zone_table(m: vm.Machine) -> str:
    """Free and ballooned pages per zone, one line each."""
    inb = balloon_zones(m)
    rows = [f"{'zone':<8}{'free pages':>12}{'in balloon':>12}"]
    rows += [f"{name:<8}{m.zones[name].free:>12}{n:>12}" for name, n in inb.items()]
    return "\n".join(rows) + "\n"


def guest(trace: bool = False) -> vm.Machine:
    """The notebook's x86-64 guest, built with the notebook's calls.

    2 GiB boot RAM, a 2 GiB virtio-mem device plugged and onlined to
    ZONE_MOVABLE, 3 GiB of file reads with a seeded half dropped.
    """
    m = vm.Machine(boot_memory=GUEST_BOOT, auto_online_blocks="online_movable", seed=0,
                   trace=trace)
    m.add_virtio_mem(region_size=VMEM_SIZE, requested_size=VMEM_SIZE)
    m.settle()
    cache = m.activity("page_cache", size=3 * vm.GiB)
    cache.release(fraction=0.5)
    return m


def fresh_machine() -> vm.Machine:
    """Section 2's guest again, traced, without a balloon: for your own experiments."""
    return guest(trace=True)


def teaching(**kw) -> vm.Machine:
    """A flat 256-page teaching machine: one Normal zone."""
    return vm.Machine(boot_memory=TEACH_PAGES * PAGE, geometry="teaching", seed=0, **kw)


def balloon_guest(compaction: bool) -> tuple[vm.Machine, object, object]:
    """The notebook's teaching guest for balloon compaction: (machine, device, balloon).

    Anonymous memory fills the boot memory but 8 pages; a 256-page
    virtio-mem device is plugged (ZONE_NORMAL: the default policy); the
    balloon takes 24 pages, most of them from the device's memory; then
    half of the anonymous memory is freed.
    """
    m = teaching()
    anon = m.activity("anon", size=(m.zones["Normal"].free - 8) * PAGE)
    dev = m.add_virtio_mem(region_size=TEACH_PAGES * PAGE, requested_size=TEACH_PAGES * PAGE)
    m.settle()
    b = m.add_virtio_balloon(compaction=compaction)
    b.set_num_pages(BALLOON_TEACH)
    m.settle()
    anon.release(fraction=0.5)
    return m, dev, b


# -- answer forms ----------------------------------------------------------------
_count = whole_number("the answer", out_of_range="the answer cannot be negative")


ZONE_NAMES = ("DMA", "DMA32", "Normal", "Movable")


def _zone(x: object) -> str:
    if not isinstance(x, str):
        raise TypeError(f"name the zone as a string, one of {', '.join(ZONE_NAMES)}")
    for name in ZONE_NAMES:
        if name.lower() == x.strip().lower():
            return name
    raise ValueError(f"the zones of an x86-64 guest are {', '.join(ZONE_NAMES)}")


def _pair(x: object) -> tuple[int, int]:
    if not isinstance(x, (tuple, list)) or len(x) != 2:
        raise TypeError("give two numbers: (split, returned)")
    return _count(x[0]), _count(x[1])


# -- 09.memtotal_drop --------------------------------------------------------------
SMALL_BOOT = 1 * vm.GiB


@cache
def _memtotal_run() -> tuple[int, int, int, int, str]:
    m = vm.Machine(boot_memory=SMALL_BOOT, seed=0)
    total, free = m.proc.meminfo_kb("MemTotal"), m.proc.meminfo_kb("MemFree")
    b = m.add_virtio_balloon()
    b.set_memory("768M")
    m.settle()
    return (total, m.proc.meminfo_kb("MemTotal"), free - m.proc.meminfo_kb("MemFree"),
            b.num_pages, b.info().strip())


def _explain_memtotal(drop: int) -> str:
    total0, total1, free_drop, num_pages, info = _memtotal_run()
    return (f"'balloon 768' asks the guest to shrink to 768 MiB: QEMU sets num_pages = "
            f"(1024 - 768) MiB / 4 KiB = {num_pages} (virtio_balloon_to_target()). The "
            "driver allocates that many pages and, for each one, calls "
            "adjust_managed_page_count(page, -1) (drivers/virtio/virtio_balloon.c, "
            "fill_balloon(); only a device offering VIRTIO_BALLOON_F_DEFLATE_ON_OOM skips "
            "this). MemTotal is the sum of the zones' managed pages, so it falls from "
            f"{total0} kB to {total1} kB: {drop} kB = {num_pages} pages x 4 kB. MemFree "
            f"falls by {free_drop} kB too: the pages came off the free lists. QEMU's "
            f"'info balloon' now says '{info}'.")


memtotal_drop = ValueExercise(
    "09.memtotal_drop",
    "A fresh 1 GiB guest; the host runs 'balloon 768'. By how many kB does MemTotal "
    "drop once the balloon has inflated?",
    lambda: _memtotal_run()[0] - _memtotal_run()[1], _explain_memtotal, _count,
    hints={0: "A balloon page is no longer counted as the guest's memory: fill_balloon() "
              "takes it out of the zone's managed pages. Only with "
              "VIRTIO_BALLOON_F_DEFLATE_ON_OOM would MemTotal stay put.",
           65536: "65536 is the number of 4 KiB pages; /proc/meminfo counts kB.",
           256: "256 is in MiB; /proc/meminfo counts kB.",
           786432: "'balloon 768' is the size the guest should end at, not the size of "
                   "the balloon."})


# -- 09.first_zone ------------------------------------------------------------------
@cache
def _balloon_run() -> tuple[dict[str, int], dict[str, int], str, str]:
    """The notebook's guest, ballooned down by 512 MiB: free before, balloon per zone."""
    m = guest()
    free = {name: z.free for name, z in m.zones.items() if z.present}
    b = m.add_virtio_balloon()
    b.set_memory("1536M")
    m.settle()
    return free, balloon_zones(m), str(m.host_thp_report()), b.info().strip()


def _first_zone() -> str:
    _, inb, _, _ = _balloon_run()
    return max(inb.items(), key=lambda kv: kv[1])[0]


def _explain_first_zone(zone: str) -> str:
    free, inb, _, _ = _balloon_run()
    return ("Balloon pages come from balloon_page_alloc(): alloc_page(GFP_HIGHUSER_MOVABLE | "
            "__GFP_NOMEMALLOC | __GFP_NORETRY | __GFP_NOWARN) with balloon compaction "
            "(mm/balloon_compaction.c). A movable request may use every zone up to "
            "ZONE_MOVABLE, and get_page_from_freelist() walks the zonelist from the highest "
            "of them down: Movable, Normal, DMA32, DMA. Free pages before: "
            + ", ".join(f"{z} {n}" for z, n in free.items())
            + ". ZONE_MOVABLE (the virtio-mem memory) had enough above its low watermark "
            "for the whole balloon, so the allocator never had to look further: balloon "
            "pages per zone " + ", ".join(f"{z} {n}" for z, n in inb.items()) + ". The "
            "balloon does not pick where memory comes from; the page allocator does.")


first_zone = ValueExercise(
    "09.first_zone",
    "The host balloons the notebook's guest down by 512 MiB. From which zone does the "
    "page allocator hand the balloon its pages?",
    _first_zone, _explain_first_zone, _zone,
    hints={"DMA32": "All boot memory is in DMA32, but the allocator starts at the highest "
                    "zone the gfp mask allows and works its way down.",
           "Normal": "This guest has no memory in ZONE_NORMAL: its 2 GiB of boot RAM lie "
                     "below 4 GiB (DMA32), and virtio-mem memory was onlined movable.",
           "DMA": "ZONE_DMA (the first 16 MiB) is the last resort of every zonelist."})


# -- 09.thp_virtio_mem ----------------------------------------------------------------
@cache
def _virtio_mem_run() -> tuple[tuple[int, int], str, str]:
    m = guest()
    dev = m.virtio_mem[0]
    dev.requested_size = VMEM_SIZE - GIVE_BACK
    m.settle()
    r = m.host_thp_report()
    blocks = sum(1 for b in m.memory_blocks
                 if dev.addr >> 12 <= b.start_pfn < (dev.addr + VMEM_SIZE) >> 12)
    return (r.split, r.returned), str(r), f"{blocks} memory blocks of the device remain"


def _explain_thp(pair: tuple[int, int]) -> str:
    _, report, blocks = _virtio_mem_run()
    _, _, balloon, _ = _balloon_run()
    return ("virtio-mem unplugs whole device blocks of block-size 2 MiB (QEMU's default: "
            "the host's THP size), each one aligned: exactly one host huge page. The driver "
            "empties the highest memory blocks first (migrating or dropping what is in them), "
            "offlines and removes them, and QEMU discards each unplugged block whole "
            "(virtio_mem_set_block_state() -> ram_block_discard_range()). 512 MiB / 2 MiB = "
            f"256 host huge pages returned, none split: {report}; {blocks}. The balloon "
            f"took the same 512 MiB as scattered 4 KiB pages: {balloon}.")


thp_virtio_mem = ValueExercise(
    "09.thp_virtio_mem",
    "The same guest gives back the same 512 MiB through virtio-mem (requested-size 2 GiB "
    "-> 1.5 GiB). How many 2 MiB host huge pages end up split, and how many returned "
    "whole? Answer (split, returned).",
    lambda: _virtio_mem_run()[0], _explain_thp, _pair,
    hints={(0, 0): "virtio-mem does give memory back: QEMU discards every unplugged block.",
           (256, 0): "A virtio-mem block of 2 MiB is one whole host huge page: it goes back "
                     "whole, it is never cut.",
           (0, 131072): "131072 counts 4 KiB pages; the report counts 2 MiB host pages.",
           (0, 512): "512 MiB in 2 MiB pieces is not 512 pieces."})


# -- 09.stuck_subblocks ----------------------------------------------------------------
@cache
def _stuck_run() -> tuple[int, str, str, int, str]:
    m, dev, b = balloon_guest(compaction=False)
    start = dev.addr >> 12
    before = m.page_map(start, start + 64)
    pb = m.pageblock_map().splitlines()[start // 64]
    dev.requested_size = 0
    m.settle()
    status = "\n".join(dev.driver.status().splitlines()[1:])
    return dev.size // dev.block_size, before, pb, start, status


def _explain_stuck(n: int) -> str:
    _, before, pb, start, status = _stuck_run()
    return (f"The device's first memory block before the unplug:\n{before}"
            f"and its pageblocks: {pb}\n"
            "Without balloon compaction a balloon page comes from GFP_HIGHUSER, an "
            "unmovable request, and has no movable_ops: nobody can migrate it. For "
            "alloc_contig_range() it is an unmovable page (has_unmovable_pages(), "
            "mm/page_isolation.c), so each subblock (one 8-page pageblock here) holding one "
            f"fails with -EBUSY and stays plugged: {n} subblocks ('x' in the map is a balloon "
            "page: PageOffline). A pageblock whose "
            "migratetype is Unmovable but whose pages are all free is no obstacle: "
            "alloc_contig_range() takes free pages whatever the pageblock's type. The "
            f"driver's pass ends with -EBUSY and it waits for its retry timer:\n{status}")


stuck_subblocks = ValueExercise(
    "09.stuck_subblocks",
    "Teaching guest, balloon without compaction. The host sets requested-size to 0. How "
    "many of the device's 8-page subblocks are still plugged when the driver's unplug "
    "pass ends?",
    lambda: _stuck_run()[0], _explain_stuck, _count,
    hints={0: "Without balloon compaction balloon pages cannot move: alloc_contig_range() "
              "fails on every subblock that holds one.",
           4: "Count the subblocks that hold balloon pages. An Unmovable pageblock whose "
              "pages are all free can still be taken.",
           21: "The question counts 8-page subblocks, not pages.",
           24: "Not all 24 balloon pages are in the device's memory, and the question "
               "counts subblocks, not pages.",
           32: "Everything the balloon does not touch can still be unplugged."})


# -- 09.puff_actual -------------------------------------------------------------------
@cache
def _puff_run() -> tuple[int, int, int, int, str]:
    m = teaching()
    m.activity("kernel", size=200 * PAGE)
    z = m.zones["Normal"]
    free, wmin = z.free, z.min
    b = m.add_virtio_balloon()
    b.set_num_pages(100)
    m.run(1.0)
    puffs = [line for line in m.dmesg().splitlines() if "Out of puff" in line]
    return b.actual, free, wmin, b.out_of_puff, puffs[-1]


def _explain_puff(n: int) -> str:
    _, free, wmin, puffs, last = _puff_run()
    return (f"The zone had {free} free pages and a min watermark of {wmin}. fill_balloon() "
            "allocates with __GFP_NORETRY | __GFP_NOMEMALLOC: no OOM killer, no dipping into "
            "reserves, and here nothing to reclaim (kernel pages are neither reclaimable nor "
            f"movable). It gets {n} pages, tells the host about them and keeps them; at the "
            "first failure it logs \"Out of puff!\", sleeps 200 ms (msleep(200)) and "
            f"returns. update_balloon_size_func() requeues itself while the target is not "
            f"reached, so in one second it tried {puffs} times; the last log line: {last}")


puff_actual = ValueExercise(
    "09.puff_actual",
    "Teaching guest with 56 free pages (min watermark 0) and 200 pages of kernel memory. "
    "The host asks for 100 balloon pages. How many pages are in the balloon one second "
    "later?",
    lambda: _puff_run()[0], _explain_puff, _count,
    hints={100: "The balloon can only take pages that are free; it never OOM-kills and "
                "cannot move kernel memory out of the way.",
           0: "fill_balloon() keeps what it got before the first failure: the balloon "
              "makes partial progress.",
           44: "44 is what is missing; the question asks for what is in the balloon."})


# -- 09.to_target (write it) -------------------------------------------------------------
@cache
def _x86(boot: int) -> vm.Machine:
    """A guest whose balloon only ever gets a target (its driver never runs)."""
    return vm.Machine(boot_memory=boot, seed=0)


TARGET_CASES = ((2 * vm.GiB, 1536 * vm.MiB), (2 * vm.GiB, 1 * vm.GiB),
                (1 * vm.GiB, 768 * vm.MiB), (2 * vm.GiB, 2 * vm.GiB),
                (2 * vm.GiB, 3 * vm.GiB), (1 * vm.GiB, 1 * vm.GiB - 1000),
                (2 * vm.GiB, 4096))


def _target_cases() -> list[Case]:
    out = []
    for ram, target in TARGET_CASES:
        m = _x86(ram)
        b = m.balloon or m.add_virtio_balloon()
        b.set_memory(target)
        out.append(Case((ram, target), b.num_pages))
    return out


def _explain_target(case: Case) -> str:
    ram, target = case.args
    return (f"QEMU's virtio_balloon_to_target() (hw/virtio/virtio-balloon.c) first clamps the "
            f"target to the RAM size ({format_size(ram)} here), then sets num_pages = "
            "(ram_size - target) >> VIRTIO_BALLOON_PFN_SHIFT: the difference in 4 KiB "
            "balloon pages, rounded down (the shift is 12 whatever the guest's page size).")


to_target = FunctionExercise(
    "09.to_target",
    "Write balloon_num_pages(ram_size, target): the num_pages QEMU's 'balloon' command "
    "writes into the device's config, both arguments in bytes.",
    "balloon_num_pages", _target_cases, _explain_target,
    "return (ram_size - min(target, ram_size)) >> 12")
