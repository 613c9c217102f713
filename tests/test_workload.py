"""The time estimate's counts of work (utils/workload.py) are what the runs perform: every script's plan
counts its full-batch steps, mini-batch updates (per batch size and order grouping, noisy or not), test
evaluations, new datasets and saves, and each run is instrumented at the engine to count what it does.
No timing is asserted here (speed lives in bench/); the estimate's own arithmetic is checked on counts."""
import os
from collections import Counter

import pytest

import audit
import baseline
import main_lmc
import main_lmc_multiclass
import main_sgd
from utils import engine, experiments, results, workload

pytest.importorskip("torch")

# (script, argv): small runs on DIGITS covering every mode and kind of work (batch sizes, orders, sigma = 0,
# streams, the cache read back within a run, softmax)
RUNS = {
    "sgd_sequential": (main_sgd, ["--sequential", "1", "--trials", "3", "--requests", "2", "--burn_in", "2",
                                  "--batch_size", "32", "full", "--sigma", "0.5"]),
    "sgd_sequential_shared": (main_sgd, ["--sequential", "1", "--trials", "3", "--requests", "2", "--burn_in", "2",
                                         "--batch_size", "64", "--batch_orders", "shared", "--sigma", "0.5"]),
    "sgd_compare": (main_sgd, ["--compare_baseline_nonconvergent", "1", "--trials", "3", "--burn_in", "2",
                               "--lmc_burn_in", "4", "--eps", "2", "5", "--batch_size", "32", "full"]),
    "sgd_paint": (main_sgd, ["--paint_unlearning_sigma", "1", "--trials", "4", "--requests", "2", "--burn_in", "2",
                             "--sigma_list", "0.5", "1", "--batch_size", "64", "--batch_orders", "2", "--eps", "1"]),
    "sgd_noiseless": (main_sgd, ["--retrain_noiseless", "1", "--S", "1", "3", "--burn_in", "2",
                                 "--batch_size", "32", "full"]),
    "lmc_sigma": (main_lmc, ["--paint_unlearning_sigma", "1", "--sigma_list", "0.5", "1", "--trials", "3",
                             "--burn_in", "4", "--S", "2"]),
    "lmc_epsilon": (main_lmc, ["--paint_utility_epsilon", "1", "--sigma", "0.5", "--S", "1", "5", "--eps", "1", "2",
                               "--trials", "3", "--burn_in", "4"]),
    "lmc_noiseless": (main_lmc, ["--retrain_noiseless", "1", "--S", "1", "5", "--burn_in", "4"]),
    "lmc_multiclass_s": (main_lmc_multiclass, ["--dataset", "DIGITS_MULTI", "--paint_utility_s", "1", "--sigma", "0.5",
                                               "--S", "1", "5", "--eps", "2", "--trials", "3", "--burn_in", "3"]),
    "baseline": (baseline, ["--K", "1", "2", "--eps", "2", "5", "--trials", "3", "--burn_in", "4"]),
    "baseline_sequential2": (baseline, ["--sequential2", "1", "--num_remove", "4", "--S", "2", "--ifac", "1",
                                        "--sigma", "0.5", "--trials", "3", "--burn_in", "4"]),
    "audit_worst": (audit, ["--trials", "20", "--burn_in", "4", "--K", "0", "3", "--sigma", "0.5",
                            "--neighbour", "worst"]),
}


def _group(perms, C: int) -> int:
    """Chains per batch order, read off the orders a run passes (consecutive equal rows share one)."""
    if C > 1 and perms.stride(0) == 0:
        return C
    longest = run = 1
    for c in range(1, C):
        run = run + 1 if bool((perms[c] == perms[c - 1]).all()) else 1
        longest = max(longest, run)
    return longest


class Performed:
    """What a run does, counted where the work happens (the engine and the writer of parts and cache)."""

    def __init__(self, monkeypatch):
        self.updates, self.calls, self.evaluations = Counter(), Counter(), Counter()
        self.datasets = self.saves = 0
        self.planned = None
        run_chains, accuracy, to_task = engine.run_chains, engine.accuracy, engine.to_task
        write_checked_npz, open_ = results.write_checked_npz, experiments.Context.open

        def counted_run_chains(w, task, *, steps, sigma, batch_size=None, perms=None, **kw):
            C = w.shape[0]
            b = batch_size if batch_size is not None and batch_size < task.n else None
            kind = workload.Kind(workload.UPDATE, C, b or 0, _group(perms, C) if b else 1, sigma > 0)
            if steps:
                self.updates[kind] += steps * (task.n // b if b else 1)
                self.calls[kind] += 1
            return run_chains(w, task, steps=steps, sigma=sigma, batch_size=batch_size, perms=perms, **kw)

        def counted_accuracy(w, *a, **kw):
            self.evaluations[w.shape[0]] += 1
            return accuracy(w, *a, **kw)

        def counted_to_task(*a, **kw):
            self.datasets += 1
            return to_task(*a, **kw)

        def counted_write(*a, **kw):
            self.saves += 1
            return write_checked_npz(*a, **kw)

        def recording_open(ctx, chain_steps=None, work=None):
            self.planned = work
            return open_(ctx, chain_steps=chain_steps, work=work)

        monkeypatch.setattr(engine, "run_chains", counted_run_chains)
        monkeypatch.setattr(engine, "accuracy", counted_accuracy)
        monkeypatch.setattr(engine, "to_task", counted_to_task)
        monkeypatch.setattr(results, "write_checked_npz", counted_write)
        monkeypatch.setattr(experiments.Context, "open", recording_open)


@pytest.mark.parametrize("name", list(RUNS))
def test_the_plan_counts_the_work_the_run_performs(name, tmp_path, monkeypatch):
    script, argv = RUNS[name]
    seen = Performed(monkeypatch)
    if "--dataset" not in argv:
        argv = argv + ["--dataset", "DIGITS"]
    assert script.main(argv + ["--seed", "1", "--result_dir", str(tmp_path), "--device", "cpu"]) == 0
    work = seen.planned
    assert work is not None
    planned_updates = {k: v for k, v in work.counts.items() if k.what == workload.UPDATE}
    assert planned_updates == dict(seen.updates)
    assert {k: v for k, v in work.calls.items()} == dict(seen.calls)
    assert {k.C: v for k, v in work.counts.items() if k.what == workload.EVALUATE} == dict(seen.evaluations)
    assert sum(v for k, v in work.counts.items() if k.what == workload.DATASET) == seen.datasets - 1  # - D's own
    assert sum(v for k, v in work.counts.items() if k.what == workload.SAVE) == seen.saves
    metrics = results.read_json(str(next(tmp_path.glob("*/*/*/*/metrics.json"))))
    steps = metrics.get("total_chain_steps", metrics.get("chain_steps"))
    assert steps == work.chain_steps == sum(k.C * v for k, v in seen.updates.items())


def test_the_estimate_is_count_times_measured_time_per_kind():
    """estimate() adds start-up, count x unit and calls x call-cost per kind (the arithmetic, on fixed rates)."""
    work = workload.Workload(n=100, d=4, num_classes=2)
    work.advance(10, 7)                 # 7 full-batch steps, one call
    work.advance(10, 2, b=20)           # 2 epochs of 5 updates, one call
    work.evaluate(10, 3)
    full = workload.Kind(workload.UPDATE, 10, 0, 1, True)
    mini = workload.Kind(workload.UPDATE, 10, 20, 1, True)
    assert work.counts[full] == 7 and work.counts[mini] == 10 and work.chain_steps == 170
    rates = {full: workload.Rate(2.0, 1.0), mini: workload.Rate(0.5, 3.0),
             workload.Kind(workload.EVALUATE, 10): workload.Rate(0.25)}
    est = workload.Estimate(seconds=0, device="cpu", rates=rates, work=work, startup=4.0, measured_in=0, load=None)
    assert sum(s for _, _, s in est.parts()) == 7 * 2.0 + 1.0 + 10 * 0.5 + 3.0 + 3 * 0.25
    assert [k for k, _, _ in est.parts()][0] == full   # the longest first


def test_learning_at_sigma_zero_runs_one_chain_and_a_cached_learning_run_is_read_back():
    work = workload.Workload(n=50, d=3, num_classes=2)
    work.learn(8, 5, sigma=0.0)
    work.learn(8, 5, sigma=0.1, key="a")
    work.learn(8, 5, sigma=0.1, key="a")   # the same chains again: read from the cache
    assert work.chain_steps == 1 * 5 + 8 * 5
    off = workload.Workload(n=50, d=3, num_classes=2, cache=False)
    off.learn(8, 5, sigma=0.1, key="a")
    off.learn(8, 5, sigma=0.1, key="a")
    assert off.chain_steps == 2 * 8 * 5


def test_a_day_of_work_needs_yes():
    workload.confirm(workload.CONFIRM_SECONDS, yes=False)
    with pytest.raises(ValueError, match=r"estimated at 24\.0 h here \(more than 24\.0 h\); add --yes"):
        workload.confirm(workload.CONFIRM_SECONDS + 1, yes=False)
    workload.confirm(10 * workload.CONFIRM_SECONDS, yes=True)


@pytest.mark.parametrize("script,argv", [
    (main_lmc_multiclass, ["--dataset", "DIGITS_MULTI", "--sigma", "0.01", "--lam", "1e-4",
                           "--paint_unlearning_sigma", "1", "--sigma_list", "1", "--trials", "3"]),
    (audit, ["--dataset", "DIGITS_MULTI", "--trials", "20", "--burn_in", "5", "--K", "0", "2"]),
    (main_sgd, ["--dataset", "DIGITS_MULTI", "--sequential", "1", "--trials", "3", "--requests", "2",
                "--batch_size", "64", "--burn_in", "2"]),
], ids=["main_lmc_multiclass", "audit", "main_sgd"])
def test_softmax_plans_are_timed_with_the_runs_own_constants(script, argv, tmp_path, monkeypatch, capsys):
    """--plan_only on softmax data measures with the run's M (the softmax model refuses M = 1, which the
    time measurement once used: every softmax --plan_only exited 2 after printing its plan)."""
    monkeypatch.delenv("UNLEARN_NO_CALIBRATION")
    assert script.main(argv + ["--plan_only", "--result_dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    metrics = results.read_json(str(next(tmp_path.glob("*/*/*/*/metrics.json"))))
    assert metrics["estimated_seconds"] > 0 and "estimated time:" in out
    kinds = {(w["what"], w["C"]) for w in metrics["estimate"]["work"]}
    assert ("update", int(argv[argv.index("--trials") + 1])) in kinds


def _digits_state_args(tmp_path):
    from tests import golden_runs

    features = golden_runs.digits_file(str(tmp_path / "digits.npz"))
    return ["learn", "--features", features, "--state", str(tmp_path / "st"), "--device", "cpu"]


def test_unlearn_learn_of_a_million_chains_is_stopped_by_its_memory(tmp_path, monkeypatch, capsys):
    """--trials 1000000 needs ~21 GiB (a noise block and a generator per chain): refused in one line where
    less is free (here: 20 GiB, a 24 GiB machine in use), before any chain or state folder exists."""
    import unlearn

    monkeypatch.setattr(experiments, "_available_bytes", lambda: 20 * 2 ** 30)
    assert unlearn.main(_digits_state_args(tmp_path) + ["--trials", "1000000"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--trials 1000000 needs about" in err and "GiB" in err, err
    assert not (tmp_path / "st").exists()


def test_unlearn_learn_is_stopped_by_its_estimated_time_without_yes(tmp_path, monkeypatch, capsys):
    """The guard prices the chains' cost (C chains x n x d per step), not their count: with memory to spare and
    the confirmation threshold at 10 s, a million chains' learning is timed here and refused without --yes."""
    import unlearn

    monkeypatch.setattr(experiments, "_available_bytes", lambda: 1 << 50)
    monkeypatch.setattr(os, "sysconf", lambda name, real=os.sysconf: 1 << 40 if name == "SC_PHYS_PAGES" else real(name))
    monkeypatch.setattr(workload, "CONFIRM_SECONDS", 10)
    assert unlearn.main(_digits_state_args(tmp_path) + ["--trials", "1000000"]) == 2
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and "the plan is estimated at" in err and "--yes" in err, err
    assert "learned in" not in out and not (tmp_path / "st").exists()
