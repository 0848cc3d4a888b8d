"""virtio-balloon: inflate, deflate, compaction, and what it does to host huge pages."""

from __future__ import annotations

import numpy as np

import vmemlab as vm
from vmemlab.constants import PageKind, PageState

from .conftest import teaching


def test_inflate_and_deflate_change_memtotal():
    m = vm.Machine(boot_memory=2 * vm.GiB)
    total = dict(m.proc.meminfo_rows())["MemTotal"]
    b = m.add_virtio_balloon()
    b.set_memory(1536 * vm.MiB)
    m.settle()
    assert b.actual == 512 * vm.MiB >> 12
    assert b.info() == "balloon: actual=1536\n"
    assert total - dict(m.proc.meminfo_rows())["MemTotal"] == 512 * 1024
    b.set_memory(2 * vm.GiB)
    m.settle()
    assert b.actual == 0 and dict(m.proc.meminfo_rows())["MemTotal"] == total
    m.validate()


def test_out_of_puff_sleeps_and_retries():
    m = teaching(min_free_kbytes=0)
    m.activity("kernel", size=200 * 4096)
    b = m.add_virtio_balloon()
    b.set_num_pages(100)
    m.run(1.0)
    assert b.actual == 56 and b.out_of_puff >= 2
    assert "Out of puff! Can't get 1 pages" in m.dmesg()
    m.activities[0].release()
    m.run(1.0)
    assert b.actual == 100
    m.validate()


def test_settle_returns_while_out_of_puff_and_run_keeps_retrying():
    m = teaching(min_free_kbytes=0)
    m.activity("kernel", size=200 * 4096)
    b = m.add_virtio_balloon()
    b.set_num_pages(100)
    assert m.settle() < 0.01                   # stuck: only the 200 ms sleep is pending
    assert b.actual == 56 and b.out_of_puff == 1
    assert m.next_event == m.now + 0.2
    m.run(0.5)
    assert b.out_of_puff == 3                  # retried at 0.2 s and 0.4 s


def test_balloon_compaction_lets_alloc_contig_range_move_balloon_pages(teach):
    b = teach.add_virtio_balloon()
    b.set_num_pages(64)
    teach.settle()
    first = min(b.pages)
    lo = first & ~7
    c = teach.contig_range(lo, lo + 8)
    assert c.run() == 0
    assert b.actual == 64 and all(not lo <= p < lo + 8 for p in b.pages)
    kinds = teach.node.mm.kind[np.array(b.pages)]
    assert (kinds == PageKind.BALLOON).all()
    assert (teach.node.mm.state[np.array(b.pages)] == PageState.PAGE_OFFLINE).all()
    teach.validate()


def test_without_compaction_balloon_pages_are_unmovable(teach):
    b = teach.add_virtio_balloon(compaction=False)
    b.set_num_pages(16)
    teach.settle()
    lo = min(b.pages) & ~7
    assert teach.alloc_contig_range(lo, lo + 8) == vm.EBUSY
    teach.validate()


def test_reboot_empties_the_balloon_and_the_guest_inflates_again():
    m = vm.Machine(boot_memory=2 * vm.GiB)
    b = m.add_virtio_balloon()
    b.set_memory(1 * vm.GiB)
    m.settle()
    m.reboot()
    assert m.balloon.actual == 0
    m.settle()
    assert m.balloon.actual == vm.GiB >> 12
    m.validate()


def test_balloon_splits_host_huge_pages_virtio_mem_does_not():
    """The same fragmented guest gives back 512 MiB two ways."""
    results = {}
    for how in ("balloon", "virtio-mem"):
        m = vm.Machine(boot_memory=2 * vm.GiB, auto_online_blocks="online_movable", seed=5)
        dev = m.add_virtio_mem(region_size=2 * vm.GiB, requested_size=2 * vm.GiB)
        m.settle()
        cache = m.activity("page_cache", size=3 * vm.GiB)   # fills most of the guest,
        cache.release(fraction=0.5)                          # then half is dropped at random
        if how == "balloon":
            b = m.add_virtio_balloon()
            b.set_num_pages(512 * vm.MiB >> 12)
        else:
            dev.requested_size = 1536 * vm.MiB
        m.settle()
        m.validate()
        results[how] = m.host_thp_report()
    assert results["virtio-mem"].split == 0
    assert results["virtio-mem"].returned == 256
    assert results["balloon"].split > 100
    assert results["balloon"].returned < 256
