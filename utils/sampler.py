"""The chains of a run on a device, knowing nothing of run folders: learn on D, continue (unlearn) on D',
retrain on D' from scratch, evaluate, and draw removal requests (docs/METHOD.md §2).

A ``Sampler`` is built from plain values (data arrays, the accountant's constants, seed, trials, device,
dtype), so a notebook or a test can run chains without a result directory:

    s = Sampler(X=ds.X_train, y=ds.y_train, X_test=ds.X_test, y_test=ds.y_test, num_classes=2,
                consts=accountant.make_constants(n=ds.n, lam=1e-3, M=1.0), seed=0, trials=10, device="cpu")
    acc = s.accuracy(s.learn(sigma=0.1, T=100))

Every random draw comes from ``engine.generator_for(seed, *keys)``: one generator per (phase, setting), so
a result depends on the seed and the keys only, not on what ran before it (resumed runs are bit-identical).
Under torchrun each rank runs its share of the trials' chains (utils/distributed.py); any other count of
chains is replicated on every rank. utils/experiments.py's ``Lab`` adds what belongs to a run folder: the
learned-chain cache, resumable stages and the wall clock per phase.
"""
from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from typing import Protocol

import numpy as np

from utils import distributed, models, progress


class ChainStore(Protocol):
    """Where ``Sampler.learn`` may find (``load``) and keep (``save``) the chains of one learning run."""

    def load(self, shape: tuple[int, ...]) -> np.ndarray | None: ...

    def save(self, w: np.ndarray) -> None: ...


class Sampler:
    """Multi-chain PNGD / PNSGD on one dataset: ``trials`` chains per setting, drawn from ``seed``."""

    def __init__(self, *, X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, num_classes: int,
                 consts, seed: int, trials: int, device: str = "auto", dtype: str = "float32", R: float = 0.0,
                 batch_orders="per_chain", removal: str = "random"):
        """``consts``: accountant.Constants (m, M, eta, d2d_step are read); ``R``: projection radius (0: none);
        ``batch_orders``: per_chain, shared or G (engine.batch_order_group); ``removal``: random | last rows."""
        import torch

        from utils import engine

        self.torch, self.engine = torch, engine
        self.world = distributed.world()
        self.device = engine.resolve_device(distributed.device_spec(device))
        self.dtype = engine.resolve_dtype(dtype)
        self.k, self.consts, self.seed, self.trials = num_classes, consts, seed, trials
        self.model = models.model_for(num_classes)
        self.R, self.batch_orders, self.removal_mode = float(R or 0.0), batch_orders, removal
        self.X, self.y = X, y
        self.n, self.d = X.shape[0], X.shape[1]
        self.task_D = self.task(X, y)
        self.X_test = torch.as_tensor(X_test, device=self.device, dtype=self.dtype)
        self.y_test = torch.as_tensor(y_test, device=self.device)

    # -- helpers
    def task(self, X, y):
        """The data (X, y) on this sampler's device and dtype (engine.Task)."""
        return self.engine.to_task(X, y, self.k, device=self.device, dtype=self.dtype)

    def gen(self, *keys):
        """The generator of one (phase, setting): engine.generator_for(seed, *keys)."""
        return self.engine.generator_for(self.seed, *keys, device=self.device)

    def timed(self, phase: str):
        """Measures the chains' work of ``phase``: nothing here; experiments.Lab keeps a wall clock per phase."""
        return nullcontext()

    def synchronize(self) -> None:
        """Wait for the device's queued work (CUDA runs asynchronously), so a clock read after it is honest."""
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def steps_per_unit(self, batch_size) -> int:
        """Updates per step count: 1 full batch, n / b for mini-batches (a step count is then epochs)."""
        b = self.n if batch_size in (None, "full") else int(batch_size)
        return self.n // b

    # -- chains split across ranks (torchrun): the trials' chains are shared out, any other count is replicated
    def share(self, C: int) -> tuple[int, int]:
        """The chains [start, stop) of C this process runs: its rank's share of the trials, else all C."""
        return self.world.chain_range(C) if C == self.trials else (0, C)

    def _mine(self, w, start: int, C: int):
        """Mark ``w`` as this rank's share (chains start.. of C): what accuracy() gathers, advance() continues."""
        if self.world.active and C == self.trials:
            w.chain_share = (start, C)
        return w

    def local(self, w_all):
        """This rank's share of all the trials' chains ``w_all`` (array or tensor), on the device."""
        a, b = self.share(self.trials)
        return self._mine(self.torch.as_tensor(w_all[a:b], device=self.device, dtype=self.dtype), a, self.trials)

    def _empty(self):
        return self.torch.empty(self.model.weight_shape(0, self.d), device=self.device, dtype=self.dtype)

    def gather(self, w):
        """All C chains of ``w`` (on every rank); ``w`` itself when it is not split across ranks."""
        share = getattr(w, "chain_share", None)
        if share is None or not self.world.active:
            return w
        return distributed.gather_chains(w, share[1])

    def perms(self, batch_size, C):
        """This process's share of C chains' batch orders: one per chain, or one per group of consecutive chains
        (--batch_orders, main_sgd.py); group g takes the order that chain g has with one order per chain, so
        a chain's order depends neither on C nor on how the chains are split across ranks."""
        if batch_size in (None, "full"):
            return None
        a, b = self.share(C)
        if a == b:
            return self.torch.empty((0, self.n), device=self.device, dtype=self.torch.int64)
        group = self.engine.batch_order_group(self.batch_orders, C)
        g0 = a // group
        orders = self.engine.make_perms((b - 1) // group - g0 + 1, self.n, generator=self.gen("perms"),
                                        device=self.device, first_chain=g0)
        return self.engine.share_orders(orders, b - a, group, first_chain=a)

    # -- the three operations
    def init(self, *, sigma: float, C: int, key):
        """C chains from the initial law N(0, 2 sigma^2 / m) (zeros at sigma = 0), this process's share."""
        a, b = self.share(C)
        if a == b:
            return self._mine(self._empty(), a, C)
        return self._mine(self.engine.init_chains(C=b - a, d=self.d, num_classes=self.k, sigma=sigma,
                                                  m=self.consts.m, generator=self.gen("init", *key),
                                                  device=self.device, dtype=self.dtype, first_chain=a), a, C)

    def advance(self, w, task, *, steps: int, sigma: float, key, batch_size=None, perms=None,
                eta=None, desc="run", phase="run"):
        """``steps`` noisy steps (epochs for mini-batches) from ``w`` on ``task``: continuing the chains on D'
        is unlearning (docs/METHOD.md §2.3, §2.4)."""
        c = self.consts
        b = None if batch_size in (None, "full") else int(batch_size)
        C = w.shape[0]
        share = getattr(w, "chain_share", None)
        if C == 0:
            return w
        total = steps * (self.steps_per_unit(b))
        weight = progress.update_weight(C, b or self.n, self.d, self.model.width)   # of one update, for the lines
        with self.timed(phase), progress_bar(desc, total, C, weight=weight) as bar:
            out = self.engine.run_chains(w, task, steps=steps, eta=c.eta if eta is None else eta,
                                         sigma=sigma, m=c.m, M=c.M, R=self.R, batch_size=b, perms=perms,
                                         generator=self.gen(phase, *key), progress=bar.update,
                                         first_chain=share[0] if share else 0)
        return out if share is None else self._mine(out, *share)

    def learn(self, *, sigma: float, T: int, batch_size=None, data=None, phase="learn", key=(),
              C=None, eta=None, store: ChainStore | None = None):
        """T steps from the initial law on D (or on ``data`` = (X, y)): learning, or with ``data`` = D'
        retraining from scratch. ``store`` (optional) gives chains saved by an identical earlier run and keeps
        new ones; the result is the same either way.

        With sigma = 0 every chain is the same, so one chain runs and is repeated.
        """
        C = C or self.trials
        X, y = data if data is not None else (self.X, self.y)
        run_C = 1 if sigma == 0 else C
        saved = None
        if store is not None:   # rank 0 reads for all
            saved = distributed.broadcast(store.load(self.model.weight_shape(run_C, self.d)) if self.world.main else None)
        a, b = self.share(run_C)
        if saved is not None:
            w = self.torch.as_tensor(saved[a:b], device=self.device, dtype=self.dtype)
        else:
            task = self.task_D if data is None else self.task(X, y)
            w0 = self.init(sigma=sigma, C=run_C, key=(phase,) + tuple(key))
            w = self.advance(w0, task, steps=T, sigma=sigma, key=tuple(key), batch_size=batch_size,
                             perms=self.perms(batch_size, run_C), eta=eta, desc=phase, phase=phase)
            if store is not None:
                full = self.gather(self._mine(w, a, run_C))
                if self.world.main:
                    store.save(full.cpu().numpy())
        if run_C != C:   # sigma = 0: the one chain is the same in every trial
            a, b = self.share(C)
            return self._mine(w.expand(b - a, *w.shape[1:]).clone(), a, C)
        return self._mine(w, a, C)

    def accuracy(self, w) -> np.ndarray:
        """Per-chain test accuracy of all chains of ``w`` (gathered from every rank first, so it is one process's)."""
        return self.engine.accuracy(self.gather(w), self.X_test, self.y_test).numpy()  # float64 on the CPU

    def noisy_copies(self, w, *, sigma: float, C: int, key):
        """C copies of one chain w, each plus N(0, sigma^2 I) (D2D's published outputs, utils/d2d.py)."""
        a, b = self.share(C)
        if a == b:
            return self._mine(self._empty(), a, C)
        noise = self.engine.chain_randn(b - a, tuple(w.shape[1:]), generator=self.gen(*key), dtype=self.dtype,
                                        first_chain=a)
        return self._mine(w.expand((b - a,) + tuple(w.shape[1:])) + sigma * noise, a, C)

    # -- removal requests
    def removal_stream(self, sizes, *, key=("removal",)):
        """Cumulative replacement: request s replaces sizes[s] NEW rows, earlier replacements stay.

        Yields engine.Removal(rows, replaced, X', y') lazily (numpy), one dataset copy at a time.
        """
        return self.engine.removal_stream(self.X, self.y, list(sizes), num_classes=self.k,
                                          generator=self.gen(*key), mode=self.removal_mode)

    def removal(self, S: int, *, key=("removal",)):
        """The neighbouring dataset D' of a single request of S rows."""
        return next(iter(self.removal_stream([S], key=key)))


def progress_bar(desc: str, total: int, C: int, *, weight: float = 1.0):
    """A tqdm bar of `total` steps of C chains on a terminal; where stderr is not one (a log file), a line every
    30 s or so with the stage, the share done and the time left (utils/progress.py; ``weight``: one step's
    cost there). Off for nothing to do, with --quiet or with UNLEARN_NO_PROGRESS=1."""
    from tqdm.auto import tqdm

    off = total == 0 or os.environ.get("UNLEARN_NO_PROGRESS") == "1" or not distributed.world().main
    if not off and not _is_terminal(sys.stderr):
        return progress.Lines(f"{desc}, {C} chain{'s' * (C != 1)}", total, weight)
    return tqdm(total=total, desc=f"{desc} [{C} chains]", unit="step", leave=False, disable=True if off else None)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
