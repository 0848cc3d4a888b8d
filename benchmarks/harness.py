"""What every benchmark shares: the machine it ran on, interleaved repeats, medians.

Cases that are compared run in the same process, one after the other in
turn (A B A B ...), so a slow moment of a shared machine hits both; the
figure reported is the median of the repeats.  Nothing is traced while it
is timed (memory is measured in separate runs).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

# A case returns the seconds of the part it times (a float), or anything else: then the
# whole call is timed.
Case = Callable[[], object]


def cpu_model() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (the platform's name elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """One line naming the machine: CPU, cores, Python and numpy versions."""
    return (f"{cpu_model()} ({os.cpu_count()} logical CPUs, {platform.machine()}), "
            f"Python {platform.python_version()}, numpy {np.__version__}")


def load() -> float:
    """The 1-minute load average (how busy the machine was), or -1 where unknown."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return -1.0


def interleaved(cases: dict[str, Case], repeats: int) -> dict[str, list[float]]:
    """Run every case once per round, in turn, for ``repeats`` rounds; seconds per run."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, case in cases.items():
            start = time.perf_counter()
            part = case()
            times[name].append(part if isinstance(part, float)
                               else time.perf_counter() - start)
    return times


def median(times: list[float]) -> float:
    return statistics.median(times)


def ms(seconds: float) -> str:
    """Milliseconds with sensible precision."""
    value = seconds * 1e3
    return f"{value:.1f} ms" if value < 10 else f"{value:.0f} ms"


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cpu_timed(fn: Callable[[], object]) -> float:
    """CPU seconds (user + system) this process spends in one call of ``fn``.

    Other work on a shared machine stretches wall time, the more the longer
    a case runs (a 2 s peer more than a 0.1 s vmemlab run); it stretches the
    process's own CPU time far less.
    """
    start = time.process_time()
    fn()
    return time.process_time() - start
