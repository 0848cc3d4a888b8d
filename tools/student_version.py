"""Make the student notebooks from the instructor sources, nbgrader style.

    python3 lab.py student                       # the one command (sets up, then this)
    .venv/bin/python tools/student_version.py    # every instructor/NN_*.ipynb
    .venv/bin/python tools/student_version.py --check   # exit 1 if a copy is stale

``instructor/NN_topic.ipynb`` holds the solutions and the hidden tests.
As nbgrader's ``generate_assignment`` does (ClearSolutions,
ClearHiddenTests, ClearOutput), a ``### BEGIN SOLUTION`` ... ``### END
SOLUTION`` region is replaced by a stub, ``### BEGIN HIDDEN TESTS`` ...
``### END HIDDEN TESTS`` is removed, and outputs are cleared.  The result
is executed and written twice:

* ``tests/notebooks/NN_topic.ipynb``, the regression copy with every
  output: what nbval compares;
* ``notebooks/NN_topic.ipynb``, what students open (JupyterLab, Binder,
  Voila): the same, except that a code cell tagged ``reveal`` (its output
  gives an exercise's answer away) has no output until the student runs
  it, after their prediction.

Both copies also tag every ``reveal`` cell ``voila-hide``: a Voila app
leaves such cells out (jupyter-config's TagRemovePreprocessor), and an app
cannot take a prediction, so it never shows the answer either.

Then the README's table of notebooks (tools/binder_links.py) is brought up
to date.  ``python3 lab.py`` opens copies of notebooks/ in my_notebooks/,
so a student's saved work never changes either of these.

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
REGRESSION = ROOT / "tests" / "notebooks"
REVEAL = "reveal"     # the tag of a cell whose output gives an answer away
VOILA_HIDE = "voila-hide"   # the tag of a cell a Voila app leaves out

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
    """The student version of an instructor notebook, outputs cleared, reveal cells
    hidden from Voila."""
    out = nbformat.from_dict(nb)
    for cell in out.cells:
        cell.source = clear_hidden_tests(clear_solutions(cell.source,
                                                         cell.cell_type == "markdown"))
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            tags = cell.metadata.get("tags", [])
            if REVEAL in tags and VOILA_HIDE not in tags:
                cell.metadata["tags"] = [*tags, VOILA_HIDE]
    out.metadata.pop("widgets", None)
    return out


def without_reveals(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` with the outputs (and execution counts) of its ``reveal`` cells cleared."""
    out = nbformat.from_dict(nb)
    for cell in out.cells:
        if cell.cell_type == "code" and REVEAL in cell.metadata.get("tags", []):
            cell.outputs, cell.execution_count = [], None
    return out


def comparable(nb: nbformat.NotebookNode) -> list[tuple[str, str, dict]]:
    """What must agree between a generated and a committed student notebook."""
    return [(c.cell_type, c.source, dict(c.metadata.get("nbgrader", {})))
            for c in nb.cells]


def instructor_sources() -> list[Path]:
    return sorted(SOURCE.glob("[0-9][0-9]_*.ipynb"))


def problems(path: Path) -> list[str]:
    """Why the committed copies of instructor notebook ``path`` are stale (none: in sync)."""
    want = comparable(student_notebook(nbformat.read(path, as_version=4)))
    found = []
    for folder in (REGRESSION, RELEASE):
        copy = folder / path.name
        if not copy.exists():
            found.append(f"{copy.relative_to(ROOT)} is missing")
        elif comparable(nbformat.read(copy, as_version=4)) != want:
            found.append(f"{copy.relative_to(ROOT)} differs from {path.relative_to(ROOT)}")
    if not found and without_reveals(nbformat.read(REGRESSION / path.name, as_version=4)) \
            != nbformat.read(RELEASE / path.name, as_version=4):
        found.append(f"notebooks/{path.name} is not tests/notebooks/{path.name} with its "
                     "reveal outputs cleared")
    return found


def write(path: Path, execute: bool) -> Path:
    """Write (and by default execute) the regression copy and the student version of ``path``."""
    regression, release = REGRESSION / path.name, RELEASE / path.name
    REGRESSION.mkdir(parents=True, exist_ok=True)
    nbformat.write(student_notebook(nbformat.read(path, as_version=4)), regression)
    if execute:
        from run_notebooks import run
        print(f"{release.relative_to(ROOT)}: {run(regression):.1f} s", flush=True)
    nbformat.write(without_reveals(nbformat.read(regression, as_version=4)), release)
    return release


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="instructor notebooks (default: all)")
    ap.add_argument("--check", action="store_true", help="only report stale copies")
    ap.add_argument("--no-run", action="store_true", help="write without executing")
    args = ap.parse_args(argv)
    paths = [Path(n) for n in args.names] or instructor_sources()
    if args.check:
        bad = [why for p in paths for why in problems(p)]
        for why in bad:
            print(f"{why}: run python3 lab.py student", file=sys.stderr)
        return 1 if bad else 0
    for path in paths:
        write(path, execute=not args.no_run)
    from binder_links import README, updated_readme  # the README lists every notebook
    README.write_text(updated_readme())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
