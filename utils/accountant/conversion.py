"""RDP -> (eps, delta)-DP and the minimisation over the Renyi order alpha (docs/METHOD.md §5).

basic (the papers'):  eps_rdp + log(1/delta)/(alpha - 1)       [Mironov 2017, arXiv 1702.07476, Prop. 3]
improved:             eps_rdp + log((alpha-1)/alpha) - (log delta + log alpha)/(alpha - 1)
                      [Canonne, Kamath, Steinke 2020, arXiv 2004.00010, Prop. 12;
                       Balle et al. 2020, arXiv 1905.09982, Thm. 21]

Every evaluated bound is an upper bound at the order where it was evaluated, so an inexact
minimisation over ``alpha`` can only make a certificate more conservative, never invalid.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np

from utils.accountant import validation as v

# log(alpha - 1) spans every double alpha > 1: 1 + 2.2e-16 is the first double above 1, 1e300 is finite.
_T_MIN, _T_MAX = math.log(4.5e-16), math.log(1e300)
_T_START = (-4.0, 28.0)      # alpha - 1 in [0.018, 1.4e12]: where optima of these bounds live
_GRID_STEP = 0.25
_ZOOM_POINTS = 17
_T_TOL = 1e-7                # bracket width in log(alpha - 1): value error ~ width^2, far below 1e-9


class AlphaRangeWarning(RuntimeWarning):
    """The optimal Renyi order sits at the edge of the range that was searched."""


def conversion_term(am1, log_inv_delta, conversion):
    """The alpha-dependent part added to the RDP value; am1 = alpha - 1 (kept separate for precision)."""
    if conversion == "basic":
        return log_inv_delta / am1
    alpha = 1.0 + am1
    return np.log(am1 / alpha) + (log_inv_delta - np.log(alpha)) / am1


def rdp_to_dp(*, eps_rdp, alpha, delta, conversion="basic") -> float | np.ndarray:
    """(eps, delta)-DP from RDP at order alpha (docs/METHOD.md §5.1).

    basic (the papers'): eps_rdp + log(1/delta)/(alpha - 1)   [Mironov 2017, arXiv 1702.07476, Prop. 3]
    improved: eps_rdp + log((alpha-1)/alpha) - (log delta + log alpha)/(alpha - 1)
              [Canonne, Kamath, Steinke 2020, arXiv 2004.00010, Prop. 12; Balle et al. 2020, Thm. 21]
    """
    a = v.alpha(alpha)
    delta = v.delta(delta)
    conversion = v.choice("conversion", conversion, v.CONVERSIONS)
    e = np.asarray(eps_rdp, dtype=np.float64)
    if np.isnan(e).any() or (e < 0).any():
        raise ValueError("eps_rdp with negative or nan entries is not allowed (allowed: RDP values >= 0)")
    # the improved term can take eps below 0 for a large delta; (eps, delta) then holds at eps = 0 too
    return v.scalar(np.maximum(e + conversion_term(a - 1.0, -math.log(delta), conversion), 0.0))


def optimal_alpha_linear(*, a, b) -> tuple[float, float]:
    """Minimiser 1 + sqrt(b/a) of a*alpha + b/(alpha - 1) over alpha > 1, with its value a + 2 sqrt(a b)
    (docs/METHOD.md §5.2: the basic conversion of a bound linear in alpha)."""
    a, b = v.nonneg("a", a, allow_inf=True), v.positive("b", b)
    return linear_min(a, b)


def linear_min(a, b):
    """(value, alpha*) of min_alpha a*alpha + b/(alpha-1); a = 0 has infimum 0 as alpha -> inf."""
    if a == math.inf:
        return math.inf, math.nan
    if a == 0:
        return 0.0, math.inf
    root = math.sqrt(b / a)
    return a + 2.0 * math.sqrt(a * b), 1.0 + root


def _evaluate(objective, t):
    am1 = np.exp(t)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        val = np.asarray(objective(1.0 + am1, am1), dtype=np.float64)
    return np.where(np.isnan(val), np.inf, val)


def _grid(lo, hi):
    """Points from lo to hi (both included) about _GRID_STEP apart."""
    return np.linspace(lo, hi, max(2, math.ceil((hi - lo) / _GRID_STEP) + 1))


def minimize_log_alpha(objective):
    """(min value, alpha*) of objective(alpha, alpha-1) over all doubles alpha > 1, working in t = log(alpha-1).

    A coarse grid that extends until its minimum is interior (or the range of doubles is exhausted,
    then AlphaRangeWarning), followed by grid zooms to a bracket of width 1e-7 in t. The objective is an
    (eps, delta) bound, so a minimum below 0 is returned as 0.
    """
    lo, hi = _T_START
    t = _grid(lo, hi)
    val = _evaluate(objective, t)
    if not np.isfinite(val).any():
        return math.inf, math.nan
    span = hi - lo
    while True:
        i = int(np.argmin(val))
        # the new grid overlaps the old one by a point, so a minimum at the old edge becomes interior
        # (without it a minimum exactly there makes the extension go down and up forever)
        if i == 0 and t[0] > _T_MIN:
            t = _grid(max(t[0] - span, _T_MIN), t[1])
        elif i == len(t) - 1 and t[-1] < _T_MAX:
            t = _grid(t[-2], min(t[-1] + span, _T_MAX))
        else:
            break
        val = _evaluate(objective, t)
    at_edge = i in (0, len(t) - 1)
    best_t, best_v = t[i], val[i]
    a, b = t[max(i - 1, 0)], t[min(i + 1, len(t) - 1)]
    while b - a > _T_TOL:
        t = np.linspace(a, b, _ZOOM_POINTS)
        val = _evaluate(objective, t)
        i = int(np.argmin(val))
        if val[i] < best_v:
            best_t, best_v = t[i], val[i]
        a, b = t[max(i - 1, 0)], t[min(i + 1, _ZOOM_POINTS - 1)]
    alpha = 1.0 + math.exp(best_t)
    # every objective minimised here is an (eps, delta) bound: the improved conversion can take it below 0 for
    # a large delta, where (eps, delta) holds at eps = 0 too (rdp_to_dp's clamp; one rule for every eps)
    best_v = max(float(best_v), 0.0)
    if at_edge:
        warnings.warn(f"the optimal Renyi order alpha={alpha:.6g} sits at the edge of the searched range "
                      f"alpha - 1 in [{math.exp(_T_MIN):.3g}, {math.exp(_T_MAX):.3g}]", AlphaRangeWarning,
                      stacklevel=3)
    return float(best_v), alpha


def minimize_over_alpha(rdp: Callable, *, delta, conversion="basic") -> tuple[float, float]:
    """(eps, alpha*) = min over alpha in (1, inf) of rdp(alpha) + conversion term (docs/METHOD.md §5.1, §5.2).

    ``rdp`` maps an array of orders to an array of RDP values. The result is the bound at alpha*, so it
    is a valid (eps, delta) guarantee; it is within about 1e-12 relative of the exact minimum when
    rdp is unimodal in log(alpha - 1).
    """
    log_inv_delta = -math.log(v.delta(delta))
    conversion = v.choice("conversion", conversion, v.CONVERSIONS)
    return minimize_log_alpha(lambda a, am1: rdp(a) + conversion_term(am1, log_inv_delta, conversion))


def dp_epsilon_chains(rdp: Callable, *, chains: int, delta, conversion="basic") -> tuple[float, float]:
    """(eps, alpha*) of releasing ``chains`` chains run with independent noise on the same data.

    Each chain is one run of the mechanism whose Renyi divergence at order alpha is ``rdp(alpha)``;
    Renyi divergences of independent mechanisms add (Mironov 2017, arXiv 1702.07476, Prop. 1), so the
    release has RDP chains x rdp(alpha), then converted as every bound is (docs/METHOD.md §6.5).
    """
    chains = v.integer("chains", chains, 1)
    return minimize_over_alpha(lambda a: chains * rdp(a), delta=delta, conversion=conversion)


def dp_linear(a, log_inv_delta, conversion):
    """(eps, alpha*) for the RDP curve a * alpha: closed form for the basic conversion (docs/METHOD.md §5.2)."""
    if conversion == "basic":
        return linear_min(a, log_inv_delta)
    if a == math.inf:
        return math.inf, math.nan
    return minimize_log_alpha(lambda al, am1: a * al + conversion_term(am1, log_inv_delta, conversion))
