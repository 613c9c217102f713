"""The pieces every figure function draws with, so each function states only what its figure shows.

Kept apart from ``utils.plots`` (the registry, ``draw`` and the command line) and free of pyplot state:
each piece works on the axes it is given.
"""
from __future__ import annotations


def summary_curve(ax, x, summaries, label: str, **kw):
    """Means with a +-1 std bar, from the ``{"mean", "std"}`` records metrics.json stores per point."""
    summaries = list(summaries)
    mean = [s["mean"] for s in summaries]
    std = [s["std"] for s in summaries]
    return ax.errorbar(x, mean, yerr=std, marker=kw.pop("marker", "o"), capsize=3, label=label, **kw)


def title(metrics: dict, what: str) -> str:
    suffix = " (plan only)" if metrics.get("plan_only") else ""
    return f"{metrics.get('dataset', '')}: {what}{suffix}"


def finish_axes(ax, *, xlabel: str, ylabel: str | None = None, title: str | None = None,
                xscale: str | None = None, yscale: str | None = None, legend_size: float | None = None,
                title_size: float | None = None) -> None:
    """Scales, labels, title and legend: the closing lines of every panel.

    None leaves a setting alone, so panels with nothing labelled (plan-only runs) get no empty legend.
    Call it after the last curve: the legend lists only what is drawn by then.
    """
    if xscale:
        ax.set_xscale(xscale)
    if yscale:
        ax.set_yscale(yscale)
    ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title, **({} if title_size is None else {"fontsize": title_size}))
    if legend_size is not None:
        ax.legend(fontsize=legend_size)


def plan_only_note(ax, text: str) -> None:
    """A centred note where a plan-only run has no accuracies to draw."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
