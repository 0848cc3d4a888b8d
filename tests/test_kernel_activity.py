"""vmemlab.kernel_activity: hotplug metadata and the kernel's steady slab churn."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest

import vmemlab as vm
from tests.conftest import teaching
from vmemlab.constants import PageKind, ZoneType
from vmemlab.kernel_activity import BACKGROUND, KernelActivity
from vmemlab.slab import SlabCache

MiB, GiB = vm.MiB, vm.GiB
PER_BLOCK = {"kmalloc-64": 1, "kmalloc-1k": 1, "kmalloc-256": 1, "kmalloc-16": 4,
             "kmalloc-8": 1, "kernfs_node_cache": 17}     # + 1 kmalloc-64 per add_memory() call


def per_block(ka: KernelActivity, block_id: int) -> Counter:
    out: Counter = Counter()
    for cache, slabs in ka.blocks[block_id]:
        out[cache.spec.name] += int((slabs >= 0).sum())
    return out


def test_on_by_default_on_q35_off_on_the_teaching_geometry():
    assert isinstance(vm.Machine(boot_memory=GiB).kernel_activity, KernelActivity)
    assert vm.Machine(boot_memory=GiB, kernel_activity=False).kernel_activity is None
    assert teaching().kernel_activity is None
    assert "Slab:                  0 kB" in teaching().proc.meminfo()
    assert isinstance(teaching(kernel_activity=True).kernel_activity, KernelActivity)
    with pytest.raises(ValueError, match="kernel_activity='yes' must be True, False or None"):
        vm.Machine(boot_memory=GiB, kernel_activity="yes")


def test_every_memory_block_gets_its_sysfs_objects_and_loses_them_on_removal():
    m = vm.Machine(boot_memory=GiB, seed=0)
    ka = m.kernel_activity
    assert sorted(ka.blocks) == list(range(8))                  # the boot blocks, 128 MiB each
    assert per_block(ka, 0) == Counter(PER_BLOCK)               # boot RAM has no resource each
    before = ka.objects()
    dimm = m.add_dimm(256 * MiB)
    first, second = dimm.addr >> 27, (dimm.addr >> 27) + 1
    assert dimm.rc == 0 and per_block(ka, second) == Counter(PER_BLOCK)
    assert per_block(ka, first) == Counter(PER_BLOCK) + Counter({"kmalloc-64": 1})  # resource
    assert ka.objects()["kernfs_node_cache"] == before["kernfs_node_cache"] + 34
    assert m.hotplug.offline_and_remove_memory(dimm.addr, dimm.size) == 0
    assert first not in ka.blocks and second not in ka.blocks
    assert ka.objects()["kernfs_node_cache"] == before["kernfs_node_cache"]
    m.validate()


def test_a_failed_metadata_allocation_undoes_the_add(monkeypatch):
    m = vm.Machine(boot_memory=GiB, seed=0)
    objects = m.kernel_activity.objects()
    real_alloc = SlabCache.alloc

    def alloc(self, n):
        out = real_alloc(self, n)
        if self.spec.name == "kernfs_node_cache":
            self.free(out)
            out[:] = -1
        return out

    monkeypatch.setattr(SlabCache, "alloc", alloc)
    dimm = m.add_dimm(128 * MiB)
    assert dimm.rc == vm.ENOMEM and (dimm.addr >> 27) not in m.hotplug.blocks
    assert m.node.log[-1][1] == f"add_memory: memory block allocation failed for " \
                                f"memory{dimm.addr >> 27}"
    assert m.kernel_activity.objects() == objects               # every object freed again
    assert not (m.node.mm.kind == PageKind.MEMMAP).any()        # and the memmap
    m.validate()


@pytest.mark.parametrize("online,zone", [("online_kernel", ZoneType.NORMAL),
                                         ("online_movable", ZoneType.DMA32)])
def test_new_slab_pages_come_from_the_zone_gfp_kernel_prefers_then(online, zone):
    m = vm.Machine(boot_memory=GiB, auto_online_blocks=online, seed=0)
    dev = m.add_virtio_mem(region_size=2 * GiB, block_size=2 * MiB)
    m.run(5)
    kernfs = m.slab_caches["kernfs_node_cache"]
    old = set(kernfs.slab_pfn.tolist())
    dev.requested_size = GiB
    m.settle()
    new = [p for p in kernfs.slab_pfn.tolist() if p not in old and p >= 0]
    assert len(new) >= 3                                        # 17 nodes a block, 32 a page
    zones = {int(m.node.mm.zone_of(p)) for p in new}
    assert zones <= {ZoneType.DMA32, zone} and zone in zones    # the first block: DMA32
    movable = m.zone(ZoneType.MOVABLE)
    if movable.present_pages:
        kinds = m.node.mm.kind[movable.zone_start_pfn:movable.zone_end_pfn]
        assert not (kinds == PageKind.SLAB).any()


def test_the_background_churns_and_keeps_a_little():
    m = vm.Machine(boot_memory=GiB, seed=4)
    bg = m.kernel_activity.background
    steady = len(bg.slab)
    expected = sum(s.per_second * s.lifetime for s in BACKGROUND)
    assert abs(steady - expected) < 4 * np.sqrt(expected)       # warmed to its steady state
    m.run(600)
    kept = int(np.isinf(bg.dies).sum())
    rate = sum(s.per_second * s.kept for s in BACKGROUND)       # 0.15 objects a second
    assert abs(kept - rate * 600) < 4 * np.sqrt(rate * 600)
    assert m.kernel_activity.last_tick == 600
    m.run(3000)
    assert len(m.kernel_activity.pages()) << 12 < 2 * MiB     # a modest churn
    m.validate()


def test_the_background_draws_from_its_own_generator():
    draws = []
    for on in (True, False):
        m = vm.Machine(boot_memory=GiB, seed=3, kernel_activity=on)
        m.run(100)
        draws.append(m.rng.random(4).tolist())
    assert draws[0] == draws[1]


def test_a_reboot_starts_the_kernel_again():
    m = vm.Machine(boot_memory=GiB, seed=0)
    old = m.kernel_activity
    m.run(50)
    m.reboot()
    ka = m.kernel_activity
    assert ka is not old and sorted(ka.blocks) == list(range(8)) and ka.ticks == 0
    m.run(10)
    assert ka.last_tick == 60 and old.last_tick == 50           # the old boot's timer is gone
    m.validate()


def test_the_kernels_slab_shows_in_meminfo_and_is_counted_once():
    """The reference guest's boot slab (7508 kB unreclaimable) already holds the memory
    blocks' sysfs objects and the background's live objects: with the kernel's
    activity on, those are allocated object by object and the rest of the boot's
    slab is that much smaller, so SUnreclaim is the measured 7508 kB either way."""
    on, off = (vm.Machine(boot_memory=GiB, seed=0, kernel_activity=ka) for ka in (True, False))
    ka_pages = len(on.kernel_activity.pages())
    boot_pages = len(on.bootmem.pages("slab", on.node))
    assert ka_pages > 8                                          # 8 blocks' objects, background
    assert on.proc.meminfo_kb("SUnreclaim") == (boot_pages + ka_pages) * 4 == 7508
    assert off.proc.meminfo_kb("SUnreclaim") == len(off.bootmem.pages("slab", off.node)) * 4
    assert on.proc.meminfo_kb("SUnreclaim") == off.proc.meminfo_kb("SUnreclaim")
    assert on.proc.meminfo_kb("SReclaimable") == off.proc.meminfo_kb("SReclaimable") == 680
    assert "kernel_activity" not in repr(m := on) and "of slab" in repr(m.kernel_activity)


def test_removing_a_boot_block_frees_its_sysfs_objects():
    m = vm.Machine(boot_memory=GiB, seed=0)
    ka = m.kernel_activity
    objects = ka.objects()
    block = m.hotplug.blocks[6]                                  # boot memory, all movable
    assert m.hotplug.offline_and_remove_memory(block.start_pfn << 12, block.nr_pages << 12) == 0
    assert block.id not in ka.blocks
    gone = Counter(objects) - Counter(ka.objects())
    assert gone == Counter(PER_BLOCK)                            # what remove_memory() frees
    m.validate()


def test_a_clock_jump_leaves_only_the_objects_still_alive():
    m = vm.Machine(boot_memory=GiB, seed=5)
    ka = m.kernel_activity
    m.run(10)
    ticks = ka.ticks
    m.advance(600)                          # ten minutes of synchronous kernel work
    m.run(0)                                # the overdue tick fires once
    assert ka.ticks == ticks + 1 and ka.last_tick == 610
    bg = ka.background
    short = np.isfinite(bg.dies)            # born in the gap, still alive: a steady state
    expected = sum(s.per_second * s.lifetime for s in BACKGROUND)
    assert abs(int(short.sum()) - expected) < 4 * np.sqrt(expected)
    kept = int((~short).sum())
    rate = sum(s.per_second * s.kept for s in BACKGROUND)
    assert abs(kept - rate * 610) < 4 * np.sqrt(rate * 610)


def test_an_idle_hour_is_one_step_and_a_day_stays_interactive():
    m = vm.Machine(boot_memory=GiB, seed=6)
    m.add_virtio_mem(region_size=2 * GiB, block_size=2 * MiB, requested_size=GiB)
    m.settle()
    ka = m.kernel_activity
    ticks, start = ka.ticks, time.perf_counter()
    m.run(3600)
    assert ka.ticks == ticks + 2 and m.now - 1 < ka.last_tick <= m.now   # 1 s after boot, the end
    assert time.perf_counter() - start < 0.35
    start = time.perf_counter()
    m.run(86400)
    assert time.perf_counter() - start < 2.0
    m.validate()


def _every_second(m: vm.Machine) -> None:
    """Something else due every second (a timer that re-arms itself)."""
    m.call_later(1.0, lambda: _every_second(m))


def test_skipping_an_idle_span_keeps_the_distribution():
    """One tick over an idle hour and 3600 ticks (another timer due every second)
    leave the same numbers of live and kept objects, in distribution."""
    expected = sum(s.per_second * s.lifetime for s in BACKGROUND)
    rate = sum(s.per_second * s.kept for s in BACKGROUND) * 3600
    for busy in (False, True):
        m = vm.Machine(boot_memory=GiB, seed=7)
        if busy:
            _every_second(m)
        m.run(3600)
        ka = m.kernel_activity
        assert ka.ticks == (3600 if busy else 2)
        kept = np.isinf(ka.background.dies)
        assert abs(int(kept.sum()) - rate) < 4 * np.sqrt(rate)
        assert abs(int((~kept).sum()) - expected) < 4 * np.sqrt(expected)
        m.validate()
