"""Argument checks shared by the public entry points.

Every public call checks its arguments before it changes anything, and a
bad one raises ``ValueError`` naming the parameter, the value and what is
allowed.  Python's loose truths are refused: ``True`` is not the number 1,
``"no"`` is not a boolean, ``nan`` and ``inf`` are not times.

The limits on simulated time bound the wall time of one call: a call
simulates at most ``MAX_SECONDS`` (11.6 days) and fires at most
``MAX_TICKS`` ticks of background activities, so ``m.run(1e308)`` is an
error, not a hang.  ``check_capacity`` refuses a machine that cannot be
simulated on this computer before any array is allocated.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .constants import Geometry, format_size
from .memmap import memmap_bytes
from .realmem.capture import available_ram

MAX_SECONDS = 1e6          # simulated seconds one run()/settle()/timeout may cover
MAX_TICKS = 10_000         # background-activity ticks one run()/settle() may fire
INT_MAX = 2**31 - 1        # the kernel's int (nr_pages of alloc_pages_bulk, sysctls)
PHYS_ADDR_BITS = 40        # QEMU's default phys-bits for x86 CPUs: 1 TiB of guest addresses
MAX_MEMORY_BLOCKS = 16384  # memory blocks are Python objects; 4 GiB of the teaching geometry
WORKING_SET = 4            # peak bytes in use per byte of memmap arrays (validate's copies)


def check_bool(name: str, value: Any) -> bool:
    """A real boolean: True or False (not 0/1, not "no")."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}={value!r} must be True or False")
    return bool(value)


def check_int(name: str, value: Any, lo: int = 0, hi: int | None = None) -> int:
    """A whole number in [lo, hi] (numpy integers too; not a bool, not 1.0)."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not ok or value < lo or (hi is not None and value > hi):
        span = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name}={value!r} must be a whole number {span}")
    return int(value)


def check_number(name: str, value: Any, lo: float = 0.0, hi: float | None = None,
                 open_lo: bool = False, unit: str = "") -> float:
    """A finite real number in [lo, hi] ((lo, hi] with ``open_lo``)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) \
        and not isinstance(value, (bool, np.bool_)) and math.isfinite(value)
    if ok and (value < lo or (open_lo and value == lo) or (hi is not None and value > hi)):
        ok = False
    if not ok:
        left = "(" if open_lo else "["
        span = f"in {left}{lo:g}, {hi:g}]" if hi is not None else \
            (f"> {lo:g}" if open_lo else f">= {lo:g}")
        raise ValueError(f"{name}={value!r} must be a finite number {span}{unit}")
    return float(value)


def check_seconds(name: str, value: Any, positive: bool = False) -> float:
    """Simulated seconds: finite, >= 0 (> 0 with ``positive``), at most MAX_SECONDS."""
    return check_number(name, value, 0.0, MAX_SECONDS, open_lo=positive,
                        unit=f" of simulated seconds (at most {MAX_SECONDS:g} per call)")


def check_fraction(name: str, value: Any) -> float:
    """A share in [0, 1]."""
    return check_number(name, value, 0.0, 1.0)


def check_capacity(geo: Geometry, end_pfn: int, what: str) -> None:
    """Refuse pfns [0, end_pfn) that cannot be simulated here, before allocating them.

    Three limits, each named in the error: an x86-64 guest's addresses end
    at 2**40 (QEMU's phys-bits=40: "Address space limit ... phys-bits too
    low"); at most MAX_MEMORY_BLOCKS memory blocks; and the memmap arrays
    (bytes per page from their dtypes), times the working set validation
    needs, must fit in the free RAM of this computer.
    """
    end = end_pfn << geo.page_shift
    if geo.layout == "q35" and end > 1 << PHYS_ADDR_BITS:
        raise ValueError(f"{what}: memory would end at {end:#x}, beyond the guest's physical "
                         f"address space of {format_size(1 << PHYS_ADDR_BITS)} "
                         f"(QEMU phys-bits={PHYS_ADDR_BITS})")
    blocks = -(-end // geo.memory_block_size)
    if blocks > MAX_MEMORY_BLOCKS:
        raise ValueError(f"{what}: {blocks} memory blocks of "
                         f"{format_size(geo.memory_block_size)}; vmemlab simulates at most "
                         f"{MAX_MEMORY_BLOCKS} "
                         f"({format_size(MAX_MEMORY_BLOCKS * geo.memory_block_size)})")
    need = memmap_bytes(geo, end_pfn) * WORKING_SET
    free = available_ram()
    if free is not None and need > free:
        raise ValueError(f"{what}: simulating {end_pfn} pages needs about {need >> 20} MiB "
                         f"of this computer's memory; only {free >> 20} MiB is available")
