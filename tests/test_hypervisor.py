"""The QEMU device alone: the protocol table, in QEMU's order of checks."""

from __future__ import annotations

import pytest

import vmemlab as vm
from vmemlab.virtio_mem import Request
from vmemlab.virtio_mem import VirtioMemReq as Req
from vmemlab.virtio_mem import VirtioMemResp as Resp
from vmemlab.virtio_mem import VirtioMemState as State

MB2 = 2 * vm.MiB


@pytest.fixture
def dev():
    m = vm.Machine(boot_memory=2 * vm.GiB, seed=0)
    d = m.add_virtio_mem(region_size=1 * vm.GiB, requested_size=0)
    d.driver.broken = True          # drive the device by hand, no guest in the way
    d.on_config_change = None
    d.requested_size = 64 * vm.MiB
    return d


def req(d, kind, block=0, nb=1, addr=None):
    return d.handle_request(Request(kind, d.addr + block * MB2 if addr is None else addr, nb))


def test_usable_region_follows_qemu(dev):
    assert dev.usable_region_size == 64 * vm.MiB + 256 * vm.MiB
    dev.requested_size = 32 * vm.MiB          # never shrinks on qom-set
    assert dev.usable_region_size == 320 * vm.MiB
    dev.requested_size = 1 * vm.GiB           # capped at the region
    assert dev.usable_region_size == 1 * vm.GiB


@pytest.mark.parametrize("bad", [3 * vm.MiB, 2 * vm.GiB, "1k"])
def test_requested_size_validation(dev, bad):
    with pytest.raises(ValueError, match="requested-size"):
        dev.requested_size = bad
    assert dev.requested_size == 64 * vm.MiB


def test_plug_table(dev):
    assert req(dev, Req.PLUG, 0, 1).type == Resp.ACK
    assert dev.size == MB2 and dev.bitmap[0]
    assert req(dev, Req.PLUG, 0, 1).type == Resp.ERROR          # already plugged
    assert req(dev, Req.PLUG, 1, 32).type == Resp.NACK          # beyond requested
    assert req(dev, Req.PLUG, addr=dev.addr + 4096).type == Resp.ERROR   # misaligned
    assert req(dev, Req.PLUG, 1, 0).type == Resp.ERROR          # nb_blocks == 0
    assert req(dev, Req.PLUG, 160, 1).type == Resp.ERROR        # outside the usable region
    assert req(dev, Req.PLUG, addr=dev.addr - MB2).type == Resp.ERROR   # before the region


def test_checks_come_in_qemus_order(dev):
    # outside the usable region AND beyond requested: ERROR comes first
    assert req(dev, Req.PLUG, 159, 2).type == Resp.ERROR
    # beyond requested AND partly plugged: NACK comes before the state check
    req(dev, Req.PLUG, 0, 1)
    assert req(dev, Req.PLUG, 0, 32).type == Resp.NACK
    # busy only matters for valid requests
    dev.migrating = True
    assert req(dev, Req.PLUG, 0, 1).type == Resp.ERROR
    assert req(dev, Req.PLUG, 1, 1).type == Resp.BUSY
    assert req(dev, Req.UNPLUG, 0, 1).type == Resp.BUSY
    assert req(dev, Req.UNPLUG_ALL).type == Resp.BUSY
    dev.migrating = False
    assert req(dev, Req.PLUG, 1, 1).type == Resp.ACK


def test_unplug_table(dev):
    req(dev, Req.PLUG, 0, 4)
    assert req(dev, Req.UNPLUG, 4, 1).type == Resp.ERROR        # not plugged
    assert req(dev, Req.UNPLUG, 3, 2).type == Resp.ERROR        # partly plugged
    assert req(dev, Req.UNPLUG, 2, 2).type == Resp.ACK
    assert dev.size == 2 * MB2


def test_state_requests(dev):
    req(dev, Req.PLUG, 0, 2)
    assert req(dev, Req.STATE, 0, 2).state == State.PLUGGED
    assert req(dev, Req.STATE, 2, 2).state == State.UNPLUGGED
    assert req(dev, Req.STATE, 1, 2).state == State.MIXED
    assert req(dev, Req.STATE, 500, 1).type == Resp.ERROR


def test_unplug_all_shrinks_the_usable_region(dev):
    req(dev, Req.PLUG, 0, 8)
    dev.requested_size = 0
    assert dev.usable_region_size == 320 * vm.MiB
    assert req(dev, Req.UNPLUG_ALL).type == Resp.ACK
    assert dev.size == 0 and not dev.bitmap.any()
    assert dev.usable_region_size == 0


def test_unknown_request_breaks_the_device(dev):
    assert dev.handle_request(Request(7)) is None
    assert dev.broken
    assert dev.handle_request(Request(Req.STATE, dev.addr, 1)) is None


def test_system_reset_unplugs_unless_busy(dev):
    req(dev, Req.PLUG, 0, 4)
    dev.migrating = True
    dev.system_reset()
    assert dev.size == 4 * MB2
    dev.migrating = False
    dev.system_reset()
    assert dev.size == 0


def test_prealloc_without_host_memory_is_busy():
    m = vm.Machine(boot_memory=2 * vm.GiB)
    d = m.add_virtio_mem(region_size=1 * vm.GiB, prealloc=True, host_memory=4 * MB2)
    d.driver.broken = True
    d.on_config_change = None
    d.requested_size = 64 * vm.MiB
    assert req(d, Req.PLUG, 0, 4).type == Resp.ACK
    assert req(d, Req.PLUG, 4, 1).type == Resp.BUSY
    assert "preallocation failed" in m.qemu_log() and "qemu" not in m.dmesg()


def test_info_memory_devices_text(dev):
    req(dev, Req.PLUG, 0, 1)
    assert dev.info() == (
        'Memory device [virtio-mem]: "vmem0"\n'
        f"  memaddr: {dev.addr:#x}\n"
        "  node: 0\n"
        "  requested-size: 67108864\n"
        "  size: 2097152\n"
        "  max-size: 1073741824\n"
        "  block-size: 2097152\n"
        "  memdev: /objects/mem0\n")
    assert dev.addr == 4 * vm.GiB                 # 2 GiB guest: device memory starts at 4 GiB


def test_device_placement_and_block_size_checks():
    m = vm.Machine(boot_memory=4 * vm.GiB)
    a = m.add_virtio_mem(region_size=8 * vm.GiB)
    b = m.add_virtio_mem(region_size=2 * vm.GiB, block_size="1G")
    assert a.addr == 6 * vm.GiB and b.addr == 14 * vm.GiB
    with pytest.raises(ValueError, match="power of two"):
        m.add_virtio_mem(region_size=vm.GiB, block_size=3 * vm.MiB)
    with pytest.raises(ValueError, match="at least"):
        m.add_virtio_mem(region_size=vm.GiB, block_size=512 * 1024)
    with pytest.raises(ValueError, match="multiple"):
        m.add_virtio_mem(region_size=vm.GiB + vm.MiB)
    assert "memaddr: 0x380000000" in m.info_memory_devices()


def test_device_without_a_guest_driver_answers_raw_requests():
    m = vm.Machine(boot_memory=2 * vm.GiB, seed=0, trace=True)
    dev = m.add_virtio_mem(region_size=1 * vm.GiB, guest_driver=False)
    dev.requested_size = 4 * vm.MiB
    m.settle()
    assert dev.size == 0 and "no driver bound" in dev.driver.status()
    assert str(dev.handle_request(Request(Req.PLUG, dev.addr, 1))) == "ACK"
    assert str(dev.handle_request(Request(Req.STATE, dev.addr, 1))) == \
        "ACK state=PLUGGED"
    assert str(dev.handle_request(Request(Req.UNPLUG_ALL, 0, 0))) == "ACK"
    assert dev.size == 0
    names = [e.name for e in m.trace.events()]
    assert names[-7:] == ["virtio_mem_state_request", "virtio_mem_state_response",
                          "virtio_mem_send_response", "virtio_mem_unplug_all_request",
                          "virtio_mem_unplugged_all", "virtio_mem_resized_usable_region",
                          "virtio_mem_send_response"]
    assert str(m.trace.events("virtio_mem_unplugged_all")[0]) == "virtio_mem_unplugged_all:"
    assert str(m.trace.events("virtio_mem_resized_usable_region")[-1]) == (
        "virtio_mem_resized_usable_region: old_size=0x10400000 new_size=0x10400000")
    assert dev.handle_request(Request(7, dev.addr, 1)) is None and dev.broken
    assert m.qemu_log() == "qemu-system-x86_64: unknown request type: 7\n"
