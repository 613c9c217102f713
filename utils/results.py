"""Run folders: atomic writes, config capture, a lock per folder, resumable parts, the chain cache.

Layout: ``<result_dir>/<LMC|SGD>/<DATASET>/<mode>/<run>/`` holding ``config.json``, ``metrics.json``,
``arrays.npz``, ``log.txt``, the figure (PNG and PDF) and, while a run is under way, ``INCOMPLETE`` and
``parts/`` (finished pieces that ``--resume`` reuses). ``<run>`` is named by ``run_name`` (the flags
given, then a hash of every flag), so different flags never share a folder; ``<mode>/latest`` names the
run that finished last, and ``resolve_run_dir`` turns a mode folder into that run. No torch at import time.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata

import numpy as np

SCHEMA_VERSION = 1
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Flags that may differ between an interrupted run and its resumption.
_RESUME_IGNORED = {"resume", "plan_only", "device", "gpu"}
# Flags that change neither what a run computes nor which run it is: they do not name its folder.
_NOT_NAMING = {"resume", "device", "gpu", "result_dir", "data_dir", "no_cache", "quiet", "name", "yes",
               "family", "multiclass", "given_flags", "S_given"}
LATEST = "latest"              # <mode>/latest: a relative symlink to the run, or a file naming it
INCOMPLETE = "INCOMPLETE"      # present while a run folder's results are not (all) written yet
RESULT_FILES = ("config.json", "metrics.json", "arrays.npz", "log.txt", "figure.png", "figure.pdf")


class ResultError(RuntimeError):
    """A run folder cannot be used (locked, config mismatch, would overwrite a finished run)."""


# ---------------------------------------------------------------- JSON and atomic writes
def to_jsonable(obj):
    """Plain-Python copy of ``obj`` (numpy scalars/arrays, tuples, paths) for strict JSON."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        # strict JSON has no inf/nan: infinity (e.g. eps at sigma = 0) is written as a string
        return x if math.isfinite(x) else ("inf" if x > 0 else "-inf" if x < 0 else "nan")
    if obj is None or isinstance(obj, str):
        return obj
    if hasattr(obj, "__fspath__"):
        return os.fspath(obj)
    return str(obj)


def json_key(value) -> str:
    """Map key of a swept value: ``format(float(v), 'g')``; full batch is ``"full"``."""
    if value is None or (isinstance(value, str) and value == "full"):
        return "full"
    return format(float(value), "g")


def current_umask() -> int:
    """The process's umask (reading it means setting it; set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename into place."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path), dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 would hide results from colleagues
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_text(obj) -> str:
    """Strict JSON (no NaN/inf), indented, newline-terminated: every JSON file the project writes."""
    return json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n"


def write_json(path: str, obj) -> None:
    atomic_write_text(path, json_text(obj))


def read_json(path: str):
    with open(path, "r", encoding="utf-8") as fh:
        return json.load(fh)


def write_npz(path: str, arrays: dict) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(path, buf.getvalue())


def read_npz(path) -> dict:
    """All arrays of an .npz file (a path or a binary file object), no pickles."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# ---------------------------------------------------------------- provenance
def git_commit() -> str | None:
    """The checkout's commit, or None outside a git checkout (never an error)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def library_versions() -> dict:
    versions = {"python": platform.python_version()}
    for pkg in ("numpy", "scipy", "torch", "scikit-learn", "matplotlib"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return versions


def config_record(args, derived: dict | None = None) -> dict:
    """Every flag, the derived constants, versions, machine and commit: what config.json holds."""
    flags = dict(vars(args)) if not isinstance(args, dict) else dict(args)
    return {
        "schema_version": SCHEMA_VERSION,
        "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        "flags": flags,
        "derived": derived or {},
        "versions": library_versions(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "git_commit": git_commit(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def check_writable(result_dir: str) -> None:
    """Raise ResultError unless ``result_dir`` exists writable or could be created (writes nothing)."""
    path = os.path.abspath(result_dir)
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if os.path.exists(path) and not os.path.isdir(path):
        raise ResultError(f"--result-dir {result_dir!r} is a file, not a folder: give a writable folder")
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
        raise ResultError(f"--result-dir {result_dir!r} is not writable: give a folder you can write to")


# ---------------------------------------------------------------- locking
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


class FolderLock:
    """An exclusive lock file holding the owner's pid; a stale lock of a dead process is taken over."""

    def __init__(self, folder: str):
        self.path = os.path.join(folder, ".lock")
        self.held = False

    def acquire(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(open(self.path).read().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and _pid_alive(pid):
                    raise ResultError(f"run folder {os.path.dirname(self.path)} is in use by a live run "
                                      f"(pid {pid}); wait for it or choose another --result-dir")
                os.unlink(self.path)  # stale: its owner is gone
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            self.held = True
            return
        raise ResultError(f"could not take the lock {self.path}")

    def release(self) -> None:
        if self.held and os.path.exists(self.path):
            os.unlink(self.path)
        self.held = False


# ---------------------------------------------------------------- run names and the latest run
def _name_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return "_".join(_name_value(v) for v in value)
    if isinstance(value, float):
        return format(value, "g")
    text = os.path.basename(str(value)) if isinstance(value, str) and os.sep in value else str(value)
    return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in text)


def flags_hash(flags: dict) -> str:
    """8 hex digits of a hash of every flag that changes what a run computes."""
    return cache_key({k: v for k, v in flags.items() if k not in _NOT_NAMING})[:8]


def run_name(flags: dict, *, mode: str, given=()) -> str:
    """The run folder's name: ``--name`` when given, else the flags given on the command line (other than
    the mode switch, the dataset and flags that change nothing computed) then a hash of every flag, e.g.
    ``K=1,eps=1,lam=0.001-3f2a1c0b``; ``default-<hash>`` when none was given. Identical flags give the same
    name (a rerun reuses its folder), different flags a different one."""
    if flags.get("name"):
        return str(flags["name"])
    shown = []
    for key in given:
        if key in _NOT_NAMING or key in (mode, "dataset") or key not in flags:
            continue
        value = flags[key]
        shown.append(key if value is True else f"{key}={_name_value(value)}")
    readable = ",".join(shown)[:80] or "default"
    return f"{readable}-{flags_hash(flags)}"


def _set_latest(mode_dir: str, run: str) -> None:
    """Point ``<mode_dir>/latest`` at ``run`` atomically: a relative symlink, or where the file system has
    none, a one-line file naming the run (resolve_run_dir reads both)."""
    link = os.path.join(mode_dir, LATEST)
    tmp = os.path.join(mode_dir, f".tmp-latest-{os.getpid()}")
    try:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(run, tmp, target_is_directory=True)
    except (OSError, NotImplementedError):
        atomic_write_text(link, run + "\n")
        return
    if os.path.isdir(link) and not os.path.islink(link):
        shutil.rmtree(link)  # never the case for folders we made; a stray folder must not block the pointer
    os.replace(tmp, link)


def is_run_dir(path: str) -> bool:
    return any(os.path.exists(os.path.join(path, f)) for f in ("config.json", "metrics.json", INCOMPLETE))


def resolve_run_dir(path) -> str:
    """A run folder given a run folder, or a mode folder (-> the run its ``latest`` names). Readers and
    tests call this so that both spellings work: ``resolve_run_dir("result/LMC/DIGITS/baseline")``."""
    path = os.fspath(path)
    if is_run_dir(path):
        return path
    link = os.path.join(path, LATEST)
    if os.path.islink(link) or os.path.isdir(link):
        target = os.path.join(path, os.readlink(link)) if os.path.islink(link) else link
        if is_run_dir(target):
            return os.path.normpath(target)
    elif os.path.isfile(link):
        with open(link, encoding="utf-8") as fh:
            target = os.path.join(path, fh.read().strip())
        if is_run_dir(target):
            return target
    raise ResultError(f"{path} is neither a run folder (config.json, metrics.json) nor a mode folder with a "
                      f"'{LATEST}' run: give a folder under result/<LMC|SGD>/<DATASET>/<mode>/")


def run_dirs(mode_dir) -> list[str]:
    """Every run folder directly under a mode folder (the pre-run-folder layout: the mode folder itself),
    newest first by modification time."""
    mode_dir = os.fspath(mode_dir)
    if is_run_dir(mode_dir):
        return [mode_dir]
    if not os.path.isdir(mode_dir):
        return []
    found = [os.path.join(mode_dir, e) for e in os.listdir(mode_dir)
             if e != LATEST and not e.startswith(".") and is_run_dir(os.path.join(mode_dir, e))]
    return sorted(found, key=lambda p: os.path.getmtime(p), reverse=True)


def _changed_flags(config_path: str, config: dict) -> str:
    """The flags (that change a result) in which ``config`` differs from the saved one, shown; "" if none."""
    old = read_json(config_path).get("flags", {})
    new = to_jsonable(config.get("flags", {}))
    diff = sorted(k for k in set(old) | set(new) if k not in _RESUME_IGNORED | _NOT_NAMING and old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff[:4])


# ---------------------------------------------------------------- run folders
def metrics_record(metrics: dict, *, plan_only: bool) -> dict:
    """metrics.json's content: the schema header, then the metrics, as strict-JSON-ready values."""
    return to_jsonable({"schema_version": SCHEMA_VERSION, "plan_only": bool(plan_only), **metrics})


class RunFolder:
    """One experiment run: ``<result_dir>/<family>/<dataset>/<mode>/<run>/`` (``run=None``: the mode
    folder itself, the layout before run folders)."""

    def __init__(self, result_dir: str, family: str, dataset: str, mode: str, run: str | None = None):
        self.mode_dir = os.path.join(result_dir, family, dataset, mode)
        self.run = run
        self.path = self.mode_dir if run is None else os.path.join(self.mode_dir, run)
        self.parts_dir = os.path.join(self.path, "parts")
        self.lock = FolderLock(self.path)
        self.log_lines: list[str] = []
        self.resume = False

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    # -- life cycle
    def open(self, config: dict, *, resume: bool = False, plan_only: bool = False) -> "RunFolder":
        """Lock the folder and check it may be used as asked; a plain rerun replaces a finished run."""
        self.lock.acquire()
        try:
            self._check_reuse(config, resume=resume, plan_only=plan_only)
            if not resume:  # a replaced run leaves nothing behind that the new config does not describe
                for name in RESULT_FILES:
                    if os.path.exists(self.file(name)):
                        os.unlink(self.file(name))
            atomic_write_text(self.file(INCOMPLETE), "this run has not finished: its results are missing or "
                                                     "partial; rerun the same command with --resume\n")
        except BaseException:
            self.lock.release()
            raise
        self.resume = resume
        return self

    def _check_reuse(self, config: dict, *, resume: bool, plan_only: bool) -> None:
        metrics_path = self.file("metrics.json")
        finished_full = False
        if os.path.exists(metrics_path):
            try:
                finished_full = not read_json(metrics_path).get("plan_only", False)
            except (OSError, ValueError):
                finished_full = False
        if plan_only and finished_full:
            raise ResultError(f"{self.path} holds a finished full run; --plan_only will not overwrite its "
                              "metrics: choose another --result-dir")
        old_config = self.file("config.json")
        changed = _changed_flags(old_config, config) if os.path.exists(old_config) else ""
        if self.run is not None and not resume and changed:  # only a reused --name gets here
            raise ResultError(f"run folder {self.path} holds a run with other flags ({changed}); "
                              "choose another --name")
        if resume and self.run is not None and not os.path.exists(old_config):
            others = [os.path.basename(p) for p in run_dirs(self.mode_dir) if os.path.exists(os.path.join(p, INCOMPLETE))]
            raise ResultError(f"--resume refused: no run with these flags under {self.mode_dir} (unfinished runs "
                              f"there: {', '.join(others) or 'none'}); rerun with that run's flags, or without --resume")
        if resume and changed:
            raise ResultError(f"--resume refused: the saved config in {self.path} differs ({changed}); "
                              "rerun without --resume or with the same flags")
        if not resume and os.path.isdir(self.parts_dir):
            shutil.rmtree(self.parts_dir)

    def close(self) -> None:
        self.lock.release()

    # -- resumable parts
    def _part_path(self, key: str) -> str:
        safe = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in key)
        return os.path.join(self.parts_dir, safe + ".npz")

    def load_part(self, key: str) -> dict | None:
        """A finished part saved by an earlier (interrupted) run, when resuming; else None."""
        path = self._part_path(key)
        if not self.resume or not os.path.exists(path):
            return None
        return read_npz(path)

    def save_part(self, key: str, arrays: dict) -> None:
        write_npz(self._part_path(key), arrays)

    # -- logging
    def log(self, line: str = "") -> None:
        """Print a line and keep it for log.txt."""
        print(line, flush=True)
        self.log_lines.append(line)

    # -- the finished run
    def write_config(self, config: dict) -> None:
        write_json(self.file("config.json"), config)

    def write_metrics(self, metrics: dict, *, plan_only: bool = False) -> None:
        write_json(self.file("metrics.json"), metrics_record(metrics, plan_only=plan_only))

    def write_arrays(self, arrays: dict) -> None:
        write_npz(self.file("arrays.npz"), arrays)

    def write_log(self) -> None:
        atomic_write_text(self.file("log.txt"), "\n".join(self.log_lines) + "\n")

    def finish(self) -> None:
        """Once every final file is in place: drop the resumable parts and the INCOMPLETE mark, and
        point ``<mode>/latest`` at this run."""
        if os.path.exists(self.file(INCOMPLETE)):
            os.unlink(self.file(INCOMPLETE))
        if os.path.isdir(self.parts_dir):
            shutil.rmtree(self.parts_dir)
        if self.run is not None:
            _set_latest(self.mode_dir, self.run)


# ---------------------------------------------------------------- learned-chain cache
def cache_key(inputs: dict) -> str:
    """A stable hash of every input of a chain (dataset identity, constants, sigma, T, dtype, seed, ...)."""
    blob = json.dumps(to_jsonable(inputs), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


class ChainCache:
    """Learned chains under ``<result_dir>/cache/``, reused across experiments instead of recomputed."""

    def __init__(self, result_dir: str, enabled: bool = True):
        self.folder = os.path.join(result_dir, "cache")
        self.enabled = enabled

    def _path(self, inputs: dict) -> str:
        return os.path.join(self.folder, f"chains-{cache_key(inputs)}.npz")

    def get(self, inputs: dict) -> dict | None:
        path = self._path(inputs)
        if not self.enabled or not os.path.exists(path):
            return None
        try:
            return read_npz(path)
        except (OSError, ValueError):
            return None  # a damaged cache entry is recomputed

    def put(self, inputs: dict, arrays: dict) -> None:
        if self.enabled:
            write_npz(self._path(inputs), arrays)
            write_json(self._path(inputs)[:-4] + ".json", inputs)
