"""Issue 14, full disk: runs on a small tmpfs fail with one line naming the path (ENOSPC), leave no
temporary file, no lock and no half-finished run that looks finished; an unlearn.py remove on a full disk
changes nothing and prints no certificate. Needs root (mount); skipped otherwise."""
import contextlib
from pathlib import Path
import os
import subprocess

import numpy as np
import pytest

import baseline
import unlearn
from faults import files_under, the_run, tmp_leftovers
from utils import state as statefile

ARGV = ["--dataset", "DIGITS", "--sequential2", "1", "--S", "5", "--num_remove", "10", "--ifac", "1",
        "--trials", "3", "--burn_in", "20"]
FOLDER = os.path.join("LMC", "DIGITS", "sequential2")


def _can_mount() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "not root: cannot mount a small tmpfs"
    probe = "/tmp/.issue14-mount-probe"
    os.makedirs(probe, exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", probe], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", probe], capture_output=True)
    os.rmdir(probe)
    return None if ok else "mount -t tmpfs is not permitted here"


REASON = _can_mount()
pytestmark = pytest.mark.skipif(REASON is not None, reason=str(REASON))


@contextlib.contextmanager
def small_disk(path, size: str):
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(path, leave: int) -> None:
    """Fill the file system of ``path`` up to ``leave`` bytes free."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    with open(os.path.join(path, "filler"), "wb") as fh:
        fh.write(b"\0" * max(0, free - leave))


@pytest.mark.parametrize("size", ["4k", "8k", "40k", "120k", "300k", "600k"])
def test_run_on_a_full_disk_fails_in_one_line_and_leaves_nothing_half_written(tmp_path, capsys, size):
    disk = tmp_path / "disk"
    with small_disk(disk, size):
        code = baseline.main(ARGV + ["--result_dir", str(disk / "r")])
        err = capsys.readouterr().err.strip()
        left = files_under(disk)
        if code == 0:  # the run fitted
            assert (the_run(disk / "r" / FOLDER) / "metrics.json").exists()
        else:
            assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
            assert "No space left on device" in err and str(disk) in err, err
            assert not (the_run(disk / "r" / FOLDER) / "metrics.json").exists()
        assert tmp_leftovers(disk) == [], left
        assert not any(p.endswith(".lock") for p in left), left


def test_rerun_over_a_finished_run_on_a_full_disk_leaves_no_mixed_folder(tmp_path, capsys):
    disk = tmp_path / "disk"
    with small_disk(disk, "2m"):
        assert baseline.main(ARGV + ["--result_dir", str(disk / "r")]) == 0
        fill(disk, 8 * 1024)
        code = baseline.main(ARGV + ["--seed", "1", "--no_cache", "--result_dir", str(disk / "r")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "No space left on device" in err and len(err.splitlines()) == 1, err
        from utils import results

        folder, old = map(Path, results.run_dirs(disk / "r" / FOLDER))   # newest first: the failed run
        # the failed run never looks finished, and the finished run of other flags keeps its results
        assert not (folder / "metrics.json").exists() and (old / "metrics.json").exists()
        assert tmp_leftovers(disk) == [] and not (folder / ".lock").exists()
        os.unlink(disk / "filler")
        assert baseline.main(ARGV + ["--seed", "1", "--no_cache", "--result_dir", str(disk / "r")]) == 0


def test_cache_that_cannot_be_written_is_turned_off(tmp_path, capsys):
    disk = tmp_path / "disk"
    with small_disk(disk, "1m"):
        os.makedirs(disk / "r" / "cache")
        fill(disk, 200 * 1024)      # room for the run's files, not for much more
        code = baseline.main(ARGV + ["--result_dir", str(disk / "r")])
        out = capsys.readouterr()
        if code == 0:
            pass
        else:
            assert code == 2 and "No space left on device" in out.err
        cache_files = list((disk / "r" / "cache").glob("*"))
        notes = [line for line in out.out.splitlines() if "chain cache" in line and "is off" in line]
        assert len(notes) <= 1 and (notes or cache_files)
        assert tmp_leftovers(disk) == []


def _features(path) -> str:
    rng = np.random.default_rng(0)
    np.savez(path, X_train=rng.normal(size=(40, 6)), y_train=np.repeat([0, 1], 20),
             X_test=rng.normal(size=(10, 6)), y_test=np.repeat([0, 1], 5), ids=np.arange(5000, 5040))
    return str(path)


def test_remove_on_a_full_disk_changes_nothing_and_prints_no_certificate(tmp_path, capsys):
    disk = tmp_path / "disk"
    with small_disk(disk, "1m"):
        st = str(disk / "st")
        assert unlearn.main(["learn", "--features", _features(tmp_path / "f.npz"), "--state", st, "--trials", "2",
                             "--burn_in", "5", "--device", "cpu"]) == 0
        before = statefile.load(st).meta["arrays_sha256"]
        fill(disk, 1024)
        capsys.readouterr()
        assert unlearn.main(["remove", "--state", st, "--ids", "5003", "--device", "cpu"]) == 2
        out = capsys.readouterr()
        assert "certificate" not in out.out, out.out
        assert "No space left on device" in out.err and len(out.err.strip().splitlines()) == 1
        after = statefile.load(st)
        assert after.version == 1 and after.meta["arrays_sha256"] == before
        assert sorted(n for n in os.listdir(st) if n != ".lock") == ["CURRENT", "KEY", "v000001"]
        os.unlink(disk / "filler")
        assert unlearn.main(["remove", "--state", st, "--ids", "5003", "--device", "cpu"]) == 0
        assert "certificate of request 1" in capsys.readouterr().out
