"""Every checker of every notebook, against a battery of malformed answers.

A checker must never raise, must never say "Right." to an answer that is
not the truth, must say "Wrong form:" (not "Not quite.") to an answer it
cannot read, and ``reveal()`` must never say "Right.".  The one
normalisation rule (``vmemlab.exercises.normalise``, ``same``) is checked
on every value exercise: the answer in each of its equivalent forms is
right.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import vmemlab as vm
from vmemlab.constants import errname
from vmemlab.exercises import (
    EXERCISES,
    Case,
    Feedback,
    FunctionExercise,
    ValueExercise,
    WrongForm,
    answer_key,
    load_all,
    normalise,
    same,
)

load_all()
ALL = list(EXERCISES.values())
VALUES = [e for e in ALL if isinstance(e, ValueExercise)]
FUNCTIONS = [e for e in ALL if isinstance(e, FunctionExercise)]


class Raising:
    """An answer whose repr, str, ==, hash, len and iteration all raise."""

    def _boom(self, *args, **kw):
        raise RuntimeError("boom")

    __repr__ = __str__ = __eq__ = __ne__ = __hash__ = __len__ = __iter__ = __bool__ = _boom
    __int__ = __index__ = __float__ = __lt__ = __gt__ = _boom


class AlwaysEqual:
    """An answer that claims to equal anything."""

    def __eq__(self, other):
        return True

    __hash__ = object.__hash__


def nested(depth: int):
    out: list = [1]
    for _ in range(depth):
        out = [out]
    return out


def malformed_values(answer):
    """Answers no checker can read: arrays (even of the answer), non-finite numbers,
    objects whose methods raise or that claim to equal anything, the string 'None'..."""
    one = answer if isinstance(answer, (int, float)) and not isinstance(answer, bool) else 1
    return [np.array([one]), np.array([[one]]), np.array([one, one]), np.zeros((2, 3)),
            np.array([], dtype=float), math.inf, -math.inf, math.nan, np.float64("nan"),
            Raising(), AlwaysEqual(), nested(5000), "None", " None ", b"bytes", 3 + 4j,
            object(), {"a": 1}, vm, print, Ellipsis.__class__, [Raising()], (math.nan,),
            {math.inf}]


# Readable, and never the truth: checkers may say "Not quite." or "Wrong form:".
NEVER_RIGHT = [10 ** 400, -(10 ** 400), 1e308, "", "   ", -1, (), (0,) * 50, "xyzzy"]


def raises(exc):
    def fn(*args):
        raise exc
    return fn


def returns(value):
    return lambda *args: value


BAD_FUNCTIONS = {
    "raises ValueError": raises(ValueError("bad")), "raises SystemExit": raises(SystemExit(3)),
    "raises GeneratorExit": raises(GeneratorExit()), "raises RecursionError": raises(
        RecursionError()), "raises an exception whose str raises": raises(
        type("Odd", (Exception,), {"__str__": Raising._boom})()),
    "returns an array": returns(np.array([1, 2])), "returns a 1-element array": None,
    "returns inf": returns(math.inf), "returns nan": returns(math.nan),
    "returns a raising object": returns(Raising()), "returns AlwaysEqual": returns(
        AlwaysEqual()), "returns a huge int": returns(10 ** 400), "returns 'None'": returns(
        "None"), "returns nested lists": returns(nested(5000)), "takes no arguments": (
        lambda: 0), "is not a function": 7, "is None": None,
}


def assert_feedback(fb, *, may_be_right=False):
    assert isinstance(fb, Feedback)
    text = repr(fb)                               # printing it never raises either
    assert isinstance(text, str) and isinstance(fb._repr_html_(), str)
    if not may_be_right:
        assert fb.ok is not True and not text.startswith("Right."), text
    return text


@pytest.mark.parametrize("ex", VALUES, ids=lambda e: e.key)
def test_value_checkers_survive_malformed_answers(ex):
    for bad in malformed_values(ex.answer):
        if isinstance(bad, str) and same(bad, ex.answer):
            continue                       # "None" is right where the answer is "none"
        text = assert_feedback(ex.check(bad))
        assert text.startswith("Wrong form:"), (ex.key, text)   # neutral: says the form
    for bad in NEVER_RIGHT:
        assert_feedback(ex.check(bad))
    assert ex.check(np.array([ex.answer], dtype=object)).verdict == "form"


@pytest.mark.parametrize("ex", VALUES, ids=lambda e: e.key)
def test_the_answer_is_right_in_every_form_of_the_rule(ex):
    answer = ex.answer
    forms = [answer]
    if isinstance(answer, int) and not isinstance(answer, bool):
        forms += [float(int(answer)), np.int64(int(answer)), np.array(int(answer))]
        if answer < 0:
            name = errname(int(answer))
            forms += [name, name.lstrip("-"), name.lower(), f"  {name}  "]
    elif isinstance(answer, str):
        forms += [answer.upper(), answer.replace("_", " "), f" {answer.title()} "]
    elif isinstance(answer, tuple):
        forms += [list(answer)]
    elif isinstance(answer, frozenset):
        forms += [set(answer), list(answer)]
    for form in forms:
        fb = ex.check(form)
        assert fb.ok is True and repr(fb).startswith("Right."), (ex.key, form, repr(fb))


@pytest.mark.parametrize("ex", ALL, ids=lambda e: e.key)
def test_reveal_never_says_right(ex):
    fb = ex.reveal()
    text = assert_feedback(fb)
    assert fb.ok is None and fb.verdict == "answer" and text.startswith("The answer:")


@pytest.mark.parametrize("ex", FUNCTIONS, ids=lambda e: e.key)
def test_function_checkers_survive_malformed_functions(ex):
    first = next(iter(ex.cases()))
    functions = dict(BAD_FUNCTIONS)
    functions["returns a 1-element array"] = returns(np.array([first.want]))
    functions["returns the answer in a list"] = returns([first.want])
    for name, fn in functions.items():
        fb = ex.check(fn)
        text = assert_feedback(fb)
        if name.startswith("returns") and "raising" not in name:
            assert fb.verdict in ("form", "wrong"), (ex.key, name, text)
    assert ex.check(raises(SystemExit(0))).ok is False
    assert ex.check(raises(NotImplementedError())).ok is None
    with pytest.raises(KeyboardInterrupt):           # the stop button still stops
        ex.check(raises(KeyboardInterrupt()))


@pytest.mark.parametrize("ex", FUNCTIONS, ids=lambda e: e.key)
def test_a_function_agreeing_in_every_form_of_the_rule_is_right(ex):
    table = {case.args: case.want for case in ex.cases()}

    def as_list_or_float(*args):
        want = table[args]
        if isinstance(want, tuple):
            return list(want)
        if isinstance(want, int) and not isinstance(want, bool):
            return float(want)
        return want

    for fn in (lambda *args: table[args], as_list_or_float,
               lambda *args: np.asarray(table[args]).item()
               if not isinstance(table[args], (tuple, type(None))) else table[args]):
        fb = ex.check(fn)
        assert fb.ok is True and repr(fb).startswith("Right."), (ex.key, repr(fb))


# ------------------------------------------------------------------ the rule itself
def test_normalise_reads_numbers_lists_and_numpy_scalars():
    assert normalise(3.0) == 3 and type(normalise(3.0)) is int
    assert normalise(np.int64(7)) == 7 and type(normalise(np.int64(7))) is int
    assert normalise(np.array(2.5)) == 2.5
    assert normalise([1, [2.0, np.int32(3)]]) == (1, (2, 3))
    assert normalise({1.0, 2}) == frozenset({1, 2})
    assert normalise(np.bool_(True)) is True and normalise(None) is None
    for bad, words in ((np.array([5]), "numpy array"), (math.nan, "finite"),
                       (math.inf, "finite"), ("None", "Python's None"), (1j, "complex"),
                       (nested(100), "nested")):
        with pytest.raises(WrongForm, match=words):
            normalise(bad)


def test_same_reads_names_and_errnos_one_way():
    assert same("Page_Cache", "page cache") and same("online-movable", "ONLINE_MOVABLE")
    assert same(-16, "EBUSY") and same("-EBUSY", vm.EBUSY) and same(" -ebusy ", -16)
    assert same((1, "a_b"), ("1".__class__("1") and 1, "A B"))
    assert not same(True, 1) and not same(None, 0) and not same("EBUSY", 16)
    assert answer_key(frozenset({"A_b"})) == frozenset({"a b"})
    with pytest.raises(WrongForm):
        answer_key(AlwaysEqual())


def test_wrong_forms_say_what_to_give_not_not_quite():
    ex = EXERCISES["02.merge_order"]
    fb = ex.check("four")
    assert fb.verdict == "form" and repr(fb).startswith("Wrong form:")
    assert "'four' cannot be the answer" in fb.text
    fb = ex.check("None")
    assert "use Python's None" in fb.text
    assert EXERCISES["01.hole_zone"].check("None").ok          # unless "none" is the answer
    fb = ex.check(np.array([ex.answer]))
    assert fb.verdict == "form" and "numpy array" in fb.text
    wrong = ex.check(ex.answer - 1)
    assert wrong.verdict == "wrong" and repr(wrong).startswith("Not quite.")


def test_a_function_returning_an_int_for_a_bool_is_told_the_form():
    ex = EXERCISES["05.goes_movable"]
    table = {case.args: case.want for case in ex.cases()}
    fb = ex.check(lambda *args: int(table[args]))
    assert fb.verdict == "form" and "True or False" in fb.text


def test_feedback_verdicts_match_ok():
    assert repr(Feedback(True, "x")) == "Right. x"
    assert repr(Feedback(None, "x", "answer")) == "The answer: x"
    with pytest.raises(ValueError, match="verdict"):
        Feedback(True, "x", "answer")
    assert Case((1,), 2).want == 2
