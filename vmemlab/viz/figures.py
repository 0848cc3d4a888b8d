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


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes (draws it once)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()
