"""utils/sampler.py and utils/d2d.py without any run folder: a Sampler built from plain values (DIGITS arrays,
the accountant's constants, seed, device, dtype) learns, unlearns and evaluates, writing no file.

Reference values: numpy reimplementations of the test accuracy and of noiseless gradient descent (the
binary logistic objective of docs/METHOD.md §1.2; clipping never fires since ||x_i|| = 1 = M), the Gaussian
law of the noise, and the closed-form D2D dimension rule (docs/METHOD.md §8).
"""
import os
import sys

import numpy as np
import pytest

from utils import accountant as A
from utils import d2d
from utils import data as data_mod

torch = pytest.importorskip("torch")
from utils.sampler import Sampler  # noqa: E402  (torch first: skipped without it)

LAM = 1e-4   # DIGITS' default lambda

_WRITES: dict = {"paths": None}


def _audit(event, args):
    """Paths opened for writing while _WRITES["paths"] is a list (every open: builtins, io, os, numpy)."""
    paths = _WRITES["paths"]
    if paths is None or event != "open" or len(args) < 3 or not isinstance(args[2], int):
        return
    if args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND):
        paths.append(os.fsdecode(args[0]) if isinstance(args[0], (str, bytes, os.PathLike)) else repr(args[0]))


sys.addaudithook(_audit)


@pytest.fixture(scope="module")
def digits():
    return data_mod.load_dataset("DIGITS")


def make(ds, *, trials=5, seed=3, dtype="float64") -> Sampler:
    consts = A.make_constants(n=ds.n, lam=LAM, M=1.0, d=ds.d)
    return Sampler(X=ds.X_train, y=ds.y_train, X_test=ds.X_test, y_test=ds.y_test, num_classes=2, consts=consts,
                   seed=seed, trials=trials, device="cpu", dtype=dtype)


def naive_accuracy(W, X_test, y_test) -> np.ndarray:
    """Per chain: the fraction of test rows whose sign of x.w is the label's."""
    return np.array([np.mean((X_test @ w > 0) == (y_test > 0)) for w in W])


def naive_gd(X, y, *, w, steps, eta, m):
    """Noiseless full-batch gradient descent on mean logistic loss + m/2 ||w||^2."""
    for _ in range(steps):
        s = (1 / (1 + np.exp(-y * (X @ w))) - 1) * y
        w = (1 - eta * m) * w - eta * (X.T @ s) / len(y)
    return w


def test_sampler_learns_on_digits_without_a_run_folder(digits):
    _WRITES["paths"] = written = []
    try:
        s = make(digits)
        w = s.learn(sigma=0.05, T=20)
        acc = s.accuracy(w)
    finally:
        _WRITES["paths"] = None
    assert written == []                                   # no run folder, no cache, no log: nothing written
    W = w.numpy()
    assert W.shape == (5, digits.d) and len(np.unique(W[:, 0])) == 5   # five distinct noisy chains
    np.testing.assert_array_equal(acc, naive_accuracy(W, digits.X_test, digits.y_test))
    assert acc.min() > 0.8                                 # 3 vs 8 is easy: learning happened


def test_learn_is_reproducible_from_the_seed_alone(digits):
    a = make(digits, seed=3).learn(sigma=0.05, T=5)
    b = make(digits, seed=3).learn(sigma=0.05, T=5)
    c = make(digits, seed=4).learn(sigma=0.05, T=5)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_noiseless_learn_and_continue_are_gradient_descent(digits):
    s = make(digits, trials=4)
    c = s.consts
    w = s.learn(sigma=0.0, T=30)
    expected = naive_gd(digits.X_train, digits.y_train, w=np.zeros(digits.d), steps=30, eta=c.eta, m=c.m)
    for chain in w.numpy():                                # sigma = 0: one chain, repeated in every trial
        np.testing.assert_allclose(chain, expected, rtol=1e-10, atol=1e-13)
    removal = s.removal(3)
    assert len(removal.rows) == 3 and (removal.X[removal.rows] != digits.X_train[removal.rows]).any()
    w2 = s.advance(w, s.task(removal.X, removal.y), steps=7, sigma=0.0, key=("test",))
    cont = naive_gd(removal.X, removal.y, w=expected, steps=7, eta=c.eta, m=c.m)
    np.testing.assert_allclose(w2.numpy()[0], cont, rtol=1e-10, atol=1e-13)


def test_noisy_copies_add_gaussian_noise_of_the_given_sigma(digits):
    s = make(digits, trials=200)
    w = torch.zeros((1, digits.d), dtype=torch.float64)
    out = s.noisy_copies(w + 2.0, sigma=0.5, C=200, key=("copies",)).numpy()
    assert out.shape == (200, digits.d)
    noise = out - 2.0
    # 12800 draws of N(0, 0.25): the sample mean within 4 standard errors, the std within 3%
    assert abs(noise.mean()) < 4 * 0.5 / np.sqrt(noise.size)
    assert noise.std() == pytest.approx(0.5, rel=0.03)


def test_d2d_dimension_is_the_parameter_count_unless_asked_for_the_data_d():
    assert d2d.dimension(64, num_classes=2) == 64
    assert d2d.dimension(64, num_classes=10) == 640
    assert d2d.dimension(64, num_classes=10, rule="data") == 64
    assert d2d.dimension(None, num_classes=10) is None


def test_d2d_one_shot_is_noiseless_descent_with_step_2_over_L_plus_m(digits):
    s = make(digits, trials=3)
    c = s.consts
    removal = s.removal(1)
    # noise 0: every trial publishes w_K itself, so its accuracy is that of plain descent T steps on D, K on D'
    out = d2d.one_shot(s, s.task(removal.X, removal.y), T=25, noise={2: {"tiny": 0.0}, 4: {"tiny": 0.0}})
    w_T = naive_gd(digits.X_train, digits.y_train, w=np.zeros(digits.d), steps=25, eta=2 / (c.L + c.m), m=c.m)
    assert out["learn"] == naive_accuracy([w_T], digits.X_test, digits.y_test)
    for K in (2, 4):
        w_K = naive_gd(removal.X, removal.y, w=w_T, steps=K, eta=2 / (c.L + c.m), m=c.m)
        np.testing.assert_array_equal(out[f"K{K}_epstiny"], np.repeat(naive_accuracy([w_K], digits.X_test,
                                                                                     digits.y_test), 3))
    # its noise is the accountant's sigma_1 (Neel et al. 2021; docs/METHOD.md §8)
    assert d2d.output_sigma(c, K=2, eps=1.0) == A.d2d_sigma_1(I=2, eps=1.0, M=c.M, m=c.m, n=c.n, gamma=c.gamma,
                                                              delta=c.delta)
