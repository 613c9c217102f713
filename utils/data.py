"""Dataset registry: name -> Dataset with L2-normalised rows (docs/METHOD.md §1.1).

No torch or torchvision at import time: the CLI validates names before anything heavy is imported.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import socket
import struct
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

__all__ = ["DATASETS", "DataError", "Dataset", "default_lam", "extract_resnet18_features", "is_multiclass",
           "load_dataset", "normalize_rows", "read_idx"]

PAPER_LAM = 1e-6
# DIGITS has n = 267 (3 vs 8) / 1347 (10 classes) training rows. lam = 1e-4 gives m = lam*n = 0.027 / 0.135,
# inside the 0.01..0.25 of docs/METHOD.md §1.1, with eta*m ~ 0.1 (paper MNIST: 0.046) so K stays in the paper's range, while the
# noiseless test accuracy stays within ~3 points of the unregularised fit (0.93 vs 0.97 binary, 0.90 vs 0.91).
DIGITS_LAM = 1e-4
# A user's own data: m = lam*n = 0.01, the paper's strong convexity (CIFAR10 0.01, MNIST 0.012) whatever n is.
FEATURES_M = 0.01

# ADULT (UCI census income, utils/adult.py): n = 32,561, so the paper's lam gives m = 0.033.
_DEFAULT_LAM = {"MNIST": PAPER_LAM, "FASHION": PAPER_LAM, "FASHION_MULTI": PAPER_LAM, "CIFAR10": PAPER_LAM,
                "CIFAR10_MULTI": PAPER_LAM, "DIGITS": DIGITS_LAM, "DIGITS_MULTI": DIGITS_LAM, "ADULT": PAPER_LAM}
DATASETS = tuple(_DEFAULT_LAM)
_DEFAULT_CLASSES = {"MNIST": (3, 8), "FASHION": (3, 8), "CIFAR10": (3, 8), "DIGITS": (3, 8)}
_NUM_RAW_CLASSES = 10  # every built-in source has classes 0..9

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_IDX_MAGIC = {0x00000803: 3, 0x00000801: 1}  # unsigned bytes; images (N, rows, cols) / labels (N,)
SYSTEM_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
CIFAR_FEATURES_FILE = "features_cifar10_resnet18.npz"
CIFAR_DIR = "cifar-10-batches-py"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FEATURE_KEYS = ("X_train", "y_train", "X_test", "y_test")
NETWORK_TIMEOUT = 10.0  # seconds per connection attempt; an offline machine fails well inside 30 s

_MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
_CIFAR_URLS = ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)
_WEIGHTS_URLS = ("https://download.pytorch.org/models/resnet18-f37072fd.pth",)

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


# ---------------------------------------------------------------- names
def _check_name(name) -> str:
    if name not in _DEFAULT_LAM:
        raise DataError(f"unknown dataset {name!r} (allowed: {', '.join(DATASETS)}, or any name with features=FILE)")
    return name


def is_multiclass(name: str) -> bool:
    """True for the 10-class (softmax) datasets, False for the binary (logistic) ones."""
    return _check_name(name).endswith("_MULTI")


# the feature dimension d of each named dataset (planning with --n loads no data)
_DIMENSIONS = {"MNIST": 784, "FASHION": 784, "FASHION_MULTI": 784, "CIFAR10": 512, "CIFAR10_MULTI": 512,
               "DIGITS": 64, "DIGITS_MULTI": 64}


# training rows of each named dataset with its default classes (what --n stands for when planning)
_TRAIN_ROWS = {"MNIST": 11982, "FASHION": 12000, "FASHION_MULTI": 60000, "CIFAR10": 10000, "CIFAR10_MULTI": 50000,
               "DIGITS": 267, "DIGITS_MULTI": 1347}


def default_n(name: str) -> int:
    """Training rows that loading dataset ``name`` with its default classes gives."""
    return _TRAIN_ROWS[_check_name(name)]


def default_dim(name: str) -> int:
    """The feature dimension d that loading dataset ``name`` gives (784 pixels, 512 ResNet-18 features, 64)."""
    return _DIMENSIONS[_check_name(name)]


def default_lam(name: str) -> float:
    """Default L2 regularisation lambda (m = lambda n): the paper's 1e-6, larger for the small DIGITS data."""
    return _DEFAULT_LAM[_check_name(name)]


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
        if lab.size and lab.max() >= _NUM_RAW_CLASSES:
            raise DataError(f"IDX label file {p} has label {int(lab.max())} (allowed: 0..9)")
    return imgs, labs, timgs, tlabs


# ---------------------------------------------------------------- downloads (torchvision, bounded wait)
def _reachable(urls, timeout: float = NETWORK_TIMEOUT) -> bool:
    """True when a TCP connection to one of the urls' hosts opens within timeout (DNS included)."""
    def probe(url, out):
        u = urlparse(url)
        try:
            socket.create_connection((u.hostname, u.port or (443 if u.scheme == "https" else 80)), timeout).close()
            out.append(True)
        except OSError:
            pass

    for url in urls:
        out: list = []
        t = threading.Thread(target=probe, args=(url, out), daemon=True)  # getaddrinfo ignores timeouts
        t.start()
        t.join(timeout)
        if out:
            return True
    return False


def _download(what: str, urls, fetch) -> str:
    """Run fetch() when the hosts answer, with a socket timeout; '' on success, else the reason it failed."""
    if not _reachable(urls):
        return f"the download of {what} failed (no internet?)"
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(NETWORK_TIMEOUT)
    try:
        fetch()
    except Exception as exc:  # torchvision raises many kinds (URLError, RuntimeError, checksum errors)
        return f"the download of {what} failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    finally:
        socket.setdefaulttimeout(old)
    return ""


def _idx_folder(kind: str, data_dir: Path, download: bool) -> Path:
    """The folder holding MNIST or FashionMNIST IDX files: data_dir, the Debian folder, then torchvision."""
    folders = [data_dir / kind / "raw"] + ([SYSTEM_FASHION_DIR] if kind == "FashionMNIST" else [])
    for folder in folders:
        if _find_idx(folder):
            return folder
    why = "download=False"
    if download:
        def fetch():
            import torchvision
            getattr(torchvision.datasets, kind)(root=str(data_dir), train=True, download=True)
        why = _download(kind, _MNIST_URLS if kind == "MNIST" else _FASHION_URLS, fetch)
        if not why and _find_idx(folders[0]):
            return folders[0]
        why = why or f"torchvision's download left no IDX files in {folders[0]}/"
    names = ", ".join(f + "[.gz]" for f in IDX_FILES)
    where = " nor ".join(f"{f}/" for f in folders)
    raise DataError(f"{kind} files not found in {where} ({names}) and {why}: copy them to {folders[0]}/")


# ---------------------------------------------------------------- the datasets
def _check_classes(name: str, classes):
    """(A, B) for a binary dataset: two different class ids in 0..9."""
    if classes is None:
        return _DEFAULT_CLASSES[name]
    ok = (isinstance(classes, (tuple, list)) and len(classes) == 2
          and all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in classes))
    if not ok or not all(0 <= c < _NUM_RAW_CLASSES for c in classes) or classes[0] == classes[1]:
        raise DataError(f"classes={classes!r} do not exist for {name} "
                        f"(allowed: two different class ids A, B in 0..{_NUM_RAW_CLASSES - 1})")
    return int(classes[0]), int(classes[1])


def _select(name, X, labels, Xt, labels_t, classes):
    """Binary pair (A -> +1, B -> -1) or all classes as int64 ids; returns arrays and the classes list."""
    if is_multiclass(name):
        return X, labels.astype(np.int64), Xt, labels_t.astype(np.int64), list(range(_NUM_RAW_CLASSES))
    a, b = classes
    X, y = _binary_pair(X, labels, a, b)
    Xt, yt = _binary_pair(Xt, labels_t, a, b)
    return X, y, Xt, yt, [a, b]


def _load_idx_dataset(name, data_dir: Path, classes, download):
    kind = "MNIST" if name == "MNIST" else "FashionMNIST"
    folder = _idx_folder(kind, data_dir, download)
    imgs, labs, timgs, tlabs = _read_idx_set(folder)
    # the classes first, then float64 (row by row, so the same values): a binary pair converts only its images
    imgs, y, timgs, yt, cls = _select(name, imgs, labs, timgs, tlabs, classes)
    return dict(X_train=_pixels(imgs, 255.0), y_train=y, X_test=_pixels(timgs, 255.0), y_test=yt, classes=cls,
                source=str(folder))


def _load_digits_dataset(name, classes, seed):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images, labels = load_digits(return_X_y=True)
    keep = np.arange(len(labels)) if is_multiclass(name) else np.flatnonzero(np.isin(labels, classes))
    # seeded stratified 75/25 split; each part then in file order, so the split is all the seed changes
    tr, te = train_test_split(keep, test_size=0.25, random_state=seed, stratify=labels[keep])
    tr, te = np.sort(tr), np.sort(te)
    Xa, y, Xt, yt, cls = _select(name, images[tr], labels[tr], images[te], labels[te], classes)
    return dict(X_train=_pixels(Xa, 16.0), y_train=y, X_test=_pixels(Xt, 16.0), y_test=yt, classes=cls,
                source="sklearn")


def _load_cifar_dataset(name, data_dir: Path, classes, download):
    path = data_dir / CIFAR_FEATURES_FILE
    if not path.is_file():
        _extract_cifar_features(data_dir, path, download)
    X, y, Xt, yt = _cached(path, _read_features_file)
    for lab in (y, yt):
        if not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0 or lab.max() >= _NUM_RAW_CLASSES:
            raise DataError(f"cached CIFAR-10 features {path} have labels outside 0..9: delete the file to rebuild it")
    X, y, Xt, yt, cls = _select(name, X, y, Xt, yt, classes)
    return dict(X_train=X, y_train=y, X_test=Xt, y_test=yt, classes=cls, source=str(path),
                sha256=_cached(path, _file_sha256))


# ---------------------------------------------------------------- CIFAR-10 ResNet-18 features
def extract_resnet18_features(images, *, weights="IMAGENET1K_V1", batch_size=64, device="cpu",
                              model_dir=None, progress=False) -> np.ndarray:
    """ResNet-18 avgpool features (fc removed, eval, no grad) of uint8 NHWC RGB images after
    Resize(224), ToTensor, Normalize(ImageNet mean/std) (docs/METHOD.md §1.1); float32 (N, 512)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"images of dtype {images.dtype} and shape {images.shape} "
                        f"(allowed: uint8 array (N, H, W, 3))")
    if weights not in ("IMAGENET1K_V1", None):
        raise DataError(f"weights={weights!r} (allowed: 'IMAGENET1K_V1' or None for a random initialisation)")
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise DataError(f"batch_size={batch_size!r} (allowed: an integer >= 1)")
    import torch
    import torchvision
    from torchvision.transforms import functional as TF

    model = torchvision.models.resnet18(weights=None)
    if weights is not None:
        w = torchvision.models.ResNet18_Weights[weights]
        model.load_state_dict(w.get_state_dict(progress=progress, model_dir=model_dir))
    model.fc = torch.nn.Identity()
    model.eval().to(device)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    starts = range(0, len(images), batch_size)
    if progress:
        from tqdm import tqdm
        starts = tqdm(starts, desc="ResNet-18 features", unit="batch",  # on a terminal only
                      disable=True if os.environ.get("UNLEARN_NO_PROGRESS") == "1" else None)
    out = []
    with torch.inference_mode():
        for s in starts:
            x = torch.from_numpy(np.ascontiguousarray(images[s:s + batch_size])).to(device).permute(0, 3, 1, 2)
            # resize in uint8 like Resize(224) on a PIL image (rounds to bytes), then ToTensor's / 255
            x = TF.resize(x, 224, interpolation=TF.InterpolationMode.BILINEAR, antialias=True).float() / 255.0
            out.append(model((x - mean) / std).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 512), dtype=np.float32)


def _weights_dir(data_dir: Path) -> Path:
    """torch hub's checkpoint folder when the weights are already there, else data_dir/models."""
    import torch

    hub = Path(torch.hub.get_dir()) / "checkpoints"
    name = Path(urlparse(_WEIGHTS_URLS[0]).path).name
    return hub if (hub / name).is_file() else data_dir / "models"


def _extract_cifar_features(data_dir: Path, path: Path, download: bool):
    """Build data_dir/features_cifar10_resnet18.npz (all 10 classes, raw features) from CIFAR-10 images."""
    hint = (f"copy {CIFAR_DIR}/ into {data_dir}/ and the ResNet-18 weights resnet18-f37072fd.pth into "
            f"{data_dir / 'models'}/, or pass --features FILE (.npz with {', '.join(FEATURE_KEYS)})")
    cifar = data_dir / CIFAR_DIR
    if not cifar.is_dir():
        why = "download=False"
        if download:
            def fetch():
                import torchvision
                torchvision.datasets.CIFAR10(root=str(data_dir), train=True, download=True)
            why = _download("CIFAR-10", _CIFAR_URLS, fetch)
        if why or not cifar.is_dir():
            raise DataError(f"CIFAR-10 features {path} and images {cifar}/ not found and "
                            f"{why or 'the download left no images'}: {hint}")
    model_dir = _weights_dir(data_dir)
    if not (model_dir / Path(urlparse(_WEIGHTS_URLS[0]).path).name).is_file():
        why = "download=False" if not download else _download("ResNet-18 weights", _WEIGHTS_URLS, lambda: None)
        if why:
            raise DataError(f"ResNet-18 ImageNet weights not found in {model_dir}/ and {why}: {hint}")
    import torchvision

    try:
        train = torchvision.datasets.CIFAR10(root=str(data_dir), train=True, download=False)
        test = torchvision.datasets.CIFAR10(root=str(data_dir), train=False, download=False)
    except RuntimeError as exc:
        raise DataError(f"CIFAR-10 images in {cifar}/ are incomplete or corrupt ({exc}): {hint}") from None
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(NETWORK_TIMEOUT)
    try:
        feats = [extract_resnet18_features(part.data, model_dir=str(model_dir), progress=True)
                 for part in (train, test)]
    except OSError as exc:  # the weights download (URLError is an OSError)
        raise DataError(f"ResNet-18 weights download failed ({exc}): {hint}") from None
    finally:
        socket.setdefaulttimeout(old)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez(tmp, X_train=feats[0], y_train=np.asarray(train.targets, dtype=np.int64),
             X_test=feats[1], y_test=np.asarray(test.targets, dtype=np.int64))
    os.replace(tmp, path)  # atomic: an interrupted extraction never leaves a truncated cache


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
    """The named dataset (docs/METHOD.md §1.1), or a user's features file under any name.

    ``preprocess(X_train, X_test) -> (X_train, X_test)`` (features files only) runs on the raw features
    before rows are L2-normalised: utils.tabular's bias column and public standardisation."""
    if not isinstance(name, str) or not name:
        raise DataError(f"dataset name {name!r} (allowed: {', '.join(DATASETS)}, or any name with features=FILE)")
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
    _check_name(name)
    if name == "ADULT":   # fixed labels (income > 50K), encoded by public constants
        if classes is not None:
            raise DataError(f"classes={classes!r} given for ADULT (allowed: none: its labels are income > 50K or not)")
        from utils import adult
        return _make_dataset(name, adult.load_parts(data_dir, download), lam=default_lam(name), seed=None)
    if is_multiclass(name):
        if classes is not None:
            raise DataError(f"classes={classes!r} given for {name} (allowed only for binary datasets: "
                            f"{', '.join(_DEFAULT_CLASSES)})")
    else:
        classes = _check_classes(name, classes)
    if name in ("MNIST", "FASHION", "FASHION_MULTI"):
        parts = _load_idx_dataset(name, data_dir, classes, download)
    elif name in ("CIFAR10", "CIFAR10_MULTI"):
        parts = _load_cifar_dataset(name, data_dir, classes, download)
    else:
        parts = _load_digits_dataset(name, classes, int(seed))
    return _make_dataset(name, parts, lam=default_lam(name), seed=int(seed) if name.startswith("DIGITS") else None)


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
