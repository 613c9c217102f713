"""utils/data.py: IDX reader, the dataset registry, features files; utils/downloads.py and utils/features.py."""
import gzip
import hashlib
import math
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import FASHION_HOWTO

from utils import data as D
from utils import downloads
from utils import features as F

FASHION = Path("/usr/share/datasets/fashion-mnist")
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- helpers
def idx_bytes(arr: np.ndarray, magic=None) -> bytes:
    """An IDX file written from first principles: big-endian magic, dimensions, then the bytes."""
    magic = magic if magic is not None else (0x803 if arr.ndim == 3 else 0x801)
    return struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()


def write_idx(path: Path, arr: np.ndarray, gz=False, **kw):
    raw = idx_bytes(arr, **kw)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def fake_mnist(root: Path, gz: bool, kind="MNIST", seed=0):
    """Tiny IDX files (5 x 4 pixels) in root/<kind>/raw/; returns the arrays written."""
    rng = np.random.default_rng(seed)
    raw = root / kind / "raw"
    raw.mkdir(parents=True)
    labels = np.array([8, 3, 1, 3, 8, 8, 0, 3, 5, 8], dtype=np.uint8)
    tlabels = np.array([3, 8, 2, 8, 3], dtype=np.uint8)
    imgs = rng.integers(0, 256, (len(labels), 5, 4), dtype=np.uint8)
    timgs = rng.integers(0, 256, (len(tlabels), 5, 4), dtype=np.uint8)
    ext = ".gz" if gz else ""
    for name, arr in zip(D.IDX_FILES, (imgs, labels, timgs, tlabels)):
        write_idx(raw / (name + ext), arr, gz=gz)
    return imgs, labels, timgs, tlabels


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def no_network(monkeypatch):
    """Make every host unreachable, as on a machine without internet (no real connection is tried)."""
    monkeypatch.setattr(downloads, "reachable", lambda urls, timeout=0: False)


# ---------------------------------------------------------------- import and names
def test_import_loads_neither_torch_nor_sklearn():
    code = "import sys, utils.data; print(sorted(m for m in ('torch', 'torchvision', 'sklearn') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_names_multiclass_and_default_lam():
    assert set(D.names()) == {"MNIST", "FASHION", "FASHION_MULTI", "CIFAR10", "CIFAR10_MULTI", "DIGITS",
                              "DIGITS_MULTI", "ADULT"}
    assert [D.spec(n).num_classes for n in ("MNIST", "FASHION_MULTI", "CIFAR10_MULTI", "DIGITS", "ADULT")] == [
        2, 10, 10, 2, 2]
    for name in ("MNIST", "FASHION", "FASHION_MULTI", "CIFAR10", "CIFAR10_MULTI", "ADULT"):
        assert D.spec(name).default_lam == 1e-6
    # docs/METHOD.md §1.1: m = lam * n about 0.01 .. 0.25 for DIGITS (267 binary / 1347 multiclass training rows)
    assert 0.01 <= D.spec("DIGITS").default_lam * 267 <= 0.25
    assert 0.01 <= D.spec("DIGITS_MULTI").default_lam * 1347 <= 0.25
    for bad in ("mnist", "SVHN", ""):
        with pytest.raises(D.DataError, match="allowed: MNIST, FASHION, .*, ADULT, or any name with features=FILE"):
            D.spec(bad)


def test_normalize_rows_unit_norm_and_zero_row():
    X = np.array([[3.0, 4.0], [0.0, 0.0], [-1.0, 0.0]])
    out = D.normalize_rows(X)
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]])
    assert X[0, 0] == 3.0  # input untouched


# ---------------------------------------------------------------- IDX reader
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, gz):
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (7, 3, 2), dtype=np.uint8)
    labels = rng.integers(0, 10, 7).astype(np.uint8)
    got = D.read_idx(write_idx(tmp_path / "im", imgs, gz=gz))
    assert got.dtype == np.uint8 and got.shape == (7, 3, 2)
    np.testing.assert_array_equal(got, imgs)
    np.testing.assert_array_equal(D.read_idx(write_idx(tmp_path / "lab", labels, gz=gz)), labels)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_wrong_magic(tmp_path, gz):
    path = write_idx(tmp_path / "bad", np.zeros((2, 2, 2), np.uint8), gz=gz, magic=0x0803)  # ok value
    assert D.read_idx(path).shape == (2, 2, 2)
    path = write_idx(tmp_path / "bad", np.zeros((2, 2, 2), np.uint8), gz=gz, magic=0x0D03)  # float64 type
    with pytest.raises(D.DataError, match=r"bad.*0x00000d03"):
        D.read_idx(path)


def test_read_idx_truncated_plain_gz_and_long(tmp_path):
    raw = idx_bytes(np.ones((4, 3, 3), np.uint8))
    (tmp_path / "cut").write_bytes(raw[:-5])
    with pytest.raises(D.DataError, match=r"cut is truncated.*36 data bytes, it has 31"):
        D.read_idx(tmp_path / "cut")
    (tmp_path / "hdr").write_bytes(raw[:10])
    with pytest.raises(D.DataError, match="hdr is truncated"):
        D.read_idx(tmp_path / "hdr")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(raw)[:-12])  # broken gzip stream
    with pytest.raises(D.DataError, match="cut.gz"):
        D.read_idx(tmp_path / "cut.gz")
    (tmp_path / "long").write_bytes(raw + b"\0")
    with pytest.raises(D.DataError, match="long is too long"):
        D.read_idx(tmp_path / "long")
    with pytest.raises(D.DataError, match="missing"):
        D.read_idx(tmp_path / "missing")


# ---------------------------------------------------------------- MNIST from fake IDX files
@pytest.mark.parametrize("gz", [False, True])
def test_mnist_fake_ordering_labels_and_scaling(tmp_path, gz):
    imgs, labels, timgs, tlabels = fake_mnist(tmp_path, gz)
    ds = D.load_dataset("MNIST", data_dir=tmp_path, download=False)
    # train = all 3s (rows 1, 3, 7) then all 8s (rows 0, 4, 5, 9), in file order
    order = [1, 3, 7, 0, 4, 5, 9]
    expect = unit(imgs[order].reshape(7, -1) / 255.0 - 0.5)
    np.testing.assert_allclose(ds.X_train, expect, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ds.y_train, [1, 1, 1, -1, -1, -1, -1])
    assert ds.y_train.dtype == np.float64 and ds.X_train.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(ds.X_train, axis=1), 1.0)
    np.testing.assert_allclose(ds.X_test, unit(timgs[[0, 4, 1, 3]].reshape(4, -1) / 255.0 - 0.5), atol=1e-12)
    np.testing.assert_array_equal(ds.y_test, [1, 1, -1, -1])
    assert (ds.n, ds.d, ds.num_classes, ds.default_lam) == (7, 20, 2, 1e-6)
    assert ds.identity == {"name": "MNIST", "classes": [3, 8], "source": str(tmp_path / "MNIST" / "raw"),
                           "sha256": ds.fingerprint, "n": 7, "d": 20, "seed": None}
    h = hashlib.sha256()
    for a in (ds.X_train, ds.y_train):
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(a.tobytes())
    assert ds.fingerprint == h.hexdigest()


def test_mnist_other_classes_and_cache_is_not_shared(tmp_path):
    imgs, labels, *_ = fake_mnist(tmp_path, gz=False)
    ds = D.load_dataset("MNIST", data_dir=tmp_path, classes=(8, 1), download=False)
    np.testing.assert_allclose(ds.X_train, unit(imgs[[0, 4, 5, 9, 2]].reshape(5, -1) / 255.0 - 0.5), atol=1e-12)
    np.testing.assert_array_equal(ds.y_train, [1, 1, 1, 1, -1])
    ds.X_train[:] = 0  # the caller owns its arrays: a second load is unaffected
    again = D.load_dataset("MNIST", data_dir=tmp_path, classes=(8, 1), download=False)
    assert np.linalg.norm(again.X_train[0]) == pytest.approx(1.0)
    assert again.identity["sha256"] != D.load_dataset("MNIST", data_dir=tmp_path, download=False).identity["sha256"]


def test_mnist_absent_offline_fails_fast_with_the_path(tmp_path, monkeypatch):
    no_network(monkeypatch)
    for download in (True, False):
        t0 = time.monotonic()
        with pytest.raises(D.DataError) as err:
            D.load_dataset("MNIST", data_dir=tmp_path, download=download)
        assert time.monotonic() - t0 < 30
        msg = str(err.value)
        assert str(tmp_path / "MNIST" / "raw") in msg and "train-images-idx3-ubyte" in msg and "\n" not in msg
        assert ("no internet" in msg) == download


def test_fashion_absent_offline_names_both_folders(tmp_path, monkeypatch):
    no_network(monkeypatch)
    monkeypatch.setattr(D, "SYSTEM_FASHION_DIR", tmp_path / "debian")
    with pytest.raises(D.DataError, match=r"FashionMNIST files not found in .*FashionMNIST/raw/ nor .*debian/"):
        D.load_dataset("FASHION_MULTI", data_dir=tmp_path)


def test_fashion_prefers_data_dir_over_system_folder(tmp_path, monkeypatch):
    imgs, labels, timgs, tlabels = fake_mnist(tmp_path, gz=True, kind="FashionMNIST", seed=3)
    monkeypatch.setattr(D, "SYSTEM_FASHION_DIR", tmp_path / "debian")
    ds = D.load_dataset("FASHION_MULTI", data_dir=tmp_path, download=False)
    assert ds.y_train.dtype == np.int64 and ds.num_classes == 10
    np.testing.assert_array_equal(ds.y_train, labels)
    np.testing.assert_allclose(ds.X_test, unit(timgs.reshape(5, -1) / 255.0 - 0.5), atol=1e-12)
    assert ds.identity["classes"] == list(range(10))


def test_corrupt_idx_folder_names_the_file(tmp_path):
    fake_mnist(tmp_path, gz=False)
    bad = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    bad.write_bytes(idx_bytes(np.array([3, 8, 2, 8, 3, 1], np.uint8))[:-2])
    with pytest.raises(D.DataError, match="t10k-labels-idx1-ubyte is truncated"):
        D.load_dataset("MNIST", data_dir=tmp_path, download=False)
    write_idx(bad, np.array([3, 8, 2], np.uint8))  # 3 labels for 5 images
    with pytest.raises(D.DataError, match="do not match"):
        D.load_dataset("MNIST", data_dir=tmp_path, download=False)


# ---------------------------------------------------------------- real Fashion-MNIST (Debian package)
# these read the Debian folder itself (data_dir is a temporary folder)
needs_fashion = pytest.mark.skipif(not (FASHION / "train-images-idx3-ubyte.gz").is_file(), reason=FASHION_HOWTO)


@needs_fashion
def test_fashion_real_binary(tmp_path):
    ds = D.load_dataset("FASHION", data_dir=tmp_path)
    assert (ds.n, ds.d, len(ds.X_test), ds.num_classes) == (12000, 784, 2000, 2)
    assert ds.identity["source"] == str(FASHION)
    np.testing.assert_allclose(np.linalg.norm(ds.X_train, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(ds.X_test, axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(ds.y_train, np.r_[np.ones(6000), -np.ones(6000)])
    np.testing.assert_array_equal(ds.y_test, np.r_[np.ones(1000), -np.ones(1000)])
    imgs = D.read_idx(FASHION / "train-images-idx3-ubyte.gz")
    labels = D.read_idx(FASHION / "train-labels-idx1-ubyte.gz")
    first8 = imgs[np.flatnonzero(labels == 8)[0]].reshape(-1) / 255.0 - 0.5
    np.testing.assert_allclose(ds.X_train[6000], unit(first8), atol=1e-12)
    assert not list(tmp_path.iterdir())  # nothing written when the files are found


@needs_fashion
def test_fashion_real_multiclass():
    ds = D.load_dataset("FASHION_MULTI")
    assert (ds.n, ds.d, len(ds.X_test), ds.num_classes) == (60000, 784, 10000, 10)
    assert ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(ds.y_train), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(ds.y_test), np.full(10, 1000))
    np.testing.assert_allclose(np.linalg.norm(ds.X_train[::997], axis=1), 1.0, atol=1e-12)


# ---------------------------------------------------------------- DIGITS
def test_digits_split_deterministic_seeded_and_stratified():
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    a, b = D.load_dataset("DIGITS"), D.load_dataset("DIGITS", seed=0)
    c = D.load_dataset("DIGITS", seed=1)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert not np.array_equal(a.X_train, c.X_train)
    assert (a.n, len(a.X_test), a.d, a.num_classes) == (267, 90, 64, 2)  # 357 rows of 3 and 8, 75/25
    assert (a.identity["seed"], c.identity["seed"], a.identity["source"]) == (0, 1, "sklearn")
    # stratified: 183 threes and 174 eights split as closely as possible; threes (+1) first
    n3 = int((a.y_train == 1).sum())
    assert n3 in (137, 138) and np.all(a.y_train[:n3] == 1) and np.all(a.y_train[n3:] == -1)
    # every row (train and test) is the normalised pixels/16 - 0.5 of a distinct digit of its class
    pix = unit(images / 16.0 - 0.5)
    for X, y in ((a.X_train, a.y_train), (a.X_test, a.y_test)):
        np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0)
        match = np.abs(X @ pix.T - 1).argmin(axis=1)
        np.testing.assert_allclose(X, pix[match], atol=1e-12)
        np.testing.assert_array_equal(np.where(labels[match] == 3, 1.0, -1.0), y)
    train_ids = set(np.abs(a.X_train @ pix.T - 1).argmin(axis=1))
    test_ids = set(np.abs(a.X_test @ pix.T - 1).argmin(axis=1))
    assert len(train_ids) == 267 and len(test_ids) == 90 and not train_ids & test_ids


def test_digits_multi_and_classes():
    ds = D.load_dataset("DIGITS_MULTI", seed=5)
    assert (ds.n, len(ds.X_test), ds.num_classes, ds.y_train.dtype) == (1347, 450, 10, np.int64)
    assert set(np.unique(ds.y_train)) == set(range(10))
    np.testing.assert_allclose(np.linalg.norm(ds.X_test, axis=1), 1.0)
    assert ds.default_lam == D.spec("DIGITS_MULTI").default_lam
    d17 = D.load_dataset("DIGITS", classes=[1, 7])
    assert d17.identity["classes"] == [1, 7] and d17.n == 361 - math.ceil(0.25 * 361)  # 182 ones, 179 sevens


# ---------------------------------------------------------------- classes and names
@pytest.mark.parametrize("classes", [(11, 3), (3, 3), (3,), (3, 8, 1), "38", (3.0, 8), (-1, 2), (True, 8)])
def test_classes_that_do_not_exist(classes):
    with pytest.raises(D.DataError, match=r"classes=.*allowed: two different class ids"):
        D.load_dataset("DIGITS", classes=classes)


def test_classes_for_multiclass_and_bad_names_and_seed(tmp_path):
    with pytest.raises(D.DataError, match="only for binary"):
        D.load_dataset("DIGITS_MULTI", classes=(3, 8))
    with pytest.raises(D.DataError, match=r"unknown dataset 'SVHN'.*features=FILE"):
        D.load_dataset("SVHN", data_dir=tmp_path)
    with pytest.raises(D.DataError, match="seed=-1"):
        D.load_dataset("DIGITS", seed=-1)


# ---------------------------------------------------------------- a user's features file
def save(path: Path, **arrays):
    if path.suffix == ".npz":
        np.savez(path, **arrays)
    else:
        import torch
        torch.save({k: torch.as_tensor(v) for k, v in arrays.items()}, path)
    return path


def good_arrays(y_train, y_test, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return dict(X_train=rng.normal(size=(len(y_train), d)), y_train=np.asarray(y_train),
                X_test=rng.normal(size=(len(y_test), d)), y_test=np.asarray(y_test))


@pytest.mark.parametrize("ext", [".npz", ".pt"])
@pytest.mark.parametrize("train,test,expect_train,classes", [
    ([-1, 1, 1, -1], [1, -1], [-1, 1, 1, -1], [1, -1]),
    ([0, 1, 1, 0], [1, 0], [-1, 1, 1, -1], [1, 0]),
    ([8, 3, 3, 8], [3, 8], [-1, 1, 1, -1], [3, 8]),  # the smaller value is +1, like 3 in "3 vs 8"
    ([2.0, 5.0, 2.0, 5.0], [5.0], [1, -1, 1, -1], [2, 5]),
])
def test_features_binary_label_rule(tmp_path, ext, train, test, expect_train, classes):
    arrays = good_arrays(train, test)
    path = save(tmp_path / f"f{ext}", **arrays)
    ds = D.load_dataset("DIGITS", features=path, data_dir=tmp_path / "unused")
    np.testing.assert_array_equal(ds.y_train, expect_train)
    assert ds.y_train.dtype == np.float64 and ds.num_classes == 2
    np.testing.assert_allclose(ds.X_train, unit(arrays["X_train"]), atol=1e-12)
    np.testing.assert_allclose(ds.X_test, unit(arrays["X_test"]), atol=1e-12)
    assert ds.identity["classes"] == classes and ds.identity["source"] == str(path.resolve())
    assert ds.identity["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ds.name == "DIGITS" and ds.default_lam == pytest.approx(D.FEATURES_M / 4)


@pytest.mark.parametrize("ext", [".npz", ".pt"])
def test_features_multiclass_and_one_hot(tmp_path, ext):
    ds = D.load_dataset("mine", features=save(tmp_path / f"m{ext}", **good_arrays([9, 2, 5, 5, 2], [5, 9])))
    assert ds.num_classes == 3 and ds.y_train.dtype == np.int64
    np.testing.assert_array_equal(ds.y_train, [2, 0, 1, 1, 0])
    np.testing.assert_array_equal(ds.y_test, [1, 2])
    assert ds.identity["classes"] == [2, 5, 9]
    onehot = np.eye(4)[[3, 0, 1, 3, 0]]
    ds = D.load_dataset("oh", features=save(tmp_path / f"o{ext}", **good_arrays(onehot, np.eye(4)[[1, 0]])))
    np.testing.assert_array_equal(ds.y_train, [2, 0, 1, 2, 0])  # columns 0, 1, 3 used -> ids 0, 1, 2
    np.testing.assert_array_equal(ds.y_test, [1, 0])


def test_features_classes_select_a_pair(tmp_path):
    arrays = good_arrays([0, 3, 8, 8, 3, 1], [8, 3, 0])
    ds = D.load_dataset("C", features=save(tmp_path / "c.npz", **arrays), classes=(8, 3))
    np.testing.assert_array_equal(ds.y_train, [1, 1, -1, -1])
    np.testing.assert_allclose(ds.X_train, unit(arrays["X_train"][[2, 3, 1, 4]]), atol=1e-12)
    with pytest.raises(D.DataError, match=r"classes=\(8, 7\) not in features file.*\[0, 1, 3, 8\]"):
        D.load_dataset("C", features=tmp_path / "c.npz", classes=(8, 7))


def test_features_zero_row_stays_zero(tmp_path):
    arrays = good_arrays([1, -1, 1], [1])
    arrays["X_train"][1] = 0
    ds = D.load_dataset("z", features=save(tmp_path / "z.npz", **arrays))
    assert np.all(ds.X_train[1] == 0) and np.isfinite(ds.X_train).all()


BAD = {
    "wrong keys": (dict(X=np.ones((2, 2)), y_train=[1, -1], X_test=np.ones((1, 2)), y_test=[1]),
                   "lacks X_train"),
    "d mismatch": (dict(good_arrays([1, -1], [1]), X_test=np.ones((1, 4))), "X_test d = 4"),
    "y length": (dict(good_arrays([1, -1], [1]), y_train=np.array([1, -1, 1])), "3 labels for 2 rows"),
    "nan": (dict(good_arrays([1, -1], [1]), X_train=np.array([[1.0, np.nan, 0], [1, 1, 1]])), "X_train contains NaN"),
    "inf": (dict(good_arrays([1, -1], [1]), X_test=np.array([[1.0, np.inf, 0]])), "X_test contains NaN or inf"),
    "single class": (good_arrays([1, 1, 1], [1]), "single class"),
    "unseen test label": (good_arrays([0, 1, 2], [3]), "y_test has label 3 absent from y_train"),
    "fractional label": (good_arrays([0.5, 1.0], [1.0]), "y_train has label 0.5"),
    "not one-hot": (good_arrays(np.array([[1, 1], [0, 1]]), np.array([[0, 1]])), "not one-hot"),
    "1-D X": (dict(good_arrays([1, -1], [1]), X_train=np.ones(2)), r"X_train has shape \(2,\)"),
}


@pytest.mark.parametrize("ext", [".npz", ".pt"])
@pytest.mark.parametrize("case", sorted(BAD))
def test_features_bad_files(tmp_path, ext, case):
    arrays, message = BAD[case]
    with pytest.raises(D.DataError, match=message):
        D.load_dataset("X", features=save(tmp_path / f"bad{ext}", **arrays))


def test_features_unreadable_missing_and_wrong_extension(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    for name in ("junk.npz", "junk.pt"):
        with pytest.raises(D.DataError, match=f"cannot read features file .*{name}"):
            D.load_dataset("X", features=tmp_path / name)
    with pytest.raises(D.DataError, match="not found"):
        D.load_dataset("X", features=tmp_path / "absent.npz")
    (tmp_path / "f.csv").write_text("1,2\n")
    with pytest.raises(D.DataError, match=r"extension '.csv' \(allowed: .npz, .pt, .pth\)"):
        D.load_dataset("X", features=tmp_path / "f.csv")
    np.savez(tmp_path / "obj.npz", X_train=np.array([{"a": 1}], dtype=object), y_train=[1], X_test=[[1]],
             y_test=[1])
    with pytest.raises(D.DataError, match="cannot read features file"):  # pickled objects are refused
        D.load_dataset("X", features=tmp_path / "obj.npz")


# ---------------------------------------------------------------- CIFAR-10
def test_cifar_from_cached_features_file(tmp_path):
    rng = np.random.default_rng(2)
    y, yt = rng.integers(0, 10, 40), np.arange(10)
    X, Xt = rng.random((40, 6)), rng.random((10, 6))
    np.savez(tmp_path / D.CIFAR_FEATURES_FILE, X_train=X.astype(np.float32), y_train=y, X_test=Xt, y_test=yt)
    ds = D.load_dataset("CIFAR10", data_dir=tmp_path, download=False)
    cats, ships = np.flatnonzero(y == 3), np.flatnonzero(y == 8)
    np.testing.assert_allclose(ds.X_train, unit(X[np.r_[cats, ships]].astype(np.float32).astype(float)), atol=1e-12)
    np.testing.assert_array_equal(ds.y_train, np.r_[np.ones(len(cats)), -np.ones(len(ships))])
    np.testing.assert_array_equal(ds.y_test, [1, -1])
    assert ds.identity["sha256"] == hashlib.sha256((tmp_path / D.CIFAR_FEATURES_FILE).read_bytes()).hexdigest()
    multi = D.load_dataset("CIFAR10_MULTI", data_dir=tmp_path, download=False)
    assert multi.num_classes == 10 and multi.n == 40
    np.testing.assert_array_equal(multi.y_train, y)


def test_cifar_absent_offline_says_where_and_features_flag(tmp_path, monkeypatch):
    no_network(monkeypatch)
    t0 = time.monotonic()
    with pytest.raises(D.DataError) as err:
        D.load_dataset("CIFAR10", data_dir=tmp_path)
    assert time.monotonic() - t0 < 30
    msg = str(err.value)
    assert f"{tmp_path}/cifar-10-batches-py/" in msg and "--features FILE" in msg and "no internet" in msg
    assert not list(tmp_path.iterdir())


def test_reachable_gives_up_quickly_on_a_closed_port():
    t0 = time.monotonic()
    assert downloads.reachable(["http://127.0.0.1:9/"], timeout=2.0) is False  # discard port: nothing listens
    assert time.monotonic() - t0 < 5


def test_resnet18_features_batched_equals_one_by_one_and_reference_pipeline():
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    from PIL import Image
    from torchvision import transforms as T

    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    torch.manual_seed(0)
    batched = F.extract_resnet18_features(images, weights=None, batch_size=3)
    torch.manual_seed(0)
    single = F.extract_resnet18_features(images, weights=None, batch_size=1)
    assert batched.shape == (4, 512) and np.isfinite(batched).all()
    assert (batched >= 0).all() and batched.std(axis=0).max() > 0  # post-ReLU average pool, image-dependent
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-6)
    # the paper's per-image pipeline: PIL Resize(224), ToTensor, Normalize(ImageNet), fc removed, eval
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None)
    model.fc = torch.nn.Identity()
    model.eval()
    tf = T.Compose([T.Resize(224), T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    with torch.no_grad():
        ref = np.stack([model(tf(Image.fromarray(im))[None])[0].numpy() for im in images])
    rel = np.linalg.norm(batched - ref, axis=1) / np.linalg.norm(ref, axis=1)
    assert rel.max() < 5e-3  # only PIL's and torch's bilinear rounding differ


@pytest.mark.parametrize("kwargs,match", [
    (dict(images=np.zeros((2, 8, 8, 3), np.float32)), "dtype float32"),
    (dict(images=np.zeros((2, 3, 8, 8), np.uint8)), r"shape \(2, 3, 8, 8\)"),
    (dict(weights="DEFAULT"), "weights='DEFAULT'"),
    (dict(batch_size=0), "batch_size=0"),
])
def test_resnet18_features_bad_input(kwargs, match):
    kwargs = {"images": np.zeros((2, 8, 8, 3), np.uint8), "weights": None, **kwargs}
    with pytest.raises(D.DataError, match=match):
        F.extract_resnet18_features(kwargs.pop("images"), **kwargs)
