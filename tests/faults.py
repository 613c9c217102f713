"""Helpers for the fault tests: die like SIGKILL at the N-th file operation, in a forked child.

A forked child runs a script's main() with every file-changing call counted; at the N-th it calls
os._exit (no finally block, no atexit: what SIGKILL leaves), before the call happens. The parent
then reruns and compares with an uninterrupted run.
"""
from __future__ import annotations

import os
import shutil
import sys

# The calls that change files: every write, rename, deletion and folder creation the tool makes goes
# through one of them (numpy's savez writes into a BytesIO first; results/state write bytes with os.write
# or file objects opened by os.fdopen/open, and commit with os.replace / os.rename).
OPS = (("os", "replace"), ("os", "rename"), ("os", "unlink"), ("os", "mkdir"), ("os", "fsync"),
       ("os", "ftruncate"), ("os", "pwrite"), ("shutil", "rmtree"))
KILLED = 137


def _patch(kill_at: int, counter: list) -> None:
    modules = {"os": os, "shutil": shutil}
    for mod, name in OPS:
        real = getattr(modules[mod], name)

        def counted(*a, _real=real, **k):
            counter[0] += 1
            if counter[0] == kill_at:
                os._exit(KILLED)
            return _real(*a, **k)
        setattr(modules[mod], name, counted)


def run_forked(main, argv, *, kill_at: int = 0) -> tuple[int, int]:
    """(exit status, file operations done) of main(argv) in a forked child killed at op ``kill_at`` (0: never)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        code = 1
        counter = [0]
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            _patch(kill_at, counter)
            code = main(argv) or 0
        except BaseException:
            code = 3
        finally:
            os.write(write, str(counter[0]).encode())
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as fh:
        done = fh.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), int(done or 0)


def files_under(path) -> list[str]:
    out = []
    for folder, _, names in os.walk(path):
        out += [os.path.relpath(os.path.join(folder, n), path) for n in names]
    return sorted(out)


def tmp_leftovers(path) -> list[str]:
    return [p for p in files_under(path) if os.path.basename(p).startswith(".tmp-")] + \
        [os.path.relpath(os.path.join(f, d), path) for f, ds, _ in os.walk(path) for d in ds if d.startswith(".tmp-")]


if "pytest" not in sys.modules:  # imported only by tests
    raise ImportError("tests/faults.py is a test helper")


def the_run(mode_dir):
    """The one run folder under a mode folder (each fault test runs one flag set per result dir), finished
    or not; a path that does not exist when no run has started there."""
    from pathlib import Path

    mode_dir = Path(mode_dir)
    runs = [p for p in mode_dir.iterdir() if p.name != "latest" and not p.name.startswith(".") and p.is_dir()] \
        if mode_dir.is_dir() else []
    assert len(runs) <= 1, runs
    return runs[0] if runs else mode_dir / "no-run-started"


def interrupt_at_call(monkeypatch, owner, name: str, n: int):
    """Patch ``owner.name`` (a function or a class's method) so that its n-th call raises KeyboardInterrupt, as
    Ctrl-C there would; the calls before run the real one. Returns the real one, to put back for a resume."""
    real, calls = getattr(owner, name), [0]

    def interrupted(*a, **kw):
        calls[0] += 1
        if calls[0] == n:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(owner, name, interrupted)
    return real
