"""Unlearn your own data: learn once with noise, remove real rows later, get a certificate each time.

    python unlearn.py learn  --features my.npz --state st/ [--sigma S | --eps E --K K]
    python unlearn.py learn  --features my.csv --label COL [--id COL] [--test FILE | --test_fraction F]
                             [--standardize test|none|FILE] [--bias 1] [--dropna] --state st/ ...
    python: unlearn.learn(dataframe, label="COL", state="st/", ...)   (same options as keywords)
    python unlearn.py remove --state st/ --ids 17 42            (or --ids FILE)
    python unlearn.py status --state st/
    python unlearn.py export --state st/ --out model.npz [--chain i]
    python unlearn.py verify --state st/ [--trust-existing]

Full batch runs projected noisy gradient descent (PNGD, Langevin unlearning, paper A) certified by the
sequential bound of docs/METHOD.md §3.3 with each request's own size; ``--batch_size b`` runs noisy SGD
(PNSGD, paper B) certified by docs/METHOD.md §4.2, §4.3, §4.4. A request replaces the removed rows by fresh random
unit-norm points with random labels (docs/METHOD.md §2.3: n stays fixed), then continues every chain
for the K steps the accountant finds for this request given the whole history, and saves the new
state atomically (utils/state.py). All math is in utils.accountant, all chains in utils.engine.
``learn --bound best`` (the default) certifies every request with the smallest proven bound
(docs/METHOD.md §7: the Gaussian-DP certificate of §12 at every setting tried), ``--bound gdp`` with the
Gaussian-DP certificate alone, ``--bound paper`` with the papers' own; the choice is saved in the state.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import secrets
import sys
import time
from datetime import datetime, timezone

import numpy as np

from utils import (accountant, bounds, checks, cli, data, distributed, forecast, jsonable, model_kinds, models,
                   reference, results)
from utils import tabular
from utils import state as statefile
from utils.experiments import check_learning, check_unlearning, describe_constants, progress_bar, summary_stats
from utils.state import StateError

DEFAULT_SIGMA = 0.03
DEFAULT_EPS = 1.0
SEED_KEY = "unlearn.py"          # generator streams: (seed, SEED_KEY, phase[, request])


# ---------------------------------------------------------------- flags
def build_parser() -> cli.OneLineParser:
    p = cli.OneLineParser(prog="unlearn.py", allow_abbrev=False,
                          description="Learn on your own features once, then remove rows on request "
                                      "with a certificate (Langevin / noisy-SGD unlearning).")
    sub = p.add_subparsers(dest="command", required=True, metavar="{learn,remove,status,export,verify}")

    lp = sub.add_parser("learn", allow_abbrev=False, help="learn noisy chains on a features file, save the state",
                        description="Learn noisy chains on a features file and save a state folder.")
    cli.add(lp, "--features", required=True,
            help="your data: a table (.csv, .tsv, .parquet; with --label) or .npz/.pt with X_train, y_train, "
                 "X_test, y_test (held-out), optional ids")
    cli.add(lp, "--label", default=None, help="table only: the column holding the labels (required for a table)")
    cli.add(lp, "--id", default=None,
            help="table only: the column of row ids that remove --ids names (default: the row number, 0 = first row)")
    cli.add(lp, "--test", default=None, help="table only: a table of held-out rows with the same columns")
    cli.add(lp, "--test_fraction", type=cli.positive_float, default=None,
            help=f"table only: hold out this fraction of the rows, a seeded stratified split "
                 f"(default {tabular.DEFAULT_TEST_FRACTION} when --test is not given)")
    cli.add(lp, "--split_seed", type=cli.int_at_least(0), default=0, help="seed of --test_fraction's split (default 0)")
    cli.add(lp, "--bias", type=cli.nonneg_float, default=None,
            help="a constant column appended to every row before row normalisation (the model's bias term; "
                 "0 for none; default 1 for tables, 0 for .npz/.pt)")
    cli.add(lp, "--standardize", default=None,
            help="test (column mean and scale from the held-out rows; the default for tables), none (the default "
                 "for .npz/.pt) or a public file with the same columns; never the training rows, so the "
                 "certificate covers it")
    cli.add(lp, "--dropna", action="store_true",
            help="table only: drop the rows that miss a value (a line counts them) instead of refusing the table")
    cli.add(lp, "--m", type=cli.positive_float, default=None,
            help=f"strong convexity m = lam*n directly (default {tabular.TABLE_M:g} for tables, "
                 f"{data.FEATURES_M:g} for .npz/.pt); larger m shrinks the noise's spread sigma^2/m")
    cli.add(lp, "--state", required=True, help="new state folder to create")
    cli.add(lp, "--name", default=None, help="a label for the data (default: the file's name)")
    cli.add(lp, "--sigma", type=cli.SIGMA_POSITIVE, default=None,
            help=f"noise standard deviation (default {DEFAULT_SIGMA}; or choose it with --eps and --K)")
    cli.add(lp, "--eps", type=cli.EPS, default=None,
            help=f"default per-request target epsilon (default {DEFAULT_EPS}); with --K it also sets sigma")
    cli.add(lp, "--K", type=cli.STEPS, default=None,
            help="with --eps: sigma = the smallest noise that unlearns a request of --request_size rows in K steps")
    cli.add(lp, "--request_size", type=cli.int_at_least(1), default=1,
            help="rows per request that --eps/--K plan for, and the size of the future-request table (default 1)")
    # the flags every script shares, with this command's defaults (utils.cli; the rest are its own: --seed is
    # drawn from the system's entropy by default, --sigma is > 0, --batch_size takes one value)
    cli.add_flags(lp, ["lam", "M", "L", "delta", "bound", "burn_in", "trials", "device", "dtype", "yes"],
                  defaults={"bound": "best", "burn_in": "auto", "trials": 10},
                  helps={"lam": f"L2 regularisation lambda, m = lam*n (default: m = {tabular.TABLE_M:g} for tables, "
                                f"{data.FEATURES_M:g} for .npz/.pt)",
                         "delta": "delta of (eps, delta): the probability allowed for the guarantee to fail "
                                  "outright (default min(1e-5, 1/(10 n)))",
                         "L": "smoothness constant (default the closed-form bound 1/4 + m binary, 1 + m multiclass)",
                         "burn_in": "learning steps T (epochs for mini-batches), or auto: W2 to the stationary law "
                                    "<= 1%% of its radius (default %(default)s)",
                         "trials": "independent chains (default %(default)s); export deploys one of them"})
    cli.add(lp, "--batch_size", type=cli.batch_size_value, default=None,
            help="full (PNGD, paper A; the default) or a mini-batch size b dividing n (PNSGD, paper B; K counts "
                 "epochs); --model mlp: any b (default 128)")
    cli.add(lp, "--seed", type=cli.int_at_least(0), default=None,
            help="seed of every noise draw (default: drawn from the operating system's entropy and kept only in "
                 "the private state folder; a known seed lets anyone who also knows the remaining rows recover "
                 "removed rows from a released model)")
    cli.add_model_flags(lp, skip=("batch_size",))   # --model mlp: unlearn_network.py
    lp.set_defaults(run=cmd_learn)

    rp = sub.add_parser("remove", allow_abbrev=False, help="remove rows by id, unlearn, print the certificate",
                        description="Remove rows by id: replace them, run the K noisy steps this request "
                                    "needs, save the new state atomically and print the certificate.")
    cli.add(rp, "--state", required=True, help="the state folder made by learn")
    cli.add(rp, "--ids", nargs="+", required=True,
            help="ids of the rows to remove (spaces or commas), or one file of ids (.npy, or text: spaces, "
                 "commas or lines, # comments, a header line); text ids are compared exactly")
    cli.add(rp, "--eps", type=cli.EPS, default=None,
            help="target epsilon of this request (default: the state's, set at learn)")
    cli.add(rp, "--features", default=None, help="check that this features file is the one the state learned on")
    cli.add_flags(rp, ["device", "yes"])
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
    cli.add(ep, "--chain", type=cli.int_at_least(0), nargs="+", default=[0],
            help="which chain, or several distinct chains (default 0); k chains cost k times the Renyi "
                 "divergence of one, and export prints that composed guarantee")
    ep.set_defaults(run=cmd_export)

    vp = sub.add_parser("verify", allow_abbrev=False, help="check a state folder's whole history and certificates",
                        description="Check the state folder's sealed history, every value, and every request's "
                                    "certificate against the accountant; exit 0 only when all hold.")
    cli.add(vp, "--state", required=True, help="the state folder made by learn")
    cli.add(vp, "--trust-existing", dest="trust_existing", action="store_true",
            help="a state written by an older unlearn.py (no sealed history): after the same checks, accept its "
                 "values once as they are and seal them (a new version); without it such a state is refused")
    vp.set_defaults(run=cmd_verify)
    return p


_RUNNING: dict = {}     # the command under way and the state version it started from (for main.interrupted)


@cli.guarded
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _RUNNING.clear()
    _RUNNING.update(command=args.command, state=os.path.abspath(args.state))
    if distributed.env_world().size > 1:   # rows split across the ranks; rank 0 alone reads and writes the state
        if args.run not in (cmd_learn, cmd_remove) or getattr(args, "batch_size", None) not in (None, "full"):
            raise cli.UsageError("under torchrun unlearn.py runs full-batch learn and remove only, their rows split "
                                 "across the ranks (allowed: python unlearn.py ... for status, export, mini-batches)")
        distributed.setup(args.device)
        if args.run is cmd_remove and not distributed.world().main:
            return _remove_rank(args)
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


def request_rdp(meta):
    """alpha -> the Renyi divergence that the last request's certificate bounds, for ONE chain.

    The same bound plan_request converted: PNGD's sequential recursion, or PNSGD's Z-recursion."""
    consts, settings, requests = constants_of(meta), meta["settings"], meta["requests"]
    Ks, sizes, sigma = [r["K"] for r in requests], [r["S"] for r in requests], settings["sigma"]
    if settings.get("bound", "paper") in ("best", "gdp"):
        b = None if settings["batch_size"] == "full" else int(settings["batch_size"])
        if settings["bound"] == "gdp":     # mu-GDP has the Renyi curve alpha mu^2/2 (docs/METHOD.md §12.5)
            mu = accountant.gdp_mu(Ks=Ks, sizes=sizes, sigma=sigma, consts=consts, b=b)
            return lambda a: accountant.gdp_rdp(alpha=a, mu=mu)
        return accountant.rdp_best(Ks=Ks, sizes=sizes, sigma=sigma, consts=consts, b=b)
    if settings["batch_size"] == "full":
        return lambda a: accountant.epsilon_sequential_sizes(alpha=a, Ks=Ks, sizes=sizes, sigma=sigma, M=consts.M,
                                                            m=consts.m, n=consts.n, eta=consts.eta)
    b = int(settings["batch_size"])
    Z = accountant.Z_stream(Ks=Ks[:-1], sizes=sizes, consts=consts, b=b)[-1]
    bound = (accountant.epsilon_pnsgd_loose if bounds.pnsgd_form(Ks[:-1]) == "loose"
             else accountant.epsilon_pnsgd_tight)
    return lambda a: bound(alpha=a, K=Ks[-1], Z=Z, sigma=sigma, eta=consts.eta, m=consts.m, n=consts.n, b=b)


def default_delta(n: int) -> float:
    """unlearn.py's delta for a user's own rows: at most 1e-5 and at most 1/(10 n), the differential-privacy
    norm of a delta well below 1/n (the papers' scripts keep the papers' 1/n)."""
    return min(1e-5, 1.0 / (10 * n))


def delta_text(delta: float, how: str) -> str:
    """One line saying what delta means, for the people whose rows are removed."""
    return (f"delta={delta:.3g} ({how}): besides eps, the guarantee allows this probability that it fails "
            "outright; eps bounds how much more likely any output is with a removed row than after retraining "
            f"without it (at most e^eps times)")


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
    return checks.divisor("--batch_size", batch_size, n=n)   # or "full"


def constants_of(meta) -> accountant.Constants:
    return accountant.Constants(**meta["constants"])


# ---------------------------------------------------------------- output
class Report:
    """Print lines and keep them for the state's log.txt (echo=False: keep them, print later)."""

    def __init__(self, echo: bool = True):
        self.lines: list[str] = []
        self.echo = echo

    def __call__(self, line: str = "") -> None:
        if self.echo and distributed.world().main:
            print(line, flush=True)
        self.lines.append(line)

    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)


def _ids_text(ids, limit=10) -> str:
    ids = [str(i) for i in ids]
    more = f" ... (+{len(ids) - limit} more)" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def _acc_text(acc) -> str:
    s = summary_stats(acc)
    return f"mean {s['mean']:.4f} (std {s['std']:.4f} over {s['trials']} chains; chain 0: {float(acc[0]):.4f})"


def _note_cost(out, K: int, T: int, unit: str) -> None:
    if K > T:
        out(f"note: K={K} > T={T}: learning afresh on the current data (T {unit}, which drops the rows exactly) "
            f"would cost fewer {unit} here (a larger sigma, a larger n or a larger eps lowers K)")


def _bound_name(b, bound: str = "paper") -> str:
    if bound == "best":
        return "the best proven bound per request, docs/METHOD.md §7"
    if bound == "gdp":
        return "Gaussian DP by shifted interpolation, docs/METHOD.md §12"
    return "PNGD sequential bound, paper A" if b is None else "PNSGD Z-recursion, paper B"


def _future_lines(consts, settings, Ks, sizes) -> list[str]:
    """The K of the next requests of --request_size rows at the state's eps, until learning afresh is cheaper."""
    b = None if settings["batch_size"] == "full" else int(settings["batch_size"])
    eps, bound = settings["eps_default"], settings.get("bound", "paper")

    def next_K(Ks_, sizes_):
        return plan_request(consts=consts, sigma=settings["sigma"], b=b, Ks=Ks_, sizes=sizes_, eps_target=eps,
                            bound=bound)[0]

    rows = forecast.future_requests(next_K, Ks=Ks, sizes=sizes, S=settings["request_size"], T=settings["T"],
                                    n=consts.n)
    return forecast.table(rows, T=settings["T"], unit=_unit(settings), eps=eps, bound=_bound_name(b, bound))


def _unit(settings) -> str:
    return "steps" if settings["batch_size"] == "full" else "epochs"


def _comparison(cert) -> str:
    """What the certificate compares with; state folders written before it was recorded get the generic text."""
    return cert.get("comparison") or accountant.retraining_comparison()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- learn
def cmd_learn(args) -> int:
    if not model_kinds.is_network(args):
        cli.check_model_flags(args, shared=("batch_size",))
    if args.K is not None and args.sigma is not None:
        raise cli.UsageError("give --sigma, or --eps with --K (which choose sigma), not both")
    if args.K is not None and args.eps is None:
        raise cli.UsageError("--K needs --eps: sigma is then the smallest noise meeting eps in K steps")
    if args.lam is not None and args.m is not None:
        raise cli.UsageError("give --lam or --m (= lam*n), not both")
    statefile.check_new(args.state)
    frame, test_frame = getattr(args, "frame", None), getattr(args, "test_frame", None)   # set by learn()
    loaded = tabular.load(args.features if frame is None else frame, name=args.name, label=args.label,
                          id_col=args.id, test=args.test if test_frame is None else test_frame,
                          test_fraction=args.test_fraction, split_seed=args.split_seed, bias=args.bias,
                          standardize=args.standardize, dropna=args.dropna)
    ds, ids, prep = loaded.dataset, loaded.ids, loaded.preprocessing
    checks.integer("--request_size", args.request_size, lo=1, hi=ds.n - 1)   # S < n (docs/METHOD.md §1.1)
    if model_kinds.is_network(args):
        import unlearn_network

        return unlearn_network.learn(args, loaded)
    b = _batch("full" if args.batch_size is None else args.batch_size, ds.n)
    lam = args.m / ds.n if args.m is not None else (ds.default_lam if args.lam is None else args.lam)
    model = models.model_for(ds.num_classes)
    M = args.M if args.M is not None else model.default_M
    model.check_clipping_for_data(M=M, X=ds.X_train)
    if args.L is not None:      # an L below the data's smoothness voids every certificate (docs/METHOD.md §1.3)
        try:
            accountant.check_given_L(args.L, X=ds.X_train, m=lam * ds.n, model=model)
        except ValueError as exc:
            raise cli.UsageError(f"--L {args.L!r}: {exc}") from None
    delta = default_delta(ds.n) if args.delta is None else args.delta
    consts = accountant.make_constants(n=ds.n, lam=lam, M=M, num_classes=ds.num_classes, L=args.L,
                                       delta=delta, d=ds.d, tight=bounds.tight_constants(args.bound))
    sigma, sigma_rule = choose_sigma(args, consts, b)
    T, T_rule = learning_steps(args.burn_in, sigma, consts, model.params(ds.d))
    eps_default = DEFAULT_EPS if args.eps is None else args.eps
    S = args.request_size
    K_next = plan_request(consts=consts, sigma=sigma, b=b, Ks=[], sizes=[S], eps_target=eps_default,
                          bound=args.bound)[0]
    # The noise must stay secret: whoever knows the seed and the remaining rows can replay learning and
    # unlearning with each candidate for a removed row, and only the true one reproduces the released
    # weights. The seed stays in the private state folder (a killed remove reruns bit-identically).
    # Under torchrun every rank must draw the same noise (their gradient sums are added up): rank 0's seed.
    seed, seed_note = secret_seed(args)
    settings = {"method": "PNGD" if b is None else "PNSGD", "batch_size": "full" if b is None else b,
                "sigma": sigma, "sigma_rule": sigma_rule, "T": T, "T_rule": T_rule, "trials": args.trials,
                "seed": seed, "seed_source": "os_entropy" if args.seed is None else "--seed", "dtype": args.dtype,
                "eps_default": eps_default, "request_size": S, "R": 0.0, "sequential_form": "paper",
                "bound": args.bound, "conversion": bounds.CONVERSION[args.bound]}

    out = Report()
    out(f"learn: {ds.name}: {ds.n} training rows, {len(ds.y_test)} held-out rows, d={ds.d}, {model.kind} "
        f"(labels {ds.identity['classes']}); file sha256 {ds.identity['sha256'][:16]}")
    for note in loaded.notes:
        out(note)
    out(prep.describe() + " (x / ||x||_2, train and held-out: ||x_i|| = 1 bounds each gradient, as the theory needs)")
    hint = tabular.scale_hint(loaded.raw_test, prep)
    if hint:
        out(hint)
    out(describe_constants(consts))
    out(delta_text(consts.delta, "--delta" if args.delta is not None else "default min(1e-5, 1/(10 n))"))
    out(f"noise sigma={sigma:.6g} ({sigma_rule}); {settings['method']} "
        f"{'full batch' if b is None else f'b={b}'}; learning T={T} {_unit(settings)} ({T_rule}); "
        f"{args.trials} chains; noise seed {seed_note}")
    out(f"plan: a request of {S} row(s) at eps={eps_default:g} will need K={K_next} {_unit(settings)}, certified "
        f"against retraining from scratch for T + K = {T + K_next} {_unit(settings)}")
    _note_cost(out, K_next, T, _unit(settings))
    for line in _future_lines(consts, settings, [], []):
        out(line)

    check_learning(C=args.trials, T=T, b=b, dataset=ds, consts=consts, device=args.device, dtype=args.dtype,
                   yes=args.yes)   # memory, and the time of learning (--yes above a day)
    from utils import engine  # torch only now: every flag and the plan are checked

    device = engine.resolve_device(distributed.device_spec(args.device))
    t0 = time.perf_counter()

    def gen(*keys):
        return engine.generator_for(seed, SEED_KEY, *keys, device=device)

    w0 = engine.init_chains(C=args.trials, d=ds.d, num_classes=ds.num_classes, sigma=sigma, m=consts.m,
                            generator=gen("init"), device=device, dtype=args.dtype)
    perms = None if b is None else engine.make_perms(args.trials, ds.n, generator=gen("perms"), device=device)
    task = distributed.shard_task(ds.X_train, ds.y_train, ds.num_classes, device=device, dtype=args.dtype)
    with progress_bar("learn", T * (ds.n // (b or ds.n)), args.trials) as bar:
        w = engine.run_chains(w0, task, steps=T, eta=consts.eta, sigma=sigma, m=consts.m, M=consts.M,
                              batch_size=b, perms=perms, generator=gen("learn"), progress=bar.update)
    # rows split across ranks: each rank must hold the very chains whose gradients were summed, or the update
    # run is not PNGD and no certificate would hold
    distributed.check_same("learned chains", hashlib.sha256(w.cpu().numpy().tobytes()).hexdigest())
    acc = engine.accuracy(w, ds.X_test, ds.y_test).numpy()
    seconds = time.perf_counter() - t0
    out(f"learned in {seconds:.2f} s; held-out accuracy {_acc_text(acc)}")
    ref = reference.reference(ds.X_train, ds.y_train, ds.X_test, ds.y_test, m=consts.m, M=consts.M,
                              num_classes=ds.num_classes)
    for line in reference.describe(ref, float(acc.mean())):
        out(line)

    meta = {"tool": "unlearn.py", "created": _now(), "device": str(device),
            "dataset": dict(ds.identity, fingerprint=ds.fingerprint, num_classes=ds.num_classes,
                            input=loaded.options, preprocessing=prep.to_json()),
            "reference": ref,
            "constants": dataclasses.asdict(consts), "settings": settings,
            "learn": {"wall_clock_seconds": seconds, "accuracy_mean": float(acc.mean())}, "requests": []}
    arrays = {"w": w.cpu().numpy(), "X": ds.X_train, "y": ds.y_train, "ids": ids, "X_test": ds.X_test,
              "y_test": ds.y_test, "accuracy": acc, "removed": np.zeros(ds.n, dtype=bool),
              **{f"prep_{k}": v for k, v in prep.arrays().items()}}
    if loaded.ids_test is not None and loaded.ids_test.dtype.kind == ids.dtype.kind:
        arrays["ids_test"] = loaded.ids_test     # remove names them as held out instead of "not in the data"
    if perms is not None:
        arrays["perms"] = perms.cpu().numpy()
    distributed.barrier()   # every rank finished learning: a failed one leaves no state
    if distributed.world().main:
        statefile.create(args.state, meta, arrays, out.text())
        print(f"saved state folder {os.path.abspath(args.state)} (version 1; empty request log)")
    return 0


def secret_seed(args) -> tuple[int, str]:
    """(seed, how it was chosen): drawn from the operating system's entropy unless --seed (with a warning)."""
    seed = distributed.broadcast(secrets.randbits(63) if args.seed is None else args.seed)
    if args.seed is not None:
        print(f"unlearn.py: warning: --seed {args.seed} makes the noise replayable: anyone who knows it and the "
              "remaining rows can recover removed rows from a released model (omit --seed for secret noise)",
              file=sys.stderr, flush=True)
    return seed, ("secret (drawn from the OS entropy, kept in the state folder only)" if args.seed is None
                  else "given with --seed (not secret)")


# ---------------------------------------------------------------- remove
def _network(st) -> bool:
    """A state learned with --model mlp (unlearn_network.py runs its commands)."""
    return st.meta["settings"].get("model") == "mlp"


def _removed_by(meta) -> dict:
    return {i: r["request"] for r in meta["requests"] for i in r["ids"]}


def _check_features(st, features) -> None:
    if features is not None:
        info = st.meta["dataset"]
        ds = (tabular.reload(info["input"], info["name"], features) if "input" in info
              else data.load_dataset(info["name"], features=features))
        statefile.check_fingerprint(st, ds.fingerprint, features)


def cmd_remove(args) -> int:
    # under torchrun the other ranks wait in receive_job while this rank waits for the lock: the heartbeat
    # keeps them from the collective timeout (30 min by default) however long another remove holds it
    with statefile.locked(args.state, on_wait=distributed.heartbeat()):
        st = statefile.load(args.state)
        _RUNNING["version"] = st.version
        _check_features(st, args.features)
        if _network(st):
            import unlearn_network

            return unlearn_network.remove(args, st)
        meta, arrays, settings = st.meta, st.arrays, st.meta["settings"]
        header: list = []
        held_out = arrays.get("ids_test")
        ids = statefile.read_ids(args.ids, arrays["ids"], id_name=meta["dataset"].get("input", {}).get("id"),
                                 skipped=header, held_out=held_out)
        consts = constants_of(meta)
        rows = statefile.rows_for_ids(arrays["ids"], _removed_by(meta), ids, held_out=held_out)
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
        if header:
            out(f"--ids file: skipped the header line {header[0]!r}")
        out(f"request {s}: remove {rows.size} row(s), ids {_ids_text(ids)}; the accountant needs K={K} {unit} "
            f"for eps={eps_target:g} given the {s - 1} earlier request(s)")
        _note_cost(out, K, settings["T"], unit)
        check_unlearning(C=arrays["w"].shape[0], K=K, b=b, X=arrays["X"], y=arrays["y"], X_test=arrays["X_test"],
                         y_test=arrays["y_test"], num_classes=meta["dataset"]["num_classes"], consts=consts,
                         device=args.device, dtype=settings["dtype"], yes=args.yes)   # --yes above a day
        if distributed.world().active:   # the other ranks (_remove_rank) unlearn their rows of this request
            if b is not None:
                raise cli.UsageError("this state learned with mini-batches: remove it with python unlearn.py "
                                     "(under torchrun only full-batch states split their rows)")
            distributed.broadcast(dict(arrays=arrays, rows=rows, K=K, s=s, meta=meta, consts=consts, b=b))
        new_arrays, seconds = _unlearn(arrays, rows, K=K, s=s, meta=meta, consts=consts, b=b, device=args.device)
        steps_so_far = sum(Ks) + K
        all_K = Ks + [K]
        retrain = forecast.retraining_steps(settings["T"], all_K)   # the certificate's reference, per request
        cert = accountant.certificate(
            consts=consts, eps=eps, alpha=alpha, K=K, sigma=sigma, R=settings["R"], b=b,
            bound=(("PNGD sequential, per-request S (A, docs/METHOD.md §3.3)" if b is None else
                    "PNSGD Z-recursion, per-request S (B, docs/METHOD.md §4.2-4.4)") if bound == "paper" else
                   "the smaller of Gaussian DP (exact conversion) and, per Renyi order, the smallest proven bound "
                   "over the request history, improved conversion (docs/METHOD.md §7)" if bound == "best" else
                   "Gaussian DP by shifted interpolation over the request history, exact conversion "
                   "(docs/METHOD.md §12)"),
            **bounds.fields(bound, name, bounds.gdp_mu(bound, Ks=Ks + [K], sizes=sizes, sigma=sigma, consts=consts,
                                                       b=b)),
            request=s, ids=ids.tolist(), S=int(rows.size), eps_target=eps_target, Ks=Ks + [K],
            sizes=sizes, Z=Z, cumulative_steps=steps_so_far, retrain_steps=retrain, learn_T=settings["T"],
            comparison=accountant.retraining_comparison(T=settings["T"], K=all_K, unit=unit))
        acc = new_arrays["accuracy"]
        # printed only once committed: a certificate must never show for a request the state does not hold
        done = Report(echo=False)
        _print_certificate(done, cert, unit)
        done(f"  held-out accuracy {_acc_text(acc)}; {seconds:.2f} s")
        record = {"request": s, "ids": ids.tolist(), "rows": rows.tolist(), "S": int(rows.size), "K": K,
                  "eps_target": eps_target, "certificate": cert, "accuracy_mean": float(np.mean(acc)),
                  "wall_clock_seconds": seconds, "time": _now()}
        new_meta = dict(meta, requests=meta["requests"] + [record])
        new = statefile.commit(st, new_meta, new_arrays, st.log + out.text() + done.text())
    print(done.text(), end="", flush=True)
    left = statefile.pending(new.path)
    if left:
        print(f"saved state folder {new.path} (version {new.version}); deleting the previous version failed: "
              f"{', '.join(left)} still hold removed rows and will be deleted by the next command on this state")
    else:
        print(f"saved state folder {new.path} (version {new.version}); the previous version and its removed rows "
              "are deleted")
    return 0


def _settle(path) -> None:
    """Finish the deletion a killed remove left pending (old versions hold removed rows), or report it."""
    deleted, left = statefile.settle(path)
    if deleted:
        print(f"completed a pending deletion in {os.path.abspath(path)}: {', '.join(deleted)} "
              "(left by an interrupted remove; they held removed rows)")
    if left:
        print(f"pending deletion in {os.path.abspath(path)}: {', '.join(left)} still hold removed rows "
              "(a remove is running, or the folder is not writable)")


def _interrupted() -> str:
    """What works after Ctrl-C or SIGTERM (cli.guarded prints it): unlearn.py has no --resume, because every
    command either committed its new version or left the previous one."""
    command, path = _RUNNING.get("command"), _RUNNING.get("state", "")
    try:
        version = statefile._current_version(path)
    except StateError:
        version = None
    if command == "learn":
        if version is None:
            return (f"nothing was saved; rerun the same learn command (it deletes what this one left in {path}; "
                    "there is no --resume)")
        return f"learning had finished: state folder {path} is saved (version {version})"
    if command in ("remove", "verify") and version is not None and version > _RUNNING.get("version", version):
        return (f"the change was committed as version {version} of {path}: 'python unlearn.py status --state "
                f"{path}' shows it (there is no --resume)")
    what = "the request was not committed: " if command == "remove" else ""
    return (f"{what}state folder {path} is unchanged; rerun the same command"
            + (" (it draws the same noise; there is no --resume)" if command == "remove" else ""))


main.interrupted = _interrupted


def _remove_rank(args) -> int:
    """A rank other than 0 under torchrun: run rank 0's request on this rank's rows (rank 0 writes)."""
    job = distributed.receive_job()
    _unlearn(job.pop("arrays"), job.pop("rows"), device=args.device, **job)
    return 0


def _unlearn(arrays, rows, *, K, s, meta, consts, b, device):
    """Replace ``rows`` by fresh random points (docs/METHOD.md §2.3) and run K noisy steps on every chain."""
    import torch  # after the plan: a bad request never imports torch

    from utils import engine

    settings, k = meta["settings"], meta["dataset"]["num_classes"]
    dev = engine.resolve_device(distributed.device_spec(device))
    t0 = time.perf_counter()
    seed = settings["seed"]
    # Replacement points come from a CPU stream keyed by the request number: reruns draw the same points.
    X, y = engine.replace_rows(arrays["X"], arrays["y"], rows, num_classes=k,
                               generator=engine.generator_for(seed, SEED_KEY, "replace", s))
    task = distributed.shard_task(X, y, k, device=dev, dtype=settings["dtype"])
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
    out(f"  (eps, delta) = ({cert['eps']:.6g}, {cert['delta']:.6g}) {_how(cert)} "
        f"[target eps={cert['eps_target']:g}]: the chains are (eps, delta)-{cert['comparison']}, where "
        "every removed row is replaced")
    if cert.get("reading"):
        out(f"  {cert['reading']}")
    out(f"  n={cert['n']} m={cert['m']:.6g} L={cert['L']:.6g} M={cert['M']:g} eta={cert['eta']:.6g} "
        f"b={'full' if cert['b'] == cert['n'] else cert['b']}; bound: "
        + (f"{cert['bound_name']} ({cert['bound_mode']}), " if cert.get("bound_name") else "") + cert["bound"])
    ratio = cert["retrain_steps"] / max(cert["cumulative_steps"], 1)
    out(f"  cumulative unlearning {cert['cumulative_steps']} {unit} over {cert['request']} request(s) vs "
        f"retraining from scratch at each request for T + sum K {unit} (T={cert['learn_T']}): "
        f"{cert['retrain_steps']} {unit} ({ratio:.3g}x)")


def _how(cert) -> str:
    """How the certificate's eps was reached: at a Renyi order, or by Gaussian DP's exact conversion."""
    alpha, mu = jsonable.number(cert.get("alpha")), cert.get("mu")
    if alpha is None or math.isnan(alpha):
        return f"by the exact conversion of mu={jsonable.number(mu):.6g}-Gaussian DP" if mu is not None else ""
    return f"at Renyi order alpha*={alpha:.6g}"


# ---------------------------------------------------------------- status, export
def cmd_status(args) -> int:
    _settle(args.state)
    st = statefile.load(args.state)
    _check_features(st, args.features)
    if _network(st):
        import unlearn_network

        return unlearn_network.status(st)
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
        order = bounds.order_header(settings.get("bound", "paper"))
        print(f"  {'#':>3} {'S':>5} {'K':>7} {'eps':>10} {order:>12} {'total K':>8}  ids")
        for r in requests:
            c = jsonable.numbers(r["certificate"])
            how = bounds.order_or_mu(jsonable.number(c.get("alpha")), c.get("mu"))
            print(f"  {r['request']:>3} {r['S']:>5} {r['K']:>7} {c['eps']:>10.4g} {how:>12} "
                  f"{c['cumulative_steps']:>8}  {_ids_text(r['ids'], 6)}")
        c = jsonable.numbers(requests[-1]["certificate"])
        print(f"current guarantee: (eps, delta) = ({c['eps']:.6g}, {c['delta']:.6g}) {_how(c)}: "
              f"the chains are {_comparison(c)}, where the {sum(r['S'] for r in requests)} removed row(s) are "
              f"replaced; {c['cumulative_steps']} {unit} spent vs {c['retrain_steps']} for retraining at each "
              f"request for T + sum K")
        if requests[-1]["certificate"].get("reading"):
            print(requests[-1]["certificate"]["reading"])
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
    for line in _future_lines(consts, settings, [r["K"] for r in requests], [r["S"] for r in requests]):
        print(line)
    acc = st.arrays["accuracy"]
    print(f"held-out accuracy ({len(st.arrays['y_test'])} rows): {_acc_text(acc)}")
    if "reference" in meta:
        for line in reference.describe(meta["reference"], float(np.mean(acc))):
            print(line.replace("noiseless reference:", "noiseless reference (data at learn):"))
    if "preprocessing" in ds:
        print(_prep_text(ds["preprocessing"]))
    return 0


def check_certificates(meta) -> str:
    """StateError unless every request's recorded eps is at least what today's accountant gives for the recorded
    K history (the certificate then still holds); returns one line saying what was checked."""
    if meta["settings"].get("model") == "mlp":
        import unlearn_network

        return unlearn_network.check_certificates(meta)
    consts, settings = constants_of(meta), meta["settings"]
    b = None if settings["batch_size"] == "full" else int(settings["batch_size"])
    bound, Ks, sizes, worst = settings.get("bound", "paper"), [], [], 0.0
    for r in meta["requests"]:
        Ks.append(r["K"])
        sizes.append(r["S"])
        if b is None:
            eps = bounds.pngd_eps(bound, Ks=Ks, sizes=sizes, sigma=settings["sigma"], consts=consts)[0]
        else:
            eps = bounds.pnsgd_eps(bound, Ks=Ks, sizes=sizes, sigma=settings["sigma"], consts=consts, b=b)[0]
        recorded = float(jsonable.numbers(r["certificate"])["eps"])
        if not recorded >= eps * (1 - 1e-9) - 1e-12:
            raise StateError(f"request {r['request']}'s certificate says eps={recorded:.6g}, but the "
                             f"accountant gives eps={eps:.6g} for its K history {Ks[-5:]} (allowed: a recorded eps "
                             "at least the bound's; this certificate does not hold)")
        worst = max(worst, eps / recorded if recorded > 0 else 0.0)
    n = len(meta["requests"])
    return (f"certificates: {n} of {n} recomputed with today's accountant ({_bound_name(b, bound)}): every recorded "
            f"eps holds" + (f" (largest recomputed / recorded: {worst:.6g})" if n else ""))


def cmd_verify(args) -> int:
    path = os.path.abspath(args.state)
    _settle(path)
    if args.trust_existing:
        with statefile.locked(path):
            _RUNNING["version"] = old = statefile._current_version(path)
            lines = []

            def check(meta, arrays):
                lines.append(check_certificates(meta))
            note = (f"verify --trust-existing at {_now()}: version {old}, written by an older unlearn.py without a "
                    "sealed history, accepted as it was (arrays matched their sha256, every value was consistent, "
                    f"every certificate held under the accountant); sealed from version {old + 1} on\n")
            st = statefile.trust_existing(path, note, check=check)
        print(lines[0])
        print(f"accepted state folder {path} as it was: version {old} sealed as version {st.version} with a new "
              f"{statefile.KEY}; its history before version {st.version} is trusted, not verified")
        return 0
    st = statefile.load(path)
    meta, history = st.meta, st.meta["history"]
    first = history[0]
    start = ("learn" if first["event"] == "learn" else
             f"version {first['version']}, an older state accepted by --trust-existing at {first.get('time', '?')}")
    print(f"state folder {path}: version {st.version}; history of {len(history)} sealed version(s) from {start}; "
          f"{len(meta['requests'])} request(s), {int(st.arrays['removed'].sum())} removed row(s); every seal matches "
          f"{statefile.KEY}, every value is consistent")
    print(check_certificates(meta))
    print(f"verified: nothing in {path} was changed since unlearn.py wrote it (by anyone without its {statefile.KEY})")
    return 0


def _prep_text(prep: dict) -> str:
    """One line: the preprocessing stored at learn (every option is data-independent: covered)."""
    parts = [f"bias column {prep['bias']:g}" if prep["bias"] else "no bias column",
             "no standardisation" if prep["standardize"] == "none" else f"standardised from the {prep['standardize']}"]
    return "preprocessing at learn: " + ", ".join(parts) + "; rows L2-normalised (covered by the certificate)"


def cmd_export(args) -> int:
    if not args.out.lower().endswith(".npz"):
        raise cli.UsageError(f"--out {args.out!r} is not allowed (allowed: a file name ending in .npz)")
    if os.path.isdir(args.out):
        raise cli.UsageError(f"--out {args.out!r} is a folder (allowed: a file name ending in .npz)")
    _settle(args.state)
    st = statefile.load(args.state)
    C = st.arrays["w"].shape[0]
    chains = [int(i) for i in args.chain]
    for i in chains:
        checks.integer("--chain", i, lo=0, hi=C - 1)   # the state's chains 0 .. C-1
    checks.distinct("--chain", chains)
    if _network(st):
        import unlearn_network

        return unlearn_network.export(args, st, chains)
    meta, ds = st.meta, st.meta["dataset"]
    cert = jsonable.numbers(meta["requests"][-1]["certificate"]) if meta["requests"] else None
    if cert is not None:
        # A released model must not say who asked to be forgotten: the removed rows' ids stay in the state.
        cert = {k: v for k, v in cert.items() if k not in ("ids", "rows")}
    if cert is not None and len(chains) > 1:
        k, settings = len(chains), meta["settings"]
        composition = f"{k} chains with independent noise: {k} x the Renyi divergence of one, then converted"
        eps, alpha, gdp = math.inf, math.nan, {}
        if settings.get("bound") != "gdp":
            eps, alpha = accountant.dp_epsilon_chains(request_rdp(meta), chains=k, delta=cert["delta"],
                                                      conversion=settings.get("conversion", "basic"))
        if cert.get("mu") is not None:     # k mu-GDP chains: sqrt(k) mu-GDP (docs/METHOD.md §12.5)
            mu_k = accountant.gdp_chains(mu=cert["mu"], chains=k)
            gdp = accountant.gdp_fields(mu_k)
            if (eps_k := accountant.gdp_epsilon(mu=mu_k, delta=cert["delta"])) <= eps:
                eps, alpha = eps_k, math.nan
                composition = f"{k} chains with independent noise: sqrt({k}) mu-Gaussian DP, exact conversion"
        cert = dict(cert, eps=eps, alpha=alpha, chains_released=k, eps_one_chain=cert["eps"], composition=composition,
                    **gdp)
    results.check_writable(os.path.dirname(os.path.abspath(args.out)), "--out folder")
    # Only the weights, the labels and the certificate leave the state folder: never the noise seed.
    w = st.arrays["w"][chains[0] if len(chains) == 1 else chains].astype(np.float64)
    acc = st.arrays["accuracy"][chains]
    results.write_npz(args.out, {
        "w": w, "classes": np.asarray(ds["classes"]), "num_classes": np.asarray(ds["num_classes"]),
        "chain": np.asarray(chains[0] if len(chains) == 1 else chains), "state_version": np.asarray(st.version),
        "dataset_sha256": np.asarray(ds["sha256"]), "accuracy": np.asarray(acc[0] if len(chains) == 1 else acc),
        "certificate": np.asarray(json.dumps(results.to_jsonable(cert))), **_export_preprocessing(st)})
    rule = deploy_rule(st, models.model_for(ds["num_classes"]).decision_rule(ds["classes"]))
    which = f"chain {chains[0]}" if len(chains) == 1 else f"{len(chains)} chains {_ids_text(chains)}"
    print(f"wrote {args.out}: {which} of {C}, w {tuple(w.shape)}, held-out accuracy "
          f"{', '.join(f'{a:.4f}' for a in acc[:10])}, state version {st.version}; predict: {rule}")
    if cert is None:
        print("guarantee: no removal yet")
    else:
        print(f"guarantee: (eps, delta) = ({cert['eps']:.6g}, {cert['delta']:.6g}) {_how(cert)}"
              + (f" for the {len(chains)} chains together ({cert['composition']}; "
                 f"one chain: eps={cert['eps_one_chain']:.6g})" if len(chains) > 1 else "")
              + f": {_comparison(cert)}" + (f"; {cert['reading']}" if cert.get("reading") else ""))
    return 0


def deploy_rule(st, rule: str) -> str:
    """The model's decision rule preceded by the preprocessing new rows need (the state's, from learn)."""
    ds = st.meta["dataset"]
    if "preprocessing" in ds and (ds["preprocessing"]["bias"] or ds["preprocessing"]["standardize"] != "none"):
        rule = ("x = (x - standardize_mean) / standardize_scale, " if "prep_standardize_mean" in st.arrays else
                "") + ("x = append(x, bias), " if ds["preprocessing"]["bias"] else "") + rule
    return rule


def _export_preprocessing(st) -> dict:
    """The preprocessing a deployed model applies to new rows (row normalisation changes no prediction)."""
    out = {k[len("prep_"):]: v for k, v in st.arrays.items() if k.startswith("prep_")}
    columns = st.meta["dataset"].get("input", {}).get("columns")
    if columns:
        out["columns"] = np.asarray(columns, dtype=str)
    return out


# ---------------------------------------------------------------- Python entry point
def learn(frame, *, state: str, label: str, test=None, **options) -> int:
    """Learn on a pandas DataFrame: ``unlearn.learn(df, state="st/", label="target", test=df_test or
    test_fraction=0.2, id="patient", standardize="test", eps=1, K=10, ...)``; options are learn's flags
    without dashes. Returns 0 and writes the state folder like ``unlearn.py learn``; raises like it."""
    argv = ["learn", "--features", "<DataFrame>", "--state", str(state), "--label", str(label)]
    for key, value in options.items():
        if value is not None and value is not False:
            argv += [f"--{key}"] + ([] if value is True else [str(value)])
    args = build_parser().parse_args(argv)
    args.frame, args.test_frame = frame, test
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
