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
            assert unl["steps"].iloc[0] == K and unl["bound"].iloc[0] == "A-LSI"
            assert unl["bound_text"].iloc[0].startswith("PNGD unlearning")
            d2d = rows[(rows["K"] == K) & (rows["eps"] == eps) & (rows["method"] == "d2d")]
            assert d2d["bound"].iloc[0] == "D2D" and d2d["bound_text"].iloc[0].startswith("D2D one-shot")
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


def _garble(folder: Path, how: str) -> None:
    config = json.loads((folder / "config.json").read_text())
    if how == "incomplete_mark":
        (folder / results.INCOMPLETE).write_text("")
    elif how == "config_says_incomplete":
        (folder / "config.json").write_text(json.dumps(dict(config, complete=False)))
    elif how == "config_without_complete":      # a stub metrics.json beside a config that never said complete
        (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "complete"}))
        (folder / "metrics.json").write_text(json.dumps({"schema_version": 1, "settings": {"1": {"1": {
            "lmc_unlearn": {"mean": 0.99, "std": 0.0, "trials": 3}}}}}))


@pytest.mark.parametrize("how", ["incomplete_mark", "config_says_incomplete", "config_without_complete"])
def test_an_unfinished_run_is_never_summarised_as_finished(tmp_path, how):
    assert baseline.main(TINY + ["--K", "1", "--eps", "1", "--result_dir", str(tmp_path)]) == 0
    folder = Path(results.resolve_run_dir(tmp_path / "LMC" / "DIGITS" / "baseline"))
    _garble(folder, how)
    df = summary.table(tmp_path)
    assert len(df) == 1 and not df["complete"].iloc[0]
    assert "accuracy_mean" not in df or df["accuracy_mean"].isna().all()
    assert "unfinished: " in "\n".join(summary.lines(df))


def test_printed_lines_fit_160_characters_and_bounds_are_short_names(tmp_path, capsys):
    long = "x" * 90   # the longest --name a run folder may have is 100 characters
    assert baseline.main(TINY + ["--K", "1", "--eps", "1", "--name", long, "--result_dir", str(tmp_path)]) == 0
    assert baseline.main(["--find_k", "1", "--dataset", "DIGITS", "--K", "1", "3", "--eps", "1",
                          "--result_dir", str(tmp_path)]) == 0
    capsys.readouterr()
    for all_columns in (False, True):
        assert summary.main([str(tmp_path)] + (["--all_columns"] if all_columns else [])) == 0
        out = capsys.readouterr().out
        assert max(map(len, out.splitlines())) <= summary.WIDTH
    out = "\n".join(summary.lines(summary.table(tmp_path)))
    assert "A-LSI" in out and "D2D" in out and "PNGD unlearning" not in out
    # the sigma table's sigmas are rows of their own
    df = summary.table(tmp_path)
    table = df[df["method"] == "sigma_table"].sort_values("K")
    metrics = json.loads(next((tmp_path / "LMC" / "DIGITS" / "find_k").glob("*-*/metrics.json")).read_text())
    assert list(table["sigma"]) == [r["sigma"] for r in sorted(metrics["sigma_table"], key=lambda r: r["K"])]
    assert list(table["K"]) == [1, 3] and set(table["bound"]) == {"A-LSI"}


def test_csv_into_an_unwritable_place_is_one_line(tmp_path):
    assert baseline.main(TINY + ["--K", "1", "--eps", "1", "--result_dir", str(tmp_path / "r")]) == 0
    for target in (tmp_path / "no" / "such" / "dir" / "runs.csv", Path("/proc/runs.csv")):
        out = subprocess.run([sys.executable, "-m", "utils.summary", str(tmp_path / "r"), "--csv", str(target)],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and str(target) in out.stderr, out.stderr
        assert not target.exists()


def test_the_readmes_plotting_snippet_draws_one_run_of_one_dataset(tmp_path, monkeypatch):
    """Two runs on DIGITS and a plan: the README's snippet picks one run of one dataset (no zig-zag line
    through several runs' points)."""
    import re

    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    for extra in (["--eps", "1", "2"], ["--eps", "1", "2", "--lam", "1e-3"], ["--eps", "1", "--plan_only"]):
        assert baseline.main(TINY + ["--K", "1"] + extra + ["--result_dir", str(tmp_path / "result")]) == 0
    monkeypatch.chdir(tmp_path)
    summary.table("result").to_csv("runs.csv", index=False)
    code = re.search(r"```python\n(import pandas as pd.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    space = {}
    exec(compile(code, "README.md", "exec"), space)
    fig3a = space["fig3a"]
    assert fig3a["run"].nunique() == 1 and set(fig3a["dataset"]) == {"DIGITS"} and set(fig3a["K"]) == {1}
    assert len(fig3a) == 4 * 2 and (tmp_path / "result" / "fig3a_from_summary.png").is_file()
