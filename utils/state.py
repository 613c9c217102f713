"""The state folder of ``unlearn.py``: learned chains, current data, constants and the request log.

Layout of ``DIR/`` (owner-only, mode 0700: it holds the secret noise seed, KEY and the training rows)::

    CURRENT            {"version": v}: the committed version (replaced atomically)
    KEY                the state's secret key (32 random bytes, hex; mode 0600): seals the history
    v000001/ ...       one immutable folder per version: state.json, arrays.npz, log.txt
    .lock              held by a running ``remove`` (a dead owner's lock is taken over)

A new version is written under a temporary name, fsynced, renamed into place, and only then does
``CURRENT`` switch to it (``os.replace``), so a process killed at any moment leaves the previous
version committed. Older versions are deleted after the switch, because they still hold the rows that
the new version removed. No torch here: ``status`` and ``export`` never import it.

Tamper evidence: state.json carries ``history``, one entry per version since learn (event, number of
requests, the sha256 of the arrays and of log.txt), each sealed by an HMAC-SHA256 under KEY that covers the previous entry's
seal, the constants, settings and dataset identity, and the request records that version added. Loading
recomputes every seal and checks every value for consistency (shapes, finiteness, counts, the request log
against the versions), so an edit by anyone without KEY, or an accident, is refused with one line instead of
certified. Whoever can read KEY (its owner, root, anyone given a copy of the folder) can write any state that
passes: the owner is trusted, so the seal is an integrity check, not a signature a third party could check.
A whole older copy of a state folder put back in place is not detected (its removed rows are that copy's to
delete). KEY is not derived from the noise seed: the seed lives in state.json, in the same folder, and is
itself covered by the seal.
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import math
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from utils import results

SCHEMA_VERSION = 2
OLD_SCHEMA = 1           # written before the sealed history: accepted only by verify --trust-existing
POINTER = "CURRENT"
KEY = "KEY"
FILES = ("state.json", "arrays.npz", "log.txt")
EVENTS = ("learn", "request", "trusted")
_VERSION_DIR = re.compile(r"v(\d{6,})$")
_HEX64 = re.compile(r"[0-9a-f]{64}$")
# what every committed state.json holds (written by _write_version)
REQUIRED_KEYS = frozenset({"schema_version", "version", "arrays_sha256", "history", "requests"})
# state.json's fields that the history entries describe themselves; every other field is sealed whole
_CHAIN_FIELDS = frozenset({"schema_version", "version", "arrays_sha256", "history", "requests", "meta_sha256"})
# ids are stored as int64
_ID_MIN, _ID_MAX = -(2 ** 63), 2 ** 63 - 1


class StateError(ValueError):
    """A state folder that cannot be used, or a request it cannot serve; one line naming the problem."""


@dataclass(frozen=True)
class State:
    """One committed version of a state folder."""

    path: str
    version: int
    meta: dict      # JSON: dataset identity, constants, settings, the request log, the sealed history
    arrays: dict    # numpy: chains, current training data, row ids, held-out data
    log: str        # what learn and every remove printed


# ---------------------------------------------------------------- the seal
def _canonical(obj) -> bytes:
    """One byte string per JSON value (sorted keys, no spaces): what the seals cover."""
    return json.dumps(results.to_jsonable(obj), sort_keys=True, separators=(",", ":"), allow_nan=False,
                      ensure_ascii=True).encode("ascii")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _common_digest(meta: dict) -> str:
    """sha256 of every state.json field the history entries do not describe (dataset, constants, settings, ...)."""
    return _sha(_canonical({k: v for k, v in meta.items() if k not in _CHAIN_FIELDS}))


def _seal(key: bytes, *, previous: str, entry: dict, added: list, common: str) -> str:
    """HMAC-SHA256 of one history entry: it covers the previous entry's seal (a chain), the entry, the request
    records this version added and every other field of state.json."""
    body = {"previous": previous, "entry": {k: v for k, v in entry.items() if k != "mac"},
            "added": _sha(_canonical(added)), "common": common}
    return hmac.new(key, b"unlearn.py state history 2\n" + _canonical(body), hashlib.sha256).hexdigest()


def _old_meta_digest(meta: dict) -> str:
    """The bare sha256 that schema-1 states carried (meta_sha256): checked once by trust_existing."""
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return _sha(results.json_text(body).encode("utf-8"))


# ---------------------------------------------------------------- reading
def _version_dir(path: str, version: int) -> str:
    return os.path.join(path, f"v{version:06d}")


def _corrupt(path: str, what: str) -> StateError:
    return StateError(f"state folder {path} is corrupt: {what}")


def _check_no_links(path: str) -> None:
    """A symbolic link inside a state folder is refused: deleting a version would delete the link and leave
    its target (with the removed rows), and writing would go through it."""
    for name in sorted(os.listdir(path)):
        if os.path.islink(os.path.join(path, name)):
            raise StateError(f"state folder {path}: {name} is a symbolic link (allowed: only real files and "
                             "folders; writing or deleting through a link touches its target, where a removed row "
                             "would survive: move the whole state folder instead, or put the target in place of "
                             "the link)")


def _current_version(path: str) -> int:
    if not os.path.isdir(path):
        raise StateError(f"state folder {path} does not exist (allowed: a folder made by "
                         f"'unlearn.py learn --state {path}')")
    _check_no_links(path)
    pointer = os.path.join(path, POINTER)
    try:
        raw = results.read_bytes(pointer)
    except FileNotFoundError:
        raise StateError(f"{path} is not a state folder: it has no {POINTER} file "
                         f"(allowed: a folder made by 'unlearn.py learn')") from None
    except OSError as exc:
        raise _corrupt(path, f"{POINTER} is unreadable ({exc.strerror or type(exc).__name__})") from None
    try:
        pointed = json.loads(raw.decode("utf-8"))
    except ValueError:
        pointed = None
    if not (isinstance(pointed, dict) and set(pointed) == {"version"} and type(pointed["version"]) is int
            and pointed["version"] >= 1):
        raise _corrupt(path, f"{POINTER} holds {raw[:60].decode('utf-8', 'replace').strip()!r} (allowed: "
                             '{"version": N} with a whole number N >= 1, as unlearn.py writes it)')
    version = pointed["version"]
    if not os.path.isdir(_version_dir(path, version)):
        raise _corrupt(path, f"{POINTER} names version {version} but {os.path.basename(_version_dir(path, version))} "
                             "is not a folder there")
    return version


def _read_key(path: str) -> bytes:
    try:
        text = results.read_bytes(os.path.join(path, KEY)).decode("ascii").strip()
    except FileNotFoundError:
        raise StateError(f"state folder {path} has no {KEY} file, so its history cannot be checked and nothing in "
                         "it is certified (allowed: a state folder made by unlearn.py learn, with its KEY)") from None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise _corrupt(path, f"its {KEY} file is unreadable ({why})") from None
    if not _HEX64.match(text):
        raise _corrupt(path, f"its {KEY} file does not hold a key (allowed: 64 hex digits, as learn wrote it)")
    return bytes.fromhex(text)


def _read_version(path: str, version: int) -> tuple[dict, bytes, str]:
    folder = _version_dir(path, version)
    try:
        meta = json.loads(results.read_bytes(os.path.join(folder, "state.json")).decode("utf-8"))
        blob = results.read_bytes(os.path.join(folder, "arrays.npz"))
        log = results.read_bytes(os.path.join(folder, "log.txt")).decode("utf-8")
    except (OSError, ValueError) as exc:
        why = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and exc.strerror else \
            f"{type(exc).__name__}: {exc}"
        raise _corrupt(path, f"version {version} is unreadable ({why})".splitlines()[0]) from None
    if not isinstance(meta, dict):
        raise _corrupt(path, f"state.json of version {version} holds {type(meta).__name__} (allowed: an object)")
    return meta, blob, log


def _arrays(path: str, version: int, meta: dict, blob: bytes) -> dict:
    if _sha(blob) != meta.get("arrays_sha256"):
        raise _corrupt(path, f"arrays.npz of version {version} does not match its recorded sha256")
    try:
        return results.read_npz(io.BytesIO(blob))
    except Exception as exc:  # numpy / zipfile raise many types
        raise _corrupt(path, f"arrays.npz of version {version} is unreadable ({type(exc).__name__})") from None


def _verify_history(path: str, key: bytes, meta: dict, version: int) -> None:
    """Every entry of the history well formed, consecutive, consistent with the request log, and sealed."""
    history, requests = meta.get("history"), meta.get("requests")

    def bad(what):
        return _corrupt(path, f"{what} (allowed: the history unlearn.py wrote; an edited state is never certified)")

    if not isinstance(requests, list) or not all(isinstance(r, dict) for r in requests):
        raise bad("its request log is not a list of records")
    if not isinstance(history, list) or not history:
        raise bad("its history is missing or empty")
    for i, e in enumerate(history):
        if not (isinstance(e, dict) and type(e.get("version")) is int and e.get("event") in EVENTS
                and type(e.get("requests")) is int and e["requests"] >= 0
                and isinstance(e.get("arrays_sha256"), str) and _HEX64.match(e["arrays_sha256"])
                and isinstance(e.get("log_sha256"), str) and _HEX64.match(e["log_sha256"])
                and isinstance(e.get("mac"), str) and _HEX64.match(e["mac"])):
            raise bad(f"history entry {i + 1} is malformed")
        if i == 0:
            if e["event"] == "request" or (e["event"] == "learn" and (e["version"], e["requests"]) != (1, 0)):
                raise bad(f"its history starts with {e['event']} at version {e['version']}")
        elif (e["event"], e["version"], e["requests"]) != ("request", history[i - 1]["version"] + 1,
                                                            history[i - 1]["requests"] + 1):
            raise bad(f"history entry {i + 1} ({e['event']}, version {e['version']}, {e['requests']} requests) does "
                      f"not follow version {history[i - 1]['version']} with {history[i - 1]['requests']} requests")
    last = history[-1]
    if last["version"] != version or meta.get("version") != version:
        raise bad(f"CURRENT names version {version} but its history ends at version {last['version']}")
    if last["requests"] != len(requests):
        raise bad(f"its history counts {last['requests']} requests but the request log holds {len(requests)}")
    if [r.get("request") for r in requests] != list(range(1, len(requests) + 1)):
        raise bad("its request log is not numbered 1, 2, ... in order")
    if meta.get("arrays_sha256") != last["arrays_sha256"]:
        raise bad("arrays_sha256 differs from its history's last entry")
    common, previous, count = _common_digest(meta), "", 0
    for e in history:
        expected = _seal(key, previous=previous, entry=e, added=requests[count:e["requests"]], common=common)
        if not hmac.compare_digest(expected, e["mac"]):
            raise _corrupt(path, f"version {e['version']} ({e['event']}) fails its seal: state.json was changed "
                                 f"after unlearn.py wrote it, or {KEY} is not the key it was written with (allowed: "
                                 "the state as unlearn.py wrote it; an edited state is never certified)")
        previous, count = e["mac"], e["requests"]


def _refuse_sealed_as_old(path: str, meta: dict) -> None:
    """A state that says schema_version 1 (written before the seal) but holds a KEY or a history was sealed and
    edited since: corrupt, never a candidate for --trust-existing."""
    if "history" in meta or os.path.lexists(os.path.join(path, KEY)):
        raise _corrupt(path, f"it holds a {KEY} or a sealed history but says schema_version {OLD_SCHEMA}: it was "
                             "sealed and edited since (allowed: --trust-existing only for states written before "
                             "the seal)")


def load(path) -> State:
    """The committed version of the state folder, its history sealed and every value consistent; StateError
    (one line) when missing, foreign, written by an older unlearn.py, edited or corrupt."""
    path = os.path.abspath(path)
    version = _current_version(path)
    meta, blob, log = _read_version(path, version)
    schema = meta.get("schema_version")
    if schema is None:
        raise _corrupt(path, f"state.json of version {version} has no schema_version (allowed: an object with "
                             f"{', '.join(sorted(REQUIRED_KEYS))})")
    if schema == OLD_SCHEMA:
        _refuse_sealed_as_old(path, meta)
        raise StateError(f"state folder {path} was written by an older unlearn.py (schema_version 1) without a "
                         "sealed history, so its values cannot be checked (allowed: after checking it, accept it "
                         f"once with 'python unlearn.py verify --state {path} --trust-existing', or learn again)")
    if schema != SCHEMA_VERSION:
        raise StateError(f"state folder {path} has schema_version {schema!r} (allowed: {SCHEMA_VERSION}; it was "
                         "written by another version of unlearn.py)")
    missing = sorted(REQUIRED_KEYS - set(meta))
    if missing:
        raise _corrupt(path, f"state.json of version {version} lacks {', '.join(missing)} (allowed: an object with "
                             f"{', '.join(sorted(REQUIRED_KEYS))})")
    _verify_history(path, _read_key(path), meta, version)
    if _sha(log.encode("utf-8")) != meta["history"][-1]["log_sha256"]:
        raise _corrupt(path, f"log.txt of version {version} does not match its sealed sha256")
    arrays = _arrays(path, version, meta, blob)
    check_values(path, meta, arrays)
    return State(path=path, version=version, meta=meta, arrays=arrays, log=log)


# ---------------------------------------------------------------- consistency of the values
def _is_int(x) -> bool:
    return type(x) is int


def _is_num(x) -> bool:
    return type(x) in (int, float) and math.isfinite(x)


def check_values(path: str, meta: dict, arrays: dict) -> None:
    """StateError unless the state's values fit together: dataset, constants and settings agree, the arrays
    have the shapes, types and finiteness they imply, and the request log matches the removed rows."""

    def need(ok, what):
        if not ok:
            raise StateError(f"state folder {path} is inconsistent: {what} (allowed: the values unlearn.py "
                             "wrote; nothing is certified from an inconsistent state)")

    for name in ("dataset", "constants", "settings"):
        need(isinstance(meta.get(name), dict), f"state.json has no {name} object")
    ds, c, st, requests = meta["dataset"], meta["constants"], meta["settings"], meta["requests"]
    need(_is_int(c.get("n")) and c["n"] >= 2 and ds.get("n") == c["n"], f"n={c.get('n')!r} (dataset n={ds.get('n')!r})")
    n = c["n"]
    need(_is_int(ds.get("d")) and ds["d"] >= 1, f"d={ds.get('d')!r}")
    k = ds.get("num_classes")
    need(_is_int(k) and k >= 2 and c.get("num_classes") == k and isinstance(ds.get("classes"), list)
         and len(ds["classes"]) == k, f"num_classes={k!r}, classes {ds.get('classes')!r}")
    linear = "model" not in st   # a network (unlearn_network.py) has the fine-tuning constants instead
    need(_is_num(c.get("delta")) and 0 < c["delta"] < 1, f"delta={c.get('delta')!r}")
    if linear:
        for name in ("lam", "m", "L", "M", "eta"):
            need(_is_num(c.get(name)) and c[name] > 0, f"constant {name}={c.get(name)!r}")
        need(c["L"] > c["m"], f"L={c['L']!r}, m={c['m']!r}")
        for name, value in (("m", c["lam"] * n), ("eta", 1.0 / c["L"])):
            need(math.isclose(c[name], value, rel_tol=1e-9), f"constant {name}={c[name]!r} but it is {value!r} "
                                                             "from the other constants")
    else:
        fc = meta.get("certificate_constants")
        need(isinstance(fc, dict) and fc.get("delta") == c["delta"], "the network's certificate constants")
    need(_is_num(st.get("sigma")) and st["sigma"] > 0, f"sigma={st.get('sigma')!r}")
    need(_is_int(st.get("T")) and st["T"] >= 0, f"T={st.get('T')!r}")
    need(_is_int(st.get("trials")) and st["trials"] >= 1, f"trials={st.get('trials')!r}")
    need(_is_int(st.get("seed")) and st["seed"] >= 0, "seed is not a whole number >= 0")
    need(_is_num(st.get("eps_default")) and st["eps_default"] > 0, f"eps_default={st.get('eps_default')!r}")
    need(_is_int(st.get("request_size")) and 1 <= st["request_size"] < n, f"request_size={st.get('request_size')!r}")
    need(_is_num(st.get("R", 0.0)) and st.get("R", 0.0) >= 0, f"R={st.get('R')!r}")
    need(st.get("dtype") in ("float32", "float64"), f"dtype={st.get('dtype')!r}")
    b = st.get("batch_size")
    # the linear chains' epochs need n % b == 0; a network's batches cycle through each chain's order
    need(b == "full" or (_is_int(b) and 1 <= b <= n and (n % b == 0 or not linear)), f"batch_size={b!r} with n={n}")
    C, d = st["trials"], ds["d"]
    required = ("w", "X", "y", "ids", "X_test", "y_test", "accuracy", "removed") + (("perms",) if b != "full" else ())
    absent = [a for a in required if a not in arrays]
    need(not absent, f"arrays.npz lacks {', '.join(absent)}")
    w = arrays["w"]
    need(w.dtype.kind == "f" and w.ndim >= 2 and w.shape[0] == C, f"w has shape {w.shape} and dtype {w.dtype} "
                                                                    f"for {C} chains")
    if "model" not in st:      # the linear models' shape (a model with its own shape names itself in settings)
        from utils import models

        need(tuple(w.shape) == models.model_for(k).weight_shape(C, d), f"w has shape {w.shape}, expected "
                                                                         f"{models.model_for(k).weight_shape(C, d)}")
    need(bool(np.isfinite(w).all()), "w holds non-finite weights")
    X, y, X_test, y_test = arrays["X"], arrays["y"], arrays["X_test"], arrays["y_test"]
    need(X.dtype.kind == "f" and X.shape == (n, d) and bool(np.isfinite(X).all()), f"X has shape {X.shape} "
                                                                                    f"(expected {(n, d)}, finite)")
    need(X_test.dtype.kind == "f" and X_test.ndim == 2 and X_test.shape[1] == d and bool(np.isfinite(X_test).all()),
         f"X_test has shape {X_test.shape}")
    for name, labels, rows in (("y", y, n), ("y_test", y_test, X_test.shape[0])):
        # the models' targets: +1 / -1 for two classes, 0 .. k-1 for more (utils.data.label_targets)
        ok = labels.dtype.kind in "iuf" and labels.shape == (rows,) and bool(
            np.isin(labels, [-1, 1]).all() if k == 2 else np.isin(labels, np.arange(k)).all())
        need(ok, f"{name} has shape {labels.shape} and values outside the {k} classes' targets")
    ids = arrays["ids"]
    need(ids.shape == (n,) and ids.dtype.kind in "iuU" and np.unique(ids).size == n, "ids are not n unique ids")
    if "ids_test" in arrays:
        need(arrays["ids_test"].shape == (X_test.shape[0],), f"ids_test has shape {arrays['ids_test'].shape}")
    acc = arrays["accuracy"]
    need(acc.shape == (C,) and bool(np.isfinite(acc).all()) and bool(((acc >= 0) & (acc <= 1)).all()),
         f"accuracy has shape {acc.shape}")
    if b != "full":
        p = arrays["perms"]
        need(p.dtype.kind in "iu" and p.shape == (C, n), f"perms has shape {p.shape}")
    removed = arrays["removed"]
    need(removed.dtype == bool and removed.shape == (n,), f"removed has shape {removed.shape}")
    seen: set = set()
    for r in requests:
        s = r.get("request")
        rows, cert = r.get("rows"), r.get("certificate")
        need(_is_int(r.get("S")) and r["S"] >= 1 and isinstance(r.get("ids"), list) and len(r["ids"]) == r["S"]
             and isinstance(rows, list) and len(rows) == r["S"] and all(_is_int(i) and 0 <= i < n for i in rows)
             and len(set(rows)) == len(rows), f"request {s} names {r.get('S')!r} rows inconsistently")
        need(not seen & set(rows), f"request {s} removes a row an earlier request removed")
        seen |= set(rows)
        need(_is_int(r.get("K")) and r["K"] >= 1, f"request {s} has K={r.get('K')!r}")
        need(_is_num(r.get("eps_target")) and r["eps_target"] > 0, f"request {s} has eps_target={r.get('eps_target')!r}")
        need(isinstance(cert, dict) and cert.get("request") == s and cert.get("K") == r["K"]
             and cert.get("S") == r["S"] and _is_num(cert.get("eps")) and cert["eps"] >= 0
             and cert.get("sigma") == st["sigma"] and cert.get("n") == n and cert.get("delta") == c["delta"],
             f"request {s}'s certificate does not match its request, sigma, n or delta")
    need(len(seen) < n, f"{len(seen)} removed rows of n={n}")
    need(set(np.flatnonzero(removed).tolist()) == seen, f"{int(removed.sum())} rows are marked removed but the "
                                                        f"request log removed {len(seen)}")
# ---------------------------------------------------------------- writing
def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: str, data: bytes, mode: int = 0o666) -> None:
    """A new file (never an existing one, never through a link), written and fsynced."""
    try:
        fd = results.open_nofollow(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as fh:
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


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _sealed_meta(meta: dict, *, key: bytes, version: int, blob: bytes, log: str, history: list, event: str,
                 added_from: int) -> dict:
    """state.json of a new version: ``meta`` (as it reads back from JSON) with the history grown by a sealed
    entry for this version; the request records from index ``added_from`` on are the ones it added."""
    meta = json.loads(results.json_text({k: v for k, v in meta.items() if k not in _CHAIN_FIELDS - {"requests"}}))
    requests = meta.setdefault("requests", [])
    entry = {"version": version, "event": event, "requests": len(requests), "arrays_sha256": _sha(blob),
             "log_sha256": _sha(log.encode("utf-8")), "time": _now()}
    entry["mac"] = _seal(key, previous=history[-1]["mac"] if history else "", entry=entry,
                         added=requests[added_from:], common=_common_digest(meta))
    meta.update(schema_version=SCHEMA_VERSION, version=version, arrays_sha256=entry["arrays_sha256"],
                history=list(history) + [entry])
    return meta


def _write_version(path: str, version: int, meta: dict, arrays: dict, log: str, *, key: bytes, history: list,
                   event: str, added_from: int) -> dict:
    """Write version folder ``v<version>`` completely (temporary name, fsync, rename); returns the meta written."""
    blob = _npz_bytes(arrays)
    meta = _sealed_meta(meta, key=key, version=version, blob=blob, log=log, history=history, event=event,
                        added_from=added_from)
    text = results.json_text(meta)
    tmp = tempfile.mkdtemp(prefix=f".tmp-v{version:06d}-", dir=path)
    os.chmod(tmp, 0o777 & ~results.current_umask())  # the umask inside; the state folder itself is 0700
    try:
        _write_file(os.path.join(tmp, "arrays.npz"), blob)
        _write_file(os.path.join(tmp, "log.txt"), log.encode("utf-8"))
        _write_file(os.path.join(tmp, "state.json"), text.encode("utf-8"))
        _fsync_dir(tmp)
        final = _version_dir(path, version)
        if os.path.lexists(final):          # left by a run killed before its switch: never committed
            if os.path.islink(final) or not os.path.isdir(final):
                os.unlink(final)
            else:
                shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _write_key(path: str) -> bytes:
    """A fresh secret key in ``path/KEY`` (owner-only, replaced atomically, never through a link)."""
    key = secrets.token_bytes(32)
    tmp = os.path.join(path, f".tmp-key-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    try:
        _write_file(tmp, (key.hex() + "\n").encode("ascii"), mode=0o600)
        os.replace(tmp, os.path.join(path, KEY))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path)
    return key


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


def _make_private(path: str) -> None:
    """The state folder owner-only (mode 0700): it holds the secret noise seed (state.json), KEY and the
    training rows, and every command needs KEY anyway, so nobody but its owner (and root) has a use for it.
    What is inside follows the umask: an owner who opens the folder on purpose gets the usual modes."""
    with contextlib.suppress(OSError):      # a file system without modes (FAT, some network mounts)
        os.chmod(path, 0o700)


def create(path, meta: dict, arrays: dict, log: str) -> State:
    """A new state folder holding version 1 and a fresh KEY; refuses a folder that already has content.

    Written under the folder's lock; the leftovers of a ``learn`` killed before its commit point (no
    CURRENT yet, only temporary or uncommitted version entries, a KEY) are deleted first.
    """
    path = os.path.abspath(path)
    check_new(path)
    os.makedirs(path, mode=0o700, exist_ok=True)
    _make_private(path)                     # also a new folder the user made, empty, for the state
    with results.FolderLock(path):
        check_new(path)                     # a concurrent learn may have committed meanwhile
        _check_no_links(path)
        _remove_stale(path, keep=None)
        key = _write_key(path)
        written = _write_version(path, 1, meta, arrays, log, key=key, history=[], event="learn", added_from=0)
        _switch_pointer(path, 1)
    return State(path=path, version=1, meta=written, arrays=dict(arrays), log=log)


def commit(previous: State, meta: dict, arrays: dict, log: str) -> State:
    """Replace ``previous`` by a new version holding one more request, atomically (call with the folder's
    lock held); its history entry is sealed with the state's KEY."""
    if len(meta.get("requests", [])) != len(previous.meta["requests"]) + 1:
        raise ValueError("commit adds exactly one request record to the request log")
    version = previous.version + 1
    key = _read_key(previous.path)
    _remove_stale(previous.path, keep=previous.version)   # leftovers of a killed run
    written = _write_version(previous.path, version, meta, arrays, log, key=key, history=previous.meta["history"],
                             event="request", added_from=len(previous.meta["requests"]))
    _switch_pointer(previous.path, version)
    try:
        _remove_stale(previous.path, keep=version)
    except OSError:
        pass   # committed; pending(path) reports what is left, and the next command of any kind deletes it
    return State(path=previous.path, version=version, meta=written, arrays=dict(arrays), log=log)


def trust_existing(path, note: str, check=None) -> State:
    """Accept a state written by an older unlearn.py (schema_version 1, no KEY) once, as it is: its arrays must
    match their sha256 (and state.json its meta_sha256 where it has one) and every value must be consistent;
    then a fresh KEY seals a new version whose history starts with a "trusted" entry. Call with the lock held.
    ``note`` is appended to the log (what was checked, when); ``check(meta, arrays)`` runs before sealing."""
    path = os.path.abspath(path)
    version = _current_version(path)
    meta, blob, log = _read_version(path, version)
    if meta.get("schema_version") != OLD_SCHEMA:
        raise StateError(f"--trust-existing is only for states written by an older unlearn.py (schema_version "
                         f"{OLD_SCHEMA}); state folder {path} has schema_version {meta.get('schema_version')!r}")
    _refuse_sealed_as_old(path, meta)
    if "meta_sha256" in meta and meta["meta_sha256"] != _old_meta_digest(meta):
        raise _corrupt(path, f"state.json of version {version} does not match its recorded sha256")
    if not isinstance(meta.get("requests"), list) or [r.get("request") if isinstance(r, dict) else None
                                                        for r in meta["requests"]] != list(
            range(1, len(meta["requests"]) + 1)):
        raise _corrupt(path, "its request log is not numbered 1, 2, ... in order")
    arrays = _arrays(path, version, meta, blob)
    check_values(path, meta, arrays)
    if check is not None:
        check(meta, arrays)
    _remove_stale(path, keep=version)
    _make_private(path)
    key = _write_key(path)
    written = _write_version(path, version + 1, meta, arrays, log + note, key=key, history=[], event="trusted",
                             added_from=0)
    _switch_pointer(path, version + 1)
    with contextlib.suppress(OSError):
        _remove_stale(path, keep=version + 1)
    return State(path=path, version=version + 1, meta=written, arrays=arrays, log=log + note)


def _killed_learn_leftover(name: str) -> bool:
    return name in (".lock", KEY) or name.startswith(".tmp-") or bool(_VERSION_DIR.match(name))


def check_new(path) -> None:
    """Raise StateError unless ``path`` can become a new state folder (checked before any work).

    A folder holding only what a killed ``learn`` leaves (no CURRENT: temporary entries, an uncommitted
    version, the lock file, a KEY) counts as new: learning again deletes those leftovers. The folder (or
    the place it would be made) must be writable, with names the file system takes, and an existing folder
    must be the user's own (it becomes owner-only): checked before the data are loaded and the chains learned.
    """
    path = os.path.abspath(path)
    if os.path.exists(path) and (not os.path.isdir(path) or not all(
            _killed_learn_leftover(name) for name in os.listdir(path))):
        what = "a state folder" if os.path.exists(os.path.join(path, POINTER)) else "not empty"
        raise StateError(f"--state {path} exists and is {what} (allowed: a new or empty folder; "
                         "delete it to learn again)")
    if os.path.isdir(path) and hasattr(os, "geteuid") and os.stat(path).st_uid != os.geteuid():
        raise StateError(f"--state {path} belongs to another user (uid {os.stat(path).st_uid}), who could read "
                         "the state's secret noise seed and its rows (allowed: a new folder, or an empty one you "
                         "own)")
    results.check_writable(path, "--state")


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


def _csv_fields(text: str) -> list[str]:
    """The fields of one CSV line (double quotes group, as in the data's CSV), stripped; [] if empty."""
    import csv

    try:
        fields = next(csv.reader([text], skipinitialspace=True), [])
    except csv.Error:
        fields = text.split(",")
    return [f.strip() for f in fields if f.strip()]


def _split_ids(text: str, known) -> list[str]:
    """One command-line token or one line of an ids file as ids: the whole text when it is an id of the data
    (text ids may hold commas or spaces), else its CSV fields (quotes allowed), each whole when it is an id,
    else split at spaces and semicolons; a field starting with # ends the line (a comment). When the data's text
    ids are ``known`` and no piece is one either, the text stays whole, so the error names what the user wrote."""
    text = text.strip()
    if not text or text.startswith("#"):
        return []
    if text in known:
        return [text]
    out = _split_fields(text, known)
    return out if not known or any(t in known for t in out) else [text.split(" #", 1)[0].strip()]


def _split_fields(text: str, known) -> list[str]:
    out = []
    for field in _csv_fields(text):
        if field.startswith("#"):
            break
        if field in known:
            out.append(field)
            continue
        for token in re.split(r"[\s;]+", field.split("#", 1)[0]):
            if token:
                out.append(token.strip("'"))
        if "#" in field:
            break
    return out


def _file_tokens(path: Path, text_ids: bool, id_name, known) -> tuple[list[str], str]:
    """Tokens of an ids file and the header line it skipped ('' if none): .npy, or UTF-8 text with one id per
    line (CSV quoting allowed; a line that is an id is taken whole) or ids separated by spaces, commas or
    semicolons, # comments; a first line that names the column is a header."""
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
    lines = [tokens for tokens in (_split_ids(line, known) for line in raw.splitlines()) if tokens]
    header = ""
    if lines:
        first = lines[0]
        names = _HEADER_WORDS | ({str(id_name).lower()} if id_name is not None else set())
        if not any(t in known for t in first) and (
                (not text_ids and any(_parse_int(t) is None for t in first)) or all(t.lower() in names for t in first)):
            header = " ".join(first)
            lines = lines[1:]
    return [t for line in lines for t in line], header


def read_ids(tokens, all_ids=None, *, id_name=None, skipped=None, held_out=None) -> np.ndarray:
    """``--ids`` as users write them: ids separated by spaces or commas on the command line, or one file of
    ids (.npy, or text: one id per line with CSV quoting, or ids separated by spaces or commas, # comments,
    an optional header line). Integer ids when ``all_ids`` (the data's ids) are integers or unknown, else
    text ids kept as strings and compared exactly; a token or line that is exactly an id of the data is
    never split (an id may hold a comma). A skipped header line is appended to ``skipped`` (a list)."""
    text_ids = all_ids is not None and np.asarray(all_ids).dtype.kind in "US"
    known = set(np.asarray(all_ids).tolist()) | set([] if held_out is None else np.asarray(held_out).tolist()) \
        if text_ids else set()
    raw = [str(t) for t in tokens]
    one = raw[0] if len(raw) == 1 else None
    is_id = one is not None and (one in known if text_ids else _parse_int(one) is not None)
    if one is not None and not is_id and Path(one).is_file():
        path = Path(one)
        tokens, header = _file_tokens(path, text_ids, id_name, known)
        if header and skipped is not None:
            skipped.append(header)
        if not tokens:
            raise StateError(f"--ids file {path} holds no ids (allowed: at least one id)")
    else:
        tokens = [t for tok in raw for t in (_split_ids(tok, known) if text_ids else re.split(r"[\s,]+", tok)) if t]
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


def rows_for_ids(all_ids: np.ndarray, removed_by: dict, ids: np.ndarray, *, held_out=None) -> np.ndarray:
    """Row positions of ``ids`` (integers, or strings compared exactly); StateError for an id not in the
    data, a held-out row's id (``held_out``: their ids) or an id already removed (removed_by: id -> request)."""
    order = np.argsort(all_ids, kind="stable")
    sorted_ids = all_ids[order]
    pos = np.searchsorted(sorted_ids, ids)
    pos = np.minimum(pos, sorted_ids.size - 1)
    missing = ids[sorted_ids[pos] != ids]
    if missing.size and held_out is not None:
        held = missing[np.isin(missing, np.asarray(held_out))]
        if held.size:
            shown = held[0].item()
            raise StateError(f"id {shown!r} is a held-out row, not a training row: the chains never trained on it "
                             "(held-out rows measure accuracy and, with --standardize test, give the column "
                             f"statistics), so remove has nothing to unlearn (allowed: ids of the {all_ids.size} "
                             "training rows; to drop a held-out row, learn again without it)")
    if missing.size:
        if all_ids.dtype.kind in "US":
            shown = missing[0].item()
            raise StateError(f"id {shown!r} is not in the data (allowed: text ids of the {all_ids.size} training rows, "
                             "compared exactly: case, spaces and leading zeros count"
                             + ('; several ids that hold commas are written quoted, "a,1","b,2"' if "," in shown
                                else "") + ")")
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
