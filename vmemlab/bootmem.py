"""The boot kernel's own memory: what a freshly booted x86-64 guest already uses.

After memblock_free_all() the kernel allocates from the buddy allocator
like everyone else.  By the time the guest's init runs, a small 6.12 guest
(the reference VM: 1 GiB, 2 CPUs, Debian 6.12.107, busybox initramfs)
holds:

====================  =======================  ==========  ==========================
what                  reference (1 GiB, 2 CPU)  PageKind    how it scales
====================  =======================  ==========  ==========================
slab, unreclaimable   7508 kB                   SLAB        + 128 kB per CPU (per-CPU
                                                            kthreads, workqueue pools),
                                                            + 2 kB per memory block
                                                            (struct memory_block, sysfs)
slab, reclaimable     680 kB                    SLAB_RECL.  fixed (rootfs dentries, inodes)
kernel stacks         60 threads x 16 KiB       STACK       46 + 7 per CPU threads
other vmalloc         4296 kB                   VMALLOC     fixed (modules, tables)
percpu, dynamic       5 pages per CPU           PERCPU      per CPU
DMA atomic pools      3 x 128 KiB               KERNEL      128 KiB per GiB, one pool per
                                                            zone type (kernel/dma/pool.c)
other kernel pages    3168 kB                   KERNEL      fixed (ftrace records, hash
                                                            tables, driver buffers)
rootfs (initramfs)    2796 kB                   SHMEM       fixed (its files)
init's memory         116 kB anon, 84 page      ANON,       fixed
                      tables, 432 pages mapped  PAGETABLE
per-CPU lists         freed initrd and init     (pcp)       capped by each list's high
                      sections + 1836 pages of
                      short-lived allocations
====================  =======================  ==========  ==========================

The fixed sizes are the reference VM's /proc/meminfo; the per-CPU and per
memory block parts say how the kernel's own rules make them grow.  The
measured slab also holds the objects vmemlab.kernel_activity models one by
one (the memory blocks' sysfs objects, the background's live objects): with
it on, those are allocated in their caches during the boot and the rest of
the slab is that much smaller, so the total is counted once.

The timeline is the kernel's: a quarter of the slab and the per-CPU
threads' stacks are allocated before deferred_init_memmap() (so in the
first section of the preferred zone), the rest during the initcalls after
the watermarks are set; slab of the right orders (SLUB's order for 12
objects per slab with 2 CPUs: 0 to 3) with GFP_KERNEL or
__GFP_RECLAIMABLE, stacks and vmalloc as order-0 pages, the DMA pools as
one order-5 block each.  The seed decides the interleaving of the initcall
allocations (and which CPU frees what), as timing does on a real boot.
Unmovable requests fall back to Movable pageblocks and claim them, which
is what turns low DMA32 pageblocks Unmovable.

Kernel: init/main.c (start_kernel, kernel_init_freeable, do_basic_setup),
mm/mm_init.c page_alloc_init_late(), kernel/fork.c alloc_thread_stack_node(),
mm/slub.c calculate_order(), kernel/dma/pool.c dma_atomic_pool_init(),
init/initramfs.c populate_rootfs(), init/main.c free_initmem(),
arch/x86/mm/init.c free_kernel_image_pages()
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .boot import deferred_init_memmap, free_reserved_area
from .bulk import alloc_bulk_runs, alloc_pages_bulk
from .constants import GiB, KiB, PageKind, PageState, ZoneType
from .memblock import BootConfig, percpu_first_chunk_pages
from .page_alloc import alloc_pages
from .trace import NullTrace
from .zone import init_per_zone_wmark_min

if TYPE_CHECKING:
    from .machine import Machine
    from .node import Node

SLAB_BASE_KB = 7236
SLAB_PER_CPU_KB = 128
SLAB_PER_MEMORY_BLOCK_KB = 2
SLAB_RECLAIMABLE_KB = 680
SLAB_ORDER_SHARE = ((0, 0.40), (1, 0.10), (2, 0.15), (3, 0.35))   # of the pages
SLAB_RECLAIMABLE_ORDER_SHARE = ((0, 0.5), (1, 0.25), (2, 0.25))
EARLY_SLAB_SHARE = 0.25
THREADS_FIXED, THREADS_PER_CPU = 46, 7
THREAD_SIZE = 16 * KiB
VMALLOC_KB = 4296
PERCPU_DYNAMIC_PAGES_PER_CPU = 5
OTHER_KERNEL_KB = 3168
ATOMIC_POOL_MIN = 128 * KiB
ROOTFS_KB = 2796
INIT_ANON_KB = 116
INIT_PAGE_TABLES = 84
INIT_MAPPED_PAGES = 432
INIT_COMMITTED_KB = 3468
TRANSIENT_PAGES = 1836
CHUNK = 64      # order-0 pages per interleaved allocation step


@dataclass
class BootMemory:
    """What the boot kernel allocated: owner ids by use, and the numbers /proc needs."""

    config: BootConfig
    owners: dict[str, int] = field(default_factory=dict)
    percpu_first_chunk: int = 0     # memblock pages of the percpu first chunk
    mapped: int = 0                 # NR_FILE_MAPPED of init's processes
    committed: int = 0              # vm_committed_as of init's processes, pages
    anon: int = 0                   # init's anonymous pages (AnonPages at boot)
    given: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # use -> runs

    def given_pfns(self, name: str) -> np.ndarray:
        """Pfns the boot gave one use, ascending (``pages`` while none moved or was freed)."""
        runs = self.given.get(name, [])
        return np.sort(np.concatenate([np.arange(s, s + n) for s, n in runs]
                                      or [np.zeros(0, np.int64)]))

    def pages(self, name: str, node: Node) -> np.ndarray:
        """Pfns one boot use holds now (they move if migrated)."""
        mm = node.mm
        return np.flatnonzero((mm.owner == self.owners[name]) & (mm.state == PageState.ALLOCATED))


@dataclass(frozen=True)
class Step:
    """One allocation of the boot timeline."""

    use: str
    kind: PageKind
    gfp: str
    order: int = 0
    nr_pages: int = 1


def boot_kernel(m: Machine, config: BootConfig, rng: np.random.Generator,
                kernel_objects: Callable[[], int] | None = None) -> BootMemory:
    """Run the boot from memblock_free_all() to a shell prompt; what the kernel holds.

    Early allocations, deferred struct page init, watermarks, the initcalls,
    the initramfs, the late frees to the per-CPU lists, init's own memory.
    ``kernel_objects`` (vmemlab.kernel_activity's boot) allocates the slab
    objects modelled one by one, when driver_init() runs: the memory blocks'
    sysfs objects and the live background objects.  It returns the slab
    pages they took, and the boot's other slab is that much smaller: the
    measured slab (SLAB_BASE_KB ...) holds them all, so it is counted once.
    The boot itself is not traced.
    """
    node = m.node
    saved, node.trace = node.trace, NullTrace()
    try:
        bm = BootMemory(config)
        early, late = boot_steps(m, config, bm, rng)
        _run(node, early, bm)
        deferred_init_memmap(node, m.layout)
        init_per_zone_wmark_min(node)
        if kernel_objects is not None:
            late = _less_slab(late, kernel_objects())
        _run(node, _atomic_pools(m) + late, bm)
        _unpack_rootfs(node, bm)
        _late_frees(m, bm, rng)
        _start_init(node, bm)
    finally:
        node.trace = saved
    return bm


def boot_steps(m: Machine, config: BootConfig, bm: BootMemory,
               rng: np.random.Generator) -> tuple[list[Step], list[Step]]:
    """The allocations before deferred init and those of the initcalls (seeded order)."""
    geo = m.geometry
    kb = geo.page_size // KiB
    blocks = boot_memory_blocks(m)
    slab_kb = SLAB_BASE_KB + SLAB_PER_CPU_KB * config.cpus + SLAB_PER_MEMORY_BLOCK_KB * blocks
    slab = _slab_steps("slab", PageKind.SLAB, "GFP_KERNEL", slab_kb // kb, SLAB_ORDER_SHARE)
    split = int(len(slab) * EARLY_SLAB_SHARE)
    stack_pages = THREAD_SIZE >> geo.page_shift
    per_cpu_threads = THREADS_PER_CPU * config.cpus
    early = slab[:split] + _chunks("kernel stacks", PageKind.STACK, per_cpu_threads * stack_pages)
    late = (slab[split:] + _chunks("kernel stacks", PageKind.STACK, THREADS_FIXED * stack_pages)
            + _slab_steps("slab (reclaimable)", PageKind.SLAB_RECLAIMABLE,
                          "GFP_KERNEL | __GFP_RECLAIMABLE", SLAB_RECLAIMABLE_KB // kb,
                          SLAB_RECLAIMABLE_ORDER_SHARE)
            + _chunks("vmalloc", PageKind.VMALLOC, VMALLOC_KB // kb)
            + _chunks("percpu chunks", PageKind.PERCPU,
                      PERCPU_DYNAMIC_PAGES_PER_CPU * config.cpus, 1)
            + _chunks("other kernel pages", PageKind.KERNEL, OTHER_KERNEL_KB // kb)
            + _chunks("short-lived", PageKind.KERNEL, TRANSIENT_PAGES))
    late = [late[i] for i in rng.permutation(len(late))]
    bm.percpu_first_chunk = percpu_first_chunk_pages(config, geo)
    return early, late


def boot_memory_blocks(m: Machine) -> int:
    """Memory blocks holding boot memory (each gets a struct memory_block at boot)."""
    per = m.geometry.pages_per_memory_block
    return len({b for s, e in m.layout.memory for b in range(s // per, -(-e // per))})


def _slab_steps(use: str, kind: PageKind, gfp: str, nr_pages: int,
                shares: tuple[tuple[int, float], ...]) -> list[Step]:
    """Slabs of each order, interleaved: SLUB allocates them as objects are needed.

    Order-0 slabs come in runs of CHUNK pages (one bulk step each).
    """
    steps: list[list[Step]] = []
    high = {order: int(nr_pages * share) >> order for order, share in shares if order}
    for order, _ in shares:
        n = high[order] if order else nr_pages - sum(c << o for o, c in high.items())
        if order:
            steps.append([Step(use, kind, gfp, order, 1 << order)] * n)
        else:
            steps.append([Step(use, kind, gfp, 0, len(c)) for c in _split(n, CHUNK) if c])
    longest = max(len(s) for s in steps)
    return [s[i] for i in range(longest) for s in steps if i < len(s)]


def _less_slab(steps: list[Step], nr_pages: int) -> list[Step]:
    """``steps`` with ``nr_pages`` fewer pages of unreclaimable slab, the smallest
    slabs last in the timeline first; a slab cut short becomes order-0 pages."""
    out = list(steps)
    for i in sorted((i for i, s in enumerate(out) if s.use == "slab"),
                    key=lambda i: (out[i].order, -i)):
        if nr_pages <= 0:
            break
        step = out[i]
        take = min(nr_pages, step.nr_pages)
        out[i] = dataclasses.replace(step, order=step.order if take == step.nr_pages else 0,
                                     nr_pages=step.nr_pages - take)
        nr_pages -= take
    return [s for s in out if s.nr_pages]


def _split(n: int, chunk: int) -> list[range]:
    return [range(i, min(n, i + chunk)) for i in range(0, n, chunk)]


def _chunks(use: str, kind: PageKind, nr_pages: int, chunk: int = CHUNK) -> list[Step]:
    """Order-0 pages in steps of ``chunk``."""
    full, rest = divmod(nr_pages, chunk)
    return [Step(use, kind, "GFP_KERNEL", 0, chunk)] * full + (
        [Step(use, kind, "GFP_KERNEL", 0, rest)] if rest else [])


def _atomic_pools(m: Machine) -> list[Step]:
    """dma_atomic_pool_init(): 128 KiB per GiB of RAM (at least 128 KiB, at most
    one MAX_PAGE_ORDER block) for GFP_KERNEL, and for GFP_DMA / GFP_DMA32 when
    those zones have memory.  Kernel: kernel/dma/pool.c (postcore_initcall)
    """
    node, geo = m.node, m.geometry
    total = sum(z.managed_pages for z in node.zones)
    nr = min(total // (GiB // (128 * KiB)), geo.max_order_nr_pages)
    size = max(nr << geo.page_shift, ATOMIC_POOL_MIN)
    order = min(max(0, (-(-size >> geo.page_shift) - 1).bit_length()), geo.max_page_order)
    pools = [Step("DMA atomic pools", PageKind.KERNEL, "GFP_KERNEL", order, 1 << order)]
    if node.zone(ZoneType.DMA).managed():
        pools.append(Step("DMA atomic pools", PageKind.KERNEL, "GFP_KERNEL | GFP_DMA",
                          order, 1 << order))
    if node.zone(ZoneType.DMA32).managed():
        pools.append(Step("DMA atomic pools", PageKind.KERNEL, "GFP_KERNEL | GFP_DMA32",
                          order, 1 << order))
    return pools


def _owner(node: Node, bm: BootMemory, use: str, kind: PageKind) -> int:
    if use not in bm.owners:
        bm.owners[use] = node.new_owner(kind, f"boot: {use}").id
    return bm.owners[use]


def _run(node: Node, steps: list[Step], bm: BootMemory) -> None:
    """Allocate each step; a boot that runs out of memory is a machine too small."""
    for step in steps:
        owner = _owner(node, bm, step.use, step.kind)
        runs = bm.given.setdefault(step.use, [])
        if step.order or step.nr_pages == 1:
            pfn = alloc_pages(node, step.order, step.gfp, step.kind, owner)
            got = pfn is not None
            if got:
                runs.append((pfn, step.nr_pages))
        else:
            starts, lengths = alloc_bulk_runs(node, step.gfp, step.nr_pages, step.kind, owner)
            runs += zip(starts.tolist(), lengths.tolist(), strict=True)
            got = int(lengths.sum()) == step.nr_pages
        if not got:
            raise ValueError(f"boot memory is too small: the kernel could not allocate "
                             f"its {step.use} at boot; give the guest more boot_memory")


def _unpack_rootfs(node: Node, bm: BootMemory) -> None:
    """populate_rootfs(): the initramfs's files become tmpfs pages of the rootfs."""
    n = ROOTFS_KB * KiB >> node.geo.page_shift
    owner = _owner(node, bm, "rootfs (initramfs)", PageKind.SHMEM)
    alloc_pages_bulk(node, "GFP_HIGHUSER_MOVABLE", n, PageKind.SHMEM, owner)


def _late_frees(m: Machine, bm: BootMemory, rng: np.random.Generator) -> None:
    """The initrd, the init sections and the short-lived allocations go to per-CPU lists.

    free_initrd_mem() runs in an async worker, free_initmem() and
    mark_rodata_ro() in kernel_init: each on some CPU, whose list keeps the
    pages (up to its high mark).  Kernel: init/initramfs.c,
    init/main.c kernel_init(), mm/page_alloc.c free_reserved_area()
    """
    node, pagesets = m.node, m.node.pagesets
    transient = bm.given_pfns("short-lived")   # still held: nothing freed them since
    cpu_of = rng.integers(pagesets.cpus, size=-(-len(transient) // 32))
    for cpu in range(pagesets.cpus):
        pagesets.free_unref_pages(transient[np.repeat(cpu_of, 32)[:len(transient)] == cpu], cpu)
    for names in (("free_initrd_mem",), ("free_initmem", "mark_rodata_ro")):
        cpu = int(rng.integers(pagesets.cpus))
        pfns = [free_reserved_area(node, r.start_pfn, r.end_pfn)
                for r in m.layout.reserved if r.freed in names]
        if pfns:
            pagesets.free_unref_pages(np.concatenate(pfns), cpu)


def _start_init(node: Node, bm: BootMemory) -> None:
    """init and its shell: anonymous memory, page tables, mapped rootfs pages."""
    kb = node.geo.page_size // KiB
    bm.anon = INIT_ANON_KB // kb
    bm.mapped = INIT_MAPPED_PAGES
    bm.committed = INIT_COMMITTED_KB // kb
    alloc_pages_bulk(node, "GFP_KERNEL | __GFP_ZERO | __GFP_ACCOUNT", INIT_PAGE_TABLES,
                     PageKind.PAGETABLE, _owner(node, bm, "init's page tables",
                                                PageKind.PAGETABLE))
    alloc_pages_bulk(node, "GFP_HIGHUSER_MOVABLE", bm.anon, PageKind.ANON,
                     _owner(node, bm, "init's anonymous memory", PageKind.ANON))

