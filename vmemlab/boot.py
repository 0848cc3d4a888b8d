"""Booting a guest: the firmware memory map, memblock, zones, and the first free.

An x86-64 guest of QEMU's q35 machine sees its RAM split around the PCI
hole: with less than 2.75 GiB everything sits below 4 GiB (so a 1 GiB guest
has no ZONE_NORMAL at boot); with 2.75 GiB or more, the first 2 GiB stay low
and the rest goes above 4 GiB.  SeaBIOS reports the map as e820 entries.
Linux then

1. builds memblock.memory from the usable entries, dropping page 0
   (trim_bios_range());
2. reserves early memory that becomes PageReserved: the first 1 MiB, the
   kernel image at 16 MiB, the memmap (64 bytes per page, allocated
   top-down from the end of memory), and a 64 MiB swiotlb bounce buffer below
   4 GiB when RAM reaches above 4 GiB;
3. sets zone spans from the zone limits (DMA below 16 MiB, DMA32 below
   4 GiB, Normal above), marks every pageblock MOVABLE
   (memmap_init_range()), and frees all unreserved memory to the buddy
   allocator in the largest aligned chunks, to list tails
   (memblock_free_all()).

The "flat" layout of the teaching geometry is one Normal zone from pfn 0
with nothing reserved.  Assumed sizes are named in docs/glossary.md.

Kernel: arch/x86/kernel/e820.c, arch/x86/kernel/setup.c, mm/mm_init.c,
mm/memblock.c; QEMU hw/i386/pc_q35.c (pc_q35_init lowmem split)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .bulk import free_blocks_bulk
from .constants import MIGRATE_TYPES, Geometry, GiB, KiB, MiB, MigrateType, PageState, ZoneType

if TYPE_CHECKING:
    from .node import Node

KERNEL_LOAD_ADDR = 16 * MiB      # CONFIG_PHYSICAL_START
KERNEL_IMAGE_SIZE = 32 * MiB     # _text.._end of a distribution kernel, approximately
SWIOTLB_SIZE = 64 * MiB          # IO_TLB_DEFAULT_SIZE
SEABIOS_HIGH_RESERVED = 144 * KiB  # top of low RAM that SeaBIOS keeps for its tables
STRUCT_PAGE_SIZE = 64            # sizeof(struct page)
Q35_MMIO_RESERVED = ((0xB000_0000, 0xC000_0000), (0xFED1_C000, 0xFED2_0000),
                     (0xFEFF_C000, 0xFF00_0000), (0xFFFC_0000, 0x1_0000_0000))


@dataclass(frozen=True)
class E820Entry:
    """One range of the firmware memory map, [start, end) in bytes."""

    start: int
    end: int
    type: str

    def __str__(self) -> str:
        return f"BIOS-e820: [mem {self.start:#018x}-{self.end - 1:#018x}] {self.type}"


@dataclass(frozen=True)
class Reservation:
    """An early (memblock) allocation, [start_pfn, end_pfn): PageReserved forever."""

    start_pfn: int
    end_pfn: int
    name: str


@dataclass
class BootLayout:
    """The machine's physical memory at boot."""

    e820: list[E820Entry]
    memory: list[tuple[int, int]]          # memblock.memory, in pfns
    reserved: list[Reservation] = field(default_factory=list)
    zone_limits: tuple[int, int] = (0, 0)  # DMA end pfn, DMA32 end pfn
    below_4g: int = 0
    above_4g: int = 0

    @property
    def end_pfn(self) -> int:
        return max(end for _, end in self.memory)

    def dmesg(self) -> str:
        """The e820 lines a guest prints at boot."""
        return "\n".join(str(e) for e in self.e820)


def q35_layout(geo: Geometry, boot_memory: int) -> BootLayout:
    """The RAM layout QEMU's q35 machine and SeaBIOS give a guest.

    Kernel/QEMU: hw/i386/pc_q35.c pc_q35_init(); arch/x86/kernel/e820.c
    """
    lowmem = 2 * GiB if boot_memory >= 0xB000_0000 else 0xB000_0000
    below = min(boot_memory, lowmem)
    above = boot_memory - below
    top_low = below - SEABIOS_HIGH_RESERVED
    e820 = [E820Entry(0, 0x9FC00, "usable"), E820Entry(0x9FC00, 0xA0000, "reserved"),
            E820Entry(0xF0000, 0x100000, "reserved"), E820Entry(0x100000, top_low, "usable"),
            E820Entry(top_low, below, "reserved")]
    e820 += [E820Entry(s, e, "reserved") for s, e in Q35_MMIO_RESERVED]
    if above:
        e820.append(E820Entry(4 * GiB, 4 * GiB + above, "usable"))
    shift = geo.page_shift
    memory = [(1, 0x9FC00 >> shift), (0x100000 >> shift, top_low >> shift)]
    if above:
        memory.append((4 * GiB >> shift, (4 * GiB + above) >> shift))
    layout = BootLayout(e820, memory, zone_limits=(geo.dma_end_pfn, geo.dma32_end_pfn),
                        below_4g=below, above_4g=above)
    layout.reserved = _q35_reservations(geo, layout)
    return layout


def _q35_reservations(geo: Geometry, layout: BootLayout) -> list[Reservation]:
    shift = geo.page_shift
    res = [Reservation(0, MiB >> shift, "first 1 MiB (x86 always reserves it)"),
           Reservation(KERNEL_LOAD_ADDR >> shift,
                       (KERNEL_LOAD_ADDR + KERNEL_IMAGE_SIZE) >> shift, "kernel image")]
    memmap_pages = _boot_memmap_pages(geo, layout.memory)
    end = layout.end_pfn
    res.append(Reservation(end - memmap_pages, end, "memmap (struct pages)"))
    if layout.above_4g:
        low_end = layout.memory[1][1]
        swiotlb = SWIOTLB_SIZE >> shift
        res.append(Reservation(low_end - swiotlb, low_end, "swiotlb bounce buffer"))
    return res


def _boot_memmap_pages(geo: Geometry, memory: list[tuple[int, int]]) -> int:
    """Pages of struct page for every section that has memory (sparse_init())."""
    per_section = geo.pages_per_section
    sections = set()
    for start, end in memory:
        sections.update(range(start // per_section, -(-end // per_section)))
    return len(sections) * per_section * STRUCT_PAGE_SIZE >> geo.page_shift


def flat_layout(geo: Geometry, boot_memory: int) -> BootLayout:
    """One zone of RAM from pfn 0, nothing reserved (the teaching preset)."""
    nr = geo.bytes_to_pages(boot_memory, "boot_memory")
    return BootLayout([E820Entry(0, boot_memory, "usable")], [(0, nr)],
                      zone_limits=(geo.dma_end_pfn, geo.dma32_end_pfn))


def boot_layout(geo: Geometry, boot_memory: int) -> BootLayout:
    """The layout for ``geo.layout``; ``boot_memory`` must be whole pageblocks."""
    unit = geo.page_size << geo.pageblock_order
    if boot_memory <= 0 or boot_memory % unit:
        raise ValueError(f"boot_memory={boot_memory} must be a positive multiple of "
                         f"the pageblock size ({unit} bytes)")
    if geo.layout == "q35":
        if boot_memory < 64 * MiB:
            raise ValueError(f"boot_memory={boot_memory} is too small for an x86-64 "
                             "guest (at least 64 MiB)")
        return q35_layout(geo, boot_memory)
    return flat_layout(geo, boot_memory)


def free_area_init(node: Node, layout: BootLayout) -> None:
    """Give each zone its span and present pages; mark pages and pageblocks.

    Kernel: mm/mm_init.c, free_area_init(), zone_spanned_pages_in_node(),
    memmap_init_range()
    """
    mm = node.mm
    node_start = min(s for s, _ in layout.memory)
    node_end = layout.end_pfn
    for start, end in layout.memory:
        mm.mark_offline(start, end)  # a memmap exists; pages come alive below
        mm.set_section_online(start, end, True)
    dma_end, dma32_end = layout.zone_limits
    limits = {ZoneType.DMA: (0, dma_end), ZoneType.DMA32: (dma_end, dma32_end),
              ZoneType.NORMAL: (max(dma32_end, 0), node_end)}
    present = mm.state != PageState.ABSENT
    for zid, (lo, hi) in limits.items():
        lo, hi = max(lo, node_start), min(hi, node_end)
        if lo >= hi:
            continue
        zone = node.zone(zid)
        zone.zone_start_pfn, zone.spanned_pages = lo, hi - lo
        zone.present_pages = int(np.count_nonzero(present[lo:hi]))
        zone.present_early_pages = zone.present_pages
        mm.set_zone(lo >> node.geo.pageblock_order << node.geo.pageblock_order,
                    -(-hi >> node.geo.pageblock_order) << node.geo.pageblock_order, zid)
    build_all_zonelists(node)
    mm.pb_mt[:] = mm.pageblock_type(MigrateType.MOVABLE)


def build_all_zonelists(node: Node) -> None:
    """Switch grouping by mobility off on a machine too small for it.

    Below pageblock_nr_pages * MIGRATE_TYPES pages (10 MiB on x86-64, 40
    pages on the teaching geometry) grouping cannot help.  The kernel counts
    the pages the zonelists can reach; vmemlab counts present pages.
    Kernel: mm/page_alloc.c, build_all_zonelists()
    """
    total = sum(z.present_pages for z in node.zones)
    if total < node.geo.pageblock_nr_pages * MIGRATE_TYPES:
        node.page_group_by_mobility_disabled = True
    node.mm.mobility_disabled = node.page_group_by_mobility_disabled


def memblock_free_all(node: Node, layout: BootLayout) -> None:
    """Reserve early allocations, then free all other memory to the buddy allocator.

    Memory is freed in the largest naturally aligned chunks, in ascending
    address order, each to the tail of its list (FPI_TO_TAIL).

    Kernel: mm/memblock.c, memblock_free_all(), __free_pages_memory();
    mm/mm_init.c, reserve_bootmem_region()
    """
    mm = node.mm
    for r in layout.reserved:
        for start, end in _intersect([(r.start_pfn, r.end_pfn)], layout.memory):
            mm.mark_reserved(start, end)
    for zone in node.zones:
        if zone.present_pages:
            s, e = zone.zone_start_pfn, zone.zone_end_pfn
            zone.managed_pages = zone.present_pages - int(
                np.count_nonzero(mm.state[s:e] == PageState.RESERVED))
    reserved = sorted((r.start_pfn, r.end_pfn) for r in layout.reserved)
    for start, end in _subtract(layout.memory, reserved):
        free_range(node, start, end)


def _intersect(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Pairwise overlaps of two lists of half-open ranges."""
    return [(max(s1, s2), min(e1, e2)) for s1, e1 in a for s2, e2 in b
            if max(s1, s2) < min(e1, e2)]


def _subtract(ranges: list[tuple[int, int]], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``ranges`` minus the sorted ``holes``: for_each_free_mem_range()."""
    out = []
    for start, end in ranges:
        for hs, he in holes:
            if he <= start or hs >= end:
                continue
            if hs > start:
                out.append((start, hs))
            start = max(start, he)
        if start < end:
            out.append((start, end))
    return out


def free_range(node: Node, start: int, end: int, to_tail: bool = True) -> None:
    """Free [start, end) in the largest aligned chunks that fit.

    Kernel: mm/memblock.c, __free_pages_memory()
    """
    max_order = node.geo.max_page_order
    node.mm.mark_free(start, end)
    heads, orders = [], []
    while start < end:
        order = max_order if start == 0 else min(max_order, (start & -start).bit_length() - 1)
        while start + (1 << order) > end:
            order -= 1
        heads.append(start)
        orders.append(order)
        start += 1 << order
    free_blocks_bulk(node, heads, orders, to_tail=to_tail)  # free_pages_ok() for each
