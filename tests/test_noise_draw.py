"""Issue 21: the engine's noise draw made cheaper (merged randn calls, background threads) without changing a
single number: chain c's stream is still its own generator's randn blocks of noise_block(one chain's size)
updates (the last shorter), whatever C, first_chain, threads or merging, and a run with threads equals one
without, bit for bit."""
import threading

import numpy as np
import pytest
import torch

from toy import unit_rows
from utils import engine
from utils.engine import ChainNoise, chain_generators, generator_for, init_chains, make_perms, run_chains, to_task

F32, F64 = torch.float32, torch.float64


def reference(seed, C: int, per_shape: tuple[int, ...], updates: int, dtype, first_chain: int = 0) -> torch.Tensor:
    """The stream's definition written out: chain c draws randn((B, *per_shape)) blocks from its own generator,
    B = max(1, min(64, 4096 // one chain's size)) (the last block shorter), one call per block, in turn."""
    per = int(np.prod(per_shape))
    B = max(1, min(64, 4096 // per))
    rows = []
    for g in chain_generators(generator_for(seed, "noise"), C, first_chain=first_chain):
        rows.append(torch.cat([torch.randn((min(B, updates - t), *per_shape), generator=g, dtype=dtype)
                               for t in range(0, updates, B)]))
    return torch.stack(rows)  # (C, updates, *per_shape)


def drawn(seed, C: int, per_shape, updates: int, dtype, *, threads: int = 0, first_chain: int = 0) -> torch.Tensor:
    with ChainNoise(generator_for(seed, "noise"), (C, *per_shape), updates, dtype=dtype, threads=threads,
                    first_chain=first_chain) as noise:
        out = torch.stack([noise.next().clone() for _ in range(updates)], dim=1)
        with pytest.raises(ValueError, match="already drawn"):
            noise.next()
    return out


# per-chain shapes: FASHION binary (784: blocks of 5 updates, 3920 numbers, merged 4 a call), softmax (7840: one
# update a block, merged 2 a call), small d (5: blocks of 64 updates; tails of 1..3 updates are < 16 numbers and
# drawn alone, longer tails merged), one number (blocks of 64), 4095 (a block is not a multiple of 16: no merging)
CASES = [((784,), 23), ((784, 10), 5), ((5,), 64 * 3 + 2), ((5,), 64 * 3 + 5), ((5,), 64 * 3 + 4),
         ((1,), 64 * 2 + 7), ((4095,), 4), ((3, 7), 200)]


@pytest.mark.parametrize("per_shape,updates", CASES)
@pytest.mark.parametrize("threads", [0, 1, 3])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_merged_and_threaded_draws_are_the_plain_per_block_draws(per_shape, updates, threads, dtype):
    C = 7
    assert torch.equal(drawn(1, C, per_shape, updates, dtype, threads=threads),
                       reference(1, C, per_shape, updates, dtype))


@pytest.mark.parametrize("elems,cap", [(0, 64 << 20), (1 << 14, 64 << 20), (1 << 20, 64 << 20), (1 << 20, 1000),
                                       (1 << 14, 1)])
def test_merge_sizes_and_memory_caps_change_no_number(monkeypatch, elems, cap):
    """NOISE_DRAW_ELEMS 0 (one block a call, the draw before issue 21) .. large, and caps that forbid merging and
    the prefetch buffer: all the same numbers."""
    monkeypatch.setattr(engine, "NOISE_DRAW_ELEMS", elems)
    monkeypatch.setattr(engine, "NOISE_BUFFER_BYTES", cap)
    for per_shape, updates in (((784,), 23), ((5,), 64 * 5 + 3)):
        assert torch.equal(drawn(2, 4, per_shape, updates, F32, threads=2), reference(2, 4, per_shape, updates, F32))


def test_merge_false_is_the_plain_draw():
    with ChainNoise(generator_for(2, "noise"), (4, 784), 23, dtype=F32, merge=False, threads=1) as noise:
        assert noise.unit == 5
        got = torch.stack([noise.next().clone() for _ in range(23)], dim=1)
    assert torch.equal(got, reference(2, 4, (784,), 23, F32))


def test_merging_and_prefetch_are_actually_on_where_allowed(monkeypatch):
    """The cases above exercise merged calls and two buffers (else they would test nothing new)."""
    with ChainNoise(generator_for(0, "n"), (5, 784), 100, dtype=F32, threads=2) as noise:
        assert noise.unit == 4 * 5 and len(noise.bufs) == 2 and noise.pool is not None
    with ChainNoise(generator_for(0, "n"), (5, 4095), 100, dtype=F32, threads=1) as noise:
        assert noise.unit == 1 and len(noise.bufs) == 2      # 4095 numbers a block: not merged
    monkeypatch.setattr(engine, "NOISE_BUFFER_BYTES", 100)
    with ChainNoise(generator_for(0, "n"), (5, 784), 100, dtype=F32, threads=2) as noise:
        assert noise.unit == 5 and len(noise.bufs) == 1 and noise.pool is None   # over the cap: plain draw


@pytest.mark.parametrize("threads", [0, 2])
def test_chain_cs_stream_does_not_depend_on_C_or_on_the_share(threads):
    full = reference(3, 9, (784,), 17, F32)
    for C in (1, 3, 9):
        assert torch.equal(drawn(3, C, (784,), 17, F32, threads=threads), full[:C])
    for first, C in ((2, 3), (5, 4), (8, 1)):
        assert torch.equal(drawn(3, C, (784,), 17, F32, threads=threads, first_chain=first), full[first:first + C])


def test_randn_concatenation_is_what_merging_relies_on():
    """torch's CPU randn: a call of a multiple of 16 numbers then one of >= 16 is one call of the sum (checked by
    the engine once); a first call of a size not a multiple of 16, or a tail under 16, differs (why merging asks
    for blocks of a multiple of 16 numbers and draws short tails alone)."""
    def split(sizes, dtype=F32):
        g = torch.Generator().manual_seed(7)
        return torch.cat([torch.randn(s, generator=g, dtype=dtype) for s in sizes])
    for dtype in (F32, F64):
        assert engine._randn_concatenates(dtype)
        assert torch.equal(split([3920, 3920, 3920, 17], dtype), split([3920 * 3 + 17], dtype))
        assert not torch.equal(split([17, 40], dtype), split([57], dtype))
        assert not torch.equal(split([32, 8], dtype), split([40], dtype))


@pytest.mark.parametrize("k,batch_size,dtype", [(2, 8, "float32"), (3, 6, "float64"), (2, None, "float32"),
                                                (3, None, "float64")])
def test_a_run_with_noise_threads_equals_one_without_bit_for_bit(monkeypatch, k, batch_size, dtype):
    X, y = unit_rows(k, 48, 6)
    task = to_task(X, y, k, dtype=dtype)
    C = 11
    w0 = init_chains(C=C, d=task.d, num_classes=k, sigma=0.1, m=0.2, generator=generator_for(4, "i"), dtype=dtype)
    perms = None if batch_size is None else make_perms(C, task.n, generator=generator_for(4, "p"))
    made = []
    real = engine.ChainNoise

    def spy(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]
    monkeypatch.setattr(engine, "ChainNoise", spy)
    # 300 updates: several blocks of 64 (this chain size), so the threads do draw ahead
    steps = 300 // (task.n // (batch_size or task.n))
    kw = dict(steps=steps, eta=0.5, sigma=0.1, m=0.2, M=0.5 if k == 2 else 2.0, batch_size=batch_size, perms=perms)
    runs = {}
    for threads, torch_threads, elems in ((0, 1, 0), (2, 2, 0), (2, 3, 0), (2, 2, engine.NOISE_DRAW_ELEMS)):
        monkeypatch.setattr(engine, "NOISE_THREADS", threads)
        monkeypatch.setattr(engine, "NOISE_DRAW_ELEMS", elems)
        torch.set_num_threads(torch_threads)
        runs[threads, torch_threads, elems] = run_chains(w0, task, generator=generator_for(4, "n"), **kw)
    torch.set_num_threads(1)
    # no threads, then torch's threads - 1 of them (the update runs on one), drawing ahead
    assert [n.threads for n in made] == [0, 1, 2, 1] and [n.fills_ahead > 0 for n in made] == [False, True, True, False]
    for key, w in runs.items():
        assert torch.equal(w, runs[0, 1, 0]), key


def test_noise_threads_never_exceed_what_torch_allows(monkeypatch):
    """min(NOISE_THREADS, torch threads - 1) while the update runs on one thread; none when it uses them all."""
    X, y = unit_rows(2, 48, 6)
    task = to_task(X, y, 2)
    w0 = torch.zeros(4, task.d)
    perms = make_perms(4, task.n, generator=generator_for(0, "p"))
    made = []
    real = engine.ChainNoise
    monkeypatch.setattr(engine, "ChainNoise", lambda *a, **kw: (made.append(kw["threads"]), real(*a, **kw))[1])
    monkeypatch.setattr(engine, "NOISE_THREADS", 2)
    kw = dict(steps=2, eta=0.5, sigma=0.1, m=0.2, M=0.5, batch_size=8, perms=perms)
    for torch_threads in (1, 2, 4):
        torch.set_num_threads(torch_threads)
        run_chains(w0, task, generator=generator_for(0, "n"), **kw)
    monkeypatch.setattr(engine, "MINIBATCH_SINGLE_THREAD_WORK", 0)   # the update now uses every thread
    run_chains(w0, task, generator=generator_for(0, "n"), **kw)
    torch.set_num_threads(1)
    assert made == [0, 1, 2, 0]


def test_threads_are_released_after_a_run_and_after_divergence(monkeypatch):
    X, y = unit_rows(2, 48, 6)
    task = to_task(X, y, 2)
    perms = make_perms(3, task.n, generator=generator_for(0, "p"))
    monkeypatch.setattr(engine, "DIVERGENCE_CHECK_EVERY", 1)
    torch.set_num_threads(2)
    try:
        run_chains(torch.zeros(3, task.d), task, steps=3, eta=0.5, sigma=0.1, m=0.2, M=0.5, batch_size=8,
                   perms=perms, generator=generator_for(0, "n"))
        with pytest.raises(engine.DivergenceError):  # a huge step: non-finite weights after the first epoch
            run_chains(torch.full((3, task.d), 1e38), task, steps=50, eta=1e3, sigma=1e3, m=1e3, M=float("inf"),
                       batch_size=8, perms=perms, generator=generator_for(0, "n"))
    finally:
        torch.set_num_threads(1)
    assert not [t for t in threading.enumerate() if t.name.startswith("ChainNoise")]


def test_threaded_draw_under_inference_mode():
    """The workers write buffers made under the caller's inference mode (a thread-local setting)."""
    with torch.inference_mode():
        got = drawn(5, 3, (784,), 12, F32, threads=2)
    assert torch.equal(got, reference(5, 3, (784,), 12, F32))


class _IdlePool:
    """A pool whose threads never start: the caller must draw every chain of the prefetched fill itself."""
    def submit(self, fn, *args):
        import concurrent.futures
        done = concurrent.futures.Future()
        done.set_result(None)
        return done

    def shutdown(self, **kwargs):
        pass


def test_a_caller_that_finds_the_next_fill_not_begun_draws_it_itself():
    noise = ChainNoise(generator_for(6, "noise"), (5, 784), 43, dtype=F32, threads=2)
    noise.pool.shutdown()
    noise.pool = _IdlePool()
    got = torch.stack([noise.next().clone() for _ in range(43)], dim=1)
    assert torch.equal(got, reference(6, 5, (784,), 43, F32))


def test_bench_times_whole_fills():
    """bench/minibatch_orders: a timed call holds whole fills of the noise buffer (else its minimum favours calls
    that draw nothing)."""
    from bench.minibatch_orders import whole_fills
    with ChainNoise(generator_for(0, "n"), (3, 784), 100, dtype=F32) as noise:
        assert noise.unit == 20
        assert [whole_fills(k, noise) for k in (1, 20, 21, 50)] == [20, 20, 40, 60]
    assert whole_fills(7, None) == 7


def test_bad_thread_counts_are_refused_in_one_line():
    for bad in (-1, 1.5, "2"):
        with pytest.raises(ValueError, match="threads"):
            ChainNoise(generator_for(0, "n"), (2, 3), 5, dtype=F32, threads=bad)


def test_bench_size_lists_are_checked():
    from bench import minibatch_orders as mb
    assert mb._sizes("32,128", "--batches") == (32, 128)
    for bad in ("", "0", "12,x", "-3"):
        with pytest.raises(Exception, match="--batches must be comma-separated integers >= 1"):
            mb._sizes(bad, "--batches")


@pytest.mark.parametrize("name", ["main_sgd_sigma"])  # the golden case whose runs are longer than one block
def test_scripts_with_noise_threads_reproduce_their_golden_arrays(monkeypatch, tmp_path, name):
    """tests/test_golden's fixed-seed script run, but with torch at 2 threads, so that the (small, one-thread)
    updates have their noise drawn ahead by a background thread: the same arrays and metrics as kept before."""
    from tests import golden_runs
    from tests.test_golden import _compare
    made = []
    real_noise, real_set = engine.ChainNoise, torch.set_num_threads
    monkeypatch.setattr(engine, "ChainNoise", lambda *a, **kw: (made.append(real_noise(*a, **kw)), made[-1])[1])
    monkeypatch.setattr(engine, "NOISE_DRAW_ELEMS", 0)  # DIGITS' runs are short: unmerged blocks, so fills ahead
    real_set(2)
    monkeypatch.setattr(torch, "set_num_threads", lambda k: real_set(max(k, 2)))  # golden_runs asks for 1
    try:
        got = golden_runs.run(name, str(tmp_path))
    finally:
        monkeypatch.undo()
        torch.set_num_threads(1)
    assert made and {n.threads for n in made} <= {0, 1} and sum(n.fills_ahead for n in made) > 0
    _compare(name, got)
