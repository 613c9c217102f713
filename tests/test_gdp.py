"""The Gaussian-DP certificate by shifted interpolation (docs/METHOD.md §12), from first principles.

Reference values come from a d-dimensional quadratic with a constant gradient shift, where both chains are
Gaussian with the same covariance (their mean and variance recursions are run step by step here), from the
hockey-stick divergence of two Gaussians integrated numerically, from a brute-force quadratic program
(scipy's SLSQP) for the shift allocation, and from the figures issue 25 reports from an independent
implementation."""
import math

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from utils import accountant as A
from utils.accountant import gdp


def mnist():
    return A.make_constants(n=11982, lam=1e-6, M=1.0)


# ---------------------------------------------------------------- the exact Gaussian pair
def gaussian_chains(*, n, m, eta, G, sigma, T, Ks, sizes, d=3, v0=0.0, seed=0):
    """(||mean gap||, variance) of the unlearned and the retrained chain on the quadratic
    f_D(w) = (m/2) ||w||^2 + (1/n) sum_i <g_i, w>, ||g_i|| = G, every replaced row's g flipped to -g (all
    along one direction u): run step by step, start N(0, v0 I) for both."""
    u = np.random.default_rng(seed).normal(size=d)
    u /= np.linalg.norm(u)
    s2 = 2 * eta * sigma ** 2
    # phase j (0 = learning) uses D_j: rows of requests j+1..s still original there, flipped in D_s
    phases = [T] + list(Ks)
    gap, var = np.zeros(d), v0
    for j, length in enumerate(phases):
        differ = sum(sizes[j:])                      # rows of D_j that are not those of D_s
        shift = eta * (2 * G * differ / n) * u       # eta (grad f_(D_j) - grad f_(D_s)), the same for every w
        for _ in range(int(length)):
            gap = (1 - eta * m) * gap + shift
            var = (1 - eta * m) ** 2 * var + s2
    return float(np.linalg.norm(gap)), var


def constants(rng):
    n = int(rng.integers(50, 5000))
    lam = math.exp(rng.uniform(math.log(1e-4), math.log(5e-2))) / n * 10
    M = float(rng.uniform(0.1, 1.0))
    L = lam * n / float(rng.uniform(0.02, 0.4))      # eta m in (0.02, 0.4)
    return A.make_constants(n=n, lam=lam, M=M, L=L)


def stream(rng, c, requests):
    sizes = [int(rng.integers(1, max(2, c.n // (4 * requests)))) for _ in range(requests)]
    Ks = [int(rng.integers(0 if i == requests - 1 else 1, 12)) for i in range(requests)]
    return Ks, sizes


@pytest.mark.parametrize("requests", [1, 2, 5])
def test_bound_equals_the_exact_mu_of_the_quadratic_with_a_point_start(requests):
    rng = np.random.default_rng(requests)
    for _ in range(20):
        c = constants(rng)
        Ks, sizes = stream(rng, c, requests)
        T = int(rng.integers(1, 60))
        sigma = float(rng.uniform(0.01, 1.0))
        gap, var = gaussian_chains(n=c.n, m=c.m, eta=c.eta, G=c.M, sigma=sigma, T=T, Ks=Ks, sizes=sizes)
        exact = gap / math.sqrt(var)
        got = A.gdp_mu(Ks=Ks, sizes=sizes, sigma=sigma, consts=c, T=T)
        assert got == pytest.approx(exact, rel=1e-10, abs=1e-300)


@pytest.mark.parametrize("requests", [1, 3])
def test_stationary_limit_equals_the_exact_mu_after_a_long_learning(requests):
    """T = None is the T -> inf limit: with T so long that c^(2T) is below 1e-14, the exact mu of the
    Gaussian pair, started from the tool's N(0, 2 sigma^2/m I), equals it to 1e-10."""
    rng = np.random.default_rng(10 + requests)
    for _ in range(10):
        c = constants(rng)
        Ks, sizes = stream(rng, c, requests)
        sigma = float(rng.uniform(0.01, 1.0))
        T = math.ceil(16 * math.log(10) / -math.log(c.c))
        gap, var = gaussian_chains(n=c.n, m=c.m, eta=c.eta, G=c.M, sigma=sigma, T=T, Ks=Ks, sizes=sizes,
                                   v0=2 * sigma ** 2 / c.m)
        assert A.gdp_mu(Ks=Ks, sizes=sizes, sigma=sigma, consts=c) == pytest.approx(gap / math.sqrt(var), rel=1e-10)


def test_never_below_the_exact_mu_or_eps_with_the_gaussian_start():
    rng = np.random.default_rng(7)
    for _ in range(60):
        c = constants(rng)
        Ks, sizes = stream(rng, c, int(rng.integers(1, 4)))
        T = int(rng.integers(1, 40))
        sigma = float(rng.uniform(0.01, 1.0))
        gap, var = gaussian_chains(n=c.n, m=c.m, eta=c.eta, G=c.M, sigma=sigma, T=T, Ks=Ks, sizes=sizes,
                                   v0=2 * sigma ** 2 / c.m)
        exact = gap / math.sqrt(var)
        for T_bound in (T, None):
            mu = A.gdp_mu(Ks=Ks, sizes=sizes, sigma=sigma, consts=c, T=T_bound)
            assert mu >= exact * (1 - 1e-12)
            eps = A.dp_epsilon_gdp(Ks=Ks, sizes=sizes, sigma=sigma, consts=c, T=T_bound)[0]
            assert hockey_stick(eps, exact) <= c.delta * (1 + 1e-9)


# ---------------------------------------------------------------- the conversion
def hockey_stick(eps, mu):
    """sup_E P(E) - e^eps Q(E) for P = N(0, 1), Q = N(mu, 1), by numerical integration of (p - e^eps q)_+."""
    if mu == 0:
        return 0.0
    x0 = mu / 2 - eps / mu                      # p > e^eps q exactly left of x0
    f = lambda x: stats.norm.pdf(x) - math.exp(eps + stats.norm.logpdf(x, loc=mu))   # noqa: E731
    return integrate.quad(f, -np.inf, x0, epsabs=1e-15, epsrel=1e-11, limit=200)[0]


def test_conversion_against_numerical_integration():
    rng = np.random.default_rng(3)
    for _ in range(40):
        mu, eps = math.exp(rng.uniform(-4, 1.5)), math.exp(rng.uniform(-4, 1.5))
        want = hockey_stick(eps, mu)
        assert A.gdp_delta(mu=mu, eps=eps) == pytest.approx(want, rel=1e-7, abs=1e-15)
        delta = math.exp(rng.uniform(-20, -1))
        e = A.gdp_epsilon(mu=mu, delta=delta)
        assert hockey_stick(e, mu) <= delta * (1 + 1e-7)
        if e > 0:                                  # minimal: a bit less fails
            assert hockey_stick(e * (1 - 1e-6) - 1e-9, mu) > delta


def test_conversion_is_finite_in_logs_where_the_plain_form_overflows():
    # e^eps overflows at eps = 710; the log form stays exact: delta(eps) ~ 0 there, and a large mu is fine
    assert A.gdp_delta(mu=1.0, eps=800.0) == 0.0
    eps = A.gdp_epsilon(mu=60.0, delta=1e-5)
    assert math.isfinite(eps) and eps > 60 * 60 / 2 * 0.9
    assert math.exp(gdp.gdp_log_delta(60.0, eps)) <= 1e-5
    assert A.gdp_epsilon(mu=0.0, delta=1e-5) == 0.0
    assert A.gdp_epsilon(mu=math.inf, delta=1e-5) == math.inf


def test_gdp_implies_the_renyi_curve_and_chains_compose_as_sqrt_k():
    # D_alpha(N(0,1) || N(mu,1)) = alpha mu^2/2 exactly (integrated here)
    mu, alpha = 0.7, 3.5
    integrand = lambda x: math.exp(alpha * stats.norm.logpdf(x) + (1 - alpha) * stats.norm.logpdf(x, loc=mu))  # noqa: E731
    renyi = math.log(integrate.quad(integrand, -30, 30)[0]) / (alpha - 1)
    assert A.gdp_rdp(alpha=alpha, mu=mu) == pytest.approx(renyi, rel=1e-9)
    # k chains: a shift of mu in each of k independent coordinates is a shift of sqrt(k) mu in norm
    assert A.gdp_chains(mu=mu, chains=4) == pytest.approx(math.hypot(*([mu] * 4)))


def test_power_reading():
    # a mu-GDP pair: the most powerful test at level 5% is the threshold test of N(0,1) against N(mu,1)
    mu = 0.8
    threshold = stats.norm.ppf(0.95, loc=0.0)
    assert A.gdp_power(mu=mu, fpr=0.05) == pytest.approx(stats.norm.sf(threshold, loc=mu), rel=1e-12)


# ---------------------------------------------------------------- the allocation, against brute force
def brute_force(e, c):
    """min sum a^2 over a >= 0 with b_k = c b_(k-1) + e_k - a_k >= 0, b_N = 0 (SLSQP)."""
    N = len(e)
    B = np.array([[c ** (k - j) if j <= k else 0.0 for j in range(N)] for k in range(N)])
    rhs = B @ e
    cons = [{"type": "ineq", "fun": lambda a: rhs[:-1] - B[:-1] @ a, "jac": lambda a: -B[:-1]},
            {"type": "eq", "fun": lambda a: rhs[-1] - B[-1] @ a, "jac": lambda a: -B[-1:]}]
    x0 = np.maximum(e, 0)
    res = optimize.minimize(lambda a: a @ a, x0, jac=lambda a: 2 * a, bounds=[(0, None)] * N, constraints=cons,
                            method="SLSQP", options={"ftol": 1e-15, "maxiter": 1000})
    assert res.success
    return float(res.fun)


def test_shift_allocation_is_the_optimum_of_the_quadratic_program():
    rng = np.random.default_rng(11)
    for _ in range(25):
        N = int(rng.integers(1, 16))
        e = rng.uniform(0, 1, size=N) * (rng.uniform(size=N) < 0.6)
        c = float(rng.uniform(0.3, 0.98))
        cost, a = A.shift_allocation(e, c)
        assert cost == pytest.approx(brute_force(e, c), rel=1e-6, abs=1e-12)
        # the allocation itself is feasible and has that cost
        b = 0.0
        for k in range(N):
            b = c * b + e[k] - a[k]
            assert b >= -1e-12 and a[k] >= 0
        assert abs(b) < 1e-12 and float(a @ a) == pytest.approx(cost, rel=1e-12, abs=1e-300)


def minibatch_e(*, P, epochs_differ, epochs, batch_of, eta, G, b):
    """e_k = eta Delta_k over `epochs` epochs of P updates: a row counts in update j of an epoch when it sits in
    batch j (batch_of: the batch of each replaced row, one list per request) and the epoch is before that
    request's E_i = epochs_differ[i]."""
    e = np.zeros(epochs * P)
    for rows, E in zip(batch_of, epochs_differ):
        for t in range(E):
            for j in rows:
                e[t * P + j] += eta * 2 * G / b
    return e


def test_minibatch_closed_form_is_the_worst_case_over_positions():
    """mu_stream for b < n is at least the optimum for every placement of the replaced rows in the order, and
    equal to it when all of them sit in the last batch (brute-force allocation for small N)."""
    rng = np.random.default_rng(5)
    for _ in range(12):
        P, b = int(rng.integers(2, 4)), int(rng.integers(2, 5))
        n = P * b
        eta, G, sigma = float(rng.uniform(0.2, 1)), 1.0, float(rng.uniform(0.1, 1))
        c = float(rng.uniform(0.4, 0.95))
        T, Ks = int(rng.integers(1, 3)), [int(rng.integers(1, 3)) for _ in range(int(rng.integers(1, 3)))]
        sizes = [1] * len(Ks)
        E = [T + sum(Ks[:i]) for i in range(len(Ks))]
        s = math.sqrt(2 * eta) * sigma
        closed = A.mu_stream(Ks=Ks, sizes=sizes, sigma=sigma, eta=eta, c=c, grad_bound=G, n=n, b=b, T=T)
        worst = 0.0
        for placement in np.ndindex(*([P] * len(Ks))):
            e = minibatch_e(P=P, epochs_differ=E, epochs=T + sum(Ks), batch_of=[[j] for j in placement],
                            eta=eta, G=G, b=b)
            mu = math.sqrt(brute_force(e, c)) / s
            assert mu <= closed * (1 + 1e-6)
            worst = max(worst, mu)
        assert worst == pytest.approx(closed, rel=1e-6)


def test_minibatch_every_T_bound_covers_every_T():
    rng = np.random.default_rng(6)
    for _ in range(30):
        P = int(rng.integers(2, 400))
        c = float(rng.uniform(0.9, 0.9999))
        Ks = [int(rng.integers(0, 4)) for _ in range(int(rng.integers(1, 4)))]
        every = A.mu_stream(Ks=Ks, sizes=[1] * len(Ks), sigma=1.0, eta=1.0, c=c, grad_bound=1.0, n=P * 2, b=2, T=None)
        for T in (1, 2, 5, 30, 1000):
            assert A.mu_stream(Ks=Ks, sizes=[1] * len(Ks), sigma=1.0, eta=1.0, c=c, grad_bound=1.0, n=P * 2, b=2,
                               T=T) <= every * (1 + 1e-12)


# ---------------------------------------------------------------- every other bound lies above alpha mu^2 / 2
def test_every_renyi_bound_is_on_or_above_the_gdp_curve_at_every_order():
    rng = np.random.default_rng(8)
    alphas = 1 + np.exp(np.linspace(-6, 10, 80))
    for _ in range(40):
        c = constants(rng)
        requests = int(rng.integers(1, 5))
        Ks, sizes = stream(rng, c, requests)
        Ks[-1] = max(Ks[-1], 1)
        sigma = float(rng.uniform(0.01, 1.0))
        curve = A.gdp_rdp(alpha=alphas, mu=A.gdp_mu(Ks=Ks, sizes=sizes, sigma=sigma, consts=c))
        for form in ("paper", "two_sided", "mironov"):
            got = A.epsilon_sequential_sizes(alpha=alphas, Ks=Ks, sizes=sizes, sigma=sigma, M=c.M, m=c.m, n=c.n,
                                             eta=c.eta, form=form)
            assert (got >= curve * (1 - 1e-12)).all(), form
        for b in (c.n, next(d for d in range(2, c.n + 1) if c.n % d == 0)):
            z = A.Z_stream(Ks=Ks[:-1], sizes=sizes, consts=c, b=b)[-1]
            mu_b = A.gdp_mu(Ks=Ks, sizes=sizes, sigma=sigma, consts=c, b=b)
            curve_b = A.gdp_rdp(alpha=alphas, mu=mu_b)
            for bound in (A.epsilon_pnsgd_loose, A.epsilon_pnsgd_tight):
                got = bound(alpha=alphas, K=Ks[-1], Z=z, sigma=sigma, eta=c.eta, m=c.m, n=c.n, b=b)
                assert (got >= curve_b * (1 - 1e-12)).all(), (bound.__name__, b)


# ---------------------------------------------------------------- calibration and the issue's figures
def test_issue_25_figures_from_an_independent_implementation():
    """MNIST constants, sigma 0.03, delta 1/n, T = 10000 (issue 25's table)."""
    c = mnist()
    assert [A.minimal_K_gdp(sigma=0.03, eps_target=e, S=S, consts=c, T=10000)
            for S, e in ((10, 1.0), (100, 1.0), (10, 2.0))] == [11, 60, 1]
    assert round(A.dp_epsilon_gdp(Ks=[0], sizes=[1], sigma=0.03, consts=c, T=10000)[0], 3) == 0.130
    Ks = A.sequential_K_list_gdp(num_requests=20, S=5, sigma=0.03, eps_target=1.0, consts=c, T=10000)
    assert sum(Ks) == 245


def test_minimal_K_and_smallest_sigma_are_exact_at_their_boundary():
    c = mnist()
    for S, eps in ((1, 0.1), (10, 1.0), (100, 0.5)):
        K = A.minimal_K_gdp(sigma=0.03, eps_target=eps, S=S, consts=c)
        assert A.dp_epsilon_gdp(Ks=[K], sizes=[S], sigma=0.03, consts=c)[0] <= eps
        assert K == 1 or A.dp_epsilon_gdp(Ks=[K - 1], sizes=[S], sigma=0.03, consts=c)[0] > eps
        sigma = A.smallest_sigma_gdp(K=5, eps_target=eps, S=S, consts=c)
        assert A.dp_epsilon_gdp(Ks=[5], sizes=[S], sigma=sigma, consts=c)[0] <= eps
        assert A.dp_epsilon_gdp(Ks=[5], sizes=[S], sigma=sigma * (1 - 1e-6), consts=c)[0] > eps


def test_tight_constants_softmax():
    """best / gdp constants: softmax smoothness 1/2 + m (eigenvalues of diag(p) - p p^T are at most 1/2) and the
    per-row gradient bound sqrt(2) (||p - e_y|| <= sqrt 2); paper constants keep 1 + m and M."""
    paper = A.make_constants(n=50000, lam=1e-6, M=2.0, num_classes=10)
    tight = A.make_constants(n=50000, lam=1e-6, M=2.0, num_classes=10, tight=True)
    assert paper.L == pytest.approx(1.05) and tight.L == pytest.approx(0.55)
    assert paper.grad_bound == tight.grad_bound == pytest.approx(math.sqrt(2))
    rng = np.random.default_rng(0)
    for _ in range(200):                       # first principles: the Hessian of softmax at random logits
        p = rng.dirichlet(np.ones(10) * rng.uniform(0.05, 3))
        assert np.linalg.eigvalsh(np.diag(p) - np.outer(p, p))[-1] <= 0.5 + 1e-12
        y = rng.integers(10)
        assert np.linalg.norm(p - np.eye(10)[y]) <= math.sqrt(2)
    # CIFAR10_MULTI at sigma 0.015, S = 100, eps = 1 (issue 25: best K from 53 to 24 with these two alone)
    assert A.minimal_K_best(sigma=0.015, eps_target=1.0, S=100, consts=tight) <= 24
