"""Exercises, nbgrader metadata, and the instructor/student/regression notebooks.

``instructor/`` holds the sources (solutions, hidden tests, no outputs);
``python3 lab.py student`` makes from them ``tests/notebooks/`` (the
regression copy, every output, compared by nbval) and ``notebooks/`` (the
student version: reveal outputs cleared).  ``python3 lab.py`` opens copies
in ``my_notebooks/``, so a student's saved work changes neither.  These
tests keep the folders in sync, show that a student's edit fails no test,
and check every exercise's metadata and checker.  That every solution and
hidden test passes is tests/test_nbgrader.py's (autograde runs instructor/).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from vmemlab.exercises import EXERCISES, Feedback, FunctionExercise, ValueExercise, load_all

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from student_version import (  # noqa: E402
    REVEAL,
    VOILA_HIDE,
    clear_hidden_tests,
    clear_solutions,
    instructor_sources,
    problems,
    student_notebook,
    without_reveals,
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


# -- the folders ----------------------------------------------------------------
def test_every_student_and_regression_notebook_has_an_instructor_source():
    for folder in ("notebooks", "tests/notebooks"):
        found = sorted(p.name for p in (ROOT / folder).glob("[0-9][0-9]_*.ipynb"))
        assert found == NAMES, folder


@pytest.mark.parametrize("name", NAMES)
def test_student_version_is_in_sync(name):
    """Both copies have the instructor's cells; notebooks/ is tests/notebooks/ less reveals."""
    assert not problems(ROOT / "instructor" / name)


@pytest.mark.parametrize("name", NAMES)
def test_instructor_sources_have_no_outputs(name):
    cells = read(ROOT / "instructor" / name).cells
    assert not [c.source[:40] for c in cells if c.get("outputs")]


# -- reveal cells: no answer on screen before the prediction ---------------------------
def _reveal_fixture() -> nbformat.NotebookNode:
    """A prediction, then a cell tagged reveal whose output gives the answer away."""
    nb = nbformat.v4.new_notebook()
    out = nbformat.v4.new_output("stream", name="stdout", text="the answer is 4\n")
    nb.cells = [nbformat.v4.new_code_cell("order = ...", execution_count=1),
                nbformat.v4.new_code_cell("print(answer)", execution_count=2, outputs=[out],
                                          metadata={"tags": [REVEAL]}),
                nbformat.v4.new_code_cell("print(2)", execution_count=3, outputs=[out])]
    return nb


def test_the_student_version_clears_reveal_outputs_only():
    nb = _reveal_fixture()
    student = without_reveals(nb)
    assert student.cells[1].outputs == [] and student.cells[1].execution_count is None
    assert student.cells[2] == nb.cells[2] and student.cells[0] == nb.cells[0]
    assert nb.cells[1].outputs, "the regression copy keeps every output"


@pytest.mark.parametrize("name", NAMES)
def test_student_notebooks_show_no_reveal_output(name):
    shown = [i for i, c in enumerate(read(ROOT / "notebooks" / name).cells)
             if REVEAL in c.metadata.get("tags", []) and (c.get("outputs")
                                                          or c.get("execution_count"))]
    assert not shown, f"notebooks/{name}: reveal cells {shown} show their output"


def test_the_student_command_hides_reveal_cells_from_voila():
    nb = _reveal_fixture()
    nb.cells[1].metadata["tags"] = [REVEAL, "keep"]
    made = student_notebook(nb)
    assert made.cells[1].metadata["tags"] == [REVEAL, "keep", VOILA_HIDE]
    assert "tags" not in made.cells[0].metadata and "tags" not in made.cells[2].metadata
    assert student_notebook(made).cells[1].metadata["tags"].count(VOILA_HIDE) == 1


@pytest.mark.parametrize("name", NAMES)
def test_reveal_cells_are_left_out_of_voila_apps(name):
    """A Voila app takes no prediction, so it must not show a reveal cell either."""
    for folder in ("notebooks", "tests/notebooks"):
        cells = read(ROOT / folder / name).cells
        shown = [i for i, c in enumerate(cells) if REVEAL in c.metadata.get("tags", [])
                 and VOILA_HIDE not in c.metadata.get("tags", [])]
        assert not shown, f"{folder}/{name}: reveal cells {shown} lack the tag {VOILA_HIDE}"


def _clone(tmp_path: Path, name: str) -> Path:
    """What a checkout needs to test notebook ``name``: its three copies, tools, tests."""
    clone = tmp_path / "clone"
    for rel in ("pyproject.toml", "lab.py", "tests/__init__.py", "tests/conftest.py",
                "tests/test_teaching.py", "tests/nbval_sanitize.cfg", f"tests/notebooks/{name}",
                f"notebooks/{name}", f"instructor/{name}", *(
                    p.relative_to(ROOT) for p in (ROOT / "tools").glob("*.py"))):
        (clone / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, clone / rel)
    return clone


def test_a_students_saved_edit_fails_no_test(tmp_path):
    """The lab opens my_notebooks/; an answer saved there leaves the tests' inputs alone."""
    name = NAMES[0]
    clone = _clone(tmp_path, name)
    run = [sys.executable, "-c", "import lab; print(lab.working_copies())"]
    assert name in subprocess.run(run, cwd=clone, check=True, capture_output=True,
                                  text=True).stdout
    mine = clone / "my_notebooks" / name
    nb = read(mine)
    nb.cells[-1].source += "\nmy_answer = 42   # a student's edit, saved"
    nb.cells.append(nbformat.v4.new_code_cell("print('mine')", execution_count=99, outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="mine\n")]))
    nbformat.write(nb, mine)
    pytest_in_clone = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    listed = subprocess.run([*pytest_in_clone, "--collect-only"], cwd=clone, text=True,
                            capture_output=True, timeout=240)
    assert f"tests/notebooks/{name}::Cell 0" in listed.stdout, listed.stdout[-2000:]
    assert "my_notebooks" not in listed.stdout
    sync = subprocess.run([*pytest_in_clone, "tests/test_teaching.py", "-k",
                           "sync or reveal_output or instructor_source"],
                          cwd=clone, text=True, capture_output=True, timeout=240)
    assert sync.returncode == 0 and " passed" in sync.stdout, sync.stdout[-3000:]
    assert read(mine).cells[-1].source == "print('mine')"   # the student's work is intact


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
