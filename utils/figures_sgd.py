"""Figures of paper B (main_sgd.py), drawn from a saved run folder's metrics (Fig 3a-d of B).

Each copes with ``--plan_only`` metrics (no accuracies): it then shows the accounting alone.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from utils.figure_parts import finish_axes, plan_only_note, summary_curve, title
from utils.plots import figure
from utils.results import json_key


def _batch_label(key):
    return "full batch" if key == "full" else f"b = {key}"


def _unlearn_vs_retrain(ax, x, keys, metrics, name, suffix=""):
    """Per batch size, in one colour: unlearning accuracy with std bars, retraining's mean dashed."""
    for i, b in enumerate(metrics["batch_sizes"]):
        acc = metrics["accuracy"][b]
        summary_curve(ax, x, [acc[k]["unlearn"] for k in keys], f"{name} {_batch_label(b)}{suffix}", color=f"C{i}")
        ax.plot(x, [acc[k]["retrain"]["mean"] for k in keys], "--", alpha=0.6, color=f"C{i}",
                label=f"retraining {_batch_label(b)}")


@figure("compare_baseline_nonconvergent", family="SGD")
def fig_compare_baseline_nonconvergent(metrics, arrays):
    """Fig 3a of B: accuracy after unlearning one point vs eps (PNSGD K = 1 epoch, retraining, LU, D2D)."""
    eps = [float(e) for e in metrics["eps_list"]]
    keys = [json_key(e) for e in eps]
    comp = metrics.get("comparison", {})
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    if "accuracy" in metrics:
        _unlearn_vs_retrain(ax, eps, keys, metrics, "PNSGD", f", K = {metrics['K']}")
        nb = len(metrics["batch_sizes"])  # colours C0.. are the batch sizes': the others never reuse them
        if "lmc" in comp:
            summary_curve(ax, eps, [comp["lmc"][k] for k in keys], "Langevin unlearning K = 1", marker="s",
                          color=f"C{nb}")
        for j, (K, curve) in enumerate(sorted(comp.get("d2d", {}).items())):
            summary_curve(ax, eps, [curve[k] for k in keys], f"D2D K = {K}", marker="^", color=f"C{nb + 1 + j}")
        ylabel, yscale = "test accuracy", None
    else:
        for b in metrics["batch_sizes"]:
            ax.plot(eps, [metrics["sigma"][b][k] for k in keys], "o-", label=f"PNSGD {_batch_label(b)}")
        ax.plot(eps, [comp["lmc_sigma"][k] for k in keys], "s-", label="Langevin unlearning K = 1")
        for K, sig in sorted(comp.get("d2d_sigma", {}).items()):
            ax.plot(eps, [sig[k] for k in keys], "^-", label=f"D2D K = {K}")
        ylabel, yscale = "noise sigma", "log"
    finish_axes(ax, xlabel="target epsilon", ylabel=ylabel, xscale="log", yscale=yscale, legend_size=7,
                title=title(metrics, "unlearning one point"))
    return fig


@figure("sequential", family="SGD")
def fig_sequential(metrics, arrays):
    """Fig 3b of B: accumulated unlearning epochs (steps for LU and D2D) vs number of removed points."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    acc = metrics.get("accuracy", {})

    def suffix(b):
        return f" (acc {acc[b]['unlearn']['mean']:.3f})" if b in acc else ""

    drawn = {}
    styles = [("-", None), ("--", "o"), (":", "s"), ("-.", "^"), ((0, (5, 1, 1, 1)), "v")]
    for i, (b, ks) in enumerate(metrics["k_lists"].items()):
        same = next((other for other, cum in drawn.items() if np.array_equal(cum, np.cumsum(ks))), None)
        note = f" (same as {_batch_label(same)})" if same is not None else ""
        ls, marker = styles[i % len(styles)]  # curves that coincide stay visible by dash and marker
        ax.plot(np.arange(1, len(ks) + 1), np.cumsum(ks), ls=ls, marker=marker, markevery=max(1, len(ks) // 8),
                ms=4, mfc="none", label=f"PNSGD {_batch_label(b)}{suffix(b)}{note}")
        drawn[b] = np.cumsum(ks)
    S = metrics["lmc_request_size"]
    lu = metrics["lmc_k_list"]
    ax.plot(S * np.arange(1, len(lu) + 1), np.cumsum(lu), "s--", markersize=3,
            label=f"Langevin unlearning S = {S} (full-batch steps)")
    if metrics.get("d2d_k_list"):
        d2d = metrics["d2d_k_list"]
        ax.plot(np.arange(1, len(d2d) + 1), np.cumsum(d2d), ":", label=f"D2D f = {metrics['d2d_factor']:g} (steps)")
    what = f"sequential removals, sigma = {metrics['sigma']:g}, eps = {metrics['epsilon']:g}"
    finish_axes(ax, xlabel="number of removed points", ylabel="accumulated epochs", yscale="log", legend_size=7,
                title=title(metrics, what), integer_x=True)
    return fig


@figure("paint_unlearning_sigma", family="SGD")
def fig_paint_unlearning_sigma(metrics, arrays):
    """Fig 3c,d of B: accuracy after the last removal vs sigma, and accumulated epochs per (b, sigma)."""
    sigmas = [float(s) for s in metrics["sigma_list"]]
    keys = [json_key(s) for s in sigmas]
    batches = metrics["batch_sizes"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    if "accuracy" in metrics:
        _unlearn_vs_retrain(left, sigmas, keys, metrics, "unlearning")
    else:
        plan_only_note(left, "plan only: no accuracies")
    finish_axes(left, xlabel="sigma", ylabel=f"test accuracy after {metrics['requests']} removals", xscale="log",
                legend_size=7 if "accuracy" in metrics else None,
                title=title(metrics, f"utility, eps = {metrics['epsilon']:g} per request"))
    width = 0.8 / max(1, len(batches))
    x = np.arange(len(sigmas))
    for i, b in enumerate(batches):
        pos = x + (i - (len(batches) - 1) / 2) * width
        right.bar(pos, [max(metrics["accumulated_epochs"][b][k], 1) for k in keys], width,
                  label=f"unlearning {_batch_label(b)}")
        right.plot(pos, [metrics["retraining_epochs"][b][k] for k in keys], "k_", markersize=10)
    right.plot([], [], "k_", label="retraining (requests x T)")
    right.set_xticks(x, keys)
    finish_axes(right, xlabel="sigma", ylabel="accumulated epochs", yscale="log", legend_size=7,
                title=title(metrics, "complexity"))
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
    else:
        plt.close(fig)
        return None  # a plan holds nothing to draw here: no empty figure
    finish_axes(ax, xlabel="number of removed points S", ylabel="test accuracy (sigma = 0)", xscale="log",
                legend_size=7 if "accuracy" in metrics else None, title=title(metrics, "noiseless retraining"))
    return fig
