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
cheaply; a run that is mostly used one block at a time becomes a dict.
When segments pile up they are compacted into one run.

Kernel: include/linux/list.h, include/linux/mmzone.h (struct free_area)
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator

import numpy as np

MAX_SEGMENTS = 16   # more than this and the list is compacted into one run


class _Run:
    """Blocks added by ``extend``: pfns in list order, an alive mask, a sorted lookup.

    Batches of pfns are looked up with numpy; a single pfn with ``bisect``
    on a Python copy of the sorted pfns, made the first time one is needed
    (a numpy call per block would cost microseconds).
    """

    __slots__ = ("pfns", "keys", "where", "alive", "lo", "live", "singles", "_keys", "_where")

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
        self.singles = 0       # blocks taken out one by one
        self._keys: list[int] | None = None
        self._where: list[int] | None = None

    def _position(self, i: np.ndarray | int) -> np.ndarray | int:
        """List position of the i-th smallest pfn."""
        if self.where is not None:
            return self.where[i]
        return i if self.keys is self.pfns else len(self.keys) - 1 - i

    def positions(self, pfns: np.ndarray) -> np.ndarray:
        """List positions of ``pfns`` that are alive in this run, else -1."""
        i = np.minimum(np.searchsorted(self.keys, pfns), len(self.keys) - 1)
        pos = self._position(i)
        return np.where((self.keys[i] == pfns) & self.alive[pos], pos, -1)

    def find(self, pfn: int) -> int:
        """The list position of ``pfn`` if it is alive here, else -1."""
        if self._keys is None:
            self._keys = self.keys.tolist()
            self._where = None if self.where is None else self.where.tolist()
        keys = self._keys
        i = bisect_left(keys, pfn)
        if i == len(keys) or keys[i] != pfn:
            return -1
        pos = self._where[i] if self._where is not None else self._position(i)
        return pos if self.alive.item(pos) else -1

    def kill(self, pos: np.ndarray | int) -> None:
        self.alive[pos] = False
        self.live -= 1 if isinstance(pos, int) else len(pos)
        if self.live and not self.alive.item(self.lo):
            self._advance()

    def _advance(self) -> None:
        """Move ``lo`` to the next alive block: the next one, or in ever larger windows."""
        alive, lo, step = self.alive, self.lo, 64
        if alive.item(lo + 1):    # a live block lies past lo, so lo + 1 exists
            self.lo = lo + 1
            return
        while not alive.item(lo):
            window = alive[lo:lo + step]
            if window.any():
                lo += int(window.argmax())
                break
            lo += len(window)
            step *= 2
        self.lo = lo

    def first(self) -> int:
        return int(self.pfns[self.lo])

    def take(self, n: int) -> np.ndarray:
        """The first ``n`` alive pfns, taken off."""
        lo, alive = self.lo, self.alive
        dead = len(alive) - lo - self.live
        window = np.flatnonzero(alive[lo:lo + n + dead])[:n] + lo
        if self.live > n:     # the first alive block left is past the window
            self.lo = int(window[-1]) + 1
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

    ``pending``, when set, is called before the list is read or changed: it
    puts blocks here that were kept elsewhere meanwhile (vmemlab.bulk keeps
    the unsplit rest of a block it split that way) and clears itself.

    Kernel: include/linux/mmzone.h, struct free_area (free_list[])
    """

    __slots__ = ("_segs", "_len", "pending")

    def __init__(self) -> None:
        self._segs: list[Segment] = []
        self._len = 0
        self.pending: Callable[[], None] | None = None

    def __len__(self) -> int:
        if self.pending is not None:
            self.pending()
        return self._len

    def __bool__(self) -> bool:
        if self.pending is not None:
            self.pending()
        return self._len > 0

    def __iter__(self) -> Iterator[int]:
        if self.pending is not None:
            self.pending()
        for seg in self._segs:
            if isinstance(seg, _Run):
                yield from seg.items().tolist()
            elif isinstance(seg, _Ahead):
                yield from reversed(seg)
            else:
                yield from seg

    def idle(self) -> bool:
        """Empty, with nothing kept aside for it (``pending``): a look that changes nothing."""
        return self.pending is None and not self._len

    def held(self) -> int:
        """The blocks on the list now, not counting what is kept aside (``pending``);
        a look that changes nothing."""
        return self._len

    def __contains__(self, pfn: object) -> bool:
        if self.pending is not None:
            self.pending()
        return any(pfn in seg if isinstance(seg, dict) else seg.find(int(pfn)) >= 0
                   for seg in self._segs)

    def __repr__(self) -> str:
        return f"FreeList({list(self)})"

    # -- one block ---------------------------------------------------------
    def add(self, pfn: int, tail: bool = False) -> None:
        """list_add() (the head) or list_add_tail()."""
        if self.pending is not None:
            self.pending()
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
        if self.pending is not None:
            self.pending()
        for i, seg in enumerate(self._segs):
            if type(seg) is _Run:
                head = seg.live and seg.pfns.item(seg.lo) == pfn   # its first block: O(1)
                pos = seg.lo if head else seg.find(pfn)
                if pos < 0:
                    continue
                seg.kill(pos)
                empty = not seg.live
                seg.singles += not head
                if not empty and seg.singles > max(64, seg.live >> 4):
                    # Used one block at a time: a dict does that faster.
                    self._segs[i] = dict.fromkeys(seg.items().tolist())
            elif pfn in seg:
                del seg[pfn]
                empty = not seg
            else:
                continue
            self._len -= 1
            if empty:
                del self._segs[i]
            return
        raise KeyError(pfn)

    def pop_head(self) -> int:
        """list_first_entry() taken off (list_del()): ``remove(first())`` in one step."""
        if self.pending is not None:
            self.pending()
        if not self._len:
            raise IndexError("pop_head() of an empty list")
        seg = self._front()
        if type(seg) is _Run:
            pfn = seg.pfns.item(seg.lo)
            seg.kill(seg.lo)
            empty = not seg.live
        else:
            pfn, empty = seg.popitem()[0], not seg
        self._len -= 1
        if empty:
            del self._segs[0]
        return pfn

    def first(self) -> int | None:
        """list_first_entry_or_null()."""
        if self.pending is not None:
            self.pending()
        if not self._len:
            return None
        seg = self._front()
        if isinstance(seg, _Run):
            return seg.first()
        pfn = seg.popitem()[0]   # popitem() also drops deleted entries at the end
        seg[pfn] = None
        return pfn

    # -- many blocks -------------------------------------------------------
    def pop_first(self, n: int) -> list[int] | np.ndarray:
        """Take the first ``n`` blocks off the list; return them in list order.

        A list of ints, or an array when some came from a run (no Python
        object per block then).
        """
        if self.pending is not None:
            self.pending()
        if n > self._len:
            raise IndexError(f"{n} blocks asked of a list of {self._len}")
        if n == 1 and type(self._segs[0]) is _Ahead:   # the common case, made quick
            seg = self._segs[0]
            self._len -= 1
            pfn = seg.popitem()[0]
            if not seg:
                del self._segs[0]
            return [pfn]
        parts: list[list[int] | np.ndarray] = []
        left = n
        while left:
            seg = self._front()
            if isinstance(seg, _Run):
                got = seg.take(min(left, seg.live))
            elif left >= len(seg):
                got = list(reversed(seg))
                seg.clear()
            else:
                got = [seg.popitem()[0] for _ in range(left)]
            parts.append(got)
            left -= len(got)
            if not _size(seg):
                self._segs.pop(0)
        self._len -= n
        if len(parts) == 1:
            return parts[0]
        if any(isinstance(p, np.ndarray) for p in parts):
            return np.concatenate([np.asarray(p, np.int64) for p in parts])
        return [pfn for p in parts for pfn in p]

    def extend(self, pfns: np.ndarray | Iterable[int], tail: bool = False) -> None:
        """``add()`` for each pfn in turn: at the head the last one ends up first."""
        if self.pending is not None:
            self.pending()
        pfns = np.asarray(pfns if isinstance(pfns, np.ndarray) else list(pfns), np.int64)
        if not len(pfns):
            return
        ascending = bool(np.all(pfns[1:] > pfns[:-1]))
        if tail:
            self._segs.append(_Run(pfns, "asc" if ascending else "any"))
        else:
            self._segs.insert(0, _Run(pfns[::-1], "desc" if ascending else "any"))
        self._len += len(pfns)
        if len(self._segs) > MAX_SEGMENTS:
            self._compact()

    def remove_many(self, pfns: np.ndarray) -> None:
        """list_del() of each block; KeyError if one is not on this list."""
        if self.pending is not None:
            self.pending()
        left = np.sort(np.asarray(pfns, np.int64))   # sorted: runs they miss are skipped
        for seg in list(self._segs):
            if not len(left):
                break
            if isinstance(seg, dict):
                hit = np.fromiter((p in seg for p in left.tolist()), bool, len(left))
                for p in left[hit].tolist():
                    del seg[p]
            elif left[-1] < seg.keys[0] or left[0] > seg.keys[-1]:
                continue
            else:
                pos = seg.positions(left)
                hit = pos >= 0
                seg.kill(pos[hit])
            self._len -= int(np.count_nonzero(hit))
            left = left[~hit]
            if not _size(seg):
                self._segs.remove(seg)
        if len(left):
            raise KeyError(int(left[0]))

    def clear(self) -> None:
        if self.pending is not None:
            self.pending()
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


def _size(seg: Segment) -> int:
    return seg.live if isinstance(seg, _Run) else len(seg)
