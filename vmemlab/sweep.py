"""Parameter sweeps: one scenario, many seeds or values, run in parallel.

``plan_sweep(path, params, seeds)`` expands the product of every
``--param KEY=V1,V2`` and every seed into ``Task``s, checking each
combination with the scenario loader first (a bad value fails before
anything runs).  ``run_task`` runs one task and returns one table row;
``run_sweep`` runs them all in local processes (``jobs``), in this process
(``jobs=1``), or on a Dask cluster (``scheduler``), reporting progress to a
callback.  Rows come back in task order whatever finished first, and each
run builds its own Machine from its own seed, so a sweep gives the same
table on any number of workers.

A task carries the scenario's text, not its path, so remote Dask workers
need no access to the file.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .constants import errname, format_size
from .scenario import load_scenario, parse_override, parse_scenario

Row = dict[str, Any]
DASK_CONNECT_TIMEOUT = "10s"
MAX_RUNS = 10_000           # runs in one sweep (seeds times values)
JOBS_PER_CPU = 4            # local worker processes, at most, per CPU of this computer
_ADDRESS = re.compile(r"(?:(tcp|tls|ws|wss|ucx)://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+)"
                      r":([0-9]{1,5})|inproc://\S+")


def max_jobs() -> int:
    """The most local worker processes a sweep may start here."""
    return JOBS_PER_CPU * (os.cpu_count() or 1)


def check_jobs(jobs: int) -> int:
    """A number of local workers from 1 to ``max_jobs()``; ValueError naming the limit."""
    limit = max_jobs()
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= limit:
        raise ValueError(f"jobs={jobs!r} must be a whole number from 1 to {limit} "
                         f"({JOBS_PER_CPU} per CPU of this computer)")
    return jobs


def check_scheduler(address: str) -> str:
    """A Dask scheduler address: [tcp|tls|ws|wss|ucx://]HOST:PORT, or inproc://... ."""
    m = _ADDRESS.fullmatch(address) if isinstance(address, str) else None
    if m is None or (m[3] is not None and not 0 < int(m[3]) < 65536):
        raise ValueError(f"scheduler={address!r} is not a scheduler address like "
                         "tcp://10.0.0.5:8786 or HOST:PORT")
    return address


@dataclass(frozen=True)
class Task:
    """One run of a sweep: the scenario text and the values it overrides."""

    index: int
    source: str
    text: str
    overrides: tuple[tuple[str, Any], ...]


def parse_seeds(text: str) -> list[int]:
    """"0-99", "1,5,9" or "0-9,20" as a list of seeds; ValueError names the bad part.

    At most MAX_RUNS seeds, counted before any list is built.
    """
    ranges: list[range] = []
    for part in (p.strip() for p in text.split(",")):
        lo, sep, hi = part.partition("-")
        if not (_digits(lo) and (not sep or _digits(hi))) or (sep and int(hi) < int(lo)):
            raise ValueError(f"{part!r} in {text!r} is not a seed or a range LO-HI of seeds "
                             "(whole numbers >= 0)")
        ranges.append(range(int(lo), int(hi if sep else lo) + 1))
        if sum(map(len, ranges)) > MAX_RUNS:
            raise ValueError(f"{text!r} holds {sum(map(len, ranges))} or more seeds; a sweep "
                             f"runs at most {MAX_RUNS}")
    return [seed for r in ranges for seed in r]


def _digits(text: str) -> bool:
    """ASCII digits only, at most 20 of them (seeds are 64-bit at most)."""
    return 0 < len(text) <= 20 and text.isascii() and text.isdigit()


def plan_sweep(path: str | Path, params: Sequence[str] = (),
               seeds: Sequence[int] | None = None) -> list[Task]:
    """Every combination of the ``KEY=V1,V2`` params and the seeds, checked.

    Raises ValueError (a ScenarioError for the file) naming what is wrong.
    """
    source = str(path)
    load_scenario(path)                    # the file itself is fine
    text = Path(path).read_text(encoding="utf-8-sig")
    axes = []
    for p in params:
        key, values = parse_override(p)
        if key == "machine.seed" and seeds is not None:
            raise ValueError(f"--param {p!r}: give seeds with --seeds, not both")
        axes.append([(key, v) for v in values])
    if seeds is not None:
        axes.append([("machine.seed", s) for s in seeds])
    runs = math.prod(len(a) for a in axes)
    if runs > MAX_RUNS:
        raise ValueError(f"{' x '.join(str(len(a)) for a in axes)} = {runs} runs; a sweep "
                         f"runs at most {MAX_RUNS}")
    tasks = []
    for i, combo in enumerate(itertools.product(*axes)):
        parse_scenario(text, source, dict(combo))    # fails here, before anything runs
        tasks.append(Task(i, source, text, tuple(combo)))
    if not tasks:
        tasks.append(Task(0, source, text, ()))
    return tasks


def run_task(task: Task) -> Row:
    """Run one task (in any process) and return its row of the table."""
    from .scenario_run import run_scenario

    sc = parse_scenario(task.text, task.source, dict(task.overrides))
    start = time.perf_counter()
    result = run_scenario(sc)
    row: Row = {"run": task.index, **dict(task.overrides)}
    row.setdefault("machine.seed", sc.machine.seed)
    reached: dict[str, float] = {}
    for step in result.steps:
        reached |= {d.name: d.reached_in for d in step.devices if d.reached_in is not None}
    for d in result.steps[-1].devices if result.steps else []:
        row |= {f"{d.name}.requested_size": d.requested_size, f"{d.name}.size": d.size,
                f"{d.name}.last_rc": "" if d.last_rc is None else errname(d.last_rc),
                f"{d.name}.converged": d.converged,
                f"{d.name}.reached_in": reached.get(d.name, "") if d.converged else "",
                f"{d.name}.broken": d.broken}
    row |= {"sim_seconds": round(result.machine.now, 6),
            "expectations_failed": len(result.failures),
            "wall_seconds": round(time.perf_counter() - start, 3)}
    return row


Progress = Callable[[int, int], None]


def run_sweep(tasks: Sequence[Task], jobs: int | None = None, scheduler: str | None = None,
              progress: Progress | None = None) -> list[Row]:
    """Run every task; rows in task order.  ``progress(done, total)`` after each.

    ``jobs`` is at most ``max_jobs()``; ValueError for more or for a
    scheduler that is not an address.
    """
    if scheduler is not None:
        return _run_dask(tasks, check_scheduler(scheduler), progress)
    jobs = check_jobs(jobs if jobs is not None else os.cpu_count() or 1)
    if jobs == 1 or len(tasks) == 1:
        rows = []
        for t in tasks:
            rows.append(run_task(t))
            if progress:
                progress(len(rows), len(tasks))
        return rows
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return _collect({pool.submit(run_task, t): t.index for t in tasks},
                        as_completed, len(tasks), progress)


def _collect(futures: dict[Any, int], completed: Callable[[Iterable[Any]], Iterable[Any]],
             total: int, progress: Progress | None) -> list[Row]:
    rows: dict[int, Row] = {}
    for fut in completed(list(futures)):
        rows[futures[fut]] = fut.result()
        if progress:
            progress(len(rows), total)
    return [rows[i] for i in sorted(rows)]


def _run_dask(tasks: Sequence[Task], address: str, progress: Progress | None) -> list[Row]:
    """Submit every task to a Dask cluster at ``address`` (dask.distributed)."""
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError as e:
        raise RuntimeError("--scheduler needs dask.distributed "
                           f"(pip install 'dask[distributed]'): {e}") from None
    with Client(address, timeout=DASK_CONNECT_TIMEOUT) as client:
        futures = {client.submit(run_task, t, pure=False): t.index for t in tasks}
        return _collect(futures, dask_completed, len(tasks), progress)


# ------------------------------------------------------------------ outputs
def columns(rows: Sequence[Row]) -> list[str]:
    """Every column of the table, in first-seen order."""
    return list(dict.fromkeys(k for row in rows for k in row))


def to_csv(rows: Sequence[Row]) -> str:
    """The table as CSV text (RFC 4180, header first)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def swept_keys(rows: Sequence[Row]) -> list[str]:
    """The columns that vary across runs among the overrides (the x axis)."""
    keys = [c for c in columns(rows) if c not in ("run",) and not _is_result(c)]
    return [k for k in keys if len({str(r.get(k)) for r in rows}) > 1] or ["machine.seed"]


def _is_result(column: str) -> bool:
    return re.match(r"vmem\d+\.", column) is not None or column in (
        "sim_seconds", "expectations_failed", "wall_seconds")


def devices(rows: Sequence[Row]) -> list[str]:
    return sorted({c.split(".")[0] for c in columns(rows) if c.endswith(".size")})


def summary(rows: Sequence[Row]) -> str:
    """One line per group of runs that share the swept values (all seeds together)."""
    group_keys = [k for k in swept_keys(rows) if k != "machine.seed"]
    groups: dict[tuple, list[Row]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in group_keys), []).append(r)
    out = []
    for values, members in groups.items():
        label = ", ".join(f"{k}={v}" for k, v in zip(group_keys, values, strict=True)) \
            or "all runs"
        for dev in devices(rows):
            sizes = [r[f"{dev}.size"] for r in members]
            rcs = sorted({r[f"{dev}.last_rc"] or "not run" for r in members})
            ok = sum(bool(r[f"{dev}.converged"]) for r in members)
            out.append(f"{label}: {dev} plugged {format_size(min(sizes))}"
                       + (f"..{format_size(max(sizes))}" if max(sizes) != min(sizes) else "")
                       + f" of {format_size(members[0][f'{dev}.requested_size'])}; reached in "
                       f"{ok}/{len(members)} runs; last rc {', '.join(rcs)}")
    return "\n".join(out) + "\n"


def draw(fig: Any, axes: Any, rows: Sequence[Row], title: str) -> None:
    """Plugged size and time to reach the request, per run, against the swept values.

    Runs that differ only in their seed share an x position.

    Takes a figure and two axes from ``vmemlab.viz.new_figure`` (matplotlib
    stays inside vmemlab.viz; here only Axes methods are called).
    """
    keys = [k for k in swept_keys(rows) if k != "machine.seed"] or ["machine.seed"]
    labels = [", ".join(str(r.get(k)) for k in keys) for r in rows]
    xs_of = {lab: i for i, lab in enumerate(dict.fromkeys(labels))}
    xs = [xs_of[lab] for lab in labels]
    top, bottom = axes
    any_reached = False
    for dev in devices(rows):
        top.scatter(xs, [r[f"{dev}.size"] / 2**20 for r in rows], s=18, label=f"{dev} plugged")
        top.scatter(xs, [r[f"{dev}.requested_size"] / 2**20 for r in rows], marker="_", s=200,
                    color="black", label=f"{dev} requested")
        reached = [(x, r[f"{dev}.reached_in"]) for x, r in zip(xs, rows, strict=True)
                   if r[f"{dev}.reached_in"] != ""]
        if reached:
            bottom.scatter(*zip(*reached, strict=True), s=18, label=dev)
            any_reached = True
    if not any_reached:
        bottom.text(0.5, 0.5, "no run reached its last request", ha="center", va="center",
                    transform=bottom.transAxes, color="0.4")
        bottom.set_yticks([])
    top.set_ylabel("MiB after the last step")
    bottom.set_ylabel("simulated s to reach\nthe last request")
    for ax in axes:
        ax.set_xticks(range(len(xs_of)), list(xs_of), rotation=30 if len(xs_of) > 8 else 0,
                      fontsize="small")
        ax.grid(alpha=0.3)
    bottom.set_xlabel(" / ".join(keys))
    top.legend(fontsize="small", loc="best")
    top.set_title(title)
