"""The state folder of ``unlearn.py``: learned chains, current data, constants and the request log.

Layout of ``DIR/``::

    CURRENT            {"version": v}: the committed version (replaced atomically)
    v000001/ ...       one immutable folder per version: state.json, arrays.npz, log.txt
    .lock              held by a running ``remove`` (a dead owner's lock is taken over)

A new version is written under a temporary name, fsynced, renamed into place, and only then does
``CURRENT`` switch to it (``os.replace``), so a process killed at any moment leaves the previous
version committed. Older versions are deleted after the switch, because they still hold the rows that
the new version removed. No torch here: ``status`` and ``export`` never import it.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils import results

SCHEMA_VERSION = 1
POINTER = "CURRENT"
FILES = ("state.json", "arrays.npz", "log.txt")
_VERSION_DIR = re.compile(r"v(\d{6,})$")
# what every committed state.json holds (written by _write_version)
REQUIRED_KEYS = frozenset({"schema_version", "version", "arrays_sha256"})
# ids are stored as int64
_ID_MIN, _ID_MAX = -(2 ** 63), 2 ** 63 - 1


class StateError(ValueError):
    """A state folder that cannot be used, or a request it cannot serve; one line naming the problem."""


@dataclass(frozen=True)
class State:
    """One committed version of a state folder."""

    path: str
    version: int
    meta: dict      # JSON: dataset identity, constants, settings, the request log
    arrays: dict    # numpy: chains, current training data, row ids, held-out data
    log: str        # what learn and every remove printed


# ---------------------------------------------------------------- reading
def _version_dir(path: str, version: int) -> str:
    return os.path.join(path, f"v{version:06d}")


def _meta_digest(meta: dict) -> str:
    """sha256 of state.json's content without this digest: a hand-edited or damaged state.json shows."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(results.json_text(body).encode("utf-8")).hexdigest()


def _current_version(path: str) -> int:
    if not os.path.isdir(path):
        raise StateError(f"state folder {path} does not exist (allowed: a folder made by "
                         f"'unlearn.py learn --state {path}')")
    pointer = os.path.join(path, POINTER)
    try:
        version = int(results.read_json(pointer)["version"])
    except FileNotFoundError:
        raise StateError(f"{path} is not a state folder: it has no {POINTER} file "
                         f"(allowed: a folder made by 'unlearn.py learn')") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StateError(f"state folder {path} is corrupt: {POINTER} is unreadable ({type(exc).__name__})") from None
    return version


def load(path) -> State:
    """The committed version of the state folder; StateError when missing, foreign or corrupt."""
    path = os.path.abspath(path)
    version = _current_version(path)
    folder = _version_dir(path, version)
    try:
        meta = results.read_json(os.path.join(folder, "state.json"))
        with open(os.path.join(folder, "arrays.npz"), "rb") as fh:
            blob = fh.read()
        with open(os.path.join(folder, "log.txt"), encoding="utf-8") as fh:
            log = fh.read()
    except (OSError, ValueError) as exc:
        raise StateError(f"state folder {path} is corrupt: version {version} is unreadable "
                         f"({type(exc).__name__}: {exc})".splitlines()[0]) from None
    if not isinstance(meta, dict) or not REQUIRED_KEYS <= set(meta):
        have = sorted(meta) if isinstance(meta, dict) else type(meta).__name__
        raise StateError(f"state folder {path} is corrupt: state.json of version {version} holds {have} "
                         f"(allowed: an object with {', '.join(sorted(REQUIRED_KEYS))})")
    if "meta_sha256" in meta and meta["meta_sha256"] != _meta_digest(meta):
        raise StateError(f"state folder {path} is corrupt: state.json of version {version} does not match "
                         "its recorded sha256")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise StateError(f"state folder {path} has schema_version {meta.get('schema_version')!r} "
                         f"(allowed: {SCHEMA_VERSION}; it was written by another version of unlearn.py)")
    if hashlib.sha256(blob).hexdigest() != meta.get("arrays_sha256"):
        raise StateError(f"state folder {path} is corrupt: arrays.npz of version {version} does not match "
                         "its recorded sha256")
    arrays = results.read_npz(io.BytesIO(blob))
    return State(path=path, version=version, meta=meta, arrays=arrays, log=log)


# ---------------------------------------------------------------- writing
def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: str, data: bytes) -> None:
    try:
        with open(path, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        if exc.filename is None:  # a write or fsync error names no file
            raise OSError(exc.errno, exc.strerror, path) from None
        raise


def _npz_bytes(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def _write_version(path: str, version: int, meta: dict, arrays: dict, log: str) -> dict:
    """Write version folder ``v<version>`` completely (temporary name, fsync, rename); returns the meta written."""
    blob = _npz_bytes(arrays)
    meta = dict(meta, schema_version=SCHEMA_VERSION, version=version,
                arrays_sha256=hashlib.sha256(blob).hexdigest())
    meta["meta_sha256"] = _meta_digest(meta)
    text = results.json_text(meta)
    tmp = tempfile.mkdtemp(prefix=f".tmp-v{version:06d}-", dir=path)
    os.chmod(tmp, 0o777 & ~results.current_umask())  # mkdtemp's 0700 would hide the state from colleagues
    try:
        _write_file(os.path.join(tmp, "arrays.npz"), blob)
        _write_file(os.path.join(tmp, "log.txt"), log.encode("utf-8"))
        _write_file(os.path.join(tmp, "state.json"), text.encode("utf-8"))
        _fsync_dir(tmp)
        final = _version_dir(path, version)
        if os.path.exists(final):          # left by a run killed before its switch: never committed
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _switch_pointer(path: str, version: int) -> None:
    """The commit point: CURRENT names the new version (atomic rename of a fsynced file)."""
    results.atomic_write_text(os.path.join(path, POINTER), json.dumps({"version": version}) + "\n")
    _fsync_dir(path)


def _stale_entries(path: str, keep: int | None) -> list[str]:
    """Names of every version folder but ``keep`` and every temporary entry: leftovers that may hold removed rows."""
    stale = []
    for name in sorted(os.listdir(path)):
        match = _VERSION_DIR.match(name)
        if (match and int(match.group(1)) != keep) or name.startswith(".tmp-"):
            stale.append(name)
    return stale


def _remove_stale(path: str, keep: int | None) -> list[str]:
    """Delete every version but ``keep`` and every temporary entry (call with the lock held); returns their names.

    An OSError propagates: a deletion that did not happen must not be reported as done.
    """
    stale = _stale_entries(path, keep)
    for name in stale:
        full = os.path.join(path, name)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full)
        else:
            os.unlink(full)
    if stale:
        _fsync_dir(path)
    return stale


def pending(path) -> list[str]:
    """Entries of the state folder awaiting deletion (old versions, temporary entries)."""
    path = os.path.abspath(path)
    return _stale_entries(path, _current_version(path))


def settle(path) -> tuple[list[str], list[str]]:
    """Complete a pending deletion left by a killed ``remove`` (old versions still holding removed rows).

    Any command calls this first. It takes the lock without waiting: with a ``remove`` running, nothing is
    deleted here (that remove deletes them). Returns (deleted, still pending) entry names.
    """
    path = os.path.abspath(path)
    keep = _current_version(path)
    if not _stale_entries(path, keep):
        return [], []
    lock = results.FolderLock(path)
    try:
        lock.acquire()
    except (results.ResultError, OSError):   # a remove holds it, or the folder is read-only
        return [], _stale_entries(path, keep)
    try:
        keep = _current_version(path)
        try:
            return _remove_stale(path, keep), []
        except OSError:
            return [], _stale_entries(path, keep)
    finally:
        lock.release()


def create(path, meta: dict, arrays: dict, log: str) -> State:
    """A new state folder holding version 1; refuses a folder that already has content.

    Written under the folder's lock; the leftovers of a ``learn`` killed before its commit point (no
    CURRENT yet, only temporary or uncommitted version entries) are deleted first.
    """
    path = os.path.abspath(path)
    check_new(path)
    os.makedirs(path, exist_ok=True)
    with results.FolderLock(path):
        check_new(path)                     # a concurrent learn may have committed meanwhile
        _remove_stale(path, keep=None)
        written = _write_version(path, 1, meta, arrays, log)
        _switch_pointer(path, 1)
    return State(path=path, version=1, meta=written, arrays=dict(arrays), log=log)


def commit(previous: State, meta: dict, arrays: dict, log: str) -> State:
    """Replace ``previous`` by a new version atomically (call with the folder's lock held)."""
    version = previous.version + 1
    _remove_stale(previous.path, keep=previous.version)   # leftovers of a killed run
    written = _write_version(previous.path, version, meta, arrays, log)
    _switch_pointer(previous.path, version)
    try:
        _remove_stale(previous.path, keep=version)
    except OSError:
        pass   # committed; pending(path) reports what is left, and the next command of any kind deletes it
    return State(path=previous.path, version=version, meta=written, arrays=dict(arrays), log=log)


def _killed_learn_leftover(name: str) -> bool:
    return name == ".lock" or name.startswith(".tmp-") or bool(_VERSION_DIR.match(name))


def check_new(path) -> None:
    """Raise StateError unless ``path`` can become a new state folder (checked before any work).

    A folder holding only what a killed ``learn`` leaves (no CURRENT: temporary entries, an uncommitted
    version, the lock file) counts as new: learning again deletes those leftovers.
    """
    path = os.path.abspath(path)
    if os.path.exists(path) and (not os.path.isdir(path) or not all(
            _killed_learn_leftover(name) for name in os.listdir(path))):
        what = "a state folder" if os.path.exists(os.path.join(path, POINTER)) else "not empty"
        raise StateError(f"--state {path} exists and is {what} (allowed: a new or empty folder; "
                         "delete it to learn again)")
    results.check_writable(os.path.dirname(path) or ".", "--state folder")


# A remove waits this long for another remove on the same state (they queue: none is refused or lost).
LOCK_WAIT_SECONDS = 3600.0


@contextlib.contextmanager
def locked(path, *, wait: float = LOCK_WAIT_SECONDS, on_wait=None):
    """Hold the state folder's lock (one ``remove`` at a time, the others wait their turn), after
    completing any pending deletion of old versions (they hold rows that a committed request removed).
    ``on_wait()`` is called between polls while another process holds it."""
    path = os.path.abspath(path)
    _current_version(path)            # a clear error for a missing folder first
    with results.FolderLock(path, wait=wait, on_wait=on_wait):
        _remove_stale(path, keep=_current_version(path))
        yield


# ---------------------------------------------------------------- ids
def row_ids(features, n: int) -> np.ndarray:
    """The user's ids of the n training rows: the file's ``ids`` array if it has one, else 0..n-1."""
    path = Path(features)
    ids = None
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as z:
            ids = z["ids"] if "ids" in z.files else None
    else:
        import torch  # only for .pt files, after every flag was checked

        obj = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(obj, dict) and "ids" in obj:
            ids = np.asarray(obj["ids"].cpu().numpy() if isinstance(obj["ids"], torch.Tensor) else obj["ids"])
    if ids is None:
        return np.arange(n, dtype=np.int64)
    ids = np.asarray(ids)
    if ids.shape != (n,) or ids.dtype.kind not in "iuUS":
        raise StateError(f"features file {path}: ids has shape {ids.shape} and dtype {ids.dtype} "
                         f"(allowed: {n} integer or text ids, one per training row)")
    if np.unique(ids).size != n:
        raise StateError(f"features file {path}: id {_first_duplicate(ids)} appears twice in ids "
                         "(allowed: unique ids)")
    return ids.astype(str) if ids.dtype.kind in "US" else ids.astype(np.int64)


def _first_duplicate(ids: np.ndarray):
    order = np.sort(ids, kind="stable")
    return order[np.flatnonzero(order[1:] == order[:-1])[0]].item()


def _parse_int(token: str):
    try:
        return int(token)
    except ValueError:
        return None


_HEADER_WORDS = {"id", "ids", "row", "rows", "index"}


def _file_tokens(path: Path, text_ids: bool, id_name) -> tuple[list[str], str]:
    """Tokens of an ids file and the header line it skipped ('' if none): .npy, or text separated by
    spaces, commas or lines with # comments; a first line that names the column is a header."""
    if path.suffix.lower() == ".npy":
        values = np.load(path, allow_pickle=False).reshape(-1)
        if values.dtype.kind not in ("iuUS" if text_ids else "iu"):
            raise StateError(f"--ids file {path} holds {values.dtype} values (allowed: "
                             f"{'text or integer' if text_ids else 'integer'} ids)")
        return [str(v.item() if isinstance(v, np.generic) else v) for v in values], ""
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise StateError(f"--ids file {path} is not UTF-8 text (allowed: .npy, or UTF-8 text of ids)") from None
    lines = [line.split("#", 1)[0] for line in raw.splitlines()]
    lines = [[t.strip().strip('"').strip("'") for t in re.split(r"[\s,;]+", line) if t.strip()] for line in lines]
    lines = [line for line in lines if line]
    header = ""
    if lines:
        first = lines[0]
        names = _HEADER_WORDS | ({str(id_name).lower()} if id_name is not None else set())
        if (not text_ids and any(_parse_int(t) is None for t in first)) or all(t.lower() in names for t in first):
            header = " ".join(first)
            lines = lines[1:]
    return [t for line in lines for t in line], header


def read_ids(tokens, all_ids=None, *, id_name=None, skipped=None) -> np.ndarray:
    """``--ids`` as users write them: ids separated by spaces or commas on the command line, or one file of
    ids (.npy, or text: spaces, commas or lines, # comments, an optional header line). Integer ids when
    ``all_ids`` (the data's ids) are integers or unknown, else text ids kept as strings and compared exactly.
    A skipped header line is appended to ``skipped`` (a list) so the caller can say so."""
    text_ids = all_ids is not None and np.asarray(all_ids).dtype.kind in "US"
    raw = [str(t) for t in tokens]
    one = raw[0] if len(raw) == 1 else None
    is_id = one is not None and (one in set(np.asarray(all_ids).tolist()) if text_ids else _parse_int(one) is not None)
    if one is not None and not is_id and Path(one).is_file():
        path = Path(one)
        tokens, header = _file_tokens(path, text_ids, id_name)
        if header and skipped is not None:
            skipped.append(header)
        if not tokens:
            raise StateError(f"--ids file {path} holds no ids (allowed: at least one id)")
    else:
        tokens = [t for tok in raw for t in re.split(r"[\s,]+", tok) if t]
        if one is not None and not text_ids and len(tokens) == 1 and not is_id:
            raise StateError(f"--ids {one!r} is neither an integer id nor an existing file "
                             "(allowed: ids, or a file of ids)")
    if not tokens:
        raise StateError("--ids holds no ids (allowed: at least one id)")
    if text_ids:
        ids = np.asarray(tokens, dtype=str)
    else:
        values = []
        for t in tokens:
            value = _parse_int(t)
            if value is None:
                raise StateError(f"--ids value {t[:40]!r} is not an integer id (allowed: integer ids or one file of ids)")
            if not _ID_MIN <= value <= _ID_MAX:
                raise StateError(f"--ids value {t[:40]} is out of range (allowed: 64-bit integer ids)")
            values.append(value)
        ids = np.asarray(values, dtype=np.int64)
    if np.unique(ids).size != ids.size:
        raise StateError(f"id {_first_duplicate(ids)} is given twice in this request (allowed: distinct ids)")
    return ids


def rows_for_ids(all_ids: np.ndarray, removed_by: dict, ids: np.ndarray) -> np.ndarray:
    """Row positions of ``ids`` (integers, or strings compared exactly); StateError for an id not in the
    data or already removed (removed_by: id -> request)."""
    order = np.argsort(all_ids, kind="stable")
    sorted_ids = all_ids[order]
    pos = np.searchsorted(sorted_ids, ids)
    pos = np.minimum(pos, sorted_ids.size - 1)
    missing = ids[sorted_ids[pos] != ids]
    if missing.size:
        if all_ids.dtype.kind in "US":
            raise StateError(f"id {missing[0].item()!r} is not in the data (allowed: text ids of the {all_ids.size} "
                             "training rows, compared exactly: case, spaces and leading zeros count)")
        lo, hi = int(all_ids.min()), int(all_ids.max())
        raise StateError(f"id {int(missing[0])} is not in the data (allowed: ids of the {all_ids.size} "
                         f"training rows, between {lo} and {hi})")
    for i in ids.tolist():
        if i in removed_by:
            raise StateError(f"id {i} was already removed by request {removed_by[i]} "
                             "(allowed: ids not removed yet)")
    return np.sort(order[pos])


def check_fingerprint(state: State, fingerprint: str, source) -> None:
    """StateError unless the features file is the one the state was learned on."""
    expected = state.meta["dataset"]["fingerprint"]
    if fingerprint != expected:
        raise StateError(f"features file {source} has fingerprint {fingerprint[:16]} but state folder {state.path} "
                         f"was learned on data with fingerprint {expected[:16]} (allowed: the file given at learn)")
