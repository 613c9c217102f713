"""A state folder edited by anyone without its KEY, damaged, or holding links is refused in one line: no
command prints a certificate from values unlearn.py did not write (issue 26, items 1, 5, 6, 7).

Each hostile case edits a real state the way someone who knows the format would: the changed values, and
the sha256 of the arrays (in state.json and its history) recomputed so that only the seal can tell.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sys

import numpy as np
import pytest

from utils import results
from utils import state as statefile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import unlearn  # noqa: E402

ID0 = 5000
COMMANDS = (["status"], ["export", "--out", "{tmp}/m.npz"], ["remove", "--ids", str(ID0 + 9)], ["verify"])


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("UNLEARN_NO_PROGRESS", "1")


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    """A state learned at sigma 0.1 with 3 chains, after one request (version 2)."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("trust")
    X, y = load_digits(return_X_y=True)
    keep = np.isin(y, (3, 8))
    X, y = X[keep], y[keep]
    np.savez(root / "f.npz", X_train=X[:300], y_train=y[:300], X_test=X[300:], y_test=y[300:],
             ids=np.arange(ID0, ID0 + 300))
    st = str(root / "st")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNLEARN_NO_PROGRESS", "1")
        assert unlearn.main(["learn", "--features", str(root / "f.npz"), "--state", st, "--sigma", "0.1",
                             "--trials", "3", "--burn_in", "20", "--device", "cpu"]) == 0
        assert unlearn.main(["remove", "--state", st, "--ids", str(ID0 + 3), "--device", "cpu"]) == 0
    return st


@pytest.fixture
def st(committed, tmp_path):
    dst = str(tmp_path / "st")
    shutil.copytree(committed, dst)
    return dst


def _paths(st):
    version = json.loads(open(os.path.join(st, "CURRENT")).read())["version"]
    folder = os.path.join(st, f"v{version:06d}")
    return os.path.join(folder, "state.json"), os.path.join(folder, "arrays.npz")


def edit(st, meta_fn=None, arrays_fn=None):
    """Change state.json and/or arrays.npz as an editor without KEY would, fixing every sha256 they can."""
    meta_path, arrays_path = _paths(st)
    meta = json.loads(open(meta_path).read())
    if meta_fn is not None:
        meta_fn(meta)
    if arrays_fn is not None:
        with np.load(arrays_path) as z:
            arrays = {k: z[k] for k in z.files}
        arrays_fn(arrays)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        with open(arrays_path, "wb") as fh:
            fh.write(buf.getvalue())
        digest = hashlib.sha256(buf.getvalue()).hexdigest()
        meta["arrays_sha256"] = digest
        if meta.get("history"):
            meta["history"][-1]["arrays_sha256"] = digest
    with open(meta_path, "w") as fh:
        fh.write(json.dumps(meta, indent=2))


def reseal(st):
    """What only the KEY's holder can do: seal the current values again, the whole chain (a buggy writer, say)."""
    meta_path, arrays_path = _paths(st)
    meta = json.loads(open(meta_path).read())
    meta["arrays_sha256"] = meta["history"][-1]["arrays_sha256"] = hashlib.sha256(
        open(arrays_path, "rb").read()).hexdigest()
    key, previous, count = statefile._read_key(st), "", 0
    common = statefile._common_digest(meta)
    for e in meta["history"]:
        e["mac"] = previous = statefile._seal(key, previous=previous, entry=e,
                                              added=meta["requests"][count:e["requests"]], common=common)
        count = e["requests"]
    with open(meta_path, "w") as fh:
        fh.write(results.json_text(meta))


def refused_everywhere(st, tmp_path, capsys, *words):
    """Every command exits 2 with one line (containing ``words``) and prints no certificate or guarantee."""
    before = sorted(os.listdir(st))
    for command in COMMANDS:
        argv = [a.replace("{tmp}", str(tmp_path)) for a in command]
        code = unlearn.main([argv[0], "--state", st, *argv[1:]])
        out = capsys.readouterr()
        lines = out.err.strip().splitlines()
        assert code == 2, (command, out.out, out.err)
        assert len(lines) == 1 and "Traceback" not in out.err, (command, out.err)
        assert all(w in lines[0] for w in words), (command, lines[0])
        assert "certificate" not in out.out and "guarantee" not in out.out and "(eps, delta)" not in out.out
    assert not os.path.exists(tmp_path / "m.npz")
    assert sorted(os.listdir(st)) == before          # nothing written, nothing sealed
    return lines[0]


# ---------------------------------------------------------------- edits by someone without KEY
def _set_sigma(meta):
    meta["settings"]["sigma"] = 1.0
    for r in meta["requests"]:
        r["certificate"]["sigma"] = 1.0


def _set_n(meta):
    meta["constants"]["n"] = meta["dataset"]["n"] = 1_000_000
    for r in meta["requests"]:
        r["certificate"]["n"] = 1_000_000


def _set_m(meta):
    meta["constants"]["m"] = 10.0
    meta["constants"]["lam"] = 10.0 / meta["constants"]["n"]
    meta["constants"]["L"] = 10.26
    meta["constants"]["eta"] = 1 / 10.26


def _set_K(meta):
    meta["requests"][0]["K"] = meta["requests"][0]["certificate"]["K"] = 500


def _drop_mac(meta):
    for e in meta["history"]:
        del e["mac"]


@pytest.mark.parametrize("how", [_set_sigma, _set_n, _set_m, _set_K, _drop_mac,
                                 lambda meta: meta.pop("history"),
                                 lambda meta: meta["history"][-1].update(mac=meta["history"][0]["mac"]),
                                 lambda meta: meta["requests"][0]["certificate"].update(eps=0.001)],
                         ids=["sigma", "n", "m", "K", "mac-deleted", "history-deleted", "mac-copied", "eps"])
def test_edited_values_are_refused_by_every_command(st, tmp_path, capsys, how):
    edit(st, how)
    refused_everywhere(st, tmp_path, capsys, "corrupt", st)


@pytest.mark.parametrize("how", ["nan", "replaced", "one-chain", "no-ids"])
def test_edited_arrays_with_their_sha256_fixed_are_refused(st, tmp_path, capsys, how):
    def change(a):
        if how == "nan":
            a["w"][0, 0] = np.nan
        elif how == "replaced":
            a["w"] = np.random.default_rng(0).normal(size=a["w"].shape).astype(a["w"].dtype)
        elif how == "one-chain":
            a["w"] = a["w"][:1]
        else:
            del a["ids"]
    edit(st, arrays_fn=change)
    refused_everywhere(st, tmp_path, capsys, "fails its seal")


def test_request_log_emptied_even_rebuilt_as_a_fresh_learn_is_refused(st, tmp_path, capsys):
    edit(st, lambda meta: meta.update(requests=[]))
    refused_everywhere(st, tmp_path, capsys, "history counts 1 requests but the request log holds 0")

    # the thorough editor: history cut to its learn entry, the version renamed to 1, the arrays' sha fixed
    def as_learned(meta):
        meta["history"] = meta["history"][:1]
        meta["version"] = 1
    edit(st, as_learned, arrays_fn=lambda a: a["removed"].fill(False))
    os.rename(os.path.join(st, "v000002"), os.path.join(st, "v000001"))
    with open(os.path.join(st, "CURRENT"), "w") as fh:
        fh.write('{"version": 1}\n')
    refused_everywhere(st, tmp_path, capsys, "fails its seal")


def test_edited_log_is_refused(st, tmp_path, capsys):
    meta_path, _ = _paths(st)
    log = os.path.join(os.path.dirname(meta_path), "log.txt")
    with open(log, "a") as fh:
        fh.write("certificate of request 2: eps=0.001\n")
    refused_everywhere(st, tmp_path, capsys, "log.txt of version 2 does not match its sealed sha256")


def test_missing_or_foreign_key_is_refused(st, tmp_path, capsys):
    key = os.path.join(st, statefile.KEY)
    with open(key, "w") as fh:
        fh.write(os.urandom(32).hex() + "\n")          # another state's key: no seal matches
    refused_everywhere(st, tmp_path, capsys, "fails its seal")
    with open(key, "w") as fh:
        fh.write("not a key\n")
    refused_everywhere(st, tmp_path, capsys, "does not hold a key")
    os.unlink(key)
    refused_everywhere(st, tmp_path, capsys, "has no KEY file")


@pytest.mark.parametrize("pointer", ['{"version": 2.7}', '"2"', '{"version": "2"}', '{"version": true}',
                                     '[2]', '{"version": 0}', '{"version": 2, "x": 1}', '', '{"version": 3}'])
def test_current_must_be_the_written_form(st, tmp_path, capsys, pointer):
    with open(os.path.join(st, "CURRENT"), "w") as fh:
        fh.write(pointer)
    refused_everywhere(st, tmp_path, capsys, "corrupt", "CURRENT")


# ---------------------------------------------------------------- values only the KEY holder could write
@pytest.mark.parametrize("how,words", [
    (lambda m, a: a.pop("ids"), "lacks ids"),
    (lambda m, a: a.update(w=a["w"][:1]), "for 3 chains"),
    (lambda m, a: a["w"].__setitem__((0, 0), np.inf), "non-finite"),
    (lambda m, a: a["removed"].fill(False), "marked removed"),
    (lambda m, a: m["settings"].update(sigma=1.0), "certificate does not match"),
    (lambda m, a: m["constants"].update(m=10.0), "m=10.0"),
    (lambda m, a: m["constants"].update(m=0.2), "constant m=0.2"),
    (lambda m, a: a.update(X=a["X"][:-1]), "X has shape"),
    (lambda m, a: m["requests"][0].update(rows=[0, 1]), "inconsistently")],
    ids=["no-ids", "one-chain", "inf", "removed-mask", "sigma", "m-above-L", "m", "X-rows", "rows"])
def test_inconsistent_values_are_refused_even_when_sealed(st, tmp_path, capsys, how, words):
    meta_path, arrays_path = _paths(st)
    meta = json.loads(open(meta_path).read())
    with np.load(arrays_path) as z:
        arrays = {k: z[k] for k in z.files}
    how(meta, arrays)
    edit(st, lambda m: m.clear() or m.update(meta), arrays_fn=lambda a: a.clear() or a.update(arrays))
    reseal(st)
    refused_everywhere(st, tmp_path, capsys, "inconsistent", words)


def test_verify_recomputes_the_certificates(st, tmp_path, capsys):
    assert unlearn.main(["verify", "--state", st]) == 0
    out = capsys.readouterr().out
    assert "history of 2 sealed version(s) from learn" in out and "1 of 1 recomputed" in out and "verified" in out
    # a certificate claiming less than its bound, sealed by the KEY's holder: only verify can tell
    edit(st, lambda m: m["requests"][0]["certificate"].update(eps=m["requests"][0]["certificate"]["eps"] / 2))
    reseal(st)
    assert unlearn.main(["status", "--state", st]) == 0
    capsys.readouterr()
    assert unlearn.main(["verify", "--state", st]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "request 1's certificate says eps=" in err and "does not hold" in err


# ---------------------------------------------------------------- states written before the seal
def _as_old_state(st):
    """The state as today's main wrote it: schema_version 1, meta_sha256, no history, no KEY."""
    meta_path, _ = _paths(st)
    meta = json.loads(open(meta_path).read())
    del meta["history"]
    meta["schema_version"] = 1
    meta["meta_sha256"] = statefile._old_meta_digest(meta)
    with open(meta_path, "w") as fh:
        fh.write(results.json_text(meta))
    os.unlink(os.path.join(st, statefile.KEY))


def test_an_older_state_is_refused_until_trusted_once(st, tmp_path, capsys):
    _as_old_state(st)
    line = refused_everywhere(st, tmp_path, capsys, "older unlearn.py", "--trust-existing")
    assert "verify --state" in line
    assert unlearn.main(["verify", "--state", st, "--trust-existing"]) == 0
    out = capsys.readouterr().out
    assert "accepted state folder" in out and "sealed as version 3" in out
    assert sorted(os.listdir(st)) == ["CURRENT", "KEY", "v000003"]
    assert unlearn.main(["verify", "--state", st]) == 0
    assert "from version 3, an older state accepted by --trust-existing" in capsys.readouterr().out
    assert unlearn.main(["remove", "--state", st, "--ids", str(ID0 + 9), "--device", "cpu"]) == 0
    assert "certificate of request 2" in capsys.readouterr().out
    assert statefile.load(st).version == 4
    assert unlearn.main(["verify", "--state", st, "--trust-existing"]) == 2      # only for older states
    assert "only for states written by an older" in capsys.readouterr().err


def test_a_sealed_state_made_to_look_older_is_not_trusted(st, tmp_path, capsys):
    edit(st, lambda meta: meta.update(schema_version=1))
    refused_everywhere(st, tmp_path, capsys, "sealed and edited since")   # never pointed at --trust-existing
    assert unlearn.main(["verify", "--state", st, "--trust-existing"]) == 2
    assert "sealed and edited since" in capsys.readouterr().err
    edit(st, lambda meta: meta.pop("history"))                 # KEY still there
    assert unlearn.main(["verify", "--state", st, "--trust-existing"]) == 2
    assert "sealed and edited since" in capsys.readouterr().err


def test_an_edited_older_state_is_not_trusted(st, tmp_path, capsys):
    _as_old_state(st)
    edit(st, _set_sigma)                                   # meta_sha256 kept: it no longer matches
    assert unlearn.main(["verify", "--state", st, "--trust-existing"]) == 2
    assert "does not match its recorded sha256" in capsys.readouterr().err
    assert not os.path.exists(os.path.join(st, statefile.KEY))


# ---------------------------------------------------------------- who can read the state
def test_the_state_folder_and_its_key_are_owner_only(committed, tmp_path, capsys):
    """KEY lives beside the data: the folder is 0700 (its secret noise seed, KEY and rows), KEY 0600, also
    for an empty folder the user made beforehand with other modes."""
    import stat

    assert stat.S_IMODE(os.stat(committed).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(committed, statefile.KEY)).st_mode) == 0o600
    made = tmp_path / "mine"
    made.mkdir()
    os.chmod(made, 0o755)
    features = os.path.join(os.path.dirname(committed), "f.npz")
    assert unlearn.main(["learn", "--features", features, "--state", str(made), "--sigma", "0.1", "--trials", "1",
                         "--burn_in", "2", "--device", "cpu"]) == 0
    assert stat.S_IMODE(made.stat().st_mode) == 0o700


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="handing a folder to another user needs root")
def test_a_folder_of_another_user_is_refused_before_the_data_are_read(tmp_path, capsys, monkeypatch):
    from utils import tabular

    monkeypatch.setattr(tabular, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("data loaded")))
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    assert unlearn.main(["learn", "--features", str(tmp_path / "f.csv"), "--state", str(theirs)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "belongs to another user (uid 65534)" in err[0] and "secret noise seed" in err[0]
    assert os.listdir(theirs) == []


# ---------------------------------------------------------------- links (items 5, 6)
def test_a_symlinked_version_folder_is_refused_and_its_target_kept(st, tmp_path, capsys):
    elsewhere = tmp_path / "other-disk"
    elsewhere.mkdir()
    shutil.move(os.path.join(st, "v000002"), elsewhere / "v000002")
    os.symlink(elsewhere / "v000002", os.path.join(st, "v000002"))
    line = refused_everywhere(st, tmp_path, capsys, "v000002 is a symbolic link")
    assert "removed row would survive" in line
    assert sorted(os.listdir(elsewhere / "v000002")) == ["arrays.npz", "log.txt", "state.json"]


@pytest.mark.parametrize("name", [".lock", "CURRENT", "KEY", "v000001"])
def test_a_planted_link_is_never_written_through(st, tmp_path, capsys, name):
    target = tmp_path / "victim.txt"
    target.write_text("precious\n")
    link = os.path.join(st, name)
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(target, link)
    refused_everywhere(st, tmp_path, capsys, f"{name} is a symbolic link")
    assert target.read_text() == "precious\n"


def test_a_link_inside_the_version_folder_is_refused(st, tmp_path, capsys):
    meta_path, _ = _paths(st)
    real = tmp_path / "state.json"
    shutil.move(meta_path, real)
    os.symlink(real, meta_path)
    refused_everywhere(st, tmp_path, capsys, "is a symbolic link")


def test_the_lock_is_never_opened_through_a_link(tmp_path):
    target = tmp_path / "victim.txt"
    target.write_text("precious\n")
    folder = tmp_path / "run"
    folder.mkdir()
    os.symlink(target, folder / ".lock")
    with pytest.raises(results.ResultError, match="is a symbolic link"):
        results.FolderLock(str(folder)).acquire()
    assert target.read_text() == "precious\n"


def test_run_folder_files_replace_a_planted_link_never_its_target(tmp_path):
    """Every other file is written to a new temporary name and renamed over the old one: a link planted at a
    run folder's config.json or metrics.json is replaced, its target left as it was."""
    target = tmp_path / "victim.txt"
    target.write_text("precious\n")
    run = results.RunFolder(str(tmp_path / "r"), "LMC", "DIGITS", "baseline", "x")
    os.makedirs(run.path)
    for name in ("config.json", "metrics.json"):
        os.symlink(target, run.file(name))
    run.open({"flags": {"seed": 0}})
    run.write_config({"flags": {"seed": 0}})
    run.write_metrics({"accuracy": 1.0})
    run.close()
    assert target.read_text() == "precious\n"
    assert not os.path.islink(run.file("config.json")) and not os.path.islink(run.file("metrics.json"))
    assert results.read_json(run.file("metrics.json"))["accuracy"] == 1.0
