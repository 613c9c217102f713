"""python -m utils.plots on what it should not draw: unfinished runs (INCOMPLETE, config.json without complete:
true, a stub metrics.json) and garbled or foreign metrics.json are one line and exit 2, never a traceback;
after a --plan_only run a mode folder still means the run with results (`latest` never names a plan)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import baseline
from utils import results

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "DIGITS", "--trials", "3", "--burn_in", "10", "--K", "1", "--eps", "1", "--no_cache"]


def _plots(*folders):
    return subprocess.run([sys.executable, "-m", "utils.plots", *map(str, folders)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def run(tmp_path):
    assert baseline.main(TINY + ["--result_dir", str(tmp_path)]) == 0
    return Path(results.resolve_run_dir(tmp_path / "LMC" / "DIGITS" / "baseline"))


@pytest.mark.parametrize("how,words", [
    ("incomplete", "INCOMPLETE"),
    ("config_complete_false", "complete: true"),
    ("stub_metrics_no_complete", "complete: true"),
    ("metrics_list", "not a run's record"),
    ("metrics_garbled", "unreadable"),
    ("unknown_family", "cannot be drawn"),
])
def test_what_is_not_a_finished_known_run_is_one_line(run, how, words):
    config = json.loads((run / "config.json").read_text())
    if how == "incomplete":
        (run / results.INCOMPLETE).write_text("")
    elif how == "config_complete_false":
        (run / "config.json").write_text(json.dumps(dict(config, complete=False)))
    elif how == "stub_metrics_no_complete":
        (run / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "complete"}))
        (run / "metrics.json").write_text(json.dumps({"schema_version": 1}))
    elif how == "metrics_list":
        (run / "metrics.json").write_text("[]")
    elif how == "metrics_garbled":
        (run / "metrics.json").write_text('{"schema_version": 1, "settings": {')
    elif how == "unknown_family":
        metrics = json.loads((run / "metrics.json").read_text())
        (run / "metrics.json").write_text(json.dumps(dict(metrics, family="NN", mode="transformer")))
    (run / "figure.png").unlink()
    out = _plots(run)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and words in out.stderr, out.stderr
    assert not (run / "figure.png").exists()


def test_latest_stays_on_the_run_with_results_after_a_plan(run, tmp_path):
    mode = run.parent
    assert baseline.main(TINY + ["--plan_only", "--result_dir", str(tmp_path)]) == 0
    plans = [p for p in mode.iterdir() if p.name not in (results.LATEST, run.name)]
    assert len(plans) == 1 and json.loads((plans[0] / "metrics.json").read_text())["plan_only"] is True
    assert Path(results.resolve_run_dir(mode)) == run
    (run / "figure.png").unlink()
    out = _plots(mode)
    assert out.returncode == 0 and str(run / "figure.png") in out.stdout, out.stderr


def test_a_plan_replacing_the_folder_latest_named_takes_latest_away(tmp_path):
    """A folder that `latest` named (older versions pointed it at plans too) and that a plan now replaces."""
    argv = TINY + ["--plan_only", "--name", "p", "--result_dir", str(tmp_path)]
    assert baseline.main(argv) == 0
    mode = tmp_path / "LMC" / "DIGITS" / "baseline"
    (mode / results.LATEST).symlink_to("p", target_is_directory=True)
    assert baseline.main(argv) == 0
    assert not (mode / results.LATEST).exists() and not (mode / results.LATEST).is_symlink()
