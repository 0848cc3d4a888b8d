"""GFP flags: how a caller tells the page allocator what kind of memory it wants.

A gfp mask says three things the model cares about: the highest zone the
allocation may use (``gfp_zone``), its mobility class (``gfp_migratetype``),
and how hard the allocator may try (reclaim, reserves).  vmemlab accepts the
kernel's names, combined with ``|`` as in C::

    parse_gfp("GFP_KERNEL | __GFP_RECLAIMABLE")

Bit values are those of Linux 6.12 without KASAN, LOCKDEP or slab object
extensions (their flags are zero there).

Kernel: include/linux/gfp_types.h, include/linux/gfp.h
"""

from __future__ import annotations

from enum import IntFlag
from functools import lru_cache

from .constants import MigrateType, ZoneType


class Gfp(IntFlag):
    """Individual ``__GFP_*`` bits.  Kernel: include/linux/gfp_types.h"""

    DMA = 0x01
    HIGHMEM = 0x02
    DMA32 = 0x04
    MOVABLE = 0x08
    RECLAIMABLE = 0x10
    HIGH = 0x20
    IO = 0x40
    FS = 0x80
    ZERO = 0x100
    DIRECT_RECLAIM = 0x400
    KSWAPD_RECLAIM = 0x800
    WRITE = 0x1000
    NOWARN = 0x2000
    RETRY_MAYFAIL = 0x4000
    NOFAIL = 0x8000
    NORETRY = 0x10000
    MEMALLOC = 0x20000
    COMP = 0x40000
    NOMEMALLOC = 0x80000
    HARDWALL = 0x100000
    THISNODE = 0x200000
    ACCOUNT = 0x400000

    def __str__(self) -> str:
        return format_gfp(self)


__GFP_RECLAIM = Gfp.DIRECT_RECLAIM | Gfp.KSWAPD_RECLAIM
GFP_ATOMIC = Gfp.HIGH | Gfp.KSWAPD_RECLAIM
GFP_KERNEL = __GFP_RECLAIM | Gfp.IO | Gfp.FS
GFP_KERNEL_ACCOUNT = GFP_KERNEL | Gfp.ACCOUNT
GFP_NOWAIT = Gfp.KSWAPD_RECLAIM
GFP_NOIO = __GFP_RECLAIM
GFP_NOFS = __GFP_RECLAIM | Gfp.IO
GFP_USER = __GFP_RECLAIM | Gfp.IO | Gfp.FS | Gfp.HARDWALL
GFP_DMA = Gfp.DMA
GFP_DMA32 = Gfp.DMA32
GFP_HIGHUSER = GFP_USER | Gfp.HIGHMEM
GFP_HIGHUSER_MOVABLE = GFP_HIGHUSER | Gfp.MOVABLE
GFP_TRANSHUGE_LIGHT = (GFP_HIGHUSER_MOVABLE | Gfp.COMP | Gfp.NOMEMALLOC
                       | Gfp.NOWARN) & ~__GFP_RECLAIM
GFP_TRANSHUGE = GFP_TRANSHUGE_LIGHT | Gfp.DIRECT_RECLAIM

# Composite names, in the order the kernel's show_gfp_flags() tries them.
_COMPOSITES: tuple[tuple[str, Gfp], ...] = (
    ("GFP_TRANSHUGE", GFP_TRANSHUGE),
    ("GFP_TRANSHUGE_LIGHT", GFP_TRANSHUGE_LIGHT),
    ("GFP_HIGHUSER_MOVABLE", GFP_HIGHUSER_MOVABLE),
    ("GFP_HIGHUSER", GFP_HIGHUSER),
    ("GFP_USER", GFP_USER),
    ("GFP_KERNEL_ACCOUNT", GFP_KERNEL_ACCOUNT),
    ("GFP_KERNEL", GFP_KERNEL),
    ("GFP_NOFS", GFP_NOFS),
    ("GFP_ATOMIC", GFP_ATOMIC),
    ("GFP_NOIO", GFP_NOIO),
    ("GFP_NOWAIT", GFP_NOWAIT),
    ("GFP_DMA", GFP_DMA),
    ("GFP_DMA32", GFP_DMA32),
)
_NAMES: dict[str, Gfp] = {name: mask for name, mask in _COMPOSITES}
_NAMES.update({f"__GFP_{flag.name}": flag for flag in Gfp})
_NAMES["__GFP_RECLAIM"] = __GFP_RECLAIM
_NAMES["0"] = Gfp(0)
_ALL_BITS = int(sum(Gfp))


@lru_cache(maxsize=256)
def _parse_gfp_str(spec: str) -> Gfp:
    mask = Gfp(0)
    for part in spec.split("|"):
        name = part.strip()
        if name not in _NAMES:
            raise ValueError(f"gfp={spec!r}: unknown flag {name!r}; known: "
                             "GFP_KERNEL, GFP_HIGHUSER_MOVABLE, GFP_DMA32, "
                             "__GFP_MOVABLE, __GFP_RECLAIMABLE, ...")
        mask |= _NAMES[name]
    return mask


def parse_gfp(spec: str | int | Gfp) -> Gfp:
    """Turn "GFP_KERNEL | __GFP_RECLAIMABLE" (or an int mask) into a Gfp mask.

    >>> parse_gfp("GFP_KERNEL | __GFP_RECLAIMABLE") == GFP_KERNEL | Gfp.RECLAIMABLE
    True
    """
    if isinstance(spec, Gfp):
        return spec
    if isinstance(spec, int) and not isinstance(spec, bool):
        if spec < 0 or spec & ~_ALL_BITS:
            raise ValueError(f"gfp={spec!r} is not a gfp mask: gfp_t is unsigned and only "
                             f"bits {_ALL_BITS:#x} are __GFP flags")
        return Gfp(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"gfp={spec!r} is not a gfp mask such as 'GFP_KERNEL'")
    return _parse_gfp_str(spec)


def format_gfp(mask: int) -> str:
    """Spell a mask as the kernel's %pGg does: "GFP_KERNEL|__GFP_RECLAIMABLE".

    Kernel: include/trace/events/mmflags.h, show_gfp_flags()
    """
    rest = Gfp(mask)
    parts = []
    for name, composite in _COMPOSITES:
        if composite and rest & composite == composite:
            parts.append(name)
            rest &= ~composite
    parts += [f"__GFP_{flag.name}" for flag in Gfp if flag in rest]
    return "|".join(parts) or "0"


@lru_cache(maxsize=256)
def gfp_zone(mask: int) -> ZoneType:
    """Return the highest zone an allocation with this mask may use.

    Only __GFP_MOVABLE together with __GFP_HIGHMEM reaches ZONE_MOVABLE; on
    64-bit, __GFP_HIGHMEM alone means ZONE_NORMAL.  Two zone modifiers at once
    is a caller bug in the kernel (BUG in GFP_ZONE_BAD) and a ValueError here.

    Kernel: include/linux/gfp.h, gfp_zone() and GFP_ZONE_TABLE
    """
    zone_bits = Gfp(mask) & (Gfp.DMA | Gfp.HIGHMEM | Gfp.DMA32 | Gfp.MOVABLE)
    if Gfp.DMA in zone_bits and zone_bits & (Gfp.DMA32 | Gfp.HIGHMEM):
        raise ValueError(f"gfp={format_gfp(mask)}: conflicting zone modifiers")
    if Gfp.DMA32 in zone_bits and Gfp.HIGHMEM in zone_bits:
        raise ValueError(f"gfp={format_gfp(mask)}: conflicting zone modifiers")
    if Gfp.DMA in zone_bits:
        return ZoneType.DMA
    if Gfp.DMA32 in zone_bits:
        return ZoneType.DMA32
    if zone_bits & (Gfp.MOVABLE | Gfp.HIGHMEM) == Gfp.MOVABLE | Gfp.HIGHMEM:
        return ZoneType.MOVABLE
    return ZoneType.NORMAL


@lru_cache(maxsize=256)
def gfp_migratetype(mask: int) -> MigrateType:
    """Return the mobility class the mask asks for.

    Kernel: include/linux/gfp.h, gfp_migratetype()
    """
    mob = Gfp(mask) & (Gfp.MOVABLE | Gfp.RECLAIMABLE)
    if mob == Gfp.MOVABLE | Gfp.RECLAIMABLE:
        raise ValueError(f"gfp={format_gfp(mask)}: __GFP_MOVABLE and "
                         "__GFP_RECLAIMABLE are mutually exclusive")
    if mob == Gfp.MOVABLE:
        return MigrateType.MOVABLE
    if mob == Gfp.RECLAIMABLE:
        return MigrateType.RECLAIMABLE
    return MigrateType.UNMOVABLE


def gfpflags_allow_blocking(mask: int) -> bool:
    """True if the caller may sleep in direct reclaim.  Kernel: include/linux/gfp.h"""
    return bool(Gfp(mask) & Gfp.DIRECT_RECLAIM)
