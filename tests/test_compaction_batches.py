"""Compaction's batch work done in one go ends where the kernel's batch-by-batch work ends.

An untraced run to the scanners' meeting point leaves each batch's
free-list work (list entries of isolated blocks, destinations, the sources'
frees) for later (``vmemlab.compaction.Deferred``); a run with
``defers`` off does it batch by batch, as the kernel does.  Both must leave
the same free lists in the same order, memmap, counters and moves.  The
destinations come from whole isolated blocks in the order the kernel's
one-page compaction_alloc() gives them, and the free scanner still stops
at the zone's min watermark.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vmemlab as vm
from vmemlab import workload
from vmemlab.compaction import CompactControl, CompactResult, compaction_alloc
from vmemlab.constants import TEACHING

from .conftest import teaching
from .test_bulk import full_state


def state(m: vm.Machine, runs: list[CompactControl]) -> dict:
    """full_state() plus what each run did and where allocations now sit."""
    return {**full_state(m), "runs": [(cc.summary(), cc.stats.moves, cc.stats.failed,
                                       cc.migrate_pfn, cc.free_pfn) for cc in runs],
            "owners": [(o.pfn, o.order) for o in m.node.owners], "now": m.now}


def batch_by_batch(monkeypatch) -> None:
    monkeypatch.setattr(CompactControl, "defers", property(lambda cc: False))


def x86_half_released(seed: int) -> vm.Machine:
    m = vm.Machine(boot_memory="256M", seed=seed)
    for act in workload.fill(m, fraction=0.8, chunk="64k").values():
        act.release(fraction=0.5)
    return m


def movable_zone(seed: int) -> vm.Machine:
    """Plugged virtio-mem memory online in ZONE_MOVABLE, filled, then half released."""
    m = vm.Machine(boot_memory="256M", seed=seed, auto_online_blocks="online_movable")
    m.add_virtio_mem(region_size="512M", requested_size="256M")
    m.settle()
    workload.fill(m, fraction=0.8, chunk="32k")["movable"].release(fraction=0.6)
    return m


def ballooned(seed: int) -> vm.Machine:
    """Balloon pages (moved by their driver, which allocates) among user memory."""
    m = teaching(pages=1024, seed=seed)
    anon = m.activity("anon", size=300 * 4096)
    m.add_virtio_balloon().set_num_pages(200)
    m.settle()
    m.activity("page_cache", size=300 * 4096)
    anon.release(fraction=0.6)
    return m


@pytest.mark.parametrize("build", [x86_half_released, movable_zone, ballooned])
@pytest.mark.parametrize("seed", [0, 1])
def test_deferred_batches_end_where_batch_by_batch_work_ends(monkeypatch, build, seed):
    m = build(seed)
    runs = m.compact_memory()
    assert any(cc.defers for cc in runs)
    assert sum(cc.stats.nr_migrated for cc in runs) > 50
    m.validate()
    got = state(m, runs)
    batch_by_batch(monkeypatch)
    twin = build(seed)
    assert state(twin, twin.compact_memory()) == got


OPS = st.lists(st.tuples(st.sampled_from(["anon", "page_cache", "pin", "ramfs", "release",
                                          "atomic", "balloon"]),
                         st.integers(1, 60)), min_size=1, max_size=12)


def replay(ops: list[tuple[str, int]]) -> vm.Machine:
    m = teaching(pages=512, seed=0)
    balloon = m.add_virtio_balloon()
    acts = []
    for op, n in ops:
        if op == "release" and acts:
            acts[n % len(acts)].release(fraction=n / 61)
        elif op == "atomic":
            m.alloc_pages(n % 4, "GFP_ATOMIC")
        elif op == "balloon":
            balloon.set_num_pages(n)
            m.settle()
        elif op != "release":
            acts.append(m.activity(op, size=n * 4096))
    return m


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_random_machines_compact_alike_either_way(monkeypatch, ops):
    m = replay(ops)
    got = state(m, m.compact_memory())
    m.validate()
    with monkeypatch.context() as patch:
        batch_by_batch(patch)
        twin = replay(ops)
        assert state(twin, twin.compact_memory()) == got


def test_destinations_come_block_by_block_lowest_order_first():
    """compaction_alloc() takes the lowest order's block, keeps its first page and puts the
    halves back at the front of the lower lists: blocks go out page by page in pfn order."""
    m = teaching(pages=256)
    cc = CompactControl(m.zone("Normal"))
    cc.freepages[3] = [8, 32]
    cc.freepages[0] = [100]
    cc.nr_freepages = 17
    assert compaction_alloc(cc, 3).tolist() == [100, 8, 9]
    assert cc.freepages[:4] == [[], [10], [12], [32]] and cc.nr_freepages == 14
    assert compaction_alloc(cc, 7).tolist() == [10, 11, 12, 13, 14, 15, 32]
    assert cc.freepages[:3] == [[33], [34], [36]] and cc.nr_freepages == 7


def test_the_free_scanner_leaves_the_zone_its_min_watermark():
    """Four free pages in a full zone whose min mark is 0: three become destinations, the
    last stays free (taking it would leave the zone at its mark), so the run ends -ENOMEM."""
    m = teaching(pages=64, seed=0, trace=True)
    assert [m.alloc_pages(0, "GFP_HIGHUSER_MOVABLE") for _ in range(64)] == list(range(64))
    for pfn in (30, 40, 50, 60):
        m.free_pages(pfn, 0)
    (cc,) = m.compact_memory()
    m.step("compact")
    assert cc.result == CompactResult.CONTENDED
    assert cc.stats.moves == [(0, 60, 0), (1, 50, 0), (2, 40, 0)]
    assert (cc.total_free_scanned, cc.free_pfn) == (38, 30)
    scans = [str(e) for e in m.trace.frames[-1].events
             if e.name == "mm_compaction_isolate_freepages"]
    assert scans[-2:] == [
        "mm_compaction_isolate_freepages: start_pfn=0x18 end_pfn=0x1e nr_scanned=6 nr_taken=0",
        "mm_compaction_isolate_freepages: start_pfn=0x1e end_pfn=0x1e nr_scanned=0 nr_taken=0"]
    assert m.page_map().splitlines()[0].split()[1] == "..." + "A" * 27 + "." + "A" * 33
    m.validate()


# Pageblocks of 64 pages: one holds two batches of 32, so the migrate scanner comes back.
WIDE = dataclasses.replace(TEACHING, name="wide", pageblock_order=6, max_page_order=7,
                           section_size=512 * 4096, memory_block_size=512 * 4096)


def full_with_balloon(geometry, pages: int, freed: list[int]) -> vm.Machine:
    """Every page taken by user memory, pfns 0-3 then given to the balloon, ``freed`` freed
    last (so the balloon driver's next allocations take them, the last one first)."""
    m = vm.Machine(boot_memory=pages * 4096, geometry=geometry, seed=0)
    balloon = m.add_virtio_balloon()
    assert [m.alloc_pages(0, "GFP_HIGHUSER_MOVABLE") for _ in range(pages)] == list(range(pages))
    for pfn in range(4):
        m.free_pages(pfn, 0)
    balloon.set_num_pages(4)
    m.settle()
    assert balloon.pages == [0, 1, 2, 3]
    for pfn in freed:
        m.free_pages(pfn, 0)
    return m


def test_a_balloon_page_moved_into_the_free_scanners_pageblock_is_not_taken_again():
    """The first batch takes pfns 59, 61 and 56-57 from the top pageblock and stops before
    63; the driver moves balloon page 0 to 63; the next batch must not take 63."""
    m = full_with_balloon("teaching", 64, [50, 52, 56, 57, 59, 61, 63])
    (cc,) = m.compact_memory()
    assert cc.stats.moves == [(4, 59, 0), (5, 61, 0), (6, 56, 0), (7, 57, 0), (0, 63, 0),
                              (1, 0, 0), (2, 1, 0), (3, 2, 0), (8, 50, 0), (9, 52, 0)]
    assert m.page_map().splitlines()[0].split()[1] == "xxx" + "." * 7 + "A" * 53 + "x"
    m.validate()


def test_a_balloon_page_moved_ahead_of_the_migrate_scanner_is_migrated_in_turn():
    """Balloon page 0 moves to 62, ahead of the first batch in its pageblock: the second
    batch of that pageblock finds it there and moves it again (to 3)."""
    m = full_with_balloon(WIDE, 512, [*range(449, 512, 2), 60, 62])
    (cc,) = m.compact_memory()
    assert [mv for mv in cc.stats.moves if mv[0] < 4 or mv[0] in (60, 62)] == [
        (0, 62, 0), (1, 0, 0), (2, 1, 0), (3, 2, 0), (62, 3, 0)]
    assert cc.stats.nr_migrated == 37
    m.validate()
