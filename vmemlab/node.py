"""The memory node: memmap, zones, owners, and the knobs they share.

vmemlab simulates one NUMA node (node 0), as in a typical small guest.  The
node owns the memmap arrays, the five zones, the kernel profile, the trace,
and a registry of *owners*: whoever holds allocated pages (an activity such
as a page cache, or one ``alloc_pages`` call).  Each allocated page stores its
owner id, so migration can move a page's identity to its new pfn and the
owner can still free it later.

Kernel: include/linux/mmzone.h, struct pglist_data (NODE_DATA)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .constants import NO_ZONE, Geometry, MigrateType, PageKind, PageState, ZoneType
from .memmap import MemMap
from .oom import OOM_RATELIMIT, Ratelimit
from .profiles import KernelProfile
from .trace import Event, NullTrace, Trace
from .zone import Zone


@dataclass
class Owner:
    """Who holds some allocated pages.

    ``raw`` owners are single ``alloc_pages`` allocations: they remember the
    head pfn and order so ``free_pages`` can check its arguments and follow a
    migrated page.
    """

    id: int
    kind: PageKind
    name: str
    activity: Any = None
    raw: bool = False
    contig: bool = False
    pfn: int = -1
    first_pfn: int = -1
    order: int = 0


class Node:
    """Node 0: the memmap, the zones and the owner registry."""

    def __init__(self, geo: Geometry, profile: KernelProfile, nr_pfns: int,
                 trace: Trace | NullTrace | None = None,
                 min_free_kbytes: int | None = None,
                 mobility_grouping: bool = True) -> None:
        self.node_id = 0
        self.geo = geo
        self.profile = profile
        self.mm = MemMap(geo, nr_pfns)
        self.trace: Trace | NullTrace = trace if trace is not None else NullTrace()
        self.zones = [Zone(self, z) for z in ZoneType]
        self.owners: list[Owner] = []
        self.min_free_kbytes = 0
        self.min_free_kbytes_user = (min_free_kbytes if min_free_kbytes is not None
                                     else geo.min_free_kbytes)
        # page_group_by_mobility_disabled: set by build_all_zonelists() when the
        # node has too little memory; a teaching knob here.
        self.page_group_by_mobility_disabled = not mobility_grouping
        self.vm_events: dict[str, int] = {}
        self.log: list[tuple[float, str]] = []
        self.comm = "kworker/0:1"   # current->comm when no process allocates
        self.current: Any = None    # the activity whose process is allocating (current)
        self.activities: list[Any] = []   # the machine's activities: processes among them
        self.oom_rs = Ratelimit(*OOM_RATELIMIT)
        self.last_warn_alloc = float("-inf")
        # PageKind -> driver that migrates its own non-LRU pages (struct movable_operations)
        self.movable_ops: dict[int, Any] = {}
        self.clock = lambda: 0.0
        # Per-CPU page lists (vmemlab.pcp.Pagesets), set when the machine boots.
        self.pagesets: Any = None
        self.compaction: Any = None   # vmemlab.compaction.NodeCompaction, made on first use

    def printk(self, message: str) -> None:
        """Append a line to the kernel log (``Machine.dmesg()`` shows it)."""
        self.log.append((self.clock(), message))

    # -- zones ------------------------------------------------------------
    def zone(self, idx: int | ZoneType) -> Zone:
        return self.zones[int(idx)]

    def page_zone(self, pfn: int) -> Zone | None:
        """The zone a pfn belongs to, or None.  Kernel: page_zone()"""
        z = self.mm.zone_of(pfn)
        return None if z == NO_ZONE else self.zones[z]

    def zonelist(self, highest: ZoneType) -> list[Zone]:
        """Populated zones an allocation may use, preferred first.

        On one node the zonelist is the zones from ``highest`` down to DMA:
        Movable, Normal, DMA32, DMA.  Kernel: mm/page_alloc.c, build_zonelists()
        """
        return [z for z in reversed(self.zones[: int(highest) + 1]) if z.managed()]

    # -- owners -----------------------------------------------------------
    def new_owner(self, kind: PageKind, name: str, activity: Any = None,
                  raw: bool = False) -> Owner:
        """Register a new owner of pages and return it."""
        owner = Owner(len(self.owners), kind, name, activity, raw)
        self.owners.append(owner)
        return owner

    def raw_owner_ids(self) -> np.ndarray:
        """Owners that are single alloc_pages() allocations still held."""
        return np.array([o.id for o in self.owners if o.raw and o.pfn >= 0], np.int32)

    def contig_owner_ids(self) -> list[int]:
        """Owners created by alloc_contig_range() (free_contig_range() frees only those)."""
        return [o.id for o in self.owners if o.contig]

    def contig_runs(self) -> np.ndarray:
        """(start, end) pfn runs of allocated pages held by alloc_contig_range() callers.

        Those pages are KERNEL pages of a contig owner (``ContigRange`` and
        ``fake_online`` give them that kind), so only KERNEL pages are looked
        at.  Pictures draw them apart from other kernel memory.
        """
        ids = self.contig_owner_ids()
        mm = self.mm
        if not ids:
            return np.zeros((0, 2), np.int64)
        cand = np.flatnonzero((mm.kind == PageKind.KERNEL) & (mm.state == PageState.ALLOCATED))
        is_contig = np.zeros(len(self.owners) + 1, bool)
        is_contig[np.asarray(ids) + 1] = True
        pfns = cand[is_contig[mm.owner[cand] + 1]]
        if not pfns.size:
            return np.zeros((0, 2), np.int64)
        cuts = np.flatnonzero(np.diff(pfns) != 1) + 1
        starts = pfns[np.concatenate(([0], cuts))]
        ends = pfns[np.concatenate((cuts - 1, [pfns.size - 1]))] + 1
        return np.stack([starts, ends], axis=1).astype(np.int64)

    def owner_of(self, pfn: int) -> Owner | None:
        """The owner of an allocated page, or None for free/reserved pages."""
        oid = int(self.mm.owner[pfn])
        if oid < 0 or self.mm.state[pfn] != PageState.ALLOCATED:
            return None
        return self.owners[oid]

    # -- misc -------------------------------------------------------------
    def emit(self, event: Event) -> None:
        self.trace.emit(event)

    def count_event(self, name: str, n: int = 1) -> None:
        """Bump a /proc/vmstat-style event counter (pgalloc_normal, pgmigrate_success...)."""
        self.vm_events[name] = self.vm_events.get(name, 0) + n

    def gfp_migratetype(self, mt: MigrateType) -> MigrateType:
        """With mobility grouping disabled every allocation is UNMOVABLE."""
        return MigrateType.UNMOVABLE if self.page_group_by_mobility_disabled else mt

    def present_pfns(self) -> np.ndarray:
        """Pfns of every page that exists (for views and validation)."""
        return np.flatnonzero(self.mm.state != 0)
