"""Descent-to-Delete (Neel, Roth, Sharifi-Malvajerdi 2021, arXiv 2007.02923), the baseline both papers
compare with: the experiment side (docs/METHOD.md §8).

Noiseless gradient descent with step 2/(L+m) (``consts.d2d_step``) is the same in every trial, so one chain
learns and unlearns; the trials differ only by the Gaussian noise added to what is published. One-shot
(paper A Fig 3a, paper B Fig 3a): K steps on D', then w_K + N(0, sigma_1^2 I). Sequential (paper A Fig 3b):
request i runs K_i steps from the carried state and adds N(0, sigma_2^2 I) to it.
The noise levels and iteration counts are the accountant's (``accountant.d2d_sigma_1``, ``d2d_sigma_2``,
``d2d_sequential_K_list``); the chains are a ``sampler.Sampler``'s (an ``experiments.Lab`` caches them and
makes the streams resumable).
"""
from __future__ import annotations

import numpy as np

from utils import accountant, models
from utils.results import json_key

# What a D2D certificate compares with (its guarantee is against D2D itself run from scratch, not retraining).
COMPARISON = "indistinguishable from Descent-to-Delete run from scratch on the current data (Neel et al. 2021)"


# ---------------------------------------------------------------- plan (numbers only)
def dimension(d: int | None, *, num_classes: int, rule: str = "params") -> int | None:
    """The dimension D2D's I_min and term2 use (Neel et al. 2021: the number of parameters): d k for softmax,
    d binary; ``rule="data"`` keeps the reference's d (--d2d_dim, docs/METHOD.md §8). None when d is unknown."""
    if d is None or rule == "data":
        return d
    return models.model_for(num_classes).params(d)


def output_sigma(consts, *, K: int, eps: float) -> float:
    """One-shot output noise sigma_1(I = K, eps) for these constants (docs/METHOD.md §8)."""
    return accountant.d2d_sigma_1(I=K, eps=eps, M=consts.M, m=consts.m, n=consts.n, gamma=consts.gamma,
                                  delta=consts.delta)


def state_sigma(consts, *, K: int, eps: float) -> float:
    """Sequential published-state noise sigma_2(I = K_i, eps) added to the carried state (docs/METHOD.md §8)."""
    return accountant.d2d_sigma_2(I=K, eps=eps, M=consts.M, m=consts.m, n=consts.n, gamma=consts.gamma,
                                  delta=consts.delta)


def sequential_plan(consts, *, f: float, num_requests: int, eps: float) -> dict:
    """Steps K_i = int(f I_min) + term2(i) and noise sigma_2(K_i, eps) per single-point request (docs/METHOD.md §8)."""
    Ks = accountant.d2d_sequential_K_list(num_requests=num_requests, f=f, consts=consts, eps=eps)
    return {"K": Ks, "sigma_2": [state_sigma(consts, K=K, eps=eps) for K in Ks]}


def one_shot_certificate(consts, *, eps: float, K: int, sigma_1: float, S: int) -> dict:
    """The certificate of one-shot D2D: K steps on D' then output noise sigma_1 (docs/METHOD.md §8)."""
    return accountant.certificate(consts=consts, eps=eps, alpha=None, K=K, sigma=sigma_1, R=0.0,
                                  bound="D2D one-shot output noise sigma_1, docs/METHOD.md §8", comparison=COMPARISON,
                                  method="d2d", S=S, eps_target=eps, step=consts.d2d_step)


def sequential_certificate(consts, *, eps: float, plan: dict, f: float) -> dict:
    """The certificate of a sequential D2D stream (``sequential_plan``'s K_i and sigma_2, docs/METHOD.md §8)."""
    return accountant.certificate(consts=consts, eps=eps, alpha=None, K=plan["K"], sigma=plan["sigma_2"], R=0.0,
                                  bound="D2D published-state noise sigma_2(K_i), docs/METHOD.md §8",
                                  comparison=COMPARISON, method="d2d", S=1, ifac=f, step=consts.d2d_step, d=consts.d)


# ---------------------------------------------------------------- chains
def learn(sampler, T: int):
    """D2D's learning: one noiseless chain, T steps of 2/(L+m) on D (the same in every trial)."""
    return sampler.learn(sigma=0.0, T=T, eta=sampler.consts.d2d_step, key=("d2d",), C=1, phase="d2d")


def one_shot(sampler, task, *, T: int, noise: dict) -> dict:
    """One-shot D2D: one chain learns T steps on D and runs K steps on D' (``task``); each trial publishes
    w_K + N(0, sigma_1^2 I). ``noise`` maps K -> {eps key: sigma_1}. Returns per-trial accuracies keyed
    ``"K{K}_eps{ek}"``, and ``"learn"`` (the one learned chain)."""
    step = sampler.consts.d2d_step
    w = learn(sampler, T)
    out = {"learn": sampler.accuracy(w)}
    for K in sorted(noise):
        w_K = sampler.advance(w, task, steps=K, sigma=0.0, eta=step, key=("d2d", K), phase="d2d",
                              desc=f"D2D K={K}")
        for ek, s in noise[K].items():
            out[f"K{K}_eps{ek}"] = sampler.accuracy(sampler.noisy_copies(w_K, sigma=s, C=sampler.trials,
                                                                         key=("d2d_noise", K, ek)))
    return out


def one_shot_work(work, C: int, *, T: int, noise: dict) -> None:
    """What ``one_shot`` runs, counted in a utils/workload.py Workload (C: the trials)."""
    work.learn(1, T, sigma=0.0)
    work.evaluate(1)
    for K in noise:
        work.advance(1, K, sigma=0.0)
        work.evaluate(C, len(noise[K]))


def sequential_work(work, C: int, *, Ks) -> None:
    """What ``sequential_stream`` runs for one K list, counted in a Workload (C: the trials): the first request
    continues the one learned chain, the later ones the C noisy copies."""
    for i, K in enumerate(Ks):
        work.dataset()
        work.advance(1 if i == 0 else C, K, sigma=0.0)
        work.evaluate(C)
        work.save(C)


def sequential_stream(lab, w1, *, f: float, plan: dict) -> dict:
    """Single-point requests: K_i noiseless GD steps from the carried state, then sigma_2 noise is added to it.
    ``lab``: an experiments.Lab (resumable request by request: its stream_checkpoint keeps the chains)."""
    step = lab.consts.d2d_step
    done, saved, save = lab.stream_checkpoint(f"d2d_f{json_key(f)}_requests")
    accs = list(saved["accuracy"]) if saved is not None else []
    w = None if saved is None else lab.local(saved["w"])
    stream = lab.removal_stream([1] * len(plan["K"]), key=("removal", "d2d"))
    for i, (removal, K, s2) in enumerate(zip(stream, plan["K"], plan["sigma_2"])):
        if i < done:
            continue   # the stream is still drawn, so later requests replace the same rows
        w = lab.advance(w1 if w is None else w, lab.task(removal.X, removal.y), steps=K, sigma=0.0, eta=step,
                        key=("d2d", json_key(f), i + 1), phase="d2d", desc=f"D2D f={f:g} request {i + 1}")
        # the first request runs one chain: the trials only differ after their first noise
        w = lab.noisy_copies(w, sigma=s2, C=lab.trials, key=("d2d_noise", json_key(f), i + 1))
        accs.append(lab.accuracy(w))
        save(i + 1, {"w": lab.gather(w).cpu().numpy(), "accuracy": np.stack(accs)})
    return {"accuracy": np.stack(accs)}
