"""memblock: what an x86-64 kernel reserves before the page allocator exists.

Until ``memblock_free_all()`` the kernel allocates from memblock, top-down
from the highest free address (``memblock_find_in_range_node()``).  Those
allocations stay PageReserved forever unless the kernel frees them later
(the initrd, the init sections).  In the order an x86-64 6.12 boot makes
them:

=========================  ===============================================  ==========
reservation                size (the reference VM: 1 GiB, 2 CPUs)           kernel
=========================  ===============================================  ==========
first 1 MiB                always (v5.13, "x86/setup: Always reserve the    setup.c
                           first 1M of RAM")
initrd                     where QEMU put it: the top of RAM below 4 GiB    setup.c
                           minus 160 KiB of ACPI data; freed after unpack   early_reserve_initrd()
kernel image               _text.._end plus brk, 2 MiB aligned at a KASLR   setup.c
                           slot (seeded); init and the section gaps are     kaslr.c
                           freed at the end of boot
direct-map page tables     beyond the 6 brk pages: one PMD page per GiB,    init.c
                           PTE pages for the 4 KiB-mapped edges             alloc_low_pages()
NODE_DATA                  sizeof(pg_data_t), 172 KiB with NODES_SHIFT=10   numa.c
memmap                     64 bytes per page of each present section,       sparse.c
                           2 MiB aligned, one block per node
sparse metadata            mem_section roots, usemaps, vmemmap page tables  sparse.c
percpu first chunk         64 pages per possible CPU, carved from 2 MiB     percpu.c
                           aligned groups (the rest of each unit is freed)
printk ring buffer         log_buf_len=512K: text + 24 B descriptors +      printk.c
                           88 B infos per 32 bytes of text
dentry, inode hashes       one 8-byte bucket per 8 / 16 KiB of memory,      dcache.c
                           rounded up to a power of two                     inode.c
swiotlb                    64 MiB below 4 GiB when max_possible_pfn is      pci-dma.c
                           above 4 GiB, plus 24 bytes of slot per 2 KiB     swiotlb.c
=========================  ===============================================  ==========

``max_possible_pfn`` includes the hotpluggable range QEMU's SRAT announces
for a machine started with ``maxmem`` ("Entry is required ... for Linux to
enable SWIOTLB when booted with less than 4G of RAM", QEMU
hw/i386/acpi-build.c build_srat()): every virtio-mem guest has the swiotlb.

Sub-page allocations (e820 table copies, command-line copies, swiotlb
areas) are left out; every modelled allocation is rounded up to pages.
The kernel image's section sizes are those of a Debian 6.12 amd64 kernel
as far as the reference VM shows them: its MemTotal less every other
reservation above leaves 37.4 MiB for text, rodata, data, bss and brk.

Kernel: mm/memblock.c, arch/x86/kernel/setup.c, arch/x86/mm/init.c,
arch/x86/boot/compressed/kaslr.c, mm/sparse.c, mm/percpu.c,
kernel/printk/printk.c, mm/mm_init.c alloc_large_system_hash(),
arch/x86/kernel/pci-dma.c pci_swiotlb_detect(), kernel/dma/swiotlb.c;
QEMU hw/i386/x86.c x86_load_linux()
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .constants import Geometry, GiB, KiB, MiB

# -- the kernel image (arch/x86/kernel/vmlinux.lds.S) --------------------------
LOAD_PHYSICAL_ADDR = 16 * MiB        # CONFIG_PHYSICAL_START
PHYSICAL_ALIGN = 2 * MiB             # CONFIG_PHYSICAL_ALIGN: KASLR slot size
INIT_PGT_BUF_PAGES = 6               # INIT_PGT_BUF_SIZE: early page tables live in brk


@dataclass(frozen=True)
class ImageSection:
    """One part of the loaded kernel; ``freed`` names who gives it back."""

    name: str
    size: int
    freed: str = ""


# Text and rodata end at 2 MiB boundaries; mark_rodata_ro() frees the gaps.
KERNEL_SECTIONS = (
    ImageSection("text", 17 * MiB + 256 * KiB),
    ImageSection("text/rodata gap", 768 * KiB, "mark_rodata_ro"),
    ImageSection("rodata", 10 * MiB + 512 * KiB),
    ImageSection("rodata/data gap", 1 * MiB + 512 * KiB, "mark_rodata_ro"),
    ImageSection("data", 3 * MiB + 256 * KiB),
    ImageSection("init", 3 * MiB + 768 * KiB, "free_initmem"),
    ImageSection("bss", 6 * MiB + 256 * KiB),
    ImageSection("brk", 128 * KiB),
)
KERNEL_IMAGE_SIZE = sum(s.size for s in KERNEL_SECTIONS)

# -- firmware and boot loader ----------------------------------------------------
QEMU_ACPI_DATA_SIZE = 0x20000 + 0x8000   # pcmc->acpi_data_size: initrd stays below
INITRD_SIZE = 1 * MiB + 256 * KiB        # the reference VM's busybox initramfs (gzip)
LOG_BUF_LEN = 512 * KiB                  # the reference VM's log_buf_len=512K
LOG_BUF_SHIFT = 18                       # CONFIG_LOG_BUF_SHIFT: the static buffer
PRB_AVGBITS = 5                          # one descriptor per 32 bytes of text
PRB_DESC_SIZE, PRINTK_INFO_SIZE = 24, 88

# -- sizes of boot structures ------------------------------------------------------
STRUCT_PAGE_SIZE = 64
PGDAT_SIZE = 172 * KiB            # sizeof(pg_data_t): two zonelists of 1024*5+1 zonerefs
PMD_SIZE = 2 * MiB
PERCPU_UNIT_SIZE = 256 * KiB      # static 220 KiB + reserved 8 KiB + dynamic 28 KiB
PERCPU_ATOM_SIZE = PMD_SIZE
SECTIONS_PER_ROOT = 4096 // 16    # PAGE_SIZE / sizeof(struct mem_section)
USEMAP_BYTES = 40                 # mem_section_usage: subsection map + 64 pageblocks x 4 bits
SWIOTLB_SIZE = 64 * MiB           # IO_TLB_DEFAULT_SIZE
IO_TLB_SHIFT = 11                 # 2 KiB slots
IO_TLB_SLOT_SIZE = 24             # sizeof(struct io_tlb_slot)
DMA32_LIMIT = 4 * GiB
HASH_BUCKET = 8                   # sizeof(struct hlist_bl_head) / (struct hlist_head)
DHASH_SCALE, IHASH_SCALE = 13, 14
ADAPT_SCALE_BASE, ADAPT_SCALE_SHIFT = 64 * GiB, 4


@dataclass(frozen=True)
class BootConfig:
    """What the QEMU and kernel command lines say about one boot.

    The defaults are the reference VM of samples/linux-6.12: ``-smp 2``,
    maxmem set for a virtio-mem device (``maxmem=None`` means "sized for
    the devices"; ``maxmem == boot memory`` is a guest without memory
    hotplug), ``log_buf_len=512K``, a small busybox initramfs, and KASLR.
    """

    cpus: int = 2
    maxmem: int | None = None
    slots: int | None = None
    log_buf_len: int = LOG_BUF_LEN
    initrd_size: int = INITRD_SIZE
    kaslr: bool = True


Q35_MAX_CPUS = 288       # QEMU hw/i386/pc_q35.c: m->max_cpus
ACPI_MAX_RAM_SLOTS = 256  # QEMU include/hw/acpi/pc-hotplug.h


def boot_config(boot_memory: int, cpus: int = 2, maxmem: int | str | None = None,
                slots: int | None = None) -> BootConfig:
    """Check ``-smp`` and ``-m size,maxmem=,slots=`` as QEMU does; the BootConfig.

    QEMU: softmmu/vl.c set_memory_options(), hw/i386/pc.c pc_memory_init()
    """
    from .constants import parse_size

    if not isinstance(cpus, (int, np.integer)) or isinstance(cpus, bool) \
            or not 1 <= cpus <= Q35_MAX_CPUS:
        raise ValueError(f"cpus={cpus!r} must be an integer in 1..{Q35_MAX_CPUS} "
                         "(-smp; q35 supports at most 288)")
    if slots is not None and (not isinstance(slots, (int, np.integer)) or isinstance(slots, bool)
                              or not 0 <= slots <= ACPI_MAX_RAM_SLOTS):
        raise ValueError(f"slots={slots!r} must be an integer in 0..{ACPI_MAX_RAM_SLOTS} "
                         "(unsupported amount of memory slots)")
    if maxmem is not None:
        maxmem = parse_size(maxmem)
        if maxmem < boot_memory:
            raise ValueError(f"invalid value of maxmem: maximum memory size ({maxmem:#x}) "
                             f"must be at least the initial memory size ({boot_memory:#x})")
        if slots and maxmem == boot_memory:
            raise ValueError("invalid value of maxmem: memory slots were specified but "
                             f"maximum memory size ({maxmem:#x}) is equal to the initial "
                             f"memory size ({boot_memory:#x})")
    return BootConfig(int(cpus), maxmem, None if slots is None else int(slots))


@dataclass(frozen=True)
class Reservation:
    """A memblock reservation, [start_pfn, end_pfn): PageReserved unless ``freed``.

    ``freed`` names the kernel function that gives it back late in boot
    (``free_initrd_mem``, ``free_initmem``, ``mark_rodata_ro``), or is empty.
    """

    start_pfn: int
    end_pfn: int
    name: str
    freed: str = ""

    @property
    def nr_pages(self) -> int:
        return self.end_pfn - self.start_pfn


@dataclass
class Memblock:
    """memblock.memory and memblock.reserved, in pfns, with top-down allocation.

    Kernel: mm/memblock.c, memblock_reserve(), memblock_alloc_try_nid(),
    __memblock_find_range_top_down(), memblock_free()
    """

    memory: list[tuple[int, int]]
    reserved: list[Reservation] = field(default_factory=list)

    def reserve(self, start: int, end: int, name: str, freed: str = "") -> None:
        """memblock_reserve(): [start, end) is taken."""
        if start < end:
            self.reserved.append(Reservation(start, end, name, freed))

    def free_ranges(self, limit: int | None = None) -> list[tuple[int, int]]:
        """for_each_free_mem_range(): memory not reserved, below ``limit``."""
        holes = sorted((r.start_pfn, r.end_pfn) for r in self.reserved)
        out = subtract_ranges(self.memory, holes)
        if limit is not None:
            out = [(s, min(e, limit)) for s, e in out if s < limit]
        return out

    def alloc(self, nr_pages: int, name: str, align: int = 1,
              limit: int | None = None) -> int:
        """memblock_alloc(): the highest aligned free range that fits; its first pfn."""
        for start, end in reversed(self.free_ranges(limit)):
            first = (end - nr_pages) // align * align
            if first >= start:
                self.reserve(first, first + nr_pages, name)
                return first
        raise ValueError(f"boot memory is too small for the kernel's {name} "
                         f"({nr_pages} pages): give the guest more boot_memory")

    def free(self, start: int, end: int) -> None:
        """memblock_free(): give back [start, end) of whatever reservation holds it."""
        kept = []
        for r in self.reserved:
            if r.end_pfn <= start or r.start_pfn >= end:
                kept.append(r)
                continue
            if r.start_pfn < start:
                kept.append(Reservation(r.start_pfn, start, r.name, r.freed))
            if r.end_pfn > end:
                kept.append(Reservation(end, r.end_pfn, r.name, r.freed))
        self.reserved = kept

    def free_page_count(self) -> int:
        """Pages of memory no reservation covers (nr_kernel_pages' count)."""
        return sum(e - s for s, e in self.free_ranges())


def subtract_ranges(ranges: list[tuple[int, int]],
                    holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``ranges`` minus the sorted ``holes`` (both half-open)."""
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


# -- sizing rules -----------------------------------------------------------------
def pages(nbytes: int, geo: Geometry) -> int:
    """Bytes rounded up to whole pages."""
    return -(-nbytes >> geo.page_shift) if nbytes >= 0 else 0


def swiotlb_enabled(max_possible_pfn: int, geo: Geometry) -> bool:
    """x86_swiotlb_enable: memory may exist above 4 GiB and there is no IOMMU.

    Kernel: arch/x86/kernel/pci-dma.c, pci_swiotlb_detect()
    """
    return max_possible_pfn > DMA32_LIMIT >> geo.page_shift


def log_buf_pages(log_buf_len: int, geo: Geometry) -> list[tuple[str, int]]:
    """The printk ring buffer setup_log_buf() takes from memblock, if any.

    A log_buf_len= larger than the static buffer (2**CONFIG_LOG_BUF_SHIFT)
    allocates text, descriptors and infos.  Kernel: kernel/printk/printk.c
    """
    if log_buf_len <= 1 << LOG_BUF_SHIFT:
        return []
    descs = log_buf_len >> PRB_AVGBITS
    return [("printk log buffer", pages(log_buf_len, geo)),
            ("printk descriptors", pages(descs * PRB_DESC_SIZE, geo)),
            ("printk infos", pages(descs * PRINTK_INFO_SIZE, geo))]


def large_system_hash_pages(nr_kernel_pages: int, scale: int, geo: Geometry) -> int:
    """Pages of an early hash table: one bucket per 2**scale bytes, a power of two.

    Memory is rounded up to a MiB; above 64 GiB each 16x more memory adds
    one to ``scale``; the table is at most 1/16 of memory.
    Kernel: mm/mm_init.c, alloc_large_system_hash()
    """
    numentries = -(-nr_kernel_pages // (MiB >> geo.page_shift)) * (MiB >> geo.page_shift)
    adapt = ADAPT_SCALE_BASE >> geo.page_shift
    while adapt < numentries:
        scale += 1
        adapt <<= ADAPT_SCALE_SHIFT
    numentries >>= scale - geo.page_shift
    numentries = max(numentries, geo.page_size // HASH_BUCKET)
    numentries = 1 << (numentries - 1).bit_length()
    cap = (nr_kernel_pages << geo.page_shift >> 4) // HASH_BUCKET
    numentries = min(numentries, 1 << (cap.bit_length() - 1))
    return pages(numentries * HASH_BUCKET, geo)


def percpu_groups(cpus: int) -> tuple[int, int]:
    """(units per 2 MiB allocation, unit size) of the embedded first chunk.

    The most units per atom whose waste stays within cpus/3.
    Kernel: mm/percpu.c, pcpu_build_alloc_info()
    """
    alloc = -(-PERCPU_UNIT_SIZE // PERCPU_ATOM_SIZE) * PERCPU_ATOM_SIZE
    best, last_allocs = 0, math.inf
    for upa in range(alloc // PERCPU_UNIT_SIZE, 0, -1):
        if alloc % upa or (alloc // upa) % 4096:
            continue
        allocs = -(-cpus // upa)
        if allocs * upa - cpus > cpus // 3:
            continue
        if allocs > last_allocs:
            break
        last_allocs, best = allocs, upa
    return best, alloc // best


def direct_map_ranges(memory: list[tuple[int, int]], geo: Geometry) -> tuple[int, int, int]:
    """(4 KiB pages, 2 MiB pages, PMD pages) of the direct map of ``memory`` (pfn ranges).

    The first 1 MiB (ISA range, holes included) is mapped with 4 KiB pages;
    the rest of each range with 2 MiB pages where aligned, 4 KiB at its
    edges (QEMU's default CPU model has no 1 GiB pages).
    Kernel: arch/x86/mm/init.c, init_mem_mapping(), split_mem_range()
    """
    per_2m = PMD_SIZE >> geo.page_shift
    isa = MiB >> geo.page_shift
    mapped = [(0, isa)] + [(max(s, isa), e) for s, e in memory if e > isa]
    small = big = 0
    gib: set[int] = set()
    for start, end in mapped:
        lo, hi = -(-start // per_2m) * per_2m, end // per_2m * per_2m
        if start < isa or lo >= hi:
            small += end - start
        else:
            small += (lo - start) + (end - hi)
            big += (hi - lo) // per_2m
        gib.update(range(start >> (30 - geo.page_shift), -(-end >> (30 - geo.page_shift))))
    return small, big, len(gib)


def direct_map_page_table_pages(memory: list[tuple[int, int]], geo: Geometry) -> int:
    """Page-table pages of the direct map beyond the brk buffer (alloc_low_pages()).

    One PUD page per 512 GiB, one PMD page per GiB, one PTE page per
    2 MiB mapped with 4 KiB pages; the first six come from brk.
    """
    per_2m = PMD_SIZE >> geo.page_shift
    small, _, pmd_pages = direct_map_ranges(memory, geo)
    pud_pages = -(-max(e for _, e in memory) // (512 * GiB >> geo.page_shift))
    pte_pages = -(-small // per_2m) + 1
    return max(0, pud_pages + pmd_pages + pte_pages - INIT_PGT_BUF_PAGES)


# -- placement --------------------------------------------------------------------
def kaslr_slot(memory: list[tuple[int, int]], nr_pages: int, avoid: list[tuple[int, int]],
               geo: Geometry, rng: np.random.Generator | None) -> int:
    """Where the decompressor puts the kernel: a random 2 MiB slot, or 16 MiB.

    Slots start at LOAD_PHYSICAL_ADDR, lie wholly in one usable range and
    miss the initrd (mem_avoid).  ``rng`` None is ``nokaslr``.
    Kernel: arch/x86/boot/compressed/kaslr.c, choose_random_location(),
    find_random_phys_addr()
    """
    low = LOAD_PHYSICAL_ADDR >> geo.page_shift
    if rng is None:
        return low
    align = PHYSICAL_ALIGN >> geo.page_shift
    slots = []
    for start, end in memory:
        first = max(-(-start // align) * align, low)
        cand = np.arange(first, end - nr_pages + 1, align, dtype=np.int64)
        for a, b in avoid:
            cand = cand[(cand + nr_pages <= a) | (cand >= b)]
        slots.append(cand)
    pool = np.concatenate(slots) if slots else np.zeros(0, np.int64)
    if not len(pool):
        raise ValueError("boot memory is too small for the kernel image: give the guest "
                         "more boot_memory")
    return int(pool[rng.integers(len(pool))])


def initrd_placement(below_4g: int, size: int, geo: Geometry) -> tuple[int, int]:
    """[start, end) pfns where QEMU loads the initrd: as high as allowed, page aligned.

    QEMU: hw/i386/x86.c, x86_load_linux() (initrd_max, initrd_addr)
    """
    top = below_4g - QEMU_ACPI_DATA_SIZE - 1
    start = (top - size) & ~(geo.page_size - 1)
    return start >> geo.page_shift, pages(start + size, geo)


def present_sections(memory: list[tuple[int, int]], geo: Geometry) -> int:
    """Sections holding memory: sparse_init() gives each a memmap."""
    per = geo.pages_per_section
    found: set[int] = set()
    for start, end in memory:
        found.update(range(start // per, -(-end // per)))
    return len(found)


def reserve_q35(mb: Memblock, geo: Geometry, config: BootConfig, below_4g: int,
                max_possible_pfn: int, rng: np.random.Generator | None) -> None:
    """Every early reservation of an x86-64 boot, in the kernel's order.

    Kernel: arch/x86/kernel/setup.c setup_arch(), init/main.c start_kernel(),
    arch/x86/mm/init_64.c mem_init()
    """
    shift = geo.page_shift
    mb.reserve(0, MiB >> shift, "first 1 MiB (x86 always reserves it)")
    initrd = initrd_placement(below_4g, config.initrd_size, geo) if config.initrd_size else None
    if initrd:
        mb.reserve(*initrd, "initrd", "free_initrd_mem")
    image = pages(KERNEL_IMAGE_SIZE, geo)
    start = kaslr_slot(mb.memory, image, [initrd] if initrd else [], geo,
                       rng if config.kaslr else None)
    for sec in KERNEL_SECTIONS:
        n = pages(sec.size, geo)
        mb.reserve(start, start + n, f"kernel {sec.name}", sec.freed)
        start += n
    _reserve_setup_arch(mb, geo)
    _reserve_start_kernel(mb, geo, config)
    if swiotlb_enabled(max_possible_pfn, geo):
        _reserve_swiotlb(mb, geo)


def _reserve_swiotlb(mb: Memblock, geo: Geometry) -> None:
    """64 MiB of bounce buffer below 4 GiB and its slot array; a guest too small
    for it boots without one ("Failed to allocate ... tlb structure").
    Kernel: kernel/dma/swiotlb.c, swiotlb_init_remap(), swiotlb_memblock_alloc()
    """
    nr = pages(SWIOTLB_SIZE, geo)
    if not any(e - s >= nr for s, e in mb.free_ranges(DMA32_LIMIT >> geo.page_shift)):
        return
    mb.alloc(nr, "swiotlb bounce buffer", limit=DMA32_LIMIT >> geo.page_shift)
    nslabs = SWIOTLB_SIZE >> IO_TLB_SHIFT
    mb.alloc(pages(nslabs * IO_TLB_SLOT_SIZE, geo), "swiotlb slots")


def _reserve_setup_arch(mb: Memblock, geo: Geometry) -> None:
    """Page tables, NODE_DATA and the memmap (setup_arch -> paging_init)."""
    pt = direct_map_page_table_pages(mb.memory, geo)
    if pt:
        mb.alloc(pt, "page tables (direct map)")
    mb.alloc(pages(PGDAT_SIZE, geo), "NODE_DATA")
    sections = present_sections(mb.memory, geo)
    per_section = pages(STRUCT_PAGE_SIZE * geo.pages_per_section, geo)
    mb.alloc(sections * per_section, "memmap (struct pages)",
             align=max(1, PMD_SIZE >> geo.page_shift))
    sparse = (-(-sections // SECTIONS_PER_ROOT) + pages(sections * USEMAP_BYTES, geo)
              + -(-sections // 512) + 1)
    mb.alloc(sparse, "sparse (mem_section roots, usemaps, vmemmap page tables)")


def _reserve_start_kernel(mb: Memblock, geo: Geometry, config: BootConfig) -> None:
    """Percpu, printk and the early hashes (start_kernel, before mm_core_init)."""
    shift = geo.page_shift
    upa, unit = percpu_groups(config.cpus)
    used = pages(PERCPU_UNIT_SIZE, geo)
    per_unit = unit >> shift
    for group in range(-(-config.cpus // upa)):
        base = mb.alloc(upa * per_unit, "percpu first chunk", align=PERCPU_ATOM_SIZE >> shift)
        for u in range(upa):
            cpu = group * upa + u
            keep = used if cpu < config.cpus else 0
            mb.free(base + u * per_unit + keep, base + (u + 1) * per_unit)
    for name, n in log_buf_pages(config.log_buf_len, geo):
        mb.alloc(n, name)
    nr_kernel_pages = mb.free_page_count()
    mb.alloc(large_system_hash_pages(nr_kernel_pages, DHASH_SCALE, geo), "dentry hash table")
    mb.alloc(large_system_hash_pages(nr_kernel_pages, IHASH_SCALE, geo), "inode hash table")


def percpu_first_chunk_pages(config: BootConfig, geo: Geometry) -> int:
    """Pages of the first chunk that stay: one unit's used part per possible CPU."""
    return config.cpus * pages(PERCPU_UNIT_SIZE, geo)
