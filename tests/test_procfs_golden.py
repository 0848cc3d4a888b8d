"""/proc formats byte for byte: real captures in, the same bytes out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vmemlab.procfs import (
    ZoneinfoData,
    format_buddyinfo,
    format_index_table,
    format_meminfo,
    format_pagetypeinfo,
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
