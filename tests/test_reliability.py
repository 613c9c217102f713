"""Issue 7: bad input gives one clear line and exit 2 with nothing written; interrupted runs resume
bit-identically; the same seed reproduces; two runs on one folder do not interfere."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import baseline
import main_lmc
import main_sgd
from utils import results

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dataset", "DIGITS", "--trials", "4", "--burn_in", "20"]


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()) if path.exists() else []


def write_features(path: Path, **override):
    rng = np.random.default_rng(0)
    arrays = {"X_train": rng.normal(size=(40, 5)), "y_train": np.repeat([0, 1], 20),
              "X_test": rng.normal(size=(10, 5)), "y_test": np.repeat([0, 1], 5)}
    arrays.update(override)
    np.savez(path, **arrays)
    return str(path)


def bad_cases(tmp: Path):
    nan_x = np.random.default_rng(1).normal(size=(40, 5))
    nan_x[3, 2] = np.nan
    return [
        # (script, argv, words the one-line message must contain)
        (baseline, ["--dataset", "NOPE"], ["NOPE", "allowed"]),
        (baseline, ["--dtype", "float16"], ["float16", "choose from"]),
        (baseline, TINY + ["--eps", "0"], ["'0'", "> 0"]),
        (baseline, TINY + ["--eps", "-1"], ["'-1'", "> 0"]),
        (baseline, TINY + ["--sigma", "-0.5", "--sequential2", "1"], ["'-0.5'", ">= 0"]),
        (baseline, TINY + ["--K", "0"], ["'0'", ">= 1"]),
        (baseline, TINY[:2] + ["--trials", "0"], ["'0'", ">= 1"]),
        (baseline, TINY + ["--S", "0"], ["'0'", ">= 1"]),
        (baseline, TINY + ["--S", "267"], ["267"]),
        (baseline, TINY + ["--lam", "0"], ["'0'", "> 0"]),
        (baseline, TINY + ["--M", "-1"], ["'-1'", "> 0"]),
        (baseline, TINY + ["--L", "0"], ["'0'", "> 0"]),
        (baseline, TINY + ["--classes", "3", "12"], ["3 12", "0..9"]),
        (baseline, TINY[:2] + ["--burn_in", "-1"], ["'-1'", "auto"]),
        (baseline, ["--find_k", "1", "--n", "1"], ["'1'", ">= 2"]),
        (baseline, ["--find_k", "1", "--n", "100", "--dim", "0"], ["'0'", ">= 1"]),
        (baseline, TINY + ["--device", "tpu"], ["tpu", "cuda"]),
        (main_sgd, TINY + ["--sequential", "1", "--batch_size", "0"], ["'0'", ">= 1"]),
        (main_sgd, TINY + ["--sequential", "1", "--batch_size", "100000"], ["100000"]),
        (main_lmc, TINY + ["--paint_utility_epsilon", "1", "--sigma", "0"], ["sigma"]),
        (baseline, ["--dataset", "MNIST", "--data_dir", str(tmp / "empty")], ["MNIST", "empty"]),
        (baseline, ["--dataset", "MINE", "--features", str(tmp / "missing.npz")], ["missing.npz"]),
        (baseline, ["--dataset", "MINE", "--features", write_features(tmp / "nan.npz", X_train=nan_x)],
         ["nan.npz"]),
        (baseline, ["--dataset", "MINE", "--features", str(tmp / "keys.npz")], ["keys.npz"]),
        (baseline, ["--dataset", "MINE", "--features", str(tmp / "garbage.npz")], ["garbage.npz"]),
    ]


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, monkeypatch):
    from utils import downloads

    # the MNIST case must not try the network: no files and no download
    monkeypatch.setattr(downloads, "reachable", lambda *a, **k: False)
    np.savez(tmp_path / "keys.npz", X=np.ones((3, 2)))
    (tmp_path / "garbage.npz").write_bytes(b"not an npz file")
    results = tmp_path / "result"
    for script, argv, words in bad_cases(tmp_path):
        code = script.main(argv + ["--result_dir", str(results)])
        err = capsys.readouterr().err.strip()
        assert code == 2, (argv, err)
        assert len(err.splitlines()) == 1 and "Traceback" not in err, (argv, err)
        for w in words:
            assert w in err, (argv, w, err)
        assert files_under(results) == [], (argv, files_under(results))


def test_unwritable_result_dir_and_cuda_without_cuda(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert baseline.main(TINY + ["--result_dir", str(blocker / "sub")]) == 2
    assert "not writable" in capsys.readouterr().err
    import torch

    if not torch.cuda.is_available():
        assert baseline.main(TINY + ["--device", "cuda", "--result_dir", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert "cuda" in err and "not available" in err
        assert files_under(tmp_path / "r") == []


def test_infeasible_target_fails_before_any_file(tmp_path, capsys):
    # at sigma = 0.03 no K below the search's limit reaches eps = 1e-12
    code = main_lmc.main(TINY + ["--paint_utility_epsilon", "1", "--eps", "1e-12", "--S", "1",
                                 "--result_dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "no K" in err and "eps_target=1e-12" in err
    assert files_under(tmp_path) == []


def test_divergence_stops_with_a_clear_message(tmp_path, capsys, monkeypatch):
    # a flag cannot make these chains diverge (L > m keeps eta*m < 1 and gradients are clipped), so
    # start them from non-finite weights to drive the engine's check through the real script
    import torch

    from utils import engine

    real_init = engine.init_chains
    monkeypatch.setattr(engine, "init_chains",
                        lambda **kw: torch.full_like(real_init(**kw), float("inf")))
    code = main_lmc.main(TINY + ["--paint_utility_s", "1", "--S", "1", "--eps", "1",
                                 "--result_dir", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "non-finite" in err
    assert not list(tmp_path.rglob("metrics.json")) and not list(tmp_path.rglob("arrays.npz"))


def run_dir(mode_dir: Path) -> Path:
    return Path(results.resolve_run_dir(mode_dir))


def run_arrays(folder: Path) -> dict:
    with np.load(folder / "arrays.npz") as z:
        return {k: z[k] for k in z.files}


def test_same_seed_is_bit_identical_and_other_seed_differs(tmp_path):
    argv = TINY + ["--sequential2", "1", "--S", "5", "--num_remove", "10", "--ifac", "1", "--no_cache"]
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        assert baseline.main(argv + ["--seed", seed, "--result_dir", str(tmp_path / name)]) == 0
    a, b, c = (run_arrays(run_dir(tmp_path / n / "LMC" / "DIGITS" / "sequential2")) for n in "abc")
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert any(not np.array_equal(a[k], c[k]) for k in a if a[k].dtype.kind == "f")
    cfg = json.loads((run_dir(tmp_path / "a" / "LMC" / "DIGITS" / "sequential2") / "config.json").read_text())
    assert cfg["flags"]["seed"] == 0 and cfg["versions"]["torch"]


def test_killed_run_resumes_bit_identically(tmp_path):
    """SIGKILL a real run part-way, resume it, and compare with an uninterrupted run of the same seed."""
    env = dict(os.environ, UNLEARN_NO_PROGRESS="1", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    argv = [sys.executable, str(ROOT / "main_lmc.py"), "--dataset", "DIGITS", "--paint_unlearning_sigma", "1",
            "--trials", "8", "--burn_in", "1500", "--sigma_list", "0.05", "0.1", "0.2", "--S", "5",
            "--no_cache"]
    killed = tmp_path / "killed"
    mode_dir = killed / "LMC" / "DIGITS" / "paint_unlearning_sigma"
    proc = subprocess.Popen(argv + ["--result_dir", str(killed)], env=env, cwd=str(ROOT),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600   # a deadline, not a wait: a loaded machine may start slowly
    while time.time() < deadline and proc.poll() is None:
        runs = results.run_dirs(mode_dir)
        if runs and (Path(runs[0]) / "parts").exists() and any((Path(runs[0]) / "parts").iterdir()):
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.skip("the run finished before it could be killed")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    folder = Path(results.run_dirs(mode_dir)[0])
    assert not (folder / "metrics.json").exists() and (folder / results.INCOMPLETE).exists()
    done = subprocess.run(argv + ["--result_dir", str(killed), "--resume"], env=env, cwd=str(ROOT),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    whole = tmp_path / "whole"
    ref = subprocess.run(argv + ["--result_dir", str(whole)], env=env, cwd=str(ROOT), capture_output=True,
                         text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    a, b = run_arrays(folder), run_arrays(run_dir(whole / "LMC" / "DIGITS" / "paint_unlearning_sigma"))
    assert run_dir(mode_dir) == folder and not (folder / results.INCOMPLETE).exists()
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_resume_refuses_changed_flags(tmp_path, capsys):
    argv = TINY + ["--find_k", "1", "--result_dir", str(tmp_path)]
    assert baseline.main(argv) == 0
    # an interrupted run of these flags: resuming it with another --eps is a mistake, not a new run
    (run_dir(tmp_path / "LMC" / "DIGITS" / "find_k") / results.INCOMPLETE).write_text("")
    assert baseline.main(argv[:-2] + ["--eps", "0.5", "--result_dir", str(tmp_path), "--resume"]) == 2
    assert "--resume refused" in capsys.readouterr().err


def test_second_run_on_a_locked_folder_refuses(tmp_path, capsys):
    from test_results import HOLD_LOCK

    assert baseline.main(TINY + ["--find_k", "1", "--result_dir", str(tmp_path)]) == 0
    folder = run_dir(tmp_path / "LMC" / "DIGITS" / "find_k")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert baseline.main(TINY + ["--find_k", "1", "--result_dir", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and len(err.strip().splitlines()) == 1
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    # the holder is dead now: its lock file remains but the kernel released the flock
    assert (folder / ".lock").exists()
    assert baseline.main(TINY + ["--find_k", "1", "--result_dir", str(tmp_path)]) == 0
    assert not (folder / ".lock").exists()


def test_plan_only_never_overwrites_a_finished_run(tmp_path, capsys):
    argv = TINY + ["--sequential2", "1", "--S", "5", "--num_remove", "10", "--ifac", "1",
                   "--result_dir", str(tmp_path)]
    assert baseline.main(argv) == 0
    metrics = run_dir(tmp_path / "LMC" / "DIGITS" / "sequential2") / "metrics.json"
    before = metrics.read_bytes()
    assert baseline.main(argv + ["--plan_only"]) == 0   # a plan is a run of its own, in its own folder
    assert metrics.read_bytes() == before
    mode = tmp_path / "LMC" / "DIGITS" / "sequential2"
    (plan,) = [p for p in mode.iterdir() if p.name not in (results.LATEST, metrics.parent.name)]
    assert json.loads((plan / "metrics.json").read_text())["plan_only"] is True
    assert run_dir(mode) == metrics.parent   # `latest` stays on the run with results, never on a plan
