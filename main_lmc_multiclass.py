"""Paper A sweeps on multiclass (softmax) datasets: main_lmc.py with M = 2 and L = 1 + lam n by default.

  python main_lmc_multiclass.py --lam 1e-6 --sigma 0.015 --dataset CIFAR10_MULTI --paint_utility_s 1

Datasets: CIFAR10_MULTI (default), FASHION_MULTI, DIGITS_MULTI, or --features FILE. Same modes,
flags and run folders as main_lmc.py (see its docstring).
"""
from __future__ import annotations

import sys

import main_lmc
from utils import cli


@cli.guarded
def main(argv=None) -> int:
    return main_lmc.run(argv, multiclass=True)


if __name__ == "__main__":
    sys.exit(main())
