"""sysfs writes behave like write(2) as root: every refusal is a -errno, never an exception.

Every path (writable and read-only attributes, directories, names that do
not exist, paths that are not quite right) is written with every value
(valid, misspelled, padded, non-ASCII digits, NUL bytes, a page and more)
on a fresh teaching machine.  The expected result comes from the rules of
the kernel functions involved, written out here independently of the model:
the open(2) of the path first, then the attribute's store function.  A
refused write leaves the machine unchanged (``state_digest``).
"""

from __future__ import annotations

import pytest

import vmemlab as vm
from vmemlab.validate import state_digest

M = "/sys/devices/system/memory"
P = "/sys/module/memory_hotplug/parameters"
ONLINE_TYPES = ("offline", "online", "online_kernel", "online_movable")

# path -> what open(O_WRONLY|O_CREAT) gives, or the attribute's name when it opens
PATHS = {
    f"{M}/memory1/state": "state",
    f"{M}/memory1/online": "online",
    f"{M}/auto_online_blocks": "auto_online_blocks",
    f"{P}/online_policy": "online_policy",
    f"{P}/auto_movable_ratio": "auto_movable_ratio",
    f"{M}//memory1/./state": "state",                      # the lookup resolves these
    f"{M}/memory2/../memory1/state": "state",
    f"{M}/block_size_bytes": vm.EACCES,                     # 0444: even root may not
    f"{M}/memory1/valid_zones": vm.EACCES,
    f"{M}/memory1/phys_index": vm.EACCES,
    f"{M}/memory1/phys_device": vm.EACCES,
    f"{M}/memory1/removable": vm.EACCES,
    f"{M}/memory1/bogus": vm.EACCES,                        # sysfs cannot create a file
    f"{M}/memory1/state\n": vm.EACCES,                      # a name with a newline: new
    f"{M}/bogus": vm.EACCES,
    f"{P}/bogus": vm.EACCES,
    f"{M}/memory01/state": vm.ENOENT,                       # devices are named memory1
    f"{M}/memory99/state": vm.ENOENT,
    f"{M}/memory1x/state": vm.ENOENT,
    f"{M}/memory١/state": vm.ENOENT,
    f"{M}/memory1/state/": vm.ENOTDIR,
    f"{M}/block_size_bytes/x": vm.ENOTDIR,
    M: vm.EISDIR,
    f"{M}/memory1": vm.EISDIR,
    f"{M}/memory1/": vm.EISDIR,
    P: vm.EISDIR,
    "/sys": vm.EISDIR,
}

VALUES = ["offline", "online", "online_kernel", "online_movable", "offline\n", "online\n",
          " online", "online ", "ONLINE", "online\n\n", "sideways", "", "\n", "1", "0", "1\n",
          "yes", "no", "on", "off", "On", "oF", "o", "true", "Tx", "maybe", "2", "-1", "+5",
          "301", "0x10", "0X1f", "010", "08", "0x", "١٢", "4294967295", "4294967296",
          "99999999999999999999999", "contig-zones", "auto-movable", "auto-movable\n",
          "offline\0junk", "\0", "x" * 5000, "1" + "\n" * 5000]


def parses(attr: str, text: str) -> bool:
    """Whether the attribute's store function accepts ``text`` (the kernel's rules)."""
    if attr in ("state", "auto_online_blocks"):
        return text in ONLINE_TYPES or text.removesuffix("\n") in ONLINE_TYPES and \
            text.endswith("\n") and not text.endswith("\n\n")
    if attr == "online_policy":
        return text in ("contig-zones", "auto-movable", "contig-zones\n", "auto-movable\n")
    if attr == "online":
        return text[:1] in tuple("yYtT1nNfF0") or text[:2].lower() in ("on", "of")
    return attr == "auto_movable_ratio" and text in RATIOS


RATIOS = {"1": 1, "0": 0, "1\n": 1, "2": 2, "+5": 5, "301": 301, "0x10": 16, "0X1f": 31,
          "010": 8, "4294967295": 2**32 - 1}
RANGE = ("4294967296", "99999999999999999999999")


def expected(path: str, value: str) -> int | str:
    """The write's result: an errno, or "done" for a store that runs its operation."""
    attr = PATHS[path]
    if isinstance(attr, int):
        return attr
    text = value[:4096].split("\0")[0]
    if value == "":
        return 0
    if attr == "auto_movable_ratio" and text in RANGE:
        return vm.ERANGE
    return "done" if parses(attr, text) else vm.EINVAL


CASES = [(p, v) for p in PATHS for v in VALUES]


@pytest.mark.parametrize("path, value", CASES, ids=[f"{p!r}={v[:12]!r}" for p, v in CASES])
def test_write_returns_what_write2_returns(path, value):
    m = vm.Machine(boot_memory="1M", geometry="teaching", online_policy="auto-movable")
    before = state_digest(m)
    rc = m.sysfs.write(path, value)
    want = expected(path, value)
    if want == "done":
        assert rc in (0, vm.EINVAL)         # EINVAL: the block is already in that state
    else:
        assert rc == want, f"write({path!r}, {value[:20]!r}) = {vm.errname(rc)}"
    if rc:
        assert state_digest(m) == before
    m.validate()


@pytest.mark.parametrize("attr, value, state, result", [
    ("state", "offline", "offline", 0), ("state", "offline\n", "offline", 0),
    ("state", "online", "online", vm.EINVAL), ("online", "1", "online", 0),
    ("online", "yes", "online", 0), ("online", "on", "online", 0),
    ("online", "true", "online", 0), ("online", "0", "offline", 0),
    ("online", "off", "offline", 0), ("online", "n", "offline", 0),
    ("online", "f", "offline", 0)])
def test_the_stored_values_act(attr, value, state, result):
    m = vm.Machine(boot_memory="1M", geometry="teaching")
    assert m.sysfs.write(f"{M}/memory1/{attr}", value) == result
    assert m.memory_blocks[1].state == state
    m.validate()


def test_parameters_take_the_kernels_numbers():
    m = vm.Machine(boot_memory="1M", geometry="teaching")
    for text, ratio in RATIOS.items():
        assert m.sysfs.write(f"{P}/auto_movable_ratio", text) == 0
        assert m.auto_movable_ratio == ratio
    assert m.sysfs.write(f"{P}/online_policy", "auto-movable\n") == 0
    assert m.online_policy == "auto-movable"


def test_already_in_that_state():
    """state says -EINVAL (device_online() returns 1), online says nothing (count)."""
    m = vm.Machine(boot_memory="1M", geometry="teaching")
    assert m.sysfs.write(f"{M}/memory1/state", "online") == vm.EINVAL
    assert m.sysfs.write(f"{M}/memory1/online", "1") == 0
    assert m.sysfs.write(f"{M}/memory1/online", "0") == 0
    assert m.sysfs.write(f"{M}/memory1/state", "offline") == vm.EINVAL
    assert m.sysfs.write(f"{M}/memory1/online", "0") == 0


def test_the_5_8_kernel_has_no_parameters_directory():
    m = vm.Machine(boot_memory="1M", geometry="teaching", kernel="5.8")
    assert m.sysfs.write(f"{P}/online_policy", "contig-zones") == vm.ENOENT
    assert m.sysfs.write("/sys/module/memory_hotplug", "x") == vm.EACCES   # a new name
    assert m.sysfs.write("/sys/module", "x") == vm.EISDIR
    with pytest.raises(ValueError, match="no such sysfs file"):
        m.sysfs.read(f"{P}/online_policy")


@pytest.mark.parametrize("value, rc", [
    ("1", 0), ("3\n", 0), (" \t2", 0), ("0x3", 0), ("04", 0), ("4 9", 0), ("2\t", 0),
    ("0", vm.EINVAL), ("5", vm.EINVAL), ("-1", vm.EINVAL), ("+1", vm.EINVAL),
    ("010", vm.EINVAL), ("08", vm.EINVAL), ("0x", vm.EINVAL), ("1a", vm.EINVAL),
    ("1\0", vm.EINVAL), ("١", vm.EINVAL), ("", 0), ("\n", vm.EINVAL),
    ("3" * 30, vm.EINVAL), ("000000000000000000003", vm.EINVAL)])
def test_drop_caches_parses_as_proc_dointvec_minmax(value, rc):
    """kernel/sysctl.c: spaces skipped, base 0 (hex, octal), at most 21 characters, then
    the end or white space; the value from 1 to 4 (extra1, extra2)."""
    m = vm.Machine(boot_memory="1M", geometry="teaching")
    before = state_digest(m)
    assert m.sysfs.write("/proc/sys/vm/drop_caches", value) == rc
    assert (state_digest(m) == before) == (rc != 0 or value == "")    # a drop logs a line
    m.validate()


@pytest.mark.parametrize("path, value, text", [
    (f"{M}/memory1/state", None, "value=None"),
    (f"{M}/memory1/state", 1, "value=1"),
    (f"{M}/memory1/state", b"offline", "value=b'offline'"),
    (f"{M}/memory1/state", True, "value=True"),
    ("memory1/state", "offline", "must be an absolute path"),
    (None, "offline", "path=None"),
    (b"/sys/devices/system/memory/memory1/state", "offline", "path=b"),
    ("/proc/sys/vm/drop_caches", 3, "value=3"),
    ("/sys/kernel/mm/transparent_hugepage/enabled", "never", "vmemlab models"),
])
def test_what_is_not_a_write_at_all_is_a_value_error(path, value, text):
    m = vm.Machine(boot_memory="1M", geometry="teaching")
    before = state_digest(m)
    with pytest.raises(ValueError, match=text):
        m.sysfs.write(path, value)
    assert state_digest(m) == before


@pytest.mark.parametrize("path, text", [
    (f"{M}/memory99/state", "no such sysfs file"), (f"{M}/memory01/state", "no such"),
    (f"{M}/memory1/state\n", "no such"), (f"{M}/memory1/state/", "no such"),
    (f"{M}/memory1", "is a directory"), (M, "is a directory"), ("/etc/passwd", "models")])
def test_reading_what_is_not_a_file(path, text):
    m = vm.Machine(boot_memory="1M", geometry="teaching")
    with pytest.raises(ValueError, match=text):
        m.sysfs.read(path)


def test_reads_and_listings_still_work():
    m = vm.Machine(boot_memory="1M", geometry="teaching")
    assert m.sysfs.read(f"{M}//memory1/./state") == "online\n"
    assert m.sysfs.ls(f"{M}/memory1/") == ["online", "phys_device", "phys_index",
                                          "removable", "state", "valid_zones"]
    assert m.sysfs.ls(P) == ["auto_movable_ratio", "online_policy"]
    assert "block_size_bytes" in m.sysfs.ls()
