"""How long each notebook takes a student, measured from its text, not guessed.

    .venv/bin/python tools/reading_time.py                  # every notebook, run to time it
    .venv/bin/python tools/reading_time.py notebooks/04_alloc_contig_range.ipynb
    .venv/bin/python tools/reading_time.py --no-run         # use the stored outputs, no run

Each notebook in notebooks/ is executed (tools/run_notebooks.execute) so that
every output is there to read and the cells' run time is measured; then its
parts are counted and converted at the rates below:

* prose: the words of markdown cells outside Deep dive boxes (``<details>``),
  tables included, at PROSE_WPM, a careful reading speed for technical text;
* code: the words (whitespace-separated tokens) of code cells, at CODE_WPM;
* outputs: the words of text outputs, at OUTPUT_WPM (they are scanned, not
  studied word by word); each figure FIGURE_S seconds, each widget WIDGET_MIN
  minutes to play with;
* exercises: VALUE_MIN minutes per prediction, FUNCTION_MIN per function to
  write, whatever the answer's length;
* the measured run time of all cells.

The core path is all of that.  Deep dives are counted apart: a box
(``<details>``, its summary titled "Deep dive") and a section whose heading
starts with "Deep dive" (``### Deep dive: ...``), with all its cells, up to
the next heading of the same or a higher level.  The sandbox section at the
end is not counted.  Markdown is read as text: link targets, HTML tags and
markup characters are dropped.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parent.parent

PROSE_WPM = 150      # technical prose, read with care
CODE_WPM = 75        # code is read at half that
OUTPUT_WPM = 200     # printed outputs (/proc texts, summaries) are scanned
FIGURE_S = 30        # looking at one figure
WIDGET_MIN = 2.0     # playing with one widget
VALUE_MIN = 3.0      # one prediction: think, type, read the feedback
FUNCTION_MIN = 6.0   # one function to write and check

_DETAILS = re.compile(r"<details>.*?</details>", re.S)
_HEADING = re.compile(r"^(#+)\s+(.*)$")
_LINK = re.compile(r"\]\([^)]*\)")
_TAG = re.compile(r"<[^>]+>")
_WORD = re.compile(r"[A-Za-z0-9_]+(?:['’.-][A-Za-z0-9_]+)*")
WIDGET = "application/vnd.jupyter.widget-view+json"


def words(text: str) -> int:
    """Words a reader reads in ``text`` (markdown or plain): links keep their text."""
    return len(_WORD.findall(_TAG.sub(" ", _LINK.sub("]", text))))


def split_deep_dives(markdown: str) -> tuple[str, str]:
    """(the core text, the text of its Deep dive boxes)."""
    return _DETAILS.sub(" ", markdown), " ".join(_DETAILS.findall(markdown))


@dataclass
class Count:
    """What one notebook asks of its reader."""

    prose: int = 0
    deep: int = 0
    code: int = 0
    output: int = 0
    figures: int = 0
    widgets: int = 0
    values: int = 0
    functions: int = 0
    run_s: float = 0.0
    deep_cells: float = 0.0    # minutes for the code cells of Deep dive sections

    def core_minutes(self) -> float:
        return (self.prose / PROSE_WPM + self.code / CODE_WPM + self.output / OUTPUT_WPM
                + self.figures * FIGURE_S / 60 + self.widgets * WIDGET_MIN
                + self.values * VALUE_MIN + self.functions * FUNCTION_MIN + self.run_s / 60)

    def deep_minutes(self) -> float:
        return self.deep / PROSE_WPM + self.deep_cells


class Sections:
    """Which heading a line falls under: the core path, a Deep dive, or the sandbox."""

    def __init__(self) -> None:
        self.deep_level = 0        # the level of the Deep dive heading we are in, or 0
        self.sandbox = False

    def see(self, line: str) -> None:
        match = _HEADING.match(line)
        if not match:
            return
        level, title = len(match.group(1)), match.group(2)
        if title.startswith("Sandbox"):
            self.sandbox = True
        elif title.startswith("Deep dive"):
            self.deep_level = self.deep_level or level
        elif self.deep_level and level <= self.deep_level:
            self.deep_level = 0


def count(nb: nbformat.NotebookNode, run_s: float = 0.0) -> Count:
    """Count the parts of an executed notebook."""
    n, where = Count(run_s=run_s), Sections()
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            core, deep = split_deep_dives(cell.source)
            n.deep += words(deep)
            for line in core.splitlines():
                where.see(line)
                if not where.sandbox:
                    if where.deep_level:
                        n.deep += words(line)
                    else:
                        n.prose += words(line)
            continue
        if where.sandbox:
            break
        if cell.cell_type == "code":
            _count_code(n, cell, deep=bool(where.deep_level))
    return n


def _count_code(n: Count, cell: nbformat.NotebookNode, deep: bool) -> None:
    grading = cell.metadata.get("nbgrader", {})
    if grading.get("grade") and not grading.get("solution"):
        return                                       # the graded test cell: nothing to read
    if grading.get("solution"):
        is_function = cell.source.lstrip().startswith("def ")
        n.functions += is_function
        n.values += not is_function
        return                                       # its time is the exercise's
    part = Count()
    part.code = words(cell.source)
    for out in cell.get("outputs", []):
        data = out.get("data", {})
        if out.output_type == "stream":
            part.output += words(out.text)
        elif WIDGET in data:
            part.widgets += 1
        elif "image/png" in data:
            part.figures += 1
        elif "text/plain" in data and not data["text/plain"].startswith("<Figure"):
            part.output += words(data["text/plain"])
    if deep:
        n.deep_cells += part.core_minutes()
    else:
        n.code += part.code
        n.output += part.output
        n.figures += part.figures
        n.widgets += part.widgets


def measure(path: Path, run: bool) -> Count:
    """Count ``path``, executed first (outputs and run time) unless ``run`` is False."""
    if not run:
        return count(nbformat.read(path, as_version=4))
    from run_notebooks import execute
    nb, seconds = execute(path)
    return count(nb, seconds)


def rounded(minutes: float) -> int:
    """Minutes to the nearest 5, at least 5: the time a table states."""
    return max(5, int(5 * round(minutes / 5)))


def table(rows: dict[str, Count]) -> str:
    """The markdown table of counts and minutes, one row per notebook."""
    head = ("| notebook | prose words | deep-dive words | code words | output words | figures "
            "| widgets | predictions | functions | run (s) | core (min) | deep dives (min) "
            "| stated time |\n" + "|---" * 13 + "|\n")
    body = "".join(
        f"| {name} | {n.prose} | {n.deep} | {n.code} | {n.output} | {n.figures} | {n.widgets} "
        f"| {n.values} | {n.functions} | {n.run_s:.0f} | {n.core_minutes():.0f} "
        f"| {n.deep_minutes():.0f} | {rounded(n.core_minutes())} min |\n"
        for name, n in rows.items())
    return head + body


def rates() -> str:
    return (f"Rates: prose {PROSE_WPM} words/min, code {CODE_WPM} words/min, outputs "
            f"{OUTPUT_WPM} words/min, {FIGURE_S} s per figure, {WIDGET_MIN:g} min per widget, "
            f"{VALUE_MIN:g} min per prediction, {FUNCTION_MIN:g} min per function, plus the "
            "measured run time; Deep dive boxes apart, the sandbox not counted.")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="*", help="notebooks (default: notebooks/NN_*.ipynb)")
    ap.add_argument("--no-run", action="store_true",
                    help="count the stored outputs; run time 0")
    args = ap.parse_args(argv)
    paths = [Path(p) for p in args.paths] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    rows = {p.stem: measure(p, run=not args.no_run) for p in paths}
    print(table(rows), end="")
    print(f"\n{rates()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
