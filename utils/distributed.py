"""Running one script as many processes under ``torchrun``: each rank runs a share of every configuration's
chains on its own device, rank 0 accounts, logs and writes the run folder (README "Many devices").

Outside torchrun (no ``WORLD_SIZE`` in the environment, or ``WORLD_SIZE=1``) nothing here initialises
``torch.distributed``: ``world()`` is the one-process world and every helper is the identity.

Why the results equal one process's bit for bit: chain c's initial point, permutation and noise come from
its own generator (engine.chain_generators, ``first_chain``), so they do not depend on which rank runs it;
and each rank's share of chains starts at a multiple of CHAIN_ALIGN, so the CPU BLAS kernels group a chain
with the same neighbours as in one process (measured: shares starting elsewhere, or a rank left with a lone
chain, change the last bits of some chains). No torch at import time.
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

# Shares of chains start at multiples of this: the CPU matrix kernels (oneDNN, MKL batched products) block
# the chain axis in groups that divide it, so each chain sees the same arithmetic as in one process.
CHAIN_ALIGN = 32


class PeerFailed(RuntimeError):
    """Another rank stopped (its own error is printed by that rank); this rank stops without a message."""


@dataclass(frozen=True)
class World:
    """This process's place among the ranks torchrun started."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def main(self) -> bool:
        """Rank 0: the one that logs, shows progress and writes files."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def chain_range(self, C: int) -> tuple[int, int]:
        """The chains [start, stop) of C that this rank runs (see chain_range)."""
        return chain_range(C, self.rank, self.size)


_WORLD = World()


def world() -> World:
    return _WORLD


def env_world(environ=None) -> World:
    """The world torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK); one process without it."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return World()
    values = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        text = env.get(name, "0")
        try:
            values[name] = int(text)
        except ValueError:
            raise ValueError(f"environment variable {name}={text!r} is not an integer "
                             "(set by torchrun; allowed: 0 <= RANK < WORLD_SIZE)") from None
    rank, size, local = values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"]
    if size < 1 or not 0 <= rank < size or local < 0:
        raise ValueError(f"torchrun environment RANK={rank} WORLD_SIZE={size} LOCAL_RANK={local} is inconsistent "
                         "(allowed: 0 <= RANK < WORLD_SIZE, LOCAL_RANK >= 0)")
    return World(rank=rank, size=size, local_rank=local)


def chain_range(C: int, rank: int, size: int) -> tuple[int, int]:
    """Chains [start, stop) of C for ``rank`` of ``size``: contiguous, in blocks of CHAIN_ALIGN chains spread
    as evenly as the blocks allow (a lone last chain stays with its block); ranks beyond the blocks get none."""
    if C < 1 or size < 1 or not 0 <= rank < size:
        raise ValueError(f"chain_range needs C >= 1 and 0 <= rank < size, got C={C}, rank={rank}, size={size}")
    blocks = -(-C // CHAIN_ALIGN)
    if blocks > 1 and C - (blocks - 1) * CHAIN_ALIGN == 1:
        blocks -= 1   # one chain alone on a rank goes through BLAS's one-row kernel, whose rounding differs
    first, last = blocks * rank // size, blocks * (rank + 1) // size
    start = min(first * CHAIN_ALIGN, C)
    stop = C if last == blocks else min(last * CHAIN_ALIGN, C)
    return start, stop


def device_spec(device: str) -> str:
    """The device flag for this rank: under torchrun each rank owns cuda:LOCAL_RANK (or runs on the CPU)."""
    w = world()
    spec = str(device).strip().lower()
    if not w.active or spec == "cpu":
        return spec
    if spec.startswith("cuda:"):
        raise ValueError(f"--device {device} names one GPU, but under torchrun each rank uses cuda:LOCAL_RANK "
                         "(allowed: auto, cuda, cpu)")
    import torch

    if spec == "auto" and not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{w.local_rank}"


def _timeout() -> dict:
    """init_process_group's collective timeout: torch's default, or UNLEARN_DIST_TIMEOUT_S seconds (tests set a
    short one to show that a waiting rank keeps its peers in touch; see heartbeat)."""
    value = os.environ.get("UNLEARN_DIST_TIMEOUT_S")
    if not value:
        return {}
    import datetime

    return {"timeout": datetime.timedelta(seconds=float(value))}


HEARTBEAT_S = 1.0    # well below any collective timeout: torch's default is 30 min, the tests' a few seconds
WAITING = "waiting"  # what a heartbeat broadcasts; the job that follows is anything else


def heartbeat():
    """For rank 0 while it waits (e.g. for a state lock another process holds): a function that broadcasts
    WAITING at most every HEARTBEAT_S, so the other ranks, blocked in ``receive_job``, never reach the
    collective timeout however long the wait. None outside torchrun."""
    import time

    if not world().active:
        return None
    last = [time.monotonic()]

    def beat() -> None:
        if time.monotonic() - last[0] >= HEARTBEAT_S:
            broadcast(WAITING)
            last[0] = time.monotonic()
    return beat


def receive_job():
    """The other ranks' side of heartbeat: rank 0's next broadcast that is not WAITING."""
    job = broadcast(None)
    while isinstance(job, str) and job == WAITING:
        job = broadcast(None)
    return job


def setup(device: str = "auto") -> World:
    """Join the process group torchrun started (gloo on the CPU, nccl on CUDA); the one-process world otherwise."""
    global _WORLD
    if _WORLD.active:
        return _WORLD
    env = env_world()
    if env.size == 1:
        return _WORLD
    import torch
    import torch.distributed as dist

    _WORLD = env   # device_spec needs the rank
    try:
        spec = device_spec(device)
        if spec.startswith("cuda"):
            if env.local_rank >= torch.cuda.device_count():
                raise ValueError(f"LOCAL_RANK {env.local_rank} has no GPU: this node has {torch.cuda.device_count()} "
                                 "(allowed: --nproc_per_node at most the GPUs per node)")
            torch.cuda.set_device(env.local_rank)
            backend = "nccl"
        else:
            if not dist.is_gloo_available():
                raise ValueError("this torch build has no gloo backend for CPU ranks (allowed: --device cuda)")
            backend = "gloo"
        dist.init_process_group(backend, **_timeout())
    except BaseException:
        _WORLD = World()
        raise
    _WORLD = World(rank=env.rank, size=env.size, local_rank=env.local_rank, backend=backend)
    atexit.register(shutdown)
    return _WORLD


def shutdown() -> None:
    """Leave the process group (at exit)."""
    global _WORLD
    if not _WORLD.active:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    _WORLD = World()


def speaks() -> bool:
    """Whether this process prints its error: every rank once the group is formed (errors may be one rank's),
    only rank 0 before it (every rank parses the same flags and fails the same way)."""
    if world().active:
        return True
    try:
        return env_world().main
    except ValueError:
        return True


def on_main(fn):
    """``fn()`` run by rank 0 alone (checks and writes that must happen once); the other ranks get its result,
    or PeerFailed when it raised, so its error is printed once, by rank 0."""
    w = world()
    if not w.active:
        return fn()
    if not w.main:
        ok, out = broadcast(None)
        if not ok:
            raise PeerFailed("rank 0 failed")
        return out
    try:
        out = fn()
    except BaseException:
        try:
            broadcast((False, None))
        except PeerFailed:
            pass
        raise
    broadcast((True, out))
    return out


# A rank that stops because a peer failed waits this long for torchrun to stop it, so torchrun's report names
# the rank that failed first as the root cause (its monitor polls every 0.1-5 s).
PEER_FAILED_WAIT_S = 10.0
# A rank that failed before the group formed stays silent (rank 0 prints the same error: every rank parses the
# same flags) and waits up to this long for torchrun to stop it once rank 0 has printed and exited; ending first
# would get rank 0 stopped before its line on a loaded machine. An upper bound, not a pace: torchrun's SIGTERM
# ends the wait.
SILENT_RANK_WAIT_S = 300.0


def abandon(code: int, *, wait: float = 0.0) -> None:
    """Leave a failed multi-rank run at once: no goodbye collectives that would wait on the dead (os._exit
    after flushing). A rank that only saw a peer fail first (``wait`` = PEER_FAILED_WAIT_S), or failed silently
    before the group formed (SILENT_RANK_WAIT_S), first waits up to ``wait`` seconds to be stopped by torchrun."""
    import sys
    import time

    if wait > 0:
        try:
            time.sleep(wait)
        except KeyboardInterrupt:   # torchrun's SIGTERM (cli.guarded turns it into an interrupt)
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def label(prog: str) -> str:
    """The program name with this rank, for error lines of a multi-rank run."""
    w = world()
    return f"{prog} [rank {w.rank} of {w.size}]" if w.active else prog


# ---------------------------------------------------------------- collectives (identity in one process)
def _collective(fn, *args, **kwargs):
    """Run a collective; a peer that died turns into PeerFailed (its own rank printed the reason)."""
    try:
        return fn(*args, **kwargs)
    except (RuntimeError, ConnectionError) as exc:
        raise PeerFailed(f"another rank stopped ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") \
            from exc


def broadcast(obj):
    """Rank 0's ``obj`` on every rank (a picklable object: parts, cached arrays, decisions)."""
    if not world().active:
        return obj
    import torch.distributed as dist

    box = [obj]
    _collective(dist.broadcast_object_list, box, src=0)
    return box[0]


def barrier() -> None:
    if not world().active:
        return
    import torch.distributed as dist

    _collective(dist.barrier)


def gather_chains(w_local, C: int):
    """The (C, ...) tensor of all chains on every rank, from each rank's share (chain_range) ``w_local``."""
    w = world()
    if not w.active:
        return w_local
    import torch
    import torch.distributed as dist

    ranges = [chain_range(C, r, w.size) for r in range(w.size)]
    width = max(b - a for a, b in ranges)
    device = w_local.device if w.backend == "nccl" else torch.device("cpu")
    padded = torch.zeros((width, *w_local.shape[1:]), dtype=w_local.dtype, device=device)
    padded[: w_local.shape[0]] = w_local.to(device)
    pieces = [torch.empty_like(padded) for _ in range(w.size)]
    _collective(dist.all_gather, pieces, padded)
    full = torch.cat([p[: b - a] for p, (a, b) in zip(pieces, ranges)])
    return full.to(w_local.device)


def check_same(what: str, value: str) -> None:
    """ValueError unless every rank holds the same ``value`` (flags, data): ranks must run one experiment."""
    w = world()
    if not w.active:
        return
    import torch.distributed as dist

    values = [None] * w.size
    _collective(dist.all_gather_object, values, value)
    differ = [r for r, v in enumerate(values) if v != values[0]]
    if differ and not w.main:
        raise PeerFailed(f"rank(s) {differ} differ from rank 0 in {what}")   # rank 0 says it, once
    if differ:
        raise ValueError(f"rank(s) {differ} see different {what} than rank 0 (allowed: the same command, data "
                         "and library versions on every node)")


# ---------------------------------------------------------------- data parallel: rows sharded across ranks
def row_range(n: int, rank: int, size: int) -> tuple[int, int]:
    """Rows [start, stop) of n for ``rank``: contiguous, sizes differing by at most one."""
    if n < size or not 0 <= rank < size:
        raise ValueError(f"cannot shard n={n} rows over {size} ranks (allowed: at least one row per rank)")
    return n * rank // size, n * (rank + 1) // size


def shard_task(X, y, num_classes, *, device, dtype):
    """engine.Task of this rank's rows of (X, y), whose full-batch steps all-reduce the gradient sums: every
    rank keeps every chain and gets the same update (equal to one process's up to float rounding).
    One process: the plain task of all rows."""
    import dataclasses

    from utils import engine

    w = world()
    if not w.active:
        return engine.to_task(X, y, num_classes, device=device, dtype=dtype)
    import torch.distributed as dist

    a, b = row_range(len(X), w.rank, w.size)
    task = engine.to_task(X[a:b], y[a:b], num_classes, device=device, dtype=dtype)

    def reduce(t):
        _collective(dist.all_reduce, t)

    return dataclasses.replace(task, n_total=len(X), reduce=reduce)
