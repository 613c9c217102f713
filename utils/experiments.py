"""The pieces every script shares: the script protocol (``run_script``), data and constants, the run folder,
and ``Lab``: the run's chains (a utils/sampler.py ``Sampler``, which knows nothing of folders) with the
learned-chain cache, resumable parts and the wall clock per phase.

The protocol, written once in ``run_script``; a script declares its parser, its checks and per mode a
``Script`` (plan, stages), and calls it:

1. parse: ``cli.parse_checked`` validates every flag that needs no data, runs the script's ``check`` (which
   returns the mode and may fill its mode defaults) and freezes the flags (``cli.FrozenArgs``);
2. start: data (unless ``--n``), constants, the run folder's name (``start``); nothing is written;
3. plan: ``Script.plan(ctx) -> Plan``, accountant only: an impossible target fails here, before any file;
4. open: ``ctx.open(chain_steps)`` checks the plan's size and memory, locks the folder, writes config.json
   (``flags``: the frozen flags; ``derived``: mode, constants, data identity, the script's ``ctx.derive``);
5. ``--plan_only`` (or a script with no stages): finish with the plan's metrics and arrays;
6. stages: ``Script.stages(ctx, plan) -> (metrics, arrays, summary)``, the chains, resumable stage by stage;
7. finish: ``ctx.finish`` writes arrays, figure, log, config (complete) and metrics.json last.
"""
from __future__ import annotations

import dataclasses
import os
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np

from utils import accountant, d2d, distributed, models, progress, results, workload
from utils import data as data_mod
from utils.results import RunFolder
from utils.sampler import Sampler, progress_bar  # noqa: F401  (progress_bar: the scripts' bars, named here too)

# A run's start-up, which its time estimate includes: the interpreter and the imports before this module (this
# process's age now, when it is a script that just started) and what run_script does before the plan.
_STARTED_AGO = workload.process_seconds() or 0.0
_STARTED_AGO = _STARTED_AGO if _STARTED_AGO < 30 else 0.0   # imported late by a long-lived process: not a script's
_T_MAIN = time.perf_counter()   # run_script's start (set again by each call)


# ---------------------------------------------------------------- constants
def model_defaults(args, dataset) -> tuple[float, float]:
    """(lam, M) of this run: the flags, else lam from the dataset (a named one's, or a --features file's once
    loaded) and M from the model (utils.models: Model.default_M). Derived values, kept on the run context."""
    named = args.features is None and args.dataset is not None
    lam = args.lam
    if lam is None:
        if named:
            lam = data_mod.spec(args.dataset).default_lam
        elif dataset is not None:
            lam = dataset.default_lam
        else:   # own data planned from --n alone: the rule a loaded features file gets (m = lam n = 0.01)
            lam = data_mod.FEATURES_M / args.n
    M = args.M
    if M is None:
        M = models.model_for(num_classes_of(args, dataset)).default_M
    return lam, M


def constants_for(args, dataset, *, max_removed: int = 1, lam: float | None = None, M: float | None = None):
    """The accountant's constants for this run; a data-dependent L covers D and every D'.
    ``lam`` / ``M``: the values model_defaults chose (default: the flags).

    Replacing S unit-norm rows moves X^T X / n by at most S/n in spectral norm, so
    lambda_max(D) + S/n bounds lambda_max over D and all its neighbours (docs/METHOD.md §1.3).
    """
    n = args.n if args.n is not None else dataset.n
    num_classes = num_classes_of(args, dataset)
    d = d2d.dimension(feature_dim(args, dataset), num_classes=num_classes, rule=getattr(args, "d2d_dim", "params"))
    lambda_max = None
    if args.L is None and args.smoothness == "data":
        if dataset is None:
            raise ValueError("--smoothness data needs the data (drop --n, or give --L)")
        lambda_max = accountant.data_smoothness_lambda_max(dataset.X_train, replaced_rows=max_removed)
        # unit-norm rows give lambda_max <= 1: never looser than the closed-form bound
        lambda_max = min(lambda_max, 1.0)
    return accountant.make_constants(n=n, lam=args.lam if lam is None else lam, M=args.M if M is None else M,
                                     num_classes=num_classes, L=args.L,
                                     smoothness=args.smoothness if args.L is None else "bound",
                                     lambda_max=lambda_max, delta=args.delta, d=d)


def feature_dim(args, dataset) -> int | None:
    """The feature dimension d: --dim, else the data's, else the dataset spec's (None with --features and --n)."""
    if args.dim is not None:
        return args.dim
    if dataset is not None:
        return dataset.d
    return None if args.features is not None or args.dataset is None else data_mod.spec(args.dataset).d


def num_classes_of(args, dataset) -> int:
    """The model's number of classes: the data's, or without data (--n) the dataset name's or the script's."""
    if dataset is not None:
        return dataset.num_classes
    if args.features is None and args.dataset is not None:
        return data_mod.spec(args.dataset).num_classes
    if getattr(args, "num_classes", None) is not None:
        return args.num_classes
    return data_mod.FEATURES_PLAN_CLASSES if getattr(args, "multiclass", False) else 2


def check_model(args, dataset, M: float) -> None:
    """Refuse softmax clipping that can fire (utils.models) for the run's M."""
    models.model_for(num_classes_of(args, dataset)).check_clipping_for_data(
        M=M, X=None if dataset is None else dataset.X_train)


def describe_constants(c) -> str:
    data_l = " (data-dependent: computed from the private data, itself not certified)" \
        if getattr(c, "data_dependent", False) else ""
    return (f"constants: n={c.n} m=lam*n={c.m:.6g} L={c.L:.10g}{data_l} eta=1/L={c.eta:.6g} "
            f"M={c.M:g} delta={c.delta:.6g}" + (f" d={c.d}" if c.d else ""))


def truncate(dataset, n_rows: int):
    """The first ``n_rows`` training rows (the PNSGD scripts make n divisible by every batch size)."""
    if n_rows >= dataset.n:
        return dataset
    identity = dict(dataset.identity, n=n_rows, truncated_to=n_rows)
    return dataclasses.replace(dataset, X_train=dataset.X_train[:n_rows], y_train=dataset.y_train[:n_rows],
                               n=n_rows, identity=identity)


# ---------------------------------------------------------------- the run context
class Context:
    """One invocation: the frozen flags (``args``), data, constants and the run folder; writes everything at
    the end. Values derived from the flags and the data live here, never in ``args``: ``consts`` (n, lam, m,
    L, M, eta, delta, d, ...) and ``extra`` (a script's own, e.g. the sigma audit.py chose), written to
    config.json's ``derived`` beside ``flags``."""

    def __init__(self, args, *, mode: str, dataset, consts, run: RunFolder):
        self.args, self.mode, self.dataset, self.consts, self.run = args, mode, dataset, consts, run
        self.extra: dict = {}
        self.transform = None   # the data transform start() applied, if any
        self.world = distributed.world()   # under torchrun only rank 0 logs and writes
        self.t0 = time.perf_counter()
        self.warnings: list[str] = []
        self._lab = None
        self.work: workload.Workload | None = None       # the plan's counts of work (open())
        self.estimate: workload.Estimate | None = None   # its measured time, when measured
        self._auto_logged: set[str] = set()
        self.reused_seconds = 0.0  # wall clock of the parts reused from interrupted attempts of this run

    def log(self, line: str = "") -> None:
        if self.world.main:
            self.run.log(line)

    def warn(self, line: str) -> None:
        self.warnings.append(line)
        self.log("warning: " + line)

    def lab(self):
        if self._lab is None:
            self._lab = Lab(self)
        return self._lab

    def burn_in(self, sigma: float, *, given=None) -> int:
        """Learning steps T (epochs for mini-batches): the flag, or with ``auto`` the smallest T whose
        W2 distance to the stationary law is provably below 1% of its radius (accountant.burn_in_auto).
        ``auto`` counts full-batch steps; a mini-batch epoch contracts by c^(n/b) <= c and has the same
        fixed-point and stationary-spread bounds, so the T holds in epochs (docs/METHOD.md §6.2).
        """
        T = self.args.burn_in if given is None else given
        if T != "auto":
            return int(T)
        c = self.consts
        model = models.model_for(num_classes_of(self.args, self.dataset))
        dim = model.params(self.dataset.d if self.dataset is not None else (self.args.dim or 1))
        # sigma = 0: no stationary spread to compare with, so an absolute W2 tolerance of 1e-3
        T, bound = accountant.burn_in_auto(sigma=sigma, m=c.m, M=c.M, eta=c.eta, dim=dim,
                                           tol=1e-3 if sigma == 0 else None)
        key = results.json_key(sigma)
        if key not in self._auto_logged:
            self._auto_logged.add(key)
            self.log(f"burn-in auto (sigma={key}): T={T} steps, W2(law after T, stationary) <= {bound:.3g}")
        return T

    def workload(self) -> workload.Workload:
        """An empty count of this run's work (utils/workload.py): the plan fills it as its stages will run."""
        ds, args = self.dataset, self.args
        return workload.Workload(n=self.consts.n, d=feature_dim(args, ds), num_classes=num_classes_of(args, ds),
                                 n_test=None if ds is None else len(ds.y_test), cache=not args.no_cache,
                                 batch_orders=getattr(args, "batch_orders", "per_chain"))

    def time_estimate(self, work: workload.Workload) -> workload.Estimate:
        """The run's time here: every kind of its work timed on its data (random rows of its shape with --n)."""
        ds, c = self.dataset, self.consts
        data = {} if ds is None else dict(X=ds.X_train, y=ds.y_train, X_test=ds.X_test, y_test=ds.y_test)
        return workload.estimate(work, startup=_STARTED_AGO + time.perf_counter() - _T_MAIN, consts=c,
                                 device=self.args.device, dtype=self.args.dtype,
                                 R=getattr(self.args, "projection", 0.0) or 0.0, scratch_dir=self.args.result_dir,
                                 **data)

    def derived(self) -> dict:
        """The constants (metrics.json's ``constants``)."""
        return dataclasses.asdict(self.consts)

    def derive(self, name: str, value):
        """Record a value the run derived (before ``open``: config.json's ``derived`` holds it); returns it."""
        if getattr(self, "_config", None) is not None:
            raise RuntimeError(f"derived value {name!r} recorded after config.json was written")
        self.extra[name] = value
        return value

    def config_derived(self) -> dict:
        """config.json's ``derived``: mode, constants, the data's identity and the script's own derived values."""
        return dict({"mode": self.mode, "constants": self.derived(),
                     "dataset": None if self.dataset is None else self.dataset.identity}, **self.extra)

    def open(self, chain_steps: int | None = None, work: workload.Workload | None = None) -> "Context":
        """Check the plan's size (``work``: what it will run, or ``chain_steps``: chains x steps) and memory,
        then lock the folder and write config.json: a refused plan leaves nothing behind."""
        config = results.config_record(self.args, self.config_derived())
        config["complete"] = False  # until finish() writes it again beside the results it describes
        distributed.check_same("flags and data", results.cache_key(results.resume_inputs(config)))
        self.work = work

        def check_and_write():   # under torchrun rank 0 alone: one error line, one folder
            if chain_steps is not None and not self.args.plan_only:
                self.estimate = check_plan(self.args, self.dataset, chain_steps, work=work, ctx=self)
            self.run.open(config, resume=self.args.resume, plan_only=self.args.plan_only)
            self.run.write_config(config)

        distributed.on_main(check_and_write)
        self._config = config
        return self

    def finish(self, metrics: dict, arrays: dict, *, summary: str = "") -> str:
        """Write arrays.npz, metrics.json, the figure and log.txt; print the summary and paths."""
        from utils import plots

        lab_timings = self._lab.timings if self._lab is not None else {}
        record = {"mode": self.mode, "dataset": dataset_label(self.args), "family": self.args.family}
        record.update(metrics)
        record.setdefault("constants", self.derived())
        # total: this attempt plus the parts it reused from interrupted ones (their own compute time)
        record["wall_clock_seconds"] = dict(lab_timings, total=time.perf_counter() - self.t0 + self.reused_seconds)
        if self.reused_seconds:
            record["wall_clock_seconds"]["reused"] = self.reused_seconds
        record["warnings"] = list(self.warnings)
        distributed.barrier()   # every rank got here: none failed, so the finished run may be written
        if not self.world.main:
            return self.run.path
        record["d2d_dim"] = {"rule": getattr(self.args, "d2d_dim", "params"), "d": self.consts.d}
        if self.args.plan_only:
            _plan_report(self, record)
        elif self.estimate is not None:   # measured before the run (a long one): beside its wall clock
            record["estimated_seconds"], record["estimate"] = self.estimate.seconds, self.estimate.record()
        self.run.write_arrays(arrays)
        figure_paths = plots.draw(self.run.path, results.metrics_record(record, plan_only=self.args.plan_only),
                                  arrays)
        if summary:
            self.log(summary_block(summary))
        certs = record.get("certificates") or ([record["certificate"]] if record.get("certificate") else [])
        if any(str(c.get("comparison", "")).startswith("indistinguishable from retraining") for c in certs):
            self.log("certificates (metrics.json): each unlearning certificate says the chains are (eps, delta)-"
                     + accountant.retraining_comparison() + " (docs/METHOD.md §6.1); D2D's compare with D2D "
                     "run from scratch")
        names = ["config.json", "metrics.json", "arrays.npz", "log.txt"] + [os.path.basename(p) for p in figure_paths]
        self.log(f"wrote {self.run.path}/ ({', '.join(names)})")
        self.run.write_log()
        self.run.write_config(dict(self._config, complete=True,
                                   finished=datetime.now(timezone.utc).isoformat(timespec="seconds")))
        # metrics.json marks the run finished, so it is written last: a failure before it (a full disk)
        # leaves a run that resumes, never one that looks finished without its log
        self.run.write_metrics(record, plan_only=self.args.plan_only)
        self.run.finish(latest=not self.args.plan_only)   # `latest` names runs with results, never a plan
        self.run.close()
        return self.run.path


def _plan_report(ctx, record: dict) -> None:
    """--plan_only: the tables the plan saved, and the time the run would take here (each kind of its work
    timed on this machine: metrics.json's ``estimated_seconds`` and ``estimate``)."""
    from utils import plan_report

    lines = plan_report.plan_lines(record)
    if lines:
        ctx.log("plan saved in metrics.json:")
        for line in lines:
            ctx.log("  " + line)
    record["estimated_seconds"] = None
    if os.environ.get("UNLEARN_NO_CALIBRATION") == "1":
        return
    work = ctx.work
    if work is None or not work.counts:
        return
    if not work.d:
        ctx.log("no time estimate: each step's cost depends on the feature dimension d (give --dim)")
        return
    ctx.log(f"timing each of the {len(work.counts)} kinds of work of this plan here (about "
            f"{len(work.counts) * 0.2:.0f} s on an idle machine, longer on a busy one) ...")
    try:
        est = ctx.time_estimate(work)
    except (RuntimeError, ValueError) as exc:   # e.g. no such device here: the plan stands without its time
        ctx.log(f"no time estimate: {str(exc).splitlines()[0]}")
        return
    for line in est.lines():
        ctx.log(line)
    record["estimated_seconds"], record["estimate"] = est.seconds, est.record()


# Plans above this many chain-steps (chains x updates) that give no count of their work need --yes: at a few
# thousand chain-steps per second on a CPU that is days of work (a plan's Workload is priced instead).
PLAN_CONFIRM_CHAIN_STEPS = 10 ** 9


def check_plan(args, dataset, chain_steps: int, *, work: workload.Workload | None = None, ctx=None):
    """UsageError for a plan that needs --yes or more memory than the device has. With ``work`` (and the run
    context ``ctx``) the plan's time is what needs --yes (workload.CONFIRM_SECONDS): a run whose slowest
    conceivable time is below it is let through unmeasured, any other is timed here; returns that
    workload.Estimate, or None when nothing was measured."""
    yes = getattr(args, "yes", False)
    if work is None or ctx is None:
        if chain_steps > PLAN_CONFIRM_CHAIN_STEPS and not yes:
            raise ValueError(f"the plan runs {chain_steps:.3g} chain-steps (more than {PLAN_CONFIRM_CHAIN_STEPS:.0e}: "
                             "days of work); add --yes to run it, or check --lam, --eps, --sigma, --trials")
    if dataset is not None:
        check_memory(trials=args.trials, n=dataset.n, d=dataset.d, num_classes=dataset.num_classes,
                     device=args.device, dtype=args.dtype)
    if work is None or ctx is None or yes or not work.d or workload.slowest_seconds(work) <= workload.CONFIRM_SECONDS:
        return None
    estimate = ctx.time_estimate(work)
    ctx.log(f"estimated time: {workload.duration(estimate.seconds)} on {estimate.device} (measured here just now)")
    workload.confirm(estimate.seconds, yes=yes)
    return estimate


def check_learning(*, C: int, T: int, b, dataset, consts, device, dtype: str, yes: bool) -> None:
    """unlearn.py learn's guard: the memory of C chains on the data, then the time of learning (T steps, or epochs
    of batch b, and one evaluation), timed here only when it could exceed workload.CONFIRM_SECONDS; ValueError
    (one line) unless --yes."""
    check_memory(trials=C, n=dataset.n, d=dataset.d, num_classes=dataset.num_classes, device=device, dtype=dtype)
    _confirm_chains(C, T, b=b, X=dataset.X_train, y=dataset.y_train, X_test=dataset.X_test, y_test=dataset.y_test,
                    num_classes=dataset.num_classes, consts=consts, device=device, dtype=dtype, yes=yes,
                    what="--trials, --burn_in, --m, --sigma")


def check_unlearning(*, C: int, K: int, b, X, y, X_test, y_test, num_classes: int, consts, device, dtype: str,
                     yes: bool) -> None:
    """unlearn.py remove's guard: the time of K steps (or epochs of batch b) of the state's C chains on its rows
    (X, y) and one evaluation, as check_learning prices learning; ValueError (one line) unless --yes."""
    _confirm_chains(C, K, b=b, X=X, y=y, X_test=X_test, y_test=y_test, num_classes=num_classes, consts=consts,
                    device=device, dtype=dtype, yes=yes, what="--eps (a smaller eps needs a larger K)")


def _confirm_chains(C: int, steps: int, *, b, X, y, X_test, y_test, num_classes: int, consts, device, dtype: str,
                    yes: bool, what: str) -> None:
    """C chains run for ``steps`` on (X, y), then evaluated: let through when even a slow machine finishes within
    workload.CONFIRM_SECONDS, else timed here and refused above it without --yes."""
    work = workload.Workload(n=len(X), d=X.shape[1], num_classes=num_classes, n_test=len(y_test), cache=False)
    work.learn(C, steps, b=b, sigma=1.0)
    work.evaluate(C)
    if yes or workload.slowest_seconds(work) <= workload.CONFIRM_SECONDS:
        return
    est = workload.estimate(work, consts=consts, X=X, y=y, X_test=X_test, y_test=y_test, device=device, dtype=dtype)
    workload.confirm(est.seconds, yes=yes, what=what)


# Each chain's noise stream is a torch.Generator of its own (engine.chain_generators): about 2.6 KB measured
# (CPU, torch 2.x) with the Python object; counted as 4 KiB.
GENERATOR_BYTES = 4096


def check_memory(*, trials: int, n: int, d: int, num_classes: int, device, dtype: str) -> None:
    """ValueError when ``trials`` chains on n x d data need more memory than the device has free: per chain the
    state and its copies, one block of noise and its generator; the chunked products' intermediates once."""
    from utils import engine

    itemsize = 4 if dtype == "float32" else 8
    width = models.model_for(num_classes).width
    per_chain = itemsize * (4 * d * width + engine.NOISE_BLOCK_ELEMS) + GENERATOR_BYTES
    need = trials * per_chain + min(trials * n * width * itemsize, engine.MAX_CHUNK_BYTES)
    device = engine.resolve_device(device)
    if device.type == "cuda":
        import torch

        have, where = torch.cuda.get_device_properties(device).total_memory, str(device)
    else:
        try:
            have, where = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine"
        except (ValueError, OSError, AttributeError):
            return
        free = _available_bytes()
        if free is not None and free < have:
            have, where = free, "this machine (free now)"
    if need > have:
        raise ValueError(f"--trials {trials} needs about {need / 2 ** 30:.1f} GiB for the chains but {where} "
                         f"has {have / 2 ** 30:.1f} GiB (allowed: fewer --trials)")


def _available_bytes() -> int | None:
    """The memory the kernel can give a new process now (Linux MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def dataset_label(args) -> str:
    """The dataset's name, or for a problem planned from --n alone (no --dataset) the folder that says so."""
    from utils import cli

    return args.dataset if args.dataset is not None else cli.NO_DATASET


def describe_data(args, consts) -> str:
    """What the run is on, for its first log line: the dataset, or the problem's shape when there is none."""
    if args.dataset is not None:
        return args.dataset
    d = feature_dim(args, None)
    return (f"no dataset (a problem of n={consts.n} rows" + (f", d={d}" if d else "")
            + f", {num_classes_of(args, None)} classes)")


def given_flags(args) -> tuple:
    """The flags given with a non-default value (FrozenArgs.given; a plain namespace's given_flags)."""
    return tuple(getattr(args, "given", None) or getattr(args, "given_flags", ()) or ())


def start(args, *, mode: str, dataset_loader=None, max_removed=1, transform=None) -> Context:
    """Everything before the plan: result-dir check, data (unless --n), constants, the run folder.

    ``transform`` may change the loaded dataset (e.g. the PNSGD truncation) before constants are made.
    ``max_removed``: the most rows any D' of the run replaces, or a function of n giving it (when which
    removal sizes fit depends on the data).
    The folder is opened (locked, config written) only by ``ctx.open()``, after the plan is known.
    """
    from utils import cli

    args = cli.freeze(args)   # validated: from here on a derived value goes on the context, never in args
    world = distributed.setup(args.device)
    if world.main:
        results.check_writable(args.result_dir)
    dataset = None
    if args.n is None:
        dataset = (dataset_loader or data_mod.load_dataset)(
            args.dataset, data_dir=args.data_dir, features=args.features,
            classes=tuple(args.classes) if args.classes else None, seed=args.seed)
        if transform is not None:
            dataset = transform(dataset)
    lam, M = model_defaults(args, dataset)
    check_model(args, dataset, M)
    if callable(max_removed):
        max_removed = max_removed(args.n if args.n is not None else dataset.n)
    consts = constants_for(args, dataset, max_removed=max_removed, lam=lam, M=M)
    if not args.plan_only and args.n is None:
        from utils import engine  # torch: only now that the flags and the data are known to be good

        engine.resolve_device(args.device)  # "--device cuda" without CUDA fails before any file exists
    # the folder's hash covers lam and M as used (a default and the same value given are the same run's
    # inputs), as it did when they were written into the flags: a command line keeps its folder
    run = RunFolder(args.result_dir, args.family, dataset_label(args), mode,
                    run=results.run_name(results.to_jsonable(dict(vars(args), lam=lam, M=M)), mode=mode,
                                         given=given_flags(args)))
    ctx = Context(args, mode=mode, dataset=dataset, consts=consts, run=run)
    ctx.transform = transform   # what it recorded about the data (main_sgd.Truncation) is the plan's to read
    ctx.log(f"{args.family} {mode} on {describe_data(args, consts)}: " + describe_constants(consts))
    if consts.d is not None and models.model_for(consts.num_classes).width > 1:
        ctx.log(f"D2D dimension d={consts.d} (--d2d_dim {args.d2d_dim}: "
                + ("the model's parameter count, features x classes)" if args.d2d_dim == "params"
                   else "the feature dimension, as the reference; below the parameter count D2D's theorem needs)"))
    if getattr(consts, "data_dependent", False):
        ctx.warn("L is data-dependent: it is computed from the private training data, which the "
                 "certificate does not account for")
    return ctx


# ---------------------------------------------------------------- the script protocol
@dataclasses.dataclass
class Plan:
    """What a script's plan step gives: the metrics and arrays known before any chain runs, the work the stages
    will run (``work``, a utils/workload.py count, or only its ``chain_steps``; ctx.open checks it, None: no
    check), the summary of a --plan_only run, and ``tables``, whatever the stages need from the plan."""

    metrics: dict
    arrays: dict
    chain_steps: int | None = None
    summary: str = "plan only"
    tables: Any = None
    work: workload.Workload | None = None   # what the stages will run, counted by kind (its chain-steps)

    def __post_init__(self):
        if self.work is not None and self.chain_steps is None:
            self.chain_steps = self.work.chain_steps


@dataclasses.dataclass(frozen=True)
class Script:
    """One mode of a script: ``plan(ctx) -> Plan``; ``stages(ctx, plan) -> (metrics, arrays, summary)`` (None:
    the plan is the result, e.g. baseline.py --find_k); ``start(args) -> dict`` of keywords for ``start``
    (max_removed, transform)."""

    plan: Callable[[Context], Plan]
    stages: Callable[[Context, Plan], tuple] | None = None
    start: Callable[[Any], dict] = lambda args: {}


def run_script(parser, argv, *, check, scripts, accounting_modes=()) -> int:
    """The script protocol (this module's docstring): parse -> check -> freeze -> start -> plan -> open ->
    plan-only finish -> stages -> finish. ``check(args) -> mode``; ``scripts``: mode -> Script. Returns 0."""
    from utils import cli

    global _T_MAIN
    _T_MAIN = time.perf_counter()
    args, mode = cli.parse_checked(parser, argv, check=check, accounting_modes=accounting_modes)
    script = scripts[mode]
    ctx = start(args, mode=mode, **script.start(args))
    plan = script.plan(ctx)
    ctx.open(chain_steps=plan.chain_steps, work=plan.work)
    if args.plan_only or script.stages is None:
        ctx.finish(plan.metrics, plan.arrays, summary=plan.summary)
        return 0
    with progress.run(plan.work.progress_weight() if plan.work is not None else None):
        metrics, arrays, summary = script.stages(ctx, plan)
    ctx.finish(metrics, arrays, summary=summary)
    return 0


# ---------------------------------------------------------------- chains
class _CachedChains:
    """One learning run's entry of the learned-chain cache (results.ChainCache), as a sampler.ChainStore."""

    def __init__(self, cache, inputs: dict, dtype: str):
        self.cache, self.inputs, self.dtype = cache, inputs, dtype

    def load(self, shape):
        got = self.cache.get(self.inputs, shape=shape, dtype=self.dtype)
        return None if got is None else got["w"]

    def save(self, w) -> None:
        self.cache.put(self.inputs, {"w": w})


class Lab(Sampler):
    """The run's sampler (utils/sampler.py) bound to its run folder: learned chains reused from the cache,
    resumable stages and streams, and the wall clock of each phase (metrics.json's wall_clock_seconds)."""

    def __init__(self, ctx: Context):
        args, ds = ctx.args, ctx.dataset
        super().__init__(X=ds.X_train, y=ds.y_train, X_test=ds.X_test, y_test=ds.y_test,
                         num_classes=ds.num_classes, consts=ctx.consts, seed=args.seed, trials=args.trials,
                         device=args.device, dtype=args.dtype, R=getattr(args, "projection", 0.0),
                         batch_orders=getattr(args, "batch_orders", "per_chain"), removal=args.removal)
        self.ctx = ctx
        self.cache = results.ChainCache(args.result_dir, enabled=not args.no_cache and self.world.main, note=ctx.log)
        self.timings: dict[str, float] = {}
        self.base_identity = dict(ds.identity, fingerprint=ds.fingerprint)

    @contextmanager
    def timed(self, phase: str):
        """Adds the wall clock of the chains' work in ``phase`` to ``timings`` (the device's queue drained first)."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self.synchronize()
            self.timings[phase] = self.timings.get(phase, 0.0) + time.perf_counter() - t

    def learn(self, *, sigma: float, T: int, batch_size=None, data=None, phase="learn", key=(),
              C=None, eta=None):
        """Sampler.learn, reusing the chains of an identical earlier run from the cache (the same values)."""
        C = C or self.trials
        c = self.consts
        inputs = {"data": self.base_identity if data is None else data_mod.fingerprint(*data),
                  "lam": c.lam, "L": c.L, "M": c.M, "m": c.m, "eta": c.eta if eta is None else eta,
                  "sigma": sigma, "T": T, "R": self.R, "b": batch_size, "dtype": self.ctx.args.dtype,
                  "trials": C, "seed": self.seed, "key": list(map(str, (phase,) + tuple(key))),
                  "streams": self.engine.STREAMS_VERSION}
        if batch_size not in (None, "full") and self.batch_orders != "per_chain":
            inputs["batch_orders"] = self.batch_orders  # per_chain keys stay as they were
        return super().learn(sigma=sigma, T=T, batch_size=batch_size, data=data, phase=phase, key=key, C=C,
                             eta=eta, store=_CachedChains(self.cache, inputs, self.ctx.args.dtype))

    def learn_on_D(self, *, sigma: float, T: int):
        """The chains learned on D at sigma, under the one key every script uses, so they share the cache."""
        return self.learn(sigma=sigma, T=T, key=("sigma", results.json_key(sigma)))

    def stage(self, key: str, compute):
        """A resumable piece of a run: reuse the part an interrupted run saved (saying so), else compute
        and save it with the seconds it took, so that resumed runs report the wall clock of all parts."""
        part = distributed.broadcast(self.ctx.run.load_part(key) if self.world.main else None)
        if part is not None:
            seconds = float(part.pop(_SECONDS, 0.0))
            self.ctx.reused_seconds += seconds
            self.ctx.log(f"resume: reusing {key} from the interrupted run ({seconds:.1f} s)")
            return part
        t, reused = time.perf_counter(), self.ctx.reused_seconds
        arrays = compute()
        seconds = time.perf_counter() - t + self.ctx.reused_seconds - reused  # with what compute() reused
        if self.world.main:
            self.ctx.run.save_part(key, dict(arrays, **{_SECONDS: seconds}))
        return arrays

    def stream_checkpoint(self, key: str):
        """A sequence of requests resumable request by request: returns (requests finished by an
        interrupted run, their saved arrays or None, save) where ``save(done, arrays)`` records the state
        after ``done`` requests (one part per stream, replaced after every request). Under torchrun rank 0
        reads and writes the part and every rank gets what it read; ``arrays`` must hold all the chains."""
        part = distributed.broadcast(self.ctx.run.load_part(key) if self.world.main else None)
        done, base = 0, 0.0
        if part is not None:
            done, base = int(part.pop("requests_done")), float(part.pop(_SECONDS, 0.0))
            self.ctx.reused_seconds += base
            self.ctx.log(f"resume: {key}: reusing requests 1..{done} from the interrupted run ({base:.1f} s)")
        t = time.perf_counter()

        def save(finished: int, arrays: dict) -> None:
            if self.world.main:
                self.ctx.run.save_part(key, dict(arrays, requests_done=finished,
                                                 **{_SECONDS: base + time.perf_counter() - t}))
        return done, part, save


_SECONDS = "wall_clock_seconds"  # the compute time a part records beside its arrays


def sigma_table(consts, *, Ks, eps_list, S: int, bound: str = "paper") -> list[dict]:
    """Smallest sigma certifying eps after K unlearning steps of S points, with its alpha* and the bound that
    gave it (docs/METHOD.md §3.2 with bound="paper"; docs/METHOD.md §7 with "best")."""
    from utils import bounds

    rows = []
    for K in Ks:
        for eps in eps_list:
            sigma = bounds.pngd_smallest_sigma(bound, K=K, eps_target=eps, S=S, consts=consts)
            achieved, alpha, name = bounds.pngd_eps(bound, Ks=[K], sizes=[S], sigma=sigma, consts=consts)
            rows.append({"K": int(K), "epsilon": float(eps), "sigma": sigma, "alpha": alpha,
                         "eps_achieved": achieved, "bound_name": name})
    return rows


def summary_block(text: str) -> str:
    """A ``title: a; b; c`` summary as a short block: the title, then one indented line per part."""
    parts = [p.strip() for p in text.split("; ") if p.strip()]
    if len(parts) < 2:
        return text
    title, sep, first = parts[0].partition(": ")
    head = [title + ":", "  " + first] if sep and first else [parts[0]]
    return "\n".join(head + ["  " + p for p in parts[1:]])


def summary_stats(acc: np.ndarray) -> dict:
    """Mean, std and standard error of per-trial accuracies (what metrics.json shows)."""
    acc = np.asarray(acc, dtype=np.float64)
    std = float(acc.std(ddof=1)) if acc.size > 1 else 0.0
    return {"mean": float(acc.mean()), "std": std, "se": float(std / np.sqrt(acc.size)) if acc.size else 0.0,
            "trials": int(acc.size)}
