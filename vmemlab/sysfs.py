"""/sys/devices/system/memory and memory_hotplug's parameters: the files users touch.

``m.sysfs.read(path)`` returns a file's text exactly as the kernel prints
it; ``m.sysfs.write(path, value)`` performs the write and returns 0 or the
negative errno the write(2) would fail with (``echo offline > state`` on a
busy block gives -EBUSY, as a shell would print "Device or resource busy").

The module parameters ``online_policy`` and ``auto_movable_ratio`` (5.15+)
live under /sys/module/memory_hotplug/parameters.  Runtime writes last until
the next boot, which restores the machine's boot settings.

Kernel: drivers/base/memory.c (state_show/store, valid_zones_show,
phys_index_show, removable_show, block_size_bytes_show,
auto_online_blocks_show/store); mm/memory_hotplug.c (online_policy_set(),
module_param(auto_movable_ratio))
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .constants import EINVAL
from .drop_caches import SYSCTL_PATH as DROP_CACHES
from .drop_caches import write_drop_caches
from .memory_hotplug import ONLINE_TYPES

if TYPE_CHECKING:
    from .machine import Machine

ROOT = "/sys/devices/system/memory"
PARAMS = "/sys/module/memory_hotplug/parameters"
_BLOCK_FILE = re.compile(rf"^{ROOT}/memory(\d+)/(\w+)$")
_BLOCK_FILES = ("online", "phys_device", "phys_index", "removable", "state", "valid_zones")


class Sysfs:
    """The memory-hotplug part of sysfs for one machine."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine

    def ls(self, path: str = ROOT) -> list[str]:
        """Entries of a sysfs directory, sorted like ``ls``."""
        path = path.rstrip("/")
        if path == PARAMS and self._has_params():
            return ["auto_movable_ratio", "online_policy"]
        if path == ROOT:
            blocks = [f"memory{b}" for b in sorted(self.m.hotplug.blocks)]
            return sorted(["auto_online_blocks", "block_size_bytes"] + blocks)
        m = re.match(rf"^{ROOT}/memory(\d+)$", path)
        if m and int(m[1]) in self.m.hotplug.blocks:
            return list(_BLOCK_FILES)
        raise ValueError(f"path={path!r}: no such sysfs directory")

    def read(self, path: str) -> str:
        """The text of a sysfs file, newline included."""
        hp = self.m.hotplug
        if path == f"{ROOT}/block_size_bytes":
            return f"{self.m.geometry.memory_block_size:x}\n"
        if path == f"{ROOT}/auto_online_blocks":
            return f"{self.m.auto_online_blocks}\n"
        if path.startswith(PARAMS + "/") and self._has_params():
            param = path[len(PARAMS) + 1:]
            if param == "online_policy":
                return f"{self.m.online_policy}\n"
            if param == "auto_movable_ratio":
                return f"{self.m.auto_movable_ratio}\n"
        block, name = self._block_file(path)
        if name == "state":
            return f"{block.state}\n"
        if name == "online":
            return f"{int(block.online)}\n"
        if name == "phys_index":
            return f"{block.id:08x}\n"   # memory_block_id(start_section_nr)
        if name == "removable":
            return "1\n"
        if name == "phys_device":
            return "0\n"
        return f"{hp.valid_zones(block)}\n"

    def write(self, path: str, value: str) -> int:
        """Write a sysfs file (or /proc/sys/vm/drop_caches); 0 or -errno (-EINVAL, -EBUSY...)."""
        text = value.strip()
        if path == DROP_CACHES:
            return write_drop_caches(self.m, text)
        if path == f"{ROOT}/auto_online_blocks":
            if text not in ONLINE_TYPES:
                return EINVAL
            self.m.auto_online_blocks = text
            return 0
        if path.startswith(PARAMS + "/") and self._has_params():
            return self._write_param(path[len(PARAMS) + 1:], text)
        block, name = self._block_file(path)
        hp = self.m.hotplug
        if name == "state":
            if text == "offline":
                return hp.offline_block(block)
            if text in ONLINE_TYPES:
                return hp.online_block(block, text)
            return EINVAL
        if name == "online":
            if text in ("1", "0"):
                return hp.online_block(block) if text == "1" else hp.offline_block(block)
            return EINVAL
        return EINVAL  # the other files are read-only (the shell reports EACCES)

    def _has_params(self) -> bool:
        return "auto-movable" in self.m.profile.online_policies

    def _write_param(self, param: str, text: str) -> int:
        """online_policy_set() matches a policy name; the ratio is a uint."""
        if param == "online_policy":
            if text not in self.m.profile.online_policies:
                return EINVAL
            self.m.online_policy = text
            return 0
        if param == "auto_movable_ratio":
            if not text.isdigit() or int(text) >= 2**32:
                return EINVAL
            self.m.auto_movable_ratio = int(text)
            return 0
        raise ValueError(f"path={PARAMS}/{param!r}: no such sysfs file")

    def _block_file(self, path: str):
        m = _BLOCK_FILE.match(path)
        if not m or m[2] not in _BLOCK_FILES:
            raise ValueError(f"path={path!r}: no such sysfs file")
        block = self.m.hotplug.blocks.get(int(m[1]))
        if block is None:
            raise ValueError(f"path={path!r}: memory{m[1]} does not exist")
        return block, m[2]

    def dump(self) -> str:
        """Every memory block, one line each: id, state, zone(s), removable."""
        lines = [f"block_size_bytes: {self.read(f'{ROOT}/block_size_bytes').strip()}",
                 f"auto_online_blocks: {self.m.auto_online_blocks}"]
        for bid in sorted(self.m.hotplug.blocks):
            base = f"{ROOT}/memory{bid}"
            lines.append(f"memory{bid:<5} {self.read(base + '/state').strip():8} "
                         f"{self.read(base + '/valid_zones').strip()}")
        return "\n".join(lines) + "\n"
