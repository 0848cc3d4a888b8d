"""Exercises of notebook 01: pages, zones, pageblocks and memory blocks.

Most questions are about the 4 GiB q35 guest the notebook boots; the last
one is about the teaching geometry (8-page pageblocks).  Every answer is
read from a booted machine, never from a table typed in here.
"""

from __future__ import annotations

from functools import cache

import vmemlab as vm
from vmemlab.constants import GiB, PageState

from . import Case, FunctionExercise, ValueExercise

ZONE_NAMES = ("DMA", "DMA32", "Normal", "Movable", "Device")


def machine() -> vm.Machine:
    """The notebook's x86-64 guest: 4 GiB on QEMU's q35 machine, just booted."""
    return vm.Machine(boot_memory=4 * GiB, seed=0)


def fresh_machine() -> vm.Machine:
    """A new copy of the notebook's 4 GiB guest, for your own experiments."""
    return machine()


@cache
def _guest() -> vm.Machine:
    """One booted guest the checkers share and only read."""
    return machine()


def teaching() -> vm.Machine:
    """The notebook's teaching machine: 256 pages (1 MiB), one Normal zone."""
    return vm.Machine(boot_memory=256 * 4096, geometry="teaching", seed=0)


# -- answer forms ----------------------------------------------------------
def _int(x: object, what: str) -> int:
    if isinstance(x, bool) or not isinstance(x, int):
        raise TypeError(f"{what} is a whole number (hex like 0x1000 is fine)")
    if x < 0:
        raise ValueError(f"{what} is never negative")
    return x


def _zone_name(x: object) -> str:
    """A zone name as /proc/zoneinfo spells it, or "none"."""
    if x is None:
        return "none"
    if not isinstance(x, str):
        raise TypeError('a zone is named by a string: "DMA", "DMA32", "Normal", ... '
                        'or "none"')
    for name in (*ZONE_NAMES, "none"):
        if x.strip().lower() in (name.lower(), f"zone_{name.lower()}"):
            return name
    raise ValueError(f"zones are {', '.join(ZONE_NAMES)}; say \"none\" for no zone")


def _range(x: object) -> tuple[int, int]:
    if isinstance(x, (str, bytes)) or not hasattr(x, "__len__") or len(x) != 2:
        raise TypeError("a pfn range is two numbers, (start, end)")
    start, end = (_int(v, "a pfn") for v in x)
    if end <= start:
        raise ValueError("a range [start, end) has end > start")
    return start, end


# -- 01.hole_zone ------------------------------------------------------------
HOLE_ADDR = 3 * GiB


def _hole_zone() -> str:
    m = _guest()
    pfn = m.geometry.phys_to_pfn(HOLE_ADDR)
    if m.node.mm.state[pfn] == PageState.ABSENT:
        return "none"
    return m.node.page_zone(pfn).name


def _explain_hole(answer: str) -> str:
    m = _guest()
    below, above = m.layout.below_4g, m.layout.above_4g
    dma32 = m.zones["DMA32"]
    return (f"QEMU's q35 machine puts only {below >> 30} GiB of the {m.boot_memory >> 30} GiB "
            f"below 4 GiB and the other {above >> 30} GiB above 4 GiB, because "
            f"[2 GiB, 4 GiB) is the PCI hole (MMIO of devices, PCIe config space, firmware). "
            f"No RAM lives at {HOLE_ADDR:#x}, so there is no page there and no zone owns one. "
            f"ZONE_DMA32 *spans* the hole (spanned {dma32.spanned} pages) but only "
            f"{dma32.present} pages are present: spanned counts holes, present does not "
            f"(include/linux/mmzone.h, struct zone).")


hole_zone = ValueExercise(
    "01.hole_zone",
    "In a 4 GiB q35 guest, which zone holds the page at physical address 0xc0000000 "
    "(3 GiB)?",
    _hole_zone, _explain_hole, _zone_name,
    hints={"DMA32": "DMA32 covers addresses below 4 GiB, true, but is there RAM at 3 GiB?",
           "Normal": "Normal starts at 4 GiB on x86-64; 3 GiB is below it."})


# -- 01.normal_start_pfn -----------------------------------------------------
def _normal_start() -> int:
    return _guest().zones["Normal"].start_pfn


def _explain_normal_start(pfn: int) -> str:
    m = _guest()
    return (f"ZONE_NORMAL holds what lies above 4 GiB on x86-64 (arch/x86/mm/init.c, "
            f"zone_sizes_init(): DMA below 16 MiB, DMA32 below 4 GiB). The first RAM above "
            f"the hole is at {m.geometry.pfn_to_phys(pfn):#x} = 4 GiB, and a pfn is the "
            f"address shifted right by PAGE_SHIFT = {m.geometry.page_shift}: "
            f"{4 << 30:#x} >> 12 = {pfn:#x} = {pfn}.")


normal_start_pfn = ValueExercise(
    "01.normal_start_pfn",
    "At which pfn does ZONE_NORMAL start in the 4 GiB guest?",
    _normal_start, _explain_normal_start, lambda x: _int(x, "a pfn"),
    hints={0x80000: "0x80000 is 2 GiB, where RAM below the hole ends; Normal begins at "
                    "the first RAM above 4 GiB.",
           4 * GiB: "That is the physical address; a pfn counts 4 KiB pages.",
           0x1000: "0x1000 (16 MiB) is where DMA32 starts."})


# -- 01.pageblocks_per_block -------------------------------------------------
def _pb_per_block() -> int:
    return _guest().geometry.pageblocks_per_memory_block


def _explain_pb_per_block(n: int) -> str:
    geo = _guest().geometry
    return (f"A memory block is {geo.memory_block_size >> 20} MiB "
            f"(/sys/devices/system/memory/block_size_bytes = "
            f"{geo.memory_block_size:x}) and a pageblock is 2**{geo.pageblock_order} pages "
            f"= {geo.pageblock_nr_pages << geo.page_shift >> 20} MiB "
            f"(include/linux/pageblock-flags.h), so {n} pageblocks per memory block.")


pageblocks_per_block = ValueExercise(
    "01.pageblocks_per_block",
    "How many pageblocks fit in one memory block of an x86-64 guest?",
    _pb_per_block, _explain_pb_per_block, lambda x: _int(x, "a count"),
    hints={32: "32 is the number of order-10 (4 MiB) buddy blocks; a pageblock is order 9.",
           32768: "32768 is the number of pages in a memory block.",
           128: "128 MiB / 1 MiB; a pageblock is 2 MiB on x86-64."})


# -- 01.first_high_block -----------------------------------------------------
def _first_high_block() -> int:
    m = _guest()
    normal = m.zones["Normal"].start_pfn
    return min(b.id for b in m.memory_blocks if b.start_pfn >= normal)


def _explain_first_high_block(bid: int) -> str:
    m = _guest()
    low = [b.id for b in m.memory_blocks if b.end_pfn <= m.zones["Normal"].start_pfn]
    return (f"A memory block's number is its physical address divided by the block size "
            f"(drivers/base/memory.c: memory_block_id() of the block's first section; "
            f"phys_index prints it in hex). Blocks memory{low[0]}..memory{low[-1]} cover "
            f"the RAM below the hole; [2 GiB, 4 GiB) has no RAM, so memory{low[-1] + 1} to "
            f"memory{bid - 1} do not exist, and the block at 4 GiB is memory{bid} "
            f"(4 GiB / 128 MiB = {bid}).")


first_high_block = ValueExercise(
    "01.first_high_block",
    "In /sys/devices/system/memory of the 4 GiB guest, what is N in the name memoryN of "
    "the first memory block above 4 GiB?",
    _first_high_block, _explain_first_high_block, lambda x: _int(x, "a block number"),
    hints={16: "Block numbers are not a count of blocks: they come from physical addresses, "
               "and the PCI hole has none.",
           31: "Off by one: block N starts at N x 128 MiB, so the block at 4 GiB is "
               "4 GiB / 128 MiB."})


# -- 01.memory_block_id ------------------------------------------------------
def _block_cases() -> list[Case]:
    m = _guest()
    cases = []
    for b in m.memory_blocks[::5] + m.memory_blocks[-1:]:
        for pfn in (b.start_pfn, b.start_pfn + 12345, b.end_pfn - 1):
            cases.append(Case((pfn,), b.id))
    return cases


def _explain_block_id(case: Case) -> str:
    geo = _guest().geometry
    return (f"pfn {case.args[0]:#x} is at physical address "
            f"{geo.pfn_to_phys(case.args[0]):#x}; memory blocks are "
            f"{geo.memory_block_size >> 20} MiB = {geo.pages_per_memory_block} pages, "
            f"numbered from physical address 0 (drivers/base/memory.c, "
            f"pfn_to_block_id()).")


memory_block_id = FunctionExercise(
    "01.memory_block_id",
    "Write memory_block_id(pfn): the N of the memoryN directory holding a pfn (x86-64).",
    "memory_block_id", _block_cases, _explain_block_id,
    "return pfn >> 15   # 128 MiB blocks hold 2**15 pages of 4 KiB")


# -- 01.teach_pageblock ------------------------------------------------------
TEACH_PFN = 37


def _teach_pageblock() -> tuple[int, int]:
    m = teaching()
    per = m.geometry.pageblock_nr_pages
    start = m.node.mm.pageblock(TEACH_PFN) * per
    return start, start + per


def _explain_teach_pageblock(rng: tuple[int, int]) -> str:
    geo = teaching().geometry
    return (f"Pageblocks are naturally aligned runs of 2**{geo.pageblock_order} = "
            f"{geo.pageblock_nr_pages} pages on the teaching geometry: pageblock "
            f"{TEACH_PFN} >> {geo.pageblock_order} = {TEACH_PFN >> geo.pageblock_order} "
            f"starts at pfn {rng[0]} (pageblock_start_pfn() rounds down) and the half-open "
            f"range [{rng[0]}, {rng[1]}) stops before the next pageblock.")


teach_pageblock = ValueExercise(
    "01.teach_pageblock",
    "On the teaching geometry, which pfns does the pageblock holding pfn 37 cover? "
    "Answer a half-open range (start, end).",
    _teach_pageblock, _explain_teach_pageblock, _range,
    hints={(32, 39): "vmemlab (and the kernel) use half-open ranges: end is the first pfn "
                     "*after* the range.",
           (37, 45): "Pageblocks are aligned: they start at a multiple of their size.",
           (36, 44): "Pageblocks are aligned to 8 pages, not 4.",
           (32, 48): "That is a whole order-4 buddy block (16 pages); a pageblock here "
                     "is 8."})
