"""Per-CPU page lists: the free pages each CPU keeps back from the buddy allocator.

The kernel frees order-0 pages to a per-CPU list (``struct per_cpu_pages``)
of the page's zone, up to ``high``; when the list reaches ``high`` it gives
``batch`` of its oldest pages back to the buddy allocator.  Pages on these
lists are free (refcount 0) but not in NR_FREE_PAGES, so /proc/meminfo's
MemFree does not count them.  ``drain_all_pages()`` empties the lists:
alloc_contig_range() and memory offlining call it, and so does an
allocation that found nothing after reclaim.

vmemlab models the lists as the state a boot leaves behind: pages freed at
the end of boot (the initrd, the kernel's init sections, short-lived boot
allocations) sit on the freeing CPU's list, as the zoneinfo ``count`` of a
real guest shows.  Allocations do not take from the lists (the buddy
allocator serves them); drains give the pages back.  A page on a list is an
allocated page of the list's owner with PageFlag.REFCOUNT_ZERO, so
has_unmovable_pages() passes it as the kernel does (page_count() == 0).

``high`` and ``batch`` follow the kernel's rules: batch is about 0.1% of
the zone (at most 1 MiB), a quarter of it, rounded to 2**n - 1; high_min
is the zone's low watermark split over the CPUs (6.7+: pcp->high is tuned
between high_min and high_max at run time; a list that was used shows
high_min here, an unused one the boot value 0).

Kernel: mm/page_alloc.c, free_unref_page_commit(), free_pcppages_bulk(),
drain_all_pages(), zone_batchsize(), zone_highsize(); mm/vmstat.c,
calculate_normal_threshold()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .constants import MiB, PageFlag, PageKind, PageState

if TYPE_CHECKING:
    from .node import Node
    from .zone import Zone

MIN_PERCPU_PAGELIST_HIGH_FRACTION = 8
_ALLOCATED, _RESERVED = int(PageState.ALLOCATED), int(PageState.RESERVED)


def zone_batchsize(zone: Zone) -> int:
    """Pages moved per refill or flush: ~0.1% of the zone, at most 1 MiB / 4, 2**n - 1.

    Kernel: mm/page_alloc.c, zone_batchsize(); zone_set_pageset_high_and_batch()
    takes max(1, ...)
    """
    batch = min(zone.managed_pages >> 10, MiB >> zone.node.geo.page_shift) // 4
    batch = max(batch, 1)
    batch = (1 << ((batch + batch // 2).bit_length() - 1)) - 1
    return max(1, batch)


def zone_highsize(zone: Zone, batch: int, cpus: int, high_fraction: int = 0) -> int:
    """A list's high mark: the low watermark (or, with ``high_fraction``, that
    fraction of the zone) split over the CPUs, at least 4 batches.

    high_min uses percpu_pagelist_high_fraction (0 by default); high_max
    uses MIN_PERCPU_PAGELIST_HIGH_FRACTION.
    Kernel: mm/page_alloc.c, zone_highsize(), zone_set_pageset_high_and_batch()
    """
    total = zone.managed_pages // high_fraction if high_fraction else zone.low_wmark_pages()
    return max(total // cpus, batch << 2)


def calculate_normal_threshold(zone: Zone, cpus: int) -> int:
    """The per-CPU vmstat drift allowed before folding into the zone counters.

    2 * fls(online CPUs) * (1 + fls(managed in 128 MiB units)), at most 125.
    Kernel: mm/vmstat.c, calculate_normal_threshold()
    """
    mem = zone.managed_pages >> (27 - zone.node.geo.page_shift)
    return min(125, 2 * cpus.bit_length() * (1 + mem.bit_length()))


class PerCpuPages:
    """One CPU's list for one zone: pfns, newest first.  Kernel: struct per_cpu_pages"""

    __slots__ = ("pfns", "used")

    def __init__(self) -> None:
        self.pfns = np.zeros(0, np.int64)
        self.used = False

    @property
    def count(self) -> int:
        return len(self.pfns)


class Pagesets:
    """Every zone's per-CPU lists of one node (``zone->per_cpu_pageset``)."""

    def __init__(self, node: Node, cpus: int) -> None:
        self.node = node
        self.cpus = cpus
        self.lists = {(z.zid, cpu): PerCpuPages() for z in node.zones for cpu in range(cpus)}
        self.owner = node.new_owner(PageKind.KERNEL, "per-CPU page lists").id

    def pcp(self, zone: Zone, cpu: int) -> PerCpuPages:
        return self.lists[(zone.zid, cpu)]

    def high(self, zone: Zone, cpu: int) -> int:
        """pcp->high as zoneinfo prints it: 0 until the list is first used."""
        if not self.pcp(zone, cpu).used:
            return 0
        return zone_highsize(zone, zone_batchsize(zone), self.cpus)

    def high_min_max(self, zone: Zone) -> tuple[int, int]:
        """pcp->high_min and pcp->high_max, the same for every CPU of ``zone``."""
        batch = zone_batchsize(zone)
        return (zone_highsize(zone, batch, self.cpus),
                zone_highsize(zone, batch, self.cpus, MIN_PERCPU_PAGELIST_HIGH_FRACTION))

    def nr_pages(self, zone: Zone | None = None) -> int:
        """Pages on the lists of ``zone`` (or of every zone)."""
        return sum(p.count for (zid, _), p in self.lists.items()
                   if zone is None or zid == zone.zid)

    def free_unref_pages(self, pfns: np.ndarray, cpu: int) -> None:
        """Free pages to ``cpu``'s lists; a full list gives batches of its oldest back.

        ``pfns`` are allocated order-0 pages, or reserved pages that
        free_reserved_area() just made managed.
        Kernel: mm/page_alloc.c, free_unref_page(), free_unref_page_commit()
        """
        node, mm = self.node, self.node.mm
        pfns = np.asarray(pfns, np.int64)
        zones = mm.pb_zone[pfns >> node.geo.pageblock_order]
        for zid in np.unique(zones).tolist():
            zone = node.zones[zid]
            mine = pfns[zones == zid]
            self._take_ownership(zone, mine)
            pcp = self.pcp(zone, cpu)
            pcp.used = True
            pcp.pfns = np.concatenate([mine[::-1], pcp.pfns])
            high, batch = self.high(zone, cpu), zone_batchsize(zone)
            if pcp.count >= high:
                excess = -(-(pcp.count - high + 1) // batch) * batch
                self._flush(pcp, min(excess, pcp.count))

    def _take_ownership(self, zone: Zone, pfns: np.ndarray) -> None:
        mm = self.node.mm
        reserved = pfns[mm.state[pfns] == _RESERVED]
        used = pfns[mm.state[pfns] == _ALLOCATED]
        zone.nr_kind -= np.bincount(mm.kind[used], minlength=len(zone.nr_kind))
        mm.mark_allocated_pfns(np.concatenate([reserved, used]), PageKind.KERNEL, self.owner)
        mm.set_flag(pfns, PageFlag.REFCOUNT_ZERO)
        zone.nr_kind[PageKind.KERNEL] += len(pfns)

    def _flush(self, pcp: PerCpuPages, n: int) -> None:
        """free_pcppages_bulk(): the ``n`` oldest pages go back to the buddy allocator."""
        from .bulk import free_pages_bulk

        if n <= 0:
            return
        gone, pcp.pfns = pcp.pfns[-n:], pcp.pfns[:-n]
        free_pages_bulk(self.node, gone)

    def drain(self, zone: Zone | None = None) -> int:
        """Empty the lists of ``zone`` (every zone if None); the number of pages freed.

        Kernel: mm/page_alloc.c, drain_all_pages(), drain_pages_zone()
        """
        freed = 0
        for (zid, _), pcp in self.lists.items():
            if zone is None or zid == zone.zid:
                freed += pcp.count
                self._flush(pcp, pcp.count)
        return freed


def drain_all_pages(node: Node, zone: Zone | None = None) -> int:
    """Give every per-CPU list's pages of ``zone`` (or all zones) back; pages freed.

    Kernel: mm/page_alloc.c, drain_all_pages()
    """
    return node.pagesets.drain(zone) if node.pagesets is not None else 0
