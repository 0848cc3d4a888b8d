"""The virtio-mem protocol, shared by the device (QEMU) and the driver (Linux).

A virtio-mem device is a resizable DIMM.  It owns a region of guest-physical
memory ``[addr, addr + region_size)`` cut into ``block_size`` blocks, each
plugged or unplugged.  The host says how much it wants plugged
(``requested_size``); the guest driver decides *which* blocks to plug or
unplug and asks the device, one request at a time, on a single virtqueue.
The device answers ACK, NACK (plugging more than requested), BUSY (cannot
right now) or ERROR (a bad request).  Only the usable part of the region,
``usable_region_size``, may be plugged.

Values are those of the virtio spec and include/uapi/linux/virtio_mem.h;
a request is 24 bytes, a response 10.

Kernel: include/uapi/linux/virtio_mem.h; virtio spec, "Memory Device"
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

VIRTIO_ID_MEM = 24
VIRTIO_MEM_F_ACPI_PXM = 0
VIRTIO_MEM_F_UNPLUGGED_INACCESSIBLE = 1
VIRTIO_MEM_F_PERSISTENT_SUSPEND = 2
NB_BLOCKS_MAX = 0xFFFF          # le16 nb_blocks


class VirtioMemReq(IntEnum):
    """Request types.  Kernel: VIRTIO_MEM_REQ_*"""

    PLUG = 0
    UNPLUG = 1
    UNPLUG_ALL = 2
    STATE = 3


class VirtioMemResp(IntEnum):
    """Response types.  Kernel: VIRTIO_MEM_RESP_*"""

    ACK = 0
    NACK = 1
    BUSY = 2
    ERROR = 3


class VirtioMemState(IntEnum):
    """Answer of a STATE request.  Kernel: VIRTIO_MEM_STATE_*"""

    PLUGGED = 0
    UNPLUGGED = 1
    MIXED = 2


@dataclass(frozen=True)
class Request:
    """struct virtio_mem_req: a type and, except for UNPLUG_ALL, a block range."""

    type: int
    addr: int = 0
    nb_blocks: int = 0

    def __str__(self) -> str:
        name = VirtioMemReq(self.type).name if self.type in VirtioMemReq._value2member_map_ \
            else str(self.type)
        if self.type == VirtioMemReq.UNPLUG_ALL:
            return f"{name}"
        return f"{name} addr={self.addr:#x} nb_blocks={self.nb_blocks}"


@dataclass(frozen=True)
class Response:
    """struct virtio_mem_resp: a type and, for STATE, the state."""

    type: int
    state: int | None = None   # only a STATE request's ACK carries one

    def __str__(self) -> str:
        text = VirtioMemResp(self.type).name
        if self.state is not None:
            text += f" state={VirtioMemState(self.state).name}"
        return text


@dataclass(frozen=True)
class Config:
    """struct virtio_mem_config as the driver reads it (all read-only for the driver)."""

    block_size: int
    node_id: int
    addr: int
    region_size: int
    usable_region_size: int
    plugged_size: int
    requested_size: int


@dataclass(frozen=True)
class VirtioMemView:
    """What pictures need to draw one device and its driver (a frame's extra data).

    ``plugged`` has one entry per device block of the region.  The driver
    manages *units* (memory blocks in SBM, big blocks in BBM) starting at
    ``first_unit_pfn``: ``mb_states`` holds one state name per unit and
    ``sb_plugged`` is a (units x subblocks per unit) array (one column in BBM).
    """

    name: str
    start_pfn: int
    nr_pages: int
    block_pages: int
    usable_pages: int
    requested_size: int
    plugged_size: int
    plugged: np.ndarray
    mode: str
    unit_pages: int
    sb_pages: int
    first_unit_pfn: int
    mb_states: tuple[str, ...]
    sb_plugged: np.ndarray
