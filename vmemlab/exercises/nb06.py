"""Exercises of notebook 06, the virtio-mem device (the spec and QEMU's device).

The notebook plays the guest driver by hand: it boots a 2 GiB guest, plugs a
virtio-mem-pci device with a 1 GiB memory backend (512 blocks of 2 MiB at
4 GiB), never lets the guest run (no ``m.run``/``m.settle``, so the Linux
driver's work item never executes) and sends raw requests with
``dev.handle_request(Request(...))``.  ``notebook_device(step)`` rebuilds the
notebook's device as it stands before each exercise, with the same calls in
the same order, and every answer and explanation comes from sending the
requests to it.

Also here: small text views the notebook prints (``config_table``,
``bitmap``, ``response_text``).

QEMU: hw/virtio/virtio-mem.c; virtio spec "Memory Device"
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import vmemlab as vm
from vmemlab.constants import GiB, MiB, format_size
from vmemlab.virtio_mem import Request, Response, VirtioMemReq, VirtioMemResp, VirtioMemState

from . import Case, FunctionExercise, PartHints, ValueExercise

BOOT_MEMORY = 2 * GiB
REGION_SIZE = 1 * GiB
BLOCKS_PER_ROW = 64            # 64 blocks of 2 MiB = one 128 MiB Linux memory block

# The requests of exercises 6.2 and 6.3: (type, first block, nb_blocks[, migrating]).
TABLE = (("PLUG", 4, 4), ("PLUG", 2, 1), ("UNPLUG", 6, 4), ("PLUG", 100, 60),
         ("PLUG", 100, 56), ("STATE", 96, 64), ("UNPLUG", 400, 1))
TWO_WRONGS = (("PLUG", 0, 1, False), ("PLUG", 383, 2, False), ("UNPLUG", 8, 1, True),
              ("UNPLUG", 4, 1, True), ("STATE", 0, 8, True))
ANSWERS = ("ACK", "NACK", "BUSY", "ERROR", "PLUGGED", "UNPLUGGED", "MIXED")


# -- the notebook's machine and device ----------------------------------------
def machine() -> tuple[vm.Machine, Any]:
    """A 2 GiB guest with a 1 GiB virtio-mem device, nothing requested yet."""
    m = vm.Machine(boot_memory=BOOT_MEMORY, seed=0, trace=True)
    dev = m.add_virtio_mem(region_size=REGION_SIZE)
    return m, dev


def fresh_machine() -> vm.Machine:
    """A new copy of the notebook's guest and device (``m.virtio_mem[0]``), nothing requested."""
    return machine()[0]


def block(dev: Any, i: int) -> int:
    """The guest-physical address of device block ``i``."""
    return dev.addr + i * dev.block_size


def send(dev: Any, kind: str, first: int, nb: int) -> Response | None:
    """Send one raw request, as the driver would, and return QEMU's response."""
    return dev.handle_request(Request(VirtioMemReq[kind], block(dev, first), nb))


def notebook_device(step: str) -> tuple[vm.Machine, Any]:
    """The notebook's device just before ``step`` ("usable", "table", "two_wrongs",
    "unplug_all"), rebuilt with the notebook's calls in the notebook's order."""
    steps = ("usable", "table", "two_wrongs", "unplug_all")
    if step not in steps:
        raise ValueError(f"step={step!r} is not one of {steps}")
    m, dev = machine()
    dev.requested_size = 64 * MiB
    if step == "usable":
        return m, dev
    dev.requested_size = 512 * MiB
    dev.requested_size = 128 * MiB
    send(dev, "PLUG", 0, 4)
    if step == "table":
        return m, dev
    for kind, first, nb in TABLE:
        send(dev, kind, first, nb)
    if step == "two_wrongs":
        return m, dev
    for kind, first, nb, migrating in TWO_WRONGS:
        dev.migrating = migrating
        send(dev, kind, first, nb)
    dev.migrating = False
    return m, dev


# -- text views --------------------------------------------------------------
def response_text(resp: Response | None) -> str:
    """A response's type as the spec names it: "ACK", "NACK", "BUSY", "ERROR"."""
    if resp is None:
        return "(no response: protocol violation, the device is broken)"
    return VirtioMemResp(resp.type).name


def state_text(resp: Response | None) -> str:
    """ACK of a STATE request with its state: "ACK state=MIXED"."""
    if resp is None or resp.type != VirtioMemResp.ACK:
        return response_text(resp)
    return f"ACK state={VirtioMemState(resp.state).name}"


def config_table(dev: Any) -> str:
    """struct virtio_mem_config as the guest driver reads it."""
    cfg = dev.config()
    rows = [("block_size", cfg.block_size), ("node_id", cfg.node_id), ("addr", cfg.addr),
            ("region_size", cfg.region_size), ("usable_region_size", cfg.usable_region_size),
            ("plugged_size", cfg.plugged_size), ("requested_size", cfg.requested_size)]
    lines = ["struct virtio_mem_config (little-endian, read-only for the driver)"]
    for name, value in rows:
        if name == "node_id":
            lines.append(f"  {name:<20} {value:>14}")
        else:
            lines.append(f"  {name:<20} {value:#14x}  {format_size(value)}")
    return "\n".join(lines)


def bitmap(dev: Any, rows: int | None = None) -> str:
    """QEMU's plugged bitmap, one row per 128 MiB (64 blocks of 2 MiB).

    ``#`` plugged, ``.`` unplugged inside the usable region, `` `` outside it.
    Rows after the last row with anything usable are left out unless
    ``rows`` asks for more.
    """
    nr = len(dev.bitmap)
    usable = dev.usable_region_size // dev.block_size
    per = BLOCKS_PER_ROW
    last = max(1, -(-usable // per)) if rows is None else rows
    lines = [f"{dev.name}: {nr} blocks of {format_size(dev.block_size)}; plugged "
             f"{format_size(dev.size)} of requested {format_size(dev.requested_size)}, "
             f"usable {format_size(dev.usable_region_size)} of {format_size(dev.region_size)}",
             "  block  address       # plugged  . unplugged  (blank: outside the usable region)"]
    for row in range(min(last, -(-nr // per))):
        cells = "".join("#" if dev.bitmap[i] else "." if i < usable else " "
                        for i in range(row * per, min(nr, (row + 1) * per)))
        lines.append(f"  {row * per:5}  {block(dev, row * per):#012x}  {cells.rstrip()}")
    return "\n".join(lines)


# -- answer forms --------------------------------------------------------------
def _mib(x: object) -> int:
    """A size in MiB: 768, "768M", "768 MiB", or bytes (805306368)."""
    if isinstance(x, str):
        if not any(c.isalpha() for c in x):
            raise ValueError('give a number of MiB (768) or a size with its unit ("768M")')
        nbytes = vm.parse_size(x)
    elif isinstance(x, bool) or not isinstance(x, int):
        raise TypeError("a size is a whole number of MiB, such as 768")
    elif 0 <= x <= REGION_SIZE // MiB:
        return x
    else:
        nbytes = x
    if nbytes < 0 or nbytes % MiB:
        raise ValueError(f"{x!r} is not a whole number of MiB")
    if nbytes > REGION_SIZE:
        raise ValueError(f"the region is only {format_size(REGION_SIZE)}")
    return nbytes // MiB


def _token(x: object) -> str:
    if isinstance(x, (VirtioMemResp, VirtioMemState)):
        return x.name
    if not isinstance(x, str):
        raise TypeError(f"each answer is a name: {', '.join(ANSWERS)}")
    name = x.strip().upper().removeprefix("VIRTIO_MEM_RESP_").removeprefix("VIRTIO_MEM_STATE_")
    if name not in ANSWERS:
        raise ValueError(f"{x!r} is not one of {', '.join(ANSWERS)}")
    return name


def _tokens(n: int) -> Any:
    def accept(x: object) -> tuple[str, ...]:
        if isinstance(x, str) or not isinstance(x, (tuple, list)):
            raise TypeError(f"give a list of {n} names, one per request, in order")
        if len(x) != n:
            raise ValueError(f"there are {n} requests; you gave {len(x)} answers")
        return tuple(_token(t) for t in x)
    return accept


class ItemHints(PartHints):
    """Hints for a tuple answer, looked up item by item.

    ``per_item[i]`` maps a wrong answer to request ``i`` to what it usually
    shows; ``get(guess)`` joins the hints for every item the guess got wrong.
    """

    def __init__(self, truth: Any, per_item: dict[int, dict[str, str]]) -> None:
        super().__init__(truth)
        self._per_item = per_item

    def lines(self, guess: Any, truth: Any) -> list[str]:
        return [f"request {i + 1}: {self._per_item[i][g]}"
                for i, g in enumerate(guess)
                if i < len(truth) and g != truth[i] and g in self._per_item.get(i, {})]


# -- why QEMU answers what it answers -----------------------------------------
def why(dev: Any, kind: str, first: int, nb: int) -> tuple[str, str]:
    """The answer QEMU will give and the check that decides it, worked out *before* sending.

    QEMU: virtio_mem_handle_request(), virtio_mem_state_change_request(),
    virtio_mem_valid_range(), virtio_mem_state_request()
    """
    span = f"blocks {first}-{first + nb - 1}" if nb > 1 else f"block {first}"
    usable = dev.usable_region_size // dev.block_size
    if kind == "UNPLUG_ALL":
        return ("BUSY", "the device is busy") if dev.busy and dev.size else \
               ("ACK", "everything is discarded")
    if nb == 0 or not dev.valid_range(block(dev, first), nb * dev.block_size):
        where = ("nb_blocks is 0" if nb == 0 else
                 f"{span} start before the region" if first < 0 else
                 f"{span} {'reach' if nb > 1 else 'lies'} past the usable region "
                 f"(blocks 0-{usable - 1})")
        return "ERROR", f"the range check comes first: {where}"
    bits = dev.bitmap[first:first + nb]
    if kind == "STATE":
        state = "PLUGGED" if bits.all() else "UNPLUGGED" if not bits.any() else "MIXED"
        return state, (f"{int(bits.sum())} of the {nb} blocks are plugged; STATE never "
                       "answers BUSY")
    if kind == "PLUG" and dev.size + nb * dev.block_size > dev.requested_size:
        return "NACK", (f"{format_size(dev.size)} plugged + {format_size(nb * dev.block_size)}"
                        f" would pass the requested {format_size(dev.requested_size)}, and "
                        "QEMU checks that before the blocks' states")
    if kind == "PLUG" and bits.any():
        return "ERROR", _how_many(bits, nb, span, "already plugged")
    if kind == "UNPLUG" and not bits.all():
        return "ERROR", _how_many(~bits, nb, span, "not plugged")
    if dev.busy:
        return "BUSY", "a valid request, but migration is running (virtio_mem_is_busy())"
    before = "unplugged" if kind == "PLUG" else "plugged"
    verb = "plugs" if kind == "PLUG" else "unplugs"
    return "ACK", (f"in range, {'within requested_size, ' * (kind == 'PLUG')}all {before}: "
                   f"QEMU {verb} {span}")


def _how_many(bad: Any, nb: int, span: str, what: str) -> str:
    n = int(bad.sum())
    if nb == 1:
        return f"{span} is {what}"
    return f"{n} of the {nb} blocks {'is' if n == 1 else 'are'} {what}"


def _answer_of(resp: Response | None, kind: str) -> str:
    if resp is None:
        raise AssertionError("the device broke on a well-formed request")
    if kind == "STATE" and resp.type == VirtioMemResp.ACK:
        return VirtioMemState(resp.state).name
    return VirtioMemResp(resp.type).name


def _run(step: str, requests: tuple) -> list[tuple[str, str, str]]:
    """Send ``requests`` to the notebook's device; (request, answer, reason) each."""
    _, dev = notebook_device(step)
    out = []
    for kind, first, nb, *flag in requests:
        dev.migrating = bool(flag and flag[0])
        expect, reason = why(dev, kind, first, nb)
        resp = send(dev, kind, first, nb)
        got = _answer_of(resp, kind)
        if got != expect:
            raise AssertionError(f"{kind} {first} {nb}: QEMU's checks say {expect}, "
                                 f"the model answered {got}")
        busy = " (migrating)" if dev.migrating else ""
        out.append((f"{kind} {first}+{nb}{busy}", got, reason))
    return out


def _explain_run(step: str, requests: tuple) -> str:
    rows = _run(step, requests)
    return "\n".join(f"  {i + 1}. {r:<26} {a:<9} {why_}" for i, (r, a, why_) in
                     enumerate(rows))


# -- 06.usable_after -----------------------------------------------------------
def _usable_after() -> int:
    _, dev = notebook_device("usable")
    dev.requested_size = 512 * MiB
    dev.requested_size = 128 * MiB
    return dev.usable_region_size // MiB


def _explain_usable(mib: int) -> str:
    m, dev = notebook_device("usable")
    before = dev.usable_region_size // MiB
    dev.requested_size = 512 * MiB
    grown = dev.usable_region_size // MiB
    m.trace.clear()
    dev.requested_size = 128 * MiB
    events = m.trace.events("virtio_mem_resized_usable_region")
    return (f"qom-set 512M grows the usable region from {before} to min(1024, 512 + 256) = "
            f"{grown} MiB (virtio_mem_resize_usable_region()).  qom-set 128M would give "
            f"128 + 256 = 384 MiB, but a qom-set may only grow it: QEMU returns early "
            f"({'no' if not events else len(events)} resize event), so it stays {mib} MiB.  "
            "Only UNPLUG_ALL and a system reset shrink it.")


usable_after = ValueExercise(
    "06.usable_after",
    "The usable region is 320 MiB after qom-set requested-size 64M.  Then the host "
    "sets 512M, then 128M.  How big is usable_region_size now, in MiB?",
    _usable_after, _explain_usable, _mib,
    hints={384: "128 + 256 = 384 is what the usable region would be if it followed "
                "requested_size down; it never shrinks on a qom-set.",
           128: "The usable region is larger than requested_size: QEMU adds 256 MiB "
                "(VIRTIO_MEM_USABLE_EXTENT) so the guest can choose whole memory blocks.",
           512: "Add QEMU's 256 MiB extent to the largest request.",
           1024: "512 + 256 MiB fits inside the 1 GiB region, so the cap does not apply."})


# -- 06.protocol_table ---------------------------------------------------------
def _table() -> tuple[str, ...]:
    return tuple(a for _, a, _ in _run("table", TABLE))


protocol_table = ValueExercise(
    "06.protocol_table",
    "Predict QEMU's answer to each of the seven requests of the table, sent in order: "
    "ACK, NACK, BUSY or ERROR (for STATE: PLUGGED, UNPLUGGED or MIXED).",
    _table, lambda truth: "Request by request, with the check that decided:\n"
                          + _explain_run("table", TABLE),
    _tokens(len(TABLE)),
    hints=ItemHints(_table, {
        1: {"NACK": "NACK is only about requested_size; plugging a plugged block is a "
                    "malformed request: ERROR.",
            "ACK": "QEMU refuses to plug a block that is already plugged."},
        2: {"ACK": "every block of an UNPLUG must be plugged; blocks 8 and 9 are not.",
            "NACK": "NACK exists for PLUG only."},
        3: {"ERROR": "the range is valid and unplugged; what is wrong is the size: more "
                     "than requested is NACK."},
        4: {"NACK": "after request 1, 8 blocks (16 MiB) are plugged; 56 more make exactly "
                    "the requested 128 MiB, which is allowed."},
        5: {"UNPLUGGED": "blocks 100-155 were plugged by request 5; 96-99 were not.",
            "PLUGGED": "blocks 96-99 were never plugged.",
            "ACK": "for STATE, give the state the ACK carries."},
        6: {"NACK": "NACK exists for PLUG only; a block outside the usable region is a "
                    "malformed request."}}))


# -- 06.two_wrongs -------------------------------------------------------------
def _two_wrongs() -> tuple[str, ...]:
    return tuple(a for _, a, _ in _run("two_wrongs", TWO_WRONGS))


two_wrongs = ValueExercise(
    "06.two_wrongs",
    "Each request is wrong in two ways (or sent while a migration runs).  Which answer "
    "does QEMU give to each?",
    _two_wrongs, lambda truth: "QEMU checks the range, then requested_size (PLUG), then "
                               "the blocks' states, then busy:\n"
                               + _explain_run("two_wrongs", TWO_WRONGS),
    _tokens(len(TWO_WRONGS)),
    hints=ItemHints(_two_wrongs, {
        0: {"ERROR": "block 0 is plugged, but QEMU tests requested_size before it looks "
                     "at the bitmap."},
        1: {"NACK": "the range check comes first of all: block 384 is outside the usable "
                    "region."},
        2: {"BUSY": "BUSY is only for requests that are otherwise valid; block 8 is not "
                    "plugged."},
        3: {"ACK": "during migration QEMU cannot change the bitmap: BUSY.",
            "ERROR": "block 4 is plugged and in range, so the request itself is fine."},
        4: {"BUSY": "STATE only reads the bitmap; QEMU never answers BUSY to it.",
            "ACK": "for STATE, give the state the ACK carries."}}))


# -- 06.unplug_all_usable -----------------------------------------------------------
def _unplug_all_usable() -> int:
    _, dev = notebook_device("unplug_all")
    dev.requested_size = 100 * MiB
    resp = dev.handle_request(Request(VirtioMemReq.UNPLUG_ALL))
    if resp is None or resp.type != VirtioMemResp.ACK:
        raise AssertionError("UNPLUG_ALL was not acknowledged")
    return dev.usable_region_size // MiB


def _explain_unplug_all(mib: int) -> str:
    _, dev = notebook_device("unplug_all")
    dev.requested_size = 100 * MiB
    before = dev.usable_region_size // MiB
    plugged = dev.size // MiB
    dev.handle_request(Request(VirtioMemReq.UNPLUG_ALL))
    return (f"qom-set 100M left the usable region at {before} MiB (a qom-set never "
            f"shrinks it).  UNPLUG_ALL discarded all {plugged} MiB, then recomputed the "
            f"usable region with shrinking allowed: 100 + 256 = {mib} MiB "
            "(virtio_mem_unplug_all() -> virtio_mem_resize_usable_region(..., true)).")


unplug_all_usable = ValueExercise(
    "06.unplug_all_usable",
    "The host lowers requested-size to 100M, then the driver sends UNPLUG_ALL.  How big "
    "is usable_region_size after the ACK, in MiB?",
    _unplug_all_usable, _explain_unplug_all, _mib,
    hints={768: "A qom-set cannot shrink the usable region, but UNPLUG_ALL can: it is one "
                "of the two moments the spec allows it.",
           0: "UNPLUG_ALL empties the bitmap, but the usable region follows "
              "requested_size (100 MiB), not the plugged size.",
           100: "QEMU keeps its 256 MiB extent above requested_size."})


# -- 06.qemu_response -----------------------------------------------------------------
TEACH_BLOCKS = 32                 # a teaching-geometry region: 32 blocks of 32 KiB


def _teaching_device(pattern: str, requested: int, lowered: int) -> tuple[vm.Machine, Any]:
    """A teaching machine whose device has ``pattern`` plugged.

    It plugs with requested_size = ``requested`` blocks (so the usable region
    is ``requested`` + 16 blocks, at most 32), then lowers the request to
    ``lowered`` blocks, which leaves the usable region where it was.
    """
    m = vm.Machine(boot_memory=256 * 4096, geometry="teaching", seed=0)
    probe = m.add_virtio_mem(region_size=TEACH_BLOCKS * 8 * 4096)
    probe.requested_size = requested * probe.block_size
    for i, c in enumerate(pattern):
        if c == "#":
            send(probe, "PLUG", i, 1)
    probe.requested_size = lowered * probe.block_size
    return m, probe


STATES = (("####" + "." * 28, 8, 8), ("####....####" + "." * 20, 8, 8),
          ("######" + "." * 26, 8, 4), ("....####" + "." * 24, 16, 16))
REQUESTS = (("PLUG", 4, 1), ("PLUG", 3, 2), ("PLUG", 0, 1), ("PLUG", 20, 4), ("PLUG", 22, 4),
            ("PLUG", 23, 1), ("PLUG", 24, 1), ("PLUG", -1, 1), ("PLUG", 4, 0), ("PLUG", 4, 8),
            ("UNPLUG", 0, 4), ("UNPLUG", 2, 4), ("UNPLUG", 5, 1), ("UNPLUG", 30, 1),
            ("UNPLUG", 0, 0), ("UNPLUG", 4, 4))


@lru_cache(maxsize=1)
def _response_cases() -> tuple[Case, ...]:
    cases = []
    for busy in (False, True):
        for pattern, requested, lowered in STATES[:2] if busy else STATES:
            for kind, first, nb in REQUESTS:
                _, dev = _teaching_device(pattern, requested, lowered)
                dev.migrating = busy
                usable = dev.usable_region_size // dev.block_size
                got = _answer_of(send(dev, kind, first, nb), kind)
                cases.append(Case((kind, first, nb, pattern, lowered, usable, busy), got))
    return tuple(cases)


def _explain_response(case: Case) -> str:
    kind, first, nb, pattern, requested, _usable, busy = case.args
    first_request = {(p, lo): r for p, r, lo in STATES}[pattern, requested]
    _, dev = _teaching_device(pattern, first_request, requested)
    dev.migrating = busy
    _, reason = why(dev, kind, first, nb)
    return (f"QEMU checks in this order: range (ERROR), requested_size for PLUG (NACK), "
            f"the blocks' states (ERROR), busy (BUSY), else ACK.  Here: {reason}.")


qemu_response = FunctionExercise(
    "06.qemu_response",
    "Write qemu_response(kind, first, nb, plugged, requested, usable, busy): QEMU's "
    "answer to a PLUG or UNPLUG of blocks [first, first+nb).",
    "qemu_response", _response_cases, _explain_response,
    'if nb == 0 or first < 0 or first + nb > usable: return "ERROR"; '
    'if kind == "PLUG" and plugged.count("#") + nb > requested: return "NACK"; '
    'if any(c != ("." if kind == "PLUG" else "#") for c in plugged[first:first + nb]): '
    'return "ERROR"; return "BUSY" if busy else "ACK"', authority="QEMU")
