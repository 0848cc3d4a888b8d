"""A snapshot of a real Linux machine's physical memory, read-only.

    from vmemlab.snapshot import load_snapshot, read_snapshot
    snap = read_snapshot()                  # the live machine, or read_snapshot("copied-tree/")
    print(snap.proc.buddyinfo())            # the same views as a simulated m.proc
    snap.pages.state                        # PageState per pfn, from /proc/kpageflags
    snap.save("box.npz")
    assert load_snapshot("box.npz") == snap

``read_snapshot`` reads /proc/buddyinfo, /proc/pagetypeinfo, /proc/zoneinfo,
/proc/meminfo, /sys/devices/system/memory and, where readable (root only),
/proc/kpageflags.  It never writes anything under /proc or /sys.  A part
that cannot be read or parsed is listed in ``snap.problems`` with the
reason; asking for its view raises ``MissingPart`` saying why.

A snapshot keeps the raw texts and kpageflags words it read; everything
else (parsed data, views, page arrays) is derived from them, so a saved
snapshot loads back identical.  Saved layout: one ``.npz`` file holding
``metadata`` (UTF-8 JSON: format, version, meta, files, missing) and,
when read, ``kpageflags`` (little-endian uint64, one per pfn from pfn 0).

Kernel: mm/vmstat.c, fs/proc/meminfo.c, fs/proc/page.c, drivers/base/memory.c
"""

from __future__ import annotations

import datetime
import json
import os
import zipfile
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npformat

from .checks import WORKING_SET
from .constants import Geometry, MiB, PageKind, PageState
from .metrics import fragmentation_index_of, unusable_index
from .procfs import format_index_table
from .realmem import capture as _capture
from .realmem.capture import available_ram
from .realmem.kpageflags import flag_counts
from .realmem.pages import (
    PageArrays,
    block_page_counts,
    page_arrays,
    pageblock_zones,
    render_block_table,
    render_page_map,
    render_page_summary,
)
from .realmem.proctext import (
    parse_buddyinfo,
    parse_meminfo,
    parse_pagetypeinfo,
    parse_zoneinfo,
    render_buddyinfo,
    render_meminfo,
    render_pagetypeinfo,
    render_zoneinfo,
)
from .realmem.sysfs import MEMORY_DIR, MemorySysfs, parse_memory_sysfs, render_lsmem

SNAPSHOT_FORMAT = "vmemlab-snapshot"
PAGE_SIZES = tuple(1 << s for s in range(12, 19))   # 4 KiB .. 256 KiB, as Linux builds them
MAX_METADATA_BYTES = 64 << 20       # the saved texts of /proc and /sys, with ample room
MAX_KPAGEFLAGS_PFNS = 1 << 28       # 1 TiB of 4 KiB pages
SNAPSHOT_VERSION = 1
MT_UNKNOWN = 255   # pb_mt of a real machine: kpageflags does not show pageblock types
PARTS = {"buddyinfo": "/proc/buddyinfo", "pagetypeinfo": "/proc/pagetypeinfo",
         "zoneinfo": "/proc/zoneinfo", "meminfo": "/proc/meminfo", "memory": MEMORY_DIR,
         "kpageflags": _capture.KPAGEFLAGS}
_PARSERS = {"buddyinfo": parse_buddyinfo, "pagetypeinfo": parse_pagetypeinfo,
            "zoneinfo": parse_zoneinfo, "meminfo": parse_meminfo}


class MissingPart(LookupError):
    """A view was asked of a part the snapshot lacks; the message says why."""


class SnapshotFileError(ValueError):
    """A file that is not a readable vmemlab snapshot; the message names it."""


def read_snapshot(root: str | Path = "/", max_pfns: int | None = None,
                  kpageflags: bool = True, page_size: int | None = None) -> RealSnapshot:
    """Read a machine (``root="/"``) or a directory tree laid out like one.

    ``max_pfns`` limits /proc/kpageflags to the first pfns (a large box stays
    fast); ``kpageflags=False`` skips it.  ``page_size`` defaults to this
    machine's for "/" and to 4096 for another root.
    """
    live = Path(root).resolve() == Path("/")
    page_size = default_page_size(root) if page_size is None else page_size
    cap = _capture.capture(root, max_pfns, kpageflags, page_size)
    meta = {"root": str(root), "live": live, "page_size": page_size, "max_pfns": max_pfns,
            "captured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds")}
    return RealSnapshot(cap.files, cap.kpageflags, cap.missing, meta)


def default_page_size(root: str | Path = "/") -> int:
    """This machine's page size for "/", 4096 for any other root."""
    return os.sysconf("SC_PAGE_SIZE") if Path(root).resolve() == Path("/") else 4096


def load_snapshot(path: str | Path) -> RealSnapshot:
    """Load what ``RealSnapshot.save`` wrote; SnapshotFileError names a bad file."""
    return RealSnapshot.load(path)


class RealSnapshot:
    """The memory state of a real machine at one moment, with the views of ``m.proc``."""

    def __init__(self, files: dict[str, str], kpageflags: np.ndarray | None = None,
                 missing: dict[str, str] | None = None,
                 meta: dict[str, Any] | None = None) -> None:
        self.files = dict(files)
        self.kpageflags = None if kpageflags is None else np.asarray(kpageflags, np.uint64)
        if self.kpageflags is not None and self.kpageflags.ndim != 1:
            raise ValueError(f"kpageflags has shape {self.kpageflags.shape}; expected one "
                             "word per pfn (1-D)")
        self.missing = dict(missing or {})
        self.meta = dict(meta or {})
        problem = check_meta(self.meta)
        if problem:
            raise ValueError(f"meta.{problem}")
        self.page_size = int(self.meta.get("page_size", 4096))
        self.problems: dict[str, str] = dict(self.missing)
        self.parsed: dict[str, Any] = {}
        self._parse()
        self.proc = SnapshotProc(self)

    def _parse(self) -> None:
        for part, parser in _PARSERS.items():
            path = PARTS[part]
            if path in self.files:
                try:
                    self.parsed[part] = parser(self.files[path], path)
                except ValueError as e:
                    self.problems[path] = f"unparsable: {e}"
        if MEMORY_DIR not in self.missing:
            try:
                self.parsed["memory"] = parse_memory_sysfs(self.files, self.page_size)
            except ValueError as e:
                self.problems[MEMORY_DIR] = f"unparsable: {e}"
        if self.kpageflags is not None:
            self.parsed["kpageflags"] = self.kpageflags

    # -- parts ---------------------------------------------------------------
    def has(self, part: str) -> bool:
        """Whether ``part`` (a key of PARTS) was read and parsed."""
        return part in self.parsed

    def part(self, part: str) -> Any:
        """The parsed data of ``part``, or MissingPart saying why it is absent."""
        if part not in PARTS:
            raise ValueError(f"part={part!r} is not one of {sorted(PARTS)}")
        if part not in self.parsed:
            path = PARTS[part]
            why = self.problems.get(path, "not read")
            raise MissingPart(f"{path} is not in this snapshot: {why}")
        return self.parsed[part]

    @property
    def kernel(self) -> str:
        """The kernel release (/proc/sys/kernel/osrelease), or "unknown"."""
        return self.files.get("/proc/sys/kernel/osrelease", "unknown").strip()

    @property
    def memory(self) -> MemorySysfs:
        return self.part("memory")

    # -- pages ---------------------------------------------------------------
    @cached_property
    def pages(self) -> PageArrays:
        """Page state, kind and flag arrays from /proc/kpageflags (see realmem.pages)."""
        blocks = self.memory.blocks if self.has("memory") else None
        return page_arrays(self.part("kpageflags"), blocks)

    def block_page_counts(self) -> np.ndarray:
        """Pages per PageState (columns) in each memory block (rows); -1 beyond kpageflags."""
        return block_page_counts(self.memory.blocks, self.pages.state)

    # -- geometry and the model's frame format -------------------------------
    @cached_property
    def geometry(self) -> Geometry:
        """The machine's sizes as a vmemlab Geometry (sections assumed 128 MiB if they fit)."""
        pb_order = self.part("pagetypeinfo").pageblock_order if self.has("pagetypeinfo") else 9
        if self.has("buddyinfo") and self.parsed["buddyinfo"]:
            max_order = len(self.parsed["buddyinfo"][0].nr_free) - 1
        else:
            max_order = 10
        block = self.memory.block_size if self.has("memory") else 128 * MiB
        section = 128 * MiB if block % (128 * MiB) == 0 else block
        return Geometry(name="real", page_shift=self.page_size.bit_length() - 1,
                         pageblock_order=pb_order, max_page_order=max_order,
                         section_size=section, memory_block_size=block, layout="real")

    def machine_snapshot(self) -> Any:
        """The pages as a ``vmemlab.machine.Snapshot``, the frame format viz draws.

        Arrays are padded with ABSENT pages to whole memory blocks.  ``pb_mt``
        is MT_UNKNOWN (255) everywhere: a real kernel does not export each
        pageblock's migratetype.  ``pb_zone`` comes from the zone spans in
        /proc/zoneinfo and the zones of online memory blocks.
        """
        from .machine import Snapshot

        geo, pages = self.geometry, self.pages
        per_block = geo.pages_per_memory_block
        n = -(-pages.nr_pfns // per_block) * per_block
        state, kind, flags = (np.zeros(n, np.uint8) for _ in range(3))
        state[:pages.nr_pfns], kind[:pages.nr_pfns] = pages.state, pages.kind
        flags[:pages.nr_pfns] = pages.flags
        nr_pb = n >> geo.pageblock_order
        return Snapshot(0.0, geo, state, kind, flags, np.full(nr_pb, MT_UNKNOWN, np.uint8),
                        pageblock_zones(nr_pb, geo.pageblock_order, self.parsed.get("zoneinfo"),
                                        self.memory.blocks if self.has("memory") else ()),
                        self._view("buddyinfo"), self._view("meminfo"),
                        {"source": "real", "kernel": self.kernel, **self.meta})

    def _view(self, name: str) -> str:
        try:
            return getattr(self.proc, name)()
        except MissingPart:
            return ""

    # -- text views ----------------------------------------------------------
    def page_map(self, start: int = 0, end: int | None = None, width: int = 64) -> str:
        """One character per page of [start, end), as ``Machine.page_map`` draws it."""
        return render_page_map(self.pages, start, end, width)

    def lsmem(self) -> str:
        """Memory blocks in runs of like blocks (range, size, state, node, zones)."""
        return render_lsmem(self.memory, self.page_size)

    def memory_block_table(self) -> str:
        """One line per memory block, with its pages by state where kpageflags covers it."""
        counts = self.block_page_counts() if self.has("kpageflags") else None
        return render_block_table(self.memory.blocks, counts)

    def page_summary(self) -> str:
        """Pages by state, allocated pages by kind, from /proc/kpageflags."""
        return render_page_summary(self.pages, self.part("kpageflags"), self.page_size)

    def summary(self) -> str:
        """Where the snapshot came from and which parts are absent, and why."""
        lines = [f"vmemlab snapshot of {self.meta.get('root', '?')}: Linux {self.kernel}, "
                 f"captured {self.meta.get('captured_at', '?')}, "
                 f"page size {self.page_size}"]
        present = [p for p in PARTS if self.has(p)]
        lines.append("parts: " + (", ".join(present) or "none"))
        problems = _group_problems(self.problems)
        lines += ["absent:"] + [f"  {path}: {why}" for path, why in problems] if problems \
            else ["absent: none"]
        return "\n".join(lines) + "\n"

    # -- plain data, saving, loading -----------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Everything parsed, as JSON-ready plain data (kpageflags as counts)."""
        out: dict[str, Any] = {"format": SNAPSHOT_FORMAT, "version": SNAPSHOT_VERSION,
                               "kernel": self.kernel, "meta": self.meta,
                               "problems": self.problems}
        for part in ("buddyinfo", "meminfo"):
            out[part] = [r._asdict() for r in self.parsed[part]] if self.has(part) else None
        for part in ("pagetypeinfo", "zoneinfo"):
            out[part] = asdict(self.parsed[part]) if self.has(part) else None
        if out["zoneinfo"] is not None:
            out["zoneinfo"]["absent"] = sorted(out["zoneinfo"]["absent"])
        out["memory"] = self._memory_dict() if self.has("memory") else None
        out["pages"] = self._pages_dict() if self.has("kpageflags") else None
        return out

    def _memory_dict(self) -> dict[str, Any]:
        mem = self.memory
        counts = self.block_page_counts() if self.has("kpageflags") else None
        blocks = []
        for i, b in enumerate(mem.blocks):
            d = asdict(b)
            if counts is not None and counts[i, 0] >= 0:
                d["pages"] = {s.name.lower(): int(counts[i, s]) for s in PageState}
            blocks.append(d)
        return {"block_size": mem.block_size, "auto_online_blocks": mem.auto_online_blocks,
                "blocks": blocks}

    def _pages_dict(self) -> dict[str, Any]:
        p = self.pages
        by_state = np.bincount(p.state, minlength=len(PageState))
        by_kind = np.bincount(p.kind[p.state == PageState.ALLOCATED],
                              minlength=max(PageKind) + 1)
        return {"nr_pfns": p.nr_pfns,
                "state": {s.name.lower(): int(by_state[s]) for s in PageState},
                "allocated_kind": {str(k): int(by_kind[k]) for k in PageKind if k},
                "kpageflags": flag_counts(self.kpageflags)}

    def save(self, path: str | Path) -> None:
        """Write one .npz file: ``metadata`` (JSON) and ``kpageflags`` (if read)."""
        doc = {"format": SNAPSHOT_FORMAT, "version": SNAPSHOT_VERSION, "meta": self.meta,
               "files": self.files, "missing": self.missing}
        arrays = {"metadata": np.frombuffer(json.dumps(doc).encode(), np.uint8)}
        if self.kpageflags is not None:
            arrays["kpageflags"] = self.kpageflags.astype("<u8")
        with open(path, "wb") as f:
            np.savez_compressed(f, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> RealSnapshot:
        """Read a file ``save`` wrote; SnapshotFileError names the file and the fault."""
        doc, words = _read_npz(path)
        _check_doc(doc, str(path))
        return cls(doc["files"], words, doc["missing"], doc["meta"])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RealSnapshot):
            return NotImplemented
        same_words = (self.kpageflags is None and other.kpageflags is None) or (
            self.kpageflags is not None and other.kpageflags is not None
            and np.array_equal(self.kpageflags, other.kpageflags))
        return (same_words and self.files == other.files and self.missing == other.missing
                and self.meta == other.meta)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"<RealSnapshot {self.meta.get('root', '?')} Linux {self.kernel}: "
                f"{', '.join(p for p in PARTS if self.has(p))}>")


class SnapshotProc:
    """``snap.proc``: the same text views as a simulated machine's ``m.proc``."""

    def __init__(self, snap: RealSnapshot) -> None:
        self.snap = snap

    def buddyinfo(self) -> str:
        """/proc/buddyinfo, re-rendered.  Kernel: mm/vmstat.c, frag_show_print()"""
        return render_buddyinfo(self.snap.part("buddyinfo"))

    def pagetypeinfo(self) -> str:
        """/proc/pagetypeinfo, re-rendered.  Kernel: mm/vmstat.c, pagetypeinfo_show()"""
        return render_pagetypeinfo(self.snap.part("pagetypeinfo"))

    def zoneinfo(self) -> str:
        """/proc/zoneinfo without per-CPU pagesets.  Kernel: mm/vmstat.c, zoneinfo_show_print()"""
        return render_zoneinfo(self.snap.part("zoneinfo"))

    def meminfo(self) -> str:
        """/proc/meminfo, re-rendered.  Kernel: fs/proc/meminfo.c, meminfo_proc_show()"""
        return render_meminfo(self.snap.part("meminfo"))

    def unusable_index(self) -> str:
        """debugfs extfrag/unusable_index, computed from buddyinfo.

        Kernel: mm/vmstat.c, unusable_show_print()
        """
        return self._index(unusable_index, 1)

    def extfrag_index(self) -> str:
        """debugfs extfrag/extfrag_index, computed from buddyinfo.

        Kernel: mm/vmstat.c, extfrag_show_print()
        """
        return self._index(fragmentation_index_of, 2)

    def _index(self, fn, width: int) -> str:
        rows = self.snap.part("buddyinfo")
        return format_index_table([(r.node, r.zone, [fn(r.nr_free, o)
                                                     for o in range(len(r.nr_free))])
                                   for r in rows], width)


def _read_npz(path: str | Path) -> tuple[Any, np.ndarray | None]:
    """The JSON document and the kpageflags words of a saved snapshot.

    Nothing is inflated before it is checked: the archive may hold only
    ``metadata.npy`` and ``kpageflags.npy``, each member's declared size
    must be within its limit, and each array header (dtype, shape) must say
    a 1-D array of the expected type that fills the member exactly.
    """
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":
                raise ValueError("not a zip archive")
        with zipfile.ZipFile(path) as z:
            members = {i.filename: i for i in z.infolist()}
            if "metadata.npy" not in members:
                raise KeyError("metadata")
            extra = sorted(set(members) - {"metadata.npy", "kpageflags.npy"})
            if extra:
                raise ValueError(f"unexpected entries {extra}")
            meta = _read_member(z, members["metadata.npy"], np.dtype(np.uint8),
                                MAX_METADATA_BYTES)
            doc = json.loads(meta.tobytes().decode())
            words = None
            if "kpageflags.npy" in members:
                words = _read_member(z, members["kpageflags.npy"], np.dtype("<u8"),
                                     _max_kpageflags_bytes()).astype(np.uint64)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise SnapshotFileError(f"snapshot file {str(path)!r} cannot be read as a "
                                f"vmemlab snapshot (.npz): {_why(e)}") from None
    return doc, words


def _max_kpageflags_bytes() -> int:
    """The largest kpageflags member loaded: MAX_KPAGEFLAGS_PFNS words, and room in RAM."""
    free = available_ram()
    most = MAX_KPAGEFLAGS_PFNS * 8
    return most if free is None else min(most, free // WORKING_SET)


def _read_member(z: zipfile.ZipFile, info: zipfile.ZipInfo, dtype: np.dtype,
                 limit: int) -> np.ndarray:
    """A 1-D array of ``dtype`` from one .npy member, checked before it is read."""
    name = info.filename
    if info.file_size > limit:
        raise ValueError(f"{name} would inflate to {info.file_size} bytes; at most {limit} "
                         "are read")
    with z.open(info) as f:
        version = npformat.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"{name}: .npy format version {version} is not supported")
        read_header = npformat.read_array_header_1_0 if version == (1, 0) else \
            npformat.read_array_header_2_0
        shape, _, got = read_header(f)
        if got != dtype or len(shape) != 1:
            raise ValueError(f"{name} holds a {'x'.join(map(str, shape)) or 'scalar'} array of "
                             f"{got}; expected a 1-D array of {dtype}")
        nbytes = shape[0] * dtype.itemsize
        if f.tell() + nbytes != info.file_size:
            raise ValueError(f"{name}: its header says {nbytes} bytes of data but the member "
                             f"holds {info.file_size - f.tell()}")
        return np.frombuffer(f.read(nbytes), dtype).copy()


def _check_doc(doc: Any, path: str) -> None:
    if not isinstance(doc, dict) or doc.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotFileError(f"snapshot file {path!r} is not a vmemlab snapshot")
    if doc.get("version") != SNAPSHOT_VERSION:
        raise SnapshotFileError(f"snapshot file {path!r} has version {doc.get('version')!r}; "
                                f"this vmemlab reads version {SNAPSHOT_VERSION}")
    lacking = [k for k in ("files", "missing", "meta") if not isinstance(doc.get(k), dict)]
    lacking += [k for k in ("files", "missing") if k not in lacking
                and not all(isinstance(t, str) for t in doc[k].values())]
    if lacking:
        raise SnapshotFileError(f"snapshot file {path!r} is damaged: "
                                f"{', '.join(lacking)} malformed")
    problem = check_meta(doc["meta"])
    if problem:
        raise SnapshotFileError(f"snapshot file {path!r} is damaged: meta.{problem}")


def check_meta(meta: dict[str, Any]) -> str:
    """What is wrong with a snapshot's meta ("" if nothing): types and ranges of its keys."""
    size = meta.get("page_size", 4096)
    if isinstance(size, bool) or not isinstance(size, int) or size not in PAGE_SIZES:
        return f"page_size={size!r} is not a page size ({', '.join(map(str, PAGE_SIZES))})"
    pfns = meta.get("max_pfns")
    if pfns is not None and (isinstance(pfns, bool) or not isinstance(pfns, int) or pfns < 0):
        return f"max_pfns={pfns!r} is not a number of pfns"
    for key, kind in (("root", str), ("captured_at", str), ("live", bool)):
        if key in meta and not isinstance(meta[key], kind):
            return f"{key}={meta[key]!r} is not a {kind.__name__}"
    return ""


def _why(e: Exception) -> str:
    if isinstance(e, KeyError):
        return f"no {e} entry"
    return getattr(e, "strerror", None) or str(e)


def _group_problems(problems: dict[str, str]) -> list[tuple[str, str]]:
    """Problems by path, with per-block sysfs attributes folded into one line each."""
    grouped: dict[tuple[str, str], int] = {}
    out = []
    for path, why in sorted(problems.items()):
        if path.startswith(MEMORY_DIR + "/memory"):
            attr = path.rsplit("/", 1)[1] if path.count("/") > 5 else ""
            key = (f"{MEMORY_DIR}/memory*/{attr}", why)
            grouped[key] = grouped.get(key, 0) + 1
        else:
            out.append((path, why))
    out += [(path, f"{why} ({n} blocks)") for (path, why), n in grouped.items()]
    return out
