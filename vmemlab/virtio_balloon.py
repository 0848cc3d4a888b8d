"""virtio-balloon, the older way to shrink a guest, for contrast with virtio-mem.

The host sets a target (``num_pages`` in 4 KiB units; QEMU's ``balloon
<MiB>`` sets the guest's total instead); the guest driver *inflates* by
allocating pages from the page allocator, 256 at a time, and telling the
host their pfns, which the host then discards.  Which pages it gets is up
to the allocator: single pages scattered over all zones, including
virtio-mem memory.  So ballooning fragments guest memory at 4 KiB and
leaves 2 MiB host huge pages *partly* used, which splits them on the host;
virtio-mem gives memory back in whole aligned blocks.

With balloon compaction (the default) balloon pages are movable: they come
from GFP_HIGHUSER_MOVABLE and migrate through the driver (inflate the new
page, deflate the old).  Without it they are unmovable and pin their
pageblocks.  Ballooned pages leave MemTotal.  If an allocation fails the
driver logs "Out of puff!" and tries again 200 ms later; it never OOM-kills.
That sleep is a timer here, not work, so ``settle()`` returns while the
balloon is stuck short of its target (``run()`` keeps retrying).

Kernel: drivers/virtio/virtio_balloon.c (fill_balloon(), leak_balloon(),
virtballoon_migratepage()), mm/balloon_compaction.c; QEMU
hw/virtio/virtio-balloon.c (virtio_balloon_to_target())
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING

import numpy as np

from .bulk import alloc_pages_bulk, free_pages_bulk
from .checks import check_int
from .constants import ENOMEM, PageKind, PageState, format_size, parse_size
from .page_alloc import AllocRequest, alloc_block, prep_new_page, zone_uncharge

if TYPE_CHECKING:
    from .machine import Machine
    from .zone import Zone

VIRTIO_BALLOON_ARRAY_PFNS_MAX = 256
TELL_HOST_S_PER_PAGE = 2.3e-6     # 7 GB inflated in about 4.1 s with per-pfn requests
OUT_OF_PUFF_SLEEP_S = 0.2
HOST_HUGE_PAGE = 2 << 20


class VirtioBalloon:
    """The balloon device (host side) and its guest driver, as one object.

    ``num_pages`` is the config field the host sets; ``set_memory(bytes)``
    is QEMU's ``balloon`` command; ``actual`` is what the guest reports.
    """

    def __init__(self, machine: Machine, compaction: bool = True, num_pages: int = 0) -> None:
        self.m = machine
        self.compaction = compaction
        self.num_pages = num_pages  # host: pages it wants in the balloon
        self._pages: dict[int, None] = {}  # guest: balloon pages, an ordered set
        self.out_of_puff = 0
        self._queued = False
        self._owner = machine.node.new_owner(PageKind.BALLOON, "virtio_balloon").id
        if compaction:
            machine.node.movable_ops[int(PageKind.BALLOON)] = self
        if num_pages:
            self.queue_work()

    # -- host ----------------------------------------------------------------
    def set_memory(self, target: int | str) -> None:
        """QEMU ``balloon <size>``: the guest should end with this much RAM.

        The RAM it is measured from is get_current_ram_size(): ``-m`` plus
        the pc-dimms (virtio-mem memory is not counted).  A target of 0 or
        less is refused, as qmp_balloon() does.
        QEMU: qmp_balloon(), virtio_balloon_to_target()
        """
        size = parse_size(target)
        if size <= 0:
            raise ValueError(f"target={target!r}: Parameter 'target' expects a size")
        ram = self.ram_size()
        self.set_num_pages((ram - min(size, ram)) >> 12)

    def ram_size(self) -> int:
        """QEMU get_current_ram_size(): boot RAM plus every pc-dimm."""
        return self.m.boot_memory + sum(d.size for d in self.m.dimms)

    def set_num_pages(self, num_pages: int) -> None:
        """Set the config field and notify the guest."""
        self.num_pages = check_int("num_pages", num_pages, 0, 2**32 - 1)   # a __le32 field
        self.queue_work()

    @property
    def actual(self) -> int:
        """Pages in the balloon, as the guest reports them."""
        return len(self._pages)

    @property
    def pages(self) -> list[int]:
        """The balloon's pages, the most recently inserted last."""
        return list(self._pages)

    def info(self) -> str:
        """HMP ``info balloon``: the guest's memory in MiB."""
        return f"balloon: actual={(self.ram_size() - (self.actual << 12)) >> 20}\n"

    # -- guest -------------------------------------------------------------------
    def queue_work(self) -> None:
        if not self._queued:
            self._queued = True
            self.m.spawn(self.update_balloon_size())

    def update_balloon_size(self) -> Generator[float, None, None]:
        """Inflate or deflate towards the target, 256 pages per step.

        Kernel: update_balloon_size_func()
        """
        self._queued = False
        while (diff := self.num_pages - self.actual) != 0:
            if diff > 0:
                got = self.fill_balloon(min(diff, VIRTIO_BALLOON_ARRAY_PFNS_MAX))
                yield got * TELL_HOST_S_PER_PAGE
                if got < min(diff, VIRTIO_BALLOON_ARRAY_PFNS_MAX):
                    # msleep(200), then the work requeues itself.  Sleeping is
                    # waiting, not work: settle() returns while out of puff.
                    self.m.call_later(OUT_OF_PUFF_SLEEP_S, self.queue_work)
                    return
            else:
                n = self.leak_balloon(min(-diff, VIRTIO_BALLOON_ARRAY_PFNS_MAX))
                yield n * TELL_HOST_S_PER_PAGE

    def fill_balloon(self, num: int) -> int:
        """Allocate up to ``num`` pages and hand them to the host.  Kernel: fill_balloon()"""
        node = self.m.node
        gfp = ("GFP_HIGHUSER_MOVABLE" if self.compaction else "GFP_HIGHUSER") + \
            " | __GFP_NOMEMALLOC | __GFP_NORETRY | __GFP_NOWARN"
        pfns = alloc_pages_bulk(node, gfp, num, PageKind.BALLOON, self._owner)
        if len(pfns) < num:
            self.out_of_puff += 1
            node.printk("virtio_balloon virtio1: Out of puff! Can't get 1 pages")
        self._to_balloon(pfns)
        node.count_event("balloon_inflate", len(pfns))
        return len(pfns)

    def _to_balloon(self, pfns: np.ndarray) -> None:
        """balloon_page_insert(): allocated pages become PageOffline, outside MemTotal."""
        mm = self.m.node.mm
        for zone, sel in self._by_zone(pfns):
            zone_uncharge(zone, mm.kind[sel])
            zone.managed_pages -= len(sel)
        mm.mark_page_offline_pfns(pfns, self._owner)
        mm.kind[pfns] = PageKind.BALLOON
        self._pages.update(dict.fromkeys(pfns.tolist()))

    def _from_balloon(self, pfns: np.ndarray) -> None:
        """balloon_page_delete() and put_page(): back to the buddy, back in MemTotal."""
        node = self.m.node
        node.mm.mark_allocated_pfns(pfns, PageKind.BALLOON, self._owner)
        for zone, sel in self._by_zone(pfns):
            zone.nr_kind[PageKind.BALLOON] += len(sel)
            zone.managed_pages += len(sel)
        for pfn in pfns.tolist():
            del self._pages[pfn]
        free_pages_bulk(node, pfns)

    def _by_zone(self, pfns: np.ndarray) -> list[tuple[Zone, np.ndarray]]:
        node = self.m.node
        zones = node.mm.pb_zone[pfns >> node.geo.pageblock_order]
        return [(node.zones[z], pfns[zones == z]) for z in np.unique(zones).tolist()]

    def leak_balloon(self, num: int) -> int:
        """Take pages back from the host and free them, most recent first.

        Kernel: leak_balloon(), balloon_page_dequeue()
        """
        out = list(islice(reversed(self._pages), num))
        self._from_balloon(np.array(sorted(out), np.int64))
        self.m.node.count_event("balloon_deflate", len(out))
        return len(out)

    def migrate_page(self, src: int, gfp: int) -> tuple[int, int]:
        """Balloon compaction: inflate a new page, deflate the old one.

        Returns (0 or -ENOMEM, new pfn).  Kernel: virtballoon_migratepage()
        """
        node = self.m.node
        req = AllocRequest(node, 0, gfp, PageKind.BALLOON)
        got = alloc_block(node, req)
        if got is None:
            return ENOMEM, -1
        zone, dst = got
        prep_new_page(zone, dst, req, self._owner)
        self._to_balloon(np.array([dst], np.int64))
        self._from_balloon(np.array([src], np.int64))
        node.count_event("balloon_migrate")
        return 0, dst


@dataclass(frozen=True)
class HostThpReport:
    """How the host's 2 MiB huge pages backing guest RAM fare.

    ``whole``: fully backed (still a huge page); ``split``: partly given
    back (the host had to split it into 4 KiB pages); ``returned``: fully
    given back (no host memory used).
    """

    whole: int
    split: int
    returned: int

    @property
    def total(self) -> int:
        return self.whole + self.split + self.returned

    def __str__(self) -> str:
        return (f"host 2 MiB pages: {self.whole} whole, {self.split} split, "
                f"{self.returned} returned (of {self.total}; host memory in use "
                f"{format_size((self.whole + self.split) * HOST_HUGE_PAGE)} or less)")


def host_thp_report(m: Machine) -> HostThpReport:
    """Classify each 2 MiB of guest RAM by how much of it was given back to the host.

    Ballooned 4 KiB pages and unplugged virtio-mem blocks are given back;
    everything else in boot RAM and in the virtio-mem regions is backed.
    """
    mm, shift = m.node.mm, m.geometry.page_shift
    per = HOST_HUGE_PAGE >> shift
    back = np.zeros(mm.nr_pfns, bool)
    given = (mm.state == PageState.PAGE_OFFLINE) & (mm.kind == PageKind.BALLOON)
    for start, end in m.layout.memory:
        back[start:end] = True
    for dev in m.virtio_mem:
        s = dev.addr >> shift
        bpp = dev.block_size >> shift
        back[s:s + len(dev.bitmap) * bpp] = True
        given[s:s + len(dev.bitmap) * bpp] |= np.repeat(~dev.bitmap, bpp)
    n = mm.nr_pfns // per * per
    backed = back[:n].reshape(-1, per).any(axis=1)
    out = given[:n].reshape(-1, per).sum(axis=1)[backed]
    return HostThpReport(int((out == 0).sum()), int(((out > 0) & (out < per)).sum()),
                         int((out == per).sum()))
