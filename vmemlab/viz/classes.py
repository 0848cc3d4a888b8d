"""Cell classes: what one heatmap cell shows, as small integers.

Every picture in vmemlab colours cells by one ``CellClass``.  Codes 0-9 are
the classes of a page (what the allocator and an unplug care about);
codes 10-15 are the migratetypes of a pageblock; codes 16-18 are what a
virtio-mem subblock map adds: plugged memory by where it went (a kernel
zone, ZONE_MOVABLE, or nowhere yet).  A pageblock or subblock that holds no
buddy memory uses the page codes (not present, offline, reserved,
PageOffline), so the same state has the same code, and so the same colour,
in every picture.

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
    PB_UNMOVABLE = 10  # pageblock migratetypes (code = PB_BASE + MigrateType)
    PB_MOVABLE = 11
    PB_RECLAIMABLE = 12
    PB_HIGHATOMIC = 13
    PB_ISOLATE = 14
    PB_UNKNOWN = 15    # a real machine's pageblock: the kernel does not export its type
    SB_KERNEL = 16     # virtio-mem: a plugged subblock of a block online in a kernel zone
    SB_MOVABLE = 17    # virtio-mem: a plugged subblock of a block online in ZONE_MOVABLE
    SB_PLUGGED = 18    # virtio-mem: plugged but not added to Linux (a failed add)

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
PAGEBLOCK_CLASSES = (CellClass.NOT_PRESENT, CellClass.OFFLINE, CellClass.RESERVED,
                     CellClass.PAGE_OFFLINE) + tuple(CellClass(PB_BASE + mt) for mt in MigrateType)
# A virtio-mem subblock map: unplugged (not added / PageOffline), plugged by where it went.
SUBBLOCK_CLASSES = (CellClass.NOT_PRESENT, CellClass.PAGE_OFFLINE, CellClass.SB_PLUGGED,
                    CellClass.OFFLINE, CellClass.SB_KERNEL, CellClass.SB_MOVABLE)
# pb_mt byte -> pageblock class (values the model does not define: unknown).
PB_CODES = np.full(256, int(CellClass.PB_UNKNOWN), np.uint8)
PB_CODES[[int(mt) for mt in MigrateType]] = [PB_BASE + int(mt) for mt in MigrateType]

# When many pages share one cell, the cell shows its highest-priority class:
# whatever would stop an unplug wins over what would not.
PRIORITY = (CellClass.NOT_PRESENT, CellClass.OFFLINE, CellClass.FREE, CellClass.PAGE_OFFLINE,
            CellClass.SB_PLUGGED, CellClass.MOVABLE, CellClass.SB_MOVABLE, CellClass.ISOLATED,
            CellClass.RECLAIMABLE, CellClass.RESERVED, CellClass.SB_KERNEL,
            CellClass.UNMOVABLE, CellClass.PINNED, CellClass.PB_UNKNOWN,
            CellClass.PB_MOVABLE, CellClass.PB_RECLAIMABLE, CellClass.PB_HIGHATOMIC,
            CellClass.PB_UNMOVABLE, CellClass.PB_ISOLATE)
RANK = np.zeros(NR_CLASSES, np.uint8)
RANK[[int(c) for c in PRIORITY]] = np.arange(NR_CLASSES, dtype=np.uint8)
UNRANK = np.array([int(c) for c in PRIORITY], np.uint8)

# Balloon pages are PageOffline in the kernel too (PG_balloon became PG_offline in
# 5.0), but they are drawn as movable, which they are (balloon compaction); the
# PageOffline colour stays with virtio-mem's unplugged memory (docs/glossary.md).
_KIND_CLASS = {PageKind.ANON: CellClass.MOVABLE, PageKind.FILE: CellClass.MOVABLE,
               PageKind.SHMEM: CellClass.MOVABLE, PageKind.BALLOON: CellClass.MOVABLE,
               PageKind.SLAB_RECLAIMABLE: CellClass.RECLAIMABLE}
_STATE_CLASS = {PageState.ABSENT: CellClass.NOT_PRESENT, PageState.OFFLINE: CellClass.OFFLINE,
                PageState.RESERVED: CellClass.RESERVED, PageState.FREE: CellClass.FREE,
                PageState.PAGE_OFFLINE: CellClass.PAGE_OFFLINE}


def kind_class(kind: PageKind) -> CellClass:
    """The class of an allocated, unpinned page of ``kind``."""
    return _KIND_CLASS.get(kind, CellClass.UNMOVABLE)


def state_class(state: int, kind: int = 0, pinned: bool = False) -> CellClass:
    """The class of one page from its memmap fields (the scalar rule)."""
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
