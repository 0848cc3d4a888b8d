"""FreeList: one free list of the buddy allocator, the kernel's list_head, fast both ways.

The kernel links free blocks through ``page->buddy_list``: list_add() puts a
block at the head, list_add_tail() at the tail, list_del() takes it out and
list_first_entry() reads the head, all O(1).  A FreeList holds the head pfns
in list order with the same operations, and two more that the batch paths
need: ``extend`` adds thousands of blocks at once, as numpy arrays, and
``remove_many`` takes thousands out.

The list is a short sequence of *segments* in list order:

* a dict whose keys read in list order (blocks added at the tail);
* a dict whose keys read in *reverse* list order (blocks added at the
  head: the newest is last, where ``popitem()`` takes it in O(1));
* a ``_Run``: an array of pfns added by ``extend``, with an alive mask and
  a sorted index for lookups, so no Python object exists per block.

A forward dict that becomes the front of the list is turned around once
(each block at most once), because a dict cannot drop its first key
cheaply.  When segments pile up they are compacted into one run.

Kernel: include/linux/list.h, include/linux/mmzone.h (struct free_area)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

MAX_SEGMENTS = 16   # more than this and the list is compacted into one run


class _Run:
    """Blocks held as arrays: pfns in list order, which are still on the list, a lookup."""

    __slots__ = ("pfns", "alive", "keys", "where", "lo", "live")

    def __init__(self, pfns: np.ndarray, order: str) -> None:
        """``order``: "asc" or "desc" if ``pfns`` is sorted that way, else "any"."""
        self.pfns = pfns
        self.alive = np.ones(len(pfns), bool)
        if order == "asc":
            self.keys, self.where = pfns, None
        elif order == "desc":
            self.keys, self.where = pfns[::-1], None
        else:
            self.where = np.argsort(pfns, kind="stable")
            self.keys = pfns[self.where]
        self.lo = 0            # no alive block before this position
        self.live = len(pfns)

    def positions(self, pfns: np.ndarray) -> np.ndarray:
        """List positions of ``pfns`` that are alive in this run, else -1."""
        n = len(self.keys)
        i = np.minimum(np.searchsorted(self.keys, pfns), n - 1)
        found = self.keys[i] == pfns
        if self.where is not None:
            pos = self.where[i]
        elif self.keys is self.pfns:
            pos = i
        else:
            pos = n - 1 - i
        found &= self.alive[pos]
        return np.where(found, pos, -1)

    def find(self, pfn: int) -> int:
        return int(self.positions(np.array([pfn]))[0])

    def kill(self, pos: np.ndarray | int) -> None:
        self.alive[pos] = False
        self.live -= np.size(pos)
        self.advance()

    def advance(self) -> None:
        alive, lo = self.alive, self.lo
        while lo < len(alive) and not alive[lo]:
            step = np.flatnonzero(alive[lo:lo + 256])
            lo = lo + int(step[0]) if len(step) else lo + 256
        self.lo = min(lo, len(alive))

    def take(self, n: int) -> np.ndarray:
        """The first ``n`` alive pfns, taken off."""
        lo, alive = self.lo, self.alive
        dead = len(alive) - lo - self.live
        window = np.flatnonzero(alive[lo:lo + n + dead])[:n] + lo
        self.kill(window)
        return self.pfns[window]

    def items(self) -> np.ndarray:
        return self.pfns[self.lo:][self.alive[self.lo:]]


class _Ahead(dict):
    """Blocks added at the head: keys in reverse list order (the first block is last)."""

    __slots__ = ()


Segment = dict | _Run


class FreeList:
    """The head pfns of the free blocks on one list, in list order.

    Kernel: include/linux/mmzone.h, struct free_area (free_list[])
    """

    __slots__ = ("_segs", "_len")

    def __init__(self) -> None:
        self._segs: list[Segment] = []
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __bool__(self) -> bool:
        return self._len > 0

    def __iter__(self) -> Iterator[int]:
        for seg in self._segs:
            if isinstance(seg, _Run):
                yield from seg.items().tolist()
            elif isinstance(seg, _Ahead):
                yield from reversed(seg)
            else:
                yield from seg

    def __contains__(self, pfn: object) -> bool:
        return any(pfn in seg if isinstance(seg, dict) else seg.find(int(pfn)) >= 0
                   for seg in self._segs)

    def __repr__(self) -> str:
        return f"FreeList({list(self)})"

    # -- one block ---------------------------------------------------------
    def add(self, pfn: int, tail: bool = False) -> None:
        """list_add() (the head) or list_add_tail()."""
        segs = self._segs
        if tail:
            if not segs or type(segs[-1]) is not dict:
                segs.append({})
            segs[-1][pfn] = None
        else:
            if not segs or type(segs[0]) is not _Ahead:
                segs.insert(0, _Ahead())
            segs[0][pfn] = None
        self._len += 1
        if len(segs) > MAX_SEGMENTS:
            self._compact()

    def remove(self, pfn: int) -> None:
        """list_del(); KeyError if the block is not on this list."""
        for i, seg in enumerate(self._segs):
            if _drop(seg, pfn):
                self._len -= 1
                if not _size(seg):
                    del self._segs[i]
                return
        raise KeyError(pfn)

    def first(self) -> int | None:
        """list_first_entry_or_null()."""
        if not self._len:
            return None
        seg = self._front()
        if isinstance(seg, _Run):
            return int(seg.pfns[seg.lo])
        pfn = seg.popitem()[0]   # popitem() also drops deleted entries at the end
        seg[pfn] = None
        return pfn

    # -- many blocks -------------------------------------------------------
    def pop_first(self, n: int) -> list[int]:
        """Take the first ``n`` blocks off the list; return them in list order."""
        if n > self._len:
            raise IndexError(f"{n} blocks asked of a list of {self._len}")
        out: list[int] = []
        while len(out) < n:
            seg = self._front()
            want = n - len(out)
            if isinstance(seg, _Run):
                got = seg.take(min(want, seg.live)).tolist()
            elif want >= len(seg):
                got = list(reversed(seg))
                seg.clear()
            else:
                got = [seg.popitem()[0] for _ in range(want)]
            out += got
            self._len -= len(got)
            if not _size(seg):
                self._segs.pop(0)
        return out

    def extend(self, pfns: np.ndarray | Iterable[int], tail: bool = False,
               ascending: bool = False) -> None:
        """``add()`` for each pfn in turn: at the head the last one ends up first.

        ``ascending`` says the pfns are sorted, which saves sorting a lookup.
        """
        pfns = np.asarray(pfns if isinstance(pfns, np.ndarray) else list(pfns), np.int64)
        if not len(pfns):
            return
        if tail:
            self._segs.append(_Run(pfns, "asc" if ascending else "any"))
        else:
            self._segs.insert(0, _Run(pfns[::-1], "desc" if ascending else "any"))
        self._len += len(pfns)
        if len(self._segs) > MAX_SEGMENTS:
            self._compact()

    def remove_many(self, pfns: np.ndarray) -> None:
        """list_del() of each block; KeyError if one is not on this list."""
        left = np.asarray(pfns, np.int64)
        for seg in list(self._segs):
            if not len(left):
                break
            if isinstance(seg, dict):
                hit = np.fromiter((p in seg for p in left.tolist()), bool, len(left))
                for p in left[hit].tolist():
                    del seg[p]
            else:
                pos = seg.positions(left)
                hit = pos >= 0
                if hit.any():
                    seg.kill(pos[hit])
            self._len -= int(hit.sum())
            left = left[~hit]
            if not _size(seg):
                self._segs.remove(seg)
        if len(left):
            raise KeyError(int(left[0]))

    def clear(self) -> None:
        self._segs = []
        self._len = 0

    # -- housekeeping ------------------------------------------------------
    def _front(self) -> Segment:
        """The first segment, a forward dict turned around first (O(1) pops then)."""
        seg = self._segs[0]
        if type(seg) is dict:
            seg = self._segs[0] = _Ahead.fromkeys(reversed(seg))
        return seg

    def _compact(self) -> None:
        """All segments as one run, in list order."""
        parts = [seg.items() if isinstance(seg, _Run)
                 else np.fromiter(reversed(seg) if isinstance(seg, _Ahead) else seg,
                                  np.int64, len(seg))
                 for seg in self._segs]
        self._segs = [_Run(np.concatenate(parts), "any")] if self._len else []


def _drop(seg: Segment, pfn: int) -> bool:
    """Take ``pfn`` out of one segment if it is there."""
    if isinstance(seg, dict):
        if pfn in seg:
            del seg[pfn]
            return True
        return False
    pos = seg.find(pfn)
    if pos >= 0:
        seg.kill(pos)
    return pos >= 0


def _size(seg: Segment) -> int:
    return seg.live if isinstance(seg, _Run) else len(seg)
