"""``unlearn.py`` for networks (``learn --model mlp``): learn once, remove rows by noisy fine-tuning, a
certificate per request (docs/METHOD.md §13). unlearn.py hands its commands here when the model is a network;
everything else (tables, ids, the state folder, its lock and atomic versions, the secret seed) is unlearn.py's.

A request replaces the removed rows by fresh random points (docs/METHOD.md §2.3, as for the linear chains),
clips every chain to C0, runs T noisy updates on the current data, clips again and runs the post-processing
epochs. Each request starts from a clipped model, so its certificate does not depend on earlier requests:
every request is (eps, delta)-indistinguishable from the certifying run on its current data (§13.1).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from contextlib import nullcontext

import numpy as np

from utils import accountant, bounds, checks, cli, distributed, jsonable, network, results
from utils import state as statefile

import unlearn as U

# learn's flags of the linear chains: a network does not read them
LINEAR_ONLY = ("K", "lam", "m", "M", "L")


class _StateChains:
    """What utils.finetune.Networks reads of a sampler, for a state's chains: one generator per (phase, keys)
    from the state's secret seed, the state's batch orders."""

    def __init__(self, *, seed, k, n, trials, device, dtype, X_test, y_test, perms):
        from utils import engine

        self.engine, self.seed, self.k, self.n, self.trials = engine, seed, k, n, trials
        self.device, self.dtype = engine.resolve_device(device), engine.resolve_dtype(dtype)
        self.X_test, self.y_test, self._perms = X_test, y_test, perms
        self.world = distributed.world()

    def gen(self, *keys):
        return self.engine.generator_for(self.seed, U.SEED_KEY, *keys, device=self.device)

    def perms(self, b, C):
        import torch

        return None if self._perms is None else torch.as_tensor(self._perms, device=self.device)

    def timed(self, phase):
        return nullcontext()


def _networks(settings, recipe, *, k, n, device, X_test, y_test, perms):
    from utils import finetune

    source = _StateChains(seed=settings["seed"], k=k, n=n, trials=settings["trials"], device=device,
                          dtype=settings["dtype"], X_test=X_test, y_test=y_test, perms=perms)
    return finetune.Networks(source, recipe)


def _recipe(settings) -> network.Recipe:
    return network.Recipe(**settings["recipe"])


def _plan(recipe, fc, *, sigma: float, eps_target: float, bound: str):
    """(T, eps, alpha*, bound name): the fewest noisy updates meeting eps_target at sigma, and their eps."""
    T = bounds.finetune_steps(bound, sigma=sigma, eps_target=eps_target, fc=fc)
    return (T,) + tuple(bounds.finetune_eps(bound, T=T, sigma=sigma, fc=fc))


# ---------------------------------------------------------------- learn
def learn(args, loaded) -> int:
    """unlearn.py learn --model mlp, after the table is loaded."""
    for flag in LINEAR_ONLY:
        if getattr(args, flag, None) is not None:
            raise cli.UsageError(f"--{flag} does not apply to --model mlp (allowed with: the linear models)")
    if args.burn_in != "auto":
        raise cli.UsageError("--burn_in does not apply to --model mlp (allowed: --learn_epochs)")
    cli.check_model_flags(args)
    ds, ids, prep = loaded.dataset, loaded.ids, loaded.preprocessing
    recipe = network.Recipe.from_args(args)
    delta = 1.0 / ds.n if args.delta is None else args.delta
    fc = recipe.constants(delta)
    T = recipe.steps(fc, ds.n)
    eps_default = U.DEFAULT_EPS if args.eps is None else args.eps
    if args.sigma is not None:
        sigma, rule = args.sigma, "--sigma"
    else:
        sigma = bounds.finetune_smallest_sigma(args.bound, T=T, eps_target=eps_default, fc=fc)
        rule = f"smallest for T={T} noisy updates at eps={eps_default:g}"
    T_next, eps_next, _, _ = _plan(recipe, fc, sigma=sigma, eps_target=eps_default, bound=args.bound)
    seed, seed_note = U.secret_seed(args)   # the noise must stay secret (docs/METHOD.md §6.4)
    settings = {"model": "mlp", "method": "noisy fine-tuning", "recipe": dataclasses.asdict(recipe),
                "batch_size": "full" if recipe.batch(ds.n) == ds.n else recipe.batch_size, "sigma": sigma, "sigma_rule": rule, "trials": args.trials,
                "seed": seed, "seed_source": "os_entropy" if args.seed is None else "--seed", "dtype": args.dtype,
                "eps_default": eps_default, "request_size": args.request_size, "bound": args.bound,
                "conversion": bounds.CONVERSION[args.bound], "delta": delta, "T": recipe.learn_epochs}
    out = U.Report()
    out(f"learn: {ds.name}: {ds.n} training rows, {len(ds.y_test)} held-out rows, d={ds.d}, "
        f"{recipe.model(ds.num_classes).kind} (labels {ds.identity['classes']}); file sha256 "
        f"{ds.identity['sha256'][:16]}")
    for note in loaded.notes:
        out(note)
    out(prep.describe() + " (x / ||x||_2, train and held-out)")
    out(recipe.describe())
    out(f"noise sigma={sigma:.6g} per coordinate and update ({rule}); {args.trials} chains; noise seed {seed_note}")
    out(f"plan: a request at eps={eps_default:g} needs T={T_next} noisy updates (eps={eps_next:.6g}, delta="
        f"{delta:.4g}), certified against the certifying run: the network trained on the current data, then the "
        f"same clipped noisy fine-tuning (docs/METHOD.md §13), for any number of removed rows")
    from utils import engine

    device = engine.resolve_device(args.device)
    t0 = time.perf_counter()
    perms = None
    if recipe.batch(ds.n) < ds.n:
        perms = engine.make_perms(args.trials, ds.n, generator=engine.generator_for(seed, U.SEED_KEY, "perms"))
    nets = _networks(settings, recipe, k=ds.num_classes, n=ds.n, device=device, X_test=ds.X_test, y_test=ds.y_test,
                     perms=None if perms is None else perms.numpy())
    w = nets.learn(nets.task(ds.X_train, ds.y_train), key=("learn",))
    acc = nets.accuracy(w)
    seconds = time.perf_counter() - t0
    out(f"learned in {seconds:.2f} s; held-out accuracy {U._acc_text(acc)}")
    meta = {"tool": "unlearn.py", "created": U._now(), "device": str(device),
            "dataset": dict(ds.identity, fingerprint=ds.fingerprint, num_classes=ds.num_classes,
                            input=loaded.options, preprocessing=prep.to_json()),
            "settings": settings, "certificate_constants": dataclasses.asdict(fc),
            # what the state checks read of every state (utils/state.check_values); no linear constants
            "constants": {"n": ds.n, "num_classes": ds.num_classes, "delta": delta},
            "learn": {"wall_clock_seconds": seconds, "accuracy_mean": float(acc.mean())}, "requests": []}
    arrays = {"w": w.cpu().numpy(), "X": ds.X_train, "y": ds.y_train, "ids": ids, "X_test": ds.X_test,
              "y_test": ds.y_test, "accuracy": acc, "removed": np.zeros(ds.n, dtype=bool),
              **{f"prep_{k}": v for k, v in prep.arrays().items()}}
    if perms is not None:
        arrays["perms"] = perms.numpy()
    statefile.create(args.state, meta, arrays, out.text())
    print(f"saved state folder {os.path.abspath(args.state)} (version 1; empty request log)")
    return 0


# ---------------------------------------------------------------- remove
def remove(args, st) -> int:
    """unlearn.py remove on a network state (called with the state's lock held)."""
    meta, arrays, settings = st.meta, st.arrays, st.meta["settings"]
    header: list = []
    ids = statefile.read_ids(args.ids, arrays["ids"], id_name=meta["dataset"].get("input", {}).get("id"),
                             skipped=header)
    rows = statefile.rows_for_ids(arrays["ids"], U._removed_by(meta), ids)
    s = len(meta["requests"]) + 1
    n = arrays["X"].shape[0]
    removed = int(arrays["removed"].sum()) + int(rows.size)
    if removed >= n:
        raise statefile.StateError(f"removing {rows.size} more rows would replace {removed} of n={n} rows "
                                   f"(allowed: fewer than n in total)")
    recipe = _recipe(settings)
    fc = accountant.make_finetune_constants(**meta["certificate_constants"])
    eps_target = settings["eps_default"] if args.eps is None else args.eps
    T, eps, alpha, name = _plan(recipe, fc, sigma=settings["sigma"], eps_target=eps_target, bound=settings["bound"])
    out = U.Report()
    if header:
        out(f"--ids file: skipped the header line {header[0]!r}")
    out(f"request {s}: remove {rows.size} row(s), ids {U._ids_text(ids)}; noisy fine-tuning needs T={T} updates "
        f"for eps={eps_target:g}")
    new_arrays, seconds = _unlearn(arrays, rows, T=T, s=s, meta=meta, recipe=recipe, device=args.device)
    cert = accountant.finetune_certificate(
        fc=fc, eps=eps, alpha=alpha, T=T, sigma=settings["sigma"], eps_target=eps_target,
        bound="noisy fine-tuning, docs/METHOD.md §13", **bounds.fields(settings["bound"], name), request=s,
        ids=ids.tolist(), S=int(rows.size), post_epochs=recipe.post_epochs, K=T, n=n)
    acc = new_arrays["accuracy"]
    done = U.Report(echo=False)
    _print_certificate(done, cert)
    done(f"  held-out accuracy {U._acc_text(acc)}; {seconds:.2f} s")
    record = {"request": s, "ids": ids.tolist(), "rows": rows.tolist(), "S": int(rows.size), "K": T,
              "eps_target": eps_target, "certificate": cert, "accuracy_mean": float(np.mean(acc)),
              "wall_clock_seconds": seconds, "time": U._now()}
    new = statefile.commit(st, dict(meta, requests=meta["requests"] + [record]), new_arrays,
                           st.log + out.text() + done.text())
    print(done.text(), end="", flush=True)
    print(f"saved state folder {new.path} (version {new.version}); the previous version and its removed rows "
          "are deleted" if not statefile.pending(new.path) else
          f"saved state folder {new.path} (version {new.version}); deleting the previous version is pending")
    return 0


def _unlearn(arrays, rows, *, T, s, meta, recipe, device):
    """Replace ``rows`` (docs/METHOD.md §2.3), then clip, T noisy updates, clip, post-processing epochs."""
    import torch

    from utils import engine

    settings, k = meta["settings"], meta["dataset"]["num_classes"]
    t0 = time.perf_counter()
    X, y = engine.replace_rows(arrays["X"], arrays["y"], rows, num_classes=k,
                               generator=engine.generator_for(settings["seed"], U.SEED_KEY, "replace", s))
    nets = _networks(settings, recipe, k=k, n=X.shape[0], device=device, X_test=arrays["X_test"],
                     y_test=arrays["y_test"], perms=arrays.get("perms"))
    w = torch.as_tensor(arrays["w"], device=nets.s.device)
    _, w = nets.unlearn(w, nets.task(X, y), T=T, sigma=settings["sigma"], key=("request", s))
    acc = nets.accuracy(w)
    removed = arrays["removed"].copy()
    removed[rows] = True
    return dict(arrays, w=w.cpu().numpy(), X=X, y=y, accuracy=acc, removed=removed), time.perf_counter() - t0


def _print_certificate(out, cert) -> None:
    out(f"certificate of request {cert['request']}: ids {U._ids_text(cert['ids'])} (S={cert['S']}) unlearned by "
        f"T={cert['T']} noisy updates at sigma={cert['sigma']:.6g} ({cert['variant']} clipping), then "
        f"{cert['post_epochs']} noiseless epochs")
    alpha = "" if cert["alpha"] is None or cert["alpha"] != cert["alpha"] else f" at Renyi order alpha*={cert['alpha']:.6g}"
    out(f"  (eps, delta) = ({cert['eps']:.6g}, {cert['delta']:.6g}){alpha} [target eps={cert['eps_target']:g}]: "
        f"the chains are (eps, delta)-{cert['comparison']}, where every removed row is replaced")
    out(f"  C0={cert['C0']:g} C1={cert['C1']} C2={cert['C2']} gamma={cert['gamma']:g} lam={cert['lam']:g}; bound: "
        f"{cert['bound_name']} ({cert['bound_mode']}), {cert['bound']}")


def check_certificates(meta) -> str:
    """unlearn.py verify for a network state: every request's recorded eps against today's accountant."""
    settings = meta["settings"]
    fc = accountant.make_finetune_constants(**meta["certificate_constants"])
    for r in meta["requests"]:
        cert = jsonable.numbers(r["certificate"])
        eps = bounds.finetune_eps(settings["bound"], T=r["K"], sigma=settings["sigma"], fc=fc)[0]
        if not float(cert["eps"]) >= eps * (1 - 1e-9) - 1e-12:
            raise statefile.StateError(f"request {r['request']}'s certificate says eps={cert['eps']:.6g}, but the "
                                       f"accountant gives eps={eps:.6g} for T={r['K']} noisy updates (allowed: a "
                                       "recorded eps at least the bound's; this certificate does not hold)")
    n = len(meta["requests"])
    return (f"certificates: {n} of {n} recomputed with today's accountant (noisy fine-tuning, docs/METHOD.md §13): "
            "every recorded eps holds")


# ---------------------------------------------------------------- status, export
def status(st) -> int:
    meta, settings, ds = st.meta, st.meta["settings"], st.meta["dataset"]
    recipe = _recipe(settings)
    print(f"state folder {st.path} (version {st.version}): {ds['name']} from {ds['source']} "
          f"(sha256 {ds['sha256'][:16]}), n={ds['n']} d={ds['d']}, {ds['num_classes']} classes {ds['classes']}")
    print(f"{recipe.describe()}; sigma={settings['sigma']:.6g} ({settings['sigma_rule']}), {settings['trials']} chains")
    requests = meta["requests"]
    for r in requests:
        c = jsonable.numbers(r["certificate"])
        print(f"  request {r['request']}: S={r['S']} T={c['T']} eps={c['eps']:.4g} delta={c['delta']:.4g}  "
              f"ids {U._ids_text(r['ids'], 6)}")
    if requests:
        c = jsonable.numbers(requests[-1]["certificate"])
        print(f"current guarantee: (eps, delta) = ({c['eps']:.6g}, {c['delta']:.6g}): the chains are {c['comparison']}")
    else:
        print("requests: none yet (the chains are the learned ones; no removal to certify)")
    print(f"held-out accuracy ({len(st.arrays['y_test'])} rows): {U._acc_text(st.arrays['accuracy'])}")
    return 0


def export(args, st, chains) -> int:
    """One chain's parameters (several: gradient clipping composes their Renyi divergences, §6.5)."""
    meta, ds = st.meta, st.meta["dataset"]
    cert = jsonable.numbers(meta["requests"][-1]["certificate"]) if meta["requests"] else None
    if cert is not None:
        cert = {k: v for k, v in cert.items() if k not in ("ids", "rows")}
    if cert is not None and len(chains) > 1:
        fc = accountant.make_finetune_constants(**meta["certificate_constants"])
        if fc.variant != "gradient":
            raise cli.UsageError("--chain with several chains composes Renyi divergences, which model clipping's "
                                 "bound has none of (allowed: one chain)")
        rho = accountant.finetune.rho_gradient_clipping(T=cert["T"], sigma=cert["sigma"], gamma=fc.gamma, lam=fc.lam,
                                                        C0=fc.C0, C1=fc.C1)
        eps, alpha = accountant.dp_epsilon_chains(lambda a: a * rho, chains=len(chains), delta=cert["delta"],
                                                  conversion=meta["settings"]["conversion"])
        cert = dict(cert, eps=eps, alpha=alpha, chains_released=len(chains), eps_one_chain=cert["eps"])
    results.check_writable(os.path.dirname(os.path.abspath(args.out)), "--out folder")
    w = st.arrays["w"][chains[0] if len(chains) == 1 else chains].astype(np.float64)
    acc = st.arrays["accuracy"][chains]
    recipe = _recipe(meta["settings"])
    results.write_npz(args.out, {
        "w": w, "hidden": np.asarray(recipe.hidden), "classes": np.asarray(ds["classes"]),
        "num_classes": np.asarray(ds["num_classes"]), "chain": np.asarray(chains[0] if len(chains) == 1 else chains),
        "state_version": np.asarray(st.version), "dataset_sha256": np.asarray(ds["sha256"]),
        "accuracy": np.asarray(acc[0] if len(chains) == 1 else acc),
        "certificate": np.asarray(json.dumps(results.to_jsonable(cert))), **U._export_preprocessing(st)})
    rule = U.deploy_rule(st, recipe.model(ds["num_classes"]).decision_rule(ds["classes"]))
    print(f"wrote {args.out}: {len(chains)} chain(s) of {st.arrays['w'].shape[0]}, parameters {tuple(w.shape)} "
          f"([W1 (d x {recipe.hidden}), b1, W2, b2]), held-out accuracy {', '.join(f'{a:.4f}' for a in acc[:10])}; "
          f"predict: {rule}")
    print("guarantee: no removal yet" if cert is None else
          f"guarantee: (eps, delta) = ({cert['eps']:.6g}, {cert['delta']:.6g}): {cert['comparison']}")
    return 0


if __name__ == "__main__":
    sys.exit(U.main())
