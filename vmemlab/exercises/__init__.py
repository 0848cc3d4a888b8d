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
and a function that crashes all come back as feedback.  ``correct`` is the
bare boolean that nbgrader's hidden tests assert; ``reveal`` shows the
answer.  Each notebook's module (``nb01``, ``nb02``, ...) defines its
exercises with ``ValueExercise`` and ``FunctionExercise``; ``EXERCISES``
holds them all, keyed ``"NN.name"``, for the instructor guide and tests.
"""

from __future__ import annotations

import html
import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

EXERCISES: dict[str, Exercise] = {}

_MARK = {True: "Right.", False: "Not quite.", None: "No prediction yet."}
_COLOUR = {True: "#009E73", False: "#D55E00", None: "#999999"}  # Okabe-Ito


@dataclass(frozen=True)
class Feedback:
    """What a checker says: ``ok`` is True, False, or None (nothing to check yet)."""

    ok: bool | None
    text: str

    def __bool__(self) -> bool:
        return bool(self.ok)

    def __repr__(self) -> str:
        return f"{_MARK[self.ok]} {self.text}"

    def _repr_html_(self) -> str:
        body = html.escape(self.text)
        return (f'<div style="border-left:4px solid {_COLOUR[self.ok]};padding:2px 10px;'
                f'white-space:pre-wrap"><b>{_MARK[self.ok]}</b> {body}</div>')


class Exercise(ABC):
    """The part every exercise shares: a key, a question, check/correct/reveal."""

    key: str
    question: str

    def check(self, prediction: Any) -> Feedback:
        """Compare a prediction with the model; say why either way."""
        if prediction is Ellipsis:
            name = self.key.split(".", 1)[1]
            return Feedback(None, "Replace ... with your prediction and run the cell again "
                                  f"(or run ex.{name}.reveal() to see the answer).")
        return self.judge(prediction)

    def correct(self, prediction: Any) -> bool:
        """Whether ``prediction`` is right (what graded tests assert)."""
        return bool(self.check(prediction))

    @abstractmethod
    def judge(self, prediction: Any) -> Feedback:
        """Feedback on a prediction that is not ``...``."""

    @abstractmethod
    def reveal(self) -> Feedback:
        """The answer and why, without a prediction."""

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


@dataclass(eq=False, repr=False)
class ValueExercise(Exercise):
    """Predict a value: a number, a name, a tuple of pfns.

    ``solve()`` runs the model and returns the true answer (once).
    ``explain(truth)`` says why.  ``accept(prediction)`` brings what the
    student typed into the answer's form, raising ValueError or TypeError
    with a message when it cannot be an answer.  ``hints`` maps common
    wrong answers to the misunderstanding they usually show.
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
        try:
            guess = self.accept(prediction)
        except (TypeError, ValueError) as err:
            return Feedback(False, f"{prediction!r} cannot be the answer: {err}")
        if guess == self.answer:
            return Feedback(True, self.explain(self.answer))
        hint = self.hints.get(guess) if _hashable(guess) else None
        said = f"You said {_show(guess)}; the model says {_show(self.answer)}."
        return Feedback(False, "\n".join(filter(None, [said, hint, self.explain(self.answer)])))

    def reveal(self) -> Feedback:
        return Feedback(True, f"The answer is {_show(self.answer)}. {self.explain(self.answer)}")


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
    differs; ``reference`` is a one-line model answer shown by ``reveal``.  A function that raises
    (nbgrader's ``NotImplementedError`` stub included) gets feedback.
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
            return Feedback(False, f"pass the function {self.name} itself, not {fn!r}")
        cases = list(self.cases())
        for case in cases:
            call = f"{self.name}({', '.join(map(repr, case.args))})"
            try:
                got = fn(*case.args)
            except NotImplementedError:
                return Feedback(None, f"{self.name} is not written yet.")
            except Exception as err:  # the student's code: report it, never crash
                return Feedback(False, f"{call} raised {type(err).__name__}: {err}")
            if got != case.want:
                return Feedback(False, f"{call} returned {got!r}, {self.authority} gets "
                                       f"{case.want!r}. {self.explain(case)}")
        return Feedback(True, f"{self.name} agrees with {self.authority} on all "
                              f"{len(cases)} cases.")

    def reveal(self) -> Feedback:
        return Feedback(True, f"One way to write it: {self.reference}")


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


def _show(x: Any) -> str:
    return repr(x) if isinstance(x, str) else str(x)


__all__ = ["EXERCISES", "Case", "Exercise", "Feedback", "FunctionExercise", "ValueExercise",
           "for_notebook", "load_all", "register"]
