"""The start-here notebook: a one-minute demo of a host shrinking its guest.

A 2 GiB guest has a 4 GiB virtio-mem device with 3 GiB plugged, onlined to
ZONE_MOVABLE (``auto_online_blocks=online_movable``, notebook 08 says why),
and a program holding 2 GiB of anonymous memory.  The host then asks for
1 GiB.  Two warm-up predictions show how every exercise of the series works.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import vmemlab as vm
from vmemlab.activity import Activity
from vmemlab.constants import GiB, MiB

from . import ValueExercise
from .answers import whole_number

PLUGGED = 3 * GiB
SHRUNK = 1 * GiB
APP = 2 * GiB


def demo_guest(trace: bool = True) -> tuple[vm.Machine, Any, Activity]:
    """The guest before the host acts: 3 GiB plugged, a program holding 2 GiB."""
    m = vm.Machine(boot_memory=2 * GiB, auto_online_blocks="online_movable", seed=0,
                   trace=trace)
    dev = m.add_virtio_mem(region_size=4 * GiB, requested_size=PLUGGED)
    m.settle()
    app = m.activity("anon", size=APP, name="app")
    if trace:
        m.trace.clear()            # the demo's trace starts with the host's request
    return m, dev, app


def fresh_machine() -> vm.Machine:
    """The notebook's guest for your own experiments: ``demo_guest()`` without a trace."""
    return demo_guest(trace=False)[0]


def shrink(m: vm.Machine, dev: Any, size: int = SHRUNK, every: float = 0.025) -> float:
    """qom-set requested-size, then run the guest until the driver is done.

    A trace frame closes every ``every`` simulated seconds, so a TraceViewer
    can replay the unplug.  Returns the simulated seconds it took.
    """
    start = m.now
    dev.requested_size = size
    m.step(f"qom-set {dev.name} requested-size {size // MiB}M")
    while dev.driver.work_pending:
        m.run(every)
        m.step(f"{(m.now - start) * 1e3:.0f} ms after qom-set")
    return m.now - start


@cache
def _demo() -> tuple[int, int, int, int]:
    """(MemTotal before, after in kB; the program's resident MiB before, after)."""
    m, dev, app = demo_guest(trace=False)
    before, resident = m.proc.meminfo_kb("MemTotal"), app.resident
    shrink(m, dev)
    return before, m.proc.meminfo_kb("MemTotal"), resident // MiB, app.resident // MiB


# -- 00.memtotal_drop ---------------------------------------------------------------
def _explain_drop(mib: int) -> str:
    before, after, _, _ = _demo()
    return (f"MemTotal went from {before} kB to {after} kB: {mib} MiB less, exactly what "
            "the host took back. MemTotal counts the pages the kernel manages; each 2 MiB "
            "subblock the driver unplugs leaves that count at once "
            "(adjust_managed_page_count()), and whole memory blocks are removed. Their "
            "memmap was kernel memory from boot RAM: freeing it raises MemFree, not "
            "MemTotal.")


memtotal_drop = ValueExercise(
    "00.memtotal_drop",
    "The host lowers requested-size from 3G to 1G and the driver reaches it. By how many "
    "MiB does MemTotal in the guest's /proc/meminfo drop?",
    lambda: (_demo()[0] - _demo()[1]) // 1024, _explain_drop,
    whole_number("a size in MiB"),
    hints={0: "MemTotal is not fixed at boot: virtio-mem changes how much memory the guest "
              "manages, which is the whole point of it.",
           1024: "That is what is left plugged, not what was taken: 3 GiB were plugged."})


# -- 00.app_resident ------------------------------------------------------------------
def _explain_resident(mib: int) -> str:
    _, _, before, after = _demo()
    return (f"The program held {before} MiB before and {after} MiB after: nothing was lost. "
            "Its pages were movable, so before unplugging each subblock the driver's "
            "alloc_contig_range() migrated them to free memory elsewhere (boot RAM) and only "
            "then gave the emptied subblock back. The program never noticed.")


app_resident = ValueExercise(
    "00.app_resident",
    "The program held 2 GiB of anonymous memory (and 4 MiB of page tables), much of it in "
    "the device's memory. After the shrink to 1G, what percentage of that does it still hold?",
    lambda: round(100 * _demo()[3] / _demo()[2]), _explain_resident,
    whole_number("a percentage", 0, 100),
    hints={50: "The kernel does not take memory away from a program to unplug it: it moves "
               "the pages (the guest has no swap to push them to either).",
           0: "Nothing was killed: the guest still has room for 2 GiB of anonymous memory."})
