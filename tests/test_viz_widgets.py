"""vmemlab.viz widgets, driven from Python: change a value, check the picture changed."""

from __future__ import annotations

import re

import ipywidgets as widgets
import numpy as np
import pytest

import vmemlab as vm
from tests.conftest import teaching
from vmemlab.viz.classes import CellClass
from vmemlab.viz.widgets import TraceComparison, TraceViewer


def text_of(widget) -> str:
    """An HTML widget's text as a reader sees it (tags dropped, no-break spaces as spaces)."""
    return re.sub(r"<[^>]+>", "", widget.value).replace("\u00a0", " ")


def recorded(record_every: int = 1) -> vm.Machine:
    """A teaching machine with four frames: boot, kernel pages, anon memory, a free."""
    m = teaching(trace=vm.Trace(record_every=record_every))
    m.step("boot")
    kernel = m.alloc_pages(3, "GFP_KERNEL")
    m.step("8 kernel pages")
    m.activity("anon", size="64k")
    m.run(2.0)
    m.step("16 anon pages")
    m.free_pages(kernel, 3)
    m.step("free the kernel pages")
    return m


def test_moving_the_slider_changes_the_image_and_the_texts():
    m = recorded()
    v = TraceViewer(m.trace, zoom="page")
    png0, cells0 = v.image.value, v.renderer.grid.cells.copy()
    assert v.index == 0 and v.events_text(0) == "(no events)"
    v.slider.value = 1
    assert v.image.value != png0
    cells1 = v.renderer.grid.cells
    assert not np.array_equal(cells0, cells1)
    assert int((cells1 == CellClass.UNMOVABLE).sum()) == 8
    assert "mm_page_alloc: pfn=0x0 order=3" in v.events.value
    assert text_of(v.caption).startswith("step 1/3: 8 kernel pages")
    v.slider.value = 2
    assert int((v.renderer.grid.cells == CellClass.MOVABLE).sum()) == 16
    assert "t = 2.000 s" in text_of(v.caption)


def test_the_image_artist_is_updated_in_place():
    v = TraceViewer(recorded(), zoom="page")
    image = v.renderer.artists.image
    before = image.get_array().copy()
    v.step(+1)
    assert v.renderer.artists.image is image
    assert len(v.renderer.ax.images) == 1
    assert not np.array_equal(before, image.get_array())


def test_buttons_step_and_clamp():
    v = TraceViewer(recorded())
    v.back.click()
    assert v.index == 0
    v.forward.click()
    v.forward.click()
    assert v.index == 2
    v.step(+10)
    assert v.index == 3
    v.step(-1)
    assert v.index == 2


def test_play_is_linked_to_the_slider_in_the_browser():
    v = TraceViewer(recorded())
    assert (v.play.min, v.play.max) == (v.slider.min, v.slider.max) == (0, 3)
    assert isinstance(v.link, widgets.widget_link.Link)
    assert (v.link.source, v.link.target) == ((v.play, "value"), (v.slider, "value"))
    assert v.play in v.children[0].children and v.slider in v.children[0].children


def test_proc_text_follows_the_step_and_the_choice():
    m = recorded()
    v = TraceViewer(m.trace)
    assert "Node 0, zone   Normal" in v.proc.value
    v.proc_choice.value = "meminfo"
    assert "MemTotal:" in v.proc.value
    free0 = v.proc_text(0)
    v.slider.value = 2
    assert v.proc_text(2) != free0 and "MemFree:" in v.proc.value
    with pytest.raises(ValueError, match="proc='zoneinfo'"):
        TraceViewer(m.trace, proc="zoneinfo")


def test_frames_without_state_show_the_last_recorded_state():
    v = TraceViewer(recorded(record_every=2), zoom="page")
    v.slider.value = 1
    assert "memory as recorded at step 0" in text_of(v.caption)
    assert set(v.renderer.grid.cells.reshape(-1).tolist()) == {CellClass.FREE}
    v.slider.value = 2
    assert int((v.renderer.grid.cells == CellClass.MOVABLE).sum()) == 16


def test_summary_and_repr_are_text():
    v = TraceViewer(recorded())
    v.slider.value = 3
    assert repr(v) == "TraceViewer(4 frames, step 3)"
    assert v.summary().startswith("step 3/3: free the kernel pages")
    assert "pageblock map of pfn [0x0, 0x100)" in v.summary()


def test_empty_traces_are_refused():
    with pytest.raises(ValueError, match="no frames"):
        TraceViewer(vm.Trace())
    with pytest.raises(ValueError, match="kept a state"):
        TraceViewer([_Stateless()])


class _Stateless:
    state = None
    events = ()
    label = "x"
    time = 0.0


# -- the subblock zoom -------------------------------------------------------------
def vmem_recorded() -> vm.Machine:
    """A teaching machine with a virtio-mem device plugged, grown, then shrunk."""
    m = teaching(trace=True)
    dev = m.add_virtio_mem(region_size=8 * 64 * 4096)
    m.step("probe")
    for label, size in (("plug 2 blocks", "512k"), ("grow to 4", "1M"), ("shrink to 1", "256k")):
        dev.requested_size = size
        m.settle()
        m.step(label)
    return m


def test_trace_viewer_replays_the_subblock_zoom():
    v = TraceViewer(vmem_recorded().trace, zoom="subblock", device="vmem0")
    assert v.renderer.grid.zoom == "subblock"
    assert int((v.renderer.grid.cells == CellClass.SB_KERNEL).sum()) == 0
    png0 = v.image.value
    v.slider.value = 2
    assert v.image.value != png0
    assert int((v.renderer.grid.cells == CellClass.SB_KERNEL).sum()) == 32
    assert "memory blocks: UNUSED 4, KERNEL 4" in v.summary()
    v.step(+1)
    assert int((v.renderer.grid.cells == CellClass.SB_KERNEL).sum()) == 8
    assert v.summary().startswith("step 3/3: shrink to 1")


def test_subblock_zoom_needs_frames_with_the_device():
    m = teaching(trace=True)
    m.step("before the device")
    m.add_virtio_mem(region_size="2M")
    m.step("probe")
    with pytest.raises(ValueError, match="frame 0 \\(before the device\\) has no virtio-mem"):
        TraceViewer(m.trace, zoom="subblock")
    assert TraceViewer(m.trace.frames[1:], zoom="subblock").index == 0


# -- what-if runs side by side ----------------------------------------------------------
def policy_run(online: str) -> vm.Machine:
    """The same seed and steps; only auto_online_blocks differs."""
    m = teaching(trace=True, auto_online_blocks=online)
    dev = m.add_virtio_mem(region_size=8 * 64 * 4096, requested_size=4 * 64 * 4096)
    m.settle()
    m.step("plugged 1 MiB")
    m.activity("slab", size=300 * 4096)
    m.step("kmalloc 1200 KiB")
    dev.requested_size = 0
    m.settle()
    m.step("qom-set 0")
    return m


def test_trace_comparison_steps_every_trace_together():
    cmp = TraceComparison({"ZONE_NORMAL": policy_run("online"),
                           "ZONE_MOVABLE": policy_run("online_movable")}, zoom="subblock",
                          content=True)
    assert cmp.steps == 3
    assert repr(cmp) == "TraceComparison(ZONE_NORMAL, ZONE_MOVABLE: 3 steps, step 0)"
    png = {n: cmp.images[n].value for n in cmp.names}
    cmp.slider.value = 2
    assert all(cmp.images[n].value != png[n] for n in cmp.names)
    normal = cmp.renderers["ZONE_NORMAL"].grid
    movable = cmp.renderers["ZONE_MOVABLE"].grid
    assert int((normal.cells == CellClass.UNMOVABLE).sum()) > 0     # kmalloc stuck it
    assert int((movable.cells != CellClass.NOT_PRESENT).sum()) == 0  # all unplugged
    text = cmp.summary()
    assert "ZONE_NORMAL, step 2/2: qom-set 0" in text
    assert "vmem0 size 0 of requested 0" in text
    assert text_of(cmp.captions["ZONE_MOVABLE"]).startswith("ZONE_MOVABLE, step 2/2")
    with pytest.raises(ValueError, match="at least two"):
        TraceComparison({"one": policy_run("online")})
