"""Figure of audit.py: certified eps and the empirical lower bound against K, distances beside.

Reads only metrics.json, so ``python -m utils.plots RUN_FOLDER`` redraws it; a plan-only run shows
the certified eps alone.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt

from utils.figure_parts import finish_axes, title
from utils.plots import figure


def _values(record: dict, Ks) -> list[float]:
    # strict JSON stores infinity as the string "inf"; float() reads it back
    return [float(record[str(K)]) for K in Ks]


def _symlog(ax, axis: str, Ks=None) -> None:
    # symlog: K = 0 and eps = 0 are part of the picture, and both span decades
    getattr(ax, f"set_{axis}scale")("symlog", linthresh=1.0)
    if Ks is not None:
        ax.set_xlim(-0.2, max(max(Ks), 1) * 1.4)


@figure("audit")
def fig_audit(metrics, arrays):
    """Left: certified eps and the empirical lower bound (bar up to its interval's upper end) against K.
    Right: two-sample distances of the chosen statistic on the held-out chains."""
    Ks = [int(K) for K in metrics["settings"]["K"]]
    empirical = "empirical_eps_lower" in metrics
    fig, axes = plt.subplots(1, 2 if empirical else 1, figsize=(11.0 if empirical else 6.0, 4.2), squeeze=False)
    ax = axes[0, 0]
    certified = _values(metrics["certified_eps"], Ks)
    ax.plot(Ks, certified, "k-", marker="s", label=r"certified $\varepsilon$ (accountant)")
    if empirical:
        lower = _values(metrics["empirical_eps_lower"], Ks)
        upper = [float(hi) for _, hi in (metrics["empirical_eps_ci"][str(K)] for K in Ks)]
        top = max([v for v in lower + certified + upper if math.isfinite(v)] + [1.0]) * 1.5
        shown = [min(u, top) for u in upper]
        conf = float(metrics.get("confidence", metrics["settings"]["confidence"]))
        ax.errorbar(Ks, lower, yerr=[[0.0] * len(Ks), [s - lo for s, lo in zip(shown, lower)]], fmt="o",
                    color="C3", capsize=3, label=f"empirical lower bound ({conf:.0%}; bar: interval)")
        gdp = [float(metrics["distances"][str(K)]["gdp_eps"]) for K in Ks]
        ax.plot(Ks, gdp, ":", color="C0", marker=".", label=r"Gaussian-fit $\varepsilon$ (estimate)")
        for K, u in zip(Ks, upper):
            if not math.isfinite(u):
                ax.annotate("", (K, top), (K, top / 1.4), arrowprops={"arrowstyle": "->", "color": "C3"})
        ax.set_ylim(0.0, top * 1.2)
    _symlog(ax, "x", Ks)
    _symlog(ax, "y")
    s = metrics["settings"]
    ylabel = r"$\varepsilon$ at $\delta$ = " + format(float(s["delta"]), ".3g")
    finish_axes(ax, xlabel="unlearning steps K", ylabel=ylabel, title_size=10, legend_size=8,
                title=title(metrics, f"audit, sigma={float(s['sigma']):g}, S={s['S']}, T={s['T']}"))
    if empirical:
        ax2 = axes[0, 1]
        for key, label in (("ks", "KS statistic"), ("tv_gauss", "Gaussian-fit TV")):
            ax2.plot(Ks, [float(metrics["distances"][str(K)][key]) for K in Ks], marker="o", label=label)
        _symlog(ax2, "x", Ks)
        ax2.set_ylim(0.0, 1.05)
        finish_axes(ax2, xlabel="unlearning steps K", ylabel="distance (held-out chains)",
                    title="unlearned vs retrained, chosen statistic", title_size=10, legend_size=8)
    fig.tight_layout()
    return fig
