"""One generic calibration for any bound: the smallest sigma, the minimal integer K (docs/METHOD.md §5.2).

Every bound of both papers (A: arXiv 2401.10371; B: arXiv 2403.17105) decreases in the noise sigma and
in the number of unlearning steps K, so calibration needs only the bound as a callable:

- ``smallest_sigma(eps_of, ...)``: bracket by doubling / halving from sigma = 1, geometric bisection to a
  relative width ``rtol``, re-check, and return the passing end (never overshoots the target: the answer
  meets it, and is at most rtol relative above the exact minimum);
- ``minimal_K(eps_of, ...)``: the exact smallest integer K >= 1 (gallop from a hint by doubling, then
  bisect), re-checked.

Both raise ``InfeasibleTargetError`` with one line naming the target and the fixed values when no answer
exists. Each family's ``minimal_K_*`` / ``smallest_sigma_*`` is its bound as a callable plus these.
"""
from __future__ import annotations

import math
from typing import Callable

from utils.accountant import validation as v

_MAX_K = 10 ** 15            # safety net only: infeasibility is detected from the K -> inf limit
_SIGMA_RANGE = (1e-300, 1e300)


class InfeasibleTargetError(ValueError):
    """No sigma (or K) meets the requested privacy target; the message names the values."""


def require_noise(sigma: float, eps_target: float) -> None:
    """sigma = 0 makes every bound infinite: no K can meet a finite target."""
    if sigma == 0:
        raise InfeasibleTargetError(f"sigma=0 gives eps=inf for every K (eps_target={eps_target!r} needs sigma > 0)")


def check_rtol(rtol) -> float:
    rtol = v.positive("rtol", rtol)
    if rtol > 1e-5:
        raise ValueError(f"rtol={rtol!r} is not allowed (allowed: 0 < rtol <= 1e-5)")
    return rtol


def minimal_K(eps_of: Callable[[int], float], *, eps_target, given: str, hint: int = 1,
              eps_limit: float | None = None) -> int:
    """Smallest integer K >= 1 with eps_of(K) <= eps_target, for eps_of non-increasing in K.

    ``given`` names the fixed values for the error message ("sigma=0.1, S=1"). ``hint`` (>= 1) is where
    the gallop starts (the previous request's K in a sequence); by monotonicity it saves evaluations and
    never changes the answer. ``eps_limit``: the bound's K -> inf limit when known; a target not above it
    is refused at once (eps(K) > limit for every finite K).
    """
    eps_target = v.target(eps_target)
    hint = v.integer("hint", hint, 1)
    what = f"eps_target={eps_target!r} with {given}"
    if eps_limit is not None and not eps_limit < eps_target:
        raise InfeasibleTargetError(f"no K meets {what}: the K -> inf limit is eps={eps_limit!r}")

    def passes(K: int) -> bool:
        return eps_of(K) <= eps_target

    if passes(hint):
        if hint == 1:
            return 1
        hi, step = hint, 1
        lo = hint - step
        while lo >= 1 and passes(lo):
            hi, step = lo, step * 2
            lo = hint - step
        lo = max(lo, 0)                                   # K = 0 is outside the domain: treated as failing
    else:
        lo, step = hint, 1
        hi = hint + step
        while not passes(hi):
            lo, step = hi, step * 2
            hi = hint + step
            if hi > _MAX_K:
                raise InfeasibleTargetError(f"no K <= {_MAX_K} meets {what}")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid
    if not passes(hi):
        raise InfeasibleTargetError(f"re-check failed: K={hi} does not meet {what}")
    return hi


def smallest_sigma(eps_of: Callable[[float], float], *, eps_target, given: str, rtol=1e-7) -> float:
    """Smallest sigma > 0 with eps_of(sigma) <= eps_target, for eps_of non-increasing in sigma.

    Returns the passing end of a bracket [lo, hi] with hi/lo - 1 <= rtol (0 < rtol <= 1e-5), so the
    answer meets the target and is at most rtol relative above the exact minimum.
    """
    eps_target, rtol = v.target(eps_target), check_rtol(rtol)
    what = f"eps_target={eps_target!r} with {given}"
    tiny, huge = _SIGMA_RANGE
    x = 1.0
    if eps_of(x) <= eps_target:
        hi, lo = x, x / 2
        while eps_of(lo) <= eps_target:
            hi, lo = lo, lo / 2
            if lo < tiny:
                raise InfeasibleTargetError(f"every sigma down to {tiny} meets {what}; the bound looks degenerate")
    else:
        lo, hi = x, x * 2
        while not eps_of(hi) <= eps_target:
            lo, hi = hi, hi * 2
            if hi > huge:
                raise InfeasibleTargetError(f"no sigma <= {huge} meets {what}")
    while hi / lo - 1 > rtol:
        mid = math.sqrt(lo * hi)
        if eps_of(mid) <= eps_target:
            hi = mid
        else:
            lo = mid
    if not eps_of(hi) <= eps_target:
        raise InfeasibleTargetError(f"re-check failed: sigma={hi!r} does not meet {what}")
    return hi
