"""Scenario files: a machine, its devices and a timeline, in TOML.

``load_scenario(path)`` reads a file, checks every key and value, and
returns a ``Scenario`` of plain dataclasses; ``vmemlab.scenario_run`` runs
it.  Nothing in a file is ever executed or evaluated: values are sizes,
numbers, names and booleans.  Every mistake raises ``ScenarioError``
naming the file, the line, the key and what is expected::

    scenarios/x.toml:14: steps[2].requested_size: expected a size like 512M,
    2G or a number of bytes, got '2X'

The format (``python -m vmemlab run --help`` prints the same)::

    title = "Unplug stuck in ZONE_NORMAL"        # optional

    [machine]                 # vmemlab.Machine(...); every key is optional
    boot_memory = "2G"        # QEMU -m
    kernel = "6.12"           # "5.8", "6.1", "6.12" or "6.15"
    online_policy = "contig-zones"       # or "auto-movable" (6.12)
    auto_online_blocks = "online"        # offline, online, online_kernel, online_movable
    seed = 1
    geometry = "x86_64"       # or "teaching"
    kernel_activity = true    # the kernel's own allocations (default: on for x86_64)

    [[devices]]               # virtio-mem-pci devices, named vmem0, vmem1, ...
    region_size = "4G"        # the memory backend (max-size)
    block_size = "2M"         # optional: the host's THP size
    requested_size = "2G"     # at start (QEMU -device ...,requested-size=2G)

    [[dimms]]                 # optional pc-dimms: size, online
    [balloon]                 # optional virtio-balloon: compaction

    [[steps]]                 # the timeline, in order
    do = "resize"             # then the keys of that action (see ACTIONS)
    requested_size = "0"
    note = "the host asks for everything back"   # optional, printed
    settle = true             # optional: run until no work is left (default)
    [steps.expect]            # optional: checked by `run --check` and tests
    size = "338M"
    last_rc = "-EBUSY"
    # or a band for outcomes "in kind": min_size = "2M", max_size = "16M"

Kernel and QEMU names are kept: ``requested_size`` is QEMU's
``requested-size``, ``auto_online_blocks`` is
/sys/devices/system/memory/auto_online_blocks.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .activity import FILE_SYSTEMS, SPECS, round_pipe_size
from .checks import INT_MAX, MAX_SECONDS, check_number
from .constants import GEOMETRIES, errname, geometry, parse_size
from .memblock import ACPI_MAX_RAM_SLOTS, Q35_MAX_CPUS
from .memory_hotplug import ONLINE_TYPES
from .profiles import PROFILES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

Path_ = tuple[str | int, ...]


class ScenarioError(ValueError):
    """A scenario file that cannot be used: says where (file, line, key) and what is expected."""

    def __init__(self, source: str, key: str, problem: str, line: int | None = None) -> None:
        self.source, self.key, self.problem, self.line = source, key, problem, line
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")


class _Bad(ValueError):
    """A value that does not fit its key; the loader adds where it is."""


# ------------------------------------------------------------------ values
REQUIRED = object()


@dataclass(frozen=True)
class Key:
    """One key of a table: how to check its value, and its default."""

    check: Callable[[Any], Any]
    default: Any = REQUIRED
    help: str = ""


def size(value: Any) -> int:
    """A size in bytes: 4096, "64k", "512M", "2G" (binary units)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _Bad(f"expected a size like 512M, 2G or a number of bytes, got {value!r}")
    try:
        return parse_size(value)
    except ValueError:
        raise _Bad(f"expected a size like 512M, 2G or a number of bytes, got {value!r}") from None


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"expected true or false, got {value!r}")
    return value


def text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad(f"expected a non-empty string, got {value!r}")
    return value


def integer(lo: int = 0, hi: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < lo or \
                (hi is not None and value > hi):
            span = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise _Bad(f"expected a whole number {span}, got {value!r}")
        return value
    return check


def number(lo: float = 0.0, hi: float | None = None, open_lo: bool = False,
           unit: str = "") -> Callable[[Any], float]:
    """A finite number in [lo, hi] ((lo, hi] with ``open_lo``): never inf or nan."""
    def check(value: Any) -> float:
        try:
            return check_number("value", value, lo, hi, open_lo)
        except ValueError:
            left = "(" if open_lo else "["
            span = (f"in {left}{lo:g}, {hi:g}]" if hi is not None else
                    f"> {lo:g}" if open_lo else f">= {lo:g}")
            raise _Bad(f"expected a finite number {span}{unit}, got {value!r}") from None
    return check


def seconds(positive: bool = False) -> Callable[[Any], float]:
    """Simulated seconds, finite, at most what one call may simulate (MAX_SECONDS)."""
    return number(0.0, MAX_SECONDS, open_lo=positive, unit=" seconds")


def choice(*options: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if isinstance(value, float) and str(value) in options:    # kernel = 5.8 unquoted
            return str(value)
        if value not in options:
            raise _Bad(f"expected one of {', '.join(map(repr, options))}, got {value!r}")
        return value
    return check


def rc_name(value: Any) -> int:
    """A return code as the kernel spells it: "0", "-EBUSY", or a number."""
    names = {errname(-e): -e for e in range(0, 64) if errname(-e).startswith("-E")} | {"0": 0}
    if isinstance(value, int) and not isinstance(value, bool) and value <= 0:
        return value
    if isinstance(value, str) and value in names:
        return names[value]
    raise _Bad(f"expected a return code like \"0\", \"-EBUSY\" or \"-ENOMEM\", got {value!r}")


def mix(value: Any) -> dict[str, float]:
    keys = ("movable", "unmovable", "reclaimable")
    if not isinstance(value, dict) or not value or set(value) - set(keys) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
            for v in value.values()) or sum(value.values()) <= 0:
        raise _Bad(f"expected a table of shares among {', '.join(keys)}, e.g. "
                   f"{{ movable = 0.7, unmovable = 0.3 }}, got {value!r}")
    return {k: float(v) for k, v in value.items()}


def _raw(value: Any) -> Any:
    """A table or array, checked key by key later."""
    return value


def device_ref(value: Any) -> str | int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and re.fullmatch(r"vmem\d+", value):
        return value
    raise _Bad(f"expected a device name like \"vmem0\" or its index 0, got {value!r}")


# ------------------------------------------------------------------ tables
ONLINE_POLICIES = ("contig-zones", "auto-movable")
MAX_CHURN_OPS = 1_000_000      # one churn step; a bigger one would not end in reasonable time
KINDS = tuple(SPECS)
BACKGROUND_KINDS = tuple(k for k in SPECS if k not in ("files", "pin"))

MACHINE_KEYS = {
    "boot_memory": Key(size, 2 << 30, "QEMU -m"),
    "kernel": Key(choice(*PROFILES), "6.12", "kernel profile"),
    "online_policy": Key(choice(*ONLINE_POLICIES), "contig-zones",
                         "memory_hotplug.online_policy"),
    "auto_online_blocks": Key(choice(*ONLINE_TYPES), "online",
                              "/sys/devices/system/memory/auto_online_blocks"),
    "auto_movable_ratio": Key(integer(0, 2**32 - 1), 301, "memory_hotplug.auto_movable_ratio"),
    "seed": Key(integer(0), 0, "seeds the machine's random generator"),
    "geometry": Key(choice(*GEOMETRIES), "x86_64", "x86_64 (a q35 guest) or teaching"),
    "min_free_kbytes": Key(integer(0, INT_MAX), None, "vm.min_free_kbytes (default: computed)"),
    "kernel_activity": Key(boolean, None, "the kernel's allocations after boot (default: "
                                          "on for x86_64, off for teaching)"),
    "cpus": Key(integer(1, Q35_MAX_CPUS), 2, "QEMU -smp"),
    "maxmem": Key(size, None, "QEMU -m ...,maxmem= (default: sized for the devices)"),
    "slots": Key(integer(0, ACPI_MAX_RAM_SLOTS), None, "QEMU -m ...,slots="),
}
DEVICE_KEYS = {
    "region_size": Key(size, help="memory backend size (max-size)"),
    "block_size": Key(size, None, "device block size (default: the THP size)"),
    "requested_size": Key(size, 0, "requested-size at start"),
    "prealloc": Key(boolean, False, "populate plugged blocks on the host"),
    "host_memory": Key(size, None, "with prealloc: host memory; more is BUSY"),
}
DIMM_KEYS = {"size": Key(size, help="pc-dimm size"),
             "online": Key(boolean, True, "online per auto_online_blocks")}
BALLOON_KEYS = {"compaction": Key(boolean, True, "balloon compaction (movable pages)")}
EXPECT_KEYS = {
    "device": Key(device_ref, None, "which device (default: the step's, or the only one)"),
    "size": Key(size, None, "plugged size (QEMU 'size')"),
    "min_size": Key(size, None, "plugged size at least this"),
    "max_size": Key(size, None, "plugged size at most this"),
    "requested_size": Key(size, None, "requested-size"),
    "last_rc": Key(rc_name, None, "the driver's last run_wq result"),
    "broken": Key(boolean, None, "the driver marked the device broken"),
    "retry_timer": Key(boolean, None, "a retry timer is armed"),
    "converged": Key(boolean, None, "plugged == requested and the last pass returned 0"),
    "passes": Key(integer(0), None, "driver passes (run_wq) during this step"),
}
_DEVICE = Key(device_ref, None, "device name or index (default: the only device)")
_NAME = Key(text, None, "activity name (default: the kind)")
_PIPE_SIZE = Key(size, None, "pipes: buffer size (F_SETPIPE_SZ), at most 1M")
_OOM_ADJ = Key(integer(-1000, 1000), 0, "processes (anon, pin, pipes): oom_score_adj")
ACTIONS: dict[str, dict[str, Key]] = {
    "resize": {"device": _DEVICE,
               "requested_size": Key(size, help="qom-set vmemN requested-size")},
    "settle": {"limit": Key(seconds(positive=True), 3600.0, "simulated seconds at most")},
    "wait": {"seconds": Key(seconds(), help="simulated seconds to run")},
    "reboot": {},
    "fill": {"fraction": Key(number(0, 1), help="fill until this share is in use"),
             "mix": Key(mix, None, "shares of movable/unmovable/reclaimable"),
             "chunk": Key(size, "2M", "mean chunk size")},
    "activity": {"kind": Key(choice(*KINDS), help="what holds the memory"),
                 "size": Key(size, None, "bytes (page-based kinds)"),
                 "count": Key(integer(0, INT_MAX), None, "files, or full pipes"),
                 "name": _NAME, "pipe_size": _PIPE_SIZE, "oom_score_adj": _OOM_ADJ,
                 "fs": Key(choice(*FILE_SYSTEMS), "tmpfs", "files: the filesystem")},
    "start": {"kind": Key(choice(*BACKGROUND_KINDS), help="what keeps allocating"),
              "rate": Key(size, help="bytes per second"),
              "interval": Key(seconds(positive=True), 1.0, "tick"),
              "limit": Key(size, None, "stop after this many bytes"),
              "release_fraction": Key(number(0, 1), 0.0, "share freed each tick (churn)"),
              "repeat": Key(boolean, False, "free all at limit and start over (stress --vm)"),
              "name": _NAME, "pipe_size": _PIPE_SIZE, "oom_score_adj": _OOM_ADJ},
    "drop_caches": {"value": Key(integer(1, 4), 3,
                                 "echo VALUE > /proc/sys/vm/drop_caches (1, 2, 3)")},
    "stop": {"name": Key(text, help="a background activity")},
    "release": {"name": Key(text, help="an activity"),
                "fraction": Key(number(0, 1), 1.0, "share to free")},
    "churn": {"ops": Key(integer(1, MAX_CHURN_OPS), help="random allocations"),
              "max_order": Key(integer(0, 10), 3, "largest order"),
              "lifetime": Key(number(0, open_lo=True), 50.0, "mean lifetime in ops"),
              "mix": Key(mix, None, "shares of movable/unmovable/reclaimable")},
    "online": {"device": _DEVICE,
               "count": Key(integer(1, INT_MAX), None, "how many offline blocks (default all)"),
               "online_type": Key(choice(*ONLINE_TYPES[1:]), "online", "what to echo")},
    "migration": {"busy": Key(boolean, help="live migration running: the device is BUSY")},
    "shrink_usable_region": {"device": _DEVICE},
    "balloon": {"size": Key(size, help="QEMU 'balloon': the guest's memory target")},
}
TOP_KEYS = {"title": Key(text, "", "printed with the results"),
            "machine": Key(_raw, {}), "devices": Key(_raw, []), "dimms": Key(_raw, []),
            "balloon": Key(_raw, None), "steps": Key(_raw, [])}
COMMON_STEP_KEYS = {"do": Key(choice(*ACTIONS)), "note": Key(text, "", "printed with the step"),
                    "settle": Key(boolean, True, "run until no work is left afterwards"),
                    "expect": Key(dict, None, "expected state after the step")}
ACTION_HELP = {
    "resize": "set a device's requested-size (qom-set)",
    "settle": "run until the guest has nothing left to do now",
    "wait": "let simulated time pass (timers, retries, background activity)",
    "reboot": "system reset: QEMU unplugs everything, the guest boots again",
    "fill": "fill memory to a fraction (vmemlab.workload.fill)",
    "activity": "a named guest activity holds memory (anon, files, slab, pin, ...)",
    "start": "a background activity allocating at a rate",
    "stop": "stop a background activity (it keeps its memory)",
    "release": "free all or a fraction of an activity's memory",
    "churn": "random allocations and frees (vmemlab.workload.churn)",
    "online": "echo online > memoryN/state for a device's offline blocks",
    "migration": "the host starts (busy = true) or ends live migration",
    "shrink_usable_region": "a buggy host cuts the usable region to what is plugged",
    "balloon": "set the virtio-balloon target (QEMU 'balloon SIZE')",
    "drop_caches": "drop clean page cache (1), dentries and inodes (2) or both (3)",
}


# --------------------------------------------------------------- dataclasses
@dataclass(frozen=True)
class MachineSpec:
    boot_memory: int
    kernel: str
    online_policy: str
    auto_online_blocks: str
    auto_movable_ratio: int
    seed: int
    geometry: str
    min_free_kbytes: int | None
    kernel_activity: bool | None
    cpus: int
    maxmem: int | None
    slots: int | None


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    region_size: int
    block_size: int | None
    requested_size: int
    prealloc: bool
    host_memory: int | None


@dataclass(frozen=True)
class DimmSpec:
    size: int
    online: bool


@dataclass(frozen=True)
class Expect:
    """What should hold after a step; None means "not checked"."""

    device: str
    size: int | None = None
    min_size: int | None = None
    max_size: int | None = None
    requested_size: int | None = None
    last_rc: int | None = None
    broken: bool | None = None
    retry_timer: bool | None = None
    converged: bool | None = None
    passes: int | None = None
    line: int | None = None


@dataclass(frozen=True)
class Step:
    """One timeline entry: the action ``do`` and its checked arguments."""

    index: int
    do: str
    args: dict[str, Any]
    note: str = ""
    settle: bool = True
    expect: Expect | None = None
    line: int | None = None


@dataclass(frozen=True)
class Scenario:
    source: str
    title: str
    machine: MachineSpec
    devices: tuple[DeviceSpec, ...]
    dimms: tuple[DimmSpec, ...]
    balloon: bool | None          # None: no balloon; else its compaction setting
    steps: tuple[Step, ...]
    overrides: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------ loading
def load_scenario(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Scenario:
    """Read and check a scenario file; ``overrides`` maps "devices.0.requested_size" to values."""
    source = str(path)
    try:
        data = Path(path).read_text(encoding="utf-8-sig")     # a BOM is allowed
    except OSError as e:
        raise ScenarioError(source, "", f"cannot read the file: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ScenarioError(source, "", f"not UTF-8 text: {e.reason}") from None
    return parse_scenario(data, source, overrides)


def parse_scenario(data: str, source: str = "<scenario>",
                   overrides: Mapping[str, Any] | None = None) -> Scenario:
    """Check the text of a scenario file (see the module docstring for the format)."""
    if not isinstance(data, str):
        raise ScenarioError(source, "", f"expected the text of a TOML file, got {type(data)}")
    data = data.removeprefix("\ufeff")          # a byte order mark is not TOML, but harmless
    try:
        doc = tomllib.loads(data)
    except RecursionError:
        raise ScenarioError(source, "", "not usable TOML: tables or arrays nested too deeply "
                                        "for the parser") from None
    except tomllib.TOMLDecodeError as e:
        line = re.search(r"line (\d+)", str(e))
        raise ScenarioError(source, "", f"not valid TOML: {e}",
                            int(line[1]) if line else None) from None
    loader = _Loader(source, _line_index(data), set(overrides or ()))
    for key, value in (overrides or {}).items():
        _override(doc, key, value, loader)
    scenario = loader.scenario(doc)
    return dataclasses.replace(scenario, overrides=dict(overrides or {}))


def parse_override(text_: str) -> tuple[str, list[Any]]:
    """Split "devices.0.requested_size=1G,2G" into its key and values (TOML scalars or text)."""
    key, sep, values = text_.partition("=")
    if not sep or not key.strip() or not values.strip():
        raise ValueError(f"{text_!r} is not KEY=VALUE[,VALUE...], e.g. "
                         "devices.0.requested_size=1G,2G")
    return key.strip(), [_scalar(v.strip()) for v in values.split(",")]


def _scalar(value: str) -> Any:
    """A TOML scalar (3, 0.5, true, "x") or else the text itself (1G, online_movable)."""
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value
    return parsed if isinstance(parsed, (int, float, bool, str)) else value


def _override(doc: dict, key: str, value: Any, loader: _Loader) -> None:
    """Set doc[a][0][b] = value for key "a.0.b"; the path must exist up to the last key."""
    parts = [int(p) if p.isdigit() else p for p in key.split(".")]
    node: Any = doc
    for i, part in enumerate(parts[:-1]):
        ok = (isinstance(node, list) and isinstance(part, int) and part < len(node)) or \
             (isinstance(node, dict) and isinstance(part, str))
        if not ok:
            raise ScenarioError(loader.source, key, "no such table or array entry in the "
                                f"file (at {'.'.join(map(str, parts[:i + 1]))!r})")
        if isinstance(node, dict):
            node = node.setdefault(part, {})
        else:
            node = node[part]
    if not isinstance(node, dict) or isinstance(parts[-1], int):
        raise ScenarioError(loader.source, key, "does not name a key of a table")
    node[parts[-1]] = value


class _Loader:
    """Checks each table of a parsed document, knowing where each key stands."""

    def __init__(self, source: str, lines: dict[Path_, int], overridden: set[str]) -> None:
        self.source, self.lines, self.overridden = source, lines, overridden
        self.geometry_name = "x86_64"

    def error(self, path: Path_, problem: str) -> ScenarioError:
        key = _spell(path)
        dotted = ".".join(map(str, path))
        if dotted in self.overridden:
            return ScenarioError(self.source, key, problem + " (set by --param)")
        return ScenarioError(self.source, key, problem, _find_line(self.lines, path))

    def table(self, raw: Any, keys: Mapping[str, Key], path: Path_) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise self.error(path, f"expected a table, got {raw!r}")
        for k in raw:
            if k not in keys:
                raise self.error((*path, k), "unknown key; expected one of "
                                             + ", ".join(keys))
        out = {}
        for k, spec in keys.items():
            if k not in raw:
                if spec.default is REQUIRED:
                    raise self.error(path, f"missing key {k!r} ({spec.help})" if spec.help
                                     else f"missing key {k!r}")
                out[k] = spec.default
                continue
            try:
                out[k] = spec.check(raw[k])
            except _Bad as e:
                raise self.error((*path, k), str(e)) from None
        return out

    def array(self, doc: dict, name: str) -> list[Any]:
        raw = doc[name]
        if not isinstance(raw, list):
            raise self.error((name,), f"expected an array of tables ([[{name}]]), got {raw!r}")
        return raw

    def scenario(self, doc: dict) -> Scenario:
        top = self.table(doc, TOP_KEYS, ())
        devices_, dimms_, steps_ = (self.array(top, k) for k in ("devices", "dimms", "steps"))
        machine = MachineSpec(**self.table(top["machine"], MACHINE_KEYS, ("machine",)))
        self.geometry_name = machine.geometry
        devices = tuple(self.device(raw, i) for i, raw in enumerate(devices_))
        dimms = tuple(DimmSpec(**self.table(raw, DIMM_KEYS, ("dimms", i)))
                      for i, raw in enumerate(dimms_))
        balloon = None
        if top["balloon"] is not None:
            balloon = self.table(top["balloon"], BALLOON_KEYS, ("balloon",))["compaction"]
        steps = tuple(self.step(raw, i, devices, balloon is not None)
                      for i, raw in enumerate(steps_))
        self.check_names(steps)
        return Scenario(self.source, top["title"], machine, devices, dimms, balloon, steps)

    def device(self, raw: Any, i: int) -> DeviceSpec:
        d = self.table(raw, DEVICE_KEYS, ("devices", i))
        block = d["block_size"] or default_block_size(self.geometry_name)
        for key in ("region_size", "requested_size"):
            if d[key] % block:
                raise self.error(("devices", i, key), f"{d[key]} bytes is not a multiple of "
                                                      f"the block size ({block} bytes)")
        if d["requested_size"] > d["region_size"]:
            raise self.error(("devices", i, "requested_size"),
                             "cannot exceed region_size (the memory backend)")
        return DeviceSpec(f"vmem{i}", **d)

    def step(self, raw: Any, i: int, devices: tuple[DeviceSpec, ...], balloon: bool) -> Step:
        path: Path_ = ("steps", i)
        if not isinstance(raw, dict) or "do" not in raw:
            raise self.error(path, "each [[steps]] needs do = one of " + ", ".join(ACTIONS))
        common = self.table({k: v for k, v in raw.items() if k in COMMON_STEP_KEYS},
                            COMMON_STEP_KEYS, path)
        do = common["do"]
        args = self.table({k: v for k, v in raw.items() if k not in COMMON_STEP_KEYS},
                          ACTIONS[do], path)
        if "device" in args:
            args["device"] = self.resolve_device(args["device"], devices, (*path, "device"))
        self.check_action(do, args, path, devices, balloon)
        expect = None
        if common["expect"] is not None:
            expect = self.expect(common["expect"], (*path, "expect"), args.get("device"), devices)
        return Step(i, do, args, common["note"], common["settle"], expect,
                    _find_line(self.lines, path))

    def resolve_device(self, ref: str | int | None, devices: tuple[DeviceSpec, ...],
                       path: Path_) -> str:
        names = [d.name for d in devices]
        if ref is None:
            if len(names) != 1:
                raise self.error(path[:-1], f"key 'device' is needed: the scenario has "
                                            f"{len(names)} virtio-mem devices "
                                            f"({', '.join(names) or 'none'})")
            return names[0]
        name = f"vmem{ref}" if isinstance(ref, int) else ref
        if name not in names:
            raise self.error(path, f"no such device {ref!r}; the scenario has "
                                   f"{', '.join(names) or 'no virtio-mem devices'}")
        return name

    def check_action(self, do: str, args: dict[str, Any], path: Path_,
                     devices: tuple[DeviceSpec, ...], balloon: bool) -> None:
        if do == "resize":
            dev = next(d for d in devices if d.name == args["device"])
            block = dev.block_size or default_block_size(self.geometry_name)
            req = args["requested_size"]
            if req % block or req > dev.region_size:
                raise self.error((*path, "requested_size"),
                                 f"{req} bytes must be a multiple of {dev.name}'s block size "
                                 f"({block} bytes) and at most its region_size "
                                 f"({dev.region_size} bytes)")
        elif do == "activity":
            self.check_activity(args, path)
            self.check_process(args, path)
        elif do == "start":
            self.check_process(args, path)
            if args["repeat"] and args["limit"] is None:
                raise self.error((*path, "repeat"), "repeat needs a limit (bytes per round)")
        elif do == "balloon" and not balloon:
            raise self.error(path, "a balloon step needs a [balloon] table (the device)")

    def check_activity(self, args: dict[str, Any], path: Path_) -> None:
        kind, has_size, has_count = args["kind"], args["size"] is not None, \
            args["count"] is not None
        if kind == "files" and (has_size or not has_count):
            raise self.error(path, "kind 'files' takes count (the number of files), not size")
        if kind == "pipes" and has_size == has_count:
            raise self.error(path, "kind 'pipes' takes size or count (full 64 KiB pipes)")
        if kind not in ("files", "pipes") and (has_count or not has_size):
            raise self.error(path, f"kind {kind!r} takes size (bytes), not count")

    def check_process(self, args: dict[str, Any], path: Path_) -> None:
        """pipe_size fits pipes only (and pipe-max-size); oom_score_adj processes only."""
        kind = args["kind"]
        if args["pipe_size"] is not None:
            if kind != "pipes":
                raise self.error((*path, "pipe_size"), f"pipe_size is for pipes, not {kind}")
            try:
                round_pipe_size(args["pipe_size"])
            except ValueError as e:
                raise self.error((*path, "pipe_size"), str(e)) from None
        if args["oom_score_adj"] and not SPECS[kind].process:
            raise self.error((*path, "oom_score_adj"), f"{kind} is not a process; "
                             "oom_score_adj is for anon, pin and pipes")
        if args.get("fs", "tmpfs") != "tmpfs" and kind != "files":
            raise self.error((*path, "fs"), f"fs is for files, not {kind}")

    def expect(self, raw: Any, path: Path_, step_device: str | None,
               devices: tuple[DeviceSpec, ...]) -> Expect:
        e = self.table(raw, EXPECT_KEYS, path)
        ref = e.pop("device")
        name = step_device if ref is None and step_device else \
            self.resolve_device(ref, devices, (*path, "device"))
        return Expect(name, **e, line=_find_line(self.lines, path))

    def check_names(self, steps: tuple[Step, ...]) -> None:
        """release/stop must name an activity started earlier in the same boot."""
        alive: set[str] = set()
        for s in steps:
            if s.do == "reboot":
                alive.clear()
            elif s.do in ("activity", "start"):
                alive.add(s.args["name"] or s.args["kind"])
            elif s.do == "fill":
                alive |= {f"fill ({c})" for c in (s.args["mix"] or
                                                  ("movable", "unmovable", "reclaimable"))}
            elif s.do in ("release", "stop") and s.args["name"] not in alive:
                raise self.error(("steps", s.index, "name"),
                                 f"no activity {s.args['name']!r} runs at this point; "
                                 f"names so far: {', '.join(sorted(alive)) or 'none'}")



def default_block_size(geometry_name: str) -> int:
    """QEMU's default block size: the host THP size (one pageblock on the teaching geometry)."""
    geo = geometry(geometry_name)
    return geo.page_size << geo.pageblock_order


# ------------------------------------------------------------ finding lines
_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\- ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+(?:\s*\.\s*[A-Za-z0-9_\-]+)*)\s*=")


def _line_index(data: str) -> dict[Path_, int]:
    """Where each table header and key first appears: {("steps", 2, "size"): 17, ...}."""
    lines: dict[Path_, int] = {}
    counts: dict[str, int] = {}
    current: Path_ = ()
    for n, line in enumerate(data.splitlines(), 1):
        if m := _HEADER.match(line):
            parts = [p.strip() for p in m[2].split(".")]
            if m[1] == "[[":
                counts[m[2]] = counts.get(m[2], -1) + 1
                current = (*parts, counts[m[2]])
            else:
                head = parts[0]
                current = ((head, counts[head], *parts[1:]) if head in counts and
                           len(parts) > 1 else tuple(parts))
            lines.setdefault(current, n)
        elif m := _KEY.match(line):
            lines.setdefault((*current, *(p.strip() for p in m[1].split("."))), n)
    return lines


def _find_line(lines: dict[Path_, int], path: Path_) -> int | None:
    """The line of ``path``, or of the nearest enclosing key or table that has one."""
    for end in range(len(path), 0, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def _spell(path: Path_) -> str:
    """("steps", 2, "size") -> "steps[2].size"."""
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out
