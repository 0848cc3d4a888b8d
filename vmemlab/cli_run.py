"""``vmemlab run SCENARIO.toml``: run a scenario file and report every step.

The file is checked first (``vmemlab.scenario``), then run
(``vmemlab.scenario_run``); text is printed step by step as the simulation
goes, ``--json`` prints one JSON document at the end, ``--png`` saves the
final heatmap, and ``--check`` turns failed expectations into exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from typing import TYPE_CHECKING, Any

from .cli_common import UsageError, load_viz, write_png
from .scenario import (
    ACTION_HELP,
    ACTIONS,
    BALLOON_KEYS,
    DEVICE_KEYS,
    DIMM_KEYS,
    EXPECT_KEYS,
    MACHINE_KEYS,
    Scenario,
    ScenarioError,
    load_scenario,
    parse_override,
)

if TYPE_CHECKING:
    from .scenario_run import RunResult, StepResult

RUN_DESCRIPTION = """\
Run a scenario file: a machine (boot memory, kernel profile, online policy,
seed), its devices (virtio-mem, pc-dimm, virtio-balloon) and a timeline of
steps (requested sizes, workloads, reboots, waits).  Every step prints the
requested and plugged size of each device, the simulated time it took to get
there, and the driver's last result by name (-EBUSY, -ENOMEM, ...) with what
virtio_mem_run_wq() does about it.  Nothing in the file is executed: it holds
only sizes, numbers, names and booleans."""


def format_reference() -> str:
    """The scenario format, generated from the tables the loader checks against."""
    def keys(table: dict[str, Any], indent: int = 17) -> str:
        return textwrap.fill(", ".join(table) or "(no keys)", 78,
                             subsequent_indent=" " * indent)

    rows = [f"  {name:<21} {keys(table, 24)}\n  {'':<21} {ACTION_HELP[name]}"
            for name, table in ACTIONS.items()]
    return ("scenario file (TOML; see scenarios/ for one per failure story):\n"
            f"  title = \"...\"\n  [machine]      {keys(MACHINE_KEYS)}\n"
            f"  [[devices]]    {keys(DEVICE_KEYS)}\n                 (named vmem0, vmem1, ...)\n"
            f"  [[dimms]]      {keys(DIMM_KEYS)}\n  [balloon]      {keys(BALLOON_KEYS)}\n"
            "  [[steps]]      do = ACTION, its keys, and optionally note, settle = false,\n"
            f"  [steps.expect] {keys(EXPECT_KEYS)}\n\n"
            "actions (do = ...):\n" + "\n".join(rows) + "\n")


RUN_EPILOG = format_reference() + """
sizes are bytes or strings like "512M", "2G"; return codes are spelled "-EBUSY".

examples:
  python -m vmemlab run scenarios/01_zone_normal_unmovable.toml
  python -m vmemlab run scenarios/02_zone_movable.toml --json
  python -m vmemlab run scenarios/02_zone_movable.toml --png final.png --check
  python -m vmemlab run scenarios/00_happy_path.toml --param machine.seed=7

exit status: 0 done; 1 an expectation failed (with --check); 2 bad input.
"""


def add_run(sub: argparse._SubParsersAction) -> None:
    """Register ``run``: run a scenario file."""
    p = sub.add_parser("run", help="run a scenario file (machine, devices, timeline)",
                       description=RUN_DESCRIPTION, epilog=RUN_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", metavar="SCENARIO.toml", help="the scenario file")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--png", metavar="FILE", help="save the final heatmap to FILE (PNG)")
    p.add_argument("--check", action="store_true",
                   help="exit 1 if any [steps.expect] does not hold")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="override a value of the file, e.g. machine.seed=3 or "
                        "devices.0.requested_size=1G (repeatable)")
    p.set_defaults(run=run_run)


def load(path: str, params: list[str]) -> Scenario:
    """Load a scenario with ``--param`` overrides; UsageError on anything wrong."""
    overrides = {}
    for text in params:
        try:
            key, values = parse_override(text)
        except ValueError as e:
            raise UsageError(f"--param: {e}") from None
        if len(values) != 1:
            raise UsageError(f"--param {text!r}: run takes one value (sweep takes several)")
        overrides[key] = values[0]
    try:
        return load_scenario(path, overrides)
    except ScenarioError as e:
        raise UsageError(str(e)) from None


def run_run(args: argparse.Namespace) -> int:
    from .scenario_run import format_header, format_step, format_verdict, run_scenario

    sc = load(args.scenario, args.param)
    if args.png:
        load_viz("--png", args.png)   # no matplotlib: say so now, not after the whole run

    def show(result: RunResult, res: StepResult) -> None:
        i = len(result.steps) - 1
        if i == 0:
            print(format_header(result))
        print(format_step(res, result.steps[i - 1] if i else None), flush=True)

    try:
        result = run_scenario(sc, on_step=None if args.json else show)
    except ScenarioError as e:
        raise UsageError(str(e)) from None
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    else:
        if not result.steps:
            print(format_header(result))
        print(format_verdict(result), end="")
    if args.png:
        save_final_png(result, args.png)
        print(f"saved heatmap to {args.png}", file=sys.stderr)
    return 1 if args.check and result.failures else 0


def save_final_png(result: RunResult, path: str) -> None:
    """The machine's memory after the last step, one cell per pageblock."""
    sc, m = result.scenario, result.machine

    def draw(viz: Any) -> Any:
        fig, ax = viz.new_figure("heatmap")
        title = sc.title or sc.source
        viz.draw_heatmap(ax, m, title=f"{title} (t={m.now:.1f} s)")
        return fig

    write_png("--png", path, draw)
