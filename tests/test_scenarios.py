"""Scenario files: every example in scenarios/ reproduces its story; bad files say where."""

from __future__ import annotations

from pathlib import Path

import pytest

import vmemlab as vm
from vmemlab.scenario import ScenarioError, load_scenario, parse_override, parse_scenario
from vmemlab.scenario_run import format_result, run_scenario

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "scenarios").glob("*.toml"))
MiB = vm.MiB

# The outcome of each story after its last step: (plugged size, the driver's last rc).
# The files also check themselves ([steps.expect]); this table keeps them honest.
FINAL = {
    "00_happy_path": (2048 * MiB, 0),
    "01_zone_normal_unmovable": (338 * MiB, vm.EBUSY),
    "02_zone_movable": (512 * MiB, 0),
    "03_memory_pressure_enomem": (0, 0),
    "04_nobody_onlines": (2048 * MiB, 0),
    "05_reboot_resets_layout": (1536 * MiB, 0),
    "06_device_busy": (1024 * MiB, 0),
    "07_device_error_broken": (640 * MiB, vm.EINVAL),
    "08_page_cache_race": (512 * MiB, 0),
    "09_long_term_pins": (2 * MiB, vm.EBUSY),
    "10_memmap_needs_kernel_memory": (1024 * MiB, vm.ENOMEM),
    "11_larger_request_applies_at_once": (402 * MiB, 0),
    "12_online_movable_5.8": (2048 * MiB, vm.EBUSY),
    "13_online_movable_6.12": (1024 * MiB, 0),
    "15_oom_kills_the_hog": (0, 0),
    # issue 13's real outcomes (tests/test_real_outcomes.py pins them per kernel, in kind)
    "16_movable_always_reaches_0": (0, 0),
    "17_kernel_idle_stays_above_0": (2 * MiB, vm.EBUSY),
    "18_ramfs_stays_until_removed": (4 * MiB, vm.EBUSY),
    "19_pipes_stay": (18 * MiB, vm.EBUSY),
    "20_fragmented_slab_stays": (96 * MiB, vm.EBUSY),
    "21_anon_in_normal_migrates": (2 * MiB, vm.EBUSY),
}


def test_every_scenario_has_an_outcome_here():
    names = {p.stem for p in SCENARIOS}
    assert set(FINAL) <= names
    assert names - set(FINAL) == {"14_balloon_contrast"}


@pytest.mark.parametrize("path", [p for p in SCENARIOS if p.stem in FINAL], ids=lambda p: p.stem)
def test_scenario_reproduces_its_story(path):
    sc = load_scenario(path)
    assert sc.title and path.read_text().startswith("# ")      # a comment header tells the story
    result = run_scenario(sc)
    assert result.nr_expectations >= 1
    assert result.failures == [], format_result(result)
    final = result.final("vmem0")
    assert (final.size, final.last_rc) == FINAL[path.stem]
    result.machine.validate()


def test_story1_retries_back_off_to_300_seconds():
    result = run_scenario(load_scenario(ROOT / "scenarios/01_zone_normal_unmovable.toml"))
    wait = result.steps[-1]
    assert [round(r.t - result.steps[-2].t_end) for r in wait.retries] == [50, 150, 350, 650]
    assert {r.rc for r in wait.retries} == {vm.EBUSY}
    assert round(wait.devices[0].retry_at - wait.retries[-1].t) == 300


def test_story9_replugs_from_the_bottom_after_reboot():
    result = run_scenario(load_scenario(ROOT / "scenarios/05_reboot_resets_layout.toml"))
    m, dev = result.machine, result.machine.virtio_mem[0]
    blocks = [b for b in m.memory_blocks if b.start_pfn >= dev.addr >> 12]
    assert len(blocks) == 12 and blocks[0].start_pfn == dev.addr >> 12
    assert result.steps[3].details == ["vmem0: unplugged everything at reset"]


def test_balloon_runs_out_of_puff_until_the_kernels_own_allocation_oom_kills():
    """Out of puff every 200 ms; 1 s after boot the kernel's next slab page (GFP_KERNEL)
    finds the zone at its min watermark too, the OOM killer kills the hog and the
    balloon reaches its target.  A silent kernel stays out of puff."""
    path = ROOT / "scenarios/14_balloon_contrast.toml"
    result = run_scenario(load_scenario(path))
    balloon, dmesg = result.machine.balloon, result.steps[-1].dmesg
    assert balloon.out_of_puff == 5 and balloon.actual == balloon.num_pages == (1536 * MiB) >> 12
    assert dmesg[0].endswith("Out of puff! Can't get 1 pages")
    assert "kworker/0:1 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0" in dmesg[5]
    assert result.machine.node.vm_events["oom_kill"] == 1
    silent = run_scenario(load_scenario(path, {"machine.kernel_activity": False})).machine
    assert silent.balloon.out_of_puff == 10
    assert 0 < silent.balloon.actual < silent.balloon.num_pages
    assert "oom_kill" not in silent.node.vm_events


def test_a_pinned_workload_in_zone_movable_does_not_block(tmp_path):
    sc = load_scenario(ROOT / "scenarios/09_long_term_pins.toml",
                       {"machine.auto_online_blocks": "online_movable", "steps.2.expect.size": "0",
                        "steps.2.expect.last_rc": "0", "steps.2.expect.retry_timer": False,
                        "steps.4.expect.size": "0", "steps.4.expect.last_rc": "0",
                        "steps.4.expect.retry_timer": False})
    result = run_scenario(sc)
    assert result.failures == [] and result.steps[2].devices[0].size == 0


def test_a_wrong_expectation_is_reported():
    sc = load_scenario(ROOT / "scenarios/02_zone_movable.toml",
                       {"steps.3.requested_size": "1G"})
    result = run_scenario(sc)
    assert result.failures == [
        "steps[3] expect.size (vmem0): expected 512 MiB (536870912), got 1 GiB (1073741824)"]
    assert "EXPECTATION FAILED: steps[3] expect.size" in format_result(result)
    assert format_result(result).endswith("expectations: FAILED in 1 of 2 steps with "
                                          "expectations (1 mismatches)\n")


def test_a_size_outside_its_band_is_reported():
    path = ROOT / "scenarios/17_kernel_idle_stays_above_0.toml"
    silent = run_scenario(load_scenario(path, {"machine.kernel_activity": False,
                                               "steps.3.expect.last_rc": "0",
                                               "steps.3.expect.retry_timer": False}))
    assert silent.failures[0] == ("steps[3] expect.min_size (vmem0): expected at least 2 MiB "
                                  "(2097152), got 0 B (0)")
    assert len(silent.failures) == 4        # and step 4's min_size, last_rc, retry_timer
    tight = run_scenario(load_scenario(path, {"steps.3.expect.max_size": "1M"}))
    assert tight.failures == [
        "steps[3] expect.max_size (vmem0): expected at most 1 MiB (1048576), got 2 MiB (2097152)"]
    with pytest.raises(ScenarioError, match=r"machine.kernel_activity: expected true or false"):
        parse_scenario(GOOD.replace("[machine]\n", "[machine]\nkernel_activity = 1\n"), "f.toml")


def test_same_seed_same_result():
    text = GOOD + '\n[[steps]]\ndo = "fill"\nfraction = 0.6\n\n[[steps]]\ndo = "resize"\n' \
        'requested_size = "0"\n'
    runs = [run_scenario(parse_scenario(text, "f.toml", {"machine.seed": seed}))
            for seed in (0, 0, 1)]
    (a, b, c) = ([r.to_dict()["steps"] for r in runs])
    assert a == b
    maps = [r.machine.pageblock_map() for r in runs]
    assert maps[0] == maps[1] and maps[0] != maps[2]


# ------------------------------------------------------------------ bad files
GOOD = """\
[machine]
boot_memory = "2G"

[[devices]]
region_size = "4G"

[[steps]]
do = "resize"
requested_size = "1G"
"""


@pytest.mark.parametrize("text,message", [
    ("[machine\n", "f.toml:1: not valid TOML: "),
    ("[machine]\nboot_memory = 2G\n", "f.toml:2: not valid TOML: "),
    ("[machne]\n", "f.toml:1: machne: unknown key; expected one of title, machine, devices"),
    ("[machine]\nkernel = \"4.19\"\n", "f.toml:2: machine.kernel: expected one of '5.8', "
                                       "'6.1', '6.12', '6.15', got '4.19'"),
    ("[machine]\nseed = -1\n", "f.toml:2: machine.seed: expected a whole number >= 0, got -1"),
    ("[machine]\nseed = true\n", "machine.seed: expected a whole number >= 0, got True"),
    ("[machine]\nboot_memory = \"__import__('os')\"\n",
     "f.toml:2: machine.boot_memory: expected a size like 512M, 2G or a number of bytes, "
     "got \"__import__('os')\""),
    ("[machine]\nauto_online_blocks = \"movable\"\n",
     "machine.auto_online_blocks: expected one of 'offline', 'online', 'online_kernel', "
     "'online_movable', got 'movable'"),
    ("[[devices]]\nrequested_size = \"1G\"\n",
     "f.toml:1: devices[0]: missing key 'region_size' (memory backend size (max-size))"),
    ("[[devices]]\nregion_size = \"4G\"\nrequested_size = \"8G\"\n",
     "f.toml:3: devices[0].requested_size: cannot exceed region_size"),
    ("[[devices]]\nregion_size = \"4G\"\nrequested_size = \"3M\"\n",
     "f.toml:3: devices[0].requested_size: 3145728 bytes is not a multiple of the block "
     "size (2097152 bytes)"),
    ("[[devices]]\nregion_size = \"4G\"\ncolor = \"red\"\n",
     "f.toml:3: devices[0].color: unknown key; expected one of region_size, block_size"),
    (GOOD + "\n[[steps]]\nrequested_size = \"1G\"\n",
     "f.toml:11: steps[1]: each [[steps]] needs do = one of resize, settle, wait"),
    (GOOD + "\n[[steps]]\ndo = \"explode\"\n",
     "f.toml:12: steps[1].do: expected one of 'resize', 'settle'"),
    (GOOD + "\n[[steps]]\ndo = \"wait\"\nseconds = -5\n",
     "f.toml:13: steps[1].seconds: expected a finite number in [0, 1e+06] seconds, got -5"),
    (GOOD + "\n[[steps]]\ndo = \"wait\"\n",
     "f.toml:11: steps[1]: missing key 'seconds' (simulated seconds to run)"),
    (GOOD + "\n[[steps]]\ndo = \"resize\"\nrequested_size = \"5G\"\n",
     "f.toml:13: steps[1].requested_size: 5368709120 bytes must be a multiple of vmem0's "
     "block size (2097152 bytes) and at most its region_size (4294967296 bytes)"),
    (GOOD + "\n[[steps]]\ndo = \"resize\"\ndevice = \"vmem3\"\nrequested_size = \"1G\"\n",
     "f.toml:13: steps[1].device: no such device 'vmem3'; the scenario has vmem0"),
    (GOOD + "\n[[steps]]\ndo = \"activity\"\nkind = \"files\"\nsize = \"1G\"\n",
     "f.toml:11: steps[1]: kind 'files' takes count (the number of files), not size"),
    (GOOD + "\n[[steps]]\ndo = \"activity\"\nkind = \"anon\"\ncount = 5\n",
     "f.toml:11: steps[1]: kind 'anon' takes size (bytes), not count"),
    (GOOD + "\n[[steps]]\ndo = \"release\"\nname = \"cache\"\n",
     "f.toml:13: steps[1].name: no activity 'cache' runs at this point; names so far: none"),
    (GOOD + "\n[[steps]]\ndo = \"activity\"\nkind = \"anon\"\nsize = \"1G\"\n[[steps]]\n"
     "do = \"reboot\"\n[[steps]]\ndo = \"stop\"\nname = \"anon\"\n",
     "f.toml:19: steps[3].name: no activity 'anon' runs at this point"),
    (GOOD + "[steps.expect]\nsize = \"1G\"\nlast_rc = \"-EWHAT\"\n",
     "f.toml:12: steps[0].expect.last_rc: expected a return code like \"0\", \"-EBUSY\""),
    (GOOD + "[steps.expect]\nplugged = \"1G\"\n",
     "f.toml:11: steps[0].expect.plugged: unknown key; expected one of device, size"),
    (GOOD + "\n[[steps]]\ndo = \"balloon\"\nsize = \"1G\"\n",
     "f.toml:11: steps[1]: a balloon step needs a [balloon] table (the device)"),
    (GOOD + "\n[[steps]]\ndo = \"fill\"\nfraction = 0.5\nmix = { movable = \"lots\" }\n",
     "f.toml:14: steps[1].mix: expected a table of shares among movable, unmovable, "
     "reclaimable"),
    ("[[devices]]\nregion_size = \"4G\"\n[[devices]]\nregion_size = \"4G\"\n[[steps]]\n"
     "do = \"resize\"\nrequested_size = \"1G\"\n",
     "f.toml:5: steps[0]: key 'device' is needed: the scenario has 2 virtio-mem devices "
     "(vmem0, vmem1)"),
    ("steps = 3\n", "f.toml:1: steps: expected an array of tables ([[steps]]), got 3"),
])
def test_bad_files_say_where_and_what(text, message):
    with pytest.raises(ScenarioError) as e:
        parse_scenario(text, "f.toml")
    assert message in str(e.value)


def test_the_model_refusing_a_value_names_the_step(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD.replace('boot_memory = "2G"', 'boot_memory = "3M"'))
    with pytest.raises(ScenarioError, match=r"bad.toml: machine/devices: boot_memory=3145728"):
        run_scenario(load_scenario(bad))


def test_unreadable_files(tmp_path):
    with pytest.raises(ScenarioError, match=r"absent.toml: cannot read the file: No such file"):
        load_scenario(tmp_path / "absent.toml")
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ScenarioError, match=r"bin.toml: not UTF-8 text"):
        load_scenario(binary)


def test_overrides():
    assert parse_override("devices.0.requested_size=1G,2G") == ("devices.0.requested_size",
                                                                ["1G", "2G"])
    assert parse_override("machine.seed=3") == ("machine.seed", [3])
    assert parse_override("steps.0.settle=false") == ("steps.0.settle", [False])
    with pytest.raises(ValueError, match="is not KEY=VALUE"):
        parse_override("machine.seed")
    sc = parse_scenario(GOOD, "f.toml", {"devices.0.requested_size": "1G", "machine.seed": 9})
    assert sc.devices[0].requested_size == vm.GiB and sc.machine.seed == 9
    with pytest.raises(ScenarioError, match=r"f.toml: machine.seed: expected a whole number "
                                            r">= 0, got 'x' \(set by --param\)"):
        parse_scenario(GOOD, "f.toml", {"machine.seed": "x"})
    with pytest.raises(ScenarioError, match=r"devices.3.region_size: no such table or array "
                                            r"entry in the file \(at 'devices.3'\)"):
        parse_scenario(GOOD, "f.toml", {"devices.3.region_size": "1G"})


def test_the_machine_takes_qemus_smp_maxmem_and_slots():
    """-smp 4 -m 1G,maxmem=4G,slots=4: per-CPU lists for 4 CPUs, the swiotlb that
    maxmem above 4 GiB implies (MemTotal as Machine(cpus=, maxmem=, slots=) gives),
    and QEMU's refusal of a device that does not fit below maxmem."""
    text = GOOD.replace('boot_memory = "2G"\n', 'boot_memory = "1G"\ncpus = 4\n'
                        'maxmem = "6G"\nslots = 4\n').replace('"4G"', '"2G"')
    m = run_scenario(parse_scenario(text, "f.toml")).machine
    same = vm.Machine(boot_memory="1G", cpus=4, maxmem="6G", slots=4)
    assert m.boot_config == same.boot_config
    assert m.proc.meminfo_kb("MemTotal") - m.virtio_mem[0].size // 1024 == \
        same.proc.meminfo_kb("MemTotal")
    small = text.replace('maxmem = "6G"', 'maxmem = "2G"')
    with pytest.raises(ScenarioError, match=r"f.toml: machine/devices: not enough space"):
        run_scenario(parse_scenario(small, "f.toml"))
    with pytest.raises(ScenarioError, match=r"machine.cpus: expected a whole number 1..288"):
        parse_scenario(text.replace("cpus = 4", "cpus = 0"), "f.toml")
