"""The UCI Adult data set (census income > 50K, binary), read from its original files.

Files: ``adult.data`` (32,561 training rows) and ``adult.test`` (16,281 held-out rows; first line
``|1x3 Cross validator``, labels with a trailing dot), comma-separated, no header, ``?`` for a missing
value. Features (no training row decides any of them, so a removal never changes the encoding):
- categorical columns one-hot over the category lists published in ``adult.names`` (a missing value
  is the all-zero group);
- numeric columns divided by fixed round constants chosen from the columns' meaning, not from the data;
- a constant bias column 1.
Rows are then L2-normalised like every dataset (utils.data).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

FOLDER = "adult"
FILES = ("adult.data", "adult.test")
URLS = ("https://archive.ics.uci.edu/ml/machine-learning-databases/adult/",)
COLUMNS = ("age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
           "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country",
           "income")
NUMERIC_SCALE = {"age": 100.0, "fnlwgt": 1e6, "education-num": 16.0, "capital-gain": 1e5, "capital-loss": 1e4,
                 "hours-per-week": 100.0}
CATEGORIES = {
    "workclass": ("Private", "Self-emp-not-inc", "Self-emp-inc", "Federal-gov", "Local-gov", "State-gov",
                  "Without-pay", "Never-worked"),
    "education": ("Bachelors", "Some-college", "11th", "HS-grad", "Prof-school", "Assoc-acdm", "Assoc-voc", "9th",
                  "7th-8th", "12th", "Masters", "1st-4th", "10th", "Doctorate", "5th-6th", "Preschool"),
    "marital-status": ("Married-civ-spouse", "Divorced", "Never-married", "Separated", "Widowed",
                       "Married-spouse-absent", "Married-AF-spouse"),
    "occupation": ("Tech-support", "Craft-repair", "Other-service", "Sales", "Exec-managerial", "Prof-specialty",
                   "Handlers-cleaners", "Machine-op-inspct", "Adm-clerical", "Farming-fishing", "Transport-moving",
                   "Priv-house-serv", "Protective-serv", "Armed-Forces"),
    "relationship": ("Wife", "Own-child", "Husband", "Not-in-family", "Other-relative", "Unmarried"),
    "race": ("White", "Asian-Pac-Islander", "Amer-Indian-Eskimo", "Other", "Black"),
    "sex": ("Female", "Male"),
    "native-country": ("United-States", "Cambodia", "England", "Puerto-Rico", "Canada", "Germany",
                       "Outlying-US(Guam-USVI-etc)", "India", "Japan", "Greece", "South", "China", "Cuba", "Iran",
                       "Honduras", "Philippines", "Italy", "Poland", "Jamaica", "Vietnam", "Mexico", "Portugal",
                       "Ireland", "France", "Dominican-Republic", "Laos", "Ecuador", "Taiwan", "Haiti", "Columbia",
                       "Hungary", "Guatemala", "Nicaragua", "Scotland", "Thailand", "Yugoslavia", "El-Salvador",
                       "Trinadad&Tobago", "Peru", "Hong", "Holand-Netherlands"),
}
POSITIVE, NEGATIVE = ">50K", "<=50K"
BIAS = 1.0


def feature_names() -> list[str]:
    """Names of the encoded columns, in order: numeric, one-hot groups, bias."""
    names = []
    for col in COLUMNS[:-1]:
        names += [col] if col in NUMERIC_SCALE else [f"{col}={v}" for v in CATEGORIES[col]]
    return names + ["bias"]


def encode_rows(rows: list[list[str]], where: str):
    """(X float64, y +1/-1) from parsed rows of 15 fields; ValueError naming an unknown category."""
    from utils.data import DataError

    index = {col: {v: i for i, v in enumerate(CATEGORIES[col])} for col in CATEGORIES}
    X = np.zeros((len(rows), len(feature_names())))
    y = np.empty(len(rows))
    for r, (line_no, fields) in enumerate(rows):
        j = 0
        for col, value in zip(COLUMNS[:-1], fields):
            if col in NUMERIC_SCALE:
                try:
                    X[r, j] = float(value) / NUMERIC_SCALE[col]
                except ValueError:
                    raise DataError(f"{where} line {line_no}: {col} = {value!r} is not a number") from None
                j += 1
                continue
            if value != "?":
                if value not in index[col]:
                    raise DataError(f"{where} line {line_no}: {col} = {value!r} is not one of adult.names' "
                                    f"{len(CATEGORIES[col])} categories")
                X[r, j + index[col][value]] = 1.0
            j += len(CATEGORIES[col])
        X[r, j] = BIAS
        label = fields[-1].rstrip(".")
        if label not in (POSITIVE, NEGATIVE):
            raise DataError(f"{where} line {line_no}: income = {fields[-1]!r} (allowed: {POSITIVE}, {NEGATIVE})")
        y[r] = 1.0 if label == POSITIVE else -1.0
    return X, y


def read_file(path: Path) -> list:
    """[(line number, 15 stripped fields)] of an original Adult file; skips blank and '|' comment lines."""
    from utils.data import DataError

    rows = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            line = line.strip()
            if not line or line.startswith("|"):
                continue
            fields = [f.strip() for f in line.split(",")]
            if len(fields) != len(COLUMNS):
                raise DataError(f"Adult file {path} line {line_no} has {len(fields)} fields "
                                f"(allowed: {len(COLUMNS)}, the UCI format: {', '.join(COLUMNS)})")
            rows.append((line_no, fields))
    if not rows:
        raise DataError(f"Adult file {path} holds no rows")
    return rows


def _fetch(folder: Path) -> None:
    import urllib.request

    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        tmp = folder / f".{name}.tmp{os.getpid()}"
        try:
            with urllib.request.urlopen(URLS[0] + name) as resp, open(tmp, "wb") as fh:
                fh.write(resp.read())
            os.replace(tmp, folder / name)          # atomic: never a truncated file under the real name
        finally:
            if tmp.exists():
                tmp.unlink()


def load_parts(data_dir: Path, download: bool) -> dict:
    """Dataset parts (utils.data) from data_dir/adult/, downloading the two files when missing and allowed."""
    from utils import data, downloads

    folder = Path(data_dir) / FOLDER
    if not all((folder / f).is_file() for f in FILES):
        why = "download=False"
        if download:
            why = downloads.download("Adult", URLS, lambda: _fetch(folder))
        if why or not all((folder / f).is_file() for f in FILES):
            raise data.DataError(f"Adult files {' and '.join(FILES)} not found in {folder}/ and "
                                 f"{why or 'the download left no files'}: copy them from {URLS[0]} to {folder}/")
    (X, y), (Xt, yt) = (encode_rows(read_file(folder / f), f"Adult file {folder / f}") for f in FILES)
    return dict(X_train=X, y_train=y, X_test=Xt, y_test=yt, classes=[POSITIVE, NEGATIVE], num_classes=2,
                source=str(folder))
