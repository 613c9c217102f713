"""The accountant's argument rules (what each symbol of the papers may be), built on ``utils.checks``.

One place per symbol: ``n >= 2``, ``1 <= S < n``, ``0 < delta < 1``, Renyi orders ``alpha > 1``,
``0 < eta m < 1`` (docs/METHOD.md §1.3), batch sizes dividing ``n`` (docs/METHOD.md §4), ...
"""
from __future__ import annotations

import math

import numpy as np

from utils import checks

# the shared generic rules, under the short names the accountant's modules use
real, positive, nonneg, choice = checks.real, checks.positive, checks.nonnegative, checks.choice

SEQUENTIAL_FORMS = ("paper", "mironov", "two_sided")
CONVERSIONS = ("basic", "improved")
PNSGD_FORMS = ("loose", "tight")


def integer(name: str, x, lo: int) -> int:
    return checks.integer(name, x, lo=lo)


def steps(name: str, x) -> float:
    """A step / epoch count: a real number >= 0 (integers in practice; the formulas are continuous)."""
    return checks.nonnegative(name, x)


def delta(x) -> float:
    return checks.probability("delta", x)


def n_rows(n) -> int:
    return checks.integer("n", n, lo=2)


def S_rows(S, n: int) -> int:
    """Rows replaced by one request: 1 <= S < n."""
    S = checks.integer("S", S, lo=1)
    if S >= n:
        raise checks.refuse("S", S, f"1 <= S < n = {n}")
    return S


def target(eps) -> float:
    return checks.positive("eps_target", eps)


def alpha(a):
    """Renyi orders alpha > 1 as a float64 array (any shape)."""
    a_ = np.asarray(a, dtype=np.float64)
    bad = a_[~(a_ > 1)].ravel()
    if a_.size == 0 or bad.size:
        raise checks.refuse("alpha", bad[0] if bad.size else a, "Renyi orders alpha > 1")
    return a_


def contraction(eta, m) -> float:
    """c = 1 - eta m of one noisy step (B, arXiv 2403.17105), which needs 0 < eta m < 1, i.e. eta < 1/m."""
    eta, m = checks.positive("eta", eta), checks.positive("m", m)
    if not eta * m < 1:
        raise checks.refuse("eta*m", eta * m, "0 < eta*m < 1, e.g. eta = 1/L with L > m")
    return 1.0 - eta * m


def batch(b, n: int) -> int:
    b = checks.integer("b", b, lo=1)
    if b > n or n % b:
        raise checks.refuse("b", b, f"a batch size that divides n = {n}")
    return b


def step_list(Ks, *, allow_empty: bool = False) -> list[float]:
    Ks = [steps(f"Ks[{i}]", k) for i, k in enumerate(Ks)]
    if not Ks and not allow_empty:
        raise checks.refuse("Ks", [], "a non-empty list of step counts >= 0")
    return Ks


def sizes(sizes_, count: int, n: int) -> list[int]:
    """One request size S_j per request, each 1 <= S_j < n."""
    sizes_ = [S_rows(S, n) for S in sizes_]
    if len(sizes_) != count:
        raise checks.refuse("sizes", sizes_, f"one request size per request ({count} requests)")
    return sizes_


def holder(q) -> tuple[float, float]:
    """(q, p = q/(q-1)): the Holder pair of paper B's non-convergent bound (docs/METHOD.md §4.5)."""
    q = checks.real("q", q)
    if not 1 < q < math.inf:
        raise checks.refuse("q", q, "a Holder exponent 1 < q < inf")
    return q, q / (q - 1.0)


def scalar(x):
    """A 0-d result as a float, arrays unchanged."""
    return float(x) if np.ndim(x) == 0 else x
