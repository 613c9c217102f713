"""--model mlp in baseline.py and audit.py on DIGITS: run folders under result/NET/, the certificates are the
accountant's, resume, bad input, and the audit's lower bound below the fine-tuning certificate."""
import json
import os

import numpy as np
import pytest

from faults import interrupt_at_call
from utils import accountant, results
from utils.network import Recipe

QUICK = ["--dataset", "DIGITS", "--model", "mlp", "--seed", "0", "--learn_epochs", "4", "--post_epochs", "2",
         "--device", "cpu"]


def _read(folder):
    with open(os.path.join(folder, "metrics.json")) as fh:
        metrics = json.loads(fh.read())
    with np.load(os.path.join(folder, "arrays.npz")) as z:
        return metrics, {k: z[k] for k in z.files}


def _folder(root, mode):
    return results.resolve_run_dir(os.path.join(str(root), "NET", "DIGITS", mode))


def _delta():
    from utils import data
    return 1.0 / data.load_dataset("DIGITS").n


def test_baseline_network_run(tmp_path):
    import baseline

    flags = QUICK + ["--trials", "3", "--eps", "1", "5", "--K", "1", "--burn_in", "30", "--no_cache"]
    assert baseline.main(flags + ["--result_dir", str(tmp_path)]) == 0
    metrics, arrays = _read(_folder(tmp_path, "baseline"))
    fc = Recipe(learn_epochs=4, post_epochs=2).constants(_delta())
    T = metrics["noisy_steps"]
    assert T == accountant.finetune.best_steps_gradient_clipping(gamma=0.5, lam=1e-3, C0=5.0, C1=1.0) == 10
    for eps in ("1", "5"):
        cell = metrics["settings"][eps]
        sigma = accountant.smallest_sigma_finetune(T=T, eps_target=float(eps), fc=fc)
        assert cell["sigma"] == pytest.approx(sigma, rel=1e-12)
        assert cell["eps_achieved"] <= float(eps)
        for what in ("mlp_unlearn", "mlp_certifying", "mlp_unlearn_noisy", "mlp_certifying_noisy"):
            assert cell[what]["trials"] == 3 and 0 <= cell[what]["mean"] <= 1
    net_certs = [c for c in metrics["certificates"] if c.get("method") == "noisy_finetune"]
    assert [c["eps_target"] for c in net_certs] == [1.0, 5.0] and all(c["variant"] == "gradient" for c in net_certs)
    assert "certifying run" in net_certs[0]["comparison"]
    assert set(metrics["logistic"]) == {"1"} and "lmc_unlearn" in metrics["logistic"]["1"]["5"]
    assert arrays["mlp_unlearn"].shape == (2, 3) and arrays["mlp_post_only"].shape == (3,)
    assert metrics["mlp_learned"]["mean"] > 0.9      # the network learns DIGITS 3 vs 8
    assert os.path.exists(os.path.join(_folder(tmp_path, "baseline"), "figure.png"))


def test_baseline_network_resumes_to_the_same_result(tmp_path, monkeypatch):
    import baseline
    from utils import finetune

    flags = QUICK + ["--trials", "2", "--eps", "1", "2", "--K", "1", "--burn_in", "20", "--no_cache"]
    assert baseline.main(flags + ["--result_dir", str(tmp_path / "whole")]) == 0
    whole = _read(_folder(tmp_path / "whole", "baseline"))[1]
    # learning makes 3 accuracy calls, each eps 4: the 5th stops inside the first eps, after learning was saved
    real = interrupt_at_call(monkeypatch, finetune.Networks, "accuracy", 5)
    assert baseline.main(flags + ["--result_dir", str(tmp_path / "cut")]) == 130
    run = results.run_dirs(os.path.join(str(tmp_path / "cut"), "NET", "DIGITS", "baseline"))[0]
    assert sorted(os.listdir(os.path.join(run, "parts"))) == ["mlp_learn.npz"]
    monkeypatch.setattr(finetune.Networks, "accuracy", real)
    assert baseline.main(flags + ["--result_dir", str(tmp_path / "cut"), "--resume"]) == 0
    resumed = _read(_folder(tmp_path / "cut", "baseline"))[1]
    for key in ("mlp_unlearn", "mlp_certifying", "mlp_unlearn_noisy", "mlp_learned"):
        np.testing.assert_array_equal(resumed[key], whole[key])


def test_network_find_k_is_the_accountants_table(tmp_path):
    import baseline

    assert baseline.main(QUICK + ["--find_k", "1", "--variant", "model", "--noisy_steps", "7", "--eps", "0.5", "2",
                                  "--result_dir", str(tmp_path)]) == 0
    metrics, _ = _read(_folder(tmp_path, "find_k"))
    fc = Recipe(variant="model").constants(_delta())
    for row in metrics["sigma_table"]:
        assert row["T"] == 7
        assert row["sigma"] == pytest.approx(accountant.smallest_sigma_finetune(T=7, eps_target=row["epsilon"],
                                                                                fc=fc), rel=1e-12)
    assert all(c["variant"] == "model" and c["C2"] == 5.0 for c in metrics["certificates"])


@pytest.mark.parametrize("script,flags,message", [
    ("baseline", ["--dataset", "DIGITS", "--hidden", "8"], "--model mlp only"),
    ("baseline", QUICK + ["--sequential2", "1"], "linear models"),
    ("baseline", QUICK + ["--C2", "1"], "--variant model only"),
    ("baseline", QUICK + ["--lr", "2", "--weight_decay", "0.6"], "below 1"),
    ("baseline", QUICK + ["--noisy_steps", "0"], "integer >= 1"),
    ("audit", QUICK + ["--neighbour", "worst"], "--neighbour random"),
    ("audit", QUICK + ["--K", "0", "3"], "K >= 1"),
    ("audit", QUICK + ["--burn_in", "10"], "does not apply to --model mlp"),
    ("baseline", QUICK + ["--bound", "gdp"], "--bound gdp does not apply to --model mlp"),
    ("audit", QUICK + ["--bound", "gdp"], "--bound gdp does not apply to --model mlp"),
])
def test_bad_network_input_is_one_line(tmp_path, capsys, script, flags, message):
    module = __import__(script)
    assert module.main(flags + ["--result_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0] and message in err[0]
    assert not os.listdir(str(tmp_path))


def test_linear_runs_keep_their_flags():
    """Without --model a run's flags (config.json, the folder's hash) hold none of the network's."""
    import baseline
    from utils import cli

    args, _ = cli.parse_checked(baseline.build_parser(False), ["--dataset", "DIGITS"],
                                check=lambda a: baseline.check_args(a, multiclass=False))
    assert not {"model", "hidden", "C0", "variant", "lr", "noisy_steps"} & set(vars(args))


def test_audit_network_stays_below_the_certificate_and_sees_unnoised_changes(tmp_path):
    """The fine-tuning certificate bounds what an attacker sees after the noisy steps; with little noise
    (a certificate in the 1e5) the same audit does see the 100 replaced rows."""
    import audit

    common = QUICK + ["--trials", "100", "--S", "100", "--K", "1", "3", "--no_cache"]
    assert audit.main(common + ["--target_eps", "3", "--result_dir", str(tmp_path / "cert")]) == 0
    metrics, _ = _read(_folder(tmp_path / "cert", "audit"))
    fc = Recipe(learn_epochs=4, post_epochs=2).constants(_delta())
    sigma = accountant.smallest_sigma_finetune(T=1, eps_target=3.0, fc=fc)
    assert metrics["settings"]["sigma"] == pytest.approx(sigma, rel=1e-12)
    for K in ("1", "3"):
        cert = metrics["certified_eps"][K]
        assert cert == pytest.approx(accountant.dp_epsilon_finetune(T=int(K), sigma=sigma, fc=fc)[0])
        assert metrics["empirical_eps_lower"][K] <= min(cert, metrics["certified_eps_by_bound"]["best"][K])
    assert metrics["certified_eps"]["1"] == pytest.approx(3.0, rel=1e-6) and metrics["violations"] == []

    assert audit.main(common + ["--sigma", "0.02", "--result_dir", str(tmp_path / "weak")]) == 0
    metrics, _ = _read(_folder(tmp_path / "weak", "audit"))
    assert metrics["empirical_eps_lower"]["1"] > 1.0
    assert metrics["empirical_eps_lower"]["1"] <= metrics["certified_eps"]["1"]


# ---------------------------------------------------------------- unlearn.py learn --model mlp
def test_unlearn_network_learn_remove_status_export(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("UNLEARN_NO_PROGRESS", "1")
    import unlearn
    from test_unlearn import ID0, _digits_file
    from utils import state as statefile

    features = _digits_file(tmp_path / "d.npz")
    st = str(tmp_path / "state")
    learn = ["learn", "--features", features, "--state", st, "--model", "mlp", "--learn_epochs", "3",
             "--post_epochs", "1", "--trials", "3", "--device", "cpu", "--eps", "2"]
    assert unlearn.main(learn) == 0
    meta = statefile.load(st).meta
    assert meta["settings"]["model"] == "mlp" and meta["settings"]["seed_source"] == "os_entropy"
    assert meta["settings"]["recipe"]["batch_size"] == 128
    before = statefile.load(st).arrays
    capsys.readouterr()
    assert unlearn.main(["remove", "--state", st, "--ids", str(ID0 + 4), str(ID0 + 9)]) == 0
    out = capsys.readouterr().out
    assert "certificate of request 1" in out and "certifying run" in out
    state = statefile.load(st)
    cert = state.meta["requests"][0]["certificate"]
    fc = accountant.make_finetune_constants(**state.meta["certificate_constants"])
    sigma = state.meta["settings"]["sigma"]
    assert sigma == pytest.approx(accountant.smallest_sigma_finetune(T=10, eps_target=2.0, fc=fc,
                                                                     conversion="improved"), rel=1e-12)
    assert cert["T"] == accountant.minimal_steps_finetune(sigma=sigma, eps_target=2.0, fc=fc, conversion="improved")
    assert cert["eps"] == pytest.approx(accountant.dp_epsilon_finetune(T=cert["T"], sigma=sigma, fc=fc,
                                                                       conversion="improved")[0]) and cert["eps"] <= 2
    changed = np.flatnonzero((state.arrays["X"] != before["X"]).any(axis=1))
    assert changed.tolist() == [4, 9] and state.arrays["removed"][[4, 9]].all()
    assert not np.array_equal(state.arrays["w"], before["w"])
    assert unlearn.main(["status", "--state", st]) == 0
    assert "current guarantee" in capsys.readouterr().out
    assert unlearn.main(["verify", "--state", st]) == 0      # the seals, the values, the recomputed certificate
    assert "every recorded eps holds" in capsys.readouterr().out
    assert unlearn.main(["export", "--state", st, "--out", str(tmp_path / "m.npz")]) == 0
    with np.load(tmp_path / "m.npz") as z:
        assert z["w"].shape == (Recipe().model(2).params(64),) and int(z["hidden"]) == 64


@pytest.mark.parametrize("extra,message", [(["--hidden", "8"], "--model mlp only"),
                                           (["--model", "mlp", "--K", "5", "--eps", "1"], "does not apply"),
                                           (["--model", "mlp", "--burn_in", "7"], "--learn_epochs"),
                                           (["--model", "mlp", "--bound", "gdp"], "--bound gdp does not apply")])
def test_unlearn_network_bad_input(tmp_path, capsys, extra, message):
    import unlearn
    from test_unlearn import _digits_file

    features = _digits_file(tmp_path / "d.npz")
    assert unlearn.main(["learn", "--features", features, "--state", str(tmp_path / "s")] + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and not os.path.exists(tmp_path / "s")
