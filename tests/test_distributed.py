"""torchrun: chains split across ranks give one process's arrays bit for bit (utils/distributed.py).

The multi-process tests start ``python -m torch.distributed.run --standalone --nproc_per_node 2`` (torchrun,
gloo on the CPU, a free port chosen by the rendezvous) on tiny DIGITS runs, and compare with the same run
made in this process.
"""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import baseline
import main_sgd
from utils import distributed, engine
from utils import data as data_mod
from faults import the_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELPER = os.path.join(ROOT, "tests", "dist_script.py")

needs_gloo = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="this torch build has no torch.distributed gloo backend for CPU ranks")

# 70 trials over 2 ranks: chains 0..31 on rank 0, 32..69 on rank 1 (shares start at multiples of CHAIN_ALIGN)
TRIALS = 70


def torchrun(script, *argv, fail_rank=None, fail_after=0, nproc=2, env_extra=None):
    env = dict(os.environ, UNLEARN_NO_PROGRESS="1", OMP_NUM_THREADS="1", PYTHONPATH=ROOT, **(env_extra or {}))
    env.pop("UNLEARN_DEBUG", None)
    if fail_rank is not None:
        env.update(UNLEARN_TEST_FAIL_RANK=str(fail_rank), UNLEARN_TEST_FAIL_AFTER=str(fail_after))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           HELPER, script, *argv]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def arrays_of(folder):
    with np.load(os.path.join(the_run(folder), "arrays.npz")) as z:
        return {k: z[k] for k in z.files}


def assert_same_arrays(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert np.array_equal(a[k], b[k]), f"{k} differs between one process and two ranks"


# ---------------------------------------------------------------- the split itself
@pytest.mark.parametrize("C,size", [(1, 2), (2, 2), (31, 2), (33, 2), (64, 2), (65, 2), (70, 2), (100, 3),
                                    (100, 4), (200, 8), (1000, 7)])
def test_chain_ranges_cover_every_chain_once_in_aligned_shares(C, size):
    ranges = [distributed.chain_range(C, r, size) for r in range(size)]
    covered = [c for a, b in ranges for c in range(a, b)]
    assert covered == list(range(C))                                      # contiguous, each chain once
    for a, b in ranges:
        assert a == b or a % distributed.CHAIN_ALIGN == 0                 # shares start on the kernels' blocks
        assert b - a != 1 or C == 1                                       # never a lone chain (one-row BLAS)
    sizes = [b - a for a, b in ranges]
    assert max(sizes) - min(sizes) <= 2 * distributed.CHAIN_ALIGN        # as even as whole blocks allow


def test_one_process_world_initialises_nothing(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.setup("cpu") == distributed.World() and not distributed.world().active
    assert not torch.distributed.is_initialized()
    x = torch.arange(6.0).view(3, 2)
    assert distributed.gather_chains(x, 3) is x and distributed.broadcast({"a": 1}) == {"a": 1}
    assert distributed.on_main(lambda: 7) == 7 and distributed.label("baseline.py") == "baseline.py"
    assert distributed.env_world({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == World(3, 4, 1)
    with pytest.raises(ValueError, match="RANK=4 WORLD_SIZE=4"):
        distributed.env_world({"WORLD_SIZE": "4", "RANK": "4", "LOCAL_RANK": "0"})


World = distributed.World


@pytest.mark.parametrize("name,b", [("DIGITS", None), ("DIGITS", 16), ("DIGITS", 1), ("DIGITS_MULTI", None),
                                    ("DIGITS_MULTI", 16)])
@pytest.mark.parametrize("C,size", [(70, 2), (100, 3), (100, 4)])
def test_engine_shares_equal_one_process_bit_for_bit(name, b, C, size):
    """Chains run as rank shares (first_chain) equal the same chains run together: noise, start, batch order and
    the products' rounding (the shares start at multiples of CHAIN_ALIGN)."""
    ds = data_mod.load_dataset(name)
    n = ds.n - ds.n % 16
    task = engine.to_task(ds.X_train[:n], ds.y_train[:n], ds.num_classes)

    def run(count, first):
        g = lambda: engine.generator_for(0, "dist", name)  # noqa: E731
        w0 = engine.init_chains(C=count, d=task.d, num_classes=ds.num_classes, sigma=0.1, m=1.0, generator=g(),
                                first_chain=first)
        perms = None if b is None else engine.make_perms(count, n, generator=g(), first_chain=first)
        return engine.run_chains(w0, task, steps=2 if b == 1 else 10, eta=0.5, sigma=0.1, m=1.0, M=1.0 if ds.num_classes == 2 else 2.0,
                                 generator=g(), batch_size=b, perms=perms, first_chain=first)

    shares = [distributed.chain_range(C, r, size) for r in range(size)]
    assert torch.equal(torch.cat([run(bb - a, a) for a, bb in shares if bb > a]), run(C, 0))


# ---------------------------------------------------------------- scripts under torchrun
@needs_gloo
def test_baseline_two_ranks_equal_one_process(tmp_path):
    argv = ["--dataset", "DIGITS", "--K", "1", "2", "--eps", "2", "--trials", str(TRIALS), "--burn_in", "30",
            "--no_cache"]
    assert baseline.main([*argv, "--result_dir", str(tmp_path / "one")]) == 0
    out = torchrun("baseline.py", *argv, "--result_dir", str(tmp_path / "two"))
    assert out.returncode == 0, out.stderr[-3000:]
    one, two = (tmp_path / w / "LMC" / "DIGITS" / "baseline" for w in ("one", "two"))
    assert_same_arrays(arrays_of(one), arrays_of(two))
    assert arrays_of(two)["lmc_unlearn"].shape == (2, 1, TRIALS)
    assert out.stdout.count("wrote ") == 1                    # rank 0 alone logs and writes
    assert sorted(os.listdir(tmp_path / "two")) == ["LMC"]    # and no other rank wrote a cache or a folder


@needs_gloo
def test_audit_two_ranks_test_all_chains_as_one_process(tmp_path):
    """audit.py's statistics need every chain: the ranks gather their shares, and the arrays are one process's."""
    import audit

    argv = ["--dataset", "DIGITS", "--sigma", "0.01", "--S", "10", "--burn_in", "20", "--seed", "0",
            "--trials", str(TRIALS), "--K", "0", "5", "--no_cache"]
    assert audit.main([*argv, "--result_dir", str(tmp_path / "one")]) == 0
    out = torchrun("audit.py", *argv, "--result_dir", str(tmp_path / "two"))
    assert out.returncode == 0, out.stderr[-3000:]
    one, two = (tmp_path / w / "LMC" / "DIGITS" / "audit" for w in ("one", "two"))
    assert_same_arrays(arrays_of(one), arrays_of(two))


@needs_gloo
def test_main_sgd_two_ranks_equal_one_process_and_resume_after_a_rank_fails(tmp_path):
    argv = ["--dataset", "DIGITS", "--sequential", "1", "--trials", str(TRIALS), "--requests", "2",
            "--burn_in", "10", "--batch_size", "32", "full", "--no_cache"]
    assert main_sgd.main([*argv, "--result_dir", str(tmp_path / "one")]) == 0
    one = tmp_path / "one" / "SGD" / "DIGITS" / "sequential"

    # rank 1 fails in the second setting: one error line, from rank 1; no finished files, the first part kept
    cut = tmp_path / "cut" / "SGD" / "DIGITS" / "sequential"
    out = torchrun("main_sgd.py", *argv, "--result_dir", str(tmp_path / "cut"), fail_rank=1, fail_after=4)
    assert out.returncode != 0
    ours = [line for line in out.stderr.splitlines() if "main_sgd.py" in line and ": error:" in line]
    assert ours == ["main_sgd.py [rank 1 of 2]: error: simulated failure of rank 1"], out.stderr[-3000:]
    assert "interrupted" not in out.stderr and 'utils/' not in out.stderr    # no rank printed more
    assert re.search(r"Root Cause.*?rank\s*:\s*1 .*?exitcode\s*:\s*2", out.stderr, re.S)  # torchrun names it
    assert not (the_run(cut) / "metrics.json").exists() and not (the_run(cut) / "arrays.npz").exists()
    names = sorted(p.name for p in (the_run(cut) / "parts").iterdir())
    # the first setting was saved (with its last request's checkpoint); the second setting's stage was not
    assert names[:2] == ["seq_b32_sigma0.03.npz", "seq_b32_sigma0.03_requests.npz"]
    assert all(n.endswith("_requests.npz") for n in names[2:]), names

    out = torchrun("main_sgd.py", *argv, "--result_dir", str(tmp_path / "cut"), "--resume")
    assert out.returncode == 0, out.stderr[-3000:]
    assert_same_arrays(arrays_of(one), arrays_of(cut))


@needs_gloo
def test_a_bad_flag_under_torchrun_is_one_line_from_rank_0_and_writes_nothing(tmp_path):
    out = torchrun("baseline.py", "--dataset", "DIGITS", "--trials", "0", "--result_dir", str(tmp_path))
    assert out.returncode != 0
    ours = [line for line in out.stderr.splitlines() if line.startswith("baseline.py")]
    assert len(ours) == 1 and "--trials" in ours[0], out.stderr[-3000:]
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- data parallel (rows across ranks)
@needs_gloo
def test_a_refusal_before_the_ranks_meet_is_printed_by_rank_0_however_late_it_starts(tmp_path):
    """Every rank refuses status under torchrun before the group forms; only rank 0 prints it. Rank 1 must not
    end first: torchrun would stop rank 0 before its line (seen on a loaded machine). Here rank 0 starts only
    once rank 1 waits to be stopped, so a rank 1 that exited instead leaves no line at all."""
    out = torchrun("unlearn.py", "status", "--state", str(tmp_path / "st"),
                   env_extra={"UNLEARN_TEST_RANK0_AFTER": str(tmp_path / "rank1-waits")})
    lines = [line for line in out.stderr.splitlines() if line.startswith("unlearn.py")]
    assert out.returncode != 0 and len(lines) == 1 and "torchrun" in lines[0], out.stderr[-3000:]


def test_rows_sharded_over_two_ranks_learn_what_one_process_learns_up_to_rounding(tmp_path):
    """Each rank holds half the rows; the gradient sums are all-reduced: the same chains as one process up to
    float32 rounding of the reordered sums (clipping at M = 0.5 fires, so the clip is exercised too)."""
    path = tmp_path / "w.npz"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           os.path.join(ROOT, "tests", "dist_rows.py"), str(path)]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = np.load(path)
    for name in ("DIGITS", "DIGITS_MULTI"):
        ds = data_mod.load_dataset(name)
        task = engine.to_task(ds.X_train, ds.y_train, ds.num_classes)
        g = lambda: engine.generator_for(0, "rows", name)  # noqa: E731
        w0 = engine.init_chains(C=8, d=ds.d, num_classes=ds.num_classes, sigma=0.05, m=0.1, generator=g())
        one = engine.run_chains(w0, task, steps=50, eta=1.0, sigma=0.05, m=0.1, M=0.5 if ds.num_classes == 2 else 2.0, generator=g()).numpy()
        scale = np.abs(one).max()
        assert np.abs(got[name] - one).max() <= 1e-5 * scale, name    # float32 rounding, not another result
        print(f"{name}: max |two ranks - one process| = {np.abs(got[name] - one).max():.3g} (max |w| {scale:.3g})")


def test_sharded_tasks_refuse_mini_batches():
    ds = data_mod.load_dataset("DIGITS")
    task = engine.to_task(ds.X_train[:256], ds.y_train[:256], 2)
    import dataclasses
    sharded = dataclasses.replace(task, n_total=512, reduce=lambda t: None)
    w0 = torch.zeros((2, ds.d))
    with pytest.raises(ValueError, match="full-batch steps only"):
        engine.run_chains(w0, sharded, steps=1, eta=1.0, sigma=0.0, m=0.1, M=1.0, batch_size=32,
                          perms=engine.make_perms(2, 256, generator=engine.generator_for(0)),
                          generator=engine.generator_for(0))
    # n_total scales the step: a shard of every row counted twice moves like the whole data at half the step
    g = engine.generator_for(0)
    half = engine.run_chains(w0, dataclasses.replace(task, n_total=512, reduce=lambda t: t.mul_(2)), steps=1,
                             eta=1.0, sigma=0.0, m=0.0, M=1.0, generator=g)
    whole = engine.run_chains(w0, task, steps=1, eta=1.0, sigma=0.0, m=0.0, M=1.0, generator=g)
    assert torch.allclose(half, whole, rtol=1e-6, atol=1e-9) and bool(half.abs().max() > 0)


@needs_gloo
def test_unlearn_learn_with_rows_split_matches_one_process_and_removes_as_usual(tmp_path):
    """unlearn.py learn under torchrun (rows split, gradient sums all-reduced): the state's chains equal one
    process's up to float32 rounding; the state is the usual one (a plain remove continues it); remove itself
    refuses torchrun with one line."""
    import unlearn
    from sklearn.datasets import load_digits

    from utils import state as statefile

    X, y = load_digits(return_X_y=True)
    keep = np.isin(y, (3, 8))
    features = tmp_path / "digits.npz"
    np.savez(features, X_train=X[keep][:270], y_train=y[keep][:270], X_test=X[keep][270:], y_test=y[keep][270:])
    learn = ["learn", "--features", str(features), "--eps", "1", "--K", "20", "--burn_in", "30", "--trials", "8",
             "--M", "0.5", "--device", "cpu"]
    # without --seed each rank draws the secret seed; rank 0's must reach every rank, or their noise differs
    out = torchrun("unlearn.py", *learn, "--state", str(tmp_path / "secret"))
    assert out.returncode == 0, out.stderr[-3000:]
    learn += ["--seed", "0"]
    assert unlearn.main([*learn, "--state", str(tmp_path / "one")]) == 0
    out = torchrun("unlearn.py", *learn, "--state", str(tmp_path / "two"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("saved state folder") == 1                       # rank 0 alone writes and prints
    one, two = statefile.load(str(tmp_path / "one")), statefile.load(str(tmp_path / "two"))
    assert one.arrays["w"].shape == two.arrays["w"].shape == (8, 64)
    diff = np.abs(one.arrays["w"] - two.arrays["w"]).max()
    assert 0 <= diff <= 1e-5 * np.abs(one.arrays["w"]).max()
    assert np.array_equal(one.arrays["X"], two.arrays["X"]) and one.meta["settings"] == two.meta["settings"]

    # remove: one process and two ranks continue the same state to the same chains (up to rounding)
    assert unlearn.main(["remove", "--state", str(tmp_path / "one"), "--ids", "5", "--device", "cpu"]) == 0
    out = torchrun("unlearn.py", "remove", "--state", str(tmp_path / "two"), "--ids", "5", "--device", "cpu")
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("certificate of request 1") == 1
    one, two = statefile.load(str(tmp_path / "one")), statefile.load(str(tmp_path / "two"))
    assert one.meta["requests"][0]["certificate"] == two.meta["requests"][0]["certificate"]
    assert np.array_equal(one.arrays["X"], two.arrays["X"]) and np.array_equal(one.arrays["removed"],
                                                                                two.arrays["removed"])
    diff = np.abs(one.arrays["w"] - two.arrays["w"]).max()
    assert 0 < diff <= 1e-5 * np.abs(one.arrays["w"]).max()       # rounding of the reordered sums, no more
    # status stays one process: one line under torchrun, nothing changed
    refused = torchrun("unlearn.py", "status", "--state", str(tmp_path / "two"))
    lines = [line for line in refused.stderr.splitlines() if line.startswith("unlearn.py")]
    assert refused.returncode != 0 and len(lines) == 1 and "torchrun" in lines[0], refused.stderr[-3000:]


@needs_gloo
def test_torchrun_remove_waiting_for_the_state_lock_outlasts_the_collective_timeout(tmp_path):
    """rank 0 waits for a state lock another process holds; the other ranks wait in a collective. With the
    collective timeout at 3 s, the lock is released only once rank 1 has waited 4 timeouts (12 s, seen in the
    heartbeats it received: an event, however slowly a loaded machine starts the ranks); the request still
    goes through and is committed once. Without the heartbeat rank 1 times out after 3 s and the run fails."""
    import time

    import unlearn
    from sklearn.datasets import load_digits

    from utils import results
    from utils import state as statefile

    X, y = load_digits(return_X_y=True)
    keep = np.isin(y, (3, 8))
    features = tmp_path / "digits.npz"
    np.savez(features, X_train=X[keep][:270], y_train=y[keep][:270], X_test=X[keep][270:], y_test=y[keep][270:])
    st = str(tmp_path / "st")
    assert unlearn.main(["learn", "--features", str(features), "--state", st, "--eps", "1", "--K", "5",
                         "--burn_in", "10", "--trials", "4", "--M", "0.5", "--device", "cpu", "--seed", "0"]) == 0
    timeout_s, beats = 3.0, str(tmp_path / "beats")
    env = dict(os.environ, UNLEARN_NO_PROGRESS="1", OMP_NUM_THREADS="1", PYTHONPATH=ROOT,
               UNLEARN_DIST_TIMEOUT_S=str(int(timeout_s)), UNLEARN_TEST_BEATS=beats)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", HELPER,
           "unlearn.py", "remove", "--state", st, "--ids", "5", "--device", "cpu"]

    def waited() -> float:
        """How long rank 1 has been waiting for the job, by the last heartbeat it received (0 before any)."""
        try:
            lines = open(beats + ".1").read().split()
        except FileNotFoundError:
            return 0.0
        times = [float(t) for kind, t in zip(lines[::2], lines[1::2]) if kind == "beat"]
        start = [float(t) for kind, t in zip(lines[::2], lines[1::2]) if kind == "wait"]
        return times[-1] - start[0] if times and start else 0.0

    lock = results.FolderLock(os.path.abspath(st))
    lock.acquire()
    try:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while waited() < 4 * timeout_s and proc.poll() is None:    # the event: 4 timeouts of waiting, survived
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[1][-3000:]   # still waiting, not failed
    finally:
        lock.release()
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert "waiting for" in err                      # rank 0 did wait for the lock
    assert out.count("certificate of request 1") == 1
    assert waited() >= 4 * timeout_s
    meta = statefile.load(st).meta
    assert [r["ids"] for r in meta["requests"]] == [[5]]
