"""The OOM killer: when reclaim cannot free memory, kill the process that holds most.

An allocation that may sleep, is not costly (order <= 3) and did not say it
may fail (__GFP_NORETRY, __GFP_RETRY_MAYFAIL) ends up here after reclaim
made no progress.  ``out_of_memory()`` scores every process with
``oom_badness()``: its resident pages (anonymous, file, shmem), swap entries
and page-table pages, plus ``oom_score_adj`` thousandths of all memory.  The
highest score is killed; its memory is freed as exit frees it, and the
allocation is retried.  The kernel log gets the lines of dump_header(),
dump_tasks(), dump_oom_summary() and __oom_kill_process(), in the profile's
format.

Processes are the guest activities that are one (``Activity.is_process``):
anonymous memory, pinned memory and pipes.  What a process frees when it
dies is exactly its activity's memory.  Files written to tmpfs, ramfs or the
page cache outlive their writer, and kernel memory has no process; the
OOM killer cannot free those (see docs/glossary.md).

Kernel: mm/page_alloc.c __alloc_pages_may_oom(); mm/oom_kill.c
out_of_memory(), select_bad_process(), oom_badness(), dump_header(),
dump_tasks(), dump_oom_summary(), __oom_kill_process(), oom_reap_task()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .constants import ZoneType
from .gfp import Gfp, format_gfp

if TYPE_CHECKING:
    from .node import Node
    from .page_alloc import AllocRequest

OOM_SCORE_ADJ_MIN, OOM_SCORE_ADJ_MAX = -1000, 1000
PAGE_ALLOC_COSTLY_ORDER = 3
OOM_RATELIMIT = (5.0, 10)       # oom_rs: DEFAULT_RATELIMIT_INTERVAL, _BURST
_NO_OOM = int(Gfp.NORETRY | Gfp.RETRY_MAYFAIL | Gfp.THISNODE)


@dataclass(frozen=True)
class TaskMem:
    """What dump_task() prints for one process: its mm counters, in pages."""

    pid: int
    comm: str
    total_vm: int
    rss_anon: int
    rss_file: int
    rss_shmem: int
    pgtables_bytes: int
    swapents: int
    oom_score_adj: int
    uid: int = 0

    @property
    def rss(self) -> int:
        """get_mm_rss(): anonymous + file + shmem resident pages."""
        return self.rss_anon + self.rss_file + self.rss_shmem


def check_oom_score_adj(value: Any) -> int:
    """oom_score_adj as /proc/PID/oom_score_adj accepts it: an int in [-1000, 1000]."""
    if (not isinstance(value, int) or isinstance(value, bool)
            or not OOM_SCORE_ADJ_MIN <= value <= OOM_SCORE_ADJ_MAX):
        raise ValueError(f"oom_score_adj={value!r} must be an int in "
                         f"[{OOM_SCORE_ADJ_MIN}, {OOM_SCORE_ADJ_MAX}]")
    return value


def oom_may_kill(req: AllocRequest) -> bool:
    """May this allocation invoke the OOM killer once reclaim has failed?

    It must be able to reclaim, must not be costly (order > 3), must not
    have asked to fail instead (__GFP_NORETRY, __GFP_RETRY_MAYFAIL,
    __GFP_THISNODE), and must be able to use ZONE_NORMAL: "the OOM killer
    does not needlessly kill tasks for lowmem".

    Kernel: mm/page_alloc.c, __alloc_pages_slowpath(), __alloc_pages_may_oom()
    """
    return (bool(req.gfp & Gfp.DIRECT_RECLAIM) and not req.gfp & _NO_OOM
            and req.order <= PAGE_ALLOC_COSTLY_ORDER and req.highest >= ZoneType.NORMAL)


def totalpages(node: Node) -> int:
    """totalram_pages() + total_swap_pages (the guest has no swap)."""
    return sum(z.managed_pages for z in node.zones)


def oom_badness(task: TaskMem, total: int) -> int | None:
    """The OOM score of a process; None (LONG_MIN) if it must not be killed.

    rss + swap entries + page-table pages, plus oom_score_adj in thousandths
    of all memory.  -1000 makes a process unkillable.

    Kernel: mm/oom_kill.c, oom_badness()
    """
    if task.oom_score_adj == OOM_SCORE_ADJ_MIN:
        return None
    points = task.rss + task.swapents + task.pgtables_bytes // 4096
    return points + task.oom_score_adj * (total // 1000)


def select_bad_process(node: Node) -> tuple[Any, TaskMem] | None:
    """The process with the highest badness; among equals the last in pid order.

    Kernel: mm/oom_kill.c, select_bad_process(), oom_evaluate_task()
    """
    total, chosen, best = totalpages(node), None, None
    for act, task in processes(node):
        points = oom_badness(task, total)
        if points is None or (best is not None and points < best):
            continue
        chosen, best = (act, task), points
    return chosen


def processes(node: Node) -> list[tuple[Any, TaskMem]]:
    """Every live process with its mm counters, in pid order (for_each_process)."""
    acts = sorted((a for a in node.activities if a.is_process and not a.killed),
                  key=lambda a: a.pid)
    return [(a, a.task_mem()) for a in acts]


class Ratelimit:
    """At most ``burst`` messages per ``interval`` seconds.  Kernel: __ratelimit()"""

    def __init__(self, interval: float, burst: int) -> None:
        self.interval, self.burst = interval, burst
        self.begin, self.printed = float("-inf"), 0

    def __call__(self, now: float) -> bool:
        if now - self.begin >= self.interval:
            self.begin, self.printed = now, 0
        self.printed += 1
        return self.printed <= self.burst


def out_of_memory(node: Node, req: AllocRequest) -> bool:
    """Kill the worst process for a failed allocation; True if memory may now be free.

    Without __GFP_FS the kernel kills nothing and lets the caller retry; a
    kernel with no process to kill panics ("System is deadlocked on
    memory"); vmemlab fails the allocation in both cases instead.

    Kernel: mm/oom_kill.c, out_of_memory()
    """
    if not req.gfp & Gfp.FS:
        return False
    chosen = select_bad_process(node)
    if chosen is None:
        dump_header(node, req)
        node.printk("Out of memory and no killable processes...")
        return False
    act, task = chosen
    if node.oom_rs(node.clock()):
        dump_header(node, req)
        node.printk("oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,"
                    f"mems_allowed=0,global_oom,task_memcg=/,task={task.comm},"
                    f"pid={task.pid},uid={task.uid}")
    oom_kill_process(node, act, task)
    return True


def dump_header(node: Node, req: AllocRequest) -> None:
    """The "invoked oom-killer" line and the task table (Mem-Info is left out).

    Kernel: mm/oom_kill.c, dump_header(), dump_tasks(), dump_task()
    """
    comm, adj = current_comm(node)
    node.printk(f"{comm} invoked oom-killer: gfp_mask={req.gfp:#x}({format_gfp(req.gfp)}), "
                f"order={req.order}, oom_score_adj={adj}")
    node.printk("Tasks state (memory values in pages):")
    columns = node.profile.oom_rss_columns
    node.printk("[  pid  ]   uid  tgid total_vm      rss "
                + ("rss_anon rss_file rss_shmem " if columns else "")
                + "pgtables_bytes swapents oom_score_adj name")
    for _, t in processes(node):
        split = f"{t.rss_anon:8d} {t.rss_file:8d} {t.rss_shmem:9d} " if columns else ""
        node.printk(f"[{t.pid:7d}] {t.uid:5d} {t.pid:5d} {t.total_vm:8d} {t.rss:8d} {split}"
                    f"{t.pgtables_bytes:8d} {t.swapents:8d}         {t.oom_score_adj:5d} "
                    f"{t.comm}")


def current_comm(node: Node) -> tuple[str, int]:
    """current->comm and its oom_score_adj: the allocating process, or a kworker."""
    cur = node.current
    return (cur.comm, cur.oom_score_adj) if cur is not None else (node.comm, 0)


def oom_kill_process(node: Node, act: Any, task: TaskMem) -> None:
    """Kill the chosen process: its memory is freed as exit and the OOM reaper free it.

    Kernel: mm/oom_kill.c, __oom_kill_process() (count_vm_event(OOM_KILL)),
    oom_reap_task()
    """
    node.count_event("oom_kill")
    node.printk(f"Out of memory: Killed process {task.pid} ({task.comm}) "
                f"total-vm:{task.total_vm * 4}kB, anon-rss:{task.rss_anon * 4}kB, "
                f"file-rss:{task.rss_file * 4}kB, shmem-rss:{task.rss_shmem * 4}kB, "
                f"UID:{task.uid} pgtables:{task.pgtables_bytes >> 10}kB "
                f"oom_score_adj:{task.oom_score_adj}")
    act.exit()
    node.printk(f"oom_reaper: reaped process {task.pid} ({task.comm}), now anon-rss:0kB, "
                "file-rss:0kB, shmem-rss:0kB")
