"""The benchmarks' own pieces: the naive reference step equals the engine step, peak memory sees an
allocation, RESULTS.md sections are appended. No timings are asserted."""
import math

import numpy as np
import pytest
import torch

from bench import common
from bench import naive_vs_engine as nv
from utils import engine


def _problem(n, d, k, seed=0):
    return common.random_problem(n, d, k, seed=seed, n_test=10)


def _run_both(p, *, M, steps=2, C=3, batch_size=None, R=0.0, sigma=0.05, eta=0.9, m=0.05):
    task = engine.to_task(p.X, p.y, p.num_classes, dtype="float64")
    gen = engine.generator_for(3, "init")
    w0 = engine.init_chains(C=C, d=task.d, num_classes=task.k, sigma=sigma, m=m, generator=gen, dtype="float64")
    perms = None if batch_size is None else engine.make_perms(C, task.n, generator=gen)
    kw = dict(steps=steps, eta=eta, sigma=sigma, m=m, M=M, R=R, batch_size=batch_size, perms=perms)
    a = engine.run_chains(w0, task, generator=engine.generator_for(3, "noise"), **kw)
    b = nv.naive_run(w0, task.X, task.y, generator=engine.generator_for(3, "noise"), **kw)
    return a, b, w0


@pytest.mark.parametrize("k,M,batch_size,R", [(2, 0.2, None, 0.0), (2, 0.2, 8, 0.0), (2, 10.0, None, 0.5),
                                              (4, 2.0, None, 0.0), (4, 2.0, 8, 0.0)])
def test_naive_reference_equals_engine(k, M, batch_size, R):
    a, b, w0 = _run_both(_problem(40, 7, k), M=M, batch_size=batch_size, R=R)
    assert nv.relative_difference(a, b) < 1e-12
    assert nv.relative_difference(a, w0) > 1e-3  # the chains moved: the comparison is not vacuous


def test_naive_reference_differs_when_the_clip_differs():
    p = _problem(40, 7, 2)
    task = engine.to_task(p.X, p.y, 2, dtype="float64")
    w0 = torch.zeros(2, 7, dtype=torch.float64)
    kw = dict(steps=1, eta=1.0, sigma=0.0, m=0.1)
    a = engine.run_chains(w0, task, M=0.2, generator=engine.generator_for(0, "x"), **kw)
    b = nv.naive_run(w0, task.X, task.y, M=0.3, generator=engine.generator_for(0, "x"), **kw)
    assert nv.relative_difference(a, b) > 0.1


def test_per_sample_gradients_match_autograd():
    p = _problem(5, 6, 2)
    X, y = torch.as_tensor(p.X), torch.as_tensor(p.y)
    w = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    G = nv.per_sample_gradients_logistic(w, X, y)
    for i in range(5):
        v = w.clone().requires_grad_(True)
        torch.log1p(torch.exp(-y[i] * (X[i] @ v))).backward()
        torch.testing.assert_close(G[i], v.grad, rtol=1e-12, atol=1e-14)
    q = _problem(5, 6, 3)
    X, y = torch.as_tensor(q.X), torch.as_tensor(q.y)
    W = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    G = nv.per_sample_gradients_softmax(W, X, y)
    for i in range(5):
        V = W.clone().requires_grad_(True)
        torch.nn.functional.cross_entropy((X[i] @ V)[None], y[i:i + 1]).backward()
        torch.testing.assert_close(G[i], V.grad, rtol=1e-12, atol=1e-14)


def test_clip_rows_scales_only_long_rows():
    G = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]], dtype=torch.float64)
    out = nv.clip_rows(G, 1.0)
    torch.testing.assert_close(out, torch.tensor([[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]], dtype=torch.float64))


def test_random_problem_has_unit_rows_and_valid_labels():
    p = _problem(200, 9, 2)
    np.testing.assert_allclose(np.linalg.norm(p.X, axis=1), 1.0, rtol=1e-12)
    assert set(np.unique(p.y)) == {-1.0, 1.0}
    q = _problem(300, 9, 5)
    assert q.y.dtype == np.int64 and q.y.min() >= 0 and q.y.max() <= 4


def test_truncate_to_batches_makes_n_divisible():
    p = common.truncate_to_batches(_problem(1000, 3, 2), 128)
    assert p.X.shape[0] == 896 and p.y.shape == (896,)


def test_peak_memory_sees_a_large_allocation():
    with common.PeakMemory() as mem:
        t = torch.ones(16 * 2 ** 20, dtype=torch.float32)  # 64 MiB, touched
        del t
    if not mem.exact:
        pytest.skip("no resettable high-water mark (/proc/self/clear_refs) on this system")
    assert 60 * 2 ** 20 <= mem.peak_bytes < 1 << 30


def test_interleaved_and_repeats():
    calls = []
    times = common.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3)
    assert calls == ["a", "b"] * 3 and all(len(v) == 3 for v in times.values())
    assert common.repeats_for(0.5, budget=2.0) == 4
    assert common.repeats_for(10.0, budget=2.0) == 2 and common.repeats_for(1e-6, budget=2.0) == 7


def test_report_appends_sections(tmp_path):
    path = tmp_path / "RESULTS.md"
    for title in ("first", "second"):
        r = common.Report(title)
        r.table(["a", "b"], [["1", "2"]])
        r.save(path)
    text = path.read_text()
    assert text.startswith("# Benchmark results") and text.count("# Benchmark results") == 1
    assert text.index("## first") < text.index("## second") and text.count("| 1 | 2 |") == 2
    assert "torch " + torch.__version__ in text


@pytest.mark.parametrize("k,M", [(2, 0.2), (3, 2.0), (2, 10.0)])
def test_minibatch_update_loop_equals_run_chains(k, M):
    from bench import engine_step as es

    p = _problem(48, 5, k, seed=4)
    task = engine.to_task(p.X, p.y, k, dtype="float64")
    gen = engine.generator_for(5, "init")
    w0 = engine.init_chains(C=3, d=5, num_classes=k, sigma=0.1, m=0.1, generator=gen, dtype="float64")
    perms = engine.make_perms(3, 48, generator=gen)
    kw = dict(eta=0.8, sigma=0.1, m=0.1, M=M)
    expected = engine.run_chains(w0, task, steps=2, batch_size=8, perms=perms,
                                 generator=engine.generator_for(5, "noise"), **kw)
    call, weights = es.minibatch_updates(task, w0, perms, batch=8, generator=engine.generator_for(5, "noise"),
                                         updates=12, **kw)
    call(0, 4)
    call(4, 8)  # wraps around into the second epoch
    torch.testing.assert_close(weights(), expected, rtol=0, atol=1e-13)
    assert nv.relative_difference(weights(), w0) > 1e-3


def test_minibatch_loop_refuses_rows_that_are_not_permutations():
    """The O(C n) permutation check the mini-batch loop relies on (engine._perm_blocks)."""
    from bench import engine_step as es

    p = _problem(24, 3, 2)
    task = engine.to_task(p.X, p.y, 2, dtype="float64")
    w = torch.zeros(2, 3, dtype=torch.float64)
    good = engine.make_perms(2, 24, generator=engine.generator_for(0, "p"))
    duplicate = good.clone()
    duplicate[1, 3] = duplicate[1, 4]
    for bad in (duplicate, torch.full((2, 24), 24), good - 1):
        with pytest.raises(ValueError, match="permutation"):
            es.minibatch_updates(task, w, bad, batch=6, eta=0.5, sigma=0.0, m=0.1, M=1.0,
                                 generator=engine.generator_for(0))
    es.minibatch_updates(task, w, good, batch=6, eta=0.5, sigma=0.0, m=0.1, M=1.0, generator=engine.generator_for(0))


def test_engine_step_memory_model():
    from bench import engine_step as es

    assert es.intermediate_bytes(100, 12000, 2, 4) == 4_800_000
    assert es.intermediate_bytes(1000, 12000, 10, 8) == 960_000_000
    per_chain = 12000 * 10 * 8
    assert es.chunk_count(1000, 12000, 10, 8) == math.ceil(1000 / (engine.MAX_CHUNK_BYTES // per_chain))
    assert es.flops_per_update(100, 12000, 784, 2, None) == 4.0 * 12000 * 784 * 100


@pytest.mark.parametrize("k", [2, 4])
def test_timed_products_are_the_engines_products(k):
    # what bench/engine_step.py times as "the two products": (W X^T) X in the engine's layout, through
    # oneDNN and through torch.mm; both must compute that product (W drawn as products_full draws it)
    from bench import engine_step as es
    p = _problem(50, 6, k)
    task = engine.to_task(p.X, p.y, k, dtype="float32")
    C, width = 3, (1 if k == 2 else k)
    X = task.data.double()   # binary: the rows -y_i x_i the engine multiplies with
    W = torch.randn(C * width, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float32).double() * 0.01
    want = (W @ X.t()) @ X
    for backend in ("engine", "torch.mm"):
        got = es.products_full(task, C, backend)()
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-9)
