"""Fragmentation charts: free blocks per order and type, indices and any series over time.

Each function takes an Axes and returns the artists it drew; the text that
goes beside each chart is in ``vmemlab.viz.fragdata``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..constants import MigrateType
from .figures import LABEL_PT, LEGEND_PT, TITLE_PT
from .fragdata import FragSeries, FreeBlocks
from .palette import SERIES_COLOURS, colour, hatch, hatch_edge

LINESTYLES = ("solid", "dashed", "dashdot", "dotted")
_MT_BY_NAME = {str(mt): mt for mt in MigrateType}


@dataclass
class ChartArtists:
    """What a chart function drew: its main artists and the legend."""

    artists: list[Any]
    legend: Any


def draw_free_blocks(ax: Any, fb: FreeBlocks, zone: str | None = None, *,
                     pages: bool = False, log: bool = False,
                     legend: bool = True) -> ChartArtists:
    """Stacked bars: free blocks (or pages, ``pages=True``) per order, by migratetype.

    ``log`` uses a symmetric-log y axis, so single blocks stay visible next
    to thousands.  The dashed line marks the pageblock order.
    """
    counts = fb.zone(zone).astype(float)
    orders = np.arange(counts.shape[1])
    if pages:
        counts = counts * (1 << orders)
    bottom = np.zeros(len(orders))
    bars = []
    for name, row in zip(fb.types, counts, strict=True):
        mt = _MT_BY_NAME.get(name)
        face = colour(mt) if mt is not None else "#999999"
        edge = hatch_edge(mt) if mt is not None and hatch(mt) else "#444444"
        bars.append(ax.bar(orders, row, bottom=bottom, color=face, edgecolor=edge,
                           hatch=hatch(mt) if mt is not None else None, linewidth=0.5,
                           label=name))
        bottom += row
    ax.set_xticks(orders)
    ax.set_xlabel("order (block of 2**order pages)", fontsize=LABEL_PT)
    ax.set_ylabel("free pages" if pages else "free blocks", fontsize=LABEL_PT)
    ax.set_title(f"zone {zone or list(fb.free)[-1]}: free "
                 f"{'pages' if pages else 'blocks'} per order and migratetype",
                 fontsize=TITLE_PT)
    if log:
        ax.set_yscale("symlog", linthresh=1.0)
    ax.axvline(fb.pageblock_order, color="#000000", linewidth=0.8, linestyle="dashed")
    leg = ax.legend(fontsize=LEGEND_PT, frameon=False) if legend else None
    return ChartArtists(bars, leg)


def draw_timeseries(ax: Any, t: Sequence[float], series: Mapping[str, Sequence[float]], *,
                    ylabel: str = "", xlabel: str = "simulated time (s)",
                    step: bool = True, legend: bool = True,
                    markers: bool = False) -> ChartArtists:
    """One line per named series against ``t``: colour and dash both tell them apart.

    ``step`` draws values as holding until the next sample (state that
    changes at events, like a plugged size); ``markers`` dots each sample,
    so samples close together in time stay visible.
    """
    lines = []
    for i, (name, values) in enumerate(series.items()):
        if len(values) != len(t):
            raise ValueError(f"series {name!r} has {len(values)} values for {len(t)} times")
        kw = {"color": SERIES_COLOURS[i % len(SERIES_COLOURS)],
              "linestyle": LINESTYLES[i % len(LINESTYLES)], "linewidth": 1.8, "label": name}
        if step:
            kw["drawstyle"] = "steps-post"
        if markers:
            kw.update(marker="o", markersize=3)
        lines.append(ax.plot(np.asarray(t, float), np.asarray(values, float), **kw)[0])
    ax.set_xlabel(xlabel, fontsize=LABEL_PT)
    ax.set_ylabel(ylabel, fontsize=LABEL_PT)
    leg = ax.legend(fontsize=LEGEND_PT, frameon=False) if legend and lines else None
    return ChartArtists(lines, leg)


def draw_fragmentation(ax: Any, series: FragSeries, *, legend: bool = True) -> ChartArtists:
    """The unusable-free and fragmentation indices of one zone over time.

    Values are the kernel's /1000; a fragmentation index of -1 means an
    allocation of that order would succeed.
    """
    out = draw_timeseries(ax, series.time, {
        f"unusable free index (order {series.order})": series.unusable / 1000.0,
        f"fragmentation index (order {series.order})": series.fragmentation / 1000.0},
        ylabel="index", legend=legend)
    ax.set_ylim(-1.05, 1.05)
    ax.axhline(0.0, color="#000000", linewidth=0.5)
    ax.set_title(f"zone {series.zone}: fragmentation over time", fontsize=TITLE_PT)
    return out
