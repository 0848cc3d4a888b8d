"""The long fuzz: the test suite's seeded fuzz (tests/test_fuzz.py), much longer.

    .venv/bin/python benchmarks/bench_fuzz.py [--steps N] [--seeds K] [--write]

Every configuration (teaching and x86-64 machines of every kernel profile)
runs ``--seeds`` seeds of mixed operations, ``validate()`` and page
conservation after each step; an x86-64 step validates a 4.5 GiB address
space, so it gets a twentieth of a teaching machine's steps.  A failure
stops the run and prints the configuration, seed, step and last operations
(replay: ``Fuzz(config, seed).run(step)``).  ``--write`` puts the table into
RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))
from results import load, update_section  # noqa: E402

from tests.test_fuzz import Fuzz, configs  # noqa: E402

X86_SHARE = 20       # a teaching machine takes this many steps per x86-64 step


def run(steps: int, seeds: int) -> list[dict]:
    rows = []
    for config in configs():
        n = steps if config.teaching else max(1, steps // X86_SHARE)
        counts: Counter = Counter()
        wall, cpu = time.perf_counter(), time.process_time()
        for seed in range(seeds):
            counts += Fuzz(config, seed=1000 + seed).run(n).counts
        rows.append(dict(config=config, steps=n * seeds, seeds=seeds, counts=counts,
                         wall=time.perf_counter() - wall, cpu=time.process_time() - cpu))
        print(f"{config}: {n * seeds} steps, {rows[-1]['cpu']:.1f} s CPU", file=sys.stderr)
    return rows


def table(rows: list[dict]) -> str:
    out = ["| machine | kernel | online policy | seeds | steps | bad calls refused | "
           "CPU time | steps/s | failures |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        c = r["config"]
        out.append(f"| {c.geometry} | {c.kernel} | {c.policy} | {r['seeds']} | {r['steps']:,} "
                   f"| {r['counts']['bad']:,} | {r['cpu']:.0f} s | {r['steps'] / r['cpu']:.0f} "
                   "| 0 |")
    total = sum(r["steps"] for r in rows)
    ops = sum((r["counts"] for r in rows), Counter())
    mix = ", ".join(f"{name} {n:,}" for name, n in ops.most_common())
    return ("\n".join(out) + f"\n\n{total:,} steps in all, `validate()` and page conservation "
            f"after each; operations: {mix}.")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=25_000, help="teaching-machine steps per seed")
    p.add_argument("--seeds", type=int, default=2, help="seeds per configuration")
    p.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    load_at_start = load()
    text = table(run(args.steps, args.seeds))
    print(text)
    if args.write:
        update_section("fuzz", text, f"{args.seeds} seeds per configuration, seeded "
                       "(1000 + seed), one process; CPU time per configuration.",
                       load_at_start)


if __name__ == "__main__":
    main()
