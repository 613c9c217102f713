"""Noisy fine-tuning on the retained data: the certificates for any loss, a neural network's included
(docs/METHOD.md §13).

The algorithm of Koloskova, Allouah, Jha, Guerraoui, Koyejo, "Certified Unlearning for Neural Networks"
(ICML 2025, arXiv 2506.06985): the trained model is clipped to norm C0, then T noisy steps run on the data
that remains, every step with its own N(0, sigma^2 I) (per coordinate std sigma, the paper's notation, not
the sqrt(2 eta sigma^2) of the Langevin chains):

- gradient clipping:  x <- x - gamma (Clip_C1(g(x)) + lam x) + xi     (g: the mini-batch mean loss gradient)
- model clipping:     x <- Pi_C2(x - gamma (g(x) + lam x)) + xi       (optionally N(0, sigma0^2) at the start)

The certifying algorithm runs the same steps from the model trained without the removed rows. Nothing is
assumed of the loss: the two runs differ only in where they start (both inside the ball of radius C0),
and the bounds follow from the clipping alone. The statements used here are derived in docs/METHOD.md §13
from privacy amplification by iteration (Feldman, Mironov, Talwar, Thakurta 2018, arXiv 1808.06651) and
from the hockey-stick contraction of a Gaussian kernel with bounded mean (Asoodeh, Diaz, Calmon 2020,
arXiv 2001.06409; Balle, Wang 2018, arXiv 1805.06530, Thm. 8): the two theorems of arXiv 2506.06985 as
far as this repository could check them (§13.1 says how far that is).

The bounds are pure formulas; the searches go through the one calibration (``calibration.minimal_K`` /
``calibration.smallest_sigma``): fewest steps for a target eps, smallest sigma for a number of steps.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import special

from utils import checks
from utils.accountant import validation as v
from utils.accountant.calibration import InfeasibleTargetError, minimal_K, require_noise, smallest_sigma
from utils.accountant.conversion import dp_linear
from utils.jsonable import to_jsonable

VARIANTS = ("gradient", "model")
# the names certificates give the two bounds (bounds.fields)
NAMES = {"gradient": "F-gradient-clipping", "model": "F-model-clipping"}
_EPS_RTOL = 1e-10        # relative width of the model-clipping eps search
_EPS_MAX = 1e6


@dataclasses.dataclass(frozen=True)
class FinetuneConstants:
    """What the fine-tuning certificate reads (docs/METHOD.md §13): the clipping radii, step size, weight
    decay and delta; nothing about the loss or the data."""

    variant: str            # "gradient" | "model"
    C0: float               # the trained model is clipped to this norm before fine-tuning
    gamma: float            # step size
    lam: float              # weight decay (gamma lam < 1)
    C1: float | None        # gradient clipping norm (variant "gradient")
    C2: float | None        # model clipping radius after every step (variant "model")
    sigma0: float           # std of the noise added at the start (variant "model"; 0: none)
    delta: float

    @property
    def c(self) -> float:
        """1 - gamma lam: how much the weight decay shrinks the model per step."""
        return 1.0 - self.gamma * self.lam


def make_finetune_constants(*, variant="gradient", C0, gamma, lam=0.0, C1=None, C2=None, sigma0=0.0,
                            delta) -> FinetuneConstants:
    """Checked constants: 0 <= gamma lam < 1, C0 >= 0; C1 > 0 (gradient) or C2 > 0 (model)."""
    variant = checks.choice("variant", variant, VARIANTS)
    C0, gamma, lam = v.nonneg("C0", C0), v.positive("gamma", gamma), v.nonneg("lam", lam)
    if not gamma * lam < 1:
        raise checks.refuse("gamma*lam", gamma * lam, "0 <= gamma*lam < 1 (the weight decay must shrink the model)")
    sigma0 = v.nonneg("sigma0", sigma0)
    if variant == "gradient":
        C1, C2 = v.positive("C1", C1), None
        if sigma0:
            raise checks.refuse("sigma0", sigma0, "0 with gradient clipping (its bound does not use a noisy start)")
    else:
        C1, C2 = None, v.positive("C2", C2)
    return FinetuneConstants(variant=variant, C0=C0, gamma=gamma, lam=lam, C1=C1, C2=C2, sigma0=sigma0,
                             delta=v.delta(delta))


# ---------------------------------------------------------------- gradient clipping (amplification by iteration)
def shift_gradient_clipping(*, T, gamma, lam, C0, C1) -> float:
    """Delta_T = 2 C0 c^T + 2 gamma C1 sum_{t<T} c^t, c = 1 - gamma lam: how far apart two runs from starts in the
    C0-ball can be after T steps (each step moves them apart by at most 2 gamma C1, the decay shrinks the gap by
    c; docs/METHOD.md §13.2)."""
    c = 1.0 - gamma * lam
    geometric = T if c == 1.0 else (1.0 - c ** T) / (1.0 - c)
    return 2.0 * C0 * c ** T + 2.0 * gamma * C1 * geometric


def noise_weight(*, T, gamma, lam) -> float:
    """W_T = sum_{t<T} c^(2t): the noise of the T steps, each counted by how much of it is left at the end."""
    c2 = (1.0 - gamma * lam) ** 2
    return T if c2 == 1.0 else (1.0 - c2 ** T) / (1.0 - c2)


def rho_gradient_clipping(*, T, sigma, gamma, lam, C0, C1) -> float:
    """rho with D_alpha(unlearned || certifying run) <= alpha rho for every alpha > 1, both directions:
    rho = Delta_T^2 / (2 sigma^2 W_T) (docs/METHOD.md §13.2: the shifted Renyi divergence of arXiv 1808.06651,
    with the shift spent in proportion to c^(T-1-t); the gradient-clipping theorem of arXiv 2506.06985)."""
    T = v.integer("T", T, 1)
    sigma = v.nonneg("sigma", sigma)
    if sigma == 0:
        return math.inf
    return shift_gradient_clipping(T=T, gamma=gamma, lam=lam, C0=C0, C1=C1) ** 2 / (
        2.0 * sigma ** 2 * noise_weight(T=T, gamma=gamma, lam=lam))


def rdp_gradient_clipping(*, alpha, T, sigma, gamma, lam, C0, C1):
    """The Renyi divergence bound alpha rho at order(s) alpha (rho_gradient_clipping)."""
    return v.scalar(v.alpha(alpha) * rho_gradient_clipping(T=T, sigma=sigma, gamma=gamma, lam=lam, C0=C0, C1=C1))


def best_steps_gradient_clipping(*, gamma, lam, C0, C1) -> float:
    """The step count T >= 1 where the gradient-clipping bound is smallest (for every sigma: rho ~ 1/sigma^2).

    Delta_T^2 / W_T falls while the start's gap C0 c^T still dominates and rises once the clipped steps'
    2 gamma C1 per step do (docs/METHOD.md §13.2): without decay the continuous minimiser is C0 / (gamma C1);
    with decay c^T = 1 - lam C0 / C1, and when lam C0 >= C1 the bound falls for ever (returns inf)."""
    c = 1.0 - gamma * lam
    if lam == 0:
        t = C0 / (gamma * C1)
    elif lam * C0 >= C1:
        return math.inf
    else:
        t = math.log1p(-lam * C0 / C1) / math.log(c)
    value = lambda T: rho_gradient_clipping(T=T, sigma=1.0, gamma=gamma, lam=lam, C0=C0, C1=C1)   # noqa: E731
    candidates = {max(1, math.floor(t)), max(1, math.ceil(t))}
    return float(min(candidates, key=lambda T: (value(T), T)))


def dp_epsilon_gradient_clipping(*, T, sigma, fc: FinetuneConstants, conversion="basic") -> tuple[float, float]:
    """(eps, alpha*) of T gradient-clipping steps: the bound alpha rho converted (docs/METHOD.md §5.1, §13.2)."""
    _gradient(fc)
    rho = rho_gradient_clipping(T=T, sigma=sigma, gamma=fc.gamma, lam=fc.lam, C0=fc.C0, C1=fc.C1)
    return dp_linear(rho, -math.log(fc.delta), v.choice("conversion", conversion, v.CONVERSIONS))


def minimal_steps_gradient_clipping(*, sigma, eps_target, fc: FinetuneConstants, conversion="basic") -> int:
    """Fewest steps T >= 1 whose certificate meets eps_target at this sigma (calibration.minimal_K).

    The bound is not monotone in T (best_steps_gradient_clipping): the search runs on T <= T*, where it falls,
    and a target above the bound at T* is refused (no step count meets it)."""
    _gradient(fc)
    require_noise(sigma, eps_target)
    cap = best_steps_gradient_clipping(gamma=fc.gamma, lam=fc.lam, C0=fc.C0, C1=fc.C1)
    given = f"sigma={sigma!r}, C0={fc.C0!r}, C1={fc.C1!r}, gamma={fc.gamma!r}, lam={fc.lam!r}"

    def eps_of(T: int) -> float:
        return dp_epsilon_gradient_clipping(T=min(T, cap), sigma=sigma, fc=fc, conversion=conversion)[0]

    if math.isfinite(cap) and eps_of(int(cap)) > v.target(eps_target):
        raise InfeasibleTargetError(f"no number of steps meets eps_target={eps_target!r} with {given}: the bound "
                                    f"is smallest at T={int(cap)}, eps={eps_of(int(cap))!r} (raise sigma)")
    if not math.isfinite(cap):
        limit = dp_linear(2.0 * fc.C1 ** 2 * fc.gamma * (2.0 - fc.gamma * fc.lam) / (fc.lam * sigma ** 2),
                          -math.log(fc.delta), conversion)[0]
        return minimal_K(eps_of, eps_target=eps_target, given=given, eps_limit=limit)
    return minimal_K(eps_of, eps_target=eps_target, given=given)


def smallest_sigma_gradient_clipping(*, T, eps_target, fc: FinetuneConstants, conversion="basic",
                                     rtol=1e-7) -> float:
    """Smallest sigma certifying eps_target after T gradient-clipping steps (calibration.smallest_sigma)."""
    _gradient(fc)
    T = v.integer("T", T, 1)
    return smallest_sigma(lambda s: dp_epsilon_gradient_clipping(T=T, sigma=s, fc=fc, conversion=conversion)[0],
                          eps_target=eps_target, given=f"T={T}, C0={fc.C0!r}, C1={fc.C1!r}, gamma={fc.gamma!r}, "
                                                       f"lam={fc.lam!r}", rtol=rtol)


# ---------------------------------------------------------------- model clipping (hockey-stick contraction)
def gaussian_delta(*, eps, r):
    """E_{e^eps}(N(r, 1) || N(0, 1)) = Phi(r/2 - eps/r) - e^eps Phi(-r/2 - eps/r): the exact delta(eps) of two
    Gaussians whose means are r standard deviations apart (Balle, Wang 2018, arXiv 1805.06530, Thm. 8)."""
    return np.exp(log_gaussian_delta(eps=eps, r=r))


def log_gaussian_delta(*, eps, r):
    """log of gaussian_delta, computed in logs so that tiny deltas keep their digits."""
    eps = np.asarray(eps, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        a = special.log_ndtr(r / 2.0 - eps / r)
        b = special.log_ndtr(-r / 2.0 - eps / r)
        out = a + np.log1p(-np.exp(np.minimum(eps + b - a, 0.0)))
    return np.where((r > 0) & ~np.isposinf(eps), out, -np.inf)


def log_delta_model_clipping(*, eps, T, sigma, fc: FinetuneConstants):
    """log delta_T(eps) of T model-clipping steps (docs/METHOD.md §13.3), for an array of eps.

    delta_0 = gaussian_delta(eps, 2 C0 / sigma0) (1 without a noisy start); one step maps (eps, delta) to
    (eps, delta theta), theta = gaussian_delta(eps~, 2 C2 / sigma) with e^eps~ = 1 + (e^eps - 1) / delta: the
    kernel's means lie in the C2-ball, so no two of its outputs are further apart than a Gaussian pair at
    distance 2 C2."""
    _model(fc)
    T = v.integer("T", T, 0)
    sigma = v.nonneg("sigma", sigma)
    eps = np.maximum(np.asarray(eps, dtype=np.float64), 0.0)
    log_d = (np.asarray(log_gaussian_delta(eps=eps, r=2.0 * fc.C0 / fc.sigma0)) if fc.sigma0 > 0
             else np.zeros_like(eps))
    if sigma == 0 or T == 0:
        return log_d if T == 0 else np.zeros_like(eps)
    r = 2.0 * fc.C2 / sigma
    with np.errstate(divide="ignore"):
        log_gain = np.where(eps > 0, eps + np.log(-np.expm1(-eps)), -np.inf)   # log(e^eps - 1)
    for _ in range(T):
        tilde = np.logaddexp(log_d, log_gain) - log_d                           # log(1 + (e^eps - 1)/delta)
        log_d = log_d + log_gaussian_delta(eps=tilde, r=r)
    return log_d


def dp_epsilon_model_clipping(*, T, sigma, fc: FinetuneConstants) -> tuple[float, float]:
    """(eps, nan): the smallest eps >= 0 with delta_T(eps) <= delta (found on the conservative side, relative
    width 1e-10); the bound has no Renyi order, hence nan."""
    _model(fc)
    log_target = math.log(fc.delta)

    def passes(e):
        return log_delta_model_clipping(eps=e, T=T, sigma=sigma, fc=fc) <= log_target

    if passes(np.array([0.0]))[0]:
        return 0.0, math.nan
    hi = 1e-3
    while not passes(np.array([hi]))[0]:
        hi *= 8.0
        if hi > _EPS_MAX:
            return math.inf, math.nan
    lo = 0.0 if hi == 1e-3 else hi / 8.0
    while hi - lo > _EPS_RTOL * hi:
        grid = np.linspace(lo, hi, 33)
        ok = passes(grid)
        first = int(np.argmax(ok))
        lo, hi = grid[max(first - 1, 0)], grid[first]
        if first == 0:
            break
    return float(hi), math.nan


def _model_clipping_surrogate(eps_target, fc: FinetuneConstants, **fixed):
    """A function of sigma (or of T) that is <= eps_target exactly when delta_T(eps_target) <= delta, and falls
    as sigma (or T) grows: eps_target (delta_T(eps_target) / delta), so that the calibration searches compare
    one recursion per candidate instead of an eps search each."""
    eps_target, log_target = v.target(eps_target), math.log(fc.delta)

    def of(**free) -> float:
        log_d = float(log_delta_model_clipping(eps=np.array([eps_target]), fc=fc, **fixed, **free)[0])
        return eps_target * math.exp(min(log_d - log_target, 700.0))
    return of


def minimal_steps_model_clipping(*, sigma, eps_target, fc: FinetuneConstants) -> int:
    """Fewest steps T >= 1 whose certificate meets eps_target (calibration.minimal_K; delta_T falls in T)."""
    _model(fc)
    require_noise(sigma, eps_target)
    of = _model_clipping_surrogate(eps_target, fc, sigma=sigma)
    return minimal_K(lambda T: of(T=T), eps_target=eps_target,
                     given=f"sigma={sigma!r}, C2={fc.C2!r}, delta={fc.delta!r}")


def smallest_sigma_model_clipping(*, T, eps_target, fc: FinetuneConstants, rtol=1e-7) -> float:
    """Smallest sigma certifying eps_target after T model-clipping steps (calibration.smallest_sigma)."""
    _model(fc)
    T = v.integer("T", T, 1)
    of = _model_clipping_surrogate(eps_target, fc, T=T)
    return smallest_sigma(lambda s: of(sigma=s), eps_target=eps_target,
                          given=f"T={T}, C2={fc.C2!r}, delta={fc.delta!r}", rtol=rtol)


# ---------------------------------------------------------------- either variant
def dp_epsilon_finetune(*, T, sigma, fc: FinetuneConstants, conversion="basic") -> tuple[float, float]:
    """(eps, alpha*) of T fine-tuning steps of fc.variant (alpha* is nan for model clipping)."""
    if fc.variant == "gradient":
        return dp_epsilon_gradient_clipping(T=T, sigma=sigma, fc=fc, conversion=conversion)
    return dp_epsilon_model_clipping(T=T, sigma=sigma, fc=fc)


def minimal_steps_finetune(*, sigma, eps_target, fc: FinetuneConstants, conversion="basic") -> int:
    if fc.variant == "gradient":
        return minimal_steps_gradient_clipping(sigma=sigma, eps_target=eps_target, fc=fc, conversion=conversion)
    return minimal_steps_model_clipping(sigma=sigma, eps_target=eps_target, fc=fc)


def smallest_sigma_finetune(*, T, eps_target, fc: FinetuneConstants, conversion="basic") -> float:
    if fc.variant == "gradient":
        return smallest_sigma_gradient_clipping(T=T, eps_target=eps_target, fc=fc, conversion=conversion)
    return smallest_sigma_model_clipping(T=T, eps_target=eps_target, fc=fc)


def default_steps_finetune(fc: FinetuneConstants, *, epoch: int) -> int:
    """Noisy steps when none are asked for: gradient clipping, where its bound is smallest (at most 100
    epochs when it falls for ever); model clipping, one epoch (``epoch`` updates)."""
    epoch = v.integer("epoch", epoch, 1)
    if fc.variant == "gradient":
        best = best_steps_gradient_clipping(gamma=fc.gamma, lam=fc.lam, C0=fc.C0, C1=fc.C1)
        return int(min(best, 100 * epoch))
    return epoch


def finetune_certificate(*, fc: FinetuneConstants, eps, alpha, T, sigma, eps_target=None, bound="",
                         **extra) -> dict:
    """The record a noisy fine-tuning run saves: its (eps, delta), what it assumed, and what it compares with."""
    record = {"eps": eps, "delta": fc.delta, "alpha": alpha, "T": T, "sigma": sigma, "variant": fc.variant,
              "C0": fc.C0, "C1": fc.C1, "C2": fc.C2, "sigma0": fc.sigma0, "gamma": fc.gamma, "lam": fc.lam,
              "eps_target": eps_target, "bound": bound,
              "comparison": "indistinguishable from the certifying run: the model trained on the current data, "
                            "clipped to C0 and fine-tuned by the same noisy steps (docs/METHOD.md §13.1)"}
    record.update(extra)
    return to_jsonable(record, strict=True)


def _gradient(fc: FinetuneConstants) -> None:
    if fc.variant != "gradient":
        raise checks.refuse("variant", fc.variant, "'gradient' for this bound")


def _model(fc: FinetuneConstants) -> None:
    if fc.variant != "model":
        raise checks.refuse("variant", fc.variant, "'model' for this bound")
