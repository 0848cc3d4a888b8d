"""Exercises of notebook 11, your machine, on a snapshot of a real Linux guest.

The snapshot (``tests/fixtures/snapshot/fc-6.18-24g.npz``) was taken
read-only with ``python -m vmemlab snapshot --save`` on the project's
development VM: Linux 6.18, 24 GiB, 128 MiB memory blocks, the PCI hole
at 3-4 GiB.  Every answer is computed from the snapshot's own files.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from ..constants import PageState
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


# -- 11.free_blocks --------------------------------------------------------
def _free_blocks() -> list[int]:
    snap = snapshot()
    counts = snap.block_page_counts()          # columns are PageState values
    return [b.id for b, row in zip(snap.memory.blocks, counts, strict=True)
            if row[PageState.FREE] == b.nr_pages]


free_blocks = ValueExercise(
    "11.free_blocks",
    "How many memory blocks have every page free, so that offlining them would not "
    "have to migrate a single page?",
    lambda: len(_free_blocks()),
    lambda n: (f"{n} blocks: memory{_free_blocks()[0]} to memory{_free_blocks()[-1]}, all of "
               "DMA32 above the first block.  Block 0 holds reserved pages (firmware, the "
               "low 1 MiB), and every block of Normal holds allocated pages: the kernel and "
               "user space allocate from the highest zone first (ZONE_NORMAL), so DMA32 "
               "stays empty on a machine this size."),
    _whole,
    hints={24: "Block 0 is in DMA32's range too, but look at its reserved pages.",
           0: "Look at the free column of the block table for blocks 1-23."})
