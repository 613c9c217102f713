"""utils/checks.py: each check rejects its bad values with 'name=value is not allowed (allowed: ...)' and
accepts the boundary values."""
import math
import re

import numpy as np
import pytest

from utils import checks


def rejects(fn, value, allowed, **kw):
    with pytest.raises(ValueError) as info:
        fn("x", value, **kw)
    text = str(info.value)
    assert "\n" not in text
    assert re.fullmatch(rf"x=.* is not allowed \(allowed: {re.escape(allowed)}\)", text), text
    return text


@pytest.mark.parametrize("bad", [True, "1", None, [1.0], complex(1, 1), math.nan])
def test_real_rejects_what_is_not_a_real_number(bad):
    rejects(checks.real, bad, "a real number")


def test_real_accepts_numbers_of_every_kind_and_infinity():
    assert checks.real("x", np.float32(0.5)) == 0.5 and type(checks.real("x", np.int64(3))) is float
    assert checks.real("x", -math.inf) == -math.inf


def test_finite():
    assert checks.finite("x", -1e308) == -1e308
    for bad in (math.inf, -math.inf, math.nan):
        rejects(checks.finite, bad, "a finite real number")


def test_positive_and_nonnegative_boundaries():
    assert checks.positive("x", 5e-324) == 5e-324
    assert checks.positive("x", math.inf, allow_inf=True) == math.inf
    assert rejects(checks.positive, 0, "a finite number > 0") == "x=0.0 is not allowed (allowed: a finite number > 0)"
    rejects(checks.positive, -1.0, "a finite number > 0")
    rejects(checks.positive, math.inf, "a finite number > 0")
    rejects(checks.positive, 0.0, "a number > 0", allow_inf=True)
    assert checks.nonnegative("x", 0) == 0.0 and checks.nonnegative("x", -0.0) == 0.0
    assert checks.nonnegative("x", math.inf, allow_inf=True) == math.inf
    rejects(checks.nonnegative, -5e-324, "a finite number >= 0")
    rejects(checks.nonnegative, math.inf, "a finite number >= 0")
    rejects(checks.nonnegative, math.nan, "a finite number >= 0")


def test_probability_is_the_open_interval():
    assert checks.probability("x", 5e-324) == 5e-324
    assert checks.probability("x", 1 - 2 ** -53) == 1 - 2 ** -53
    for bad in (0, 0.0, 1, 1.0, -0.5, math.nan, math.inf):
        rejects(checks.probability, bad, "0 < x < 1")


def test_integer_bounds_and_whole_floats():
    assert checks.integer("x", 2, lo=2) == 2 and type(checks.integer("x", np.int64(7), lo=0)) is int
    assert checks.integer("x", 3.0, lo=1) == 3 and type(checks.integer("x", 3.0, lo=1)) is int
    assert checks.positive_int("x", 1) == 1 and checks.nonnegative_int("x", 0) == 0
    rejects(checks.integer, 1, "an integer >= 2", lo=2)
    for bad in (2.5, True, "3", math.inf, math.nan, None):
        rejects(checks.integer, bad, "an integer >= 1", lo=1)
    rejects(checks.positive_int, 0, "an integer >= 1")
    assert rejects(checks.nonnegative_int, -1, "an integer >= 0") == "x=-1 is not allowed (allowed: an integer >= 0)"


def test_choice():
    assert checks.choice("x", "a", ("a", "b")) == "a"
    text = rejects(lambda n, x: checks.choice(n, x, ("a", "b")), "c", "'a', 'b'")
    assert text == "x='c' is not allowed (allowed: 'a', 'b')"


def test_the_engine_uses_these_checks():
    engine = pytest.importorskip("utils.engine")
    with pytest.raises(ValueError, match=r"^C=0 is not allowed \(allowed: an integer >= 1\)$"):
        engine.share_orders(np.zeros((1, 4), dtype=np.int64), 0, 1)


def test_integer_range_divisor_and_distinct_name_the_value_and_what_is_allowed():
    from utils import checks

    assert checks.integer("--chain", 7, lo=0, hi=7) == 7 and checks.integer("k", 0, lo=0, hi=0) == 0
    with pytest.raises(ValueError, match=r"^--chain=8 is not allowed \(allowed: an integer 0 \.\. 7\)$"):
        checks.integer("--chain", 8, lo=0, hi=7)
    assert [checks.divisor("b", b, n=12) for b in (1, 2, 3, 4, 6, 12)] == [1, 2, 3, 4, 6, 12]
    for bad in (5, 7, 24, 0):
        with pytest.raises(ValueError, match=rf"^b={bad} is not allowed"):
            checks.divisor("b", bad, n=12)
    assert checks.distinct("--eps", [1, 2.5]) == [1, 2.5]
    with pytest.raises(ValueError, match=r"^--eps 0.1 0.10 repeats a value \(allowed: distinct values\)$"):
        checks.distinct("--eps", ["0.1", "0.10"], key=float)
