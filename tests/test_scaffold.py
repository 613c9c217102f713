"""The script scaffold (issue 15, item 3): shared flags declared once with per-script defaults, one mode-gating
rule, flags frozen after validation, the protocol written once (experiments.run_script), config.json's flags
apart from the derived constants, and run folder names unchanged by the restructuring."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import audit
import baseline
import main_lmc
import main_sgd
import unlearn
from utils import cli, data, experiments, results

ROOT = Path(__file__).resolve().parent.parent


def run_folder(result_dir, family, dataset, mode) -> Path:
    return Path(results.resolve_run_dir(Path(result_dir) / family / dataset / mode))


# ---------------------------------------------------------------- make_parser(defaults=)
def test_a_scripts_defaults_stay_on_its_parser():
    plain = cli.make_parser("t", family="LMC")
    mine = audit.build_parser()                      # trials 1000, sigma None, burn_in auto
    sgd = main_sgd.build_parser()                    # burn_in None (per batch size)
    after = cli.make_parser("t", family="LMC")
    assert (mine.get_default("trials"), mine.get_default("sigma"), mine.get_default("burn_in")) == (1000, None, "auto")
    assert sgd.get_default("burn_in") is None and sgd.get_default("projection") == 100.0
    for p in (plain, after, baseline.build_parser(False)):   # the shared defaults, before and after
        assert (p.get_default("trials"), p.get_default("sigma"), p.get_default("burn_in")) == (100, 0.03, 10000)
        assert p.get_default("projection") == 0.0
    # the help says the script's default, not the shared one
    text = mine.format_help()
    assert "(default 1000)" in " ".join(text.split())
    assert "(default 100)" in " ".join(plain.format_help().split())


def test_unlearn_learn_has_the_shared_flags_with_its_own_defaults():
    args = unlearn.build_parser().parse_args(["learn", "--features", "f.npz", "--state", "s"])
    assert (args.bound, args.burn_in, args.trials, args.device, args.dtype) == ("best", "auto", 10, "auto", "float32")
    # the shared flags' checks come with them: the same one-line refusals as every script
    for argv, needle in ((["--lam", "0"], "'0' must be a finite number > 0"),
                         (["--trials", "0"], "'0' must be an integer >= 1"),
                         (["--bound", "tight"], "invalid choice: 'tight'")):
        with pytest.raises(cli.UsageError, match=needle):
            unlearn.build_parser().parse_args(["learn", "--features", "f", "--state", "s"] + argv)
    with pytest.raises(KeyError, match="not a shared flag: nope"):
        cli.add_flags(cli.OneLineParser(), ["lam"], defaults={"nope": 1})


# ---------------------------------------------------------------- one mode-gating rule
def test_check_mode_flags_names_the_flag_the_mode_and_where_it_belongs():
    table = {"q": ("a", "b"), "r": ("c",)}
    cli.check_mode_flags(["q"], "a", table)                      # belongs: fine
    cli.check_mode_flags(["r", "zzz"], "c", table)               # a flag of no table: not gated
    with pytest.raises(cli.UsageError) as err:
        cli.check_mode_flags(["q"], "c", table)
    assert str(err.value) == "--q does not apply to --c (allowed with: --a, --b)"


@pytest.mark.parametrize("script, argv, line", [
    ("baseline.py", ["--sequential2", "1", "--K", "3"],
     "--K does not apply to --sequential2 1 (allowed with: the default mode (no mode flag), --find_k 1)"),
    ("main_lmc.py", ["--retrain_noiseless", "1", "--eps", "1"],
     "--eps does not apply to --retrain_noiseless (allowed with: --paint_unlearning_sigma, "
     "--paint_utility_epsilon, --paint_utility_s)"),
    ("main_sgd.py", ["--sequential", "1", "--q", "3"],
     "--q does not apply to --sequential (allowed with: --compare_baseline_nonconvergent)"),
])
def test_a_flag_of_another_mode_is_one_line_and_exit_2(script, argv, line, tmp_path):
    proc = subprocess.run([sys.executable, script, "--dataset", "DIGITS", "--result_dir", str(tmp_path)] + argv,
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"{script}: error: {line}"]
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- frozen flags
def test_flags_are_read_only_after_validation():
    args = audit.parse(["--dataset", "DIGITS", "--target_eps", "2", "--K", "5", "0"])
    assert isinstance(args, cli.FrozenArgs) and args.K == [0, 5] and args.sigma is None
    with pytest.raises(AttributeError, match="args.sigma is read-only"):
        args.sigma = 0.1
    with pytest.raises(AttributeError, match="read-only"):
        del args.K
    assert args.sigma is None
    # what the folder name shows is kept beside the flags, not among them
    assert set(args.given) == {"dataset", "target_eps", "K"} and "given_flags" not in vars(args)
    frozen = cli.freeze(baseline.build_parser(False).parse_args(["--lam", "1e-3"]))
    with pytest.raises(cli.FrozenArgsError):
        frozen.lam = 1.0
    assert cli.freeze(frozen) is frozen


# ---------------------------------------------------------------- the protocol, written once
def _toy(calls):
    def plan(ctx):
        calls.append("plan")
        n = ctx.consts.n
        return experiments.Plan({"S": 1, "n_seen": n}, {"x": [1.0, 2.0]}, chain_steps=10, summary="toy plan")

    def stages(ctx, planned):
        calls.append("stages")
        assert ctx.run.path and (Path(ctx.run.path) / "config.json").exists()   # opened before any stage
        return dict(planned.metrics, stage=1), planned.arrays, "toy done"

    return {"find_k": experiments.Script(plan, stages)}


def test_run_script_plans_opens_and_runs_stages_only_without_plan_only(tmp_path, monkeypatch):
    from utils import plots

    monkeypatch.setattr(plots, "draw", lambda *a, **k: [])
    monkeypatch.setenv("UNLEARN_NO_CALIBRATION", "1")
    parser = cli.make_parser("toy", family="LMC")
    argv = ["--dataset", "DIGITS", "--result_dir", str(tmp_path)]
    calls = []
    assert experiments.run_script(parser, argv + ["--plan_only"], check=lambda a: "find_k", scripts=_toy(calls)) == 0
    assert calls == ["plan"]
    folder = run_folder(tmp_path, "LMC", "DIGITS", "find_k")
    m = json.loads((folder / "metrics.json").read_text())
    assert m["plan_only"] is True and "stage" not in m and m["n_seen"] == data.load_dataset("DIGITS").n
    calls.clear()
    assert experiments.run_script(cli.make_parser("toy", family="LMC"), argv, check=lambda a: "find_k",
                                  scripts=_toy(calls)) == 0
    assert calls == ["plan", "stages"]
    m = json.loads((run_folder(tmp_path, "LMC", "DIGITS", "find_k") / "metrics.json").read_text())
    assert m["plan_only"] is False and m["stage"] == 1


def test_a_plan_that_fails_writes_nothing(tmp_path):
    def plan(ctx):
        raise cli.UsageError("impossible target")

    with pytest.raises(cli.UsageError, match="impossible target"):
        experiments.run_script(cli.make_parser("toy", family="LMC"), ["--dataset", "DIGITS", "--plan_only",
                                                                        "--result_dir", str(tmp_path)],
                               check=lambda a: "find_k", scripts={"find_k": experiments.Script(plan)})
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- config.json: flags apart from derived
def test_config_has_the_flags_given_and_the_constants_derived(tmp_path):
    assert baseline.main(["--dataset", "DIGITS", "--find_k", "1", "--K", "2", "--eps", "1",
                          "--result_dir", str(tmp_path)]) == 0
    config = json.loads((run_folder(tmp_path, "LMC", "DIGITS", "find_k") / "config.json").read_text())
    flags, derived = config["flags"], config["derived"]
    # the parser's values (and the mode defaults validation filled): lam and M were not given
    assert flags["lam"] is None and flags["M"] is None and flags["K"] == [2] and flags["eps"] == [1.0]
    assert flags["S"] == [1] and "given_flags" not in flags and "S_given" not in flags
    # derived from first principles: DIGITS' default lam, n its training rows, m = lam n, L = 1/4 + m for the
    # binary logistic loss on unit rows (docs/METHOD.md §1.3), eta = 1/L, delta = 1/n, M = 1 (binary)
    n, lam = data.load_dataset("DIGITS").n, 1e-4
    c = derived["constants"]
    assert derived["mode"] == "find_k" and c["n"] == n == 267
    assert c["lam"] == pytest.approx(lam) and c["M"] == 1.0
    assert c["m"] == pytest.approx(lam * n) and c["L"] == pytest.approx(0.25 + lam * n)
    assert c["eta"] == pytest.approx(1 / (0.25 + lam * n)) and c["delta"] == pytest.approx(1 / n)
    # the summary table shows both: the flag as given (none) and the constant as used
    from utils import summary

    row = summary.table(str(tmp_path)).iloc[0]
    assert row["flag_lam"] is None and row["const_lam"] == pytest.approx(lam)
    assert row["const_L"] == pytest.approx(0.25 + lam * n)


def test_a_given_lam_is_a_flag_and_the_sigma_audit_chose_is_derived(tmp_path):
    assert main_lmc.main(["--dataset", "DIGITS", "--paint_utility_epsilon", "1", "--lam", "1e-3", "--M", "1.5",
                          "--plan_only", "--result_dir", str(tmp_path)]) == 0
    config = json.loads((run_folder(tmp_path, "LMC", "DIGITS", "paint_utility_epsilon") / "config.json").read_text())
    assert config["flags"]["lam"] == 1e-3 and config["flags"]["M"] == 1.5
    assert config["derived"]["constants"]["m"] == pytest.approx(1e-3 * 267)
    assert audit.main(["--dataset", "DIGITS", "--target_eps", "2", "--K", "0", "--plan_only",
                       "--result_dir", str(tmp_path)]) == 0
    folder = run_folder(tmp_path, "LMC", "DIGITS", "audit")
    config = json.loads((folder / "config.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    assert config["flags"]["sigma"] is None and config["flags"]["target_eps"] == 2.0
    sigma = config["derived"]["sigma"]
    assert sigma == metrics["settings"]["sigma"] and sigma > 0
    assert metrics["certified_eps"]["0"] == pytest.approx(2.0, rel=1e-3)   # the sigma that gives the target


# ---------------------------------------------------------------- folder names unchanged
@pytest.mark.parametrize("script, argv, family, mode, name", [
    (baseline, ["--find_k", "1"], "LMC", "find_k", "default-e8070c5a"),
    (baseline, ["--find_k", "1", "--lam", "1e-3", "--K", "1", "--eps", "1"], "LMC", "find_k",
     "lam=0.001,K=1,eps=1-5fac8ea6"),
    (main_lmc, ["--paint_utility_s", "1", "--plan_only", "--M", "1.5"], "LMC", "paint_utility_s",
     "M=1.5,plan_only-bf999a1f"),
    (main_sgd, ["--sequential", "1", "--plan_only"], "SGD", "sequential", "plan_only-ccfd04fb"),
    (audit, ["--plan_only", "--target_eps", "2"], "LMC", "audit", "plan_only,target_eps=2-d9cd28cf"),
])
def test_a_command_line_keeps_the_folder_name_it_had_before_the_restructuring(script, argv, family, mode, name,
                                                                              tmp_path, monkeypatch):
    """Names written by the code before issue 15's scaffold (commit 3a75ff1): an interrupted run of that code
    resumes in the same folder."""
    monkeypatch.setenv("UNLEARN_NO_CALIBRATION", "1")
    assert script.main(["--dataset", "DIGITS", "--result_dir", str(tmp_path)] + argv) == 0
    assert run_folder(tmp_path, family, "DIGITS", mode).name == name


def test_a_config_written_before_the_flags_were_frozen_resumes_with_the_same_content_key(tmp_path):
    """Configs written before the scaffold held lam, M (and audit's chosen sigma) as flags: the resume key
    compares the values used, so such an interrupted run resumes (parts included), and a different lam does not."""
    assert audit.main(["--dataset", "DIGITS", "--target_eps", "2", "--K", "0", "--plan_only",
                       "--result_dir", str(tmp_path)]) == 0
    new = json.loads((run_folder(tmp_path, "LMC", "DIGITS", "audit") / "config.json").read_text())
    c = new["derived"]["constants"]
    old = json.loads(json.dumps(new))
    old["flags"].update(lam=c["lam"], M=c["M"], sigma=old["derived"].pop("sigma"), given_flags=["target_eps"])
    assert new["flags"]["lam"] is None and new["flags"]["sigma"] is None
    assert results.resume_inputs(old) == results.resume_inputs(new)
    other = json.loads(json.dumps(old))
    other["flags"]["lam"] = 2 * c["lam"]
    assert results.resume_inputs(other) != results.resume_inputs(new)
