"""main_lmc.py / main_lmc_multiclass.py end to end on DIGITS (tiny trials and burn-in), plan-only runs
against docs/METHOD.md §5.2, and the one-line errors. Reference values come from the accountant's closed forms,
docs/METHOD.md §5.2 and a naive numpy gradient descent."""
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

import main_lmc
import main_lmc_multiclass
from faults import interrupt_at_call
from utils import accountant, plots, results

DIGITS_LAM = 1e-4          # the DIGITS default (utils.data)
DIGITS_N = 267             # 3 vs 8 training rows
FILES = ("config.json", "metrics.json", "arrays.npz", "figure.png", "figure.pdf", "log.txt")


def run(tmp_path, *argv, script=main_lmc):
    code = script.main([*argv, "--result_dir", str(tmp_path)])
    assert code == 0
    mode = next(a[2:] for a in argv if a[2:] in main_lmc.MODES)
    dataset = argv[argv.index("--dataset") + 1]
    folder = Path(results.resolve_run_dir(tmp_path / "LMC" / dataset / mode))  # the run `latest` names
    for name in FILES:
        assert (folder / name).is_file(), name
    metrics = json.loads((folder / "metrics.json").read_text())   # strict JSON (no NaN/inf)
    config = json.loads((folder / "config.json").read_text())
    arrays = results.read_npz(str(folder / "arrays.npz"))
    assert metrics["schema_version"] == results.SCHEMA_VERSION and metrics["mode"] == mode
    assert not (folder / "parts").exists()
    return folder, metrics, config, arrays


def digits_consts(**kw):
    return accountant.make_constants(n=DIGITS_N, lam=DIGITS_LAM, M=1.0, **kw)


def assert_stats(stats, acc):
    acc = np.asarray(acc, dtype=np.float64)
    assert stats["trials"] == acc.size
    assert stats["mean"] == pytest.approx(acc.mean(), abs=1e-12)
    assert stats["std"] == pytest.approx(acc.std(ddof=1) if acc.size > 1 else 0.0, abs=1e-12)
    assert stats["se"] == pytest.approx(stats["std"] / math.sqrt(acc.size), abs=1e-12)


def key(v):
    return format(float(v), "g")


# ---------------------------------------------------------------- Fig 3c
def test_paint_unlearning_sigma_end_to_end(tmp_path):
    sigmas = [0.2, 1.0]
    folder, metrics, config, arrays = run(
        tmp_path, "--dataset", "DIGITS", "--paint_unlearning_sigma", "1", "--sigma", "0.03",
        "--sigma_list", *map(str, sigmas), "--trials", "6", "--burn_in", "40", "--seed", "3")
    c = digits_consts()
    S, eps = 100, 1.0
    assert metrics["S"] == S and metrics["eps"] == eps and config["flags"]["sigma"] == 0.03
    for i, sigma in enumerate(sigmas):
        k = key(sigma)
        assert metrics["K"][k] == accountant.minimal_K_pngd(sigma=sigma, eps_target=eps, S=S, consts=c)
        # eps_0 closed form: min_alpha a alpha + log(n)/(alpha - 1) = a + 2 sqrt(a log n)
        a = 4 * S ** 2 / (c.m * sigma ** 2 * DIGITS_N ** 2)
        assert metrics["epsilon0"][k] == pytest.approx(a + 2 * math.sqrt(a * math.log(DIGITS_N)), rel=1e-9)
        cert = metrics["certificates"][i]
        assert cert["K"] == metrics["K"][k] and cert["sigma"] == sigma and cert["eps"] <= eps
        for phase in ("learn", "retrain", "unlearn"):
            assert_stats(metrics["accuracy"][phase][k], arrays[f"acc_{phase}"][i])
    assert arrays["acc_unlearn"].shape == (2, 6)
    assert list(arrays["K"]) == [metrics["K"][key(s)] for s in sigmas]
    steps = sum(6 * (2 * 40 + metrics["K"][key(s)]) for s in sigmas)
    assert metrics["chain_steps"] == steps
    assert f"{steps:,} chain-steps" in (folder / "log.txt").read_text()
    # the figure is redrawn from the saved folder alone
    os.remove(folder / "figure.png")
    plots.draw(str(folder))
    assert (folder / "figure.png").is_file()


def test_plan_only_mnist_reproduces_method_5_2_minimal_K(tmp_path):
    sigmas = ["0.01", "0.05", "0.1", "0.2", "0.5", "1"]
    folder, metrics, _, arrays = run(
        tmp_path, "--lam", "1e-6", "--sigma", "0.03", "--dataset", "MNIST", "--paint_unlearning_sigma", "1",
        "--n", "11982", "--plan_only", "--sigma_list", *sigmas, "--S", "100", "--eps", "1")
    assert metrics["plan_only"] is True
    assert [metrics["K"][s] for s in sigmas] == [2546, 1738, 1378, 1006, 472, 1]
    assert "acc_unlearn" not in arrays and "accuracy" not in metrics
    assert not (tmp_path / "cache").exists()            # no chain ran


# ---------------------------------------------------------------- Fig 4
def test_paint_utility_epsilon_end_to_end(tmp_path):
    folder, metrics, _, arrays = run(
        tmp_path, "--dataset", "DIGITS", "--paint_utility_epsilon", "1", "--S", "1", "50",
        "--eps", "2", "0.5", "--trials", "4", "--burn_in", "40")
    c = digits_consts()
    assert metrics["S_list"] == [1, 50] and metrics["eps_list"] == [0.5, 2.0]
    for i, S in enumerate([1, 50]):
        for j, eps in enumerate([0.5, 2.0]):
            K = accountant.minimal_K_pngd(sigma=0.03, eps_target=eps, S=S, consts=c)
            assert metrics["K"][key(S)][key(eps)] == K == arrays["K"][i, j]
            assert_stats(metrics["accuracy"]["unlearn"][key(S)][key(eps)], arrays["acc_unlearn"][i, j])
    assert_stats(metrics["accuracy"]["learn"], arrays["acc_learn"])
    assert len(metrics["certificates"]) == 4


def naive_dp_unlearn(K, *, S, sigma, c):
    """min over a dense alpha grid of exp(-K eta m / alpha) eps_0(alpha) + log(1/delta)/(alpha - 1) (>= the true min)."""
    alpha = 1 + np.logspace(-6, 6, 400001)
    a = 4 * S ** 2 * c.M ** 2 / (c.m * sigma ** 2 * c.n ** 2)
    return float(np.min(np.exp(-K * c.eta * c.m / alpha) * a * alpha + math.log(1 / c.delta) / (alpha - 1)))


def test_fig4_default_plan_on_digits_is_minimal(tmp_path):
    """The default Fig 4 table on DIGITS (its S = 100, eps = 0.1 search once looped forever in the accountant)."""
    _, metrics, _, _ = run(tmp_path, "--dataset", "DIGITS", "--paint_utility_epsilon", "1", "--plan_only")
    c = digits_consts()
    assert metrics["S_list"] == [1, 50, 100] and metrics["eps_list"] == [0.1, 0.5, 1.0, 2.0, 5.0]
    for S, eps in ((100, 0.1), (50, 1.0), (1, 5.0)):
        K = metrics["K"][key(S)][key(eps)]
        assert naive_dp_unlearn(K, S=S, sigma=0.03, c=c) <= eps * (1 + 1e-6)
        assert K == 1 or naive_dp_unlearn(K - 1, S=S, sigma=0.03, c=c) > eps


# ---------------------------------------------------------------- Fig 5
def test_paint_utility_s_unlearning_matches_retraining(tmp_path):
    """Paper A's claim at a moderate setting: unlearned and retrained chains are equally accurate."""
    S_list, eps = [10, 60], 1.0
    _, metrics, _, arrays = run(
        tmp_path, "--dataset", "DIGITS", "--paint_utility_s", "1", "--S", *map(str, S_list), "--eps", "1",
        "--sigma", "0.03", "--trials", "16", "--burn_in", "80", "--seed", "1")
    c = digits_consts()
    acc = metrics["accuracy"]
    for i, S in enumerate(S_list):
        assert metrics["K"][key(eps)][key(S)] == accountant.minimal_K_pngd(sigma=0.03, eps_target=eps, S=S, consts=c)
        un, re = acc["unlearn"][key(eps)][key(S)], acc["retrain"][key(S)]
        assert_stats(un, arrays["acc_unlearn"][0, i])
        assert_stats(re, arrays["acc_retrain"][i])
        assert un["se"] > 0 and re["se"] > 0
        assert abs(un["mean"] - re["mean"]) <= 3 * math.hypot(un["se"], re["se"])
        assert un["mean"] > 0.85                        # DIGITS 3 vs 8 is easy: chance is 0.5


def test_default_S_too_large_for_digits_are_dropped_with_a_note(tmp_path):
    folder, metrics, _, _ = run(tmp_path, "--dataset", "DIGITS", "--paint_utility_s", "1", "--plan_only")
    assert metrics["S_list"] == [1, 10, 50, 100]
    assert set(metrics["K"]["1"]) == {"1", "10", "50", "100"}
    assert "note: default S 500 1000 dropped" in (folder / "log.txt").read_text()


def test_burn_in_auto_plan(tmp_path):
    """--burn_in auto: T per sigma from the contraction bound, and the chain-step total that follows."""
    _, metrics, _, _ = run(tmp_path, "--dataset", "DIGITS", "--paint_unlearning_sigma", "1", "--plan_only",
                           "--sigma_list", "0.1", "1", "--burn_in", "auto", "--trials", "7")
    c = digits_consts()
    total = 0
    for sigma in (0.1, 1.0):
        T, bound = accountant.burn_in_auto(sigma=sigma, m=c.m, M=c.M, eta=c.eta, dim=64)
        # 1% of the stationary radius, and T - 1 steps would not have reached it
        radius = math.sqrt(2 * sigma ** 2 * 64 / (c.m * (2 - c.eta * c.m)))
        assert bound <= 0.01 * radius < bound / (1 - c.eta * c.m)
        assert metrics["burn_in"][key(sigma)] == T and metrics["certificates"][int(sigma == 1)]["T"] == T
        total += 7 * (2 * T + metrics["K"][key(sigma)])
    assert metrics["chain_steps"] == total


def test_learned_chains_are_reused_across_modes(tmp_path):
    """Fig 4 then Fig 5 at the same sigma, T, trials and seed: the chains on D come from the cache."""
    common = ["--dataset", "DIGITS", "--S", "1", "--eps", "5", "--trials", "3", "--burn_in", "20"]
    _, _, _, fig4 = run(tmp_path, *common, "--paint_utility_epsilon", "1")
    cached = sorted(p.name for p in (tmp_path / "cache").glob("*.npz"))
    assert len(cached) == 1                               # the learning on D
    _, _, _, fig5 = run(tmp_path, *common, "--paint_utility_s", "1")
    after = sorted(p.name for p in (tmp_path / "cache").glob("*.npz"))
    assert set(cached) < set(after) and len(after) == 2   # + the retraining on D'_1 only
    np.testing.assert_array_equal(fig4["acc_learn"], fig5["acc_learn"])
    np.testing.assert_array_equal(fig4["acc_unlearn"], fig5["acc_unlearn"])   # same D'_1, same noise keys


# ---------------------------------------------------------------- noiseless retraining
def naive_noiseless_gd(X, y, *, T, eta, m):
    """Plain numpy: T steps of w <- w - eta (mean_i grad loss_i(w) + m w) from w = 0 (no clipping at M = 1)."""
    w = np.zeros(X.shape[1])
    for _ in range(T):
        s = (1 / (1 + np.exp(-y * (X @ w))) - 1) * y
        w = w - eta * (X.T @ s / len(y) + m * w)
    return w


def test_retrain_noiseless_end_to_end(tmp_path):
    T = 50
    _, metrics, _, arrays = run(tmp_path, "--dataset", "DIGITS", "--retrain_noiseless", "1", "--S", "1", "100",
                                "--burn_in", str(T), "--dtype", "float64", "--trials", "5")
    assert metrics["sigma"] == 0 and metrics["burn_in"] == T
    assert metrics["certificate"]["eps"] == "inf" and metrics["certificate"]["sigma"] == 0
    assert "no certificate" in metrics["certificate"]["bound"]
    assert arrays["acc_retrain"].shape == (2, 1)          # one chain: every trial would be identical
    for i, S in enumerate([1, 100]):
        assert_stats(metrics["accuracy"]["retrain"][key(S)], arrays["acc_retrain"][i])
    from utils import data

    ds = data.load_dataset("DIGITS")
    c = digits_consts()
    w = naive_noiseless_gd(ds.X_train, ds.y_train, T=T, eta=c.eta, m=c.m)
    expected = np.mean((ds.X_test @ w > 0) == (ds.y_test > 0))
    assert metrics["accuracy"]["learn"]["mean"] == pytest.approx(expected, abs=1e-12)
    assert metrics["chain_steps"] == T * 3


# ---------------------------------------------------------------- multiclass
def test_multiclass_wrapper_on_digits_multi(tmp_path):
    _, metrics, _, arrays = run(tmp_path, "--dataset", "DIGITS_MULTI", "--paint_utility_epsilon", "1",
                                "--S", "5", "--eps", "1", "--trials", "4", "--burn_in", "30",
                                script=main_lmc_multiclass)
    c = accountant.make_constants(n=1347, lam=DIGITS_LAM, M=2.0, num_classes=10)
    assert metrics["constants"]["M"] == 2.0 and metrics["constants"]["L"] == pytest.approx(1 + c.m)
    assert metrics["K"]["5"]["1"] == accountant.minimal_K_pngd(sigma=0.03, eps_target=1.0, S=5, consts=c)
    assert_stats(metrics["accuracy"]["unlearn"]["5"]["1"], arrays["acc_unlearn"][0, 0])
    assert arrays["acc_unlearn"].shape == (1, 1, 4)
    # ten classes, chance 0.1; at sigma = 0.03 the stationary noise on DIGITS_MULTI keeps it near 0.45
    assert metrics["accuracy"]["unlearn"]["5"]["1"]["mean"] > 0.3


def test_multiclass_plan_only_cifar10_multi_default(tmp_path):
    """The paper's command on CIFAR10_MULTI (default dataset of the wrapper), accounting only."""
    _, metrics, _, _ = run(tmp_path, "--lam", "1e-6", "--sigma", "0.015", "--dataset", "CIFAR10_MULTI",
                           "--paint_utility_s", "1", "--n", "50000", "--plan_only", script=main_lmc_multiclass)
    c = accountant.make_constants(n=50000, lam=1e-6, M=2.0, num_classes=10)
    assert c.L == pytest.approx(1.05)
    assert metrics["S_list"] == [1, 10, 50, 100, 500, 1000] and metrics["eps_list"] == [0.5, 1.0, 2.0]
    for e in ("0.5", "1", "2"):
        for S in (1, 1000):
            assert metrics["K"][e][str(S)] == accountant.minimal_K_pngd(sigma=0.015, eps_target=float(e), S=S,
                                                                         consts=c)


# ---------------------------------------------------------------- resume
def test_resume_after_interrupt_is_bit_identical(tmp_path, monkeypatch):
    argv = ["--dataset", "DIGITS", "--paint_unlearning_sigma", "1", "--sigma_list", "0.5", "1",
            "--trials", "3", "--burn_in", "30", "--no_cache"]
    _, _, _, reference = run(tmp_path / "a", *argv)

    from utils import experiments

    # at the 4th advance, learn, retrain, unlearn of sigma 0.5 are done
    advance = interrupt_at_call(monkeypatch, experiments.Lab, "advance", 4)
    assert main_lmc.main([*argv, "--result_dir", str(tmp_path / "b")]) == 130
    parts = Path(results.run_dirs(tmp_path / "b" / "LMC" / "DIGITS" / "paint_unlearning_sigma")[0]) / "parts"
    assert sorted(p.name for p in parts.iterdir()) == ["sigma=0.5.npz"]
    monkeypatch.setattr(experiments.Lab, "advance", advance)
    _, _, _, resumed = run(tmp_path / "b", *argv, "--resume")
    for name in ("acc_learn", "acc_retrain", "acc_unlearn"):
        np.testing.assert_array_equal(resumed[name], reference[name])


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("argv, message", [
    (["--dataset", "DIGITS"], "choose exactly one mode"),
    (["--dataset", "DIGITS", "--paint_utility_s", "1", "--retrain_noiseless", "1"], "choose exactly one mode"),
    (["--dataset", "DIGITS", "--paint_utility_s", "1", "--S", "300"], "--S 300 is not allowed"),
    (["--dataset", "DIGITS", "--paint_utility_s", "1", "--sigma_list", "0.1"], "--sigma_list does not apply to --paint_utility_s"),
    (["--dataset", "DIGITS", "--paint_unlearning_sigma", "1", "--eps", "1", "2"], "takes one value"),
    (["--dataset", "DIGITS", "--paint_utility_epsilon", "1", "--eps", "1", "1.0"], "repeats the value 1"),
    (["--dataset", "DIGITS", "--retrain_noiseless", "1", "--eps", "1"], "--eps does not apply to --retrain_noiseless"),
    (["--dataset", "DIGITS", "--paint_utility_s", "1", "--sigma", "0"], "--sigma 0 is not allowed"),
    (["--dataset", "DIGITS_MULTI", "--paint_utility_s", "1"], "use main_lmc_multiclass.py"),
    (["--dataset", "MNIST", "--paint_utility_s", "1", "--n", "100"], "works only with --plan_only"),
    (["--dataset", "DIGITS", "--paint_utility_s", "2"], "'2' is not allowed"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    assert main_lmc.main([*argv, "--result_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "LMC").exists()


def test_binary_dataset_refused_by_the_multiclass_script(tmp_path, capsys):
    assert main_lmc_multiclass.main(["--dataset", "DIGITS", "--paint_utility_s", "1",
                                     "--result_dir", str(tmp_path)]) == 2
    assert "use main_lmc.py" in capsys.readouterr().err


def test_data_smoothness_covers_the_largest_kept_default_S(tmp_path):
    # n = 600: the default S 1000 of paint_utility_s is dropped, so L covers lambda_max + 500/n (Weyl), the
    # largest S the run keeps, not the 1000 it would cover if defaults were not checked against n first
    rng = np.random.default_rng(3)
    X = rng.standard_normal((700, 40))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = np.where(X[:, 0] > 0, 1, -1)
    path = tmp_path / "mine.npz"
    np.savez(path, X_train=X[:600], y_train=y[:600], X_test=X[600:], y_test=y[600:])
    metrics = run(tmp_path, "--dataset", "MINE", "--features", str(path), "--paint_utility_s", "1",
                  "--smoothness", "data", "--lam", "1e-4", "--plan_only")[1]
    assert metrics["S_list"] == [1, 10, 50, 100, 500]
    lam_max = np.linalg.eigvalsh(X[:600].T @ X[:600] / 600)[-1] + 500 / 600
    assert lam_max < 1
    assert metrics["constants"]["L"] == pytest.approx(lam_max / 4 + 1e-4 * 600, rel=1e-9)
