"""Figures of baseline.py / baseline_multiclass.py (paper A Fig 3a, Fig 3b, the --find_k sigma table).

Each reads only metrics.json (so plan-only runs, which hold no accuracies, draw too).
"""
from __future__ import annotations

import matplotlib.pyplot as plt

from utils.figure_parts import end_labels, finish_axes, summary_curve, title
from utils.plots import figure

_K_STYLE = {0: dict(lw=2.2, alpha=1.0), 1: dict(lw=1.2, alpha=0.55), 2: dict(lw=1.2, alpha=0.4)}


def _per_K(settings: dict):
    """(K, style, eps, cells) per K setting: the first K drawn prominent, later ones fainter."""
    for i, (K, cells) in enumerate(settings.items()):
        yield K, _K_STYLE.get(i, _K_STYLE[2]), [float(e) for e in cells], list(cells.values())


@figure("baseline", family="LMC")
def fig_baseline(metrics, arrays):
    """Test accuracy vs eps: Langevin unlearning (K = 1 prominent), retraining, D2D, noiseless (A Fig 3a)."""
    settings = metrics["settings"]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    first = next(iter(settings.values()))
    if "lmc_unlearn" not in next(iter(first.values())):
        return _plan_3a(fig, ax, metrics)
    for i, (K, style, eps, cells) in enumerate(_per_K(settings)):
        summary_curve(ax, eps, [c["lmc_unlearn"] for c in cells], f"Langevin unlearning K={K}", color="C0", **style)
        summary_curve(ax, eps, [c["d2d"] for c in cells], f"D2D K={K}", color="C3", ls="--", marker="s", **style)
        if i == 0:  # on top, hollow and larger: it often coincides with unlearning, which must not hide it
            summary_curve(ax, eps, [c["lmc_retrain"] for c in cells], f"Langevin retraining (sigma of K={K})",
                          color="C2", ls=":", marker="^", ms=9, mfc="none", mew=1.5, zorder=5)
    ax.axhline(metrics["noiseless_accuracy"], color="k", lw=1, ls="-.", label="noiseless optimum")
    finish_axes(ax, xlabel="epsilon", ylabel="test accuracy", xscale="log", legend_size=7,
                title=title(metrics, f"unlearning S={metrics['S']} point(s)"))
    return fig


def _plan_3a(fig, ax, metrics):
    for K, style, eps, cells in _per_K(metrics["settings"]):
        ax.plot(eps, [c["sigma"] for c in cells], "o-", color="C0", label=f"Langevin sigma K={K}", **style)
        ax.plot(eps, [c["d2d_sigma_1"] for c in cells], "s--", color="C3", label=f"D2D sigma_1 K={K}", **style)
    finish_axes(ax, xlabel="epsilon", ylabel="noise standard deviation", xscale="log", yscale="log",
                legend_size=7, title=title(metrics, "noise per method"))
    return fig


@figure("sequential2", family="LMC")
def fig_sequential2(metrics, arrays):
    """Accumulated steps vs removed points, Langevin per S and D2D per f, with final accuracy (A Fig 3b)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ends = []
    for i, (S, steps) in enumerate(metrics["lmc_accumulated_steps"].items()):
        x = metrics["lmc_removed_points"][S]
        final = metrics.get("lmc_final", {}).get(S)
        ax.plot(x, steps, "o-", color=f"C{i}", ms=3, label=f"Langevin S={S}")
        ends += _end(x[-1], steps[-1], final, f"C{i}")
    for j, (f, steps) in enumerate(metrics["d2d_accumulated_steps"].items()):
        final = metrics.get("d2d_final", {}).get(f)
        ax.plot(range(1, len(steps) + 1), steps, "--", color=f"C{j + 3}", label=f"D2D f={f}")
        ends += _end(len(steps), steps[-1], final, f"C{j + 3}")
    if ends:
        ax.margins(x=0.12)  # room for the final accuracies at the right end
    finish_axes(ax, xlabel="number of removed points", ylabel="accumulated unlearning steps", yscale="log",
                legend_size=7, integer_x=True,
                title=title(metrics, f"sequential unlearning, sigma={metrics['sigma']:g}, eps={metrics['epsilon']:g}"))
    if ends:
        ax.text(0.99, 0.02, "numbers: final mean test accuracy", transform=ax.transAxes, ha="right", fontsize=7)
    end_labels(ax, ends)
    return fig


def _end(x, y, final, color) -> list:
    """The final mean accuracy beside the last point of a curve (absent in plan-only runs)."""
    return [(x, y, f"{final['mean']:.3f}", color)] if final else []


@figure("find_k", family="LMC")
def fig_find_k(metrics, arrays):
    """Smallest sigma vs eps per K (the --find_k table), log scale."""
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    for K in dict.fromkeys(r["K"] for r in metrics["sigma_table"]):
        rows = [r for r in metrics["sigma_table"] if r["K"] == K]
        ax.plot([r["epsilon"] for r in rows], [r["sigma"] for r in rows], "o-", label=f"K={K}")
    finish_axes(ax, xlabel="epsilon", ylabel="smallest sigma", xscale="log", yscale="log", legend_size=8,
                title=title(metrics, f"smallest sigma, S={metrics['S']}"))
    return fig
