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
# Seconds past a test's pytest-timeout before the hard stop (the variable is for its test).
HARD_GRACE = float(os.environ.get("VMEMLAB_TEST_HARD_GRACE", "120"))


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
def xdist_scope(nodeid: str) -> str:
    """The unit of work a test belongs to when ``python3 lab.py test`` spreads tests over
    pytest-xdist's workers; tests with the same scope run in one worker, in order.

    The browser tests (files named ``*browser*``) share one JupyterLab server and page;
    nbval's cells of one notebook run in one kernel, in order; a module in
    :data:`ONE_PROCESS` (the nbgrader course) builds its fixture once.  Any other test
    is its own unit.
    """
    path = nodeid.split("::", 1)[0]
    if "browser" in Path(path).name:
        return "browser"
    if path.endswith(".ipynb") or path in ONE_PROCESS:
        return path
    return nodeid


ONE_PROCESS = {"tests/test_nbgrader.py"}   # modules whose module-scoped fixture is costly


@pytest.hookimpl(optionalhook=True)    # a hook of pytest-xdist, when it is there
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's "load" scheduling over :func:`xdist_scope` units.

    (``--dist loadgroup`` cannot do this with pytest 9: it renames items through
    an attribute pytest 9 no longer reads.)
    """
    from xdist.scheduler import LoadScopeScheduling

    class ScopeScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    return ScopeScheduling(config, log)


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


def _hard_stop(item, seconds: float) -> None:
    """Print where every thread is, end every process the test started, then exit."""
    capture = item.config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        capture.suspend_global_capture(in_=False)    # write to the terminal, not the test's
    sys.__stderr__.write(f"\n{item.nodeid}: still running after {seconds:.0f} s, past its "
                         "timeout; stopping what it started and this test process\n")
    sys.__stderr__.flush()
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
    timer = threading.Timer(seconds, _hard_stop, args=(item, seconds))
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
