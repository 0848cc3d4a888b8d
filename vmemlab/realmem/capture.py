"""Read a machine's memory files, read-only, into a dict of texts.

The only module in vmemlab that opens files under /proc and /sys, and it
only ever opens them for reading.  ``root`` points at "/" for the live
machine or at a directory tree with the same layout (a test fixture, or a
copy taken elsewhere).  Files are keyed by their path on the machine
("/proc/buddyinfo"), whatever the root.  A file that cannot be read is
recorded with the reason, never raised.

Kernel: fs/proc/page.c (kpageflags_read), mm/vmstat.c, fs/proc/meminfo.c,
drivers/base/memory.c
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .sysfs import BLOCK_ATTRS, MEMORY_DIR

PROC_FILES = ("/proc/buddyinfo", "/proc/pagetypeinfo", "/proc/zoneinfo", "/proc/meminfo",
              "/proc/sys/kernel/osrelease")
KPAGEFLAGS = "/proc/kpageflags"
ROOT_ONLY = frozenset({"/proc/pagetypeinfo", KPAGEFLAGS})
KPF_BYTES = 8
CHUNK_PFNS = 1 << 20  # 8 MiB per read


@dataclass
class Capture:
    """What was read: texts by path, the kpageflags words, and what was not read and why."""

    files: dict[str, str] = field(default_factory=dict)
    kpageflags: np.ndarray | None = None
    missing: dict[str, str] = field(default_factory=dict)


def capture(root: str | Path = "/", max_pfns: int | None = None,
            kpageflags: bool = True, page_size: int = 4096) -> Capture:
    """Read the /proc files, the memory-block sysfs tree and (optionally) kpageflags.

    ``max_pfns`` stops /proc/kpageflags after that many pfns (from pfn 0),
    so a large machine stays quick to read.  The read also stops where
    memory ends (the zones of /proc/zoneinfo, else the memory blocks), as
    the kernel's kpageflags_read() stops at max_pfn; if neither that nor
    ``max_pfns`` bounds it, or the words would not fit in this computer's
    free memory, kpageflags is not read and ``missing`` says to pass a limit.
    """
    root = Path(root)
    cap = Capture()
    for path in PROC_FILES:
        _read_text(root, path, cap)
    _read_memory_blocks(root, cap)
    if not kpageflags:
        cap.missing[KPAGEFLAGS] = "not read (skipped on request)"
        return cap
    end = known_end_pfn(cap, page_size)
    max_pfns = end if max_pfns is None else max_pfns if end is None else min(max_pfns, end)
    why = _too_many(max_pfns)
    if why:
        cap.missing[KPAGEFLAGS] = f"not read: {why}; give a (smaller) limit (--limit SIZE)"
        return cap
    try:
        cap.kpageflags = read_kpageflags(_under(root, KPAGEFLAGS), max_pfns)
    except OSError as e:
        cap.missing[KPAGEFLAGS] = reason(KPAGEFLAGS, e)
    return cap


def known_end_pfn(cap: Capture, page_size: int) -> int | None:
    """Where physical memory ends, in pfns: from the zone spans, else the memory blocks."""
    from .proctext import parse_zoneinfo
    from .sysfs import parse_memory_sysfs

    try:
        zones = parse_zoneinfo(cap.files["/proc/zoneinfo"]).zones
    except (KeyError, ValueError):
        zones = []                          # no zoneinfo: the memory blocks say
    ends = [z.start_pfn + z.spanned for z in zones if z.populated and z.spanned]
    if ends:
        return max(ends)
    try:
        blocks = parse_memory_sysfs(cap.files, page_size).blocks
        return max(b.end_pfn for b in blocks) if blocks else None
    except (KeyError, ValueError):
        return None


def available_ram() -> int | None:
    """Bytes of memory this computer can give a program now, or None if it does not say.

    Linux's MemAvailable (free memory plus what reclaim would free), else the
    free pages the OS reports.  Kernel: fs/proc/meminfo.c, si_mem_available()
    """
    try:
        meminfo = Path("/proc/meminfo").read_text()
    except OSError:
        meminfo = ""                        # not Linux: ask the C library
    for line in meminfo.splitlines():
        fields = line.split()
        if fields[:1] == ["MemAvailable:"] and len(fields) > 1 and fields[1].isdigit():
            return int(fields[1]) << 10
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _too_many(nr_pfns: int | None) -> str:
    """Why reading ``nr_pfns`` kpageflags words is not possible here ("" if it is)."""
    from ..checks import WORKING_SET

    if nr_pfns is None:
        return "the end of physical memory is unknown (no /proc/zoneinfo, no memory blocks)"
    free = available_ram()
    if free is not None and nr_pfns * KPF_BYTES * WORKING_SET > free:
        return (f"{nr_pfns} pfns need {nr_pfns * KPF_BYTES >> 20} MiB of words and more to "
                f"work with; {free >> 20} MiB of memory is available")
    return ""


def read_kpageflags(path: str | Path, max_pfns: int | None = None,
                    chunk_pfns: int = CHUNK_PFNS) -> np.ndarray:
    """One uint64 per pfn from pfn 0, read straight into numpy buffers in large chunks.

    Kernel: fs/proc/page.c, kpageflags_read()
    """
    if max_pfns is not None and max_pfns < 0:
        raise ValueError(f"max_pfns={max_pfns} must not be negative")
    parts, total = [], 0
    with open(path, "rb", buffering=0) as f:
        while max_pfns is None or total < max_pfns:
            want = chunk_pfns if max_pfns is None else min(chunk_pfns, max_pfns - total)
            buf = np.empty(want, dtype="<u8")
            got = f.readinto(memoryview(buf).cast("B"))
            if not got:
                break
            if got % KPF_BYTES:
                raise OSError(errno.EINVAL, f"{got} bytes is not a whole number of "
                                            f"{KPF_BYTES}-byte words", str(path))
            parts.append(buf[:got // KPF_BYTES])
            total += got // KPF_BYTES
    words = np.concatenate(parts) if parts else np.zeros(0, "<u8")
    return words.astype(np.uint64, copy=False)


def reason(path: str, e: OSError) -> str:
    """Why ``path`` could not be read, in words a student can act on."""
    if isinstance(e, PermissionError):
        return "permission denied" + (" (readable by root only)" if path in ROOT_ONLY else "")
    if isinstance(e, FileNotFoundError):
        return "absent on this kernel or root (no such file)"
    return e.strerror or str(e)


def _under(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def _read_text(root: Path, path: str, cap: Capture) -> None:
    try:
        cap.files[path] = _under(root, path).read_text(errors="replace")
    except OSError as e:
        cap.missing[path] = reason(path, e)


def _read_memory_blocks(root: Path, cap: Capture) -> None:
    """block_size_bytes, auto_online_blocks, and each memoryN's attributes and node link.

    A node link is recorded as an empty text under ``memoryN/nodeM``.
    """
    base = _under(root, MEMORY_DIR)
    try:
        names = os.listdir(base)
    except OSError as e:
        cap.missing[MEMORY_DIR] = reason(MEMORY_DIR, e)
        return
    for name in ("block_size_bytes", "auto_online_blocks"):
        _read_text(root, f"{MEMORY_DIR}/{name}", cap)
    for name in sorted(n for n in names if re.fullmatch(r"memory\d+", n)):
        block = f"{MEMORY_DIR}/{name}"
        for attr in BLOCK_ATTRS:
            _read_text(root, f"{block}/{attr}", cap)
        try:
            links = [n for n in os.listdir(base / name) if re.fullmatch(r"node\d+", n)]
        except OSError as e:
            cap.missing[block] = reason(block, e)
            continue
        cap.files.update({f"{block}/{link}": "" for link in links})
