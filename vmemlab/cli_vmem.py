"""``vmemlab virtio-mem``: OSTEP-style homework on the virtio-mem driver.

A seed generates a timeline on the tiny teaching machine: the host resizes
a virtio-mem device (``qom-set vmem0 requested-size ...``) while the guest
allocates and frees kernel (unmovable) and user (movable) pages.  Where
each allocation lands is given; predict, after each resize, wait or
reboot, how much is plugged, the driver's last result, and which subblocks
of which memory blocks are plugged.  ``-c`` computes the answers by running
the model.

Operations (``-A``): ``=SIZE`` sets requested-size and lets the driver work
(``=640k``); ``+U:N`` / ``+M:N`` allocate N pages, unmovable (kernel
memory, GFP_KERNEL) or movable (anonymous memory); ``-I`` frees allocation
I; ``w`` waits 300 s (the retry timer fires); ``r`` reboots.

Kernel: drivers/virtio/virtio_mem.c (virtio_mem_sbm_plug_request(),
virtio_mem_sbm_unplug_request(), virtio_mem_run_wq())
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .cli_common import UsageError, homework_ops, homework_parser
from .constants import EBUSY, ENOMEM, errname, format_size, parse_size
from .machine import Machine
from .virtio_mem_driver import RUN_WQ_ACTIONS

WAIT_S = 300.0
KINDS = {"U": ("kernel", "kernel memory, GFP_KERNEL (unmovable)"),
         "M": ("anon", "anonymous memory, GFP_HIGHUSER_MOVABLE (movable)")}

VMEM_DESCRIPTION = """\
OSTEP-style homework on the virtio-mem driver, on the tiny teaching geometry
(4 KiB pages, pageblocks of 8 pages, memory blocks of 64 pages = 256 KiB).
A seed generates a timeline: the host resizes the device while the guest
allocates unmovable (kernel) and movable (user) pages, whose pfns are given.
After each resize, wait or reboot, predict the plugged size, the driver's
last result (0, -EBUSY, ...) and which subblocks are plugged; -c computes
the answers.

The driver plugs into the partly plugged memory block first, then adds
whole blocks from the lowest address; it unplugs from partly plugged blocks
first, then from the highest memory block down, the highest subblock first,
and skips a subblock alloc_contig_range() cannot free (-EBUSY: unmovable
pages), retrying later on a timer (50 s, 100 s, ...).

Operations: =SIZE resize (=640k); +U:N or +M:N allocate N pages,
unmovable or movable; -I free allocation I; w wait 300 s; r reboot."""

VMEM_EPILOG = """\
examples:
  python -m vmemlab virtio-mem -s 1                 a random problem
  python -m vmemlab virtio-mem -s 1 -c              ... and its answers
  python -m vmemlab virtio-mem -A =1536k,+U:16,=256k,w -c
  python -m vmemlab virtio-mem -s 2 -k 5.8 -o online_movable -c
"""


def add_virtio_mem(sub: argparse._SubParsersAction) -> None:
    """Register ``virtio-mem``: resize-timeline homework (-s SEED, -c)."""
    p = homework_parser(sub, "virtio-mem", "virtio-mem driver homework (OSTEP style: -s SEED, "
                        "-c)", VMEM_DESCRIPTION, VMEM_EPILOG, 8)
    p.add_argument("-o", "--online", default="online",
                   choices=("online", "online_kernel", "online_movable"),
                   help="auto_online_blocks for new memory blocks (default online: "
                        "ZONE_NORMAL)")
    p.add_argument("-m", "--memory", default="512k", metavar="SIZE",
                   help="boot memory, a multiple of 256k (default 512k = 2 memory blocks)")
    p.add_argument("-r", "--region", default="2M", metavar="SIZE",
                   help="the device's region, a multiple of 256k (default 2M = 8 memory "
                        "blocks)")
    homework_ops(p, "=1M,+U:16,=256k,w")
    p.set_defaults(run=run_vmem)


def run_vmem(args: argparse.Namespace) -> int:
    print(vmem_homework(args.seed, args.num_ops, args.kernel, args.online, args.memory,
                        args.region, args.ops, args.compute), end="")
    return 0


# ---------------------------------------------------------------- operations
@dataclass(frozen=True)
class VmemOp:
    """One operation: resize (bytes), alloc (pages, 'U' or 'M'), free (index), wait, reboot."""

    kind: str
    amount: int = 0
    mobility: str = ""

    def __str__(self) -> str:
        return {"resize": f"={self.amount >> 10}k", "alloc": f"+{self.mobility}:{self.amount}",
                "free": f"-{self.amount}", "wait": "w", "reboot": "r"}[self.kind]


def parse_vmem_ops(spec: str) -> list[VmemOp]:
    """Parse "=1M,+U:16,-0,w,r"; ValueError names the bad item."""
    ops = []
    for i, raw in enumerate(s.strip() for s in spec.split(",")):
        if not raw:
            continue
        try:
            ops.append(_parse_op(raw))
        except ValueError:
            raise ValueError(f"op {i} {raw!r}: expected =SIZE, +U:PAGES, +M:PAGES, -INDEX, "
                             "w or r") from None
    return ops


def _parse_op(raw: str) -> VmemOp:
    if raw in ("w", "r"):
        return VmemOp("wait" if raw == "w" else "reboot")
    if raw[0] == "=":
        return VmemOp("resize", parse_size(raw[1:]))
    if raw[0] == "-" and raw[1:].isdigit():
        return VmemOp("free", int(raw[1:]))
    mob, _, pages = raw[1:].partition(":")
    if raw[0] == "+" and mob.upper() in KINDS and pages.isdigit() and int(pages) > 0:
        return VmemOp("alloc", int(pages), mob.upper())
    raise ValueError(raw)


def random_vmem_ops(seed: int, nr_ops: int, problem: Callable[[], VmemProblem]) -> str:
    """A random op string, the same for the same arguments on any platform.

    numpy's ``default_rng(seed)`` draws each op while the ops run on
    ``problem()``, so the timeline can react: the first op grows the device
    to 3/4 or more of its region; after a resize that did not get there
    (-EBUSY, -ENOMEM) the next op is, half of the time, a free of an
    unmovable allocation or a wait.  Otherwise: an allocation of 8..96 pages
    (45%, 60% of them unmovable), a resize (40%), a free (10%) or a reboot.
    """
    rng = np.random.default_rng(seed)
    prob = problem()
    n_sb = prob.dev.region_size // prob.sb_size
    ops: list[VmemOp] = []
    live: dict[int, str] = {}              # allocation index -> mobility
    for i in range(nr_ops):
        op = _draw(rng, i, n_sb, prob, live)
        if op.kind == "alloc":
            live[len(prob.allocs)] = op.mobility
        elif op.kind == "free":
            del live[op.amount]
        elif op.kind == "reboot":
            live.clear()
        prob.apply(i, op)
        ops.append(op)
    return ",".join(map(str, ops))


def _draw(rng: np.random.Generator, i: int, n_sb: int, prob: VmemProblem,
          live: dict[int, str]) -> VmemOp:
    sb = prob.sb_size
    if i == 0:
        return VmemOp("resize", int(rng.integers(3 * n_sb // 4, n_sb + 1)) * sb)
    stuck = prob.dev.driver.last_rc in (EBUSY, ENOMEM)
    unmovable = [k for k, mob in live.items() if mob == "U"]
    r = rng.random()
    if stuck and r < 0.5:
        if unmovable and rng.random() < 0.5:
            return VmemOp("free", unmovable[int(rng.integers(len(unmovable)))])
        return VmemOp("wait")
    r = rng.random()
    if r < 0.45:
        return VmemOp("alloc", int(rng.integers(8, 97)), "U" if rng.random() < 0.6 else "M")
    if r < 0.85 or not live:
        return VmemOp("resize", int(rng.integers(0, n_sb + 1)) * sb)
    if r < 0.95:
        keys = sorted(live)
        return VmemOp("free", keys[int(rng.integers(len(keys)))])
    return VmemOp("reboot")


# ------------------------------------------------------------------ the model
@dataclass
class Answer:
    """What the driver did by the end of one op (resize, wait or reboot)."""

    size: int
    last_rc: int | None
    blocks: list[tuple[int, str, str]]     # (memory block id, state, subblock map)

    def text(self, sb_size: int) -> list[str]:
        rc = "not run" if self.last_rc is None else (
            f"{errname(self.last_rc)} ({RUN_WQ_ACTIONS.get(self.last_rc, 'device broken')})")
        out = [f"plugged {format_size(self.size)} ({self.size // sb_size} subblocks), "
               f"last rc {rc}"]
        out += [f"memory{bid:<3} {sbs}  {state}" for bid, state, sbs in self.blocks
                if state != "UNUSED"]
        unused = [f"memory{bid}" for bid, state, _ in self.blocks if state == "UNUSED"]
        if unused:
            out.append(f"not added (UNUSED): {', '.join(unused)}")
        return out


class VmemProblem:
    """A teaching machine with one virtio-mem device, driven op by op."""

    def __init__(self, kernel: str, online: str, memory: str, region: str) -> None:
        try:
            self.m = Machine(boot_memory=memory, kernel=kernel, geometry="teaching",
                             auto_online_blocks=online)
        except ValueError as e:
            raise UsageError(f"--memory {memory!r}: {e}") from None
        try:
            self.dev = self.m.add_virtio_mem(region_size=region)
        except ValueError as e:
            raise UsageError(f"--region {region!r}: {e}") from None
        self.allocs: list[Any] = []        # activities; None once freed or rebooted away
        self.sb_size = self.dev.driver.view().sb_pages << self.m.geometry.page_shift

    def apply(self, i: int, op: VmemOp) -> tuple[str, Answer | None]:
        """Run one op; the line describing it (with pfns of an allocation) and any answer."""
        m, dev = self.m, self.dev
        if op.kind == "resize":
            try:
                dev.requested_size = op.amount
            except ValueError as e:
                raise UsageError(f"op {i} '{op}': {e}") from None
            m.settle()
            return f"qom-set vmem0 requested-size {format_size(op.amount)}", self.answer()
        if op.kind == "wait":
            m.run(WAIT_S)
            m.settle()
            return f"wait {WAIT_S:g} s (t={m.now:.1f} s)", self.answer()
        if op.kind == "reboot":
            m.reboot()
            m.settle()
            self.allocs = [None] * len(self.allocs)
            return "reboot: QEMU unplugs everything, the guest boots again", self.answer()
        if op.kind == "free":
            return self.free(i, op), None
        return self.alloc(op), None

    def alloc(self, op: VmemOp) -> str:
        kind, what = KINDS[op.mobility]
        act = self.m.activity(kind, size=op.amount << self.m.geometry.page_shift,
                              name=f"alloc[{len(self.allocs)}]")
        self.allocs.append(act)
        short = f" ({format_size(act.shortfall)} short)" if act.shortfall else ""
        return (f"alloc[{len(self.allocs) - 1}] = {op.amount} pages of {what} at pfns "
                f"{_ranges(act.pages())}{short}")

    def free(self, i: int, op: VmemOp) -> str:
        n = op.amount
        if n >= len(self.allocs) or self.allocs[n] is None:
            raise UsageError(f"op {i} '{op}': allocation {n} does not exist, was freed, "
                             "or did not survive a reboot")
        pfns = _ranges(self.allocs[n].pages())
        self.allocs[n].release()
        self.allocs[n] = None
        return f"free alloc[{n}] (pfns {pfns})"

    def answer(self) -> Answer:
        view = self.dev.driver.view()
        per_mb = self.m.geometry.pages_per_memory_block
        first = view.first_unit_pfn // per_mb
        blocks = [(first + u, state, "".join("#" if p else "." for p in view.sb_plugged[u]))
                  for u, state in enumerate(view.mb_states)]
        return Answer(self.dev.size, self.dev.driver.last_rc, blocks)

    def describe(self) -> str:
        m, dev, geo = self.m, self.dev, self.m.geometry
        view = dev.driver.view()
        per_mb = geo.pages_per_memory_block
        first, n_mb = view.first_unit_pfn // per_mb, view.nr_pages // per_mb
        return (f"A teaching machine of {m.node.mm.nr_pfns - view.nr_pages} pages "
                f"({format_size(m.boot_memory)}): pageblocks of {geo.pageblock_nr_pages} pages, "
                f"memory blocks of {per_mb} pages ({format_size(geo.memory_block_size)}).\n"
                f"vmem0: region {format_size(dev.region_size)} at pfns [{view.start_pfn:#x}, "
                f"{view.start_pfn + view.nr_pages:#x}) = memory{first}..memory"
                f"{first + n_mb - 1}, device block {format_size(dev.block_size)}.\n"
                f"Linux {m.profile.name} driver, {view.mode}: subblocks of {view.sb_pages} pages "
                f"({format_size(self.sb_size)}), {per_mb // view.sb_pages} per memory block; "
                f"new blocks are onlined with auto_online_blocks={m.auto_online_blocks}.\n")


def _ranges(pfns: np.ndarray) -> str:
    """Sorted pfns as ranges: "0x100-0x10f, 0x120"."""
    if not len(pfns):
        return "(none)"
    pfns = np.sort(pfns)
    breaks = np.flatnonzero(np.diff(pfns) != 1) + 1
    parts = [(int(run[0]), int(run[-1])) for run in np.split(pfns, breaks)]
    return ", ".join(f"{a:#x}" if a == b else f"{a:#x}-{b:#x}" for a, b in parts)


# --------------------------------------------------------------------- text
def vmem_homework(seed: int = 0, num_ops: int = 8, kernel: str = "6.12", online: str = "online",
                  memory: str = "512k", region: str = "2M", ops: str = "",
                  compute: bool = False) -> str:
    """The full text of one problem: ARG lines, the machine, the ops, answers or ``?``."""
    args = {"seed": seed, "num-ops": num_ops, "kernel": kernel, "online": online,
            "memory": memory, "region": region, "ops": ops, "compute": compute}
    prob = VmemProblem(kernel, online, memory, region)
    spec = ops or random_vmem_ops(seed, num_ops,
                                  lambda: VmemProblem(kernel, online, memory, region))
    try:
        parsed = parse_vmem_ops(spec)
    except ValueError as e:
        raise UsageError(f"--ops {spec!r}: {e}") from None
    lines = [f"ARG {k} {v}" for k, v in args.items()]
    lines += ["", prob.describe().rstrip(), f"\nOperations (as -A): {spec or '(none)'}\n"]
    for i, op in enumerate(parsed):
        said, answer = prob.apply(i, op)
        lines.append(f"op {i}: {said}")
        if answer is not None:
            lines += [f"      {ln}" for ln in (answer.text(prob.sb_size) if compute else
                                               ["plugged size?  last rc?  plugged subblocks?"])]
    if not compute:
        lines.append("\n(run again with -c to compute the answers)")
    return "\n".join(lines) + "\n"
