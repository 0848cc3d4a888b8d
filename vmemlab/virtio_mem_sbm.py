"""virtio-mem Sub Block Mode: memory blocks split into subblocks.

In SBM the driver adds whole Linux memory blocks but plugs and unplugs
them in *subblocks*: max(pageblock, device block) since 5.19 (2 MiB on
x86-64), max(MAX_ORDER-1 block, pageblock) before (4 MiB).  It keeps one
state per memory block and one bit per subblock:

=================  ====================================================
state (6.12)       meaning
=================  ====================================================
UNUSED             nothing plugged, not added to Linux
PLUGGED            (partly) plugged but not added (an add that failed)
OFFLINE            fully plugged, added, offline
OFFLINE_PARTIAL    partly plugged, added, offline
KERNEL             fully plugged, online in a kernel zone
KERNEL_PARTIAL     partly plugged, online in a kernel zone
MOVABLE            fully plugged, online in ZONE_MOVABLE
MOVABLE_PARTIAL    partly plugged, online in ZONE_MOVABLE
=================  ====================================================

5.8 had ONLINE/ONLINE_PARTIAL instead of KERNEL*/MOVABLE_PARTIAL, plus
ONLINE_MOVABLE for full blocks: a partly plugged block could not be
onlined to ZONE_MOVABLE, and ONLINE_MOVABLE blocks were never unplugged.

Plugging fills partly plugged blocks first, then reuses unused blocks, then
takes new ones at the top.  Unplugging walks blocks by state in the
profile's order (partly plugged first, offline before online, ZONE_MOVABLE
before kernel zones), each from the highest id down, and inside a block
from the highest subblock down; an online block is tried whole first.

Kernel: drivers/virtio/virtio_mem.c, virtio_mem_sbm_*()
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from .constants import EBUSY, EINVAL, ENOSPC, EPERM, ZoneType
from .page_offline import drop_references, set_fake_offline, take_references
from .virtio_mem import VirtioMemView

if TYPE_CHECKING:
    from .virtio_mem_driver import VirtioMemDriver, Work


class SubBlockMode:
    """SBM state and algorithms of one driver."""

    name = "SBM"

    def __init__(self, vm: VirtioMemDriver) -> None:
        self.vm = vm
        geo = vm.m.geometry
        self.mb_size = geo.memory_block_size
        self.sb_size = self.subblock_size(vm)
        self.sbs_per_mb = self.mb_size // self.sb_size
        self.unit_size = self.mb_size
        self.states = vm.profile.sbm_states
        self.first_mb_id = -(-vm.addr // self.mb_size)
        self.next_mb_id = self.first_mb_id
        self.last_usable_mb_id = self.first_mb_id - 1
        nr = max(0, (vm.addr + vm.region_size) // self.mb_size - self.first_mb_id)
        self.mb_state = ["UNUSED"] * nr
        self.sb_plugged = np.zeros((nr, self.sbs_per_mb), bool)
        self.have_unplugged_mb = False

    @staticmethod
    def subblock_size(vm: VirtioMemDriver) -> int:
        """max(pageblock, device block); 5.8: also at least a MAX_ORDER-1 block."""
        geo = vm.m.geometry
        sb = geo.page_size << geo.pageblock_order
        if vm.profile.sbm_subblock == "max_order":
            sb = max(sb, geo.page_size << geo.max_page_order)
        return max(sb, vm.device_block_size)

    # -- state helpers -------------------------------------------------------
    def get_state(self, mb_id: int) -> str:
        return self.mb_state[mb_id - self.first_mb_id]

    def set_state(self, mb_id: int, state: str) -> None:
        """Kernel: virtio_mem_sbm_set_mb_state()"""
        if state not in self.states:
            raise AssertionError(f"VM_BUG_ON: {state} is not an SBM state of this kernel")
        self.mb_state[mb_id - self.first_mb_id] = state

    def for_each_mb(self, state: str, reverse: bool = False) -> Iterator[int]:
        """Memory blocks in ``state``, checked live (the mutex is dropped in between)."""
        ids = range(self.first_mb_id, self.next_mb_id)
        for mb_id in (reversed(ids) if reverse else ids):
            if self.get_state(mb_id) == state:
                yield mb_id

    def sb_bits(self, mb_id: int) -> np.ndarray:
        return self.sb_plugged[mb_id - self.first_mb_id]

    def test_plugged(self, mb_id: int, sb_id: int, count: int) -> bool:
        return bool(self.sb_bits(mb_id)[sb_id:sb_id + count].all())

    def test_unplugged(self, mb_id: int, sb_id: int, count: int) -> bool:
        return not self.sb_bits(mb_id)[sb_id:sb_id + count].any()

    def mb_addr(self, mb_id: int) -> int:
        return mb_id * self.mb_size

    def sb_pfn(self, mb_id: int, sb_id: int) -> int:
        return (self.mb_addr(mb_id) + sb_id * self.sb_size) >> self.vm.m.geometry.page_shift

    def online_state(self, partial: bool, movable: bool) -> str:
        """The state a block enters when onlined (profile spelling)."""
        if "KERNEL" in self.states:
            return ("MOVABLE" if movable else "KERNEL") + ("_PARTIAL" if partial else "")
        if partial:
            return "ONLINE_PARTIAL"
        return "ONLINE_MOVABLE" if movable else "ONLINE"

    @staticmethod
    def is_online(state: str) -> bool:
        return state.startswith(("KERNEL", "MOVABLE", "ONLINE"))

    def partial_of(self, state: str) -> str:
        return state if state.endswith("_PARTIAL") else {
            "KERNEL": "KERNEL_PARTIAL", "MOVABLE": "MOVABLE_PARTIAL",
            "ONLINE": "ONLINE_PARTIAL", "OFFLINE": "OFFLINE_PARTIAL"}.get(state, state)

    def nr_offline_blocks(self) -> int:
        return sum(s in ("OFFLINE", "OFFLINE_PARTIAL") for s in self.mb_state)

    def has_unplugged_blocks(self) -> bool:
        return self.vm.profile.retry_unplugged_removal and self.have_unplugged_mb

    def refresh_last_usable(self) -> None:
        """Kernel: virtio_mem_refresh_config(), the SBM part."""
        end = self.vm.addr + self.vm.usable_region_size - 1
        last = end // self.mb_size
        if (end + 1) % self.mb_size:
            last -= 1
        self.last_usable_mb_id = last

    # -- plug ------------------------------------------------------------------
    def plug_sb(self, mb_id: int, sb_id: int, count: int) -> Work:
        rc = yield from self.vm.send_plug_request(self.mb_addr(mb_id) + sb_id * self.sb_size,
                                                  count * self.sb_size)
        if rc == 0:
            self.sb_bits(mb_id)[sb_id:sb_id + count] = True
        return rc

    def unplug_sb(self, mb_id: int, sb_id: int, count: int) -> Work:
        rc = yield from self.vm.send_unplug_request(
            self.mb_addr(mb_id) + sb_id * self.sb_size, count * self.sb_size)
        if rc == 0:
            self.sb_bits(mb_id)[sb_id:sb_id + count] = False
        return rc

    def plug_request(self, diff: int) -> Work:
        """Kernel: virtio_mem_sbm_plug_request()"""
        nb_sb = [diff // self.sb_size]
        if not nb_sb[0]:
            return 0
        for state in self.vm.profile.sbm_plug_order:
            for mb_id in self.for_each_mb(state):
                rc = yield from self.plug_any_sb(mb_id, nb_sb)
                if rc or not nb_sb[0]:
                    return rc
        for mb_id in self.for_each_mb("UNUSED"):
            if not self.vm.could_add_memory(self.mb_size):
                return ENOSPC
            rc = yield from self.plug_and_add_mb(mb_id, nb_sb)
            if rc or not nb_sb[0]:
                return rc
        while nb_sb[0]:
            if not self.vm.could_add_memory(self.mb_size):
                return ENOSPC
            if self.next_mb_id > self.last_usable_mb_id:
                return ENOSPC
            mb_id = self.next_mb_id
            self.next_mb_id += 1
            self.set_state(mb_id, "UNUSED")
            rc = yield from self.plug_and_add_mb(mb_id, nb_sb)
            if rc:
                return rc
        return 0

    def plug_and_add_mb(self, mb_id: int, nb_sb: list[int]) -> Work:
        """Plug the first subblocks of a block, then add the whole block.

        Kernel: virtio_mem_sbm_plug_and_add_mb()
        """
        count = min(nb_sb[0], self.sbs_per_mb)
        rc = yield from self.plug_sb(mb_id, 0, count)
        if rc:
            return rc
        self.set_state(mb_id, "OFFLINE" if count == self.sbs_per_mb else "OFFLINE_PARTIAL")
        rc = yield from self.vm.add_memory(self.mb_addr(mb_id), self.mb_size)
        if rc:
            undo = yield from self.unplug_sb(mb_id, 0, count)
            self.set_state(mb_id, "PLUGGED" if undo else "UNUSED")
            return rc
        nb_sb[0] -= count
        return 0

    def plug_any_sb(self, mb_id: int, nb_sb: list[int]) -> Work:
        """Plug unplugged subblocks of an added block, lowest first.

        Kernel: virtio_mem_sbm_plug_any_sb()
        """
        old = self.get_state(mb_id)
        bits = self.sb_bits(mb_id)
        while nb_sb[0]:
            free = np.flatnonzero(~bits)
            if not len(free):
                break
            sb_id, count = int(free[0]), 1
            while count < nb_sb[0] and sb_id + count < self.sbs_per_mb \
                    and not bits[sb_id + count]:
                count += 1
            rc = yield from self.plug_sb(mb_id, sb_id, count)
            if rc:
                return rc
            nb_sb[0] -= count
            if old != "OFFLINE_PARTIAL":
                self.vm.fake_online(self.sb_pfn(mb_id, sb_id),
                                    count * self.sb_size >> self.vm.m.geometry.page_shift)
        if bits.all():
            self.set_state(mb_id, old.removesuffix("_PARTIAL"))
        return 0

    # -- unplug ----------------------------------------------------------------
    def unplug_request(self, diff: int) -> Work:
        """Kernel: virtio_mem_sbm_unplug_request()"""
        nb_sb = [diff // self.sb_size]
        if not nb_sb[0]:
            return 0
        for state in self.vm.profile.sbm_unplug_order:
            for mb_id in self.for_each_mb(state, reverse=True):
                rc = yield from self.unplug_any_sb(mb_id, nb_sb)
                if rc or not nb_sb[0]:
                    return rc
        return EBUSY if nb_sb[0] else 0

    def unplug_any_sb(self, mb_id: int, nb_sb: list[int]) -> Work:
        state = self.get_state(mb_id)
        if self.is_online(state):
            return (yield from self.unplug_any_sb_online(mb_id, nb_sb))
        if state in ("OFFLINE", "OFFLINE_PARTIAL"):
            return (yield from self.unplug_any_sb_offline(mb_id, nb_sb))
        return EINVAL

    def unplug_any_sb_offline(self, mb_id: int, nb_sb: list[int]) -> Work:
        """Offline memory: just ask the device; remove the block once empty.

        Kernel: virtio_mem_sbm_unplug_any_sb_offline()
        """
        rc = yield from self.unplug_any_sb_raw(mb_id, nb_sb)
        if not self.test_plugged(mb_id, 0, self.sbs_per_mb):
            self.set_state(mb_id, "OFFLINE_PARTIAL")
        if rc:
            return rc
        if self.test_unplugged(mb_id, 0, self.sbs_per_mb):
            self.set_state(mb_id, "UNUSED")
            if self.vm.remove_memory(self.mb_addr(mb_id), self.mb_size):
                raise AssertionError(f"BUG_ON: removing offline memory block {mb_id} failed")
        return 0

    def unplug_any_sb_raw(self, mb_id: int, nb_sb: list[int]) -> Work:
        """Unplug plugged subblocks from the top, joining neighbours per request."""
        bits = self.sb_bits(mb_id)
        sb_id = self.sbs_per_mb - 1
        while nb_sb[0]:
            while sb_id >= 0 and not bits[sb_id]:
                sb_id -= 1
            if sb_id < 0:
                break
            count = 1
            while count < nb_sb[0] and sb_id > 0 and bits[sb_id - 1]:
                count += 1
                sb_id -= 1
            rc = yield from self.unplug_sb(mb_id, sb_id, count)
            if rc:
                return rc
            nb_sb[0] -= count
            sb_id -= 1
        return 0

    def unplug_any_sb_online(self, mb_id: int, nb_sb: list[int]) -> Work:
        """Online memory: fake-offline, then unplug; the whole block first if wanted.

        Subblocks that cannot be freed (-EBUSY) are skipped; anything else
        aborts the pass.  Kernel: virtio_mem_sbm_unplug_any_sb_online()
        """
        if nb_sb[0] >= self.sbs_per_mb and self.test_plugged(mb_id, 0, self.sbs_per_mb):
            rc = yield from self.unplug_sb_online(mb_id, 0, self.sbs_per_mb)
            if rc == 0:
                nb_sb[0] -= self.sbs_per_mb
            elif rc != EBUSY:
                return rc
        if self.test_plugged(mb_id, 0, self.sbs_per_mb) or not self.test_unplugged(
                mb_id, 0, self.sbs_per_mb):
            bits = self.sb_bits(mb_id)
            sb_id = self.sbs_per_mb - 1
            while sb_id >= 0 and nb_sb[0]:
                while sb_id >= 0 and not bits[sb_id]:
                    sb_id -= 1
                if sb_id < 0:
                    break
                rc = yield from self.unplug_sb_online(mb_id, sb_id, 1)
                if rc == 0:
                    nb_sb[0] -= 1
                elif rc != EBUSY:
                    return rc
                sb_id -= 1
        return self._after_online_unplug(mb_id)

    def unplug_sb_online(self, mb_id: int, sb_id: int, count: int) -> Work:
        """Kernel: virtio_mem_sbm_unplug_sb_online()"""
        pfn = self.sb_pfn(mb_id, sb_id)
        nr_pages = count * self.sb_size >> self.vm.m.geometry.page_shift
        old = self.get_state(mb_id)
        rc = yield from self.vm.fake_offline(pfn, nr_pages)
        if rc:
            return rc
        rc = yield from self.unplug_sb(mb_id, sb_id, count)
        if rc:
            self.vm.fake_online(pfn, nr_pages)
            return rc
        if old in ("KERNEL", "MOVABLE", "ONLINE"):
            self.set_state(mb_id, self.partial_of(old))
        return 0

    def try_remove_unplugged_mb(self, mb_id: int) -> int:
        """Offline and remove a block whose subblocks are all unplugged.

        Kernel: virtio_mem_sbm_try_remove_unplugged_mb()
        """
        if not self.test_unplugged(mb_id, 0, self.sbs_per_mb):
            return 0
        rc = self.vm.offline_and_remove_memory(self.mb_addr(mb_id), self.mb_size)
        if rc == 0:
            self.set_state(mb_id, "UNUSED")
        return rc

    def _after_online_unplug(self, mb_id: int) -> int:
        """Errors are not critical: 6.5+ remembers the block and retries later."""
        if self.try_remove_unplugged_mb(mb_id) and self.vm.profile.retry_unplugged_removal:
            self.have_unplugged_mb = True
        return 0

    def cleanup_pending(self) -> Work:
        """Unplug PLUGGED leftovers; retry removing fully unplugged blocks (6.5+).

        Kernel: virtio_mem_cleanup_pending_mb()
        """
        for mb_id in self.for_each_mb("PLUGGED"):
            rc = yield from self.unplug_sb(mb_id, 0, self.sbs_per_mb)
            if rc:
                return rc
            self.set_state(mb_id, "UNUSED")
        if not self.has_unplugged_blocks():
            return 0
        self.have_unplugged_mb = False
        failed = False
        for state in ("MOVABLE_PARTIAL", "KERNEL_PARTIAL", "OFFLINE_PARTIAL"):
            for mb_id in list(self.for_each_mb(state)):
                failed |= bool(self.try_remove_unplugged_mb(mb_id))
        self.have_unplugged_mb = failed
        return 0

    # -- the memory core's hooks ---------------------------------------------------
    def online_page(self, pfn: int, order: int) -> None:
        """Online plugged subblocks, keep unplugged ones PageOffline.

        Kernel: virtio_mem_online_page()
        """
        from .page_offline import generic_online_page

        vm, shift = self.vm, self.vm.m.geometry.page_shift
        end = pfn + (1 << order)
        sb_pages = self.sb_size >> shift
        while pfn < end:
            step = 1 << order
            addr = pfn << shift
            mb_id = addr // self.mb_size
            sb_id = (addr % self.mb_size) // self.sb_size
            count = ((addr + (step << shift) - 1) % self.mb_size) // self.sb_size - sb_id + 1
            if self.test_plugged(mb_id, sb_id, count):
                generic_online_page(vm.node, pfn, order)
            elif count == 1 or self.test_unplugged(mb_id, sb_id, count):
                set_fake_offline(vm.node, pfn, step, False, vm.owner)
            else:
                order = sb_pages.bit_length() - 1   # a mixture: go subblock by subblock
                continue
            pfn += step

    def notify(self, action: str, start_pfn: int, nr_pages: int) -> int:
        """The SBM part of the memory notifier."""
        mb_id = (start_pfn << self.vm.m.geometry.page_shift) // self.mb_size
        state = self.get_state(mb_id)
        if action == "MEM_GOING_ONLINE":
            return self._going_online(mb_id, state, start_pfn)
        if action == "MEM_ONLINE":
            movable = self.vm.node.mm.zone_of(start_pfn) == ZoneType.MOVABLE
            self.set_state(mb_id, self.online_state(state == "OFFLINE_PARTIAL", movable))
            self.vm.offline_size -= nr_pages << self.vm.m.geometry.page_shift
            self._maybe_retry_after_online()
        elif action == "MEM_GOING_OFFLINE":
            # the driver's own PageOffline pages are exactly its unplugged subblocks
            drop_references(self.vm.node, start_pfn, nr_pages, self.vm.owner)
        elif action == "MEM_CANCEL_OFFLINE":
            take_references(self.vm.node, start_pfn, nr_pages, self.vm.owner)
        elif action == "MEM_OFFLINE":
            self.set_state(mb_id, "OFFLINE_PARTIAL" if state.endswith("_PARTIAL") else "OFFLINE")
            self.vm.offline_size += nr_pages << self.vm.m.geometry.page_shift
        return 0

    def _going_online(self, mb_id: int, state: str, start_pfn: int) -> int:
        if state not in ("OFFLINE", "OFFLINE_PARTIAL"):
            self.vm.dev_warn("memory block onlining denied")
            return EPERM
        movable = self.vm.node.mm.zone_of(start_pfn) == ZoneType.MOVABLE
        if state == "OFFLINE_PARTIAL" and movable and not self.vm.profile.movable_partial_allowed:
            self.vm.dev_warn("memory block has holes, MOVABLE not supported")
            return EPERM
        return 0

    def _maybe_retry_after_online(self) -> None:
        """Start adding more once half the offline threshold is free again."""
        vm = self.vm
        if vm.wq_active:
            return
        if vm.profile.offline_threshold_bytes is None:
            if self.nr_offline_blocks() == vm.profile.offline_threshold_blocks - 1:
                vm.retry()
        elif vm.could_add_memory(vm.offline_threshold // 2):
            vm.retry()

    # -- view ------------------------------------------------------------------
    def view(self) -> VirtioMemView:
        vm, dev = self.vm, self.vm.dev
        shift = vm.m.geometry.page_shift
        return VirtioMemView(vm.name, vm.addr >> shift, vm.region_size >> shift,
                             dev.block_size >> shift, dev.usable_region_size >> shift,
                             dev.requested_size, dev.size, dev.bitmap.copy(), self.name,
                             self.mb_size >> shift, self.sb_size >> shift,
                             self.first_mb_id * self.mb_size >> shift, tuple(self.mb_state),
                             self.sb_plugged.copy())
