"""Bulk paths must equal the loop of single calls they replace, exactly."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import vmemlab as vm
from vmemlab import bulk, workload
from vmemlab.bulk import alloc_pages_bulk, free_pages_bulk
from vmemlab.constants import MigrateType, PageKind
from vmemlab.page_alloc import alloc_pages, free_block
from vmemlab.page_isolation import start_isolate_page_range, undo_isolate_page_range
from vmemlab.profiles import PROFILES

from .conftest import teaching


@contextmanager
def rebuild_min(blocks: int) -> Iterator[None]:
    """Run with bulk._REBUILD_MIN set: when the batch free rebuilds whole lists."""
    saved, bulk._REBUILD_MIN = bulk._REBUILD_MIN, blocks
    try:
        yield
    finally:
        bulk._REBUILD_MIN = saved

GFPS = ["GFP_HIGHUSER_MOVABLE", "GFP_KERNEL", "GFP_KERNEL | __GFP_RECLAIMABLE"]


def machine_state(m: vm.Machine, isolate_order: bool = True) -> dict:
    """Everything the allocator keeps; ISOLATE lists as sets unless ``isolate_order``."""
    node = m.node
    lists = {(z.name, o, t): list(lst) if isolate_order or t != MigrateType.ISOLATE
             else sorted(lst)
             for z in node.zones
             for o, a in enumerate(z.free_area) for t, lst in enumerate(a.free_list) if lst}
    mm = node.mm
    return {"lists": lists, "state": mm.state.tobytes(), "order": mm.order.tobytes(),
            "kind": mm.kind.tobytes(), "owner": mm.owner.tobytes(), "pb_mt": mm.pb_mt.tobytes(),
            "free": [z.nr_free_pages for z in node.zones],
            "kinds": [z.nr_kind.tolist() for z in node.zones]}


def scrambled(kernel: str, ops: list[tuple[int, int, int]], min_free_kbytes: int) -> vm.Machine:
    """A teaching machine after a sequence of single allocations and frees."""
    m = teaching(kernel, min_free_kbytes=min_free_kbytes)
    held = []
    for kind, order, gfp in ops:
        if kind == 0 or not held:
            pfn = m.alloc_pages(order % 5, GFPS[gfp])
            if pfn is not None:
                held.append((pfn, order % 5))
        else:
            pfn, order = held.pop(gfp % len(held))
            m.free_pages(pfn, order)
    m.validate()
    return m


OPS = st.lists(st.tuples(st.integers(0, 1), st.integers(0, 4), st.integers(0, 2)),
               max_size=60)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, n=st.integers(0, 300), gfp=st.integers(0, 2),
       kernel=st.sampled_from(sorted(PROFILES)), wmin=st.sampled_from([0, 64]),
       slices=st.sampled_from([0, 10**9]))
def test_alloc_pages_bulk_equals_loop(ops, n, gfp, kernel, wmin, slices):
    m = scrambled(kernel, ops, wmin)
    a, b = m, copy.deepcopy(m)
    owner = a.node.new_owner(PageKind.KERNEL, "bulk").id
    b.node.new_owner(PageKind.KERNEL, "bulk")
    saved = bulk._SLICE_RUNS
    bulk._SLICE_RUNS = slices  # mark by fancy indexing (0) or by slices (huge)
    try:
        got_bulk = alloc_pages_bulk(a.node, GFPS[gfp], n, None, owner)
    finally:
        bulk._SLICE_RUNS = saved
    got_loop = []
    for _ in range(n):
        pfn = alloc_pages(b.node, 0, GFPS[gfp], None, owner)
        if pfn is None:
            break
        got_loop.append(pfn)
    assert got_bulk.tolist() == got_loop
    assert machine_state(a) == machine_state(b)
    a.validate()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, fill=st.integers(1, 256), pick=st.randoms(use_true_random=False),
       kernel=st.sampled_from(sorted(PROFILES)))
def test_free_pages_bulk_equals_loop(ops, fill, pick, kernel):
    m = scrambled(kernel, ops, 0)
    owner = m.node.new_owner(PageKind.ANON, "bulk").id
    pfns = alloc_pages_bulk(m.node, "GFP_HIGHUSER_MOVABLE", fill, None, owner)
    chosen = sorted(pick.sample(pfns.tolist(), k=len(pfns) // 2 + 1)) if len(pfns) else []
    a, b = m, copy.deepcopy(m)
    free_pages_bulk(a.node, np.array(chosen, dtype=np.int64))
    for pfn in chosen:
        free_block(b.node, pfn, 0)
    assert machine_state(a) == machine_state(b)
    a.validate()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, fill=st.integers(1, 256), first=st.integers(0, 31), blocks=st.integers(1, 8),
       pick=st.randoms(use_true_random=False), kernel=st.sampled_from(sorted(PROFILES)))
def test_free_into_isolated_pageblocks_equals_loop(ops, fill, first, blocks, pick, kernel):
    """Frees into MIGRATE_ISOLATE pageblocks (migration sources) rebuild the same blocks."""
    m = scrambled(kernel, ops, 0)
    owner = m.node.new_owner(PageKind.ANON, "bulk").id
    pfns = alloc_pages_bulk(m.node, "GFP_HIGHUSER_MOVABLE", fill, None, owner)
    pb = m.node.geo.pageblock_nr_pages
    start, end = first * pb, min(first + blocks, 32) * pb
    assume(start_isolate_page_range(m.node, start, end) == 0)
    inside = [p for p in pfns.tolist() if p < start or p >= end or pick.random() < 0.7]
    chosen = sorted(pick.sample(inside, k=len(inside) // 2 + 1)) if inside else []
    a, b = m, copy.deepcopy(m)
    with rebuild_min(1):  # rebuild even a single page's block
        free_pages_bulk(a.node, np.array(chosen, dtype=np.int64))
    for pfn in chosen:
        free_block(b.node, pfn, 0)
    assert machine_state(a, isolate_order=False) == machine_state(b, isolate_order=False)


def full_state(m: vm.Machine) -> dict:
    """machine_state() with every list in order, plus what the /proc views print."""
    return {**machine_state(m), "flags": m.node.mm.flags.tobytes(),
            "events": dict(m.node.vm_events), "buddyinfo": m.proc.buddyinfo(),
            "pagetypeinfo": m.proc.pagetypeinfo(),
            "highatomic": [z.nr_free_highatomic for z in m.node.zones]}


@pytest.mark.parametrize("kernel", sorted(PROFILES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, chunks=st.lists(st.tuples(st.integers(0, 2), st.integers(1, 48)), max_size=8),
       isolate=st.lists(st.tuples(st.integers(0, 31), st.integers(1, 4)), max_size=3),
       share=st.one_of(st.just(1.0), st.floats(0.05, 1.0)), pick=st.randoms(use_true_random=False))
def test_batch_merge_equals_one_by_one(kernel, ops, chunks, isolate, share, pick):
    """The level-by-level merge leaves every list, head, type and counter as page-by-page frees.

    Mixed migratetypes make pageblocks of every type (merge barriers above
    pageblock_order, retyping since 6.10); isolated pageblocks add the
    ISOLATE lists and 5.8's isolate-only barrier.
    """
    m = scrambled(kernel, ops, 0)
    held = []
    for gfp, n in chunks:
        owner = m.node.new_owner(PageKind.ANON, "chunk").id
        held += alloc_pages_bulk(m.node, GFPS[gfp], n, None, owner).tolist()
    pb = m.node.geo.pageblock_nr_pages
    ranges = [(first * pb, min(first + blocks, 32) * pb) for first, blocks in isolate]
    ranges = [r for r in ranges if start_isolate_page_range(m.node, *r) == 0]
    chosen = sorted(pick.sample(held, k=int(len(held) * share))) if held else []
    a, b = m, copy.deepcopy(m)
    with rebuild_min(0):   # always the numpy merge
        free_pages_bulk(a.node, np.array(chosen, dtype=np.int64))
    for pfn in chosen:
        free_block(b.node, pfn, 0)
    assert full_state(a) == full_state(b)
    for r in reversed(ranges):   # validate() does not accept isolated free buddies
        undo_isolate_page_range(a.node, *r)
        undo_isolate_page_range(b.node, *r)
    assert full_state(a) == full_state(b)
    a.validate()


@pytest.mark.parametrize("kernel", sorted(PROFILES))
def test_batch_merge_across_pageblock_types(kernel):
    """An Unmovable pageblock and its Movable buddy freed in one batch merge (unmergeable
    types excepted); since 6.10 the lower pageblock takes the Movable type of the later free."""
    m = teaching(kernel, min_free_kbytes=0)
    pb = m.node.geo.pageblock_nr_pages
    owner = m.node.new_owner(PageKind.ANON, "all").id
    alloc_pages_bulk(m.node, "GFP_HIGHUSER_MOVABLE", 256, None, owner)
    free_pages_bulk(m.node, np.arange(pb))
    kernel_pages = alloc_pages_bulk(m.node, "GFP_KERNEL", pb, None, owner)
    assert kernel_pages.tolist() == list(range(pb))
    assert m.node.mm.pb_mt[:2].tolist() == [MigrateType.UNMOVABLE, MigrateType.MOVABLE]
    a, b = m, copy.deepcopy(m)
    with rebuild_min(0):
        free_pages_bulk(a.node, np.arange(2 * pb))
    for pfn in range(2 * pb):
        free_block(b.node, pfn, 0)
    assert full_state(a) == full_state(b)
    assert 0 in a.node.page_zone(0).free_area[4].free_list[MigrateType.MOVABLE]
    retyped = MigrateType.MOVABLE if a.profile.freelist_hygiene else MigrateType.UNMOVABLE
    assert a.node.mm.pb_mt[0] == retyped
    a.validate()


@pytest.mark.parametrize("kernel", sorted(PROFILES))
def test_batch_merge_of_a_released_fill_equals_one_by_one(kernel):
    """A q35 guest filled to 75% gives back 60% of its movable pages at random."""
    m = vm.Machine(boot_memory=256 * vm.MiB, kernel=kernel, seed=3)
    acts = workload.fill(m, 0.75)
    pages = acts["movable"].pages()
    chosen = np.sort(m.rng.choice(pages, size=len(pages) * 6 // 10, replace=False))
    a, b = m, copy.deepcopy(m)
    free_pages_bulk(a.node, chosen)
    for pfn in chosen.tolist():
        free_block(b.node, pfn, 0)
    assert full_state(a) == full_state(b)
    a.validate()


_RELEASED: dict[str, vm.Machine] = {}


def released(kernel: str) -> vm.Machine:
    """A 256 MiB q35 guest with 256 MiB of ZONE_MOVABLE (virtio-mem), filled to 75%,
    then a random 60% of its movable pages given back."""
    if kernel not in _RELEASED:
        m = vm.Machine(boot_memory=256 * vm.MiB, kernel=kernel, seed=5,
                       auto_online_blocks="online_movable")
        m.add_virtio_mem(region_size=256 * vm.MiB, requested_size=256 * vm.MiB)
        m.settle()
        workload.fill(m, 0.75)["movable"].release(0.6)
        _RELEASED[kernel] = m
    return copy.deepcopy(_RELEASED[kernel])


@pytest.mark.parametrize("kernel", sorted(PROFILES))
@settings(max_examples=16, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(zone=st.sampled_from(["DMA32", "Movable"]), first=st.floats(0, 1),
       blocks=st.integers(1, 40))
def test_batched_isolation_equals_pageblock_by_pageblock(kernel, zone, first, blocks):
    """start_isolate_page_range() isolating runs of plain pageblocks together moves the same
    blocks to the ISOLATE lists in the same order as one pageblock at a time."""
    from vmemlab import freelist, page_isolation

    a = released(kernel)
    b = copy.deepcopy(a)
    pb = a.node.geo.pageblock_nr_pages
    z = a.zones[zone]
    span = (z.end_pfn - z.start_pfn) // pb - 1
    start = (z.start_pfn + pb - 1) // pb * pb + int(first * (span - 1)) * pb
    end = min(start + blocks * pb, z.end_pfn // pb * pb)
    rc_a = start_isolate_page_range(a.node, start, end)
    saved = page_isolation._ISOLATE_BATCH, freelist._MOVE_BATCH
    page_isolation._ISOLATE_BATCH = freelist._MOVE_BATCH = 10**9
    try:
        rc_b = start_isolate_page_range(b.node, start, end)
    finally:
        page_isolation._ISOLATE_BATCH, freelist._MOVE_BATCH = saved
    assert rc_a == rc_b
    assert full_state(a) == full_state(b)


def memmap_state(m: vm.Machine) -> dict:
    """What the allocator keeps outside its lists (reading it leaves the lists alone)."""
    mm = m.node.mm
    return {"state": mm.state.tobytes(), "order": mm.order.tobytes(), "kind": mm.kind.tobytes(),
            "owner": mm.owner.tobytes(), "pb_mt": mm.pb_mt.tobytes(),
            "free": [z.nr_free_pages for z in m.node.zones],
            "kinds": [z.nr_kind.tolist() for z in m.node.zones]}


STEPS = st.lists(st.tuples(st.sampled_from(["bulk", "bulk", "single", "free", "free_bulk"]),
                           st.integers(0, 2), st.integers(1, 40), st.integers(0, 10**6)),
                 max_size=25)


@pytest.mark.parametrize("kernel", sorted(PROFILES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS)
def test_bulk_allocations_interleaved_with_other_calls_equal_single_calls(kernel, steps):
    """Bulk allocations leave the rest of a split block aside between calls; single
    allocations and frees in between see exactly what page-by-page allocation leaves."""
    a = teaching(kernel, min_free_kbytes=0)
    b = copy.deepcopy(a)
    held: list[int] = []
    for op, gfp, n, seed in steps:
        if op == "bulk":
            owner = a.node.new_owner(PageKind.ANON, "bulk").id
            b.node.new_owner(PageKind.ANON, "bulk")
            got = alloc_pages_bulk(a.node, GFPS[gfp], n, None, owner).tolist()
            loop = []
            for _ in range(n):
                pfn = alloc_pages(b.node, 0, GFPS[gfp], None, owner)
                if pfn is None:
                    break
                loop.append(pfn)
            assert got == loop
            held += got
        elif op == "single":
            order = n % 3
            pa, pb = a.alloc_pages(order, GFPS[gfp]), b.alloc_pages(order, GFPS[gfp])
            assert pa == pb
            if pa is not None:
                a.free_pages(pa, order)
                b.free_pages(pb, order)
        elif held:
            pick = sorted(np.random.default_rng(seed).choice(held, size=min(n, len(held)),
                                                             replace=False).tolist())
            held = [p for p in held if p not in set(pick)]
            if op == "free":
                for pfn in pick:
                    free_block(a.node, pfn, 0)
            else:
                free_pages_bulk(a.node, np.array(pick, dtype=np.int64))
            for pfn in pick:
                free_block(b.node, pfn, 0)
        assert memmap_state(a) == memmap_state(b)
    assert full_state(a) == full_state(b)
    a.validate()


@pytest.mark.parametrize("kernel", sorted(PROFILES))
@pytest.mark.parametrize("size", ["256M", "3G"])
def test_boot_frees_memory_as_block_by_block(kernel, size):
    """memblock_free_all() through free_blocks_bulk() leaves what free_pages_ok() per block does."""
    batch = vm.Machine(boot_memory=size, kernel=kernel)
    with rebuild_min(10**9):
        loop = vm.Machine(boot_memory=size, kernel=kernel)
    assert full_state(batch) == full_state(loop)


@pytest.mark.parametrize("kernel", sorted(PROFILES))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, blocks=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 2)), max_size=30),
       to_tail=st.booleans(), pick=st.randoms(use_true_random=False))
def test_free_blocks_bulk_equals_free_pages_ok(kernel, ops, blocks, to_tail, pick):
    """Blocks of any order freed at once merge as free_pages_ok() one block at a time."""
    from vmemlab.bulk import free_blocks_bulk
    from vmemlab.page_alloc import free_pages_ok, zone_uncharge

    m = scrambled(kernel, ops, 0)
    got = [(m.alloc_pages(order, GFPS[gfp]), order) for order, gfp in blocks]
    chosen = sorted(pick.sample([b for b in got if b[0] is not None],
                                k=sum(b[0] is not None for b in got) * 2 // 3))
    a, b = m, copy.deepcopy(m)
    for mach in (a, b):
        for pfn, order in chosen:
            zone = mach.node.page_zone(pfn)
            zone_uncharge(zone, mach.node.mm.kind[pfn:pfn + (1 << order)])
            mach.node.mm.mark_free(pfn, pfn + (1 << order))
    with rebuild_min(0):
        free_blocks_bulk(a.node, [p for p, _ in chosen], [o for _, o in chosen], to_tail)
    for pfn, order in chosen:
        free_pages_ok(b.node.page_zone(pfn), pfn, order, to_tail)
    assert full_state(a) == full_state(b)


@pytest.mark.parametrize("kernel", sorted(PROFILES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, requests=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 60)),
                                  max_size=30), wmin=st.sampled_from([0, 64]))
def test_alloc_bulk_many_equals_calls_in_turn(kernel, ops, requests, wmin):
    """Many requests at once give what alloc_bulk_runs() gives called request by request,
    down to owners, fallbacks, watermarks and the first shortfall."""
    from vmemlab.bulk import alloc_bulk_many, alloc_bulk_runs

    a = scrambled(kernel, ops, wmin)
    b = copy.deepcopy(a)
    owners = lambda m: lambda: m.node.new_owner(PageKind.ANON, "request").id  # noqa: E731
    got = alloc_bulk_many(a.node, [(GFPS[g], None, n, owners(a)) for g, n in requests])
    loop = []
    for g, n in requests:
        loop.append(int(alloc_bulk_runs(b.node, GFPS[g], n, None, owners(b)())[1].sum()))
        if loop[-1] < n:
            break
    assert got == loop
    assert full_state(a) == full_state(b)
    a.validate()


def fill_both_ways(a: vm.Machine, fraction: float, mix: dict | None = None) -> None:
    """Fill ``a`` through the shared fast path and a copy one allocate() per chunk;
    assert that both end the same."""
    from vmemlab import activity

    b = copy.deepcopy(a)
    workload.fill(a, fraction, mix)
    classes = (activity.Activity, activity.AnonActivity)
    saved = [c.allocates_plainly for c in classes]
    for c in classes:
        c.allocates_plainly = lambda self: False   # one allocate() per chunk
    try:
        workload.fill(b, fraction, mix)
    finally:
        for c, plain in zip(classes, saved, strict=True):
            c.allocates_plainly = plain
    assert full_state(a) == full_state(b)
    assert a.node.log == b.node.log
    assert [(x.requested, x.shortfall, x.killed, x.vm_pages, x.owner_ids, x.task_mem())
            for x in a.activities] == \
        [(x.requested, x.shortfall, x.killed, x.vm_pages, x.owner_ids, x.task_mem())
         for x in b.activities]
    assert [(o.id, o.kind, o.name) for o in a.node.owners] == \
        [(o.id, o.kind, o.name) for o in b.node.owners]
    assert a.node.current is b.node.current is None
    a.validate()


@pytest.mark.parametrize("kernel", sorted(PROFILES))
@pytest.mark.parametrize("mix", [{"movable": 0.5, "unmovable": 0.5}, {"unmovable": 1.0}])
def test_a_fill_into_zone_movable_gives_the_pages_of_one_allocation_per_chunk(kernel, mix):
    """As below, with movable pages going to ZONE_MOVABLE (virtio-mem memory onlined
    movable) and the others to DMA32: requests of a run come from two zones."""
    a = vm.Machine(boot_memory=512 * vm.MiB, auto_online_blocks="online_movable",
                   kernel=kernel, seed=3, kernel_activity=True)
    a.add_virtio_mem(region_size=1 * vm.GiB).requested_size = 1 * vm.GiB
    a.settle()
    fill_both_ways(a, 0.5, mix)


@pytest.mark.parametrize("kernel", sorted(PROFILES))
@pytest.mark.parametrize("fraction", [0.75, 0.995, 1.0])
@pytest.mark.parametrize("background", [True, False])
def test_a_fill_gives_the_pages_of_one_allocation_per_chunk(kernel, fraction, background):
    """workload.fill() through the shared fast path equals Activity.allocate() chunk by chunk.

    A q35 guest with the kernel's background allocations and boot memory;
    filled past the low watermark (reclaim, the per-CPU lists drained) and
    into the OOM killer, which kills the filling process while it allocates.
    """
    a = vm.Machine(boot_memory=512 * vm.MiB, kernel=kernel, seed=7,
                   kernel_activity=background)
    a.run(5.0)   # the background allocates and frees on its own for a while
    fill_both_ways(a, fraction)


@pytest.mark.parametrize("kernel", sorted(PROFILES))
@pytest.mark.parametrize("held", [(10, "GFP_KERNEL"), (10, "GFP_KERNEL | __GFP_RECLAIMABLE"),
                                  (3, "GFP_HIGHUSER_MOVABLE"), (9, "GFP_KERNEL")])
@pytest.mark.parametrize("mix", [None, {"movable": 0.5, "unmovable": 0.5}])
def test_a_fill_claiming_largest_blocks_gives_one_allocation_per_chunk(kernel, held, mix):
    """A fill whose types run out of pages and claim the movable type's largest blocks
    (a run shares them out) equals one allocate() per chunk, also when another list
    would be taken first: an unmovable or reclaimable block of the largest order
    (searched before the movable list), a movable block of a smaller order (the
    movable type's own pages before its largest blocks), a pageblock split for
    unmovable pages."""
    order, gfp = held
    a = vm.Machine(boot_memory=1 * vm.GiB, kernel=kernel, seed=5)
    workload.fill(a, 0.3)          # each type is down to the rest of a claimed block
    pfns = [a.alloc_pages(order, gfp) for _ in range(3)]
    a.free_pages(pfns[1], order)   # a free block of that type and order, between others
    fill_both_ways(a, 0.9, mix)
    assert a.node.vm_events["pgalloc_extfrag"] > 0


@pytest.mark.parametrize("kernel", sorted(PROFILES))
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=st.floats(0, 1), pages=st.integers(1, 4096))
def test_contig_range_takes_tiled_blocks_as_the_walk_does(kernel, first, pages):
    """alloc_contig_range() taking the free blocks at once leaves what the walk leaves."""
    from vmemlab.contig import ContigRange

    a = released(kernel)
    b = copy.deepcopy(a)
    z = a.zones["Movable"]
    start = z.start_pfn + int(first * (z.end_pfn - z.start_pfn - pages))
    rc_a = a.alloc_contig_range(start, start + pages)
    saved = ContigRange._take_tiled
    ContigRange._take_tiled = lambda self: False
    try:
        rc_b = b.alloc_contig_range(start, start + pages)
    finally:
        ContigRange._take_tiled = saved
    assert rc_a == rc_b
    assert full_state(a) == full_state(b)
    a.validate()
