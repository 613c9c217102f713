"""Float32 against float64: test accuracy and the chains' statistics (issue 6 item 4).

100 chains run T PNGD steps on Fashion-MNIST 3 vs 8 in both precisions, coupled: the same initial
chains and the same noise (drawn in float64, rounded for float32), so every difference is rounding.
Each step is the engine's gradient step (run_chains with sigma = 0) followed by the noise the engine
would add (w += sqrt(2 eta sigma^2) xi, docs/METHOD.md §2.1; no projection).

    python bench/precision.py [--steps 1000] [--chains 100] [--sigma 0.03]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench import common, engine_step  # noqa: E402
from utils import engine  # noqa: E402

CHECKPOINTS = (1, 10, 100, 1000, 3000, 10000)


def relative_differences(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Per chain ||a_c - b_c|| / ||b_c||, computed in float64."""
    a, b = a.double().reshape(a.shape[0], -1), b.double().reshape(b.shape[0], -1)
    return (torch.linalg.vector_norm(a - b, dim=1) / torch.linalg.vector_norm(b, dim=1)).numpy()


def chain_statistics(w: torch.Tensor) -> dict:
    """Across-chain summaries: mean ||w_c||, ||mean_c w_c|| and the mean per-coordinate std over chains."""
    w = w.double().reshape(w.shape[0], -1)
    return {"mean norm": float(torch.linalg.vector_norm(w, dim=1).mean()),
            "norm of mean": float(torch.linalg.vector_norm(w.mean(dim=0))),
            "coordinate std": float(w.std(dim=0).mean())}


def coupled_run(problem, *, steps: int, chains: int, sigma: float, seed: int = 0):
    """Run both precisions side by side; returns weights, timings and relative differences at checkpoints."""
    consts = engine_step.constants(problem.X.shape[0], problem.num_classes)  # binary: M = 1
    tasks = {dt: engine.to_task(problem.X, problem.y, problem.num_classes, dtype=dt) for dt in ("float32", "float64")}
    gen = engine.generator_for(seed, "precision")
    w64 = engine.init_chains(C=chains, d=problem.X.shape[1], num_classes=problem.num_classes, sigma=sigma,
                             m=consts.m, generator=gen, dtype="float64")
    w = {"float64": w64, "float32": w64.float()}
    std = math.sqrt(2.0 * consts.eta) * sigma
    seconds = {"float32": 0.0, "float64": 0.0}
    trace = []
    for step in range(1, steps + 1):
        noise = torch.randn(w64.shape, generator=gen, dtype=torch.float64)
        for dt, task in tasks.items():
            t = time.perf_counter()
            w[dt] = engine.run_chains(w[dt], task, steps=1, eta=consts.eta, sigma=0.0, m=consts.m, M=consts.M,
                                      generator=gen)
            w[dt].add_(noise.to(w[dt].dtype), alpha=std)
            seconds[dt] += time.perf_counter() - t
        if step in CHECKPOINTS or step == steps:
            trace.append((step, relative_differences(w["float32"], w["float64"])))
    return w, seconds, trace, consts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="PNGD steps T (default 1000)")
    parser.add_argument("--chains", type=int, default=100, help="chains C (default 100)")
    parser.add_argument("--sigma", type=float, default=0.03, help="noise sigma (default 0.03, paper A Fig 3b)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.chains < 2 or not args.sigma > 0:
        parser.error(f"need --steps >= 1, --chains >= 2 and --sigma > 0, got {args.steps}, {args.chains}, "
                     f"{args.sigma}")
    report = common.Report("precision: float32 vs float64 chains (coupled: same start, same noise)")
    problem = common.load_problem("binary")
    w, seconds, trace, consts = coupled_run(problem, steps=args.steps, chains=args.chains, sigma=args.sigma)
    report.line(f"{problem.source}; {args.chains} chains, T = {args.steps} steps, sigma = {args.sigma:g}, "
                f"eta = 1/L = {consts.eta:.6g}, m = {consts.m:.6g}, M = 1; test set {len(problem.y_test)} rows")
    report.line()
    acc = {dt: engine.accuracy(w[dt], problem.X_test, problem.y_test).numpy() for dt in w}
    stats = {dt: chain_statistics(w[dt]) for dt in w}
    gap = np.abs(acc["float32"] - acc["float64"])
    rows = [[dt, f"{acc[dt].mean():.4f}", f"{acc[dt].std(ddof=1):.4f}", f"{stats[dt]['mean norm']:.6g}",
             f"{stats[dt]['norm of mean']:.6g}", f"{stats[dt]['coordinate std']:.6g}",
             common.fmt_time(seconds[dt] / args.steps)] for dt in ("float32", "float64")]
    report.table(["dtype", "mean accuracy", "std accuracy", "mean norm of w_c", "norm of mean w", "coordinate std",
                  "time per step"], rows)
    rel_stats = {k: abs(stats["float32"][k] - stats["float64"][k]) / abs(stats["float64"][k]) for k in stats["float64"]}
    report.line(f"Per chain |acc32 - acc64|: max {gap.max():.2g} ({int((gap > 0).sum())} of {args.chains} chains "
                f"differ; one test point = {1 / len(problem.y_test):.1e}). Relative difference of the statistics: "
                + ", ".join(f"{k} {v:.1e}" for k, v in rel_stats.items()) + ".")
    report.line("Relative weight difference ||w32 - w64|| / ||w64|| per chain, over the run: "
                + "; ".join(f"step {s}: median {np.median(d):.1e}, max {d.max():.1e}" for s, d in trace) + ".")
    report.line(f"float64 / float32 time per step: {common.ratio(seconds['float64'], seconds['float32']):.2f}.")
    report.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
