"""Guest activities: memory users a student knows by name.

``m.activity("ramfs", size=256*MiB)`` is "write 256 MiB into a ramfs";
``a.release(fraction=15/16)`` is "delete a seeded random 15/16 of it".
Each kind allocates with the gfp mask and page type the kernel uses for it,
which decides where its pages may go and whether they can move:

=============  ==========================  ===========  =======================
kind           gfp (kernel)                migratetype  can it move / reclaim?
=============  ==========================  ===========  =======================
anon           GFP_HIGHUSER_MOVABLE        Movable      migrates; no swap here
page_cache     GFP_HIGHUSER_MOVABLE        Movable      migrates; clean: reclaimed
tmpfs          GFP_HIGHUSER_MOVABLE        Movable      migrates; swap-backed
ramfs          GFP_HIGHUSER                Unmovable    on the LRU but dirty with
                                                        no writeback: cannot migrate
pipes          GFP_HIGHUSER|__GFP_ACCOUNT  Unmovable    no; freed when the pipe closes
page_tables    GFP_KERNEL (PGTABLE_USER)   Unmovable    no
slab           GFP_KERNEL                  Unmovable    no (kmalloc)
slab_reclaim.. GFP_KERNEL|__GFP_RECLAIMABLE Reclaimable no (whole slab pages)
kernel         GFP_KERNEL                  Unmovable    no (vmalloc, stacks, drivers)
files          dentry (reclaimable slab)   Reclaimable  no; a slab page is freed
               + shmem inode (tmpfs, slab) Unmovable    only when all its objects are;
               or ext4 inode (reclaimable)              ext4's go on drop_caches 2
pin            GFP_HIGHUSER_MOVABLE, then  Unmovable    no: FOLL_LONGTERM moves the
               migrated to GFP_USER                     pages out of ZONE_MOVABLE
=============  ==========================  ===========  =======================

Anonymous memory also needs page tables: one page-table page per 512 pages
mapped (one PTE page per 2 MiB), allocated as the memory is touched.

A pipe holds up to its buffer size, 16 pages by default; ``pipe_size`` sets
it as fcntl(F_SETPIPE_SZ) does: rounded up to a power of two of pages, at
most pipe-max-size (1 MiB).

Some activities are processes (``is_process``: anon, pin, pipes): their
memory is freed when they exit, so the OOM killer may choose them
(vmemlab.oom, with their ``oom_score_adj``).  Each has a pid and a comm (its
name, cut to 15 characters); an allocation runs as its activity's process.
Files in tmpfs, ramfs or the page cache outlive the process that wrote
them.  Allocation failures are data: an activity that cannot get all it
asked for keeps what it got and reports the shortfall.

Kernel: mm/memory.c (do_anonymous_page, pte_alloc), mm/filemap.c,
mm/shmem.c (shmem_alloc_inode), fs/ramfs/inode.c, fs/pipe.c (pipe_write,
pipe_set_size, round_pipe_size), mm/gup.c (check_and_migrate_movable_folios),
fs/dcache.c
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .bulk import BulkRequests, alloc_bulk_runs, alloc_pages_bulk, free_pages_bulk
from .checks import check_fraction
from .constants import PageFlag, PageKind, PageState, format_size, parse_size
from .oom import TaskMem, check_oom_score_adj
from .slab import DENTRY, EXT4_INODE, SHMEM_INODE, kmem_cache

if TYPE_CHECKING:
    from .machine import Machine


@dataclass(frozen=True)
class ActivitySpec:
    """How one kind of activity allocates."""

    kind: PageKind
    gfp: str
    description: str
    unit_pages: int = 1   # pages released together (a pipe's 16 buffers)
    process: bool = False  # a process holds it and frees it when it exits


PIPE_DEF_BUFFERS = 16           # pages of a new pipe
SPECS = {
    "anon": ActivitySpec(PageKind.ANON, "GFP_HIGHUSER_MOVABLE",
                         "anonymous memory, malloc'd and touched", process=True),
    "page_cache": ActivitySpec(PageKind.FILE, "GFP_HIGHUSER_MOVABLE",
                               "file data read into the page cache (clean)"),
    "tmpfs": ActivitySpec(PageKind.SHMEM, "GFP_HIGHUSER_MOVABLE", "files in tmpfs"),
    "ramfs": ActivitySpec(PageKind.RAMFS, "GFP_HIGHUSER",
                          "files in ramfs (no swap, no writeback)"),
    "pipes": ActivitySpec(PageKind.PIPE, "GFP_HIGHUSER | __GFP_ACCOUNT",
                          "full pipes, 16 buffer pages each (pipe_size sets it)",
                          unit_pages=PIPE_DEF_BUFFERS, process=True),
    "page_tables": ActivitySpec(PageKind.PAGETABLE, "GFP_KERNEL | __GFP_ZERO | __GFP_ACCOUNT",
                                "page-table pages"),
    "slab": ActivitySpec(PageKind.SLAB, "GFP_KERNEL", "kmalloc memory (unreclaimable slab)"),
    "slab_reclaimable": ActivitySpec(PageKind.SLAB_RECLAIMABLE, "GFP_KERNEL | __GFP_RECLAIMABLE",
                                     "reclaimable slab pages (dentries, inodes)"),
    "kernel": ActivitySpec(PageKind.KERNEL, "GFP_KERNEL", "vmalloc, stacks, driver pages"),
    "files": ActivitySpec(PageKind.SLAB_RECLAIMABLE, "GFP_KERNEL | __GFP_RECLAIMABLE",
                          "empty files: a dentry and an inode each (tmpfs or ext4)"),
    "pin": ActivitySpec(PageKind.ANON, "GFP_HIGHUSER_MOVABLE",
                        "long-term pinned memory (vfio, RDMA)", process=True),
}
PTES_PER_PAGE = 512
PIPE_MAX_SIZE = 1 << 20         # /proc/sys/fs/pipe-max-size
FILE_SYSTEMS = ("tmpfs", "ext4")


def round_pipe_size(nbytes: int | str, page_size: int = 4096) -> int:
    """The buffer pages F_SETPIPE_SZ gives a pipe asked for ``nbytes``.

    At least a page, rounded up to a power of two; more than pipe-max-size
    (1 MiB) is refused (-EPERM for a process without CAP_SYS_RESOURCE,
    which vmemlab raises as ValueError).

    Kernel: fs/pipe.c, round_pipe_size(), pipe_set_size()
    """
    size = parse_size(nbytes)
    if size <= 0:
        raise ValueError(f"pipe_size={nbytes!r} must be a positive size")
    size = max(page_size, 1 << (size - 1).bit_length())
    if size > PIPE_MAX_SIZE:
        raise ValueError(f"pipe_size={nbytes!r} rounds to {size} bytes, more than "
                         f"pipe-max-size ({PIPE_MAX_SIZE}): F_SETPIPE_SZ fails with -EPERM")
    return size // page_size


class Activity:
    """Memory held by one named guest activity.  Create with ``m.activity()``."""

    def __init__(self, machine: Machine, kind: str, name: str,
                 oom_score_adj: int = 0) -> None:
        self.machine = machine
        self.node = machine.node
        self.kind = kind
        self.spec = SPECS[kind]
        self.name = name
        self.owner_ids: list[int] = []
        self.requested = 0
        self.shortfall = 0
        self.stopped = False
        self.killed = False
        self.oom_score_adj = check_oom_score_adj(oom_score_adj)
        self.pid = machine.new_pid()
        self.comm = name[:15]                 # TASK_COMM_LEN - 1
        self.vm_pages = 0                     # mapped (total_vm) of a process
        self._unmapped = 0                    # MADV_DONTNEED'd, mapped again on touch

    def stop(self) -> None:
        """Stop a background activity (``Machine.start_activity``); it keeps its memory."""
        self.stopped = True

    # -- identity -----------------------------------------------------------
    @property
    def is_process(self) -> bool:
        """A process holds this memory and frees it when it exits (OOM-killable)."""
        return self.spec.process

    def running(self) -> _Running:
        """Run the enclosed allocations as this activity's process (``current``)."""
        return _Running(self)

    def task_mem(self) -> TaskMem:
        """The process's mm counters as the OOM killer reads them."""
        anon = self.spec.kind == PageKind.ANON
        return TaskMem(self.pid, self.comm, self.vm_pages if anon else 0,
                       len(self.pages()) if anon else 0, 0, 0, 0, 0, self.oom_score_adj)

    def exit(self) -> None:
        """The process dies (the OOM killer's SIGKILL): its memory is freed, it stops."""
        self.release(1.0)
        self.killed = self.stopped = True

    def _new_owner(self, kind: PageKind | None = None) -> int:
        owner = self.node.new_owner(kind or self.spec.kind, self.name, self)
        self.owner_ids.append(owner.id)
        return owner.id

    def pages(self) -> np.ndarray:
        """Pfns this activity holds now (they move if the kernel migrates them)."""
        mm = self.node.mm
        held = np.isin(mm.owner, self.owner_ids) & (mm.state == PageState.ALLOCATED)
        return np.flatnonzero(held)

    @property
    def resident(self) -> int:
        """Bytes held now."""
        return len(self.pages()) << self.node.geo.page_shift

    def __repr__(self) -> str:
        short = f", {format_size(self.shortfall)} short" if self.shortfall else ""
        dead = ", killed" if self.killed else ""
        return (f"<Activity {self.name!r}: {self.kind}, "
                f"{format_size(self.resident)} resident{short}{dead}>")

    # -- growing and shrinking ----------------------------------------------
    def allocate(self, nr_pages: int, turn: BulkRequests | None = None) -> int:
        """Allocate ``nr_pages`` more pages as this process; return how many it got.

        ``turn``, for an activity that ``allocates_plainly``, is the
        ``BulkRequests`` a run of such calls shares (``allocate_in_turn``).
        """
        if self.killed:
            return 0
        self._touch(nr_pages)
        with self.running():
            if turn is not None:
                return self._allocate_plainly(nr_pages, turn)
            return self._allocate(nr_pages)

    def _touch(self, nr_pages: int) -> None:
        """Map ``nr_pages`` more; pages MADV_DONTNEED'd earlier are mapped already."""
        touched = min(nr_pages, self._unmapped)
        self._unmapped -= touched
        self.vm_pages += nr_pages - touched

    def _allocate(self, nr_pages: int) -> int:
        return self._allocate_plainly(nr_pages, None)

    def _allocate_plainly(self, nr_pages: int, turn: BulkRequests | None) -> int:
        """One owner, one bulk allocation, the shortfall counted."""
        owner = self._new_owner()
        if turn is not None:
            got = turn.alloc(self.spec.gfp, self.spec.kind, nr_pages, owner)
        else:
            got = int(alloc_bulk_runs(self.node, self.spec.gfp, nr_pages, self.spec.kind,
                                      owner)[1].sum())
        shift = self.node.geo.page_shift
        self.requested += nr_pages << shift
        self.shortfall += (nr_pages - got) << shift
        return got

    def allocates_plainly(self) -> bool:
        """``allocate`` is ``_allocate_plainly``: one owner, one bulk allocation, nothing else."""
        cls = type(self)
        return cls.allocate is Activity.allocate and cls._allocate is Activity._allocate

    def release(self, fraction: float = 1.0) -> int:
        """Free all (1.0) or a seeded random ``fraction`` of this activity's memory.

        Returns the number of bytes given back to the page allocator.
        """
        _check_fraction(fraction)
        pages = self._release_units(self.pages(), fraction)
        free_pages_bulk(self.node, pages)
        self._unmap(len(pages), fraction)
        return len(pages) << self.node.geo.page_shift

    def _unmap(self, nr_pages: int, fraction: float) -> None:
        """munmap everything (1.0), or MADV_DONTNEED pages that stay mapped."""
        if fraction >= 1.0:
            self.vm_pages = self._unmapped = 0
        else:
            self._unmapped += nr_pages

    def _release_units(self, pages: np.ndarray, fraction: float) -> np.ndarray:
        if fraction >= 1.0:
            return pages
        k = int(round(len(pages) * fraction))
        chosen = self.machine.rng.choice(len(pages), size=k, replace=False)
        return np.sort(pages[chosen])


class _Running:
    """``Activity.running()``: ``node.current`` is the activity inside (quicker than a
    generator-based context manager, as it runs once per allocation)."""

    __slots__ = ("act", "prev")

    def __init__(self, act: Activity) -> None:
        self.act = act

    def __enter__(self) -> None:
        node = self.act.node
        self.prev, node.current = node.current, self.act

    def __exit__(self, *exc: object) -> None:
        self.act.node.current = self.prev


def allocate_in_turn(requests: Sequence[tuple[Activity, int]]) -> bool:
    """``act.allocate(n)`` for each (act, n) in turn until one falls short (then False).

    When every activity allocates plainly, the calls share one
    vmemlab.bulk.BulkRequests, which gives the same pages, owners and
    counters much faster for many small requests (a fill): runs of requests
    that the types' own free lists surely serve are taken a type at a time
    (``BulkRequests.take_run``); the others go through ``allocate()``, which
    runs as the process (``current``, for the OOM killer).  A process the OOM
    killer has killed meanwhile gets nothing, which ends the turn.
    """
    if not requests or not all(act.allocates_plainly() for act, _ in requests):
        return all(act.allocate(n) == n for act, n in requests)
    acts = list({id(act): act for act, _ in requests}.values())
    slot = {id(act): i for i, act in enumerate(acts)}
    slots = [slot[id(act)] for act, _ in requests]
    sizes = [n for _, n in requests]
    requesters = [(act.spec.gfp, act.spec.kind, act.name, act) for act in acts]
    turn = BulkRequests(acts[0].node)
    i, slow = 0, False     # slow: the request at i is known not to be taken in a run
    while i < len(requests):
        if any(act.killed for act in acts):      # the OOM killer struck: one by one
            turn.flush()
            return all(act.allocate(n, turn) == n for act, n in requests[i:])
        first = len(turn.node.owners) + len(turn.owners)
        end = i if slow else turn.take_run(requesters, slots, sizes, i)
        if end == i:
            turn.flush()
            act, n = requests[i]
            if act.allocate(n, turn) != n:
                return False
            i, slow = i + 1, False
            continue
        slow = True
        _took(acts, slots, sizes, i, end, first)
        i = end
    turn.flush()
    return True


def _took(acts: list[Activity], slots: list[int], sizes: list[int], start: int, end: int,
          first: int) -> None:
    """What ``allocate()`` records for requests [start, end) that got all they asked:
    each its owner (ids from ``first`` on), its pages mapped and requested.

    Mapping n pages after m pages is mapping n + m (``_touch`` takes from
    what is unmapped first), so each activity's are counted at once.
    """
    owners: list[list[int]] = [[] for _ in acts]
    pages = [0] * len(acts)
    for k in range(start, end):
        owners[slots[k]].append(first + k - start)
        pages[slots[k]] += sizes[k]
    for act, ids, n in zip(acts, owners, pages, strict=True):
        if ids:
            act.owner_ids += ids
            act._touch(n)
            act.requested += n << act.node.geo.page_shift


def _check_fraction(fraction: float) -> None:
    check_fraction("fraction", fraction)


class AnonActivity(Activity):
    """Anonymous memory plus the page-table pages that map it."""

    def __init__(self, machine: Machine, kind: str, name: str,
                 page_tables: bool = True, oom_score_adj: int = 0) -> None:
        super().__init__(machine, kind, name, oom_score_adj)
        self.page_tables = page_tables
        self.pt_owner = -1

    def _allocate(self, nr_pages: int) -> int:
        """Touch ``nr_pages`` pages: a PTE page first for every 2 MiB, then the pages."""
        if not self.page_tables:
            return super()._allocate(nr_pages)
        if self.pt_owner < 0:
            self.pt_owner = self.node.new_owner(PageKind.PAGETABLE, f"{self.name} (page tables)",
                                                self).id
        mapped = len(self.pages())
        got_total = 0
        chunk = PTES_PER_PAGE * 64
        for start in range(0, nr_pages, chunk):
            n = min(chunk, nr_pages - start)
            need_pt = -(-(mapped + n) // PTES_PER_PAGE) - -(-mapped // PTES_PER_PAGE)
            if need_pt:
                pts = alloc_pages_bulk(self.node, SPECS["page_tables"].gfp, need_pt,
                                       PageKind.PAGETABLE, self.pt_owner)
                if len(pts) < need_pt:
                    self.shortfall += (nr_pages - start) << self.node.geo.page_shift
                    break
            got = super()._allocate(n)
            got_total += got
            mapped += got
            if got < n or self.killed:
                break
        return got_total

    def allocates_plainly(self) -> bool:
        return not self.page_tables

    def page_table_pages(self) -> np.ndarray:
        """The page-table pages mapping this memory."""
        mm = self.node.mm
        return np.flatnonzero((mm.owner == self.pt_owner) & (mm.state == PageState.ALLOCATED))

    def release(self, fraction: float = 1.0) -> int:
        """MADV_DONTNEED a fraction (page tables stay), or unmap everything (1.0)."""
        freed = super().release(fraction)
        if fraction >= 1.0:
            pts = self.page_table_pages()
            free_pages_bulk(self.node, pts)
            freed += len(pts) << self.node.geo.page_shift
        return freed

    def task_mem(self) -> TaskMem:
        """Anonymous rss plus the page-table pages that map it."""
        mem = super().task_mem()
        pgtables = len(self.page_table_pages()) << self.node.geo.page_shift
        return TaskMem(mem.pid, mem.comm, mem.total_vm, mem.rss_anon, 0, 0, pgtables, 0,
                       mem.oom_score_adj)

    @property
    def resident(self) -> int:
        return (len(self.pages()) + len(self.page_table_pages())) << self.node.geo.page_shift


class UnitActivity(Activity):
    """Memory released in fixed units of pages: pipes, each a full buffer of pages.

    ``unit_pages`` is a pipe's buffer: 16 pages, or what ``round_pipe_size()``
    gives for a ``pipe_size`` (F_SETPIPE_SZ).  Kernel: fs/pipe.c, pipe_set_size()
    """

    def __init__(self, machine: Machine, kind: str, name: str, oom_score_adj: int = 0,
                 pipe_size: int | str | None = None) -> None:
        super().__init__(machine, kind, name, oom_score_adj)
        self.unit_pages = (self.spec.unit_pages if pipe_size is None else
                           round_pipe_size(pipe_size, machine.geometry.page_size))

    def _release_units(self, pages: np.ndarray, fraction: float) -> np.ndarray:
        if fraction >= 1.0:
            return pages
        owners = self.node.mm.owner[pages]
        units = np.unique(owners)
        k = int(round(len(units) * fraction))
        chosen = self.machine.rng.choice(units, size=k, replace=False)
        return pages[np.isin(owners, chosen)]

    def _allocate(self, nr_pages: int) -> int:
        """Allocate whole units, each under its own owner id."""
        unit = self.unit_pages
        got_total = 0
        for _ in range(-(-nr_pages // unit)):
            got = super()._allocate(unit)
            got_total += got
            if got < unit:
                break
        return got_total


class FilesActivity(Activity):
    """Empty files: one dentry and one inode each, packed into slab pages.

    On tmpfs (the default, as the lab's guests make them) the inode comes
    from shmem_inode_cache, unreclaimable slab in Unmovable pageblocks, and
    both objects live as long as the file: drop_caches cannot free them.  On
    ext4 the inode is ext4_inode_cache (reclaimable); an unused file's dentry
    and inode go on ``drop_caches 2`` while the file stays on disk.

    Kernel: mm/shmem.c shmem_alloc_inode() (shmem_inode_cache, no
    SLAB_RECLAIM_ACCOUNT), fs/ext4/super.c ext4_alloc_inode(), fs/dcache.c
    """

    def __init__(self, machine: Machine, kind: str, name: str, fs: str = "tmpfs") -> None:
        if fs not in FILE_SYSTEMS:
            raise ValueError(f"fs={fs!r} is not one of {list(FILE_SYSTEMS)}")
        super().__init__(machine, kind, name)
        self.fs = fs
        inode = SHMEM_INODE if fs == "tmpfs" else EXT4_INODE
        self.dentries = kmem_cache(machine.slab_caches, self.node, DENTRY)
        self.inodes = kmem_cache(machine.slab_caches, self.node, inode)
        self.dentry_slab = np.zeros(0, np.int64)
        self.inode_slab = np.zeros(0, np.int64)

    @property
    def count(self) -> int:
        """Files whose dentry and inode are in memory now."""
        return int(np.count_nonzero(self.dentry_slab >= 0))

    def create(self, count: int) -> int:
        """Create ``count`` files; return how many got both a dentry and an inode."""
        with self.running():
            d = self.dentries.alloc(count)
            i = self.inodes.alloc(count)
        ok = (d >= 0) & (i >= 0)
        self.dentries.free(d[~ok])
        self.inodes.free(i[~ok])
        self.dentry_slab = np.concatenate([self.dentry_slab, d[ok]])
        self.inode_slab = np.concatenate([self.inode_slab, i[ok]])
        self.requested += count
        self.shortfall += count - int(ok.sum())
        return int(ok.sum())

    def drop_unused(self) -> int:
        """Shrink the dcache and icache: ext4 files leave memory, tmpfs files cannot.

        Returns the number of slab pages freed.  Kernel: fs/drop_caches.c
        drop_slab() -> super_cache_scan(): prune_dcache_sb(), prune_icache_sb()
        """
        if self.fs == "tmpfs":
            return 0
        return self._forget(np.flatnonzero(self.dentry_slab >= 0))

    def _forget(self, gone: np.ndarray) -> int:
        """Free the dentries and inodes of files ``gone``; pages of slabs that emptied."""
        pages = self.dentries.free(self.dentry_slab[gone]) + self.inodes.free(self.inode_slab[gone])
        self.dentry_slab[gone] = -1
        self.inode_slab[gone] = -1
        return pages

    def pages(self) -> np.ndarray:
        """Slab pages holding at least one of this activity's objects."""
        return np.union1d(self.dentries.pages(self.dentry_slab), self.inodes.pages(self.inode_slab))

    def release(self, fraction: float = 1.0) -> int:
        """Unlink all or a seeded random ``fraction`` of the files.

        Returns the bytes of slab pages that became empty and were freed.
        """
        _check_fraction(fraction)
        alive = np.flatnonzero(self.dentry_slab >= 0)
        k = len(alive) if fraction >= 1.0 else int(round(len(alive) * fraction))
        gone = alive if fraction >= 1.0 else np.sort(
            self.machine.rng.choice(alive, size=k, replace=False))
        return self._forget(gone) << self.node.geo.page_shift

    def __repr__(self) -> str:
        return (f"<Activity {self.name!r}: files on {self.fs}, {self.count} files in "
                f"{format_size(len(self.pages()) << self.node.geo.page_shift)} of slab>")


class PinActivity(Activity):
    """Memory pinned long-term (FOLL_LONGTERM), as vfio or RDMA do.

    The pages are faulted in as movable anonymous memory; pinning then
    migrates every page that sits in ZONE_MOVABLE (or an isolated
    pageblock) to a GFP_USER page in a kernel zone, and raises the page
    count so nothing can migrate it again.  If that migration fails the pin
    fails and the memory stays unpinned.

    Kernel: mm/gup.c, check_and_migrate_movable_folios(),
    migrate_longterm_unpinnable_folios(); include/linux/mm.h,
    folio_is_longterm_pinnable()
    """

    def _allocate(self, nr_pages: int) -> int:
        from .migrate import migrate_longterm_unpinnable

        got = super()._allocate(nr_pages)
        owner = self.owner_ids[-1]
        mm = self.node.mm
        batch = np.flatnonzero((mm.owner == owner) & (mm.state == PageState.ALLOCATED))
        batch = migrate_longterm_unpinnable(self.node, batch)
        mm.set_flag(batch, PageFlag.PINNED)
        self.shortfall += (got - len(batch)) << self.node.geo.page_shift
        return len(batch)

    def release(self, fraction: float = 1.0) -> int:
        """Unpin and free all or a random ``fraction`` of the pages."""
        _check_fraction(fraction)
        pages = self._release_units(self.pages(), fraction)
        self.node.mm.clear_flag(pages, PageFlag.PINNED)
        free_pages_bulk(self.node, pages)
        self._unmap(len(pages), fraction)
        return len(pages) << self.node.geo.page_shift


ACTIVITY_CLASSES: dict[str, type[Activity]] = {
    "anon": AnonActivity, "pipes": UnitActivity, "files": FilesActivity, "pin": PinActivity}
