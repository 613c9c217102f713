"""--bound gdp and the tight constants through the scripts, and the --L check against the data (issues 25, 26.2).

Reference values: the accountant's functions on the constants the run records, the data's smoothness bound
computed here from scratch (numpy eigenvalues), and the softmax / logistic curvature facts of docs/METHOD.md
§1.3 and §12.6."""
import json
import math

import numpy as np
import pytest

from utils import accountant as A
from utils import data


def _metrics(root):
    found = sorted(root.rglob("metrics.json"))
    assert len(found) == 1, found
    return json.loads(found[0].read_text())


def digits_L(m):
    """The data's own smoothness bound of DIGITS 3 vs 8, from first principles: 1/4 lambda_max(X^T X / n) + m."""
    X = data.load_dataset("DIGITS").X_train
    return 0.25 * float(np.linalg.eigvalsh(X.T @ X / X.shape[0])[-1]) + m


# ---------------------------------------------------------------- issue 26.2: --L below the data's smoothness
@pytest.mark.parametrize("script", ["main_lmc", "main_sgd"])
def test_an_L_below_the_datas_smoothness_is_refused_with_one_line(script, tmp_path, capsys):
    mod = __import__(script)
    mode = ["--paint_unlearning_sigma", "1", "--sigma_list", "0.5"]
    L_data = digits_L(1e-4 * 267)                      # full batch: all 267 rows, m = lam n
    if script == "main_sgd":
        mode = ["--sequential", "1", "--requests", "2", "--batch_size", "full"]
    argv = ["--dataset", "DIGITS", "--lam", "1e-4", "--plan_only", "--device", "cpu", *mode,
            "--result_dir", str(tmp_path / "r")]
    assert mod.main(argv + ["--L", "0.03"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--L 0.03" in err[0] and f"{L_data:.6f}"[:7] in err[0], err
    assert not (tmp_path / "r").exists()                         # nothing written
    # the data's own value (and the rounding margin of published values) is accepted
    assert mod.main(argv + ["--L", repr(L_data * (1 - 5e-7))]) == 0
    assert mod.main(argv + ["--L", repr(L_data * (1 - 2e-6))]) == 2


def test_L_without_data_is_a_warning(tmp_path):
    import main_lmc

    assert main_lmc.main(["--dataset", "MNIST", "--n", "11982", "--L", "0.03", "--plan_only", "--device", "cpu",
                          "--paint_unlearning_sigma", "1", "--result_dir", str(tmp_path)]) == 0
    m = _metrics(tmp_path)
    assert any("--L 0.03 is not checked against the data" in w for w in m["warnings"])


def test_unlearn_learn_refuses_an_L_below_the_datas(tmp_path, capsys, monkeypatch):
    import unlearn
    from tests.test_unlearn import _digits_file

    monkeypatch.setenv("UNLEARN_NO_PROGRESS", "1")
    features = _digits_file(tmp_path / "d.npz")
    st = tmp_path / "state"
    assert unlearn.main(["learn", "--features", features, "--state", str(st), "--L", "0.03", "--trials", "2",
                         "--burn_in", "3", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--L 0.03" in err[0] and "smoothness bound" in err[0]
    assert not st.exists()


# ---------------------------------------------------------------- --bound gdp in the scripts
def test_main_sgd_stream_with_gdp_certifies_mu_per_request(tmp_path):
    import main_sgd

    argv = ["--dataset", "MNIST", "--n", "11264", "--dim", "784", "--plan_only", "--device", "cpu", "--sequential", "1",
            "--requests", "4", "--batch_size", "128", "full", "--bound", "gdp", "--result_dir", str(tmp_path)]
    assert main_sgd.main(argv) == 0
    m = _metrics(tmp_path)
    c = A.make_constants(n=11264, lam=1e-6, M=1.0, tight=True)
    for cert in m["certificates"]:
        b = None if cert["b"] == 11264 else cert["b"]
        Ks = cert["K"]
        want = []
        for s in range(4):
            want.append(A.next_K_gdp(Ks=want, sizes=[1] * (s + 1), sigma=0.03, eps_target=1.0, consts=c, b=b))
        assert Ks == want
        assert cert["bound_mode"] == "gdp" and set(cert["bound_name"]) == {"GDP"} and max(cert["eps"]) <= 1.0
        mus = [A.gdp_mu(Ks=Ks[:s + 1], sizes=[1] * (s + 1), sigma=0.03, consts=c, b=b) for s in range(4)]
        np.testing.assert_allclose(cert["mu"], mus, rtol=1e-12)
        assert len(cert["reading"]) == 4 and "Phi(Phi^-1(0.05) + mu)" in cert["reading"][0]


def test_printed_tables_show_mu_where_gaussian_dp_gave_eps(tmp_path, capsys):
    """A Gaussian-DP certificate has no Renyi order (alpha is nan in the record): baseline's plan and --find_k
    tables and audit's per-K line print its mu instead, and paper's print alpha* as before; the log says that
    tight constants change eta only for softmax."""
    import audit
    import baseline

    flags = ["--dataset", "DIGITS", "--K", "1", "--eps", "1", "--device", "cpu", "--plan_only"]
    for bound in ("paper", "gdp"):
        for extra in ([], ["--find_k", "1"]):
            root = tmp_path / f"{bound}{len(extra)}"
            assert baseline.main([*flags, *extra, "--bound", bound, "--result_dir", str(root)]) == 0
            out = capsys.readouterr().out
            cert = _metrics(root)["certificates"][0]
            row = next(line for line in out.splitlines() if line.split()[:2] == ["1", "1"])
            if bound == "gdp":
                assert f"mu={cert['mu']:.4g}" in row.split() and "nan" not in out and "alpha*|mu" in out
                assert "tight constants" in out and "eta = 1/L differs" not in out     # binary: L = 1/4 + m
            else:
                assert f"{cert['alpha']:.4g}" in row or f"{cert['alpha']:.6g}" in row
    root = tmp_path / "audit"
    assert audit.main(["--dataset", "DIGITS", "--K", "0", "10", "--plan_only", "--device", "cpu", "--bound", "best",
                       "--result_dir", str(root)]) == 0
    out = capsys.readouterr().out
    mus = {c["K"]: c["mu"] for c in _metrics(root)["certificates"] if c["bound_mode"] == "best"}
    for K, mu in mus.items():
        line = next(line for line in out.splitlines() if line.strip().startswith(f"K={K}: certified eps"))
        assert line.endswith(f"(best mu={mu:.4g})"), line


def test_softmax_best_and_gdp_use_the_tight_constants_paper_keeps_the_papers(tmp_path):
    import main_lmc_multiclass

    runs = {}
    for bound in ("paper", "best", "gdp"):
        root = tmp_path / bound
        assert main_lmc_multiclass.main(["--dataset", "CIFAR10_MULTI", "--n", "50000", "--dim", "512", "--sigma",
                                         "0.015", "--paint_utility_s", "1", "--S", "100", "--eps", "1", "--plan_only",
                                         "--device", "cpu", "--bound", bound, "--result_dir", str(root)]) == 0
        runs[bound] = _metrics(root)
        config = json.loads(next(root.rglob("config.json")).read_text())
        assert config["derived"]["constants"]["tight"] is (bound != "paper")
    m = 50000 * 1e-6
    assert runs["paper"]["constants"]["L"] == pytest.approx(1 + m)        # the reference's value
    for bound in ("best", "gdp"):
        cst = runs[bound]["constants"]
        assert cst["L"] == pytest.approx(0.5 + m) and cst["eta"] == pytest.approx(1 / (0.5 + m))
        assert cst["grad_bound"] == pytest.approx(math.sqrt(2)) and cst["M"] == 2.0
    # issue 25: the two constants alone take the Renyi best from 53 steps to 24; Gaussian DP needs 19
    assert runs["paper"]["K"]["1"]["100"] == 1800
    assert runs["best"]["K"]["1"]["100"] == runs["gdp"]["K"]["1"]["100"] == 19
    tight = A.make_constants(n=50000, lam=1e-6, M=2.0, num_classes=10, tight=True)
    assert A.minimal_K_gdp(sigma=0.015, eps_target=1.0, S=100, consts=tight) == 19


def test_unlearn_gdp_state_removes_and_exports_k_chains_as_sqrt_k_mu(tmp_path, capsys, monkeypatch):
    import unlearn
    from tests.test_unlearn import ID0, _digits_file
    from utils import state as statefile

    monkeypatch.setenv("UNLEARN_NO_PROGRESS", "1")
    features = _digits_file(tmp_path / "d.npz")
    st = str(tmp_path / "state")
    assert unlearn.main(["learn", "--features", features, "--state", st, "--eps", "1", "--K", "5", "--burn_in", "5",
                         "--trials", "3", "--device", "cpu", "--bound", "gdp"]) == 0
    assert unlearn.main(["remove", "--state", st, "--ids", str(ID0 + 3)]) == 0
    out = capsys.readouterr().out
    meta = statefile.load(st).meta
    c, sigma = unlearn.constants_of(meta), meta["settings"]["sigma"]
    assert sigma == pytest.approx(A.smallest_sigma_gdp(K=5, eps_target=1.0, S=1, consts=c), rel=1e-12)
    cert = meta["requests"][-1]["certificate"]
    mu = A.gdp_mu(Ks=[cert["K"]], sizes=[1], sigma=sigma, consts=c)
    assert cert["bound_mode"] == "gdp" and cert["mu"] == pytest.approx(mu, rel=1e-12) and cert["reading"] in out
    assert "exact conversion of mu=" in out
    assert unlearn.main(["status", "--state", st]) == 0       # the request table shows mu, not an order of nan
    row = next(line for line in capsys.readouterr().out.splitlines() if line.split()[:1] == ["1"])
    assert f"mu={mu:.4g}" in row.split() and "nan" not in row
    target = tmp_path / "w.npz"
    assert unlearn.main(["export", "--state", st, "--chain", "0", "1", "2", "--out", str(target)]) == 0
    with np.load(target) as z:
        got = json.loads(str(z["certificate"]))
    assert got["mu"] == pytest.approx(math.sqrt(3) * mu, rel=1e-12)
    assert got["eps"] == pytest.approx(A.gdp_epsilon(mu=math.sqrt(3) * mu, delta=c.delta), rel=1e-12)
    assert got["eps"] > cert["eps"]
