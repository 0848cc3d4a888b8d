"""virtio-mem Big Block Mode: device blocks as large as Linux memory blocks, or larger.

When the device's blocks are at least a memory block (a 1 GiB block for a
hugetlb-backed VM, say), subblocks make no sense: the driver plugs and
unplugs *big blocks* of max(device block, memory block), each one or more
whole Linux memory blocks.  A big block is UNUSED, PLUGGED (plugged, not
added), ADDED, or FAKE_OFFLINE (an unplug is under way).

Unplugging makes three passes over added big blocks, highest first: those
fully offline, then those online only in ZONE_MOVABLE, then any.  For
each it fake-offlines every online section with alloc_contig_range (so a
stuck page fails fast with -EBUSY instead of offline_pages() retrying
forever), then offlines and removes the big block, then unplugs it.
Linux 5.11 added BBM; 6.5 removed its old "unsafe" direct-offline path.

Kernel: drivers/virtio/virtio_mem.c, virtio_mem_bbm_*()
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from .constants import EBUSY, EINVAL, ENOSPC, ZoneType
from .page_offline import drop_references, set_fake_offline, take_references
from .virtio_mem import VirtioMemView

if TYPE_CHECKING:
    from .virtio_mem_driver import VirtioMemDriver, Work

BBM_STATES = ("UNUSED", "PLUGGED", "ADDED", "FAKE_OFFLINE")


class BigBlockMode:
    """BBM state and algorithms of one driver."""

    name = "BBM"

    def __init__(self, vm: VirtioMemDriver) -> None:
        self.vm = vm
        self.bb_size = max(vm.device_block_size, vm.m.geometry.memory_block_size)
        self.unit_size = self.bb_size
        self.first_bb_id = -(-vm.addr // self.bb_size)
        self.next_bb_id = self.first_bb_id
        self.last_usable_bb_id = self.first_bb_id - 1
        nr = max(0, (vm.addr + vm.region_size) // self.bb_size - self.first_bb_id)
        self.bb_state = ["UNUSED"] * nr

    # -- helpers -----------------------------------------------------------------
    def get_state(self, bb_id: int) -> str:
        return self.bb_state[bb_id - self.first_bb_id]

    def set_state(self, bb_id: int, state: str) -> None:
        """Kernel: virtio_mem_bbm_set_bb_state()"""
        self.bb_state[bb_id - self.first_bb_id] = state

    def for_each_bb(self, state: str, reverse: bool = False) -> Iterator[int]:
        ids = range(self.first_bb_id, self.next_bb_id)
        for bb_id in (reversed(ids) if reverse else ids):
            if self.get_state(bb_id) == state:
                yield bb_id

    def bb_addr(self, bb_id: int) -> int:
        return bb_id * self.bb_size

    def bb_pfns(self, bb_id: int) -> tuple[int, int]:
        shift = self.vm.m.geometry.page_shift
        return self.bb_addr(bb_id) >> shift, self.bb_size >> shift

    def _sections(self, bb_id: int) -> Iterator[int]:
        """Online sections of a big block (pfn_to_online_page() per section)."""
        start, nr = self.bb_pfns(bb_id)
        per = self.vm.m.geometry.pages_per_section
        online = self.vm.node.mm.section_online
        for pfn in range(start, start + nr, per):
            if online[pfn // per]:
                yield pfn

    def bb_is_offline(self, bb_id: int) -> bool:
        return not any(True for _ in self._sections(bb_id))

    def bb_is_movable(self, bb_id: int) -> bool:
        return all(self.vm.node.mm.zone_of(p) == ZoneType.MOVABLE for p in self._sections(bb_id))

    def nr_offline_blocks(self) -> int:
        return 0

    def has_unplugged_blocks(self) -> bool:
        return False

    def refresh_last_usable(self) -> None:
        end = self.vm.addr + self.vm.usable_region_size - 1
        last = end // self.bb_size
        if (end + 1) % self.bb_size:
            last -= 1
        self.last_usable_bb_id = last

    # -- plug ----------------------------------------------------------------------
    def plug_bb(self, bb_id: int) -> Work:
        return (yield from self.vm.send_plug_request(self.bb_addr(bb_id), self.bb_size))

    def unplug_bb(self, bb_id: int) -> Work:
        return (yield from self.vm.send_unplug_request(self.bb_addr(bb_id), self.bb_size))

    def plug_request(self, diff: int) -> Work:
        """Kernel: virtio_mem_bbm_plug_request()"""
        nb_bb = diff // self.bb_size
        if not nb_bb:
            return 0
        for bb_id in self.for_each_bb("UNUSED"):
            if not self.vm.could_add_memory(self.bb_size):
                return ENOSPC
            rc = yield from self.plug_and_add_bb(bb_id)
            nb_bb -= rc == 0
            if rc or not nb_bb:
                return rc
        while nb_bb:
            if not self.vm.could_add_memory(self.bb_size):
                return ENOSPC
            if self.next_bb_id > self.last_usable_bb_id:
                return ENOSPC
            bb_id = self.next_bb_id
            self.next_bb_id += 1
            rc = yield from self.plug_and_add_bb(bb_id)
            if rc:
                return rc
            nb_bb -= 1
        return 0

    def plug_and_add_bb(self, bb_id: int) -> Work:
        """Kernel: virtio_mem_bbm_plug_and_add_bb()"""
        if self.get_state(bb_id) != "UNUSED":
            return EINVAL
        rc = yield from self.plug_bb(bb_id)
        if rc:
            return rc
        self.set_state(bb_id, "ADDED")
        rc = yield from self.vm.add_memory(self.bb_addr(bb_id), self.bb_size)
        if rc:
            undo = yield from self.unplug_bb(bb_id)
            self.set_state(bb_id, "PLUGGED" if undo else "UNUSED")
        return rc

    # -- unplug --------------------------------------------------------------------
    def unplug_request(self, diff: int) -> Work:
        """Three passes, highest first: offline, movable-only, any.

        Kernel: virtio_mem_bbm_unplug_request()
        """
        nb_bb = diff // self.bb_size
        if not nb_bb:
            return 0
        for i in range(3):
            for bb_id in self.for_each_bb("ADDED", reverse=True):
                if i == 0 and not self.bb_is_offline(bb_id):
                    continue
                if i == 1 and not self.bb_is_movable(bb_id):
                    continue
                rc = yield from self.offline_remove_and_unplug_bb(bb_id)
                if rc == EBUSY:
                    continue
                nb_bb -= rc == 0
                if rc or not nb_bb:
                    return rc
        return EBUSY if nb_bb else 0

    def offline_remove_and_unplug_bb(self, bb_id: int) -> Work:
        """Fake-offline every online section, offline+remove, then unplug.

        Kernel: virtio_mem_bbm_offline_remove_and_unplug_bb()
        """
        vm = self.vm
        self.set_state(bb_id, "FAKE_OFFLINE")
        done: list[int] = []
        per = vm.m.geometry.pages_per_section
        for pfn in list(self._sections(bb_id)):
            rc = yield from vm.fake_offline(pfn, per)
            if rc:
                self._rollback(bb_id, done)
                return rc
            done.append(pfn)
        rc = vm.offline_and_remove_memory(self.bb_addr(bb_id), self.bb_size)
        if rc:
            self._rollback(bb_id, done)
            return rc
        rc = yield from self.unplug_bb(bb_id)
        self.set_state(bb_id, "PLUGGED" if rc else "UNUSED")
        return rc

    def _rollback(self, bb_id: int, done: list[int]) -> None:
        per = self.vm.m.geometry.pages_per_section
        for pfn in done:
            self.vm.fake_online(pfn, per)
        self.set_state(bb_id, "ADDED")

    def cleanup_pending(self) -> Work:
        """Unplug big blocks left PLUGGED.  Kernel: virtio_mem_cleanup_pending_mb()"""
        for bb_id in self.for_each_bb("PLUGGED"):
            rc = yield from self.unplug_bb(bb_id)
            if rc:
                return rc
            self.set_state(bb_id, "UNUSED")
        return 0

    # -- hooks ---------------------------------------------------------------------
    def online_page(self, pfn: int, order: int) -> None:
        """Online everything, unless the big block is being unplugged."""
        from .page_offline import generic_online_page

        bb_id = (pfn << self.vm.m.geometry.page_shift) // self.bb_size
        if self.get_state(bb_id) == "FAKE_OFFLINE":
            set_fake_offline(self.vm.node, pfn, 1 << order, False, self.vm.owner)
        else:
            generic_online_page(self.vm.node, pfn, order)

    def notify(self, action: str, start_pfn: int, nr_pages: int) -> int:
        """The BBM part of the memory notifier."""
        vm = self.vm
        bb_id = (start_pfn << vm.m.geometry.page_shift) // self.bb_size
        fake = self.get_state(bb_id) == "FAKE_OFFLINE"
        size = nr_pages << vm.m.geometry.page_shift
        if action == "MEM_GOING_OFFLINE" and fake:
            drop_references(vm.node, start_pfn, nr_pages, vm.owner)
        elif action == "MEM_CANCEL_OFFLINE" and fake:
            take_references(vm.node, start_pfn, nr_pages, vm.owner)
        elif action == "MEM_OFFLINE":
            vm.offline_size += size
        elif action == "MEM_ONLINE":
            vm.offline_size -= size
            if not vm.wq_active and vm.could_add_memory(vm.offline_threshold // 2):
                vm.retry()
        return 0

    def view(self) -> VirtioMemView:
        vm, dev = self.vm, self.vm.dev
        shift = vm.m.geometry.page_shift
        plugged = np.array([[s in ("PLUGGED", "ADDED", "FAKE_OFFLINE")]
                            for s in self.bb_state], bool).reshape(-1, 1)
        return VirtioMemView(vm.name, vm.addr >> shift, vm.region_size >> shift,
                             dev.block_size >> shift, dev.usable_region_size >> shift,
                             dev.requested_size, dev.size, dev.bitmap.copy(), self.name,
                             self.bb_size >> shift, self.bb_size >> shift,
                             self.first_bb_id * self.bb_size >> shift, tuple(self.bb_state),
                             plugged)
