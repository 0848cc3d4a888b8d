"""A real machine's pages: per-pfn arrays, counts per memory block, and their text.

``page_arrays`` combines /proc/kpageflags (what each page is) with the
memory-block table (which pfns have memory at all, and which blocks are
offline); the rest counts and draws those arrays, in the same characters as
``vmemlab.charmap`` draws a simulated machine.

Kernel: fs/proc/page.c, stable_page_flags(); drivers/base/memory.c
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..charmap import PAGE_CHARS, STATE_CHARS
from ..constants import NO_ZONE, PageKind, PageState, ZoneType, format_size
from .kpageflags import page_flag_bits, page_states
from .proctext import Zoneinfo
from .sysfs import MemoryBlock

ZONE_TYPES = {str(z): z for z in ZoneType}


@dataclass(frozen=True)
class PageArrays:
    """Per-pfn arrays over [0, nr_pfns): PageState, PageKind and PageFlag bytes."""

    state: np.ndarray
    kind: np.ndarray
    flags: np.ndarray

    @property
    def nr_pfns(self) -> int:
        return len(self.state)


def page_arrays(words: np.ndarray, blocks: Sequence[MemoryBlock] | None) -> PageArrays:
    """The page arrays of kpageflags ``words``, corrected by the memory blocks if known.

    pfns outside every memory block are ABSENT and pages of offline blocks
    OFFLINE: kpageflags reads both as holes (or as no flags at all).
    """
    state, kind = page_states(words)
    if blocks is not None:
        present, offline = np.zeros(len(words), bool), np.zeros(len(words), bool)
        for b in blocks:
            present[b.start_pfn:b.end_pfn] = True
            if b.state == "offline":
                offline[b.start_pfn:b.end_pfn] = True
        state[~present], kind[~present] = PageState.ABSENT, PageKind.NONE
        state[offline], kind[offline] = PageState.OFFLINE, PageKind.NONE
    return PageArrays(state, kind, page_flag_bits(words))


def block_page_counts(blocks: Sequence[MemoryBlock], state: np.ndarray) -> np.ndarray:
    """Pages per PageState (columns) of each block (rows); -1 where ``state`` stops short."""
    counts = np.full((len(blocks), len(PageState)), -1, np.int64)
    for i, b in enumerate(blocks):
        if b.end_pfn <= len(state):
            counts[i] = np.bincount(state[b.start_pfn:b.end_pfn], minlength=len(PageState))
    return counts


def pageblock_zones(nr_pageblocks: int, pageblock_order: int, zoneinfo: Zoneinfo | None,
                    blocks: Sequence[MemoryBlock]) -> np.ndarray:
    """The ZoneType of each pageblock: zone spans first, then online blocks' own zones."""
    pb_zone = np.full(nr_pageblocks, NO_ZONE, np.uint8)
    for z in zoneinfo.zones if zoneinfo else ():
        if z.populated and z.name in ZONE_TYPES:
            start, end = z.start_pfn, z.start_pfn + z.spanned
            pb_zone[start >> pageblock_order:end >> pageblock_order] = ZONE_TYPES[z.name]
    for b in blocks:
        if b.zone in ZONE_TYPES:
            pb_zone[b.start_pfn >> pageblock_order:b.end_pfn >> pageblock_order] = \
                ZONE_TYPES[b.zone]
    return pb_zone


def render_page_map(pages: PageArrays, start: int = 0, end: int | None = None,
                    width: int = 64) -> str:
    """One character per page of [start, end), lines as ``Machine.page_map`` prints them."""
    end = pages.nr_pfns if end is None else end
    if not 0 <= start < end <= pages.nr_pfns:
        raise ValueError(f"pfn range [{start:#x}, {end:#x}) must lie in "
                         f"[0, {pages.nr_pfns:#x}), the pfns read from /proc/kpageflags")
    table = np.full((len(PageState), max(PageKind) + 1), "?", dtype="<U1")
    for s, c in STATE_CHARS.items():
        table[s, :] = c
    for k, c in PAGE_CHARS.items():
        table[PageState.ALLOCATED, k] = c
    chars = table[pages.state[start:end], pages.kind[start:end]]
    digits = max(4, len(f"{end:x}"))
    return "".join(f"{pfn:#0{digits + 2}x} " + "".join(chars[pfn - start:pfn - start + width])
                   + "\n" for pfn in range(start, end, width))


def render_page_summary(pages: PageArrays, words: np.ndarray, page_size: int) -> str:
    """Pages by state, allocated pages by kind, and how many carried no flags at all."""
    n = pages.nr_pfns
    by_state = np.bincount(pages.state, minlength=len(PageState))
    lines = [f"/proc/kpageflags: pfns [0x0, {n:#x}) ({format_size(n * page_size)})",
             f"{'state':<16}{'pages':>12}  share"]
    lines += [f"{s.name.lower():<16}{by_state[s]:>12}  {100 * by_state[s] / max(n, 1):5.1f}%"
              for s in PageState if by_state[s]]
    allocated = pages.kind[pages.state == PageState.ALLOCATED]
    if len(allocated):
        by_kind = np.bincount(allocated, minlength=max(PageKind) + 1)
        lines += ["", f"{'allocated, kind':<16}{'pages':>12}  share"]
        lines += [f"{str(k):<16}{by_kind[k]:>12}  {100 * by_kind[k] / len(allocated):5.1f}%"
                  for k in PageKind if by_kind[k]]
    no_flags = int(np.count_nonzero(words == 0))
    if no_flags:
        lines += ["", f"{no_flags} pfns carry no flags at all (raw kernel allocations, "
                      "per-CPU free lists, or memory not yet initialised): counted as kernel."]
    return "\n".join(lines) + "\n"


def render_block_table(blocks: Sequence[MemoryBlock], counts: np.ndarray | None) -> str:
    """One line per memory block; its pages by state, or "-" where kpageflags stops."""
    lines = [f"{'block':>6} {'start_pfn':>11} {'state':>13} {'zones':<14} {'node':>4} "
             + " ".join(f"{s.name.lower():>12}" for s in PageState)]
    for i, b in enumerate(blocks):
        zones = "?" if b.valid_zones is None else " ".join(b.valid_zones) or "none"
        row = (["-"] * len(PageState) if counts is None or counts[i, 0] < 0
               else [str(c) for c in counts[i]])
        lines.append(f"{b.id:>6} {b.start_pfn:#11x} {b.state or '?':>13} {zones:<14} "
                     f"{'?' if b.node is None else b.node:>4} "
                     + " ".join(f"{c:>12}" for c in row))
    return "\n".join(lines) + "\n"
