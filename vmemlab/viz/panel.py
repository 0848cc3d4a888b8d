"""The hypervisor panel: drive a live guest the way a host admin and a user would.

``HypervisorPanel(m)`` puts the host's and the guest's controls next to
what they do:

* the host: a ``requested-size`` slider in device blocks and a ``qom-set``
  button (QEMU's ``qom-set vmem0 requested-size 2G``), and ``reboot``
  (a system reset: QEMU unplugs everything, the guest boots again);
* the guest's memory-hotplug settings: ``memory_hotplug.online_policy`` and
  ``/sys/devices/system/memory/auto_online_blocks``;
* guest workloads: allocate some memory of a kind (page cache, anon, slab...),
  start or stop a background activity, release what the panel started;
* time: ``settle`` (until the driver has nothing left to do now) and
  ``run N s`` (timers fire: the driver's 50 s -> 300 s retry timer, background
  activities).

After every action the simulated clock settles (or runs), then everything
is updated in place: the heatmap (one image, ``HeatmapRenderer.update``),
the device's subblock map, requested-size vs size over simulated time, and
a text pane (the sizes, the driver's state and last return code with its
meaning, ``info memory-devices``, the last kernel messages, the head of
``/proc/meminfo``).  Images are PNG bytes in ``ipywidgets.Image``, text is
HTML: no ``Output`` capture, so it works in JupyterLab, Voila and nbval.

Every button has a method that tests and notebooks call directly
(``panel.requested.value = 512; panel.apply()``, ``panel.reboot()``,
``panel.run(60)``), with deterministic results.  The callbacks only call
the machine's public API; there is no model logic here.
"""

from __future__ import annotations

import html
import time
from typing import Any

import ipywidgets as widgets
import numpy as np

from ..constants import MiB, errname, format_size
from ..memory_hotplug import ONLINE_TYPES
from ..virtio_mem_driver import RUN_WQ_ACTIONS
from .render import HeatmapRenderer, PlugSeriesRenderer
from .vmemgrid import subblock_summary
from .vmemseries import PlugRecorder
from .widgets import css_classes, label_html, natural_width, pre_html

AUTO_ONLINE = "/sys/devices/system/memory/auto_online_blocks"
WORKLOADS = ("page_cache", "anon", "tmpfs", "ramfs", "slab", "kernel", "page_tables", "pin")
# Sized to be shown at their natural size (one figure pixel per screen pixel) in a
# notebook's output area at a 1400 px wide window: the maps sit side by side where
# there is room and one above the other where not, never shrunk below it.
PANEL_FIGSIZE = {"heatmap": (5.3, 4.8), "subblock": (4.3, 4.8), "series": (9.6, 2.6)}
MEMINFO_HEAD = 8


def qemu_size(nbytes: int) -> str:
    """A size as QEMU's monitor takes it: "2G", "384M", "0"."""
    for unit, suffix in ((1 << 40, "T"), (1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")):
        if nbytes and nbytes % unit == 0:
            return f"{nbytes // unit}{suffix}"
    return str(nbytes)


def _device(machine: Any, device: Any) -> Any:
    devices = list(machine.virtio_mem)
    if not devices:
        raise ValueError("the machine has no virtio-mem device: m.add_virtio_mem(...) first")
    if device is None:
        return devices[0]
    if isinstance(device, str):
        for d in devices:
            if d.name == device:
                return d
        raise ValueError(f"device={device!r} is not one of {[d.name for d in devices]}")
    if isinstance(device, int) and not isinstance(device, bool) and 0 <= device < len(devices):
        return devices[device]
    if device in devices:
        return device
    raise ValueError(f"device={device!r} is not a virtio-mem device of this machine")


class HypervisorPanel(widgets.VBox):
    """Host and guest controls for one virtio-mem device of a live machine."""

    def __init__(self, machine: Any, device: Any = None, *, zoom: str = "pageblock",
                 content: bool = False, run_seconds: float = 60.0, amount_mib: int = 256,
                 workloads: tuple[str, ...] = WORKLOADS, dmesg_lines: int = 8,
                 settle: bool = True) -> None:
        self.m = machine
        self.dev = _device(machine, device)
        self.dmesg_lines = dmesg_lines
        self.settle_after = settle
        self._syncing = False
        self.activities: list[Any] = []
        self.last_action = "(none yet)"
        self.last_rc: int | None = None
        self.timings = {"model": 0.0, "view": 0.0}
        self.recorder = PlugRecorder()
        self.recorder.record(machine)
        self.heatmap = HeatmapRenderer(machine, zoom, figsize=PANEL_FIGSIZE["heatmap"],
                                       title="guest physical memory", legend="below")
        self.subblocks = HeatmapRenderer(machine, "subblock", device=self.dev.name,
                                         content=content, figsize=PANEL_FIGSIZE["subblock"],
                                         legend="below")
        self.chart = PlugSeriesRenderer(self.recorder.series(self.dev.name),
                                        figsize=PANEL_FIGSIZE["series"])
        self._make_host_controls()
        self._make_guest_controls(run_seconds, amount_mib, workloads)
        self._make_views()
        super().__init__(children=[
            widgets.HTML(f"<b>host</b>: QEMU device <code>{html.escape(self.dev.name)}</code>"),
            widgets.HBox([self.requested, self.requested_label, self.apply_button,
                          self.reboot_button]),
            widgets.HTML("<b>guest</b>: memory hotplug settings, workloads, time"),
            widgets.HBox([self.online_policy, self.auto_online]),
            widgets.HBox([self.kind, self.amount, self.allocate_button, self.start_button,
                          self.stop_button, self.release_button]),
            widgets.HBox([self.seconds, self.run_button, self.settle_button]),
            widgets.HBox([self.heatmap_image, self.subblock_image],
                         layout=widgets.Layout(flex_flow="row wrap")),
            self.series_image,
            widgets.HBox([widgets.VBox([self.status], layout=widgets.Layout(width="50%")),
                          widgets.VBox([self.kernel_log], layout=widgets.Layout(width="50%"))])])
        css_classes({self: "panel", self.requested: "requested", self.status: "status",
                  self.heatmap_image: "heatmap", self.subblock_image: "subblocks",
                  self.series_image: "series", self.kernel_log: "dmesg"})
        self.refresh()

    # -- construction ----------------------------------------------------------
    def _make_host_controls(self) -> None:
        dev = self.dev
        self.requested = widgets.IntSlider(
            value=dev.requested_size // dev.block_size, min=0,
            max=dev.region_size // dev.block_size, step=1, description="requested",
            continuous_update=False, readout=True,
            layout=widgets.Layout(width="420px"),
            tooltip="requested-size in device blocks")
        self.requested_label = widgets.HTML()
        self.apply_button = widgets.Button(description="qom-set", icon="upload",
                                           tooltip="qom-set vmem requested-size",
                                           layout=widgets.Layout(width="8em"))
        self.reboot_button = widgets.Button(description="reboot", icon="refresh",
                                            tooltip="system_reset: QEMU unplugs everything",
                                            layout=widgets.Layout(width="8em"))
        self.requested.observe(lambda _: self._show_requested(), names="value")
        self.apply_button.on_click(lambda _: self.apply())
        self.reboot_button.on_click(lambda _: self.reboot())
        self._show_requested()

    def _make_guest_controls(self, run_seconds: float, amount_mib: int,
                             workloads: tuple[str, ...]) -> None:
        m = self.m
        self.online_policy = widgets.Dropdown(options=list(m.profile.online_policies),
                                              value=m.online_policy, description="online_policy",
                                              style={"description_width": "initial"})
        self.auto_online = widgets.Dropdown(options=list(ONLINE_TYPES),
                                            value=m.auto_online_blocks,
                                            description="auto_online_blocks",
                                            style={"description_width": "initial"})
        self.online_policy.observe(self._on_policy, names="value")
        self.auto_online.observe(self._on_auto_online, names="value")
        self.kind = widgets.Dropdown(options=list(workloads), value=workloads[0],
                                     description="workload",
                                     layout=widgets.Layout(width="220px"))
        self.amount = widgets.BoundedIntText(value=amount_mib, min=1, max=1 << 20,
                                             description="MiB",
                                             layout=widgets.Layout(width="150px"))
        self.allocate_button = widgets.Button(description="allocate",
                                              tooltip="allocate MiB of this kind now")
        self.start_button = widgets.Button(description="start", icon="play",
                                           tooltip="keep allocating MiB per second")
        self.stop_button = widgets.Button(description="stop", icon="stop",
                                          tooltip="stop the background activities")
        self.release_button = widgets.Button(description="release", icon="trash",
                                             tooltip="free what the panel allocated")
        for b in (self.allocate_button, self.start_button, self.stop_button,
                  self.release_button):
            b.layout = widgets.Layout(width="7.5em")
        self.allocate_button.on_click(lambda _: self.allocate())
        self.start_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.release_button.on_click(lambda _: self.release())
        self.seconds = widgets.BoundedFloatText(value=run_seconds, min=0.0, max=1e6, step=10.0,
                                                description="seconds",
                                                layout=widgets.Layout(width="180px"))
        self.run_button = widgets.Button(description="run", icon="forward",
                                         tooltip="advance the simulated clock",
                                         layout=widgets.Layout(width="7.5em"))
        self.settle_button = widgets.Button(description="settle", icon="check",
                                            tooltip="run until no work is left now",
                                            layout=widgets.Layout(width="7.5em"))
        self.run_button.on_click(lambda _: self.run())
        self.settle_button.on_click(lambda _: self.settle())

    def _make_views(self) -> None:
        self.heatmap_image, self.subblock_image, self.series_image = (
            widgets.Image(format="png", layout=natural_width(r.figure))
            for r in (self.heatmap, self.subblocks, self.chart))
        scroll = {"max_height": "26em", "overflow": "auto", "min_width": "0"}
        self.status = widgets.HTML(layout=widgets.Layout(**scroll))
        self.kernel_log = widgets.HTML(layout=widgets.Layout(**scroll))

    # -- the host ------------------------------------------------------------------
    @property
    def requested_bytes(self) -> int:
        """The slider's value in bytes."""
        return int(self.requested.value) * self.dev.block_size

    def _show_requested(self) -> None:
        size = self.requested_bytes
        self.requested_label.value = label_html(f"= {format_size(size) if size else '0'}")

    def apply(self, blocks: int | None = None) -> None:
        """qom-set the slider's requested-size (or ``blocks`` device blocks), then settle."""
        if blocks is not None:
            self.requested.value = int(blocks)
        size = self.requested_bytes
        self._act(f"qom-set {self.dev.name} requested-size {qemu_size(size)}",
                  lambda: setattr(self.dev, "requested_size", size))

    def reboot(self) -> None:
        """system_reset: every virtio-mem device unplugs all, the guest boots again."""
        def do() -> None:
            for act in self.activities:
                act.stop()
            self.activities = []
            self.m.reboot()
        self._act("system_reset (reboot)", do)

    # -- guest settings ------------------------------------------------------------
    def set_online_policy(self, policy: str) -> None:
        """memory_hotplug.online_policy: used for memory onlined from now on."""
        if policy not in self.m.profile.online_policies:
            raise ValueError(f"policy={policy!r} is not one of "
                             f"{list(self.m.profile.online_policies)} (Linux "
                             f"{self.m.profile.name})")
        if self.online_policy.value != policy:
            self.online_policy.value = policy      # the observer comes back here
            return
        path = "/sys/module/memory_hotplug/parameters/online_policy"
        self._act(f"echo {policy} > {path}", lambda: self.m.sysfs.write(path, policy),
                  settle=False)

    def _on_policy(self, change: dict[str, Any]) -> None:
        if not self._syncing:
            self.set_online_policy(change["new"])

    def _on_auto_online(self, change: dict[str, Any]) -> None:
        if not self._syncing:
            self.set_auto_online(change["new"])

    def set_auto_online(self, value: str) -> None:
        """echo VALUE > /sys/devices/system/memory/auto_online_blocks."""
        if self.auto_online.value != value:
            self.auto_online.value = value         # the observer comes back here
            return
        self._act(f"echo {value} > {AUTO_ONLINE}",
                  lambda: self.m.sysfs.write(AUTO_ONLINE, value), settle=False)

    # -- workloads -----------------------------------------------------------------
    def _amount(self) -> int:
        return int(self.amount.value) * MiB

    def allocate(self, kind: str | None = None, mib: int | None = None) -> None:
        """Allocate ``mib`` MiB of ``kind`` in the guest now (the dropdown's by default)."""
        kind, size = self._workload(kind, mib)
        self._act(f"allocate {format_size(size)} of {kind}",
                  lambda: self.activities.append(self.m.activity(kind, size=size)))

    def start(self, kind: str | None = None, mib: int | None = None) -> None:
        """Start a background activity allocating ``mib`` MiB per simulated second."""
        kind, size = self._workload(kind, mib)
        self._act(f"start {kind} at {format_size(size)}/s",
                  lambda: self.activities.append(self.m.start_activity(kind, rate=size)))

    def stop(self) -> None:
        """Stop every background activity the panel started (they keep their memory)."""
        def do() -> None:
            for act in self.activities:
                act.stop()
        self._act("stop the background activities", do, settle=False)

    def release(self) -> None:
        """Stop and free everything the panel allocated (rm, munmap, exit)."""
        def do() -> None:
            for act in self.activities:
                act.stop()
                act.release(1.0)
            self.activities = []
        self._act("release the panel's memory", do)

    def _workload(self, kind: str | None, mib: int | None) -> tuple[str, int]:
        if kind is not None:
            self.kind.value = kind
        if mib is not None:
            self.amount.value = int(mib)
        return self.kind.value, self._amount()

    # -- time ------------------------------------------------------------------------
    def settle(self) -> None:
        """Run until the guest has no work left to do now."""
        self._act("settle", lambda: None)

    def run(self, seconds: float | None = None) -> None:
        """Advance the simulated clock by ``seconds`` (timers fire), sampling as it goes."""
        if seconds is not None:
            self.seconds.value = float(seconds)
        seconds = float(self.seconds.value)
        self._act(f"run {seconds:g} s", lambda: self._run_sampled(seconds), settle=False)

    def _run_sampled(self, seconds: float) -> None:
        """m.run(seconds) in up to 200 slices, one sample after each (same events, same order)."""
        slices = max(1, min(200, int(np.ceil(seconds))))
        start = self.m.now
        for i in range(1, slices + 1):
            self.m.run(max(0.0, start + seconds * i / slices - self.m.now))
            self.recorder.record(self.m)

    # -- the one path every action takes ------------------------------------------------
    def _act(self, what: str, fn: Any, settle: bool | None = None) -> None:
        """Do ``fn`` (0/-errno or None), settle, record a sample, redraw."""
        t = time.perf_counter()
        try:
            rc = fn()
        except ValueError as err:           # a value the model refuses: say so
            rc = None
            what = f"{what}: refused ({err})"
        self.last_rc = rc if isinstance(rc, int) else None
        self.last_action = what + (f" -> {errname(rc)}" if isinstance(rc, int) else "")
        if self.settle_after if settle is None else settle:
            self.m.settle()
        self.recorder.record(self.m)
        self.timings["model"] = time.perf_counter() - t
        self.refresh()

    def refresh(self) -> None:
        """Redraw every view from the machine as it is now (in place)."""
        t = time.perf_counter()
        self.heatmap_image.value = self.heatmap.update(self.m)
        self.subblock_image.value = self.subblocks.update(self.m)
        self.series_image.value = self.chart.update(self.recorder.series(self.dev.name))
        self.status.value = pre_html(self.status_text())
        self.kernel_log.value = pre_html(self.log_text())
        self._syncing = True          # show the machine's settings without acting on them
        try:
            self.requested.value = self.dev.requested_size // self.dev.block_size
            self.online_policy.value = self.m.online_policy
            self.auto_online.value = self.m.auto_online_blocks
        finally:
            self._syncing = False
        self.timings["view"] = time.perf_counter() - t

    # -- text (what nbval and tests compare) ---------------------------------------------
    def status_text(self) -> str:
        """Sizes, the driver's state and last return code, info memory-devices."""
        dev, drv, m = self.dev, self.dev.driver, self.m
        rc = drv.last_rc
        meaning = ("not run yet" if rc is None else
                   f"{errname(rc)}: {RUN_WQ_ACTIONS.get(rc, 'device marked broken')}")
        lines = [f"t = {m.now:.3f} s (simulated)",
                 f"last action: {self.last_action}",
                 f"{dev.name}: requested-size {_size(dev.requested_size)}, "
                 f"size (plugged) {_size(dev.size)}, usable region "
                 f"{_size(dev.usable_region_size)} of {_size(dev.region_size)}",
                 f"driver: {drv.mode.name if drv.mode else 'not bound'}, "
                 f"{drv.passes} passes, last rc {meaning}",
                 "retry timer: " + (f"fires at t = {drv.timer_due:.1f} s, "
                                    f"next wait {drv.retry_timer_ms // 1000} s"
                                    if drv.timer_due is not None else "not armed")
                 + (", BROKEN" if drv.broken else ""),
                 f"online_policy {m.online_policy}, auto_online_blocks {m.auto_online_blocks}",
                 "", "(qemu) info memory-devices", dev.info().rstrip()]
        return "\n".join(lines) + "\n"

    def log_text(self) -> str:
        """The last kernel messages and the head of /proc/meminfo."""
        dmesg = self.m.dmesg().splitlines()[-self.dmesg_lines:]
        meminfo = self.m.proc.meminfo().splitlines()[:MEMINFO_HEAD]
        return "\n".join([f"dmesg | tail -{self.dmesg_lines}", *dmesg, "",
                          f"head -{MEMINFO_HEAD} /proc/meminfo", *meminfo]) + "\n"

    def summary(self) -> str:
        """The status and the subblock map as text (print it beside the panel)."""
        return self.status_text() + "\n" + subblock_summary(self.subblocks.grid)

    def __repr__(self) -> str:
        d = self.dev
        return (f"HypervisorPanel({d.name}: requested-size {_size(d.requested_size)}, "
                f"size {_size(d.size)}, t={self.m.now:.1f} s)")


def _size(nbytes: int) -> str:
    return format_size(nbytes) if nbytes else "0"
