"""Make the student notebooks from the instructor sources, nbgrader style.

    python3 lab.py student                       # the one command (sets up, then this)
    .venv/bin/python tools/student_version.py    # every instructor/NN_*.ipynb
    .venv/bin/python tools/student_version.py --check   # exit 1 if notebooks/ is stale

``instructor/NN_topic.ipynb`` holds the solutions and the hidden tests;
``notebooks/NN_topic.ipynb`` is what students open.  As nbgrader's
``generate_assignment`` does (ClearSolutions, ClearHiddenTests,
ClearOutput), a ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region is
replaced by a stub, ``### BEGIN HIDDEN TESTS`` ... ``### END HIDDEN TESTS``
is removed, and outputs are cleared; then the student notebook is executed
so its committed outputs are what nbval compares, and the README's table
of notebooks (tools/binder_links.py) is brought up to date.

One difference from nbgrader's default stub, so that the student notebook
runs from top to bottom: a solution region at the top level of a cell (a
prediction such as ``order = 4``) becomes ``# YOUR ANSWER HERE``, leaving
the ``order = ...`` line above it for the student; inside a function it
becomes nbgrader's ``# YOUR CODE HERE`` / ``raise NotImplementedError()``.
Markdown regions become ``YOUR ANSWER HERE``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parent.parent
SOURCE, RELEASE = ROOT / "instructor", ROOT / "notebooks"

_SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION[ \t]*\n.*?^[ \t]*### END SOLUTION[ \t]*(\n|$)",
                       re.M | re.S)
_HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS[ \t]*\n.*?^[ \t]*### END HIDDEN TESTS[ \t]*"
                     r"(\n|$)", re.M | re.S)


def clear_solutions(source: str, markdown: bool = False) -> str:
    """Replace every solution region with its stub."""
    def stub(match: re.Match) -> str:
        indent, end = match.group(1), match.group(2)
        if markdown:
            return f"{indent}YOUR ANSWER HERE{end}"
        if indent:
            return f"{indent}# YOUR CODE HERE\n{indent}raise NotImplementedError(){end}"
        return f"# YOUR ANSWER HERE{end}"
    return _SOLUTION.sub(stub, source)


def clear_hidden_tests(source: str) -> str:
    """Remove every hidden-tests region (restored by nbgrader at autograde time)."""
    return _HIDDEN.sub("", source).rstrip("\n")


def student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student version of an instructor notebook, outputs cleared."""
    out = nbformat.from_dict(nb)
    for cell in out.cells:
        cell.source = clear_hidden_tests(clear_solutions(cell.source,
                                                         cell.cell_type == "markdown"))
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    out.metadata.pop("widgets", None)
    return out


def comparable(nb: nbformat.NotebookNode) -> list[tuple[str, str, dict]]:
    """What must agree between a generated and a committed student notebook."""
    return [(c.cell_type, c.source, dict(c.metadata.get("nbgrader", {})))
            for c in nb.cells]


def instructor_sources() -> list[Path]:
    return sorted(SOURCE.glob("[0-9][0-9]_*.ipynb"))


def stale(path: Path) -> bool:
    """Whether notebooks/<name> differs from the student version of ``path``."""
    release = RELEASE / path.name
    if not release.exists():
        return True
    want = comparable(student_notebook(nbformat.read(path, as_version=4)))
    return want != comparable(nbformat.read(release, as_version=4))


def write(path: Path, execute: bool) -> Path:
    """Write (and by default execute) the student version of ``path``."""
    release = RELEASE / path.name
    nbformat.write(student_notebook(nbformat.read(path, as_version=4)), release)
    if execute:
        from run_notebooks import run
        print(f"{release.relative_to(ROOT)}: {run(release):.1f} s", flush=True)
    return release


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="instructor notebooks (default: all)")
    ap.add_argument("--check", action="store_true", help="only report stale notebooks")
    ap.add_argument("--no-run", action="store_true", help="write without executing")
    args = ap.parse_args(argv)
    paths = [Path(n) for n in args.names] or instructor_sources()
    if args.check:
        bad = [p.name for p in paths if stale(p)]
        for name in bad:
            print(f"notebooks/{name} is stale: run python3 lab.py student", file=sys.stderr)
        return 1 if bad else 0
    for path in paths:
        write(path, execute=not args.no_run)
    from binder_links import README, updated_readme  # the README lists every notebook
    README.write_text(updated_readme())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
