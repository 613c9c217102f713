"""The pieces every figure function draws with, so each function states only what its figure shows.

Kept apart from ``utils.plots`` (the registry, ``draw`` and the command line) and free of pyplot state:
each piece works on the axes it is given.
"""
from __future__ import annotations

from matplotlib.ticker import MaxNLocator

BARS = "bars: ±1 std over {trials} trials"


def summary_curve(ax, x, summaries, label: str, **kw):
    """Means with a +-1 std bar, from the ``{"mean", "std"}`` records metrics.json stores per point;
    finish_axes then says in the y label what the bars are."""
    summaries = list(summaries)
    mean = [s["mean"] for s in summaries]
    std = [s["std"] for s in summaries]
    trials = sorted({s.get("trials") for s in summaries if s.get("trials")})
    ax._error_bar_trials = sorted(set(getattr(ax, "_error_bar_trials", [])) | set(trials))
    return ax.errorbar(x, mean, yerr=std, marker=kw.pop("marker", "o"), capsize=3, label=label, **kw)


def bars_note(ax) -> str | None:
    """What the error bars drawn on ax are, or None when it has none."""
    trials = getattr(ax, "_error_bar_trials", None)
    if trials is None:
        return None
    return BARS.format(trials="/".join(map(str, trials)) or "the")


def end_labels(ax, items, *, min_gap_points: float = 9.0, fontsize: float = 7) -> None:
    """Text at the end of curves, ``items`` = [(x, y, text, color)], pushed apart vertically so that
    labels of curves ending close together never overlap (at least ``min_gap_points`` apart)."""
    if not items:
        return
    fig = ax.figure
    ax.autoscale_view()  # the data -> display transform must use the final limits
    to_points = 72.0 / fig.dpi
    placed = sorted(((ax.transData.transform((x, y))[1] * to_points, x, y, text, color)
                     for x, y, text, color in items), key=lambda t: t[0])
    last = None
    for at, x, y, text, color in placed:
        want = at if last is None else max(at, last + min_gap_points)
        ax.annotate(text, (x, y), xytext=(4, want - at), textcoords="offset points", fontsize=fontsize,
                    color=color, va="center", annotation_clip=False)
        last = want


def title(metrics: dict, what: str) -> str:
    suffix = " (plan only)" if metrics.get("plan_only") else ""
    return f"{metrics.get('dataset', '')}: {what}{suffix}"


def finish_axes(ax, *, xlabel: str, ylabel: str | None = None, title: str | None = None,
                xscale: str | None = None, yscale: str | None = None, legend_size: float | None = None,
                title_size: float | None = None, integer_x: bool = False) -> None:
    """Scales, labels, title and legend: the closing lines of every panel.

    None leaves a setting alone, so panels with nothing labelled (plan-only runs) get no empty legend.
    Call it after the last curve: the legend lists only what is drawn by then.
    """
    if xscale:
        ax.set_xscale(xscale)
    if integer_x:  # counts (removed points, requests): no 2.5 or 7.5 ticks
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if yscale:
        ax.set_yscale(yscale)
    ax.set_xlabel(xlabel)
    note = bars_note(ax)
    if ylabel is not None:
        ax.set_ylabel(ylabel + (f"\n({note})" if note else ""))
    if title is not None:
        ax.set_title(title, **({} if title_size is None else {"fontsize": title_size}))
    if legend_size is not None:
        ax.legend(fontsize=legend_size)


def plan_only_note(ax, text: str) -> None:
    """A centred note where a plan-only run has no accuracies to draw."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
