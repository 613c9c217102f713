"""The best proven certificate (docs/METHOD.md §7): per request the smaller of the Gaussian-DP certificate
(§12) and, for every Renyi order, the smallest bound that applies.

Full batch (b = n): paper A's LSI bound (arXiv 2401.10371, docs/METHOD.md §3.3) and paper B's loose and
tight bounds with the Z recursion (arXiv 2403.17105, §4.4); mini-batch: B's two; both: the Renyi curve
alpha mu^2 / 2 that the Gaussian-DP certificate implies. Each is a proven bound on the same Renyi
divergence at every order, so their per-order minimum is one too (§7.3); it is converted (by default with
the improved conversion, §7.4) and minimised over alpha, and the Gaussian-DP certificate's exact conversion
is taken instead where it is smaller. Every bound here reads the per-row gradient bound min(M, G max ||x||)
(``Constants.grad_bound``, §12.6).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

from utils.accountant import validation as v
from utils.accountant.calibration import minimal_K, require_noise, smallest_sigma
from utils.accountant.certificates import Constants
from utils.accountant.conversion import conversion_term, minimize_log_alpha
from utils.accountant.gdp import _epsilon, _grad_bound, mu_stream
from utils.accountant.pngd import eps_sequential, slopes
from utils.accountant.pnsgd import Z_stream, coef_loose, coef_tight


def tight_constants(consts: Constants) -> Constants:
    """The constants with M = the per-row gradient bound min(M, G max ||x||) (docs/METHOD.md §12.6): every bound
    of best reads it (a per-sample gradient is never longer, so each proof holds with it)."""
    G = _grad_bound(consts)
    return consts if G == consts.M else dataclasses.replace(consts, M=G)


def _gdp_mu(Ks, sizes, sigma, consts, b, T):
    return mu_stream(Ks=Ks, sizes=sizes, sigma=sigma, eta=consts.eta, c=consts.c, grad_bound=_grad_bound(consts),
                     n=consts.n, b=b, T=T)


def _best_curves(Ks, sizes, sigma, consts, b, R, mu):
    """{name: rdp(alpha)} of every proven bound on D_alpha(unlearned after request s || retrained on D_s),
    s = len(Ks) = len(sizes), evaluated on the same K history (docs/METHOD.md §7).

    Full batch (b = n): paper A's LSI bound over the two-sided Mironov recursion (it bounds both directions of
    the divergence and is never above the papers' form; docs/METHOD.md §3.3) and paper B's loose and tight
    bounds with the Z recursion; mini-batch: B's two; both: "GDP", alpha mu^2 / 2 of the Gaussian-DP
    certificate mu (§12.5). B needs K_s >= 1 noisy steps.
    """
    consts = tight_constants(consts)
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
    curves["GDP"] = _linear_curve(mu * mu / 2.0)
    return curves


def _linear_curve(slope):
    """alpha -> slope * alpha: the shape of every paper-B bound."""
    return lambda a: slope * np.asarray(a, dtype=np.float64)


def _smallest(curves):
    """alpha (scalar or array) -> the per-order minimum of the curves {name: rdp(alpha)}. A curve that is nan
    at an order (an overflow) is +inf there: it never hides another bound (np.fmin skips nan)."""
    def smallest(a):
        out = np.fmin.reduce(np.stack([np.broadcast_to(c(a), np.shape(a)) for c in curves.values()]), axis=0)
        return np.where(np.isnan(out), np.inf, out)
    return smallest


def _dp_renyi(curves, log_inv_delta, conversion):
    """(eps, alpha*, name of the bound smallest at alpha*) of min_alpha [min_bounds rdp(alpha) + conversion]."""
    names, smallest = list(curves), _smallest(curves)
    eps, alpha = minimize_log_alpha(lambda a, am1: smallest(a) + conversion_term(am1, log_inv_delta, conversion))
    if not math.isfinite(eps):
        return eps, alpha, "none"
    eps = max(eps, 0.0)     # the improved conversion can go below 0 for large delta; (0, delta) is implied
    at = np.array([float(np.asarray(curves[k](np.array([alpha])))[0]) for k in names])
    at = np.where(np.isnan(at), np.inf, at)
    return eps, alpha, names[int(np.argmin(at))]


def _dp_best(Ks, sizes, sigma, consts, b, R, T, conversion):
    """(eps, alpha*, name): the smaller of the Gaussian-DP certificate's exact eps (alpha* = nan, name "GDP")
    and the per-order Renyi minimum's converted eps (docs/METHOD.md §7, §12)."""
    mu = _gdp_mu(Ks, sizes, sigma, consts, b, T)
    renyi = _dp_renyi(_best_curves(Ks, sizes, sigma, consts, b, R, mu), consts.log_inv_delta, conversion)
    exact = _epsilon(mu, math.log(consts.delta))
    return (exact, math.nan, "GDP") if exact <= renyi[0] else renyi


def _setup(Ks, sizes, sigma, consts, b, R, conversion, T):
    n = consts.n
    b = n if b is None else v.batch(b, n)
    Ks = v.step_list(Ks)
    sizes = v.sizes(sizes, len(Ks), n)
    return (Ks, sizes, v.nonneg("sigma", sigma), b, v.nonneg("R", R),
            v.choice("conversion", conversion, v.CONVERSIONS), None if T is None else v.steps("T", T))


def rdp_best(*, Ks, sizes, sigma, consts: Constants, b=None, R=0.0, T=None) -> Callable:
    """alpha -> the smallest proven bound on the Renyi divergence after requests of sizes[j] rows unlearned with
    Ks[j] steps (the per-order minimum, with the Gaussian-DP curve alpha mu^2/2; docs/METHOD.md §7), one chain.
    T: the learning length (None: a bound for every T, gdp.mu_stream)."""
    Ks, sizes, sigma, b, R, _, T = _setup(Ks, sizes, sigma, consts, b, R, "improved", T)
    return _smallest(_best_curves(Ks, sizes, sigma, consts, b, R, _gdp_mu(Ks, sizes, sigma, consts, b, T)))


def dp_epsilon_best(*, Ks, sizes, sigma, consts: Constants, b=None, R=0.0, T=None,
                    conversion="improved") -> tuple[float, float, str]:
    """(eps, alpha*, bound name) after requests of sizes[j] rows unlearned with Ks[j] steps (epochs for b < n):
    the smaller of the Gaussian-DP certificate's exact eps ("GDP", alpha* = nan) and, for every order alpha, the
    smallest proven Renyi bound (A-LSI, B-loose, B-tight, GDP's alpha mu^2/2; docs/METHOD.md §7) converted
    (default the improved conversion of ``rdp_to_dp``) and minimised over alpha. One request: Ks=[K], sizes=[S].
    T: the learning length (None: a bound for every T).
    """
    Ks, sizes, sigma, b, R, conversion, T = _setup(Ks, sizes, sigma, consts, b, R, conversion, T)
    return _dp_best(Ks, sizes, sigma, consts, b, R, T, conversion)


def next_K_best(*, Ks, sizes, sigma, eps_target, consts: Constants, b=None, R=0.0, T=None,
                conversion="improved") -> int:
    """Minimal K_s >= 1 of request s = len(sizes) for the best bound, K_1..K_(s-1) = Ks frozen
    (docs/METHOD.md §7.5)."""
    Ks = v.step_list(Ks, allow_empty=True)
    eps_target = v.target(eps_target)
    _, sizes, sigma, b, R, conversion, T = _setup(list(Ks) + [1], sizes, sigma, consts, b, R, conversion, T)
    require_noise(sigma, eps_target)
    return minimal_K(lambda k: _dp_best(Ks + [k], sizes, sigma, consts, b, R, T, conversion)[0],
                     eps_target=eps_target,
                     given=f"sigma={sigma!r}, b={b}" + (f" at request {len(sizes)}" if Ks else ""),
                     hint=max(1, math.ceil(Ks[-1])) if Ks else 1)


def minimal_K_best(*, sigma, eps_target, S, consts: Constants, b=None, R=0.0, T=None, conversion="improved") -> int:
    """Exact minimal K >= 1 unlearning S rows with the best bound <= eps_target (docs/METHOD.md §7.5)."""
    return next_K_best(Ks=[], sizes=[S], sigma=sigma, eps_target=eps_target, consts=consts, b=b, R=R, T=T,
                       conversion=conversion)


def sequential_K_list_best(*, num_requests, S, sigma, eps_target, consts: Constants, b=None, R=0.0, T=None,
                           conversion="improved") -> list[int]:
    """Greedy per-request steps for the best bound: K_s minimal with K_1..K_(s-1) frozen (docs/METHOD.md §7.5)."""
    num_requests = v.integer("num_requests", num_requests, 1)
    Ks: list[int] = []
    for s in range(num_requests):
        Ks.append(next_K_best(Ks=Ks, sizes=[S] * (s + 1), sigma=sigma, eps_target=eps_target, consts=consts,
                              b=b, R=R, T=T, conversion=conversion))
    return Ks


def smallest_sigma_best(*, K, eps_target, S, consts: Constants, b=None, R=0.0, T=None, conversion="improved",
                        rtol=1e-7) -> float:
    """Smallest sigma with the best bound after K steps (epochs) unlearning S rows <= eps_target (docs/METHOD.md §7.5).

    Every candidate bound decreases in sigma, so their minimum does: the generic calibration applies.
    """
    K = v.steps("K", K)
    Ks, sizes, _, b, R, conversion, T = _setup([K], [S], 0.0, consts, b, R, conversion, T)
    return smallest_sigma(lambda s: _dp_best(Ks, sizes, s, consts, b, R, T, conversion)[0],
                          eps_target=eps_target, given=f"K={K}, S={sizes[0]}, b={b}", rtol=rtol)
