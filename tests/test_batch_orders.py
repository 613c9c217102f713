"""Shared batch orders (main_sgd.py --batch_orders shared|G): each chain gets exactly the update of a naive
one-chain-at-a-time reimplementation with its own order, whichever chains share it."""
import pytest
import torch

from bench import common
from bench.naive_vs_engine import naive_run, relative_difference
from utils import engine

N, D, C = 48, 9, 7


def _compare(k, perms, *, M=0.3, R=0.0, batch_size=8, steps=3):
    p = common.random_problem(N, D, k, seed=4, n_test=5)
    task = engine.to_task(p.X, p.y, k, dtype="float64")
    w0 = engine.init_chains(C=perms.shape[0], d=D, num_classes=k, sigma=0.1, m=0.05,
                            generator=engine.generator_for(1, "init"), dtype="float64")
    M = M if k == 2 else max(M, 100.0)   # softmax runs only where clipping cannot fire (models.check_clipping)
    kw = dict(steps=steps, eta=0.8, sigma=0.1, m=0.05, M=M, R=R, batch_size=batch_size, perms=perms)
    got = engine.run_chains(w0, task, generator=engine.generator_for(1, "noise"), **kw)
    want = naive_run(w0, task.X, task.y, generator=engine.generator_for(1, "noise"), **kw)
    assert relative_difference(got, w0) > 1e-2  # the chains moved: the comparison is not vacuous
    return relative_difference(got, want)


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("M,R", [(0.3, 0.0), (100.0, 0.6)])
def test_shared_order_equals_naive_per_chain_update(k, M, R):
    perms = engine.share_orders(engine.make_perms(1, N, generator=engine.generator_for(2, "p")), C, C)
    assert perms.stride(0) == 0 and engine._perm_blocks(perms, C, N, 8, "cpu").sizes == (C,)
    assert _compare(k, perms, M=M, R=R) < 1e-12


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("onednn", [True, False])
def test_shared_order_in_float32_tracks_the_naive_float64_update(monkeypatch, k, onednn):
    """float32 on CPU: one shared order goes through oneDNN's products where this torch has them."""
    p = common.random_problem(N, D, k, seed=4, n_test=5)
    task = engine.to_task(p.X, p.y, k, dtype="float32")
    if onednn and engine._onednn_linear(task) is None:
        pytest.skip("this torch build has no oneDNN matmul")
    monkeypatch.setattr(engine, "MINIBATCH_ONEDNN", onednn)
    calls = []
    real = engine._onednn_linear
    monkeypatch.setattr(engine, "_onednn_linear", lambda t: calls.append(1) or real(t))
    perms = engine.share_orders(engine.make_perms(1, N, generator=engine.generator_for(2, "p")), C, C)
    w0 = engine.init_chains(C=C, d=D, num_classes=k, sigma=0.1, m=0.05, generator=engine.generator_for(1, "i"),
                            dtype="float64")
    kw = dict(steps=3, eta=0.8, sigma=0.0, m=0.05, M=0.3 if k == 2 else 100.0, batch_size=8, perms=perms)  # float32 noise differs
    got = engine.run_chains(w0.float(), task, generator=engine.generator_for(1, "noise"), **kw)
    want = naive_run(w0, torch.as_tensor(p.X), engine.to_task(p.X, p.y, k, dtype="float64").y,
                     generator=engine.generator_for(1, "noise"), **kw)
    assert bool(calls) is onednn
    assert relative_difference(want, w0) > 1e-2
    assert relative_difference(got.double(), want) < 1e-5


@pytest.mark.parametrize("k", [2, 4])
def test_groups_of_g_chains_equal_naive_per_chain_update(k):
    leaders = engine.make_perms(3, N, generator=engine.generator_for(3, "p"))
    perms = engine.share_orders(leaders, C, 3)  # groups 3, 3, 1: two bands of different group size
    assert engine._perm_blocks(perms, C, N, 8, "cpu").sizes == (3, 3, 1)
    assert _compare(k, perms) < 1e-12


@pytest.mark.parametrize("k", [2, 4])
def test_any_pattern_of_equal_consecutive_orders_equals_naive(k):
    a, b, c = engine.make_perms(3, N, generator=engine.generator_for(5, "p"))
    perms = torch.stack([a, a, b, a, c, c, c])
    assert engine._perm_blocks(perms, C, N, 8, "cpu").sizes == (2, 1, 1, 3)
    assert _compare(k, perms, batch_size=12) < 1e-12


def test_grouped_chunks_give_the_same_update(monkeypatch):
    perms = engine.share_orders(engine.make_perms(3, N, generator=engine.generator_for(6, "p")), C, 3)
    before = _compare(4, perms)
    monkeypatch.setattr(engine, "MINIBATCH_GROUP_BYTES", 8 * D * 8)  # one group per gather
    assert _compare(4, perms) == pytest.approx(before, abs=1e-13)


def test_a_shared_order_differs_from_per_chain_orders():
    """The order matters: chains run with shared orders are not the per-chain run (same seeds)."""
    p = common.random_problem(N, D, 2, seed=4, n_test=5)
    task = engine.to_task(p.X, p.y, 2, dtype="float64")
    own = engine.make_perms(C, N, generator=engine.generator_for(7, "p"))
    w0 = torch.zeros(C, D, dtype=torch.float64)
    kw = dict(steps=1, eta=0.8, sigma=0.0, m=0.05, M=0.3, batch_size=8, generator=engine.generator_for(0, "n"))
    per_chain = engine.run_chains(w0, task, perms=own, **kw)
    shared = engine.run_chains(w0, task, perms=engine.share_orders(own[:1], C, C), **kw)
    assert relative_difference(shared[:1], per_chain[:1]) < 1e-12  # chain 0 keeps its order (rounding aside)
    assert relative_difference(shared[1:], per_chain[1:]) > 1e-3
    assert torch.allclose(shared[1:], shared[0].expand(C - 1, D))  # same start, no noise: one trajectory


def test_share_orders_layout_and_errors():
    leaders = engine.make_perms(4, 20, generator=engine.generator_for(8, "p"))
    out = engine.share_orders(leaders, 10, 3)
    assert out.shape == (10, 20)
    for c in range(10):
        assert torch.equal(out[c], leaders[c // 3])
    assert torch.equal(engine.share_orders(leaders[:1], 10, 10), leaders[:1].expand(10, 20))
    assert torch.equal(engine.share_orders(leaders[:1], 10, 50), leaders[:1].expand(10, 20))
    assert torch.equal(engine.share_orders(leaders[:1], 1, 1), leaders[:1])
    with pytest.raises(ValueError, match="ceil"):
        engine.share_orders(leaders, 10, 2)  # 5 groups need 5 orders


def test_a_shared_order_is_still_checked_as_a_permutation():
    bad = torch.zeros(1, N, dtype=torch.int64).expand(C, N)
    w = torch.zeros(C, D)
    task = engine.to_task(common.random_problem(N, D, 2, seed=4, n_test=5).X,
                          common.random_problem(N, D, 2, seed=4, n_test=5).y, 2)
    with pytest.raises(ValueError, match="permutation"):
        engine.run_chains(w, task, steps=1, eta=0.5, sigma=0.0, m=0.1, M=1.0, batch_size=8, perms=bad,
                          generator=engine.generator_for(0))


# ---------------------------------------------------------------- main_sgd.py --batch_orders
def _lab(tmp_path, orders, trials=7):
    import main_sgd

    argv = ["--dataset", "DIGITS", "--sequential", "1", "--trials", str(trials), "--no_cache",
            "--result_dir", str(tmp_path)] + ([] if orders is None else ["--batch_orders", orders])
    ctx, _, _ = main_sgd.setup(main_sgd.parse_args(argv))
    return ctx.lab()


@pytest.mark.parametrize("orders, sizes", [(None, (1,) * 7), ("per_chain", (1,) * 7), ("1", (1,) * 7),
                                           ("shared", (7,)), ("3", (3, 3, 1)), ("50", (7,))])
def test_lab_orders_follow_the_flag_and_group_g_takes_chain_gs_order(tmp_path, orders, sizes):
    lab = _lab(tmp_path, orders)
    own = _lab(tmp_path / "own", None).perms(32, 7)  # the per-chain orders of the same seed
    perms = lab.perms(32, 7)
    assert engine._perm_blocks(perms, 7, lab.task_D.n, 32, "cpu").sizes == sizes
    first = 0
    for g, size in enumerate(sizes):  # group g takes the order chain g has with per-chain orders
        for c in range(first, first + size):
            assert torch.equal(perms[c], own[g])
        first += size
    assert torch.equal(perms, lab.perms(32, 7))  # learning and unlearning get the same orders


def test_shared_learning_is_the_engine_with_shared_orders_and_not_the_per_chain_cache(tmp_path):
    lab = _lab(tmp_path, "shared", trials=5)
    c = lab.ctx.consts
    lab.cache.enabled = True
    w = lab.learn(sigma=0.1, T=2, batch_size=32, key=("t",))
    w0 = lab.init(sigma=0.1, C=5, key=("learn", "t"))
    manual = engine.run_chains(w0, lab.task_D, steps=2, eta=c.eta, sigma=0.1, m=c.m, M=c.M, R=lab.R, batch_size=32,
                               perms=lab.perms(32, 5).expand(5, -1), generator=lab.gen("learn", "t"))
    assert torch.equal(w, manual)
    per_chain = _lab(tmp_path, None, trials=5)  # same result_dir: the same cache folder
    per_chain.cache.enabled = True
    assert not torch.allclose(per_chain.learn(sigma=0.1, T=2, batch_size=32, key=("t",)), w)


def test_the_run_folder_and_the_log_say_which_orders(tmp_path, capsys):
    import json

    import main_sgd

    assert main_sgd.main(["--dataset", "DIGITS", "--sequential", "1", "--trials", "4", "--requests", "2",
                          "--burn_in", "3", "--batch_size", "32", "--batch_orders", "2", "--no_cache",
                          "--result_dir", str(tmp_path)]) == 0
    from pathlib import Path

    from utils import results

    folder = Path(results.resolve_run_dir(tmp_path / "SGD" / "DIGITS" / "sequential"))
    assert "batch_orders=2" in folder.name                 # a run of other orders gets a folder of its own
    assert json.loads((folder / "config.json").read_text())["flags"]["batch_orders"] == 2
    assert json.loads((folder / "metrics.json").read_text())["batch_orders"] == 2
    assert "batch orders: groups of G = 2 chains (2 permutations for 4 chains" in (folder / "log.txt").read_text()
    assert "batch orders: groups of G = 2" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["0", "-3", "some", "2.5"])
def test_bad_batch_orders_is_one_line_and_writes_nothing(tmp_path, capsys, value):
    import main_sgd

    assert main_sgd.main(["--dataset", "DIGITS", "--sequential", "1", "--batch_orders", value,
                          "--result_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{value!r} is not per_chain, shared or an integer G >= 1" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "SGD").exists()


def test_batch_order_group_values():
    assert engine.batch_order_group("per_chain", 9) == 1 and engine.batch_order_group("shared", 9) == 9
    assert engine.batch_order_group(4, 9) == 4 and engine.batch_order_group(40, 9) == 9
    for bad in (0, "G", 2.0, True):
        with pytest.raises(ValueError, match="batch_orders"):
            engine.batch_order_group(bad, 9)


def test_bench_orders_and_measure_run_on_a_small_problem():
    """bench/minibatch_orders.py's pieces: the three layouts it times, and one measurement (no timing asserted)."""
    from bench import minibatch_orders as mb

    gen = engine.generator_for(0, "b")
    for name, sizes in (("per_chain", (1,) * 20), ("G=10", (10, 10)), ("shared", (20,))):
        assert engine._perm_blocks(mb.orders_for(name, 20, N, gen), 20, N, 8, "cpu").sizes == sizes
    p = common.random_problem(N, D, 3, seed=1, n_test=5)
    task = engine.to_task(p.X, p.y, 3)
    r = mb.measure(task, 20, 8, mb.constants(task.n, task.k), budget=0.01)
    assert set(r) == {"per_chain", "G=10", "shared", "per_chain plain", "shared plain", "products", "noise",
                      "noise plain", "noise threads", "repeats"}
    assert all(r[k] > 0 for k in r if k != "noise threads") and r["noise threads"] == 0   # tests: one torch thread


def test_mini_batch_updates_below_the_limit_run_on_one_thread(monkeypatch):
    """run_chains' thread policy for mini-batches: one thread below MINIBATCH_SINGLE_THREAD_WORK, restored after."""
    seen = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda k: (seen.append(k), real(k)))
    before = torch.get_num_threads()
    p = common.random_problem(N, D, 2, seed=4, n_test=5)
    task = engine.to_task(p.X, p.y, 2, dtype="float64")
    perms = engine.share_orders(engine.make_perms(1, N, generator=engine.generator_for(2, "p")), C, C)
    w0 = torch.zeros(C, D, dtype=torch.float64)
    kw = dict(steps=2, eta=0.8, sigma=0.1, m=0.05, M=0.3, batch_size=8, perms=perms)
    monkeypatch.setattr(engine, "SINGLE_THREAD_WORK", 0)  # the full-batch limit does not apply to mini-batches
    one = engine.run_chains(w0, task, generator=engine.generator_for(0, "n"), **kw)
    assert torch.get_num_threads() == before and seen == ([1, before] if before > 1 else [])
    monkeypatch.setattr(engine, "MINIBATCH_SINGLE_THREAD_WORK", 0)
    seen.clear()
    assert torch.allclose(engine.run_chains(w0, task, generator=engine.generator_for(0, "n"), **kw), one,
                          rtol=0, atol=1e-12) and seen == []


@pytest.mark.parametrize("group", [1, 3, 4, 10])
def test_a_rank_share_of_grouped_orders_is_the_slice_of_all_chains_orders(group):
    """Chains a..b-1 of a run split across ranks take the rows chains a..b-1 have in one process."""
    C, n = 10, 12
    g = lambda: engine.generator_for(5, "p")  # noqa: E731
    whole = engine.share_orders(engine.make_perms(-(-C // group), n, generator=g()), C, group)
    for a, b in [(0, 4), (3, 7), (4, 10), (9, 10)]:
        g0 = a // group
        orders = engine.make_perms((b - 1) // group - g0 + 1, n, generator=g(), first_chain=g0)
        assert torch.equal(engine.share_orders(orders, b - a, group, first_chain=a), whole[a:b])
