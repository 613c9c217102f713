"""Issue 14, hostile paths: output goes only under --result_dir / --state / --out; dataset names that would
leave it are refused; unusable paths (loops, over-long names, files, folders, read-only, locks that are
folders) are one line naming the path, exit 2, nothing written."""
import os
import subprocess

import numpy as np
import pytest

import baseline
import main_lmc
import unlearn
from faults import files_under, the_run
from utils import results
from utils import state as statefile

TINY = ["--trials", "2", "--burn_in", "5", "--sequential2", "1", "--S", "1", "--num_remove", "2", "--ifac", "1"]


def features(path) -> str:
    rng = np.random.default_rng(0)
    np.savez(path, X_train=rng.normal(size=(40, 6)), y_train=np.repeat([0, 1], 20),
             X_test=rng.normal(size=(10, 6)), y_test=np.repeat([0, 1], 5), ids=np.arange(5000, 5040))
    return str(path)


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("name", ["../../../../escape", "../x", "ABSOLUTE", "a/b", "..", ".", "", "_x",
                                  "a" * 65, "x\0y", "name with space", "ünï"])
def test_dataset_names_that_could_leave_result_dir_are_refused(tmp_path, capsys, name):
    f = features(tmp_path / "f.npz")
    work = tmp_path / "work"
    work.mkdir()
    if name == "ABSOLUTE":                      # an absolute path (os.path.join would jump to it)
        name = str(tmp_path / "outside")
    before = sorted(os.listdir(tmp_path))
    code = baseline.main(["--dataset", name, "--features", f, "--result_dir", str(work / "r")] + TINY)
    assert code == 2
    err = one_line(capsys)
    assert "--dataset" in err and "allowed" in err
    assert sorted(os.listdir(tmp_path)) == before and files_under(work) == []
    assert not (tmp_path / "outside").exists() and not (tmp_path.parent / "escape").exists()


def test_safe_custom_names_are_accepted_and_stay_inside(tmp_path, capsys):
    f = features(tmp_path / "f.npz")
    for name in ("MY-data_1.v2", "x+y"):
        assert baseline.main(["--dataset", name, "--features", f, "--result_dir", str(tmp_path / "r")] + TINY) == 0
        assert (the_run(tmp_path / "r" / "LMC" / name / "sequential2") / "metrics.json").exists()
    assert all(p.startswith(("LMC", "cache")) for p in files_under(tmp_path / "r"))


def test_run_folder_parts_never_escape():
    for bad in ("..", "a/b", "", "."):
        with pytest.raises(results.ResultError):
            results.RunFolder("r", "LMC", bad, "baseline")


def test_unusable_result_dirs_are_one_line(tmp_path, capsys):
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for rd, words in [(loop / "x", ["loop", "symbolic links"]), (tmp_path / ("a" * 300), ["300 characters"]),
                      (a_file, ["is a file"]), (a_file / "below", ["not writable"])]:
        code = main_lmc.main(["--dataset", "DIGITS", "--paint_utility_s", "1", "--S", "1", "--eps", "1",
                              "--trials", "2", "--burn_in", "5", "--result_dir", str(rd)])
        err = one_line(capsys)
        assert code == 2 and any(w in err for w in words), err
    assert sorted(os.listdir(tmp_path)) == ["file", "loop"]


def test_lock_path_that_is_a_folder(tmp_path, capsys):
    argv = ["--dataset", "DIGITS", "--result_dir", str(tmp_path / "r")] + TINY
    assert baseline.main(argv) == 0
    folder = the_run(tmp_path / "r" / "LMC" / "DIGITS" / "sequential2")
    (folder / ".lock").mkdir()
    capsys.readouterr()
    assert baseline.main(argv) == 2
    err = one_line(capsys)
    assert ".lock" in err and "folder" in err


@pytest.fixture()
def state(tmp_path):
    st = str(tmp_path / "st")
    assert unlearn.main(["learn", "--features", features(tmp_path / "f.npz"), "--state", st, "--trials", "2",
                         "--burn_in", "5", "--device", "cpu"]) == 0
    return st


def test_export_out_is_a_folder_or_unwritable(state, tmp_path, capsys):
    (tmp_path / "dir.npz").mkdir()
    assert unlearn.main(["export", "--state", state, "--out", str(tmp_path / "dir.npz")]) == 2
    assert "is a folder" in one_line(capsys)
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    assert unlearn.main(["export", "--state", state, "--out", str(loop / "m.npz")]) == 2
    err = one_line(capsys)
    assert "--out" in err and "--result-dir" not in err and "--result_dir" not in err


def test_hostile_ids(state, tmp_path, capsys):
    utf16 = tmp_path / "ids.txt"
    utf16.write_text("5001\n5002\n", encoding="utf-16")
    for ids, words in [(["99999999999999999999999"], ["out of range"]), ([str(utf16)], ["UTF-8"]),
                       (["-99999999999999999999999"], ["out of range"]), (["5001", "5001"], ["twice"]),
                       (["1e3"], ["neither an integer"])]:
        assert unlearn.main(["remove", "--state", state, "--ids", *ids]) == 2
        err = one_line(capsys)
        assert all(w in err for w in words), (ids, err)
    assert statefile.load(state).version == 1


def _read_only(path):
    subprocess.run(["mount", "--bind", path, path], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", path], check=True)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="a read-only folder needs a read-only bind mount (root): root ignores permissions")
def test_read_only_state_folder(state, capsys):
    try:
        _read_only(state)
    except (subprocess.CalledProcessError, FileNotFoundError):
        pytest.skip("bind mounts are not permitted here")
    try:
        assert unlearn.main(["remove", "--state", state, "--ids", "5001", "--device", "cpu"]) == 2
        err = one_line(capsys)
        assert "Read-only file system" in err and state in err
        assert unlearn.main(["status", "--state", state]) == 0          # reading still works
    finally:
        subprocess.run(["umount", state], check=True)
    assert statefile.load(state).version == 1


def test_unusable_state_is_refused_before_the_data_are_read(tmp_path, capsys, monkeypatch):
    """learn checks --state first: the features file below is never opened (reading it would fail otherwise)."""
    from utils import tabular

    def never(*_a, **_k):
        raise AssertionError("the data were loaded before --state was checked")
    monkeypatch.setattr(tabular, "load", never)
    (tmp_path / "a-file").write_text("")
    for state, words in [(str(tmp_path / ("x" * 300)), "folder name of 300 characters"),
                         (str(tmp_path / "a-file" / "st"), "not writable"),
                         (str(tmp_path / "a-file"), "exists and is not empty")]:
        assert unlearn.main(["learn", "--features", str(tmp_path / "nothing.npz"), "--state", state]) == 2
        err = one_line(capsys)
        assert "--state" in err and words in err, err
    assert sorted(os.listdir(tmp_path)) == ["a-file"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="a read-only folder needs a read-only bind mount (root): root ignores permissions")
def test_read_only_place_for_a_new_state_is_refused_first(tmp_path, capsys, monkeypatch):
    from utils import tabular

    monkeypatch.setattr(tabular, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("data loaded")))
    ro = tmp_path / "ro"
    ro.mkdir()
    try:
        _read_only(str(ro))
    except (subprocess.CalledProcessError, FileNotFoundError):
        pytest.skip("bind mounts are not permitted here")
    try:
        assert unlearn.main(["learn", "--features", str(tmp_path / "f.npz"), "--state", str(ro / "st")]) == 2
        err = one_line(capsys)
        assert "--state" in err and "not writable" in err
    finally:
        subprocess.run(["umount", str(ro)], check=True)
