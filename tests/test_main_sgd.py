"""main_sgd.py (paper B, mini-batch PNSGD) end to end on DIGITS (bundled with scikit-learn), in-process.

Reference values: the accountant (itself tested against docs/METHOD.md §11), the Z_B of docs/METHOD.md §11.5, a numpy
reimplementation of noiseless full-batch gradient descent, and the engine called directly.
DIGITS 3 vs 8 has n = 267 rows, truncated to 256 so that the default batch sizes divide n.
"""
import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import main_sgd
from faults import interrupt_at_call
from utils import accountant as A
from utils import data as data_mod
from utils import results

torch = pytest.importorskip("torch")

N_USED, DIGITS_N, DIGITS_LAM, DIGITS_D = 256, 267, 1e-4, 64
PUBLISHED_Z_B = {"32": 0.239222, "64": 0.119662, "128": 0.0610688, "256": 0.0349263, "512": 0.0240861,
            "full": 0.0157632}


def consts(n=N_USED, **kw):
    return A.make_constants(n=n, lam=DIGITS_LAM, M=1.0, d=DIGITS_D, **kw)


def run(tmp_path, *argv):
    assert main_sgd.main([*argv, "--result_dir", str(tmp_path)]) == 0


def run_folder(tmp_path, mode, dataset="DIGITS", plan_only=False):
    folder = Path(results.resolve_run_dir(tmp_path / "SGD" / dataset / mode))  # the run `latest` names
    figures = () if plan_only and mode == "retrain_noiseless" else ("figure.png", "figure.pdf")  # nothing to draw
    for name in ("config.json", "metrics.json", "arrays.npz", "log.txt") + figures:
        assert (folder / name).is_file(), name
    assert not (folder / "parts").exists()
    text = (folder / "metrics.json").read_text()
    metrics = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert metrics["plan_only"] is plan_only and metrics["mode"] == mode and metrics["family"] == "SGD"
    assert ("accuracy" in metrics) is not plan_only
    assert metrics["certificates"] and all(c["delta"] == pytest.approx(1 / metrics["n"]) for c in metrics["certificates"])
    with np.load(folder / "arrays.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return metrics, arrays


def assert_stats(stats, acc):
    acc = np.asarray(acc, dtype=float)
    assert stats["mean"] == pytest.approx(acc.mean(), abs=1e-12)
    assert stats["std"] == pytest.approx(acc.std(ddof=1), abs=1e-12) and stats["trials"] == acc.size


def assert_within_noise(a, b):
    """Unlearning and retraining agree within 3 combined standard errors."""
    assert abs(a["mean"] - b["mean"]) <= 3 * math.hypot(a["se"], b["se"]), (a, b)


# ---------------------------------------------------------------- Fig 3b
def test_sequential_end_to_end(tmp_path):
    run(tmp_path, "--dataset", "DIGITS", "--sequential", "1", "--trials", "12", "--requests", "5",
        "--burn_in", "30", "--seed", "3")
    metrics, arrays = run_folder(tmp_path, "sequential")
    c = consts()
    assert metrics["n"] == N_USED and metrics["truncation"]["n_loaded"] == DIGITS_N
    assert metrics["batch_sizes"] == ["128", "256", "full"]          # 512 > n dropped with a note
    assert any("512 dropped" in note for note in metrics["truncation"]["notes"])
    for key, b in (("128", 128), ("256", 256), ("full", None)):
        Ks, Zs = A.sequential_K_list_pnsgd(num_requests=5, sigma=0.03, eps_target=1.0, consts=c, b=b, R=100.0)
        assert metrics["k_lists"][key] == Ks and all(isinstance(k, int) for k in metrics["k_lists"][key])
        assert metrics["z_lists"][key] == pytest.approx(Zs, rel=1e-12)
        assert metrics["accumulated_epochs"][key] == sum(Ks) and list(arrays[f"k_list_b{key}"]) == Ks
        assert metrics["retraining_epochs"][key] == 5 * 30 and metrics["burn_in"][key] == 30
        acc = metrics["accuracy"][key]
        assert arrays[f"acc_unlearn_b{key}"].shape == (5, 12)
        assert_stats(acc["unlearn"], arrays[f"acc_unlearn_b{key}"][-1])
        assert_stats(acc["retrain"], arrays[f"acc_retrain_b{key}"])
        assert acc["unlearn_mean_per_request"] == pytest.approx(arrays[f"acc_unlearn_b{key}"].mean(axis=1))
        assert_within_noise(acc["unlearn"], acc["retrain"])
        assert acc["unlearn"]["mean"] > 0.85                          # the noiseless optimum is ~0.94
    cert = metrics["certificates"][0]
    assert cert["K"] == metrics["k_lists"]["128"] and max(cert["eps"]) <= 1.0 and cert["b"] == 128
    assert metrics["lmc_request_size"] == 5                           # min(10, requests)
    assert metrics["lmc_k_list"] == A.sequential_K_list_pngd(num_requests=1, S=5, sigma=0.03, eps_target=1.0, consts=c)
    assert metrics["d2d_k_list"] == A.d2d_sequential_K_list(num_requests=5, f=1.0, consts=c, eps=1.0)
    assert metrics["Z_B"]["128"] == pytest.approx(A.Z_B(eta=c.eta, M=1.0, m=c.m, n=N_USED, b=128, R=100.0))
    # chains x updates: learn + retrain T epochs and the K_s epochs, n/b updates each, per batch size
    expected = sum(12 * (2 * 30 + sum(metrics["k_lists"][k])) * u for k, u in (("128", 2), ("256", 1), ("full", 1)))
    assert metrics["total_chain_steps"] == expected


def test_learning_and_unlearning_use_the_same_permutations(tmp_path):
    """Lab.learn draws its per-chain permutations exactly as lab.perms(b, C) does (docs/METHOD.md §2.4)."""
    args = main_sgd.parse_args(["--dataset", "DIGITS", "--sequential", "1", "--trials", "5", "--no_cache",
                                "--result_dir", str(tmp_path)])
    ctx, batches, _ = main_sgd.setup(args)
    lab, c = ctx.lab(), ctx.consts
    from utils import engine

    w = lab.learn(sigma=0.1, T=3, batch_size=32, key=("t",))
    w0 = lab.init(sigma=0.1, C=5, key=("learn", "t"))
    perms = lab.perms(32, 5)
    manual = engine.run_chains(w0, lab.task_D, steps=3, eta=c.eta, sigma=0.1, m=c.m, M=c.M, R=100.0, batch_size=32,
                               perms=perms, generator=lab.gen("learn", "t"))
    assert torch.equal(w, manual)
    assert torch.equal(perms, lab.perms(32, 5)) and not torch.equal(perms[0], perms[1])
    other = engine.make_perms(5, N_USED, generator=lab.gen("other"))
    differs = engine.run_chains(w0, lab.task_D, steps=3, eta=c.eta, sigma=0.1, m=c.m, M=c.M, R=100.0,
                                batch_size=32, perms=other, generator=lab.gen("learn", "t"))
    assert not torch.equal(w, differs)                                # the permutations matter


def test_interrupted_run_resumes_bit_identically(tmp_path, monkeypatch):
    argv = ["--dataset", "DIGITS", "--sequential", "1", "--trials", "4", "--requests", "3", "--burn_in", "20",
            "--batch_size", "32", "full", "--no_cache"]
    run(tmp_path / "whole", *argv)
    _, whole = run_folder(tmp_path / "whole", "sequential")
    real = interrupt_at_call(monkeypatch, main_sgd, "run_stream_setting", 2)
    assert main_sgd.main([*argv, "--result_dir", str(tmp_path / "cut")]) == 130
    parts = Path(results.run_dirs(tmp_path / "cut" / "SGD" / "DIGITS" / "sequential")[0]) / "parts"
    assert sorted(p.name for p in parts.iterdir()) == ["seq_b32_sigma0.03.npz", "seq_b32_sigma0.03_requests.npz"]  # the first setting was saved (and its last request)
    monkeypatch.setattr(main_sgd, "run_stream_setting", real)
    run(tmp_path / "cut", *argv, "--resume")
    _, resumed = run_folder(tmp_path / "cut", "sequential")
    assert whole.keys() == resumed.keys()
    for key in whole:
        np.testing.assert_array_equal(whole[key], resumed[key])


def test_softmax_sequential_on_digits_multi(tmp_path):
    run(tmp_path, "--dataset", "DIGITS_MULTI", "--sequential", "1", "--trials", "6", "--requests", "2",
        "--burn_in", "20", "--batch_size", "64", "full")
    metrics, arrays = run_folder(tmp_path, "sequential", dataset="DIGITS_MULTI")
    c = A.make_constants(n=1344, lam=DIGITS_LAM, M=2.0, num_classes=10, d=DIGITS_D)   # 1347 rows -> 21 x 64
    assert metrics["constants"]["M"] == 2.0 and metrics["constants"]["L"] == pytest.approx(1 + c.m)
    for key, b in (("64", 64), ("full", None)):
        Ks, _ = A.sequential_K_list_pnsgd(num_requests=2, sigma=0.03, eps_target=1.0, consts=c, b=b, R=100.0)
        assert metrics["k_lists"][key] == Ks
        assert metrics["accuracy"][key]["unlearn"]["mean"] > 0.3          # 10 classes: chance 0.1; sigma-limited
        assert_within_noise(metrics["accuracy"][key]["unlearn"], metrics["accuracy"][key]["retrain"])


# ---------------------------------------------------------------- Fig 3c,d
def test_paint_unlearning_sigma_end_to_end(tmp_path):
    run(tmp_path, "--dataset", "DIGITS", "--paint_unlearning_sigma", "1", "--trials", "12", "--requests", "3",
        "--sigma_list", "0.2", "1", "--batch_size", "32", "full", "--burn_in", "30")
    metrics, arrays = run_folder(tmp_path, "paint_unlearning_sigma")
    c = consts()
    assert metrics["epsilon"] == 0.01 and metrics["sigma_list"] == [0.2, 1.0]
    for key, b in (("32", 32), ("full", None)):
        for j, (sk, s) in enumerate((("0.2", 0.2), ("1", 1.0))):
            Ks, _ = A.sequential_K_list_pnsgd(num_requests=3, sigma=s, eps_target=0.01, consts=c, b=b, R=100.0)
            assert metrics["k_lists"][key][sk] == Ks
            assert metrics["accumulated_epochs"][key][sk] == sum(Ks) == arrays[f"accumulated_epochs_b{key}"][j]
            assert metrics["retraining_epochs"][key][sk] == 3 * 30
            acc = metrics["accuracy"][key][sk]
            assert_stats(acc["unlearn"], arrays[f"acc_unlearn_b{key}"][j])
            assert_stats(acc["retrain"], arrays[f"acc_retrain_b{key}"][j])
            assert_within_noise(acc["unlearn"], acc["retrain"])
        # more noise, fewer epochs (docs/METHOD.md §4: eps falls with sigma)
        assert metrics["accumulated_epochs"][key]["1"] <= metrics["accumulated_epochs"][key]["0.2"]
    # a full batch needs more epochs than b = 32 (Z_B shrinks with b only through 1/(b(1 - c^(n/b))))
    assert metrics["accumulated_epochs"]["32"]["0.2"] < metrics["accumulated_epochs"]["full"]["0.2"]
    assert len(metrics["certificates"]) == 4 and all(max(ct["eps"]) <= 0.01 for ct in metrics["certificates"])


# ---------------------------------------------------------------- Fig 3a
def test_compare_baseline_nonconvergent_end_to_end(tmp_path):
    run(tmp_path, "--dataset", "DIGITS", "--compare_baseline_nonconvergent", "1", "--trials", "12", "--eps", "1", "5",
        "--burn_in", "30", "--lmc_burn_in", "60")
    metrics, arrays = run_folder(tmp_path, "compare_baseline_nonconvergent")
    c = consts()
    assert metrics["K"] == 1 and metrics["R"] == 100.0 and metrics["batch_sizes"] == ["128", "full"]
    for key, b in (("128", 128), ("full", None)):
        for j, e in enumerate((1.0, 5.0)):
            ek = format(e, "g")
            sigma = A.smallest_sigma_pnsgd_nonconvergent(eps_target=e, T=30, consts=c, R=100.0, K=1, b=b, q=2.0)
            assert metrics["sigma"][key][ek] == sigma and arrays[f"sigma_b{key}"][j] == sigma
            acc = metrics["accuracy"][key][ek]
            assert_stats(acc["unlearn"], arrays[f"acc_unlearn_b{key}"][j])
            assert_within_noise(acc["unlearn"], acc["retrain"])
    comp = metrics["comparison"]
    assert comp["source"] == "computed"                               # no paper-A folder here
    for j, e in enumerate((1.0, 5.0)):
        ek = format(e, "g")
        assert comp["lmc_sigma"][ek] == A.smallest_sigma_pngd(K=1, eps_target=e, S=1, consts=c)
        assert comp["d2d_sigma"]["5"][ek] == A.d2d_sigma_1(I=5, eps=e, M=1.0, m=c.m, n=N_USED, gamma=c.gamma,
                                                           delta=c.delta)
        assert_stats(comp["lmc"][ek], arrays["lmc_acc"][j])
        assert_stats(comp["d2d"]["1"][ek], arrays["d2d_acc_K1"][j])
    # less privacy, better utility: eps = 5 beats eps = 1 for the finite-T certified PNSGD
    assert metrics["accuracy"]["128"]["5"]["unlearn"]["mean"] > metrics["accuracy"]["128"]["1"]["unlearn"]["mean"]
    assert len(metrics["certificates"]) == 2 * 2 + 2


def test_compare_with_projection_0_uses_the_reference_arithmetic_which_still_certifies(tmp_path):
    run(tmp_path, "--dataset", "MNIST", "--n", "11264", "--plan_only", "--projection", "0",
        "--compare_baseline_nonconvergent", "1")
    metrics, _ = run_folder(tmp_path, "compare_baseline_nonconvergent", dataset="MNIST", plan_only=True)
    c = A.make_constants(n=11264, lam=1e-6, M=1.0)
    # no warning: the R = 0 arithmetic is at least the every-T loose bound (docs/METHOD.md §6.1)
    assert metrics["warnings"] == []
    for key, b, T in (("128", 128, 100), ("full", None, 3000)):
        assert metrics["burn_in"][key]["0.05"] == T
        s = metrics["sigma"][key]["0.05"]
        assert A.dp_epsilon_pnsgd(K=1, sigma=s, consts=c, b=b)[0] <= 0.05
        assert metrics["sigma"][key]["0.05"] == A.smallest_sigma_pnsgd_nonconvergent(
            eps_target=0.05, T=T, consts=c, R=0.0, K=1, b=b, q=2.0, reference_zero_R=True)
    # with R = 0 the reference arithmetic is T-free: ((a - 1/2)/(a - 1)) 2a Z_B^2 c^(2n/b) / (2 eta sigma^2)
    s = metrics["sigma"]["full"]["1"]
    G = 2 * metrics["Z_B"]["full"] ** 2 * c.c ** 2 / (2 * c.eta * s ** 2)
    a = np.linspace(1.001, 200, 400000)
    eps = ((a - 0.5) / (a - 1) * G * a + math.log(11264) / (a - 1)).min()
    assert eps == pytest.approx(1.0, rel=1e-5)


def paper_a_digits(tmp_path, *extra) -> Path:
    """A finished paper-A Fig 3a run (baseline.py) on DIGITS: S = 1, K in {1, 5}, eps 1; its run folder."""
    import baseline

    assert baseline.main(["--dataset", "DIGITS", "--trials", "6", "--burn_in", "40", "--K", "1", "5", "--eps", "1",
                          "--result_dir", str(tmp_path), *extra]) == 0
    return Path(results.resolve_run_dir(tmp_path / "LMC" / "DIGITS" / "baseline"))


COMPARE_FULL = ("--dataset", "DIGITS", "--compare_baseline_nonconvergent", "1", "--trials", "6", "--eps", "1",
                "--batch_size", "full", "--burn_in", "40")   # full batch only: no truncation, n = 267 as paper A


@pytest.mark.skipif(importlib.util.find_spec("baseline") is None, reason="baseline.py absent")
def test_compare_reads_the_paper_a_run_given_by_paper_a_run(tmp_path):
    a_dir = paper_a_digits(tmp_path / "a")
    a_metrics = json.loads((a_dir / "metrics.json").read_text())
    # the mode folder names its latest run: both spellings are accepted
    run(tmp_path / "b", *COMPARE_FULL, "--paper_a_run", str(tmp_path / "a" / "LMC" / "DIGITS" / "baseline"))
    metrics, arrays = run_folder(tmp_path / "b", "compare_baseline_nonconvergent")
    comp = metrics["comparison"]
    assert comp["source"] == str(a_dir)
    # the curves are that run's values (its S = 1 cells at eps 1), nothing computed here
    assert comp["lmc"]["1"] == a_metrics["settings"]["1"]["1"]["lmc_unlearn"]
    for K in ("1", "5"):
        assert comp["d2d"][K]["1"] == a_metrics["settings"][K]["1"]["d2d"]
    with np.load(a_dir / "arrays.npz") as z:   # and those are the statistics of that run's per-trial arrays
        assert_stats(comp["lmc"]["1"], z["lmc_unlearn"][0, 0])
        assert_stats(comp["d2d"]["5"]["1"], z["d2d"][1, 0])
    assert "lmc_acc" not in arrays and "d2d_acc_K1" not in arrays


@pytest.mark.skipif(importlib.util.find_spec("baseline") is None, reason="baseline.py absent")
def test_compare_without_paper_a_run_ignores_a_matching_paper_a_folder(tmp_path):
    decoy = paper_a_digits(tmp_path)            # matches n, lam, L and seed, under the same --result_dir
    touched = _AUDIT["paths"] = []              # every file opened or folder listed while main_sgd runs
    try:
        run(tmp_path, *COMPARE_FULL, "--lmc_burn_in", "40")
    finally:
        _AUDIT["paths"] = None
    metrics, arrays = run_folder(tmp_path, "compare_baseline_nonconvergent")
    assert metrics["comparison"]["source"] == "computed" and arrays["lmc_acc"].shape == (1, 6)
    mine = str(tmp_path / "SGD")
    assert any(p.startswith(mine) for p in touched)                    # the audit sees this run's own files
    assert not [p for p in touched if p.startswith(str(decoy.parent.parent))]   # and nothing of paper A's


_AUDIT: dict = {"paths": None}


def _audit(event, args):
    """Records the paths of file opens and folder listings while _AUDIT["paths"] is a list (sys.addaudithook
    sees every open, also io.open, os.open and numpy's, which a patched builtins.open does not)."""
    paths = _AUDIT["paths"]
    if paths is not None and event in ("open", "os.listdir", "os.scandir") and args and \
            isinstance(args[0], (str, bytes, os.PathLike)):
        paths.append(os.path.abspath(os.fsdecode(args[0])))


sys.addaudithook(_audit)


@pytest.mark.skipif(importlib.util.find_spec("baseline") is None, reason="baseline.py absent")
def test_paper_a_run_with_another_seed_or_n_is_refused_naming_the_value(tmp_path, capsys):
    a_dir = paper_a_digits(tmp_path / "a")
    out = tmp_path / "b"
    argv = [*COMPARE_FULL, "--paper_a_run", str(a_dir), "--result_dir", str(out)]
    assert main_sgd.main([*argv, "--seed", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{a_dir} has seed=0 where this run has seed=1" in err[0]
    assert "--seed 0" in err[0]                                        # how to match
    # the default batch sizes truncate DIGITS to 256 rows: paper A's 267 differ
    argv = ["--dataset", "DIGITS", "--compare_baseline_nonconvergent", "1", "--trials", "6", "--eps", "1",
            "--paper_a_run", str(a_dir), "--result_dir", str(out)]
    assert main_sgd.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"has n={DIGITS_N} where this run has n={N_USED}" in err[0] and "--batch_size full" in err[0]
    # a run of another mode is not a paper-A Fig 3a run; a folder that is no run is refused too
    assert main_sgd.main([*COMPARE_FULL, "--paper_a_run", str(tmp_path), "--result_dir", str(out)]) == 2
    assert "--paper_a_run" in capsys.readouterr().err
    assert not any(p.is_file() for p in out.rglob("*"))                # refused before anything was written


def test_paper_a_run_applies_to_the_comparison_only(capsys):
    assert main_sgd.main(["--dataset", "DIGITS", "--sequential", "1", "--paper_a_run", "x"]) == 2
    assert "--paper_a_run does not apply to --sequential" in capsys.readouterr().err


# ---------------------------------------------------------------- noiseless reference
def test_retrain_noiseless_matches_plain_gradient_descent(tmp_path):
    run(tmp_path, "--dataset", "DIGITS", "--retrain_noiseless", "1", "--S", "1", "10", "--batch_size", "32", "full",
        "--burn_in", "50", "--dtype", "float64")
    metrics, arrays = run_folder(tmp_path, "retrain_noiseless")
    ds = data_mod.load_dataset("DIGITS")
    X, y = ds.X_train[:N_USED], ds.y_train[:N_USED]
    c = consts()
    w = np.zeros(DIGITS_D)
    for _ in range(50):      # |grad loss_i| <= ||x_i|| = 1 = M: clipping never fires
        s = (1 / (1 + np.exp(-y * (X @ w))) - 1) * y
        w = (1 - c.eta * c.m) * w - c.eta * (X.T @ s) / N_USED
    expected = np.mean((ds.X_test @ w > 0) == (ds.y_test > 0))
    assert metrics["accuracy"]["full"]["learn"] == pytest.approx(expected, abs=1e-12)
    assert metrics["remove_list"] == [1, 10] and arrays["acc_retrain_b32"].shape == (2,)
    assert metrics["accuracy"]["32"]["retrain"]["10"] == arrays["acc_retrain_b32"][1]
    assert metrics["certificates"][0]["eps"] == "inf" and metrics["certificates"][0]["sigma"] == 0
    assert metrics["total_chain_steps"] == 50 * 3 * (N_USED // 32) + 50 * 3


# ---------------------------------------------------------------- plan only
def test_plan_only_reproduces_published_z_b_and_runs_no_chains(tmp_path):
    run(tmp_path, "--lam", "1e-6", "--dataset", "MNIST", "--projection", "0", "--sequential", "1", "--plan_only",
        "--n", "11264", "--batch_size", "32", "64", "128", "256", "512", "full")
    metrics, arrays = run_folder(tmp_path, "sequential", dataset="MNIST", plan_only=True)
    assert metrics["n"] == 11264 and metrics["truncation"]["n_used"] == 11264
    for key, value in PUBLISHED_Z_B.items():
        assert metrics["Z_B"][key] == pytest.approx(value, rel=1e-5)
    c = A.make_constants(n=11264, lam=1e-6, M=1.0)
    Ks, _ = A.sequential_K_list_pnsgd(num_requests=100, sigma=0.03, eps_target=1.0, consts=c, b=None, R=0.0)
    assert metrics["k_lists"]["full"] == Ks and len(Ks) == 100
    # --n without --dim: D2D uses MNIST's d = 784
    assert metrics["constants"]["d"] == 784 and len(metrics["d2d_k_list"]) == 100
    assert not any(k.startswith("acc_") for k in arrays)
    assert metrics["wall_clock_seconds"].keys() == {"total"}          # no chain ran


@pytest.mark.parametrize("mode", ["compare_baseline_nonconvergent", "paint_unlearning_sigma", "retrain_noiseless"])
def test_plan_only_every_mode_on_digits(tmp_path, mode):
    run(tmp_path, "--dataset", "DIGITS", f"--{mode}", "1", "--plan_only")
    metrics, arrays = run_folder(tmp_path, mode, plan_only=True)
    assert metrics["n"] == N_USED and not any(k.startswith("acc_") for k in arrays)
    if mode == "paint_unlearning_sigma":
        c = consts()
        Ks, _ = A.sequential_K_list_pnsgd(num_requests=100, sigma=0.05, eps_target=0.01, consts=c, b=32, R=100.0)
        assert metrics["k_lists"]["32"]["0.05"] == Ks
        assert set(metrics["k_lists"]) == {"32", "128", "full"}
        assert metrics["retraining_epochs"]["128"]["1"] == 100 * 100


def test_rows_used_rule():
    assert main_sgd.rows_used(11982, [128, 256, 512, "full"], reference_rows=11264) == 11264
    assert main_sgd.rows_used(11982, [100, "full"], reference_rows=11264) == 11900    # 100 does not divide 11264
    assert main_sgd.rows_used(267, [32, 128, "full"]) == 256
    assert main_sgd.rows_used(267, ["full"]) == 267
    assert main_sgd.rows_used(50000, [32, 128, 512]) == 49664
    assert main_sgd.default_burn_in("sequential", 128) == 100 and main_sgd.default_burn_in("sequential", "full") == 1000
    assert main_sgd.default_burn_in("paint_unlearning_sigma", 64) == 100     # nearest tabulated: 32 / 128 tie -> larger T


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("argv, needle", [
    (["--sequential", "1", "--batch_size", "0"], "'0' must be an integer >= 1 or 'full'"),
    (["--sequential", "1", "--batch_size", "512"], "--batch_size 512 is larger than n = 267"),
    (["--sequential", "1", "--batch_size", "128", "128"], "--batch_size lists 128 more than once"),
    (["--sequential", "1", "--batch_size", "100", "--n", "11264", "--plan_only"], "--batch_size 100 does not divide"),
    (["--sequential", "1", "--batch_size", "96", "128"], "least common multiple 384 exceeds n = 267"),
    ([], "no experiment chosen"),
    (["--sequential", "1", "--paint_unlearning_sigma", "1"], "--sequential and --paint_unlearning_sigma chosen"),
    (["--sequential", "1", "--sigma_list", "0.1"], "--sigma_list does not apply to --sequential"),
    (["--sequential", "1", "--eps", "1", "2"], "takes one eps per request"),
    (["--sequential", "1", "--smoothness", "data"], "--smoothness data is refused for mini-batches"),
    (["--sequential", "1", "--requests", "300"], "--requests 300 replaces 300 rows but n = 256"),
    (["--retrain_noiseless", "1", "--S", "256"], "--S 256 is not below n = 256"),
    (["--compare_baseline_nonconvergent", "1", "--q", "1"], "'1' must be a Holder exponent > 1"),
    (["--sequential", "1", "--n", "11264"], "--n 11264 loads no data"),
    # one swept value under two spellings: the run folder would key both "0.1" (results.json_key)
    (["--paint_unlearning_sigma", "1", "--sigma_list", "0.1", "0.1000001"], "--sigma_list 0.1 0.1000001 repeats a value"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, needle):
    assert main_sgd.main(["--dataset", "DIGITS", *argv, "--result_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "SGD").exists()


@pytest.mark.needs_fashion
def test_retrain_noiseless_data_smoothness_covers_the_largest_default_removal(tmp_path):
    # without --S the run replaces up to max(REMOVE_LIST) = 1000 rows, so a data-dependent L must cover
    # lambda_max(X^T X / n) + 1000 / n (Weyl), not the + 1/n of a single removal
    from utils import data as data_mod

    run(tmp_path, "--dataset", "FASHION", "--retrain_noiseless", "1", "--batch_size", "full",
        "--smoothness", "data", "--plan_only")
    metrics, _ = run_folder(tmp_path, "retrain_noiseless", dataset="FASHION", plan_only=True)
    X = data_mod.load_dataset("FASHION").X_train
    n = X.shape[0]
    lam_max = np.linalg.eigvalsh(X.T @ X / n)[-1] + max(main_sgd.REMOVE_LIST) / n
    assert lam_max < 1  # the cap at 1 does not hide the difference
    lam = data_mod.spec("FASHION").default_lam
    assert metrics["constants"]["L"] == pytest.approx(lam_max / 4 + lam * n, rel=1e-9)
