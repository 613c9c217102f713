"""End-to-end wall-clock of paper A's Fig 3a on FASHION (issue 6 items 1 and 2).

1. Ratio: `python baseline.py --dataset FASHION --trials 100 --burn_in 300 --K 1 --eps 1` as a real
   subprocess (start-up, data, accounting, D2D, figure included) against 601 full-batch steps of the
   two matrix products (300 learning + 300 retraining + 1 unlearning step of 100 chains, float32)
   timed in this process just before it. Target: within 3x.
2. The paper-scale Fig 3a (100 trials, eps in {0.05, 0.1, 0.5, 1, 2, 5}, K in {1, 2, 5}) with
   `--burn_in auto` (accountant.burn_in_auto: the smallest T with a W2 bound to the stationary law
   below 1% of its radius, printed by the run), split into learn / retrain / unlearn / D2D /
   accounting / other. Target: under 20 minutes on 2 cores.
3. The same with the paper's T = 10000, ESTIMATED from run 2 (running it takes hours): learning and
   retraining scale with their step counts, D2D's two noiseless learning chains with T, the rest
   (accounting, unlearning, D2D's K steps and noise, start-up, writing) does not depend on T.

The split comes from the driver's per-phase clocks (metrics.json `wall_clock_seconds`) and from timers
this script wraps around baseline.sigma_table (accounting) and the D2D driver (baseline.d2d_one_shot;
the learning and unlearning steps it makes are taken out of the learn and unlearn phases).

    python bench/fig3a_end_to_end.py [--skip-paper-scale] [--trials 100]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAPER_T = 10000
RATIO_STEPS = 601  # 300 learning + 300 retraining + 1 unlearning step
TARGET_RATIO, TARGET_MINUTES = 3.0, 20.0
RATIO_ARGS = ["--dataset", "FASHION", "--burn_in", "300", "--K", "1", "--eps", "1"]
PAPER_ARGS = ["--dataset", "FASHION", "--burn_in", "auto"]


# ---------------------------------------------------------------- the child: baseline.py with phase timers
def child(out_path: str, argv: list[str]) -> int:
    """Run baseline.main(argv) in this process with timers around accounting and D2D; dump them as JSON."""
    import baseline

    timings = {"accounting": 0.0, "d2d": 0.0, "d2d_phases": {}}

    def timed_table(*a, _orig=baseline.sigma_table, **k):
        t = time.perf_counter()
        try:
            return _orig(*a, **k)
        finally:
            timings["accounting"] += time.perf_counter() - t

    def timed_d2d(lab, *a, _orig, **k):
        before, t = dict(lab.timings), time.perf_counter()
        try:
            return _orig(lab, *a, **k)
        finally:
            timings["d2d"] += time.perf_counter() - t
            for phase, seconds in lab.timings.items():
                timings["d2d_phases"][phase] = timings["d2d_phases"].get(phase, 0.0) + seconds - before.get(phase, 0.0)

    baseline.sigma_table = timed_table
    original = baseline.d2d_one_shot
    baseline.d2d_one_shot = lambda lab, *a, **k: timed_d2d(lab, *a, _orig=original, **k)
    code = baseline.main(argv)
    Path(out_path).write_text(json.dumps(timings))
    return code


# ---------------------------------------------------------------- the parent
def run_baseline(args: list[str], result_dir: Path, *, wrapped: bool) -> dict:
    """Wall-clock of one baseline.py process, its metrics.json and log, and (wrapped) the child's timers."""
    result_dir.mkdir(parents=True, exist_ok=True)
    timers = result_dir / "bench_timers.json"
    cmd = ([sys.executable, str(Path(__file__).resolve()), "--child", str(timers), "--"] if wrapped
           else [sys.executable, str(ROOT / "baseline.py")])
    cmd += args + ["--result_dir", str(result_dir)]
    env = dict(os.environ, UNLEARN_NO_PROGRESS="1")
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    found = list(result_dir.rglob("metrics.json"))
    if len(found) != 1:
        raise RuntimeError(f"expected one metrics.json under {result_dir}, found {len(found)}")
    return {"wall": wall, "metrics": json.loads(found[0].read_text()), "stdout": proc.stdout,
            "timers": json.loads(timers.read_text()) if wrapped else None}


def split(run: dict) -> dict:
    """Seconds per part: learn / retrain / unlearn / D2D / accounting / other (start-up, data, writing, figure)."""
    clocks = run["metrics"]["wall_clock_seconds"]
    timers = run["timers"]
    d2d_phases = timers["d2d_phases"]
    parts = {"learn": clocks.get("learn", 0.0) - d2d_phases.get("learn", 0.0),
             "retrain": clocks.get("retrain", 0.0) - d2d_phases.get("retrain", 0.0),
             "unlearn": clocks.get("unlearn", 0.0) - d2d_phases.get("unlearn", 0.0),
             "D2D": timers["d2d"], "accounting": timers["accounting"]}
    parts["other"] = run["wall"] - sum(parts.values())
    return parts


def learning_steps(metrics: dict) -> tuple[int, int, int]:
    """(sum of T over the distinct learned settings, their number, D2D's T0) from metrics.json."""
    seen = {}
    for cells in metrics["settings"].values():
        for cell in cells.values():
            seen[cell["sigma"]] = cell["T"]
    return sum(seen.values()), len(seen), int(metrics["T_noiseless"])


def paper_estimate(parts: dict, run: dict) -> dict:
    """Scale the T-dependent parts of a measured run to T = 10000 (see the module docstring)."""
    total_T, settings, T0 = learning_steps(run["metrics"])
    scale = settings * PAPER_T / total_T
    phases = run["timers"]["d2d_phases"]
    # the T0 noiseless steps of D2D (and of the noiseless reference); D2D's K <= 5 steps are negligible
    d2d_learn = phases.get("noiseless", 0.0) + phases.get("learn", 0.0) + phases.get("d2d", 0.0)
    out = dict(parts)
    out["learn"] = parts["learn"] * scale
    out["retrain"] = parts["retrain"] * scale
    out["D2D"] = parts["D2D"] + d2d_learn * (PAPER_T / T0 - 1.0)
    return out


def burn_in_lines(stdout: str) -> list[str]:
    return [line.strip() for line in stdout.splitlines() if re.search(r"burn-in auto", line)]


def time_products(steps: int, trials: int) -> float:
    """Seconds of `steps` full-batch steps of the two matrix products (100 chains, float32, binary FASHION)."""
    from bench import common, engine_step
    from utils import engine

    problem = common.load_problem("binary")
    task = engine.to_task(problem.X, problem.y, 2, dtype="float32")
    products = engine_step.products_full(task, trials)
    products()
    t = time.perf_counter()
    for _ in range(steps):
        products()
    return time.perf_counter() - t


def fmt_parts(parts: dict) -> str:
    return ", ".join(f"{k} {v:.1f} s" for k, v in parts.items())


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1], argv[3:] if argv[2:3] == ["--"] else argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100, help="chains per setting (default 100, paper scale)")
    parser.add_argument("--skip-paper-scale", action="store_true", help="only the 3x ratio run")
    args = parser.parse_args(argv)
    if args.trials < 2:
        parser.error(f"--trials must be >= 2, got {args.trials}")
    from bench import common

    trials = ["--trials", str(args.trials)]
    report = common.Report("fig3a_end_to_end: paper A Fig 3a on FASHION, end to end")
    with tempfile.TemporaryDirectory(prefix="bench_fig3a_") as tmp:
        limit = time_products(RATIO_STEPS, args.trials)
        run = run_baseline(RATIO_ARGS + trials, Path(tmp) / "ratio", wrapped=False)
        rel = run["wall"] / limit
        report.line(f"`python baseline.py {' '.join(RATIO_ARGS + trials)}`: {run['wall']:.1f} s wall-clock "
                    f"(driver's clocks: {fmt_parts(run['metrics']['wall_clock_seconds'])}).")
        report.line(f"{RATIO_STEPS} steps of the two matrix products ({args.trials} chains, float32): "
                    f"{limit:.1f} s, timed just before. Ratio {rel:.2f} (target <= {TARGET_RATIO:g}): "
                    f"{'MET' if rel <= TARGET_RATIO else 'NOT MET'}.")
        report.line()
        if not args.skip_paper_scale:
            paper_scale(report, Path(tmp) / "auto", trials)
    report.save()
    return 0


def paper_scale(report, result_dir: Path, trials: list[str]) -> None:
    run = run_baseline(PAPER_ARGS + trials, result_dir, wrapped=True)
    parts = split(run)
    total_T, settings, T0 = learning_steps(run["metrics"])
    estimate = paper_estimate(parts, run)
    minutes = run["wall"] / 60
    report.line(f"Paper-scale Fig 3a, `python baseline.py {' '.join(PAPER_ARGS + trials)}` "
                f"(eps 0.05 0.1 0.5 1 2 5, K 1 2 5: {settings} learned settings, "
                f"{run['metrics'].get('total_chain_steps', 0):,} chain-steps):")
    for line in burn_in_lines(run["stdout"]):
        report.line(f"- {line}")
    report.line()
    report.table(["burn-in", "total", "learn", "retrain", "unlearn", "D2D", "accounting", "other"],
                 [[f"auto (T = {total_T / settings:.0f} on average, D2D T0 = {T0}), measured",
                   f"{run['wall']:.1f} s"] + [f"{parts[k]:.1f} s" for k in
                                               ("learn", "retrain", "unlearn", "D2D", "accounting", "other")],
                  [f"paper T = {PAPER_T}, ESTIMATED from the auto run",
                   f"{sum(estimate.values()):.0f} s ({sum(estimate.values()) / 3600:.2f} h)"]
                  + [f"{estimate[k]:.0f} s" for k in ("learn", "retrain", "unlearn", "D2D", "accounting", "other")]])
    report.line(f"Target: paper-scale Fig 3a with a justified burn-in in {minutes:.1f} min (target < "
                f"{TARGET_MINUTES:g} min): {'MET' if minutes < TARGET_MINUTES else 'NOT MET'}.")
    report.line()


if __name__ == "__main__":
    sys.exit(main())
