"""/proc formats byte for byte: real captures in, the same bytes out."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

import vmemlab as vm
from vmemlab.procfs import (
    Pageset,
    ZoneinfoData,
    format_buddyinfo,
    format_index_table,
    format_meminfo,
    format_pagetypeinfo,
    format_vmstat,
    format_zoneinfo_zone,
)
from vmemlab.profiles import PROFILES

from .conftest import teaching

FIX = Path(__file__).parent / "fixtures" / "proc"


def read(name: str) -> str:
    return (FIX / name).read_text()


def test_buddyinfo_matches_real_capture():
    text = read("buddyinfo.txt")
    rows = []
    for line in text.splitlines():
        m = re.match(r"Node (\d+), zone\s+(\S+)\s+(.*)", line)
        rows.append((int(m[1]), m[2], [int(x) for x in m[3].split()]))
    assert format_buddyinfo(rows) == text


def test_pagetypeinfo_matches_real_capture():
    text = read("pagetypeinfo.txt")
    free, blocks, names = [], [], []
    for line in text.splitlines():
        if m := re.match(r"Node\s+(\d+), zone\s+(\S+), type\s+(\S+)\s+(.*)", line):
            free.append((int(m[1]), m[2], m[3], [int(x) for x in m[4].split()]))
        elif line.startswith("Number of blocks type"):
            names = line.split()[4:]
        elif m := re.match(r"Node (\d+), zone\s+(\S+)\s+([\d ]+)$", line):
            blocks.append((int(m[1]), m[2], [int(x) for x in m[3].split()]))
    assert names == ["Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate"]
    assert format_pagetypeinfo(9, 11, free, blocks, names) == text


def test_pagetypeinfo_caps_long_lists_like_the_kernel():
    out = format_pagetypeinfo(9, 2, [(0, "Normal", "Movable", [100000, 99999])], [], [])
    assert "type      Movable >100000  99999 \n" in out


def _parse_zoneinfo(text: str) -> tuple[list[ZoneinfoData], str]:
    """Split the capture into zones; return their data and the text minus pagesets."""
    blocks = re.split(r"(?m)^(?=Node \d+, zone)", text)[1:]
    zones, expected = [], []
    for block in blocks:
        lines = block.splitlines()
        keep = [ln for ln in lines if not ln.startswith(("    cpu:", "              ", "  pagesets",
                                                          "  vm stats threshold"))]
        expected.append("\n".join(keep) + "\n")
        head = re.match(r"Node (\d+), zone\s+(\S+)", lines[0])
        vals = {}
        node_stats, zone_stats, section = [], [], None
        for ln in keep[1:]:
            s = ln.strip()
            if s == "per-node stats":
                section = node_stats
                continue
            if s.startswith("pages free"):
                section = None
                vals["free"] = int(s.split()[-1])
                continue
            if s.startswith("protection:"):
                vals["protection"] = tuple(int(x) for x in re.findall(r"\d+", s))
                section = zone_stats
                continue
            if s.startswith(("node_unreclaimable", "start_pfn")):
                vals[s.split(":")[0]] = int(s.split()[-1])
                continue
            name, value = s.rsplit(None, 1)
            if section is None:
                vals[name] = int(value)
            else:
                section.append((name, int(value)))
        zones.append(ZoneinfoData(
            int(head[1]), head[2], vals["free"], vals["boost"],
            (vals["min"], vals["low"], vals["high"], vals["promo"]), vals["spanned"],
            vals["present"], vals["managed"], vals["cma"], vals["protection"],
            "start_pfn" in vals, tuple(zone_stats), tuple(node_stats) if node_stats else None,
            vals.get("node_unreclaimable", 0), vals.get("start_pfn", 0)))
    return zones, "".join(expected)


def test_zoneinfo_matches_real_capture_except_pagesets():
    zones, expected = _parse_zoneinfo(read("zoneinfo.txt"))
    assert [z.name for z in zones] == ["DMA", "DMA32", "Normal", "Movable", "Device"]
    assert "".join(format_zoneinfo_zone(z) for z in zones) == expected


def test_meminfo_lines_match_real_capture():
    kb_lines = [ln for ln in read("meminfo-6.18-24g.txt").splitlines() if ln.endswith(" kB")]
    rows = [(ln.split(":")[0], int(ln.split()[-2])) for ln in kb_lines]
    assert format_meminfo(rows) == "\n".join(kb_lines) + "\n"


def test_meminfo_kb_reads_one_line_and_names_a_bad_field():
    m = teaching()
    line = next(ln for ln in m.proc.meminfo().splitlines() if ln.startswith("MemFree:"))
    assert m.proc.meminfo_kb("MemFree") == int(line.split()[1])
    with pytest.raises(ValueError, match="field='memfree' is not one of .*MemFree"):
        m.proc.meminfo_kb("memfree")


def test_extfrag_and_unusable_index_formats():
    # The Normal zone of the capture, computed offline with mm/vmstat.c's formulas
    nr_free = [13, 2, 1, 37, 136, 65, 31, 20, 9, 11, 76]
    from vmemlab.metrics import fragmentation_index_of, unusable_index

    unusable = [unusable_index(nr_free, o) for o in range(11)]
    extfrag = [fragmentation_index_of(nr_free, o) for o in range(11)]
    assert format_index_table([(0, "Normal", unusable)], 1) == (
        "Node 0, zone   Normal 0.000 0.000 0.000 0.000 0.003 0.026 0.048 0.069 0.096 "
        "0.120 0.179 \n")
    assert format_index_table([(0, "Normal", extfrag)], 2) == (
        "Node 0, zone   Normal " + "-1.000 " * 11 + "\n")


def test_fragmentation_index_when_allocation_would_fail():
    from vmemlab.metrics import fragmentation_index_of

    # 8 free single pages: an order-3 request fails for fragmentation, not lack of memory
    assert fragmentation_index_of([8, 0, 0, 0], 3) == 1000 - (1000 + 8 * 1000 // 8) // 8
    assert fragmentation_index_of([0, 0, 0, 0], 3) == 0


def test_simulated_machine_views_have_kernel_shape():
    m = teaching()
    assert m.proc.pagetypeinfo().startswith("Page block order: 3\nPages per block:  8\n\n")
    assert m.proc.meminfo().startswith("MemTotal:           1024 kB\nMemFree:            1024 kB\n")
    assert "Node 0, zone   Normal\n  per-node stats\n" in m.proc.zoneinfo()
    assert m.proc.unusable_index() == "Node 0, zone   Normal 0.000 0.000 0.000 0.000 0.000 \n"


# -- the reference 6.12 guest right after boot (tests/fixtures/proc/linux-6.12) --------
REF = FIX / "linux-6.12"
TOLERANCE = 0.005      # MemTotal, MemFree, zone managed and watermarks: within 0.5%
FEW_PERCENT = 0.03     # the boot kernel's own memory


def sample(name: str) -> str:
    return (REF / f"boot.{name}.txt").read_text()


@pytest.fixture(scope="module")
def booted() -> vm.Machine:
    return vm.Machine(boot_memory=vm.GiB, seed=0)


def _kv(text: str) -> dict[str, int]:
    """``name value`` or ``Label: value [kB]`` lines to a dict."""
    return {ln.split()[0].rstrip(":"): int(ln.split()[1]) for ln in text.splitlines()}


def _zone_blocks(text: str) -> dict[str, str]:
    return {re.match(r"Node \d+, zone\s+(\S+)", b)[1]: b
            for b in re.split(r"(?m)^(?=Node \d+, zone)", text)[1:]}


def _zone_kv(block: str) -> dict[str, int]:
    """The ``name value`` lines of one zone block (first value wins)."""
    out: dict[str, int] = {}
    for ln in block.splitlines()[1:]:
        parts = ln.replace(":", " ").split()
        if len(parts) == 2 and parts[1].isdigit():
            out.setdefault(parts[0], int(parts[1]))
    return out


def _close(got: int, want: int, rel: float) -> bool:
    return abs(got - want) <= rel * want


def _layout(text: str) -> list[str]:
    """Each line with its numbers blanked: the keys, their order and the fixed spacing."""
    return [re.sub(r" *\d+", " #", ln) for ln in text.splitlines()]


@pytest.mark.parametrize("name", ["meminfo", "vmstat", "zoneinfo", "buddyinfo", "pagetypeinfo"])
def test_booted_guest_prints_the_reference_layout(booted, name):
    text = getattr(booted.proc, name)()
    assert _layout(text) == _layout(sample(name))
    assert text.endswith("\n") and (text.count("\n") == sample(name).count("\n"))


def test_reference_meminfo_renders_back_byte_for_byte():
    text = sample("meminfo")
    rows = list(_kv(text).items())
    assert len(rows) == 54 and rows[-1][0] == "DirectMap2M"
    assert format_meminfo(rows) == text          # HugePages_* counts, HardwareCorrupted's %5lu


def test_reference_vmstat_renders_back_byte_for_byte():
    text = sample("vmstat")
    assert format_vmstat(list(_kv(text).items())) == text
    assert list(_kv(text)) == [n for n, _ in vm.Machine(boot_memory=vm.GiB).proc.vmstat_rows()]


def test_reference_zoneinfo_with_pagesets_renders_back_byte_for_byte():
    text = sample("zoneinfo")
    zones, _ = _parse_zoneinfo(text)
    blocks = _zone_blocks(text)
    full = []
    for z in zones:
        cpus = re.findall(r"cpu: (\d+)\n\s+count: (\d+)\n\s+high:  (\d+)\n\s+batch: (\d+)\n"
                          r"  vm stats threshold: (\d+)", blocks[z.name])
        full.append(dataclasses.replace(z, pagesets=tuple(Pageset(*map(int, c)) for c in cpus)))
    assert "".join(format_zoneinfo_zone(z) for z in full) == text


def test_booted_guest_memory_matches_the_reference(booted):
    real, mine = _kv(sample("meminfo")), dict(booted.proc.meminfo_rows())
    for key in ("MemTotal", "MemFree", "MemAvailable", "CommitLimit"):
        assert _close(mine[key], real[key], TOLERANCE), (key, mine[key], real[key])
    for key in ("Slab", "SReclaimable", "SUnreclaim", "KernelStack", "PageTables", "Percpu",
                "Shmem", "Cached", "AnonPages", "Mapped", "VmallocUsed", "Committed_AS",
                "Active(anon)", "Active"):
        assert _close(mine[key], real[key], FEW_PERCENT), (key, mine[key], real[key])
    for key in ("DirectMap4k", "DirectMap2M", "Hugepagesize", "VmallocTotal", "Inactive"):
        assert mine[key] == real[key], key


def test_booted_guest_zones_match_the_reference(booted):
    real, mine = _zone_blocks(sample("zoneinfo")), _zone_blocks(booted.proc.zoneinfo())
    for name in ("DMA", "DMA32"):
        r, m = _zone_kv(real[name]), _zone_kv(mine[name])
        for key in ("spanned", "present", "start_pfn"):          # the kernel's rules: exact
            assert m[key] == r[key], (name, key)
        for key in ("managed", "nr_free_pages", "min", "low", "high", "promo"):
            assert _close(m[key], r[key], TOLERANCE), (name, key, m[key], r[key])
        assert re.findall(r"(?:high|batch):\s+\d+|threshold: \d+", mine[name]) == \
            re.findall(r"(?:high|batch):\s+\d+|threshold: \d+", real[name])
    dma = _zone_kv(mine["DMA"])
    assert dma["managed"] == 3840 and dma["nr_free_pages"] == 3808
    counts = [int(c) for c in re.findall(r"count: (\d+)", mine["DMA32"])]
    assert sum(counts) == sum(int(c) for c in re.findall(r"count: (\d+)", real["DMA32"]))
    for name in ("Normal", "Movable", "Device"):
        assert mine[name] == real[name]                         # empty zones: the same text


def test_booted_guest_vmstat_matches_the_reference(booted):
    real, mine = _kv(sample("vmstat")), dict(booted.proc.vmstat_rows())
    for key in ("nr_free_pages", "nr_dirty_threshold", "nr_dirty_background_threshold"):
        assert _close(mine[key], real[key], TOLERANCE), key
    for key in ("nr_slab_reclaimable", "nr_slab_unreclaimable", "nr_kernel_stack",
                "nr_shmem", "nr_file_pages", "nr_mapped", "nr_page_table_pages"):
        assert _close(mine[key], real[key], 0.08), (key, mine[key], real[key])
    assert mine["nr_memmap_boot_pages"] == real["nr_memmap_boot_pages"] == 4096
    assert mine["pgalloc_dma"] == real["pgalloc_dma"] == 32      # the GFP_DMA atomic pool


def test_booted_guest_free_lists_look_like_the_reference(booted):
    """DMA exactly; DMA32 in kind: small free blocks, mostly order 10, Unmovable
    pageblocks from reserved memory past the first section and from boot claims."""
    bi = booted.proc.buddyinfo().splitlines()
    assert bi[0] == sample("buddyinfo").splitlines()[0]
    dma32 = [int(x) for x in bi[1].split()[4:]]
    assert sum(dma32[:9]) >= 5 and _close(dma32[10], 212, 0.05)
    blocks = booted.proc.pagetypeinfo().splitlines()[-2:]
    assert blocks[0] == sample("pagetypeinfo").splitlines()[-2]
    unmovable, movable, reclaimable = (int(x) for x in blocks[1].split()[4:7])
    assert 60 <= unmovable <= 90 and reclaimable >= 1 and unmovable + movable + reclaimable == 504


def test_every_line_without_a_model_is_named_in_the_glossary(booted):
    """A line the model has no value for prints 0 and docs/glossary.md says so."""
    from vmemlab import prockeys

    glossary = (Path(__file__).parents[1] / "docs" / "glossary.md").read_text()
    zero = glossary[glossary.index("## `/proc` lines printed as 0"):]
    proc = booted.proc
    for release in sorted({p.release for p in PROFILES.values()}):
        silent = [k for k in prockeys.keys(prockeys.MEMINFO, release)
                  if k not in proc.meminfo_values()]
        silent += [k for k in prockeys.keys(prockeys.NODE_STATS, release)
                   if k not in proc.node_values()]
        silent += [k for k in prockeys.keys(prockeys.ZONE_STATS + prockeys.NUMA_STATS, release)
                   if k not in proc.zone_values(booted.zone("DMA32"))]
        assert silent and all(re.search(rf"\b{re.escape(k)}\b", zero) for k in silent), \
            [k for k in silent if not re.search(rf"\b{re.escape(k)}\b", zero)]


# -- each release's text, by the commits that changed it -----------------------------
def _wmark_block(m: vm.Machine) -> list[str]:
    block = _zone_blocks(m.proc.zoneinfo())["DMA32"]
    lines = block.split("  pages free")[1].split("protection")[0].splitlines()[1:]
    return [ln.split()[0] for ln in lines if ln.strip()]


def _pageset_labels(m: vm.Machine) -> list[str]:
    block = _zone_blocks(m.proc.zoneinfo())["DMA32"]
    cpu0 = block.split("    cpu: 0\n")[1].split("  vm stats threshold")[0]
    return [ln[:24] for ln in cpu0.splitlines()]


@pytest.mark.parametrize("kernel,wmarks,minmax", [
    ("5.8", ["min", "low", "high", "spanned", "present", "managed"], False),
    ("6.1", ["boost", "min", "low", "high", "spanned", "present", "managed", "cma"], False),
    ("6.12", ["boost", "min", "low", "high", "promo", "spanned", "present", "managed", "cma"],
     False),
    ("6.15", ["boost", "min", "low", "high", "promo", "spanned", "present", "managed", "cma"],
     True)])
def test_zoneinfo_lines_by_release(kernel, wmarks, minmax):
    """boost from 5.16 ("show watermark_boost of zone in zoneinfo"), cma from 5.12, promo
    from 6.12 (WMARK_PROMO is 5.18, its zoneinfo line 6.12), high_min/high_max from 6.13."""
    m = vm.Machine(boot_memory=vm.GiB, kernel=kernel, kernel_activity=False)
    assert _wmark_block(m) == wmarks
    labels = (["              count:    ", "              high:     ", "              batch:    ",
               "              high_min: ", "              high_max: "] if minmax else
              ["              count: ", "              high:  ", "              batch: "])
    assert [ln[:len(label)] for ln, label in zip(_pageset_labels(m), labels, strict=True)] \
        == labels
    if minmax:
        z, sets = m.zone("DMA32"), m.node.pagesets
        low, managed = z.low_wmark_pages(), z.managed_pages
        assert sets.high_min_max(z) == (low // 2, managed // 8 // 2)     # 2 CPUs


def test_vmstat_and_meminfo_lines_by_release():
    """6.0 prints the device zone's pgalloc/allocstall/pgskip; 6.13 nr_hugetlb; 6.15
    nr_free_pages_blocks, the proactive reclaim counters, nr_balloon_pages and Balloon."""
    texts = {k: vm.Machine(boot_memory=vm.GiB, kernel=k, kernel_activity=False)
             for k in ("5.8", "6.1", "6.12", "6.15")}
    names = {k: [n for n, _ in m.proc.vmstat_rows()] for k, m in texts.items()}
    assert "pgalloc_device" in names["6.1"] and "pgalloc_device" not in names["5.8"]
    new_in_615 = {"nr_free_pages_blocks", "pgdemote_proactive", "nr_hugetlb",
                  "nr_balloon_pages", "pgsteal_proactive", "pgscan_proactive"}
    assert set(names["6.15"]) - set(names["6.12"]) == new_in_615
    assert set(names["6.12"]) <= set(names["6.15"])
    v615 = names["6.15"]
    assert v615[:2] == ["nr_free_pages", "nr_free_pages_blocks"]
    i = v615.index("pgdemote_khugepaged")
    assert v615[i + 1:i + 4] == ["pgdemote_proactive", "nr_hugetlb", "nr_balloon_pages"]
    assert v615[v615.index("pgsteal_khugepaged") + 1] == "pgsteal_proactive"
    assert v615[v615.index("pgscan_khugepaged") + 1] == "pgscan_proactive"
    mem = {k: [n for n, _ in m.proc.meminfo_rows()] for k, m in texts.items()}
    assert set(mem["6.15"]) - set(mem["6.12"]) == {"Balloon"}
    assert mem["6.15"][mem["6.15"].index("Unaccepted") + 1] == "Balloon"


def test_the_615_counters_have_values():
    """nr_free_pages_blocks: free pages in free blocks of a pageblock or more, not
    isolated; nr_balloon_pages and Balloon: the balloon's pages."""
    m = vm.Machine(boot_memory=vm.GiB, kernel="6.15", kernel_activity=False)
    blocks = sum(z.free_area[o].nr_free << o for z in m.node.zones for o in range(9, 11))
    assert m.proc.vmstat_value("nr_free_pages_blocks") == blocks > 0
    b = m.add_virtio_balloon()
    b.set_num_pages(1000)
    m.settle()
    assert b.actual == 1000
    assert m.proc.vmstat_value("nr_balloon_pages") == 1000
    assert m.proc.meminfo_kb("Balloon") == 4000
    assert m.proc.vmstat_value("nr_free_pages_blocks") < blocks       # 4 KiB pages split them


def test_vmstat_prints_the_counted_events():
    """oom_kill, drop_pagecache, drop_slab and pgmigrate_fail come from node.count_event."""
    m = teaching()
    m.activity("page_cache", size=8 * 4096)
    m.drop_caches(3)
    m.drop_caches(1)
    m.node.count_event("pgmigrate_fail", 3)
    m.node.count_event("oom_kill")
    rows = dict(m.proc.vmstat_rows())
    assert (rows["drop_pagecache"], rows["drop_slab"], rows["pgmigrate_fail"],
            rows["oom_kill"]) == (2, 1, 3, 1)


# -- the reference guest 2.4 s after plugging 1 GiB (plug1G_* in linux-6.12) ----------
@pytest.fixture(scope="module", params=["online_kernel", "online_movable"])
def plugged(request) -> tuple[str, vm.Machine]:
    """The sampled guest: boot, plug 1 GiB 5 s later, read /proc 2.4 s after that."""
    m = vm.Machine(boot_memory=vm.GiB, auto_online_blocks=request.param, seed=1)
    dev = m.add_virtio_mem(region_size=2 * vm.GiB, block_size=2 * vm.MiB)
    m.run(5)
    dev.requested_size = vm.GiB
    m.settle()
    m.run(2.4)
    return request.param, m


def plug_sample(online: str, name: str) -> str:
    return (REF / f"plug1G_{online}.{name}.txt").read_text()


@pytest.mark.parametrize("name", ["meminfo", "vmstat", "zoneinfo", "buddyinfo", "pagetypeinfo"])
def test_plugged_guest_prints_the_reference_layout(plugged, name):
    online, m = plugged
    text = getattr(m.proc, name)()
    assert _layout(text) == _layout(plug_sample(online, name))


def test_plugged_guest_numbers_match_the_reference_in_kind(plugged):
    online, m = plugged
    real, mine = _kv(plug_sample(online, "meminfo")), dict(m.proc.meminfo_rows())
    for key in ("MemTotal", "MemFree", "MemAvailable", "CommitLimit", "DirectMap2M"):
        assert _close(mine[key], real[key], TOLERANCE), (key, mine[key], real[key])
    for key in ("Slab", "SUnreclaim", "Percpu", "Committed_AS"):
        assert _close(mine[key], real[key], FEW_PERCENT), (key, mine[key], real[key])
    real_v, mine_v = _kv(plug_sample(online, "vmstat")), dict(m.proc.vmstat_rows())
    assert mine_v["nr_memmap_pages"] == real_v["nr_memmap_pages"] == 4096   # 1 GiB of memmap
    zone = "Normal" if online == "online_kernel" else "Movable"
    r, z = (_zone_kv(_zone_blocks(t)[zone]) for t in (plug_sample(online, "zoneinfo"),
                                                      m.proc.zoneinfo()))
    for key in ("spanned", "present", "managed", "min", "low", "high", "promo"):
        assert z[key] == r[key], (zone, key)
    assert _close(z["nr_free_pages"], r["nr_free_pages"], TOLERANCE)
