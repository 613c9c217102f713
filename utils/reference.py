"""What the noise costs: the noiseless fit of the chains' own objective, and the majority-class rate.

The chains sample around the minimiser of f_D(w) = (1/n) sum_i loss(w; x_i, y_i) + (m/2) ||w||^2
(docs/METHOD.md §1.2). scikit-learn's LogisticRegression without intercept minimises
C sum_i loss_i + ||w||^2 / 2, the same function times C n when C = 1 / (m n); with unit-norm rows the
per-sample gradient norm is at most 1 (binary) or sqrt(2) (softmax), so the clip at M never fires for
the default M and the objectives are equal. The held-out accuracy of that minimiser is what the chains
would reach without noise.
"""
from __future__ import annotations

import warnings

import numpy as np

from utils import models

# Held-out accuracy this close to the majority-class rate means the model predicts hardly better than a constant.
MAJORITY_MARGIN = 0.03


def sklearn_C(*, m: float, n: int) -> float:
    """scikit-learn's inverse regularisation C for the objective (1/n) sum loss + (m/2)||w||^2: 1 / (m n)."""
    if not (m > 0 and n >= 1):
        raise ValueError(f"m={m!r}, n={n!r} (allowed: m > 0, n >= 1)")
    return 1.0 / (m * n)


def clip_never_fires(*, M: float, num_classes: int, max_row_norm: float = 1.0) -> bool:
    """True when every per-sample loss gradient has norm <= M: ||x|| |sigmoid - 1| <= ||x|| (binary),
    ||x|| ||softmax - e_y|| <= sqrt(2) ||x|| (softmax)."""
    bound = models.model_for(num_classes).smallest_unclipped_M(max_row_norm)   # G max ||x_i||
    return M >= bound * (1.0 - 1e-9)   # unit rows carry rounding error of a few ulp


def majority_rate(y_train: np.ndarray, y_test: np.ndarray) -> float:
    """Held-out accuracy of always predicting the training set's most frequent label."""
    values, counts = np.unique(y_train, return_counts=True)
    return float(np.mean(np.asarray(y_test) == values[int(np.argmax(counts))]))


def noiseless_fit(X_train, y_train, *, m: float, num_classes: int):
    """The minimiser of the chains' objective (no noise) by scikit-learn: weights (d,) or (d, k)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    n = len(y_train)
    model = LogisticRegression(C=sklearn_C(m=m, n=n), fit_intercept=False, tol=1e-10, max_iter=10_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X_train, y_train)
    if num_classes == 2:
        w = model.coef_[0]
        # scikit-learn's positive class is classes_[1]; our +1 label must get x.w > 0
        return w if model.classes_[1] > 0 else -w
    return model.coef_.T.copy()


def reference(X_train, y_train, X_test, y_test, *, m: float, M: float, num_classes: int) -> dict:
    """Noiseless accuracy (same objective, scikit-learn), majority-class rate, and how exact the match is."""
    w = noiseless_fit(X_train, y_train, m=m, num_classes=num_classes)
    scores = np.asarray(X_test) @ w
    pred_ok = (scores > 0) == (np.asarray(y_test) > 0) if num_classes == 2 else scores.argmax(axis=1) == y_test
    max_norm = float(np.linalg.norm(X_train, axis=1).max())
    return {"noiseless_accuracy": float(np.mean(pred_ok)), "majority_rate": majority_rate(y_train, y_test),
            "sklearn_C": sklearn_C(m=m, n=len(y_train)),
            "same_objective": clip_never_fires(M=M, num_classes=num_classes, max_row_norm=max_norm)}


def describe(ref: dict, chains_mean: float) -> list[str]:
    """The lines printed beside the chains' accuracy; a warning when the chains are near the majority rate."""
    same = ("the chains' objective exactly" if ref["same_objective"] else
            "the chains' objective without the gradient clip (it fires at this M)")
    lines = [f"  noiseless reference: {ref['noiseless_accuracy']:.4f} (scikit-learn LogisticRegression, no intercept, "
             f"C = 1/(m n) = {ref['sklearn_C']:.4g}: {same}); majority class: {ref['majority_rate']:.4f}"]
    gap = ref["noiseless_accuracy"] - chains_mean
    if gap > MAJORITY_MARGIN:
        lines.append(f"note: the noise costs {gap * 100:.1f} points of held-out accuracy here; a larger --m shrinks "
                     "the spread sigma^2/m of the chains around the noiseless fit (sigma is then chosen anew)")
    if chains_mean <= ref["majority_rate"] + MAJORITY_MARGIN:
        lines.append(f"warning: the chains' held-out accuracy {chains_mean:.4f} is at most "
                     f"{MAJORITY_MARGIN * 100:.0f} points above always predicting the majority class "
                     f"({ref['majority_rate']:.4f}): the noise or the preprocessing leaves little signal "
                     "(--standardize test, a bias column or a larger --m usually help; a larger eps or K lowers sigma)")
    return lines
