"""Issue 14, kills: die (like SIGKILL) before each file operation of a run, rerun, compare.

A script run killed at any file operation and rerun with --resume gives bit-identical arrays to an
uninterrupted run and leaves no temporary file, lock or parts behind. An unlearn.py learn killed anywhere
is learned again by rerunning it; a remove killed anywhere is either not committed (rerun: identical) or
committed (rerun: 'already removed'), and no old version holding removed rows survives the next command.
Every kill point of the script run is tried with FAULTS_ALL=1 (about 60 points); by default every tenth.
"""
import os
import shutil

import numpy as np
import pytest

import main_lmc
import unlearn
from faults import KILLED, files_under, run_forked, the_run, tmp_leftovers
from utils import state as statefile

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork to kill a run mid-way")

ARGV = ["--dataset", "DIGITS", "--paint_unlearning_sigma", "1", "--trials", "3", "--burn_in", "30",
        "--sigma_list", "0.05", "0.1", "--S", "5"]
FOLDER = os.path.join("LMC", "DIGITS", "paint_unlearning_sigma")
STRIDE = 1 if os.environ.get("FAULTS_ALL") else 10


def arrays(path) -> dict:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module", autouse=True)
def imported():
    """Import what a run imports once, so the forked children start warm."""
    import matplotlib.pyplot  # noqa: F401
    import torch  # noqa: F401
    import tqdm.auto  # noqa: F401

    from utils import engine, figures_lmc, plots  # noqa: F401


def test_script_killed_at_file_operations_resumes_bit_identically(tmp_path):
    ref_dir = tmp_path / "ref"
    code, total = run_forked(main_lmc.main, ARGV + ["--result_dir", str(ref_dir)])
    assert code == 0 and total > 20
    ref = arrays(the_run(ref_dir / FOLDER) / "arrays.npz")
    tried = 0
    for kill_at in range(1, total + 1, STRIDE):
        rd = tmp_path / f"k{kill_at}"
        code, _ = run_forked(main_lmc.main, ARGV + ["--result_dir", str(rd)], kill_at=kill_at)
        assert code == KILLED, (kill_at, code)
        if (the_run(rd / FOLDER) / "metrics.json").exists():   # killed after the finished mark: all finals in place
            assert same(arrays(the_run(rd / FOLDER) / "arrays.npz"), ref), kill_at
        code, _ = run_forked(main_lmc.main, ARGV + ["--result_dir", str(rd), "--resume"])
        assert code == 0, kill_at
        assert same(arrays(the_run(rd / FOLDER) / "arrays.npz"), ref), kill_at
        left = files_under(the_run(rd / FOLDER))
        assert tmp_leftovers(rd) == [] and ".lock" not in left and not any(p.startswith("parts") for p in left), \
            (kill_at, left)
        tried += 1
        shutil.rmtree(rd)
    assert tried == len(range(1, total + 1, STRIDE))


def _features(path) -> str:
    rng = np.random.default_rng(0)
    n = 40
    np.savez(path, X_train=rng.normal(size=(n, 6)), y_train=np.repeat([0, 1], n // 2),
             X_test=rng.normal(size=(10, 6)), y_test=np.repeat([0, 1], 5), ids=np.arange(5000, 5000 + n))
    return str(path)


def _state_files(st) -> list[str]:
    """The state folder's entries but .lock: a lock file whose holder was killed holds nothing (the kernel
    dropped its flock; the next command that takes the lock removes the file)."""
    return sorted(name for name in os.listdir(st) if name != ".lock")


def test_unlearn_learn_and_remove_killed_at_every_file_operation(tmp_path):
    features = _features(tmp_path / "f.npz")
    learn = ["learn", "--features", features, "--trials", "2", "--burn_in", "5", "--device", "cpu", "--seed", "0"]
    remove = ["remove", "--ids", "5003", "5007", "--device", "cpu"]
    ref = str(tmp_path / "ref")
    code, learn_ops = run_forked(unlearn.main, learn + ["--state", ref])
    assert code == 0
    ref_learned = statefile.load(ref).meta["arrays_sha256"]
    code, remove_ops = run_forked(unlearn.main, remove + ["--state", ref])
    assert code == 0
    ref_removed = statefile.load(ref).meta["arrays_sha256"]
    assert learn_ops >= 5 and remove_ops >= 5

    for kill_at in range(1, learn_ops + 1):
        st = str(tmp_path / f"l{kill_at}")
        code, _ = run_forked(unlearn.main, learn + ["--state", st], kill_at=kill_at)
        assert code == KILLED
        # rerunning learn cleans a killed learn's leftovers (or refuses a state it did commit)
        code, _ = run_forked(unlearn.main, learn + ["--state", st])
        assert code in (0, 2), kill_at
        assert statefile.load(st).meta["arrays_sha256"] == ref_learned, kill_at
        assert _state_files(st) == ["CURRENT", "KEY", "v000001"], (kill_at, _state_files(st))
        shutil.rmtree(st)

    base = str(tmp_path / "base")
    assert run_forked(unlearn.main, learn + ["--state", base])[0] == 0
    for kill_at in range(1, remove_ops + 1):
        st = str(tmp_path / f"r{kill_at}")
        shutil.copytree(base, st)
        code, _ = run_forked(unlearn.main, remove + ["--state", st], kill_at=kill_at)
        assert code == KILLED
        committed = statefile.load(st).version == 2
        # any command completes a deletion the kill left pending: status here
        assert run_forked(unlearn.main, ["status", "--state", st])[0] == 0
        assert _state_files(st) == ["CURRENT", "KEY", f"v00000{1 + committed}"], (kill_at, _state_files(st))
        code, _ = run_forked(unlearn.main, remove + ["--state", st])
        assert code == (2 if committed else 0), kill_at         # 2: "already removed by request 1"
        done = statefile.load(st)
        assert done.version == 2 and done.meta["arrays_sha256"] == ref_removed, kill_at
        assert _state_files(st) == ["CURRENT", "KEY", "v000002"], (kill_at, _state_files(st))
        shutil.rmtree(st)


def test_sigterm_and_sigint_release_the_lock_and_leave_no_temporary_file(tmp_path):
    """SIGTERM unwinds like Ctrl-C: exit 130, the lock file removed, no .tmp-*; --resume then finishes."""
    import signal
    import subprocess
    import sys
    import time

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    argv = [sys.executable, os.path.join(root, "main_lmc.py")] + ARGV[:7] + ["5000"] + ARGV[8:] + [
        "--no_cache", "--result_dir", str(tmp_path)]
    env = dict(os.environ, UNLEARN_NO_PROGRESS="1", OMP_NUM_THREADS="1")
    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = subprocess.Popen(argv, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        lock = tmp_path / FOLDER / ".lock"
        deadline = time.time() + 600   # a deadline, not a wait: a loaded machine may start slowly
        while not lock.exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        time.sleep(0.3)
        if proc.poll() is not None:
            pytest.skip("the run finished before the signal")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        assert "interrupted" in err and "Traceback" not in err
        assert not lock.exists() and tmp_leftovers(tmp_path) == []
    done = subprocess.run(argv + ["--resume"], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_sweep_removes_only_dead_writers_temporary_files_in_shared_folders(tmp_path):
    """The cache is shared by runs: a live writer's .tmp-<pid>-* stays, a dead (or pid-less, older) one goes."""
    import subprocess
    import sys

    from utils import results

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        names = [f".tmp-{os.getpid()}-a", f".tmp-{live.pid}-b", f".tmp-{dead.pid}-c", ".tmp-x03ue7wm-d.npz",
                 "chains-e.npz"]
        for name in names:
            (tmp_path / name).write_bytes(b"")
        assert sorted(results.sweep_tmp(str(tmp_path), only_dead=True)) == sorted(names[2:4])
        assert sorted(os.listdir(tmp_path)) == sorted(names[:2] + names[4:])
        assert sorted(results.sweep_tmp(str(tmp_path))) == sorted(names[:2])   # a locked folder: all go
    finally:
        live.kill()
        live.wait()
