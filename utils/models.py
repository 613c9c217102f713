"""The models: one class per loss, holding everything that depends on which model runs.

A model is a linear predictor with weights w of shape (d,) or (d, k) and a per-sample loss l(w; x, y) =
phi(w^T x, y), trained on (1/n) sum_i l(w; x_i, y_i) + (m/2) ||w||^2 (docs/METHOD.md §1.2). Its gradient is
x_i times a residual of `width` numbers (1, or k for softmax), which is why the engine needs only two matrix
products with the data per step (docs/METHOD.md §2.5); the model says how logits become residuals, how
residuals are clipped, and what the accountant may assume (G, smoothness, convexity).

Adding a model is adding a subclass of `Model` (tests/test_models.py defines a ridge regression one).
`model_for(num_classes)` maps a dataset's classes to the model the papers use: 2 -> BinaryLogistic,
k > 2 -> Softmax(k).

No torch at import time: scripts decide M and refuse clipping before any data is loaded; the methods the
engine calls (`prepare`, `residual_`, `hits`) import torch when called.
"""
from __future__ import annotations

import math

import numpy as np


class Model:
    """A linear model's loss and what the engine, the accountant and the audit need from it.

    Class attributes (per model):
      name         short identifier (cache keys never use it; results do not depend on it)
      title        what error messages and logs call it
      G            ||grad_w l(w; x, y)|| <= G ||x|| for every w (inf: no such bound)
      smoothness_bound  L - m of the closed-form bound for unit-norm rows (``--smoothness bound``)
      curvature    c with grad^2 l <= c x x^T, so L = c lambda_max(X^T X / n) + m (``--smoothness data``)
      default_M    the per-sample clipping norm when --M is not given
      convex_clipping   clipping the residual is the gradient of a convex loss (a Huberised one), so the
                   update stays a contraction when clipping fires
      strongly_convex   the loss is convex, so with (m/2)||w||^2 the objective is m-strongly convex and the
                   certificates' contraction holds (docs/METHOD.md §1.3)
    """

    name: str = "model"
    title: str = "model"
    num_classes: int = 2
    width: int = 1
    G: float = math.inf
    smoothness_bound: float = math.inf
    curvature: float = math.inf
    default_M: float = 1.0
    convex_clipping: bool = False
    strongly_convex: bool = True

    @property
    def kind(self) -> str:
        """How a run's log names the model ("binary logistic", "10-class softmax")."""
        return self.title

    def decision_rule(self, classes) -> str:
        """How exported weights predict, in words, for the label values ``classes`` (in target order)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shapes
    def weight_shape(self, C: int, d: int) -> tuple[int, ...]:
        """(C, d) for one output per sample, (C, d, width) otherwise."""
        return (C, d) if self.width == 1 else (C, d, self.width)

    def params(self, d: int) -> int:
        """The number of parameters of one chain (D2D's dimension, docs/METHOD.md §8)."""
        return d * self.width

    def input_dim(self, W) -> int:
        """The feature dimension d of chains W (weight_shape(C, d)): their second axis."""
        return W.shape[1]

    # ------------------------------------------------------------------ clipping and certificates
    def smallest_unclipped_M(self, max_norm: float = 1.0) -> float:
        """The smallest M at which clipping cannot fire: G max_i ||x_i||."""
        return self.G * float(max_norm)

    def clipping_can_fire(self, M: float, max_norm: float = 1.0) -> bool:
        """Whether some per-sample gradient can exceed M: M < G max_i ||x_i||."""
        return M < self.smallest_unclipped_M(max_norm)

    def certificates_apply(self, M: float, max_norm: float = 1.0) -> bool:
        """The update is a contraction (every certificate assumes it): a strongly convex objective, and
        clipping that either never fires or is itself the gradient of a convex loss (docs/METHOD.md §6.3)."""
        return self.strongly_convex and (self.convex_clipping or not self.clipping_can_fire(M, max_norm))

    def check_clipping(self, *, M: float, max_norm: float = 1.0) -> None:
        """ValueError when no certificate holds for this M (certificates_apply)."""
        if self.certificates_apply(M, max_norm):
            return
        if not self.strongly_convex:
            raise ValueError(f"{self.title} is not strongly convex: no certificate holds for it")
        raise ValueError(f"M={M:g} is not allowed for {self.title}: clipping would fire and the update "
                         f"is then not a contraction, so no certificate holds (allowed: M >= "
                         f"{self.G_text} max ||x_i|| = {self.smallest_unclipped_M(max_norm):.6g})")

    def check_clipping_for_data(self, *, M: float, X=None) -> None:
        """check_clipping for training rows X (None: unit-norm rows, as every loaded dataset has). The rows a
        removal brings in are unit-norm, so the largest norm any D' has is at least 1."""
        max_norm = 1.0 if X is None or len(X) == 0 else max(1.0, float(np.linalg.norm(np.asarray(X), axis=1).max()))
        self.check_clipping(M=M, max_norm=max_norm)

    @property
    def G_text(self) -> str:
        return "sqrt(2)" if self.G == math.sqrt(2.0) else f"{self.G:g}"

    # ------------------------------------------------------------------ numpy: the audit's statistics
    def loss(self, W: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(C, r) loss l(w_c; x_j, y_j) of C chains W (weight_shape(C, d)) on r points, float64."""
        raise NotImplementedError

    def loss_gradients(self, w: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(r, params(d)) per-point loss gradients at one weight w, flattened."""
        raise NotImplementedError

    # ------------------------------------------------------------------ torch: the engine
    def encode_labels(self, ids):
        """Labels from uniform class ids 0..num_classes-1 (replacement points, docs/METHOD.md §2.3)."""
        return ids

    def prepare(self, X, y):
        """(y, data, targets) on X's device: checked labels, the (n, d) matrix both products of a step use,
        and the (n, width) targets residual_ subtracts (None: the labels are folded into data)."""
        raise NotImplementedError

    def residual_(self, z, targets, bound) -> None:
        """In place: z (..., width, n) = data products w^T data_i -> the residuals r_i, so that the clipped
        gradient of sample i is data_i r_i^T; targets (..., width, n) or None, bound (..., 1, n) = M / ||x_i||
        or None (clipping cannot fire)."""
        raise NotImplementedError

    def hits(self, X, w, y):
        """(r, Cc) bool: whether chain c predicts test point j right (w: (Cc, ...) weights)."""
        raise NotImplementedError


class BinaryLogistic(Model):
    """Binary logistic regression, labels +1/-1: l(w; x, y) = log(1 + exp(-y x.w)) (docs/METHOD.md §1.2).

    The engine folds the label into the data (rows -y_i x_i), so the residual is sigmoid(-y_i x_i.w) >= 0 and
    the gradient is (-y_i x_i) times it. Clipping min(s, M / ||x_i||) is the gradient of a Huberised logistic
    loss: convex and 1/4-smooth, so it is allowed.
    """

    name, title = "binary_logistic", "binary logistic regression"
    num_classes, width = 2, 1
    G = 1.0                   # |sigmoid| <= 1
    smoothness_bound = 0.25   # logistic loss'' <= 1/4 on unit-norm rows
    curvature = 0.25          # Hessian (1/n) sum s_i (1 - s_i) x_i x_i^T <= (1/4) X^T X / n
    default_M = 1.0           # the papers' M
    convex_clipping = True

    kind = "binary logistic"

    def decision_rule(self, classes):
        return f"x @ w > 0 -> label {classes[0]}, else {classes[1]}"

    def loss(self, W, X, y):
        return np.logaddexp(0.0, -(W @ X.T) * y.astype(np.float64)[None, :])

    def loss_gradients(self, w, X, y):
        from scipy import special

        yf = y.astype(np.float64)
        return (special.expit(yf * (X @ w)) - 1.0)[:, None] * yf[:, None] * X

    def encode_labels(self, ids):
        return 2 * ids - 1

    def prepare(self, X, y):
        if not ((y == 1) | (y == -1)).all():
            raise ValueError(f"binary labels must be +1 or -1, got values {_some_values(y)}")
        y = y.to(X.dtype)
        return y, X * (-y)[:, None], None

    def residual_(self, z, targets, bound):
        import torch

        z.sigmoid_()  # |s_ic| = sigmoid(-y_i x_i.w_c); the gradient is x_i s_ic = (-y_i x_i) |s_ic|
        if bound is not None:
            torch.minimum(z, bound, out=z)  # clip: |s| ||x_i|| <= M

    def hits(self, X, w, y):
        return (X @ w.t() > 0) == (y > 0)[:, None]


class Softmax(Model):
    """Softmax (multinomial logistic) regression with k classes, labels 0..k-1: l(W; x, y) = logsumexp(W^T x)
    - (W^T x)_y (docs/METHOD.md §1.2); the residual is softmax(W^T x) - e_y.

    Scaling that residual to norm M / ||x|| is not the gradient of a convex function: the update map can
    expand (its Jacobian reaches 1.0026 > 1 - eta m = 0.9901 at k = 10, M = 1, m = 0.01;
    tests/test_clipping.py), and every certificate assumes the contraction, so clipping that can fire is
    refused (docs/METHOD.md §6.3). The default M = 2 lies above sqrt(2) ||x|| for unit rows.
    """

    name, title = "softmax", "softmax regression"
    G = math.sqrt(2.0)        # ||p - e_y||^2 = (1 - p_y)^2 + sum_{j != y} p_j^2 <= 2 (1 - p_y)^2 <= 2
    smoothness_bound = 1.0    # the reference's (loose) bound for unit-norm rows
    # v^T (diag(p) - p p^T) v = Var_{I~p}(v_I) <= (max v - min v)^2 / 4 <= ||v||^2 / 2 (Popoviciu), so the
    # Hessian (1/n) sum (diag(p_i) - p_i p_i^T) (x) x_i x_i^T is <= (1/2) I (x) X^T X / n
    curvature = 0.5
    default_M = 2.0
    convex_clipping = False

    def __init__(self, num_classes: int):
        self.num_classes = self.width = _num_classes(num_classes)
        if self.num_classes < 3:
            raise ValueError(f"softmax regression needs num_classes >= 3, got {num_classes!r} (2: BinaryLogistic)")

    @property
    def kind(self):
        return f"{self.num_classes}-class softmax"

    def decision_rule(self, classes):
        return f"argmax(x @ w) indexes the labels {classes}"

    def loss(self, W, X, y):
        from scipy import special

        z = np.einsum("rd,cdk->crk", X, W)
        picked = np.take_along_axis(z, y.astype(np.int64)[None, :, None].repeat(W.shape[0], 0), axis=2)[..., 0]
        return special.logsumexp(z, axis=2) - picked

    def loss_gradients(self, w, X, y):
        from scipy import special

        p = special.softmax(X @ w, axis=1)
        p[np.arange(X.shape[0]), y.astype(np.int64)] -= 1.0
        return np.einsum("rd,rk->rdk", X, p).reshape(X.shape[0], -1)

    def prepare(self, X, y):
        import torch

        k = self.num_classes
        if y.is_floating_point() and not (y == y.round()).all():
            raise ValueError(f"class labels must be integers 0..{k - 1}, got values {_some_values(y)}")
        y = y.to(torch.int64)
        if ((y < 0) | (y >= k)).any():
            raise ValueError(f"class labels must lie in 0..{k - 1} (num_classes={k}), got values {_some_values(y)}")
        return y, X, torch.nn.functional.one_hot(y, k).to(X.dtype)

    def residual_(self, z, targets, bound):
        # logits -> softmax(z) - onehot(y) along the class axis -2, in place (max subtracted for stability);
        # bound is always None here: clipping that can fire is refused (check_clipping)
        z.sub_(z.amax(dim=-2, keepdim=True))
        z.exp_()
        z.div_(z.sum(dim=-2, keepdim=True))
        z.sub_(targets)

    def hits(self, X, w, y):
        import torch

        return torch.einsum("nd,cdk->nck", X, w).argmax(dim=2) == y[:, None]


def _num_classes(num_classes) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2 (2 = binary logistic), got {num_classes!r}")
    return int(num_classes)


def model_for(num_classes) -> Model:
    """The papers' model for a dataset with this many classes: 2 -> BinaryLogistic, k > 2 -> Softmax(k).
    A Model is returned as it is (so every function taking num_classes also takes a model)."""
    if isinstance(num_classes, Model):
        return num_classes
    k = _num_classes(num_classes)
    return BinaryLogistic() if k == 2 else Softmax(k)


def _some_values(t) -> list:
    import torch

    return torch.unique(t.detach().cpu())[:5].tolist()
