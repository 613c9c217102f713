"""Networks, many chains at once: learning, and unlearning by noisy fine-tuning on the retained data
(Koloskova et al., arXiv 2506.06985; docs/METHOD.md §13).

One run of a network (utils/network.py) on C chains:

- learning ``A``: ``learn_epochs`` epochs of mini-batch gradient descent from a random start, x <- x - gamma
  (Clip_C1(g) + lam x), noiseless (its noise, if any, plays no part in the certificate);
- unlearning ``U``: the learned model clipped to norm C0 (model clipping: plus N(0, sigma0^2)), then T noisy
  steps on the current data, gradient clipping  x <- x - gamma (Clip_C1(g) + lam x) + sigma xi  or model
  clipping  x <- Pi_C2(x - gamma (g + lam x)) + sigma xi;  then ``post_epochs`` noiseless epochs on the current
  data (post-processing: the certifying run does the same, so the certificate is unchanged, §13.4);
- the certifying run: ``A`` on the current data from its own random start, then the same ``U``.

Everything the linear chains have is reused from utils/engine.py: chain c's start, batch order and noise come
from its own generator (``chain_randn``, ``make_perms`` / ``share_orders`` through the sampler,
``ChainNoise``), so chain c's numbers do not depend on how many chains run; device and dtype handling, the
divergence check and the projection are the engine's. ``g`` is the mean loss gradient of a chain's batch
(one batch for all chains runs as single matrix products, see ``MLP.gradient``).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np
import torch

from utils import checks, engine
from utils.network import MLP, Phase, Recipe

# chains per piece when computing accuracies (bounds the (C, r, hidden) activations)
ACCURACY_BYTES = 1 << 28


# ---------------------------------------------------------------- data and starts
@dataclasses.dataclass(frozen=True, eq=False)
class NetTask:
    """Training rows on the device as the network reads them: scaled rows (MLP.prepare) and labels."""

    data: torch.Tensor      # (n, d)
    y: torch.Tensor         # (n,)
    model: MLP

    @property
    def n(self) -> int:
        return self.data.shape[0]

    @property
    def d(self) -> int:
        return self.data.shape[1]


def to_net_task(X, y, model: MLP, *, device="cpu", dtype="float32") -> NetTask:
    """Copy (X, y) to the device once, labels checked by the model's output (binary +1/-1, class ids)."""
    dev, dt = engine.resolve_device(device), engine.resolve_dtype(dtype)
    X = torch.as_tensor(X).to(device=dev, dtype=dt, copy=True)
    if X.ndim != 2 or X.shape[0] == 0 or not torch.isfinite(X).all():
        raise ValueError(f"X must be a non-empty finite 2-D array (n, d), got shape {tuple(X.shape)}")
    y = torch.as_tensor(y).to(device=dev)
    if y.shape != (X.shape[0],):
        raise ValueError(f"y must have shape ({X.shape[0]},) to match X, got {tuple(y.shape)}")
    y, data, _ = model.prepare(X, y)
    return NetTask(data=data.contiguous(), y=y, model=model)


def init_networks(model: MLP, *, C: int, d: int, generator, device="cpu", dtype="float32",
                  first_chain: int = 0) -> torch.Tensor:
    """(C, P) random starts: W1 ~ N(0, 1/d) (the scaled rows then give pre-activations of variance 1),
    W2 ~ N(0, 1/hidden), biases 0; chain c from its own generator (engine.chain_randn)."""
    theta = engine.chain_randn(C, (model.params(d),), generator=generator, dtype=dtype, first_chain=first_chain)
    W1, b1, W2, b2 = model.unpack(theta, d)
    W1.mul_(1.0 / math.sqrt(d))
    W2.mul_(1.0 / math.sqrt(model.hidden))
    b1.zero_()
    b2.zero_()
    return theta.to(engine.resolve_device(device))


def clip_models(theta: torch.Tensor, radius: float) -> torch.Tensor:
    """Pi_radius of each chain's whole parameter vector (a copy): x min(1, radius / ||x||)."""
    out = theta.clone()
    engine.project_(out, radius) if radius > 0 else out.zero_()
    return out


# ---------------------------------------------------------------- the updates
def run_networks(theta: torch.Tensor, task: NetTask, *, phase: Phase, steps: int, batch_size: int, perms=None,
                 generator=None, first_chain: int = 0, offset: int = 0,
                 progress: Callable[[int], object] | None = None) -> torch.Tensor:
    """``steps`` updates of C chains (C, P) on ``task`` (a copy is returned):

        x <- Pi_model_clip( x - gamma (Clip_grad_clip(g_B(x)) + lam x) ) + sigma xi

    g_B the mean loss gradient over the chain's batch B: block (offset + u) mod ceil(n/b) of its order in
    ``perms`` (C, n) (None: full batch, b = n); one order for all chains (share_orders with one group) runs
    as shared matrix products. xi: chain c's own stream (engine.ChainNoise, from ``generator``)."""
    steps = checks.nonnegative_int("steps", steps)
    gamma, lam = checks.positive("gamma", phase.gamma), checks.nonnegative("lam", phase.lam)
    sigma = checks.nonnegative("sigma", phase.sigma)
    model, n = task.model, task.n
    C, P = theta.shape
    if P != model.params(task.d):
        raise ValueError(f"theta must have shape (C, {model.params(task.d)}) for this network, got {tuple(theta.shape)}")
    b = checks.integer("batch_size", batch_size, lo=1, hi=n)
    blocks = -(-n // b)
    shared = perms is None or b == n
    if not shared:
        perms = torch.as_tensor(perms, device=task.data.device)
        if perms.shape != (C, n):
            raise ValueError(f"perms must have shape ({C}, {n}), got {tuple(perms.shape)}")
        if C == 1 or perms.stride(0) == 0 or bool((perms == perms[:1]).all()):
            perms, shared = perms[0], True
    x = theta.detach().to(device=task.data.device, dtype=task.data.dtype, copy=True).contiguous()
    g = torch.empty_like(x)
    decay = 1.0 - gamma * lam
    noise = (engine.ChainNoise(generator, (C, P), steps, dtype=x.dtype, first_chain=first_chain)
             if sigma > 0 and steps else None)
    try:
        for u in range(steps):
            j = (offset + u) % blocks
            if perms is None:
                data, y = task.data, task.y
            else:
                idx = perms[..., j * b:(j + 1) * b]
                data, y = task.data[idx], task.y[idx]
            model.gradient(x, data, y, out=g)
            if phase.grad_clip is not None:
                engine.project_(g, phase.grad_clip)
            x.mul_(decay).add_(g, alpha=-gamma)
            if phase.model_clip is not None:
                engine.project_(x, phase.model_clip)
            if noise is not None:
                x.add_(noise.next(), alpha=sigma)
            if progress is not None:
                progress(1)
            if (u + 1) % engine.DIVERGENCE_CHECK_EVERY == 0:
                _check_finite(x, u + 1, steps, gamma)
    finally:
        if noise is not None:
            noise.close()
    _check_finite(x, steps, steps, gamma)
    return x


def _check_finite(x, done: int, steps: int, gamma: float) -> None:
    if not bool(torch.isfinite(x).all()):
        raise engine.DivergenceError(f"the networks diverged: non-finite parameters after {done} of {steps} updates "
                                     f"with lr={gamma:g}; lower --lr or set --C1")


def accuracy(theta: torch.Tensor, X_test, y_test, model: MLP) -> np.ndarray:
    """(C,) test accuracy per chain (float64 on the CPU), chains in pieces of bounded memory."""
    X = torch.as_tensor(X_test).to(device=theta.device, dtype=theta.dtype)
    y = torch.as_tensor(y_test).to(device=theta.device)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X_test must be (r, d) and y_test (r,), got {tuple(X.shape)} and {tuple(y.shape)}")
    data = X * math.sqrt(X.shape[1])
    per_chain = max(1, X.shape[0] * (model.hidden + model.out) * X.element_size() * 2)
    step = max(1, ACCURACY_BYTES // per_chain)
    with torch.no_grad():
        hits = [model.predict_hits(theta[a:a + step], data, y).sum(dim=0) for a in range(0, theta.shape[0], step)]
    return (torch.cat(hits).to(device="cpu", dtype=torch.float64) / X.shape[0]).numpy()


# ---------------------------------------------------------------- a sampler's chains
class Networks:
    """The network runs of one experiment on a utils/sampler.py ``Sampler`` (or experiments.Lab): its seed,
    device, dtype, trials, batch orders and removals, with every draw from ``sampler.gen(*keys)``."""

    def __init__(self, sampler, recipe: Recipe):
        if sampler.world.active:
            raise ValueError("--model mlp runs in one process (allowed: no torchrun)")
        self.s, self.recipe = sampler, recipe
        self.model = recipe.model(sampler.k)
        self.b = recipe.batch(sampler.n)
        self._perms = None

    def task(self, X, y) -> NetTask:
        return to_net_task(X, y, self.model, device=self.s.device, dtype=self.s.dtype)

    def perms(self):
        """Every chain's batch order, the same for learning, unlearning and retraining (None: full batch)."""
        if self.b == self.s.n:
            return None
        if self._perms is None:
            self._perms = self.s.perms(self.b, self.s.trials)
        return self._perms

    def _run(self, theta, task: NetTask, *, phase: Phase, steps: int, key, desc: str, offset: int = 0):
        from utils.sampler import progress_bar

        with self.s.timed(key[0]), progress_bar(desc, steps, theta.shape[0]) as bar:
            return run_networks(theta, task, phase=phase, steps=steps, batch_size=self.b, perms=self.perms(),
                                generator=self.s.gen(*key) if phase.sigma > 0 else None, offset=offset,
                                progress=bar.update)

    def init(self, task: NetTask, *, key) -> torch.Tensor:
        """Each chain's random start (generator (seed, "init", *key))."""
        return init_networks(self.model, C=self.s.trials, d=task.d, generator=self.s.gen("init", *key),
                             device=self.s.device, dtype=self.s.dtype)

    def learn(self, task: NetTask, *, key=("learn",)) -> torch.Tensor:
        """A: ``learn_epochs`` noiseless epochs from each chain's random start."""
        theta = self.init(task, key=key)
        steps = self.recipe.learn_epochs * self.recipe.epoch(task.n)
        return self._run(theta, task, phase=self.recipe.learning(), steps=steps, key=key, desc=key[0])

    def start(self, theta, *, key) -> torch.Tensor:
        """The fine-tuning's start: clipped to C0 (model clipping with sigma0 > 0: plus N(0, sigma0^2))."""
        x = clip_models(theta, self.recipe.C0)
        if self.recipe.variant == "model" and self.recipe.sigma0 > 0:
            x.add_(engine.chain_randn(x.shape[0], (x.shape[1],), generator=self.s.gen("start", *key),
                                      dtype=self.s.dtype), alpha=self.recipe.sigma0)
        return x

    def unlearn(self, theta, task: NetTask, *, T: int, sigma: float, key) -> tuple[torch.Tensor, torch.Tensor]:
        """U: clip, T noisy steps, then post-processing: clip to C0 again (after noise that hides a gap of 2 C0
        the model is mostly noise) and ``post_epochs`` noiseless epochs. Returns (after the noisy steps, after
        post-processing)."""
        noisy = self.noisy(theta, task, T=T, sigma=sigma, key=key)
        return noisy, self.post(noisy, task, offset=T, key=key)

    def noisy(self, theta, task: NetTask, *, T: int, sigma: float, key, offset: int = 0, start: bool = True):
        """The T noisy steps (from the clipped start when ``start``; else continuing ``theta``)."""
        x = self.start(theta, key=key) if start else theta
        return self._run(x, task, phase=self.recipe.noisy(sigma), steps=T, key=("noisy",) + tuple(key),
                         desc=f"noisy T={T}", offset=offset)

    def post(self, theta, task: NetTask, *, offset: int, key):
        steps = self.recipe.post_epochs * self.recipe.epoch(task.n)
        return self._run(clip_models(theta, self.recipe.C0), task, phase=self.recipe.post(), steps=steps,
                         key=("post",) + tuple(key), desc="post-processing", offset=offset)

    def accuracy(self, theta) -> np.ndarray:
        return accuracy(theta, self.s.X_test, self.s.y_test, self.model)
