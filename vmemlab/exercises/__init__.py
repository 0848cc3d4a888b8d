"""Predict-then-reveal exercises with an instant checker.

Every exercise asks for a prediction about something the model does (a
pfn, an order, a return code) or for a small function (``find_buddy``),
works out the truth by running the model, and compares.  The feedback says
right or wrong *and why*, in words computed from the same run, so a wrong
guess still teaches something.  There is no hard-coded answer key.

In a notebook::

    from vmemlab.exercises import nb02 as ex
    prediction = ...                  # the student replaces ... with a guess
    ex.merge_order.check(prediction)  # right / not quite, and why

``check`` never raises: an unanswered ``...``, an answer of the wrong form
and a function that crashes all come back as feedback, marked "Right.",
"Not quite." (a real answer, and wrong), "Wrong form:" (not an answer this
exercise can read; the text says what to give) or "No prediction yet.".
Every answer goes through one rule first (``normalise``, ``same``): case,
spaces and underscores in names, lists and tuples, ``3.0`` and ``3``, and
``-16``, ``"EBUSY"``, ``"-EBUSY"`` and ``vm.EBUSY`` do not matter; numpy
arrays, NaN, infinities and the string ``'None'`` are the wrong form.
``correct`` is the bare boolean that nbgrader's hidden tests assert;
``reveal`` shows the answer, marked "The answer:" (never "Right.": a
student who gave up has not been judged).  Each notebook's module
(``nb01``, ``nb02``, ...) defines its exercises with ``ValueExercise`` and
``FunctionExercise``; ``EXERCISES`` holds them all, keyed ``"NN.name"``,
for the instructor guide and tests.
"""

from __future__ import annotations

import enum
import html
import importlib
import math
import pkgutil
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from vmemlab.constants import Errno

EXERCISES: dict[str, Exercise] = {}

# A verdict's mark and colour (Okabe-Ito).  ``ok`` is True only for "right".
_MARK = {"right": "Right.", "wrong": "Not quite.", "form": "Wrong form:",
         "pending": "No prediction yet.", "answer": "The answer:"}
_COLOUR = {"right": "#009E73", "wrong": "#D55E00", "form": "#999999", "pending": "#999999",
           "answer": "#0072B2"}
_OK = {"right": True, "wrong": False, "form": False, "pending": None, "answer": None}
MAX_DEPTH = 32          # nesting of lists a checker reads before calling it the wrong form
MAX_SHOWN = 120         # characters of a student's answer quoted back


@dataclass(frozen=True)
class Feedback:
    """What a checker says: ``ok`` is True (right), False (wrong, or the wrong form)
    or None (nothing to judge: no prediction yet, or the answer revealed).

    ``verdict`` names which: "right", "wrong", "form", "pending" or "answer";
    it picks the mark printed before the text ("Right.", "Not quite.",
    "Wrong form:", "No prediction yet.", "The answer:").
    """

    ok: bool | None
    text: str
    verdict: str = ""

    def __post_init__(self) -> None:
        if not self.verdict:
            object.__setattr__(self, "verdict", {True: "right", False: "wrong",
                                                 None: "pending"}[self.ok])
        if _OK[self.verdict] is not self.ok:
            raise ValueError(f"verdict {self.verdict!r} does not go with ok={self.ok}")

    def __bool__(self) -> bool:
        return bool(self.ok)

    def __repr__(self) -> str:
        return f"{_MARK[self.verdict]} {self.text}"

    def _repr_html_(self) -> str:
        body = html.escape(self.text)
        return (f'<div style="border-left:4px solid {_COLOUR[self.verdict]};padding:2px 10px;'
                f'white-space:pre-wrap"><b>{_MARK[self.verdict]}</b> {body}</div>')


def wrong_form(text: str) -> Feedback:
    """Feedback on an answer that cannot be judged: neutral, it says which form to give."""
    return Feedback(False, text, "form")


# ------------------------------------------------------------------ one normalisation rule
class WrongForm(ValueError):
    """An answer no checker can read; the message says what to give instead."""


def normalise(x: Any, _depth: int = 0) -> Any:
    """Bring an answer (or a student function's result) into the one form checkers read.

    The rule, the same for every exercise, value or function:

    * numpy scalars and 0-d arrays are the Python scalars they hold; an
      integral float is an int (``3.0`` is ``3``); NaN and infinities are the
      wrong form;
    * lists are tuples (``[1, 2]`` is ``(1, 2)``), inside too; sets are
      frozensets;
    * a numpy array of one or more dimensions is the wrong form, even with
      one element: give ``int(a[0])`` or ``tuple(a.tolist())``, so an array
      is never taken for the number it happens to hold;
    * the string ``'None'`` is the wrong form: Python's ``None`` is meant;
    * strings, bools and ``None`` stay as they are (``same`` compares strings
      without regard to case, spaces, underscores or hyphens, and reads errno
      names: ``-16 == "EBUSY" == "-EBUSY" == vm.EBUSY``);
    * anything else (including objects whose ``==`` or ``repr`` would
      raise) is left to the exercise's ``accept``, and ``same`` refuses it.

    Raises WrongForm, never anything else.
    """
    if _depth > MAX_DEPTH:
        raise WrongForm(f"give a flat answer, not lists nested over {MAX_DEPTH} deep")
    if x is None or isinstance(x, (bool, np.bool_)):
        return None if x is None else bool(x)
    if isinstance(x, np.ndarray):
        if x.ndim == 0:
            return normalise(x.item(), _depth + 1)
        raise WrongForm(f"give a plain Python value, not a numpy array of shape {x.shape}: "
                        "int(a[0]) for one number, tuple(a.tolist()) for several")
    if isinstance(x, np.generic):
        return normalise(x.item(), _depth + 1)
    if isinstance(x, str):
        if x.strip() == "None":
            raise WrongForm("use Python's None (no quotes), not the string 'None'")
        return x
    if isinstance(x, float):
        if not math.isfinite(x):
            raise WrongForm(f"give a finite number, not {x}")
        return int(x) if x.is_integer() and type(x) is float else x
    if isinstance(x, complex):
        raise WrongForm("give a real number, not a complex one")
    if isinstance(x, (list, tuple)):
        return tuple(normalise(v, _depth + 1) for v in x)
    if isinstance(x, (set, frozenset)):
        items = frozenset(normalise(v, _depth + 1) for v in x)
        return x if type(x) not in (set, frozenset) and items == x else items
    return x


_ERRNO_NAME = re.compile(r"-?\s*(E[A-Z0-9]+)")
_SEPARATORS = re.compile(r"[\s_\-]+")


def answer_key(x: Any, _depth: int = 0) -> Any:
    """What two answers must share to be the same answer (after ``normalise``).

    Numbers by value (bools apart from ints), strings without regard to
    case, spaces, underscores and hyphens, errno names as their negative
    numbers, tuples and sets by their items.  Raises WrongForm for anything
    else: an answer must be made of these.
    """
    if _depth > MAX_DEPTH:
        raise WrongForm(f"give a flat answer, not lists nested over {MAX_DEPTH} deep")
    if x is None or isinstance(x, bool):
        return ("const", x)
    if isinstance(x, enum.Enum) and isinstance(x, int):
        return int(x)
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return int(x) if x.is_integer() else float(x)
    if isinstance(x, str):
        errno = _ERRNO_NAME.fullmatch(x.strip().upper())
        if errno and errno.group(1) in Errno.__members__:
            return -int(Errno[errno.group(1)])
        return _SEPARATORS.sub(" ", x.strip().casefold()).strip()
    if isinstance(x, tuple):
        return tuple(answer_key(v, _depth + 1) for v in x)
    if isinstance(x, frozenset):
        return frozenset(answer_key(v, _depth + 1) for v in x)
    raise WrongForm(f"give numbers, strings, None, True/False, or tuples and sets of them, "
                    f"not a {type(x).__name__}")


def _same_or_unreadable(value: Any, truth: Any) -> bool:
    """``same(value, truth)``, or False when the rule cannot read ``value`` (``accept`` may)."""
    try:
        return same(value, truth)
    except WrongForm:
        return False


def same(a: Any, b: Any) -> bool:
    """Whether two normalised answers are the same answer (``answer_key`` equal)."""
    return bool(answer_key(a) == answer_key(b))


def shown(x: Any) -> str:
    """An answer as a student reads it back: never raises, never runs for pages."""
    try:
        text = repr(x) if isinstance(x, str) else str(x)
    except Exception:  # the student's object: its repr may raise anything
        text = f"<a {type(x).__name__} that cannot be printed>"
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 3] + "..."


class Exercise(ABC):
    """The part every exercise shares: a key, a question, check/correct/reveal."""

    key: str
    question: str

    def check(self, prediction: Any) -> Feedback:
        """Compare a prediction with the model; say why either way.  Never raises."""
        if prediction is Ellipsis:
            name = self.key.split(".", 1)[1]
            return Feedback(None, "Replace ... with your prediction and run the cell again "
                                  f"(or run ex.{name}.reveal() to see the answer).")
        return self.judge(prediction)

    def correct(self, prediction: Any) -> bool:
        """Whether ``prediction`` is right (what graded tests assert)."""
        return self.check(prediction).ok is True

    @abstractmethod
    def judge(self, prediction: Any) -> Feedback:
        """Feedback on a prediction that is not ``...``."""

    @abstractmethod
    def reveal(self) -> Feedback:
        """The answer and why, without a prediction (never "Right.": nothing was judged)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key}: {self.question}>"
class PartHints(Mapping):
    """Hints for an answer with parts (a tuple, a pair, a set), looked up part by part.

    A ``ValueExercise``'s ``hints`` usually map whole wrong answers to a
    hint; for answers with parts that would need every combination.  A
    subclass instead says, in ``lines(guess, truth)``, one hint line per
    part the guess got wrong that it has a hint for; ``get(guess)`` joins
    them, or gives None when there is none.  ``truth`` is a callable (the
    exercise's ``solve``), called only when a hint is looked up.
    """

    def __init__(self, truth: Callable[[], Any]) -> None:
        self._truth = truth

    @abstractmethod
    def lines(self, guess: Any, truth: Any) -> list[str]:
        """One hint line per wrong part of ``guess`` that has a hint."""

    def __getitem__(self, guess: Any) -> str:
        found = self.lines(guess, self._truth())
        if not found:
            raise KeyError(guess)
        return "\n".join(found)

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def __len__(self) -> int:
        return 0


class LazyHints(Mapping):
    """Hints whose keys come from running the model, built on first use."""

    def __init__(self, build: Callable[[], dict]) -> None:
        self._build = build

    @cached_property
    def _data(self) -> dict:
        return self._build()

    def __getitem__(self, key: Any) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


@dataclass(eq=False, repr=False)
class ValueExercise(Exercise):
    """Predict a value: a number, a name, a tuple of pfns.

    ``solve()`` runs the model and returns the true answer (once).
    ``explain(truth)`` says why.  ``accept(prediction)`` brings what the
    student typed (already ``normalise``d) into the answer's form, raising
    ValueError or TypeError with a message when it cannot be an answer.
    ``hints`` maps common wrong answers to the misunderstanding they usually
    show (looked up by ``answer_key``, so "Page_Cache" finds "page cache").
    """

    key: str
    question: str
    solve: Callable[[], Any]
    explain: Callable[[Any], str]
    accept: Callable[[Any], Any] = lambda x: x
    hints: Mapping[Any, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        register(self)

    @cached_property
    def answer(self) -> Any:
        """The model's answer."""
        return self.solve()

    def judge(self, prediction: Any) -> Feedback:
        """The rule first: an answer ``same`` as the truth is right in any form.  Then
        ``accept`` reads the other forms it knows (hex strings, sizes with units...)."""
        try:
            if _same_or_unreadable(prediction, self.answer):       # "None" when it is "none"
                return Feedback(True, self.explain(self.answer))
            value = normalise(prediction)
            if _same_or_unreadable(value, self.answer):
                return Feedback(True, self.explain(self.answer))
            guess = self.accept(value)
            hit = same(normalise(guess), self.answer)
        except Exception as err:  # any answer at all must come back as feedback
            return wrong_form(f"{_reason(err)}; {shown(prediction)} cannot be the answer.")
        if hit:
            return Feedback(True, self.explain(self.answer))
        said = f"You said {shown(guess)}; the model says {shown(self.answer)}."
        return Feedback(False, "\n".join(filter(None, [said, self._hint(guess),
                                                        self.explain(self.answer)])))

    def _hint(self, guess: Any) -> str | None:
        """The hint for a wrong guess, if any (a hint lookup never fails a check)."""
        try:
            if isinstance(self.hints, dict):
                key = answer_key(normalise(guess))
                return next((h for k, h in self.hints.items()
                             if answer_key(normalise(k)) == key), None)
            return self.hints.get(guess) if _hashable(guess) else None
        except Exception:  # hints are a courtesy: a failing lookup is no hint
            return None

    def reveal(self) -> Feedback:
        return Feedback(None, f"{shown(self.answer)}. {self.explain(self.answer)}", "answer")


@dataclass(frozen=True)
class Case:
    """One call of a function exercise and the result the kernel's code gives."""

    args: tuple
    want: Any


@dataclass(eq=False, repr=False)
class FunctionExercise(Exercise):
    """Write a function; it must agree with the kernel's on every case.

    ``cases()`` lists the calls and the model's results; ``explain(case)``
    says what the kernel (or ``authority``) does in the first case that
    differs; ``reference`` is a one-line model answer shown by ``reveal``.
    Results are compared by the rule of ``normalise`` and ``same``.  A
    function that raises anything (nbgrader's ``NotImplementedError`` stub,
    ``SystemExit`` from ``exit()``...) gets feedback; only KeyboardInterrupt
    goes through, so the notebook's stop button still stops a function that
    never returns.
    """

    key: str
    question: str
    name: str
    cases: Callable[[], Iterable[Case]]
    explain: Callable[[Case], str]
    reference: str
    authority: str = "the kernel"  # whose code the cases come from (QEMU for the device)

    def __post_init__(self) -> None:
        register(self)

    def judge(self, fn: Any) -> Feedback:
        if not callable(fn):
            return wrong_form(f"pass the function {self.name} itself (no brackets), "
                              f"not {shown(fn)}.")
        cases = list(self.cases())
        for case in cases:
            call = f"{self.name}({', '.join(map(repr, case.args))})"
            try:
                got = fn(*case.args)
            except NotImplementedError:
                return Feedback(None, f"{self.name} is not written yet.")
            except KeyboardInterrupt:
                raise
            except BaseException as err:  # the student's code: report it, never crash
                return Feedback(False, f"{call} raised {type(err).__name__}: {shown(err)}")
            verdict = self._compare(call, got, case)
            if verdict is not None:
                return verdict
        return Feedback(True, f"{self.name} agrees with {self.authority} on all "
                              f"{len(cases)} cases.")

    def _compare(self, call: str, got: Any, case: Case) -> Feedback | None:
        """None when ``got`` is ``case.want``; else the feedback that says how it is not."""
        try:
            value = normalise(got)
            if isinstance(case.want, bool) and not isinstance(value, bool):
                raise WrongForm("return True or False")
            hit = same(value, case.want)
        except Exception as err:  # whatever it returned, say so
            return wrong_form(f"{call} returned {shown(got)}: {_reason(err)}.")
        if hit:
            return None
        return Feedback(False, f"{call} returned {shown(got)}, {self.authority} gets "
                               f"{shown(case.want)}. {self.explain(case)}")

    def reveal(self) -> Feedback:
        return Feedback(None, f"one way to write it: {self.reference}", "answer")


def register(ex: Exercise) -> None:
    """Add an exercise to ``EXERCISES``; keys are unique."""
    if ex.key in EXERCISES:
        raise ValueError(f"exercise {ex.key!r} is defined twice")
    EXERCISES[ex.key] = ex


def for_notebook(nn: str) -> list[Exercise]:
    """The exercises of notebook ``nn`` ("02"), in definition order."""
    load_all()
    return [ex for key, ex in EXERCISES.items() if key.split(".")[0] == nn]


def load_all() -> None:
    """Import every ``nbNN`` module so ``EXERCISES`` is complete."""
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("nb"):
            importlib.import_module(f"{__name__}.{info.name}")


def _hashable(x: Any) -> bool:
    try:
        hash(x)
    except TypeError:
        return False
    return True


def _reason(err: BaseException) -> str:
    """An exception's message as the reason an answer has the wrong form."""
    text = shown(err) if str(err) else type(err).__name__
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


__all__ = ["EXERCISES", "Case", "Exercise", "Feedback", "FunctionExercise", "LazyHints",
           "ValueExercise", "WrongForm", "answer_key", "for_notebook", "load_all", "normalise",
           "register", "same", "shown", "wrong_form"]
