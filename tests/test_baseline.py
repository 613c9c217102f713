"""baseline.py / baseline_multiclass.py end to end on DIGITS (bundled with scikit-learn), in-process.

Reference values: the accountant (tested against docs/METHOD.md §11 on its own), closed forms written
out here (D2D noise, cumulative steps, chain-step counts), docs/METHOD.md §11.2 for --find_k, scikit-learn for
the noiseless optimum, and the paper's qualitative Fig 3a result with fixed seeds.
"""
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

import baseline
import baseline_multiclass
from faults import interrupt_at_call
from utils import accountant as A
from utils import data as data_mod
from utils import plots
from utils import results

torch = pytest.importorskip("torch")

DIGITS_N, DIGITS_D, DIGITS_LAM, DIGITS_MULTI_N = 267, 64, 1e-4, 1347
PUBLISHED_SIGMA_K1 = {  # smallest sigma for K = 1, eps = 0.05 .. 5, closed-form L (docs/METHOD.md §11.2)
    "MNIST": (11982, [0.187157, 0.0936968, 0.0189265, 0.00957769, 0.00489947, 0.00208236]),
    "CIFAR10_MULTI": (50000, [0.047125, 0.0235883, 0.00475856, 0.00240437, 0.00122653, 0.000517826]),
}


def digits_consts(**kw):
    return A.make_constants(n=DIGITS_N, lam=DIGITS_LAM, M=1.0, d=DIGITS_D, **kw)


def run_folder(tmp_path, mode, dataset="DIGITS"):
    folder = Path(results.resolve_run_dir(tmp_path / "LMC" / dataset / mode))  # the run `latest` names
    for name in ("config.json", "metrics.json", "arrays.npz", "log.txt", "figure.png", "figure.pdf"):
        assert (folder / name).is_file(), name
    assert not (folder / "parts").exists()
    metrics = json.loads((folder / "metrics.json").read_text())       # strict JSON: no NaN / Infinity
    json.loads((folder / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    with np.load(folder / "arrays.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return folder, metrics, arrays


def sigma_1_closed_form(c, K, eps):
    """docs/METHOD.md §8 written out: 4 sqrt(2) M g^K / (m n (1 - g^K) (sqrt(log(1/delta) + eps) - sqrt(log(1/delta))))."""
    g, ld = (c.L - c.m) / (c.L + c.m), math.log(c.n)
    return 4 * math.sqrt(2) * c.M * g ** K / (c.m * c.n * (1 - g ** K) * (math.sqrt(ld + eps) - math.sqrt(ld)))


def sigma_2_closed_form(c, K, eps):
    g, l2 = (c.L - c.m) / (c.L + c.m), 2 * math.log(2 * c.n)
    return 8 * c.M * g ** K / (c.m * c.n * (1 - g ** K) * (math.sqrt(l2 + 3 * eps) - math.sqrt(l2 + 2 * eps)))


def check_stats(record, acc):
    acc = np.asarray(acc, dtype=float)
    assert record["trials"] == acc.size
    assert record["mean"] == pytest.approx(acc.mean(), abs=1e-12)
    assert record["std"] == pytest.approx(acc.std(ddof=1), abs=1e-12)
    assert record["se"] == pytest.approx(acc.std(ddof=1) / math.sqrt(acc.size), abs=1e-12)


def sklearn_accuracy(lam):
    """Test accuracy of the exact regularised optimum: mean logistic loss + (lam n / 2)||w||^2, no intercept."""
    from sklearn.linear_model import LogisticRegression

    ds = data_mod.load_dataset("DIGITS")
    clf = LogisticRegression(C=1.0 / (lam * ds.n * ds.n), fit_intercept=False, tol=1e-12, max_iter=10000)
    clf.fit(ds.X_train, ds.y_train)
    return float(np.mean((ds.X_test @ clf.coef_.ravel() > 0) == (ds.y_test > 0)))


# ---------------------------------------------------------------- Fig 3a
def test_fig3a_end_to_end_matches_accountant_and_reproduces_the_papers_result(tmp_path):
    Ks, eps_list, trials = [1, 2], [0.5, 2.0], 50
    argv = ["--dataset", "DIGITS", "--K", *map(str, Ks), "--eps", "0.5", "2", "--trials", str(trials),
            "--burn_in", "auto", "--result_dir", str(tmp_path)]
    assert baseline.main(argv) == 0
    folder, metrics, arrays = run_folder(tmp_path, "baseline")
    c = digits_consts()
    assert metrics["plan_only"] is False and metrics["schema_version"] >= 1 and metrics["S"] == 1
    assert metrics["constants"]["L"] == pytest.approx(0.25 + DIGITS_LAM * DIGITS_N)
    assert arrays["lmc_unlearn"].shape == arrays["d2d"].shape == (len(Ks), len(eps_list), trials)
    for i, K in enumerate(Ks):
        for j, eps in enumerate(eps_list):
            cell = metrics["settings"][str(K)][format(eps, "g")]
            sigma = A.smallest_sigma_pngd(K=K, eps_target=eps, S=1, consts=c)
            assert cell["K"] == K and cell["sigma"] == pytest.approx(sigma, rel=1e-12)
            assert cell["alpha"] == pytest.approx(A.dp_epsilon_unlearn(K=K, S=1, sigma=sigma, consts=c)[1], rel=1e-9)
            assert A.dp_epsilon_unlearn(K=K, S=1, sigma=cell["sigma"], consts=c)[0] <= eps
            assert cell["d2d_sigma_1"] == pytest.approx(sigma_1_closed_form(c, K, eps), rel=1e-12)
            assert arrays["sigma"][i, j] == cell["sigma"]
            for what in ("lmc_unlearn", "lmc_retrain", "lmc_learn", "d2d"):
                check_stats(cell[what], arrays[what][i, j])
    lu_certs = [r for r in metrics["certificates"] if r["method"] == "langevin"]
    assert [(r["K"], r["eps_target"]) for r in lu_certs] == [(K, e) for K in Ks for e in eps_list]
    assert all(r["eps"] <= r["eps_target"] and r["n"] == DIGITS_N and r["data_dependent_L"] is False for r in lu_certs)

    # the noiseless reference and D2D's learning are the regularised optimum (clipping never fires at M = 1)
    optimum = sklearn_accuracy(DIGITS_LAM)
    assert metrics["noiseless_accuracy"] == pytest.approx(optimum, abs=1.01 / 90)
    assert metrics["d2d_learn_accuracy"] == pytest.approx(optimum, abs=1.01 / 90)
    # every phase on its own clock: the noiseless reference is neither learning nor D2D
    assert {"learn", "unlearn", "retrain", "d2d", "noiseless", "total"} <= metrics["wall_clock_seconds"].keys()

    # the paper's result (Fig 3a): unlearning matches retraining at a moderate eps, D2D falls far below
    for K in map(str, Ks):
        u, r = metrics["settings"][K]["2"]["lmc_unlearn"], metrics["settings"][K]["2"]["lmc_retrain"]
        assert abs(u["mean"] - r["mean"]) <= 3 * math.hypot(u["se"], r["se"])
        lu, d2d = metrics["settings"][K]["0.5"]["lmc_unlearn"], metrics["settings"][K]["0.5"]["d2d"]
        assert lu["mean"] - d2d["mean"] > 3 * math.hypot(lu["se"], d2d["se"])

    # the figure redraws from the saved folder alone
    os.remove(folder / "figure.png")
    assert plots.main([str(folder)]) == 0 and (folder / "figure.png").is_file()


def test_fig3a_plan_only_runs_no_chain_and_counts_chain_steps(tmp_path, capsys):
    trials, T = 7, 60
    argv = ["--dataset", "DIGITS", "--plan_only", "--trials", str(trials), "--burn_in", str(T),
            "--result_dir", str(tmp_path)]
    assert baseline.main(argv) == 0
    _, metrics, arrays = run_folder(tmp_path, "baseline")
    assert metrics["plan_only"] is True and not (tmp_path / "cache").exists()
    c = digits_consts()
    cells = [cell for per_k in metrics["settings"].values() for cell in per_k.values()]
    assert len(cells) == 18 and all("lmc_unlearn" not in cell for cell in cells)
    assert metrics["K_values"] == [1, 2, 5] and metrics["eps_values"] == [0.05, 0.1, 0.5, 1, 2, 5]
    for cell in cells:
        assert cell["sigma"] == pytest.approx(A.smallest_sigma_pngd(K=cell["K"], eps_target=cell["epsilon"], S=1,
                                                                    consts=c), rel=1e-12)
    # learn (one per distinct sigma) + unlearn K + retrain T, per trial; D2D and the noiseless reference: one chain
    expected = trials * (18 * T + sum(K + T for K in (1, 2, 5) for _ in range(6))) + 2 * T + (1 + 2 + 5)
    assert metrics["total_chain_steps"] == expected
    assert f"total chain-steps: {expected:,}" in capsys.readouterr().out
    assert arrays["sigma"].shape == (3, 6) and "lmc_unlearn" not in arrays


# ---------------------------------------------------------------- Fig 3b
def test_sequential2_end_to_end_k_lists_accuracies_and_d2d(tmp_path):
    trials, sizes, ifacs, num_remove = 6, [5, 10], [1.0, 2.0], 20
    argv = ["--dataset", "DIGITS", "--sequential2", "1", "--S", "5", "10", "--num_remove", str(num_remove),
            "--ifac", "1", "2", "--trials", str(trials), "--burn_in", "auto", "--result_dir", str(tmp_path)]
    assert baseline.main(argv) == 0
    _, metrics, arrays = run_folder(tmp_path, "sequential2")
    c = digits_consts()
    assert metrics["sigma"] == 0.03 and metrics["epsilon"] == 1 and metrics["form"] == "paper"
    for S in sizes:
        Ks = A.sequential_K_list_pngd(num_requests=num_remove // S, S=S, sigma=0.03, eps_target=1.0, consts=c)
        key = str(S)
        assert metrics["lmc_k_lists"][key] == Ks and arrays[f"lmc_k_list_S{S}"].tolist() == Ks
        assert metrics["lmc_accumulated_steps"][key] == list(np.cumsum(Ks))
        assert metrics["lmc_removed_points"][key] == list(range(S, num_remove + 1, S))
        assert all(e <= 1.0 for e in metrics["lmc_eps_per_request"][key])
        acc = arrays[f"lmc_acc_S{S}"]
        assert acc.shape == (len(Ks), trials)
        assert metrics["lmc_accuracy_per_request"][key] == pytest.approx(acc.mean(axis=1).tolist(), abs=1e-12)
        check_stats(metrics["lmc_final"][key], acc[-1])
        check_stats(metrics["lmc_retrain"][key], arrays[f"lmc_retrain_S{S}"])
        # sigma = 0.03 on DIGITS keeps the accuracy near the noiseless optimum (~0.93), as in the paper
        assert metrics["lmc_final"][key]["mean"] > 0.85
    for f in ifacs:
        Ks = A.d2d_sequential_K_list(num_requests=num_remove, f=f, consts=c)
        key = format(f, "g")
        assert metrics["d2d_k_lists"][key] == Ks and metrics["d2d_accumulated_steps"][key] == list(np.cumsum(Ks))
        assert metrics["d2d_sigma_2"][key] == pytest.approx([sigma_2_closed_form(c, K, 1.0) for K in Ks], rel=1e-12)
        acc = arrays[f"d2d_acc_f{key}"]
        assert acc.shape == (num_remove, trials)
        check_stats(metrics["d2d_final"][key], acc[-1])
    check_stats(metrics["lmc_learn"], arrays["lmc_learn"])
    assert {r["method"] for r in metrics["certificates"]} == {"langevin", "d2d"}


def spy_on_advance(monkeypatch):
    """Record every Lab.advance call: phase, steps, sigma, eta, input w, output w, training features X."""
    from utils import experiments

    calls, real = [], experiments.Lab.advance

    def advance(self, w, task, *, steps, sigma, key, phase="run", eta=None, **kw):
        out = real(self, w, task, steps=steps, sigma=sigma, key=key, phase=phase, eta=eta, **kw)
        calls.append({"phase": phase, "steps": steps, "sigma": sigma, "eta": eta, "w": w, "out": out, "X": task.X})
        return out

    monkeypatch.setattr(experiments.Lab, "advance", advance)
    return calls


def changed_rows(X1, X2) -> int:
    return int((X1 != X2).any(dim=1).sum())


def test_each_request_runs_exactly_its_steps_and_continues_the_chains(tmp_path, monkeypatch):
    calls = spy_on_advance(monkeypatch)
    trials, T = 6, 40
    argv = ["--dataset", "DIGITS", "--sequential2", "1", "--S", "5", "--num_remove", "15", "--ifac", "1",
            "--trials", str(trials), "--burn_in", str(T), "--no_cache", "--result_dir", str(tmp_path)]
    assert baseline.main(argv) == 0
    c = digits_consts()
    Ks = A.sequential_K_list_pngd(num_requests=3, S=5, sigma=0.03, eps_target=1.0, consts=c)
    d2d_Ks = A.d2d_sequential_K_list(num_requests=15, f=1.0, consts=c)
    learn = [x for x in calls if x["phase"] == "learn" and x["sigma"] > 0]
    lmc = [x for x in calls if x["phase"] == "unlearn" and x["sigma"] > 0]
    d2d_learn, *d2d = [x for x in calls if x["phase"] == "d2d"]
    assert [x["steps"] for x in learn] == [T] and [x["steps"] for x in lmc] == Ks     # request s runs K_s, no shift
    assert lmc[0]["w"] is learn[0]["out"] or torch.equal(lmc[0]["w"], learn[0]["out"])
    assert all(lmc[s + 1]["w"] is lmc[s]["out"] for s in range(len(Ks) - 1))          # the chains continue
    assert d2d_learn["steps"] == T and d2d_learn["w"].shape[0] == 1 and not d2d_learn["w"].any()   # from w0 = 0
    assert [x["steps"] for x in d2d] == d2d_Ks and all(x["eta"] == c.d2d_step for x in [d2d_learn] + d2d)
    assert d2d[0]["w"] is d2d_learn["out"] and all(x["sigma"] == 0 for x in d2d)
    # consecutive datasets differ in exactly S rows; retraining runs on the last one
    datasets = [learn[0]["X"]] + [x["X"] for x in lmc]
    assert [changed_rows(a, b) for a, b in zip(datasets, datasets[1:])] == [5, 5, 5]
    assert changed_rows(datasets[0], datasets[-1]) == 15
    retrain = [x for x in calls if x["phase"] == "retrain"]
    assert len(retrain) == 1 and torch.equal(retrain[0]["X"], datasets[-1])
    d2d_sets = [learn[0]["X"]] + [x["X"] for x in d2d]
    assert all(changed_rows(a, b) == 1 for a, b in zip(d2d_sets, d2d_sets[1:]))
    for i in range(len(d2d_Ks) - 1):    # published-state D2D: N(0, sigma_2(K_i)^2) is added to the carried state
        noise = (d2d[i + 1]["w"] - d2d[i]["out"]).double()
        assert noise.shape == (trials, DIGITS_D)
        assert noise.std().item() == pytest.approx(sigma_2_closed_form(c, d2d_Ks[i], 1.0), rel=0.2)


def test_fig3a_unlearns_exactly_K_steps_from_the_learned_chains(tmp_path, monkeypatch):
    calls = spy_on_advance(monkeypatch)
    argv = ["--dataset", "DIGITS", "--K", "1", "5", "--eps", "1", "--trials", "4", "--burn_in", "30", "--no_cache",
            "--result_dir", str(tmp_path)]
    assert baseline.main(argv) == 0
    c = digits_consts()
    sigmas = {K: A.smallest_sigma_pngd(K=K, eps_target=1.0, S=1, consts=c) for K in (1, 5)}
    learn = {x["sigma"]: x["out"] for x in calls if x["phase"] == "learn" and x["sigma"] > 0}
    lmc = [x for x in calls if x["phase"] == "unlearn" and x["sigma"] > 0]
    assert [(x["steps"], x["sigma"]) for x in lmc] == [(K, sigmas[K]) for K in (1, 5)]
    assert all(torch.equal(x["w"], learn[x["sigma"]]) for x in lmc)
    retrain = [x for x in calls if x["phase"] == "retrain"]
    assert sorted((x["steps"], x["sigma"]) for x in retrain) == sorted((30, s) for s in sigmas.values())
    D = next(x["X"] for x in calls if x["phase"] == "learn")
    assert all(changed_rows(D, x["X"]) == 1 for x in lmc + retrain)     # unlearning and retraining use D'
    assert all(torch.equal(x["X"], lmc[0]["X"]) for x in lmc + retrain)
    d2d_learn, *d2d = [x for x in calls if x["phase"] == "d2d"]
    assert d2d_learn["steps"] == 30 and [x["steps"] for x in d2d] == [1, 5]
    assert all(x["eta"] == c.d2d_step and x["sigma"] == 0 and x["w"].shape[0] == 1 for x in [d2d_learn] + d2d)
    assert all(torch.equal(x["w"], d2d_learn["out"]) and torch.equal(x["X"], lmc[0]["X"]) for x in d2d)


def test_sequential2_rerun_is_bit_identical_without_cache(tmp_path):
    argv = ["--dataset", "DIGITS", "--sequential2", "1", "--S", "10", "--num_remove", "20", "--ifac", "1",
            "--trials", "4", "--burn_in", "30", "--no_cache"]
    runs = []
    for name in ("a", "b"):
        assert baseline.main(argv + ["--result_dir", str(tmp_path / name)]) == 0
        runs.append(run_folder(tmp_path / name, "sequential2")[2])
    assert runs[0].keys() == runs[1].keys()
    for key in runs[0]:
        np.testing.assert_array_equal(runs[0][key], runs[1][key])


def test_sequential2_plan_only_defaults_and_mironov_form(tmp_path, capsys):
    T = 50
    argv = ["--dataset", "DIGITS", "--sequential2", "1", "--plan_only", "--burn_in", str(T), "--trials", "3",
            "--mironov", "--result_dir", str(tmp_path)]
    assert baseline.main(argv) == 0
    _, metrics, _ = run_folder(tmp_path, "sequential2")
    c = digits_consts()
    lists = {S: A.sequential_K_list_pngd(num_requests=100 // S, S=S, sigma=0.03, eps_target=1.0, consts=c,
                                         form="mironov") for S in (5, 10, 20)}
    d2d = {f: A.d2d_sequential_K_list(num_requests=100, f=f, consts=c) for f in (1.0, 1.5, 2.0)}
    assert metrics["form"] == "mironov" and metrics["S_values"] == [5, 10, 20]
    assert metrics["lmc_k_lists"] == {str(S): Ks for S, Ks in lists.items()}
    assert metrics["d2d_k_lists"] == {"1": d2d[1.0], "1.5": d2d[1.5], "2": d2d[2.0]}
    # D2D learns one chain; each stream's first request continues it, the later ones the 3 trials' noisy copies
    expected = (3 * (T + sum(sum(Ks) + T for Ks in lists.values())) + T
                + sum(Ks[0] + 3 * (sum(Ks) - Ks[0]) for Ks in d2d.values()))
    assert metrics["total_chain_steps"] == expected
    assert f"total chain-steps: {expected:,}" in capsys.readouterr().out
    assert metrics["lmc_final"] == {} and not (tmp_path / "cache").exists()
    # one-sided: said in the warnings and in every Langevin certificate, never passed off as a certificate
    assert any("one direction only" in w for w in metrics["warnings"])
    lmc_certs = [x for x in metrics["certificates"] if x.get("method") == "langevin"]
    assert lmc_certs and all("not a certificate" in x["bound"] for x in lmc_certs)


def test_sequential2_drops_a_default_size_the_stream_cannot_take(tmp_path):
    argv = ["--dataset", "DIGITS", "--sequential2", "1", "--num_remove", "10", "--plan_only",
            "--result_dir", str(tmp_path)]
    assert baseline.main(argv) == 0
    folder, metrics, _ = run_folder(tmp_path, "sequential2")
    assert metrics["S_values"] == [5, 10] and set(metrics["lmc_k_lists"]) == {"5", "10"}
    assert "S=20 does not divide --num_remove 10" in (folder / "log.txt").read_text()


# ---------------------------------------------------------------- --find_k
@pytest.mark.parametrize("script, dataset", [(baseline, "MNIST"), (baseline_multiclass, "CIFAR10_MULTI")])
def test_find_k_with_n_needs_no_data_and_reproduces_method_11_2(tmp_path, monkeypatch, script, dataset):
    monkeypatch.setattr(data_mod, "load_dataset", lambda *a, **k: pytest.fail("--n must not load data"))
    n, published = PUBLISHED_SIGMA_K1[dataset]
    argv = ["--find_k", "1", "--dataset", dataset, "--n", str(n), "--result_dir", str(tmp_path)]
    assert script.main(argv) == 0
    _, metrics, arrays = run_folder(tmp_path, "find_k", dataset)
    table = metrics["sigma_table"]
    assert [(r["K"], r["epsilon"]) for r in table] == [(K, e) for K in (1, 2, 5) for e in (0.05, 0.1, 0.5, 1, 2, 5)]
    assert [r["sigma"] for r in table if r["K"] == 1] == pytest.approx(published, rel=1e-5)
    assert arrays["sigma"][0].tolist() == [r["sigma"] for r in table if r["K"] == 1]
    multi = script is baseline_multiclass
    assert metrics["constants"]["n"] == n and metrics["constants"]["M"] == (2.0 if multi else 1.0)
    c = A.make_constants(n=n, lam=1e-6, M=2.0 if multi else 1.0, num_classes=10 if multi else 2)
    for r in table:   # every sigma certifies its target, and K steps are really needed at 1e-5 below it
        assert A.dp_epsilon_unlearn(K=r["K"], S=1, sigma=r["sigma"], consts=c)[0] <= r["epsilon"]
        assert A.dp_epsilon_unlearn(K=r["K"], S=1, sigma=r["sigma"] * (1 - 1e-5), consts=c)[0] > r["epsilon"]
    assert len(metrics["certificates"]) == len(table)


# ---------------------------------------------------------------- multiclass
def test_multiclass_fig3a_and_sequential_plan_on_digits_multi(tmp_path):
    argv = ["--dataset", "DIGITS_MULTI", "--K", "1", "--eps", "1", "--trials", "6", "--burn_in", "auto",
            "--result_dir", str(tmp_path)]
    assert baseline_multiclass.main(argv) == 0
    _, metrics, arrays = run_folder(tmp_path, "baseline", "DIGITS_MULTI")
    c = A.make_constants(n=DIGITS_MULTI_N, lam=DIGITS_LAM, M=2.0, num_classes=10, d=DIGITS_D)
    cell = metrics["settings"]["1"]["1"]
    assert metrics["constants"]["L"] == pytest.approx(1 + DIGITS_LAM * DIGITS_MULTI_N)
    assert metrics["constants"]["M"] == 2
    assert cell["sigma"] == pytest.approx(A.smallest_sigma_pngd(K=1, eps_target=1.0, S=1, consts=c), rel=1e-12)
    assert cell["d2d_sigma_1"] == pytest.approx(sigma_1_closed_form(c, 1, 1.0), rel=1e-12)
    check_stats(cell["lmc_unlearn"], arrays["lmc_unlearn"][0, 0])
    assert 0.1 < metrics["noiseless_accuracy"] <= 1.0 and arrays["lmc_unlearn"].shape == (1, 1, 6)

    argv = ["--dataset", "DIGITS_MULTI", "--sequential2", "1", "--plan_only", "--result_dir", str(tmp_path)]
    assert baseline_multiclass.main(argv) == 0
    _, metrics, _ = run_folder(tmp_path, "sequential2", "DIGITS_MULTI")
    # D2D's d is the model's parameter count (64 x 10) by default, the feature dimension with --d2d_dim data
    wider = A.make_constants(n=DIGITS_MULTI_N, lam=DIGITS_LAM, M=2.0, num_classes=10, d=DIGITS_D * 10)
    assert metrics["d2d_k_lists"]["1"] == A.d2d_sequential_K_list(num_requests=100, f=1.0, consts=wider)
    assert metrics["d2d_dim"] == {"rule": "params", "d": DIGITS_D * 10}
    assert metrics["d2d_k_lists"]["1"] != A.d2d_sequential_K_list(num_requests=100, f=1.0, consts=c)
    assert baseline_multiclass.main(argv + ["--d2d_dim", "data"]) == 0
    _, metrics, _ = run_folder(tmp_path, "sequential2", "DIGITS_MULTI")
    assert metrics["d2d_k_lists"]["1"] == A.d2d_sequential_K_list(num_requests=100, f=1.0, consts=c)
    assert metrics["d2d_dim"] == {"rule": "data", "d": DIGITS_D}


def test_d2d_dimension_for_cifar10_multi_is_the_parameter_count(tmp_path):
    # 10-class CIFAR-10 features: d = 512, 5120 parameters. Neel et al.'s I_min and term2 grow with the
    # parameter count: I_min 98 (86 with d), 100 single-point requests 13188 steps (11884 with d).
    argv = ["--dataset", "CIFAR10_MULTI", "--sequential2", "1", "--plan_only", "--n", "50000", "--dim", "512",
            "--lam", "1e-6", "--S", "1", "--result_dir", str(tmp_path)]
    assert baseline_multiclass.main(argv) == 0
    _, metrics, _ = run_folder(tmp_path, "sequential2", "CIFAR10_MULTI")
    c = A.make_constants(n=50000, lam=1e-6, M=2.0, num_classes=10, d=5120)
    assert A.d2d_I_min(eps=1.0, d=5120, gamma=c.gamma, delta=c.delta) == 98
    assert sum(metrics["d2d_k_lists"]["1"]) == 13188 and metrics["d2d_dim"]["d"] == 5120
    assert baseline_multiclass.main(argv + ["--d2d_dim", "data"]) == 0
    _, metrics, _ = run_folder(tmp_path, "sequential2", "CIFAR10_MULTI")
    assert sum(metrics["d2d_k_lists"]["1"]) == 11884 and metrics["d2d_dim"]["d"] == 512


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("script, argv, needle", [
    (baseline, ["--sequential2", "1", "--eps", "1", "2"], "--eps 1.0 2.0"),
    (baseline, ["--S", "267"], "--S 267 is not below n=267"),
    (baseline, ["--sequential2", "1", "--find_k", "1"], "different modes"),
    (baseline, ["--sequential2", "1", "--K", "3"], "--K does not apply to --sequential2 1"),
    (baseline, ["--ifac", "2"], "--ifac does not apply to the default mode"),
    (baseline, ["--sequential2", "1", "--S", "7"], "--S 7: S=7 does not divide --num_remove 100"),
    (baseline, ["--sequential2", "1", "--num_remove", "300"], "--num_remove 300 is not below n=267"),
    (baseline, ["--sequential2", "1", "--sigma", "0"], "--sigma 0"),
    (baseline, ["--sigma", "1e-320"], "--sigma does not apply to the default mode"),   # it named the folder only
    (baseline, ["--find_k", "1", "--sigma", "0.1"], "--sigma does not apply to --find_k 1"),
    (baseline, ["--eps", "1", "1.0"], "repeats a value"),
    (baseline, ["--eps", "0"], "'0'"),
    (baseline, ["--S", "1", "2"], "single value"),
    (baseline, ["--n", "100"], "--n 100"),
    (baseline_multiclass, ["--dataset", "DIGITS"], "use baseline.py"),
    (baseline, ["--dataset", "DIGITS_MULTI"], "use baseline_multiclass.py"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, script, argv, needle):
    if "--dataset" not in argv:
        argv = ["--dataset", "DIGITS"] + argv
    assert script.main(argv + ["--plan_only", "--result_dir", str(tmp_path)]
                       if "--n" not in argv else argv + ["--result_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and ": error: " in err
    assert not (tmp_path / "LMC").exists()


def test_interrupted_run_resumes_to_the_same_arrays(tmp_path, monkeypatch, capsys):
    from utils import experiments

    argv = ["--dataset", "DIGITS", "--K", "1", "--eps", "0.5", "2", "--trials", "4", "--burn_in", "30", "--no_cache"]
    assert baseline.main(argv + ["--result_dir", str(tmp_path / "clean")]) == 0
    clean = run_folder(tmp_path / "clean", "baseline")[2]

    # the 5th accuracy call is inside the second setting: the first one is saved as a finished part
    real = interrupt_at_call(monkeypatch, experiments.Lab, "accuracy", 5)
    assert baseline.main(argv + ["--result_dir", str(tmp_path / "run")]) == 130
    assert "--resume" in capsys.readouterr().err
    parts = Path(results.run_dirs(tmp_path / "run" / "LMC" / "DIGITS" / "baseline")[0]) / "parts"
    assert [p.name for p in parts.iterdir()] == ["lmc_K1_eps0.5.npz"]
    counted = []
    monkeypatch.setattr(experiments.Lab, "accuracy", lambda self, w: counted.append(1) or real(self, w))
    assert baseline.main(argv + ["--result_dir", str(tmp_path / "run"), "--resume"]) == 0
    assert len(counted) == 3 + 4      # the saved setting is reused: 3 + 3 + D2D's 4 evaluations without it
    resumed = run_folder(tmp_path / "run", "baseline")[2]
    for key in clean:
        np.testing.assert_array_equal(clean[key], resumed[key])
