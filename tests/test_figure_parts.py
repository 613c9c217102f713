import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from utils import plots  # noqa: E402
from utils.figure_parts import finish_axes, plan_only_note, summary_curve, title  # noqa: E402


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def test_finish_axes_sets_labels_scales_title_and_a_legend_of_the_drawn_curves(ax):
    ax.plot([1, 10], [1, 100], label="a")
    ax.plot([1, 10], [2, 200], label="b")
    finish_axes(ax, xlabel="x", ylabel="y", title="T", xscale="log", yscale="log", legend_size=7, title_size=10)
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("x", "y", "T")
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert ax.title.get_fontsize() == 10
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["a", "b"]
    assert all(t.get_fontsize() == 7 for t in legend.get_texts())


def test_finish_axes_leaves_unset_parts_alone(ax):
    ax.set_ylabel("kept")
    ax.set_title("kept too")
    finish_axes(ax, xlabel="x")
    assert ax.get_legend() is None
    assert (ax.get_ylabel(), ax.get_title()) == ("kept", "kept too")
    assert (ax.get_xscale(), ax.get_yscale()) == ("linear", "linear")


def test_summary_curve_draws_means_with_bars_from_mean_minus_to_mean_plus_std(ax):
    x = [1.0, 2.0, 4.0]
    summaries = [{"mean": 0.5, "std": 0.1}, {"mean": 0.7, "std": 0.05}, {"mean": 0.9, "std": 0.0}]
    container = summary_curve(ax, x, iter(summaries), "acc", color="C2")
    line, caps, (bars,) = container
    assert np.allclose(line.get_xydata(), [[1.0, 0.5], [2.0, 0.7], [4.0, 0.9]])
    assert line.get_marker() == "o" and container.get_label() == "acc"
    ends = np.array([seg[:, 1] for seg in bars.get_segments()])
    assert np.allclose(ends, [[0.4, 0.6], [0.65, 0.75], [0.9, 0.9]])
    assert len(caps) == 2  # capped bars: one cap line below, one above
    assert summary_curve(ax, x, summaries, "d2d", marker="s")[0].get_marker() == "s"
    assert ax.get_legend_handles_labels()[1] == ["acc", "d2d"]


def test_plan_only_note_is_centred_in_axes_coordinates(ax):
    plan_only_note(ax, "plan only: no accuracies")
    (text,) = ax.texts
    assert text.get_text() == "plan only: no accuracies"
    assert text.get_position() == (0.5, 0.5) and text.get_transform() == ax.transAxes
    assert (text.get_ha(), text.get_va()) == ("center", "center")


def test_title_names_the_dataset_and_marks_plan_only_runs():
    assert title({"dataset": "DIGITS"}, "noise") == "DIGITS: noise"
    assert title({"dataset": "DIGITS", "plan_only": True}, "noise") == "DIGITS: noise (plan only)"


def test_sgd_comparison_pairs_each_unlearning_curve_with_a_dashed_retraining_line_of_its_colour():
    keys = ["0.5", "1"]
    cell = {"unlearn": {"mean": 0.8, "std": 0.01}, "retrain": {"mean": 0.85, "std": 0.01}}
    metrics = {"dataset": "D", "K": 1, "eps_list": [0.5, 1.0], "batch_sizes": ["32", "full"],
               "accuracy": {b: {k: cell for k in keys} for b in ("32", "full")}, "comparison": {}}
    fig = plots.FIGURES[("SGD", "compare_baseline_nonconvergent")](metrics, {})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "retraining b = 32", "retraining full batch", "PNSGD b = 32, K = 1", "PNSGD full batch, K = 1"]
    dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert [line.get_color() for line in dashed] == ["C0", "C1"]
    assert all(np.allclose(line.get_ydata(), 0.85) for line in dashed)
    assert (ax.get_xscale(), ax.get_ylabel(), ax.get_title()) == (
        "log", "test accuracy\n(bars: ±1 std over the trials)", "D: unlearning one point")
    plt.close(fig)
