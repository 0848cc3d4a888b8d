"""Memory blocks of /sys/devices/system/memory: text to plain data, and a table.

Each ``memoryN`` directory is one memory block (the unit of hot(un)plug and
onlining): ``state`` (online, offline, going-offline), ``online`` (1/0),
``valid_zones`` (the zone of an online block, ``none`` if it spans zones;
for an offline block the zones it could join, the default first),
``phys_index`` (the block id, hex), ``removable`` (legacy, 1/0), and a
``nodeM`` link.  ``block_size_bytes`` is hex; ``auto_online_blocks`` is the
online type hot-added blocks get.

Kernel: drivers/base/memory.c (state_show, valid_zones_show, phys_index_show,
block_size_bytes_show, auto_online_blocks_show); Documentation/admin-guide/mm/memory-hotplug.rst
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..constants import format_size

MEMORY_DIR = "/sys/devices/system/memory"
BLOCK_ATTRS = ("state", "online", "valid_zones", "phys_index", "removable")


class SysfsParseError(ValueError):
    """A sysfs attribute whose text is not what the kernel prints."""


@dataclass(frozen=True)
class MemoryBlock:
    """One memory block; attributes that could not be read are None."""

    id: int
    start_pfn: int
    nr_pages: int
    state: str | None
    online: bool | None
    valid_zones: tuple[str, ...] | None
    removable: bool | None
    phys_index: int | None
    node: int | None

    @property
    def end_pfn(self) -> int:
        return self.start_pfn + self.nr_pages

    @property
    def zone(self) -> str:
        """The zone an online block belongs to, "none" if it spans zones, "" if offline."""
        if self.state != "online" or self.valid_zones is None:
            return ""
        return self.valid_zones[0] if len(self.valid_zones) == 1 else "none"


@dataclass(frozen=True)
class MemorySysfs:
    """/sys/devices/system/memory: block size, auto-online type, and the blocks by id."""

    block_size: int
    auto_online_blocks: str | None
    blocks: tuple[MemoryBlock, ...]


def parse_memory_sysfs(files: Mapping[str, str], page_size: int,
                       root: str = MEMORY_DIR) -> MemorySysfs:
    """Build the block table from ``files`` (path -> text) under ``root``.

    A ``memoryN/nodeM`` key (any text) records the block's node link.
    """
    size_text = files.get(f"{root}/block_size_bytes")
    if size_text is None:
        raise SysfsParseError(f"{root}/block_size_bytes is needed to place the blocks")
    block_size = _hex(size_text, f"{root}/block_size_bytes")
    auto = files.get(f"{root}/auto_online_blocks")
    attrs: dict[int, dict[str, str]] = {}
    pattern = re.compile(re.escape(root) + r"/memory(\d+)/(\w+)$")
    for key, text in files.items():
        if m := pattern.match(key):
            attrs.setdefault(int(m[1]), {})[m[2]] = text.strip()
    blocks = tuple(_block(attrs[i], f"{root}/memory{i}", i, block_size // page_size)
                   for i in sorted(attrs))
    return MemorySysfs(block_size, auto.strip() if auto is not None else None, blocks)


def _block(text: dict[str, str], d: str, block_id: int, pages: int) -> MemoryBlock:
    nodes = [int(a[4:]) for a in text if re.fullmatch(r"node\d+", a)]
    zones = text.get("valid_zones")
    phys = _hex(text["phys_index"], f"{d}/phys_index") if "phys_index" in text else None
    return MemoryBlock(
        block_id, (block_id if phys is None else phys) * pages, pages, text.get("state"),
        _bool(text["online"], f"{d}/online") if "online" in text else None,
        None if zones is None else () if zones == "none" else tuple(zones.split()),
        _bool(text["removable"], f"{d}/removable") if "removable" in text else None,
        phys, nodes[0] if nodes else None)


def _hex(text: str, path: str) -> int:
    try:
        return int(text.strip(), 16)
    except ValueError:
        raise SysfsParseError(f"{path}: {text.strip()!r} is not a hex number") from None


def _bool(text: str, path: str) -> bool:
    if text.strip() not in ("0", "1"):
        raise SysfsParseError(f"{path}: {text.strip()!r} is not 0 or 1")
    return text.strip() == "1"


def render_lsmem(mem: MemorySysfs, page_size: int) -> str:
    """Runs of like blocks, one line each, in the spirit of util-linux ``lsmem``.

    Blocks merge while they are contiguous and agree on state, zone,
    removable and node.  Kernel: (util-linux) sys-utils/lsmem.c
    """
    runs: list[list[MemoryBlock]] = []
    for b in mem.blocks:
        last = runs[-1][-1] if runs else None
        if last is not None and last.id + 1 == b.id and _key(last) == _key(b):
            runs[-1].append(b)
        else:
            runs.append([b])
    lines = [f"{'RANGE':<37} {'SIZE':>9} {'STATE':>13} {'REMOVABLE':>9} {'BLOCK':>9} "
             f"{'NODE':>4} ZONES"]
    for run in runs:
        first, last = run[0], run[-1]
        start, end = first.start_pfn * page_size, last.end_pfn * page_size
        ids = f"{first.id}" if first is last else f"{first.id}-{last.id}"
        lines.append(f"{start:#018x}-{end - 1:#018x} {format_size(end - start):>9} "
                     f"{_show(first.state):>13} {_yes(first.removable):>9} {ids:>9} "
                     f"{_show(first.node):>4} {_zones(first)}")
    online = sum(b.nr_pages for b in mem.blocks if b.state == "online") * page_size
    offline = sum(b.nr_pages for b in mem.blocks if b.state != "online") * page_size
    lines += ["", f"Memory block size:    {format_size(mem.block_size)}",
              f"Total online memory:  {format_size(online)}",
              f"Total offline memory: {format_size(offline)}",
              f"auto_online_blocks:   {_show(mem.auto_online_blocks)}"]
    return "\n".join(lines) + "\n"


def _key(b: MemoryBlock) -> tuple:
    return b.state, b.valid_zones, b.removable, b.node


def _zones(b: MemoryBlock) -> str:
    if b.valid_zones is None:
        return "?"
    return " ".join(b.valid_zones) or "none"


def _yes(v: bool | None) -> str:
    return "?" if v is None else "yes" if v else "no"


def _show(v: object) -> str:
    return "?" if v is None else str(v)
