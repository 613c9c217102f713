"""Chains split across ranks under torchrun: chain-steps/s for 1..N ranks and the efficiency against perfect
scaling (issue 20 item 4).

For each r in 1..N the script starts ``python -m torch.distributed.run --standalone --nproc_per_node r`` on
itself (``--worker``); every rank runs its share of C chains (utils/distributed.chain_range, as the scripts
do) for the same steps, and the time is from a barrier before the first step to a barrier after the last
(process start, data loading and the process group's setup are not in it). Efficiency(r) =
rate(r) / (r x rate(1)). On the CPU each rank runs one torch thread (the 1-rank baseline too), so r ranks
need r free cores; a load average above the cores in the header means the figures are shared-machine ones.

    python bench/scaling.py                      # CPU ranks, N = usable cores
    python bench/scaling.py --device cuda        # one rank per GPU of this node, N = GPUs
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402


def worker(args) -> int:
    import torch
    import torch.distributed as dist

    from utils import accountant, distributed, engine, models

    world = distributed.setup(args.device)
    device = engine.resolve_device(distributed.device_spec(args.device))
    if device.type == "cpu":
        torch.set_num_threads(1)
    problem = common.load_problem(args.kind)
    b = None if args.batch == "full" else int(args.batch)
    if b is not None:
        problem = common.truncate_to_batches(problem, b)
    n, d, k = problem.X.shape[0], problem.X.shape[1], problem.num_classes
    consts = accountant.make_constants(n=n, lam=1e-6, M=models.model_for(k).default_M, num_classes=k)
    task = engine.to_task(problem.X, problem.y, k, device=device, dtype="float32")
    a, z = distributed.chain_range(args.chains, world.rank, world.size)
    gen = lambda: engine.generator_for(0, "scaling", device=device)  # noqa: E731

    def run(steps):
        if z == a:
            return
        w0 = engine.init_chains(C=z - a, d=d, num_classes=k, sigma=0.03, m=consts.m, generator=gen(),
                                device=device, first_chain=a)
        perms = None if b is None else engine.make_perms(z - a, n, generator=gen(), device=device, first_chain=a)
        engine.run_chains(w0, task, steps=steps, eta=consts.eta, sigma=0.03, m=consts.m, M=consts.M,
                          batch_size=b, perms=perms, generator=gen(), first_chain=a)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    run(1)   # warm-up: kernels chosen, memory allocated
    distributed.barrier()
    t0 = time.perf_counter()
    run(args.steps)
    distributed.barrier()
    seconds = time.perf_counter() - t0
    if world.active:
        t = torch.tensor([seconds], dtype=torch.float64, device=device if device.type == "cuda" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        seconds = float(t.item())
    if world.main:
        updates = args.steps * (n // (b or n))
        print("RESULT " + json.dumps({"ranks": world.size, "seconds": seconds, "chain_steps": args.chains * updates,
                                      "share": [a, z], "source": problem.source, "device": str(device)}), flush=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--max_ranks", type=int, default=None, help="N (default: usable cores, or GPUs)")
    parser.add_argument("--chains", type=int, default=128, help="C chains (default 128: 4 shares of 32)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (epochs for --batch b; default 20)")
    parser.add_argument("--batch", default="full", help="'full' or a batch size b (default full)")
    parser.add_argument("--kind", default="binary", choices=["binary", "multiclass"])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.max_ranks is None:
        if args.device == "cuda":
            import torch

            args.max_ranks = torch.cuda.device_count()
        else:
            args.max_ranks = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if args.max_ranks < 1 or args.chains < 1 or args.steps < 1:
        parser.error(f"need --max_ranks, --chains and --steps >= 1, got {args.max_ranks}, {args.chains}, {args.steps}")
    report = common.Report(f"scaling: chains split across 1..{args.max_ranks} {args.device} ranks (torchrun)")
    env = dict(os.environ, OMP_NUM_THREADS="1", UNLEARN_NO_PROGRESS="1")
    results = []
    for r in range(1, args.max_ranks + 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(r),
               __file__, "--worker", "--device", args.device, "--chains", str(args.chains), "--steps",
               str(args.steps), "--batch", args.batch, "--kind", args.kind]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        found = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if out.returncode != 0 or not found:
            report.line(f"{r} ranks failed (exit {out.returncode}): {out.stderr.strip().splitlines()[-1:]}")
            break
        results.append(json.loads(found[-1][len("RESULT "):]))
    if not results:
        return 1
    base = results[0]["chain_steps"] / results[0]["seconds"]
    report.line(f"{results[0]['source']}; C = {args.chains} chains, {args.steps} "
                f"{'steps (full batch)' if args.batch == 'full' else f'epochs of b = {args.batch}'}, float32, "
                f"{'one torch thread per rank' if args.device == 'cpu' else 'one GPU per rank'}")
    report.line()
    rows = []
    for res in results:
        rate = res["chain_steps"] / res["seconds"]
        rows.append([str(res["ranks"]), common.fmt_time(res["seconds"]), f"{rate:,.0f}",
                     f"{rate / (res['ranks'] * base):.0%}"])
    report.table(["ranks", "time", "chain-steps/s", "efficiency vs perfect scaling"], rows)
    report.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
