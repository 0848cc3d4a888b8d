"""Fixed figure sizes, and figures that belong to no global pyplot state.

Notebooks may use ``plt.subplots(figsize=FIGSIZE["heatmap"])``; code that
renders off-screen (widgets, the CLI's ``--png``) uses ``new_figure``, whose
figures pyplot never sees, so nothing is shown or leaked by accident.
"""

from __future__ import annotations

import io
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100
# Text sizes in points (1 pt = DPI/72 px): at 100 dpi the smallest, 8 pt, is 11 px,
# still 10 px or more where a widget shows a figure at 90% of its size.
TICK_PT = 8.0
LEGEND_PT = 8.0
LABEL_PT = 9.0
TITLE_PT = 10.5
MIN_TEXT_PT = 8.0
FIGSIZE = {
    "heatmap": (9.0, 5.5),
    "migration": (9.0, 5.5),
    "free_blocks": (8.0, 4.0),
    "series": (8.0, 3.5),
}


def new_figure(kind: str = "heatmap", nrows: int = 1, ncols: int = 1,
               **kw: Any) -> tuple[Figure, Any]:
    """A Figure of the fixed size for ``kind`` with an Agg canvas, and its axes."""
    if kind not in FIGSIZE:
        raise ValueError(f"kind={kind!r} is not one of {sorted(FIGSIZE)}")
    fig = Figure(figsize=FIGSIZE[kind], dpi=DPI, layout=kw.pop("layout", "constrained"))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, **kw)
    return fig, axes


def min_text_px(fig: Figure) -> float:
    """The size in pixels of the smallest visible text the figure holds (at its dpi)."""
    from matplotlib.text import Text

    sizes = [t.get_fontsize() for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip()]
    return min(sizes, default=0.0) * fig.dpi / 72.0


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes (draws it once)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()
