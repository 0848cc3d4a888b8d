"""vmemlab.slab: SLUB's slab geometry, shared caches, the CPU slab and partial slabs."""

from __future__ import annotations

import numpy as np
import pytest

import vmemlab as vm
from tests.conftest import teaching
from vmemlab.constants import PageKind
from vmemlab.slab import (
    DENTRY,
    EXT4_INODE,
    cache_spec,
    calculate_order,
    kmalloc_spec,
    kmem_cache,
)

# name: (objects per slab, order) as /proc/slabinfo of a 2-vCPU x86-64 6.x guest shows them
SLABINFO = {"kmalloc-8": (512, 0), "kmalloc-64": (64, 0), "kmalloc-96": (42, 0),
            "kmalloc-192": (21, 0), "kmalloc-256": (16, 0), "kmalloc-512": (16, 1),
            "kmalloc-1k": (16, 2), "kmalloc-2k": (16, 3), "kmalloc-4k": (8, 3),
            "kmalloc-8k": (4, 3)}


@pytest.mark.parametrize("name", sorted(SLABINFO))
def test_kmalloc_caches_are_laid_out_as_slub_does(name):
    size = int(name.split("-")[1].replace("k", "")) << (10 if name.endswith("k") else 0)
    spec = kmalloc_spec(size)
    assert spec.name == name and (spec.objs_per_slab, spec.order) == SLABINFO[name]
    assert not spec.reclaimable


def test_named_caches_match_slabinfo_and_scale_with_cpus():
    assert (DENTRY.object_size, DENTRY.order, DENTRY.objs_per_slab) == (192, 0, 21)
    assert (EXT4_INODE.object_size, EXT4_INODE.order, EXT4_INODE.objs_per_slab) == (1128, 2, 14)
    assert DENTRY.reclaimable and EXT4_INODE.reclaimable
    assert calculate_order(256, nr_cpus=64) == 1        # 32 objects per slab on a big machine


@pytest.mark.parametrize("size,name", [(1, "kmalloc-8"), (9, "kmalloc-16"), (65, "kmalloc-96"),
                                       (97, "kmalloc-128"), (129, "kmalloc-192"),
                                       (193, "kmalloc-256"), (1025, "kmalloc-2k"),
                                       (8192, "kmalloc-8k")])
def test_kmalloc_rounds_up_to_its_buckets(size, name):
    assert kmalloc_spec(size).name == name


@pytest.mark.parametrize("call,message", [
    (lambda: kmalloc_spec(0), "size=0 must be an int in 1..8192"),
    (lambda: kmalloc_spec(8193), "size=8193 must be an int in 1..8192 bytes (larger"),
    (lambda: cache_spec("x", 4), "object_size=4 must be an int in 8..32768"),
    (lambda: cache_spec("x", 1.5), "object_size=1.5 must be an int")])
def test_bad_sizes_are_refused(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        call()


def test_a_name_is_one_cache_shared_by_its_users():
    m = teaching()
    a = kmem_cache(m.slab_caches, m.node, kmalloc_spec(64))
    assert kmem_cache(m.slab_caches, m.node, kmalloc_spec(60)) is a
    assert m.node.owners[a.owner].name == "slab cache kmalloc-64"
    with pytest.raises(ValueError, match="slab cache 'kmalloc-64' exists with another shape"):
        kmem_cache(m.slab_caches, m.node, cache_spec("kmalloc-64", 128))


def test_cpu_slab_first_then_oldest_partial_then_new_slab():
    m = teaching(pages=256)
    cache = kmem_cache(m.slab_caches, m.node, kmalloc_spec(1024))     # 16 per order-2 slab
    first = cache.alloc(20)
    assert first.tolist() == [0] * 16 + [1] * 4 and cache.cpu_slab == 1
    cache.free(np.array([0, 0, 0]))                 # slab 0 is partial now
    assert cache.alloc(2).tolist() == [1, 1]        # the CPU slab still has room
    assert cache.alloc(12).tolist() == [1] * 10 + [0] * 2 and cache.cpu_slab == 0
    assert cache.alloc(2).tolist() == [0, 2] and cache.cpu_slab == 2
    assert cache.nr_objects == 33 and cache.nr_slabs == 3
    assert len(cache.pages()) == 12 and (cache.pages(np.array([2])) ==
                                         cache.slab_pfn[2] + np.arange(4)).all()


def test_an_empty_slab_is_discarded_unless_it_is_the_cpu_slab():
    m = teaching(pages=256)
    cache = kmem_cache(m.slab_caches, m.node, kmalloc_spec(1024))
    slabs = cache.alloc(20)
    free_before = m.zone("Normal").nr_free_pages
    assert cache.free(slabs[16:]) == 0              # slab 1 is the CPU slab: it stays, empty
    assert cache.nr_slabs == 2 and cache.inuse.tolist() == [16, 0]
    assert cache.free(slabs[:16]) == 4              # slab 0 goes back to the buddy allocator
    assert cache.slab_pfn[0] == -1 and m.zone("Normal").nr_free_pages == free_before + 4
    m.validate()


def test_a_slab_of_the_minimum_order_holds_fewer_objects():
    m = teaching(pages=256)
    held = []
    while (pfn := m.alloc_pages(0)) is not None:
        held.append(pfn)
    for pfn in held[::2]:                            # only single pages are free now
        m.free_pages(pfn, 0)
    cache = kmem_cache(m.slab_caches, m.node, kmalloc_spec(1024))
    slabs = cache.alloc(5)
    assert slabs.tolist() == [0, 0, 0, 0, 1]         # order-0 slabs: 4 objects each
    assert cache._order[:2].tolist() == [0, 0] and cache._objects[:2].tolist() == [4, 4]
    m.validate()


def test_validate_names_a_cache_whose_pages_went_astray():
    m = teaching(pages=256)
    cache = kmem_cache(m.slab_caches, m.node, kmalloc_spec(64))
    cache.alloc(3)
    m.validate()
    pfn = int(cache.slab_pfn[0])
    other = m.node.new_owner(PageKind.SLAB, "someone else").id
    m.node.mm.owner[pfn] = other                    # a bug hands the page to someone else
    with pytest.raises(vm.ValidationError, match=f"slab cache kmalloc-64: pfn {pfn:#x} is not"):
        m.validate()
    m.node.mm.owner[pfn] = cache.owner
    cache._inuse[0] = 65
    with pytest.raises(vm.ValidationError, match="slab 0 has 65 objects in use of 64"):
        m.validate()
