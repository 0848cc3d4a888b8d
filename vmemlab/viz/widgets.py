"""Step-through widgets over recorded frames.

``TraceViewer(trace)`` replays a ``vmemlab.trace.Trace`` (or the trace of a
machine built with ``trace=True``, or a list of frames): a Play button
linked (``jslink``, in the browser) to a step slider, back/forward buttons,
the heatmap of the step's state (one image, updated in place and sent as
PNG bytes), the step's trace events, and its ``/proc`` text.  Callbacks only
pick a frame and show what it recorded; there is no model logic here.

``zoom="subblock"`` replays one virtio-mem device's subblock map instead
(``device=`` picks it, ``content=True`` shows what plugged subblocks hold);
every frame must then carry the device (frames record it once the device
exists: call ``m.step()`` after ``m.add_virtio_mem()``).

Tests drive it from Python: set ``viewer.slider.value`` (or call
``viewer.step(+1)``) and read ``viewer.image.value`` and
``viewer.renderer.grid``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from typing import Any

import ipywidgets as widgets

from ..constants import format_size
from .grid import heatmap_summary
from .render import HeatmapRenderer
from .source import vmem_views
from .vmemgrid import subblock_summary

PROC_FILES = ("buddyinfo", "meminfo")


# Text panes keep the kernel's layout: a fixed-width font named outright (an inline
# style, so neither JupyterLab's nor Voila's stylesheets can swap it), no wrapping
# (long lines scroll sideways), and no size below 12 px.
PRE_STYLE = ("margin:0; font-size:12px; line-height:1.3; white-space:pre; overflow-x:auto; "
             "font-family:'DejaVu Sans Mono', Menlo, Consolas, 'Liberation Mono', monospace")
LABEL_STYLE = "white-space:nowrap; font-size:13px"


def natural_width(figure: Any, shrink: bool = True) -> widgets.Layout:
    """An image layout at the figure's own pixel width; ``shrink`` lets it narrow to fit
    its box, else its row scrolls sideways."""
    width = f"{int(round(figure.get_figwidth() * figure.dpi))}px"
    if shrink:
        return widgets.Layout(width=width, max_width="100%", height="auto")
    return widgets.Layout(width=width, min_width=width, flex="0 0 auto", height="auto")


def pre_html(text: str) -> str:
    """Text as a <pre> block that never wraps and always uses a fixed-width font."""
    return f'<pre style="{PRE_STYLE}">{html.escape(text)}</pre>'


def label_html(text: str) -> str:
    """A one-line label: never broken inside a word or between a number and its unit."""
    return f'<span style="{LABEL_STYLE}">{html.escape(nbsp_units(text))}</span>'


def nbsp_units(text: str) -> str:
    """Join numbers to their units (and "t =" to its value) with no-break spaces."""
    return re.sub(r"(\d) (?=[KMGT]i?B\b|s\b|ms\b|events\b|%)|(=) (?=\d)", "\\1\\2\u00a0", text)


class TraceViewer(widgets.VBox):
    """Play, step and inspect the frames of a trace."""

    def __init__(self, trace: Any, zoom: str = "pageblock", *, proc: str = "buddyinfo",
                 interval: int = 600, max_events: int = 200, title: str | None = None,
                 **heatmap_kw: Any) -> None:
        self.frames = _frames(trace)
        self._state_at = _state_indices(self.frames)
        self.max_events = max_events
        first = self.frames[self._state_at[0]]
        if zoom == "subblock":
            _check_devices(self.frames, self._state_at)
        options = _proc_options(first.state)
        if proc not in options:
            raise ValueError(f"proc={proc!r} is not one of {list(options)}")
        self.renderer = HeatmapRenderer(first, zoom, title=title, **heatmap_kw)
        self._make_controls(len(self.frames) - 1, interval)
        self._make_panes(options, proc)
        super().__init__(children=[
            widgets.HBox([self.play, self.back, self.forward, self.slider]),
            self.caption, self.image,
            widgets.HBox([
                widgets.VBox([widgets.HTML("<b>events of this step</b>"), self.events],
                             layout=widgets.Layout(width="55%")),
                widgets.VBox([self.proc_choice, self.proc],
                             layout=widgets.Layout(width="45%"))])])
        css_classes({self: "trace-viewer", self.caption: "caption", self.image: "heatmap",
                  self.events: "events", self.proc: "proc", self.slider: "step"})
        self.show(0)

    def _make_controls(self, last: int, interval: int) -> None:
        """Play jslinked to the slider (in the browser), and step buttons."""
        self.play = widgets.Play(value=0, min=0, max=last, step=1, interval=interval,
                                 description="play")
        self.slider = widgets.IntSlider(value=0, min=0, max=last, description="step",
                                        continuous_update=False)
        self.link = widgets.jslink((self.play, "value"), (self.slider, "value"))
        self.back = widgets.Button(description="back", icon="step-backward",
                                   layout=widgets.Layout(width="7em"))
        self.forward = widgets.Button(description="forward", icon="step-forward",
                                      layout=widgets.Layout(width="7em"))
        self.slider.observe(self._on_step, names="value")
        self.back.on_click(lambda _: self.step(-1))
        self.forward.on_click(lambda _: self.step(+1))

    def _make_panes(self, options: tuple[str, ...], proc: str) -> None:
        """The caption, the heatmap image, the events pane and the /proc pane."""
        scroll = {"max_height": "16em", "overflow": "auto", "min_width": "0"}
        self.caption = widgets.HTML()
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="100%"))
        self.events = widgets.HTML(layout=widgets.Layout(**scroll))
        self.proc_choice = widgets.ToggleButtons(options=options, value=proc,
                                                 style={"button_width": "auto"})
        self.proc = widgets.HTML(layout=widgets.Layout(**scroll))
        self.proc_choice.observe(self._on_proc, names="value")

    # -- navigation ------------------------------------------------------
    @property
    def index(self) -> int:
        """The step shown."""
        return int(self.slider.value)

    def step(self, delta: int) -> None:
        """Move ``delta`` steps (clamped to the recorded frames)."""
        self.slider.value = min(max(self.index + delta, 0), len(self.frames) - 1)

    def show(self, index: int) -> None:
        """Show frame ``index``: heatmap, caption, events and /proc text."""
        self.image.value = self.renderer.update(self.frames[self._state_at[index]])
        self.caption.value = label_html(self.caption_text(index))
        self.events.value = pre_html(self.events_text(index))
        self.proc.value = pre_html(self.proc_text(index))

    def _on_step(self, change: dict[str, Any]) -> None:
        self.show(int(change["new"]))

    def _on_proc(self, change: dict[str, Any]) -> None:
        self.proc.value = pre_html(self.proc_text(self.index))

    # -- text (what nbval and tests can compare) -------------------------
    def caption_text(self, index: int) -> str:
        frame = self.frames[index]
        text = (f"step {index}/{len(self.frames) - 1}: {frame.label or '(no label)'}"
                f" | t = {frame.time:.3f} s | {len(frame.events)} events")
        if self._state_at[index] != index:
            text += f" | memory as recorded at step {self._state_at[index]}"
        return text

    def events_text(self, index: int) -> str:
        events = self.frames[index].events
        lines = [str(e) for e in events[:self.max_events]]
        if len(events) > self.max_events:
            lines.append(f"... and {len(events) - self.max_events} more")
        return "\n".join(lines) if lines else "(no events)"

    def proc_text(self, index: int) -> str:
        state = self.frames[self._state_at[index]].state
        name = self.proc_choice.value
        text = getattr(state, name, None)
        if not isinstance(text, str):
            text = state.extra[name]
        return text

    def summary(self) -> str:
        """The caption and heatmap summary of the step shown (text for notebooks)."""
        state = self.frames[self._state_at[self.index]]
        grid = self.renderer.grid
        if grid.zoom == "subblock":
            return self.caption_text(self.index) + "\n" + subblock_summary(grid)
        return self.caption_text(self.index) + "\n" + heatmap_summary(grid, state)

    def __repr__(self) -> str:
        return f"TraceViewer({len(self.frames)} frames, step {self.index})"


def _frames(trace: Any) -> list[Any]:
    """The frames of a Trace, of a Machine's trace, or a list of frames."""
    if hasattr(trace, "node"):
        trace = getattr(trace.trace, "frames", [])
    frames = list(trace.frames if hasattr(trace, "frames") else trace)
    if not frames:
        raise ValueError("the trace has no frames: record with trace=True and call m.step()")
    return frames


def _state_indices(frames: Iterable[Any]) -> list[int]:
    """For each frame, the latest frame at or before it that kept a state."""
    out: list[int] = []
    last = None
    for i, f in enumerate(frames):
        if f.state is not None:
            last = i
        out.append(last if last is not None else -1)
    if all(i < 0 for i in out):
        raise ValueError("no frame of the trace kept a state snapshot")
    first = next(i for i in out if i >= 0)
    return [i if i >= 0 else first for i in out]


def _check_devices(frames: list[Any], state_at: list[int]) -> None:
    """Every replayed state must carry virtio-mem data for the subblock zoom."""
    for i in sorted(set(state_at)):
        if not vmem_views(frames[i]):
            raise ValueError(f"frame {i} ({frames[i].label or 'no label'}) has no virtio-mem "
                             "device: record frames after m.add_virtio_mem()")


def _proc_options(state: Any) -> tuple[str, ...]:
    extra = [k for k, v in sorted(getattr(state, "extra", {}).items()) if isinstance(v, str)]
    return PROC_FILES + tuple(k for k in extra if k not in PROC_FILES)


class TraceComparison(widgets.VBox):
    """Replay two or more traces side by side, one step slider for all: what-if runs.

    ``traces`` maps a name (the policy, the kernel...) to a trace, a machine
    recorded with ``trace=True`` or a list of frames, recorded with the same
    steps (the same seed and the same workload, one setting changed).  Each
    gets its own image (``zoom`` and ``heatmap_kw`` as in TraceViewer, the
    subblock zoom included) and caption; the slider shows step ``i`` of
    every trace.  Tests set ``cmp.slider.value`` and read ``cmp.images``.
    """

    def __init__(self, traces: Any, zoom: str = "pageblock", *, interval: int = 900,
                 figsize: tuple[float, float] = (4.6, 4.6), **heatmap_kw: Any) -> None:
        items = list(traces.items()) if hasattr(traces, "items") else list(traces)
        if len(items) < 2:
            raise ValueError("compare at least two traces: pass {name: trace, ...}")
        self.names = [str(n) for n, _ in items]
        self.frames = {n: _frames(t) for n, (_, t) in zip(self.names, items, strict=True)}
        self.steps = min(len(f) for f in self.frames.values())
        self._state_at = {n: _state_indices(f) for n, f in self.frames.items()}
        if zoom == "subblock":
            for n in self.names:
                _check_devices(self.frames[n], self._state_at[n])
        self.renderers = {n: HeatmapRenderer(self.frames[n][self._state_at[n][0]], zoom,
                                             figsize=figsize, title=n, legend="below",
                                             **heatmap_kw)
                          for n in self.names}
        self.play = widgets.Play(value=0, min=0, max=self.steps - 1, step=1, interval=interval,
                                 description="play")
        self.slider = widgets.IntSlider(value=0, min=0, max=self.steps - 1, description="step",
                                        continuous_update=False)
        self.link = widgets.jslink((self.play, "value"), (self.slider, "value"))
        self.slider.observe(lambda c: self.show(int(c["new"])), names="value")
        self.images = {n: widgets.Image(format="png",
                                        layout=natural_width(self.renderers[n].figure,
                                                             shrink=False))
                       for n in self.names}
        self.captions = {n: widgets.HTML(layout=widgets.Layout(
            width=self.images[n].layout.width, overflow="hidden")) for n in self.names}
        self.table = widgets.HTML()
        super().__init__(children=[
            widgets.HBox([self.play, self.slider]),
            widgets.VBox([widgets.HBox([self.captions[n] for n in self.names]),
                          widgets.HBox([self.images[n] for n in self.names])],
                         layout=widgets.Layout(overflow="auto")),
            self.table])
        css_classes({self: "trace-comparison", self.slider: "step",
                  **{img: "heatmap" for img in self.images.values()},
                  **{cap: "caption" for cap in self.captions.values()}})
        self.show(0)

    @property
    def index(self) -> int:
        return int(self.slider.value)

    def show(self, index: int) -> None:
        """Show step ``index`` of every trace."""
        for n in self.names:
            frame = self.frames[n][self._state_at[n][index]]
            self.images[n].value = self.renderers[n].update(frame)
            self.captions[n].value = label_html(self.caption_text(n, index))
        self.table.value = pre_html(self.table_text(index))

    def caption_text(self, name: str, index: int) -> str:
        frame = self.frames[name][index]
        return f"{name}, step {index}/{self.steps - 1}: {frame.label or '(no label)'}"

    def table_text(self, index: int) -> str:
        """One row per trace: the step's time and each virtio-mem device's sizes."""
        rows = []
        width = max(len(n) for n in self.names)
        for n in self.names:
            frame = self.frames[n][self._state_at[n][index]]
            sizes = ", ".join(f"{v.name} size {_mib(v.plugged_size)} of requested "
                              f"{_mib(v.requested_size)}" for v in vmem_views(frame))
            rows.append(f"{n:<{width}}  t = {self.frames[n][index].time:9.3f} s  "
                        + (sizes or "(no virtio-mem device)"))
        return "\n".join(rows)

    def summary(self) -> str:
        """The captions and the table of the step shown (text for notebooks)."""
        return "\n".join(self.caption_text(n, self.index) for n in self.names) + "\n" + \
            self.table_text(self.index) + "\n"

    def __repr__(self) -> str:
        return (f"TraceComparison({', '.join(self.names)}: {self.steps} steps, "
                f"step {self.index})")


def _mib(nbytes: int) -> str:
    return format_size(nbytes) if nbytes else "0"


def css_classes(parts: dict[Any, str]) -> None:
    """CSS classes ``vmemlab-<name>``: stable hooks for styling and browser tests."""
    for widget, name in parts.items():
        widget.add_class(f"vmemlab-{name}")
