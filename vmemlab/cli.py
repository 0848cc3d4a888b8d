"""The ``vmemlab`` command: ``python -m vmemlab SUBCOMMAND [options]``.

Each subcommand is one ``add_<name>(subparsers)`` function, listed in
``SUBCOMMANDS``, that builds its parser and sets ``run`` to the function
carrying it out; ``main`` parses and dispatches.  ``buddy`` and
``snapshot`` live here; ``run`` in ``cli_run``, ``sweep`` in ``cli_sweep``,
``virtio-mem`` in ``cli_vmem``; what they share in ``cli_common``.  Anything wrong in what the
user gave (an option, an op string, a snapshot file) ends with
``vmemlab SUBCOMMAND: error: ...`` naming the value, and exit status 2, as
argparse does for bad options; never a traceback.

Homework follows the OSTEP simulators: ``-s SEED`` picks a problem, every
parameter is printed first (``ARG seed 0``), results print as ``?``, and
``-c`` computes the answers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .cli_common import (
    PROG,
    UsageError,
    check_output_path,
    count_arg,
    homework_ops,
    homework_parser,
    write_png,
)
from .cli_run import add_run
from .cli_sweep import add_sweep
from .cli_vmem import add_virtio_mem
from .constants import MIGRATE_TYPES, TEACHING, format_size, parse_size

if TYPE_CHECKING:
    from .machine import Machine
    from .snapshot import RealSnapshot


# ------------------------------------------------------------------- buddy
BUDDY_DESCRIPTION = """\
OSTEP-style homework on the buddy allocator, on the tiny teaching geometry
(4 KiB pages, pageblocks of 8 pages, buddy blocks up to order 4 = 16 pages,
one Normal zone from pfn 0).  A seed generates a sequence of alloc_pages()
and free_pages() calls; predict the pfn each allocation returns and the
final free lists, then check with -c.

Operations: +O:T allocates 2**O pages of mobility T (M movable =
GFP_HIGHUSER_MOVABLE, U unmovable = GFP_KERNEL, R reclaimable =
GFP_KERNEL | __GFP_RECLAIMABLE; a gfp name also works); -I frees the block
of allocation I (counting allocations from 0)."""

BUDDY_EPILOG = """\
examples:
  python -m vmemlab buddy -s 1                 a random problem
  python -m vmemlab buddy -s 1 -c              ... and its answers
  python -m vmemlab buddy -A +2:U,+0:M,-0,+3:M -c
"""


def add_buddy(sub: argparse._SubParsersAction) -> None:
    """Register ``buddy``: OSTEP-style alloc/free homework on the teaching geometry."""
    p = homework_parser(sub, "buddy", "buddy-allocator homework (OSTEP style: -s SEED, -c)",
                        BUDDY_DESCRIPTION, BUDDY_EPILOG, 10)
    p.add_argument("-P", "--percent-alloc", type=_percent, default=50, metavar="PCT",
                   help="percent of random operations that allocate; the others free a "
                        "live block (default 50)")
    p.add_argument("-o", "--max-order", type=count_arg, default=3, metavar="ORDER",
                   help="largest order of a random allocation, 0..4 (default 3)")
    p.add_argument("-t", "--types", type=_types, default="MUR", metavar="TYPES",
                   help="mobility types to draw from: letters of MUR (default MUR)")
    p.add_argument("-m", "--memory", default="1M", metavar="SIZE",
                   help="memory of the machine, a multiple of 32k (default 1M = 256 pages)")
    homework_ops(p, "+2:U,+0:M,-0")
    p.set_defaults(run=run_buddy)


def run_buddy(args: argparse.Namespace) -> int:
    print(buddy_homework(args.seed, args.num_ops, args.percent_alloc, args.max_order,
                         args.types, args.memory, args.kernel, args.ops, args.compute), end="")
    return 0


def buddy_machine(memory: str | int = "1M", kernel: str = "6.12") -> Machine:
    """A fresh teaching machine (the lab's tests call the same thing teaching())."""
    from .machine import Machine

    try:
        return Machine(boot_memory=memory, kernel=kernel, geometry="teaching")
    except ValueError as e:
        raise UsageError(f"--memory {memory!r}: {e}") from None


def random_ops(seed: int, nr_ops: int, percent_alloc: float, max_order: int, types: str,
               machine: Callable[[], Machine]) -> str:
    """A random op string, the same for the same arguments on any platform.

    numpy's ``default_rng(seed)`` draws each step: free a uniformly chosen
    live block with probability 1 - percent_alloc/100 (only when one is
    live), else allocate an order in 0..max_order and a type from ``types``.
    The ops run on ``machine()`` as they are drawn, so a free only ever names
    an allocation that succeeded.
    """
    from .workload import MOBILITY_GFP

    rng = np.random.default_rng(seed)
    m = machine()
    live: list[tuple[int, int, int]] = []     # (allocation index, pfn, order)
    ops, nr_allocs = [], 0
    for _ in range(nr_ops):
        if live and rng.random() * 100 >= percent_alloc:
            index, pfn, order = live.pop(int(rng.integers(len(live))))
            m.free_pages(pfn, order)
            ops.append(f"-{index}")
            continue
        order = int(rng.integers(max_order + 1))
        mobility = types[int(rng.integers(len(types)))]
        pfn = m.alloc_pages(order, MOBILITY_GFP[mobility])
        if pfn is not None:
            live.append((nr_allocs, pfn, order))
        nr_allocs += 1
        ops.append(f"+{order}:{mobility}")
    return ",".join(ops)


def buddy_homework(seed: int = 0, num_ops: int = 10, percent_alloc: float = 50,
                   max_order: int = 3, types: str = "MUR", memory: str = "1M",
                   kernel: str = "6.12", ops: str = "", compute: bool = False) -> str:
    """The full text of one buddy problem: ARG lines, the ops, and with ``compute`` the answers.

    Raises UsageError (a ValueError) naming a bad option or operation.
    """
    from .workload import format_ops, run_ops

    if max_order > TEACHING.max_page_order:
        raise UsageError(f"--max-order {max_order}: must be in 0..{TEACHING.max_page_order}")
    args = {"seed": seed, "num-ops": num_ops, "percent-alloc": percent_alloc,
            "max-order": max_order, "types": types, "memory": memory, "kernel": kernel,
            "ops": ops, "compute": compute}
    spec = ops or random_ops(seed, num_ops, percent_alloc, max_order, types,
                             lambda: buddy_machine(memory, kernel))
    m = buddy_machine(memory, kernel)
    initial = _state(m)
    try:
        results = run_ops(m, spec)
    except ValueError as e:
        raise UsageError(f"--ops {spec!r}: {e}") from None
    return "".join([*(f"ARG {name} {value}\n" for name, value in args.items()),
                    "\n", _describe(m), f"\nOperations (as -A): {spec or '(none)'}\n",
                    "\nInitial state:\n", initial, "\n",
                    format_ops(results, compute) if results else "", "\n",
                    "Final state:\n" + _state(m) if compute else
                    "Final /proc/buddyinfo?  Final page map?  Final pageblock map?\n"
                    "(run again with -c to compute the answers)\n"])


def _describe(m: Machine) -> str:
    geo, nr_pages = m.geometry, sum(z.present_pages for z in m.node.zones)
    grouping = ("Grouping by mobility is off (fewer than "
                f"{geo.pageblock_nr_pages * MIGRATE_TYPES} pages): every pageblock is "
                "Unmovable.\n" if m.node.page_group_by_mobility_disabled else "")
    return (f"A teaching machine of {nr_pages} pages ({format_size(nr_pages * geo.page_size)}), "
            f"one Normal zone from pfn 0x0:\npageblocks of {geo.pageblock_nr_pages} pages, "
            f"buddy blocks of order 0..{geo.max_page_order} (up to {geo.max_order_nr_pages} "
            f"pages), Linux {m.profile.name} allocator.\n{grouping}")


def _state(m: Machine) -> str:
    """buddyinfo, the page map and the pageblock map, one after another."""
    return m.proc.buddyinfo() + "\n" + m.page_map() + "\n" + m.pageblock_map()


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage in 0..100")
    return int(value) if value == int(value) else value


def _types(text: str) -> str:
    letters = text.upper()
    if not letters or set(letters) - set("MUR"):
        raise argparse.ArgumentTypeError(f"{text!r} must be letters of MUR (movable, "
                                         "unmovable, reclaimable)")
    return letters


# ---------------------------------------------------------------- snapshot
SNAPSHOT_VIEWS = ("summary", "buddyinfo", "pagetypeinfo", "zoneinfo", "meminfo", "unusable",
                  "extfrag", "lsmem", "blocks", "pages")
DEFAULT_VIEWS = ("summary", "buddyinfo", "pagetypeinfo", "unusable", "lsmem", "pages")

SNAPSHOT_DESCRIPTION = """\
Read this machine's physical memory state, read-only, and show it in the
same views as a simulated machine: /proc/buddyinfo, /proc/pagetypeinfo,
/proc/zoneinfo, /proc/meminfo, /sys/devices/system/memory and, where
readable (root only), /proc/kpageflags.  Nothing is ever written to /proc
or /sys.  Parts that cannot be read are listed with the reason."""

SNAPSHOT_EPILOG = f"""\
views (--show, comma-separated, or "all"; default {",".join(DEFAULT_VIEWS)}):
  summary       where the snapshot came from, and what is absent and why
  buddyinfo     /proc/buddyinfo
  pagetypeinfo  /proc/pagetypeinfo
  zoneinfo      /proc/zoneinfo (without per-CPU pagesets)
  meminfo       /proc/meminfo
  unusable      unusable free space index per order (debugfs extfrag/unusable_index)
  extfrag       fragmentation index per order (debugfs extfrag/extfrag_index)
  lsmem         memory blocks in runs of like blocks
  blocks        one line per memory block, with its pages by state
  pages         pages by state and by kind, from /proc/kpageflags

examples:
  sudo python -m vmemlab snapshot --limit 4G --save box.npz
  python -m vmemlab snapshot --load box.npz --show all
  python -m vmemlab snapshot --load box.npz --page-map 0x0:0x400
"""


def add_snapshot(sub: argparse._SubParsersAction) -> None:
    """Register ``snapshot``: read a real machine (or a saved snapshot) and show it."""
    p = sub.add_parser("snapshot", help="read this machine's memory state (read-only)",
                       description=SNAPSHOT_DESCRIPTION, epilog=SNAPSHOT_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--root", default="/", metavar="DIR",
                     help="read DIR/proc and DIR/sys instead of / (a copied tree)")
    src.add_argument("--load", metavar="FILE", help="show a snapshot saved with --save")
    p.add_argument("--limit", metavar="SIZE",
                   help="read /proc/kpageflags only for the first SIZE of physical "
                        "memory, e.g. 4G (default: all of it)")
    p.add_argument("--no-kpageflags", action="store_true",
                   help="do not read /proc/kpageflags at all")
    p.add_argument("--show", type=_views, default=DEFAULT_VIEWS, metavar="VIEWS",
                   help="views to print, comma-separated, or 'all' (see below)")
    p.add_argument("--page-map", type=_pfn_range, metavar="START:END",
                   help="also print one character per page of pfns [START, END)")
    p.add_argument("--save", metavar="FILE", help="save the snapshot to FILE (.npz)")
    p.add_argument("--json", action="store_true",
                   help="print the parsed snapshot as JSON instead of text views")
    p.add_argument("--png", metavar="FILE",
                   help="save a heatmap of the pages to FILE (needs vmemlab.viz, matplotlib)")
    p.set_defaults(run=run_snapshot)


def run_snapshot(args: argparse.Namespace) -> int:
    check_output_path("--save", args.save)
    check_output_path("--png", args.png)
    snap = _get_snapshot(args)
    if args.save:
        try:
            snap.save(args.save)
        except OSError as e:
            raise UsageError(f"--save {args.save!r}: {e.strerror or e}") from None
        print(f"saved snapshot to {args.save}", file=sys.stderr)
    if args.png:
        _save_png(snap, args.png)
        print(f"saved heatmap to {args.png}", file=sys.stderr)
    if args.json:
        print(json.dumps(snap.to_dict(), indent=1))
        return 0
    print(snapshot_text(snap, args.show, args.page_map), end="")
    return 0


def _get_snapshot(args: argparse.Namespace) -> RealSnapshot:
    from .snapshot import SnapshotFileError, default_page_size, load_snapshot, read_snapshot

    if args.load:
        if args.limit or args.no_kpageflags:
            raise UsageError("--limit and --no-kpageflags apply when reading a machine, "
                             "not with --load")
        try:
            return load_snapshot(args.load)
        except SnapshotFileError as e:
            raise UsageError(f"--load: {e}") from None
    if not Path(args.root).is_dir():
        raise UsageError(f"--root {args.root!r}: not a directory")
    max_pfns = None
    if args.limit:
        try:
            max_pfns = parse_size(args.limit) // default_page_size(args.root)
        except ValueError as e:
            raise UsageError(f"--limit: {e}") from None
    return read_snapshot(args.root, max_pfns=max_pfns, kpageflags=not args.no_kpageflags)


def snapshot_text(snap: RealSnapshot, views: Sequence[str],
                  page_map: tuple[int, int] | None = None) -> str:
    """The chosen views, each under a ``== title ==`` line; absent parts say why."""
    from .snapshot import MissingPart

    render = {"summary": snap.summary, "buddyinfo": snap.proc.buddyinfo,
              "pagetypeinfo": snap.proc.pagetypeinfo, "zoneinfo": snap.proc.zoneinfo,
              "meminfo": snap.proc.meminfo, "unusable": snap.proc.unusable_index,
              "extfrag": snap.proc.extfrag_index, "lsmem": snap.lsmem,
              "blocks": snap.memory_block_table, "pages": snap.page_summary}
    titles = {"buddyinfo": "/proc/buddyinfo", "pagetypeinfo": "/proc/pagetypeinfo",
              "zoneinfo": "/proc/zoneinfo", "meminfo": "/proc/meminfo",
              "unusable": "unusable free space index", "extfrag": "fragmentation index",
              "lsmem": "memory blocks", "blocks": "memory blocks, pages by state",
              "pages": "pages"}
    calls = [(titles.get(v), render[v]) for v in views]
    if page_map is not None:
        calls.append((f"page map of pfns [{page_map[0]:#x}, {page_map[1]:#x})",
                      lambda: _page_map(snap, *page_map)))
    out = []
    for title, fn in calls:
        try:
            body = fn()
        except MissingPart as e:
            body = f"(absent: {e})\n"
        out.append((f"== {title} ==\n" if title else "") + body)
    return "\n".join(out)


def _page_map(snap: RealSnapshot, start: int, end: int) -> str:
    try:
        return snap.page_map(start, end)
    except ValueError as e:
        raise UsageError(f"--page-map {start:#x}:{end:#x}: {e}") from None


def _save_png(snap: RealSnapshot, path: str) -> None:
    """Draw the pages (page zoom: a real kernel does not export pageblock types)."""
    from .snapshot import MissingPart

    try:
        frame = snap.machine_snapshot()
    except (MissingPart, ValueError) as e:
        raise UsageError(f"--png {path!r}: {e}") from None

    def draw(viz: Any) -> Any:
        fig, ax = viz.new_figure("heatmap")
        viz.draw_heatmap(ax, frame, zoom="page",
                         title=f"Linux {snap.kernel}: {snap.meta.get('root', '')}")
        return fig

    write_png("--png", path, draw)


def _views(text: str) -> tuple[str, ...]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    if names == ["all"]:
        return SNAPSHOT_VIEWS
    bad = [v for v in names if v not in SNAPSHOT_VIEWS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: views are 'all' or among "
                                         f"{','.join(SNAPSHOT_VIEWS)}")
    return tuple(names)


def _pfn_range(text: str) -> tuple[int, int]:
    start, sep, end = text.partition(":")
    try:
        lo, hi = int(start, 0), int(end, 0)
    except ValueError:
        lo = hi = -1
    if not sep or not 0 <= lo < hi:
        raise argparse.ArgumentTypeError(f"{text!r} is not START:END with 0 <= START < END "
                                         "(pfns, decimal or 0x hex)")
    return lo, hi


# -------------------------------------------------------------------- main
SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    add_run, add_sweep, add_buddy, add_virtio_mem, add_snapshot)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog=PROG, description="vmemlab: Linux physical memory and the virtio-mem device, "
                               "simulated for teaching.",
        epilog=f"Run '{PROG} SUBCOMMAND --help' for the options of each subcommand.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; 0 on success, 2 for bad input."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:   # let the subcommand's parser say it, with its own usage line
        subparsers = next(a for a in parser._actions
                          if isinstance(a, argparse._SubParsersAction))
        subparsers.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.run(args)
    except UsageError as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Output piped into `head`: stop quietly (Python docs, "Note on SIGPIPE").
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
