"""Booting a guest: the firmware memory map, memblock, zones, and the first free.

An x86-64 guest of QEMU's q35 machine sees its RAM split around the PCI
hole: with less than 2.75 GiB everything sits below 4 GiB (so a 1 GiB guest
has no ZONE_NORMAL at boot); with 2.75 GiB or more, the first 2 GiB stay low
and the rest goes above 4 GiB.  SeaBIOS reports the map as e820 entries.
Linux then

1. builds memblock.memory from the usable entries, dropping page 0
   (trim_bios_range()), and reserves early memory with memblock
   (vmemlab.memblock: the first 1 MiB, the initrd, the kernel image, the
   memmap, percpu, the printk buffer, hashes, the swiotlb...);
2. sets zone spans from the zone limits (DMA below 16 MiB, DMA32 below
   4 GiB, Normal above) and initialises struct pages (memmap_init()),
   typing a pageblock MOVABLE when its first pfn is memory.  With
   CONFIG_DEFERRED_STRUCT_PAGE_INIT (as Debian builds) only the first
   section of the highest zone is initialised now: the rest waits for
   deferred_init_memmap(), which types only pageblocks whose first pfn is
   free, so pageblocks starting in reserved memory keep type 0, Unmovable;
3. frees all unreserved initialised memory to the buddy allocator in the
   largest aligned chunks, to list tails (memblock_free_all()), and the
   deferred rest later, from a kernel thread (page_alloc_init_late()).

The "flat" layout of the teaching geometry is one Normal zone from pfn 0
with nothing reserved.  Assumed sizes are named in docs/glossary.md.

Kernel: arch/x86/kernel/e820.c, arch/x86/kernel/setup.c, mm/mm_init.c
(memmap_init_range(), defer_init(), deferred_init_memmap(),
deferred_free_pages()), mm/memblock.c; QEMU hw/i386/pc_q35.c (pc_q35_init
lowmem split)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .bulk import free_blocks_bulk
from .constants import MIGRATE_TYPES, Geometry, GiB, KiB, MiB, MigrateType, PageState, ZoneType
from .memblock import (
    BootConfig,
    Memblock,
    Reservation,
    reserve_q35,
    subtract_ranges,
)

if TYPE_CHECKING:
    from .node import Node

# SeaBIOS keeps the top of low RAM for its tables: e820 reserves
# [0x3ffdf000, 0x40000000) on QEMU 7.2's q35 with 1 GiB (the reference VM).
SEABIOS_HIGH_RESERVED = 132 * KiB
Q35_MIN_BOOT_MEMORY = 96 * MiB
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


@dataclass
class BootLayout:
    """The machine's physical memory at boot.

    ``reserved`` holds the memblock reservations of the current boot (they
    move with KASLR); ``first_deferred_pfn`` is where deferred struct page
    initialisation starts (None: everything is initialised at once).
    """

    e820: list[E820Entry]
    memory: list[tuple[int, int]]          # memblock.memory, in pfns
    reserved: list[Reservation] = field(default_factory=list)
    zone_limits: tuple[int, int] = (0, 0)  # DMA end pfn, DMA32 end pfn
    below_4g: int = 0
    above_4g: int = 0
    first_deferred_pfn: int | None = None

    @property
    def end_pfn(self) -> int:
        return max(end for _, end in self.memory)

    def dmesg(self) -> str:
        """The e820 lines a guest prints at boot."""
        return "\n".join(str(e) for e in self.e820)

    def reserved_pages(self, prefix: str) -> int:
        """Pages of reservations whose name starts with ``prefix``."""
        return sum(r.nr_pages for r in self.reserved if r.name.startswith(prefix))


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
    layout.first_deferred_pfn = first_deferred_pfn(geo, layout)
    return layout


def q35_reserve(geo: Geometry, layout: BootLayout, config: BootConfig,
                max_possible_pfn: int, rng: np.random.Generator) -> None:
    """Make this boot's memblock reservations (they differ per boot with KASLR)."""
    mb = Memblock(list(layout.memory))
    reserve_q35(mb, geo, config, layout.below_4g, max_possible_pfn, rng)
    layout.reserved = sorted(mb.reserved, key=lambda r: r.start_pfn)


def first_deferred_pfn(geo: Geometry, layout: BootLayout) -> int | None:
    """Where CONFIG_DEFERRED_STRUCT_PAGE_INIT stops memmap_init(), or None.

    Only the zone that ends the node defers, after its first section: at
    the first section boundary once more than PAGES_PER_SECTION of its
    pages were initialised.  Kernel: mm/mm_init.c, defer_init()
    """
    per = geo.pages_per_section
    node_end = layout.end_pfn
    dma_end, dma32_end = layout.zone_limits
    zone_start = max((b for b in (dma_end, dma32_end) if b < node_end), default=0)
    seen = 0
    for start, end in layout.memory:
        start = max(start, zone_start)
        if start >= end:
            continue
        pfn = -(-max(start, start + per - seen) // per) * per
        if pfn < end:
            return pfn
        seen += end - start
    return None


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
        if boot_memory < Q35_MIN_BOOT_MEMORY:
            raise ValueError(f"boot_memory={boot_memory} is too small for an x86-64 "
                             "guest (at least 96 MiB: the kernel image and its boot "
                             "memory need about 70 MiB)")
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
        # A memmap exists; memblock_free_all() marks every page reserved or free.
        mm.set_section_online(start, end, True)
    dma_end, dma32_end = layout.zone_limits
    limits = {ZoneType.DMA: (0, dma_end), ZoneType.DMA32: (dma_end, dma32_end),
              ZoneType.NORMAL: (max(dma32_end, 0), node_end)}
    for zid, (lo, hi) in limits.items():
        lo, hi = max(lo, node_start), min(hi, node_end)
        if lo >= hi:
            continue
        zone = node.zone(zid)
        zone.zone_start_pfn, zone.spanned_pages = lo, hi - lo
        zone.present_pages = pages_within(layout.memory, lo, hi)
        zone.present_early_pages = zone.present_pages
        mm.set_zone(lo >> node.geo.pageblock_order << node.geo.pageblock_order,
                    -(-hi >> node.geo.pageblock_order) << node.geo.pageblock_order, zid)
    build_all_zonelists(node)
    memmap_init_pageblocks(node, layout)


def memmap_init_pageblocks(node: Node, layout: BootLayout) -> None:
    """Type pageblocks as memmap_init() does: MOVABLE where the first pfn is memory.

    The pageblock bitmap starts zeroed (MIGRATE_UNMOVABLE).  memmap_init_range()
    sets MOVABLE at each pageblock-aligned pfn it initialises, so a
    pageblock whose first pfn is a hole (pfn 0 on x86) stays Unmovable, and
    so does every deferred pageblock until deferred_init_memmap() frees its
    first page.  Pageblocks beyond boot memory are typed when memory is
    added there.  Kernel: mm/mm_init.c, memmap_init_range(), defer_init()
    """
    mm, pbo = node.mm, node.geo.pageblock_order
    movable = mm.pageblock_type(MigrateType.MOVABLE)
    mm.pb_mt[:] = movable
    mm.pb_mt[:-(-layout.end_pfn >> pbo)] = mm.pageblock_type(MigrateType.UNMOVABLE)
    limit = layout.first_deferred_pfn or layout.end_pfn
    for start, end in layout.memory:
        end = min(end, limit)
        first = -(-start >> pbo)
        if start < end:
            mm.pb_mt[first:-(-end >> pbo)] = movable


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
    """Reserve early allocations, then free the initialised rest to the buddy allocator.

    Memory is freed in the largest naturally aligned chunks, in ascending
    address order, each to the tail of its list (FPI_TO_TAIL).  Free pages
    past ``first_deferred_pfn`` stay untouched until ``deferred_init_memmap()``:
    their struct pages are not initialised yet (their memmap entries stay as
    fresh, ABSENT), and ``managed_pages`` counts only what was freed.

    Kernel: mm/memblock.c, memblock_free_all(), __free_pages_memory(),
    memblock_free_pages() (early_page_initialised()); mm/mm_init.c,
    reserve_bootmem_region()
    """
    mm = node.mm
    limit = layout.first_deferred_pfn or layout.end_pfn
    ranges = boot_free_ranges(layout)
    free = [(start, min(end, limit)) for start, end in ranges if start < limit]
    deferred = [(max(start, limit), end) for start, end in ranges if end > limit]
    reserved = subtract_ranges(layout.memory, free)   # not managed (yet)
    for start, end in subtract_ranges(reserved, deferred):
        mm.mark_reserved(start, end)
    for start, end in free:
        free_range(node, start, end)
    for zone in node.zones:
        if zone.present_pages:
            zone.managed_pages = zone.present_pages - pages_within(
                reserved, zone.zone_start_pfn, zone.zone_end_pfn)


def pages_within(ranges: list[tuple[int, int]], lo: int, hi: int) -> int:
    """Pages of the disjoint ``ranges`` that lie in [lo, hi)."""
    return sum(max(0, min(end, hi) - max(start, lo)) for start, end in ranges)


def deferred_init_memmap(node: Node, layout: BootLayout) -> None:
    """Free the deferred free memory; type a pageblock MOVABLE only if its first pfn is free.

    Kernel: mm/mm_init.c, deferred_init_memmap(), deferred_free_pages()
    """
    if layout.first_deferred_pfn is None:
        return
    mm, pbo = node.mm, node.geo.pageblock_order
    movable = mm.pageblock_type(MigrateType.MOVABLE)
    for start, end in boot_free_ranges(layout):
        start = max(start, layout.first_deferred_pfn)
        if start >= end:
            continue
        mm.pb_mt[-(-start >> pbo):-(-end >> pbo)] = movable
        free_range(node, start, end)
        node.page_zone(start).managed_pages += end - start


def boot_free_ranges(layout: BootLayout) -> list[tuple[int, int]]:
    """Memory no reservation covers: for_each_free_mem_range()."""
    return subtract_ranges(layout.memory,
                           sorted((r.start_pfn, r.end_pfn) for r in layout.reserved))


def free_reserved_area(node: Node, start: int, end: int) -> np.ndarray:
    """Reserved pages become managed; returns their pfns for the caller to free.

    The caller frees them one by one (to a per-CPU list or the buddy
    allocator), as free_reserved_page() does.
    Kernel: mm/page_alloc.c, free_reserved_area(), adjust_managed_page_count()
    """
    pfns = np.arange(start, end, dtype=np.int64)
    pfns = pfns[node.mm.state[start:end] == PageState.RESERVED]
    if len(pfns):
        node.page_zone(int(pfns[0])).managed_pages += len(pfns)
    return pfns


def free_range(node: Node, start: int, end: int, to_tail: bool = True) -> None:
    """Free [start, end) in the largest aligned chunks that fit (counted in pgfree).

    Kernel: mm/memblock.c, __free_pages_memory(); mm/page_alloc.c, free_one_page()
    """
    max_order = node.geo.max_page_order
    node.mm.mark_free(start, end)
    node.count_event("pgfree", end - start)
    heads, orders = [], []
    while start < end:
        order = max_order if start == 0 else min(max_order, (start & -start).bit_length() - 1)
        while start + (1 << order) > end:
            order -= 1
        heads.append(start)
        orders.append(order)
        start += 1 << order
    free_blocks_bulk(node, heads, orders, to_tail=to_tail)  # free_pages_ok() for each
