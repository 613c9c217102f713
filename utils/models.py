"""What depends on the model (binary logistic or softmax regression) and is decided in one place only:
the default clipping norm M, and when clipping is allowed at all. No torch: scripts call it
before any data is loaded, the engine before it builds an update.
"""
from __future__ import annotations

import math

import numpy as np


def is_softmax(num_classes: int) -> bool:
    """Two classes: binary logistic regression (weights d); more: softmax regression (weights d x k)."""
    return int(num_classes) > 2


def gradient_factor(num_classes: int) -> float:
    """G with ||grad_w loss(w; x, y)|| <= G ||x|| for every w: 1 binary (|sigmoid| <= 1), sqrt(2) softmax
    (||p - e_y||^2 = (1 - p_y)^2 + sum_{j != y} p_j^2 <= 2 (1 - p_y)^2 <= 2)."""
    return math.sqrt(2.0) if is_softmax(num_classes) else 1.0


def default_M(num_classes: int) -> float:
    """The per-sample clipping norm when --M is not given: 1 binary (the papers' M), 2 softmax (above
    sqrt(2) ||x|| for unit rows, so clipping never fires; docs/METHOD.md §6.3)."""
    return 2.0 if is_softmax(num_classes) else 1.0


def smallest_softmax_M(max_norm: float) -> float:
    """The smallest M at which softmax clipping cannot fire: sqrt(2) max_i ||x_i|| (docs/METHOD.md §6.3)."""
    return gradient_factor(3) * float(max_norm)


def clipping_can_fire(num_classes: int, M: float, max_norm: float) -> bool:
    """Whether some per-sample gradient can exceed M: M < G max_i ||x_i|| (G of gradient_factor)."""
    return M < gradient_factor(num_classes) * float(max_norm)


def check_clipping(*, num_classes: int, M: float, max_norm: float = 1.0) -> None:
    """Refuse softmax regression with clipping that can fire (M < sqrt(2) max_i ||x_i||).

    Scaling the residual p_i - e_{y_i} to norm M / ||x_i|| is not the gradient of a convex function: the
    update map can expand (its Jacobian reaches 1.0026 > 1 - eta m = 0.9901 at k = 10, M = 1, m = 0.01;
    tests/test_clipping.py), and every certificate assumes the contraction (docs/METHOD.md §6.3).
    Binary clipping is the gradient of a Huberised logistic loss, convex and 1/4-smooth: allowed.
    """
    if is_softmax(num_classes) and clipping_can_fire(num_classes, M, max_norm):
        raise ValueError(f"M={M:g} is not allowed for softmax regression: clipping would fire and the update "
                         f"is then not a contraction, so no certificate holds (allowed: M >= sqrt(2) max ||x_i|| "
                         f"= {smallest_softmax_M(max_norm):.6g})")


def check_clipping_for_data(*, num_classes: int, M: float, X=None) -> None:
    """check_clipping for training rows X (None: unit-norm rows, as every loaded dataset has). The rows a
    removal brings in are unit-norm, so the largest norm any D' has is at least 1."""
    max_norm = 1.0 if X is None or len(X) == 0 else max(1.0, float(np.linalg.norm(np.asarray(X), axis=1).max()))
    check_clipping(num_classes=num_classes, M=M, max_norm=max_norm)
