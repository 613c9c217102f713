"""Peak memory and chunking of the full-batch step (issue 6 item 5).

A full-batch step keeps only C x n (x k) intermediates (never n x d x C); when C x n x k x itemsize
exceeds engine.MAX_CHUNK_BYTES the chains run in chunks. For C = 1000 this script runs one step with
the default limit and with smaller limits, and reports the chunk count, the time per step, the peak
resident memory above the level before the step, and how far the weights move (chunking must not
change results beyond rounding: the noise is drawn once per step for all chains; products of other
shapes may sum in another order).

    python bench/memory.py
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench import common, engine_step  # noqa: E402
from utils import engine  # noqa: E402

C = 1000
SIGMA = 0.03


def one_step(task, consts, *, limit: int | None):
    """(weights, seconds, peak bytes, exact) of one step of C chains under a chunk limit (None = default)."""
    default = engine.MAX_CHUNK_BYTES
    gen = engine.generator_for(0, "memory")
    w = engine.init_chains(C=C, d=task.d, num_classes=task.k, sigma=SIGMA, m=consts.m, generator=gen,
                           dtype=task.dtype)
    engine.MAX_CHUNK_BYTES = default if limit is None else limit
    try:
        with common.PeakMemory() as mem:
            t = time.perf_counter()
            out = engine.run_chains(w, task, steps=1, eta=consts.eta, sigma=SIGMA, m=consts.m, M=consts.M,
                                    generator=gen)
            seconds = time.perf_counter() - t
    finally:
        engine.MAX_CHUNK_BYTES = default
    return out, seconds, mem.peak_bytes, mem.exact


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    report = common.Report(f"memory: peak memory and chunking of one full-batch step, C = {C}")
    rows = []
    settings = (("binary", "float64", (None, 16 << 20)),
                ("multiclass", "float32", (None, 256 << 20, 64 << 20)))
    for kind, dtype, limits in settings:
        problem = common.load_problem(kind)
        task = engine.to_task(problem.X, problem.y, problem.num_classes, dtype=dtype)
        consts = engine_step.constants(task.n, task.k)
        itemsize = task.X.element_size()
        model = engine_step.intermediate_bytes(C, task.n, task.k, itemsize)
        reference = None
        for limit in limits:
            chunks = engine_step.chunk_count(C, task.n, task.k, itemsize, limit)
            w, seconds, peak, exact = one_step(task, consts, limit=limit)
            same = "reference" if reference is None else ("bit-identical" if torch.equal(w, reference) else
                                                         f"max abs diff {float((w - reference).abs().max()):.1e}")
            reference = w if reference is None else reference
            rows.append([f"{kind} ({problem.source})", dtype,
                         f"{common.fmt_bytes(engine.MAX_CHUNK_BYTES)} (default)" if limit is None
                         else common.fmt_bytes(limit), str(chunks), common.fmt_bytes(model),
                         common.fmt_bytes(peak) + ("" if exact else " (growth only)"),
                         common.fmt_bytes(task.X.numel() * itemsize), common.fmt_time(seconds), same])
            print("  " + " | ".join(rows[-1]), flush=True)
    report.table(["data", "dtype", "chunk limit", "chunks", "C x n x k x itemsize", "peak memory of the step",
                  "X itself", "step time", "weights vs default"], rows)
    report.line("Peak memory includes the state copy, the noise buffer and the result (each C x d x k), "
                "besides the intermediates of one chunk. An n x d x C per-sample gradient tensor would be "
                f"{common.fmt_bytes(12000 * 784 * C * 4)} in float32 for binary data.")
    report.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
