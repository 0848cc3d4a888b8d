"""The OOM killer: who is chosen, what is freed, and the kernel's exact log lines."""

from __future__ import annotations

import pytest

import vmemlab as vm
from vmemlab.oom import Ratelimit, TaskMem, oom_badness
from vmemlab.page_alloc import AllocRequest
from vmemlab.scenario import load_scenario
from vmemlab.scenario_run import run_scenario

from .conftest import teaching
from .test_scenarios import ROOT


def log(m: vm.Machine) -> list[str]:
    """The runtime kernel log (after boot), without timestamps."""
    lines = [line.split("] ", 1)[1] for line in m.dmesg().splitlines()]
    return lines[lines.index(next(x for x in lines if x.startswith("Memory: "))) + 1:]


def test_a_tmpfs_writer_out_of_memory_kills_the_biggest_process():
    m = teaching()
    hog = m.activity("anon", size=200 * 4096, name="hog")
    small = m.activity("anon", size=20 * 4096, name="small")
    writer = m.activity("tmpfs", size=100 * 4096, name="writer")
    assert (hog.pid, small.pid, m.shell_pid) == (1001, 1002, 1000)
    assert hog.killed and not small.killed and writer.shortfall == 0
    assert len(hog.pages()) == 0 and len(writer.pages()) == 100
    assert m.node.vm_events["oom_kill"] == 1
    assert log(m) == [
        "writer invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE), order=0, "
        "oom_score_adj=0",
        "Tasks state (memory values in pages):",
        "[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes "
        "swapents oom_score_adj name",
        "[   1001]     0  1001      200      200      200        0         0     4096        0"
        "             0 hog",
        "[   1002]     0  1002       20       20       20        0         0     4096        0"
        "             0 small",
        "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0,"
        "global_oom,task_memcg=/,task=hog,pid=1001,uid=0",
        "Out of memory: Killed process 1001 (hog) total-vm:800kB, anon-rss:800kB, "
        "file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:4kB oom_score_adj:0",
        "oom_reaper: reaped process 1001 (hog), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB",
    ]
    m.validate()


def test_before_6_8_the_task_table_has_no_rss_split_and_a_process_can_kill_itself():
    m = teaching("6.1")
    hog = m.activity("anon", size=300 * 4096, name="hog")
    assert hog.killed and hog.resident == 0 and m.zones["Normal"].free == 256
    assert log(m)[2:4] == [
        "[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name",
        "[   1001]     0  1001      300      255     4096        0             0 hog",
    ]
    assert log(m)[5].startswith("Out of memory: Killed process 1001 (hog) total-vm:1200kB, "
                                "anon-rss:1020kB,")
    assert not any("page allocation failure" in line for line in log(m))   # it is dead
    m.validate()


def test_a_killed_background_hog_stops():
    m = teaching()
    hog = m.start_activity("anon", rate=64 * 4096, name="hog")
    m.run(10)
    assert hog.killed and hog.stopped and m.node.vm_events["oom_kill"] == 1
    assert hog.allocate(8) == 0 and m.zones["Normal"].free == 256


def test_oom_score_adj_minus_1000_makes_a_process_unkillable():
    m = teaching()
    big = m.activity("anon", size=150 * 4096, name="big", oom_score_adj=-1000)
    other = m.activity("anon", size=50 * 4096, name="other")
    m.activity("ramfs", size=60 * 4096, name="writer")
    assert other.killed and not big.killed
    m.activity("ramfs", size=60 * 4096, name="writer2")       # nobody left to kill
    assert log(m)[-2:] == [
        "Out of memory and no killable processes...",
        "writer2: page allocation failure: order:0, mode:0x100cc2(GFP_HIGHUSER), nodemask=(null)",
    ]
    assert m.node.vm_events["oom_kill"] == 1
    m.validate()


def test_badness_is_rss_swap_and_page_tables_plus_adj_in_thousandths():
    task = TaskMem(7, "hog", 1000, 900, 50, 10, 8192, 5, 0)
    assert task.rss == 960 and oom_badness(task, 4_000_000) == 960 + 5 + 2
    adj = TaskMem(7, "hog", 1000, 900, 50, 10, 8192, 5, 250)
    assert oom_badness(adj, 4_000_000) == 967 + 250 * 4000
    assert oom_badness(TaskMem(7, "hog", 0, 0, 0, 0, 0, 0, -1000), 4_000_000) is None


def test_oom_score_adj_decides_between_processes():
    m = vm.Machine(boot_memory="256M", seed=0)
    big = m.activity("anon", size="64M", name="big", oom_score_adj=-500)
    small = m.activity("anon", size="16M", name="small", oom_score_adj=500)
    fill_up(m)
    m.activity("ramfs", size="4M", name="writer")
    assert small.killed and not big.killed
    assert "[   1002]     0  1002     4096     4096     4096        0         0    32768" \
           "        0           500 small" in log(m)


def fill_up(m: vm.Machine) -> None:
    """Kernel pages until nothing is left above the min watermarks (no OOM: NORETRY)."""
    while m.alloc_pages(0, "GFP_KERNEL | __GFP_NORETRY | __GFP_NOWARN") is not None:
        pass


@pytest.mark.parametrize("gfp,order", [("GFP_KERNEL | __GFP_NORETRY", 0),
                                       ("GFP_KERNEL | __GFP_RETRY_MAYFAIL", 0),
                                       ("GFP_KERNEL", 4), ("GFP_NOFS", 0), ("GFP_ATOMIC", 0),
                                       ("GFP_DMA32", 0)])
def test_allocations_that_may_not_oom_fail_instead(gfp, order):
    m = teaching()
    hog = m.activity("anon", size=240 * 4096, name="hog")
    fill_up(m)
    assert m.alloc_pages(order, gfp) is None
    assert not hog.killed and "oom_kill" not in m.node.vm_events


def test_a_kernel_allocation_ooms_as_a_kworker():
    m = teaching()
    hog = m.activity("anon", size=240 * 4096, name="hog")
    got = [m.alloc_pages(0, "GFP_KERNEL") for _ in range(20)]
    assert None not in got and hog.killed
    assert log(m)[0] == ("kworker/0:1 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, "
                         "oom_score_adj=0")


def test_bad_oom_score_adj_changes_nothing():
    m = teaching()
    for kind, adj, match in (("anon", 1001, r"oom_score_adj=1001 must be an int in "
                                             r"\[-1000, 1000\]"),
                             ("anon", True, "oom_score_adj=True"),
                             ("slab", 5, "slab is not one")):
        with pytest.raises(ValueError, match=match):
            m.activity(kind, size=4096, oom_score_adj=adj)
    assert m.activities == [] and m.zones["Normal"].free == 256
    assert m.activity("anon", size=4096).pid == 1001


def test_the_oom_header_is_ratelimited_like_the_kernels_oom_rs():
    rs = Ratelimit(5.0, 10)
    assert [rs(0.0) for _ in range(11)] == [True] * 10 + [False]
    assert rs(4.9) is False and rs(5.0) is True


def test_may_oom_follows_the_slowpath_rules():
    from vmemlab.oom import oom_may_kill

    node = teaching().node
    assert oom_may_kill(AllocRequest(node, 3, "GFP_KERNEL", None))
    assert not oom_may_kill(AllocRequest(node, 4, "GFP_KERNEL", None))


@pytest.mark.parametrize("kernel", ["6.1", "6.12", "6.15"])    # 5.8 never unplugs Movable
def test_scenario_15_the_hog_is_killed_and_the_next_retry_reaches_the_target(kernel):
    result = run_scenario(load_scenario(ROOT / "scenarios/15_oom_kills_the_hog.toml",
                                        {"machine.kernel": kernel}))
    assert result.failures == []
    resize, oom, retry = result.steps[3], result.steps[4], result.steps[5]
    assert resize.devices[0].last_rc == vm.ENOMEM and resize.devices[0].size > 0
    assert oom.dmesg[0].endswith("hog invoked oom-killer: gfp_mask=0x100cca"
                                 "(GFP_HIGHUSER_MOVABLE), order=0, oom_score_adj=0")
    assert any("Out of memory: Killed process 1001 (hog)" in line for line in oom.dmesg)
    assert [round(r.t - resize.t_start) for r in retry.retries] == [50]
    assert retry.retries[0].rc == 0 and retry.devices[0].size == 0
    hog = result.machine.activities[0]
    assert hog.killed and result.machine.node.vm_events["oom_kill"] == 1
    result.machine.validate()
