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
pipes          GFP_HIGHUSER|__GFP_ACCOUNT  Unmovable    no
page_tables    GFP_KERNEL (PGTABLE_USER)   Unmovable    no
slab           GFP_KERNEL                  Unmovable    no (kmalloc)
slab_reclaim.. GFP_KERNEL|__GFP_RECLAIMABLE Reclaimable no (whole slab pages)
kernel         GFP_KERNEL                  Unmovable    no (vmalloc, stacks, drivers)
files          dentry + inode slab,        Reclaimable  no; a slab page is freed
               GFP_KERNEL|__GFP_RECLAIMABLE             only when all its objects are
pin            GFP_HIGHUSER_MOVABLE, then  Unmovable    no: FOLL_LONGTERM moves the
               migrated to GFP_USER                     pages out of ZONE_MOVABLE
=============  ==========================  ===========  =======================

Anonymous memory also needs page tables: one page-table page per 512 pages
mapped (one PTE page per 2 MiB), allocated as the memory is touched.

Allocation failures are data: an activity that cannot get all it asked for
keeps what it got and reports the shortfall.

Kernel: mm/memory.c (do_anonymous_page, pte_alloc), mm/filemap.c,
mm/shmem.c, fs/ramfs/inode.c, fs/pipe.c (pipe_write), mm/gup.c
(check_and_migrate_movable_folios), fs/dcache.c
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .bulk import alloc_bulk_runs, alloc_pages_bulk, free_pages_bulk
from .constants import PageFlag, PageKind, PageState, format_size
from .slab import DENTRY, EXT4_INODE, kmem_cache

if TYPE_CHECKING:
    from .machine import Machine


@dataclass(frozen=True)
class ActivitySpec:
    """How one kind of activity allocates."""

    kind: PageKind
    gfp: str
    description: str
    unit_pages: int = 1   # pages released together (a pipe's 16 buffers)


SPECS = {
    "anon": ActivitySpec(PageKind.ANON, "GFP_HIGHUSER_MOVABLE",
                         "anonymous memory, malloc'd and touched"),
    "page_cache": ActivitySpec(PageKind.FILE, "GFP_HIGHUSER_MOVABLE",
                               "file data read into the page cache (clean)"),
    "tmpfs": ActivitySpec(PageKind.SHMEM, "GFP_HIGHUSER_MOVABLE", "files in tmpfs"),
    "ramfs": ActivitySpec(PageKind.RAMFS, "GFP_HIGHUSER",
                          "files in ramfs (no swap, no writeback)"),
    "pipes": ActivitySpec(PageKind.PIPE, "GFP_HIGHUSER | __GFP_ACCOUNT",
                          "full pipes, 16 buffer pages each", unit_pages=16),
    "page_tables": ActivitySpec(PageKind.PAGETABLE, "GFP_KERNEL | __GFP_ZERO | __GFP_ACCOUNT",
                                "page-table pages"),
    "slab": ActivitySpec(PageKind.SLAB, "GFP_KERNEL", "kmalloc memory (unreclaimable slab)"),
    "slab_reclaimable": ActivitySpec(PageKind.SLAB_RECLAIMABLE, "GFP_KERNEL | __GFP_RECLAIMABLE",
                                     "reclaimable slab pages (dentries, inodes)"),
    "kernel": ActivitySpec(PageKind.KERNEL, "GFP_KERNEL", "vmalloc, stacks, driver pages"),
    "files": ActivitySpec(PageKind.SLAB_RECLAIMABLE, "GFP_KERNEL | __GFP_RECLAIMABLE",
                          "empty files: a dentry and an ext4 inode each"),
    "pin": ActivitySpec(PageKind.ANON, "GFP_HIGHUSER_MOVABLE",
                        "long-term pinned memory (vfio, RDMA)"),
}
PTES_PER_PAGE = 512


class Activity:
    """Memory held by one named guest activity.  Create with ``m.activity()``."""

    def __init__(self, machine: Machine, kind: str, name: str) -> None:
        self.machine = machine
        self.node = machine.node
        self.kind = kind
        self.spec = SPECS[kind]
        self.name = name
        self.owner_ids: list[int] = []
        self.requested = 0
        self.shortfall = 0
        self.stopped = False

    def stop(self) -> None:
        """Stop a background activity (``Machine.start_activity``); it keeps its memory."""
        self.stopped = True

    # -- identity -----------------------------------------------------------
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
        return (f"<Activity {self.name!r}: {self.kind}, "
                f"{format_size(self.resident)} resident{short}>")

    # -- growing and shrinking ----------------------------------------------
    def allocate(self, nr_pages: int) -> int:
        """Allocate ``nr_pages`` more pages; return how many were obtained."""
        owner = self._new_owner()
        _, lengths = alloc_bulk_runs(self.node, self.spec.gfp, nr_pages, self.spec.kind, owner)
        got = int(lengths.sum())
        self.requested += nr_pages << self.node.geo.page_shift
        self.shortfall += (nr_pages - got) << self.node.geo.page_shift
        return got

    def release(self, fraction: float = 1.0) -> int:
        """Free all (1.0) or a seeded random ``fraction`` of this activity's memory.

        Returns the number of bytes given back to the page allocator.
        """
        _check_fraction(fraction)
        pages = self._release_units(self.pages(), fraction)
        free_pages_bulk(self.node, pages)
        return len(pages) << self.node.geo.page_shift

    def _release_units(self, pages: np.ndarray, fraction: float) -> np.ndarray:
        if fraction >= 1.0:
            return pages
        k = int(round(len(pages) * fraction))
        chosen = self.machine.rng.choice(len(pages), size=k, replace=False)
        return np.sort(pages[chosen])


def _check_fraction(fraction: float) -> None:
    if not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction={fraction!r} must be a number in [0, 1]")


class AnonActivity(Activity):
    """Anonymous memory plus the page-table pages that map it."""

    def __init__(self, machine: Machine, kind: str, name: str,
                 page_tables: bool = True) -> None:
        super().__init__(machine, kind, name)
        self.page_tables = page_tables
        self.pt_owner = -1

    def allocate(self, nr_pages: int) -> int:
        """Touch ``nr_pages`` pages: a PTE page first for every 2 MiB, then the pages."""
        if not self.page_tables:
            return super().allocate(nr_pages)
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
            got = super().allocate(n)
            got_total += got
            mapped += got
            if got < n:
                break
        return got_total

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

    @property
    def resident(self) -> int:
        return (len(self.pages()) + len(self.page_table_pages())) << self.node.geo.page_shift


class UnitActivity(Activity):
    """Memory released in fixed units of pages (a pipe's buffers)."""

    def _release_units(self, pages: np.ndarray, fraction: float) -> np.ndarray:
        if fraction >= 1.0:
            return pages
        owners = self.node.mm.owner[pages]
        units = np.unique(owners)
        k = int(round(len(units) * fraction))
        chosen = self.machine.rng.choice(units, size=k, replace=False)
        return pages[np.isin(owners, chosen)]

    def allocate(self, nr_pages: int) -> int:
        """Allocate whole units, each under its own owner id."""
        unit = self.spec.unit_pages
        got_total = 0
        for _ in range(-(-nr_pages // unit)):
            got = super().allocate(unit)
            got_total += got
            if got < unit:
                break
        return got_total


class FilesActivity(Activity):
    """Empty files: one dentry and one inode each, packed into slab pages."""

    def __init__(self, machine: Machine, kind: str, name: str) -> None:
        super().__init__(machine, kind, name)
        self.dentries = kmem_cache(machine.slab_caches, self.node, DENTRY)
        self.inodes = kmem_cache(machine.slab_caches, self.node, EXT4_INODE)
        self.dentry_slab = np.zeros(0, np.int64)
        self.inode_slab = np.zeros(0, np.int64)

    @property
    def count(self) -> int:
        """Files that exist now."""
        return int(np.count_nonzero(self.dentry_slab >= 0))

    def create(self, count: int) -> int:
        """Create ``count`` files; return how many got both a dentry and an inode."""
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
        pages = self.dentries.free(self.dentry_slab[gone]) + self.inodes.free(self.inode_slab[gone])
        self.dentry_slab[gone] = -1
        self.inode_slab[gone] = -1
        return pages << self.node.geo.page_shift

    def __repr__(self) -> str:
        return (f"<Activity {self.name!r}: files, {self.count} files in "
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

    def allocate(self, nr_pages: int) -> int:
        from .migrate import migrate_longterm_unpinnable

        got = super().allocate(nr_pages)
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
        return len(pages) << self.node.geo.page_shift


ACTIVITY_CLASSES: dict[str, type[Activity]] = {
    "anon": AnonActivity, "pipes": UnitActivity, "files": FilesActivity, "pin": PinActivity}
