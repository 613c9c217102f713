"""The engine against a naive implementation of the reference algorithm (issue 6 item 1, second point).

The naive sampler does what the reference code does: one chain at a time, the per-sample gradient
tensor (n x d, or n x d x k for softmax) materialised, each row clipped explicitly, then averaged. It
takes the project's update (docs/METHOD.md §2.1: the regulariser added after clipping) and draws its
noise from the generator exactly as the engine does (one (C, ...) draw per update), so the two must
agree to rounding. The speed-up is the ratio of chain-steps per second measured in the same run.

Target (issue 6): at least 100x the naive implementation's chain-steps per second.

    python bench/naive_vs_engine.py
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench import common, engine_step  # noqa: E402
from utils import accountant, engine  # noqa: E402

TARGET_SPEEDUP = 100.0
LAM, SIGMA = 1e-6, 0.03


# ---------------------------------------------------------------- the naive reference (one chain)
def clip_rows(G: torch.Tensor, M: float) -> torch.Tensor:
    """clip_M per sample: each row g_i (flattened) scaled by min(1, M / ||g_i||) (docs/METHOD.md §2.1)."""
    norms = torch.linalg.vector_norm(G.reshape(G.shape[0], -1), dim=1)
    scale = torch.clamp(M / norms, max=1.0)  # ||g_i|| = 0 gives inf -> 1
    return G * scale.view(-1, *([1] * (G.ndim - 1)))


def per_sample_gradients_logistic(w: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(b, d): grad log(1 + exp(-y_i x_i.w)) = x_i (sigmoid(y_i x_i.w) - 1) y_i (docs/METHOD.md §1.2)."""
    s = (torch.sigmoid(y * (X @ w)) - 1.0) * y
    return X * s[:, None]


def per_sample_gradients_softmax(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(b, d, k): grad of the softmax cross-entropy = x_i (softmax(W^T x_i) - e_{y_i})^T (docs/METHOD.md §1.2)."""
    P = torch.softmax(X @ W, dim=1)
    P[torch.arange(X.shape[0]), y] -= 1.0
    return X[:, :, None] * P[:, None, :]


def naive_update(w, X, y, *, eta, m, M, noise, std, R=0.0):
    """One PNGD/PNSGD update of one chain on the rows (X, y): the reference algorithm, loss clipped, then
    the regulariser m w added (docs/METHOD.md §2.1), noise std * noise, then Proj_R when R > 0."""
    grads = per_sample_gradients_logistic(w, X, y) if w.ndim == 1 else per_sample_gradients_softmax(w, X, y)
    g = clip_rows(grads, M).mean(dim=0) + m * w
    w = w - eta * g + std * noise
    if R > 0:
        norm = torch.linalg.vector_norm(w)
        if norm > R:
            w = w * (R / norm)
    return w


def naive_run(w, X, y, *, steps, eta, sigma, m, M, R=0.0, batch_size=None, perms=None, generator):
    """`steps` full-batch updates (or epochs of cyclic mini-batches over perms), one chain at a time.

    Noise: the engine's per-chain streams (engine.ChainNoise), row c for chain c.
    """
    w = w.clone()
    C, n = w.shape[0], X.shape[0]
    b = n if batch_size is None else batch_size
    std = math.sqrt(2.0 * eta) * sigma
    stream = engine.ChainNoise(generator, tuple(w.shape), steps * (n // b), dtype=w.dtype) if std > 0 else None
    for _ in range(steps):
        for j in range(n // b):
            noise = stream.next().clone() if stream is not None else torch.zeros_like(w)
            for c in range(C):
                rows = slice(None) if b == n else perms[c, j * b:(j + 1) * b]
                w[c] = naive_update(w[c], X[rows], y[rows], eta=eta, m=m, M=M, noise=noise[c], std=std, R=R)
    return w


# ---------------------------------------------------------------- the comparison
def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """max over chains of ||a_c - b_c|| / ||b_c||."""
    diff = torch.linalg.vector_norm((a - b).reshape(a.shape[0], -1), dim=1)
    return float((diff / torch.linalg.vector_norm(b.reshape(b.shape[0], -1), dim=1)).max())


def agreement(problem, *, dtype, M, C=4, steps=2, batch_size=None) -> tuple[float, float]:
    """(relative weight difference, fraction of clipped gradients) engine vs naive, same seed."""
    task = engine.to_task(problem.X, problem.y, problem.num_classes, dtype=dtype)
    consts = accountant.make_constants(n=task.n, lam=LAM, M=M, num_classes=task.k)
    gen = engine.generator_for(1, "agree")
    w0 = engine.init_chains(C=C, d=task.d, num_classes=task.k, sigma=SIGMA, m=consts.m, generator=gen, dtype=dtype)
    perms = None if batch_size is None else engine.make_perms(C, task.n, generator=gen)
    kw = dict(steps=steps, eta=consts.eta, sigma=SIGMA, m=consts.m, M=M, batch_size=batch_size, perms=perms)
    w_engine = engine.run_chains(w0, task, generator=engine.generator_for(1, "noise"), **kw)
    y = task.y
    w_naive = naive_run(w0, task.X, y, generator=engine.generator_for(1, "noise"), **kw)
    first = (per_sample_gradients_logistic(w0[0], task.X, y) if task.width == 1
             else per_sample_gradients_softmax(w0[0], task.X, y))
    clipped = float((torch.linalg.vector_norm(first.reshape(task.n, -1), dim=1) > M).double().mean())
    return relative_difference(w_engine, w_naive), clipped


def speed(problem, *, dtype, C, batch_size=None, budget=2.0, matmul="auto") -> dict:
    """Chain-steps per second of the naive loop (one chain) and of the engine (C chains), interleaved.

    matmul: engine.MATMUL during the run ("torch" shows what the batching alone gives, without oneDNN).
    """
    before = engine.MATMUL
    engine.MATMUL = matmul
    try:
        return _speed(problem, dtype=dtype, C=C, batch_size=batch_size, budget=budget)
    finally:
        engine.MATMUL = before


def _speed(problem, *, dtype, C, batch_size, budget) -> dict:
    task = engine.to_task(problem.X, problem.y, problem.num_classes, dtype=dtype)
    consts = engine_step.constants(task.n, task.k)  # M = 1 binary, 2 softmax
    gen = engine.generator_for(2, "speed")
    w = engine.init_chains(C=C, d=task.d, num_classes=task.k, sigma=SIGMA, m=consts.m, generator=gen, dtype=dtype)
    kw = dict(eta=consts.eta, sigma=SIGMA, m=consts.m, M=consts.M)
    if batch_size is None:
        naive_calls, naive_steps = (lambda: naive_run(w[:1], task.X, task.y, steps=1, generator=gen, **kw)), 1
        # 5 steps per call: a run makes thousands per call, so the per-call setup should not dominate
        eng, eng_steps = (lambda: engine.run_chains(w, task, steps=5, generator=gen, **kw)), 5 * C
    else:
        perms = engine.make_perms(C, task.n, generator=gen)
        b = batch_size
        # naive: one chain, 20 of its mini-batch updates (each on its own rows, as in an epoch)
        Xs, ys = task.X, task.y

        def naive_calls():
            v = w[0].clone()
            for j in range(20):
                rows = perms[0, j * b:(j + 1) * b]
                v = naive_update(v, Xs[rows], ys[rows], noise=torch.randn(v.shape, generator=gen, dtype=v.dtype),
                                 std=math.sqrt(2 * consts.eta) * SIGMA, **{k: kw[k] for k in ("eta", "m", "M")})
            return v
        naive_steps = 20
        eng = lambda: engine.run_chains(w, task, steps=1, batch_size=b, perms=perms, generator=gen, **kw)  # noqa: E731
        eng_steps = C * (task.n // b)
    t_naive = common.interleaved({"naive": naive_calls}, repeats=1)["naive"][0]
    t_eng = common.interleaved({"engine": eng}, repeats=1)["engine"][0]
    reps = common.repeats_for(t_naive + t_eng, budget=budget, lo=2, hi=5)
    times = common.interleaved({"naive": naive_calls, "engine": eng}, repeats=reps)
    naive_rate = naive_steps / min(times["naive"])
    engine_rate = eng_steps / min(times["engine"])
    return {"naive": naive_rate, "engine": engine_rate, "speedup": engine_rate / naive_rate, "n": task.n}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of timed calls per setting")
    args = parser.parse_args(argv)
    if args.budget <= 0:
        parser.error(f"--budget must be > 0 seconds, got {args.budget}")
    report = common.Report("naive_vs_engine: the reference algorithm one chain at a time vs the engine")
    binary, multi = common.load_problem("binary"), common.load_problem("multiclass")
    report.line(f"binary: {binary.source}; multiclass: {multi.source}")
    report.line()

    report.line("Agreement (same initial chains, same noise stream; max over chains of ||w_engine - w_naive|| / "
                "||w_naive||). Binary: M below the gradient norms so that clipping fires; softmax: M = 2, as "
                "softmax clipping that can fire is refused (docs/METHOD.md §6.3):")
    rows = []
    small_b = common.truncate_to_batches(binary, 128)
    for label, prob, M, kw in (("binary, full batch", binary, 0.3, {}),
                               ("binary, b = 128, 1 epoch", small_b, 0.3, {"batch_size": 128, "steps": 1}),
                               ("softmax, full batch", multi, 2.0, {})):
        for dtype in ("float64", "float32"):
            diff, clipped = agreement(prob, dtype=dtype, M=M, **kw)
            rows.append([label, dtype, f"{M:g}", f"{clipped:.0%}", f"{diff:.1e}"])
            print("  " + " | ".join(rows[-1]), flush=True)
    report.table(["setting", "dtype", "M", "clipped at step 1", "relative difference"], rows)

    report.line("Speed (chain-steps per second; naive = one chain at a time; engine = C chains, 5 full-batch "
                "steps or one epoch per call; minimum over interleaved repeats; M = 1 binary, 2 softmax):")
    rows, headline = [], None
    for label, prob, dtype, C, b, mm in (("binary, full batch", binary, "float32", 100, None, "auto"),
                                         ("binary, full batch, engine.MATMUL = 'torch'", binary, "float32", 100,
                                          None, "torch"),
                                         ("binary, full batch", binary, "float32", 1000, None, "auto"),
                                         ("binary, full batch", binary, "float64", 100, None, "auto"),
                                         ("binary, b = 128", small_b, "float32", 100, 128, "auto"),
                                         ("softmax, full batch", multi, "float32", 100, None, "auto")):
        r = speed(prob, dtype=dtype, C=C, batch_size=b, budget=args.budget, matmul=mm)
        rows.append([label, dtype, str(C), f"{r['naive']:.1f}", f"{r['engine']:.0f}", f"{r['speedup']:.0f}x"])
        print("  " + " | ".join(rows[-1]), flush=True)
        if b is None and C == 100 and dtype == "float32" and prob is binary and mm == "auto":
            headline = r
    report.table(["setting", "dtype", "engine C", "naive chain-steps/s", "engine chain-steps/s", "speed-up"], rows)
    report.line("The engine's full-batch float32 products go through oneDNN's matmul on CPU (engine.MATMUL = 'auto'); "
                "the 'torch' row runs them through torch.mm (MKL here, AVX2 kernels on AMD) for comparison.")
    if headline is not None:
        verdict = "MET" if headline["speedup"] >= TARGET_SPEEDUP else "NOT MET"
        report.line(f"Target: binary, full batch, float32, 100 chains: speed-up {headline['speedup']:.0f}x "
                    f"(target >= {TARGET_SPEEDUP:.0f}x): {verdict}")
    report.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
