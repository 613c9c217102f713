"""The certificates hold after any learning length T, compared with retraining for T + K (docs/METHOD.md §6.1).

Checked where the Renyi divergence is exact: a quadratic loss makes every chain Gaussian. Per-sample
loss kappa (w - a_i)^2 / 2 has gradient kappa (w - a_i); replacing a_i by a'_i moves that gradient by
kappa |a_i - a'_i| at every w, which is the 2M of the clipped losses (M = kappa |a_i - a'_i| / 2). The
chains on D and D' share the start N(0, 2 sigma^2/m), the noise law and the linear map, so after T
steps on D and K on D' (unlearned) against T + K steps on D' (retrained) the two laws are Gaussians
with equal variance v and mean gap g: D_alpha = alpha g^2 / (2 v). The bounds of both papers must be
at least that for every T, not only as T -> inf.
"""
import numpy as np
import pytest

from utils import accountant as A


def exact_unlearning_renyi(*, alpha, T, K, n, S, kappa, gap_per_row, m, eta, sigma):
    """alpha g^2 / (2 v) for full-batch noisy GD on the mean quadratic loss plus m w^2 / 2 (1-D)."""
    r = 1 - eta * (kappa + m)                       # the exact linear contraction, <= c = 1 - eta m
    var = 2 * sigma ** 2 / m                         # the initial law N(0, 2 sigma^2/m)
    for _ in range(T + K):
        var = r * r * var + 2 * eta * sigma ** 2
    # mean gap after T steps on D vs D' (same start): sum_j r^j eta kappa S gap / n; then K steps on D'
    gap_T = eta * kappa * S * gap_per_row / n * sum(r ** j for j in range(T))
    gap = r ** K * gap_T
    return alpha * gap ** 2 / (2 * var)


@pytest.mark.parametrize("T", [0, 1, 3, 20, 500])
def test_both_papers_bounds_hold_for_every_T_against_retraining_for_T_plus_K(T):
    n, S, kappa, gap_per_row, m, sigma = 50, 2, 0.8, 1.0, 0.05, 0.3
    eta = 0.5 / (kappa + m)                          # a step below 1/L, so the chain does not forget in one step
    M = kappa * gap_per_row / 2                      # ||g_i - g'_i|| <= 2M at every w
    zb = A.Z_B(eta=eta, M=M, m=m, n=n, b=n)
    for K in (1, 2, 5):
        for alpha in (1.5, 2.0, 10.0):
            exact = exact_unlearning_renyi(alpha=alpha, T=T, K=K, n=n, S=S, kappa=kappa, gap_per_row=gap_per_row,
                                           m=m, eta=eta, sigma=sigma)
            pnsgd = A.epsilon_pnsgd_loose(alpha=alpha, K=K, Z=S * zb, sigma=sigma, eta=eta, m=m, n=n, b=n)
            pngd = A.epsilon_unlearn(alpha=alpha, K=K, S=S, sigma=sigma, M=M, m=m, n=n, eta=eta)
            assert exact <= pnsgd and exact <= pngd
            if T > 0:
                assert exact > 0                    # the comparison is not vacuous
