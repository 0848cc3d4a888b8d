"""/proc memory files of a real kernel: text to plain data, and back.

Each ``parse_*`` reads one file as a real kernel prints it and returns plain
data (named tuples and frozen dataclasses of ints and strings); each
``render_*`` turns that data back into text with the same ``format_*``
functions that print a simulated machine's ``m.proc`` views, so a real
machine and a simulated one read alike.

Format variations across kernels that the parsers accept:

* pagetypeinfo: any set of migratetype columns (``CMA`` present or absent,
  ``Reserve`` on old kernels), counts capped at ``>100000``, and the
  ``Number of mixed blocks`` table of CONFIG_PAGE_OWNER kernels;
* zoneinfo: with or without the ``boost``, ``promo`` and ``cma`` lines,
  with or without ``nr_free_pages_blocks`` and NUMA counters, with per-CPU
  pagesets (read past: the view leaves them out, as ``m.proc`` does);
* meminfo: ``kB`` lines and the unitless ``HugePages_*`` lines.

A malformed file raises ``ProcParseError`` naming the file and line.

Kernel: mm/vmstat.c (frag_show_print, pagetypeinfo_show, zoneinfo_show_print),
fs/proc/meminfo.c (meminfo_proc_show), mm/hugetlb.c (hugetlb_report_meminfo)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ..procfs import (
    PAGETYPEINFO_CAP,
    ZoneinfoData,
    format_buddyinfo,
    format_meminfo,
    format_pagetypeinfo,
    format_zoneinfo_zone,
)


class ProcParseError(ValueError):
    """A /proc file that does not read as the kernel prints it."""

    def __init__(self, source: str, lineno: int, line: str, expected: str) -> None:
        super().__init__(f"{source}, line {lineno}: {line.strip()!r}: expected {expected}")
        self.source, self.lineno = source, lineno


def _lines(text: str) -> Iterable[tuple[int, str]]:
    return ((i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip())


def _ints(fields: str, source: str, lineno: int, line: str) -> tuple[int, ...]:
    try:
        return tuple(int(f.lstrip(">")) for f in fields.split())
    except ValueError:
        raise ProcParseError(source, lineno, line, "whole numbers") from None


# ------------------------------------------------------------------ buddyinfo
class BuddyRow(NamedTuple):
    """One line of /proc/buddyinfo: free blocks per order of one zone."""

    node: int
    zone: str
    nr_free: tuple[int, ...]


_BUDDY = re.compile(r"Node (\d+), zone\s+(\S+)((?:\s+\d+)+)\s*$")


def parse_buddyinfo(text: str, source: str = "/proc/buddyinfo") -> list[BuddyRow]:
    """Kernel: mm/vmstat.c, frag_show_print()"""
    rows = []
    for n, line in _lines(text):
        m = _BUDDY.match(line)
        if not m:
            raise ProcParseError(source, n, line, "'Node N, zone NAME' and counts per order")
        rows.append(BuddyRow(int(m[1]), m[2], _ints(m[3], source, n, line)))
    return rows


def render_buddyinfo(rows: Sequence[BuddyRow]) -> str:
    """Kernel: mm/vmstat.c, frag_show_print()"""
    return format_buddyinfo(rows)


# --------------------------------------------------------------- pagetypeinfo
class FreeRow(NamedTuple):
    """Free blocks per order on one zone's free list of one migratetype."""

    node: int
    zone: str
    type: str
    counts: tuple[int, ...]


class BlockRow(NamedTuple):
    """Pageblocks per migratetype of one zone."""

    node: int
    zone: str
    counts: tuple[int, ...]


@dataclass(frozen=True)
class Pagetypeinfo:
    """The numbers of /proc/pagetypeinfo; ``mixed`` only with CONFIG_PAGE_OWNER."""

    pageblock_order: int
    nr_orders: int
    type_names: tuple[str, ...]
    free: tuple[FreeRow, ...]
    blocks: tuple[BlockRow, ...]
    mixed: tuple[BlockRow, ...] = ()


_PT_FREE = re.compile(r"Node\s+(\d+), zone\s+(\S+), type\s+(\S+)((?:\s+>?\d+)+)\s*$")
_PT_BLOCKS = re.compile(r"Node (\d+), zone\s+(\S+)((?:\s+\d+)+)\s*$")
_PT_FREE_HEAD = "Free pages count per migrate type at order"
_PT_BLOCKS_HEAD = "Number of blocks type"
_PT_MIXED_HEAD = "Number of mixed blocks"


def parse_pagetypeinfo(text: str, source: str = "/proc/pagetypeinfo") -> Pagetypeinfo:
    """Kernel: mm/vmstat.c, pagetypeinfo_show(), pagetypeinfo_showfree_print(),
    pagetypeinfo_showblockcount_print(), pagetypeinfo_showmixedcount_print()
    """
    order = nr_orders = -1
    names: tuple[str, ...] = ()
    free: list[FreeRow] = []
    tables: dict[str, list[BlockRow]] = {_PT_BLOCKS_HEAD: [], _PT_MIXED_HEAD: []}
    table: list[BlockRow] | None = None
    for n, line in _lines(text):
        if m := re.match(r"Page block order: (\d+)$", line):
            order = int(m[1])
        elif line.startswith("Pages per block:"):
            continue
        elif line.startswith(_PT_FREE_HEAD):
            nr_orders = len(_ints(line[len(_PT_FREE_HEAD):], source, n, line))
        elif m := _PT_FREE.match(line):
            free.append(FreeRow(int(m[1]), m[2], m[3], _ints(m[4], source, n, line)))
        elif line.startswith((_PT_BLOCKS_HEAD, _PT_MIXED_HEAD)):
            head = _PT_BLOCKS_HEAD if line.startswith(_PT_BLOCKS_HEAD) else _PT_MIXED_HEAD
            names = tuple(line[len(head):].split())
            table = tables[head]
        elif (m := _PT_BLOCKS.match(line)) and table is not None:
            table.append(BlockRow(int(m[1]), m[2], _ints(m[3], source, n, line)))
        else:
            raise ProcParseError(source, n, line, "a line of /proc/pagetypeinfo")
    if order < 0 or nr_orders < 0 or not names:
        raise ProcParseError(source, 1, text[:40], "the 'Page block order', free-count "
                             "and block-count headers")
    return Pagetypeinfo(order, nr_orders, names, tuple(free),
                        tuple(tables[_PT_BLOCKS_HEAD]), tuple(tables[_PT_MIXED_HEAD]))


def render_pagetypeinfo(p: Pagetypeinfo) -> str:
    """Kernel: mm/vmstat.c, pagetypeinfo_show()"""
    capped = [(r.node, r.zone, r.type, [min(c, PAGETYPEINFO_CAP) for c in r.counts])
              for r in p.free]
    text = format_pagetypeinfo(p.pageblock_order, p.nr_orders, capped, p.blocks,
                               p.type_names)
    if p.mixed:
        text += "\n" + f"{_PT_MIXED_HEAD + ' ':<23}" + "".join(
            f"{name:>12} " for name in p.type_names) + "\n"
        text += "".join(f"Node {r.node}, zone {r.zone:>8} "
                        + "".join(f"{c:12d} " for c in r.counts) + "\n" for r in p.mixed)
    return text


# ------------------------------------------------------------------- zoneinfo
@dataclass(frozen=True)
class Zoneinfo:
    """The zones of /proc/zoneinfo; ``absent`` names header lines this kernel lacks."""

    zones: tuple[ZoneinfoData, ...]
    absent: frozenset[str] = frozenset()


OPTIONAL_ZONE_LINES = ("boost", "promo", "cma")
_ZONE_HEAD = re.compile(r"Node (\d+), zone\s+(\S+)\s*$")


def parse_zoneinfo(text: str, source: str = "/proc/zoneinfo") -> Zoneinfo:
    """Kernel: mm/vmstat.c, zoneinfo_show_print()"""
    chunks: list[list[tuple[int, str]]] = []
    for n, line in _lines(text):
        if _ZONE_HEAD.match(line):
            chunks.append([])
        elif not chunks:
            raise ProcParseError(source, n, line, "'Node N, zone NAME'")
        chunks[-1].append((n, line))
    zones, absent = [], set()
    for chunk in chunks:
        zone, missing = _parse_zone(chunk, source)
        zones.append(zone)
        absent |= missing
    return Zoneinfo(tuple(zones), frozenset(absent))


def _parse_zone(chunk: list[tuple[int, str]], source: str) -> tuple[ZoneinfoData, set[str]]:
    head = _ZONE_HEAD.match(chunk[0][1])
    assert head is not None
    vals: dict[str, int] = {}
    stats: dict[str, list[tuple[str, int]]] = {"node": [], "zone": []}
    protection: tuple[int, ...] = ()
    section = "head"
    for n, line in chunk[1:]:
        s = line.strip()
        if s in ("per-node stats", "pagesets"):
            section = "node" if s == "per-node stats" else "pagesets"
        elif s.startswith("protection:"):
            protection = _ints(re.sub(r"[^\d ]", " ", s), source, n, line)
            section = "zone"
        elif s.startswith("pages free"):
            vals["free"] = _ints(s[len("pages free"):], source, n, line)[0]
            section = "watermarks"
        elif s.startswith(("node_unreclaimable:", "start_pfn:")):
            key, _, value = s.partition(":")
            vals[key] = _ints(value, source, n, line)[0]
            section = "tail"
        elif section in ("node", "zone", "watermarks"):
            name, value = _name_value(s, source, n, line)
            if section == "watermarks":
                vals[name] = value
            else:
                stats[section].append((name, value))
    for key in ("free", "min", "low", "high", "spanned", "present", "managed"):
        if key not in vals:
            raise ProcParseError(source, chunk[0][0], chunk[0][1], f"a '{key}' line in the zone")
    zone = ZoneinfoData(
        int(head[1]), head[2], vals["free"], vals.get("boost", 0),
        (vals["min"], vals["low"], vals["high"], vals.get("promo", 0)), vals["spanned"],
        vals["present"], vals["managed"], vals.get("cma", 0), protection,
        "start_pfn" in vals, tuple(stats["zone"]),
        tuple(stats["node"]) if stats["node"] else None,
        vals.get("node_unreclaimable", 0), vals.get("start_pfn", 0))
    return zone, {k for k in OPTIONAL_ZONE_LINES if k not in vals}


def _name_value(s: str, source: str, n: int, line: str) -> tuple[str, int]:
    parts = s.split()
    if len(parts) != 2:
        raise ProcParseError(source, n, line, "'name value'")
    return parts[0], _ints(parts[1], source, n, line)[0]


def render_zoneinfo(z: Zoneinfo) -> str:
    """Every zone, without per-CPU pagesets, with only the lines this kernel prints.

    Kernel: mm/vmstat.c, zoneinfo_show_print()
    """
    text = "".join(format_zoneinfo_zone(zone) for zone in z.zones)
    if not z.absent:
        return text
    absent = "|".join(sorted(z.absent))
    drop = re.compile(rf"^ {{8}}({absent}) +\d+$")
    return "".join(ln for ln in text.splitlines(keepends=True) if not drop.match(ln))


# -------------------------------------------------------------------- meminfo
class MeminfoRow(NamedTuple):
    """One line of /proc/meminfo; ``unit`` is "kB" or "" (HugePages_* counts)."""

    label: str
    value: int
    unit: str


_MEMINFO = re.compile(r"([^:]+):\s+(\d+)(?: (kB))?\s*$")


def parse_meminfo(text: str, source: str = "/proc/meminfo") -> list[MeminfoRow]:
    """Kernel: fs/proc/meminfo.c, meminfo_proc_show()"""
    rows = []
    for n, line in _lines(text):
        m = _MEMINFO.match(line)
        if not m:
            raise ProcParseError(source, n, line, "'Label:  value kB' or 'Label:  count'")
        rows.append(MeminfoRow(m[1], int(m[2]), m[3] or ""))
    return rows


def render_meminfo(rows: Sequence[MeminfoRow]) -> str:
    """kB lines as show_val_kb() prints them; counts as ``%-19s%5lu``.

    Kernel: fs/proc/meminfo.c, show_val_kb(); mm/hugetlb.c, hugetlb_report_meminfo()
    """
    return "".join(format_meminfo([(r.label, r.value)]) if r.unit
                   else f"{r.label + ':':<19}{r.value:5d}\n" for r in rows)
