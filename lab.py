#!/usr/bin/env python3
"""vmemlab's front door: set everything up, then open the lab or run the tests.

    python3 lab.py            create .venv if needed, install, open JupyterLab
    python3 lab.py test       create .venv if needed, install, run every test
    python3 lab.py student    ... then rebuild notebooks/ from instructor/ (for authors)

Needs only Python 3.10+ (with its standard venv module).  Safe to run again:
the install step is skipped while requirements.txt and pyproject.toml are
unchanged.  Extra arguments go to JupyterLab or pytest, e.g.
``python3 lab.py --no-browser`` or ``python3 lab.py test -k buddy``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".vmemlab-installed"
START = "notebooks/00_start_here.ipynb"


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


def main(argv: list[str]) -> int:
    python = ensure_env()
    if argv[:1] == ["test"]:
        cmd = [str(python), "-m", "pytest", *argv[1:]]
    elif argv[:1] in (["setup"], ["install"]):
        return 0
    elif argv[:1] == ["student"]:
        cmd = [str(python), str(ROOT / "tools" / "student_version.py"), *argv[1:]]
    else:
        cmd = [str(python), "-m", "jupyter", "lab", START, *argv]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")        # containers and CI often run as root
    if os.name == "posix":        # become the tool: signals (Ctrl-C, kill) reach it directly
        os.chdir(ROOT)
        os.execv(cmd[0], cmd)
    return subprocess.call(cmd, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
