"""Keep benchmarks/RESULTS.md: each benchmark script owns one marked section.

    .venv/bin/python benchmarks/results.py          # run every benchmark, rewrite RESULTS.md
    .venv/bin/python benchmarks/results.py core viz # only these sections

Every section ends with a stamp naming the machine (measured, not
assumed), the method (repeats and statistic) and the load average while
it ran.
"""

from __future__ import annotations

import importlib
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import load, machine

RESULTS = Path(__file__).parent / "RESULTS.md"
SECTIONS = {"core": "bench_core", "free": "bench_free", "virtio_mem": "bench_virtio_mem",
            "viz": "bench_viz", "notebooks": "bench_notebooks"}


def update_section(name: str, body: str, method: str, load_at_start: float) -> None:
    """Replace the text between <!-- name --> markers (appending the section if new)."""
    stamp = (f"_Measured {time.strftime('%Y-%m-%d')} on {machine()}. {method} "
             f"Load average (1 min) {load_at_start:.1f} at the start, {load():.1f} at the end._")
    block = f"<!-- {name} -->\n{body}\n\n{stamp}\n<!-- /{name} -->"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"<!-- {name} -->.*?<!-- /{name} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) \
        else text.rstrip() + "\n\n" + block
    RESULTS.write_text(text.rstrip() + "\n")


def main(names: list[str]) -> None:
    for name in names or list(SECTIONS):
        importlib.import_module(SECTIONS[name]).main(["--write"])


if __name__ == "__main__":
    main(sys.argv[1:])
