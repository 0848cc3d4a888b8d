"""Kernel profiles: each is one upstream release, and each difference is pinned here.

Every test builds a small machine on which two neighbouring releases give
different, exact results: 5.8 vs 6.1 (isolation granularity), 6.1 vs 6.12
(freelist hygiene in the fallback, ZONE_MOVABLE watermarks, the OOM table),
6.12 vs 6.15 (__rmqueue_claim/__rmqueue_steal, the contig gfp check).
"""

from __future__ import annotations

import dataclasses
import pickle

import pytest

import vmemlab as vm
from vmemlab.constants import MigrateType as MT
from vmemlab.profiles import (
    DEFAULT_KERNEL,
    PROFILES,
    KernelProfile,
    behaviour_fields,
    history,
    profile,
    profile_table,
)

from .conftest import teaching


def test_the_profiles_are_upstream_releases_and_6_12_is_the_default():
    assert list(PROFILES) == ["5.8", "6.1", "6.12", "6.15"]
    assert DEFAULT_KERNEL == "6.12" and vm.Machine(boot_memory="256M").profile.name == "6.12"
    with pytest.raises(ValueError, match=r"kernel='6.13' is not one of \['5.8', '6.1', '6.12', "
                                         r"'6.15'\]"):
        profile("6.13")


def test_every_behaviour_field_cites_its_release():
    names = behaviour_fields()
    assert len(names) == len(dataclasses.fields(KernelProfile)) - 1   # all but name
    for name in names:
        subsystem, release, change = history(name)
        assert subsystem and change and release.replace(".", "").isdigit()
    assert history("fallback")[1] == "6.15" and "c2f6ea38fc1b" in history("fallback")[2]
    assert history("movable_wmark")[1] == "6.5"
    with pytest.raises(ValueError, match="name='nope'"):
        history("nope")


def test_neighbouring_releases_differ_exactly_where_the_fields_say():
    def diff(a: str, b: str) -> set[str]:
        return {n for n in behaviour_fields()
                if getattr(PROFILES[a], n) != getattr(PROFILES[b], n)}

    assert diff("6.12", "6.15") == {"fallback", "contig_gfp_check"}
    assert diff("6.1", "6.12") == {"freelist_hygiene", "movable_wmark",
                                   "retry_unplugged_removal", "oom_rss_columns"}
    assert "contig_align" in diff("5.8", "6.1") and "fallback" not in diff("5.8", "6.1")


def test_profile_table_lists_every_release_and_field():
    lines = profile_table().splitlines()
    assert lines[0].split() == ["field", "5.8", "6.1", "6.12", "6.15", "since"]
    assert "fallback                    largest_first largest_first largest_first   " \
           "claim_steal   6.15" in lines
    assert sum(line.startswith("movable_wmark") for line in lines) == 1


def test_profiles_pickle_by_name_and_old_pickles_load():
    for p in PROFILES.values():
        assert pickle.loads(pickle.dumps(p)) is p
    old = object.__new__(KernelProfile)     # a profile pickled before a field existed
    old.__setstate__({"name": "6.12", "fallback": "claim_steal"})
    assert old.fallback == "claim_steal" and old.movable_wmark == "capped"


# -- the fallback: 5.8 and 6.1 vs 6.12 vs 6.15 -------------------------------------------
def _fragmented(kernel: str) -> vm.Machine:
    """All 256 pages movable and in use, then pfns 2-3 (pageblock 0) and 9 (pageblock 1) freed.

    Each free block is too small to claim its pageblock for an unmovable
    request (2 and 1 free pages of 8, the rest movable): only the fallback's
    choice of block differs.
    """
    m = teaching(kernel)
    pfns = [m.alloc_pages(0, "GFP_HIGHUSER_MOVABLE") for _ in range(256)]
    assert pfns == list(range(256))
    for pfn in (2, 3, 9):
        m.free_pages(pfn, 0)
    return m


def free_list(m: vm.Machine, order: int, mt: MT) -> list[int]:
    return list(m.zone("Normal").free_area[order].free_list[mt])


@pytest.mark.parametrize("kernel", ["5.8", "6.1"])
def test_before_6_10_the_largest_buddy_moves_to_the_requesters_list(kernel):
    # __rmqueue_fallback() takes the order-1 block at 2; steal_suitable_fallback()
    # moves it to the Unmovable list (pageblock 0 stays Movable), __rmqueue_smallest()
    # splits it: pfn 2 for the request, pfn 3 left on the Unmovable list.
    m = _fragmented(kernel)
    assert m.alloc_pages(0, "GFP_KERNEL") == 2
    assert free_list(m, 0, MT.UNMOVABLE) == [3] and free_list(m, 0, MT.MOVABLE) == [9]
    assert MT(int(m.node.mm.pb_mt[0])) == MT.MOVABLE
    m.validate()


def test_6_12_takes_the_request_from_the_largest_buddy_on_its_own_type():
    # Freelist hygiene (6.10): the claim fails, so only the request is split off
    # the biggest buddy; pfn 3 stays on the Movable list, in front of 9.
    m = _fragmented("6.12")
    assert m.alloc_pages(0, "GFP_KERNEL") == 2
    assert free_list(m, 0, MT.UNMOVABLE) == [] and free_list(m, 0, MT.MOVABLE) == [3, 9]
    m.validate()


def test_6_15_claims_largest_first_but_steals_the_smallest_block():
    # __rmqueue_claim() fails on both blocks; __rmqueue_steal() takes the single
    # page at 9 and leaves the order-1 block at 2 whole.
    m = _fragmented("6.15")
    assert m.alloc_pages(0, "GFP_KERNEL") == 9
    assert free_list(m, 1, MT.MOVABLE) == [2] and free_list(m, 0, MT.MOVABLE) == []
    m.validate()


@pytest.mark.parametrize("kernel", list(PROFILES))
def test_a_pageblock_sized_buddy_is_claimed_whole_by_every_release(kernel):
    m = teaching(kernel)
    assert m.alloc_pages(0, "GFP_KERNEL") == 0
    assert [MT(int(t)) for t in m.node.mm.pb_mt[:3]] == [MT.UNMOVABLE, MT.UNMOVABLE, MT.MOVABLE]
    assert m.node.vm_events["pgalloc_extfrag"] == 1


# -- ZONE_MOVABLE watermarks: 6.1 vs 6.12 ---------------------------------------------------
@pytest.mark.parametrize("kernel,normal,movable", [("6.1", 10, 5), ("6.12", 16, 32)])
def test_zone_movable_min_watermark(kernel, normal, movable):
    # min_free_kbytes 64 = 16 pages.  6.1 splits them by managed pages over both
    # zones (256 : 128); 6.5+ gives Normal all 16 and Movable clamp(128/1024, 32, 128).
    m = teaching(kernel, min_free_kbytes=64, auto_online_blocks="online_movable")
    m.add_virtio_mem(region_size=256 * 4096, requested_size=128 * 4096)
    m.settle()
    assert m.zones["Movable"].managed == 128
    assert (m.zones["Normal"].min, m.zones["Movable"].min) == (normal, movable)


# -- alloc_contig_range: 5.8 vs 6.1, and 6.1's boundary split ------------------------------
def test_isolation_granularity_5_8_vs_6_1():
    # An unmovable page in pageblock 0: 5.8 isolates the whole 16-page max-order
    # block around [8, 16) and fails; 6.1 isolates pageblock 1 only.
    for kernel, rc in (("5.8", vm.EBUSY), ("6.1", 0)):
        m = teaching(kernel)
        assert m.alloc_pages(0, "GFP_KERNEL") == 0
        assert m.alloc_contig_range(8, 16) == rc
        m.validate()


@pytest.mark.parametrize("kernel", ["6.1", "6.12"])
def test_a_free_buddy_across_the_range_start_is_split_at_isolation(kernel):
    # The free order-4 block at 0 straddles pfn 8.  6.1's isolate_single_pageblock()
    # splits it at the boundary; 6.12's move_freepages_block_isolate() splits it
    # too: the Isolate list gets 8, the Movable list keeps 0.
    m = teaching(kernel)
    c = m.contig_range(8, 16)
    c.step()
    assert (free_list(m, 3, MT.ISOLATE), free_list(m, 3, MT.MOVABLE)[:1]) == ([8], [0])
    c.run()
    assert c.rc == 0 and m.alloc_contig_range(24, 32) == 0
    m.validate()


def test_the_cli_and_scenario_files_take_every_release(capsys):
    from vmemlab.cli import main
    from vmemlab.scenario import parse_scenario

    for kernel in PROFILES:
        assert main(["buddy", "-k", kernel, "-A", "+0:U", "-c"]) == 0
        sc = parse_scenario(f'[machine]\ngeometry = "teaching"\nkernel = {kernel}\n', "t.toml")
        assert sc.machine.kernel == kernel          # unquoted 6.1 / 6.15 read as names
    out = capsys.readouterr().out
    assert "ptr[0] = alloc_pages(order=0, GFP_KERNEL) returned 0x0" in out
