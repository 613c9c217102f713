"""Empirical audit: how distinguishable are unlearned models from retrained ones, beside the certificate.

For one dataset, noise sigma and S replaced rows (one fixed D'), and a sweep of unlearning steps K:
- (a) ``--trials`` chains learn T PNGD steps on D, then run K unlearning steps on D';
- (b) ``--trials`` chains retrain on D' from scratch for T + K steps: the law the unlearning theorem
  compares with (SPEC 3.1.2; at stationarity the same as T steps).
A membership-style test then tries to tell (a) from (b): the statistic (loss of the removed or of the
replacement rows, projection on the loss-gradient difference, on the mean difference or on an LDA
direction), its orientation and threshold are chosen on one part of the chains, and its true/false
positive rates measured on the rest give, with Clopper-Pearson intervals, a lower bound on eps that
holds with the stated confidence (Jagielski et al. 2020; Nasr et al. 2021). It is shown against the
certified eps of the accountant (K = 0: the learning bound eps_0), with two-sample distances (KS,
Gaussian-fit TV / Renyi / GDP eps) of the chosen statistic on the held-out chains.

    python audit.py --dataset DIGITS                      # defaults: sigma 0.01, S 10, K 0..200, 1000 chains
    python audit.py --dataset DIGITS --plan_only          # the certified eps per K only
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from utils import accountant, bounds, cli, experiments
from utils import audit_stats as st

MODE = "audit"
DEFAULT_SIGMA = 0.01
DEFAULT_S = 10
DEFAULT_K = [0, 1, 2, 5, 10, 20, 50, 100, 200]
DEFAULT_TRIALS = 1000
STATISTICS = ("removed_loss", "replacement_loss", "gradient_direction", "mean_difference", "lda")


# ---------------------------------------------------------------- flags
def level(text):
    """A probability strictly between 0 and 1 (confidence level, fraction of chains)."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number")
    if not 0.0 < x < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must lie strictly between 0 and 1")
    return x


def _override(parser, dest: str, default, help_text: str) -> None:
    """Change a shared flag's default for this script, and say so in its help."""
    for action in parser._actions:
        if action.dest == dest:
            action.default, action.help = default, help_text
            return
    raise KeyError(dest)


def build_parser():
    p = cli.make_parser("Empirical audit: distinguishability of unlearned (learn on D, K steps on D') vs "
                        "retrained (D') chains, beside the certified eps.", family="LMC")
    _override(p, "trials", DEFAULT_TRIALS, f"chains per arm, unlearned and retrained (default {DEFAULT_TRIALS})")
    _override(p, "sigma", DEFAULT_SIGMA, f"noise standard deviation, > 0 (default {DEFAULT_SIGMA}: small, so "
              "that the replaced rows are visible at K = 0 on DIGITS)")
    _override(p, "burn_in", "auto", "learning steps T, or 'auto' (default): within 1%% of the stationary "
              "radius by the contraction bound")
    g = p.add_argument_group("audit.py")
    cli.add(g, "--S", type=cli.int_at_least(1), default=DEFAULT_S,
            help=f"training rows replaced together in D' (default {DEFAULT_S})")
    cli.add(g, "--K", type=cli.int_at_least(0), nargs="+", default=list(DEFAULT_K),
            help=f"unlearning steps to audit, 0 = no unlearning (default {' '.join(map(str, DEFAULT_K))})")
    cli.add(g, "--confidence", type=level, default=0.95,
            help="probability that the empirical eps interval holds (default 0.95)")
    cli.add(g, "--select_fraction", type=level, default=0.5,
            help="share of each arm's chains that choose the statistic and threshold; the rest measure "
                 "the rates (default 0.5)")
    return p


def parse(argv=None):
    """Flags, validated before any data is loaded (--n works with --plan_only)."""
    args = cli.parse(build_parser(), argv, accounting_modes=())
    check_args(args)
    return args


def check_args(args) -> None:
    if args.sigma <= 0:
        raise cli.UsageError(f"--sigma {args.sigma:g} makes every chain identical and eps infinite "
                             "(allowed: sigma > 0)")
    Ks = [int(k) for k in args.K]
    cli.check_distinct("K", Ks)
    args.K = sorted(Ks)
    n_sel = int(args.trials * args.select_fraction)
    if min(n_sel, args.trials - n_sel) < 2:
        raise cli.UsageError(f"--trials {args.trials} with --select_fraction {args.select_fraction:g} leaves "
                             f"{n_sel} and {args.trials - n_sel} chains per part (allowed: at least 2 in each)")


# ---------------------------------------------------------------- plan (accountant only)
def plan(consts, *, Ks, S: int, sigma: float, T: int, trials: int, R: float, bound: str = "paper") -> dict:
    """Certified eps per K (K = 0: learning, eps_0 converted) and the chain-steps the audit runs
    (bound="best": docs/METHOD.md §7; at K = 0 only A's eps_0 applies)."""
    if S >= consts.n:
        raise cli.UsageError(f"--S {S} is not below n={consts.n} (allowed: 1..{consts.n - 1})")
    certified, alphas, certificates = {}, {}, []
    for K in Ks:
        eps, alpha, name = bounds.pngd_eps(bound, Ks=[K], sizes=[S], sigma=sigma, consts=consts)
        certified[str(K)], alphas[str(K)] = eps, alpha
        what = "PNGD learning eps_0, A SPEC 3.1.1" if K == 0 else "PNGD unlearning, A SPEC 3.1.2"
        certificates.append(accountant.certificate(consts=consts, eps=eps, alpha=alpha, K=K, sigma=sigma, R=R,
                                                   bound=what, S=S, T=T, **bounds.fields(bound, name)))
    # each arm: T learning steps, then K_max further steps (the sweep advances incrementally)
    steps = 2 * trials * (T + max(Ks))
    return {"certified_eps": certified, "certified_alpha": alphas, "certificates": certificates,
            "chain_steps": steps}


# ---------------------------------------------------------------- the test
def split(W, fraction: float):
    """(selection part, held-out part) of one arm's chains; chains are i.i.d., so a prefix split is fair."""
    cut = int(W.shape[0] * fraction)
    return W[:cut], W[cut:]


def candidate_scores(A, B, removal, X, y, *, fraction: float) -> dict:
    """Per statistic: (selection unlearned, selection retrained, held-out unlearned, held-out retrained).

    Directions are fitted on the selection part only, so the held-out scores are untouched by the choice.
    On the selection part, fitted directions score each half with the direction of the other half
    (cross-fitting), so an over-fitted direction does not win the choice on its own training chains.
    """
    A_sel, A_out = split(A, fraction)
    B_sel, B_out = split(B, fraction)
    rows = removal.rows
    old, new = (X[rows], y[rows]), (removal.X[rows], removal.y[rows])
    w_ref = np.concatenate([A_sel, B_sel]).mean(axis=0)
    fitted = {"mean_difference": st.mean_difference_direction, "lda": st.lda_direction}
    fixed = {"removed_loss": lambda W: st.point_losses(W, *old).mean(axis=1),
             "replacement_loss": lambda W: st.point_losses(W, *new).mean(axis=1),
             "gradient_direction": lambda W, u=st.loss_gradient_direction(w_ref, *old, *new): st.project(W, u)}
    out = {}
    for name in STATISTICS:
        if name in fixed:
            f = fixed[name]
            out[name] = (f(A_sel), f(B_sel), f(A_out), f(B_out))
        else:
            u = fitted[name](A_sel, B_sel)
            out[name] = (*cross_fitted(fitted[name], A_sel, B_sel), st.project(A_out, u), st.project(B_out, u))
    return out


def cross_fitted(fit, A, B):
    """Scores of A and B where each half is projected on the direction fitted to the other half."""
    ha, hb = A.shape[0] // 2, B.shape[0] // 2
    if min(ha, hb) < 2:     # too few chains to fit twice: plain in-sample scores
        u = fit(A, B)
        return st.project(A, u), st.project(B, u)
    u1, u2 = fit(A[:ha], B[:hb]), fit(A[ha:], B[hb:])
    return (np.concatenate([st.project(A[:ha], u2), st.project(A[ha:], u1)]),
            np.concatenate([st.project(B[:hb], u2), st.project(B[hb:], u1)]))


def audit_one(A, B, removal, X, y, *, fraction: float, delta: float, confidence: float):
    """The membership test at one K, and the two-sample distances of its statistic on the held-out chains."""
    candidates = candidate_scores(A, B, removal, X, y, fraction=fraction)
    result = st.membership_audit(candidates, delta=delta, confidence=confidence)
    _, _, hold_pos, hold_neg = candidates[result.statistic]
    return result, st.two_sample_distances(hold_pos, hold_neg, delta=delta), (hold_pos, hold_neg)


def attack_record(r: st.AuditResult) -> dict:
    return {"statistic": r.statistic, "sign": r.rule.sign, "threshold": r.rule.threshold,
            "tp": r.tp, "n_pos": r.n_pos, "fp": r.fp, "n_neg": r.n_neg, "tpr": r.tpr, "fpr": r.fpr,
            "selection_eps_lower": r.selection}


# ---------------------------------------------------------------- chains
def run_chains(lab, removal, *, Ks, sigma: float, T: int):
    """Yield (K, unlearned, retrained) weights as numpy and as tensors, advancing both arms through the sweep.

    Each K is a resumable stage; the learning runs only when a stage has to be computed.
    """
    task = lab.task(removal.X, removal.y)
    to_tensor = lambda a: lab.torch.as_tensor(a, device=lab.device, dtype=lab.dtype)  # noqa: E731
    state = {"a": None, "b": None, "K": 0}

    def start():
        if state["a"] is None:
            state["a"] = lab.learn(sigma=sigma, T=T)
            state["b"] = lab.learn(sigma=sigma, T=T, data=(removal.X, removal.y), phase="retrain")

    for K in Ks:
        k0 = state["K"]

        def compute():
            start()
            key = ("audit", k0, K)
            a = lab.advance(state["a"], task, steps=K - k0, sigma=sigma, key=key, phase="unlearn",
                            desc=f"unlearn K={K}")
            b = lab.advance(state["b"], task, steps=K - k0, sigma=sigma, key=key, phase="retrain",
                            desc=f"retrain T+{K}")
            return {"unlearned": a.cpu().numpy(), "retrained": b.cpu().numpy()}

        part = lab.stage(f"K{K}", compute)
        state.update(a=to_tensor(part["unlearned"]), b=to_tensor(part["retrained"]), K=K)
        yield K, part["unlearned"], part["retrained"], state["a"], state["b"]


# ---------------------------------------------------------------- main
@cli.guarded
def main(argv=None) -> int:
    args = parse(argv)
    ctx = experiments.start(args, mode=MODE, max_removed=args.S)
    c = ctx.consts
    T = ctx.burn_in(args.sigma)
    Ks = args.K
    the_plan = plan(c, Ks=Ks, S=args.S, sigma=args.sigma, T=T, trials=args.trials, R=args.projection,
                    bound=args.bound)
    settings = {"sigma": args.sigma, "S": args.S, "K": Ks, "T": T, "trials": args.trials,
                "select_fraction": args.select_fraction, "confidence": args.confidence, "delta": c.delta,
                "removal": args.removal, "statistics": list(STATISTICS),
                "retrain_steps": "T + K (the law the unlearning theorem compares with)"}
    ctx.log(f"audit: sigma={args.sigma:g} S={args.S} T={T} K={Ks} trials={args.trials} per arm; "
            f"{the_plan['chain_steps']} chain-steps")
    for K in Ks:
        ctx.log(f"  K={K}: certified eps={the_plan['certified_eps'][str(K)]:.6g} "
                f"(alpha*={the_plan['certified_alpha'][str(K)]:.4g})")
    ctx.open()
    metrics = dict(settings=settings, **the_plan)
    arrays = {"K": np.asarray(Ks, dtype=np.int64),
              "certified_eps": np.asarray([the_plan["certified_eps"][str(K)] for K in Ks])}
    if args.plan_only:
        ctx.finish(metrics, arrays, summary="plan only: certified eps per K (no chains run)")
        return 0

    lab = ctx.lab()
    removal = lab.removal(args.S)
    settings["removed_rows"] = removal.rows.tolist()
    t_stats = 0.0
    rows = {k: [] for k in ("acc_a", "acc_b", "hold_a", "hold_b")}
    lower, ci, point, attack, distances, acc = {}, {}, {}, {}, {}, {"unlearned": {}, "retrained": {}}
    for K, A, B, wa, wb in run_chains(lab, removal, Ks=Ks, sigma=args.sigma, T=T):
        t0 = time.perf_counter()
        result, dist, (hp, hn) = audit_one(A, B, removal, lab.X, lab.y, fraction=args.select_fraction,
                                           delta=c.delta, confidence=args.confidence)
        t_stats += time.perf_counter() - t0
        key = str(K)
        lower[key], ci[key], point[key] = result.eps_lower, [result.eps_lower, result.eps_upper], result.eps_point
        attack[key], distances[key] = attack_record(result), dist
        acc_a, acc_b = lab.accuracy(wa), lab.accuracy(wb)
        acc["unlearned"][key], acc["retrained"][key] = (experiments.summary_stats(acc_a),
                                                        experiments.summary_stats(acc_b))
        for name, v in (("acc_a", acc_a), ("acc_b", acc_b), ("hold_a", hp), ("hold_b", hn)):
            rows[name].append(v)
        cert = the_plan["certified_eps"][key]
        ctx.log(f"  K={K}: empirical eps >= {result.eps_lower:.3g} (interval [{result.eps_lower:.3g}, "
                f"{result.eps_upper:.3g}], {result.statistic}: TPR {result.tpr:.3f} FPR {result.fpr:.3f}), "
                f"certified {cert:.4g}; KS {dist['ks']:.3f}")
        if result.eps_lower > cert:
            ctx.warn(f"K={K}: the empirical lower bound {result.eps_lower:.4g} exceeds the certified eps "
                     f"{cert:.4g}: a bug in the accountant, the sampler or the audit, or a "
                     f"{1 - args.confidence:.2g}-probability event; please report it")
    metrics.update(empirical_eps_lower=lower, empirical_eps_ci=ci, empirical_eps_point=point,
                   confidence=args.confidence, attack=attack, distances=distances, accuracy=acc,
                   violations=[K for K in Ks if lower[str(K)] > the_plan["certified_eps"][str(K)]])
    lab.timings["statistics"] = t_stats
    arrays.update(empirical_eps_lower=np.asarray([lower[str(K)] for K in Ks]),
                  empirical_eps_upper=np.asarray([ci[str(K)][1] for K in Ks]),
                  empirical_eps_point=np.asarray([point[str(K)] for K in Ks]), acc_unlearned=np.stack(rows["acc_a"]),
                  acc_retrained=np.stack(rows["acc_b"]), holdout_scores_unlearned=np.stack(rows["hold_a"]),
                  holdout_scores_retrained=np.stack(rows["hold_b"]), removed_rows=removal.rows)
    ctx.finish(metrics, arrays, summary=summary(metrics, Ks, ctx))
    return 0


def summary(metrics, Ks, ctx) -> str:
    first, last = str(Ks[0]), str(Ks[-1])
    s = metrics["settings"]
    parts = [f"audit on {ctx.args.dataset} (sigma={s['sigma']:g}, S={s['S']}, T={s['T']}, {s['trials']} chains "
             f"per arm, confidence {s['confidence']:g}):"]
    for k in dict.fromkeys((first, last)):
        parts.append(f"K={k}: empirical eps >= {metrics['empirical_eps_lower'][k]:.3g} vs certified "
                     f"{metrics['certified_eps'][k]:.4g}, accuracy unlearned "
                     f"{metrics['accuracy']['unlearned'][k]['mean']:.3f} / retrained "
                     f"{metrics['accuracy']['retrained'][k]['mean']:.3f};")
    bad = metrics["violations"]
    parts.append("the lower bound never exceeds the certificate;" if not bad
                 else f"LOWER BOUND ABOVE THE CERTIFICATE at K = {bad};")
    parts.append(f"wall-clock {time.perf_counter() - ctx.t0:.1f} s.")
    return " ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
