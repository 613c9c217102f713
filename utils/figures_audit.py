"""Figure of audit.py: certified eps (per bound), the empirical lower bound and the Gaussian-DP estimate
against K on one log axis; their ratios and the two-sample distances beside.

Reads only metrics.json, so ``python -m utils.plots RUN_FOLDER`` redraws it; a plan-only run shows
the certified eps alone. Folders written before the per-bound certificates and the Gaussian-DP estimate
existed draw what they hold.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt

from utils.figure_parts import finish_axes, title
from utils.plots import figure

LINTHRESH = 1e-2    # below it the eps axis is linear, so eps = 0 (nothing shown) has a place


def _values(record: dict, Ks) -> list[float]:
    # strict JSON stores infinity as the string "inf"; float() reads it back
    return [float(record[str(K)]) for K in Ks]


def _symlog(ax, axis: str, Ks=None, linthresh: float = 1.0) -> None:
    # symlog: K = 0 and eps = 0 are part of the picture, and both span decades
    getattr(ax, f"set_{axis}scale")("symlog", linthresh=linthresh)
    if Ks is not None:
        ax.set_xlim(-0.2, max(max(Ks), 1) * 1.4)


def _bounds(metrics) -> dict:
    return metrics.get("certified_eps_by_bound") or {"paper": metrics["certified_eps"]}


def _eps_panel(ax, metrics, Ks) -> None:
    styles = ("-", "--", "-.", ":")
    finite = []
    for (name, record), style in zip(_bounds(metrics).items(), styles):
        certified = _values(record, Ks)
        finite += certified
        ax.plot(Ks, certified, style, color="k", marker="s", ms=4, label=rf"certified $\varepsilon$ ({name})")
    if "empirical_eps_lower" in metrics:
        lower = _values(metrics["empirical_eps_lower"], Ks)
        upper = [float(hi) for _, hi in (metrics["empirical_eps_ci"][str(K)] for K in Ks)]
        top = max([v for v in lower + finite + upper if math.isfinite(v)] + [1.0]) * 1.5
        shown = [min(u, top) for u in upper]
        conf = float(metrics.get("confidence", metrics["settings"]["confidence"]))
        ax.errorbar(Ks, lower, yerr=[[0.0] * len(Ks), [s - lo for s, lo in zip(shown, lower)]], fmt="o",
                    color="C3", capsize=3, label=f"empirical lower bound ({conf:.0%}; bar: interval)")
        for K, u in zip(Ks, upper):
            if not math.isfinite(u):
                ax.annotate("", (K, top), (K, top / 1.4), arrowprops={"arrowstyle": "->", "color": "C3"})
        if "gdp_estimate" in metrics:
            gdp = [float(metrics["gdp_estimate"][str(K)]["eps"]) for K in Ks]
            ax.plot(Ks, gdp, "--", color="C0", marker="D", ms=4, label="Gaussian-DP estimate (Nasr et al. 2023)")
        else:
            gdp = [float(metrics["distances"][str(K)]["gdp_eps"]) for K in Ks]
            ax.plot(Ks, gdp, ":", color="C0", marker=".", label=r"Gaussian-fit $\varepsilon$ (estimate)")
        ax.set_ylim(0.0, top * 1.2)
    _symlog(ax, "x", Ks)
    _symlog(ax, "y", linthresh=LINTHRESH)
    s = metrics["settings"]
    ylabel = r"$\varepsilon$ at $\delta$ = " + format(float(s["delta"]), ".3g")
    what = f"audit, sigma={float(s['sigma']):.3g}, S={s['S']}, T={s['T']}"
    if s.get("neighbour"):
        what += f", {s['neighbour']} neighbour"
    finish_axes(ax, xlabel="unlearning steps K", ylabel=ylabel, title_size=10, legend_size=7,
                title=title(metrics, what))


def _ratio_panel(ax, metrics, Ks) -> None:
    """certified / lower bound and certified / estimate per bound; an infinite ratio (nothing shown) is left out."""
    drawn = False
    for i, name in enumerate(_bounds(metrics)):
        for key, style, label in (("certified_over_lower", "o-", "/ lower bound"),
                                  ("certified_over_estimate", "D--", "/ GDP estimate")):
            pts = [(K, float(metrics["ratios"][str(K)][name][key])) for K in Ks]
            pts = [(K, r) for K, r in pts if math.isfinite(r)]
            if pts:
                ax.plot(*zip(*pts), style, color=f"C{i}", ms=4, label=f"certified ({name}) {label}")
                drawn = True
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_yscale("log")
    _symlog(ax, "x", Ks)
    finish_axes(ax, xlabel="unlearning steps K", ylabel="certified / empirical", legend_size=7 if drawn else None,
                title="room left above the audit (1 = tight)", title_size=10)


def _distance_panel(ax, metrics, Ks) -> None:
    for key, label in (("ks", "KS statistic"), ("tv_gauss", "Gaussian-fit TV")):
        ax.plot(Ks, [float(metrics["distances"][str(K)][key]) for K in Ks], marker="o", label=label)
    _symlog(ax, "x", Ks)
    ax.set_ylim(0.0, 1.05)
    finish_axes(ax, xlabel="unlearning steps K", ylabel="distance (held-out chains)",
                title="unlearned vs retrained, chosen statistic", title_size=10, legend_size=8)


@figure("audit")
def fig_audit(metrics, arrays):
    """Left: certified eps per bound, the empirical lower bound (bar up to its interval's upper end) and the
    Gaussian-DP estimate against K. Then, where chains ran: the ratios and the two-sample distances."""
    Ks = [int(K) for K in metrics["settings"]["K"]]
    panels = [_eps_panel]
    if "empirical_eps_lower" in metrics:
        panels += ([_ratio_panel] if "ratios" in metrics else []) + [_distance_panel]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.2), squeeze=False)
    for ax, draw in zip(axes[0], panels):
        draw(ax, metrics, Ks)
    fig.tight_layout()
    return fig
