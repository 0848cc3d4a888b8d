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
docs/glossary.md).  A new slab comes from the page allocator with the
cache's gfp (GFP_KERNEL), so from the zone the zonelist prefers at that
moment: a hotplugged ZONE_NORMAL as soon as it has free memory.

A cache's slab order and objects per slab are what SLUB's
``calculate_order()`` picks for the object size on the reference guest's
2 vCPUs (``cache_spec``); they match what a 6.x x86-64 guest shows in
/proc/slabinfo (dentry: 192 bytes, 21 per order-0 slab; ext4_inode_cache:
1128 bytes, 14 per order-2 slab).  ``kmem_cache()`` finds or creates a
machine's cache by name, as kmem_cache_create() does once per name.

Kernel: mm/slub.c (calculate_order(), allocate_slab(), discard_slab()),
mm/slab_common.c (kmalloc_info[]), fs/dcache.c, fs/ext4/super.c
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .constants import PageKind, PageState
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


PAGE_SIZE = 4096            # x86-64; slab geometry is the kernel's, not the teaching one's
NR_CPUS = 2                # the reference guest's vCPUs (zoneinfo pagesets: cpu 0 and 1)
SLUB_MAX_ORDER = 3         # slub_max_order = PAGE_ALLOC_COSTLY_ORDER


def get_order(size: int) -> int:
    """The smallest order whose block holds ``size`` bytes.  Kernel: get_order()"""
    return max(0, (size - 1).bit_length() - PAGE_SIZE.bit_length() + 1)


def calc_slab_order(size: int, min_order: int, max_order: int, fract_leftover: int) -> int:
    """The first order from ``min_order`` wasting at most 1/fract_leftover of the slab.

    Returns ``max_order + 1`` when none does.  Kernel: mm/slub.c, calc_slab_order()
    """
    order = min_order
    while order <= max_order:
        slab_size = PAGE_SIZE << order
        if slab_size % size <= slab_size // fract_leftover:
            break
        order += 1
    return order


def calculate_order(size: int, nr_cpus: int = NR_CPUS) -> int:
    """SLUB's slab order for objects of ``size`` bytes.

    At least 4 * (fls(nr_cpus) + 1) objects per slab (12 on 2 CPUs) if
    that fits in slub_max_order, then the smallest order that wastes at
    most 1/16 of the slab, accepting 1/8 and 1/4 waste if none does.

    Kernel: mm/slub.c, calculate_order() (v6.8 and later)
    """
    min_objects = 4 * (nr_cpus.bit_length() + 1)
    max_objects = max((PAGE_SIZE << SLUB_MAX_ORDER) // size, 1)
    min_order = get_order(min(min_objects, max_objects) * size)
    for fraction in (16, 8, 4, 2):
        order = calc_slab_order(size, min_order, SLUB_MAX_ORDER, fraction)
        if order <= SLUB_MAX_ORDER:
            return order
    return get_order(size)


def cache_spec(name: str, object_size: int, reclaimable: bool = False) -> SlabCacheSpec:
    """A cache's shape as SLUB lays it out (``object_size`` is slabinfo's objsize).

    ``reclaimable`` is SLAB_RECLAIM_ACCOUNT: the slab pages are allocated with
    __GFP_RECLAIMABLE and counted as SReclaimable (dentries, inodes).
    """
    if not isinstance(object_size, int) or not 8 <= object_size <= PAGE_SIZE << SLUB_MAX_ORDER:
        raise ValueError(f"object_size={object_size!r} must be an int in "
                         f"8..{PAGE_SIZE << SLUB_MAX_ORDER} bytes")
    order = calculate_order(object_size)
    return SlabCacheSpec(name, object_size, order, (PAGE_SIZE << order) // object_size,
                         reclaimable)


def kmalloc_spec(size: int) -> SlabCacheSpec:
    """The kmalloc cache serving requests of ``size`` bytes (kmalloc-64 ... kmalloc-8k).

    Sizes round up to the next power of two, or to 96 or 192 between 64 and
    256, as kmalloc_info[] lists them.  Kernel: mm/slab_common.c, kmalloc_slab()
    """
    if not isinstance(size, int) or not 1 <= size <= 2 * PAGE_SIZE:
        raise ValueError(f"size={size!r} must be an int in 1..{2 * PAGE_SIZE} bytes "
                         "(larger kmalloc() calls go to the page allocator)")
    bucket = max(8, 1 << (size - 1).bit_length())
    if 64 < size <= 96:
        bucket = 96
    elif 128 < size <= 192:
        bucket = 192
    label = f"{bucket >> 10}k" if bucket >= 1024 else str(bucket)
    return cache_spec(f"kmalloc-{label}", bucket)


DENTRY = cache_spec("dentry", 192, reclaimable=True)
EXT4_INODE = cache_spec("ext4_inode_cache", 1128, reclaimable=True)
# tmpfs inodes: created without SLAB_RECLAIM_ACCOUNT, so unreclaimable slab
# (mm/shmem.c, shmem_init_inodecache()); 768 bytes, 21 per order-2 slab.
SHMEM_INODE = cache_spec("shmem_inode_cache", 768)


class SlabCache:
    """One cache's slabs: head pfn, order, capacity and objects in use, per slab index.

    Slab indices are never reused, so an object's slab index stays valid;
    a discarded slab keeps pfn -1.  ``cpu_slab`` is the slab new objects
    go to first (SLUB's per-CPU slab; one for the whole cache here).
    """

    def __init__(self, spec: SlabCacheSpec, node: Node, owner: int) -> None:
        self.spec, self.node, self.owner = spec, node, owner
        self.count = 0
        self.cpu_slab = -1
        self._pfn = np.zeros(16, np.int64)
        self._order = np.zeros(16, np.int8)
        self._objects = np.zeros(16, np.int32)
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

    def pages(self, slabs: np.ndarray | None = None) -> np.ndarray:
        """Pfns of the slab pages (of every slab, or of the given slab indices)."""
        idx = np.flatnonzero(self.slab_pfn >= 0) if slabs is None else np.unique(slabs[slabs >= 0])
        sizes = np.left_shift(1, self._order[idx].astype(np.int64))
        first = np.repeat(self._pfn[idx] - np.cumsum(sizes) + sizes, sizes)
        return np.sort(first + np.arange(int(sizes.sum())))

    def alloc(self, n: int) -> np.ndarray:
        """Allocate ``n`` objects; return the slab index of each (-1 where it failed).

        The CPU slab first, then partial slabs oldest first, then new slabs;
        the last slab used becomes the CPU slab.  Kernel: mm/slub.c,
        ___slab_alloc() (cpu slab, get_partial_node(), new_slab())
        """
        cpu = self.cpu_slab
        if cpu >= 0 and self._objects.item(cpu) - self._inuse.item(cpu) >= n:   # the fast path
            self._inuse[cpu] += n
            out = np.empty(n, np.int64)
            out.fill(cpu)
            return out
        out = np.full(n, -1, np.int64)
        live = self.slab_pfn >= 0
        free_slots = np.where(live, self._objects[:self.count] - self.inuse, 0)
        order = np.flatnonzero(free_slots > 0)
        if self.cpu_slab >= 0 and free_slots[self.cpu_slab] > 0:
            order = np.concatenate([[self.cpu_slab], order[order != self.cpu_slab]])
        slots = free_slots[order]
        before = np.cumsum(slots) - slots
        take = np.minimum(slots, np.maximum(0, n - before))
        used = order[take > 0]
        done = int(take.sum())
        out[:done] = np.repeat(order, take)
        self._inuse[order] += take.astype(np.int32)
        if len(used):
            self.cpu_slab = int(used[-1])
        while done < n:
            slab = self._new_slab()
            if slab < 0:
                break
            use = min(int(self._objects[slab]), n - done)
            out[done:done + use] = slab
            self._inuse[slab] = use
            self.cpu_slab = slab
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
            grow = len(self._pfn)
            self._pfn = np.concatenate([self._pfn, np.zeros(grow, np.int64)])
            self._order = np.concatenate([self._order, np.zeros(grow, np.int8)])
            self._objects = np.concatenate([self._objects, np.zeros(grow, np.int32)])
            self._inuse = np.concatenate([self._inuse, np.zeros(grow, np.int32)])
        i = self.count
        self._pfn[i], self._order[i], self._inuse[i] = pfn, order, 0
        self._objects[i] = (PAGE_SIZE << order) // self.spec.object_size
        self.count += 1
        return i

    def free(self, slabs: np.ndarray) -> int:
        """Free one object per entry of ``slabs``; discard slabs that become empty.

        The CPU slab stays even when empty (it is frozen).  Returns the
        number of pages given back to the page allocator.
        Kernel: mm/slub.c, __slab_free(), discard_slab()
        """
        slabs = slabs[slabs >= 0]
        if len(slabs) <= 8:             # a few objects: no arrays the size of the cache
            touched = slabs.tolist()
            for slab in touched:
                self._inuse[slab] -= 1
        else:
            counts = np.bincount(slabs, minlength=self.count)
            self._inuse[:self.count] -= counts.astype(np.int32)
            touched = np.flatnonzero(counts).tolist()
        pages = 0
        for slab in dict.fromkeys(touched):
            if self._inuse[slab] == 0 and slab != self.cpu_slab:
                pages += self._discard(slab)
        return pages

    def validate(self) -> None:
        """Objects in use fit their slabs, and every slab page is allocated to this cache.

        Raises vmemlab.ValidationError naming the cache and the slab or pfn.
        """
        from .validate import ValidationError

        name, n = self.spec.name, self.count
        inuse, objects, live = self.inuse, self._objects[:n], self.slab_pfn >= 0
        bad = np.flatnonzero((inuse < 0) | (inuse > objects) | (~live & (inuse != 0)))
        if len(bad):
            i = int(bad[0])
            raise ValidationError(f"slab cache {name}: slab {i} has {int(inuse[i])} objects "
                                  f"in use of {int(objects[i])}")
        pages, mm = self.pages(), self.node.mm
        wrong = pages[(mm.state[pages] != PageState.ALLOCATED) | (mm.owner[pages] != self.owner)]
        if len(wrong):
            raise ValidationError(f"slab cache {name}: pfn {int(wrong[0]):#x} is not one of "
                                  "its slab pages (freed or taken by someone else)")

    def _discard(self, slab: int) -> int:
        order = int(self._order[slab])
        free_block(self.node, int(self._pfn[slab]), order)
        self._pfn[slab] = -1
        return 1 << order


def kmem_cache(caches: dict[str, Any], node: Node, spec: SlabCacheSpec) -> SlabCache:
    """The cache named ``spec.name`` in ``caches``, created on first use.

    Every user of a name shares one cache, so their objects share slab
    pages, as kmem_cache_create() and the kmalloc caches make them do.
    Kernel: mm/slab_common.c, kmem_cache_create(), create_kmalloc_caches()
    """
    cache = caches.get(spec.name)
    if cache is not None and cache.spec is spec:     # the usual caller: quick
        return cache
    if cache is None:
        kind = PageKind.SLAB_RECLAIMABLE if spec.reclaimable else PageKind.SLAB
        owner = node.new_owner(kind, f"slab cache {spec.name}")
        cache = caches[spec.name] = SlabCache(spec, node, owner.id)
    elif cache.spec != spec:
        raise ValueError(f"slab cache {spec.name!r} exists with another shape: "
                         f"{cache.spec} != {spec}")
    return cache
