#!/usr/bin/env python3
"""vmemlab's front door: set everything up, then open the lab, run the tests or the CLI.

    python3 lab.py                     create .venv if needed, install, open JupyterLab on 00
    python3 lab.py test                ... then run every test
    python3 lab.py run SCENARIO.toml   ... then the command line (run, sweep, buddy,
                                       virtio-mem, snapshot), as `python -m vmemlab`
    python3 lab.py student             ... then rebuild notebooks/ from instructor/ (authors)

Needs only Python 3.10+ (with its standard venv module).  Safe to run again:
the install step is skipped while requirements.txt and pyproject.toml are
unchanged.  Extra arguments go to JupyterLab, pytest or the CLI, e.g.
``python3 lab.py --no-browser`` or ``python3 lab.py test -k buddy``.

The lab opens your own copies of the notebooks in my_notebooks/ (made from
notebooks/ the first time, never overwritten afterwards), so what you save
is yours and the committed notebooks stay as the tests expect them.  It
reads its Jupyter settings from jupyter-config/ (see the README there).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".vmemlab-installed"
RELEASE = ROOT / "notebooks"          # the committed student version
WORK = ROOT / "my_notebooks"          # the student's own copies (git-ignored)
CONFIG = ROOT / "jupyter-config"      # JupyterLab and Voila settings of the lab
START = "00_start_here.ipynb"
CLI = ("run", "sweep", "buddy", "virtio-mem", "snapshot")   # vmemlab.cli's subcommands
TEST_WORKERS = "2"                    # pytest-xdist processes for `lab.py test`


def venv_python() -> Path:
    sub = "Scripts/python.exe" if os.name == "nt" else "bin/python"
    return VENV / sub


def requirements_hash() -> str:
    h = hashlib.sha256()
    for name in ("requirements.txt", "pyproject.toml"):
        h.update((ROOT / name).read_bytes())
    h.update(sys.version.encode())
    return h.hexdigest()


def ensure_env() -> Path:
    """Create the virtual environment and install requirements.txt into it, once."""
    if sys.version_info < (3, 10):  # noqa: UP036 - lab.py must explain itself on old Pythons
        sys.exit(f"vmemlab needs Python 3.10 or newer; this is {sys.version.split()[0]}")
    python = venv_python()
    if not python.exists():
        print(f"lab.py: creating {VENV.relative_to(ROOT)} ...", flush=True)
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        except (OSError, subprocess.CalledProcessError) as err:
            sys.exit(f"lab.py: could not create a virtual environment ({err}).\n"
                     "On Debian/Ubuntu install it with: sudo apt-get install python3-venv")
    want = requirements_hash()
    if STAMP.exists() and STAMP.read_text() == want:
        return python
    print("lab.py: installing requirements.txt (this takes a few minutes once) ...", flush=True)
    subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check",
                    "-r", str(ROOT / "requirements.txt")], cwd=ROOT, check=True)
    STAMP.write_text(want)
    return python


def working_copies() -> list[Path]:
    """Copy each notebook missing from my_notebooks/ there; one that exists is never touched.

    Returns the new copies.
    """
    WORK.mkdir(exist_ok=True)
    new = []
    for src in sorted(RELEASE.glob("[0-9][0-9]_*.ipynb")):
        dst = WORK / src.name
        if not dst.exists():
            shutil.copyfile(src, dst)
            new.append(dst)
    return new


def trust(python: Path, paths: list[Path]) -> None:
    """Sign ``paths`` as trusted (``jupyter trust``, which records them in the user's
    signature database and leaves the files alone): they are the project's own
    notebooks, so JupyterLab and Voila show their outputs without a "not trusted" warning."""
    if paths:
        subprocess.run([str(python), "-m", "jupyter", "trust", *map(str, paths)], cwd=ROOT,
                       check=True, stdout=subprocess.DEVNULL)


def lab_command(python: Path, argv: list[str]) -> list[str]:
    """JupyterLab over the repository, its start page notebook 00 of my_notebooks/."""
    os.environ["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
        p for p in (str(CONFIG), os.environ.get("JUPYTER_CONFIG_PATH")) if p)
    start = (WORK / START).relative_to(ROOT).as_posix()
    cmd = [str(python), "-m", "jupyter", "lab", f"--ServerApp.root_dir={ROOT}",
           f"--LabApp.default_url=/lab/tree/{start}", *argv]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")        # containers and CI often run as root
    return cmd


def main(argv: list[str]) -> int:
    python = ensure_env()
    cwd: Path | None = ROOT
    if argv[:1] == ["test"]:
        cmd = [str(python), "-m", "pytest", "-n", TEST_WORKERS, *argv[1:]]
    elif argv[:1] in (["setup"], ["install"]):
        return 0
    elif argv[:1] == ["student"]:
        cmd = [str(python), str(ROOT / "tools" / "student_version.py"), *argv[1:]]
    elif argv[:1] and argv[0] in CLI:
        cmd, cwd = [str(python), "-m", "vmemlab", *argv], None   # paths from the caller's folder
    else:
        trust(python, [*sorted(RELEASE.glob("[0-9][0-9]_*.ipynb")), *working_copies()])
        cmd = lab_command(python, argv)
    if os.name == "posix":        # become the tool: signals (Ctrl-C, kill) reach it directly
        if cwd is not None:
            os.chdir(cwd)
        os.execv(cmd[0], cmd)
    return subprocess.call(cmd, cwd=cwd)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
