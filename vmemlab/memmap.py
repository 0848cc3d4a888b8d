"""The memmap: per-page and per-pageblock state as numpy arrays.

The kernel keeps one ``struct page`` per page frame (``mem_map``) and a few
bits per pageblock in a bitmap.  vmemlab keeps the same facts as a struct of
arrays, eight bytes per page:

==============  =====  ==========================================================
array           dtype  meaning
==============  =====  ==========================================================
``state``       u8     PageState: ABSENT, OFFLINE, RESERVED, FREE, ALLOCATED, ...
``order``       i8     order of the block whose first page this is, else -1
                       (free head: buddy_order(); allocated head: its order)
``kind``        u8     PageKind of an allocated page (anon, slab, ...)
``flags``       u8     PageFlag bits (pinned, dirty, refcount zero)
``owner``       i32    allocated page: the owner id (an activity or allocation);
                       free block head: the migratetype of the free list it is
                       on (the kernel's page->lru list membership, a union
                       with the owner fields in struct page)
``pb_mt``       u8     per pageblock: MigrateType (the pageblock bitmap)
``pb_zone``     u8     per pageblock: ZoneType of its pages, or NO_ZONE
``section_online`` bool per sparsemem section: online (pfn_to_online_page())
==============  =====  ==========================================================

Writers go through the setters below, one per transition, so every change to
the arrays is easy to find; the one exception is a free block's head
(its ``order`` and list in ``owner``), which only vmemlab.freelist writes,
as the kernel's set_buddy_order() and list_add() do.  No Python object
exists per page.

Kernel: include/linux/mm_types.h (struct page), include/linux/pageblock-flags.h
"""

from __future__ import annotations

import sys

import numpy as np

from .constants import (
    MIGRATE_PCPTYPES,
    NO_ZONE,
    Geometry,
    MigrateType,
    PageKind,
    PageState,
    Pfn,
)

NO_OWNER = -1
# Plain ints for array writes (numpy treats IntEnum members slowly).
_ABSENT, _OFFLINE = int(PageState.ABSENT), int(PageState.OFFLINE)
_RESERVED = int(PageState.RESERVED)
_FREE, _ALLOCATED, _PAGE_OFFLINE = (int(PageState.FREE), int(PageState.ALLOCATED),
                                    int(PageState.PAGE_OFFLINE))
_NONE = int(PageKind.NONE)
_UNMOVABLE = int(MigrateType.UNMOVABLE)
_VIEW_RUN = 4096   # runs up to this long are written through byte views (numpy's call costs more)
_ALLOCATED_BYTE = bytes((_ALLOCATED,))
_ORDER = sys.byteorder


class MemMap:
    """Per-page and per-pageblock arrays covering pfns ``[0, nr_pfns)``."""

    def __init__(self, geo: Geometry, nr_pfns: int) -> None:
        self.geo = geo
        self.nr_pfns = 0
        self.state = np.zeros(0, np.uint8)
        self.order = np.zeros(0, np.int8)
        self.kind = np.zeros(0, np.uint8)
        self.flags = np.zeros(0, np.uint8)
        self.owner = np.zeros(0, np.int32)
        self.pb_mt = np.zeros(0, np.uint8)
        self.pb_zone = np.zeros(0, np.uint8)
        self.section_online = np.zeros(0, bool)
        # page_group_by_mobility_disabled, mirrored here for set_pageblock_migratetype()
        self.mobility_disabled = False
        self.grow(nr_pfns)

    # -- size ------------------------------------------------------------
    def grow(self, nr_pfns: int) -> None:
        """Extend the arrays to cover ``nr_pfns`` pfns (rounded up to a memory block).

        New pfns are ABSENT and their pageblocks belong to no zone; boot and
        onlining give pageblocks their type (memmap_init_range()).
        """
        per_mb = self.geo.pages_per_memory_block
        nr_pfns = -(-nr_pfns // per_mb) * per_mb
        if nr_pfns <= self.nr_pfns:
            return
        extra = nr_pfns - self.nr_pfns
        self.state = _extend(self.state, extra, 0)
        self.order = _extend(self.order, extra, -1)
        self.kind = _extend(self.kind, extra, 0)
        self.flags = _extend(self.flags, extra, 0)
        self.owner = _extend(self.owner, extra, NO_OWNER)
        nr_pb = extra >> self.geo.pageblock_order
        self.pb_mt = _extend(self.pb_mt, nr_pb, int(MigrateType.MOVABLE))
        self.pb_zone = _extend(self.pb_zone, nr_pb, NO_ZONE)
        self.section_online = _extend(self.section_online, extra // self.geo.pages_per_section,
                                      False)
        self.nr_pfns = nr_pfns
        self._make_views()

    def _make_views(self) -> None:
        """memoryviews of the per-page arrays: a single page or a short run written
        through them skips numpy's indexing machinery, a few times quicker.

        ``head_order``/``head_owner`` take ints per pfn (a free block's head);
        the ``_b*`` byte views take runs of bytes.
        """
        self.head_order = memoryview(self.order)
        self.head_owner = memoryview(self.owner)
        self._bstate, self._bkind = memoryview(self.state), memoryview(self.kind)
        self._bflags, self._border = memoryview(self.flags), self.head_order.cast("B")
        self._bowner = self.head_owner.cast("B")

    def __getstate__(self) -> dict:
        """Copies and pickles carry the arrays; the views are made again."""
        return {k: v for k, v in self.__dict__.items() if not isinstance(v, memoryview)}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._make_views()

    def check_pfn(self, pfn: Pfn, what: str = "pfn") -> None:
        """Raise ValueError unless ``pfn`` lies inside the memmap."""
        if not isinstance(pfn, (int, np.integer)) or isinstance(pfn, bool):
            raise ValueError(f"{what}={pfn!r} is not an integer page frame number")
        if not 0 <= pfn < self.nr_pfns:
            raise ValueError(f"{what}={pfn:#x} is outside physical memory "
                             f"[0, {self.nr_pfns:#x})")

    # -- pageblocks ------------------------------------------------------
    def pageblock(self, pfn: Pfn) -> int:
        return pfn >> self.geo.pageblock_order

    def get_pageblock_migratetype(self, pfn: Pfn) -> MigrateType:
        """Kernel: include/linux/mmzone.h, get_pageblock_migratetype()"""
        return MigrateType(int(self.pb_mt[pfn >> self.geo.pageblock_order]))

    def pageblock_type(self, mt: int) -> int:
        """The type a pageblock really gets when set to ``mt``.

        With grouping by mobility disabled, every per-cpu type (Unmovable,
        Movable, Reclaimable) is stored as MIGRATE_UNMOVABLE.
        Kernel: mm/page_alloc.c, set_pageblock_migratetype()
        """
        return _UNMOVABLE if self.mobility_disabled and mt < MIGRATE_PCPTYPES else int(mt)

    def set_pageblock_migratetype(self, pfn: Pfn, mt: MigrateType) -> None:
        """Kernel: mm/page_alloc.c, set_pageblock_migratetype()"""
        self.pb_mt[pfn >> self.geo.pageblock_order] = self.pageblock_type(mt)

    def change_pageblock_range(self, pfn: Pfn, order: int, mt: MigrateType) -> None:
        """Set the type of every pageblock in an order-``order`` block.

        Kernel: mm/page_alloc.c, change_pageblock_range()
        """
        first = pfn >> self.geo.pageblock_order
        count = max(1, 1 << (order - self.geo.pageblock_order))
        self.pb_mt[first:first + count] = self.pageblock_type(mt)

    def set_section_online(self, start: Pfn, end: Pfn, online: bool) -> None:
        """Mark the sections covering ``[start, end)`` online or offline."""
        per = self.geo.pages_per_section
        self.section_online[start // per:-(-end // per)] = online

    def zone_of(self, pfn: Pfn) -> int:
        """page_zonenum(): the zone index of a pfn, or NO_ZONE."""
        return int(self.pb_zone[pfn >> self.geo.pageblock_order])

    def set_zone(self, start: Pfn, end: Pfn, zone: int) -> None:
        """Attach the pageblocks of ``[start, end)`` to a zone (set_page_links())."""
        pbo = self.geo.pageblock_order
        self.pb_zone[start >> pbo:end >> pbo] = zone

    # -- page transitions ------------------------------------------------
    def mark_absent(self, start: Pfn, end: Pfn) -> None:
        """Pages disappear: a hole, or memory removed (sparse_remove_section)."""
        self._reset(start, end, _ABSENT)

    def mark_offline(self, start: Pfn, end: Pfn) -> None:
        """Pages have a memmap but their section is offline (add_memory, offline_pages)."""
        self._reset(start, end, _OFFLINE)

    def mark_reserved(self, start: Pfn, end: Pfn) -> None:
        """memblock reservations become PageReserved (reserve_bootmem_region)."""
        self._reset(start, end, _RESERVED)

    def mark_page_offline(self, start: Pfn, end: Pfn, owner: int = NO_OWNER) -> None:
        """Pages become PageOffline: logically offline, owned by a driver."""
        self._reset(start, end, _PAGE_OFFLINE)
        self.owner[start:end] = owner

    def mark_page_offline_pfns(self, pfns: np.ndarray, owner: int) -> None:
        """Vectorized form of mark_page_offline for scattered pages (balloon)."""
        self.state[pfns] = _PAGE_OFFLINE
        self.order[pfns] = -1
        self.kind[pfns] = _NONE
        self.flags[pfns] = 0
        self.owner[pfns] = owner

    def mark_free(self, start: Pfn, end: Pfn) -> None:
        """Pages join the buddy allocator (PageBuddy is set on heads separately)."""
        self._reset(start, end, _FREE)

    def mark_free_pfns(self, pfns: np.ndarray) -> None:
        """Vectorized form of mark_free for scattered pages."""
        self.state[pfns] = _FREE
        self.order[pfns] = -1
        self.kind[pfns] = _NONE
        self.flags[pfns] = 0
        self.owner[pfns] = NO_OWNER

    def mark_allocated(self, start: Pfn, end: Pfn, kind: PageKind, owner: int,
                       order: int = 0) -> None:
        """Pages leave the buddy allocator as blocks of ``order``, used as ``kind``."""
        n = end - start
        if order == 0 and 0 < n <= _VIEW_RUN:
            zeros = bytes(n)
            self._bstate[start:end] = _ALLOCATED_BYTE * n
            self._bkind[start:end] = bytes((int(kind),)) * n
            self._bflags[start:end] = zeros
            self._border[start:end] = zeros
            self._bowner[start << 2:end << 2] = int(owner).to_bytes(4, _ORDER, signed=True) * n
            return
        self.state[start:end] = _ALLOCATED
        self.kind[start:end] = int(kind)
        self.flags[start:end] = 0
        self.owner[start:end] = owner
        if order == 0:
            self.order[start:end] = 0
        else:
            self.order[start:end] = -1
            self.order[start:end:1 << order] = order

    def mark_allocated_owners(self, start: Pfn, end: Pfn, kind: PageKind,
                              owners: list[tuple[int, int]]) -> None:
        """mark_allocated() of order-0 pages [start, end) held by several owners in a
        row: ``owners`` gives (pages, owner) along the range."""
        if len(owners) == 1:
            self.mark_allocated(start, end, kind, owners[0][1])
            return
        n = end - start
        if n > _VIEW_RUN:
            self.mark_allocated(start, end, kind, NO_OWNER)
            counts, ids = zip(*owners, strict=True)
            self.owner[start:end] = np.repeat(np.array(ids, np.int32), counts)
            return
        zeros = bytes(n)
        self._bstate[start:end] = _ALLOCATED_BYTE * n
        self._bkind[start:end] = bytes((int(kind),)) * n
        self._bflags[start:end] = zeros
        self._border[start:end] = zeros
        self._bowner[start << 2:end << 2] = b"".join(
            int(owner).to_bytes(4, _ORDER, signed=True) * pages for pages, owner in owners)

    def mark_allocated_pfns(self, pfns: np.ndarray, kind: PageKind, owner: int) -> None:
        """Vectorized form of mark_allocated for scattered order-0 pages."""
        self.state[pfns] = _ALLOCATED
        self.kind[pfns] = int(kind)
        self.flags[pfns] = 0
        self.owner[pfns] = owner
        self.order[pfns] = 0

    def set_flag(self, pfns: np.ndarray, flag: int) -> None:
        """Set a PageFlag bit on the given pages (pin, dirty, refcount zero)."""
        self.flags[pfns] |= np.uint8(flag)

    def clear_flag(self, pfns: np.ndarray, flag: int) -> None:
        """Clear a PageFlag bit on the given pages."""
        self.flags[pfns] &= np.uint8(~flag & 0xFF)

    def _reset(self, start: Pfn, end: Pfn, state: int) -> None:
        self.state[start:end] = state
        self.order[start:end] = -1
        self.kind[start:end] = _NONE
        self.flags[start:end] = 0
        self.owner[start:end] = NO_OWNER

    # -- queries ---------------------------------------------------------
    def page_is_buddy_head(self, pfn: Pfn, order: int) -> bool:
        """PageBuddy(page) && buddy_order(page) == order.  Kernel: mm/internal.h"""
        return self.state.item(pfn) == _FREE and self.order.item(pfn) == order

    def nbytes(self) -> int:
        """Bytes held by the arrays (the simulator's own memmap cost)."""
        arrays = (self.state, self.order, self.kind, self.flags, self.owner,
                  self.pb_mt, self.pb_zone, self.section_online)
        return sum(a.nbytes for a in arrays)


def _extend(arr: np.ndarray, extra: int, fill: int | bool) -> np.ndarray:
    """A copy of ``arr`` with ``extra`` more entries set to ``fill``.

    Zeros come from np.zeros, whose fresh pages the OS zeroes on first
    touch: no pass over memory that the boot writes anyway.
    """
    if fill == 0:
        out = np.zeros(len(arr) + extra, arr.dtype)
    else:
        out = np.empty(len(arr) + extra, arr.dtype)
        out[len(arr):] = fill
    out[:len(arr)] = arr
    return out


def memmap_bytes(geo: Geometry, nr_pfns: int) -> int:
    """Bytes the arrays of a memmap covering ``nr_pfns`` pfns take, from their dtypes."""
    empty = MemMap(geo, 0)
    per_page = sum(a.itemsize for a in (empty.state, empty.order, empty.kind, empty.flags,
                                        empty.owner))
    per_pageblock = empty.pb_mt.itemsize + empty.pb_zone.itemsize
    return (nr_pfns * per_page + (nr_pfns >> geo.pageblock_order) * per_pageblock
            + (nr_pfns // geo.pages_per_section) * empty.section_online.itemsize)
