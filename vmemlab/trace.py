"""Trace events and frames: what happened, in tracepoint vocabulary.

Model code calls ``trace.emit(Event(...))`` where the kernel or QEMU has a
tracepoint; the default ``NullTrace`` drops everything, so the model never
asks "am I recording?".  A ``Trace`` collects events into frames: a step of
the machine (``Machine.step(label)``) closes a frame holding that step's
events and a ``Snapshot`` of the state, and widgets replay frames without
touching the model.

Events print one line each, in the style of ``/sys/kernel/tracing/trace``:
``mm_page_alloc: pfn=0x1000 order=0 migratetype=Movable gfp_flags=GFP_KERNEL``.

Kernel: include/trace/events/kmem.h, vmscan.h, migrate.h, page_isolation.h;
QEMU hw/virtio/trace-events
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from .constants import MigrateType, errname, format_size
from .gfp import format_gfp

_HEX_FIELDS = frozenset({"pfn", "start_pfn", "end_pfn", "src_pfn", "dst_pfn", "fin_pfn",
                         "addr", "outer_start", "outer_end",
                         "old_size", "new_size"})  # QEMU prints these two in hex
_MT_FIELDS = frozenset({"migratetype", "alloc_migratetype", "fallback_migratetype"})


@dataclass(frozen=True)
class Event:
    """Base class: subclasses set ``name`` to the tracepoint they mirror."""

    name: ClassVar[str] = "event"

    def __str__(self) -> str:
        args = " ".join(f"{f.name}={_fmt(f.name, getattr(self, f.name))}" for f in fields(self))
        return f"{self.name}: {args}" if args else f"{self.name}:"

    def asdict(self) -> dict[str, Any]:
        """The event as plain data, with its tracepoint name."""
        d: dict[str, Any] = {"event": self.name}
        for f in fields(self):
            v = getattr(self, f.name)
            d[f.name] = int(v) if isinstance(v, (bool, int)) and not isinstance(v, bool) else v
        return d


def _fmt(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if name in _HEX_FIELDS and isinstance(value, int):
        return f"{value:#x}"
    if name in ("ret", "rc"):
        return errname(value)
    if name in _MT_FIELDS and isinstance(value, int):
        return str(MigrateType(value))
    if name == "gfp_flags":
        return format_gfp(value)
    if name.endswith("_size") and isinstance(value, int):
        return format_size(value)
    return str(value)


# -- page allocator (include/trace/events/kmem.h) ---------------------------
@dataclass(frozen=True)
class MmPageAlloc(Event):
    """A block left the free lists for a caller."""

    name: ClassVar[str] = "mm_page_alloc"
    pfn: int
    order: int
    migratetype: int
    gfp_flags: int


@dataclass(frozen=True)
class MmPageFree(Event):
    """A block was freed back to the buddy allocator."""

    name: ClassVar[str] = "mm_page_free"
    pfn: int
    order: int


@dataclass(frozen=True)
class MmPageAllocExtfrag(Event):
    """An allocation fell back to another migratetype's free list.

    ``fragmenting`` when the fallback block is smaller than a pageblock;
    ``change_ownership`` when the pageblock now belongs to the requester.
    """

    name: ClassVar[str] = "mm_page_alloc_extfrag"
    pfn: int
    alloc_order: int
    fallback_order: int
    alloc_migratetype: int
    fallback_migratetype: int
    change_ownership: bool
    fragmenting: bool


@dataclass(frozen=True)
class WarnAlloc(Event):
    """The kernel's "page allocation failure" warning (warn_alloc())."""

    name: ClassVar[str] = "page_allocation_failure"
    order: int
    gfp_flags: int


# -- reclaim (include/trace/events/vmscan.h) -------------------------------
@dataclass(frozen=True)
class MmVmscanKswapdWake(Event):
    name: ClassVar[str] = "mm_vmscan_kswapd_wake"
    nid: int
    zid: int
    order: int


@dataclass(frozen=True)
class MmVmscanLruShrinkInactive(Event):
    """Clean page cache was dropped (by kswapd or direct reclaim)."""

    name: ClassVar[str] = "mm_vmscan_lru_shrink_inactive"
    nid: int
    nr_scanned: int
    nr_reclaimed: int


# -- isolation and migration (include/trace/events/page_isolation.h, migrate.h)
@dataclass(frozen=True)
class MigrateFolioMove(Event):
    """One folio moved: its contents and identity now live at ``dst_pfn``.

    Named after the kernel function that does it (migrate_folio_move());
    the kernel's per-page trace points are the migration PTE ones.
    """

    name: ClassVar[str] = "migrate_folio_move"
    src_pfn: int
    dst_pfn: int
    order: int


@dataclass(frozen=True)
class MmMigratePages(Event):
    """Summary of one migrate_pages() call."""

    name: ClassVar[str] = "mm_migrate_pages"
    succeeded: int
    failed: int
    mode: str
    reason: str


@dataclass(frozen=True)
class TestPagesIsolated(Event):
    """test_pages_isolated(): ``fin_pfn`` is the first busy pfn, or ``end_pfn``."""

    __test__ = False  # not a pytest test class
    name: ClassVar[str] = "test_pages_isolated"
    start_pfn: int
    end_pfn: int
    fin_pfn: int
    ret: int


class NullTrace:
    """A trace that records nothing; the default for every machine."""

    enabled = False

    def emit(self, event: Event) -> None:
        """Drop the event: nothing is recording."""

    def close_frame(self, label: str) -> None:
        """No frames without a recording trace."""


@dataclass(frozen=True)
class Frame:
    """One recorded step: its label, its events and the state after it."""

    index: int
    label: str
    events: tuple[Event, ...]
    state: Any
    time: float = 0.0

    def __str__(self) -> str:
        return f"frame {self.index}: {self.label} ({len(self.events)} events)"


@dataclass
class Trace:
    """Events grouped into frames.

    ``snapshot`` is called when a frame closes and returns the state to keep
    (the machine passes its own ``snapshot`` method).  ``record_every`` keeps
    a state only every k-th frame, to bound memory on big machines.
    """

    snapshot: Callable[[], Any] | None = None
    clock: Callable[[], float] | None = None
    record_every: int = 1
    max_events: int = 1_000_000
    frames: list[Frame] = field(default_factory=list)
    pending: list[Event] = field(default_factory=list)
    dropped: int = 0
    enabled: ClassVar[bool] = True

    def emit(self, event: Event) -> None:
        """Record an event into the open frame."""
        if len(self.pending) < self.max_events:
            self.pending.append(event)
        else:
            self.dropped += 1

    def close_frame(self, label: str) -> Frame:
        """End the open frame, taking a state snapshot, and start a new one."""
        index = len(self.frames)
        keep = self.snapshot is not None and index % self.record_every == 0
        state = self.snapshot() if keep else None
        now = self.clock() if self.clock else 0.0
        frame = Frame(index, label, tuple(self.pending), state, now)
        self.frames.append(frame)
        self.pending = []
        return frame

    def events(self, name: str | None = None) -> list[Event]:
        """Every recorded event (closed frames, then the open one), optionally by name."""
        out = [e for f in self.frames for e in f.events] + self.pending
        return [e for e in out if name is None or e.name == name]

    def __iter__(self) -> Iterator[Frame]:
        return iter(self.frames)

    def __len__(self) -> int:
        return len(self.frames)

    def clear(self) -> None:
        self.frames.clear()
        self.pending.clear()
        self.dropped = 0
