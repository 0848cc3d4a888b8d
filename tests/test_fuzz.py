"""A long seeded fuzz: mixed operations on every kind of machine, checked after each step.

``Fuzz`` drives one machine (teaching or x86-64, any kernel profile in
``vmemlab.profiles.PROFILES``, either online policy) with operations drawn
from its own seeded generator: allocations and frees of every order and
mobility, bulk allocations, alloc_contig_range() over aligned, misaligned
and cross-zone ranges (run at once or phase by phase), free_contig_range(),
sysfs writes (online, offline, online_kernel, online_movable, the online
attribute, auto_online_blocks, the parameters, and garbage), DIMMs added
and removed, virtio-mem requested-size changes and live migration, the
balloon, guest activities of every kind, background activities, churn,
overcommit that calls the OOM killer, compaction (whole node or one zone
to an order), drop_caches, run() and settle(), reboots, and bad input
(which must change nothing).
After every step: ``validate()`` and page conservation.

A failure names the configuration, the seed and the step, and the last
operations, so ``Fuzz(config, seed).run(steps)`` replays it exactly.
``benchmarks/bench_fuzz.py`` runs the same fuzz much longer.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

import vmemlab as vm
from vmemlab.profiles import PROFILES
from vmemlab.validate import state_digest

GFPS = ("GFP_KERNEL", "GFP_HIGHUSER_MOVABLE", "GFP_KERNEL | __GFP_RECLAIMABLE", "GFP_ATOMIC",
        "GFP_NOWAIT", "GFP_USER", "GFP_DMA32", "GFP_HIGHUSER", "GFP_KERNEL | __GFP_COMP",
        "GFP_TRANSHUGE_LIGHT")
KINDS = ("anon", "page_cache", "tmpfs", "ramfs", "pipes", "files", "page_tables", "slab",
         "slab_reclaimable", "kernel", "pin")
ONLINE_TYPES = ("online", "online_kernel", "online_movable", "offline")
GARBAGE = ("", "\n", "sideways", " online", "ONLINE", "١", "4294967296", "+5", "0x10", "yes",
           "off", "online\n\n", "x" * 5000)
BAD_CALLS: tuple[Callable[[vm.Machine], object], ...] = (
    lambda m: m.alloc_pages(-1), lambda m: m.alloc_pages(0, 2**70),
    lambda m: m.alloc_pages(0, kind="none"), lambda m: m.alloc_pages_bulk(float("nan")),
    lambda m: m.zone(-1), lambda m: m.run(float("inf")), lambda m: m.settle(float("nan")),
    lambda m: m.alloc_contig_range(0, 8, fatal_signal="no"), lambda m: m.free_pages(-1, 0),
    lambda m: m.activity("anon", size=True), lambda m: m.activity("files", count=-1),
    lambda m: m.start_activity("anon", "4k", interval=float("inf")),
    lambda m: m.add_virtio_mem(region_size="1024T"), lambda m: m.add_dimm("1T"),
    lambda m: m.offline_memory_block(10**6), lambda m: m.sysfs.write("relative", "1"),
    lambda m: m.sysfs.write("/sys/devices/system/memory/auto_online_blocks", 1),
    lambda m: m.run(1e308),
)


@dataclass(frozen=True)
class Config:
    """One kind of machine to fuzz."""

    geometry: str
    kernel: str
    policy: str = "contig-zones"

    @property
    def teaching(self) -> bool:
        return self.geometry == "teaching"

    def __str__(self) -> str:
        return f"{self.geometry}/{self.kernel}/{self.policy}"


def configs() -> list[Config]:
    """Teaching and x86-64 machines of every profile, auto-movable where it exists."""
    out = []
    for geometry in ("teaching", "x86_64"):
        for kernel, prof in PROFILES.items():
            policy = "auto-movable" if "auto-movable" in prof.online_policies \
                and geometry == "teaching" else "contig-zones"
            out.append(Config(geometry, kernel, policy))
    return out


@dataclass
class Fuzz:
    """One machine driven by a seeded generator; ``run(steps)`` checks after each step."""

    config: Config
    seed: int
    counts: Counter = field(default_factory=Counter)
    log: list[str] = field(default_factory=list)
    steps: int = 0

    def __post_init__(self) -> None:
        c = self.config
        self.rng = np.random.default_rng([self.seed, 14])
        boot, self.unit = ("768k", 256 << 10) if c.teaching else ("512M", 128 << 20)
        self.m = vm.Machine(boot_memory=boot, geometry=c.geometry, kernel=c.kernel,
                            online_policy=c.policy, seed=self.seed,
                            auto_online_blocks=self.pick(ONLINE_TYPES[:3]))
        self.m.add_virtio_mem(region_size=4 * self.unit,
                              requested_size=int(self.rng.integers(0, 3)) * self.unit)
        if self.rng.random() < 0.5:
            self.m.add_virtio_balloon(compaction=bool(self.rng.random() < 0.7))
        self.held: list[tuple[int, int]] = []          # alloc_pages() blocks: (owner, order)
        self.taken: list[tuple[int, int]] = []         # alloc_contig_range() ranges
        self.ops = [(name, getattr(self, f"op_{name}"), w) for name, w in WEIGHTS.items()]
        self.weights = np.array([w for *_, w in self.ops], float)
        self.weights /= self.weights.sum()
        self.check()

    # -- drawing ---------------------------------------------------------------
    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def pages(self, most: int) -> int:
        """A page count, small more often than large."""
        return int(self.rng.integers(1, max(2, int(most * self.rng.random() ** 2) + 2)))

    @property
    def geo(self):
        return self.m.geometry

    # -- the loop ----------------------------------------------------------------
    def run(self, steps: int) -> Fuzz:
        for _ in range(steps):
            name, op, _ = self.ops[int(self.rng.choice(len(self.ops), p=self.weights))]
            self.steps += 1
            try:
                what = op()
                self.check()
            except Exception as e:
                recent = "\n  ".join(self.log[-12:])
                raise AssertionError(f"fuzz {self.config} seed {self.seed} step {self.steps} "
                                     f"({name}): {type(e).__name__}: {e}\n  last operations:"
                                     f"\n  {recent}") from e
            self.counts[name] += 1
            self.log.append(f"{self.steps}: {name} {what or ''}")
            del self.log[:-50]
        return self

    def check(self) -> None:
        """validate() and conservation: every managed page is free on a list or counted
        as allocated by its kind; held allocations are still where they were."""
        m = self.m
        m.validate()
        for z in m.node.zones:
            on_lists = sum(len(lst) << order for order, area in enumerate(z.free_area)
                           for lst in area.free_list)
            assert int(z.nr_kind.sum()) + on_lists == z.managed_pages, z
        for owner, _ in self.held:
            pfn = m.node.owners[owner].pfn
            assert m.node.mm.state[pfn] == vm.PageState.ALLOCATED
            assert m.node.mm.owner[pfn] == owner

    # -- operations: the page allocator ------------------------------------------------
    def op_alloc(self) -> str:
        order = int(self.rng.integers(0, self.geo.max_page_order + 1))
        gfp = self.pick(GFPS)
        kind = self.pick((None, None, "kernel", "anon", "slab"))
        pfn = self.m.alloc_pages(order, gfp, kind)
        if pfn is not None:
            self.held.append((int(self.m.node.mm.owner[pfn]), order))
        return f"order {order} {gfp} -> {pfn}"

    def op_free(self) -> str:
        if not self.held:
            return "nothing held"
        owner, order = self.held.pop(int(self.rng.integers(len(self.held))))
        pfn = self.m.node.owners[owner].pfn         # where it is now: it may have moved
        self.m.free_pages(pfn, order)
        return f"{pfn:#x} order {order}"

    def op_bulk(self) -> str:
        n = self.pages(64 if self.config.teaching else 4096)
        got = self.m.alloc_pages_bulk(n, self.pick(GFPS[:4]))
        return f"{n} -> {len(got)}"

    # -- contiguous ranges --------------------------------------------------------
    def contig_span(self) -> tuple[int, int]:
        """A range: anywhere (misaligned), pageblock-aligned, or across a zone boundary."""
        mm, pb = self.m.node.mm, self.geo.pageblock_nr_pages
        present = np.flatnonzero(mm.state != vm.PageState.ABSENT)
        most = 64 if self.config.teaching else 4096
        how = self.pick(("anywhere", "aligned", "boundary"))
        if how == "boundary":
            edges = [z.start_pfn for z in self.m.zones.values() if z.spanned and z.start_pfn]
            start = self.pick(edges) - self.pages(most // 2) if edges else int(self.pick(present))
        else:
            start = int(self.pick(present))
        if how == "aligned":
            start -= start % pb
        n = self.pages(most) if how != "aligned" else pb * self.pages(most // pb)
        start = max(0, start)
        return start, min(mm.nr_pfns, start + n)

    def op_contig(self) -> str:
        start, end = self.contig_span()
        gfp = self.pick(("GFP_KERNEL", "GFP_KERNEL", "GFP_KERNEL | __GFP_COMP",
                         "GFP_HIGHUSER_MOVABLE", "GFP_ATOMIC"))
        c = self.m.contig_range(start, end, gfp, fatal_signal=self.chance(0.05))
        stepped = self.chance(0.5)
        while not c.done:
            c.step()
            if stepped:
                self.check()         # the legal transient states between phases
        if c.rc == 0:
            self.taken.append((start, end - start))
        return f"[{start:#x}, {end:#x}) {gfp} -> {vm.errname(c.rc)}"

    def op_contig_free(self) -> str:
        if not self.taken:
            return "nothing taken"
        start, n = self.taken.pop(int(self.rng.integers(len(self.taken))))
        left = self.m.free_contig_range(start, n)
        assert left == 0, f"free_contig_range({start:#x}, {n}) left {left} pages"
        return f"[{start:#x}, +{n})"

    def op_contig_pages(self) -> str:
        n = self.pages(32 if self.config.teaching else 1024)
        pfn = self.m.alloc_contig_pages(n, self.pick(("GFP_KERNEL", "GFP_HIGHUSER")))
        if pfn is not None:
            self.taken.append((pfn, n))
        return f"{n} -> {pfn}"

    # -- memory blocks, sysfs, DIMMs ------------------------------------------------
    def op_sysfs(self) -> str:
        blocks = sorted(self.m.hotplug.blocks)
        path, value = f"{vm.sysfs.ROOT}/memory{self.pick(blocks)}/state", \
            self.pick(ONLINE_TYPES)
        roll = self.rng.random()
        if roll < 0.2:
            path, value = path.replace("/state", "/online"), self.pick(("0", "1"))
        elif roll < 0.3:
            path = f"{vm.sysfs.ROOT}/auto_online_blocks"
        elif roll < 0.4 and "auto-movable" in self.m.profile.online_policies:
            path = f"{vm.sysfs.PARAMS}/{self.pick(('online_policy', 'auto_movable_ratio'))}"
            value = self.pick(("contig-zones", "auto-movable", "0", "301", "1000"))
        elif roll < 0.5:
            before = state_digest(self.m)
            value = self.pick(GARBAGE)
            rc = self.m.sysfs.write(path, value)
            assert rc in (0, vm.EINVAL) and (rc == 0 and value == "" or rc and
                                             state_digest(self.m) == before), (value, rc)
            return f"{path} <- {value[:12]!r}: {vm.errname(rc)}"
        rc = self.m.sysfs.write(path, value)
        return f"{path} <- {value}: {vm.errname(rc)}"

    def op_dimm(self) -> str:
        if len(self.m.dimms) >= 3:
            d = self.pick(self.m.dimms)
            rc = self.m.hotplug.offline_and_remove_memory(d.addr, d.size, timeout=1.0)
            return f"remove {d.name}: {vm.errname(rc)}"
        d = self.m.add_dimm(self.unit * int(self.rng.integers(1, 3)), online=self.chance(0.8))
        return f"add {d.name} at {d.addr:#x}: {vm.errname(d.rc)}"

    def op_remove(self) -> str:
        if not self.m.dimms:
            return "no DIMM"
        d = self.pick(self.m.dimms)
        rc = self.m.hotplug.offline_and_remove_memory(d.addr, d.size, timeout=1.0)
        return f"{d.name}: {vm.errname(rc)}"

    # -- devices ----------------------------------------------------------------
    def op_resize(self) -> str:
        dev = self.pick(self.m.virtio_mem)
        size = int(self.rng.integers(0, dev.region_size // dev.block_size + 1)) * dev.block_size
        dev.requested_size = size
        if self.chance(0.1):
            dev.migrating = not dev.migrating
        return f"{dev.name} -> {size >> 10}k (migrating {dev.migrating})"

    def op_balloon(self) -> str:
        if self.m.balloon is None:
            self.m.add_virtio_balloon(compaction=self.chance(0.7))
            return "added"
        ram = self.m.balloon.ram_size()
        inflate = self.pages(ram >> 13 if self.config.teaching else 2048) << 12
        target = max(4096, ram - inflate)        # an x86 balloon stays small: each of its
        self.m.balloon.set_memory(target)        # pages migrates one by one
        return f"target {target >> 10}k"

    # -- activities -------------------------------------------------------------
    def op_activity(self) -> str:
        kind = self.pick(KINDS)
        most = 48 if self.config.teaching else 8192
        if kind == "files":
            act = self.m.activity("files", count=self.pages(most) * 4)
        elif kind == "pipes":
            act = self.m.activity("pipes", count=max(1, self.pages(most) // 16))
        else:
            act = self.m.activity(kind, size=self.pages(most) << self.geo.page_shift)
        return repr(act)

    def op_release(self) -> str:
        if not self.m.activities:
            return "no activity"
        act = self.pick(self.m.activities)
        freed = act.release(self.pick((1.0, 0.5, 15 / 16, 0.1)))
        return f"{act.name}: {freed} bytes"

    def op_background(self) -> str:
        running = [a for a in self.m.activities if not a.stopped and a.requested is not None]
        if running and self.chance(0.3):
            act = self.pick(running)
            act.stop()
            return f"stop {act.name}"
        rate = self.pages(8 if self.config.teaching else 2048) << self.geo.page_shift
        act = self.m.start_activity(self.pick(("page_cache", "anon", "slab")), rate,
                                    interval=self.pick((0.5, 1.0, 5.0)),
                                    limit=rate * int(self.rng.integers(1, 20)),
                                    release_fraction=self.pick((0.0, 0.0, 0.5)))
        return f"start {act.name} at {rate} B/s"

    def op_churn(self) -> str:
        from vmemlab.workload import churn

        s = churn(self.m, int(self.rng.integers(1, 30)),
                  max_order=int(self.rng.integers(0, self.geo.max_page_order + 1)))
        return f"{s.allocated} allocated, {s.freed} freed"

    def op_oom(self) -> str:
        """Anonymous memory beyond what is free: reclaim, then the OOM killer picks."""
        free = self.m.proc.meminfo_kb("MemFree") << 10
        size = (free + self.pages(free >> self.geo.page_shift)) >> self.geo.page_shift
        act = self.m.activity("anon", size=max(1, size) << self.geo.page_shift,
                              oom_score_adj=self.pick((-1000, 0, 0, 500, 1000)))
        return f"{act!r}, {self.m.node.vm_events.get('oom_kill', 0)} killed so far"

    def op_compact(self) -> str:
        if self.chance(0.5):
            runs = self.m.compact_memory()
            return f"compact_memory: {sum(cc.stats.nr_migrated for cc in runs)} moved"
        zone = self.pick([z for z in self.m.node.zones if z.managed()])
        order = int(self.rng.integers(-1, self.geo.max_page_order + 1))
        cc = self.m.compact_zone(zone.name, order)
        return f"{zone.name} order {order}: {cc.result.name}, {cc.stats.nr_migrated} moved"

    def op_drop_caches(self) -> str:
        value = self.pick((1, 2, 3))
        if self.chance(0.5):
            self.m.drop_caches(value)
        else:
            self.m.sysfs.write("/proc/sys/vm/drop_caches", f"{value}\n")
        return f"drop_caches {value}"

    # -- time and reboot ----------------------------------------------------------
    def op_time(self) -> str:
        if self.chance(0.5):
            took = self.m.settle(self.pick((1.0, 60.0, 3600.0)))
            return f"settle: {took:.3g} s"
        seconds = self.pick((0.0, 0.001, 0.2, 1.0, 50.0, 300.0))
        self.m.run(seconds)
        return f"run {seconds} s (t={self.m.now:.3f})"

    def op_reboot(self) -> str:
        self.m.reboot()
        self.held.clear()
        self.taken.clear()
        return f"boot {self.m.boots}"

    def op_bad(self) -> str:
        """A call that must be refused with ValueError and leave the machine unchanged."""
        call = self.pick(BAD_CALLS)
        before = state_digest(self.m)
        with pytest.raises(ValueError):
            call(self.m)
        assert state_digest(self.m) == before
        return "refused, unchanged"


WEIGHTS = {"alloc": 14, "free": 10, "bulk": 4, "contig": 8, "contig_free": 4,
           "contig_pages": 2, "sysfs": 8, "dimm": 2, "remove": 1, "resize": 6, "balloon": 2,
           "activity": 8, "release": 6, "background": 2, "churn": 2, "oom": 1, "compact": 3,
           "drop_caches": 2, "time": 8, "reboot": 1, "bad": 3}

# The test suite fuzzes TOTAL_STEPS steps whatever the number of profiles.  An x86-64
# step validates a 4.5 GiB address space and costs about 20 teaching steps, so each
# x86-64 machine gets X86_STEPS and the teaching machines share the rest.
TOTAL_STEPS, X86_STEPS = 20_000, 500


def steps_for(config: Config) -> int:
    x86 = sum(1 for c in configs() if not c.teaching)
    teaching = len(configs()) - x86
    return X86_STEPS if not config.teaching else -(-(TOTAL_STEPS - x86 * X86_STEPS) // teaching)


@pytest.mark.parametrize("config", configs(), ids=str)
def test_fuzz(config):
    steps = steps_for(config)
    t0 = time.process_time()
    fuzz = Fuzz(config, seed=2014).run(steps)
    assert fuzz.steps == steps
    drawn = set(WEIGHTS) if config.teaching else set(WEIGHTS) - {"remove", "reboot"}
    assert drawn <= set(fuzz.counts), f"operations never drawn: {drawn - set(fuzz.counts)}"
    print(f"{config}: {steps} steps, {time.process_time() - t0:.1f} s CPU")


def test_the_suite_fuzzes_20000_steps():
    assert sum(steps_for(c) for c in configs()) >= 20_000
    assert {c.kernel for c in configs()} == set(PROFILES)


def test_a_failure_names_config_seed_and_step(monkeypatch):
    fuzz = Fuzz(Config("teaching", "6.12"), seed=1)
    monkeypatch.setattr(fuzz.m, "validate", lambda: (_ for _ in ()).throw(
        vm.ValidationError("injected")))
    with pytest.raises(AssertionError, match=r"fuzz teaching/6.12/contig-zones seed 1 step 1 "
                                             r"\(\w+\): ValidationError: injected"):
        fuzz.run(1)
