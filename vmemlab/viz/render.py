"""Off-screen heatmap rendering to PNG bytes, updating one image in place.

Any zoom of ``draw_heatmap`` works, the subblock map of a virtio-mem device
included (``HeatmapRenderer(m, "subblock", device="vmem0")``).

``HeatmapRenderer`` draws a heatmap once on a private Agg figure (pyplot
never sees it) and keeps three layers as pixels: the background (axes,
ticks, legend), the overlays (zone lines and names, memory-block edges,
device outlines; drawn once on a transparent layer) and, for each image
artist, which cell every pixel of the axes shows.  A new state then costs
a grid, ``set_data`` on the same image artists (so they stay the truth), a
numpy gather of cell colours into the pixels, the overlay pixels blended
on top, and the PNG encoding; matplotlib draws again only when the grid's
shape, the overlays (memory added, a zone grew) or the legend (a class
appeared or went) changed, or to hatch the cells of small maps.  The PNG
bytes go straight into an ``ipywidgets.Image``, which works in JupyterLab,
Voila and nbval alike (no ipympl, no ``Output`` capture).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from .figures import DPI, FIGSIZE, min_text_px
from .heatmap import draw_heatmap, image_alpha, update_heatmap
from .palette import class_rgb

_RGB = np.round(class_rgb() * 255.0).astype(np.float32)      # class code -> RGB 0..255


@dataclass(frozen=True)
class _PixelMap:
    """Which cell each pixel of an image's visible part shows (nearest cell centre)."""

    rows: slice
    cols: slice
    cell_row: np.ndarray
    cell_col: np.ndarray


def _pixel_map(ax: Any, image: Any, height: int, shape: tuple[int, int]) -> _PixelMap | None:
    """The pixels of ``image`` inside ``ax``, each with its (row, col) cell.

    Data coordinates come from the axes' transform at each pixel centre, so
    the map follows the axes limits and the image extent exactly.
    """
    left, right, bottom, top = image.get_extent()
    nrows, ncols = shape
    box = ax.bbox
    x_px = np.arange(int(np.floor(box.x0)), int(np.ceil(box.x1)))
    y_px = np.arange(int(np.floor(box.y0)), int(np.ceil(box.y1)))       # from the bottom
    inv = ax.transData.inverted()
    y_centre, x_centre = (box.y0 + box.y1) / 2, (box.x0 + box.x1) / 2
    xs = inv.transform(np.column_stack([x_px + 0.5, np.full(x_px.size, y_centre)]))[:, 0]
    ys = inv.transform(np.column_stack([np.full(y_px.size, x_centre), y_px + 0.5]))[:, 1]
    col = np.floor((xs - left) / (right - left) * ncols).astype(np.int64)
    row = np.floor((ys - top) / (bottom - top) * nrows).astype(np.int64)
    keep_c = (col >= 0) & (col < ncols) & (x_px + 0.5 > box.x0) & (x_px + 0.5 < box.x1)
    keep_r = (row >= 0) & (row < nrows) & (y_px + 0.5 > box.y0) & (y_px + 0.5 < box.y1)
    if not keep_c.any() or not keep_r.any():
        return None
    cx, ry = x_px[keep_c], y_px[keep_r]
    buf_rows = height - 1 - ry                                          # from the top
    order = np.argsort(buf_rows)
    return _PixelMap(slice(int(buf_rows.min()), int(buf_rows.max()) + 1),
                     slice(int(cx.min()), int(cx.max()) + 1),
                     row[keep_r][order], col[keep_c])


def _layer(canvas: FigureCanvasAgg, ax: Any, artists: list[Any]) -> tuple[np.ndarray, ...]:
    """Draw ``artists`` alone on a transparent canvas: (flat pixel index, RGB, alpha)."""
    renderer = canvas.get_renderer()
    renderer.clear()
    for a in artists:
        ax.draw_artist(a)
    px = np.asarray(canvas.buffer_rgba()).reshape(-1, 4)
    idx = np.flatnonzero(px[:, 3])
    return idx, px[idx, :3].astype(np.float32), px[idx, 3:4].astype(np.float32) / 255.0


def _blend(out: np.ndarray, layer: tuple[np.ndarray, ...]) -> None:
    idx, rgb, alpha = layer
    if idx.size:
        flat = out.reshape(-1, 3)
        flat[idx] = (rgb * alpha + flat[idx] * (1.0 - alpha) + 0.5).astype(np.uint8)


class HeatmapRenderer:
    """A heatmap of one machine's states that renders each new state fast."""

    def __init__(self, src: Any, zoom: str = "pageblock", *,
                 figsize: tuple[float, float] = FIGSIZE["heatmap"], dpi: int = DPI,
                 title: str | None = None, **heatmap_kw: Any) -> None:
        self.figure = Figure(figsize=figsize, dpi=dpi, layout="constrained")
        self.canvas = FigureCanvasAgg(self.figure)
        self.ax = self.figure.add_subplot()
        self.artists: Any = draw_heatmap(self.ax, src, zoom, title=title, **heatmap_kw)
        self._pixels: np.ndarray | None = None
        self._capture_background()

    @property
    def min_text_px(self) -> float:
        """The smallest text of the picture, in pixels of the PNG."""
        return min_text_px(self.figure)

    @property
    def grid(self) -> Any:
        """The grid now shown."""
        return self.artists.grid

    def _images(self) -> list[tuple[Any, Any]]:
        """(image artist, (cells, alpha or None)) of everything drawn from cells."""
        art = self.artists
        out = [(art.image, (art.grid.cells, image_alpha(art.grid)))]
        strip = getattr(art, "strip", None)
        if strip is not None:
            out.append((strip, (art.grid.strip.reshape(-1, 1), None)))
        return out

    def _capture_background(self) -> None:
        """Draw everything once, freeze the layout, keep the layers as pixels."""
        art = self.artists
        for a in [*art.artists(), *self.ax.spines.values()]:   # spines go over the image
            a.set_animated(True)
        self.figure.set_layout_engine("constrained")
        self.canvas.draw()
        self.figure.set_layout_engine("none")
        self._background = np.array(self.canvas.buffer_rgba())[..., :3]
        height = self._background.shape[0]
        self._maps = [_pixel_map(self.ax, a, height, data[0].shape)
                      for a, data in self._images()]
        self._draw_overlay()
        self._compose()

    def _draw_overlay(self) -> None:
        """The outlines, labels and spines as a transparent layer of pixels."""
        art = self.artists
        skip = {id(a) for a, _ in self._images()} | {id(h) for h in art.hatches}
        overlays = [a for a in art.artists() if id(a) not in skip]
        self._overlay = _layer(self.canvas, self.ax, overlays + list(self.ax.spines.values()))
        self._overlay_key = id(getattr(art, "overlay", None))

    def _compose(self) -> None:
        """Background, then cell colours, hatches and overlays, into ``self._pixels``."""
        out = self._background.copy()
        for pm, (_, (cells, alpha)) in zip(self._maps, self._images(), strict=True):
            if pm is None:
                continue
            rgb = _RGB[cells]
            if alpha is not None:
                rgb = rgb * alpha[..., None] + 255.0 * (1.0 - alpha[..., None])
            rgb = (rgb + 0.5).astype(np.uint8)
            out[pm.rows, pm.cols] = rgb[pm.cell_row][:, pm.cell_col]
        if self.artists.hatches:
            _blend(out, _layer(self.canvas, self.ax, self.artists.hatches))
        _blend(out, self._overlay)
        self._pixels = out

    def update(self, src: Any) -> bytes:
        """Show ``src`` (Machine, Snapshot or Frame) and return the PNG."""
        old, old_legend = self.artists.grid, self.artists.legend
        grid = update_heatmap(self.artists, src)
        for a in self.artists.artists():
            a.set_animated(True)
        if (grid.cells.shape, grid.start_pfn, grid.pages_per_cell) != (
                old.cells.shape, old.start_pfn, old.pages_per_cell) \
                or self.artists.legend is not old_legend:
            self._capture_background()        # new axes or legend: draw everything again
            return self.png()
        if id(getattr(self.artists, "overlay", None)) != self._overlay_key:
            self._draw_overlay()              # outlines moved: only their layer
        self._compose()
        return self.png()

    def pixels(self) -> np.ndarray:
        """The current picture as an (height, width, 3) uint8 array."""
        assert self._pixels is not None
        return self._pixels

    def png(self) -> bytes:
        """The current pixels as PNG bytes (fast zlib level, no timestamps)."""
        return rgb_png(self.pixels())


def rgb_png(pixels: np.ndarray) -> bytes:
    """An (height, width, 3) uint8 array as PNG bytes (fast zlib level)."""
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


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
    the first sample and spans a round length (1, 2 or 5 times a power of
    ten, at least ``min_span`` seconds) just longer than the samples, so a
    0.3 s unplug fills the chart instead of a sliver of a minute.  When a
    sample falls past it, the span grows to the next round length and the
    axes are drawn again.
    """

    def __init__(self, series: Any, *, figsize: tuple[float, float] = FIGSIZE["series"],
                 dpi: int = DPI, min_span: float = 0.1) -> None:
        from .subblocks import draw_plug_series

        self.figure = Figure(figsize=figsize, dpi=dpi, layout="constrained")
        self.canvas = FigureCanvasAgg(self.figure)
        self.ax = self.figure.add_subplot()
        self.chart = draw_plug_series(self.ax, series, markers=True)
        self.lines = self.chart.artists
        self.unit = self.ax.get_ylabel()
        self.min_span = min_span
        self.series = series
        self._background: Any = None
        self._span: tuple[float, float] = (0.0, 0.0)
        self.update(series)

    @property
    def min_text_px(self) -> float:
        """The smallest text of the chart, in pixels of the PNG."""
        return min_text_px(self.figure)

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
            self._span = (t0, t0 + round_span(1.05 * (t1 - t0), self.min_span))
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


def round_span(length: float, minimum: float) -> float:
    """The smallest of 1, 2, 5 x 10**k that is at least ``length`` and ``minimum``."""
    want = max(float(length), float(minimum))
    k = math.floor(math.log10(want))
    for m in (1.0, 2.0, 5.0, 10.0):
        if m * 10.0 ** k >= want * (1 - 1e-12):
            return m * 10.0 ** k
    return 10.0 ** (k + 1)
