"""One function per figure, each reading a saved run folder (metrics.json + arrays.npz), so any
figure can be redrawn without recomputing:  ``python -m utils.plots RUN_FOLDER [RUN_FOLDER ...]`` (a mode
folder means its latest run).

Every figure function takes ``(metrics, arrays)`` and returns a matplotlib Figure; ``draw(folder)``
saves it as ``figure.png`` and ``figure.pdf`` in the folder (atomically). The functions live in
``utils/figures_*.py`` and draw with the shared pieces of ``utils/figure_parts.py``.
"""
from __future__ import annotations

import io
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from utils import results  # noqa: E402

FIGURES = {}


def figure(mode: str, family: str | None = None):
    """Register the figure function of one experiment mode (the run folder's last path part).

    ``family`` (LMC or SGD) separates modes both papers use (``paint_unlearning_sigma``,
    ``retrain_noiseless``): a family's own function wins over the plain mode's.
    """
    def register(fn):
        FIGURES[mode if family is None else (family, mode)] = fn
        return fn
    return register


def save_figure(fig, folder: str, stem: str = "figure") -> list[str]:
    paths = []
    for ext in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=150 if ext == "png" else None, bbox_inches="tight")
        path = os.path.join(folder, f"{stem}.{ext}")
        results.atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    plt.close(fig)
    return paths


def draw(folder: str, metrics: dict | None = None, arrays: dict | None = None) -> list[str]:
    """Draw the figure of a run folder from what it saved; returns the paths written (none when the
    figure function has nothing to draw, e.g. a plan with no accounting curves)."""
    if metrics is None:
        metrics = results.read_json(os.path.join(folder, "metrics.json"))
    if not isinstance(metrics, dict):
        raise ValueError(f"metrics.json holds a JSON {type(metrics).__name__}, not a run's record")
    if arrays is None:
        path = os.path.join(folder, "arrays.npz")
        arrays = results.read_npz(path) if os.path.exists(path) else {}
    mode = metrics.get("mode") or os.path.basename(os.path.normpath(folder))
    fn = FIGURES.get((metrics.get("family"), mode)) or FIGURES.get(mode)
    if fn is None:
        raise ValueError(f"no figure for mode {mode!r} (known: {', '.join(sorted(map(str, FIGURES)))})")
    fig = fn(metrics, arrays)
    return [] if fig is None else save_figure(fig, folder)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m utils.plots RUN_FOLDER [RUN_FOLDER ...]   (redraws figure.png/.pdf; a mode "
              "folder such as result/LMC/DIGITS/baseline means its latest run)")
        return 0 if argv else 2
    for given in argv:
        try:  # a mode folder means the run its `latest` names
            folder = results.resolve_run_dir(given)
        except results.ResultError as exc:
            print(f"plots: error: {exc}", file=sys.stderr)
            return 2
        why = results.unfinished(folder)
        if why is not None:   # an unfinished run's files are never drawn as its results
            print(f"plots: error: {folder} is not a finished run: {why}", file=sys.stderr)
            return 2
        try:
            paths = draw(folder)
        except OSError as exc:
            from utils import cli

            print(f"plots: error: {cli.os_error_text(exc)}", file=sys.stderr)
            return 2
        except Exception as exc:   # a foreign or damaged record: one line, not the figure code's traceback
            if os.environ.get("UNLEARN_DEBUG"):
                raise
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"plots: error: {folder}: its metrics.json / arrays.npz cannot be drawn ({reason})", file=sys.stderr)
            return 2
        for path in paths:
            print(path)
    return 0


# The figure functions of each paper live in their own modules and register themselves here.
def _load_figure_modules():
    for name in ("utils.figures_baseline", "utils.figures_lmc", "utils.figures_sgd", "utils.figures_audit",
                 "utils.figures_network"):
        try:
            __import__(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise


_load_figure_modules()

if __name__ == "__main__":
    # `python -m utils.plots` runs this file as __main__: the figure modules registered themselves in
    # the imported utils.plots, so call that module's main.
    from utils import plots as _plots

    sys.exit(_plots.main())
