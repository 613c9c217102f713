"""Paper A's bounds for full-batch PNGD (Langevin unlearning, arXiv 2401.10371; docs/METHOD.md §3).

RDP curves vectorised over the Renyi order ``alpha`` (pure formulas of raw numbers): ``epsilon0``
(learning, §3.1), ``epsilon_unlearn`` / ``epsilon_unlearn_lsi`` (one request, §3.2), ``epsilon_sequential``
(a stream, weak triangle recursion, §3.3). ``dp_epsilon_*`` convert to (eps, delta) minimised over alpha
(docs/METHOD.md §5); ``minimal_K_pngd`` / ``smallest_sigma_pngd`` / ``next_K_sequential_pngd`` are these
bounds handed to the generic calibration (utils/accountant/calibration.py).
"""
from __future__ import annotations

import math

import numpy as np

from utils.accountant import validation as v
from utils.accountant.calibration import minimal_K, require_noise, smallest_sigma
from utils.accountant.certificates import Constants
from utils.accountant.conversion import conversion_term, dp_linear, minimize_log_alpha


def eps0_slope(S, sigma, M, m, n):
    """eps_0(alpha) = slope * alpha with slope = 4 S^2 M^2 / (m sigma^2 n^2); infinite for sigma = 0."""
    if sigma == 0:
        return math.inf
    return 4.0 * S ** 2 * M ** 2 / (m * sigma ** 2 * n ** 2)


def slopes(sizes, sigma, M, m, n):
    """eps_0 slope of each level; one scalar when every request has the same size (then exactly the equal-S path)."""
    out = [eps0_slope(S, sigma, M, m, n) for S in sizes]
    return out[0] if len(set(out)) == 1 else np.asarray(out)


def _check_pngd(S, sigma, M, m, n):
    n = v.n_rows(n)
    return v.S_rows(S, n), v.nonneg("sigma", sigma), v.positive("M", M), v.positive("m", m), n


def epsilon0(*, alpha, S, sigma, M, m, n) -> float | np.ndarray:
    """Learning RDP eps_0(alpha; S, sigma) = 4 alpha S^2 M^2 / (m sigma^2 n^2)
    (A, arXiv 2401.10371; docs/METHOD.md §3.1, §3.2)."""
    a = v.alpha(alpha)
    S, sigma, M, m, n = _check_pngd(S, sigma, M, m, n)
    return v.scalar(eps0_slope(S, sigma, M, m, n) * a)


def lsi_constant(*, sigma, m) -> float:
    """C_LSI = 2 sigma^2 / m: fixed point of C <- (1 - eta m)^2 C + 2 eta sigma^2
    (A, arXiv 2401.10371; docs/METHOD.md §3.2)."""
    return 2.0 * v.nonneg("sigma", sigma) ** 2 / v.positive("m", m)


def epsilon_unlearn_lsi(*, alpha, K, eps_init, sigma, eta, C_lsi) -> float | np.ndarray:
    """Unlearning RDP exp(-2 sigma^2 eta K / (alpha C_LSI)) * eps_init(alpha)
    (A, arXiv 2401.10371, RU theorem; docs/METHOD.md §3.2)."""
    a = v.alpha(alpha)
    K, sigma = v.steps("K", K), v.nonneg("sigma", sigma)
    eta, C_lsi = v.positive("eta", eta), v.positive("C_lsi", C_lsi)
    e = np.asarray(eps_init, dtype=np.float64)
    if (e < 0).any() or np.isnan(e).any():
        raise ValueError("eps_init with negative or nan entries is not allowed (allowed: RDP values >= 0)")
    with np.errstate(invalid="ignore"):
        out = np.exp(-2.0 * sigma ** 2 * eta * K / (a * C_lsi)) * e
    return v.scalar(np.where(np.isinf(e), np.inf, out))


def _eps_unlearn(a, K, slope, em):
    if slope == math.inf:
        return np.full_like(a, np.inf)
    return np.exp(-em * K / a) * slope * a


def epsilon_unlearn(*, alpha, K, S, sigma, M, m, n, eta) -> float | np.ndarray:
    """Strongly convex unlearning RDP exp(-K m eta / alpha) * eps_0(alpha)
    (A, arXiv 2401.10371; docs/METHOD.md §3.2); K = 0 is eps_0."""
    a = v.alpha(alpha)
    K = v.steps("K", K)
    S, sigma, M, m, n = _check_pngd(S, sigma, M, m, n)
    eta = v.positive("eta", eta)
    return v.scalar(_eps_unlearn(a, K, eps0_slope(S, sigma, M, m, n), eta * m))


def eps_sequential(a, Ks, slope, em, form):
    """eps^(s)(a) for Ks = (K_1..K_s), all levels at once (docs/METHOD.md §3.3).

    Level j is evaluated at beta_j = a 2^(s-j); both forms unroll to e_s = sum_j w_j prod_{i>j} h_i with
    h_i = e^(-eta m K_i/beta_i) r(beta_i), r(x) = (x - 1/2)/(x - 1), and w_j = e^(-eta m K_j/beta_j) times
    slope beta_1 (j = 1), r(beta_j) slope 2 beta_j (paper) or slope (2 beta_j - 1) (mironov). The products
    are sums of logarithms (one reversed cumulative sum), so the cost is a few array operations.
    ``slope`` is one eps_0 slope for every level, or one per level (requests of unequal sizes S_j).
    """
    if np.isinf(slope).any():
        return np.full_like(a, np.inf)
    if form == "two_sided":
        return _eps_sequential_two_sided(a, Ks, slope, em)
    s = len(Ks)
    a = np.asarray(a, dtype=np.float64)
    shape = (s,) + (1,) * a.ndim
    powers = np.arange(s - 1, -1, -1).reshape(shape)
    beta, log_beta, big = _orders(a, powers)                      # (s, *a.shape)
    if np.ndim(slope):
        slope = np.asarray(slope, dtype=np.float64).reshape(shape)
    decay = -em * np.asarray(Ks, dtype=np.float64).reshape(shape) / beta
    with np.errstate(invalid="ignore"):
        log_r = np.where(big, 0.0, np.log((beta - 0.5) / (beta - 1.0)))
    with np.errstate(over="ignore"):
        if form == "paper":
            log_w = decay + log_r + np.where(big, np.log(2.0 * slope) + log_beta, np.log(2.0 * slope * beta))
        else:
            log_w = decay + np.where(big, np.log(2.0 * slope) + log_beta, np.log(slope * (2.0 * beta - 1.0)))
        slope0 = slope[0] if np.ndim(slope) else slope
        log_w[0] = decay[0] + np.where(big[0], np.log(slope0) + log_beta[0], np.log(slope0 * beta[0]))
        log_h = decay + log_r
        # after[j] = sum_{i > j} log h_i
        after = np.zeros_like(log_h)
        if s > 1:
            after[:-1] = np.cumsum(log_h[:0:-1], axis=0)[::-1]
        return np.exp(log_w + after).sum(axis=0)


_HUGE_ORDER = 2.0 ** 1000     # above it 2 x can overflow: a level's terms come from log x instead


def _orders(a, powers):
    """(a 2^powers, its logarithm, where it is huge): the orders of the stream's levels. a 2^p is exact where
    finite; at orders above 2^1000 (far from any optimum) the level's terms are evaluated from log x with
    log r = 0 and log(c x - 1) <= log c + log x, so a stream of 1024 requests or more gives a finite value or
    +inf, never nan (docs/METHOD.md §3.3)."""
    with np.errstate(over="ignore"):
        beta = np.ldexp(a, powers)
    return beta, np.log(a) + powers * math.log(2.0), beta > _HUGE_ORDER


def _eps_sequential_two_sided(a, Ks, slope, em):
    """The two-sided Mironov recursion (docs/METHOD.md §3.3), level by level in logarithms:

    e_1(x) = e^(-eta m K_1/x) eps_0(x; S_1),
    e_j(x) = e^(-eta m K_j/x) max(eps_0(2x-1; S_j) + r(x) e_(j-1)(2x), r(x) eps_0(2x; S_j) + e_(j-1)(2x)),

    r(x) = (x - 1/2)/(x - 1): Mironov's weak triangle inequality (arXiv 1702.07476, Prop. 11) once in each
    direction, with D_(2x-1) <= D_(2x) for the divergence the previous level bounds. Never above the paper form.
    """
    s = len(Ks)
    a = np.asarray(a, dtype=np.float64)
    slopes = np.broadcast_to(np.asarray(slope, dtype=np.float64), (s,))   # one slope, or one per level
    Ks = np.asarray(Ks, dtype=np.float64)
    beta, log_beta, big = _orders(a, s - 1)                     # level 1's order
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        log_e = -em * Ks[0] / beta + np.where(big, np.log(slopes[0]) + log_beta, np.log(slopes[0] * beta))
        for j in range(1, s):
            prev = log_e                                        # e_(j-1) was evaluated at 2 beta_j
            beta, log_beta, big = _orders(a, s - 1 - j)
            log_r = np.where(big, 0.0, np.log((beta - 0.5) / (beta - 1.0)))
            forward = np.logaddexp(np.where(big, np.log(2.0 * slopes[j]) + log_beta,
                                            np.log(slopes[j] * (2.0 * beta - 1.0))), log_r + prev)
            backward = np.logaddexp(log_r + np.where(big, np.log(2.0 * slopes[j]) + log_beta,
                                                     np.log(2.0 * slopes[j] * beta)), prev)
            log_e = -em * Ks[j] / beta + np.maximum(forward, backward)
        return np.exp(log_e)


def epsilon_sequential(*, alpha, Ks, S, sigma, M, m, n, eta, form="paper") -> float | np.ndarray:
    """Sequential RDP eps^(s)(alpha) after requests with steps Ks = [K_1..K_s]
    (A, arXiv 2401.10371, weak triangle; docs/METHOD.md §3.3).

    paper:     eps^(s)(a) = e^(-eta m K_s/a) ((a-1/2)/(a-1)) (eps_0(2a) + eps^(s-1)(2a))
    mironov:   eps^(s)(a) = e^(-eta m K_s/a) (eps_0(2a-1) + ((a-1/2)/(a-1)) eps^(s-1)(2a))  (one direction)
    two_sided: e^(-eta m K_s/a) max(the mironov bracket, ((a-1/2)/(a-1)) eps_0(2a) + eps^(s-1)(2a))
    """
    a = v.alpha(alpha)
    Ks = v.step_list(Ks)
    S, sigma, M, m, n = _check_pngd(S, sigma, M, m, n)
    eta = v.positive("eta", eta)
    form = v.choice("form", form, v.SEQUENTIAL_FORMS)
    return v.scalar(eps_sequential(a, Ks, eps0_slope(S, sigma, M, m, n), eta * m, form))


def epsilon_sequential_sizes(*, alpha, Ks, sizes, sigma, M, m, n, eta, form="paper") -> float | np.ndarray:
    """eps^(s)(alpha) of docs/METHOD.md §3.3 when request j replaced sizes[j] rows: level j uses eps_0(.; S_j)
    (A, arXiv 2401.10371, weak triangle).

    eps_0 at level j bounds the learned laws on D_(j-1) and D_j, which differ in the S_j rows of request j.
    """
    a = v.alpha(alpha)
    Ks = v.step_list(Ks)
    n, sigma = v.n_rows(n), v.nonneg("sigma", sigma)
    sizes = v.sizes(sizes, len(Ks), n)
    M, m, eta = v.positive("M", M), v.positive("m", m), v.positive("eta", eta)
    form = v.choice("form", form, v.SEQUENTIAL_FORMS)
    return v.scalar(eps_sequential(a, Ks, slopes(sizes, sigma, M, m, n), eta * m, form))


# ---------------------------------------------------------------- (eps, delta)
def _dp_pngd(Ks, slope, em, log_inv_delta, conversion, form="paper"):
    """(eps, alpha*) of the sequential curve; slope: one eps_0 slope for every level, or one per level."""
    if np.isinf(slope).any():
        return math.inf, math.nan
    if len(Ks) == 1 and Ks[0] == 0:
        return dp_linear(slope, log_inv_delta, conversion)
    return minimize_log_alpha(lambda a, am1: eps_sequential(a, Ks, slope, em, form)
                              + conversion_term(am1, log_inv_delta, conversion))


def _pngd_eps_of_K(consts: Constants, Ks, sizes, sigma, form, conversion):
    """K -> eps (eps, delta) of the stream Ks + [K] (requests of sizes[j] rows) at noise sigma."""
    slope, em, lid = slopes(sizes, sigma, consts.M, consts.m, consts.n), consts.eta * consts.m, consts.log_inv_delta
    return lambda K: _dp_pngd(list(Ks) + [K], slope, em, lid, conversion, form)[0]


def dp_epsilon_learn(*, S, sigma, consts: Constants, conversion="basic") -> tuple[float, float]:
    """(eps, alpha*): DP of learning, min_alpha eps_0(alpha) + conversion (A, arXiv 2401.10371; docs/METHOD.md §3.1;
    closed form for basic, docs/METHOD.md §5.2)."""
    S, sigma = v.S_rows(S, consts.n), v.nonneg("sigma", sigma)
    conversion = v.choice("conversion", conversion, v.CONVERSIONS)
    return dp_linear(eps0_slope(S, sigma, consts.M, consts.m, consts.n), consts.log_inv_delta, conversion)


def dp_epsilon_unlearn(*, K, S, sigma, consts: Constants, conversion="basic") -> tuple[float, float]:
    """(eps, alpha*): DP of unlearning S points with K PNGD steps (A, arXiv 2401.10371; docs/METHOD.md §3.2, §5.1)."""
    K, S, sigma = v.steps("K", K), v.S_rows(S, consts.n), v.nonneg("sigma", sigma)
    conversion = v.choice("conversion", conversion, v.CONVERSIONS)
    slope = eps0_slope(S, sigma, consts.M, consts.m, consts.n)
    return _dp_pngd([K], slope, consts.eta * consts.m, consts.log_inv_delta, conversion)


def dp_epsilon_sequential(*, Ks, S, sigma, consts: Constants, form="paper", conversion="basic") -> tuple[float, float]:
    """(eps, alpha*): DP after the sequential requests with steps Ks
    (A, arXiv 2401.10371; docs/METHOD.md §3.3, §5.1)."""
    Ks, S, sigma = v.step_list(Ks), v.S_rows(S, consts.n), v.nonneg("sigma", sigma)
    form = v.choice("form", form, v.SEQUENTIAL_FORMS)
    conversion = v.choice("conversion", conversion, v.CONVERSIONS)
    slope = eps0_slope(S, sigma, consts.M, consts.m, consts.n)
    return _dp_pngd(Ks, slope, consts.eta * consts.m, consts.log_inv_delta, conversion, form)


def dp_epsilon_sequential_sizes(*, Ks, sizes, sigma, consts: Constants, form="paper",
                                conversion="basic") -> tuple[float, float]:
    """(eps, alpha*) after sequential requests of sizes[j] rows with steps Ks (A, arXiv 2401.10371;
    docs/METHOD.md §3.3, §5.1, per-request S)."""
    Ks, sigma = v.step_list(Ks), v.nonneg("sigma", sigma)
    sizes = v.sizes(sizes, len(Ks), consts.n)
    form = v.choice("form", form, v.SEQUENTIAL_FORMS)
    conversion = v.choice("conversion", conversion, v.CONVERSIONS)
    slope = slopes(sizes, sigma, consts.M, consts.m, consts.n)
    return _dp_pngd(Ks, slope, consts.eta * consts.m, consts.log_inv_delta, conversion, form)


# ---------------------------------------------------------------- calibration (the bounds above + calibration.py)
def minimal_K_pngd(*, sigma, eps_target, S, consts: Constants, conversion="basic") -> int:
    """Exact minimal K >= 1 with DP of unlearning S points <= eps_target
    (A, arXiv 2401.10371; docs/METHOD.md §3.2, §5.2)."""
    return next_K_sequential_pngd(Ks=[], sizes=[S], sigma=sigma, eps_target=eps_target, consts=consts,
                                  conversion=conversion)


def next_K_sequential_pngd(*, Ks, sizes, sigma, eps_target, consts: Constants, form="paper",
                           conversion="basic") -> int:
    """Minimal K_s >= 1 of request s = len(sizes), with K_1..K_(s-1) = Ks frozen (A, arXiv 2401.10371;
    docs/METHOD.md §3.3 greedy step, per-request S). With equal sizes, repeated calls give sequential_K_list_pngd.
    """
    Ks = v.step_list(Ks, allow_empty=True)
    sigma, eps_target = v.nonneg("sigma", sigma), v.target(eps_target)
    sizes = v.sizes(sizes, len(Ks) + 1, consts.n)
    form = v.choice("form", form, v.SEQUENTIAL_FORMS)
    conversion = v.choice("conversion", conversion, v.CONVERSIONS)
    require_noise(sigma, eps_target)
    given = f"sigma={sigma!r}, S={sizes[-1]}" + (f" at request {len(sizes)}" if Ks else "")
    return minimal_K(_pngd_eps_of_K(consts, Ks, sizes, sigma, form, conversion), eps_target=eps_target,
                     given=given, hint=int(Ks[-1]) if Ks else 1)


def sequential_K_list_pngd(*, num_requests, S, sigma, eps_target, consts: Constants, form="paper",
                           conversion="basic") -> list[int]:
    """Greedy per-request steps: K_1 minimal, then K_s minimal with K_1..K_{s-1} frozen (A, arXiv 2401.10371;
    docs/METHOD.md §3.3)."""
    num_requests = v.integer("num_requests", num_requests, 1)
    Ks: list[int] = []
    for s in range(num_requests):
        Ks.append(next_K_sequential_pngd(Ks=Ks, sizes=[S] * (s + 1), sigma=sigma, eps_target=eps_target,
                                         consts=consts, form=form, conversion=conversion))
    return Ks


def smallest_sigma_pngd(*, K, eps_target, S, consts: Constants, conversion="basic", rtol=1e-7) -> float:
    """Smallest sigma with DP of unlearning S points in K steps <= eps_target (A, arXiv 2401.10371;
    docs/METHOD.md §3.2, §5.2). Conservative: meets the target, at most rtol relative above the exact minimum.
    """
    K, S = v.steps("K", K), v.S_rows(S, consts.n)
    conversion = v.choice("conversion", conversion, v.CONVERSIONS)
    return smallest_sigma(lambda sigma: _pngd_eps_of_K(consts, [], [S], sigma, "paper", conversion)(K),
                          eps_target=eps_target, given=f"K={K}, S={S}", rtol=rtol)
