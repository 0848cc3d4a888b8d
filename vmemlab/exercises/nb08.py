"""Exercises of notebook 08: ZONE_NORMAL vs ZONE_MOVABLE for virtio-mem memory.

Four scenarios, each built here with the same calls the notebook shows, and
every answer computed by running it:

* ``small_story(online)``: the teaching machine (256 pages, a device of 8
  memory blocks of 8 subblocks) with a kmalloc'd and page-table page in the
  device's memory, for counting stuck subblocks by hand;
* ``story(policy)``: a 1 GiB q35 guest with a 4 GiB device plugged whole,
  onlined three ways (contig-zones: ZONE_NORMAL; online_movable;
  auto-movable), the same workload, then ``requested-size 0``: the what-if
  runs the notebook replays side by side;
* ``auto_movable()``: a 4 GiB guest plugging 16 GiB under the auto-movable
  policy (ratio 301%), the example of the policy's cover letter;
* ``too_movable(policy)``: a 1 GiB guest with 6 GiB plugged, all of it
  ZONE_MOVABLE or not, asked for 900 MiB of kernel memory and then for more
  virtio-mem memory.

Kernel: mm/memory_hotplug.c (zone_for_pfn_range(), auto_movable_zone_for_pfn(),
auto_movable_can_online_movable()), drivers/virtio/virtio_mem.c,
Documentation/admin-guide/mm/memory-hotplug.rst ("ZONE_MOVABLE")
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

import vmemlab as vm
from vmemlab.constants import GiB, MiB, errname
from vmemlab.viz.vmemgrid import subblock_grid

from . import Case, FunctionExercise, ValueExercise
from .answers import whole_number

POLICIES = ("contig-zones", "online_movable", "auto-movable")
TEACH_MB = 64 * 4096                # a teaching memory block: 256 KiB, 8 subblocks


def _settings(policy: str) -> dict[str, str]:
    """Machine arguments for one of the three ways to online virtio-mem memory."""
    if policy not in POLICIES:
        raise ValueError(f"policy={policy!r} is not one of {list(POLICIES)}")
    return {"auto_online_blocks": "online_movable" if policy == "online_movable" else "online",
            "online_policy": "auto-movable" if policy == "auto-movable" else "contig-zones"}


def zones_text(m: vm.Machine) -> str:
    """Each populated zone: its managed memory and free memory, in MiB."""
    return "".join(f"{z.name:>8}: managed {z.managed * 4096 >> 20:>5} MiB, "
                   f"free {z.free * 4096 >> 20:>5} MiB\n"
                   for z in m.zones.values() if z.managed)


# -- 08.stuck_size --------------------------------------------------------------------
def small_story(online: str = "online") -> tuple[vm.Machine, Any]:
    """The teaching machine: 4 memory blocks plugged; anon, kmalloc, anon, page tables;
    then the first anon memory freed.  Nothing unplugged yet."""
    m = vm.Machine(boot_memory=256 * 4096, geometry="teaching", seed=0,
                   auto_online_blocks=online)
    dev = m.add_virtio_mem(region_size=8 * TEACH_MB, requested_size=4 * TEACH_MB)
    m.settle()
    first = m.activity("anon", size=240 * 4096)
    m.activity("slab", size=20 * 4096)
    m.activity("anon", size=120 * 4096)
    m.activity("page_tables", size=6 * 4096)
    first.release()
    return m, dev


def fresh_machine(online: str = "online") -> vm.Machine:
    """Section 2's teaching machine again, its device fully plugged (``m.virtio_mem[0]``)."""
    return small_story(online)[0]


def _stuck_size() -> int:
    m, dev = small_story()
    dev.requested_size = 0
    m.settle()
    return dev.size // 1024


def _accept_kib(x: Any) -> int:
    x = whole_number("a size in KiB", 0, 1024, "1 MiB is plugged: between 0 and 1024 KiB")(x)
    if x % 32:
        raise ValueError("the device plugs and unplugs 32 KiB subblocks: a multiple of 32")
    return x


def _explain_stuck(kib: int) -> str:
    m, dev = small_story()
    sg = subblock_grid(m, content=True)
    row = [str(c) for c in sg.cells[0][:3]]
    dev.requested_size = 0
    m.settle()
    return (f"A subblock can be unplugged when alloc_contig_range() can empty it: free pages "
            f"are taken, movable ones (anonymous memory) migrated into the free boot memory.  "
            f"A kmalloc'd slab page or a page-table page never moves, so the subblocks holding "
            f"one fail with -EBUSY and are skipped (memory4's first cells: {', '.join(row)}...).  "
            f"{kib // 32} subblocks stay plugged, {kib} KiB; the pass returns "
            f"{errname(dev.driver.last_rc)} and the retry timer will find the same.")


stuck_size = ValueExercise(
    "08.stuck_size",
    "Read the content map: the host sets requested-size to 0. What is size (plugged), in "
    "KiB, when the driver's pass ends?",
    _stuck_size, _explain_stuck, _accept_kib,
    hints={0: "Movable pages can be migrated, but kernel pages (slab, page tables) cannot: "
              "their subblocks cannot be emptied.",
           1024: "alloc_contig_range() works per subblock: one stuck page blocks only its own "
                 "subblock (32 KiB here, 2 MiB on x86-64), not the whole memory block.",
           256: "The stuck subblocks stay, not their whole memory block.",
           544: "The movable pages move into free memory elsewhere; only unmovable pages "
                "stay."})


# -- 08.reach_zero --------------------------------------------------------------------------
STEPS = ("4 GiB plugged", "workload: 512 MiB anon, 100000 files, 128 MiB kmalloc",
         "qom-set vmem0 requested-size 0", "700 s later")


@cache
def story(policy: str) -> tuple[vm.Machine, Any]:
    """A 1 GiB guest with a 4 GiB device plugged whole, onlined by ``policy``; the same
    workload; then the host asks for everything back and waits 700 s.  Traced, one
    frame per step (``STEPS``)."""
    m = vm.Machine(boot_memory=1 * GiB, seed=1, trace=True, **_settings(policy))
    dev = m.add_virtio_mem(region_size=4 * GiB, requested_size=4 * GiB)
    m.settle()
    m.step(STEPS[0])
    m.activity("anon", size="512M")
    m.activity("files", count=100_000)
    m.activity("slab", size="128M")
    m.step(STEPS[1])
    dev.requested_size = 0
    m.settle()
    m.step(STEPS[2])
    m.run(700)
    m.step(STEPS[3])
    return m, dev


def story_table() -> str:
    """The three runs at their end: zones of the device's memory, what stays plugged."""
    lines = [f"{'policy':<15} {'ZONE_NORMAL':>11} {'ZONE_MOVABLE':>12} {'left plugged':>12} "
             f"{'last rc':>8} {'passes':>6}"]
    for p in POLICIES:
        m, dev = story(p)
        view = m.trace.frames[0].state.extra["virtio_mem"][0]
        states = view.mb_states
        normal = sum(s.startswith("KERNEL") for s in states) * 128
        movable = sum(s.startswith("MOVABLE") for s in states) * 128
        lines.append(f"{p:<15} {normal:>7} MiB {movable:>8} MiB {dev.size >> 20:>8} MiB "
                     f"{errname(dev.driver.last_rc):>8} {dev.driver.passes:>6}")
    return "\n".join(lines) + "\n"


def _reach_zero() -> tuple[str, ...]:
    return tuple(p for p in POLICIES if story(p)[1].size == 0)


def _accept_policies(x: Any) -> tuple[str, ...]:
    if isinstance(x, str) or not isinstance(x, (list, tuple, set)):
        raise TypeError('give a list of policy names, e.g. ["contig-zones"]')
    bad = [p for p in x if p not in POLICIES]
    if bad:
        raise ValueError(f"{bad} are not among {list(POLICIES)}")
    return tuple(p for p in POLICIES if p in x)


def _explain_zero(ok: tuple[str, ...]) -> str:
    parts = []
    for p in POLICIES:
        m, dev = story(p)
        parts.append(f"{p}: {dev.size >> 20} MiB left ({errname(dev.driver.last_rc)})")
    return ("GFP_KERNEL allocations may use every zone up to ZONE_NORMAL, highest first "
            "(gfp_zone(), the zonelist), never ZONE_MOVABLE.  Under contig-zones the whole "
            "device is ZONE_NORMAL, the only Normal memory of this guest, so the kernel's slab, "
            "dentries, inodes and page tables land there and pin subblocks.  auto-movable keeps "
            "the MOVABLE:KERNEL ratio within 301% of the 1 GiB boot memory, so it onlines two "
            "blocks to ZONE_NORMAL, and the kernel's memory lands in them.  Only online_movable "
            "keeps all of it out: " + "; ".join(parts) + ".")


reach_zero = ValueExercise(
    "08.reach_zero",
    "The same guest, seed and workload, onlined three ways. For which policies does the "
    "device's size reach requested-size 0? Answer with a list of names.",
    _reach_zero, _explain_zero, _accept_policies,
    hints={("online_movable", "auto-movable"): "auto-movable does not make everything "
                                               "movable: past the ratio it onlines kernel "
                                               "memory, and kernel allocations prefer it.",
           (): "ZONE_MOVABLE only takes movable allocations: with every virtio-mem block "
               "there, nothing pins them.",
           POLICIES: "contig-zones puts the device in ZONE_NORMAL, where kernel memory goes."})


# -- 08.movable_blocks ------------------------------------------------------------------------
@cache
def auto_movable() -> tuple[vm.Machine, Any]:
    """A 4 GiB guest, online_policy=auto-movable (ratio 301%), plugging 16 GiB of virtio-mem."""
    m = vm.Machine(boot_memory=4 * GiB, seed=0, online_policy="auto-movable")
    dev = m.add_virtio_mem(region_size=16 * GiB, requested_size=16 * GiB)
    m.settle()
    return m, dev


def zone_pattern(dev: Any) -> str:
    """One letter per memory block of the device: M (ZONE_MOVABLE), N (a kernel zone), . (none)."""
    return "".join("M" if s.startswith("MOVABLE") else "N" if s.startswith("KERNEL") else "."
                   for s in dev.driver.view().mb_states)


def _movable_blocks() -> int:
    _, dev = auto_movable()
    return zone_pattern(dev).count("M")


_accept_blocks = whole_number("a number of memory blocks", 0, 128,
                              "16 GiB is 128 memory blocks: between 0 and 128")


def _explain_movable(n: int) -> str:
    m, dev = auto_movable()
    pattern = zone_pattern(dev)
    first = len(pattern) - len(pattern.lstrip("M"))
    early = kernel_early_pages(m)
    return (f"auto_movable_can_online_movable(): a block may go to ZONE_MOVABLE while "
            f"movable + its pages <= 301% x (boot kernel memory + this device's own kernel "
            f"memory).  The boot kernel zones hold {early} pages ({early * 4096 >> 20} MiB), "
            f"so the first {first} blocks ({first * 128 // 1024} GiB) go MOVABLE.  Then a block "
            "goes to ZONE_NORMAL, and because kernel memory of the *same dynamic group* (one "
            "virtio-mem device) raises the allowance, each 128 MiB of it allows 3 more MOVABLE "
            f"blocks: the pattern N M M M repeats.  {n} of 128 blocks are MOVABLE, "
            f"{n * 128 // 1024} GiB; the cover letter of the auto-movable series shows exactly "
            "this for a 4 GiB VM.")


movable_blocks = ValueExercise(
    "08.movable_blocks",
    "A 4 GiB guest with online_policy=auto-movable (ratio 301%) plugs 16 GiB of virtio-mem "
    "memory (128 memory blocks), onlined one after the other. How many of the 128 go to "
    "ZONE_MOVABLE?",
    _movable_blocks, _explain_movable, _accept_blocks,
    hints={96: "Right for the first 12 GiB; but the device's own kernel memory counts too "
               "(dynamic memory groups), so after that 3 of every 4 blocks still go MOVABLE.",
           128: "The ratio is there to keep enough kernel memory: it stops at about 3 x the "
                "boot memory.",
           0: "Up to 301% of the boot kernel memory may be MOVABLE."})


def kernel_early_pages(m: vm.Machine) -> int:
    """Present pages of the kernel zones at boot (what the ratio is taken of)."""
    return int(sum(m.zone(z).present_early_pages for z in m.zones
                   if z != "Movable" and m.zones[z].present))


def _zone_cases() -> list[Case]:
    m, dev = auto_movable()
    early = kernel_early_pages(m)
    nr = m.geometry.pages_per_memory_block
    movable = kernel = 0
    out = []
    for state in dev.driver.view().mb_states:
        want = "Movable" if state.startswith("MOVABLE") else "Normal"
        out.append(Case((early, movable, kernel, nr), want))
        if want == "Movable":
            movable += nr
        else:
            kernel += nr
    rng = np.random.default_rng(8)          # and some guests that never existed
    for _ in range(24):
        e, mv, k = (int(x) for x in rng.integers(0, 1 << 21, 3))
        out.append(Case((e, mv, k, nr), "Movable" if mv + nr <= 301 * (e + k) // 100
                        else "Normal"))
    return out


zone_for_block = FunctionExercise(
    "08.zone_for_block",
    "Write zone_for_block(kernel_early, movable, group_kernel, nr_pages): the zone the "
    "auto-movable policy (ratio 301%) picks for one more memory block of a virtio-mem "
    "device, all sizes in pages.",
    "zone_for_block", _zone_cases,
    lambda case: ("ZONE_MOVABLE while movable + nr_pages <= 301 * (kernel_early + "
                  "group_kernel) // 100, else the kernel zone (auto_movable_can_online_movable(), "
                  "mm/memory_hotplug.c; the group's own kernel memory counts because the device "
                  "is one dynamic memory group)."),
    'return "Movable" if movable + nr_pages <= 301 * (kernel_early + group_kernel) // 100 '
    'else "Normal"')


# -- 08.grow_movable ------------------------------------------------------------------------
def too_movable(policy: str = "online_movable") -> tuple[vm.Machine, Any, Any]:
    """A 1 GiB guest with 6 GiB of virtio-mem plugged, then 900 MiB of kmalloc."""
    m = vm.Machine(boot_memory=1 * GiB, seed=0, **_settings(policy))
    dev = m.add_virtio_mem(region_size=8 * GiB, requested_size=6 * GiB)
    m.settle()
    slab = m.activity("slab", size="900M")
    return m, dev, slab


def _grow_movable() -> int:
    m, dev, _ = too_movable()
    dev.requested_size = 8 * GiB
    m.settle()
    return dev.size // MiB


def _explain_grow(mib: int) -> str:
    m, dev, _ = too_movable()
    dev.requested_size = 8 * GiB
    m.settle()
    fail = [line.split("] ", 1)[1] for line in m.dmesg().splitlines() if "failed" in line]
    return (f"Each memory block the driver adds needs its memmap, 2 MiB of struct pages per "
            f"128 MiB, allocated with GFP_KERNEL from the kernel zones, never from "
            f"ZONE_MOVABLE.  The kmalloc'd memory used up DMA32, so the very first add "
            f"failed: {'; '.join(fail)}.  The pass returns {errname(dev.driver.last_rc)} and "
            f"retries on the timer; size stays at {mib} MiB though 6 GiB of ZONE_MOVABLE are "
            "free.")


grow_movable = ValueExercise(
    "08.grow_movable",
    "With every virtio-mem block in ZONE_MOVABLE and the kernel zones nearly full, the host "
    "sets requested-size to 8G (6 GiB are plugged, plenty of it free). What is size, in MiB, "
    "once the driver's pass ends?",
    _grow_movable, _explain_grow,
    whole_number("a size in MiB", 0, 8192, "between 0 and the region's 8192 MiB"),
    hints={8192: "Adding memory is not free: its struct pages come from kernel memory.",
           6400: "Not even one more block: the memmap of the first new block already fails.",
           0: "Nothing is unplugged; the question is how far the plug gets."})




def movable_share(m: vm.Machine) -> str:
    """ZONE_MOVABLE's share of the guest's managed memory, and the MOVABLE:KERNEL ratio."""
    movable = m.zones["Movable"].managed if "Movable" in m.zones else 0
    kernel = sum(z.managed for n, z in m.zones.items() if n != "Movable")
    return (f"ZONE_MOVABLE {movable * 4096 >> 20} MiB, kernel zones {kernel * 4096 >> 20} MiB: "
            f"MOVABLE:KERNEL = {movable / kernel:.1f}:1")




def cost_table() -> str:
    """too_movable() under each policy: the kernel's 900 MiB, then a grow to 8 GiB."""
    lines = [f"{'policy':<15} {'MOVABLE:KERNEL':>14} {'kmalloc got':>11} {'short':>9} "
             f"{'size after qom-set 8G':>21}"]
    for p in POLICIES:
        m, dev, slab = too_movable(p)
        ratio = movable_share(m).rsplit("= ", 1)[1]
        dev.requested_size = 8 * GiB
        m.settle()
        lines.append(f"{p:<15} {ratio:>14} {slab.resident >> 20:>7} MiB "
                     f"{slab.shortfall >> 20:>5} MiB {dev.size >> 20:>13} MiB "
                     f"({errname(dev.driver.last_rc)})")
    return "\n".join(lines) + "\n"


def meminfo(m: vm.Machine, *fields: str) -> str:
    """Some lines of /proc/meminfo (MemTotal, MemFree and MemAvailable by default)."""
    rows = dict(m.proc.meminfo_rows())
    return "  ".join(f"{f}: {rows[f]} kB" for f in fields or ("MemTotal", "MemFree",
                                                                 "MemAvailable"))
