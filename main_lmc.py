"""Paper A (Langevin unlearning, PNGD): noise / utility / complexity sweeps (docs/METHOD.md §11.8, paper A).

  python main_lmc.py --lam 1e-6 --sigma 0.03 --dataset MNIST --paint_unlearning_sigma 1   # Fig 3c
  python main_lmc.py --lam 1e-6 --sigma 0.03 --dataset MNIST --paint_utility_epsilon 1    # Fig 4
  python main_lmc.py --lam 1e-6 --sigma 0.03 --dataset MNIST --paint_utility_s 1          # Fig 5
  python main_lmc.py --lam 1e-6 --dataset MNIST --retrain_noiseless 1                     # sigma = 0 reference

Learning runs T PNGD steps on D, retraining T steps on D' (S rows replaced), unlearning the minimal
K steps (accountant.minimal_K_pngd, step 1) from the learned chains on D'. Each invocation writes one
run folder result/LMC/<DATASET>/<mode>/; main_lmc_multiclass.py runs the same on softmax datasets.
"""
from __future__ import annotations

import functools
import sys
import time

import numpy as np

from utils import accountant, bounds, cli, experiments, results

MODES = ("paint_unlearning_sigma", "paint_utility_epsilon", "paint_utility_s", "retrain_noiseless")
DEFAULT_SIGMA_LIST = (0.01, 0.05, 0.1, 0.2, 0.5, 1.0)
DEFAULT_S = {"paint_unlearning_sigma": (100,), "paint_utility_epsilon": (1, 50, 100),
             "paint_utility_s": (1, 10, 50, 100, 500, 1000), "retrain_noiseless": (1, 10, 50, 100, 500, 1000)}
DEFAULT_EPS = {"paint_unlearning_sigma": (1.0,), "paint_utility_epsilon": (0.1, 0.5, 1.0, 2.0, 5.0),
               "paint_utility_s": (0.5, 1.0, 2.0)}
BOUND = {"paper": "PNGD unlearning of S replaced rows, strongly convex, LSI C = 2 sigma^2/m (docs/METHOD.md §3.2)",
         "best": "PNGD unlearning of S replaced rows: per Renyi order the smallest of A-LSI, B-loose, B-tight at "
                 "b = n, improved conversion (docs/METHOD.md §7)"}
key = results.json_key


# ---------------------------------------------------------------- flags
def build_parser(*, multiclass: bool = False):
    what = "multiclass (softmax) datasets" if multiclass else "binary datasets"
    p = cli.make_parser(f"Langevin unlearning (paper A) sweeps on {what}: Fig 3c, Fig 4, Fig 5 and "
                        "noiseless retraining. Choose one mode.", family="LMC", multiclass=multiclass)
    g = p.add_argument_group("experiment (exactly one mode)")
    cli.add(g, "--paint_unlearning_sigma", type=cli.switch_or_one, default=False,
            help="Fig 3c: sweep --sigma_list, S (default 100) removed at once, one --eps (default 1); "
                 "records --sigma without using it")
    cli.add(g, "--paint_utility_epsilon", type=cli.switch_or_one, default=False,
            help="Fig 4: K and unlearning accuracy against --eps (default 0.1 0.5 1 2 5) per --S (default 1 50 100)")
    cli.add(g, "--paint_utility_s", type=cli.switch_or_one, default=False,
            help="Fig 5: unlearning vs retraining accuracy against --S (default 1 10 50 100 500 1000) "
                 "per --eps (default 0.5 1 2)")
    cli.add(g, "--retrain_noiseless", type=cli.switch_or_one, default=False,
            help="noiseless (sigma = 0) retraining on each D'_S, --S default 1 10 50 100 500 1000")
    cli.add(g, "--sigma_list", type=cli.SIGMA_POSITIVE, nargs="+", default=None,
            help="noise levels of --paint_unlearning_sigma (default 0.01 0.05 0.1 0.2 0.5 1)")
    cli.add(g, "--S", type=cli.int_at_least(1), nargs="+", default=None,
            help="rows replaced at once (one value for --paint_unlearning_sigma); default per mode; "
                 "default values >= n are dropped with a note")
    cli.add(g, "--eps", type=cli.EPS, nargs="+", default=None,
            help="target epsilon(s) of the unlearning certificate (one value for --paint_unlearning_sigma); "
                 "default per mode")
    return p


def chosen_mode(args) -> str:
    modes = [m for m in MODES if getattr(args, m)]
    if len(modes) != 1:
        given = ", ".join("--" + m for m in modes) or "none"
        raise cli.UsageError(f"choose exactly one mode (given: {given}; allowed: "
                             f"{', '.join('--' + m + ' 1' for m in MODES)})")
    return modes[0]


def _distinct(flag: str, values) -> list:
    keys = [key(v) for v in values]
    dup = next((k for i, k in enumerate(keys) if k in keys[:i]), None)
    if dup is not None:
        raise cli.UsageError(f"{flag} repeats the value {dup} (allowed: distinct values)")
    return sorted(values)


# Flags that only some modes read: given elsewhere they are an error, not silently ignored (--sigma is not
# here: the paper's commands pass it to every mode). --eps is not read by --retrain_noiseless: sigma = 0
# certifies nothing.
MODE_FLAGS = {"sigma_list": ("paint_unlearning_sigma",),
              "eps": ("paint_unlearning_sigma", "paint_utility_epsilon", "paint_utility_s")}


def check_args(args, *, multiclass: bool) -> str:
    """The mode and every check that needs no data (cli.parse_checked calls it before freezing the flags)."""
    mode = chosen_mode(args)
    cli.check_mode_flags(args.given_flags, mode, MODE_FLAGS)
    check_mode_values(args, mode)
    cli.check_dataset_kind(args, multiclass=multiclass, scripts=("main_lmc.py", "main_lmc_multiclass.py"))
    return mode


def check_mode_values(args, mode: str) -> None:
    """The values a mode takes: one S and one eps for --paint_unlearning_sigma, distinct sweeps, sigma > 0."""
    for flag, values in (("--S", args.S), ("--eps", args.eps)):
        if values is not None and mode == "paint_unlearning_sigma" and len(values) != 1:
            raise cli.UsageError(f"{flag} {' '.join(map(str, values))}: --paint_unlearning_sigma takes one value")
    if args.sigma_list is not None:
        _distinct("--sigma_list", args.sigma_list)
    if args.eps is not None:
        _distinct("--eps", args.eps)
    if args.sigma == 0 and mode in ("paint_utility_epsilon", "paint_utility_s"):
        raise cli.UsageError(f"--sigma 0 is not allowed with --{mode} (allowed: sigma > 0; "
                             "sigma = 0 certifies nothing, see --retrain_noiseless)")


def sweep_S(args, mode: str, n: int, log) -> list[int]:
    """S values for this run: an explicit S >= n is an error, a default one is dropped with a note."""
    if args.S is not None:
        values = _distinct("--S", args.S)
        bad = [S for S in values if S >= n]
        if bad:
            raise cli.UsageError(f"--S {bad[0]} is not allowed on {experiments.dataset_label(args)} (allowed: 1 <= S < n = {n})")
        return values
    values = list(DEFAULT_S[mode])
    kept = [S for S in values if S < n]
    if len(kept) < len(values):
        dropped = " ".join(str(S) for S in values if S >= n)
        log(f"note: default S {dropped} dropped: {experiments.dataset_label(args)} has n = {n} training rows (S < n needed)")
    if not kept:
        raise cli.UsageError(f"no default S fits {experiments.dataset_label(args)} (n = {n}): give --S values below n")
    return kept


# ---------------------------------------------------------------- the plan (accounting only, no chains)
def _certificate(c, *, args, sigma, S, eps_target, K, T):
    eps, alpha, name = bounds.pngd_eps(args.bound, Ks=[K], sizes=[S], sigma=sigma, consts=c)
    return accountant.certificate(consts=c, eps=eps, alpha=alpha, K=K, sigma=sigma, R=args.projection,
                                  bound=BOUND[args.bound], S=S, eps_target=eps_target, T=T,
                                  **bounds.fields(args.bound, name))


def plan_unlearning_sigma(ctx, *, sigmas, S, eps) -> dict:
    """Fig 3c: per sigma the minimal K and the DP-converted learning bound eps_0 (docs/METHOD.md §3.1, §3.2)."""
    c, args = ctx.consts, ctx.args
    plan = {"sigma_list": sigmas, "S": S, "eps": eps, "K": {}, "epsilon0": {}, "alpha0": {}, "burn_in": {},
            "certificates": []}
    steps = 0
    for sigma in sigmas:
        K = bounds.pngd_next_K(args.bound, Ks=[], sizes=[S], sigma=sigma, eps_target=eps, consts=c)
        eps0, alpha0 = accountant.dp_epsilon_learn(S=S, sigma=sigma, consts=c)
        T = ctx.burn_in(sigma)
        s = key(sigma)
        plan["K"][s], plan["epsilon0"][s], plan["alpha0"][s], plan["burn_in"][s] = K, eps0, alpha0, T
        plan["certificates"].append(_certificate(c, args=args, sigma=sigma, S=S, eps_target=eps, K=K, T=T))
        steps += args.trials * (2 * T + K)          # learn on D, retrain on D', unlearn
    plan["chain_steps"] = steps
    return plan


def plan_K_table(ctx, *, sigma, S_list, eps_list, outer: str, retrain: bool) -> dict:
    """Fig 4 (outer = "S") / Fig 5 (outer = "eps"): minimal K per (S, eps) at one sigma."""
    c, args = ctx.consts, ctx.args
    T = ctx.burn_in(sigma)
    table, certs = {}, []
    for S in S_list:
        for eps in eps_list:
            K = bounds.pngd_next_K(args.bound, Ks=[], sizes=[S], sigma=sigma, eps_target=eps, consts=c)
            outer_k, inner_k = (key(S), key(eps)) if outer == "S" else (key(eps), key(S))
            table.setdefault(outer_k, {})[inner_k] = K
            certs.append(_certificate(c, args=args, sigma=sigma, S=S, eps_target=eps, K=K, T=T))
    total_K = sum(K for inner in table.values() for K in inner.values())
    learns = 1 + (len(S_list) if retrain else 0)
    return {"sigma": sigma, "S_list": S_list, "eps_list": eps_list, "burn_in": T, "K": table,
            "certificates": certs, "chain_steps": args.trials * (learns * T + total_K)}


def plan_noiseless(ctx, *, S_list) -> dict:
    """sigma = 0: noiseless retraining; no certificate (eps = inf; the accountant's record has eps null)."""
    T = ctx.burn_in(0.0)
    cert = accountant.certificate(consts=ctx.consts, eps=float("inf"), alpha=float("nan"), K=0, sigma=0.0,
                                  R=ctx.args.projection, bound="none: sigma = 0 gives eps = inf (no certificate); "
                                  "noiseless retraining is a utility reference only", T=T,
                                  comparison="none (no certificate)")
    return {"sigma": 0.0, "S_list": S_list, "burn_in": T, "certificate": cert,
            "chain_steps": T * (1 + len(S_list))}  # one chain each: every trial would be identical


def K_array(table: dict, outer, inner):
    return np.array([[table[key(a)][key(b)] for b in inner] for a in outer], dtype=np.int64)


def plan_arrays(mode: str, plan: dict) -> dict:
    if mode == "paint_unlearning_sigma":
        s = [key(v) for v in plan["sigma_list"]]
        return {"sigma": np.array(plan["sigma_list"]), "K": np.array([plan["K"][k] for k in s], dtype=np.int64),
                "epsilon0": np.array([plan["epsilon0"][k] for k in s])}
    if mode == "paint_utility_epsilon":
        return {"S": np.array(plan["S_list"]), "eps": np.array(plan["eps_list"]),
                "K": K_array(plan["K"], plan["S_list"], plan["eps_list"])}
    if mode == "paint_utility_s":
        return {"S": np.array(plan["S_list"]), "eps": np.array(plan["eps_list"]),
                "K": K_array(plan["K"], plan["eps_list"], plan["S_list"])}
    return {"S": np.array(plan["S_list"])}


# ---------------------------------------------------------------- the chains
def run_unlearning_sigma(ctx, lab, plan) -> tuple[dict, dict]:
    """Fig 3c: per sigma learn on D, retrain on D', unlearn K steps from the learned chains."""
    S, eps = plan["S"], plan["eps"]
    removal = lab.removal(S, key=("removal", S))
    task = lab.task(removal.X, removal.y)
    acc = {"learn": [], "retrain": [], "unlearn": []}
    for sigma in plan["sigma_list"]:
        s = key(sigma)
        T, K = plan["burn_in"][s], plan["K"][s]

        def compute(sigma=sigma, s=s, T=T, K=K):
            w = lab.learn_on_D(sigma=sigma, T=T)
            w_re = lab.learn(sigma=sigma, T=T, data=(removal.X, removal.y), phase="retrain",
                             key=("sigma", s, "S", S))
            w_un = lab.advance(w, task, steps=K, sigma=sigma, key=(s, "S", S, "eps", key(eps)),
                               desc=f"unlearn sigma={s}", phase="unlearn")
            return {"learn": lab.accuracy(w), "retrain": lab.accuracy(w_re), "unlearn": lab.accuracy(w_un)}

        part = lab.stage(f"sigma={s}", compute)
        for name in acc:
            acc[name].append(part[name])
    arrays = {f"acc_{name}": np.stack(v) for name, v in acc.items()}
    stats = {name: {key(sg): experiments.summary_stats(a) for sg, a in zip(plan["sigma_list"], v)}
             for name, v in acc.items()}
    return {"accuracy": stats}, arrays


def run_K_table(ctx, lab, plan, *, outer: str, retrain: bool) -> tuple[dict, dict]:
    """Fig 4 / Fig 5: learn once on D; per S one D'_S (and its retraining); per (S, eps) unlearn K steps."""
    sigma, T, s = plan["sigma"], plan["burn_in"], key(plan["sigma"])
    learned = functools.lru_cache(maxsize=1)(lambda: lab.learn_on_D(sigma=sigma, T=T))
    acc_learn = lab.stage("learn", lambda: {"acc": lab.accuracy(learned())})["acc"]
    S_list, eps_list = plan["S_list"], plan["eps_list"]
    unlearn = np.empty((len(S_list), len(eps_list), lab.trials))
    retrained = np.empty((len(S_list), lab.trials))
    for i, S in enumerate(S_list):
        def compute(S=S):
            removal = lab.removal(S, key=("removal", S))
            task = lab.task(removal.X, removal.y)
            out = {}
            if retrain:
                w_re = lab.learn(sigma=sigma, T=T, data=(removal.X, removal.y), phase="retrain",
                                 key=("sigma", s, "S", S))
                out["retrain"] = lab.accuracy(w_re)
            Ks = [plan["K"][key(S)][key(e)] if outer == "S" else plan["K"][key(e)][key(S)] for e in eps_list]
            out["unlearn"] = np.stack([
                lab.accuracy(lab.advance(learned(), task, steps=K, sigma=sigma, key=(s, "S", S, "eps", key(e)),
                                         desc=f"unlearn S={S} eps={key(e)}", phase="unlearn"))
                for e, K in zip(eps_list, Ks)])
            return out

        part = lab.stage(f"S={S}", compute)
        unlearn[i] = part["unlearn"]
        if retrain:
            retrained[i] = part["retrain"]
    stats = {"learn": experiments.summary_stats(acc_learn), "unlearn": {}}
    for i, S in enumerate(S_list):
        for j, e in enumerate(eps_list):
            a, b = (key(S), key(e)) if outer == "S" else (key(e), key(S))
            stats["unlearn"].setdefault(a, {})[b] = experiments.summary_stats(unlearn[i, j])
    arrays = {"acc_learn": acc_learn}
    if outer == "S":
        arrays["acc_unlearn"] = unlearn                       # (S, eps, trials), as "K": {S: {eps: K}}
    else:
        arrays["acc_unlearn"] = unlearn.transpose(1, 0, 2)    # (eps, S, trials), as "K": {eps: {S: K}}
    if retrain:
        arrays["acc_retrain"] = retrained
        stats["retrain"] = {key(S): experiments.summary_stats(r) for S, r in zip(S_list, retrained)}
    return {"accuracy": stats}, arrays


def run_noiseless(ctx, lab, plan) -> tuple[dict, dict]:
    """sigma = 0 from w0 = 0: one chain on D and one per D'_S (every trial would be the same chain)."""
    T = plan["burn_in"]
    learn = lab.stage("learn", lambda: {"acc": lab.accuracy(lab.learn(sigma=0.0, T=T, C=1,
                                                                       key=("noiseless",)))})["acc"]
    retrained = []
    for S in plan["S_list"]:
        def compute(S=S):
            removal = lab.removal(S, key=("removal", S))
            w = lab.learn(sigma=0.0, T=T, C=1, data=(removal.X, removal.y), phase="retrain",
                          key=("noiseless", "S", S))
            return {"acc": lab.accuracy(w)}

        retrained.append(lab.stage(f"S={S}", compute)["acc"])
    retrained = np.stack(retrained)
    stats = {"learn": experiments.summary_stats(learn),
             "retrain": {key(S): experiments.summary_stats(r) for S, r in zip(plan["S_list"], retrained)}}
    return {"accuracy": stats}, {"acc_learn": learn, "acc_retrain": retrained}


# ---------------------------------------------------------------- summary
def _mean(stats) -> str:
    return f"{stats['mean']:.4f}"


def summary_line(mode: str, plan: dict, metrics: dict, seconds: float) -> str:
    acc = metrics["accuracy"]
    if mode == "paint_unlearning_sigma":
        parts = [f"sigma {s}: K={plan['K'][s]}, learn {_mean(acc['learn'][s])}, retrain {_mean(acc['retrain'][s])}, "
                 f"unlearn {_mean(acc['unlearn'][s])}" for s in map(key, plan["sigma_list"])]
        head = f"S={plan['S']}, eps={key(plan['eps'])}; "
    elif mode == "retrain_noiseless":
        parts = [f"S={S}: {_mean(acc['retrain'][key(S)])}" for S in plan["S_list"]]
        head = f"noiseless (sigma = 0, T={plan['burn_in']}): learn on D {_mean(acc['learn'])}; retrain "
    else:
        head = f"sigma={key(plan['sigma'])}, T={plan['burn_in']}, learn {_mean(acc['learn'])}; "
        parts = []
        for a, inner in plan["K"].items():
            for b, K in inner.items():
                extra = ""
                if mode == "paint_utility_s" and b in acc.get("retrain", {}):
                    extra = f" (retrain {_mean(acc['retrain'][b])})"
                label = f"S={a} eps={b}" if mode == "paint_utility_epsilon" else f"eps={a} S={b}"
                parts.append(f"{label}: K={K} unlearn {_mean(acc['unlearn'][a][b])}{extra}")
    return f"{mode}: " + head + "; ".join(parts) + f"; wall-clock {seconds:.1f} s."


# ---------------------------------------------------------------- main
def make_plan(ctx, mode: str) -> dict:
    args = ctx.args
    S_list = sweep_S(args, mode, ctx.consts.n, ctx.log)
    eps_list = _distinct("--eps", args.eps) if args.eps is not None else list(DEFAULT_EPS.get(mode, ()))
    if mode == "paint_unlearning_sigma":
        sigmas = _distinct("--sigma_list", args.sigma_list or DEFAULT_SIGMA_LIST)
        return plan_unlearning_sigma(ctx, sigmas=sigmas, S=S_list[0], eps=eps_list[0])
    if mode == "paint_utility_epsilon":
        return plan_K_table(ctx, sigma=args.sigma, S_list=S_list, eps_list=eps_list, outer="S", retrain=False)
    if mode == "paint_utility_s":
        return plan_K_table(ctx, sigma=args.sigma, S_list=S_list, eps_list=eps_list, outer="eps", retrain=True)
    return plan_noiseless(ctx, S_list=S_list)


def run_chains(ctx, mode: str, plan: dict) -> tuple[dict, dict]:
    lab = ctx.lab()
    if mode == "paint_unlearning_sigma":
        return run_unlearning_sigma(ctx, lab, plan)
    if mode == "paint_utility_epsilon":
        return run_K_table(ctx, lab, plan, outer="S", retrain=False)
    if mode == "paint_utility_s":
        return run_K_table(ctx, lab, plan, outer="eps", retrain=True)
    return run_noiseless(ctx, lab, plan)


def mode_work(ctx, mode: str, plan: dict):
    """What run_chains will run for this plan, counted by kind (utils/workload.py)."""
    work, C = ctx.workload(), ctx.args.trials
    if mode == "paint_unlearning_sigma":
        work.dataset()   # D'_S, shared by every sigma
        for sigma in plan["sigma_list"]:
            s = key(sigma)
            work.learn(C, plan["burn_in"][s], sigma=sigma, key=("D", s))
            work.learn(C, plan["burn_in"][s], sigma=sigma, new_data=True)
            work.advance(C, plan["K"][s], sigma=sigma)
            work.evaluate(C, 3)
            work.save(0)
    elif mode == "retrain_noiseless":
        work.learn(1, plan["burn_in"], sigma=0.0)
        work.evaluate(1)
        work.save(0)
        for _ in plan["S_list"]:
            work.learn(1, plan["burn_in"], sigma=0.0, new_data=True)
            work.evaluate(1)
            work.save(0)
    else:   # Fig 4 / Fig 5: learn once; per S a D' (and its retraining), per (S, eps) K steps from the learned chains
        sigma, T, retrain = plan["sigma"], plan["burn_in"], mode == "paint_utility_s"
        work.learn(C, T, sigma=sigma, key=("D", key(sigma)))
        work.evaluate(C)
        work.save(0)
        for _ in plan["S_list"]:
            work.dataset()
            if retrain:
                work.learn(C, T, sigma=sigma, new_data=True)
                work.evaluate(C)
            work.save(0)
        for inner in plan["K"].values():
            for K in inner.values():
                work.advance(C, K, sigma=sigma)
                work.evaluate(C)
    return work


def plan_step(ctx) -> experiments.Plan:
    """The protocol's plan (experiments.run_script): the accountant's tables; an infeasible target fails here."""
    plan = make_plan(ctx, ctx.mode)
    work = mode_work(ctx, ctx.mode, plan)
    plan["chain_steps"] = work.chain_steps
    ctx.log(f"plan: {plan['chain_steps']:,} chain-steps in total")
    return experiments.Plan(plan, plan_arrays(ctx.mode, plan), work=work,
                            summary=f"{ctx.mode}: plan only ({plan['chain_steps']:,} chain-steps), no chains run.")


def stages_step(ctx, plan: experiments.Plan):
    """The protocol's stages: the chains of the mode, then the metrics, arrays and summary."""
    t0 = time.perf_counter()
    acc_metrics, acc_arrays = run_chains(ctx, ctx.mode, plan.metrics)
    metrics = dict(plan.metrics, **acc_metrics)
    arrays = dict(plan.arrays, **acc_arrays)
    return metrics, arrays, summary_line(ctx.mode, plan.metrics, metrics, time.perf_counter() - t0)


def start_keywords(mode: str):
    # the data-dependent L covers the largest S the run keeps (defaults not below n are dropped)
    return lambda args: {"max_removed": lambda n: max(sweep_S(args, mode, n, lambda line: None))}


SCRIPTS = {mode: experiments.Script(plan_step, stages_step, start_keywords(mode)) for mode in MODES}


def run(argv=None, *, multiclass: bool = False) -> int:
    """The whole script; main_lmc_multiclass.py calls it with multiclass=True."""
    return experiments.run_script(build_parser(multiclass=multiclass), argv, scripts=SCRIPTS,
                                  check=lambda args: check_args(args, multiclass=multiclass))


@cli.guarded
def main(argv=None) -> int:
    return run(argv, multiclass=False)


if __name__ == "__main__":
    sys.exit(main())
