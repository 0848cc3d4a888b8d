"""Pictures and widgets of vmemlab: the only place matplotlib and ipywidgets are used.

    from vmemlab import viz
    fig, ax = viz.new_figure("heatmap")
    art = viz.draw_heatmap(ax, m)                  # per-pageblock map (default zoom)
    viz.outline_range(art, start_pfn, end_pfn)     # outline a range someone asked for
    print(viz.heatmap_summary(art.grid, m))        # the same picture as text
    viz.TraceViewer(m.trace)                       # step through recorded frames
    art = viz.draw_subblocks(ax, m, "vmem0")       # a virtio-mem device, subblock by subblock
    print(viz.subblock_summary(art.grid))
    viz.HypervisorPanel(m)                         # drive a live guest: qom-set, reboot, run

Modules, each with one job.  Pure data (numpy only, importable without
matplotlib): ``classes`` (cell classes), ``source`` (arrays of a machine,
snapshot or frame), ``grid`` (heatmap grids, overlays as data),
``vmemgrid`` (a virtio-mem device's subblock map), ``vmemseries``
(plugged vs requested over time), ``moves`` (migration steps),
``fragdata`` (buddyinfo/pagetypeinfo as arrays, indices over time).
Drawing: ``palette``, ``figures``, ``heatmap``, ``subblocks``,
``migration``, ``fragplots``, ``render``; widgets: ``widgets``
(TraceViewer, TraceComparison for what-if runs side by side), ``panel``
(HypervisorPanel).  Names below are loaded on first use, so importing
``vmemlab.viz.grid`` does not import matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CellClass": "classes", "classify_pages": "classes",
    "mem_view": "source", "zone_spans": "source", "memory_block_edges": "source",
    "Grid": "grid", "heatmap_grid": "grid", "page_grid": "grid", "pageblock_grid": "grid",
    "page_classes": "grid", "pageblock_classes": "grid", "overlay_paths": "grid",
    "row_ticks": "grid", "cell_counts": "grid", "heatmap_summary": "grid",
    "MigrationStep": "moves", "migration_step": "moves", "migration_summary": "moves",
    "MoveRun": "moves", "move_runs": "moves",
    "FreeBlocks": "fragdata", "FragSeries": "fragdata", "parse_buddyinfo": "fragdata",
    "parse_pagetypeinfo": "fragdata", "free_blocks": "fragdata",
    "free_blocks_summary": "fragdata", "fragmentation_series": "fragdata",
    "fragmentation_summary": "fragdata", "timeseries_summary": "fragdata",
    "colour": "palette", "hatch": "palette", "legend_handles": "palette",
    "add_legend": "palette", "class_cmap": "palette",
    "FIGSIZE": "figures", "new_figure": "figures", "figure_png": "figures",
    "HeatmapArtists": "heatmap", "draw_heatmap": "heatmap", "update_heatmap": "heatmap",
    "outline_range": "heatmap", "note_classes": "palette", "present_classes": "palette",
    "MigrationArtists": "migration", "draw_migration": "migration",
    "draw_free_blocks": "fragplots", "draw_fragmentation": "fragplots",
    "draw_timeseries": "fragplots",
    "HeatmapRenderer": "render",
    "TraceViewer": "widgets", "TraceComparison": "widgets",
    "DeviceSpan": "source", "vmem_views": "source", "range_outline": "grid",
    "SubblockGrid": "vmemgrid", "subblock_grid": "vmemgrid", "subblock_overlay": "vmemgrid",
    "subblock_summary": "vmemgrid",
    "VmemSeries": "vmemseries", "PlugRecorder": "vmemseries", "plug_series": "vmemseries",
    "plug_summary": "vmemseries",
    "SubblockArtists": "subblocks", "draw_subblocks": "subblocks",
    "update_subblocks": "subblocks", "draw_plug_series": "subblocks",
    "HypervisorPanel": "panel",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vmemlab.viz' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
