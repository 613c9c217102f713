"""The noisy fine-tuning certificates (utils/accountant/finetune.py, docs/METHOD.md §13) against divergences
computed without them: closed forms of Gaussian pairs, and 1-D densities propagated on a grid through the
worst map the clipping allows (two runs pushed apart as hard as the clipping lets them)."""
import math

import numpy as np
import pytest
from scipy import integrate, stats

from utils import accountant as A
from utils.accountant import finetune as F


def gauss_renyi(alpha, gap, var):
    """D_alpha(N(a, var) || N(b, var)) with |a - b| = gap: alpha gap^2 / (2 var)."""
    return alpha * gap ** 2 / (2.0 * var)


# ---------------------------------------------------------------- the grid: 1-D laws pushed through a map
class Grid:
    def __init__(self, half_width, h):
        self.h = h
        self.x = np.arange(-half_width, half_width + h / 2, h)

    def gaussian(self, mean, sigma):
        return stats.norm.pdf(self.x, mean, sigma)

    def push(self, p, phi):
        """The law of phi(X) + N(0, sigma^2) is built by the caller; this moves the mass of p to phi(x)."""
        out = np.zeros_like(p)
        idx = np.clip(np.rint((phi(self.x) - self.x[0]) / self.h).astype(int), 0, self.x.size - 1)
        np.add.at(out, idx, p)
        return out

    def noise(self, mass, sigma):
        """Mass on the grid points convolved with N(0, sigma^2): a density."""
        k = np.arange(-int(12 * sigma / self.h), int(12 * sigma / self.h) + 1) * self.h
        return np.convolve(mass, stats.norm.pdf(k, 0.0, sigma), mode="same")

    def renyi(self, p, q, alpha):
        ok = (p > 0) & (q > 0)
        return math.log(np.sum(p[ok] ** alpha * q[ok] ** (1 - alpha)) * self.h) / (alpha - 1)

    def hockey(self, p, q, eps):
        return float(np.sum(np.maximum(p - math.exp(eps) * q, 0.0)) * self.h)


def run_pair(grid, T, sigma, phi, x0, y0):
    """Densities of two runs from point masses x0, y0: x <- phi(x) + N(0, sigma^2), T steps."""
    p, q = grid.gaussian(phi(np.array([x0]))[0], sigma), grid.gaussian(phi(np.array([y0]))[0], sigma)
    for _ in range(T - 1):
        p = grid.noise(grid.push(p * grid.h, phi), sigma)
        q = grid.noise(grid.push(q * grid.h, phi), sigma)
    return p, q


# ---------------------------------------------------------------- gradient clipping
def test_one_step_is_exact():
    """One step from starts at +-C0 with the clipped gradients pointing apart: the two laws are N(+-(c C0 +
    gamma C1), sigma^2), whose divergence alpha (2 c C0 + 2 gamma C1)^2 / (2 sigma^2) is the bound itself."""
    C0, C1, gamma, lam, sigma = 1.5, 0.7, 0.3, 0.4, 0.9
    c = 1 - gamma * lam
    exact = gauss_renyi(3.0, 2 * c * C0 + 2 * gamma * C1, sigma ** 2)
    bound = F.rdp_gradient_clipping(alpha=3.0, T=1, sigma=sigma, gamma=gamma, lam=lam, C0=C0, C1=C1)
    assert bound == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize("T,lam", [(1, 0.0), (5, 0.0), (7, 0.2), (40, 0.05)])
def test_start_gap_alone_is_exact(T, lam):
    """Gradients equal in both runs (no clipped-gradient gap): the laws stay Gaussian, N(+-C0 c^T, sigma^2 W_T),
    and the bound at C1 -> 0 is exactly their divergence; with C1 > 0 it lies above."""
    C0, gamma, sigma = 1.0, 0.25, 0.6
    c = 1 - gamma * lam
    var = sigma ** 2 * sum(c ** (2 * t) for t in range(T))
    exact = gauss_renyi(2.0, 2 * C0 * c ** T, var)
    tiny = F.rdp_gradient_clipping(alpha=2.0, T=T, sigma=sigma, gamma=gamma, lam=lam, C0=C0, C1=1e-12)
    assert tiny == pytest.approx(exact, rel=1e-9)
    assert F.rdp_gradient_clipping(alpha=2.0, T=T, sigma=sigma, gamma=gamma, lam=lam, C0=C0, C1=0.1) > exact


@pytest.mark.parametrize("T,lam,alpha", [(2, 0.0, 2.0), (3, 0.3, 2.0), (4, 0.1, 5.0)])
def test_pushed_apart_runs_stay_below_the_bound(T, lam, alpha):
    """The worst 1-D instance: g(x) = -C1 sign(x), so every step adds 2 gamma C1 to the gap, from +-C0; the
    laws are no longer Gaussian and are propagated on a grid; their Renyi divergence stays below the bound."""
    C0, C1, gamma, sigma = 0.8, 1.0, 0.3, 0.5
    c = 1 - gamma * lam
    grid = Grid(12.0, 2e-3)
    p, q = run_pair(grid, T, sigma, lambda x: c * x + gamma * C1 * np.sign(x), C0, -C0)
    exact = grid.renyi(p, q, alpha)
    bound = F.rdp_gradient_clipping(alpha=alpha, T=T, sigma=sigma, gamma=gamma, lam=lam, C0=C0, C1=C1)
    assert 0 < exact <= bound
    assert exact > bound / 4       # a hard instance: the bound is within a factor 4 of it here


def test_closed_forms_with_decay():
    """The geometric sums in closed form: Delta = 2 C0 c^T + 2 (C1/lam)(1 - c^T), W = (1 - c^2T)/(1 - c^2)."""
    C0, C1, gamma, lam, T = 2.0, 0.5, 0.1, 0.3, 37
    c = 1 - gamma * lam
    gap = 2 * C0 * c ** T + 2 * (C1 / lam) * (1 - c ** T)
    W = (1 - c ** (2 * T)) / (1 - c ** 2)
    rho = F.rho_gradient_clipping(T=T, sigma=1.3, gamma=gamma, lam=lam, C0=C0, C1=C1)
    assert rho == pytest.approx(gap ** 2 / (2 * 1.3 ** 2 * W), rel=1e-12)


@pytest.mark.parametrize("C0,lam", [(1.0, 0.0), (3.0, 0.0), (1.0, 0.05), (4.0, 0.2), (0.0, 0.1)])
def test_best_steps_is_the_argmin(C0, lam):
    gamma, C1 = 0.2, 1.0
    best = F.best_steps_gradient_clipping(gamma=gamma, lam=lam, C0=C0, C1=C1)
    values = {T: F.rho_gradient_clipping(T=T, sigma=1.0, gamma=gamma, lam=lam, C0=C0, C1=C1) for T in range(1, 400)}
    assert best == min(values, key=lambda T: (values[T], T))


def test_best_steps_infinite_when_decay_dominates():
    """lam C0 >= C1: the bound falls for ever towards its limit 2 C1^2 gamma (2 - gamma lam) / (lam sigma^2)."""
    gamma, lam, C0, C1 = 0.1, 0.5, 4.0, 1.0
    assert F.best_steps_gradient_clipping(gamma=gamma, lam=lam, C0=C0, C1=C1) == math.inf
    rho = [F.rho_gradient_clipping(T=T, sigma=1.0, gamma=gamma, lam=lam, C0=C0, C1=C1) for T in (1, 10, 100, 10000)]
    assert rho == sorted(rho, reverse=True)
    assert rho[-1] == pytest.approx(2 * C1 ** 2 * gamma * (2 - gamma * lam) / lam, rel=1e-9)


def test_calibration_gradient_clipping():
    fc = A.make_finetune_constants(C0=1.0, gamma=0.1, lam=0.01, C1=1.0, delta=1e-4)
    T = A.minimal_steps_finetune(sigma=3.0, eps_target=2.0, fc=fc)
    assert A.dp_epsilon_finetune(T=T, sigma=3.0, fc=fc)[0] <= 2.0
    assert T == 1 or A.dp_epsilon_finetune(T=T - 1, sigma=3.0, fc=fc)[0] > 2.0
    s = A.smallest_sigma_finetune(T=25, eps_target=1.0, fc=fc)
    assert A.dp_epsilon_finetune(T=25, sigma=s, fc=fc)[0] <= 1.0 < A.dp_epsilon_finetune(T=25, sigma=s * (1 - 1e-6),
                                                                                         fc=fc)[0]
    with pytest.raises(A.InfeasibleTargetError, match="smallest at T="):
        A.minimal_steps_finetune(sigma=0.5, eps_target=1.0, fc=fc)


def test_conversion_of_the_linear_bound():
    """eps = rho + 2 sqrt(rho log(1/delta)) (basic conversion of alpha rho, docs/METHOD.md §5.2)."""
    fc = A.make_finetune_constants(C0=1.0, gamma=0.1, lam=0.0, C1=1.0, delta=1e-5)
    rho = F.rho_gradient_clipping(T=10, sigma=2.0, gamma=0.1, lam=0.0, C0=1.0, C1=1.0)
    eps, alpha = A.dp_epsilon_finetune(T=10, sigma=2.0, fc=fc)
    assert eps == pytest.approx(rho + 2 * math.sqrt(rho * math.log(1e5)), rel=1e-12)
    assert alpha == pytest.approx(1 + math.sqrt(math.log(1e5) / rho), rel=1e-12)
    assert A.dp_epsilon_finetune(T=10, sigma=2.0, fc=fc, conversion="improved")[0] < eps


# ---------------------------------------------------------------- model clipping
@pytest.mark.parametrize("eps,r", [(0.0, 0.5), (0.5, 1.0), (1.0, 3.0), (3.0, 2.0)])
def test_gaussian_delta_is_the_hockey_stick_integral(eps, r):
    """Phi(r/2 - eps/r) - e^eps Phi(-r/2 - eps/r) against the integral of (p - e^eps q)_+ of N(r, 1), N(0, 1)."""
    f = lambda x: max(stats.norm.pdf(x, r, 1) - math.exp(eps) * stats.norm.pdf(x, 0, 1), 0.0)  # noqa: E731
    exact = integrate.quad(f, -20, 20 + r, points=[r / 2 + eps / r], limit=200)[0]
    assert F.gaussian_delta(eps=eps, r=r) == pytest.approx(exact, rel=1e-7, abs=1e-14)


def test_model_clipping_one_step_is_exact():
    """From two distinct point masses (delta_0 = 1) one step whose means are pushed to +-C2: exactly the
    Gaussian pair at distance 2 C2, so delta_1(eps) is gaussian_delta(eps, 2 C2 / sigma)."""
    fc = A.make_finetune_constants(variant="model", C0=3.0, gamma=0.1, C2=0.7, delta=1e-3)
    for eps in (0.0, 0.3, 1.5):
        got = math.exp(F.log_delta_model_clipping(eps=np.array([eps]), T=1, sigma=0.5, fc=fc)[0])
        assert got == pytest.approx(F.gaussian_delta(eps=eps, r=2 * 0.7 / 0.5), rel=1e-12)


@pytest.mark.parametrize("T,eps", [(2, 0.2), (3, 0.5), (3, 1.0)])
def test_model_clipping_stays_above_pushed_apart_runs(T, eps):
    """Model clipping's worst 1-D instance: every step pushes the runs apart and clips to [-C2, C2]; the
    hockey-stick divergence of the propagated laws (both directions) stays below delta_T(eps)."""
    C0, C2, sigma, gamma = 1.0, 0.6, 0.5, 0.5
    fc = A.make_finetune_constants(variant="model", C0=C0, gamma=gamma, C2=C2, delta=1e-3)
    grid = Grid(10.0, 2e-3)
    phi = lambda x: np.clip(x + gamma * np.sign(x), -C2, C2)   # noqa: E731 (gradient -sign(x), any size)
    p, q = run_pair(grid, T, sigma, phi, C0, -C0)
    exact = max(grid.hockey(p, q, eps), grid.hockey(q, p, eps))
    bound = math.exp(F.log_delta_model_clipping(eps=np.array([eps]), T=T, sigma=sigma, fc=fc)[0])
    assert 0 < exact <= bound * (1 + 1e-6)


def test_noisy_start():
    """sigma0 > 0: delta_0 = gaussian_delta(eps, 2 C0 / sigma0) (the Gaussian mechanism on the C0-ball)."""
    fc = A.make_finetune_constants(variant="model", C0=1.0, gamma=0.1, C2=1.0, sigma0=2.0, delta=1e-3)
    got = math.exp(F.log_delta_model_clipping(eps=np.array([0.4]), T=0, sigma=1.0, fc=fc)[0])
    assert got == pytest.approx(F.gaussian_delta(eps=0.4, r=1.0), rel=1e-12)


def test_calibration_model_clipping():
    fc = A.make_finetune_constants(variant="model", C0=1.0, gamma=0.1, C2=1.0, delta=1e-4)
    T = A.minimal_steps_finetune(sigma=2.0, eps_target=0.5, fc=fc)
    assert A.dp_epsilon_finetune(T=T, sigma=2.0, fc=fc)[0] <= 0.5 < A.dp_epsilon_finetune(T=T - 1, sigma=2.0,
                                                                                          fc=fc)[0]
    s = A.smallest_sigma_finetune(T=20, eps_target=1.0, fc=fc)
    assert A.dp_epsilon_finetune(T=20, sigma=s, fc=fc)[0] <= 1.0 < A.dp_epsilon_finetune(T=20, sigma=s * (1 - 1e-5),
                                                                                       fc=fc)[0]


@pytest.mark.parametrize("bad", [dict(gamma=1.0, lam=1.0), dict(C1=0.0), dict(C0=-1.0), dict(variant="x")])
def test_bad_constants_are_refused(bad):
    kw = dict(C0=1.0, gamma=0.1, lam=0.0, C1=1.0, delta=1e-3)
    kw.update(bad)
    with pytest.raises(ValueError, match="is not allowed"):
        A.make_finetune_constants(**kw)
