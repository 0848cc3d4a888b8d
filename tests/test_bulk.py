"""Bulk paths must equal the loop of single calls they replace, exactly."""

from __future__ import annotations

import copy

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import vmemlab as vm
from vmemlab import bulk
from vmemlab.bulk import alloc_pages_bulk, free_pages_bulk
from vmemlab.constants import MigrateType, PageKind
from vmemlab.page_alloc import alloc_pages, free_block
from vmemlab.page_isolation import start_isolate_page_range
from vmemlab.profiles import PROFILES

from .conftest import teaching

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
    saved, bulk._REBUILD_MIN = bulk._REBUILD_MIN, 1  # rebuild even a single page's block
    try:
        free_pages_bulk(a.node, np.array(chosen, dtype=np.int64))
    finally:
        bulk._REBUILD_MIN = saved
    for pfn in chosen:
        free_block(b.node, pfn, 0)
    assert machine_state(a, isolate_order=False) == machine_state(b, isolate_order=False)
