"""virtio-mem pictures: the subblock map, device outlines, plugged vs requested over time.

Exact arrays on the teaching geometry: 4 KiB pages, 8-page pageblocks and
subblocks, 64-page memory blocks, a 256-page guest and an 8-block device
region at pfn 0x100 (so row r of the subblock map is memory block 4 + r).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.image import AxesImage

import vmemlab as vm
from tests.conftest import teaching
from vmemlab import viz
from vmemlab.viz.classes import SUBBLOCK_CLASSES, CellClass
from vmemlab.viz.figures import new_figure
from vmemlab.viz.grid import Grid, heatmap_grid, heatmap_summary, overlay_paths, range_outline
from vmemlab.viz.heatmap import draw_heatmap, update_heatmap
from vmemlab.viz.render import HeatmapRenderer, PlugSeriesRenderer
from vmemlab.viz.subblocks import CONTENT_CLASSES, draw_plug_series, draw_subblocks
from vmemlab.viz.vmemgrid import pick_view, subblock_grid, subblock_overlay, subblock_summary
from vmemlab.viz.vmemseries import PlugRecorder, plug_series, plug_summary

C = CellClass
K, M, OFF, PO, NP = C.SB_KERNEL, C.SB_MOVABLE, C.OFFLINE, C.PAGE_OFFLINE, C.NOT_PRESENT
MB = 64 * 4096            # a teaching memory block (256 KiB)
SB = 8 * 4096             # a teaching subblock (32 KiB)


def vmem(requested: int = 2 * MB + 3 * SB, kernel: str = "6.12", **kw) -> vm.Machine:
    m = teaching(kernel, **kw)
    m.add_virtio_mem(region_size=8 * MB, requested_size=requested)
    m.settle()
    return m


@pytest.fixture
def ax():
    fig, axes = new_figure("heatmap")
    yield axes
    fig.clear()


# ------------------------------------------------------------------ the grid
def test_subblock_grid_of_kernel_zone_blocks():
    sg = subblock_grid(vmem())
    assert (sg.zoom, sg.start_pfn, sg.end_pfn, sg.pages_per_cell) == ("subblock", 0x100,
                                                                     0x300, 8)
    assert sg.cells.tolist() == [[K] * 8, [K] * 8, [K] * 3 + [PO] * 5] + [[NP] * 8] * 5
    assert sg.strip.tolist() == [K, K, K] + [NP] * 5
    assert (sg.unit_name, sg.column_name, sg.units_per_row) == ("memory block", "subblock", 1)
    assert sg.rowcol(0x100 + 2 * 64 + 3 * 8) == (2, 3)


@pytest.mark.parametrize("online, cls", [("offline", OFF), ("online_movable", M),
                                         ("online_kernel", K)])
def test_plugged_subblocks_take_the_class_of_their_blocks_zone(online, cls):
    sg = subblock_grid(vmem(auto_online_blocks=online))
    assert sg.cells[:3].tolist() == [[cls] * 8, [cls] * 8, [cls] * 3 + [PO] * 5]
    assert sg.strip.tolist()[:4] == [cls, cls, cls, NP]


def test_content_shows_what_plugged_subblocks_hold_and_what_an_unplug_left():
    m = vmem(2 * MB)
    m.activity("anon", size=250 * 4096)       # fills boot memory; 10 pages spill over
    m.activity("slab", size=24 * 4096)
    sg = subblock_grid(m, content=True)
    assert sg.cells[:2].tolist() == [[C.MOVABLE] * 2 + [C.UNMOVABLE] * 2 + [C.FREE] * 4,
                                     [C.FREE] * 8]
    assert sg.units[:2].tolist() == [[K] * 8, [K] * 8]     # the state view is kept
    assert sg.strip.tolist()[:2] == [K, K]
    m.proc.meminfo()
    dev = m.virtio_mem[0]
    dev.requested_size = 0
    m.settle()
    sg = subblock_grid(m, content=True)
    # the unplug freed what it could and stopped: -ENOMEM, no memory to migrate to
    assert sg.cells[0].tolist() == [C.MOVABLE, PO, C.UNMOVABLE, C.UNMOVABLE] + [PO] * 4
    assert sg.cells[1:].tolist() == [[NP] * 8] * 7
    text = subblock_summary(sg)
    assert "requested-size 0, size (plugged) 96 KiB" in text
    assert "memory blocks: UNUSED 7, KERNEL_PARTIAL 1" in text
    assert "subblocks: plugged 3 (kernel zone 3), unplugged 61 (PageOffline 5, not added 56)" \
        in text
    assert "by what they hold: movable (user) 1, unmovable (kernel) 2" in text
    assert "partly plugged: memory4 KERNEL_PARTIAL 3/8" in text


def test_big_block_mode_rows_are_big_blocks_and_cells_memory_blocks():
    m = teaching()
    m.add_virtio_mem(region_size=8 * MB, block_size=2 * MB, requested_size=4 * MB)
    m.settle()
    sg = subblock_grid(m)
    assert sg.view.mode == "BBM"
    assert (sg.unit_name, sg.column_name, sg.pages_per_cell) == ("big block", "memory block", 64)
    assert sg.cells.tolist() == [[K, K], [K, K], [NP, NP], [NP, NP]]
    assert sg.strip.tolist() == [K, K, NP, NP]
    ov = subblock_overlay(sg)
    assert len(ov.block_paths) == 3 + 1          # between rows, and between columns
    assert subblock_summary(sg).splitlines()[0] == (
        "vmem0: Big Block Mode, 4 big blocks of 512 KiB, 2 memory blocks of 256 KiB each")


def test_linux_5_8_states_and_4_mib_style_subblocks():
    sg = subblock_grid(vmem(MB + 3 * 2 * SB, kernel="5.8"))
    assert sg.pages_per_cell == 16                 # max(pageblock, MAX_ORDER-1 block)
    assert sg.cells[:2].tolist() == [[K] * 4, [K, K, K, PO]]
    assert sg.view.mb_states[:2] == ("ONLINE", "ONLINE_PARTIAL")


def test_folding_a_long_device_keeps_the_highest_priority_class():
    sg = subblock_grid(vmem(), max_side=4)
    assert sg.units_per_row == 2 and sg.cells.shape == (4, 8) and sg.pages_per_cell == 16
    # row 1 = block 6 (3 of 8 plugged) then block 7 (unused), 2 subblocks per cell:
    # the pair (plugged, PageOffline) shows plugged, the higher priority
    assert sg.cells.tolist()[:2] == [[K] * 8, [K, K, PO, PO, NP, NP, NP, NP]]
    assert sg.strip.tolist() == [K, K, NP, NP]


def test_live_machine_snapshot_and_frame_agree():
    m = vmem(trace=True)
    m.step("plugged")
    live = subblock_grid(m)
    for src in (m.snapshot(), m.trace.frames[-1]):
        other = subblock_grid(src)
        assert np.array_equal(other.cells, live.cells) and np.array_equal(other.strip,
                                                                           live.strip)


def test_pick_view_by_index_name_and_device_and_its_errors():
    m = vmem()
    dev = m.virtio_mem[0]
    assert pick_view(m, 0).name == pick_view(m, "vmem0").name == pick_view(m, dev).name
    with pytest.raises(ValueError, match="not one of \\['vmem0'\\]"):
        pick_view(m, "vmem9")
    with pytest.raises(ValueError, match="index below 1"):
        pick_view(m, 3)
    with pytest.raises(ValueError, match="no virtio-mem device"):
        pick_view(teaching(), 0)


def test_subblock_overlay_outlines_region_and_usable_region():
    sg = subblock_grid(vmem())
    ov = subblock_overlay(sg)
    assert ov.device_path.tolist() == [[-0.5, -0.5], [7.5, -0.5], [7.5, 7.5], [-0.5, 7.5],
                                       [-0.5, -0.5]]
    # usable = requested (608 KiB) + 2 memory blocks = 1120 KiB = 35 subblocks
    assert sg.view.usable_pages == 35 * 8
    assert ov.usable_path.tolist() == [[-0.5, -0.5], [7.5, -0.5], [7.5, 3.5], [2.5, 3.5],
                                       [2.5, 4.5], [-0.5, 4.5], [-0.5, -0.5]]
    assert len(ov.block_paths) == 7
    assert subblock_overlay(subblock_grid(vmem(0))).usable_path is None


def test_subblock_summary_of_a_plug():
    assert subblock_summary(subblock_grid(vmem())) == (
        "vmem0: Sub Block Mode, 8 memory blocks of 256 KiB, 8 subblocks of 32 KiB each\n"
        "region pfn [0x100, 0x300) (2 MiB), usable 1120 KiB\n"
        "requested-size 608 KiB, size (plugged) 608 KiB\n"
        "memory blocks: UNUSED 5, KERNEL 2, KERNEL_PARTIAL 1\n"
        "subblocks: plugged 19 (kernel zone 19), unplugged 45 (PageOffline 5, not added 40)\n"
        "partly plugged: memory6 KERNEL_PARTIAL 3/8\n")


@pytest.mark.parametrize("a, b, want", [
    (0, 64, [[-0.5, -0.5], [7.5, -0.5], [7.5, 7.5], [-0.5, 7.5], [-0.5, -0.5]]),
    (9, 12, [[0.5, 0.5], [3.5, 0.5], [3.5, 1.5], [0.5, 1.5], [0.5, 0.5]]),
    (3, 37, [[2.5, -0.5], [7.5, -0.5], [7.5, 3.5], [4.5, 3.5], [4.5, 4.5], [-0.5, 4.5],
             [-0.5, 0.5], [2.5, 0.5], [2.5, -0.5]]),
    (70, 90, None)])
def test_range_outline(a, b, want):
    g = Grid("page", np.zeros((8, 8), np.uint8), None, 0, 64, 1, 12)
    out = range_outline(g, a, b)
    assert (out is None and want is None) or out.tolist() == want


# ------------------------------------------------------------------ heatmaps
def test_heatmaps_outline_the_device_region_and_name_it(ax):
    m = vmem()
    grid = heatmap_grid(m, "page")
    ov = overlay_paths(grid, m)
    assert [(d.name, d.start_pfn, d.end_pfn, d.usable_end_pfn) for d in ov.devices] == [
        ("vmem0", 0x100, 0x300, 0x100 + 35 * 8)]
    assert len(ov.device_paths) == 1
    assert "virtio-mem vmem0: pfn [0x100, 0x300) (2 MiB), usable 1120 KiB" in \
        heatmap_summary(grid, m)
    art = draw_heatmap(ax, m, zoom="page")
    assert len(art.device_lines.get_segments()) == 1
    assert [t.get_text() for t in art.zone_labels] == ["Normal", "vmem0"]
    assert "virtio-mem region" in [t.get_text() for t in art.legend.get_texts()]
    assert art.device_lines in art.artists()


def test_heatmap_outlines_follow_memory_that_is_onlined(ax):
    m = teaching(auto_online_blocks="online_movable")
    dev = m.add_virtio_mem(region_size=8 * MB)
    art = draw_heatmap(ax, m)
    assert [t.get_text() for t in art.zone_labels] == ["Normal", "vmem0"]
    assert len(art.block_lines.get_segments()) == 4    # around the 4 boot blocks
    dev.requested_size = 2 * MB
    m.settle()
    update_heatmap(art, m)
    assert [t.get_text() for t in art.zone_labels] == ["Normal", "Movable", "vmem0"]
    assert len(art.zone_lines.get_segments()) == 2     # Movable's start and end
    assert len(art.block_lines.get_segments()) == 6    # and around the 2 new ones


# ------------------------------------------------------------------ drawing
def test_draw_subblocks_returns_its_artists_and_a_legend(ax):
    art = draw_subblocks(ax, vmem())
    assert isinstance(art.image, AxesImage) and isinstance(art.strip, AxesImage)
    assert np.array_equal(art.image.get_array(), art.grid.cells)
    assert art.image.get_interpolation() == "nearest"
    labels = [t.get_text() for t in art.legend.get_texts()]
    present = set(np.unique(art.grid.cells)) | set(np.unique(art.grid.strip))
    assert labels == [str(c) for c in SUBBLOCK_CLASSES if c in present] + [
        "device region", "usable region"]
    assert "plugged, not added" not in labels            # no failed add in this picture
    assert len(art.block_lines.get_segments()) == 7
    assert len(art.device_line.get_segments()) == len(art.usable_line.get_segments()) == 1
    assert len(art.hatches) == 2                   # kernel-zone cells, and their strip rows
    assert [t.get_text() for t in ax.get_yticklabels()][:2] == ["memory4", "memory5"]
    assert [t.get_text() for t in art.address_axis.get_yticklabels()][:2] == ["1 MiB",
                                                                              "1280 KiB"]
    assert ax.get_title() == "vmem0: subblocks (SBM)"
    assert set(art.artists()) >= {art.image, art.strip, art.device_line, art.usable_line}


def test_content_legend_and_draw_heatmap_dispatch(ax):
    art = draw_heatmap(ax, vmem(), zoom="subblock", content=True, legend=False)
    assert art.grid.content and art.legend is None
    fig, ax2 = new_figure("heatmap")
    art2 = draw_subblocks(ax2, vmem(), content=True, legend="below")
    present = set(np.unique(art2.grid.cells)) | set(np.unique(art2.grid.strip))
    assert [t.get_text() for t in art2.legend.get_texts()][:-2] == [
        str(c) for c in CONTENT_CLASSES if c in present]
    with pytest.raises(TypeError, match="device"):
        draw_heatmap(ax, vmem(), zoom="page", device=0)


def test_update_subblocks_changes_the_data_of_the_same_images(ax):
    m = vmem()
    art = draw_subblocks(ax, m)
    image, strip = art.image, art.strip
    m.virtio_mem[0].requested_size = 4 * MB
    m.settle()
    grid = update_heatmap(art, m)          # update_heatmap dispatches to update_subblocks
    assert art.image is image and art.strip is strip and len(ax.images) == 2
    assert image.get_array().tolist() == grid.cells.tolist() == [[K] * 8] * 4 + [[NP] * 8] * 4
    assert art.strip.get_array().reshape(-1).tolist() == [K] * 4 + [NP] * 4
    assert art.usable_line.get_segments()[0].tolist()[2] == [7.5, 5.5]   # usable grew


def test_renderer_of_the_subblock_zoom_updates_in_place():
    m = vmem()
    r = HeatmapRenderer(m, "subblock", device="vmem0")
    png0 = r.png()
    m.virtio_mem[0].requested_size = 0
    m.settle()
    png1 = r.update(m)
    assert png1 != png0 and r.grid.cells.tolist() == [[NP] * 8] * 8


# ------------------------------------------------------------------ series
def recorded() -> vm.Machine:
    m = vmem(0, trace=True)
    m.step("boot")
    dev = m.virtio_mem[0]
    for label, size in (("plug 2 blocks", 2 * MB), ("plug 4", 4 * MB), ("unplug to 1", MB)):
        dev.requested_size = size
        m.settle()
        m.run(10)
        m.step(label)
    return m


def test_plug_series_from_frames():
    s = plug_series(recorded().trace.frames)
    assert s.device == "vmem0" and s.region_size == 8 * MB
    assert s.time.tolist() == pytest.approx([0.0, 10.0, 20.0, 30.0], abs=0.01)
    assert s.requested.tolist() == [0, 2 * MB, 4 * MB, MB]
    assert s.plugged.tolist() == [0, 2 * MB, 4 * MB, MB]
    assert s.usable.tolist() == [0, 4 * MB, 6 * MB, 6 * MB]    # only UNPLUG_ALL shrinks it
    assert s.gap().tolist() == [0, 0, 0, 0]
    lines = plug_summary(s).splitlines()
    assert lines[:2] == ["vmem0: 4 samples",
                         "  time (s) requested (MiB)      size (MiB)    usable (MiB)"]
    assert [ln.split()[1:] for ln in lines[2:]] == [["0", "0", "0"], ["0.500", "0.500", "1"],
                                                    ["1", "1", "1.500"],
                                                    ["0.250", "0.250", "1.500"]]


def test_recorder_replaces_a_sample_at_the_same_time_and_refuses_going_back():
    m = vmem(0)
    rec = PlugRecorder()
    rec.record(m)
    m.virtio_mem[0].requested_size = MB
    rec.record(m)                          # same simulated time: replaces
    assert len(rec) == 1 and rec.series("vmem0").requested.tolist() == [MB]
    m.settle()
    rec.record(m)
    assert len(rec) == 2 and rec.devices == ["vmem0"]
    with pytest.raises(ValueError, match="time went back"):
        rec.record(m, time=0.0)
    with pytest.raises(ValueError, match="not one of"):
        rec.series("vmem7")


def test_plug_summary_elides_long_runs():
    rec = PlugRecorder()
    m = vmem(0)
    for i in range(50):
        rec.record(m, time=float(i))
    text = plug_summary(rec.series(), max_rows=10)
    lines = text.splitlines()
    assert lines[0] == "vmem0: 50 samples" and "..." in lines[7] and len(lines) == 13


def test_draw_plug_series_and_its_renderer(ax):
    s = plug_series(recorded().trace.frames)
    chart = draw_plug_series(ax, s)
    assert [ln.get_label() for ln in chart.artists] == ["requested-size", "size (plugged)",
                                                        "usable region"]
    assert [t.get_text() for t in chart.legend.get_texts()] == ["requested-size",
                                                               "size (plugged)",
                                                               "usable region"]
    assert ax.get_ylabel() == "MiB" and chart.artists[0].get_drawstyle() == "steps-post"
    r = PlugSeriesRenderer(s)
    lo, hi = r.ax.get_xlim()
    assert lo == s.time[0] and s.time[-1] <= hi <= s.time[0] + 2.5 * max(s.time[-1] - s.time[0],
                                                                          0.1)
    longer = plug_series(recorded().trace.frames[:2])
    png = r.update(longer)
    assert png and list(r.lines[0].get_xdata()) == list(longer.time)


def test_every_new_name_is_exported():
    for name in ("subblock_grid", "subblock_summary", "draw_subblocks", "PlugRecorder",
                 "plug_series", "plug_summary", "draw_plug_series", "HypervisorPanel",
                 "vmem_views", "range_outline"):
        assert getattr(viz, name) is not None


@pytest.mark.parametrize("zoom, kw", [("pageblock", {}), ("page", {}),
                                      ("subblock", {"device": "vmem0"})])
def test_renderer_pixels_match_a_full_matplotlib_draw(zoom, kw):
    """The numpy compositor paints what matplotlib would (the axes' 1-pixel rim aside)."""
    m = vmem()
    m.activity("slab", size=260 * 4096)       # fills boot memory and spills into the device
    r = HeatmapRenderer(m, zoom, figsize=(6.0, 4.5), legend="below", **kw)
    m.virtio_mem[0].requested_size = 4 * MB
    m.settle()
    r.update(m)
    mine = r.pixels().astype(int)
    for a in [*r.artists.artists(), *r.ax.spines.values()]:
        a.set_animated(False)
    r.canvas.draw()
    ref = np.asarray(r.canvas.buffer_rgba())[..., :3].astype(int)
    box = r.ax.bbox
    x0, x1 = int(np.ceil(box.x0)) + 1, int(np.floor(box.x1)) - 1
    y0, y1 = ref.shape[0] - int(np.floor(box.y1)) + 1, ref.shape[0] - int(np.ceil(box.y0)) - 1
    differ = np.abs(mine - ref).sum(axis=2) > 30
    inside = differ[y0:y1, x0:x1]
    assert inside.mean() < 0.002, f"{int(inside.sum())} pixels differ inside the axes"
    outside = differ.copy()
    outside[y0 - 3:y1 + 3, x0 - 3:x1 + 3] = False   # where leaders meet the axes edge
    assert not outside.any()                  # ticks, labels, legend: identical
