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
