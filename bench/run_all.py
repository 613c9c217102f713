"""Run every benchmark, each in a fresh process, and record the whole bench's wall-clock (target < 10 min).

    python bench/run_all.py [--skip NAME ...]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

# name -> extra arguments; the order puts the short ones first
BENCHES = {"engine_step": [], "memory": [], "naive_vs_engine": [], "precision": [], "minibatch_orders": [],
           "fig3a_end_to_end": []}
TARGET_MINUTES = 10.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip", nargs="*", default=[], choices=sorted(BENCHES), help="benchmarks to leave out")
    args = parser.parse_args(argv)
    from bench import common

    seconds, failed = {}, []
    start = time.perf_counter()
    for name, extra in BENCHES.items():
        if name in args.skip:
            continue
        t = time.perf_counter()
        code = subprocess.call([sys.executable, str(HERE / f"{name}.py"), *extra], cwd=HERE.parent)
        seconds[name] = time.perf_counter() - t
        if code != 0:
            failed.append(f"{name} (exit {code})")
    total = time.perf_counter() - start
    report = common.Report("run_all: the whole bench")
    report.line("Wall-clock per benchmark: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
                + f". Total {total / 60:.1f} min"
                + ("" if args.skip else f" (target < {TARGET_MINUTES:g} min: "
                   f"{'MET' if total / 60 < TARGET_MINUTES else 'NOT MET'})")
                + (f"; skipped {', '.join(args.skip)}" if args.skip else "") + ".")
    if failed:
        report.line("FAILED: " + ", ".join(failed))
    report.save()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
