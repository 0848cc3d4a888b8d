"""Bad input at the Machine API: a clear ValueError naming the value, nothing changed.

Every case runs on a busy teaching machine (a virtio-mem device with
plugged memory, a balloon, activities, an alloc_pages() block and an
alloc_contig_range() range) and compares ``state_digest`` before and after
the rejected call.  The counts of cases are what docs/reliability.md states.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

import vmemlab as vm
from vmemlab.validate import state_digest
from vmemlab.workload import churn, fill

NAN, INF = math.nan, math.inf


def busy_machine() -> vm.Machine:
    """A teaching machine with something of everything (see the module docstring)."""
    m = vm.Machine(boot_memory="512k", geometry="teaching", seed=3)
    dev = m.add_virtio_mem(region_size="1M", requested_size="512k")
    m.add_virtio_balloon()
    m.settle()
    m.activity("anon", size="64k", name="anon")
    m.activity("slab", size="16k")
    m.start_activity("page_cache", rate="8k", interval=1.0, limit="32k", name="bg")
    m.run(2.0)
    m.balloon.set_memory("900k")
    m.settle()
    m.raw = m.alloc_pages(1, "GFP_KERNEL")
    m.dev = dev
    assert m.alloc_contig_range(0x40, 0x48) == 0
    m.validate()
    return m


Case = tuple[str, Callable[[vm.Machine], object], str]   # (label, call, text in the error)

ALLOC: list[Case] = [
    ("alloc_pages order=-1", lambda m: m.alloc_pages(-1), "order=-1"),
    ("alloc_pages order=5", lambda m: m.alloc_pages(5), "order=5"),
    ("alloc_pages order=True", lambda m: m.alloc_pages(True), "order=True"),
    ("alloc_pages order=1.0", lambda m: m.alloc_pages(1.0), "order=1.0"),
    ("alloc_pages order='1'", lambda m: m.alloc_pages("1"), "order='1'"),
    ("alloc_pages order=None", lambda m: m.alloc_pages(None), "order=None"),
    ("alloc_pages gfp=2**70", lambda m: m.alloc_pages(0, 2**70), "gfp="),
    ("alloc_pages gfp=-1", lambda m: m.alloc_pages(0, -1), "gfp=-1"),
    ("alloc_pages gfp=True", lambda m: m.alloc_pages(0, True), "gfp=True"),
    ("alloc_pages gfp=1.5", lambda m: m.alloc_pages(0, 1.5), "gfp=1.5"),
    ("alloc_pages gfp=''", lambda m: m.alloc_pages(0, ""), "gfp=''"),
    ("alloc_pages gfp=GFP_NOPE", lambda m: m.alloc_pages(0, "GFP_NOPE"), "GFP_NOPE"),
    ("alloc_pages gfp=DMA|DMA32", lambda m: m.alloc_pages(0, "__GFP_DMA | __GFP_DMA32"),
     "gfp="),
    ("alloc_pages kind='none'", lambda m: m.alloc_pages(0, kind="none"), "kind='none'"),
    ("alloc_pages kind='bogus'", lambda m: m.alloc_pages(0, kind="bogus"), "kind='bogus'"),
    ("alloc_pages kind=3", lambda m: m.alloc_pages(0, kind=3), "kind=3"),
    ("alloc_pages kind=True", lambda m: m.alloc_pages(0, kind=True), "kind=True"),
    ("free_pages pfn=-1", lambda m: m.free_pages(-1, 0), "pfn=-0x1"),
    ("free_pages pfn=2**40", lambda m: m.free_pages(2**40, 0), "pfn="),
    ("free_pages pfn=True", lambda m: m.free_pages(True, 0), "pfn=True"),
    ("free_pages pfn=1.0", lambda m: m.free_pages(1.0, 0), "pfn=1.0"),
    ("free_pages of a free page", lambda m: m.free_pages(0xff, 0), "pfn=0xff"),
    ("free_pages of an activity page",
     lambda m: m.free_pages(int(m.activities[0].pages()[0]), 0), "pfn="),
    ("free_pages wrong order", lambda m: m.free_pages(m.raw, 0), "order=0"),
    ("free_pages order=True", lambda m: m.free_pages(m.raw, True), "order=True"),
    ("free_pages tail pfn", lambda m: m.free_pages(m.raw + 1, 0), "pfn="),
    ("alloc_pages_bulk nan", lambda m: m.alloc_pages_bulk(NAN), "nr_pages=nan"),
    ("alloc_pages_bulk -1", lambda m: m.alloc_pages_bulk(-1), "nr_pages=-1"),
    ("alloc_pages_bulk True", lambda m: m.alloc_pages_bulk(True), "nr_pages=True"),
    ("alloc_pages_bulk 1.5", lambda m: m.alloc_pages_bulk(1.5), "nr_pages=1.5"),
    ("alloc_pages_bulk '3'", lambda m: m.alloc_pages_bulk("3"), "nr_pages='3'"),
    ("alloc_pages_bulk 2**70", lambda m: m.alloc_pages_bulk(2**70), "nr_pages="),
    ("alloc_pages_bulk gfp", lambda m: m.alloc_pages_bulk(1, "GFP_NOPE"), "GFP_NOPE"),
    ("alloc_pages_bulk kind", lambda m: m.alloc_pages_bulk(1, kind="none"), "kind='none'"),
]

ZONES: list[Case] = [
    ("zone(-1)", lambda m: m.zone(-1), "zone=-1"),
    ("zone(5)", lambda m: m.zone(5), "zone=5"),
    ("zone(True)", lambda m: m.zone(True), "zone=True"),
    ("zone(1.0)", lambda m: m.zone(1.0), "zone=1.0"),
    ("zone(None)", lambda m: m.zone(None), "zone=None"),
    ("zone('Bogus')", lambda m: m.zone("Bogus"), "zone='Bogus'"),
]

CONTIG: list[Case] = [
    ("alloc_contig_range start>=end", lambda m: m.alloc_contig_range(8, 8), "start_pfn"),
    ("alloc_contig_range end>memory", lambda m: m.alloc_contig_range(0, 2**40), "end_pfn"),
    ("alloc_contig_range start=-1", lambda m: m.alloc_contig_range(-1, 8), "start_pfn"),
    ("alloc_contig_range start=True", lambda m: m.alloc_contig_range(True, 8),
     "start_pfn=True"),
    ("alloc_contig_range end=8.0", lambda m: m.alloc_contig_range(0, 8.0), "end_pfn=8.0"),
    ("alloc_contig_range gfp", lambda m: m.alloc_contig_range(0, 8, "GFP_NOPE"), "GFP_NOPE"),
    ("alloc_contig_range gfp=-1", lambda m: m.alloc_contig_range(0, 8, -1), "gfp=-1"),
    ("alloc_contig_range fatal_signal='no'",
     lambda m: m.alloc_contig_range(0x80, 0x88, fatal_signal="no"), "fatal_signal='no'"),
    ("alloc_contig_range fatal_signal=1",
     lambda m: m.alloc_contig_range(0x80, 0x88, fatal_signal=1), "fatal_signal=1"),
    ("contig_range fatal_signal='yes'",
     lambda m: m.contig_range(0x80, 0x88, fatal_signal="yes"), "fatal_signal='yes'"),
    ("free_contig_range nr=0", lambda m: m.free_contig_range(0x40, 0), "nr_pages=0"),
    ("free_contig_range nr=-1", lambda m: m.free_contig_range(0x40, -1), "nr_pages=-1"),
    ("free_contig_range nr=True", lambda m: m.free_contig_range(0x40, True), "nr_pages=True"),
    ("free_contig_range nr=nan", lambda m: m.free_contig_range(0x40, NAN), "nr_pages=nan"),
    ("free_contig_range pfn=-1", lambda m: m.free_contig_range(-1, 8), "pfn"),
    ("free_contig_range past memory", lambda m: m.free_contig_range(0x40, 2**40), "end_pfn"),
    ("alloc_contig_pages 0", lambda m: m.alloc_contig_pages(0), "nr_pages=0"),
    ("alloc_contig_pages nan", lambda m: m.alloc_contig_pages(NAN), "nr_pages=nan"),
    ("alloc_contig_pages True", lambda m: m.alloc_contig_pages(True), "nr_pages=True"),
    ("alloc_contig_pages gfp", lambda m: m.alloc_contig_pages(8, "GFP_NOPE"), "GFP_NOPE"),
]

ACTIVITIES: list[Case] = [
    ("activity kind", lambda m: m.activity("bogus", size="4k"), "kind='bogus'"),
    ("activity kind=None", lambda m: m.activity(None, size="4k"), "kind=None"),
    ("activity size=-1", lambda m: m.activity("anon", size=-1), "size=-1"),
    ("activity size=True", lambda m: m.activity("anon", size=True), "size=True"),
    ("activity size=nan", lambda m: m.activity("anon", size=NAN), "size=nan"),
    ("activity size=1.5", lambda m: m.activity("anon", size=1.5), "size=1.5"),
    ("activity size='4x'", lambda m: m.activity("anon", size="4x"), "size='4x'"),
    ("activity size=2**70", lambda m: m.activity("anon", size=2**70), "size="),
    ("activity size and count", lambda m: m.activity("anon", size="4k", count=1), "size="),
    ("activity no size", lambda m: m.activity("anon"), "size="),
    ("activity files count=-1", lambda m: m.activity("files", count=-1), "count=-1"),
    ("activity files count=True", lambda m: m.activity("files", count=True), "count=True"),
    ("activity files count=1.5", lambda m: m.activity("files", count=1.5), "count=1.5"),
    ("activity files count=1e9", lambda m: m.activity("files", count=10**9), "count="),
    ("activity files size", lambda m: m.activity("files", size="4k"), "count="),
    ("activity pipes count=-1", lambda m: m.activity("pipes", count=-1), "count=-1"),
    ("activity pipes count=10**12", lambda m: m.activity("pipes", count=10**12), "count="),
    ("activity name=5", lambda m: m.activity("anon", size="4k", name=5), "name=5"),
    ("release fraction=nan", lambda m: m.activities[0].release(NAN), "fraction=nan"),
    ("release fraction=-0.5", lambda m: m.activities[0].release(-0.5), "fraction=-0.5"),
    ("release fraction=2", lambda m: m.activities[0].release(2), "fraction=2"),
    ("release fraction=True", lambda m: m.activities[0].release(True), "fraction=True"),
    ("release fraction='all'", lambda m: m.activities[0].release("all"), "fraction='all'"),
    ("start_activity kind=files", lambda m: m.start_activity("files", "4k"), "kind='files'"),
    ("start_activity rate=-1", lambda m: m.start_activity("anon", -1), "size=-1"),
    ("start_activity rate='x'", lambda m: m.start_activity("anon", "x"), "size='x'"),
    ("start_activity interval=0", lambda m: m.start_activity("anon", "4k", 0), "interval=0"),
    ("start_activity interval=-1", lambda m: m.start_activity("anon", "4k", -1),
     "interval=-1"),
    ("start_activity interval=inf", lambda m: m.start_activity("anon", "4k", INF),
     "interval=inf"),
    ("start_activity interval=nan", lambda m: m.start_activity("anon", "4k", NAN),
     "interval=nan"),
    ("start_activity interval=True", lambda m: m.start_activity("anon", "4k", True),
     "interval=True"),
    ("start_activity limit=-1", lambda m: m.start_activity("anon", "4k", limit=-1), "size=-1"),
    ("start_activity release_fraction=nan",
     lambda m: m.start_activity("anon", "4k", release_fraction=NAN), "release_fraction=nan"),
    ("start_activity release_fraction=2",
     lambda m: m.start_activity("anon", "4k", release_fraction=2), "release_fraction=2"),
    ("start_activity release_fraction=-1",
     lambda m: m.start_activity("anon", "4k", release_fraction=-1), "release_fraction=-1"),
    ("fill fraction=nan", lambda m: fill(m, NAN), "fraction=nan"),
    ("fill fraction=2", lambda m: fill(m, 2.0), "fraction=2.0"),
    ("fill chunk='x'", lambda m: fill(m, 0.9, chunk="x"), "size='x'"),
    ("fill chunk=0", lambda m: fill(m, 0.9, chunk=0), "chunk=0"),
    ("fill mix", lambda m: fill(m, 0.9, {"movable": NAN}), "mix="),
    ("churn lifetime=-1", lambda m: churn(m, 10, lifetime=-1), "lifetime=-1"),
    ("churn lifetime=nan", lambda m: churn(m, 10, lifetime=NAN), "lifetime=nan"),
    ("churn lifetime=inf", lambda m: churn(m, 10, lifetime=INF), "lifetime=inf"),
    ("churn steps=-1", lambda m: churn(m, -1), "steps=-1"),
    ("churn steps=1.5", lambda m: churn(m, 1.5), "steps=1.5"),
    ("churn max_order=True", lambda m: churn(m, 10, max_order=True), "max_order=True"),
    ("churn mix nan", lambda m: churn(m, 10, {"movable": NAN}), "mix="),
    ("churn mix zero", lambda m: churn(m, 10, {"movable": 0}), "mix="),
]

TIME: list[Case] = [
    ("run(-1)", lambda m: m.run(-1), "seconds=-1"),
    ("run(inf)", lambda m: m.run(INF), "seconds=inf"),
    ("run(nan)", lambda m: m.run(NAN), "seconds=nan"),
    ("run(1e308)", lambda m: m.run(1e308), "seconds=1e+308"),
    ("run(True)", lambda m: m.run(True), "seconds=True"),
    ("run('1')", lambda m: m.run("1"), "seconds='1'"),
    ("run(None)", lambda m: m.run(None), "seconds=None"),
    ("settle(-1)", lambda m: m.settle(-1), "limit=-1"),
    ("settle(0)", lambda m: m.settle(0), "limit=0"),
    ("settle(nan)", lambda m: m.settle(NAN), "limit=nan"),
    ("settle(inf)", lambda m: m.settle(INF), "limit=inf"),
    ("settle(True)", lambda m: m.settle(True), "limit=True"),
    ("settle('1')", lambda m: m.settle("1"), "limit='1'"),
    ("offline timeout=-1", lambda m: m.offline_memory_block(1, timeout=-1), "timeout=-1"),
    ("offline timeout=inf", lambda m: m.offline_memory_block(1, timeout=INF),
     "timeout=inf"),
    ("offline timeout=nan", lambda m: m.offline_memory_block(1, timeout=NAN),
     "timeout=nan"),
    ("offline timeout=True", lambda m: m.offline_memory_block(1, timeout=True),
     "timeout=True"),
]

HOTPLUG: list[Case] = [
    ("online_memory_block(-1)", lambda m: m.online_memory_block(-1), "block_id=-1"),
    ("online_memory_block(99)", lambda m: m.online_memory_block(99), "block_id=99"),
    ("online_memory_block(True)", lambda m: m.online_memory_block(True), "block_id=True"),
    ("online_memory_block('1')", lambda m: m.online_memory_block("1"), "block_id='1'"),
    ("online_memory_block type", lambda m: m.online_memory_block(1, "online_bogus"),
     "online_type='online_bogus'"),
    ("online_memory_block type=offline", lambda m: m.online_memory_block(1, "offline"),
     "online_type='offline'"),
    ("offline_memory_block(99)", lambda m: m.offline_memory_block(99), "block_id=99"),
    ("offline_memory_block(True)", lambda m: m.offline_memory_block(True), "block_id=True"),
    ("add_dimm size=0", lambda m: m.add_dimm(0), "size=0"),
    ("add_dimm size=100k", lambda m: m.add_dimm("100k"), "size="),
    ("add_dimm size=-1", lambda m: m.add_dimm(-1), "size=-1"),
    ("add_dimm size=True", lambda m: m.add_dimm(True), "size=True"),
    ("add_dimm size=64T", lambda m: m.add_dimm("64T"), "size="),
    ("add_dimm online='no'", lambda m: m.add_dimm("256k", online="no"), "online='no'"),
    ("add_virtio_mem region=0", lambda m: m.add_virtio_mem(region_size=0), "region_size=0"),
    ("add_virtio_mem region=100k", lambda m: m.add_virtio_mem(region_size="100k"),
     "region_size="),
    ("add_virtio_mem region=1024T", lambda m: m.add_virtio_mem(region_size="1024T"),
     "region_size="),
    ("add_virtio_mem region=True", lambda m: m.add_virtio_mem(region_size=True),
     "size=True"),
    ("add_virtio_mem block=3", lambda m: m.add_virtio_mem("1M", block_size=3),
     "block_size=3"),
    ("add_virtio_mem block=0", lambda m: m.add_virtio_mem("1M", block_size=0),
     "block_size=0"),
    ("add_virtio_mem block>region", lambda m: m.add_virtio_mem("1M", block_size="2M"),
     "region_size="),
    ("add_virtio_mem requested>region",
     lambda m: m.add_virtio_mem("1M", requested_size="2M"), "requested-size"),
    ("add_virtio_mem requested not a multiple",
     lambda m: m.add_virtio_mem("1M", requested_size="40k"), "requested-size"),
    ("add_virtio_mem requested='x'", lambda m: m.add_virtio_mem("1M", requested_size="x"),
     "size='x'"),
    ("add_virtio_mem node=1", lambda m: m.add_virtio_mem("1M", node=1), "node=1"),
    ("add_virtio_mem node=True", lambda m: m.add_virtio_mem("1M", node=True), "node=True"),
    ("add_virtio_mem prealloc='no'", lambda m: m.add_virtio_mem("1M", prealloc="no"),
     "prealloc='no'"),
    ("add_virtio_mem host_memory=-1", lambda m: m.add_virtio_mem("1M", host_memory=-1),
     "size=-1"),
    ("add_virtio_mem guest_driver='no'",
     lambda m: m.add_virtio_mem("1M", guest_driver="no"), "guest_driver='no'"),
    ("add_virtio_balloon again", lambda m: m.add_virtio_balloon(), "virtio-balloon"),
    ("requested_size not a multiple", lambda m: setattr(m.dev, "requested_size", "40k"),
     "requested-size"),
    ("requested_size > region", lambda m: setattr(m.dev, "requested_size", "2M"),
     "requested-size"),
    ("requested_size=-1", lambda m: setattr(m.dev, "requested_size", -1), "size=-1"),
    ("requested_size=nan", lambda m: setattr(m.dev, "requested_size", NAN), "size=nan"),
    ("requested_size=True", lambda m: setattr(m.dev, "requested_size", True), "size=True"),
    ("balloon set_memory=-1", lambda m: m.balloon.set_memory(-1), "size=-1"),
    ("balloon set_memory='x'", lambda m: m.balloon.set_memory("x"), "size='x'"),
    ("balloon set_memory=True", lambda m: m.balloon.set_memory(True), "size=True"),
    ("balloon set_num_pages=-1", lambda m: m.balloon.set_num_pages(-1), "num_pages=-1"),
    ("balloon set_num_pages=nan", lambda m: m.balloon.set_num_pages(NAN), "num_pages=nan"),
    ("balloon set_num_pages=True", lambda m: m.balloon.set_num_pages(True), "num_pages=True"),
    ("balloon set_num_pages=2**40", lambda m: m.balloon.set_num_pages(2**40), "num_pages="),
]

VIEWS: list[Case] = [
    ("page_map start=-1", lambda m: m.page_map(-1), "start=-0x1"),
    ("page_map end<start", lambda m: m.page_map(8, 4), "end=0x4"),
    ("page_map width=0", lambda m: m.page_map(0, 8, 0), "width=0"),
    ("page_map width=True", lambda m: m.page_map(0, 8, True), "width=True"),
    ("meminfo_kb('Nope')", lambda m: m.proc.meminfo_kb("Nope"), "Nope"),
    ("start_trace('yes')", lambda m: m.start_trace("yes"), "trace='yes'"),
]

MACHINE_API = ALLOC + ZONES + CONTIG + ACTIVITIES + TIME + HOTPLUG + VIEWS


@pytest.fixture(scope="module")
def busy() -> vm.Machine:
    return busy_machine()


@pytest.mark.parametrize("case", MACHINE_API, ids=[c[0] for c in MACHINE_API])
def test_machine_api_rejects_and_changes_nothing(case):
    label, call, text = case
    m = busy_machine()
    before = state_digest(m)
    with pytest.raises(ValueError) as err:
        call(m)
    assert text in str(err.value), f"{label}: {err.value}"
    assert state_digest(m) == before, f"{label} changed the machine"
    m.validate()


CONSTRUCTOR: list[tuple[dict, str]] = [
    ({"boot_memory": "64T"}, "boot_memory="),
    ({"boot_memory": "1T", "geometry": "teaching"}, "boot_memory="),
    ({"boot_memory": 2**70}, "size="),
    ({"boot_memory": -1}, "size=-1"),
    ({"boot_memory": 0}, "boot_memory=0"),
    ({"boot_memory": "9" * 400}, "size="),
    ({"boot_memory": True}, "size=True"),
    ({"boot_memory": 1.5}, "size=1.5"),
    ({"boot_memory": NAN}, "size=nan"),
    ({"kernel": "4.0"}, "kernel='4.0'"),
    ({"kernel": None}, "kernel=None"),
    ({"online_policy": "bogus"}, "online_policy='bogus'"),
    ({"auto_online_blocks": "bogus"}, "auto_online_blocks='bogus'"),
    ({"seed": -1}, "seed=-1"),
    ({"seed": True}, "seed=True"),
    ({"seed": 1.5}, "seed=1.5"),
    ({"geometry": "bogus"}, "geometry='bogus'"),
    ({"trace": "yes"}, "trace='yes'"),
    ({"min_free_kbytes": -5}, "min_free_kbytes=-5"),
    ({"min_free_kbytes": True}, "min_free_kbytes=True"),
    ({"min_free_kbytes": 1.5}, "min_free_kbytes=1.5"),
    ({"min_free_kbytes": 2**40}, "min_free_kbytes="),
    ({"mobility_grouping": "no"}, "mobility_grouping='no'"),
    ({"mobility_grouping": 0}, "mobility_grouping=0"),
    ({"auto_movable_ratio": True}, "auto_movable_ratio=True"),
    ({"auto_movable_ratio": -1}, "auto_movable_ratio=-1"),
    ({"auto_movable_ratio": 2**40}, "auto_movable_ratio="),
]


@pytest.mark.parametrize("kw, text", CONSTRUCTOR, ids=[repr(k) for k, _ in CONSTRUCTOR])
def test_machine_constructor_rejects(kw, text):
    kw = {"geometry": "teaching", "boot_memory": "1M", **kw}
    with pytest.raises(ValueError) as err:
        vm.Machine(**kw)
    assert text in str(err.value)


def test_the_busy_machine_accepts_the_good_twins(busy):
    """The fixture machine is not broken: the same calls with good values work."""
    m = busy_machine()
    assert m.alloc_pages(0) is not None
    assert m.zone(0).name == "DMA" and m.zone("Normal").name == "Normal"
    m.run(1.0)
    m.settle(10.0)
    assert m.offline_memory_block(1, timeout=1.0) in (0, vm.EBUSY, vm.EINTR)
    m.validate()


def test_docs_reliability_states_these_counts():
    """docs/reliability.md quotes the number of cases each bad-input test tries."""
    from pathlib import Path

    from . import test_bad_input_cli as cli
    from . import test_bad_input_scenario as scenario
    from . import test_bad_input_sysfs as sysfs
    from .test_fuzz import configs, steps_for

    doc = (Path(__file__).resolve().parent.parent / "docs" / "reliability.md").read_text()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in doc.splitlines() if line.startswith("| ") and "---" not in line}
    api = rows["Machine API: allocator, contiguous ranges, activities, time, hotplug, devices, "
               "views"]
    assert api[1:3] == [str(len(MACHINE_API))] * 2
    assert rows["`Machine(...)`"][1:3] == [str(len(CONSTRUCTOR))] * 2
    refused = sum(1 for p, v in sysfs.CASES if sysfs.expected(p, v) not in ("done", 0))
    assert rows["sysfs"][1] == f"{len(sysfs.CASES):,} writes"
    assert rows["sysfs"][2].startswith(f"{refused:,} ")
    assert rows["scenario keys"][1] == str(len(scenario.CASES))
    per_command = {c: sum(1 for cmd, _ in cli.ALL if cmd == c) for c, _ in cli.ALL}
    assert rows["CLI subcommands"][0].startswith(
        ", ".join(f"`{c}` {n}" for c, n in per_command.items()))
    assert rows["CLI subcommands"][1] == str(len(cli.ALL))
    assert rows["everything at once"][1] == f"{sum(map(steps_for, configs())):,} steps"
