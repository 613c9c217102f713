"""The model interface (utils/models.py): the papers' two models, and a model defined only here.

Adding a model is adding a class: `Ridge` below (L2-regularised squared loss on +1/-1 labels) runs through
the engine, the accountant and the audit's statistics without any edit to them. Its reference values are
closed forms (the noiseless fixed point (X^T X / n + m I)^{-1} X^T y / n, the stationary Gaussian of the
noisy linear recursion, smoothness max eig(X^T X) / n) or naive numpy loops, never the engine.
"""
import math

import numpy as np
import pytest
import torch

from utils import accountant, audit_stats, engine, models


class Ridge(models.Model):
    """l(w; x, y) = (x.w - y)^2 / 2: residual x.w - y, clipped to |r| ||x|| <= M (a Huber loss: convex)."""

    name, title = "ridge", "ridge regression"
    num_classes, width = 2, 1
    G = math.inf              # the squared loss's gradient is unbounded
    smoothness_bound = 1.0    # l'' = 1, ||x|| <= 1
    curvature = 1.0           # Hessian X^T X / n exactly
    default_M = math.inf
    convex_clipping = True

    def loss(self, W, X, y):
        return 0.5 * (W @ X.T - y.astype(np.float64)[None, :]) ** 2

    def loss_gradients(self, w, X, y):
        return (X @ w - y)[:, None] * X

    def encode_labels(self, ids):
        return 2 * ids - 1

    def prepare(self, X, y):
        if not ((y == 1) | (y == -1)).all():
            raise ValueError("ridge labels must be +1 or -1")
        y = y.to(X.dtype)
        return y, X, y[:, None]

    def residual_(self, z, targets, bound):
        z.sub_(targets)
        if bound is not None:
            torch.maximum(z, -bound, out=z)
            torch.minimum(z, bound, out=z)

    def hits(self, X, w, y):
        return (X @ w.t() > 0) == (y > 0)[:, None]


def _problem(n=24, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = np.where(X @ np.array([1.0, -0.5, 0.25][:d]) + 0.3 * rng.standard_normal(n) > 0, 1.0, -1.0)
    return X, y


def _closed_form(X, y, m):
    n, d = X.shape
    return np.linalg.solve(X.T @ X / n + m * np.eye(d), X.T @ y / n)


def test_model_for_gives_the_papers_models():
    b, s = models.model_for(2), models.model_for(10)
    assert isinstance(b, models.BinaryLogistic) and isinstance(s, models.Softmax)
    assert (b.weight_shape(4, 7), s.weight_shape(4, 7)) == ((4, 7), (4, 7, 10))
    assert (b.params(7), s.params(7)) == (7, 70)
    assert (b.G, s.G) == (1.0, math.sqrt(2.0))
    assert (b.default_M, s.default_M) == (1.0, 2.0)
    assert (b.smoothness_bound, s.smoothness_bound, b.curvature, s.curvature) == (0.25, 1.0, 0.25, 0.5)
    assert models.model_for(s) is s
    # binary clipping is a Huberised logistic loss (convex): certificates hold for every M; softmax only when
    # clipping cannot fire, M >= sqrt(2) max ||x_i||
    assert b.certificates_apply(0.01) and s.certificates_apply(2.0) and not s.certificates_apply(1.4)
    assert not s.certificates_apply(2.9, max_norm=2.1) and s.certificates_apply(2.9, max_norm=2.0)  # 2.97, 2.83
    for bad in (1, 0, True, 2.5, "2"):
        with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
            models.model_for(bad)


def test_binary_and_softmax_losses_match_their_formulas():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((5, 3))
    W2, y2 = rng.standard_normal((2, 3)), np.array([1.0, -1, 1, -1, -1])
    want2 = np.array([[math.log1p(math.exp(-y2[j] * X[j] @ W2[c])) for j in range(5)] for c in range(2)])
    np.testing.assert_allclose(models.model_for(2).loss(W2, X, y2), want2, rtol=1e-12)
    W4, y4 = rng.standard_normal((2, 3, 4)), np.array([0, 3, 1, 2, 2])
    z = np.einsum("rd,cdk->crk", X, W4)
    want4 = np.log(np.exp(z).sum(axis=2)) - np.take_along_axis(z, np.broadcast_to(y4[None, :, None], (2, 5, 1)),
                                                                 axis=2)[..., 0]
    np.testing.assert_allclose(models.model_for(4).loss(W4, X, y4), want4, rtol=1e-12)
    # gradients against central differences of the loss
    for model, w, y in ((models.model_for(2), W2[0], y2), (models.model_for(4), W4[0], y4)):
        g = model.loss_gradients(w, X, y)
        h, flat = 1e-6, w.reshape(-1)
        for i in range(flat.size):
            e = np.zeros_like(flat)
            e[i] = h
            num = (model.loss((flat + e).reshape(w.shape)[None], X, y)[0]
                   - model.loss((flat - e).reshape(w.shape)[None], X, y)[0]) / (2 * h)
            np.testing.assert_allclose(g[:, i], num, rtol=1e-6, atol=1e-9)


def test_a_test_only_model_converges_to_its_closed_form_fixed_point():
    X, y = _problem()
    n, d = X.shape
    m = 0.05
    ridge = Ridge()
    task = engine.to_task(X, y, ridge, dtype="float64")
    assert task.model is ridge and task.weight_shape(3) == (3, d) and task.targets.shape == (n, 1)
    L = np.linalg.eigvalsh(X.T @ X / n).max() + m
    w0 = engine.init_chains(C=3, d=d, num_classes=ridge, sigma=0.0, m=m, generator=engine.generator_for(0))
    w = engine.run_chains(w0, task, steps=3000, eta=1.0 / L, sigma=0.0, m=m, M=math.inf,
                          generator=engine.generator_for(0))
    want = _closed_form(X, y, m)
    for c in range(3):
        np.testing.assert_allclose(w[c].numpy(), want, rtol=1e-9, atol=1e-12)
    # accuracy through the model's rule sign(x.w) == y, against a direct count
    acc = engine.accuracy(w, X, y, model=ridge)
    assert acc.tolist() == [float(np.mean(np.sign(X @ want) == y))] * 3


def test_a_test_only_model_has_the_stationary_gaussian_of_its_linear_recursion():
    # w' = A w + b + sqrt(2 eta) sigma xi with A = I - eta H, H = X^T X / n + m I: the stationary law is
    # N(w*, S) with S = 2 eta sigma^2 (I - A^2)^{-1}, i.e. variance 2 eta sigma^2 / (1 - (1 - eta h)^2) along
    # each eigenvector of H with eigenvalue h
    X, y = _problem(n=16, d=2, seed=3)
    n, d = X.shape
    m, sigma, C = 0.2, 0.1, 4000
    H = X.T @ X / n + m * np.eye(d)
    h, V = np.linalg.eigh(H)
    eta = 1.0 / h.max()
    S = V @ np.diag(2 * eta * sigma ** 2 / (1 - (1 - eta * h) ** 2)) @ V.T
    task = engine.to_task(X, y, Ridge(), dtype="float64")
    gen = engine.generator_for(7, "ridge")
    w0 = engine.init_chains(C=C, d=d, num_classes=Ridge(), sigma=sigma, m=m, generator=gen, dtype="float64")
    w = engine.run_chains(w0, task, steps=200, eta=eta, sigma=sigma, m=m, M=math.inf, generator=gen).numpy()
    mean_err = w.mean(axis=0) - _closed_form(X, y, m)
    # the sample mean's standard error is sqrt(diag S / C); 5 of them
    assert np.all(np.abs(mean_err) < 5 * np.sqrt(np.diag(S) / C))
    np.testing.assert_allclose(np.cov(w.T), S, rtol=0.1, atol=0.1 * np.abs(S).max())


def test_a_test_only_model_clips_and_batches_like_a_naive_loop():
    # one epoch of PNSGD with batches of 4 and a clip that fires, noiseless, against a numpy loop
    X, y = _problem(n=12, d=3, seed=5)
    X = X * np.linspace(0.5, 1.5, 12)[:, None]          # rows of different norms: the bound M/||x_i|| varies
    n, d, b, m, eta, M = 12, 3, 4, 0.1, 0.3, 0.4
    ridge = Ridge()
    task = engine.to_task(X, y, ridge, dtype="float64")
    gen = engine.generator_for(2)
    perms = engine.make_perms(2, n, generator=gen)
    w0 = torch.as_tensor(np.random.default_rng(0).standard_normal((2, d)))
    for batch_size in (b, None):
        got = engine.run_chains(w0, task, steps=1, eta=eta, sigma=0.0, m=m, M=M, batch_size=batch_size,
                                perms=perms if batch_size else None, generator=gen).numpy()
        for c in range(2):
            w = w0[c].numpy().copy()
            blocks = perms[c].numpy().reshape(-1, b) if batch_size else [np.arange(n)]
            for rows in blocks:
                norms = np.linalg.norm(X[rows], axis=1)
                r = np.clip(X[rows] @ w - y[rows], -M / norms, M / norms)   # |r| ||x|| <= M
                w = (1 - eta * m) * w - eta * (r[:, None] * X[rows]).mean(axis=0)
            np.testing.assert_allclose(got[c], w, rtol=1e-12, atol=1e-14)


def test_a_test_only_model_reaches_the_accountant_and_the_audit():
    X, y = _problem()
    n = X.shape[0]
    lam = 0.002
    lambda_max = float(np.linalg.eigvalsh(X.T @ X / n).max())
    c = accountant.make_constants(n=n, lam=lam, M=1.0, smoothness="data", lambda_max=lambda_max, model=Ridge())
    assert c.L == pytest.approx(lambda_max + lam * n, rel=1e-15)
    assert accountant.make_constants(n=n, lam=lam, M=1.0, model=Ridge()).L == pytest.approx(1.0 + lam * n)
    # the audit's statistics: per-point losses and the noiseless fit, from the model
    W = np.random.default_rng(0).standard_normal((2, 3))
    np.testing.assert_allclose(audit_stats.point_losses(W, X[:4], y[:4], model=Ridge()),
                               0.5 * (W @ X[:4].T - y[:4]) ** 2, rtol=1e-12)
    m = lam * n
    np.testing.assert_allclose(audit_stats.fit_reference(X, y, m=m, num_classes=Ridge()), _closed_form(X, y, m),
                               rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="no worst-case canaries for ridge regression"):
        audit_stats.worst_case_canaries(X, y, m=m, M=1.0, num_classes=Ridge())


def test_models_module_imports_without_torch():
    import subprocess
    import sys

    code = "import sys, utils.models as m; m.model_for(10).check_clipping(M=2.0); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=__import__("os").path.dirname(__import__("os").path.dirname(__file__)))
    assert out.stdout.strip() == "False"
