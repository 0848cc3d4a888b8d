"""/proc text views, byte for byte in the kernel's formats.

Two layers: ``format_*`` functions turn plain numbers into the exact text
the kernel prints (they are checked against real captures in
tests/test_procfs_golden.py and reused for snapshots of a real machine), and
``ProcFS`` collects those numbers from a simulated machine (``m.proc``).

Every file prints every line the machine's kernel release prints, in its
order (vmemlab.prockeys keeps the lists per release).  A line whose value
the model does not know (swap, NUMA counters, reclaim and compaction
events it does not simulate...) prints 0; docs/glossary.md lists them.

Kernel: mm/vmstat.c (frag_show_print, pagetypeinfo_show*, zoneinfo_show_print,
vmstat_show), fs/proc/meminfo.c (meminfo_proc_show), mm/hugetlb.c
(hugetlb_report_meminfo), arch/x86/mm/pat/set_memory.c (arch_report_meminfo)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import prockeys
from .constants import MIGRATE_TYPES, MigrateType, PageKind
from .memblock import PMD_SIZE, direct_map_ranges
from .pcp import calculate_normal_threshold, zone_batchsize

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


ALL_WMARK_LINES = ("boost", "min", "low", "high", "promo", "spanned", "present", "managed",
                   "cma")


@dataclass(frozen=True)
class Pageset:
    """One CPU's per_cpu_pages of a zone, as zoneinfo prints it."""

    cpu: int
    count: int
    high: int
    batch: int
    stat_threshold: int
    high_min: int = 0
    high_max: int = 0


@dataclass(frozen=True)
class ZoneinfoData:
    """The numbers one zone contributes to /proc/zoneinfo.

    ``zone_stats`` holds the zone counters and, with CONFIG_NUMA, the NUMA
    counters that follow them; ``pagesets`` are printed when given;
    ``wmark_lines`` names the lines of the watermark block this kernel
    prints (boost, promo and cma came later); ``high_min_max`` adds the
    pagesets' high_min and high_max lines (6.13+).
    """

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
    pagesets: tuple[Pageset, ...] = ()
    wmark_lines: tuple[str, ...] = ALL_WMARK_LINES
    high_min_max: bool = False


def format_zoneinfo_zone(z: ZoneinfoData) -> str:
    """One zone's block of /proc/zoneinfo.

    Kernel: mm/vmstat.c, zoneinfo_show_print()
    """
    out = [f"Node {z.node}, zone {z.name:>8}"]
    if z.node_stats is not None:
        out.append("\n  per-node stats")
        out += [f"\n      {name:<12} {value}" for name, value in z.node_stats]
    mins, low, high, promo = z.wmarks
    values = {"boost": z.boost, "min": mins, "low": low, "high": high, "promo": promo,
              "spanned": z.spanned, "present": z.present, "managed": z.managed, "cma": z.cma}
    out.append(f"\n  pages free     {z.free}")
    out += [f"\n        {name:<8} {values[name]}" for name in z.wmark_lines]
    out.append("\n        protection: (" + ", ".join(str(p) for p in z.protection) + ")")
    if not z.populated:
        return "".join(out) + "\n"
    out += [f"\n      {name:<12} {value}" for name, value in z.zone_stats]
    if z.pagesets:
        out.append("\n  pagesets")
    for p in z.pagesets:
        fields = [("count", p.count), ("high", p.high), ("batch", p.batch)]
        if z.high_min_max:
            fields += [("high_min", p.high_min), ("high_max", p.high_max)]
        width = max(len(name) for name, _ in fields) + 1
        out.append(f"\n    cpu: {p.cpu}" + "".join(
            f"\n              {name + ':':<{width}} {value}" for name, value in fields))
        out.append(f"\n  vm stats threshold: {p.stat_threshold}")
    out.append(f"\n  node_unreclaimable:  {z.node_unreclaimable}"
               f"\n  start_pfn:           {z.start_pfn}\n")
    return "".join(out)


def format_meminfo(rows: Sequence[tuple[str, int]]) -> str:
    """``Label:`` padded to 16 columns, the value in kB width 8, then `` kB``.

    The HugePages_* counts have no unit: ``Label:`` padded to 19, width 5;
    HardwareCorrupted is printed with its own ``"%5lu kB"``.
    Kernel: fs/proc/meminfo.c, show_val_kb(), meminfo_proc_show();
    mm/hugetlb.c, hugetlb_report_meminfo()
    """
    return "".join(_meminfo_line(label, v) for label, v in rows)


def _meminfo_line(label: str, value: int) -> str:
    if label in prockeys.MEMINFO_COUNTS:
        return f"{label + ':':<19}{value:5d}\n"
    if label == "HardwareCorrupted":          # its own "%5lu kB" (mm/memory-failure.c)
        return f"{label}: {value:5d} kB\n"
    return f"{label + ':':<16}{value:8d} kB\n"


def format_vmstat(rows: Sequence[tuple[str, int]]) -> str:
    """``name value`` per line.  Kernel: mm/vmstat.c, vmstat_show()"""
    return "".join(f"{name} {value}\n" for name, value in rows)


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
VMALLOC_TOTAL_KB = 34359738367   # (VMALLOC_END - VMALLOC_START) >> 10, 4-level paging
OVERCOMMIT_RATIO = 50            # vm.overcommit_ratio
DIRTY_RATIO, DIRTY_BACKGROUND_RATIO = 20, 10
HUGEPAGESIZE_KB = 2048
# 2 MiB direct-map pages the reference VM's kernel maps with 4 KiB pages
# (DirectMap4k 24444 kB = 3964 kB of edges + 10 x 2048 kB).
DIRECT_MAP_4K_BLOCKS = 10
_ANON_LRU = (PageKind.ANON, PageKind.SHMEM)


def free_pages_blocks(z: Zone) -> int:
    """NR_FREE_PAGES_BLOCKS (6.15): free pages in free blocks of at least a pageblock,
    isolated ones left out.  Kernel: mm/page_alloc.c, account_freepages() callers
    (a211c6550efc)"""
    geo = z.node.geo
    return sum((len(lst) << order) for order in range(geo.pageblock_order, geo.nr_page_orders)
               for mt, lst in enumerate(z.free_area[order].free_list)
               if mt != MigrateType.ISOLATE)


class ProcFS:
    """Text views of a machine: ``m.proc.meminfo()`` and friends, for its kernel release."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine

    @property
    def _node(self):
        return self.m.node

    @property
    def release(self) -> prockeys.Release:
        return self.m.profile.release

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

    # -- counters ----------------------------------------------------------
    def kind_totals(self) -> np.ndarray:
        """Allocated pages per PageKind over all zones."""
        return sum((z.nr_kind for z in self._node.zones), np.zeros(len(PageKind), np.int64))

    def _lru(self, k: np.ndarray, prefix: str = "nr_") -> dict[str, int]:
        """The LRU counters of kinds ``k``: where fresh pages are reported by release."""
        rel = self.release
        anon_active = prockeys.fresh_lru_active(True, rel)
        other_active = prockeys.fresh_lru_active(False, rel)
        anon, shmem, file = (int(k[PageKind.ANON]), int(k[PageKind.SHMEM]),
                             int(k[PageKind.FILE]))
        active_anon = (anon if anon_active else 0) + (shmem if other_active else 0)
        return {f"{prefix}active_anon": active_anon,
                f"{prefix}inactive_anon": anon + shmem - active_anon,
                f"{prefix}active_file": file if other_active else 0,
                f"{prefix}inactive_file": 0 if other_active else file,
                f"{prefix}unevictable": int(k[PageKind.RAMFS])}

    def node_values(self) -> dict[str, int]:
        """Node counters (enum node_stat_item) the model has, in pages (stack in kB)."""
        k = self.kind_totals()
        kb = self._node.geo.page_size >> 10
        boot = self.m.bootmem
        values = self._lru(k)
        values.update(nr_slab_reclaimable=int(k[PageKind.SLAB_RECLAIMABLE]),
                      nr_slab_unreclaimable=int(k[PageKind.SLAB]),
                      nr_anon_pages=int(k[PageKind.ANON]),
                      nr_mapped=boot.mapped if boot else 0,
                      nr_file_pages=int(k[PageKind.FILE] + k[PageKind.SHMEM]
                                        + k[PageKind.RAMFS]),
                      nr_shmem=int(k[PageKind.SHMEM]),
                      nr_kernel_stack=int(k[PageKind.STACK]) * kb,
                      nr_page_table_pages=int(k[PageKind.PAGETABLE]),
                      nr_balloon_pages=self.m.balloon.actual if self.m.balloon else 0)
        return values

    def zone_values(self, z: Zone) -> dict[str, int]:
        """Zone counters (enum zone_stat_item) the model has; 5.8's per-zone stack too."""
        kb = self._node.geo.page_size >> 10
        values = {"nr_free_pages": z.nr_free_pages,
                  "nr_free_pages_blocks": free_pages_blocks(z),
                  "nr_page_table_pages": int(z.nr_kind[PageKind.PAGETABLE]),
                  "nr_kernel_stack": int(z.nr_kind[PageKind.STACK]) * kb}
        values.update(self._lru(z.nr_kind, "nr_zone_"))
        return values

    def node_stats(self) -> tuple[tuple[str, int], ...]:
        """The per-node counters, in enum node_stat_item order (0 where unknown)."""
        values = self.node_values()
        return tuple((name, values.get(name, 0))
                     for name in prockeys.keys(prockeys.NODE_STATS, self.release))

    def zone_stats(self, z: Zone) -> tuple[tuple[str, int], ...]:
        """The zone counters, then the NUMA counters (vmemlab counts none: 0)."""
        values = self.zone_values(z)
        names = (prockeys.keys(prockeys.ZONE_STATS, self.release)
                 + prockeys.keys(prockeys.NUMA_STATS, self.release))
        return tuple((name, values.get(name, 0)) for name in names)

    # -- zoneinfo ------------------------------------------------------------
    def zoneinfo(self) -> str:
        """/proc/zoneinfo: every zone, per-node stats in the first populated one."""
        node = self._node
        first = next((z for z in node.zones if z.populated()), None)
        return "".join(format_zoneinfo_zone(self._zone_data(z, z is first))
                       for z in node.zones)

    def pagesets(self, z: Zone) -> tuple[Pageset, ...]:
        """Each online CPU's per_cpu_pages of ``z``."""
        sets = self._node.pagesets
        batch = zone_batchsize(z)
        threshold = calculate_normal_threshold(z, sets.cpus)
        high_min, high_max = sets.high_min_max(z)
        return tuple(Pageset(cpu, sets.pcp(z, cpu).count, sets.high(z, cpu), batch, threshold,
                             high_min, high_max)
                     for cpu in range(sets.cpus))

    def _zone_data(self, z: Zone, first: bool) -> ZoneinfoData:
        populated = z.populated()
        return ZoneinfoData(self._node.node_id, z.name, z.nr_free_pages, z.watermark_boost,
                            tuple(z.wmark_pages(i) for i in range(4)), z.spanned_pages,
                            z.present_pages, z.managed_pages, 0, tuple(z.lowmem_reserve),
                            populated, self.zone_stats(z) if populated else (),
                            self.node_stats() if first else None, 0, z.zone_start_pfn,
                            self.pagesets(z) if populated else (),
                            prockeys.zoneinfo_wmark_lines(self.release),
                            self.release >= prockeys.ZONEINFO_HIGH_MINMAX_SINCE)

    # -- meminfo -------------------------------------------------------------
    def meminfo(self) -> str:
        """/proc/meminfo, every line this kernel release prints."""
        return format_meminfo(self.meminfo_rows())

    def meminfo_kb(self, field: str) -> int:
        """One /proc/meminfo field in kB, as ``grep FIELD /proc/meminfo`` shows it."""
        rows = dict(self.meminfo_rows())
        if field not in rows:
            raise ValueError(f"field={field!r} is not one of the /proc/meminfo "
                             f"fields: {', '.join(rows)}")
        return rows[field]

    def meminfo_rows(self) -> list[tuple[str, int]]:
        """(label, value) pairs of /proc/meminfo: kB, or a count for HugePages_*.

        Kernel: fs/proc/meminfo.c, meminfo_proc_show()
        """
        values = self.meminfo_values()
        return [(name, values.get(name, 0))
                for name in prockeys.keys(prockeys.MEMINFO, self.release)]

    def meminfo_values(self) -> dict[str, int]:
        """The /proc/meminfo values the model has, in kB."""
        from .zone import calculate_totalreserve_pages

        node = self._node
        kb = node.geo.page_size >> 10
        k = self.kind_totals()
        v = self.node_values()
        boot = self.m.bootmem
        total = sum(z.managed_pages for z in node.zones)
        free = sum(z.nr_free_pages for z in node.zones)
        file_lru = v["nr_active_file"] + v["nr_inactive_file"]
        srec = v["nr_slab_reclaimable"]
        wmark_low = sum(z.low_wmark_pages() for z in node.zones)
        avail = free - calculate_totalreserve_pages(node)
        avail += file_lru - min(file_lru // 2, wmark_low)
        avail += srec - min(srec // 2, wmark_low)
        anon_boot = boot.anon if boot else 0
        committed = (boot.committed if boot else 0) + max(0, int(k[PageKind.ANON]) - anon_boot)
        percpu = (boot.percpu_first_chunk if boot else 0) + int(k[PageKind.PERCPU])
        small, big = self.direct_map()
        pages = {
            "MemTotal": total, "MemFree": free, "MemAvailable": max(avail, 0),
            "Cached": v["nr_file_pages"],
            "Active": v["nr_active_anon"] + v["nr_active_file"],
            "Inactive": v["nr_inactive_anon"] + v["nr_inactive_file"],
            "Active(anon)": v["nr_active_anon"], "Inactive(anon)": v["nr_inactive_anon"],
            "Active(file)": v["nr_active_file"], "Inactive(file)": v["nr_inactive_file"],
            "Unevictable": v["nr_unevictable"], "AnonPages": v["nr_anon_pages"],
            "Mapped": v["nr_mapped"], "Shmem": v["nr_shmem"], "KReclaimable": srec,
            "Slab": srec + v["nr_slab_unreclaimable"], "SReclaimable": srec,
            "SUnreclaim": v["nr_slab_unreclaimable"],
            "PageTables": v["nr_page_table_pages"],
            "CommitLimit": total * OVERCOMMIT_RATIO // 100, "Committed_AS": committed,
            "VmallocUsed": int(k[PageKind.VMALLOC] + k[PageKind.STACK]), "Percpu": percpu,
            "Balloon": v["nr_balloon_pages"],
        }
        out = {name: n * kb for name, n in pages.items()}
        out.update(KernelStack=v["nr_kernel_stack"], VmallocTotal=VMALLOC_TOTAL_KB,
                   Hugepagesize=HUGEPAGESIZE_KB, DirectMap4k=small * kb,
                   DirectMap2M=big * (PMD_SIZE >> 10))
        return out

    def direct_map(self) -> tuple[int, int]:
        """(4 KiB pages, 2 MiB pages) of the kernel's direct map of all added memory.

        Boot memory as init_mem_mapping() maps it, plus every hot-added
        section (arch_add_memory() maps it with 2 MiB pages).
        Kernel: arch/x86/mm/pat/set_memory.c, direct_pages_count[]
        """
        m, geo = self.m, self._node.geo
        small, big, _ = direct_map_ranges(m.layout.memory, geo)
        if geo.layout == "q35":
            per_2m = PMD_SIZE >> geo.page_shift
            small, big = small + DIRECT_MAP_4K_BLOCKS * per_2m, big - DIRECT_MAP_4K_BLOCKS
            end = m.layout.end_pfn
            added = sum(b.nr_pages for b in m.hotplug.blocks.values() if b.start_pfn >= end)
            big += added // per_2m
        return small, big

    # -- vmstat --------------------------------------------------------------
    def vmstat(self) -> str:
        """/proc/vmstat: every counter of this release, then the deprecated nr_unstable.

        nr_memmap_pages counts struct pages of hot-added memory (allocated
        pages), nr_memmap_boot_pages the boot memmap (memblock).  Event
        counters are what the model counted with ``node.count_event``.
        Kernel: mm/vmstat.c, vmstat_start(), vmstat_show()
        """
        return format_vmstat(self.vmstat_rows())

    def vmstat_value(self, name: str) -> int:
        """One /proc/vmstat counter, as ``grep NAME /proc/vmstat`` shows it."""
        rows = dict(self.vmstat_rows())
        if name not in rows:
            raise ValueError(f"name={name!r} is not a /proc/vmstat counter of "
                             f"Linux {self.m.profile.name}")
        return rows[name]

    def vmstat_rows(self) -> list[tuple[str, int]]:
        """(name, value) pairs of /proc/vmstat in the kernel's order."""
        node, rel = self._node, self.release
        zone_sums: dict[str, int] = {}
        for z in node.zones:
            for name, value in self.zone_values(z).items():
                zone_sums[name] = zone_sums.get(name, 0) + value
        values = {**self.node_values(), **zone_sums, **self.dirty_limits(),
                  "nr_memmap_pages": int(self.kind_totals()[PageKind.MEMMAP]),
                  "nr_memmap_boot_pages": self.m.layout.reserved_pages("memmap"),
                  **node.vm_events}
        tables = (prockeys.ZONE_STATS, prockeys.NUMA_STATS, prockeys.NODE_STATS,
                  prockeys.VM_STATS, prockeys.VM_EVENTS, prockeys.VMSTAT_TRAILER)
        return [(name, values.get(name, 0) if table is not prockeys.VMSTAT_TRAILER else 0)
                for table in tables for name in prockeys.keys(table, rel)]

    def dirty_limits(self) -> dict[str, int]:
        """nr_dirty_threshold and the background one: 20% and 10% of dirtyable memory.

        Dirtyable is free memory above the reserves plus the file LRU, plus
        one.  Kernel: mm/page-writeback.c, global_dirtyable_memory(),
        domain_dirty_limits()
        """
        from .zone import calculate_totalreserve_pages

        node = self._node
        free = sum(z.nr_free_pages for z in node.zones)
        v = self._lru(self.kind_totals())
        dirtyable = free - min(free, calculate_totalreserve_pages(node))
        dirtyable += v["nr_active_file"] + v["nr_inactive_file"] + 1
        page = node.geo.page_size
        thresh = DIRTY_RATIO * page // 100 * dirtyable // page
        bg = DIRTY_BACKGROUND_RATIO * page // 100 * dirtyable // page
        if bg >= thresh:
            bg = thresh // 2
        return {"nr_dirty_threshold": thresh, "nr_dirty_background_threshold": bg}

    # -- debugfs -------------------------------------------------------------
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
