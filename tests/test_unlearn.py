"""unlearn.py (learn / remove / status / export on a user's own data), utils/state.py, and the
accountant's per-request-size sequential bounds it relies on.

The command line runs in-process (main(argv)) on DIGITS features written to tmp_path; one test runs a
real subprocess and SIGKILLs it in the middle of a `remove`.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from utils import accountant as A
from utils import state as statefile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import unlearn  # noqa: E402

ID0 = 1000          # the features file carries ids 1000.. so that ids and row positions differ


# ---------------------------------------------------------------- data
def _digits_file(path, classes=(3, 8), n_train=270, ids=True):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    keep = np.isin(y, classes)
    X, y = X[keep], y[keep]
    order = np.random.default_rng(0).permutation(len(y))
    X, y = X[order], y[order]
    arrays = dict(X_train=X[:n_train], y_train=y[:n_train], X_test=X[n_train:], y_test=y[n_train:])
    if ids:
        arrays["ids"] = np.arange(ID0, ID0 + n_train)
    np.savez(path, **arrays)
    return str(path)


def _normalised(X):
    X = np.asarray(X, dtype=np.float64)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("UNLEARN_NO_PROGRESS", "1")


LEARN = ["--eps", "1", "--K", "20", "--request_size", "2", "--burn_in", "30", "--trials", "8", "--seed", "3",
         "--device", "cpu", "--bound", "paper",   # the papers' bounds (default best: tests/test_best_bound.py)
         "--delta", str(1 / 270)]                # the papers' delta 1/n (unlearn.py's default: test_own_data.py)


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
    """(features file, state folder) after `learn` on DIGITS 3 vs 8; tests copy the folder before changing it."""
    root = tmp_path_factory.mktemp("learned")
    features = _digits_file(root / "digits38.npz")
    st = str(root / "state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNLEARN_NO_PROGRESS", "1")
        assert unlearn.main(["learn", "--features", features, "--state", st] + LEARN) == 0
    return features, st


def _copy(st, tmp_path):
    dst = str(tmp_path / "state")
    shutil.copytree(st, dst)
    return dst


def _run(argv, capsys):
    code = unlearn.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------- accountant: requests of unequal sizes
def _naive_sequential(alpha, Ks, sizes, sigma, c):
    """docs/METHOD.md §3.3 (paper form) written out recursively, with eps_0 of level j using S_j."""
    em = c.eta * c.m

    def eps0(a, S):
        return 4 * a * S ** 2 * c.M ** 2 / (c.m * sigma ** 2 * c.n ** 2)

    def level(a, s):
        if s == 1:
            return math.exp(-em * Ks[0] / a) * eps0(a, sizes[0])
        return math.exp(-em * Ks[s - 1] / a) * (a - 0.5) / (a - 1) * (eps0(2 * a, sizes[s - 1]) + level(2 * a, s - 1))

    return level(alpha, len(Ks))


def test_next_K_with_equal_sizes_reproduces_method_11_3():
    c = A.make_constants(n=11982, lam=1e-6, M=1.0, L=0.19470058990192413)
    Ks = []
    for s in range(10):
        Ks.append(A.next_K_sequential_pngd(Ks=Ks, sizes=[10] * (s + 1), sigma=0.03, eps_target=1.0, consts=c))
    assert Ks == [579, 776, 806, 830, 855, 887, 926, 973, 1025, 1082]


def test_sequential_bound_with_unequal_sizes_matches_the_recursion():
    c = A.make_constants(n=500, lam=2e-5, M=1.0)
    Ks, sizes, sigma = [40, 7, 90, 15], [3, 1, 6, 2], 0.2
    for alpha in (1.3, 2.0, 7.5, 60.0):
        got = A.epsilon_sequential_sizes(alpha=alpha, Ks=Ks, sizes=sizes, sigma=sigma, M=c.M, m=c.m, n=c.n, eta=c.eta)
        assert got == pytest.approx(_naive_sequential(alpha, Ks, sizes, sigma, c), rel=1e-12)
    # per-request sizes lie between the bounds with every request at the smallest and at the largest size
    eps = A.dp_epsilon_sequential_sizes(Ks=Ks, sizes=sizes, sigma=sigma, consts=c)[0]
    lo = A.dp_epsilon_sequential(Ks=Ks, S=min(sizes), sigma=sigma, consts=c)[0]
    hi = A.dp_epsilon_sequential(Ks=Ks, S=max(sizes), sigma=sigma, consts=c)[0]
    assert lo < eps < hi


def test_next_K_is_the_minimal_K_for_unequal_sizes():
    c = A.make_constants(n=500, lam=2e-5, M=1.0)
    sigma, Ks, sizes = 0.2, [], [3, 1, 6]
    for s in range(3):
        K = A.next_K_sequential_pngd(Ks=Ks, sizes=sizes[:s + 1], sigma=sigma, eps_target=1.0, consts=c)
        at = A.dp_epsilon_sequential_sizes(Ks=Ks + [K], sizes=sizes[:s + 1], sigma=sigma, consts=c)[0]
        below = A.dp_epsilon_sequential_sizes(Ks=Ks + [K - 1], sizes=sizes[:s + 1], sigma=sigma, consts=c)[0]
        assert at <= 1.0 and (K == 1 or below > 1.0)
        Ks.append(K)
    assert Ks[0] == A.minimal_K_pngd(sigma=sigma, eps_target=1.0, S=3, consts=c)
    with pytest.raises(ValueError, match="one request size per request"):
        A.next_K_sequential_pngd(Ks=[5], sizes=[1], sigma=sigma, eps_target=1.0, consts=c)


def test_Z_stream_per_request_sizes():
    c = A.make_constants(n=1024, lam=1e-5, M=1.0)
    zb = A.Z_B(eta=c.eta, M=c.M, m=c.m, n=c.n, b=64)
    ones = A.Z_stream(Ks=[3, 2], sizes=[1, 1, 1], consts=c, b=64)
    assert ones == pytest.approx(A.Z_sequential(Ks=[3, 2], Z_B=zb, eta=c.eta, m=c.m, n=c.n, b=64), rel=1e-14)
    q = (1 - c.eta * c.m) ** (1024 // 64)     # contraction of one epoch
    z = A.Z_stream(Ks=[3, 2], sizes=[2, 5, 1], consts=c, b=64)
    assert z == pytest.approx([2 * zb, q ** 3 * 2 * zb + 5 * zb, q ** 2 * (q ** 3 * 2 * zb + 5 * zb) + zb], rel=1e-12)


# ---------------------------------------------------------------- state folder pieces
def test_read_ids_from_tokens_and_files(tmp_path):
    assert statefile.read_ids(["7", "3"]).tolist() == [7, 3]
    text = tmp_path / "ids.txt"
    text.write_text("12, 13\n# a comment\n14  # trailing\n")
    assert statefile.read_ids([str(text)]).tolist() == [12, 13, 14]
    np.save(tmp_path / "ids.npy", np.array([5, 6]))
    assert statefile.read_ids([str(tmp_path / "ids.npy")]).tolist() == [5, 6]
    with pytest.raises(statefile.StateError, match="'x1' is not an integer id"):
        statefile.read_ids(["4", "x1"])
    with pytest.raises(statefile.StateError, match="id 4 is given twice"):
        statefile.read_ids(["4", "5", "4"])
    with pytest.raises(statefile.StateError, match="neither an integer id nor an existing file"):
        statefile.read_ids([str(tmp_path / "absent.txt")])


def test_rows_for_ids_maps_and_refuses():
    all_ids = np.array([30, 10, 20, 40])
    assert statefile.rows_for_ids(all_ids, {}, np.array([40, 10])).tolist() == [1, 3]
    with pytest.raises(statefile.StateError, match="id 25 is not in the data"):
        statefile.rows_for_ids(all_ids, {}, np.array([25]))
    with pytest.raises(statefile.StateError, match="id 20 was already removed by request 2"):
        statefile.rows_for_ids(all_ids, {20: 2}, np.array([20]))


class Crash(BaseException):
    """A kill at the commit point: not an Exception, so no handler in the code under test swallows it."""


def crash_before_commit(*_a, **_k):
    raise Crash


def test_state_commit_is_atomic_and_checked(tmp_path, monkeypatch):
    from toy import request_parts, state_parts

    path = str(tmp_path / "s")
    st = statefile.create(path, *state_parts(), "learned\n")
    assert statefile.load(path).version == 1

    monkeypatch.setattr(statefile, "_switch_pointer", crash_before_commit)
    with pytest.raises(Crash):
        statefile.commit(st, *request_parts(st, [100]), "x")
    again = statefile.load(path)                                  # the new version was never committed
    assert again.version == 1 and again.meta["requests"] == [] and again.arrays["X"][0, 0] == 1.0
    monkeypatch.undo()
    new = statefile.commit(again, *request_parts(again, [100]), "y")
    assert statefile.load(path).arrays["X"][0].tolist() == [0, 0, 0] and new.version == 2
    assert sorted(os.listdir(path)) == ["CURRENT", "KEY", "v000002"]      # the old version (removed rows) is gone
    with open(os.path.join(path, "v000002", "arrays.npz"), "r+b") as fh:
        fh.seek(-5, os.SEEK_END)
        fh.write(b"XXXXX")
    with pytest.raises(statefile.StateError, match="corrupt"):
        statefile.load(path)
    with pytest.raises(statefile.StateError, match="does not exist"):
        statefile.load(str(tmp_path / "nothing"))
    with pytest.raises(statefile.StateError, match="exists and is a state folder"):
        statefile.create(path, {}, {}, "")


# ---------------------------------------------------------------- the command line
def test_learn_three_requests_status_export(learned, tmp_path, capsys):
    features, st0 = learned
    st = _copy(st0, tmp_path)
    meta = statefile.load(st).meta
    c = unlearn.constants_of(meta)
    sigma = meta["settings"]["sigma"]
    # sigma is the smallest meeting eps = 1 for a 2-row request in K = 20 steps; m = 0.01 by default
    assert c.n == 270 and c.m == pytest.approx(0.01) and c.L == pytest.approx(0.26)
    assert sigma == pytest.approx(A.smallest_sigma_pngd(K=20, eps_target=1.0, S=2, consts=c), rel=1e-12)
    before = statefile.load(st).arrays

    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(f"{ID0 + 7}\n{ID0 + 250}\n")
    requests = [[str(ID0 + 5), str(ID0 + 100)], [str(ids_file)], [str(ID0 + 0), str(ID0 + 269)]]
    for ids in requests:
        code, out, err = _run(["remove", "--state", st, "--ids", *ids, "--features", features], capsys)
        assert code == 0, err
        assert "certificate of request" in out and "(eps, delta)" in out
    after = statefile.load(st)
    Ks = [r["K"] for r in after.meta["requests"]]
    assert Ks == A.sequential_K_list_pngd(num_requests=3, S=2, sigma=sigma, eps_target=1.0, consts=c)
    assert Ks[0] == 20                                        # what --K 20 planned for
    last = after.meta["requests"][-1]["certificate"]
    eps, alpha = A.dp_epsilon_sequential(Ks=Ks, S=2, sigma=sigma, consts=c)
    assert last["eps"] == pytest.approx(eps, rel=1e-12) and last["eps"] <= 1.0
    assert last["alpha"] == pytest.approx(alpha, rel=1e-9) and last["delta"] == pytest.approx(1 / 270)
    # retraining at request j for T + K_1 + ... + K_j steps, the comparison the certificate makes
    assert last["cumulative_steps"] == sum(Ks)
    assert last["retrain_steps"] == (30 + Ks[0]) + (30 + Ks[0] + Ks[1]) + (30 + sum(Ks))
    assert last["comparison"].startswith("indistinguishable from retraining from scratch on the current data "
                                         "for T + sum K steps") and f"= {30 + sum(Ks)})" in last["comparison"]

    # removed rows are replaced by random unit-norm points with +-1 labels; every other row is unchanged
    rows = np.array([5, 100, 7, 250, 0, 269])
    assert sorted(r for req in after.meta["requests"] for r in req["rows"]) == sorted(rows.tolist())
    X0, X1 = before["X"], after.arrays["X"]
    keep = np.setdiff1d(np.arange(270), rows)
    assert np.array_equal(X0[keep], X1[keep]) and np.array_equal(before["y"][keep], after.arrays["y"][keep])
    assert np.allclose(np.linalg.norm(X1[rows], axis=1), 1.0) and not np.isclose(X0[rows], X1[rows]).all(axis=1).any()
    assert set(np.unique(after.arrays["y"][rows])) <= {-1.0, 1.0}
    assert after.arrays["removed"].sum() == 6 and after.arrays["removed"][rows].all()

    code, out, _ = _run(["status", "--state", st], capsys)
    assert code == 0
    assert "requests (3)" in out and f"current guarantee: (eps, delta) = ({last['eps']:.6g}" in out
    assert f"{after.arrays['accuracy'].mean():.4f}" in out
    # status's forecast prices retraining by the same rule as remove: request 4 adds T + K_1 + ... + K_4
    K4 = A.sequential_K_list_pngd(num_requests=4, S=2, sigma=sigma, eps_target=1.0, consts=c)[3]
    assert f"  {4:>7} {K4:>8} {sum(Ks) + K4:>9} {last['retrain_steps'] + 30 + sum(Ks) + K4:>14}" in out

    model = str(tmp_path / "model.npz")
    code, out, _ = _run(["export", "--state", st, "--out", model, "--chain", "2"], capsys)
    assert code == 0 and "chain 2 of 8" in out
    with np.load(model, allow_pickle=False) as z:
        w, classes, cert = z["w"], z["classes"], json.loads(str(z["certificate"]))
    raw = np.load(features)
    pred = np.where(_normalised(raw["X_test"]) @ w > 0, classes[0], classes[1])
    acc = float(np.mean(pred == raw["y_test"]))
    chains = after.arrays["accuracy"]
    assert acc == pytest.approx(chains[2], abs=1e-9)          # the exported model is chain 2, evaluated anew
    assert abs(acc - chains.mean()) <= 3 * chains.std(ddof=1) + 0.05
    assert acc > 0.55                                          # better than the majority class (0.52)
    assert cert["K"] == Ks[-1] and "ids" not in cert and "rows" not in cert   # never who asked to be forgotten


def test_requests_of_unequal_sizes_minibatch_softmax(tmp_path, capsys):
    """PNSGD (b = 90) on 3 classes: the K of each request follows Z^(s) with S_s Z_B increments."""
    features = _digits_file(tmp_path / "digits012.npz", classes=(0, 1, 2), n_train=270, ids=False)
    st = str(tmp_path / "state")
    code, out, err = _run(["learn", "--features", features, "--state", st, "--sigma", "1", "--batch_size", "90",
                           "--burn_in", "3", "--trials", "4", "--device", "cpu", "--eps", "2", "--bound", "paper"], capsys)
    assert code == 0, err
    assert "3-class softmax" in out and "L2-normalised" in out
    for ids in (["4"], ["10", "11", "12"]):
        code, _, err = _run(["remove", "--state", st, "--ids", *ids], capsys)
        assert code == 0, err
    meta = statefile.load(st).meta
    c = unlearn.constants_of(meta)
    assert c.M == 2.0 and c.L == pytest.approx(1.0 + 0.01)
    zb = A.Z_B(eta=c.eta, M=c.M, m=c.m, n=c.n, b=90)
    K1 = A.minimal_K_pnsgd(sigma=1.0, eps_target=2.0, consts=c, b=90, Z=zb, form="loose")
    z2 = (1 - c.eta * c.m) ** (K1 * 270 // 90) * zb + 3 * zb
    K2 = A.minimal_K_pnsgd(sigma=1.0, eps_target=2.0, consts=c, b=90, Z=z2, form="tight")
    assert [r["K"] for r in meta["requests"]] == [K1, K2]
    assert meta["requests"][1]["certificate"]["Z"] == pytest.approx(z2, rel=1e-12)
    # with one-row requests the K's are the accountant's PNSGD sequential list
    Ks, _ = A.sequential_K_list_pnsgd(num_requests=3, sigma=1.0, eps_target=2.0, consts=c, b=90)
    assert [unlearn.plan_request(consts=c, sigma=1.0, b=90, Ks=Ks[:s], sizes=[1] * (s + 1), eps_target=2.0)[0]
            for s in range(3)] == Ks


def test_bad_requests_fail_in_one_line_and_leave_the_state(learned, tmp_path, capsys):
    features, st0 = learned
    st = _copy(st0, tmp_path)
    assert _run(["remove", "--state", st, "--ids", str(ID0 + 1)], capsys)[0] == 0
    digest = statefile.load(st).meta["arrays_sha256"]
    other = _digits_file(tmp_path / "other.npz", classes=(1, 7))
    cases = [
        (["remove", "--state", st, "--ids", str(ID0 + 1)], f"id {ID0 + 1} was already removed by request 1"),
        (["remove", "--state", st, "--ids", "5"], "id 5 is not in the data"),
        (["remove", "--state", st, "--ids", str(ID0 + 2), "--features", other], "fingerprint"),
        (["status", "--state", st, "--features", other], "fingerprint"),
        (["remove", "--state", str(tmp_path / "nope"), "--ids", "1"], "does not exist"),
        (["learn", "--features", features, "--state", st], "exists and is a state folder"),
        (["learn", "--features", features, "--state", str(tmp_path / "n"), "--sigma", "0.1", "--K", "3"],
         "not both"),
        (["learn", "--features", features, "--state", str(tmp_path / "n"), "--batch_size", "7"],
         "--batch_size=7 is not allowed (allowed: an integer dividing n=270)"),
        (["export", "--state", st, "--out", str(tmp_path / "m.npz"), "--chain", "8"],
         "--chain=8 is not allowed (allowed: an integer 0 .. 7)"),
        (["export", "--state", st, "--out", str(tmp_path / "m.txt")], "ending in .npz"),
        (["remove", "--state", st, "--ids", str(ID0 + 3), "--eps", "-1"], "--eps"),
        (["frobnicate"], "invalid choice"),
    ]
    for argv, message in cases:
        code, out, err = _run(argv, capsys)
        assert code == 2, argv
        assert message in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert statefile.load(st).meta["arrays_sha256"] == digest and statefile.load(st).version == 2
    assert not os.path.exists(tmp_path / "n")


def test_remove_is_stopped_by_its_estimated_time_without_yes(learned, tmp_path, capsys, monkeypatch):
    """remove prices its K steps of the state's chains as learn prices learning (issue 26.10): a request that
    even a slow machine finishes within workload.CONFIRM_SECONDS is not timed; with the threshold at 1 ms
    every request is above it: refused in one line without --yes (nothing committed), run with --yes."""
    from utils import workload

    st = _copy(learned[1], tmp_path)
    monkeypatch.setattr(workload, "estimate", lambda *a, **k: (_ for _ in ()).throw(AssertionError("timed")))
    assert _run(["remove", "--state", st, "--ids", str(ID0 + 1)], capsys)[0] == 0
    monkeypatch.undo()
    monkeypatch.setenv("UNLEARN_NO_PROGRESS", "1")
    monkeypatch.setattr(workload, "CONFIRM_SECONDS", 1e-3)
    code, out, err = _run(["remove", "--state", st, "--ids", str(ID0 + 2)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "the plan is estimated at" in err and "add --yes" in err and "--eps" in err, err
    assert "certificate" not in out and statefile.load(st).version == 2
    code, out, err = _run(["remove", "--state", st, "--ids", str(ID0 + 2), "--yes"], capsys)
    assert code == 0 and "certificate of request 2" in out and statefile.load(st).version == 3


def test_status_and_export_before_any_request(learned, tmp_path, capsys):
    _, st = learned
    code, out, _ = _run(["status", "--state", st], capsys)
    assert code == 0 and "requests: none yet" in out
    meta = statefile.load(st).meta
    c = unlearn.constants_of(meta)
    K = A.minimal_K_pngd(sigma=meta["settings"]["sigma"], eps_target=1.0, S=2, consts=c)
    assert K == 20 and f"next request of 2 row(s) at eps=1 would need K={K} steps" in out
    code, out, _ = _run(["export", "--state", st, "--out", str(tmp_path / "m.npz")], capsys)
    assert code == 0 and "no removal yet" in out
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        assert z["w"].shape == (64,) and json.loads(str(z["certificate"])) is None
        assert np.array_equal(z["w"], statefile.load(st).arrays["w"][0].astype(np.float64))


# unlearn.py with a line on stderr when the chains start stepping: the event the signal tests wait for
IN_CHAINS = (r"""
import sys; sys.path.insert(0, %r)
from utils import engine
real = engine.run_chains
def marked(*a, **k):
    print("chains started", file=sys.stderr, flush=True)
    return real(*a, **k)
engine.run_chains = marked
import unlearn
sys.exit(unlearn.main(sys.argv[1:]))
""" % REPO)


def _start_in_chains(argv):
    """A subprocess running unlearn.py ``argv``, returned once it is inside the chain steps (an event, not a
    clock: a loaded machine only makes the wait longer)."""
    proc = subprocess.Popen([sys.executable, "-c", IN_CHAINS, *argv], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, UNLEARN_NO_PROGRESS="1"))
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("chains started"):
            return proc
    proc.wait()
    raise AssertionError("the chains never started: " + "".join(lines) + proc.stdout.read())


def test_killed_remove_leaves_the_previous_state(learned, tmp_path, capsys):
    features, st0 = learned
    st = _copy(st0, tmp_path)
    before = statefile.load(st)
    # eps = 1e-4 needs millions of steps: the process is surely still running when it is killed
    proc = _start_in_chains(["remove", "--state", st, "--ids", str(ID0 + 9), "--eps", "1e-4", "--device", "cpu"])
    try:
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    after = statefile.load(st)
    assert after.version == 1 and after.meta["requests"] == []
    assert after.meta["arrays_sha256"] == before.meta["arrays_sha256"]
    # the dead process's lock is taken over; the same request then succeeds
    code, out, err = _run(["remove", "--state", st, "--ids", str(ID0 + 9)], capsys)
    assert code == 0, err
    done = statefile.load(st)
    assert done.version == 2 and [r["ids"] for r in done.meta["requests"]] == [[ID0 + 9]]
    assert sorted(os.listdir(st)) == ["CURRENT", "KEY", "v000002"]


@pytest.mark.parametrize("command", ["remove", "learn"])
def test_sigterm_says_what_works_without_resume(learned, tmp_path, command):
    """unlearn.py has no --resume: after SIGTERM it says that nothing was committed and to rerun the same command."""
    features, st0 = learned
    st = _copy(st0, tmp_path) if command == "remove" else str(tmp_path / "new")
    argv = (["remove", "--state", st, "--ids", str(ID0 + 9), "--eps", "1e-4"] if command == "remove" else
            ["learn", "--features", features, "--state", st, "--sigma", "0.1", "--burn_in", "100000000"])
    proc = _start_in_chains(argv + ["--device", "cpu"])
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    line = [x for x in err.splitlines() if "terminated (SIGTERM)" in x]
    assert len(line) == 1 and "Traceback" not in err, err
    assert "rerun the same" in line[0] and "there is no --resume" in line[0] and "with --resume" not in line[0]
    if command == "remove":
        assert "the request was not committed" in line[0] and statefile.load(st).version == 1
        assert unlearn.main(["remove", "--state", st, "--ids", str(ID0 + 9), "--device", "cpu"]) == 0
    else:
        assert "nothing was saved" in line[0] and not os.path.exists(os.path.join(st, "CURRENT"))


def test_interrupted_commit_then_rerun_is_identical(learned, tmp_path, capsys, monkeypatch):
    """A remove that dies before its commit point changes nothing; rerun, it draws the same noise."""
    _, st0 = learned
    st = _copy(st0, tmp_path)

    monkeypatch.setattr(statefile, "_switch_pointer", crash_before_commit)
    with pytest.raises(Crash):
        unlearn.main(["remove", "--state", st, "--ids", str(ID0 + 42), str(ID0 + 43)])
    capsys.readouterr()
    orphan = os.path.join(st, "v000002", "arrays.npz")
    with np.load(orphan) as z:
        w_orphan = z["w"]
    assert statefile.load(st).version == 1
    monkeypatch.undo()
    assert _run(["remove", "--state", st, "--ids", str(ID0 + 42), str(ID0 + 43)], capsys)[0] == 0
    done = statefile.load(st)
    assert done.version == 2 and np.array_equal(done.arrays["w"], w_orphan)
    assert not np.array_equal(done.arrays["w"], statefile.load(st0).arrays["w"])


def test_status_export_and_refused_requests_never_import_torch(learned, tmp_path):
    features, st = learned
    code = ("import sys, unlearn\n"
            f"assert unlearn.main(['status', '--state', {st!r}]) == 0\n"
            f"assert unlearn.main(['export', '--state', {st!r}, '--out', {str(tmp_path / 'm.npz')!r}]) == 0\n"
            f"assert unlearn.main(['remove', '--state', {st!r}, '--ids', '3']) == 2\n"
            f"assert unlearn.main(['learn', '--features', {features!r}, '--state', {st!r}]) == 2\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"
