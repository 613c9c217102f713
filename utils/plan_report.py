"""What ``--plan_only`` prints: the tables of sigma / K / K lists it saves in metrics.json, and the run's
time estimated from its chain-step count and a short calibration of this machine's step speed.

The tables are read from the saved metrics themselves, so they never disagree with the file: every
entry keyed by a swept value (sigma, eps, S, b, K) becomes a column of one table per key set, nested
maps become row x column tables, and step lists are shown abridged with their sums.
"""
from __future__ import annotations

import time

import numpy as np

# metrics entries that are not part of the plan's tables (headers, records shown elsewhere)
_SKIP = {"schema_version", "plan_only", "mode", "dataset", "family", "constants", "certificates", "warnings",
         "wall_clock_seconds", "truncation", "settings", "sigma_table", "comparison", "batch_sizes",
         "lmc_removed_points", "z_lists", "Z_B"}
CALIBRATION_SECONDS = 0.5   # measured steps per device; one warm-up step before


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return format(float(v), ".6g")
    return str(v)


def _steps(values: list, with_sum: bool = False) -> str:
    """A list, abridged: the first five, the last (and for step lists the sum)."""
    shown = " ".join(_fmt(v) for v in values[:5])
    if len(values) > 6:
        shown += f" ... {_fmt(values[-1])}"
    elif len(values) == 6:
        shown += f" {_fmt(values[-1])}"
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric and with_sum and len(values) > 1:
        return f"[{shown}] ({len(values)} values, sum {_fmt(sum(values))})"
    return f"[{shown}]" + (f" ({len(values)} values)" if len(values) > 6 else "")


def _is_step_list(name: str) -> bool:
    """K lists (steps per request) are summed; sweeps, eps and noise lists are not."""
    return "k_list" in name.lower()


def _scalar(v) -> bool:
    return isinstance(v, (int, float, str)) or v is None


def plan_lines(metrics: dict) -> list[str]:
    """The plan's tables as text lines (what --plan_only prints)."""
    lines: list[str] = []
    flat: dict[tuple, dict] = {}          # key set -> {entry name: {key: value}}
    for name, value in metrics.items():
        if name in _SKIP or value is None:
            continue
        if isinstance(value, dict) and value and all(_scalar(v) for v in value.values()):
            flat.setdefault(tuple(value), {})[name] = value
        elif isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
            lines.append(f"{name}:")
            lines += [f"  {k}: {_steps(v, with_sum=_is_step_list(name))}" for k, v in value.items()]
        elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            cols = list(dict.fromkeys(c for row in value.values() for c in row))
            if not all(_scalar(x) for row in value.values() for x in row.values()):
                continue
            lines.append(f"{name} (rows: outer key, columns: inner key):")
            lines.append("  " + f"{'':>10}" + "".join(f"{c:>12}" for c in cols))
            for r, row in value.items():
                lines.append("  " + f"{r:>10}" + "".join(f"{_fmt(row.get(c, '')):>12}" for c in cols))
        elif isinstance(value, list) and value and all(_scalar(v) for v in value) and not name.endswith("_values"):
            lines.append(f"{name}: {_steps(value, with_sum=_is_step_list(name))}")
    for keys, entries in flat.items():
        names = list(entries)
        widths = [max(12, len(n) + 2) for n in names]
        lines.append("  " + f"{'':>10}" + "".join(f"{n:>{w}}" for n, w in zip(names, widths)))
        for k in keys:
            lines.append("  " + f"{k:>10}" + "".join(f"{_fmt(entries[n][k]):>{w}}" for n, w in zip(names, widths)))
    return lines


def chain_steps(metrics: dict) -> int | None:
    for key in ("total_chain_steps", "chain_steps"):
        if isinstance(metrics.get(key), (int, float)):
            return int(metrics[key])
    return None


def seconds_per_chain_step(*, n: int, d: int, num_classes: int, device: str = "auto", dtype: str = "float32",
                           batch_size: int | None = None, chains: int = 20,
                           budget: float = CALIBRATION_SECONDS) -> tuple[float, str]:
    """Measured seconds of one chain-step (one full-batch step, or one update of ``batch_size`` rows) on
    random unit-norm data of the run's shape, on the chosen device; and the device's name."""
    import torch

    from utils import engine

    try:
        dev = engine.resolve_device(device)
    except (RuntimeError, ValueError):
        dev = engine.resolve_device("cpu")
    rng = np.random.default_rng(0)
    b = None if batch_size is None or batch_size >= n else int(batch_size)
    n_used = n if b is None else (n // b) * b
    X = rng.normal(size=(n_used, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = rng.integers(0, num_classes, n_used) if num_classes > 2 else rng.choice([-1.0, 1.0], n_used)
    task = engine.to_task(X, y, num_classes, device=dev, dtype=dtype)
    gen = engine.generator_for(0, "calibration", device=dev)
    w = engine.init_chains(C=chains, d=d, num_classes=num_classes, sigma=0.01, m=1e-2, generator=gen,
                           device=dev, dtype=dtype)
    perms = engine.make_perms(chains, n_used, generator=gen, device=dev) if b else None
    updates = 1 if b is None else n_used // b

    def epoch():
        engine.run_chains(w, task, steps=1, eta=1.0, sigma=0.01, m=1e-2, M=1.0, batch_size=b, perms=perms,
                          generator=gen)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    epoch()  # warm-up (allocations, kernel choice)
    done, t = 0, time.perf_counter()
    while done < 2 or time.perf_counter() - t < budget:
        epoch()
        done += 1
    return (time.perf_counter() - t) / (done * updates * chains), str(dev)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_line(metrics: dict, *, n: int, d: int | None, num_classes: int, device: str, dtype: str,
                  family: str, chains: int = 100) -> str | None:
    """One line: the run's estimated time from its chain-steps and the measured step speed here."""
    total = chain_steps(metrics)
    if not total or not d:
        return None
    full, dev = seconds_per_chain_step(n=n, d=d, num_classes=num_classes, device=device, dtype=dtype,
                                       chains=chains)
    line = (f"estimated time: {_duration(total * full)} on {dev} ({total:,} chain-steps x {full * 1e3:.3g} ms "
            f"per full-batch chain-step, measured here just now on random data of this shape")
    sizes = [int(b) for b in metrics.get("batch_sizes") or [] if str(b).isdigit()]
    if family == "SGD" and sizes:  # the plan mixes batch sizes: its time lies between their costs
        b = min(sizes)
        small, _ = seconds_per_chain_step(n=n, d=d, num_classes=num_classes, device=device, dtype=dtype,
                                          batch_size=b, chains=chains)
        line += (f"; {_duration(total * small)} if every update took b = {b} rows ({small * 1e3:.3g} ms per "
                 "chain-update): the run's mix of batch sizes lies between the two")
    return line + "; a machine shared with other jobs can take several times longer)"
