"""How good is --plan_only's time estimate? Each command's plan (its ``estimated_seconds``) and then the run
itself (wall clock of the whole process, --no_cache), back to back, so both see about the same load.

    python bench/estimate_vs_run.py [--fashion] [--paper] [--only WORD]

Default: small runs of every script and mode kind on DIGITS (about 2 min); ``--fashion`` adds medium runs on
Fashion-MNIST (about 8 min); ``--paper`` adds paper B Fig 3b on FASHION at full scale (about 2 min idle,
20 min under heavy load). Target (issue 28): real / estimated within [1/3, 3] for every command.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402

SMALL = [
    "baseline.py --dataset DIGITS --burn_in auto",
    "baseline.py --dataset DIGITS --sequential2 1 --trials 30 --burn_in 300",
    "main_lmc.py --dataset DIGITS --paint_utility_s 1 --trials 50 --burn_in 500",
    "main_lmc_multiclass.py --dataset DIGITS_MULTI --sigma 0.5 --lam 1e-4 --paint_unlearning_sigma 1 "
    "--sigma_list 0.5 1 --trials 20 --burn_in 300",
    "main_sgd.py --dataset DIGITS --sequential 1 --trials 50",
    "main_sgd.py --dataset DIGITS --compare_baseline_nonconvergent 1 --trials 30 --burn_in 20 --lmc_burn_in 300",
    "main_sgd.py --dataset DIGITS --retrain_noiseless 1",
    "audit.py --dataset DIGITS --trials 200 --K 0 5 20 --burn_in 300",
]
FASHION = [
    "baseline.py --dataset FASHION --burn_in auto --trials 20",
    "main_sgd.py --dataset FASHION --lam 1e-6 --projection 0 --paint_unlearning_sigma 1 --trials 20 --requests 10 "
    "--sigma_list 0.1 1 --batch_size 128 512 full",
    "main_sgd.py --dataset FASHION --lam 1e-6 --projection 0 --compare_baseline_nonconvergent 1 --trials 20 "
    "--eps 1 2 --lmc_burn_in 300",
    "main_lmc.py --dataset FASHION --lam 1e-6 --sigma 0.03 --paint_utility_epsilon 1 --S 1 50 --eps 0.5 1 "
    "--trials 30 --burn_in 300",
    "main_lmc_multiclass.py --dataset FASHION_MULTI --lam 1e-6 --sigma 0.5 --paint_unlearning_sigma 1 "
    "--sigma_list 0.5 --trials 10 --burn_in 50 --S 10",
    "audit.py --dataset FASHION --trials 200 --K 0 10 --burn_in 200",
]
PAPER = ["main_sgd.py --lam 1e-6 --dataset FASHION --projection 0 --sequential 1 --batch_orders shared"]


def plan_and_run(command: str, work: str) -> dict:
    """The plan's estimate, then the run's wall clock (both as subprocesses: imports included)."""
    env = dict(os.environ, UNLEARN_NO_PROGRESS="1")
    env.pop("UNLEARN_NO_CALIBRATION", None)

    def timed(*extra) -> float:
        t = time.perf_counter()
        done = subprocess.run([sys.executable, *command.split(), *extra], cwd=common.ROOT, env=env,
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{command} {' '.join(extra)} exited {done.returncode}: {done.stderr.strip()[-300:]}")
        return time.perf_counter() - t

    load0 = os.getloadavg()[0]
    plan_seconds = timed("--plan_only", "--result_dir", f"{work}/plan")
    (metrics,) = [p for p in Path(work, "plan").glob("*/*/*/*/metrics.json") if p.parent.name != "latest"]
    estimated = json.loads(metrics.read_text())["estimated_seconds"]
    real = timed("--no_cache", "--result_dir", f"{work}/run")
    return {"estimated": estimated, "real": real, "plan": plan_seconds, "load_start": load0,
            "load_end": os.getloadavg()[0]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fashion", action="store_true", help="add the medium runs on Fashion-MNIST")
    parser.add_argument("--paper", action="store_true", help="add paper B Fig 3b on FASHION at full scale")
    parser.add_argument("--only", default=None, help="run only the commands containing this word")
    args = parser.parse_args(argv)
    commands = SMALL + (FASHION if args.fashion else []) + (PAPER if args.paper else [])
    if args.only:
        commands = [c for c in commands if args.only in c]
    report = common.Report("estimate_vs_run: --plan_only's estimated_seconds against the run's wall clock")
    rows, worst = [], 1.0
    for command in commands:
        work = tempfile.mkdtemp(prefix="estimate-vs-run-")
        try:
            r = plan_and_run(command, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        ratio = r["real"] / r["estimated"]
        worst = max(worst, ratio, 1 / ratio)
        rows.append([f"`{command}`", f"{r['estimated']:.1f}", f"{r['real']:.1f}", f"{ratio:.2f}", f"{r['plan']:.1f}",
                     f"{r['load_start']:.1f} / {r['load_end']:.1f}"])
        print(f"  {ratio:.2f} = {r['real']:.1f} s / {r['estimated']:.1f} s  {command}", flush=True)
    report.table(["command", "estimated s", "run s", "run / estimate", "plan-only s", "load start / end"], rows)
    report.line(f"Farthest from 1: a factor {worst:.2f} (target: at most 3).")
    report.save()
    return 0 if worst <= 3 else 1


if __name__ == "__main__":
    sys.exit(main())
