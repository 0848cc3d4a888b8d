"""HypervisorPanel driven from Python: change a widget, check the model and the pictures.

Teaching geometry (256-page guest, 8 memory blocks of 8 subblocks in the
device region, one device block = one subblock = 32 KiB) unless a test
needs a q35 guest.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

import vmemlab as vm
from tests.conftest import teaching
from vmemlab.viz.classes import CellClass
from vmemlab.viz.panel import HypervisorPanel, qemu_size
from vmemlab.viz.render import round_span

C = CellClass
MB = 64 * 4096
AUTO = "/sys/devices/system/memory/auto_online_blocks"


def panel(**kw) -> HypervisorPanel:
    m = teaching(**kw)
    m.add_virtio_mem(region_size=8 * MB)
    return HypervisorPanel(m)


def test_requested_slider_and_qom_set_plug_and_redraw():
    p = panel()
    dev = p.dev
    assert (p.requested.min, p.requested.max, p.requested.value) == (0, 64, 0)
    heat0, sub0, chart0 = (p.heatmap_image.value, p.subblock_image.value,
                           p.series_image.value)
    p.requested.value = 19                   # 19 device blocks of 32 KiB
    assert dev.requested_size == 0           # nothing happens before qom-set
    assert "= 608 KiB" in p.requested_label.value.replace("\u00a0", " ")
    assert "white-space:nowrap" in p.requested_label.value
    p.apply()
    assert dev.requested_size == dev.size == 19 * 32 * 1024
    assert p.heatmap_image.value != heat0 and p.subblock_image.value != sub0
    assert p.series_image.value != chart0
    cells = p.subblocks.grid.cells
    assert int((cells == C.SB_KERNEL).sum()) == 19 and int((cells == C.PAGE_OFFLINE).sum()) == 5
    assert int((p.heatmap.grid.cells >= C.PB_UNMOVABLE).sum()) > 32   # new pageblocks shown
    text = p.status_text()
    assert "last action: qom-set vmem0 requested-size 608K" in text
    assert "vmem0: requested-size 608 KiB, size (plugged) 608 KiB" in text
    assert "last rc 0: done: reset the retry timer to 50 s" in text
    assert "  requested-size: 622592\n  size: 622592\n" in text
    assert "virtio_mem virtio0: requested size: 0x98000" in p.log_text()
    assert "MemTotal:" in p.log_text()
    assert p.recorder.series("vmem0").plugged.tolist()[-1] == dev.size


def test_the_qom_set_button_does_what_apply_does():
    p = panel()
    p.requested.value = 16
    p.apply_button.click()
    assert p.dev.size == 16 * 32 * 1024 and p.subblocks.grid.strip.tolist()[:3] == [
        C.SB_KERNEL, C.SB_KERNEL, C.NOT_PRESENT]


def test_auto_online_blocks_dropdown_writes_sysfs_and_changes_where_memory_goes():
    p = panel()
    p.auto_online.value = "online_movable"          # as a user picks it
    assert p.m.sysfs.read(AUTO) == "online_movable\n"
    assert p.last_action == f"echo online_movable > {AUTO} -> 0"
    p.apply(8)
    assert p.subblocks.grid.strip.tolist()[0] == C.SB_MOVABLE
    p.set_auto_online("offline")
    p.apply(16)
    assert p.subblocks.grid.strip.tolist()[:2] == [C.SB_MOVABLE, C.OFFLINE]
    assert p.auto_online.value == "offline"


def test_online_policy_is_checked_against_the_kernel():
    p = panel()
    p.set_online_policy("auto-movable")
    assert p.m.online_policy == p.online_policy.value == "auto-movable"
    with pytest.raises(ValueError, match="not one of \\['contig-zones'\\]"):
        panel(kernel="5.8").set_online_policy("auto-movable")


def test_workloads_allocate_start_stop_release():
    p = panel()
    p.apply(32)
    free0 = p.m.zones["Normal"].free
    p.allocate("slab", 1)                           # 1 MiB does not fit: a shortfall
    assert p.last_action == "allocate 1 MiB of slab"
    assert p.m.zones["Normal"].free < free0 and len(p.activities) == 1
    p.release()
    assert p.m.zones["Normal"].free == free0 and p.activities == []
    p.kind.value, p.amount.value = "page_cache", 1
    p.start_button.click()
    act = p.activities[0]
    p.run(2)
    assert act.requested == 3 * vm.MiB              # ticks at t = 0, 1 and 2 s after start
    p.stop()
    p.run(2)
    assert act.requested == 3 * vm.MiB and act.stopped


def test_run_samples_the_clock_and_the_retry_timer_fires():
    p = panel()
    p.apply(16)
    p.allocate("slab", 1)                           # kernel memory lands in the device
    p.apply(0)
    drv = p.dev.driver
    assert p.dev.size > 0 and drv.timer_due == pytest.approx(p.m.now + 50, abs=1)
    passes = drv.passes
    p.run(60)
    assert drv.passes == passes + 1 and "next wait 100 s" in p.status_text()
    s = p.recorder.series()
    assert len(s) >= 60 and (np.diff(s.time) > 0).all()
    lo, hi = p.chart.ax.get_xlim()
    assert lo == s.time[0] and s.time[-1] <= hi and hi - lo == 100.0   # a round span


def test_the_time_axis_fits_a_sub_second_unplug():
    """A 0.3 s unplug fills the chart's time axis (0-0.5 s), not a sliver of 0-60 s."""
    from vmemlab.exercises import nb00

    m, dev, _ = nb00.demo_guest(trace=False)
    p = HypervisorPanel(m)
    t0 = m.now
    p.apply(dev.block_size and (1 << 30) // dev.block_size)
    s = p.recorder.series()
    lo, hi = p.chart.ax.get_xlim()
    assert s.time[-1] - t0 < 0.5 and (lo, hi) == (t0, t0 + 0.5)
    assert round_span(0.347, 0.1) == 0.5 and round_span(61, 0.1) == 100.0
    assert round_span(0, 0.1) == 0.1


def test_reboot_unplugs_everything_and_the_guest_plugs_again():
    p = panel()
    p.apply(19)
    p.allocate("anon", 1)
    p.reboot()
    assert p.last_action == "system_reset (reboot)" and p.activities == []
    assert p.dev.size == p.dev.requested_size == 19 * 32 * 1024    # plugged again at boot
    assert p.m.boots == 2
    assert "virtio_mem virtio0: plugged size: 0x0" in p.log_text()
    assert int((p.subblocks.grid.cells == C.SB_KERNEL).sum()) == 19


def test_refused_values_are_reported_not_raised():
    p = panel()
    p.m.virtio_mem[0].requested_size = 0
    p._act("qom-set nonsense", lambda: setattr(p.dev, "requested_size", 3))
    assert "refused ('requested-size' has to be multiples of 'block-size'" in p.last_action


def test_same_seed_same_panel():
    a, b = panel(), panel()
    for p in (a, b):
        p.apply(19)
        p.allocate("anon", 1)
        p.apply(4)
    assert a.status_text() == b.status_text()
    assert a.heatmap_image.value == b.heatmap_image.value
    assert a.subblock_image.value == b.subblock_image.value
    assert a.summary() == b.summary()


def test_repr_is_short_and_settings_made_outside_show_up():
    p = panel()
    assert repr(p) == "HypervisorPanel(vmem0: requested-size 0, size 0, t=0.0 s)"
    p.m.sysfs.write(AUTO, "online_kernel")           # from a notebook cell, not the panel
    p.refresh()
    assert p.auto_online.value == "online_kernel" and p.last_action == "(none yet)"


def test_device_choice():
    m = teaching()
    m.add_virtio_mem(region_size=8 * MB)
    m.add_virtio_mem(region_size=8 * MB)
    assert HypervisorPanel(m, "vmem1").dev is m.virtio_mem[1]
    assert HypervisorPanel(m, 1).dev is m.virtio_mem[1]
    with pytest.raises(ValueError, match="not one of"):
        HypervisorPanel(m, "vmem5")
    with pytest.raises(ValueError, match="no virtio-mem device"):
        HypervisorPanel(teaching())


def test_a_q35_guest_panel():
    m = vm.Machine(boot_memory="1G", seed=0)
    m.add_virtio_mem(region_size="2G")
    p = HypervisorPanel(m)
    p.apply(512)                                     # 512 x 2 MiB
    assert p.dev.size == vm.GiB
    assert "memory blocks: UNUSED 8, KERNEL 8" in p.summary()


def test_qemu_sizes():
    assert [qemu_size(n) for n in (0, 2 * vm.GiB, 384 * vm.MiB, 32 * 1024, 5000)] == [
        "0", "2G", "384M", "32K", "5000"]
