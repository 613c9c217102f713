"""Sigma tables and plans for any problem: --n, --dim and --num_classes alone, no dataset name, filed under
result/<family>/no_dataset/ (issue 28 item 4)."""
import json

import pytest

import audit
import baseline
import baseline_multiclass
import main_lmc
import main_sgd
from utils import accountant as A, cli


def _only_run(root, family, mode):
    runs = [p for p in (root / family / cli.NO_DATASET / mode).glob("*/metrics.json") if p.parent.name != "latest"]
    assert len(runs) == 1, runs
    return json.loads(runs[0].read_text()), runs[0].parent


def test_find_k_from_n_and_dim_alone(tmp_path, capsys):
    assert baseline.main(["--find_k", "1", "--n", "249", "--dim", "4", "--K", "1", "5", "--eps", "1",
                          "--result_dir", str(tmp_path)]) == 0
    metrics, folder = _only_run(tmp_path, "LMC", "find_k")
    assert metrics["dataset"] == cli.NO_DATASET and "n=249,dim=4" in folder.name
    c = metrics["constants"]
    # own data's defaults without a file: m = lam n = 0.01, binary L = 1/4 + m, M = 1, delta = 1/n
    assert c["m"] == pytest.approx(0.01) and c["L"] == pytest.approx(0.26) and c["M"] == 1
    assert c["delta"] == pytest.approx(1 / 249)
    consts = A.make_constants(n=249, lam=0.01 / 249, M=1.0)
    want = {K: A.smallest_sigma_pngd(K=K, eps_target=1.0, S=1, consts=consts) for K in (1, 5)}
    assert {r["K"]: r["sigma"] for r in metrics["sigma_table"]} == pytest.approx(want)
    assert "on no dataset (a problem of n=249 rows, d=4, 2 classes)" in capsys.readouterr().out


def test_multiclass_sigma_table_takes_num_classes(tmp_path):
    assert baseline_multiclass.main(["--find_k", "1", "--n", "300", "--dim", "5", "--num_classes", "3", "--K", "2",
                                     "--eps", "1", "--result_dir", str(tmp_path)]) == 0
    metrics, _ = _only_run(tmp_path, "LMC", "find_k")
    c = metrics["constants"]
    assert c["num_classes"] == 3 and c["L"] == pytest.approx(1.01) and c["M"] == 2   # softmax: L = 1 + m
    assert c["d"] == 15   # D2D's dimension: the parameter count d k


@pytest.mark.parametrize("script,argv,family,mode", [
    (main_sgd, ["--sequential", "1", "--n", "2560", "--dim", "16", "--requests", "5"], "SGD", "sequential"),
    (main_lmc, ["--paint_utility_epsilon", "1", "--n", "500", "--dim", "8"], "LMC", "paint_utility_epsilon"),
    (audit, ["--n", "500", "--dim", "8", "--num_classes", "3", "--K", "0", "5"], "LMC", "audit"),
    (baseline, ["--n", "400", "--dim", "8", "--K", "1", "--eps", "1"], "LMC", "baseline"),
])
def test_every_plan_only_works_without_a_dataset(script, argv, family, mode, tmp_path):
    assert script.main(argv + ["--plan_only", "--result_dir", str(tmp_path)]) == 0
    metrics, _ = _only_run(tmp_path, family, mode)
    assert metrics["plan_only"] is True and metrics["constants"]["n"] == int(argv[argv.index("--n") + 1])


def test_a_named_dataset_with_n_keeps_its_constants_and_folder(tmp_path):
    assert baseline.main(["--find_k", "1", "--dataset", "MNIST", "--n", "11982", "--K", "1", "--eps", "1",
                          "--result_dir", str(tmp_path)]) == 0
    (run,) = [p for p in (tmp_path / "LMC" / "MNIST" / "find_k").glob("*/metrics.json") if p.parent.name != "latest"]
    assert json.loads(run.read_text())["constants"]["lam"] == 1e-6


@pytest.mark.parametrize("script,argv,words", [
    (baseline, ["--find_k", "1", "--num_classes", "3"], ["--num_classes 3 works with --n"]),
    (baseline, ["--find_k", "1", "--dataset", "DIGITS", "--n", "249", "--num_classes", "3"],
     ["--num_classes 3 contradicts --dataset DIGITS", "allowed: 2"]),
    (baseline, ["--find_k", "1", "--n", "249", "--num_classes", "3"], ["use baseline_multiclass.py"]),
    (baseline_multiclass, ["--find_k", "1", "--n", "249", "--num_classes", "2"], ["use baseline.py"]),
    (baseline, ["--find_k", "1", "--n", "249", "--classes", "3", "8"], ["--classes", "--dataset"]),
])
def test_contradictions_are_one_line(script, argv, words, tmp_path, capsys):
    assert script.main(argv + ["--result_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err
    assert not any(tmp_path.iterdir())
