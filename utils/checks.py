"""Argument checks shared by the accountant, the engine and the scripts (stdlib only).

Each check returns the value in its plain Python type (``float`` / ``int``) or raises ``ValueError``
with one line in one style::

    name=value is not allowed (allowed: <what is>)

so a bad argument is named together with what would be accepted. bool is never a number here
(``True`` is an ``int`` in Python, but a flag passed where a count is wanted is a mistake).
"""
from __future__ import annotations

import math
import numbers
from typing import Iterable


def refuse(name: str, value, allowed: str) -> ValueError:
    """The one message style: ``name=value is not allowed (allowed: ...)`` (returned, for ``raise``)."""
    return ValueError(f"{name}={value!r} is not allowed (allowed: {allowed})")


def real(name: str, value, *, allowed: str = "a real number") -> float:
    """A real number (int, float, numpy scalar; not bool, not nan); +-inf pass (see ``finite``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise refuse(name, value, allowed)
    x = float(value)
    if math.isnan(x):
        raise refuse(name, x, allowed)
    return x


def finite(name: str, value) -> float:
    """A finite real number."""
    x = real(name, value, allowed="a finite real number")
    if not math.isfinite(x):
        raise refuse(name, x, "a finite real number")
    return x


def positive(name: str, value, *, allow_inf: bool = False) -> float:
    """A real number > 0, finite unless ``allow_inf``."""
    allowed = "a number > 0" if allow_inf else "a finite number > 0"
    x = real(name, value, allowed=allowed)
    if not x > 0 or (x == math.inf and not allow_inf):
        raise refuse(name, x, allowed)
    return x


def nonnegative(name: str, value, *, allow_inf: bool = False) -> float:
    """A real number >= 0, finite unless ``allow_inf``."""
    allowed = "a number >= 0" if allow_inf else "a finite number >= 0"
    x = real(name, value, allowed=allowed)
    if x < 0 or (x == math.inf and not allow_inf):
        raise refuse(name, x, allowed)
    return x


def probability(name: str, value) -> float:
    """A number strictly between 0 and 1 (a delta, a confidence level, a fraction)."""
    allowed = f"0 < {name} < 1"
    x = real(name, value, allowed=allowed)
    if not 0 < x < 1:
        raise refuse(name, x, allowed)
    return x


def integer(name: str, value, *, lo: int, hi: int | None = None) -> int:
    """An integer >= lo (and <= hi when given); a whole float (3.0) counts as its integer, 2.5 does not."""
    allowed = f"an integer >= {lo}" if hi is None else f"an integer {lo} .. {hi}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise refuse(name, value, allowed)
    if not isinstance(value, numbers.Integral):
        if not (math.isfinite(float(value)) and float(value).is_integer()):
            raise refuse(name, value, allowed)
        value = int(value)
    if value < lo or (hi is not None and value > hi):
        raise refuse(name, value, allowed)
    return int(value)


def positive_int(name: str, value) -> int:
    """An integer >= 1."""
    return integer(name, value, lo=1)


def nonnegative_int(name: str, value) -> int:
    """An integer >= 0."""
    return integer(name, value, lo=0)


def choice(name: str, value, allowed: Iterable):
    """One of ``allowed`` (compared with ==)."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise refuse(name, value, ", ".join(map(repr, allowed)))
    return value


def divisor(name: str, value, *, n: int, what: str = "n") -> int:
    """An integer 1 .. n dividing n (a mini-batch size: PNSGD epochs are n / b whole updates)."""
    b = integer(name, value, lo=1)
    if b > n or n % b:
        raise refuse(name, b, f"an integer dividing {what}={n}")
    return b


def distinct(name: str, values, *, key=None) -> list:
    """A list naming each value once; ``key`` says when two values are the same (default: ==)."""
    values = list(values)
    keys = [v if key is None else key(v) for v in values]
    if len(set(keys)) != len(keys):   # a list is named by its items, as typed: "--eps 1 1.0 repeats a value"
        raise ValueError(f"{name} {' '.join(map(str, values))} repeats a value (allowed: distinct values)")
    return values
