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
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import optimize, special, stats

__all__ = [
    "clopper_pearson", "eps_from_rates", "eps_interval", "ThresholdRule", "best_threshold", "rule_counts",
    "AuditResult", "membership_audit", "point_losses", "loss_gradient_direction", "mean_difference_direction",
    "lda_direction", "project", "gaussian_tv", "gaussian_renyi", "gdp_epsilon", "two_sample_distances",
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


def _points(W, X, y):
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[1] != W.shape[1] or y.shape != (X.shape[0],) or X.shape[0] < 1:
        raise ValueError(f"points of shape {X.shape} with labels {y.shape} are not allowed "
                         f"(allowed: (r, {W.shape[1]}) and (r,), r >= 1)")
    return X, y


def point_losses(W, X, y) -> np.ndarray:
    """(C, r) loss of each chain on each point: logistic log(1 + e^{-y x.w}) or softmax cross-entropy (SPEC 1.2)."""
    W = _weights(W)
    X, y = _points(W, X, y)
    if W.ndim == 2:
        return np.logaddexp(0.0, -(W @ X.T) * y.astype(np.float64)[None, :])
    z = np.einsum("rd,cdk->crk", X, W)
    picked = np.take_along_axis(z, y.astype(np.int64)[None, :, None].repeat(W.shape[0], 0), axis=2)[..., 0]
    return special.logsumexp(z, axis=2) - picked


def _loss_gradients(w, X, y) -> np.ndarray:
    """(r, d) or (r, d*k) per-point loss gradients at one weight w (SPEC 1.2)."""
    if w.ndim == 1:
        yf = y.astype(np.float64)
        return (special.expit(yf * (X @ w)) - 1.0)[:, None] * yf[:, None] * X
    p = special.softmax(X @ w, axis=1)
    p[np.arange(X.shape[0]), y.astype(np.int64)] -= 1.0
    return np.einsum("rd,rk->rdk", X, p).reshape(X.shape[0], -1)


def loss_gradient_direction(w_ref, X_old, y_old, X_new, y_new) -> np.ndarray:
    """sum_new grad l(w_ref) - sum_old grad l(w_ref), flattened: D and D' differ in the drift by this over n.

    Near a quadratic optimum the stationary laws are Gaussians with covariance ~ sigma^2 H^{-1} and means
    shifted by H^{-1} times this vector over n, so it is the likelihood-ratio (Fisher) direction.
    """
    w = np.asarray(w_ref, dtype=np.float64)
    W = _weights(w[None])
    Xo, yo = _points(W, X_old, y_old)
    Xn, yn = _points(W, X_new, y_new)
    return _loss_gradients(w, Xn, yn).sum(axis=0) - _loss_gradients(w, Xo, yo).sum(axis=0)


def mean_difference_direction(W_pos, W_neg) -> np.ndarray:
    """Difference of the mean (flattened) weights of the two groups."""
    A, B = _weights(W_pos), _weights(W_neg)
    return A.reshape(A.shape[0], -1).mean(axis=0) - B.reshape(B.shape[0], -1).mean(axis=0)


def lda_direction(W_pos, W_neg, *, shrinkage=0.1) -> np.ndarray:
    """Fisher's discriminant Sigma^{-1}(mu_pos - mu_neg), pooled covariance shrunk towards (tr Sigma / p) I."""
    if not 0.0 <= float(shrinkage) <= 1.0:
        raise ValueError(f"shrinkage={shrinkage!r} is not allowed (allowed: 0 <= shrinkage <= 1)")
    A, B = _weights(W_pos), _weights(W_neg)
    A, B = A.reshape(A.shape[0], -1), B.reshape(B.shape[0], -1)
    if A.shape[0] + B.shape[0] < 3:
        raise ValueError(f"{A.shape[0]} + {B.shape[0]} chains are not allowed for LDA (allowed: at least 3)")
    centred = np.concatenate([A - A.mean(axis=0), B - B.mean(axis=0)])
    cov = centred.T @ centred / (centred.shape[0] - 2)
    p = cov.shape[0]
    scale = np.trace(cov) / p
    cov = (1.0 - shrinkage) * cov + shrinkage * (scale if scale > 0 else 1.0) * np.eye(p)
    return np.linalg.lstsq(cov, A.mean(axis=0) - B.mean(axis=0), rcond=None)[0]


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
    Gaussian shift by mu standard deviations (Balle & Wang 2018, Thm 8; Dong, Roth & Su 2022, Cor 2.13)."""
    mu, delta = abs(float(mu)), _delta(delta)
    if not math.isfinite(mu):
        raise ValueError(f"mu={mu!r} is not allowed (allowed: a finite shift)")
    if delta == 0:
        return math.inf if mu > 0 else 0.0

    def excess(eps):
        # e^eps Phi(x) computed in logs: the product underflows long before eps is large
        return stats.norm.cdf(-eps / mu + mu / 2) - math.exp(eps + stats.norm.logcdf(-eps / mu - mu / 2)) - delta

    if mu == 0 or excess(0.0) <= 0:
        return 0.0
    hi = 1.0
    while excess(hi) > 0:
        hi *= 2.0
    return float(optimize.brentq(excess, 0.0, hi, xtol=1e-12, rtol=1e-12))


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
