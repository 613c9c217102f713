"""python -m utils.summary: one tidy row per run x setting x method, checked against the saved arrays."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import baseline
from utils import experiments, results, summary

pd = pytest.importorskip("pandas")
ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "DIGITS", "--trials", "3", "--burn_in", "20", "--no_cache"]


def test_summary_tabulates_every_run_setting_and_method(tmp_path, monkeypatch):
    assert baseline.main(TINY + ["--K", "1", "2", "--eps", "0.5", "1", "--result_dir", str(tmp_path)]) == 0
    assert baseline.main(TINY + ["--K", "1", "--eps", "1", "--lam", "1e-3", "--result_dir", str(tmp_path)]) == 0
    # an interrupted third run is listed as incomplete, without accuracies
    real = experiments.Lab.accuracy
    monkeypatch.setattr(experiments.Lab, "accuracy", lambda self, w: (_ for _ in ()).throw(KeyboardInterrupt))
    assert baseline.main(TINY + ["--K", "5", "--eps", "2", "--result_dir", str(tmp_path)]) == 130
    monkeypatch.setattr(experiments.Lab, "accuracy", real)

    df = summary.table(tmp_path)
    runs = results.run_dirs(tmp_path / "LMC" / "DIGITS" / "baseline")
    assert len(runs) == 3 and df["run"].nunique() == 3
    done = df[df["complete"]]
    # 2 x 2 settings x 4 methods, then 1 x 1 x 4
    assert len(done) == 16 + 4
    assert set(done["method"]) == {"lmc_unlearn", "lmc_retrain", "lmc_learn", "d2d"}
    incomplete = df[~df["complete"]]
    assert len(incomplete) == 1 and incomplete["accuracy_mean"].isna().all()
    assert incomplete["flag_K"].iloc[0] == "5"
    # every value against the per-trial accuracies in arrays.npz (K x eps x trials)
    sweep = next(r for r in runs if "lam" not in Path(r).name and "K=1_2" in Path(r).name)
    arrays = results.read_npz(str(Path(sweep) / "arrays.npz"))
    rows = done[done["run"] == Path(sweep).name]
    for i, K in enumerate([1, 2]):
        for j, eps in enumerate([0.5, 1.0]):
            for method, key in (("lmc_unlearn", "lmc_unlearn"), ("lmc_retrain", "lmc_retrain"), ("d2d", "d2d")):
                row = rows[(rows["K"] == K) & (rows["eps"] == eps) & (rows["method"] == method)]
                assert len(row) == 1
                acc = arrays[key][i, j]
                assert row["accuracy_mean"].iloc[0] == pytest.approx(acc.mean(), rel=1e-12)
                assert row["accuracy_std"].iloc[0] == pytest.approx(acc.std(ddof=1), rel=1e-9)
                assert row["accuracy_trials"].iloc[0] == 3
                assert row["sigma"].iloc[0] == pytest.approx(arrays["sigma"][i, j], rel=1e-12)
            unl = rows[(rows["K"] == K) & (rows["eps"] == eps) & (rows["method"] == "lmc_unlearn")]
            assert unl["steps"].iloc[0] == K and unl["bound"].iloc[0].startswith("PNGD unlearning")
            d2d = rows[(rows["K"] == K) & (rows["eps"] == eps) & (rows["method"] == "d2d")]
            assert d2d["bound"].iloc[0].startswith("D2D")
    assert set(done[done["flag_lam"] == 1e-3]["K"]) == {1}
    metrics = json.loads((Path(sweep) / "metrics.json").read_text())
    assert (rows["wall_clock_seconds"] == metrics["wall_clock_seconds"]["total"]).all()


def test_summary_cli_prints_and_writes_csv(tmp_path):
    assert baseline.main(TINY + ["--K", "1", "--eps", "1", "--result_dir", str(tmp_path / "r")]) == 0
    csv = tmp_path / "runs.csv"
    out = subprocess.run([sys.executable, "-m", "utils.summary", str(tmp_path / "r"), "--csv", str(csv)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "lmc_unlearn" in out.stdout and "accuracy_mean" in out.stdout and f"wrote {csv} (4 rows" in out.stdout
    df = pd.read_csv(csv)
    assert len(df) == 4 and {"flag_trials", "flag_seed", "dataset", "mode", "K", "eps"} <= set(df.columns)
    bad = subprocess.run([sys.executable, "-m", "utils.summary", str(tmp_path / "nothing")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "is not a folder" in bad.stderr
