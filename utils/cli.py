"""The flags every script shares, and their validation (before any data is loaded or torch imported).

Bad input becomes one line on stderr (``<script>: error: <what> (allowed: ...)``) and exit code 2,
never a traceback and never a result file.
"""
from __future__ import annotations

import argparse
import functools
import math
import os
import re
import signal
import sys


PAPER_EPS = [0.05, 0.1, 0.5, 1.0, 2.0, 5.0]
NO_DATASET = "no_dataset"   # the dataset folder of a problem planned from --n, --dim and --num_classes alone


class UsageError(ValueError):
    """A flag value that is not allowed; the message names it and what is allowed."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the script's name, the bad value, what is allowed)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        # so that "--lam -1e-6" reaches the type check (and its message) instead of "expected one argument"
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")

    def error(self, message):  # noqa: D401 - argparse API
        raise UsageError(message)


def _spellings(name: str) -> list[str]:
    """``--data_dir`` and ``--data-dir`` both work (the paper's README uses underscores)."""
    flags = [name]
    alt = name[:2] + name[2:].replace("_", "-") if "_" in name[2:] else name[:2] + name[2:].replace("-", "_")
    if alt != name:
        flags.append(alt)
    return flags


def add(parser, name: str, **kw):
    return parser.add_argument(*_spellings(name), **kw)


# ---------------------------------------------------------------- value parsers
def positive_float(text):
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number")
    if not math.isfinite(x) or x <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number > 0")
    return x


def nonneg_float(text):
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number")
    if not math.isfinite(x) or x < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return x


def float_in(lo: float, hi: float, *, hi_open: bool = False):
    """A finite number in [lo, hi] ([lo, hi) with hi_open): flags whose extremes would overflow a derived
    constant (m = lam n, 2 sigma^2 / m, the Renyi orders of a tiny eps, ...) or plan absurd runs."""
    def parse(text):
        try:
            x = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number")
        if not (math.isfinite(x) and lo <= x and (x < hi if hi_open else x <= hi)):
            sign = "> 0" if lo > 0 else ">= 0" if lo == 0 else f">= {lo:g}"
            wrong_sign = not math.isfinite(x) or (x <= 0 if lo > 0 else x < lo)
            what = f"must be a finite number {sign}" if wrong_sign else "is out of range"
            raise argparse.ArgumentTypeError(f"{text!r} {what} (allowed: {lo:g} <= value "
                                             f"{'<' if hi_open else '<='} {hi:g})")
        return x
    parse.__name__ = f"number in [{lo:g}, {hi:g}{')' if hi_open else ']'}"
    return parse


def int_in(lo: int, hi: int):
    """An integer in [lo, hi]."""
    def parse(text):
        try:
            x = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer")
        if not lo <= x <= hi:
            what = f"must be an integer >= {lo}" if x < lo else "is out of range"
            raise argparse.ArgumentTypeError(f"{text!r} {what} (allowed: an integer {lo} .. {hi})")
        return x
    parse.__name__ = f"integer in [{lo}, {hi}]"
    return parse


# The ranges of the shared numeric flags (issue 14): wide enough for every experiment, narrow enough that no
# derived constant overflows float64 and no allocation is absurd. Scripts use them for their own flags too.
EPS = float_in(1e-12, 1e6)            # target epsilon
SIGMA = float_in(0.0, 1e6)            # noise standard deviation (0: noiseless)
SIGMA_POSITIVE = float_in(1e-12, 1e6)
LAM = float_in(1e-12, 1e6)            # m = lam n stays finite for any n
CLIP_M = float_in(1e-6, 1e6)
SMOOTH_L = float_in(1e-12, 1e12)
DELTA = float_in(1e-100, 1.0, hi_open=True)
RADIUS = float_in(0.0, 1e12)
TRIALS = int_in(1, 10 ** 6)
SEED = int_in(0, 2 ** 32 - 1)         # numpy's and scikit-learn's seeds
STEPS = int_in(1, 10 ** 9)            # step counts K
ITER_FACTOR = float_in(1e-3, 1e3)     # D2D's I-factor f


def int_at_least(lo):
    def parse(text):
        try:
            x = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer")
        if x < lo:
            raise argparse.ArgumentTypeError(f"{text!r} must be an integer >= {lo}")
        return x
    parse.__name__ = f"integer >= {lo}"
    return parse


def _count_or_auto(lo: int, unit: str):
    """A count lo .. 1e9 of ``unit``, or ``auto`` (a value the run derives)."""
    def parse(text):
        if text == "auto":
            return "auto"
        try:
            x = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= {lo} or 'auto'")
        if x < lo:
            raise argparse.ArgumentTypeError(f"{text!r} must be an integer >= {lo} or 'auto'")
        if x > 10 ** 9:
            raise argparse.ArgumentTypeError(f"{text!r} is out of range (allowed: {lo} .. 1000000000 {unit}, or 'auto')")
        return x
    parse.__name__ = f"{unit} count or auto"
    return parse


# learning steps >= 0, or ``auto`` (chosen from the contraction, see accountant.burn_in_auto)
burn_in_value = _count_or_auto(0, "steps")
# noisy updates of a network's unlearning >= 1, or ``auto`` (utils.network.Recipe.steps)
noisy_steps_value = _count_or_auto(1, "updates")


def batch_size_value(text):
    """A mini-batch size >= 1, or ``full`` (full batch; the reference's 0 is not accepted)."""
    if text == "full":
        return "full"
    try:
        x = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1 or 'full'")
    if x < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be an integer >= 1 or 'full'")
    return x


def switch_or_one(text):
    """Mode flags take ``1`` as in the paper's commands (``--sequential2 1``); 0 turns them off."""
    if text not in ("0", "1"):
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed (use 1 to run this mode, 0 not to)")
    return text == "1"


def run_name_value(text):
    """A run folder name: one path component that is not hidden and not the mode's ``latest`` pointer."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._,=+-]{0,99}", text) or text == "latest":
        raise argparse.ArgumentTypeError(f"{text!r} is not a run name (allowed: letters, digits and . _ , = + -, "
                                         "starting with a letter or digit, not 'latest')")
    return text


def device_value(text):
    t = text.lower()
    if t in ("auto", "cpu", "cuda") or (t.startswith("cuda:") and t[5:].isdigit()):
        return t
    raise argparse.ArgumentTypeError(f"{text!r} is not a device (allowed: auto, cpu, cuda, cuda:N)")


# ---------------------------------------------------------------- the shared flags, declared once
# name -> (group, argparse keywords). Helps say "%(default)s" so that a script's own default (make_parser's
# ``defaults=``) shows in --help; unlearn.py builds its subcommands from the same entries (add_flags).
def _shared_flags(family: str) -> dict[str, tuple[str, dict]]:
    return {
        "dataset": ("data", dict(default=None, help="dataset name (MNIST, FASHION, CIFAR10, DIGITS, ... or any "
                                                     "label with --features; default MNIST, CIFAR10_MULTI for the "
                                                     "multiclass scripts; none with --n: a problem of --n rows, "
                                                     "--dim features and --num_classes classes, filed under "
                                                     f"{NO_DATASET}/)")),
        "data_dir": ("data", dict(default="data", help="where downloads and caches live (default %(default)s/)")),
        "features": ("data", dict(default=None, help="precomputed features .npz/.pt (X_train, y_train, X_test, "
                                                     "y_test)")),
        "classes": ("data", dict(type=int, nargs=2, default=None, metavar=("A", "B"),
                                 help="the two classes of a binary dataset (default 3 8)")),
        "removal": ("data", dict(choices=["random", "last"], default="random",
                                 help="which training rows a request replaces: a seeded random choice, or the last "
                                      "rows as the reference")),
        "lam": ("constants", dict(type=LAM, default=None,
                                  help="L2 regularisation lambda (m = lambda n); default 1e-6 for paper data, larger "
                                       "for DIGITS")),
        "M": ("constants", dict(type=CLIP_M, default=None,
                                help="per-sample gradient clipping norm (default 1 binary, 2 softmax; softmax needs "
                                     "M >= sqrt(2), where clipping never fires)")),
        "L": ("constants", dict(type=SMOOTH_L, default=None,
                                help="smoothness constant (overrides --smoothness; eta = 1/L)")),
        "smoothness": ("constants", dict(choices=["bound", "data"], default="bound",
                                         help="L = 1/4 + lam n (bound) or from lambda_max(X^T X/n) (data; computed "
                                              "from private data)")),
        "delta": ("constants", dict(type=DELTA, default=None, help="delta of (eps, delta) (default 1/n)")),
        "n": ("constants", dict(type=int_in(2, 10 ** 9), default=None,
                                help="number of training rows for accounting only (no data loaded; with --find_k "
                                     "or --plan_only)")),
        "dim": ("constants", dict(type=int_in(1, 10 ** 9), default=None,
                                  help="feature dimension d (default: the data's d; D2D and the time estimate need "
                                       "it with --n and no --dataset)")),
        "num_classes": ("constants", dict(type=int_in(2, 10 ** 5), default=None,
                                          help="with --n: the number of classes (default: the dataset's; without "
                                               "--dataset 2, or 10 for the multiclass scripts)")),
        "d2d_dim": ("constants", dict(choices=["params", "data"], default="params",
                                      help="dimension in D2D's iteration counts: params = the model's parameter "
                                           "count (d k for softmax, as its theorem needs; default) or data = d (the "
                                           "reference's, to reproduce its figures)")),
        "bound": ("constants", dict(choices=["paper", "best", "gdp"], default="paper",
                                    help="certificate: paper = each script's published theorem and the papers' "
                                         "conversion and constants; gdp = Gaussian DP by shifted interpolation with "
                                         "its exact conversion, the tightest proof from the run's constants; best = "
                                         "per request the smaller of gdp and, for every Renyi order, the smallest "
                                         "proven bound (A-LSI, B-loose, B-tight) with the improved conversion. best "
                                         "and gdp use the tight constants (softmax L = 1/2 + m, so eta changes; "
                                         "per-row gradient bound min(M, sqrt(2)) for softmax) (default %(default)s)")),
        "projection": ("constants", dict(type=RADIUS, default=100.0 if family == "SGD" else 0.0,
                                         help="projection radius R (0 = no projection; default %(default)s)")),
        "sigma": ("run", dict(type=SIGMA, default=0.03, help="noise standard deviation (default %(default)s)")),
        "burn_in": ("run", dict(type=burn_in_value, default=10000,
                                help="learning steps T (epochs for mini-batch), or 'auto' from the contraction "
                                     "bound (default %(default)s)")),
        "trials": ("run", dict(type=TRIALS, default=100, help="independent chains per setting (default %(default)s)")),
        "seed": ("run", dict(type=SEED, default=0, help="random seed (default %(default)s)")),
        "device": ("run", dict(type=device_value, default="auto", help="auto, cpu, cuda or cuda:N")),
        "gpu": ("run", dict(type=int_at_least(0), default=None,
                            help="the paper's spelling: --gpu N means --device cuda:N")),
        "dtype": ("run", dict(choices=["float32", "float64"], default="float32",
                              help="tensor precision (default %(default)s)")),
        "result_dir": ("run", dict(default="result", help="where run folders are written (default %(default)s/)")),
        "resume": ("run", dict(action="store_true", help="reuse the finished parts of an interrupted run")),
        "plan_only": ("run", dict(action="store_true",
                                  help="compute and save the accounting (sigmas, K) without running chains")),
        "no_cache": ("run", dict(action="store_true", help="do not reuse or store learned chains in result/cache/")),
        "quiet": ("run", dict(action="store_true", help="no progress: neither the bars drawn on a terminal nor the "
                                                        "line every 30 s (stage, share done, time left) a redirected "
                                                        "stderr gets")),
        "name": ("run", dict(type=run_name_value, default=None,
                             help="the run folder's name under <mode>/ (default: the flags given and a hash of all "
                                  "flags)")),
        "yes": ("run", dict(action="store_true", help="run a plan above the size that needs confirmation (see the "
                                                      "message that asks for it)")),
    }


SHARED_FLAGS = tuple(_shared_flags("LMC"))   # every script's flags, in --help order


# ---------------------------------------------------------------- --model and the network's flags
NETWORK_GROUP = "network (--model mlp; docs/METHOD.md §13)"


def _model_flags() -> dict[str, tuple[str, dict]]:
    """--model (choices: utils/model_kinds.py) and the flags of a network run, whose defaults are
    utils.network.Recipe's (None here: check_model_flags fills them for a network and drops them otherwise)."""
    from utils import model_kinds, network
    from utils.accountant.finetune import VARIANTS

    D = network.Recipe()
    kinds = "; ".join(f"{k.name}: {k.help}" for k in model_kinds.KINDS.values())
    return {
        "model": ("constants", dict(choices=list(model_kinds.KINDS), default=None, help=kinds)),
        "hidden": (NETWORK_GROUP, dict(type=int_in(1, 100000), default=None,
                                       help=f"hidden tanh units (default {D.hidden})")),
        "variant": (NETWORK_GROUP, dict(choices=list(VARIANTS), default=None,
                                        help=f"the certificate's clipping: gradient (C1 per step) or model (C2 after "
                                             f"each step) (default {D.variant})")),
        "C0": (NETWORK_GROUP, dict(type=float_in(0.0, 1e6), default=None,
                                   help=f"norm the trained model is clipped to before unlearning (default {D.C0:g})")),
        "C1": (NETWORK_GROUP, dict(type=float_in(1e-9, 1e6), default=None,
                                   help=f"gradient clipping norm of every update (default {D.C1:g})")),
        "C2": (NETWORK_GROUP, dict(type=float_in(1e-9, 1e6), default=None,
                                   help="--variant model: radius the model is clipped to after each noisy step "
                                        "(default: C0)")),
        "sigma0": (NETWORK_GROUP, dict(type=float_in(0.0, 1e6), default=None,
                                       help="--variant model: noise std added to the clipped start (default 0)")),
        "lr": (NETWORK_GROUP, dict(type=float_in(1e-9, 1e3), default=None,
                                   help=f"step size gamma of every phase (default {D.lr:g})")),
        "weight_decay": (NETWORK_GROUP, dict(type=float_in(0.0, 1e6), default=None,
                                             help=f"weight decay lam, lr * lam < 1 (default {D.weight_decay:g})")),
        "learn_epochs": (NETWORK_GROUP, dict(type=int_in(0, 10 ** 6), default=None,
                                             help=f"learning epochs from a random start (default {D.learn_epochs})")),
        "post_epochs": (NETWORK_GROUP, dict(type=int_in(0, 10 ** 6), default=None,
                                            help=f"noiseless epochs on the retained rows after the noisy steps "
                                                 f"(post-processing; default {D.post_epochs})")),
        "batch_size": (NETWORK_GROUP, dict(type=batch_size_value, default=None,
                                           help=f"mini-batch size, or full (default {D.batch_size})")),
        "noisy_steps": (NETWORK_GROUP, dict(type=noisy_steps_value, default=None,
                                            help="noisy updates T, or auto: where the gradient-clipping bound is "
                                                 "smallest; one epoch for model clipping (default auto)")),
    }


def add_model_flags(parser, *, skip=()) -> None:
    """Add --model and the network flags (except ``skip``, flags the parser already has) to ``parser``."""
    groups: dict = {}
    for name, (group, kw) in _model_flags().items():
        if name in skip:
            continue
        if group not in groups:
            groups[group] = parser.add_argument_group(group)
        add(groups[group], "--" + name, **kw)


def check_model_flags(args, *, linear_only=(), shared=()) -> None:
    """Before freezing: with a network, fill the network flags' defaults and check them together; with any
    other model refuse them. ``linear_only``: flags of this script that a network run would ignore (refused
    when given with --model mlp); ``shared``: network flags the script has for every model (unlearn.py's
    --batch_size). Flags given: ``args.given_flags``, else (unlearn.py) those not None."""
    from utils import model_kinds, network

    given = getattr(args, "given_flags", None)
    given = set(given if given is not None else (k for k, v in vars(args).items() if v is not None))
    net = model_kinds.is_network(args)
    names = [n for n in _model_flags() if n != "model" and hasattr(args, n) and (net or n not in shared)]
    if not net:
        for name in names:
            if name in given:
                raise UsageError(f"--{name} applies to --model mlp only (allowed with: --model mlp)")
        # flags that do not apply leave the flags: a linear run's config.json and folder name stay as they were
        for name in ["model"] + names:
            if getattr(args, name, 0) is None:
                delattr(args, name)
        return
    for name in linear_only:
        if name in given:
            raise UsageError(f"--{name} does not apply to --model mlp (allowed with: the linear models)")
    from utils import bounds
    if getattr(args, "bound", None) not in (None, *bounds.FINETUNE_BOUNDS):
        raise UsageError(f"--bound {args.bound} does not apply to --model mlp "
                         f"(allowed: {', '.join(bounds.FINETUNE_BOUNDS)})")
    defaults = network.Recipe()
    for name in names:
        if getattr(args, name) is None and getattr(defaults, name, None) is not None:
            setattr(args, name, getattr(defaults, name))
    if args.variant != "model":
        for name in ("C2", "sigma0"):
            if name in given:
                raise UsageError(f"--{name} applies to --variant model only (allowed with: --variant model)")
    if args.lr * args.weight_decay >= 1:
        raise UsageError(f"--lr {args.lr:g} with --weight_decay {args.weight_decay:g} gives lr * weight_decay = "
                         f"{args.lr * args.weight_decay:g} (allowed: below 1)")


def add_flags(parser, names, *, family: str = "LMC", defaults: dict | None = None,
              helps: dict | None = None) -> None:
    """Add the shared flags ``names`` (see SHARED_FLAGS) to ``parser``, each in its argument group (data,
    constants, run), with ``defaults`` / ``helps`` replacing an entry's default / help on this parser only."""
    defaults, helps, table = defaults or {}, helps or {}, _shared_flags(family)
    groups: dict = {}
    unknown = sorted((set(defaults) | set(helps)) - set(table))
    if unknown:
        raise KeyError(f"not a shared flag: {', '.join(unknown)} (allowed: {', '.join(table)})")
    for name in names:
        group_name, kw = table[name]
        kw = dict(kw)
        if name in defaults:
            kw["default"] = defaults[name]
        if name in helps:
            kw["help"] = helps[name]
        if group_name not in groups:
            groups[group_name] = parser.add_argument_group(group_name)
        add(groups[group_name], "--" + name, **kw)


# ---------------------------------------------------------------- the shared parser
def make_parser(prog_description: str, *, family: str, multiclass: bool = False, defaults: dict | None = None,
                helps: dict | None = None) -> OneLineParser:
    """Flags shared by every script. ``family`` is LMC (paper A) or SGD (paper B); ``defaults`` / ``helps`` give
    this script's default / help of shared flags (e.g. audit.py's ``{"trials": 1000}``), on this parser only."""
    p = OneLineParser(description=prog_description, allow_abbrev=False)
    p.set_defaults(family=family, multiclass=multiclass)
    p.default_dataset = "CIFAR10_MULTI" if multiclass else "MNIST"   # filled in by parse unless --n alone
    add_flags(p, SHARED_FLAGS, family=family, defaults=defaults, helps=helps)
    return p


# ---------------------------------------------------------------- flags by mode
def check_mode_flags(given, mode: str, belongs: dict, *, spell=None) -> None:
    """Refuse a flag that the chosen mode does not read (it would be silently ignored).

    ``given``: the flags given (``FrozenArgs.given`` or ``args.given_flags``); ``belongs``: flag -> the modes
    that read it (a script's table); ``spell(mode)`` writes a mode as the user chooses it (default ``--mode``).
    One line names the flag, the chosen mode and the modes the flag belongs to."""
    spell = spell or (lambda m: "--" + m)
    for flag, modes in belongs.items():
        if flag in given and mode not in modes:
            raise UsageError(f"--{flag} does not apply to {spell(mode)} (allowed with: "
                             f"{', '.join(spell(m) for m in modes)})")


# ---------------------------------------------------------------- parse, check, freeze
class FrozenArgsError(AttributeError):
    """A write to the flags after validation: derived values belong on the run context (experiments.Context)."""


class FrozenArgs(argparse.Namespace):
    """The validated flags, read-only: ``vars(args)`` is what config.json's ``flags`` holds; ``given`` names
    the flags given with a non-default value (what the run folder's name shows)."""

    __slots__ = ("_given",)   # a slot, so that it stays out of vars(args): not a flag

    def __init__(self, flags: dict, given=()):
        self.__dict__.update(flags)
        object.__setattr__(self, "_given", tuple(given))

    @property
    def given(self) -> tuple:
        return self._given

    def __setattr__(self, key, value):
        raise FrozenArgsError(f"args.{key} is read-only after validation (derived values belong on the run "
                              "context: ctx.consts, ctx.derived)")

    def __delattr__(self, key):
        raise FrozenArgsError(f"args.{key} is read-only after validation")


def freeze(args) -> FrozenArgs:
    """The validated flags as FrozenArgs (``given_flags`` becomes ``.given``, out of the flags)."""
    if isinstance(args, FrozenArgs):
        return args
    flags = dict(vars(args))
    return FrozenArgs(flags, flags.pop("given_flags", ()))


def parse(parser: OneLineParser, argv=None, *, accounting_modes=("find_k",)):
    """Parse and validate everything that needs no data (dataset name, classes, --n usage, device).

    Returns the flags still writable, for the script's own checks (its mode defaults); ``parse_checked``
    freezes them after those. Defaults that depend on the data (lam, M) are not flags: experiments.start
    derives them."""
    args = parser.parse_args(argv)
    # what the run folder's name shows (results.run_name): the flags given with a non-default value
    args.given_flags = [k for k, v in vars(args).items() if v != parser.get_default(k)]
    if args.dataset is None and (args.n is None or args.features is not None):
        args.dataset = getattr(parser, "default_dataset", "MNIST")   # (with --n alone: no dataset at all)
    if args.gpu is not None:
        args.device = f"cuda:{args.gpu}"
    if args.quiet:
        os.environ["UNLEARN_NO_PROGRESS"] = "1"  # read by experiments.progress_bar
    from utils import data as data_mod  # no torch

    if args.dataset is not None:
        check_safe_name("--dataset", args.dataset)
    if args.features is None and args.dataset is not None and args.dataset not in data_mod.names():
        raise UsageError(f"unknown --dataset {args.dataset!r} (allowed: {', '.join(sorted(data_mod.names()))}, "
                         "or any name together with --features FILE, or none with --n)")
    # a file's labels are known once read; without a dataset there are no labels at all
    named = data_mod.spec(args.dataset) if args.features is None and args.dataset is not None else None
    check_num_classes(args, named)
    if args.classes is not None and args.dataset is None:
        raise UsageError("--classes picks two classes of a dataset (allowed: with --dataset; without one, "
                         "--num_classes)")
    if args.classes is not None:
        a, b = args.classes
        if named is not None and named.num_classes > 2:
            raise UsageError(f"--classes is for binary datasets, not {args.dataset}")
        if a == b or (named is not None and not named.classes_ok((a, b))):
            rule = named.classes_rule() if named is not None else "two different classes"
            raise UsageError(f"--classes {a} {b} do not exist (allowed: {rule})")
    if args.n is not None:
        wanted = [m for m in accounting_modes if getattr(args, m, False)]
        if not (args.plan_only or wanted):
            also = "".join(f" or --{m} 1" for m in accounting_modes)  # none: --plan_only alone
            raise UsageError(f"--n {args.n} loads no data, so it works only with --plan_only{also}")
    return args


def check_num_classes(args, named) -> None:
    """--num_classes describes a problem planned without data (--n): refused with loaded data (whose labels
    decide) and when it contradicts the named dataset."""
    k = getattr(args, "num_classes", None)
    if k is None:
        return
    if args.n is None:
        raise UsageError(f"--num_classes {k} works with --n (no data loaded; loaded data decide their classes)")
    if named is not None and k != named.num_classes:
        raise UsageError(f"--num_classes {k} contradicts --dataset {named.name} (allowed: {named.num_classes}, or "
                         "no --dataset)")


def parse_checked(parser: OneLineParser, argv=None, *, check=None, accounting_modes=("find_k",)):
    """Step 1 of the script protocol (experiments.run_script): parse, the shared checks, the script's
    ``check(args) -> mode`` (which may fill its mode defaults), then freeze. Returns (FrozenArgs, mode)."""
    args = parse(parser, argv, accounting_modes=accounting_modes)
    mode = check(args) if check is not None else None
    return freeze(args), mode


class Terminated(KeyboardInterrupt):
    """SIGTERM (what `timeout` and batch schedulers send), handled like Ctrl-C."""


SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")


def check_safe_name(flag: str, name: str) -> None:
    """A name used as a folder name: letters, digits and _ . + - (not first), at most 64 characters, so it
    can never leave --result_dir (no '/', no '..', no absolute path)."""
    if not SAFE_NAME.fullmatch(name) or ".." in name:
        raise UsageError(f"{flag} {name!r} is not allowed as a folder name (allowed: 1-64 letters, digits, "
                         "'_', '.', '+', '-', starting with a letter or digit, no '..')")


PEER_FAILED = 3   # exit code of a rank stopped because another rank failed (torchrun)


def guarded(main):
    """Turn the errors that mean bad input into one line on stderr and exit code 2; SIGINT and SIGTERM
    stop the run with a line saying how to resume it (exit codes 130 and 143): ``--resume``, or what the
    wrapped function's ``interrupted()`` returns when the script sets one (``main.interrupted = f``)."""
    from utils import distributed

    @functools.wraps(main)
    def run(argv=None):
        code = checked(argv)
        if code and distributed.world().active:   # a failed rank: out now, the others are stopped by torchrun
            distributed.abandon(code, wait=distributed.PEER_FAILED_WAIT_S if code == PEER_FAILED else 0.0)
        elif code and not distributed.speaks():   # failed before the group formed: rank 0 prints it, then exits
            distributed.abandon(code, wait=distributed.SILENT_RANK_WAIT_S)
        return code

    def checked(argv=None):
        prog = getattr(main, "prog", None) or sys.argv[0].rsplit("/", 1)[-1]

        def say(text: str) -> None:   # under torchrun the line names the rank; before ranks form, rank 0 alone
            if distributed.speaks():
                print(f"{distributed.label(prog)}: {text}", file=sys.stderr)

        previous = _terminate_as_interrupt()
        try:
            return main(argv) or 0
        except distributed.PeerFailed:   # another rank failed and printed why; one message, not one per rank
            return PEER_FAILED
        except KeyboardInterrupt as exc:
            how = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
            if distributed.world().main:   # torchrun stops the other ranks with SIGTERM when one fails
                # a script whose runs are not resumed with --resume says what works instead (unlearn.py)
                hint = getattr(run, "interrupted", None)
                say(f"{how}; " + (hint() if callable(hint) else
                                  "rerun the same command with --resume to reuse the finished parts"))
            return 143 if isinstance(exc, Terminated) else 130
        except SystemExit as exc:  # --help
            return exc.code if isinstance(exc.code, int) else 0
        except OSError as exc:  # a full disk, a read-only or missing folder, a path too long or looping
            if os.environ.get("UNLEARN_DEBUG"):
                raise
            say(f"error: {os_error_text(exc)}")
            return 2
        except MemoryError:
            if os.environ.get("UNLEARN_DEBUG"):
                raise
            say("error: out of memory (lower --trials, or use a smaller dataset or --dtype float32)")
            return 2
        except (ValueError, RuntimeError) as exc:
            if os.environ.get("UNLEARN_DEBUG") or (
                    type(exc).__name__ not in _BAD_INPUT and not isinstance(exc, FileNotFoundError)):
                raise
            say(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            return 2
        finally:
            from utils import results

            results.release_all()   # an error or an interrupt never leaves this process holding a lock
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    return run


def os_error_text(exc: OSError) -> str:
    """One line naming the path and the system's reason, e.g. 'result/x/metrics.json: No space left on device (ENOSPC)'."""
    import errno as errno_mod

    code = errno_mod.errorcode.get(exc.errno or 0, "")
    reason = (exc.strerror or str(exc) or type(exc).__name__) + (f" ({code})" if code else "")
    paths = [p for p in (exc.filename, exc.filename2) if p is not None]
    return (" -> ".join(map(str, paths)) + ": " + reason) if paths else reason.splitlines()[0]


def _on_sigterm(signum, frame):
    raise Terminated()  # unwinds like Ctrl-C: temporary files removed, locks released


def _terminate_as_interrupt():
    """SIGTERM unwinds like SIGINT (finally blocks run) while a script runs; returns the old handler."""
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            return signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread
        pass
    return None


def check_dataset_kind(args, *, multiclass: bool, scripts: tuple[str, str]) -> None:
    """Refuse a named dataset of the other kind: scripts = (the binary script, the multiclass script)."""
    from utils import data as data_mod  # no torch

    if args.features is not None:
        return
    if args.dataset is None:   # a problem without data: its --num_classes must suit the script
        k = args.num_classes
        if k is None or (k > 2) == multiclass:
            return
        kind, other = ("binary", scripts[0]) if multiclass else ("multiclass", scripts[1])
        raise UsageError(f"--num_classes {k} is {kind}: use {other} for it")
    if (data_mod.spec(args.dataset).num_classes > 2) == multiclass:
        return
    kind, other = ("binary", scripts[0]) if multiclass else ("multiclass", scripts[1])
    raise UsageError(f"--dataset {args.dataset} is {kind}: use {other} for it")


def check_distinct(flag: str, values) -> None:
    """Refuse a list flag naming one swept value twice: values are compared as the run folder keys them
    (results.json_key), so 0.1 and 0.10 are the same value."""
    from utils import checks
    from utils.results import json_key

    try:
        checks.distinct(f"--{flag}", values, key=json_key)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


# Named errors of the library that mean "bad input or an impossible request", not a bug.
_BAD_INPUT = {"UsageError", "DataError", "InfeasibleTargetError", "ResultError", "DivergenceError",
              "StateError", "ValueError"}
