"""Every key of a scenario file, given every kind of bad value: a ScenarioError that
names the file, the key and what is expected, or a value that is fine; never a hang,
never another exception.  Values arrive as --param overrides (TOML scalars parsed
from the command line) and, for a selection, in the file text itself."""

from __future__ import annotations

import math

import pytest

from vmemlab.scenario import (
    ACTIONS,
    BALLOON_KEYS,
    DEVICE_KEYS,
    DIMM_KEYS,
    EXPECT_KEYS,
    MACHINE_KEYS,
    ScenarioError,
    parse_scenario,
)
from vmemlab.scenario_run import run_scenario

# One valid step per action, in an order that runs (a name exists before it is stopped).
EXAMPLES = {
    "resize": 'requested_size = "512k"', "settle": "limit = 10", "wait": "seconds = 5",
    "fill": "fraction = 0.5", "activity": 'kind = "anon"\nsize = "16k"\nname = "a"',
    "start": 'kind = "page_cache"\nrate = "4k"\nname = "bg"', "stop": 'name = "bg"',
    "release": 'name = "a"\nfraction = 0.5', "churn": "ops = 20", "online": "",
    "migration": "busy = false", "shrink_usable_region": "", "balloon": 'size = "768k"',
    "drop_caches": "value = 3", "reboot": "",
}
BASE = """\
title = "every action once, on a teaching machine"
[machine]
geometry = "teaching"
boot_memory = "512k"
[[devices]]
region_size = "1M"
requested_size = "256k"
[[dimms]]
size = "256k"
[balloon]
compaction = true
""" + "".join(f'[[steps]]\ndo = "{do}"\n{keys}\n' for do, keys in EXAMPLES.items()) \
    + '[steps.expect]\nrequested_size = "512k"\n'

STEP = {do: i for i, do in enumerate(EXAMPLES)}
LAST = len(EXAMPLES) - 1
KEYS = ([f"machine.{k}" for k in MACHINE_KEYS] + [f"devices.0.{k}" for k in DEVICE_KEYS]
        + [f"dimms.0.{k}" for k in DIMM_KEYS] + [f"balloon.{k}" for k in BALLOON_KEYS]
        + [f"steps.{STEP[do]}.{k}" for do, table in ACTIONS.items() if do in STEP
           for k in table]
        + [f"steps.{LAST}.expect.{k}" for k in EXPECT_KEYS]
        + [f"steps.0.{k}" for k in ("note", "settle", "do")] + ["title"])
BAD = [math.inf, -math.inf, math.nan, -1, -0.5, 0, True, "x", "", "١", "\0", 2**64, 1e308,
       "64T", "9" * 400, "-EBOGUS"]


def test_every_action_has_an_example():
    assert set(EXAMPLES) == set(ACTIONS), "add an example step for each new action"


def test_the_base_scenario_runs():
    result = run_scenario(parse_scenario(BASE, "base.toml"))
    assert len(result.steps) == len(STEP) and result.failures == []
    result.machine.validate()


def spelled(key: str) -> str:
    """steps.3.seconds -> steps[3].seconds, as ScenarioError names it."""
    out = ""
    for part in key.split("."):
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out


CASES = [(k, v) for k in KEYS for v in BAD]


@pytest.mark.parametrize("key, value", CASES, ids=[f"{k}={str(v)[:10]!r}" for k, v in CASES])
def test_a_bad_value_is_named_or_harmless(key, value):
    try:
        sc = parse_scenario(BASE, "base.toml", {key: value})
    except ScenarioError as e:
        assert str(e).startswith("base.toml"), e
        table = "steps[" if key.startswith("steps.") else spelled(key.rpartition(".")[0] or key)
        assert table in str(e), e          # the key, or the key (or step) it conflicts with
        return
    try:
        run_scenario(sc)
    except ScenarioError as e:       # the model refused it: named, with the step
        assert str(e).startswith("base.toml")


@pytest.mark.parametrize("text, where", [
    ('[[steps]]\ndo = "wait"\nseconds = inf\n', "base.toml:3: steps[0].seconds: expected a "
                                                "finite number"),
    ('[[steps]]\ndo = "wait"\nseconds = nan\n', "base.toml:3: steps[0].seconds"),
    ('[[steps]]\ndo = "wait"\nseconds = 1e308\n', "base.toml:3: steps[0].seconds"),
    ('[[steps]]\ndo = "settle"\nlimit = nan\n', "base.toml:3: steps[0].limit"),
    ('[[steps]]\ndo = "start"\nkind = "anon"\nrate = "1M"\ninterval = inf\n',
     "base.toml:5: steps[0].interval"),
    ('[[steps]]\ndo = "churn"\nops = 1000000000000\n', "base.toml:3: steps[0].ops"),
    ('[[steps]]\ndo = "release"\nname = "x"\nfraction = nan\n', "steps[0].fraction"),
    ('[machine]\nboot_memory = "64T"\n', "machine/devices: boot_memory=70368744177664: "
                                          "memory would end at 0x400080000000, beyond"),
    ('[machine]\ngeometry = "teaching"\nboot_memory = "1T"\n', "4194304 memory blocks"),
    ('[machine]\nboot_memory = "99999999999999999999999999"\n', "machine.boot_memory"),
    ("x = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ('[machine]\ngeometry = "teaching"\nboot_memory = "1M"\n[[steps]]\ndo = "activity"\n'
     'kind = "files"\ncount = 1000000000\n', "count=1000000000 must be a whole number"),
])
def test_bad_files_say_where(text, where):
    with pytest.raises(ScenarioError) as err:
        run_scenario(parse_scenario(text, "base.toml"))
    assert where in str(err.value)


def test_a_byte_order_mark_is_fine(tmp_path):
    from vmemlab.scenario import load_scenario

    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + BASE.encode())
    assert load_scenario(path).title == "every action once, on a teaching machine"
