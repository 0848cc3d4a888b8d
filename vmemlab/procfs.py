"""/proc text views, byte for byte in the kernel's formats.

Two layers: ``format_*`` functions turn plain numbers into the exact text
the kernel prints (they are checked against real captures in
tests/test_procfs_golden.py and reused for snapshots of a real machine), and
``ProcFS`` collects those numbers from a simulated machine (``m.proc``).

Where a file has lines vmemlab does not model (per-CPU pagesets, NUMA
counters, swap, vmalloc...), the view prints only the modelled lines, in the
kernel's order and format; docs/glossary.md lists what is left out.

Kernel: mm/vmstat.c (frag_show_print, pagetypeinfo_show*, zoneinfo_show_print),
fs/proc/meminfo.c (meminfo_proc_show)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .constants import MIGRATE_TYPES, MigrateType, PageKind

if TYPE_CHECKING:
    from .machine import Machine
    from .zone import Zone

PAGETYPEINFO_CAP = 100000


# ---------------------------------------------------------------- formatters
def format_buddyinfo(rows: Sequence[tuple[int, str, Sequence[int]]]) -> str:
    """``Node %d, zone %8s `` then ``%6lu `` per order.  Kernel: frag_show_print()"""
    return "".join(f"Node {nid}, zone {name:>8} " + "".join(f"{n:6d} " for n in counts) + "\n"
                   for nid, name, counts in rows)


def format_pagetypeinfo(pageblock_order: int, nr_orders: int,
                        free: Sequence[tuple[int, str, str, Sequence[int]]],
                        blocks: Sequence[tuple[int, str, Sequence[int]]],
                        type_names: Sequence[str]) -> str:
    """The /proc/pagetypeinfo text.

    ``free`` rows are (node, zone, type, counts per order); ``blocks`` rows
    are (node, zone, pageblocks per type).  Free counts are capped at
    100000 and printed ">100000", as the kernel stops walking a long list.

    Kernel: mm/vmstat.c, pagetypeinfo_show(), pagetypeinfo_showfree_print(),
    pagetypeinfo_showblockcount_print()
    """
    out = [f"Page block order: {pageblock_order}\n",
           f"Pages per block:  {1 << pageblock_order}\n", "\n",
           f"{'Free pages count per migrate type at order':<43} "
           + "".join(f"{o:6d} " for o in range(nr_orders)) + "\n"]
    for nid, zone, mtype, counts in free:
        cells = "".join(f">{PAGETYPEINFO_CAP:6d} " if c >= PAGETYPEINFO_CAP
                        else f"{c:6d} " for c in counts)
        out.append(f"Node {nid:4d}, zone {zone:>8}, type {mtype:>12} {cells}\n")
    out.append("\n" + f"{'Number of blocks type ':<23}"
               + "".join(f"{name:>12} " for name in type_names) + "\n")
    for nid, zone, counts in blocks:
        out.append(f"Node {nid}, zone {zone:>8} " + "".join(f"{c:12d} " for c in counts) + "\n")
    return "".join(out)


@dataclass(frozen=True)
class ZoneinfoData:
    """The numbers one zone contributes to /proc/zoneinfo."""

    node: int
    name: str
    free: int
    boost: int
    wmarks: tuple[int, int, int, int]
    spanned: int
    present: int
    managed: int
    cma: int
    protection: tuple[int, ...]
    populated: bool
    zone_stats: tuple[tuple[str, int], ...] = ()
    node_stats: tuple[tuple[str, int], ...] | None = None
    node_unreclaimable: int = 0
    start_pfn: int = 0


def format_zoneinfo_zone(z: ZoneinfoData) -> str:
    """One zone's block of /proc/zoneinfo (without per-CPU pagesets).

    Kernel: mm/vmstat.c, zoneinfo_show_print()
    """
    out = [f"Node {z.node}, zone {z.name:>8}"]
    if z.node_stats is not None:
        out.append("\n  per-node stats")
        out += [f"\n      {name:<12} {value}" for name, value in z.node_stats]
    mins, low, high, promo = z.wmarks
    out.append(f"\n  pages free     {z.free}"
               f"\n        boost    {z.boost}"
               f"\n        min      {mins}"
               f"\n        low      {low}"
               f"\n        high     {high}"
               f"\n        promo    {promo}"
               f"\n        spanned  {z.spanned}"
               f"\n        present  {z.present}"
               f"\n        managed  {z.managed}"
               f"\n        cma      {z.cma}")
    out.append("\n        protection: (" + ", ".join(str(p) for p in z.protection) + ")")
    if not z.populated:
        return "".join(out) + "\n"
    out += [f"\n      {name:<12} {value}" for name, value in z.zone_stats]
    out.append(f"\n  node_unreclaimable:  {z.node_unreclaimable}"
               f"\n  start_pfn:           {z.start_pfn}\n")
    return "".join(out)


def format_meminfo(rows: Sequence[tuple[str, int]]) -> str:
    """``Label:`` padded to 16 columns, the value in kB width 8, then `` kB``.

    Kernel: fs/proc/meminfo.c, show_val_kb()
    """
    return "".join(f"{label + ':':<16}{kb:8d} kB\n" for label, kb in rows)


def format_index_table(rows: Sequence[tuple[int, str, Sequence[int]]], width: int) -> str:
    """debugfs extfrag files: ``Node %d, zone %8s `` and ``%d.%03d `` per order.

    ``width`` is 1 for unusable_index ("%d.%03d") and 2 for extfrag_index
    ("%2d.%03d").  Values are the kernel's integers scaled by 1000, divided
    the C way (toward zero), so -1000 prints "-1.000".

    Kernel: mm/vmstat.c, unusable_show_print(), extfrag_show_print()
    """
    def cell(v: int) -> str:
        q = int(v / 1000)
        return f"{q:{width}d}.{abs(v - q * 1000):03d} "

    return "".join(f"Node {nid}, zone {name:>8} " + "".join(cell(v) for v in vals) + "\n"
                   for nid, name, vals in rows)


# -------------------------------------------------------- the machine's /proc
class ProcFS:
    """Text views of a machine: ``m.proc.buddyinfo()`` and friends."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine

    @property
    def _node(self):
        return self.m.node

    def _populated(self) -> list[Zone]:
        return [z for z in self._node.zones if z.populated()]

    def buddyinfo(self) -> str:
        """/proc/buddyinfo: free blocks per order for each populated zone."""
        nid = self._node.node_id
        return format_buddyinfo([(nid, z.name, [a.nr_free for a in z.free_area])
                                 for z in self._populated()])

    def pagetypeinfo(self) -> str:
        """/proc/pagetypeinfo: free blocks per order and type, pageblocks per type."""
        node = self._node
        geo = node.geo
        names = [str(MigrateType(t)) for t in range(MIGRATE_TYPES)]
        free, blocks = [], []
        for z in self._populated():
            for t in range(MIGRATE_TYPES):
                counts = [len(a.free_list[t]) for a in z.free_area]
                free.append((node.node_id, z.name, names[t], counts))
            blocks.append((node.node_id, z.name, self.pageblock_counts(z)))
        return format_pagetypeinfo(geo.pageblock_order, geo.nr_page_orders, free, blocks, names)

    def pageblock_counts(self, z: Zone) -> list[int]:
        """Pageblocks per migratetype, sampled as the kernel does.

        One pfn per pageblock from zone_start_pfn; it counts if its section
        is online and the page belongs to this zone.
        """
        node = self._node
        geo, mm = node.geo, node.mm
        pfns = np.arange(z.zone_start_pfn, z.zone_end_pfn, geo.pageblock_nr_pages)
        pbs = pfns >> geo.pageblock_order
        ok = (mm.pb_zone[pbs] == z.idx) & mm.section_online[pfns // geo.pages_per_section]
        return np.bincount(mm.pb_mt[pbs][ok], minlength=MIGRATE_TYPES).tolist()

    def zoneinfo(self) -> str:
        """/proc/zoneinfo, the lines vmemlab models (no per-CPU pagesets)."""
        node = self._node
        first = next((z for z in node.zones if z.populated()), None)
        return "".join(format_zoneinfo_zone(self._zone_data(z, z is first))
                       for z in node.zones)

    def _zone_data(self, z: Zone, first: bool) -> ZoneinfoData:
        k = z.nr_kind
        zone_stats = (("nr_free_pages", z.nr_free_pages),
                      ("nr_zone_inactive_anon", int(k[PageKind.ANON] + k[PageKind.SHMEM])),
                      ("nr_zone_active_anon", 0),
                      ("nr_zone_inactive_file", int(k[PageKind.FILE])),
                      ("nr_zone_active_file", 0),
                      ("nr_zone_unevictable", int(k[PageKind.RAMFS])),
                      ("nr_zone_write_pending", 0), ("nr_mlock", 0), ("nr_zspages", 0),
                      ("nr_free_cma", 0))
        node_stats = self.node_stats() if first else None
        return ZoneinfoData(self._node.node_id, z.name, z.nr_free_pages, z.watermark_boost,
                            tuple(z.wmark_pages(i) for i in range(4)), z.spanned_pages,
                            z.present_pages, z.managed_pages, 0, tuple(z.lowmem_reserve),
                            z.populated(), zone_stats, node_stats, 0, z.zone_start_pfn)

    def kind_totals(self) -> np.ndarray:
        """Allocated pages per PageKind over all zones."""
        return sum((z.nr_kind for z in self._node.zones), np.zeros(len(PageKind), np.int64))

    def node_stats(self) -> tuple[tuple[str, int], ...]:
        """The per-node counters vmemlab models, in enum node_stat_item order."""
        k = self.kind_totals()
        file_pages = int(k[PageKind.FILE] + k[PageKind.SHMEM] + k[PageKind.RAMFS])
        return (("nr_inactive_anon", int(k[PageKind.ANON] + k[PageKind.SHMEM])),
                ("nr_active_anon", 0),
                ("nr_inactive_file", int(k[PageKind.FILE])),
                ("nr_active_file", 0),
                ("nr_unevictable", int(k[PageKind.RAMFS])),
                ("nr_slab_reclaimable", int(k[PageKind.SLAB_RECLAIMABLE])),
                ("nr_slab_unreclaimable", int(k[PageKind.SLAB])),
                ("nr_isolated_anon", 0), ("nr_isolated_file", 0),
                ("nr_anon_pages", int(k[PageKind.ANON])),
                ("nr_file_pages", file_pages),
                ("nr_shmem", int(k[PageKind.SHMEM])),
                ("nr_page_table_pages", int(k[PageKind.PAGETABLE])),
                ("nr_balloon_pages", self.m.balloon.actual if self.m.balloon else 0))

    def meminfo(self) -> str:
        """/proc/meminfo, the lines vmemlab models."""
        return format_meminfo(self.meminfo_rows())

    def meminfo_kb(self, field: str) -> int:
        """One /proc/meminfo field in kB, as ``grep FIELD /proc/meminfo`` shows it."""
        rows = dict(self.meminfo_rows())
        if field not in rows:
            raise ValueError(f"field={field!r} is not one of the modelled /proc/meminfo "
                             f"fields: {', '.join(rows)}")
        return rows[field]

    def meminfo_rows(self) -> list[tuple[str, int]]:
        """(label, kB) pairs of /proc/meminfo.  Kernel: fs/proc/meminfo.c"""
        from .zone import calculate_totalreserve_pages

        node = self._node
        kb = 1 << (node.geo.page_shift - 10)
        k = self.kind_totals()
        total = sum(z.managed_pages for z in node.zones)
        free = sum(z.nr_free_pages for z in node.zones)
        file_lru = int(k[PageKind.FILE])
        anon_lru = int(k[PageKind.ANON] + k[PageKind.SHMEM])
        cached = int(k[PageKind.FILE] + k[PageKind.SHMEM] + k[PageKind.RAMFS])
        srec, sunrec = int(k[PageKind.SLAB_RECLAIMABLE]), int(k[PageKind.SLAB])
        wmark_low = sum(z.low_wmark_pages() for z in node.zones)
        avail = free - calculate_totalreserve_pages(node)
        avail += file_lru - min(file_lru // 2, wmark_low)
        avail += srec - min(srec // 2, wmark_low)
        rows = [("MemTotal", total), ("MemFree", free), ("MemAvailable", max(avail, 0)),
                ("Buffers", 0), ("Cached", cached), ("SwapCached", 0),
                ("Active", 0), ("Inactive", anon_lru + file_lru),
                ("Active(anon)", 0), ("Inactive(anon)", anon_lru),
                ("Active(file)", 0), ("Inactive(file)", file_lru),
                ("Unevictable", int(k[PageKind.RAMFS])), ("Mlocked", 0),
                ("SwapTotal", 0), ("SwapFree", 0), ("Dirty", 0), ("Writeback", 0),
                ("AnonPages", int(k[PageKind.ANON])), ("Mapped", 0),
                ("Shmem", int(k[PageKind.SHMEM])), ("KReclaimable", srec),
                ("Slab", srec + sunrec), ("SReclaimable", srec), ("SUnreclaim", sunrec),
                ("PageTables", int(k[PageKind.PAGETABLE]))]
        return [(label, pages * kb) for label, pages in rows]

    def unusable_index(self) -> str:
        """debugfs extfrag/unusable_index for each populated zone."""
        from .metrics import unusable_free_index

        return self._index_table(unusable_free_index, 1)

    def extfrag_index(self) -> str:
        """debugfs extfrag/extfrag_index for each populated zone."""
        from .metrics import fragmentation_index

        return self._index_table(fragmentation_index, 2)

    def _index_table(self, fn, width: int) -> str:
        node = self._node
        rows = [(node.node_id, z.name, [fn(z, o) for o in range(node.geo.nr_page_orders)])
                for z in self._populated()]
        return format_index_table(rows, width)

    def vmstat(self) -> str:
        """/proc/vmstat: the memmap counters, then the events vmemlab counts.

        nr_memmap_pages counts struct pages of hot-added memory (allocated
        pages), nr_memmap_boot_pages the boot memmap (memblock).
        Kernel: mm/vmstat.c (6.11+: nr_memmap_pages, nr_memmap_boot_pages)
        """
        node = self._node
        memmap = int(self.kind_totals()[PageKind.MEMMAP])
        boot = sum(r.end_pfn - r.start_pfn for r in self.m.layout.reserved
                   if r.name.startswith("memmap"))
        rows = [("nr_free_pages", sum(z.nr_free_pages for z in node.zones)),
                ("nr_memmap_pages", memmap), ("nr_memmap_boot_pages", boot)]
        rows += sorted(node.vm_events.items())
        return "".join(f"{name} {value}\n" for name, value in rows)
