"""A user's own data: CSV / parquet tables, pandas DataFrames and feature arrays, and the preprocessing
that keeps the certificate true.

The certificate compares the chains with chains retrained without the removed training rows, with the
same preprocessing map. It therefore covers a map that does not depend on the training rows: a
constant bias column, and standardisation whose mean and scale come from the held-out rows or from a
public file. Statistics of the training rows would change when a row is removed, so they are refused.

pandas is imported only when a table is read (``status`` and ``export`` never need it).
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utils import data
from utils.data import DataError

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
ARRAY_SUFFIXES = (".npz", ".pt", ".pth")
DEFAULT_TEST_FRACTION = 0.2
# m = lam n for tables: with standardised columns, a bias column and eps = 1 in K = 10 steps it keeps the chains
# within a few points of the noiseless fit on ordinary tables (breast cancer, penguins, wine), where the papers'
# 0.01 needs so much noise that the chains fall to the majority rate (README: own tables)
TABLE_M = 0.1
# A hint (never a change) when the held-out columns' spreads differ by more than this factor: row
# normalisation then lets the widest columns decide every prediction.
SCALE_HINT_RATIO = 100.0


def is_table(path) -> bool:
    """True for a file name ending in .csv, .tsv, .parquet or .pq (optionally .gz / .zip / .bz2 for text)."""
    name = str(path).lower()
    for ext in (".gz", ".bz2", ".zip", ".xz"):
        if name.endswith(".csv" + ext) or name.endswith(".tsv" + ext):
            return True
    return name.endswith(TABLE_SUFFIXES)


def is_frame(x) -> bool:
    """True for a pandas DataFrame (checked without importing pandas)."""
    return type(x).__name__ == "DataFrame" and type(x).__module__.startswith("pandas")


# ---------------------------------------------------------------- reading
def read_table(path, *, text_columns=()):
    """A CSV / TSV / parquet file as a pandas DataFrame; DataError (one line) when it cannot be read.
    ``text_columns`` are read as text (an id column: "0003" stays "0003")."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"table {path} not found (allowed: an existing .csv, .tsv or .parquet file)")
    import pandas as pd

    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep="\t" if ".tsv" in name else ",", skipinitialspace=True,
                                dtype={c: str for c in text_columns} or None)
    except ImportError as exc:
        raise DataError(f"reading the parquet file {path} needs pyarrow or fastparquet, which are not installed "
                        f"(pip install pyarrow; or save the table as .csv): {exc}".splitlines()[0]) from None
    except Exception as exc:  # pandas raises parser, unicode, OS and zip errors
        raise DataError(f"cannot read table {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise DataError(f"table {path} has no rows or no columns (allowed: a header line, then one row per example)")
    return frame


def _frame(source, what: str, text_columns=()):
    """(DataFrame, description) from a path to a table or a DataFrame."""
    if is_frame(source):
        if source.shape[0] == 0:
            raise DataError(f"{what} DataFrame has no rows")
        return source, f"{what} DataFrame"
    return read_table(source, text_columns=text_columns), f"table {source}"


def _column(frame, col, flag: str, where: str):
    if col not in frame.columns:
        cols = ", ".join(map(str, frame.columns[:20])) + (" ..." if frame.shape[1] > 20 else "")
        raise DataError(f"{flag} {col!r} is not a column of {where} (columns: {cols})")
    return frame[col]


def feature_matrix(frame, columns, where: str) -> np.ndarray:
    """The named columns as float64; DataError naming the first non-numeric or incomplete column."""
    import pandas as pd

    for c in columns:
        s = frame[c]
        if not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
            bad = s[pd.to_numeric(s, errors="coerce").isna() & s.notna()]
            example = f", e.g. {bad.iloc[0]!r}" if len(bad) else ""
            raise DataError(f"column {c!r} of {where} is not numeric (dtype {s.dtype}{example}); allowed: numeric "
                            "feature columns: encode it as numbers, drop it, or name it with --label / --id")
        if s.isna().any():
            raise DataError(f"column {c!r} of {where} has {int(s.isna().sum())} missing value(s) "
                            "(allowed: complete numeric columns: fill them, or --dropna to drop incomplete rows)")
    X = frame[list(columns)].to_numpy(dtype=np.float64)
    if not np.isfinite(X).all():
        c = columns[int(np.flatnonzero(~np.isfinite(X).all(axis=0))[0])]
        raise DataError(f"column {c!r} of {where} contains inf (allowed: finite values)")
    return X


def _labels(series, where: str) -> np.ndarray:
    """Label values as a numpy array of numbers or of strings (never objects)."""
    if series.isna().any():
        raise DataError(f"label column {series.name!r} of {where} has {int(series.isna().sum())} missing value(s) "
                        "(allowed: a label on every row; --dropna drops incomplete rows)")
    values = series.to_numpy()
    if values.dtype.kind in "biuf":
        if values.dtype.kind == "f":
            frac = values[values != np.round(values)]
            if frac.size:
                raise DataError(f"label column {series.name!r} of {where} has value {frac[0].item()!r} (allowed: class "
                                "labels: integers or text; a regression target is not a class)")
            values = values.astype(np.int64)
        return values
    return values.astype(str)


_PLAIN_INT = re.compile(r"-?(0|[1-9][0-9]*)")


def id_values(values, where: str) -> np.ndarray:
    """Row ids as int64 (integers) or unicode strings, unique; DataError otherwise."""
    values = np.asarray(values)
    if values.dtype.kind == "f" and np.isfinite(values).all() and (values == np.round(values)).all():
        values = values.astype(np.int64)
    if values.dtype.kind in "iub":
        values = values.astype(np.int64)
    elif values.dtype.kind in "OUS":
        if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in values.tolist()):
            raise DataError(f"{where} has a missing id (allowed: an id on every row; --dropna drops incomplete rows)")
        values = values.astype(str)
        # integers written plainly are integer ids; "0003", "+3" or " 3" are text and stay as written
        if values.size and all(_PLAIN_INT.fullmatch(v) for v in values.tolist()) and all(
                -(2 ** 63) <= int(v) < 2 ** 63 for v in values.tolist()):
            values = values.astype(np.int64)
    else:
        raise DataError(f"{where} has ids of dtype {values.dtype} (allowed: integer or text ids)")
    uniq, counts = np.unique(values, return_counts=True)
    if (counts > 1).any():
        raise DataError(f"{where}: id {uniq[counts > 1][0].item()!r} appears twice (allowed: unique ids)")
    return values


@dataclass(frozen=True)
class TableSplit:
    """A table cut into training and held-out rows: raw features, raw label values, training row ids."""
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    ids: np.ndarray
    columns: list
    how: str                # one line: where the held-out rows come from
    notes: tuple = ()       # warnings about the columns
    ids_test: np.ndarray | None = None   # the held-out rows' ids, when they have some


def id_like_columns(columns) -> list:
    """Feature columns whose names suggest row identifiers (an id or a saved index used as a feature)."""
    return [c for c in columns if str(c).lower() in ("id", "ids", "index", "row", "row_id")
            or str(c).lower().endswith("_id") or str(c).startswith("Unnamed:")]


def split_table(frame, *, label, id_col=None, test=None, test_fraction=None, split_seed: int = 0,
                where: str = "the table") -> TableSplit:
    """Training / held-out rows of a DataFrame: ``test`` (a DataFrame with the same columns) or a seeded
    stratified split of ``test_fraction`` of the rows (default 0.2); every column but the label and the
    id is a feature and must be numeric. Ids: the id column, else the DataFrame's index (a CSV's row
    number, 0 = first data row)."""
    y_all = _labels(_column(frame, label, "--label", where), where)
    if id_col is not None:
        ids_all = id_values(_column(frame, id_col, "--id", where).to_numpy(), f"--id column {id_col!r} of {where}")
    else:
        ids_all = id_values(frame.index.to_numpy(), f"the index of {where}")
    columns = [c for c in frame.columns if c != label and c != id_col]
    if not columns:
        raise DataError(f"{where} has no feature column besides --label {label!r} (allowed: numeric feature columns)")
    X_all = feature_matrix(frame, columns, where)
    suspicious = id_like_columns(columns)
    notes = tuple(f"warning: column {c!r} looks like a row id or a saved index but is used as a feature "
                  "(name it with --id, or drop it)" for c in suspicious)
    if test is not None:
        if test_fraction is not None:
            raise DataError("give --test FILE or --test_fraction F, not both")
        test_frame, test_where = _frame(test, "held-out", text_columns=() if id_col is None else (id_col,))
        for c in columns + [label]:
            _column(test_frame, c, "held-out column", test_where)
        ids_test = (id_values(test_frame[id_col].to_numpy(), f"--id column {id_col!r} of {test_where}")
                    if id_col is not None and id_col in test_frame.columns else None)
        return TableSplit(X_all, y_all, feature_matrix(test_frame, columns, test_where),
                          _labels(test_frame[label], test_where), ids_all, columns, f"held-out rows: {test_where}",
                          notes, ids_test)
    fraction = DEFAULT_TEST_FRACTION if test_fraction is None else float(test_fraction)
    if not 0.0 < fraction < 1.0:
        raise DataError(f"--test_fraction {test_fraction} is not allowed (allowed: 0 < F < 1)")
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(y_all))
    _, counts = np.unique(y_all, return_counts=True)
    n_test = int(np.ceil(fraction * len(rows)))
    stratify = y_all if counts.min() >= 2 and n_test >= len(counts) and len(rows) - n_test >= len(counts) else None
    try:
        tr, te = train_test_split(rows, test_size=fraction, random_state=int(split_seed), stratify=stratify)
    except ValueError as exc:
        raise DataError(f"cannot hold out {fraction:g} of the {len(rows)} rows of {where}: {exc}".splitlines()[0]) from None
    tr, te = np.sort(tr), np.sort(te)   # each part in file order: the seed decides only the split
    how = (f"held-out rows: {len(te)} of {len(rows)} ({fraction:g}, "
           f"{'stratified ' if stratify is not None else ''}split seed {split_seed})")
    return TableSplit(X_all[tr], y_all[tr], X_all[te], y_all[te], ids_all[tr], columns, how, notes, ids_all[te])


# ---------------------------------------------------------------- preprocessing
def standardisation(X_source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, scale) per column of public rows; scale = standard deviation, 1 where a column is constant."""
    X_source = np.asarray(X_source, dtype=np.float64)
    if X_source.ndim != 2 or X_source.shape[0] < 2:
        raise DataError(f"standardisation needs at least 2 rows of statistics, got shape {X_source.shape}")
    mean, scale = X_source.mean(axis=0), X_source.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return mean, scale


@dataclass(frozen=True)
class Preprocessing:
    """The map applied to every row before L2 normalisation: (x - mean) / scale, then a constant column.

    It never depends on the training rows, so the certificate covers it (see the module docstring)."""
    bias: float = 0.0
    mean: np.ndarray | None = field(default=None, repr=False)
    scale: np.ndarray | None = field(default=None, repr=False)
    stats_from: str = ""     # "" (no standardisation), "held-out rows" or "public file PATH"

    def apply(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if self.mean is not None:
            X = (X - self.mean) / self.scale
        if self.bias:
            X = np.concatenate([X, np.full((X.shape[0], 1), float(self.bias))], axis=1)
        return X

    def describe(self) -> str:
        steps = []
        if self.mean is not None:
            steps.append(f"columns standardised with mean and scale from the {self.stats_from}")
        if self.bias:
            steps.append(f"a constant bias column {self.bias:g} appended")
        if not steps:
            return "preprocessing: none (no bias column, no standardisation); rows L2-normalised"
        return ("preprocessing: " + "; ".join(steps) + "; then rows L2-normalised. The certificate covers it: "
                "this map uses no training row, so removing one leaves it unchanged")

    def to_json(self) -> dict:
        return {"bias": float(self.bias), "standardize": self.stats_from or "none"}

    def arrays(self) -> dict:
        """What a deployed model needs to preprocess new rows (export)."""
        out = {"bias": np.asarray(float(self.bias))}
        if self.mean is not None:
            out.update(standardize_mean=self.mean, standardize_scale=self.scale)
        return out


def public_statistics(path, columns, d: int) -> np.ndarray:
    """Rows of a public file for standardisation: a table (the feature columns by name) or an array file
    (.npy, or .npz with array X) with d columns."""
    path = Path(path)
    if is_table(path):
        frame = read_table(path)
        for c in columns or []:
            _column(frame, c, "feature column", f"public file {path}")
        if columns is None:
            raise DataError(f"--standardize {path}: a table needs the feature columns' names (give an .npy / .npz "
                            f"with array X of {d} columns for a features file)")
        return feature_matrix(frame, columns, f"public file {path}")
    if not path.is_file():
        raise DataError(f"--standardize {path} is not a file (allowed: test, none, or a public .csv / .parquet / "
                        ".npy / .npz file)")
    try:
        obj = np.load(path, allow_pickle=False)
        X = obj if isinstance(obj, np.ndarray) else obj["X"]
    except Exception as exc:
        raise DataError(f"cannot read public file {path} (allowed: a table, .npy, or .npz with array X): "
                        f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != d or X.dtype.kind not in "biuf" or not np.isfinite(X).all():
        raise DataError(f"public file {path} holds shape {X.shape} dtype {X.dtype} (allowed: finite numbers, "
                        f"{d} columns)")
    return X


def make_preprocessing(*, bias: float, standardize, X_test: np.ndarray, columns=None) -> Preprocessing:
    """The preprocessing the user named: standardize is 'none', 'test' (held-out rows) or a public file."""
    if not (isinstance(bias, (int, float)) and np.isfinite(bias) and bias >= 0):
        raise DataError(f"--bias {bias!r} is not allowed (allowed: a constant >= 0; 0 for no bias column)")
    if standardize in (None, "none"):
        return Preprocessing(bias=float(bias))
    if standardize in ("train", "training"):
        raise DataError("--standardize train is not allowed: statistics of the training rows change when a row is "
                        "removed, so no certificate would cover them (allowed: test, none, or a public file)")
    if standardize == "test":
        mean, scale = standardisation(X_test)
        return Preprocessing(float(bias), mean, scale, f"{len(X_test)} held-out rows")
    mean, scale = standardisation(public_statistics(standardize, columns, X_test.shape[1]))
    return Preprocessing(float(bias), mean, scale, f"public file {Path(standardize).resolve()}")


def scale_hint(X_test: np.ndarray, prep: Preprocessing) -> str:
    """A one-line hint when columns differ widely in spread and nothing standardises them ('' otherwise)."""
    if prep.mean is not None or len(X_test) < 2:
        return ""
    spread = np.asarray(X_test, dtype=np.float64).std(axis=0)
    spread = spread[spread > 0]
    if spread.size < 2 or spread.max() / spread.min() < SCALE_HINT_RATIO:
        return ""
    return (f"hint: the held-out columns' spreads differ by {spread.max() / spread.min():.3g}x; after row "
            "normalisation the widest columns dominate: --standardize test (or a public file) usually helps")


# ---------------------------------------------------------------- one entry point for every input
@dataclass(frozen=True)
class Loaded:
    """A user's data ready to learn on: the Dataset (rows preprocessed and L2-normalised), the training
    rows' ids, the preprocessing, and the options that read it again (stored in the state)."""
    dataset: data.Dataset
    ids: np.ndarray
    preprocessing: Preprocessing
    options: dict
    raw_test: np.ndarray = field(repr=False)
    notes: tuple = ()
    ids_test: np.ndarray | None = None     # held-out rows' ids (tables): remove names them as held out


def _frame_sha256(frame) -> str:
    import pandas as pd

    h = hashlib.sha256()
    h.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    h.update(repr([str(c) for c in frame.columns]).encode())
    return h.hexdigest()


def drop_incomplete(frame, where: str):
    """(frame without the rows that miss a value, a note saying how many went; '' when none did)."""
    complete = frame.notna().all(axis=1)
    dropped = int((~complete).sum())
    if not dropped:
        return frame, ""
    if dropped == len(frame):
        raise DataError(f"--dropna: every one of the {len(frame)} rows of {where} misses a value (allowed: a table "
                        "with complete rows)")
    gaps = frame.columns[frame.isna().any()].tolist()
    cols = ", ".join(map(str, gaps[:5])) + (" ..." if len(gaps) > 5 else "")
    return frame[complete], (f"--dropna: dropped {dropped} of {len(frame)} rows of {where} that miss a value "
                             f"(in {cols}); {int(complete.sum())} rows kept")


def load(source, *, name=None, label=None, id_col=None, test=None, test_fraction=None, split_seed: int = 0,
         bias=None, standardize=None, lam=None, dropna: bool = False) -> Loaded:
    """Read a user's data: a table file or DataFrame (needs ``label``), or a features file (.npz / .pt).

    Defaults by input: a table gets a bias column 1, standardisation from its held-out rows and
    m = lam n = TABLE_M; a features file no bias column, no standardisation and m = data.FEATURES_M (its
    rows are often already scaled, and the papers' scripts use that m). ``dropna`` drops table rows that
    miss a value (a note counts them) instead of refusing the first incomplete column."""
    frame_input = is_frame(source)
    table = frame_input or is_table(source)
    if standardize is None:
        standardize = "test" if table else "none"
    options = {"label": label, "id": id_col, "test": None if test is None or not isinstance(test, (str, Path))
               else str(Path(test).resolve()), "test_fraction": test_fraction, "split_seed": int(split_seed),
               "standardize": standardize if standardize in ("none", "test") else str(Path(standardize).resolve()),
               "dropna": bool(dropna)}
    if table:
        if label is None:
            raise DataError(f"{'the DataFrame' if frame_input else f'table {source}'} needs --label COL, the column "
                            "holding the labels")
        frame, where = _frame(source, "training", text_columns=() if id_col is None else (id_col,))
        dropped = []
        if dropna:
            frame, note = drop_incomplete(frame, where)
            dropped.append(note)
            if test is not None:
                test_frame, test_where = _frame(test, "held-out", text_columns=() if id_col is None else (id_col,))
                test, note = drop_incomplete(test_frame, test_where)
                dropped.append(note)
        parts = split_table(frame, label=label, id_col=id_col, test=test, test_fraction=test_fraction,
                            split_seed=split_seed, where=where)
        parts = dataclasses.replace(parts, notes=tuple(n for n in dropped if n) + parts.notes)
        bias = 1.0 if bias is None else bias
        prep = make_preprocessing(bias=bias, standardize=standardize, X_test=parts.X_test, columns=parts.columns)
        targets = data.label_targets(parts.y_train, parts.y_test, where=where)
        sha = _frame_sha256(frame) if frame_input else data._cached(Path(source), data._file_sha256)
        raw = dict(X_train=prep.apply(parts.X_train), X_test=prep.apply(parts.X_test), **targets,
                   source="DataFrame" if frame_input else str(Path(source).resolve()), sha256=sha)
        n = len(parts.y_train)
        lam = TABLE_M / n if lam is None else lam
        ds = data.dataset_from_parts(name or ("DataFrame" if frame_input else Path(source).stem), raw, lam=lam)
        options.update(kind="table", columns=[str(c) for c in parts.columns], bias=float(bias))
        return Loaded(ds, parts.ids, prep, options, parts.X_test, (parts.how,) + parts.notes, parts.ids_test)
    for flag, value in (("--label", label), ("--id", id_col), ("--test", test), ("--test_fraction", test_fraction),
                        ("--dropna", dropna or None)):
        if value is not None:
            raise DataError(f"{flag} is for tables (.csv, .tsv, .parquet); features file {source} already holds "
                            f"{', '.join(data.FEATURE_KEYS)} and optional ids")
    from utils import state as statefile

    bias = 0.0 if bias is None else bias
    held = {}

    def preprocess(X, Xt):
        held["prep"] = make_preprocessing(bias=bias, standardize=standardize, X_test=Xt)
        held["raw_test"] = np.asarray(Xt, dtype=np.float64)
        return held["prep"].apply(X), held["prep"].apply(Xt)

    ds = data.load_dataset(name or Path(source).stem, features=source, preprocess=preprocess)
    if lam is not None:
        ds = data.Dataset(**{**ds.__dict__, "default_lam": float(lam)})
    options.update(kind="features", bias=float(bias))
    return Loaded(ds, statefile.row_ids(source, ds.n), held["prep"], options, held["raw_test"])


def reload(options: dict, name: str, features) -> data.Dataset:
    """The Dataset a state learned on, read again from ``features`` with the options stored at learn."""
    if options.get("kind") == "table" and not is_table(features):
        raise DataError(f"--features {features}: this state learned on a table (allowed: the same .csv / .parquet)")
    kw = {k: options.get(k) for k in ("label", "test", "test_fraction", "standardize", "bias")}
    kw["dropna"] = bool(options.get("dropna", False))
    kw["id_col"] = options.get("id")
    kw["split_seed"] = options.get("split_seed", 0)
    return load(features, name=name, **kw).dataset
