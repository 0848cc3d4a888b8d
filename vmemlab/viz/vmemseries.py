"""Plugged vs requested over simulated time: samples of each virtio-mem device.

A ``PlugRecorder`` keeps ``(time, requested-size, size, usable region)``
per device, the three numbers QEMU's ``info memory-devices`` and the
device config show, from live machines (``record(m)`` after each step of a
run) or from recorded frames (``extend(trace.frames)``).  ``series(dev)``
gives them as arrays, ``plug_summary`` as the text table that goes beside
the chart (``vmemlab.viz.subblocks.draw_plug_series``).  Numpy only.

QEMU: hw/virtio/virtio-mem.c (requested-size, size, usable_region_size)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..constants import GiB, MiB
from .fragdata import timeseries_summary
from .source import vmem_views


@dataclass(frozen=True)
class VmemSeries:
    """One device's sizes over time, in bytes (``time`` in simulated seconds)."""

    device: str
    time: np.ndarray
    requested: np.ndarray
    plugged: np.ndarray
    usable: np.ndarray
    region_size: int

    def __len__(self) -> int:
        return int(self.time.size)

    def gap(self) -> np.ndarray:
        """size - requested-size at each sample: > 0 while the guest has not given back enough."""
        return self.plugged - self.requested


def _time_of(src: Any) -> float:
    for name in ("now", "time"):
        t = getattr(src, name, None)
        if isinstance(t, (int, float)):
            return float(t)
    return 0.0


class PlugRecorder:
    """Samples of every virtio-mem device, in the order they were recorded."""

    def __init__(self) -> None:
        self._rows: dict[str, list[tuple[float, int, int, int]]] = {}
        self._region: dict[str, int] = {}

    @property
    def devices(self) -> list[str]:
        return list(self._rows)

    def __len__(self) -> int:
        return max((len(r) for r in self._rows.values()), default=0)

    def record(self, src: Any, time: float | None = None) -> None:
        """One sample of each device of a Machine (now), Snapshot or Frame.

        A sample at the same time as the device's last one replaces it, so
        recording twice at one instant keeps the latest values.
        """
        t = _time_of(src) if time is None else float(time)
        for v in vmem_views(src):
            shift = _page_shift(src)
            row = (t, int(v.requested_size), int(v.plugged_size), int(v.usable_pages) << shift)
            rows = self._rows.setdefault(v.name, [])
            self._region[v.name] = int(v.nr_pages) << shift
            if rows and t < rows[-1][0]:
                raise ValueError(f"{v.name}: time went back from {rows[-1][0]} to {t} s")
            if rows and rows[-1][0] == t:
                rows[-1] = row
            else:
                rows.append(row)

    def extend(self, items: Iterable[Any]) -> None:
        """Record each frame, snapshot or machine of ``items`` (frames without state skipped)."""
        for item in items:
            if hasattr(item, "events") and getattr(item, "state", None) is None:
                continue
            self.record(item)

    def series(self, device: int | str = 0) -> VmemSeries:
        """The samples of one device (by index or name) as arrays."""
        if isinstance(device, str):
            if device not in self._rows:
                raise ValueError(f"device={device!r} is not one of {self.devices}")
            name = device
        elif isinstance(device, int) and not isinstance(device, bool) \
                and 0 <= device < len(self._rows):
            name = self.devices[device]
        else:
            raise ValueError(f"device={device!r}: the recorder has {self.devices}")
        a = np.array(self._rows[name], dtype=np.float64).reshape(-1, 4)
        return VmemSeries(name, a[:, 0], a[:, 1].astype(np.int64), a[:, 2].astype(np.int64),
                          a[:, 3].astype(np.int64), self._region[name])


def _page_shift(src: Any) -> int:
    geo = getattr(src, "geometry", None) or getattr(src, "geo", None)
    if geo is None and getattr(src, "state", None) is not None:
        geo = getattr(src.state, "geo", None)
    return int(geo.page_shift) if geo is not None else 12


def plug_series(items: Iterable[Any], device: int | str = 0) -> VmemSeries:
    """The series of one device over frames, snapshots or machines."""
    rec = PlugRecorder()
    rec.extend(items)
    return rec.series(device)


def plug_summary(series: VmemSeries, unit: str | None = None, max_rows: int = 40) -> str:
    """A table: time, requested-size, size and usable region (MiB or GiB) per sample.

    Runs of samples longer than ``max_rows`` keep their first and last rows.
    """
    unit = unit or ("GiB" if series.region_size >= 4 * GiB else "MiB")
    scale = {"MiB": MiB, "GiB": GiB}.get(unit)
    if scale is None:
        raise ValueError(f"unit={unit!r} is not one of ['MiB', 'GiB']")
    idx = np.arange(len(series))
    if len(idx) > max_rows:
        half = max_rows // 2
        idx = np.concatenate([idx[:half], idx[-half:]])
    text = timeseries_summary(series.time[idx].tolist(), {
        f"requested ({unit})": (series.requested[idx] / scale).tolist(),
        f"size ({unit})": (series.plugged[idx] / scale).tolist(),
        f"usable ({unit})": (series.usable[idx] / scale).tolist()})
    head = f"{series.device}: {len(series)} samples\n"
    if len(idx) < len(series):
        lines = text.splitlines()
        lines.insert(1 + max_rows // 2, f"{'...':>10}")
        text = "\n".join(lines) + "\n"
    return head + text
