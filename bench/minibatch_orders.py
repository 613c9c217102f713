"""Mini-batch update time with per-chain, grouped (G = 10) and shared batch orders (issue 21 item 3).

For C chains, batch size b, binary (Fashion-MNIST 3 vs 8, n = 12000, d = 784) and softmax (10 classes,
the first 12000 rows of FASHION_MULTI), float32: the time of one engine update (gather, products,
sigmoid or softmax, clipping, the noise draw and add) with
  per_chain  one batch order per chain (main_sgd.py's default): C gathers of b rows, C matrix-vector products;
  G = 10     one order per group of 10 chains: C/10 gathers, batched (10, d) x (d, b) products;
  shared     one order for all chains: one gather, two (C, d) x (d, b) matrix products,
measured interleaved in the same run, as ratios against the per-chain update and against the two matrix
products of a shared update alone (on a pre-gathered batch, done as the engine does them): no
implementation of the update can beat those products. The noise draw alone is shown too: it is the
same for every order.

Target (issue 21): b = 128, C = 100, shared orders >= 10x faster than per_chain in the same run.

    python bench/minibatch_orders.py            # C in {10, 100}, b in {32, 128, 512}: about a minute
    python bench/minibatch_orders.py --full     # C in {10, 100, 1000} (per-chain softmax C = 1000 is slow)
    python bench/minibatch_orders.py --threads 1 --clock cpu   # on a machine shared with other jobs
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench import common  # noqa: E402
from bench.engine_step import constants, minibatch_updates  # noqa: E402
from utils import engine  # noqa: E402

CHAINS_QUICK, CHAINS_FULL = (10, 100), (10, 100, 1000)
BATCHES = (32, 128, 512)
ORDERS = {"per_chain": 1, "G=10": 10, "shared": None}  # chains per order (None: all)
SIGMA = 0.03
TARGET = (128, 100, 10.0)  # (b, C, shared at least this many times faster than per_chain)


def orders_for(name: str, C: int, n: int, generator) -> torch.Tensor:
    group = C if ORDERS[name] is None else min(ORDERS[name], C)
    return engine.share_orders(engine.make_perms(-(-C // group), n, generator=generator), C, group)


def shared_products(task, C: int, b: int):
    """The two products of a shared-order update on a pre-gathered (b, d) batch, as the engine does them."""
    linear = (engine._onednn_linear(task) if engine.MINIBATCH_ONEDNN else None) or engine._torch_linear
    gen = torch.Generator().manual_seed(0)
    data = task.data
    xb = data[torch.randperm(task.n, generator=gen)[:b]].contiguous()
    W = torch.randn(C * task.width, task.d, generator=gen, dtype=task.dtype) * 0.01
    work = b * task.d * C * task.width

    def call():
        with engine._threads_for(task.device, work, engine.MINIBATCH_SINGLE_THREAD_WORK):  # as the update
            return linear(linear(W, xb), xb.t())
    return call


def measure(task, C: int, b: int, consts, *, budget: float, clock=time.perf_counter) -> dict:
    """Seconds per update for each order, the shared products and the noise draw (min over interleaved repeats)."""
    gen = engine.generator_for(0, "bench", C, b)
    w = engine.init_chains(C=C, d=task.d, num_classes=task.k, sigma=SIGMA, m=consts.m, generator=gen,
                           dtype=task.dtype)
    calls, first = {}, {}
    for name in ORDERS:
        call, _ = minibatch_updates(task, w, orders_for(name, C, task.n, gen), batch=b, eta=consts.eta, sigma=SIGMA,
                                    m=consts.m, M=consts.M, generator=engine.generator_for(0, "noise"))
        t = time.perf_counter()
        call(0, 1)  # warm-up and a first estimate
        first[name] = time.perf_counter() - t
        calls[name] = call
    products = shared_products(task, C, b)
    noise = torch.empty(w.shape, dtype=task.dtype)
    noise_gen = engine.generator_for(0, "noise-alone")
    # quick updates go several per timed call, so that per-call overheads count about as in a run
    count = {name: max(1, min(50, int(0.02 / max(s, 1e-6)))) for name, s in first.items()}
    fns = {name: (lambda c=calls[name], k=count[name]: c(0, k)) for name in ORDERS}
    k_shared = count["shared"]
    fns["products"] = lambda: [products() for _ in range(k_shared)]
    fns["noise"] = lambda: [torch.randn(noise.shape, generator=noise_gen, out=noise) for _ in range(k_shared)]
    count.update(products=k_shared, noise=k_shared)
    per_round = 1.2 * sum(first[name] * count[name] for name in ORDERS)
    reps = common.repeats_for(per_round, budget=budget, lo=2, hi=5)
    times = common.interleaved(fns, repeats=reps, clock=clock)
    out = {name: min(v) / count[name] for name, v in times.items()}
    out["repeats"] = reps
    return out


def step_ratio(r: dict) -> float:
    """per_chain / shared with the noise draw (the same work for every order) taken out of both."""
    return common.ratio(r["per_chain"] - r["noise"], r["shared"] - r["noise"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="C in {10, 100, 1000} (default C in {10, 100})")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of timed calls per setting (default 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default torch's own); 1 gives steadier figures on a machine shared "
                             "with other jobs, where waiting OpenMP threads dominate")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall (default) or cpu: this process's CPU time, the work done, which a machine "
                             "shared with other jobs does not inflate (meaningful with --threads 1)")
    args = parser.parse_args(argv)
    if args.budget <= 0:
        parser.error(f"--budget must be > 0 seconds, got {args.budget}")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be an integer >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    chains = CHAINS_FULL if args.full else CHAINS_QUICK
    report = common.Report("minibatch_orders: per-chain vs grouped vs shared batch orders")
    report.line(f"Per update, float32, CPU, {torch.get_num_threads()} threads (run_chains' policy: one thread below "
                f"{engine.MINIBATCH_SINGLE_THREAD_WORK:.0e} multiply-adds, products alike): the engine's update "
                f"(noise included) with one order per chain, per group of 10 chains, and one shared order; "
                f"'products' = the two matrix products of a shared update alone on a pre-gathered batch (oneDNN "
                f"on CPU float32 when engine.MINIBATCH_ONEDNN finds it: "
                f"{'yes' if engine._onednn_linear_op() is not None else 'no'}); 'noise' = the update's noise "
                f"draw alone. Minimum over interleaved repeats of the "
                f"{'wall clock' if args.clock == 'wall' else 'CPU time of this process (--clock cpu)'}.")
    report.line()
    rows, headline = [], None
    for kind in ("binary", "multiclass"):
        problem = common.load_problem(kind)
        report.line(f"{kind}: {problem.source}")
        for b in BATCHES:
            data = common.truncate_to_batches(problem, b)
            task = engine.to_task(data.X, data.y, data.num_classes, dtype="float32")
            consts = constants(task.n, task.k)
            for C in chains:
                r = measure(task, C, b, consts, budget=args.budget, clock=clock)
                speedup = common.ratio(r["per_chain"], r["shared"])
                rows.append([kind, str(b), str(C), common.fmt_time(r["per_chain"]), common.fmt_time(r["G=10"]),
                             common.fmt_time(r["shared"]), f"{common.ratio(r['per_chain'], r['G=10']):.1f}",
                             f"{speedup:.1f}", common.fmt_time(r["products"]),
                             f"{common.ratio(r['shared'], r['products']):.2f}",
                             f"{common.ratio(r['per_chain'], r['products']):.1f}", common.fmt_time(r["noise"]),
                             f"{step_ratio(r):.1f}",
                             str(r["repeats"])])
                print("  " + " | ".join(rows[-1]), flush=True)
                if kind == "binary" and (b, C) == TARGET[:2]:
                    headline = r
        del problem
    report.line()
    report.table(["model", "b", "C", "per_chain", "G=10", "shared", "per_chain / G=10", "per_chain / shared",
                  "shared products", "shared / products", "per_chain / products", "noise draw",
                  "per_chain / shared without the noise draw", "repeats"], rows)
    if headline is not None:
        b, C, target = TARGET
        speedup = common.ratio(headline["per_chain"], headline["shared"])
        report.line(f"Target: binary, b = {b}, C = {C}: per_chain {common.fmt_time(headline['per_chain'])}, shared "
                    f"{common.fmt_time(headline['shared'])}: {speedup:.1f}x (target >= {target:g}x): "
                    f"{'MET' if speedup >= target else 'NOT MET'}; without the noise draw "
                    f"({common.fmt_time(headline['noise'])}, the same for every order) {step_ratio(headline):.1f}x.")
    report.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
