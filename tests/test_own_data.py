"""A user's own data (issue 18): tables and DataFrames, the bias column and public standardisation, the
noiseless scikit-learn reference and majority rate, the future-request K table, ids as users write them.

Reference values come from scipy's optimiser on the written-out objective, hand-computed statistics and
the accountant's sequential K lists, never from the code under test.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import unlearn  # noqa: E402
from utils import accountant as A  # noqa: E402
from utils import forecast, reference, tabular  # noqa: E402
from utils import state as statefile  # noqa: E402
from utils.data import DataError, normalize_rows  # noqa: E402

pd = pytest.importorskip("pandas")


def _bc_frame():
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame.insert(0, "patient", [f"P{i:04d}" for i in range(len(frame))])
    return frame


@pytest.fixture(scope="module")
def bc_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("bc") / "bc.csv"
    _bc_frame().to_csv(path, index=False)
    return str(path)


LEARN = ["--seed", "0", "--eps", "1", "--K", "10", "--burn_in", "40", "--trials", "6", "--device", "cpu"]


@pytest.fixture(scope="module")
def bc_state(bc_csv, tmp_path_factory):
    st = str(tmp_path_factory.mktemp("st") / "state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNLEARN_NO_PROGRESS", "1")
        assert unlearn.main(["learn", "--features", bc_csv, "--label", "target", "--id", "patient",
                             "--test_fraction", "0.25", "--standardize", "test", "--m", "0.1",
                             "--state", st] + LEARN) == 0
    return st


def _run(argv, capsys):
    code = unlearn.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------- tables
def test_csv_learn_preprocesses_with_held_out_statistics(bc_csv, bc_state):
    from sklearn.model_selection import train_test_split

    st = statefile.load(bc_state)
    frame = pd.read_csv(bc_csv)
    y = frame["target"].to_numpy()
    tr, te = train_test_split(np.arange(len(y)), test_size=0.25, random_state=0, stratify=y)
    tr, te = np.sort(tr), np.sort(te)
    X = frame.drop(columns=["patient", "target"]).to_numpy(float)
    mu, sd = X[te].mean(axis=0), X[te].std(axis=0)            # statistics of the held-out rows only
    expect = normalize_rows(np.c_[(X[tr] - mu) / sd, np.ones(len(tr))])
    assert np.allclose(st.arrays["X"], expect, atol=1e-12)
    assert np.allclose(st.arrays["X_test"], normalize_rows(np.c_[(X[te] - mu) / sd, np.ones(len(te))]), atol=1e-12)
    assert st.arrays["ids"].tolist() == [f"P{i:04d}" for i in tr]
    # label 1 (benign) is +1, as for {0, 1} labels in a features file
    assert np.array_equal(st.arrays["y"], np.where(y[tr] == 1, 1.0, -1.0))
    assert st.meta["constants"]["m"] == pytest.approx(0.1)
    assert st.meta["dataset"]["preprocessing"] == {"bias": 1.0, "standardize": "143 held-out rows"}


def test_learn_prints_reference_majority_and_future_costs(bc_csv, tmp_path, capsys):
    st = str(tmp_path / "s")
    code, out, err = _run(["learn", "--features", bc_csv, "--label", "target", "--id", "patient",
                           "--test_fraction", "0.25", "--standardize", "test", "--state", st] + LEARN, capsys)
    assert code == 0, err
    meta = statefile.load(st).meta
    c, sigma, T = unlearn.constants_of(meta), meta["settings"]["sigma"], meta["settings"]["T"]
    assert "certificate covers it" in out and "143 held-out rows" in out
    # the future table follows the accountant's sequential K list and stops at the first K > T
    assert meta["settings"]["bound"] == "best"   # unlearn.py's default
    Ks = A.sequential_K_list_best(num_requests=10, S=1, sigma=sigma, eps_target=1.0, consts=c)
    stop = next((i for i, K in enumerate(Ks) if K > T), None)
    for s in range(len(Ks) if stop is None else stop + 1):
        retrain = sum(T + sum(Ks[:j + 1]) for j in range(s + 1))    # T + sum K at each request, as remove prices it
        assert f"  {s + 1:>7} {Ks[s]:>8} {sum(Ks[:s + 1]):>9} {retrain:>14}" in out
    if stop is None:   # no request of the ten costs more than retraining
        assert "is cheaper from here" not in out
    else:
        assert "is cheaper from here" in out and f"  {stop + 2:>7} " not in out.split("future")[1]
    ref = meta["reference"]
    y_test = statefile.load(st).arrays["y_test"]
    assert ref["majority_rate"] == pytest.approx(np.mean(y_test == 1.0))   # benign is the larger class
    assert f"noiseless reference: {ref['noiseless_accuracy']:.4f}" in out and "exactly" in out
    code, out, _ = _run(["status", "--state", st], capsys)
    assert code == 0 and f"noiseless reference (data at learn): {ref['noiseless_accuracy']:.4f}" in out
    assert f"  {1:>7} {Ks[0]:>8} " in out and "preprocessing at learn: bias column 1" in out


def test_dataframe_entry_point_matches_the_csv(bc_csv, bc_state, tmp_path):
    frame = pd.read_csv(bc_csv)
    st = str(tmp_path / "df")
    assert unlearn.learn(frame, state=st, label="target", id="patient", test_fraction=0.25, standardize="test",
                         m=0.1, eps=1, K=10, burn_in=40, trials=6, device="cpu", seed=0) == 0
    a, b = statefile.load(st), statefile.load(bc_state)
    assert a.meta["dataset"]["fingerprint"] == b.meta["dataset"]["fingerprint"]
    assert np.array_equal(a.arrays["w"], b.arrays["w"])            # same data, same seed: same chains
    # a held-out DataFrame instead of a split
    st2 = str(tmp_path / "df2")
    assert unlearn.learn(frame.iloc[:400], state=st2, label="target", id="patient", test=frame.iloc[400:], sigma=0.1,
                         burn_in=5, trials=2, device="cpu") == 0
    assert statefile.load(st2).meta["constants"]["n"] == 400 and len(statefile.load(st2).arrays["y_test"]) == 169


def test_remove_by_text_ids_commas_and_header_then_export(bc_csv, bc_state, tmp_path, capsys):
    import shutil

    st = str(tmp_path / "s")
    shutil.copytree(bc_state, st)
    ids = statefile.load(st).arrays["ids"].tolist()
    code, out, err = _run(["remove", "--state", st, "--ids", f"{ids[0]},{ids[1]}", "--features", bc_csv], capsys)
    assert code == 0, err
    f = tmp_path / "ids.csv"
    f.write_text(f"patient\n# asked on Monday\n{ids[2]}, {ids[3]}\n{ids[4]}\n")
    code, out, err = _run(["remove", "--state", st, "--ids", str(f)], capsys)
    assert code == 0, err
    assert "skipped the header line 'patient'" in out
    meta = statefile.load(st).meta
    assert [r["ids"] for r in meta["requests"]] == [ids[:2], ids[2:5]]
    code, _, err = _run(["remove", "--state", st, "--ids", ids[0].lower()], capsys)    # exact comparison
    assert code == 2 and f"id {ids[0].lower()!r} is not in the data" in err
    code, _, err = _run(["remove", "--state", st, "--ids", ids[1]], capsys)
    assert code == 2 and "already removed by request 1" in err
    model = str(tmp_path / "m.npz")
    assert _run(["export", "--state", st, "--out", model], capsys)[0] == 0
    with np.load(model, allow_pickle=False) as z:
        frame = pd.read_csv(bc_csv)
        X = frame[list(z["columns"])].to_numpy(float)
        Xp = np.c_[(X - z["standardize_mean"]) / z["standardize_scale"], np.full(len(X), float(z["bias"]))]
        pred = np.where(Xp @ z["w"] > 0, z["classes"][0], z["classes"][1])
        st_arrays = statefile.load(st).arrays
        held = ~frame["patient"].isin(st_arrays["ids"]).to_numpy()
        assert np.mean(pred[held] == frame["target"].to_numpy()[held]) == pytest.approx(float(z["accuracy"]))


def test_integer_ids_with_commas_and_header_lines(tmp_path):
    all_ids = np.array([100010, 100020, 100030])
    assert statefile.read_ids(["100010,100020"], all_ids).tolist() == [100010, 100020]
    assert statefile.read_ids(["100010,", "100030"], all_ids).tolist() == [100010, 100030]
    f = tmp_path / "ids.txt"
    f.write_text("id\n100020\n")
    skipped = []
    assert statefile.read_ids([str(f)], all_ids, skipped=skipped).tolist() == [100020] and skipped == ["id"]
    with pytest.raises(statefile.StateError, match="'abc' is not an integer id"):
        statefile.read_ids(["1,abc"], all_ids)


def test_table_errors_name_the_column_and_the_allowed_values(tmp_path):
    frame = pd.DataFrame({"a": [1.0, 2, 3, 4], "colour": ["r", "g", "b", "r"], "y": [0, 1, 0, 1]})
    with pytest.raises(DataError, match="column 'colour' .* is not numeric .*e.g. 'r'"):
        tabular.split_table(frame, label="y", test_fraction=0.5)
    saved = pd.DataFrame({"Unnamed: 0": [0, 1, 2, 3], "a": [1.0, 2, 3, 4], "y": [0, 1, 0, 1]})
    assert "looks like a row id" in tabular.split_table(saved, label="y", test_fraction=0.5).notes[0]
    assert tabular.split_table(saved, label="y", id_col="Unnamed: 0", test_fraction=0.5).notes == ()
    with pytest.raises(DataError, match="--label 'target' is not a column"):
        tabular.split_table(frame, label="target")
    frame2 = pd.DataFrame({"a": [1.0, None, 3, 4], "y": [0, 1, 0, 1]})
    with pytest.raises(DataError, match="column 'a' .* 1 missing value"):
        tabular.split_table(frame2, label="y")
    with pytest.raises(DataError, match="label column 'y' .* has value 0.5 .*regression target"):
        tabular.split_table(pd.DataFrame({"a": [1.0, 2, 3], "y": [0.5, 1, 2]}), label="y")
    with pytest.raises(DataError, match="--standardize train is not allowed"):
        tabular.make_preprocessing(bias=1.0, standardize="train", X_test=np.ones((3, 2)))
    path = tmp_path / "t.parquet"
    path.write_bytes(b"PAR1")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(DataError, match="needs pyarrow or fastparquet"):
            tabular.read_table(path)
    with pytest.raises(DataError, match="--label is for tables"):
        tabular.load(str(tmp_path / "x.npz"), label="y")


def test_cli_refuses_a_table_without_label_in_one_line(bc_csv, tmp_path, capsys):
    code, _, err = _run(["learn", "--features", bc_csv, "--state", str(tmp_path / "s")], capsys)
    assert code == 2 and "needs --label COL" in err and len(err.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "s")


def test_preprocessing_never_reads_training_rows():
    """Changing every training row leaves the map unchanged: it is built from held-out rows only."""
    rng = np.random.default_rng(1)
    Xt = rng.normal(3.0, 2.0, size=(50, 4))
    prep = tabular.make_preprocessing(bias=2.0, standardize="test", X_test=Xt)
    assert np.allclose(prep.mean, Xt.mean(axis=0)) and np.allclose(prep.scale, Xt.std(axis=0))
    X = rng.normal(size=(5, 4))
    out = prep.apply(X)
    assert np.allclose(out[:, :4], (X - Xt.mean(axis=0)) / Xt.std(axis=0)) and np.all(out[:, 4] == 2.0)
    assert tabular.scale_hint(Xt * np.array([1, 1, 1, 1e4]), tabular.Preprocessing(bias=1.0)).startswith("hint")
    assert tabular.scale_hint(Xt, prep) == ""


# ---------------------------------------------------------------- the noiseless reference
@pytest.mark.parametrize("k", [2, 3])
def test_noiseless_fit_minimises_the_chains_objective(k):
    """scikit-learn with C = 1/(m n) returns the minimiser of (1/n) sum loss + (m/2)||w||^2 (scipy on the
    written-out objective agrees); a wrong C (e.g. 1/(lam n) = 1/m) would not."""
    from scipy.optimize import minimize
    from scipy.special import logsumexp

    rng = np.random.default_rng(0)
    n, d, m = 120, 5, 0.05
    X = normalize_rows(rng.normal(size=(n, d)) + 0.3)
    if k == 2:
        y = np.where(X @ rng.normal(size=d) + 0.3 * rng.normal(size=n) > 0, 1.0, -1.0)

        def f(w):
            return np.mean(np.logaddexp(0, -y * (X @ w))) + m / 2 * w @ w
        w_ref = minimize(f, np.zeros(d), method="BFGS", options={"gtol": 1e-12}).x
    else:
        y = (X @ rng.normal(size=(d, k))).argmax(axis=1)

        def f(w):
            W = w.reshape(d, k)
            Z = X @ W
            return np.mean(logsumexp(Z, axis=1) - Z[np.arange(n), y]) + m / 2 * np.sum(W * W)
        w_ref = minimize(f, np.zeros(d * k), method="BFGS", options={"gtol": 1e-12}).x.reshape(d, k)
    w = reference.noiseless_fit(X, y, m=m, num_classes=k)
    assert np.allclose(w, w_ref, atol=1e-5)
    assert reference.sklearn_C(m=m, n=n) == pytest.approx(1 / (m * n))


def test_majority_rate_and_warnings():
    assert reference.majority_rate(np.array([1, 1, 0]), np.array([0, 1, 1, 1])) == 0.75
    ref = {"noiseless_accuracy": 0.93, "majority_rate": 0.63, "sklearn_C": 0.2, "same_objective": True}
    assert any(line.startswith("warning") for line in reference.describe(ref, 0.65))
    assert not any(line.startswith(("warning", "note")) for line in reference.describe(ref, 0.92))
    assert any("costs 5.0 points" in line for line in reference.describe(ref, 0.88))
    assert reference.clip_never_fires(M=1.0, num_classes=2) and not reference.clip_never_fires(M=1.0, num_classes=3)


# ---------------------------------------------------------------- future requests
def test_future_requests_follow_the_sequential_list_and_stop_when_retraining_is_cheaper():
    c = A.make_constants(n=500, lam=2e-5, M=1.0)
    sigma = 0.2

    def next_K(Ks, sizes):
        return A.next_K_sequential_pngd(Ks=Ks, sizes=sizes, sigma=sigma, eps_target=1.0, consts=c)

    Ks = A.sequential_K_list_pngd(num_requests=10, S=2, sigma=sigma, eps_target=1.0, consts=c)
    rows = forecast.future_requests(next_K, Ks=[], sizes=[], S=2, T=10 ** 9, n=500)
    assert [r.K for r in rows] == Ks and rows[-1].cumulative == sum(Ks)
    T = Ks[3]                                   # K exceeds T first at request 5 (the list increases)
    rows = forecast.future_requests(next_K, Ks=[], sizes=[], S=2, T=T, n=500)
    assert [r.K for r in rows] == Ks[:5] and forecast.first_over(rows, T).request == 5
    later = forecast.future_requests(next_K, Ks=Ks[:2], sizes=[2, 2], S=2, T=10 ** 9, n=500, count=3)
    assert [r.request for r in later] == [3, 4, 5] and [r.K for r in later] == Ks[2:5]
    assert forecast.future_requests(next_K, Ks=[], sizes=[], S=2, T=5, n=2)[0].K is None   # rows run out


# ---------------------------------------------------------------- ADULT
ADULT_TRAIN = """\
39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K
50, Self-emp-not-inc, 83311, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, White, Male, 0, 0, 13, United-States, <=50K
52, Self-emp-inc, 287927, HS-grad, 9, Married-civ-spouse, Exec-managerial, Wife, White, Female, 15024, 0, 40, United-States, >50K
31, Private, 45781, Masters, 14, Never-married, Prof-specialty, Not-in-family, White, Female, 14084, 0, 50, United-States, >50K
54, ?, 180211, Some-college, 10, Married-civ-spouse, ?, Husband, Asian-Pac-Islander, Male, 0, 0, 60, South, >50K

"""
ADULT_TEST = """\
|1x3 Cross validator
25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, Own-child, Black, Male, 0, 0, 40, United-States, <=50K.
44, Private, 160323, Some-college, 10, Married-civ-spouse, Machine-op-inspct, Husband, Black, Male, 7688, 0, 40, United-States, >50K.
"""


def _adult_dir(tmp_path, train=ADULT_TRAIN):
    folder = tmp_path / "adult"
    folder.mkdir(parents=True)
    (folder / "adult.data").write_text(train)
    (folder / "adult.test").write_text(ADULT_TEST)
    return tmp_path


def test_adult_from_files_in_the_original_format(tmp_path):
    from utils import adult
    from utils.data import load_dataset

    ds = load_dataset("ADULT", data_dir=_adult_dir(tmp_path), download=False)
    names = adult.feature_names()
    assert ds.n == 5 and len(ds.y_test) == 2 and ds.d == len(names) == 6 + 99 + 1 and ds.num_classes == 2
    assert ds.y_train.tolist() == [-1, -1, 1, 1, 1] and ds.y_test.tolist() == [-1, 1]   # the test file's dots
    assert ds.identity["classes"] == [">50K", "<=50K"]
    # row 1 written out by hand: numeric / public constants, one 1 per known category, '?' -> no 1, bias 1
    raw = np.zeros(len(names))
    for col, v in (("age", 0.50), ("fnlwgt", 0.083311), ("education-num", 13 / 16), ("hours-per-week", 0.13)):
        raw[names.index(col)] = v
    for hot in ("workclass=Self-emp-not-inc", "education=Bachelors", "marital-status=Married-civ-spouse",
                "occupation=Exec-managerial", "relationship=Husband", "race=White", "sex=Male",
                "native-country=United-States", "bias"):
        raw[names.index(hot)] = 1.0
    assert np.allclose(ds.X_train[1], raw / np.linalg.norm(raw))
    row4 = ds.X_train[4] * np.linalg.norm(ds.X_train[4]) / ds.X_train[4][names.index("bias")]
    assert not any(row4[names.index(f"workclass={v}")] for v in adult.CATEGORIES["workclass"])   # '?'
    assert row4[names.index("native-country=South")] == 1.0


def test_adult_errors_are_one_line_and_name_the_place(tmp_path, monkeypatch):
    from utils import downloads
    from utils.data import load_dataset

    with pytest.raises(DataError, match=r"not found in .*adult/ and download=False: copy them from https://"):
        load_dataset("ADULT", data_dir=tmp_path, download=False)
    monkeypatch.setattr(downloads, "reachable", lambda urls, timeout=0: False)     # an offline machine, at once
    with pytest.raises(DataError, match=r"the download of Adult failed \(no internet\?\): copy them"):
        load_dataset("ADULT", data_dir=tmp_path, download=True)
    bad = _adult_dir(tmp_path / "x", ADULT_TRAIN.replace("State-gov", "Space-agency"))
    with pytest.raises(DataError, match="line 1: workclass = 'Space-agency' is not one of"):
        load_dataset("ADULT", data_dir=bad, download=False)
    with pytest.raises(DataError, match="classes=.* given for ADULT"):
        load_dataset("ADULT", data_dir=bad, classes=(3, 8), download=False)


def test_adult_runs_in_a_paper_script(tmp_path):
    import json
    import subprocess

    data_dir = _adult_dir(tmp_path)
    out = subprocess.run([sys.executable, os.path.join(REPO, "baseline.py"), "--dataset", "ADULT", "--data_dir",
                          str(data_dir), "--result_dir", str(tmp_path / "r"), "--find_k", "1", "--device", "cpu"],
                         cwd=REPO, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, UNLEARN_NO_PROGRESS="1"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "on ADULT (n=5," in out.stdout
    from utils import results

    with open(os.path.join(results.resolve_run_dir(tmp_path / "r" / "LMC" / "ADULT" / "find_k"), "config.json")) as fh:
        derived = json.load(fh)["derived"]
    assert derived["constants"]["n"] == 5 and derived["constants"]["d"] == 106 and derived["dataset"]["name"] == "ADULT"


def test_features_file_gets_bias_and_public_standardisation(tmp_path, capsys):
    """The same options on an .npz: statistics from a public .npy file, a bias column 2; training stats refused."""
    rng = np.random.default_rng(3)
    X, Xt = rng.normal(5, 3, size=(60, 3)), rng.normal(5, 3, size=(20, 3))
    w = np.array([1.0, -1.0, 0.5])
    y, yt = (X - 5) @ w > 0, (Xt - 5) @ w > 0
    f = tmp_path / "f.npz"
    np.savez(f, X_train=X, y_train=y.astype(int), X_test=Xt, y_test=yt.astype(int))
    public = rng.normal(4, 2, size=(30, 3))
    np.save(tmp_path / "public.npy", public)
    st = str(tmp_path / "s")
    code, out, err = _run(["learn", "--features", str(f), "--state", st, "--bias", "2", "--standardize",
                           str(tmp_path / "public.npy"), "--sigma", "0.1", "--burn_in", "3", "--trials", "2",
                           "--device", "cpu"], capsys)
    assert code == 0, err
    assert "standardised with mean and scale from the public file" in out and "certificate covers it" in out
    expect = normalize_rows(np.c_[(X - public.mean(0)) / public.std(0), np.full(60, 2.0)])
    assert np.allclose(statefile.load(st).arrays["X"], expect, atol=1e-12)
    code, out, _ = _run(["status", "--state", st, "--features", str(f)], capsys)     # reread with the same options
    assert code == 0 and "standardised from the public file" in out
    code, _, err = _run(["learn", "--features", str(f), "--state", str(tmp_path / "t"), "--standardize", "train"],
                        capsys)
    assert code == 2 and "--standardize train is not allowed" in err and not os.path.exists(tmp_path / "t")


def test_text_labels_give_softmax_in_sorted_order(tmp_path):
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    names = np.array(["c_b", "c_c", "c_a"])                   # not in the order of the numeric classes
    frame["target"] = names[frame["target"].to_numpy()]
    st = str(tmp_path / "w")
    assert unlearn.learn(frame, state=st, label="target", test_fraction=0.25, standardize="test", sigma=0.05,
                         burn_in=5, trials=2, device="cpu") == 0
    s = statefile.load(st)
    assert s.meta["dataset"]["classes"] == ["c_a", "c_b", "c_c"] and s.meta["dataset"]["num_classes"] == 3
    ids = s.arrays["ids"]
    expect = np.searchsorted(["c_a", "c_b", "c_c"], frame["target"].to_numpy()[ids])
    assert np.array_equal(s.arrays["y"], expect)                # ids are the DataFrame's row numbers
    assert s.meta["reference"]["same_objective"] is True        # M = 2 >= sqrt(2): the clip never fires


def test_adult_download_writes_both_files_then_loads(tmp_path, monkeypatch):
    """The download path, served from a local folder through a file:// URL (no network in tests)."""
    from utils import adult, downloads
    from utils.data import load_dataset

    source = _adult_dir(tmp_path / "server") / "adult"
    monkeypatch.setattr(adult, "URLS", (source.as_uri() + "/",))
    monkeypatch.setattr(downloads, "reachable", lambda urls, timeout=0: True)
    target = tmp_path / "data"
    ds = load_dataset("ADULT", data_dir=target, download=True)
    assert sorted(os.listdir(target / "adult")) == ["adult.data", "adult.test"] and ds.n == 5
    assert (target / "adult" / "adult.data").read_text() == ADULT_TRAIN


# ---------------------------------------------------------------- ids with commas, zero-padded ids, held-out ids
def test_ids_with_commas_zero_padding_and_held_out_rows(tmp_path, capsys):
    from sklearn.model_selection import train_test_split

    frame = _bc_frame().drop(columns=["patient"])
    frame.insert(0, "patient", [f"P,{i:04d}" for i in range(len(frame))])      # quoted in the CSV
    frame.insert(1, "code", [f"{i:04d}" for i in range(len(frame))])           # digits, zero-padded: text
    frame.to_csv(tmp_path / "c.csv", index=False)
    assert '"P,0000",0000,' in (tmp_path / "c.csv").read_text().splitlines()[1]
    y = frame["target"].to_numpy()
    tr, te = train_test_split(np.arange(len(y)), test_size=0.2, random_state=0, stratify=y)
    train, held = sorted(tr.tolist()), sorted(te.tolist())
    for id_col, fmt in (("patient", "P,{:04d}"), ("code", "{:04d}")):
        st = str(tmp_path / f"st-{id_col}")
        features = frame.drop(columns=["code" if id_col == "patient" else "patient"])
        features.to_csv(tmp_path / f"{id_col}.csv", index=False)
        assert unlearn.main(["learn", "--features", str(tmp_path / f"{id_col}.csv"), "--label", "target", "--id",
                             id_col, "--state", st, "--sigma", "0.1", "--burn_in", "5", "--trials", "2",
                             "--device", "cpu"]) == 0
        ids = statefile.load(st).arrays["ids"]
        assert ids.dtype.kind == "U" and ids.tolist() == [fmt.format(i) for i in train]
        a, b, c, d = (fmt.format(i) for i in train[:4])
        # on the command line: an id given whole, and CSV quoting
        assert unlearn.main(["remove", "--state", st, "--ids", a, f'"{b}"']) == 0
        # an ids file with one id per line, quoted or not
        (tmp_path / "forget.txt").write_text(f"{id_col}\n{c}\n\"{d}\"\n")
        assert unlearn.main(["remove", "--state", st, "--ids", str(tmp_path / "forget.txt")]) == 0
        out = capsys.readouterr().out
        assert f"ids {a}, {b} (S=2)" in out and f"ids {c}, {d} (S=2)" in out
        assert sorted(i for r in statefile.load(st).meta["requests"] for i in r["ids"]) == sorted([a, b, c, d])
        # a held-out row is named as such, not "not in the data"
        h = fmt.format(held[0])
        assert unlearn.main(["remove", "--state", st, "--ids", h]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"id {h!r} is a held-out row" in err
        missing = fmt.format(len(y) + 5)
        assert unlearn.main(["remove", "--state", st, "--ids", missing]) == 2
        assert f"id {missing!r} is not in the data" in capsys.readouterr().err      # named whole, never a piece
    # the zero-padded id is text: "3" is not "0003"
    assert unlearn.main(["remove", "--state", str(tmp_path / "st-code"), "--ids", str(train[5])]) == 2
    assert "leading zeros count" in capsys.readouterr().err


# ---------------------------------------------------------------- defaults for an ordinary table (issue 28.6)
def _sklearn_accuracy(frame, label, fraction=0.25):
    """scikit-learn's default LogisticRegression (intercept, C = 1) on columns standardised from the training
    rows, on the same seeded stratified split as learn's --test_fraction: what a user compares with."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    y = frame[label].to_numpy()
    X = frame.drop(columns=[label]).to_numpy(float)
    tr, te = train_test_split(np.arange(len(y)), test_size=fraction, random_state=0, stratify=y)
    scale = StandardScaler().fit(X[tr])
    return LogisticRegression(max_iter=5000).fit(scale.transform(X[tr]), y[tr]).score(scale.transform(X[te]), y[te])


def _penguins_like():
    """Two iris species with one column in thousands (grams, as penguins' body mass) and a year column."""
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    frame = frame[frame.target > 0].reset_index(drop=True)
    frame["petal length (cm)"] *= 1000
    frame["year"] = 2007 + np.arange(len(frame)) % 3
    return frame


@pytest.mark.parametrize("table", ["penguins-like", "breast-cancer (README)"])
def test_defaults_work_on_an_ordinary_table(tmp_path, capsys, table):
    """No --standardize and no --m: the chains come within a few points of scikit-learn, where the former
    defaults (no standardisation, m = 0.01) fell to the majority rate."""
    from sklearn.datasets import load_breast_cancer

    frame = _penguins_like() if table == "penguins-like" else load_breast_cancer(as_frame=True).frame
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    majority = frame["target"].value_counts(normalize=True).max()
    sk = _sklearn_accuracy(frame, "target")
    accs = {}
    for name, extra in (("default", []), ("former", ["--standardize", "none", "--m", "0.01"])):
        st = str(tmp_path / name)
        assert unlearn.main(["learn", "--features", str(path), "--label", "target", "--test_fraction", "0.25",
                             "--eps", "1", "--K", "10", "--state", st, "--seed", "0", "--device", "cpu", *extra]) == 0
        out = capsys.readouterr().out
        s = statefile.load(st)
        accs[name] = float(s.arrays["accuracy"].mean())
        if name == "default":
            assert "standardised with mean and scale from the" in out and "held-out rows" in out
            assert s.meta["constants"]["m"] == pytest.approx(tabular.TABLE_M)
    assert accs["default"] >= sk - 0.06, (accs, sk)
    assert accs["former"] <= majority + 0.05 < accs["default"] - 0.2, (accs, majority)


def test_dropna_drops_incomplete_rows_with_a_count(tmp_path, capsys):
    frame = _bc_frame()
    frame.loc[[3, 10, 11], "mean radius"] = np.nan
    frame.loc[[10, 40], "target"] = np.nan
    frame.to_csv(tmp_path / "gaps.csv", index=False)
    argv = ["learn", "--features", str(tmp_path / "gaps.csv"), "--label", "target", "--id", "patient",
            "--sigma", "0.1", "--burn_in", "5", "--trials", "2", "--device", "cpu"]
    assert unlearn.main(argv + ["--state", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert "missing value" in err and "--dropna" in err and not os.path.exists(tmp_path / "refused")
    assert unlearn.main(argv + ["--state", str(tmp_path / "st"), "--dropna"]) == 0
    out = capsys.readouterr().out
    assert f"--dropna: dropped 4 of {len(frame)} rows" in out and f"{len(frame) - 4} rows kept" in out
    s = statefile.load(str(tmp_path / "st"))
    kept = len(frame) - 4
    assert s.meta["constants"]["n"] + len(s.arrays["y_test"]) == kept
    gone = {f"P{i:04d}" for i in (3, 10, 11, 40)}
    assert not gone & set(s.arrays["ids"].tolist()) and not gone & set(s.arrays["ids_test"].tolist())
    assert unlearn.main(["status", "--state", str(tmp_path / "st"), "--features", str(tmp_path / "gaps.csv")]) == 0
    capsys.readouterr()
    np.savez(tmp_path / "f.npz", X_train=np.eye(4), y_train=[0, 1, 0, 1], X_test=np.eye(4), y_test=[0, 1, 0, 1])
    assert unlearn.main(["learn", "--features", str(tmp_path / "f.npz"), "--state", str(tmp_path / "x"),
                         "--dropna"]) == 2
    assert "--dropna is for tables" in capsys.readouterr().err


def test_own_data_delta_default_and_its_meaning(tmp_path, capsys):
    assert unlearn.default_delta(270) == 1e-5 and unlearn.default_delta(20_000) == pytest.approx(5e-6)
    assert unlearn.default_delta(10 ** 6) == pytest.approx(1e-7)
    np.savez(tmp_path / "f.npz", X_train=np.random.default_rng(0).normal(size=(300, 4)), y_train=np.arange(300) % 2,
             X_test=np.eye(4), y_test=[0, 1, 0, 1])
    assert unlearn.main(["learn", "--features", str(tmp_path / "f.npz"), "--state", str(tmp_path / "st"),
                         "--sigma", "0.1", "--burn_in", "5", "--trials", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    line = [x for x in out.splitlines() if x.startswith("delta=")]
    assert len(line) == 1 and "1e-05 (default min(1e-5, 1/(10 n)))" in line[0] and "probability" in line[0]
    assert statefile.load(str(tmp_path / "st")).meta["constants"]["delta"] == 1e-5
    # the papers' scripts keep the papers' delta = 1/n
    assert A.make_constants(n=270, lam=1e-4, M=1.0).delta == pytest.approx(1 / 270)
