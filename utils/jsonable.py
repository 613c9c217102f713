"""The one rule for numbers in the project's JSON files (stdlib + numpy only).

Strict JSON has no infinity or NaN. Everything we write (metrics.json, config.json, certificates,
state files) stores them as the strings ``"inf"``, ``"-inf"`` and ``"nan"`` (``to_jsonable``), so a
reader can tell "infinite" (e.g. eps at sigma = 0) from "missing" (null). ``number`` reads any of
these forms back as a float; ``float("inf")`` reads the strings too, and older files' null stays None.
"""
from __future__ import annotations

import math
import os

import numpy as np

NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def json_float(x: float):
    """A float as strict JSON allows it: itself when finite, else "inf" / "-inf" / "nan"."""
    x = float(x)
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf" if x < 0 else "nan")


def to_jsonable(obj, *, strict: bool = False):
    """Plain-Python copy of ``obj`` (numpy scalars/arrays, tuples, paths) for strict JSON.

    Non-finite floats follow ``json_float``. Other objects become ``str(obj)``, or raise ValueError
    with ``strict`` (certificates hold only numbers, strings, booleans, None and lists of them).
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v, strict=strict) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, strict=strict) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist(), strict=strict)
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return json_float(obj)
    if obj is None or isinstance(obj, str):
        return obj
    if strict:
        raise ValueError(f"{obj!r} is not allowed in a certificate (allowed: numbers, strings, lists of them)")
    if hasattr(obj, "__fspath__"):
        return os.fspath(obj)
    return str(obj)


def number(x):
    """A JSON value read back as a float: numbers as they are, "inf" / "-inf" / "nan" as floats;
    None (a missing value, or infinity in files written before this rule) stays None."""
    if x is None:
        return None
    if isinstance(x, str):
        if x in NONFINITE:
            return NONFINITE[x]
        raise ValueError(f"{x!r} is not allowed as a number (allowed: a JSON number, 'inf', '-inf', 'nan')")
    return float(x)


def numbers(record: dict) -> dict:
    """A copy of a flat JSON record with "inf" / "-inf" / "nan" read back as floats (for printing with :g)."""
    return {k: NONFINITE[x] if isinstance(x, str) and x in NONFINITE else x for k, x in record.items()}
