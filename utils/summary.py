"""One tidy table of many run folders:  ``python -m utils.summary RESULT_DIR [--csv FILE]``.

One row per run x setting x method (every accuracy record ``{mean, std, se, trials}`` a run saved; a sigma
table's rows, ``method = sigma_table``, for --find_k runs), with the run's family, dataset, mode and folder, every
flag of its config.json (``flag_<name>``), the constants it derived (``const_<name>``: n, lam, m, L, M, eta,
delta, ... as the run used them), the swept values that name the setting (K, eps, sigma, S, b, ...), the
certificate's bound (``bound``: its short name, e.g. A-LSI, B-tight, D2D; ``bound_text``: the sentence), the
accuracy's mean / std / trials, the unlearning steps and the run's wall clock. Runs that did not finish
(INCOMPLETE, config.json not saying complete) are listed with ``complete = False`` and no accuracies. Printed,
the table is one block per run, every line at most 160 characters. Redrawing a figure from it, one run of
one dataset (a figure's curves never mix runs or datasets)::

    import pandas as pd, matplotlib.pyplot as plt
    df = pd.read_csv("runs.csv")
    done = df[(df["mode"] == "baseline") & (df["dataset"] == "DIGITS") & df["accuracy_mean"].notna()]
    run = done["run"].iloc[-1]   # one run (its folder's name, as printed): curves never mix runs or datasets
    fig3a = done[(done["run"] == run) & (done["K"] == 1)]
    for method, g in fig3a.groupby("method"):
        g = g.sort_values("eps")
        plt.errorbar(g["eps"], g["accuracy_mean"], yerr=g["accuracy_std"], label=method, capsize=3)
    plt.xscale("log"); plt.xlabel("eps"); plt.ylabel("test accuracy (mean +- std over trials)"); plt.legend()
    # or, with seaborn installed: seaborn.lineplot(fig3a, x="eps", y="accuracy_mean", hue="method")
"""
from __future__ import annotations

import argparse
import os
import sys
import textwrap

from utils import jsonable, results

# What the keys along an accuracy record's path in metrics.json mean, per (family, mode) and top-level
# key, by path depth below that key; "method" defaults to the top-level key.
_LAYOUTS = {
    ("LMC", "baseline"): {"settings": {3: ("K", "eps", "method")}},
    ("LMC", "sequential2"): {"lmc_final": {1: ("S",)}, "lmc_retrain": {1: ("S",)}, "d2d_final": {1: ("ifac",)}},
    ("LMC", "paint_unlearning_sigma"): {"accuracy": {2: ("method", "sigma")}},
    ("LMC", "paint_utility_epsilon"): {"accuracy": {1: ("method",), 3: ("method", "S", "eps")}},
    ("LMC", "paint_utility_s"): {"accuracy": {1: ("method",), 3: ("method", "eps", "S")}},
    ("LMC", "retrain_noiseless"): {"accuracy": {1: ("S",)}},
    ("SGD", "compare_baseline_nonconvergent"): {"accuracy": {3: ("b", "eps", "method")},
                                                "comparison": {2: ("method", "eps"), 3: ("method", "K", "eps")}},
    ("SGD", "sequential"): {"accuracy": {2: ("b", "method")}},
    ("SGD", "paint_unlearning_sigma"): {"accuracy": {3: ("b", "sigma", "method")}},
}
_SETTING_COLUMNS = ("K", "eps", "sigma", "S", "b", "ifac")
WIDTH = 160   # the longest line printed


def _is_accuracy(obj) -> bool:
    return isinstance(obj, dict) and {"mean", "std", "trials"} <= set(obj)


def _records(obj, path=()):
    """(path of keys, parent dict, record) of every accuracy record under obj."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if _is_accuracy(value):
                yield path + (key,), obj, value
            else:
                yield from _records(value, path + (key,))


def _number(text):
    try:
        return int(text) if str(text).lstrip("-").isdigit() else float(text)
    except (TypeError, ValueError):
        return text


def _flag_value(v):
    return " ".join(map(str, v)) if isinstance(v, list) else v


def _lookup(table, keys):
    """metrics[name][k1][k2]... when it leads to a scalar, else None."""
    for k in keys:
        if not isinstance(table, dict) or k not in table:
            return None
        table = table[k]
    return _as_number(table)


def _as_number(v):
    """A metrics value as a number: JSON numbers, and "inf" / "-inf" / "nan" (utils/jsonable.py); else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        return None
    return jsonable.NONFINITE.get(v) if isinstance(v, str) else v


def _scalar(metrics, *names):
    for name in names:
        v = _as_number(metrics.get(name))
        if v is not None:
            return v
    return None


def _certificate(metrics, row) -> dict | None:
    """The certificate that covers this row (same method kind, K and sigma when known)."""
    d2d = "d2d" in str(row.get("method"))
    certs = [c for c in metrics.get("certificates") or [] if isinstance(c, dict)
             and ("method" not in c or (c["method"] == "d2d") == d2d)]
    for c in certs:
        if row.get("K") is not None and c.get("K") != row.get("K"):
            continue
        if d2d:
            return c
        if isinstance(row.get("sigma"), float) and isinstance(c.get("sigma"), (int, float)) \
                and abs(c["sigma"] - row["sigma"]) > 1e-12 * max(1.0, abs(row["sigma"])):
            continue
        return c
    texts = {c.get("bound") for c in certs}
    return certs[0] if len(texts) == 1 else None


def short_bound(cert: dict | None) -> str | None:
    """A certificate's bound in a word: its bound_name (A-LSI, B-loose, B-tight, ...; a stream's distinct
    names joined by '/'), D2D for Descent-to-Delete, none for sigma = 0, else the sentence's first words."""
    if not cert:
        return None
    name = cert.get("bound_name")
    if isinstance(name, list):
        name = "/".join(dict.fromkeys(str(x) for x in name if x))
    if name:
        return str(name)
    text = str(cert.get("bound") or "")
    if cert.get("method") == "d2d" or text.startswith("D2D"):
        return "D2D"
    if text.startswith("none"):
        return "none"
    head = text.split(" (")[0].split(",")[0].split(":")[0]
    return (head if len(head) <= 20 else head[:17] + "...") or None


def run_rows(folder: str) -> list[dict]:
    """The rows of one run folder (one row, without accuracies, for a run that did not finish)."""
    config = _read(os.path.join(folder, "config.json"))
    config = config if isinstance(config, dict) else {}
    metrics = _read(os.path.join(folder, "metrics.json"))
    unfinished = results.unfinished(folder)
    if unfinished is not None or not isinstance(metrics, dict):
        metrics = None   # a stub or a partial record is never read as results
    base = {"family": None, "dataset": None, "mode": None, "run": os.path.basename(os.path.normpath(folder)),
            "folder": folder, "complete": metrics is not None, "plan_only": None, "unfinished": unfinished}
    flags = config.get("flags") if isinstance(config.get("flags"), dict) else {}
    derived = config.get("derived") if isinstance(config.get("derived"), dict) else {}
    base.update(family=flags.get("family"), dataset=flags.get("dataset"), mode=derived.get("mode"))
    if metrics is not None:
        base.update(family=metrics.get("family", base["family"]), dataset=metrics.get("dataset", base["dataset"]),
                    mode=metrics.get("mode", base["mode"]), plan_only=metrics.get("plan_only"))
        base["wall_clock_seconds"] = (metrics.get("wall_clock_seconds") or {}).get("total")
    base.update({f"flag_{k}": _flag_value(v) for k, v in flags.items() if k != "given_flags"})
    # the constants the run derived (lam and M as used when their flags were not given, n, L, m, ...)
    constants = derived.get("constants") if isinstance(derived.get("constants"), dict) else {}
    base.update({f"const_{k}": v for k, v in constants.items() if isinstance(v, (int, float, str)) or v is None})
    found = list(_records(metrics)) if metrics is not None else []
    if not found:
        return _sigma_table_rows(base, metrics) or [base]
    layout = _LAYOUTS.get((base["family"], base["mode"]), {})
    rows = []
    for path, parent, record in found:
        top, rest = path[0], path[1:]
        names = layout.get(top, {}).get(len(rest))
        row = dict(base, method=top)
        keys = []
        if names is None:
            row.update({f"key{i + 1}": k for i, k in enumerate(rest)})
            if rest:
                row["method"] = f"{top}/{rest[-1]}"
        else:
            for name, key in zip(names, rest):
                if name == "method":
                    row["method"] = key if top not in ("comparison",) else f"{top}_{key}"
                else:
                    row[name] = _number(key)
                    keys.append(key)
        for c in ("sigma", "K", "T"):   # beside the record (baseline's cells)
            if c not in row and isinstance(parent.get(c), (int, float)) and not isinstance(parent.get(c), bool):
                row[c] = parent[c]
        for c in ("K", "sigma"):        # keyed by the setting (main_lmc's K, main_sgd's sigma per b and eps)
            if c not in row and isinstance(metrics.get(c), dict):
                value = _lookup(metrics[c], keys)
                if value is not None:
                    row[c] = value
        if "eps" not in row:
            eps = _scalar(metrics, "eps", "epsilon")
            if eps is not None:
                row["eps"] = eps
        if "sigma" not in row and _scalar(metrics, "sigma") is not None:
            row["sigma"] = metrics["sigma"]
        if "S" not in row and _scalar(metrics, "S") is not None:
            row["S"] = metrics["S"]
        cert = _certificate(metrics, row)
        row["bound"], row["bound_text"] = short_bound(cert), (cert or {}).get("bound")
        row.update(accuracy_mean=record["mean"], accuracy_std=record["std"], accuracy_trials=record["trials"])
        if "unlearn" in str(row["method"]) or "final" in str(row["method"]):
            row["steps"] = _steps(metrics, row, keys)
        rows.append(row)
    return rows


def _sigma_table_rows(base: dict, metrics) -> list[dict]:
    """A sigma table's rows (baseline.py --find_k): the smallest sigma per (K, eps), with its alpha and bound."""
    table = (metrics or {}).get("sigma_table")
    if not isinstance(table, list):
        return []
    rows = []
    for entry in table:
        if not isinstance(entry, dict):
            continue
        row = dict(base, method="sigma_table", K=entry.get("K"), eps=entry.get("epsilon"),
                   sigma=_as_number(entry.get("sigma")), alpha=_as_number(entry.get("alpha")))
        if _scalar(metrics, "S") is not None:
            row["S"] = metrics["S"]
        cert = _certificate(metrics, row)
        row["bound"], row["bound_text"] = short_bound(cert), (cert or {}).get("bound")
        rows.append(row)
    return rows


def _steps(metrics, row, keys):
    """Unlearning steps of the row: K, or the sum of its K list (streams)."""
    for name in ("lmc_k_lists", "k_lists", "d2d_k_lists"):
        table = metrics.get(name)
        if isinstance(table, dict) and keys and isinstance(table.get(keys[0]), list):
            return sum(table[keys[0]])
    return row.get("K")


def _read(path):
    try:
        return results.read_json(path)
    except (OSError, ValueError, RecursionError):
        return None


def find_runs(root) -> list[str]:
    """Every run folder under root (a result folder, a mode folder or a run folder); ``latest`` pointers
    are not followed, so each run appears once."""
    root = os.fspath(root)
    if results.is_run_dir(root):
        return [root]
    found = []
    for folder, dirs, _files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != results.LATEST and not d.startswith(".") and d != "cache"
                         and not os.path.islink(os.path.join(folder, d)))
        if results.is_run_dir(folder):
            found.append(folder)
            dirs[:] = []
    return found


def table(root):
    """The tidy pandas DataFrame of every run under root."""
    import pandas as pd

    rows = [row for folder in find_runs(root) for row in run_rows(folder)]
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    first = ["family", "dataset", "mode", "run", "method", *[c for c in _SETTING_COLUMNS if c in df],
             "bound", "accuracy_mean", "accuracy_std", "accuracy_trials", "steps", "wall_clock_seconds",
             "complete", "plan_only"]
    first = [c for c in first if c in df]
    for c in ("K", "S", "steps", "accuracy_trials"):   # counts stay integers beside missing values
        if c in df:
            values = pd.to_numeric(df[c], errors="coerce")
            if values.notna().equals(df[c].notna()) and (values.dropna() % 1 == 0).all():
                df[c] = values.astype("Int64")
    flags = sorted(c for c in df if c.startswith("flag_"))
    rest = [c for c in df if c not in first and c not in flags]
    return df[first + rest + flags]


def _cell(v, width: int = 24) -> str:
    """A value as printed: short floats, no NaN, at most ``width`` characters."""
    import pandas as pd

    if v is None or (not isinstance(v, (list, tuple, dict)) and pd.isna(v)):
        return ""
    if isinstance(v, bool):
        text = str(v)
    elif isinstance(v, float):
        text = format(v, ".4g")
    else:
        text = str(v)
    return text if len(text) <= width else text[:width - 3] + "..."


def _fit(line: str, width: int = WIDTH) -> str:
    """A line of at most ``width`` characters: a longer one loses its middle ('...')."""
    if len(line) <= width:
        return line
    keep = width - 3
    return line[:keep - keep // 3] + "..." + line[len(line) - keep // 3:]


def _status(first: dict) -> str:
    if not first.get("complete"):
        return "unfinished: " + str(first.get("unfinished") or "no metrics.json")
    seconds = first.get("wall_clock_seconds")
    took = "" if not isinstance(seconds, (int, float)) else f", {seconds:.0f} s"
    return ("plan only" if first.get("plan_only") else "finished") + took


PRINTED = ("method", *_SETTING_COLUMNS, "bound", "accuracy_mean", "accuracy_std", "accuracy_trials", "steps")


def lines(df, *, all_columns: bool = False) -> list[str]:
    """The table as printed: per run a header (family/dataset/mode/run and its state), then its rows with the
    columns it fills (every column as name=value with ``all_columns``); no line longer than WIDTH."""
    out = []
    for run, group in df.groupby("folder", sort=False):
        first = group.iloc[0].to_dict()
        name = "/".join(str(first.get(k) or "?") for k in ("family", "dataset", "mode", "run"))
        out.append(_fit(f"{name}  ({_status(first)})"))
        rows = group.to_dict("records")
        if all_columns:
            for row in rows:
                items = [f"{k}={_cell(v, 60)}" for k, v in row.items() if _cell(v)]
                out += ["  " + x for x in textwrap.wrap("  ".join(items), WIDTH - 2, break_on_hyphens=False)]
            continue
        columns = [c for c in PRINTED if c in group and any(_cell(v) for v in group[c])]
        if not columns or columns == ["method"] and not first.get("complete"):
            continue
        cells = [[_cell(row.get(c)) for c in columns] for row in rows]
        widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
        out.append(_fit("  " + "  ".join(c.rjust(w) if c != "method" else c.ljust(w)
                                          for c, w in zip(columns, widths))))
        for r in cells:
            out.append(_fit("  " + "  ".join(v.rjust(w) if c != "method" else v.ljust(w)
                                              for c, v, w in zip(columns, r, widths))))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m utils.summary",
                                description="One tidy table (run x setting x method) of every run folder under "
                                            "RESULT_DIR, printed and optionally written as CSV.")
    p.add_argument("result_dir", help="a result folder (result/), a mode folder or a run folder")
    p.add_argument("--csv", default=None, help="also write the whole table (every flag a column) to this CSV file")
    p.add_argument("--all_columns", action="store_true", help="print every column, flags and derived constants included")
    args = p.parse_args(argv)
    if not os.path.isdir(args.result_dir):
        print(f"summary: error: {args.result_dir!r} is not a folder (give result/ or a run folder)", file=sys.stderr)
        return 2
    df = table(args.result_dir)
    if df.empty:
        print(f"summary: no run folders under {args.result_dir}", file=sys.stderr)
        return 1
    for line in lines(df, all_columns=args.all_columns):
        print(line)
    if args.csv:
        try:
            folder = os.path.dirname(os.path.abspath(args.csv))
            if not os.path.isdir(folder):   # no folder is made for it: a mistyped path is reported, not created
                raise FileNotFoundError(2, "No such file or directory", folder)
            results.atomic_write_text(args.csv, df.to_csv(index=False))
        except OSError as exc:
            from utils import cli

            print(f"summary: error: cannot write --csv {args.csv}: {cli.os_error_text(exc)}", file=sys.stderr)
            return 2
        print(f"wrote {args.csv} ({len(df)} rows, {len(df.columns)} columns)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
