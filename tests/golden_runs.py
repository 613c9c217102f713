"""Fixed-seed runs of every script, small enough for the suite, whose arrays and numeric metrics are kept
in tests/golden/ so that a restructuring can show it changed no result (tests/test_golden.py).

Regenerate only when a result is meant to change, and say why in the commit:
    python -m tests.golden_runs --write
The runs use float64 on the CPU with one torch thread, so the values do not depend on BLAS threading.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
COMMON = ["--seed", "5", "--device", "cpu", "--dtype", "float64"]

# name -> (script module, argv without --result_dir, family, dataset, mode)
RUNS = {
    "baseline": ("baseline", ["--dataset", "DIGITS", "--K", "1", "2", "--eps", "0.5", "2", "--trials", "6",
                              "--burn_in", "40"], "LMC", "DIGITS", "baseline"),
    "baseline_sequential2": ("baseline", ["--dataset", "DIGITS", "--sequential2", "1", "--num_remove", "4", "--S", "1", "2",
                                          "--trials", "4", "--burn_in", "30"], "LMC", "DIGITS", "sequential2"),
    "baseline_multiclass": ("baseline_multiclass", ["--dataset", "DIGITS_MULTI", "--K", "1", "--eps", "1",
                                                    "--trials", "3", "--burn_in", "20"],
                            "LMC", "DIGITS_MULTI", "baseline"),
    "main_lmc_sigma": ("main_lmc", ["--dataset", "DIGITS", "--paint_unlearning_sigma", "1", "--sigma", "0.03",
                                    "--sigma_list", "0.2", "1", "--trials", "4", "--burn_in", "30"],
                       "LMC", "DIGITS", "paint_unlearning_sigma"),
    "main_lmc_multiclass_s": ("main_lmc_multiclass", ["--dataset", "DIGITS_MULTI", "--paint_utility_s", "1",
                                                      "--S", "1", "5", "--eps", "1", "--trials", "3", "--burn_in", "20"],
                              "LMC", "DIGITS_MULTI", "paint_utility_s"),
    "main_sgd_sequential": ("main_sgd", ["--dataset", "DIGITS", "--sequential", "1", "--trials", "4",
                                         "--requests", "2", "--burn_in", "20"], "SGD", "DIGITS", "sequential"),
    "main_sgd_sigma": ("main_sgd", ["--dataset", "DIGITS", "--paint_unlearning_sigma", "1", "--trials", "3",
                                    "--burn_in", "10", "--sigma_list", "0.1", "1"],
                       "SGD", "DIGITS", "paint_unlearning_sigma"),
    "audit": ("audit", ["--dataset", "DIGITS", "--sigma", "0.01", "--S", "10", "--burn_in", "30", "--trials", "40",
                        "--K", "0", "10"], "LMC", "DIGITS", "audit"),
}
# metrics keys that measure the machine, not the result
SKIP = ("wall", "time", "seconds", "elapsed", "git", "version", "date", "host", "torch", "numpy", "python",
        "path", "folder", "dir", "device", "threads", "created", "finished", "started", "estimate", "rate")


def _numbers(tree, prefix="") -> dict[str, float]:
    """Every number in a metrics tree, keyed by its path; strings and machine measurements left out."""
    out: dict[str, float] = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            if any(s in str(k).lower() for s in SKIP):
                continue
            out.update(_numbers(v, f"{prefix}/{k}"))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out.update(_numbers(v, f"{prefix}[{i}]"))
    elif isinstance(tree, bool):
        out[prefix] = float(tree)
    elif isinstance(tree, (int, float)):
        out[prefix] = float(tree)
    elif tree is None:
        out[prefix] = math.inf     # the JSON form of an infinite value (or a missing one): compared as a mark
    return out


@contextlib.contextmanager
def _quiet_one_thread():
    """What every golden run shares: the repository importable, one torch thread (values independent of BLAS
    threading), no progress bars or speed calibration; all put back after."""
    import torch

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    threads, env = torch.get_num_threads(), dict(os.environ)
    torch.set_num_threads(1)
    os.environ.update(UNLEARN_NO_PROGRESS="1", UNLEARN_NO_CALIBRATION="1")
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        os.environ.clear()
        os.environ.update(env)


def run(name: str, result_dir: str) -> dict[str, np.ndarray]:
    """Run one golden case in this process; its arrays.npz and its metrics' numbers ("m:<path>")."""
    import importlib

    module, argv, family, dataset, mode = RUNS[name]
    with _quiet_one_thread():
        from utils import results

        code = importlib.import_module(module).main([*argv, *COMMON, "--result_dir", result_dir])
    assert code == 0, f"{module} {argv} exited {code}"
    folder = Path(results.resolve_run_dir(Path(result_dir) / family / dataset / mode))
    with np.load(folder / "arrays.npz") as z:
        out = {f"a:{k}": np.asarray(z[k]) for k in z.files}
    out.update(_packed("m", _numbers(json.loads((folder / "metrics.json").read_text()))))
    return out


def _packed(prefix: str, numbers: dict[str, float]) -> dict[str, np.ndarray]:
    """A metrics tree's numbers as two arrays (paths, values): one npz entry each, not one per number."""
    keys = sorted(numbers)
    return {f"{prefix}:keys": np.array(keys, dtype=str), f"{prefix}:values": np.array([numbers[k] for k in keys])}


def digits_file(path: str) -> str:
    """DIGITS 3 vs 8 as a features file with ids 1000.. (the own-data path of unlearn.py)."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    keep = np.isin(y, (3, 8))
    X, y = X[keep], y[keep]
    order = np.random.default_rng(0).permutation(len(y))
    X, y = X[order], y[order]
    np.savez(path, X_train=X[:270], y_train=y[:270], X_test=X[270:], y_test=y[270:], ids=np.arange(1000, 1270))
    return path


UNLEARN_LEARN = ["--eps", "1", "--K", "20", "--request_size", "2", "--burn_in", "30", "--trials", "4",
                 "--seed", "5", "--device", "cpu"]


def run_unlearn(work: str) -> dict[str, np.ndarray]:
    """unlearn.py learn, then two removals: every version's arrays and state.json numbers."""
    features = digits_file(os.path.join(work, "digits.npz"))
    state = os.path.join(work, "state")
    with _quiet_one_thread():
        import unlearn

        steps = [["learn", "--features", features, "--state", state, *UNLEARN_LEARN],
                 ["remove", "--state", state, "--ids", "1000", "1001"],
                 ["remove", "--state", state, "--ids", "1005"]]
        for argv in steps:
            code = unlearn.main(argv)
            assert code == 0, f"unlearn.py {argv} exited {code}"
    out: dict[str, np.ndarray] = {}
    for version in sorted(p for p in os.listdir(state) if p.startswith("v")):
        folder = os.path.join(state, version)
        with np.load(os.path.join(folder, "arrays.npz")) as z:
            for k in z.files:
                if z[k].dtype.kind in "biuf":
                    out[f"{version}/a:{k}"] = np.asarray(z[k])
        out.update(_packed(f"{version}/m", _numbers(json.loads(Path(folder, "state.json").read_text()))))
    return out


def golden_file(name: str) -> Path:
    return GOLDEN / f"{name}.npz"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write tests/golden/<run>.npz")
    parser.add_argument("names", nargs="*", default=[*RUNS, "unlearn"], help="runs to regenerate (default all)")
    args = parser.parse_args(argv)
    GOLDEN.mkdir(exist_ok=True)
    for name in args.names:
        tmp = tempfile.mkdtemp()
        try:
            values = run_unlearn(tmp) if name == "unlearn" else run(name, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if args.write:
            np.savez_compressed(golden_file(name), **values)
        print(f"{name}: {len(values)} arrays")
    return 0


if __name__ == "__main__":
    sys.exit(main())
