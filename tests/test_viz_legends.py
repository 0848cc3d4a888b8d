"""Figure craft: legends list only what the picture shows, classes of their own, readable text.

Every legend a drawing function makes is checked against the cells its
images really show (read back from the image artists, not from what the
drawing recorded), so a legend that lists an absent state fails here.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.image import AxesImage
from matplotlib.text import Text

import vmemlab as vm
from tests.conftest import teaching
from vmemlab.constants import PageFlag
from vmemlab.realmem.kpageflags import KPF, free_gap, free_gap_text, page_flag_bits
from vmemlab.viz import palette
from vmemlab.viz.classes import CellClass
from vmemlab.viz.figures import MIN_TEXT_PT, min_text_px, new_figure
from vmemlab.viz.grid import page_classes, pageblock_classes
from vmemlab.viz.heatmap import dodge, draw_heatmap, outline_range, update_heatmap
from vmemlab.viz.migration import draw_migration
from vmemlab.viz.render import HeatmapRenderer
from vmemlab.viz.subblocks import CONTENT_CLASSES, draw_subblocks

C = CellClass
MB = 64 * 4096


def shown_in_images(fig) -> set[CellClass]:
    """Every class code some class-coloured image of ``fig`` holds."""
    cmap, _ = palette.class_cmap()
    codes: set[int] = set()
    for ax in fig.axes:
        for im in ax.get_images():
            if isinstance(im, AxesImage) and im.get_cmap().name == cmap.name:
                codes.update(np.unique(np.asarray(im.get_array())).tolist())
    return {C(c) for c in codes}


def absent_in_legends(fig) -> list[str]:
    """Labels of classes that some legend of ``fig`` lists but no image of it shows."""
    shown = shown_in_images(fig)
    legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
    return [str(c) for leg in legends if leg is not None
            for c in palette.legend_classes(leg) if c not in shown]


def vmem_machine() -> vm.Machine:
    m = teaching()
    m.add_virtio_mem(region_size=8 * MB, requested_size=2 * MB + 3 * 8 * 4096)
    m.settle()
    m.activity("slab", size=40 * 4096)
    return m


def drawings():
    """(name, function drawing on a fresh figure) for every kind of picture."""
    def heat(zoom, src_fn, **kw):
        def draw():
            fig, ax = new_figure("heatmap")
            draw_heatmap(ax, src_fn(), zoom, **kw)
            return fig
        return draw

    def subblocks(content, legend=True):
        def draw():
            fig, ax = new_figure("heatmap")
            draw_subblocks(ax, vmem_machine(), content=content, legend=legend)
            return fig
        return draw

    def migration():
        m = teaching(trace=True)
        m.activity("anon", size=64 * 4096)
        m.step("filled")
        rc = m.alloc_contig_range(0, 16)
        m.step(f"alloc_contig_range -> {rc}")
        fig, ax = new_figure("migration")
        draw_migration(ax, m.trace.frames[-1], m.trace.frames[-1])
        return fig

    def side_by_side():
        fig, axes = new_figure("heatmap", ncols=2)
        for ax, content in zip(axes, (False, True), strict=True):
            draw_subblocks(ax, vmem_machine(), content=content, legend=False, compact=True)
        palette.add_legend(axes[0], CONTENT_CLASSES, "subblock", where="below", ncols=4)
        return fig

    return {"page": heat("page", teaching), "pageblock": heat("pageblock", teaching),
            "page-vmem": heat("page", vmem_machine, legend="below"),
            "pageblock-vmem": heat("pageblock", vmem_machine),
            "subblocks": subblocks(False), "content": subblocks(True, "below"),
            "migration": migration, "side-by-side": side_by_side}


@pytest.mark.parametrize("draw", drawings().values(), ids=drawings().keys())
def test_legends_list_only_classes_the_picture_shows(draw):
    fig = draw()
    FigureCanvasAgg(fig).draw()
    legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
    assert any(leg is not None for leg in legends)
    assert absent_in_legends(fig) == []


def test_the_legend_check_catches_a_legend_listing_an_absent_state():
    fig, ax = new_figure("heatmap")
    draw_heatmap(ax, teaching(), "page", legend=False)
    ax.legend(handles=palette.legend_handles([C.FREE, C.PINNED]))
    assert absent_in_legends(fig) == ["pinned"]


def test_add_legend_keeps_only_noted_classes_and_order():
    fig, ax = new_figure("heatmap")
    palette.note_classes(ax, np.array([C.FREE, C.MOVABLE, C.FREE]))
    leg = palette.add_legend(ax, [C.UNMOVABLE, C.MOVABLE, C.FREE])
    assert palette.legend_classes(leg) == [C.MOVABLE, C.FREE]
    assert palette.present_classes(fig) == {C.FREE, C.MOVABLE}
    fig2, ax2 = new_figure("heatmap")
    assert palette.present_classes(ax2) is None        # nothing drawn: no filtering
    assert palette.legend_classes(palette.add_legend(ax2, [C.PINNED])) == [C.PINNED]


def test_a_renderer_redraws_its_legend_when_a_class_appears():
    m = teaching()
    r = HeatmapRenderer(m, "page")
    assert palette.legend_classes(r.artists.legend) == [C.FREE]
    m.alloc_pages(2, "GFP_KERNEL")
    r.update(m)
    assert palette.legend_classes(r.artists.legend) == [C.FREE, C.UNMOVABLE]
    assert absent_in_legends(r.figure) == []
    assert r.min_text_px >= MIN_TEXT_PT * 100 / 72 - 0.01


# ------------------------------------------------------------------ classes of their own
def test_pages_taken_by_alloc_contig_range_have_their_own_class():
    m = teaching()
    pfn = m.alloc_pages(0, "GFP_KERNEL")              # a kernel page: unmovable
    assert m.alloc_contig_range(16, 32) == 0
    codes = page_classes(m)
    assert codes[pfn] == C.UNMOVABLE
    assert set(codes[16:32].tolist()) == {C.CONTIG}
    assert m.node.contig_runs().tolist() == [[16, 32]]
    snap = m.snapshot()
    assert snap.extra["contig"].tolist() == [[16, 32]]
    assert set(page_classes(snap)[16:32].tolist()) == {C.CONTIG}
    m.free_contig_range(16, 16)
    assert set(page_classes(m)[16:32].tolist()) == {C.FREE}
    assert m.node.contig_runs().shape == (0, 2)


def test_the_drivers_pageoffline_pages_keep_their_own_class():
    m = vmem_machine()
    codes = page_classes(m)
    assert C.PAGE_OFFLINE in set(codes.tolist()) and C.CONTIG not in set(codes.tolist())


def test_balloon_pages_are_balloon_not_pageoffline():
    m = teaching()
    b = m.add_virtio_balloon()
    b.set_memory(m.proc.meminfo_kb("MemTotal") * 1024 - 32 * 4096)
    m.settle()
    codes = page_classes(m)
    ballooned = int(np.count_nonzero(codes == C.BALLOON))
    assert ballooned == b.actual > 0
    assert C.PAGE_OFFLINE not in set(codes.tolist())
    pb, _ = pageblock_classes(m)
    full = [i for i in range(len(pb)) if set(codes[i * 8:i * 8 + 8].tolist()) == {C.BALLOON}]
    assert full and all(pb[i] == C.BALLOON for i in full)
    assert str(C.BALLOON) == "balloon (given to the host)"


def test_a_real_machines_flagless_pages_have_their_own_class():
    words = np.zeros(64, np.uint64)
    words[:8] = np.uint64(1 << KPF.BUDDY)
    words[8:16] = np.uint64(1 << KPF.SLAB)
    bits = page_flag_bits(words)
    assert (bits[16:] & PageFlag.NO_KPAGEFLAGS).all() and not (bits[:16] & 8).any()
    from vmemlab.exercises import nb11

    frame = nb11.snapshot().machine_snapshot()
    fig, ax = new_figure("heatmap")
    art = draw_heatmap(ax, frame, "page")
    assert C.NO_FLAGS in palette.legend_classes(art.legend)
    assert absent_in_legends(fig) == []
    codes = page_classes(frame, 0x1E0000, 0x1E0100)
    assert set(codes.tolist()) == {C.NO_FLAGS}


def test_free_gap_sets_memfree_beside_the_free_lists():
    from vmemlab.exercises import nb11

    snap = nb11.snapshot()
    g = free_gap(snap)
    assert (g.memfree, g.buddy, g.buddy_flag, g.no_flags, g.not_managed) == (
        5696905, 1220132, 1217655, 4865969, 4597099)
    assert g.gap == 5696905 - 1220132
    text = free_gap_text(snap)
    assert "MemFree (/proc/meminfo)                            5696905     22253.5" in text
    assert "in the free lists (/proc/buddyinfo)                1220132      4766.1" in text


# ------------------------------------------------------------------ craft
def test_outline_range_follows_updates_and_is_in_the_legend():
    m = teaching()
    fig, ax = new_figure("heatmap")
    art = draw_heatmap(ax, m, "page", outline=[(8, 40)])
    assert [t.get_text() for t in art.legend.get_texts()][-1] == "requested [0x8, 0x28)"
    (path,) = art.range_lines.get_segments()
    assert path.tolist() == [[7.5, -0.5], [15.5, -0.5], [15.5, 1.5], [7.5, 1.5], [7.5, 2.5],
                             [-0.5, 2.5], [-0.5, 0.5], [7.5, 0.5], [7.5, -0.5]]
    outline_range(art, 64, 72, "second")
    assert len(art.range_lines.get_segments()) == 2
    m.alloc_pages(0, "GFP_KERNEL")
    update_heatmap(art, m)
    assert len(art.range_lines.get_segments()) == 2
    with pytest.raises(ValueError, match="empty"):
        outline_range(art, 9, 9)


def test_small_maps_get_a_line_around_every_cell_big_ones_do_not():
    fig, ax = new_figure("heatmap")
    small = draw_heatmap(ax, teaching(pages=64), "page", width=16)
    assert len(small.cell_lines.get_segments()) == 15 + 3
    fig, ax = new_figure("heatmap")
    big = draw_heatmap(ax, vm.Machine(boot_memory="1G", seed=0), "page")
    assert big.cell_lines is None


def test_ticks_sit_on_row_and_column_starts():
    fig, ax = new_figure("heatmap")
    art = draw_heatmap(ax, teaching(), "page")
    rows = ax.get_yticks()
    assert all(float(y) % 1 == 0.5 for y in rows)              # between two rows
    labels = [t.get_text() for t in ax.get_yticklabels()]
    for y, label in zip(rows, labels, strict=True):
        assert int(label, 16) == art.grid.pfn_at(int(y + 0.5), 0)
    assert all(float(x) % 1 == 0.5 for x in ax.get_xticks())


def _extents(fig, texts):
    """The boxes of the texts themselves (an annotation's leader line left out)."""
    r = fig.canvas.get_renderer()
    return [Text.get_window_extent(t, r) for t in texts if t.get_visible() and t.get_text()]


@pytest.mark.parametrize("ncols", [1, 2])
def test_tick_labels_and_zone_names_never_collide_or_cover_the_map(ncols):
    fig, axes = new_figure("heatmap", ncols=ncols)
    guest = vm.Machine(boot_memory="2G", auto_online_blocks="online_movable", seed=0)
    guest.add_virtio_mem(region_size="4G", requested_size="3G")
    guest.settle()
    arts = [draw_heatmap(ax, guest, legend="below" if i == ncols - 1 else False)
            for i, ax in enumerate(np.atleast_1d(axes))]
    fig.canvas.draw()
    for art in arts:
        names = [t.get_text() for t in art.zone_labels]
        assert names == ["DMA", "DMA32", "Movable", "vmem0"]        # never cut short
        boxes = _extents(fig, art.zone_labels)
        image = art.ax.get_window_extent()
        for b in boxes:
            assert b.x0 >= image.x1 - 0.5                            # off the data
        for axis in (art.ax.xaxis, art.ax.yaxis, art.address_axis.yaxis):
            ext = _extents(fig, axis.get_ticklabels())
            for a, b in zip(ext, ext[1:], strict=False):
                assert not a.overlaps(b), axis
        labels = boxes + _extents(fig, art.address_axis.get_yticklabels())
        for i, a in enumerate(boxes):
            for b in labels[i + 1:]:
                assert not a.overlaps(b)


def test_dodge_keeps_labels_apart_inside_the_axes():
    assert dodge([1.0, 1.0, 0.5], 0.1) == pytest.approx([0.95, 0.85, 0.5])
    assert dodge([0.02, 0.01], 0.1) == pytest.approx([0.15, 0.05])


def test_figures_use_no_text_below_the_minimum():
    fig, ax = new_figure("heatmap")
    draw_heatmap(ax, vmem_machine(), "page")
    fig.canvas.draw()
    assert min_text_px(fig) >= MIN_TEXT_PT * fig.dpi / 72 - 0.01
    fig, ax = new_figure("heatmap")
    draw_subblocks(ax, vmem_machine(), content=True)
    fig.canvas.draw()
    assert min_text_px(fig) >= MIN_TEXT_PT * fig.dpi / 72 - 0.01
