"""Core benchmarks: boot and fill against the per-page peer, growth, memory, contig.

    .venv/bin/python benchmarks/bench_core.py            # print the tables
    .venv/bin/python benchmarks/bench_core.py --write    # also update RESULTS.md

Goal 1 (issue 16): boot + fill of a 16 GiB guest at least 20x the naive
per-page buddy (benchmarks/baseline_buddy.py), the fill alone at least 30x.
The comparison is made fair: vmemlab's fill runs once to record the
allocations it makes (``record_fill``); the peer boots from the same free
ranges and replays exactly those allocations, one call per page.  Both
sides run in this process, interleaved, untraced, timed as the process's
CPU time (on a shared machine wall time stretches with the load, a 2 s peer
run more than a 0.1 s fill); memory is measured in a separate, traced run.

Goal 4: boot + fill grows at most 17x from 4 to 64 GiB (16x the pages).
Each boot allocates its memmap fresh, as a new session does, so the time
includes the kernel zeroing that memory on first touch; the table shows
that share (a fresh ``np.ones`` of the memmap's size minus rewriting
memory already touched) and the growth with and without it.
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

import vmemlab as vm
from vmemlab import workload
from vmemlab.bulk import free_pages_bulk
from vmemlab.constants import PageState

sys.path.insert(0, str(Path(__file__).parent))
from baseline_buddy import SetBuddy
from harness import cpu_timed, interleaved, load, median, ms
from results import update_section

REPEATS = 5
GUESTS_GIB = (4, 16, 64)
NOTE_PEER = (
    "What made it fast: boot writes each page's memmap entry once (reserved or free; "
    "deferred pages untouched until deferred init; zero arrays from `np.zeros`), frees its "
    "memory through the level-by-level batch merge (`bulk.free_blocks_bulk`), and counts "
    "present and managed pages from ranges.  A fill is one `activity.allocate_in_turn` "
    "sharing one `bulk.BulkRequests`: a run of chunks (the three types interleaved) is taken "
    "by `BulkRequests.take_run` as one take per type, split between the chunks' owners in "
    "order.  Each type takes the rest of its last split block first (one `freelist.Tail`); "
    "once every type's free pages are just that (`bulk._pooled`), a type that runs out takes "
    "whole MAX_ORDER blocks off the movable list in the order the types run out: the "
    "movable type its own, the unmovable and reclaimable types by claiming them as the "
    "fallback would (`bulk._take_pooled`: a block of at least a pageblock is claimed whole, "
    "so the claim reads only the free lists and pageblock types, never the memmap still to "
    "be written).  The run's owners, memmap (one write per contiguous span, "
    "`MemMap.mark_allocated_owners`) and counters are written once (`flush`).  A 16 GiB "
    "fill is 3 runs (about 6,000 chunks, about 900 claims); what still costs is Python work "
    "per chunk (its owner, its share of a span) and per block.")
NOTE_GROWTH = (
    "Boot and fill are linear in memory (arrays per page, a chunk count proportional to "
    "memory).  The 4 GiB guest costs more than its share: besides fixed costs, its fill "
    "overflows ZONE_NORMAL (about 1.9 GiB) into DMA32, and those chunks (about 540) go "
    "through the allocator one at a time, since `take_run` serves a chunk from its first "
    "zone only.")
PEER_GIB = 16
FILL = 0.75


def free_ranges(m: vm.Machine) -> list[tuple[int, int]]:
    """[start, end) of the runs of free pages right after boot."""
    free = np.flatnonzero(m.node.mm.state == PageState.FREE)
    breaks = np.flatnonzero(np.diff(free) != 1) + 1
    starts = free[np.concatenate([[0], breaks])]
    ends = free[np.concatenate([breaks - 1, [len(free) - 1]])] + 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def record_fill(gib: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The boot's free ranges and the (order, count) allocations ``workload.fill`` makes.

    Every chunk of the fill is one allocation call with an owner of its
    own, so the pages each owner holds afterwards, in owner order, are the
    calls' results.
    """
    m = vm.Machine(boot_memory=gib * vm.GiB, seed=0)
    ranges = free_ranges(m)
    acts = workload.fill(m, FILL)
    mm = m.node.mm
    held = np.bincount(mm.owner[mm.state == PageState.ALLOCATED], minlength=len(m.node.owners))
    owners = sorted(i for act in acts.values() for i in act.owner_ids)
    ops = [(0, int(held[i])) for i in owners]
    got = sum(act.requested - act.shortfall for act in acts.values()) >> m.geometry.page_shift
    assert sum(n for _, n in ops) == got, "the recorded allocations are the fill's"
    return ranges, ops


def boot_and_fill(gib: int, out: dict[str, list[float]]) -> None:
    t = time.process_time()
    m = vm.Machine(boot_memory=gib * vm.GiB, seed=0)
    boot = time.process_time() - t
    fill = cpu_timed(lambda: workload.fill(m, FILL))
    out.setdefault(f"{gib} boot", []).append(boot)
    out.setdefault(f"{gib} fill", []).append(fill)


def peer_boot_and_fill(ranges: list[tuple[int, int]], ops: list[tuple[int, int]],
                       out: dict[str, list[float]]) -> None:
    t = time.process_time()
    b = SetBuddy(ranges)
    boot = time.process_time() - t
    fill = cpu_timed(lambda: b.replay(ops))
    out.setdefault("peer boot", []).append(boot)
    out.setdefault("peer fill", []).append(fill)


def first_touch(nbytes: int) -> float:
    """Seconds the kernel spends handing out ``nbytes`` of fresh (zeroed) memory.

    Writing a fresh array costs page faults and zeroing on top of the
    write itself; rewriting the same array does not.
    """
    fresh = median([cpu_timed(lambda: np.ones(nbytes, np.uint8)) for _ in range(3)])
    warm = np.ones(nbytes, np.uint8)
    rewrite = median([cpu_timed(lambda: warm.fill(2)) for _ in range(3)])
    return max(0.0, fresh - rewrite)


def peak_bytes_per_page(fn, pages: int) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / pages


def free_gib(m: vm.Machine) -> tuple[int, int]:
    """The lowest MAX_ORDER-aligned 1 GiB of ZONE_NORMAL that holds only free pages.

    The booted q35 guest keeps kernel memory at both ends of ZONE_NORMAL
    (memblock's bottom-up boot allocations and slab at its start, the
    top-down ones such as the memmap at its end), which alloc_contig_range()
    cannot migrate (-EBUSY); the range measured is the free one between.
    """
    z, mm, geo = m.zones["Normal"], m.node.mm, m.geometry
    step, span = geo.max_order_nr_pages, vm.GiB >> geo.page_shift
    busy = np.flatnonzero(mm.state[z.start_pfn:z.end_pfn] != PageState.FREE) + z.start_pfn
    for start in range(z.start_pfn, z.end_pfn - span + 1, step):
        if not np.any((busy >= start) & (busy < start + span)):
            return start, start + span
    raise AssertionError("no free GiB in ZONE_NORMAL")


def fill_movable(m: vm.Machine, start: int, end: int) -> None:
    """Make every page of [start, end) an allocated movable page, nothing else held.

    Movable bulk allocations run until the range is covered; those landing
    outside the range are freed again.
    """
    mm, taken = m.node.mm, []
    while np.any(mm.state[start:end] == PageState.FREE):
        taken.append(m.alloc_pages_bulk(end - start, "GFP_HIGHUSER_MOVABLE"))
    pfns = np.concatenate(taken)
    free_pages_bulk(m.node, pfns[(pfns < start) | (pfns >= end)])


def contig_1gib(half_full: bool) -> float:
    """alloc_contig_range() of a free 1 GiB of ZONE_NORMAL in a 4 GiB guest (the call only)."""
    m = vm.Machine(boot_memory=4 * vm.GiB, seed=0)
    start, end = free_gib(m)
    if half_full:
        # Movable pages fill the range; then every other 2 MiB pageblock is freed.
        fill_movable(m, start, end)
        pfns = np.arange(start, end)
        free_pages_bulk(m.node, pfns[(pfns - start) // 512 % 2 == 1])
    t = time.process_time()
    rc = m.alloc_contig_range(start, end)
    elapsed = time.process_time() - t
    assert rc == 0, rc
    return elapsed


def main(argv: list[str]) -> None:
    start_load = load()
    ranges, ops = record_fill(PEER_GIB)
    pages = sum(n for _, n in ops)
    times: dict[str, list[float]] = {}
    cases = {f"{g} GiB": (lambda g=g: boot_and_fill(g, times)) for g in GUESTS_GIB}
    cases["peer"] = lambda: peer_boot_and_fill(ranges, ops, times)
    interleaved(cases, REPEATS)
    med = {k: median(v) for k, v in times.items()}

    vm_total = med[f"{PEER_GIB} boot"] + med[f"{PEER_GIB} fill"]
    peer_total = med["peer boot"] + med["peer fill"]
    peer_rows = [
        "| 16 GiB guest, fill to 75% (70/20/10) | vmemlab | per-page peer | peer / vmemlab |",
        "|---|---|---|---|",
        f"| boot | {ms(med['16 boot'])} | {ms(med['peer boot'])} | - |",
        f"| fill: {pages:,} order-0 allocations | {ms(med['16 fill'])} "
        f"| {ms(med['peer fill'])} | **{med['peer fill'] / med['16 fill']:.0f}x** (goal 30x) |",
        f"| boot + fill | {ms(vm_total)} | {ms(peer_total)} "
        f"| **{peer_total / vm_total:.0f}x** (goal 20x) |",
    ]

    sizes = {}
    for g in GUESTS_GIB:
        m = vm.Machine(boot_memory=g * vm.GiB, seed=0)
        sizes[g] = (m.node.mm.nbytes(), sum(z.present_pages for z in m.node.zones))
    touch = {g: first_touch(sizes[g][0]) for g in GUESTS_GIB}
    mem = {g: peak_bytes_per_page(lambda g=g: workload.fill(
        vm.Machine(boot_memory=g * vm.GiB, seed=0), FILL), sizes[g][1]) for g in GUESTS_GIB}
    peer_mem = peak_bytes_per_page(lambda: SetBuddy(ranges).replay(ops), sizes[PEER_GIB][1])
    growth_rows = ["| guest | boot | fill to 75% | boot + fill | of which first touch "
                   "| peak bytes per page |", "|---|---|---|---|---|---|"]
    for g in GUESTS_GIB:
        total = med[f"{g} boot"] + med[f"{g} fill"]
        growth_rows.append(f"| {g} GiB | {ms(med[f'{g} boot'])} | {ms(med[f'{g} fill'])} "
                           f"| {ms(total)} | {ms(touch[g])} | {mem[g]:.1f} |")
    lo, hi = GUESTS_GIB[0], GUESTS_GIB[-1]
    t_lo = med[f"{lo} boot"] + med[f"{lo} fill"]
    t_hi = med[f"{hi} boot"] + med[f"{hi} fill"]
    pages_ratio = sizes[hi][1] / sizes[lo][1]
    growth = (f"Growth {lo} -> {hi} GiB ({pages_ratio:.0f}x the pages): boot + fill "
              f"**{t_hi / t_lo:.1f}x** (goal at most 17x); without the first touch of fresh "
              f"memory {(t_hi - touch[hi]) / (t_lo - touch[lo]):.1f}x.  The peer needs "
              f"{peer_mem:.0f} bytes per page for the same 16 GiB fill.")

    contig = interleaved({"free": lambda: contig_1gib(False),
                          "half": lambda: contig_1gib(True)}, REPEATS)
    start, end = free_gib(vm.Machine(boot_memory=4 * vm.GiB, seed=0))
    contig_rows = [
        f"| alloc_contig_range of 1 GiB in ZONE_NORMAL of a 4 GiB guest (pfn {start:#x}-"
        f"{end - 1:#x}, the first free GiB above the boot kernel's memory) | vmemlab "
        "| real kernel |",
        "|---|---|---|",
        f"| range already free | {ms(median(contig['free']))} | about 5 ms |",
        f"| half the range full of movable pages (131072 migrated) "
        f"| {ms(median(contig['half']))} | about 20 ms |"]

    text = "\n".join(peer_rows + ["", NOTE_PEER, "", *growth_rows, "", growth, "", NOTE_GROWTH,
                                  "", *contig_rows])
    print(text)
    if "--write" in argv:
        update_section("core", text, f"Median of {REPEATS} interleaved repeats (16 GiB peer, "
                       "4, 16 and 64 GiB guests in turn), CPU time of the one process "
                       "(user + system, `time.process_time`: other work on the machine "
                       "stretches wall time, the long peer runs most, but this far less); bytes "
                       "per page from a separate tracemalloc run (peak during boot and fill "
                       "/ present pages).", start_load)


if __name__ == "__main__":
    main(sys.argv[1:])
