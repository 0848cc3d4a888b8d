"""Run a checked scenario (``vmemlab.scenario``) on a Machine and report every step.

``run_scenario(sc)`` builds the machine and devices, performs the steps in
order and returns a ``RunResult``: after each step, every virtio-mem
device's requested and plugged size, how long the driver took to get there
(simulated seconds from the request), the driver's last ``run_wq`` result by
name and what ``run_wq`` does with it, the retries that ran during waits,
the kernel log lines of the step, and any failed expectation.
``format_result`` prints it as text, ``RunResult.to_dict()`` as JSON-ready
data.

A ``wait`` runs from one retry timer to the next, so each retry of the
driver is seen (-EBUSY at 50 s, 100 s, 200 s, then every 300 s).

Kernel: drivers/virtio/virtio_mem.c, virtio_mem_run_wq() and its retry
timer; QEMU: hw/virtio/virtio-mem.c (requested-size, size)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from .constants import errname, format_size
from .machine import Machine
from .scenario import Expect, Scenario, ScenarioError, Step
from .virtio_mem_driver import RUN_WQ_ACTIONS
from .workload import churn, fill

ROUTINE_LOG = ("plugged size:", "requested size:")   # printed on every config read
MAX_LOG_LINES = 6
TIMER_EPS = 1e-9       # run just past a retry timer's due time


@dataclass
class DeviceState:
    """One virtio-mem device after a step: the host's view and the driver's."""

    name: str
    requested_size: int
    size: int
    last_rc: int | None
    broken: bool
    retry_at: float | None
    passes: int
    converged: bool
    working: bool                       # a driver pass is running or queued
    reached_in: float | None = None     # seconds from the request, when first reached

    @property
    def action(self) -> str:
        """What run_wq does with ``last_rc`` (reference §2.4)."""
        if self.broken:
            return "the driver marked the device broken and stopped for good"
        if self.working:
            return "a pass is running or queued (the config changed)"
        if self.last_rc is None:
            return "the driver has not run yet"
        return RUN_WQ_ACTIONS.get(self.last_rc, "unknown error: mark the device broken")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["last_rc_name"] = None if self.last_rc is None else errname(self.last_rc)
        d["action"] = self.action
        return d


@dataclass(frozen=True)
class Retry:
    """A driver pass that a retry timer started during a wait."""

    device: str
    t: float
    rc: int
    size: int


@dataclass
class StepResult:
    index: int
    do: str
    what: str
    note: str
    t_start: float
    t_end: float
    details: list[str]
    devices: list[DeviceState]
    retries: list[Retry]
    passes: dict[str, int]
    dmesg: list[str]
    memtotal_kb: int
    memfree_kb: int
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["devices"] = [s.to_dict() for s in self.devices]
        d["retries"] = [{**asdict(r), "rc_name": errname(r.rc)} for r in self.retries]
        return d


@dataclass
class RunResult:
    scenario: Scenario
    setup: list[str]
    steps: list[StepResult]
    machine: Machine = field(repr=False)

    @property
    def failures(self) -> list[str]:
        return [f for s in self.steps for f in s.failures]

    @property
    def nr_expectations(self) -> int:
        return sum(1 for s in self.scenario.steps if s.expect is not None)

    def final(self, device: str = "vmem0") -> DeviceState:
        return next(d for d in self.steps[-1].devices if d.name == device)

    def to_dict(self) -> dict[str, Any]:
        sc = self.scenario
        return {"source": sc.source, "title": sc.title, "machine": asdict(sc.machine),
                "devices": [asdict(d) for d in sc.devices], "overrides": sc.overrides,
                "setup": self.setup, "steps": [s.to_dict() for s in self.steps],
                "expectations": self.nr_expectations, "failures": self.failures}


# ---------------------------------------------------------------- running
class Runner:
    """Holds the machine and what is needed between steps (request times)."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        spec = sc.machine
        self.m = Machine(boot_memory=spec.boot_memory, kernel=spec.kernel,
                         online_policy=spec.online_policy,
                         auto_online_blocks=spec.auto_online_blocks, seed=spec.seed,
                         geometry=spec.geometry, min_free_kbytes=spec.min_free_kbytes,
                         auto_movable_ratio=spec.auto_movable_ratio,
                         kernel_activity=spec.kernel_activity, cpus=spec.cpus,
                         maxmem=spec.maxmem, slots=spec.slots)
        for dimm in sc.dimms:
            self.m.add_dimm(dimm.size, dimm.online)
        self.devs = {d.name: self.m.add_virtio_mem(
            region_size=d.region_size, block_size=d.block_size, requested_size=d.requested_size,
            prealloc=d.prealloc, host_memory=d.host_memory) for d in sc.devices}
        if sc.balloon is not None:
            self.m.add_virtio_balloon(sc.balloon)
        self.since: dict[str, float | None] = {n: 0.0 if d.requested_size else None
                                               for n, d in self.devs.items()}
        self.reached: dict[str, float] = {}
        self.background: list[Any] = []      # activities from `start` steps
        self.log_mark = (self.m.boots, 0)

    def setup_lines(self) -> list[str]:
        spec, m = self.sc.machine, self.m
        out = [f"machine: {format_size(spec.boot_memory)} {spec.geometry} guest, Linux "
               f"{spec.kernel}, online_policy {spec.online_policy}, auto_online_blocks "
               f"{spec.auto_online_blocks}, seed {spec.seed}"]
        out += [f"  {d.name}: pc-dimm at {d.addr:#x}, {format_size(d.size)}" for d in m.dimms]
        for name, dev in self.devs.items():
            mode = dev.driver.mode.name if dev.driver.mode is not None else "driver not bound"
            out.append(f"  {name}: virtio-mem-pci at {dev.addr:#x}, region "
                       f"{format_size(dev.region_size)}, block {format_size(dev.block_size)}, "
                       f"requested-size {format_size(dev.requested_size)} ({mode})")
        if m.balloon is not None:
            out.append(f"  virtio-balloon (compaction {'on' if m.balloon.compaction else 'off'})")
        return out

    # -- one step -----------------------------------------------------------
    def step(self, step: Step) -> StepResult:
        m = self.m
        t0, passes0 = m.now, {n: d.driver.passes for n, d in self.devs.items()}
        retries: list[Retry] = []
        try:
            details = ACTIONS[step.do](self, step, retries)
            if step.settle and step.do != "settle":
                m.settle()
        except ValueError as e:
            raise ScenarioError(self.sc.source, f"steps[{step.index}] ({step.do})", str(e),
                                step.line) from None
        states = self.observe()
        rows = dict(m.proc.meminfo_rows())
        passes = {n: d.driver.passes - passes0[n] if d.driver.passes >= passes0[n]
                  else d.driver.passes for n, d in self.devs.items()}
        if m.balloon is not None:
            b = m.balloon
            details.append(f"balloon: {format_size(b.actual << 12)} inflated of a target of "
                           f"{format_size(b.num_pages << 12)}; out of puff {b.out_of_puff} times")
        res = StepResult(step.index, step.do, describe(step), step.note, t0, m.now, details,
                         states, retries, passes, self.new_log(), rows["MemTotal"],
                         rows["MemFree"])
        if step.expect is not None:
            res.failures = check(step, step.expect, res)
        return res

    def note_progress(self) -> None:
        """Remember when each device first reached its request (for "reached in")."""
        for name, dev in self.devs.items():
            if converged(dev) and self.since[name] is not None:
                self.reached[name] = self.m.now - self.since[name]
                self.since[name] = None

    def observe(self) -> list[DeviceState]:
        """Every device's state now; a device that reached its request says how fast."""
        self.note_progress()
        return [DeviceState(name, dev.requested_size, dev.size, dev.driver.last_rc,
                            dev.driver.broken, dev.driver.timer_due, dev.driver.passes,
                            converged(dev), working(dev), self.reached.pop(name, None))
                for name, dev in self.devs.items()]

    def new_log(self) -> list[str]:
        """Kernel log lines since the last step, without the routine config reads."""
        boots, start = self.log_mark
        log = self.m.node.log
        if boots != self.m.boots:
            start = 0
        self.log_mark = (self.m.boots, len(log))
        lines = [f"[{t:10.3f}] {msg}" for t, msg in log[start:]
                 if not any(r in msg for r in ROUTINE_LOG)]
        if len(lines) > MAX_LOG_LINES:
            lines = lines[:MAX_LOG_LINES] + [f"(+{len(lines) - MAX_LOG_LINES} more lines)"]
        return lines

    def device(self, step: Step) -> Any:
        return self.devs[step.args["device"]]


def run_scenario(sc: Scenario, on_step: Callable[[RunResult, StepResult], None] | None = None
                 ) -> RunResult:
    """Run every step of ``sc``; ``on_step(result, step)`` sees each step as it ends.

    Raises ScenarioError if the model refuses a value (naming the step and line).
    """
    try:
        runner = Runner(sc)
    except ValueError as e:
        raise ScenarioError(sc.source, "machine/devices", str(e)) from None
    result = RunResult(sc, runner.setup_lines(), [], runner.m)
    for step in sc.steps:
        res = runner.step(step)
        result.steps.append(res)
        if on_step is not None:
            on_step(result, res)
    if not sc.steps:
        runner.m.settle()
    return result


# ---------------------------------------------------------------- actions
def do_resize(r: Runner, step: Step, retries: list[Retry]) -> list[str]:
    r.device(step).requested_size = step.args["requested_size"]
    r.since[step.args["device"]] = r.m.now
    return []


def do_settle(r: Runner, step: Step, retries: list[Retry]) -> list[str]:
    return [f"settled after {r.m.settle(step.args['limit']):.6g} s of work"]


def do_wait(r: Runner, step: Step, retries: list[Retry]) -> list[str]:
    """Finish the work in progress, then run to each retry timer in turn.

    Each retry's pass is run to its end (``settle``) and its result noted,
    so "reached" times are those of the pass that got there.
    """
    m, end = r.m, r.m.now + step.args["seconds"]
    m.settle(max(0.0, end - m.now))
    r.note_progress()
    while True:
        due = [(d.driver.timer_due, n) for n, d in r.devs.items()
               if d.driver.timer_due is not None and d.driver.timer_due <= end]
        if not due:
            break
        when, name = min(due)
        m.run(max(0.0, when - m.now) + TIMER_EPS)
        m.settle()
        dev = r.devs[name]
        retries.append(Retry(name, when, dev.driver.last_rc or 0, dev.size))
        r.note_progress()
    m.run(max(0.0, end - m.now))
    return [_activity_line(a) for a in r.background if not a.stopped and a in m.activities]


def do_reboot(r: Runner, step: Step, retries: list[Retry]) -> list[str]:
    r.m.reboot()
    r.background.clear()
    out = []
    for name, dev in r.devs.items():
        kept = (f"busy at reset: keeps {format_size(dev.size)}; the new driver sends "
                "UNPLUG_ALL at probe" if dev.size else "unplugged everything at reset")
        out.append(f"{name}: {kept}")
        r.since[name] = r.m.now if dev.requested_size or dev.size else None
    return out


def do_fill(r: Runner, step: Step, retries: list[Retry]) -> list[str]:
    a = step.args
    acts = fill(r.m, a["fraction"], a["mix"], a["chunk"])
    return [_activity_line(act) for act in acts.values()]


def do_activity(r: Runner, step: Step, retries: list[Retry]) -> list[str]:
    a = step.args
    act = r.m.activity(a["kind"], size=a["size"], count=a["count"], name=a["name"] or a["kind"],
                       pipe_size=a["pipe_size"], oom_score_adj=a["oom_score_adj"], fs=a["fs"])
    return [_activity_line(act)]


def do_start(r: Runner, step: Step, retries: list[Retry]) -> list[str]:
    a = step.args
    r.background.append(r.m.start_activity(a["kind"], a["rate"], a["interval"], a["limit"],
                                           a["release_fraction"], a["name"] or a["kind"],
                                           a["pipe_size"], a["oom_score_adj"], a["repeat"]))
    return []


def do_drop_caches(r: Runner, step: Step, retries: list[Retry]) -> list[str]:
    free_kb = dict(r.m.proc.meminfo_rows())["MemFree"]
    r.m.drop_caches(step.args["value"])
    gained = dict(r.m.proc.meminfo_rows())["MemFree"] - free_kb
    return [f"drop_caches {step.args['value']}: MemFree +{gained} kB"]


def do_stop(r: Runner, step: Step, retries: list[Retry]) -> list[str]:
    out = []
    for act in _named(r, step):
        act.stop()
        out.append(_activity_line(act))
    return out


def do_release(r: Runner, step: Step, retries: list[Retry]) -> list[str]:
    freed = sum(act.release(step.args["fraction"]) for act in _named(r, step))
    return [f"{step.args['name']}: freed {format_size(freed)}"]


def do_churn(r: Runner, step: Step, retries: list[Retry]) -> list[str]:
    a = step.args
    s = churn(r.m, a["ops"], a["mix"], a["max_order"], a["lifetime"])
    return [f"churn: {s.allocated} allocated, {s.failed} failed, {s.freed} freed, "
            f"{s.live} still live"]


def do_online(r: Runner, step: Step, retries: list[Retry]) -> list[str]:
    dev = r.device(step)
    shift = r.m.geometry.page_shift
    lo, hi = dev.addr >> shift, (dev.addr + dev.region_size) >> shift
    blocks = [b for b in r.m.memory_blocks if lo <= b.start_pfn < hi and b.state == "offline"]
    blocks = blocks[:step.args["count"]] if step.args["count"] else blocks
    if not blocks:
        return [f"{dev.name}: no offline memory block to online"]
    rcs = [(b.id, r.m.online_memory_block(b.id, step.args["online_type"])) for b in blocks]
    return [f"echo {step.args['online_type']} > memory{bid}/state: {errname(rc)}"
            for bid, rc in rcs]


def do_migration(r: Runner, step: Step, retries: list[Retry]) -> list[str]:
    for dev in r.devs.values():
        dev.migrating = step.args["busy"]
    return ["live migration running: requests get BUSY (-ETXTBSY)" if step.args["busy"]
            else "live migration done: requests are handled again"]


def do_shrink_usable_region(r: Runner, step: Step, retries: list[Retry]) -> list[str]:
    dev = r.device(step)
    old, dev.usable_region_size = dev.usable_region_size, dev.size
    return [f"{dev.name}: usable region {format_size(old)} -> {format_size(dev.size)} "
            "(requests beyond it get ERROR)"]


def do_balloon(r: Runner, step: Step, retries: list[Retry]) -> list[str]:
    r.m.balloon.set_memory(step.args["size"])
    return [f"balloon target: {r.m.balloon.num_pages} pages "
            f"({format_size(r.m.balloon.num_pages << 12)})"]


ACTIONS: dict[str, Callable[[Runner, Step, list[Retry]], list[str]]] = {
    "resize": do_resize, "settle": do_settle, "wait": do_wait, "reboot": do_reboot,
    "fill": do_fill, "activity": do_activity, "start": do_start, "stop": do_stop,
    "release": do_release, "churn": do_churn, "online": do_online, "migration": do_migration,
    "shrink_usable_region": do_shrink_usable_region, "balloon": do_balloon,
    "drop_caches": do_drop_caches}


def converged(dev: Any) -> bool:
    """Plugged what the host asked for, and the driver's last pass ended well."""
    drv = dev.driver
    return dev.size == dev.requested_size and not drv.broken and drv.last_rc in (0, None)


def working(dev: Any) -> bool:
    """A pass is running, or queued: the host changed the config after the last pass.

    After a pass that returned 0 the driver has what was requested; if it
    does not, a new request came in and the work is queued
    (virtio_mem_config_changed()).
    """
    drv = dev.driver
    return drv.wq_active or (not converged(dev) and not drv.broken
                             and drv.last_rc in (0, None) and drv.mode is not None)


def _named(r: Runner, step: Step) -> list[Any]:
    return [a for a in r.m.activities if a.name == step.args["name"]]


def _activity_line(act: Any) -> str:
    kind = f" ({act.kind})" if act.kind != act.name else ""
    short = f", {format_size(act.shortfall)} short of what it asked" if act.shortfall else ""
    dead = ", killed by the OOM killer" if act.killed else ""
    return f"{act.name}{kind}: {format_size(act.resident)} resident{short}{dead}"


# ---------------------------------------------------------- expectations
def check(step: Step, exp: Expect, res: StepResult) -> list[str]:
    """Compare a step's expectations with the result; one message per mismatch."""
    dev = next(d for d in res.devices if d.name == exp.device)
    got = {"size": dev.size, "requested_size": dev.requested_size, "last_rc": dev.last_rc,
           "broken": dev.broken, "retry_timer": dev.retry_at is not None,
           "converged": dev.converged, "passes": res.passes[exp.device]}
    out = []
    for key, have in got.items():
        want = getattr(exp, key)
        if want is not None and want != have:
            out.append(f"steps[{step.index}] expect.{key} ({exp.device}): expected "
                       f"{_show(key, want)}, got {_show(key, have)}")
    for key, words, sign in (("min_size", "at least", 1), ("max_size", "at most", -1)):
        want = getattr(exp, key)
        if want is not None and sign * (dev.size - want) < 0:
            out.append(f"steps[{step.index}] expect.{key} ({exp.device}): expected {words} "
                       f"{_show('size', want)}, got {_show('size', dev.size)}")
    return out


def _show(key: str, value: Any) -> str:
    if key == "last_rc":
        return "none" if value is None else errname(value)
    if key in ("size", "requested_size"):
        return f"{format_size(value)} ({value})"
    return str(value).lower() if isinstance(value, bool) else str(value)


# ------------------------------------------------------------------- text
DESCRIBE = {
    "resize": "resize {device}: requested-size {requested_size}",
    "settle": "settle", "wait": "wait {seconds} s", "reboot": "reboot (system reset)",
    "fill": "fill to {fraction} of memory", "activity": "activity {kind} {amount} ({label})",
    "start": "start {kind} at {rate}/s ({label})", "stop": "stop {name}",
    "release": "release {fraction} of {name}", "churn": "churn {ops} ops",
    "online": "online {count} offline blocks of {device} ({online_type})",
    "migration": "live migration {busy}",
    "shrink_usable_region": "the host shrinks {device}'s usable region",
    "balloon": "balloon {size}",
    "drop_caches": "echo {value} > /proc/sys/vm/drop_caches",
}


def describe(step: Step) -> str:
    """The step in a few words: "resize vmem0: requested-size 0 B", "wait 600 s"."""
    a = step.args
    words: dict[str, Any] = {k: format_size(v) if k in ("requested_size", "size", "rate")
                             and v is not None else v for k, v in a.items()}
    words |= {"label": a.get("name") or a.get("kind"), "count": a.get("count") or "all",
              "amount": format_size(a["size"]) if a.get("size") is not None
              else f"count {a.get('count')}",
              "fraction": f"{a.get('fraction', 1):.0%}", "seconds": f"{a.get('seconds', 0):g}",
              "busy": "starts" if a.get("busy") else "ends"}
    return DESCRIBE[step.do].format(**words)


def format_header(result: RunResult) -> str:
    sc = result.scenario
    head = f"vmemlab run {sc.source}" + (f": {sc.title}" if sc.title else "")
    over = "".join(f"\n  --param {k}={v}" for k, v in sc.overrides.items())
    return head + over + "\n" + "\n".join(result.setup) + "\n"


def format_step(res: StepResult, previous: StepResult | None = None) -> str:
    """One step: what was done, the devices that changed, retries, kernel log."""
    lines = [f"[{res.index}] t={res.t_start:.3f} s  {res.what}" + (f"  -- {res.note}"
                                                                    if res.note else "")]
    lines += [f"    {d}" for d in res.details]
    lines += [f"    {r.device}: retry at t={r.t:.1f} s: {errname(r.rc)}, plugged "
              f"{format_size(r.size)}" for r in res.retries]
    before = {d.name: _key(d) for d in previous.devices} if previous else {}
    lines += [_device_line(d) for d in res.devices
              if before.get(d.name) != _key(d) or d.reached_in is not None]
    lines.append(f"    MemTotal {res.memtotal_kb} kB, MemFree {res.memfree_kb} kB, "
                 f"t={res.t_end:.3f} s")
    lines += [f"    dmesg {ln}" for ln in res.dmesg]
    lines += [f"    EXPECTATION FAILED: {f}" for f in res.failures]
    return "\n".join(lines) + "\n"


def _key(d: DeviceState) -> tuple:
    return (d.requested_size, d.size, d.last_rc, d.broken, d.retry_at)


def _device_line(d: DeviceState) -> str:
    if d.converged:
        when = (f"reached {d.reached_in:.6g} s after the request" if d.reached_in is not None
                else "as requested")
    else:
        when = "NOT reached"
    rc = "not run" if d.last_rc is None else errname(d.last_rc)
    timer = (f"; retry timer fires at t={d.retry_at:.1f} s" if d.retry_at is not None else "")
    return (f"    {d.name}: requested {format_size(d.requested_size)}, plugged "
            f"{format_size(d.size)}, {when}\n"
            f"           last pass {rc}: {d.action}{timer}")


def format_result(result: RunResult) -> str:
    """The whole run as text, with the expectations' verdict at the end."""
    steps = result.steps
    text = format_header(result) + "\n" + "\n".join(
        format_step(s, steps[i - 1] if i else None) for i, s in enumerate(steps))
    return text + "\n" + format_verdict(result)


def format_verdict(result: RunResult) -> str:
    n, bad = result.nr_expectations, result.failures
    if not n:
        return "expectations: none in this scenario\n"
    if not bad:
        return f"expectations: all {n} met\n"
    steps = sum(1 for s in result.steps if s.failures)
    return (f"expectations: FAILED in {steps} of {n} steps with expectations "
            f"({len(bad)} mismatches)\n")
