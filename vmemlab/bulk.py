"""Bulk allocation and freeing of order-0 pages, vectorized.

Filling a 16 GiB guest is four million page allocations; doing them one
Python call at a time would take seconds.  These functions give *exactly*
the result of the equivalent loop of single calls (same pfns, same free
lists, same pageblock types, same events), but work a free block at a time
and mark pages in the memmap with numpy slices:

* ``alloc_pages_bulk(node, gfp, n)`` == ``n`` calls of ``alloc_pages(0, gfp)``,
  stopping at the first failure.  Taking order-0 pages one by one from a
  block of order k hands out its pages in ascending order (``expand`` keeps
  the lower half and the next smallest block is always the upper half just
  freed), so a whole block can be taken at once.
* ``free_pages_bulk(node, pfns)`` == freeing each page in ascending pfn
  order; many pages are merged level by level with numpy (vmemlab.merge),
  leaving the same free lists in the same order.

The kernel's counterpart, alloc_pages_bulk(), exists for the same reason
(fewer trips through the allocator).  Kernel: mm/page_alloc.c,
alloc_pages_bulk_noprof(), free_pages_bulk(); tests/test_bulk.py checks the
equivalence on random machines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .constants import MigrateType, PageKind
from .fallback import FALLBACKS, rmqueue_other_type
from .freelist import Tail, account_freepages
from .gfp import Gfp
from .merge import free_blocks_batch, free_pages_batch
from .node import Owner
from .page_alloc import (
    AllocFlags,
    AllocRequest,
    alloc_block,
    alloc_flags_nofragment,
    free_one_page,
    free_pages_ok,
    prep_new_page,
    watermark_headroom,
    zone_uncharge,
)
from .trace import MmPageAlloc, MmPageFree

if TYPE_CHECKING:
    from .listhead import FreeList
    from .node import Node
    from .zone import Zone

_GFP_KSWAPD = int(Gfp.KSWAPD_RECLAIM)
_MOVABLE, _HIGHATOMIC = int(MigrateType.MOVABLE), int(MigrateType.HIGHATOMIC)
_REBUILD_MIN = 64  # pages freed at once from which merging them with numpy pays
# Few or long runs are marked slice by slice; many short ones by fancy indexing.
_SLICE_RUNS = 32
_SLICE_RUN = 64


Runs = tuple[np.ndarray, np.ndarray]  # first pfns and lengths, in allocation order
# Who makes requests of a turn: gfp, kind, and its new owners' name and activity.
Requester = tuple[str | int, PageKind, str, object]


class RunLists:
    """Runs while being collected: Python lists for a few, numpy parts for many."""

    __slots__ = ("starts", "lengths", "parts")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.lengths: list[int] = []
        self.parts: list[Runs] = []

    def add(self, start: int, length: int) -> None:
        self.starts.append(start)
        self.lengths.append(length)

    def extend(self, starts: list[int] | np.ndarray, lengths: list[int] | np.ndarray) -> None:
        if isinstance(starts, np.ndarray) or isinstance(lengths, np.ndarray):
            self._flush()
            self.parts.append((np.asarray(starts, np.int64), np.asarray(lengths, np.int64)))
        else:
            self.starts += starts
            self.lengths += lengths

    def arrays(self) -> Runs:
        self._flush()
        if len(self.parts) == 1:
            return self.parts[0]
        return (np.concatenate([s for s, _ in self.parts] or [np.zeros(0, np.int64)]),
                np.concatenate([n for _, n in self.parts] or [np.zeros(0, np.int64)]))

    def _flush(self) -> None:
        if self.starts:
            self.parts.append((np.array(self.starts, np.int64),
                               np.array(self.lengths, np.int64)))
            self.starts, self.lengths = [], []


def alloc_pages_bulk(node: Node, gfp: str | int, nr_pages: int,
                     kind: PageKind | None = None, owner: int = -1,
                     fast_only: bool = False) -> np.ndarray:
    """Allocate up to ``nr_pages`` order-0 pages; return their pfns in allocation order.

    Stops early, like the loop it replaces, at the first page the allocator
    cannot provide even after reclaim.  With ``fast_only`` it stops where
    the next page would need the slow path (kswapd, the min watermark,
    direct reclaim).
    """
    return _expand(*alloc_bulk_runs(node, gfp, nr_pages, kind, owner, fast_only))


def alloc_bulk_runs(node: Node, gfp: str | int, nr_pages: int,
                    kind: PageKind | None = None, owner: int = -1,
                    fast_only: bool = False) -> Runs:
    """``alloc_pages_bulk`` as runs of consecutive pfns (cheap for large fills)."""
    req = AllocRequest(node, 0, gfp, kind)
    if nr_pages < 0:
        raise ValueError(f"nr_pages={nr_pages} must not be negative")
    zonelist = node.zonelist(req.highest)
    out = RunLists()
    remaining = nr_pages
    fast = AllocFlags.WMARK_LOW
    if zonelist:
        fast |= alloc_flags_nofragment(node, zonelist[0])
    if req.gfp & _GFP_KSWAPD:
        fast |= AllocFlags.KSWAPD
    while remaining and zonelist:
        remaining -= _bulk_from_freelist(node, zonelist, req, remaining, fast, owner, out)
        if not remaining or fast_only:
            break
        got = alloc_block(node, req)  # the slow path, for one page
        if got is None:
            break
        zone, pfn = got
        prep_new_page(zone, pfn, req, owner)
        out.add(pfn, 1)
        remaining -= 1
    return out.arrays()


def alloc_bulk_many(node: Node, requests: Iterable[tuple[str | int, PageKind | None, int,
                                                          Callable[[], int]]]) -> list[int]:
    """``alloc_bulk_runs()`` for each (gfp, kind, nr_pages, owner) in turn; pages each got.

    Stops after the first request that falls short, as a loop of calls
    checking each result would.  ``owner`` is called as its request starts,
    so owners are created in the same order as by such a loop.
    """
    turn = BulkRequests(node)
    got_all: list[int] = []
    for gfp, kind, nr_pages, owner in requests:
        got = turn.alloc(gfp, kind, nr_pages, owner())
        got_all.append(got)
        if got < nr_pages:
            break
    return got_all


class BulkRequests:
    """``alloc_bulk_runs()`` request after request, faster for many small ones (a fill).

    ``alloc(gfp, kind, n, owner)`` gives what ``alloc_bulk_runs`` gives (same
    pages, lists, counters, events), keeping each (gfp, kind)'s decoded
    request and first zone between calls.  A request that fits above the
    first zone's low watermark is ``_rmqueue_bulk`` there, as
    ``alloc_bulk_runs`` starts; what is left (another zone, the slow path)
    goes through ``alloc_bulk_runs``.  ``take_run`` takes runs of requests
    that the types' own lists surely serve, a type at a time.
    """

    __slots__ = ("node", "fast", "owners", "runs", "counts", "layout")

    def __init__(self, node: Node) -> None:
        self.node = node
        self.fast: dict[tuple[str | int, int], _FastPath] = {}
        # take_run()'s requests, written out by flush(): owners to make (kind,
        # name, activity), runs (start, end, kind, [(pages, owner), ...]) to mark
        # allocated, pages per fast path.
        self.owners: list[Requester] = []
        self.runs: list[tuple[int, int, int, list[tuple[int, int]]]] = []
        self.counts: dict[int, list] = {}
        self.layout: tuple | None = None   # take_run()'s view of its requesters

    def _path(self, gfp: str | int, kind: PageKind | None) -> _FastPath:
        key = (gfp, -1 if kind is None else int(kind))
        path = self.fast.get(key)
        if path is None:
            path = self.fast[key] = _FastPath(self.node, gfp, kind)
        return path

    def alloc(self, gfp: str | int, kind: PageKind | None, nr_pages: int, owner: int) -> int:
        """``alloc_bulk_runs(node, gfp, nr_pages, kind, owner)``; the pages it got."""
        path = self._path(gfp, kind)
        got, zone = 0, path.zone
        if zone is not None and 0 < nr_pages <= watermark_headroom(zone, path.flags,
                                                                   path.req.highest):
            got = _rmqueue_bulk(zone, nr_pages, path.req, path.flags, owner, None)
        if got < nr_pages:
            got += int(alloc_bulk_runs(self.node, gfp, nr_pages - got, kind, owner)[1].sum())
            self.fast.clear()   # the allocator may have changed anything: look again
            self.layout = None
        return got

    def take_run(self, requesters: Sequence[Requester], slots: Sequence[int],
                 sizes: Sequence[int], start: int) -> int:
        """``alloc()`` of each request from ``start`` on (``sizes[k]`` pages for
        ``requesters[slots[k]]``, a new owner each) while ``alloc()`` would serve
        them one after the other each from its first zone above the low
        watermark, surely: from its type's ``Tail`` and largest blocks
        (``_sure_supply``), or, where every type's lists are that simple
        (``_pooled``), from its Tail and then whole blocks of the largest order
        off the movable list, the movable type's own and the others' claimed
        (``rmqueue_other_type()``); the end of that run (``start``: none).
        The new owners' ids follow ``len(node.owners)`` in request order, once
        ``flush()`` has made them.

        Only requests of one type share lists, and taking pages one request
        after another from the same lists is taking them all at once, so the
        run is one take per type, split between its requests in order.  The
        largest blocks go to the types in the order they run out.  A claim
        of a block of at least pageblock_order reads only the free lists and
        pageblock types (try_to_claim_block(), or the move to the
        requester's lists before 6.10), never the memmap ``flush()`` has yet
        to write.  The pages leave the lists and NR_FREE_PAGES at once; the
        owners, the memmap and the counters are written by ``flush()``,
        which must run before anything else allocates, makes an owner or
        reads the memmap.  Not with a trace on (its events go page by page).
        """
        if self.node.trace.enabled or start == len(sizes):
            return start
        gfp, kind, _, _ = requesters[slots[start]]
        path = self._path(gfp, kind)   # the first alone first: past the watermark, none
        if path.zone is None or not 0 < sizes[start] <= watermark_headroom(
                path.zone, path.flags, path.req.highest):
            return start
        if self.layout is None or self.layout[0] is not requesters:
            self.layout = _layout(requesters, [self._path(gfp, kind)
                                               for gfp, kind, _, _ in requesters])
        _, paths, zones, zone_of, group_of, _ = self.layout
        room = [-1 if zone is None else watermark_headroom(zone, path.flags, path.req.highest)
                for zone, path in zip(zones, paths, strict=True)]
        supply, pool = _supplies(paths, zones, zone_of, group_of)
        taken = [0] * len(paths)        # pages taken per zone
        pages = [0] * len(paths)        # pages taken per requester
        members: list[list[int]] = [[] for _ in paths]   # requests per lists
        takers: list[list[int]] = [[] for _ in paths]    # per zone: lists taking its
        # largest blocks, one entry per block, in the order they take them
        end = start
        for end in range(start, len(sizes)):
            slot, n = slots[end], sizes[end]
            z, g = zone_of[slot], group_of[slot]
            done = taken[z] + n
            if n <= 0 or done > room[slot]:
                break
            if n > supply[g]:
                size = pool[z][1]
                need = -(-(n - supply[g]) // size) if size else 0
                if not need or need > pool[z][0]:
                    break
                pool[z][0] -= need
                takers[z] += [g] * need
                supply[g] += need * size
            taken[z] = done
            supply[g] -= n
            pages[slot] += n
            members[g].append(end)
        else:
            end = len(sizes)
        if end > start:
            self._take_groups(requesters, slots, sizes, start, end, members, pages, takers)
        return end

    def _take_groups(self, requesters: Sequence[Requester], slots: Sequence[int],
                     sizes: Sequence[int], start: int, end: int, members: list[list[int]],
                     pages: list[int], takers: list[list[int]]) -> None:
        """take_run()'s takes: one per type, its runs split between the requests."""
        _, paths, _, _, _, kinds = self.layout
        first = len(self.node.owners) + len(self.owners) - start
        self.owners += [requesters[slots[k]] for k in range(start, end)]
        for path, n in zip(paths, pages, strict=True):
            if n:
                count = self.counts.get(id(path))
                if count is None:
                    self.counts[id(path)] = [path, n]
                else:
                    count[1] += n
        heads = _pop_largest(paths, takers)
        spans = self.runs
        for g, ks in enumerate(members):
            if not ks:
                continue
            path = paths[slots[ks[0]]]
            want = sum(sizes[k] for k in ks)
            if g in heads:
                starts, lengths = _take_pooled(path.zone, path.req.mt, want, heads[g])
            else:
                got = RunLists()
                _take_smallest_bulk(path.zone, want, path.req, -1, got, hand_out=False)
                starts, lengths = got.starts, got.lengths
                if got.parts:
                    starts, lengths = (a.tolist() for a in got.arrays())
            runs = zip(starts, lengths, strict=True)
            pos, left = next(runs)       # the next page to give, pages left in its run
            at, kind, owners = pos, kinds[slots[ks[0]]], []    # the span being made
            for k in ks:
                size, owner = sizes[k], first + k
                if kinds[slots[k]] != kind:
                    if owners:
                        spans.append((at, pos, kind, owners))
                    at, kind, owners = pos, kinds[slots[k]], []
                while size > left:
                    if left:
                        owners.append((left, owner))
                        size -= left
                        pos += left
                    start_pfn, left = next(runs)
                    if start_pfn != pos:         # not adjacent: a new span
                        if owners:
                            spans.append((at, pos, kind, owners))
                        at, pos, owners = start_pfn, start_pfn, []
                owners.append((size, owner))
                pos += size
                left -= size
            spans.append((at, pos, kind, owners))

    def flush(self) -> None:
        """Write out what ``take_run`` took: owners, memmap, counters (in that order)."""
        node = self.node
        if self.owners:
            base = len(node.owners)
            node.owners.extend(Owner(base + i, kind, name, act)
                               for i, (_, kind, name, act) in enumerate(self.owners))
            self.owners = []
        mark = node.mm.mark_allocated_owners
        for start, end, kind, owners in self.runs:
            mark(start, end, kind, owners)
        self.runs = []
        for path, n in self.counts.values():
            path.zone.nr_kind[path.req.kind] += n
            node.count_event(path.zone.pgalloc_event, n)
        self.counts = {}


def _layout(requesters: Sequence[Requester], paths: list[_FastPath]) -> tuple:
    """Requesters, their fast paths and zones, per requester the index of its zone
    and of its lists (zone and migratetype) among theirs, and its page kind."""
    zones = [path.zone for path in paths]
    zone_of = [zones.index(zone) for zone in zones]
    lists = [(zone_of[i], path.req.mt) for i, path in enumerate(paths)]
    return (requesters, paths, zones, zone_of, [lists.index(key) for key in lists],
            [int(path.req.kind) for path in paths])


def _supplies(paths: list[_FastPath], zones: list, zone_of: list[int],
              group_of: list[int]) -> tuple[list[int], list[list[int]]]:
    """take_run()'s pages per lists (at the index of its group) and, per zone
    (at its index), [blocks, pages per block] of the largest order it may share out."""
    supply = [0] * len(paths)
    pool = [[0, 0] for _ in paths]
    for z in set(zone_of):
        zone = zones[z]
        if zone is None:
            continue
        groups = {group_of[i]: paths[i].req.mt for i in range(len(paths)) if zone_of[i] == z}
        if all(_pooled(zone, mt) for mt in groups.values()):
            top = len(zone.free_area) - 1
            pool[z] = [zone.free_area[top].free_list[_MOVABLE].held(), 1 << top]
            for g, mt in groups.items():
                tail = zone.free_area[0].free_list[mt].pending
                supply[g] = tail.end - tail.start if type(tail) is Tail else 0
        else:
            for g, mt in groups.items():
                supply[g] = _sure_supply(zone, mt)
    return supply, pool


def _pooled(zone: Zone, mt: int) -> bool:
    """Are ``mt``'s free pages its Tail alone, and would it, out of them, take the
    movable list's largest blocks next (its own, or claimed whole)?

    Then no list below the largest order holds a block of ``mt``, and before
    the movable list no other list of the largest order the fallback search
    looks at first (FALLBACKS); the largest order is at least pageblock_order,
    so a claim takes the block whole without counting its pages.
    """
    top = len(zone.free_area) - 1
    if top < zone.node.geo.pageblock_order or mt not in FALLBACKS:
        return False
    lists = zone.free_area[top].free_list
    if mt != _MOVABLE:
        for other in (mt, *FALLBACKS[mt]):
            if other == _MOVABLE:
                break
            if lists[other].held():
                return False
    return not any(area.free_list[mt].held() for area in zone.free_area[:top])


def _pop_largest(paths: list[_FastPath], takers: list[list[int]]) -> dict[int, list[int]]:
    """Take the blocks take_run() shared out off the movable lists; their heads per lists."""
    heads: dict[int, list[int]] = {}
    for z, gs in enumerate(takers):
        if not gs:
            continue
        zone = paths[z].zone
        top = len(zone.free_area) - 1
        pfns = zone.free_area[top].free_list[_MOVABLE].pop_first(len(gs))
        account_freepages(zone, -(len(gs) << top), _MOVABLE)
        for g, pfn in zip(gs, pfns.tolist() if isinstance(pfns, np.ndarray) else pfns,
                          strict=True):
            heads.setdefault(g, []).append(pfn)
    return heads


def _take_pooled(zone: Zone, mt: int, want: int, heads: list[int]) -> tuple[list[int],
                                                                            list[int]]:
    """``want`` pages for ``mt``: its Tail, then the largest blocks at ``heads``
    (off their list already), the last one's rest the new Tail; as runs.

    What rmqueue_other_type() does to a block it claims for another type is
    done here: its pageblocks change type (before 6.10 not a highatomic one)
    and pgalloc_extfrag counts the claim.
    """
    starts, lengths = [], []
    tail = zone.free_area[0].free_list[mt].pending
    if type(tail) is Tail:
        n = tail.end - tail.start
        starts.append(tail.take(n))
        lengths.append(n)
        want -= n
    top = len(zone.free_area) - 1
    size = 1 << top
    for pfn in heads:
        n = min(size, want)
        starts.append(pfn)
        lengths.append(n)
        want -= n
    if n < size:
        Tail(zone, mt, pfn + n, pfn + size, [area.free_list[mt] for area in zone.free_area[:top]])
    if mt != _MOVABLE:
        node = zone.node
        mm, pbo = node.mm, node.geo.pageblock_order
        for pfn in heads:
            if node.profile.freelist_hygiene or mm.pb_mt[pfn >> pbo] != _HIGHATOMIC:
                mm.change_pageblock_range(pfn, top, MigrateType(mt))
        node.count_event("pgalloc_extfrag", len(heads))
    return starts, lengths


def _sure_supply(zone: Zone, mt: int) -> int:
    """Pages ``mt``'s lists surely hold: its Tail and its largest blocks (quick)."""
    tail = zone.free_area[0].free_list[mt].pending
    top = len(zone.free_area) - 1     # a Tail is below its block's order: never here
    pages = tail.end - tail.start if type(tail) is Tail else 0
    return pages + (len(zone.free_area[top].free_list[mt]) << top)


class _FastPath:
    """What every request of one (gfp, kind) shares: its decoded form and first zone."""

    __slots__ = ("req", "zone", "flags")

    def __init__(self, node: Node, gfp: str | int, kind: PageKind | None) -> None:
        self.req = AllocRequest(node, 0, gfp, kind)
        zonelist = node.zonelist(self.req.highest)
        self.zone = zonelist[0] if zonelist else None
        self.flags = AllocFlags.WMARK_LOW | alloc_flags_nofragment(node, self.zone)
        if self.req.gfp & _GFP_KSWAPD:
            self.flags |= AllocFlags.KSWAPD


def _expand(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The pfns of runs, run after run."""
    total = int(lengths.sum())
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(total, dtype=np.int64)


def _bulk_from_freelist(node: Node, zonelist: list[Zone], req: AllocRequest, limit: int,
                        alloc_flags: int, owner: int, out: RunLists) -> int:
    """get_page_from_freelist() for many pages: zone by zone, pass by pass."""
    taken = 0
    passes = [alloc_flags]
    if alloc_flags & AllocFlags.NOFRAGMENT:
        passes.append(alloc_flags & ~AllocFlags.NOFRAGMENT)
    for flags in passes:
        for zone in zonelist:
            while taken < limit:
                room = watermark_headroom(zone, flags, req.highest)
                if room <= 0:
                    break
                got = _rmqueue_bulk(zone, min(limit - taken, room), req, flags, owner, out)
                if not got:
                    break
                taken += got
            if taken == limit:
                return taken
    return taken


def _rmqueue_bulk(zone: Zone, n: int, req: AllocRequest, alloc_flags: int, owner: int,
                  out: RunLists | None) -> int:
    """Take ``n`` order-0 pages from one zone: whole blocks, then fallback steps."""
    got = 0
    while got < n:
        got += _take_smallest_bulk(zone, n - got, req, owner, out)
        if got == n:
            break
        # rmqueue(): the own lists are empty (all taken above): the fallback step
        pfn = rmqueue_other_type(zone, 0, req.mt, alloc_flags)
        if pfn is None:
            break
        # A claimed block's rest is a Tail right after the page: its first
        # pages are what the next _take_smallest_bulk() would take.
        run, tail = 1, zone.free_area[0].free_list[req.mt].pending
        if type(tail) is Tail and tail.start == pfn + 1:
            more = min(n - got - 1, tail.end - tail.start)
            if more:
                tail.take(more)
            run += more
        _hand_out_run(zone, pfn, run, req, owner)
        if out is not None:
            out.add(pfn, run)
        got += run
    return got


def _take_smallest_bulk(zone: Zone, want: int, req: AllocRequest, owner: int,
                        out: RunLists | None, hand_out: bool = True) -> int:
    """Repeated __rmqueue_smallest(order 0) on the requester's own lists.

    Order by order, the blocks at the head of the list are taken whole, a
    list at a time; only the last block may be split, its rest left as
    expand() would leave it (a ``Tail``, which the next call takes from
    first).  The whole blocks' heads keep their buddy order and list mark:
    every page is marked allocated right after (``_hand_out``; or by the caller,
    from ``out``, without ``hand_out``).
    """
    mt = req.mt
    tail = zone.free_area[0].free_list[mt].pending
    if type(tail) is Tail and tail.end - tail.start >= want:   # the common case: one run
        start = tail.take(want)
        if hand_out:
            _hand_out_run(zone, start, want, req, owner)
        if out is not None:
            out.add(start, want)
        return want
    # Without hand_out, the runs go straight to ``out`` (which the caller gives empty).
    taken = RunLists() if hand_out or out is None else out
    got = first = 0
    if type(tail) is Tail:
        got = min(want, tail.end - tail.start)
        taken.add(tail.take(got), got)
        first = len(tail.lists)   # the lists below the split block's order are empty
    for order in range(first, len(zone.free_area)):
        if got == want:
            break
        lst = zone.free_area[order].free_list[mt]
        if not lst:
            continue
        whole = min(len(lst), (want - got) >> order)
        if whole:
            heads = lst.pop_first(whole)
            if isinstance(heads, np.ndarray) and whole <= _SLICE_RUNS:
                heads = heads.tolist()    # a few: Python lists cost less than arrays
            account_freepages(zone, -(whole << order), mt)
            taken.extend(heads, np.full(whole, 1 << order, np.int64)
                         if isinstance(heads, np.ndarray) else [1 << order] * whole)
            got += whole << order
        if got < want and lst:
            pfn = _del_first(zone, lst, order, mt)
            Tail(zone, mt, pfn + want - got, pfn + (1 << order),
                 [area.free_list[mt] for area in zone.free_area[:order]])
            taken.add(pfn, want - got)
            got = want
    if got and taken is not out:
        if hand_out:
            _hand_out(zone, taken, got, req, owner)
        if out is not None and taken.parts:
            out.extend(*taken.arrays())
        elif out is not None:
            out.extend(taken.starts, taken.lengths)
    return got


def _del_first(zone: Zone, lst: FreeList, order: int, mt: int) -> int:
    """``del_page_from_free_list()`` of the list's first block, found and taken at once."""
    pfn = lst.pop_head()
    mm = zone.node.mm
    mm.head_order[pfn] = -1
    mm.head_owner[pfn] = -1
    account_freepages(zone, -(1 << order), mt)
    return pfn


def _hand_out_run(zone: Zone, start: int, nr_pages: int, req: AllocRequest, owner: int) -> None:
    """_hand_out() of one run of pages."""
    node = zone.node
    node.mm.mark_allocated(start, start + nr_pages, req.kind, owner)
    zone.nr_kind[req.kind] += nr_pages
    node.count_event(zone.pgalloc_event, nr_pages)
    if node.trace.enabled:
        for p in range(start, start + nr_pages):
            node.emit(MmPageAlloc(p, 0, req.mt, req.gfp))


def _hand_out(zone: Zone, taken: RunLists, nr_pages: int, req: AllocRequest,
              owner: int) -> None:
    """prep_new_page() for order-0 pages taken off the lists, in allocation order."""
    node = zone.node
    starts, lengths = taken.starts, taken.lengths
    if taken.parts:
        starts, lengths = (a.tolist() for a in taken.arrays())
    if len(starts) <= _SLICE_RUNS or len(starts) * _SLICE_RUN < nr_pages:
        for start, end in _coalesce(starts, lengths):
            node.mm.mark_allocated(start, end, req.kind, owner)
    else:
        pfns = _expand(np.array(starts, np.int64), np.array(lengths, np.int64))
        node.mm.mark_allocated_pfns(pfns, req.kind, owner)
    zone.nr_kind[req.kind] += nr_pages
    node.count_event(zone.pgalloc_event, nr_pages)
    if node.trace.enabled:
        for start, n in zip(starts, lengths, strict=True):
            for p in range(start, start + n):
                node.emit(MmPageAlloc(p, 0, req.mt, req.gfp))


def _coalesce(starts: list[int], lengths: list[int]) -> list[tuple[int, int]]:
    """Runs as [start, end) ranges, neighbours joined."""
    ranges: list[tuple[int, int]] = []
    for start, n in zip(starts, lengths, strict=True):
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], start + n)
        else:
            ranges.append((start, start + n))
    return ranges


def free_pages_bulk(node: Node, pfns: np.ndarray) -> None:
    """Free order-0 allocated pages as if one by one in ascending pfn order.

    The caller guarantees every pfn is an allocated order-0 page (activities
    and migration do); use ``free_pages`` for checked single frees.
    """
    pfns = np.asarray(pfns, dtype=np.int64)
    if not len(pfns):
        return
    if len(pfns) > 1 and not np.all(pfns[1:] > pfns[:-1]):
        pfns = np.unique(pfns)
    mm, pbo = node.mm, node.geo.pageblock_order
    blocks = pfns >> pbo
    zones = mm.pb_zone[blocks]
    node.count_event("pgfree", len(pfns))
    if node.trace.enabled:
        for p in pfns.tolist():
            node.emit(MmPageFree(p, 0))
    present = np.flatnonzero(np.bincount(zones)).tolist()
    for zidx in present:
        sel = slice(None) if len(present) == 1 else zones == zidx
        zone_pfns = pfns[sel]
        zone = node.zones[zidx]
        zone_uncharge(zone, mm.kind[zone_pfns])
        mm.mark_free_pfns(zone_pfns)
        # A pageblock's type cannot change before its own pages are freed (only
        # free buddies are retyped), so every page's type is looked up up front.
        mts = mm.pb_mt[blocks[sel]]
        if len(zone_pfns) >= _REBUILD_MIN:
            free_pages_batch(zone, zone_pfns, mts)
            continue
        for pfn, mt in zip(zone_pfns.tolist(), mts.tolist(), strict=True):
            free_one_page(zone, pfn, 0, mt)


def free_blocks_bulk(node: Node, heads: Sequence[int], orders: Sequence[int],
                     to_tail: bool = False) -> None:
    """free_pages_ok() for each block, in turn; the blocks' pages are already marked FREE.

    The blocks must be disjoint and in ascending pfn order (memblock_free_all()
    frees memory that way).  Since 6.10 a block larger than a pageblock is
    freed a pageblock at a time, each with its own pageblock's type.
    """
    mm, geo = node.mm, node.geo
    pbo = geo.pageblock_order
    heads = np.asarray(heads, np.int64)
    orders = np.asarray(orders, np.int64)
    if len(heads) < _REBUILD_MIN:
        for pfn, order in zip(heads.tolist(), orders.tolist(), strict=True):
            free_pages_ok(node.page_zone(pfn), pfn, order, to_tail)
        return
    if node.profile.freelist_hygiene and (orders > pbo).any():
        pieces = np.where(orders > pbo, np.left_shift(1, np.maximum(orders - pbo, 0)), 1)
        start = np.repeat(heads, pieces)
        step = np.arange(len(start)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        heads = start + (step << pbo)
        orders = np.repeat(np.minimum(orders, pbo), pieces)
    zones = mm.pb_zone[heads >> pbo]
    for zid in np.flatnonzero(np.bincount(zones)).tolist():
        sel = zones == zid
        h = heads[sel]
        free_blocks_batch(node.zones[zid], h, orders[sel], mm.pb_mt[h >> pbo], to_tail)

