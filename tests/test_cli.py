import subprocess
import sys

import pytest

from utils import cli


def model_defaults(args):
    from utils import experiments

    return experiments.model_defaults(args, None)


def parser(**kw):
    return cli.make_parser("test", family=kw.pop("family", "LMC"), **kw)


def test_both_spellings_and_paper_defaults():
    args = cli.parse(parser(), ["--dataset", "DIGITS", "--data-dir", "d1", "--burn_in", "auto", "--plan-only"])
    assert args.data_dir == "d1" and args.burn_in == "auto" and args.plan_only
    assert args.trials == 100 and args.burn_in != 10000 and args.projection == 0.0
    # lam and M are not flags when not given: the run derives them from the dataset and the model
    assert args.lam is None and args.M is None
    assert model_defaults(args) == (pytest.approx(1e-4), 1.0)  # DIGITS' own lam, not the paper's 1e-6
    mnist = cli.parse(parser(), ["--dataset", "MNIST"])
    assert model_defaults(mnist) == (1e-6, 1.0) and mnist.burn_in == 10000
    multi = cli.parse(parser(multiclass=True), ["--dataset", "CIFAR10_MULTI"])
    assert model_defaults(multi)[1] == 2.0
    assert cli.parse(parser(family="SGD"), ["--dataset", "MNIST"]).projection == 100.0


def test_gpu_maps_to_cuda_device():
    assert cli.parse(parser(), ["--gpu", "1"]).device == "cuda:1"


@pytest.mark.parametrize("argv, needle", [
    (["--dataset", "NOPE"], "unknown --dataset 'NOPE'"),
    (["--lam", "0"], "'0' must be a finite number > 0"),
    (["--lam", "-1e-6"], "'-1e-6' must be a finite number > 0"),
    (["--M", "0"], "'0' must be a finite number > 0"),
    (["--L", "-1"], "'-1' must be a finite number > 0"),
    (["--sigma", "-0.1"], "'-0.1' must be a finite number >= 0"),
    (["--trials", "0"], "'0' must be an integer >= 1"),
    (["--burn_in", "-5"], "'-5' must be an integer >= 0 or 'auto'"),
    (["--n", "1"], "'1' must be an integer >= 2"),
    (["--dim", "0"], "'0' must be an integer >= 1"),
    (["--device", "tpu"], "'tpu' is not a device"),
    (["--dtype", "float16"], "invalid choice: 'float16'"),
    (["--classes", "3", "3"], "--classes 3 3 do not exist"),
    (["--classes", "3", "11"], "--classes 3 11 do not exist"),
    (["--n", "100"], "--n 100 loads no data"),
    (["--dataset", "CIFAR10_MULTI", "--classes", "1", "2"], "--classes is for binary datasets"),
])
def test_bad_flags_name_the_value(argv, needle):
    with pytest.raises(cli.UsageError) as err:
        cli.parse(parser(), argv)
    assert needle in str(err.value)


def test_batch_size_values():
    assert cli.batch_size_value("full") == "full" and cli.batch_size_value("128") == 128
    for bad in ("0", "-3", "x"):
        with pytest.raises(Exception):
            cli.batch_size_value(bad)


def test_guarded_prints_one_line_and_exits_2(capsys):
    @cli.guarded
    def main(argv=None):
        cli.parse(parser(), argv)
        return 0

    assert main(["--trials", "-3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "-3" in err and "integer >= 1" in err
    assert main(["--dataset", "DIGITS"]) == 0


def test_guarded_lets_real_bugs_raise():
    @cli.guarded
    def main(argv=None):
        return {}["missing"]

    with pytest.raises(KeyError):
        main([])


def test_one_line_error_in_a_real_subprocess(tmp_path):
    code = ("import sys; from utils import cli\n"
            "@cli.guarded\n"
            "def main(argv=None):\n"
            "    cli.parse(cli.make_parser('t', family='LMC'), argv)\n"
            "sys.exit(main(['--dataset', 'NOPE']))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(__import__('pathlib').Path(__file__).resolve().parents[1]))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr and "NOPE" in out.stderr
