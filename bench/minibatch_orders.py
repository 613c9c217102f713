"""Mini-batch update time with per-chain, grouped (G = 10) and shared batch orders (issue 21 item 3).

For C chains, batch size b, binary (Fashion-MNIST 3 vs 8, n = 12000, d = 784) and softmax (10 classes,
the first 12000 rows of FASHION_MULTI), float32: the time of one engine update (gather, products,
sigmoid or softmax, clipping, the noise draw and add) with
  per_chain  one batch order per chain (main_sgd.py's default): C gathers of b rows, C matrix-vector products;
  G = 10     one order per group of 10 chains: C/10 gathers, batched (10, d) x (d, b) products;
  shared     one order for all chains: one gather, two (C, d) x (d, b) matrix products,
measured interleaved in the same run, as ratios against the per-chain update and against the two matrix
products of a shared update alone (on a pre-gathered batch, done as the engine does them): no
implementation of the update can beat those products. Each update draws its noise as run_chains does
(merged randn calls, background threads while the update runs on one thread: engine.ChainNoise); the
per_chain and shared updates are timed a second time with the plain draw (one block per randn call, in the
calling thread: the draw before issue 21's noise change, the same numbers), so one run gives the ratio
before and after. The noise draws alone are shown too: they are the same for every order.

Target (issue 21): b = 128, C = 100, shared orders >= 10x faster than per_chain in the same run.

    python bench/minibatch_orders.py            # C in {10, 100}, b in {32, 128, 512}: a few minutes
    python bench/minibatch_orders.py --batches 128 --chains 100 --stat median   # the target setting only
    python bench/minibatch_orders.py --full     # C in {10, 100, 1000} (per-chain softmax C = 1000 is slow)
    python bench/minibatch_orders.py --threads 1 --clock cpu   # on a machine shared with other jobs
"""
from __future__ import annotations

import argparse
import os
import statistics
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


def noise_draws(task, C: int, *, plain: bool):
    """The noise of C chains as run_chains draws it in the calling thread (merged calls), or plainly (one
    block a call, the draw before issue 21's noise change): its next() draws the next update's."""
    return engine.ChainNoise(engine.generator_for(0, "noise-alone"), task.weight_shape(C), 1 << 20,
                             dtype=task.dtype, merge=not plain)


def whole_fills(k: int, noise) -> int:
    """k rounded up to whole fills of the noise buffer (noise.unit updates; none: k)."""
    unit = 1 if noise is None else noise.unit
    return -(-k // unit) * unit


# what measure() times: the engine's update (its noise draw: merged calls, background threads as run_chains
# allows), the same update with the plain draw, the products alone and the noise draws alone
UPDATES = {"per_chain": ("per_chain", "engine"), "G=10": ("G=10", "engine"), "shared": ("shared", "engine"),
           "per_chain plain": ("per_chain", "plain"), "shared plain": ("shared", "plain")}


def measure(task, C: int, b: int, consts, *, budget: float, clock=time.perf_counter, stat=min) -> dict:
    """Seconds per update for each order and draw, the shared products and the noise draws (`stat` over
    interleaved repeats; min: the least disturbed)."""
    gen = engine.generator_for(0, "bench", C, b)
    w = engine.init_chains(C=C, d=task.d, num_classes=task.k, sigma=SIGMA, m=consts.m, generator=gen,
                           dtype=task.dtype)
    orders = {name: orders_for(name, C, task.n, gen) for name in ORDERS}
    calls, first = {}, {}
    for name, (order, draw) in UPDATES.items():
        call, _ = minibatch_updates(task, w, orders[order], batch=b, eta=consts.eta, sigma=SIGMA, m=consts.m,
                                    M=consts.M, generator=engine.generator_for(0, "noise"), noise_draw=draw)
        call(0, 2)  # warm-up (and the first prefetch)
        t = time.perf_counter()
        call(0, 1)  # a first estimate
        first[name] = time.perf_counter() - t
        calls[name] = call
    products = shared_products(task, C, b)
    draws = {"noise": noise_draws(task, C, plain=False), "noise plain": noise_draws(task, C, plain=True)}
    # quick updates go several per timed call, so that per-call overheads (and the prefetch) count as in a run;
    # a timed call holds whole fills of its noise buffer (a minimum over calls would favour those without one)
    count = {name: whole_fills(max(1, min(50, int(0.02 / max(s, 1e-6)))), calls[name].noise)
             for name, s in first.items()}
    fns = {name: (lambda c=calls[name], k=count[name]: c(0, k)) for name in UPDATES}
    k_shared = max(1, min(50, int(0.02 / max(first["shared"], 1e-6))))
    fns["products"] = lambda: [products() for _ in range(k_shared)]
    count["products"] = k_shared
    for name, noise in draws.items():
        count[name] = whole_fills(k_shared, noise)
        fns[name] = lambda draw=noise.next, k=count[name]: [draw() for _ in range(k)]
    per_round = 1.2 * sum(first[name] * count[name] for name in UPDATES)
    reps = common.repeats_for(per_round, budget=budget, lo=2, hi=5)
    times = common.interleaved(fns, repeats=reps, clock=clock)
    out = {name: stat(v) / count[name] for name, v in times.items()}
    out["repeats"] = reps
    work = b * task.d * C * task.width
    with engine._threads_for(task.device, work, engine.MINIBATCH_SINGLE_THREAD_WORK) as spare:
        out["noise threads"] = min(engine.NOISE_THREADS, spare)
    return out


def step_ratio(r: dict) -> float:
    """per_chain / shared with the plain noise draw (the same work for every order) taken out of both."""
    return common.ratio(r["per_chain plain"] - r["noise plain"], r["shared plain"] - r["noise plain"])


CLOCKS = {"wall": (time.perf_counter, "wall clock"),
          "cpu": (time.process_time, "CPU time of this process, all threads (--clock cpu)"),
          "thread": (time.thread_time, "CPU time of the calling thread alone (--clock thread)")}


def _sizes(text: str, name: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v) for v in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{name} must be comma-separated integers >= 1, got {text!r}")
    return sizes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="C in {10, 100, 1000} (default C in {10, 100})")
    parser.add_argument("--chains", type=lambda t: _sizes(t, "--chains"), default=None,
                        help="comma-separated numbers of chains C instead (e.g. 100)")
    parser.add_argument("--batches", type=lambda t: _sizes(t, "--batches"), default=BATCHES,
                        help="comma-separated batch sizes b (default 32,128,512)")
    parser.add_argument("--budget", type=float, default=1.0, help="seconds of timed calls per setting (default 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default torch's own); 1 gives steadier figures on a machine shared "
                             "with other jobs, where waiting OpenMP threads dominate, but leaves the noise draw "
                             "in the calling thread (engine.NOISE_THREADS needs torch threads > 1)")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                        help="wall (default); cpu: this process's CPU time (all its threads), the work done, "
                             "which a machine shared with other jobs does not inflate (meaningful with --threads 1); "
                             "thread: the CPU time of the calling thread alone, what an update takes in wall "
                             "clock when its noise threads have cores of their own and keep up (the noise "
                             "columns say whether they can)")
    parser.add_argument("--stat", choices=("min", "median"), default="min",
                        help="summary of the interleaved repeats: min (default, the least disturbed) or median")
    args = parser.parse_args(argv)
    if args.budget <= 0:
        parser.error(f"--budget must be > 0 seconds, got {args.budget}")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be an integer >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    clock = CLOCKS[args.clock][0]
    stat = min if args.stat == "min" else statistics.median
    chains = args.chains or (CHAINS_FULL if args.full else CHAINS_QUICK)
    report = common.Report("minibatch_orders: per-chain vs grouped vs shared batch orders")
    report.line(f"Per update, float32, CPU, {torch.get_num_threads()} threads (run_chains' policy: one thread below "
                f"{engine.MINIBATCH_SINGLE_THREAD_WORK:.0e} multiply-adds, products alike): the engine's update "
                f"(noise included) with one order per chain, per group of 10 chains, and one shared order; its "
                f"noise draw as run_chains does it (merged randn calls; while the update runs on one thread, "
                f"min(engine.NOISE_THREADS = {engine.NOISE_THREADS}, torch threads - 1) background threads draw "
                f"the next blocks: column 'noise threads'), and 'plain': the same update drawing one block per call "
                f"in the calling thread (the draw before issue 21's noise change; the same numbers). 'products' = "
                f"the two matrix products of a shared update alone on a pre-gathered batch (oneDNN on CPU float32 "
                f"when engine.MINIBATCH_ONEDNN finds it: {'yes' if engine._onednn_linear_op() is not None else 'no'})"
                f"; 'noise' / 'noise plain' = one update's noise drawn alone in the calling thread, merged / plain. "
                f"{args.stat.capitalize()} over interleaved repeats of the "
                f"{CLOCKS[args.clock][1]}; "
                f"load average at the start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.")
    report.line()
    rows, headline = [], {}
    for kind in ("binary", "multiclass"):
        problem = common.load_problem(kind)
        report.line(f"{kind}: {problem.source}")
        for b in args.batches:
            data = common.truncate_to_batches(problem, b)
            task = engine.to_task(data.X, data.y, data.num_classes, dtype="float32")
            consts = constants(task.n, task.k)
            for C in chains:
                r = measure(task, C, b, consts, budget=args.budget, clock=clock, stat=stat)
                t = common.fmt_time
                rows.append([kind, str(b), str(C), t(r["per_chain"]), t(r["G=10"]), t(r["shared"]),
                             f"{common.ratio(r['per_chain'], r['G=10']):.1f}",
                             f"{common.ratio(r['per_chain'], r['shared']):.1f}", t(r["products"]),
                             f"{common.ratio(r['shared'], r['products']):.2f}",
                             f"{common.ratio(r['per_chain'], r['products']):.1f}", t(r["per_chain plain"]),
                             t(r["shared plain"]), f"{common.ratio(r['per_chain plain'], r['shared plain']):.1f}",
                             f"{common.ratio(r['shared plain'], r['shared']):.2f}", t(r["noise"]),
                             t(r["noise plain"]), f"{step_ratio(r):.1f}", str(r["noise threads"]),
                             str(r["repeats"])])
                print("  " + " | ".join(rows[-1]), flush=True)
                if (b, C) == TARGET[:2]:
                    headline[kind] = r
        del problem
    report.line()
    report.table(["model", "b", "C", "per_chain", "G=10", "shared", "per_chain / G=10", "per_chain / shared",
                  "shared products", "shared / products", "per_chain / products", "per_chain plain",
                  "shared plain", "per_chain plain / shared plain", "shared plain / shared", "noise", "noise plain",
                  "per_chain / shared without the noise draw", "noise threads", "repeats"], rows)
    b, C, target = TARGET
    for kind, r in headline.items():
        speedup = common.ratio(r["per_chain"], r["shared"])
        report.line(f"Target: {kind}, b = {b}, C = {C}: per_chain {common.fmt_time(r['per_chain'])}, shared "
                    f"{common.fmt_time(r['shared'])}: {speedup:.1f}x (target >= {target:g}x): "
                    f"{'MET' if speedup >= target else 'NOT MET'}; with the plain draw "
                    f"{common.ratio(r['per_chain plain'], r['shared plain']):.1f}x; without the noise draw "
                    f"({common.fmt_time(r['noise plain'])} plain, the same for every order) {step_ratio(r):.1f}x; "
                    f"shared / products {common.ratio(r['shared'], r['products']):.2f}.")
    report.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
