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
    for release in ((5, 8), (6, 12)):
        silent = [k for k in prockeys.keys(prockeys.MEMINFO, release)
                  if k not in proc.meminfo_values()]
        silent += [k for k in prockeys.keys(prockeys.NODE_STATS, release)
                   if k not in proc.node_values()]
        silent += [k for k in prockeys.keys(prockeys.ZONE_STATS + prockeys.NUMA_STATS, release)
                   if k not in proc.zone_values(booted.zone("DMA32"))]
        assert silent and all(re.search(rf"\b{re.escape(k)}\b", zero) for k in silent), \
            [k for k in silent if not re.search(rf"\b{re.escape(k)}\b", zero)]
