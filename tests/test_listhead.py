"""FreeList keeps the kernel's list order through every mix of single and batch operations."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmemlab import listhead
from vmemlab.listhead import FreeList

OPS = st.lists(st.tuples(st.sampled_from(["add", "add_tail", "extend", "extend_tail", "remove",
                                          "remove_many", "first", "pop_first", "pop_head"]),
                         st.integers(0, 40), st.integers(0, 10**6)), max_size=80)


class Reference:
    """The same list as an OrderedDict (the representation FreeList replaced)."""

    def __init__(self) -> None:
        self.d: OrderedDict[int, None] = OrderedDict()

    def add(self, pfn: int, tail: bool) -> None:
        self.d[pfn] = None
        if not tail:
            self.d.move_to_end(pfn, last=False)


@settings(max_examples=200, deadline=None)
@given(ops=OPS, segments=st.sampled_from([2, 16]))
def test_free_list_matches_an_ordered_dict(ops, segments):
    saved, listhead.MAX_SEGMENTS = listhead.MAX_SEGMENTS, segments  # compact often, or rarely
    try:
        _run(ops)
    finally:
        listhead.MAX_SEGMENTS = saved


def _run(ops):
    fl, ref = FreeList(), Reference()
    fresh = iter(range(10**6))
    for op, n, seed in ops:
        rng = np.random.default_rng(seed)
        held = list(ref.d)
        if op in ("add", "add_tail"):
            pfn = next(fresh)
            fl.add(pfn, tail=op == "add_tail")
            ref.add(pfn, tail=op == "add_tail")
        elif op in ("extend", "extend_tail"):
            pfns = [next(fresh) for _ in range(n)]
            fl.extend(np.array(pfns, np.int64), tail=op == "extend_tail")
            for p in pfns:
                ref.add(p, tail=op == "extend_tail")
        elif op == "remove" and held:
            pfn = held[seed % len(held)]
            fl.remove(pfn)
            del ref.d[pfn]
        elif op == "remove_many" and held:
            pick = rng.choice(held, size=min(n, len(held)), replace=False)
            fl.remove_many(pick)
            for p in pick.tolist():
                del ref.d[p]
        elif op == "first":
            assert fl.first() == (held[0] if held else None)
        elif op == "pop_first":
            k = min(n, len(held))
            assert np.asarray(fl.pop_first(k), np.int64).tolist() == held[:k]
            for p in held[:k]:
                del ref.d[p]
        elif op == "pop_head" and held:
            assert fl.pop_head() == held[0]
            del ref.d[held[0]]
        assert list(fl) == list(ref.d)
        assert len(fl) == len(ref.d) and bool(fl) == bool(ref.d)
    for p in list(ref.d)[:5]:
        assert p in fl
    assert -1 not in fl


def test_missing_blocks_raise_key_error():
    fl = FreeList()
    fl.extend(np.arange(4))
    fl.add(9)
    with pytest.raises(KeyError):
        fl.remove(5)
    with pytest.raises(KeyError):
        fl.remove_many(np.array([1, 7]))
    with pytest.raises(IndexError):
        fl.pop_first(9)
    with pytest.raises(IndexError):
        FreeList().pop_head()


def test_a_run_used_block_by_block_becomes_a_dict_in_the_same_order():
    fl, ref = FreeList(), Reference()
    pfns = np.arange(0, 4000, 2)
    fl.extend(pfns, tail=True)
    fl.add(9999)
    for p in pfns.tolist():
        ref.add(p, tail=True)
    ref.add(9999, tail=False)
    for p in pfns[::3].tolist():
        fl.remove(p)
        del ref.d[p]
    assert any(type(seg) is dict for seg in fl._segs)   # it switched
    assert list(fl) == list(ref.d)
    assert fl.first() == next(iter(ref.d))
