"""The Linux virtio-mem driver against QEMU's device: orders, stories, both profiles."""

from __future__ import annotations

import vmemlab as vm
from vmemlab.constants import PageState

from .conftest import teaching

KIB32 = 32 * 1024          # a teaching-geometry subblock (one pageblock)
MB = 64 * 4096             # a teaching-geometry memory block (256 KiB)


def requests(m: vm.Machine) -> list[str]:
    return [str(e) for e in m.trace.events()
            if e.name in ("virtio_mem_plug_request", "virtio_mem_unplug_request")]


def teach_vmem(kernel: str = "6.12", **kw):
    m = teaching(kernel, trace=True, **kw)
    dev = m.add_virtio_mem(region_size=8 * MB)
    return m, dev


# -- plug and unplug order ---------------------------------------------------
def test_plug_order_new_blocks_then_partial_first():
    m, dev = teach_vmem()
    base = dev.addr
    dev.requested_size = 2 * MB + 3 * KIB32
    m.settle()
    assert requests(m) == [
        f"virtio_mem_plug_request: addr={base:#x} nb_blocks=8",
        f"virtio_mem_plug_request: addr={base + MB:#x} nb_blocks=8",
        f"virtio_mem_plug_request: addr={base + 2 * MB:#x} nb_blocks=3"]
    assert dev.driver.view().mb_states[:3] == ("KERNEL", "KERNEL", "KERNEL_PARTIAL")
    m.trace.clear()
    dev.requested_size = 2 * MB + 5 * KIB32       # fills the partial block first
    m.settle()
    assert requests(m) == [f"virtio_mem_plug_request: addr={base + 2 * MB + 3 * KIB32:#x} "
                           "nb_blocks=2"]
    m.validate()


def test_unplugged_subblocks_of_online_blocks_are_page_offline():
    m, dev = teach_vmem()
    dev.requested_size = MB + 3 * KIB32
    m.settle()
    start = (dev.addr + MB) >> 12
    state = m.node.mm.state
    assert (state[start:start + 24] == PageState.FREE).all()
    assert (state[start + 24:start + 64] == PageState.PAGE_OFFLINE).all()
    assert m.zones["Normal"].managed == 256 + 64 + 24      # MemTotal counts plugged only
    m.validate()


def test_unplug_order_partial_first_then_from_the_top():
    m, dev = teach_vmem()
    base = dev.addr
    dev.requested_size = 2 * MB + 5 * KIB32
    m.settle()
    m.trace.clear()
    dev.requested_size = 2 * MB                # 5 subblocks: the partial block, top down
    m.settle()
    assert requests(m) == [
        f"virtio_mem_unplug_request: addr={base + 2 * MB + i * KIB32:#x} nb_blocks=1"
        for i in (4, 3, 2, 1, 0)]
    assert dev.driver.view().mb_states[:3] == ("KERNEL", "KERNEL", "UNUSED")
    m.trace.clear()
    dev.requested_size = MB                    # a whole online block in one request
    m.settle()
    assert requests(m) == [f"virtio_mem_unplug_request: addr={base + MB:#x} nb_blocks=8"]
    assert len(m.memory_blocks) == 5
    m.validate()


def test_movable_blocks_go_before_kernel_blocks_in_6_12():
    m, dev = teach_vmem(auto_online_blocks="offline")
    dev.requested_size = 2 * MB
    m.settle()
    first, second = (b.id for b in m.memory_blocks[-2:])
    m.online_memory_block(first, "online_movable")
    m.online_memory_block(second, "online_kernel")
    m.trace.clear()
    dev.requested_size = MB
    m.settle()
    assert requests(m) == [f"virtio_mem_unplug_request: addr={dev.addr:#x} nb_blocks=8"]
    m.validate()


def test_5_8_uses_4mib_subblocks_and_never_unplugs_online_movable():
    m, dev = teach_vmem("5.8", auto_online_blocks="online_movable")
    assert dev.driver.mode.sbs_per_mb == 4          # 16-page subblocks (MAX_ORDER-1)
    dev.requested_size = 2 * MB
    m.settle()
    assert dev.driver.view().mb_states[:2] == ("ONLINE_MOVABLE", "ONLINE_MOVABLE")
    dev.requested_size = MB
    m.settle()
    assert dev.size == 2 * MB and dev.driver.last_rc == vm.EBUSY
    m.validate()


def test_5_8_refuses_partly_plugged_blocks_in_zone_movable():
    for kernel, rc in (("5.8", vm.EPERM), ("6.12", 0)):
        m, dev = teach_vmem(kernel, auto_online_blocks="offline")
        dev.requested_size = MB + MB // 2
        m.settle()
        bid = m.memory_blocks[-1].id
        assert m.online_memory_block(bid, "online_movable") == rc, kernel
        if rc:
            assert "memory block has holes, MOVABLE not supported" in m.dmesg()
        m.validate()


def test_onlining_a_block_the_driver_does_not_own_offline_is_denied():
    m, dev = teach_vmem(auto_online_blocks="offline")
    dev.requested_size = MB
    m.settle()
    bid = m.memory_blocks[-1].id
    dev.driver.mode.set_state(bid, "UNUSED")       # as while the driver removes it
    assert m.online_memory_block(bid) == vm.EPERM
    assert "memory block onlining denied" in m.dmesg()


# -- the failure stories (reference: virtio-mem.md §8) ------------------------
def stuck_in_zone_normal(kernel="6.12"):
    """Story 1: virtio-mem memory in ZONE_NORMAL fills with unmovable slab pages."""
    m = vm.Machine(boot_memory=2 * vm.GiB, kernel=kernel, seed=1)
    dev = m.add_virtio_mem(region_size=4 * vm.GiB, requested_size=2 * vm.GiB)
    m.settle()
    m.activity("anon", size=1 * vm.GiB)          # its page tables are unmovable too
    m.activity("files", count=200_000)           # dentries and inodes
    m.activity("slab", size=64 * vm.MiB)
    return m, dev


def test_story1_zone_normal_stops_short_and_retries_on_a_timer():
    m, dev = stuck_in_zone_normal()
    dev.requested_size = 0
    m.settle()
    assert 0 < dev.size < 2 * vm.GiB                      # unplugged some, not all
    assert dev.driver.last_rc == vm.EBUSY
    waits = []
    for _ in range(5):
        due = dev.driver.timer_due
        waits.append(round(due - m.now))
        m.run(due - m.now + 1e-6)
        m.settle()
    assert waits == [50, 100, 200, 300, 300]
    assert dev.size > 0
    m.validate()


def test_story1_the_gap_never_closes_but_a_larger_request_applies_at_once():
    m, dev = stuck_in_zone_normal()
    dev.requested_size = 0
    m.settle()
    stuck = dev.size
    dev.requested_size = stuck + 64 * vm.MiB             # config change: -EAGAIN, re-read
    m.settle()
    assert dev.size == stuck + 64 * vm.MiB and dev.driver.last_rc == 0
    m.validate()


def test_story2_zone_movable_reaches_the_request():
    m = vm.Machine(boot_memory=2 * vm.GiB, seed=1, auto_online_blocks="online_movable")
    dev = m.add_virtio_mem(region_size=4 * vm.GiB, requested_size=2 * vm.GiB)
    m.settle()
    act = m.activity("anon", size=1 * vm.GiB)
    m.activity("files", count=200_000)
    in_region = (act.pages() >= dev.addr >> 12).sum()
    assert in_region > 0                                   # movable memory went there
    dev.requested_size = 512 * vm.MiB
    m.settle()
    assert dev.size == 512 * vm.MiB and dev.driver.last_rc == 0
    assert len(act.pages()) == vm.GiB >> 12               # nothing lost, all migrated
    m.validate()


def test_story2_auto_movable_policy_also_reaches_the_request():
    m = vm.Machine(boot_memory=4 * vm.GiB, online_policy="auto-movable", seed=1)
    dev = m.add_virtio_mem(region_size=8 * vm.GiB, requested_size=4 * vm.GiB)
    m.settle()
    assert {b.valid_zones for b in m.memory_blocks if b.group == "vmem0"} == {"Movable"}
    m.activity("anon", size=2 * vm.GiB)
    m.activity("slab", size=128 * vm.MiB)
    dev.requested_size = 1 * vm.GiB
    m.settle()
    assert dev.size == 1 * vm.GiB
    m.validate()


def test_story3_long_term_pins_block_unplug_in_zone_normal():
    m = vm.Machine(boot_memory=2 * vm.GiB, seed=1)
    dev = m.add_virtio_mem(region_size=4 * vm.GiB, requested_size=1 * vm.GiB)
    m.settle()
    pin = m.activity("pin", size=512 * vm.MiB)
    assert (pin.pages() >= dev.addr >> 12).sum() > 0
    dev.requested_size = 0
    m.settle()
    assert dev.size > 0 and dev.driver.last_rc == vm.EBUSY
    m.validate()


def test_story3_pins_move_out_of_zone_movable_first():
    m = vm.Machine(boot_memory=2 * vm.GiB, seed=1, auto_online_blocks="online_movable")
    dev = m.add_virtio_mem(region_size=4 * vm.GiB, requested_size=1 * vm.GiB)
    m.settle()
    pin = m.activity("pin", size=256 * vm.MiB)
    assert (pin.pages() >= dev.addr >> 12).sum() == 0     # never pinned in ZONE_MOVABLE
    dev.requested_size = 0
    m.settle()
    assert dev.size == 0
    m.validate()


def test_story4_memory_pressure_gives_enomem_and_aborts_the_pass():
    m = vm.Machine(boot_memory=1 * vm.GiB, seed=1, auto_online_blocks="online_movable")
    dev = m.add_virtio_mem(region_size=2 * vm.GiB, requested_size=1 * vm.GiB)
    m.settle()
    m.activity("anon", size=int(1.6 * vm.GiB))            # more than fits after unplug
    dev.requested_size = 0
    m.settle()
    assert dev.driver.last_rc == vm.ENOMEM
    assert dev.size > 0 and dev.driver.timer_due is not None
    m.validate()


def test_story6_plug_stalls_when_nobody_onlines():
    m = vm.Machine(boot_memory=2 * vm.GiB, auto_online_blocks="offline")
    dev = m.add_virtio_mem(region_size=4 * vm.GiB, requested_size=2 * vm.GiB)
    m.settle()
    assert dev.size == 1 * vm.GiB                           # the 1 GiB offline threshold
    assert dev.driver.last_rc == vm.ENOSPC and dev.driver.timer_due is None
    m.run(600)
    assert dev.size == 1 * vm.GiB                           # nothing happens by itself
    for b in [b for b in m.memory_blocks if b.group == "vmem0"][:4]:
        m.online_memory_block(b.id)                         # half the threshold is free again
    m.settle()
    assert dev.size > 1 * vm.GiB
    m.validate()


def test_story6_in_5_8_the_threshold_is_ten_blocks():
    m = vm.Machine(boot_memory=2 * vm.GiB, kernel="5.8", auto_online_blocks="offline")
    dev = m.add_virtio_mem(region_size=4 * vm.GiB, requested_size=2 * vm.GiB)
    m.settle()
    assert dev.size == 10 * 128 * vm.MiB and dev.driver.last_rc == vm.ENOSPC


def test_story7_memmap_needs_kernel_memory():
    m = vm.Machine(boot_memory=512 * vm.MiB, auto_online_blocks="online_movable")
    dma32 = m.zones["DMA32"]
    m.activity("slab", size=(dma32.free - dma32.min - 2000) * 4096)
    dev = m.add_virtio_mem(region_size=16 * vm.GiB, requested_size=8 * vm.GiB)
    m.settle()
    assert dev.size < 8 * vm.GiB and dev.driver.last_rc == vm.ENOMEM
    assert "adding memory failed: -12" in m.dmesg()
    m.validate()


def test_story8_busy_device_backs_off_then_succeeds():
    m = vm.Machine(boot_memory=2 * vm.GiB)
    dev = m.add_virtio_mem(region_size=4 * vm.GiB)
    dev.migrating = True
    dev.requested_size = 1 * vm.GiB
    m.settle()
    assert dev.size == 0 and dev.driver.last_rc == vm.ETXTBSY
    dev.migrating = False
    m.run(50.001)
    m.settle()
    assert dev.size == 1 * vm.GiB and dev.driver.last_rc == 0


def test_story8_device_error_marks_the_driver_broken():
    m = vm.Machine(boot_memory=2 * vm.GiB)
    dev = m.add_virtio_mem(region_size=4 * vm.GiB, requested_size=512 * vm.MiB)
    m.settle()
    dev.requested_size = 1 * vm.GiB
    m.run(1e-4)                                # the driver is in the middle of plugging
    assert 512 * vm.MiB < dev.size < 1 * vm.GiB
    dev.usable_region_size = dev.size          # a buggy host shrinks the usable region
    m.settle()
    assert dev.driver.broken and "marking device broken: -22" in m.dmesg()
    stuck = dev.size
    dev.requested_size = 0
    m.run(1000)
    assert dev.size == stuck                   # the broken driver never touches it again


def test_story9_reboot_resets_the_layout():
    m = vm.Machine(boot_memory=2 * vm.GiB, auto_online_blocks="online_movable", seed=2)
    dev = m.add_virtio_mem(region_size=4 * vm.GiB, requested_size=2 * vm.GiB)
    m.settle()
    dev.requested_size = 1 * vm.GiB
    m.settle()
    dev.requested_size = 1536 * vm.MiB
    m.settle()
    m.reboot()
    assert dev.size == 0
    m.settle()
    assert dev.size == 1536 * vm.MiB
    blocks = [b for b in m.memory_blocks if b.group == "vmem0"]
    assert blocks[0].start_pfn == dev.addr >> 12            # plugged from the bottom again
    assert len(blocks) == 12
    m.validate()


def test_story9_busy_device_at_reset_makes_the_driver_unplug_all():
    m = vm.Machine(boot_memory=2 * vm.GiB)
    dev = m.add_virtio_mem(region_size=4 * vm.GiB, requested_size=1 * vm.GiB)
    m.settle()
    dev.migrating = True
    m.reboot()
    assert dev.size == 1 * vm.GiB and dev.driver.unplug_all_required
    dev.migrating = False
    m.settle()
    assert "unplugging all memory is required" in m.dmesg()
    assert dev.size == 1 * vm.GiB                # unplugged all, then plugged again
    m.validate()


# -- more -------------------------------------------------------------------------
def test_memtotal_drops_as_soon_as_memory_is_fake_offlined():
    m = vm.Machine(boot_memory=2 * vm.GiB, auto_online_blocks="online_movable")
    dev = m.add_virtio_mem(region_size=4 * vm.GiB, requested_size=1 * vm.GiB)
    m.settle()
    total = dict(m.proc.meminfo_rows())["MemTotal"]
    dev.requested_size = 1 * vm.GiB - 6 * vm.MiB            # three subblocks, block stays
    m.settle()
    assert total - dict(m.proc.meminfo_rows())["MemTotal"] == 6 * 1024
    assert len([b for b in m.memory_blocks if b.group == "vmem0"]) == 8


def test_big_block_mode_with_1gib_device_blocks():
    m = vm.Machine(boot_memory=4 * vm.GiB, auto_online_blocks="online_movable")
    dev = m.add_virtio_mem(region_size=4 * vm.GiB, block_size="1G", requested_size="2G")
    m.settle()
    assert dev.driver.mode.name == "BBM"
    assert dev.driver.view().mb_states == ("ADDED", "ADDED", "UNUSED", "UNUSED")
    m.activity("anon", size=1536 * vm.MiB)
    dev.requested_size = "1G"
    m.settle()
    assert dev.driver.view().mb_states == ("ADDED", "UNUSED", "UNUSED", "UNUSED")
    m.validate()


def test_5_8_rejects_device_blocks_bigger_than_a_memory_block():
    m = vm.Machine(boot_memory=4 * vm.GiB, kernel="5.8")
    dev = m.add_virtio_mem(region_size=4 * vm.GiB, block_size="1G", requested_size="1G")
    m.settle()
    assert dev.size == 0 and "The block size is not supported (too big)." in m.dmesg()


def test_two_devices_on_one_machine():
    m = vm.Machine(boot_memory=2 * vm.GiB)
    a = m.add_virtio_mem(region_size=2 * vm.GiB, requested_size=512 * vm.MiB)
    b = m.add_virtio_mem(region_size=2 * vm.GiB, requested_size=256 * vm.MiB)
    m.settle()
    assert (a.size, b.size) == (512 * vm.MiB, 256 * vm.MiB)
    assert a.addr + a.region_size <= b.addr
    assert m.info_memory_devices().count("virtio-mem") == 2
    m.validate()


def test_background_page_cache_races_an_unplug():
    m = vm.Machine(boot_memory=2 * vm.GiB, auto_online_blocks="online_movable", seed=3)
    dev = m.add_virtio_mem(region_size=4 * vm.GiB, requested_size=3 * vm.GiB)
    m.settle()
    cache = m.start_activity("page_cache", rate="256M", interval=1.0)
    m.run(8)
    dev.requested_size = 512 * vm.MiB
    m.run(20)
    assert dev.size == 512 * vm.MiB
    grown = cache.requested
    assert grown >= 28 * 256 * vm.MiB                # it kept growing during the unplug
    assert cache.resident < grown                    # reclaim pushed back
    m.validate()


def test_work_pending_while_queued_and_next_event_is_the_retry_timer():
    m = vm.Machine(boot_memory=2 * vm.GiB, seed=0, kernel_activity=False)   # no background ticks
    dev = m.add_virtio_mem(region_size=1 * vm.GiB)
    m.settle()
    dev.requested_size = 256 * vm.MiB
    assert dev.driver.work_pending
    m.settle()
    assert not dev.driver.work_pending and dev.size == 256 * vm.MiB
    m.activity("kernel", size=250 * vm.MiB)    # unmovable pages in the plugged blocks
    dev.requested_size = 0
    m.settle()
    assert dev.driver.last_rc == vm.EBUSY and not dev.driver.work_pending
    assert m.next_event == dev.driver.timer_due
