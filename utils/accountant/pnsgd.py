"""Paper B's bounds for PNSGD (certified unlearning via noisy SGD, arXiv 2403.17105; docs/METHOD.md §4).

``Z_B`` / ``Z_sequential`` / ``Z_stream``: the W_inf distance of the two runs (Lemma 3.3, §4.1, §4.4);
``epsilon_pnsgd_loose`` (§4.2, privacy amplification by iteration as restated in paper B, Lemma 2.6),
``epsilon_pnsgd_tight`` (§4.3), ``epsilon_pnsgd_nonconvergent`` (finite learning time, §4.5). Every bound
is linear in alpha, so the basic conversion has a closed form (docs/METHOD.md §5.2). ``minimal_K_*`` and
``smallest_sigma_*`` are these bounds handed to the generic calibration (utils/accountant/calibration.py).
"""
from __future__ import annotations

import math

import numpy as np

from utils.accountant import validation as v
from utils.accountant.calibration import InfeasibleTargetError, minimal_K, require_noise, smallest_sigma
from utils.accountant.certificates import Constants
from utils.accountant.conversion import conversion_term, dp_linear, minimize_log_alpha


def _cap(z, R):
    """min(z, 2R): two points of the ball of radius R are at most 2R apart; R = 0 means no projection."""
    return min(z, 2.0 * R) if R > 0 else z


def zb(eta, M, c, n, b, R):
    """Z_B of one replaced row (unchecked numbers; see Z_B)."""
    return _cap(2.0 * eta * M / (b * (1.0 - c ** (n // b))), R)


def Z_B(*, eta, M, m, n, b, R=0.0) -> float:
    """W_inf bound Z_B = min(2 eta M / (b (1 - c^(n/b))), 2R) of the two stationary laws
    (B, arXiv 2403.17105, Lemma 3.3; docs/METHOD.md §4.1). R = 0 means no projection and no cap.
    """
    c = v.contraction(eta, m)
    n = v.n_rows(n)
    return zb(eta, v.positive("M", M), c, n, v.batch(b, n), v.nonneg("R", R))


def z_next(z, K, c, steps, z_new, R):
    """Z^(s+1) = min(c^(K_s n/b) Z^(s) + Z_new, 2R) (B, arXiv 2403.17105; docs/METHOD.md §4.4)."""
    return _cap(c ** (K * steps) * z + z_new, R)


def Z_sequential(*, Ks, Z_B, eta, m, n, b, R=0.0) -> list[float]:
    """[Z^(1), ..., Z^(s+1)]: Z^(1) = Z_B, Z^(s+1) = min(c^(K_s n/b) Z^(s) + Z_B, 2R) (B, arXiv 2403.17105;
    docs/METHOD.md §4.4)."""
    c = v.contraction(eta, m)
    n = v.n_rows(n)
    steps = n // v.batch(b, n)
    z0, R = v.positive("Z_B", Z_B), v.nonneg("R", R)
    Ks = v.step_list(Ks, allow_empty=True)
    out = [z0]
    for K in Ks:
        out.append(z_next(out[-1], K, c, steps, z0, R))
    return out


def Z_stream(*, Ks, sizes, consts: Constants, b=None, R=0.0) -> list[float]:
    """[Z^(1)..Z^(s)] of docs/METHOD.md §4.4 when request j replaced sizes[j] rows (B, arXiv 2403.17105,
    per-request S), s = len(sizes):

    Z^(1) = min(S_1 Z_B, 2R), Z^(j+1) = min(c^(K_j n/b) Z^(j) + S_(j+1) Z_B, 2R). S rows move the stationary
    law by at most S Z_B in W_inf (triangle inequality through S one-row changes). len(Ks) = len(sizes) - 1.
    """
    n = consts.n
    b = n if b is None else v.batch(b, n)
    R = v.nonneg("R", R)
    Ks = v.step_list(Ks, allow_empty=True)
    sizes = v.sizes(sizes, len(Ks) + 1, n)
    z1 = zb(consts.eta, consts.M, consts.c, n, b, 0.0)
    out = [_cap(sizes[0] * z1, R)]
    for K, S in zip(Ks, sizes[1:]):
        out.append(z_next(out[-1], K, consts.c, n // b, S * z1, R))
    return out


def coef_loose(K, z, sigma, eta, c, steps):
    """eps_loose(alpha) / alpha = z^2 c^(2 K n/b) / (2 eta sigma^2), computed in logs against underflow."""
    if sigma == 0:
        return math.inf
    if z == 0:
        return 0.0
    return math.exp(2.0 * math.log(z) + 2.0 * K * steps * math.log(c) - math.log(2.0 * eta * sigma ** 2))


def coef_tight(K, z, sigma, eta, c, steps):
    """eps_tight(alpha) / alpha = z^2 (1 - c^2) c^(2x) / ((1 - c^(2x)) 2 eta sigma^2), x = K n/b >= 1."""
    if K == 0:
        return coef_loose(0, z, sigma, eta, c, steps)
    x = K * steps
    ratio = (1.0 - c * c) / -math.expm1(2.0 * x * math.log(c))    # (1 - c^2) / (1 - c^(2x)) <= 1 for x >= 1
    return coef_loose(K, z, sigma, eta, c, steps) * ratio


def _check_pnsgd(K, Z, sigma, eta, m, n, b):
    c = v.contraction(eta, m)
    n = v.n_rows(n)
    return v.steps("K", K), v.nonneg("Z", Z), v.nonneg("sigma", sigma), c, n // v.batch(b, n)


def epsilon_pnsgd_loose(*, alpha, K, Z, sigma, eta, m, n, b) -> float | np.ndarray:
    """Converged-learning unlearning RDP alpha Z^2 c^(2 K n/b) / (2 eta sigma^2) (B, arXiv 2403.17105, main
    theorem; docs/METHOD.md §4.2)."""
    a = v.alpha(alpha)
    K, Z, sigma, c, steps = _check_pnsgd(K, Z, sigma, eta, m, n, b)
    return v.scalar(coef_loose(K, Z, sigma, eta, c, steps) * a)


def epsilon_pnsgd_tight(*, alpha, K, Z, sigma, eta, m, n, b) -> float | np.ndarray:
    """Shifted-Renyi RDP alpha Z^2 (1-c^2) c^(2Kn/b) / ((1 - c^(2Kn/b)) 2 eta sigma^2) (B, arXiv 2403.17105;
    docs/METHOD.md §4.3).

    The shift budget is spread optimally over the K n/b noisy steps; with K = 0 there are no steps to
    spread it over, and the value is the loose form's (one shift absorbed by the last noisy step).
    """
    a = v.alpha(alpha)
    K, Z, sigma, c, steps = _check_pnsgd(K, Z, sigma, eta, m, n, b)
    return v.scalar(coef_tight(K, Z, sigma, eta, c, steps) * a)


def _nonconvergent_parts(K, T, z1, R, sigma, eta, c, steps, reference_zero_R):
    """(A1, A2) with eps1(a') = a' A1, eps2(a') = a' A2 of docs/METHOD.md §4.5; inf when the bound does not exist."""
    if sigma == 0:
        return math.inf, math.inf
    if R == 0:
        if not reference_zero_R:
            # Without projection the W_inf distance of the Gaussian start to the stationary law is unbounded.
            return math.inf, math.inf
        return 0.0, coef_loose(K, z1, sigma, eta, c, steps)        # the reference's --projection 0 arithmetic
    updates = T * steps
    if updates < 2:
        # The start N(0, 2 sigma^2/m) is not in the ball: only after the first update are two coupled
        # points within 2R, and a shift then needs a later noisy update to absorb it.
        return math.inf, math.inf
    decay = math.exp((updates - 1) * math.log(c))                  # c^(T n/b - 1), may underflow to 0
    a1 = coef_loose(1, 2.0 * R * decay, sigma, eta, c, 0)          # (2R c^(Tn/b - 1))^2 / (2 eta sigma^2)
    a2 = coef_loose(K, z1 + 2.0 * R * decay, sigma, eta, c, steps)
    return a1, a2


def epsilon_pnsgd_nonconvergent(*, alpha, K, T, sigma, eta, M, m, n, b, R, q=2.0,
                                reference_zero_R=False) -> float | np.ndarray:
    """Finite-T unlearning RDP ((a - 1/p)/(a - 1)) (eps1(q a) + eps2(p a)), p = q/(q-1) (B, arXiv 2403.17105;
    docs/METHOD.md §4.5); for q != 2 the larger of that and the reverse direction's
    ((a - 1/p)/(a - 1)) eps1(p a) + eps2(q (a - 1/p)) (docs/METHOD.md §4.5: the weak triangle inequality holds
    one direction at a time; for q = 2 the paper form covers both).

    eps1(a') = a' (2R)^2 c^(2(Tn/b - 1)) / (2 eta sigma^2)
    eps2(a') = a' (Z_B + 2R c^(Tn/b - 1))^2 c^(2Kn/b) / (2 eta sigma^2)
    The start N(0, 2 sigma^2/m) is never projected, so two coupled points are within 2R of each other
    only after the first update: T n/b - 1 contractions remain, not T n/b (the paper's exponent assumes
    a start inside the ball; docs/METHOD.md §6.6). T n/b < 2 makes the bound infinite.
    R = 0 (no projection) makes the bound infinite; reference_zero_R=True reproduces the reference,
    which drops the 2R terms: its value is then at least the every-T loose bound alpha Z_B^2 c^(2Kn/b) /
    (2 eta sigma^2) (factor p (alpha - 1/p)/(alpha - 1) >= 1), so it still certifies (docs/METHOD.md §6).
    """
    a = v.alpha(alpha)
    c = v.contraction(eta, m)
    n = v.n_rows(n)
    steps = n // v.batch(b, n)
    K, T, sigma, R = v.steps("K", K), v.steps("T", T), v.nonneg("sigma", sigma), v.nonneg("R", R)
    q, p = v.holder(q)
    z1 = zb(eta, v.positive("M", M), c, n, n // steps, R)           # n // steps == b
    a1, a2 = _nonconvergent_parts(K, T, z1, R, sigma, eta, c, steps, reference_zero_R)
    with np.errstate(invalid="ignore"):
        out = _nonconvergent_rdp(a, a - 1.0, a1, a2, q, p)
    return v.scalar(np.where(np.isnan(out), np.inf, out))


def _nonconvergent_rdp(a, am1, a1, a2, q, p):
    """alpha -> the finite-T bound of both directions (epsilon_pnsgd_nonconvergent); am1 = alpha - 1.

    Mironov's weak triangle inequality (arXiv 1702.07476, Prop. 11) through the stationary law nu of D':
    D_a(U || R) <= r D_(p a)(U || nu) + D_(q (a - 1/p))(nu || R), r = (a - 1/p)/(a - 1), with U the unlearned
    law, R retraining; eps2 bounds U against nu and eps1 R against nu (both ways, W_inf is symmetric). The
    paper form r (eps1(q a) + eps2(p a)) is at least this one (r >= 1, q a > q (a - 1/p)); the reverse
    direction D_a(R || U) <= r eps1(p a) + eps2(q (a - 1/p)) is at most the paper form when q = p = 2 only."""
    r = (a - 1.0 / p) / am1
    paper = r * (q * a1 * a + p * a2 * a)
    if q == 2.0:
        return paper
    return np.maximum(paper, r * (p * a1 * a) + q * (a - 1.0 / p) * a2)


# ---------------------------------------------------------------- (eps, delta)
def _dp_nonconvergent(a1, a2, q, p, log_inv_delta, conversion):
    """(eps, alpha*) of ((a-1/p)/(a-1)) G a + B/(a-1), G = q A1 + p A2; with u = a - 1 it is
    G u + G (2 - 1/p) + (G (1 - 1/p) + B)/u, minimised at u = sqrt((G (1 - 1/p) + B)/G). For q != 2 the
    reverse direction joins (``_nonconvergent_rdp``) and the minimum over alpha is numerical."""
    G = q * a1 + p * a2
    if G == math.inf:
        return math.inf, math.nan
    if q != 2.0 and G > 0:
        return minimize_log_alpha(lambda al, am1: _nonconvergent_rdp(al, am1, a1, a2, q, p)
                                  + conversion_term(am1, log_inv_delta, conversion))
    if conversion == "basic":
        if G == 0:
            return 0.0, math.inf
        C = G * (1.0 - 1.0 / p) + log_inv_delta
        return G * (2.0 - 1.0 / p) + 2.0 * math.sqrt(G * C), 1.0 + math.sqrt(C / G)
    return minimize_log_alpha(lambda al, am1: (al - 1.0 / p) / am1 * G * al
                              + conversion_term(am1, log_inv_delta, conversion))


def _setup(b, sigma, R, consts):
    n = consts.n
    b = n if b is None else v.batch(b, n)
    steps = n // b
    sigma, R = v.nonneg("sigma", sigma), v.nonneg("R", R)
    return b, steps, sigma, R, zb(consts.eta, consts.M, consts.c, n, b, R)


def _dp_pnsgd(K, z, sigma, steps, consts, form, conversion):
    coef = (coef_loose if form == "loose" else coef_tight)(K, z, sigma, consts.eta, consts.c, steps)
    return dp_linear(coef, consts.log_inv_delta, conversion)


def _eps_nonconvergent(K, T, z1, R, sigma, q, p, consts, steps, conversion, reference_zero_R):
    a1, a2 = _nonconvergent_parts(K, T, z1, R, sigma, consts.eta, consts.c, steps, reference_zero_R)
    return _dp_nonconvergent(a1, a2, q, p, consts.log_inv_delta, conversion)[0]


def dp_epsilon_pnsgd(*, K, sigma, consts: Constants, b=None, R=0.0, Z=None, form="loose",
                     conversion="basic") -> tuple[float, float]:
    """(eps, alpha*) of PNSGD unlearning with K epochs (B, arXiv 2403.17105; docs/METHOD.md §4.2, §4.3).

    Paper B states it after converged learning; it holds after any T learning epochs as a comparison with
    retraining from scratch for T + K epochs (the every-T coupling, docs/METHOD.md §6.1).

    ``Z`` defaults to Z_B(b, R) (one replaced point); pass Z^(s) of Z_sequential for later requests.
    """
    K = v.steps("K", K)
    b, steps, sigma, R, z1 = _setup(b, sigma, R, consts)
    z = z1 if Z is None else v.nonneg("Z", Z)
    form, conversion = v.choice("form", form, v.PNSGD_FORMS), v.choice("conversion", conversion, v.CONVERSIONS)
    return _dp_pnsgd(K, z, sigma, steps, consts, form, conversion)


def dp_epsilon_pnsgd_nonconvergent(*, K, T, sigma, consts: Constants, R, b=None, q=2.0, conversion="basic",
                                   reference_zero_R=False) -> tuple[float, float]:
    """(eps, alpha*) of PNSGD unlearning with K epochs after T learning epochs (B, arXiv 2403.17105;
    docs/METHOD.md §4.5; closed form in alpha)."""
    K, T = v.steps("K", K), v.steps("T", T)
    b, steps, sigma, R, z1 = _setup(b, sigma, R, consts)
    q, p = v.holder(q)
    conversion = v.choice("conversion", conversion, v.CONVERSIONS)
    a1, a2 = _nonconvergent_parts(K, T, z1, R, sigma, consts.eta, consts.c, steps, reference_zero_R)
    return _dp_nonconvergent(a1, a2, q, p, consts.log_inv_delta, conversion)


# ---------------------------------------------------------------- calibration (the bounds above + calibration.py)
def minimal_K_pnsgd(*, sigma, eps_target, consts: Constants, b=None, R=0.0, Z=None, form="loose",
                    conversion="basic", hint: int = 1) -> int:
    """Exact minimal K >= 1 epochs with the converged PNSGD bound <= eps_target (B, arXiv 2403.17105;
    docs/METHOD.md §4.2, §4.3, §5.2)."""
    eps_target = v.target(eps_target)
    b, steps, sigma, R, z1 = _setup(b, sigma, R, consts)
    z = z1 if Z is None else v.nonneg("Z", Z)
    form, conversion = v.choice("form", form, v.PNSGD_FORMS), v.choice("conversion", conversion, v.CONVERSIONS)
    require_noise(sigma, eps_target)
    return minimal_K(lambda K: _dp_pnsgd(K, z, sigma, steps, consts, form, conversion)[0], eps_target=eps_target,
                     given=f"sigma={sigma!r}, b={b}", hint=hint)


def minimal_K_pnsgd_nonconvergent(*, sigma, eps_target, T, consts: Constants, R, b=None, q=2.0,
                                  conversion="basic", reference_zero_R=False) -> int:
    """Exact minimal K >= 1 epochs with the finite-T PNSGD bound <= eps_target (B, arXiv 2403.17105;
    docs/METHOD.md §4.5, §5.2). K -> inf removes eps2 only: a target not above that limit is refused."""
    eps_target, T = v.target(eps_target), v.steps("T", T)
    b, steps, sigma, R, z1 = _setup(b, sigma, R, consts)
    q, p = v.holder(q)
    conversion = v.choice("conversion", conversion, v.CONVERSIONS)

    def eps_of(K):
        return _eps_nonconvergent(K, T, z1, R, sigma, q, p, consts, steps, conversion, reference_zero_R)

    note = " (no projection: the bound is infinite; pass R > 0)" if R == 0 and not reference_zero_R else ""
    return minimal_K(eps_of, eps_target=eps_target, given=f"sigma={sigma!r}, b={b}, T={T}, R={R}{note}",
                     eps_limit=eps_of(math.inf))


def smallest_sigma_pnsgd(*, K, eps_target, consts: Constants, b=None, R=0.0, form="loose", conversion="basic",
                         rtol=1e-7) -> float:
    """Smallest sigma with the converged PNSGD bound after K epochs <= eps_target (B, arXiv 2403.17105;
    docs/METHOD.md §4.2, §4.3, §5.2)."""
    K = v.steps("K", K)
    b, steps, _, R, z1 = _setup(b, 0.0, R, consts)
    form, conversion = v.choice("form", form, v.PNSGD_FORMS), v.choice("conversion", conversion, v.CONVERSIONS)
    return smallest_sigma(lambda s: _dp_pnsgd(K, z1, s, steps, consts, form, conversion)[0],
                          eps_target=eps_target, given=f"K={K}, b={b}", rtol=rtol)


def smallest_sigma_pnsgd_nonconvergent(*, eps_target, T, consts: Constants, R, K=1, b=None, q=2.0,
                                       conversion="basic", reference_zero_R=False, rtol=1e-7) -> float:
    """Smallest sigma with the finite-T PNSGD bound after K epochs (default 1) <= eps_target (B, arXiv 2403.17105;
    docs/METHOD.md §4.5, §5.2). Bracket + bisection on the continuous bound (the reference bisects on K(sigma) <= K).
    """
    K, T, eps_target = v.steps("K", K), v.steps("T", T), v.target(eps_target)
    b, steps, _, R, z1 = _setup(b, 0.0, R, consts)
    q, p = v.holder(q)
    conversion = v.choice("conversion", conversion, v.CONVERSIONS)
    if R == 0 and not reference_zero_R:
        raise InfeasibleTargetError(f"R=0 (no projection) makes the non-convergent bound infinite for every sigma "
                                    f"(eps_target={eps_target!r}); pass R > 0, or reference_zero_R=True to "
                                    "reproduce the reference")
    return smallest_sigma(lambda s: _eps_nonconvergent(K, T, z1, R, s, q, p, consts, steps, conversion,
                                                       reference_zero_R),
                          eps_target=eps_target, given=f"K={K}, b={b}, T={T}, R={R}", rtol=rtol)


def sequential_K_list_pnsgd(*, num_requests, sigma, eps_target, consts: Constants, b=None, R=0.0,
                            tight_first=False, conversion="basic") -> tuple[list[int], list[float]]:
    """Per-request epochs and the Z^(s) they used (B, arXiv 2403.17105; docs/METHOD.md §4.4).

    K_1 from the loose bound with Z^(1) = Z_B (tight with tight_first=True); K_s, s >= 2, minimal for
    the tight bound with Z^(s) = min(c^(K_{s-1} n/b) Z^(s-1) + Z_B, 2R).
    """
    num_requests, eps_target = v.integer("num_requests", num_requests, 1), v.target(eps_target)
    b, steps, sigma, R, z1 = _setup(b, sigma, R, consts)
    conversion = v.choice("conversion", conversion, v.CONVERSIONS)
    require_noise(sigma, eps_target)
    Ks: list[int] = []
    Zs: list[float] = [z1]
    for s in range(num_requests):
        if s:
            Zs.append(z_next(Zs[-1], Ks[-1], consts.c, steps, z1, R))
        form = "loose" if s == 0 and not tight_first else "tight"
        Ks.append(minimal_K_pnsgd(sigma=sigma, eps_target=eps_target, consts=consts, b=b, R=R, Z=Zs[-1], form=form,
                                  conversion=conversion, hint=Ks[-1] if Ks else 1))
    return Ks, Zs
