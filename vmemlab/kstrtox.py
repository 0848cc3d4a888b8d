"""C's base-0 integer parsing, as lib/kstrtox.c does it for sysfs and sysctl writes.

Kernel: lib/kstrtox.c _parse_integer_fixup_radix(), _parse_integer()
"""

from __future__ import annotations

import string

_DIGITS = "0123456789abcdef"


def parse_integer(s: str) -> tuple[int, int]:
    """The unsigned number at the start of ``s`` in base 0, and the characters it took.

    ``0x`` followed by a hex digit is hex (the prefix counts as taken), a
    leading ``0`` octal, anything else decimal; ASCII digits only.  No
    digit at all gives (0, 0).
    """
    base = 10
    if s[:1] == "0":
        base = 16 if s[1:2] in ("x", "X") and s[2:3] and s[2] in string.hexdigits else 8
    start = 2 if base == 16 else 0
    value, end = 0, start
    for c in s[start:]:
        digit = _DIGITS.find(c.lower()) if c.isascii() else -1
        if not 0 <= digit < base:
            break
        value, end = value * base + digit, end + 1
    return value, (end if end > start else 0)
