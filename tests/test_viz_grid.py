"""vmemlab.viz pure data: cell classes, grids, downsampling, overlays (numpy only).

Most tests build a MemView from a page-map picture (charmap.parse_page_map),
so the input and the expected grid are both visible in the test.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import vmemlab as vm
from tests.conftest import teaching
from vmemlab.charmap import parse_page_map
from vmemlab.constants import NO_ZONE, TEACHING, MigrateType, PageFlag, PageState, ZoneType
from vmemlab.viz.classes import (
    PAGE_CLASSES,
    PB_BASE,
    CellClass,
    classify_pages,
    mark_isolated,
    state_class,
)
from vmemlab.viz.grid import (
    boundary_path,
    cell_counts,
    heatmap_grid,
    heatmap_summary,
    overlay_paths,
    page_classes,
    page_grid,
    pageblock_classes,
    pageblock_grid,
    plan_cells,
    row_ticks,
)
from vmemlab.viz.source import MemView, mem_view, memory_block_edges, zone_spans

C = CellClass
PB = TEACHING.pageblock_nr_pages  # 8 pages
MOV, UNM = C.PB_MOVABLE, C.PB_UNMOVABLE


def view_of(picture: str, pb_mt: list[int] | None = None,
            zone: int = int(ZoneType.NORMAL)) -> MemView:
    """A teaching-geometry MemView whose pages are drawn as a page map."""
    state, kind, pinned = parse_page_map(picture)
    flags = np.where(pinned, int(PageFlag.PINNED), 0).astype(np.uint8)
    nr_pb = state.size // PB
    mts = np.full(nr_pb, int(MigrateType.MOVABLE), np.uint8) if pb_mt is None else \
        np.array(pb_mt, np.uint8)
    zones = np.where(np.array([(state[i * PB:(i + 1) * PB] != 0).any() for i in range(nr_pb)]),
                     zone, NO_ZONE).astype(np.uint8)
    return MemView(TEACHING, state, kind, flags, mts, zones)


# ------------------------------------------------------------------ classes
def test_every_page_map_character_has_its_class():
    picture = ".AFTQSDP|KWB#xoa"
    state, kind, pinned = parse_page_map(picture)
    flags = np.where(pinned, 1, 0).astype(np.uint8)
    got = classify_pages(state, kind, flags).tolist()
    assert got == [C.FREE, C.MOVABLE, C.MOVABLE, C.MOVABLE, C.UNMOVABLE, C.UNMOVABLE,
                   C.RECLAIMABLE, C.UNMOVABLE, C.UNMOVABLE, C.UNMOVABLE, C.UNMOVABLE,
                   C.BALLOON, C.RESERVED, C.PAGE_OFFLINE, C.OFFLINE, C.PINNED]


def test_classify_matches_the_scalar_rule_for_every_combination():
    states, kinds, flags = np.meshgrid(np.arange(6), np.arange(12), np.arange(8), indexing="ij")
    s, k, f = (a.reshape(-1).astype(np.uint8) for a in (states, kinds, flags))
    expected = [state_class(a, b, bool(c & 1)) for a, b, c in zip(s, k, f, strict=True)]
    assert classify_pages(s, k, f).tolist() == [int(e) for e in expected]


def test_classify_general_path_for_unknown_kinds_is_unmovable():
    state = np.array([4, 4, 3], np.uint8)
    kind = np.array([200, 1, 0], np.uint8)
    flags = np.array([0, 1, 0], np.uint8)
    assert classify_pages(state, kind, flags).tolist() == [C.UNMOVABLE, C.PINNED, C.FREE]


def test_free_pages_of_isolated_pageblocks_become_isolated():
    codes = classify_pages(*_arrays("........" "AAAA...."))
    mark_isolated(codes, np.array([1, 4], np.uint8), PB)
    assert codes.tolist() == [C.FREE] * 8 + [C.MOVABLE] * 4 + [C.ISOLATED] * 4


def _arrays(picture: str):
    state, kind, pinned = parse_page_map(picture)
    return state, kind, pinned.astype(np.uint8)


# ------------------------------------------------------------------ layout
@pytest.mark.parametrize(("units", "max_side", "width", "want"), [
    (256, 512, None, (1, 16, 16)),
    (1000, 512, None, (1, 32, 32)),
    (33, 512, None, (1, 8, 5)),
    (256, 512, 64, (1, 64, 4)),
    (256, 4, None, (16, 4, 4)),
    (17301504, 512, None, (128, 512, 264)),   # a 64 GiB guest's pfns, one cell per 128
])
def test_plan_cells(units, max_side, width, want):
    assert plan_cells(units, max_side, width) == want


def test_plan_cells_rejects_nonsense():
    with pytest.raises(ValueError, match="nr_units"):
        plan_cells(0)
    with pytest.raises(ValueError, match="width"):
        plan_cells(10, 8, width=16)


# ------------------------------------------------------------------ page grids
def test_page_grid_of_a_picture_is_the_picture():
    picture = ("AAAA....KKKK####" "................" "DDDDaaaaxxxxoooo" "................")
    g = page_grid(view_of(picture))
    assert (g.rows, g.width, g.pages_per_cell) == (8, 8, 1)
    assert g.cells.reshape(-1).tolist() == (
        [C.MOVABLE] * 4 + [C.FREE] * 4 + [C.UNMOVABLE] * 4 + [C.RESERVED] * 4
        + [C.FREE] * 16
        + [C.RECLAIMABLE] * 4 + [C.PINNED] * 4 + [C.PAGE_OFFLINE] * 4 + [C.OFFLINE] * 4
        + [C.FREE] * 16)


def test_page_grid_of_a_range_and_its_padding():
    v = view_of("AAAA...." "KKKKKKKK" "........")
    g = page_grid(v, 2, 13)
    assert (g.start_pfn, g.end_pfn, g.width, g.rows, g.nr_cells) == (2, 13, 4, 3, 11)
    assert g.cells.tolist() == [[C.MOVABLE, C.MOVABLE, C.FREE, C.FREE],
                                [C.FREE, C.FREE, C.UNMOVABLE, C.UNMOVABLE],
                                [C.UNMOVABLE, C.UNMOVABLE, C.UNMOVABLE, C.NOT_PRESENT]]
    assert page_classes(v, 2, 13).tolist() == g.cells.reshape(-1)[:11].tolist()


def test_downsampling_by_priority_keeps_the_blocker():
    v = view_of("..AK" "...." "AAAA" "..AA" "#..." "xx.." "oo.." "..a." + "." * 32)
    g = page_grid(v, max_side=4)
    assert g.pages_per_cell == 4
    assert g.cells.reshape(-1)[:8].tolist() == [C.UNMOVABLE, C.FREE, C.MOVABLE, C.MOVABLE,
                                                C.RESERVED, C.PAGE_OFFLINE, C.FREE, C.PINNED]


def test_downsampling_by_mode_breaks_ties_by_priority():
    v = view_of("..AK" "...A" "AA.." "oo.." + "." * 48)
    g = page_grid(v, max_side=4, reduce="mode")
    assert g.cells.reshape(-1)[:4].tolist() == [C.FREE, C.FREE, C.MOVABLE, C.FREE]


def test_downsampling_never_invents_a_class():
    rng = np.random.default_rng(1)
    n = 1 << 20
    state = rng.choice(np.array([1, 2, 3, 4, 4, 4], np.uint8), size=n)
    kind = np.where(state == 4, rng.integers(1, 12, n), 0).astype(np.uint8)
    flags = rng.choice(np.array([0, 0, 0, 1], np.uint8), size=n)
    mts = np.zeros(n // PB, np.uint8)
    v = MemView(TEACHING, state, kind, flags, mts, np.full(n // PB, 2, np.uint8))
    present = set(page_classes(v).tolist())
    for how in ("priority", "mode"):
        g = page_grid(v, max_side=64, reduce=how)
        assert g.cells.shape == (64, 64)
        assert set(g.cells.reshape(-1).tolist()) <= present


def test_page_grid_rejects_bad_ranges_and_choices():
    v = view_of("." * 16)
    with pytest.raises(ValueError, match="not inside"):
        page_grid(v, 8, 32)
    with pytest.raises(ValueError, match="reduce"):
        page_grid(v, reduce="mean")
    with pytest.raises(ValueError, match="zoom"):
        heatmap_grid(v, "section")


# ------------------------------------------------------------------ pageblock grids
def test_pageblock_classes_and_fill():
    picture = ("........" "AAAA...." "KKKKKKKK" "########"
               "        " "xxxxxxxx" "oooooooo" "##......")
    v = view_of(picture, pb_mt=[1, 1, 0, 0, 1, 1, 1, 2])
    codes, fill = pageblock_classes(v)
    assert codes.tolist() == [MOV, MOV, UNM, C.RESERVED, C.NOT_PRESENT, C.PAGE_OFFLINE,
                              C.OFFLINE, C.PB_RECLAIMABLE]
    assert fill.tolist() == [0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.25]


def test_pageblock_grid_layout_and_downsampling():
    v = view_of("AAAAAAAA" + "........" * 7 + "KKKK...." + "........" * 7,
                pb_mt=[1] * 8 + [0] + [1] * 7)
    g = pageblock_grid(v)
    assert (g.rows, g.width, g.pages_per_cell) == (4, 4, PB)
    assert g.cells.reshape(-1).tolist() == [MOV] * 8 + [UNM] + [MOV] * 7
    assert g.fill[0, 0] == 1.0 and g.fill[2, 0] == 0.5
    small = pageblock_grid(v, max_side=2)
    assert (small.rows, small.width, small.pages_per_cell) == (2, 2, 4 * PB)
    assert small.cells.tolist() == [[MOV, MOV], [UNM, MOV]]
    assert small.fill.tolist() == [[0.25, 0.0], [0.125, 0.0]]


def test_pageblock_grid_of_isolated_pageblock():
    v = view_of("AA......" "........", pb_mt=[4, 1])
    assert pageblock_grid(v).cells.reshape(-1).tolist() == [C.PB_ISOLATE, MOV]
    assert page_grid(v).cells.reshape(-1).tolist() == [C.MOVABLE] * 2 + [C.ISOLATED] * 6 + \
        [C.FREE] * 8


# ------------------------------------------------------------------ overlays
def test_boundary_paths_are_staircases():
    g = page_grid(view_of("." * 256))
    assert boundary_path(g, 0) is None and boundary_path(g, 256) is None
    assert boundary_path(g, 64).tolist() == [[-0.5, 3.5], [15.5, 3.5]]
    assert boundary_path(g, 20).tolist() == [[-0.5, 1.5], [3.5, 1.5], [3.5, 0.5], [15.5, 0.5]]


def test_overlay_of_the_teaching_machine(teach):
    g = page_grid(teach)
    ov = overlay_paths(g, teach)
    assert [(z.name, z.start_pfn, z.end_pfn) for z in ov.zones] == [("Normal", 0, 256)]
    assert ov.zone_paths == ()        # the zone fills the grid: nothing inside to mark
    assert ov.block_edges == (64, 128, 192)
    assert [p.tolist() for p in ov.block_paths] == [[[-0.5, y], [15.5, y]]
                                                   for y in (3.5, 7.5, 11.5)]


def test_memory_block_edges_skip_holes():
    v = view_of("." * 64 + " " * 128 + "." * 64)
    assert memory_block_edges(v) == [64, 192]
    assert memory_block_edges(v, 100, 256) == [192]


def test_zone_spans_from_the_pageblock_array():
    v = view_of("." * 32)
    pb_zone = np.array([0, 1, 1, NO_ZONE], np.uint8)
    v2 = MemView(v.geo, v.state, v.kind, v.flags, v.pb_mt, pb_zone)
    assert [(z.name, z.start_pfn, z.end_pfn) for z in zone_spans(v2)] == [
        ("DMA", 0, 8), ("DMA32", 8, 24)]
    g = page_grid(v2, width=8)
    assert [p.tolist() for p in overlay_paths(g, v2).zone_paths] == [
        [[-0.5, 0.5], [7.5, 0.5]], [[-0.5, 2.5], [7.5, 2.5]]]


def test_interleaved_zones_give_one_span_per_stretch():
    """Normal, a hole, Normal, Movable, Normal: each stretch is outlined and named."""
    v = view_of("." * 48)
    pb_zone = np.array([2, NO_ZONE, 2, 3, 2, 2], np.uint8)
    v2 = MemView(v.geo, v.state, v.kind, v.flags, v.pb_mt, pb_zone)
    assert [(z.name, z.start_pfn, z.end_pfn) for z in zone_spans(v2)] == [
        ("Normal", 0, 24), ("Movable", 24, 32), ("Normal", 32, 48)]
    g = page_grid(v2, width=8)
    assert [p.tolist() for p in overlay_paths(g, v2).zone_paths] == [   # pfns 24 and 32
        [[-0.5, 2.5], [7.5, 2.5]], [[-0.5, 3.5], [7.5, 3.5]]]


def test_row_ticks():
    g = page_grid(view_of("." * 256))
    assert row_ticks(g, max_ticks=4) == [(0, 0), (4, 64), (8, 128), (12, 192)]
    assert row_ticks(g)[:2] == [(0, 0), (2, 32)]


# ------------------------------------------------------------------ sources
def test_machine_snapshot_and_frame_give_the_same_grid():
    m = teaching(trace=True)
    pfn = m.alloc_pages(2, "GFP_HIGHUSER_MOVABLE")
    m.step("alloc")
    frame = m.trace.frames[0]
    grids = [page_grid(s).cells for s in (m, m.snapshot(), frame)]
    assert all(np.array_equal(grids[0], g) for g in grids[1:])
    row, col = divmod(pfn, 16)
    assert grids[0][row, col] == C.MOVABLE
    assert int((grids[0] == C.MOVABLE).sum()) == 4


def test_mem_view_errors():
    with pytest.raises(ValueError, match="Machine, Snapshot or Frame"):
        mem_view(42)
    m = teaching(trace=vm.Trace(record_every=2))
    m.step("a")
    m.step("b")
    with pytest.raises(ValueError, match="frame 1 kept no state"):
        mem_view(m.trace.frames[1])


def test_pageblock_grid_of_a_live_machine_tracks_allocations(teach):
    before = pageblock_grid(teach)
    assert set(before.cells.reshape(-1).tolist()) == {MOV}
    assert float(before.fill.sum()) == 0.0
    pfn = teach.alloc_pages(1, "GFP_KERNEL")
    after = pageblock_grid(teach)
    row, col = after.rowcol(pfn)
    assert after.fill[row, col] == 2 / PB
    assert after.cells[row, col] == PB_BASE + int(teach.node.mm.pb_mt[pfn // PB])


# ------------------------------------------------------------------ text
def test_heatmap_summary_of_the_teaching_machine(teach):
    teach.alloc_pages(2, "GFP_HIGHUSER_MOVABLE")
    g = page_grid(teach)
    assert heatmap_summary(g, teach) == (
        "page map of pfn [0x0, 0x100) (1 MiB): 16 x 16 cells, one cell = page (4 KiB)\n"
        "zone Normal: pfn [0x0, 0x100)\n"
        "memory blocks with memory: 4 of 256 KiB\n"
        "cells: free 252, movable (user) 4\n")
    assert cell_counts(g) == {C.FREE: 252, C.MOVABLE: 4}
    pb = heatmap_summary(pageblock_grid(teach))
    assert "one cell = 8 pages (32 KiB)" in pb
    assert "pageblocks in use: 2% of their pages on average" in pb


def test_every_page_class_has_a_label_and_no_pageblock_code():
    assert all(c < PB_BASE for c in PAGE_CLASSES)
    assert len({str(c) for c in CellClass}) == len(CellClass)


def test_pure_modules_do_not_import_matplotlib():
    code = ("import sys, vmemlab.viz, vmemlab.viz.grid, vmemlab.viz.moves, "
            "vmemlab.viz.fragdata, vmemlab.viz.source, vmemlab.viz.classes, "
            "vmemlab.viz.vmemgrid, vmemlab.viz.vmemseries; "
            "bad = [m for m in ('matplotlib', 'ipywidgets') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_state_class_of_each_state():
    assert [state_class(int(s)) for s in PageState] == [
        C.NOT_PRESENT, C.OFFLINE, C.RESERVED, C.FREE, C.UNMOVABLE, C.PAGE_OFFLINE]
