"""Exercises, nbgrader metadata, and the instructor/student notebook pair.

``instructor/`` holds the sources (solutions, hidden tests, no outputs);
``notebooks/`` the student versions made by ``python3 lab.py student``.
These tests keep the two in sync, check every exercise's metadata and
checker, and run the instructor notebooks to prove every solution and
hidden test passes.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest

from vmemlab.exercises import EXERCISES, Feedback, FunctionExercise, ValueExercise, load_all

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from student_version import (  # noqa: E402
    clear_hidden_tests,
    clear_solutions,
    comparable,
    instructor_sources,
    student_notebook,
)

SOURCES = instructor_sources()
NAMES = [p.name for p in SOURCES]


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def nbgrader(cell: nbformat.NotebookNode) -> dict:
    return cell.metadata.get("nbgrader", {})


# -- the student command's text rules ---------------------------------------
def test_top_level_solution_leaves_the_prediction_line():
    src = "order = ...\n### BEGIN SOLUTION\norder = 4\n### END SOLUTION\nex.check(order)"
    assert clear_solutions(src) == "order = ...\n# YOUR ANSWER HERE\nex.check(order)"


def test_solution_inside_a_function_gets_nbgraders_stub():
    src = "def f(x):\n    ### BEGIN SOLUTION\n    return x ^ 1\n    ### END SOLUTION\n"
    assert clear_solutions(src) == ("def f(x):\n    # YOUR CODE HERE\n"
                                    "    raise NotImplementedError()\n")


def test_markdown_solution_and_hidden_tests():
    md = "Why?\n\n### BEGIN SOLUTION\nBecause bit k.\n### END SOLUTION"
    assert clear_solutions(md, markdown=True) == "Why?\n\nYOUR ANSWER HERE"
    tests = "# graded\n### BEGIN HIDDEN TESTS\nassert ok\n### END HIDDEN TESTS\n"
    assert clear_hidden_tests(tests) == "# graded"


# -- the pair of folders ------------------------------------------------------
def test_every_student_notebook_has_an_instructor_source():
    students = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert students == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_student_version_is_in_sync(name):
    made = student_notebook(read(ROOT / "instructor" / name))
    assert comparable(made) == comparable(read(ROOT / "notebooks" / name)), (
        f"notebooks/{name} is stale: run python3 lab.py student")


@pytest.mark.parametrize("name", NAMES)
def test_instructor_sources_have_no_outputs(name):
    cells = read(ROOT / "instructor" / name).cells
    assert not [c.source[:40] for c in cells if c.get("outputs")]


# -- nbgrader metadata ---------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_exercises_carry_nbgrader_metadata(name):
    cells = read(ROOT / "instructor" / name).cells
    answers = [i for i, c in enumerate(cells) if nbgrader(c).get("solution")]
    if name[:2] != "00":
        assert len(answers) >= 3, f"{name} has {len(answers)} exercises; at least 3 are due"
    ids = [nbgrader(c)["grade_id"] for c in cells if nbgrader(c)]
    assert len(ids) == len(set(ids)), f"duplicate grade_id in {name}"
    for i in answers:
        meta, src = nbgrader(cells[i]), cells[i].source
        assert meta["schema_version"] == 3 and meta["grade"] is False
        assert "### BEGIN SOLUTION" in src and "### END SOLUTION" in src
        assert ".check(" in src, f"{meta['grade_id']}: the answer cell calls the checker"
        test = cells[i + 1]
        tmeta = nbgrader(test)
        assert tmeta.get("grade") and tmeta.get("locked") and tmeta.get("points", 0) > 0, (
            f"{meta['grade_id']}: a locked grade cell with points follows the answer")
        assert "### BEGIN HIDDEN TESTS" in test.source and ".correct(" in test.source


@pytest.mark.parametrize("name", NAMES)
def test_exercise_cells_name_real_exercises(name):
    load_all()
    nn = name[:2]
    text = "\n".join(c.source for c in read(ROOT / "instructor" / name).cells)
    used = set(re.findall(r"\bex\.(\w+)\.(?:check|correct|reveal)\(", text))
    known = {key.split(".", 1)[1] for key in EXERCISES if key.startswith(f"{nn}.")}
    assert used <= known, f"{name} uses exercises that vmemlab.exercises.nb{nn} lacks"


# -- the checkers --------------------------------------------------------------
def _all() -> list:
    load_all()
    return list(EXERCISES.values())


@pytest.mark.parametrize("ex", _all(), ids=lambda e: e.key)
def test_checker_says_right_wrong_and_pending(ex):
    pending = ex.check(...)
    assert isinstance(pending, Feedback) and pending.ok is None
    assert ex.reveal().ok is None and not repr(ex.reveal()).startswith("Right.")
    if isinstance(ex, ValueExercise):
        assert ex.correct(ex.answer)
        wrong = ex.check(object())
        assert wrong.ok is False and "cannot be the answer" in wrong.text
    else:
        assert isinstance(ex, FunctionExercise)
        assert ex.check(lambda *args: None).ok is False
        assert ex.check(7).ok is False


# -- running the instructor notebooks -------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_instructor_notebook_solves_every_exercise(name, tmp_path):
    """Execute the instructor version: no errors, every checker says Right."""
    from nbclient import NotebookClient

    nb = read(ROOT / "instructor" / name)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "instructor")}}).execute()
    for cell in nb.cells:
        if nbgrader(cell).get("solution") and cell.cell_type == "code":
            text = "".join(o.get("data", {}).get("text/plain", "") + o.get("text", "")
                           for o in cell.outputs)
            assert text.startswith("Right."), f"{nbgrader(cell)['grade_id']}: {text[:200]}"
