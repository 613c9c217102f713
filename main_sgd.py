"""Paper B: certified unlearning with projected noisy mini-batch SGD (PNSGD), Fig 3a-d (docs/METHOD.md §2.4, §4, §11.8).

    python main_sgd.py --lam 1e-6 --dataset MNIST --projection 0 --compare_baseline_nonconvergent 1
    python main_sgd.py --lam 1e-6 --dataset MNIST --projection 0 --sequential 1
    python main_sgd.py --lam 1e-6 --dataset MNIST --projection 0 --paint_unlearning_sigma 1
    python main_sgd.py --dataset MNIST --retrain_noiseless 1

Every mode learns T epochs of cyclic mini-batches over a fixed per-chain permutation (or one shared by all
chains, or by groups of G chains: ``--batch_orders shared|G``), unlearns by
continuing the same chain on D' for K epochs with the SAME permutation (the replaced point keeps its
index, docs/METHOD.md §2.4), and compares with retraining on D' from scratch. Batch sizes must divide n: loaded
data is truncated to its first rows (see ``rows_used``); with ``--n`` nothing is truncated.
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
import time

import numpy as np

from utils import accountant, bounds, cli, d2d, distributed, experiments, results
from utils import data as data_mod

MODES = ("compare_baseline_nonconvergent", "sequential", "paint_unlearning_sigma", "retrain_noiseless")
# (batch size, burn-in epochs) per mode: docs/METHOD.md §2.6 (Table 2 of B); retrain_noiseless uses Fig 3c,d's.
SETTINGS = {
    "compare_baseline_nonconvergent": ((128, 100), ("full", 3000)),
    "sequential": ((128, 100), (256, 150), (512, 200), ("full", 1000)),
    "paint_unlearning_sigma": ((32, 50), (128, 100), (512, 200), ("full", 1000)),
    "retrain_noiseless": ((32, 50), (128, 100), (512, 200), ("full", 1000)),
}
PAPER_SIGMAS = [0.01, 0.05, 0.1, 0.2, 0.5, 1.0]
TARGET_EPS = {"sequential": 1.0, "paint_unlearning_sigma": 0.01}
REMOVE_LIST = [1, 10, 50, 100, 500, 1000]
UNLEARN_EPOCHS = 1          # Fig 3a: one unlearning epoch
D2D_STEPS = (1, 5)          # Fig 3a: D2D with K in {1, 5} gradient steps
LU_REQUEST_SIZE = 10        # Fig 3b: Langevin unlearning requests of S = 10 points
D2D_FACTOR = 1.0            # Fig 3b: D2D with I-factor f = 1
# Flags that only one or two modes read (a flag given to a mode that ignores it is an error).
MODE_FLAGS = {
    "sigma_list": ("paint_unlearning_sigma",),
    "eps": ("compare_baseline_nonconvergent", "sequential", "paint_unlearning_sigma"),
    "requests": ("sequential", "paint_unlearning_sigma"),
    "tight_first": ("sequential", "paint_unlearning_sigma"),
    "S": ("retrain_noiseless",),
    "q": ("compare_baseline_nonconvergent",),
    "lmc_burn_in": ("compare_baseline_nonconvergent",),
    "sigma": ("sequential",),
    "paper_a_run": ("compare_baseline_nonconvergent",),
}


# ---------------------------------------------------------------- flags
def holder_q(text):
    q = cli.positive_float(text)
    if not q > 1:
        raise cli.argparse.ArgumentTypeError(f"{text!r} must be a Holder exponent > 1")
    return q


def batch_orders_value(text):
    """--batch_orders: per_chain, shared, or an integer G >= 1 (chains per order)."""
    if text in ("per_chain", "shared"):
        return text
    try:
        G = int(text)
    except ValueError:
        G = 0
    if G < 1:
        raise cli.argparse.ArgumentTypeError(f"{text!r} is not per_chain, shared or an integer G >= 1")
    return "per_chain" if G == 1 else G


def describe_orders(batch_orders, C: int) -> str:
    """One line for the log: which batch orders the mini-batch chains use."""
    if batch_orders == "per_chain":
        return f"batch orders: per_chain (one permutation per chain, {C} chains)"
    if batch_orders == "shared":
        return (f"batch orders: shared (one permutation for all {C} chains of a setting; the certificate holds "
                f"for every fixed order, the trials' spread leaves out the order's)")
    groups = -(-C // min(batch_orders, C))
    return (f"batch orders: groups of G = {batch_orders} chains ({groups} permutation{'s' * (groups > 1)} for {C} "
            f"chains; the trials' spread includes the order's only across groups)")


def build_parser():
    p = cli.make_parser("Paper B (noisy mini-batch SGD unlearning): Fig 3a-d experiments.", family="SGD",
                        defaults={"burn_in": None},
                        helps={"burn_in": "learning epochs T for every batch size (default per batch size, "
                                          "docs/METHOD.md §2.6), or 'auto' from the contraction bound"})
    g = p.add_argument_group("experiment (choose one)")
    cli.add(g, "--compare_baseline_nonconvergent", type=cli.switch_or_one, default=False,
            help="1: Fig 3a, one removal, K = 1 epoch, sigma from the finite-T bound, vs retraining, LU and D2D")
    cli.add(g, "--sequential", type=cli.switch_or_one, default=False,
            help="1: Fig 3b, sequential single-point removals at --sigma, accumulated epochs vs LU and D2D")
    cli.add(g, "--paint_unlearning_sigma", type=cli.switch_or_one, default=False,
            help="1: Fig 3c,d, accuracy and accumulated epochs per (batch size, sigma) after the removals")
    cli.add(g, "--retrain_noiseless", type=cli.switch_or_one, default=False,
            help="1: noiseless (sigma = 0) learning and retraining after removing S points, per batch size")
    o = p.add_argument_group("experiment settings")
    cli.add(o, "--batch_size", type=cli.batch_size_value, nargs="+", default=None, metavar="B",
            help="batch sizes (integers >= 1 or 'full'); replaces the mode's list")
    cli.add(o, "--batch_orders", type=batch_orders_value, default="per_chain", metavar="per_chain|shared|G",
            help="mini-batch orders: per_chain (default, one permutation per trial as the reference), shared (one "
                 "for all trials of a setting: an update is then a matrix product, ~10-25x faster at b = 128, "
                 "100 trials), or G (one per group of G trials); learning and unlearning keep each trial's order")
    cli.add(o, "--sigma_list", type=cli.SIGMA_POSITIVE, nargs="+", default=None,
            help=f"paint_unlearning_sigma: noise levels (default {PAPER_SIGMAS})")
    cli.add(o, "--eps", type=cli.EPS, nargs="+", default=None,
            help=f"target epsilons of compare_baseline_nonconvergent (default {cli.PAPER_EPS}), or the one "
                 "target of every request (default 1 sequential, 0.01 paint_unlearning_sigma)")
    cli.add(o, "--requests", type=cli.int_in(1, 10 ** 6), default=100,
            help="number of sequential single-point removal requests (default 100)")
    cli.add(o, "--tight_first", type=cli.switch_or_one, default=False,
            help="1: the first request's K from the tight bound too (default: the loose bound, as published)")
    cli.add(o, "--S", type=cli.int_at_least(1), nargs="+", default=None,
            help=f"retrain_noiseless: numbers of removed points (default {REMOVE_LIST})")
    cli.add(o, "--q", type=holder_q, default=2.0,
            help="compare_baseline_nonconvergent: Holder exponent q of the finite-T bound (default 2)")
    cli.add(o, "--lmc_burn_in", type=cli.burn_in_value, default=10000,
            help="compare_baseline_nonconvergent: learning steps of the computed LU and D2D curves "
                 "(default 10000 as paper A, or 'auto')")
    cli.add(o, "--paper_a_run", default=None, metavar="DIR",
            help="compare_baseline_nonconvergent: read paper A's curves (LU K = 1, D2D K = 1, 5) from this "
                 "baseline.py run (its run folder, or result/LMC/<DATASET>/baseline for the latest), made with the "
                 "same dataset, n, lam, L and seed (else refused, naming the value); default: computed here")
    return p


def parse_args(argv):
    """The validated, frozen flags (cli.parse_checked with check_args)."""
    return cli.parse_checked(build_parser(), argv, check=check_args, accounting_modes=())[0]


def check_args(args) -> str:
    """The mode and every check that needs no data. Fills ``mode`` and ``requested_batches`` (the mode's batch
    sizes unless --batch_size: the mode's default of --batch_size) before the flags are frozen; both have
    always named the run folder, so they stay flags. The model's kind comes from the dataset spec."""
    chosen = [m for m in MODES if getattr(args, m)]
    if len(chosen) != 1:
        raise cli.UsageError(f"{'no experiment' if not chosen else ' and '.join('--' + m for m in chosen)} "
                             f"chosen (allowed: exactly one of {', '.join('--' + m + ' 1' for m in MODES)})")
    args.mode = chosen[0]
    cli.check_mode_flags(args.given_flags, args.mode, MODE_FLAGS)
    batches = args.requested_batches = args.batch_size or [b for b, _ in SETTINGS[args.mode]]
    dupes = sorted({str(b) for b in batches if batches.count(b) > 1})
    if dupes:
        raise cli.UsageError(f"--batch_size lists {', '.join(dupes)} more than once (allowed: distinct sizes)")
    if args.smoothness == "data" and args.L is None and any(b != "full" for b in batches):
        raise cli.UsageError("--smoothness data is refused for mini-batches (allowed: bound, or give --L, "
                             "or --batch_size full)")
    for name in ("sigma_list", "eps", "S"):
        cli.check_distinct(name, getattr(args, name) or [])
    if args.eps is not None and len(args.eps) > 1 and args.mode in TARGET_EPS:
        raise cli.UsageError(f"--eps {' '.join(map(str, args.eps))}: --{args.mode} takes one eps per request "
                             "(allowed: a single value)")
    return args.mode


# ---------------------------------------------------------------- batch sizes and truncation
@dataclasses.dataclass(frozen=True)
class Batch:
    """One batch-size setting: b (an int, or 'full') and its burn-in T in epochs (or 'auto')."""

    b: object
    T: object

    @property
    def key(self) -> str:
        return results.json_key(self.b)

    @property
    def engine(self):
        """The engine's and the accountant's spelling: None = full batch."""
        return None if self.b == "full" else int(self.b)

    def updates_per_epoch(self, n: int) -> int:
        return 1 if self.b == "full" else n // int(self.b)


def default_burn_in(mode: str, b) -> int:
    """The T of docs/METHOD.md §2.6 for b; another b takes the T of the tabulated size nearest in log scale (full = n)."""
    table = dict(SETTINGS[mode])
    if b in table:
        return table[b]
    sizes = [s for s in table if s != "full"]
    if b == "full" or not sizes:
        return table["full"]
    return table[min(sizes, key=lambda s: (abs(math.log(b / s)), -table[s]))]


def select_batches(requested, *, n: int, explicit: bool, must_divide: bool, notes: list) -> list:
    """Batch sizes that fit n: explicit ones that do not are errors, defaults are dropped with a note."""
    kept = []
    for b in requested:
        problem = None
        if b != "full" and b > n:
            problem = f"is larger than n = {n}"
        elif b != "full" and must_divide and n % b:
            problem = f"does not divide n = {n} (with --n nothing is truncated)"
        if problem is None:
            kept.append(b)
        elif explicit:
            raise cli.UsageError(f"--batch_size {b} {problem} (allowed: 1..{n} dividing n, or full)")
        else:
            notes.append(f"default batch size {b} dropped: it {problem}")
    return kept


def reference_rows_text() -> str:
    """The registered reference row counts, e.g. 'MNIST 11264, CIFAR10 9728' (utils/data.py)."""
    specs = (data_mod.spec(name) for name in data_mod.names())
    return ", ".join(f"{s.name} {s.reference_rows}" for s in specs if s.reference_rows is not None)


def rows_used(n: int, batches, *, reference_rows=None) -> int:
    """Training rows kept so that every batch size divides n (the engine needs n % b == 0).

    The reference's count (the dataset spec's ``reference_rows``: MNIST 11264, CIFAR10 9728) when every batch
    size divides it, else the largest multiple of the batch sizes' least common multiple that is <= n.
    """
    sizes = [int(b) for b in batches if b != "full"]
    if not sizes:
        return n
    lcm = math.lcm(*sizes)
    if reference_rows is not None and reference_rows <= n and reference_rows % lcm == 0:
        return reference_rows
    if lcm > n:
        raise cli.UsageError(f"--batch_size {' '.join(map(str, sizes))}: their least common multiple {lcm} "
                             f"exceeds n = {n}, so no truncation makes every size divide n (allowed: sizes "
                             "whose lcm is <= n)")
    return n // lcm * lcm


class Truncation:
    """start()'s transform: choose the batch sizes that fit, truncate the rows; keeps its notes, the batch sizes
    kept and the rows loaded (``notes``, ``out``) for the plan (read back as ``ctx.transform``)."""

    def __init__(self, args):
        self.args, self.notes, self.out = args, [], {}

    def __call__(self, dataset):
        args = self.args
        kept = select_batches(args.requested_batches, n=dataset.n, explicit=args.batch_size is not None,
                              must_divide=False, notes=self.notes)
        # the reference keeps the first rows so that 32..512 divide n (docs/METHOD.md §1.1, PNSGD truncation)
        named = args.features is None and args.classes is None
        reference = data_mod.spec(args.dataset).reference_rows if named else None
        rows = rows_used(dataset.n, kept, reference_rows=reference)
        if rows < dataset.n:
            self.notes.append(f"using the first {rows} of {dataset.n} training rows so that every batch size "
                              f"({', '.join(map(str, kept))}) divides n")
        self.out.update(batches=kept, n_loaded=dataset.n)
        return experiments.truncate(dataset, rows)


def start_keywords(args) -> dict:
    """experiments.start's keywords: the truncation, and the most rows a D' of this mode replaces
    (retrain_noiseless drops default S not below n)."""
    max_removed = {"compare_baseline_nonconvergent": 1,
                   "retrain_noiseless": lambda n: max([S for S in args.S or REMOVE_LIST if S < n], default=1)}\
        .get(args.mode, args.requests)
    return {"max_removed": max_removed, "transform": Truncation(args)}


def setup(args):
    """Data (unless --n), batch settings and constants; nothing written yet: (ctx, batches, truncation)."""
    ctx = experiments.start(args, mode=args.mode, **start_keywords(args))
    return (ctx,) + settings(ctx)


def settings(ctx):
    """(batch settings, truncation record) of a started run: the sizes that fit n, each with its burn-in."""
    args = ctx.args
    notes, out = ctx.transform.notes, ctx.transform.out
    n = ctx.consts.n
    if args.n is not None:
        out.update(batches=select_batches(args.requested_batches, n=n, explicit=args.batch_size is not None,
                                          must_divide=True, notes=notes), n_loaded=n)
        if args.features is None and args.classes is None and args.dataset is not None:  # the real data's n
            full = data_mod.spec(args.dataset).n
            kept = select_batches(args.requested_batches, n=full, explicit=args.batch_size is not None,
                                  must_divide=False, notes=[])
            rows = rows_used(full, kept, reference_rows=data_mod.spec(args.dataset).reference_rows)
            if rows != n:
                notes.append(f"--n {n}: a run on {args.dataset} uses the first {rows} of its {full} rows (so that "
                             f"every batch size divides n); plan with --n {rows} to match it")
    for line in notes:
        ctx.log("note: " + line)
    if args.mode != "retrain_noiseless" and any(b != "full" for b in out["batches"]):  # (one chain there)
        ctx.log(describe_orders(args.batch_orders, args.trials))
    batches = [Batch(b, args.burn_in if args.burn_in is not None else default_burn_in(args.mode, b))
               for b in out["batches"]]
    truncation = {"n_loaded": out["n_loaded"], "n_used": n, "notes": notes,
                  "rule": "none (--n)" if args.n is not None else
                  f"the reference's rows ({reference_rows_text()}) when every batch size divides them, "
                  "else the largest multiple of the lcm of the batch sizes"}
    return batches, truncation


# ---------------------------------------------------------------- accounting
def z_b_table(consts, batches, R) -> dict:
    """Z_B per batch size (B, Lemma 3.3, docs/METHOD.md §4.1, §11.5)."""
    return {bt.key: accountant.Z_B(eta=consts.eta, M=consts.M, m=consts.m, n=consts.n,
                                   b=consts.n if bt.engine is None else bt.engine, R=R) for bt in batches}


def stream_plan(consts, bt: Batch, *, sigma, eps, requests, R, tight_first, bound="paper"):
    """K_s per request, Z^(s), and the (eps, alpha*, bound name) each request certifies (B, docs/METHOD.md §4.2, §4.3, §4.4;
    bound="best": docs/METHOD.md §7, each bound's own recursion over the same K history)."""
    if bound == "paper":
        Ks, Zs = accountant.sequential_K_list_pnsgd(num_requests=requests, sigma=sigma, eps_target=eps,
                                                    consts=consts, b=bt.engine, R=R, tight_first=tight_first)
    else:
        Ks = []
        for s in range(requests):
            Ks.append(bounds.pnsgd_next_K(bound, Ks=Ks, sizes=[1] * (s + 1), sigma=sigma, eps_target=eps,
                                          consts=consts, b=bt.engine, R=R))
        Zs = accountant.Z_stream(Ks=Ks[:-1], sizes=[1] * requests, consts=consts, b=bt.engine, R=R)
    got = [bounds.pnsgd_eps(bound, Ks=Ks[:s + 1], sizes=[1] * (s + 1), sigma=sigma, consts=consts, b=bt.engine,
                            R=R, tight_first=tight_first) for s in range(len(Ks))]
    return {"K": Ks, "Z": Zs, "eps": [e for e, _, _ in got], "alpha": [a for _, a, _ in got],
            "bound_name": [name for _, _, name in got]}


def stream_certificate(consts, bt, plan, *, sigma, R, tight_first, bound="paper", **extra):
    if bound == "paper":
        what = "PNSGD sequential (B, docs/METHOD.md §4.4): " + (
            "tight shifted-Renyi bound for every request" if tight_first else
            "loose converged bound for request 1, tight shifted-Renyi bound with the Z recursion after")
    else:
        what = ("per request and Renyi order the smallest proven bound (B-loose, B-tight with the Z recursion; "
                "A-LSI too at b = n), improved conversion (docs/METHOD.md §7)")
    return accountant.certificate(consts=consts, eps=plan["eps"], alpha=plan["alpha"], K=plan["K"], sigma=sigma,
                                  R=R, b=bt.engine, bound=what, Z=plan["Z"], **extra,
                                  **dict(bounds.fields(bound, ""), bound_name=plan["bound_name"]))


def lu_sequential_plan(consts, *, sigma, eps, requests, bound="paper"):
    """Fig 3b's comparison: Langevin unlearning in requests of 10 points, and D2D with f = 1 (docs/METHOD.md §3.3, §8)."""
    S = min(LU_REQUEST_SIZE, requests)
    out = {"lmc_request_size": S,
           "lmc_k_list": bounds.pngd_K_list(bound, num_requests=requests // S, S=S, sigma=sigma,
                                            eps_target=eps, consts=consts),
           "d2d_factor": D2D_FACTOR, "d2d_k_list": None}
    if consts.d is not None:
        out["d2d_k_list"] = accountant.d2d_sequential_K_list(num_requests=requests, f=D2D_FACTOR,
                                                             consts=consts, eps=eps)
    return out


# ---------------------------------------------------------------- shared chain pieces
def stats(acc) -> dict:
    return experiments.summary_stats(np.asarray(acc))


def lab_perms(lab, bt: Batch):
    """The batch orders learn() drew (per chain, or shared by groups with --batch_orders): the same blocks
    for unlearning (docs/METHOD.md §2.4)."""
    return lab.perms(bt.engine, lab.trials)


def stream_work(work, C: int, bt: Batch, *, sigma: float, T: int, Ks) -> None:
    """What run_stream_setting runs (utils/workload.py): learn, per request a D', K epochs, an accuracy and a
    checkpoint of the chains, then retraining on the last D'."""
    work.learn(C, T, b=bt.engine, sigma=sigma)
    work.evaluate(C)
    for K in Ks:
        work.dataset()
        work.advance(C, K, b=bt.engine, sigma=sigma)
        work.evaluate(C)
        work.save(C)
    work.learn(C, T, b=bt.engine, sigma=sigma, new_data=True)
    work.evaluate(C)
    work.save(0)   # the stage's accuracies


def wall(ctx) -> str:
    return f"{time.perf_counter() - ctx.t0:.1f} s"


def plan_of(ctx, work, metrics: dict, arrays: dict, saved: str, tables) -> experiments.Plan:
    """Log the plan's size; the Plan the protocol opens the folder with (and finishes with on --plan_only)."""
    metrics["total_chain_steps"] = work.chain_steps
    ctx.log(f"plan: {work.chain_steps:,} chain-steps (chains x gradient updates)")
    return experiments.Plan(metrics, arrays, work=work, summary=f"plan only: {saved}; {wall(ctx)}", tables=tables)


# ---------------------------------------------------------------- Fig 3a
PAPER_A_MATCH = ("dataset", "n", "lam", "L", "seed")   # what a --paper_a_run must share with this run


def paper_a_run(ctx, eps_list):
    """--paper_a_run DIR: paper A's Fig 3a curves (LU K = 1, D2D K in {1, 5}, S = 1) read from that baseline.py
    run, which must have been made on the same data and constants (PAPER_A_MATCH), else a UsageError naming the
    value that differs and how to match it. Without the flag: (None, "computed"), the curves are computed here
    on this run's rows; no other folder is read."""
    given = ctx.args.paper_a_run
    if given is None:
        return None, "computed"
    flag = f"--paper_a_run {given}"
    try:
        folder = results.resolve_run_dir(given)
        if os.path.exists(os.path.join(folder, results.INCOMPLETE)):
            raise cli.UsageError(f"{flag}: {folder} is not finished (allowed: a finished run of baseline.py; "
                                 "rerun it with --resume)")
        config = results.read_json(os.path.join(folder, "config.json"))
        metrics = results.read_json(os.path.join(folder, "metrics.json"))
    except results.ResultError as exc:
        raise cli.UsageError(f"{flag}: {exc}") from None
    except (OSError, ValueError) as exc:
        raise cli.UsageError(f"{flag}: its config.json and metrics.json cannot be read ({exc}); allowed: a "
                             "finished run folder of baseline.py, or its mode folder") from None
    kind = (metrics.get("family"), metrics.get("mode"))
    if kind != ("LMC", "baseline"):
        raise cli.UsageError(f"{flag}: {folder} is a {kind[0]} {kind[1]} run (allowed: a paper-A Fig 3a run of "
                             "baseline.py, result/LMC/<DATASET>/baseline/ or one of its run folders)")
    if metrics.get("plan_only", True):
        raise cli.UsageError(f"{flag}: {folder} is a --plan_only run without accuracies (allowed: a finished "
                             "baseline.py run)")
    const = config.get("derived", {}).get("constants", {})
    theirs = {"dataset": metrics.get("dataset"), "n": const.get("n"), "lam": const.get("lam"), "L": const.get("L"),
              "seed": config.get("flags", {}).get("seed")}
    mine = {"dataset": ctx.args.dataset, "n": ctx.consts.n, "lam": ctx.consts.lam, "L": ctx.consts.L,
            "seed": ctx.args.seed}
    for key in PAPER_A_MATCH:
        if theirs[key] != mine[key]:
            raise cli.UsageError(f"{flag}: {folder} has {key}={theirs[key]} where this run has {key}={mine[key]} "
                                 + _paper_a_hint(key, theirs[key], mine[key]))
    curves = paper_a_curves(metrics, eps_list)
    if curves is None:
        raise cli.UsageError(f"{flag}: {folder} lacks S = 1 results for K in {list(D2D_STEPS)} at eps "
                             f"{' '.join(map(results.json_key, eps_list))} (allowed: a baseline.py run with --S 1 "
                             "and --K and --eps including these)")
    return curves, folder


def _paper_a_hint(key: str, theirs, mine) -> str:
    """How to make the two runs agree on ``key`` (one of PAPER_A_MATCH)."""
    if key == "dataset":
        return f"(allowed: a baseline.py --dataset {mine} run)"
    if key == "n":   # paper A learns on every row; no flag of baseline.py truncates them
        return (f"(paper A learns on all {theirs} rows, this run keeps {mine} so that every batch size divides n: "
                "give --batch_size full to keep every row, or drop --paper_a_run to compute the curves here)")
    return (f"(to match, run this command with --{key} {theirs}, or baseline.py with --{key} {mine}; or drop "
            "--paper_a_run to compute the curves here)")


def paper_a_curves(metrics, eps_list):
    """LU K = 1 and D2D K in {1, 5} accuracies from baseline.py's metrics (S = 1), or None if any is absent."""
    try:
        cells = metrics["settings"]
        keys = [results.json_key(e) for e in eps_list]
        if metrics.get("S") != 1:
            return None
        return {"lmc": {ek: cells["1"][ek]["lmc_unlearn"] for ek in keys},
                "d2d": {str(K): {ek: cells[str(K)][ek]["d2d"] for ek in keys} for K in D2D_STEPS}}
    except (KeyError, TypeError):
        return None


def plan_compare(ctx, batches, work):
    """Fig 3a's sigma per (b, eps) and its certificates; adds run_compare's work to ``work``."""
    args, c = ctx.args, ctx.consts
    R, eps_list = args.projection, args.eps or list(cli.PAPER_EPS)
    zero_R = R == 0 and args.bound == "paper"
    if zero_R:
        # The reference's R = 0 arithmetic drops the 2R terms; what is left is p (a - 1/p)/(a - 1) >= 1 times
        # the loose bound, which holds for every T (docs/METHOD.md §6.1): the certificate stands.
        ctx.log("note: --projection 0: the finite-T bound is evaluated as the reference does (2R terms dropped); "
                "it is then at least the loose bound, which holds for every T (docs/METHOD.md §6.1)")
    sigma, burn, certs = {}, {}, []
    work.dataset()   # the one removal's D', shared by every setting
    for bt in batches:
        sigma[bt.key], burn[bt.key] = {}, {}
        for eps in eps_list:
            ek = results.json_key(eps)
            if args.bound == "best":
                # the converged bounds hold for every T (docs/METHOD.md §6) and are below the finite-T one
                s = bounds.pnsgd_smallest_sigma("best", K=UNLEARN_EPOCHS, eps_target=eps, consts=c, b=bt.engine, R=R)
                got, alpha, name = bounds.pnsgd_eps("best", Ks=[UNLEARN_EPOCHS], sizes=[1], sigma=s, consts=c,
                                                    b=bt.engine, R=R)
                T = ctx.burn_in(s, given="auto") if bt.T == "auto" else bt.T
                sigma[bt.key][ek], burn[bt.key][ek] = s, int(T)
                certs.append(accountant.certificate(
                    consts=c, eps=got, alpha=alpha, K=UNLEARN_EPOCHS, sigma=s, R=R, b=bt.engine, T=int(T),
                    setting=f"PNSGD b={bt.key} eps={ek}", bound="per Renyi order the smallest proven bound, "
                    "improved conversion (docs/METHOD.md §7)", **bounds.fields("best", name)))
                compare_work(work, args.trials, bt, sigma=s, T=int(T))
                continue
            T = bt.T
            if T == "auto":    # the burn-in of the converged sigma; the finite-T sigma then accounts for it
                T = ctx.burn_in(accountant.smallest_sigma_pnsgd(K=UNLEARN_EPOCHS, eps_target=eps, consts=c,
                                                                b=bt.engine, R=R), given="auto")
            s = accountant.smallest_sigma_pnsgd_nonconvergent(eps_target=eps, T=T, consts=c, R=R,
                                                              K=UNLEARN_EPOCHS, b=bt.engine, q=args.q,
                                                              reference_zero_R=zero_R)
            got, alpha = accountant.dp_epsilon_pnsgd_nonconvergent(K=UNLEARN_EPOCHS, T=T, sigma=s, consts=c, R=R,
                                                                   b=bt.engine, q=args.q, reference_zero_R=zero_R)
            sigma[bt.key][ek], burn[bt.key][ek] = s, int(T)
            certs.append(accountant.certificate(
                consts=c, eps=got, alpha=alpha, K=UNLEARN_EPOCHS, sigma=s, R=R, b=bt.engine, T=int(T), q=args.q,
                setting=f"PNSGD b={bt.key} eps={ek}",
                bound="PNSGD finite-T (B, docs/METHOD.md §4.5)" + (" with the reference's R=0 arithmetic (2R terms "
                                                          "dropped; at least the every-T loose bound, "
                                                          "docs/METHOD.md §6.1)" if zero_R else ""),
                **bounds.fields("paper", "B-finite-T")))
            compare_work(work, args.trials, bt, sigma=s, T=int(T))
    return {"eps_list": eps_list, "K": UNLEARN_EPOCHS, "q": args.q, "R": R, "sigma": sigma, "burn_in": burn,
            "certificates": certs}


def compare_work(work, C: int, bt: Batch, *, sigma: float, T: int) -> None:
    """One (b, eps) stage of run_compare: learn, retrain, unlearn one epoch, three accuracies."""
    work.learn(C, T, b=bt.engine, sigma=sigma)
    work.learn(C, T, b=bt.engine, sigma=sigma, new_data=True)
    work.advance(C, UNLEARN_EPOCHS, b=bt.engine, sigma=sigma)
    work.evaluate(C, 3)
    work.save(0)


def plan_paper_a(ctx, eps_list, reuse, work):
    """LU K = 1 sigma (A, docs/METHOD.md §3.2) and D2D sigma_1 for K in {1, 5} (docs/METHOD.md §8) on this data."""
    c, args = ctx.consts, ctx.args
    table = experiments.sigma_table(c, Ks=[1], eps_list=eps_list, S=1, bound=args.bound)
    lu = {results.json_key(r["epsilon"]): r["sigma"] for r in table}
    d2d_sigma = {str(K): {results.json_key(e): d2d.output_sigma(c, K=K, eps=e) for e in eps_list} for K in D2D_STEPS}
    certs = [accountant.certificate(consts=c, eps=r["eps_achieved"], alpha=r["alpha"], K=1, sigma=r["sigma"], b=None,
                                    setting=f"LU K=1 eps={results.json_key(r['epsilon'])}",
                                    bound="PNGD strongly convex (A, docs/METHOD.md §3.2)" if args.bound == "paper" else
                                    "PNGD: per Renyi order the smallest of A-LSI, B-loose, B-tight at b = n, "
                                    "improved conversion (docs/METHOD.md §7)",
                                    **bounds.fields(args.bound, r["bound_name"])) for r in table]
    T_lu = {k: (ctx.burn_in(s, given=args.lmc_burn_in)) for k, s in lu.items()}
    T_d2d = ctx.burn_in(0.0, given=args.lmc_burn_in)
    if not reuse:   # run_paper_a: per eps LU learns (the chains baseline.py shares) and unlearns one step; D2D
        for ek, s in lu.items():
            work.learn(args.trials, T_lu[ek], sigma=s, key=("D", results.json_key(s)))
            work.advance(args.trials, 1, sigma=s)
            work.evaluate(args.trials)
            work.save(0)
        d2d.one_shot_work(work, args.trials, T=T_d2d, noise={K: d2d_sigma[str(K)] for K in D2D_STEPS})
        work.save(0)
    return {"lmc_sigma": lu, "lmc_burn_in": T_lu, "d2d_sigma": d2d_sigma, "d2d_burn_in": T_d2d}, certs


def run_compare(ctx, batches, plan, removal, task1):
    lab, eps_list = ctx.lab(), plan["eps_list"]
    accuracy, arrays = {}, {}
    for bt in batches:
        accuracy[bt.key] = {}
        rows = {"learn": [], "retrain": [], "unlearn": []}
        for eps in eps_list:
            ek = results.json_key(eps)
            s, T = plan["sigma"][bt.key][ek], plan["burn_in"][bt.key][ek]

            def compute(bt=bt, s=s, T=T):
                w = lab.learn(sigma=s, T=T, batch_size=bt.engine, key=(bt.key, results.json_key(s)))
                w_re = lab.learn(sigma=s, T=T, batch_size=bt.engine, data=(removal.X, removal.y),
                                 phase="retrain", key=(bt.key, results.json_key(s)))
                w_un = lab.advance(w, task1, steps=UNLEARN_EPOCHS, sigma=s, key=(ctx.mode, bt.key, results.json_key(s)),
                                   batch_size=bt.engine, perms=lab_perms(lab, bt), desc=f"unlearn b={bt.key}",
                                   phase="unlearn")
                return {"learn": lab.accuracy(w), "retrain": lab.accuracy(w_re), "unlearn": lab.accuracy(w_un)}

            part = lab.stage(f"b{bt.key}_eps{ek}", compute)
            accuracy[bt.key][ek] = {k: stats(part[k]) for k in rows}
            for k in rows:
                rows[k].append(part[k])
        for k, v in rows.items():
            arrays[f"acc_{k}_b{bt.key}"] = np.stack(v)
    return accuracy, arrays


def run_paper_a(ctx, plan, eps_list, task1):
    """LU K = 1 and D2D K in {1, 5} accuracies computed on this data (the shared engine, full batch)."""
    lab = ctx.lab()

    def lu_part(ek):
        s, T = plan["lmc_sigma"][ek], plan["lmc_burn_in"][ek]
        w = lab.learn_on_D(sigma=s, T=T)  # the chains baseline.py learns: a shared cache
        w = lab.advance(w, task1, steps=1, sigma=s, key=("lmc", ek), desc="LU unlearn", phase="unlearn")
        return {"unlearn": lab.accuracy(w)}

    def d2d_part():
        noise = {K: plan["d2d_sigma"][str(K)] for K in D2D_STEPS}
        return d2d.one_shot(lab, task1, T=plan["d2d_burn_in"], noise=noise)

    lu = {results.json_key(e): lab.stage(f"lmc_eps{results.json_key(e)}", lambda e=e: lu_part(results.json_key(e)))
          for e in eps_list}
    one_shot = lab.stage("d2d", d2d_part)
    curves = {"lmc": {ek: stats(v["unlearn"]) for ek, v in lu.items()},
              "d2d": {str(K): {results.json_key(e): stats(one_shot[f"K{K}_eps{results.json_key(e)}"]) for e in eps_list}
                      for K in D2D_STEPS}}
    arrays = {"lmc_acc": np.stack([lu[results.json_key(e)]["unlearn"] for e in eps_list])}
    for K in D2D_STEPS:
        arrays[f"d2d_acc_K{K}"] = np.stack([one_shot[f"K{K}_eps{results.json_key(e)}"] for e in eps_list])
    return curves, arrays


def plan_compare_baseline_nonconvergent(ctx) -> experiments.Plan:
    """Fig 3a's plan: sigma per (b, eps) from the finite-T bound, and paper A's curves (read or planned here)."""
    batches, truncation = settings(ctx)
    work = ctx.workload()
    plan = plan_compare(ctx, batches, work)
    # rank 0 reads the given run for every rank (torchrun): the ranks must take the same branch
    reused, source = distributed.on_main(lambda: paper_a_run(ctx, plan["eps_list"]))
    a_plan, a_certs = plan_paper_a(ctx, plan["eps_list"], reused is not None, work)
    ctx.log(f"paper-A curves (LU K=1, D2D K in {list(D2D_STEPS)}): "
            + (f"read from {source} (--paper_a_run)" if reused else "computed on this run's rows"))
    plan["certificates"] += a_certs
    metrics = dict(plan, comparison=dict(a_plan, source=source), **common(ctx, batches, truncation))
    arrays = {f"sigma_b{bt.key}": np.array([plan["sigma"][bt.key][results.json_key(e)] for e in plan["eps_list"]])
              for bt in batches}
    arrays["eps_list"] = np.array(plan["eps_list"])
    return plan_of(ctx, work, metrics, arrays, "sigma per (b, eps) saved", (batches, plan, reused, a_plan))


def compare_baseline_nonconvergent(ctx, planned: experiments.Plan):
    """Fig 3a's chains: per (b, eps) learn, retrain and unlearn one epoch; paper A's curves unless read."""
    (batches, plan, reused, a_plan), metrics, arrays = planned.tables, planned.metrics, planned.arrays
    lab = ctx.lab()
    removal = lab.removal(1)  # D' of the one removal, shared by the comparison and paper A's curves
    task1 = lab.task(removal.X, removal.y)
    accuracy, acc_arrays = run_compare(ctx, batches, plan, removal, task1)
    arrays.update(acc_arrays)
    if reused:
        metrics["comparison"].update(reused)
    else:
        curves, a_arrays = run_paper_a(ctx, a_plan, plan["eps_list"], task1)
        metrics["comparison"].update(curves)
        arrays.update(a_arrays)
    metrics["accuracy"] = accuracy
    lines = [f"b={bt.key}: unlearn " + ", ".join(f"eps {ek}: {v['unlearn']['mean']:.3f} (retrain "
                                                  f"{v['retrain']['mean']:.3f})" for ek, v in accuracy[bt.key].items())
             for bt in batches]
    return metrics, arrays, "Fig 3a (K = 1 epoch): " + "; ".join(lines) + f"; wall-clock {wall(ctx)}"


# ---------------------------------------------------------------- Fig 3b and Fig 3c,d
def burn_in_of(ctx, bt, sigma) -> int:
    return ctx.burn_in(sigma, given=bt.T)


def run_stream_setting(ctx, bt, sigma, Ks, *, tag):
    """Learn, unlearn request by request, retrain on the final D': one resumable stage per setting, and
    inside it a checkpoint after every request, so an interrupted stream resumes at the request it reached."""
    lab, T, sk = ctx.lab(), burn_in_of(ctx, bt, sigma), results.json_key(sigma)
    name = f"{tag}_b{bt.key}_sigma{sk}"

    def compute():
        done, saved, save = lab.stream_checkpoint(f"{name}_requests")
        if saved is None:
            w = lab.learn(sigma=sigma, T=T, batch_size=bt.engine, key=(bt.key, sk))
            acc_learn, accs = lab.accuracy(w), []
        else:
            w, acc_learn, accs = lab.local(saved["w"]), saved["learn"], list(saved["accuracy"])
        perms, key, last = lab_perms(lab, bt), (ctx.mode, bt.key, sk), None
        for s, (removal, K) in enumerate(zip(lab.removal_stream([1] * len(Ks)), Ks), start=1):
            last = removal
            if s <= done:
                continue  # the stream is still drawn, so later requests replace the same rows
            w = lab.advance(w, lab.task(removal.X, removal.y), steps=K, sigma=sigma, key=key + (s,),
                            batch_size=bt.engine, perms=perms, desc=f"unlearn b={bt.key} request {s}",
                            phase="unlearn")
            accs.append(lab.accuracy(w))
            save(s, {"w": lab.gather(w).cpu().numpy(), "learn": acc_learn, "accuracy": np.stack(accs)})
        w_re = lab.learn(sigma=sigma, T=T, batch_size=bt.engine, data=(last.X, last.y), phase="retrain",
                         key=(bt.key, sk))
        return {"learn": acc_learn, "unlearn_steps": np.stack(accs), "retrain": lab.accuracy(w_re)}

    return lab.stage(name, compute)


def common(ctx, batches, truncation) -> dict:
    return {"batch_sizes": [bt.key for bt in batches], "batch_orders": ctx.args.batch_orders,
            "n": ctx.consts.n, "truncation": truncation,
            "Z_B": z_b_table(ctx.consts, batches, ctx.args.projection), "projection_R": ctx.args.projection}


def plan_sequential(ctx) -> experiments.Plan:
    """Fig 3b's plan: the K list of every batch size, and Langevin's and D2D's for comparison."""
    batches, truncation = settings(ctx)
    args, c = ctx.args, ctx.consts
    eps, sigma, N = target_eps(args), args.sigma, args.requests
    check_requests(N, c.n)
    if sigma == 0:
        raise cli.UsageError("--sigma 0 gives eps = inf for every K (allowed: --sigma > 0)")
    plans = {bt.key: stream_plan(c, bt, sigma=sigma, eps=eps, requests=N, R=args.projection,
                                 tight_first=args.tight_first, bound=args.bound) for bt in batches}
    burn = {bt.key: burn_in_of(ctx, bt, sigma) for bt in batches}
    k_lists = {k: p["K"] for k, p in plans.items()}
    metrics = {"sigma": sigma, "epsilon": eps, "requests": N, "tight_first": args.tight_first,
               "k_lists": k_lists, "z_lists": {k: p["Z"] for k, p in plans.items()},
               "accumulated_epochs": {k: int(sum(v)) for k, v in k_lists.items()},
               "burn_in": burn, "retraining_epochs": {k: N * T for k, T in burn.items()},
               "certificates": [stream_certificate(c, bt, plans[bt.key], sigma=sigma, R=args.projection,
                                                   tight_first=args.tight_first, setting=f"b={bt.key}",
                                                   T=burn[bt.key], bound=args.bound)
                                for bt in batches]}
    metrics.update(lu_sequential_plan(c, sigma=sigma, eps=eps, requests=N, bound=args.bound))
    if metrics["d2d_k_list"] is None:
        ctx.log("note: no D2D curve: its iteration count needs the dimension d (give --dim)")
    metrics.update(common(ctx, batches, truncation))
    work = ctx.workload()
    for bt in batches:
        stream_work(work, args.trials, bt, sigma=sigma, T=burn[bt.key], Ks=k_lists[bt.key])
    arrays = {f"k_list_b{k}": np.array(v, dtype=np.int64) for k, v in k_lists.items()}
    arrays["lmc_k_list"] = np.array(metrics["lmc_k_list"], dtype=np.int64)
    if metrics["d2d_k_list"] is not None:
        arrays["d2d_k_list"] = np.array(metrics["d2d_k_list"], dtype=np.int64)
    return plan_of(ctx, work, metrics, arrays, "K lists saved", (batches, k_lists))


def sequential(ctx, planned: experiments.Plan):
    """Fig 3b's chains: per batch size the request stream, resumable request by request."""
    (batches, k_lists), metrics, arrays, sigma = planned.tables, planned.metrics, planned.arrays, ctx.args.sigma
    accuracy = {}
    for bt in batches:
        part = run_stream_setting(ctx, bt, sigma, k_lists[bt.key], tag="seq")
        accuracy[bt.key] = {"learn": stats(part["learn"]), "unlearn": stats(part["unlearn_steps"][-1]),
                            "retrain": stats(part["retrain"]),
                            "unlearn_mean_per_request": part["unlearn_steps"].mean(axis=1).tolist()}
        arrays.update({f"acc_learn_b{bt.key}": part["learn"], f"acc_unlearn_b{bt.key}": part["unlearn_steps"],
                       f"acc_retrain_b{bt.key}": part["retrain"]})
    metrics["accuracy"] = accuracy
    lines = [f"b={k}: {metrics['accumulated_epochs'][k]} epochs in total, accuracy after the last removal "
             f"{v['unlearn']['mean']:.3f} (retrain {v['retrain']['mean']:.3f})" for k, v in accuracy.items()]
    return metrics, arrays, "Fig 3b: " + "; ".join(lines) + f"; wall-clock {wall(ctx)}"


def target_eps(args) -> float:
    return args.eps[0] if args.eps else TARGET_EPS[args.mode]


def check_requests(N, n):
    if N >= n:
        raise cli.UsageError(f"--requests {N} replaces {N} rows but n = {n} (allowed: fewer than n)")


def plan_paint_unlearning_sigma(ctx) -> experiments.Plan:
    """Fig 3c,d's plan: per (batch size, sigma) the K list of the requests and the accumulated epochs."""
    batches, truncation = settings(ctx)
    args, c = ctx.args, ctx.consts
    eps, N = target_eps(args), args.requests
    sigmas = args.sigma_list or PAPER_SIGMAS
    check_requests(N, c.n)
    k_lists, z_lists, acc_epochs, burn, retrain, certs, work = {}, {}, {}, {}, {}, [], ctx.workload()
    for bt in batches:
        k_lists[bt.key], z_lists[bt.key], acc_epochs[bt.key], burn[bt.key], retrain[bt.key] = {}, {}, {}, {}, {}
        for s in sigmas:
            sk = results.json_key(s)
            p = stream_plan(c, bt, sigma=s, eps=eps, requests=N, R=args.projection, tight_first=args.tight_first,
                            bound=args.bound)
            T = burn_in_of(ctx, bt, s)
            k_lists[bt.key][sk], z_lists[bt.key][sk] = p["K"], p["Z"]
            acc_epochs[bt.key][sk], burn[bt.key][sk], retrain[bt.key][sk] = int(sum(p["K"])), T, N * T
            certs.append(stream_certificate(c, bt, p, sigma=s, R=args.projection, tight_first=args.tight_first,
                                            setting=f"b={bt.key} sigma={sk}", T=T, bound=args.bound))
            stream_work(work, args.trials, bt, sigma=s, T=T, Ks=p["K"])
    metrics = {"sigma_list": sigmas, "epsilon": eps, "requests": N, "tight_first": args.tight_first,
               "k_lists": k_lists, "z_lists": z_lists, "accumulated_epochs": acc_epochs, "burn_in": burn,
               "retraining_epochs": retrain, "certificates": certs}
    metrics.update(common(ctx, batches, truncation))
    arrays = {"sigma_list": np.array(sigmas)}
    for bt in batches:
        arrays[f"accumulated_epochs_b{bt.key}"] = np.array([acc_epochs[bt.key][results.json_key(s)] for s in sigmas])
    return plan_of(ctx, work, metrics, arrays, "K lists saved", (batches, sigmas, k_lists, acc_epochs))


def paint_unlearning_sigma(ctx, planned: experiments.Plan):
    """Fig 3c,d's chains: per (batch size, sigma) the request stream, resumable request by request."""
    (batches, sigmas, k_lists, acc_epochs), metrics, arrays = planned.tables, planned.metrics, planned.arrays
    accuracy = {}
    for bt in batches:
        accuracy[bt.key], rows = {}, {"learn": [], "unlearn": [], "retrain": [], "unlearn_mean_per_request": []}
        for s in sigmas:
            sk = results.json_key(s)
            part = run_stream_setting(ctx, bt, s, k_lists[bt.key][sk], tag="paint")
            last = part["unlearn_steps"][-1]
            accuracy[bt.key][sk] = {"learn": stats(part["learn"]), "unlearn": stats(last),
                                    "retrain": stats(part["retrain"])}
            for k, v in (("learn", part["learn"]), ("unlearn", last), ("retrain", part["retrain"]),
                         ("unlearn_mean_per_request", part["unlearn_steps"].mean(axis=1))):
                rows[k].append(v)
        arrays.update({f"acc_{k}_b{bt.key}": np.stack(v) for k, v in rows.items()})
    metrics["accuracy"] = accuracy
    lines = [f"b={bk}: " + ", ".join(f"sigma {sk}: {v['unlearn']['mean']:.3f} (retrain {v['retrain']['mean']:.3f}, "
                                     f"{acc_epochs[bk][sk]} epochs)" for sk, v in per.items())
             for bk, per in accuracy.items()]
    return metrics, arrays, "Fig 3c,d: " + "; ".join(lines) + f"; wall-clock {wall(ctx)}"


# ---------------------------------------------------------------- noiseless reference
def plan_retrain_noiseless(ctx) -> experiments.Plan:
    """The noiseless reference's plan: the removal counts that fit n and the burn-in per batch size."""
    batches, truncation = settings(ctx)
    args, c = ctx.args, ctx.consts
    notes, removes = [], args.S or REMOVE_LIST
    too_big = [S for S in removes if S >= c.n]
    if too_big and args.S is not None:
        raise cli.UsageError(f"--S {too_big[0]} is not below n = {c.n} (allowed: 1..{c.n - 1})")
    if too_big:
        notes.append(f"default removal counts {too_big} dropped: not below n = {c.n}")
    removes = [S for S in removes if S < c.n]
    burn = {bt.key: burn_in_of(ctx, bt, 0.0) for bt in batches}
    work = ctx.workload()
    for bt in batches:   # retrain_noiseless: one chain learns, and retrains on each D'_S
        work.learn(1, burn[bt.key], b=bt.engine, sigma=0.0)
        work.evaluate(1)
        for _ in removes:
            work.learn(1, burn[bt.key], b=bt.engine, sigma=0.0, new_data=True)
            work.evaluate(1)
        work.save(0)
    steps = work.chain_steps
    cert = accountant.certificate(consts=c, eps=math.inf, alpha=None, K=0, sigma=0.0, R=args.projection, b=None,
                                  bound="none: sigma = 0 gives no privacy (a utility reference only)",
                                  comparison="none (no certificate)")
    metrics = {"sigma": 0.0, "remove_list": removes, "burn_in": burn, "certificates": [cert],
               "total_chain_steps": steps, "notes": notes}
    metrics.update(common(ctx, batches, truncation))
    for line in notes:
        ctx.log("note: " + line)
    ctx.log(f"plan: {steps:,} chain-steps (sigma = 0: one chain per setting)")
    arrays = {"remove_list": np.array(removes, dtype=np.int64)}
    return experiments.Plan(metrics, arrays, work=work, summary=f"plan only; {wall(ctx)}",
                            tables=(batches, removes, burn))


def retrain_noiseless(ctx, planned: experiments.Plan):
    """The noiseless reference's chains: one chain learns and retrains per batch size and removal count."""
    (batches, removes, burn), metrics, arrays = planned.tables, planned.metrics, planned.arrays
    lab, accuracy = ctx.lab(), {}
    for bt in batches:
        T = burn[bt.key]

        def compute(bt=bt, T=T):
            out = {"learn": lab.accuracy(lab.learn(sigma=0.0, T=T, batch_size=bt.engine, C=1, key=(bt.key, "0")))}
            for S in removes:
                removal = lab.removal(S)
                w = lab.learn(sigma=0.0, T=T, batch_size=bt.engine, C=1, data=(removal.X, removal.y),
                              phase="retrain", key=(bt.key, "0", S))
                out[f"S{S}"] = lab.accuracy(w)
            return out

        part = lab.stage(f"b{bt.key}", compute)
        accuracy[bt.key] = {"learn": float(part["learn"][0]),
                            "retrain": {str(S): float(part[f"S{S}"][0]) for S in removes}}
        arrays[f"acc_learn_b{bt.key}"] = part["learn"]
        arrays[f"acc_retrain_b{bt.key}"] = np.array([part[f"S{S}"][0] for S in removes])
    metrics["accuracy"] = accuracy
    lines = [f"b={k}: learn {v['learn']:.3f}" for k, v in accuracy.items()]
    return metrics, arrays, "noiseless: " + "; ".join(lines) + f"; wall-clock {wall(ctx)}"


SCRIPTS = {
    "compare_baseline_nonconvergent": experiments.Script(plan_compare_baseline_nonconvergent,
                                                         compare_baseline_nonconvergent, start_keywords),
    "sequential": experiments.Script(plan_sequential, sequential, start_keywords),
    "paint_unlearning_sigma": experiments.Script(plan_paint_unlearning_sigma, paint_unlearning_sigma, start_keywords),
    "retrain_noiseless": experiments.Script(plan_retrain_noiseless, retrain_noiseless, start_keywords),
}


@cli.guarded
def main(argv=None) -> int:
    return experiments.run_script(build_parser(), argv, check=check_args, scripts=SCRIPTS)


if __name__ == "__main__":
    sys.exit(main())
