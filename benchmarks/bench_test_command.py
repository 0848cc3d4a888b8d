"""The README's test command from a fresh clone: time, tests passed, machine load.

    python3 benchmarks/bench_test_command.py             # one run, printed
    python3 benchmarks/bench_test_command.py --runs 3 --write   # ... added to RESULTS.md

Each run clones this repository's HEAD into a temporary folder and runs
``python3 lab.py setup`` (the install: a new .venv) and then
``python3 lab.py test`` there, exactly as a new user or .ci/run would.
Needs only Python (like lab.py); other work on the machine is not stopped,
so the load average is recorded beside each time.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import load
from results import RESULTS, update_section

ROOT = Path(__file__).resolve().parent.parent
SECTION = "test_command"
HEADER = ["| date | commit | install | `python3 lab.py test` | total | result | load (1 min avg: "
          "start / mean / max) |", "|---|---|---|---|---|---|---|"]


class LoadSampler(threading.Thread):
    """Samples the 1-minute load average every few seconds until stopped."""

    def __init__(self, every: float = 5) -> None:
        super().__init__(daemon=True)
        self.every, self.samples, self.done = every, [os.getloadavg()[0]], threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every):
            self.samples.append(os.getloadavg()[0])


def timed(cmd: list[str], cwd: Path, log: Path) -> tuple[float, int]:
    """Run ``cmd`` with its output in ``log``; seconds and exit status."""
    start = time.monotonic()
    with open(log, "ab") as out:
        rc = subprocess.call(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
    return time.monotonic() - start, rc


def summary(log: Path) -> str:
    """pytest's closing counts, e.g. '1012 passed, 3 skipped'."""
    found = re.findall(r"^=+ (.*\d+ (?:passed|failed).*?) in [\d.]+s", log.read_text(), re.M)
    return re.sub(r", \d+ warnings?", "", found[-1]) if found else "no pytest summary"


def one_run(work: Path, n: int) -> str:
    """Clone, install, test; the table row."""
    clone = work / f"clone{n}"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, check=True,
                            capture_output=True, text=True).stdout.strip()
    log = work / f"run{n}.log"
    load = LoadSampler()
    load.start()
    install, rc = timed([sys.executable, "lab.py", "setup"], clone, log)
    tests, rc = timed([sys.executable, "lab.py", "test"], clone, log) if rc == 0 else (0, rc)
    load.done.set()
    load.join()
    result = summary(log) + ("" if rc == 0 else f" (exit {rc}; log {log})")
    s = load.samples
    return (f"| {time.strftime('%Y-%m-%d %H:%M')} | {commit} | {install / 60:.1f} min "
            f"| {tests / 60:.1f} min | **{(install + tests) / 60:.1f} min** | {result} "
            f"| {s[0]:.1f} / {sum(s) / len(s):.1f} / {max(s):.1f} on {os.cpu_count()} cores |")


def rows_so_far() -> list[str]:
    text = RESULTS.read_text() if RESULTS.exists() else ""
    section = re.search(rf"<!-- {SECTION} -->(.*?)<!-- /{SECTION} -->", text, re.S)
    lines = section.group(1).splitlines() if section else []
    return [ln for ln in lines if ln.startswith("| 2")]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1, help="runs one after another (default 1)")
    ap.add_argument("--write", action="store_true", help="add the rows to RESULTS.md")
    args = ap.parse_args(argv)
    load_at_start = load()
    work = Path(tempfile.mkdtemp(prefix="vmemlab-test-command-"))
    work.chmod(0o755)     # as a clone in a home folder: other users may read it
    rows = []
    for n in range(args.runs):
        rows.append(one_run(work, n))
        print(rows[-1], flush=True)
    if args.write:
        body = "\n".join([*HEADER, *rows_so_far(), *rows]) + (
            "\n\nEach row: a fresh `git clone`, then `python3 lab.py setup` (a new .venv from "
            "requirements.txt) and `python3 lab.py test` (pytest-xdist, 2 workers), measured "
            "by `benchmarks/bench_test_command.py` while other work ran on the machine.")
        update_section(SECTION, body, "Each run timed end to end (wall clock); the machine's "
                       "other work named by the load columns.", load_at_start)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
