"""Unlearn your own data: learn once with noise, remove real rows later, get a certificate each time.

    python unlearn.py learn  --features my.npz --state st/ [--sigma S | --eps E --K K]
    python unlearn.py remove --state st/ --ids 17 42            (or --ids FILE)
    python unlearn.py status --state st/
    python unlearn.py export --state st/ --out model.npz [--chain i]

Full batch runs projected noisy gradient descent (PNGD, Langevin unlearning, paper A) certified by the
sequential bound of SPEC 3.1.5 with each request's own size; ``--batch_size b`` runs noisy SGD
(PNSGD, paper B) certified by SPEC 3.2.2-3.2.4. A request replaces the removed rows by fresh random
unit-norm points with random labels (SPEC Part I item 3: n stays fixed), then continues every chain
for the K steps the accountant finds for this request given the whole history, and saves the new
state atomically (utils/state.py). All math is in utils.accountant, all chains in utils.engine.
``learn --bound best`` (the default) certifies every request with the smallest proven bound
(docs/METHOD.md §7); ``--bound paper`` with the papers' own; the choice is saved in the state.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from datetime import datetime, timezone

import numpy as np

from utils import accountant, bounds, cli, data, results
from utils import state as statefile
from utils.experiments import describe_constants, progress_bar, summary_stats
from utils.state import StateError

DEFAULT_SIGMA = 0.03
DEFAULT_EPS = 1.0
SEED_KEY = "unlearn.py"          # generator streams: (seed, SEED_KEY, phase[, request])


# ---------------------------------------------------------------- flags
def build_parser() -> cli.OneLineParser:
    p = cli.OneLineParser(prog="unlearn.py", allow_abbrev=False,
                          description="Learn on your own features once, then remove rows on request "
                                      "with a certificate (Langevin / noisy-SGD unlearning).")
    sub = p.add_subparsers(dest="command", required=True, metavar="{learn,remove,status,export}")

    lp = sub.add_parser("learn", allow_abbrev=False, help="learn noisy chains on a features file, save the state",
                        description="Learn noisy chains on a features file and save a state folder.")
    cli.add(lp, "--features", required=True,
            help="your features: .npz/.pt with X_train, y_train, X_test, y_test (held-out), optional ids")
    cli.add(lp, "--state", required=True, help="new state folder to create")
    cli.add(lp, "--name", default=None, help="a label for the data (default: the file's name)")
    cli.add(lp, "--sigma", type=cli.positive_float, default=None,
            help=f"noise standard deviation (default {DEFAULT_SIGMA}; or choose it with --eps and --K)")
    cli.add(lp, "--eps", type=cli.positive_float, default=None,
            help=f"default per-request target epsilon (default {DEFAULT_EPS}); with --K it also sets sigma")
    cli.add(lp, "--K", type=cli.int_at_least(1), default=None,
            help="with --eps: sigma = the smallest noise that unlearns a request of --request_size rows in K steps")
    cli.add(lp, "--request_size", type=cli.int_at_least(1), default=1,
            help="rows per request that --eps/--K plan for, and the size of the 'next request' preview (default 1)")
    cli.add(lp, "--lam", type=cli.positive_float, default=None,
            help="L2 regularisation lambda, m = lam*n (default: m = 0.01, the papers' strong convexity)")
    cli.add(lp, "--M", type=cli.positive_float, default=None,
            help="per-sample gradient clipping norm (default 1 binary, 2 multiclass)")
    cli.add(lp, "--L", type=cli.positive_float, default=None,
            help="smoothness constant (default the closed-form bound 1/4 + m binary, 1 + m multiclass)")
    cli.add(lp, "--delta", type=cli.positive_float, default=None, help="delta of (eps, delta) (default 1/n)")
    cli.add_bound(lp, default="best")
    cli.add(lp, "--batch_size", type=cli.batch_size_value, default="full",
            help="full (PNGD, paper A) or a mini-batch size b dividing n (PNSGD, paper B; K counts epochs)")
    cli.add(lp, "--burn_in", type=cli.burn_in_value, default="auto",
            help="learning steps T (epochs for mini-batches), or auto: W2 to the stationary law <= 1%% of its radius")
    cli.add(lp, "--trials", type=cli.int_at_least(1), default=10,
            help="independent chains (default 10); export deploys one of them")
    cli.add(lp, "--seed", type=cli.int_at_least(0), default=0, help="random seed of every noise draw (default 0)")
    cli.add(lp, "--device", type=cli.device_value, default="auto", help="auto, cpu, cuda or cuda:N")
    cli.add(lp, "--dtype", choices=["float32", "float64"], default="float32",
            help="tensor precision of the chains (default float32)")
    lp.set_defaults(run=cmd_learn)

    rp = sub.add_parser("remove", allow_abbrev=False, help="remove rows by id, unlearn, print the certificate",
                        description="Remove rows by id: replace them, run the K noisy steps this request "
                                    "needs, save the new state atomically and print the certificate.")
    cli.add(rp, "--state", required=True, help="the state folder made by learn")
    cli.add(rp, "--ids", nargs="+", required=True,
            help="ids of the rows to remove, or one file of ids (.npy, or text: spaces, commas or lines)")
    cli.add(rp, "--eps", type=cli.positive_float, default=None,
            help="target epsilon of this request (default: the state's, set at learn)")
    cli.add(rp, "--features", default=None, help="check that this features file is the one the state learned on")
    cli.add(rp, "--device", type=cli.device_value, default="auto", help="auto, cpu, cuda or cuda:N")
    rp.set_defaults(run=cmd_remove)

    sp = sub.add_parser("status", allow_abbrev=False, help="request log, current guarantee, held-out accuracy",
                        description="Print the request log, the current guarantee and the held-out accuracy.")
    cli.add(sp, "--state", required=True, help="the state folder made by learn")
    cli.add(sp, "--features", default=None, help="check that this features file is the one the state learned on")
    sp.set_defaults(run=cmd_status)

    ep = sub.add_parser("export", allow_abbrev=False, help="write one chain's weights as .npz",
                        description="Write the weights of one chain (the model to deploy) as .npz.")
    cli.add(ep, "--state", required=True, help="the state folder made by learn")
    cli.add(ep, "--out", required=True, help="output file (.npz)")
    cli.add(ep, "--chain", type=cli.int_at_least(0), default=0, help="which chain (default 0)")
    ep.set_defaults(run=cmd_export)
    return p


@cli.guarded
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


# ---------------------------------------------------------------- accounting (all math in utils.accountant)
def plan_request(*, consts, sigma: float, b, Ks, sizes, eps_target: float, bound: str = "paper"):
    """(K, eps, alpha*, Z, bound name) of request s = len(sizes), earlier steps Ks frozen.

    paper: full batch (b None) the PNGD sequential bound with per-request sizes (A, docs/METHOD.md §2.5);
    mini-batch PNSGD with the Z recursion (S rows shift by S Z_B), loose bound first, tight later.
    best: per Renyi order the smallest proven bound over the same K history (docs/METHOD.md §7).
    """
    Ks = list(Ks)
    if b is None:
        K = bounds.pngd_next_K(bound, Ks=Ks, sizes=sizes, sigma=sigma, eps_target=eps_target, consts=consts)
        eps, alpha, name = bounds.pngd_eps(bound, Ks=Ks + [K], sizes=sizes, sigma=sigma, consts=consts)
        return K, eps, alpha, None, name
    Z = accountant.Z_stream(Ks=Ks, sizes=sizes, consts=consts, b=b)[-1]
    K = bounds.pnsgd_next_K(bound, Ks=Ks, sizes=sizes, sigma=sigma, eps_target=eps_target, consts=consts, b=b)
    eps, alpha, name = bounds.pnsgd_eps(bound, Ks=Ks + [K], sizes=sizes, sigma=sigma, consts=consts, b=b)
    return K, eps, alpha, Z, name


def choose_sigma(args, consts, b):
    """(sigma, how it was chosen): --sigma, or the smallest sigma unlearning --request_size rows in K steps at eps."""
    if args.K is None:
        sigma = DEFAULT_SIGMA if args.sigma is None else args.sigma
        return sigma, ("--sigma" if args.sigma is not None else "default")
    S = args.request_size
    if b is None:
        sigma = bounds.pngd_smallest_sigma(args.bound, K=args.K, eps_target=args.eps, S=S, consts=consts)
    else:
        sigma = bounds.pnsgd_smallest_sigma(args.bound, K=args.K, eps_target=args.eps, consts=consts, S=S, b=b)
    K = plan_request(consts=consts, sigma=sigma, b=b, Ks=[], sizes=[S], eps_target=args.eps, bound=args.bound)[0]
    if K > args.K:
        raise RuntimeError(f"re-check failed: sigma={sigma!r} needs K={K} > --K {args.K}")
    return sigma, f"smallest for K={args.K} steps at eps={args.eps:g} with requests of {S} row(s)"


def learning_steps(burn_in, sigma: float, consts, dim: int):
    """(T, how): the flag, or with 'auto' accountant.burn_in_auto's contraction bound."""
    if burn_in != "auto":
        return int(burn_in), "--burn_in"
    T, bound = accountant.burn_in_auto(sigma=sigma, m=consts.m, M=consts.M, eta=consts.eta, dim=dim)
    return T, f"auto: W2(law after T, stationary law) <= {bound:.3g}, 1% of its radius"


def _batch(batch_size, n: int):
    """None for full batch, else b (which must divide n: PNSGD epochs)."""
    if batch_size == "full" or batch_size == n:
        return None
    if batch_size > n or n % batch_size:
        raise cli.UsageError(f"--batch_size {batch_size} does not divide n={n} "
                             "(allowed: full, or a mini-batch size dividing n)")
    return int(batch_size)


def constants_of(meta) -> accountant.Constants:
    return accountant.Constants(**meta["constants"])


# ---------------------------------------------------------------- output
class Report:
    """Print lines and keep them for the state's log.txt."""

    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)


def _ids_text(ids, limit=10) -> str:
    ids = [int(i) for i in ids]
    more = f" ... (+{len(ids) - limit} more)" if len(ids) > limit else ""
    return ", ".join(map(str, ids[:limit])) + more


def _acc_text(acc) -> str:
    s = summary_stats(acc)
    return f"mean {s['mean']:.4f} (std {s['std']:.4f} over {s['trials']} chains; chain 0: {float(acc[0]):.4f})"


def _note_cost(out, K: int, T: int, unit: str) -> None:
    if K > T:
        out(f"note: K={K} > T={T}: retraining from scratch would cost fewer {unit} here (a larger sigma, "
            "a larger n or a larger eps lowers K)")


def _unit(settings) -> str:
    return "steps" if settings["batch_size"] == "full" else "epochs"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- learn
def cmd_learn(args) -> int:
    if args.K is not None and args.sigma is not None:
        raise cli.UsageError("give --sigma, or --eps with --K (which choose sigma), not both")
    if args.K is not None and args.eps is None:
        raise cli.UsageError("--K needs --eps: sigma is then the smallest noise meeting eps in K steps")
    statefile.check_new(args.state)
    name = args.name or os.path.splitext(os.path.basename(args.features))[0]
    ds = data.load_dataset(name, features=args.features)
    if args.request_size >= ds.n:
        raise cli.UsageError(f"--request_size {args.request_size} is not allowed (allowed: 1 .. n-1 = {ds.n - 1})")
    b = _batch(args.batch_size, ds.n)
    lam = ds.default_lam if args.lam is None else args.lam
    M = args.M if args.M is not None else (1.0 if ds.num_classes == 2 else 2.0)
    consts = accountant.make_constants(n=ds.n, lam=lam, M=M, num_classes=ds.num_classes, L=args.L,
                                       delta=args.delta, d=ds.d)
    sigma, sigma_rule = choose_sigma(args, consts, b)
    width = 1 if ds.num_classes == 2 else ds.num_classes
    T, T_rule = learning_steps(args.burn_in, sigma, consts, ds.d * width)
    eps_default = DEFAULT_EPS if args.eps is None else args.eps
    S = args.request_size
    K_next = plan_request(consts=consts, sigma=sigma, b=b, Ks=[], sizes=[S], eps_target=eps_default,
                          bound=args.bound)[0]
    ids = statefile.row_ids(args.features, ds.n)
    settings = {"method": "PNGD" if b is None else "PNSGD", "batch_size": "full" if b is None else b,
                "sigma": sigma, "sigma_rule": sigma_rule, "T": T, "T_rule": T_rule, "trials": args.trials,
                "seed": args.seed, "dtype": args.dtype, "eps_default": eps_default, "request_size": S,
                "R": 0.0, "sequential_form": "paper", "bound": args.bound,
                "conversion": bounds.CONVERSION[args.bound]}

    out = Report()
    kind = "binary logistic" if ds.num_classes == 2 else f"{ds.num_classes}-class softmax"
    out(f"learn: {ds.name}: {ds.n} training rows, {len(ds.y_test)} held-out rows, d={ds.d}, {kind} "
        f"(labels {ds.identity['classes']}); file sha256 {ds.identity['sha256'][:16]}")
    out("rows are L2-normalised (x / ||x||_2, train and held-out) as the theory needs (||x_i|| = 1 bounds "
        "each gradient); a linear model's predictions do not change with this scaling")
    out(describe_constants(consts))
    out(f"noise sigma={sigma:.6g} ({sigma_rule}); {settings['method']} "
        f"{'full batch' if b is None else f'b={b}'}; learning T={T} {_unit(settings)} ({T_rule}); "
        f"{args.trials} chains, seed {args.seed}")
    out(f"plan: a request of {S} row(s) at eps={eps_default:g} will need K={K_next} {_unit(settings)} "
        f"(retraining from scratch: T={T})")
    _note_cost(out, K_next, T, _unit(settings))
    if b is not None:
        out(f"note: the PNSGD certificate (paper B) assumes the learned chains reached their stationary law; "
            f"T={T} epochs is what this relies on")

    from utils import engine  # torch only now: every flag and the plan are checked

    device = engine.resolve_device(args.device)
    t0 = time.perf_counter()

    def gen(*keys):
        return engine.generator_for(args.seed, SEED_KEY, *keys, device=device)

    w0 = engine.init_chains(C=args.trials, d=ds.d, num_classes=ds.num_classes, sigma=sigma, m=consts.m,
                            generator=gen("init"), device=device, dtype=args.dtype)
    perms = None if b is None else engine.make_perms(args.trials, ds.n, generator=gen("perms"), device=device)
    task = engine.to_task(ds.X_train, ds.y_train, ds.num_classes, device=device, dtype=args.dtype)
    with progress_bar("learn", T * (ds.n // (b or ds.n)), args.trials) as bar:
        w = engine.run_chains(w0, task, steps=T, eta=consts.eta, sigma=sigma, m=consts.m, M=consts.M,
                              batch_size=b, perms=perms, generator=gen("learn"), progress=bar.update)
    acc = engine.accuracy(w, ds.X_test, ds.y_test).numpy()
    seconds = time.perf_counter() - t0
    out(f"learned in {seconds:.2f} s; held-out accuracy {_acc_text(acc)}")

    meta = {"tool": "unlearn.py", "created": _now(), "device": str(device),
            "dataset": dict(ds.identity, fingerprint=ds.fingerprint, num_classes=ds.num_classes),
            "constants": dataclasses.asdict(consts), "settings": settings,
            "learn": {"wall_clock_seconds": seconds, "accuracy_mean": float(acc.mean())}, "requests": []}
    arrays = {"w": w.cpu().numpy(), "X": ds.X_train, "y": ds.y_train, "ids": ids, "X_test": ds.X_test,
              "y_test": ds.y_test, "accuracy": acc, "removed": np.zeros(ds.n, dtype=bool)}
    if perms is not None:
        arrays["perms"] = perms.cpu().numpy()
    statefile.create(args.state, meta, arrays, out.text())
    print(f"saved state folder {os.path.abspath(args.state)} (version 1; empty request log)")
    return 0


# ---------------------------------------------------------------- remove
def _removed_by(meta) -> dict:
    return {int(i): r["request"] for r in meta["requests"] for i in r["ids"]}


def _check_features(st, features) -> None:
    if features is not None:
        ds = data.load_dataset(st.meta["dataset"]["name"], features=features)
        statefile.check_fingerprint(st, ds.fingerprint, features)


def cmd_remove(args) -> int:
    ids = statefile.read_ids(args.ids)
    with statefile.locked(args.state):
        st = statefile.load(args.state)
        _check_features(st, args.features)
        meta, arrays, settings = st.meta, st.arrays, st.meta["settings"]
        consts = constants_of(meta)
        rows = statefile.rows_for_ids(arrays["ids"], _removed_by(meta), ids)
        s = len(meta["requests"]) + 1
        Ks = [r["K"] for r in meta["requests"]]
        sizes = [r["S"] for r in meta["requests"]] + [int(rows.size)]
        if sum(sizes) >= consts.n:
            raise StateError(f"removing {rows.size} more rows would replace {sum(sizes)} of n={consts.n} rows "
                             f"(allowed: fewer than n in total)")
        eps_target = settings["eps_default"] if args.eps is None else args.eps
        b = None if settings["batch_size"] == "full" else int(settings["batch_size"])
        sigma, unit = settings["sigma"], _unit(settings)
        bound = settings.get("bound", "paper")       # states saved before --bound were certified by the papers'
        K, eps, alpha, Z, name = plan_request(consts=consts, sigma=sigma, b=b, Ks=Ks, sizes=sizes,
                                              eps_target=eps_target, bound=bound)

        out = Report()
        out(f"request {s}: remove {rows.size} row(s), ids {_ids_text(ids)}; the accountant needs K={K} {unit} "
            f"for eps={eps_target:g} given the {s - 1} earlier request(s)")
        _note_cost(out, K, settings["T"], unit)
        new_arrays, seconds = _unlearn(arrays, rows, K=K, s=s, meta=meta, consts=consts, b=b, device=args.device)
        steps_so_far = sum(Ks) + K
        retrain = s * settings["T"]
        cert = accountant.certificate(
            consts=consts, eps=eps, alpha=alpha, K=K, sigma=sigma, R=settings["R"], b=b,
            bound=(("PNGD sequential, per-request S (A, SPEC 3.1.5)" if b is None else
                    "PNSGD Z-recursion, per-request S (B, SPEC 3.2.2-3.2.4)") if bound == "paper" else
                   "per Renyi order the smallest proven bound over the request history, improved conversion "
                   "(docs/METHOD.md §7)"), **bounds.fields(bound, name),
            request=s, ids=[int(i) for i in ids], S=int(rows.size), eps_target=eps_target, Ks=Ks + [K],
            sizes=sizes, Z=Z, cumulative_steps=steps_so_far, retrain_steps=retrain, learn_T=settings["T"])
        acc = new_arrays["accuracy"]
        _print_certificate(out, cert, unit)
        out(f"  held-out accuracy {_acc_text(acc)}; {seconds:.2f} s")
        record = {"request": s, "ids": [int(i) for i in ids], "rows": rows.tolist(), "S": int(rows.size), "K": K,
                  "eps_target": eps_target, "certificate": cert, "accuracy_mean": float(np.mean(acc)),
                  "wall_clock_seconds": seconds, "time": _now()}
        new_meta = dict(meta, requests=meta["requests"] + [record])
        new = statefile.commit(st, new_meta, new_arrays, st.log + out.text())
    print(f"saved state folder {new.path} (version {new.version}); the previous version and its removed rows "
          "are deleted")
    return 0


def _unlearn(arrays, rows, *, K, s, meta, consts, b, device):
    """Replace ``rows`` by fresh random points (SPEC Part I item 3) and run K noisy steps on every chain."""
    import torch  # after the plan: a bad request never imports torch

    from utils import engine

    settings, k = meta["settings"], meta["dataset"]["num_classes"]
    dev = engine.resolve_device(device)
    t0 = time.perf_counter()
    seed = settings["seed"]
    # Replacement points come from a CPU stream keyed by the request number: reruns draw the same points.
    X, y = engine.replace_rows(arrays["X"], arrays["y"], rows, num_classes=k,
                               generator=engine.generator_for(seed, SEED_KEY, "replace", s))
    task = engine.to_task(X, y, k, device=dev, dtype=settings["dtype"])
    w = torch.as_tensor(arrays["w"]).to(dev)
    perms = None if b is None else torch.as_tensor(arrays["perms"], device=dev)
    with progress_bar(f"unlearn request {s}", K * (consts.n // (b or consts.n)), w.shape[0]) as bar:
        w = engine.run_chains(w, task, steps=K, eta=consts.eta, sigma=settings["sigma"], m=consts.m, M=consts.M,
                              R=settings["R"], batch_size=b, perms=perms,
                              generator=engine.generator_for(seed, SEED_KEY, "unlearn", s, device=dev),
                              progress=bar.update)
    acc = engine.accuracy(w, arrays["X_test"], arrays["y_test"]).numpy()
    removed = arrays["removed"].copy()
    removed[rows] = True
    new = dict(arrays, w=w.cpu().numpy(), X=X, y=y, accuracy=acc, removed=removed)
    return new, time.perf_counter() - t0


def _print_certificate(out, cert, unit) -> None:
    out(f"certificate of request {cert['request']}: ids {_ids_text(cert['ids'])} (S={cert['S']}) unlearned with "
        f"K={cert['K']} noisy {unit} at sigma={cert['sigma']:.6g}")
    out(f"  (eps, delta) = ({cert['eps']:.6g}, {cert['delta']:.6g}) at Renyi order alpha*={cert['alpha']:.6g} "
        f"[target eps={cert['eps_target']:g}]: the chains are (eps, delta)-indistinguishable from chains "
        "retrained from scratch without every removed row")
    out(f"  n={cert['n']} m={cert['m']:.6g} L={cert['L']:.6g} M={cert['M']:g} eta={cert['eta']:.6g} "
        f"b={'full' if cert['b'] == cert['n'] else cert['b']}; bound: "
        + (f"{cert['bound_name']} ({cert['bound_mode']}), " if cert.get("bound_name") else "") + cert["bound"])
    ratio = cert["retrain_steps"] / max(cert["cumulative_steps"], 1)
    out(f"  cumulative unlearning {cert['cumulative_steps']} {unit} over {cert['request']} request(s) vs "
        f"retraining from scratch at each request {cert['request']} x {cert['learn_T']} = "
        f"{cert['retrain_steps']} {unit} ({ratio:.3g}x)")


# ---------------------------------------------------------------- status, export
def cmd_status(args) -> int:
    st = statefile.load(args.state)
    _check_features(st, args.features)
    meta, settings, ds = st.meta, st.meta["settings"], st.meta["dataset"]
    consts, unit = constants_of(meta), _unit(settings)
    print(f"state folder {st.path} (version {st.version}): {ds['name']} from {ds['source']} "
          f"(sha256 {ds['sha256'][:16]}), n={ds['n']} d={ds['d']}, {ds['num_classes']} classes {ds['classes']}")
    batch = "full batch" if settings["batch_size"] == "full" else f"b={settings['batch_size']}"
    print(f"{settings['method']} {batch}, sigma={settings['sigma']:.6g} ({settings['sigma_rule']}), learned T={settings['T']} {unit}, "
          f"{settings['trials']} chains; " + describe_constants(consts))
    requests = meta["requests"]
    if requests:
        print(f"requests ({len(requests)}):")
        print(f"  {'#':>3} {'S':>5} {'K':>7} {'eps':>10} {'alpha*':>10} {'total K':>8}  ids")
        for r in requests:
            c = r["certificate"]
            print(f"  {r['request']:>3} {r['S']:>5} {r['K']:>7} {c['eps']:>10.4g} {c['alpha']:>10.4g} "
                  f"{c['cumulative_steps']:>8}  {_ids_text(r['ids'], 6)}")
        c = requests[-1]["certificate"]
        print(f"current guarantee: (eps, delta) = ({c['eps']:.6g}, {c['delta']:.6g}) at alpha*={c['alpha']:.6g}: "
              f"the chains are indistinguishable from retraining from scratch without the "
              f"{sum(r['S'] for r in requests)} removed row(s); {c['cumulative_steps']} {unit} spent vs "
              f"{c['retrain_steps']} for retraining at each request")
    else:
        print("requests: none yet (the chains are the learned ones; no removal to certify)")
    b = None if settings["batch_size"] == "full" else int(settings["batch_size"])
    S = settings["request_size"]
    try:
        K_next = plan_request(consts=consts, sigma=settings["sigma"], b=b, Ks=[r["K"] for r in requests],
                              sizes=[r["S"] for r in requests] + [S], eps_target=settings["eps_default"],
                              bound=settings.get("bound", "paper"))[0]
        print(f"next request of {S} row(s) at eps={settings['eps_default']:g} would need K={K_next} {unit}")
    except accountant.InfeasibleTargetError as exc:
        print(f"next request of {S} row(s) at eps={settings['eps_default']:g}: {exc}")
    print(f"held-out accuracy ({len(st.arrays['y_test'])} rows): {_acc_text(st.arrays['accuracy'])}")
    return 0


def cmd_export(args) -> int:
    if not args.out.lower().endswith(".npz"):
        raise cli.UsageError(f"--out {args.out!r} is not allowed (allowed: a file name ending in .npz)")
    st = statefile.load(args.state)
    C = st.arrays["w"].shape[0]
    if args.chain >= C:
        raise StateError(f"--chain {args.chain} does not exist (allowed: 0..{C - 1})")
    meta, ds = st.meta, st.meta["dataset"]
    cert = meta["requests"][-1]["certificate"] if meta["requests"] else None
    results.check_writable(os.path.dirname(os.path.abspath(args.out)))
    w = st.arrays["w"][args.chain].astype(np.float64)
    results.write_npz(args.out, {
        "w": w, "classes": np.asarray(ds["classes"]), "num_classes": np.asarray(ds["num_classes"]),
        "chain": np.asarray(args.chain), "state_version": np.asarray(st.version),
        "dataset_sha256": np.asarray(ds["sha256"]), "accuracy": np.asarray(st.arrays["accuracy"][args.chain]),
        "certificate": np.asarray(json.dumps(results.to_jsonable(cert)))})
    rule = (f"x @ w > 0 -> label {ds['classes'][0]}, else {ds['classes'][1]}" if ds["num_classes"] == 2
            else f"argmax(x @ w) indexes the labels {ds['classes']}")
    guarantee = "no removal yet" if cert is None else f"(eps, delta) = ({cert['eps']:.6g}, {cert['delta']:.6g})"
    print(f"wrote {args.out}: chain {args.chain} of {C}, w {tuple(w.shape)}, held-out accuracy "
          f"{st.arrays['accuracy'][args.chain]:.4f}, state version {st.version}, {guarantee}; predict: {rule}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
