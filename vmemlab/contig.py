"""alloc_contig_range(), free_contig_range() and alloc_contig_pages().

``alloc_contig_range(start, end)`` takes a given pfn range out of the page
allocator, whatever is in it now.  The kernel does it in phases, and so does
``ContigRange``, which can run one phase at a time for a step-through:

0. **gfp** (6.14+): unsupported gfp flags give -EINVAL before anything
   else; __GFP_COMP asks for one compound page (profile ``contig_gfp_check``).
1. **isolate**: mark the range's pageblocks MIGRATE_ISOLATE (5.19+: the
   pageblocks covering it; 5.8: the 4 MiB-aligned blocks around it, so an
   unmovable page in the *neighbouring* pageblock makes a 2 MiB request
   fail).  An unmovable page: -EBUSY.
2. **drain**: empty the per-CPU free lists of the zone (drain_all_pages()).
3. **migrate**: move every movable page out (-ENOMEM, -EINTR stop here;
   -EBUSY is noted and left for the test to catch).
4. **test**: every page must now be free on an isolated block, else -EBUSY.
5. **take**: remove the free blocks from the free lists (they may reach
   before ``start`` or past ``end``: ``outer_start``/``outer_end``).
6. **trim**: give back what lies outside [start, end).
7. **undo**: always return the pageblocks to MIGRATE_MOVABLE.

On failure the machine is exactly as consistent as before (the pages that
moved have moved; nothing is lost).  Nonsense the kernel never sees
(start >= end, pfns outside memory) raises ValueError.

Kernel: mm/page_alloc.c alloc_contig_range_noprof(), free_contig_range(),
alloc_contig_pages_noprof(), pfn_range_valid_contig(); mm/compaction.c
isolate_freepages_range()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from .constants import (
    EBUSY,
    EINTR,
    EINVAL,
    ENOMEM,
    MIGRATE_TYPES,
    MigrateType,
    PageKind,
    PageState,
    errname,
)
from .freelist import account_freepages, del_page_from_free_list, groups
from .gfp import Gfp, format_gfp, gfp_zone, parse_gfp
from .migrate import MigrateStats, migrate_range
from .page_isolation import (
    find_large_buddy,
    first_unmovable,
    isolation_range,
    start_isolate_page_range,
    test_pages_isolated,
    undo_isolate_page_range,
)
from .trace import Event

if TYPE_CHECKING:
    from collections.abc import Callable

    from .node import Node

_FREE, _ALLOCATED = int(PageState.FREE), int(PageState.ALLOCATED)
_RECLAIM_MASK = int(Gfp.IO | Gfp.FS | Gfp.DIRECT_RECLAIM | Gfp.KSWAPD_RECLAIM)
_ACTION_MASK = int(Gfp.COMP | Gfp.RETRY_MAYFAIL | Gfp.NOWARN | Gfp.ZERO)
_IGNORED = int(Gfp.DMA | Gfp.HIGHMEM | Gfp.DMA32 | Gfp.MOVABLE | Gfp.RECLAIMABLE | Gfp.WRITE
               | Gfp.HARDWALL | Gfp.THISNODE)

# Simulated cost, anchored on the kernel's measured speed (reference §9):
# about 20 ns per page to isolate/test/take a free range (a free 1 GiB in
# ~5 ms), migration at 3.7 GB/s for 4 KiB pages, and a fixed cost for the
# cross-CPU drains (lru_cache_disable(), drain_all_pages()).
NS_PER_PAGE_SCANNED = 20
MIGRATE_BYTES_PER_S = 3.7e9
DRAIN_NS = 100_000


@dataclass(frozen=True)
class AllocContigRange(Event):
    """One alloc_contig_range() call and its result (vmemlab's own event)."""

    name: ClassVar[str] = "alloc_contig_range"
    start_pfn: int
    end_pfn: int
    ret: int


@dataclass(frozen=True)
class PhaseResult:
    """What one phase did, as a step-through shows it."""

    phase: str
    rc: int
    text: str

    def __str__(self) -> str:
        return f"{self.phase:8} {errname(self.rc):>8}  {self.text}"


def check_range(node: Node, start: int, end: int) -> None:
    """ValueError for ranges the kernel's callers never pass."""
    for name, v in (("start_pfn", start), ("end_pfn", end)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise ValueError(f"{name}={v!r} is not an integer pfn")
    if not 0 <= start < end <= node.mm.nr_pfns:
        raise ValueError(f"[start_pfn={start:#x}, end_pfn={end:#x}) is not a non-empty range "
                         f"inside physical memory [0, {node.mm.nr_pfns:#x})")


def verify_gfp(gfp: int) -> int:
    """0, or -EINVAL for flags alloc_contig_range() does not support (6.14+).

    Zone, mobility and placement hints are ignored; only reclaim flags and
    a few action flags are allowed.  Kernel: __alloc_contig_verify_gfp_mask()
    """
    return EINVAL if (gfp & ~_IGNORED) & ~(_RECLAIM_MASK | _ACTION_MASK) else 0


class ContigRange:
    """alloc_contig_range() as a state machine: ``step()`` phase by phase, or ``run()``.

    After running: ``rc``; ``outer_start``/``outer_end``; ``stats`` (pages
    migrated, ``stats.moves`` as (src, dst, order)); ``busy_pfn``, the page
    that made it fail; ``results``, one PhaseResult per phase.
    """

    def __init__(self, node: Node, start: int, end: int, gfp: str | int = "GFP_KERNEL",
                 name: str = "alloc_contig_range", signal_pending: bool = False,
                 clock: Callable[[float], None] | None = None) -> None:
        check_range(node, start, end)
        self.clock = clock  # told each phase's simulated seconds, if given
        self.node, self.start, self.end = node, int(start), int(end)
        self.gfp = int(parse_gfp(gfp))
        self.name = name
        self.signal_pending = signal_pending
        self.zone = node.page_zone(self.start)
        self.phases = (("isolate", "migrate", "drain", "test", "take", "trim", "undo")
                       if node.profile.drain_per_pageblock else
                       ("isolate", "drain", "migrate", "test", "take", "trim", "undo"))
        self.next = 0
        self.rc: int | None = None
        self.failed_phase: str | None = None
        self.outer_start, self.outer_end = self.start, self.end
        self.stats = MigrateStats()
        self.busy_pfn: int | None = None
        self.results: list[PhaseResult] = []
        self.owner = -1
        self.cost_ns = 0

    @property
    def done(self) -> bool:
        return self.next >= len(self.phases)

    @property
    def phase(self) -> str:
        """The name of the phase ``step()`` runs next ("done" at the end)."""
        return "done" if self.done else self.phases[self.next]

    def run(self) -> int:
        """Run the remaining phases; return 0 or -errno like the kernel."""
        while not self.done:
            self.step()
        return int(self.rc)

    def step(self) -> PhaseResult:
        """Run one phase and return what it did."""
        if self.done:
            raise ValueError("alloc_contig_range already finished; rc="
                             f"{errname(self.rc or 0)}")
        name = self.phases[self.next]
        self.next += 1
        cost = self.cost_ns
        rc, text = getattr(self, f"_{name}")()
        if rc and self.rc is None:
            self.rc, self.failed_phase = rc, name
            self.next = self.phases.index("undo")
            if name == "isolate" and not self._undo_after_failed_isolation():
                self.next = len(self.phases)  # "return ret": no undo phase at all
        if self.done:
            self._finish()
        if self.clock is not None:
            self.clock((self.cost_ns - cost) / 1e9)
        result = PhaseResult(name, rc, text)
        self.results.append(result)
        return result

    # -- phases ---------------------------------------------------------
    def _isolate(self) -> tuple[int, str]:
        node = self.node
        if node.profile.contig_gfp_check and verify_gfp(self.gfp):
            return EINVAL, f"unsupported gfp flags {format_gfp(self.gfp)}"
        lo, hi = isolation_range(node, self.start, self.end)
        self.cost_ns += (hi - lo) * NS_PER_PAGE_SCANNED
        if node.profile.drain_per_pageblock:
            self.cost_ns += DRAIN_NS
        rc = start_isolate_page_range(node, self.start, self.end)
        if rc:
            self.busy_pfn = first_unmovable(node, self.start, self.end)
            what = self._describe(self.busy_pfn)
            return rc, f"[{lo:#x}, {hi:#x}): unmovable page at {what}"
        return 0, f"pageblocks [{lo:#x}, {hi:#x}) are MIGRATE_ISOLATE"

    def _drain(self) -> tuple[int, str]:
        from .pcp import drain_all_pages

        self.cost_ns += DRAIN_NS
        what = ("lru_add_drain_all(), drain_all_pages()" if self.node.profile.drain_per_pageblock
                else "drain_all_pages(zone)")
        freed = drain_all_pages(self.node, self.zone)
        return 0, f"{what}: {freed} pages back from the per-CPU lists"

    def _migrate(self) -> tuple[int, str]:
        zone_idx = self.zone.zid if self.zone is not None else -1
        rc, self.stats = migrate_range(self.node, self.start, self.end, self.gfp, zone_idx,
                                       self.signal_pending)
        s = self.stats
        self.cost_ns += DRAIN_NS + int((s.nr_migrated << self.node.geo.page_shift)
                                       / MIGRATE_BYTES_PER_S * 1e9)
        text = (f"{s.nr_migrated} pages migrated, {s.dropped} clean page cache dropped, "
                f"{s.migrate_calls} migrate_pages() calls")
        if rc == EBUSY:
            text += f"; {len(s.failed)} could not move (first {s.failed[0]:#x}), left for the test"
            return 0, text     # -EBUSY is deliberately ignored here
        if rc == EINTR:
            return rc, "fatal signal pending"
        if rc == ENOMEM:
            return rc, text + "; no destination page left (-ENOMEM)"
        return rc, text

    def _test(self) -> tuple[int, str]:
        node = self.node
        self.outer_start = find_large_buddy(node, self.start)
        rc = test_pages_isolated(node, self.outer_start, self.end)
        if rc:
            self.busy_pfn = self._first_busy()
            if node.profile.drain_per_pageblock:
                node.printk(f"alloc_contig_range: [{self.outer_start:x}, {self.end:x}) PFNs busy")
            return rc, f"busy page at {self._describe(self.busy_pfn)}"
        return 0, f"[{self.outer_start:#x}, {self.end:#x}) is all free and isolated"

    def _take(self) -> tuple[int, str]:
        """isolate_freepages_range(): take the free blocks, strictly."""
        node = self.node
        mm = node.mm
        owner = node.new_owner(PageKind.KERNEL, f"{self.name} [{self.start:#x}, {self.end:#x})")
        owner.contig = True
        self.owner = owner.id
        if self._take_tiled():
            return 0, f"took [{self.outer_start:#x}, {self.outer_end:#x}) off the free lists"
        pfn, taken = self.outer_start, []
        while pfn < self.end:
            zone = node.page_zone(pfn)
            if zone is not self.zone or mm.state.item(pfn) != _FREE or mm.order.item(pfn) < 0:
                self._release(taken)
                where = self.zone.name if self.zone is not None else "any zone"
                return EBUSY, f"pfn {pfn:#x} is not a free block of {where}"
            order = mm.order.item(pfn)
            del_page_from_free_list(zone, pfn, order, int(mm.owner[pfn]))
            taken.append((pfn, order))
            pfn += 1 << order
        self.outer_end = pfn
        for head, order in taken:
            mm.mark_allocated(head, head + (1 << order), PageKind.KERNEL, self.owner, 0)
        self.zone.nr_kind[PageKind.KERNEL] += self.outer_end - self.outer_start
        self.cost_ns += (self.outer_end - self.outer_start) * NS_PER_PAGE_SCANNED
        return 0, f"took [{self.outer_start:#x}, {self.outer_end:#x}) off the free lists"

    def _take_tiled(self) -> bool:
        """_take() at once when free blocks of the zone tile the range (the usual case).

        Taking blocks off lists in another order leaves the same lists; the
        pages end up as the block-by-block walk leaves them.  False (nothing
        changed) when the walk would stop somewhere: it then runs as is.
        """
        node, mm = self.node, self.node.mm
        lo, hi = self.outer_start, self.end
        heads = lo + np.flatnonzero((mm.state[lo:hi] == _FREE) & (mm.order[lo:hi] >= 0))
        orders = mm.order[heads].astype(np.int64)
        ends = heads + np.left_shift(1, orders)
        if (self.zone is None or not len(heads) or heads[0] != lo or ends[-1] < hi
                or np.any(heads[1:] != ends[:-1])
                or np.any(mm.pb_zone[heads >> node.geo.pageblock_order] != self.zone.zid)):
            return False
        lists = mm.owner[heads].astype(np.int64)
        area = self.zone.free_area
        for key, sel in groups(orders * MIGRATE_TYPES + lists):
            order, mt = divmod(key, MIGRATE_TYPES)
            area[order].free_list[mt].remove_many(heads[sel])
            account_freepages(self.zone, -int(np.left_shift(1, orders[sel]).sum()), mt)
        self.outer_end = int(ends[-1])
        mm.mark_allocated(self.outer_start, self.outer_end, PageKind.KERNEL, self.owner, 0)
        self.zone.nr_kind[PageKind.KERNEL] += self.outer_end - self.outer_start
        self.cost_ns += (self.outer_end - self.outer_start) * NS_PER_PAGE_SCANNED
        return True

    def _release(self, taken: list[tuple[int, int]]) -> None:
        from .freelist import add_to_free_list

        for head, order in taken:
            add_to_free_list(self.zone, head, order, int(MigrateType.ISOLATE))

    def _trim(self) -> tuple[int, str]:
        node = self.node
        if node.profile.contig_gfp_check and self.gfp & int(Gfp.COMP):   # 6.14+
            nr = self.end - self.start
            if nr & (nr - 1) or self.start & (nr - 1):
                node.printk(f"WARNING: alloc_contig_range: [{self.start:x}, {self.end:x}) "
                            f"PFNs allocated as [{self.outer_start:x}, {self.outer_end:x})"
                            " are not a compound page")
                free_contig_range(node, self.outer_start, self.outer_end - self.outer_start)
                return EINVAL, "__GFP_COMP needs one naturally aligned power-of-two block"
        head = self.start - self.outer_start
        tail = self.outer_end - self.end
        if head:
            free_contig_range(node, self.outer_start, head)
        if tail:
            free_contig_range(node, self.end, tail)
        return 0, f"gave back {head} pages before and {tail} after the range"

    def _undo(self) -> tuple[int, str]:
        lo, hi = isolation_range(self.node, self.start, self.end)
        undo_isolate_page_range(self.node, self.start, self.end)
        if self.failed_phase == "isolate":
            return 0, ("nothing is isolated (start_isolate_page_range() undid its own "
                       "work); undo_isolate_page_range() finds nothing to do")
        return 0, f"pageblocks [{lo:#x}, {hi:#x}) back to MIGRATE_MOVABLE"

    def _undo_after_failed_isolation(self) -> bool:
        """Whether a failed isolation still runs the undo step.

        5.19+ jumps to ``done:`` (undo_isolate_page_range(), a no-op there);
        5.8 returned at once, and so does 6.14's -EINVAL gfp check, which runs
        before anything is isolated.  The same v5.19 rework that made
        isolation pageblock-granular (``contig_align``) added the jump.
        """
        return self.rc != EINVAL and self.node.profile.contig_align == "pageblock"

    # -- helpers --------------------------------------------------------
    def _finish(self) -> None:
        if self.rc is None:
            self.rc = 0
        self.node.emit(AllocContigRange(self.start, self.end, self.rc))
        self.node.count_event("alloc_contig_range_success" if self.rc == 0
                              else "alloc_contig_range_fail")

    def _first_busy(self) -> int:
        mm = self.node.mm
        busy = np.flatnonzero(mm.state[self.outer_start:self.end] != _FREE)
        return self.outer_start + int(busy[0]) if len(busy) else self.outer_start

    def _describe(self, pfn: int | None) -> str:
        if pfn is None:
            return "?"
        node = self.node
        state = PageState(int(node.mm.state[pfn]))
        if state != PageState.ALLOCATED:
            return f"pfn {pfn:#x} ({state.name.lower()})"
        owner = node.owner_of(pfn)
        pinned = " (pinned)" if int(node.mm.flags[pfn]) & 1 else ""
        return (f"pfn {pfn:#x} ({PageKind(int(node.mm.kind[pfn]))}{pinned} of "
                f"{owner.name if owner else '?'})")


def alloc_contig_range(node: Node, start: int, end: int, gfp: str | int = "GFP_KERNEL",
                       signal_pending: bool = False) -> int:
    """Take [start, end) out of the page allocator; 0 or -errno.

    Kernel: mm/page_alloc.c, alloc_contig_range_noprof()
    """
    return ContigRange(node, start, end, gfp, signal_pending=signal_pending).run()


def free_contig_range(node: Node, pfn: int, nr_pages: int) -> int:
    """Give pages taken by alloc_contig_range() back to the buddy allocator.

    Pages held by someone else (page_count != 1) are counted, left alone,
    and reported as the kernel's WARN does; returns that count.

    Kernel: mm/page_alloc.c, free_contig_range()
    """
    from .bulk import free_pages_bulk

    if not isinstance(nr_pages, (int, np.integer)) or nr_pages <= 0:
        raise ValueError(f"nr_pages={nr_pages!r} must be a positive integer")
    check_range(node, pfn, pfn + nr_pages)
    mm = node.mm
    pfns = np.arange(pfn, pfn + nr_pages)
    owners = mm.owner[pfns]
    ours = (mm.state[pfns] == _ALLOCATED) & np.isin(owners, node.contig_owner_ids())
    free_pages_bulk(node, pfns[ours])
    count = int((~ours).sum())
    if count:
        node.printk(f"WARNING: free_contig_range: {count} pages are still in use!")
    return count


def pfn_range_valid_contig(node: Node, zone_idx: int, start: int, nr_pages: int) -> bool:
    """Is [start, start+nr) worth trying: online, one zone, nothing reserved?

    Before 5.14 a range with any page in use was skipped too.
    Kernel: mm/page_alloc.c, pfn_range_valid_contig()
    """
    mm, geo = node.mm, node.geo
    end = start + nr_pages
    if not mm.section_online[start // geo.pages_per_section:
                             -(-end // geo.pages_per_section)].all():
        return False
    if np.any(mm.pb_zone[start >> geo.pageblock_order:
                         -(-end >> geo.pageblock_order)] != zone_idx):
        return False
    state = mm.state[start:end]
    if np.any((state == PageState.RESERVED) | (state == PageState.ABSENT)):
        return False
    return not (node.profile.contig_pages_skip_used and np.any(state != _FREE))


def alloc_contig_pages(node: Node, nr_pages: int, gfp: str | int = "GFP_KERNEL") -> int | None:
    """Find and take ``nr_pages`` contiguous pages anywhere; the first pfn or None.

    Zones come from the gfp mask's zonelist, so a gigantic hugetlb page
    (GFP_HIGHUSER: at most ZONE_NORMAL) never comes from ZONE_MOVABLE.
    Candidates are naturally aligned and tried in address order.

    Kernel: mm/page_alloc.c, alloc_contig_pages_noprof()
    """
    if not isinstance(nr_pages, (int, np.integer)) or nr_pages <= 0:
        raise ValueError(f"nr_pages={nr_pages!r} must be a positive integer")
    mask = int(parse_gfp(gfp))
    for zone in node.zonelist(gfp_zone(mask)):
        pfn = -(-zone.zone_start_pfn // nr_pages) * nr_pages
        while pfn + nr_pages - 1 < zone.zone_end_pfn:
            if (pfn_range_valid_contig(node, zone.zid, pfn, nr_pages)
                    and alloc_contig_range(node, pfn, pfn + nr_pages, mask) == 0):
                return pfn
            pfn += nr_pages
    return None
