"""Memory compaction: gather free memory into large blocks by moving movable pages.

Compaction defragments one zone with two scanners.  The *migrate scanner*
walks pageblocks up from the zone's start and isolates movable pages
(order-0 LRU pages and balloon pages), 32 at a time; the *free scanner*
walks pageblocks down from the zone's end and takes free pages out of the
buddy allocator as destinations, from Movable pageblocks only.  Each batch
is migrated (``migrate_pages()`` with ``compaction_alloc()`` handing out
the destinations), so used pages gather at the top of the zone and free
pages merge into large blocks at the bottom.  A run ends when the scanners
meet (COMPACT_COMPLETE), or, when compacting for an order, as soon as a
free block of that order exists (COMPACT_SUCCESS).  Whatever destinations
are left go back to the buddy allocator.

Who compacts:

* ``compact_nodes`` is ``echo 1 > /proc/sys/vm/compact_memory``: every
  populated zone, synchronously, from end to end (order -1 never stops
  early);
* ``try_to_compact_pages`` is direct compaction, run by an allocation of
  order > 0 that may reclaim (``alloc_pages_direct_compact``, called from
  the allocator's slow path): async first, then sync;
* kcompactd, woken (``wakeup_kcompactd``) by kswapd when it finishes a
  high-order wakeup, or instead of kswapd when a zone has enough free
  memory but too little of it in large blocks, compacts each zone for that
  order (``kcompactd_do_work``).

Compaction only wants *some* free block of the order; ``alloc_contig_range``
needs *a given* range empty.  That is why the latter does its own
migration (``vmemlab.migrate.migrate_range``): it isolates the range's
pageblocks and moves every page out of them, to destinations anywhere
else, which compaction never does.  Both move pages with the same
machinery (``vmemlab.migrate.move_folios_to`` and ``move_folio``).

Counters (``/proc/vmstat``, through ``node.count_event``): compact_stall,
compact_fail, compact_success (direct compaction), compact_migrate_scanned,
compact_free_scanned, compact_isolated, compact_daemon_wake,
compact_daemon_migrate_scanned, compact_daemon_free_scanned, plus
pgmigrate_success / pgmigrate_fail.  Trace events are named after the
tracepoints of include/trace/events/compaction.h.

Simplifications (docs/glossary.md): the scanners walk pageblock by
pageblock; the kernel's shortcuts (``fast_isolate_freepages``,
``fast_find_migrateblock``, pageblock skip hints, scanner positions cached
between runs) are left out, so each run starts at the zone's two ends, as
``compact_memory`` and the last-resort priority always do.  kcompactd runs
at once when woken, like vmemlab's kswapd, and there is no proactive
compaction (the 500 ms fragmentation-score check).  No free page is
"captured" for the compacting task: the allocation retries after
compaction.  Balloon pages move through the balloon driver, which takes its
own destination from the allocator.

Kernel: mm/compaction.c (compact_zone, isolate_migratepages,
isolate_freepages, compaction_alloc, __compact_finished,
compaction_suitable, try_to_compact_pages, compact_node, kcompactd);
mm/page_alloc.c __alloc_pages_direct_compact(); include/linux/compaction.h
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import IntEnum
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from .constants import ENOMEM, MigrateType, PageFlag, PageKind, PageState
from .fallback import find_suitable_fallback
from .freelist import del_page_from_free_list
from .gfp import GFP_KERNEL, Gfp
from .metrics import fragmentation_index
from .migrate import COMPACT_CLUSTER_MAX, MigrateStats, move_folio, move_folios_to
from .page_alloc import (
    ALLOC_WMARK_MASK,
    AllocRequest,
    free_pages_ok,
    get_page_from_freelist,
    zone_watermark_ok,
)
from .trace import Event, MmMigratePages

if TYPE_CHECKING:
    from .node import Node
    from .zone import Zone

PAGE_ALLOC_COSTLY_ORDER = 3      # orders above are "costly"
COMPACT_MAX_DEFER_SHIFT = 6      # skip compaction up to 64 times after failures
EXTFRAG_THRESHOLD = 500          # vm.extfrag_threshold: below, failures are lack of memory
WMARK_MIN = 0

_FREE, _ALLOCATED = int(PageState.FREE), int(PageState.ALLOCATED)
_PAGE_OFFLINE = int(PageState.PAGE_OFFLINE)
_LRU = np.array([PageKind(k).lru for k in range(max(PageKind) + 1)], dtype=bool)
_MOVABLE_PB = (int(MigrateType.MOVABLE),)      # no CMA pageblocks in vmemlab


class CompactResult(IntEnum):
    """What a compaction run ended with.  Kernel: include/linux/compaction.h"""

    NOT_SUITABLE_ZONE = 0
    SKIPPED = 1
    DEFERRED = 2
    NO_SUITABLE_PAGE = 3
    CONTINUE = 4
    COMPLETE = 5
    PARTIAL_SKIPPED = 6
    CONTENDED = 7
    SUCCESS = 8

    def __str__(self) -> str:
        return self.name.lower()


class MigrateMode(IntEnum):
    """How hard migration tries.  Kernel: include/linux/migrate_mode.h"""

    MIGRATE_ASYNC = 0
    MIGRATE_SYNC_LIGHT = 1
    MIGRATE_SYNC = 2

    def __str__(self) -> str:
        return self.name


class CompactPriority(IntEnum):
    """Direct compaction's effort, highest first.  Kernel: include/linux/compaction.h"""

    SYNC_FULL = 0     # MIN_COMPACT_PRIORITY: sync, whole zone, any pageblock a target
    SYNC_LIGHT = 1    # DEF_COMPACT_PRIORITY
    ASYNC = 2         # INIT_COMPACT_PRIORITY


# -- trace events (include/trace/events/compaction.h) -------------------------------
_PFN_FIELDS = ("zone_start", "migrate_pfn", "free_pfn", "zone_end", "start_pfn", "end_pfn")


@dataclass(frozen=True)
class _CompactionEvent(Event):
    """Compaction tracepoints print pfns in hex."""

    def __str__(self) -> str:
        return " ".join([f"{self.name}:", *(
            f"{f.name}={getattr(self, f.name):#x}" if f.name in _PFN_FIELDS
            else f"{f.name}={getattr(self, f.name)}" for f in fields(self))])


@dataclass(frozen=True)
class MmCompactionBegin(_CompactionEvent):
    """A zone's compaction starts: where the two scanners start."""

    name: ClassVar[str] = "mm_compaction_begin"
    zone_start: int
    migrate_pfn: int
    free_pfn: int
    zone_end: int
    mode: str


@dataclass(frozen=True)
class MmCompactionEnd(_CompactionEvent):
    """A zone's compaction ends: where the scanners stopped, and why."""

    name: ClassVar[str] = "mm_compaction_end"
    zone_start: int
    migrate_pfn: int
    free_pfn: int
    zone_end: int
    mode: str
    status: str


@dataclass(frozen=True)
class MmCompactionIsolateMigratepages(_CompactionEvent):
    """The migrate scanner scanned [start_pfn, end_pfn) and took nr_taken pages."""

    name: ClassVar[str] = "mm_compaction_isolate_migratepages"
    start_pfn: int
    end_pfn: int
    nr_scanned: int
    nr_taken: int


@dataclass(frozen=True)
class MmCompactionIsolateFreepages(_CompactionEvent):
    """The free scanner scanned [start_pfn, end_pfn) and took nr_taken free pages."""

    name: ClassVar[str] = "mm_compaction_isolate_freepages"
    start_pfn: int
    end_pfn: int
    nr_scanned: int
    nr_taken: int


@dataclass(frozen=True)
class MmCompactionMigratepages(_CompactionEvent):
    """One migrate_pages() call of compaction: pages moved and pages that stayed."""

    name: ClassVar[str] = "mm_compaction_migratepages"
    nr_migratepages: int
    nr_failed: int


@dataclass(frozen=True)
class MmCompactionFinished(_CompactionEvent):
    """compact_finished()'s verdict for the run."""

    name: ClassVar[str] = "mm_compaction_finished"
    zone: str
    order: int
    status: str


@dataclass(frozen=True)
class MmCompactionSuitable(_CompactionEvent):
    """compaction_suitable(): is it worth compacting this zone for this order?"""

    name: ClassVar[str] = "mm_compaction_suitable"
    zone: str
    order: int
    status: str


@dataclass(frozen=True)
class MmCompactionTryToCompactPages(Event):
    """Direct compaction for an allocation."""

    name: ClassVar[str] = "mm_compaction_try_to_compact_pages"
    order: int
    gfp_flags: int
    prio: int


@dataclass(frozen=True)
class MmCompactionDeferred(_CompactionEvent):
    """Direct compaction or kcompactd skipped a zone that failed recently."""

    name: ClassVar[str] = "mm_compaction_deferred"
    zone: str
    order: int
    considered: int
    defer_shift: int
    order_failed: int


@dataclass(frozen=True)
class MmCompactionWakeupKcompactd(_CompactionEvent):
    """Someone woke kcompactd for an order."""

    name: ClassVar[str] = "mm_compaction_wakeup_kcompactd"
    nid: int
    order: int
    highest_zoneidx: int


@dataclass(frozen=True)
class MmCompactionKcompactdWake(_CompactionEvent):
    """kcompactd starts its work."""

    name: ClassVar[str] = "mm_compaction_kcompactd_wake"
    nid: int
    order: int
    highest_zoneidx: int


# -- per-zone and per-node state -------------------------------------------------------
@dataclass
class ZoneDefer:
    """A zone's compaction deferral (struct zone compact_considered...)."""

    considered: int = 0
    defer_shift: int = 0
    order_failed: int = 0


@dataclass
class NodeCompaction:
    """Compaction state of a node: deferral per zone, what kcompactd was asked for."""

    defer: dict[int, ZoneDefer] = field(default_factory=dict)
    kcompactd_max_order: int = 0
    kcompactd_highest_zoneidx: int = -1
    history: list[CompactControl] = field(default_factory=list)

    def zone(self, zone: Zone) -> ZoneDefer:
        return self.defer.setdefault(zone.idx, ZoneDefer())


def compaction_state(node: Node) -> NodeCompaction:
    """The node's compaction state (made on first use)."""
    if node.compaction is None:
        node.compaction = NodeCompaction(kcompactd_highest_zoneidx=len(node.zones) - 1)
    return node.compaction


def defer_compaction(zone: Zone, order: int) -> None:
    """A compaction of ``order`` failed: skip the next 2**defer_shift attempts."""
    d = compaction_state(zone.node).zone(zone)
    d.considered = 0
    d.defer_shift = min(d.defer_shift + 1, COMPACT_MAX_DEFER_SHIFT)
    if order < d.order_failed:
        d.order_failed = order


def compaction_deferred(zone: Zone, order: int) -> bool:
    """Should this attempt be skipped?  Kernel: compaction_deferred()"""
    d = compaction_state(zone.node).zone(zone)
    if order < d.order_failed:
        return False
    limit = 1 << d.defer_shift
    d.considered += 1
    if d.considered >= limit:
        d.considered = limit
        return False
    zone.node.emit(MmCompactionDeferred(zone.name, order, d.considered, d.defer_shift,
                                        d.order_failed))
    return True


def compaction_defer_reset(zone: Zone, order: int, alloc_success: bool) -> None:
    """Compaction of ``order`` worked (or an allocation did).  Kernel: compaction_defer_reset()"""
    d = compaction_state(zone.node).zone(zone)
    if alloc_success:
        d.considered = d.defer_shift = 0
    if order >= d.order_failed:
        d.order_failed = order + 1


# -- the control structure ---------------------------------------------------------------
@dataclass
class CompactControl:
    """One compaction run of one zone (struct compact_control), and what it did.

    ``order`` -1 means "until the scanners meet" (compact_memory).
    ``freepages[o]`` holds the destinations the free scanner isolated, as
    heads of free blocks of order ``o``, off the free lists; ``want`` is
    how many pages of the batch still need one (cc->nr_migratepages).
    """

    zone: Zone
    order: int = -1
    mode: MigrateMode = MigrateMode.MIGRATE_SYNC
    gfp: int = int(GFP_KERNEL)
    migratetype: int = int(MigrateType.MOVABLE)
    highest_zoneidx: int = 0
    alloc_flags: int = 0
    direct_compaction: bool = False
    whole_zone: bool = True
    ignore_block_suitable: bool = False
    daemon: bool = False
    migrate_pfn: int = 0
    free_pfn: int = 0
    total_migrate_scanned: int = 0
    total_free_scanned: int = 0
    nr_isolated: int = 0
    nr_freepages: int = 0
    want: int = 0
    freepages: list[list[int]] = field(default_factory=list)
    stats: MigrateStats = field(default_factory=MigrateStats)
    result: CompactResult = CompactResult.CONTINUE

    def __post_init__(self) -> None:
        if not self.freepages:
            self.freepages = [[] for _ in range(self.zone.node.geo.max_page_order + 1)]

    @property
    def node(self) -> Node:
        return self.zone.node

    @property
    def pageblock_order(self) -> int:
        return self.node.geo.pageblock_order

    @property
    def free_block(self) -> int | None:
        """The lowest free block of at least ``order`` (pageblock order for -1) now, or None."""
        order = self.order if self.order >= 0 else self.pageblock_order
        heads = [pfn for o in range(order, len(self.zone.free_area))
                 for lst in self.zone.free_area[o].free_list for pfn in lst]
        return min(heads, default=None)

    def summary(self) -> str:
        """One line: the zone, how it ended, what the scanners did."""
        s = self.stats
        return (f"zone {self.zone.name:<8} order {self.order:>2} {str(self.mode):<18} "
                f"{str(self.result):<16} migrate scanned {self.total_migrate_scanned}, "
                f"free scanned {self.total_free_scanned}, isolated {self.nr_isolated}, "
                f"migrated {s.nr_migrated}, failed {len(s.failed)}")


def _pb_start(pfn: int, pbo: int) -> int:
    return pfn >> pbo << pbo


def _pb_end(pfn: int, pbo: int) -> int:
    return ((pfn >> pbo) + 1) << pbo


def pageblock_in_zone(zone: Zone, start: int) -> bool:
    """The pageblock at ``start`` belongs to ``zone`` and has memory (pageblock_pfn_to_page)."""
    mm, pbo = zone.node.mm, zone.node.geo.pageblock_order
    pb = start >> pbo
    return (pb < mm.pb_zone.size and int(mm.pb_zone[pb]) == zone.idx
            and int(mm.state[start]) not in (int(PageState.ABSENT), int(PageState.OFFLINE)))


def compact_scanners_met(cc: CompactControl) -> bool:
    """The free scanner reached the migrate scanner's pageblock (or below it)."""
    pbo = cc.pageblock_order
    return (cc.free_pfn >> pbo) <= (cc.migrate_pfn >> pbo)


# -- the migrate scanner ------------------------------------------------------------------
def suitable_migration_source(cc: CompactControl, start: int) -> bool:
    """Async direct compaction takes only pageblocks of the allocation's migratetype."""
    mm = cc.node.mm
    if int(mm.order[start]) >= cc.pageblock_order and int(mm.state[start]) == _ALLOCATED:
        return False                     # pageblock_skip_persistent(): a huge compound page
    if cc.mode != MigrateMode.MIGRATE_ASYNC or not cc.direct_compaction:
        return True
    block_mt = int(mm.pb_mt[start >> cc.pageblock_order])
    if cc.migratetype == MigrateType.MOVABLE:
        return block_mt in _MOVABLE_PB
    return block_mt == cc.migratetype


def migrate_candidates(cc: CompactControl, low: int, end: int) -> np.ndarray:
    """Pfns in [low, end) that isolate_migratepages_block() takes, in scan order.

    Order-0 LRU pages of any kind (ramfs too: they are on the LRU, their
    migration fails later), except anonymous pages pinned long-term (more
    references than mappings); balloon pages of a driver with movable_ops.
    Free blocks and compound pages are stepped over whole.
    """
    from .page_isolation import movable_ops_mask

    mm = cc.node.mm
    state, kind = mm.state[low:end], mm.kind[low:end]
    lru = (state == _ALLOCATED) & (mm.order[low:end] == 0) & _LRU[kind]
    pinned = ((mm.flags[low:end] & PageFlag.PINNED) != 0) & (kind == PageKind.ANON)
    balloon = (state == _PAGE_OFFLINE) & movable_ops_mask(cc.node, kind)
    return low + np.flatnonzero((lru & ~pinned) | balloon)


def isolate_migratepages(cc: CompactControl) -> np.ndarray:
    """Walk pageblocks from ``migrate_pfn`` up to the free scanner; isolate from the first
    suitable one, up to COMPACT_CLUSTER_MAX pages.  Returns the isolated pfns.

    Kernel: mm/compaction.c, isolate_migratepages(), isolate_migratepages_block()
    """
    pbo, zone = cc.pageblock_order, cc.zone
    low = cc.migrate_pfn
    block_end = _pb_end(low, pbo)
    while block_end <= cc.free_pfn:
        start = max(_pb_start(low, pbo), zone.zone_start_pfn)
        if not pageblock_in_zone(zone, start) or not suitable_migration_source(cc, start):
            cc.migrate_pfn = low = block_end
            block_end += 1 << pbo
            continue
        cands = migrate_candidates(cc, low, block_end)[:COMPACT_CLUSTER_MAX]
        stop = int(cands[-1]) + 1 if len(cands) == COMPACT_CLUSTER_MAX else block_end
        cc.total_migrate_scanned += stop - low
        cc.nr_isolated += len(cands)
        if len(cands):
            cc.node.count_event("compact_isolated", len(cands))
        cc.node.emit(MmCompactionIsolateMigratepages(low, stop, stop - low, len(cands)))
        cc.migrate_pfn = stop
        return cands
    return np.zeros(0, np.int64)


# -- the free scanner ---------------------------------------------------------------------
def suitable_migration_target(cc: CompactControl, start: int) -> bool:
    """A pageblock the free scanner may take pages from: Movable, and not already free.

    Kernel: mm/compaction.c, suitable_migration_target()
    """
    mm = cc.node.mm
    if int(mm.state[start]) == _FREE and int(mm.order[start]) >= cc.pageblock_order:
        return False
    if cc.ignore_block_suitable:
        return True
    return int(mm.pb_mt[start >> cc.pageblock_order]) in _MOVABLE_PB


def isolate_free_page(zone: Zone, pfn: int, order: int) -> bool:
    """Take one free block off its list as a compaction destination (if the zone can spare
    it: the min watermark must hold after).  Kernel: mm/page_alloc.c, __isolate_free_page()"""
    mt = int(zone.node.mm.owner[pfn])
    if mt != MigrateType.ISOLATE:
        mark = zone.watermark[WMARK_MIN] + (1 << order)
        if not zone_watermark_ok(zone, 0, mark, 0, 0):
            return False
    del_page_from_free_list(zone, pfn, order, mt)
    return True


def isolate_freepages_block(cc: CompactControl, start: int, end: int) -> int:
    """Isolate free blocks of [start, end), lowest first, until there are as many free
    pages as pages to migrate.  Returns where the scan stopped.

    Kernel: mm/compaction.c, isolate_freepages_block() (non-strict)
    """
    mm, zone = cc.node.mm, cc.zone
    seg = slice(start, end)
    heads = start + np.flatnonzero((mm.state[seg] == _FREE) & (mm.order[seg] >= 0))
    stop, taken, scanned = end, 0, 0
    for head in heads.tolist():
        order = int(mm.order[head])
        if not isolate_free_page(zone, head, order):
            stop = head
            break
        cc.freepages[order].append(head)
        cc.nr_freepages += 1 << order
        taken += 1 << order
        if cc.nr_freepages >= cc.want:
            stop = head + (1 << order)
            break
    scanned = stop - start
    cc.total_free_scanned += scanned
    if taken:
        cc.node.count_event("compact_isolated", taken)
    cc.node.emit(MmCompactionIsolateFreepages(start, stop, scanned, taken))
    return stop


def isolate_freepages(cc: CompactControl) -> None:
    """Walk pageblocks down from ``free_pfn`` to the migrate scanner's pageblock, taking
    free pages from suitable ones until there are enough destinations.

    Kernel: mm/compaction.c, isolate_freepages()
    """
    pbo, zone = cc.pageblock_order, cc.zone
    nr = 1 << pbo
    isolate_start = cc.free_pfn
    block_start = _pb_start(isolate_start, pbo)
    block_end = min(block_start + nr, zone.zone_end_pfn)
    low = _pb_end(cc.migrate_pfn, pbo)
    while block_start >= low:
        if pageblock_in_zone(zone, block_start) and suitable_migration_target(cc, block_start):
            isolate_start = isolate_freepages_block(cc, isolate_start, block_end)
            if cc.nr_freepages >= cc.want:
                if isolate_start >= block_end:
                    isolate_start = block_start - nr
                break
            if isolate_start < block_end:
                break                  # the zone could not spare a page: stop here
        block_end, block_start = block_start, block_start - nr
        isolate_start = block_start
    cc.free_pfn = isolate_start


def compaction_alloc(cc: CompactControl) -> int | None:
    """A destination page: the lowest order isolated block, split down to one page.

    Kernel: mm/compaction.c, compaction_alloc()
    """
    order = next((o for o, heads in enumerate(cc.freepages) if heads), None)
    if order is None:
        isolate_freepages(cc)
        if not cc.nr_freepages:
            return None
        return compaction_alloc(cc)
    pfn = cc.freepages[order].pop(0)
    while order > 0:                   # keep the upper halves for later calls
        order -= 1
        cc.freepages[order].insert(0, pfn + (1 << order))
    cc.nr_freepages -= 1
    return pfn


def release_freepages(cc: CompactControl) -> None:
    """Give every isolated destination that was not used back to the buddy allocator."""
    for order, heads in enumerate(cc.freepages):
        for pfn in heads:
            free_pages_ok(cc.zone, pfn, order)
            cc.node.count_event("pgfree", 1 << order)
        heads.clear()
    cc.nr_freepages = 0


# -- migration ----------------------------------------------------------------------------
def _hand_out(cc: CompactControl, dsts: list[int]) -> np.ndarray:
    """Destinations become pages of no owner yet, as compaction_alloc()'s caller gets them."""
    pfns = np.array(dsts, np.int64)
    cc.node.mm.mark_allocated_pfns(pfns, PageKind.ANON, -1)
    cc.zone.nr_kind[PageKind.ANON] += len(pfns)
    return pfns


def compact_migrate_pages(cc: CompactControl, pfns: np.ndarray) -> int:
    """migrate_pages(compaction_alloc): move the isolated pages; 0, failures, or -ENOMEM.

    Order-0 LRU pages go to compaction's destinations, in order; ramfs
    pages fail (dirty, no writeback); balloon pages move through their
    driver.  Kernel: mm/migrate.c migrate_pages(); mm/compaction.c
    compaction_alloc()
    """
    node, mm = cc.node, cc.node.mm
    kinds = mm.kind[pfns]
    fails = pfns[(kinds == PageKind.RAMFS) & (mm.state[pfns] == _ALLOCATED)]
    balloon = pfns[mm.state[pfns] == _PAGE_OFFLINE]
    plain = pfns[(mm.state[pfns] == _ALLOCATED) & (kinds != PageKind.RAMFS)]
    before = cc.stats.nr_migrated
    dsts: list[int] = []
    while len(dsts) < len(plain):
        cc.want = len(plain) - len(dsts)          # cc->nr_migratepages still to place
        got = compaction_alloc(cc)
        if got is None:
            break
        dsts.append(got)
    move_folios_to(node, plain[:len(dsts)], _hand_out(cc, dsts), cc.stats)
    failed = [int(p) for p in fails]
    for pfn in balloon.tolist():
        if move_folio(node, pfn, cc.gfp | int(Gfp.MOVABLE), cc.stats) != 0:
            failed.append(pfn)
    cc.stats.failed += failed
    moved = cc.stats.nr_migrated - before
    unplaced = len(plain) - len(dsts)       # no destination: put back, counted as failed
    node.count_event("pgmigrate_success", moved)
    node.count_event("pgmigrate_fail", len(failed) + unplaced)
    node.emit(MmMigratePages(moved, len(failed) + unplaced, str(cc.mode), "compaction"))
    node.emit(MmCompactionMigratepages(moved, len(failed) + unplaced))
    return ENOMEM if unplaced else len(failed)


# -- when to stop --------------------------------------------------------------------------
def compact_finished(cc: CompactControl) -> CompactResult:
    """COMPLETE when the scanners met; for an order, SUCCESS once a block of it is free.

    Kernel: mm/compaction.c, __compact_finished()
    """
    if compact_scanners_met(cc):
        ret = CompactResult.COMPLETE if cc.whole_zone else CompactResult.PARTIAL_SKIPPED
    elif cc.order == -1 or cc.migrate_pfn & ((1 << cc.pageblock_order) - 1):
        return CompactResult.CONTINUE   # compact_memory; or finish the pageblock first
    else:
        ret = CompactResult.CONTINUE
        for order in range(cc.order, len(cc.zone.free_area)):
            area = cc.zone.free_area[order]
            if area.free_list[cc.migratetype] or find_suitable_fallback(
                    cc.zone, area, order, cc.migratetype, True) >= 0:
                ret = CompactResult.SUCCESS
                break
    cc.node.emit(MmCompactionFinished(cc.zone.name, cc.order, str(ret)))
    return ret


def compaction_suitable(zone: Zone, order: int, highest_zoneidx: int) -> bool:
    """Enough free order-0 memory to compact with, and (for costly orders) the failure is
    fragmentation, not lack of memory.  Kernel: mm/compaction.c, compaction_suitable()"""
    mark = zone.low_wmark_pages() if order > PAGE_ALLOC_COSTLY_ORDER else zone.min_wmark_pages()
    mark += 2 << order                                   # compact_gap()
    suitable = zone_watermark_ok(zone, 0, mark, highest_zoneidx, 0)
    status = CompactResult.CONTINUE if suitable else CompactResult.SKIPPED
    if suitable and order > PAGE_ALLOC_COSTLY_ORDER:
        index = fragmentation_index(zone, order)
        if 0 <= index <= EXTFRAG_THRESHOLD:
            suitable, status = False, CompactResult.NOT_SUITABLE_ZONE
    zone.node.emit(MmCompactionSuitable(zone.name, order, str(status)))
    return suitable


# -- one zone -------------------------------------------------------------------------------
def compact_zone(cc: CompactControl) -> CompactResult:
    """Compact one zone: migrate from the bottom, free from the top, until finished.

    Kernel: mm/compaction.c, compact_zone()
    """
    zone, node = cc.zone, cc.node
    pbo = cc.pageblock_order
    if cc.order != -1:
        mark = zone.wmark_pages(cc.alloc_flags & ALLOC_WMARK_MASK)
        if zone_watermark_ok(zone, cc.order, mark, cc.highest_zoneidx, cc.alloc_flags):
            return _done(cc, CompactResult.SUCCESS)
        if not compaction_suitable(zone, cc.order, cc.highest_zoneidx):
            return _done(cc, CompactResult.SKIPPED)
    cc.migrate_pfn = zone.zone_start_pfn
    cc.free_pfn = _pb_start(zone.zone_end_pfn - 1, pbo)
    node.emit(MmCompactionBegin(zone.zone_start_pfn, cc.migrate_pfn, cc.free_pfn,
                                zone.zone_end_pfn, str(cc.mode)))
    ret = compact_finished(cc)
    while ret == CompactResult.CONTINUE:
        pfns = isolate_migratepages(cc)
        if len(pfns):
            err = compact_migrate_pages(cc, pfns)
            if err == ENOMEM and not compact_scanners_met(cc):
                ret = CompactResult.CONTENDED
                break
        ret = compact_finished(cc)
    release_freepages(cc)
    node.count_event("compact_daemon_migrate_scanned" if cc.daemon else
                     "compact_migrate_scanned", cc.total_migrate_scanned)
    node.count_event("compact_daemon_free_scanned" if cc.daemon else
                     "compact_free_scanned", cc.total_free_scanned)
    node.emit(MmCompactionEnd(zone.zone_start_pfn, cc.migrate_pfn, cc.free_pfn,
                              zone.zone_end_pfn, str(cc.mode), str(ret)))
    return _done(cc, ret)


def _done(cc: CompactControl, ret: CompactResult) -> CompactResult:
    cc.result = ret
    compaction_state(cc.node).history.append(cc)
    return ret


# -- who compacts ----------------------------------------------------------------------------
def compact_node(node: Node) -> list[CompactControl]:
    """Compact every populated zone, synchronously, end to end (order -1).

    Kernel: mm/compaction.c, compact_node()
    """
    out = []
    for zone in node.zones:
        if zone.populated() and zone.managed():
            cc = CompactControl(zone, -1, MigrateMode.MIGRATE_SYNC, int(GFP_KERNEL),
                                highest_zoneidx=zone.idx)
            compact_zone(cc)
            out.append(cc)
    return out


def compact_nodes(node: Node) -> list[CompactControl]:
    """``echo 1 > /proc/sys/vm/compact_memory``: compact every node (vmemlab has one).

    Kernel: mm/compaction.c, sysctl_compaction_handler() -> compact_nodes()
    """
    return compact_node(node)


def compact_zone_order(zone: Zone, order: int, gfp: int, prio: CompactPriority,
                       alloc_flags: int, highest_zoneidx: int) -> CompactResult:
    """Direct compaction of one zone at a priority.  Kernel: compact_zone_order()"""
    req_mt = int(zone.node.gfp_migratetype(_gfp_mt(gfp)))
    full = prio == CompactPriority.SYNC_FULL
    cc = CompactControl(zone, order, MigrateMode.MIGRATE_ASYNC if prio == CompactPriority.ASYNC
                        else MigrateMode.MIGRATE_SYNC_LIGHT, gfp, req_mt, highest_zoneidx,
                        alloc_flags, direct_compaction=True, whole_zone=full,
                        ignore_block_suitable=full)
    return compact_zone(cc)


def _gfp_mt(gfp: int) -> MigrateType:
    from .gfp import gfp_migratetype

    return gfp_migratetype(Gfp(gfp))


def try_to_compact_pages(node: Node, order: int, gfp: int, alloc_flags: int, highest: int,
                         prio: CompactPriority) -> CompactResult:
    """Compact each zone of the zonelist until one would satisfy the allocation.

    Kernel: mm/compaction.c, try_to_compact_pages()
    """
    if not gfp & Gfp.IO:
        return CompactResult.SKIPPED
    node.emit(MmCompactionTryToCompactPages(order, gfp, int(prio)))
    rc = CompactResult.SKIPPED
    for zone in node.zonelist(highest):
        if prio > CompactPriority.SYNC_FULL and compaction_deferred(zone, order):
            rc = max(rc, CompactResult.DEFERRED)
            continue
        status = compact_zone_order(zone, order, gfp, prio, alloc_flags, highest)
        rc = max(rc, status)
        if status == CompactResult.SUCCESS:
            compaction_defer_reset(zone, order, False)
            break
        if prio != CompactPriority.ASYNC and status in (CompactResult.COMPLETE,
                                                        CompactResult.PARTIAL_SKIPPED):
            defer_compaction(zone, order)
    return CompactResult(rc)


def alloc_pages_direct_compact(node: Node, req: AllocRequest, alloc_flags: int,
                               prio: CompactPriority) -> tuple[Zone, int] | None:
    """Compact, then try the free lists again; counts compact_stall/success/fail.

    Kernel: mm/page_alloc.c, __alloc_pages_direct_compact()
    """
    result = try_to_compact_pages(node, req.order, req.gfp, alloc_flags, req.highest, prio)
    if result == CompactResult.SKIPPED:
        return None
    node.count_event("compact_stall")
    got = get_page_from_freelist(node, req.order, req.mt, req.highest, alloc_flags)
    if got is not None:
        compaction_defer_reset(got[0], req.order, True)
        node.count_event("compact_success")
    else:
        node.count_event("compact_fail")
    return got


def direct_compact_first(node: Node, req: AllocRequest,
                         alloc_flags: int) -> tuple[Zone, int] | None:
    """The slow path's first, async compaction: costly orders, or order > 0 for a
    non-movable allocation, before any reclaim.  Kernel: __alloc_pages_slowpath()"""
    if not (req.order > PAGE_ALLOC_COSTLY_ORDER
            or (req.order > 0 and req.mt != MigrateType.MOVABLE)):
        return None
    return alloc_pages_direct_compact(node, req, alloc_flags, CompactPriority.ASYNC)


def direct_compact_after_reclaim(node: Node, req: AllocRequest,
                                 alloc_flags: int) -> tuple[Zone, int] | None:
    """After reclaim gave up: compaction at the default priority, then (unless the request
    may not retry) at the highest.  Stands for the slow path's retries, whose
    should_compact_retry() raises the priority until MIN_COMPACT_PRIORITY."""
    costly = req.order > PAGE_ALLOC_COSTLY_ORDER
    noretry = bool(req.gfp & Gfp.NORETRY)
    first = CompactPriority.ASYNC if costly and noretry else CompactPriority.SYNC_LIGHT
    got = alloc_pages_direct_compact(node, req, alloc_flags, first)
    if got is None and not noretry and (not costly or req.gfp & Gfp.RETRY_MAYFAIL):
        got = alloc_pages_direct_compact(node, req, alloc_flags, CompactPriority.SYNC_FULL)
    return got


def kcompactd_node_suitable(node: Node) -> bool:
    """Some zone fails the order's min watermark but is worth compacting."""
    st = compaction_state(node)
    order, highest = st.kcompactd_max_order, st.kcompactd_highest_zoneidx
    for zone in node.zones[:highest + 1]:
        if not zone.populated() or not zone.managed():
            continue
        if zone_watermark_ok(zone, order, zone.min_wmark_pages(), highest, 0):
            continue
        if compaction_suitable(zone, order, highest):
            return True
    return False


def wakeup_kcompactd(node: Node, order: int, highest: int) -> list[CompactControl]:
    """Ask kcompactd to compact for ``order``; it runs at once (vmemlab's kcompactd, like
    its kswapd, is synchronous).  Returns the zones it compacted.

    Kernel: mm/compaction.c, wakeup_kcompactd()
    """
    if not order:
        return []
    st = compaction_state(node)
    st.kcompactd_max_order = max(st.kcompactd_max_order, order)
    st.kcompactd_highest_zoneidx = min(st.kcompactd_highest_zoneidx, highest)
    if not kcompactd_node_suitable(node):
        return []
    node.emit(MmCompactionWakeupKcompactd(node.node_id, order, highest))
    return kcompactd_do_work(node)


def kcompactd_do_work(node: Node) -> list[CompactControl]:
    """Compact each zone up to the highest asked for, for the order asked for.

    Kernel: mm/compaction.c, kcompactd_do_work()
    """
    st = compaction_state(node)
    order, highest = st.kcompactd_max_order, st.kcompactd_highest_zoneidx
    node.emit(MmCompactionKcompactdWake(node.node_id, order, highest))
    node.count_event("compact_daemon_wake")
    out = []
    for zone in node.zones[:highest + 1]:
        if not zone.populated() or not zone.managed() or compaction_deferred(zone, order):
            continue
        if zone_watermark_ok(zone, order, zone.min_wmark_pages(), zone.idx, 0):
            continue
        if not compaction_suitable(zone, order, zone.idx):
            continue
        cc = CompactControl(zone, order, MigrateMode.MIGRATE_SYNC_LIGHT, int(GFP_KERNEL),
                            int(MigrateType.MOVABLE), highest, whole_zone=False, daemon=True)
        status = compact_zone(cc)
        if status == CompactResult.SUCCESS:
            compaction_defer_reset(zone, order, False)
        elif status in (CompactResult.PARTIAL_SKIPPED, CompactResult.COMPLETE):
            defer_compaction(zone, order)
        out.append(cc)
    if st.kcompactd_max_order <= order:
        st.kcompactd_max_order = 0
    if st.kcompactd_highest_zoneidx >= highest:
        st.kcompactd_highest_zoneidx = len(node.zones) - 1
    return out


def compaction_cost_s(runs: list[CompactControl], page_shift: int) -> float:
    """Simulated seconds the runs take: every pfn scanned, every page copied.

    The same speeds as alloc_contig_range's (vmemlab.contig): 20 ns per pfn
    scanned, migration at 3.7 GB/s.
    """
    from .contig import MIGRATE_BYTES_PER_S, NS_PER_PAGE_SCANNED

    scanned = sum(cc.total_migrate_scanned + cc.total_free_scanned for cc in runs)
    copied = sum(cc.stats.nr_migrated for cc in runs) << page_shift
    return scanned * NS_PER_PAGE_SCANNED / 1e9 + copied / MIGRATE_BYTES_PER_S


def compaction_summary(runs: list[CompactControl]) -> str:
    """One line per zone compacted (what ``m.compact_memory()`` prints)."""
    return "\n".join(cc.summary() for cc in runs) + ("\n" if runs else "")


__all__ = ["CompactControl", "CompactPriority", "CompactResult", "MigrateMode",
           "alloc_pages_direct_compact", "compact_node", "compact_nodes", "compact_zone",
           "compaction_suitable", "compaction_summary", "try_to_compact_pages",
           "wakeup_kcompactd"]
