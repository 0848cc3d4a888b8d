"""The notebook series: how long each notebook takes to run, top to bottom.

    .venv/bin/python benchmarks/bench_notebooks.py            # print the table
    .venv/bin/python benchmarks/bench_notebooks.py --write    # also update RESULTS.md

Each notebook of ``notebooks/`` is executed in memory with nbclient (a fresh
kernel each, as nbval and "Run All" do; nothing is written back).  The time
includes the kernel's start.  Goal (issue 7): the whole series in under two
minutes on one machine.  One run per notebook, one after the other.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from harness import load
from results import update_section
from run_notebooks import execute

ROOT = Path(__file__).resolve().parent.parent

GOAL_S = 120


def run(path: Path) -> tuple[float, int]:
    """Seconds to execute ``path`` with a fresh kernel, and its number of code cells."""
    nb, seconds = execute(path)
    return seconds, sum(c.cell_type == "code" for c in nb.cells)


def table() -> str:
    rows = ["| notebook | code cells | run all |", "|---|---|---|"]
    total = 0.0
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        seconds, cells = run(path)
        total += seconds
        rows.append(f"| {path.stem} | {cells} | {seconds:.1f} s |")
        print(rows[-1], flush=True)
    rows.append(f"| **the series** | | **{total:.0f} s** (goal: under {GOAL_S} s) |")
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    start_load = load()
    body = table()
    print(body.splitlines()[-1])
    if "--write" in argv:
        update_section("notebooks", body, "One run of each notebook in a fresh kernel (its "
                       "start included), one after the other; wall clock.", start_load)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
