"""``echo N > /proc/sys/vm/drop_caches``: drop clean caches the kernel can rebuild.

1 frees the page cache that nothing needs: clean, unmapped, unpinned file
pages (each filesystem's mappings are invalidated).  Dirty pages, tmpfs and
ramfs pages (swap-backed or dirty forever) and pinned pages stay.  2 shrinks
the slab caches: unused dentries and inodes go, which empties slab pages of
files that are only cached (ext4 files), except each cache's CPU slab,
which SLUB keeps even when empty (vmemlab.slab); tmpfs files keep theirs,
since a tmpfs file *is* its dentry and inode.  3 does both; 4 (added to any of them)
silences the log line.  Each drop counts drop_pagecache or drop_slab in
/proc/vmstat.  Pages of the ``slab_reclaimable`` activity stand for objects
in use and stay (docs/glossary.md, "drop_caches in brief").

Kernel: fs/drop_caches.c drop_caches_sysctl_handler(), drop_pagecache_sb();
mm/truncate.c invalidate_mapping_pages(); mm/vmscan.c drop_slab()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .bulk import free_pages_bulk
from .constants import EINVAL, ZoneType
from .kstrtox import parse_integer
from .reclaim import reclaim_candidates

if TYPE_CHECKING:
    from .machine import Machine

SYSCTL_PATH = "/proc/sys/vm/drop_caches"


def drop_caches(m: Machine, value: int) -> None:
    """Drop what ``value`` (1 to 4) asks for and log it as the kernel does."""
    node = m.node
    if value & 1:
        victims = reclaim_candidates(node, ZoneType.MOVABLE)
        free_pages_bulk(node, victims)
        node.count_event("drop_pagecache")
    if value & 2:
        for act in m.activities:
            drop = getattr(act, "drop_unused", None)
            if drop is not None:
                drop()
        node.count_event("drop_slab")
    if not m.drop_caches_quiet:
        node.printk(f"bash ({m.shell_pid}): drop_caches: {value}")
    m.drop_caches_quiet |= bool(value & 4)


def write_drop_caches(m: Machine, text: str) -> int:
    """A write(2) to the sysctl: 0, or -EINVAL unless the text is an int from 1 to 4."""
    value = proc_dointvec_value(text)
    if value is None or not 1 <= value <= 4:
        return EINVAL
    drop_caches(m, value)
    return 0


_TMPBUFLEN = 22


def proc_dointvec_value(text: str) -> int | None:
    """The one int a write to a proc_dointvec sysctl stores, or None for -EINVAL.

    Leading white space is skipped; then an optional ``-`` and a number in
    C's base 0 (vmemlab.kstrtox), at most 21 characters with the sign,
    followed by the end of the write or a space, tab or newline.
    Kernel: kernel/sysctl.c __do_proc_dointvec(), proc_skip_spaces(),
    proc_get_long() (strtoul_lenient(..., 0, ...))
    """
    rest = text[:4095].lstrip(" \t\n\v\f\r")
    sign = 1 if rest[:1] == "-" else 0
    value, taken = parse_integer(rest[sign:])
    end = sign + taken
    if not taken or end >= _TMPBUFLEN - 1 or rest[end:end + 1] not in ("", " ", "\t", "\n") \
            or value >= 1 << 64:
        return None
    return -value if sign else value
