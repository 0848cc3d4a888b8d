"""Execute notebooks in place so their committed outputs are fresh and deterministic.

    .venv/bin/python tools/run_notebooks.py                 # every notebook
    .venv/bin/python tools/run_notebooks.py notebooks/02_buddy_allocator.ipynb

Outputs are what ``pytest --nbval`` later compares against.  Widget state
and execution timestamps are dropped (they churn on every run); execution
counts are kept.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def execute(path: Path) -> tuple[nbformat.NotebookNode, float]:
    """Run ``path`` top to bottom in a fresh kernel; the executed notebook and the seconds."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb, time.perf_counter() - start


def run(path: Path) -> float:
    """Execute ``path`` and write it back with its outputs; the seconds it took."""
    nb, seconds = execute(path)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)  # timestamps: churn without meaning
    nbformat.write(nb, path)
    return seconds


def main(args: list[str]) -> int:
    paths = [Path(a) for a in args] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    for path in paths:
        print(f"{path.name}: {run(path):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
