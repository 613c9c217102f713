"""Fixed-seed runs of every script give the arrays and metrics kept in tests/golden/ (written by
`python -m tests.golden_runs --write` before the restructuring of issue 15): a change of layout must not
change a result. Values are float64 on one CPU thread; the tolerance is rounding, far below any change a
different noise draw, step count, constant or bound would make (those move values by 1e-3 or more)."""
import tempfile

import numpy as np
import pytest

from tests import golden_runs

pytest.importorskip("torch")


def _compare(name, got):
    with np.load(golden_runs.golden_file(name)) as z:
        want = {k: z[k] for k in z.files}
    assert sorted(got) == sorted(want), (sorted(set(got) ^ set(want)))[:10]
    for key, w in want.items():
        g = got[key]
        assert g.shape == w.shape and g.dtype == w.dtype, key
        if w.dtype.kind in "biuU":
            np.testing.assert_array_equal(g, w, err_msg=key)
        else:
            rtol, atol = (2e-6, 1e-7) if w.dtype == np.float32 else (1e-9, 1e-12)
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=key)


@pytest.mark.parametrize("name", list(golden_runs.RUNS))
def test_script_reproduces_its_golden_arrays(name, tmp_path):
    _compare(name, golden_runs.run(name, str(tmp_path)))


def test_unlearn_reproduces_its_golden_state(tmp_path):
    _compare("unlearn", golden_runs.run_unlearn(str(tmp_path)))


def test_the_comparison_fails_on_a_changed_value(tmp_path):
    """The check is not vacuous: one accuracy moved by one test row fails it."""
    got = golden_runs.run("baseline", str(tmp_path))
    key = next(k for k in got if k.startswith("a:") and got[k].dtype.kind == "f" and got[k].size > 1)
    got[key] = got[key].copy()
    got[key].flat[0] += 1.0 / 360
    with pytest.raises(AssertionError):
        _compare("baseline", got)
