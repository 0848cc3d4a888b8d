"""Memory hotplug: memory blocks that are added, onlined, offlined and removed.

Linux grows and shrinks memory one *memory block* at a time (128 MiB on
x86-64 guests).  Adding a block allocates its memmap (64 bytes per 4 KiB
page, one 2 MiB unmovable allocation per 128 MiB section, taken from the
existing kernel zones) and creates ``/sys/devices/system/memory/memoryN``;
onlining picks a zone and hands the pages to the buddy allocator; offlining
isolates the block, migrates everything movable out and takes the free pages
back; removing frees the memmap.

Which zone a block lands in decides whether it can ever be unplugged:
``online_kernel`` puts it in ZONE_NORMAL (or DMA32), where one slab page
pins the whole block; ``online_movable`` puts it in ZONE_MOVABLE, where
only movable allocations go.  Plain ``online`` asks the
``memory_hotplug.online_policy``: ``contig-zones`` keeps zones contiguous
(in a VM: ZONE_NORMAL), ``auto-movable`` onlines MOVABLE while the
MOVABLE:KERNEL ratio stays within ``auto_movable_ratio`` (301%), counting
only boot-time kernel memory plus kernel memory of the same dynamic memory
group (one virtio-mem device).

``offline_pages`` retries migration for as long as it takes; the kernel
stops only on a signal.  vmemlab models that with a visible retry budget
on the simulated clock (``timeout``, like ``timeout 60 echo offline >
state``): when it runs out, the signal arrives and offlining returns -EINTR.

Kernel: mm/memory_hotplug.c, drivers/base/memory.c, mm/sparse.c,
mm/sparse-vmemmap.c, Documentation/admin-guide/mm/memory-hotplug.rst
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .constants import (
    EBUSY,
    EINTR,
    EINVAL,
    ENOMEM,
    MigrateType,
    PageFlag,
    PageKind,
    PageState,
    ZoneType,
)
from .contig import MIGRATE_BYTES_PER_S
from .gfp import Gfp, parse_gfp
from .migrate import move_folio
from .page_alloc import alloc_pages, free_block
from .page_isolation import (
    MEMORY_OFFLINE,
    REPORT_FAILURE,
    start_isolate_page_range,
    test_pages_isolated,
    undo_isolate_page_range,
)
from .page_offline import generic_online_page
from .pcp import drain_all_pages
from .zone import init_per_zone_wmark_min

if TYPE_CHECKING:
    from .machine import Machine
    from .node import Node
    from .zone import Zone

STRUCT_PAGE_SIZE = 64
MMOP_OFFLINE, MMOP_ONLINE, MMOP_ONLINE_KERNEL, MMOP_ONLINE_MOVABLE = (
    "offline", "online", "online_kernel", "online_movable")
ONLINE_TYPES = (MMOP_OFFLINE, MMOP_ONLINE, MMOP_ONLINE_KERNEL, MMOP_ONLINE_MOVABLE)
# Memory notifier actions (include/linux/memory.h)
MEM_GOING_ONLINE, MEM_ONLINE, MEM_CANCEL_ONLINE = "MEM_GOING_ONLINE", "MEM_ONLINE", \
    "MEM_CANCEL_ONLINE"
MEM_GOING_OFFLINE, MEM_OFFLINE, MEM_CANCEL_OFFLINE = "MEM_GOING_OFFLINE", "MEM_OFFLINE", \
    "MEM_CANCEL_OFFLINE"
OFFLINE_PASS_S = 0.001          # simulated time of one scan+migrate pass of offline_pages()
DEFAULT_OFFLINE_TIMEOUT_S = 60.0
# do_migrate_range() targets: GFP_USER | __GFP_MOVABLE | __GFP_RETRY_MAYFAIL
_OFFLINE_TARGET_GFP = int(parse_gfp("GFP_USER | __GFP_MOVABLE | __GFP_RETRY_MAYFAIL"))
_GFP_HIGHMEM = int(Gfp.HIGHMEM)

MemoryNotifier = Callable[[str, int, int], int]     # (action, start_pfn, nr_pages) -> 0/-errno
OnlinePageCallback = Callable[[int, int], None]      # (pfn, order)


@dataclass
class MemoryGroup:
    """Memory of one device, for the auto-movable policy.

    Static groups (an ACPI DIMM) know their size; dynamic groups (one
    virtio-mem device) grow and shrink in units of ``unit_pages``.
    Kernel: include/linux/memory.h, struct memory_group
    """

    id: int
    nid: int
    dynamic: bool
    unit_pages: int = 0
    max_pages: int = 0
    present_kernel_pages: int = 0
    present_movable_pages: int = 0
    name: str = ""


@dataclass
class MemoryBlock:
    """One ``/sys/devices/system/memory/memoryN``.  Kernel: struct memory_block"""

    id: int
    start_pfn: int
    nr_pages: int
    state: str = "offline"
    online_type: str = MMOP_OFFLINE
    zone: int | None = None
    group: MemoryGroup | None = None
    nid: int = 0
    memmap_owner: int = -1       # owner id of this block's memmap pages; -1 for boot memory
    memmap: list[tuple[int, int]] = field(default_factory=list)   # (pfn, order) blocks
    resource: str = "System RAM"

    @property
    def end_pfn(self) -> int:
        return self.start_pfn + self.nr_pages

    @property
    def online(self) -> bool:
        return self.state == "online"


class MemoryHotplug:
    """The node's memory blocks and the hotplug operations on them."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.node: Node = machine.node
        self.blocks: dict[int, MemoryBlock] = {}
        self.groups: list[MemoryGroup] = []
        self.notifiers: list[MemoryNotifier] = []
        self.online_page_callback: OnlinePageCallback | None = None
        self._create_boot_blocks()

    # -- geometry helpers --------------------------------------------------
    @property
    def block_pages(self) -> int:
        return self.node.geo.pages_per_memory_block

    def block_of(self, pfn: int) -> MemoryBlock | None:
        return self.blocks.get(pfn // self.block_pages)

    def _create_boot_blocks(self) -> None:
        """memory_dev_init(): one online block per memory block holding boot memory."""
        mm, per = self.node.mm, self.block_pages
        present = {b for s, e in self.machine.layout.memory for b in range(s // per, -(-e // per))}
        for bid in sorted(present):
            start = bid * per
            zones = set(mm.pb_zone[start >> self.node.geo.pageblock_order:
                                   (start + per) >> self.node.geo.pageblock_order].tolist())
            zones.discard(255)
            self.blocks[bid] = MemoryBlock(bid, start, per, "online", MMOP_ONLINE,
                                           zones.pop() if len(zones) == 1 else None)

    # -- groups ------------------------------------------------------------
    def register_group(self, dynamic: bool, pages: int, name: str) -> MemoryGroup:
        """memory_group_register_dynamic()/_static(): returns the new group."""
        group = MemoryGroup(len(self.groups), 0, dynamic, name=name,
                            unit_pages=pages if dynamic else 0,
                            max_pages=0 if dynamic else pages)
        self.groups.append(group)
        return group

    # -- hooks -------------------------------------------------------------
    def register_memory_notifier(self, fn: MemoryNotifier) -> None:
        """Kernel: register_memory_notifier()"""
        self.notifiers.append(fn)

    def set_online_page_callback(self, fn: OnlinePageCallback | None) -> None:
        """Kernel: set_online_page_callback(); None restores generic_online_page()."""
        self.online_page_callback = fn

    def memory_notify(self, action: str, start_pfn: int, nr_pages: int) -> int:
        """Call every notifier; the first error wins.  Kernel: memory_notify()"""
        for fn in self.notifiers:
            rc = fn(action, start_pfn, nr_pages)
            if rc:
                return rc
        return 0

    # -- add / remove --------------------------------------------------------
    def add_memory(self, start: int, size: int, group: MemoryGroup | None = None,
                   resource: str = "System RAM", online: bool = True) -> int:
        """Add [start, start+size) bytes: memmap, memory blocks, maybe auto-online.

        Returns 0, -EINVAL (not memory-block aligned, overlapping) or -ENOMEM
        (no kernel memory left for the memmap).  Blocks are onlined with
        ``auto_online_blocks`` unless that is "offline" or ``online`` is False.

        Kernel: mm/memory_hotplug.c, add_memory_resource(),
        add_memory_driver_managed(); mm/sparse-vmemmap.c vmemmap_populate()
        """
        geo = self.node.geo
        bsize = geo.memory_block_size
        if size <= 0 or start % bsize or size % bsize:
            return EINVAL
        first, count = geo.phys_to_pfn(start) // self.block_pages, size // bsize
        ids = range(first, first + count)
        if any(i in self.blocks for i in ids):
            return EINVAL
        self.machine.ensure_pfns((first + count) * self.block_pages)
        done: list[MemoryBlock] = []
        for bid in ids:
            block = MemoryBlock(bid, bid * self.block_pages, self.block_pages, group=group,
                                resource=resource)
            failed = ("memmap" if self._populate_memmap(block) else
                      "memory block" if self._alloc_metadata(block, bid == first) else "")
            if failed:
                for b in done:
                    self._remove_block(b)
                self.node.printk(f"add_memory: {failed} allocation failed for memory{bid}")
                return ENOMEM
            self.node.mm.mark_offline(block.start_pfn, block.end_pfn)
            self.blocks[bid] = block
            done.append(block)
        default = self.machine.auto_online_blocks
        if online and default != MMOP_OFFLINE:
            for block in done:
                # In corner cases auto-onlining fails; the kernel does not retry.
                self.online_block(block, default)
        return 0

    def _populate_memmap(self, block: MemoryBlock) -> int:
        """Allocate the block's struct pages from kernel zones (GFP_KERNEL).

        One 2 MiB (order-9) block per 128 MiB section, falling back to single
        pages when no such block is free.  Kernel: vmemmap_populate_hugepages()
        """
        node, geo = self.node, self.node.geo
        owner = node.new_owner(PageKind.MEMMAP, f"memmap of memory{block.id}")
        block.memmap_owner = owner.id
        per_section = geo.pages_per_section * STRUCT_PAGE_SIZE >> geo.page_shift
        order = (per_section - 1).bit_length()
        gfp = "GFP_KERNEL | __GFP_ZERO | __GFP_RETRY_MAYFAIL | __GFP_NOWARN"
        for _ in range(block.nr_pages // geo.pages_per_section):
            if order <= geo.max_page_order and (1 << order) == per_section:
                pfn = alloc_pages(node, order, gfp, PageKind.MEMMAP, owner.id)
                if pfn is not None:
                    block.memmap.append((pfn, order))
                    continue
            for _ in range(per_section):
                pfn = alloc_pages(node, 0, gfp, PageKind.MEMMAP, owner.id)
                if pfn is None:
                    self._free_memmap(block)
                    return ENOMEM
                block.memmap.append((pfn, 0))
        return 0

    def _alloc_metadata(self, block: MemoryBlock, add_memory_call: bool) -> int:
        """The block's kernel objects (struct memory_block, sysfs nodes, ...), if modelled.

        On failure the memmap is freed too.  See vmemlab.kernel_activity.
        """
        ka = self.machine.kernel_activity
        if ka is None or not ka.memory_block_added(block, add_memory_call):
            return 0
        self._free_memmap(block)
        return ENOMEM

    def _free_memmap(self, block: MemoryBlock) -> None:
        """Free the block's struct pages (memmap pages never migrate)."""
        for pfn, order in block.memmap:
            free_block(self.node, pfn, order)
        block.memmap.clear()

    def _remove_block(self, block: MemoryBlock) -> None:
        if self.machine.kernel_activity is not None:
            self.machine.kernel_activity.memory_block_removed(block)
        self._free_memmap(block)
        self.node.mm.mark_absent(block.start_pfn, block.end_pfn)
        self.node.mm.set_section_online(block.start_pfn, block.end_pfn, False)
        self.blocks.pop(block.id, None)

    def remove_memory(self, start: int, size: int) -> int:
        """Remove offline memory blocks; -EBUSY if one is still online.

        Kernel: mm/memory_hotplug.c, remove_memory() / try_remove_memory()
        """
        blocks = self._blocks_in(start, size)
        if blocks is None:
            return EINVAL
        if any(b.online for b in blocks):
            return EBUSY
        for block in blocks:
            self._remove_block(block)
        return 0

    def _blocks_in(self, start: int, size: int) -> list[MemoryBlock] | None:
        geo = self.node.geo
        bsize = geo.memory_block_size
        if size <= 0 or start % bsize or size % bsize:
            return None
        first = geo.phys_to_pfn(start) // self.block_pages
        ids = range(first, first + size // bsize)
        if not all(i in self.blocks for i in ids):
            return None
        return [self.blocks[i] for i in ids]

    # -- zones ---------------------------------------------------------------
    def zone_for_pfn_range(self, online_type: str, group: MemoryGroup | None,
                           start_pfn: int, nr_pages: int) -> Zone:
        """The zone onlining would use.  Kernel: zone_for_pfn_range()"""
        if online_type == MMOP_ONLINE_KERNEL:
            return self._default_kernel_zone(start_pfn, nr_pages)
        if online_type == MMOP_ONLINE_MOVABLE:
            return self.node.zone(ZoneType.MOVABLE)
        if self.machine.online_policy == "auto-movable":
            return self._auto_movable_zone(group, start_pfn, nr_pages)
        return self._default_zone(start_pfn, nr_pages)

    def _intersects(self, zone: Zone, start: int, nr: int) -> bool:
        """Kernel: zone_intersects()"""
        return bool(zone.spanned_pages) and start < zone.zone_end_pfn \
            and start + nr > zone.zone_start_pfn

    def _default_kernel_zone(self, start: int, nr: int) -> Zone:
        """The first kernel zone the range intersects, else Normal.

        Kernel: default_kernel_zone_for_pfn()
        """
        for zid in (ZoneType.DMA, ZoneType.DMA32):
            if self._intersects(self.node.zone(zid), start, nr):
                return self.node.zone(zid)
        return self.node.zone(ZoneType.NORMAL)

    def _default_zone(self, start: int, nr: int) -> Zone:
        """contig-zones: inherit the zone the range touches; else a kernel zone.

        Kernel: default_zone_for_pfn()
        """
        kernel = self._default_kernel_zone(start, nr)
        movable = self.node.zone(ZoneType.MOVABLE)
        in_kernel, in_movable = self._intersects(kernel, start, nr), \
            self._intersects(movable, start, nr)
        if in_kernel != in_movable:
            return kernel if in_kernel else movable
        return kernel

    def _auto_movable_zone(self, group: MemoryGroup | None, start: int, nr: int) -> Zone:
        """ZONE_MOVABLE while the MOVABLE:KERNEL ratio allows it.

        Kernel: auto_movable_zone_for_pfn()
        """
        ratio = self.machine.auto_movable_ratio
        if not ratio:
            return self._default_kernel_zone(start, nr)
        online = 0
        if group is not None and not group.dynamic:
            max_pages, online = group.max_pages, group.present_movable_pages
            if group.present_kernel_pages:
                return self._default_kernel_zone(start, nr)
        elif group is None or group.unit_pages == nr:
            max_pages = nr
        else:
            max_pages = group.unit_pages
            unit_start = start // group.unit_pages * group.unit_pages
            for b in range(unit_start, unit_start + group.unit_pages, self.block_pages):
                blk = self.block_of(b)
                if blk is None or not blk.online:
                    continue
                if blk.zone != ZoneType.MOVABLE:
                    return self._default_kernel_zone(start, nr)
                online += blk.nr_pages
        if not self._can_online_movable(group, max_pages - online):
            return self._default_kernel_zone(start, nr)
        return self.node.zone(ZoneType.MOVABLE)

    def _can_online_movable(self, group: MemoryGroup | None, nr_pages: int) -> bool:
        """Kernel: auto_movable_can_online_movable()"""
        ratio = self.machine.auto_movable_ratio
        kernel_early = movable = 0
        for z in self.node.zones:
            if not z.populated():
                continue
            if z.idx == ZoneType.MOVABLE:
                movable += z.present_pages
            else:
                kernel_early += z.present_early_pages
        req_kernel = group_movable = 0
        for g in self.groups:
            if g.dynamic and g is not group:
                pages = g.present_movable_pages * 100 // ratio - g.present_kernel_pages
                req_kernel += max(pages, 0)
                group_movable += g.present_movable_pages
        if kernel_early <= req_kernel:
            return False
        kernel_early -= req_kernel
        movable -= group_movable
        if group is not None and group.dynamic:
            kernel_early += group.present_kernel_pages
        return movable + nr_pages <= ratio * kernel_early // 100

    def valid_zones(self, block: MemoryBlock) -> str:
        """sysfs valid_zones: the zone, or the zones onlining could pick (default first).

        Kernel: drivers/base/memory.c, valid_zones_show()
        """
        if block.online:
            return "none" if block.zone is None else str(ZoneType(block.zone))
        default = self.zone_for_pfn_range(MMOP_ONLINE, block.group, block.start_pfn,
                                          block.nr_pages)
        names = [default.name]
        for kind in (MMOP_ONLINE_KERNEL, MMOP_ONLINE_MOVABLE):
            z = self.zone_for_pfn_range(kind, block.group, block.start_pfn, block.nr_pages)
            if z is not default:
                names.append(z.name)
        return " ".join(names)

    # -- online ----------------------------------------------------------------
    def online_block(self, block: MemoryBlock, online_type: str = MMOP_ONLINE) -> int:
        """Online a memory block (``echo online > memoryN/state``); 0 or -errno.

        Kernel: drivers/base/memory.c, memory_block_online()
        """
        if online_type not in ONLINE_TYPES[1:]:
            raise ValueError(f"online_type={online_type!r} is not one of {ONLINE_TYPES[1:]}")
        if block.online:
            return EINVAL
        zone = self.zone_for_pfn_range(online_type, block.group, block.start_pfn,
                                       block.nr_pages)
        rc = self.online_pages(block.start_pfn, block.nr_pages, zone, block.group)
        if rc == 0:
            block.state, block.online_type, block.zone = "online", online_type, zone.zid
        return rc

    def online_pages(self, start: int, nr: int, zone: Zone, group: MemoryGroup | None) -> int:
        """Attach pages to a zone and free them into the buddy allocator.

        The range joins the zone first (so notifiers see its zone), then the
        notifiers may veto; the pages are freed into isolated pageblocks and
        the isolation is undone, so they land at the tail of the MOVABLE
        lists.  An online-page callback (virtio-mem) may keep parts PageOffline.

        Kernel: mm/memory_hotplug.c, online_pages(), online_pages_range()
        """
        node, geo = self.node, self.node.geo
        mm = node.mm
        pbo = geo.pageblock_order
        span = (zone.zone_start_pfn, zone.spanned_pages)
        zone.grow_span(start, start + nr)
        mm.set_zone(start, start + nr, zone.zid)
        mm.pb_mt[start >> pbo:(start + nr) >> pbo] = MigrateType.ISOLATE
        iso = node.begin_isolation("online_pages", start, start + nr, "notify")
        rc = self.memory_notify(MEM_GOING_ONLINE, start, nr)
        if rc:
            self.memory_notify(MEM_CANCEL_ONLINE, start, nr)
            mm.set_zone(start, start + nr, 255)
            mm.pb_mt[start >> pbo:(start + nr) >> pbo] = mm.pageblock_type(MigrateType.MOVABLE)
            zone.zone_start_pfn, zone.spanned_pages = span
            node.end_isolation(iso)
            return rc
        iso.phase = "free"
        zone.nr_isolate_pageblock += nr >> pbo
        mm.set_section_online(start, start + nr, True)
        mm.mark_page_offline(start, start + nr)   # not handed out until freed below
        for pfn in range(start, start + nr, geo.max_order_nr_pages):
            if self.online_page_callback is not None:
                self.online_page_callback(pfn, geo.max_page_order)
            else:
                generic_online_page(node, pfn, geo.max_page_order)
        zone.present_pages += nr
        if group is not None:
            if zone.idx == ZoneType.MOVABLE:
                group.present_movable_pages += nr
            else:
                group.present_kernel_pages += nr
        undo_isolate_page_range(node, start, start + nr, int(MigrateType.MOVABLE))
        node.end_isolation(iso)
        init_per_zone_wmark_min(node)
        self.memory_notify(MEM_ONLINE, start, nr)
        return 0

    # -- offline -----------------------------------------------------------
    def offline_block(self, block: MemoryBlock, timeout: float | None = None) -> int:
        """Offline a memory block (``echo offline > memoryN/state``); 0 or -errno.

        Kernel: drivers/base/memory.c, memory_block_offline()
        """
        if not block.online:
            return EINVAL
        if block.zone is None:
            return EINVAL            # spans zones: cannot be offlined
        rc = self.offline_pages(block.start_pfn, block.nr_pages,
                                self.node.zone(block.zone), block.group, timeout)
        if rc == 0:
            block.state, block.zone = "offline", None
        return rc

    def offline_pages(self, start: int, nr: int, zone: Zone, group: MemoryGroup | None,
                      timeout: float | None = None) -> int:
        """Take a range away from the page allocator; 0, -EBUSY, -EINTR or -EINVAL.

        Isolate (unmovable page: -EBUSY), tell the notifiers, then repeat
        "migrate everything movable, test" until the range is free.  The
        kernel repeats forever; here each pass costs simulated time and a
        signal arrives after ``timeout`` seconds (-EINTR).  Every way out
        but success undoes the isolation, even an exception.

        Kernel: mm/memory_hotplug.c, offline_pages(), scan_movable_pages(),
        do_migrate_range()
        """
        node, mm = self.node, self.node.mm
        end = start + nr
        if np.any(mm.state[start:end] == PageState.ABSENT):
            return self._offline_failed(start, end, "memory holes", EINVAL)
        if np.any(mm.pb_zone[start >> node.geo.pageblock_order:
                             end >> node.geo.pageblock_order] != zone.zid):
            return self._offline_failed(start, end, "multizone range", EINVAL)
        drain_all_pages(node, zone)      # zone_pcp_disable()
        rc = start_isolate_page_range(node, start, end, MEMORY_OFFLINE | REPORT_FAILURE)
        if rc:
            return self._offline_failed(start, end, "failure to isolate range", rc)
        iso = node.begin_isolation("offline_pages", start, end, "notify")
        try:
            rc = self.memory_notify(MEM_GOING_OFFLINE, start, nr)
            if rc:
                self._cancel_offline(start, end)
                return self._offline_failed(start, end, "notifier failure", rc)
            iso.phase = "migrate"
            rc = self._migrate_until_free(start, end, zone, timeout)
        except BaseException:
            self._cancel_offline(start, end)
            raise
        finally:
            node.end_isolation(iso)
        if rc:
            self._cancel_offline(start, end)
            reason = "signal backoff" if rc == EINTR else "unmovable page"
            return self._offline_failed(start, end, reason, rc)
        self._offline_isolated_pages(start, end, zone, group)
        self.memory_notify(MEM_OFFLINE, start, nr)
        return 0

    def _migrate_until_free(self, start: int, end: int, zone: Zone,
                            timeout: float | None) -> int:
        """The offline_pages() retry loop, with a deadline standing in for a signal.

        Each pass migrates what it can and costs simulated time.  Nothing
        else runs while the write waits, so a pass that changes nothing
        (no page moved, no page freed anywhere) leaves the machine as the
        next pass would find it: the clock then jumps to the deadline and
        the passes it skips are counted, not repeated.  Wall time thus
        follows the work done, not the simulated time waited.
        """
        node, m = self.node, self.machine
        t0 = m.now
        deadline = t0 + (DEFAULT_OFFLINE_TIMEOUT_S if timeout is None else timeout)
        gfp = _OFFLINE_TARGET_GFP | (_GFP_HIGHMEM if zone.idx == ZoneType.MOVABLE else 0)
        passes = 0
        while True:
            if self._scan_unmovable_offline(start, end) is not None:
                return EBUSY
            before = self._fingerprint(start, end)
            moved, stuck = self._do_migrate_range(start, end, gfp)
            passes += 1
            m.advance(OFFLINE_PASS_S + (moved << node.geo.page_shift) / MIGRATE_BYTES_PER_S)
            if test_pages_isolated(node, start, end, MEMORY_OFFLINE) == 0:
                return 0
            if passes == 1 and stuck is not None:
                node.printk(f"migrating pfn {stuck:x} failed ret:1")
            if m.now >= deadline or self._fingerprint(start, end) == before:
                skipped = max(0, int((deadline - m.now) / OFFLINE_PASS_S))
                m.advance(max(0.0, deadline - m.now))
                node.printk(f"offline_pages: gave up after {passes + skipped} passes in "
                            f"{m.now - t0:.1f} s: signal pending")
                return EINTR

    def _do_migrate_range(self, start: int, end: int, gfp: int) -> tuple[int, int | None]:
        """One pass: move every movable folio out; (pages moved, first stuck pfn or None).

        The folios are first taken off the LRU (isolated), so reclaim, which
        the destinations' allocations may run, cannot free them under the
        pass; pinned and ramfs folios fail (-EAGAIN/-EBUSY) and the pass goes
        on; a destination that cannot be allocated ends the pass, as -ENOMEM
        ends migrate_pages().  What did not move is put back on the LRU.
        Kernel: do_migrate_range(), isolate_folio_to_list(); mm/migrate.c,
        migrate_pages_batch(), putback_movable_pages()
        """
        node, mm = self.node, self.node.mm
        movable = self._scan_movable(start, end)
        stuck = ((mm.flags[movable] & PageFlag.PINNED) != 0) | (mm.kind[movable] == PageKind.RAMFS)
        source = movable[~stuck]
        mm.set_flag(source, PageFlag.ISOLATED)
        moved = done = 0
        try:
            for pfn in source.tolist():
                nr = 1 << max(0, mm.order.item(pfn))
                if move_folio(node, pfn, gfp) != 0:
                    break
                moved, done = moved + nr, done + 1
        finally:
            mm.clear_flag(source[done:], PageFlag.ISOLATED)
        return moved, int(movable[stuck][0]) if stuck.any() else None

    def _fingerprint(self, start: int, end: int) -> tuple[bytes, tuple[int, ...]]:
        """What a pass can change: the range's page states and every zone's free count."""
        return (self.node.mm.state[start:end].tobytes(),
                tuple(z.nr_free_pages for z in self.node.zones))

    def _scan_movable(self, start: int, end: int) -> np.ndarray:
        """Heads of LRU and movable_ops pages in the range.  Kernel: scan_movable_pages()"""
        from .page_isolation import MOVABLE_KINDS, movable_ops_mask

        mm = self.node.mm
        state, kind = mm.state[start:end], mm.kind[start:end]
        hit = (state == PageState.ALLOCATED) & MOVABLE_KINDS[kind] & (mm.order[start:end] >= 0)
        hit |= (state == PageState.PAGE_OFFLINE) & movable_ops_mask(self.node, kind)
        return start + np.flatnonzero(hit)

    def _scan_unmovable_offline(self, start: int, end: int) -> int | None:
        """A PageOffline page whose driver kept its reference: definitely unmovable."""
        from .page_isolation import movable_ops_mask

        mm = self.node.mm
        bad = (mm.state[start:end] == PageState.PAGE_OFFLINE) & \
            ((mm.flags[start:end] & PageFlag.REFCOUNT_ZERO) == 0) & \
            ~movable_ops_mask(self.node, mm.kind[start:end])
        hits = np.flatnonzero(bad)
        return start + int(hits[0]) if len(hits) else None

    def _cancel_offline(self, start: int, end: int) -> None:
        undo_isolate_page_range(self.node, start, end, int(MigrateType.MOVABLE))
        self.memory_notify(MEM_CANCEL_OFFLINE, start, end - start)

    def _offline_failed(self, start: int, end: int, reason: str, rc: int) -> int:
        geo = self.node.geo
        self.node.printk(f"memory offlining [mem {geo.pfn_to_phys(start):#010x}-"
                         f"{geo.pfn_to_phys(end) - 1:#010x}] failed due to {reason}")
        return rc

    def _offline_isolated_pages(self, start: int, end: int, zone: Zone,
                                group: MemoryGroup | None) -> None:
        """Take the free pages out of the buddy and detach the range from the zone.

        Kernel: __offline_isolated_pages(), adjust_managed_page_count(),
        adjust_present_page_count(), remove_pfn_range_from_zone()
        """
        from .freelist import del_page_from_free_list

        node, mm, geo = self.node, self.node.mm, self.node.geo
        heads = start + np.flatnonzero((mm.state[start:end] == PageState.FREE)
                                       & (mm.order[start:end] >= 0))
        managed = 0
        for head in heads.tolist():
            order = int(mm.order[head])
            del_page_from_free_list(zone, head, order, int(mm.owner[head]))
            managed += 1 << order
        mm.mark_offline(start, end)
        mm.set_section_online(start, end, False)
        pbo = geo.pageblock_order
        zone.nr_isolate_pageblock -= (end - start) >> pbo
        mm.pb_mt[start >> pbo:end >> pbo] = mm.pageblock_type(MigrateType.MOVABLE)
        mm.set_zone(start, end, 255)
        zone.managed_pages -= managed
        zone.present_pages -= end - start
        if group is not None:
            if zone.idx == ZoneType.MOVABLE:
                group.present_movable_pages -= end - start
            else:
                group.present_kernel_pages -= end - start
        self._shrink_zone_span(zone, start, end)
        init_per_zone_wmark_min(node)

    def _shrink_zone_span(self, zone: Zone, start: int, end: int) -> None:
        """Kernel: mm/memory_hotplug.c, shrink_zone_span()"""
        mm, pbo = self.node.mm, self.node.geo.pageblock_order
        mine = np.flatnonzero(mm.pb_zone == zone.zid)
        if not len(mine):
            zone.zone_start_pfn, zone.spanned_pages = 0, 0
            return
        if start <= zone.zone_start_pfn:
            zone.zone_start_pfn = max(zone.zone_start_pfn, int(mine[0]) << pbo)
        new_end = (int(mine[-1]) + 1) << pbo
        zone.spanned_pages = min(zone.zone_end_pfn, new_end) - zone.zone_start_pfn

    def offline_and_remove_memory(self, start: int, size: int,
                                  timeout: float | None = None) -> int:
        """Offline every block of the range, then remove it; all or nothing.

        If a later block fails, blocks already offlined are onlined again
        with the type they had.  Kernel: offline_and_remove_memory()
        """
        blocks = self._blocks_in(start, size)
        if blocks is None:
            return EINVAL
        done: list[tuple[MemoryBlock, str]] = []
        for block in blocks:
            if not block.online:
                continue
            kind = MMOP_ONLINE_MOVABLE if block.zone == ZoneType.MOVABLE else MMOP_ONLINE_KERNEL
            rc = self.offline_block(block, timeout)
            if rc:
                for b, old in reversed(done):
                    self.online_block(b, old)
                return rc
            done.append((block, kind))
        return self.remove_memory(start, size)
