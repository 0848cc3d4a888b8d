"""``vmemlab sweep SCENARIO.toml``: a scenario over many seeds or values, in parallel.

Plans the runs (``vmemlab.sweep.plan_sweep``), runs them in local
processes or on a Dask cluster with a text progress bar on stderr, and
writes the table (CSV) and a plot (PNG); a summary per swept value goes to
stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import IO, Any

from .cli_common import UsageError, check_output_path, count_arg, write_png
from .scenario import ScenarioError
from .sweep import JOBS_PER_CPU

SWEEP_DESCRIPTION = """\
Run a scenario file many times: over seeds (--seeds 0-99) and over values of
any of its keys (--param devices.0.requested_size=1G,2G,4G), every
combination once.  Runs go to local processes (--jobs) or, with --scheduler,
to a Dask cluster (its workers need vmemlab installed; the scenario travels
as text, so they need not see the file).  Each run builds its own machine from its own seed, so the
table is the same however many workers there are.  Writes one CSV row per
run (the swept values, then per device: requested and plugged size, the
driver's last rc, whether and how fast it reached the last request) and a
plot, and prints a summary per swept value."""

SWEEP_EPILOG = """\
--param keys are the file's keys: machine.KEY, devices.N.KEY, steps.N.KEY,
steps.N.expect.KEY (N counts from 0).  Values are TOML scalars or sizes.

examples:
  python -m vmemlab sweep scenarios/01_zone_normal_unmovable.toml --seeds 0-19
  python -m vmemlab sweep scenarios/02_zone_movable.toml \\
      --param machine.auto_online_blocks=online,online_movable --seeds 0-9
  python -m vmemlab sweep scenarios/00_happy_path.toml \\
      --param steps.2.requested_size=0,512M,1G --csv out.csv --png out.png
  python -m vmemlab sweep scenarios/01_zone_normal_unmovable.toml --seeds 0-99 \\
      --scheduler tcp://scheduler:8786
"""


def add_sweep(sub: argparse._SubParsersAction) -> None:
    """Register ``sweep``: run a scenario over seeds and parameter values."""
    p = sub.add_parser("sweep", help="run a scenario over many seeds or values, in parallel",
                       description=SWEEP_DESCRIPTION, epilog=SWEEP_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", metavar="SCENARIO.toml", help="the scenario file")
    p.add_argument("--param", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="values for one key of the file (repeatable: every combination)")
    p.add_argument("--seeds", metavar="SEEDS",
                   help="machine seeds: 0-99, 1,5,9 or 0-9,20 (default: the file's)")
    p.add_argument("--jobs", "-j", type=_jobs, default=os.cpu_count() or 1, metavar="N",
                   help="local worker processes (default: one per CPU; 1 runs in this "
                        f"process; at most {JOBS_PER_CPU} per CPU)")
    p.add_argument("--scheduler", type=_scheduler, metavar="ADDRESS",
                   help="run on the Dask cluster whose scheduler is at ADDRESS "
                        "(e.g. tcp://10.0.0.5:8786) instead of local processes")
    p.add_argument("--csv", metavar="FILE", help="the table (default: SCENARIO-sweep.csv)")
    p.add_argument("--png", metavar="FILE", help="the plot (default: SCENARIO-sweep.png)")
    p.add_argument("--no-png", action="store_true", help="do not draw the plot")
    p.set_defaults(run=run_sweep_cmd)


class TextProgress:
    """A progress bar on a terminal; on a pipe or file, a line per tenth."""

    def __init__(self, stream: IO[str], width: int = 30) -> None:
        self.stream, self.width, self.start = stream, width, time.perf_counter()
        self.tty = stream.isatty()
        self.shown = -1

    def __call__(self, done: int, total: int) -> None:
        tenth = done * 10 // total
        if not self.tty and tenth == self.shown:
            return
        self.shown = tenth
        fill = done * self.width // total
        bar = f"sweep [{'#' * fill}{'.' * (self.width - fill)}] {done}/{total} runs, " \
              f"{time.perf_counter() - self.start:.1f} s"
        end = "\n" if done == total or not self.tty else ""
        self.stream.write(("\r" if self.tty else "") + bar + end)
        self.stream.flush()


def run_sweep_cmd(args: argparse.Namespace) -> int:
    from . import sweep

    stem = Path(args.scenario).stem
    csv_path = args.csv or f"{stem}-sweep.csv"
    png = None if args.no_png else args.png or f"{stem}-sweep.png"
    check_output_path("--csv", csv_path)
    check_output_path("--png", png)
    tasks = plan(args)
    try:
        rows = sweep.run_sweep(tasks, args.jobs, args.scheduler, TextProgress(sys.stderr))
    except RuntimeError as e:
        raise UsageError(str(e)) from None
    except (OSError, ValueError) as e:
        raise UsageError(f"--scheduler {args.scheduler!r}: cannot reach it: {e}") from None
    _write(csv_path, "--csv", sweep.to_csv(rows))
    print(f"wrote {len(rows)} rows to {csv_path}", file=sys.stderr)
    if png is not None:
        write_png("--png", png, lambda viz: _figure(viz, rows, stem))
        print(f"wrote the plot to {png}", file=sys.stderr)
    print(sweep.summary(rows), end="")
    return 0


def plan(args: argparse.Namespace) -> list[Any]:
    """The runs, every combination checked; UsageError naming the bad value."""
    from .sweep import parse_seeds, plan_sweep

    try:
        seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    except ValueError as e:
        raise UsageError(f"--seeds: {e}") from None
    try:
        return plan_sweep(args.scenario, args.param, seeds)
    except ScenarioError as e:
        raise UsageError(str(e)) from None
    except ValueError as e:
        raise UsageError(f"--param: {e}") from None


def _jobs(text: str) -> int:
    """argparse type: 1..max_jobs() local workers."""
    from .sweep import check_jobs

    try:
        return check_jobs(count_arg(text))
    except (ValueError, argparse.ArgumentTypeError) as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None


def _scheduler(text: str) -> str:
    """argparse type: a Dask scheduler address."""
    from .sweep import check_scheduler

    try:
        return check_scheduler(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _figure(viz: Any, rows: list[dict], title: str) -> Any:
    from .sweep import draw

    fig, axes = viz.new_figure("heatmap", nrows=2, sharex=True)
    draw(fig, axes, rows, title)
    return fig


def _write(path: str, option: str, text: str) -> None:
    try:
        Path(path).write_text(text)
    except OSError as e:
        raise UsageError(f"{option} {path!r}: {e.strerror or e}") from None
