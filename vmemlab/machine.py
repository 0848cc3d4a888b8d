"""The machine: a booted guest that composes everything else.

``Machine`` owns the node (memmap and zones), the seeded random generator,
the simulated clock and timers, the trace, the guest's activities, and the
text views.  It is the public entry point; the kernel-named functions in the
other modules are what it calls.

    >>> import vmemlab as vm
    >>> m = vm.Machine(boot_memory=4 * vm.GiB, seed=0)
    >>> m.zones["Normal"].managed > 0
    True
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import charmap
from .activity import (
    ACTIVITY_CLASSES,
    FILE_SYSTEMS,
    SPECS,
    Activity,
    FilesActivity,
    UnitActivity,
    round_pipe_size,
)
from .boot import BootLayout, boot_layout, free_area_init, memblock_free_all, q35_reserve
from .bootmem import BootMemory, boot_kernel
from .bulk import alloc_pages_bulk
from .compaction import (
    CompactControl,
    MigrateMode,
    compact_nodes,
    compact_zone,
    compaction_cost_s,
)
from .constants import Geometry, GiB, MiB, PageKind, ZoneType, format_size, geometry, parse_size
from .contig import ContigRange, alloc_contig_pages, free_contig_range
from .drop_caches import drop_caches
from .hypervisor import VIRTIO_MEM_MIN_BLOCK_SIZE, VirtioMemDevice
from .kernel_activity import KernelActivity
from .memblock import KERNEL_SECTIONS, boot_config
from .memory_hotplug import ONLINE_TYPES, MemoryHotplug
from .node import Node
from .oom import check_oom_score_adj
from .page_alloc import alloc_pages, free_pages
from .page_offline import generic_online_page
from .pcp import Pagesets
from .procfs import ProcFS
from .profiles import DEFAULT_KERNEL, KernelProfile, profile
from .sysfs import Sysfs
from .trace import NullTrace, Trace
from .validate import validate_hotplug, validate_node, validate_virtio_mem
from .virtio_balloon import HostThpReport, VirtioBalloon, host_thp_report
from .virtio_mem_driver import VirtioMemDriver
from .zone import init_per_zone_wmark_min

LARGE_BLOCK_BOOT_END = 64 * GiB     # MEM_SIZE_FOR_LARGE_BLOCK
FIRST_PID = 1000                    # pids of the lab's processes start here
MAX_BLOCK_SIZE = 2 * GiB


@dataclass(frozen=True)
class ZoneSummary:
    """A read-only view of one zone (what /proc/zoneinfo says about it)."""

    name: str
    start_pfn: int
    end_pfn: int
    spanned: int
    present: int
    managed: int
    free: int
    min: int
    low: int
    high: int

    def __str__(self) -> str:
        return (f"{self.name:>8}: pfn [{self.start_pfn:#x}, {self.end_pfn:#x}) "
                f"managed {self.managed} free {self.free} (min {self.min} low {self.low} "
                f"high {self.high})")


@dataclass(frozen=True)
class MemoryBlockView:
    """One memory block, read-only: what /sys/devices/system/memory/memoryN says."""

    id: int
    start_pfn: int
    end_pfn: int
    state: str
    valid_zones: str
    resource: str
    group: str

    def __str__(self) -> str:
        return (f"memory{self.id}: [{self.start_pfn:#x}, {self.end_pfn:#x}) {self.state} "
                f"{self.valid_zones}")


@dataclass(frozen=True)
class Dimm:
    """A plugged pc-dimm: where QEMU put it and what add_memory() returned."""

    name: str
    addr: int
    size: int
    rc: int


@dataclass(frozen=True)
class Snapshot:
    """The state a trace frame keeps: page and pageblock arrays plus text views."""

    time: float
    geo: Geometry
    state: np.ndarray
    kind: np.ndarray
    flags: np.ndarray
    pb_mt: np.ndarray
    pb_zone: np.ndarray
    buddyinfo: str
    meminfo: str
    extra: dict[str, Any]


def probe_memory_block_size(geo: Geometry, boot_end: int) -> int:
    """128 MiB blocks, or up to 2 GiB when boot memory ends at or above 64 GiB.

    In a VM the kernel picks the largest power of two, at most 2 GiB, that
    divides the end of boot memory.  Kernel: arch/x86/mm/init_64.c,
    probe_memory_block_size()
    """
    if geo.layout != "q35" or boot_end < LARGE_BLOCK_BOOT_END:
        return geo.memory_block_size
    bz = MAX_BLOCK_SIZE
    while bz > geo.section_size and boot_end % bz:
        bz >>= 1
    return bz


class Machine:
    """A booted guest.

    ``boot_memory`` is the RAM QEMU gives the guest (``-m``); ``kernel``
    picks the profile, an upstream release ("5.8", "6.1", "6.12", "6.15");
    ``geometry`` is "x86_64" (a q35 guest) or "teaching" (a tiny flat
    machine for hand exercises).
    ``online_policy`` and ``auto_online_blocks`` are the memory-hotplug
    settings of the same names.  ``cpus``, ``maxmem`` and ``slots`` are
    QEMU's ``-smp`` and ``-m size,maxmem=,slots=``: the default (2 CPUs,
    maxmem sized for whatever devices are added) is the reference VM of a
    virtio-mem guest; ``maxmem=boot_memory`` is a guest without memory
    hotplug, which has no swiotlb below 4 GiB of RAM (vmemlab.memblock).
    ``seed`` seeds the one random generator (and, with the boot count, the
    boot's KASLR slot and timing); ``trace=True`` records events and frames.
    ``kernel_activity`` turns the kernel's own allocations after boot on or
    off (hotplug metadata and a steady slab churn, see
    vmemlab.kernel_activity); by default it is on for the x86-64 geometry
    and off for the teaching one.
    """

    def __init__(self, boot_memory: int | str = 2 * GiB, kernel: str = DEFAULT_KERNEL,
                 online_policy: str = "contig-zones", auto_online_blocks: str = "online",
                 seed: int = 0, geometry: str | Geometry = "x86_64",
                 trace: bool | Trace = False, min_free_kbytes: int | None = None,
                 mobility_grouping: bool = True, auto_movable_ratio: int = 301,
                 cpus: int = 2, maxmem: int | str | None = None,
                 slots: int | None = None, kernel_activity: bool | None = None) -> None:
        geo = _geometry(geometry)
        prof = profile(kernel)
        boot_memory = parse_size(boot_memory)
        _check_choice("online_policy", online_policy, prof.online_policies)
        _check_choice("auto_online_blocks", auto_online_blocks, ONLINE_TYPES)
        if not isinstance(auto_movable_ratio, int) or auto_movable_ratio < 0:
            raise ValueError(f"auto_movable_ratio={auto_movable_ratio!r} must be a "
                             "non-negative integer (percent)")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise ValueError(f"seed={seed!r} must be an integer")
        if kernel_activity not in (None, True, False):
            raise ValueError(f"kernel_activity={kernel_activity!r} must be True, False or None "
                             "(None: on for the x86-64 geometry)")
        layout = boot_layout(geo, boot_memory)
        self.boot_config = boot_config(boot_memory, cpus, maxmem, slots)
        geo = dataclasses.replace(geo, memory_block_size=probe_memory_block_size(
            geo, layout.end_pfn << geo.page_shift))
        self.geometry = geo
        self.profile: KernelProfile = prof
        self.boot_memory = boot_memory
        self.layout: BootLayout = layout
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        # The kernel command line / config: every boot starts from these.
        self.boot_settings = {"online_policy": online_policy,
                              "auto_online_blocks": auto_online_blocks,
                              "auto_movable_ratio": auto_movable_ratio,
                              "kernel_activity": (geo.layout == "q35" if kernel_activity is None
                                                  else kernel_activity)}
        self.min_free_kbytes = min_free_kbytes
        self.mobility_grouping = mobility_grouping
        self.now = 0.0
        self._timers: list[tuple[float, int, Callable[[], None], bool, int]] = []
        self._seq = itertools.count()
        self._pending_work = 0
        self._until = 0.0     # where the running run()/settle() stops
        self.epoch = 0        # guest boots; events of an earlier boot are dropped
        self.boots = 0
        self.trace: Trace | NullTrace = self._make_trace(trace)
        self.device_memory_base = self._device_memory_base()
        self.device_regions: list[tuple[int, int, str]] = []   # (addr, size, name)
        self.dimms: list[Dimm] = []
        self.virtio_mem: list[VirtioMemDevice] = []
        self.balloon: VirtioBalloon | None = None
        self.host_messages: list[str] = []  # QEMU's stderr (error_report), not the guest's
        self._boot()

    def _boot(self) -> None:
        """Boot the guest: a fresh memmap, zones and memory blocks; devices re-probed.

        Host-side state (devices and their plugged blocks, DIMMs, the clock,
        the random generator, the trace) survives a reboot; guest state does not.
        """
        geo, prof = self.geometry, self.profile
        self.boots += 1
        # sysfs writes (auto_online_blocks, module parameters) do not survive a reboot
        self.online_policy: str = self.boot_settings["online_policy"]
        self.auto_online_blocks: str = self.boot_settings["auto_online_blocks"]
        self.auto_movable_ratio: int = self.boot_settings["auto_movable_ratio"]
        self.activities: list[Activity] = []
        self.slab_caches: dict = {}
        self._pids = itertools.count(FIRST_PID)
        self.shell_pid = self.new_pid()     # the root shell that echoes into /proc
        self.drop_caches_quiet = False      # drop_caches' "stfu" (bit 4 written once)
        boot_rng = np.random.default_rng([self.seed, self.boots])   # KASLR, boot timing
        if geo.layout == "q35":
            q35_reserve(geo, self.layout, self.boot_config, self.max_possible_pfn, boot_rng)
        self.node = Node(geo, prof, self.layout.end_pfn, self.trace, self.min_free_kbytes,
                         self.mobility_grouping)
        self.node.clock = lambda: self.now
        self.node.pagesets = Pagesets(self.node, self.boot_config.cpus)
        self.node.activities = self.activities      # the OOM killer's task list
        if self.device_regions:
            self.ensure_pfns(max(a + s for a, s, _ in self.device_regions) >> geo.page_shift)
        free_area_init(self.node, self.layout)
        memblock_free_all(self.node, self.layout)
        self.hotplug = MemoryHotplug(self)      # memory_dev_init(), during the boot
        self.kernel_activity: KernelActivity | None = None
        if self.boot_settings["kernel_activity"]:
            self.kernel_activity = KernelActivity(self)
        kernel_objects = self.kernel_activity.boot if self.kernel_activity else None
        self.bootmem: BootMemory | None = None
        if geo.layout == "q35":
            self.bootmem = boot_kernel(self, self.boot_config, boot_rng, kernel_objects)
        else:
            init_per_zone_wmark_min(self.node)
            if kernel_objects:
                kernel_objects()
        self.proc = ProcFS(self)
        self.sysfs = Sysfs(self)
        for dimm in self.dimms:       # ACPI finds the DIMMs again at boot
            self._add_dimm_memory(dimm)
        for dev in self.virtio_mem:
            dev.driver = VirtioMemDriver(self, dev)
        if self.balloon is not None:       # the host keeps its target; the guest re-inflates
            self.balloon = VirtioBalloon(self, self.balloon.compaction, self.balloon.num_pages)

    def reboot(self) -> None:
        """A system reset: QEMU unplugs every virtio-mem device, the guest boots again.

        After the reboot the guest plugs up to ``requested_size`` again, into
        a fresh, unfragmented layout.  A device that is busy at reset keeps
        its blocks, and the new driver sends UNPLUG_ALL at probe.
        QEMU: qemu_devices_reset(); virtio_mem_system_reset_hold()
        """
        for dev in self.virtio_mem:
            dev.system_reset()
        self.epoch += 1
        self._boot()

    def _make_trace(self, trace: bool | Trace) -> Trace | NullTrace:
        if isinstance(trace, Trace):
            tr = trace
        elif trace:
            tr = Trace()
        else:
            return NullTrace()
        tr.snapshot = tr.snapshot or self.snapshot
        tr.clock = tr.clock or (lambda: self.now)
        return tr

    # -- device memory (QEMU's hotplug region) --------------------------------
    def _device_memory_base(self) -> int:
        """Where QEMU puts DIMMs and virtio-mem: the first 1 GiB boundary after RAM.

        On q35 that is after the RAM above 4 GiB, at 4 GiB at least (QEMU
        pc_get_device_memory_range()); on the teaching geometry, the next
        memory block after boot memory.
        """
        geo = self.geometry
        if geo.layout == "q35":
            end = 4 * GiB + self.layout.above_4g
            return -(-end // GiB) * GiB
        end = self.layout.end_pfn << geo.page_shift
        return -(-end // geo.memory_block_size) * geo.memory_block_size

    @property
    def device_memory_size(self) -> int | None:
        """Bytes of QEMU's device-memory region: maxmem - RAM, plus 1 GiB per slot.

        None when ``maxmem`` was left to be sized for the devices.
        QEMU: hw/i386/pc.c pc_memory_init() (enforce_aligned_dimm)
        """
        cfg = self.boot_config
        if cfg.maxmem is None:
            return None
        return cfg.maxmem - self.boot_memory + GiB * (cfg.slots or 0)

    @property
    def max_possible_pfn(self) -> int:
        """The highest pfn memory may ever have: RAM, or the hotpluggable range QEMU's
        SRAT announces (the device-memory region).  Kernel: max_possible_pfn,
        drivers/acpi/numa/srat.c acpi_numa_memory_affinity_init()
        """
        end = self.layout.end_pfn
        size = self.device_memory_size
        if size is None or size > 0:
            region = size if size else max(self.geometry.memory_block_size,
                                           sum(s for _, s, _ in self.device_regions))
            end = max(end, (self.device_memory_base + region) >> self.geometry.page_shift)
        return end

    def _check_device_memory(self, size: int) -> None:
        """QEMU's memory_device_check_addable(): maxmem bounds what devices may add."""
        total = self.device_memory_size
        if total is None:
            return
        if total == 0:
            raise ValueError("the configuration is not prepared for memory devices (e.g., "
                             "for memory hotplug), consider specifying the maxmem option "
                             f"(maxmem={self.boot_config.maxmem} equals boot_memory)")
        used = sum(s for _, s, _ in self.device_regions)
        if used + size > self.boot_config.maxmem - self.boot_memory:
            raise ValueError(f"not enough space, currently {used:#x} in use of total space "
                             f"for memory devices {self.boot_config.maxmem - self.boot_memory:#x}"
                             f" (size={size:#x}, maxmem={self.boot_config.maxmem:#x})")

    def allocate_device_region(self, size: int, align: int, name: str) -> int:
        """Place a memory device in the device-memory region, first fit, aligned.

        With ``maxmem`` given, QEMU refuses a device that does not fit.
        QEMU: hw/mem/memory-device.c, memory_device_pre_plug(),
        memory_device_get_free_addr()
        """
        self._check_device_memory(size)
        addr = self.device_memory_base
        for start, length, _ in sorted(self.device_regions):
            if addr + size <= start:
                break
            addr = max(addr, -(-(start + length) // align) * align)
        addr = -(-addr // align) * align
        self.device_regions.append((addr, size, name))
        self.ensure_pfns((addr + size) >> self.geometry.page_shift)
        return addr

    def ensure_pfns(self, nr_pfns: int) -> None:
        """Grow the memmap arrays to cover ``nr_pfns`` page frames."""
        self.node.mm.grow(nr_pfns)

    def advance(self, seconds: float) -> None:
        """Let synchronous kernel work take simulated time (timers fire later)."""
        self.now += seconds

    def add_dimm(self, size: int | str, online: bool = True) -> Dimm:
        """Plug a pc-dimm (``device_add pc-dimm``); ACPI adds it as one static group.

        Its blocks are onlined per ``auto_online_blocks`` unless ``online`` is
        False.  Kernel: drivers/acpi/acpi_memhotplug.c; QEMU hw/mem/pc-dimm.c
        """
        size = parse_size(size)
        bsize = self.geometry.memory_block_size
        if size <= 0 or size % bsize:
            raise ValueError(f"size={size} must be a positive multiple of the memory block "
                             f"size ({format_size(bsize)})")
        slots = self.boot_config.slots
        if slots is not None and len(self.dimms) >= slots:
            raise ValueError("no slots where allocated, please specify the 'slots' option"
                             if not slots else f"no free slots available (slots={slots})")
        name = f"dimm{len(self.dimms)}"
        addr = self.allocate_device_region(size, bsize, name)
        dimm = Dimm(name, addr, size, 0)
        dimm = dataclasses.replace(dimm, rc=self._add_dimm_memory(dimm, online))
        self.dimms.append(dimm)
        return dimm

    def _add_dimm_memory(self, dimm: Dimm, online: bool = True) -> int:
        group = self.hotplug.register_group(False, dimm.size >> self.geometry.page_shift,
                                            dimm.name)
        return self.hotplug.add_memory(dimm.addr, dimm.size, group, "System RAM", online)

    def add_virtio_mem(self, region_size: int | str = 8 * GiB,
                       block_size: int | str | None = None,
                       requested_size: int | str = 0, node: int = 0,
                       prealloc: bool = False,
                       host_memory: int | str | None = None,
                       guest_driver: bool = True) -> VirtioMemDevice:
        """Plug a virtio-mem-pci device and bind the guest driver to it.

        With ``guest_driver=False`` the guest never loads virtio_mem (on this
        boot and after reboots): nothing answers config changes, and requests
        can be sent to the device by hand (``dev.handle_request(Request(...))``).

        ``region_size`` is the memory backend's size (``max-size``);
        ``block_size`` defaults to the host's THP size (2 MiB on x86-64; one
        pageblock on the teaching geometry).  QEMU places the region in the
        device-memory area after boot RAM.  With ``prealloc`` the host
        populates plugged blocks and answers BUSY once ``host_memory`` is used.
        QEMU: hw/virtio/virtio-mem.c virtio_mem_device_realize()
        """
        geo = self.geometry
        region = parse_size(region_size)
        thp = geo.page_size << geo.pageblock_order
        block = thp if block_size is None else parse_size(block_size)
        minimum = VIRTIO_MEM_MIN_BLOCK_SIZE if geo.layout == "q35" else geo.page_size
        if block < minimum or block & (block - 1):
            raise ValueError(f"block_size={block} must be a power of two of at least "
                             f"{format_size(minimum)}")
        if region <= 0 or region % block:
            raise ValueError(f"region_size={region} must be a positive multiple of "
                             f"block_size ({format_size(block)})")
        name = f"vmem{len(self.virtio_mem)}"
        addr = self.allocate_device_region(region, block, name)
        host = None if host_memory is None else parse_size(host_memory)
        dev = VirtioMemDevice(self, name, region, addr, block, node, prealloc, host)
        dev.guest_driver = guest_driver  # before the driver probes
        dev.memdev = f"/objects/mem{len(self.virtio_mem)}"
        dev.requested_size = requested_size      # before realize: just set
        dev.resize_usable_region(dev.requested_size, can_shrink=True)
        self.virtio_mem.append(dev)
        dev.driver = VirtioMemDriver(self, dev)
        return dev

    def add_virtio_balloon(self, compaction: bool = True) -> VirtioBalloon:
        """Plug a virtio-balloon device (at most one); see vmemlab.virtio_balloon."""
        if self.balloon is not None:
            raise ValueError("this machine already has a virtio-balloon device")
        self.balloon = VirtioBalloon(self, compaction)
        return self.balloon

    def host_thp_report(self) -> HostThpReport:
        """How many host 2 MiB pages backing guest RAM are whole, split or returned."""
        return host_thp_report(self)

    def device_index(self, dev: VirtioMemDevice) -> int:
        """The virtio device number the guest gives the device (virtioN)."""
        return self.virtio_mem.index(dev)

    def install_online_page_callback(self) -> None:
        """set_online_page_callback(virtio_mem_online_page_cb): the first device installs it.

        The callback onlines memory of other owners (DIMMs) normally.
        """
        if self.hotplug.online_page_callback is not None:
            return

        def online_page_cb(pfn: int, order: int) -> None:
            for dev in self.virtio_mem:
                drv = getattr(dev, "driver", None)
                if drv is not None and drv.mode is not None and drv.contains(pfn, 1 << order):
                    drv.online_page(pfn, order)
                    return
            generic_online_page(self.node, pfn, order)

        self.hotplug.set_online_page_callback(online_page_cb)

    def info_memory_devices(self) -> str:
        """HMP ``info memory-devices``: every DIMM and virtio-mem device."""
        out = []
        for i, d in enumerate(self.dimms):
            out.append(f'Memory device [dimm]: "{d.name}"\n  addr: {d.addr:#x}\n  slot: {i}\n'
                       f"  node: 0\n  size: {d.size}\n  memdev: /objects/{d.name}-mem\n"
                       "  hotplugged: true\n  hotpluggable: true\n")
        out += [dev.info() for dev in self.virtio_mem]
        return "".join(out)

    @property
    def memory_blocks(self) -> list[MemoryBlockView]:
        """Every memory block as sysfs shows it."""
        hp = self.hotplug
        return [MemoryBlockView(b.id, b.start_pfn, b.end_pfn, b.state,
                                hp.valid_zones(b), b.resource,
                                b.group.name if b.group else "")
                for _, b in sorted(hp.blocks.items())]

    def online_memory_block(self, block_id: int, online_type: str = "online") -> int:
        """``echo <online_type> > /sys/devices/system/memory/memory<id>/state``."""
        return self.sysfs.write(f"/sys/devices/system/memory/memory{block_id}/state",
                                online_type)

    def offline_memory_block(self, block_id: int, timeout: float | None = None) -> int:
        """``timeout <s> echo offline > .../memory<id>/state``; 0 or -errno."""
        block = self.hotplug.blocks.get(block_id)
        if block is None:
            raise ValueError(f"block_id={block_id} does not exist")
        return self.hotplug.offline_block(block, timeout)

    # -- views ---------------------------------------------------------------
    @property
    def zones(self) -> dict[str, ZoneSummary]:
        """Each zone's span, sizes and watermarks, by name, in zone order."""
        return {z.name: ZoneSummary(z.name, z.zone_start_pfn, z.zone_end_pfn, z.spanned_pages,
                                    z.present_pages, z.managed_pages, z.nr_free_pages,
                                    z.min_wmark_pages(), z.low_wmark_pages(),
                                    z.high_wmark_pages())
                for z in self.node.zones}

    def zone(self, name: str | ZoneType) -> Any:
        """The live Zone object by name ("Normal") or ZoneType."""
        if isinstance(name, str):
            for z in self.node.zones:
                if z.name.lower() == name.lower():
                    return z
            raise ValueError(f"zone={name!r} is not one of "
                             f"{[z.name for z in self.node.zones]}")
        return self.node.zone(name)

    def page_map(self, start: int = 0, end: int | None = None, width: int = 64) -> str:
        """One character per page (see vmemlab.charmap for the legend)."""
        return charmap.page_map(self.node, start, end, width)

    def pageblock_map(self) -> str:
        """One character per pageblock, one line per memory block."""
        return charmap.pageblock_map(self.node)

    def qemu_log(self) -> str:
        """What QEMU printed on its stderr (error_report()), one line per message."""
        return "".join(f"qemu-system-x86_64: {line}\n" for line in self.host_messages)

    def dmesg(self) -> str:
        """The kernel log: the boot lines (e820 map, memory sizes), then runtime messages."""
        boot = self.layout.dmesg().splitlines()
        boot += [f"reserved [{r.start_pfn:#x}-{r.end_pfn - 1:#x}] {r.name}"
                 for r in self.layout.reserved]
        boot.append(f"x86/mm: Memory block size: {self.geometry.memory_block_size >> 20}MB"
                    if self.geometry.layout == "q35" else
                    f"memory block size: {format_size(self.geometry.memory_block_size)}")
        boot.append(self._memory_line())
        entries = [(0.0, line) for line in boot] + self.node.log
        return "".join(f"[{t:12.6f}] {msg}\n" for t, msg in entries)

    def _memory_line(self) -> str:
        """The "Memory: .../... available" line of mem_init_print_info().

        Available is what memblock_free_all() and deferred init hand out;
        the kernel image's parts are listed as the kernel lists them.
        """
        shift = self.geometry.page_shift
        phys = sum(e - s for s, e in self.layout.memory) << shift
        reserved = sum(min(r.end_pfn, e) - max(r.start_pfn, s) for r in self.layout.reserved
                       for s, e in self.layout.memory if max(r.start_pfn, s) < min(r.end_pfn, e))
        total = phys - (reserved << shift)
        parts = ""
        if self.geometry.layout == "q35":
            sizes = {s.name: s.size >> 10 for s in KERNEL_SECTIONS}
            parts = (f"{sizes['text']}K kernel code, {sizes['data']}K rwdata, "
                     f"{sizes['rodata']}K rodata, {sizes['init']}K init, "
                     f"{sizes['bss'] + sizes['brk']}K bss, ")
        return (f"Memory: {total >> 10}K/{phys >> 10}K available "
                f"({parts}{reserved << shift >> 10}K reserved, 0K cma-reserved)")

    def __repr__(self) -> str:
        rows = dict(self.proc.meminfo_rows())
        return (f"<Machine {format_size(self.boot_memory)} {self.geometry.name} "
                f"Linux {self.profile.name} seed={self.seed}: MemTotal {rows['MemTotal']} kB, "
                f"MemFree {rows['MemFree']} kB>")

    # -- the page allocator --------------------------------------------------
    def alloc_pages(self, order: int, gfp: str | int = "GFP_KERNEL",
                    kind: PageKind | str | None = None) -> int | None:
        """Allocate 2**order pages; the first pfn, or None if the allocator fails."""
        return alloc_pages(self.node, order, gfp, _page_kind(kind))

    def free_pages(self, pfn: int, order: int) -> None:
        """Free what ``alloc_pages`` returned; ValueError on a bad pfn or order."""
        free_pages(self.node, pfn, order)

    def alloc_pages_bulk(self, nr_pages: int, gfp: str | int = "GFP_HIGHUSER_MOVABLE",
                         kind: PageKind | str | None = None) -> np.ndarray:
        """Allocate order-0 pages in bulk for a new owner; return their pfns."""
        req_kind = _page_kind(kind)
        owner = self.node.new_owner(req_kind or PageKind.KERNEL, "alloc_pages_bulk")
        return alloc_pages_bulk(self.node, gfp, nr_pages, req_kind, owner.id)

    # -- contiguous ranges ---------------------------------------------------
    def alloc_contig_range(self, start_pfn: int, end_pfn: int, gfp: str | int = "GFP_KERNEL",
                           fatal_signal: bool = False) -> int:
        """Take [start_pfn, end_pfn) out of the allocator; 0 or -errno like the kernel.

        ``fatal_signal`` simulates a fatal signal pending in the calling task
        (someone pressed Ctrl-C): the migration step then returns -EINTR.
        """
        return self.contig_range(start_pfn, end_pfn, gfp, fatal_signal).run()

    def contig_range(self, start_pfn: int, end_pfn: int, gfp: str | int = "GFP_KERNEL",
                     fatal_signal: bool = False) -> ContigRange:
        """An alloc_contig_range() to run phase by phase with ``.step()``.

        Each phase advances the simulated clock by its cost (see vmemlab.contig).
        """
        return ContigRange(self.node, start_pfn, end_pfn, gfp, signal_pending=fatal_signal,
                           clock=self.advance)

    def free_contig_range(self, pfn: int, nr_pages: int) -> int:
        """Give back pages from alloc_contig_range(); returns the count still in use."""
        return free_contig_range(self.node, pfn, nr_pages)

    def compact_memory(self) -> list[CompactControl]:
        """``echo 1 > /proc/sys/vm/compact_memory``: compact every zone, synchronously.

        Returns one CompactControl per zone (``compaction_summary`` prints
        them); the simulated clock advances by their cost.
        """
        runs = compact_nodes(self.node)
        self.advance(compaction_cost_s(runs, self.geometry.page_shift))
        return runs

    def compact_zone(self, zone: str | ZoneType, order: int = -1) -> CompactControl:
        """Compact one zone synchronously from both ends; with ``order`` >= 0, stop as soon
        as a free block of that order exists (what kcompactd does for an order)."""
        if not isinstance(order, int) or isinstance(order, bool) \
                or not -1 <= order <= self.geometry.max_page_order:
            raise ValueError(f"order={order!r} must be -1 (the whole zone) or 0.."
                             f"{self.geometry.max_page_order}")
        z = self.zone(zone)
        if not z.managed():
            raise ValueError(f"zone {z.name} has no memory to compact")
        cc = CompactControl(z, order, MigrateMode.MIGRATE_SYNC, highest_zoneidx=z.idx)
        compact_zone(cc)
        self.advance(compaction_cost_s([cc], self.geometry.page_shift))
        return cc

    def alloc_contig_pages(self, nr_pages: int, gfp: str | int = "GFP_KERNEL") -> int | None:
        """Find and take ``nr_pages`` contiguous pages; the first pfn or None."""
        return alloc_contig_pages(self.node, nr_pages, gfp)

    # -- activities ----------------------------------------------------------
    def activity(self, kind: str, size: int | str | None = None, count: int | None = None,
                 name: str | None = None, pipe_size: int | str | None = None,
                 oom_score_adj: int = 0, fs: str = "tmpfs") -> Activity:
        """Start a named guest activity holding memory; see vmemlab.activity.

        ``size`` (bytes, or "256M") for page-based kinds; ``count`` for files
        (number of files, on ``fs`` "tmpfs" or "ext4") and pipes (number of
        full pipes of ``pipe_size`` bytes, 64 KiB by default).  Processes
        (anon, pin, pipes) take an ``oom_score_adj`` for the OOM killer.
        """
        self._check_activity(kind, pipe_size, oom_score_adj)
        if kind == "files":
            if count is None or size is not None:
                raise ValueError("files take count= (the number of files), not size=")
            _check_count(count)
            if fs not in FILE_SYSTEMS:
                raise ValueError(f"fs={fs!r} is not one of {list(FILE_SYSTEMS)}")
        else:
            nr_pages = self._activity_pages(kind, size, count, pipe_size)
        act = self._new_activity(kind, name, pipe_size, oom_score_adj, fs)
        self.activities.append(act)
        if isinstance(act, FilesActivity):
            act.create(count)
        else:
            act.allocate(nr_pages)
        return act

    def start_activity(self, kind: str, rate: int | str, interval: float = 1.0,
                       limit: int | str | None = None, release_fraction: float = 0.0,
                       name: str | None = None, pipe_size: int | str | None = None,
                       oom_score_adj: int = 0, repeat: bool = False) -> Activity:
        """An activity that keeps running on the simulated clock.

        Every ``interval`` seconds it allocates ``rate`` bytes per second
        (a growing page cache, a leaking daemon) and, with
        ``release_fraction``, frees that share of what it holds (churn).
        It stops at ``limit`` bytes requested, when ``act.stop()`` is called,
        or when the OOM killer kills it.  With ``repeat`` it instead frees
        everything once it holds ``limit`` bytes and starts over, as
        ``stress --vm`` does (malloc, touch, free, again).
        """
        if repeat and limit is None:
            raise ValueError("repeat=True needs a limit= (the bytes touched per round)")
        if kind not in SPECS or kind in ("files", "pin"):
            raise ValueError(f"kind={kind!r} cannot run in the background; use one of "
                             f"{sorted(set(SPECS) - {'files', 'pin'})}")
        if not isinstance(interval, (int, float)) or interval <= 0:
            raise ValueError(f"interval={interval!r} must be a positive number of seconds")
        self._check_activity(kind, pipe_size, oom_score_adj)
        per_tick = self._activity_pages(kind, int(parse_size(rate) * interval), None, pipe_size)
        cap = None if limit is None else parse_size(limit)
        act = self._new_activity(kind, name, pipe_size, oom_score_adj)
        self.activities.append(act)

        def tick() -> None:
            if act.stopped or (cap is not None and not repeat and act.requested >= cap):
                return
            if repeat and cap is not None and act.resident >= cap:
                act.release(1.0)
            if release_fraction:
                act.release(release_fraction)
            act.allocate(per_tick)
            self.call_later(interval, tick)

        self.call_later(0.0, tick)
        return act

    def drop_caches(self, value: int = 3) -> None:
        """``echo VALUE > /proc/sys/vm/drop_caches``: 1 page cache, 2 dentries/inodes, 3 both.

        See vmemlab.drop_caches; ValueError unless VALUE is 1 to 4.
        """
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4:
            raise ValueError(f"value={value!r} must be an int from 1 to 4 (1 page cache, "
                             "2 dentries and inodes, 3 both, 4 quiet)")
        drop_caches(self, value)

    def new_pid(self) -> int:
        """The next process id of this boot (alloc_pid())."""
        return next(self._pids)

    @staticmethod
    def _check_activity(kind: str, pipe_size: int | str | None, oom_score_adj: int) -> None:
        if kind not in SPECS:
            raise ValueError(f"kind={kind!r} is not one of {sorted(SPECS)}")
        check_oom_score_adj(oom_score_adj)
        if oom_score_adj and not SPECS[kind].process:
            raise ValueError(f"oom_score_adj={oom_score_adj} needs a process: {kind} is not one "
                             f"({sorted(k for k in SPECS if SPECS[k].process)} are)")
        if pipe_size is not None and kind != "pipes":
            raise ValueError(f"pipe_size={pipe_size!r} is for pipes, not {kind}")

    def _new_activity(self, kind: str, name: str | None, pipe_size: int | str | None,
                      oom_score_adj: int, fs: str = "tmpfs") -> Activity:
        name = name or f"{kind}#{len(self.activities)}"
        if kind == "files":
            return FilesActivity(self, kind, name, fs)
        if kind == "pipes":
            return UnitActivity(self, kind, name, oom_score_adj, pipe_size)
        return ACTIVITY_CLASSES.get(kind, Activity)(self, kind, name,
                                                    oom_score_adj=oom_score_adj)

    def _activity_pages(self, kind: str, size: int | str | None, count: int | None,
                        pipe_size: int | str | None = None) -> int:
        unit = (SPECS[kind].unit_pages if pipe_size is None else
                round_pipe_size(pipe_size, self.geometry.page_size))
        if kind == "pipes" and count is not None and size is None:
            _check_count(count)
            return count * unit
        if size is None or count is not None:
            raise ValueError(f"{kind} takes size= (bytes)"
                             + (" or count= (pipes)" if kind == "pipes" else ""))
        nbytes = parse_size(size)
        pages = -(-nbytes // self.geometry.page_size)
        return -(-pages // unit) * unit

    # -- time ----------------------------------------------------------------
    # The event queue holds (time, seq, callback, is_work).  "Work" events are
    # things the guest is busy with right now (a driver's work item); plain
    # timers (a retry timer, a background activity's tick) are not, so
    # settle() stops once no work is left even if timers are pending.
    def call_at(self, when: float, fn: Callable[[], None], work: bool = False,
                host: bool = False) -> None:
        """Run ``fn`` when the simulated clock reaches ``when`` seconds.

        Guest events (the default) are dropped when the guest reboots;
        ``host`` events (a hypervisor's timeline) are not.
        """
        heapq.heappush(self._timers, (when, next(self._seq), fn, work,
                                      -1 if host else self.epoch))
        self._pending_work += work

    def call_later(self, delay: float, fn: Callable[[], None], work: bool = False,
                   host: bool = False) -> None:
        """Run ``fn`` after ``delay`` simulated seconds."""
        self.call_at(self.now + delay, fn, work, host)

    def spawn(self, process: Generator[float, None, None], work: bool = True) -> None:
        """Run a generator as a process: each ``yield s`` lets ``s`` seconds pass.

        Other events (timers, activities) run while the process waits, which
        is how a driver's work item interleaves with the rest of the guest.
        """
        def step() -> None:
            try:
                delay = next(process)
            except StopIteration:
                return
            self.call_later(max(0.0, float(delay)), step, work)

        self.call_later(0.0, step, work)

    @property
    def next_event(self) -> float | None:
        """When the next timer or work item is due (simulated seconds), or None."""
        live = (t[0] for t in self._timers if t[4] in (-1, self.epoch))
        return min(live, default=None)

    def _fire_next(self) -> None:
        when, _, fn, work, epoch = heapq.heappop(self._timers)
        self._pending_work -= work
        self.now = max(self.now, when)
        if epoch in (-1, self.epoch):
            fn()

    def run(self, seconds: float) -> None:
        """Advance simulated time by ``seconds``, firing timers and work on the way."""
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
            raise ValueError(f"seconds={seconds!r} must be a non-negative number")
        end = self.now + seconds
        outer, self._until = self._until, end
        while self._timers and self._timers[0][0] <= end:
            self._fire_next()
        self._until = outer
        self.now = max(self.now, end)

    def settle(self, limit: float = 3600.0) -> float:
        """Run until no work is left to do now; return the simulated seconds it took.

        Timers that are not work (a driver's 50 s retry timer, background
        activity) do not keep it going; ``run(seconds)`` waits for those.
        ``limit`` bounds the simulated time spent.
        """
        start = self.now
        outer, self._until = self._until, start + limit
        while self._pending_work and self._timers and self._timers[0][0] - start <= limit:
            self._fire_next()
        self._until = outer
        return self.now - start

    def idle_until(self) -> float:
        """Until when nothing is due but the caller: the next timer or work item, or
        where the running ``run()``/``settle()`` stops (a periodic timer may skip
        ahead to it, see vmemlab.kernel_activity)."""
        nxt = self.next_event
        return self._until if nxt is None else min(nxt, self._until)

    # -- trace ---------------------------------------------------------------
    def start_trace(self, trace: Trace | None = None) -> Trace:
        """Start recording now (after a setup not worth tracing); returns the trace.

        The first frame opens here; ``step(label)`` closes frames as usual.
        """
        self.trace = self._make_trace(trace or True)
        self.node.trace = self.trace
        return self.trace

    def stop_trace(self) -> Trace | NullTrace:
        """Stop recording; returns what was recorded (frames stay readable)."""
        recorded, self.trace = self.trace, NullTrace()
        self.node.trace = self.trace
        return recorded

    def step(self, label: str = "") -> None:
        """Close a trace frame (a no-op unless the machine records a trace)."""
        self.trace.close_frame(label)

    def snapshot(self) -> Snapshot:
        """Copy the arrays and text views a frame needs for replay."""
        mm = self.node.mm
        extra = {"pagetypeinfo": self.proc.pagetypeinfo(),
                 "virtio_mem": [dev.driver.view() for dev in self.virtio_mem
                                if dev.driver.mode is not None],
                 "contig": self.node.contig_runs()}
        return Snapshot(self.now, self.geometry, mm.state.copy(), mm.kind.copy(), mm.flags.copy(),
                        mm.pb_mt.copy(), mm.pb_zone.copy(), self.proc.buddyinfo(),
                        self.proc.meminfo(), extra)

    # -- checks --------------------------------------------------------------
    def validate(self) -> None:
        """Check every invariant; raise vmemlab.ValidationError naming the pfn."""
        validate_node(self.node)
        validate_hotplug(self.hotplug)
        for cache in self.slab_caches.values():
            cache.validate()
        for dev in self.virtio_mem:
            validate_virtio_mem(self, dev)


def _geometry(spec: str | Geometry) -> Geometry:
    return geometry(spec)


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{what}={value!r} is not one of {list(choices)}")


def _check_count(count: int) -> None:
    if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 0:
        raise ValueError(f"count={count!r} must be a non-negative integer")


def _page_kind(kind: PageKind | str | None) -> PageKind | None:
    if kind is None or isinstance(kind, PageKind):
        return kind
    try:
        return PageKind[str(kind).upper()]
    except KeyError:
        raise ValueError(f"kind={kind!r} is not one of "
                         f"{[k.name.lower() for k in PageKind if k]}") from None


__all__ = ["Machine", "ZoneSummary", "Snapshot", "MiB", "GiB"]
