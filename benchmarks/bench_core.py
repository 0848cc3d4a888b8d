"""Core benchmarks: boot and fill, memory per page, alloc_contig_range.

    .venv/bin/python benchmarks/bench_core.py            # print the table
    .venv/bin/python benchmarks/bench_core.py --write    # also update RESULTS.md

Times are the best of ``REPEAT`` runs (wall clock, one core); memory is the
peak traced by tracemalloc during boot and fill, per simulated page.
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from pathlib import Path

import vmemlab as vm
from vmemlab import workload
from vmemlab.bulk import free_pages_bulk

sys.path.insert(0, str(Path(__file__).parent))
from baseline_buddy import SetBuddy
from results import update_section

REPEAT = 3


def best(fn, repeat: int = REPEAT) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def boot_and_fill(gib: int) -> tuple[float, float, float]:
    """(boot s, fill s, peak bytes per page)."""
    boot = best(lambda: vm.Machine(boot_memory=gib * vm.GiB, seed=0))
    fills = []
    for _ in range(REPEAT):
        m = vm.Machine(boot_memory=gib * vm.GiB, seed=0)
        t = time.perf_counter()
        workload.fill(m, 0.75)
        fills.append(time.perf_counter() - t)
    tracemalloc.start()
    m = vm.Machine(boot_memory=gib * vm.GiB, seed=0)
    workload.fill(m, 0.75)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    pages = sum(z.present_pages for z in m.node.zones)
    return boot, min(fills), peak / pages


def baseline_fill(gib: int) -> tuple[float, float]:
    """The per-page set-based allocator doing the same 75% fill: (s, bytes/page)."""
    pages = gib * vm.GiB // 4096
    n = int(pages * 0.75)
    tracemalloc.start()
    b = SetBuddy(pages)
    t = time.perf_counter()
    for _ in range(n):
        b.alloc(0)
    elapsed = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return elapsed, peak / pages


def contig_1gib(half_full: bool) -> float:
    """alloc_contig_range() of 1 GiB in ZONE_NORMAL of a 4 GiB guest."""
    times = []
    for _ in range(REPEAT):
        m = vm.Machine(boot_memory=4 * vm.GiB, seed=0)
        start = m.zones["Normal"].start_pfn
        end = start + (vm.GiB >> 12)
        if half_full:
            # Movable pages fill the range; then every other 2 MiB pageblock is freed.
            pfns = m.alloc_pages_bulk(end - start, "GFP_HIGHUSER_MOVABLE")
            assert pfns.min() == start and pfns.max() == end - 1
            free_pages_bulk(m.node, pfns[(pfns - start) // 512 % 2 == 1])
        t = time.perf_counter()
        rc = m.alloc_contig_range(start, end)
        times.append(time.perf_counter() - t)
        assert rc == 0, rc
    return min(times)


def main(write: bool) -> None:
    rows = []
    for gib in (4, 16, 64):
        boot, fill, per_page = boot_and_fill(gib)
        rows.append((gib, boot, fill, per_page))
    base_s, base_bpp = baseline_fill(16)
    free_s = contig_1gib(False)
    half_s = contig_1gib(True)
    lines = ["| guest | boot | fill to 75% (70/20/10) | peak bytes per page |",
             "|---|---|---|---|"]
    lines += [f"| {g} GiB | {b * 1e3:.0f} ms | {f * 1e3:.0f} ms | {p:.1f} |"
              for g, b, f, p in rows]
    f16 = next(f for g, _, f, _ in rows if g == 16)
    lines += ["",
              f"Baseline (per-page Python buddy with set free lists, one call per page, "
              f"same 16 GiB fill): {base_s:.2f} s, {base_bpp:.0f} bytes per page. "
              f"vmemlab is {base_s / f16:.0f}x faster.",
              "",
              "| alloc_contig_range of 1 GiB in ZONE_NORMAL | vmemlab | real kernel |",
              "|---|---|---|",
              f"| range already free | {free_s * 1e3:.1f} ms | about 5 ms |",
              f"| half the range full of movable pages (131072 migrated) | {half_s * 1e3:.1f} ms "
              "| about 20 ms |"]
    text = "\n".join(lines)
    print(text)
    if write:
        update_section("core", text)


if __name__ == "__main__":
    main("--write" in sys.argv)
