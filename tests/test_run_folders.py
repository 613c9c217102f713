"""Daily use: one folder per distinct run, the `latest` pointer, consistent run folders, file modes."""
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import baseline
from faults import interrupt_at_call
from utils import experiments, results

ROOT = Path(__file__).resolve().parents[1]
FIND_K = ["--dataset", "DIGITS", "--find_k", "1"]
TINY = ["--dataset", "DIGITS", "--trials", "3", "--burn_in", "20", "--no_cache", "--K", "1"]


def metrics_of(folder) -> dict:
    return json.loads((Path(folder) / "metrics.json").read_text())


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_different_flags_never_touch_another_run_and_latest_names_the_newest(tmp_path):
    mode_dir = tmp_path / "LMC" / "DIGITS" / "find_k"
    assert baseline.main(FIND_K + ["--result_dir", str(tmp_path)]) == 0
    sweep = Path(results.resolve_run_dir(mode_dir))
    assert sweep.parent == mode_dir and sweep.name.startswith("default-")
    assert len(metrics_of(sweep)["sigma_table"]) == 3 * 6      # K 1 2 5 x the paper's six eps
    assert baseline.main(FIND_K + ["--eps", "1", "--K", "1", "--lam", "1e-3", "--result_dir", str(tmp_path)]) == 0
    one = Path(results.resolve_run_dir(mode_dir))
    # the flags given, in the order the parser defines them, then a hash of every flag
    assert one != sweep and one.name.startswith("lam=0.001,K=1,eps=1-") and len(one.name.split("-")[-1]) == 8
    assert len(metrics_of(sweep)["sigma_table"]) == 18 and len(metrics_of(one)["sigma_table"]) == 1
    # identical flags reuse their folder (and become latest again); a run folder resolves to itself
    assert baseline.main(FIND_K + ["--result_dir", str(tmp_path)]) == 0
    assert Path(results.resolve_run_dir(mode_dir)) == sweep
    assert results.resolve_run_dir(one) == str(one)
    assert sorted(p.name for p in mode_dir.iterdir()) == sorted([sweep.name, one.name, results.LATEST])


def test_name_overrides_and_a_reused_name_with_other_flags_is_refused(tmp_path, capsys):
    argv = FIND_K + ["--name", "mine", "--result_dir", str(tmp_path)]
    assert baseline.main(argv) == 0
    folder = tmp_path / "LMC" / "DIGITS" / "find_k" / "mine"
    before = (folder / "metrics.json").read_bytes()
    assert baseline.main(argv + ["--eps", "1"]) == 2
    err = capsys.readouterr().err
    assert "other flags" in err and "eps" in err and "--name" in err
    assert (folder / "metrics.json").read_bytes() == before
    assert baseline.main(FIND_K + ["--name", "latest", "--result_dir", str(tmp_path)]) == 2


def test_latest_as_a_file_naming_the_run_is_read_too(tmp_path):
    assert baseline.main(FIND_K + ["--result_dir", str(tmp_path)]) == 0
    mode_dir = tmp_path / "LMC" / "DIGITS" / "find_k"
    run = Path(results.resolve_run_dir(mode_dir))
    (mode_dir / results.LATEST).unlink()
    with pytest.raises(results.ResultError, match="neither a run folder"):
        results.resolve_run_dir(mode_dir)
    (mode_dir / results.LATEST).write_text(run.name + "\n")   # what a file system without symlinks gets
    assert Path(results.resolve_run_dir(mode_dir)) == run


def test_plots_cli_redraws_from_a_mode_folder(tmp_path):
    assert baseline.main(FIND_K + ["--result_dir", str(tmp_path)]) == 0
    mode_dir = tmp_path / "LMC" / "DIGITS" / "find_k"
    run = Path(results.resolve_run_dir(mode_dir))
    (run / "figure.png").unlink()
    out = subprocess.run([sys.executable, "-m", "utils.plots", str(mode_dir)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (run / "figure.png").is_file() and str(run / "figure.png") in out.stdout


def test_interrupted_run_says_so_and_holds_no_stale_files(tmp_path, monkeypatch, capsys):
    argv = TINY + ["--eps", "0.5", "2", "--result_dir", str(tmp_path)]
    assert baseline.main(argv) == 0
    mode_dir = tmp_path / "LMC" / "DIGITS" / "baseline"
    folder = Path(results.resolve_run_dir(mode_dir))
    assert json.loads((folder / "config.json").read_text())["complete"] is True
    assert not (folder / results.INCOMPLETE).exists()
    real = interrupt_at_call(monkeypatch, experiments.Lab, "accuracy", 5)
    assert baseline.main(argv) == 130       # the same flags again: the same folder, replaced
    capsys.readouterr()
    names = {p.name for p in folder.iterdir()}
    # nothing of the finished run it replaced survives beside the new config
    assert results.INCOMPLETE in names and "config.json" in names
    assert not names & {"metrics.json", "arrays.npz", "log.txt", "figure.png", "figure.pdf"}
    assert json.loads((folder / "config.json").read_text())["complete"] is False
    with pytest.raises(results.ResultError):
        results.resolve_run_dir(folder.parent / "nothing-here")
    monkeypatch.setattr(experiments.Lab, "accuracy", real)
    assert baseline.main(argv + ["--resume"]) == 0
    assert json.loads((folder / "config.json").read_text())["complete"] is True
    assert not (folder / results.INCOMPLETE).exists() and (folder / "metrics.json").is_file()


def test_resume_with_other_flags_names_the_unfinished_runs(tmp_path, capsys):
    assert baseline.main(FIND_K + ["--result_dir", str(tmp_path)]) == 0
    (unfinished,) = results.run_dirs(tmp_path / "LMC" / "DIGITS" / "find_k")
    (Path(unfinished) / results.INCOMPLETE).write_text("")     # what an interrupted run leaves
    capsys.readouterr()
    assert baseline.main(FIND_K + ["--result_dir", str(tmp_path), "--resume", "--eps", "3"]) == 2
    err = capsys.readouterr().err
    assert "no run with these flags" in err and os.path.basename(unfinished) in err


def test_resume_of_a_run_killed_before_its_config_starts_afresh(tmp_path, capsys):
    assert baseline.main(FIND_K + ["--result_dir", str(tmp_path), "--resume"]) == 0
    assert "starting afresh" in capsys.readouterr().out
    assert len(results.run_dirs(tmp_path / "LMC" / "DIGITS" / "find_k")) == 1


def test_files_and_folders_follow_the_umask(tmp_path, umask_022):
    assert baseline.main(TINY + ["--eps", "1", "--result_dir", str(tmp_path)]) == 0
    folder = Path(results.resolve_run_dir(tmp_path / "LMC" / "DIGITS" / "baseline"))
    for name in ("config.json", "metrics.json", "arrays.npz", "log.txt", "figure.png"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o644, name
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    os.umask(0o077)
    results.write_json(str(tmp_path / "private.json"), {"a": 1})
    assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o600


def test_unlearn_state_versions_follow_the_umask(tmp_path, umask_022):
    import numpy as np

    import unlearn

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 5)), rng.integers(0, 2, 60)
    np.savez(tmp_path / "f.npz", X_train=X[:40], y_train=y[:40], X_test=X[40:], y_test=y[40:])
    assert unlearn.main(["learn", "--features", str(tmp_path / "f.npz"), "--state", str(tmp_path / "st"),
                         "--sigma", "0.1", "--trials", "2", "--burn_in", "5"]) == 0
    # the state folder itself is owner-only (it holds the secret noise seed and KEY); inside, the umask
    assert stat.S_IMODE((tmp_path / "st").stat().st_mode) == 0o700
    versions = [p for p in (tmp_path / "st").iterdir() if p.is_dir()]
    assert versions and all(stat.S_IMODE(p.stat().st_mode) == 0o755 for p in versions)
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o644 for p in versions for f in p.iterdir())


def test_bench_results_go_to_an_ignored_folder_unless_recorded(monkeypatch):
    from bench import common

    monkeypatch.delenv("BENCH_RECORD", raising=False)
    assert common.results_path() == ROOT / "result" / "bench" / "RESULTS.md"
    ignored = subprocess.run(["git", "check-ignore", "-q", "result/bench/RESULTS.md"], cwd=ROOT)
    assert ignored.returncode in (0, 128)  # 128: not a git checkout (a copied tree)
    monkeypatch.setenv("BENCH_RECORD", "1")
    assert common.results_path() == ROOT / "bench" / "RESULTS.md"


def _bar_output(env_extra: dict, *, terminal: bool) -> bytes:
    """What experiments.progress_bar writes to stderr, a pipe or a terminal (a pty of 100 columns)."""
    import fcntl
    import pty
    import struct
    import termios

    code = "from utils.experiments import progress_bar\nwith progress_bar('learn', 50, 3) as b:\n    b.update(20)\n"
    env = {k: v for k, v in os.environ.items() if k != "UNLEARN_NO_PROGRESS"}
    env.update(env_extra)
    if not terminal:
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stderr
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # tqdm draws nothing at 0 columns
    try:
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=follower, timeout=120)
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
    assert done.returncode == 0
    return seen


def test_progress_bars_only_on_a_terminal_and_quiet_turns_them_off(tmp_path, monkeypatch):
    assert b"chains]" in _bar_output({}, terminal=True)
    assert _bar_output({}, terminal=False) == b""                       # redirected: no bar fragments at all
    assert _bar_output({"UNLEARN_NO_PROGRESS": "1"}, terminal=True) == b""
    # --quiet is that switch
    from utils import cli

    monkeypatch.delenv("UNLEARN_NO_PROGRESS")
    cli.parse(baseline.build_parser(False), ["--dataset", "DIGITS", "--quiet"])
    assert os.environ.get("UNLEARN_NO_PROGRESS") == "1"
    # a real run with stderr redirected to a file: log lines only, no carriage returns
    log = tmp_path / "stderr.txt"
    env = {k: v for k, v in os.environ.items() if k != "UNLEARN_NO_PROGRESS"}
    with open(log, "w") as fh:
        done = subprocess.run([sys.executable, str(ROOT / "baseline.py"), *TINY, "--eps", "1", "--result_dir",
                               str(tmp_path)], cwd=ROOT, env=dict(env, OMP_NUM_THREADS="1"), stdout=subprocess.PIPE,
                              stderr=fh, text=True, timeout=300)
    assert done.returncode == 0
    assert "\r" not in log.read_text() and "\r" not in done.stdout and "wrote " in done.stdout


def test_summary_is_a_short_block_and_quiet_is_documented(tmp_path, capsys):
    assert baseline.main(TINY + ["--eps", "1", "--result_dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(out) if line.startswith("Fig 3a on DIGITS"))
    assert out[start].endswith("mean test accuracy:") and out[start + 1].startswith("  K=1: Langevin unlearning [")
    assert out[start + 2].startswith("  noiseless 0.")
    assert baseline.main(["--help"]) == 0
    assert "--quiet" in capsys.readouterr().out


SEQ = TINY[:-2] + ["--sequential2", "1", "--S", "2", "--num_remove", "8", "--ifac", "1", "--sigma", "0.3",
                   "--trials", "3"]


def interrupted_then_resumed(main, argv, tmp_path, monkeypatch, capsys, mode):
    """Run ``main`` whole, then again stopped (Ctrl-C) at its 4th accuracy evaluation (learning, then requests
    1 and 2 of the first stream: stopped in request 3), then resumed. Returns (whole run folder, resumed run
    folder, the unlearning stages the resume ran, its stdout)."""
    assert main(argv + ["--result_dir", str(tmp_path / "whole")]) == 0
    whole = Path(results.resolve_run_dir(tmp_path / "whole" / mode))
    real_advance = experiments.Lab.advance
    real_accuracy = interrupt_at_call(monkeypatch, experiments.Lab, "accuracy", 4)
    cut = tmp_path / "cut"
    assert main(argv + ["--result_dir", str(cut)]) == 130
    monkeypatch.setattr(experiments.Lab, "accuracy", real_accuracy)
    unlearn_steps = []

    def counted(self, w, task, **kw):
        if kw.get("phase") == "unlearn":
            unlearn_steps.append(kw["desc"])
        return real_advance(self, w, task, **kw)

    monkeypatch.setattr(experiments.Lab, "advance", counted)
    capsys.readouterr()
    assert main(argv + ["--result_dir", str(cut), "--resume"]) == 0
    return whole, Path(results.resolve_run_dir(cut / mode)), unlearn_steps, capsys.readouterr().out


def same_arrays(a_dir, b_dir) -> bool:
    import numpy as np

    a, b = results.read_npz(str(a_dir / "arrays.npz")), results.read_npz(str(b_dir / "arrays.npz"))
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_stream_resumes_at_the_request_it_reached_and_adds_up_wall_clocks(tmp_path, monkeypatch, capsys):
    whole, resumed, unlearn_steps, out = interrupted_then_resumed(baseline.main, SEQ, tmp_path, monkeypatch, capsys,
                                                                  os.path.join("LMC", "DIGITS", "sequential2"))
    assert "resume: lmc_S2_requests: reusing requests 1..2 from the interrupted run" in out
    assert unlearn_steps == ["unlearn S=2 request 3/4", "unlearn S=2 request 4/4"]
    assert same_arrays(whole, resumed)
    clock = metrics_of(resumed)["wall_clock_seconds"]
    assert clock["reused"] > 0 and clock["total"] > clock["reused"]


def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    import signal
    import time

    env = {k: v for k, v in os.environ.items()}
    env.update(UNLEARN_NO_PROGRESS="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(ROOT / "baseline.py"), *TINY, "--burn_in", "200000", "--eps", "1",
                             "--result_dir", str(tmp_path)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    mode_dir = tmp_path / "LMC" / "DIGITS" / "baseline"
    deadline = time.time() + 600   # a deadline, not a wait: a loaded machine may start slowly
    while time.time() < deadline and not any(mode_dir.glob(f"*/{results.INCOMPLETE}")):
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM)" in err and "--resume" in err and "Traceback" not in err


def test_plan_only_prints_the_saved_tables_and_a_calibrated_time(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("UNLEARN_NO_CALIBRATION")
    # planning without data needs --n alone: D2D's d defaults to the dataset's (DIGITS: 64)
    argv = ["--dataset", "DIGITS", "--sequential2", "1", "--n", "267", "--plan_only", "--trials", "5",
            "--result_dir", str(tmp_path)]
    assert baseline.main(argv) == 0
    out = capsys.readouterr().out
    metrics = metrics_of(results.resolve_run_dir(tmp_path / "LMC" / "DIGITS" / "sequential2"))
    assert metrics["constants"]["d"] == 64
    k5 = metrics["lmc_k_lists"]["5"]
    shown = " ".join(map(str, k5[:5]))
    assert f"    5: [{shown} ... {k5[-1]}] ({len(k5)} values, sum {sum(k5)})" in out
    line = next(line for line in out.splitlines() if line.startswith("estimated time:"))
    assert " on cpu " in line and metrics["estimated_seconds"] > 0
    # one line per kind of work, as counted in metrics.json: 5 chains' full-batch steps among them
    steps = [w for w in metrics["estimate"]["work"] if w["what"] == "update" and w["C"] == 5 and w["noisy"]]
    assert steps and f"{steps[0]['count']:,} full-batch steps, 5 chains" in out


def test_paper_b_plan_with_n_says_which_truncation_a_run_uses(tmp_path, capsys):
    import main_sgd

    assert main_sgd.main(["--dataset", "MNIST", "--sequential", "1", "--n", "11982", "--plan_only",
                          "--result_dir", str(tmp_path)]) == 0
    assert "a run on MNIST uses the first 11264 of its 11982 rows" in capsys.readouterr().out


SGD_SEQ = ["--dataset", "DIGITS", "--sequential", "1", "--trials", "3", "--requests", "4", "--burn_in", "5",
           "--batch_size", "32", "--no_cache", "--quiet"]


def test_paper_b_stream_resumes_at_the_request_it_reached(tmp_path, monkeypatch, capsys):
    """main_sgd.py --sequential: an interrupted stream reruns only the requests it had not finished, and the
    resumed arrays equal an uninterrupted run's bit for bit."""
    import main_sgd

    whole, resumed, unlearn_steps, out = interrupted_then_resumed(main_sgd.main, SGD_SEQ, tmp_path, monkeypatch,
                                                                  capsys, os.path.join("SGD", "DIGITS", "sequential"))
    assert "reusing requests 1..2 from the interrupted run" in out
    assert unlearn_steps[:2] == ["unlearn b=32 request 3", "unlearn b=32 request 4"]
    assert "unlearn b=32 request 1" not in unlearn_steps
    assert same_arrays(whole, resumed)
