"""Figure defects a daily user met: labelled error bars, distinct colours, visible coinciding curves,
non-overlapping end labels, integer ticks on counts, no empty plan-only figure."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from utils import plots  # noqa: E402
from utils.figure_parts import end_labels  # noqa: E402


def _acc(mean, trials=7):
    return {"mean": mean, "std": 0.01, "se": 0.004, "trials": trials}


def test_fig3a_labels_its_bars_and_draws_retraining_above_unlearning():
    cell = {"lmc_unlearn": _acc(0.9), "lmc_retrain": _acc(0.9), "lmc_learn": _acc(0.9), "d2d": _acc(0.5),
            "sigma": 0.1, "d2d_sigma_1": 1.0}
    metrics = {"dataset": "D", "S": 1, "noiseless_accuracy": 0.95, "settings": {"1": {"0.5": cell, "1": cell}}}
    fig = plots.FIGURES[("LMC", "baseline")](metrics, {})
    ax = fig.axes[0]
    assert ax.get_ylabel() == "test accuracy\n(bars: ±1 std over 7 trials)"
    lines = {line.get_label(): line for line in ax.get_lines()}
    # errorbar's data line carries no label: find them by colour
    unlearn = next(line for line in ax.get_lines() if line.get_color() == "C0" and line.get_marker() == "o")
    retrain = next(line for line in ax.get_lines() if line.get_color() == "C2")
    assert retrain.get_zorder() > unlearn.get_zorder() and retrain.get_markerfacecolor() == "none"
    assert retrain.get_markersize() > unlearn.get_markersize()
    assert "noiseless optimum" in lines
    plt.close(fig)


def test_paper_b_fig3a_never_reuses_a_batch_colour_for_langevin_or_d2d():
    keys = ["0.5", "1"]
    cell = {"unlearn": _acc(0.8), "retrain": _acc(0.85)}
    comp = {"lmc": {k: _acc(0.7) for k in keys}, "d2d": {"1": {k: _acc(0.5) for k in keys},
                                                          "5": {k: _acc(0.6) for k in keys}}}
    metrics = {"dataset": "D", "K": 1, "eps_list": [0.5, 1.0], "batch_sizes": ["128", "full"],
               "accuracy": {b: {k: cell for k in keys} for b in ("128", "full")}, "comparison": comp}
    fig = plots.FIGURES[("SGD", "compare_baseline_nonconvergent")](metrics, {})
    ax = fig.axes[0]
    colours = [c.lines[0].get_color() for c in ax.containers]     # one errorbar container per curve
    labels = [c.get_label() for c in ax.containers]
    assert labels == ["PNSGD b = 128, K = 1", "PNSGD full batch, K = 1", "Langevin unlearning K = 1", "D2D K = 1",
                      "D2D K = 5"]
    assert len(set(colours)) == len(colours)
    plt.close(fig)


def test_paper_b_fig3b_keeps_coinciding_curves_visible_and_ticks_counts_as_integers():
    ones = [1] * 10
    metrics = {"dataset": "D", "sigma": 0.03, "epsilon": 1.0, "k_lists": {"128": ones, "256": ones, "512": ones,
                                                                          "full": [3] * 10},
               "lmc_request_size": 5, "lmc_k_list": [10, 12], "d2d_k_list": None, "d2d_factor": 1.0}
    fig = plots.FIGURES[("SGD", "sequential")](metrics, {})
    ax = fig.axes[0]
    pnsgd = [line for line in ax.get_lines() if line.get_label().startswith("PNSGD")]
    assert [line.get_label() for line in pnsgd] == ["PNSGD b = 128", "PNSGD b = 256 (same as b = 128)",
                                                     "PNSGD b = 512 (same as b = 128)", "PNSGD full batch"]
    styles = {(str(line.get_linestyle()), line.get_marker()) for line in pnsgd}
    assert len(styles) == 4
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    plt.close(fig)


def test_end_labels_never_overlap_even_for_equal_end_points():
    fig, ax = plt.subplots(dpi=100)
    ax.plot([0, 10], [1, 100])
    ax.set_yscale("log")
    end_labels(ax, [(10, 100, "0.900", "C0"), (10, 100, "0.910", "C1"), (10, 99, "0.920", "C2")])
    fig.canvas.draw()
    boxes = sorted((t.get_window_extent() for t in ax.texts), key=lambda b: b.y0)
    assert len(boxes) == 3
    for low, high in zip(boxes, boxes[1:]):
        assert high.y0 >= low.y1 - 1e-6   # stacked, not overlapping
    plt.close(fig)


@pytest.mark.parametrize("family", ["LMC", "SGD"])
def test_retrain_noiseless_plan_writes_no_empty_figure(tmp_path, family):
    metrics = {"dataset": "D", "mode": "retrain_noiseless", "family": family, "plan_only": True,
               "S_list": [1, 10], "remove_list": [1, 10], "burn_in": 100, "batch_sizes": ["full"]}
    assert plots.draw(str(tmp_path), metrics, {}) == []
    assert not list(tmp_path.iterdir())
