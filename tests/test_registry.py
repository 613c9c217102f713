"""utils/data.py's registry: a new dataset is one register(...) call, and every script then runs on it.

Test-only datasets from scikit-learn (breast cancer: binary, 569 x 30; wine: 3 classes, 178 x 13) with
loaders written here. Reference values: the loaders' own shapes and the closed forms of docs/METHOD.md
§1.1 (m = lam n, delta = 1/n) and the smoothness bounds L = 1/4 + m (binary logistic) and L = 1 + m
(softmax), eta = 1/L.
"""
import json
from pathlib import Path

import numpy as np
import pytest

import baseline
import baseline_multiclass
import main_sgd
from utils import cli, d2d, experiments, results
from utils import data as D

pytest.importorskip("sklearn")

CANCER, WINE, TRAIN_ROWS = "CANCER_TEST", "WINE_TEST", 400
CANCER_LAM, WINE_LAM = 1e-4, 1e-3


def load_cancer(*, data_dir, classes, seed, download):
    """Breast cancer, benign -> +1, malignant -> -1; the first 400 rows train, the rest test."""
    from sklearn.datasets import load_breast_cancer

    X, target = load_breast_cancer(return_X_y=True)
    y = np.where(target == 1, 1.0, -1.0)
    return dict(X_train=X[:TRAIN_ROWS], y_train=y[:TRAIN_ROWS], X_test=X[TRAIN_ROWS:], y_test=y[TRAIN_ROWS:],
                classes=["benign", "malignant"], source="sklearn breast_cancer")


def load_wine(*, data_dir, classes, seed, download):
    """Wine, 3 cultivars as ids 0..2, or a pair (A -> +1, B -> -1); every 4th row tests."""
    from sklearn.datasets import load_wine as wine

    X, target = wine(return_X_y=True)
    test = np.arange(len(target)) % 4 == 0
    if classes is None:
        return dict(X_train=X[~test], y_train=target[~test], X_test=X[test], y_test=target[test],
                    classes=[0, 1, 2], source="sklearn wine")
    a, b = classes
    keep = np.isin(target, classes)
    sign = np.where(target == a, 1.0, -1.0)
    return dict(X_train=X[keep & ~test], y_train=sign[keep & ~test], X_test=X[keep & test], y_test=sign[keep & test],
                classes=[a, b], source="sklearn wine")


@pytest.fixture
def registered():
    """CANCER_TEST (binary, fixed labels, reference rows 320), WINE_TEST (3 classes), WINE_PAIR (binary 0 vs 1
    of 0..2); unregistered afterwards."""
    specs = [D.register(CANCER, load_cancer, num_classes=2, default_lam=CANCER_LAM, n=TRAIN_ROWS, d=30,
                        reference_rows=320),
             D.register(WINE, load_wine, num_classes=3, default_lam=WINE_LAM, n=133, d=13),
             D.register("WINE_PAIR", load_wine, num_classes=2, default_lam=WINE_LAM, classes=(0, 1),
                        label_ids=(0, 1, 2))]
    yield specs
    for s in specs:
        D.unregister(s.name)
    assert not {CANCER, WINE, "WINE_PAIR"} & set(D.names())


def run_dir(root, family, dataset, mode):
    return Path(results.resolve_run_dir(Path(root) / family / dataset / mode))


def test_baseline_runs_end_to_end_on_a_registered_binary_dataset(registered, tmp_path):
    assert baseline.main(["--dataset", CANCER, "--K", "1", "--eps", "1", "--trials", "3", "--burn_in", "10",
                          "--result_dir", str(tmp_path), "--quiet"]) == 0
    folder = run_dir(tmp_path, "LMC", CANCER, "baseline")
    config = json.loads((folder / "config.json").read_text())
    c, ident = config["derived"]["constants"], config["derived"]["dataset"]
    assert (ident["name"], ident["n"], ident["d"], ident["classes"]) == (CANCER, 400, 30, ["benign", "malignant"])
    m = CANCER_LAM * 400
    assert (c["n"], c["d"], c["num_classes"], c["M"]) == (400, 30, 2, 1.0)
    assert c["lam"] == CANCER_LAM and c["m"] == pytest.approx(m, rel=1e-12)
    assert c["L"] == pytest.approx(0.25 + m, rel=1e-12) and c["eta"] == pytest.approx(1 / (0.25 + m), rel=1e-12)
    assert c["delta"] == pytest.approx(1 / 400, rel=1e-12)
    with np.load(folder / "arrays.npz") as z:
        accs = {k: z[k] for k in ("lmc_unlearn", "lmc_retrain", "lmc_learn", "noiseless")}
    # accuracies on the loader's 569 - 400 = 169 test rows: whole counts of rows
    for key, acc in accs.items():
        assert acc.shape[-1:] == ((3,) if key.startswith("lmc") else (1,))
        np.testing.assert_allclose(acc * 169, np.round(acc * 169), atol=1e-9, err_msg=key)


def test_baseline_multiclass_runs_on_a_registered_softmax_dataset(registered, tmp_path):
    assert baseline_multiclass.main(["--dataset", WINE, "--K", "1", "--eps", "1", "--trials", "3", "--burn_in", "10",
                                     "--result_dir", str(tmp_path), "--quiet"]) == 0
    c = json.loads((run_dir(tmp_path, "LMC", WINE, "baseline") / "config.json").read_text())["derived"]["constants"]
    m = WINE_LAM * 133                                   # 178 rows, every 4th (45) tests
    assert (c["n"], c["num_classes"], c["M"]) == (133, 3, 2.0)
    assert c["L"] == pytest.approx(1 + m, rel=1e-12)


def test_scripts_read_kind_classes_and_defaults_from_the_spec(registered):
    args = cli.parse(cli.make_parser("t", family="LMC", multiclass=True), ["--dataset", WINE])
    assert args.lam is None and args.M is None                        # defaults are derived, not flags
    assert experiments.model_defaults(args, None) == (WINE_LAM, 2.0) and experiments.num_classes_of(args, None) == 3
    args.dim = None
    assert d2d.dimension(experiments.feature_dim(args, None), num_classes=3) == 13 * 3   # D2D counts d k parameters
    with pytest.raises(cli.UsageError, match=f"--dataset {WINE} is multiclass: use baseline_multiclass.py"):
        cli.check_dataset_kind(args, multiclass=False, scripts=("baseline.py", "baseline_multiclass.py"))
    binary = cli.make_parser("t", family="LMC")
    with pytest.raises(cli.UsageError, match=f"--classes is for binary datasets, not {WINE}"):
        cli.parse(binary, ["--dataset", WINE, "--classes", "0", "1"])
    with pytest.raises(cli.UsageError,
                       match=r"--classes 0 5 do not exist \(allowed: two different class ids A, B in 0\.\.2"):
        cli.parse(binary, ["--dataset", "WINE_PAIR", "--classes", "0", "5"])
    with pytest.raises(cli.UsageError, match=f"--classes 0 1 do not exist .allowed: none: {CANCER}'s labels are fixed"):
        cli.parse(binary, ["--dataset", CANCER, "--classes", "0", "1"])
    assert cli.parse(binary, ["--dataset", "WINE_PAIR", "--classes", "2", "1"]).classes == [2, 1]
    # the pair reaches the loader: class 2 -> +1, class 1 -> -1, every 4th row tests
    ds = D.load_dataset("WINE_PAIR", classes=(2, 1))
    from sklearn.datasets import load_wine
    target = load_wine().target
    train = (np.arange(len(target)) % 4 != 0) & np.isin(target, (1, 2))
    np.testing.assert_array_equal(ds.y_train, np.where(target[train] == 2, 1.0, -1.0))
    assert ds.identity["classes"] == [2, 1] and ds.default_lam == WINE_LAM


def test_main_sgd_truncates_to_the_registered_reference_rows(registered, tmp_path):
    """--batch_size 32 64: the lcm rule would keep 400 // 64 * 64 = 384 rows; the spec's reference keeps 320."""
    assert main_sgd.main(["--dataset", CANCER, "--sequential", "1", "--plan_only", "--batch_size", "32", "64",
                          "--result_dir", str(tmp_path), "--quiet"]) == 0
    metrics = json.loads((run_dir(tmp_path, "SGD", CANCER, "sequential") / "metrics.json").read_text())
    assert metrics["n"] == 320 and metrics["truncation"]["n_loaded"] == 400
    assert f"{CANCER} 320" in metrics["truncation"]["rule"]
    # planning with --n reads the registered n = 400: a run on the data would keep 320 rows, not 384
    assert main_sgd.main(["--dataset", CANCER, "--sequential", "1", "--plan_only", "--batch_size", "32", "64",
                          "--n", "384", "--lam", "1e-4", "--result_dir", str(tmp_path / "n"), "--quiet"]) == 0
    metrics = json.loads((run_dir(tmp_path / "n", "SGD", CANCER, "sequential") / "metrics.json").read_text())
    assert any(f"uses the first 320 of its 400 rows" in note for note in metrics["truncation"]["notes"])
    assert metrics["constants"]["d"] == 30                                 # --n without --dim: the spec's d


def test_unknown_names_and_bad_registrations(registered):
    with pytest.raises(D.DataError) as err:
        D.spec("NOPE")
    msg = str(err.value)
    assert "\n" not in msg and all(name in msg for name in ("MNIST", "ADULT", CANCER, WINE, "WINE_PAIR"))
    with pytest.raises(ValueError, match=f"dataset name '{CANCER}'"):
        D.register(CANCER, load_cancer, num_classes=2, default_lam=1e-4)          # already registered
    with pytest.raises(ValueError, match="classes=\\(0, 1\\) for BAD"):
        D.register("BAD", load_wine, num_classes=3, default_lam=1e-4, classes=(0, 1), label_ids=(0, 1, 2))
    with pytest.raises(ValueError, match="num_classes=1"):
        D.register("BAD", load_wine, num_classes=1, default_lam=1e-4)
    with pytest.raises(ValueError, match="default_lam=0"):
        D.register("BAD", load_wine, num_classes=2, default_lam=0)
    assert "BAD" not in D.names()


def test_a_loader_that_disagrees_with_its_registration_is_refused():
    """A 3-class loader registered as binary: its targets 0..2 are not +1/-1."""
    D.register("WINE_WRONG", load_wine, num_classes=2, default_lam=1e-3)
    try:
        with pytest.raises(D.DataError, match=r"loader of WINE_WRONG returned y_train .*\+1/-1"):
            D.load_dataset("WINE_WRONG")
    finally:
        D.unregister("WINE_WRONG")
