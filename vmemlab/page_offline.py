"""PageOffline: pages that exist but are logically offline, owned by a driver.

virtio-mem keeps the unplugged parts of an online memory block PageOffline;
virtio-balloon marks its pages the same way.  Such pages are present but
not managed (MemTotal drops as soon as they are taken), and the owner holds
a reference, which it drops when the block is being offlined so offlining can
skip them.

Two ways into PageOffline and two ways back, as in the kernel:

* ``set_fake_offline(..., onlined=True)``: pages the driver took with
  alloc_contig_range() (``adjust_managed_page_count(-n)``);
* ``set_fake_offline(..., onlined=False)``: pages the driver kept out of the
  buddy while the block was onlined; the DIRTY flag remembers that they
  never were in the buddy (the kernel uses PG_dirty as that marker);
* ``fake_online()``: DIRTY pages go through generic_online_page(), others
  through free_contig_range(); both become managed again.

Kernel: drivers/virtio/virtio_mem.c (virtio_mem_set_fake_offline(),
virtio_mem_clear_fake_offline(), virtio_mem_fake_online()),
mm/memory_hotplug.c generic_online_page(), mm/page_alloc.c
adjust_managed_page_count()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .constants import PageFlag, PageKind, PageState
from .page_alloc import free_pages_ok, zone_uncharge

if TYPE_CHECKING:
    from .node import Node

_ALLOCATED = int(PageState.ALLOCATED)


def adjust_managed_page_count(node: Node, pfn: int, nr_pages: int) -> None:
    """Kernel: mm/page_alloc.c, adjust_managed_page_count()"""
    node.page_zone(pfn).managed_pages += nr_pages


def generic_online_page(node: Node, pfn: int, order: int) -> None:
    """Hand a chunk to the buddy allocator for the first time, to the list tail.

    Kernel: mm/memory_hotplug.c generic_online_page() -> __free_pages_core()
    """
    zone = node.page_zone(pfn)
    node.mm.mark_free(pfn, pfn + (1 << order))
    zone.managed_pages += 1 << order
    free_pages_ok(zone, pfn, order, to_tail=True)


def set_fake_offline(node: Node, pfn: int, nr_pages: int, onlined: bool, owner: int) -> None:
    """Make pages PageOffline, owned by ``owner``.

    ``onlined``: the pages were allocated (alloc_contig_range) and leave the
    managed count now; otherwise they were never handed to the buddy and
    are only marked (DIRTY) so fake_online() onlines them properly.
    """
    mm = node.mm
    end = pfn + nr_pages
    if onlined:
        if np.any(mm.state[pfn:end] != _ALLOCATED):
            raise AssertionError(f"VM_BUG_ON: fake-offlining [{pfn:#x}, {end:#x}) "
                                 "that is not allocated")
        zone_uncharge(node.page_zone(pfn), mm.kind[pfn:end])
        mm.mark_page_offline(pfn, end, owner)
        adjust_managed_page_count(node, pfn, -nr_pages)
    else:
        mm.mark_page_offline(pfn, end, owner)
        mm.set_flag(np.arange(pfn, end), PageFlag.DIRTY)


def fake_online(node: Node, pfn: int, nr_pages: int, contig_owner: int) -> None:
    """Give PageOffline pages back to the buddy allocator.

    Kernel: drivers/virtio/virtio_mem.c, virtio_mem_fake_online()
    """
    from .bulk import free_pages_bulk

    mm = node.mm
    order = node.geo.max_page_order
    while (pfn | nr_pages) & ((1 << order) - 1):
        order -= 1
    for start in range(pfn, pfn + nr_pages, 1 << order):
        end = start + (1 << order)
        if mm.flags[start] & PageFlag.DIRTY:
            generic_online_page(node, start, order)
        else:
            # free_contig_range() of pages alloc_contig_range() had taken
            mm.mark_allocated(start, end, PageKind.KERNEL, contig_owner, 0)
            node.page_zone(start).nr_kind[PageKind.KERNEL] += end - start
            adjust_managed_page_count(node, start, end - start)
            free_pages_bulk(node, np.arange(start, end))


def _owned_offline(node: Node, pfn: int, nr_pages: int, owner: int) -> np.ndarray:
    mm = node.mm
    sel = ((mm.state[pfn:pfn + nr_pages] == PageState.PAGE_OFFLINE)
           & (mm.owner[pfn:pfn + nr_pages] == owner))
    return pfn + np.flatnonzero(sel)


def drop_references(node: Node, pfn: int, nr_pages: int, owner: int) -> None:
    """MEM_GOING_OFFLINE: a driver drops its reference on its own PageOffline pages.

    Kernel: virtio_mem_fake_offline_going_offline()
    """
    node.mm.set_flag(_owned_offline(node, pfn, nr_pages, owner), PageFlag.REFCOUNT_ZERO)


def take_references(node: Node, pfn: int, nr_pages: int, owner: int) -> None:
    """MEM_CANCEL_OFFLINE: take the references back.  Kernel: ..._cancel_offline()"""
    node.mm.clear_flag(_owned_offline(node, pfn, nr_pages, owner), PageFlag.REFCOUNT_ZERO)
