"""tools/reading_time.py: what it counts, where, and the minutes it gives."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import reading_time as rt


def _solution(source: str) -> nbformat.NotebookNode:
    cell = new_code_cell(source)
    cell.metadata["nbgrader"] = {"solution": True, "grade": False}
    return cell


def _graded() -> nbformat.NotebookNode:
    cell = new_code_cell("assert ex.x.correct(x)")
    cell.metadata["nbgrader"] = {"solution": False, "grade": True, "points": 1}
    return cell


def _notebook() -> nbformat.NotebookNode:
    shown = new_code_cell("print(a, b)", outputs=[
        new_output("stream", name="stdout", text="one two three\n"),
        new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure 1>"})])
    rare = new_code_cell("rare(1)", outputs=[new_output("stream", name="stdout", text="x y\n")])
    return new_notebook(cells=[
        new_markdown_cell("# Title\n\nRead [the glossary](../docs/glossary.md) `now`.\n\n"
                          "<details>\n<summary><b>Deep dive:</b> more</summary>\n\nfour five\n\n"
                          "</details>"),
        shown,
        _solution("x = ...\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION\nex.x.check(x)"),
        _graded(),
        _solution("def f(p):\n    return p\n\nex.f.check(f)"),
        new_markdown_cell("### Deep dive: a rare case\n\nsix seven"),
        rare,
        new_markdown_cell("### Back on the path\n\neight"),
        new_markdown_cell("## Sandbox\n\nnine ten"),
        new_code_cell("sandbox = ex.fresh_machine()"),
    ])


def test_counts_the_core_path_the_deep_dives_and_the_exercises_apart():
    n = rt.count(_notebook(), run_s=30)
    # Title, Read, the, glossary, now | Back, on, the, path, eight
    assert (n.prose, n.code, n.output, n.figures, n.widgets) == (10, 3, 3, 1, 0)
    # Deep, dive, more, four, five | Deep, dive, a, rare, case, six, seven
    assert n.deep == 12 and (n.values, n.functions) == (1, 1)
    cell = 2 / rt.CODE_WPM + 2 / rt.OUTPUT_WPM            # rare(1) and its output, extra
    assert n.deep_minutes() == pytest.approx(12 / rt.PROSE_WPM + cell)
    assert n.core_minutes() == pytest.approx(
        10 / rt.PROSE_WPM + 3 / rt.CODE_WPM + 3 / rt.OUTPUT_WPM + rt.FIGURE_S / 60
        + rt.VALUE_MIN + rt.FUNCTION_MIN + 0.5)


def test_words_reads_markdown_as_text():
    # See, m.zones (one word), and, bold, text: the link target and the tags are not read
    assert rt.words("See [`m.zones`](https://x.org/a_b) and <b>bold</b> **text**.") == 5
    assert rt.split_deep_dives("a <details>b</details> c") == ("a   c", "<details>b</details>")


def test_table_states_times_to_the_nearest_five_minutes():
    text = rt.table({"00_x": rt.Count(prose=1500, values=2)})   # 10 + 6 minutes
    assert "| 00_x | 1500 |" in text and text.rstrip().endswith("| 15 min |")
    assert rt.rounded(1) == 5 and rt.rounded(62.4) == 60 and rt.rounded(63) == 65
