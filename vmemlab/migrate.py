"""Page migration: move a page's contents and identity to another page frame.

Migrating a page means allocating a destination, copying, switching every
reference (page tables, page cache) to the new frame and freeing the old
one.  The page keeps its owner: an activity that later frees its memory
frees the new pfn.  What can migrate:

* anonymous, page cache and tmpfs pages (LRU pages): yes, unless pinned;
* balloon pages (movable_ops): yes, through the balloon driver;
* ramfs pages: they are on the LRU, so isolation accepts them, but they are
  dirty and ramfs has no writeback, so every attempt fails;
* slab, page tables, pipe buffers, other kernel pages: never isolated.

``migrate_range`` is __alloc_contig_migrate_range(): it walks the range,
isolates up to 32 pages at a time, drops clean page cache instead of
copying it, and calls ``migrate_pages``; a batch that still holds a page
after 5 calls ends the walk with -EBUSY (the rest of the range is never
even scanned), and a destination that cannot be allocated ends it with
-ENOMEM.  pgmigrate_fail counts as migrate_pages() does: the pages that
failed *in each call*, so a stuck page counts 5 times.  Destinations come
from the normal allocator with __GFP_MOVABLE, so they are never inside
isolated pageblocks.

When the allocator's fast path can supply every destination (no reclaim can
run in between), all batches are migrated in one vectorized step, which is
exactly what the batch-by-batch loop would do; otherwise the loop runs.

Kernel: mm/page_alloc.c __alloc_contig_migrate_range(); mm/compaction.c
isolate_migratepages_block(); mm/migrate.c migrate_pages(),
alloc_migration_target(); mm/vmscan.c reclaim_clean_pages_from_list()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .bulk import alloc_pages_bulk, free_pages_bulk
from .constants import EAGAIN, EBUSY, EINTR, ENOMEM, PageFlag, PageKind, PageState, ZoneType
from .gfp import GFP_USER, Gfp
from .page_alloc import AllocRequest, alloc_block, free_block, prep_new_page
from .trace import MigrateFolioMove, MmMigratePages

if TYPE_CHECKING:
    from .node import Node

COMPACT_CLUSTER_MAX = 32          # pages isolated per batch (SWAP_CLUSTER_MAX)
CONTIG_MIGRATE_TRIES = 5          # migrate_pages() calls per stuck batch
NR_MAX_MIGRATE_PAGES_RETRY = 10   # passes inside one migrate_pages() call

_ALLOCATED = int(PageState.ALLOCATED)
_PAGE_OFFLINE = int(PageState.PAGE_OFFLINE)
_LRU = np.array([PageKind(k).lru for k in range(max(PageKind) + 1)], dtype=bool)
_MOVABLE_OPS = np.array([PageKind(k).movable_ops for k in range(max(PageKind) + 1)], dtype=bool)


@dataclass
class MigrateStats:
    """What a migration pass did (for traces, step-through views and costs)."""

    src: list[np.ndarray] = field(default_factory=list)    # moved folios, in order
    dst: list[np.ndarray] = field(default_factory=list)
    order: list[np.ndarray] = field(default_factory=list)
    nr_migrated: int = 0        # pages moved
    dropped: int = 0            # clean page cache freed instead of migrated
    failed: list[int] = field(default_factory=list)        # pfns left behind
    migrate_calls: int = 0
    scanned: int = 0
    nr_failed_pages: int = 0    # summed over migrate_pages() calls: pgmigrate_fail

    def record(self, src: np.ndarray, dst: np.ndarray, order: np.ndarray) -> None:
        self.src.append(src)
        self.dst.append(dst)
        self.order.append(order)
        self.nr_migrated += int(np.sum(np.left_shift(1, order)))

    @property
    def moves(self) -> list[tuple[int, int, int]]:
        """Every move as (src_pfn, dst_pfn, order)."""
        if not self.src:
            return []
        return list(zip(np.concatenate(self.src).tolist(), np.concatenate(self.dst).tolist(),
                        np.concatenate(self.order).tolist(), strict=True))


def migration_gfp(node: Node, src_zone: int, gfp: int) -> int:
    """The gfp for a destination page of alloc_contig_range().

    Since 6.14 the caller's reclaim flags (and __GFP_NOWARN) plus
    __GFP_MOVABLE|__GFP_RETRY_MAYFAIL; before, always GFP_USER |
    __GFP_MOVABLE | __GFP_RETRY_MAYFAIL (profile ``contig_gfp_check``).
    __GFP_HIGHMEM is added only when the source is in ZONE_MOVABLE, so a
    ZONE_NORMAL page moves within the kernel zones.

    Kernel: mm/page_alloc.c __alloc_contig_verify_gfp_mask() (6.14+),
    __alloc_contig_migrate_range(); mm/migrate.c alloc_migration_target()
    """
    if node.profile.contig_gfp_check:
        keep = int(Gfp.IO | Gfp.FS | Gfp.DIRECT_RECLAIM | Gfp.KSWAPD_RECLAIM | Gfp.NOWARN)
        mask = (gfp & keep) | int(Gfp.MOVABLE | Gfp.RETRY_MAYFAIL)
    else:
        mask = int(GFP_USER | Gfp.MOVABLE | Gfp.RETRY_MAYFAIL)
    if src_zone == ZoneType.MOVABLE:
        mask |= int(Gfp.HIGHMEM)
    return mask


def isolate_candidates(node: Node, start: int, end: int, zone_idx: int) -> np.ndarray:
    """Heads of the folios isolate_migratepages_block() would take, in scan order.

    LRU and movable_ops pages of the zone; pinned anonymous pages are
    skipped (refcount above mapcount: migration would fail anyway).
    """
    from .page_isolation import movable_ops_mask

    mm, pbo = node.mm, node.geo.pageblock_order
    state, kind = mm.state[start:end], mm.kind[start:end]
    heads = (state == _ALLOCATED) & (mm.order[start:end] >= 0)
    movable = _LRU[kind] | _MOVABLE_OPS[kind]
    heads |= (state == _PAGE_OFFLINE) & movable_ops_mask(node, kind)
    pinned = ((mm.flags[start:end] & PageFlag.PINNED) != 0) & (kind == PageKind.ANON)
    zones = np.repeat(mm.pb_zone[start >> pbo:-(-end >> pbo)], 1 << pbo)
    off = start - (start >> pbo << pbo)
    in_zone = zones[off:off + end - start] == zone_idx
    return start + np.flatnonzero(heads & movable & ~pinned & in_zone)


def _outcome(node: Node, pfns: np.ndarray) -> np.ndarray:
    """Per folio: 0 migrates, -EAGAIN stays busy (pinned), -EBUSY never (ramfs)."""
    mm = node.mm
    out = np.zeros(len(pfns), np.int64)
    out[(mm.flags[pfns] & PageFlag.PINNED) != 0] = EAGAIN
    out[mm.kind[pfns] == PageKind.RAMFS] = EBUSY
    return out


def migrate_range(node: Node, start: int, end: int, gfp: int, zone_idx: int,
                  signal_pending: bool = False) -> tuple[int, MigrateStats]:
    """Migrate every movable page out of [start, end); 0, -EBUSY, -ENOMEM or -EINTR.

    Kernel: mm/page_alloc.c, __alloc_contig_migrate_range()
    """
    stats = MigrateStats()
    if signal_pending:
        return EINTR, stats
    cands = isolate_candidates(node, start, end, zone_idx)
    stats.scanned = end - start
    if not len(cands):
        return 0, stats
    orders = node.mm.order[cands].astype(np.int64)
    batch = (np.cumsum(1 << orders) - (1 << orders)) // COMPACT_CLUSTER_MAX
    outcome = _outcome(node, cands)
    stuck = np.flatnonzero(outcome != 0)
    last = int(batch[stuck[0]]) if len(stuck) else int(batch[-1])
    take = batch <= last
    rc = _migrate_batches(node, cands[take], batch[take], outcome[take], gfp, zone_idx, stats)
    if rc == 0 and len(stuck):
        left = cands[take][outcome[take] != 0]
        stats.failed = [int(p) for p in left]
        stats.migrate_calls += CONTIG_MIGRATE_TRIES - 1
        # Every one of the batch's migrate_pages() calls fails them again.
        stats.nr_failed_pages += _nr_pages(node, left) * CONTIG_MIGRATE_TRIES
        rc = EBUSY
    node.count_event("pgmigrate_success", stats.nr_migrated)
    node.count_event("pgmigrate_fail", stats.nr_failed_pages)
    node.emit(MmMigratePages(stats.nr_migrated, len(stats.failed), "MIGRATE_SYNC",
                             "contig_range"))
    return rc, stats


def _clean_page_cache(node: Node, pfns: np.ndarray) -> np.ndarray:
    """Which folios reclaim_clean_pages_from_list() drops: clean, unpinned page cache."""
    mm = node.mm
    return ((mm.kind[pfns] == PageKind.FILE)
            & ((mm.flags[pfns] & (PageFlag.DIRTY | PageFlag.PINNED)) == 0))


def _migrate_batches(node: Node, pfns: np.ndarray, batch: np.ndarray, outcome: np.ndarray,
                     gfp: int, zone_idx: int, stats: MigrateStats) -> int:
    """Drop clean page cache and move the rest, batch by batch.

    When the allocator's fast path can supply every destination at once, no
    reclaim can run between batches and one vectorized step gives the same
    result as the loop; otherwise the loop runs, stopping at -ENOMEM.
    """
    target_gfp = migration_gfp(node, zone_idx, gfp)
    clean = _clean_page_cache(node, pfns)
    movers = pfns[(outcome == 0) & ~clean]
    plain = (node.mm.order[movers] == 0) & (node.mm.state[movers] == _ALLOCATED)
    if np.all(plain) and _fast_path_room(node, target_gfp) >= len(movers):
        free_pages_bulk(node, pfns[clean])
        stats.dropped += int(clean.sum())
        done = move_folios_bulk(node, movers, target_gfp, stats, fast_only=True)
        stats.migrate_calls += int(batch[-1]) + 1 if len(batch) else 0
        # Headroom guarantees order-0 pages; a shortfall would be a bug, but stay correct.
        for pfn in movers[done:].tolist():
            if move_folio(node, pfn, target_gfp, stats) != 0:
                stats.nr_failed_pages += 1
                return ENOMEM
        return 0
    for b in np.unique(batch).tolist():
        sel = batch == b
        free_pages_bulk(node, pfns[sel & clean])
        stats.dropped += int((sel & clean).sum())
        stats.migrate_calls += 1
        for pfn in pfns[sel & ~clean & (outcome == 0)].tolist():
            if move_folio(node, pfn, target_gfp, stats) != 0:
                # -ENOMEM ends migrate_pages(): this folio and the batch's
                # failures met before it count once.
                stuck_before = pfns[sel & (outcome != 0) & (pfns < pfn)]
                stats.nr_failed_pages += _nr_pages(node, np.append(stuck_before, pfn))
                return ENOMEM
    return 0


def _nr_pages(node: Node, heads: np.ndarray) -> int:
    """Pages of the folios at ``heads`` (nr_failed_pages counts pages, not folios)."""
    return int(np.sum(np.left_shift(1, node.mm.order[heads].astype(np.int64))))


def _fast_path_room(node: Node, gfp: int) -> int:
    """Order-0 pages the fast path can hand out before any zone hits its low mark."""
    from .page_alloc import AllocFlags, alloc_flags_nofragment, watermark_headroom

    req = AllocRequest(node, 0, gfp, None)
    zonelist = node.zonelist(req.highest)
    flags = AllocFlags.WMARK_LOW | (alloc_flags_nofragment(node, zonelist[0]) if zonelist else 0)
    return sum(watermark_headroom(z, flags, req.highest) for z in zonelist)


def move_folios_bulk(node: Node, srcs: np.ndarray, gfp: int, stats: MigrateStats,
                     fast_only: bool = False) -> int:
    """Migrate order-0 folios in order, destinations allocated in bulk.

    Returns how many moved (a prefix of ``srcs``).  With ``fast_only`` the
    destinations come only from the allocator's fast path, so no reclaim
    runs in between and the result equals migrating them one at a time.
    """
    if not len(srcs):
        return 0
    dsts = alloc_pages_bulk(node, gfp, len(srcs), PageKind.ANON, -1, fast_only=fast_only)
    return move_folios_to(node, srcs[:len(dsts)], dsts, stats)


def move_folios_to(node: Node, srcs: np.ndarray, dsts: np.ndarray, stats: MigrateStats) -> int:
    """Migrate order-0 folios ``srcs[i]`` to ``dsts[i]``, in order; returns how many.

    The destinations are already allocated as anonymous pages of no owner
    (what ``alloc_pages_bulk(..., PageKind.ANON, -1)`` gives, or compaction's
    ``compaction_alloc``): each takes its source's kind, owner and flags, and
    the sources are freed.  Kernel: mm/migrate.c, migrate_pages_batch()
    """
    if not len(dsts):
        return 0
    _transfer_identity(node, srcs, dsts, from_kind=PageKind.ANON)
    free_pages_bulk(node, srcs)
    if node.trace.enabled:
        for s, d in zip(srcs.tolist(), dsts.tolist(), strict=True):
            node.emit(MigrateFolioMove(s, d, 0))
    stats.record(srcs, dsts, np.zeros(len(dsts), np.int64))
    return len(dsts)


def move_folio(node: Node, src: int, gfp: int, stats: MigrateStats | None = None) -> int:
    """Migrate one folio (any order); 0 or -ENOMEM if no destination exists.

    Pages of a driver with movable_ops (balloon pages) are moved by that driver.
    Kernel: mm/migrate.c, migrate_folio_unmap() + migrate_folio_move()
    """
    mm = node.mm
    if mm.state.item(src) == _PAGE_OFFLINE:
        rc, dst = node.movable_ops[mm.kind.item(src)].migrate_page(src, gfp)
        if rc == 0:
            node.emit(MigrateFolioMove(src, dst, 0))
            if stats is not None:
                stats.record(np.array([src]), np.array([dst]), np.array([0]))
        return rc
    order = int(mm.order[src])
    req = AllocRequest(node, order, gfp, PageKind(int(mm.kind[src])))
    got = alloc_block(node, req)
    if got is None:
        return ENOMEM
    zone, dst = got
    prep_new_page(zone, dst, req, int(mm.owner[src]))
    n = 1 << order
    mm.flags[dst:dst + n] = mm.flags[src:src + n]
    _follow_raw_owner(node, np.array([src]), np.array([dst]))
    mm.flags[src:src + n] = 0
    free_block(node, src, order)
    node.emit(MigrateFolioMove(src, dst, order))
    if stats is not None:
        stats.record(np.array([src]), np.array([dst]), np.array([order]))
    return 0


def _transfer_identity(node: Node, srcs: np.ndarray, dsts: np.ndarray,
                       from_kind: PageKind) -> None:
    """Give each destination its source's kind, owner and flags (and fix counters)."""
    mm = node.mm
    kinds = mm.kind[srcs]
    mm.kind[dsts] = kinds
    mm.owner[dsts] = mm.owner[srcs]
    mm.flags[dsts] = mm.flags[srcs]
    mm.flags[srcs] = 0
    zones = mm.pb_zone[dsts >> node.geo.pageblock_order]
    for zid in np.flatnonzero(np.bincount(zones)).tolist():
        zone = node.zones[zid]
        sel = zones == zid
        zone.nr_kind[from_kind] -= int(sel.sum())
        zone.nr_kind += np.bincount(kinds[sel], minlength=len(zone.nr_kind))
    _follow_raw_owner(node, srcs, dsts)


def _follow_raw_owner(node: Node, srcs: np.ndarray, dsts: np.ndarray) -> None:
    """alloc_pages() allocations remember where their (moved) block now starts."""
    owners = node.mm.owner[dsts]
    held = node.owners
    raw = [o for o in np.unique(owners).tolist()   # the few owners at hand, not every owner
           if o >= 0 and held[o].raw and held[o].pfn >= 0]
    if not raw:
        return
    for i in np.flatnonzero(np.isin(owners, raw)).tolist():
        rec = node.owners[int(owners[i])]
        if rec.pfn == int(srcs[i]):
            rec.pfn = int(dsts[i])


def migrate_longterm_unpinnable(node: Node, pfns: np.ndarray) -> np.ndarray:
    """Move pages that may not be pinned long-term (in ZONE_MOVABLE) to kernel zones.

    Returns the pfns that can now be pinned (moved ones at their new place);
    pages whose move failed are left out.

    Kernel: mm/gup.c, check_and_migrate_movable_folios(),
    migrate_longterm_unpinnable_folios() (GFP_USER | __GFP_NOWARN targets)
    """
    mm, pbo = node.mm, node.geo.pageblock_order
    pfns = np.asarray(pfns, np.int64)
    in_movable = mm.pb_zone[pfns >> pbo] == ZoneType.MOVABLE
    keep = pfns[~in_movable]
    stats = MigrateStats()
    move_folios_bulk(node, pfns[in_movable], int(GFP_USER | Gfp.NOWARN), stats)
    return np.sort(np.concatenate([keep, *stats.dst]))
