"""Statistics of the empirical audit: how distinguishable are unlearned chains from retrained ones?

Pure numpy / scipy (no torch, no I/O). The audit is a membership-style hypothesis test between
"positive" chains (learn on D, then K unlearning steps on D') and "negative" chains (retrain on D'):

- ``clopper_pearson``: exact binomial intervals (Clopper & Pearson 1934).
- ``eps_from_rates`` / ``eps_interval``: the eps a test with given true/false positive rates
  demonstrates at ``delta`` (the hypothesis-testing view of DP, Kairouz, Oh & Viswanath 2015), and the
  lower bound obtained from Clopper-Pearson intervals of the rates, as in Jagielski, Ullman & Oprea
  2020 ("Auditing differentially private machine learning") and Nasr et al. 2021.
- ``best_threshold`` / ``membership_audit``: statistic, orientation and threshold are chosen on one
  half of the chains, the rates measured on the other half, so the bound is honest.
- Statistics of the weights: losses of the removed / replacement points, projections on the
  loss-gradient difference, the mean difference or a (shrinkage) LDA direction.
- Two-sample distances along the chosen statistic: Kolmogorov-Smirnov, Gaussian-fit total
  variation and Renyi divergence, and the eps of the fitted Gaussian shift (Gaussian DP).
- Worst-case neighbours (``worst_case_canaries``): a planted pair of rows whose clipped gradients differ
  as much as a linear model allows, along the direction of least data mass; white-box statistics along
  the known shift (projection, Gaussian likelihood ratio).
- ``gdp_audit``: the Gaussian-DP estimate of eps from the whole held-out trade-off curve (Nasr et al.
  2023, arXiv 2302.07956): an estimate, since it assumes the trade-off curve is Gaussian.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import optimize, special, stats

from utils import accountant, models

__all__ = [
    "clopper_pearson", "eps_from_rates", "eps_interval", "ThresholdRule", "best_threshold", "rule_counts",
    "AuditResult", "membership_audit", "point_losses", "loss_gradient_direction", "mean_difference_direction",
    "lda_direction", "project", "gaussian_tv", "gaussian_renyi", "gdp_epsilon", "two_sample_distances",
    "fit_reference", "low_mass_direction", "canary_angle", "CanaryPair", "worst_case_canaries", "gaussian_fit",
    "gaussian_log_ratio", "gdp_thresholds", "gdp_mu_lower", "GdpEstimate", "gdp_estimate", "gdp_audit",
]


# ---------------------------------------------------------------- validation
def _confidence(confidence) -> float:
    c = float(confidence)
    if not 0.0 < c < 1.0:
        raise ValueError(f"confidence={confidence!r} is not allowed (allowed: a level strictly between 0 and 1)")
    return c


def _delta(delta) -> float:
    d = float(delta)
    if not 0.0 <= d < 1.0:
        raise ValueError(f"delta={delta!r} is not allowed (allowed: 0 <= delta < 1)")
    return d


def _counts(k, n):
    k, n = np.asarray(k), np.asarray(n)
    if (not np.issubdtype(k.dtype, np.integer) and not np.all(k == np.round(k))) or \
            (not np.issubdtype(n.dtype, np.integer) and not np.all(n == np.round(n))):
        raise ValueError(f"counts k={k!r}, n={n!r} are not allowed (allowed: integers)")
    if np.any(n < 1) or np.any(k < 0) or np.any(k > n):
        raise ValueError(f"counts k={k!r}, n={n!r} are not allowed (allowed: integers 0 <= k <= n, n >= 1)")
    return k.astype(np.float64), n.astype(np.float64)


def _sample(name, x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.size == 0 or not np.isfinite(a).all():
        raise ValueError(f"{name} with {a.size} values is not allowed (allowed: a non-empty finite sample)")
    return a


# ---------------------------------------------------------------- rates -> eps
def clopper_pearson(k, n, *, confidence=0.95):
    """Exact two-sided interval (low, high) for a binomial rate from k successes in n (Clopper & Pearson 1934).

    low = Beta^{-1}((1-c)/2; k, n-k+1) (0 when k = 0), high = Beta^{-1}((1+c)/2; k+1, n-k) (1 when k = n).
    """
    k, n = _counts(k, n)
    tail = (1.0 - _confidence(confidence)) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(k == 0, 0.0, special.betaincinv(np.maximum(k, 1e-300), n - k + 1, tail))
        high = np.where(k == n, 1.0, special.betaincinv(k + 1, np.maximum(n - k, 1e-300), 1.0 - tail))
    return (float(low), float(high)) if low.ndim == 0 else (low, high)


def eps_from_rates(tpr, fpr, *, delta):
    """eps >= 0 shown by a test with rates (tpr, fpr) against (eps, delta) indistinguishability (both directions).

    max(log((tpr - delta)/fpr), log((1 - fpr - delta)/(1 - tpr)), 0): the first term from the event
    "test says positive", the second from its complement (Kairouz et al. 2015; Jagielski et al. 2020).
    Increasing in tpr and decreasing in fpr, which is what makes eps_interval a valid interval.
    """
    delta = _delta(delta)
    tpr, fpr = np.asarray(tpr, dtype=np.float64), np.asarray(fpr, dtype=np.float64)
    if np.any((tpr < 0) | (tpr > 1) | (fpr < 0) | (fpr > 1)) or np.isnan(tpr).any() or np.isnan(fpr).any():
        raise ValueError(f"rates tpr={tpr!r}, fpr={fpr!r} are not allowed (allowed: numbers in [0, 1])")
    with np.errstate(divide="ignore", invalid="ignore"):
        first = _log_ratio(tpr - delta, fpr)
        second = _log_ratio(1.0 - fpr - delta, 1.0 - tpr)
    out = np.maximum(np.maximum(first, second), 0.0)
    return float(out) if out.ndim == 0 else out


def _log_ratio(num, den):
    """log(num/den) with the limits a test can reach: -inf when num <= 0, +inf when den = 0 < num."""
    num, den = np.broadcast_arrays(num, den)
    out = np.full(num.shape, -np.inf)
    pos = num > 0
    out[pos & (den <= 0)] = np.inf
    ok = pos & (den > 0)
    out[ok] = np.log(num[ok]) - np.log(den[ok])
    return out


def eps_interval(tp, n_pos, fp, n_neg, *, delta, confidence=0.95):
    """(lower, upper): with probability >= confidence, the eps this test shows lies in it; lower bounds the true eps.

    Each rate gets a Clopper-Pearson interval at level 1 - (1 - confidence)/2, so both hold together with
    probability >= confidence (union bound); as eps_from_rates is monotone, lower = eps(TPR_low, FPR_high)
    and upper = eps(TPR_high, FPR_low) (Jagielski et al. 2020, Nasr et al. 2021).
    """
    per_rate = 1.0 - (1.0 - _confidence(confidence)) / 2.0
    tpr_lo, tpr_hi = clopper_pearson(tp, n_pos, confidence=per_rate)
    fpr_lo, fpr_hi = clopper_pearson(fp, n_neg, confidence=per_rate)
    return eps_from_rates(tpr_lo, fpr_hi, delta=delta), eps_from_rates(tpr_hi, fpr_lo, delta=delta)


# ---------------------------------------------------------------- thresholds
@dataclasses.dataclass(frozen=True)
class ThresholdRule:
    """Say "positive" when sign * statistic > threshold."""

    sign: int
    threshold: float
    objective: float    # the eps lower bound this rule reaches on the data it was chosen on


def rule_counts(rule: ThresholdRule, pos, neg) -> tuple[int, int]:
    """(true positives, false positives) of a rule on positive and negative samples."""
    pos, neg = _sample("pos", pos), _sample("neg", neg)
    return int(np.sum(rule.sign * pos > rule.threshold)), int(np.sum(rule.sign * neg > rule.threshold))


def best_threshold(pos, neg, *, delta, confidence=0.95) -> ThresholdRule:
    """The orientation and threshold with the largest eps lower bound on (pos, neg); ties -> largest TPR - FPR.

    Thresholds are the midpoints between consecutive distinct pooled values (every distinct rule once).
    """
    pos, neg = _sample("pos", pos), _sample("neg", neg)
    values = np.unique(np.concatenate([pos, neg]))
    if values.size == 1:
        return ThresholdRule(sign=1, threshold=float(values[0]), objective=0.0)
    best = None
    for sign in (1, -1):
        v = np.sort(sign * values)
        cuts = (v[:-1] + v[1:]) / 2.0
        tp = pos.size - np.searchsorted(np.sort(sign * pos), cuts, side="right")
        fp = neg.size - np.searchsorted(np.sort(sign * neg), cuts, side="right")
        lower, _ = eps_interval(tp, pos.size, fp, neg.size, delta=delta, confidence=confidence)
        youden = tp / pos.size - fp / neg.size
        i = int(np.lexsort((-youden, -lower))[0])
        key = (float(lower[i]), float(youden[i]))
        if best is None or key > best[0]:
            best = (key, ThresholdRule(sign=sign, threshold=float(cuts[i]), objective=float(lower[i])))
    return best[1]


@dataclasses.dataclass(frozen=True)
class AuditResult:
    """The statistic and rule chosen on the selection half, and what they show on the held-out half."""

    statistic: str
    rule: ThresholdRule
    tp: int
    n_pos: int
    fp: int
    n_neg: int
    eps_lower: float
    eps_upper: float
    eps_point: float
    confidence: float
    selection: dict     # statistic name -> eps lower bound its best rule reached on the selection half

    @property
    def tpr(self) -> float:
        return self.tp / self.n_pos

    @property
    def fpr(self) -> float:
        return self.fp / self.n_neg


def membership_audit(candidates: dict, *, delta, confidence=0.95) -> AuditResult:
    """Choose statistic + rule on the selection half, then bound eps from the held-out counts (Jagielski et al. 2020).

    ``candidates``: name -> (select_pos, select_neg, holdout_pos, holdout_neg) score arrays. The held-out
    chains play no part in the choice, so the Clopper-Pearson bound holds for the chosen test.
    """
    if not candidates:
        raise ValueError("candidates={} is not allowed (allowed: at least one statistic)")
    confidence = _confidence(confidence)
    rules = {name: best_threshold(sp, sn, delta=delta, confidence=confidence)
             for name, (sp, sn, _, _) in candidates.items()}
    name = max(rules, key=lambda k: rules[k].objective)     # first listed wins ties
    _, _, hp, hn = candidates[name]
    tp, fp = rule_counts(rules[name], hp, hn)
    n_pos, n_neg = _sample("holdout_pos", hp).size, _sample("holdout_neg", hn).size
    lower, upper = eps_interval(tp, n_pos, fp, n_neg, delta=delta, confidence=confidence)
    point = eps_from_rates(tp / n_pos, fp / n_neg, delta=delta)
    return AuditResult(statistic=name, rule=rules[name], tp=tp, n_pos=n_pos, fp=fp, n_neg=n_neg,
                       eps_lower=float(lower), eps_upper=float(upper), eps_point=float(point),
                       confidence=confidence, selection={k: r.objective for k, r in rules.items()})


# ---------------------------------------------------------------- statistics of the weights
def _weights(W) -> np.ndarray:
    W = np.asarray(W, dtype=np.float64)
    if W.ndim not in (2, 3) or W.shape[0] < 1 or not np.isfinite(W).all():
        raise ValueError(f"weights of shape {W.shape} are not allowed (allowed: finite (C, d) or (C, d, k))")
    return W


def _points(W, X, y, model=None):
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    d = _model(W, model).input_dim(W)
    if X.ndim != 2 or X.shape[1] != d or y.shape != (X.shape[0],) or X.shape[0] < 1:
        raise ValueError(f"points of shape {X.shape} with labels {y.shape} are not allowed "
                         f"(allowed: (r, {d}) and (r,), r >= 1)")
    return X, y


def _model(W, model) -> models.Model:
    """The model of chains W (C, ...): ``model`` (a Model or a number of classes), or with None the papers'
    model for W's shape, (C, d) binary logistic and (C, d, k) softmax."""
    return models.model_for(model if model is not None else (W.shape[2] if W.ndim == 3 else 2))


def point_losses(W, X, y, *, model=None) -> np.ndarray:
    """(C, r) loss of each chain on each point (Model.loss: logistic log(1 + e^{-y x.w}) or softmax
    cross-entropy, docs/METHOD.md §1.2)."""
    W = _weights(W)
    X, y = _points(W, X, y, model)
    return _model(W, model).loss(W, X, y)


def loss_gradient_direction(w_ref, X_old, y_old, X_new, y_new, *, model=None) -> np.ndarray:
    """sum_new grad l(w_ref) - sum_old grad l(w_ref), flattened: D and D' differ in the drift by this over n.

    Near a quadratic optimum the stationary laws are Gaussians with covariance ~ sigma^2 H^{-1} and means
    shifted by H^{-1} times this vector over n, so it is the likelihood-ratio (Fisher) direction.
    """
    w = np.asarray(w_ref, dtype=np.float64)
    W = _weights(w[None])
    Xo, yo = _points(W, X_old, y_old, model)
    Xn, yn = _points(W, X_new, y_new, model)
    grads = _model(W, model).loss_gradients
    return grads(w, Xn, yn).sum(axis=0) - grads(w, Xo, yo).sum(axis=0)


def mean_difference_direction(W_pos, W_neg) -> np.ndarray:
    """Difference of the mean (flattened) weights of the two groups."""
    A, B = _weights(W_pos), _weights(W_neg)
    return A.reshape(A.shape[0], -1).mean(axis=0) - B.reshape(B.shape[0], -1).mean(axis=0)


# Up to this many parameters LDA solves with the p x p covariance; above (networks) through the N x N Gram matrix.
LDA_PRIMAL_MAX = 1024


def lda_direction(W_pos, W_neg, *, shrinkage=0.1) -> np.ndarray:
    """Fisher's discriminant Sigma^{-1}(mu_pos - mu_neg), pooled covariance shrunk towards (tr Sigma / p) I."""
    if not 0.0 <= float(shrinkage) <= 1.0:
        raise ValueError(f"shrinkage={shrinkage!r} is not allowed (allowed: 0 <= shrinkage <= 1)")
    A, B = _weights(W_pos), _weights(W_neg)
    A, B = A.reshape(A.shape[0], -1), B.reshape(B.shape[0], -1)
    if A.shape[0] + B.shape[0] < 3:
        raise ValueError(f"{A.shape[0]} + {B.shape[0]} chains are not allowed for LDA (allowed: at least 3)")
    centred = np.concatenate([A - A.mean(axis=0), B - B.mean(axis=0)])
    N, p = centred.shape
    v = A.mean(axis=0) - B.mean(axis=0)
    if p > max(N, LDA_PRIMAL_MAX) and shrinkage > 0 and float(np.sum(centred * centred)) > 0:
        scale = float(np.sum(centred * centred)) / (N - 2) / p      # tr(Sigma) / p
        # the same solve through the N x N Gram matrix (Woodbury): a network's p x p covariance is too large
        a, b = shrinkage * scale, (1.0 - shrinkage) / (N - 2)
        inner = np.eye(N) + (b / a) * (centred @ centred.T)
        return v / a - (b / a ** 2) * (centred.T @ np.linalg.solve(inner, centred @ v))
    cov = centred.T @ centred / (N - 2)
    scale = np.trace(cov) / p
    cov = (1.0 - shrinkage) * cov + shrinkage * (scale if scale > 0 else 1.0) * np.eye(p)
    return np.linalg.lstsq(cov, v, rcond=None)[0]


def project(W, direction) -> np.ndarray:
    """(C,) projection of each chain's flattened weights on a direction."""
    W = _weights(W)
    u = np.asarray(direction, dtype=np.float64).reshape(-1)
    flat = W.reshape(W.shape[0], -1)
    if u.size != flat.shape[1]:
        raise ValueError(f"direction of size {u.size} is not allowed (allowed: size {flat.shape[1]})")
    return flat @ u


# ---------------------------------------------------------------- two-sample distances
def _gauss(m, s):
    m, s = float(m), float(s)
    if not (math.isfinite(m) and math.isfinite(s) and s > 0):
        raise ValueError(f"Gaussian N({m!r}, {s!r}^2) is not allowed (allowed: finite mean, std > 0)")
    return m, s


def gaussian_tv(m1, s1, m2, s2) -> float:
    """Total variation between N(m1, s1^2) and N(m2, s2^2), exact: the mass difference between density crossings."""
    m1, s1 = _gauss(m1, s1)
    m2, s2 = _gauss(m2, s2)
    if math.isclose(s1, s2, rel_tol=1e-12):
        return float(2.0 * stats.norm.cdf(abs(m1 - m2) / (2.0 * s1)) - 1.0)
    # log p1 - log p2 = a x^2 + b x + c has two real roots when the variances differ
    a = 1.0 / (2 * s2 ** 2) - 1.0 / (2 * s1 ** 2)
    b = m1 / s1 ** 2 - m2 / s2 ** 2
    c = m2 ** 2 / (2 * s2 ** 2) - m1 ** 2 / (2 * s1 ** 2) + math.log(s2 / s1)
    r1, r2 = np.sort(np.roots([a, b, c]).real)
    inside1 = stats.norm.cdf(r2, m1, s1) - stats.norm.cdf(r1, m1, s1)
    inside2 = stats.norm.cdf(r2, m2, s2) - stats.norm.cdf(r1, m2, s2)
    return float(abs(inside1 - inside2))


def gaussian_renyi(alpha, m1, s1, m2, s2) -> float:
    """Renyi divergence D_alpha(N(m1, s1^2) || N(m2, s2^2)), closed form (Gil, Alajaji & Linder 2013).

    Infinite when alpha s2^2 + (1 - alpha) s1^2 <= 0 (the integrand is not integrable)."""
    alpha = float(alpha)
    if not (alpha > 1.0 and math.isfinite(alpha)):
        raise ValueError(f"alpha={alpha!r} is not allowed (allowed: a finite order > 1)")
    m1, s1 = _gauss(m1, s1)
    m2, s2 = _gauss(m2, s2)
    var = alpha * s2 ** 2 + (1.0 - alpha) * s1 ** 2
    if var <= 0:
        return math.inf
    return float(alpha * (m1 - m2) ** 2 / (2 * var)
                 + (math.log(math.sqrt(var)) - (1 - alpha) * math.log(s1) - alpha * math.log(s2)) / (1 - alpha))


def gdp_epsilon(mu, delta) -> float:
    """Smallest eps >= 0 with Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2) <= delta: the (eps, delta) of a
    Gaussian shift by mu standard deviations (Balle & Wang 2018, Thm 8; Dong, Roth & Su 2022, Cor 2.13), by the
    accountant's exact conversion (accountant.gdp_epsilon); mu of either sign, delta = 0 gives inf (or 0)."""
    mu, delta = abs(float(mu)), _delta(delta)
    if not math.isfinite(mu):
        raise ValueError(f"mu={mu!r} is not allowed (allowed: a finite shift)")
    if delta == 0:
        return math.inf if mu > 0 else 0.0
    return accountant.gdp_epsilon(mu=mu, delta=delta)


def two_sample_distances(pos, neg, *, delta, alpha=2.0) -> dict:
    """KS statistic and p-value, and Gaussian fits: standardised mean gap, TV, Renyi D_alpha(pos||neg), GDP eps.

    The KS statistic is the largest |TPR - FPR| over thresholds: a lower bound on the TV distance of the
    laws of the weights (data processing), without any Gaussian assumption.
    """
    pos, neg = _sample("pos", pos), _sample("neg", neg)
    if pos.size < 2 or neg.size < 2:
        raise ValueError(f"samples of sizes {pos.size}, {neg.size} are not allowed (allowed: at least 2 each)")
    ks = stats.ks_2samp(pos, neg)
    m1, s1, m2, s2 = pos.mean(), pos.std(ddof=1), neg.mean(), neg.std(ddof=1)
    out = {"ks": float(ks.statistic), "ks_pvalue": float(ks.pvalue), "mean_gap_sd": math.nan,
           "tv_gauss": math.nan, "renyi_gauss": math.nan, "renyi_alpha": float(alpha), "gdp_eps": math.nan}
    if s1 > 0 and s2 > 0:
        pooled = math.sqrt((s1 ** 2 + s2 ** 2) / 2.0)
        mu = abs(m1 - m2) / pooled
        out.update(mean_gap_sd=mu, tv_gauss=gaussian_tv(m1, s1, m2, s2),
                   renyi_gauss=gaussian_renyi(alpha, m1, s1, m2, s2), gdp_eps=gdp_epsilon(mu, delta))
    return out


# ---------------------------------------------------------------- worst-case neighbours (canaries)
def fit_reference(X, y, *, m: float, num_classes=2) -> np.ndarray:
    """The noiseless minimiser of (1/n) sum l(w; x_i, y_i) + (m/2) ||w||^2 (L-BFGS), flattened.

    Only used to aim the worst-case canaries; the certificate and the audit's validity do not depend on it.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    n, d = X.shape
    model = models.model_for(num_classes)   # a number of classes or a Model
    shape = model.weight_shape(1, d)[1:]

    def objective(v):
        w = v.reshape(shape)
        loss = point_losses(w[None], X, y, model=model)[0].mean() + 0.5 * m * v @ v
        return loss, model.loss_gradients(w, X, y).sum(axis=0) / n + m * v

    res = optimize.minimize(objective, np.zeros(model.params(d)), jac=True, method="L-BFGS-B",
                            options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 5000})
    return res.x


def low_mass_direction(X, avoid=None) -> np.ndarray:
    """Unit eigenvector of X^T X with the smallest eigenvalue, made orthogonal to ``avoid``.

    Along it the data exert (almost) no curvature, so the stationary law is widest in units of a
    gradient shift: a replaced row's pull along it is seen against the least noise (docs/METHOD.md §9.2).
    """
    X = np.asarray(X, dtype=np.float64)
    vals, vecs = np.linalg.eigh(X.T @ X)
    u = vecs[:, 0]
    if avoid is not None and np.linalg.norm(avoid) > 0:
        a = np.asarray(avoid, dtype=np.float64) / np.linalg.norm(avoid)
        u = u - (u @ a) * a
        if np.linalg.norm(u) < 1e-8:      # the weakest direction is the model's own: take the next one
            u = vecs[:, 1] - (vecs[:, 1] @ a) * a
    return u / np.linalg.norm(u)


def canary_angle(w_norm: float, *, M: float = 1.0) -> float:
    """phi maximising 2 min(sigmoid(|w| cos phi), M) sin phi over (0, pi/2].

    Binary logistic canaries x_{1,2} = -cos(phi) w/|w| +- sin(phi) u with label +1 are both misclassified
    by margin |w| cos phi, so each gradient has norm min(sigmoid(|w| cos phi), M) and their difference
    is that times 2 sin(phi) u; phi = pi/2 is the label flip of one point (difference exactly 1, any w).
    """
    phi = np.linspace(1e-3, math.pi / 2, 20001)
    gap = 2.0 * np.minimum(special.expit(float(w_norm) * np.cos(phi)), float(M)) * np.sin(phi)
    return float(phi[int(np.argmax(gap))])


@dataclasses.dataclass(frozen=True)
class CanaryPair:
    """The removed row (in D) and its replacement (in D'), planted S times, and the known shift direction."""

    x_old: np.ndarray
    y_old: object
    x_new: np.ndarray
    y_new: object
    direction: np.ndarray   # flattened, unit: where the two arms' mean weights differ
    gradient_gap: float     # || clipped grad(old) - clipped grad(new) || at the reference weight
    description: str


def worst_case_canaries(X, y, *, m: float, M: float, num_classes=2) -> CanaryPair:
    """A neighbouring pair (old row in D, new row in D') whose clipped gradients differ as much as a linear
    model allows, along the direction of least data mass (docs/METHOD.md §9.2).

    ``num_classes``: a number of classes or a models.Model; each model has its own construction
    (CANARIES): binary logistic _logistic_canaries, softmax _softmax_canaries.
    """
    model = models.model_for(num_classes)
    build = CANARIES.get(type(model))
    if build is None:
        raise ValueError(f"no worst-case canaries for {model.title} (allowed: "
                         f"{', '.join(cls.title for cls in CANARIES)})")
    return build(np.asarray(X, dtype=np.float64), y, model=model, m=m, M=M)


def _logistic_canaries(X, y, *, model, m: float, M: float) -> CanaryPair:
    """Binary: x_old, x_new = -cos(phi) w*/|w*| +- sin(phi) u, both labelled +1 (see canary_angle)."""
    d = X.shape[1]
    w = fit_reference(X, y, m=m, num_classes=model)
    wn = float(np.linalg.norm(w))
    u = low_mass_direction(X, avoid=w)
    phi = canary_angle(wn, M=M) if wn > 0 else math.pi / 2
    along = -w / wn if wn > 0 else np.zeros(d)
    x_old, x_new = math.cos(phi) * along + math.sin(phi) * u, math.cos(phi) * along - math.sin(phi) * u
    y_old = y_new = 1.0
    grads = [min(special.expit(-float(x @ w)), M) * x for x in (x_old, x_new)]   # norms: ||x|| = 1
    gap = float(np.linalg.norm(grads[0] - grads[1]))
    direction = u     # the new row pulls w along -u, the old one along +u
    text = (f"worst-case canaries at angle {math.degrees(phi):.1f} deg from -w* (|w*| = {wn:.3g}) "
            f"+- the least-data direction, label +1; clipped gradient gap {gap:.3g} (bound 2M = {2 * M:g})")
    return CanaryPair(x_old=x_old, y_old=y_old, x_new=x_new, y_new=y_new, direction=direction,
                      gradient_gap=gap, description=text)


def _softmax_canaries(X, y, *, model, m: float, M: float) -> CanaryPair:
    """Softmax: x = u with label 0 in D and label 1 in D' (logits along u stay near 0, so the gradients
    u (p - e_0) and u (p - e_1) differ by u (e_1 - e_0), norm sqrt(2), clipped by M)."""
    # the weights' component along u is only the regulariser's and the noise's, so the logits u.W are
    # near 0 and p is near uniform: no fit needed to aim this pair
    k = model.num_classes
    u = low_mass_direction(X)
    x_old = x_new = u
    y_old, y_new = 0, 1
    grads = []
    for label in (y_old, y_new):
        r = np.full(k, 1.0 / k)
        r[label] -= 1.0
        r *= min(1.0, M / max(float(np.linalg.norm(r)), 1e-300))
        grads.append(np.outer(u, r).reshape(-1))
    gap = float(np.linalg.norm(grads[0] - grads[1]))
    e = np.zeros(k)
    e[0], e[1] = 1.0, -1.0
    direction = np.outer(u, e).reshape(-1) / math.sqrt(2.0)
    text = (f"worst-case canary: the least-data direction with label 0 (D) / 1 (D'); clipped gradient gap "
            f"{gap:.3g} at uniform p (bound 2M = {2 * M:g})")
    return CanaryPair(x_old=x_old, y_old=y_old, x_new=x_new, y_new=y_new, direction=direction,
                      gradient_gap=gap, description=text)


# The worst-case construction of each model (docs/METHOD.md §9.2); a new model adds its own here.
CANARIES = {models.BinaryLogistic: _logistic_canaries, models.Softmax: _softmax_canaries}


# ---------------------------------------------------------------- white-box likelihood ratio
def gaussian_fit(x) -> tuple[float, float]:
    """(mean, std) of a sample, std with ddof=1 and floored so a constant sample still gives a density."""
    x = _sample("x", x)
    if x.size < 2:
        raise ValueError(f"a sample of {x.size} value is not allowed (allowed: at least 2 values)")
    s = float(x.std(ddof=1))
    return float(x.mean()), max(s, 1e-12 * max(1.0, abs(float(x.mean()))))


def gaussian_log_ratio(x, pos_fit, neg_fit) -> np.ndarray:
    """log N(x; pos) - log N(x; neg) for fitted (mean, std) pairs: the Neyman-Pearson statistic between
    the two arms' Gaussian fits (quadratic in x when the variances differ, so it can cut on both sides)."""
    x = np.asarray(x, dtype=np.float64)
    (m1, s1), (m2, s2) = _gauss(*pos_fit), _gauss(*neg_fit)
    return stats.norm.logpdf(x, m1, s1) - stats.norm.logpdf(x, m2, s2)


# ---------------------------------------------------------------- Gaussian-DP estimate (Nasr et al. 2023)
def gdp_thresholds(pos, neg, *, count: int = 20) -> np.ndarray:
    """``count`` thresholds at evenly spaced quantiles (2.5% .. 97.5%) of the pooled selection scores."""
    pooled = np.concatenate([_sample("pos", pos), _sample("neg", neg)])
    if int(count) < 1:
        raise ValueError(f"count={count!r} is not allowed (allowed: at least 1 threshold)")
    return np.unique(np.quantile(pooled, np.linspace(0.025, 0.975, int(count))))


def gdp_mu_lower(tp, n_pos, fp, n_neg, *, confidence=0.95) -> tuple[float, int]:
    """(mu_hat, index of the best threshold): max over thresholds of Phi^-1(1 - FPR_ub) - Phi^-1(FNR_ub).

    FPR_ub and FNR_ub = 1 - TPR_lb are one-sided Clopper-Pearson bounds, each at level
    1 - (1 - confidence) / (2 T) for T thresholds (Bonferroni over the 2 T bounds), so every threshold's
    term lower-bounds the mu of a Gaussian trade-off curve simultaneously (Nasr et al. 2023, arXiv
    2302.07956, Sec. 4: a mu-GDP curve has FNR = Phi(Phi^-1(1 - FPR) - mu)). Floored at 0.
    """
    tp, fp = np.atleast_1d(np.asarray(tp)), np.atleast_1d(np.asarray(fp))
    T = tp.size
    two_sided = 1.0 - (1.0 - _confidence(confidence)) / T      # its upper end is one-sided at 1 - (1-c)/(2T)
    tpr_lo, _ = clopper_pearson(tp, np.full(T, n_pos), confidence=two_sided)
    _, fpr_hi = clopper_pearson(fp, np.full(T, n_neg), confidence=two_sided)
    tpr_lo, fpr_hi = np.atleast_1d(tpr_lo), np.atleast_1d(fpr_hi)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = stats.norm.ppf(1.0 - fpr_hi) - stats.norm.ppf(1.0 - tpr_lo)
    mu = np.where(np.isnan(mu), -np.inf, mu)
    i = int(np.argmax(mu))
    return max(float(mu[i]), 0.0), i


@dataclasses.dataclass(frozen=True)
class GdpEstimate:
    mu: float           # mu_hat (a lower confidence value under the Gaussian assumption)
    eps: float          # gdp_epsilon(mu_hat, delta): an estimate, not a bound
    threshold: float
    thresholds: int
    tp: int
    fp: int


def gdp_estimate(hold_pos, hold_neg, *, sign: int, thresholds, delta, confidence=0.95) -> GdpEstimate:
    """Gaussian-DP estimate of eps from the held-out trade-off curve at fixed (selection-chosen) thresholds.

    Rule "positive when sign * score > t" for each t; mu_hat from gdp_mu_lower, converted to eps at delta
    with the mu-GDP curve (gdp_epsilon). Valid as a lower bound only if the true trade-off curve is
    Gaussian, hence an estimate (Nasr et al. 2023).
    """
    pos, neg = _sample("hold_pos", hold_pos), _sample("hold_neg", hold_neg)
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if t.size == 0 or not np.isfinite(t).all() or int(sign) not in (1, -1):
        raise ValueError(f"thresholds of size {t.size} with sign {sign!r} are not allowed "
                         "(allowed: finite thresholds, sign +1 or -1)")
    tp = (sign * pos[:, None] > sign * t[None, :]).sum(axis=0)
    fp = (sign * neg[:, None] > sign * t[None, :]).sum(axis=0)
    mu, i = gdp_mu_lower(tp, pos.size, fp, neg.size, confidence=confidence)
    return GdpEstimate(mu=mu, eps=gdp_epsilon(mu, delta), threshold=float(t[i]), thresholds=int(t.size),
                       tp=int(tp[i]), fp=int(fp[i]))


def gdp_audit(candidates: dict, *, delta, confidence=0.95, count: int = 20) -> tuple[str, GdpEstimate]:
    """(statistic, estimate): statistic, orientation and thresholds chosen on the selection part by the mu
    they reach there, then gdp_estimate on the held-out part (the same honest split as membership_audit).

    ``candidates``: name -> (select_pos, select_neg, holdout_pos, holdout_neg) score arrays.
    """
    if not candidates:
        raise ValueError("candidates={} is not allowed (allowed: at least one statistic)")
    best = None
    for name, (sp, sn, _, _) in candidates.items():
        t = gdp_thresholds(sp, sn, count=count)
        for sign in (1, -1):
            mu = gdp_estimate(sp, sn, sign=sign, thresholds=t, delta=delta, confidence=confidence).mu
            if best is None or mu > best[0]:
                best = (mu, name, sign, t)
    _, name, sign, t = best
    _, _, hp, hn = candidates[name]
    return name, gdp_estimate(hp, hn, sign=sign, thresholds=t, delta=delta, confidence=confidence)
