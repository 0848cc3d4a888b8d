"""The command line: help, the buddy homework and its answer engine, snapshot, bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import vmemlab
import vmemlab as vm
from vmemlab import workload
from vmemlab.cli import buddy_homework, main, random_ops
from vmemlab.cli_vmem import VmemProblem, random_vmem_ops, vmem_homework
from vmemlab.profiles import PROFILES

from .conftest import teaching

FIX = Path(__file__).parent / "fixtures" / "snapshot"
FC, SYN = FIX / "fc-6.18-24g", FIX / "synthetic-cma-2node"
SCEN = Path(__file__).resolve().parent.parent / "scenarios"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """main(argv) as the shell would see it: exit status, stdout, stderr."""
    try:
        rc = main(list(argv))
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------------ help
def test_help_lists_the_subcommands(capsys):
    rc, out, _ = run(capsys, "--help")
    assert rc == 0
    assert re.search(r"^\s+buddy\s+buddy-allocator homework", out, re.M)
    assert re.search(r"^\s+snapshot\s+read this machine", out, re.M)
    assert re.search(r"^\s+run\s+run a scenario file", out, re.M)
    assert re.search(r"^\s+sweep\s+run a scenario over many seeds", out, re.M)
    assert re.search(r"^\s+virtio-mem\s+virtio-mem driver homework", out, re.M)


@pytest.mark.parametrize("cmd,words", [
    ("buddy", ["--seed", "--num-ops", "--percent-alloc", "--ops", "--compute", "+O:T"]),
    ("snapshot", ["--root", "--load", "--save", "--json", "--png", "--limit", "read-only",
                  "pagetypeinfo"]),
    ("virtio-mem", ["--seed", "--num-ops", "--ops", "--compute", "--online", "=SIZE",
                    "-EBUSY"]),
    ("sweep", ["--seeds", "--param", "--jobs", "--scheduler", "--csv", "--png", "Dask"]),
    ("run", ["SCENARIO.toml", "--json", "--png", "--check", "--param", "[[devices]]",
             "[steps.expect]", "shrink_usable_region", "exit status"]),
])
def test_each_subcommand_explains_itself(capsys, cmd, words):
    rc, out, _ = run(capsys, cmd, "--help")
    assert rc == 0
    for w in words:
        assert w in out, w


def test_only_implemented_subcommands_are_registered(capsys):
    rc, _, err = run(capsys, "frob")
    assert rc == 2
    assert ("invalid choice: 'frob' (choose from 'run', 'sweep', 'buddy', 'virtio-mem', "
            "'snapshot')") in err


def test_python_dash_m_runs_the_cli():
    res = subprocess.run([sys.executable, "-m", "vmemlab", "buddy", "-s", "2", "-n", "3"],
                         capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.startswith("ARG seed 2\n")
    res = subprocess.run([sys.executable, "-m", "vmemlab", "--version"],
                         capture_output=True, text=True)
    assert res.stdout.strip() == f"vmemlab {vmemlab.__version__}"


# ----------------------------------------------------------------------- buddy
def test_buddy_prints_every_parameter_first_and_hides_results(capsys):
    rc, out, _ = run(capsys, "buddy", "-s", "0")
    assert rc == 0
    assert out.splitlines()[:9] == ["ARG seed 0", "ARG num-ops 10", "ARG percent-alloc 50",
                                    "ARG max-order 3", "ARG types MUR", "ARG memory 1M",
                                    "ARG kernel 6.12", "ARG ops ", "ARG compute False"]
    ops = [ln for ln in out.splitlines() if ln.startswith(("ptr[", "free_pages"))]
    assert len(ops) == 10 and all(ln.endswith(("returned ?", "(pfn ?)")) for ln in ops)
    assert "Final /proc/buddyinfo?" in out and "returned 0x" not in out


def test_buddy_seeds_are_stable():
    # Part of the contract: a seed names the same problem on every machine and release.
    assert random_ops(0, 10, 50, 3, "MUR", teaching) == "+3:U,+1:M,+0:R,-1,-2,-0,+2:R,-3,+2:M,-4"
    assert random_ops(3, 6, 50, 3, "MUR", teaching) == "+3:M,+0:R,-0,+0:U,+1:R,+2:U"
    assert buddy_homework(seed=7) == buddy_homework(seed=7)
    assert buddy_homework(seed=7) != buddy_homework(seed=8)


def test_buddy_answers_worked_by_hand(capsys):
    # 16 free order-4 blocks, all Movable.  +0:M splits pfn 0x0.  +2:U and +1:R find
    # no block of their type and claim the next order-4 Movable blocks (0x10, 0x20),
    # whose two pageblocks change type.  -0 merges pfn 0 back into an order-4 block,
    # which +3 splits again.
    rc, out, _ = run(capsys, "buddy", "-A", "+0:M,+2:U,+1:R,-0,+3", "-c")
    assert rc == 0
    assert "ptr[0] = alloc_pages(order=0, GFP_HIGHUSER_MOVABLE) returned 0x0\n" in out
    assert "ptr[1] = alloc_pages(order=2, GFP_KERNEL) returned 0x10\n" in out
    assert "ptr[2] = alloc_pages(order=1, GFP_KERNEL | __GFP_RECLAIMABLE) returned 0x20\n" in out
    assert "free_pages(ptr[0], order=0)  (pfn 0x0)\n" in out
    assert "ptr[3] = alloc_pages(order=3, GFP_HIGHUSER_MOVABLE) returned 0x0\n" in out
    final = out.split("Final state:\n")[1]
    assert final.startswith("Node 0, zone   Normal      0      1      2      3     13 \n")
    assert "0x0000 AAAAAAAA........KKKK............DD......" in final
    assert "0x00000000 Normal   MmUuRrmm\n" in final


def test_buddy_prints_null_when_memory_runs_out(capsys):
    rc, out, _ = run(capsys, "buddy", "-A", ",".join(["+4:M"] * 17), "-c")
    assert rc == 0
    assert "ptr[15] = alloc_pages(order=4, GFP_HIGHUSER_MOVABLE) returned 0xf0\n" in out
    assert "ptr[16] = alloc_pages(order=4, GFP_HIGHUSER_MOVABLE) returned NULL\n" in out


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("kernel", list(PROFILES))
def test_buddy_answers_equal_a_replay_on_a_fresh_machine(seed, kernel):
    """The -c answers, checked against direct alloc_pages/free_pages calls."""
    spec = random_ops(seed, 30, 60, 4, "MUR", lambda: teaching(kernel))
    text = buddy_homework(seed=seed, num_ops=30, percent_alloc=60, max_order=4,
                          kernel=kernel, compute=True)
    m = teaching(kernel)
    ptrs, expected = [], []
    for op, n, gfp in workload.parse_ops(spec):
        if op == "+":
            ptrs.append((m.alloc_pages(n, gfp), n))
            got = ptrs[-1][0]
            expected.append(f"returned {'NULL' if got is None else hex(got)}")
        else:
            pfn, order = ptrs[n]
            m.free_pages(pfn, order)
            expected.append(f"(pfn {pfn:#x})")
    lines = [ln for ln in text.splitlines() if ln.startswith(("ptr[", "free_pages"))]
    answers = [ln[ln.index("returned"):] if ln.startswith("ptr") else ln[ln.index("(pfn"):]
               for ln in lines]
    assert answers == expected
    final = text.split("Final state:\n")[1]
    assert final == m.proc.buddyinfo() + "\n" + m.page_map() + "\n" + m.pageblock_map()
    m.validate()


def test_buddy_with_no_operations(capsys):
    rc, out, _ = run(capsys, "buddy", "-n", "0", "-c")
    assert rc == 0 and "Operations (as -A): (none)" in out


@pytest.mark.parametrize("argv,message", [
    (["buddy", "-A", "+x"], "--ops '+x': op 0 '+x': expected +ORDER"),
    (["buddy", "-A", "+1:M,-3"], "op 1 '-3': allocation 3 does not exist or failed"),
    (["buddy", "-A", "+1:FOO"], "gfp='FOO': unknown flag 'FOO'"),
    (["buddy", "-o", "7"], "--max-order 7: must be in 0..4"),
    (["buddy", "-P", "120"], "argument -P/--percent-alloc: '120' is not a percentage"),
    (["buddy", "-n", "many"], "argument -n/--num-ops: 'many' is not a whole number"),
    (["buddy", "-t", "XY"], "argument -t/--types: 'XY' must be letters of MUR"),
    (["buddy", "-m", "300k"], "--memory '300k': boot_memory=307200 must be"),
    (["buddy", "-k", "4.19"], "argument -k/--kernel: invalid choice: '4.19'"),
    (["buddy", "--frobnicate"], "vmemlab buddy: error: unrecognized arguments: --frobnicate"),
    (["snapshot", "--shw", "all"], "vmemlab snapshot: error: unrecognized arguments: --shw"),
    (["snapshot", "--show", "slabinfo"], "argument --show: 'slabinfo': views are 'all'"),
    (["snapshot", "--page-map", "5"], "argument --page-map: '5' is not START:END"),
    (["snapshot", "--root", "/no/such/dir"], "--root '/no/such/dir': not a directory"),
    (["snapshot", "--limit", "4Q"], "--limit: size='4Q' is not a size"),
    (["snapshot", "--load", "x.npz", "--limit", "1G"], "--limit and --no-kpageflags apply"),
    (["snapshot", "--root", str(FC), "--page-map", "0:0x10000000"],
     "--page-map 0x0:0x10000000: pfn range [0x0, 0x10000000) must lie in [0, 0x4000)"),
    (["frob"], "invalid choice: 'frob'"),
    ([], "the following arguments are required: SUBCOMMAND"),
])
def test_bad_input_exits_2_naming_the_value(capsys, argv, message):
    rc, _, err = run(capsys, *argv)
    assert rc == 2
    assert message in err
    assert "Traceback" not in err


# -------------------------------------------------------------------- snapshot
def test_snapshot_default_views(capsys):
    rc, out, _ = run(capsys, "snapshot", "--root", str(FC))
    assert rc == 0
    assert out.startswith(f"vmemlab snapshot of {FC}: Linux 6.18.44-fc-v669, captured ")
    assert "== /proc/buddyinfo ==\n" + (FC / "proc/buddyinfo").read_text() in out
    assert "== /proc/pagetypeinfo ==\n" + (FC / "proc/pagetypeinfo").read_text() in out
    assert "== unusable free space index ==\nNode 0, zone      DMA 0.000" in out
    assert "    32-199    0 Normal\n" in out
    assert "/proc/kpageflags: pfns [0x0, 0x4000) (64 MiB)" in out
    assert "== /proc/zoneinfo ==" not in out


def test_snapshot_all_views_say_why_a_part_is_absent(capsys):
    rc, out, _ = run(capsys, "snapshot", "--root", str(SYN), "--show", "all")
    assert rc == 0
    assert "== /proc/zoneinfo ==\nNode 0, zone      DMA\n  per-node stats\n" in out
    assert "== /proc/meminfo ==\nMemTotal:        8015260 kB\n" in out
    assert "== fragmentation index ==\nNode 0, zone      DMA -1.000" in out
    assert "     7    0x1c0000       offline Movable Normal    1" in out
    assert ("== pages ==\n(absent: /proc/kpageflags is not in this snapshot: absent on this "
            "kernel or root (no such file))\n") in out


def test_snapshot_json(capsys):
    rc, out, _ = run(capsys, "snapshot", "--root", str(FC), "--json")
    assert rc == 0
    d = json.loads(out)
    assert d["kernel"] == "6.18.44-fc-v669" and d["pages"]["nr_pfns"] == 16384
    assert d["buddyinfo"][0]["zone"] == "DMA"


def test_snapshot_save_then_load_shows_the_same(capsys, tmp_path):
    path = tmp_path / "fc.npz"
    rc, saved, err = run(capsys, "snapshot", "--root", str(FC), "--limit", "1M",
                         "--save", str(path), "--show", "all")
    assert rc == 0 and f"saved snapshot to {path}" in err
    assert "/proc/kpageflags: pfns [0x0, 0x100) (1 MiB)" in saved
    rc, loaded, _ = run(capsys, "snapshot", "--load", str(path), "--show", "all")
    assert rc == 0 and loaded == saved


def test_snapshot_load_of_the_saved_vm(capsys):
    rc, out, _ = run(capsys, "snapshot", "--load", str(FIX / "fc-6.18-24g.npz"), "--show",
                     "summary,lsmem,pages")
    assert rc == 0
    assert out.startswith("vmemlab snapshot of /: Linux 6.18.44-fc-v669, captured "
                          "2026-11-24T23:02:32+00:00, page size 4096\n")
    assert "0x0000000100000000-0x000000063fffffff    21 GiB        online       yes    " \
           "32-199    0 Normal\n" in out
    assert "/proc/kpageflags: pfns [0x0, 0x640000) (25 GiB)\n" in out
    assert "free                 1217655   18.6%\n" in out


def test_snapshot_without_kpageflags(capsys):
    rc, out, _ = run(capsys, "snapshot", "--root", str(FC), "--no-kpageflags",
                     "--show", "summary,pages")
    assert rc == 0 and "  /proc/kpageflags: not read (skipped on request)" in out


def test_snapshot_page_map(capsys):
    rc, out, _ = run(capsys, "snapshot", "--root", str(FC), "--show", "summary",
                     "--page-map", "0:0x80")
    assert rc == 0
    assert out.endswith("== page map of pfns [0x0, 0x80) ==\n0x0000 " + "#" * 64 + "\n0x0040 "
                        + "#" * 64 + "\n")


def test_snapshot_load_of_a_bad_file(capsys, tmp_path):
    bad = tmp_path / "notes.npz"
    bad.write_text("not a snapshot\n")
    rc, _, err = run(capsys, "snapshot", "--load", str(bad))
    assert rc == 2
    assert f"--load: snapshot file '{bad}' cannot be read as a vmemlab snapshot (.npz): " \
           "not a zip archive" in err
    rc, _, err = run(capsys, "snapshot", "--load", str(tmp_path / "absent.npz"))
    assert rc == 2 and "No such file or directory" in err


def test_snapshot_png_draws_the_pages(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "fc.png"
    rc, _, err = run(capsys, "snapshot", "--root", str(FC), "--png", str(png), "--show",
                     "summary")
    assert rc == 0 and f"saved heatmap to {png}" in err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_snapshot_png_without_viz_is_a_clear_error(capsys, tmp_path, monkeypatch):
    monkeypatch.delattr(vmemlab, "viz", raising=False)
    monkeypatch.setitem(sys.modules, "vmemlab.viz", None)
    rc, _, err = run(capsys, "snapshot", "--root", str(FC), "--png", str(tmp_path / "x.png"))
    assert rc == 2
    assert "--png" in err and "needs vmemlab.viz with matplotlib" in err
    assert "Traceback" not in err


def test_snapshot_png_needs_kpageflags(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    rc, _, err = run(capsys, "snapshot", "--root", str(SYN), "--png", str(tmp_path / "x.png"))
    assert rc == 2 and "/proc/kpageflags is not in this snapshot" in err


@pytest.mark.skipif(not Path("/proc/buddyinfo").exists(), reason="no /proc/buddyinfo here")
def test_snapshot_of_the_live_machine(capsys):
    rc, out, _ = run(capsys, "snapshot", "--limit", "1M", "--show", "summary,buddyinfo")
    assert rc == 0
    assert out.startswith("vmemlab snapshot of /: Linux ")
    assert re.search(r"== /proc/buddyinfo ==\n(Node \d+, zone |\(absent: )", out)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("runuser"),
                    reason="needs root and runuser to read as an unprivileged user")
def test_snapshot_as_an_unprivileged_user_says_what_is_root_only():
    as_nobody = ["runuser", "-u", "nobody", "--", sys.executable]
    probe = subprocess.run([*as_nobody, "-c", "import vmemlab"], capture_output=True,
                           text=True, cwd="/")
    if probe.returncode:     # e.g. an interpreter or venv under /root that nobody cannot read
        pytest.skip(f"user nobody cannot run this Python with vmemlab: {probe.stderr.strip()}")
    res = subprocess.run([*as_nobody, "-m", "vmemlab", "snapshot", "--show",
                          "summary,pagetypeinfo"], capture_output=True, text=True, cwd="/")
    assert res.returncode == 0, res.stderr
    assert "  /proc/pagetypeinfo: permission denied (readable by root only)\n" in res.stdout
    assert "  /proc/kpageflags: permission denied (readable by root only)\n" in res.stdout
    assert ("== /proc/pagetypeinfo ==\n(absent: /proc/pagetypeinfo is not in this snapshot: "
            "permission denied (readable by root only))") in res.stdout


# ------------------------------------------------------------------------- run
def test_run_prints_every_step(capsys):
    rc, out, _ = run(capsys, "run", str(SCEN / "01_zone_normal_unmovable.toml"))
    assert rc == 0
    assert out.startswith(f"vmemlab run {SCEN}/01_zone_normal_unmovable.toml: Story 1: ")
    assert "  vmem0: virtio-mem-pci at 0x100000000, region 4 GiB, block 2 MiB, " \
           "requested-size 2 GiB (SBM)\n" in out
    assert ("[4] t=0.011 s  resize vmem0: requested-size 0 B  -- the host wants all of it back\n"
            "    vmem0: requested 0 B, plugged 338 MiB, NOT reached\n"
            "           last pass -EBUSY: retry later: memory could not be freed; "
            "retry timer fires at t=50.4 s\n") in out
    assert "    vmem0: retry at t=350.4 s: -EBUSY, plugged 338 MiB\n" in out
    assert out.endswith("expectations: all 3 met\n")


def test_run_json(capsys):
    rc, out, _ = run(capsys, "run", str(SCEN / "07_device_error_broken.toml"), "--json")
    assert rc == 0
    d = json.loads(out)
    assert d["title"] == "Story 8: a device ERROR marks the driver broken"
    step = d["steps"][4]
    assert step["devices"][0]["last_rc_name"] == "-EINVAL" and step["devices"][0]["broken"]
    assert step["dmesg"] == ["[     0.003] virtio_mem virtio0: unknown error, marking device "
                             "broken: -22"]
    assert d["failures"] == [] and d["expectations"] == 2


def test_run_check_fails_with_exit_1(capsys):
    path = str(SCEN / "02_zone_movable.toml")
    assert run(capsys, "run", path, "--check")[0] == 0
    rc, out, _ = run(capsys, "run", path, "--check", "--param", "steps.3.requested_size=1G")
    assert rc == 1
    assert "EXPECTATION FAILED: steps[3] expect.size (vmem0): expected 512 MiB" in out
    rc, _, _ = run(capsys, "run", path, "--param", "steps.3.requested_size=1G")
    assert rc == 0                                  # without --check: reported, not fatal


def test_run_png(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "final.png"
    rc, _, err = run(capsys, "run", str(SCEN / "05_reboot_resets_layout.toml"), "--png", str(png))
    assert rc == 0 and f"saved heatmap to {png}" in err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv,message", [
    (["run", "/no/such.toml"], "vmemlab run: error: /no/such.toml: cannot read the file: "
                               "No such file or directory"),
    (["run", str(SCEN / "00_happy_path.toml"), "--param", "seed"],
     "--param: 'seed' is not KEY=VALUE"),
    (["run", str(SCEN / "00_happy_path.toml"), "--param", "machine.seed=1,2"],
     "run takes one value (sweep takes several)"),
    (["run", str(SCEN / "00_happy_path.toml"), "--param", "machine.kernel=4.19"],
     "00_happy_path.toml: machine.kernel: expected one of '5.8', '6.1', '6.12', '6.15', got 4.19 "
     "(set by --param)"),
    (["run", str(SCEN / "00_happy_path.toml"), "--png", "/no/such/dir/x.png"],
     "--png '/no/such/dir/x.png': No such file or directory"),
])
def test_run_bad_input_exits_2(capsys, argv, message):
    rc, _, err = run(capsys, *argv)
    assert rc == 2 and message in err and "Traceback" not in err


def test_run_bad_file_names_file_line_and_key(capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[machine]\nboot_memory = "2G"\n\n[[devices]]\nregion_size = "4 gigs"\n')
    rc, out, err = run(capsys, "run", str(bad))
    assert rc == 2 and out == ""
    assert err == (f"vmemlab run: error: {bad}:5: devices[0].region_size: expected a size like "
                   "512M, 2G or a number of bytes, got '4 gigs'\n")


# ------------------------------------------------------------------ virtio-mem
def test_vmem_prints_every_parameter_first_and_hides_results(capsys):
    rc, out, _ = run(capsys, "virtio-mem", "-s", "3")
    assert rc == 0
    assert out.splitlines()[:8] == ["ARG seed 3", "ARG num-ops 8", "ARG kernel 6.12",
                                    "ARG online online", "ARG memory 512k", "ARG region 2M",
                                    "ARG ops ", "ARG compute False"]
    hidden = [ln for ln in out.splitlines() if ln.strip() == "plugged size?  last rc?  "
              "plugged subblocks?"]
    assert len(hidden) == 4 and "last rc 0" not in out and "########" not in out
    assert out.endswith("(run again with -c to compute the answers)\n")


def test_vmem_seeds_are_stable():
    # Part of the contract: a seed names the same problem on every machine and release.
    def problem():
        return VmemProblem("6.12", "online", "512k", "2M")
    assert random_vmem_ops(2, 8, problem) == "=1984k,=544k,=1664k,+U:72,=512k,=288k,=1920k,+U:94"
    assert random_vmem_ops(0, 5, problem) == "=1984k,+U:64,-0,=1312k,=1120k"
    assert vmem_homework(seed=7) == vmem_homework(seed=7) != vmem_homework(seed=8)


def test_vmem_answers_worked_by_hand(capsys):
    # 64 pages of boot memory; the device's region starts at memory1.  Growing to
    # 512 KiB adds memory1 and memory2.  40 unmovable pages fit in boot memory, so
    # shrinking to 256 KiB removes the top block, memory2.  Then 30 movable pages
    # fill boot memory up: unplugging memory1 would have to migrate its pages and
    # nothing is free to take them (-ENOMEM, abort, retry timer).  Once the kernel
    # memory is freed, the retry at 50 s unplugs everything.
    rc, out, _ = run(capsys, "virtio-mem", "-m", "256k", "-A", "=512k,+U:40,=256k,+M:30,=0,-0,w",
                     "-c")
    assert rc == 0
    assert ("op 0: qom-set vmem0 requested-size 512 KiB\n"
            "      plugged 512 KiB (16 subblocks), last rc 0 (done: reset the retry timer to "
            "50 s)\n      memory1   ########  KERNEL\n      memory2   ########  KERNEL\n") in out
    assert "op 1: alloc[0] = 40 pages of kernel memory, GFP_KERNEL (unmovable) at pfns " \
           "0x2-0x29\n" in out
    assert ("op 4: qom-set vmem0 requested-size 0 B\n      plugged 256 KiB (8 subblocks), last "
            "rc -ENOMEM (retry later: out of memory)\n      memory1   ########  KERNEL\n") in out
    assert out.endswith("op 6: wait 300 s (t=300.0 s)\n      plugged 0 B (0 subblocks), last rc 0 "
                        "(done: reset the retry timer to 50 s)\n      not added (UNUSED): memory1, "
                        "memory2, memory3, memory4, memory5, memory6, memory7, memory8\n")


def host_answers(kernel: str, online: str, spec: str) -> list[tuple[int, str, list[str]]]:
    """Replay an op string with direct Machine calls; read the answers from the host's bitmap."""
    m = vm.Machine(boot_memory="512k", kernel=kernel, geometry="teaching",
                   auto_online_blocks=online)
    dev = m.add_virtio_mem(region_size="2M")
    sb_blocks = (16 if kernel == "5.8" else 8) * 4096 // dev.block_size
    acts, out = [], []
    for op in spec.split(","):
        if op[0] == "=":
            dev.requested_size = vm.parse_size(op[1:])
            m.settle()
        elif op[0] == "+":
            kind = "kernel" if op[1] == "U" else "anon"
            acts.append(m.activity(kind, size=int(op[3:]) * 4096))
            continue
        elif op[0] == "-":
            acts[int(op[1:])].release()
            continue
        elif op == "w":
            m.run(300)
            m.settle()
        else:
            m.reboot()
            m.settle()
        sbs = dev.bitmap.reshape(-1, sb_blocks).all(axis=1).reshape(8, -1)
        maps = ["".join("#" if p else "." for p in row) for row in sbs]
        out.append((dev.size, vm.errname(dev.driver.last_rc), [mp for mp in maps if "#" in mp]))
    return out


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("kernel,online", [("6.12", "online"), ("5.8", "online"),
                                           ("6.12", "online_movable")])
def test_vmem_answers_equal_a_replay_on_a_fresh_machine(seed, kernel, online):
    """The -c answers, checked against the device's own bitmap after direct calls."""
    text = vmem_homework(seed=seed, num_ops=10, kernel=kernel, online=online, compute=True)
    spec = re.search(r"Operations \(as -A\): (.*)\n", text)[1]
    answers = []
    for block in re.findall(r"      plugged .*?(?=\nop |\Z)", text, re.S):
        size = vm.parse_size(re.search(r"plugged (\d+ \w+?)i?B? \(", block)[1].replace(" ", ""))
        rc = re.search(r"last rc (\S+)", block)[1]
        maps = re.findall(r"memory\d+ +([#.]+)  ", block)
        answers.append((size, rc, [mp for mp in maps if "#" in mp]))
    assert answers == host_answers(kernel, online, spec)


@pytest.mark.parametrize("argv,message", [
    (["virtio-mem", "-A", "+X:3"], "--ops '+X:3': op 0 '+X:3': expected =SIZE, +U:PAGES"),
    (["virtio-mem", "-A", "=1M,-0"], "op 1 '-0': allocation 0 does not exist, was freed, or "
                                     "did not survive a reboot"),
    (["virtio-mem", "-A", "+U:8,r,-0"], "op 2 '-0': allocation 0 does not exist"),
    (["virtio-mem", "-A", "=100k"], "op 0 '=100k': 'requested-size' has to be multiples of "
                                    "'block-size' (0x8000): 102400"),
    (["virtio-mem", "-A", "=4M"], "'requested-size' cannot exceed the memory backend size"),
    (["virtio-mem", "-m", "300k"], "--memory '300k': boot_memory=307200 must be"),
    (["virtio-mem", "-r", "100k"], "--region '100k': region_size=102400 must be a positive "
                                   "multiple of block_size (32 KiB)"),
    (["virtio-mem", "-o", "offline"], "argument -o/--online: invalid choice: 'offline'"),
])
def test_vmem_bad_input_exits_2(capsys, argv, message):
    rc, _, err = run(capsys, *argv)
    assert rc == 2 and message in err and "Traceback" not in err


def test_buddy_header_counts_present_pages_and_says_grouping_is_off(capsys):
    rc, out, _ = run(capsys, "buddy", "-m", "64k", "-s", "1")
    assert rc == 0
    assert "A teaching machine of 16 pages (64 KiB)" in out
    assert "Grouping by mobility is off (fewer than 40 pages)" in out
