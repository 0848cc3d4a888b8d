"""Validators: check every invariant of the page allocator state.

The model functions trust their inputs; these do not.  Each ``validate_*``
function recomputes a fact from the memmap arrays and compares it with what
the free lists and counters say, raising ``ValidationError`` with the pfn
and both values on the first disagreement.  Tests call ``validate_node``
after every operation; ``Machine.validate`` adds the hotplug and virtio-mem
checks.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING

import numpy as np

from .constants import NO_ZONE, MigrateType, PageFlag, PageKind, PageState, ZoneType

if TYPE_CHECKING:
    from .node import Node


class ValidationError(AssertionError):
    """A broken invariant of the simulated machine (a vmemlab bug)."""


def _fail(msg: str) -> None:
    raise ValidationError(msg)


def free_list_entries(node: Node) -> np.ndarray:
    """Every free-list entry as a row (pfn, order, migratetype, zone), in list order."""
    rows = [(pfn, order, mt, zone.zid)
            for zone in node.zones for order, area in enumerate(zone.free_area)
            for mt, lst in enumerate(area.free_list) for pfn in lst]
    return np.array(rows, np.int64).reshape(-1, 4)


def validate_free_lists(node: Node, entries: np.ndarray | None = None) -> None:
    """Every list entry is a free head of the list's order, type and zone; nothing twice."""
    mm, pbo = node.mm, node.geo.pageblock_order
    entries = free_list_entries(node) if entries is None else entries
    pfn, order, mt, zid = entries.T
    uniq, counts = np.unique(pfn, return_counts=True)
    if np.any(counts > 1):
        _fail(f"pfn {int(uniq[np.argmax(counts > 1)]):#x} is on two free lists")
    _first(pfn, (mm.state[pfn] != PageState.FREE) | (mm.order[pfn] != order),
           lambda i: f"pfn {pfn[i]:#x} on the order-{order[i]} list has state "
                     f"{PageState(int(mm.state[pfn[i]])).name} order {int(mm.order[pfn[i]])}")
    _first(pfn, (pfn & ((1 << order) - 1)) != 0,
           lambda i: f"pfn {pfn[i]:#x} on the order-{order[i]} list is not aligned")
    _first(pfn, mm.owner[pfn] != mt,
           lambda i: f"pfn {pfn[i]:#x} is on list {mt[i]} but records list "
                     f"{int(mm.owner[pfn[i]])}")
    # Each block's pageblocks: its zone must be the list's, and (6.10+) its type too.
    span = np.maximum(1, np.left_shift(1, np.maximum(order - pbo, 0)))
    which = np.repeat(np.arange(len(pfn)), span)
    blocks = np.repeat(pfn >> pbo, span) + (np.arange(len(which)) - np.repeat(
        np.cumsum(span) - span, span))
    _first(pfn, np.bincount(which, mm.pb_zone[blocks] != zid[which], len(pfn)) > 0,
           lambda i: f"free block {pfn[i]:#x} order {order[i]} is on "
                     f"{node.zones[zid[i]].name}'s list but covers pageblocks of zone(s) "
                     f"{sorted(set(mm.pb_zone[blocks[which == i]].tolist()))}")
    if node.profile.freelist_hygiene:
        wrong = mm.pb_mt[blocks] != mt[which]
        _first(pfn, np.bincount(which, wrong, len(pfn)) > 0,
               lambda i: f"free block {pfn[i]:#x} order {order[i]} is on list {mt[i]} but "
                         f"its pageblock type is "
                         f"{int(mm.pb_mt[blocks[(which == i) & wrong][0]])} "
                         "(freelist hygiene, 6.10+)")
    free_heads = (mm.state == PageState.FREE) & (mm.order >= 0)
    if np.count_nonzero(free_heads) != len(pfn):
        missing = np.setdiff1d(np.flatnonzero(free_heads), pfn)
        _fail(f"free block head pfn {int(missing[0]):#x} is on no free list" if len(missing)
              else f"{len(pfn)} list entries but {np.count_nonzero(free_heads)} free heads")


def _first(pfns: np.ndarray, bad: np.ndarray, message) -> None:
    """Fail with ``message(i)`` for the lowest pfn whose ``bad`` is set."""
    if np.any(bad):
        idx = np.flatnonzero(bad)
        _fail(message(int(idx[np.argmin(pfns[idx])])))


def validate_coverage(node: Node, entries: np.ndarray | None = None) -> None:
    """Every FREE page lies in exactly one free block; no free block covers anything else.

    Fast path: the blocks on the free lists (checked to be the free heads)
    do not overlap, hold only FREE pages, and add up to every FREE page.
    Only when that fails is coverage counted page by page, to name the pfn.
    """
    mm = node.mm
    entries = free_list_entries(node) if entries is None else entries
    heads = np.sort(entries[:, 0])
    ends = heads + np.left_shift(1, mm.order[heads].astype(np.int64))
    bounds = np.stack([heads, ends], axis=1).ravel()
    nr_free = np.count_nonzero(mm.state == PageState.FREE)
    if not len(heads):
        if not nr_free:
            return
    elif (np.all(bounds[1:] >= bounds[:-1]) and ends[-1] <= mm.nr_pfns
          and int((ends - heads).sum()) == nr_free and _only_free(mm.state, bounds)):
        return
    heads = np.flatnonzero((mm.state == PageState.FREE) & (mm.order >= 0))
    ends = heads + np.left_shift(1, mm.order[heads].astype(np.int64))
    diff = (np.bincount(heads, minlength=mm.nr_pfns + 1)
            - np.bincount(ends, minlength=mm.nr_pfns + 1)).astype(np.int32)
    cover = np.cumsum(diff[:-1], dtype=np.int32)
    bad = np.flatnonzero(cover != (mm.state == PageState.FREE))
    if len(bad):
        pfn = int(bad[0])
        _fail(f"pfn {pfn:#x}: state {PageState(int(mm.state[pfn])).name} but covered by "
              f"{int(cover[pfn])} free blocks")


def _only_free(state: np.ndarray, bounds: np.ndarray) -> bool:
    """Whether every interval [bounds[2i], bounds[2i+1]) holds only FREE pages."""
    starts = bounds[0::2]
    edges = bounds[bounds < len(state)]
    lo = np.minimum.reduceat(state, edges)[0::2]
    hi = np.maximum.reduceat(state, edges)[0::2]
    return len(lo) == len(starts) and bool(np.all(lo == PageState.FREE)
                                           & np.all(hi == PageState.FREE))


def validate_merged(node: Node) -> None:
    """No two free buddies are left unmerged unless the kernel leaves them so.

    __free_one_page() merges buddies below pageblock_order always; at and
    above it the profile's merge barrier (``_merge_blocked``) may refuse.
    Isolation moves free blocks to the ISOLATE lists without merging them
    (move_freepages_block(); since 6.10 it splits a larger block into its
    pageblocks, split_large_buddy()), so two isolated pageblocks may hold
    unmerged free buddies of pageblock order or more until the isolation is
    undone (unset_migratetype_isolate() merges them then).  Nothing else.
    Kernel: mm/page_alloc.c __free_one_page(); mm/page_isolation.c
    """
    from .page_alloc import _merge_blocked

    mm, geo = node.mm, node.geo
    heads = np.flatnonzero((mm.state == PageState.FREE) & (mm.order >= 0)
                           & (mm.order < geo.max_page_order))
    orders = mm.order[heads].astype(np.int64)
    buddies = heads ^ np.left_shift(1, orders)
    inside = buddies < mm.nr_pfns
    heads, orders, buddies = heads[inside], orders[inside], buddies[inside]
    pbo = geo.pageblock_order
    mergeable = ((mm.state[buddies] == PageState.FREE) & (mm.order[buddies] == orders)
                 & (mm.pb_zone[buddies >> pbo] == mm.pb_zone[heads >> pbo]))
    for pfn, buddy, order in zip(heads[mergeable].tolist(), buddies[mergeable].tolist(),
                                 orders[mergeable].tolist(), strict=True):
        mt, buddy_mt = int(mm.pb_mt[pfn >> pbo]), int(mm.pb_mt[buddy >> pbo])
        if order >= pbo and (mt == buddy_mt == MigrateType.ISOLATE
                             or _merge_blocked(node.page_zone(pfn), mt, buddy_mt)):
            continue
        _fail(f"free buddies {pfn:#x} and {buddy:#x} of order {order} were not merged")


def isolated_in_flight(node: Node) -> np.ndarray:
    """Per pageblock: isolated by an operation still in progress (``node.isolations``)."""
    pbo = node.geo.pageblock_order
    owned = np.zeros(len(node.mm.pb_mt), bool)
    for iso in node.isolations:
        owned[iso.start >> pbo:-(-iso.end >> pbo)] = True
    return owned & (node.mm.pb_mt == MigrateType.ISOLATE)


def validate_isolation(node: Node) -> None:
    """Every MIGRATE_ISOLATE pageblock belongs to an isolation still in progress.

    The kernel undoes isolation on every path out of alloc_contig_range()
    and offline_pages(); a pageblock left isolated is lost to the allocator
    (its free pages are not counted and never handed out).
    """
    leaked = np.flatnonzero((node.mm.pb_mt == MigrateType.ISOLATE) & ~isolated_in_flight(node))
    if len(leaked):
        pb = int(leaked[0])
        _fail(f"pageblock {pb} (pfn {pb << node.geo.pageblock_order:#x}) is isolated "
              f"(MIGRATE_ISOLATE) but no isolation in progress owns it "
              f"({len(leaked)} such pageblocks; in progress: "
              f"{[(i.what, i.phase) for i in node.isolations] or 'none'})")


def validate_zone_counters(node: Node) -> None:
    """NR_FREE_PAGES, per-kind counts and page accounting agree with the arrays."""
    mm = node.mm
    states = pageblock_histogram(node, mm.state, len(PageState))
    alloc = mm.state == PageState.ALLOCATED
    kinds = pageblock_histogram(node, np.where(alloc, mm.kind, np.uint8(len(PageKind))),
                                len(PageKind) + 1)
    iso = np.bincount(mm.pb_zone[mm.pb_mt == MigrateType.ISOLATE], minlength=NO_ZONE + 1)
    for zone in node.zones:
        z = zone.zid
        free = sum((len(lst) << order) for order, area in enumerate(zone.free_area)
                   for mt, lst in enumerate(area.free_list) if mt != MigrateType.ISOLATE)
        if free != zone.nr_free_pages:
            _fail(f"zone {zone.name}: nr_free_pages={zone.nr_free_pages} but the "
                  f"non-isolated free lists hold {free}")
        if not np.array_equal(kinds[z, :len(PageKind)], zone.nr_kind):
            k = int(np.argmax(kinds[z, :len(PageKind)] != zone.nr_kind))
            _fail(f"zone {zone.name}: {PageKind(k).name} count {int(zone.nr_kind[k])} "
                  f"but {int(kinds[z][k])} such pages are allocated")
        managed = states[z, PageState.FREE] + states[z, PageState.ALLOCATED]
        if managed != zone.managed_pages:
            _fail(f"zone {zone.name}: managed_pages={zone.managed_pages} but free + "
                  f"allocated = {int(managed)}")
        present = managed + states[z, PageState.RESERVED] + states[z, PageState.PAGE_OFFLINE]
        if present != zone.present_pages:
            _fail(f"zone {zone.name}: present_pages={zone.present_pages} but free + "
                  f"allocated + reserved + offline = {int(present)}")
        if iso[z] != zone.nr_isolate_pageblock:
            _fail(f"zone {zone.name}: nr_isolate_pageblock={zone.nr_isolate_pageblock} "
                  f"but {int(iso[z])} pageblocks are ISOLATE")


def pageblock_histogram(node: Node, values: np.ndarray, ncols: int) -> np.ndarray:
    """Pages per (zone, value): rows are zones (the last row: no zone), columns values.

    A pageblock whose pages all hold one value counts whole, from its minimum
    and maximum; only the pages of mixed pageblocks are counted one by one.
    """
    pb, nz = node.geo.pageblock_nr_pages, len(node.zones)
    starts = np.arange(0, len(values), pb)
    lo, hi = np.minimum.reduceat(values, starts), np.maximum.reduceat(values, starts)
    rows = np.minimum(node.mm.pb_zone, nz).astype(np.int64)
    uniform = lo == hi
    hist = np.bincount(rows[uniform] * ncols + lo[uniform], minlength=(nz + 1) * ncols) * pb
    mixed = np.flatnonzero(~uniform)
    pages = (mixed[:, None] * pb + np.arange(pb)).ravel()
    hist += np.bincount(np.repeat(rows[mixed], pb) * ncols + values[pages],
                        minlength=(nz + 1) * ncols)
    return hist.reshape(nz + 1, ncols)


def validate_pages(node: Node) -> None:
    """Allocated and free pages belong to a zone; allocated pages to a known owner."""
    mm = node.mm
    live = (mm.state - np.uint8(PageState.FREE)) <= 1        # FREE or ALLOCATED (wraps)
    pb_live = np.maximum.reduceat(live, np.arange(0, mm.nr_pfns, node.geo.pageblock_nr_pages))
    if np.count_nonzero(pb_live & (mm.pb_zone == NO_ZONE)):
        stray = np.flatnonzero(live & (np.repeat(mm.pb_zone, node.geo.pageblock_nr_pages)
                                       == NO_ZONE))[0]
        _fail(f"pfn {int(stray):#x} is {PageState(int(mm.state[stray])).name} "
              "but belongs to no zone")
    alloc = mm.state == PageState.ALLOCATED
    unknown = alloc & (mm.owner.view(np.uint32) >= len(node.owners))      # < 0 or too big
    if np.count_nonzero(unknown):
        bad = np.flatnonzero(unknown)[0]
        _fail(f"allocated pfn {int(bad):#x} has unknown owner {int(mm.owner[bad])}")
    nameless = alloc & (mm.kind == PageKind.NONE)
    if np.count_nonzero(nameless):
        _fail(f"allocated pfn {int(np.flatnonzero(nameless)[0]):#x} has no kind")
    off_lru = (mm.flags & np.uint8(PageFlag.ISOLATED)) != 0
    if np.count_nonzero(off_lru):       # migration puts back what it did not move
        _fail(f"pfn {int(np.flatnonzero(off_lru)[0]):#x} is still off the LRU "
              "(isolated for a migration that has ended)")
    for owner in node.owners:
        if owner.raw and owner.pfn >= 0 and (mm.state[owner.pfn] != PageState.ALLOCATED
                                             or mm.owner[owner.pfn] != owner.id):
            _fail(f"alloc_pages() block of owner {owner.id} should be at "
                  f"pfn {owner.pfn:#x} but is not")


def validate_node(node: Node) -> None:
    """Run every page-allocator validator."""
    entries = free_list_entries(node)
    validate_pages(node)
    validate_free_lists(node, entries)
    validate_coverage(node, entries)
    validate_merged(node)
    validate_zone_counters(node)
    validate_isolation(node)


def _wrong_zone(mm, zone: int, start: int, end: int, pbo: int) -> bool:
    """Whether a pageblock of [start, end) lies in another zone.

    A boot memory block may end in a hole (a 192 MiB guest's memory1 spans
    128 to 256 MiB): its pageblocks past the end of RAM have absent pages
    and no zone, and that is fine.
    """
    pbz = mm.pb_zone[start >> pbo:end >> pbo]
    wrong = pbz != zone
    if not wrong.any():
        return False
    absent = (mm.state[start:end].reshape(-1, 1 << pbo) == PageState.ABSENT).all(axis=1)
    return bool(np.any(wrong & ~(absent & (pbz == NO_ZONE))))


def validate_hotplug(hotplug) -> None:
    """Memory blocks agree with the memmap: online blocks' pages have a zone and
    online sections; offline blocks' pages are offline; group counters add up."""
    node = hotplug.node
    mm, geo = node.mm, node.geo
    pbo = geo.pageblock_order
    per_group: dict[int, list[int]] = {}
    for block in hotplug.blocks.values():
        s, e = block.start_pfn, block.end_pfn
        sec = mm.section_online[s // geo.pages_per_section:e // geo.pages_per_section]
        if block.online:
            if not sec.all():
                _fail(f"memory{block.id} is online but a section at pfn {s:#x} is offline")
            if block.zone is not None and _wrong_zone(mm, block.zone, s, e, pbo):
                _fail(f"memory{block.id} is online in zone {block.zone} but its "
                      f"pageblocks say otherwise")
        else:
            if sec.any() or np.any(mm.state[s:e] != PageState.OFFLINE):
                _fail(f"memory{block.id} is offline but pfn {s:#x}.. is not")
        if block.group is not None and block.online:
            kind = 1 if block.zone == ZoneType.MOVABLE else 0
            per_group.setdefault(block.group.id, [0, 0])[kind] += block.nr_pages
    for group in hotplug.groups:
        kernel, movable = per_group.get(group.id, [0, 0])
        if (kernel, movable) != (group.present_kernel_pages, group.present_movable_pages):
            _fail(f"memory group {group.name}: kernel/movable pages "
                  f"{group.present_kernel_pages}/{group.present_movable_pages} but online "
                  f"blocks hold {kernel}/{movable}")


def validate_virtio_mem(machine, dev) -> None:
    """Device bitmap, device size and driver plugged size agree; so do the
    driver's subblock bits and its memory-block states.

    While a request is in flight (``driver.in_flight``) the device has acted
    on it and the driver does not know yet: the check applies the answer
    to the driver's view first.
    """
    drv = dev.driver
    plugged = int(dev.bitmap.sum()) * dev.block_size
    if plugged != dev.size:
        _fail(f"{dev.name}: bitmap holds {plugged} bytes but size is {dev.size}")
    if drv.broken or drv.mode is None:
        return
    pending = _acked_change(dev, drv.in_flight)
    expected = 0 if pending == "all" else drv.plugged_size + (
        0 if pending is None else pending[2] * (pending[1] - pending[0]) * dev.block_size)
    if expected != dev.size:
        what = "" if pending is None else f" (with the {drv.in_flight[0]} in flight)"
        _fail(f"{dev.name}: driver plugged_size {drv.plugged_size}{what} != device size "
              f"{dev.size}")
    if drv.unplug_all_required or pending == "all":
        return      # the driver knows only plugged_size until its UNPLUG_ALL succeeds
    view = drv.view()
    if view.mode == "SBM":
        sb_per_block = view.sb_pages // view.block_pages
        first = (view.first_unit_pfn - view.start_pfn) // view.block_pages
        bits = np.repeat(view.sb_plugged.ravel(), sb_per_block)
        if pending is not None:
            bits[pending[0] - first:pending[1] - first] = pending[2] > 0
        if not np.array_equal(bits, dev.bitmap[first:first + len(bits)]):
            _fail(f"{dev.name}: driver subblock bits disagree with the device bitmap")
        mm = machine.node.mm
        for i, state in enumerate(view.mb_states):
            s = view.first_unit_pfn + i * view.unit_pages
            row = view.sb_plugged[i]
            full = bool(row.all())
            if state == "UNUSED" and row.any():
                _fail(f"{dev.name}: memory block at pfn {s:#x} is UNUSED but has plugged "
                      "subblocks")
            if state.endswith("_PARTIAL") == full and state not in ("UNUSED", "PLUGGED"):
                _fail(f"{dev.name}: memory block at pfn {s:#x} is {state} but "
                      f"{int(row.sum())}/{len(row)} subblocks are plugged")
            if state.startswith(("KERNEL", "MOVABLE", "ONLINE")):
                sb = view.sb_pages
                for j in np.flatnonzero(~row).tolist():
                    states = mm.state[s + j * sb:s + (j + 1) * sb]
                    if np.any(states != PageState.PAGE_OFFLINE):
                        _fail(f"{dev.name}: unplugged subblock at pfn {s + j * sb:#x} of an "
                              "online block is not PageOffline")


def _acked_change(dev, in_flight) -> tuple[int, int, int] | str | None:
    """What an acknowledged request in flight changed on the device.

    (first block, end block, +1 plug / -1 unplug), "all" for UNPLUG_ALL, or
    None when no request is in flight or the device did not ACK it.
    """
    from .virtio_mem import VirtioMemReq, VirtioMemResp

    if in_flight is None:
        return None
    req, resp = in_flight
    if resp is None or resp.type != VirtioMemResp.ACK or req.type == VirtioMemReq.STATE:
        return None
    if req.type == VirtioMemReq.UNPLUG_ALL:
        return "all"
    first = (req.addr - dev.addr) // dev.block_size
    return first, first + req.nb_blocks, 1 if req.type == VirtioMemReq.PLUG else -1


def state_digest(machine) -> str:
    """A SHA-256 over everything a call can change, to prove a call changed nothing.

    Covers the memmap arrays, every zone's counters and free lists (in list
    order), owners, the kernel log and event counters, isolations in
    progress, the clock, timers and random generator, settings, memory
    blocks and groups, devices (DIMMs, virtio-mem device and driver, the
    balloon) and activities.  Two machines in the same state give the same
    digest; ``tests/test_bad_input.py`` compares it before and after every
    rejected call.
    """
    h = hashlib.sha256()

    def put(*parts) -> None:
        for part in parts:
            h.update(part.tobytes() if isinstance(part, np.ndarray) else repr(part).encode())
            h.update(b"\0")

    m, node = machine, machine.node
    mm = node.mm
    put(mm.state, mm.order, mm.kind, mm.flags, mm.owner, mm.pb_mt, mm.pb_zone,
        mm.section_online, mm.nr_pfns)
    for z in node.zones:
        put(z.zone_start_pfn, z.spanned_pages, z.present_pages, z.present_early_pages,
            z.managed_pages, z.nr_free_pages, z.nr_free_highatomic, z.nr_isolate_pageblock,
            z.watermark, z.watermark_boost, z.lowmem_reserve, z.nr_kind,
            [[list(lst) for lst in area.free_list] for area in z.free_area])
    put([(o.id, o.kind, o.name, o.raw, o.contig, o.pfn, o.first_pfn, o.order)
         for o in node.owners],
        node.vm_events, node.log, node.min_free_kbytes, node.min_free_kbytes_user,
        node.page_group_by_mobility_disabled, sorted(node.movable_ops),
        [(i.what, i.start, i.end, i.phase) for i in node.isolations])
    put(m.now, m.epoch, m.boots, m.seed, m.rng.bit_generator.state, m.boot_settings,
        m.online_policy, m.auto_online_blocks, m.auto_movable_ratio, m.min_free_kbytes,
        m.device_regions, m.dimms, m.host_messages, m._pending_work,
        [(t[0], t[1], t[3], t[4]) for t in m._timers])
    hp = m.hotplug
    put([(b.id, b.start_pfn, b.nr_pages, b.state, b.online_type, b.zone,
          None if b.group is None else b.group.id, b.memmap_owner, b.memmap, b.resource)
         for b in hp.blocks.values()],
        [dataclasses.astuple(g) for g in hp.groups], len(hp.notifiers))
    for dev in m.virtio_mem:
        drv = dev.driver
        put(dev.name, dev.addr, dev.region_size, dev.block_size, dev.size,
            dev.requested_size, dev.usable_region_size, dev.migrating, dev.broken,
            dev.requests, dev.bitmap)
        put(drv.broken, drv.last_rc, drv.passes, drv.timer_due, drv.retry_timer_ms,
            drv.unplug_all_required, drv.wq_active, drv.offline_size,
            getattr(drv, "plugged_size", None), getattr(drv, "requested_size", None))
        if drv.mode is not None:
            view = drv.view()
            put(view.mb_states, view.sb_plugged)
    if m.balloon is not None:
        put(m.balloon.num_pages, m.balloon.compaction, m.balloon.out_of_puff,
            list(m.balloon._pages))
    put([(a.name, a.kind, a.requested, a.shortfall, a.stopped, a.owner_ids)
         for a in m.activities])
    return h.hexdigest()
