"""The privacy accountant: pure math for certified unlearning (numpy / scipy only).

Formulas (docs/METHOD.md §3-§5; "A" = Langevin unlearning, arXiv 2401.10371; "B" = noisy-SGD
unlearning, arXiv 2403.17105; "D2D" = Neel, Roth, Sharifi-Malvajerdi, ALT 2021):

- RDP bounds, vectorised over the Renyi order ``alpha``: ``epsilon0`` (A, learning), ``epsilon_unlearn``
  (A, strongly convex), ``epsilon_unlearn_lsi`` (A, any LSI constant), ``epsilon_sequential`` (A, weak
  triangle recursion), ``epsilon_pnsgd_loose`` / ``epsilon_pnsgd_tight`` / ``epsilon_pnsgd_nonconvergent``
  (B) with ``Z_B`` and ``Z_sequential``.
- Conversion to (eps, delta)-DP and the minimisation over ``alpha`` on all of (1, inf):
  ``rdp_to_dp``, ``minimize_over_alpha`` (numeric) and ``optimal_alpha_linear`` (closed form);
  ``dp_epsilon_*`` return ``(eps, alpha*)``.
- Searches: ``minimal_K_*`` (exact, doubling then bisection, never below 1), ``smallest_sigma_*``
  (bracket, bisect, re-check, conservative side), ``sequential_K_list_*``.
- D2D noise and iteration counts; ``make_constants``, ``certificate`` and ``burn_in_auto``.

Every evaluated bound is an upper bound at the order where it was evaluated, so an inexact
minimisation over ``alpha`` can only make a certificate more conservative, never invalid.
Bound functions take raw numbers (pure formulas); searches take a ``Constants``.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from typing import Callable, Sequence

import numpy as np

from utils import models

__all__ = [
    "InfeasibleTargetError", "AlphaRangeWarning", "Constants", "make_constants",
    "data_smoothness_lambda_max", "certificate", "burn_in_auto",
    "epsilon0", "lsi_constant", "epsilon_unlearn_lsi", "epsilon_unlearn", "epsilon_sequential",
    "rdp_to_dp", "optimal_alpha_linear", "minimize_over_alpha",
    "dp_epsilon_learn", "dp_epsilon_unlearn", "dp_epsilon_sequential",
    "minimal_K_pngd", "smallest_sigma_pngd", "sequential_K_list_pngd",
    "epsilon_sequential_sizes", "dp_epsilon_sequential_sizes", "next_K_sequential_pngd", "Z_stream",
    "Z_B", "Z_sequential", "epsilon_pnsgd_loose", "epsilon_pnsgd_tight", "epsilon_pnsgd_nonconvergent",
    "dp_epsilon_pnsgd", "dp_epsilon_pnsgd_nonconvergent", "minimal_K_pnsgd",
    "minimal_K_pnsgd_nonconvergent", "smallest_sigma_pnsgd", "smallest_sigma_pnsgd_nonconvergent",
    "sequential_K_list_pnsgd",
    "d2d_sigma_1", "d2d_sigma_2", "d2d_I_min", "d2d_term2", "d2d_sequential_K_list",
]

SEQUENTIAL_FORMS = ("paper", "mironov")
CONVERSIONS = ("basic", "improved")
PNSGD_FORMS = ("loose", "tight")

# log(alpha - 1) spans every double alpha > 1: 1 + 2.2e-16 is the first double above 1, 1e300 is finite.
_T_MIN, _T_MAX = math.log(4.5e-16), math.log(1e300)
_T_START = (-4.0, 28.0)      # alpha - 1 in [0.018, 1.4e12]: where optima of these bounds live
_GRID_STEP = 0.25
_ZOOM_POINTS = 17
_T_TOL = 1e-7                # bracket width in log(alpha - 1): value error ~ width^2, far below 1e-9
_MAX_K = 10 ** 15            # safety net only: infeasibility is detected from the K -> inf limit


class InfeasibleTargetError(ValueError):
    """No sigma (or K) meets the requested privacy target; the message names the values."""


class AlphaRangeWarning(RuntimeWarning):
    """The optimal Renyi order sits at the edge of the range that was searched."""


# ---------------------------------------------------------------- validation
def _real(name, x):
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise ValueError(f"{name}={x!r} is not a real number (allowed: a finite real number)")
    x = float(x)
    if math.isnan(x):
        raise ValueError(f"{name}=nan is not allowed (allowed: a finite real number)")
    return x


def _positive(name, x):
    x = _real(name, x)
    if not (0 < x < math.inf):
        raise ValueError(f"{name}={x!r} is not allowed (allowed: a finite number > 0)")
    return x


def _nonneg(name, x, *, allow_inf=False):
    x = _real(name, x)
    if x < 0 or (x == math.inf and not allow_inf):
        raise ValueError(f"{name}={x!r} is not allowed (allowed: a finite number >= 0)")
    return x


def _int(name, x, lo):
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        if isinstance(x, numbers.Real) and float(x).is_integer():
            x = int(x)
        else:
            raise ValueError(f"{name}={x!r} is not an integer (allowed: an integer >= {lo})")
    if x < lo:
        raise ValueError(f"{name}={x!r} is not allowed (allowed: an integer >= {lo})")
    return int(x)


def _steps(name, x):
    """A step / epoch count: a real number >= 0 (integers in practice; the formulas are continuous)."""
    return _nonneg(name, x)


def _delta(delta):
    delta = _real("delta", delta)
    if not 0 < delta < 1:
        raise ValueError(f"delta={delta!r} is not allowed (allowed: 0 < delta < 1)")
    return delta


def _n(n):
    return _int("n", n, 2)


def _S(S, n):
    S = _int("S", S, 1)
    if S >= n:
        raise ValueError(f"S={S} is not allowed (allowed: 1 <= S < n = {n})")
    return S


def _target(eps):
    eps = _real("eps_target", eps)
    if not 0 < eps < math.inf:
        raise ValueError(f"eps_target={eps!r} is not allowed (allowed: a finite number > 0)")
    return eps


def _alpha(alpha):
    a = np.asarray(alpha, dtype=np.float64)
    bad = a[~(a > 1)].ravel()
    if a.size == 0 or bad.size:
        raise ValueError(f"alpha={bad[0] if bad.size else alpha!r} is not allowed (allowed: Renyi orders alpha > 1)")
    return a


def _contraction(eta, m):
    """c = 1 - eta m of one noisy step (B), which needs 0 < eta m < 1, i.e. eta < 1/m."""
    eta, m = _positive("eta", eta), _positive("m", m)
    if not eta * m < 1:
        raise ValueError(f"eta*m={eta * m!r} is not allowed (allowed: 0 < eta*m < 1, e.g. eta = 1/L with L > m)")
    return 1.0 - eta * m


def _batch(b, n):
    b = _int("b", b, 1)
    if b > n or n % b:
        raise ValueError(f"b={b} is not allowed (allowed: a batch size that divides n = {n})")
    return b


def _choice(name, x, allowed):
    if x not in allowed:
        raise ValueError(f"{name}={x!r} is not allowed (allowed: {', '.join(map(repr, allowed))})")
    return x


def _scalar(x):
    return float(x) if np.ndim(x) == 0 else x


# ---------------------------------------------------------------- constants
@dataclasses.dataclass(frozen=True)
class Constants:
    """Everything the accountant needs about one dataset / loss (docs/METHOD.md §1.3)."""

    n: int
    lam: float
    m: float                    # strong convexity lam * n
    L: float                    # smoothness
    M: float                    # per-sample gradient clip (Lipschitz constant)
    eta: float                  # step size 1/L
    delta: float
    num_classes: int
    d: int | None               # dimension used by D2D's I_min / term2
    smoothness: str             # "bound", "data" or "given" (L passed in)
    data_dependent: bool        # L was computed from the training data
    lambda_max: float | None    # largest eigenvalue of X^T X / n when smoothness == "data"
    c: float                    # 1 - eta m: contraction of one noisy step
    gamma: float                # D2D contraction (L - m) / (L + m)
    d2d_step: float             # D2D step 2 / (L + m)

    @property
    def log_inv_delta(self) -> float:
        return -math.log(self.delta)


def make_constants(*, n, lam, M, num_classes=2, L=None, smoothness="bound", lambda_max=None,
                   delta=None, d=None, model=None) -> Constants:
    """Constants of docs/METHOD.md §1.3: m = lam n, L (closed-form bound, data-dependent, or given), eta = 1/L, delta = 1/n.

    The loss's smoothness comes from ``model`` (a utils.models.Model; default models.model_for(num_classes)):
    L = model.smoothness_bound + m, or model.curvature * lambda_max + m from the data."""
    n = _n(n)
    lam, M = _positive("lam", lam), _positive("M", M)
    num_classes = _int("num_classes", num_classes, 2)
    model = models.model_for(num_classes if model is None else model)
    smoothness = _choice("smoothness", smoothness, ("bound", "data"))
    m = lam * n
    if lambda_max is not None:
        lambda_max = _positive("lambda_max", lambda_max)
    if L is not None:
        L = _positive("L", L)
        source = "data" if smoothness == "data" else "given"
    elif smoothness == "bound":
        L = model.smoothness_bound + m  # unit-norm rows: logistic 1/4; softmax the reference's (loose) 1
        source = "bound"
    else:
        if lambda_max is None:
            raise ValueError("lambda_max=None is not allowed with smoothness='data' "
                             "(allowed: lambda_max > 0 from data_smoothness_lambda_max, or pass L)")
        L = lambda_max * model.curvature + m  # Hessian <= curvature I (x) X^T X / n (utils/models.py)
        source = "data"
    if not L > m:
        raise ValueError(f"L={L!r} is not allowed (allowed: L > m = lam*n = {m!r})")
    delta = 1.0 / n if delta is None else _delta(delta)
    if d is not None:
        d = _int("d", d, 1)
    eta = 1.0 / L
    return Constants(n=n, lam=lam, m=m, L=L, M=M, eta=eta, delta=delta, num_classes=num_classes, d=d,
                     smoothness=source, data_dependent=(smoothness == "data"), lambda_max=lambda_max,
                     c=1.0 - eta * m, gamma=(L - m) / (L + m), d2d_step=2.0 / (L + m))


def data_smoothness_lambda_max(X, *, replaced_rows=0) -> float:
    """Largest eigenvalue of X^T X / n (docs/METHOD.md §1.3), plus replaced_rows/n to cover every D'.

    Replacing k rows by rows of norm <= 1 subtracts a PSD matrix and adds one of trace <= k/n, so by
    Weyl's inequality lambda_max grows by at most k/n: the result bounds D and all its neighbours.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 1 or not np.isfinite(X).all():
        raise ValueError(f"X with shape {X.shape} is not allowed (allowed: a finite 2-D array with rows)")
    replaced_rows = _int("replaced_rows", replaced_rows, 0)
    n = X.shape[0]
    # The eigenvalues of X^T X and X X^T agree; use the smaller Gram matrix.
    G = X.T @ X if X.shape[1] <= n else X @ X.T
    lam_max = float(np.linalg.eigvalsh(G / n)[-1])
    return lam_max + replaced_rows / n


def _json_value(x):
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_json_value(v) for v in np.asarray(x).tolist()] if isinstance(x, np.ndarray) \
            else [_json_value(v) for v in x]
    if x is None or isinstance(x, (bool, np.bool_)):
        return None if x is None else bool(x)
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real):
        x = float(x)
        return x if math.isfinite(x) else None   # strict JSON has no inf: null = no finite value
    if isinstance(x, str):
        return x
    raise ValueError(f"{x!r} is not allowed in a certificate (allowed: numbers, strings, lists of them)")


def retraining_comparison(*, T=None, K=None, unit="steps") -> str:
    """What an unlearning certificate compares with, in words (docs/METHOD.md §6.1).

    The bounds of both papers hold for every learning length T under the synchronous coupling, and they
    compare the unlearned chains with chains retrained from scratch, from the same initial law, on the
    current data for T + sum K updates (not T). ``K``: one count or the per-request list.
    """
    text = f"indistinguishable from retraining from scratch on the current data for T + sum K {unit}"
    if T is None or K is None:
        return text
    Ks = [int(k) for k in (K if isinstance(K, (list, tuple, np.ndarray)) else [K])]
    return text + f" (T + sum K = {int(T)} + {sum(Ks)} = {int(T) + sum(Ks)})"


def certificate(*, consts: Constants, eps, alpha, K, sigma, R=0.0, b=None, bound="", comparison=None,
                **extra) -> dict:
    """The record every run saves: the guarantee (eps, delta) at order alpha*, and what it assumed.

    ``eps``, ``alpha``, ``K`` may be lists (one per sequential request); ``b=None`` = full batch (b = n).
    ``comparison`` says what the chains are indistinguishable from; by default retraining from scratch
    for T + sum K updates (retraining_comparison, with ``T`` or ``learn_T`` from ``extra`` when given).
    Non-finite values become null (strict JSON).
    """
    if comparison is None:
        T = extra.get("T", extra.get("learn_T"))
        comparison = retraining_comparison(T=T, K=K, unit="steps" if b is None or b == consts.n else "epochs")
    record = {"eps": eps, "delta": consts.delta, "alpha": alpha, "K": K, "sigma": sigma,
              "n": consts.n, "m": consts.m, "L": consts.L, "M": consts.M, "eta": consts.eta,
              "lam": consts.lam, "R": R, "b": consts.n if b is None else b,
              "data_dependent_L": consts.data_dependent, "smoothness": consts.smoothness, "bound": bound,
              "comparison": comparison}
    record.update(extra)
    return {k: _json_value(v) for k, v in record.items()}


def burn_in_auto(*, sigma, m, M, eta, dim, tol=None, rel_tol=1e-2):
    """Steps T after which full-batch PNGD from N(0, 2 sigma^2/m I) is within W2 distance tol of its stationary law.

    Assumes the unconstrained strongly convex setting of docs/METHOD.md §2 (R = 0 or a ball containing w*,
    clipping inactive or the regulariser added after a clip that keeps each step a gradient step of an
    m-strongly convex, (1/eta)-smooth objective). Then (docs/METHOD.md §2.6):
    - one step is a (1 - eta m)-contraction under the synchronous coupling, so
      W2(nu_T, nu_inf) <= (1 - eta m)^T W2(nu_0, nu_inf);
    - ||w*|| <= ||grad f(0)|| / m <= M / m (strong convexity; clipped gradients have norm <= M);
    - E||X_0 - w*||^2 = ||w*||^2 + dim 2 sigma^2/m for the Gaussian start;
    - at stationarity V = E||Y - w*||^2 <= (1 - eta m)^2 V + 2 eta sigma^2 dim, so V <= 2 sigma^2 dim / (m (2 - eta m));
    - W2(nu_0, nu_inf) <= sqrt((M/m)^2 + 2 sigma^2 dim/m) + sqrt(2 sigma^2 dim/(m (2 - eta m))) =: W0.
    T = smallest integer with (1 - eta m)^T W0 <= tol; ``tol`` defaults to rel_tol times the stationary
    radius sqrt(V). Returns (T, (1 - eta m)^T W0), the W2 bound that holds after T steps. The same T
    holds in epochs of mini-batch PNSGD with a fixed batch order (docs/METHOD.md §6.2).
    """
    sigma = _nonneg("sigma", sigma)
    c = _contraction(eta, m)
    M = _positive("M", M)
    dim = _int("dim", dim, 1)
    radius = math.sqrt(2 * sigma ** 2 * dim / (m * (2 - eta * m)))
    if tol is None:
        rel_tol = _positive("rel_tol", rel_tol)
        if sigma == 0:
            raise ValueError("tol=None is not allowed with sigma=0 (allowed: an absolute W2 tolerance tol > 0)")
        tol = rel_tol * radius
    tol = _positive("tol", tol)
    w0 = math.sqrt((M / m) ** 2 + 2 * sigma ** 2 * dim / m) + radius
    T = 0 if w0 <= tol else math.ceil(math.log(tol / w0) / math.log(c))
    while c ** T * w0 > tol:          # guard the rounding of the logarithms
        T += 1
    return T, c ** T * w0


# ---------------------------------------------------------------- RDP bounds, paper A
def _eps0_slope(S, sigma, M, m, n):
    """eps_0(alpha) = slope * alpha; infinite for sigma = 0."""
    if sigma == 0:
        return math.inf
    return 4.0 * S ** 2 * M ** 2 / (m * sigma ** 2 * n ** 2)


def _check_pngd(S, sigma, M, m, n):
    n = _n(n)
    return _S(S, n), _nonneg("sigma", sigma), _positive("M", M), _positive("m", m), n


def epsilon0(*, alpha, S, sigma, M, m, n):
    """Learning RDP eps_0(alpha; S, sigma) = 4 alpha S^2 M^2 / (m sigma^2 n^2) (A, docs/METHOD.md §3.1, §3.2)."""
    a = _alpha(alpha)
    S, sigma, M, m, n = _check_pngd(S, sigma, M, m, n)
    return _scalar(_eps0_slope(S, sigma, M, m, n) * a)


def lsi_constant(*, sigma, m):
    """C_LSI = 2 sigma^2 / m: fixed point of C <- (1 - eta m)^2 C + 2 eta sigma^2 (A, docs/METHOD.md §3.2)."""
    return 2.0 * _nonneg("sigma", sigma) ** 2 / _positive("m", m)


def epsilon_unlearn_lsi(*, alpha, K, eps_init, sigma, eta, C_lsi):
    """Unlearning RDP exp(-2 sigma^2 eta K / (alpha C_LSI)) * eps_init(alpha) (A, RU theorem, docs/METHOD.md §3.2)."""
    a = _alpha(alpha)
    K, sigma = _steps("K", K), _nonneg("sigma", sigma)
    eta, C_lsi = _positive("eta", eta), _positive("C_lsi", C_lsi)
    e = np.asarray(eps_init, dtype=np.float64)
    if (e < 0).any() or np.isnan(e).any():
        raise ValueError("eps_init with negative or nan entries is not allowed (allowed: RDP values >= 0)")
    with np.errstate(invalid="ignore"):
        out = np.exp(-2.0 * sigma ** 2 * eta * K / (a * C_lsi)) * e
    return _scalar(np.where(np.isinf(e), np.inf, out))


def _eps_unlearn(a, K, slope, em):
    if slope == math.inf:
        return np.full_like(a, np.inf)
    return np.exp(-em * K / a) * slope * a


def epsilon_unlearn(*, alpha, K, S, sigma, M, m, n, eta):
    """Strongly convex unlearning RDP exp(-K m eta / alpha) * eps_0(alpha) (A, docs/METHOD.md §3.2); K = 0 is eps_0."""
    a = _alpha(alpha)
    K = _steps("K", K)
    S, sigma, M, m, n = _check_pngd(S, sigma, M, m, n)
    eta = _positive("eta", eta)
    return _scalar(_eps_unlearn(a, K, _eps0_slope(S, sigma, M, m, n), eta * m))


def _eps_sequential(a, Ks, slope, em, form):
    """eps^(s)(a) for Ks = (K_1..K_s), all levels at once.

    Level j is evaluated at beta_j = a 2^(s-j); both forms unroll to e_s = sum_j w_j prod_{i>j} h_i with
    h_i = e^(-eta m K_i/beta_i) r(beta_i), r(x) = (x - 1/2)/(x - 1), and w_j = e^(-eta m K_j/beta_j) times
    slope beta_1 (j = 1), r(beta_j) slope 2 beta_j (paper) or slope (2 beta_j - 1) (mironov). The products
    are sums of logarithms (one reversed cumulative sum), so the cost is a few array operations.
    ``slope`` is one eps_0 slope for every level, or one per level (requests of unequal sizes S_j).
    """
    if np.isinf(slope).any():
        return np.full_like(a, np.inf)
    s = len(Ks)
    a = np.asarray(a, dtype=np.float64)
    scale = 2.0 ** np.arange(s - 1, -1, -1, dtype=np.float64).reshape((s,) + (1,) * a.ndim)
    if np.ndim(slope):
        slope = np.asarray(slope, dtype=np.float64).reshape(scale.shape)
    beta = scale * a                                              # (s, *a.shape)
    decay = -em * np.asarray(Ks, dtype=np.float64).reshape(scale.shape) / beta
    log_r = np.log((beta - 0.5) / (beta - 1.0))
    if form == "paper":
        log_w = decay + log_r + np.log(2.0 * slope * beta)
    else:
        log_w = decay + np.log(slope * (2.0 * beta - 1.0))
    log_w[0] = decay[0] + np.log((slope[0] if np.ndim(slope) else slope) * beta[0])
    log_h = decay + log_r
    # after[j] = sum_{i > j} log h_i
    after = np.zeros_like(log_h)
    if s > 1:
        after[:-1] = np.cumsum(log_h[:0:-1], axis=0)[::-1]
    return np.exp(log_w + after).sum(axis=0)


def _check_Ks(Ks, *, allow_empty=False):
    Ks = [_steps(f"Ks[{i}]", k) for i, k in enumerate(Ks)]
    if not Ks and not allow_empty:
        raise ValueError("Ks=[] is not allowed (allowed: a non-empty list of step counts >= 0)")
    return Ks


def _require_noise(sigma, eps_target):
    if sigma == 0:
        raise InfeasibleTargetError(f"sigma=0 gives eps=inf for every K (eps_target={eps_target!r} needs sigma > 0)")


def epsilon_sequential(*, alpha, Ks, S, sigma, M, m, n, eta, form="paper"):
    """Sequential RDP eps^(s)(alpha) after requests with steps Ks = [K_1..K_s] (A, weak triangle, docs/METHOD.md §3.3).

    paper:   eps^(s)(a) = e^(-eta m K_s/a) ((a-1/2)/(a-1)) (eps_0(2a) + eps^(s-1)(2a))
    mironov: eps^(s)(a) = e^(-eta m K_s/a) (eps_0(2a-1) + ((a-1/2)/(a-1)) eps^(s-1)(2a))
    """
    a = _alpha(alpha)
    Ks = _check_Ks(Ks)
    S, sigma, M, m, n = _check_pngd(S, sigma, M, m, n)
    eta = _positive("eta", eta)
    form = _choice("form", form, SEQUENTIAL_FORMS)
    return _scalar(_eps_sequential(a, Ks, _eps0_slope(S, sigma, M, m, n), eta * m, form))


# ---------------------------------------------------------------- conversion and alpha
def _conversion_term(am1, log_inv_delta, conversion):
    """The alpha-dependent part added to the RDP value; am1 = alpha - 1 (kept separate for precision)."""
    if conversion == "basic":
        return log_inv_delta / am1
    alpha = 1.0 + am1
    return np.log(am1 / alpha) + (log_inv_delta - np.log(alpha)) / am1


def rdp_to_dp(*, eps_rdp, alpha, delta, conversion="basic"):
    """(eps, delta)-DP from RDP at order alpha (docs/METHOD.md §5.1).

    basic (the papers'): eps_rdp + log(1/delta)/(alpha - 1)   [Mironov 2017, Prop. 3]
    improved: eps_rdp + log((alpha-1)/alpha) - (log delta + log alpha)/(alpha - 1)
              [Canonne, Kamath, Steinke 2020, Prop. 12; Balle et al. 2020, Thm. 21]
    """
    a = _alpha(alpha)
    delta = _delta(delta)
    conversion = _choice("conversion", conversion, CONVERSIONS)
    e = np.asarray(eps_rdp, dtype=np.float64)
    if np.isnan(e).any() or (e < 0).any():
        raise ValueError("eps_rdp with negative or nan entries is not allowed (allowed: RDP values >= 0)")
    # the improved term can take eps below 0 for a large delta; (eps, delta) then holds at eps = 0 too
    return _scalar(np.maximum(e + _conversion_term(a - 1.0, -math.log(delta), conversion), 0.0))


def optimal_alpha_linear(*, a, b):
    """Minimiser 1 + sqrt(b/a) of a*alpha + b/(alpha - 1) over alpha > 1, with its value a + 2 sqrt(a b)."""
    a, b = _nonneg("a", a, allow_inf=True), _positive("b", b)
    return _linear_min(a, b)


def _linear_min(a, b):
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
        v = np.asarray(objective(1.0 + am1, am1), dtype=np.float64)
    return np.where(np.isnan(v), np.inf, v)


def _grid(lo, hi):
    """Points from lo to hi (both included) about _GRID_STEP apart."""
    return np.linspace(lo, hi, max(2, math.ceil((hi - lo) / _GRID_STEP) + 1))


def _minimize_log_alpha(objective):
    """(min value, alpha*) of objective(alpha, alpha-1) over all doubles alpha > 1, working in t = log(alpha-1).

    A coarse grid that extends until its minimum is interior (or the range of doubles is exhausted,
    then AlphaRangeWarning), followed by grid zooms to a bracket of width 1e-7 in t.
    """
    lo, hi = _T_START
    t = _grid(lo, hi)
    v = _evaluate(objective, t)
    if not np.isfinite(v).any():
        return math.inf, math.nan
    span = hi - lo
    while True:
        i = int(np.argmin(v))
        # the new grid overlaps the old one by a point, so a minimum at the old edge becomes interior
        # (without it a minimum exactly there makes the extension go down and up forever)
        if i == 0 and t[0] > _T_MIN:
            t = _grid(max(t[0] - span, _T_MIN), t[1])
        elif i == len(t) - 1 and t[-1] < _T_MAX:
            t = _grid(t[-2], min(t[-1] + span, _T_MAX))
        else:
            break
        v = _evaluate(objective, t)
    at_edge = i in (0, len(t) - 1)
    best_t, best_v = t[i], v[i]
    a, b = t[max(i - 1, 0)], t[min(i + 1, len(t) - 1)]
    while b - a > _T_TOL:
        t = np.linspace(a, b, _ZOOM_POINTS)
        v = _evaluate(objective, t)
        i = int(np.argmin(v))
        if v[i] < best_v:
            best_t, best_v = t[i], v[i]
        a, b = t[max(i - 1, 0)], t[min(i + 1, _ZOOM_POINTS - 1)]
    alpha = 1.0 + math.exp(best_t)
    if at_edge:
        warnings.warn(f"the optimal Renyi order alpha={alpha:.6g} sits at the edge of the searched range "
                      f"alpha - 1 in [{math.exp(_T_MIN):.3g}, {math.exp(_T_MAX):.3g}]", AlphaRangeWarning,
                      stacklevel=3)
    return float(best_v), alpha


def minimize_over_alpha(rdp: Callable, *, delta, conversion="basic"):
    """(eps, alpha*) = min over alpha in (1, inf) of rdp(alpha) + conversion term (docs/METHOD.md §5.1, §5.2).

    ``rdp`` maps an array of orders to an array of RDP values. The result is the bound at alpha*, so it
    is a valid (eps, delta) guarantee; it is within about 1e-12 relative of the exact minimum when
    rdp is unimodal in log(alpha - 1).
    """
    log_inv_delta = -math.log(_delta(delta))
    conversion = _choice("conversion", conversion, CONVERSIONS)
    return _minimize_log_alpha(lambda a, am1: rdp(a) + _conversion_term(am1, log_inv_delta, conversion))


def dp_epsilon_chains(rdp: Callable, *, chains: int, delta, conversion="basic"):
    """(eps, alpha*) of releasing ``chains`` chains run with independent noise on the same data.

    Each chain is one run of the mechanism whose Renyi divergence at order alpha is ``rdp(alpha)``;
    Renyi divergences of independent mechanisms add (Mironov 2017, arXiv 1702.07476, Prop. 1), so the
    release has RDP chains x rdp(alpha), then converted as every bound is (docs/METHOD.md §6.5).
    """
    chains = _int("chains", chains, 1)
    return minimize_over_alpha(lambda a: chains * rdp(a), delta=delta, conversion=conversion)


def _dp_linear(a, log_inv_delta, conversion):
    """(eps, alpha*) for the RDP curve a * alpha: closed form for the basic conversion."""
    if conversion == "basic":
        return _linear_min(a, log_inv_delta)
    if a == math.inf:
        return math.inf, math.nan
    return _minimize_log_alpha(lambda al, am1: a * al + _conversion_term(am1, log_inv_delta, conversion))


def _dp_pngd(Ks, slope, em, log_inv_delta, conversion, form="paper"):
    """slope: one eps_0 slope for every level, or one per level (see _eps_sequential)."""
    if np.isinf(slope).any():
        return math.inf, math.nan
    if len(Ks) == 1 and Ks[0] == 0:
        return _dp_linear(slope, log_inv_delta, conversion)
    return _minimize_log_alpha(lambda a, am1: _eps_sequential(a, Ks, slope, em, form)
                               + _conversion_term(am1, log_inv_delta, conversion))


def dp_epsilon_learn(*, S, sigma, consts: Constants, conversion="basic"):
    """(eps, alpha*): DP of learning, min_alpha eps_0(alpha) + conversion (A, docs/METHOD.md §3.1; closed form for basic)."""
    S, sigma = _S(S, consts.n), _nonneg("sigma", sigma)
    conversion = _choice("conversion", conversion, CONVERSIONS)
    return _dp_linear(_eps0_slope(S, sigma, consts.M, consts.m, consts.n), consts.log_inv_delta, conversion)


def dp_epsilon_unlearn(*, K, S, sigma, consts: Constants, conversion="basic"):
    """(eps, alpha*): DP of unlearning S points with K PNGD steps (A, docs/METHOD.md §3.2, §5.1)."""
    K, S, sigma = _steps("K", K), _S(S, consts.n), _nonneg("sigma", sigma)
    conversion = _choice("conversion", conversion, CONVERSIONS)
    slope = _eps0_slope(S, sigma, consts.M, consts.m, consts.n)
    return _dp_pngd([K], slope, consts.eta * consts.m, consts.log_inv_delta, conversion)


def dp_epsilon_sequential(*, Ks, S, sigma, consts: Constants, form="paper", conversion="basic"):
    """(eps, alpha*): DP after the sequential requests with steps Ks (A, docs/METHOD.md §3.3, §5.1)."""
    Ks, S, sigma = _check_Ks(Ks), _S(S, consts.n), _nonneg("sigma", sigma)
    form = _choice("form", form, SEQUENTIAL_FORMS)
    conversion = _choice("conversion", conversion, CONVERSIONS)
    slope = _eps0_slope(S, sigma, consts.M, consts.m, consts.n)
    return _dp_pngd(Ks, slope, consts.eta * consts.m, consts.log_inv_delta, conversion, form)


# ---------------------------------------------------------------- generic searches
def _minimal_int(passes: Callable[[int], bool], what: str, hint: int = 1) -> int:
    """Smallest K >= 1 with passes(K) for a monotone predicate: gallop from hint (doubling), then bisect.

    The domain starts at K = 1 whatever the hint; by monotonicity the hint only saves evaluations.
    """
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
    return hi


def _smallest_positive(eps_of: Callable[[float], float], target: float, what: str, rtol: float) -> float:
    """Smallest x > 0 with eps_of(x) <= target for a decreasing eps_of: bracket, geometric bisection, re-check.

    Returns the passing end of a bracket [lo, hi] with hi/lo - 1 <= rtol, so hi is at most rtol
    relative above the exact minimum.
    """
    x = 1.0
    if eps_of(x) <= target:
        hi, lo = x, x / 2
        while eps_of(lo) <= target:
            hi, lo = lo, lo / 2
            if lo < 1e-300:
                raise InfeasibleTargetError(f"every sigma down to 1e-300 meets {what}; the bound looks degenerate")
    else:
        lo, hi = x, x * 2
        while not eps_of(hi) <= target:
            lo, hi = hi, hi * 2
            if hi > 1e300:
                raise InfeasibleTargetError(f"no sigma <= 1e300 meets {what}")
    while hi / lo - 1 > rtol:
        mid = math.sqrt(lo * hi)
        if eps_of(mid) <= target:
            hi = mid
        else:
            lo = mid
    if not eps_of(hi) <= target:
        raise InfeasibleTargetError(f"re-check failed: sigma={hi!r} does not meet {what}")
    return hi


def _rtol(rtol):
    rtol = _positive("rtol", rtol)
    if rtol > 1e-5:
        raise ValueError(f"rtol={rtol!r} is not allowed (allowed: 0 < rtol <= 1e-5)")
    return rtol


# ---------------------------------------------------------------- searches, paper A
def minimal_K_pngd(*, sigma, eps_target, S, consts: Constants, conversion="basic") -> int:
    """Exact minimal K >= 1 with DP of unlearning S points <= eps_target (A, docs/METHOD.md §3.2, §5.2)."""
    sigma, eps_target, S = _nonneg("sigma", sigma), _target(eps_target), _S(S, consts.n)
    conversion = _choice("conversion", conversion, CONVERSIONS)
    _require_noise(sigma, eps_target)
    slope, em, lid = _eps0_slope(S, sigma, consts.M, consts.m, consts.n), consts.eta * consts.m, consts.log_inv_delta
    return _minimal_int(lambda K: _dp_pngd([K], slope, em, lid, conversion)[0] <= eps_target,
                        f"eps_target={eps_target!r} with sigma={sigma!r}, S={S}")


def smallest_sigma_pngd(*, K, eps_target, S, consts: Constants, conversion="basic", rtol=1e-7) -> float:
    """Smallest sigma with DP of unlearning S points in K steps <= eps_target (A, docs/METHOD.md §3.2, §5.2).

    Conservative: the result meets the target and is at most rtol relative above the exact minimum.
    """
    K, eps_target, S = _steps("K", K), _target(eps_target), _S(S, consts.n)
    conversion, rtol = _choice("conversion", conversion, CONVERSIONS), _rtol(rtol)
    em, lid = consts.eta * consts.m, consts.log_inv_delta

    def eps_of(sigma):
        return _dp_pngd([K], _eps0_slope(S, sigma, consts.M, consts.m, consts.n), em, lid, conversion)[0]

    return _smallest_positive(eps_of, eps_target, f"eps_target={eps_target!r} with K={K}, S={S}", rtol)


def sequential_K_list_pngd(*, num_requests, S, sigma, eps_target, consts: Constants, form="paper",
                           conversion="basic") -> list[int]:
    """Greedy per-request steps: K_1 minimal, then K_s minimal with K_1..K_{s-1} frozen (A, docs/METHOD.md §3.3)."""
    num_requests = _int("num_requests", num_requests, 1)
    sigma, eps_target, S = _nonneg("sigma", sigma), _target(eps_target), _S(S, consts.n)
    form = _choice("form", form, SEQUENTIAL_FORMS)
    conversion = _choice("conversion", conversion, CONVERSIONS)
    _require_noise(sigma, eps_target)
    slope, em, lid = _eps0_slope(S, sigma, consts.M, consts.m, consts.n), consts.eta * consts.m, consts.log_inv_delta
    Ks: list[int] = []
    for s in range(num_requests):
        K = _minimal_int(lambda k: _dp_pngd(Ks + [k], slope, em, lid, conversion, form)[0] <= eps_target,
                         f"eps_target={eps_target!r} at request {s + 1} with sigma={sigma!r}, S={S}",
                         hint=Ks[-1] if Ks else 1)
        Ks.append(K)
    return Ks


def _sizes(sizes, count, n):
    sizes = [_S(S, n) for S in sizes]
    if len(sizes) != count:
        raise ValueError(f"sizes={sizes!r} has {len(sizes)} entries for {count} requests "
                         "(allowed: one request size per request)")
    return sizes


def _slopes(sizes, sigma, M, m, n):
    """eps_0 slope of each level; one scalar when every request has the same size (then exactly the equal-S path)."""
    slopes = [_eps0_slope(S, sigma, M, m, n) for S in sizes]
    return slopes[0] if len(set(slopes)) == 1 else np.asarray(slopes)


def epsilon_sequential_sizes(*, alpha, Ks, sizes, sigma, M, m, n, eta, form="paper"):
    """eps^(s)(alpha) of docs/METHOD.md §3.3 when request j replaced sizes[j] rows: level j uses eps_0(.; S_j) (A, weak triangle).

    eps_0 at level j bounds the learned laws on D_(j-1) and D_j, which differ in the S_j rows of request j.
    """
    a = _alpha(alpha)
    Ks = _check_Ks(Ks)
    n, sigma = _n(n), _nonneg("sigma", sigma)
    sizes = _sizes(sizes, len(Ks), n)
    M, m, eta = _positive("M", M), _positive("m", m), _positive("eta", eta)
    form = _choice("form", form, SEQUENTIAL_FORMS)
    return _scalar(_eps_sequential(a, Ks, _slopes(sizes, sigma, M, m, n), eta * m, form))


def dp_epsilon_sequential_sizes(*, Ks, sizes, sigma, consts: Constants, form="paper", conversion="basic"):
    """(eps, alpha*) after sequential requests of sizes[j] rows with steps Ks (A, docs/METHOD.md §3.3, §5.1, per-request S)."""
    Ks, sigma = _check_Ks(Ks), _nonneg("sigma", sigma)
    sizes = _sizes(sizes, len(Ks), consts.n)
    form = _choice("form", form, SEQUENTIAL_FORMS)
    conversion = _choice("conversion", conversion, CONVERSIONS)
    slope = _slopes(sizes, sigma, consts.M, consts.m, consts.n)
    return _dp_pngd(Ks, slope, consts.eta * consts.m, consts.log_inv_delta, conversion, form)


def next_K_sequential_pngd(*, Ks, sizes, sigma, eps_target, consts: Constants, form="paper",
                           conversion="basic") -> int:
    """Minimal K_s >= 1 of request s = len(sizes), with K_1..K_(s-1) = Ks frozen (A, docs/METHOD.md §3.3 greedy step, per-request S).

    With equal sizes, repeated calls give sequential_K_list_pngd.
    """
    Ks = _check_Ks(Ks, allow_empty=True)
    sigma, eps_target = _nonneg("sigma", sigma), _target(eps_target)
    sizes = _sizes(sizes, len(Ks) + 1, consts.n)
    form = _choice("form", form, SEQUENTIAL_FORMS)
    conversion = _choice("conversion", conversion, CONVERSIONS)
    _require_noise(sigma, eps_target)
    slope, em, lid = _slopes(sizes, sigma, consts.M, consts.m, consts.n), consts.eta * consts.m, consts.log_inv_delta
    return _minimal_int(lambda k: _dp_pngd(Ks + [k], slope, em, lid, conversion, form)[0] <= eps_target,
                        f"eps_target={eps_target!r} at request {len(sizes)} with sigma={sigma!r}, S={sizes[-1]}",
                        hint=int(Ks[-1]) if Ks else 1)


# ---------------------------------------------------------------- PNSGD, paper B
def _cap(z, R):
    """min(z, 2R): two points of the ball of radius R are at most 2R apart; R = 0 means no projection."""
    return min(z, 2.0 * R) if R > 0 else z


def _zb(eta, M, c, n, b, R):
    return _cap(2.0 * eta * M / (b * (1.0 - c ** (n // b))), R)


def Z_B(*, eta, M, m, n, b, R=0.0):
    """W_inf bound Z_B = min(2 eta M / (b (1 - c^(n/b))), 2R) of the two stationary laws (B, Lemma 3.3, docs/METHOD.md §4.1).

    R = 0 means no projection and no cap.
    """
    c = _contraction(eta, m)
    n = _n(n)
    return _zb(eta, _positive("M", M), c, n, _batch(b, n), _nonneg("R", R))


def _z_next(z, K, c, steps, zb, R):
    return _cap(c ** (K * steps) * z + zb, R)


def Z_sequential(*, Ks, Z_B, eta, m, n, b, R=0.0):
    """[Z^(1), ..., Z^(s+1)]: Z^(1) = Z_B, Z^(s+1) = min(c^(K_s n/b) Z^(s) + Z_B, 2R) (B, docs/METHOD.md §4.4)."""
    c = _contraction(eta, m)
    n = _n(n)
    steps = n // _batch(b, n)
    zb, R = _positive("Z_B", Z_B), _nonneg("R", R)
    Ks = _check_Ks(Ks, allow_empty=True)
    out = [zb]
    for K in Ks:
        out.append(_z_next(out[-1], K, c, steps, zb, R))
    return out


def Z_stream(*, Ks, sizes, consts: Constants, b=None, R=0.0) -> list[float]:
    """[Z^(1)..Z^(s)] of docs/METHOD.md §4.4 when request j replaced sizes[j] rows (B, per-request S), s = len(sizes):

    Z^(1) = min(S_1 Z_B, 2R), Z^(j+1) = min(c^(K_j n/b) Z^(j) + S_(j+1) Z_B, 2R). S rows move the stationary
    law by at most S Z_B in W_inf (triangle inequality through S one-row changes). len(Ks) = len(sizes) - 1.
    """
    n = consts.n
    b = n if b is None else _batch(b, n)
    R = _nonneg("R", R)
    Ks = _check_Ks(Ks, allow_empty=True)
    sizes = _sizes(sizes, len(Ks) + 1, n)
    zb = _zb(consts.eta, consts.M, consts.c, n, b, 0.0)
    out = [_cap(sizes[0] * zb, R)]
    for K, S in zip(Ks, sizes[1:]):
        out.append(_z_next(out[-1], K, consts.c, n // b, S * zb, R))
    return out


def _coef_loose(K, z, sigma, eta, c, steps):
    """eps_loose(alpha) / alpha = z^2 c^(2 K n/b) / (2 eta sigma^2), computed in logs against underflow."""
    if sigma == 0:
        return math.inf
    if z == 0:
        return 0.0
    return math.exp(2.0 * math.log(z) + 2.0 * K * steps * math.log(c) - math.log(2.0 * eta * sigma ** 2))


def _coef_tight(K, z, sigma, eta, c, steps):
    """eps_tight(alpha) / alpha = z^2 (1 - c^2) c^(2x) / ((1 - c^(2x)) 2 eta sigma^2), x = K n/b >= 1."""
    if K == 0:
        return _coef_loose(0, z, sigma, eta, c, steps)
    x = K * steps
    ratio = (1.0 - c * c) / -math.expm1(2.0 * x * math.log(c))    # (1 - c^2) / (1 - c^(2x)) <= 1 for x >= 1
    return _coef_loose(K, z, sigma, eta, c, steps) * ratio


def _check_pnsgd(K, Z, sigma, eta, m, n, b):
    c = _contraction(eta, m)
    n = _n(n)
    return _steps("K", K), _nonneg("Z", Z), _nonneg("sigma", sigma), c, n // _batch(b, n)


def epsilon_pnsgd_loose(*, alpha, K, Z, sigma, eta, m, n, b):
    """Converged-learning unlearning RDP alpha Z^2 c^(2 K n/b) / (2 eta sigma^2) (B, main theorem, docs/METHOD.md §4.2)."""
    a = _alpha(alpha)
    K, Z, sigma, c, steps = _check_pnsgd(K, Z, sigma, eta, m, n, b)
    return _scalar(_coef_loose(K, Z, sigma, eta, c, steps) * a)


def epsilon_pnsgd_tight(*, alpha, K, Z, sigma, eta, m, n, b):
    """Shifted-Renyi RDP alpha Z^2 (1-c^2) c^(2Kn/b) / ((1 - c^(2Kn/b)) 2 eta sigma^2) (B, docs/METHOD.md §4.3).

    The shift budget is spread optimally over the K n/b noisy steps; with K = 0 there are no steps to
    spread it over, and the value is the loose form's (one shift absorbed by the last noisy step).
    """
    a = _alpha(alpha)
    K, Z, sigma, c, steps = _check_pnsgd(K, Z, sigma, eta, m, n, b)
    return _scalar(_coef_tight(K, Z, sigma, eta, c, steps) * a)


def _nonconvergent_parts(K, T, zb, R, sigma, eta, c, steps, reference_zero_R):
    """(A1, A2) with eps1(a') = a' A1, eps2(a') = a' A2 of docs/METHOD.md §4.5; inf when the bound does not exist."""
    if sigma == 0:
        return math.inf, math.inf
    if R == 0:
        if not reference_zero_R:
            # Without projection the W_inf distance of the Gaussian start to the stationary law is unbounded.
            return math.inf, math.inf
        return 0.0, _coef_loose(K, zb, sigma, eta, c, steps)       # the reference's --projection 0 arithmetic
    updates = T * steps
    if updates < 2:
        # The start N(0, 2 sigma^2/m) is not in the ball: only after the first update are two coupled
        # points within 2R, and a shift then needs a later noisy update to absorb it.
        return math.inf, math.inf
    decay = math.exp((updates - 1) * math.log(c))                  # c^(T n/b - 1), may underflow to 0
    a1 = _coef_loose(1, 2.0 * R * decay, sigma, eta, c, 0)         # (2R c^(Tn/b - 1))^2 / (2 eta sigma^2)
    a2 = _coef_loose(K, zb + 2.0 * R * decay, sigma, eta, c, steps)
    return a1, a2


def _holder_p(q):
    q = _real("q", q)
    if not 1 < q < math.inf:
        raise ValueError(f"q={q!r} is not allowed (allowed: a Holder exponent 1 < q < inf)")
    return q, q / (q - 1.0)


def epsilon_pnsgd_nonconvergent(*, alpha, K, T, sigma, eta, M, m, n, b, R, q=2.0, reference_zero_R=False):
    """Finite-T unlearning RDP ((a - 1/p)/(a - 1)) (eps1(q a) + eps2(p a)), p = q/(q-1) (B, docs/METHOD.md §4.5).

    eps1(a') = a' (2R)^2 c^(2(Tn/b - 1)) / (2 eta sigma^2)
    eps2(a') = a' (Z_B + 2R c^(Tn/b - 1))^2 c^(2Kn/b) / (2 eta sigma^2)
    The start N(0, 2 sigma^2/m) is never projected, so two coupled points are within 2R of each other
    only after the first update: T n/b - 1 contractions remain, not T n/b (the paper's exponent assumes
    a start inside the ball; docs/METHOD.md §6.6). T n/b < 2 makes the bound infinite.
    R = 0 (no projection) makes the bound infinite; reference_zero_R=True reproduces the reference,
    which drops the 2R terms: its value is then at least the every-T loose bound alpha Z_B^2 c^(2Kn/b) /
    (2 eta sigma^2) (factor p (alpha - 1/p)/(alpha - 1) >= 1), so it still certifies (docs/METHOD.md §6).
    """
    a = _alpha(alpha)
    c = _contraction(eta, m)
    n = _n(n)
    steps = n // _batch(b, n)
    K, T, sigma, R = _steps("K", K), _steps("T", T), _nonneg("sigma", sigma), _nonneg("R", R)
    q, p = _holder_p(q)
    zb = _zb(eta, _positive("M", M), c, n, n // steps, R)           # n // steps == b
    a1, a2 = _nonconvergent_parts(K, T, zb, R, sigma, eta, c, steps, reference_zero_R)
    with np.errstate(invalid="ignore"):
        out = (a - 1.0 / p) / (a - 1.0) * (q * a1 * a + p * a2 * a)
    return _scalar(np.where(np.isnan(out), np.inf, out))


def _dp_nonconvergent(a1, a2, q, p, log_inv_delta, conversion):
    """(eps, alpha*) of ((a-1/p)/(a-1)) G a + B/(a-1), G = q A1 + p A2; with u = a - 1 it is
    G u + G (2 - 1/p) + (G (1 - 1/p) + B)/u, minimised at u = sqrt((G (1 - 1/p) + B)/G)."""
    G = q * a1 + p * a2
    if G == math.inf:
        return math.inf, math.nan
    if conversion == "basic":
        if G == 0:
            return 0.0, math.inf
        C = G * (1.0 - 1.0 / p) + log_inv_delta
        return G * (2.0 - 1.0 / p) + 2.0 * math.sqrt(G * C), 1.0 + math.sqrt(C / G)
    return _minimize_log_alpha(lambda al, am1: (al - 1.0 / p) / am1 * G * al
                               + _conversion_term(am1, log_inv_delta, conversion))


def _pnsgd_setup(b, sigma, R, consts):
    n = consts.n
    b = n if b is None else _batch(b, n)
    steps = n // b
    sigma, R = _nonneg("sigma", sigma), _nonneg("R", R)
    return b, steps, sigma, R, _zb(consts.eta, consts.M, consts.c, n, b, R)


def _dp_pnsgd(K, z, sigma, steps, consts, form, conversion):
    coef = (_coef_loose if form == "loose" else _coef_tight)(K, z, sigma, consts.eta, consts.c, steps)
    return _dp_linear(coef, consts.log_inv_delta, conversion)


def dp_epsilon_pnsgd(*, K, sigma, consts: Constants, b=None, R=0.0, Z=None, form="loose", conversion="basic"):
    """(eps, alpha*) of PNSGD unlearning with K epochs (B, docs/METHOD.md §4.2, §4.3).

    Paper B states it after converged learning; it holds after any T learning epochs as a comparison with
    retraining from scratch for T + K epochs (the every-T coupling, docs/METHOD.md §6.1).

    ``Z`` defaults to Z_B(b, R) (one replaced point); pass Z^(s) of Z_sequential for later requests.
    """
    K = _steps("K", K)
    b, steps, sigma, R, zb = _pnsgd_setup(b, sigma, R, consts)
    z = zb if Z is None else _nonneg("Z", Z)
    form, conversion = _choice("form", form, PNSGD_FORMS), _choice("conversion", conversion, CONVERSIONS)
    return _dp_pnsgd(K, z, sigma, steps, consts, form, conversion)


def dp_epsilon_pnsgd_nonconvergent(*, K, T, sigma, consts: Constants, R, b=None, q=2.0, conversion="basic",
                                   reference_zero_R=False):
    """(eps, alpha*) of PNSGD unlearning with K epochs after T learning epochs (B, docs/METHOD.md §4.5; closed form in alpha)."""
    K, T = _steps("K", K), _steps("T", T)
    b, steps, sigma, R, zb = _pnsgd_setup(b, sigma, R, consts)
    q, p = _holder_p(q)
    conversion = _choice("conversion", conversion, CONVERSIONS)
    a1, a2 = _nonconvergent_parts(K, T, zb, R, sigma, consts.eta, consts.c, steps, reference_zero_R)
    return _dp_nonconvergent(a1, a2, q, p, consts.log_inv_delta, conversion)


def minimal_K_pnsgd(*, sigma, eps_target, consts: Constants, b=None, R=0.0, Z=None, form="loose",
                    conversion="basic") -> int:
    """Exact minimal K >= 1 epochs with the converged PNSGD bound <= eps_target (B, docs/METHOD.md §4.2, §4.3)."""
    eps_target = _target(eps_target)
    b, steps, sigma, R, zb = _pnsgd_setup(b, sigma, R, consts)
    z = zb if Z is None else _nonneg("Z", Z)
    form, conversion = _choice("form", form, PNSGD_FORMS), _choice("conversion", conversion, CONVERSIONS)
    _require_noise(sigma, eps_target)
    return _minimal_int(lambda K: _dp_pnsgd(K, z, sigma, steps, consts, form, conversion)[0] <= eps_target,
                        f"eps_target={eps_target!r} with sigma={sigma!r}, b={b}")


def minimal_K_pnsgd_nonconvergent(*, sigma, eps_target, T, consts: Constants, R, b=None, q=2.0,
                                  conversion="basic", reference_zero_R=False) -> int:
    """Exact minimal K >= 1 epochs with the finite-T PNSGD bound <= eps_target (B, docs/METHOD.md §4.5)."""
    eps_target, T = _target(eps_target), _steps("T", T)
    b, steps, sigma, R, zb = _pnsgd_setup(b, sigma, R, consts)
    q, p = _holder_p(q)
    conversion = _choice("conversion", conversion, CONVERSIONS)

    def eps_at(K):
        a1, a2 = _nonconvergent_parts(K, T, zb, R, sigma, consts.eta, consts.c, steps, reference_zero_R)
        return _dp_nonconvergent(a1, a2, q, p, consts.log_inv_delta, conversion)[0]

    what = f"eps_target={eps_target!r} with sigma={sigma!r}, b={b}, T={T}, R={R}"
    limit = eps_at(math.inf)          # K -> inf removes eps2 only; eps(K) > limit for every finite K
    if not limit < eps_target:
        raise InfeasibleTargetError(f"no K meets {what}: the K -> inf limit is eps={limit!r}"
                                    + (" (R=0: no projection, the bound is infinite; pass R > 0)"
                                       if R == 0 and not reference_zero_R else ""))
    return _minimal_int(lambda K: eps_at(K) <= eps_target, what)


def smallest_sigma_pnsgd(*, K, eps_target, consts: Constants, b=None, R=0.0, form="loose", conversion="basic",
                         rtol=1e-7) -> float:
    """Smallest sigma with the converged PNSGD bound after K epochs <= eps_target (B, docs/METHOD.md §4.2, §4.3)."""
    K, eps_target = _steps("K", K), _target(eps_target)
    b, steps, _, R, zb = _pnsgd_setup(b, 0.0, R, consts)
    form, conversion = _choice("form", form, PNSGD_FORMS), _choice("conversion", conversion, CONVERSIONS)
    rtol = _rtol(rtol)
    return _smallest_positive(lambda s: _dp_pnsgd(K, zb, s, steps, consts, form, conversion)[0], eps_target,
                              f"eps_target={eps_target!r} with K={K}, b={b}", rtol)


def smallest_sigma_pnsgd_nonconvergent(*, eps_target, T, consts: Constants, R, K=1, b=None, q=2.0,
                                       conversion="basic", reference_zero_R=False, rtol=1e-7) -> float:
    """Smallest sigma with the finite-T PNSGD bound after K epochs (default 1) <= eps_target (B, docs/METHOD.md §4.5, §5.2).

    Our own bracket + bisection on the continuous bound (the reference bisects on K(sigma) <= K).
    """
    K, T, eps_target = _steps("K", K), _steps("T", T), _target(eps_target)
    b, steps, _, R, zb = _pnsgd_setup(b, 0.0, R, consts)
    q, p = _holder_p(q)
    conversion, rtol = _choice("conversion", conversion, CONVERSIONS), _rtol(rtol)
    if R == 0 and not reference_zero_R:
        raise InfeasibleTargetError(f"R=0 (no projection) makes the non-convergent bound infinite for every sigma "
                                    f"(eps_target={eps_target!r}); pass R > 0, or reference_zero_R=True to "
                                    "reproduce the reference")

    def eps_of(sigma):
        a1, a2 = _nonconvergent_parts(K, T, zb, R, sigma, consts.eta, consts.c, steps, reference_zero_R)
        return _dp_nonconvergent(a1, a2, q, p, consts.log_inv_delta, conversion)[0]

    return _smallest_positive(eps_of, eps_target, f"eps_target={eps_target!r} with K={K}, b={b}, T={T}, R={R}",
                              rtol)


def sequential_K_list_pnsgd(*, num_requests, sigma, eps_target, consts: Constants, b=None, R=0.0,
                            tight_first=False, conversion="basic") -> tuple[list[int], list[float]]:
    """Per-request epochs and the Z^(s) they used (B, docs/METHOD.md §4.4).

    K_1 from the loose bound with Z^(1) = Z_B (tight with tight_first=True); K_s, s >= 2, minimal for
    the tight bound with Z^(s) = min(c^(K_{s-1} n/b) Z^(s-1) + Z_B, 2R).
    """
    num_requests, eps_target = _int("num_requests", num_requests, 1), _target(eps_target)
    b, steps, sigma, R, zb = _pnsgd_setup(b, sigma, R, consts)
    conversion = _choice("conversion", conversion, CONVERSIONS)
    _require_noise(sigma, eps_target)
    Ks: list[int] = []
    Zs: list[float] = [zb]
    for s in range(num_requests):
        if s:
            Zs.append(_z_next(Zs[-1], Ks[-1], consts.c, steps, zb, R))
        form = "loose" if s == 0 and not tight_first else "tight"
        z = Zs[-1]
        Ks.append(_minimal_int(lambda K: _dp_pnsgd(K, z, sigma, steps, consts, form, conversion)[0] <= eps_target,
                               f"eps_target={eps_target!r} at request {s + 1} with sigma={sigma!r}, b={b}",
                               hint=Ks[-1] if Ks else 1))
    return Ks, Zs


# ---------------------------------------------------------------- the best proven bound (docs/METHOD.md §7)
def _best_curves(Ks, sizes, sigma, consts, b, R):
    """{name: rdp(alpha)} of every proven bound on D_alpha(unlearned after request s || retrained on D_s),
    s = len(Ks) = len(sizes), evaluated on the same K history (docs/METHOD.md §7).

    Full batch (b = n): paper A's LSI bound (the papers' symmetric form of the sequential recursion: it bounds
    both directions of the divergence, which Mironov's one-sided form does not) and paper B's loose and tight
    bounds with the Z recursion; mini-batch: B's two. B needs K_s >= 1 noisy steps.
    """
    n, steps = consts.n, consts.n // b
    curves = {}
    if sigma == 0:
        return {"none": lambda a: np.full_like(np.asarray(a, dtype=np.float64), np.inf)}
    if b == n:
        slope, em = _slopes(sizes, sigma, consts.M, consts.m, n), consts.eta * consts.m
        curves["A-LSI"] = lambda a: _eps_sequential(a, Ks, slope, em, "paper")
    if Ks[-1] >= 1:
        z = Z_stream(Ks=Ks[:-1], sizes=sizes, consts=consts, b=b, R=R)[-1]
        for name, coef in (("B-loose", _coef_loose), ("B-tight", _coef_tight)):
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
    eps, alpha = _minimize_log_alpha(lambda a, am1: smallest(a) + _conversion_term(am1, log_inv_delta, conversion))
    if not math.isfinite(eps):
        return eps, alpha, "none"
    eps = max(eps, 0.0)     # the improved conversion can go below 0 for large delta; (0, delta) is implied
    at = np.array([float(np.asarray(curves[k](np.array([alpha])))[0]) for k in names])
    return eps, alpha, names[int(np.argmin(at))]


def rdp_best(*, Ks, sizes, sigma, consts: Constants, b=None, R=0.0) -> Callable:
    """alpha -> the smallest proven bound on the Renyi divergence after requests of sizes[j] rows unlearned with
    Ks[j] steps (the per-order minimum ``dp_epsilon_best`` converts; docs/METHOD.md §7), for one chain."""
    Ks, sizes, sigma, b, R, _ = _best_setup(Ks, sizes, sigma, consts, b, R, "improved")
    return _smallest(_best_curves(Ks, sizes, sigma, consts, b, R))


def _best_setup(Ks, sizes, sigma, consts, b, R, conversion):
    n = consts.n
    b = n if b is None else _batch(b, n)
    Ks = _check_Ks(Ks)
    sizes = _sizes(sizes, len(Ks), n)
    return Ks, sizes, _nonneg("sigma", sigma), b, _nonneg("R", R), _choice("conversion", conversion, CONVERSIONS)


def dp_epsilon_best(*, Ks, sizes, sigma, consts: Constants, b=None, R=0.0, conversion="improved"):
    """(eps, alpha*, bound name) after requests of sizes[j] rows unlearned with Ks[j] steps (epochs for b < n):
    for every order alpha the smallest proven bound (A-LSI, B-loose, B-tight; docs/METHOD.md §7), then the
    conversion minimised over alpha (default the improved one of ``rdp_to_dp``). One request: Ks=[K], sizes=[S].
    """
    Ks, sizes, sigma, b, R, conversion = _best_setup(Ks, sizes, sigma, consts, b, R, conversion)
    return _dp_best(_best_curves(Ks, sizes, sigma, consts, b, R), consts.log_inv_delta, conversion)


def next_K_best(*, Ks, sizes, sigma, eps_target, consts: Constants, b=None, R=0.0, conversion="improved") -> int:
    """Minimal K_s >= 1 of request s = len(sizes) for the best bound, K_1..K_(s-1) = Ks frozen (docs/METHOD.md §7)."""
    Ks = _check_Ks(Ks, allow_empty=True)
    eps_target = _target(eps_target)
    _, sizes, sigma, b, R, conversion = _best_setup(list(Ks) + [1], sizes, sigma, consts, b, R, conversion)
    _require_noise(sigma, eps_target)
    lid = consts.log_inv_delta
    return _minimal_int(lambda k: _dp_best(_best_curves(Ks + [k], sizes, sigma, consts, b, R), lid,
                                           conversion)[0] <= eps_target,
                        f"eps_target={eps_target!r} at request {len(sizes)} with sigma={sigma!r}, b={b}",
                        hint=max(1, math.ceil(Ks[-1])) if Ks else 1)


def minimal_K_best(*, sigma, eps_target, S, consts: Constants, b=None, R=0.0, conversion="improved") -> int:
    """Exact minimal K >= 1 unlearning S rows with the best bound <= eps_target (docs/METHOD.md §7)."""
    return next_K_best(Ks=[], sizes=[S], sigma=sigma, eps_target=eps_target, consts=consts, b=b, R=R,
                       conversion=conversion)


def sequential_K_list_best(*, num_requests, S, sigma, eps_target, consts: Constants, b=None, R=0.0,
                           conversion="improved") -> list[int]:
    """Greedy per-request steps for the best bound: K_s minimal with K_1..K_(s-1) frozen (docs/METHOD.md §7)."""
    num_requests = _int("num_requests", num_requests, 1)
    Ks: list[int] = []
    for s in range(num_requests):
        Ks.append(next_K_best(Ks=Ks, sizes=[S] * (s + 1), sigma=sigma, eps_target=eps_target, consts=consts,
                              b=b, R=R, conversion=conversion))
    return Ks


def smallest_sigma_best(*, K, eps_target, S, consts: Constants, b=None, R=0.0, conversion="improved",
                        rtol=1e-7) -> float:
    """Smallest sigma with the best bound after K steps (epochs) unlearning S rows <= eps_target (docs/METHOD.md §7).

    Every candidate bound decreases in sigma, so their minimum does: bracket, bisect, re-check (conservative).
    """
    K, eps_target = _steps("K", K), _target(eps_target)
    Ks, sizes, _, b, R, conversion = _best_setup([K], [S], 0.0, consts, b, R, conversion)
    rtol = _rtol(rtol)
    lid = consts.log_inv_delta
    return _smallest_positive(lambda s: _dp_best(_best_curves(Ks, sizes, s, consts, b, R), lid, conversion)[0],
                              eps_target, f"eps_target={eps_target!r} with K={K}, S={sizes[0]}, b={b}", rtol)


# ---------------------------------------------------------------- D2D (Neel et al. 2021)
def _check_d2d(M, m, n, gamma, delta):
    M, m, n, delta = _positive("M", M), _positive("m", m), _n(n), _delta(delta)
    gamma = _real("gamma", gamma)
    if not 0 < gamma < 1:
        raise ValueError(f"gamma={gamma!r} is not allowed (allowed: 0 < gamma < 1, gamma = (L-m)/(L+m))")
    return M, m, n, gamma, delta


def d2d_sigma_1(*, I, eps, M, m, n, gamma, delta):
    """One-shot D2D output noise sigma_1 (Neel et al. 2021; docs/METHOD.md §8), g = gamma, d = delta:

    4 sqrt(2) M g^I / (m n (1 - g^I) (sqrt(log(1/d) + eps) - sqrt(log(1/d))))
    """
    I, eps = _int("I", I, 1), _target(eps)
    M, m, n, gamma, delta = _check_d2d(M, m, n, gamma, delta)
    ld = -math.log(delta)
    gi = gamma ** I
    return 4.0 * math.sqrt(2.0) * M * gi / (m * n * (1.0 - gi) * (math.sqrt(ld + eps) - math.sqrt(ld)))


def d2d_sigma_2(*, I, eps, M, m, n, gamma, delta):
    """Published-state D2D noise sigma_2 (Neel et al. 2021; docs/METHOD.md §8), g = gamma, d = delta:

    8 M g^I / (m n (1 - g^I) (sqrt(2 log(2/d) + 3 eps) - sqrt(2 log(2/d) + 2 eps)))
    """
    I, eps = _int("I", I, 1), _target(eps)
    M, m, n, gamma, delta = _check_d2d(M, m, n, gamma, delta)
    l2 = 2.0 * math.log(2.0 / delta)
    gi = gamma ** I
    return 8.0 * M * gi / (m * n * (1.0 - gi) * (math.sqrt(l2 + 3.0 * eps) - math.sqrt(l2 + 2.0 * eps)))


def d2d_I_min(*, eps, d, gamma, delta) -> int:
    """I_min = ceil(log(sqrt(2d) / ((1-g)(sqrt(2 log(2/d) + eps) - sqrt(2 log(2/d))))) / log(1/g)) (docs/METHOD.md §8)."""
    eps, d, delta = _target(eps), _int("d", d, 1), _delta(delta)
    _check_d2d(1.0, 1.0, 2, gamma, delta)
    l2 = 2.0 * math.log(2.0 / delta)
    x = math.sqrt(2.0 * d) / ((1.0 - gamma) * (math.sqrt(l2 + eps) - math.sqrt(l2)))
    return math.ceil(math.log(x) / -math.log(gamma))


def d2d_term2(*, i, d, gamma, delta) -> int:
    """term2(i) = ceil(log(log(4 d i / delta)) / log(1/gamma)): extra steps of request i (docs/METHOD.md §8)."""
    i, d, delta = _int("i", i, 1), _int("d", d, 1), _delta(delta)
    _check_d2d(1.0, 1.0, 2, gamma, delta)
    return math.ceil(math.log(math.log(4.0 * d * i / delta)) / -math.log(gamma))


def d2d_sequential_K_list(*, num_requests, f, consts: Constants, eps=1.0) -> list[int]:
    """Steps of D2D request i = 1..N: K_i = int(f I_min(eps)) + term2(i) (docs/METHOD.md §8)."""
    num_requests, f = _int("num_requests", num_requests, 1), _positive("f", f)
    if consts.d is None:
        raise ValueError("consts.d=None is not allowed for D2D (allowed: make_constants(..., d=dimension))")
    kw = dict(d=consts.d, gamma=consts.gamma, delta=consts.delta)
    base = int(f * d2d_I_min(eps=eps, **kw))
    return [base + d2d_term2(i=i, **kw) for i in range(1, num_requests + 1)]

