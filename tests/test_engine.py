"""The multi-chain PNGD / PNSGD engine against a naive per-sample implementation, scikit-learn and closed forms."""
import math
import platform

import numpy as np
import pytest
import torch

from utils import engine
from utils.engine import (ChainNoise, DivergenceError, Task, accuracy, choose_rows, generator_for, init_chains, make_perms,
                          removal_stream, replace_rows, resolve_device, resolve_dtype, run_chains, to_task)

F64 = torch.float64


# ----------------------------------------------------------------------------- a naive reference
def naive_grad(w, x, y, k):
    """Materialised per-sample loss gradient: binary x (sigmoid(y x.w) - 1) y, softmax x (p - e_y)^T."""
    if k == 2:
        return x * (torch.sigmoid(y * (x @ w)) - 1) * y
    p = torch.softmax(w.t() @ x, dim=0)
    return torch.outer(x, p - torch.nn.functional.one_hot(y.long(), k).to(F64))


def naive_run(w0, X, y, k, *, steps, eta, sigma, m, M, R, batch_size, perms, generator):
    """docs/METHOD.md §2.1, §2.4 written chain by chain and sample by sample; counts clips and projections."""
    w, C, n = w0.clone(), w0.shape[0], X.shape[0]
    b = n if batch_size is None else batch_size
    counts = {"clipped": 0, "samples": 0, "projected": 0}
    # the engine's noise stream: chain c's own generator (ChainNoise, checked on its own below)
    stream = ChainNoise(generator, tuple(w.shape), steps * (n // b), dtype=F64) if sigma > 0 and steps else None
    for _epoch in range(steps):
        for j in range(n // b):
            noise = stream.next().clone() if stream is not None else torch.zeros_like(w)
            new = torch.empty_like(w)
            for c in range(C):
                batch = range(n) if b == n else perms[c, j * b:(j + 1) * b].tolist()
                g = torch.zeros_like(w[c])
                for i in batch:
                    gi = naive_grad(w[c], X[i], y[i], k)
                    norm = torch.linalg.norm(gi)
                    counts["samples"] += 1
                    if norm > M:
                        gi = gi * (M / norm)
                        counts["clipped"] += 1
                    g += gi
                g = g / len(batch) + m * w[c]
                v = w[c] - eta * g + math.sqrt(2 * eta * sigma ** 2) * noise[c]
                if R > 0 and torch.linalg.norm(v) > R:
                    v = v * (R / torch.linalg.norm(v))
                    counts["projected"] += 1
                new[c] = v
            w = new
    return w, counts


def random_problem(k, n=24, d=5, seed=0):
    """Rows with norms in [0.5, 1.5] and one zero row (the engine must not assume unit norm), valid labels."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X *= (rng.uniform(0.5, 1.5, n) / np.linalg.norm(X, axis=1))[:, None]
    X[n // 2] = 0.0
    y = rng.choice([-1.0, 1.0], n) if k == 2 else rng.integers(0, k, n)
    return X, y


PARAMS = dict(eta=0.5, sigma=0.1, m=0.1, M=0.3)
# binary: some but not all per-sample gradients clip; softmax: none can (rows of norm <= 1.5, sqrt(2) * 1.5
# = 2.12 <= M), because softmax clipping that can fire is refused (tests/test_clipping.py)
CLIP = {2: 0.3, 3: 2.2}


def params(k, **over):
    return {**PARAMS, "M": CLIP[k], **over}


def clipped_as_expected(counts, k):
    return 0 < counts["clipped"] < counts["samples"] if k == 2 else counts["clipped"] == 0


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("batch_size", [None, 8])
@pytest.mark.parametrize("project", [False, True])
def test_batched_step_equals_naive_per_sample_implementation(k, batch_size, project):
    X, y = random_problem(k)
    task = to_task(X, y, k, device="cpu", dtype="float64")
    C, steps = 3, 3
    w0 = 1.5 * torch.randn(task.weight_shape(C), generator=generator_for(1, "w0"), dtype=F64)
    R = 0.6 * float(torch.linalg.vector_norm(w0.reshape(C, -1), dim=1).min()) if project else 0.0
    perms = make_perms(C, task.n, generator=generator_for(1, "perms")) if batch_size else None
    params = {**PARAMS, "M": CLIP[k]}
    got = run_chains(w0, task, steps=steps, R=R, batch_size=batch_size, perms=perms,
                     generator=generator_for(1, "noise"), **params)
    want, counts = naive_run(w0, torch.as_tensor(X), torch.as_tensor(y), k, steps=steps, R=R,
                             batch_size=batch_size, perms=perms, generator=generator_for(1, "noise"), **params)
    assert clipped_as_expected(counts, k)
    assert (counts["projected"] > 0) == project
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k,M", [(2, 0.95)])  # softmax just below sqrt(2): refused (tests/test_clipping.py)
def test_clipping_just_below_the_largest_possible_gradient_norm(k, M):
    # unit-norm rows bound the gradient norm by 1 (binary) or sqrt(2) (softmax); just below that,
    # only confidently misclassified samples clip, which a shortcut that skips clipping would miss
    X, y = random_problem(k, n=40)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    X = np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)  # unit rows, the zero row stays
    task = to_task(X, y, k, dtype="float64")
    w0 = 8 * torch.randn(task.weight_shape(2), generator=generator_for(14), dtype=F64)
    params = {**PARAMS, "sigma": 0.0, "M": M}
    got = run_chains(w0, task, steps=1, generator=generator_for(0), **params)
    want, counts = naive_run(w0, torch.as_tensor(X), torch.as_tensor(y), k, steps=1, R=0.0, batch_size=None,
                             perms=None, generator=None, **params)
    assert 0 < counts["clipped"] < counts["samples"]
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("batch_size", [None, 6])
def test_chunking_does_not_change_the_result(monkeypatch, k, batch_size):
    X, y = random_problem(k, n=12)
    task = to_task(X, y, k, device="cpu", dtype="float64")
    C = 5
    w0 = torch.randn(task.weight_shape(C), generator=generator_for(2, "w0"), dtype=F64)
    perms = make_perms(C, task.n, generator=generator_for(2, "perms")) if batch_size else None
    kwargs = dict(steps=4, R=1.0, batch_size=batch_size, perms=perms, **params(k))
    whole = run_chains(w0, task, generator=generator_for(2, "noise"), **kwargs)
    monkeypatch.setattr(engine, "MAX_CHUNK_BYTES", 2 * task.n * k * 8)  # 1 or 2 chains per chunk
    monkeypatch.setattr(engine, "MINIBATCH_GROUP_BYTES", 2 * (batch_size or 1) * task.d * 8)  # groups of 2
    chunked = run_chains(w0, task, generator=generator_for(2, "noise"), **kwargs)
    torch.testing.assert_close(chunked, whole, rtol=1e-13, atol=1e-13)


def test_batch_size_n_is_full_batch_and_steps_are_exact():
    X, y = random_problem(2)
    task = to_task(X, y, 2, dtype="float64")
    w0 = torch.randn(2, task.d, generator=generator_for(3), dtype=F64)
    full = run_chains(w0, task, steps=3, generator=generator_for(3, "n"), **PARAMS)
    b_n = run_chains(w0, task, steps=3, batch_size=task.n, generator=generator_for(3, "n"), **PARAMS)
    assert torch.equal(full, b_n)
    # exactly T steps: without noise, three runs of one step are one run of three (each call draws fresh
    # per-chain noise streams from the generator, so with noise they differ by design)
    g, w, quiet = generator_for(3, "n"), w0, dict(PARAMS, sigma=0.0)
    for _ in range(3):
        w = run_chains(w, task, steps=1, generator=g, **quiet)
    torch.testing.assert_close(w, run_chains(w0, task, steps=3, generator=g, **quiet), rtol=0, atol=1e-15)
    assert not torch.equal(run_chains(w0, task, steps=1, generator=g, **PARAMS),
                           run_chains(w0, task, steps=1, generator=g, **PARAMS))
    assert torch.equal(run_chains(w0, task, steps=0, generator=g, **PARAMS), w0)


def test_input_weights_are_not_modified_and_progress_counts_updates():
    X, y = random_problem(3, n=12)
    task = to_task(X, y, 3, dtype="float64")
    w0 = torch.randn(task.weight_shape(2), generator=generator_for(4), dtype=F64)
    before = w0.clone()
    done = []
    run_chains(w0, task, steps=5, batch_size=4, perms=make_perms(2, 12, generator=generator_for(4, "p")),
               generator=generator_for(4, "n"), progress=done.append, **params(3))
    assert torch.equal(w0, before)
    assert done == [3] * 5  # one call per epoch with its n / b updates


# ----------------------------------------------------------------------------- scikit-learn optimum
def digits(classes):
    from sklearn.datasets import load_digits

    data = load_digits()
    keep = np.isin(data.target, classes)
    X = data.data[keep]
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    return X, data.target[keep]


def test_noiseless_binary_gd_converges_to_sklearn_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    X, t = digits([3, 8])
    y = np.where(t == 3, 1.0, -1.0)
    n, m = X.shape[0], 0.05
    L = np.linalg.eigvalsh(X.T @ X / n).max() / 4 + m
    task = to_task(X, y, 2, dtype="float64")
    w0 = init_chains(C=2, d=task.d, num_classes=2, sigma=0.0, m=m, generator=generator_for(0), dtype="float64")
    w = run_chains(w0, task, steps=400, eta=1 / L, sigma=0.0, m=m, M=10.0, generator=generator_for(0))
    # sklearn minimises ||w||^2 / 2 + C sum_i loss_i: with C = 1/(m n) that is n times our objective
    ref = LogisticRegression(C=1 / (m * n), fit_intercept=False, tol=1e-12, max_iter=10000).fit(X, y)
    np.testing.assert_allclose(w.numpy(), np.repeat(ref.coef_, 2, axis=0), rtol=1e-4, atol=1e-6)


def test_noiseless_softmax_gd_converges_to_sklearn_multinomial_regression():
    from sklearn.linear_model import LogisticRegression

    X, y = digits(list(range(10)))
    n, m, k = X.shape[0], 0.1, 10
    task = to_task(X, y, k, dtype="float64")
    W = run_chains(torch.zeros(1, task.d, k, dtype=F64), task, steps=400, eta=1 / (1 + m), sigma=0.0, m=m,
                   M=10.0, generator=generator_for(0))
    ref = LogisticRegression(C=1 / (m * n), fit_intercept=False, tol=1e-12, max_iter=10000).fit(X, y)
    probs = torch.softmax(torch.as_tensor(X) @ W[0], dim=1).numpy()
    np.testing.assert_allclose(probs, ref.predict_proba(X), atol=1e-6)
    # the L2 penalty makes the softmax parameterisation identifiable, so the weights agree as well
    np.testing.assert_allclose(W[0].numpy(), ref.coef_.T, rtol=1e-4, atol=1e-5)


def test_float32_tracks_float64():
    X, y = digits([3, 8])
    y = np.where(y == 3, 1.0, -1.0)
    w = {dt: run_chains(torch.zeros(1, X.shape[1]), to_task(X, y, 2, dtype=dt), steps=100, eta=3.0, sigma=0.0,
                        m=0.05, M=1.0, generator=generator_for(0)) for dt in ("float32", "float64")}
    assert w["float32"].dtype == torch.float32
    np.testing.assert_allclose(w["float32"].numpy(), w["float64"].numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("project", [False, True])
def test_float32_full_batch_products_backends_agree_with_the_naive_float64_run(monkeypatch, k, project):
    # float32 on CPU takes oneDNN's matmul (engine.MATMUL "auto"), "torch" takes torch.mm: both must be
    # the naive float64 algorithm to float32 rounding
    X, y = random_problem(k, n=40, d=7)
    C = 5
    w0 = 1.5 * torch.randn((C, 7) if k == 2 else (C, 7, k), generator=generator_for(15, "w0"), dtype=F64)
    R = 0.6 * float(torch.linalg.vector_norm(w0.reshape(C, -1), dim=1).min()) if project else 0.0
    params = {**PARAMS, "M": CLIP[k], "sigma": 0.0}
    want, counts = naive_run(w0, torch.as_tensor(X), torch.as_tensor(y), k, steps=5, R=R, batch_size=None,
                             perms=None, generator=None, **params)
    assert clipped_as_expected(counts, k)
    task = to_task(X, y, k, dtype="float32")
    used = {}
    for backend in ("auto", "torch"):
        monkeypatch.setattr(engine, "MATMUL", backend)
        used[backend] = engine._onednn_linear(task) is not None
        got = run_chains(w0.float(), task, steps=5, R=R, generator=generator_for(0), **params)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), want, rtol=2e-6, atol=2e-6)
    assert used == {"auto": engine._onednn_linear_op() is not None, "torch": False}


def test_onednn_path_is_used_here_and_chunking_is_bit_identical(monkeypatch):
    # the pinned x86 torch build (requirements.txt) has oneDNN: the fast path must be the one the bench times
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip(f"oneDNN's matmul is only required on x86 (this machine: {platform.machine()})")
    assert engine._onednn_linear_op() is not None
    for k in (2, 3):
        X, y = random_problem(k, n=30)
        task = to_task(X, y, k, dtype="float32")
        C = 6
        w0 = torch.randn(task.weight_shape(C), generator=generator_for(16, k)).float()
        kwargs = dict(steps=3, R=1.0, **params(k))
        whole = run_chains(w0, task, generator=generator_for(16, "noise"), **kwargs)
        for chains_per_chunk in (2, 3, 4):  # balanced chunks: (2, 2, 2), (3, 3), (3, 3)
            monkeypatch.setattr(engine, "MAX_CHUNK_BYTES", chains_per_chunk * task.n * (1 if k == 2 else k) * 4)
            assert engine._chunks(C, task.n * (1 if k == 2 else k) * 4) == {
                2: [(0, 2), (2, 4), (4, 6)], 3: [(0, 3), (3, 6)], 4: [(0, 3), (3, 6)]}[chains_per_chunk]
            chunked = run_chains(w0, task, generator=generator_for(16, "noise"), **kwargs)
            assert torch.equal(chunked, whole)


def test_chunks_are_balanced_and_respect_the_limit():
    for C in range(1, 40):
        for size in range(1, 12):
            chunks = engine._chunks(C, 10, size * 10)
            sizes = [b - a for a, b in chunks]
            assert chunks[0][0] == 0 and chunks[-1][1] == C and all(p[1] == q[0] for p, q in zip(chunks, chunks[1:]))
            assert max(sizes) <= size and max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
            assert len(chunks) == math.ceil(C / size)


def test_reduced_precision_float32_products_keep_torchs_own_choice():
    # a user who allows bf16 for float32 matmuls gets torch's behaviour, not a silent oneDNN path of ours
    X, y = random_problem(2)
    task = to_task(X, y, 2, dtype="float32")
    before = torch.backends.mkldnn.matmul.fp32_precision
    try:
        torch.backends.mkldnn.matmul.fp32_precision = "bf16"
        assert engine._onednn_linear(task) is None
    finally:
        torch.backends.mkldnn.matmul.fp32_precision = before
    assert (engine._onednn_linear(task) is not None) == (engine._onednn_linear_op() is not None)


def test_matmul_setting_is_checked(monkeypatch):
    X, y = random_problem(2)
    task = to_task(X, y, 2, dtype="float32")
    monkeypatch.setattr(engine, "MATMUL", "blas")
    with pytest.raises(ValueError, match="engine.MATMUL must be 'auto' or 'torch', got 'blas'"):
        run_chains(torch.zeros(1, task.d), task, steps=1, generator=generator_for(0), **PARAMS)


# ----------------------------------------------------------------------------- laws in closed form
@pytest.mark.parametrize("k,batch_size", [(2, None), (3, 5)])
def test_stationary_law_without_gradient_matches_the_ar1_closed_form(k, batch_size):
    # zero rows switch the data off: each coordinate is w <- (1 - eta m) w + sqrt(2 eta sigma^2) xi,
    # whose stationary law is N(0, 2 sigma^2 / (m (2 - eta m))); eta m = 0.5 makes it differ from 2 sigma^2/m
    X, y = random_problem(k, n=10, d=3)
    X = np.zeros_like(X)
    task = to_task(X, y, k, dtype="float64")
    eta, m, sigma, C = 1.0, 0.5, 0.2, 2000
    w0 = init_chains(C=C, d=3, num_classes=k, sigma=sigma, m=m, generator=generator_for(5, "init"), dtype="float64")
    perms = make_perms(C, 10, generator=generator_for(5, "perms")) if batch_size else None
    w = run_chains(w0, task, steps=40, eta=eta, sigma=sigma, m=m, M=1e-9, batch_size=batch_size, perms=perms,
                   generator=generator_for(5, "noise")).flatten()
    var = 2 * sigma ** 2 / (m * (2 - eta * m))
    N = w.numel()
    assert abs(float(w.mean())) < 5 * math.sqrt(var / N)
    assert abs(float(w.var()) - var) < 5 * var * math.sqrt(2 / (N - 1))


def test_init_chains_law_and_zero_noise():
    w = init_chains(C=3000, d=4, num_classes=2, sigma=0.3, m=0.2, generator=generator_for(6), dtype="float64")
    var, N = 2 * 0.3 ** 2 / 0.2, w.numel()
    assert w.shape == (3000, 4) and w.dtype == F64
    assert abs(float(w.mean())) < 5 * math.sqrt(var / N)
    assert abs(float(w.var()) - var) < 5 * var * math.sqrt(2 / (N - 1))
    W = init_chains(C=2, d=4, num_classes=5, sigma=0.0, m=0.2, generator=generator_for(6), dtype="float32")
    assert W.shape == (2, 4, 5) and W.dtype == torch.float32 and not W.any()
    with pytest.raises(ValueError, match="m = lam"):
        init_chains(C=2, d=4, num_classes=2, sigma=0.1, m=0.0, generator=generator_for(6))


@pytest.mark.parametrize("k", [2, 4])
def test_projection_keeps_every_chain_in_the_ball(k):
    X, y = random_problem(k)
    task = to_task(X, y, k, dtype="float64")
    w0 = 5 * torch.randn(task.weight_shape(6), generator=generator_for(7), dtype=F64)
    R = 0.7
    w = run_chains(w0, task, steps=3, eta=0.5, sigma=1.0, m=0.1, M=1.0 if k == 2 else 2.2, R=R,
                   generator=generator_for(7, "n"))
    norms = torch.linalg.vector_norm(w.reshape(6, -1), dim=1)
    assert (norms <= R * (1 + 1e-12)).all()
    # with this much noise every chain leaves the ball and is projected onto its boundary
    torch.testing.assert_close(norms, torch.full_like(norms, R))


# ----------------------------------------------------------------------------- errors
def test_divergence_raises_a_named_error():
    X, y = random_problem(2)
    task = to_task(X, y, 2, dtype="float64")
    with pytest.raises(DivergenceError, match="eta"):
        run_chains(torch.ones(2, task.d, dtype=F64), task, steps=200, eta=1e6, sigma=0.0, m=0.1, M=1.0,
                   generator=generator_for(0))
    assert issubclass(DivergenceError, ValueError)


def test_bad_arguments_raise_value_errors_naming_the_value():
    X, y = random_problem(2)
    task = to_task(X, y, 2, dtype="float64")
    w, g = torch.zeros(2, task.d, dtype=F64), generator_for(0)
    ok = dict(steps=1, eta=0.5, sigma=0.1, m=0.1, M=1.0, generator=g)
    with pytest.raises(ValueError, match=r"n=24 .*b=5"):
        run_chains(w, task, batch_size=5, perms=make_perms(2, 24, generator=g), **ok)
    with pytest.raises(ValueError, match="perms"):
        run_chains(w, task, batch_size=6, **ok)
    with pytest.raises(ValueError, match="permutation"):
        run_chains(w, task, batch_size=6, perms=torch.zeros(2, 24, dtype=torch.int64), **ok)
    with pytest.raises(ValueError, match="eta"):
        run_chains(w, task, **{**ok, "eta": -1.0})
    with pytest.raises(ValueError, match=r"\(C, 5\)"):
        run_chains(torch.zeros(2, 4, dtype=F64), task, **ok)
    with pytest.raises(ValueError, match="labels must be"):
        to_task(X, np.where(y > 0, 1.0, 0.0), 2)
    with pytest.raises(ValueError, match="0..2"):
        to_task(X, np.full(24, 3), 3)
    with pytest.raises(ValueError, match="float32"):
        resolve_dtype("float16")
    with pytest.raises(ValueError, match="'gpu'"):
        resolve_device("gpu")


def test_devices_and_dtypes():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_dtype("float32") is torch.float32 and resolve_dtype(torch.float64) is torch.float64
    # float32 is the default everywhere (issue 6 item 4): the library's as the CLI's
    X, y = random_problem(2)
    assert resolve_dtype() is torch.float32 and to_task(X, y, 2).dtype == torch.float32
    assert init_chains(C=2, d=3, num_classes=2, sigma=0.1, m=0.1, generator=generator_for(0)).dtype == torch.float32
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_to_task_precomputes_norms_one_hot_and_signed_rows():
    X, y = random_problem(3)
    task = to_task(X, y, 3, dtype="float32")
    assert isinstance(task, Task) and (task.n, task.d, task.k) == (24, 5, 3) and task.dtype == torch.float32
    np.testing.assert_allclose(task.norms.numpy(), np.linalg.norm(X, axis=1), rtol=1e-6)
    assert torch.equal(task.targets.argmax(1), torch.as_tensor(y)) and torch.equal(task.targets.sum(1), torch.ones(24))
    Xb, yb = random_problem(2)
    tb = to_task(Xb, yb, 2, dtype="float64")
    np.testing.assert_array_equal(tb.data.numpy(), -yb[:, None] * Xb)
    assert tb.targets is None


# ----------------------------------------------------------------------------- evaluation and seeds
def test_accuracy_matches_numpy():
    rng = np.random.default_rng(8)
    X = rng.standard_normal((50, 6))
    w = torch.as_tensor(rng.standard_normal((4, 6)))
    y = rng.choice([-1.0, 1.0], 50)
    want = ((X @ w.numpy().T > 0) == (y > 0)[:, None]).mean(axis=0)
    np.testing.assert_allclose(accuracy(w, X, y).numpy(), want)
    np.testing.assert_allclose(accuracy(w, X, (y > 0).astype(float)).numpy(), want)  # {1, 0} test labels
    W = torch.as_tensor(rng.standard_normal((4, 6, 3)))
    yk = rng.integers(0, 3, 50)
    want_k = (np.einsum("nd,cdk->cnk", X, W.numpy()).argmax(axis=2) == yk).mean(axis=1)
    np.testing.assert_allclose(accuracy(W, torch.as_tensor(X), torch.as_tensor(yk)).numpy(), want_k)
    assert 0 < want_k.min() and want_k.max() < 1


def test_generator_for_is_reproducible_and_key_sensitive():
    def draw(*args, **kw):
        return torch.randn(5, generator=generator_for(*args, **kw))

    assert torch.equal(draw(0, "learn", 0.1), draw(0, "learn", 0.1))
    assert torch.equal(draw(0, "learn", np.float64(0.1)), draw(0, "learn", 0.1))
    others = [draw(1, "learn", 0.1), draw(0, "unlearn", 0.1), draw(0, "learn", 0.2), draw(0, 0.1, "learn"),
              draw(0, "learn", "0.1"), draw(0)]
    for other in others:
        assert not torch.equal(other, draw(0, "learn", 0.1))
    with pytest.raises(ValueError, match="seed"):
        generator_for("0")


def test_make_perms_rows_are_distinct_permutations():
    p = make_perms(50, 30, generator=generator_for(9))
    assert p.shape == (50, 30) and p.dtype == torch.int64
    assert torch.equal(p.sort(dim=1).values, torch.arange(30).expand(50, 30))
    assert len({tuple(row) for row in p.tolist()}) == 50
    assert torch.equal(p, make_perms(50, 30, generator=generator_for(9)))


# ----------------------------------------------------------------------------- removal by replacement
@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("as_torch", [False, True])
def test_replace_rows_changes_exactly_the_given_rows(k, as_torch):
    X, y = random_problem(k, n=40, d=6)
    Xin, yin = (torch.as_tensor(X), torch.as_tensor(y)) if as_torch else (X, y)
    rows = [3, 17, 39]
    X2, y2 = replace_rows(Xin, yin, rows, num_classes=k, generator=generator_for(10))
    assert type(X2) is type(Xin) and X2.shape == X.shape and y2.shape == y.shape
    X2, y2 = np.asarray(X2), np.asarray(y2)
    changed = np.flatnonzero((X2 != X).any(axis=1))
    np.testing.assert_array_equal(changed, rows)
    keep = np.setdiff1d(np.arange(40), rows)
    np.testing.assert_array_equal(y2[keep], y[keep])
    np.testing.assert_allclose(np.linalg.norm(X2[rows], axis=1), 1.0, rtol=1e-12)
    assert set(y2[rows]) <= ({-1.0, 1.0} if k == 2 else set(range(k)))
    assert np.array_equal(X, np.asarray(Xin))  # the input is not modified


@pytest.mark.parametrize("k", [2, 5])
def test_replacement_labels_are_uniform(k):
    X, y = np.zeros((4000, 2)), (np.ones(4000) if k == 2 else np.zeros(4000, dtype=np.int64))
    _, y2 = replace_rows(X, y, np.arange(4000), num_classes=k, generator=generator_for(11))
    values = [-1.0, 1.0] if k == 2 else range(k)
    for v in values:
        share = np.mean(y2 == v)
        assert abs(share - 1 / k) < 5 * math.sqrt((1 / k) * (1 - 1 / k) / 4000)


def test_choose_rows_excludes_replaced_rows_and_supports_last():
    g = generator_for(12)
    exclude = [0, 5, 9, 99]
    for _ in range(20):
        rows = choose_rows(100, 10, generator=g, exclude=exclude)
        assert len(set(rows.tolist())) == 10 and not set(rows.tolist()) & set(exclude)
    np.testing.assert_array_equal(choose_rows(100, 3, exclude=exclude, mode="last"), [96, 97, 98])
    np.testing.assert_array_equal(choose_rows(10, 10, generator=g), np.arange(10))
    with pytest.raises(ValueError, match="S=7"):
        choose_rows(10, 7, generator=g, exclude=range(4))
    with pytest.raises(ValueError, match="'first'"):
        choose_rows(10, 1, generator=g, mode="first")


@pytest.mark.parametrize("mode", ["random", "last"])
def test_removal_stream_keeps_earlier_replacements_fixed(mode):
    X, y = random_problem(2, n=60, d=4)
    sizes = [5, 1, 10]
    stream = list(removal_stream(X, y, sizes, num_classes=2, generator=generator_for(13), mode=mode))
    previous, seen = X, set()
    for S, req in zip(sizes, stream):
        differ = np.flatnonzero((req.X != previous).any(axis=1))
        np.testing.assert_array_equal(differ, req.rows)  # consecutive datasets differ in exactly S rows
        assert len(req.rows) == S and not seen & set(req.rows.tolist())
        seen |= set(req.rows.tolist())
        np.testing.assert_array_equal(req.replaced, sorted(seen))
        previous = req.X
    if mode == "last":
        np.testing.assert_array_equal(stream[-1].replaced, np.arange(44, 60))
    # the same draws as calling choose_rows then replace_rows request by request
    g, Xc, yc, done = generator_for(13), X, y, []
    for S, req in zip(sizes, stream):
        rows = choose_rows(60, S, generator=g, exclude=done, mode=mode)
        Xc, yc = replace_rows(Xc, yc, rows, num_classes=2, generator=g)
        done += rows.tolist()
        np.testing.assert_array_equal(Xc, req.X)
        np.testing.assert_array_equal(yc, req.y)


def test_small_updates_run_on_one_thread_and_restore_the_thread_count(monkeypatch):
    X = torch.nn.functional.normalize(torch.randn(60, 5, generator=torch.Generator().manual_seed(1),
                                                  dtype=torch.float64), dim=1)
    y = torch.where(torch.arange(60) % 2 == 0, 1.0, -1.0).to(torch.float64)
    task = engine.to_task(X, y, 2, dtype="float64")
    seen = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda k: (seen.append(k), real(k)))
    before = torch.get_num_threads()
    w0 = torch.zeros(4, 5, dtype=torch.float64)
    run = lambda: engine.run_chains(w0, task, steps=30, eta=1.0, sigma=0.1, m=0.1, M=0.3,
                                    generator=engine.generator_for(0, "t"))
    small = run()
    assert torch.get_num_threads() == before
    assert seen == ([1, before] if before > 1 else [])
    monkeypatch.setattr(engine, "SINGLE_THREAD_WORK", 0)  # the same update with the default thread count
    seen.clear()
    assert torch.allclose(run(), small, rtol=0, atol=1e-12) and seen == []
