"""A one-hidden-layer network, C chains of it at once: its parameters, loss, gradient and accuracy.

    z(x) = tanh(s x W1 + b1) W2 + b2,   s = sqrt(d)

with `hidden` tanh units (smooth) and one output (binary logistic loss log(1 + e^{-y z}), labels +1/-1) or k
outputs (softmax cross-entropy, labels 0..k-1). The fixed input scale s gives the L2-normalised rows of the
datasets (docs/METHOD.md §1.1) coordinates of mean square 1, the scale the usual initialisation expects, so
the trained model's norm (what noisy fine-tuning clips to C0, docs/METHOD.md §13) stays small.

A chain's parameters are one flat vector [W1 (d x hidden, row-major), b1, W2 (hidden x out), b2], so C chains
are a (C, P) tensor: clipping a model, its weight decay and its noise act on the whole vector, as the
certificate assumes. The forward and backward passes of all chains are batched matrix products (no loop
over chains): with one batch for all chains (full batch, or shared batch orders) the two products with the
data are single (b, d) x (d, C hidden) products; with a batch per chain they are batched products.

``MLP`` is a ``models.Model`` so that the audit's statistics and a run's records can take it where they take a
linear model; it is not strongly convex, so the Langevin engine and its certificates refuse it
(``Model.check_clipping``): networks run through utils/finetune.py and are certified by docs/METHOD.md §13.
No torch at import time (as utils/models.py).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from utils import checks, models
from utils.accountant import finetune as accounting

ACTIVATION = "tanh"


class MLP(models.Model):
    """One hidden layer of ``hidden`` tanh units; the output model of ``num_classes`` (2: one logit, logistic
    loss, labels +1/-1; k > 2: k logits, softmax cross-entropy, labels 0..k-1)."""

    name, title = "mlp", "one-hidden-layer network"
    strongly_convex = False     # no Langevin certificate: noisy fine-tuning certifies it (docs/METHOD.md §13)
    G = math.inf

    def __init__(self, num_classes: int, hidden: int = 64):
        self.output = models.model_for(num_classes)       # the linear model whose loss the last layer has
        self.num_classes = self.output.num_classes
        self.out = 1 if self.num_classes == 2 else self.num_classes
        self.hidden = checks.integer("hidden", hidden, lo=1)

    @property
    def kind(self) -> str:
        return f"{self.hidden}-unit {ACTIVATION} network, {self.output.kind} output"

    def decision_rule(self, classes) -> str:
        rule = self.output.decision_rule(classes).replace("x @ w", "z(x)").replace("(z(x))", "z(x)")
        return f"z(x) = tanh(sqrt(d) x W1 / ||x|| + b1) W2 + b2 (rows normalised, as in training); {rule}"

    # ------------------------------------------------------------------ shapes
    def params(self, d: int) -> int:
        H, out = self.hidden, self.out
        return d * H + H + H * out + out

    def weight_shape(self, C: int, d: int) -> tuple[int, ...]:
        return (C, self.params(d))

    def input_dim(self, W) -> int:
        """The feature dimension d of flat parameters W (C, P): P = d H + H + H out + out."""
        P = W.shape[-1]
        d, rest = divmod(P - self.hidden - self.hidden * self.out - self.out, self.hidden)
        if rest or d < 1:
            raise ValueError(f"parameters of size {P} are not allowed for a {self.kind} "
                             f"(allowed: d {self.hidden} + {self.hidden + self.hidden * self.out + self.out})")
        return d

    def unpack(self, theta, d: int):
        """Views (W1 (C, d, H), b1 (C, H), W2 (C, H, out), b2 (C, out)) of flat parameters (C, P)."""
        C, H, out = theta.shape[0], self.hidden, self.out
        i1, i2, i3 = d * H, d * H + H, d * H + H + H * out
        return (theta[:, :i1].view(C, d, H), theta[:, i1:i2], theta[:, i2:i3].view(C, H, out), theta[:, i3:])

    # ------------------------------------------------------------------ labels
    def encode_labels(self, ids):
        return self.output.encode_labels(ids)

    def prepare(self, X, y):
        """(checked labels, the scaled rows s x, None): what forward() and gradient() read."""
        y, _, _ = self.output.prepare(X, y)
        return y, X * math.sqrt(X.shape[1]), None

    # ------------------------------------------------------------------ torch: all chains at once
    def forward(self, theta, data):
        """(logits (C, b, out), hidden activations (C, b, H)) of chains theta (C, P) on scaled rows ``data``:
        (b, d) shared by all chains, or (C, b, d) one batch per chain."""
        import torch

        d = data.shape[-1]
        W1, b1, W2, b2 = self.unpack(theta, d)
        C, H = theta.shape[0], self.hidden
        if data.ndim == 2:   # one (b, d) x (d, C H) product for every chain
            pre = (data @ W1.transpose(0, 1).reshape(d, C * H)).view(data.shape[0], C, H).transpose(0, 1)
        else:
            pre = torch.bmm(data, W1)
        act = torch.tanh(pre + b1[:, None, :])
        return torch.baddbmm(b2[:, None, :], act, W2), act

    def residual(self, logits, y):
        """d loss / d logits per row: binary -y sigmoid(-y z); softmax softmax(z) - onehot(y)."""
        import torch

        if self.out == 1:
            yy = (y.view(*([1] * (logits.ndim - 2)), -1, 1) if y.ndim == 1 else y[..., None]).to(logits.dtype)
            return -yy * torch.sigmoid(-yy * logits)
        p = torch.softmax(logits, dim=-1)
        labels = y if y.ndim == logits.ndim - 1 else y.expand(logits.shape[:-1])
        return p.scatter_add(-1, labels[..., None].to(torch.int64), torch.full_like(p[..., :1], -1.0))

    def loss_values(self, logits, y):
        """(C, b) loss per chain and row."""
        import torch

        if self.out == 1:
            yy = y.to(logits.dtype) if y.ndim == 2 else y.to(logits.dtype)[None]
            return torch.nn.functional.softplus(-yy * logits[..., 0])
        labels = (y if y.ndim == 2 else y[None].expand(logits.shape[:-1])).to(torch.int64)
        return torch.logsumexp(logits, dim=-1) - logits.gather(-1, labels[..., None])[..., 0]

    def gradient(self, theta, data, y, out=None):
        """(C, P) gradient of each chain's mean loss over its batch, by hand-written batched backpropagation:
        ``data`` (b, d) shared or (C, b, d) per chain, labels ``y`` (b,) or (C, b). ``out``: where to write."""
        import torch

        d, b = data.shape[-1], data.shape[-2]
        C, H = theta.shape[0], self.hidden
        logits, act = self.forward(theta, data)
        r = self.residual(logits, y).div_(b)                       # (C, b, out): d mean loss / d logits
        g = torch.empty_like(theta) if out is None else out
        gW1, gb1, gW2, gb2 = self.unpack(g, d)
        W2 = self.unpack(theta, d)[2]
        gW2.copy_(torch.bmm(act.transpose(1, 2), r))
        gb2.copy_(r.sum(dim=1))
        back = torch.bmm(r, W2.transpose(1, 2)).mul_(1.0 - act * act)   # (C, b, H): d loss / d pre-activation
        gb1.copy_(back.sum(dim=1))
        if data.ndim == 2:
            gW1.copy_((data.t() @ back.transpose(0, 1).reshape(b, C * H)).view(d, C, H).transpose(0, 1))
        else:
            gW1.copy_(torch.bmm(data.transpose(1, 2), back))
        return g

    def predict_hits(self, theta, data, y):
        """(r, C) bool: whether chain c predicts row j right (data: scaled rows)."""
        logits = self.forward(theta, data)[0]
        if self.out == 1:
            return ((logits[..., 0] > 0) == (y > 0)[None, :]).t()
        return (logits.argmax(dim=-1) == y[None, :]).t()

    def hits(self, X, w, y):
        return self.predict_hits(w, X * math.sqrt(X.shape[1]), y)

    # ------------------------------------------------------------------ numpy: the audit's statistics
    def loss(self, W, X, y):
        """(C, r) loss of each chain on each row (float64), through the same batched forward pass."""
        import torch

        W, X = np.asarray(W, dtype=np.float64), np.asarray(X, dtype=np.float64)
        Xt = torch.as_tensor(X)
        yt, data, _ = self.prepare(Xt, torch.as_tensor(np.asarray(y)))
        with torch.no_grad():
            return self.loss_values(self.forward(torch.as_tensor(W), data)[0], yt).numpy()

    def loss_gradients(self, w, X, y):
        """(r, P) loss gradient of one chain w at each row: the batched gradient with one row per chain."""
        import torch

        w, X = np.asarray(w, dtype=np.float64), np.asarray(X, dtype=np.float64)
        yt, data, _ = self.prepare(torch.as_tensor(X), torch.as_tensor(np.asarray(y)))
        theta = torch.as_tensor(w)[None].expand(X.shape[0], w.size).contiguous()
        with torch.no_grad():
            return self.gradient(theta, data[:, None, :], yt[:, None]).numpy()


# ---------------------------------------------------------------- how a network run goes
@dataclasses.dataclass(frozen=True)
class Phase:
    """How a stretch of updates runs: step size, weight decay, gradient clip (None: none), model clip radius
    after each step (None: none) and the per-coordinate noise std per update (0: noiseless)."""

    gamma: float
    lam: float = 0.0
    grad_clip: float | None = None
    model_clip: float | None = None
    sigma: float = 0.0


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How a network is learned and unlearned (utils/finetune.py; the network flags of utils/cli.py, whose
    defaults are these): width, the certificate's variant and constants (C0, C1, C2, sigma0, lr = gamma,
    weight_decay = lam), learning and post-processing epochs, batch size, noisy steps (``auto``: see
    ``steps``). ``C2`` None: C0."""

    hidden: int = 64
    variant: str = "gradient"
    C0: float = 5.0
    C1: float = 1.0
    C2: float | None = None
    sigma0: float = 0.0
    lr: float = 0.5
    weight_decay: float = 1e-3
    learn_epochs: int = 20
    post_epochs: int = 5
    batch_size: int | str = 128
    noisy_steps: int | str = "auto"

    @classmethod
    def from_args(cls, args) -> "Recipe":
        """The recipe of parsed flags (the fields' names; flags left at None take the defaults)."""
        given = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in given.items() if v is not None})

    def model(self, num_classes: int) -> "MLP":
        return MLP(num_classes, hidden=self.hidden)

    @property
    def radius(self) -> float:
        """C2, the model clipping radius (variant model): C0 unless given."""
        return self.C0 if self.C2 is None else self.C2

    def constants(self, delta: float) -> accounting.FinetuneConstants:
        """The certificate's constants (docs/METHOD.md §13): only the clipping, step size and decay matter."""
        return accounting.make_finetune_constants(variant=self.variant, C0=self.C0, gamma=self.lr,
                                                  lam=self.weight_decay, C1=self.C1 if self.variant == "gradient"
                                                  else None, C2=self.radius if self.variant == "model" else None,
                                                  sigma0=self.sigma0, delta=delta)

    def learning(self) -> Phase:
        return Phase(gamma=self.lr, lam=self.weight_decay, grad_clip=self.C1)

    def noisy(self, sigma: float) -> Phase:
        if self.variant == "gradient":
            return Phase(gamma=self.lr, lam=self.weight_decay, grad_clip=self.C1, sigma=sigma)
        # the gradient clip keeps the steps stable; the model-clipping bound does not use it
        return Phase(gamma=self.lr, lam=self.weight_decay, grad_clip=self.C1, model_clip=self.radius, sigma=sigma)

    def post(self) -> Phase:
        """Noiseless epochs on the current data after the noisy steps (post-processing, docs/METHOD.md §13.4)."""
        return self.learning()

    def describe(self) -> str:
        clip = (f"gradient clipping C1={self.C1:g}" if self.variant == "gradient" else
                f"model clipping C2={self.radius:g}" + (f", start noise sigma0={self.sigma0:g}" if self.sigma0 else ""))
        return (f"{self.hidden}-unit tanh network: learn {self.learn_epochs} epochs (lr={self.lr:g}, weight decay "
                f"{self.weight_decay:g}, gradient clip {self.C1:g}, batch {self.batch_size}); unlearn: clip to "
                f"C0={self.C0:g}, noisy steps ({clip}, noisy_steps {self.noisy_steps}), then clip to C0 and "
                f"{self.post_epochs} noiseless epochs")

    def batch(self, n: int) -> int:
        """The batch size b (full: n); n % b == 0 is not needed: batches cycle through each chain's order."""
        return n if self.batch_size == "full" else min(int(self.batch_size), n)

    def epoch(self, n: int) -> int:
        """Updates per epoch: ceil(n / b)."""
        return -(-n // self.batch(n))

    def steps(self, fc: accounting.FinetuneConstants, n: int) -> int:
        """The noisy updates T: the flag, or with ``auto`` accounting.default_steps_finetune."""
        if self.noisy_steps != "auto":
            return int(self.noisy_steps)
        return accounting.default_steps_finetune(fc, epoch=self.epoch(n))


