"""Snapshots of real machines: parsing captured /proc and /sys files, kpageflags, save/load."""

from __future__ import annotations

import builtins
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from vmemlab.constants import GiB, MiB, PageKind, PageState, ZoneType
from vmemlab.realmem.capture import KPAGEFLAGS, read_kpageflags, reason
from vmemlab.realmem.kpageflags import KPF, flag_counts, page_flag_bits, page_states
from vmemlab.realmem.proctext import (
    ProcParseError,
    parse_buddyinfo,
    parse_meminfo,
    parse_pagetypeinfo,
    parse_zoneinfo,
    render_buddyinfo,
    render_meminfo,
    render_pagetypeinfo,
    render_zoneinfo,
)
from vmemlab.snapshot import (
    MT_UNKNOWN,
    MissingPart,
    RealSnapshot,
    SnapshotFileError,
    load_snapshot,
    read_snapshot,
)

FIX = Path(__file__).parent / "fixtures"
PROC = FIX / "proc"
FC = FIX / "snapshot" / "fc-6.18-24g"          # this machine, captured read-only
SYN = FIX / "snapshot" / "synthetic-cma-2node"  # an older kernel's formats, synthetic
MEM = "/sys/devices/system/memory"


def without_pagesets(text: str) -> str:
    """A zoneinfo capture minus the per-CPU pagesets, which the view leaves out."""
    return "".join(ln for ln in text.splitlines(keepends=True)
                   if not ln.startswith(("    cpu:", "              ", "  pagesets",
                                         "  vm stats threshold")))


def bits(*names: str) -> int:
    return sum(1 << KPF[n] for n in names)


# ------------------------------------------------------------ /proc round trips
@pytest.mark.parametrize("root", [FC, SYN], ids=["fc-6.18", "synthetic-5.x"])
def test_views_give_back_the_captured_text(root):
    snap = read_snapshot(root)
    assert snap.proc.buddyinfo() == (root / "proc/buddyinfo").read_text()
    assert snap.proc.pagetypeinfo() == (root / "proc/pagetypeinfo").read_text()
    assert snap.proc.meminfo() == (root / "proc/meminfo").read_text()
    assert snap.proc.zoneinfo() == without_pagesets((root / "proc/zoneinfo").read_text())


def test_reference_captures_round_trip():
    for name, parse, render in [("buddyinfo.txt", parse_buddyinfo, render_buddyinfo),
                                ("pagetypeinfo.txt", parse_pagetypeinfo, render_pagetypeinfo),
                                ("meminfo-6.18-24g.txt", parse_meminfo, render_meminfo)]:
        text = (PROC / name).read_text()
        assert render(parse(text)) == text, name
    zoneinfo = (PROC / "zoneinfo.txt").read_text()
    assert render_zoneinfo(parse_zoneinfo(zoneinfo)) == without_pagesets(zoneinfo)


def test_buddyinfo_rows_are_plain_numbers():
    rows = parse_buddyinfo((PROC / "buddyinfo.txt").read_text())
    assert rows[2] == (0, "Normal", (13, 2, 1, 37, 136, 65, 31, 20, 9, 11, 76))
    assert rows[2].zone == "Normal" and rows[2].nr_free[10] == 76


def test_pagetypeinfo_with_cma_column_and_capped_counts():
    p = read_snapshot(SYN).part("pagetypeinfo")
    assert p.type_names == ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA",
                            "Isolate")
    assert (p.pageblock_order, p.nr_orders) == (9, 11)
    assert len(p.free) == 5 * 6
    cma = next(r for r in p.free if (r.zone, r.type) == ("DMA32", "CMA"))
    assert cma.counts[10] == 64
    movable = next(r for r in p.free if (r.node, r.zone, r.type) == (1, "Movable", "Movable"))
    assert movable.counts[0] == 100000            # printed ">100000": the kernel stops counting
    assert p.blocks[1] == (0, "DMA32", (3, 1400, 5, 0, 64, 0))


def test_pagetypeinfo_without_cma_matches_the_simulated_columns():
    p = read_snapshot(FC).part("pagetypeinfo")
    assert p.type_names == ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate")


MIXED = "".join([
    "Page block order: 9\n",
    "Pages per block:  512\n",
    "\n",
    "Free pages count per migrate type at order       0      1 \n",
    "Node    0, zone   Normal, type    Unmovable      3      1 \n",
    "Node    0, zone   Normal, type      Movable      0      7 \n",
    "\n",
    "Number of blocks type     Unmovable      Movable \n",
    "Node 0, zone   Normal           41          267 \n",
    "\n",
    "Number of mixed blocks    Unmovable      Movable \n",
    "Node 0, zone   Normal            5            9 \n",
])


def test_pagetypeinfo_mixed_blocks_table_of_page_owner_kernels():
    p = parse_pagetypeinfo(MIXED)
    assert p.blocks == ((0, "Normal", (41, 267)),)
    assert p.mixed == ((0, "Normal", (5, 9)),)
    assert render_pagetypeinfo(p) == MIXED


def test_zoneinfo_without_promo_drops_only_that_line():
    z = read_snapshot(SYN).part("zoneinfo")
    assert z.absent == {"promo"}
    text = read_snapshot(SYN).proc.zoneinfo()
    assert "promo" not in text and "        boost    0\n" in text
    names = [(zone.node, zone.name, zone.populated) for zone in z.zones]
    assert names[7:9] == [(1, "Normal", True), (1, "Movable", True)]
    assert z.zones[7].node_stats is not None       # first populated zone of node 1
    assert dict(z.zones[2].zone_stats)["numa_hit"] == 33


OLD_ZONE = """Node 0, zone   Normal
  pages free     1200
        min      16
        low      20
        high     24
        spanned  4096
        present  4096
        managed  4000
        protection: (0, 0, 0, 0)
      nr_free_pages 1200
  pagesets
    cpu: 0
              count: 40
              high:  378
              batch: 63
  vm stats threshold: 24
  node_unreclaimable:  0
  start_pfn:           4096
"""


def test_zoneinfo_of_a_kernel_without_boost_promo_or_cma():
    z = parse_zoneinfo(OLD_ZONE)
    assert z.absent == {"boost", "promo", "cma"}
    zone = z.zones[0]
    assert (zone.free, zone.wmarks[:3], zone.managed, zone.start_pfn) == (1200, (16, 20, 24),
                                                                          4000, 4096)
    assert render_zoneinfo(z) == without_pagesets(OLD_ZONE)


def test_current_zoneinfo_has_every_optional_line():
    z = read_snapshot(FC).part("zoneinfo")
    assert z.absent == frozenset()
    assert [zone.name for zone in z.zones] == ["DMA", "DMA32", "Normal", "Movable", "Device"]
    assert ("nr_free_pages_blocks", 200704) in z.zones[2].zone_stats


def test_meminfo_keeps_unitless_hugepage_counts():
    rows = read_snapshot(SYN).part("meminfo")
    assert ("HugePages_Total", 120000, "") in rows
    assert ("MemTotal", 8015260, "kB") in rows


@pytest.mark.parametrize("parse,text,where", [
    (parse_buddyinfo, "Node 0, zone DMA 1 2 x\n", "line 1"),
    (parse_pagetypeinfo, "Page block order: 9\nwhat is this\n", "line 2"),
    (parse_zoneinfo, "  pages free 3\n", "line 1"),
    (parse_zoneinfo, "Node 0, zone   Normal\n  pages free     7\n", "'min'"),
    (parse_meminfo, "MemTotal: lots\n", "line 1"),
])
def test_malformed_proc_text_names_file_and_line(parse, text, where):
    with pytest.raises(ProcParseError, match=where) as e:
        parse(text, "/proc/x")
    assert "/proc/x" in str(e.value)


# ------------------------------------------------------------- memory blocks
def test_memory_blocks_of_this_machine():
    mem = read_snapshot(FC).memory
    assert mem.block_size == 128 * MiB and mem.auto_online_blocks == "offline"
    ids = [b.id for b in mem.blocks]
    assert ids == list(range(24)) + list(range(32, 200))      # the PCI hole: 3-4 GiB
    b0, b1, b32 = mem.blocks[0], mem.blocks[1], mem.blocks[24]
    assert (b0.valid_zones, b0.zone) == ((), "none")          # spans DMA and DMA32
    assert (b1.zone, b1.start_pfn, b1.nr_pages) == ("DMA32", 0x8000, 0x8000)
    assert (b32.id, b32.start_pfn, b32.zone, b32.node, b32.online) == (32, 0x100000, "Normal",
                                                                        0, True)


def test_memory_blocks_offline_and_going_offline():
    mem = read_snapshot(SYN).memory
    assert mem.block_size == 1 * GiB and mem.auto_online_blocks == "online_movable"
    by_id = {b.id: b for b in mem.blocks}
    assert (by_id[7].state, by_id[7].online, by_id[7].valid_zones, by_id[7].zone) == (
        "offline", False, ("Movable", "Normal"), "")
    assert (by_id[8].state, by_id[8].node) == ("going-offline", 1)
    assert by_id[6].zone == "Movable" and by_id[6].start_pfn == 6 * GiB // 4096


def test_lsmem_merges_like_blocks():
    text = read_snapshot(FC).lsmem()
    lines = text.splitlines()
    assert lines[1].split() == ["0x0000000000000000-0x0000000007ffffff", "128", "MiB", "online",
                                "yes", "0", "0", "none"]
    assert lines[3].split()[-4:] == ["yes", "32-199", "0", "Normal"]
    assert "Total online memory:  24 GiB" in text


# ------------------------------------------------------------------- kpageflags
def test_kpageflags_rules_in_order():
    cases = [
        (bits("NOPAGE"), PageState.ABSENT, PageKind.NONE),
        (bits("OFFLINE", "RESERVED"), PageState.PAGE_OFFLINE, PageKind.NONE),
        (bits("RESERVED"), PageState.RESERVED, PageKind.NONE),
        (bits("RESERVED", "ZERO_PAGE"), PageState.RESERVED, PageKind.NONE),
        (bits("BUDDY"), PageState.FREE, PageKind.NONE),
        (bits("SLAB", "COMPOUND_TAIL"), PageState.ALLOCATED, PageKind.SLAB),
        (bits("PGTABLE"), PageState.ALLOCATED, PageKind.PAGETABLE),
        (bits("ANON", "LRU", "SWAPBACKED", "MMAP"), PageState.ALLOCATED, PageKind.ANON),
        (bits("HUGE", "COMPOUND_HEAD"), PageState.ALLOCATED, PageKind.ANON),
        (bits("LRU", "SWAPBACKED"), PageState.ALLOCATED, PageKind.SHMEM),
        (bits("LRU", "UNEVICTABLE", "MLOCKED"), PageState.ALLOCATED, PageKind.RAMFS),
        (bits("LRU", "UPTODATE", "DIRTY"), PageState.ALLOCATED, PageKind.FILE),
        (0, PageState.ALLOCATED, PageKind.KERNEL),
        (bits("ZERO_PAGE", "THP"), PageState.ALLOCATED, PageKind.KERNEL),
    ]
    words = np.array([w for w, _, _ in cases], np.uint64)
    state, kind = page_states(words)
    assert [(PageState(s), PageKind(k)) for s, k in zip(state, kind, strict=True)] == \
        [(s, k) for _, s, k in cases]
    assert page_flag_bits(words).tolist()[11] == 2      # PageFlag.DIRTY
    assert flag_counts(words)["RESERVED"] == 3 and flag_counts(words)["NO_FLAGS"] == 1


def test_the_lookup_table_equals_the_rules_on_random_words():
    from vmemlab.realmem import kpageflags

    words = np.random.default_rng(0).integers(0, 1 << 63, size=50_000, dtype=np.uint64)
    words[::2] &= np.uint64((1 << 27) - 1)           # also words without high bits
    state, kind = page_states(words)
    rule_state, rule_kind = kpageflags._apply_rules(words)
    assert np.array_equal(state, rule_state) and np.array_equal(kind, rule_kind)


def test_kpf_bit_numbers_match_the_uapi_header():
    assert (KPF.BUDDY, KPF.SLAB, KPF.LRU, KPF.ANON, KPF.NOPAGE, KPF.OFFLINE, KPF.PGTABLE,
            KPF.RESERVED) == (10, 7, 5, 12, 20, 23, 26, 32)


def test_kpageflags_prefix_of_this_machine():
    snap = read_snapshot(FC)
    assert snap.kpageflags.shape == (16384,) and snap.kpageflags.dtype == np.uint64
    pages = snap.pages
    assert pages.nr_pfns == 16384
    assert pages.state[0] == PageState.RESERVED          # pfn 0: firmware
    first_free = int(np.argmax(pages.state == PageState.FREE))
    assert snap.page_map(0, 0x200).splitlines()[first_free // 64][7 + first_free % 64] == "."
    assert snap.block_page_counts()[0].tolist() == [-1] * len(PageState)   # not covered


def test_max_pfns_limits_the_read(tmp_path):
    snap = read_snapshot(FC, max_pfns=1000)
    assert snap.pages.nr_pfns == 1000 and snap.meta["max_pfns"] == 1000
    words = read_kpageflags(FC / "proc/kpageflags", max_pfns=3, chunk_pfns=2)
    assert np.array_equal(words, read_snapshot(FC).kpageflags[:3])
    with pytest.raises(ValueError, match="max_pfns=-1"):
        read_kpageflags(FC / "proc/kpageflags", max_pfns=-1)


def test_kpageflags_can_be_skipped():
    snap = read_snapshot(FC, kpageflags=False)
    assert not snap.has("kpageflags")
    assert snap.problems[KPAGEFLAGS] == "not read (skipped on request)"
    with pytest.raises(MissingPart, match="skipped on request"):
        snap.pages  # noqa: B018


def synthetic_with_pages(tmp_path: Path) -> RealSnapshot:
    """The synthetic tree plus kpageflags up to the end of block 8 (9 GiB)."""
    root = tmp_path / "root"
    shutil.copytree(SYN, root)
    per_block = GiB // 4096
    words = np.full(9 * per_block, bits("BUDDY"), np.uint64)
    words[0] = bits("RESERVED")
    words[3 * per_block:4 * per_block] = bits("NOPAGE")      # the hole (no memory block 3)
    words[7 * per_block:8 * per_block] = bits("NOPAGE")      # offline block 7
    words[6 * per_block:6 * per_block + 512] = bits("LRU", "ANON")
    words.astype("<u8").tofile(root / "proc/kpageflags")
    return read_snapshot(root)


def test_offline_blocks_and_holes_come_from_sysfs(tmp_path):
    snap = synthetic_with_pages(tmp_path)
    per_block = GiB // 4096
    state = snap.pages.state
    assert state[3 * per_block] == PageState.ABSENT
    assert state[7 * per_block] == PageState.OFFLINE
    counts = snap.block_page_counts()
    by_id = {b.id: i for i, b in enumerate(snap.memory.blocks)}
    assert counts[by_id[6]][PageState.ALLOCATED] == 512
    assert counts[by_id[7]][PageState.OFFLINE] == per_block
    assert counts[by_id[0]][PageState.RESERVED] == 1


def test_machine_snapshot_is_the_frame_format_viz_draws(tmp_path):
    frame = synthetic_with_pages(tmp_path).machine_snapshot()
    per_block, pb = GiB // 4096, 512
    assert frame.state.shape == (9 * per_block,) and frame.geo.memory_block_size == GiB
    assert frame.geo.pageblock_order == 9 and frame.geo.max_page_order == 10
    assert set(frame.pb_mt.tolist()) == {MT_UNKNOWN}
    assert frame.pb_zone[0] == ZoneType.DMA and frame.pb_zone[4096 // pb] == ZoneType.DMA32
    assert frame.pb_zone[6 * per_block // pb] == ZoneType.MOVABLE
    assert frame.pb_zone[5 * per_block // pb] == ZoneType.NORMAL
    assert frame.buddyinfo.startswith("Node 0, zone      DMA")


def test_machine_snapshot_pads_to_whole_memory_blocks():
    frame = read_snapshot(FC).machine_snapshot()
    assert frame.state.shape == (32768,)
    assert (frame.state[16384:] == PageState.ABSENT).all()


# ------------------------------------------------------- missing and unreadable
def test_an_empty_root_gives_a_snapshot_that_says_what_is_missing(tmp_path):
    snap = read_snapshot(tmp_path)
    assert not any(snap.has(p) for p in ("buddyinfo", "memory", "kpageflags"))
    assert snap.problems["/proc/buddyinfo"] == "absent on this kernel or root (no such file)"
    assert MEM in snap.problems
    with pytest.raises(MissingPart, match=r"/proc/pagetypeinfo is not in this snapshot: absent"):
        snap.proc.pagetypeinfo()
    assert "  /proc/zoneinfo: absent" in snap.summary()
    assert json.dumps(snap.to_dict())


def test_unreadable_and_unparsable_files_are_reported(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(FC, root)
    (root / "proc/pagetypeinfo").unlink()
    (root / "proc/pagetypeinfo").mkdir()                      # unreadable, even for root
    (root / "proc/buddyinfo").write_text("Node 0, zone DMA lots\n")
    (root / f"{MEM.lstrip('/')}/memory5/valid_zones").unlink()
    snap = read_snapshot(root)
    assert snap.problems["/proc/pagetypeinfo"] == "Is a directory"
    assert snap.problems["/proc/buddyinfo"].startswith("unparsable: /proc/buddyinfo, line 1")
    assert snap.memory.blocks[5].valid_zones is None          # the rest of the table stands
    assert snap.has("zoneinfo") and snap.has("kpageflags")
    summary = snap.summary()
    assert f"{MEM}/memory*/valid_zones: absent on this kernel or root (no such file) " \
           "(1 blocks)" in summary


def test_permission_errors_say_root_only():
    assert reason(KPAGEFLAGS, PermissionError(13, "Permission denied")) == \
        "permission denied (readable by root only)"
    assert reason("/proc/zoneinfo", PermissionError(13, "x")) == "permission denied"


def test_part_names_are_checked():
    with pytest.raises(ValueError, match="part='slabinfo'"):
        read_snapshot(FC).part("slabinfo")


# ------------------------------------------------------------------- save, load
@pytest.mark.parametrize("root", [FC, SYN], ids=["with-kpageflags", "without"])
def test_save_and_load_give_the_same_snapshot(tmp_path, root):
    snap = read_snapshot(root)
    path = tmp_path / "box.snapshot"                # any name: no suffix is added
    snap.save(path)
    back = load_snapshot(path)
    assert back == snap and path.exists()
    assert back.proc.buddyinfo() == snap.proc.buddyinfo()
    assert back.problems == snap.problems
    if snap.has("kpageflags"):
        assert np.array_equal(back.pages.state, snap.pages.state)


def test_saved_layout_is_npz_with_json_metadata(tmp_path):
    read_snapshot(FC).save(tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz") as z:
        assert sorted(z.files) == ["kpageflags", "metadata"]
        doc = json.loads(bytes(z["metadata"]).decode())
        assert z["kpageflags"].dtype == np.dtype("<u8")
    assert (doc["format"], doc["version"]) == ("vmemlab-snapshot", 1)
    assert set(doc) == {"format", "version", "meta", "files", "missing"}
    assert doc["files"]["/proc/buddyinfo"] == (FC / "proc/buddyinfo").read_text()


def test_loading_bad_files_names_them(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(SnapshotFileError, match="notes.txt"):
        load_snapshot(text)
    with pytest.raises(SnapshotFileError, match="nothing-here.npz"):
        load_snapshot(tmp_path / "nothing-here.npz")
    other = tmp_path / "other.npz"
    np.savez(other, data=np.arange(3))
    with pytest.raises(SnapshotFileError, match="no 'metadata' entry"):
        load_snapshot(other)
    doc = {"format": "vmemlab-snapshot", "version": 99}
    np.savez(other, metadata=np.frombuffer(json.dumps(doc).encode(), np.uint8))
    with pytest.raises(SnapshotFileError, match="version 99"):
        load_snapshot(other)


def test_to_dict_is_plain_json(tmp_path):
    d = json.loads(json.dumps(synthetic_with_pages(tmp_path).to_dict()))
    assert d["buddyinfo"][4] == {"node": 1, "zone": "Movable",
                                 "nr_free": [123456, 2048, 512, 128, 64, 32, 16, 8, 4, 2, 190]}
    assert d["pagetypeinfo"]["type_names"][4] == "CMA"
    assert d["zoneinfo"]["absent"] == ["promo"]
    assert d["memory"]["blocks"][6]["state"] == "offline"
    assert d["memory"]["blocks"][6]["pages"]["offline"] == GiB // 4096
    assert d["pages"]["state"]["reserved"] == 1 and d["kernel"] == "5.x-synthetic"


# --------------------------------------------------------------- the live machine
def _readable(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            f.read(8)
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _readable("/proc/buddyinfo"), reason="/proc/buddyinfo unreadable")
def test_live_read_is_read_only_and_consistent(monkeypatch):
    opened: list[tuple[str, str]] = []
    real_open = builtins.open

    def checked_open(file, mode="r", *args, **kwargs):
        opened.append((str(file), mode))
        assert not set(mode) & set("wax+"), f"{file} opened with mode {mode!r}"
        return real_open(file, mode, *args, **kwargs)

    real_path_open = Path.open

    def checked_path_open(self, mode="r", *args, **kwargs):
        opened.append((str(self), mode))
        assert not set(mode) & set("wax+"), f"{self} opened with mode {mode!r}"
        return real_path_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", checked_open)
    monkeypatch.setattr(io, "open", checked_open)
    # Python 3.10's Path.read_text reaches io.open through an accessor bound at import
    monkeypatch.setattr(Path, "open", checked_path_open)
    snap = read_snapshot("/", max_pfns=1 << 15)
    monkeypatch.undo()
    assert any(path.endswith("buddyinfo") for path, _ in opened)
    assert snap.meta["live"] and snap.page_size == os.sysconf("SC_PAGE_SIZE")
    assert snap.proc.buddyinfo() == snap.files["/proc/buddyinfo"]
    assert re.match(r"Node \d+, zone ", snap.proc.buddyinfo())
    if snap.has("kpageflags"):
        assert 0 < snap.pages.nr_pfns <= 1 << 15
    else:
        assert KPAGEFLAGS in snap.problems
    if snap.has("zoneinfo"):
        assert snap.proc.zoneinfo() == without_pagesets(snap.files["/proc/zoneinfo"])
