"""The best proven certificate: for every Renyi order the smallest bound that applies (docs/METHOD.md §7).

Full batch (b = n): paper A's LSI bound (arXiv 2401.10371, docs/METHOD.md §3.3) and paper B's loose and
tight bounds with the Z recursion (arXiv 2403.17105, §4.4); mini-batch: B's two. Each is a proven bound
on the same Renyi divergence at every order, so their per-order minimum is one too (§7.3); it is then
converted (by default with the improved conversion, §7.4) and minimised over alpha.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from utils.accountant import validation as v
from utils.accountant.calibration import minimal_K, require_noise, smallest_sigma
from utils.accountant.certificates import Constants
from utils.accountant.conversion import conversion_term, minimize_log_alpha
from utils.accountant.pngd import eps_sequential, slopes
from utils.accountant.pnsgd import Z_stream, coef_loose, coef_tight


def _best_curves(Ks, sizes, sigma, consts, b, R):
    """{name: rdp(alpha)} of every proven bound on D_alpha(unlearned after request s || retrained on D_s),
    s = len(Ks) = len(sizes), evaluated on the same K history (docs/METHOD.md §7).

    Full batch (b = n): paper A's LSI bound over the two-sided Mironov recursion (it bounds both directions of
    the divergence and is never above the papers' form; docs/METHOD.md §3.3) and paper B's loose and tight
    bounds with the Z recursion; mini-batch: B's two. B needs K_s >= 1 noisy steps.
    """
    n, steps = consts.n, consts.n // b
    curves = {}
    if sigma == 0:
        return {"none": lambda a: np.full_like(np.asarray(a, dtype=np.float64), np.inf)}
    if b == n:
        slope, em = slopes(sizes, sigma, consts.M, consts.m, n), consts.eta * consts.m
        curves["A-LSI"] = lambda a: eps_sequential(a, Ks, slope, em, "two_sided")
    if Ks[-1] >= 1:
        z = Z_stream(Ks=Ks[:-1], sizes=sizes, consts=consts, b=b, R=R)[-1]
        for name, coef in (("B-loose", coef_loose), ("B-tight", coef_tight)):
            curves[name] = _linear_curve(coef(Ks[-1], z, sigma, consts.eta, consts.c, steps))
    return curves


def _linear_curve(slope):
    """alpha -> slope * alpha: the shape of every paper-B bound."""
    return lambda a: slope * np.asarray(a, dtype=np.float64)


def _smallest(curves):
    """alpha (scalar or array) -> the per-order minimum of the curves {name: rdp(alpha)}."""
    return lambda a: np.min(np.stack([np.broadcast_to(c(a), np.shape(a)) for c in curves.values()]), axis=0)


def _dp_best(curves, log_inv_delta, conversion):
    """(eps, alpha*, name of the bound smallest at alpha*) of min_alpha [min_bounds rdp(alpha) + conversion]."""
    names, smallest = list(curves), _smallest(curves)
    eps, alpha = minimize_log_alpha(lambda a, am1: smallest(a) + conversion_term(am1, log_inv_delta, conversion))
    if not math.isfinite(eps):
        return eps, alpha, "none"
    eps = max(eps, 0.0)     # the improved conversion can go below 0 for large delta; (0, delta) is implied
    at = np.array([float(np.asarray(curves[k](np.array([alpha])))[0]) for k in names])
    return eps, alpha, names[int(np.argmin(at))]


def _setup(Ks, sizes, sigma, consts, b, R, conversion):
    n = consts.n
    b = n if b is None else v.batch(b, n)
    Ks = v.step_list(Ks)
    sizes = v.sizes(sizes, len(Ks), n)
    return Ks, sizes, v.nonneg("sigma", sigma), b, v.nonneg("R", R), v.choice("conversion", conversion, v.CONVERSIONS)


def rdp_best(*, Ks, sizes, sigma, consts: Constants, b=None, R=0.0) -> Callable:
    """alpha -> the smallest proven bound on the Renyi divergence after requests of sizes[j] rows unlearned with
    Ks[j] steps (the per-order minimum ``dp_epsilon_best`` converts; docs/METHOD.md §7), for one chain."""
    Ks, sizes, sigma, b, R, _ = _setup(Ks, sizes, sigma, consts, b, R, "improved")
    return _smallest(_best_curves(Ks, sizes, sigma, consts, b, R))


def dp_epsilon_best(*, Ks, sizes, sigma, consts: Constants, b=None, R=0.0,
                    conversion="improved") -> tuple[float, float, str]:
    """(eps, alpha*, bound name) after requests of sizes[j] rows unlearned with Ks[j] steps (epochs for b < n):
    for every order alpha the smallest proven bound (A-LSI, B-loose, B-tight; docs/METHOD.md §7), then the
    conversion minimised over alpha (default the improved one of ``rdp_to_dp``). One request: Ks=[K], sizes=[S].
    """
    Ks, sizes, sigma, b, R, conversion = _setup(Ks, sizes, sigma, consts, b, R, conversion)
    return _dp_best(_best_curves(Ks, sizes, sigma, consts, b, R), consts.log_inv_delta, conversion)


def next_K_best(*, Ks, sizes, sigma, eps_target, consts: Constants, b=None, R=0.0, conversion="improved") -> int:
    """Minimal K_s >= 1 of request s = len(sizes) for the best bound, K_1..K_(s-1) = Ks frozen
    (docs/METHOD.md §7.5)."""
    Ks = v.step_list(Ks, allow_empty=True)
    eps_target = v.target(eps_target)
    _, sizes, sigma, b, R, conversion = _setup(list(Ks) + [1], sizes, sigma, consts, b, R, conversion)
    require_noise(sigma, eps_target)
    lid = consts.log_inv_delta
    return minimal_K(lambda k: _dp_best(_best_curves(Ks + [k], sizes, sigma, consts, b, R), lid, conversion)[0],
                     eps_target=eps_target,
                     given=f"sigma={sigma!r}, b={b}" + (f" at request {len(sizes)}" if Ks else ""),
                     hint=max(1, math.ceil(Ks[-1])) if Ks else 1)


def minimal_K_best(*, sigma, eps_target, S, consts: Constants, b=None, R=0.0, conversion="improved") -> int:
    """Exact minimal K >= 1 unlearning S rows with the best bound <= eps_target (docs/METHOD.md §7.5)."""
    return next_K_best(Ks=[], sizes=[S], sigma=sigma, eps_target=eps_target, consts=consts, b=b, R=R,
                       conversion=conversion)


def sequential_K_list_best(*, num_requests, S, sigma, eps_target, consts: Constants, b=None, R=0.0,
                           conversion="improved") -> list[int]:
    """Greedy per-request steps for the best bound: K_s minimal with K_1..K_(s-1) frozen (docs/METHOD.md §7.5)."""
    num_requests = v.integer("num_requests", num_requests, 1)
    Ks: list[int] = []
    for s in range(num_requests):
        Ks.append(next_K_best(Ks=Ks, sizes=[S] * (s + 1), sigma=sigma, eps_target=eps_target, consts=consts,
                              b=b, R=R, conversion=conversion))
    return Ks


def smallest_sigma_best(*, K, eps_target, S, consts: Constants, b=None, R=0.0, conversion="improved",
                        rtol=1e-7) -> float:
    """Smallest sigma with the best bound after K steps (epochs) unlearning S rows <= eps_target (docs/METHOD.md §7.5).

    Every candidate bound decreases in sigma, so their minimum does: the generic calibration applies.
    """
    K = v.steps("K", K)
    Ks, sizes, _, b, R, conversion = _setup([K], [S], 0.0, consts, b, R, conversion)
    lid = consts.log_inv_delta
    return smallest_sigma(lambda s: _dp_best(_best_curves(Ks, sizes, s, consts, b, R), lid, conversion)[0],
                          eps_target=eps_target, given=f"K={K}, S={sizes[0]}, b={b}", rtol=rtol)
