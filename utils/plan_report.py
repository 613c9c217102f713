"""What ``--plan_only`` prints: the tables of sigma / K / K lists it saves in metrics.json (the run's time,
estimated from its counts of each kind of work and their measured cost here, is utils/workload.py's).

The tables are read from the saved metrics themselves, so they never disagree with the file: every
entry keyed by a swept value (sigma, eps, S, b, K) becomes a column of one table per key set, nested
maps become row x column tables, and step lists are shown abridged with their sums.
"""
from __future__ import annotations

import numpy as np

# metrics entries that are not part of the plan's tables (headers, records shown elsewhere)
_SKIP = {"schema_version", "plan_only", "mode", "dataset", "family", "constants", "certificates", "warnings",
         "wall_clock_seconds", "truncation", "settings", "sigma_table", "comparison", "batch_sizes",
         "lmc_removed_points", "z_lists", "Z_B", "estimate", "estimated_seconds"}


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
