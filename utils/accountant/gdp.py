"""Gaussian differential privacy of unlearning by shifted interpolation (docs/METHOD.md §12).

The unlearned chain and the chain retrained from scratch on the current data run the same noisy, projected,
c-Lipschitz update, except that at update k their gradient maps differ by at most eta Delta_k. Shifted
interpolation (Bok, Su, Altschuler, ICML 2024, arXiv 2403.00278, §3-4) bounds the pair in Gaussian DP
(Dong, Roth, Su, arXiv 1905.02383): for any shifts a_k >= 0 whose unabsorbed remainder
b_k = c b_(k-1) + eta Delta_k - a_k stays >= 0 from b_0 = 0 to b_N = 0, the two outputs are mu-GDP with
mu = sqrt(sum a_k^2) / s, s = sqrt(2 eta) sigma the noise of one update (docs/METHOD.md §12.1).

- ``shift_allocation``: the smallest sum a_k^2 for any sequence Delta_k (the lower convex hull, §12.2);
- ``gdp_mu``: mu after a stream of requests, in closed form (full batch; mini-batches with the removed rows
  in the worst place of a fixed batch order, §12.3-12.4), for a learning length T;
- ``gdp_delta`` / ``gdp_epsilon``: the exact conversion between mu and (eps, delta) (Dong, Roth, Su, Cor. 2.13),
  in logarithms; ``gdp_rdp`` the Renyi curve alpha mu^2 / 2 that mu-GDP implies; ``gdp_chains`` k chains;
  ``gdp_power`` the plain reading of mu (§12.5);
- ``dp_epsilon_gdp`` and its searches ``next_K_gdp`` / ``minimal_K_gdp`` / ``sequential_K_list_gdp`` /
  ``smallest_sigma_gdp`` (through utils/accountant/calibration.py).

A search reads the constants' ``grad_bound`` (min(M, the model's gradient bound)) as the per-row gradient
bound: every per-sample gradient the update uses has at most that norm (docs/METHOD.md §12.6).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import special

from utils.accountant import validation as v
from utils.accountant.calibration import minimal_K, require_noise, smallest_sigma
from utils.accountant.certificates import Constants

_EPS_RTOL = 1e-12            # the conversion's bracket: relative width (absolute below eps = 1)


# ---------------------------------------------------------------- the conversion (Dong, Roth, Su, Cor. 2.13)
def gdp_log_delta(mu: float, eps: float) -> float:
    """log delta(eps) of mu-GDP, delta(eps) = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2), in logarithms:
    log Phi(a) + log(1 - e^(eps + log Phi(b) - log Phi(a))), finite where the plain form under- or overflows."""
    if mu == 0:
        return -math.inf
    if mu == math.inf:
        return 0.0
    a, b = -eps / mu + mu / 2.0, -eps / mu - mu / 2.0
    la, lb = float(special.log_ndtr(a)), float(special.log_ndtr(b))
    gap = eps + lb - la                                   # < 0: e^eps Phi(b) < Phi(a) for every mu > 0
    if not gap < 0:
        return -math.inf
    return la + math.log(-math.expm1(gap))


def gdp_delta(*, mu, eps) -> float:
    """The exact delta(eps) of a mu-GDP pair: Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2)
    (Dong, Roth, Su, arXiv 1905.02383, Cor. 2.13; docs/METHOD.md §12.5)."""
    mu, eps = v.nonneg("mu", mu, allow_inf=True), v.nonneg("eps", eps, allow_inf=True)
    return math.exp(gdp_log_delta(mu, eps))


def gdp_epsilon(*, mu, delta) -> float:
    """The smallest eps >= 0 with delta(eps) <= delta for a mu-GDP pair (Dong, Roth, Su, arXiv 1905.02383,
    Cor. 2.13; docs/METHOD.md §12.5): a bracketed bisection in logarithms that returns the passing end, so the
    result is a valid (eps, delta) guarantee at most 1e-12 relative above the exact one."""
    mu, delta = v.nonneg("mu", mu, allow_inf=True), v.delta(delta)
    return _epsilon(mu, math.log(delta))


def _epsilon(mu: float, log_delta: float) -> float:
    if mu == math.inf:
        return math.inf
    if gdp_log_delta(mu, 0.0) <= log_delta:
        return 0.0
    lo, hi = 0.0, max(1.0, mu * mu)
    while gdp_log_delta(mu, hi) > log_delta:
        lo, hi = hi, 2.0 * hi
    while hi - lo > _EPS_RTOL * max(1.0, hi):
        mid = 0.5 * (lo + hi)
        if gdp_log_delta(mu, mid) <= log_delta:
            hi = mid
        else:
            lo = mid
    return hi


def gdp_rdp(*, alpha, mu) -> float | np.ndarray:
    """alpha mu^2 / 2: a mu-GDP pair has at most the Renyi divergence of N(0, 1) and N(mu, 1) at every order
    (docs/METHOD.md §12.5)."""
    a = v.alpha(alpha)
    mu = v.nonneg("mu", mu, allow_inf=True)
    return v.scalar(a * (mu * mu / 2.0))


def gdp_chains(*, mu, chains) -> float:
    """sqrt(k) mu: k chains run with independent noise compose to sqrt(k) mu-GDP (Dong, Roth, Su,
    arXiv 1905.02383, Cor. 3.3; docs/METHOD.md §12.5)."""
    return math.sqrt(v.integer("chains", chains, 1)) * v.nonneg("mu", mu, allow_inf=True)


def gdp_power(*, mu, fpr=0.05) -> float:
    """Phi(Phi^-1(fpr) + mu): the largest probability with which any test that is wrong on retrained models
    with probability fpr can detect the removal, for a mu-GDP pair (docs/METHOD.md §12.5)."""
    mu, fpr = v.nonneg("mu", mu, allow_inf=True), v.checks.probability("fpr", fpr)
    return float(special.ndtr(special.ndtri(fpr) + mu))


def reading(mu: float, fpr: float = 0.05) -> str:
    """mu in plain words (the certificate's ``reading``)."""
    power = gdp_power(mu=mu, fpr=fpr)
    return (f"mu={mu:.4g}-Gaussian DP: a test of whether these rows were removed that is wrong {fpr:.0%} of the time "
            f"on retrained models detects the removal with probability at most Phi(Phi^-1({fpr:g}) + mu) = {power:.3f}")


# ---------------------------------------------------------------- the allocation (any Delta sequence)
def shift_allocation(e, c) -> tuple[float, np.ndarray]:
    """(min sum a_k^2, a) over shifts a_k >= 0 with b_k = c b_(k-1) + e_k - a_k >= 0, b_0 = 0, b_N = 0, for a
    sequence e_k = eta Delta_k >= 0 (docs/METHOD.md §12.2). With u_k = c^(N-k) and p_k = u_k a_k the
    constraints are prefix sums sum_(j<=k) p_j <= E_k = sum_(j<=k) u_j e_j (equality at N) and the cost is
    sum p_k^2 / u_k^2: the cumulative allocation is the greatest convex minorant of the points
    (W_k, E_k), W_k = sum_(j<=k) u_j^2, and the cost is sum over its pieces of (rise)^2 / (run)."""
    e = np.asarray(e, dtype=np.float64)
    if e.ndim != 1 or (e < 0).any() or not np.isfinite(e).all():
        raise ValueError("e must be a finite 1-D sequence of numbers >= 0")
    c = v.real("c", c)
    if not 0 < c < 1:
        raise v.checks.refuse("c", c, "a contraction 0 < c < 1")
    N = e.size
    u = c ** np.arange(N - 1, -1, -1, dtype=np.float64)
    W = np.concatenate([[0.0], np.cumsum(u * u)])
    E = np.concatenate([[0.0], np.cumsum(u * e)])
    hull: list[int] = []                                  # indices of the minorant's corners
    for i in range(N + 1):
        while len(hull) >= 2:
            j, k = hull[-2], hull[-1]
            # drop k when it lies on or above the chord from j to i
            if (E[k] - E[j]) * (W[i] - W[j]) >= (E[i] - E[j]) * (W[k] - W[j]):
                hull.pop()
            else:
                break
        hull.append(i)
    a = np.zeros(N)
    cost = 0.0
    for j, k in zip(hull[:-1], hull[1:]):
        slope = (E[k] - E[j]) / (W[k] - W[j])
        a[j:k] = slope * u[j:k]
        cost += (E[k] - E[j]) * slope
    return cost, a


# ---------------------------------------------------------------- mu of unlearning, in closed form
def _geometric(x_log: float, count: float) -> float:
    """(1 - x^count) / (1 - x) for x = e^x_log in (0, 1), count >= 0 (inf allowed)."""
    if count == 0:
        return 0.0
    top = 1.0 if count == math.inf else -math.expm1(count * x_log)
    return top / -math.expm1(x_log)


def mu_stream(*, Ks, sizes, sigma, eta, c, grad_bound, n, b, T) -> float:
    """mu after request s = len(Ks) of a stream (docs/METHOD.md §12.3-12.4), raw numbers.

    Request i replaced sizes[i] rows, which differ between the unlearned chain's data and the current data
    during the first E_i = T + K_1 + ... + K_(i-1) epochs (steps for b = n) and agree for the last
    A_i = K_i + ... + K_s. With P = n/b updates per epoch, r = c^P, N = (T + sum K) P updates and a row in
    the last batch of each epoch (the worst place of a fixed order; all rows there is attainable when they
    fit in one batch):

      mu = sum_i S_i (2 eta G / (b s)) c^(A_i P) (1 - r^(E_i)) / (1 - r) sqrt((1 - c^2) / (1 - c^(2 (N - P + 1)))),

    s = sqrt(2 eta) sigma. b = n gives the full-batch value, exact for a quadratic with a constant gradient
    shift and a point start. T = None bounds every learning length: for b = n the stationary limit T -> inf
    (mu grows with T there); for b < n, where it need not, every T >= 1 epoch: the numerator's T -> inf and
    the denominator's T = 1 (docs/METHOD.md §12.4).
    """
    if sigma == 0:
        return math.inf
    P = n // b
    logc = math.log(c)
    if T is None:
        T, tail_updates = math.inf, (math.inf if P == 1 else sum(Ks) * P + 1)
    else:
        tail_updates = (T + sum(Ks)) * P - P + 1
    if T + sum(Ks) == 0:
        return 0.0
    s = math.sqrt(2.0 * eta) * sigma
    # sum_(k=P..N) c^(2 (N-k)): the updates from the first one that can hold a difference to the last
    tail = 1.0 / (1.0 - c * c) if tail_updates == math.inf else _geometric(2.0 * logc, tail_updates)
    total, after = 0.0, 0.0
    for i in range(len(Ks) - 1, -1, -1):
        after += Ks[i]                                    # A_i = K_i + ... + K_s
        E = T + sum(Ks[:i])
        total += sizes[i] * math.exp(after * P * logc) * _geometric(P * logc, E)
    return 2.0 * eta * grad_bound / (b * s) * total / math.sqrt(tail)


def _grad_bound(consts: Constants) -> float:
    """The per-row gradient bound the Gaussian-DP bound uses: min(M, the model's bound) when recorded."""
    return consts.M if consts.grad_bound is None else consts.grad_bound


def _setup(Ks, sizes, sigma, consts, b, T, *, allow_empty=False):
    n = consts.n
    b = n if b is None else v.batch(b, n)
    Ks = v.step_list(Ks, allow_empty=allow_empty)
    sizes = v.sizes(sizes, len(Ks) + (1 if allow_empty else 0), n)
    sigma = v.nonneg("sigma", sigma)
    return Ks, sizes, sigma, b, (None if T is None else v.steps("T", T))


def gdp_mu(*, Ks, sizes, sigma, consts: Constants, b=None, T=None) -> float:
    """mu of the Gaussian-DP certificate after requests of sizes[j] rows unlearned with Ks[j] steps (epochs for
    b < n) after T learning steps (epochs): the unlearned chains against retraining from scratch on the current
    data for T + sum K (Bok, Su, Altschuler, arXiv 2403.00278, §3-4; docs/METHOD.md §12).

    T=None: a value that bounds every learning length (mu_stream)."""
    Ks, sizes, sigma, b, T = _setup(Ks, sizes, sigma, consts, b, T)
    return mu_stream(Ks=Ks, sizes=sizes, sigma=sigma, eta=consts.eta, c=consts.c, grad_bound=_grad_bound(consts),
                     n=consts.n, b=b, T=T)


def dp_epsilon_gdp(*, Ks, sizes, sigma, consts: Constants, b=None, T=None) -> tuple[float, float]:
    """(eps, mu): the exact (eps, delta) of the Gaussian-DP certificate at the constants' delta
    (docs/METHOD.md §12.5)."""
    mu = gdp_mu(Ks=Ks, sizes=sizes, sigma=sigma, consts=consts, b=b, T=T)
    return _epsilon(mu, math.log(consts.delta)), mu


# ---------------------------------------------------------------- calibration (mu above + calibration.py)
def next_K_gdp(*, Ks, sizes, sigma, eps_target, consts: Constants, b=None, T=None) -> int:
    """Minimal K_s >= 1 of request s = len(sizes) for the Gaussian-DP certificate, K_1..K_(s-1) = Ks frozen
    (docs/METHOD.md §12.5). mu -> 0 as K_s grows, so every target is met."""
    Ks, sizes, sigma, b, T = _setup(Ks, sizes, sigma, consts, b, T, allow_empty=True)
    eps_target = v.target(eps_target)
    require_noise(sigma, eps_target)
    lid = math.log(consts.delta)
    G = _grad_bound(consts)

    def eps_of(K):
        return _epsilon(mu_stream(Ks=Ks + [K], sizes=sizes, sigma=sigma, eta=consts.eta, c=consts.c,
                                  grad_bound=G, n=consts.n, b=b, T=T), lid)

    return minimal_K(eps_of, eps_target=eps_target,
                     given=f"sigma={sigma!r}, b={b}" + (f" at request {len(sizes)}" if Ks else ""),
                     hint=max(1, math.ceil(Ks[-1])) if Ks else 1)


def minimal_K_gdp(*, sigma, eps_target, S, consts: Constants, b=None, T=None) -> int:
    """Exact minimal K >= 1 unlearning S rows with the Gaussian-DP certificate <= eps_target (docs/METHOD.md §12)."""
    return next_K_gdp(Ks=[], sizes=[S], sigma=sigma, eps_target=eps_target, consts=consts, b=b, T=T)


def sequential_K_list_gdp(*, num_requests, S, sigma, eps_target, consts: Constants, b=None, T=None) -> list[int]:
    """Greedy per-request steps for the Gaussian-DP certificate: K_s minimal with K_1..K_(s-1) frozen."""
    num_requests = v.integer("num_requests", num_requests, 1)
    Ks: list[int] = []
    for s in range(num_requests):
        Ks.append(next_K_gdp(Ks=Ks, sizes=[S] * (s + 1), sigma=sigma, eps_target=eps_target, consts=consts,
                             b=b, T=T))
    return Ks


def smallest_sigma_gdp(*, K, eps_target, S, consts: Constants, b=None, T=None, rtol=1e-7) -> float:
    """Smallest sigma with the Gaussian-DP certificate after K steps (epochs) unlearning S rows <= eps_target
    (mu is proportional to 1/sigma, so eps decreases in sigma; docs/METHOD.md §12.5)."""
    K = v.steps("K", K)
    Ks, sizes, _, b, T = _setup([K], [S], 0.0, consts, b, T)
    G, lid = _grad_bound(consts), math.log(consts.delta)
    return smallest_sigma(lambda s: _epsilon(mu_stream(Ks=Ks, sizes=sizes, sigma=s, eta=consts.eta, c=consts.c,
                                                       grad_bound=G, n=consts.n, b=b, T=T), lid),
                          eps_target=eps_target, given=f"K={K}, S={sizes[0]}, b={b}", rtol=rtol)
