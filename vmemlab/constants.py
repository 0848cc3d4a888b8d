"""Units, enums and machine geometry.

Everything here is a value that never changes while a machine runs: the page
size, the orders of the buddy allocator, the size of a pageblock and of a
memory block, and the enums whose integer values are stored in the memmap
arrays.  Enum values equal the kernel's where the kernel has numbers, and
``str()`` of an enum is the spelling ``/proc`` prints ("Movable", "Normal").

Kernel: include/linux/mmzone.h, include/linux/pageblock-flags.h,
arch/x86/include/asm/page_types.h, include/linux/memory.h
"""

from __future__ import annotations

import errno as _errno
import re
from dataclasses import dataclass
from enum import IntEnum

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40

Pfn = int
Order = int
NrPages = int
PhysAddr = int


class MigrateType(IntEnum):
    """Mobility class of a pageblock and of a free list.

    Values follow a kernel built with CONFIG_MEMORY_ISOLATION and without
    CONFIG_CMA (like the reference VM whose /proc samples vmemlab matches),
    where HIGHATOMIC shares its value with MIGRATE_PCPTYPES and ISOLATE is 4.

    Kernel: include/linux/mmzone.h, enum migratetype
    """

    UNMOVABLE = 0
    MOVABLE = 1
    RECLAIMABLE = 2
    HIGHATOMIC = 3
    ISOLATE = 4

    def __str__(self) -> str:
        return _MIGRATETYPE_NAMES[self]

    @property
    def mergeable(self) -> bool:
        """True for the three types that may merge with each other.

        Kernel: include/linux/mmzone.h, migratetype_is_mergeable()
        """
        return self < MIGRATE_PCPTYPES


MIGRATE_PCPTYPES = 3
MIGRATE_TYPES = len(MigrateType)
_MIGRATETYPE_NAMES = {
    MigrateType.UNMOVABLE: "Unmovable",
    MigrateType.MOVABLE: "Movable",
    MigrateType.RECLAIMABLE: "Reclaimable",
    MigrateType.HIGHATOMIC: "HighAtomic",
    MigrateType.ISOLATE: "Isolate",
}


class ZoneType(IntEnum):
    """The zones of an x86-64 node, in the kernel's order.

    Kernel: include/linux/mmzone.h, enum zone_type; mm/page_alloc.c, zone_names[]
    """

    DMA = 0
    DMA32 = 1
    NORMAL = 2
    MOVABLE = 3
    DEVICE = 4

    def __str__(self) -> str:
        return _ZONE_NAMES[self]

    @property
    def is_kernel_zone(self) -> bool:
        """True for zones that serve unmovable allocations (not Movable/Device)."""
        return self <= ZoneType.NORMAL


MAX_NR_ZONES = len(ZoneType)
_ZONE_NAMES = {
    ZoneType.DMA: "DMA",
    ZoneType.DMA32: "DMA32",
    ZoneType.NORMAL: "Normal",
    ZoneType.MOVABLE: "Movable",
    ZoneType.DEVICE: "Device",
}
NO_ZONE = 255  # pb_zone value of a pageblock that belongs to no zone


class PageState(IntEnum):
    """What the page allocator knows about one page frame.

    ABSENT      no memory here (a hole, or memory not added)
    OFFLINE     memory added (it has a memmap) but its section is offline
    RESERVED    PageReserved: firmware, kernel image, boot memmap
    FREE        PageBuddy: part of a free block on a free list
    ALLOCATED   handed out by the page allocator
    PAGE_OFFLINE  PageOffline inside an online section: logically offline,
                owned by a driver (virtio-mem unplugged subblocks, balloon)

    Kernel: include/linux/page-flags.h (PG_reserved, PG_buddy, PG_offline)
    """

    ABSENT = 0
    OFFLINE = 1
    RESERVED = 2
    FREE = 3
    ALLOCATED = 4
    PAGE_OFFLINE = 5


class PageKind(IntEnum):
    """What an allocated page is used for; decides isolation and migration.

    The kernel learns this from page flags and the owning subsystem (PageLRU,
    PageSlab, a page-table page, __PageMovable, ...).  vmemlab stores it as one
    byte per page.  ``lru`` pages are isolated and migrated; ``movable_ops``
    pages migrate through their driver; the rest are unmovable.

    Kernel: include/linux/page-flags.h, mm/compaction.c isolate_migratepages_block()
    """

    NONE = 0          # free, reserved or absent
    ANON = 1          # anonymous user memory (LRU, swap-backed)
    FILE = 2          # page cache of a file (LRU, clean: reclaimable)
    SHMEM = 3         # tmpfs/shmem (LRU, swap-backed)
    RAMFS = 4         # ramfs (LRU unevictable, dirty, no writeback: cannot migrate)
    SLAB = 5          # unreclaimable slab (kmalloc)
    SLAB_RECLAIMABLE = 6  # reclaimable slab (dentries, inodes)
    PAGETABLE = 7     # page-table page
    PIPE = 8          # pipe buffer
    KERNEL = 9        # other kernel memory (drivers, DMA pools, raw alloc_pages)
    MEMMAP = 10       # struct pages of hot-added memory
    BALLOON = 11      # virtio-balloon page (movable_ops with balloon compaction)
    STACK = 12        # kernel stack (vmalloc'd; meminfo KernelStack and VmallocUsed)
    PERCPU = 13       # page of a dynamic percpu chunk (meminfo Percpu)
    VMALLOC = 14      # other vmalloc memory: modules, large tables (meminfo VmallocUsed)

    def __str__(self) -> str:
        return self.name.lower()

    @property
    def lru(self) -> bool:
        return self in _LRU_KINDS

    @property
    def movable_ops(self) -> bool:
        return self is PageKind.BALLOON


_LRU_KINDS = frozenset({PageKind.ANON, PageKind.FILE, PageKind.SHMEM, PageKind.RAMFS})


class PageFlag(IntEnum):
    """Bits of the per-page flag byte (a small subset of struct page flags)."""

    PINNED = 1        # long-term pin (FOLL_LONGTERM): refcount > mapcount + 1
    DIRTY = 2         # dirty page cache: not reclaimable without writeback
    REFCOUNT_ZERO = 4  # PageOffline page whose driver dropped its reference
    NO_KPAGEFLAGS = 8  # a real machine's page whose /proc/kpageflags word is 0 (realmem only)


class Errno(IntEnum):
    """The negative error codes kernel functions return, as positive numbers.

    Kernel functions in vmemlab return ``0`` or ``-Errno.X`` (a negative int),
    exactly like C.  ``errname(rc)`` turns a return code into "-EBUSY".
    """

    EINTR = _errno.EINTR
    EAGAIN = _errno.EAGAIN
    ENOMEM = _errno.ENOMEM
    EFAULT = _errno.EFAULT
    EBUSY = _errno.EBUSY
    EINVAL = _errno.EINVAL
    ETXTBSY = _errno.ETXTBSY
    ENOSPC = _errno.ENOSPC
    EPERM = _errno.EPERM


EINTR, EAGAIN, ENOMEM = -Errno.EINTR, -Errno.EAGAIN, -Errno.ENOMEM
EBUSY, EINVAL, ETXTBSY = -Errno.EBUSY, -Errno.EINVAL, -Errno.ETXTBSY
ENOSPC, EPERM, EFAULT = -Errno.ENOSPC, -Errno.EPERM, -Errno.EFAULT


def errname(rc: int) -> str:
    """Spell a kernel return code: 0 -> "0", -16 -> "-EBUSY"."""
    if rc == 0:
        return "0"
    try:
        return f"-{Errno(-rc).name}" if rc < 0 else str(rc)
    except ValueError:
        return str(rc)


@dataclass(frozen=True)
class Geometry:
    """Sizes that define a machine's physical memory layout.

    ``pageblock_order`` and ``max_page_order`` are spelled as in the kernel;
    ``section_size`` is the sparsemem section (SECTION_SIZE_BITS), and
    ``memory_block_size`` is what ``/sys/devices/system/memory/block_size_bytes``
    reports (one section on x86-64 guests whose boot memory ends below 64 GiB;
    ``Machine`` picks a larger one above that, as the kernel does).  ``layout`` names the
    boot layout: ``"q35"`` for a QEMU q35 guest, ``"flat"`` for one zone from
    pfn 0, used by the teaching preset.

    Kernel: include/linux/pageblock-flags.h, include/linux/mmzone.h,
    arch/x86/include/asm/sparsemem.h, arch/x86/mm/init_64.c probe_memory_block_size()
    """

    name: str
    page_shift: int
    pageblock_order: int
    max_page_order: int
    section_size: int
    memory_block_size: int
    layout: str
    dma_end_pfn: int = 0
    dma32_end_pfn: int = 0
    min_free_kbytes: int | None = None  # None: computed as the kernel does
    thp: bool = True                    # khugepaged raises min_free_kbytes

    def __post_init__(self) -> None:
        if not 0 <= self.pageblock_order <= self.max_page_order:
            raise ValueError(
                f"pageblock_order={self.pageblock_order} must be within "
                f"0..max_page_order={self.max_page_order}")
        if self.section_size % (self.page_size << self.max_page_order):
            raise ValueError(
                f"section_size={self.section_size} must be a multiple of "
                f"the largest buddy block ({self.page_size << self.max_page_order})")
        if self.memory_block_size % self.section_size:
            raise ValueError(f"memory_block_size={self.memory_block_size} must be a "
                             f"multiple of section_size={self.section_size}")

    @property
    def page_size(self) -> int:
        return 1 << self.page_shift

    @property
    def nr_page_orders(self) -> int:
        return self.max_page_order + 1

    @property
    def pageblock_nr_pages(self) -> int:
        return 1 << self.pageblock_order

    @property
    def max_order_nr_pages(self) -> int:
        return 1 << self.max_page_order

    @property
    def pages_per_section(self) -> int:
        return self.section_size >> self.page_shift

    @property
    def pages_per_memory_block(self) -> int:
        return self.memory_block_size >> self.page_shift

    @property
    def pageblocks_per_memory_block(self) -> int:
        return self.pages_per_memory_block >> self.pageblock_order

    def pfn_to_phys(self, pfn: Pfn) -> PhysAddr:
        """PFN_PHYS(): the physical address of a page frame."""
        return pfn << self.page_shift

    def phys_to_pfn(self, addr: PhysAddr) -> Pfn:
        """PHYS_PFN(): the page frame holding a physical address."""
        return addr >> self.page_shift

    def bytes_to_pages(self, nbytes: int, what: str = "size") -> NrPages:
        """Convert a byte count to pages; it must be a whole number of pages."""
        if nbytes < 0 or nbytes % self.page_size:
            raise ValueError(f"{what}={nbytes} is not a whole number of "
                             f"{self.page_size}-byte pages")
        return nbytes >> self.page_shift


X86_64 = Geometry(
    name="x86_64", page_shift=12, pageblock_order=9, max_page_order=10,
    section_size=128 * MiB, memory_block_size=128 * MiB, layout="q35",
    dma_end_pfn=(16 * MiB) >> 12, dma32_end_pfn=(4 * GiB) >> 12)

# A machine small enough to reason about by hand: 4 KiB pages, pageblocks of
# 8 pages, buddy blocks up to 16 pages, memory blocks of 64 pages (256 KiB).
TEACHING = Geometry(
    name="teaching", page_shift=12, pageblock_order=3, max_page_order=4,
    section_size=64 * 4 * KiB, memory_block_size=64 * 4 * KiB, layout="flat",
    min_free_kbytes=0, thp=False)

GEOMETRIES = {g.name: g for g in (X86_64, TEACHING)}


def geometry(spec: str | Geometry) -> Geometry:
    """Look up a geometry preset by name ("x86_64", "teaching")."""
    if isinstance(spec, Geometry):
        return spec
    try:
        return GEOMETRIES[spec]
    except KeyError:
        raise ValueError(f"geometry={spec!r} is not one of {sorted(GEOMETRIES)}") from None


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_SUFFIX = {"": 1, "k": KiB, "m": MiB, "g": GiB, "t": TiB}


def parse_size(value: int | str) -> int:
    """Parse a size in bytes: 4096, "4k", "128M", "2GiB", "1.5g" (binary units).

    >>> parse_size("128M")
    134217728
    """
    if isinstance(value, bool):
        raise ValueError(f"size={value!r} is not a size")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size={value} must not be negative")
        return value
    m = _SIZE_RE.match(str(value))
    if not m:
        raise ValueError(f"size={value!r} is not a size like 4096, 64k, 128M or 2G")
    number, suffix = m.group(1), m.group(2).lower()
    nbytes = float(number) * _SUFFIX[suffix]
    if nbytes != int(nbytes):
        raise ValueError(f"size={value!r} is not a whole number of bytes")
    return int(nbytes)


def format_size(nbytes: int) -> str:
    """Spell a byte count with the largest binary unit that divides it: "128 MiB"."""
    for unit, name in ((TiB, "TiB"), (GiB, "GiB"), (MiB, "MiB"), (KiB, "KiB")):
        if nbytes and nbytes % unit == 0:
            return f"{nbytes // unit} {name}"
    return f"{nbytes} B"
