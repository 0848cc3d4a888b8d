"""What a migration step did, as data and text: moves, the isolation test, the busy page.

``alloc_contig_range()`` isolates a range, migrates the pages in use out of
it (one ``migrate_folio_move`` event per folio) and then checks the range
with ``test_pages_isolated`` (``fin_pfn < end_pfn`` names the first page
still busy: the one that made it fail).  ``migration_step`` collects those
events from a frame, a trace or a plain list; ``range_rects`` turns a pfn
range into cell rectangles of a grid.  Numpy only.

Kernel: mm/migrate.c, migrate_folio_move(); mm/page_isolation.c,
test_pages_isolated()
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..constants import errname
from ..trace import Event, MigrateFolioMove, TestPagesIsolated
from .grid import Grid


@dataclass(frozen=True)
class MigrationStep:
    """The moves and isolation checks of one step, in event order."""

    moves: tuple[MigrateFolioMove, ...]
    checks: tuple[TestPagesIsolated, ...]

    @property
    def failure(self) -> TestPagesIsolated | None:
        """The last isolation check that found a busy page, or None."""
        failed = [c for c in self.checks if c.fin_pfn < c.end_pfn]
        return failed[-1] if failed else None

    @property
    def busy_pfn(self) -> int | None:
        """The page that made the step fail, or None."""
        f = self.failure
        return None if f is None else f.fin_pfn

    @property
    def nr_pages_moved(self) -> int:
        return sum(1 << m.order for m in self.moves)

    def pfn_range(self) -> tuple[int, int] | None:
        """The smallest ``[start, end)`` holding every moved page and checked range."""
        ends = [(m.src_pfn, m.src_pfn + (1 << m.order)) for m in self.moves]
        ends += [(m.dst_pfn, m.dst_pfn + (1 << m.order)) for m in self.moves]
        ends += [(c.start_pfn, c.end_pfn) for c in self.checks]
        if not ends:
            return None
        return min(s for s, _ in ends), max(e for _, e in ends)


@dataclass(frozen=True)
class MoveRun:
    """Consecutive moves that carried ``[src_pfn, src_pfn + nr_pages)`` to ``dst_pfn`` onwards."""

    src_pfn: int
    dst_pfn: int
    nr_pages: int
    nr_folios: int


def move_runs(step: MigrationStep) -> list[MoveRun]:
    """Merge moves whose sources and destinations both continue the previous move."""
    runs: list[MoveRun] = []
    for m in step.moves:
        n = 1 << m.order
        last = runs[-1] if runs else None
        if (last is not None and last.src_pfn + last.nr_pages == m.src_pfn
                and last.dst_pfn + last.nr_pages == m.dst_pfn):
            runs[-1] = MoveRun(last.src_pfn, last.dst_pfn, last.nr_pages + n, last.nr_folios + 1)
        else:
            runs.append(MoveRun(m.src_pfn, m.dst_pfn, n, 1))
    return runs


def migration_step(src: Any) -> MigrationStep:
    """The migration events of a Frame, a Trace (all frames) or an event list."""
    events: Iterable[Event]
    if hasattr(src, "events") and callable(src.events):
        events = src.events()
    elif hasattr(src, "events"):
        events = src.events
    else:
        events = src
    events = list(events)
    return MigrationStep(tuple(e for e in events if isinstance(e, MigrateFolioMove)),
                         tuple(e for e in events if isinstance(e, TestPagesIsolated)))


def migration_summary(src: Any, max_runs: int = 16) -> str:
    """The text beside a migration picture: runs of moves, then each isolation test."""
    step = migration_step(src)
    runs = move_runs(step)
    lines = [f"{_count(len(step.moves), 'folio')} moved "
             f"({_count(step.nr_pages_moved, 'page')})"]
    lines += [f"  [{r.src_pfn:#x}, {r.src_pfn + r.nr_pages:#x}) -> "
              f"[{r.dst_pfn:#x}, {r.dst_pfn + r.nr_pages:#x}): "
              f"{_count(r.nr_pages, 'page')} in {_count(r.nr_folios, 'folio')}"
              for r in runs[:max_runs]]
    if len(runs) > max_runs:
        lines.append(f"  ... and {len(runs) - max_runs} more runs")
    for c in step.checks:
        verdict = (f"busy page at pfn {c.fin_pfn:#x}" if c.fin_pfn < c.end_pfn
                   else "every page isolated")
        lines.append(f"test_pages_isolated [{c.start_pfn:#x}, {c.end_pfn:#x}): {verdict} "
                     f"({errname(c.ret)})")
    return "\n".join(lines) + "\n"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def range_rects(grid: Grid, start_pfn: int, end_pfn: int) -> list[tuple[float, float, float]]:
    """Cells of ``[start_pfn, end_pfn)`` in ``grid`` as (x, y, width) row pieces.

    Each piece is a rectangle one row high whose left edge is ``x`` and top
    is ``y`` in image coordinates; the range is clipped to the grid.
    """
    start_pfn, end_pfn = max(start_pfn, grid.start_pfn), min(end_pfn, grid.end_pfn)
    if start_pfn >= end_pfn:
        return []
    first = grid.cell_index(start_pfn)
    last = grid.cell_index(end_pfn - 1)
    out = []
    for row in range(first // grid.width, last // grid.width + 1):
        c0 = max(first, row * grid.width) - row * grid.width
        c1 = min(last, (row + 1) * grid.width - 1) - row * grid.width
        out.append((c0 - 0.5, row - 0.5, float(c1 - c0 + 1)))
    return out


def cell_centre(grid: Grid, pfn: int) -> tuple[float, float]:
    """(x, y) of the centre of the cell holding ``pfn``."""
    row, col = grid.rowcol(pfn)
    return float(col), float(row)
