"""Exercises of notebook 07, the Linux virtio-mem driver (plug and unplug from inside).

The notebook's guests are q35 machines with 2 GiB of RAM and a virtio-mem
device behind it (1 GiB unless said otherwise): the device's memory starts at
4 GiB, memory block 32, and is cut into 2 MiB device blocks, which are also
the driver's subblocks (64 per 128 MiB memory block).  Each scenario the
notebook shows is built here by a function, with the same calls in the same
order, and every answer and explanation comes from running it.

Also here: the small text views the notebook prints (``driver_facts``,
``requests``, ``block_states``, ``rc_table``, ``pass_times``) and the
scenarios of its later sections (``stuck``, ``race``, ``app_machine``).

Kernel: drivers/virtio/virtio_mem.c (virtio_mem_run_wq(),
virtio_mem_sbm_plug_request(), virtio_mem_sbm_unplug_request(),
virtio_mem_fake_offline(), virtio_mem_timer_expired())
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

import vmemlab as vm
from vmemlab.constants import GiB, MiB, errname, format_size
from vmemlab.virtio_mem_driver import (
    RUN_WQ_ACTIONS,
    VIRTIO_MEM_RETRY_TIMER_MAX_MS,
    VIRTIO_MEM_RETRY_TIMER_MIN_MS,
)
from vmemlab.viz.vmemseries import PlugRecorder, VmemSeries

from . import Case, FunctionExercise, ValueExercise
from .answers import whole_number

BOOT_MEMORY = 2 * GiB
REGION_SIZE = 1 * GiB
AUTO_ONLINE = "/sys/devices/system/memory/auto_online_blocks"
REQUEST_TYPES = ("PLUG", "UNPLUG", "UNPLUG_ALL", "STATE")


# -- machines and views -------------------------------------------------------
def machine(requested: int | str = 0, region: int | str = REGION_SIZE, trace: bool = True,
            **kw: Any) -> tuple[vm.Machine, Any]:
    """A 2 GiB guest with a virtio-mem device (1 GiB region), settled at ``requested``."""
    m = vm.Machine(boot_memory=BOOT_MEMORY, seed=0, trace=trace, **kw)
    dev = m.add_virtio_mem(region_size=region, requested_size=requested)
    m.settle()
    return m, dev


def fresh_machine() -> vm.Machine:
    """The notebook's guest (2 GiB, a 1 GiB device ``m.virtio_mem[0]``), nothing requested."""
    return machine()[0]


def mb_id(m: vm.Machine, addr: int) -> int:
    """The Linux memory block holding guest-physical ``addr``."""
    return addr // m.geometry.memory_block_size


def driver_facts(dev: Any) -> str:
    """What the driver decided at probe: mode, subblocks, its first block, its limits."""
    drv, mode = dev.driver, dev.driver.mode
    m = drv.m
    unit = "subblock" if mode.name == "SBM" else "big block"
    per = (f"{mode.sbs_per_mb} subblocks per {format_size(mode.mb_size)} memory block"
           if mode.name == "SBM" else f"{format_size(mode.bb_size)} per big block")
    first = mode.first_mb_id if mode.name == "SBM" else mode.first_bb_id
    return (f"mode: {mode.name} ({'Sub' if mode.name == 'SBM' else 'Big'} Block Mode)\n"
            f"device block: {format_size(drv.device_block_size)}, {unit}: "
            f"{format_size(mode.sb_size if mode.name == 'SBM' else mode.bb_size)} ({per})\n"
            f"region: {format_size(drv.region_size)} at {drv.addr:#x} = memory block "
            f"{mb_id(m, drv.addr)} onwards"
            + ("\n" if mode.name == "SBM" else f" (big block ids from {first})\n")
            + f"offline threshold: {format_size(drv.offline_threshold)}\n"
            f"memory group: {drv.group.name if drv.group else 'none'} "
            f"({'dynamic' if drv.group and drv.group.dynamic else 'static'}, unit "
            f"{format_size(drv.mode.unit_size)})\n")


def requests(m: vm.Machine, kinds: tuple[str, ...] = ("plug", "unplug", "unplug_all"),
             compact: bool = True) -> str:
    """The requests in the trace, one line each, with QEMU's answer and where they went.

    With ``compact``, a run of one-subblock requests walking through one
    memory block is one line ("10 requests, one subblock each, 9 down to 0").
    """
    mb = m.geometry.memory_block_size
    block = m.virtio_mem[0].block_size
    rows: list[list[Any]] = []         # [kind, addr, nb_blocks, answer]
    for e in m.trace.events():
        kind = e.name.removeprefix("virtio_mem_").removesuffix("_request")
        if e.name.endswith("_request") and kind in kinds:
            rows.append([kind.upper(), getattr(e, "addr", 0), getattr(e, "nb_blocks", 0), ""])
        elif e.name == "virtio_mem_send_response" and rows and not rows[-1][3]:
            rows[-1][3] = str(e).split("(", 1)[-1].rstrip(")")
    lines: list[str] = []
    i = 0
    while i < len(rows):
        kind, addr, nb, answer = rows[i]
        if kind == "UNPLUG_ALL":
            lines.append(f"UNPLUG_ALL -> {answer}")
            i += 1
            continue
        size, first = nb * block, addr // mb
        j = i + 1
        if compact and nb == 1 and size < mb:
            while (j < len(rows) and rows[j][:1] == [kind] and rows[j][2] == 1
                   and rows[j][1] // mb == first and rows[j][3] == answer
                   and abs(rows[j][1] - rows[j - 1][1]) == block):
                j += 1
        if j - i > 1:
            a, b = (addr % mb) // block, (rows[j - 1][1] % mb) // block
            lines.append(f"{kind:6} x{j - i:<3} memory{first}: one subblock per request, "
                         f"{a} {'down' if b < a else 'up'} to {b} -> {answer}")
        elif size >= mb:
            lines.append(f"{kind:6} addr={addr:#x} nb_blocks={nb:<3} "
                         f"memory{first}-{(addr + size) // mb - 1} -> {answer}"
                         if size > mb else
                         f"{kind:6} addr={addr:#x} nb_blocks={nb:<3} memory{first} "
                         f"(whole) -> {answer}")
        else:
            sb = (addr % mb) // block
            lines.append(f"{kind:6} addr={addr:#x} nb_blocks={nb:<3} memory{first} "
                         f"subblocks {sb}-{sb + nb - 1} -> {answer}")
        i = j
    return "\n".join(lines) + "\n" if lines else "(no requests)\n"


def request_list(m: vm.Machine) -> list[tuple[str, int]]:
    """(type, nb_blocks) of every PLUG/UNPLUG/UNPLUG_ALL in the trace."""
    out = []
    for e in m.trace.events():
        if e.name in ("virtio_mem_plug_request", "virtio_mem_unplug_request"):
            out.append((e.name.split("_")[2].upper(), int(e.nb_blocks)))
        elif e.name == "virtio_mem_unplug_all_request":
            out.append(("UNPLUG_ALL", 0))
    return out


def block_states(dev: Any) -> str:
    """Each memory block the driver has used: its state and plugged subblocks."""
    view = dev.driver.view()
    first = view.first_unit_pfn // view.unit_pages
    lines = []
    for i, state in enumerate(view.mb_states):
        if state != "UNUSED":
            n = int(np.count_nonzero(view.sb_plugged[i]))
            lines.append(f"memory{first + i}: {state:<16} {n:>2}/{view.sb_plugged.shape[1]} "
                         "subblocks plugged")
    return "\n".join(lines) + "\n" if lines else "(no memory block in use)\n"


def rc_table() -> str:
    """run_wq's return codes and what the driver does next (RUN_WQ_ACTIONS)."""
    rows = [f"{errname(rc):>9}  {what}" for rc, what in RUN_WQ_ACTIONS.items()]
    rows.append(f"{'other':>9}  give up: \"unknown error, marking device broken\"")
    return "\n".join(rows) + "\n"


def vmstat(m: vm.Machine, *fields: str) -> str:
    """Some lines of /proc/vmstat."""
    rows = dict(line.split() for line in m.proc.vmstat().splitlines())
    return "  ".join(f"{f} {rows[f]}" for f in fields)


def meminfo(m: vm.Machine, *fields: str) -> str:
    rows = dict(m.proc.meminfo_rows())
    return "  ".join(f"{f}: {rows[f]} kB" for f in fields)


# -- 07.probe_requests ----------------------------------------------------------
def busy_reboot() -> tuple[vm.Machine, Any]:
    """128 MiB plugged, then a reboot while a migration keeps the device busy.

    The device keeps its blocks through the reset; the new driver finds
    plugged_size != 0 at probe.  The migration ends before the guest runs.
    """
    m, dev = machine(128 * MiB)
    dev.migrating = True
    m.reboot()
    dev.migrating = False
    m.trace.clear()
    return m, dev


def _probe_requests() -> tuple[str, ...]:
    m, _ = busy_reboot()
    m.settle()
    return tuple(kind for kind, _ in request_list(m))


def _accept_kinds(x: Any) -> tuple[str, ...]:
    if isinstance(x, str) or not isinstance(x, (list, tuple)):
        raise TypeError('give a list of request types, e.g. ["PLUG", "UNPLUG"]')
    out = tuple(str(k).upper().replace("-", "_") for k in x)
    bad = [k for k in out if k not in REQUEST_TYPES]
    if bad:
        raise ValueError(f"{bad} are not request types; they are {list(REQUEST_TYPES)}")
    return out


def _explain_probe(kinds: tuple[str, ...]) -> str:
    m, _ = busy_reboot()
    m.settle()
    msgs = [line.split("] ", 1)[1] for line in m.dmesg().splitlines()
            if "virtio_mem" in line][-5:]
    return (f"The new driver read plugged_size = 128 MiB at probe and set unplug_all_required "
            f"(\"unplugging all memory is required\"): it cannot know which blocks the old "
            f"kernel used, so its first pass sends UNPLUG_ALL, re-reads the config, and then "
            f"plugs requested - plugged = 128 MiB again, one memory block in one PLUG: "
            f"{' -> '.join(kinds)}.  Its messages:\n  " + "\n  ".join(msgs))


probe_requests = ValueExercise(
    "07.probe_requests",
    "The guest rebooted while QEMU's device was busy, so 128 MiB stayed plugged; "
    "requested-size is 128 MiB. Which requests does the new driver send, in order?",
    _probe_requests, _explain_probe, _accept_kinds,
    hints={("PLUG",): "Nothing is plugged yet from the new driver's point of view, but the "
                      "device says plugged_size = 128 MiB: the driver does not trust blocks it "
                      "did not plug itself.",
           (): "plugged_size == requested_size, but the blocks were plugged by the old "
               "kernel: the driver starts from a clean slate (virtio_mem_probe()).",
           ("UNPLUG_ALL",): "After UNPLUG_ALL the plugged size is 0, below the 128 MiB "
                            "requested, and the same pass goes on to plug."})


# -- 07.grow_requests --------------------------------------------------------------
def grown() -> tuple[vm.Machine, Any]:
    """300 MiB plugged, the trace cleared, then qom-set 400M and settle."""
    m, dev = machine(300 * MiB)
    m.trace.clear()
    dev.requested_size = 400 * MiB
    m.settle()
    return m, dev


def _grow_requests() -> tuple[int, ...]:
    m, _ = grown()
    return tuple(nb for kind, nb in request_list(m) if kind == "PLUG")


def _accept_counts(x: Any) -> tuple[int, ...]:
    if isinstance(x, (int, str)) or not isinstance(x, (list, tuple)):
        raise TypeError("give a list of nb_blocks values, one per request, e.g. [64, 2]")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in x):
        raise ValueError("each nb_blocks is a positive whole number of 2 MiB blocks")
    return tuple(x)


def _explain_grow(nbs: tuple[int, ...]) -> str:
    m, _ = grown()
    return ("50 more blocks of 2 MiB.  virtio_mem_sbm_plug_request() first fills memory "
            "blocks that are already added and partly plugged (KERNEL_PARTIAL, then "
            "MOVABLE_PARTIAL, then OFFLINE_PARTIAL), from the first unplugged subblock up, "
            "one request per run of neighbours; then it takes a new memory block at the top "
            f"and plugs from its subblock 0:\n{requests(m, ('plug',))}"
            f"nb_blocks: {list(nbs)}")


grow_requests = ValueExercise(
    "07.grow_requests",
    "300 MiB are plugged (memory32 and memory33 whole, 22 subblocks of memory34). The host "
    "sets requested-size to 400M. List the nb_blocks of each PLUG request the driver sends.",
    _grow_requests, _explain_grow, _accept_counts,
    hints={(50,): "A request covers neighbouring blocks only; memory34 has 42 free "
                  "subblocks and the rest must come from a new memory block.",
           (8, 42): "Partly plugged blocks come first: a new memory block costs a memmap "
                    "and a sysfs device, filling memory34 costs nothing.",
           (64,): "The driver plugs what was asked for (100 MiB = 50 blocks), not whole "
                  "memory blocks."})


# -- 07.unplug_visits ----------------------------------------------------------------
def mixed_states() -> tuple[vm.Machine, Any]:
    """Memory blocks in five states: MOVABLE x2, KERNEL, OFFLINE, MOVABLE_PARTIAL.

    memory32-33 plugged with auto_online_blocks=online_movable, memory34
    with online (contig-zones: ZONE_NORMAL), memory35 and 10 subblocks of
    memory36 with offline, then memory36 onlined to ZONE_MOVABLE by hand.
    """
    m, dev = machine(0)
    mb = m.geometry.memory_block_size
    sb = dev.block_size
    for online, size in (("online_movable", 2 * mb), ("online", 3 * mb),
                         ("offline", 4 * mb + 10 * sb)):
        m.sysfs.write(AUTO_ONLINE, online)
        dev.requested_size = size
        m.settle()
    m.online_memory_block(36, "online_movable")
    m.sysfs.write(AUTO_ONLINE, "online")
    m.settle()
    m.trace.clear()
    return m, dev


UNPLUG_BY = 160 * 2 * MiB          # 07.unplug_visits: the host lowers the request by this


def _unplug_visits() -> tuple[int, ...]:
    m, dev = mixed_states()
    dev.requested_size = dev.requested_size - UNPLUG_BY
    m.settle()
    seen: list[int] = []
    for e in m.trace.events():
        if e.name == "virtio_mem_unplug_request":
            b = mb_id(m, e.addr)
            if b not in seen:
                seen.append(b)
    return tuple(seen)


def _accept_ids(x: Any) -> tuple[int, ...]:
    if isinstance(x, (int, str)) or not isinstance(x, (list, tuple)):
        raise TypeError("give a list of memory block numbers, e.g. [36, 35]")
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in x):
        raise ValueError("memory blocks are numbered: 32 to 39 here")
    if not all(32 <= n <= 39 for n in x):
        raise ValueError("this device's memory blocks are memory32 to memory39")
    return tuple(x)


def _explain_visits(ids: tuple[int, ...]) -> str:
    m, dev = mixed_states()
    order = m.profile.sbm_unplug_order
    dev.requested_size = dev.requested_size - UNPLUG_BY
    m.settle()
    return (f"virtio_mem_sbm_unplug_request() walks the states in this order: "
            f"{', '.join(order)}; within a state from the highest memory block down, and "
            "inside a block from the highest subblock down.  Offline memory costs nothing to "
            "unplug, partly plugged blocks are next so whole blocks can go, and ZONE_MOVABLE "
            "comes before the kernel zones because it can be emptied.  memory35 (OFFLINE, "
            "64), memory36 (MOVABLE_PARTIAL, 10), memory33 (MOVABLE, 64 in one request after "
            "one alloc_contig_range() over the whole block), then 22 subblocks of memory32, "
            f"one at a time from the top; memory34 (KERNEL) is untouched:\n"
            f"{requests(m, ('unplug',))}")


unplug_visits = ValueExercise(
    "07.unplug_visits",
    "The host lowers requested-size by 320 MiB (160 subblocks). List the memory blocks the "
    "driver unplugs subblocks from, in the order it first touches them.",
    _unplug_visits, _explain_visits, _accept_ids,
    hints={(36, 35, 34, 33): "Not simply from the top: the state decides first "
                             "(offline, then partly plugged, then ZONE_MOVABLE, then kernel "
                             "zones).",
           (36, 35, 33): "OFFLINE_PARTIAL comes before OFFLINE, but MOVABLE_PARTIAL comes "
                         "after OFFLINE: memory36 is online now.",
           (35, 36, 34): "Kernel-zone blocks come last: ZONE_MOVABLE is preferred because "
                         "its pages can always move.",
           (35, 36, 33, 34): "After memory33, 22 subblocks are still wanted, and the next "
                             "MOVABLE block (memory32) comes before any KERNEL block."})


# -- 07.memtotal_drop ------------------------------------------------------------------
def one_block() -> tuple[vm.Machine, Any]:
    """One memory block (128 MiB) plugged and online, nothing in it."""
    return machine(128 * MiB)


def _memtotal_drop() -> tuple[int, int]:
    m, dev = one_block()
    total, blocks = m.proc.meminfo_kb("MemTotal"), len(m.memory_blocks)
    dev.requested_size = 128 * MiB - 10 * dev.block_size
    m.settle()
    return total - m.proc.meminfo_kb("MemTotal"), blocks - len(m.memory_blocks)


def _accept_drop(x: Any) -> tuple[int, int]:
    if not isinstance(x, (list, tuple)) or len(x) != 2:
        raise TypeError("give two numbers: (kB MemTotal drops by, memory blocks removed)")
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in x):
        raise ValueError("both are whole numbers >= 0")
    return tuple(x)  # type: ignore[return-value]


def _explain_drop(ans: tuple[int, int]) -> str:
    return (f"virtio_mem_fake_offline() takes each subblock from the buddy allocator with "
            f"alloc_contig_range(), marks its pages PageOffline and calls "
            f"adjust_managed_page_count(-nr_pages): MemTotal drops by 10 x 2 MiB = {ans[0]} "
            f"kB at once.  The memory block stays ({ans[1]} removed): it still has 54 plugged "
            "subblocks, so it stays online, in state KERNEL_PARTIAL "
            "(VIRTIO_MEM_SBM_MB_KERNEL_PARTIAL), memmap and all.  "
            "Only when its last subblock goes does offline_and_remove_memory() take it away.")


memtotal_drop = ValueExercise(
    "07.memtotal_drop",
    "memory32 is plugged and online (128 MiB). The host lowers requested-size by 20 MiB "
    "(10 subblocks). By how many kB does MemTotal drop, and how many memory blocks leave "
    "/sys/devices/system/memory? Answer (kB, blocks).",
    _memtotal_drop, _explain_drop, _accept_drop,
    hints={(0, 0): "MemTotal counts managed pages; fake-offlining subtracts them at once, "
                   "before anything is removed.",
           (20480, 1): "A memory block is removed only when none of its subblocks is "
                       "plugged any more.",
           (131072, 1): "Subblocks, not memory blocks, are the unit of unplug in SBM."})


# -- 07.retry_times ---------------------------------------------------------------------
def stuck(seed: int = 1) -> tuple[vm.Machine, Any]:
    """Kernel memory in ZONE_NORMAL virtio-mem memory; the host asks for it all back.

    2 GiB guest, 2 GiB device onlined by contig-zones (ZONE_NORMAL: the
    guest's only Normal memory), then a workload with page tables, dentries
    and inodes, kmalloc memory; then requested-size 0.  The pass ends -EBUSY.
    """
    m = vm.Machine(boot_memory=BOOT_MEMORY, seed=seed, trace=True)
    dev = m.add_virtio_mem(region_size=2 * GiB, requested_size=2 * GiB)
    m.settle()
    m.activity("anon", size="512M")
    m.activity("files", count=100_000)
    m.activity("slab", size="64M")
    dev.requested_size = 0
    m.settle()
    return m, dev


def pass_times(m: vm.Machine, dev: Any, seconds: float,
               rec: PlugRecorder | None = None) -> list[tuple[float, int, int]]:
    """Run ``seconds``; (time, rc, next wait in s) of every pass of run_wq on the way.

    ``rec`` records the device's sizes after each pass and at the end.
    """
    drv = dev.driver
    end = m.now + seconds
    out = []
    while drv.timer_due is not None and drv.timer_due <= end:
        passes = drv.passes
        m.run(drv.timer_due - m.now)
        while drv.passes == passes:                   # the work item runs just after
            m.run(1e-3)
        m.settle()
        out.append((m.now, drv.last_rc, drv.retry_timer_ms // 1000))
        if rec is not None:
            rec.record(m)
    m.run(max(0.0, end - m.now))
    if rec is not None:
        rec.record(m)
    return out


def draw_passes(ax: Any, log: list[tuple[float, int, int]]) -> None:
    """Mark each pass of ``log`` (from ``pass_times``) with a dotted line, named in the legend."""
    for i, (t, _, _) in enumerate(log):
        ax.axvline(t, color="#555555", linewidth=1.0, linestyle=":",
                   label="a pass of run_wq" if i == 0 else None)
    ax.legend(fontsize="small", frameon=False)


def _retry_times() -> tuple[int, ...]:
    m, dev = stuck()
    t0 = m.now
    return tuple(int(round(t - t0)) for t, _, _ in pass_times(m, dev, 700))


def _accept_times(x: Any) -> tuple[int, ...]:
    if isinstance(x, (int, str)) or not isinstance(x, (list, tuple)):
        raise TypeError("give a list of times in seconds after the failed pass, e.g. [10, 20]")
    if not all(isinstance(n, (int, float)) and not isinstance(n, bool) and 0 < n <= 700
               for n in x):
        raise ValueError("each time is a number of seconds between 0 and 700")
    return tuple(int(round(n)) for n in x)


def _explain_retry(times: tuple[int, ...]) -> str:
    waits = [b - a for a, b in zip((0, *times), times, strict=False)]
    return (f"-EBUSY arms the retry timer (virtio_mem_run_wq()).  It starts at "
            f"VIRTIO_MEM_RETRY_TIMER_MIN_MS = {VIRTIO_MEM_RETRY_TIMER_MIN_MS // 1000} s and "
            f"virtio_mem_timer_expired() doubles it each time it fires, up to "
            f"VIRTIO_MEM_RETRY_TIMER_MAX_MS = {VIRTIO_MEM_RETRY_TIMER_MAX_MS // 1000} s; a pass "
            f"that succeeds resets it.  Waits {waits}, so passes at {list(times)} s.")


retry_times = ValueExercise(
    "07.retry_times",
    "The unplug pass just ended with -EBUSY and nothing in the guest changes. At which "
    "times (seconds after that pass) does run_wq run again during the next 700 s?",
    _retry_times, _explain_retry, _accept_times,
    hints={(50, 100, 150, 200, 250, 300, 350, 400, 450, 500, 550, 600, 650, 700):
           "The timer does not stay at 50 s: it doubles every time it fires.",
           (50, 150, 350): "After 200 s the wait stops doubling: 300 s is the cap, and "
                           "650 s is still within 700 s.",
           (50, 100, 200, 300): "These are the waits; the question asks for the times "
                                "(add them up)."})


def tiny_stuck() -> tuple[vm.Machine, Any]:
    """The same story on the teaching geometry (256 pages): kmalloc memory spills into
    the device's two plugged memory blocks, then the host asks for all of it back."""
    m = vm.Machine(boot_memory=256 * 4096, geometry="teaching", seed=0)
    dev = m.add_virtio_mem(region_size=8 * 64 * 4096, requested_size=2 * 64 * 4096)
    m.settle()
    m.activity("slab", size=300 * 4096)
    dev.requested_size = 0
    m.settle()
    return m, dev


@cache
def _backoff_cases() -> list[Case]:
    m, dev = tiny_stuck()
    t0, waits = m.now, []
    for t, _, _ in pass_times(m, dev, 2000):
        waits.append(int(round(t - t0)))
        t0 = t
    return [Case((n,), w) for n, w in enumerate(waits, start=1)]


backoff = FunctionExercise(
    "07.backoff",
    "Write backoff(n): the seconds the driver waits before its n-th retry (n = 1, 2, ...) "
    "when every pass fails with -EBUSY.",
    "backoff", _backoff_cases,
    lambda case: ("The timer starts at 50 s (VIRTIO_MEM_RETRY_TIMER_MIN_MS), doubles each "
                  "time it fires and never exceeds 300 s (VIRTIO_MEM_RETRY_TIMER_MAX_MS): "
                  "virtio_mem_timer_expired()."),
    "return min(50 * 2 ** (n - 1), 300)")


# -- 07.enospc_plugged -------------------------------------------------------------------
def nobody_onlines() -> tuple[vm.Machine, Any]:
    """auto_online_blocks=offline, no udev rule: the host asks for 3 GiB of a 4 GiB device."""
    m, dev = machine(0, region=4 * GiB, auto_online_blocks="offline")
    dev.requested_size = 3 * GiB
    m.settle()
    return m, dev


def _enospc() -> int:
    _, dev = nobody_onlines()
    return dev.size // MiB


_accept_mib = whole_number("a size in MiB", 0, 4096,
                           "between 0 and the 4096 MiB of the region")


def _explain_enospc(mib: int) -> str:
    m, dev = nobody_onlines()
    drv = dev.driver
    return (f"The driver adds memory only while the memory it added and nobody onlined stays "
            f"within offline_threshold = max(1 GiB, 2 memory blocks) = "
            f"{format_size(drv.offline_threshold)} (virtio_mem_could_add_memory()).  After "
            f"{mib} MiB in {mib // 128} offline blocks the next add would exceed it: "
            f"the pass returns {errname(drv.last_rc)}, which arms no timer; the driver waits "
            "for MEM_ONLINE (onlining a block) or a config change to try again.")


enospc_plugged = ValueExercise(
    "07.enospc_plugged",
    "auto_online_blocks is offline and nothing onlines new memory. The host sets "
    "requested-size to 3G (the region is 4 GiB). How many MiB does the driver plug?",
    _enospc, _explain_enospc, _accept_mib,
    hints={3072: "Plugged memory that is never onlined is useless to the guest; the driver "
                 "stops adding it after a limit.",
           0: "Plugging and adding work without onlining: the blocks are added offline, "
                "up to a limit.",
           256: "The limit is max(1 GiB, 2 memory blocks), not 2 memory blocks."})


# -- 07.race_winner ------------------------------------------------------------------------
@dataclass(frozen=True)
class RaceResult:
    """One run of the race: the device's sizes and the writer's memory over time."""

    kind: str
    series: VmemSeries
    held_mib: np.ndarray          # the writer's resident memory at each sample
    free_mib: np.ndarray          # MemFree at each sample
    status: str
    last_rc: int
    passes: int
    plugged_mib: int
    kernel_log: str               # allocation failures and OOM kills after the shrink

    @property
    def rc_name(self) -> str:
        return errname(self.last_rc)


def race_table(r: RaceResult, times: tuple[float, ...] = (8, 9, 10, 11, 12, 15, 20, 60, 100,
                                                         200, 400)) -> str:
    """The race at a few moments: sizes, the program's memory, MemFree (MiB)."""
    s = r.series
    t0 = RACE_START
    lines = [f"{r.kind}: the host asks for 512 MiB at t = {t0:g} s",
             f"{'t (s)':>7} {'requested':>10} {'size':>6} {'program':>8} {'MemFree':>8}"]
    for t in times:
        i = int(np.searchsorted(s.time, t + 0.5) - 1)
        lines.append(f"{t:>7g} {s.requested[i] // MiB:>10} {s.plugged[i] // MiB:>6} "
                     f"{r.held_mib[i]:>8} {r.free_mib[i]:>8}")
    return "\n".join(lines) + "\n"


RACE_START = 9.0                  # the writer runs this long before the host shrinks
RACE_SECONDS = 400.0
RACE_LIMIT = "5G"                 # the writer stops after asking for this much (t = 20 s)


@cache
def race(kind: str = "page_cache") -> RaceResult:
    """A writer at 256 MiB/s while the host shrinks the device from 3 GiB to 512 MiB.

    2 GiB guest, 4 GiB device onlined to ZONE_MOVABLE, seed 3; the writer is
    ``kind`` ("page_cache": a file being read; "anon": a process touching
    memory) and asks for 5 GiB in all.  The host shrinks at t = 9 s; the
    sample at 9 s is taken just after its qom-set, before the driver runs.
    Sampled every second for 60 s after the shrink, then every 20 s.
    """
    if kind not in ("page_cache", "anon"):
        raise ValueError(f"kind={kind!r} is not one of ['page_cache', 'anon']")
    m = vm.Machine(boot_memory=BOOT_MEMORY, seed=3, auto_online_blocks="online_movable")
    dev = m.add_virtio_mem(region_size=4 * GiB, requested_size=3 * GiB)
    m.settle()
    writer = m.start_activity(kind, rate="256M", interval=1.0, limit=RACE_LIMIT, name="writer")
    rec, held, free = PlugRecorder(), [], []

    def sample() -> None:
        rec.record(m)
        held.append(writer.resident // MiB)
        free.append(m.proc.meminfo_kb("MemFree") // 1024)

    for _ in range(int(RACE_START)):
        sample()
        m.run(1.0)
    dev.requested_size = 512 * MiB               # qom-set vmem0 requested-size 512M
    sample()                                     # t = 9 s: asked for, not yet unplugged
    logged = len(m.dmesg().splitlines())
    while m.now < RACE_START + RACE_SECONDS:
        m.run(1.0 if m.now < RACE_START + 60 else 20.0)
        sample()
    drv = dev.driver
    notable = ("allocation failure", "invoked oom-killer", "Killed process")
    log = [line for line in m.dmesg().splitlines()[logged:] if any(s in line for s in notable)]
    return RaceResult(kind, rec.series(), np.array(held), np.array(free), drv.status(),
                      drv.last_rc, drv.passes, dev.size // MiB, "\n".join(log))


def _race_winner() -> str:
    done = [k for k in ("page_cache", "anon") if race(k).plugged_mib == 512]
    return {0: "neither", 2: "both"}.get(len(done), done[0] if done else "neither")


def _accept_winner(x: Any) -> str:
    if not isinstance(x, str):
        raise TypeError('a string: "page_cache", "anon", "both" or "neither"')
    if x not in ("page_cache", "anon", "both", "neither"):
        raise ValueError('one of "page_cache", "anon", "both" or "neither"')
    return x


def _explain_winner(winner: str) -> str:
    pc, an = race("page_cache"), race("anon")
    killed = "Killed process" in an.kernel_log
    return (f"Page cache: {pc.plugged_mib} MiB plugged, last rc {errname(pc.last_rc)}.  To empty "
            "a subblock, alloc_contig_range() first drops clean page-cache pages "
            "(reclaim_clean_pages_from_list()) instead of migrating them, so the reader's cache "
            "simply shrinks and grows back in the memory that is left.  Anonymous memory: "
            f"{an.plugged_mib} MiB plugged, last rc {errname(an.last_rc)}.  It must be "
            "migrated, there is no swap, and with the writer filling memory there is nowhere "
            "to put it: the first pass fails with -ENOMEM and arms the retry timer"
            + ("; then the writer's own next allocation finds nothing free and the OOM killer "
               "(mm/oom_kill.c) kills it, so the retry pass has free memory again and "
               "finishes the unplug: the host wins, the guest loses a process"
               if killed else "") + f" ({an.passes} passes in {RACE_SECONDS:.0f} s).")


race_winner = ValueExercise(
    "07.race_winner",
    "A writer adds 256 MiB per second while the host shrinks the device from 3 GiB to "
    "512 MiB. Which writer lets the unplug reach 512 MiB: \"page_cache\" (reading a big "
    "file), \"anon\" (a process touching new memory), \"both\" or \"neither\"?",
    _race_winner, _explain_winner, _accept_winner,
    hints={"both": "Anonymous memory cannot be dropped without swap: it must move, and it "
                   "needs free memory to move into.",
           "page_cache": "Anonymous memory cannot be dropped, but what happens to a program "
                         "that keeps allocating when nothing is free any more?",
           "neither": "Clean page cache can be dropped and read again later: the unplug "
                      "does not have to migrate it.",
           "anon": "The page cache is not 'just movable': it is reclaimable, which is better."})


# -- the app (section 8) ---------------------------------------------------------------------
def app_machine(seed: int = 0) -> vm.Machine:
    """The panel's guest: 2 GiB of RAM and a 4 GiB virtio-mem device, 1 GiB plugged."""
    m = vm.Machine(boot_memory=BOOT_MEMORY, seed=seed)
    m.add_virtio_mem(region_size=4 * GiB, requested_size=1 * GiB)
    m.settle()
    return m


def bbm() -> tuple[vm.Machine, Any]:
    """A device with 1 GiB blocks (a hugetlb-backed guest): Big Block Mode, 2 GiB plugged."""
    m = vm.Machine(boot_memory=BOOT_MEMORY, seed=0, trace=True)
    dev = m.add_virtio_mem(region_size=4 * GiB, block_size=1 * GiB, requested_size=2 * GiB)
    m.settle()
    return m, dev


