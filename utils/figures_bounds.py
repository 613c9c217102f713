"""Paper against best (docs/METHOD.md §7, §12): the same runs certified with ``--bound paper``, ``--bound best`` and
(optionally) ``--bound gdp``, side by side, drawn from saved run folders (plan-only runs are enough for the step
counts):

    python -m utils.figures_bounds --paper result_paper --best result_best --gdp result_gdp \
        --out docs/figures/bounds_MNIST.png

Each of ``--paper`` / ``--best`` is a result directory holding a ``paint_utility_epsilon`` run (K against eps),
a ``paint_utility_s`` run (K against S; with accuracies when the chains ran) and a ``sequential2`` run
(accumulated steps of a stream); panels whose runs are missing are left out.
"""
from __future__ import annotations

import argparse
import io
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from utils import results  # noqa: E402
from utils.figure_parts import finish_axes, summary_curve  # noqa: E402

json_key = results.json_key
PANELS = ("paint_utility_epsilon", "paint_utility_s", "sequential2")
STYLE = {"paper": {"linestyle": "--", "marker": "o", "alpha": 0.75}, "best": {"linestyle": "-", "marker": "s"},
         "gdp": {"linestyle": ":", "marker": "x", "markersize": 9}}


def find_runs(root: str, dataset: str | None = None) -> dict:
    """{mode: metrics} of the LMC run folders under ``root`` (the newest of each mode)."""
    found = {}
    for folder, _, files in os.walk(root):
        if "metrics.json" not in files or os.sep + "cache" in folder:
            continue
        m = results.read_json(os.path.join(folder, "metrics.json"))
        if m.get("mode") in PANELS and (dataset is None or m.get("dataset") == dataset):
            t = os.path.getmtime(os.path.join(folder, "metrics.json"))
            if m["mode"] not in found or t > found[m["mode"]][0]:
                found[m["mode"]] = (t, m)
    return {k: m for k, (_, m) in found.items()}


def _k_against_eps(ax, runs):
    for bound, m in runs.items():
        eps = [float(e) for e in m["eps_list"]]
        for i, S in enumerate(m["S_list"]):
            ax.plot(eps, [m["K"][json_key(S)][json_key(e)] for e in eps], color=f"C{i}", **STYLE[bound],
                    label=f"{bound}, S={json_key(S)}")
    finish_axes(ax, xlabel=r"target $\varepsilon$", ylabel="unlearning steps K", xscale="log", yscale="log",
                legend_size=7, title="K against eps", title_size=10)


def _k_against_S(ax, runs):
    for bound, m in runs.items():
        S = [float(v) for v in m["S_list"]]
        for i, e in enumerate(m["eps_list"]):
            ax.plot(S, [m["K"][json_key(e)][json_key(v)] for v in S], color=f"C{i}", **STYLE[bound],
                    label=f"{bound}, eps={json_key(e)}")
    finish_axes(ax, xlabel="removed points S", ylabel="unlearning steps K", xscale="log", yscale="log",
                legend_size=7, title="K against S", title_size=10)


def _accuracy_against_S(ax, runs):
    runs = {bound: m for bound, m in runs.items() if m.get("accuracy")}   # the paper run may be plan only
    for bound, m in runs.items():
        S = [float(v) for v in m["S_list"]]
        keys = [json_key(v) for v in S]
        acc = m["accuracy"]
        for i, e in enumerate(m["eps_list"]):
            summary_curve(ax, S, [acc["unlearn"][json_key(e)][s] for s in keys], f"{bound}, eps={json_key(e)}",
                          color=f"C{i}", linestyle=STYLE[bound]["linestyle"])
    m = next(iter(runs.values()))
    summary_curve(ax, S, [m["accuracy"]["retrain"][s] for s in keys], "retraining", color="k", linestyle=":")
    finish_axes(ax, xlabel="removed points S", ylabel="test accuracy after unlearning", xscale="log",
                legend_size=7, title="accuracy (K from each bound)", title_size=10)


def _stream(ax, runs):
    for bound, m in runs.items():
        for i, S in enumerate(m["S_values"]):
            s = json_key(S)
            ax.plot(m["lmc_removed_points"][s], m["lmc_accumulated_steps"][s], color=f"C{i}",
                    linestyle=STYLE[bound]["linestyle"], label=f"{bound}, S={s} per request")
    finish_axes(ax, xlabel="removed points (stream of requests)", ylabel="accumulated unlearning steps",
                yscale="log", legend_size=7, title="a stream: accumulated steps", title_size=10)


def paper_vs_best(paper: dict, best: dict, gdp: dict | None = None):
    """The figure: one panel per mode both result directories hold (with the gdp runs' curve where given)."""
    panels = []
    for mode, draw in (("paint_utility_epsilon", _k_against_eps), ("paint_utility_s", _k_against_S),
                       ("sequential2", _stream)):
        if mode in paper and mode in best:
            runs = {"paper": paper[mode], "best": best[mode]}
            if gdp and mode in gdp:
                runs["gdp"] = gdp[mode]
            panels.append((draw, runs))
    if best.get("paint_utility_s", {}).get("accuracy"):
        runs = {"best": best["paint_utility_s"]}
        if paper.get("paint_utility_s", {}).get("accuracy"):
            runs = {"paper": paper["paint_utility_s"], **runs}
        panels.insert(min(2, len(panels)), (_accuracy_against_S, runs))
    if not panels:
        raise ValueError("no mode is in both result directories (allowed: runs of " + ", ".join(PANELS) + ")")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2), squeeze=False)
    for ax, (draw, runs) in zip(axes[0], panels):
        draw(ax, runs)
    some = next(iter(panels[0][1].values()))
    fig.suptitle(f"{some.get('dataset', '')}: --bound paper (dashed) against --bound best (solid)"
                 + (" and gdp, Gaussian DP (dotted, x)" if gdp else "") + f", sigma={json_key(some.get('sigma'))}",
                 fontsize=11)
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Paper against best certificates, from two result directories.")
    p.add_argument("--paper", required=True, help="result directory of the --bound paper runs")
    p.add_argument("--best", required=True, help="result directory of the --bound best runs")
    p.add_argument("--gdp", default=None, help="result directory of the --bound gdp runs (optional: its curve joins)")
    p.add_argument("--dataset", default=None, help="only runs on this dataset")
    p.add_argument("--out", required=True, help="figure file (.png or .pdf)")
    args = p.parse_args(argv)
    try:
        fig = paper_vs_best(find_runs(args.paper, args.dataset), find_runs(args.best, args.dataset),
                            find_runs(args.gdp, args.dataset) if args.gdp else None)
    except ValueError as exc:
        print(f"figures_bounds: error: {exc}", file=sys.stderr)
        return 2
    ext = os.path.splitext(args.out)[1].lstrip(".").lower()
    if ext not in ("png", "pdf"):
        print(f"figures_bounds: error: --out {args.out!r} is not allowed (allowed: a .png or .pdf file)", file=sys.stderr)
        return 2
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, format=ext, dpi=120)
    plt.close(fig)
    results.atomic_write_bytes(args.out, buf.getvalue())   # a new file renamed into place: never through a link
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
