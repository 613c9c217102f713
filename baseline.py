"""Paper A's comparisons: Langevin unlearning (PNGD) vs retraining vs Descent-to-Delete (D2D).

Three modes (run folder ``result/LMC/<DATASET>/<mode>/``):
- default ``baseline`` (paper A Fig 3a): unlearn S = 1 point with K in {1, 2, 5} noisy steps at the
  smallest sigma that certifies each eps, against retraining on D' and against D2D (K noiseless
  gradient steps plus output noise sigma_1(K, eps)); the noiseless optimum as reference.
- ``--sequential2 1`` (Fig 3b): 100 points removed in requests of S in {5, 10, 20} at sigma 0.03 and
  eps 1 per request, against sequential D2D with I-factors {1, 1.5, 2}.
- ``--find_k 1``: the table of the smallest sigma per (eps, K); no chains (works with ``--n``).
- ``--model mlp`` (run folder ``result/NET/<DATASET>/<mode>/``): a one-hidden-layer network unlearned by noisy
  fine-tuning (arXiv 2506.06985, docs/METHOD.md §13) at the smallest sigma certifying each eps, against the
  certifying run (the network retrained on D', then the same noisy fine-tuning) and against the logistic
  model's Langevin unlearning at the same eps (K from --K, default 5); ``--find_k 1`` its sigma table.

    python baseline.py --dataset DIGITS --burn_in auto            # the quick demo
    python baseline.py --lam 1e-6 --dataset MNIST --sequential2 1
    python baseline.py --find_k 1 --dataset MNIST --n 11982
    python baseline.py --model mlp --dataset FASHION --burn_in auto
"""
from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np

from utils import accountant, bounds, cli, d2d, experiments, model_kinds, network
from utils.experiments import sigma_table  # a name of this module: bench/fig3a_end_to_end.py times it here
from utils.results import json_key

MODES = ("baseline", "sequential2", "find_k")
LMC_BOUND = {"paper": "PNGD unlearning, docs/METHOD.md §3.2",
             "best": "PNGD unlearning: the smaller of Gaussian DP (exact conversion) and, per Renyi order, the "
                     "smallest of A-LSI, B-loose, B-tight at b = n, improved conversion (docs/METHOD.md §7)",
             "gdp": "PNGD unlearning: Gaussian DP by shifted interpolation, exact conversion (docs/METHOD.md §12)"}
DEFAULT_K = [1, 2, 5]
DEFAULT_S = {"baseline": [1], "find_k": [1], "sequential2": [5, 10, 20]}
DEFAULT_SEQUENTIAL_EPS = 1.0
DEFAULT_NUM_REMOVE = 100
DEFAULT_IFAC = [1.0, 1.5, 2.0]
# Flags that only some modes read: given elsewhere they are an error, not silently ignored.
MODE_ONLY = {"K": ("baseline", "find_k"), "num_remove": ("sequential2",), "ifac": ("sequential2",),
             "mironov": ("sequential2",), "sigma": ("sequential2",)}   # the other modes choose sigma per (K, eps)
NETWORK_K = [5]             # --model mlp: the logistic model's Langevin steps it is compared with
NETWORK_TRIALS = 20         # --model mlp: chains per arm unless --trials (a network chain costs ~100 linear ones)


# ---------------------------------------------------------------- flags
def build_parser(multiclass: bool):
    desc = ("Paper A " + ("(multiclass) " if multiclass else "") + "Fig 3a: Langevin unlearning vs retraining "
            "vs D2D; --sequential2 1: Fig 3b; --find_k 1: smallest sigma per (eps, K).")
    p = cli.make_parser(desc, family="LMC", multiclass=multiclass)
    g = p.add_argument_group("baseline.py")
    cli.add(g, "--sequential2", type=cli.switch_or_one, default=False, metavar="{0,1}",
            help="1: sequential unlearning of --num_remove points in requests of --S (paper A Fig 3b)")
    cli.add(g, "--find_k", type=cli.switch_or_one, default=False, metavar="{0,1}",
            help="1: print and save the smallest sigma per --eps and --K (no chains; works with --n)")
    cli.add(g, "--K", type=cli.STEPS, nargs="+", default=None,
            help="unlearning steps K (default 1 2 5; default mode and --find_k)")
    cli.add(g, "--eps", type=cli.EPS, nargs="+", default=None,
            help="target epsilon(s): default 0.05 0.1 0.5 1 2 5; --sequential2 takes one value per request "
                 "(default 1)")
    cli.add(g, "--S", type=cli.int_at_least(1), nargs="+", default=None,
            help="points removed per request: one value in the default mode and --find_k (default 1); "
                 "request sizes for --sequential2 (default 5 10 20)")
    cli.add(g, "--num_remove", type=cli.int_at_least(1), default=None,
            help="--sequential2: points removed in total (default 100)")
    cli.add(g, "--ifac", type=cli.ITER_FACTOR, nargs="+", default=None,
            help="--sequential2: D2D I-factors f, K_i = int(f I_min) + term2(i) (default 1 1.5 2)")
    cli.add(g, "--mironov", action="store_true",
            help="--sequential2: the Mironov form of the sequential RDP recursion from the authors' notebook "
                 "(one direction of the divergence only, so not a certificate; default: the paper form)")
    cli.add_model_flags(p)
    return p


def mode_of(args) -> str:
    if args.sequential2 and args.find_k:
        raise cli.UsageError("--sequential2 1 and --find_k 1 are different modes (allowed: at most one of them)")
    return "sequential2" if args.sequential2 else "find_k" if args.find_k else "baseline"


def spell_mode(mode: str) -> str:
    """A mode as the user chooses it: --sequential2 1, --find_k 1, or no mode flag (Fig 3a)."""
    return "the default mode (no mode flag)" if mode == "baseline" else f"--{mode} 1"


def check_args(args, *, multiclass: bool) -> str:
    """Mode, mode defaults and every check that needs no data (cli.parse_checked freezes the flags after)."""
    mode = mode_of(args)
    cli.check_mode_flags(args.given_flags, mode, MODE_ONLY, spell=spell_mode)
    cli.check_dataset_kind(args, multiclass=multiclass, scripts=("baseline.py", "baseline_multiclass.py"))
    cli.check_model_flags(args)
    if model_kinds.is_network(args):
        if mode == "sequential2":
            raise cli.UsageError("--sequential2 1 is for the linear models (allowed with --model mlp: the default "
                                 "mode or --find_k 1)")
        args.family = "NET"   # result/NET/<dataset>/<mode>/: the networks' runs apart from paper A's
        if "trials" not in args.given_flags:
            args.trials = NETWORK_TRIALS
        args.K = args.K or list(NETWORK_K)
    args.S = args.S or list(DEFAULT_S[mode])
    args.K = args.K or list(DEFAULT_K)
    if mode == "sequential2":
        args.eps = args.eps or [DEFAULT_SEQUENTIAL_EPS]
        if len(args.eps) != 1:
            raise cli.UsageError(f"--eps {' '.join(map(str, args.eps))}: --sequential2 takes one eps per request "
                                 "(allowed: a single value)")
        if args.sigma <= 0:
            raise cli.UsageError(f"--sigma {args.sigma:g} gives no privacy (allowed: sigma > 0)")
        args.num_remove = args.num_remove or DEFAULT_NUM_REMOVE
        args.ifac = args.ifac or list(DEFAULT_IFAC)
    else:
        args.eps = args.eps or list(cli.PAPER_EPS)
        if len(args.S) != 1:
            raise cli.UsageError(f"--S {' '.join(map(str, args.S))}: the {mode} mode removes one batch "
                                 "(allowed: a single value)")
    for flag in ("K", "eps", "S", "ifac"):
        cli.check_distinct(flag, getattr(args, flag) or [])
    return mode


def check_S(S: int, n: int) -> None:
    if S >= n:
        raise cli.UsageError(f"--S {S} is not below n={n} (allowed: 1..{n - 1})")


# ---------------------------------------------------------------- accounting (pure)
def lmc_certificate(c, row, *, S: int, R: float, **extra) -> dict:
    """The certificate of one sigma_table row: K unlearning steps of S points at its sigma (docs/METHOD.md §3.2)."""
    bound = extra.pop("bound_mode", "paper")
    return accountant.certificate(consts=c, eps=row["eps_achieved"], alpha=row["alpha"], K=row["K"],
                                  sigma=row["sigma"], R=R, bound=LMC_BOUND[bound], S=S,
                                  eps_target=row["epsilon"], **extra,
                                  **bounds.fields(bound, row["bound_name"], row.get("mu")))


def sequential_plan(consts, *, S: int, num_requests: int, sigma: float, eps: float, form: str,
                    bound: str = "paper") -> dict:
    """Greedy K list of one stream of S-point requests and the guarantee after each request (docs/METHOD.md §3.3;
    docs/METHOD.md §7 with bound="best": each bound's own recursion over the same K history)."""
    Ks = bounds.pngd_K_list(bound, num_requests=num_requests, S=S, sigma=sigma, eps_target=eps, consts=consts,
                            form=form)
    done = [bounds.pngd_eps(bound, Ks=Ks[:s + 1], sizes=[S] * (s + 1), sigma=sigma, consts=consts, form=form)
            for s in range(len(Ks))]
    plan = {"K": Ks, "eps": [e for e, _, _ in done], "alpha": [a for _, a, _ in done],
            "bound_name": [name for _, _, name in done]}
    if bound != "paper":                    # best and gdp certify Gaussian DP after every request
        plan["mu"] = [bounds.gdp_mu(bound, Ks=Ks[:s + 1], sizes=[S] * (s + 1), sigma=sigma, consts=consts)
                      for s in range(len(Ks))]
    return plan


def accumulated(Ks) -> list[int]:
    return [int(x) for x in np.cumsum(Ks)]


# ---------------------------------------------------------------- helpers shared by the modes
def stats(acc) -> dict:
    return experiments.summary_stats(acc)


def log_table(ctx, header: str, rows: list[str]) -> None:
    ctx.log(header)
    for row in rows:
        ctx.log("  " + row)


# ---------------------------------------------------------------- Fig 3a
def one_removal_table(ctx):
    """(S, constants, the smallest-sigma table over --K x --eps): every one-removal mode plans from it."""
    S = ctx.args.S[0]
    check_S(S, ctx.consts.n)
    return S, ctx.consts, sigma_table(ctx.consts, Ks=ctx.args.K, eps_list=ctx.args.eps, S=S, bound=ctx.args.bound)


def plan_baseline(ctx) -> experiments.Plan:
    """Fig 3a's plan: per (K, eps) the smallest sigma, its burn-in and D2D's sigma_1; no chains."""
    args = ctx.args
    S, c, plan = one_removal_table(ctx)
    for row in plan:
        row["d2d_sigma_1"] = d2d.output_sigma(c, K=row["K"], eps=row["epsilon"])
        row["T"] = ctx.burn_in(row["sigma"])
    T0 = ctx.burn_in(0.0)
    order = bounds.order_header(args.bound)     # alpha* (paper), or mu where Gaussian DP gave eps
    log_table(ctx, f"plan (S={S}):    K      eps      sigma {order:>10}        T   D2D sigma_1",
              [f"{r['K']:>19} {r['epsilon']:>8g} {r['sigma']:>10.6g} {bounds.order_or_mu(r['alpha'], r.get('mu')):>9} "
               f"{r['T']:>8} {r['d2d_sigma_1']:>13.6g}" for r in plan])
    work = ctx.workload()   # run_baseline: one D'; per (K, eps) learn (shared by equal sigmas), unlearn, retrain
    work.dataset()
    for r in plan:
        sk = json_key(r["sigma"])
        work.learn(args.trials, r["T"], sigma=r["sigma"], key=("D", sk))
        work.advance(args.trials, r["K"], sigma=r["sigma"])
        work.learn(args.trials, r["T"], sigma=r["sigma"], new_data=True, key=("D'", sk))
        work.evaluate(args.trials, 3)
        work.save(0)
    d2d.one_shot_work(work, args.trials, T=T0, noise={K: [r for r in plan if r["K"] == K] for K in args.K})
    work.learn(1, T0, sigma=0.0)   # the noiseless reference
    work.evaluate(1)
    work.save(0)
    total = work.chain_steps
    ctx.log(f"total chain-steps: {total:,} ({args.trials} trials; D2D and the noiseless reference run one chain)")
    metrics = {"S": S, "K_values": list(args.K), "eps_values": list(args.eps), "T_noiseless": T0,
               "total_chain_steps": total, "settings": {}, "certificates": certificates_3a(c, plan, S, args)}
    for r in plan:
        metrics["settings"].setdefault(json_key(r["K"]), {})[json_key(r["epsilon"])] = dict(r)
    arrays = {"K": np.array(args.K), "eps": np.array(args.eps, dtype=float),
              "sigma": grid(args, plan, "sigma"), "alpha": grid(args, plan, "alpha"),
              "d2d_sigma_1": grid(args, plan, "d2d_sigma_1")}
    return experiments.Plan(metrics, arrays, work=work, tables=(S, plan, T0),
                            summary=f"plan only: {len(plan)} settings, {total:,} chain-steps")


def run_baseline(ctx, p: experiments.Plan):
    """Fig 3a's chains: Langevin unlearning, retraining and D2D per (K, eps), one resumable stage each."""
    args, (S, plan, T0) = ctx.args, p.tables
    metrics, arrays = p.metrics, p.arrays
    lab = ctx.lab()
    removal = lab.removal(S)
    task = lab.task(removal.X, removal.y)
    lmc = {(r["K"], json_key(r["epsilon"])): lmc_setting(lab, r, S=S, removal=removal, task=task) for r in plan}
    one_shot = d2d_one_shot(lab, plan, task=task, T=T0)
    for r in plan:
        cell, key = metrics["settings"][json_key(r["K"])][json_key(r["epsilon"])], (r["K"], json_key(r["epsilon"]))
        for what in ("unlearn", "retrain", "learn"):
            cell["lmc_" + what] = stats(lmc[key][what])
        cell["d2d"] = stats(one_shot[f"K{r['K']}_eps{key[1]}"])
    for what in ("unlearn", "retrain", "learn"):
        arrays["lmc_" + what] = grid(args, plan, None, lambda r: lmc[(r["K"], json_key(r["epsilon"]))][what])
    arrays["d2d"] = grid(args, plan, None, lambda r: one_shot[f"K{r['K']}_eps{json_key(r['epsilon'])}"])
    arrays["noiseless"], arrays["d2d_learn"] = one_shot["noiseless"], one_shot["learn"]
    arrays["removed_rows"] = removal.rows
    metrics["noiseless_accuracy"] = float(one_shot["noiseless"][0])
    metrics["d2d_learn_accuracy"] = float(one_shot["learn"][0])
    return metrics, arrays, summary_3a(ctx, metrics)


def grid(args, plan, field, value=None) -> np.ndarray:
    """(len K, len eps[, trials]) array of one plan field or of value(row)."""
    cells = [value(r) if value else r[field] for r in plan]
    return np.array(cells, dtype=float).reshape((len(args.K), len(args.eps)) + np.shape(cells[0]))


def certificates_3a(c, plan, S, args) -> list[dict]:
    out = []
    for r in plan:
        out.append(lmc_certificate(c, r, S=S, R=args.projection, method="langevin", T=r["T"], bound_mode=args.bound))
        out.append(d2d.one_shot_certificate(c, eps=r["epsilon"], K=r["K"], sigma_1=r["d2d_sigma_1"], S=S))
    return out


def lmc_setting(lab, row, *, S, removal, task) -> dict:
    """Learn T steps on D, unlearn K steps on D', retrain T steps on D' (one resumable piece)."""
    K, sigma, T, ek = row["K"], row["sigma"], row["T"], json_key(row["epsilon"])

    def compute():
        w = lab.learn_on_D(sigma=sigma, T=T)
        w_u = lab.advance(w, task, steps=K, sigma=sigma, key=("S", S, "K", K, "eps", ek), phase="unlearn",
                          desc=f"unlearn K={K} eps={ek}")
        w_r = lab.learn(sigma=sigma, T=T, data=(removal.X, removal.y), phase="retrain", key=("sigma", json_key(sigma)))
        return {"learn": lab.accuracy(w), "unlearn": lab.accuracy(w_u), "retrain": lab.accuracy(w_r)}

    return lab.stage(f"lmc_K{K}_eps{ek}", compute)


def d2d_one_shot(lab, plan, *, task, T) -> dict:
    """D2D (docs/METHOD.md §8): one noiseless GD chain, K steps on D', w + N(0, sigma_1^2) per trial; and the
    noiseless reference (eta = 1/L). One resumable piece."""
    noise = {}
    for r in plan:
        noise.setdefault(r["K"], {})[json_key(r["epsilon"])] = r["d2d_sigma_1"]

    def compute():
        out = d2d.one_shot(lab, task, T=T, noise=noise)
        out["noiseless"] = lab.accuracy(lab.learn(sigma=0.0, T=T, key=("noiseless",), C=1, phase="noiseless"))
        return out

    return lab.stage("d2d", compute)


def summary_3a(ctx, metrics) -> str:
    parts = []
    for kk, cells in metrics["settings"].items():
        eps = " ".join(cells)
        lu = " ".join(f"{c['lmc_unlearn']['mean']:.3f}" for c in cells.values())
        rt = " ".join(f"{c['lmc_retrain']['mean']:.3f}" for c in cells.values())
        dd = " ".join(f"{c['d2d']['mean']:.3f}" for c in cells.values())
        parts.append(f"K={kk}: Langevin unlearning [{lu}], retraining [{rt}], D2D [{dd}] at eps [{eps}]")
    return (f"Fig 3a on {ctx.args.dataset} (S={metrics['S']}, {ctx.args.trials} trials), mean test accuracy: "
            + "; ".join(parts) + f"; noiseless {metrics['noiseless_accuracy']:.3f}. "
            f"Wall-clock {time.perf_counter() - ctx.t0:.1f} s.")


# ---------------------------------------------------------------- Fig 3b
def fit_request_sizes(ctx, args, n: int) -> list[int]:
    """The request sizes this dataset can take; a default that cannot is dropped with a note."""
    if args.num_remove >= n:
        raise cli.UsageError(f"--num_remove {args.num_remove} is not below n={n} (allowed: 1..{n - 1})")
    keep = []
    for S in args.S:
        problem = None if args.num_remove % S == 0 else f"S={S} does not divide --num_remove {args.num_remove}"
        if problem is None:
            keep.append(S)
        elif "S" in args.given:
            raise cli.UsageError(f"--S {S}: {problem} (allowed: divisors of --num_remove)")
        else:
            ctx.log(f"note: default request size dropped: {problem}")
    if not keep:
        raise cli.UsageError(f"no default request size divides --num_remove {args.num_remove} (give --S)")
    return keep


def plan_sequential2(ctx) -> experiments.Plan:
    """Fig 3b's plan: the K list of every request size and D2D I-factor; no chains."""
    args, c = ctx.args, ctx.consts
    sizes = fit_request_sizes(ctx, args, c.n)
    if c.d is None:
        raise cli.UsageError("--sequential2 with --n needs --dim (D2D's I_min and term2 use d)")
    eps, sigma, form = args.eps[0], args.sigma, "mironov" if args.mironov else "paper"
    if args.mironov and args.bound == "paper":
        ctx.warn(MIRONOV_ONE_SIDED)
    lmc = {S: sequential_plan(c, S=S, num_requests=args.num_remove // S, sigma=sigma, eps=eps, form=form,
                            bound=args.bound)
           for S in sizes}
    streams = {f: d2d.sequential_plan(c, f=f, num_requests=args.num_remove, eps=eps) for f in args.ifac}
    T, T0 = ctx.burn_in(sigma), ctx.burn_in(0.0)
    how = f"{form} recursion" if args.bound == "paper" else "best bound"
    log_table(ctx, f"plan (sigma={sigma:g}, eps={eps:g} per request, {how}): steps per request",
              [f"Langevin S={S}: {p['K']} (sum {sum(p['K'])})" for S, p in lmc.items()]
              + [f"D2D f={f:g}: {p['K'][:3]}...{p['K'][-1]} (sum {sum(p['K'])})" for f, p in streams.items()])
    work = ctx.workload()   # run_sequential2: learn once; per S a stream and its retraining; D2D's streams
    work.learn(args.trials, T, sigma=sigma, key=("D", json_key(sigma)))
    work.evaluate(args.trials)
    for S, p in lmc.items():
        for K in p["K"]:
            work.dataset()
            work.advance(args.trials, K, sigma=sigma)
            work.evaluate(args.trials)
            work.save(args.trials)
        work.learn(args.trials, T, sigma=sigma, new_data=True)
        work.evaluate(args.trials)
        work.save(0)
    work.learn(1, T0, sigma=0.0)
    work.evaluate(1)
    for p in streams.values():
        d2d.sequential_work(work, args.trials, Ks=p["K"])
        work.save(0)
    total = work.chain_steps
    ctx.log(f"total chain-steps: {total:,} ({args.trials} trials; D2D learns one chain, and its first request continues it)")
    metrics = plan_metrics_3b(args, lmc, streams, sizes=sizes, T=T, T0=T0, form=form, total=total)
    metrics["certificates"] = certificates_3b(c, args, lmc, streams, form, T=T)
    arrays = {f"lmc_k_list_S{S}": np.array(p["K"]) for S, p in lmc.items()}
    arrays.update({f"d2d_k_list_f{json_key(f)}": np.array(p["K"]) for f, p in streams.items()})
    return experiments.Plan(metrics, arrays, work=work, tables=(lmc, streams, T, T0),
                            summary=f"plan only: {total:,} chain-steps")


def run_sequential2(ctx, planned: experiments.Plan):
    """Fig 3b's chains: each request stream, Langevin and D2D, resumable request by request."""
    args, (lmc, streams, T, T0) = ctx.args, planned.tables
    metrics, arrays, sigma = planned.metrics, planned.arrays, args.sigma
    lab = ctx.lab()
    w = lab.learn_on_D(sigma=sigma, T=T)
    arrays["lmc_learn"] = lab.accuracy(w)
    metrics["lmc_learn"] = stats(arrays["lmc_learn"])
    for S, p in lmc.items():
        out = lab.stage(f"lmc_S{S}", lambda: lmc_stream(lab, w, S=S, Ks=p["K"], sigma=sigma, T=T))
        arrays[f"lmc_acc_S{S}"], arrays[f"lmc_retrain_S{S}"] = out["accuracy"], out["retrain"]
        metrics["lmc_accuracy_per_request"][json_key(S)] = out["accuracy"].mean(axis=1).tolist()
        metrics["lmc_final"][json_key(S)] = stats(out["accuracy"][-1])
        metrics["lmc_retrain"][json_key(S)] = stats(out["retrain"])
    w_d = d2d.learn(lab, T0)
    metrics["d2d_learn_accuracy"] = float(lab.accuracy(w_d)[0])
    for f, p in streams.items():
        out = lab.stage(f"d2d_f{json_key(f)}", lambda: d2d.sequential_stream(lab, w_d, f=f, plan=p))
        arrays[f"d2d_acc_f{json_key(f)}"] = out["accuracy"]
        metrics["d2d_accuracy_per_request"][json_key(f)] = out["accuracy"].mean(axis=1).tolist()
        metrics["d2d_final"][json_key(f)] = stats(out["accuracy"][-1])
    return metrics, arrays, summary_3b(ctx, metrics)


def plan_metrics_3b(args, lmc, streams, *, sizes, T, T0, form, total) -> dict:
    return {
        "sigma": args.sigma, "epsilon": args.eps[0], "num_remove": args.num_remove, "S_values": sizes,
        "ifac_values": list(args.ifac), "form": form, "T": T, "T_d2d": T0, "total_chain_steps": total,
        "lmc_k_lists": {json_key(S): p["K"] for S, p in lmc.items()},
        "lmc_removed_points": {json_key(S): [S * (s + 1) for s in range(len(p["K"]))] for S, p in lmc.items()},
        "lmc_accumulated_steps": {json_key(S): accumulated(p["K"]) for S, p in lmc.items()},
        "lmc_eps_per_request": {json_key(S): p["eps"] for S, p in lmc.items()},
        "d2d_k_lists": {json_key(f): p["K"] for f, p in streams.items()},
        "d2d_accumulated_steps": {json_key(f): accumulated(p["K"]) for f, p in streams.items()},
        "d2d_sigma_2": {json_key(f): p["sigma_2"] for f, p in streams.items()},
        "lmc_accuracy_per_request": {}, "lmc_final": {}, "lmc_retrain": {},
        "d2d_accuracy_per_request": {}, "d2d_final": {},
    }


# Mironov's weak triangle inequality (arXiv 1702.07476, Prop. 11) is not symmetric in its two terms: with the
# factor on the previous request's term it bounds D(unlearned || retrained) only; the reverse direction needs
# the factor on the other term, so the one recursion does not bound both (the papers' form does).
MIRONOV_ONE_SIDED = ("--mironov: the Mironov form of the sequential recursion bounds the Renyi divergence in one "
                     "direction only (unlearned || retrained); its K lists reproduce the authors' notebook check, "
                     "and its eps is not a two-sided unlearning certificate (the default paper form and --bound best "
                     "are)")


def certificates_3b(c, args, lmc, streams, form, *, T) -> list[dict]:
    what = ((f"PNGD sequential unlearning ({form} form), docs/METHOD.md §3.3"
             + (f" [one direction only, not a certificate: {MIRONOV_ONE_SIDED}]" if form == "mironov" else ""))
            if args.bound == "paper" else
            "PNGD sequential unlearning: per request the smaller of Gaussian DP (exact conversion) and, per Renyi "
            "order, the smallest of A-LSI (two-sided Mironov form), B-loose, B-tight at b = n, each over its own "
            "recursion, improved conversion (docs/METHOD.md §7)" if args.bound == "best" else
            "PNGD sequential unlearning: Gaussian DP by shifted interpolation over the request history, exact "
            "conversion (docs/METHOD.md §12)")
    out = [accountant.certificate(consts=c, eps=p["eps"], alpha=p["alpha"], K=p["K"], sigma=args.sigma,
                                  R=args.projection, bound=what, method="langevin", S=S, eps_target=args.eps[0],
                                  T=T, **bounds.stream_fields(args.bound, p["bound_name"], p.get("mu")))
           for S, p in lmc.items()]
    out += [d2d.sequential_certificate(c, eps=args.eps[0], plan=p, f=f) for f, p in streams.items()]
    return out


def lmc_stream(lab, w, *, S, Ks, sigma, T) -> dict:
    """Requests of S new rows, K_s noisy steps each, continuing the chains; then retrain on the last D'.
    Resumable request by request: the chains and accuracies after each request are checkpointed."""
    done, saved, save = lab.stream_checkpoint(f"lmc_S{S}_requests")
    accs = list(saved["accuracy"]) if saved is not None else []
    if saved is not None:
        w = lab.local(saved["w"])   # this process's share of the saved chains
    stream = lab.removal_stream([S] * len(Ks), key=("removal", "S", S))
    for s, (removal, K) in enumerate(zip(stream, Ks)):
        if s < done:
            continue  # the stream is still drawn, so later requests replace the same rows
        w = lab.advance(w, lab.task(removal.X, removal.y), steps=K, sigma=sigma, key=("S", S, "request", s + 1),
                        phase="unlearn", desc=f"unlearn S={S} request {s + 1}/{len(Ks)}")
        accs.append(lab.accuracy(w))
        save(s + 1, {"w": lab.gather(w).cpu().numpy(), "accuracy": np.stack(accs)})
    w_r = lab.learn(sigma=sigma, T=T, data=(removal.X, removal.y), phase="retrain", key=("sigma", json_key(sigma)))
    return {"accuracy": np.stack(accs), "retrain": lab.accuracy(w_r), "replaced": removal.replaced}


def summary_3b(ctx, metrics) -> str:
    lu = "; ".join(f"S={S}: {sum(metrics['lmc_k_lists'][S])} steps, final {metrics['lmc_final'][S]['mean']:.3f} "
                   f"(retraining {metrics['lmc_retrain'][S]['mean']:.3f})" for S in metrics["lmc_k_lists"])
    dd = "; ".join(f"f={f}: {sum(metrics['d2d_k_lists'][f])} steps, final {metrics['d2d_final'][f]['mean']:.3f}"
                   for f in metrics["d2d_k_lists"])
    return (f"Fig 3b on {ctx.args.dataset} ({metrics['num_remove']} points, sigma={metrics['sigma']:g}, "
            f"eps={metrics['epsilon']:g} per request, {ctx.args.trials} trials): Langevin unlearning {lu}; D2D {dd}; "
            f"accuracy after learning {metrics['lmc_learn']['mean']:.3f}. "
            f"Wall-clock {time.perf_counter() - ctx.t0:.1f} s.")


# ---------------------------------------------------------------- --find_k
def plan_find_k(ctx) -> experiments.Plan:
    """--find_k: the smallest-sigma table is the result (no chains)."""
    args = ctx.args
    S, c, table = one_removal_table(ctx)
    order = bounds.order_header(args.bound)
    log_table(ctx, f"smallest sigma (S={S}):   K      eps         sigma {order:>10}",
              [f"{r['K']:>24} {r['epsilon']:>8g} {r['sigma']:>13.8g} "
               f"{bounds.order_or_mu(r['alpha'], r.get('mu'), '.6g'):>10}" for r in table])
    metrics = {"S": S, "K_values": list(args.K), "eps_values": list(args.eps),
               "sigma_table": [{k: r[k] for k in ("K", "epsilon", "sigma", "alpha")} for r in table],
               "certificates": [lmc_certificate(c, r, S=S, R=args.projection, bound_mode=args.bound) for r in table]}
    arrays = {"K": np.array(args.K), "eps": np.array(args.eps, dtype=float),
              "sigma": grid(args, table, "sigma"), "alpha": grid(args, table, "alpha")}
    return experiments.Plan(metrics, arrays, summary=f"smallest sigma for {len(table)} (K, eps) pairs on "
                                                     f"{experiments.describe_data(args, c)} (n={c.n}, L={c.L:.6g}, m={c.m:.6g}, "
                                                     f"M={c.M:g}, delta={c.delta:.4g})")


# ---------------------------------------------------------------- --model mlp (docs/METHOD.md §13)
def network_rows(ctx) -> tuple[network.Recipe, object, int, list[dict]]:
    """(recipe, fine-tuning constants, noisy steps T, per eps the smallest sigma certifying it after T steps)."""
    args, c = ctx.args, ctx.consts
    recipe = network.Recipe.from_args(args)
    fc = recipe.constants(c.delta)
    T = recipe.steps(fc, c.n)
    rows = []
    for eps in args.eps:
        sigma = bounds.finetune_smallest_sigma(args.bound, T=T, eps_target=eps, fc=fc)
        achieved, alpha, name = bounds.finetune_eps(args.bound, T=T, sigma=sigma, fc=fc)
        rows.append({"epsilon": float(eps), "T": T, "sigma": sigma, "alpha": alpha, "eps_achieved": achieved,
                     "bound_name": name})
    return recipe, fc, T, rows


def network_certificates(fc, rows, *, bound: str, S: int) -> list[dict]:
    what = ("noisy fine-tuning, gradient clipping (privacy amplification by iteration), docs/METHOD.md §13.2"
            if fc.variant == "gradient" else
            "noisy fine-tuning, model clipping (hockey-stick contraction), docs/METHOD.md §13.3")
    return [accountant.finetune_certificate(fc=fc, eps=r["eps_achieved"], alpha=r["alpha"], T=r["T"], sigma=r["sigma"],
                                            eps_target=r["epsilon"], bound=what, method="noisy_finetune", S=S,
                                            **bounds.fields(bound, r["bound_name"])) for r in rows]


def plan_network(ctx) -> experiments.Plan:
    """--model mlp: per eps the smallest sigma for the noisy steps, and the logistic model's Fig 3a cells at the
    same eps (K from --K); no chains."""
    args = ctx.args
    S, c, lin = one_removal_table(ctx)
    recipe, fc, T, rows = network_rows(ctx)
    epoch = recipe.epoch(c.n)
    for r in lin:
        r["T"] = ctx.burn_in(r["sigma"])
    ctx.log(recipe.describe())
    ctx.log("network certificates (metrics.json): the unlearned chains are (eps, delta)-indistinguishable from the "
            "certifying run (the network trained on D', clipped and fine-tuned by the same noisy steps), for any "
            "number of removed rows (docs/METHOD.md §13.1)")
    log_table(ctx, f"plan (S={S}): network, T={T} noisy updates:    eps      sigma    alpha*",
              [f"{r['epsilon']:>43g} {r['sigma']:>10.6g} {r['alpha']:>9.4g}" for r in rows])
    log_table(ctx, "logistic model (Langevin unlearning):    K      eps      sigma        T",
              [f"{r['K']:>40} {r['epsilon']:>8g} {r['sigma']:>10.6g} {r['T']:>8}" for r in lin])
    per_eps = T + recipe.post_epochs * epoch
    updates = args.trials * (2 * recipe.learn_epochs * epoch + 2 * len(rows) * per_eps)
    linear = args.trials * sum(2 * r["T"] + r["K"] for r in lin)
    ctx.log(f"total: {updates:,} network chain-updates and {linear:,} linear chain-steps ({args.trials} chains); "
            "--plan_only gives no time estimate for network runs")
    metrics = {"model": "mlp", "recipe": dataclasses.asdict(recipe), "S": S, "eps_values": list(args.eps),
               "K_values": list(args.K), "noisy_steps": T, "updates_per_epoch": epoch,
               "network_chain_updates": updates, "total_chain_steps": linear,
               "settings": {json_key(r["epsilon"]): dict(r) for r in rows},
               "logistic": {}, "certificates": network_certificates(fc, rows, bound=args.bound, S=S)
               + [lmc_certificate(c, r, S=S, R=args.projection, method="langevin", T=r["T"], bound_mode=args.bound)
                  for r in lin]}
    for r in lin:
        metrics["logistic"].setdefault(json_key(r["K"]), {})[json_key(r["epsilon"])] = dict(r)
    arrays = {"eps": np.array(args.eps, dtype=float), "sigma": np.array([r["sigma"] for r in rows])}
    return experiments.Plan(metrics, arrays, chain_steps=updates + linear, tables=(S, recipe, T, rows, lin),
                            summary=f"plan only: {len(rows)} eps, {T} noisy updates each")


def run_network(ctx, p: experiments.Plan):
    """--model mlp's chains: learn on D and on D' (one resumable piece), then per eps unlearn both (the
    unlearned and the certifying run, one piece each), then the logistic model's cells."""
    from utils import finetune

    args, (S, recipe, T, rows, lin) = ctx.args, p.tables
    metrics, arrays = p.metrics, p.arrays
    lab = ctx.lab()
    nets = finetune.Networks(lab, recipe)
    removal = lab.removal(S)
    task_D, task_R = nets.task(lab.X, lab.y), nets.task(removal.X, removal.y)

    def learn():
        w_D, w_R = nets.learn(task_D, key=("learn",)), nets.learn(task_R, key=("retrain",))
        # the post-processing alone, from a fresh random start clipped to C0: what the noisy steps leave to it
        w_0 = nets.post(nets.init(task_R, key=("scratch",)), task_R, offset=0, key=("scratch",))
        return {"D": w_D.cpu().numpy(), "R": w_R.cpu().numpy(), "acc_D": nets.accuracy(w_D),
                "acc_R": nets.accuracy(w_R), "acc_0": nets.accuracy(w_0)}

    learned = lab.stage("mlp_learn", learn)
    start = {arm: lab.torch.as_tensor(learned[arm], device=lab.device, dtype=lab.dtype) for arm in ("D", "R")}
    for r in rows:
        ek = json_key(r["epsilon"])

        def compute(r=r, ek=ek):
            out = {}
            for arm, name in (("D", "unlearn"), ("R", "certifying")):
                noisy, post = nets.unlearn(start[arm], task_R, T=T, sigma=r["sigma"], key=(name, ek))
                out[name + "_noisy"], out[name] = nets.accuracy(noisy), nets.accuracy(post)
            return out

        got = lab.stage(f"mlp_eps{ek}", compute)
        cell = metrics["settings"][ek]
        for what in ("unlearn", "certifying", "unlearn_noisy", "certifying_noisy"):
            cell["mlp_" + what] = stats(got[what])
            arrays.setdefault("mlp_" + what, []).append(got[what])
    task = lab.task(removal.X, removal.y)
    for r in lin:
        got = lmc_setting(lab, r, S=S, removal=removal, task=task)
        metrics["logistic"][json_key(r["K"])][json_key(r["epsilon"])]["lmc_unlearn"] = stats(got["unlearn"])
        metrics["logistic"][json_key(r["K"])][json_key(r["epsilon"])]["lmc_retrain"] = stats(got["retrain"])
        arrays.setdefault("lmc_unlearn", []).append(got["unlearn"])
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    arrays.update(mlp_learned=learned["acc_D"], mlp_retrained=learned["acc_R"], mlp_post_only=learned["acc_0"],
                  removed_rows=removal.rows)
    metrics["mlp_learned"], metrics["mlp_retrained_noiseless"] = stats(learned["acc_D"]), stats(learned["acc_R"])
    metrics["mlp_post_only"] = stats(learned["acc_0"])
    return metrics, arrays, summary_network(ctx, metrics)


def summary_network(ctx, metrics) -> str:
    cells = metrics["settings"]
    eps = " ".join(cells)
    line = lambda key: " ".join(f"{c[key]['mean']:.3f}" for c in cells.values())   # noqa: E731
    parts = [f"network (T={metrics['noisy_steps']} noisy updates, then {metrics['recipe']['post_epochs']} epochs): "
             f"unlearned [{line('mlp_unlearn')}], certifying run [{line('mlp_certifying')}], right after the noise "
             f"[{line('mlp_unlearn_noisy')}]"]
    for K, lc in metrics["logistic"].items():
        means = " ".join(f"{c['lmc_unlearn']['mean']:.3f}" for c in lc.values())
        parts.append(f"logistic model, Langevin unlearning K={K}: [{means}]")
    return (f"--model mlp on {ctx.args.dataset} (S={metrics['S']}, {ctx.args.trials} chains), mean test accuracy "
            f"at eps [{eps}]: " + "; ".join(parts) + f"; network learned {metrics['mlp_learned']['mean']:.3f}, "
            f"retrained without noise {metrics['mlp_retrained_noiseless']['mean']:.3f}, the post-processing epochs "
            f"alone from a random start {metrics['mlp_post_only']['mean']:.3f}. "
            f"Wall-clock {time.perf_counter() - ctx.t0:.1f} s.")


def plan_network_find_k(ctx) -> experiments.Plan:
    """--model mlp --find_k 1: the smallest sigma per eps after the noisy steps (no chains)."""
    args, c = ctx.args, ctx.consts
    recipe, fc, T, rows = network_rows(ctx)
    ctx.log(recipe.describe())
    log_table(ctx, f"smallest sigma after T={T} noisy updates:      eps         sigma     alpha*",
              [f"{r['epsilon']:>48g} {r['sigma']:>13.8g} {r['alpha']:>10.6g}" for r in rows])
    metrics = {"model": "mlp", "recipe": dataclasses.asdict(recipe), "eps_values": list(args.eps), "noisy_steps": T,
               "sigma_table": [{k: r[k] for k in ("T", "epsilon", "sigma", "alpha")} for r in rows],
               "certificates": network_certificates(fc, rows, bound=args.bound, S=args.S[0])}
    arrays = {"eps": np.array(args.eps, dtype=float), "sigma": np.array([r["sigma"] for r in rows])}
    return experiments.Plan(metrics, arrays, summary=f"smallest sigma for {len(rows)} eps after T={T} noisy updates "
                                                     f"on {args.dataset} (delta={c.delta:.4g})")


# ---------------------------------------------------------------- entry points
def by_model(linear, net):
    """One step of a mode: ``net`` for --model mlp, ``linear`` otherwise."""
    return lambda ctx, *rest: (net if model_kinds.is_network(ctx.args) else linear)(ctx, *rest)


SCRIPTS = {"baseline": experiments.Script(by_model(plan_baseline, plan_network), by_model(run_baseline, run_network),
                                          lambda args: {"max_removed": args.S[0]}),
           "sequential2": experiments.Script(plan_sequential2, run_sequential2,
                                             lambda args: {"max_removed": args.num_remove}),
           "find_k": experiments.Script(by_model(plan_find_k, plan_network_find_k), None,
                                        lambda args: {"max_removed": args.S[0]})}


def build_main(*, multiclass: bool = False):
    """The script's main(argv) -> exit code, for binary (baseline.py) or multiclass data."""
    def main(argv=None) -> int:
        return experiments.run_script(build_parser(multiclass), argv, scripts=SCRIPTS, accounting_modes=("find_k",),
                                      check=lambda args: check_args(args, multiclass=multiclass))

    main.prog = "baseline_multiclass.py" if multiclass else "baseline.py"
    return cli.guarded(main)


main = build_main()

if __name__ == "__main__":
    sys.exit(main())
