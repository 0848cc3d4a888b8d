"""The exercises work in a real nbgrader course, not just in our own tools.

A throwaway course directory gets every instructor notebook with exercises
as one assignment.  ``nbgrader generate_assignment`` must accept the
metadata and release the same notebooks ``python3 lab.py student`` makes
(up to the top-level stub, see tools/student_version.py); ``nbgrader
autograde`` must give full marks to the instructor versions, whose hidden
tests run, and nothing to the unanswered student versions.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from student_version import comparable, instructor_sources, student_notebook  # noqa: E402

pytest.importorskip("nbgrader", reason="needs nbgrader (in requirements.txt)")
pytestmark = pytest.mark.timeout(1200)   # the course fixture runs every notebook twice

CONFIG = """\
c = get_config()
c.CourseDirectory.course_id = "vmemlab"
c.Execute.timeout = 600
"""
NBGRADER_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"


def graded_sources() -> list[Path]:
    return [p for p in instructor_sources()
            if any(c.metadata.get("nbgrader", {}).get("grade")
                   for c in nbformat.read(p, as_version=4).cells)]


def nbgrader(course: Path, *args: str) -> str:
    env = dict(os.environ)  # nbgrader runs alembic from the same environment
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    sources = graded_sources()
    if not sources:
        pytest.skip("no instructor notebook has graded exercises yet")
    course = tmp_path_factory.mktemp("course")
    (course / "nbgrader_config.py").write_text(CONFIG)
    for folder in ("source/lab", "submitted/solved/lab", "submitted/blank/lab"):
        (course / folder).mkdir(parents=True)
    for path in instructor_sources():     # all of them: autograde then runs each one
        shutil.copy(path, course / "source/lab" / path.name)
        shutil.copy(path, course / "submitted/solved/lab" / path.name)
        shutil.copy(ROOT / "notebooks" / path.name, course / "submitted/blank/lab" / path.name)
    nbgrader(course, "generate_assignment", "lab", "--force")
    nbgrader(course, "autograde", "lab", "--force", "--create")
    nbgrader(course, "export", "--to", str(course / "grades.csv"))
    return course


def test_released_notebooks_match_the_student_versions(course):
    for path in graded_sources():
        released = nbformat.read(course / "release/lab" / path.name, as_version=4)
        for cell in released.cells:
            cell.source = cell.source.replace(NBGRADER_STUB, "# YOUR ANSWER HERE")
            for added in ("checksum", "cell_type"):  # nbgrader records these on release
                cell.metadata.get("nbgrader", {}).pop(added, None)
        ours = student_notebook(nbformat.read(path, as_version=4))
        assert comparable(released) == comparable(ours), path.name


def test_every_answer_is_right_in_the_instructor_notebooks(course):
    """Autograde ran each instructor notebook top to bottom (hidden tests included):
    no cell failed and every answer cell's checker said Right."""
    for path in instructor_sources():
        nb = nbformat.read(course / "autograded/solved/lab" / path.name, as_version=4)
        for cell in nb.cells:
            outputs = cell.get("outputs", [])
            assert not [o for o in outputs if o.output_type == "error"], (
                f"{path.name}: {cell.source[:80]!r} failed")
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("solution") and cell.cell_type == "code":
                text = "".join(o.get("data", {}).get("text/plain", "") + o.get("text", "")
                               for o in outputs)
                assert text.startswith("Right."), f"{meta['grade_id']}: {text[:200]}"


def test_autograde_full_marks_for_solutions_none_for_blank(course):
    with open(course / "grades.csv") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    solved, blank = rows["solved"], rows["blank"]
    assert float(solved["max_score"]) >= 3 * len(graded_sources())
    assert float(solved["score"]) == float(solved["max_score"])
    assert float(blank["score"]) == 0
