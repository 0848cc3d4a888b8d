"""Fragmentation as data: free blocks per order and type, and indices over time.

Everything starts from the kernel's text (text first): ``/proc/buddyinfo``
and ``/proc/pagetypeinfo`` of a simulated machine, of a trace frame's
snapshot, or of a real Linux box, parsed into numpy arrays.  The indices are
``vmemlab.metrics``'s integers scaled by 1000, as debugfs prints them.
Numpy only.

Kernel: mm/vmstat.c, frag_show_print(), pagetypeinfo_showfree_print(),
unusable_free_index(), __fragmentation_index()
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..metrics import fragmentation_index_of, unusable_index
from ..realmem import proctext


def _zone_key(node: int, zone: str) -> str:
    return zone if node == 0 else f"node{node} {zone}"


def parse_buddyinfo(text: str) -> dict[str, np.ndarray]:
    """/proc/buddyinfo as {zone: free blocks per order}; zones of node n>0 are "node<n> Zone".

    Raises ValueError (``ProcParseError``) naming a line that is not the kernel's.
    """
    return {_zone_key(r.node, r.zone): np.array(r.nr_free, np.int64)
            for r in proctext.parse_buddyinfo(text)}


@dataclass(frozen=True)
class FreeBlocks:
    """/proc/pagetypeinfo as arrays: free blocks [type, order] and pageblocks [type] per zone."""

    pageblock_order: int
    types: tuple[str, ...]
    free: dict[str, np.ndarray]
    pageblocks: dict[str, np.ndarray]

    @property
    def nr_orders(self) -> int:
        return int(next(iter(self.free.values())).shape[1])

    def zone(self, name: str | None = None) -> np.ndarray:
        """The [type, order] counts of zone ``name`` (default: the last zone, Normal)."""
        name = list(self.free)[-1] if name is None else name
        if name not in self.free:
            raise ValueError(f"zone={name!r} is not one of {list(self.free)}")
        return self.free[name]


def parse_pagetypeinfo(text: str) -> FreeBlocks:
    """Parse /proc/pagetypeinfo (">100000" counts as 100000, the kernel's cap)."""
    p = proctext.parse_pagetypeinfo(text)
    rows: dict[str, dict[str, tuple[int, ...]]] = {}
    for r in p.free:
        rows.setdefault(_zone_key(r.node, r.zone), {})[r.type] = r.counts
    empty = (0,) * p.nr_orders
    free = {z: np.array([by_type.get(t, empty) for t in p.type_names], np.int64)
            for z, by_type in rows.items()}
    blocks = {_zone_key(r.node, r.zone): np.array(r.counts, np.int64) for r in p.blocks}
    if not free:
        raise ValueError("the pagetypeinfo text lists no free counts")
    return FreeBlocks(p.pageblock_order, p.type_names, free, blocks)


def free_blocks(src: Any) -> FreeBlocks:
    """FreeBlocks of a Machine (its /proc/pagetypeinfo) or of pagetypeinfo text."""
    if isinstance(src, str):
        return parse_pagetypeinfo(src)
    proc = getattr(src, "proc", None)
    if proc is not None:
        return parse_pagetypeinfo(proc.pagetypeinfo())
    raise ValueError(f"cannot read free blocks from {type(src).__name__}: "
                     "pass a Machine or /proc/pagetypeinfo text")


def free_blocks_summary(fb: FreeBlocks, zone: str | None = None) -> str:
    """A table of one zone: free blocks per order and type, then free pages per type."""
    name = list(fb.free)[-1] if zone is None else zone
    counts = fb.zone(name)
    head = f"zone {name:<8} order " + "".join(f"{o:>7d}" for o in range(fb.nr_orders))
    lines = [head + "   pages"]
    for t, row in zip(fb.types, counts, strict=True):
        pages = int((row << np.arange(len(row))).sum())
        lines.append(f"{t:>20} " + "".join(f"{int(c):>7d}" for c in row) + f" {pages:>7d}")
    total = counts.sum(axis=0)
    pages = int((total << np.arange(len(total))).sum())
    lines.append(f"{'all types':>20} " + "".join(f"{int(c):>7d}" for c in total)
                 + f" {pages:>7d}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ series
@dataclass(frozen=True)
class FragSeries:
    """One zone's fragmentation indices at ``order`` over a run (x1000, like debugfs)."""

    zone: str
    order: int
    time: np.ndarray
    step: np.ndarray
    unusable: np.ndarray
    fragmentation: np.ndarray


def _buddyinfo_text(item: Any) -> str | None:
    if isinstance(item, str):
        return item
    for obj in (item, getattr(item, "state", None)):
        text = getattr(obj, "buddyinfo", None)
        if isinstance(text, str):
            return text
    proc = getattr(item, "proc", None)
    return proc.buddyinfo() if proc is not None else None


def _time_of(item: Any, default: float) -> float:
    t = getattr(item, "time", None)
    if t is None:
        t = getattr(item, "now", None)
    return default if t is None else float(t)


def fragmentation_series(items: Iterable[Any], zone: str = "Normal",
                         order: int = 9) -> FragSeries:
    """Indices of ``zone`` at ``order`` for each frame, snapshot, machine or buddyinfo text.

    Frames that kept no state are skipped; ``step`` holds the index of each
    item that was used.  A zone missing from an item raises ValueError.
    """
    times, steps, unusable, frag = [], [], [], []
    for i, item in enumerate(items):
        text = _buddyinfo_text(item)
        if text is None:
            continue
        zones = parse_buddyinfo(text)
        if zone not in zones:
            raise ValueError(f"zone={zone!r} is not one of {list(zones)} (item {i})")
        counts = zones[zone].tolist()
        if not 0 <= order < len(counts):
            raise ValueError(f"order={order} must be within 0..{len(counts) - 1}")
        times.append(_time_of(item, float(i)))
        steps.append(getattr(item, "index", i))
        unusable.append(unusable_index(counts, order))
        frag.append(fragmentation_index_of(counts, order))
    return FragSeries(zone, order, np.array(times, float), np.array(steps, np.int64),
                      np.array(unusable, np.int64), np.array(frag, np.int64))


def _milli(v: int) -> str:
    q = int(v / 1000)
    return f"{q}.{abs(v - q * 1000):03d}"


def fragmentation_summary(series: FragSeries) -> str:
    """A table: step, time, unusable index, fragmentation index (debugfs's %d.%03d)."""
    lines = [f"zone {series.zone}, order {series.order}",
             f"{'step':>6} {'time (s)':>10} {'unusable':>9} {'extfrag':>8}"]
    lines += [f"{s:>6d} {t:>10.3f} {_milli(u):>9} {_milli(f):>8}"
              for s, t, u, f in zip(series.step.tolist(), series.time.tolist(),
                                    series.unusable.tolist(), series.fragmentation.tolist(),
                                    strict=True)]
    return "\n".join(lines) + "\n"


def timeseries_summary(t: Sequence[float], series: dict[str, Sequence[float]],
                       time_label: str = "time (s)") -> str:
    """A table of named series against ``t``, one row per sample."""
    names = list(series)
    for n in names:
        if len(series[n]) != len(t):
            raise ValueError(f"series {n!r} has {len(series[n])} values for {len(t)} times")
    width = max([12, *(len(n) + 1 for n in names)])
    lines = [f"{time_label:>10}" + "".join(f"{n:>{width}}" for n in names)]
    for i, ti in enumerate(t):
        lines.append(f"{ti:>10.3f}" + "".join(f"{_num(series[n][i]):>{width}}" for n in names))
    return "\n".join(lines) + "\n"


def _num(v: float) -> str:
    return f"{int(v)}" if float(v).is_integer() else f"{v:.3f}"
