"""Random resize timelines keep every invariant on both kernel profiles."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmemlab.profiles import PROFILES

from .conftest import teaching

SB = 32 * 1024          # teaching-geometry subblock
MB = 64 * 4096          # teaching-geometry memory block

step = st.one_of(
    st.tuples(st.just("request"), st.integers(0, 8 * MB // SB)),
    st.tuples(st.just("run"), st.sampled_from([0.0, 1.0, 60.0, 400.0])),
    st.tuples(st.just("activity"), st.sampled_from(
        ["anon", "page_cache", "slab", "files", "pin", "ramfs", "kernel"]), st.integers(1, 64)),
    st.tuples(st.just("release"), st.integers(0, 99), st.sampled_from([1.0, 0.5])),
    st.tuples(st.just("busy"), st.booleans()),
    st.tuples(st.just("online"), st.integers(0, 99), st.sampled_from(
        ["online", "online_kernel", "online_movable", "offline"])),
    st.tuples(st.just("reboot"),),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, max_size=25), kernel=st.sampled_from(sorted(PROFILES)),
       auto_online=st.sampled_from(["online", "online_movable", "offline"]),
       seed=st.integers(0, 3))
def test_random_timelines_keep_invariants(steps, kernel, auto_online, seed):
    m = teaching(kernel, auto_online_blocks=auto_online, seed=seed)
    dev = m.add_virtio_mem(region_size=8 * MB)
    for s in steps:
        if s[0] == "request":
            dev.requested_size = s[1] * SB - s[1] * SB % dev.block_size
        elif s[0] == "run":
            m.run(s[1])
            m.settle()
        elif s[0] == "activity":
            if s[1] == "files":
                m.activity("files", count=s[2] * 4)
            else:
                m.activity(s[1], size=s[2] * 4096)
        elif s[0] == "release" and m.activities:
            m.activities[s[1] % len(m.activities)].release(s[2])
        elif s[0] == "busy":
            dev.migrating = s[1]
        elif s[0] == "online":
            blocks = [b for b in m.memory_blocks if b.group == "vmem0"]
            if blocks:
                b = blocks[s[1] % len(blocks)]
                if s[2] == "offline":
                    m.offline_memory_block(b.id, timeout=1)
                else:
                    m.online_memory_block(b.id, s[2])
        elif s[0] == "reboot":
            m.reboot()
        m.validate()
        assert dev.size == int(dev.bitmap.sum()) * dev.block_size
        assert dev.size <= dev.usable_region_size <= dev.region_size
        if not dev.driver.broken and dev.driver.mode is not None:
            assert dev.driver.plugged_size == dev.size
