"""The pieces every script shares: set up data and constants, learn / unlearn / retrain / evaluate
chains over trials (with the learned-chain cache and resumable parts), and write the run folder.

A script reads: ``args = parse(...)`` -> ``ctx = start(args, mode=...)`` -> plan (accountant) ->
``lab = ctx.lab()`` -> chains -> ``ctx.finish(metrics, arrays)``.
"""
from __future__ import annotations

import dataclasses
import os
import time
from contextlib import contextmanager

import numpy as np

from utils import accountant, results
from utils import data as data_mod
from utils.results import RunFolder


# ---------------------------------------------------------------- constants
def constants_for(args, dataset, *, max_removed: int = 1):
    """The accountant's constants for this run; a data-dependent L covers D and every D'.

    Replacing S unit-norm rows moves X^T X / n by at most S/n in spectral norm, so
    lambda_max(D) + S/n bounds lambda_max over D and all its neighbours (SPEC Part I item 4).
    """
    n = args.n if args.n is not None else dataset.n
    d = args.dim if args.dim is not None else (dataset.d if dataset is not None else None)
    num_classes = dataset.num_classes if dataset is not None else (10 if args.multiclass else 2)
    lambda_max = None
    if args.L is None and args.smoothness == "data":
        if dataset is None:
            raise ValueError("--smoothness data needs the data (drop --n, or give --L)")
        lambda_max = accountant.data_smoothness_lambda_max(dataset.X_train, replaced_rows=max_removed)
        # unit-norm rows give lambda_max <= 1: never looser than the closed-form bound
        lambda_max = min(lambda_max, 1.0)
    return accountant.make_constants(n=n, lam=args.lam, M=args.M, num_classes=num_classes, L=args.L,
                                     smoothness=args.smoothness if args.L is None else "bound",
                                     lambda_max=lambda_max, delta=args.delta, d=d)


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
    """One invocation: flags, data, constants and the run folder; writes everything at the end."""

    def __init__(self, args, *, mode: str, dataset, consts, run: RunFolder):
        self.args, self.mode, self.dataset, self.consts, self.run = args, mode, dataset, consts, run
        self.t0 = time.perf_counter()
        self.warnings: list[str] = []
        self._lab = None
        self._auto_logged: set[str] = set()

    def log(self, line: str = "") -> None:
        self.run.log(line)

    def warn(self, line: str) -> None:
        self.warnings.append(line)
        self.run.log("warning: " + line)

    def lab(self):
        if self._lab is None:
            self._lab = Lab(self)
        return self._lab

    def burn_in(self, sigma: float, *, given=None) -> int:
        """Learning steps T (epochs for mini-batches): the flag, or with ``auto`` the smallest T whose
        W2 distance to the stationary law is provably below 1% of its radius (accountant.burn_in_auto).
        ``auto`` counts full-batch steps; a mini-batch epoch contracts at least as much as one of them.
        """
        T = self.args.burn_in if given is None else given
        if T != "auto":
            return int(T)
        c = self.consts
        k = 1 if self.dataset is None or self.dataset.num_classes == 2 else self.dataset.num_classes
        dim = (self.dataset.d if self.dataset is not None else (c.d or 1)) * k
        # sigma = 0: no stationary spread to compare with, so an absolute W2 tolerance of 1e-3
        T, bound = accountant.burn_in_auto(sigma=sigma, m=c.m, M=c.M, eta=c.eta, dim=dim,
                                           tol=1e-3 if sigma == 0 else None)
        key = results.json_key(sigma)
        if key not in self._auto_logged:
            self._auto_logged.add(key)
            self.log(f"burn-in auto (sigma={key}): T={T} steps, W2(law after T, stationary) <= {bound:.3g}")
        return T

    def derived(self) -> dict:
        return dataclasses.asdict(self.consts)

    def open(self) -> "Context":
        config = results.config_record(self.args, {"mode": self.mode, "constants": self.derived(),
                                                   "dataset": None if self.dataset is None
                                                   else self.dataset.identity})
        self.run.open(config, resume=self.args.resume, plan_only=self.args.plan_only)
        self.run.write_config(config)
        return self

    def finish(self, metrics: dict, arrays: dict, *, summary: str = "") -> str:
        """Write arrays.npz, metrics.json, the figure and log.txt; print the summary and paths."""
        from utils import plots

        lab_timings = self._lab.timings if self._lab is not None else {}
        record = {"mode": self.mode, "dataset": self.args.dataset, "family": self.args.family}
        record.update(metrics)
        record.setdefault("constants", self.derived())
        record["wall_clock_seconds"] = dict(lab_timings, total=time.perf_counter() - self.t0)
        record["warnings"] = list(self.warnings)
        self.run.write_arrays(arrays)
        figure_paths = plots.draw(self.run.path, results.metrics_record(record, plan_only=self.args.plan_only),
                                  arrays)
        self.run.write_metrics(record, plan_only=self.args.plan_only)
        if summary:
            self.log(summary)
        self.log(f"wrote {self.run.path}/ (config.json, metrics.json, arrays.npz, log.txt, "
                 f"{', '.join(os.path.basename(p) for p in figure_paths)})")
        self.run.write_log()
        self.run.finish()
        self.run.close()
        return self.run.path


def start(args, *, mode: str, dataset_loader=None, max_removed=1, transform=None) -> Context:
    """Everything before the plan: result-dir check, data (unless --n), constants, the run folder.

    ``transform`` may change the loaded dataset (e.g. the PNSGD truncation) before constants are made.
    ``max_removed``: the most rows any D' of the run replaces, or a function of n giving it (when which
    removal sizes fit depends on the data).
    The folder is opened (locked, config written) only by ``ctx.open()``, after the plan is known.
    """
    results.check_writable(args.result_dir)
    dataset = None
    if args.n is None:
        dataset = (dataset_loader or data_mod.load_dataset)(
            args.dataset, data_dir=args.data_dir, features=args.features,
            classes=tuple(args.classes) if args.classes else None, seed=args.seed)
        if transform is not None:
            dataset = transform(dataset)
        if args.lam is None:
            args.lam = dataset.default_lam
    elif args.lam is None:
        raise ValueError("--lam is needed with --n and --features (no data is loaded to choose it)")
    if callable(max_removed):
        max_removed = max_removed(args.n if args.n is not None else dataset.n)
    consts = constants_for(args, dataset, max_removed=max_removed)
    if not args.plan_only and args.n is None:
        from utils import engine  # torch: only now that the flags and the data are known to be good

        engine.resolve_device(args.device)  # "--device cuda" without CUDA fails before any file exists
    run = RunFolder(args.result_dir, args.family, args.dataset, mode)
    ctx = Context(args, mode=mode, dataset=dataset, consts=consts, run=run)
    ctx.log(f"{args.family} {mode} on {args.dataset}: " + describe_constants(consts))
    if getattr(consts, "data_dependent", False):
        ctx.warn("L is data-dependent: it is computed from the private training data, which the "
                 "certificate does not account for")
    return ctx


# ---------------------------------------------------------------- chains
class Lab:
    """Runs chains on the device: learn on D, continue (unlearn) on D', retrain on D' from scratch."""

    def __init__(self, ctx: Context):
        import torch

        from utils import engine

        self.torch, self.engine, self.ctx = torch, engine, ctx
        args, ds = ctx.args, ctx.dataset
        self.device = engine.resolve_device(args.device)
        self.dtype = engine.resolve_dtype(args.dtype)
        self.k = ds.num_classes
        self.trials = args.trials
        self.seed = args.seed
        self.batch_orders = getattr(args, "batch_orders", "per_chain")
        self.R = float(getattr(args, "projection", 0.0) or 0.0)
        self.cache = results.ChainCache(args.result_dir, enabled=not args.no_cache)
        self.timings: dict[str, float] = {}
        self.X, self.y = ds.X_train, ds.y_train
        self.task_D = self.task(self.X, self.y)
        self.X_test = torch.as_tensor(ds.X_test, device=self.device, dtype=self.dtype)
        self.y_test = torch.as_tensor(ds.y_test, device=self.device)
        self.base_identity = dict(ds.identity, fingerprint=ds.fingerprint)

    # -- helpers
    def task(self, X, y):
        return self.engine.to_task(X, y, self.k, device=self.device, dtype=self.dtype)

    def gen(self, *keys):
        return self.engine.generator_for(self.seed, *keys, device=self.device)

    @contextmanager
    def timed(self, phase: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                self.torch.cuda.synchronize(self.device)
            self.timings[phase] = self.timings.get(phase, 0.0) + time.perf_counter() - t

    def steps_per_unit(self, batch_size) -> int:
        b = self.ctx.dataset.n if batch_size in (None, "full") else int(batch_size)
        return self.ctx.dataset.n // b

    def perms(self, batch_size, C):
        """Batch orders of C chains: one per chain, or one per group of consecutive chains (--batch_orders,
        main_sgd.py); group g takes the order that chain g has with one order per chain."""
        if batch_size in (None, "full"):
            return None
        group = self.engine.batch_order_group(self.batch_orders, C)
        orders = self.engine.make_perms(-(-C // group), self.ctx.dataset.n, generator=self.gen("perms", C),
                                        device=self.device)
        return self.engine.share_orders(orders, C, group)

    # -- the three operations
    def init(self, *, sigma: float, C: int, key):
        return self.engine.init_chains(C=C, d=self.ctx.dataset.d, num_classes=self.k, sigma=sigma,
                                       m=self.ctx.consts.m, generator=self.gen("init", *key),
                                       device=self.device, dtype=self.dtype)

    def advance(self, w, task, *, steps: int, sigma: float, key, batch_size=None, perms=None,
                eta=None, desc="run", phase="run"):
        """``steps`` noisy steps (epochs for mini-batches) from ``w`` on ``task``."""
        c = self.ctx.consts
        b = None if batch_size in (None, "full") else int(batch_size)
        C = w.shape[0]
        total = steps * (self.steps_per_unit(b))
        with self.timed(phase), progress_bar(desc, total, C) as bar:
            return self.engine.run_chains(w, task, steps=steps, eta=c.eta if eta is None else eta,
                                          sigma=sigma, m=c.m, M=c.M, R=self.R, batch_size=b, perms=perms,
                                          generator=self.gen(phase, *key), progress=bar.update)

    def learn(self, *, sigma: float, T: int, batch_size=None, data=None, phase="learn", key=(),
              C=None, eta=None):
        """T steps from the initial law on D (or on ``data`` = (X, y)): cached, identical when reused.

        With sigma = 0 every chain is the same, so one chain runs and is repeated.
        """
        C = C or self.trials
        X, y = data if data is not None else (self.X, self.y)
        c = self.ctx.consts
        inputs = {"data": self.base_identity if data is None else data_mod.fingerprint(X, y),
                  "lam": self.ctx.args.lam, "L": c.L, "M": c.M, "m": c.m, "eta": c.eta if eta is None else eta,
                  "sigma": sigma, "T": T, "R": self.R, "b": batch_size, "dtype": self.ctx.args.dtype,
                  "trials": C, "seed": self.seed, "key": list(map(str, (phase,) + tuple(key)))}
        if batch_size not in (None, "full") and self.batch_orders != "per_chain":
            inputs["batch_orders"] = self.batch_orders  # per_chain keys stay as they were
        run_C = 1 if sigma == 0 else C
        cached = self.cache.get(inputs)
        if cached is not None:
            w = self.torch.as_tensor(cached["w"], device=self.device, dtype=self.dtype)
        else:
            task = self.task_D if data is None else self.task(X, y)
            w0 = self.init(sigma=sigma, C=run_C, key=(phase,) + tuple(key))
            w = self.advance(w0, task, steps=T, sigma=sigma, key=tuple(key), batch_size=batch_size,
                             perms=self.perms(batch_size, run_C), eta=eta, desc=phase, phase=phase)
            self.cache.put(inputs, {"w": w.cpu().numpy()})
        if run_C != C:
            w = w.expand(C, *w.shape[1:]).clone()
        return w

    def learn_on_D(self, *, sigma: float, T: int):
        """The chains learned on D at sigma, under the one key every script uses, so they share the cache."""
        return self.learn(sigma=sigma, T=T, key=("sigma", results.json_key(sigma)))

    def d2d_learn(self, T: int):
        """D2D's learning: one noiseless chain, T steps of 2/(L+m) on D (the same in every trial)."""
        return self.learn(sigma=0.0, T=T, eta=self.ctx.consts.d2d_step, key=("d2d",), C=1, phase="d2d")

    def accuracy(self, w) -> np.ndarray:
        return self.engine.accuracy(w, self.X_test, self.y_test).numpy()  # float64 on the CPU already

    # -- Descent-to-Delete (Neel et al. 2021), the baseline of both papers
    def noisy_copies(self, w, *, sigma: float, C: int, key):
        """C copies of one chain w, each plus N(0, sigma^2 I): D2D's published outputs."""
        shape = (C,) + tuple(w.shape[1:])
        noise = self.torch.randn(shape, generator=self.gen(*key), device=self.device, dtype=self.dtype)
        return w.expand(shape) + sigma * noise

    def d2d_one_shot(self, task, *, T: int, noise: dict) -> dict:
        """One-shot D2D (SPEC 2.3, Part I item 7): noiseless GD with step 2/(L+m) is the same in every trial,
        so one chain learns T steps on D and runs K steps on D' (``task``); each trial publishes
        w_K + N(0, sigma_1^2 I). ``noise`` maps K -> {eps key: sigma_1}. Returns per-trial accuracies keyed
        ``"K{K}_eps{ek}"``, and ``"learn"`` (the one learned chain)."""
        step = self.ctx.consts.d2d_step
        w = self.d2d_learn(T)
        out = {"learn": self.accuracy(w)}
        for K in sorted(noise):
            w_K = self.advance(w, task, steps=K, sigma=0.0, eta=step, key=("d2d", K), phase="d2d",
                               desc=f"D2D K={K}")
            for ek, s in noise[K].items():
                out[f"K{K}_eps{ek}"] = self.accuracy(self.noisy_copies(w_K, sigma=s, C=self.trials,
                                                                       key=("d2d_noise", K, ek)))
        return out

    # -- removal requests
    def removal_stream(self, sizes, *, key=("removal",)):
        """Cumulative replacement: request s replaces sizes[s] NEW rows, earlier replacements stay.

        Yields engine.Removal(rows, replaced, X', y') lazily (numpy), one dataset copy at a time.
        """
        return self.engine.removal_stream(self.X, self.y, list(sizes), num_classes=self.k,
                                          generator=self.gen(*key), mode=self.ctx.args.removal)

    def removal(self, S: int, *, key=("removal",)):
        """The neighbouring dataset D' of a single request of S rows."""
        return next(iter(self.removal_stream([S], key=key)))

    def stage(self, key: str, compute):
        """A resumable piece of a run: reuse the part an interrupted run saved, else compute and save it."""
        part = self.ctx.run.load_part(key)
        if part is not None:
            return part
        arrays = compute()
        self.ctx.run.save_part(key, arrays)
        return arrays


def sigma_table(consts, *, Ks, eps_list, S: int) -> list[dict]:
    """Smallest sigma certifying eps after K unlearning steps of S points, with its alpha* (SPEC 3.1.2)."""
    rows = []
    for K in Ks:
        for eps in eps_list:
            sigma = accountant.smallest_sigma_pngd(K=K, eps_target=eps, S=S, consts=consts)
            achieved, alpha = accountant.dp_epsilon_unlearn(K=K, S=S, sigma=sigma, consts=consts)
            rows.append({"K": int(K), "epsilon": float(eps), "sigma": sigma, "alpha": alpha,
                         "eps_achieved": achieved})
    return rows


def d2d_output_sigma(consts, *, K: int, eps: float) -> float:
    """D2D one-shot output noise sigma_1(I = K, eps) for these constants (SPEC 3.1.7)."""
    return accountant.d2d_sigma_1(I=K, eps=eps, M=consts.M, m=consts.m, n=consts.n, gamma=consts.gamma,
                                  delta=consts.delta)


def progress_bar(desc: str, total: int, C: int):
    """A tqdm bar of `total` steps of C chains; off for nothing to do, or with UNLEARN_NO_PROGRESS=1."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"{desc} [{C} chains]", unit="step", leave=False,
                disable=total == 0 or os.environ.get("UNLEARN_NO_PROGRESS") == "1")


def summary_stats(acc: np.ndarray) -> dict:
    """Mean, std and standard error of per-trial accuracies (what metrics.json shows)."""
    acc = np.asarray(acc, dtype=np.float64)
    std = float(acc.std(ddof=1)) if acc.size > 1 else 0.0
    return {"mean": float(acc.mean()), "std": std, "se": float(std / np.sqrt(acc.size)) if acc.size else 0.0,
            "trials": int(acc.size)}
