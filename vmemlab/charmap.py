"""OSTEP-style character maps of physical memory, and their inverse.

``page_map`` draws one character per page (for small machines and zoomed
ranges); ``pageblock_map`` one character per pageblock, one line per memory
block.  Both are plain text that tests and nbval can compare.  ``parse_page_map``
reads a page map back, so a test fixture or an exercise can be written as a
picture (Norvig's picture/shape pair).

Page characters::

    .  free            A anon          F page cache     T tmpfs     Q ramfs
    S  slab            D reclaimable slab (dentries, inodes)        P page table
    |  pipe buffer     K other kernel  W memmap of hot-added memory B balloon
    #  reserved        x PageOffline   o offline section  (space) no memory
    lower case: a long-term pinned page (a, f, t, ...)

Pageblock characters: the migratetype's initial (U M R H I), upper case if
some page in the block is allocated, lower case if all its pages are free;
``-`` no memory, ``o`` offline, ``x`` all pages PageOffline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .constants import MigrateType, PageFlag, PageKind, PageState

if TYPE_CHECKING:
    from .node import Node

PAGE_CHARS = {PageKind.ANON: "A", PageKind.FILE: "F", PageKind.SHMEM: "T",
              PageKind.RAMFS: "Q", PageKind.SLAB: "S", PageKind.SLAB_RECLAIMABLE: "D",
              PageKind.PAGETABLE: "P", PageKind.PIPE: "|", PageKind.KERNEL: "K",
              PageKind.MEMMAP: "W", PageKind.BALLOON: "B", PageKind.STACK: "E",
              PageKind.PERCPU: "C", PageKind.VMALLOC: "V"}
STATE_CHARS = {PageState.ABSENT: " ", PageState.OFFLINE: "o", PageState.RESERVED: "#",
               PageState.FREE: ".", PageState.PAGE_OFFLINE: "x"}
MT_CHARS = {MigrateType.UNMOVABLE: "U", MigrateType.MOVABLE: "M",
            MigrateType.RECLAIMABLE: "R", MigrateType.HIGHATOMIC: "H",
            MigrateType.ISOLATE: "I"}

PAGE_LEGEND = (". free  A anon  F page cache  T tmpfs  Q ramfs  S slab  D reclaimable slab  "
               "P page table  | pipe  K kernel  E kernel stack  C percpu  V vmalloc  W memmap  "
               "B balloon  # reserved  "
               "x PageOffline  o offline  (lower case: pinned)")
PAGEBLOCK_LEGEND = ("U unmovable  M movable  R reclaimable  H highatomic  I isolated "
                    "(lower case: all free)  - no memory  o offline  x PageOffline")

# Lookup table: (state, kind) -> character, built once.
_TABLE = np.full((len(PageState), max(PageKind) + 1), "?", dtype="<U1")
for _s, _c in STATE_CHARS.items():
    _TABLE[_s, :] = _c
for _k, _c in PAGE_CHARS.items():
    _TABLE[PageState.ALLOCATED, _k] = _c


def page_chars(node: Node, start: int, end: int) -> np.ndarray:
    """One character per pfn in [start, end), as a numpy array of str."""
    mm = node.mm
    chars = _TABLE[mm.state[start:end], mm.kind[start:end]]
    pinned = (mm.flags[start:end] & PageFlag.PINNED) != 0
    chars[pinned] = np.char.lower(chars[pinned])
    return chars


def page_map(node: Node, start: int = 0, end: int | None = None, width: int = 64) -> str:
    """Draw pages [start, end) as lines of ``width`` characters, each with its first pfn."""
    end = node.mm.nr_pfns if end is None else end
    node.mm.check_pfn(start, "start")
    if not start < end <= node.mm.nr_pfns:
        raise ValueError(f"end={end:#x} must be in ({start:#x}, {node.mm.nr_pfns:#x}]")
    chars = page_chars(node, start, end)
    digits = max(4, len(f"{end:x}"))
    lines = [f"{pfn:#0{digits + 2}x} " + "".join(chars[pfn - start:pfn - start + width])
             for pfn in range(start, end, width)]
    return "\n".join(lines) + "\n"


def parse_page_map(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a page map back into (state, kind, pinned) arrays.

    Lines may carry a leading pfn column (as ``page_map`` prints); only the
    last whitespace-free field of each line is read.  Raises ValueError on an
    unknown character, naming it and its position.
    """
    inverse = {c: (PageState.ALLOCATED, k) for k, c in PAGE_CHARS.items()}
    inverse.update({c: (s, PageKind.NONE) for s, c in STATE_CHARS.items() if c != " "})
    cells: list[str] = []
    for line in text.splitlines():
        line = line.rstrip("\n")
        if not line.strip():
            continue
        body = line.split(" ", 1)[1] if line.startswith("0x") else line
        cells.extend(body)
    state = np.zeros(len(cells), np.uint8)
    kind = np.zeros(len(cells), np.uint8)
    pinned = np.zeros(len(cells), bool)
    for i, c in enumerate(cells):
        key = c.upper() if c.islower() and c.upper() in inverse else c
        if c == " ":
            continue
        if key not in inverse:
            raise ValueError(f"page map character {c!r} at position {i} is not one of "
                             f"{''.join(sorted(inverse))}")
        state[i], kind[i] = inverse[key]
        pinned[i] = c.islower() and key != c
    return state, kind, pinned


def pageblock_chars(node: Node) -> np.ndarray:
    """One character per pageblock of the whole memmap."""
    mm, geo = node.mm, node.geo
    per = geo.pageblock_nr_pages
    state = mm.state.reshape(-1, per)
    used = np.count_nonzero(state == PageState.ALLOCATED, axis=1)
    live = np.count_nonzero((state == PageState.FREE) | (state == PageState.ALLOCATED), axis=1)
    offline = np.count_nonzero(state == PageState.OFFLINE, axis=1)
    pgoff = np.count_nonzero(state == PageState.PAGE_OFFLINE, axis=1)
    reserved = np.count_nonzero(state == PageState.RESERVED, axis=1)
    upper = np.array([MT_CHARS[MigrateType(t)] for t in range(len(MigrateType))])
    out = upper[mm.pb_mt]
    out = np.where(used + pgoff + reserved > 0, out, np.char.lower(out))  # lower: all free
    out = np.where(live + reserved == 0, "-", out)
    out = np.where((live + reserved == 0) & (pgoff > 0), "x", out)
    out = np.where((live + reserved + pgoff == 0) & (offline > 0), "o", out)
    out = np.where((live == 0) & (reserved > 0), "#", out)
    return out


def pageblock_map(node: Node) -> str:
    """One line per memory block with memory: its first pfn, zone, and pageblocks."""
    from .constants import ZoneType

    mm, geo = node.mm, node.geo
    chars = pageblock_chars(node)
    per_line = geo.pageblocks_per_memory_block
    lines = []
    for i in range(0, len(chars), per_line):
        row = "".join(chars[i:i + per_line])
        if set(row) == {"-"}:
            continue
        pfn = i * geo.pageblock_nr_pages
        zones = set(mm.pb_zone[i:i + per_line].tolist()) - {255}
        zname = "/".join(str(ZoneType(z)) for z in sorted(zones)) or "-"
        lines.append(f"{pfn:#010x} {zname:<8} {row}")
    return "\n".join(lines) + "\n"
