"""Descent-to-Delete, the baseline both papers compare with: its noise and iteration counts (the math only).

Neel, Roth, Sharifi-Malvajerdi, "Descent-to-Delete: gradient-based methods for machine unlearning",
ALT 2021, arXiv 2007.02923 (docs/METHOD.md §8). gamma = (L - m)/(L + m) is the contraction of one
gradient step of size 2/(L + m).
"""
from __future__ import annotations

import math

from utils.accountant import validation as v
from utils.accountant.certificates import Constants


def _check_d2d(M, m, n, gamma, delta):
    M, m, n, delta = v.positive("M", M), v.positive("m", m), v.n_rows(n), v.delta(delta)
    gamma = v.real("gamma", gamma)
    if not 0 < gamma < 1:
        raise ValueError(f"gamma={gamma!r} is not allowed (allowed: 0 < gamma < 1, gamma = (L-m)/(L+m))")
    return M, m, n, gamma, delta


def d2d_sigma_1(*, I, eps, M, m, n, gamma, delta) -> float:
    """One-shot D2D output noise sigma_1 (D2D, arXiv 2007.02923;
    docs/METHOD.md §8), g = gamma, d = delta:

    4 sqrt(2) M g^I / (m n (1 - g^I) (sqrt(log(1/d) + eps) - sqrt(log(1/d))))
    """
    I, eps = v.integer("I", I, 1), v.target(eps)
    M, m, n, gamma, delta = _check_d2d(M, m, n, gamma, delta)
    ld = -math.log(delta)
    gi = gamma ** I
    return 4.0 * math.sqrt(2.0) * M * gi / (m * n * (1.0 - gi) * (math.sqrt(ld + eps) - math.sqrt(ld)))


def d2d_sigma_2(*, I, eps, M, m, n, gamma, delta) -> float:
    """Published-state D2D noise sigma_2 (D2D, arXiv 2007.02923;
    docs/METHOD.md §8), g = gamma, d = delta:

    8 M g^I / (m n (1 - g^I) (sqrt(2 log(2/d) + 3 eps) - sqrt(2 log(2/d) + 2 eps)))
    """
    I, eps = v.integer("I", I, 1), v.target(eps)
    M, m, n, gamma, delta = _check_d2d(M, m, n, gamma, delta)
    l2 = 2.0 * math.log(2.0 / delta)
    gi = gamma ** I
    return 8.0 * M * gi / (m * n * (1.0 - gi) * (math.sqrt(l2 + 3.0 * eps) - math.sqrt(l2 + 2.0 * eps)))


def d2d_I_min(*, eps, d, gamma, delta) -> int:
    """I_min = ceil(log(sqrt(2d) / ((1-g)(sqrt(2 log(2/d) + eps) - sqrt(2 log(2/d))))) / log(1/g))
    (D2D, arXiv 2007.02923; docs/METHOD.md §8)."""
    eps, d, delta = v.target(eps), v.integer("d", d, 1), v.delta(delta)
    _check_d2d(1.0, 1.0, 2, gamma, delta)
    l2 = 2.0 * math.log(2.0 / delta)
    x = math.sqrt(2.0 * d) / ((1.0 - gamma) * (math.sqrt(l2 + eps) - math.sqrt(l2)))
    return math.ceil(math.log(x) / -math.log(gamma))


def d2d_term2(*, i, d, gamma, delta) -> int:
    """term2(i) = ceil(log(log(4 d i / delta)) / log(1/gamma)): extra steps of request i (docs/METHOD.md §8)."""
    i, d, delta = v.integer("i", i, 1), v.integer("d", d, 1), v.delta(delta)
    _check_d2d(1.0, 1.0, 2, gamma, delta)
    return math.ceil(math.log(math.log(4.0 * d * i / delta)) / -math.log(gamma))


def d2d_sequential_K_list(*, num_requests, f, consts: Constants, eps=1.0) -> list[int]:
    """Steps of D2D request i = 1..N: K_i = int(f I_min(eps)) + term2(i) (docs/METHOD.md §8)."""
    num_requests, f = v.integer("num_requests", num_requests, 1), v.positive("f", f)
    if consts.d is None:
        raise ValueError("consts.d=None is not allowed for D2D (allowed: make_constants(..., d=dimension))")
    kw = dict(d=consts.d, gamma=consts.gamma, delta=consts.delta)
    base = int(f * d2d_I_min(eps=eps, **kw))
    return [base + d2d_term2(i=i, **kw) for i in range(1, num_requests + 1)]

