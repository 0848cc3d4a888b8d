"""Random operation sequences keep every invariant, on both kernel profiles."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmemlab.profiles import PROFILES

from .conftest import teaching

KINDS = ["anon", "page_cache", "tmpfs", "ramfs", "pipes", "page_tables", "slab", "files"]
GFPS = ["GFP_HIGHUSER_MOVABLE", "GFP_KERNEL", "GFP_KERNEL | __GFP_RECLAIMABLE", "GFP_ATOMIC"]

op = st.one_of(
    st.tuples(st.just("alloc"), st.integers(0, 4), st.sampled_from(GFPS)),
    st.tuples(st.just("free"), st.integers(0, 10_000)),
    st.tuples(st.just("bulk"), st.integers(0, 64), st.sampled_from(GFPS)),
    st.tuples(st.just("activity"), st.sampled_from(KINDS), st.integers(1, 48)),
    st.tuples(st.just("release"), st.integers(0, 10_000), st.sampled_from([1.0, 0.5, 15 / 16])),
    st.tuples(st.just("contig"), st.integers(0, 255), st.integers(1, 40)),
    st.tuples(st.just("contig_free"), st.integers(0, 10_000)),
    st.tuples(st.just("pin"), st.integers(1, 16)),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, max_size=40), kernel=st.sampled_from(sorted(PROFILES)),
       wmin=st.sampled_from([0, 32]), seed=st.integers(0, 3))
def test_random_sequences_keep_invariants(ops, kernel, wmin, seed):
    m = teaching(kernel, min_free_kbytes=wmin, seed=seed)
    total = m.zone("Normal").managed_pages
    held: list[tuple[int, int]] = []
    contig: list[tuple[int, int]] = []
    for o in ops:
        if o[0] == "alloc":
            pfn = m.alloc_pages(o[1], o[2])
            if pfn is not None:
                held.append((pfn, o[1]))
        elif o[0] == "free" and held:
            pfn, order = held.pop(o[1] % len(held))
            m.free_pages(pfn, order)
        elif o[0] == "bulk":
            m.alloc_pages_bulk(o[1], o[2])
        elif o[0] == "activity":
            kind, n = o[1], o[2]
            if kind == "files":
                m.activity("files", count=n * 8)
            elif kind == "pipes":
                m.activity("pipes", count=max(1, n // 16))
            else:
                m.activity(kind, size=n * 4096)
        elif o[0] == "release" and m.activities:
            m.activities[o[1] % len(m.activities)].release(o[2])
        elif o[0] == "contig":
            start, n = o[1], min(o[2], 256 - o[1])
            if m.alloc_contig_range(start, start + n) == 0:
                contig.append((start, n))
        elif o[0] == "contig_free" and contig:
            start, n = contig.pop(o[1] % len(contig))
            assert m.free_contig_range(start, n) == 0
        elif o[0] == "pin":
            m.activity("pin", size=o[1] * 4096)
        m.validate()
        z = m.zone("Normal")
        used = int(z.nr_kind.sum())
        assert z.nr_free_pages + used == total        # no page lost or duplicated


hp_op = st.one_of(
    st.tuples(st.just("dimm"), st.integers(1, 3), st.sampled_from(
        ["offline", "online", "online_kernel", "online_movable"])),
    st.tuples(st.just("online"), st.integers(0, 99), st.sampled_from(
        ["online", "online_kernel", "online_movable"])),
    st.tuples(st.just("offline"), st.integers(0, 99)),
    st.tuples(st.just("remove"), st.integers(0, 99)),
    st.tuples(st.just("activity"), st.sampled_from(KINDS), st.integers(1, 64)),
    st.tuples(st.just("release"), st.integers(0, 99), st.sampled_from([1.0, 0.5])),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(hp_op, max_size=30), kernel=st.sampled_from(sorted(PROFILES)),
       policy=st.sampled_from(["contig-zones", "auto-movable"]))
def test_random_hotplug_sequences_keep_invariants(ops, kernel, policy):
    if kernel == "5.8" and policy == "auto-movable":
        policy = "contig-zones"           # auto-movable arrived in 5.15
    m = teaching(kernel, online_policy=policy)
    for o in ops:
        blocks = [b for b in m.memory_blocks if b.group]
        if o[0] == "dimm":
            m.auto_online_blocks = o[2]
            m.add_dimm(o[1] * 64 * 4096)
        elif o[0] == "online" and blocks:
            m.online_memory_block(blocks[o[1] % len(blocks)].id, o[2])
        elif o[0] == "offline" and blocks:
            m.offline_memory_block(blocks[o[1] % len(blocks)].id, timeout=1)
        elif o[0] == "remove" and m.dimms:
            d = m.dimms[o[1] % len(m.dimms)]
            m.hotplug.offline_and_remove_memory(d.addr, d.size, timeout=1)
        elif o[0] == "activity":
            kind, n = o[1], o[2]
            if kind == "files":
                m.activity("files", count=n * 4)
            elif kind == "pipes":
                m.activity("pipes", count=max(1, n // 16))
            else:
                m.activity(kind, size=n * 4096)
        elif o[0] == "release" and m.activities:
            m.activities[o[1] % len(m.activities)].release(o[2])
        m.validate()
