"""Run folders: atomic writes, config capture, a lock per folder, resumable parts, the chain cache.

Layout: ``<result_dir>/<LMC|SGD>/<DATASET>/<mode>/<run>/`` holding ``config.json``, ``metrics.json``,
``arrays.npz``, ``log.txt``, the figure (PNG and PDF) and, while a run is under way, ``INCOMPLETE`` and
``parts/`` (finished pieces that ``--resume`` reuses). ``<run>`` is named by ``run_name`` (the flags
given, then a hash of every flag), so different flags never share a folder; ``<mode>/latest`` names the
run that finished last, and ``resolve_run_dir`` turns a mode folder into that run. No torch at import time.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata

import numpy as np

from utils import jsonable

SCHEMA_VERSION = 1
# The random streams' layout (utils.engine: per-chain generators); part of every resume key and cache key,
# bumped when the streams change so that nothing computed with other streams is ever reused.
STREAMS_VERSION = 2
TMP_PREFIX = ".tmp-"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Flags that may differ between an interrupted run and its resumption.
_RESUME_IGNORED = {"resume", "plan_only", "device", "gpu", "yes"}
# Flags that change neither what a run computes nor which run it is: they do not name its folder.
_NOT_NAMING = {"resume", "device", "gpu", "result_dir", "data_dir", "no_cache", "quiet", "name", "yes",
               "family", "multiclass", "given_flags", "S_given"}
# Flags added after run folders were named: hashed only when set, so an older command line keeps its folder.
_HASHED_WHEN_SET = {"paper_a_run", "num_classes"}
LATEST = "latest"              # <mode>/latest: a relative symlink to the run, or a file naming it
INCOMPLETE = "INCOMPLETE"      # present while a run folder's results are not (all) written yet
RESULT_FILES = ("config.json", "metrics.json", "arrays.npz", "log.txt", "figure.png", "figure.pdf")


class ResultError(RuntimeError):
    """A run folder cannot be used (locked, config mismatch, would overwrite a finished run)."""


# ---------------------------------------------------------------- JSON and atomic writes
# one rule for every JSON file the project writes: non-finite numbers as "inf" / "-inf" / "nan"
to_jsonable = jsonable.to_jsonable

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
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", suffix="-" + os.path.basename(path)[:80],
                               dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 would hide results from colleagues
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:  # a write or fsync error names no file
            raise OSError(exc.errno, exc.strerror, path) from None
        raise


def sweep_tmp(folder: str, *, only_dead: bool = False) -> list[str]:
    """Delete the temporary files ``.tmp-<pid>-*`` left in ``folder`` by killed writers (with only_dead, only
    those whose pid is not alive: for folders other processes may be writing to). Returns their names."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(TMP_PREFIX):
            continue
        pid = name[len(TMP_PREFIX):].split("-", 1)[0]
        # a name without a pid is an older writer's (before pids were in the names): stale
        if only_dead and pid.isdigit() and (int(pid) == os.getpid() or _pid_alive(int(pid))):
            continue
        full = os.path.join(folder, name)
        try:
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.unlink(full)
            removed.append(name)
        except FileNotFoundError:
            pass
    return removed


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_text(obj) -> str:
    """Strict JSON (no NaN/inf), indented, newline-terminated: every JSON file the project writes."""
    return json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n"


def write_json(path: str, obj) -> None:
    atomic_write_text(path, json_text(obj))


def open_nofollow(path: str, flags: int = os.O_RDONLY, mode: int = 0o666) -> int:
    """os.open that never follows a symbolic link at the last component of ``path``: every file this project
    writes or reads back is a regular file it made, so a planted link (to another user's file, to a removed
    row's old copy) is refused instead of written through. OSError naming the path otherwise."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP and os.path.islink(path):
            raise OSError(errno.ELOOP, "is a symbolic link (allowed: a regular file written by this tool)",
                          path) from None
        raise


def read_bytes(path: str) -> bytes:
    """The content of a regular file, never through a symbolic link (open_nofollow)."""
    with os.fdopen(open_nofollow(path), "rb") as fh:
        return fh.read()


def read_json(path: str):
    """A JSON file this project wrote (never through a symbolic link); OSError or ValueError when unreadable."""
    return json.loads(read_bytes(path).decode("utf-8"))


def read_config(path: str) -> dict:
    """A run folder's config.json as a dict; ResultError (one line naming the file) when it is unreadable,
    not JSON, not an object, or a symbolic link."""
    try:
        config = read_json(path)
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ResultError(f"{path} is unreadable ({why})") from None
    if not isinstance(config, dict) or not isinstance(config.get("flags", {}), dict):
        raise ResultError(f"{path} holds {type(config).__name__ if not isinstance(config, dict) else 'flags that are not an object'} "
                          "(allowed: the JSON object a run writes)")
    return config


def write_npz(path: str, arrays: dict) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(path, buf.getvalue())


def read_npz(path) -> dict:
    """All arrays of an .npz file (a path or a binary file object), no pickles."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


class DamagedError(ValueError):
    """A saved part or cache entry that cannot be trusted (unreadable, wrong checksum, other inputs, wrong shape)."""


def _array_digest(arrays: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode("utf-8"))
        h.update(a.tobytes())
    return h.hexdigest()


def write_checked_npz(path: str, arrays: dict, *, key: str) -> None:
    """write_npz plus a checksum of every array (names, dtypes, shapes, bytes) and the content key of its inputs."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    write_npz(path, dict(arrays, __checksum__=np.asarray(_array_digest(arrays)), __key__=np.asarray(key)))


def read_checked_npz(path: str, *, key: str) -> dict:
    """The arrays written by write_checked_npz for these inputs; DamagedError naming what is wrong."""
    try:
        arrays = read_npz(path)
    except Exception as exc:  # zipfile/numpy raise many types for a truncated or garbled file
        raise DamagedError(f"unreadable ({type(exc).__name__})") from None
    checksum, stored_key = arrays.pop("__checksum__", None), arrays.pop("__key__", None)
    if checksum is None or str(checksum) != _array_digest(arrays):
        raise DamagedError("checksum mismatch")
    if stored_key is None or str(stored_key) != key:
        raise DamagedError("saved for other inputs")
    return arrays


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
        "streams_version": STREAMS_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def check_writable(result_dir: str, flag: str = "--result_dir") -> None:
    """Raise ResultError unless ``result_dir`` exists writable or could be created (writes nothing).

    Also refuses, before any work, what would fail only at the first write: a symlink loop, a name longer
    than the file system allows, a path through a file.
    """
    path = os.path.abspath(result_dir)
    probe = path
    while not os.path.lexists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    try:
        os.stat(probe)
    except OSError as exc:
        raise ResultError(f"{flag} {result_dir!r} cannot be used: {probe}: {exc.strerror}") from None
    try:
        name_max = os.pathconf(probe, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    long = [p for p in path.split(os.sep) if len(p.encode("utf-8", "surrogateescape")) > name_max]
    if long:
        raise ResultError(f"{flag} {result_dir!r} has a folder name of {len(long[0])} characters "
                          f"(allowed: at most {name_max})")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ResultError(f"{flag} {result_dir!r} is a file, not a folder: give a writable folder")
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
        raise ResultError(f"{flag} {result_dir!r} is not writable: give a folder you can write to")


# ---------------------------------------------------------------- locking
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


_HELD: set = set()     # the locks this process holds, released by release_all on any exit path


def release_all() -> None:
    """Release every lock this process still holds (cli.guarded calls it however a script ends)."""
    for lock in list(_HELD):
        lock.release()


class FolderLock:
    """An exclusive lock on ``<folder>/.lock``: ``fcntl.flock`` on the file, held open for the whole run.

    The kernel grants the flock to one open file at a time and drops it when its holder exits in any way
    (SIGKILL included), so there is no stale lock to take over and no window between creating the file
    and recording the owner. The owner (pid, start time, command) is written into the file only for the
    message a second process prints. Release unlinks the file while still holding the flock; a process
    that opened the old file meanwhile sees that the path now names another file (or none) and retries,
    so two processes never both hold the lock of one path.
    """

    def __init__(self, folder: str, *, wait: float = 0.0, on_wait=None):
        self.path = os.path.join(folder, ".lock")
        self.wait = wait          # seconds to wait for a live holder (0: refuse at once)
        self.on_wait = on_wait    # called between polls while waiting (torchrun: keeps the other ranks in touch)
        self.held = False
        self._fd: int | None = None

    def _owner(self) -> str:
        try:
            text = read_bytes(self.path).decode("utf-8", "replace").strip()
        except OSError:
            text = ""
        info = {}
        for part in text.splitlines():
            key, _, value = part.partition("=")
            info[key.strip()] = value.strip()
        if info.get("pid"):
            return f"pid {info['pid']}, started {info.get('started', '?')}"
        return "another process"

    def acquire(self) -> None:
        import fcntl
        import time

        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        deadline = time.monotonic() + max(self.wait, 0.0)
        told = False
        while True:
            try:   # never through a planted link: the owner record would overwrite the link's target
                fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except IsADirectoryError:
                raise ResultError(f"the lock {self.path} is a folder, not a file: remove it "
                                  "(allowed: a regular file made by this tool)") from None
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                raise ResultError(f"the lock {self.path} is a symbolic link: remove it (allowed: a regular file "
                                  "made by this tool; it is never written through a link)") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= deadline:
                    raise ResultError(f"{os.path.dirname(self.path)} is in use by a live run ({self._owner()}); "
                                      "wait for it to finish or choose another folder") from None
                if not told:
                    print(f"waiting for {self.path} ({self._owner()})", file=sys.stderr, flush=True)
                    told = True
                if self.on_wait is not None:
                    self.on_wait()
                time.sleep(0.05)
                continue
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:          # the holder released (unlinked) it between our open and our flock
                os.close(fd)
                continue
            break
        self._fd, self.held = fd, True
        _HELD.add(self)
        try:
            record = (f"pid={os.getpid()}\nstarted={datetime.now(timezone.utc).isoformat(timespec='seconds')}\n"
                      f"command={' '.join([os.path.basename(sys.argv[0])] + sys.argv[1:])[:500]}\n")
            os.ftruncate(fd, 0)
            os.pwrite(fd, record.encode("utf-8", "replace"), 0)
        except OSError:
            pass      # the owner record is for humans only; the flock is what excludes

    def release(self) -> None:
        """Drop our own lock (never another process's: only the holder has the flocked file open)."""
        if not self.held:
            return
        fd, self._fd, self.held = self._fd, None, False
        _HELD.discard(self)
        try:
            if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                os.unlink(self.path)
        except OSError:
            pass
        finally:
            os.close(fd)

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


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
    return cache_key({k: v for k, v in flags.items()
                      if k not in _NOT_NAMING and not (k in _HASHED_WHEN_SET and v is None)})[:8]


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


def _latest_target(mode_dir: str) -> str | None:
    """The run name ``<mode_dir>/latest`` holds (a symlink or a one-line file), or None."""
    link = os.path.join(mode_dir, LATEST)
    try:
        if os.path.islink(link):
            return os.path.normpath(os.readlink(link))
        if os.path.isfile(link):
            with open(link, encoding="utf-8") as fh:
                return fh.read().strip()
    except OSError:
        return None
    return None


def unfinished(folder: str) -> str | None:
    """Why a run folder's results must not be read as a finished run's (a few words), or None when it
    finished: the finished mark is config.json's ``complete: true``, metrics.json written after it, and no
    INCOMPLETE left (utils.summary and utils.plots read nothing else as results)."""
    if os.path.exists(os.path.join(folder, INCOMPLETE)):
        return f"{INCOMPLETE} is present (rerun the same command with --resume)"
    for name, finished, what in (("config.json", lambda r: r.get("complete") is True, "does not say complete: true"),
                                 ("metrics.json", lambda r: "schema_version" in r, "is not a run's record")):
        try:
            record = read_json(os.path.join(folder, name))
        except FileNotFoundError:
            return f"no {name}"
        except (OSError, ValueError, RecursionError):
            return f"{name} is unreadable"
        if not isinstance(record, dict) or not finished(record):
            return f"{name} {what}"
    return None


def _is_plan(folder: str) -> bool:
    try:
        return read_json(os.path.join(folder, "metrics.json")).get("plan_only") is True
    except (OSError, ValueError, AttributeError):
        return False


def is_run_dir(path: str) -> bool:
    return any(os.path.exists(os.path.join(path, f)) for f in ("config.json", "metrics.json", INCOMPLETE))


def resolve_run_dir(path) -> str:
    """A run folder given a run folder, or a mode folder (-> the run its ``latest`` names, or where no run has
    results yet, the newest finished --plan_only run). Readers and tests call this so that both spellings
    work: ``resolve_run_dir("result/LMC/DIGITS/baseline")``."""
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
    else:   # no run with results yet (`latest` never names a --plan_only run): the newest finished plan
        finished = [p for p in run_dirs(path) if p != path and os.path.exists(os.path.join(p, "metrics.json"))
                    and not os.path.exists(os.path.join(p, INCOMPLETE))]
        if finished and all(_is_plan(p) for p in finished):
            return finished[0]
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


# Flags whose default the run derives (experiments.model_defaults); configs written before the flags were
# frozen held the derived value as the flag's.
_DERIVED_DEFAULTS = ("lam", "M")


def flags_as_used(config: dict) -> tuple[dict, dict]:
    """(flags, derived) of a config, with a flag left open (None) replaced by the value the run derived for it
    (``derived.<flag>``, e.g. audit.py's sigma, which then leaves ``derived``; ``derived.constants.<flag>`` for
    lam and M): runs compare by the values they used, so a run interrupted before the flags were frozen (its
    config holds them as flags) resumes, parts included."""
    flags = dict(to_jsonable(config.get("flags", {}) or {}))
    derived = dict(to_jsonable(config.get("derived", {}) or {}))
    constants = derived.get("constants") if isinstance(derived.get("constants"), dict) else {}
    for k in [k for k, v in flags.items() if v is None]:
        if k in derived and k != "constants":
            flags[k] = derived.pop(k)
        elif k in _DERIVED_DEFAULTS and k in constants:
            flags[k] = constants[k]
    return flags, derived


def _changed_flags(config_path: str, config: dict) -> str:
    """The flags (that change a result) in which ``config`` differs from the saved one, shown; "" if none.
    ResultError when the saved one is unreadable."""
    old = flags_as_used(read_config(config_path))[0]
    new = flags_as_used(config)[0]
    diff = sorted(k for k in set(old) | set(new) if k not in _RESUME_IGNORED | _NOT_NAMING and old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff[:4])


# ---------------------------------------------------------------- run folders
def metrics_record(metrics: dict, *, plan_only: bool) -> dict:
    """metrics.json's content: the schema header, then the metrics, as strict-JSON-ready values."""
    return to_jsonable({"schema_version": SCHEMA_VERSION, "plan_only": bool(plan_only), **metrics})


def resume_inputs(config: dict) -> dict:
    """Everything a resumed run must share with the interrupted one, by content: the flags (but device and
    the resume flags), the derived inputs (dataset identity with the features file's sha256, constants, mode)
    and the versions of the libraries that compute the chains."""
    flags, derived = flags_as_used(config)
    out = {f"flag {k}": v for k, v in flags.items() if k not in _RESUME_IGNORED | _NOT_NAMING}
    for k, v in derived.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    versions = config.get("versions", {}) or {}
    out.update({f"version {k}": versions.get(k) for k in ("numpy", "torch")})
    out["schema_version"] = config.get("schema_version")
    out["streams_version"] = config.get("streams_version")
    return out


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class RunFolder:
    """One experiment run: ``<result_dir>/<family>/<dataset>/<mode>/<run>/`` (``run=None``: the mode
    folder itself, the layout before run folders)."""

    def __init__(self, result_dir: str, family: str, dataset: str, mode: str, run: str | None = None):
        for part in (family, dataset, mode) + (() if run is None else (run,)):
            # cli.check_safe_name refused such names already; never escape --result_dir
            if not part or part in (".", "..") or os.sep in part or (os.altsep and os.altsep in part):
                raise ResultError(f"run folder name part {part!r} is not allowed (allowed: a plain folder name)")
        self.mode_dir = os.path.join(result_dir, family, dataset, mode)
        self.run = run
        self.path = self.mode_dir if run is None else os.path.join(self.mode_dir, run)
        self.parts_dir = os.path.join(self.path, "parts")
        self.lock = FolderLock(self.path)
        self.log_lines: list[str] = []
        self.resume = False
        self.content_key = ""

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
                    if os.path.lexists(self.file(name)):   # a planted link goes, its target stays
                        os.unlink(self.file(name))
            atomic_write_text(self.file(INCOMPLETE), "this run has not finished: its results are missing or "
                                                     "partial; rerun the same command with --resume\n")
        except BaseException:
            self.lock.release()
            raise
        self.resume = resume
        self.content_key = cache_key(resume_inputs(config))
        return self

    def _check_reuse(self, config: dict, *, resume: bool, plan_only: bool) -> None:
        metrics_path = self.file("metrics.json")
        finished_full = False
        if os.path.exists(metrics_path):
            try:
                metrics = read_json(metrics_path)
                finished_full = isinstance(metrics, dict) and not metrics.get("plan_only", False)
            except (OSError, ValueError):
                finished_full = False
        if plan_only and finished_full:
            raise ResultError(f"{self.path} holds a finished full run; --plan_only will not overwrite its "
                              "metrics: choose another --result-dir")
        old_config = self.file("config.json")
        try:
            changed = _changed_flags(old_config, config) if os.path.lexists(old_config) else ""
        except ResultError as exc:
            if resume:
                raise ResultError(f"--resume refused: {exc}; rerun without --resume to start this run afresh") from None
            # a plain rerun replaces the run anyway: its damaged config cannot hide other flags in a folder
            # named by these flags' hash (a reused --name is the user's own choice of folder)
            self.log(f"note: {exc}; the run in {self.path} is replaced")
            changed = ""
        if self.run is not None and not resume and changed:  # only a reused --name gets here
            raise ResultError(f"run folder {self.path} holds a run with other flags ({changed}); "
                              "choose another --name")
        if resume and self.run is not None and not os.path.lexists(old_config):
            others = [os.path.basename(p) for p in run_dirs(self.mode_dir)
                      if p != self.path and os.path.exists(os.path.join(p, INCOMPLETE))]
            if others:  # most likely a flag typed differently from the interrupted run's
                raise ResultError(f"--resume refused: no run with these flags under {self.mode_dir} (unfinished "
                                  f"runs there: {', '.join(others)}); rerun with that run's flags, or without --resume")
            # killed before its config was written: nothing to reuse, so the run starts afresh
            self.log(f"note: --resume found nothing of a run with these flags in {self.path}; starting afresh")
        if resume and os.path.lexists(old_config):
            try:
                old = resume_inputs(read_config(old_config))
            except (ResultError, AttributeError, TypeError, ValueError) as exc:
                why = str(exc) if isinstance(exc, ResultError) else f"{old_config} is unreadable"
                raise ResultError(f"--resume refused: {why}; rerun without --resume") from None
            new = resume_inputs(config)
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            if diff:
                shown = ", ".join(f"{k}: {_short(old.get(k))} -> {_short(new.get(k))}" for k in diff[:4])
                raise ResultError(f"--resume refused: the saved config in {self.path} differs ({shown}); "
                                  "rerun without --resume or with the same flags, data and library versions")
        sweep_tmp(self.path)
        sweep_tmp(self.parts_dir)
        if not resume and os.path.isdir(self.parts_dir):
            shutil.rmtree(self.parts_dir)

    def close(self) -> None:
        self.lock.release()

    # -- resumable parts
    def _part_path(self, key: str) -> str:
        safe = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in key)
        return os.path.join(self.parts_dir, safe + ".npz")

    def load_part(self, key: str) -> dict | None:
        """A finished part saved by an earlier (interrupted) run of the same inputs, when resuming; else None.

        A damaged part (truncated, wrong checksum, saved for other inputs) is deleted and recomputed, with a note.
        """
        path = self._part_path(key)
        if not self.resume or not os.path.exists(path):
            return None
        try:
            return read_checked_npz(path, key=f"{self.content_key}/{key}")
        except DamagedError as exc:
            self.log(f"note: part {path} is damaged ({exc}); recomputing it")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return None

    def save_part(self, key: str, arrays: dict) -> None:
        write_checked_npz(self._part_path(key), arrays, key=f"{self.content_key}/{key}")

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

    def finish(self, *, latest: bool = True) -> None:
        """Once every final file is in place: drop the resumable parts, any temporary file and the
        INCOMPLETE mark, and point ``<mode>/latest`` at this run; ``latest=False`` (a --plan_only run, which
        has no results to draw) leaves it on the last run with results, and never on this one."""
        if os.path.exists(self.file(INCOMPLETE)):
            os.unlink(self.file(INCOMPLETE))
        if os.path.isdir(self.parts_dir):
            shutil.rmtree(self.parts_dir)
        sweep_tmp(self.path)
        if self.run is None:
            return
        if latest:
            _set_latest(self.mode_dir, self.run)
        elif _latest_target(self.mode_dir) == self.run:   # named it before this plan replaced it
            os.unlink(os.path.join(self.mode_dir, LATEST))


# ---------------------------------------------------------------- learned-chain cache
def cache_key(inputs: dict) -> str:
    """A stable hash of every input of a chain (dataset identity, constants, sigma, T, dtype, seed, ...)."""
    blob = json.dumps(to_jsonable(inputs), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


class ChainCache:
    """Learned chains under ``<result_dir>/cache/``, reused across experiments instead of recomputed.

    Each entry carries a checksum and the key of its inputs; ``get`` also checks the shape, dtype and
    finiteness the caller expects. A damaged or mismatched entry is deleted and recomputed with a one-line
    note (NaNs in an entry are damage, never divergence). A failed write (a full disk) turns the cache off
    for the rest of the run instead of failing it.
    """

    def __init__(self, result_dir: str, enabled: bool = True, note=None):
        self.folder = os.path.join(result_dir, "cache")
        self.enabled = enabled
        self.note = note or (lambda line: print(line, file=sys.stderr, flush=True))
        if enabled:
            sweep_tmp(self.folder, only_dead=True)

    def _path(self, inputs: dict) -> str:
        return os.path.join(self.folder, f"chains-{cache_key(inputs)}.npz")

    def get(self, inputs: dict, *, shape: tuple | None = None, dtype: str | None = None) -> dict | None:
        path = self._path(inputs)
        if not self.enabled or not os.path.exists(path):
            return None
        try:
            arrays = read_checked_npz(path, key=cache_key(inputs))
            w = arrays.get("w")
            if w is None:
                raise DamagedError("no array w")
            if shape is not None and tuple(w.shape) != tuple(shape):
                raise DamagedError(f"shape {tuple(w.shape)}, expected {tuple(shape)}")
            if dtype is not None and w.dtype != np.dtype(dtype):
                raise DamagedError(f"dtype {w.dtype}, expected {dtype}")
            if w.dtype.kind != "f" or not np.isfinite(w).all():
                raise DamagedError("non-finite values")
        except DamagedError as exc:
            self.note(f"note: cache entry {path} is damaged ({exc}); recomputing it")
            for p in (path, path[:-4] + ".json"):
                with contextlib.suppress(OSError):
                    os.unlink(p)
            return None
        return arrays

    def put(self, inputs: dict, arrays: dict) -> None:
        if not self.enabled:
            return
        try:
            write_checked_npz(self._path(inputs), arrays, key=cache_key(inputs))
            write_json(self._path(inputs)[:-4] + ".json", inputs)
        except OSError as exc:
            self.enabled = False
            with contextlib.suppress(OSError):
                os.unlink(self._path(inputs))
            self.note(f"note: the chain cache in {self.folder} is off for this run: writing "
                      f"{exc.filename or self._path(inputs)} failed ({exc.strerror or exc})")
