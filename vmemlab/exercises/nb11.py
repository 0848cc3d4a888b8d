"""Exercises of notebook 11, your machine, on a snapshot of a real Linux guest.

The snapshot (``tests/fixtures/snapshot/fc-6.18-24g.npz``) was taken
read-only with ``python3 lab.py snapshot --save`` on the project's
development VM: Linux 6.18, 24 GiB, 128 MiB memory blocks, the PCI hole
at 3-4 GiB.  Every answer is computed from the snapshot's own files.  Its
zoneinfo shows most of ZONE_NORMAL present but not yet managed, which
MemFree counts and the free lists do not (``11.free_gap_cause``).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from ..realmem.kpageflags import free_gap
from ..snapshot import RealSnapshot, load_snapshot
from . import ValueExercise
from .answers import whole_number

SNAPSHOT = (Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "snapshot"
            / "fc-6.18-24g.npz")


@cache
def snapshot() -> RealSnapshot:
    """The notebook's snapshot (loaded once)."""
    if not SNAPSHOT.exists():
        raise FileNotFoundError(f"{SNAPSHOT} is missing: notebook 11 needs the repository's "
                                "tests/fixtures (install vmemlab with pip install -e .)")
    return load_snapshot(SNAPSHOT)


_whole = whole_number("the answer", out_of_range="a count is never negative")


def _zone(x: object) -> str:
    names = [row.zone for row in snapshot().part("buddyinfo")]
    if not isinstance(x, str):
        raise TypeError(f"name the zone as a string, one of {names}")
    for name in names:
        if name.lower() == x.strip().lower():
            return name
    raise ValueError(f"this machine's zones are {names}")


def _share(x: object) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError("the answer is a number between 0 and 1, like 0.25")
    if not 0 <= x <= 1:
        raise ValueError("the index is a share: between 0 and 1")
    return round(float(x), 2)


# -- 11.order10_zone -------------------------------------------------------
def _order10() -> dict[str, int]:
    return {row.zone: row.nr_free[10] for row in snapshot().part("buddyinfo")}


order10_zone = ValueExercise(
    "11.order10_zone",
    "Which zone has the most free 4 MiB blocks (order 10)?",
    lambda: max(_order10().items(), key=lambda kv: kv[1])[0],
    lambda zone: ("The last column of /proc/buddyinfo counts free order-10 blocks: "
                  + ", ".join(f"{z} {n}" for z, n in _order10().items())
                  + f". {zone} is smaller than Normal but almost untouched; Normal is where "
                    "the kernel and user space allocate first, and its free memory is cut "
                    "into smaller pieces."),
    _zone,
    hints={"Normal": "Normal is by far the largest zone, but size is not what counts: look "
                     "at the last column of buddyinfo.",
           "DMA": "DMA is only 16 MiB: at most four 4 MiB blocks fit in it."})


# -- 11.unusable_2m --------------------------------------------------------
def _unusable(zone: str = "Normal", order: int = 9) -> float:
    """The unusable free space index: free memory in blocks below ``order`` / all free memory."""
    row = next(r for r in snapshot().part("buddyinfo") if r.zone == zone)
    total = sum(n << o for o, n in enumerate(row.nr_free))
    below = sum(n << o for o, n in enumerate(row.nr_free) if o < order)
    return round(below / total, 2)


unusable_2m = ValueExercise(
    "11.unusable_2m",
    "In the Normal zone, which share of the free memory is of no use to a 2 MiB "
    "(order-9) allocation, such as a huge page or a virtio-mem subblock? Two decimals.",
    _unusable,
    lambda share: (f"Free pages in blocks smaller than order 9 make up {share:.2f} of the "
                   "Normal zone's free memory: sum nr_free[o] << o for o < 9, divided by the "
                   "sum over all orders (the unusable free space index, debugfs "
                   "extfrag/unusable_index; mm/vmstat.c, unusable_free_index())."),
    _share,
    hints={0.0: "Count the pages in every order below 9, not the blocks of order 9.",
           1.0: "Orders 9 and 10 still hold free blocks in Normal."})


# -- 11.memory_blocks ------------------------------------------------------
def _runs() -> list[tuple[int, int]]:
    """Runs of consecutive memory block ids: [(0, 23), (32, 199)]."""
    runs: list[tuple[int, int]] = []
    for b in snapshot().memory.blocks:
        if runs and b.id == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], b.id)
        else:
            runs.append((b.id, b.id))
    return runs


def _explain_blocks(n: int) -> str:
    runs, size = _runs(), snapshot().memory.block_size
    spans = ", ".join(f"memory{a}-{b} ({a * size >> 20} MiB to {(b + 1) * size >> 20} MiB)"
                      for a, b in runs)
    gaps = ", ".join(f"{b + 1}-{c - 1}" for (_, b), (c, _) in zip(runs, runs[1:], strict=False))
    return (f"{n} blocks: {spans}.  The missing blocks {gaps} would cover the addresses "
            "just below 4 GiB, where a PC puts its PCI hole (device registers, not RAM); "
            "the RAM that would have been there is mapped above 4 GiB instead.  Memory "
            "blocks exist only where there is memory (drivers/base/memory.c).")


memory_blocks = ValueExercise(
    "11.memory_blocks",
    "Memory runs from address 0 to 25 GiB here, in memory blocks of 128 MiB. How many "
    "memory blocks does /sys/devices/system/memory list?",
    lambda: len(snapshot().memory.blocks), _explain_blocks,
    _whole,
    hints={200: "25 GiB / 128 MiB is 200, but is every 128 MiB of those 25 GiB RAM? "
                "Look at the address ranges lsmem prints.",
           193: "Count blocks 0-23 and 32-199."})


# -- 11.free_gap_cause -----------------------------------------------------
CAUSES = ("per_cpu_lists", "not_yet_managed", "kernel_allocations")


def pcp_pages(snap: RealSnapshot) -> int:
    """Pages on the per-CPU lists: the ``count:`` lines of the pagesets in /proc/zoneinfo."""
    text = snap.files.get("/proc/zoneinfo", "")
    text = text.decode() if isinstance(text, bytes) else text
    return sum(int(line.split()[1]) for line in text.splitlines()
               if line.split()[:1] == ["count:"])


def _free_gap_cause() -> str:
    g = free_gap(snapshot())
    return "not_yet_managed" if g.not_managed >= g.gap / 2 else "per_cpu_lists"


def _cause(x: object) -> str:
    if not isinstance(x, str):
        raise TypeError(f"a string, one of {list(CAUSES)}")
    key = "_".join(x.strip().lower().replace("-", " ").split())
    if key not in CAUSES:
        raise ValueError(f"one of {list(CAUSES)}")
    return key


def _explain_cause(cause: str) -> str:
    snap = snapshot()
    g, mib = free_gap(snap), snap.page_size / (1 << 20)
    return (f"MemFree counts {g.memfree} pages, the free lists hold {g.buddy}: {g.gap} pages "
            f"({g.gap * mib / 1024:.1f} GiB) are counted free but sit on no free list.  "
            f"zoneinfo's present minus managed is {g.not_managed} pages: memory the kernel "
            "counts but had not handed to the buddy allocator when the files were read.  The "
            f"per-CPU lists hold {pcp_pages(snap)} pages, and MemFree leaves them out anyway; "
            "allocated pages are not free, so MemFree leaves them out too.  kpageflags reads "
            f"all of these as words without a flag: {g.no_flags} pfns (fs/proc/page.c, "
            "stable_page_flags(): KPF_BUDDY only for pages in a free block).")


free_gap_cause = ValueExercise(
    "11.free_gap_cause",
    "MemFree counts far more free memory than the free lists of /proc/buddyinfo hold.  Which "
    "explains most of the difference: \"per_cpu_lists\", \"not_yet_managed\" or "
    "\"kernel_allocations\"?",
    _free_gap_cause, _explain_cause, _cause,
    hints={"per_cpu_lists": "A per-CPU list holds a few hundred to a few thousand pages, MiB "
                            "and not GiB, and MemFree does not count its pages either.",
           "kernel_allocations": "Allocated pages are not free: MemFree does not count them, "
                                 "so they cannot make it larger than the free lists."})


def fresh_machine(path: str | Path | None = None) -> RealSnapshot:
    """The notebook's snapshot again, or the one saved at ``path`` (``snapshot --save``)."""
    return snapshot() if path is None else load_snapshot(path)
