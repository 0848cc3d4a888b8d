"""vmemlab.viz data from the model's text and events: fragmentation, migration steps.

Also end to end: a real alloc_contig_range run drawn as a migration picture,
and a real machine's snapshot drawn as a heatmap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import vmemlab as vm
from tests.conftest import teaching
from vmemlab.metrics import fragmentation_index, unusable_free_index
from vmemlab.trace import MigrateFolioMove, MmPageFree, TestPagesIsolated
from vmemlab.viz import fragdata
from vmemlab.viz.classes import CellClass
from vmemlab.viz.moves import migration_step, migration_summary, move_runs

FIX = Path(__file__).parent / "fixtures"


# ------------------------------------------------------------------ buddyinfo, pagetypeinfo
def test_parse_buddyinfo_of_a_real_capture():
    zones = fragdata.parse_buddyinfo((FIX / "proc" / "buddyinfo.txt").read_text())
    assert list(zones) == ["DMA", "DMA32", "Normal"]
    assert zones["Normal"].tolist() == [13, 2, 1, 37, 136, 65, 31, 20, 9, 11, 76]


def test_parse_buddyinfo_names_a_bad_line():
    with pytest.raises(ValueError, match="line 1"):
        fragdata.parse_buddyinfo("not buddyinfo\n")


def test_parse_pagetypeinfo_of_a_real_capture():
    fb = fragdata.parse_pagetypeinfo((FIX / "proc" / "pagetypeinfo.txt").read_text())
    assert fb.pageblock_order == 9 and fb.nr_orders == 11
    assert fb.types == ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate")
    assert fb.zone("Normal")[1].tolist() == [0, 1, 0, 36, 94, 32, 13, 8, 2, 11, 76]
    assert fb.pageblocks["Normal"].tolist() == [41, 267, 12, 0, 0]
    assert fb.zone().tolist() == fb.zone("Normal").tolist()
    with pytest.raises(ValueError, match="zone='Movable'"):
        fb.zone("Movable")


def test_free_blocks_of_a_machine_match_its_free_lists():
    m = teaching()
    m.alloc_pages(0, "GFP_KERNEL")
    fb = fragdata.free_blocks(m)
    z = m.zone("Normal")
    expected = [[len(a.free_list[t]) for a in z.free_area] for t in range(5)]
    assert fb.zone("Normal").tolist() == expected
    with pytest.raises(ValueError, match="pass a Machine"):
        fragdata.free_blocks(3)


def test_free_blocks_summary_table():
    m = teaching()
    text = fragdata.free_blocks_summary(fragdata.free_blocks(m))
    assert text.splitlines() == [
        "zone Normal   order       0      1      2      3      4   pages",
        "           Unmovable       0      0      0      0      0       0",
        "             Movable       0      0      0      0     16     256",
        "         Reclaimable       0      0      0      0      0       0",
        "          HighAtomic       0      0      0      0      0       0",
        "             Isolate       0      0      0      0      0       0",
        "           all types       0      0      0      0     16     256"]


# ------------------------------------------------------------------ indices over time
def _recorded_machine() -> vm.Machine:
    m = teaching(trace=vm.Trace(record_every=2))
    m.step("boot")
    for i in range(5):
        m.alloc_pages(i % 3, "GFP_KERNEL")
        m.run(1.5)
        m.step(f"alloc {i}")
    return m


def test_fragmentation_series_follows_the_metrics():
    m = _recorded_machine()
    series = fragdata.fragmentation_series(m.trace.frames, "Normal", order=3)
    assert series.step.tolist() == [0, 2, 4]            # frames 1, 3, 5 kept no state
    assert series.time.tolist() == [0.0, 3.0, 6.0]
    live = fragdata.fragmentation_series([m], "Normal", order=3)
    z = m.zone("Normal")
    assert live.unusable.tolist() == [unusable_free_index(z, 3)]
    assert live.fragmentation.tolist() == [fragmentation_index(z, 3)]
    assert series.unusable[0] == 0 and series.fragmentation[0] == -1000


def test_fragmentation_series_rejects_unknown_zone_and_order():
    m = _recorded_machine()
    with pytest.raises(ValueError, match="zone='Movable'"):
        fragdata.fragmentation_series(m.trace.frames, "Movable")
    with pytest.raises(ValueError, match="order=9"):
        fragdata.fragmentation_series(m.trace.frames, "Normal", order=9)


def test_fragmentation_summary_and_timeseries_summary():
    series = fragdata.FragSeries("Normal", 9, np.array([0.0, 2.5]), np.array([0, 3]),
                                 np.array([0, 523]), np.array([-1000, 41]))
    assert fragdata.fragmentation_summary(series) == (
        "zone Normal, order 9\n"
        "  step   time (s)  unusable  extfrag\n"
        "     0      0.000     0.000   -1.000\n"
        "     3      2.500     0.523    0.041\n")
    assert fragdata.timeseries_summary([0, 1.5], {"requested": [4, 2], "plugged": [0, 1.25]}) \
        == ("  time (s)   requested     plugged\n"
            "     0.000           4           0\n"
            "     1.500           2       1.250\n")
    with pytest.raises(ValueError, match="1 values for 2 times"):
        fragdata.timeseries_summary([0, 1], {"x": [1]})


# ------------------------------------------------------------------ migration steps
def test_migration_step_from_events_frames_and_traces():
    events = [MmPageFree(3, 0), MigrateFolioMove(0x10, 0x30, 0),
              TestPagesIsolated(0x10, 0x20, 0x20, 0)]
    step = migration_step(events)
    assert step.moves == (events[1],) and step.checks == (events[2],)
    assert step.busy_pfn is None and step.failure is None
    assert step.pfn_range() == (0x10, 0x31)
    assert migration_step([]).pfn_range() is None
    failed = migration_step([TestPagesIsolated(0, 8, 5, -16), TestPagesIsolated(8, 16, 16, 0)])
    assert failed.busy_pfn == 5


def test_migration_picture_of_a_real_alloc_contig_range():
    from vmemlab.viz.figures import new_figure
    from vmemlab.viz.migration import draw_migration

    m = teaching(trace=True)
    anon = m.activity("anon", size="128k")              # page table at 0, anon at 16..47
    pin = m.activity("pin", size="32k")                 # pinned anon at 48..55
    pinned = 48
    assert pin.pages().tolist() == list(range(48, 56))
    m.step("workload")
    rc = m.alloc_contig_range(16, 48)
    m.step("alloc_contig_range")
    frame = m.trace.frames[-1]
    step = migration_step(frame)
    assert rc == 0 and len(step.moves) == 32
    assert anon.pages().tolist() == [mv.dst_pfn for mv in step.moves]
    fig, ax = new_figure("migration")
    art = draw_migration(ax, frame, frame)
    assert len(art.arrows) == 1 and art.busy == []     # one run: [16, 48) -> [56, 88)
    assert [(r.src_pfn, r.dst_pfn, r.nr_pages) for r in move_runs(step)] == [(16, 56, 32)]
    moved_to = {art.heatmap.grid.cells[divmod(mv.dst_pfn, 16)] for mv in step.moves}
    assert moved_to == {CellClass.MOVABLE}
    c = m.contig_range(48, 56)
    assert c.run() == vm.EBUSY
    m.step("blocked by a pin")
    failed = m.trace.frames[-1]
    assert migration_step(failed).busy_pfn == pinned
    assert f"busy page at pfn {pinned:#x} (-EBUSY)" in migration_summary(failed)
    fig, ax = new_figure("migration")
    art = draw_migration(ax, failed, failed)
    assert art.busy[1].get_text() == f"busy pfn {pinned:#x}"
    assert art.heatmap.grid.cells[divmod(pinned, 16)] == CellClass.PINNED


# ------------------------------------------------------------------ a real machine
def test_heatmap_of_a_real_machine_snapshot():
    from vmemlab.snapshot import read_snapshot
    from vmemlab.viz.figures import new_figure
    from vmemlab.viz.grid import pageblock_grid
    from vmemlab.viz.heatmap import draw_heatmap

    snap = read_snapshot(FIX / "snapshot" / "fc-6.18-24g")
    g = pageblock_grid(snap)
    assert CellClass.PB_UNKNOWN in set(g.cells.reshape(-1).tolist())
    assert not set(g.cells.reshape(-1).tolist()) & {CellClass.PB_MOVABLE, CellClass.PB_UNMOVABLE}
    fig, ax = new_figure("heatmap")
    art = draw_heatmap(ax, snap)
    labels = [t.get_text() for t in art.legend.get_texts()]
    assert labels[-1] == "pageblock, type unknown"
