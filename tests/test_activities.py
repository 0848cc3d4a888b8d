"""Activities as the lab's guests make them: tmpfs files, sized pipes, drop_caches,
and pgmigrate_fail counted per migrate_pages() call."""

from __future__ import annotations

import pytest

import vmemlab as vm
from vmemlab.activity import round_pipe_size
from vmemlab.constants import MigrateType as MT
from vmemlab.constants import PageKind
from vmemlab.scenario import ScenarioError, parse_scenario
from vmemlab.scenario_run import run_scenario

from .conftest import teaching


def kinds(m: vm.Machine, pfns) -> list[str]:
    return [PageKind(int(k)).name for k in m.node.mm.kind[pfns]]


# -- files: tmpfs (shmem_inode_cache) or ext4 -------------------------------------------
def test_tmpfs_files_take_a_dentry_and_an_unreclaimable_shmem_inode():
    # dentry: reclaimable order-0 slab, claiming pageblocks 0-1 Reclaimable;
    # shmem_inode_cache: 21 per order-2 slab, GFP_KERNEL: pageblocks 2-3 Unmovable.
    m = teaching()
    files = m.activity("files", count=21)
    assert files.pages().tolist() == [0, 16, 17, 18, 19]
    assert kinds(m, files.pages()) == ["SLAB_RECLAIMABLE"] + ["SLAB"] * 4
    assert [MT(int(t)) for t in m.node.mm.pb_mt[:4]] == [MT.RECLAIMABLE, MT.RECLAIMABLE,
                                                        MT.UNMOVABLE, MT.UNMOVABLE]
    assert "shmem_inode_cache" in m.slab_caches and "ext4_inode_cache" not in m.slab_caches
    m.validate()


def test_ext4_files_take_reclaimable_ext4_inodes():
    m = teaching()
    files = m.activity("files", count=21, fs="ext4")        # 14 ext4 inodes per slab
    assert files.pages().tolist() == [0, 4, 5, 6, 7, 8, 9, 10, 11]
    assert set(kinds(m, files.pages())) == {"SLAB_RECLAIMABLE"}
    assert repr(files) == "<Activity 'files#0': files on ext4, 21 files in 36 KiB of slab>"
    with pytest.raises(ValueError, match="fs='xfs' is not one of"):
        m.activity("files", count=1, fs="xfs")


# -- pipes of a chosen size ------------------------------------------------------------------
def test_pipe_size_rounds_like_f_setpipe_sz():
    assert [round_pipe_size(n) for n in (1, 4096, 4097, 65536, 100_000, "1M")] == \
        [1, 1, 2, 16, 32, 256]
    for bad, match in ((2 << 20, r"rounds to 2097152 bytes, more than pipe-max-size "
                                 r"\(1048576\): F_SETPIPE_SZ fails with -EPERM"),
                       (0, "must be a positive size")):
        with pytest.raises(ValueError, match=match):
            round_pipe_size(bad)


def test_pipes_hold_their_buffer_size_and_free_whole_pipes():
    m = teaching()
    pipes = m.activity("pipes", count=3, pipe_size=128 * 1024)     # 32 pages each
    assert len(pipes.pages()) == 96 and pipes.unit_pages == 32 and pipes.is_process
    assert pipes.release(fraction=1 / 3) == 32 * 4096
    default = m.activity("pipes", count=2)
    assert len(default.pages()) == 32
    with pytest.raises(ValueError, match="pipe_size=65536 is for pipes, not anon"):
        m.activity("anon", size=4096, pipe_size=65536)
    with pytest.raises(ValueError, match="pipe-max-size"):
        m.activity("pipes", count=1, pipe_size="2M")
    assert len(m.activities) == 2
    m.validate()


def test_background_pipes_use_the_pipe_size():
    m = teaching()
    act = m.start_activity("pipes", rate=64 * 4096, pipe_size=8 * 4096, limit=64 * 4096)
    m.run(3)
    assert len(act.pages()) == 64 and act.unit_pages == 8


# -- drop_caches ---------------------------------------------------------------------------
def _caches() -> tuple[vm.Machine, dict]:
    m = teaching()
    acts = {"pc": m.activity("page_cache", size=32 * 4096),
            "tmpfs": m.activity("tmpfs", size=16 * 4096),
            "ramfs": m.activity("ramfs", size=16 * 4096),
            "ext4": m.activity("files", count=42, fs="ext4"),
            "tmpfs_files": m.activity("files", count=42)}
    return m, acts


def test_drop_caches_1_frees_clean_page_cache_only():
    m, a = _caches()
    free = m.zones["Normal"].free
    m.drop_caches(1)
    assert m.zones["Normal"].free - free == 32
    assert a["pc"].resident == 0 and a["tmpfs"].resident == a["ramfs"].resident == 16 * 4096
    assert m.node.vm_events["drop_pagecache"] == 1 and "drop_slab" not in m.node.vm_events
    assert m.dmesg().splitlines()[-1].endswith("] bash (1000): drop_caches: 1")
    m.validate()


def test_drop_caches_2_frees_unused_ext4_dentries_and_inodes_not_tmpfs_files():
    m, a = _caches()
    free = m.zones["Normal"].free
    m.drop_caches(2)
    # ext4: 2 dentry pages + 2 of 3 order-2 inode slabs freed; the third is the cache's
    # CPU slab, which SLUB keeps (frozen) even when empty; tmpfs files keep theirs
    assert m.zones["Normal"].free - free == 2 + 2 * 4
    inodes = m.slab_caches["ext4_inode_cache"]
    assert inodes.nr_slabs == 1 and inodes.nr_objects == 0
    assert (a["ext4"].count, a["tmpfs_files"].count) == (0, 42)
    assert len(a["tmpfs_files"].pages()) == 10 and a["pc"].resident == 32 * 4096
    assert m.node.vm_events["drop_slab"] == 1
    m.validate()


def test_drop_caches_through_proc_sys_vm():
    m, a = _caches()
    assert m.sysfs.write("/proc/sys/vm/drop_caches", "3\n") == 0
    assert a["pc"].resident == 0 and a["ext4"].count == 0
    assert [m.sysfs.write("/proc/sys/vm/drop_caches", v) for v in ("0", "5", "x")] == \
        [vm.EINVAL] * 3
    assert m.sysfs.write("/proc/sys/vm/drop_caches", "4") == 0    # quiet from now on
    m.drop_caches(1)
    assert [line.split("] ")[1] for line in m.dmesg().splitlines()[-2:]] == \
        ["bash (1000): drop_caches: 3", "bash (1000): drop_caches: 4"]
    for bad in (0, 5, "3", True):
        with pytest.raises(ValueError, match="must be an int from 1 to 4"):
            m.drop_caches(bad)


SCENARIO = """title = "t"
[machine]
geometry = "teaching"
boot_memory = "1M"
[[steps]]
do = "activity"
kind = "page_cache"
size = "128k"
[[steps]]
do = "activity"
kind = "pipes"
count = 2
pipe_size = "32k"
[[steps]]
do = "drop_caches"
value = 1
"""


def test_scenarios_drop_caches_and_size_pipes():
    result = run_scenario(parse_scenario(SCENARIO, "t.toml"))
    assert result.steps[1].details == ["pipes: 64 KiB resident"]
    assert result.steps[2].details == ["drop_caches 1: MemFree +128 kB"]
    assert result.steps[2].what == "echo 1 > /proc/sys/vm/drop_caches"


@pytest.mark.parametrize("tail,message", [
    ('[[steps]]\ndo = "drop_caches"\nvalue = 5\n', "value: expected a whole number 1..4"),
    ('[[steps]]\ndo = "activity"\nkind = "pipes"\ncount = 1\npipe_size = "2M"\n',
     "pipe_size: pipe_size=2097152 rounds to 2097152 bytes, more than pipe-max-size"),
    ('[[steps]]\ndo = "activity"\nkind = "slab"\nsize = "4k"\noom_score_adj = 100\n',
     "oom_score_adj: slab is not a process"),
    ('[[steps]]\ndo = "start"\nkind = "anon"\nrate = "4k"\nrepeat = true\n',
     "repeat: repeat needs a limit"),
])
def test_bad_new_scenario_keys_say_where(tail, message):
    with pytest.raises(ScenarioError, match=message):
        parse_scenario('[machine]\ngeometry = "teaching"\n' + tail, "t.toml")


# -- pgmigrate_fail ------------------------------------------------------------------------
def test_pgmigrate_fail_counts_a_stuck_page_in_each_of_the_five_calls():
    # A ramfs page migrates never: its batch gets 5 migrate_pages() calls and
    # each counts it failed (mm/migrate.c: count_vm_events(PGMIGRATE_FAIL, ...)).
    m = teaching()
    ramfs = m.activity("ramfs", size=2 * 4096)
    cache = m.activity("page_cache", size=4 * 4096)
    assert ramfs.pages().tolist() == [0, 1] and cache.pages().tolist() == [16, 17, 18, 19]
    assert m.alloc_contig_range(0, 8) == vm.EBUSY
    assert m.node.vm_events["pgmigrate_fail"] == 2 * 5
    assert m.alloc_contig_range(16, 24) == 0             # clean cache is dropped, not failed
    assert m.node.vm_events["pgmigrate_fail"] == 10
    m.validate()
