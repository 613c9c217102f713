"""The model kinds ``--model`` chooses from: one registry, one entry per kind (no torch at import time).

A kind says what it is, which certificate holds for it, and how to build its ``models.Model`` for a
dataset's number of classes; utils/cli.py takes ``--model``'s choices from here, so adding a kind is adding
one entry (and teaching the scripts that run it). ``logistic`` is what every script ran before ``--model``
existed, and a command without the flag still runs it.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from utils import models


@dataclasses.dataclass(frozen=True)
class ModelKind:
    name: str
    help: str
    certificate: str                                 # "langevin" (papers A, B) | "finetune" (docs/METHOD.md §13)
    build: Callable[[int, object], models.Model]     # (num_classes, network recipe or None) -> model


def _network(num_classes: int, recipe) -> models.Model:
    from utils import network

    return (recipe or network.Recipe()).model(num_classes)


KINDS: dict[str, ModelKind] = {
    "logistic": ModelKind("logistic", "the papers' model: binary logistic regression, or softmax regression for "
                                      "more classes (the default)", "langevin",
                          lambda k, recipe: models.model_for(k)),
    "mlp": ModelKind("mlp", "a one-hidden-layer tanh network (--hidden units), unlearned by noisy fine-tuning on "
                            "the retained rows (arXiv 2506.06985, docs/METHOD.md §13)", "finetune", _network),
}
DEFAULT = "logistic"


def kind(name: str | None) -> ModelKind:
    """The kind of a ``--model`` value (None: the default)."""
    name = DEFAULT if name is None else name
    if name not in KINDS:
        raise ValueError(f"--model {name!r} is not allowed (allowed: {', '.join(KINDS)})")
    return KINDS[name]


def is_network(args) -> bool:
    """Whether the parsed flags run a network (certified by noisy fine-tuning)."""
    return kind(getattr(args, "model", None)).certificate == "finetune"
