import json
import os
import subprocess
import sys

import numpy as np
import pytest

from utils import results
from utils.results import ChainCache, ResultError, RunFolder


def test_json_key_formats_like_the_paper_keys():
    assert [results.json_key(v) for v in (1.0, 0.05, 1.5, 100, "full", None)] == \
        ["1", "0.05", "1.5", "100", "full", "full"]


def test_strict_json_writes_numpy_and_infinity(tmp_path):
    path = tmp_path / "m.json"
    results.write_json(str(path), {"a": np.float32(0.5), "b": np.arange(3), "c": float("inf"), 2: (1, 2)})
    text = path.read_text()
    data = json.loads(text)  # strict parse: no NaN/Infinity tokens
    assert data == {"a": 0.5, "b": [0, 1, 2], "c": "inf", "2": [1, 2]}
    assert "Infinity" not in text


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "x.txt"
    results.atomic_write_text(str(path), "old")

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        results.atomic_write_text(str(path), "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]  # no temporary left behind


def test_npz_round_trip(tmp_path):
    arrays = {"acc": np.linspace(0, 1, 5), "k": np.array([1, 2, 3])}
    results.write_npz(str(tmp_path / "a.npz"), arrays)
    back = results.read_npz(str(tmp_path / "a.npz"))
    assert set(back) == {"acc", "k"} and np.array_equal(back["acc"], arrays["acc"])


def _config(**flags):
    return {"flags": dict(flags)}


def test_lock_refuses_live_owner_and_takes_over_stale(tmp_path):
    run = RunFolder(str(tmp_path), "LMC", "DIGITS", "baseline")
    os.makedirs(run.path)
    # a live process that is not us holds the lock (flock on the file, as FolderLock takes it)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, run.path], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ResultError, match=f"pid {holder.pid}"):
            run.open(_config(seed=0))
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    # now the owner is dead (SIGKILL: it released nothing itself): the kernel dropped its flock
    assert os.path.exists(run.lock.path)
    run.open(_config(seed=0))
    assert f"pid={os.getpid()}" in open(run.lock.path).read()
    run.close()
    assert not os.path.exists(run.lock.path)


# holds FolderLock(argv[1]) until killed
HOLD_LOCK = ("import sys, time; sys.path.insert(0, %r); from utils.results import FolderLock; "
             "FolderLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)"
             % os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_resume_refuses_changed_flags_and_reuses_parts(tmp_path):
    run = RunFolder(str(tmp_path), "LMC", "DIGITS", "baseline")
    run.open(_config(seed=0, trials=5))
    run.write_config(_config(seed=0, trials=5))
    run.save_part("learn-s0.1", {"w": np.ones(3)})
    run.close()

    again = RunFolder(str(tmp_path), "LMC", "DIGITS", "baseline")
    with pytest.raises(ResultError, match="trials: 5 -> 6"):
        again.open(_config(seed=0, trials=6), resume=True)
    again.open(_config(seed=0, trials=5, device="cpu"), resume=True)  # device may change
    assert np.array_equal(again.load_part("learn-s0.1")["w"], np.ones(3))
    again.close()

    plain = RunFolder(str(tmp_path), "LMC", "DIGITS", "baseline")
    plain.open(_config(seed=0, trials=5))  # a plain rerun starts over
    assert plain.load_part("learn-s0.1") is None
    plain.close()


def test_plan_only_never_overwrites_a_finished_full_run(tmp_path):
    run = RunFolder(str(tmp_path), "LMC", "DIGITS", "baseline")
    run.open(_config())
    run.write_metrics({"x": 1})
    run.close()
    with pytest.raises(ResultError, match="--result-dir"):
        RunFolder(str(tmp_path), "LMC", "DIGITS", "baseline").open(_config(), plan_only=True)
    # but a plan may replace a plan
    run.open(_config())
    run.write_metrics({"x": 1}, plan_only=True)
    run.close()
    RunFolder(str(tmp_path), "LMC", "DIGITS", "baseline").open(_config(), plan_only=True).close()


def test_check_writable(tmp_path):
    results.check_writable(str(tmp_path / "new" / "deeper"))  # creatable
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ResultError, match="is a file"):
        results.check_writable(str(f))
    with pytest.raises(ResultError, match="not writable"):
        results.check_writable(str(f / "below"))
    assert not (tmp_path / "new").exists()  # checking writes nothing


def test_chain_cache_keys_on_every_input(tmp_path):
    cache = ChainCache(str(tmp_path))
    inputs = {"sigma": 0.1, "T": 10, "seed": 0}
    assert cache.get(inputs) is None
    cache.put(inputs, {"w": np.arange(4.0)})
    assert np.array_equal(cache.get(dict(inputs))["w"], np.arange(4.0))
    assert cache.get({**inputs, "T": 11}) is None
    assert cache.get({**inputs, "sigma": 0.1000001}) is None
    assert not any(p.name == "metrics.json" for p in (tmp_path / "cache").iterdir())


def test_config_record_outside_git_has_null_commit(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "REPO_ROOT", str(tmp_path))
    rec = results.config_record({"seed": 3}, {"n": 10})
    assert rec["git_commit"] is None and rec["flags"] == {"seed": 3} and rec["derived"] == {"n": 10}
    assert rec["versions"]["numpy"] == np.__version__
