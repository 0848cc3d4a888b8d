"""Memory hotplug: blocks, online policies, memmap cost, offline and remove."""

from __future__ import annotations

import pytest

import vmemlab as vm
from vmemlab.constants import ZoneType
from vmemlab.pcp import drain_all_pages

from .conftest import teaching

MEM = "/sys/devices/system/memory"
BLOCK = 128 * vm.MiB


def kb(m: vm.Machine, field: str) -> int:
    return dict(m.proc.meminfo_rows())[field]


def test_boot_blocks_and_sysfs_files():
    m = vm.Machine(boot_memory=4 * vm.GiB)
    assert m.sysfs.read(f"{MEM}/block_size_bytes") == "8000000\n"
    assert m.sysfs.read(f"{MEM}/memory0/valid_zones") == "none\n"     # DMA and DMA32
    assert m.sysfs.read(f"{MEM}/memory1/valid_zones") == "DMA32\n"
    assert m.sysfs.read(f"{MEM}/memory32/valid_zones") == "Normal\n"
    assert m.sysfs.read(f"{MEM}/memory32/phys_index") == "00000020\n"
    assert m.sysfs.read(f"{MEM}/memory32/state") == "online\n"
    assert m.sysfs.read(f"{MEM}/memory32/removable") == "1\n"
    assert len(m.memory_blocks) == 32
    assert m.sysfs.read(f"{MEM}/auto_online_blocks") == "online\n"


def test_small_guest_gets_zone_normal_at_4gib_when_memory_is_added():
    m = vm.Machine(boot_memory=2 * vm.GiB)
    assert not m.zones["Normal"].present
    d = m.add_dimm(BLOCK)
    assert d.addr == 4 * vm.GiB and d.rc == 0
    assert m.zones["Normal"].start_pfn == 4 * vm.GiB >> 12
    assert m.zones["Normal"].present == BLOCK >> 12
    m.validate()


def test_memmap_of_added_memory_comes_from_kernel_zones():
    # a silent kernel: the new blocks' sysfs objects would take a few slab pages too
    m = vm.Machine(boot_memory=4 * vm.GiB, auto_online_blocks="offline", kernel_activity=False)
    free_before, total_before = kb(m, "MemFree"), kb(m, "MemTotal")
    normal_free = m.zones["Normal"].free
    m.add_dimm(1 * vm.GiB)
    # 64 bytes per 4 KiB page: 2 MiB of struct pages per 128 MiB block, 8 blocks
    assert free_before - kb(m, "MemFree") == 16 * 1024
    assert kb(m, "MemTotal") == total_before                 # offline memory is not counted
    assert normal_free - m.zones["Normal"].free == 16 * 1024 // 4
    assert "nr_memmap_pages 4096\n" in m.proc.vmstat()
    blk = m.memory_blocks[-1]
    assert blk.state == "offline" and blk.valid_zones == "Normal Movable"
    m.validate()


@pytest.mark.parametrize("online_type, zone", [("online_kernel", "Normal"),
                                               ("online_movable", "Movable"),
                                               ("online", "Normal")])
def test_online_types_under_contig_zones(online_type, zone):
    m = vm.Machine(boot_memory=4 * vm.GiB, auto_online_blocks="offline")
    m.add_dimm(BLOCK)
    bid = m.memory_blocks[-1].id
    assert m.online_memory_block(bid, online_type) == 0
    assert m.sysfs.read(f"{MEM}/memory{bid}/valid_zones") == f"{zone}\n"
    assert m.online_memory_block(bid, "online") == vm.EINVAL      # already online
    m.validate()


def test_auto_online_blocks_movable_and_contig_zones_inheritance():
    m = vm.Machine(boot_memory=4 * vm.GiB, auto_online_blocks="online_movable")
    m.add_dimm(2 * BLOCK)
    assert {b.valid_zones for b in m.memory_blocks[-2:]} == {"Movable"}
    m.auto_online_blocks = "online"
    m.add_dimm(BLOCK)          # contig-zones: next to Movable? No: it does not intersect
    assert m.memory_blocks[-1].valid_zones == "Normal"
    m.validate()


def test_auto_movable_dimms_from_the_cover_letter():
    # 4 GiB VM, ratio 301%: the first three 4 GiB DIMMs go Movable, later ones Normal
    m = vm.Machine(boot_memory=4 * vm.GiB, online_policy="auto-movable")
    zones = []
    for _ in range(5):
        d = m.add_dimm(4 * vm.GiB)
        zones.append({b.valid_zones for b in m.memory_blocks if b.group == d.name})
    assert zones == [{"Movable"}] * 3 + [{"Normal"}] * 2
    m.validate()


def test_auto_movable_dynamic_group_layout_from_the_cover_letter():
    # One virtio-mem device (a dynamic group in 128 MiB units): the first 12 GiB
    # go Movable, then 128 MiB Normal and 384 MiB Movable, repeating.
    m = vm.Machine(boot_memory=4 * vm.GiB, online_policy="auto-movable")
    hp = m.hotplug
    group = hp.register_group(True, BLOCK >> 12, "virtio_mem0")
    base = m.allocate_device_region(16 * vm.GiB, BLOCK, "virtio_mem0")
    zones = []
    for i in range(16 * vm.GiB // BLOCK):
        assert hp.add_memory(base + i * BLOCK, BLOCK, group) == 0
        zones.append(hp.blocks[(base >> 12) // (BLOCK >> 12) + i].zone)
    movable_first = 12 * vm.GiB // BLOCK
    assert all(z == ZoneType.MOVABLE for z in zones[:movable_first])
    tail = zones[movable_first:movable_first + 8]
    assert tail == [ZoneType.NORMAL] + [ZoneType.MOVABLE] * 3 + [ZoneType.NORMAL] + \
        [ZoneType.MOVABLE] * 3
    m.validate()


def test_kernel_allocations_never_use_zone_movable():
    m = vm.Machine(boot_memory=1 * vm.GiB, auto_online_blocks="online_movable")
    m.add_dimm(1 * vm.GiB)
    movable_free = m.zones["Movable"].free
    got = 0
    while m.alloc_pages(3, "GFP_KERNEL") is not None:
        got += 1
    assert got > 0
    assert m.zones["Movable"].free == movable_free
    # MemFree still shows a whole GiB: the zone imbalance of "too much ZONE_MOVABLE"
    assert kb(m, "MemFree") > 1000 * 1024
    m.validate()


def test_too_much_movable_makes_the_next_memmap_allocation_fail():
    m = vm.Machine(boot_memory=512 * vm.MiB, auto_online_blocks="online_movable")
    dma32 = m.zones["DMA32"]
    reserve = m.zone("DMA32").lowmem_reserve[ZoneType.NORMAL]
    m.activity("slab", size=(dma32.free - dma32.min - reserve - 1024) * 4096)
    assert m.add_dimm(8 * vm.GiB).rc == vm.ENOMEM           # needs 128 MiB of memmap
    assert "memmap allocation failed" in m.dmesg()
    assert m.add_dimm(BLOCK).rc == 0                        # 2 MiB still fit
    m.validate()


def test_offline_movable_block_full_of_movable_pages_succeeds():
    m = vm.Machine(boot_memory=2 * vm.GiB, auto_online_blocks="online_movable")
    m.add_dimm(BLOCK)
    bid = m.memory_blocks[-1].id
    act = m.activity("anon", size=BLOCK // 2)     # GFP_HIGHUSER_MOVABLE prefers Movable
    start = m.hotplug.blocks[bid].start_pfn
    assert ((act.pages() >= start) & (act.pages() < start + (BLOCK >> 12))).sum() > 0
    assert m.offline_memory_block(bid) == 0
    assert len(act.pages()) == BLOCK // 2 >> 12
    assert m.sysfs.read(f"{MEM}/memory{bid}/state") == "offline\n"
    assert not m.zones["Movable"].present
    m.validate()


def test_offline_normal_block_with_one_slab_page_fails():
    m = vm.Machine(boot_memory=2 * vm.GiB, auto_online_blocks="online_kernel")
    m.add_dimm(BLOCK)
    bid = m.memory_blocks[-1].id
    start = m.hotplug.blocks[bid].start_pfn
    slab = m.alloc_pages(0, "GFP_KERNEL")
    assert start <= slab < start + (BLOCK >> 12)          # Normal is the preferred zone
    assert m.offline_memory_block(bid) == vm.EBUSY
    assert "failed due to failure to isolate range" in m.dmesg()
    assert m.sysfs.read(f"{MEM}/memory{bid}/state") == "online\n"
    m.free_pages(slab, 0)
    assert m.offline_memory_block(bid) == 0
    m.validate()


def test_offline_retries_on_a_pinned_page_until_the_signal():
    m = vm.Machine(boot_memory=2 * vm.GiB, auto_online_blocks="online_kernel")
    m.add_dimm(BLOCK)
    bid = m.memory_blocks[-1].id
    m.activity("pin", size="64k")                 # pinned LRU pages pass isolation
    t0 = m.now
    assert m.offline_memory_block(bid, timeout=30) == vm.EINTR
    assert m.now - t0 == pytest.approx(30, abs=0.01)
    assert "signal pending" in m.dmesg() and "migrating pfn" in m.dmesg()
    assert m.sysfs.read(f"{MEM}/memory{bid}/state") == "online\n"
    m.validate()


def test_offline_and_remove_reonlines_blocks_when_a_later_one_fails():
    m = vm.Machine(boot_memory=2 * vm.GiB, auto_online_blocks="offline")
    d = m.add_dimm(2 * BLOCK)
    first, second = (b.id for b in m.memory_blocks[-2:])
    assert m.online_memory_block(first, "online_movable") == 0
    assert m.online_memory_block(second, "online_kernel") == 0
    assert m.alloc_pages(0, "GFP_KERNEL") >= m.hotplug.blocks[second].start_pfn
    assert m.hotplug.offline_and_remove_memory(d.addr, d.size) == vm.EBUSY
    assert m.memory_blocks[-2].valid_zones == "Movable"      # back online, same zone
    m.validate()


def test_add_remove_round_trip_restores_memory():
    m = vm.Machine(boot_memory=4 * vm.GiB, kernel_activity=False)   # SLUB keeps a CPU slab
    drain_all_pages(m.node)      # offlining drains the per-CPU lists (zone_pcp_disable())
    before = m.proc.buddyinfo()
    free = kb(m, "MemFree")
    d = m.add_dimm(3 * BLOCK)
    assert m.hotplug.offline_and_remove_memory(d.addr, d.size) == 0
    assert len(m.memory_blocks) == 32
    assert kb(m, "MemFree") == free
    assert m.proc.buddyinfo() == before
    m.validate()


def test_remove_of_online_memory_is_refused():
    m = vm.Machine(boot_memory=2 * vm.GiB)
    d = m.add_dimm(BLOCK)
    assert m.hotplug.remove_memory(d.addr, d.size) == vm.EBUSY
    assert m.hotplug.add_memory(d.addr, d.size) == vm.EINVAL    # overlaps
    assert m.hotplug.add_memory(d.addr + 4096, d.size) == vm.EINVAL


def test_sysfs_writes_and_errors():
    m = vm.Machine(boot_memory=2 * vm.GiB, auto_online_blocks="offline")
    m.add_dimm(BLOCK)
    bid = m.memory_blocks[-1].id
    path = f"{MEM}/memory{bid}"
    assert m.sysfs.write(f"{path}/state", "offline") == vm.EINVAL
    assert m.sysfs.write(f"{path}/state", "sideways") == vm.EINVAL
    assert m.sysfs.write(f"{path}/online", "1") == 0
    assert m.sysfs.read(f"{path}/online") == "1\n"
    assert m.sysfs.write(f"{MEM}/auto_online_blocks", "online_movable") == 0
    assert m.auto_online_blocks == "online_movable"
    with pytest.raises(ValueError, match="memory999"):
        m.sysfs.read(f"{MEM}/memory999/state")
    assert f"memory{bid}" in m.sysfs.ls()


def test_teaching_machine_hotplug():
    m = teaching()
    d = m.add_dimm(64 * 4096)
    assert d.rc == 0 and d.addr == 256 * 4096
    assert m.memory_blocks[-1].valid_zones == "Normal"
    assert m.page_map(256, 320).count("W") == 0     # memmap is one page, elsewhere
    assert m.page_map(0, 256).count("W") == 1
    m.validate()


def test_module_parameters_and_sysfs_writes_last_until_reboot():
    m = vm.Machine(boot_memory=2 * vm.GiB, auto_online_blocks="online_movable")
    params = "/sys/module/memory_hotplug/parameters"
    assert m.sysfs.ls(params) == ["auto_movable_ratio", "online_policy"]
    assert m.sysfs.read(f"{params}/online_policy") == "contig-zones\n"
    assert m.sysfs.write(f"{params}/online_policy", "auto-movable\n") == 0
    assert m.sysfs.write(f"{params}/online_policy", "movable-first") == vm.EINVAL
    assert m.sysfs.write(f"{params}/auto_movable_ratio", "150") == 0
    assert m.sysfs.write(f"{params}/auto_movable_ratio", "-1") == vm.EINVAL
    assert m.sysfs.write(f"{MEM}/auto_online_blocks", "offline") == 0
    assert (m.online_policy, m.auto_movable_ratio, m.auto_online_blocks) == \
        ("auto-movable", 150, "offline")
    m.reboot()
    assert (m.online_policy, m.auto_movable_ratio, m.auto_online_blocks) == \
        ("contig-zones", 301, "online_movable")
    old = vm.Machine(boot_memory=2 * vm.GiB, kernel="5.8")
    with pytest.raises(ValueError, match="no such sysfs"):
        old.sysfs.read(f"{params}/online_policy")            # added in 5.15
