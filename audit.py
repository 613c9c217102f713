"""Empirical audit: how distinguishable are unlearned models from retrained ones, beside the certificate.

For one dataset, noise sigma and S replaced rows (one fixed D'), and a sweep of unlearning steps K:
- (a) ``--trials`` chains learn T PNGD steps on D, then run K unlearning steps on D';
- (b) ``--trials`` chains retrain on D' from scratch for T + K steps: the law the unlearning theorem
  compares with (docs/METHOD.md §3.2; at stationarity the same as T steps).
``--neighbour random`` replaces S random rows by random points; ``--neighbour worst`` plants S copies
of a canary pair whose clipped gradients differ as much as the model allows, along the direction of
least data mass, and adds the white-box statistics that know that direction (docs/METHOD.md §9).
A membership-style test then tries to tell (a) from (b): the statistic (loss of the removed or of the
replacement rows, projection on the loss-gradient difference, on the mean difference or on an LDA
direction), its orientation and threshold are chosen on one part of the chains, and its true/false
positive rates measured on the rest give, with Clopper-Pearson intervals, a lower bound on eps that
holds with the stated confidence (Jagielski et al. 2020; Nasr et al. 2021). It is shown against the
certified eps of the accountant (K = 0: the learning bound eps_0), with two-sample distances (KS,
Gaussian-fit TV / Renyi / GDP eps) of the chosen statistic on the held-out chains, and the Gaussian-DP
estimate of eps from the held-out trade-off curve (Nasr et al. 2023, arXiv 2302.07956): an estimate,
not a bound. ``--target_eps E`` picks sigma so that the certificate at K = 0 is E.

    python audit.py --dataset DIGITS                      # defaults: sigma 0.01, S 10, K 0..200, 1000 chains
    python audit.py --dataset DIGITS --plan_only          # the certified eps per K only
    python audit.py --dataset DIGITS --neighbour worst --target_eps 2 --S 1
    python audit.py --dataset DIGITS --model mlp                    # a network, noisy fine-tuning (§13)

``--model mlp`` (run folder result/NET/<DATASET>/audit/): (a) networks learned on D, (b) networks learned on
D' (the certifying run), both clipped to C0 and fine-tuned by the same K noisy steps on D' (K >= 1: the
noisy updates); the weights are compared right after the noisy steps (post-processing can only make them
harder to tell apart), against the fine-tuning certificate of docs/METHOD.md §13. ``--sigma`` is then the
per-update noise std of §13; by default sigma certifies eps = 2 at the smallest K.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time

import numpy as np

from utils import accountant, bounds, checks, cli, experiments, model_kinds, network
from utils import audit_stats as st

MODE = "audit"
DEFAULT_SIGMA = 0.01
DEFAULT_S = 10
DEFAULT_K = [0, 1, 2, 5, 10, 20, 50, 100, 200]
DEFAULT_TRIALS = 1000
STATISTICS = ("removed_loss", "replacement_loss", "gradient_direction", "mean_difference", "lda")
WHITE_BOX = ("shift_projection", "likelihood_ratio")   # need the known shift direction (--neighbour worst)
NEIGHBOURS = ("random", "worst")
DEFAULT_TARGET_EPS = 2.0
GDP_THRESHOLDS = 20
NETWORK_K = [1, 2, 5, 10]    # --model mlp: noisy updates audited
NETWORK_TRIALS = 400         # --model mlp: chains per arm unless --trials
# flags of the Langevin chains that a network audit does not read (refused with --model mlp)
LINEAR_ONLY = ("burn_in", "M", "L", "smoothness", "projection")


def certified(bound: str):
    """(eps, alpha*, bound name, mu) of the ``bound`` certificate (paper | best | gdp, docs/METHOD.md §3.2 / §7 /
    §12) after K unlearning steps of S rows (K = 0: learning alone); mu is None for paper."""
    def eps_after(*, K: int, S: int, sigma: float, consts) -> tuple[float, float, str, float | None]:
        return (*bounds.pngd_eps(bound, Ks=[K], sizes=[S], sigma=sigma, consts=consts),
                bounds.gdp_mu(bound, Ks=[K], sizes=[S], sigma=sigma, consts=consts))
    return eps_after


# bound mode -> its certificate after K steps: each is proven, so the audit must stay below every one.
BOUNDS = {mode: certified(mode) for mode in bounds.BOUNDS}
WHAT = {"paper": "PNGD unlearning, docs/METHOD.md §3.2", "best": "PNGD unlearning, the best proven bound, "
        "docs/METHOD.md §7", "gdp": "PNGD unlearning, Gaussian DP by shifted interpolation, docs/METHOD.md §12"}


# ---------------------------------------------------------------- flags
def level(text):
    """A probability strictly between 0 and 1 (confidence level, fraction of chains): checks.probability."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number")
    try:
        return checks.probability("value", x)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser():
    p = cli.make_parser(
        "Empirical audit: distinguishability of unlearned (learn on D, K steps on D') vs retrained (D') chains, "
        "beside the certified eps.", family="LMC",
        defaults={"trials": DEFAULT_TRIALS, "sigma": None, "burn_in": "auto"},
        helps={"trials": f"chains per arm, unlearned and retrained (default {DEFAULT_TRIALS})",
               "sigma": f"noise standard deviation, > 0 (default {DEFAULT_SIGMA}: small, so that the replaced rows "
                        "are visible at K = 0 on DIGITS; not with --target_eps)",
               "burn_in": "learning steps T, or 'auto' (default): within 1%% of the stationary radius by the "
                          "contraction bound"})
    g = p.add_argument_group("audit.py")
    cli.add(g, "--S", type=cli.int_at_least(1), default=DEFAULT_S,
            help=f"training rows replaced together in D' (default {DEFAULT_S})")
    cli.add(g, "--K", type=cli.int_in(0, 10 ** 9), nargs="+", default=list(DEFAULT_K),
            help=f"unlearning steps to audit, 0 = no unlearning (default {' '.join(map(str, DEFAULT_K))})")
    cli.add(g, "--confidence", type=level, default=0.95,
            help="probability that the empirical eps interval holds (default 0.95)")
    cli.add(g, "--neighbour", choices=NEIGHBOURS, default="random",
            help="random: S random rows replaced by random points (default); worst: S copies of a canary "
                 "pair with the largest clipped-gradient gap, along the direction of least data mass, and "
                 "white-box statistics that know that direction")
    cli.add(g, "--target_eps", type=cli.positive_float, nargs="?", const=DEFAULT_TARGET_EPS, default=None,
            metavar="E", help=f"choose sigma so that the certificate at K = 0 (learning alone) is E "
                              f"(flag alone: {DEFAULT_TARGET_EPS:g}); not with --sigma")
    cli.add(g, "--select_fraction", type=level, default=0.5,
            help="share of each arm's chains that choose the statistic and threshold; the rest measure "
                 "the rates (default 0.5)")
    cli.add_model_flags(p)
    return p


def parse(argv=None):
    """Flags, validated before any data is loaded (--n works with --plan_only), then frozen."""
    return cli.parse_checked(build_parser(), argv, check=check_args, accounting_modes=())[0]


def check_args(args) -> str:
    """Every check that needs no data; fills the --sigma default and sorts --K (before the flags are frozen)."""
    if args.target_eps is not None and args.sigma is not None:
        raise cli.UsageError(f"--sigma {args.sigma:g} and --target_eps {args.target_eps:g} both set the noise "
                             "(allowed: one of them)")
    cli.check_model_flags(args, linear_only=LINEAR_ONLY)
    if model_kinds.is_network(args):
        check_network_args(args)
    if args.target_eps is None and args.sigma is None:
        args.sigma = DEFAULT_SIGMA
    if args.sigma is not None and args.sigma <= 0:
        raise cli.UsageError(f"--sigma {args.sigma:g} makes every chain identical and eps infinite "
                             "(allowed: sigma > 0)")
    Ks = [int(k) for k in args.K]
    cli.check_distinct("K", Ks)
    args.K = sorted(Ks)
    n_sel = int(args.trials * args.select_fraction)
    if min(n_sel, args.trials - n_sel) < 2:
        raise cli.UsageError(f"--trials {args.trials} with --select_fraction {args.select_fraction:g} leaves "
                             f"{n_sel} and {args.trials - n_sel} chains per part (allowed: at least 2 in each)")
    return MODE


def check_network_args(args) -> None:
    """--model mlp: K >= 1 noisy updates (default NETWORK_K), the random neighbour, sigma for eps 2 by default."""
    if args.neighbour == "worst":
        raise cli.UsageError("--neighbour worst plants canaries for the linear models (allowed with --model mlp: "
                             "--neighbour random)")
    if "K" in args.given_flags and min(args.K) < 1:
        raise cli.UsageError(f"--K {min(args.K)}: a network audit needs noisy updates (allowed with --model mlp: "
                             f"K >= 1)")
    if "K" not in args.given_flags:
        args.K = list(NETWORK_K)
    if "trials" not in args.given_flags:
        args.trials = NETWORK_TRIALS
    if args.sigma is None and args.target_eps is None:
        args.target_eps = DEFAULT_TARGET_EPS
    args.family = "NET"


# ---------------------------------------------------------------- plan (accountant only)
def check_S(S: int, n: int) -> None:
    if S >= n:
        raise cli.UsageError(f"--S {S} is not below n={n} (allowed: 1..{n - 1})")


def sigma_for_target(consts, *, eps: float, S: int) -> float:
    """Smallest sigma whose paper certificate at K = 0 (learning alone) is eps (docs/METHOD.md §5.2)."""
    return accountant.smallest_sigma_pngd(K=0, eps_target=eps, S=S, consts=consts)


def plan(consts, *, Ks, S: int, sigma: float, T: int, trials: int, R: float, bound: str = "paper") -> dict:
    """Certified eps per K and per bound (K = 0: learning, eps_0 converted) and the chain-steps the audit runs;
    ``certified_eps`` is the ``bound`` one (--bound), the violation check uses the smallest of all."""
    check_S(S, consts.n)
    eps_by = {name: {} for name in BOUNDS}
    alpha_by = {name: {} for name in BOUNDS}
    certificates = []
    for K in Ks:
        for mode, certify in BOUNDS.items():
            eps, alpha, name, mu = certify(K=K, S=S, sigma=sigma, consts=consts)
            eps_by[mode][str(K)], alpha_by[mode][str(K)] = eps, alpha
            what = "PNGD learning eps_0, docs/METHOD.md §3.1" if K == 0 and mode == "paper" else WHAT[mode]
            certificates.append(accountant.certificate(consts=consts, eps=eps, alpha=alpha, K=K, sigma=sigma, R=R,
                                                       bound=what, S=S, T=T, **bounds.fields(mode, name, mu)))
    # each arm: T learning steps, then K_max further steps (the sweep advances incrementally)
    steps = 2 * trials * (T + max(Ks))
    return {"certified_eps": eps_by[bound], "certified_alpha": alpha_by[bound],
            "certified_eps_by_bound": eps_by, "certified_alpha_by_bound": alpha_by,
            "certificates": certificates, "chain_steps": steps}


def plan_network(fc, *, Ks, sigma: float, trials: int, updates_learn: int) -> dict:
    """The fine-tuning certificate per K (noisy updates) and per bound (paper: basic conversion, best: improved;
    docs/METHOD.md §13), as ``plan`` does for the Langevin chains."""
    eps_by, alpha_by, certificates = {b: {} for b in bounds.FINETUNE_BOUNDS}, {b: {} for b in bounds.FINETUNE_BOUNDS}, []
    for K in Ks:
        for mode in bounds.FINETUNE_BOUNDS:
            eps, alpha, name = bounds.finetune_eps(mode, T=K, sigma=sigma, fc=fc)
            eps_by[mode][str(K)], alpha_by[mode][str(K)] = eps, alpha
            certificates.append(accountant.finetune_certificate(fc=fc, eps=eps, alpha=alpha, T=K, sigma=sigma,
                                                                bound="noisy fine-tuning, docs/METHOD.md §13",
                                                                **bounds.fields(mode, name)))
    steps = 2 * trials * (updates_learn + max(Ks))
    return {"certified_eps": eps_by["paper"], "certified_alpha": alpha_by["paper"],
            "certified_eps_by_bound": eps_by, "certified_alpha_by_bound": alpha_by,
            "certificates": certificates, "chain_steps": steps}


def tightest(the_plan: dict, K) -> float:
    """The smallest certified eps at K over the bounds: a lower bound above it contradicts a certificate."""
    return min(float(v[str(K)]) for v in the_plan["certified_eps_by_bound"].values())


# ---------------------------------------------------------------- the neighbouring datasets
@dataclasses.dataclass(frozen=True)
class Neighbours:
    """D (learned on) and D' (unlearned to, retrained on), differing in ``rows``."""

    kind: str
    rows: np.ndarray
    D: tuple | None         # (X, y); None: the data as loaded
    D_prime: tuple          # (X', y')
    old: tuple              # (X, y) of the removed rows, as in D
    new: tuple              # (X, y) of their replacements, as in D'
    direction: np.ndarray | None    # the known shift direction (worst case), flattened
    description: str


def neighbours(lab, *, S: int, kind: str) -> Neighbours:
    """The rows come from ``--removal`` (random or last); ``worst`` plants canaries in them (docs/METHOD.md §9.2).

    The certificate holds for every pair of datasets differing in S rows of norm <= 1, so the auditor may
    choose both D and D'; ``worst`` replaces the S rows by copies of the old canary in D and of the new
    canary in D', which moves the two stationary laws apart as far as a linear model allows.
    """
    removal = lab.removal(S)
    rows = removal.rows
    if kind == "random":
        return Neighbours(kind="random", rows=rows, D=None, D_prime=(removal.X, removal.y),
                          old=(lab.X[rows], lab.y[rows]), new=(removal.X[rows], removal.y[rows]), direction=None,
                          description=f"random neighbour: {S} random rows replaced by random unit points")
    c = lab.ctx.consts
    pair = st.worst_case_canaries(lab.X, lab.y, m=c.m, M=c.M, num_classes=lab.k)

    def plant(x, label):
        X, y = lab.X.copy(), lab.y.copy()
        X[rows], y[rows] = x, label
        return X, y

    D, D_prime = plant(pair.x_old, pair.y_old), plant(pair.x_new, pair.y_new)
    return Neighbours(kind="worst", rows=rows, D=D, D_prime=D_prime, old=(D[0][rows], D[1][rows]),
                      new=(D_prime[0][rows], D_prime[1][rows]), direction=pair.direction,
                      description=f"worst-case neighbour: {S} rows hold the old canary in D, the new one in D'; "
                                  + pair.description)


# ---------------------------------------------------------------- the test
def split(W, fraction: float):
    """(selection part, held-out part) of one arm's chains; chains are i.i.d., so a prefix split is fair."""
    cut = int(W.shape[0] * fraction)
    return W[:cut], W[cut:]


def candidate_scores(A, B, nb: Neighbours, *, fraction: float, model=None) -> dict:
    """Per statistic: (selection unlearned, selection retrained, held-out unlearned, held-out retrained).

    Directions and fitted laws come from the selection part only, so the held-out scores are untouched by
    the choice. On the selection part, fitted statistics score each half with the fit of the other half
    (cross-fitting), so an over-fitted statistic does not win the choice on its own training chains.
    With a known shift direction (worst case) two white-box statistics join: the projection of w on it,
    and the log-likelihood ratio of the two arms' Gaussian fits along it.
    """
    A_sel, A_out = split(A, fraction)
    B_sel, B_out = split(B, fraction)
    w_ref = np.concatenate([A_sel, B_sel]).mean(axis=0)
    u_grad = st.loss_gradient_direction(w_ref, *nb.old, *nb.new, model=model)
    fixed = {"removed_loss": lambda W: st.point_losses(W, *nb.old, model=model).mean(axis=1),
             "replacement_loss": lambda W: st.point_losses(W, *nb.new, model=model).mean(axis=1),
             "gradient_direction": lambda W: st.project(W, u_grad)}
    fitted = {"mean_difference": lambda a, b, W: st.project(W, st.mean_difference_direction(a, b)),
              "lda": lambda a, b, W: st.project(W, st.lda_direction(a, b))}
    names = STATISTICS
    if nb.direction is not None:
        names += WHITE_BOX
        fixed["shift_projection"] = lambda W: st.project(W, nb.direction)
        fitted["likelihood_ratio"] = lambda a, b, W: st.gaussian_log_ratio(
            st.project(W, nb.direction), st.gaussian_fit(st.project(a, nb.direction)),
            st.gaussian_fit(st.project(b, nb.direction)))
    out = {}
    for name in names:
        if name in fixed:
            f = fixed[name]
            out[name] = (f(A_sel), f(B_sel), f(A_out), f(B_out))
        else:
            score = fitted[name]
            out[name] = (*cross_fitted(score, A_sel, B_sel), score(A_sel, B_sel, A_out), score(A_sel, B_sel, B_out))
    return out


def cross_fitted(score, A, B):
    """Scores of A and B where each half is scored by ``score(A_fit, B_fit, W)`` fitted on the other half."""
    ha, hb = A.shape[0] // 2, B.shape[0] // 2
    if min(ha, hb) < 2:     # too few chains to fit twice: plain in-sample scores
        return score(A, B, A), score(A, B, B)
    first, second = (A[ha:], B[hb:]), (A[:ha], B[:hb])     # each half is scored by the fit to the other
    return (np.concatenate([score(*first, A[:ha]), score(*second, A[ha:])]),
            np.concatenate([score(*first, B[:hb]), score(*second, B[hb:])]))


def audit_one(A, B, nb: Neighbours, *, fraction: float, delta: float, confidence: float, model=None):
    """At one K: the Clopper-Pearson membership test, the Gaussian-DP estimate, and the two-sample distances
    of the chosen statistic on the held-out chains (``model``: the chains' model, None for the linear ones)."""
    candidates = candidate_scores(A, B, nb, fraction=fraction, model=model)
    result = st.membership_audit(candidates, delta=delta, confidence=confidence)
    gdp_name, gdp = st.gdp_audit(candidates, delta=delta, confidence=confidence, count=GDP_THRESHOLDS)
    _, _, hold_pos, hold_neg = candidates[result.statistic]
    return (result, (gdp_name, gdp), st.two_sample_distances(hold_pos, hold_neg, delta=delta),
            (hold_pos, hold_neg))


def attack_record(r: st.AuditResult) -> dict:
    return {"statistic": r.statistic, "sign": r.rule.sign, "threshold": r.rule.threshold,
            "tp": r.tp, "n_pos": r.n_pos, "fp": r.fp, "n_neg": r.n_neg, "tpr": r.tpr, "fpr": r.fpr,
            "selection_eps_lower": r.selection}


def gdp_record(name: str, g: st.GdpEstimate) -> dict:
    return {"statistic": name, "mu": g.mu, "eps": g.eps, "threshold": g.threshold, "thresholds": g.thresholds,
            "tp": g.tp, "fp": g.fp}


def ratio(certified: float, empirical: float) -> float:
    """certified / empirical: how much room the certificate leaves above what the audit shows (inf if 0)."""
    return math.inf if empirical <= 0 else float(certified) / float(empirical)


# ---------------------------------------------------------------- chains
def run_chains(lab, nb: Neighbours, *, Ks, sigma: float, T: int):
    """Yield (K, unlearned, retrained) weights as numpy and as tensors, advancing both arms through the sweep.

    Each K is a resumable stage; the learning runs only when a stage has to be computed.
    """
    task = lab.task(*nb.D_prime)
    state = {"a": None, "b": None, "K": 0}

    def start():
        if state["a"] is None:
            state["a"] = lab.learn(sigma=sigma, T=T, data=nb.D)
            state["b"] = lab.learn(sigma=sigma, T=T, data=nb.D_prime, phase="retrain")

    for K in Ks:
        k0 = state["K"]

        def compute():
            start()
            key = ("audit", k0, K)
            a = lab.advance(state["a"], task, steps=K - k0, sigma=sigma, key=key, phase="unlearn",
                            desc=f"unlearn K={K}")
            b = lab.advance(state["b"], task, steps=K - k0, sigma=sigma, key=key, phase="retrain",
                            desc=f"retrain T+{K}")
            return {"unlearned": lab.gather(a).cpu().numpy(), "retrained": lab.gather(b).cpu().numpy()}  # all ranks

        part = lab.stage(f"K{K}", compute)
        state.update(a=lab.local(part["unlearned"]), b=lab.local(part["retrained"]), K=K)   # this rank's share
        yield K, part["unlearned"], part["retrained"], state["a"], state["b"]


def run_network_chains(lab, nets, nb: Neighbours, *, Ks, sigma: float):
    """run_chains for networks: learned on D and on D', clipped, then K noisy updates on D' (advanced through
    the sweep, each K a resumable stage); yields the weights right after the noisy steps."""
    task = nets.task(*nb.D_prime)
    state = {"a": None, "b": None, "K": 0}

    def start():
        if state["a"] is None:
            D = nb.D if nb.D is not None else (lab.X, lab.y)
            state["a"] = nets.start(nets.learn(nets.task(*D), key=("learn",)), key=("unlearn",))
            state["b"] = nets.start(nets.learn(task, key=("retrain",)), key=("retrain",))

    for K in Ks:
        k0 = state["K"]

        def compute():
            start()
            key = ("audit", k0, K)
            a = nets.noisy(state["a"], task, T=K - k0, sigma=sigma, key=("unlearn",) + key, offset=k0, start=False)
            b = nets.noisy(state["b"], task, T=K - k0, sigma=sigma, key=("retrain",) + key, offset=k0, start=False)
            return {"unlearned": a.cpu().numpy(), "retrained": b.cpu().numpy()}

        part = lab.stage(f"K{K}", compute)
        state.update(a=lab.torch.as_tensor(part["unlearned"], device=lab.device, dtype=lab.dtype),
                     b=lab.torch.as_tensor(part["retrained"], device=lab.device, dtype=lab.dtype), K=K)
        yield K, part["unlearned"], part["retrained"], state["a"], state["b"]


# ---------------------------------------------------------------- main
def plan_step(ctx) -> experiments.Plan:
    """The protocol's plan (experiments.run_script): sigma (--sigma, or chosen for --target_eps: a derived
    value, config.json's derived.sigma), T and the certified eps per K and bound; no chains."""
    args, c = ctx.args, ctx.consts
    check_S(args.S, c.n)
    sigma = args.sigma
    if args.target_eps is not None and model_kinds.is_network(args):
        fc = network.Recipe.from_args(args).constants(c.delta)
        sigma = ctx.derive("sigma", bounds.finetune_smallest_sigma("paper", T=args.K[0], eps_target=args.target_eps,
                                                                   fc=fc))
        ctx.log(f"--target_eps {args.target_eps:g}: sigma={sigma:.6g} makes the paper certificate after K = "
                f"{args.K[0]} noisy updates {args.target_eps:g}")
    elif args.target_eps is not None:
        sigma = ctx.derive("sigma", sigma_for_target(c, eps=args.target_eps, S=args.S))
        ctx.log(f"--target_eps {args.target_eps:g}: sigma={sigma:.6g} makes the paper certificate at K = 0 "
                f"{args.target_eps:g}")
    Ks = args.K
    if model_kinds.is_network(args):
        recipe = network.Recipe.from_args(args)
        T = recipe.learn_epochs * recipe.epoch(c.n)   # the networks' learning updates
        the_plan = plan_network(recipe.constants(c.delta), Ks=Ks, sigma=sigma, trials=args.trials, updates_learn=T)
        ctx.log(recipe.describe())
    else:
        T = ctx.burn_in(sigma)
        the_plan = plan(c, Ks=Ks, S=args.S, sigma=sigma, T=T, trials=args.trials, R=args.projection,
                        bound=args.bound)
    settings = {"sigma": sigma, "target_eps": args.target_eps, "S": args.S, "K": Ks, "T": T,
                "trials": args.trials, "select_fraction": args.select_fraction, "confidence": args.confidence,
                "delta": c.delta, "removal": args.removal, "neighbour": args.neighbour,
                "bounds": list(the_plan["certified_eps_by_bound"]),
                "statistics": list(STATISTICS + (WHITE_BOX if args.neighbour == "worst" else ())),
                "gdp_thresholds": GDP_THRESHOLDS,
                "retrain_steps": ("learned on D', then the same K noisy updates (the certifying run, docs/METHOD.md "
                                  "§13.1); T counts learning updates" if model_kinds.is_network(args) else
                                  "T + K (the law the unlearning theorem compares with)"),
                "model": model_kinds.kind(getattr(args, "model", None)).name}
    ctx.log(f"audit: sigma={sigma:g} S={args.S} T={T} K={Ks} trials={args.trials} per arm, "
            f"{args.neighbour} neighbour; {the_plan['chain_steps']} chain-steps")
    for K in Ks:
        certs = ", ".join(f"{name} {the_plan['certified_eps_by_bound'][name][str(K)]:.6g}" for name in the_plan["certified_eps_by_bound"])
        mine = next(c for c in the_plan["certificates"] if c.get("K", c.get("T")) == K and c["bound_mode"] == args.bound)
        how = bounds.order_or_mu(the_plan["certified_alpha"][str(K)], mine.get("mu"), named=True)
        ctx.log(f"  K={K}: certified eps {certs} ({args.bound} {how})")
    metrics = dict(settings=settings, **the_plan)
    if model_kinds.is_network(args):   # network updates, not linear chain-steps (no --plan_only time estimate)
        metrics["network_chain_updates"] = metrics.pop("chain_steps")
    arrays = {"K": np.asarray(Ks, dtype=np.int64),
              "certified_eps": np.asarray([the_plan["certified_eps"][str(K)] for K in Ks])}
    for name in the_plan["certified_eps_by_bound"]:
        arrays[f"certified_eps_{name}"] = np.asarray([the_plan["certified_eps_by_bound"][name][str(K)] for K in Ks])
    if model_kinds.is_network(args):   # a network update is not a linear chain-step: no Workload prices it
        return experiments.Plan(metrics, arrays, chain_steps=metrics["network_chain_updates"],
                                tables=(sigma, T, the_plan), summary="plan only: certified eps per K (no chains run)")
    work = ctx.workload()   # run_chains: both arms learn (on D and D'), then advance through the K sweep
    work.dataset()
    work.learn(args.trials, T, sigma=sigma, new_data=args.neighbour == "worst")   # worst: D holds the canaries
    work.learn(args.trials, T, sigma=sigma, new_data=True)
    for k0, K in zip([0] + Ks[:-1], Ks):
        work.advance(args.trials, K - k0, sigma=sigma)
        work.advance(args.trials, K - k0, sigma=sigma)
        work.save(2 * args.trials)
        work.evaluate(args.trials, 2)
    return experiments.Plan(metrics, arrays, work=work, tables=(sigma, T, the_plan),
                            summary="plan only: certified eps per K (no chains run)")


def stages_step(ctx, planned: experiments.Plan):
    """The protocol's stages: the two arms' chains per K (resumable), the attacks, distances and estimates."""
    args, c, Ks = ctx.args, ctx.consts, ctx.args.K
    (sigma, T, the_plan), metrics, arrays = planned.tables, planned.metrics, planned.arrays
    settings = metrics["settings"]
    lab = ctx.lab()
    nb = neighbours(lab, S=args.S, kind=args.neighbour)
    if model_kinds.is_network(args):
        from utils import finetune

        nets = finetune.Networks(lab, network.Recipe.from_args(args))
        chains, accuracy, model = run_network_chains(lab, nets, nb, Ks=Ks, sigma=sigma), nets.accuracy, nets.model
    else:
        chains, accuracy, model = run_chains(lab, nb, Ks=Ks, sigma=sigma, T=T), lab.accuracy, None
    settings["removed_rows"] = nb.rows.tolist()
    settings["neighbour_description"] = nb.description
    ctx.log(nb.description)
    t_stats = 0.0
    rows = {k: [] for k in ("acc_a", "acc_b", "hold_a", "hold_b")}
    lower, ci, point, attack, distances = {}, {}, {}, {}, {}
    gdp, ratios, acc = {}, {}, {"unlearned": {}, "retrained": {}}
    violations, estimate_above = [], []
    for K, A, B, wa, wb in chains:
        t0 = time.perf_counter()
        result, (gdp_name, g), dist, (hp, hn) = audit_one(A, B, nb, fraction=args.select_fraction,
                                                          delta=c.delta, confidence=args.confidence, model=model)
        t_stats += time.perf_counter() - t0
        key = str(K)
        lower[key], ci[key], point[key] = result.eps_lower, [result.eps_lower, result.eps_upper], result.eps_point
        attack[key], distances[key], gdp[key] = attack_record(result), dist, gdp_record(gdp_name, g)
        ratios[key] = {name: {"certified_over_lower": ratio(v[key], result.eps_lower),
                              "certified_over_estimate": ratio(v[key], g.eps)}
                       for name, v in the_plan["certified_eps_by_bound"].items()}
        acc_a, acc_b = accuracy(wa), accuracy(wb)
        acc["unlearned"][key], acc["retrained"][key] = (experiments.summary_stats(acc_a),
                                                        experiments.summary_stats(acc_b))
        for name, v in (("acc_a", acc_a), ("acc_b", acc_b), ("hold_a", hp), ("hold_b", hn)):
            rows[name].append(v)
        cert = tightest(the_plan, K)
        ctx.log(f"  K={K}: empirical eps >= {result.eps_lower:.3g} (interval [{result.eps_lower:.3g}, "
                f"{result.eps_upper:.3g}], {result.statistic}: TPR {result.tpr:.3f} FPR {result.fpr:.3f}); "
                f"GDP estimate {g.eps:.3g} (mu {g.mu:.3g}, {gdp_name}); certified {cert:.4g}; KS {dist['ks']:.3f}")
        if result.eps_lower > cert:
            violations.append(K)
            warning = (f"K={K}: THE EMPIRICAL LOWER BOUND {result.eps_lower:.4g} EXCEEDS THE CERTIFIED EPS "
                       f"{cert:.4g}: a bug in the accountant, the sampler or the audit, or a "
                       f"{1 - args.confidence:.2g}-probability event; please report it")
            ctx.warn(warning)
            print(f"audit.py: warning: {warning}", file=sys.stderr, flush=True)
        elif g.eps > cert:
            estimate_above.append(K)
            ctx.warn(f"K={K}: the Gaussian-DP estimate {g.eps:.4g} exceeds the certified eps {cert:.4g}: either "
                     f"the trade-off curve is far from Gaussian or the certificate fails; check with more chains")
    metrics.update(empirical_eps_lower=lower, empirical_eps_ci=ci, empirical_eps_point=point,
                   confidence=args.confidence, attack=attack, gdp_estimate=gdp, ratios=ratios,
                   distances=distances, accuracy=acc, violations=violations,
                   estimate_above_certificate=estimate_above)
    lab.timings["statistics"] = t_stats
    arrays.update(empirical_eps_lower=np.asarray([lower[str(K)] for K in Ks]),
                  empirical_eps_upper=np.asarray([ci[str(K)][1] for K in Ks]),
                  empirical_eps_point=np.asarray([point[str(K)] for K in Ks]),
                  gdp_eps=np.asarray([gdp[str(K)]["eps"] for K in Ks]),
                  gdp_mu=np.asarray([gdp[str(K)]["mu"] for K in Ks]), acc_unlearned=np.stack(rows["acc_a"]),
                  acc_retrained=np.stack(rows["acc_b"]), holdout_scores_unlearned=np.stack(rows["hold_a"]),
                  holdout_scores_retrained=np.stack(rows["hold_b"]), removed_rows=nb.rows)
    return metrics, arrays, summary(metrics, Ks, ctx)


@cli.guarded
def main(argv=None) -> int:
    return experiments.run_script(build_parser(), argv, check=check_args,
                                  scripts={MODE: experiments.Script(plan_step, stages_step,
                                                                    lambda args: {"max_removed": args.S})})


def summary(metrics, Ks, ctx) -> str:
    first, last = str(Ks[0]), str(Ks[-1])
    s = metrics["settings"]
    parts = [f"audit on {ctx.args.dataset} (sigma={s['sigma']:g}, S={s['S']}, T={s['T']}, {s['trials']} chains "
             f"per arm, {s['neighbour']} neighbour, confidence {s['confidence']:g}):"]
    for k in dict.fromkeys((first, last)):
        certs = " / ".join(f"{name} {metrics['certified_eps_by_bound'][name][k]:.4g}" for name in s["bounds"])
        r = metrics["ratios"][k]["paper"]["certified_over_lower"]
        parts.append(f"K={k}: empirical eps >= {metrics['empirical_eps_lower'][k]:.3g} (bound), GDP estimate "
                     f"{metrics['gdp_estimate'][k]['eps']:.3g}, certified {certs} (paper / lower bound = {r:.3g}), "
                     f"accuracy unlearned {metrics['accuracy']['unlearned'][k]['mean']:.3f} / retrained "
                     f"{metrics['accuracy']['retrained'][k]['mean']:.3f};")
    bad = metrics["violations"]
    parts.append("the lower bound never exceeds the certificate;" if not bad
                 else f"LOWER BOUND ABOVE THE CERTIFICATE at K = {bad};")
    parts.append(f"wall-clock {time.perf_counter() - ctx.t0:.1f} s.")
    return " ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
