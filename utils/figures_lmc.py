"""Figures of main_lmc.py / main_lmc_multiclass.py (paper A Fig 3c, Fig 4, Fig 5, noiseless retraining).

Each function reads only a run's metrics.json (and arrays.npz), so ``python -m utils.plots RUN_FOLDER``
redraws it; plan-only runs (no accuracies) show the accounting alone.
"""
from __future__ import annotations

import matplotlib.pyplot as plt

from utils.figure_parts import bars_note, finish_axes, summary_curve, title
from utils.plots import figure
from utils.results import json_key


@figure("paint_unlearning_sigma")
def fig_paint_unlearning_sigma(metrics, arrays):
    """Fig 3c: eps_0 (left, log) and accuracies (right) against sigma, each point annotated with K."""
    sigmas = [float(s) for s in metrics["sigma_list"]]
    keys = [json_key(s) for s in sigmas]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    eps0 = [float(metrics["epsilon0"][k]) for k in keys]
    ax.plot(sigmas, eps0, "k--", marker="s", label=r"$\varepsilon_0$ (learning, DP)")
    finish_axes(ax, xlabel=r"noise $\sigma$", ylabel=r"$\varepsilon_0$", xscale="log", yscale="log",
                title=title(metrics, f"S={metrics['S']} removed, target eps={json_key(metrics['eps'])}"))
    handles = ax.get_legend_handles_labels()
    acc = metrics.get("accuracy")
    if acc:
        ax2 = ax.twinx()
        for name, label in (("learn", "learning on D"), ("retrain", "retraining on D'"),
                            ("unlearn", "Langevin unlearning")):
            summary_curve(ax2, sigmas, [acc[name][k] for k in keys], label)
        ax2.set_ylabel(f"test accuracy\n({bars_note(ax2)})")
        h2 = ax2.get_legend_handles_labels()
        handles = (handles[0] + h2[0], handles[1] + h2[1])
    for s, e, k in zip(sigmas, eps0, keys):  # never clipped at the axes' edge
        ax.annotate(f"K={metrics['K'][k]}", (s, e), textcoords="offset points", xytext=(4, 6), fontsize=8,
                    annotation_clip=False)
    ax.margins(x=0.12, y=0.12)
    # one legend for both y axes, so it is drawn here rather than by finish_axes
    ax.legend(*handles, fontsize=8, loc="best")
    fig.tight_layout()
    return fig


@figure("paint_utility_epsilon")
def fig_paint_utility_epsilon(metrics, arrays):
    """Fig 4: unlearning steps K against the target eps, one line per S; legend = mean accuracy."""
    eps = [float(e) for e in metrics["eps_list"]]
    acc = metrics.get("accuracy")
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    for S in metrics["S_list"]:
        s = json_key(S)
        Ks = [metrics["K"][s][json_key(e)] for e in eps]
        label = f"S={s}"
        if acc:
            means = [acc["unlearn"][s][json_key(e)]["mean"] for e in eps]
            label += " (acc " + ", ".join(f"{m:.3f}" for m in means) + ")"
        ax.plot(eps, Ks, marker="o", label=label)
    extra = f", learning acc {acc['learn']['mean']:.3f}" if acc else ""
    finish_axes(ax, xlabel=r"target $\varepsilon$", ylabel="unlearning steps K", xscale="log", legend_size=8,
                title=title(metrics, f"sigma={json_key(metrics['sigma'])}{extra}"))
    fig.tight_layout()
    return fig


@figure("paint_utility_s")
def fig_paint_utility_s(metrics, arrays):
    """Fig 5: unlearning vs retraining accuracy against S per eps (plan only: K against S)."""
    S = [float(v) for v in metrics["S_list"]]
    s_keys = [json_key(v) for v in S]
    acc = metrics.get("accuracy")
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    for e in metrics["eps_list"]:
        k = json_key(e)
        if acc:
            summary_curve(ax, S, [acc["unlearn"][k][s] for s in s_keys], f"unlearning, eps={k}")
        else:
            ax.plot(S, [metrics["K"][k][s] for s in s_keys], marker="o", label=f"eps={k}")
    if acc:
        summary_curve(ax, S, [acc["retrain"][s] for s in s_keys], "retraining", color="k", linestyle="--")
    finish_axes(ax, xlabel="removed points S", ylabel="test accuracy" if acc else "unlearning steps K",
                xscale="log", legend_size=8, title=title(metrics, f"sigma={json_key(metrics['sigma'])}"))
    fig.tight_layout()
    return fig


@figure("retrain_noiseless")
def fig_retrain_noiseless(metrics, arrays):
    """Noiseless (sigma = 0) retraining accuracy against S, with the noiseless learning on D as a line."""
    S = [float(v) for v in metrics["S_list"]]
    acc = metrics.get("accuracy")
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    if acc:
        ax.plot(S, [acc["retrain"][json_key(v)]["mean"] for v in S], marker="o", label="noiseless retraining on D'_S")
        ax.axhline(acc["learn"]["mean"], color="k", linestyle="--", label="noiseless learning on D")
    else:
        plt.close(fig)
        return None  # a plan holds nothing to draw here: no empty figure
    finish_axes(ax, xlabel="removed points S", ylabel="test accuracy" if acc else None, xscale="log",
                legend_size=8 if acc else None,
                title=title(metrics, f"noiseless retraining (sigma = 0, T={metrics['burn_in']})"))
    fig.tight_layout()
    return fig
