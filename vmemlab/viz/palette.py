"""The one palette: a colour (and, where hue is not enough, a hatch) per state.

Colours are the Okabe-Ito set (Okabe & Ito 2008, "Color Universal Design"),
vendored as hex so any matplotlib >= 3.8 draws the same picture, plus greys
and colours from Paul Tol's schemes (https://personal.sron.nl/~pault/) for
the classes Okabe-Ito has no room for: light yellow for free memory (far
from Reclaimable's orange in lightness, so the two stay apart under every
colour-vision deficiency), pale green for balloon pages (movable, given
away), indigo for pages ``alloc_contig_range()`` took, wine, green and pale
cyan for virtio-mem's plugged subblocks (a kernel zone, ZONE_MOVABLE, not
added), light blue for a real machine's pages without kpageflags flags.
``tests/test_viz_draw.py`` checks every set of classes that can share a
picture for distance (CIE76 delta E) under simulated protanopia,
deuteranopia and tritanopia.
A pageblock's migratetype has the colour of the pages it is meant for
(Movable = movable pages, Isolate = isolated free pages), so the same state
has the same colour in every picture.  Classes that stop an unplug, isolated
cells and the contig, balloon and kernel-zone classes also carry a hatch, in
the legend and on small maps, so they never rely on hue alone.

``colour(x)`` accepts a ``CellClass``, ``MigrateType``, ``PageState`` or
``PageKind``.  ``add_legend`` lists only the classes present in the
picture (``note_classes`` records them as each drawing is made).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from weakref import WeakKeyDictionary

import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap, to_rgb
from matplotlib.patches import Patch

from ..constants import MigrateType, PageKind, PageState
from .classes import CLASS_LABELS, NR_CLASSES, PB_BASE, CellClass, kind_class, state_class
from .figures import LEGEND_PT

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
    CellClass.FREE: "#EEDD88",                   # Paul Tol "light yellow"
    CellClass.ISOLATED: OKABE_ITO["sky blue"],
    CellClass.MOVABLE: OKABE_ITO["bluish green"],
    CellClass.RECLAIMABLE: OKABE_ITO["orange"],
    CellClass.UNMOVABLE: OKABE_ITO["vermillion"],
    CellClass.PINNED: OKABE_ITO["reddish purple"],
    CellClass.PAGE_OFFLINE: OKABE_ITO["blue"],
    CellClass.BALLOON: "#A6DBA0",                # pale green (ColorBrewer PRGn)
    CellClass.CONTIG: "#332288",                 # Paul Tol "indigo"
    CellClass.NO_FLAGS: "#92C5DE",               # light blue (ColorBrewer RdBu)
    CellClass.PB_UNMOVABLE: OKABE_ITO["vermillion"],
    CellClass.PB_MOVABLE: OKABE_ITO["bluish green"],
    CellClass.PB_RECLAIMABLE: OKABE_ITO["orange"],
    CellClass.PB_HIGHATOMIC: "#40004B",          # dark purple (ColorBrewer PRGn)
    CellClass.PB_ISOLATE: OKABE_ITO["sky blue"],
    CellClass.PB_UNKNOWN: "#666666",
    CellClass.SB_KERNEL: "#882255",              # Paul Tol "wine"
    CellClass.SB_MOVABLE: "#117733",             # Paul Tol "green"
    CellClass.SB_PLUGGED: "#99DDFF",             # Paul Tol "light cyan"
}
CLASS_HATCHES: dict[CellClass, str] = {
    CellClass.ISOLATED: "..", CellClass.UNMOVABLE: "//", CellClass.PINNED: "xx",
    CellClass.CONTIG: "||", CellClass.BALLOON: "--",
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
CELL_LINE = (0.0, 0.0, 0.0, 0.25)   # around each cell of a small map
RANGE_LINE = OKABE_ITO["black"]     # a pfn range a caller asked for (outline_range)
DEVICE_LINE = "#AA3377"        # a virtio-mem device's region (Paul Tol "purple")
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


# The classes each Axes shows, recorded by the drawing functions (``note_classes``).
_PRESENT: WeakKeyDictionary[Any, frozenset[CellClass]] = WeakKeyDictionary()


def note_classes(ax: Any, *cells: np.ndarray) -> frozenset[CellClass]:
    """Record which classes ``ax`` shows now: those in the ``cells`` arrays; returns them."""
    codes: set[int] = set()
    for c in cells:
        codes.update(np.unique(np.asarray(c)).tolist())
    present = frozenset(CellClass(int(c)) for c in codes if 0 <= c < NR_CLASSES)
    _PRESENT[ax] = present
    return present


def present_classes(target: Any) -> frozenset[CellClass] | None:
    """The classes an Axes (or every Axes of a Figure) shows, or None if nothing was noted."""
    axes = getattr(target, "axes", None)
    if isinstance(axes, list):            # a Figure: the union over its axes
        noted = [_PRESENT[a] for a in axes if a in _PRESENT]
        return frozenset().union(*noted) if noted else None
    return _PRESENT.get(target)


def shown(classes: Iterable[CellClass], target: Any) -> list[CellClass]:
    """``classes`` in their order, keeping only those ``target`` (Axes or Figure) shows."""
    present = present_classes(target)
    return [c for c in classes if present is None or c in present]


def add_legend(ax: Any, classes: Iterable[CellClass], title: str | None = None,
               extra: Iterable[Any] = (), where: str = "right", **kw: Any) -> Any:
    """Add a legend of ``classes`` (then ``extra`` handles) to the right of ``ax``.

    Only classes the picture shows are listed: those noted for ``ax`` (for
    ``where="below"``, for any axes of the figure) by the drawing functions.
    ``where="below"`` puts it under the figure instead, in columns (a
    figure legend: the figure should hold only ``ax``, as in a widget).
    Returns None when there is nothing to list.
    """
    if where not in ("right", "below"):
        raise ValueError(f"where={where!r} is not one of ['right', 'below']")
    target = ax.figure if where == "below" else ax
    handles = legend_handles(shown(classes, target)) + list(extra)
    if not handles:
        return None
    if where == "below":
        opts = {"loc": "outside lower center", "ncols": 3, "fontsize": LEGEND_PT,
                "frameon": False, "title": title, "title_fontsize": LEGEND_PT}
        opts.update(kw)
        return ax.figure.legend(handles=handles, **opts)
    opts = {"fontsize": LEGEND_PT, "frameon": False, "title": title,
            "title_fontsize": LEGEND_PT}
    if _alone_in_constrained_figure(ax):      # the layout makes room right of everything
        opts.update({k: v for k, v in kw.items() if k != "bbox_to_anchor"})
        opts["loc"] = "outside right upper"
        return ax.figure.legend(handles=handles, **opts)
    opts.update({"loc": "upper left", "bbox_to_anchor": (1.15, 1.0)})
    opts.update(kw)
    return ax.legend(handles=handles, **opts)


def _alone_in_constrained_figure(ax: Any) -> bool:
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    fig = ax.figure
    return (len(fig.axes) == 1 and fig.axes[0] is ax
            and isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine))


def legend_classes(leg: Any) -> list[CellClass]:
    """The classes a legend lists (its class patches), in order."""
    by_label = {CLASS_LABELS[c]: c for c in CellClass}
    return [by_label[t.get_text()] for t in leg.get_texts() if t.get_text() in by_label]
