"""Keep benchmarks/RESULTS.md: each benchmark script owns one marked section."""

from __future__ import annotations

import platform
import re
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "RESULTS.md"


def update_section(name: str, body: str, machine: str = "one core") -> None:
    """Replace the text between <!-- name --> markers (appending the section if new)."""
    stamp = (f"_Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, "
             f"Python {platform.python_version()}, {machine}._")
    block = f"<!-- {name} -->\n{body}\n\n{stamp}\n<!-- /{name} -->"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"<!-- {name} -->.*?<!-- /{name} -->", re.S)
    text = pattern.sub(block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block
    RESULTS.write_text(text.rstrip() + "\n")
