"""Figures of the network runs (``--model mlp``, run folders result/NET/...): accuracy against eps of noisy
fine-tuning beside the certifying run and the logistic model, and the smallest-sigma table.

Each reads only metrics.json (plan-only runs, which hold no accuracies, draw their sigma curve).
"""
from __future__ import annotations

import matplotlib.pyplot as plt

from utils.figure_parts import finish_axes, summary_curve, title
from utils.plots import figure


@figure("baseline", family="NET")
def fig_network_baseline(metrics, arrays):
    """Test accuracy vs eps: the network after unlearning (and right after the noisy steps), the certifying
    run, the logistic model's Langevin unlearning; the networks learned and retrained without noise."""
    cells = metrics["settings"]
    eps = [float(e) for e in cells]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    if "mlp_unlearn" not in next(iter(cells.values())):
        ax.plot(eps, [c["sigma"] for c in cells.values()], "o-", color="C0",
                label=f"network: sigma after T={metrics['noisy_steps']} noisy updates")
        finish_axes(ax, xlabel="epsilon", ylabel="noise standard deviation", xscale="log", yscale="log",
                    legend_size=7, title=title(metrics, "noisy fine-tuning: noise per eps"))
        return fig
    post = metrics["recipe"]["post_epochs"]
    summary_curve(ax, eps, [c["mlp_unlearn"] for c in cells.values()], f"network unlearned (+{post} epochs)",
                  color="C0")
    summary_curve(ax, eps, [c["mlp_certifying"] for c in cells.values()], "network, certifying run", color="C2",
                  ls=":", marker="^", ms=9, mfc="none", mew=1.5, zorder=5)
    summary_curve(ax, eps, [c["mlp_unlearn_noisy"] for c in cells.values()], "network right after the noisy steps",
                  color="C0", ls="--", marker="x", alpha=0.6)
    for i, (K, lc) in enumerate(metrics["logistic"].items()):
        summary_curve(ax, [float(e) for e in lc], [c["lmc_unlearn"] for c in lc.values()],
                      f"logistic, Langevin unlearning K={K}", color="C1", marker="s", alpha=1.0 if i == 0 else 0.5)
    ax.axhline(metrics["mlp_learned"]["mean"], color="k", lw=1, ls="-.", label="network learned (no noise)")
    if "mlp_post_only" in metrics:
        ax.axhline(metrics["mlp_post_only"]["mean"], color="C4", lw=1, ls=":",
                   label=f"{post} epochs from a random start (no noise)")
    finish_axes(ax, xlabel="epsilon", ylabel="test accuracy", xscale="log", legend_size=7,
                title=title(metrics, f"network unlearning S={metrics['S']} point(s)"))
    return fig


@figure("find_k", family="NET")
def fig_network_find_k(metrics, arrays):
    """Smallest sigma vs eps after the noisy steps (--model mlp --find_k 1)."""
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    rows = metrics["sigma_table"]
    ax.plot([r["epsilon"] for r in rows], [r["sigma"] for r in rows], "o-", label=f"T={metrics['noisy_steps']}")
    finish_axes(ax, xlabel="epsilon", ylabel="smallest sigma", xscale="log", yscale="log", legend_size=8,
                title=title(metrics, "noisy fine-tuning: smallest sigma"))
    return fig
