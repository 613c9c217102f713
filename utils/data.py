"""Dataset registry: name -> Dataset with L2-normalised rows (docs/METHOD.md §1.1).

A dataset is one ``register(name, loader, num_classes=, default_lam=, ...)`` call; scripts read everything
dataset-specific (kind, classes, lam, n, d, paper B's reference rows) from ``spec(name)``. No torch or
torchvision at import time: the CLI validates names before anything heavy is imported; downloads live in
utils/downloads.py and CIFAR-10's ResNet-18 features in utils/features.py.
"""
from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["DataError", "Dataset", "DatasetSpec", "load_dataset", "names", "normalize_rows", "read_idx", "register",
           "spec", "unregister"]

PAPER_LAM = 1e-6
# DIGITS has n = 267 (3 vs 8) / 1347 (10 classes) training rows. lam = 1e-4 gives m = lam*n = 0.027 / 0.135,
# inside the 0.01..0.25 of docs/METHOD.md §1.1, with eta*m ~ 0.1 (paper MNIST: 0.046) so K stays in the paper's range, while the
# noiseless test accuracy stays within ~3 points of the unregularised fit (0.93 vs 0.97 binary, 0.90 vs 0.91).
DIGITS_LAM = 1e-4
# A user's own data: m = lam*n = 0.01, the paper's strong convexity (CIFAR10 0.01, MNIST 0.012) whatever n is.
FEATURES_M = 0.01
# A multiclass script planning a --features file with --n reads no file, so it plans a softmax over this many
# classes (the built-in sources'); with the data loaded the file's own count is used.
FEATURES_PLAN_CLASSES = 10

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_IDX_MAGIC = {0x00000803: 3, 0x00000801: 1}  # unsigned bytes; images (N, rows, cols) / labels (N,)
SYSTEM_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
CIFAR_FEATURES_FILE = "features_cifar10_resnet18.npz"
FEATURE_KEYS = ("X_train", "y_train", "X_test", "y_test")
_TEN = tuple(range(10))  # the label ids of the built-in image sources (MNIST, Fashion-MNIST, CIFAR-10, digits)

_CACHE: dict = {}  # in-process: decoded raw files keyed by (path, mtime, size)


class DataError(ValueError):
    """Bad dataset name, classes or data files; the message is one line naming the bad value."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Training and test data; features float64 with unit-norm rows, labels +1/-1 (binary) or 0..k-1."""
    name: str
    X_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    X_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    num_classes: int
    n: int
    d: int
    identity: dict = field(repr=False)
    default_lam: float

    @property
    def fingerprint(self) -> str:
        """sha256 hex of the training arrays (shapes, dtypes and bytes of X_train and y_train)."""
        return fingerprint(self.X_train, self.y_train)


# ---------------------------------------------------------------- the registry
@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset name stands for: how to load it, and what scripts need to know before (or without) it.

    ``loader(*, data_dir, classes, seed, download) -> dict`` returns the parts ``X_train, y_train, X_test,
    y_test`` (raw features; targets +1/-1 float binary, int 0..k-1 multiclass), ``classes`` (the label
    values in target order) and ``source``, optionally ``sha256``; ``classes`` it receives is the checked
    (A, B) of a binary dataset whose pair can be chosen, else None."""
    name: str
    loader: Callable[..., dict] = field(repr=False)
    num_classes: int                     # 2: binary logistic, > 2: softmax (utils/models.py)
    default_lam: float                   # L2 regularisation lambda, m = lambda n (docs/METHOD.md §1.1)
    classes: tuple | None = None         # default (A, B) of a binary pair chosen from ``label_ids``
    label_ids: tuple = ()                # the source's label ids that --classes may pair (empty: fixed labels)
    n: int | None = None                 # training rows with the default classes (what --n stands for)
    d: int | None = None                 # the feature dimension
    reference_rows: int | None = None    # paper B's reference keeps these first rows (docs/METHOD.md §1.1)
    seeded: bool = False                 # the seed draws the train/test split (recorded in the identity)

    def classes_ok(self, classes) -> bool:
        """Whether ``classes`` is a pair this dataset can load: two different ids of ``label_ids``."""
        return (isinstance(classes, (tuple, list)) and len(classes) == 2 and self.classes is not None
                and all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in classes)
                and classes[0] != classes[1] and all(c in self.label_ids for c in classes))

    def classes_rule(self) -> str:
        """What ``classes`` may be for a binary dataset, for error messages."""
        if self.classes is None:
            return f"none: {self.name}'s labels are fixed"
        ids = list(self.label_ids)
        contiguous = all(isinstance(c, int) for c in ids) and ids == list(range(ids[0], ids[-1] + 1))
        span = f"{ids[0]}..{ids[-1]}" if contiguous else ", ".join(map(str, ids))
        return f"two different class ids A, B in {span}"


_REGISTRY: dict[str, DatasetSpec] = {}


def register(name: str, loader: Callable[..., dict], *, num_classes: int, default_lam: float,
             classes: tuple | None = None, label_ids: tuple = (), n: int | None = None, d: int | None = None,
             reference_rows: int | None = None, seeded: bool = False) -> DatasetSpec:
    """Make ``name`` a dataset every script accepts (``--dataset name``); returns its spec.

    Binary data with a choosable pair gives ``classes`` (the default (A, B)) and ``label_ids``; fixed
    binary labels and multiclass data give neither."""
    if not isinstance(name, str) or not name or name in _REGISTRY:
        raise ValueError(f"dataset name {name!r} (allowed: a new non-empty name; registered: {', '.join(_REGISTRY)})")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r} for {name} (allowed: an integer >= 2)")
    if not (isinstance(default_lam, (int, float)) and 0 < default_lam < float("inf")):
        raise ValueError(f"default_lam={default_lam!r} for {name} (allowed: a finite number > 0)")
    s = DatasetSpec(name=name, loader=loader, num_classes=num_classes, default_lam=float(default_lam),
                    classes=None if classes is None else tuple(classes), label_ids=tuple(label_ids), n=n, d=d,
                    reference_rows=reference_rows, seeded=seeded)
    if classes is not None and (num_classes != 2 or not s.classes_ok(s.classes)):
        raise ValueError(f"classes={classes!r} for {name} (allowed: binary data only, two different ids of "
                         f"label_ids={list(s.label_ids)})")
    _REGISTRY[name] = s
    return s


def unregister(name: str) -> None:
    """Forget ``name`` (tests that register a dataset of their own)."""
    _REGISTRY.pop(name, None)


def names() -> tuple:
    """The registered dataset names, in registration order."""
    return tuple(_REGISTRY)


def spec(name: str) -> DatasetSpec:
    """The registered dataset ``name``; DataError listing the registered names otherwise."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise DataError(f"unknown dataset {name!r} (allowed: {', '.join(_REGISTRY)}, or any name with features=FILE)")
    return _REGISTRY[name]


def check_classes(s: DatasetSpec, classes) -> tuple | None:
    """The (A, B) to load: ``classes``, checked against the spec, or its default pair; None when the
    dataset's labels are not chosen (multiclass, fixed binary labels)."""
    if classes is None:
        return s.classes
    if s.num_classes > 2:
        binary = ", ".join(n for n, t in _REGISTRY.items() if t.classes is not None)
        raise DataError(f"classes={classes!r} given for {s.name} (allowed only for binary datasets: {binary})")
    if not s.classes_ok(classes):
        verb = "given" if s.classes is None else "do not exist"
        raise DataError(f"classes={classes!r} {verb} for {s.name} (allowed: {s.classes_rule()})")
    return int(classes[0]), int(classes[1])


# ---------------------------------------------------------------- pure array helpers
def normalize_rows(X: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation x / ||x||_2 (docs/METHOD.md §1.1); a zero row stays zero. Returns a new float64 array."""
    X = np.array(X, dtype=np.float64)
    with np.errstate(over="ignore"):  # an overflow is refused just below, by name
        norms = np.linalg.norm(X, axis=1, keepdims=True)
    if not np.isfinite(norms).all():
        # finite entries whose squares overflow (|x| ~ 1e155 and up) would otherwise become zero rows
        row = int(np.flatnonzero(~np.isfinite(norms[:, 0]))[0])
        raise DataError(f"row {row} of the features has a non-finite L2 norm (its squares overflow float64; "
                        "allowed: rows whose norm is finite, e.g. rescale the features)")
    np.divide(X, norms, out=X, where=norms > 0)
    return X


def fingerprint(X: np.ndarray, y: np.ndarray) -> str:
    """sha256 hex of a training set: shapes, dtypes and bytes of X and y."""
    h = hashlib.sha256()
    for a in (X, y):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _binary_pair(X: np.ndarray, labels: np.ndarray, a, b):
    """Rows of class a (label +1) then class b (label -1), each in file order (docs/METHOD.md §1.1: cat(X_3, X_8))."""
    ia, ib = np.flatnonzero(labels == a), np.flatnonzero(labels == b)
    y = np.concatenate([np.ones(len(ia)), -np.ones(len(ib))])
    return X[np.concatenate([ia, ib])], y


def _pixels(images: np.ndarray, scale: float) -> np.ndarray:
    """Flattened pixels / scale - 0.5 (docs/METHOD.md §1.1: ToTensor then x - 0.5), float64."""
    X = images.reshape(len(images), -1).astype(np.float64)
    X /= scale
    X -= 0.5
    return X


# ---------------------------------------------------------------- IDX files
def read_idx(path) -> np.ndarray:
    """Read an IDX file (MNIST's format, gzipped or not): uint8 labels (N,) or images (N, rows, cols)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
        with (gzip.open if gzipped else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:  # includes a truncated or corrupt gzip stream
        raise DataError(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) < 4:
        raise DataError(f"IDX file {path} is truncated ({len(raw)} bytes, no header)")
    magic = int.from_bytes(raw[:4], "big")
    if magic not in _IDX_MAGIC:
        raise DataError(f"IDX file {path} has magic number 0x{magic:08x} "
                        f"(allowed: 0x00000803 uint8 images, 0x00000801 uint8 labels)")
    ndim = _IDX_MAGIC[magic]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file {path} is truncated (header needs {header} bytes, file has {len(raw)})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    size = int(np.prod(dims))
    if len(raw) - header != size:
        state = "truncated" if len(raw) - header < size else "too long"
        raise DataError(f"IDX file {path} is {state}: dimensions {dims} need {size} data bytes, "
                        f"it has {len(raw) - header}")
    return np.frombuffer(bytearray(raw), dtype=np.uint8, offset=header).reshape(dims)


def _cached(path: Path, reader):
    """reader(path), memoised in-process per (path, mtime, size); cached arrays are made read-only."""
    st = path.stat()
    key = (str(path.resolve()), reader.__name__, st.st_mtime_ns, st.st_size)
    if key not in _CACHE:
        value = reader(path)
        for a in value if isinstance(value, tuple) else (value,):
            if isinstance(a, np.ndarray):
                a.setflags(write=False)
        _CACHE[key] = value
    return _CACHE[key]


def _find_idx(folder: Path):
    """The four IDX paths in folder (plain or .gz), or None when any is missing."""
    found = []
    for base in IDX_FILES:
        hits = [folder / (base + ext) for ext in ("", ".gz") if (folder / (base + ext)).is_file()]
        if not hits:
            return None
        found.append(hits[0])
    return found


def _read_idx_set(folder: Path):
    """(train images, train labels, test images, test labels) from folder, checking they belong together."""
    paths = _find_idx(folder)
    imgs, labs, timgs, tlabs = (_cached(p, read_idx) for p in paths)
    for im, lab, p in ((imgs, labs, paths[0]), (timgs, tlabs, paths[2])):
        if im.ndim != 3 or lab.ndim != 1 or len(im) != len(lab):
            raise DataError(f"IDX files in {folder} do not match: {p.name} has shape {im.shape}, "
                            f"its labels {lab.shape} (allowed: images (N, rows, cols) with N labels)")
    if imgs.shape[1:] != timgs.shape[1:]:
        raise DataError(f"IDX files in {folder}: train images {imgs.shape[1:]} and test images "
                        f"{timgs.shape[1:]} differ in size")
    for lab, p in ((labs, paths[1]), (tlabs, paths[3])):
        if lab.size and lab.max() >= len(_TEN):
            raise DataError(f"IDX label file {p} has label {int(lab.max())} (allowed: 0..9)")
    return imgs, labs, timgs, tlabs


def _idx_folder(kind: str, data_dir: Path, download: bool) -> Path:
    """The folder holding MNIST or FashionMNIST IDX files: data_dir, the Debian folder, then torchvision."""
    folders = [data_dir / kind / "raw"] + ([SYSTEM_FASHION_DIR] if kind == "FashionMNIST" else [])
    for folder in folders:
        if _find_idx(folder):
            return folder
    why = "download=False"
    if download:
        from utils import downloads

        why = downloads.torchvision_dataset(kind, data_dir)
        if not why and _find_idx(folders[0]):
            return folders[0]
        why = why or f"torchvision's download left no IDX files in {folders[0]}/"
    files = ", ".join(f + "[.gz]" for f in IDX_FILES)
    where = " nor ".join(f"{f}/" for f in folders)
    raise DataError(f"{kind} files not found in {where} ({files}) and {why}: copy them to {folders[0]}/")


# ---------------------------------------------------------------- the built-in datasets
def _select(X, labels, Xt, labels_t, classes):
    """Binary pair (A -> +1, B -> -1) or, for classes None, all labels as int64 ids; arrays and classes list."""
    if classes is None:
        return X, labels.astype(np.int64), Xt, labels_t.astype(np.int64), list(_TEN)
    a, b = classes
    X, y = _binary_pair(X, labels, a, b)
    Xt, yt = _binary_pair(Xt, labels_t, a, b)
    return X, y, Xt, yt, [a, b]


def _idx_loader(kind: str):
    """Loader of MNIST-format files (torchvision's folder name ``kind``): pixels / 255 - 0.5."""
    def load(*, data_dir: Path, classes, seed, download):
        folder = _idx_folder(kind, data_dir, download)
        imgs, labs, timgs, tlabs = _read_idx_set(folder)
        # the classes first, then float64 (row by row, so the same values): a binary pair converts only its images
        imgs, y, timgs, yt, cls = _select(imgs, labs, timgs, tlabs, classes)
        return dict(X_train=_pixels(imgs, 255.0), y_train=y, X_test=_pixels(timgs, 255.0), y_test=yt, classes=cls,
                    source=str(folder))
    return load


def _load_digits(*, data_dir, classes, seed, download):
    """scikit-learn's 8x8 digits (pixels / 16 - 0.5), a seeded stratified 75/25 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images, labels = load_digits(return_X_y=True)
    keep = np.arange(len(labels)) if classes is None else np.flatnonzero(np.isin(labels, classes))
    # seeded stratified 75/25 split; each part then in file order, so the split is all the seed changes
    tr, te = train_test_split(keep, test_size=0.25, random_state=seed, stratify=labels[keep])
    tr, te = np.sort(tr), np.sort(te)
    Xa, y, Xt, yt, cls = _select(images[tr], labels[tr], images[te], labels[te], classes)
    return dict(X_train=_pixels(Xa, 16.0), y_train=y, X_test=_pixels(Xt, 16.0), y_test=yt, classes=cls,
                source="sklearn")


def _load_cifar(*, data_dir: Path, classes, seed, download):
    """ResNet-18 features of CIFAR-10 from data_dir's cache file, built by utils/features.py when missing."""
    path = data_dir / CIFAR_FEATURES_FILE
    if not path.is_file():
        from utils import features

        features.build_cifar10_features(data_dir, path, download)
    X, y, Xt, yt = _cached(path, _read_features_file)
    for lab in (y, yt):
        if not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0 or lab.max() >= len(_TEN):
            raise DataError(f"cached CIFAR-10 features {path} have labels outside 0..9: delete the file to rebuild it")
    X, y, Xt, yt, cls = _select(X, y, Xt, yt, classes)
    return dict(X_train=X, y_train=y, X_test=Xt, y_test=yt, classes=cls, source=str(path),
                sha256=_cached(path, _file_sha256))


def _load_adult(*, data_dir: Path, classes, seed, download):
    """UCI Adult, income > 50K or not (utils/adult.py)."""
    from utils import adult

    return adult.load_parts(data_dir, download)


def _register_builtins() -> None:
    """The paper's datasets (docs/METHOD.md §1.1) and the small ones for CPU runs; n is the training rows
    with the default classes, the reference rows are paper B's PNSGD truncation."""
    pair = dict(classes=(3, 8), label_ids=_TEN)
    mnist, fashion = _idx_loader("MNIST"), _idx_loader("FashionMNIST")
    register("MNIST", mnist, num_classes=2, default_lam=PAPER_LAM, n=11982, d=784, reference_rows=11264, **pair)
    register("FASHION", fashion, num_classes=2, default_lam=PAPER_LAM, n=12000, d=784, **pair)
    register("FASHION_MULTI", fashion, num_classes=10, default_lam=PAPER_LAM, n=60000, d=784)
    register("CIFAR10", _load_cifar, num_classes=2, default_lam=PAPER_LAM, n=10000, d=512, reference_rows=9728,
             **pair)
    register("CIFAR10_MULTI", _load_cifar, num_classes=10, default_lam=PAPER_LAM, n=50000, d=512)
    register("DIGITS", _load_digits, num_classes=2, default_lam=DIGITS_LAM, n=267, d=64, seeded=True, **pair)
    register("DIGITS_MULTI", _load_digits, num_classes=10, default_lam=DIGITS_LAM, n=1347, d=64, seeded=True)
    # ADULT: n = 32,561, so the paper's lam gives m = 0.033; fixed labels; its d depends on adult.names' lists
    register("ADULT", _load_adult, num_classes=2, default_lam=PAPER_LAM)


_register_builtins()


# ---------------------------------------------------------------- a user's own features
def _read_features_file(path: Path):
    """(X_train, y_train, X_test, y_test) from a .npz (no pickle) or a .pt dict (weights_only), checked."""
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".pt", ".pth"):
        raise DataError(f"features file {path} has extension {suffix or '(none)'!r} (allowed: .npz, .pt, .pth)")
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                if not hasattr(f, "files"):
                    raise ValueError("not an .npz archive")
                arrays = {k: f[k] for k in f.files}
        else:
            import torch
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(obj, dict):
                raise ValueError(f"holds a {type(obj).__name__}, not a dict")
            arrays = {k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
                      for k, v in obj.items()}
    except Exception as exc:  # zip, pickle and torch errors all mean an unreadable file
        raise DataError(f"cannot read features file {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    missing = [k for k in FEATURE_KEYS if k not in arrays]
    if missing:
        has = ", ".join(map(str, arrays)) or "nothing"
        raise DataError(f"features file {path} lacks {', '.join(missing)} (has {has}; required: {', '.join(FEATURE_KEYS)})")
    X, y, Xt, yt = (arrays[k] for k in FEATURE_KEYS)
    for key, a in (("X_train", X), ("X_test", Xt)):
        if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1 or a.dtype.kind not in "biuf":
            raise DataError(f"features file {path}: {key} has shape {a.shape} and dtype {a.dtype} "
                            f"(allowed: a non-empty numeric (rows, d) array)")
        if not np.isfinite(a).all():
            raise DataError(f"features file {path}: {key} contains NaN or inf (allowed: finite values)")
    if X.shape[1] != Xt.shape[1]:
        raise DataError(f"features file {path}: X_train has d = {X.shape[1]}, X_test d = {Xt.shape[1]} (must match)")
    y, yt = (_label_ids(path, k, a) for k, a in (("y_train", y), ("y_test", yt)))
    for key, a, rows in (("y_train", y, len(X)), ("y_test", yt, len(Xt))):
        if len(a) != rows:
            raise DataError(f"features file {path}: {key} has {len(a)} labels for {rows} rows (must match)")
    return X, y, Xt, yt


def _label_ids(path, key, y: np.ndarray) -> np.ndarray:
    """Integer label values from 1-D labels or one-hot rows (the column index)."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        if not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
            raise DataError(f"features file {path}: 2-D {key} is not one-hot (allowed: rows of 0/1 with one 1)")
        return y.argmax(axis=1).astype(np.int64)
    if y.ndim != 1 or y.dtype.kind not in "biuf":
        raise DataError(f"features file {path}: {key} has shape {y.shape} and dtype {y.dtype} "
                        f"(allowed: 1-D integer labels or 2-D one-hot)")
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
        bad = y[~(np.isfinite(y) & (y == np.round(y)))][0]
        raise DataError(f"features file {path}: {key} has label {bad} (allowed: integer class values)")
    return y.astype(np.int64)


def _binary_signs(values) -> tuple:
    """(positive, negative) label value: 1 is +1 for {-1, 1} and {0, 1}, else the smaller value (3 of 3 vs 8)."""
    lo, hi = values
    return (hi, lo) if hi == 1 and lo in (-1, 0) else (lo, hi)


def _load_features_dataset(path: Path, classes):
    """A user's file: two label values -> binary +1/-1, more -> ids 0..k-1 in sorted value order."""
    if not path.is_file():
        raise DataError(f"features file {path} not found (allowed: an existing .npz or .pt file)")
    X, y, Xt, yt = _cached(path, _read_features_file)
    values = np.unique(y)
    if classes is not None:
        if not (isinstance(classes, (tuple, list)) and len(classes) == 2 and classes[0] != classes[1]
                and all(c in values for c in classes)):
            raise DataError(f"classes={classes!r} not in features file {path} "
                            f"(allowed: two different label values of y_train: {values.tolist()})")
        a, b = (int(c) for c in classes)
        (X, y), (Xt, yt) = _binary_pair(X, y, a, b), _binary_pair(Xt, yt, a, b)
        return dict(X_train=X, y_train=y, X_test=Xt, y_test=yt, classes=[a, b], num_classes=2)
    return dict(X_train=X, X_test=Xt, **label_targets(y, yt, where=f"features file {path}"))


def label_targets(y: np.ndarray, yt: np.ndarray, *, where: str) -> dict:
    """Training / held-out label values (numbers or strings) -> model targets: two values -> binary +1/-1
    (``_binary_signs`` picks +1), more -> ids 0..k-1 in sorted value order. Returns y_train, y_test,
    classes (the label values in target order: +1 first) and num_classes."""
    values = np.unique(y)
    if len(values) < 2:
        raise DataError(f"{where}: y_train has a single class {values.tolist()} (need at least 2)")
    unseen = np.setdiff1d(np.unique(yt), values)
    if unseen.size:
        raise DataError(f"{where}: y_test has label {unseen[0].item()!r} absent from y_train "
                        f"(allowed: {values.tolist()})")
    if len(values) == 2:
        pos, neg = _binary_signs(values.tolist())
        return dict(y_train=np.where(y == pos, 1.0, -1.0), y_test=np.where(yt == pos, 1.0, -1.0),
                    classes=[pos, neg], num_classes=2)
    return dict(y_train=np.searchsorted(values, y).astype(np.int64),
                y_test=np.searchsorted(values, yt).astype(np.int64), classes=values.tolist(),
                num_classes=len(values))


# ---------------------------------------------------------------- the entry point
def load_dataset(name: str, *, data_dir="data", features=None, classes=None, seed=0, download=True,
                 preprocess=None) -> Dataset:
    """The registered dataset ``name`` (docs/METHOD.md §1.1), or a user's features file under any name.

    ``preprocess(X_train, X_test) -> (X_train, X_test)`` (features files only) runs on the raw features
    before rows are L2-normalised: utils.tabular's bias column and public standardisation."""
    if not isinstance(name, str) or not name:
        raise DataError(f"dataset name {name!r} (allowed: {', '.join(_REGISTRY)}, or any name with features=FILE)")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise DataError(f"seed={seed!r} (allowed: an integer >= 0)")
    data_dir = Path(data_dir)
    if features is not None:
        path = Path(features)
        parts = _load_features_dataset(path, classes)
        parts.update(source=str(path.resolve()), sha256=_cached(path, _file_sha256))
        if preprocess is not None:
            parts["X_train"], parts["X_test"] = preprocess(parts["X_train"], parts["X_test"])
        lam = FEATURES_M / len(parts["X_train"])
        return _make_dataset(name, parts, lam=lam, seed=None)
    s = spec(name)
    parts = s.loader(data_dir=data_dir, classes=check_classes(s, classes), seed=int(seed), download=download)
    parts.setdefault("num_classes", s.num_classes)
    _check_parts(s, parts)
    return _make_dataset(name, parts, lam=s.default_lam, seed=int(seed) if s.seeded else None)


def _check_parts(s: DatasetSpec, parts: dict) -> None:
    """A loader's targets agree with its registration: +1/-1 binary, ids 0..k-1 multiclass."""
    for key in ("y_train", "y_test"):
        y = np.asarray(parts[key])
        ok = (np.isin(y, (-1.0, 1.0)).all() if s.num_classes == 2 else
              y.dtype.kind in "iu" and (y.size == 0 or (y.min() >= 0 and y.max() < s.num_classes)))
        if parts["num_classes"] != s.num_classes or not ok:
            raise DataError(f"the loader of {s.name} returned {key} with values {np.unique(y)[:5].tolist()} "
                            f"(allowed for num_classes={s.num_classes}: "
                            f"{'+1/-1' if s.num_classes == 2 else f'ids 0..{s.num_classes - 1}'})")


def dataset_from_parts(name: str, parts: dict, *, lam: float, seed=None) -> Dataset:
    """A Dataset from raw parts: X_train, y_train, X_test, y_test (targets: +1/-1 float or 0..k-1 int, as
    label_targets makes them), classes, num_classes, source and optionally sha256 (else the arrays' digest)."""
    return _make_dataset(name, parts, lam=lam, seed=seed)


def _make_dataset(name: str, parts: dict, *, lam: float, seed) -> Dataset:
    """Normalise rows, fix dtypes and record the identity used in cache keys."""
    X, Xt = normalize_rows(parts["X_train"]), normalize_rows(parts["X_test"])
    num_classes = parts.get("num_classes", 2 if parts["y_train"].dtype.kind == "f" else len(parts["classes"]))
    dtype = np.float64 if num_classes == 2 else np.int64
    y, yt = (np.asarray(parts[k], dtype=dtype) for k in ("y_train", "y_test"))
    sha = parts.get("sha256") or fingerprint(X, y)
    identity = {"name": name, "classes": [c for c in parts["classes"]], "source": parts["source"],
                "sha256": sha, "n": int(X.shape[0]), "d": int(X.shape[1]), "seed": seed}
    return Dataset(name=name, X_train=X, y_train=y, X_test=Xt, y_test=yt, num_classes=int(num_classes),
                   n=int(X.shape[0]), d=int(X.shape[1]), identity=identity, default_lam=float(lam))
