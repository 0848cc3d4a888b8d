"""What the ``vmemlab`` subcommands share: the usage error, argument types, PNG output.

Kept apart from ``vmemlab.cli`` so that each subcommand's module
(``cli_run``, ``cli_vmem``, ``cli_sweep``) can use them without importing
the others.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .profiles import DEFAULT_KERNEL, PROFILES

PROG = "vmemlab"


class UsageError(ValueError):
    """Something the user gave that cannot be used; main() prints it and exits 2."""


def count_arg(text: str) -> int:
    """argparse type: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return value


def homework_parser(sub: argparse._SubParsersAction, name: str, help: str, description: str,
                    epilog: str, num_ops: int) -> argparse.ArgumentParser:
    """A homework subcommand with the OSTEP options every homework has: -s, -n, -k."""
    p = sub.add_parser(name, help=help, description=description, epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-s", "--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("-n", "--num-ops", type=count_arg, default=num_ops, metavar="N",
                   help=f"number of random operations (default {num_ops})")
    p.add_argument("-k", "--kernel", default=DEFAULT_KERNEL, choices=tuple(PROFILES),
                   help=f"kernel profile: an upstream release (default {DEFAULT_KERNEL})")
    return p


def homework_ops(p: argparse.ArgumentParser, example: str) -> None:
    """The OSTEP options that end every homework's list: -A OPS and -c."""
    p.add_argument("-A", "--ops", default="", metavar="OPS",
                   help=f"explicit operations instead of random ones, e.g. {example}")
    p.add_argument("-c", "--compute", action="store_true", help="compute the answers")


def load_viz(option: str, path: str) -> Any:
    """vmemlab.viz, or a UsageError saying that ``option`` needs matplotlib."""
    try:
        from . import viz

        viz.new_figure, viz.figure_png, viz.draw_heatmap  # noqa: B018 - loads them now
    except (ImportError, AttributeError) as e:
        raise UsageError(f"{option} {path!r}: the picture needs vmemlab.viz with matplotlib "
                         f"(pip install 'vmemlab[viz]'): {e}") from None
    return viz


def write_png(option: str, path: str, draw: Callable[[Any], Any]) -> None:
    """Draw a figure with ``draw(viz)`` and write it to ``path`` as PNG.

    Errors (no matplotlib, a directory that does not exist) become
    UsageErrors naming ``option`` and the path.
    """
    viz = load_viz(option, path)
    fig = draw(viz)
    try:
        Path(path).write_bytes(viz.figure_png(fig))
    except OSError as e:
        raise UsageError(f"{option} {path!r}: {e.strerror or e}") from None
