"""The kernel's own allocations after boot: hotplug metadata and a steady slab churn.

A real guest's kernel never stops allocating.  Hotplugging a memory block
creates kernel objects for it, and timers, kworkers, /proc readers and
drivers keep allocating and freeing small objects all the time.  Every new
slab page comes from the zone GFP_KERNEL prefers *at that moment*: right
after memory is onlined as kernel memory, that is the new ZONE_NORMAL
(the zonelist tries Normal before DMA32).  Slab pages cannot migrate, so a
few slab pages in the new zone keep the subblocks holding them plugged: an
online_kernel guest asked to give everything back stays a few MiB above 0.

Two sources, both slab objects in vmemlab.slab caches (the CPU slab, then
partial slabs, then a new slab page from the page allocator):

**Hotplug metadata** (``memory_block_added``/``memory_block_removed``),
allocated by add_memory() and freed by remove_memory():

=========================  =====  =====================================================
cache                      count  what
=========================  =====  =====================================================
per memory block
kmalloc-1k                 1      struct memory_block, which embeds struct device
kmalloc-256                1      struct device_private (device_add())
kmalloc-16                 4      "memoryN": the kobject name, its kernfs directory
                                  name and the two links to it (node0/, bus devices/)
kmalloc-8                  1      "node0": the name of the memoryN/node0 link
kernfs_node_cache          17     /sys/devices/system/memory/memoryN: the directory,
                                  phys_index, state, phys_device, removable,
                                  valid_zones, uevent, the subsystem link, power/
                                  and its 5 runtime-PM files (control,
                                  runtime_status, runtime_active_time,
                                  runtime_suspended_time, autosuspend_delay_ms), the
                                  node0 link, and the links node0/memoryN and
                                  bus/memory/devices/memoryN
per section
kmalloc-64                 1      struct mem_section_usage (subsection map and
                                  pageblock flags, 56 bytes; section_activate())
per add_memory() call
kmalloc-64                 1      struct resource "System RAM (virtio_mem)"
                                  (register_memory_resource())
=========================  =====  =====================================================

That is about 3.5 KiB per 128 MiB block.  The memmap itself is allocated
by vmemlab.memory_hotplug.  Boot memory blocks get the same objects at
boot (memory_dev_init(), during vmemlab.bootmem's boot, whose measured
slab already holds them and the background's live objects), but no
resource: boot RAM is registered once per e820 range.  Not modelled (named in docs/glossary.md): the
xarray and idr nodes (radix_tree_node) that index memory blocks and kernfs
ids, transient uevent buffers, the virtio-mem driver's per-block state
arrays (vzalloc'd pages), and kernfs_iattrs, which kernfs allocates only
when a node's owner or mode is changed (udev rules; the reference guest
runs no udev).

**Background** (``tick``, each standing for the second before it; while
nothing else is due it covers a whole idle span in one step, see ``tick``):
each ``SlabStream`` allocates objects of one cache at a Poisson rate, each
living an exponentially distributed time, and a small share living until
reboot.
The streams stand for an idle guest that is polled once a second: work
items, timers and RCU callbacks (kmalloc-64/192), driver and protocol
buffers (kmalloc-512/1k), and reading /proc files (a struct file in filp
and a one-page seq_file buffer per read, freed at close; seq_file
allocates it with GFP_KERNEL_ACCOUNT, so from kmalloc-cg-4k).
The objects kept until reboot stand for state the kernel creates lazily
and keeps (per-device tables, kernfs nodes of runtime objects, cached
lookups).  The rates are illustrative, not measured from a trace of a real
guest's slab calls: they churn about 0.7 MB of objects a minute and keep
about 2 kB a minute (about 120 KiB of slab pages an hour); they are named
in docs/glossary.md.

Every cache here is unreclaimable (kmalloc caches, filp and
kernfs_node_cache are created without SLAB_RECLAIM_ACCOUNT), so
drop_caches frees none of it.  Reclaimable dentries and inodes come from
the guest's activities (``m.activity("files", ...)``).

Randomness comes from a generator spawned from the machine's, so turning
the background on or off leaves every other random draw unchanged; the
same seed gives the same pages.

Kernel: drivers/base/memory.c (init_memory_block(), add_memory_block_devices()),
drivers/base/core.c (device_add(), device_private_init()), drivers/base/bus.c
(bus_add_device()), drivers/base/node.c (register_memory_block_under_node()),
fs/kernfs/dir.c (__kernfs_new_node()), fs/kernfs/inode.c (__kernfs_iattrs()),
kernel/resource.c (__request_region()), mm/memory_hotplug.c
(register_memory_resource()), mm/sparse.c (section_activate()), fs/seq_file.c,
fs/file_table.c
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .constants import ENOMEM, format_size
from .slab import SlabCache, SlabCacheSpec, cache_spec, kmalloc_spec, kmem_cache

if TYPE_CHECKING:
    from .machine import Machine
    from .memory_hotplug import MemoryBlock

TICK_S = 1.0
KERNFS_NODE = cache_spec("kernfs_node_cache", 128)
FILP = cache_spec("filp", 256)

# (cache, objects) per memory block, per section, per add_memory() call
MEMORY_BLOCK_OBJECTS: tuple[tuple[SlabCacheSpec, int], ...] = (
    (kmalloc_spec(1024), 1), (kmalloc_spec(256), 1), (kmalloc_spec(16), 4),
    (kmalloc_spec(8), 1), (KERNFS_NODE, 17))
SECTION_OBJECTS: tuple[tuple[SlabCacheSpec, int], ...] = ((kmalloc_spec(64), 1),)
ADD_MEMORY_OBJECTS: tuple[tuple[SlabCacheSpec, int], ...] = ((kmalloc_spec(64), 1),)


@dataclass(frozen=True)
class SlabStream:
    """Objects one part of the kernel allocates at a steady rate.

    ``per_second`` new objects per simulated second (Poisson), each living
    an exponential time of mean ``lifetime`` seconds, except a ``kept``
    share that lives until reboot.
    """

    spec: SlabCacheSpec
    per_second: float
    lifetime: float
    kept: float
    who: str


BACKGROUND: tuple[SlabStream, ...] = (
    SlabStream(kmalloc_spec(64), 8.0, 2.0, 0.01,
               "work items, timers and RCU callbacks: small payloads"),
    SlabStream(kmalloc_spec(192), 4.0, 5.0, 0.01,
               "work items and kworkers: request and completion records"),
    SlabStream(kmalloc_spec(512), 2.0, 5.0, 0.01, "drivers: virtqueue and protocol buffers"),
    SlabStream(kmalloc_spec(1024), 1.0, 10.0, 0.01, "drivers and sysfs readers: buffers"),
    SlabStream(FILP, 2.0, 0.01, 0.0, "reading a /proc file: its struct file"),
    SlabStream(cache_spec("kmalloc-cg-4k", 4096), 2.0, 0.01, 0.0,
               "reading a /proc file: the seq_file buffer (one page, memcg-accounted)"),
)


class _Background:
    """Live background objects of every stream: stream, slab index, time of death."""

    def __init__(self, caches: list[SlabCache], streams: tuple[SlabStream, ...]) -> None:
        self.caches = caches
        self.rate = np.array([s.per_second for s in streams])
        self.lifetime = np.array([s.lifetime for s in streams])
        self.kept = np.array([s.kept for s in streams])
        self.stream = np.zeros(0, np.int16)
        self.slab = np.zeros(0, np.int64)
        self.dies = np.zeros(0, np.float64)
        self.next_death = np.inf

    def born(self, counts: np.ndarray, dies: np.ndarray) -> None:
        """Allocate ``counts[i]`` objects of stream i, dying at ``dies`` (grouped by stream)."""
        slabs = [self.caches[i].alloc(int(n)) for i, n in enumerate(counts.tolist()) if n]
        stream = np.repeat(np.arange(len(counts), dtype=np.int16), counts)
        slab = np.concatenate(slabs) if slabs else np.zeros(0, np.int64)
        ok = slab >= 0
        self.stream = np.concatenate([self.stream, stream[ok]])
        self.slab = np.concatenate([self.slab, slab[ok]])
        self.dies = np.concatenate([self.dies, dies[ok]])
        self.next_death = min(self.next_death, float(dies[ok].min(initial=np.inf)))

    def expire(self, now: float) -> None:
        """Free every object whose time has come."""
        if now < self.next_death:
            return
        dead = self.dies <= now
        for i in np.unique(self.stream[dead]).tolist():
            self.caches[i].free(self.slab[dead & (self.stream == i)])
        keep = ~dead
        self.stream, self.slab, self.dies = self.stream[keep], self.slab[keep], self.dies[keep]
        self.next_death = float(self.dies.min(initial=np.inf))

    def count(self, i: int) -> int:
        return int(np.count_nonzero(self.stream == i))


class KernelActivity:
    """The kernel's allocations after boot on one boot of a machine.

    Created by ``Machine`` at boot when ``kernel_activity`` is on (the
    default on the x86-64 geometry), as ``m.kernel_activity``.
    """

    def __init__(self, machine: Machine, streams: tuple[SlabStream, ...] = BACKGROUND) -> None:
        self.machine = machine
        self.node = machine.node
        self.rng = machine.rng.spawn(1)[0]
        self.streams = streams
        self.background = _Background([self.cache(s.spec) for s in streams], streams)
        self.blocks: dict[int, list[tuple[SlabCache, np.ndarray]]] = {}
        self.last_tick = machine.now
        self.ticks = 0

    def cache(self, spec: SlabCacheSpec) -> SlabCache:
        """The machine's slab cache for ``spec`` (shared with every other user)."""
        return kmem_cache(self.machine.slab_caches, self.node, spec)

    # -- boot and the clock ----------------------------------------------------
    def boot(self) -> int:
        """Allocate the boot memory blocks' metadata, warm the background, start ticking.

        Runs during the boot (memory_dev_init() in driver_init()).  The
        background starts from its steady state: each stream's objects alive
        at any moment (Poisson, rate x lifetime on average), with exponential
        remaining lifetimes.  Returns the slab pages taken: vmemlab.bootmem
        counts them in the boot's measured slab.
        """
        for block in sorted(self.machine.hotplug.blocks.values(), key=lambda b: b.id):
            self.memory_block_added(block, add_memory_call=False)
        self._births(0.0, np.inf)
        self.machine.call_later(TICK_S, self.tick)
        return len(self.pages())

    def tick(self) -> None:
        """The background up to now: objects die, new ones are born, the next tick is armed.

        A tick stands for the second before it; the objects born in it live
        from now.  When more time passed since the last tick (the clock
        jumped, or the tick skipped an idle span), the objects born earlier
        in the gap that are still alive now are drawn directly: for births
        at rate r spread over a gap of g seconds, each living an exponential
        time of mean L, those alive at the end are Poisson with mean
        r L (1 - exp(-g/L)) and, by memorylessness, have exponential
        remaining lives of mean L again; the kept share is all alive.  So a
        gap of any length costs what one second does.

        While nothing else is due (no other timer, no work, the end of
        ``run()`` further off), the next tick is armed at the last whole
        second before that: an idle hour is one tick, with the same
        distribution of objects and pages as 3600 ticks.  Deterministic per
        seed.
        """
        now = self.machine.now
        dt, self.last_tick = now - self.last_tick, now
        self.ticks += 1
        self.background.expire(now)
        self._births(min(dt, TICK_S), max(0.0, dt - TICK_S))
        idle = self.machine.idle_until() - now
        ticks = max(1, math.floor(idle / TICK_S)) if math.isfinite(idle) else 1
        self.machine.call_later(ticks * TICK_S, self.tick)

    def _births(self, last: float, gap: float) -> None:
        """Allocate the objects born in the ``last`` seconds (alive from now) and those
        born in the ``gap`` before them that are still alive (see ``tick``)."""
        bg, rng, now = self.background, self.rng, self.machine.now
        fresh = rng.poisson(bg.rate * last)
        n = int(fresh.sum())
        life = rng.exponential(1.0, n) * np.repeat(bg.lifetime, fresh)
        life[rng.random(n) < np.repeat(bg.kept, fresh)] = np.inf
        survive = -np.expm1(-gap / bg.lifetime)          # 0 without a gap, 1 for an endless one
        old = rng.poisson(bg.rate * (1 - bg.kept) * bg.lifetime * survive)
        old_life = rng.exponential(1.0, int(old.sum())) * np.repeat(bg.lifetime, old)
        kept = (rng.poisson(bg.rate * bg.kept * gap) if np.isfinite(gap)
                else np.zeros_like(fresh))                # at boot: none kept yet
        streams = np.repeat(np.tile(np.arange(len(fresh)), 3),
                            np.concatenate([fresh, old, kept]))
        dies = np.concatenate([life, old_life, np.full(int(kept.sum()), np.inf)])
        order = np.argsort(streams, kind="stable")
        bg.born(np.bincount(streams, minlength=len(fresh)), now + dies[order])

    # -- hotplug metadata --------------------------------------------------------
    def memory_block_added(self, block: MemoryBlock, add_memory_call: bool) -> int:
        """Allocate a new memory block's objects; 0, or -ENOMEM (nothing kept).

        ``add_memory_call`` is true for the first block of an add_memory()
        call, which also gets the call's struct resource.
        Kernel: add_memory_resource(): register_memory_resource(),
        sparse_add_section(), create_memory_block_devices()
        """
        geo = self.node.geo
        sections = max(1, block.nr_pages // geo.pages_per_section)
        want = [(spec, n * sections) for spec, n in SECTION_OBJECTS]
        want += list(MEMORY_BLOCK_OBJECTS)
        if add_memory_call:
            want += list(ADD_MEMORY_OBJECTS)
        held: list[tuple[SlabCache, np.ndarray]] = []
        for spec, n in want:
            cache = self.cache(spec)
            slabs = cache.alloc(n)
            held.append((cache, slabs))
            if n and slabs.item(-1) < 0:     # alloc() fails from some object on
                self._free(held)
                return ENOMEM
        self.blocks[block.id] = held
        return 0

    def memory_block_removed(self, block: MemoryBlock) -> None:
        """Free a removed memory block's objects.  Kernel: remove_memory_block_devices()"""
        self._free(self.blocks.pop(block.id, []))

    @staticmethod
    def _free(held: list[tuple[SlabCache, np.ndarray]]) -> None:
        for cache, slabs in held:
            cache.free(slabs)

    # -- views -----------------------------------------------------------------
    @property
    def caches(self) -> dict[str, SlabCache]:
        """The caches this activity allocates from, by name."""
        specs = [s.spec for s in self.streams] + [spec for spec, _ in
                                                  MEMORY_BLOCK_OBJECTS + SECTION_OBJECTS]
        return {spec.name: self.machine.slab_caches[spec.name] for spec in specs
                if spec.name in self.machine.slab_caches}

    def objects(self) -> dict[str, int]:
        """Live objects per cache: the background's plus the hotplug metadata."""
        counts = {name: 0 for name in self.caches}
        for i, stream in enumerate(self.streams):
            counts[stream.spec.name] += self.background.count(i)
        for held in self.blocks.values():
            for cache, slabs in held:
                counts[cache.spec.name] += int((slabs >= 0).sum())
        return counts

    def pages(self) -> np.ndarray:
        """Pfns of the slab pages of these caches (shared with other users of them)."""
        parts = [c.pages() for c in self.caches.values()]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    def __repr__(self) -> str:
        n = sum(self.objects().values())
        return (f"<KernelActivity: {n} objects in "
                f"{format_size(len(self.pages()) << self.node.geo.page_shift)} of slab, "
                f"{len(self.blocks)} memory blocks' metadata>")
