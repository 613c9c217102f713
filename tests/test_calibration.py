"""The generic calibration (utils/accountant/calibration.py): the answer meets the target and is minimal,
for bounds of different families, against closed-form inverses where they exist (docs/METHOD.md §5.2)."""
import math

import pytest

from utils import accountant as A

N, LAM, M_CLIP = 11982, 1e-6, 1.0


def consts():
    return A.make_constants(n=N, lam=LAM, M=M_CLIP)


# ---------------------------------------------------------------- smallest sigma
@pytest.mark.parametrize("eps", [0.05, 1.0, 20.0])
@pytest.mark.parametrize("S", [1, 50])
def test_smallest_sigma_paper_A_learning_matches_the_closed_form_inverse(eps, S):
    """eps(sigma) = a + 2 sqrt(a l), a = 4 S^2 M^2 / (m sigma^2 n^2), l = log(1/delta) (paper A, arXiv 2401.10371,
    learning bound eps_0 minimised over alpha with the basic conversion). Solving for sqrt(a):
    sqrt(a) = sqrt(l + eps) - sqrt(l), so sigma* = 2 S M / (n sqrt(m) (sqrt(l + eps) - sqrt(l)))."""
    c = consts()
    l, m = math.log(N), LAM * N
    exact = 2 * S * M_CLIP / (N * math.sqrt(m) * (math.sqrt(l + eps) - math.sqrt(l)))

    def eps_of(sigma):
        return A.dp_epsilon_learn(S=S, sigma=sigma, consts=c)[0]

    sigma = A.smallest_sigma(eps_of, eps_target=eps, given=f"S={S}", rtol=1e-10)
    assert eps_of(sigma) <= eps                           # never overshoots the target
    assert eps_of(sigma * (1 - 1e-9)) > eps               # minimal
    assert exact * (1 - 1e-12) <= sigma <= exact * (1 + 2e-10)


@pytest.mark.parametrize("eps", [0.1, 2.0])
@pytest.mark.parametrize("K,b", [(1, 128), (3, 11264)])
def test_smallest_sigma_paper_B_loose_matches_the_closed_form_inverse(eps, K, b):
    """B's loose bound (arXiv 2403.17105; docs/METHOD.md §4.2) is a alpha, a = Z^2 c^(2Kn/b) / (2 eta sigma^2),
    Z = 2 eta M / (b (1 - c^(n/b))): with the basic conversion
    sigma* = Z c^(Kn/b) / (sqrt(2 eta) (sqrt(l+eps) - sqrt(l)))."""
    n = 11264
    c = A.make_constants(n=n, lam=LAM, M=M_CLIP)
    eta, contr, l = 1.0 / (0.25 + LAM * n), 1 - (LAM * n) / (0.25 + LAM * n), math.log(n)
    Z = 2 * eta * M_CLIP / (b * (1 - contr ** (n // b)))
    exact = Z * contr ** (K * n // b) / (math.sqrt(2 * eta) * (math.sqrt(l + eps) - math.sqrt(l)))
    got = A.smallest_sigma_pnsgd(K=K, eps_target=eps, consts=c, b=b, rtol=1e-7)
    assert A.dp_epsilon_pnsgd(K=K, sigma=got, consts=c, b=b)[0] <= eps
    assert exact * (1 - 1e-12) <= got <= exact * (1 + 2e-7)
    fine = A.smallest_sigma(lambda s: A.dp_epsilon_pnsgd(K=K, sigma=s, consts=c, b=b)[0], eps_target=eps,
                            given="B-loose", rtol=1e-10)
    assert A.dp_epsilon_pnsgd(K=K, sigma=fine * (1 - 1e-9), consts=c, b=b)[0] > eps


def test_smallest_sigma_of_a_toy_bound_and_its_errors():
    # eps(sigma) = 1/sigma^2 <= 4 exactly from sigma = 1/2
    got = A.smallest_sigma(lambda s: 1 / s ** 2, eps_target=4.0, given="toy", rtol=1e-9)
    assert 0.5 <= got <= 0.5 * (1 + 1e-9) and 1 / got ** 2 <= 4.0
    with pytest.raises(A.InfeasibleTargetError, match=r"^no sigma <= 1e\+300 meets eps_target=1.0 with K=3$"):
        A.smallest_sigma(lambda s: 2.0, eps_target=1.0, given="K=3")
    with pytest.raises(ValueError, match=r"rtol=0.001 is not allowed"):
        A.smallest_sigma(lambda s: 1 / s, eps_target=1.0, given="toy", rtol=1e-3)


# ---------------------------------------------------------------- minimal K
@pytest.mark.parametrize("sigma,eps", [(1e-4, 1.0), (3e-4, 0.1), (1e-3, 0.5), (0.03, 1.0)])
def test_minimal_K_paper_A_is_the_first_passing_K(sigma, eps):
    c = consts()
    K = A.minimal_K_pngd(sigma=sigma, eps_target=eps, S=1, consts=c)
    assert K >= 1 and (K > 1) == (sigma < 0.03)      # the cases include K = 1 and long searches
    assert A.dp_epsilon_unlearn(K=K, S=1, sigma=sigma, consts=c)[0] <= eps
    if K > 1:
        assert A.dp_epsilon_unlearn(K=K - 1, S=1, sigma=sigma, consts=c)[0] > eps


@pytest.mark.parametrize("sigma,eps,b", [(2e-5, 1.0, 128), (1e-5, 0.2, 256), (1e-3, 0.05, 11264), (1e-6, 0.5, 11264)])
def test_minimal_K_paper_B_loose_matches_the_closed_form(sigma, eps, b):
    """a(K) = Z^2 c^(2Kn/b) / (2 eta sigma^2) must reach a* = (sqrt(l + eps) - sqrt(l))^2 (docs/METHOD.md §4.2, §5.2):
    K = max(1, ceil(log(a* 2 eta sigma^2 / Z^2) / (2 (n/b) log c)))."""
    n = 11264
    c = A.make_constants(n=n, lam=LAM, M=M_CLIP)
    eta, contr, l = 1.0 / (0.25 + LAM * n), 1 - (LAM * n) / (0.25 + LAM * n), math.log(n)
    Z = 2 * eta * M_CLIP / (b * (1 - contr ** (n // b)))
    a_star = (math.sqrt(l + eps) - math.sqrt(l)) ** 2
    exact = max(1, math.ceil(math.log(a_star * 2 * eta * sigma ** 2 / Z ** 2) / (2 * (n // b) * math.log(contr))))
    K = A.minimal_K_pnsgd(sigma=sigma, eps_target=eps, consts=c, b=b)
    assert K == exact
    assert A.dp_epsilon_pnsgd(K=K, sigma=sigma, consts=c, b=b)[0] <= eps
    if K > 1:
        assert A.dp_epsilon_pnsgd(K=K - 1, sigma=sigma, consts=c, b=b)[0] > eps


def test_minimal_K_of_a_toy_bound_never_below_one_and_independent_of_the_hint():
    for hint in (1, 2, 9, 10, 11, 37, 1000):
        assert A.minimal_K(lambda K: 10.0 / K, eps_target=1.0, given="toy", hint=hint) == 10
    assert A.minimal_K(lambda K: 0.0, eps_target=1.0, given="toy", hint=50) == 1
    with pytest.raises(A.InfeasibleTargetError, match=r"^no K <= 10\*\*15|^no K <= 1000000000000000 meets "
                                                      r"eps_target=1.0 with sigma=0.1$"):
        A.minimal_K(lambda K: 2.0, eps_target=1.0, given="sigma=0.1")
    with pytest.raises(A.InfeasibleTargetError, match=r"the K -> inf limit is eps=1.5$"):
        A.minimal_K(lambda K: 1.5 + 1 / K, eps_target=1.0, given="toy", eps_limit=1.5)


def test_the_accountant_imports_no_torch():
    import subprocess
    import sys
    code = "import sys, utils.accountant; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=__file__.rsplit("/tests/", 1)[0])
