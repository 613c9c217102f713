"""The work a run will do, counted by kind, and the time it takes on this machine.

A script's plan fills a ``Workload`` the way its stages will run: ``learn`` / ``advance`` (C chains for so
many full-batch steps or mini-batch epochs, with the batch size, the chains sharing a batch order and
whether noise is drawn), ``evaluate`` (test accuracy of C chains), ``dataset`` (a D' built and moved to
the device) and ``save`` (C chains written to a part or the chain cache). ``measure`` times one of each
kind here, on the run's own data (random unit rows of its shape when no data is loaded), and ``estimate``
is the sum of count x measured time per unit: the run's own mix of work, not its chain-steps priced at
one rate. tests/test_workload.py checks the counts against what a run performs.

No torch at import time: utils.engine is imported only to measure.
"""
from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from collections import Counter

import numpy as np

UPDATE, EVALUATE, DATASET, SAVE = "update", "evaluate", "dataset", "save"
# How long one kind's measurement aims to run (seconds): a plan with 6 kinds is timed in about 1-2 s on
# an idle machine; the measurement adapts its size to what it measures, so a loaded machine takes longer.
MEASURE_SECONDS = 0.08
MEASURE_CHAINS = 256            # chains timed at most; the time of C chains scales linearly above this
MEASURE_ELEMENTS = 50_000_000   # rows x d timed at most for a full-batch step or a new dataset (linear above)
# A run estimated above this needs --yes (experiments.check_plan, unlearn.py learn): a day of work is what
# a mistyped flag produces (a tiny lam or eps, a huge --trials), rarely what a researcher means to start.
CONFIRM_SECONDS = 24 * 3600


@dataclasses.dataclass(frozen=True, order=True)
class Kind:
    """One kind of work whose time per unit is measured: ``update`` (one update of C chains: a full-batch
    step, ``b`` = 0, or a mini-batch of b rows with ``group`` chains per batch order), ``evaluate`` (test
    accuracy of C chains), ``dataset`` (a D' copied and moved to the device), ``save`` (C chains written)."""

    what: str
    C: int = 0
    b: int = 0
    group: int = 1
    noisy: bool = True

    def describe(self) -> str:
        if self.what == UPDATE:
            if not self.b:
                head = "full-batch steps"
            else:
                orders = ("one batch order per chain" if self.group == 1 else
                          "one batch order for all" if self.group >= self.C else f"one order per {self.group}")
                head = f"updates of b={self.b} ({orders})"
            return f"{head}, {self.C} chain{'s' * (self.C != 1)}" + ("" if self.noisy else ", noiseless")
        return {EVALUATE: f"test accuracies of {self.C} chains", DATASET: "new datasets D' (rows replaced)",
                SAVE: f"saves of {self.C} chains (parts, cache)"}[self.what]


class Workload:
    """Counts of each kind of work of a run on ``n`` rows of ``d`` features and ``num_classes`` classes;
    ``cache``: learned chains go to the chain cache (a save each), and a second learning run of the same
    ``key`` is read from it (as experiments.Lab does)."""

    def __init__(self, *, n: int, d: int | None, num_classes: int, n_test: int | None = None, cache: bool = True,
                 batch_orders="per_chain"):
        self.n, self.d, self.num_classes, self.n_test = int(n), d, int(num_classes), n_test
        self.cache, self.batch_orders = cache, batch_orders
        self.counts: Counter = Counter()   # Kind -> units (updates, evaluations, datasets, saves)
        self.calls: Counter = Counter()    # update Kind -> run_chains calls (each has a start-up cost)
        self._learned: set = set()

    # -- what the stages do, in the sampler's words (utils/sampler.py)
    def update_kind(self, C: int, *, b=None, sigma: float = 1.0) -> Kind:
        """The kind of an update of C chains at batch size b (None / "full" / b >= n: full batch)."""
        full = b in (None, "full") or int(b) >= self.n
        group = 1
        if not full:
            from utils import engine   # the one rule of which chains share a batch order

            group = engine.batch_order_group(self.batch_orders, C)
        return Kind(UPDATE, int(C), 0 if full else int(b), group, bool(sigma > 0))

    def advance(self, C: int, steps: int, *, b=None, sigma: float = 1.0) -> None:
        """One run_chains call: C chains for ``steps`` full-batch steps or mini-batch epochs."""
        if C <= 0 or steps <= 0:
            return
        kind = self.update_kind(C, b=b, sigma=sigma)
        self.counts[kind] += int(steps) * (self.n // kind.b if kind.b else 1)
        self.calls[kind] += 1

    def learn(self, C: int, T: int, *, b=None, sigma: float, new_data: bool = False, key=None) -> None:
        """Sampler.learn: T steps from the initial law (one chain at sigma = 0); ``new_data``: on a D' (its
        task is built); ``key``: the cache key of a run that may repeat within the run (read back instead)."""
        if key is not None and self.cache:
            if key in self._learned:
                return
            self._learned.add(key)
        run_C = 1 if sigma == 0 else C
        if new_data:
            self.dataset()
        self.advance(run_C, T, b=b, sigma=sigma)
        if self.cache:
            self.save(run_C)

    def evaluate(self, C: int, times: int = 1) -> None:
        self._add(Kind(EVALUATE, int(C)), times)

    def dataset(self, times: int = 1) -> None:
        self._add(Kind(DATASET), times)

    def save(self, C: int, times: int = 1) -> None:
        self._add(Kind(SAVE, int(C)), times)

    def _add(self, kind: Kind, times: int) -> None:
        if times > 0:
            self.counts[kind] += int(times)

    # -- totals
    @property
    def chain_steps(self) -> int:
        """Chains x updates over every update (a full-batch step or one mini-batch update is one)."""
        return int(sum(k.C * v for k, v in self.counts.items() if k.what == UPDATE))

    def progress_weight(self) -> float:
        """The updates' total weight in utils/progress.py's units (what a run's progress lines count)."""
        from utils import models, progress

        width = models.model_for(self.num_classes).width
        return float(sum(v * progress.update_weight(k.C, k.b or self.n, self.d or 1, width)
                         for k, v in self.counts.items() if k.what == UPDATE))

    def record(self) -> list[dict]:
        """The counts as JSON (metrics.json's ``estimate.work``)."""
        return [dict(dataclasses.asdict(k), count=int(v), calls=int(self.calls.get(k, 0)))
                for k, v in sorted(self.counts.items())]


# ---------------------------------------------------------------- measuring
@dataclasses.dataclass(frozen=True)
class Rate:
    """Measured seconds per unit of one kind (for updates: per update of C chains) and per run_chains call."""

    unit: float
    call: float = 0.0


@dataclasses.dataclass
class Estimate:
    """The run's time here: ``seconds`` = ``startup`` + sum over kinds of count x unit + calls x call."""

    seconds: float
    device: str
    rates: dict            # Kind -> Rate
    work: Workload
    startup: float
    measured_in: float     # seconds the measurement took
    load: float | None     # the machine's 1-minute load average when measured (None: unknown)

    def parts(self) -> list[tuple[Kind, int, float]]:
        """(kind, count, seconds) per kind, the longest first."""
        out = []
        for kind, count in self.work.counts.items():
            r = self.rates[kind]
            out.append((kind, count, count * r.unit + self.work.calls.get(kind, 0) * r.call))
        return sorted(out, key=lambda p: -p[2])

    def record(self) -> dict:
        """metrics.json's ``estimate`` (beside ``estimated_seconds``)."""
        return {"device": self.device, "startup_seconds": self.startup, "measured_in_seconds": self.measured_in,
                "load_average": self.load, "cpus": os.cpu_count(),
                "work": [dict(dataclasses.asdict(k), count=int(c), seconds=s,
                              unit_seconds=self.rates[k].unit, call_seconds=self.rates[k].call,
                              calls=int(self.work.calls.get(k, 0))) for k, c, s in self.parts()]}

    def lines(self) -> list[str]:
        """What a plan prints: the total, then one line per kind of work."""
        load = "" if self.load is None else f", load average {self.load:.1f} on {os.cpu_count()} cores"
        out = [f"estimated time: {duration(self.seconds)} on {self.device} (each kind of work timed here just now "
               f"in {self.measured_in:.1f} s{load}; other jobs starting or stopping change it):"]
        for kind, count, seconds in self.parts():
            unit = self.rates[kind].unit
            out.append(f"  {count:>12,} {kind.describe():<58} x {_unit(unit):>9} = {duration(seconds)}")
        out.append(f"  {'':>12} {'start-up and end (imports, data, plan; figure, files)':<58}   {'':>9}   "
                   f"{duration(self.startup)}")
        return out


def _unit(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def duration(seconds: float) -> str:
    """A duration as a person reads it: 42 s, 18 min, 3.2 h, 2.5 days."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


class _Bench:
    """The measurements' shared inputs: data (the run's, or random unit rows of its shape) on the device."""

    def __init__(self, work: Workload, *, X, y, X_test, y_test, consts, device, dtype, R, scratch):
        from utils import engine, models

        self.engine, self.work, self.consts, self.R, self.scratch = engine, work, consts, float(R or 0.0), scratch
        self.device, self.dtype = engine.resolve_device(device), dtype
        self.model = models.model_for(work.num_classes)
        rng = np.random.default_rng(0)
        n, d = work.n, work.d
        rows = min(n, max(1, MEASURE_ELEMENTS // max(1, d)))
        if X is None:
            X = _unit_rows(rng, rows, d)
            y = self.model.encode_labels(rng.integers(0, work.num_classes, rows))
        if y is None or len(y) < rows:
            raise ValueError("the measurement needs labels for its rows")
        self.X, self.y = np.asarray(X[:rows]), np.asarray(y[:rows])
        n_test = len(X_test) if X_test is not None else (work.n_test or max(1, n // 5))
        if X_test is None:
            X_test = _unit_rows(rng, min(n_test, rows), d)
            y_test = self.y[rng.integers(0, rows, len(X_test))]
        self.X_test, self.y_test = np.asarray(X_test), np.asarray(y_test)
        self.test_scale = n_test / len(self.X_test)
        self.tasks: dict = {}

    def task(self, rows: int):
        if rows not in self.tasks:
            self.tasks[rows] = self.engine.to_task(self.X[:rows], self.y[:rows], self.model, device=self.device,
                                                   dtype=self.dtype)
        return self.tasks[rows]

    def chains(self, C: int, sigma: float):
        gen = self.engine.generator_for(0, "workload", "init", device=self.device)
        return self.engine.init_chains(C=C, d=self.work.d, num_classes=self.work.num_classes, sigma=sigma,
                                       m=self.consts.m, generator=gen, device=self.device, dtype=self.dtype)

    def sync(self) -> None:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)

    def clock(self, fn) -> float:
        self.sync()
        t = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - t

    # -- one function per kind: a measurer whose calls each give one sample (a Rate) for the run's sizes
    def update(self, kind: Kind):
        e, c = self.engine, self.consts
        C = min(kind.C, MEASURE_CHAINS)
        scale = kind.C / C
        sigma = 0.01 if kind.noisy else 0.0
        w = self.chains(C, sigma)
        gen = e.generator_for(0, "workload", "run", device=self.device)
        if not kind.b:   # cost per step ~ rows: time the rows measured, scale to n
            task = self.task(len(self.X))
            scale *= self.work.n / len(self.X)
            per = 1

            def run(steps):
                return self.clock(lambda: e.run_chains(w, task, steps=steps, eta=c.eta, sigma=sigma, m=c.m, M=c.M,
                                                       R=self.R, generator=gen))
        else:            # an update costs ~ b rows whatever n is: epochs of few updates over the first rows
            b, group = kind.b, min(kind.group, C)
            most = max(1, min(self.work.n // b, len(self.X) // b))
            per = min(most, 4)
            prepared = {}

            def run(steps):
                if per not in prepared:
                    orders = e.make_perms(-(-C // group), per * b, generator=gen, device=self.device)
                    prepared[per] = (self.task(per * b), e.share_orders(orders, C, group))
                task, perms = prepared[per]
                return self.clock(lambda: e.run_chains(w, task, steps=steps, eta=c.eta, sigma=sigma, m=c.m, M=c.M,
                                                       R=self.R, batch_size=b, perms=perms, generator=gen))
            first = run(1)   # the size of the measurement: about MEASURE_SECONDS of updates per epoch
            per = max(per, min(most, int(MEASURE_SECONDS / max(first / per, 1e-7)), 256))
        run(1)           # warm-up (allocations, kernels, the noise threads)

        def sample() -> Rate:
            t1 = run(1)
            more = max(1, min(64, int(MEASURE_SECONDS / max(t1, 1e-7))))
            t2 = run(1 + more)
            unit = (t2 - t1) / (more * per)
            if unit <= 0:    # a noisy clock on a busy machine: the plain average
                unit = t2 / ((1 + more) * per)
            return Rate(unit * scale, max(0.0, t1 - per * unit) * kind.C / C)
        return sample

    def evaluate(self, kind: Kind):
        C = min(kind.C, MEASURE_CHAINS)
        w = self.chains(C, 0.01)
        self.engine.accuracy(w, self.X_test, self.y_test)
        return lambda: Rate(self.clock(lambda: self.engine.accuracy(w, self.X_test, self.y_test))
                            * kind.C / C * self.test_scale)

    def dataset(self, kind: Kind):
        def build():
            self.engine.to_task(self.X.copy(), self.y.copy(), self.model, device=self.device, dtype=self.dtype)
        build()
        return lambda: Rate(self.clock(build) * self.work.n / len(self.X))

    def save(self, kind: Kind):
        from utils import results

        C = min(kind.C, MEASURE_CHAINS)   # C = 0: a part of a few accuracies, the cost of any write
        w = np.zeros((C, self.work.d * self.model.width), dtype=np.float32 if self.dtype == "float32" else np.float64)
        path = os.path.join(self.scratch, "chains.npz")
        results.write_checked_npz(path, {"w": w}, key="workload")
        return lambda: Rate(self.clock(lambda: results.write_checked_npz(path, {"w": w}, key="workload"))
                            * (kind.C / C if C else 1.0))


def _median(samples: list) -> Rate:
    return Rate(float(np.median([r.unit for r in samples])), float(np.median([r.call for r in samples])))


def _unit_rows(rng, rows: int, d: int) -> np.ndarray:
    X = rng.standard_normal((rows, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X


def measure(work: Workload, *, consts, X=None, y=None, X_test=None, y_test=None, device="auto",
            dtype: str = "float32", R: float = 0.0, scratch_dir: str | None = None) -> tuple[dict, str]:
    """({Kind: Rate} for every kind of ``work``, the device's name), timed here on (X, y) (random unit rows of the run's shape when
    None); ``consts`` gives eta, m and M as the run uses them (the model refuses clipping that can fire)."""
    if not work.d:
        raise ValueError("the time estimate needs the feature dimension d (give --dim)")
    if scratch_dir is not None and not os.path.isdir(scratch_dir):
        scratch_dir = None
    with tempfile.TemporaryDirectory(prefix=".tmp-workload-", dir=scratch_dir) as scratch:
        bench = _Bench(work, X=X, y=y, X_test=X_test, y_test=y_test, consts=consts, device=device, dtype=dtype,
                       R=R, scratch=scratch)
        samplers = {kind: getattr(bench, kind.what)(kind) for kind in sorted(work.counts)}
        samples = {kind: [sample()] for kind, sample in samplers.items()}
        # the kinds that make most of the time are measured twice more and keep the median of three: one
        # stall of a busy machine does not make the estimate
        cost = {k: work.counts[k] * r[0].unit + work.calls.get(k, 0) * r[0].call for k, r in samples.items()}
        total = sum(cost.values())
        for kind in [k for k, v in cost.items() if v >= 0.1 * total]:
            samples[kind] += [samplers[kind](), samplers[kind]()]
        return {kind: _median(r) for kind, r in samples.items()}, str(bench.device)


FINISH_SECONDS = 1.0   # a run's end: the figure (PNG and PDF), arrays, log and metrics written (about 1 s measured)


def process_seconds() -> float | None:
    """How long this process has run (Linux /proc), or None where unknown."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            start = int(fh.read().rsplit(")", 1)[1].split()[19])   # field 22: start time in clock ticks
        with open("/proc/uptime", encoding="ascii") as fh:
            up = float(fh.read().split()[0])
        return max(0.0, up - start / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def estimate(work: Workload, *, startup: float = 0.0, **measure_keywords) -> Estimate:
    """The run's time here: its start-up (``startup``: what it spends before its plan, imports and data; plus
    torch's import when it is still to come), every kind of work's count times its measured time (``measure``'s
    keywords), and FINISH_SECONDS."""
    import sys

    t = time.perf_counter()
    if "torch" not in sys.modules:   # the run imports it too: part of its start-up
        import torch  # noqa: F401

        startup += time.perf_counter() - t
    load = load_average()
    rates, device = measure(work, **measure_keywords)
    startup += FINISH_SECONDS
    seconds = startup + sum(work.counts[k] * r.unit + work.calls.get(k, 0) * r.call for k, r in rates.items())
    return Estimate(seconds=seconds, device=device, rates=rates, work=work, startup=startup,
                    measured_in=time.perf_counter() - t, load=load)


# The slowest pace a run plausibly goes at (a slow single core): runs below CONFIRM_SECONDS at this pace are let
# through without timing anything.
SLOW_MACS_PER_SECOND = 1e8
SLOW_SECONDS_PER_UNIT = 1e-3


def slowest_seconds(work: Workload) -> float:
    """An upper bound of the run's time on any machine it plausibly runs on, from its counts alone: multiply-adds
    (and bytes moved) at SLOW_MACS_PER_SECOND plus SLOW_SECONDS_PER_UNIT per unit of work."""
    from utils import models

    d, width = work.d or 1, models.model_for(work.num_classes).width
    n_test = work.n_test or max(1, work.n // 5)
    total = 0.0
    for kind, count in work.counts.items():
        per = {UPDATE: 2 * kind.C * (kind.b or work.n) * d * width + 2 * kind.C * d * width,
               EVALUATE: kind.C * n_test * d * width, DATASET: 4 * work.n * d,
               SAVE: 4 * kind.C * d * width}[kind.what]
        total += count * (per / SLOW_MACS_PER_SECOND + SLOW_SECONDS_PER_UNIT)
    return total


def confirm(seconds: float, *, yes: bool, what: str = "--lam, --eps, --sigma, --trials") -> None:
    """ValueError for a run estimated above CONFIRM_SECONDS without --yes (one line naming the estimate)."""
    if seconds > CONFIRM_SECONDS and not yes and math.isfinite(seconds):
        raise ValueError(f"the plan is estimated at {duration(seconds)} here (more than "
                         f"{duration(CONFIRM_SECONDS)}); add --yes to run it, or check {what}")
