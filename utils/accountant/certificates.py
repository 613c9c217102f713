"""What a run's guarantee rests on and records: the constants, the certificate, the burn-in.

``Constants`` (docs/METHOD.md §1.3) are the numbers every bound of paper A (Langevin unlearning,
arXiv 2401.10371) and paper B (noisy-SGD unlearning, arXiv 2403.17105) reads; ``certificate`` is the
record every run saves (docs/METHOD.md §6.1); ``burn_in_auto`` the learning length of docs/METHOD.md §2.6.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from utils import models
from utils.accountant import validation as v
from utils.jsonable import to_jsonable


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
    # min(M, the model's gradient bound G max ||x||): no per-sample gradient the update uses is longer. The
    # Gaussian-DP and best certificates use it; paper bounds keep M (docs/METHOD.md §12.6). None: M (states
    # saved before it was recorded).
    grad_bound: float | None = None
    tight: bool = False         # L from the model's tight curvature (best / gdp runs, docs/METHOD.md §12.6)

    @property
    def log_inv_delta(self) -> float:
        return -math.log(self.delta)


def make_constants(*, n, lam, M, num_classes=2, L=None, smoothness="bound", lambda_max=None,
                   delta=None, d=None, model=None, tight=False, max_norm=1.0) -> Constants:
    """Constants of docs/METHOD.md §1.3: m = lam n, L (closed-form bound, data-dependent, or given), eta = 1/L,
    delta = 1/n.

    The loss's smoothness comes from ``model`` (a utils.models.Model; default models.model_for(num_classes)):
    L = model.smoothness_bound + m (the papers' closed form), or with ``tight`` (``--bound best|gdp``)
    model.curvature * max_norm^2 + m, or model.curvature * lambda_max + m from the data. ``grad_bound`` =
    min(M, model.G * max_norm), max_norm = max ||x_i|| over D and every D' (1 for the tool's unit rows;
    docs/METHOD.md §12.6)."""
    n = v.n_rows(n)
    lam, M = v.positive("lam", lam), v.positive("M", M)
    max_norm = v.positive("max_norm", max_norm)
    num_classes = v.integer("num_classes", num_classes, 2)
    model = models.model_for(num_classes if model is None else model)
    smoothness = v.choice("smoothness", smoothness, ("bound", "data"))
    m = lam * n
    if lambda_max is not None:
        lambda_max = v.positive("lambda_max", lambda_max)
    if L is not None:
        L = v.positive("L", L)
        source = "data" if smoothness == "data" else "given"
    elif smoothness == "bound":
        # unit-norm rows: logistic 1/4; softmax the reference's (loose) 1, or with tight its curvature 1/2
        L = (model.curvature * max_norm ** 2 if tight else model.smoothness_bound) + m
        source = "bound"
    else:
        if lambda_max is None:
            raise ValueError("lambda_max=None is not allowed with smoothness='data' "
                             "(allowed: lambda_max > 0 from data_smoothness_lambda_max, or pass L)")
        L = lambda_max * model.curvature + m  # Hessian <= curvature I (x) X^T X / n (utils/models.py)
        source = "data"
    if not L > m:
        raise ValueError(f"L={L!r} is not allowed (allowed: L > m = lam*n = {m!r})")
    delta = 1.0 / n if delta is None else v.delta(delta)
    if d is not None:
        d = v.integer("d", d, 1)
    eta = 1.0 / L
    return Constants(n=n, lam=lam, m=m, L=L, M=M, eta=eta, delta=delta, num_classes=num_classes, d=d,
                     smoothness=source, data_dependent=(smoothness == "data"), lambda_max=lambda_max,
                     c=1.0 - eta * m, gamma=(L - m) / (L + m), d2d_step=2.0 / (L + m),
                     grad_bound=min(M, model.G * max_norm), tight=bool(tight))


def data_smoothness_lambda_max(X, *, replaced_rows=0) -> float:
    """Largest eigenvalue of X^T X / n (docs/METHOD.md §1.3), plus replaced_rows/n to cover every D'.

    Replacing k rows by rows of norm <= 1 subtracts a PSD matrix and adds one of trace <= k/n, so by
    Weyl's inequality lambda_max grows by at most k/n: the result bounds D and all its neighbours.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] < 1 or not np.isfinite(X).all():
        raise ValueError(f"X with shape {X.shape} is not allowed (allowed: a finite 2-D array with rows)")
    replaced_rows = v.integer("replaced_rows", replaced_rows, 0)
    n = X.shape[0]
    # The eigenvalues of X^T X and X X^T agree; use the smaller Gram matrix.
    G = X.T @ X if X.shape[1] <= n else X @ X.T
    lam_max = float(np.linalg.eigvalsh(G / n)[-1])
    return lam_max + replaced_rows / n


# A given L may sit this far below the data's own bound: published values are rounded (MNIST's lambda_max
# 0.7308744 has 7 digits), and any L >= (L_data + m) / 2 keeps every step a (1 - eta m)-contraction
# (docs/METHOD.md §1.3), far wider than this margin.
L_ROUNDING = 1e-6


def check_given_L(L, *, X, m, model=None, num_classes=2) -> float:
    """The data's smoothness bound L_data = model.curvature * lambda_max(X^T X / n) + m (docs/METHOD.md §1.3);
    ValueError naming it when the given L lies below it (more than L_ROUNDING relative). An L below the data's
    curvature makes eta = 1/L too long: the step need not contract and no certificate holds."""
    model = models.model_for(num_classes if model is None else model)
    L = v.positive("L", L)
    bound = model.curvature * data_smoothness_lambda_max(X) + v.positive("m", m)
    if L < bound * (1.0 - L_ROUNDING):
        raise v.checks.refuse("L", L, f"L >= {bound:.10g}, the data's smoothness bound {model.curvature:g} "
                                      f"lambda_max(X^T X / n) + m; a smaller L voids every certificate")
    return bound


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
    ``mu`` (in ``extra``; best and gdp certify Gaussian DP): the record gains ``mu``, ``power_at_5pct`` (the
    largest detection probability of a test wrong 5% of the time on retrained models) and ``reading``, the
    sentence saying so (docs/METHOD.md §12.5): printers show the record, they compute nothing.
    Non-finite values follow the project's JSON rule (utils/jsonable.py: "inf", "-inf", "nan").
    """
    if comparison is None:
        T = extra.get("T", extra.get("learn_T"))
        comparison = retraining_comparison(T=T, K=K, unit="steps" if b is None or b == consts.n else "epochs")
    record = {"eps": eps, "delta": consts.delta, "alpha": alpha, "K": K, "sigma": sigma,
              "n": consts.n, "m": consts.m, "L": consts.L, "M": consts.M, "eta": consts.eta,
              "lam": consts.lam, "R": R, "b": consts.n if b is None else b,
              "data_dependent_L": consts.data_dependent, "smoothness": consts.smoothness, "bound": bound,
              "comparison": comparison}
    mu = extra.pop("mu", None)
    record.update(extra)
    if mu is not None:
        record.update(gdp_fields(mu))
    return to_jsonable(record, strict=True)


def gdp_fields(mu) -> dict:
    """A Gaussian-DP certificate's keys: ``mu``, ``power_at_5pct`` = Phi(Phi^-1(0.05) + mu) and ``reading``, the
    sentence saying what mu means (docs/METHOD.md §12.5); mu may be one per request of a stream (a list)."""
    from utils.accountant import gdp

    if isinstance(mu, (list, tuple)):
        return {"mu": list(mu), "power_at_5pct": [gdp.gdp_power(mu=x, fpr=0.05) for x in mu],
                "reading": [gdp.reading(x, 0.05) for x in mu]}
    return {"mu": mu, "power_at_5pct": gdp.gdp_power(mu=mu, fpr=0.05), "reading": gdp.reading(mu, 0.05)}


def burn_in_auto(*, sigma, m, M, eta, dim, tol=None, rel_tol=1e-2) -> tuple[int, float]:
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
    sigma = v.nonneg("sigma", sigma)
    c = v.contraction(eta, m)
    M = v.positive("M", M)
    dim = v.integer("dim", dim, 1)
    radius = math.sqrt(2 * sigma ** 2 * dim / (m * (2 - eta * m)))
    if tol is None:
        rel_tol = v.positive("rel_tol", rel_tol)
        if sigma == 0:
            raise ValueError("tol=None is not allowed with sigma=0 (allowed: an absolute W2 tolerance tol > 0)")
        tol = rel_tol * radius
    tol = v.positive("tol", tol)
    w0 = math.sqrt((M / m) ** 2 + 2 * sigma ** 2 * dim / m) + radius
    T = 0 if w0 <= tol else math.ceil(math.log(tol / w0) / math.log(c))
    while c ** T * w0 > tol:          # guard the rounding of the logarithms
        T += 1
    return T, c ** T * w0
