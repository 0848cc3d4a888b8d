"""Kernel profiles: the behaviour that changed between Linux 5.8 and 6.12.

A machine is built for one kernel version.  Every behaviour that differs
between versions is a field of ``KernelProfile``, so model code asks
``profile.contig_align`` instead of comparing version strings.  Each field's
comment names the release and change that introduced the newer behaviour.

"5.8" is the release that exported alloc_contig_range() for virtio-mem
(reference: linux-page-allocator.md §4.1); vmemlab reads its behaviour from
5.10.y plus the 2020 patches.  "6.12" is 6.12.y as Debian ships it, which
carries the 6.15 fallback rework and the alloc_contig_range gfp cleanups.
"""

from __future__ import annotations

from dataclasses import dataclass

from .constants import GiB


@dataclass(frozen=True)
class KernelProfile:
    """One kernel version's behaviour, as data."""

    name: str
    # --- page allocator (mm/page_alloc.c) ---
    # v6.10 "mm: page_alloc: freelist migratetype hygiene": a free page always
    # sits on its pageblock's list, and merging retypes the buddy's pageblock.
    freelist_hygiene: bool
    # v6.15 c2f6ea38fc1b (backported to 6.12.y): __rmqueue_claim() then
    # __rmqueue_steal().  Before: __rmqueue_fallback() taking the largest
    # buddy and steal_suitable_fallback().
    fallback: str                      # "claim_steal" | "largest_first"
    # v6.1+: no merging at >= pageblock_order with an unmergeable type
    # (ISOLATE, HIGHATOMIC; CMA where configured).  v5.10: only ISOLATE vs non-ISOLATE, and only
    # while the zone has isolated pageblocks.
    merge_barrier: str                 # "unmergeable" | "isolate_only"
    # --- alloc_contig_range (mm/page_alloc.c, mm/page_isolation.c) ---
    # v5.19 Zi Yan "make alloc_contig_range work at pageblock granularity".
    # Before, isolation covered the MAX_ORDER-aligned range (4 MiB on x86-64).
    # Both check every isolated pageblock whole in has_unmovable_pages().
    contig_align: str                  # "pageblock" | "max_order"
    # drain_all_pages() once per call (6.1+) or per isolated pageblock (5.10).
    drain_per_pageblock: bool
    # ~6.14 (backported to 6.12.y): __alloc_contig_verify_gfp_mask(), -EINVAL
    # on unsupported gfp flags.
    contig_gfp_check: bool
    # v5.7-5.13 pfn_range_valid_contig() skipped ranges with any page in use;
    # v5.14 eb14d4eefdc4 lets alloc_contig_pages() migrate them.
    contig_pages_skip_used: bool
    # --- virtio-mem guest driver (drivers/virtio/virtio_mem.c) ---
    # v5.19: subblock = max(pageblock, device block); before:
    # max(MAX_ORDER-1 chunk, pageblock) = 4 MiB on x86-64.
    sbm_subblock: str                  # "pageblock" | "max_order"
    # v5.14 "prioritize unplug from ZONE_MOVABLE": KERNEL/MOVABLE states.
    sbm_states: tuple[str, ...]
    sbm_plug_order: tuple[str, ...]
    sbm_unplug_order: tuple[str, ...]
    # v5.10 "don't special-case ZONE_MOVABLE": partly plugged blocks may be
    # onlined to ZONE_MOVABLE.
    movable_partial_allowed: bool
    # v5.11 "retry fake-offlining via alloc_contig_range() on ZONE_MOVABLE".
    fake_offline_tries_movable: int
    # v5.11 Big Block Mode.
    big_block_mode: bool
    # v5.11: max(1 GiB, 2 memory blocks) of offline memory; v5.8: 10 blocks.
    offline_threshold_bytes: int | None
    offline_threshold_blocks: int | None
    # v6.5: retry offline+remove of fully unplugged blocks; check
    # config_changed inside fake-offline.
    retry_unplugged_removal: bool
    # --- memory hotplug (mm/memory_hotplug.c) ---
    # v5.15 e83a437faa62 "auto-movable" online policy and memory groups.
    online_policies: tuple[str, ...]

    def __str__(self) -> str:
        return f"Linux {self.name}"

    @property
    def release(self) -> tuple[int, int]:
        """The upstream release as (major, minor): tables keyed by version ask this
        (vmemlab.prockeys: which /proc lines the release prints)."""
        major, minor = self.name.split(".")[:2]
        return int(major), int(minor)


_SBM_STATES_5_8 = ("UNUSED", "PLUGGED", "OFFLINE", "OFFLINE_PARTIAL",
                   "ONLINE", "ONLINE_PARTIAL", "ONLINE_MOVABLE")
_SBM_STATES_6_12 = ("UNUSED", "PLUGGED", "OFFLINE", "OFFLINE_PARTIAL",
                    "KERNEL", "KERNEL_PARTIAL", "MOVABLE", "MOVABLE_PARTIAL")

LINUX_5_8 = KernelProfile(
    name="5.8",
    freelist_hygiene=False,
    fallback="largest_first",
    merge_barrier="isolate_only",
    contig_align="max_order",
    drain_per_pageblock=True,
    contig_gfp_check=False,
    contig_pages_skip_used=True,
    sbm_subblock="max_order",
    sbm_states=_SBM_STATES_5_8,
    sbm_plug_order=("ONLINE_PARTIAL", "OFFLINE_PARTIAL"),
    sbm_unplug_order=("OFFLINE_PARTIAL", "OFFLINE", "ONLINE_PARTIAL", "ONLINE"),
    movable_partial_allowed=False,
    fake_offline_tries_movable=1,
    big_block_mode=False,
    offline_threshold_bytes=None,
    offline_threshold_blocks=10,
    retry_unplugged_removal=False,
    online_policies=("contig-zones",),
)

LINUX_6_12 = KernelProfile(
    name="6.12",
    freelist_hygiene=True,
    fallback="claim_steal",
    merge_barrier="unmergeable",
    contig_align="pageblock",
    drain_per_pageblock=False,
    contig_gfp_check=True,
    contig_pages_skip_used=False,
    sbm_subblock="pageblock",
    sbm_states=_SBM_STATES_6_12,
    sbm_plug_order=("KERNEL_PARTIAL", "MOVABLE_PARTIAL", "OFFLINE_PARTIAL"),
    sbm_unplug_order=("OFFLINE_PARTIAL", "OFFLINE", "MOVABLE_PARTIAL",
                      "KERNEL_PARTIAL", "MOVABLE", "KERNEL"),
    movable_partial_allowed=True,
    fake_offline_tries_movable=5,
    big_block_mode=True,
    offline_threshold_bytes=1 * GiB,
    offline_threshold_blocks=2,
    retry_unplugged_removal=True,
    online_policies=("contig-zones", "auto-movable"),
)

PROFILES = {p.name: p for p in (LINUX_5_8, LINUX_6_12)}
DEFAULT_KERNEL = "6.12"


def profile(name: str | KernelProfile) -> KernelProfile:
    """Look up a kernel profile by version: "5.8" or "6.12"."""
    if isinstance(name, KernelProfile):
        return name
    try:
        return PROFILES[str(name)]
    except KeyError:
        raise ValueError(f"kernel={name!r} is not one of {sorted(PROFILES)}") from None
