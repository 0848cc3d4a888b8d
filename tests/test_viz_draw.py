"""vmemlab.viz drawing on the Agg backend: palette, heatmaps, migration, charts."""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.image import AxesImage

from tests.conftest import teaching
from vmemlab.constants import MigrateType, PageKind, PageState
from vmemlab.trace import MigrateFolioMove, TestPagesIsolated
from vmemlab.viz import fragdata, palette
from vmemlab.viz.classes import (
    PAGE_CLASSES,
    PAGEBLOCK_CLASSES,
    PB_BASE,
    SUBBLOCK_CLASSES,
    CellClass,
)
from vmemlab.viz.figures import FIGSIZE, figure_png, new_figure
from vmemlab.viz.fragplots import (
    draw_fragmentation,
    draw_free_blocks,
    draw_timeseries,
)
from vmemlab.viz.heatmap import draw_heatmap, update_heatmap
from vmemlab.viz.migration import draw_migration
from vmemlab.viz.moves import migration_summary, range_rects
from vmemlab.viz.render import HeatmapRenderer
from vmemlab.viz.subblocks import CONTENT_CLASSES

C = CellClass


@pytest.fixture
def ax():
    fig, axes = new_figure("heatmap")
    yield axes
    fig.clear()


def legend_labels(leg) -> list[str]:
    return [t.get_text() for t in leg.get_texts()]


# ------------------------------------------------------------------ palette
def test_one_colour_per_page_class_and_migratetypes_share_them():
    page = [palette.colour(c) for c in PAGE_CLASSES]
    assert len(set(page)) == len(page)
    for mt, cls in ((MigrateType.MOVABLE, C.MOVABLE), (MigrateType.UNMOVABLE, C.UNMOVABLE),
                    (MigrateType.RECLAIMABLE, C.RECLAIMABLE), (MigrateType.ISOLATE, C.ISOLATED)):
        assert palette.colour(mt) == palette.colour(cls)
    assert palette.colour(PageKind.SLAB) == palette.colour(C.UNMOVABLE)
    assert palette.colour(PageKind.ANON) == palette.colour(C.MOVABLE)
    assert palette.colour(PageState.FREE) == palette.colour(C.FREE)
    assert palette.colour(PageState.PAGE_OFFLINE) == palette.colour(C.PAGE_OFFLINE)
    with pytest.raises(ValueError, match="no colour"):
        palette.colour("free")
    with pytest.raises(ValueError, match="PageKind"):
        palette.colour(PageState.ALLOCATED)


def test_hue_is_not_the_only_cue_for_blockers_and_isolation():
    for c in (C.UNMOVABLE, C.PINNED, C.ISOLATED, C.PB_UNMOVABLE, C.PB_ISOLATE):
        assert palette.hatch(c)
    assert palette.hatch(MigrateType.UNMOVABLE) == palette.hatch(C.UNMOVABLE)
    assert palette.hatch(C.FREE) is None


# Machado, Oliveira & Fernandes (2009) CVD simulation matrices, severity 1.0.
_CVD = {
    "protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                   [-0.003882, -0.048116, 1.051998]],
    "deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                     [-0.011820, 0.042940, 0.968881]],
    "tritanopia": [[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602],
                   [0.004733, 0.691367, 0.303900]],
}


def _lab(linear_rgb: np.ndarray) -> np.ndarray:
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                    [0.0193, 0.1192, 0.9505]]) @ np.clip(linear_rgb, 0, 1)
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def _linear(hex_colour: str) -> np.ndarray:
    c = np.array(to_rgb(hex_colour))
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


# Classes that can share one picture: a simulated page map, a real machine's page
# map (no isolation, pins, balloons or contig ranges are visible there, and its
# pageblock types are unknown), a subblock map with and without its content.
SIMULATED_PAGES = tuple(c for c in PAGE_CLASSES if c is not C.NO_FLAGS)
REAL_PAGES = (C.NOT_PRESENT, C.OFFLINE, C.RESERVED, C.FREE, C.MOVABLE, C.RECLAIMABLE,
              C.UNMOVABLE, C.PAGE_OFFLINE, C.NO_FLAGS, C.PB_UNKNOWN)
PICTURES = {"page": SIMULATED_PAGES, "real": REAL_PAGES, "pageblock": PAGEBLOCK_CLASSES,
            "subblock": SUBBLOCK_CLASSES, "content": CONTENT_CLASSES}


@pytest.mark.parametrize("vision", ["normal", *_CVD])
@pytest.mark.parametrize("classes", PICTURES.values(), ids=PICTURES.keys())
def test_palette_stays_distinct_under_colour_blindness(vision, classes):
    m = np.eye(3) if vision == "normal" else np.array(_CVD[vision])
    lab = {c: _lab(m @ _linear(palette.colour(c))) for c in classes}
    worst = min(float(np.linalg.norm(lab[a] - lab[b]))
                for a, b in itertools.combinations(classes, 2))
    assert worst > 12.0     # CIE76 delta E; about 2.3 is "just noticeable"


@pytest.mark.parametrize("pair", [(C.FREE, C.RECLAIMABLE), (C.UNMOVABLE, C.SB_KERNEL),
                                  (C.CONTIG, C.PAGE_OFFLINE), (C.BALLOON, C.MOVABLE)],
                         ids=lambda p: f"{p[0].name}-{p[1].name}")
def test_classes_told_apart_in_the_notebooks_stay_far_apart(pair):
    """Free memory is not Reclaimable's orange; 08's two hatched reds differ; the pages
    alloc_contig_range() took are not the driver's PageOffline; balloons are not user pages."""
    for vision in ["normal", *_CVD]:
        m = np.eye(3) if vision == "normal" else np.array(_CVD[vision])
        a, b = (_lab(m @ _linear(palette.colour(c))) for c in pair)
        assert float(np.linalg.norm(a - b)) > 20.0, vision


def test_class_cmap_maps_each_code_to_its_colour_exactly():
    cmap, norm = palette.class_cmap()
    for c in CellClass:
        assert cmap(norm(int(c)))[:3] == pytest.approx(to_rgb(palette.colour(c)))


def test_legend_handles_carry_colour_hatch_and_label():
    handles = palette.legend_handles([C.FREE, C.UNMOVABLE])
    assert [h.get_label() for h in handles] == ["free", "unmovable (kernel)"]
    assert handles[1].get_hatch() == "//"
    assert handles[0].get_facecolor()[:3] == pytest.approx(to_rgb(palette.colour(C.FREE)))


# ------------------------------------------------------------------ heatmaps
def test_draw_heatmap_page_zoom_returns_its_artists(ax):
    m = teaching()
    pfn = m.alloc_pages(0, "GFP_KERNEL")
    art = draw_heatmap(ax, m, zoom="page")
    assert isinstance(art.image, AxesImage)
    assert art.image.get_interpolation() == "nearest"
    assert np.array_equal(art.image.get_array(), art.grid.cells)
    assert art.grid.cells[divmod(pfn, 16)] == C.UNMOVABLE
    assert legend_labels(art.legend) == ["free", "unmovable (kernel)"]   # only what it shows
    assert len(art.block_lines.get_segments()) == 3
    assert [t.get_text() for t in art.zone_labels] == ["Normal"]
    assert len(art.hatches) == 1                      # the one unmovable page
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[:2] == ["0x0", "0x10"]
    assert list(ax.get_yticks()[:2]) == [-0.5, 0.5]     # on the top edge of each row
    assert [t.get_text() for t in art.address_axis.get_yticklabels()][:2] == ["0", "64 KiB"]
    assert list(ax.get_xticks()[:2]) == [-0.5, 1.5]     # on the left edge of a column
    assert art.ax.figure is ax.figure


def test_draw_heatmap_pageblock_zoom_shades_by_fill(ax):
    m = teaching()
    pfn = m.alloc_pages(2, "GFP_HIGHUSER_MOVABLE")
    art = draw_heatmap(ax, m)
    alpha = art.image.get_alpha()
    assert alpha.shape == art.grid.cells.shape
    row, col = art.grid.rowcol(pfn)
    assert alpha[row, col] == pytest.approx(palette.FILL_FLOOR + (1 - palette.FILL_FLOOR) * 0.5)
    assert alpha[0, 0 if col else 1] == pytest.approx(palette.FILL_FLOOR)
    assert legend_labels(art.legend) == ["Movable pageblock"]


def test_update_heatmap_changes_the_data_of_the_same_image(ax):
    m = teaching()
    art = draw_heatmap(ax, m, zoom="page")
    image, before = art.image, art.image.get_array().copy()
    pfn = m.alloc_pages(3, "GFP_KERNEL")
    grid = update_heatmap(art, m)
    assert art.image is image and len(ax.images) == 1
    after = art.image.get_array()
    assert not np.array_equal(before, after)
    changed = np.argwhere(after != before)
    assert {grid.pfn_at(r, c) for r, c in changed} == set(range(pfn, pfn + 8))
    # hatch, cell grid, blocks, devices, zones
    assert len(art.hatches) == 1 and len(ax.collections) == 5


def test_heatmap_of_a_q35_guest_marks_zones_and_leaves_the_hole_blank(ax):
    import vmemlab as vm

    m = vm.Machine(boot_memory=4 * vm.GiB)
    m.alloc_pages(0, "GFP_KERNEL")
    art = draw_heatmap(ax, m, legend=False)
    assert art.legend is None
    assert [t.get_text() for t in art.zone_labels] == ["DMA", "DMA32", "Normal"]
    assert art.grid.cells.shape == (48, 64)
    hole_rows = art.grid.cells[16:32]
    assert set(hole_rows.reshape(-1).tolist()) == {C.NOT_PRESENT}
    assert len(art.block_lines.get_segments()) == 32    # none inside the PCI hole
    assert len(art.hatches) == 1                       # 3072 cells: still hatched


def _heatmap_png() -> bytes:
    fig, ax = new_figure("heatmap")
    draw_heatmap(ax, teaching())
    assert tuple(fig.get_size_inches()) == FIGSIZE["heatmap"]
    return figure_png(fig)


def test_drawing_creates_no_pyplot_figure_and_the_same_picture_twice():
    plt.close("all")
    png = _heatmap_png()
    assert plt.get_fignums() == []
    assert png.startswith(b"\x89PNG") and png == _heatmap_png()


def test_renderer_updates_in_place_and_its_png_changes():
    m = teaching()
    r = HeatmapRenderer(m, "page")
    first = r.png()
    image = r.artists.image
    m.alloc_pages(4, "GFP_KERNEL")
    second = r.update(m)
    assert r.artists.image is image
    assert second != first and second.startswith(b"\x89PNG")
    assert int((r.grid.cells == C.UNMOVABLE).sum()) == 16
    assert r.update(m) == second


# ------------------------------------------------------------------ migration
def _migration_case():
    m = teaching()
    src = m.alloc_pages(0, "GFP_HIGHUSER_MOVABLE")
    big = m.alloc_pages(2, "GFP_HIGHUSER_MOVABLE")
    busy = m.alloc_pages(0, "GFP_KERNEL")
    events = [MigrateFolioMove(src, 0xa0, 0), MigrateFolioMove(big, 0xa4, 2),
              TestPagesIsolated(0x0, 0x40, busy, -16)]
    return m, events, busy


def test_draw_migration_pairs_moves_and_marks_the_busy_page(ax):
    m, events, busy = _migration_case()
    art = draw_migration(ax, m, events)
    assert len(art.arrows) == 2
    assert len(art.sources.get_paths()) == 2 and len(art.targets.get_paths()) == 2
    marker, label = art.busy
    assert (marker.get_xdata()[0], marker.get_ydata()[0]) == tuple(
        float(v) for v in reversed(divmod(busy, 16)))
    assert label.get_text() == f"busy pfn {busy:#x}"
    assert len(art.checked.get_segments()) == 1        # pfn 0 is the grid's edge
    labels = legend_labels(art.legend)
    assert labels[-4:] == ["moved from", "moved to", "range tested for isolation",
                           "busy page (made it fail)"]
    assert art.heatmap.grid.zoom == "page"


def test_draw_migration_without_failure_draws_no_cross(ax):
    m, events, _ = _migration_case()
    ok = events[:2] + [TestPagesIsolated(0x0, 0x40, 0x40, 0)]
    art = draw_migration(ax, m, ok, legend=False)
    assert art.busy == [] and art.legend is None
    assert art.step.busy_pfn is None


def test_migration_summary_text():
    events = [MigrateFolioMove(0x41, 0xa0, 0), MigrateFolioMove(0x44, 0xa4, 2),
              TestPagesIsolated(0x40, 0x60, 0x58, -16)]
    assert migration_summary(events) == (
        "2 folios moved (5 pages)\n"
        "  [0x41, 0x42) -> [0xa0, 0xa1): 1 page in 1 folio\n"
        "  [0x44, 0x48) -> [0xa4, 0xa8): 4 pages in 1 folio\n"
        "test_pages_isolated [0x40, 0x60): busy page at pfn 0x58 (-EBUSY)\n")


def test_range_rects_split_at_row_ends():
    from vmemlab.viz.grid import page_grid

    g = page_grid(teaching())
    assert range_rects(g, 14, 19) == [(13.5, -0.5, 2.0), (-0.5, 0.5, 3.0)]
    assert range_rects(g, 300, 310) == []


# ------------------------------------------------------------------ charts
def test_draw_free_blocks_stacks_each_migratetype():
    fig, ax = new_figure("free_blocks")
    m = teaching()
    m.alloc_pages(0, "GFP_KERNEL")
    fb = fragdata.free_blocks(m)
    art = draw_free_blocks(ax, fb, "Normal")
    assert len(art.artists) == len(fb.types) == 5
    heights = np.array([[p.get_height() for p in bars] for bars in art.artists])
    assert np.array_equal(heights, fb.zone("Normal"))
    assert legend_labels(art.legend) == list(fb.types)
    pages = draw_free_blocks(ax, fb, pages=True, log=True, legend=False)
    assert pages.legend is None and ax.get_yscale() == "symlog"
    total = sum(p.get_height() for bars in pages.artists for p in bars)
    assert total == m.zones["Normal"].free


def test_draw_timeseries_and_fragmentation():
    fig, ax = new_figure("series")
    art = draw_timeseries(ax, [0, 1, 2], {"requested": [4, 4, 2], "plugged": [0, 2, 2]},
                          ylabel="GiB")
    assert [line.get_label() for line in art.artists] == ["requested", "plugged"]
    assert art.artists[1].get_ydata().tolist() == [0, 2, 2]
    assert art.artists[0].get_linestyle() != art.artists[1].get_linestyle()
    with pytest.raises(ValueError, match="has 2 values for 3 times"):
        draw_timeseries(ax, [0, 1, 2], {"x": [1, 2]})
    fig, ax = new_figure("series")
    series = fragdata.FragSeries("Normal", 3, np.array([0.0, 1.0]), np.array([0, 1]),
                                 np.array([0, 500]), np.array([-1000, 250]))
    art = draw_fragmentation(ax, series)
    assert art.artists[0].get_ydata().tolist() == [0.0, 0.5]
    assert art.artists[1].get_ydata().tolist() == [-1.0, 0.25]
    assert len(legend_labels(art.legend)) == 2
    plt.close("all")


def test_every_exported_name_resolves():
    from vmemlab import viz

    assert all(getattr(viz, name) is not None for name in viz.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        viz.nothing  # noqa: B018


def test_pageblock_classes_cover_every_migratetype():
    assert [c - PB_BASE for c in PAGEBLOCK_CLASSES if c >= PB_BASE] == list(MigrateType)
