"""Tests of the privacy accountant: the published numbers of docs/METHOD.md §11, closed forms, naive reimplementations."""
import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import configuration, given, settings
from hypothesis import strategies as st

from utils import accountant as A

L_MNIST_DATA = 0.19470058990192413
EPS_LIST = [0.05, 0.1, 0.5, 1.0, 2.0, 5.0]


def mnist(**kw):
    return A.make_constants(n=11982, lam=1e-6, M=1.0, d=784, **kw)


def mnist_data_L():
    return mnist(L=L_MNIST_DATA, smoothness="data")


def cifar10(**kw):
    return A.make_constants(n=10000, lam=1e-6, M=1.0, d=512, **kw)


def cifar10_multi():
    return A.make_constants(n=50000, lam=1e-6, M=2.0, num_classes=10, d=512)


def mnist_sgd():
    return A.make_constants(n=11264, lam=1e-6, M=1.0, d=784)


# ---------------------------------------------------------------- naive reimplementations
def naive_dp(rdp, log_inv_delta):
    """Dense grid over alpha in (1, 1e9) plus a local refinement: slow but independent of the library."""
    am1 = np.logspace(-6, 9, 200001)
    v = rdp(1 + am1) + log_inv_delta / am1
    i = int(np.argmin(v))
    fine = np.linspace(am1[max(i - 1, 0)], am1[min(i + 1, len(am1) - 1)], 20001)
    return float(np.min(rdp(1 + fine) + log_inv_delta / fine))


def naive_sequential(alpha, Ks, slope, em, form):
    """eps^(s)(alpha) by the recursion of docs/METHOD.md §3.3, written literally."""
    eps0 = lambda a: slope * a  # noqa: E731
    if len(Ks) == 1:
        return math.exp(-em * Ks[0] / alpha) * eps0(alpha)
    prev = naive_sequential(2 * alpha, Ks[:-1], slope, em, form)
    r = (alpha - 0.5) / (alpha - 1)
    inner = r * (eps0(2 * alpha) + prev) if form == "paper" else eps0(2 * alpha - 1) + r * prev
    return math.exp(-em * Ks[-1] / alpha) * inner


def linear_scan(passes, limit=100000):
    for K in range(1, limit):
        if passes(K):
            return K
    raise AssertionError("scan limit reached")


# ---------------------------------------------------------------- constants
def test_constants_closed_form_match_method_11_1():
    c = mnist()
    assert c.m == pytest.approx(0.011982, rel=1e-12)
    assert c.L == pytest.approx(0.261982, rel=1e-12)
    assert c.eta == pytest.approx(3.817056, rel=1e-6)
    assert c.delta == pytest.approx(1 / 11982, rel=1e-12)
    assert c.gamma == pytest.approx(0.912529, rel=1e-6)
    assert c.d2d_step == pytest.approx(7.30023, rel=1e-6)
    assert not c.data_dependent and c.smoothness == "bound"
    cm = cifar10_multi()
    assert (cm.L, cm.m) == pytest.approx((1.05, 0.05), rel=1e-12)
    assert cm.gamma == pytest.approx(0.909091, rel=1e-6)
    cs = mnist_sgd()
    assert cs.c == pytest.approx(0.956887, rel=1e-6)
    assert cs.eta == pytest.approx(3.827546, rel=1e-6)


def test_constants_data_dependent_L():
    # docs/METHOD.md §1.3: lambda_max(X^T X / n) = 0.7308744 for MNIST gives L = 0.19470058990192413.
    c = mnist(smoothness="data", lambda_max=0.7308744)
    assert c.L == pytest.approx(L_MNIST_DATA, rel=1e-7)
    assert c.data_dependent and c.smoothness == "data"
    multi = A.make_constants(n=100, lam=1e-3, M=2.0, num_classes=10, smoothness="data", lambda_max=0.6)
    assert multi.L == pytest.approx(0.6 / 2 + 0.1)
    given_L = mnist(L=0.3)
    assert given_L.L == 0.3 and given_L.eta == pytest.approx(1 / 0.3) and given_L.smoothness == "given"


def test_data_smoothness_lambda_max_and_neighbour_bound():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 8)) + 0.5
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    expected = np.linalg.svd(X, compute_uv=False)[0] ** 2 / 60
    assert A.data_smoothness_lambda_max(X) == pytest.approx(expected, rel=1e-10)
    wide = rng.normal(size=(5, 30))
    assert A.data_smoothness_lambda_max(wide) == pytest.approx(np.linalg.svd(wide, compute_uv=False)[0] ** 2 / 5)
    bound = A.data_smoothness_lambda_max(X, replaced_rows=3)
    for _ in range(50):
        X2 = X.copy()
        rows = rng.choice(60, 3, replace=False)
        new = rng.normal(size=(3, 8)) * 5 + X[0] * 10   # adversarial-ish direction
        X2[rows] = new / np.linalg.norm(new, axis=1, keepdims=True)
        assert np.linalg.eigvalsh(X2.T @ X2 / 60)[-1] <= bound + 1e-12


def _softmax_ce_hessian(W, X):
    """Exact Hessian of (1/n) sum_i CE(softmax(W^T x_i)) in vec(W) (row-major d x k)."""
    n, d = X.shape
    k = W.shape[1]
    H = np.zeros((d * k, d * k))
    for x in X:
        z = x @ W
        p = np.exp(z - z.max())
        p /= p.sum()
        H += np.kron(np.outer(x, x), np.diag(p) - np.outer(p, p))
    return H / n


def test_data_L_bounds_the_true_hessian():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 4)) + 1.0
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    lam_max = A.data_smoothness_lambda_max(X)
    lam = 1e-3
    multi = A.make_constants(n=40, lam=lam, M=2.0, num_classes=3, smoothness="data", lambda_max=lam_max)
    binary = A.make_constants(n=40, lam=lam, M=1.0, smoothness="data", lambda_max=lam_max)
    worst_multi = worst_binary = 0.0
    for _ in range(30):
        W = rng.normal(size=(4, 3)) * rng.choice([0.1, 1.0, 5.0])
        worst_multi = max(worst_multi, np.linalg.eigvalsh(_softmax_ce_hessian(W, X))[-1])
        w = rng.normal(size=4) * rng.choice([0.1, 1.0, 5.0])
        s = 1 / (1 + np.exp(-X @ w))
        worst_binary = max(worst_binary, np.linalg.eigvalsh((X.T * (s * (1 - s))) @ X / 40)[-1])
    assert worst_multi + multi.m <= multi.L
    assert worst_binary + binary.m <= binary.L
    # the bound is not vacuous: equal-logit softmax reaches a sizeable fraction of it
    assert worst_multi > 0.5 * (multi.L - multi.m)


# ---------------------------------------------------------------- learning bound and closed forms
def test_epsilon0_closed_form_and_method_10():
    # CIFAR10, S = 100, sigma = 0.2: 4 S^2 M^2 / (m sigma^2 n^2) = 1, so eps_0(alpha) = alpha (docs/METHOD.md §10).
    c = cifar10()
    alphas = np.array([1.5, 3.0, 12.1697])
    np.testing.assert_allclose(A.epsilon0(alpha=alphas, S=100, sigma=0.2, M=1, m=c.m, n=c.n), alphas, rtol=1e-14)
    # the stored alpha* = 12.1697 comes from the K+=10 search (K = 951) with L_data ~ 0.1831085
    cd = cifar10(L=0.1831085, smoothness="data")
    assert A.minimal_K_pngd(sigma=0.2, eps_target=1.0, S=100, consts=cd) == 945
    eps, alpha = A.dp_epsilon_unlearn(K=951, S=100, sigma=0.2, consts=cd)
    assert eps <= 1.0 and alpha == pytest.approx(12.1697, abs=1e-4)


def test_dp_epsilon_learn_is_the_linear_closed_form():
    c = mnist()
    a = 4 * 100 ** 2 / (c.m * 0.05 ** 2 * c.n ** 2)
    b = math.log(c.n)
    eps, alpha = A.dp_epsilon_learn(S=100, sigma=0.05, consts=c)
    assert eps == pytest.approx(a + 2 * math.sqrt(a * b), rel=1e-14)
    assert alpha == pytest.approx(1 + math.sqrt(b / a), rel=1e-14)
    assert eps == pytest.approx(naive_dp(lambda al: a * al, b), rel=1e-8)
    assert A.dp_epsilon_learn(S=1, sigma=0.0, consts=c)[0] == math.inf


@pytest.mark.parametrize("a,b", [(1e-8, 9.4), (3e-3, 9.4), (0.7, 11.0), (50.0, 2.0), (1e6, 0.01)])
def test_minimize_over_alpha_matches_closed_form(a, b):
    value, alpha = A.optimal_alpha_linear(a=a, b=b)
    assert alpha == pytest.approx(1 + math.sqrt(b / a), rel=1e-14)
    eps, alpha_num = A.minimize_over_alpha(lambda al: a * al, delta=math.exp(-b))
    assert eps == pytest.approx(value, rel=1e-9)
    assert eps >= value * (1 - 1e-14)             # a bound at some alpha: never below the exact minimum
    assert alpha_num == pytest.approx(alpha, rel=1e-4)


def test_minimize_over_alpha_warns_at_the_edge_of_all_orders():
    with pytest.warns(A.AlphaRangeWarning):
        eps, alpha = A.minimize_over_alpha(lambda al: 0.0 * al, delta=1e-5)
    assert alpha > 1e299 and eps < 1e-295
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        A.minimize_over_alpha(lambda al: 1e-20 * al, delta=1e-5)   # alpha* ~ 3e10: interior, no warning


def test_conversion_basic_and_improved():
    assert A.rdp_to_dp(eps_rdp=0.5, alpha=3.0, delta=1e-5) == pytest.approx(0.5 + math.log(1e5) / 2)
    improved = A.rdp_to_dp(eps_rdp=0.5, alpha=3.0, delta=1e-5, conversion="improved")
    assert improved == pytest.approx(0.5 + math.log(2 / 3) - (math.log(1e-5) + math.log(3)) / 2)
    c = mnist()
    basic_eps, _ = A.dp_epsilon_unlearn(K=300, S=10, sigma=0.03, consts=c)
    imp_eps, _ = A.dp_epsilon_unlearn(K=300, S=10, sigma=0.03, consts=c, conversion="improved")
    assert imp_eps < basic_eps
    assert A.minimal_K_pngd(sigma=0.03, eps_target=1, S=10, consts=c, conversion="improved") < 778


# ---------------------------------------------------------------- PNGD unlearning bounds
def test_unlearning_bound_equals_lsi_form_and_naive_minimisation():
    c = mnist()
    alpha = np.array([1.7, 5.0, 40.0])
    e = A.epsilon_unlearn(alpha=alpha, K=123, S=7, sigma=0.04, M=1, m=c.m, n=c.n, eta=c.eta)
    e0 = A.epsilon0(alpha=alpha, S=7, sigma=0.04, M=1, m=c.m, n=c.n)
    lsi = A.epsilon_unlearn_lsi(alpha=alpha, K=123, eps_init=e0, sigma=0.04, eta=c.eta,
                                C_lsi=A.lsi_constant(sigma=0.04, m=c.m))
    np.testing.assert_allclose(e, lsi, rtol=1e-13)
    np.testing.assert_allclose(e, np.exp(-123 * c.eta * c.m / alpha) * e0, rtol=1e-13)
    assert A.epsilon_unlearn(alpha=2.0, K=0, S=7, sigma=0.04, M=1, m=c.m, n=c.n, eta=c.eta) == e0[0] / 1.7 * 2.0
    assert A.epsilon_unlearn(alpha=2.0, K=5, S=7, sigma=0.0, M=1, m=c.m, n=c.n, eta=c.eta) == math.inf
    slope = 4 * 49 / (c.m * 0.04 ** 2 * c.n ** 2)
    eps, alpha_star = A.dp_epsilon_unlearn(K=123, S=7, sigma=0.04, consts=c)
    ref = naive_dp(lambda al: np.exp(-123 * c.eta * c.m / al) * slope * al, math.log(c.n))
    assert eps == pytest.approx(ref, rel=1e-9)
    assert eps == pytest.approx(float(A.epsilon_unlearn(alpha=alpha_star, K=123, S=7, sigma=0.04, M=1, m=c.m,
                                                        n=c.n, eta=c.eta)) + math.log(c.n) / (alpha_star - 1),
                                rel=1e-12)


def test_eps_falls_with_sigma_and_with_K():
    c = mnist()
    by_sigma = [A.dp_epsilon_unlearn(K=50, S=5, sigma=s, consts=c)[0] for s in (0.005, 0.01, 0.03, 0.1, 1.0)]
    by_K = [A.dp_epsilon_unlearn(K=K, S=5, sigma=0.03, consts=c)[0] for K in (0, 1, 10, 100, 1000)]
    assert all(x > y for x, y in zip(by_sigma, by_sigma[1:]))
    assert all(x > y for x, y in zip(by_K, by_K[1:]))
    seq = [A.dp_epsilon_sequential(Ks=[300, K], S=5, sigma=0.03, consts=c)[0] for K in (1, 10, 100, 1000)]
    assert all(x > y for x, y in zip(seq, seq[1:]))


@pytest.mark.parametrize("form", ["paper", "mironov"])
def test_sequential_bound_matches_literal_recursion(form):
    c = mnist_data_L()
    Ks = [579, 776, 806, 40, 0, 3000]
    slope = 4 * 100 / (c.m * 0.03 ** 2 * c.n ** 2)
    for alpha in (1.01, 2.5, 17.0, 900.0):
        got = A.epsilon_sequential(alpha=alpha, Ks=Ks, S=10, sigma=0.03, M=1, m=c.m, n=c.n, eta=c.eta, form=form)
        assert got == pytest.approx(naive_sequential(alpha, Ks, slope, c.eta * c.m, form), rel=1e-11)
    single = A.epsilon_sequential(alpha=3.0, Ks=[77], S=10, sigma=0.03, M=1, m=c.m, n=c.n, eta=c.eta, form=form)
    assert single == pytest.approx(A.epsilon_unlearn(alpha=3.0, K=77, S=10, sigma=0.03, M=1, m=c.m, n=c.n,
                                                     eta=c.eta), rel=1e-13)


def test_mironov_form_is_tighter_and_dp_matches_naive():
    c = mnist_data_L()
    Ks = [579, 700]
    paper = A.dp_epsilon_sequential(Ks=Ks, S=10, sigma=0.03, consts=c)
    mironov = A.dp_epsilon_sequential(Ks=Ks, S=10, sigma=0.03, consts=c, form="mironov")
    assert mironov[0] < paper[0]
    slope, em = 4 * 100 / (c.m * 0.03 ** 2 * c.n ** 2), c.eta * c.m
    # the literal two-level recursion on arrays
    al_rdp = lambda al: np.exp(-em * Ks[1] / al) * (al - 0.5) / (al - 1) * (  # noqa: E731
        slope * 2 * al + np.exp(-em * Ks[0] / (2 * al)) * slope * 2 * al)
    naive = naive_dp(al_rdp, math.log(c.n))
    assert paper[0] == pytest.approx(naive, rel=1e-9)


# ---------------------------------------------------------------- searches, paper A
@pytest.mark.parametrize("consts,expected", [
    (mnist(), [0.187157, 0.0936968, 0.0189265, 0.00957769, 0.00489947, 0.00208236]),
    (cifar10(), [0.243105, 0.12171, 0.0245916, 0.0124484, 0.00637155, 0.00271161]),
    (cifar10_multi(), [0.047125, 0.0235883, 0.00475856, 0.00240437, 0.00122653, 0.000517826]),
], ids=["MNIST", "CIFAR10", "CIFAR10_MULTI"])
def test_smallest_sigma_for_one_step_method_11_2(consts, expected):
    for eps, ref in zip(EPS_LIST, expected):
        sigma = A.smallest_sigma_pngd(K=1, eps_target=eps, S=1, consts=consts)
        assert sigma == pytest.approx(ref, rel=1e-5)
        assert A.dp_epsilon_unlearn(K=1, S=1, sigma=sigma, consts=consts)[0] <= eps
        assert A.dp_epsilon_unlearn(K=1, S=1, sigma=sigma * (1 - 1e-5), consts=consts)[0] > eps


def test_paper_rounded_sigma_lists_need_one_step_except_cifar10_0_2431():
    # docs/METHOD.md §11.2, §10: the paper's K = 1 lists are the minimal sigma rounded up, except CIFAR10's 0.2431.
    for consts, listed in [(mnist(), [0.1872, 0.094, 0.019, 0.0096, 0.0049, 0.0021]),
                           (cifar10(), [0.2431, 0.122, 0.025, 0.0125, 0.0064, 0.0028]),
                           (cifar10_multi(), [0.0473, 0.0238, 0.0049, 0.0025, 0.00125, 0.00052])]:
        Ks = [A.minimal_K_pngd(sigma=s, eps_target=e, S=1, consts=consts) for s, e in zip(listed, EPS_LIST)]
        assert Ks == ([2] + [1] * 5 if consts.n == 10000 else [1] * 6)


def test_minimal_K_sigma_sweep_method_5_2():
    c = mnist()
    Ks = [A.minimal_K_pngd(sigma=s, eps_target=1.0, S=100, consts=c) for s in (0.01, 0.05, 0.1, 0.2, 0.5, 1.0)]
    assert Ks == [2546, 1738, 1378, 1006, 472, 1]
    # sigma = 1: the learning bound alone meets eps = 1, yet K is never 0
    assert A.dp_epsilon_learn(S=100, sigma=1.0, consts=c)[0] <= 1.0


def test_minimal_K_is_exact_at_its_boundary():
    c = mnist()
    for sigma, K in [(0.01, 2546), (0.2, 1006)]:
        assert A.dp_epsilon_unlearn(K=K, S=100, sigma=sigma, consts=c)[0] <= 1.0
        assert A.dp_epsilon_unlearn(K=K - 1, S=100, sigma=sigma, consts=c)[0] > 1.0


@pytest.mark.parametrize("sigma,eps,S", [(0.05, 0.5, 3), (0.02, 2.0, 1), (0.1, 0.1, 2), (0.3, 1.0, 40)])
def test_minimal_K_equals_linear_scan(sigma, eps, S):
    c = A.make_constants(n=500, lam=1e-3, M=1.0)
    scan = linear_scan(lambda K: A.dp_epsilon_unlearn(K=K, S=S, sigma=sigma, consts=c)[0] <= eps)
    assert A.minimal_K_pngd(sigma=sigma, eps_target=eps, S=S, consts=c) == scan


def test_minimal_K_in_the_tens_of_thousands_is_fast_and_exact():
    c = A.make_constants(n=2000, lam=1e-7, M=1.0)        # m = 2e-4: very slow contraction
    K = A.minimal_K_pngd(sigma=0.01, eps_target=0.5, S=1, consts=c)
    assert K > 10000
    assert A.dp_epsilon_unlearn(K=K, S=1, sigma=0.01, consts=c)[0] <= 0.5
    assert A.dp_epsilon_unlearn(K=K - 1, S=1, sigma=0.01, consts=c)[0] > 0.5


def test_sequential_K_list_method_11_3():
    Ks = A.sequential_K_list_pngd(num_requests=10, S=10, sigma=0.03, eps_target=1.0, consts=mnist_data_L())
    assert Ks == [579, 776, 806, 830, 855, 887, 926, 973, 1025, 1082] and sum(Ks) == 8739
    assert A.sequential_K_list_pngd(num_requests=1, S=10, sigma=0.03, eps_target=1.0, consts=mnist()) == [778]


def test_first_request_nr5_method_10():
    assert A.minimal_K_pngd(sigma=0.03, eps_target=1.0, S=5, consts=mnist()) == 354
    assert A.minimal_K_pngd(sigma=0.03, eps_target=1.0, S=5, consts=mnist_data_L()) == 263


@pytest.mark.parametrize("form", ["paper", "mironov"])
def test_sequential_K_list_equals_greedy_linear_scan(form):
    c = A.make_constants(n=400, lam=5e-4, M=1.0)
    Ks = A.sequential_K_list_pngd(num_requests=4, S=2, sigma=0.05, eps_target=1.0, consts=c, form=form)
    greedy = []
    for _ in range(4):
        greedy.append(linear_scan(lambda K: A.dp_epsilon_sequential(Ks=greedy + [K], S=2, sigma=0.05, consts=c,
                                                                    form=form)[0] <= 1.0))
    assert Ks == greedy and all(K >= 1 for K in Ks)


def test_smallest_sigma_never_overshoots_and_is_minimal(tmp_path):
    # Hypothesis keeps caches on disk: point it at tmp_path (set before the property is built and run).
    configuration.set_hypothesis_home_dir(tmp_path)
    try:
        @settings(max_examples=30, deadline=None, database=None)
        @given(eps=st.floats(0.02, 8.0), K=st.integers(0, 3000), S=st.integers(1, 200),
               n=st.sampled_from([2000, 11982, 50000]))
        def never_overshoots(eps, K, S, n):
            c = A.make_constants(n=n, lam=1e-6, M=1.0)
            sigma = A.smallest_sigma_pngd(K=K, eps_target=eps, S=S, consts=c)
            assert A.dp_epsilon_unlearn(K=K, S=S, sigma=sigma, consts=c)[0] <= eps
            assert A.dp_epsilon_unlearn(K=K, S=S, sigma=sigma / (1 + 1e-5), consts=c)[0] > eps

        never_overshoots()
    finally:
        configuration.set_hypothesis_home_dir(None)


# ---------------------------------------------------------------- D2D
def test_d2d_sigma_1_table_method_11_4():
    c = mnist()
    table = {1: [50.45, 25.26, 5.105, 2.585, 1.324, 0.5638],
             2: [24.07, 12.05, 2.436, 1.233, 0.6315, 0.269],
             5: [8.333, 4.172, 0.8431, 0.4269, 0.2186, 0.09311]}
    for K, row in table.items():
        for eps, printed in zip(EPS_LIST, row):
            value = A.d2d_sigma_1(I=K, eps=eps, M=c.M, m=c.m, n=c.n, gamma=c.gamma, delta=c.delta)
            assert float(f"{value:.4g}") == printed


def test_d2d_sigma_2_formula_and_I_min_method_10():
    c = mnist()
    g, l2 = c.gamma, 2 * math.log(2 * c.n)
    expected = 8 * g ** 7 / (c.m * c.n * (1 - g ** 7) * (math.sqrt(l2 + 3) - math.sqrt(l2 + 2)))
    assert A.d2d_sigma_2(I=7, eps=1.0, M=1, m=c.m, n=c.n, gamma=g, delta=c.delta) == pytest.approx(expected,
                                                                                                   rel=1e-14)
    assert A.d2d_I_min(eps=1.0, d=784, gamma=c.gamma, delta=c.delta) == 91
    cd = mnist_data_L()
    assert A.d2d_I_min(eps=1.0, d=784, gamma=cd.gamma, delta=cd.delta) == 66


def test_d2d_sequential_K_list():
    c = mnist()
    Ks = A.d2d_sequential_K_list(num_requests=100, f=1.5, consts=c)
    term2 = [math.ceil(math.log(math.log(4 * 784 * i * c.n)) / math.log(1 / c.gamma)) for i in range(1, 101)]
    assert Ks == [int(1.5 * 91) + t for t in term2]
    assert Ks[0] == 136 + A.d2d_term2(i=1, d=784, gamma=c.gamma, delta=c.delta)
    assert Ks == sorted(Ks)


# ---------------------------------------------------------------- PNSGD
def test_Z_B_method_11_5_and_cap():
    c = mnist_sgd()
    expected = {32: 0.239222, 64: 0.119662, 128: 0.0610688, 256: 0.0349263, 512: 0.0240861, 11264: 0.0157632}
    for b, ref in expected.items():
        assert A.Z_B(eta=c.eta, M=1, m=c.m, n=c.n, b=b) == pytest.approx(ref, rel=5e-6)
    assert A.Z_B(eta=c.eta, M=1, m=c.m, n=c.n, b=32, R=0.1) == 0.2
    assert A.Z_B(eta=c.eta, M=1, m=c.m, n=c.n, b=32, R=100.0) == pytest.approx(0.239222, rel=5e-6)


def test_Z_sequential_geometric_series_and_cap():
    c = mnist_sgd()
    zb = A.Z_B(eta=c.eta, M=1, m=c.m, n=c.n, b=128)
    rho = c.c ** (3 * 88)
    Zs = A.Z_sequential(Ks=[3] * 5, Z_B=zb, eta=c.eta, m=c.m, n=c.n, b=128)
    np.testing.assert_allclose(Zs, [zb * (1 - rho ** s) / (1 - rho) for s in range(1, 7)], rtol=1e-12)
    capped = A.Z_sequential(Ks=[0] * 5, Z_B=zb, eta=c.eta, m=c.m, n=c.n, b=128, R=0.1)
    assert capped == pytest.approx([zb, 2 * zb, 3 * zb, 0.2, 0.2, 0.2])


def test_pnsgd_loose_and_tight_forms():
    c = mnist_sgd()
    kw = dict(Z=0.06, sigma=0.03, eta=c.eta, m=c.m, n=c.n)
    alpha = np.array([2.0, 30.0])
    loose = A.epsilon_pnsgd_loose(alpha=alpha, K=4, b=128, **kw)
    np.testing.assert_allclose(loose, alpha * 0.06 ** 2 * c.c ** (2 * 4 * 88) / (2 * c.eta * 0.03 ** 2), rtol=1e-12)
    tight = A.epsilon_pnsgd_tight(alpha=alpha, K=4, b=128, **kw)
    np.testing.assert_allclose(tight, loose * (1 - c.c ** 2) / (1 - c.c ** (2 * 4 * 88)), rtol=1e-12)
    # one noisy step in total (full batch, K = 1): the two forms coincide
    np.testing.assert_allclose(A.epsilon_pnsgd_tight(alpha=alpha, K=1, b=c.n, **kw),
                               A.epsilon_pnsgd_loose(alpha=alpha, K=1, b=c.n, **kw), rtol=1e-12)
    assert A.epsilon_pnsgd_loose(alpha=2.0, K=0, b=128, **dict(kw, sigma=0.0)) == math.inf
    eps, alpha_star = A.dp_epsilon_pnsgd(K=4, sigma=0.03, consts=c, b=128, Z=0.06)
    a = 0.06 ** 2 * c.c ** (2 * 4 * 88) / (2 * c.eta * 0.03 ** 2)
    assert eps == pytest.approx(naive_dp(lambda al: a * al, math.log(c.n)), rel=1e-8)


def test_pnsgd_minimal_K_equals_linear_scan_and_sequential_list():
    c = mnist_sgd()
    for b, sigma, eps in [(11264, 0.03, 1.0), (512, 0.01, 0.01), (11264, 0.2, 0.01)]:
        scan = linear_scan(lambda K: A.dp_epsilon_pnsgd(K=K, sigma=sigma, consts=c, b=b)[0] <= eps)
        assert A.minimal_K_pnsgd(sigma=sigma, eps_target=eps, consts=c, b=b) == scan
    Ks, Zs = A.sequential_K_list_pnsgd(num_requests=5, sigma=0.03, eps_target=1.0, consts=c)
    assert Ks[0] == A.minimal_K_pnsgd(sigma=0.03, eps_target=1.0, consts=c)
    assert Zs == pytest.approx(A.Z_sequential(Ks=Ks[:-1], Z_B=Zs[0], eta=c.eta, m=c.m, n=c.n, b=c.n), rel=1e-14)
    for s in range(1, 5):
        assert Ks[s] == linear_scan(lambda K: A.dp_epsilon_pnsgd(K=K, sigma=0.03, consts=c, Z=Zs[s],
                                                                 form="tight")[0] <= 1.0)
    tight_first, _ = A.sequential_K_list_pnsgd(num_requests=2, sigma=0.03, eps_target=1.0, consts=c,
                                               tight_first=True)
    assert tight_first[0] == A.minimal_K_pnsgd(sigma=0.03, eps_target=1.0, consts=c, form="tight") <= Ks[0]


def test_pnsgd_sequential_100_requests_is_fast():
    c = mnist_sgd()
    for b in (32, 128, 512, c.n):
        Ks, _ = A.sequential_K_list_pnsgd(num_requests=100, sigma=0.01, eps_target=0.01, consts=c, b=b)
        assert len(Ks) == 100 and min(Ks) >= 1


def test_pnsgd_nonconvergent_closed_form_alpha_and_formula():
    c = mnist_sgd()
    b, T, K, R, sigma = 128, 2, 1, 3.0, 0.05
    steps = c.n // b
    zb = A.Z_B(eta=c.eta, M=1, m=c.m, n=c.n, b=b, R=R)
    den = 2 * c.eta * sigma ** 2
    # The start is not projected: the coupled points are 2R apart at most after the first update, and
    # T n/b - 1 contractions follow (the paper's c^(Tn/b) assumes a start inside the ball).
    A1 = (2 * R) ** 2 * c.c ** (2 * (T * steps - 1)) / den
    A2 = (zb + 2 * R * c.c ** (T * steps - 1)) ** 2 * c.c ** (2 * K * steps) / den
    for q in (2.0, 3.0, 1.5):
        p = q / (q - 1)

        def rdp(al):
            # Mironov's weak triangle inequality through the stationary law, both directions: the paper form
            # r (eps1(q al) + eps2(p al)) covers U -> R; R -> U is r eps1(p al) + eps2(q (al - 1/p)), covered by
            # the paper form when q = 2 only
            r = (al - 1 / p) / (al - 1)
            paper = r * (q * al * A1 + p * al * A2)
            return paper if q == 2 else np.maximum(paper, r * p * al * A1 + q * (al - 1 / p) * A2)
        alpha = np.array([1.3, 4.0])
        got = A.epsilon_pnsgd_nonconvergent(alpha=alpha, K=K, T=T, sigma=sigma, eta=c.eta, M=1, m=c.m, n=c.n,
                                            b=b, R=R, q=q)
        np.testing.assert_allclose(got, rdp(alpha), rtol=1e-12)
        eps, alpha_star = A.dp_epsilon_pnsgd_nonconvergent(K=K, T=T, sigma=sigma, consts=c, R=R, b=b, q=q)
        assert eps == pytest.approx(naive_dp(rdp, math.log(c.n)), rel=1e-8)
        assert eps == pytest.approx(float(rdp(alpha_star)) + math.log(c.n) / (alpha_star - 1), rel=1e-12)


def r_of(al, p):
    return (al - 1 / p) / (al - 1)


def test_pnsgd_nonconvergent_with_q_not_2_bounds_both_directions():
    """For q != 2 the paper form r (eps1(q a) + eps2(p a)) bounds one direction only: the reverse one,
    r eps1(p a) + eps2(q (a - 1/p)), is larger at some orders, and the bound is the larger of the two."""
    c = mnist_sgd()
    b, K, R, sigma = 128, 1, 1.0, 0.05
    alpha = np.array([1.2, 4.0, 40.0])
    steps = c.n // b
    zb = A.Z_B(eta=c.eta, M=1, m=c.m, n=c.n, b=b, R=R)
    den = 2 * c.eta * sigma ** 2
    # q = 3 matters when eps2 dominates (long learning: the 2R terms vanish), q = 1.25 when eps1 does
    for q, T in ((3.0, 30), (1.25, 1)):
        kw = dict(K=K, T=T, sigma=sigma, eta=c.eta, M=1, m=c.m, n=c.n, b=b, R=R)
        A1 = (2 * R) ** 2 * c.c ** (2 * (T * steps - 1)) / den
        A2 = (zb + 2 * R * c.c ** (T * steps - 1)) ** 2 * c.c ** (2 * K * steps) / den
        p = q / (q - 1)
        r = (alpha - 1 / p) / (alpha - 1)
        forward = r * (q * alpha * A1 + p * alpha * A2)              # the paper's form
        reverse = r * p * alpha * A1 + q * (alpha - 1 / p) * A2
        got = A.epsilon_pnsgd_nonconvergent(alpha=alpha, q=q, **kw)
        np.testing.assert_allclose(got, np.maximum(forward, reverse), rtol=1e-12)
        assert (reverse > forward * 1.05).any(), q                  # the paper form alone would under-state it
        eps = A.dp_epsilon_pnsgd_nonconvergent(K=K, T=T, sigma=sigma, consts=c, R=R, b=b, q=q)[0]
        assert eps == pytest.approx(naive_dp(lambda al: np.maximum(r_of(al, p) * (q * al * A1 + p * al * A2),
                                                                   r_of(al, p) * p * al * A1 + q * (al - 1 / p) * A2),
                                             math.log(c.n)), rel=1e-8)
    kw = dict(K=K, T=3, sigma=sigma, eta=c.eta, M=1, m=c.m, n=c.n, b=b, R=R)
    A1 = (2 * R) ** 2 * c.c ** (2 * (3 * steps - 1)) / den
    A2 = (zb + 2 * R * c.c ** (3 * steps - 1)) ** 2 * c.c ** (2 * K * steps) / den
    # q = 2: the paper form covers both directions and stays exactly as it was
    got2 = A.epsilon_pnsgd_nonconvergent(alpha=alpha, q=2.0, **kw)
    np.testing.assert_allclose(got2, (alpha - 0.5) / (alpha - 1) * (2 * alpha * A1 + 2 * alpha * A2), rtol=1e-13)


def test_pnsgd_finite_T_factor_from_first_principles():
    """The 2R terms carry c^(Tn/b - 1): a small ball and a short burn-in, where the factor matters."""
    n, b, lam, M, sigma, R, alpha, q = 64, 16, 0.05, 1.0, 0.2, 0.5, 3.0, 2.0
    m, L = lam * n, 0.25 + lam * n
    eta = 1 / L
    c = 1 - eta * m
    zb = min(2 * eta * M / (b * (1 - c ** (n // b))), 2 * R)
    p = q / (q - 1)
    for T, K in [(1, 1), (2, 3)]:
        x = T * n // b                                 # learning updates
        shift = 2 * R * c ** (x - 1)                   # W_inf after them: 2R after update 1, then x - 1 contractions
        eps1 = q * alpha * shift ** 2 / (2 * eta * sigma ** 2)
        eps2 = p * alpha * (zb + shift) ** 2 * c ** (2 * K * n // b) / (2 * eta * sigma ** 2)
        want = (alpha - 1 / p) / (alpha - 1) * (eps1 + eps2)
        got = A.epsilon_pnsgd_nonconvergent(alpha=alpha, K=K, T=T, sigma=sigma, eta=eta, M=M, m=m, n=n, b=b, R=R,
                                            q=q)
        assert got == pytest.approx(want, rel=1e-12)
        old = (alpha - 1 / p) / (alpha - 1) * (q * alpha * (2 * R * c ** x) ** 2
                                               + p * alpha * (zb + 2 * R * c ** x) ** 2 * c ** (2 * K * n // b)) \
            / (2 * eta * sigma ** 2)
        assert got > old * 1.01                        # the paper's exponent would under-state it here
    # one learning update in all: nothing absorbs the shift that follows the unprojected start
    assert A.epsilon_pnsgd_nonconvergent(alpha=alpha, K=1, T=1, sigma=sigma, eta=eta, M=M, m=m, n=n, b=n,
                                         R=R) == math.inf


def test_reference_R0_arithmetic_is_at_least_the_every_T_loose_bound():
    # p (a - 1/p)/(a - 1) >= 1: the reference's R = 0 value never certifies less than the loose bound
    c = mnist_sgd()
    for b, q in ((128, 2.0), (c.n, 3.0)):
        zb = A.Z_B(eta=c.eta, M=1, m=c.m, n=c.n, b=b)
        for alpha in (1.01, 2.0, 50.0):
            ref = A.epsilon_pnsgd_nonconvergent(alpha=alpha, K=1, T=5, sigma=0.05, eta=c.eta, M=1, m=c.m, n=c.n, b=b,
                                                R=0.0, q=q, reference_zero_R=True)
            loose = alpha * zb ** 2 * c.c ** (2 * c.n // b) / (2 * c.eta * 0.05 ** 2)
            assert ref >= loose
            assert A.epsilon_pnsgd_loose(alpha=alpha, K=1, Z=zb, sigma=0.05, eta=c.eta, m=c.m, n=c.n, b=b) == \
                pytest.approx(loose, rel=1e-12)


def test_pnsgd_nonconvergent_R0_is_infinite_unless_reference():
    c = mnist_sgd()
    kw = dict(K=1, T=100, sigma=0.05, eta=c.eta, M=1, m=c.m, n=c.n, b=128)
    assert A.epsilon_pnsgd_nonconvergent(alpha=2.0, R=0.0, **kw) == math.inf
    zb = A.Z_B(eta=c.eta, M=1, m=c.m, n=c.n, b=128)
    ref = (2 - 0.5) / (2 - 1) * 2 * 2 * zb ** 2 * c.c ** (2 * 88) / (2 * c.eta * 0.05 ** 2)
    assert A.epsilon_pnsgd_nonconvergent(alpha=2.0, R=0.0, reference_zero_R=True, **kw) == pytest.approx(ref)
    with pytest.raises(A.InfeasibleTargetError, match="R=0"):
        A.smallest_sigma_pnsgd_nonconvergent(eps_target=1.0, T=100, consts=c, R=0.0, b=128)
    with pytest.raises(A.InfeasibleTargetError, match="R=0"):
        A.minimal_K_pnsgd_nonconvergent(sigma=0.05, eps_target=1.0, T=100, consts=c, R=0.0, b=128)


def test_pnsgd_nonconvergent_sigma_search():
    c = mnist_sgd()
    # docs/METHOD.md §4.5: with R = 100 the R-terms vanish after T = 100 epochs: same sigma as the reference's R = 0.
    for b, T in [(128, 100), (c.n, 3000)]:
        for eps in (0.05, 1.0):
            s100 = A.smallest_sigma_pnsgd_nonconvergent(eps_target=eps, T=T, consts=c, R=100.0, b=b)
            s0 = A.smallest_sigma_pnsgd_nonconvergent(eps_target=eps, T=T, consts=c, R=0.0, b=b,
                                                      reference_zero_R=True)
            assert s100 == pytest.approx(s0, rel=1e-6)
            assert A.dp_epsilon_pnsgd_nonconvergent(K=1, T=T, sigma=s100, consts=c, R=100.0, b=b)[0] <= eps
            assert A.dp_epsilon_pnsgd_nonconvergent(K=1, T=T, sigma=s100 / (1 + 1e-5), consts=c, R=100.0,
                                                    b=b)[0] > eps
            assert A.minimal_K_pnsgd_nonconvergent(sigma=s100, eps_target=eps, T=T, consts=c, R=100.0, b=b) == 1
    # a short burn-in with a large ball: eps1 alone exceeds the target, so no K can help
    with pytest.raises(A.InfeasibleTargetError, match="K -> inf"):
        A.minimal_K_pnsgd_nonconvergent(sigma=0.05, eps_target=1.0, T=1, consts=c, R=100.0, b=128)
    # and the convergent sigma search agrees with its own bound
    s = A.smallest_sigma_pnsgd(K=1, eps_target=0.5, consts=c, b=128)
    assert A.dp_epsilon_pnsgd(K=1, sigma=s, consts=c, b=128)[0] <= 0.5
    assert A.dp_epsilon_pnsgd(K=1, sigma=s / (1 + 1e-5), consts=c, b=128)[0] > 0.5


# ---------------------------------------------------------------- certificate and burn-in
def test_certificate_is_strict_json():
    c = mnist_data_L()
    eps, alpha = A.dp_epsilon_unlearn(K=np.int64(579), S=10, sigma=0.03, consts=c)
    cert = A.certificate(consts=c, eps=np.float64(eps), alpha=alpha, K=np.int64(579), sigma=0.03, bound="pngd")
    text = json.dumps(cert, allow_nan=False)
    back = json.loads(text)
    assert back["K"] == 579 and back["b"] == c.n and back["data_dependent_L"] is True
    assert back["delta"] == 1 / 11982 and back["L"] == L_MNIST_DATA and back["eps"] <= 1.0
    inf_cert = A.certificate(consts=c, eps=math.inf, alpha=math.nan, K=[1, 2], sigma=0.0)
    assert inf_cert["eps"] == "inf" and inf_cert["alpha"] == "nan" and inf_cert["K"] == [1, 2]
    json.dumps(inf_cert, allow_nan=False)


def test_burn_in_auto_bounds_the_exact_w2_of_a_gaussian_chain():
    # On f(w) = (m/2)||w - w*||^2 + grad-bounded shift the chain is Gaussian and W2 is exact.
    m, M, eta, sigma, dim = 0.05, 1.0, 4.0, 0.1, 20
    c = 1 - eta * m
    w_star = np.full(dim, M / m / math.sqrt(dim))          # ||w*|| = M/m, the largest allowed
    T, bound = A.burn_in_auto(sigma=sigma, m=m, M=M, eta=eta, dim=dim, tol=1e-3)
    assert bound <= 1e-3 and bound == pytest.approx(c ** T * (
        math.sqrt((M / m) ** 2 + 2 * sigma ** 2 * dim / m) + math.sqrt(2 * sigma ** 2 * dim / (m * (2 - eta * m)))))
    assert bound / c > 1e-3                                 # T is the smallest such step count
    v_inf = 2 * eta * sigma ** 2 / (1 - c ** 2)
    for t in (0, 5, T // 2, T):
        mean_gap = c ** t * np.linalg.norm(w_star)
        v_t = c ** (2 * t) * 2 * sigma ** 2 / m + v_inf * (1 - c ** (2 * t))
        w2 = math.sqrt(mean_gap ** 2 + dim * (math.sqrt(v_t) - math.sqrt(v_inf)) ** 2)
        assert w2 <= bound / c ** (T - t) + 1e-15
    T_rel, b_rel = A.burn_in_auto(sigma=sigma, m=m, M=M, eta=eta, dim=dim)
    assert b_rel <= 0.01 * math.sqrt(v_inf * dim) and T_rel < T
    with pytest.raises(ValueError, match="tol"):
        A.burn_in_auto(sigma=0.0, m=m, M=M, eta=eta, dim=dim)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("call,match", [
    (lambda: A.minimal_K_pngd(sigma=0.03, eps_target=0.0, S=1, consts=mnist()), "eps_target=0.0"),
    (lambda: A.minimal_K_pngd(sigma=0.03, eps_target=-1.0, S=1, consts=mnist()), "eps_target=-1.0"),
    (lambda: A.smallest_sigma_pngd(K=1, eps_target=0.0, S=1, consts=mnist()), "eps_target=0.0"),
    (lambda: A.dp_epsilon_unlearn(K=1, S=1, sigma=-0.1, consts=mnist()), "sigma=-0.1"),
    (lambda: A.epsilon0(alpha=2.0, S=1, sigma=-1.0, M=1, m=0.01, n=100), "sigma=-1.0"),
    (lambda: A.dp_epsilon_unlearn(K=1, S=11982, sigma=0.1, consts=mnist()), "S=11982"),
    (lambda: A.dp_epsilon_unlearn(K=1, S=0, sigma=0.1, consts=mnist()), "S=0"),
    (lambda: A.dp_epsilon_unlearn(K=-1, S=1, sigma=0.1, consts=mnist()), "K=-1"),
    (lambda: A.epsilon_sequential(alpha=2.0, Ks=[5, -2], S=1, sigma=0.1, M=1, m=0.01, n=100, eta=3.0),
     r"Ks\[1\]=-2"),
    (lambda: A.epsilon0(alpha=1.0, S=1, sigma=0.1, M=1, m=0.01, n=100), "alpha"),
    (lambda: A.epsilon0(alpha=2.0, S=1, sigma=0.1, M=1, m=0.0, n=100), "m=0.0"),
    (lambda: A.epsilon0(alpha=2.0, S=1, sigma=0.1, M=-1, m=0.01, n=100), "M=-1"),
    (lambda: A.epsilon0(alpha=2.0, S=1, sigma=0.1, M=1, m=0.01, n=1), "n=1"),
    (lambda: A.make_constants(n=100, lam=1e-3, M=1, L=-0.5), "L=-0.5"),
    (lambda: A.make_constants(n=100, lam=1e-3, M=1, L=0.05), "L=0.05"),
    (lambda: A.make_constants(n=100, lam=0.0, M=1), "lam=0.0"),
    (lambda: A.make_constants(n=100, lam=1e-3, M=1, delta=1.0), "delta=1.0"),
    (lambda: A.make_constants(n=100, lam=1e-3, M=1, smoothness="data"), "lambda_max=None"),
    (lambda: A.make_constants(n=100, lam=1e-3, M=1, smoothness="exact"), "smoothness='exact'"),
    (lambda: A.rdp_to_dp(eps_rdp=1.0, alpha=2.0, delta=0.0), "delta=0.0"),
    (lambda: A.Z_B(eta=3.8, M=1, m=0.011, n=11264, b=100), "b=100"),
    (lambda: A.dp_epsilon_sequential(Ks=[1], S=1, sigma=0.1, consts=mnist(), form="other"), "form='other'"),
    (lambda: A.smallest_sigma_pngd(K=1, eps_target=1.0, S=1, consts=mnist(), rtol=1e-3), "rtol=0.001"),
])
def test_bad_input_raises_a_value_error_naming_it(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_infeasible_targets_raise_the_named_error():
    assert issubclass(A.InfeasibleTargetError, ValueError)
    with pytest.raises(A.InfeasibleTargetError, match="sigma=0"):
        A.minimal_K_pngd(sigma=0.0, eps_target=1.0, S=1, consts=mnist())
    with pytest.raises(A.InfeasibleTargetError, match="sigma=0"):
        A.sequential_K_list_pnsgd(num_requests=2, sigma=0.0, eps_target=1.0, consts=mnist_sgd())
    # K = 0 and sigma = 0 are accepted by the bounds
    assert A.dp_epsilon_unlearn(K=0, S=1, sigma=0.0, consts=mnist())[0] == math.inf
    assert A.dp_epsilon_unlearn(K=0, S=1, sigma=0.1, consts=mnist()) == A.dp_epsilon_learn(S=1, sigma=0.1,
                                                                                         consts=mnist())
