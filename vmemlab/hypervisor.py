"""The host side: QEMU's virtio-mem-pci device.

The device keeps a bitmap with one bit per block (set = plugged), the
plugged ``size``, the ``requested_size`` the host admin set with
``qom-set vmem0 requested-size 4G``, and ``usable_region_size``: the part
of the region the guest may plug, grown to ``requested_size`` + 256 MiB
(two Linux memory blocks) so the guest can pick whole aligned memory blocks.
It only shrinks on UNPLUG_ALL or a system reset.

Requests are checked in QEMU's order: a range outside the usable region
(or misaligned, or empty) is ERROR; plugging past ``requested_size`` is
NACK; blocks not all in the opposite state is ERROR; a busy device
(migration running, preallocation failing) is BUSY; otherwise ACK.  A
system reset unplugs everything (unless the device is busy) and shrinks
the usable region, so a rebooted guest starts from a clean slate.

QEMU: hw/virtio/virtio-mem.c (virtio_mem_state_change_request(),
virtio_mem_unplug_all(), virtio_mem_resize_usable_region(),
virtio_mem_set_requested_size(), virtio_mem_system_reset_hold()),
hw/virtio/trace-events, monitor/hmp-cmds.c (info memory-devices)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from .constants import EBUSY, MiB, format_size, parse_size
from .trace import Event
from .virtio_mem import (
    NB_BLOCKS_MAX,
    Config,
    Request,
    Response,
    VirtioMemReq,
    VirtioMemResp,
    VirtioMemState,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from .machine import Machine

VIRTIO_MEM_MIN_BLOCK_SIZE = 1 * MiB
HOST_POPULATE_BYTES_PER_S = 4e9    # preallocating a plugged block (prealloc=on)


# -- QEMU trace events (hw/virtio/trace-events) -----------------------------
@dataclass(frozen=True)
class VirtioMemPlugRequest(Event):
    name: ClassVar[str] = "virtio_mem_plug_request"
    addr: int
    nb_blocks: int


@dataclass(frozen=True)
class VirtioMemUnplugRequest(Event):
    name: ClassVar[str] = "virtio_mem_unplug_request"
    addr: int
    nb_blocks: int


@dataclass(frozen=True)
class VirtioMemUnplugAllRequest(Event):
    name: ClassVar[str] = "virtio_mem_unplug_all_request"


@dataclass(frozen=True)
class VirtioMemUnpluggedAll(Event):
    name: ClassVar[str] = "virtio_mem_unplugged_all"


@dataclass(frozen=True)
class VirtioMemStateResponse(Event):
    name: ClassVar[str] = "virtio_mem_state_response"
    state: int


@dataclass(frozen=True)
class VirtioMemStateRequest(Event):
    name: ClassVar[str] = "virtio_mem_state_request"
    addr: int
    nb_blocks: int


@dataclass(frozen=True)
class VirtioMemSendResponse(Event):
    name: ClassVar[str] = "virtio_mem_send_response"
    type: int

    def __str__(self) -> str:
        return f"{self.name}: type={self.type} ({VirtioMemResp(self.type).name})"


@dataclass(frozen=True)
class VirtioMemResizedUsableRegion(Event):
    name: ClassVar[str] = "virtio_mem_resized_usable_region"
    old_size: int
    new_size: int


def check_requested_size(value: int | str, block_size: int, region_size: int) -> int:
    """A requested size QEMU accepts, in bytes; ValueError with QEMU's words otherwise.

    QEMU: virtio_mem_set_requested_size()
    """
    value = parse_size(value)
    if value % block_size:
        raise ValueError(f"'requested-size' has to be multiples of 'block-size' "
                         f"({block_size:#x}): {value}")
    if value > region_size:
        raise ValueError(f"'requested-size' cannot exceed the memory backend size "
                         f"({region_size:#x}): {value}")
    return value


class VirtioMemDevice:
    """One virtio-mem-pci device as QEMU implements it.

    ``requested_size`` is the QOM property the host sets; assigning it is
    ``qom-set``: it validates the value, may grow the usable region, and
    always notifies the guest.  ``size`` is what is plugged.
    """

    def __init__(self, machine: Machine, name: str, region_size: int, addr: int,
                 block_size: int, node: int = 0, prealloc: bool = False,
                 host_memory: int | None = None) -> None:
        self.machine = machine
        self.name = name
        self.memdev = f"/objects/mem{name[-1] if name[-1].isdigit() else name}"
        self.addr = addr
        self.region_size = region_size
        self.block_size = block_size
        self.node = node
        self.prealloc = prealloc
        self.host_memory = host_memory
        self.bitmap = np.zeros(region_size // block_size, bool)
        self.size = 0
        self._requested_size = 0
        self.usable_region_size = 0
        self.migrating = False
        self.broken = False
        self.on_config_change: Callable[[], None] | None = None
        self.guest_driver = True   # False: the guest never binds virtio_mem to it
        self.usable_extent = 2 * machine.geometry.memory_block_size
        self.requests = 0

    # -- QOM properties ------------------------------------------------------
    @property
    def requested_size(self) -> int:
        return self._requested_size

    @requested_size.setter
    def requested_size(self, value: int | str) -> None:
        """qom-set vmem0 requested-size VALUE.  QEMU: virtio_mem_set_requested_size()"""
        value = check_requested_size(value, self.block_size, self.region_size)
        if value != self._requested_size:
            self.resize_usable_region(value, can_shrink=False)
            self._requested_size = value
        # Notify even if nothing changed (helpful for debugging, says QEMU).
        if self.on_config_change is not None:
            self.on_config_change()

    @property
    def plugged_size(self) -> int:
        """The config field's name for ``size``."""
        return self.size

    def resize_usable_region(self, requested: int, can_shrink: bool) -> None:
        """requested + EXTENT, block-aligned, within the region; 0 for 0.

        QEMU: virtio_mem_resize_usable_region()
        """
        new = min(self.region_size, requested + self.usable_extent)
        new = -(-new // self.block_size) * self.block_size
        if not requested:
            new = 0
        if new < self.usable_region_size and not can_shrink:
            return
        self.machine.node.emit(VirtioMemResizedUsableRegion(self.usable_region_size, new))
        self.usable_region_size = new

    def config(self) -> Config:
        """struct virtio_mem_config as the guest reads it."""
        return Config(self.block_size, self.node, self.addr, self.region_size,
                      self.usable_region_size, self.size, self._requested_size)

    @property
    def busy(self) -> bool:
        """virtio_mem_is_busy(): migration (or incoming postcopy) is running."""
        return self.migrating

    # -- requests ------------------------------------------------------------
    def handle_request(self, req: Request) -> Response | None:
        """Answer one request; None if it is a protocol violation (device broken).

        QEMU: virtio_mem_handle_request()
        """
        self.requests += 1
        emit = self.machine.node.emit
        if self.broken:
            return None
        if req.type in (VirtioMemReq.PLUG, VirtioMemReq.UNPLUG):
            plug = req.type == VirtioMemReq.PLUG
            emit((VirtioMemPlugRequest if plug else VirtioMemUnplugRequest)(req.addr,
                                                                             req.nb_blocks))
            resp = Response(self._state_change(req.addr, req.nb_blocks, plug))
        elif req.type == VirtioMemReq.UNPLUG_ALL:
            emit(VirtioMemUnplugAllRequest())
            resp = Response(VirtioMemResp.BUSY if self.unplug_all() else VirtioMemResp.ACK)
        elif req.type == VirtioMemReq.STATE:
            emit(VirtioMemStateRequest(req.addr, req.nb_blocks))
            resp = self._state_request(req.addr, req.nb_blocks)
            if resp.type == VirtioMemResp.ACK:
                emit(VirtioMemStateResponse(resp.state))
        else:
            self.broken = True    # virtio_error(): "unknown request type"
            self.machine.host_messages.append(f"unknown request type: {req.type}")
            return None
        emit(VirtioMemSendResponse(resp.type))
        return resp

    def valid_range(self, gpa: int, size: int) -> bool:
        """QEMU: virtio_mem_valid_range()"""
        if gpa % self.block_size or size <= 0:
            return False
        return self.addr <= gpa and gpa + size <= self.addr + self.usable_region_size

    def _blocks(self, gpa: int, nb_blocks: int) -> slice:
        first = (gpa - self.addr) // self.block_size
        return slice(first, first + nb_blocks)

    def _state_change(self, gpa: int, nb_blocks: int, plug: bool) -> int:
        """QEMU: virtio_mem_state_change_request()"""
        size = nb_blocks * self.block_size
        if not 0 < nb_blocks <= NB_BLOCKS_MAX or not self.valid_range(gpa, size):
            return VirtioMemResp.ERROR
        if plug and self.size + size > self._requested_size:
            return VirtioMemResp.NACK
        blocks = self.bitmap[self._blocks(gpa, nb_blocks)]
        if (plug and blocks.any()) or (not plug and not blocks.all()):
            return VirtioMemResp.ERROR
        if self.busy or (plug and not self._prealloc(size)):
            return VirtioMemResp.BUSY
        self.bitmap[self._blocks(gpa, nb_blocks)] = plug
        self.size += size if plug else -size
        return VirtioMemResp.ACK

    def _prealloc(self, size: int) -> bool:
        """prealloc=on populates a block when it is plugged; fails without host memory."""
        if not self.prealloc or self.host_memory is None:
            return True
        if self.size + size > self.host_memory:
            self.machine.host_messages.append(f"virtio-mem {self.name}: preallocation failed")
            return False
        return True

    def unplug_all(self) -> int:
        """Discard everything, then let the usable region shrink; -EBUSY if busy.

        QEMU: virtio_mem_unplug_all()
        """
        if self.size:
            if self.busy:
                return EBUSY
            self.bitmap[:] = False
            self.size = 0
        self.machine.node.emit(VirtioMemUnpluggedAll())
        self.resize_usable_region(self._requested_size, can_shrink=True)
        return 0

    def _state_request(self, gpa: int, nb_blocks: int) -> Response:
        """QEMU: virtio_mem_state_request()"""
        if not 0 < nb_blocks <= NB_BLOCKS_MAX or \
                not self.valid_range(gpa, nb_blocks * self.block_size):
            return Response(VirtioMemResp.ERROR)
        blocks = self.bitmap[self._blocks(gpa, nb_blocks)]
        state = (VirtioMemState.PLUGGED if blocks.all() else
                 VirtioMemState.UNPLUGGED if not blocks.any() else VirtioMemState.MIXED)
        return Response(VirtioMemResp.ACK, state)

    def system_reset(self) -> None:
        """A guest reboot: unplug everything (a busy device keeps its blocks).

        A *device* reset (the guest resetting its driver) changes nothing.
        QEMU: virtio_mem_system_reset_hold()
        """
        self.unplug_all()

    def plug_time(self, nb_blocks: int) -> float:
        """Host time to plug ``nb_blocks`` (populating them with prealloc=on)."""
        if not self.prealloc:
            return 0.0
        return nb_blocks * self.block_size / HOST_POPULATE_BYTES_PER_S

    # -- views ---------------------------------------------------------------
    def info(self) -> str:
        """HMP ``info memory-devices`` for this device."""
        return (f'Memory device [virtio-mem]: "{self.name}"\n'
                f"  memaddr: {self.addr:#x}\n"
                f"  node: {self.node}\n"
                f"  requested-size: {self._requested_size}\n"
                f"  size: {self.size}\n"
                f"  max-size: {self.region_size}\n"
                f"  block-size: {self.block_size}\n"
                f"  memdev: {self.memdev}\n")

    def __repr__(self) -> str:
        return (f"<VirtioMemDevice {self.name} at {self.addr:#x}: size "
                f"{format_size(self.size)} of requested {format_size(self._requested_size)}"
                f" (usable {format_size(self.usable_region_size)}, region "
                f"{format_size(self.region_size)}, block {format_size(self.block_size)})>")
