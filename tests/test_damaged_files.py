"""Issue 14, damaged files: truncated, empty, mismatched or NaN cache entries and parts are detected and
recomputed with a one-line note (results identical to a clean run); a resume after the features file
changed is refused; a state with old versions left by a killed remove is cleaned by the next command."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import baseline
import main_lmc
import unlearn
from faults import the_run
from utils import results
from utils import state as statefile
from toy import state_parts

ARGV = ["--dataset", "DIGITS", "--sequential2", "1", "--S", "5", "--num_remove", "10", "--ifac", "1",
        "--trials", "3", "--burn_in", "20"]
FOLDER = os.path.join("LMC", "DIGITS", "sequential2")


def arrays(path) -> dict:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def same_arrays(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    rd = tmp_path_factory.mktemp("ref")
    assert baseline.main(ARGV + ["--result_dir", str(rd)]) == 0
    return rd, arrays(the_run(rd / FOLDER) / "arrays.npz")


def _damage_cache(rd, how: str) -> list:
    entries = sorted((rd / "cache").glob("chains-*.npz"))
    assert entries
    for path in entries:
        if how == "truncate":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        elif how == "empty":
            path.write_bytes(b"")
        elif how in ("shape", "nan"):
            z = arrays(path)
            w = z["w"][:, :-1] if how == "shape" else np.full_like(z["w"], np.nan)
            # a well-formed entry (valid checksum) holding wrong content: only the content checks catch it
            key = str(z["__key__"])
            results.write_checked_npz(str(path), {"w": w}, key=key)
    return entries


@pytest.mark.parametrize("how", ["truncate", "empty", "shape", "nan"])
def test_damaged_cache_entries_are_recomputed_with_a_note(reference, tmp_path, capsys, how):
    ref_dir, ref = reference
    rd = tmp_path / "r"
    shutil.copytree(ref_dir, rd)
    entries = _damage_cache(rd, how)
    capsys.readouterr()
    assert baseline.main(ARGV + ["--result_dir", str(rd)]) == 0
    out = capsys.readouterr()
    notes = [line for line in (out.out + out.err).splitlines() if line.startswith("note: cache entry")]
    assert len(notes) == len(entries) and all("damaged" in line and "recomputing" in line for line in notes), notes
    assert "diverged" not in out.err and "eta" not in out.err
    assert same_arrays(arrays(the_run(rd / FOLDER) / "arrays.npz"), ref)
    # the recomputed entries are whole again: a third run reads them without a note
    assert baseline.main(ARGV + ["--result_dir", str(rd)]) == 0
    out = capsys.readouterr()
    assert "note: cache entry" not in out.out + out.err


def test_cache_entry_of_other_trials_is_never_used(reference, tmp_path, capsys):
    """--trials 100 over an entry of 3 chains (the issue: metrics said trials: 3) recomputes it."""
    ref_dir, _ = reference
    rd = tmp_path / "r"
    shutil.copytree(ref_dir, rd)
    argv = [a if a != "3" else "5" for a in ARGV]
    entries = sorted((rd / "cache").glob("chains-*.npz"))
    inputs = [json.loads(p.with_suffix(".json").read_text()) for p in entries]
    # plant the 3-chain entries under the keys a 5-chain run looks up
    for p, inp in zip(entries, inputs):
        if inp.get("trials") == 3:
            inp5 = dict(inp, trials=5)
            z = arrays(p)
            results.write_checked_npz(str(rd / "cache" / f"chains-{results.cache_key(inp5)}.npz"),
                                      {"w": z["w"]}, key=results.cache_key(inp5))
    assert baseline.main(argv + ["--result_dir", str(rd)]) == 0
    out = capsys.readouterr()
    assert "shape (3," in out.out + out.err
    metrics = json.loads((Path(results.resolve_run_dir(rd / FOLDER)) / "metrics.json").read_text())
    assert metrics["lmc_learn"]["trials"] == 5


PAINT = ["--dataset", "DIGITS", "--paint_unlearning_sigma", "1", "--trials", "3", "--burn_in", "30",
         "--sigma_list", "0.05", "0.1", "--S", "5", "--no_cache"]
PAINT_FOLDER = os.path.join("LMC", "DIGITS", "paint_unlearning_sigma")


def _parts_of_an_interrupted_run(rd, monkeypatch):
    """Run until the second part is about to be saved, then stop as a kill would."""
    class Stop(BaseException):
        pass

    real, saved = results.RunFolder.save_part, []

    def save_then_maybe_stop(self, key, arrays_):
        real(self, key, arrays_)
        saved.append(key)
        if len(saved) == 2:
            raise Stop
    monkeypatch.setattr(results.RunFolder, "save_part", save_then_maybe_stop)
    with pytest.raises(Stop):
        main_lmc.main(PAINT + ["--result_dir", str(rd)])
    monkeypatch.undo()
    results.release_all()
    parts = sorted((the_run(rd / PAINT_FOLDER) / "parts").glob("*.npz"))
    assert len(parts) == 2
    return parts


@pytest.mark.parametrize("how", ["truncate", "empty", "garbage"])
def test_damaged_parts_are_recomputed_on_resume(tmp_path, capsys, monkeypatch, how):
    ref_dir = tmp_path / "ref"
    assert main_lmc.main(PAINT + ["--result_dir", str(ref_dir)]) == 0
    ref = arrays(the_run(ref_dir / PAINT_FOLDER) / "arrays.npz")
    rd = tmp_path / "r"
    parts = _parts_of_an_interrupted_run(rd, monkeypatch)
    data = parts[0].read_bytes()
    parts[0].write_bytes({"truncate": data[: len(data) // 3], "empty": b"",
                          "garbage": data[:-40] + bytes(40)}[how])
    capsys.readouterr()
    assert main_lmc.main(PAINT + ["--result_dir", str(rd), "--resume"]) == 0
    out = capsys.readouterr()
    notes = [line for line in out.out.splitlines() if line.startswith("note: part")]
    assert len(notes) == 1 and "damaged" in notes[0] and "Traceback" not in out.err, (notes, out.err)
    assert same_arrays(arrays(the_run(rd / PAINT_FOLDER) / "arrays.npz"), ref)
    assert not (the_run(rd / PAINT_FOLDER) / ".lock").exists()


def test_resume_after_the_features_file_changed_is_refused(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(0)
    feats = tmp_path / "f.npz"

    def write(scale):
        np.savez(feats, X_train=rng.normal(size=(60, 5)) * scale, y_train=np.repeat([0, 1], 30),
                 X_test=rng.normal(size=(10, 5)), y_test=np.repeat([0, 1], 5))
    write(1.0)
    argv = ["--dataset", "MINE", "--features", str(feats), "--paint_unlearning_sigma", "1", "--trials", "2",
            "--burn_in", "10", "--sigma_list", "0.05", "0.1", "--S", "2", "--no_cache", "--result_dir", str(tmp_path)]

    class Stop(BaseException):
        pass
    real = results.RunFolder.save_part

    def stop(self, key, a):
        real(self, key, a)
        raise Stop
    monkeypatch.setattr(results.RunFolder, "save_part", stop)
    with pytest.raises(Stop):
        main_lmc.main(argv)
    monkeypatch.undo()
    results.release_all()
    write(2.0)                                          # same flags, other data
    capsys.readouterr()
    assert main_lmc.main(argv + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert "--resume refused" in err and "sha256" in err and len(err.strip().splitlines()) == 1


def _features(path) -> str:
    rng = np.random.default_rng(0)
    np.savez(path, X_train=rng.normal(size=(40, 6)), y_train=np.repeat([0, 1], 20),
             X_test=rng.normal(size=(10, 6)), y_test=np.repeat([0, 1], 5), ids=np.arange(5000, 5040))
    return str(path)


def test_old_version_left_by_a_killed_remove_is_deleted_by_any_command(tmp_path, capsys, monkeypatch):
    st = str(tmp_path / "st")
    assert unlearn.main(["learn", "--features", _features(tmp_path / "f.npz"), "--state", st, "--trials", "2",
                         "--burn_in", "5", "--device", "cpu"]) == 0
    # the remove dies right after its switch, before deleting version 1 (which still holds row 5003)
    real = statefile._remove_stale
    calls = []

    class Killed(BaseException):
        pass

    def die_after_switch(path, keep):
        calls.append(keep)
        if len(calls) == 3:          # 1: the lock's clean-up, 2: before writing, 3: after the switch
            raise Killed
        return real(path, keep)
    monkeypatch.setattr(statefile, "_remove_stale", die_after_switch)
    with pytest.raises(Killed):
        unlearn.main(["remove", "--state", st, "--ids", "5003", "--device", "cpu"])
    monkeypatch.undo()
    results.release_all()
    assert sorted(n for n in os.listdir(st) if n != ".lock") == ["CURRENT", "KEY", "v000001", "v000002"]
    v1 = np.load(os.path.join(st, "v000001", "arrays.npz"))
    assert np.array_equal(v1["X"][3], statefile.load(st).arrays["X"][3]) is False   # v1 holds the removed row
    capsys.readouterr()
    # the same remove again says "already removed", and still deletes the old version
    assert unlearn.main(["remove", "--state", st, "--ids", "5003", "--device", "cpu"]) == 2
    assert "already removed" in capsys.readouterr().err
    assert sorted(os.listdir(st)) == ["CURRENT", "KEY", "v000002"]
    # status and export complete such a deletion too, and say so
    os.makedirs(os.path.join(st, "v000001"))
    assert unlearn.main(["status", "--state", st]) == 0
    assert "completed a pending deletion" in capsys.readouterr().out
    assert sorted(os.listdir(st)) == ["CURRENT", "KEY", "v000002"]
    os.makedirs(os.path.join(st, ".tmp-v000003-x"))
    assert unlearn.main(["export", "--state", st, "--out", str(tmp_path / "m.npz")]) == 0
    assert sorted(os.listdir(st)) == ["CURRENT", "KEY", "v000002"]


def test_status_reports_a_pending_deletion_while_a_remove_holds_the_lock(tmp_path, capsys):
    st = str(tmp_path / "st")
    statefile.create(st, *state_parts(), "")
    os.makedirs(os.path.join(st, "v000000"))
    with results.FolderLock(st):
        assert statefile.settle(st) == ([], ["v000000"])
    assert statefile.settle(st) == (["v000000"], [])


@pytest.mark.parametrize("content", [b"[1, 2]", b"{}", b"{\"schema_version\": 1", b""])
def test_damaged_state_json_is_one_line(tmp_path, capsys, content):
    st = str(tmp_path / "st")
    statefile.create(st, *state_parts(), "")
    with open(os.path.join(st, "v000001", "state.json"), "wb") as fh:
        fh.write(content)
    assert unlearn.main(["status", "--state", st]) == 2
    err = capsys.readouterr().err
    assert "corrupt" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_edited_state_json_is_detected(tmp_path, capsys):
    st = str(tmp_path / "st")
    meta, arrays = state_parts()
    statefile.create(st, dict(meta, note="x"), arrays, "")
    path = os.path.join(st, "v000001", "state.json")
    meta = json.loads(open(path).read())
    meta["note"] = "y"
    with open(path, "w") as fh:
        json.dump(meta, fh)
    with pytest.raises(statefile.StateError, match="fails its seal"):
        statefile.load(st)


@pytest.mark.parametrize("how", ["garbled", "list", "flags-list", "link-to-binary"])
def test_damaged_config_json_of_an_existing_run(reference, tmp_path, capsys, how):
    """The same command again replaces the run (a note says why); with --resume it refuses in one line."""
    ref_dir, ref = reference
    rd = tmp_path / "r"
    shutil.copytree(ref_dir, rd)
    config = the_run(rd / FOLDER) / "config.json"
    if how == "link-to-binary":
        target = tmp_path / "blob.bin"
        target.write_bytes(bytes(range(256)))
        config.unlink()
        os.symlink(target, config)
    else:
        config.write_text({"garbled": '{"flags": {"seed": 0,', "list": "[1, 2]",
                           "flags-list": '{"flags": [1]}'}[how])
    capsys.readouterr()
    assert baseline.main(ARGV + ["--result_dir", str(rd), "--resume"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--resume refused" in err and "config.json" in err, err
    assert "Traceback" not in err
    assert baseline.main(ARGV + ["--result_dir", str(rd)]) == 0
    out = capsys.readouterr().out
    assert "config.json" in out and "the run in" in out and "is replaced" in out
    assert same_arrays(arrays(the_run(rd / FOLDER) / "arrays.npz"), ref)
    assert not os.path.islink(the_run(rd / FOLDER) / "config.json")
    if how == "link-to-binary":
        assert (tmp_path / "blob.bin").read_bytes() == bytes(range(256))      # the link's target is untouched
