"""vmemlab.kernel_activity: hotplug metadata and the kernel's steady slab churn."""

from __future__ import annotations

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
    assert m.kernel_activity.ticks == 600
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
    assert ka.ticks == 10 and old.ticks == 50                   # the old boot's timer is gone
    m.validate()


def test_the_kernels_slab_shows_in_meminfo():
    m = vm.Machine(boot_memory=GiB, seed=0)
    slab_kb = m.proc.meminfo_kb("SUnreclaim")
    assert slab_kb == len(m.kernel_activity.pages()) * 4 > 0
    assert "kernel_activity" not in repr(m) and "of slab" in repr(m.kernel_activity)


def test_a_clock_jump_leaves_only_the_objects_still_alive():
    m = vm.Machine(boot_memory=GiB, seed=5)
    ka = m.kernel_activity
    m.run(10)
    m.advance(600)                          # ten minutes of synchronous kernel work
    m.run(0)                                # the overdue tick fires once
    assert ka.ticks == 11
    bg = ka.background
    short = np.isfinite(bg.dies)            # born in the gap, still alive: a steady state
    expected = sum(s.per_second * s.lifetime for s in BACKGROUND)
    assert abs(int(short.sum()) - expected) < 4 * np.sqrt(expected)
    kept = int((~short).sum())
    rate = sum(s.per_second * s.kept for s in BACKGROUND)
    assert abs(kept - rate * 610) < 4 * np.sqrt(rate * 610)
