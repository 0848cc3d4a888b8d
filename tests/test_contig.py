"""alloc_contig_range() and friends: one scenario per outcome, exact pfns."""

from __future__ import annotations

import numpy as np
import pytest

import vmemlab as vm
from vmemlab.constants import MigrateType as MT

from .conftest import teaching


def test_free_range_succeeds_and_free_contig_range_restores_buddyinfo(any_kernel):
    m = teaching(any_kernel)
    before = m.proc.buddyinfo()
    assert m.alloc_contig_range(32, 64) == 0
    assert (m.node.mm.state[32:64] == vm.PageState.ALLOCATED).all()
    assert m.proc.buddyinfo() != before
    assert m.free_contig_range(32, 32) == 0
    assert m.proc.buddyinfo() == before
    assert (m.node.mm.pb_mt[:32] == MT.MOVABLE).all()
    m.validate()


def test_movable_pages_are_migrated_out_and_counted_once(any_kernel):
    m = teaching(any_kernel, trace=True)
    act = m.activity("anon", size="128k")           # page table at 0, anon at 16..47
    assert act.pages().tolist() == list(range(16, 48))
    c = m.contig_range(16, 48)
    assert c.run() == 0
    assert c.stats.moves[:2] == [(16, 48, 0), (17, 49, 0)]
    assert act.pages().tolist() == list(range(48, 80))  # identity moved with the pages
    moves = m.trace.events("migrate_folio_move")
    assert len(moves) == 32 and str(moves[0]) == (
        "migrate_folio_move: src_pfn=0x10 dst_pfn=0x30 order=0")
    assert m.zone("Normal").nr_kind[vm.PageKind.ANON] == 32
    m.validate()
    assert act.release() == 33 * 4096               # the pages, and the page table


def test_unmovable_page_in_kernel_zone_fails_isolation(any_kernel):
    m = teaching(any_kernel)
    m.activity("anon", size="128k")                 # its page table sits at pfn 0
    c = m.contig_range(0, 16)
    assert c.run() == vm.EBUSY
    # 6.12 jumps to done: (undo finds nothing isolated); 5.8 returned at once
    assert [r.phase for r in c.results] == (["isolate", "undo"] if any_kernel == "6.12"
                                            else ["isolate"])
    assert c.busy_pfn == 0 and c.failed_phase == "isolate"
    assert "pagetable" in c.results[0].text
    m.validate()


def test_each_phase_advances_the_clock_by_its_cost(teach):
    teach.activity("anon", size="64k")
    c = teach.contig_range(16, 32)
    before = teach.now
    while not c.done:
        c.step()
    assert c.rc == 0 and c.cost_ns > 0
    assert teach.now - before == pytest.approx(c.cost_ns / 1e9)


def test_pinned_page_fails_in_the_test_phase(teach):
    pin = teach.activity("pin", size="32k")
    first = int(pin.pages()[0])
    c = teach.contig_range(first & ~7, (first & ~7) + 8)
    assert c.run() == vm.EBUSY
    assert [r.phase for r in c.results] == ["isolate", "drain", "migrate", "test", "undo"]
    assert c.busy_pfn == first
    assert "pinned" in c.results[3].text
    teach.validate()


def test_ramfs_pages_pass_isolation_but_never_migrate(teach):
    ramfs = teach.activity("ramfs", size="32k")
    first = int(ramfs.pages()[0])
    c = teach.contig_range(first & ~7, (first & ~7) + 8)
    assert c.run() == vm.EBUSY
    assert c.results[0].rc == 0                     # has_unmovable_pages() sees LRU pages
    assert c.stats.migrate_calls == 5               # a stuck batch gets five tries
    assert c.stats.failed[0] == first
    teach.validate()


def test_no_room_for_migration_targets_is_enomem(any_kernel):
    m = teaching(any_kernel)
    anon = m.activity("anon", size="64k")           # 16 movable pages
    m.activity("kernel", size=str((256 - 17) * 4096))
    assert m.zone("Normal").nr_free_pages == 0
    lo = int(anon.pages()[0])
    assert m.alloc_contig_range(lo, lo + 16) == vm.ENOMEM
    m.validate()
    assert anon.pages().tolist() == list(range(lo, lo + 16))


def test_range_crossing_a_zone_boundary_is_ebusy():
    """Two DIMMs side by side, one onlined Normal, one Movable, all pages free.

    Isolation and migration pass; isolate_freepages_range() stops at the
    first pageblock outside cc->zone, so the take phase fails: -EBUSY.
    """
    m = vm.Machine(boot_memory=4 * vm.GiB, seed=0)
    m.add_dimm("1G", online=False)
    m.add_dimm("1G", online=False)
    per = m.geometry.memory_block_size // m.geometry.page_size
    for block in m.memory_blocks:
        if block.state == "offline":
            kind = "online_kernel" if block.start_pfn < 7 * vm.GiB // 4096 else "online_movable"
            assert m.online_memory_block(block.id, kind) == 0
    border = m.zones["Movable"].start_pfn
    assert border == m.zones["Normal"].end_pfn == 7 * vm.GiB // 4096 and per == 32768
    c = m.contig_range(border - 512, border + 512)
    assert c.run() == vm.EBUSY
    assert [r.phase for r in c.results] == ["isolate", "drain", "migrate", "test", "take",
                                             "undo"]
    assert c.failed_phase == "take"
    m.validate()


def test_first_dma_pageblock_straddles_the_zone_start():
    # ZONE_DMA starts at pfn 1, so its first pageblock cannot be isolated
    m = vm.Machine(boot_memory=1 * vm.GiB, seed=0)
    assert m.alloc_contig_range(0x100, 0x200) == vm.EBUSY


def test_5_8_isolates_4mib_so_a_neighbour_pageblock_matters():
    # Teaching geometry: pageblock = 8 pages, max order block = 16 pages.
    for kernel, expect in (("6.12", 0), ("5.8", vm.EBUSY)):
        m = teaching(kernel)
        slab = m.alloc_pages(0, "GFP_KERNEL")       # unmovable page at pfn 0
        assert slab == 0
        assert m.alloc_contig_range(8, 16) == expect, kernel
        m.validate()


def test_5_8_undo_retypes_the_neighbour_pageblock():
    m = teaching("5.8")
    m.alloc_pages(0, "GFP_KERNEL")                  # pageblocks 0-1 claimed UNMOVABLE
    assert m.node.mm.pb_mt[1] == MT.UNMOVABLE
    assert m.alloc_contig_range(8, 16) == vm.EBUSY
    assert m.alloc_contig_range(24, 32) == 0        # isolates [16, 32)
    assert m.node.mm.pb_mt[2] == MT.MOVABLE and m.node.mm.pb_mt[3] == MT.MOVABLE
    m.validate()


def test_unaligned_range_takes_the_outer_buddy_and_trims(teach):
    c = teach.contig_range(5, 13)
    assert c.run() == 0
    assert (c.outer_start, c.outer_end) == (0, 16)
    assert "gave back 5 pages before and 3 after" in c.results[5].text
    state = teach.node.mm.state
    assert (state[5:13] == vm.PageState.ALLOCATED).all()
    assert (state[:5] == vm.PageState.FREE).all() and (state[13:16] == vm.PageState.FREE).all()
    teach.validate()


def test_free_contig_range_reports_pages_still_in_use(teach):
    act = teach.activity("anon", size="32k")
    assert teach.alloc_contig_range(64, 72) == 0
    pfn = int(act.pages()[0])
    assert teach.free_contig_range(pfn, 8) == 8
    assert teach.free_contig_range(64, 8) == 0
    assert "8 pages are still in use!" in teach.dmesg()
    assert act.pages().tolist() == list(range(pfn, pfn + 8))
    teach.validate()


def test_unsupported_gfp_is_einval_from_6_14_on():
    assert teaching("6.15").alloc_contig_range(0, 8, "GFP_KERNEL | __GFP_NOFAIL") == vm.EINVAL
    for kernel, end in (("6.12", 8), ("6.1", 8), ("5.8", 16)):
        assert teaching(kernel).alloc_contig_range(0, end, "GFP_KERNEL | __GFP_NOFAIL") == 0


def test_gfp_comp_needs_a_power_of_two_aligned_range_from_6_14_on():
    m = teaching("6.15")
    assert m.alloc_contig_range(16, 32, "GFP_KERNEL | __GFP_COMP") == 0
    assert m.alloc_contig_range(40, 52, "GFP_KERNEL | __GFP_COMP") == vm.EINVAL
    assert (m.node.mm.state[40:52] == vm.PageState.FREE).all()
    assert teaching("6.12").alloc_contig_range(40, 52, "GFP_KERNEL | __GFP_COMP") == 0
    m.validate()


def test_migration_targets_take_the_callers_reclaim_flags_from_6_14_on():
    from vmemlab.migrate import migration_gfp

    nowarn = int(vm.parse_gfp("GFP_KERNEL | __GFP_NOWARN"))
    for kernel, expect in (("6.15", "GFP_KERNEL|__GFP_MOVABLE|__GFP_NOWARN|__GFP_RETRY_MAYFAIL"),
                           ("6.12", "GFP_USER|__GFP_MOVABLE|__GFP_RETRY_MAYFAIL")):
        mask = migration_gfp(teaching(kernel).node, vm.ZoneType.NORMAL, nowarn)
        assert vm.format_gfp(mask) == expect


def test_fatal_signal_is_eintr(teach):
    teach.activity("anon", size="32k")
    assert teach.alloc_contig_range(16, 32, fatal_signal=True) == vm.EINTR
    teach.validate()


@pytest.mark.parametrize("bad", [(8, 8), (10, 5), (-1, 4), (0, 10**6), (1.5, 4)])
def test_nonsense_ranges_raise_and_change_nothing(teach, bad):
    before = teach.proc.pagetypeinfo()
    with pytest.raises(ValueError):
        teach.alloc_contig_range(*bad)
    assert teach.proc.pagetypeinfo() == before


def test_step_through_runs_the_same_code_as_the_call(any_kernel):
    a, b = teaching(any_kernel), teaching(any_kernel)
    for m in (a, b):
        m.activity("page_cache", size="64k")
        m.activity("slab", size="8k")
    c = a.contig_range(0, 64)
    phases = []
    while not c.done:
        phases.append(c.step().phase)
    assert c.rc == b.alloc_contig_range(0, 64)
    assert np.array_equal(a.node.mm.state, b.node.mm.state)
    assert phases == [r.phase for r in c.results] and c.failed_phase == "isolate"
    assert phases == (["isolate", "undo"] if any_kernel == "6.12" else ["isolate"])


def test_clean_page_cache_is_dropped_not_migrated(teach):
    cache = teach.activity("page_cache", size="64k")
    lo = int(cache.pages()[0]) & ~7
    c = teach.contig_range(lo, lo + 16)
    assert c.run() == 0
    assert c.stats.dropped > 0 and c.stats.nr_migrated == 0
    teach.validate()


def test_alloc_contig_pages_finds_an_aligned_free_range(any_kernel):
    m = teaching(any_kernel)
    m.alloc_pages(0, "GFP_KERNEL")
    pfn = m.alloc_contig_pages(16)
    assert pfn == 16 if any_kernel == "5.8" else pfn in (0, 16)
    m.validate()
