"""Progress where no progress bar can be drawn: when stderr is not a terminal (a log file, a batch job), one
line every ``INTERVAL`` seconds or so with the stage, the share of the work done and the time left:

    progress: 41% of the run's chain work done, about 6 min left (now: unlearn b=128 request 37, 100 chains)

A script's run declares its whole work (``run(total)``, experiments.run_script: the plan's Workload, each update
weighted by its cost); without one (unlearn.py) each phase reports its own share. The time left is the
elapsed time scaled by the work left, so it follows the machine's load as it changes.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time

INTERVAL = 30.0   # seconds between two lines (UNLEARN_PROGRESS_SECONDS overrides it)


def interval() -> float:
    try:
        return max(0.0, float(os.environ.get("UNLEARN_PROGRESS_SECONDS", INTERVAL)))
    except ValueError:
        return INTERVAL


def update_weight(C: int, rows: int, d: int, width: int = 1) -> float:
    """The relative cost of one update of C chains over ``rows`` rows: its multiply-adds, its noise and a fixed
    per-update overhead (about a small matrix product's)."""
    return C * d * width * (2.0 * rows + 1.0) + 1e5


class Reporter:
    """Counts work done against ``total`` (weights) and writes a line when ``interval`` seconds have passed."""

    def __init__(self, total: float | None, *, stream=None, every: float | None = None, clock=time.monotonic):
        self.total, self.done = total, 0.0
        self.stream, self.every, self.clock = stream, interval() if every is None else every, clock
        self.t0 = self.last = clock()

    def step(self, what: str, weight: float, *, share: tuple[float, float] | None = None) -> str | None:
        """Add ``weight`` of work done in stage ``what``; ``share`` = (done, total) of that stage, used when the
        run's total is unknown. Returns the line written, if any."""
        self.done += weight
        now = self.clock()
        if now - self.last < self.every:
            return None
        self.last = now
        done, total, whose = (self.done, self.total, "the run's chain work") if self.total else (*share, "this phase")
        fraction = min(1.0, done / total) if total else 0.0
        elapsed = now - self.t0
        left = f"about {_duration(elapsed * (1 - fraction) / fraction)} left" if fraction > 0 else "time left unknown"
        line = f"progress: {100 * fraction:.0f}% of {whose} done, {left} (now: {what}; {_duration(elapsed)} so far)"
        print(line, file=self.stream or sys.stderr, flush=True)
        return line


def _duration(seconds: float) -> str:
    from utils.workload import duration

    return duration(seconds)


_run: Reporter | None = None


@contextlib.contextmanager
def run(total: float | None):
    """The reporter of a script's whole run (``total``: its work's weight, None when unknown)."""
    global _run
    before, _run = _run, Reporter(total)
    try:
        yield _run
    finally:
        _run = before


class Lines:
    """What sampler.progress_bar gives off a terminal: the interface of a tqdm bar (update, a context manager),
    reporting to the run's Reporter (or to its own, for a phase of a script without one)."""

    def __init__(self, desc: str, total: int, weight: float):
        self.desc, self.total, self.weight, self.n = desc, total, weight, 0
        # a run without a total (its work not counted, e.g. --model mlp) times each phase on its own clock:
        # the phase's share over the run's elapsed time would predict hours for a phase just started
        self.reporter = _run if _run is not None and _run.total else Reporter(None)

    def update(self, units: int = 1) -> None:
        self.n += units
        self.reporter.step(self.desc, units * self.weight, share=(self.n, self.total))

    def __enter__(self) -> "Lines":
        return self

    def __exit__(self, *exc) -> None:
        return None
