"""/proc/kpageflags words mapped onto vmemlab's page states and kinds.

/proc/kpageflags holds one little-endian u64 per pfn.  ``page_states``
turns an array of them into the ``PageState`` and ``PageKind`` arrays the
model keeps, so a real machine can be drawn like a simulated one.  The
first rule that matches decides (vectorized with numpy):

====================================  =============  ===================
flags                                 PageState      PageKind
====================================  =============  ===================
NOPAGE (a hole)                       ABSENT         NONE
OFFLINE (PageOffline)                 PAGE_OFFLINE   NONE
RESERVED (PageReserved)               RESERVED       NONE
BUDDY (in, or inside, a free block)   FREE           NONE
SLAB                                  ALLOCATED      SLAB
PGTABLE                               ALLOCATED      PAGETABLE
ANON, or HUGE (hugetlb)               ALLOCATED      ANON
LRU + SWAPBACKED (shmem, tmpfs)       ALLOCATED      SHMEM
LRU + UNEVICTABLE (ramfs, mlocked)    ALLOCATED      RAMFS
LRU (page cache)                      ALLOCATED      FILE
anything else, including no flags     ALLOCATED      KERNEL
====================================  =============  ===================

What flags cannot tell: reclaimable slab from unreclaimable (all slab is
SLAB), and what a page with no flags at all is.  ``stable_page_flags()``
gives a word of 0 to a page that is on no list it reports (not PageBuddy,
not LRU, not slab...), not mapped, not compound and not reserved: a raw
kernel allocation (``alloc_pages()`` without ``__GFP_COMP``: vmalloc and
per-CPU area pages, many driver buffers), a free page on a per-CPU list
(PageBuddy is cleared there and ``is_free_buddy_page()`` finds no free
block around it), or memory whose struct pages a kernel that initialises
them after boot has not handed to the buddy allocator yet.  Such pages
count as KERNEL in the page states, and carry ``PageFlag.NO_KPAGEFLAGS`` so
pictures give them their own class; ``free_gap_text`` sets MemFree beside
the free lists to show how many of them are free memory.
vmemlab has no hugetlb: its pages count as anonymous user memory.  Offline
memory blocks and pfns outside any memory block are placed by
``vmemlab.snapshot`` from sysfs, since kpageflags reads them as holes.

Kernel: fs/proc/page.c, kpageflags_read(), stable_page_flags();
include/uapi/linux/kernel-page-flags.h; include/linux/kernel-page-flags.h;
Documentation/admin-guide/mm/pagemap.rst
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

from ..constants import PageFlag, PageKind, PageState


class KPF(IntEnum):
    """Bit numbers of a /proc/kpageflags word.

    Kernel: include/uapi/linux/kernel-page-flags.h, include/linux/kernel-page-flags.h
    """

    LOCKED = 0
    ERROR = 1
    REFERENCED = 2
    UPTODATE = 3
    DIRTY = 4
    LRU = 5
    ACTIVE = 6
    SLAB = 7
    WRITEBACK = 8
    RECLAIM = 9
    BUDDY = 10
    MMAP = 11
    ANON = 12
    SWAPCACHE = 13
    SWAPBACKED = 14
    COMPOUND_HEAD = 15
    COMPOUND_TAIL = 16
    HUGE = 17
    UNEVICTABLE = 18
    HWPOISON = 19
    NOPAGE = 20
    KSM = 21
    THP = 22
    OFFLINE = 23
    ZERO_PAGE = 24
    IDLE = 25
    PGTABLE = 26
    RESERVED = 32
    MLOCKED = 33
    MAPPEDTODISK = 34
    PRIVATE = 35
    PRIVATE_2 = 36
    OWNER_PRIVATE = 37
    ARCH = 38
    UNCACHED = 39
    SOFTDIRTY = 40
    ARCH_2 = 41


def has(flags: np.ndarray, bit: KPF) -> np.ndarray:
    """A bool array: which words have ``bit`` set."""
    return (flags & np.uint64(1 << bit)) != 0


_RULE_BITS = (KPF.NOPAGE, KPF.OFFLINE, KPF.RESERVED, KPF.BUDDY, KPF.SLAB, KPF.PGTABLE,
              KPF.ANON, KPF.HUGE, KPF.LRU, KPF.SWAPBACKED, KPF.UNEVICTABLE)


def _apply_rules(flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The table above, first match wins, on whole words."""
    lru = has(flags, KPF.LRU)
    rules = [  # (condition, state, kind)
        (has(flags, KPF.NOPAGE), PageState.ABSENT, PageKind.NONE),
        (has(flags, KPF.OFFLINE), PageState.PAGE_OFFLINE, PageKind.NONE),
        (has(flags, KPF.RESERVED), PageState.RESERVED, PageKind.NONE),
        (has(flags, KPF.BUDDY), PageState.FREE, PageKind.NONE),
        (has(flags, KPF.SLAB), PageState.ALLOCATED, PageKind.SLAB),
        (has(flags, KPF.PGTABLE), PageState.ALLOCATED, PageKind.PAGETABLE),
        (has(flags, KPF.ANON) | has(flags, KPF.HUGE), PageState.ALLOCATED, PageKind.ANON),
        (lru & has(flags, KPF.SWAPBACKED), PageState.ALLOCATED, PageKind.SHMEM),
        (lru & has(flags, KPF.UNEVICTABLE), PageState.ALLOCATED, PageKind.RAMFS),
        (lru, PageState.ALLOCATED, PageKind.FILE),
    ]
    conds = [c for c, _, _ in rules]
    state = np.select(conds, [int(s) for _, s, _ in rules], int(PageState.ALLOCATED))
    kind = np.select(conds, [int(k) for _, _, k in rules], int(PageKind.KERNEL))
    return state.astype(np.uint8), kind.astype(np.uint8)


def _lookup_tables() -> tuple[np.ndarray, np.ndarray]:
    """(state, kind) for every combination of the bits the rules read."""
    combos = np.arange(1 << len(_RULE_BITS), dtype=np.uint64)
    words = np.zeros_like(combos)
    for i, bit in enumerate(_RULE_BITS):
        words |= ((combos >> np.uint64(i)) & np.uint64(1)) << np.uint64(bit)
    return _apply_rules(words)


_STATE_LUT, _KIND_LUT = _lookup_tables()


def page_states(flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(state, kind) uint8 arrays for an array of kpageflags words (table above).

    Packs the bits the rules read into one small key per page and looks it
    up, so a 64 GiB machine's 16 M words take one pass per bit.
    """
    flags = np.asarray(flags, dtype=np.uint64)
    low, high = flags.astype(np.uint32), (flags >> np.uint64(32)).astype(np.uint32)
    key = np.zeros(flags.shape, np.uint16)
    for i, bit in enumerate(_RULE_BITS):
        word, b = (low, bit) if bit < 32 else (high, bit - 32)
        key |= (((word >> np.uint32(b)) & np.uint32(1)).astype(np.uint16) << np.uint16(i))
    return _STATE_LUT[key], _KIND_LUT[key]


def page_flag_bits(flags: np.ndarray) -> np.ndarray:
    """vmemlab's per-page flag byte (``PageFlag``): DIRTY from KPF_DIRTY, and
    NO_KPAGEFLAGS for a word of 0 (pictures draw those pages as "no flags").

    Long-term pins are not visible in kpageflags, so PINNED is never set.
    """
    flags = np.asarray(flags, np.uint64)
    out = np.where(has(flags, KPF.DIRTY), np.uint8(PageFlag.DIRTY), np.uint8(0))
    out[flags == 0] |= np.uint8(PageFlag.NO_KPAGEFLAGS)
    return out.astype(np.uint8)


def flag_counts(flags: np.ndarray) -> dict[str, int]:
    """How many pfns have each KPF bit set, by name, plus "NO_FLAGS"."""
    flags = np.asarray(flags, dtype=np.uint64)
    counts = {bit.name: int(np.count_nonzero(has(flags, bit))) for bit in KPF}
    counts["NO_FLAGS"] = int(np.count_nonzero(flags == 0))
    return counts


# ------------------------------------------------------------------ MemFree vs the free lists
@dataclass(frozen=True)
class FreeGap:
    """Free memory as four sources count it, in pages (None where the snapshot lacks a file).

    ``memfree``: /proc/meminfo MemFree, the zones' NR_FREE_PAGES summed;
    ``buddy``: pages in the free lists of /proc/buddyinfo (nr_free x 2**order);
    ``buddy_flag``: pfns whose kpageflags word has KPF_BUDDY (a free-list page);
    ``no_flags``: pfns whose word is 0;
    ``not_managed``: present but not managed pages, over all zones (/proc/zoneinfo).
    """

    memfree: int | None
    buddy: int | None
    buddy_flag: int | None
    no_flags: int | None
    not_managed: int | None

    @property
    def gap(self) -> int | None:
        """MemFree minus the free lists: free pages that sit on no free list."""
        return None if self.memfree is None or self.buddy is None else self.memfree - self.buddy


def free_gap(snap: Any) -> FreeGap:
    """MemFree, the free lists, and what kpageflags says, of a ``RealSnapshot``.

    Kernel: fs/proc/meminfo.c (MemFree = NR_FREE_PAGES), mm/vmstat.c
    (frag_show_print, zoneinfo_show_print), fs/proc/page.c stable_page_flags()
    """
    def part(name: str) -> Any:
        return snap.part(name) if snap.has(name) else None

    meminfo, buddy, zoneinfo, words = (part(n) for n in ("meminfo", "buddyinfo", "zoneinfo",
                                                          "kpageflags"))
    kb_per_page = snap.page_size // 1024
    memfree = next((r.value // kb_per_page for r in meminfo or () if r.label == "MemFree"), None)
    nr_buddy = None if buddy is None else sum(
        n << order for row in buddy for order, n in enumerate(row.nr_free))
    not_managed = None if zoneinfo is None else sum(
        z.present - z.managed for z in zoneinfo.zones)
    if words is None:
        return FreeGap(memfree, nr_buddy, None, None, not_managed)
    words = np.asarray(words, np.uint64)
    return FreeGap(memfree, nr_buddy, int(np.count_nonzero(has(words, KPF.BUDDY))),
                   int(np.count_nonzero(words == 0)), not_managed)


def free_gap_text(snap: Any) -> str:
    """MemFree beside the buddyinfo total, and the two kpageflags counts that explain the gap.

    Pages the kernel counts as free but keeps on no free list are not
    PageBuddy: per-CPU free lists (order 0-3 pages a CPU keeps at hand) and,
    on a kernel that initialises struct pages after boot, memory not yet
    handed to the buddy allocator (zoneinfo's ``managed`` below ``present``).
    kpageflags reads such pages, like raw kernel allocations (vmalloc,
    per-CPU areas, page tables of some architectures), as words without any
    flag.
    """
    g = free_gap(snap)
    mib = snap.page_size / (1 << 20)

    def row(what: str, pages: int | None) -> str:
        if pages is None:
            return f"{what:<46}{'-':>12}{'-':>12}"
        return f"{what:<46}{pages:>12}{pages * mib:>12.1f}"

    return "\n".join([
        f"{'free memory, as each file counts it':<46}{'pages':>12}{'MiB':>12}",
        row("MemFree (/proc/meminfo)", g.memfree),
        row("in the free lists (/proc/buddyinfo)", g.buddy),
        row("MemFree - free lists: free, on no free list", g.gap),
        row("present - managed (/proc/zoneinfo)", g.not_managed),
        row("pfns with KPF_BUDDY (/proc/kpageflags)", g.buddy_flag),
        row("pfns with no flag at all (/proc/kpageflags)", g.no_flags)]) + "\n"
