"""The Linux virtio-mem driver: the guest side of a virtio-mem device.

The driver compares the device's ``requested_size`` with what it has
plugged and works towards it in ``run_wq``, its work item:

* to grow, it asks the device to PLUG blocks and adds whole Linux memory
  blocks (``add_memory_driver_managed``); onlining is left to the core
  (``auto_online_blocks``) and can place them in ZONE_NORMAL or
  ZONE_MOVABLE;
* to shrink, it takes memory back from the page allocator with
  ``alloc_contig_range`` (*fake offline*), asks the device to UNPLUG it,
  and once a memory block is empty it offlines and removes it.

Each pass ends with a return code that decides what happens next (the
table in ``RUN_WQ_ACTIONS``): done, wait for onlining (-ENOSPC), retry on a
timer that backs off from 50 s to 300 s (-EBUSY, -ENOMEM, -ETXTBSY), retry
at once (-EAGAIN), or give up for good (anything else: the device is
marked broken).

Memory is managed in Sub Block Mode (vmemlab.virtio_mem_sbm), or in Big
Block Mode when device blocks are larger than Linux memory blocks
(vmemlab.virtio_mem_bbm, 6.12 only).  The work item is a process on the
machine's clock: every request and every fake-offline takes simulated time
during which the rest of the guest runs.

Kernel: drivers/virtio/virtio_mem.c (virtio_mem_probe(), virtio_mem_run_wq(),
virtio_mem_send_*_request(), virtio_mem_fake_offline(),
virtio_mem_memory_notifier_cb(), virtio_mem_online_page_cb())
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

from .constants import (
    EAGAIN,
    EBUSY,
    EINVAL,
    ENOMEM,
    ENOSPC,
    ETXTBSY,
    GiB,
    PageKind,
    ZoneType,
    errname,
    format_size,
)
from .contig import ContigRange
from .page_offline import fake_online, set_fake_offline
from .virtio_mem import Request, Response, VirtioMemReq, VirtioMemResp, VirtioMemView

if TYPE_CHECKING:
    from .hypervisor import VirtioMemDevice
    from .machine import Machine

Work = Generator[float, None, int]

VIRTIO_MEM_RETRY_TIMER_MIN_MS = 50_000
VIRTIO_MEM_RETRY_TIMER_MAX_MS = 300_000
VIRTIO_MEM_DEFAULT_OFFLINE_THRESHOLD = 1 * GiB
REQUEST_S = 20e-6            # one request: virtqueue round trip and QEMU's handling
ADD_MEMORY_S_PER_PAGE = 20e-9  # memmap init and memory block creation

# What run_wq() does with a pass's result (the table in reference §2.4).
RUN_WQ_ACTIONS = {
    0: "done: reset the retry timer to 50 s",
    ENOSPC: "wait: nothing more can be added now (no room, or too much offline memory)",
    ETXTBSY: "retry later: the device is busy",
    EBUSY: "retry later: memory could not be freed",
    ENOMEM: "retry later: out of memory",
    EAGAIN: "retry now: the config changed",
}


class VirtioMemDriver:
    """The guest driver bound to one device (``dev.driver``)."""

    def __init__(self, machine: Machine, device: VirtioMemDevice) -> None:
        self.m = machine
        self.node = machine.node
        self.dev = device
        self.name = device.name
        self.profile = machine.profile
        self.broken = False
        self.removing = False
        self.config_changed_flag = False
        self.unplug_all_required = False
        self.wq_active = False
        self._queued = False
        self._requeue = False
        self.retry_timer_ms = VIRTIO_MEM_RETRY_TIMER_MIN_MS
        self._timer_gen = 0
        self.timer_due: float | None = None
        self.last_rc: int | None = None
        self.passes = 0
        self.offline_size = 0
        self.in_flight: tuple[Request, Response | None] | None = None
        self.owner = self.node.new_owner(PageKind.KERNEL, f"{self.name} (unplugged)").id
        self.contig_owner = self.node.new_owner(PageKind.KERNEL, f"{self.name} (fake offline)")
        self.contig_owner.contig = True
        self.mode = None
        self.group = None
        self.probe_rc = self.probe() if device.guest_driver else None

    # -- probe -----------------------------------------------------------------
    def probe(self) -> int:
        """Read the config, pick SBM or BBM, register with the memory core.

        Kernel: virtio_mem_probe(), virtio_mem_init(), virtio_mem_init_hotplug()
        """
        from .virtio_mem_bbm import BigBlockMode
        from .virtio_mem_sbm import SubBlockMode

        cfg = self.dev.config()
        geo = self.m.geometry
        self.device_block_size, self.addr = cfg.block_size, cfg.addr
        self.region_size = cfg.region_size
        self.plugged_size = cfg.plugged_size
        self.requested_size = 0
        self.usable_region_size = cfg.usable_region_size
        mb = geo.memory_block_size
        if self.addr % mb or (self.addr + self.region_size) % mb:
            self.dev_warn("The alignment of the physical start address can make some "
                          "memory unusable.")
        sb = SubBlockMode.subblock_size(self)
        if self.profile.big_block_mode and sb >= mb:
            self.mode = BigBlockMode(self)
        elif sb > mb or self.device_block_size > mb:
            self.dev_err("The block size is not supported (too big).")
            self.broken = True
            return EINVAL
        else:
            self.mode = SubBlockMode(self)
        if self.profile.offline_threshold_bytes is not None:
            self.offline_threshold = max(2 * mb, self.profile.offline_threshold_bytes,
                                         2 * self.mode.unit_size)
        if "auto-movable" in self.profile.online_policies:
            self.group = self.m.hotplug.register_group(
                True, self.mode.unit_size >> geo.page_shift, self.name)
        self.m.hotplug.register_memory_notifier(self.memory_notifier)
        self.m.install_online_page_callback()
        if self.plugged_size:
            self.dev_info("unplugging all memory is required")
            self.unplug_all_required = True
        self.dev.on_config_change = self.config_changed
        self.config_changed_flag = True
        self.queue_work()
        return 0

    # -- messages ----------------------------------------------------------------
    def dev_info(self, msg: str) -> None:
        self.node.printk(f"virtio_mem virtio{self.m.device_index(self.dev)}: {msg}")

    dev_warn = dev_info
    dev_err = dev_info

    # -- config and work -----------------------------------------------------------
    def config_changed(self) -> None:
        """The device changed its config.  Kernel: virtio_mem_config_changed()"""
        self.config_changed_flag = True
        self.queue_work()

    def refresh_config(self) -> None:
        """Re-read plugged, usable and requested size.  Kernel: virtio_mem_refresh_config()"""
        cfg = self.dev.config()
        if cfg.plugged_size != self.plugged_size:
            self.dev_warn(f"WARNING: plugged size mismatch: {self.plugged_size:#x} vs "
                          f"{cfg.plugged_size:#x}")
            self.plugged_size = cfg.plugged_size
        self.usable_region_size = cfg.usable_region_size
        self.mode.refresh_last_usable()
        self.requested_size = cfg.requested_size
        self.dev_info(f"plugged size: {self.plugged_size:#x}")
        self.dev_info(f"requested size: {self.requested_size:#x}")

    @property
    def work_pending(self) -> bool:
        """Whether run_wq is queued or running (work_pending(&vm->wq))."""
        return self._queued or self.wq_active

    def queue_work(self) -> None:
        """queue_work(system_freezable_wq, &vm->wq): run (again) soon."""
        if self.broken or self.removing:
            return
        if self.wq_active:
            self._requeue = True
            return
        if not self._queued:
            self._queued = True
            self.m.spawn(self.run_wq())

    def _arm_timer(self) -> None:
        """hrtimer_start(retry_timer, retry_timer_ms)."""
        self._timer_gen += 1
        gen = self._timer_gen
        self.timer_due = self.m.now + self.retry_timer_ms / 1000
        self.m.call_later(self.retry_timer_ms / 1000, lambda: self._timer_expired(gen))

    def _cancel_timer(self) -> None:
        self._timer_gen += 1
        self.timer_due = None

    def _timer_expired(self, gen: int) -> None:
        """The retry timer fired: double it (up to 300 s) and run the work.

        Kernel: virtio_mem_timer_expired()
        """
        if gen != self._timer_gen:
            return
        self.timer_due = None
        self.retry_timer_ms = min(self.retry_timer_ms * 2, VIRTIO_MEM_RETRY_TIMER_MAX_MS)
        self.queue_work()

    def run_wq(self) -> Work:
        """One execution of the work item.  Kernel: virtio_mem_run_wq()"""
        self._queued = False
        self._cancel_timer()
        if self.broken:
            return 0
        self.wq_active = True
        self.passes += 1
        while True:
            rc = 0
            if self.unplug_all_required:
                rc = yield from self.send_unplug_all_request()
            if self.config_changed_flag:
                self.config_changed_flag = False
                self.refresh_config()
            if not rc:
                rc = yield from self.mode.cleanup_pending()
            if not rc and self.requested_size > self.plugged_size:
                rc = yield from self.mode.plug_request(self.requested_size - self.plugged_size)
            elif not rc and self.requested_size < self.plugged_size:
                rc = yield from self.mode.unplug_request(self.plugged_size - self.requested_size)
            if not rc and self.mode.has_unplugged_blocks():
                rc = EBUSY
            if rc != EAGAIN:
                break
        self._finish_pass(rc)
        return rc

    def _finish_pass(self, rc: int) -> None:
        self.last_rc = rc
        if rc == 0:
            self.retry_timer_ms = VIRTIO_MEM_RETRY_TIMER_MIN_MS
        elif rc in (ETXTBSY, EBUSY, ENOMEM):
            self._arm_timer()
        elif rc != ENOSPC:
            self.dev_err(f"unknown error, marking device broken: {rc}")
            self.broken = True
        self.wq_active = False
        if self._requeue:
            self._requeue = False
            self.queue_work()

    def retry(self) -> None:
        """Kernel: virtio_mem_retry()"""
        self.queue_work()

    # -- requests --------------------------------------------------------------------
    def send_request(self, req: Request) -> Generator[float, None, Response | None]:
        """Send one request and wait for the device's answer (simulated time passes).

        The device acts on the request at once; the driver learns the answer
        only when the wait ends.  Meanwhile ``in_flight`` holds the request
        and its response, the one legal moment at which the driver's
        plugged size and subblock bits lag behind the device.
        """
        resp = self.dev.handle_request(req)
        self.in_flight = (req, resp)
        try:
            yield REQUEST_S + (self.dev.plug_time(req.nb_blocks)
                               if req.type == VirtioMemReq.PLUG else 0.0)
        finally:
            self.in_flight = None
        return resp

    def _nb_blocks(self, size: int) -> int:
        return size // self.device_block_size

    def send_plug_request(self, addr: int, size: int) -> Work:
        """ACK 0, NACK -EAGAIN, BUSY -ETXTBSY, ERROR -EINVAL.

        Kernel: virtio_mem_send_plug_request()
        """
        if self.config_changed_flag:
            return EAGAIN
        resp = yield from self.send_request(Request(VirtioMemReq.PLUG, addr,
                                                    self._nb_blocks(size)))
        rc = _resp_to_errno(resp, nack=EAGAIN)
        if rc == 0:
            self.plugged_size += size
        return rc

    def send_unplug_request(self, addr: int, size: int) -> Work:
        """ACK 0, BUSY -ETXTBSY, ERROR -EINVAL.  Kernel: virtio_mem_send_unplug_request()"""
        if self.config_changed_flag:
            return EAGAIN
        resp = yield from self.send_request(Request(VirtioMemReq.UNPLUG, addr,
                                                    self._nb_blocks(size)))
        rc = _resp_to_errno(resp)
        if rc == 0:
            self.plugged_size -= size
        return rc

    def send_unplug_all_request(self) -> Work:
        """Kernel: virtio_mem_send_unplug_all_request()"""
        self.dev_info("unplugging all memory")
        resp = yield from self.send_request(Request(VirtioMemReq.UNPLUG_ALL))
        if resp is not None and resp.type == VirtioMemResp.ACK:
            self.unplug_all_required = False
            self.plugged_size = 0
            self.config_changed_flag = True     # the usable region may have shrunk
            return 0
        return ETXTBSY if resp is not None and resp.type == VirtioMemResp.BUSY else ENOMEM

    # -- memory core glue ----------------------------------------------------------
    def could_add_memory(self, size: int) -> bool:
        """Kernel: virtio_mem_could_add_memory() (5.8: virtio_mem_too_many_mb_offline())"""
        if self.profile.offline_threshold_bytes is None:
            return self.mode.nr_offline_blocks() < self.profile.offline_threshold_blocks
        return self.offline_size + size <= self.offline_threshold

    def add_memory(self, addr: int, size: int) -> Work:
        """add_memory_driver_managed(); the core may online the memory at once."""
        self.offline_size += size
        rc = self.m.hotplug.add_memory(addr, size, self.group, "System RAM (virtio_mem)")
        yield (size >> self.m.geometry.page_shift) * ADD_MEMORY_S_PER_PAGE
        if rc:
            self.offline_size -= size
            self.dev_warn(f"adding memory failed: {rc}")
        return rc

    def remove_memory(self, addr: int, size: int) -> int:
        """Kernel: virtio_mem_remove_memory()"""
        rc = self.m.hotplug.remove_memory(addr, size)
        if rc == 0:
            self.offline_size -= size
        return rc

    def offline_and_remove_memory(self, addr: int, size: int) -> int:
        """Kernel: virtio_mem_offline_and_remove_memory(); -ENOMEM or -EBUSY on failure."""
        rc = self.m.hotplug.offline_and_remove_memory(addr, size)
        if rc == 0:
            self.offline_size -= size
            self.retry()
            return 0
        return ENOMEM if rc == ENOMEM else EBUSY

    # -- fake offline / online ------------------------------------------------------
    def fake_offline(self, pfn: int, nr_pages: int) -> Work:
        """Take pages from the buddy with alloc_contig_range(); 0, -EBUSY, -ENOMEM, -EAGAIN.

        ZONE_MOVABLE gets several attempts (it is supposed to guarantee
        movability), kernel zones one; -ENOMEM gives up at once.

        Kernel: virtio_mem_fake_offline()
        """
        zone = self.node.page_zone(pfn)
        movable = zone is not None and zone.idx == ZoneType.MOVABLE
        tries = self.profile.fake_offline_tries_movable if movable else 1
        for _ in range(tries):
            if self.profile.retry_unplugged_removal and self.config_changed_flag:
                return EAGAIN
            contig = ContigRange(self.node, pfn, pfn + nr_pages, "GFP_KERNEL",
                                 name=f"{self.name} fake offline")
            rc = contig.run()
            yield contig.cost_ns / 1e9
            if rc == ENOMEM:
                return rc
            if rc == 0:
                set_fake_offline(self.node, pfn, nr_pages, True, self.owner)
                return 0
        return EBUSY

    def fake_online(self, pfn: int, nr_pages: int) -> None:
        """Give fake-offlined pages back to the buddy.  Kernel: virtio_mem_fake_online()"""
        fake_online(self.node, pfn, nr_pages, self.contig_owner.id)

    def online_page(self, pfn: int, order: int) -> None:
        """The online-page callback for a chunk of this device's memory."""
        self.mode.online_page(pfn, order)

    def contains(self, pfn: int, nr_pages: int) -> bool:
        """Kernel: virtio_mem_contains_range()"""
        start = self.addr >> self.m.geometry.page_shift
        return start <= pfn and pfn + nr_pages <= start + (self.region_size
                                                           >> self.m.geometry.page_shift)

    def memory_notifier(self, action: str, start_pfn: int, nr_pages: int) -> int:
        """React to onlining and offlining of this device's memory.

        Kernel: virtio_mem_memory_notifier_cb()
        """
        if not self._overlaps(start_pfn, nr_pages):
            return 0
        if action in ("MEM_GOING_OFFLINE", "MEM_GOING_ONLINE") and self.removing:
            return EBUSY
        return self.mode.notify(action, start_pfn, nr_pages)

    def _overlaps(self, pfn: int, nr_pages: int) -> bool:
        start = self.addr >> self.m.geometry.page_shift
        end = start + (self.region_size >> self.m.geometry.page_shift)
        return pfn < end and pfn + nr_pages > start

    # -- views -----------------------------------------------------------------------
    def view(self) -> VirtioMemView:
        """The data pictures need (one per device in a frame)."""
        return self.mode.view()

    def status(self) -> str:
        """The driver's state in a few lines: mode, sizes, last result, timer."""
        if self.probe_rc is None:
            return f"{self.name}: no driver bound (the guest did not load virtio_mem)\n"
        if self.mode is None:
            return f"{self.name}: probe failed ({errname(self.probe_rc)}), driver not bound\n"
        timer = (f"retry timer fires at t={self.timer_due:.1f} s"
                 if self.timer_due is not None else "no retry timer armed")
        last = ("not run yet" if self.last_rc is None else
                f"{errname(self.last_rc)} ({RUN_WQ_ACTIONS.get(self.last_rc, 'device broken')})")
        return (f"{self.name}: {self.mode.name}, plugged {format_size(self.plugged_size)} of "
                f"requested {format_size(self.requested_size)}\n"
                f"  last pass: {last}\n  {timer}; next wait {self.retry_timer_ms // 1000} s\n"
                + ("  BROKEN\n" if self.broken else ""))


def _resp_to_errno(resp: Response | None, nack: int = ENOMEM) -> int:
    """ACK 0, NACK ``nack``, BUSY -ETXTBSY, ERROR -EINVAL, anything else -ENOMEM."""
    if resp is None:
        return ENOMEM
    return {VirtioMemResp.ACK: 0, VirtioMemResp.NACK: nack, VirtioMemResp.BUSY: ETXTBSY,
            VirtioMemResp.ERROR: EINVAL}.get(VirtioMemResp(resp.type), ENOMEM)
