"""The one palette: a colour (and, where hue is not enough, a hatch) per state.

Colours are the Okabe-Ito set (Okabe & Ito 2008, "Color Universal Design"),
vendored as hex so any matplotlib >= 3.8 draws the same picture, plus greys,
one Paul Tol colour for the HighAtomic type nothing in the model creates,
and three more Paul Tol colours for virtio-mem's plugged subblocks (rose:
online in a kernel zone, green: online in ZONE_MOVABLE, sand: plugged but
not added), chosen to stay apart from the subblock map's other classes
under every colour-vision deficiency.
A pageblock's migratetype has the colour of the pages it is meant for
(Movable = movable pages, Isolate = isolated free pages), so the same state
has the same colour in every picture.  Unmovable, pinned and isolated cells
also carry a hatch, in the legend and on small maps, so they never rely on
hue alone.

``colour(x)`` accepts a ``CellClass``, ``MigrateType``, ``PageState`` or
``PageKind``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap, to_rgb
from matplotlib.patches import Patch

from ..constants import MigrateType, PageKind, PageState
from .classes import CLASS_LABELS, NR_CLASSES, PB_BASE, CellClass, kind_class, state_class

OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky blue": "#56B4E9",
    "bluish green": "#009E73", "yellow": "#F0E442", "blue": "#0072B2",
    "vermillion": "#D55E00", "reddish purple": "#CC79A7",
}
# Line colours for series plots, in Okabe-Ito's order (black last: it is the axes').
SERIES_COLOURS = tuple(OKABE_ITO[n] for n in ("blue", "vermillion", "bluish green", "orange",
                                               "reddish purple", "sky blue", "yellow", "black"))

CLASS_COLOURS: dict[CellClass, str] = {
    CellClass.NOT_PRESENT: "#FFFFFF",
    CellClass.OFFLINE: "#BBBBBB",
    CellClass.RESERVED: OKABE_ITO["black"],
    CellClass.FREE: OKABE_ITO["yellow"],
    CellClass.ISOLATED: OKABE_ITO["sky blue"],
    CellClass.MOVABLE: OKABE_ITO["bluish green"],
    CellClass.RECLAIMABLE: OKABE_ITO["orange"],
    CellClass.UNMOVABLE: OKABE_ITO["vermillion"],
    CellClass.PINNED: OKABE_ITO["reddish purple"],
    CellClass.PAGE_OFFLINE: OKABE_ITO["blue"],
    CellClass.PB_UNMOVABLE: OKABE_ITO["vermillion"],
    CellClass.PB_MOVABLE: OKABE_ITO["bluish green"],
    CellClass.PB_RECLAIMABLE: OKABE_ITO["orange"],
    CellClass.PB_HIGHATOMIC: "#882255",          # Paul Tol "wine"
    CellClass.PB_ISOLATE: OKABE_ITO["sky blue"],
    CellClass.PB_UNKNOWN: "#777777",
    CellClass.SB_KERNEL: "#CC6677",              # Paul Tol "rose"
    CellClass.SB_MOVABLE: "#117733",             # Paul Tol "green"
    CellClass.SB_PLUGGED: "#DDCC77",             # Paul Tol "sand"
}
CLASS_HATCHES: dict[CellClass, str] = {
    CellClass.ISOLATED: "..", CellClass.UNMOVABLE: "//", CellClass.PINNED: "xx",
    CellClass.PB_UNMOVABLE: "//", CellClass.PB_HIGHATOMIC: "++", CellClass.PB_ISOLATE: "..",
    CellClass.SB_KERNEL: "\\\\",
}
# Hatch lines drawn on light cells are black; on dark ones, white.
HATCH_EDGE = {c: ("#FFFFFF" if sum(to_rgb(CLASS_COLOURS[c])) < 1.2 else "#000000")
              for c in CellClass}

# The pageblock map shades a migratetype by how full the pageblock is:
# alpha = FILL_FLOOR for an all-free pageblock, 1 for a full one.
FILL_FLOOR = 0.3

# Moves and failures drawn over a heatmap (migration pictures).
MOVE_SRC = OKABE_ITO["black"]
MOVE_DST = OKABE_ITO["black"]
FAILED = OKABE_ITO["black"]
ZONE_LINE = OKABE_ITO["black"]
BLOCK_LINE = "#666666"
DEVICE_LINE = "#882255"        # a virtio-mem device's region (Paul Tol "wine")
USABLE_LINE = OKABE_ITO["black"]   # its usable region


def colour(x: CellClass | MigrateType | PageState | PageKind) -> str:
    """The hex colour of a cell class, migratetype, page state or page kind."""
    if isinstance(x, CellClass):
        return CLASS_COLOURS[x]
    if isinstance(x, MigrateType):
        return CLASS_COLOURS[CellClass(PB_BASE + int(x))]
    if isinstance(x, PageState):
        if x is PageState.ALLOCATED:
            raise ValueError("an allocated page's colour depends on its PageKind: pass that")
        return CLASS_COLOURS[state_class(int(x))]
    if isinstance(x, PageKind):
        return CLASS_COLOURS[kind_class(x)]
    raise ValueError(f"no colour for {x!r}: pass a CellClass, MigrateType, PageState "
                     "or PageKind")


def hatch(x: CellClass | MigrateType) -> str | None:
    """The hatch of a class or migratetype, or None."""
    if isinstance(x, MigrateType):
        x = CellClass(PB_BASE + int(x))
    return CLASS_HATCHES.get(x)


def hatch_edge(x: CellClass | MigrateType) -> str:
    """The colour of hatch lines on a class or migratetype (black on light, white on dark)."""
    if isinstance(x, MigrateType):
        x = CellClass(PB_BASE + int(x))
    return HATCH_EDGE[x]


def class_rgb() -> np.ndarray:
    """(NR_CLASSES, 3) float RGB of every class code, for building images."""
    return np.array([to_rgb(CLASS_COLOURS[CellClass(c)]) for c in range(NR_CLASSES)])


def class_cmap() -> tuple[ListedColormap, BoundaryNorm]:
    """A colormap and norm that map each class code to its colour exactly."""
    cmap = ListedColormap([CLASS_COLOURS[CellClass(c)] for c in range(NR_CLASSES)],
                          name="vmemlab_classes")
    norm = BoundaryNorm(np.arange(NR_CLASSES + 1) - 0.5, NR_CLASSES)
    return cmap, norm


def legend_handles(classes: Iterable[CellClass]) -> list[Patch]:
    """Proxy patches (colour, hatch, label) for ``ax.legend(handles=...)``."""
    return [Patch(facecolor=CLASS_COLOURS[c], edgecolor=HATCH_EDGE[c] if c in CLASS_HATCHES
                  else "#444444", hatch=CLASS_HATCHES.get(c), linewidth=0.5,
                  label=CLASS_LABELS[c])
            for c in classes]


def add_legend(ax: Any, classes: Iterable[CellClass], title: str | None = None,
               extra: Iterable[Any] = (), where: str = "right", **kw: Any) -> Any:
    """Add a legend of ``classes`` (then ``extra`` handles) to the right of ``ax``.

    ``where="below"`` puts it under the figure instead, in columns (a
    figure legend: the figure should hold only ``ax``, as in a widget).
    """
    handles = legend_handles(classes) + list(extra)
    if where == "below":
        opts = {"loc": "outside lower center", "ncols": 3, "fontsize": "x-small",
                "frameon": False, "title": title, "title_fontsize": "x-small"}
        opts.update(kw)
        return ax.figure.legend(handles=handles, **opts)
    if where != "right":
        raise ValueError(f"where={where!r} is not one of ['right', 'below']")
    opts = {"loc": "upper left", "bbox_to_anchor": (1.15, 1.0), "fontsize": "small",
            "frameon": False, "title": title, "title_fontsize": "small"}
    opts.update(kw)
    return ax.legend(handles=handles, **opts)
