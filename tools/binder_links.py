"""Write the README's table of notebooks with their Binder launch links.

    .venv/bin/python tools/binder_links.py           # rewrite the README table
    .venv/bin/python tools/binder_links.py --check   # exit 1 if it is stale

Every link is built from one place, ``[project.urls] Repository`` in
pyproject.toml: change it there (a fork, a new home) and run this again.
Each notebook gets a JupyterLab link (``urlpath=lab/tree/...``); the
notebooks listed in ``VOILA`` also get a Voilà app link
(``urlpath=voila/render/...``).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from urllib.parse import quote

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BINDER = "https://mybinder.org/v2/gh"
VOILA = {"07_virtio_mem_driver.ipynb"}
BEGIN, END = "<!-- notebooks: made by tools/binder_links.py -->", "<!-- /notebooks -->"


def repository() -> str:
    """The GitHub repository as owner/name, from pyproject.toml."""
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    match = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+?)(\.git)?/?", urls["Repository"])
    if not match:
        raise ValueError(f"[project.urls] Repository must be a GitHub URL: "
                         f"{urls['Repository']!r}")
    return match.group(1)


def binder_url(path: str, app: str = "lab/tree") -> str:
    """A mybinder.org link that opens ``path`` (relative to the repo) in ``app``."""
    return f"{BINDER}/{repository()}/HEAD?urlpath={quote(f'{app}/{path}', safe='')}"


def title(path: Path) -> str:
    """The notebook's first heading, without its number."""
    cells = json.loads(path.read_text())["cells"]
    heading = next(("".join(c["source"]).splitlines()[0] for c in cells
                    if c["cell_type"] == "markdown"), path.stem)
    return re.sub(r"^#+\s*(\d+\s*[·:.-]\s*)?", "", heading).strip()


def table() -> str:
    rows = ["| # | notebook | open in Binder |", "|---|---|---|"]
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        rel = f"notebooks/{path.name}"
        links = f"[JupyterLab]({binder_url(rel)})"
        if path.name in VOILA:
            links += f" · [Voilà app]({binder_url(rel, 'voila/render')})"
        rows.append(f"| {path.name[:2]} | [{title(path)}]({rel}) | {links} |")
    return "\n".join(rows)


def updated_readme() -> str:
    text = README.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(f"README.md needs the markers {BEGIN} and {END}")
    head, rest = text.split(BEGIN, 1)
    return f"{head}{BEGIN}\n{table()}\n{END}{rest.split(END, 1)[1]}"


def main(argv: list[str]) -> int:
    new = updated_readme()
    if "--check" in argv:
        if new != README.read_text():
            print("README.md notebook table is stale: run tools/binder_links.py",
                  file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
