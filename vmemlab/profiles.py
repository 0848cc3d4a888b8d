"""Kernel profiles: each one is an upstream Linux release, its behaviour as data.

A machine is built for one kernel.  Every behaviour that differs between the
releases vmemlab models is a field of ``KernelProfile``, so model code asks
``profile.contig_align`` instead of comparing version strings.  Each field
carries, as dataclass metadata, the subsystem, the upstream release that
introduced the newer behaviour and the change itself (``history(name)``);
``profile_table()`` prints them side by side.

The profiles are true to one upstream release each (not to a distribution's
stable branch with backports):

* "5.8": the release that merged virtio-mem and exported alloc_contig_range()
  (read from 5.10.y with the 2020 patches where 5.8 and 5.10 agree);
* "6.1": the 2022 LTS release;
* "6.12": the 2024 LTS release, the default.  Debian's 6.12.y carries
  backports of the 6.14/6.15 changes below; upstream v6.12 does not;
* "6.15": the release that split the fallback into __rmqueue_claim() and
  __rmqueue_steal() (c2f6ea38fc1b and its follow-ups), after 6.14 added
  __alloc_contig_verify_gfp_mask().
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .constants import GiB


def _since(subsystem: str, release: str, change: str) -> Any:
    """A profile field, documented by where it lives and when it changed upstream."""
    return field(metadata={"subsystem": subsystem, "release": release, "change": change})


_ALLOC, _CONTIG = "page allocator", "alloc_contig_range"
_VMEM, _HOTPLUG, _OOM = "virtio-mem driver", "memory hotplug", "OOM killer"


@dataclass(frozen=True)
class KernelProfile:
    """One upstream release's behaviour, as data.  ``history(field)`` cites the change."""

    name: str
    # --- page allocator (mm/page_alloc.c) ---
    # A free page always sits on its pageblock's list; a merge retypes the
    # buddy's pageblock; a claim moves only the old type's free pages.
    freelist_hygiene: bool = _since(
        _ALLOC, "6.10", '"mm: page_alloc: freelist migratetype hygiene" series (J. Weiner), '
        'c0cd6f557b90 "fix freelist movement during block conversion"')
    # "largest_first": __rmqueue_fallback() takes the largest fallback buddy and
    # steal_suitable_fallback() claims its pageblock or takes from it anyway.
    # "claim_steal": __rmqueue_claim() (largest buddy, whole pageblock only),
    # then __rmqueue_steal() (smallest buddy, block left alone).
    fallback: str = _since(
        _ALLOC, "6.15", 'c2f6ea38fc1b "mm: page_alloc: don\'t steal single pages from '
        'biggest buddy" (J. Weiner); "clarify terminology in migratetype fallback code" '
        "(B. Jackman) named try_to_claim_block()")
    # "unmergeable": no merge at >= pageblock_order across pageblocks of
    # different types unless both are Unmovable/Movable/Reclaimable.
    # "isolate_only": only ISOLATE vs non-ISOLATE, only while the zone isolates.
    merge_barrier: str = _since(
        _ALLOC, "5.18", '1dd214b8f21c "mm: page_alloc: avoid merging non-fallbackable '
        'pageblocks with others" (Zi Yan)')
    # ZONE_MOVABLE's min watermark: "capped" like highmem (clamp(managed/1024,
    # 32, 128)) and left out of min_free_kbytes' split; "proportional": a share
    # of min_free_kbytes by managed pages, like a kernel zone.
    movable_wmark: str = _since(
        _ALLOC, "6.5", '"mm/page_alloc: fix min_free_kbytes calculation regarding '
        'ZONE_MOVABLE" (liuq, June 2023)')
    # --- alloc_contig_range (mm/page_alloc.c, mm/page_isolation.c) ---
    # "pageblock": isolate the pageblocks of [start, end) and split free
    # buddies that straddle its ends; "max_order": isolate the MAX_ORDER-
    # aligned cover (4 MiB on x86-64), has_unmovable_pages() on whole blocks.
    contig_align: str = _since(
        _CONTIG, "5.19", '"mm: make alloc_contig_range work at pageblock granularity" '
        "(Zi Yan)")
    # drain_all_pages() after every isolated pageblock (set_migratetype_isolate)
    # instead of once per call.
    drain_per_pageblock: bool = _since(
        _CONTIG, "5.11", '7612921f2376 "mm, page_alloc: move draining pcplists to page '
        'isolation users" (V. Babka) made it once per call')
    # __alloc_contig_verify_gfp_mask(): -EINVAL on unsupported gfp flags, and
    # migration targets take the caller's reclaim flags.  Before: any gfp,
    # targets GFP_USER | __GFP_MOVABLE | __GFP_RETRY_MAYFAIL.
    contig_gfp_check: bool = _since(
        _CONTIG, "6.14", '"mm/page_alloc: gfp flags cleanups for alloc_contig_*()" '
        "(D. Hildenbrand, Dec 2024)")
    # pfn_range_valid_contig() skips ranges with any page in use.
    contig_pages_skip_used: bool = _since(
        _CONTIG, "5.14", 'eb14d4eefdc4 "mm,page_alloc: drop unnecessary checks from '
        'pfn_range_valid_contig" (O. Salvador) lets alloc_contig_pages() migrate them')
    # --- virtio-mem guest driver (drivers/virtio/virtio_mem.c) ---
    # "pageblock": subblock = max(pageblock, device block); "max_order":
    # max(MAX_ORDER-1 chunk, pageblock) = 4 MiB on x86-64.
    sbm_subblock: str = _since(
        _VMEM, "5.19", '"drivers: virtio_mem: use pageblock size as the minimum virtio_mem '
        'size" (Zi Yan)')
    sbm_states: tuple[str, ...] = _since(
        _VMEM, "5.14", '"virtio-mem: prioritize unplug from ZONE_MOVABLE in Sub Block Mode" '
        "(KERNEL/MOVABLE states)")
    sbm_plug_order: tuple[str, ...] = _since(_VMEM, "5.14", "same series")
    sbm_unplug_order: tuple[str, ...] = _since(_VMEM, "5.14", "same series")
    # Partly plugged memory blocks may be onlined to ZONE_MOVABLE.
    movable_partial_allowed: bool = _since(
        _VMEM, "5.10", '"virtio-mem: don\'t special-case ZONE_MOVABLE"')
    # Fake-offline attempts per subblock in ZONE_MOVABLE.
    fake_offline_tries_movable: int = _since(
        _VMEM, "5.11", '"virtio-mem: retry fake-offlining via alloc_contig_range() on '
        'ZONE_MOVABLE"')
    big_block_mode: bool = _since(_VMEM, "5.11", '"virtio-mem: Big Block Mode (BBM) memory '
                                  'hotplug"')
    # Offline memory allowed before adding more: bytes (max(1 GiB, 2 blocks))
    # since 5.11, 10 memory blocks in 5.8.
    offline_threshold_bytes: int | None = _since(
        _VMEM, "5.11", '"virtio-mem: generalize handling when memory is getting onlined '
        'deferred": max(1 GiB, 2 memory blocks)')
    offline_threshold_blocks: int | None = _since(_VMEM, "5.11",
                                                  "5.8 counted 10 offline memory blocks")
    # Retry offline+remove of fully unplugged blocks; check config_changed
    # inside fake-offline.
    retry_unplugged_removal: bool = _since(
        _VMEM, "6.5", '"virtio-mem: keep retrying on offline_and_remove_memory() errors in '
        'Sub Block Mode (SBM)"')
    # --- memory hotplug (mm/memory_hotplug.c) ---
    online_policies: tuple[str, ...] = _since(
        _HOTPLUG, "5.15", 'e83a437faa62 "mm/memory_hotplug: introduce "auto-movable" online '
        'policy" and memory groups')
    # --- OOM killer (mm/oom_kill.c) ---
    # dump_tasks() prints rss_anon, rss_file and rss_shmem columns.
    oom_rss_columns: bool = _since(
        _OOM, "6.8", '"mm/oom_kill: show rss_anon, rss_file and rss_shmem in dump_tasks" '
        "(Yong Wang)")

    def __str__(self) -> str:
        return f"Linux {self.name}"

    @property
    def release(self) -> tuple[int, int]:
        """The upstream release as (major, minor): tables keyed by version ask this
        (vmemlab.prockeys: which /proc lines the release prints)."""
        major, minor = self.name.split(".")[:2]
        return int(major), int(minor)
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Pickle a profile by its release name: it unpickles as today's profile."""
        return profile, (self.name,)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Load a profile pickled before ``__reduce__``: fields it lacks come from today's."""
        current = dataclasses.asdict(PROFILES.get(state.get("name", ""), LINUX_6_12))
        for key, value in {**current, **state}.items():
            object.__setattr__(self, key, value)


def history(name: str) -> tuple[str, str, str]:
    """(subsystem, release, change) of a profile field: where and when it changed."""
    for f in dataclasses.fields(KernelProfile):
        if f.name == name and f.metadata:
            return f.metadata["subsystem"], f.metadata["release"], f.metadata["change"]
    raise ValueError(f"name={name!r} is not a field of KernelProfile")


def behaviour_fields() -> list[str]:
    """The names of every field that differs by release (all but ``name``)."""
    return [f.name for f in dataclasses.fields(KernelProfile) if f.metadata]


_SBM_STATES_5_8 = ("UNUSED", "PLUGGED", "OFFLINE", "OFFLINE_PARTIAL",
                   "ONLINE", "ONLINE_PARTIAL", "ONLINE_MOVABLE")
_SBM_STATES = ("UNUSED", "PLUGGED", "OFFLINE", "OFFLINE_PARTIAL",
               "KERNEL", "KERNEL_PARTIAL", "MOVABLE", "MOVABLE_PARTIAL")
_SBM_PLUG = ("KERNEL_PARTIAL", "MOVABLE_PARTIAL", "OFFLINE_PARTIAL")
_SBM_UNPLUG = ("OFFLINE_PARTIAL", "OFFLINE", "MOVABLE_PARTIAL", "KERNEL_PARTIAL",
               "MOVABLE", "KERNEL")
_BOTH_POLICIES = ("contig-zones", "auto-movable")

LINUX_5_8 = KernelProfile(
    name="5.8", freelist_hygiene=False, fallback="largest_first",
    merge_barrier="isolate_only", movable_wmark="proportional",
    contig_align="max_order", drain_per_pageblock=True, contig_gfp_check=False,
    contig_pages_skip_used=True,
    sbm_subblock="max_order", sbm_states=_SBM_STATES_5_8,
    sbm_plug_order=("ONLINE_PARTIAL", "OFFLINE_PARTIAL"),
    sbm_unplug_order=("OFFLINE_PARTIAL", "OFFLINE", "ONLINE_PARTIAL", "ONLINE"),
    movable_partial_allowed=False, fake_offline_tries_movable=1, big_block_mode=False,
    offline_threshold_bytes=None, offline_threshold_blocks=10,
    retry_unplugged_removal=False, online_policies=("contig-zones",),
    oom_rss_columns=False,
)

LINUX_6_1 = dataclasses.replace(
    LINUX_5_8, name="6.1", merge_barrier="unmergeable", contig_align="pageblock",
    drain_per_pageblock=False, contig_pages_skip_used=False,
    sbm_subblock="pageblock", sbm_states=_SBM_STATES, sbm_plug_order=_SBM_PLUG,
    sbm_unplug_order=_SBM_UNPLUG, movable_partial_allowed=True,
    fake_offline_tries_movable=5, big_block_mode=True, offline_threshold_bytes=1 * GiB,
    offline_threshold_blocks=2, online_policies=_BOTH_POLICIES,
)

LINUX_6_12 = dataclasses.replace(
    LINUX_6_1, name="6.12", freelist_hygiene=True, movable_wmark="capped",
    retry_unplugged_removal=True, oom_rss_columns=True,
)

LINUX_6_15 = dataclasses.replace(
    LINUX_6_12, name="6.15", fallback="claim_steal", contig_gfp_check=True,
)

PROFILES = {p.name: p for p in (LINUX_5_8, LINUX_6_1, LINUX_6_12, LINUX_6_15)}
DEFAULT_KERNEL = "6.12"


def profile(name: str | KernelProfile) -> KernelProfile:
    """Look up a kernel profile by release: "5.8", "6.1", "6.12" or "6.15"."""
    if isinstance(name, KernelProfile):
        return name
    try:
        return PROFILES[str(name)]
    except KeyError:
        raise ValueError(f"kernel={name!r} is not one of {list(PROFILES)}") from None


def _short(value: Any) -> str:
    if isinstance(value, tuple):
        return ", ".join(map(str, value))
    if value is None:
        return "-"
    if isinstance(value, int) and not isinstance(value, bool) and value >= GiB:
        return f"{value // GiB} GiB"
    return str(value)


def profile_table(kernels: tuple[str, ...] = tuple(PROFILES)) -> str:
    """Every behaviour field, its value in each release and the release that changed it.

    ``history(name)`` names the change itself.
    """
    cols = [PROFILES[k] for k in kernels]
    lines = [f"{'field':<27}" + "".join(f"{k:>14}" for k in kernels) + "   since"]
    group = None
    for name in behaviour_fields():
        where, release, _ = history(name)
        if where != group:
            lines.append(f"-- {where} " + "-" * (70 - len(where)))
            group = where
        values = [_short(getattr(p, name)) for p in cols]
        if max(map(len, values)) <= 13:
            lines.append(f"{name:<27}" + "".join(f"{v:>14}" for v in values)
                         + f"   {release}")
            continue
        lines.append(f"{name:<27}" + " " * 14 * len(cols) + f"   {release}")
        lines += [f"    {k:<5} {v}" for k, v in zip(kernels, values, strict=True)]
    return "\n".join(lines)
