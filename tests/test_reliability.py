"""Regressions of issue 14: no corrupted state, no hangs, legal transient states."""

from __future__ import annotations

import time

import numpy as np
import pytest

import vmemlab as vm
from vmemlab.constants import MigrateType
from vmemlab.freelist import add_to_free_list, del_page_from_free_list
from vmemlab.page_isolation import start_isolate_page_range
from vmemlab.profiles import PROFILES

from .conftest import teaching

MEM = "/sys/devices/system/memory"


def isolated_pageblocks(m: vm.Machine) -> list[int]:
    return np.flatnonzero(m.node.mm.pb_mt == MigrateType.ISOLATE).tolist()


# -- item 1: reclaim during offlining frees pages the pass still meant to move --------
def page_cache_in_offlined_block() -> vm.Machine:
    """The issue's reproducer: anon fills a quarter of memory short of 40 pages, then
    40 pages of page cache; the offline pass's allocations reclaim that cache."""
    m = teaching()
    m.activity("anon", size=(m.proc.meminfo_kb("MemFree") // 4 - 40) * 4096)
    m.activity("page_cache", size=40 * 4096)
    return m


@pytest.mark.parametrize("how", ["api", "sysfs"])
def test_offline_survives_reclaim_of_pages_it_meant_to_move(how):
    m = page_cache_in_offlined_block()
    if how == "api":
        rc = m.offline_memory_block(3, timeout=1)
    else:
        rc = m.sysfs.write(f"{MEM}/memory3/state", "offline")
    assert rc in (0, vm.EBUSY, vm.EINTR)
    m.validate()
    assert isolated_pageblocks(m) == []
    assert m.zone("Normal").nr_isolate_pageblock == 0
    if rc:
        assert m.proc.meminfo_kb("MemFree") > 0
        assert m.alloc_pages(0) is not None


def test_offline_result_of_the_reproducer():
    """216 anonymous pages cannot fit in the 191 pages outside memory3: 15 move, then
    nothing else can; -EINTR.  The 8 page-cache pages in the block are off the LRU while
    a pass migrates them, so reclaim does not drop them under the pass."""
    m = page_cache_in_offlined_block()
    anon = m.activities[0]
    held = anon.resident
    assert m.offline_memory_block(3, timeout=1) == vm.EINTR
    assert m.memory_blocks[3].state == "online"
    assert anon.resident == held and len(anon.pages()) == 216
    assert m.activities[1].resident == 8 * 4096   # in the block: isolated, so not reclaimed
    assert "page allocation failure: order:0" in m.dmesg()
    m.validate()


@pytest.mark.parametrize("kernel", ["6.12", "5.8"])
@pytest.mark.parametrize("first, cached", [(32, 16), (40, 16), (32, 8), (64, 16)])
def test_contig_range_survives_reclaim_of_a_later_batch(kernel, first, cached):
    """Migrating the first batch (32 anonymous pages) needs destinations; direct reclaim
    drops the oldest page cache, which lies in a later batch of the same range.  That
    batch must see those pages gone, not free them a second time."""
    m = teaching(kernel)
    anon = m.activity("anon", size=first * 4096)
    old_cache = m.activity("page_cache", size=cached * 4096)
    m.activity("page_cache", size=64 * 4096)
    m.activity("anon", size=(m.proc.meminfo_kb("MemFree") // 4 - 12) * 4096)
    lo, hi = int(anon.pages().min()), int(old_cache.pages().max()) + 1
    assert m.alloc_contig_range(lo, hi) == 0
    m.validate()
    assert len(anon.pages()) == first                  # moved, not lost
    assert np.all(m.node.mm.state[lo:hi] == vm.PageState.ALLOCATED)


def test_a_folio_being_migrated_is_off_the_lru():
    """Memory is full: moving the oldest page-cache page makes its destination's
    allocation reclaim, and reclaim takes the oldest page cache, except the page being
    moved (the kernel isolated it from the LRU).  Before, it freed that page under the
    move, which then freed it a second time."""
    from vmemlab.constants import PageFlag
    from vmemlab.migrate import move_folio

    m = teaching()
    cache = m.activity("page_cache", size=24 * 4096)
    m.alloc_pages_bulk(m.zone("Normal").nr_free_pages)
    src = int(cache.pages().min())
    assert move_folio(m.node, src, int(vm.parse_gfp("GFP_HIGHUSER_MOVABLE"))) == 0
    assert len(cache.pages()) == 1                     # the moved page; the rest reclaimed
    assert int(cache.pages()[0]) != src
    assert not np.any(m.node.mm.flags & PageFlag.ISOLATED)
    m.validate()


def test_offline_undoes_isolation_when_a_pass_raises(monkeypatch):
    """Even a bug inside the retry loop leaves no pageblock isolated."""
    from vmemlab import memory_hotplug

    m = teaching()
    m.activity("anon", size=200 * 4096)

    def boom(*args, **kw):
        raise RuntimeError("injected")

    monkeypatch.setattr(memory_hotplug, "move_folio", boom)
    with pytest.raises(RuntimeError, match="injected"):
        m.offline_memory_block(3, timeout=1)
    assert isolated_pageblocks(m) == []
    m.validate()


def full_pageblock(m: vm.Machine) -> int:
    """A pageblock whose pages are all allocated (nothing on a free list to move)."""
    return m.alloc_pages(3, "GFP_HIGHUSER_MOVABLE") >> 3


def test_validate_finds_a_leaked_isolation():
    m = teaching()
    pb = full_pageblock(m)
    m.node.mm.pb_mt[pb] = MigrateType.ISOLATE
    m.zone("Normal").nr_isolate_pageblock += 1     # counters agree: only ownership is wrong
    with pytest.raises(vm.ValidationError,
                       match=f"pageblock {pb} .* isolated .* no isolation in progress"):
        m.validate()


def test_validate_finds_isolation_counts_that_disagree():
    m = teaching()
    m.node.mm.pb_mt[full_pageblock(m)] = MigrateType.ISOLATE
    with pytest.raises(vm.ValidationError, match="nr_isolate_pageblock=0 but 1"):
        m.validate()


# -- item 2: a retry loop costs wall time for work done, not for simulated time --------
def cpu_seconds(fn):
    t0 = time.process_time()
    out = fn()
    return out, time.process_time() - t0


def test_offline_that_cannot_progress_waits_60_simulated_seconds_quickly():
    """Nothing can move (four pinned pages, no room for the rest): the old loop made
    one pass per simulated millisecond, 60,000 passes and a minute of wall time."""
    m = teaching()
    m.activity("pin", size=4 * 4096)
    m.activity("anon", size=100 * 4096)
    assert m.offline_memory_block(1, timeout=1) == 0
    assert m.offline_memory_block(2, timeout=1) == 0
    rc, cpu = cpu_seconds(lambda: m.sysfs.write(f"{MEM}/memory3/state", "offline"))
    assert rc == vm.EINTR and cpu < 0.5
    assert 60.0 <= m.now < 60.01
    assert "gave up after 59999 passes in 60.0 s" in m.dmesg()
    m.validate()


def test_offline_of_an_8g_guest_with_a_2s_budget_is_quick():
    """The issue's 8 GiB case: memory is full, so no page of a Normal block can move; each
    offline used 2000 passes of 22 ms (44 s) to learn that.  A block with a pinned page
    and one with only anonymous memory give -EINTR after 2 simulated seconds; one with a
    kernel page -EBUSY at once."""
    m = vm.Machine(boot_memory=8 * vm.GiB, seed=0)
    m.activity("anon", size="1G", oom_score_adj=-1000)
    pin = m.activity("pin", size=16 * 4096, oom_score_adj=-1000)
    m.activity("anon", size=m.proc.meminfo_kb("MemFree") * 1024, oom_score_adj=-1000)
    mm, per = m.node.mm, m.geometry.pages_per_memory_block
    kinds = {b.id: set(mm.kind[b.start_pfn:b.end_pfn][mm.state[b.start_pfn:b.end_pfn]
                                                      == vm.PageState.ALLOCATED].tolist())
             for b in m.memory_blocks if b.valid_zones == "Normal"}
    pinned = int(pin.pages()[0]) // per
    anon_only = next(b for b, k in kinds.items() if k == {vm.PageKind.ANON} and b != pinned)
    kernel = next(b for b, k in kinds.items() if not all(vm.PageKind(x).lru for x in k))
    for bid, want in ((pinned, vm.EINTR), (anon_only, vm.EINTR), (kernel, vm.EBUSY)):
        t0 = m.now
        rc, cpu = cpu_seconds(lambda bid=bid: m.offline_memory_block(bid, timeout=2))
        assert rc == want and cpu < 0.5, (bid, rc, cpu)
        assert m.now - t0 == pytest.approx(2.0 if want == vm.EINTR else 0.0, abs=0.01)
    m.validate()


# -- item 5: validate() knows the legal transient states -----------------------------
@pytest.mark.parametrize("kernel", ["6.12", "5.8"])
@pytest.mark.parametrize("lo, hi", [(0xe4, 0xff), (0x11, 0x1b), (0x30, 0x71)])
def test_validate_between_contig_range_phases(kernel, lo, hi):
    """Isolating splits free buddies per pageblock; they stay unmerged until undo."""
    m = teaching(kernel)
    m.activity("anon", size=20 * 4096)
    m.activity("slab", size=4 * 4096)
    c = m.contig_range(lo, hi)
    phases = []
    while not c.done:
        c.step()
        phases.append([(i.what, i.phase) for i in m.node.isolations])
        m.validate()
    assert phases[0] == [("alloc_contig_range", c.phases[1])]
    assert phases[-1] == [] and isolated_pageblocks(m) == []


def split_free_block(zone, head: int) -> None:
    """Leave the two halves of the free block at ``head`` unmerged, on the same list."""
    mm = zone.node.mm
    order, mt = int(mm.order[head]), int(mm.owner[head])
    del_page_from_free_list(zone, head, order, mt)
    for half in (head, head + (1 << order - 1)):
        add_to_free_list(zone, half, order - 1, mt)


@pytest.mark.parametrize("kernel", sorted(PROFILES))
def test_validate_accepts_exactly_the_unmerged_buddies_the_kernel_leaves(kernel):
    """Two isolated pageblocks may keep free buddies of pageblock order unmerged (isolation
    moves free blocks without merging them); smaller buddies, or buddies in Movable
    pageblocks, always merge."""
    m = teaching(kernel)
    zone, pb = m.zone("Normal"), m.geometry.pageblock_nr_pages
    split_free_block(zone, 4 * pb)
    with pytest.raises(vm.ValidationError, match="were not merged"):
        m.validate()
    m = teaching(kernel)
    zone = m.zone("Normal")
    m.node.begin_isolation("test", 0, 2 * pb)
    assert start_isolate_page_range(m.node, 0, 2 * pb) == 0
    if m.node.mm.order[0] > m.geometry.pageblock_order:     # 5.8 moves the block whole
        split_free_block(zone, 0)
    assert m.node.mm.order[0] == m.node.mm.order[pb] == m.geometry.pageblock_order
    m.validate()
    split_free_block(zone, 0)
    with pytest.raises(vm.ValidationError, match="free buddies 0x0 and 0x4 of order 2"):
        m.validate()


def test_an_abandoned_contig_range_stays_owned():
    m = teaching()
    c = m.contig_range(0x40, 0x80)
    c.step()                                   # isolated, then never stepped again
    m.validate()
    assert len(isolated_pageblocks(m)) == 8
    c.run()
    m.validate()
    assert isolated_pageblocks(m) == []


def request_in_flight(m: vm.Machine) -> bool:
    return any(dev.driver.in_flight is not None for dev in m.virtio_mem)


@pytest.mark.parametrize("kernel", ["6.12", "5.8"])
@pytest.mark.parametrize("sizes", [("768k", "256k", "0"), ("1M", "0")])
def test_validate_while_a_virtio_mem_request_is_in_flight(kernel, sizes):
    m = vm.Machine(boot_memory="512k", geometry="teaching", kernel=kernel)
    dev = m.add_virtio_mem(region_size="1M")
    seen = 0
    for size in sizes:
        dev.requested_size = size
        while m._pending_work:
            m._fire_next()
            seen += request_in_flight(m)
            m.validate()
        assert dev.size == dev.driver.plugged_size
    assert seen > 2


def test_validate_while_unplug_all_is_in_flight():
    m = vm.Machine(boot_memory="512k", geometry="teaching")
    dev = m.add_virtio_mem(region_size="1M", requested_size="512k")
    m.settle()
    dev.migrating = True
    m.reboot()                        # busy at reset: keeps its blocks, UNPLUG_ALL at probe
    dev.migrating = False
    seen = 0
    while m._pending_work:
        m._fire_next()
        seen += request_in_flight(m)
        m.validate()
    assert seen and dev.size == dev.driver.plugged_size == 512 * 1024


# -- item 3: infinite, NaN and endless time --------------------------------------------
@pytest.mark.parametrize("seconds", [float("inf"), float("nan"), 1e308, -1.0])
def test_run_refuses_time_it_cannot_simulate(seconds):
    m = teaching()
    m.start_activity("page_cache", rate="4k", interval=1.0)
    with pytest.raises(ValueError, match="seconds="):
        m.run(seconds)
    assert m.now == 0.0


def test_run_with_a_repeating_timer_is_bounded():
    """A background activity ticks once a second: 1e5 s would be 100,000 ticks."""
    m = teaching()
    act = m.start_activity("page_cache", rate="4k", interval=1.0, release_fraction=0.5)
    with pytest.raises(ValueError, match=r"tick about 1e\+05 times; one call fires at most"):
        m.run(1e5)
    m.run(500)
    assert m.now == 500
    act.stop()
    m.run(1e6)                                  # a stopped activity does not tick
    assert m.now == 1_000_500
    m.validate()


def test_settle_stops_where_background_ticks_would_exceed_the_bound():
    m = vm.Machine(boot_memory="512k", geometry="teaching")
    dev = m.add_virtio_mem(region_size="1M", requested_size="1M")
    m.start_activity("anon", rate="4k", interval=1e-9, release_fraction=1.0)
    assert 0 < m.settle() <= 1e-5 + 1e-12          # 10,000 ticks of 1 ns
    assert dev.driver.wq_active and m._pending_work
    m.validate()


def test_a_capped_activity_ticks_only_until_its_cap():
    m = teaching()
    m.start_activity("page_cache", rate="4k", interval=1e-3, limit="40k")
    m.run(1e5)                                  # ten ticks, not a hundred million
    assert m.activities[0].requested == 40 * 1024
    m.validate()


# -- item 4: a rejected call leaves the model unchanged -----------------------------------
def test_a_rejected_add_virtio_mem_reserves_nothing():
    m = vm.Machine(boot_memory="512k", geometry="teaching")
    nr_pfns = m.node.mm.nr_pfns
    with pytest.raises(ValueError, match="requested-size"):
        m.add_virtio_mem(region_size="1M", requested_size="2M")
    assert m.device_regions == [] and m.virtio_mem == [] and m.node.mm.nr_pfns == nr_pfns
    dev = m.add_virtio_mem(region_size="1M")
    assert dev.name == "vmem0" and dev.addr == 512 * 1024
    assert m.device_regions == [(512 * 1024, 1024 * 1024, "vmem0")]


# -- found by the fuzz: a user's offline while the driver's pass holds hotplug_mutex -----
@pytest.mark.parametrize("how", ["sysfs", "api"])
def test_offline_of_device_memory_waits_for_the_drivers_pass(how):
    """The driver plugs a subblock into a partly plugged block; while the request is in
    flight the user offlines that block.  In the kernel the write waits for the driver's
    hotplug_mutex; here it used to go ahead, and the driver then onlined pages of an
    offline block (AttributeError)."""
    m = vm.Machine(boot_memory="512k", geometry="teaching")
    dev = m.add_virtio_mem(region_size="1M", requested_size="128k")
    m.settle()
    dev.requested_size = "256k"
    while dev.driver.in_flight is None:
        m._fire_next()
    bid = dev.addr // (256 * 1024)
    rc = (m.sysfs.write(f"{MEM}/memory{bid}/state", "offline") if how == "sysfs"
          else m.offline_memory_block(bid))
    assert rc == 0 and not dev.driver.wq_active          # it ran after the pass
    assert m.memory_blocks[bid].state == "offline"
    assert dev.driver.view().mb_states[0] == "OFFLINE"
    m.settle()
    m.validate()
    assert dev.size == 256 * 1024


def test_validate_finds_a_folio_left_off_the_lru():
    from vmemlab.constants import PageFlag

    m = teaching()
    act = m.activity("page_cache", size=8 * 4096)
    m.node.mm.set_flag(act.pages()[:1], PageFlag.ISOLATED)
    with pytest.raises(vm.ValidationError, match="still off the LRU"):
        m.validate()


@pytest.mark.parametrize("bulk", [False, True])
def test_a_folio_freed_while_its_destination_is_allocated_is_done(monkeypatch, bulk):
    """The process exits (as when the OOM killer picks it) while migration allocates
    the destination: there is nothing left to move, and nothing may be moved twice."""
    from vmemlab import migrate

    m = teaching()
    anon = m.activity("anon", size=16 * 4096)
    srcs = anon.pages()[:4]
    name = "alloc_pages_bulk" if bulk else "alloc_block"
    real = getattr(migrate, name)

    def exit_then_allocate(*args, **kw):
        anon.release(1.0)
        return real(*args, **kw)

    monkeypatch.setattr(migrate, name, exit_then_allocate)
    gfp = int(vm.parse_gfp("GFP_HIGHUSER_MOVABLE"))
    if bulk:
        assert migrate.move_folios_bulk(m.node, srcs, gfp, migrate.MigrateStats()) == 0
    else:
        assert migrate.move_folio(m.node, int(srcs[0]), gfp) == 0
    assert anon.resident == 0
    m.validate()


def test_compaction_for_a_reclaimable_allocation_moves_balloon_pages():
    """Direct compaction for a __GFP_RECLAIMABLE allocation moved balloon pages with that
    gfp plus __GFP_MOVABLE, which the allocator refuses (mutually exclusive): the fuzz's
    churn met it as a ValueError.  A balloon page's new home is a movable page."""
    from vmemlab.compaction import CompactControl, compact_zone

    m = teaching()
    anon = m.activity("anon", size=64 * 4096)
    m.add_virtio_balloon().set_memory(128 * 4096)
    m.run(1)
    anon.release(1.0)
    gfp = int(vm.parse_gfp("GFP_KERNEL | __GFP_RECLAIMABLE"))
    cc = CompactControl(m.zone("Normal"), -1, gfp=gfp, migratetype=int(MigrateType.RECLAIMABLE))
    compact_zone(cc)
    assert m.node.vm_events.get("balloon_migrate", 0) > 0
    m.validate()


def test_compaction_leaves_pages_another_migration_has_isolated():
    """A page taken off the LRU by a migration in progress (alloc_contig_range, offline)
    is not on the LRU for compaction's migrate scanner either (PageLRU clear)."""
    from vmemlab.compaction import CompactControl, compact_zone
    from vmemlab.constants import PageFlag

    m = teaching()
    anon = m.activity("anon", size=64 * 4096)
    anon.release(0.5)
    taken = anon.pages()[:4]
    m.node.mm.set_flag(taken, PageFlag.ISOLATED)
    cc = CompactControl(m.zone("Normal"), -1)
    compact_zone(cc)
    assert cc.stats.nr_migrated > 0 and not set(cc.stats.failed) & set(taken.tolist())
    assert np.isin(m.node.mm.owner[taken], anon.owner_ids).all()          # not moved
    assert (m.node.mm.flags[taken] & PageFlag.ISOLATED).all()
    m.node.mm.clear_flag(taken, PageFlag.ISOLATED)
    assert set(taken.tolist()) <= set(anon.pages().tolist())
    m.validate()


def test_a_later_folio_of_the_batch_freed_meanwhile_is_done(monkeypatch):
    """The OOM killer, invoked while one folio's destination is allocated, kills the
    process of a folio later in the same batch: when its turn comes it is gone, so
    there is nothing to move (migrate_folio_unmap(): freed from under us)."""
    from vmemlab import migrate

    m = teaching()
    first = m.activity("anon", size=4 * 4096)
    later = m.activity("anon", size=4 * 4096)
    start, end = int(first.pages()[0]), int(later.pages()[-1]) + 1
    held = first.resident
    real = migrate.alloc_block
    monkeypatch.setattr(migrate, "_fast_path_room", lambda node, gfp: 0)   # the batch loop

    def oom_kills_later(*args, **kw):
        if not later.killed:
            later.exit()
        return real(*args, **kw)

    monkeypatch.setattr(migrate, "alloc_block", oom_kills_later)
    gfp = int(vm.parse_gfp("GFP_HIGHUSER_MOVABLE"))
    rc, stats = migrate.migrate_range(m.node, start, end, gfp, int(vm.ZoneType.NORMAL))
    assert rc == 0 and stats.nr_migrated == len(first.pages()) >= 4
    assert later.resident == 0 and first.resident == held
    m.validate()


@pytest.mark.parametrize("boot", ["192M", "200M"])
def test_a_boot_block_ending_in_a_hole_is_valid(boot):
    """memory1 of a 192 MiB q35 guest spans 128-256 MiB: past the end of RAM its
    pageblocks have absent pages and no zone.  A present pageblock of another
    zone is still an error."""
    m = vm.Machine(boot_memory=boot, cpus=2, maxmem="4G", slots=4)
    m.validate()
    block = m.hotplug.blocks[1]
    pb = block.start_pfn >> m.node.geo.pageblock_order
    m.node.mm.pb_zone[pb] = int(vm.ZoneType.NORMAL)
    from vmemlab.validate import validate_hotplug

    with pytest.raises(vm.ValidationError, match="memory1 is online in zone 1"):
        validate_hotplug(m.hotplug)


def test_churn_frees_the_blocks_direct_compaction_moved():
    """churn()'s own allocations run direct compaction, which moves the raw blocks
    churn allocated earlier: it frees each where its owner now is (found by the fuzz:
    a freed pfn whose allocation had moved)."""
    from vmemlab.workload import churn

    m = teaching(pages=128, seed=0)
    stats = churn(m, 400, max_order=3, lifetime=60)
    assert m.node.vm_events["compact_stall"] > 0 and m.node.vm_events["pgmigrate_success"] > 0
    assert stats.freed > 0
    m.validate()
