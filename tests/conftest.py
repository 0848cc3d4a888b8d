"""Shared fixtures: tiny teaching machines, the browser tests' server and page, a hard stop."""

from __future__ import annotations

import contextlib
import faulthandler
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import vmemlab as vm

ROOT = Path(__file__).resolve().parent.parent
TEACH_PAGES = 256  # 16 order-4 blocks, 32 pageblocks, 4 memory blocks
HARD_GRACE = 120   # seconds past a test's pytest-timeout before the hard stop


def teaching(kernel: str = "6.12", pages: int = TEACH_PAGES, **kw) -> vm.Machine:
    """A flat teaching machine of ``pages`` 4 KiB pages, one Normal zone."""
    return vm.Machine(boot_memory=pages * 4096, geometry="teaching", kernel=kernel, **kw)


@pytest.fixture
def teach() -> vm.Machine:
    return teaching()


@pytest.fixture(params=["6.12", "5.8"])
def any_kernel(request) -> str:
    return request.param


# -- scheduling: what must run in one process under pytest-xdist ----------------
@pytest.hookimpl(tryfirst=True)     # before xdist reads the groups
def pytest_collection_modifyitems(config, items) -> None:
    """Group tests that share expensive state, for ``--dist loadgroup`` (lab.py test).

    The browser tests share one JupyterLab server and page; nbval's cells of
    one notebook run in one kernel, in order; a module-scoped fixture (the
    nbgrader course) is built once.  Other tests are spread one by one.
    """
    for item in items:
        if item.get_closest_marker("browser"):
            group = "browser"
        elif ".ipynb::" in item.nodeid or getattr(getattr(item, "module", None),
                                                   "XDIST_ONE_PROCESS", False):
            group = item.nodeid.split("::")[0]
        else:
            continue
        item.add_marker(pytest.mark.xdist_group(group))


# -- a hard bound on every test ---------------------------------------------------
def _timeout(item) -> float:
    """The test's pytest-timeout bound in seconds (its mark, else pyproject's)."""
    mark = item.get_closest_marker("timeout")
    if mark and mark.args:
        return float(mark.args[0])
    with contextlib.suppress(ValueError, TypeError):
        return float(item.config.getini("timeout"))
    return 600.0


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc), children first listed last."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, pp in parent.items() if pp in frontier]
        found += kids
        frontier = kids
    return found


def _hard_stop(nodeid: str, seconds: float) -> None:
    """Print where every thread is, end every process the test started, then exit."""
    sys.__stderr__.write(f"\n{nodeid}: still running after {seconds:.0f} s, past its "
                         "timeout; stopping its servers and this test process\n")
    faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)
    pids = _descendants(os.getpid()) if os.path.isdir("/proc") else []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        time.sleep(3)
    os._exit(3)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem) -> Iterator[None]:
    """pytest-timeout fails a test that overruns (its fixtures then stop its servers);
    if even that does not end it, this timer does, :data:`HARD_GRACE` s later."""
    seconds = _timeout(item) + HARD_GRACE
    timer = threading.Timer(seconds, _hard_stop, args=(item.nodeid, seconds))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


# -- browser tests (pytest-playwright) -----------------------------------------
@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright launches Debian's Chromium, headless, never a downloaded one."""
    from .browser import CHROMIUM, LAUNCH_ARGS

    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": LAUNCH_ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    """A window the size of a laptop screen, for readable screenshots."""
    return {**browser_context_args, "viewport": {"width": 1440, "height": 1000}}


@pytest.fixture(scope="session")
def lab_site(tmp_path_factory) -> Path:
    """What the test server serves: a copy of notebooks/ (nothing is saved into the
    repository) and widgets/ for the one-cell widget notebooks."""
    site = tmp_path_factory.mktemp("site")
    shutil.copytree(ROOT / "notebooks", site / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (site / "widgets").mkdir()
    return site


@pytest.fixture(scope="session")
def lab_server(lab_site: Path) -> Iterator[str]:
    """One JupyterLab server for every browser test, configured as the lab is."""
    from .browser import jupyterlab

    with jupyterlab(lab_site) as base:
        yield base


@pytest.fixture(scope="session")
def lab(browser, browser_context_args, lab_server):
    """A page with JupyterLab loaded, shared by the tests (a load costs seconds of CPU)."""
    from .browser import Lab

    context = browser.new_context(**browser_context_args)
    context.set_default_timeout(90_000)
    try:
        yield Lab(context.new_page(), lab_server)
    finally:
        context.close()
