"""Booting a q35 guest: reservations, deferred struct pages, the boot kernel's memory."""

from __future__ import annotations

import numpy as np
import pytest

import vmemlab as vm
from vmemlab.constants import GiB, KiB, MiB, MigrateType, PageFlag, PageKind, PageState
from vmemlab.memblock import (
    KERNEL_IMAGE_SIZE,
    large_system_hash_pages,
    log_buf_pages,
    percpu_groups,
)
from vmemlab.page_isolation import first_unmovable
from vmemlab.pcp import calculate_normal_threshold, drain_all_pages, zone_batchsize

from .conftest import teaching

X86 = vm.Machine(boot_memory=GiB, seed=0).geometry


def reserved(m: vm.Machine, name: str) -> list:
    return [r for r in m.layout.reserved if r.name == name]


def test_seabios_keeps_132_kib_at_the_top_of_low_ram():
    m = vm.Machine(boot_memory=GiB)
    assert "BIOS-e820: [mem 0x0000000000100000-0x000000003ffdefff] usable" in m.dmesg()
    assert m.zones["DMA32"].end_pfn == 0x3FFDF


def test_swiotlb_follows_max_possible_pfn():
    """x86_swiotlb_enable when memory may exist above 4 GiB: RAM there, or
    the hotpluggable range QEMU's SRAT announces for a maxmem guest."""
    hotplug = vm.Machine(boot_memory=GiB)                     # maxmem sized for devices
    plain = vm.Machine(boot_memory=GiB, maxmem=GiB)           # no memory hotplug
    big = vm.Machine(boot_memory=6 * GiB, maxmem=6 * GiB)     # RAM above 4 GiB
    (tlb,) = reserved(hotplug, "swiotlb bounce buffer")
    assert tlb.nr_pages == 16384 and tlb.end_pfn <= 4 * GiB >> 12
    assert not reserved(plain, "swiotlb bounce buffer")
    assert reserved(big, "swiotlb bounce buffer")[0].end_pfn <= 4 * GiB >> 12
    gained = plain.proc.meminfo_kb("MemTotal") - hotplug.proc.meminfo_kb("MemTotal")
    assert gained == (16384 + 192) * 4                       # the buffer and its slots
    assert vm.Machine(boot_memory=GiB, maxmem=3 * GiB).max_possible_pfn == (6 * GiB) >> 12
    slots = vm.Machine(boot_memory=GiB, maxmem=3 * GiB, slots=2)    # 1 GiB more per slot
    assert slots.max_possible_pfn == (8 * GiB) >> 12


def test_maxmem_and_slots_are_checked_like_qemu():
    with pytest.raises(ValueError, match="must be at least the initial memory size"):
        vm.Machine(boot_memory=GiB, maxmem=512 * MiB)
    with pytest.raises(ValueError, match="memory slots were specified"):
        vm.Machine(boot_memory=GiB, maxmem=GiB, slots=2)
    with pytest.raises(ValueError, match="cpus=0 must be an integer in 1..288"):
        vm.Machine(boot_memory=GiB, cpus=0)
    with pytest.raises(ValueError, match="slots=300"):
        vm.Machine(boot_memory=GiB, maxmem=2 * GiB, slots=300)
    plain = vm.Machine(boot_memory=GiB, maxmem=GiB)
    with pytest.raises(ValueError, match="not prepared for memory devices"):
        plain.add_virtio_mem(region_size=2 * GiB)
    m = vm.Machine(boot_memory=GiB, maxmem=3 * GiB, slots=1)
    m.add_virtio_mem(region_size=GiB)
    with pytest.raises(ValueError, match="not enough space, currently 0x40000000 in use "
                                         "of total space for memory devices 0x80000000"):
        m.add_virtio_mem(region_size=2 * GiB)
    assert len(m.virtio_mem) == 1 and len(m.device_regions) == 1
    m.add_dimm(128 * MiB)
    with pytest.raises(ValueError, match="no free slots available"):
        m.add_dimm(128 * MiB)
    with pytest.raises(ValueError, match="specify the 'slots' option"):
        vm.Machine(boot_memory=GiB, maxmem=2 * GiB, slots=0).add_dimm(128 * MiB)


def test_kernel_image_takes_a_seeded_kaslr_slot():
    def text(m):
        return reserved(m, "kernel text")[0].start_pfn

    starts = {text(vm.Machine(boot_memory=GiB, seed=s)) for s in range(6)}
    assert len(starts) > 3
    assert all(p % 512 == 0 and p >= 16 * MiB >> 12 for p in starts)
    assert text(vm.Machine(boot_memory=GiB, seed=4)) == text(vm.Machine(boot_memory=GiB, seed=4))
    m = vm.Machine(boot_memory=GiB, seed=4)
    (initrd,) = reserved(m, "initrd")
    first = text(m)
    assert first + (KERNEL_IMAGE_SIZE >> 12) <= initrd.start_pfn or first >= initrd.end_pfn
    m.reboot()                                    # a new boot draws a new slot
    assert text(m) != first
    m.validate()


def test_initrd_sits_where_qemu_loads_it_and_is_freed():
    m = vm.Machine(boot_memory=GiB)
    (initrd,) = reserved(m, "initrd")
    assert initrd.end_pfn == (GiB - 0x28000 - 1) >> 12 and initrd.freed == "free_initrd_mem"
    held = m.node.mm.state[initrd.start_pfn:initrd.end_pfn]
    assert not np.any(held == PageState.RESERVED)           # given back at the end of boot


def test_deferred_pages_keep_unmovable_pageblocks_where_memory_was_reserved():
    """memmap_init() types pageblocks in the first section; deferred_init_memmap()
    only those whose first page is free, so reserved ones stay type 0."""
    m = vm.Machine(boot_memory=GiB, seed=0)
    assert m.layout.first_deferred_pfn == 65536
    assert vm.Machine(boot_memory=4 * GiB).layout.first_deferred_pfn == 0x108000
    mt = m.node.mm.pb_mt
    assert mt[0] == MigrateType.UNMOVABLE                  # pfn 0 is not memory
    assert all(mt[b] == MigrateType.MOVABLE for b in range(1, 8))
    for r in m.layout.reserved:
        first = -(-r.start_pfn // 512) * 512
        for pfn in range(max(first, 65536), r.end_pfn, 512):
            if not r.freed:
                assert mt[pfn >> 9] != MigrateType.MOVABLE, (r.name, hex(pfn))


def test_memblock_sizes_follow_the_kernel_rules():
    assert percpu_groups(1) == (1, 2 * MiB) and percpu_groups(2) == (2, MiB)
    assert percpu_groups(3) == (4, 512 * KiB) and percpu_groups(8) == (8, 256 * KiB)
    assert [n for _, n in log_buf_pages(512 * KiB, X86)] == [128, 96, 352]
    assert log_buf_pages(256 * KiB, X86) == []
    one_gib = 250_000
    assert large_system_hash_pages(one_gib, 13, X86) == 256      # dentry: 131072 buckets
    assert large_system_hash_pages(one_gib, 14, X86) == 128      # inode: 65536 buckets
    assert large_system_hash_pages(8 * one_gib, 13, X86) == 2048
    m = vm.Machine(boot_memory=GiB)
    assert m.layout.reserved_pages("memmap") == 4096 == m.proc.vmstat_value("nr_memmap_boot_pages")
    assert [r.nr_pages for r in reserved(m, "percpu first chunk")] == [64, 64]


def test_boot_kernel_memory_scales_with_cpus():
    two, four = vm.Machine(boot_memory=GiB), vm.Machine(boot_memory=GiB, cpus=4)
    assert two.proc.meminfo_kb("KernelStack") == (46 + 14) * 16
    assert four.proc.meminfo_kb("KernelStack") == (46 + 28) * 16
    assert four.proc.meminfo_kb("Percpu") == 4 * (256 + 20)
    assert four.proc.zoneinfo().count("    cpu: ") == 2 * 4      # DMA and DMA32
    assert four.proc.meminfo_kb("SUnreclaim") - two.proc.meminfo_kb("SUnreclaim") == 2 * 128
    four.validate()


def test_dma_atomic_pools_take_one_order_5_block_per_zone_type():
    m = vm.Machine(boot_memory=GiB)
    dma = m.zone("DMA")
    assert dma.managed_pages - dma.nr_free_pages == 32
    assert m.proc.vmstat_value("pgalloc_dma") == 32


def test_pcp_and_thresholds_follow_the_kernel_formulas():
    m = vm.Machine(boot_memory=GiB)
    dma, dma32 = m.zone("DMA"), m.zone("DMA32")
    assert (zone_batchsize(dma), zone_batchsize(dma32)) == (1, 63)
    assert calculate_normal_threshold(dma, 2) == 4 and calculate_normal_threshold(dma32, 2) == 16
    assert m.node.pagesets.high(dma, 0) == 0                         # never used
    assert m.node.pagesets.high(dma32, 0) == dma32.low_wmark_pages() // 2


def test_draining_the_per_cpu_lists_gives_memfree_back():
    m = vm.Machine(boot_memory=GiB)
    held = m.node.pagesets.nr_pages()
    free = m.proc.meminfo_kb("MemFree")
    assert held > 1000 and m.proc.meminfo_kb("MemTotal") - free > held * 4
    assert drain_all_pages(m.node) == held
    assert m.proc.meminfo_kb("MemFree") == free + held * 4
    assert m.node.pagesets.nr_pages() == 0 and "count: 0" in m.proc.zoneinfo()
    m.validate()


def test_a_full_list_gives_batches_back(teach):
    """high is the low watermark per CPU, at least 4 batches: 4 pages here."""
    pfns = teach.alloc_pages_bulk(8, "GFP_KERNEL")
    teach.node.pagesets.free_unref_pages(pfns, cpu=1)
    pcp = teach.node.pagesets.pcp(teach.zone("Normal"), 1)
    assert teach.node.pagesets.high(teach.zone("Normal"), 1) == 4
    assert pcp.count == 3 and set(pcp.pfns.tolist()) == set(pfns[-3:].tolist())
    assert np.all(teach.node.mm.state[pfns[:5]] == PageState.FREE)   # the oldest went back
    teach.validate()


def test_pages_on_a_per_cpu_list_do_not_stop_alloc_contig_range(teach):
    """Refcount-0 pages pass has_unmovable_pages(); the drain frees them first."""
    pfns = teach.alloc_pages_bulk(3, "GFP_KERNEL")
    assert np.all(pfns >> 3 == pfns[0] >> 3)                # one pageblock
    teach.node.pagesets.free_unref_pages(pfns, cpu=1)
    start = int(pfns[0]) & ~7
    assert np.all(teach.node.mm.flags[pfns] & PageFlag.REFCOUNT_ZERO)
    assert first_unmovable(teach.node, start, start + 8) is None
    assert teach.alloc_contig_range(start, start + 8) == 0
    assert teach.node.pagesets.nr_pages() == 0
    teach.validate()


def test_an_allocation_drains_the_lists_before_it_fails(teach):
    held = teach.alloc_pages_bulk(3, "GFP_KERNEL")
    teach.node.pagesets.free_unref_pages(held, cpu=0)
    assert teach.proc.meminfo_kb("MemFree") == (256 - 3) * 4
    rest = teach.alloc_pages_bulk(256, "GFP_KERNEL")
    assert len(rest) == 256 and set(held.tolist()) <= set(rest.tolist())
    assert teach.node.pagesets.nr_pages() == 0               # drained, then used
    teach.validate()


def test_teaching_geometry_stays_pristine():
    t = teaching()
    assert t.bootmem is None and t.layout.reserved == []
    assert t.proc.meminfo_kb("MemTotal") == t.proc.meminfo_kb("MemFree") == 1024
    assert t.node.pagesets.nr_pages() == 0
    assert np.all(t.node.mm.pb_mt[:32] == MigrateType.MOVABLE)
    assert not np.any(t.node.mm.state == PageState.ALLOCATED)


@pytest.mark.parametrize("size", ["256M", "1G", "3G", "6G"])
def test_booted_guests_validate_and_account_every_page(size, any_kernel):
    m = vm.Machine(boot_memory=size, kernel=any_kernel, seed=3)
    m.validate()
    k = m.proc.kind_totals()
    for kind in (PageKind.SLAB, PageKind.STACK, PageKind.VMALLOC, PageKind.PERCPU,
                 PageKind.SHMEM, PageKind.PAGETABLE, PageKind.ANON):
        assert k[kind] > 0, kind
    mem = m.proc.meminfo_rows()
    assert dict(mem)["MemTotal"] < vm.constants.parse_size(size) >> 10


def test_kernel_release_decides_the_text():
    """5.8 has no Zswap/SecPageTables/Unaccepted, counts kernel stacks per zone, splits no
    workingset counters, prints no boost/promo/cma, and starts anonymous pages active."""
    old, new = vm.Machine(boot_memory=GiB, kernel="5.8"), vm.Machine(boot_memory=GiB)
    old_keys = [ln.split(":")[0] for ln in old.proc.meminfo().splitlines()]
    new_keys = [ln.split(":")[0] for ln in new.proc.meminfo().splitlines()]
    assert set(new_keys) - set(old_keys) == {"Zswap", "Zswapped", "SecPageTables", "Unaccepted"}
    vmstat = dict(old.proc.vmstat_rows())
    assert "workingset_refault" in vmstat and "workingset_refault_anon" not in vmstat
    assert "nr_memmap_boot_pages" not in vmstat and old.proc.vmstat().endswith("nr_unstable 0\n")
    dma32 = old.proc.zoneinfo().split("zone    DMA32")[1]
    assert "boost" not in dma32 and "promo" not in dma32 and "        cma" not in dma32
    assert dma32.index("nr_kernel_stack") < dma32.index("numa_hit")
    assert old.proc.meminfo_kb("Active(anon)") == old.proc.meminfo_kb("AnonPages")
    assert new.proc.meminfo_kb("Active(anon)") == (new.proc.meminfo_kb("AnonPages")
                                                   + new.proc.meminfo_kb("Shmem"))


def test_direct_map_grows_with_hot_added_memory():
    m = vm.Machine(boot_memory=GiB, auto_online_blocks="online_kernel")
    assert (m.proc.meminfo_kb("DirectMap4k"), m.proc.meminfo_kb("DirectMap2M")) == \
        (24444, 1024000)
    dev = m.add_virtio_mem(region_size=2 * GiB)
    dev.requested_size = GiB
    m.settle()
    assert m.proc.meminfo_kb("DirectMap2M") == 1024000 + 1048576     # the real plug1G sample
    m.validate()


def test_boot_is_deterministic_per_seed():
    a, b, c = (vm.Machine(boot_memory=GiB, seed=s) for s in (7, 7, 8))
    for name in ("state", "kind", "owner", "pb_mt"):
        assert np.array_equal(getattr(a.node.mm, name), getattr(b.node.mm, name)), name
    assert a.proc.zoneinfo() == b.proc.zoneinfo()
    assert not np.array_equal(a.node.mm.kind, c.node.mm.kind)


def test_memory_line_lists_the_kernel_image():
    line = next(ln for ln in vm.Machine(boot_memory=GiB).dmesg().splitlines() if "Memory:" in ln)
    assert line.endswith("Memory: 914496K/1048052K available (17664K kernel code, 3328K rwdata, "
                         "10752K rodata, 3840K init, 6528K bss, 133556K reserved, "
                         "0K cma-reserved)")


def test_small_guests_boot_without_a_swiotlb_or_are_refused():
    m = vm.Machine(boot_memory=96 * MiB)           # 64 MiB of bounce buffer does not fit
    assert not reserved(m, "swiotlb bounce buffer")
    m.validate()
    with pytest.raises(ValueError, match="boot_memory=67108864 is too small .* 96 MiB"):
        vm.Machine(boot_memory=64 * MiB)
