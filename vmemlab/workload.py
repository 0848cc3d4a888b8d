"""Workloads: seeded generators and explicit operation strings.

Three ways to put memory to use, all deterministic for a given machine seed:

* ``fill(m, fraction, mix)``: allocate until ``fraction`` of managed memory is
  in use, interleaving movable, unmovable and reclaimable pages in random
  chunks (movable = anonymous memory, unmovable = kernel pages, reclaimable =
  reclaimable slab pages).
* ``churn(m, steps)``: OSTEP-style random allocations of random orders and
  mobility, each freed after a random lifetime, which fragments memory.
* ``run_ops(m, "+0:M,+2:U,-0")``: an explicit sequence for exercises.  ``+o``
  or ``+o:T`` allocates a block of order ``o`` of type ``T`` (``M`` movable,
  ``U`` unmovable, ``R`` reclaimable, or a gfp name); ``-i`` frees the
  block of the i-th allocation.  ``format_ops`` prints the sequence with
  the results, or with ``?`` in their place for predict-then-reveal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .activity import Activity, AnonActivity, allocate_in_turn
from .checks import check_fraction, check_int, check_number

if TYPE_CHECKING:
    from .machine import Machine
    from .node import Owner

MOBILITY_GFP = {"M": "GFP_HIGHUSER_MOVABLE", "U": "GFP_KERNEL",
                "R": "GFP_KERNEL | __GFP_RECLAIMABLE"}
DEFAULT_MIX = {"movable": 0.7, "unmovable": 0.2, "reclaimable": 0.1}
_MIX_KINDS = {"movable": "anon", "unmovable": "kernel", "reclaimable": "slab_reclaimable"}


def fill(m: Machine, fraction: float = 0.75, mix: dict[str, float] | None = None,
         chunk: int | str = "2M") -> dict[str, Activity]:
    """Fill the machine until ``fraction`` of its managed memory is in use.

    ``mix`` gives the share of each mobility class (default 70% movable,
    20% unmovable, 10% reclaimable).  Chunks of about ``chunk`` bytes
    (exponentially distributed) are allocated in a random order drawn from
    the machine's generator.  Returns the three activities, by class.
    """
    from .constants import parse_size

    mix = _check_mix(mix)
    check_fraction("fraction", fraction)
    chunk_bytes = parse_size(chunk)
    if not chunk_bytes:
        raise ValueError(f"chunk={chunk!r} must be at least one byte")
    node = m.node
    managed = sum(z.managed_pages for z in node.zones)
    used = managed - sum(z.nr_free_pages for z in node.zones)
    want = max(0, int(managed * fraction) - used)
    classes = list(mix)
    shares = np.array([mix[c] for c in classes], float)
    targets = np.floor(want * shares / shares.sum()).astype(np.int64)
    acts = {c: _fill_activity(m, c) for c in classes}
    mean = max(1, chunk_bytes >> m.geometry.page_shift)
    left = targets.tolist()
    while sum(left) > 0:
        # Draw a batch of (class, size) pairs at once; skip classes already done.
        batch = 2 * sum(left) // mean + 16
        picks = m.rng.choice(len(classes), size=batch, p=shares / shares.sum())
        sizes = np.maximum(1, m.rng.exponential(mean, size=batch)).astype(np.int64)
        plan = []
        remaining = sum(left)
        for c, size in zip(picks.tolist(), sizes.tolist(), strict=True):
            n = min(left[c], size)
            if n == 0:
                continue
            left[c] -= n
            plan.append((acts[classes[c]], n))
            remaining -= n
            if not remaining:    # every later pick would be skipped
                break
        if not allocate_in_turn(plan):   # each act.allocate(n), stopping at a shortfall
            return acts
    return acts


def _check_mix(mix: dict[str, float] | None) -> dict[str, float]:
    """Shares of movable/unmovable/reclaimable: finite, non-negative, not all zero."""
    mix = dict(DEFAULT_MIX if mix is None else mix)
    ok = bool(mix) and not set(mix) - set(_MIX_KINDS) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        and v >= 0 for v in mix.values()) and sum(mix.values()) > 0
    if not ok:
        raise ValueError(f"mix={mix!r} must map {sorted(_MIX_KINDS)} to non-negative shares "
                         "that are not all zero")
    return mix


def _fill_activity(m: Machine, cls: str) -> Activity:
    kind = _MIX_KINDS[cls]
    name = f"fill ({cls})"
    act = (AnonActivity(m, kind, name, page_tables=False) if kind == "anon"
           else Activity(m, kind, name))
    m.activities.append(act)
    return act


@dataclass
class ChurnStats:
    """What a churn run did."""

    steps: int
    allocated: int
    failed: int
    freed: int
    live: int


def churn(m: Machine, steps: int = 1000, mix: dict[str, float] | None = None,
          max_order: int = 3, lifetime: float = 50.0) -> ChurnStats:
    """Random allocations with random lifetimes: the classic fragmenter.

    Each step allocates one block: order geometric (p = 1/2) up to
    ``max_order``, mobility drawn from ``mix``, lifetime exponential with
    mean ``lifetime`` steps; blocks whose lifetime ended are freed first.
    Blocks still alive at the end stay allocated (see the returned stats).
    """
    mix = _check_mix(mix)
    codes = {"movable": "M", "unmovable": "U", "reclaimable": "R"}
    check_int("steps", steps)
    check_int("max_order", max_order, 0, m.geometry.max_page_order)
    check_number("lifetime", lifetime, 0.0, open_lo=True, unit=" steps")
    classes = list(mix)
    p = np.array([mix[c] for c in classes], float)
    p /= p.sum()
    live: list[tuple[float, Owner]] = []     # the owner follows a block compaction moves
    stats = ChurnStats(steps, 0, 0, 0, 0)
    for step in range(steps):
        keep = []
        for death, owner in live:
            if death <= step:
                m.free_pages(owner.pfn, owner.order)
                stats.freed += 1
            else:
                keep.append((death, owner))
        live = keep
        order = min(int(m.rng.geometric(0.5)) - 1, max_order)
        cls = classes[int(m.rng.choice(len(classes), p=p))]
        pfn = m.alloc_pages(order, MOBILITY_GFP[codes[cls]])
        if pfn is None:
            stats.failed += 1
            continue
        stats.allocated += 1
        owner = m.node.owners[int(m.node.mm.owner[pfn])]
        live.append((step + m.rng.exponential(lifetime), owner))
    stats.live = len(live)
    return stats


@dataclass(frozen=True)
class OpResult:
    """One operation of an op string and what it returned."""

    index: int
    text: str
    alloc: bool
    order: int
    gfp: str
    pfn: int | None
    target: int = -1


def parse_ops(spec: str) -> list[tuple[str, int, str]]:
    """Parse "+0:M,+2:U,-0" into (op, number, gfp) triples; ValueError names the bad item."""
    ops = []
    for i, raw in enumerate(s.strip() for s in spec.split(",")):
        if not raw:
            continue
        if raw[0] == "+":
            order_s, _, t = raw[1:].partition(":")
            gfp = MOBILITY_GFP.get(t.upper(), t) if t else MOBILITY_GFP["M"]
            if not order_s.isdigit():
                raise ValueError(f"op {i} {raw!r}: expected +ORDER or +ORDER:TYPE")
            ops.append(("+", int(order_s), gfp))
        elif raw[0] == "-" and raw[1:].isdigit():
            ops.append(("-", int(raw[1:]), ""))
        else:
            raise ValueError(f"op {i} {raw!r}: expected +ORDER[:M|U|R|GFP] or -INDEX")
    return ops


def run_ops(m: Machine, spec: str) -> list[OpResult]:
    """Run an op string on the machine; return one result per operation."""
    allocs: list[tuple[int | None, int]] = []
    results = []
    for i, (op, n, gfp) in enumerate(parse_ops(spec)):
        if op == "+":
            pfn = m.alloc_pages(n, gfp)
            results.append(OpResult(i, f"+{n}", True, n, gfp, pfn, len(allocs)))
            allocs.append((pfn, n))
        else:
            if n >= len(allocs) or allocs[n][0] is None:
                raise ValueError(f"op {i} '-{n}': allocation {n} does not exist or failed")
            pfn, order = allocs[n]
            m.free_pages(pfn, order)
            allocs[n] = (None, order)
            results.append(OpResult(i, f"-{n}", False, order, "", pfn, n))
    return results


def format_ops(results: list[OpResult], compute: bool = True) -> str:
    """OSTEP-style listing; with ``compute=False`` results print as ``?``."""
    lines = []
    for r in results:
        if r.alloc:
            got = "?" if not compute else ("NULL" if r.pfn is None else f"{r.pfn:#x}")
            lines.append(f"ptr[{r.target}] = alloc_pages(order={r.order}, {r.gfp}) "
                         f"returned {got}")
        else:
            where = f"{r.pfn:#x}" if compute else "?"
            lines.append(f"free_pages(ptr[{r.target}], order={r.order})  (pfn {where})")
    return "\n".join(lines) + "\n"
