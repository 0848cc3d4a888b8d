"""/sys/devices/system/memory and memory_hotplug's parameters: the files users touch.

``m.sysfs.read(path)`` returns a file's text exactly as the kernel prints
it.  ``m.sysfs.write(path, value)`` is ``printf %s VALUE > PATH`` run as
root, and returns what that write(2) returns: 0, or the negative errno the
shell would report.  One rule covers every refusal:

* the path: -ENOENT (a directory on the way does not exist), -EACCES (a
  read-only attribute: sysfs refuses even root; or a new name, which sysfs
  cannot create), -EISDIR (a directory), -ENOTDIR (a file used as one);
* the value, as each store function parses it: -EINVAL (not an online
  type, not a boolean, not a number), -ERANGE (a number too big), and
  the result of the operation itself (-EBUSY, -EINTR, ...), or -ENODEV if
  the block went away while the write waited for a virtio-mem driver.

Writing nothing ("") succeeds and changes nothing, as a zero-byte write
does; a value is cut at its first NUL and after PAGE_SIZE bytes, as the
kernel's write buffer cuts it.  Only what is not a write at all raises
ValueError: a value or path that is not a string, a relative path, or a
path outside the two directories modelled here.  ``read`` and ``ls`` of a
path that does not exist raise ValueError naming it.

The module parameters ``online_policy`` and ``auto_movable_ratio`` (5.15+)
live under /sys/module/memory_hotplug/parameters.  Runtime writes last until
the next boot, which restores the machine's boot settings.

Kernel: drivers/base/memory.c (state_show/store, valid_zones_show,
phys_index_show, removable_show, block_size_bytes_show,
auto_online_blocks_show/store, mhp_online_type_from_str());
drivers/base/core.c (online_store(), device_online()); mm/memory_hotplug.c
(set_online_policy(), module_param(auto_movable_ratio, uint));
fs/kernfs/file.c (kernfs_fop_open(): -EACCES; kernfs_fop_write_iter());
fs/sysfs/file.c (sysfs_kf_write(): a zero-byte write is 0); fs/namei.c
(lookup_open(): -EACCES when a directory cannot create); lib/kstrtox.c
(kstrtobool(), kstrtouint()); lib/string.c (sysfs_streq())
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .constants import EACCES, EINVAL, EISDIR, ENODEV, ENOENT, ENOTDIR, ERANGE
from .drop_caches import SYSCTL_PATH as DROP_CACHES
from .drop_caches import write_drop_caches
from .kstrtox import parse_integer
from .memory_hotplug import ONLINE_TYPES

if TYPE_CHECKING:
    from .machine import Machine
    from .memory_hotplug import MemoryBlock

ROOT = "/sys/devices/system/memory"
PARAMS = "/sys/module/memory_hotplug/parameters"
WRITE_BUFFER = 4096          # PAGE_SIZE: kernfs copies at most this much per write(2)
_BLOCK_DIR = re.compile(r"memory(0|[1-9][0-9]*)")     # device names have no leading zeros
_BLOCK_FILES = {"online": True, "phys_device": False, "phys_index": False,
                "removable": False, "state": True, "valid_zones": False}   # name: writable
_ROOT_FILES = {"auto_online_blocks": True, "block_size_bytes": False}
_PARAM_FILES = {"auto_movable_ratio": True, "online_policy": True}
_ANCESTORS = ("/", "/sys", "/sys/devices", "/sys/devices/system", "/sys/module", "/proc",
              "/proc/sys")
SYSCTL_VM = DROP_CACHES.rpartition("/")[0]
_SYSCTL_FILES = {"drop_caches": True}          # 0200: written, never read


class Sysfs:
    """The memory-hotplug part of sysfs for one machine."""

    def __init__(self, machine: Machine) -> None:
        self.m = machine

    # -- the tree ----------------------------------------------------------
    def _files(self, directory: str) -> dict[str, bool] | None:
        """The attribute files of a modelled directory (name: writable), else None."""
        if directory == ROOT:
            return _ROOT_FILES
        if directory == PARAMS and self._has_params():
            return _PARAM_FILES
        if directory == SYSCTL_VM:
            return _SYSCTL_FILES
        if self._block(directory) is not None:
            return _BLOCK_FILES
        return None

    def _subdirs(self, directory: str) -> list[str]:
        if directory == ROOT:
            return [f"memory{b}" for b in sorted(self.m.hotplug.blocks)]
        if directory == "/sys/module/memory_hotplug" and self._has_params():
            return ["parameters"]
        return []

    def _kind(self, path: str) -> str | None:
        """"dir", "rw" or "ro" (a writable or read-only file), or None: no such entry."""
        if self._files(path) is not None or path in _ANCESTORS or (
                path == "/sys/module/memory_hotplug" and self._has_params()):
            return "dir"
        directory, _, name = path.rpartition("/")
        files = self._files(directory)
        if files is not None and name in files:
            return "rw" if files[name] else "ro"
        return None

    def _block(self, directory: str) -> MemoryBlock | None:
        parent, _, name = directory.rpartition("/")
        m = _BLOCK_DIR.fullmatch(name) if parent == ROOT else None
        return None if m is None else self.m.hotplug.blocks.get(int(m[1]))

    def _has_params(self) -> bool:
        return "auto-movable" in self.m.profile.online_policies

    # -- reading -------------------------------------------------------------
    def ls(self, path: str = ROOT) -> list[str]:
        """Entries of a sysfs directory, sorted like ``ls``."""
        path, _ = _resolve(path)
        files = self._files(path)
        if files is None:
            raise ValueError(f"path={path!r}: no such sysfs directory")
        return sorted([*files, *self._subdirs(path)])

    def read(self, path: str) -> str:
        """The text of a sysfs file, newline included."""
        path, slash = _resolve(path)
        kind = self._kind(path)
        if kind not in ("rw", "ro") or slash or path == DROP_CACHES:
            what = ("is a directory" if kind == "dir" else "is write-only (0200)"
                    if path == DROP_CACHES and not slash else "no such sysfs file")
            raise ValueError(f"path={path!r}: {what}")
        directory, _, name = path.rpartition("/")
        if directory == ROOT:
            return (f"{self.m.geometry.memory_block_size:x}\n" if name == "block_size_bytes"
                    else f"{self.m.auto_online_blocks}\n")
        if directory == PARAMS:
            return (f"{self.m.online_policy}\n" if name == "online_policy"
                    else f"{self.m.auto_movable_ratio}\n")
        return _block_text(self.m, self._block(directory), name)

    # -- writing -------------------------------------------------------------
    def write(self, path: str, value: str) -> int:
        """``printf %s VALUE > PATH`` as root: 0 or -errno (see the module docstring)."""
        if not isinstance(value, str):
            raise ValueError(f"value={value!r} must be a str (the text written to the file)")
        path, slash = _resolve(path)
        rc = self._open_for_write(path, slash)
        if rc:
            return rc
        if not value:
            return 0                       # sysfs_kf_write(), __do_proc_dointvec(): nothing
        if path == DROP_CACHES:
            return write_drop_caches(self.m, value)     # procfs: NUL bytes are data
        text = value[:WRITE_BUFFER].split("\0", 1)[0]
        directory, _, name = path.rpartition("/")
        if directory == ROOT:
            return self._store_auto_online_blocks(text)
        if directory == PARAMS:
            return self._store_param(name, text)
        return self._store_block(self._block(directory), name, text)

    def _open_for_write(self, path: str, slash: bool) -> int:
        """What open(O_WRONLY | O_CREAT | O_TRUNC) returns: 0 or -errno.

        The lookup walks the path: a missing directory is -ENOENT, a file
        on the way -ENOTDIR; a new name in a sysfs directory cannot be
        created (-EACCES); a read-only attribute is -EACCES even for root.
        """
        parts = path.strip("/").split("/")
        for i in range(1, len(parts)):
            kind = self._kind("/" + "/".join(parts[:i]))
            if kind != "dir":
                return ENOENT if kind is None else ENOTDIR
        kind = self._kind(path)
        if kind is None:
            return EISDIR if slash else EACCES
        if kind == "dir":
            return EISDIR
        return ENOTDIR if slash else 0 if kind == "rw" else EACCES

    def _store_auto_online_blocks(self, text: str) -> int:
        """Kernel: auto_online_blocks_store()"""
        online_type = _match(text, ONLINE_TYPES)
        if online_type is None:
            return EINVAL
        self.m.auto_online_blocks = online_type
        return 0

    def _store_block(self, block: MemoryBlock, name: str, text: str) -> int:
        """state_store() and online_store(); a block already in the asked-for state is
        -EINVAL for ``state`` but 0 for ``online`` (device_online() returns 1)."""
        hp = self.m.hotplug
        if name == "state":
            online_type = _match(text, ONLINE_TYPES)
            if online_type is None:
                return EINVAL
            block = self.m.wait_for_hotplug_lock(block)
            if block is None:
                return ENODEV
            return hp.offline_block(block) if online_type == "offline" else \
                hp.online_block(block, online_type)
        want = kstrtobool(text)
        if want is None:
            return EINVAL
        block = self.m.wait_for_hotplug_lock(block)
        if block is None:
            return ENODEV
        if want == block.online:
            return 0
        return hp.online_block(block) if want else hp.offline_block(block)

    def _store_param(self, name: str, text: str) -> int:
        """set_online_policy() matches a policy name; auto_movable_ratio is a uint."""
        if name == "online_policy":
            policy = _match(text, self.m.profile.online_policies)
            if policy is None:
                return EINVAL
            self.m.online_policy = policy
            return 0
        ratio = kstrtouint(text)
        if ratio < 0:
            return ratio
        self.m.auto_movable_ratio = ratio
        return 0

    def dump(self) -> str:
        """Every memory block, one line each: id, state, zone(s), removable."""
        lines = [f"block_size_bytes: {self.read(f'{ROOT}/block_size_bytes').strip()}",
                 f"auto_online_blocks: {self.m.auto_online_blocks}"]
        for bid in sorted(self.m.hotplug.blocks):
            base = f"{ROOT}/memory{bid}"
            lines.append(f"memory{bid:<5} {self.read(base + '/state').strip():8} "
                         f"{self.read(base + '/valid_zones').strip()}")
        return "\n".join(lines) + "\n"


def _block_text(m: Machine, block: MemoryBlock, name: str) -> str:
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
    return f"{m.hotplug.valid_zones(block)}\n"


def _resolve(path: str) -> tuple[str, bool]:
    """An absolute path with "//", "." and ".." resolved as the kernel's lookup does,
    and whether it ended in "/" (then it must be a directory)."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"path={path!r} must be an absolute path (a str starting with /)")
    parts: list[str] = []
    for part in path.split("/"):
        if part == "..":
            parts = parts[:-1]
        elif part not in ("", "."):
            parts.append(part)
    resolved = "/" + "/".join(parts)
    if not (resolved.startswith((ROOT, "/sys/module/memory_hotplug", SYSCTL_VM))
            or resolved in _ANCESTORS):
        raise ValueError(f"path={path!r}: vmemlab models {ROOT}, {PARAMS} and {DROP_CACHES} "
                         "only")
    return resolved, path.endswith("/") and resolved != "/"


def sysfs_streq(written: str, name: str) -> bool:
    """Equal, ignoring one newline at the end of either.  Kernel: lib/string.c"""
    return written == name or written == name + "\n" or written + "\n" == name


def _match(text: str, names: tuple[str, ...]) -> str | None:
    """The name ``text`` is (sysfs_streq()), or None: sysfs_match_string()."""
    return next((n for n in names if sysfs_streq(text, n)), None)


def kstrtobool(text: str) -> bool | None:
    """True for y/Y/t/T/1 or "on", False for n/N/f/F/0 or "off" (first characters
    only), None (-EINVAL) for anything else.  Kernel: lib/kstrtox.c, kstrtobool()"""
    first, second = text[:1], text[1:2]
    if first and first in "yYtT1":
        return True
    if first and first in "nNfF0":
        return False
    if first and first in "oO" and second:
        return True if second in "nN" else False if second in "fF" else None
    return None


def kstrtouint(text: str) -> int:
    """An unsigned int as kstrtouint(s, 0) reads it, or -EINVAL / -ERANGE.

    An optional "+", then 0x for hex, a leading 0 for octal, else decimal;
    ASCII digits only; one trailing newline.  Kernel: lib/kstrtox.c
    """
    s = text[1:] if text[:1] == "+" else text
    value, taken = parse_integer(s)
    if value >= 1 << 64:
        return ERANGE                 # _parse_integer() overflow
    if not taken or s[taken:] not in ("", "\n"):
        return EINVAL
    return value if value < 1 << 32 else ERANGE
