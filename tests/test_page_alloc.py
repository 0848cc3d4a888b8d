"""The buddy allocator on the teaching geometry: exact pfns, lists and events."""

from __future__ import annotations

import copy

import pytest

import vmemlab as vm
from vmemlab.constants import MigrateType as MT
from vmemlab.page_alloc import find_buddy_pfn
from vmemlab.trace import MmPageAlloc, MmPageAllocExtfrag, MmPageFree

from .conftest import teaching


def free_list(m: vm.Machine, order: int, mt: MT) -> list[int]:
    return list(m.zone("Normal").free_area[order].free_list[mt])


def test_boot_frees_everything_to_movable_tails(teach):
    # memblock_free_all: 256 pages in 16 aligned order-4 chunks, ascending, to list tails
    assert free_list(teach, 4, MT.MOVABLE) == list(range(0, 256, 16))
    assert teach.proc.buddyinfo() == (
        "Node 0, zone   Normal      0      0      0      0     16 \n")
    teach.validate()


def test_find_buddy_pfn_is_xor():
    assert find_buddy_pfn(8, 1) == 10
    assert find_buddy_pfn(10, 1) == 8
    assert find_buddy_pfn(0, 4) == 16


def test_order0_allocations_walk_up_a_split_block(teach):
    # expand() keeps the low half: the block at 0 is split, 0 is handed out,
    # and the upper halves 8, 4, 2, 1 go to the heads of lower orders.
    assert teach.alloc_pages(0, "GFP_HIGHUSER_MOVABLE") == 0
    assert free_list(teach, 3, MT.MOVABLE) == [8]
    assert free_list(teach, 2, MT.MOVABLE) == [4]
    assert free_list(teach, 1, MT.MOVABLE) == [2]
    assert free_list(teach, 0, MT.MOVABLE) == [1]
    got = [teach.alloc_pages(0, "GFP_HIGHUSER_MOVABLE") for _ in range(15)]
    assert got == list(range(1, 16))
    assert free_list(teach, 4, MT.MOVABLE)[0] == 16
    teach.validate()


def test_free_merges_back_to_the_original_block(teach):
    pfns = [teach.alloc_pages(0, "GFP_HIGHUSER_MOVABLE") for _ in range(3)]
    for pfn in pfns:
        teach.free_pages(pfn, 0)
    assert teach.proc.buddyinfo() == (
        "Node 0, zone   Normal      0      0      0      0     16 \n")
    teach.validate()


def test_merged_block_goes_to_tail_when_a_higher_merge_is_likely(teach):
    # Free 1 while 0 is allocated and 2..3 are free as an order-1 block:
    # buddy_merge_likely() sees that 0..1's buddy (2, order 1) is free.
    a = [teach.alloc_pages(0, "GFP_HIGHUSER_MOVABLE") for _ in range(2)]
    assert a == [0, 1]
    teach.free_pages(1, 0)
    assert free_list(teach, 0, MT.MOVABLE) == [1]
    teach.validate()


def test_unmovable_request_claims_a_whole_block(teach):
    # No unmovable pageblock exists: __rmqueue_claim() takes the largest
    # movable block (order 4 >= pageblock_order 3) and retypes both its pageblocks.
    m = teaching(trace=True)
    assert m.alloc_pages(0, "GFP_KERNEL") == 0
    mm = m.node.mm
    assert [MT(int(t)) for t in mm.pb_mt[:3]] == [MT.UNMOVABLE, MT.UNMOVABLE, MT.MOVABLE]
    events = m.trace.events()
    assert events == [
        MmPageAllocExtfrag(pfn=0, alloc_order=0, fallback_order=4,
                           alloc_migratetype=MT.UNMOVABLE, fallback_migratetype=MT.MOVABLE,
                           change_ownership=True, fragmenting=False),
        MmPageAlloc(pfn=0, order=0, migratetype=MT.UNMOVABLE,
                    gfp_flags=int(vm.parse_gfp("GFP_KERNEL"))),
    ]
    assert str(events[1]) == ("mm_page_alloc: pfn=0x0 order=0 migratetype=Unmovable "
                              "gfp_flags=GFP_KERNEL")
    m.validate()


@pytest.mark.parametrize("kernel", ["6.12", "5.8"])
def test_small_movable_request_steals_without_claiming(kernel):
    # Fill the machine so that only a few free pages in an UNMOVABLE block
    # remain, then ask for a movable page.
    m = teaching(kernel)
    kpfn = m.alloc_pages(0, "GFP_KERNEL")          # claims pageblocks 0-1 unmovable
    movable = m.alloc_pages_bulk(240, "GFP_HIGHUSER_MOVABLE")
    assert len(movable) == 240 and kpfn == 0
    assert m.zone("Normal").nr_free_pages == 15     # the rest of block 0..15
    pfn = m.alloc_pages(0, "GFP_HIGHUSER_MOVABLE")
    assert 1 <= pfn < 16
    # the block stays UNMOVABLE: a movable order-0 request never claims
    assert MT(int(m.node.mm.pb_mt[0])) == MT.UNMOVABLE
    m.validate()


def test_allocation_fails_when_memory_is_exhausted(teach):
    got = teach.alloc_pages_bulk(300, "GFP_HIGHUSER_MOVABLE")
    assert len(got) == 256
    assert teach.alloc_pages(0, "GFP_KERNEL") is None
    teach.validate()


def test_watermark_min_blocks_the_last_pages():
    m = teaching(min_free_kbytes=64)               # 16 pages of min reserve
    z = m.zone("Normal")
    assert z.min_wmark_pages() == 16
    got = m.alloc_pages_bulk(300, "GFP_HIGHUSER_MOVABLE")
    # an order-0 allocation needs free > min after it: 256 - 16 = 240 succeed
    assert len(got) == 240
    assert m.alloc_pages(0, "GFP_KERNEL") is None
    # GFP_ATOMIC may dig into half of min (ALLOC_MIN_RESERVE) plus a quarter more
    assert m.alloc_pages(0, "GFP_ATOMIC") is not None
    m.validate()


@pytest.mark.parametrize("bad_order", [-1, 5, 1.0, True, "2"])
def test_bad_order_is_rejected(teach, bad_order):
    before = teach.proc.buddyinfo()
    with pytest.raises(ValueError, match="order"):
        teach.alloc_pages(bad_order)
    assert teach.proc.buddyinfo() == before


def test_bad_gfp_is_rejected(teach):
    with pytest.raises(ValueError, match="GFP_KERNAL"):
        teach.alloc_pages(0, "GFP_KERNAL")
    with pytest.raises(ValueError, match="mutually exclusive"):
        teach.alloc_pages(0, "GFP_KERNEL | __GFP_MOVABLE | __GFP_RECLAIMABLE")


def test_double_free_wrong_order_and_foreign_pfn_change_nothing(teach):
    pfn = teach.alloc_pages(1, "GFP_KERNEL")
    before = copy.deepcopy(teach.node.mm.state)
    lists = teach.proc.pagetypeinfo()
    with pytest.raises(ValueError, match="order=0 does not match"):
        teach.free_pages(pfn, 0)
    with pytest.raises(ValueError, match="not the first page"):
        teach.free_pages(pfn + 1, 1)
    with pytest.raises(ValueError, match="outside physical memory"):
        teach.free_pages(4096, 0)
    teach.free_pages(pfn, 1)
    with pytest.raises(ValueError, match="double free"):
        teach.free_pages(pfn, 1)
    assert (teach.node.mm.state[:pfn] == before[:pfn]).all()
    assert lists != teach.proc.pagetypeinfo()    # the one good free did change things
    teach.validate()


def test_activity_pages_cannot_be_freed_through_free_pages(teach):
    act = teach.activity("anon", size="64k")
    pfn = int(act.pages()[0])
    with pytest.raises(ValueError, match="belongs to"):
        teach.free_pages(pfn, 0)


def test_events_of_alloc_and_free(teach):
    m = teaching(trace=True)
    pfn = m.alloc_pages(2, "GFP_HIGHUSER_MOVABLE")
    m.free_pages(pfn, 2)
    names = [e.name for e in m.trace.events()]
    assert names == ["mm_page_alloc", "mm_page_free"]
    assert m.trace.events()[-1] == MmPageFree(pfn=0, order=2)


def test_order_above_pageblock_is_freed_per_pageblock(any_kernel):
    m = teaching(any_kernel)
    pfn = m.alloc_pages(4, "GFP_HIGHUSER_MOVABLE")
    m.node.mm.pb_mt[1] = MT.UNMOVABLE        # pretend the second half was retyped
    m.free_pages(pfn, 4)
    m.validate()


def test_trace_can_start_after_setup_and_stop():
    m = vm.Machine(boot_memory=256 * 4096, geometry="teaching", seed=0)
    m.alloc_pages(2, "GFP_KERNEL")                      # not recorded
    tr = m.start_trace()
    m.step("start")
    pfn = m.alloc_pages(0, "GFP_KERNEL")
    m.step("one page")
    assert [f.label for f in tr] == ["start", "one page"]
    assert [(e.name, e.pfn) for e in tr.frames[1].events] == [("mm_page_alloc", pfn)]
    assert m.stop_trace() is tr and not m.trace.enabled
    m.alloc_pages(0, "GFP_KERNEL")
    assert len(tr.events()) == 1


def test_grouping_by_mobility_off_makes_every_pageblock_unmovable():
    m = vm.Machine(boot_memory=vm.GiB, mobility_grouping=False, seed=0)
    assert set(m.node.mm.pb_mt[m.node.mm.pb_zone != 255].tolist()) == {MT.UNMOVABLE}
    pfn = m.alloc_pages(0, "GFP_HIGHUSER_MOVABLE")     # a movable request is Unmovable now
    assert m.node.mm.pb_mt[pfn >> 9] == MT.UNMOVABLE
    assert m.alloc_contig_range(0x20000, 0x20200) == 0   # undo keeps the block Unmovable
    assert m.node.mm.pb_mt[0x20000 >> 9] == MT.UNMOVABLE
    m.validate()


def test_tiny_machine_switches_grouping_off_like_build_all_zonelists():
    # 40 pages = pageblock_nr_pages (8) * MIGRATE_TYPES (5) on the teaching geometry
    assert teaching(pages=32).node.page_group_by_mobility_disabled
    assert not teaching(pages=64).node.page_group_by_mobility_disabled


def test_failed_allocation_is_reported_in_the_log_once_per_10_seconds():
    m = teaching()
    while m.alloc_pages(4, "GFP_KERNEL") is not None:
        pass
    assert m.alloc_pages(4, "GFP_KERNEL") is None
    lines = [ln for ln in m.dmesg().splitlines() if "page allocation failure" in ln]
    assert len(lines) == 1
    assert lines[0].endswith("kworker/0:1: page allocation failure: order:4, "
                             "mode:0xcc0(GFP_KERNEL), nodemask=(null)")
    assert m.node.vm_events["allocstall_fail"] == 2
    m.run(10.0)
    m.alloc_pages(4, "GFP_KERNEL | __GFP_NOWARN")       # silent
    m.alloc_pages(4, "GFP_KERNEL")
    assert m.dmesg().count("page allocation failure") == 2
