"""Issue 14, races: 8 processes at once on one run folder and on one unlearn.py state, many rounds.

Exactly one process holds a folder's lock at a time, a waiting process gets it after the holder, and
no request is lost: every concurrent remove is recorded, its rows gone, each certificate's request
number distinct.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from utils import state as statefile

ROOT = Path(__file__).resolve().parents[1]
PROCS = 8


def _wait_for(predicate, timeout=60.0, what=""):
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# Each worker does ROUNDS rounds: wait for go-r, try the lock without waiting, report, hold it until rel-r.
ONE_HOLDER_WORKER = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
from utils.results import FolderLock, ResultError
folder, sync, me, rounds = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
def wait(name):
    while not os.path.exists(os.path.join(sync, name)):
        time.sleep(0.001)
def put(name, text):
    tmp = os.path.join(sync, '.' + name)
    with open(tmp, 'w') as fh:
        fh.write(text)
    os.rename(tmp, os.path.join(sync, name))
for r in range(rounds):
    wait(f"go-{r}")
    lock = FolderLock(folder)
    try:
        lock.acquire()
    except ResultError:
        put(f"res-{r}-{me}", "refused")
    else:
        put(f"res-{r}-{me}", "got")
        wait(f"rel-{r}")
        lock.release()
    put(f"done-{r}-{me}", "")
"""


def test_exactly_one_of_8_processes_holds_a_run_folder_lock_each_round(tmp_path):
    rounds = 25
    folder, sync = tmp_path / "LMC" / "DIGITS" / "baseline", tmp_path / "sync"
    folder.mkdir(parents=True)
    sync.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", ONE_HOLDER_WORKER, str(ROOT), str(folder), str(sync),
                               str(i), str(rounds)]) for i in range(PROCS)]
    holders = []
    try:
        for r in range(rounds):
            (sync / f"go-{r}").write_text("")
            _wait_for(lambda: all((sync / f"res-{r}-{i}").exists() for i in range(PROCS)), what=f"round {r}")
            holders.append(sum((sync / f"res-{r}-{i}").read_text() == "got" for i in range(PROCS)))
            (sync / f"rel-{r}").write_text("")
            _wait_for(lambda: all((sync / f"done-{r}-{i}").exists() for i in range(PROCS)), what=f"round {r}")
    finally:
        for p in procs:
            p.wait(timeout=60)
    assert holders == [1] * rounds
    assert all(p.returncode == 0 for p in procs)
    assert not (folder / ".lock").exists()        # the last holder removed its own lock file


# Each worker adds 1 to a counter file N times under the lock, waiting for its turn: a lost update shows.
COUNTER_WORKER = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])
from utils.results import FolderLock
folder, n = sys.argv[2], int(sys.argv[3])
path = os.path.join(folder, "counter")
for _ in range(n):
    with FolderLock(folder, wait=120):
        value = int(open(path).read())
        time.sleep(0.0005)
        with open(path, "w") as fh:
            fh.write(str(value + 1))
"""


def test_8_waiting_processes_lose_no_update(tmp_path):
    n = 40
    (tmp_path / "counter").write_text("0")
    procs = [subprocess.Popen([sys.executable, "-c", COUNTER_WORKER, str(ROOT), str(tmp_path), str(n)],
                              stderr=subprocess.DEVNULL) for _ in range(PROCS)]
    for p in procs:
        assert p.wait(timeout=300) == 0
    assert int((tmp_path / "counter").read_text()) == PROCS * n


# A remove without torch: the same lock, load, id check and commit as unlearn.py's remove.
REMOVE_WORKER = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, os.path.join(sys.argv[1], "tests"))
import numpy as np
from toy import request_parts
from utils import state as statefile
path, ident = sys.argv[2], int(sys.argv[3])
with statefile.locked(path):
    st = statefile.load(path)
    removed_by = {i: r["request"] for r in st.meta["requests"] for i in r["ids"]}
    statefile.rows_for_ids(st.arrays["ids"], removed_by, np.array([ident]))
    new = statefile.commit(st, *request_parts(st, [ident]), st.log)
print(new.version, new.version - 1)
"""


def test_8_concurrent_removes_on_one_state_lose_no_request(tmp_path):
    path = str(tmp_path / "st")
    n, rounds = 64, 4
    sys.path.insert(0, str(ROOT / "tests"))
    from toy import state_parts

    statefile.create(path, *state_parts(n=n), "learned\n")
    seen = []
    for r in range(rounds):
        ids = [100 + r * PROCS + i for i in range(PROCS)]
        procs = [subprocess.Popen([sys.executable, "-c", REMOVE_WORKER, str(ROOT), path, str(i)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in ids]
        for p in procs:
            out, err = p.communicate(timeout=300)
            assert p.returncode == 0, err
            seen.append(tuple(map(int, out.split())))
    st = statefile.load(path)
    total = rounds * PROCS
    assert st.version == total + 1
    assert sorted(s for _, s in seen) == list(range(1, total + 1))        # each request number printed once
    assert [r["request"] for r in st.meta["requests"]] == list(range(1, total + 1))
    removed_ids = sorted(i for r in st.meta["requests"] for i in r["ids"])
    assert removed_ids == list(range(100, 100 + total))
    assert st.arrays["removed"].sum() == total and (st.arrays["X"][:total] == 0).all()
    assert (st.arrays["X"][total:] != 0).all()
    assert sorted(os.listdir(path)) == ["CURRENT", "KEY", f"v{total + 1:06d}"]  # no old version holds removed rows


def _features(path: Path) -> str:
    rng = np.random.default_rng(0)
    n = 40
    np.savez(path, X_train=rng.normal(size=(n, 6)), y_train=np.repeat([0, 1], n // 2),
             X_test=rng.normal(size=(10, 6)), y_test=np.repeat([0, 1], 5), ids=np.arange(5000, 5000 + n))
    return str(path)


def test_8_concurrent_unlearn_remove_commands_all_recorded(tmp_path):
    """The issue's reproduction, 8 wide: `remove --ids 5001 & remove --ids 5002 & ... & wait`."""
    env = dict(os.environ, UNLEARN_NO_PROGRESS="1", OMP_NUM_THREADS="1")
    st = str(tmp_path / "st")
    base = [sys.executable, str(ROOT / "unlearn.py")]
    learn = subprocess.run(base + ["learn", "--features", _features(tmp_path / "f.npz"), "--state", st,
                                   "--trials", "2", "--burn_in", "5", "--device", "cpu"],
                           cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=300)
    assert learn.returncode == 0, learn.stderr
    ids = [5001 + i for i in range(PROCS)]
    procs = [subprocess.Popen(base + ["remove", "--state", st, "--ids", str(i), "--device", "cpu"], cwd=str(ROOT),
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in ids]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0] * PROCS, [e for _, e in outs]
    numbers = sorted(int(line.split()[3].rstrip(":")) for o, _ in outs for line in o.splitlines()
                     if line.startswith("certificate of request"))
    assert numbers == list(range(1, PROCS + 1))
    done = statefile.load(st)
    assert done.version == PROCS + 1
    assert sorted(i for r in done.meta["requests"] for i in r["ids"]) == ids
    rows = [int(np.flatnonzero(done.arrays["ids"] == i)[0]) for i in ids]
    assert done.arrays["removed"][rows].all() and done.arrays["removed"].sum() == PROCS
    original = np.load(tmp_path / "f.npz")["X_train"]
    original = original / np.linalg.norm(original, axis=1, keepdims=True)
    assert not np.isclose(done.arrays["X"][rows], original[rows]).all(axis=1).any()  # the rows are replaced
    assert sorted(os.listdir(st)) == ["CURRENT", "KEY", f"v{PROCS + 1:06d}"]
