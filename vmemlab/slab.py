"""Slab caches: many small kernel objects packed into slab pages.

Creating a file allocates a dentry and an inode from slab caches.  Each
slab is a block of 2**order pages holding ``objs_per_slab`` objects; a slab
page goes back to the page allocator only when *every* object on it is
freed.  So deleting 15 of every 16 files frees few slab pages: the rest stay
sparsely used and pin their (reclaimable) pageblocks, which is how a
directory tree that was mostly deleted can still block a memory unplug.

Object placement follows SLUB's habit closely enough: new objects fill the
oldest partial slab first, then new slabs.  Empty slabs are freed at once
(SLUB keeps up to min_partial empty slabs around; a simplification named in
docs/glossary.md).  Sizes are those a 6.18 x86-64 guest shows in
/proc/slabinfo.

Kernel: mm/slub.c (allocate_slab(), discard_slab()), fs/dcache.c, fs/ext4/super.c
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .constants import PageKind
from .gfp import Gfp
from .page_alloc import alloc_pages, free_block

if TYPE_CHECKING:
    from .node import Node


@dataclass(frozen=True)
class SlabCacheSpec:
    """The shape of a cache: object size and slab order, as /proc/slabinfo shows."""

    name: str
    object_size: int
    order: int
    objs_per_slab: int
    reclaimable: bool


DENTRY = SlabCacheSpec("dentry", 192, 0, 21, True)
EXT4_INODE = SlabCacheSpec("ext4_inode_cache", 1128, 2, 14, True)
# tmpfs inodes: created without SLAB_RECLAIM_ACCOUNT, so unreclaimable slab
# (mm/shmem.c, shmem_init_inodecache()); 768 bytes, 21 per order-2 slab.
SHMEM_INODE = SlabCacheSpec("shmem_inode_cache", 768, 2, 21, False)


class SlabCache:
    """One cache's slabs: head pfn, order and objects in use, per slab index.

    Slab indices are never reused, so an object's slab index stays valid;
    a discarded slab keeps pfn -1.
    """

    def __init__(self, spec: SlabCacheSpec, node: Node, owner: int) -> None:
        self.spec, self.node, self.owner = spec, node, owner
        self.count = 0
        self._pfn = np.zeros(16, np.int64)
        self._order = np.zeros(16, np.int8)
        self._inuse = np.zeros(16, np.int32)

    @property
    def slab_pfn(self) -> np.ndarray:
        return self._pfn[:self.count]

    @property
    def inuse(self) -> np.ndarray:
        return self._inuse[:self.count]

    @property
    def gfp(self) -> int:
        base = Gfp.DIRECT_RECLAIM | Gfp.KSWAPD_RECLAIM | Gfp.IO | Gfp.FS
        return base | (Gfp.RECLAIMABLE if self.spec.reclaimable else 0)

    @property
    def kind(self) -> PageKind:
        return self.page_kind(self.spec)

    @staticmethod
    def page_kind(spec: SlabCacheSpec) -> PageKind:
        """Reclaimable slab (SReclaimable) or not (SUnreclaim)."""
        return PageKind.SLAB_RECLAIMABLE if spec.reclaimable else PageKind.SLAB

    @property
    def nr_slabs(self) -> int:
        """Slabs currently holding pages."""
        return int(np.count_nonzero(self.slab_pfn >= 0))

    @property
    def nr_objects(self) -> int:
        return int(self.inuse.sum())

    def alloc(self, n: int) -> np.ndarray:
        """Allocate ``n`` objects; return the slab index of each (-1 where it failed)."""
        out = np.full(n, -1, np.int64)
        free_slots = np.where(self.slab_pfn >= 0, self.spec.objs_per_slab - self.inuse, 0)
        partial = np.flatnonzero(free_slots > 0)
        before = np.concatenate([[0], np.cumsum(free_slots[partial])[:-1]])
        take = np.minimum(free_slots[partial], np.maximum(0, n - before))
        done = int(take.sum())
        out[:done] = np.repeat(partial, take)
        self._inuse[partial] += take.astype(np.int32)
        while done < n:
            slab = self._new_slab()
            if slab < 0:
                break
            use = min(self.spec.objs_per_slab, n - done)
            out[done:done + use] = slab
            self._inuse[slab] = use
            done += use
        return out

    def _new_slab(self) -> int:
        """allocate_slab(): the cache's order, then the minimum order if that fails."""
        min_order = max(0, (self.spec.object_size - 1).bit_length() - self.node.geo.page_shift)
        for order in dict.fromkeys((self.spec.order, min_order)):
            gfp = self.gfp | (Gfp.NOWARN | Gfp.NORETRY if order > min_order else 0)
            pfn = alloc_pages(self.node, order, gfp, self.kind, self.owner)
            if pfn is not None:
                return self._append(pfn, order)
        return -1

    def _append(self, pfn: int, order: int) -> int:
        if self.count == len(self._pfn):
            self._pfn = np.concatenate([self._pfn, np.zeros_like(self._pfn)])
            self._order = np.concatenate([self._order, np.zeros_like(self._order)])
            self._inuse = np.concatenate([self._inuse, np.zeros_like(self._inuse)])
        i = self.count
        self._pfn[i], self._order[i], self._inuse[i] = pfn, order, 0
        self.count += 1
        return i

    def free(self, slabs: np.ndarray) -> int:
        """Free one object per entry of ``slabs``; discard slabs that become empty.

        Returns the number of pages given back to the page allocator.
        """
        slabs = slabs[slabs >= 0]
        if not len(slabs):
            return 0
        counts = np.bincount(slabs, minlength=self.count)
        self._inuse[:self.count] -= counts.astype(np.int32)
        empty = np.flatnonzero((counts > 0) & (self.inuse == 0))
        pages = 0
        for slab in empty.tolist():
            order = int(self._order[slab])
            free_block(self.node, int(self._pfn[slab]), order)
            self._pfn[slab] = -1
            pages += 1 << order
        return pages
