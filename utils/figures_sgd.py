"""Figures of paper B (main_sgd.py), drawn from a saved run folder's metrics (Fig 3a-d of B).

Each copes with ``--plan_only`` metrics (no accuracies): it then shows the accounting alone.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from utils.plots import errorbar, figure, title


def _mean_std(stats_by_key, keys):
    return (np.array([stats_by_key[k]["mean"] for k in keys]), np.array([stats_by_key[k]["std"] for k in keys]))


def _batch_label(key):
    return "full batch" if key == "full" else f"b = {key}"


@figure("compare_baseline_nonconvergent", family="SGD")
def fig_compare_baseline_nonconvergent(metrics, arrays):
    """Fig 3a of B: accuracy after unlearning one point vs eps (PNSGD K = 1 epoch, retraining, LU, D2D)."""
    eps = [float(e) for e in metrics["eps_list"]]
    keys = [format(e, "g") for e in eps]
    comp = metrics.get("comparison", {})
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    if "accuracy" in metrics:
        for i, b in enumerate(metrics["batch_sizes"]):
            acc = metrics["accuracy"][b]
            errorbar(ax, eps, *_mean_std({k: acc[k]["unlearn"] for k in keys}, keys),
                     f"PNSGD {_batch_label(b)}, K = {metrics['K']}", color=f"C{i}")
            ax.plot(eps, [acc[k]["retrain"]["mean"] for k in keys], "--", alpha=0.6, color=f"C{i}",
                    label=f"retraining {_batch_label(b)}")
        if "lmc" in comp:
            errorbar(ax, eps, *_mean_std(comp["lmc"], keys), "Langevin unlearning K = 1", marker="s")
        for K, curve in sorted(comp.get("d2d", {}).items()):
            errorbar(ax, eps, *_mean_std(curve, keys), f"D2D K = {K}", marker="^")
        ax.set_ylabel("test accuracy")
    else:
        for b in metrics["batch_sizes"]:
            ax.plot(eps, [metrics["sigma"][b][k] for k in keys], "o-", label=f"PNSGD {_batch_label(b)}")
        ax.plot(eps, [comp["lmc_sigma"][k] for k in keys], "s-", label="Langevin unlearning K = 1")
        for K, sig in sorted(comp.get("d2d_sigma", {}).items()):
            ax.plot(eps, [sig[k] for k in keys], "^-", label=f"D2D K = {K}")
        ax.set_yscale("log")
        ax.set_ylabel("noise sigma")
    ax.set_xscale("log")
    ax.set_xlabel("target epsilon")
    ax.set_title(title(metrics, "unlearning one point"))
    ax.legend(fontsize=7)
    return fig


@figure("sequential", family="SGD")
def fig_sequential(metrics, arrays):
    """Fig 3b of B: accumulated unlearning epochs (steps for LU and D2D) vs number of removed points."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    acc = metrics.get("accuracy", {})

    def suffix(b):
        return f" (acc {acc[b]['unlearn']['mean']:.3f})" if b in acc else ""

    for b, ks in metrics["k_lists"].items():
        ax.plot(np.arange(1, len(ks) + 1), np.cumsum(ks), label=f"PNSGD {_batch_label(b)}{suffix(b)}")
    S = metrics["lmc_request_size"]
    lu = metrics["lmc_k_list"]
    ax.plot(S * np.arange(1, len(lu) + 1), np.cumsum(lu), "s--", markersize=3,
            label=f"Langevin unlearning S = {S} (full-batch steps)")
    if metrics.get("d2d_k_list"):
        d2d = metrics["d2d_k_list"]
        ax.plot(np.arange(1, len(d2d) + 1), np.cumsum(d2d), ":", label=f"D2D f = {metrics['d2d_factor']:g} (steps)")
    ax.set_yscale("log")
    ax.set_xlabel("number of removed points")
    ax.set_ylabel("accumulated epochs")
    ax.set_title(title(metrics, f"sequential removals, sigma = {metrics['sigma']:g}, eps = {metrics['epsilon']:g}"))
    ax.legend(fontsize=7)
    return fig


@figure("paint_unlearning_sigma", family="SGD")
def fig_paint_unlearning_sigma(metrics, arrays):
    """Fig 3c,d of B: accuracy after the last removal vs sigma, and accumulated epochs per (b, sigma)."""
    sigmas = [float(s) for s in metrics["sigma_list"]]
    keys = [format(s, "g") for s in sigmas]
    batches = metrics["batch_sizes"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    if "accuracy" in metrics:
        for i, b in enumerate(batches):
            acc = metrics["accuracy"][b]
            errorbar(left, sigmas, *_mean_std({k: acc[k]["unlearn"] for k in keys}, keys),
                     f"unlearning {_batch_label(b)}", color=f"C{i}")
            left.plot(sigmas, [acc[k]["retrain"]["mean"] for k in keys], "--", alpha=0.6, color=f"C{i}",
                      label=f"retraining {_batch_label(b)}")
        left.legend(fontsize=7)
    else:
        left.text(0.5, 0.5, "plan only: no accuracies", ha="center", va="center", transform=left.transAxes)
    left.set_xscale("log")
    left.set_xlabel("sigma")
    left.set_ylabel(f"test accuracy after {metrics['requests']} removals")
    left.set_title(title(metrics, f"utility, eps = {metrics['epsilon']:g} per request"))
    width = 0.8 / max(1, len(batches))
    x = np.arange(len(sigmas))
    for i, b in enumerate(batches):
        pos = x + (i - (len(batches) - 1) / 2) * width
        right.bar(pos, [max(metrics["accumulated_epochs"][b][k], 1) for k in keys], width,
                  label=f"unlearning {_batch_label(b)}")
        right.plot(pos, [metrics["retraining_epochs"][b][k] for k in keys], "k_", markersize=10)
    right.plot([], [], "k_", label="retraining (requests x T)")
    right.set_xticks(x, keys)
    right.set_yscale("log")
    right.set_xlabel("sigma")
    right.set_ylabel("accumulated epochs")
    right.set_title(title(metrics, "complexity"))
    right.legend(fontsize=7)
    return fig


@figure("retrain_noiseless", family="SGD")
def fig_retrain_noiseless(metrics, arrays):
    """Noiseless (sigma = 0) retraining accuracy vs number of removed points, per batch size."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    S = [int(s) for s in metrics["remove_list"]]
    if "accuracy" in metrics:
        for b in metrics["batch_sizes"]:
            acc = metrics["accuracy"][b]
            ax.plot(S, [acc["retrain"][str(s)] for s in S], "o-", label=f"{_batch_label(b)} (learn {acc['learn']:.3f})")
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "plan only: no accuracies", ha="center", va="center", transform=ax.transAxes)
    ax.set_xscale("log")
    ax.set_xlabel("number of removed points S")
    ax.set_ylabel("test accuracy (sigma = 0)")
    ax.set_title(title(metrics, "noiseless retraining"))
    return fig
