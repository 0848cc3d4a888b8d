"""Off-screen heatmap rendering to PNG bytes, updating one image in place.

Any zoom of ``draw_heatmap`` works, the subblock map of a virtio-mem device
included (``HeatmapRenderer(m, "subblock", device="vmem0")``).

``HeatmapRenderer`` draws a heatmap once on a private Agg figure (pyplot
never sees it), keeps the static parts (axes, ticks, legend) as a saved
background, and for each new state only sets the image data and blits the
image and its overlays onto that background.  The PNG bytes go straight
into an ``ipywidgets.Image``, which works in JupyterLab, Voila and nbval
alike (no ipympl, no ``Output`` capture).
"""

from __future__ import annotations

import io
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from .figures import DPI, FIGSIZE
from .heatmap import HeatmapArtists, draw_heatmap, update_heatmap


class HeatmapRenderer:
    """A heatmap of one machine's states that renders each new state fast."""

    def __init__(self, src: Any, zoom: str = "pageblock", *,
                 figsize: tuple[float, float] = FIGSIZE["heatmap"], dpi: int = DPI,
                 title: str | None = None, **heatmap_kw: Any) -> None:
        self.figure = Figure(figsize=figsize, dpi=dpi, layout="constrained")
        self.canvas = FigureCanvasAgg(self.figure)
        self.ax = self.figure.add_subplot()
        self.artists: HeatmapArtists = draw_heatmap(self.ax, src, zoom, title=title,
                                                    **heatmap_kw)
        self._background: Any = None
        self._capture_background()

    @property
    def grid(self) -> Any:
        """The grid now shown."""
        return self.artists.grid

    def _capture_background(self) -> None:
        """Draw everything static once, freeze the layout, and keep the pixels."""
        for a in self.artists.artists():
            a.set_animated(True)
        self.figure.set_layout_engine("constrained")
        self.canvas.draw()
        self.figure.set_layout_engine("none")
        self._background = self.canvas.copy_from_bbox(self.figure.bbox)
        self._blit()

    def _blit(self) -> None:
        self.canvas.restore_region(self._background)
        for a in self.artists.artists():
            self.ax.draw_artist(a)
        for spine in self.ax.spines.values():
            self.ax.draw_artist(spine)

    def update(self, src: Any) -> bytes:
        """Show ``src`` (Machine, Snapshot or Frame) and return the PNG."""
        old = self.artists.grid
        grid = update_heatmap(self.artists, src)
        if (grid.cells.shape, grid.start_pfn, grid.pages_per_cell) != (
                old.cells.shape, old.start_pfn, old.pages_per_cell):
            self._capture_background()
        else:
            for a in self.artists.artists():     # new hatches and zone labels included
                a.set_animated(True)
            self._blit()
        return self.png()

    def png(self) -> bytes:
        """The current pixels as PNG bytes (fast zlib level, no timestamps)."""
        return canvas_png(self.canvas)


def canvas_png(canvas: FigureCanvasAgg) -> bytes:
    """An Agg canvas's pixels as PNG bytes (fast zlib level, no timestamps)."""
    w, h = canvas.get_width_height()
    img = Image.frombuffer("RGBA", (w, h), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class PlugSeriesRenderer:
    """A plugged-vs-requested chart that redraws only its lines while the time axis fits.

    The y axis is fixed (0 to the device's region); the time axis starts at
    the first sample and doubles its span when a sample falls past it, the
    only time the axes are drawn again.
    """

    def __init__(self, series: Any, *, figsize: tuple[float, float] = FIGSIZE["series"],
                 dpi: int = DPI, min_span: float = 60.0) -> None:
        from .subblocks import draw_plug_series

        self.figure = Figure(figsize=figsize, dpi=dpi, layout="constrained")
        self.canvas = FigureCanvasAgg(self.figure)
        self.ax = self.figure.add_subplot()
        self.chart = draw_plug_series(self.ax, series)
        self.lines = self.chart.artists
        self.unit = self.ax.get_ylabel()
        self.min_span = min_span
        self.series = series
        self._background: Any = None
        self._span: tuple[float, float] = (0.0, 0.0)
        self.update(series)

    def _scaled(self, series: Any) -> list[Any]:
        scale = 1 << (30 if self.unit == "GiB" else 20)
        return [series.requested / scale, series.plugged / scale, series.usable / scale]

    def update(self, series: Any) -> bytes:
        """Show ``series`` (a VmemSeries of the same device) and return the PNG."""
        self.series = series
        t = series.time
        for line, y in zip(self.lines, self._scaled(series), strict=False):
            line.set_data(t, y)
        t0 = float(t[0]) if len(t) else 0.0
        t1 = float(t[-1]) if len(t) else 0.0
        lo, hi = self._span
        if self._background is None or t0 < lo or t1 > hi:
            span = self.min_span
            while t0 + span <= t1:
                span *= 2
            self._span = (t0, t0 + span)
            self.ax.set_xlim(*self._span)
            for line in self.lines:
                line.set_animated(True)
            self.figure.set_layout_engine("constrained")
            self.canvas.draw()
            self.figure.set_layout_engine("none")
            self._background = self.canvas.copy_from_bbox(self.figure.bbox)
        self.canvas.restore_region(self._background)
        for line in self.lines:
            self.ax.draw_artist(line)
        return self.png()

    def png(self) -> bytes:
        """The current pixels as PNG bytes."""
        return canvas_png(self.canvas)
