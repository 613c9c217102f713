"""The multi-chain PNGD / PNSGD sampler: projected noisy (mini-batch) gradient descent, many chains at once.

docs/METHOD.md §2.1 (update), §2.2 (initialisation), §2.3 (removal = replacement), §2.5 (batched trials) and
§2.4 (cyclic mini-batches). One step for C chains is

    w <- Proj_R( (1 - eta m) w - eta * mean_i clip_M(grad loss(w; x_i, y_i)) + sqrt(2 eta sigma^2) xi )

For linear models the clipped per-sample gradients never need to exist: the gradient of sample i is
x_i times a scalar (binary) or a k-vector (softmax), so clipping rescales those C x n (x k) numbers and
a step is two matrix products with the data.

The model (utils/models.py) says how the products become residuals and how they are clipped
(``Model.residual_``); the engine owns the matrix products. Layouts: weights are model.weight_shape(C, d),
(C, d) for one output per sample (binary logistic) and (C, d, k) for k (softmax). Full batch: (C*width, n)
intermediates, a width-k state kept as (C*k, d) per chunk; on CPU in float32 both products go through
oneDNN's matmul (see MATMUL), otherwise through torch.mm. Mini-batch: see _mini_batch_chains.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np
import torch

from utils import models, results

# Upper bound on the bytes of the per-step intermediates of one chunk of chains; more chains run in chunks.
MAX_CHUNK_BYTES = 1 << 30
# Mini-batch steps are memory-bound: gather the batches of this many bytes of chains at a time (cache-sized).
MINIBATCH_GROUP_BYTES = 2 << 20
# Chains sharing one batch order update through plain matrix products: on CPU in float32 through oneDNN's
# matmul as full-batch steps (MATMUL decides), measured ~1.5-2x faster than torch.bmm's; False: torch.bmm.
MINIBATCH_ONEDNN = True
# Below this many multiply-adds per update (b x d x C x k) a CPU step runs on one thread: the work is too
# small to split, and on a busy machine a second thread mostly waits (measured 10-100x slower steps).
SINGLE_THREAD_WORK = 10_000_000
# Mini-batch updates are short (microseconds to milliseconds) and each has several parallel regions, so on a
# machine shared with other jobs a second thread that waits for a core costs far more than it saves: with
# the other core busy, two threads made one update 2.5-30x slower in wall clock and 4-40x in CPU time
# (FASHION, shared orders b = 128 softmax and b = 512 binary at C = 100 and 1000, per-chain b = 128 C = 100).
# Mini-batch updates below this many multiply-adds therefore run on one thread.
MINIBATCH_SINGLE_THREAD_WORK = 1_000_000_000
# Check for divergence every this many epochs, so a run with too large a step stops early.
DIVERGENCE_CHECK_EVERY = 100
# Full-batch products on CPU in float32: "auto" takes oneDNN's matmul when this torch has it, "torch" always
# torch.mm. MKL's sgemm runs its AVX2 kernels on AMD CPUs where oneDNN uses AVX-512: the two products of a
# 100-chain FASHION step measured 1.6x faster (bench/engine_step.py), same float32 rounding level.
MATMUL = "auto"

# Per-chain noise (chain_generators): each chain draws the noise of up to this many updates at once, as many as
# fit in NOISE_BLOCK_ELEMS numbers; both depend only on one chain's size, never on the number of chains C.
NOISE_BLOCK_ELEMS = 1 << 12
MAX_NOISE_BLOCK = 64
# How ChainNoise draws those blocks on CPU; neither setting changes any chain's numbers (see ChainNoise).
# Consecutive blocks of a chain go in one randn call of up to NOISE_DRAW_ELEMS numbers when torch's CPU kernel
# makes that the same draw (_randn_concatenates): the per-call overhead is then paid less often (one FASHION
# chain, 100 chains in turn: 3.0 ns per number at 3920 numbers a call, 2.65 at 15680). 0: one block a call.
NOISE_DRAW_ELEMS = 1 << 14
# Background threads drawing the next blocks while the update computes (CPU, and only while the update runs on
# one thread: at most torch.get_num_threads() - 1 of them, so a run never uses more threads than torch is
# allowed; with torch at one thread, as in the tests, the noise is drawn in the calling thread). 0: never.
NOISE_THREADS = 2
# Bytes the noise buffers of one run may take beyond one block of every chain (merged draws, prefetch buffer).
NOISE_BUFFER_BYTES = 64 << 20
# Part of every learned-chain cache key and resume key (kept torch-free in utils.results).
STREAMS_VERSION = results.STREAMS_VERSION

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class DivergenceError(ValueError):
    """The chains produced non-finite weights (the step size is too large for the objective)."""


# ----------------------------------------------------------------------------- devices, dtypes, seeds
def resolve_device(device="auto") -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' (or a torch.device) -> torch.device; CUDA must exist if asked for."""
    spec = str(device).strip().lower() if isinstance(device, (str, torch.device)) else None
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec is not None and re.fullmatch(r"cuda(:\d+)?", spec):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available here; use 'cpu' or 'auto'")
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA device(s), "
                             f"allowed cuda:0..cuda:{torch.cuda.device_count() - 1}")
        return torch.device(spec)
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def resolve_dtype(dtype="float32") -> torch.dtype:
    """'float32' | 'float64' (or the torch dtype) -> torch.dtype."""
    if dtype in (torch.float32, torch.float64):
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")


def _json_key(key):
    if isinstance(key, (bool, str, type(None))):
        return key
    if isinstance(key, (int, np.integer)):
        return int(key)
    if isinstance(key, (float, np.floating)):
        return float(key)
    if isinstance(key, (tuple, list)):
        return [_json_key(k) for k in key]
    raise ValueError(f"generator keys must be str, int, float, bool, None or tuples of them, got {key!r}")


def generator_for(seed, *keys, device="cpu") -> torch.Generator:
    """A torch.Generator seeded by sha256(seed, *keys): one reproducible stream per (seed, phase, setting)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    text = json.dumps([int(seed), *map(_json_key, keys)], separators=(",", ":"))
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    gen = torch.Generator(device=resolve_device(device))
    gen.manual_seed(int.from_bytes(digest[:8], "big") >> 1)  # 63 bits: valid for every torch backend
    return gen


def chain_generators(generator: torch.Generator, C: int, *, first_chain: int = 0) -> list[torch.Generator]:
    """One generator per chain c = first_chain .. first_chain + C - 1, seeded by sha256(u, c) with u one
    62-bit draw from ``generator``: chain c's draws depend on (generator, c) only, not on how many chains run
    (so ``--trials 50`` reproduces the first 50 of ``--trials 100``, and chains split across devices agree)."""
    _check_generator(generator, generator.device)
    C, first_chain = _positive_int("C", C), _nonnegative_int("first_chain", first_chain)
    u = int(torch.randint(0, 1 << 62, (1,), generator=generator, device=generator.device).item())
    gens = []
    for c in range(first_chain, first_chain + C):
        digest = hashlib.sha256(f"{u}:{c}".encode("ascii")).digest()
        g = torch.Generator(device=generator.device)
        g.manual_seed(int.from_bytes(digest[:8], "big") >> 1)
        gens.append(g)
    return gens


def chain_randn(C: int, shape: tuple[int, ...], *, generator: torch.Generator, dtype="float32",
                first_chain: int = 0) -> torch.Tensor:
    """(C, *shape) standard normals, row c from chain c's own generator (chain_generators): row c is the
    same for every C. On the generator's device."""
    out = torch.empty((_positive_int("C", C), *shape), device=generator.device, dtype=resolve_dtype(dtype))
    for c, g in enumerate(chain_generators(generator, C, first_chain=first_chain)):
        torch.randn(tuple(shape), generator=g, out=out[c])
    return out


def noise_block(per_chain: int) -> int:
    """Updates whose noise a chain draws at once: a function of one chain's size only (NOISE_BLOCK_ELEMS)."""
    return max(1, min(MAX_NOISE_BLOCK, NOISE_BLOCK_ELEMS // max(1, per_chain)))


class ChainNoise:
    """Standard normal noise of ``updates`` updates for C chains, chain c from its own generator.

    Chain c draws blocks ``torch.randn((B, *shape[1:]))`` from chain_generators(generator, C)[c], B =
    noise_block(one chain's size) (the last block shorter); ``next()`` returns the (C, ...) noise of the
    next update, a view of a buffer, valid until the following ``next()``. The stream of chain c is the same
    for every C, and the same however it is drawn:
      - on CPU, k consecutive blocks of a chain may go in one randn call (NOISE_DRAW_ELEMS; ``merge=False``:
        one block a call), which torch's CPU kernel makes the same numbers when a block is a multiple of 16
        numbers (_randn_concatenates);
      - ``threads`` > 0 (CPU): that many background threads draw the next blocks of every chain into a second
        buffer while the caller uses the current one (torch releases the GIL in randn). They take chains one
        at a time from a shared counter; a caller that reaches the next blocks before they are done draws the
        chains left itself, so it never sleeps while there is drawing to do (on a machine whose cores are
        busy, the threads may get no core for milliseconds). Each generator is used by one thread per fill,
        and a fill starts after the previous one ended, so every chain's draws keep their order.
    Threads are released by ``close()`` (or ``with ChainNoise(...) as noise:``).
    """

    def __init__(self, generator: torch.Generator, shape: tuple[int, ...], updates: int, *, dtype,
                 first_chain: int = 0, threads: int = 0, merge: bool = True):
        self.shape, self.left = tuple(shape), _nonnegative_int("updates", updates)
        threads = _nonnegative_int("threads", threads)
        dtype = resolve_dtype(dtype)
        C, per = self.shape[0], math.prod(self.shape[1:])
        self.gens = chain_generators(generator, C, first_chain=first_chain)
        self.block = noise_block(per)
        cpu = generator.device.type == "cpu"
        block_bytes = C * self.block * per * dtype.itemsize  # one block of every chain: the buffer without both
        threads = min(threads, C) if cpu and self.left > self.block and block_bytes <= NOISE_BUFFER_BYTES else 0
        buffers = 2 if threads else 1
        merge = merge and cpu and (self.block * per) % 16 == 0 and _randn_concatenates(dtype)
        k = max(1, min(NOISE_DRAW_ELEMS // (self.block * per),
                       (NOISE_BUFFER_BYTES // block_bytes + 1) // buffers)) if merge else 1
        self.unit = k * self.block  # updates per fill of a buffer
        self.min_tail = -(-16 // per)  # a shorter last block is a call of its own (randn's small-size path)
        size = (C, min(self.unit, max(self.left, 1)), *self.shape[1:])
        self.bufs = [torch.empty(size, device=generator.device, dtype=dtype) for _ in range(buffers)]
        self.threads, self.pool = threads, None
        if threads:
            import concurrent.futures
            self.pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="ChainNoise")
        self.inference = torch.is_inference_mode_enabled()  # thread-local: the workers write the same buffers
        self.cur, self.ahead, self.t, self.filled = 0, None, 0, 0
        self.fills_ahead = 0  # fills begun by the threads (a count for tests and benchmarks)

    def next(self) -> torch.Tensor:
        if self.t == self.filled:
            if self.ahead is not None:  # the fill of the other buffer, begun by the threads
                fill, futures = self.ahead
                self.ahead = None
                self._draw(fill)  # the chains no thread has taken yet
                for f in futures:
                    f.result()
                self.cur = 1 - self.cur
            else:
                if self.left <= 0:
                    raise ValueError("ChainNoise: every update's noise was already drawn")
                fill = self._fill(self.bufs[self.cur])
                self._draw(fill)
            self.t, self.filled = 0, fill.u
            if self.pool is not None and self.left > 0:
                fill = self._fill(self.bufs[1 - self.cur])
                self.ahead = (fill, [self.pool.submit(self._draw, fill) for _ in range(self.threads)])
                self.fills_ahead += 1
        self.t += 1
        return self.bufs[self.cur][:, self.t - 1]

    def _fill(self, buf: torch.Tensor) -> "_Fill":
        """The next min(unit, left) updates of every chain, to be drawn into buf."""
        u = min(self.unit, self.left)
        self.left -= u
        return _Fill(buf, u, itertools.count(), len(self.gens))

    def _draw(self, fill: "_Fill") -> None:
        """Draw the chains of `fill` not yet taken, one at a time (next() on itertools.count is atomic in
        CPython). Per chain: whole blocks, and a last block of >= 16 numbers, in one call."""
        tail = fill.u % self.block if self.unit > self.block else 0
        head = fill.u - tail if 0 < tail < self.min_tail and fill.u > tail else fill.u
        rest = self.shape[1:]
        with torch.inference_mode(self.inference):
            for c in fill.chains:
                if c >= fill.C:
                    return
                torch.randn((head, *rest), generator=self.gens[c], out=fill.buf[c, :head])
                if head < fill.u:
                    torch.randn((fill.u - head, *rest), generator=self.gens[c], out=fill.buf[c, head:fill.u])

    def close(self) -> None:
        """Wait for a draw in progress and release the threads (the stream cannot go on after this)."""
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool, self.ahead, self.left = None, None, 0

    def __enter__(self) -> "ChainNoise":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Fill(NamedTuple):
    buf: torch.Tensor  # (C, >= u, ...) buffer drawn into
    u: int  # updates of every chain
    chains: Iterator[int]  # the next chain to draw, shared by the threads drawing this fill
    C: int


@functools.lru_cache(maxsize=None)
def _randn_concatenates(dtype: torch.dtype) -> bool:
    """Whether CPU randn of a (a multiple of 16) numbers then of s >= 16 from one generator gives exactly randn
    of a + s. True of torch's CPU kernel (uniforms drawn in order, Box-Muller on groups of 16, a size not a
    multiple of 16 redraws its last 16); checked once per dtype, as ChainNoise's merged draws rely on it."""
    for a, s in ((16, 16), (48, 23), (3920, 3920), (32, 785)):
        one, two = torch.Generator().manual_seed(a + s), torch.Generator().manual_seed(a + s)
        parts = torch.cat([torch.randn(a, generator=one, dtype=dtype), torch.randn(s, generator=one, dtype=dtype)])
        if not torch.equal(parts, torch.randn(a + s, generator=two, dtype=dtype)):
            return False
        if not torch.equal(torch.randn(5, generator=one, dtype=dtype), torch.randn(5, generator=two, dtype=dtype)):
            return False
    return True


# ----------------------------------------------------------------------------- data on the device
@dataclass(frozen=True, eq=False)
class Task:
    """A training set on the device, with what every step needs precomputed once."""

    X: torch.Tensor  # (n, d) features
    y: torch.Tensor  # (n,) labels as the model checked them (binary: +1/-1 in X's dtype; softmax: int64 ids)
    data: torch.Tensor  # (n, d) the matrix both products of a step use (binary: rows -y_i x_i, the label folded in)
    targets: torch.Tensor | None  # (n, width) what the residual subtracts (softmax: one-hot labels), or None
    norms: torch.Tensor  # (n,) ||x_i||
    max_norm: float  # max_i ||x_i||: decides whether clipping can fire at all
    n: int
    d: int
    model: models.Model  # the loss: residuals, clipping, weight shape (utils/models.py)
    # Data parallel (utils/distributed.shard_task): these are some rows of n_total; reduce(t) sums t over the
    # ranks in place, so a full-batch step's gradient sum covers every row. None: the rows are all the data.
    n_total: int | None = None
    reduce: Callable[[torch.Tensor], None] | None = None

    @property
    def device(self) -> torch.device:
        return self.X.device

    @property
    def dtype(self) -> torch.dtype:
        return self.X.dtype

    @property
    def k(self) -> int:
        """The model's number of classes (2 = binary logistic)."""
        return self.model.num_classes

    @property
    def width(self) -> int:
        """Residual numbers per sample: 1 (weights (C, d)) or k (weights (C, d, k))."""
        return self.model.width

    def weight_shape(self, C: int) -> tuple[int, ...]:
        return self.model.weight_shape(C, self.d)


def to_task(X, y, num_classes, *, device="cpu", dtype="float32") -> Task:
    """Copy (X, y) to the device once; the model (``num_classes``: an int for models.model_for, or a
    models.Model) checks the labels: binary +1/-1, softmax class ids 0..k-1."""
    model = models.model_for(num_classes)
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    X = torch.as_tensor(X)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X must be a non-empty 2-D array (n, d), got shape {tuple(X.shape)}")
    X = X.to(device=dev, dtype=dt, copy=True).contiguous()
    if not torch.isfinite(X).all():
        raise ValueError("X contains NaN or inf values; features must be finite")
    n, d = X.shape
    y = torch.as_tensor(y).to(device=dev)
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match X, got {tuple(y.shape)}")
    norms = torch.linalg.vector_norm(X, dim=1)
    y, data, targets = model.prepare(X, y)
    return Task(X=X, y=y, data=data, targets=targets, norms=norms, max_norm=float(norms.max()), n=n, d=d,
                model=model)


# ----------------------------------------------------------------------------- initial law, permutations
def init_chains(*, C, d, num_classes, sigma, m, generator, device="cpu", dtype="float32",
                first_chain: int = 0) -> torch.Tensor:
    """w0 ~ N(0, (2 sigma^2 / m) I) for C chains, zeros when sigma = 0 (docs/METHOD.md §2.2).

    ``first_chain``: the chains are first_chain .. first_chain + C - 1 of a larger run (one rank's share);
    ``num_classes``: an int for models.model_for, or a models.Model (it decides the weight shape)."""
    C, d = _positive_int("C", C), _positive_int("d", d)
    shape = models.model_for(num_classes).weight_shape(C, d)
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    sigma = _nonnegative("sigma", sigma)
    if sigma == 0:
        return torch.zeros(shape, device=dev, dtype=dt)
    m = _nonnegative("m", m)
    if m == 0:
        raise ValueError("m = lam * n must be > 0 when sigma > 0: the initial law N(0, 2 sigma^2 / m) needs it")
    _check_generator(generator, dev)
    return chain_randn(C, shape[1:], generator=generator, dtype=dt,
                       first_chain=first_chain).mul_(sigma * math.sqrt(2.0 / m))


def make_perms(C, n, *, generator, device=None, first_chain: int = 0) -> torch.Tensor:
    """(C, n) int64: one fixed uniformly random permutation of 0..n-1 per chain (docs/METHOD.md §2.4), for chains
    first_chain .. first_chain + C - 1."""
    C, n = _positive_int("C", C), _positive_int("n", n)
    # float64 keys: ties (which would bias the permutation) have negligible probability even for n ~ 1e5;
    # chain c's keys come from its own generator, so its permutation does not depend on C
    keys = torch.empty((C, n), device=generator.device, dtype=torch.float64)
    for c, g in enumerate(chain_generators(generator, C, first_chain=first_chain)):
        torch.rand((n,), generator=g, out=keys[c])
    perms = torch.argsort(keys, dim=1)
    return perms if device is None else perms.to(resolve_device(device))


# ----------------------------------------------------------------------------- removal = replacement
def choose_rows(n, S, *, generator=None, exclude=(), mode="random") -> np.ndarray:
    """The S rows a request removes, among rows not in `exclude` (docs/METHOD.md §2.3).

    mode "random": a seeded uniform choice; mode "last": the last S such rows (the reference's choice).
    Returns sorted int64 row indices.
    """
    n, S = _positive_int("n", n), _positive_int("S", S)
    excluded = np.unique(np.asarray(list(exclude), dtype=np.int64))
    if excluded.size and (excluded[0] < 0 or excluded[-1] >= n):
        raise ValueError(f"exclude holds rows outside 0..{n - 1}: {excluded[(excluded < 0) | (excluded >= n)][:5]}")
    available = np.setdiff1d(np.arange(n, dtype=np.int64), excluded, assume_unique=True)
    if S > available.size:
        raise ValueError(f"cannot remove S={S} rows: only {available.size} of n={n} rows are not yet replaced")
    if mode == "last":
        return available[available.size - S:]
    if mode != "random":
        raise ValueError(f"mode must be 'random' or 'last', got {mode!r}")
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"mode 'random' needs a torch.Generator, got {generator!r}")
    pick = torch.randperm(available.size, generator=generator, device=generator.device)[:S].cpu().numpy()
    return np.sort(available[pick])


def fresh_points(S, d, *, num_classes, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """S replacement points: x ~ N(0, I_d) scaled to unit norm, labels uniform (+1/-1 or a class id:
    Model.encode_labels of uniform class ids)."""
    S, d = _positive_int("S", S), _positive_int("d", d)
    model = models.model_for(num_classes)
    x = torch.randn((S, d), generator=generator, device=generator.device, dtype=torch.float64)
    x /= torch.linalg.vector_norm(x, dim=1, keepdim=True)
    labels = torch.randint(0, model.num_classes, (S,), generator=generator, device=generator.device)
    return x, model.encode_labels(labels)


def replace_rows(X, y, rows, *, num_classes, generator):
    """Copies of (X, y) with `rows` replaced by fresh random points (docs/METHOD.md §2.3); numpy or torch."""
    model = models.model_for(num_classes)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be (n, d) and y (n,), got shapes {tuple(X.shape)} and {tuple(y.shape)}")
    n, d = X.shape
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    if rows.size == 0 or np.unique(rows).size != rows.size or rows.min() < 0 or rows.max() >= n:
        raise ValueError(f"rows must be distinct indices in 0..{n - 1}, at least one, got {rows[:10].tolist()}")
    x_new, y_new = fresh_points(rows.size, d, num_classes=model, generator=generator)
    return _with_rows(X, y, rows, x_new, y_new)


class Removal(NamedTuple):
    """One request of a removal stream: the rows it replaced, all rows replaced so far, the dataset after it."""

    rows: np.ndarray
    replaced: np.ndarray
    X: object
    y: object


def removal_stream(X, y, sizes: Sequence[int], *, num_classes, generator, mode="random",
                   exclude=()) -> Iterator[Removal]:
    """Datasets after each request of a stream: request s replaces sizes[s] NEW rows, earlier ones stay.

    Consecutive datasets differ in exactly sizes[s] rows (docs/METHOD.md §2.3). All random draws happen
    in this call (the same draws as choose_rows then replace_rows per request); the datasets are built
    lazily, one copy per request, so a long stream does not hold every copy at once.
    """
    n, done, plan = X.shape[0], [int(r) for r in exclude], []
    for S in sizes:
        rows = choose_rows(n, S, generator=generator, exclude=done, mode=mode)
        plan.append((rows, *fresh_points(rows.size, X.shape[1], num_classes=num_classes, generator=generator)))
        done.extend(rows.tolist())

    def build():
        Xc, yc, replaced = X, y, np.asarray(sorted(int(r) for r in exclude), dtype=np.int64)
        for rows, x_new, y_new in plan:
            Xc, yc = _with_rows(Xc, yc, rows, x_new, y_new)
            replaced = np.union1d(replaced, rows)
            yield Removal(rows=rows, replaced=replaced, X=Xc, y=yc)

    return build()


def _with_rows(X, y, rows, x_new, y_new):
    if isinstance(X, np.ndarray):
        X2, y2 = X.copy(), np.array(y, copy=True)
        X2[rows], y2[rows] = x_new.cpu().numpy(), y_new.cpu().numpy()
        return X2, y2
    X2, y2 = X.clone(), y.clone()
    X2[torch.as_tensor(rows, device=X.device)] = x_new.to(device=X.device, dtype=X.dtype)
    y2[torch.as_tensor(rows, device=y.device)] = y_new.to(device=y.device, dtype=y.dtype)
    return X2, y2


# ----------------------------------------------------------------------------- evaluation
def accuracy(w, X_test, y_test, *, model=None) -> torch.Tensor:
    """(C,) test accuracy per chain by the model's decision rule (Model.hits: binary 1[x.w > 0] == 1[y > 0],
    softmax argmax; docs/METHOD.md §1.2); float64 on CPU. ``model`` None: the papers' model for w's shape,
    (C, d) binary logistic, (C, d, k) softmax."""
    if not isinstance(w, torch.Tensor) or w.ndim not in (2, 3):
        raise ValueError(f"w must be a (C, d) or (C, d, k) tensor, got {type(w).__name__} "
                         f"of shape {tuple(getattr(w, 'shape', ()))}")
    model = models.model_for(w.shape[2] if w.ndim == 3 else 2) if model is None else models.model_for(model)
    X = torch.as_tensor(X_test).to(device=w.device, dtype=w.dtype)
    y = torch.as_tensor(y_test).to(device=w.device)
    if X.ndim != 2 or X.shape[1] != w.shape[1] or y.shape != (X.shape[0],):
        raise ValueError(f"X_test must be (n, {w.shape[1]}) and y_test (n,), got {tuple(X.shape)} and {tuple(y.shape)}")
    C, per_chain = w.shape[0], X.shape[0] * (w.shape[2] if w.ndim == 3 else 1) * X.element_size()
    correct = []
    for a, b in _chunks(C, per_chain):
        correct.append(model.hits(X, w[a:b], y).sum(dim=0))
    return torch.cat(correct).to(device="cpu", dtype=torch.float64) / X.shape[0]


# ----------------------------------------------------------------------------- the sampler
def run_chains(w, task: Task, *, steps, eta, sigma, m, M, R=0.0, batch_size=None, perms=None, generator,
               progress: Callable[[int], object] | None = None, first_chain: int = 0) -> torch.Tensor:
    """Run C chains of PNGD (full batch) or PNSGD (cyclic mini-batches) for `steps` steps / epochs.

    One update: w <- Proj_R((1 - eta m) w - eta mean_{i in B} clip_M(grad loss_i(w)) + sqrt(2 eta sigma^2) xi)
    (docs/METHOD.md §2.1, §2.4). Full batch (batch_size None or n): `steps` updates. Mini-batch b
    (n % b == 0): `steps` epochs of n/b updates over the blocks perms[c, j*b:(j+1)*b] of each chain's
    fixed permutation. The noise xi of chain c comes from its own stream (ChainNoise; none when sigma = 0),
    so results depend neither on chunking nor on how many chains run (``first_chain``: these are chains
    first_chain .. first_chain + C - 1 of a larger run, one rank's share). R = 0 means no projection.
    `progress(u)` is called after each epoch with the number u of updates it made (n/b, or 1).
    Returns new weights (the input is not modified); raises DivergenceError on non-finite weights.
    """
    if not isinstance(task, Task):
        raise ValueError(f"task must be a Task (see to_task), got {type(task).__name__}")
    steps = _nonnegative_int("steps", steps)
    eta = _positive("eta", eta)
    sigma, m, R = _nonnegative("sigma", sigma), _nonnegative("m", m), _nonnegative("R", R)
    M = _positive("M", M, allow_inf=True)
    shape = _check_weights(w, task)
    C = shape[0]
    b = _batch_size(batch_size, task.n)
    _check_generator(generator, task.device)
    if task.reduce is not None and b != task.n:
        raise ValueError(f"data-parallel rows (a sharded task) run full-batch steps only, got batch_size={b}")
    state = w.detach().to(device=task.device, dtype=task.dtype, copy=True).contiguous()
    if b == task.n:
        chains = _full_batch_chains(state, task, eta=eta, m=m, M=M)
    else:
        orders = _perm_blocks(perms, C, task.n, b, task.device)
        chains = _mini_batch_chains(state, task, orders, eta=eta, m=m, M=M)
    updates_per_epoch = task.n // b
    std = math.sqrt(2.0 * eta) * sigma
    limit = SINGLE_THREAD_WORK if b == task.n else MINIBATCH_SINGLE_THREAD_WORK
    with _threads_for(task.device, b * task.d * C * task.width, limit) as spare:
        noise = ChainNoise(generator, shape, steps * updates_per_epoch, dtype=task.dtype, first_chain=first_chain,
                           threads=min(NOISE_THREADS, spare)) if std > 0 and steps else None
        with noise or contextlib.nullcontext():
            _loop(chains, steps, updates_per_epoch, noise, std, R, progress, eta, m)
    return _assemble(chains)


@contextlib.contextmanager
def _threads_for(device: torch.device, work: int, limit: int | None = None):
    """One torch thread for CPU updates below `limit` multiply-adds (SINGLE_THREAD_WORK by default; mini-batch
    steps: MINIBATCH_SINGLE_THREAD_WORK); the thread count is restored after. Yields the threads torch allows
    beyond the update's (torch.get_num_threads() - 1 for a one-thread update, else 0): ChainNoise's."""
    before = torch.get_num_threads()
    single = device.type == "cpu" and work < (SINGLE_THREAD_WORK if limit is None else limit)
    small = single and before > 1
    if small:
        torch.set_num_threads(1)
    try:
        yield before - 1 if single else 0
    finally:
        if small:
            torch.set_num_threads(before)


def _update(chains, j: int, noise: ChainNoise | None, std: float, R: float) -> None:
    """Update j of an epoch for every chunk: gradient step, each chain's own noise (none: sigma = 0), Proj_R."""
    xi = noise.next() if noise is not None else None
    for chunk in chains:
        chunk.gradient_step(j)
        if xi is not None:
            chunk.weights.add_(xi[chunk.start:chunk.stop], alpha=std)
        if R > 0:
            _project_(chunk.weights, R)


def _loop(chains, steps, updates_per_epoch, noise, std, R, progress, eta, m) -> None:
    for epoch in range(steps):
        for j in range(updates_per_epoch):
            _update(chains, j, noise, std, R)
        if progress is not None:
            progress(updates_per_epoch)
        if (epoch + 1) % DIVERGENCE_CHECK_EVERY == 0:
            _check_finite(chains, epoch + 1, steps, eta, m)
    _check_finite(chains, steps, steps, eta, m)


class _Chunk(NamedTuple):
    start: int
    stop: int
    weights: torch.Tensor  # (Cc, d) or (Cc, d, k) view onto the chunk's state, for noise and projection
    gradient_step: Callable[[int], None]  # in place: w <- (1 - eta m) w - eta * mean clipped gradient


def _project_(w: torch.Tensor, R: float) -> None:
    """Proj_R per chain: scale by min(1, R / ||w||) (Frobenius norm for matrices)."""
    norms = torch.linalg.vector_norm(w.reshape(w.shape[0], -1), dim=1)
    scale = torch.div(R, norms).clamp_(max=1.0)  # ||w|| = 0 gives inf -> 1
    w.mul_(scale.view(-1, *([1] * (w.ndim - 1))))


project_ = _project_   # public: utils/finetune.py clips networks and their gradients with it


def _clip_bound(task: Task, M: float) -> torch.Tensor | None:
    """M / ||x_i||, or None when no sample gradient can exceed M (Model.clipping_can_fire). Clipping under
    which the update is not a contraction (softmax) is refused (Model.check_clipping)."""
    task.model.check_clipping(M=M, max_norm=task.max_norm)
    if not task.model.clipping_can_fire(M, task.max_norm):
        return None
    return torch.div(M, task.norms)  # ||x_i|| = 0 gives inf: that gradient is 0 and never clips


@functools.cache
def _onednn_linear_op():
    """torch's oneDNN linear (a, b) -> a @ b.T, or None when this build lacks it or it fails a check."""
    try:
        op = torch.ops.mkldnn._linear_pointwise
        if not torch.backends.mkldnn.is_available():
            return None
        a = torch.arange(15, dtype=torch.float32).view(3, 5)
        b = torch.arange(20, dtype=torch.float32).view(4, 5).flip(0)
        if not torch.equal(op(a, b.t().contiguous().t(), None, "none", [], ""), a @ b.t()):  # small integers: exact
            return None
        return op
    except (AttributeError, RuntimeError):
        return None


def _onednn_linear(task: Task):
    """a @ b.T through oneDNN for this task, or None when the full-batch step should use torch.mm (MATMUL)."""
    if MATMUL not in ("auto", "torch"):
        raise ValueError(f"engine.MATMUL must be 'auto' or 'torch', got {MATMUL!r}")
    if MATMUL != "auto" or task.device.type != "cpu" or task.dtype != torch.float32:
        return None
    precision = getattr(getattr(torch.backends.mkldnn, "matmul", None), "fp32_precision", "none")  # torch >= 2.9
    if str(precision) not in ("none", "ieee"):
        return None  # the user allowed reduced-precision float32 products: keep torch's own choice
    op = _onednn_linear_op()
    return None if op is None else (lambda a, b: op(a, b, None, "none", [], ""))


def _torch_linear(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.mm(a, b.t())


def _full_batch_chains(state, task: Task, *, eta, m, M) -> list[_Chunk]:
    """Per chunk of chains, the full-batch clipped gradient step: two matrix products with the data,
    z = W data^T with (Cc*width, n) intermediates, the model's residual in place, then W <- decay W + lr z data.
    A width-k state is kept as a contiguous (Cc, k, d) copy per chunk, so both products are plain ones."""
    C, n, d, width = state.shape[0], task.n, task.d, task.width
    chunks = _chunks(C, n * width * task.X.element_size())
    linear = _onednn_linear(task) or _torch_linear
    decay, lr = 1.0 - eta * m, -eta / (task.n_total or n)
    bound = _clip_bound(task, M)
    bound = None if bound is None else bound.view(1, 1, n)
    reduce = task.reduce or (lambda g: None)
    data, residual_ = task.data, task.model.residual_
    targets = None if task.targets is None else task.targets.t()[None]  # (1, width, n)

    def step(WT, _j):
        cc = WT.shape[0]
        flat = WT.view(cc * width, d)
        z = linear(flat, data)  # (cc*width, n): binary -y_i x_i.w_c, softmax logits
        residual_(z.view(cc, width, n), targets, bound)
        g = linear(z, data.t())  # sum over (this rank's) rows of the clipped gradients
        reduce(g)
        flat.mul_(decay).add_(g, alpha=lr)

    out = []
    for a, b in chunks:
        if state.ndim == 2:  # one output per sample: the chunk's rows of the state are the weights
            WT = state[a:b]
            out.append(_Chunk(a, b, WT, lambda j, WT=WT: step(WT, j)))
        else:
            WT = state[a:b].transpose(1, 2).contiguous()  # (Cc, k, d): a contiguous copy
            out.append(_Chunk(a, b, WT.transpose(1, 2), lambda j, WT=WT: step(WT, j)))
    return out


def _mini_batch_chains(state, task: Task, orders: "_BatchOrders", *, eta, m, M) -> list[_Chunk]:
    """The step on each chain's batch: one gather per order group, then batched products over the groups.

    Chains that share a batch order (consecutive rows of perms that are equal, see _perm_blocks) form a
    group: its batch is gathered once and the step is a real matrix product, (G, d) x (d, b) for the
    group's G chains (softmax: (G k, d) x (d, b)). With one order per chain (G = 1) every product is a
    matrix-vector product over that chain's own gathered rows, and the step is memory-bound. Groups of
    equal size form a band that runs as one batched product; the gathers of a band go in pieces that stay
    in cache (MINIBATCH_GROUP_BYTES on CPU; measured 1.4-2x faster than one gather for all chains).
    Orientation measured on CPU: (G, 1|k, d) x (G, d, b) is 2-3x faster than (G, b, d) x (G, d, 1|k), so
    softmax weights are kept as (C, k, d) here.
    """
    C, b, d, width = state.shape[0], orders.blocks.shape[2], task.d, task.width
    cache = MINIBATCH_GROUP_BYTES if task.device.type == "cpu" else MAX_CHUNK_BYTES  # GPUs want few launches
    decay, lr = 1.0 - eta * m, -eta / b
    bound = _clip_bound(task, M)
    data, targets, residual_ = task.data, task.targets, task.model.residual_
    # pieces: (first chain, chains per group, group rows of blocks [ga, gc)) of at most `cache` gathered bytes
    pieces = []
    for c0, G, g0, g1 in _bands(orders.sizes):
        for a, c in _chunks(g1 - g0, b * d * task.X.element_size(), cache):
            pieces.append((c0 + a * G, G, g0 + a, g0 + c))
    most = max(gc - ga for _, _, ga, gc in pieces)
    x_flat = torch.empty(most * b * d, device=task.device, dtype=task.dtype)
    # idx[p][j]: the flat batch j of piece p's groups
    idx = [orders.blocks[:, ga:gc].reshape(orders.blocks.shape[0], -1) for _, _, ga, gc in pieces]
    WT = state if state.ndim == 2 else state.transpose(1, 2).contiguous()  # width k: a (C, k, d) copy
    linear = _onednn_linear(task) if MINIBATCH_ONEDNN else None

    def step(j):
        for (c0, G, ga, gc), ii in zip(pieces, idx):
            groups, jj = gc - ga, ii[j]
            W = WT[c0:c0 + groups * G].view(groups, G * width, d)
            xb = torch.index_select(data, 0, jj, out=x_flat[: groups * b * d].view(groups * b, d)).view(groups, b, d)
            bb = None if bound is None else bound[jj].view(groups, 1, 1, b)
            if linear is not None and groups == 1:  # one order for the piece: plain products (oneDNN on CPU)
                z = linear(W[0], xb[0]).unsqueeze(0)
            else:
                z = torch.bmm(W, xb.transpose(1, 2))  # (groups, G, b): -y_i x_i.w_c; softmax (groups, G k, b) logits
            tt = None if targets is None else targets[jj].view(groups, 1, b, width).transpose(2, 3)
            residual_(z.view(groups, G, width, b), tt, bb)
            if linear is not None and groups == 1:
                W[0].mul_(decay).add_(linear(z[0], xb[0].t()), alpha=lr)
            else:
                W.baddbmm_(z, xb, beta=decay, alpha=lr)

    return [_Chunk(0, C, WT if state.ndim == 2 else WT.transpose(1, 2), step)]


def _bands(sizes: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """Runs of order groups of equal size: (first chain, chains per group, first group, end group)."""
    out, chain, g = [], 0, 0
    while g < len(sizes):
        end = g
        while end < len(sizes) and sizes[end] == sizes[g]:
            end += 1
        out.append((chain, sizes[g], g, end))
        chain += sizes[g] * (end - g)
        g = end
    return out


class _BatchOrders(NamedTuple):
    blocks: torch.Tensor  # (n/b, groups, b): block j of order group i
    sizes: tuple[int, ...]  # chains per order group, consecutive chains in order


def batch_order_group(batch_orders, C: int) -> int:
    """Chains per batch order: 'per_chain' -> 1, 'shared' -> C, an integer G -> min(G, C)."""
    C = _positive_int("C", C)
    if batch_orders == "per_chain":
        return 1
    if batch_orders == "shared":
        return C
    if isinstance(batch_orders, bool) or not isinstance(batch_orders, (int, np.integer)) or batch_orders < 1:
        raise ValueError(f"batch_orders must be 'per_chain', 'shared' or an integer G >= 1, got {batch_orders!r}")
    return min(int(batch_orders), C)


def share_orders(perms, C: int, group: int, *, first_chain: int = 0) -> torch.Tensor:
    """(C, n) batch orders of chains first_chain .. first_chain + C - 1, where chain c takes the order of its
    group c // group: `perms` holds the orders of the groups those chains fall in, from first_chain // group
    on (e.g. from make_perms with that first_chain; ceil(C / group) of them when first_chain = 0).

    group = 1 is one order per chain, group >= C one order for all chains. The run_chains step then gathers
    a group's batch once and updates its chains with a matrix product. Every chain keeps its order for as
    long as the caller passes the same tensor (learning and unlearning must).
    """
    C, group = _positive_int("C", C), _positive_int("group", group)
    first_chain = _nonnegative_int("first_chain", first_chain)
    perms = torch.as_tensor(perms)
    g0 = first_chain // group
    count = (first_chain + C - 1) // group - g0 + 1
    if perms.ndim != 2 or perms.shape[0] != count:
        raise ValueError(f"perms must hold {count} orders, one per group of {group} chains among chains "
                         f"{first_chain}..{first_chain + C - 1} (ceil(C/group) from chain 0), "
                         f"got shape {tuple(perms.shape)}")
    if group == 1:
        return perms
    if count == 1:
        return perms.expand(C, perms.shape[1])  # a view: one order for all chains costs no memory
    return perms[torch.arange(first_chain, first_chain + C, device=perms.device) // group - g0]


def _perm_blocks(perms, C: int, n: int, b: int, device) -> _BatchOrders:
    """Batch blocks per order group: block j of chain c is perms[c, j*b:(j+1)*b]; consecutive chains with
    equal rows of perms share an order group (see share_orders)."""
    if perms is None:
        raise ValueError(f"perms (C, n) is required for mini-batches (batch_size={b} < n={n}); use make_perms")
    perms = torch.as_tensor(perms, device=device)
    if perms.shape != (C, n) or perms.is_floating_point() or perms.dtype == torch.bool:
        raise ValueError(f"perms must be an integer tensor of shape ({C}, {n}), got {perms.dtype} "
                         f"of shape {tuple(perms.shape)}")
    perms = perms.to(torch.int64)
    if C > 1 and perms.stride(0) == 0:  # an expanded view (share_orders with one order): one group
        starts = torch.zeros(1, dtype=torch.int64)
    else:
        new = torch.ones(C, dtype=torch.bool, device=device)
        new[1:] = (perms[1:] != perms[:-1]).any(dim=1)
        starts = torch.nonzero(new).flatten().cpu()
    sizes = tuple(torch.diff(starts, append=torch.tensor([C])).tolist())
    leaders = perms[starts.to(device)]
    G = leaders.shape[0]
    # in range and every index hit <=> a permutation: O(G n), where a sort cost ~1 s per call at C = 1000
    lo, hi = torch.aminmax(leaders)
    if int(lo) < 0 or int(hi) >= n or not torch.zeros((G, n), dtype=torch.bool, device=device).scatter_(
            1, leaders, True).all():
        raise ValueError("every row of perms must be a permutation of 0..n-1 (use make_perms)")
    return _BatchOrders(leaders.view(G, n // b, b).transpose(0, 1).contiguous(), sizes)


def _assemble(chains: list[_Chunk]) -> torch.Tensor:
    return torch.cat([chunk.weights for chunk in chains]).contiguous()


def _check_finite(chains, done: int, steps: int, eta: float, m: float) -> None:
    if all(bool(torch.isfinite(chunk.weights).all()) for chunk in chains):
        return
    raise DivergenceError(f"the chains diverged: non-finite weights after {done} of {steps} steps/epochs with "
                          f"eta={eta:g}, m={m:g}; the step size eta is probably too large (the theory "
                          f"uses eta = 1/L)")


def _chunks(C: int, bytes_per_chain: int, limit: int | None = None) -> list[tuple[int, int]]:
    """Consecutive chain ranges whose intermediates stay under `limit` bytes (MAX_CHUNK_BYTES by default).

    Sizes differ by at most one, the first chunk the largest: a lone chain in a remainder chunk would
    go through BLAS's one-row kernel, whose rounding differs, and make results depend on the chunking.
    """
    size = max(1, (MAX_CHUNK_BYTES if limit is None else limit) // max(1, bytes_per_chain))
    count = -(-C // size)
    sizes = [C // count + (i < C % count) for i in range(count)]
    edges = np.cumsum([0, *sizes]).tolist()
    return list(zip(edges[:-1], edges[1:]))


# ----------------------------------------------------------------------------- argument checks
def _check_weights(w, task: Task) -> tuple[int, ...]:
    if not isinstance(w, torch.Tensor):
        raise ValueError(f"w must be a torch tensor, got {type(w).__name__}")
    C = w.shape[0] if w.ndim else 0
    if C < 1 or tuple(w.shape) != task.weight_shape(C):
        expected = "(C, " + ", ".join(map(str, task.weight_shape(1)[1:])) + ")"
        raise ValueError(f"w must have shape {expected} with C >= 1 for this task, got {tuple(w.shape)}")
    return tuple(w.shape)


def _batch_size(batch_size, n: int) -> int:
    if batch_size is None:
        return n
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be None (full batch) or an integer in 1..n={n}, got {batch_size!r}")
    if n % batch_size:
        raise ValueError(f"n={n} is not divisible by batch_size b={batch_size}: PNSGD epochs need n % b == 0 "
                         f"(truncate the data)")
    return int(batch_size)


def _check_generator(generator, device: torch.device) -> None:
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator (see generator_for), got {generator!r}")
    if generator.device.type != torch.device(device).type:
        raise ValueError(f"generator is on {generator.device} but the data is on {device}; "
                         f"create it with generator_for(..., device={str(device)!r})")


# argument checks: the project's one module of them (utils/checks.py), under the names used above
from utils import checks as _checks  # noqa: E402  (here, beside the names it defines)

_positive_int, _nonnegative_int = _checks.positive_int, _checks.nonnegative_int
_positive, _nonnegative = _checks.positive, _checks.nonnegative
