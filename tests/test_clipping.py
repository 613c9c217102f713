"""Clipping and contraction: softmax clipping that can fire is refused everywhere (utils/models.py).

The reference values come from torch.autograd on a naive update map written here, not from the engine.
"""
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from utils import engine, models

F64 = torch.float64


def old_softmax_update(W, x, y, *, eta, m, M):
    """The update map of one sample with the rule the engine used to apply: the residual p - e_y scaled to
    norm M / ||x|| (no noise: the noise is the same in both coupled chains and cancels)."""
    k = W.shape[1]
    r = torch.softmax(W.t() @ x, 0) - torch.nn.functional.one_hot(torch.tensor(y), k).to(W.dtype)
    r = r * torch.clamp(M / (torch.linalg.norm(x) * torch.linalg.norm(r)), max=1.0)
    return (1 - eta * m) * W - eta * torch.outer(x, r)


def spectral_norm_of_update(update, W):
    J = torch.autograd.functional.jacobian(update, W)          # (d, k, d, k)
    n = W.numel()
    return float(torch.linalg.matrix_norm(J.reshape(n, n), 2))


def test_old_softmax_clip_rule_is_expansive():
    # k = 10, M = 1, m = 0.01, L = 1 + m (the softmax bound), eta = 1/L: c = 1 - eta m = 0.9901
    k, M, m, d = 10, 1.0, 0.01, 3
    eta = 1 / (1 + m)
    c = 1 - eta * m
    x = torch.tensor([0.6, 0.0, 0.8], dtype=F64)               # unit norm
    z = torch.zeros(k, dtype=F64)
    z[1] = 2.8                                                 # a confident wrong class: the clip is active
    W = torch.outer(x, z)                                      # logits W^T x = z
    r = torch.softmax(z, 0) - torch.nn.functional.one_hot(torch.tensor(0), k).to(F64)
    assert float(torch.linalg.norm(r)) > M                    # clipping fires here
    norm = spectral_norm_of_update(lambda V: old_softmax_update(V, x, 0, eta=eta, m=m, M=M), W)
    assert norm > c and norm > 1.002                           # 1.00254: expands, where c = 0.9901 is assumed
    # without clipping (M >= sqrt(2)) the same map contracts by c: the softmax loss is convex and 1-smooth
    unclipped = spectral_norm_of_update(lambda V: old_softmax_update(V, x, 0, eta=eta, m=m, M=2.0), W)
    assert unclipped <= c + 1e-12


def test_binary_clip_keeps_the_contraction():
    # binary clipping is the gradient of a Huberised logistic loss (convex, 1/4-smooth): ||J|| <= c
    m, M, d = 0.05, 0.3, 4
    eta = 1 / (0.25 + m)
    c = 1 - eta * m
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(d, generator=gen, dtype=F64), dim=0)

    def update(w):
        s = torch.clamp(torch.sigmoid(-(x @ w)), max=M / float(torch.linalg.norm(x)))
        return (1 - eta * m) * w - eta * (-x) * s

    fired = 0
    for scale in (0.1, 1.0, 3.0, 10.0):
        for _ in range(20):
            w = scale * torch.randn(d, generator=gen, dtype=F64)
            fired += float(torch.sigmoid(-(x @ w))) > M
            J = torch.autograd.functional.jacobian(update, w)
            assert float(torch.linalg.matrix_norm(J, 2)) <= c + 1e-12
    assert fired > 0


def _unit_problem(k, n=12, d=4, scale=1.0):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d))
    X = scale * X / np.linalg.norm(X, axis=1, keepdims=True)
    y = rng.integers(0, k, n) if k > 2 else rng.choice([-1.0, 1.0], n)
    return engine.to_task(X, y, k, dtype="float64")


@pytest.mark.parametrize("batch_size", [None, 4])
def test_engine_refuses_softmax_clipping_that_can_fire(batch_size):
    task = _unit_problem(3)
    perms = None if batch_size is None else engine.make_perms(2, task.n, generator=engine.generator_for(0))
    kw = dict(steps=1, eta=0.5, sigma=0.1, m=0.1, batch_size=batch_size, perms=perms)
    w0 = torch.zeros(task.weight_shape(2), dtype=F64)
    with pytest.raises(ValueError, match=r"M=1\.41 is not allowed .* = 1\.41421"):
        engine.run_chains(w0, task, M=1.41, generator=engine.generator_for(0), **kw)
    out = engine.run_chains(w0, task, M=math.sqrt(2), generator=engine.generator_for(0), **kw)
    assert out.shape == w0.shape
    # rows of norm 0.5: clipping at M = 0.75 cannot fire (sqrt(2) * 0.5 = 0.707)
    small = _unit_problem(3, scale=0.5)
    engine.run_chains(w0, small, M=0.75, generator=engine.generator_for(0), **kw)
    # binary clipping stays allowed
    binary = _unit_problem(2)
    engine.run_chains(torch.zeros(2, 4, dtype=F64), binary, M=0.3, generator=engine.generator_for(0), **kw)


def test_models_defaults_and_bound():
    assert models.model_for(2).default_M == 1.0 and models.model_for(10).default_M == 2.0
    assert models.model_for(10).smallest_unclipped_M(1.0) == pytest.approx(math.sqrt(2))
    # ||p - e_y|| <= sqrt(2): reached in the limit of a confident wrong class
    z = torch.tensor([0.0, 40.0, 0.0], dtype=F64)
    r = torch.softmax(z, 0) - torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    assert float(torch.linalg.norm(r)) == pytest.approx(math.sqrt(2), rel=1e-12)
    models.model_for(2).check_clipping(M=0.01)
    with pytest.raises(ValueError, match="M=1.4 is not allowed"):
        models.model_for(10).check_clipping(M=1.4)


SCRIPTS = [
    ["baseline_multiclass.py", "--dataset", "DIGITS_MULTI", "--plan_only"],
    ["baseline_multiclass.py", "--find_k", "1", "--n", "1000"],
    ["main_lmc_multiclass.py", "--dataset", "DIGITS_MULTI", "--paint_unlearning_sigma", "1", "--plan_only"],
    ["main_sgd.py", "--dataset", "DIGITS_MULTI", "--sequential", "1", "--plan_only"],
    ["audit.py", "--dataset", "DIGITS_MULTI", "--plan_only"],
]


@pytest.mark.parametrize("argv", SCRIPTS, ids=lambda a: a[0] + ("_n" if "--n" in a else ""))
def test_every_script_refuses_softmax_clipping_before_anything_runs(tmp_path, argv):
    root = __import__("os").path.dirname(__import__("os").path.dirname(__file__))
    proc = subprocess.run([sys.executable, argv[0], *argv[1:], "--M", "1", "--result_dir", str(tmp_path)],
                          cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "M=1 is not allowed for softmax" in lines[0] and "1.41421" in lines[0], proc.stderr
    assert list(tmp_path.iterdir()) == []                       # nothing written


def test_audit_uses_the_model_dependent_M_default(tmp_path):
    import audit

    from utils import experiments

    args = audit.parse(["--dataset", "DIGITS_MULTI", "--plan_only", "--result_dir", str(tmp_path)])
    assert experiments.model_defaults(args, None)[1] == models.model_for(10).default_M == 2.0
    args = audit.parse(["--dataset", "DIGITS", "--plan_only", "--result_dir", str(tmp_path)])
    assert experiments.model_defaults(args, None)[1] == models.model_for(2).default_M == 1.0


def test_unlearn_learn_refuses_softmax_clipping_before_anything_runs(tmp_path, capsys, monkeypatch):
    import unlearn

    monkeypatch.setenv("UNLEARN_NO_PROGRESS", "1")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((60, 4)), rng.integers(0, 3, 60)
    np.savez(tmp_path / "three.npz", X_train=X[:40], y_train=y[:40], X_test=X[40:], y_test=y[40:])
    st = tmp_path / "st"
    argv = ["learn", "--features", str(tmp_path / "three.npz"), "--state", str(st), "--device", "cpu"]
    assert unlearn.main(argv + ["--M", "1.2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "M=1.2 is not allowed for softmax" in err[0] and "1.41421" in err[0]
    assert not st.exists()
    assert unlearn.main(argv + ["--trials", "1", "--burn_in", "2"]) == 0       # the default M = 2 runs
