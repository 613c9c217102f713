"""Engine step time against its two matrix products, and peak memory (issue 6 items 1 and 5).

For C in {1, 10, 100, 1000} chains, float32 and float64, full batch and b = 128, binary (Fashion-MNIST
3 vs 8, n = 12000, d = 784) and softmax (10 classes, the first 12000 rows of FASHION_MULTI): the time of
one engine update (noise included) next to the time of the two products that any implementation of
that update must do (docs/METHOD.md §2.5), measured interleaved in the same run. Full batch:
Z = X W^T, then Z^T X; mini-batch: the same two products as batched products over each chain's own
128 rows, gathered beforehand (the engine's gather is part of its step, not of the products), timed
over a few updates rather than whole epochs.

Target (issue 6): C = 100, full batch, float32, binary within 1.5x of its two products. Full batch also
shows the two products through torch.mm (MKL on x86): on AMD CPUs MKL runs AVX2 kernels where the
engine's oneDNN products use AVX-512, so the engine update can be faster than torch.mm's products.

    python bench/engine_step.py [--quick]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench import common  # noqa: E402
from utils import accountant, engine, models  # noqa: E402

CHAINS = (1, 10, 100, 1000)
BATCH = 128
LAM, SIGMA = 1e-6, 0.03
TARGET_RATIO = 1.5


def constants(n: int, num_classes: int):
    """The paper's constants for this n: eta = 1/L, m = lam n, M = 1 (binary) / 2 (softmax)."""
    return accountant.make_constants(n=n, lam=LAM, M=models.model_for(num_classes).default_M, num_classes=num_classes)


def intermediate_bytes(C: int, n: int, num_classes: int, itemsize: int) -> int:
    """The C x n (x k) per-step intermediates of a full-batch step (docs/METHOD.md §2.5)."""
    return C * n * models.model_for(num_classes).width * itemsize


def chunk_count(C: int, n: int, num_classes: int, itemsize: int, limit: int | None = None) -> int:
    """How many chunks the engine splits C chains into under `limit` (engine.MAX_CHUNK_BYTES by default)."""
    return len(engine._chunks(C, intermediate_bytes(1, n, num_classes, itemsize), limit))


def products_full(task, C: int, backend: str = "engine"):
    """The two full-batch matrix products of one step in the engine's layout, Z = W X^T then Z X: as the
    engine does them ("engine": oneDNN's matmul where engine.MATMUL takes it) or through torch.mm ("torch.mm")."""
    linear = (engine._onednn_linear(task) if backend == "engine" else None) or engine._torch_linear
    X = task.data
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(C * task.width, task.d, generator=gen, dtype=task.dtype) * 0.01
    return lambda: linear(linear(W, X), X.t())


def products_batch(task, C: int, b: int):
    """The two mini-batch products of one update on pre-gathered (C, b, d) batches (one per chain)."""
    d = task.d
    gen = torch.Generator().manual_seed(0)
    rows = torch.randint(0, task.n, (C * b,), generator=gen)
    xb = task.X[rows].view(C, b, d)
    width = task.width
    W = torch.randn(C, width, d, generator=gen, dtype=task.dtype) * 0.01
    Z, G = torch.empty(C, width, b, dtype=task.dtype), torch.empty(C, width, d, dtype=task.dtype)
    return lambda: (torch.bmm(W, xb.transpose(1, 2), out=Z), torch.bmm(Z, xb, out=G))


def engine_call(task, C: int, consts):
    """`steps` full-batch updates of C chains through the public run_chains."""
    gen = engine.generator_for(0, "bench", C)
    w = engine.init_chains(C=C, d=task.d, num_classes=task.k, sigma=SIGMA, m=consts.m, generator=gen,
                           dtype=task.dtype)

    def call(steps=1):
        return engine.run_chains(w, task, steps=steps, eta=consts.eta, sigma=SIGMA, m=consts.m, M=consts.M,
                                 generator=gen)
    return call


def minibatch_updates(task, w, perms, *, batch: int, eta: float, sigma: float, m: float, M: float, generator,
                      updates: int = 1 << 20, noise_draw: str = "engine"):
    """run_chains' mini-batch loop, one update at a time: call(j0, count) runs updates j0..j0+count-1.

    An epoch of C = 1000 chains is n/b = 93 updates (tens of seconds), so the benchmark reaches into the
    engine's per-update step to time a few of them; tests check that a whole epoch of this loop equals
    run_chains. Returns (call, weights) with weights() the current (C, ...) weights. noise_draw: "engine"
    (run_chains' draw: merged calls, background threads as its policy allows) or "plain" (one block per call
    in the calling thread, as before issue 21's noise change): the same numbers either way.
    """
    if noise_draw not in ("engine", "plain"):
        raise ValueError(f"noise_draw must be 'engine' or 'plain', got {noise_draw!r}")
    C, n = w.shape[0], task.n
    state = w.detach().clone().contiguous()
    blocks = engine._perm_blocks(perms, C, n, batch, task.device)
    chains = engine._mini_batch_chains(state, task, blocks, eta=eta, m=m, M=M)
    std = math.sqrt(2.0 * eta) * sigma
    work = batch * task.d * C * task.width
    # each chain's own noise stream, as run_chains draws it for `updates` updates
    noise = None
    if std > 0:
        with engine._threads_for(task.device, work, engine.MINIBATCH_SINGLE_THREAD_WORK) as spare:
            threads = min(engine.NOISE_THREADS, spare) if noise_draw == "engine" else 0
        noise = engine.ChainNoise(generator, tuple(w.shape), updates, dtype=task.dtype, threads=threads,
                                  merge=noise_draw == "engine")

    def call(j0: int = 0, count: int = 1):
        with engine._threads_for(task.device, work, engine.MINIBATCH_SINGLE_THREAD_WORK):  # run_chains' policy
            for j in range(j0, j0 + count):
                engine._update(chains, j % (n // batch), noise, std, 0.0)

    call.noise = noise  # its draw: a benchmark times whole fills (noise.unit updates)
    return call, lambda: engine._assemble(chains)


def measure(task, C: int, batch: int | None, consts, *, budget: float) -> dict:
    """Seconds per update of the engine and of the two products (minimum over interleaved repeats)."""
    gen = engine.generator_for(0, "bench", C)
    if batch is None:
        run = engine_call(task, C, consts)
    else:
        w = engine.init_chains(C=C, d=task.d, num_classes=task.k, sigma=SIGMA, m=consts.m, generator=gen,
                               dtype=task.dtype)
        perms = engine.make_perms(C, task.n, generator=gen)
    with common.PeakMemory() as mem:  # the state, buffers and intermediates of a run (not its inputs)
        t = time.perf_counter()
        if batch is not None:
            call, _ = minibatch_updates(task, w, perms, batch=batch, eta=consts.eta, sigma=SIGMA, m=consts.m,
                                        M=consts.M, generator=gen)
            run = lambda steps=1: call(0, steps)  # noqa: E731
        run()  # warm-up, peak memory and a first estimate
        first = time.perf_counter() - t
    products = products_full(task, C) if batch is None else products_batch(task, C, batch)
    products()
    calls = {"engine": lambda: run(steps), "products": lambda: [products() for _ in range(steps)]}
    # the same products through torch.mm (MKL here), for reference; timed apart only when the engine's differ
    if batch is None and engine._onednn_linear(task) is not None:
        mm = products_full(task, C, "torch.mm")
        mm()
        calls["torch.mm"] = lambda: [mm() for _ in range(steps)]
    # Quick updates go several per call, so the per-call setup counts about as in a run.
    steps = 1 if first > 0.05 else (3 if first > 0.005 else 10)
    # calls of seconds (C = 1000 softmax) get one more timed call each; the warm-up then counts too
    slow = first > 2.0
    reps = 1 if slow else common.repeats_for(first * steps, budget=budget)
    times = common.interleaved(calls, repeats=reps)
    engine_times = times["engine"] + ([first] if slow else [])
    products_time = min(times["products"]) / steps
    mm_time = min(times["torch.mm"]) / steps if "torch.mm" in times else (products_time if batch is None else None)
    return {"engine": min(engine_times) / steps, "products": products_time, "torch.mm": mm_time,
            "peak": mem.peak_bytes, "exact": mem.exact, "repeats": reps}


def flops_per_update(C: int, n: int, d: int, k: int, batch: int | None) -> float:
    """2 products x 2 flops per multiply-add x rows x d x C (x k)."""
    rows = n if batch is None else batch
    return 4.0 * rows * d * C * models.model_for(k).width


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="C in {1, 10, 100} only (a quick look)")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of timed calls per setting")
    args = parser.parse_args(argv)
    if args.budget <= 0:
        parser.error(f"--budget must be > 0 seconds, got {args.budget}")
    chains = CHAINS[:3] if args.quick else CHAINS
    report = common.Report("engine_step: one engine update vs its two matrix products")
    report.line(f"Per update: the engine's step (noise included) and its two products alone, done as the engine "
                f"does them (full batch, float32, CPU: oneDNN's matmul when engine.MATMUL = 'auto' finds it; "
                f"here: {'yes' if engine._onednn_linear_op() is not None else 'no'}), and the same two products "
                f"through torch.mm for reference; minimum over interleaved repeats. "
                f"Chunk limit engine.MAX_CHUNK_BYTES = {common.fmt_bytes(engine.MAX_CHUNK_BYTES)}. "
                f"Peak = resident memory above the level before the call (kernel high-water mark).")
    report.line()
    rows, headline = [], None
    for kind in ("binary", "multiclass"):
        problem = common.load_problem(kind)
        report.line(f"{kind}: {problem.source}")
        for dtype in ("float32", "float64"):
            for batch in (None, BATCH):
                data = problem if batch is None else common.truncate_to_batches(problem, batch)
                task = engine.to_task(data.X, data.y, data.num_classes, dtype=dtype)
                consts = constants(task.n, task.k)
                for C in chains:
                    r = measure(task, C, batch, consts, budget=args.budget)
                    rel = common.ratio(r["engine"], r["products"])
                    gflops = flops_per_update(C, task.n, task.d, task.k, batch) / r["products"] / 1e9
                    itemsize = task.X.element_size()
                    model = intermediate_bytes(C, task.n, task.k, itemsize) if batch is None else None
                    rows.append([kind, dtype, "full" if batch is None else f"b={batch}", str(C),
                                 common.fmt_time(r["engine"]), common.fmt_time(r["products"]), f"{rel:.2f}",
                                 "-" if r["torch.mm"] is None else common.fmt_time(r["torch.mm"]),
                                 f"{C / r['engine']:.0f}", f"{gflops:.0f}",
                                 common.fmt_bytes(r["peak"]) + ("" if r["exact"] else " (growth)"),
                                 "-" if model is None else common.fmt_bytes(model),
                                 "-" if model is None else str(chunk_count(C, task.n, task.k, itemsize))])
                    print("  " + " | ".join(rows[-1]), flush=True)
                    if kind == "binary" and dtype == "float32" and batch is None and C == 100:
                        headline = (r, rel)
        del problem
    report.line()
    report.table(["model", "dtype", "batch", "C", "engine update", "2 products", "ratio", "torch.mm products",
                  "chain-steps/s",
                  "products GFLOP/s", "peak memory", "C x n x k x itemsize", "chunks"], rows)
    if headline is not None:
        r, rel = headline
        verdict = "MET" if rel <= TARGET_RATIO else "NOT MET"
        report.line(f"Target: C = 100, full batch, float32, binary: engine {common.fmt_time(r['engine'])} vs "
                    f"its two products {common.fmt_time(r['products'])}: ratio {rel:.2f} "
                    f"(target <= {TARGET_RATIO}): {verdict}. The same products through torch.mm: "
                    f"{common.fmt_time(r['torch.mm'])} (engine update / torch.mm products "
                    f"{common.ratio(r['engine'], r['torch.mm']):.2f}).")
    report.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
