"""Shared fixtures: tiny teaching machines where every pfn can be checked by hand."""

from __future__ import annotations

import pytest

import vmemlab as vm

TEACH_PAGES = 256  # 16 order-4 blocks, 32 pageblocks, 4 memory blocks


def teaching(kernel: str = "6.12", pages: int = TEACH_PAGES, **kw) -> vm.Machine:
    """A flat teaching machine of ``pages`` 4 KiB pages, one Normal zone."""
    return vm.Machine(boot_memory=pages * 4096, geometry="teaching", kernel=kernel, **kw)


@pytest.fixture
def teach() -> vm.Machine:
    return teaching()


@pytest.fixture(params=["6.12", "5.8"])
def any_kernel(request) -> str:
    return request.param


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
