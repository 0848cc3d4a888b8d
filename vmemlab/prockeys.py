"""Which lines each kernel release prints in /proc/meminfo, /proc/vmstat, /proc/zoneinfo.

The texts grow with the kernel: keys are added, and a few move (5.9 moved
nr_kernel_stack and 5.11 nr_page_table_pages from the zone counters to the
node counters; 6.8 moved pgdemote_* from the events to the node
counters).  Each key here carries the release that added it (``since``)
and, for keys that moved or went away, the first release without it
(``until``); ``keys(table, release)`` is the text of one release, in the
kernel's order.  A profile asks with its ``release``, so a new profile
extends these tables, never the code that prints them.

Releases after the reference VM's come from Andrew Morton's MM pull
requests that merged each change ("MM updates for 6.13-rc1": nr_hugetlb and
the pagesets' high_min/high_max; "for 6.15-rc1": nr_free_pages_blocks, the
proactive reclaim counters, nr_balloon_pages and Balloon).

The lists are those of the kernel the reference VM runs (x86-64, Debian's
config: CONFIG_NUMA, NUMA_BALANCING, ZONE_DMA/DMA32, ZONE_DEVICE, SWAP,
ZSWAP, ZSMALLOC, KSM, TRANSPARENT_HUGEPAGE, HUGETLB_PAGE, MIGRATION,
COMPACTION, MEMORY_BALLOON, BALLOON_COMPACTION, MEMORY_FAILURE,
UNACCEPTED_MEMORY, IOMMU_SUPPORT; no CMA, no HIGHMEM, no
SHADOW_CALL_STACK).  The 6.12 order is checked line by line against the
capture in samples/linux-6.12; the 5.8 text against the v5.10
vmstat_text less the 5.9 and 5.10 additions below; the releases in
between come from the commits that added each key.

Kernel: mm/vmstat.c vmstat_text[], zoneinfo_show_print(); fs/proc/meminfo.c
meminfo_proc_show(); include/linux/mmzone.h (enum zone_stat_item,
node_stat_item), include/linux/vm_event_item.h
"""

from __future__ import annotations

from dataclasses import dataclass

Release = tuple[int, int]
NEVER: Release = (999, 0)


@dataclass(frozen=True)
class Key:
    """One line: its name, the release that added it, the first release without it."""

    name: str
    since: Release = (0, 0)
    until: Release = NEVER


def keys(table: tuple[Key, ...], release: Release) -> tuple[str, ...]:
    """The names ``release`` prints, in order."""
    return tuple(k.name for k in table if k.since <= release < k.until)


def _zones(prefix: str, device_since: Release = (6, 0)) -> tuple[Key, ...]:
    """TEXTS_FOR_ZONES(): dma, dma32, normal, movable, and device with ZONE_DEVICE
    since a39c5d3ce03d ("mm: add DEVICE_ZONE to FOR_ALL_ZONES", v6.0-rc2)."""
    return tuple(Key(f"{prefix}_{z}") for z in ("dma", "dma32", "normal", "movable")) + (
        Key(f"{prefix}_device", device_since),)


# fs/proc/meminfo.c; HugePages_* and Hugepagesize from mm/hugetlb.c,
# DirectMap* from arch/x86/mm/pat/set_memory.c arch_report_meminfo().
MEMINFO = (
    Key("MemTotal"), Key("MemFree"), Key("MemAvailable"), Key("Buffers"), Key("Cached"),
    Key("SwapCached"), Key("Active"), Key("Inactive"), Key("Active(anon)"),
    Key("Inactive(anon)"), Key("Active(file)"), Key("Inactive(file)"), Key("Unevictable"),
    Key("Mlocked"), Key("SwapTotal"), Key("SwapFree"),
    Key("Zswap", (5, 19)), Key("Zswapped", (5, 19)),       # f6498b776d28
    Key("Dirty"), Key("Writeback"), Key("AnonPages"), Key("Mapped"), Key("Shmem"),
    Key("KReclaimable"), Key("Slab"), Key("SReclaimable"), Key("SUnreclaim"),
    Key("KernelStack"), Key("PageTables"),
    Key("SecPageTables", (6, 0)),                           # ebc97a52b5d6
    Key("NFS_Unstable"), Key("Bounce"), Key("WritebackTmp"), Key("CommitLimit"),
    Key("Committed_AS"), Key("VmallocTotal"), Key("VmallocUsed"), Key("VmallocChunk"),
    Key("Percpu"), Key("HardwareCorrupted"), Key("AnonHugePages"), Key("ShmemHugePages"),
    Key("ShmemPmdMapped"), Key("FileHugePages"), Key("FilePmdMapped"),
    Key("Unaccepted", (6, 5)),                              # dcdfdd40fa82
    Key("Balloon", (6, 15)),        # "track memory used by balloon drivers" (MM, 6.15-rc1)
    Key("HugePages_Total"), Key("HugePages_Free"), Key("HugePages_Rsvd"),
    Key("HugePages_Surp"), Key("Hugepagesize"), Key("Hugetlb"),
    Key("DirectMap4k"), Key("DirectMap2M"),
)
MEMINFO_COUNTS = frozenset({"HugePages_Total", "HugePages_Free", "HugePages_Rsvd",
                            "HugePages_Surp"})       # printed without " kB"

# enum zone_stat_item
ZONE_STATS = (
    Key("nr_free_pages"),
    Key("nr_free_pages_blocks", (6, 15)),                   # a211c6550efc (defrag_mode)
    Key("nr_zone_inactive_anon"), Key("nr_zone_active_anon"),
    Key("nr_zone_inactive_file"), Key("nr_zone_active_file"), Key("nr_zone_unevictable"),
    Key("nr_zone_write_pending"), Key("nr_mlock"),
    Key("nr_page_table_pages", until=(5, 11)),              # f0c0c115fb81 moved it
    Key("nr_kernel_stack", until=(5, 9)),                   # 991e7673859e moved it
    Key("nr_bounce"), Key("nr_zspages"), Key("nr_free_cma"),
    Key("nr_unaccepted", (6, 5)),
)
# enum numa_stat_item (5.14+: numa events), printed with CONFIG_NUMA
NUMA_STATS = (Key("numa_hit"), Key("numa_miss"), Key("numa_foreign"),
              Key("numa_interleave"), Key("numa_local"), Key("numa_other"))
# enum node_stat_item
NODE_STATS = (
    Key("nr_inactive_anon"), Key("nr_active_anon"), Key("nr_inactive_file"),
    Key("nr_active_file"), Key("nr_unevictable"), Key("nr_slab_reclaimable"),
    Key("nr_slab_unreclaimable"), Key("nr_isolated_anon"), Key("nr_isolated_file"),
    Key("workingset_nodes"),
    Key("workingset_refault", until=(5, 9)),                # 170b04b7ae49 split anon/file
    Key("workingset_refault_anon", (5, 9)), Key("workingset_refault_file", (5, 9)),
    Key("workingset_activate", until=(5, 9)),
    Key("workingset_activate_anon", (5, 9)), Key("workingset_activate_file", (5, 9)),
    Key("workingset_restore", until=(5, 9)),
    Key("workingset_restore_anon", (5, 9)), Key("workingset_restore_file", (5, 9)),
    Key("workingset_nodereclaim"), Key("nr_anon_pages"), Key("nr_mapped"),
    Key("nr_file_pages"), Key("nr_dirty"), Key("nr_writeback"), Key("nr_writeback_temp"),
    Key("nr_shmem"), Key("nr_shmem_hugepages"), Key("nr_shmem_pmdmapped"),
    Key("nr_file_hugepages"), Key("nr_file_pmdmapped"), Key("nr_anon_transparent_hugepages"),
    Key("nr_vmscan_write"), Key("nr_vmscan_immediate_reclaim"), Key("nr_dirtied"),
    Key("nr_written"),
    Key("nr_throttled_written", (5, 16)),                   # 8cd7c588decf
    Key("nr_kernel_misc_reclaimable"), Key("nr_foll_pin_acquired"),
    Key("nr_foll_pin_released"),
    Key("nr_kernel_stack", (5, 9)),
    Key("nr_page_table_pages", (5, 11)),
    Key("nr_sec_page_table_pages", (6, 0)),
    Key("nr_iommu_pages", (6, 11)),
    Key("nr_swapcached", (5, 12)),                          # b6038942480e
    Key("pgpromote_success", (5, 18)),                      # memory tiering
    Key("pgpromote_candidate", (6, 1)),
    Key("pgdemote_kswapd", (6, 8)), Key("pgdemote_direct", (6, 8)),   # moved from events
    Key("pgdemote_khugepaged", (6, 8)),
    Key("pgdemote_proactive", (6, 15)),     # "Adding Proactive Memory Reclaim Statistics"
    Key("nr_hugetlb", (6, 13)),             # "memcg/hugetlb: add hugeTLB counters to memcg"
    Key("nr_balloon_pages", (6, 15)),       # "track memory used by balloon drivers"
)
# enum vm_stat_item (system-wide)
VM_STATS = (
    Key("nr_dirty_threshold"), Key("nr_dirty_background_threshold"),
    Key("nr_memmap_pages", (6, 11)), Key("nr_memmap_boot_pages", (6, 11)),   # 15995a352474
)
# enum vm_event_item
VM_EVENTS = (
    Key("pgpgin"), Key("pgpgout"), Key("pswpin"), Key("pswpout"),
    *_zones("pgalloc"), *_zones("allocstall"), *_zones("pgskip"),
    Key("pgfree"), Key("pgactivate"), Key("pgdeactivate"), Key("pglazyfree"),
    Key("pgfault"), Key("pgmajfault"), Key("pglazyfreed"), Key("pgrefill"),
    Key("pgreuse", (5, 10)),
    Key("pgsteal_kswapd"), Key("pgsteal_direct"), Key("pgsteal_khugepaged", (6, 3)),
    Key("pgsteal_proactive", (6, 15)),
    Key("pgdemote_kswapd", (5, 15), (6, 8)), Key("pgdemote_direct", (5, 15), (6, 8)),
    Key("pgdemote_khugepaged", (6, 3), (6, 8)),
    Key("pgscan_kswapd"), Key("pgscan_direct"), Key("pgscan_khugepaged", (6, 3)),
    Key("pgscan_proactive", (6, 15)),
    Key("pgscan_direct_throttle"), Key("pgscan_anon"), Key("pgscan_file"),
    Key("pgsteal_anon"), Key("pgsteal_file"),
    Key("zone_reclaim_success", (6, 12)), Key("zone_reclaim_failed"),   # posted 2024-07-22
    Key("pginodesteal"), Key("slabs_scanned"), Key("kswapd_inodesteal"),
    Key("kswapd_low_wmark_hit_quickly"), Key("kswapd_high_wmark_hit_quickly"),
    Key("pageoutrun"), Key("pgrotated"), Key("drop_pagecache"), Key("drop_slab"),
    Key("oom_kill"),
    Key("numa_pte_updates"), Key("numa_huge_pte_updates"), Key("numa_hint_faults"),
    Key("numa_hint_faults_local"), Key("numa_pages_migrated"),
    Key("pgmigrate_success"), Key("pgmigrate_fail"),
    Key("thp_migration_success", (5, 9)), Key("thp_migration_fail", (5, 9)),
    Key("thp_migration_split", (5, 9)),                     # 1a5bae25e3cf
    Key("compact_migrate_scanned"), Key("compact_free_scanned"), Key("compact_isolated"),
    Key("compact_stall"), Key("compact_fail"), Key("compact_success"),
    Key("compact_daemon_wake"), Key("compact_daemon_migrate_scanned"),
    Key("compact_daemon_free_scanned"),
    Key("htlb_buddy_alloc_success"), Key("htlb_buddy_alloc_fail"),
    Key("unevictable_pgs_culled"), Key("unevictable_pgs_scanned"),
    Key("unevictable_pgs_rescued"), Key("unevictable_pgs_mlocked"),
    Key("unevictable_pgs_munlocked"), Key("unevictable_pgs_cleared"),
    Key("unevictable_pgs_stranded"),
    Key("thp_fault_alloc"), Key("thp_fault_fallback"),
    Key("thp_fault_fallback_charge", (5, 8)),               # 85b9f46e8ea4
    Key("thp_collapse_alloc"), Key("thp_collapse_alloc_failed"), Key("thp_file_alloc"),
    Key("thp_file_fallback", (5, 8)), Key("thp_file_fallback_charge", (5, 8)),
    Key("thp_file_mapped"), Key("thp_split_page"), Key("thp_split_page_failed"),
    Key("thp_deferred_split_page"),
    Key("thp_underused_split_page", (6, 12)),               # dafff3f4c850
    Key("thp_split_pmd"),
    Key("thp_scan_exceed_none_pte", (5, 17)), Key("thp_scan_exceed_swap_pte", (5, 17)),
    Key("thp_scan_exceed_share_pte", (5, 17)),
    Key("thp_split_pud"), Key("thp_zero_page_alloc"), Key("thp_zero_page_alloc_failed"),
    Key("thp_swpout"), Key("thp_swpout_fallback"),
    Key("balloon_inflate"), Key("balloon_deflate"), Key("balloon_migrate"),
    Key("swap_ra"), Key("swap_ra_hit"),
    Key("swpin_zero", (6, 12)), Key("swpout_zero", (6, 12)),
    Key("ksm_swpin_copy", (5, 19)), Key("cow_ksm", (5, 19)),
    Key("zswpin", (5, 19)), Key("zswpout", (5, 19)), Key("zswpwb", (6, 8)),
    Key("direct_map_level2_splits", (5, 13)), Key("direct_map_level3_splits", (5, 13)),
)
# vmstat_show(): a deprecated counter printed after the last one (v5.8, 8d92890bd6b8)
VMSTAT_TRAILER = (Key("nr_unstable", (5, 8)),)

# zoneinfo_show_print(): optional lines of the watermark block.  WMARK_PROMO
# itself is older (c574bbe91703, 5.18) but zoneinfo printed it only from 6.12.
ZONEINFO_BOOST_SINCE: Release = (5, 16)   # "show watermark_boost of zone in zoneinfo"
ZONEINFO_PROMO_SINCE: Release = (6, 12)   # "mm: print the promo watermark in zoneinfo"
ZONEINFO_CMA_SINCE: Release = (5, 12)
# the pagesets also print high_min and high_max ("mm: add pcp high_min high_max to
# proc zoneinfo", MM updates for 6.13-rc1), with the labels padded to match
ZONEINFO_HIGH_MINMAX_SINCE: Release = (6, 13)

# Which LRU list a fresh page is reported on.  5.8 starts anonymous pages
# active (lru_cache_add_active_or_unevictable); 5.9 (b518154e59aa) starts
# them inactive; with MGLRU (6.1, enabled in the reference VM's kernel) the
# youngest generations count as active, so every fresh LRU page is active.
ACTIVE_ANON_SINCE: Release = (0, 0)
INACTIVE_ANON_SINCE: Release = (5, 9)
MGLRU_SINCE: Release = (6, 1)


def fresh_lru_active(anon: bool, release: Release) -> bool:
    """Whether a page just added to an LRU shows as Active in meminfo and vmstat."""
    if release >= MGLRU_SINCE:
        return True
    return anon and release < INACTIVE_ANON_SINCE


def zoneinfo_wmark_lines(release: Release) -> tuple[str, ...]:
    """The lines between ``pages free`` and ``protection:`` that ``release`` prints."""
    lines = ["boost"] if release >= ZONEINFO_BOOST_SINCE else []
    lines += ["min", "low", "high"]
    if release >= ZONEINFO_PROMO_SINCE:
        lines.append("promo")
    lines += ["spanned", "present", "managed"]
    if release >= ZONEINFO_CMA_SINCE:
        lines.append("cma")
    return tuple(lines)
