"""Compaction: exact pfns on the teaching geometry, the gates, kcompactd, direct compaction.

The teaching machine has 8-page pageblocks and order-4 (16-page) largest
blocks; with 64 pages (8 pageblocks) every move can be checked by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vmemlab as vm
from tests.conftest import teaching
from vmemlab import workload
from vmemlab.compaction import (
    CompactControl,
    CompactPriority,
    CompactResult,
    MigrateMode,
    compaction_deferred,
    compaction_state,
    compaction_suitable,
    compaction_summary,
    defer_compaction,
    try_to_compact_pages,
    wakeup_kcompactd,
)
from vmemlab.constants import MigrateType, PageFlag, PageState

EVERY_OTHER = ",".join(["+0:M"] * 64) + "," + ",".join(f"-{i}" for i in range(1, 64, 2))


def checkerboard(pages: int = 64, **kw) -> vm.Machine:
    """Every page taken by user memory, then every odd pfn freed: 32 free order-0 pages."""
    m = teaching(pages=pages, seed=0, **kw)
    workload.run_ops(m, EVERY_OTHER if pages == 64 else
                     ",".join(["+0:M"] * pages) + "," +
                     ",".join(f"-{i}" for i in range(1, pages, 2)))
    return m


def buddy(m: vm.Machine) -> list[int]:
    return [area.nr_free for area in m.zone("Normal").free_area]


def events(m: vm.Machine, prefix: str = "mm_compaction") -> list[str]:
    return [str(e) for e in m.trace.frames[-1].events if e.name.startswith(prefix)]


# ------------------------------------------------------------------ compact_memory
def test_compact_memory_moves_the_bottom_up_until_the_scanners_meet():
    m = checkerboard(trace=True)
    assert buddy(m) == [32, 0, 0, 0, 0]
    (cc,) = m.compact_memory()
    m.step("compact")
    assert cc.result == CompactResult.COMPLETE and cc.mode == MigrateMode.MIGRATE_SYNC
    assert cc.stats.moves == [(0, 57, 0), (2, 59, 0), (4, 61, 0), (6, 63, 0),
                              (8, 49, 0), (10, 51, 0), (12, 53, 0), (14, 55, 0),
                              (16, 41, 0), (18, 43, 0), (20, 45, 0), (22, 47, 0)]
    assert m.page_map().splitlines()[0].split()[1] == "." * 24 + "A." * 8 + "A" * 24
    assert buddy(m) == [8, 0, 0, 1, 1]              # pfns 0-15 and 16-23 merged
    assert (cc.total_migrate_scanned, cc.total_free_scanned, cc.nr_isolated) == (32, 24, 16)
    ev = m.node.vm_events
    assert (ev["compact_migrate_scanned"], ev["compact_free_scanned"], ev["compact_isolated"],
            ev["pgmigrate_success"], ev["pgmigrate_fail"]) == (32, 24, 28, 12, 4)
    assert events(m)[0] == ("mm_compaction_begin: zone_start=0x0 migrate_pfn=0x0 "
                            "free_pfn=0x38 zone_end=0x40 mode=MIGRATE_SYNC")
    assert events(m)[-1] == ("mm_compaction_end: zone_start=0x0 migrate_pfn=0x20 "
                             "free_pfn=0x20 zone_end=0x40 mode=MIGRATE_SYNC status=complete")
    assert "mm_compaction_migratepages: nr_migratepages=0 nr_failed=4" in events(m)
    assert m.now == pytest.approx((32 + 24) * 20e-9 + 12 * 4096 / 3.7e9)
    m.validate()


def test_compaction_keeps_every_owner_and_every_free_page():
    m = checkerboard()
    owners = np.bincount(m.node.mm.owner[m.node.mm.state == PageState.ALLOCATED] + 1)
    free = m.proc.meminfo_kb("MemFree")
    m.compact_memory()
    after = np.bincount(m.node.mm.owner[m.node.mm.state == PageState.ALLOCATED] + 1)
    assert np.array_equal(owners, after) and m.proc.meminfo_kb("MemFree") == free


def test_pinned_and_ramfs_pages_stay_where_they_are():
    m = teaching(pages=64, seed=0)
    pinned = m.activity("pin", size=4096)
    ramfs = m.activity("ramfs", size=4096)
    m.activity("anon", size=62 * 4096).release(fraction=0.5)
    pins = np.flatnonzero(m.node.mm.flags & PageFlag.PINNED)
    rams = np.flatnonzero(m.node.mm.kind == vm.constants.PageKind.RAMFS)
    (cc,) = m.compact_memory()
    assert np.array_equal(np.flatnonzero(m.node.mm.flags & PageFlag.PINNED), pins)
    assert np.array_equal(np.flatnonzero(m.node.mm.kind == vm.constants.PageKind.RAMFS), rams)
    assert {p for p, _, _ in cc.stats.moves}.isdisjoint({*pins.tolist(), *rams.tolist()})
    assert pinned and ramfs
    m.validate()


def test_the_free_scanner_takes_destinations_from_movable_pageblocks_only():
    m = checkerboard()
    m.node.mm.pb_mt[7] = MigrateType.UNMOVABLE          # pfns 56-63: not a target
    (cc,) = m.compact_memory()
    assert not any(56 <= d < 64 for _, d, _ in cc.stats.moves)
    assert cc.stats.moves[0] == (0, 49, 0)


# ------------------------------------------------------------------ for an order
def test_compacting_for_an_order_stops_at_the_first_free_block_of_it():
    m = checkerboard()
    cc = m.compact_zone("Normal", order=3)
    assert cc.result == CompactResult.SUCCESS
    assert cc.stats.moves == [(0, 57, 0), (2, 59, 0), (4, 61, 0), (6, 63, 0)]
    assert cc.free_block == 0 and buddy(m)[3] == 1
    assert m.compact_zone("Normal", order=3).result == CompactResult.SUCCESS   # already free
    with pytest.raises(ValueError, match="order=9"):
        m.compact_zone("Normal", order=9)


def test_compaction_wants_any_free_block_alloc_contig_range_a_chosen_one():
    """The same fragmented machine: compaction frees pfns 0-7, whatever was asked; only
    alloc_contig_range() empties the range 0x20-0x28 the caller chose."""
    m = checkerboard()
    cc = m.compact_zone("Normal", order=3)
    assert cc.free_block == 0 and m.node.mm.state[0x20:0x28].tolist().count(
        PageState.ALLOCATED) == 4
    m2 = checkerboard()
    assert m2.alloc_contig_range(0x20, 0x28) == 0
    assert set(m2.node.mm.state[0x20:0x28].tolist()) == {PageState.ALLOCATED}
    assert m2.node.contig_runs().tolist() == [[0x20, 0x28]]


def test_compaction_suitable_needs_free_memory_and_fragmentation():
    m = checkerboard()
    zone = m.zone("Normal")
    assert compaction_suitable(zone, 3, zone.idx)
    full = teaching(pages=64, seed=0)
    workload.run_ops(full, ",".join(["+0:M"] * 64))
    z = full.zone("Normal")
    assert not compaction_suitable(z, 1, z.idx)           # no room to move pages to
    assert compaction_state(full.node).history == []


def test_failed_compaction_is_deferred_then_retried():
    m = checkerboard()
    zone = m.zone("Normal")
    defer_compaction(zone, 2)
    defer_compaction(zone, 2)                               # 1 << 2 = 4 attempts skipped
    assert [compaction_deferred(zone, 2) for _ in range(4)] == [True, True, True, False]
    assert not compaction_deferred(zone, 1)                 # lower orders are not deferred


# ------------------------------------------------------------------ direct and kcompactd
def test_a_high_order_allocation_compacts_directly():
    m = checkerboard()
    pfn = m.alloc_pages(3, "GFP_KERNEL")
    assert pfn == 0
    ev = m.node.vm_events
    assert (ev["compact_stall"], ev["compact_success"], ev.get("compact_fail", 0)) == (2, 1, 1)
    runs = compaction_state(m.node).history
    assert [(r.mode, r.result) for r in runs] == [
        (MigrateMode.MIGRATE_ASYNC, CompactResult.PARTIAL_SKIPPED),   # no Unmovable blocks
        (MigrateMode.MIGRATE_SYNC_LIGHT, CompactResult.SUCCESS)]
    m.validate()


def test_direct_compaction_is_skipped_without_io():
    m = checkerboard()
    rc = try_to_compact_pages(m.node, 3, int(vm.gfp.parse_gfp("GFP_NOIO")), 0, 3,
                              CompactPriority.ASYNC)
    assert rc == CompactResult.SKIPPED and "compact_stall" not in m.node.vm_events


def test_an_atomic_high_order_allocation_wakes_kcompactd():
    m = checkerboard()
    assert m.alloc_pages(3, "GFP_ATOMIC") == 0           # kcompactd made the block
    ev = m.node.vm_events
    assert ev["compact_daemon_wake"] == 1 and "compact_stall" not in ev
    assert ev["compact_daemon_migrate_scanned"] == 8 and ev["compact_daemon_free_scanned"] == 8
    assert wakeup_kcompactd(m.node, 0, 3) == []            # order 0 never wakes it


def test_kcompactd_is_not_woken_when_the_order_is_already_free():
    m = teaching(pages=64, seed=0)
    assert wakeup_kcompactd(m.node, 3, 3) == []
    assert "compact_daemon_wake" not in m.node.vm_events


def test_compaction_counters_and_summary_read_as_the_kernel_names_them():
    m = checkerboard()
    runs = m.compact_memory()
    assert compaction_summary(runs).startswith("zone Normal   order -1 MIGRATE_SYNC")
    vmstat = m.proc.vmstat()
    for key in ("compact_migrate_scanned 32", "compact_free_scanned 24",
                "compact_isolated 28"):
        assert key in vmstat
    assert isinstance(runs[0], CompactControl)


def test_x86_guest_compaction_merges_free_memory():
    m = vm.Machine(boot_memory="256M", seed=0)
    workload.fill(m, fraction=0.8, chunk="64k")["movable"].release(fraction=0.5)
    before = m.proc.unusable_index()
    runs = m.compact_memory()
    assert all(cc.result == CompactResult.COMPLETE for cc in runs)
    after = m.proc.unusable_index()
    assert before != after
    normal = m.zone("Normal") if m.zone("Normal").managed() else m.zone("DMA32")
    assert sum(area.nr_free << o for o, area in enumerate(normal.free_area)
               if o >= 9) > 0
    m.validate()


# ------------------------------------------------------------------ property
OPS = st.lists(st.one_of(
    st.tuples(st.just("alloc"), st.integers(0, 4),
              st.sampled_from(["GFP_KERNEL", "GFP_HIGHUSER_MOVABLE", "GFP_ATOMIC"])),
    st.tuples(st.just("free"), st.integers(0, 200), st.just("")),
    st.tuples(st.just("anon"), st.integers(1, 40), st.just("")),
    st.tuples(st.just("release"), st.integers(1, 9), st.just("")),
    st.tuples(st.just("compact"), st.integers(-1, 4), st.just(""))), max_size=30)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_random_sequences_with_compaction_stay_valid(ops):
    m = teaching(seed=0)
    held: list[tuple[int, int]] = []
    acts = []
    for op, a, b in ops:
        if op == "alloc":
            pfn = m.alloc_pages(a, b)
            if pfn is not None:
                held.append((pfn, a))
        elif op == "free" and held:
            pfn, order = held.pop(a % len(held))
            m.free_pages(m.node.owners[int(m.node.mm.owner[pfn])].pfn, order)
        elif op == "anon":
            acts.append(m.activity("anon", size=a * 4096))
        elif op == "release" and acts:
            acts[a % len(acts)].release(fraction=a / 10)
        elif op == "compact":
            free = m.proc.meminfo_kb("MemFree")
            m.compact_memory() if a < 0 else m.compact_zone("Normal", a)
            assert m.proc.meminfo_kb("MemFree") == free
        m.validate()
