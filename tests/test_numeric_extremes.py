"""Issue 14, numeric extremes: every numeric flag has a finite range checked before anything is written
(one line naming the flag and what is allowed, exit 2); huge plans need --yes; plans beyond the memory
are refused; rows whose norms overflow are refused."""
import os

import numpy as np
import pytest

import audit
import baseline
import main_lmc
import main_sgd
import unlearn
from faults import files_under
from utils import experiments

D = ["--dataset", "DIGITS", "--trials", "2", "--burn_in", "5"]
FIND = D + ["--find_k", "1"]
SEQ = D + ["--sequential2", "1", "--S", "1", "--num_remove", "2", "--ifac", "1"]
SGD = D + ["--sequential", "1", "--batch_size", "1", "--requests", "2"]
PAINT = D + ["--paint_utility_epsilon", "1", "--S", "1"]

CASES = [  # (script, argv, the flag the message names)
    (baseline, FIND + ["--M", "1e-300"], "--M"), (baseline, FIND + ["--eps", "1e-300"], "--eps"),
    (baseline, SEQ + ["--sigma", "1e300"], "--sigma"), (baseline, SEQ + ["--seed", "4294967296"], "--seed"),
    (baseline, SEQ[:2] + ["--trials", "100000000"] + SEQ[4:], "--trials"),
    (baseline, SEQ[:-1] + ["1e300"], "--ifac"), (baseline, FIND + ["--lam", "1e308"], "--lam"),
    (baseline, FIND + ["--lam", "1e-300"], "--lam"), (baseline, FIND + ["--delta", "1e-300"], "--delta"),
    (baseline, FIND + ["--delta", "1"], "--delta"), (baseline, FIND + ["--L", "1e300"], "--L"),
    (baseline, FIND + ["--K", "100000000000"], "--K"), (baseline, FIND + ["--sigma", "nan"], "--sigma"),
    (baseline, FIND + ["--lam", "inf"], "--lam"), (baseline, FIND + ["--burn_in", "10000000000"], "--burn_in"),
    (baseline, FIND + ["--projection", "1e300"], "--projection"), (baseline, FIND + ["--n", "10000000000"], "--n"),
    (main_lmc, PAINT + ["--eps", "1e-300"], "--eps"), (main_lmc, PAINT + ["--M", "1e-300"], "--M"),
    (main_lmc, D + ["--paint_unlearning_sigma", "1", "--sigma_list", "1e300", "--S", "1"], "--sigma_list"),
    (main_sgd, SGD + ["--sigma", "1e300"], "--sigma"), (main_sgd, SGD + ["--eps", "1e-300"], "--eps"),
    (main_sgd, SGD[:-1] + ["100000000000"], "--requests"),
    (audit, D + ["--sigma", "1e300"], "--sigma"), (audit, D + ["--K", "100000000000"], "--K"),
    (audit, D + ["--M", "1e-300"], "--M"),
]


@pytest.mark.parametrize("script,argv,flag", CASES, ids=[f"{s.__name__}{' '.join(a[6:])}" for s, a, _ in CASES])
def test_out_of_range_flag_is_one_line_before_any_file(tmp_path, capsys, script, argv, flag):
    code = script.main(argv + ["--result_dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert flag in err and "allowed" in err, err
    assert files_under(tmp_path) == []


UNLEARN = [["--sigma", "1e300"], ["--eps", "1e-300"], ["--lam", "1e308"], ["--M", "1e-300"], ["--L", "1e300"],
           ["--delta", "1e-300"], ["--trials", "100000000"], ["--K", "100000000000", "--eps", "1"]]


@pytest.mark.parametrize("extra", UNLEARN, ids=[" ".join(e) for e in UNLEARN])
def test_unlearn_learn_flag_ranges(tmp_path, capsys, extra):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "f.npz", X_train=rng.normal(size=(40, 6)), y_train=np.repeat([0, 1], 20),
             X_test=rng.normal(size=(10, 6)), y_test=np.repeat([0, 1], 5))
    code = unlearn.main(["learn", "--features", str(tmp_path / "f.npz"), "--state", str(tmp_path / "st")] + extra)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and extra[0] in err and "allowed" in err, err
    assert not (tmp_path / "st").exists()


def test_message_never_contradicts_itself(capsys, tmp_path):
    """--lam 1e308 once said 'L=inf is not allowed (allowed: L > m = lam*n = inf)'."""
    assert baseline.main(FIND + ["--lam", "1e308", "--result_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "inf" not in err and "1e+06" in err


def test_huge_plans_need_yes(tmp_path, capsys):
    """A tiny lam makes K astronomically large: the plan is shown, its time estimated here, and not run without --yes."""
    argv = SEQ + ["--lam", "1e-12", "--result_dir", str(tmp_path)]
    assert baseline.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "--yes" in err and "the plan is estimated at" in err and len(err.splitlines()) == 1
    assert files_under(tmp_path) == []
    assert baseline.main(argv + ["--plan_only"]) == 0        # the plan alone is fine


def test_plans_beyond_the_memory_are_refused(tmp_path, capsys, monkeypatch):
    real = os.sysconf
    monkeypatch.setattr(os, "sysconf", lambda name: 256 if name == "SC_PHYS_PAGES" else real(name))
    assert baseline.main(SEQ[:2] + ["--trials", "1000"] + SEQ[4:] + ["--result_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--trials 1000" in err and "GiB" in err and files_under(tmp_path) == []


def test_check_plan_threshold():
    class Args:
        yes, dtype, trials, device = False, "float32", 1, "cpu"
    experiments.check_plan(Args, None, experiments.PLAN_CONFIRM_CHAIN_STEPS)
    with pytest.raises(ValueError, match="--yes"):
        experiments.check_plan(Args, None, experiments.PLAN_CONFIRM_CHAIN_STEPS + 1)
    Args.yes = True
    experiments.check_plan(Args, None, experiments.PLAN_CONFIRM_CHAIN_STEPS + 1)


def test_rows_whose_norm_overflows_are_refused(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "big.npz", X_train=rng.normal(size=(40, 5)) * 1e300, y_train=np.repeat([0, 1], 20),
             X_test=rng.normal(size=(10, 5)), y_test=np.repeat([0, 1], 5))
    code = baseline.main(["--dataset", "BIG", "--features", str(tmp_path / "big.npz"), "--result_dir",
                          str(tmp_path / "r")] + SEQ[2:])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "non-finite L2 norm" in err and len(err.splitlines()) == 1
    assert files_under(tmp_path / "r") == []
