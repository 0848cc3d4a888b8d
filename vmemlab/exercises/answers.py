"""Answer forms shared by the exercises: whole numbers in a range, return codes.

Each ``accept`` function turns what a student typed into the form the model's
answer has, or raises TypeError/ValueError saying why it cannot be an answer.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vmemlab.constants import Errno, errname


def whole_number(noun: str, lo: int = 0, hi: int | None = None,
                 out_of_range: str | None = None) -> Callable[[object], int]:
    """Accept a whole number in ``[lo, hi]`` (``hi`` None: no upper bound).

    ``noun`` starts the messages ("a pfn" gives "a pfn is a whole number");
    ``out_of_range`` replaces the default message for a number outside.
    """
    def accept(x: object) -> int:
        if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
            raise TypeError(f"{noun} is a whole number")
        if x < lo or (hi is not None and x > hi):
            raise ValueError(out_of_range or (
                f"{noun} is never negative" if lo == 0 and hi is None
                else f"{noun} runs from {lo} to {hi}"))
        return int(x)
    return accept


class Rc(int):
    """A kernel return code that prints as the kernel's name for it ("-EBUSY")."""

    def __repr__(self) -> str:
        return errname(int(self))

    __str__ = __repr__


def errno_rc(x: object) -> Rc:
    """A return code as the kernel gives it: 0 or a negative errno.

    Accepts 0, -16, vm.EBUSY, "EBUSY" or "-EBUSY".
    """
    if isinstance(x, bool):
        raise TypeError("a return code is 0 or a negative errno such as -EBUSY")
    if isinstance(x, str):
        name = x.strip().lstrip("-").upper()
        if name == "0":
            return Rc(0)
        if name not in Errno.__members__:
            raise ValueError(f"{x!r} is not an errno name this lab knows "
                             f"({', '.join('-' + n for n in Errno.__members__)})")
        return Rc(-int(Errno[name]))
    if not isinstance(x, (int, np.integer)):
        raise TypeError("a return code is 0 or a negative errno such as -EBUSY")
    if x > 0:
        raise ValueError(f"kernel functions return errors as negative numbers: -{x}, not {x}")
    if x < 0 and -x not in Errno._value2member_map_:
        raise ValueError(f"{x} is not an errno this lab knows")
    return Rc(int(x))
