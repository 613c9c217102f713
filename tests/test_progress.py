"""Progress in logs: where stderr is not a terminal, one line every ~30 s with the stage, the share of the
work done and the time left (utils/progress.py); on a terminal tqdm's bars, with --quiet nothing."""
import io
import re

import pytest

from utils import progress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_one_line_per_interval_with_the_share_done_and_the_time_left():
    clock, out = Clock(), io.StringIO()
    r = progress.Reporter(100.0, stream=out, every=30, clock=clock)
    clock.now = 10
    assert r.step("learn", 10) is None            # 10 s: too soon for a line
    clock.now = 40
    line = r.step("learn", 30)                    # 40 of 100 done in 40 s: 60 s left
    assert line == "progress: 40% of the run's chain work done, about 60 s left (now: learn; 40 s so far)"
    clock.now = 50
    assert r.step("unlearn", 10) is None          # 10 s after the last line
    clock.now = 80
    assert "80% of the run's chain work done, about 20 s left (now: unlearn; 80 s so far)" in r.step("unlearn", 30)
    assert out.getvalue().count("\n") == 2


def test_a_phase_without_a_run_total_reports_its_own_share():
    clock, out = Clock(), io.StringIO()
    r = progress.Reporter(None, stream=out, every=0, clock=clock)
    clock.now = 90
    line = r.step("learn, 10 chains", 1.0, share=(30, 120))
    assert line.startswith("progress: 25% of this phase done, about 4 min left (now: learn, 10 chains;")


def test_phases_of_a_run_without_a_total_are_timed_each_on_their_own(monkeypatch):
    clock, out = Clock(), io.StringIO()
    monkeypatch.setattr(progress.Reporter.__init__, "__kwdefaults__",
                        {"stream": out, "every": 0.0, "clock": clock})
    with progress.run(None):
        clock.now = 600.0                            # a first phase ran 10 min
        second = progress.Lines("post-processing, 4 chains", 100, 1.0)
        clock.now = 610.0
        second.update(50)                            # half of the new phase in its first 10 s: 10 s left
    assert out.getvalue().startswith("progress: 50% of this phase done, about 10 s left")


@pytest.mark.parametrize("quiet", [False, True])
def test_a_run_into_a_log_file_prints_progress_lines(tmp_path, monkeypatch, capsys, quiet):
    import baseline

    monkeypatch.delenv("UNLEARN_NO_PROGRESS")
    monkeypatch.setenv("UNLEARN_PROGRESS_SECONDS", "0")   # every update: the test waits on no clock
    argv = ["--dataset", "DIGITS", "--K", "1", "--eps", "2", "--trials", "3", "--burn_in", "20",
            "--result_dir", str(tmp_path)] + (["--quiet"] if quiet else [])
    assert baseline.main(argv) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("progress: ")]
    if quiet:
        assert lines == []
        return
    shares = [int(re.match(r"progress: (\d+)% of the run's chain work done", line).group(1)) for line in lines]
    assert shares == sorted(shares) and shares[-1] == 100 and len(shares) > 20
    assert any("(now: learn, 3 chains;" in line for line in lines)
    assert all(("left" in line) and ("so far)" in line) for line in lines)
