"""Cell classes: what one heatmap cell shows, as small integers.

Every picture in vmemlab colours cells by one ``CellClass``.  Codes 0-12 are
the classes of a page (what the allocator and an unplug care about);
codes 13-18 are the migratetypes of a pageblock; codes 19-21 are what a
virtio-mem subblock map adds: plugged memory by where it went (a kernel
zone, ZONE_MOVABLE, or nowhere yet).  A pageblock or subblock that holds no
buddy memory uses the page codes (not present, offline, reserved,
PageOffline, balloon), so the same state has the same code, and so the same
colour, in every picture.

Three page classes are not a page state of their own in the memmap:
balloon pages are PageOffline pages of kind BALLOON; pages taken by
``alloc_contig_range()`` are KERNEL pages whose owner is a contig owner
(``Node.contig_runs()``, kept in each frame's snapshot); a real machine's
page whose kpageflags word is 0 carries ``PageFlag.NO_KPAGEFLAGS``
(``vmemlab.realmem.kpageflags``).  ``mark_runs`` and ``mark_no_flags``
add the last two after the table lookup.

``classify_pages`` maps the memmap's ``state``/``kind``/``flags`` arrays to
page classes with one lookup table; this module needs only numpy.

Kernel: include/linux/page-flags.h, include/linux/mmzone.h (enum migratetype)
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from ..constants import MigrateType, PageFlag, PageKind, PageState


class CellClass(IntEnum):
    """The class of a heatmap cell; the value is the code stored in grids."""

    NOT_PRESENT = 0    # no memory: a hole, or not (yet) added
    OFFLINE = 1        # memory added, section offline
    RESERVED = 2       # PageReserved: firmware, kernel image, boot memmap
    FREE = 3           # PageBuddy, on a free list
    ISOLATED = 4       # free, in a MIGRATE_ISOLATE pageblock
    MOVABLE = 5        # user memory that can migrate (anon, page cache, tmpfs)
    RECLAIMABLE = 6    # reclaimable slab (dentries, inodes)
    UNMOVABLE = 7      # kernel memory, ramfs, pipes, page tables
    PINNED = 8         # a long-term pinned page: unmovable while pinned
    PAGE_OFFLINE = 9   # PageOffline: unplugged, given back to the hypervisor
    BALLOON = 10       # inflated into virtio-balloon: given to the host, movable
    CONTIG = 11        # taken by alloc_contig_range(), held by its caller
    NO_FLAGS = 12      # a real machine's page with no /proc/kpageflags flag at all
    PB_UNMOVABLE = 13  # pageblock migratetypes (code = PB_BASE + MigrateType)
    PB_MOVABLE = 14
    PB_RECLAIMABLE = 15
    PB_HIGHATOMIC = 16
    PB_ISOLATE = 17
    PB_UNKNOWN = 18    # a real machine's pageblock: the kernel does not export its type
    SB_KERNEL = 19     # virtio-mem: a plugged subblock of a block online in a kernel zone
    SB_MOVABLE = 20    # virtio-mem: a plugged subblock of a block online in ZONE_MOVABLE
    SB_PLUGGED = 21    # virtio-mem: plugged but not added to Linux (a failed add)

    def __str__(self) -> str:
        return CLASS_LABELS[self]


PB_BASE = int(CellClass.PB_UNMOVABLE)
NR_CLASSES = len(CellClass)

CLASS_LABELS = {
    CellClass.NOT_PRESENT: "not present",
    CellClass.OFFLINE: "offline section",
    CellClass.RESERVED: "reserved",
    CellClass.FREE: "free",
    CellClass.ISOLATED: "free, isolated",
    CellClass.MOVABLE: "movable (user)",
    CellClass.RECLAIMABLE: "reclaimable slab",
    CellClass.UNMOVABLE: "unmovable (kernel)",
    CellClass.PINNED: "pinned",
    CellClass.PAGE_OFFLINE: "PageOffline (unplugged)",
    CellClass.BALLOON: "balloon (given to the host)",
    CellClass.CONTIG: "taken by alloc_contig_range()",
    CellClass.NO_FLAGS: "no kpageflags flag",
    CellClass.PB_UNMOVABLE: "Unmovable pageblock",
    CellClass.PB_MOVABLE: "Movable pageblock",
    CellClass.PB_RECLAIMABLE: "Reclaimable pageblock",
    CellClass.PB_HIGHATOMIC: "HighAtomic pageblock",
    CellClass.PB_ISOLATE: "Isolate pageblock",
    CellClass.PB_UNKNOWN: "pageblock, type unknown",
    CellClass.SB_KERNEL: "plugged, online in a kernel zone",
    CellClass.SB_MOVABLE: "plugged, online in ZONE_MOVABLE",
    CellClass.SB_PLUGGED: "plugged, not added",
}

PAGE_CLASSES = tuple(CellClass(c) for c in range(PB_BASE))
# What a pageblock without buddy memory shows (the page classes of what it holds).
DEAD_PAGEBLOCK_CLASSES = (CellClass.NOT_PRESENT, CellClass.OFFLINE, CellClass.RESERVED,
                          CellClass.PAGE_OFFLINE, CellClass.BALLOON)
PAGEBLOCK_CLASSES = DEAD_PAGEBLOCK_CLASSES + tuple(CellClass(PB_BASE + mt) for mt in MigrateType)
# A virtio-mem subblock map: unplugged (not added / PageOffline), plugged by where it went.
SUBBLOCK_CLASSES = (CellClass.NOT_PRESENT, CellClass.PAGE_OFFLINE, CellClass.SB_PLUGGED,
                    CellClass.OFFLINE, CellClass.SB_KERNEL, CellClass.SB_MOVABLE)
# pb_mt byte -> pageblock class (values the model does not define: unknown).
PB_CODES = np.full(256, int(CellClass.PB_UNKNOWN), np.uint8)
PB_CODES[[int(mt) for mt in MigrateType]] = [PB_BASE + int(mt) for mt in MigrateType]

# When many pages share one cell, the cell shows its highest-priority class:
# whatever would stop an unplug wins over what would not.
PRIORITY = (CellClass.NOT_PRESENT, CellClass.OFFLINE, CellClass.FREE, CellClass.NO_FLAGS,
            CellClass.PAGE_OFFLINE, CellClass.SB_PLUGGED, CellClass.BALLOON, CellClass.MOVABLE,
            CellClass.SB_MOVABLE, CellClass.ISOLATED, CellClass.RECLAIMABLE, CellClass.RESERVED,
            CellClass.SB_KERNEL, CellClass.CONTIG, CellClass.UNMOVABLE, CellClass.PINNED,
            CellClass.PB_UNKNOWN,
            CellClass.PB_MOVABLE, CellClass.PB_RECLAIMABLE, CellClass.PB_HIGHATOMIC,
            CellClass.PB_UNMOVABLE, CellClass.PB_ISOLATE)
RANK = np.zeros(NR_CLASSES, np.uint8)
RANK[[int(c) for c in PRIORITY]] = np.arange(NR_CLASSES, dtype=np.uint8)
UNRANK = np.array([int(c) for c in PRIORITY], np.uint8)

# Balloon pages are PageOffline in the kernel (PG_balloon became PG_offline in 5.0)
# and movable through balloon compaction.  They get a class of their own, so the
# PageOffline colour stays with virtio-mem's unplugged memory (docs/glossary.md).
_KIND_CLASS = {PageKind.ANON: CellClass.MOVABLE, PageKind.FILE: CellClass.MOVABLE,
               PageKind.SHMEM: CellClass.MOVABLE, PageKind.BALLOON: CellClass.BALLOON,
               PageKind.SLAB_RECLAIMABLE: CellClass.RECLAIMABLE}
_STATE_CLASS = {PageState.ABSENT: CellClass.NOT_PRESENT, PageState.OFFLINE: CellClass.OFFLINE,
                PageState.RESERVED: CellClass.RESERVED, PageState.FREE: CellClass.FREE,
                PageState.PAGE_OFFLINE: CellClass.PAGE_OFFLINE}


def kind_class(kind: PageKind) -> CellClass:
    """The class of an allocated, unpinned page of ``kind``."""
    return _KIND_CLASS.get(kind, CellClass.UNMOVABLE)


def state_class(state: int, kind: int = 0, pinned: bool = False) -> CellClass:
    """The class of one page from its memmap fields (the scalar rule)."""
    if state == PageState.PAGE_OFFLINE and kind == PageKind.BALLOON:
        return CellClass.BALLOON
    if state != PageState.ALLOCATED:
        return _STATE_CLASS.get(PageState(state), CellClass.NOT_PRESENT)
    if pinned:
        return CellClass.PINNED
    try:
        return kind_class(PageKind(kind))
    except ValueError:
        return CellClass.UNMOVABLE


_KIND_BITS = 4   # fast index: state (3 bits) | kind (4 bits) | pinned (1 bit)


def _build_tables() -> tuple[np.ndarray, np.ndarray]:
    """The fused 8-bit lookup table and the general (state, kind) table."""
    fused = np.zeros(256, np.uint8)
    for idx in range(256):
        state, kind, pinned = idx >> 5, (idx >> 1) & 0xF, bool(idx & 1)
        if state < len(PageState):
            fused[idx] = state_class(state, kind, pinned)
    general = np.zeros((256, 256), np.uint8)
    for state in range(len(PageState)):
        for kind in range(256):
            general[state, kind] = state_class(state, kind)
    return fused, general


_LUT, _LUT2 = _build_tables()
_FAST = max(PageState) < 8 and max(PageKind) < (1 << _KIND_BITS) and int(PageFlag.PINNED) == 1


_RANKED_LUT = RANK[_LUT]


def classify_pages(state: np.ndarray, kind: np.ndarray, flags: np.ndarray,
                   ranked: bool = False) -> np.ndarray:
    """Page classes (uint8 CellClass codes) of aligned per-page arrays.

    With ``ranked`` the result holds ``RANK[class]`` instead, ready for a
    max-priority reduction (``UNRANK`` maps back).  Isolation is a pageblock
    property; ``mark_isolated`` adds it.
    """
    if _FAST and (state.size == 0 or int(kind.max()) < (1 << _KIND_BITS)):
        idx = (state << 5) | (kind << 1)
        idx |= flags & 1
        return (_RANKED_LUT if ranked else _LUT)[idx]
    out = _LUT2[state, kind]
    pinned = ((flags & PageFlag.PINNED) != 0) & (state == PageState.ALLOCATED)
    out[pinned] = CellClass.PINNED
    return RANK[out] if ranked else out


def mark_runs(classes: np.ndarray, runs: np.ndarray, first_pfn: int, cls: CellClass,
              only: CellClass, ranked: bool = False) -> None:
    """Turn ``only`` into ``cls``, in place, in pages of the pfn ``runs`` ((n, 2) array).

    ``classes`` covers pfns from ``first_pfn``; ``ranked`` as in ``classify_pages``.
    """
    if not len(runs):
        return
    end_pfn = first_pfn + classes.size
    was, now = (RANK[only], RANK[cls]) if ranked else (int(only), int(cls))
    for start, end in np.asarray(runs).tolist():
        lo, hi = max(start, first_pfn) - first_pfn, min(end, end_pfn) - first_pfn
        if lo < hi:
            part = classes[lo:hi]
            part[part == was] = now


def mark_no_flags(classes: np.ndarray, flags: np.ndarray, ranked: bool = False) -> None:
    """Kernel-looking pages flagged ``NO_KPAGEFLAGS`` (a real machine's, aligned with
    ``classes``) become NO_FLAGS, in place."""
    was, now = CellClass.UNMOVABLE, CellClass.NO_FLAGS
    if ranked:
        was, now = RANK[was], RANK[now]
    hit = ((flags & np.uint8(PageFlag.NO_KPAGEFLAGS)) != 0) & (classes == was)
    classes[hit] = now


def mark_isolated(classes: np.ndarray, pb_mt: np.ndarray, pageblock_nr_pages: int,
                  first_pb: int = 0, ranked: bool = False) -> None:
    """Turn FREE into ISOLATED, in place, in pages of MIGRATE_ISOLATE pageblocks.

    ``classes`` covers whole pageblocks starting at pageblock ``first_pb``;
    ``ranked`` as in ``classify_pages``.
    """
    nr_pb = classes.size // pageblock_nr_pages
    iso = np.flatnonzero(pb_mt[first_pb:first_pb + nr_pb] == MigrateType.ISOLATE)
    if iso.size == 0:
        return
    free, isolated = CellClass.FREE, CellClass.ISOLATED
    if ranked:
        free, isolated = RANK[free], RANK[isolated]
    rows = classes.reshape(nr_pb, pageblock_nr_pages)
    sub = rows[iso]
    sub[sub == free] = isolated
    rows[iso] = sub
