"""The empirical audit: pure statistics against closed forms / scipy / naive code, and audit.py on DIGITS."""
import json
import math
import os

import numpy as np
import pytest
from scipy import integrate, stats

from faults import interrupt_at_call
from utils import accountant
from utils import audit_stats as st
from utils import results


# ---------------------------------------------------------------- Clopper-Pearson
@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (1, 1), (17, 250), (499, 500), (0, 500)])
@pytest.mark.parametrize("conf", [0.9, 0.95, 0.99])
def test_clopper_pearson_matches_scipy_exact_interval(k, n, conf):
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=conf, method="exact")
    low, high = st.clopper_pearson(k, n, confidence=conf)
    assert low == pytest.approx(ref.low, abs=1e-12)
    assert high == pytest.approx(ref.high, abs=1e-12)


def test_clopper_pearson_closed_form_at_the_edges_and_vectorised():
    # k = 0: P(0 successes) = (1 - p)^n = tail  ->  high = 1 - tail^(1/n); k = n: low = tail^(1/n)
    n, tail = 37, 0.025
    assert st.clopper_pearson(0, n)[1] == pytest.approx(1 - tail ** (1 / n), rel=1e-12)
    assert st.clopper_pearson(n, n)[0] == pytest.approx(tail ** (1 / n), rel=1e-12)
    low, high = st.clopper_pearson(np.array([0, 5, 37]), np.array([37, 37, 37]))
    assert low.shape == (3,) and low[0] == 0.0 and high[2] == 1.0
    assert low[1] == pytest.approx(st.clopper_pearson(5, 37)[0])


@pytest.mark.parametrize("k,n,conf", [(-1, 10, 0.95), (11, 10, 0.95), (3, 0, 0.95), (3, 10, 1.0), (1.5, 10, 0.95)])
def test_clopper_pearson_rejects_bad_input(k, n, conf):
    with pytest.raises(ValueError, match="allowed"):
        st.clopper_pearson(k, n, confidence=conf)


# ---------------------------------------------------------------- rates -> eps
def test_eps_from_rates_closed_forms():
    assert st.eps_from_rates(0.5, 0.05, delta=0.0) == pytest.approx(math.log(10))
    # the complement event: 1 - fpr = 0.95 against 1 - tpr = 0.05
    assert st.eps_from_rates(0.95, 0.5, delta=0.0) == pytest.approx(math.log(0.5 / 0.05))
    assert st.eps_from_rates(0.5, 0.05, delta=0.01) == pytest.approx(math.log(0.49 / 0.05))
    assert st.eps_from_rates(0.3, 0.3, delta=0.0) == 0.0          # a coin flip shows nothing
    # a reversed test shows nothing here: the orientation is the rule's job (best_threshold's sign)
    assert st.eps_from_rates(0.2, 0.6, delta=0.0) == 0.0
    assert st.eps_from_rates(0.5, 0.0, delta=0.0) == math.inf
    assert st.eps_from_rates(0.004, 0.0, delta=0.005) == 0.0      # tpr below delta: nothing to show


def test_eps_from_rates_is_monotone():
    rates = np.linspace(0, 1, 41)
    tpr, fpr = np.meshgrid(rates, rates, indexing="ij")
    e = st.eps_from_rates(tpr, fpr, delta=0.01)
    assert (e[1:, :] >= e[:-1, :]).all()         # more true positives never lower eps (inf included)
    assert (e[:, 1:] <= e[:, :-1]).all()         # more false positives never raise it
    assert e[0, 0] == 0 and e[-1, 0] == math.inf and e[20, 20] == 0


def test_eps_interval_brackets_the_point_and_tightens_with_samples():
    for n in (50, 500, 5000):
        lo, hi = st.eps_interval(int(0.6 * n), n, int(0.05 * n), n, delta=0.001, confidence=0.95)
        point = st.eps_from_rates(0.6, 0.05, delta=0.001)
        assert lo < point < hi
        if n > 50:
            assert lo > prev_lo and hi < prev_hi
        prev_lo, prev_hi = lo, hi
    # per-rate intervals at 1 - (1 - c)/2: the lower bound is eps(TPR_low, FPR_high) at that level
    tl, _ = st.clopper_pearson(300, 500, confidence=0.975)
    _, fh = st.clopper_pearson(25, 500, confidence=0.975)
    lo, _ = st.eps_interval(300, 500, 25, 500, delta=0.001, confidence=0.95)
    assert lo == pytest.approx(math.log((tl - 0.001) / fh))


@pytest.mark.parametrize("mu", [0.5, 1.0, 2.0, 4.0])
@pytest.mark.parametrize("delta", [1e-5, 1e-3, 0.05])
def test_gdp_epsilon_is_the_best_threshold_test_on_a_gaussian_shift(mu, delta):
    # Neyman-Pearson: thresholds are the optimal tests for N(mu, 1) vs N(0, 1), so the sup over t of
    # the eps a threshold shows with the exact rates is the (eps, delta) curve of the shift itself.
    # (t >= mu/2 suffices by symmetry; it also keeps tpr away from 1, where sf rounds)
    t = np.linspace(mu / 2, 14, 200001)
    shown = st.eps_from_rates(stats.norm.sf(t - mu), stats.norm.sf(t), delta=delta)
    assert shown.max() == pytest.approx(st.gdp_epsilon(mu, delta), rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("mu,eps", [(1.0, 0.5), (2.0, 3.0), (3.0, 1.0)])
def test_gdp_delta_matches_the_hockey_stick_integral(mu, eps):
    # delta(eps) = int max(p - e^eps q, 0): the naive definition, by quadrature
    p, q = stats.norm(mu, 1).pdf, stats.norm(0, 1).pdf
    delta, _ = integrate.quad(lambda x: max(p(x) - math.exp(eps) * q(x), 0.0), -20, 20, points=[mu / 2 + eps / mu],
                              limit=200)
    assert st.gdp_epsilon(mu, delta) == pytest.approx(eps, rel=1e-6)
    assert st.gdp_epsilon(0.0, 0.01) == 0.0


def test_eps_lower_on_synthetic_gaussians_never_exceeds_the_truth_and_finds_a_shift():
    rng = np.random.default_rng(1)
    delta, n = 1e-3, 1000
    for mu in (0.0, 1.0, 4.0):
        truth = st.gdp_epsilon(mu, delta)
        lowers = []
        for _ in range(20):
            sel_pos, hold_pos = rng.normal(mu, 1, n), rng.normal(mu, 1, n)
            sel_neg, hold_neg = rng.normal(0, 1, n), rng.normal(0, 1, n)
            r = st.membership_audit({"x": (sel_pos, sel_neg, hold_pos, hold_neg)}, delta=delta, confidence=0.95)
            lowers.append(r.eps_lower)
            assert r.eps_lower <= r.eps_point <= r.eps_upper
        lowers = np.array(lowers)
        assert np.mean(lowers > truth) <= 0.1            # a 95% bound: exceeding the truth is rare
        if mu == 0:
            assert np.mean(lowers == 0) >= 0.9
        if mu == 4.0:                                    # finite samples cap it well below 18, but it shows
            assert lowers.min() > 3.0
    # the larger shift is easier to see
    assert np.median(lowers) > 3.0


# ---------------------------------------------------------------- thresholds and the honest split
def test_best_threshold_separates_and_picks_the_orientation():
    pos, neg = np.array([5.0, 6.0, 7.0]), np.array([1.0, 2.0, 3.0])
    rule = st.best_threshold(pos, neg, delta=0.0)
    assert rule.sign == 1 and 3.0 < rule.threshold < 5.0
    assert st.rule_counts(rule, pos, neg) == (3, 0)
    flipped = st.best_threshold(-pos, -neg, delta=0.0)
    assert flipped.sign == -1 and st.rule_counts(flipped, -pos, -neg) == (3, 0)
    assert rule.objective == pytest.approx(st.eps_interval(3, 3, 0, 3, delta=0.0)[0])


def test_best_threshold_maximises_the_lower_bound_over_every_rule():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1.5, 1, 60), rng.normal(0, 1, 80)
    rule = st.best_threshold(pos, neg, delta=0.01)
    best = 0.0
    for sign in (1, -1):                                 # brute force over every cut
        for t in np.concatenate([pos, neg]) * sign:
            tp, fp = int(np.sum(sign * pos > t)), int(np.sum(sign * neg > t))
            best = max(best, st.eps_interval(tp, 60, fp, 80, delta=0.01)[0])
    assert rule.objective == pytest.approx(best)


def test_membership_audit_measures_on_the_held_out_half_only():
    rng = np.random.default_rng(3)
    n = 400
    # "leaky" separates perfectly on the selection half but not at all on the held-out half
    leaky = (rng.normal(5, 1, n), rng.normal(0, 1, n), rng.normal(0, 1, n), rng.normal(0, 1, n))
    honest = (rng.normal(1, 1, n), rng.normal(0, 1, n), rng.normal(1, 1, n), rng.normal(0, 1, n))
    r = st.membership_audit({"honest": honest, "leaky": leaky}, delta=0.001)
    assert r.statistic == "leaky" and r.selection["leaky"] > r.selection["honest"]
    assert r.eps_lower == 0.0 and r.n_pos == r.n_neg == n
    r2 = st.membership_audit({"honest": honest}, delta=0.001)
    tp, fp = st.rule_counts(r2.rule, honest[2], honest[3])
    assert (r2.tp, r2.fp) == (tp, fp)
    assert r2.eps_lower == pytest.approx(st.eps_interval(tp, n, fp, n, delta=0.001)[0])
    with pytest.raises(ValueError, match="allowed"):
        st.membership_audit({}, delta=0.001)


# ---------------------------------------------------------------- statistics of the weights
def _naive_losses(W, X, y):
    out = np.zeros((W.shape[0], X.shape[0]))
    for c in range(W.shape[0]):
        for i in range(X.shape[0]):
            if W.ndim == 2:
                out[c, i] = math.log(1 + math.exp(-y[i] * X[i] @ W[c]))
            else:
                z = X[i] @ W[c]
                out[c, i] = math.log(np.exp(z).sum()) - z[y[i]]
    return out


def test_point_losses_match_a_naive_loop():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 4))
    Wb, yb = rng.normal(size=(3, 4)), np.array([1, -1, 1, 1, -1])
    Wm, ym = rng.normal(size=(3, 4, 3)), np.array([0, 2, 1, 1, 0])
    np.testing.assert_allclose(st.point_losses(Wb, X, yb), _naive_losses(Wb, X, yb), rtol=1e-12)
    np.testing.assert_allclose(st.point_losses(Wm, X, ym), _naive_losses(Wm, X, ym), rtol=1e-12)


@pytest.mark.parametrize("k", [2, 3])
def test_loss_gradient_direction_is_the_gradient_of_the_loss_difference(k):
    rng = np.random.default_rng(k)
    Xo, Xn = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    if k == 2:
        w, yo, yn = rng.normal(size=4), np.array([1, -1, 1]), np.array([-1, -1, 1])
    else:
        w, yo, yn = rng.normal(size=(4, k)), np.array([0, 2, 1]), np.array([1, 1, 0])

    def f(v):  # sum of new losses minus sum of old losses at one weight
        W = v.reshape((1,) + w.shape)
        return st.point_losses(W, Xn, yn).sum() - st.point_losses(W, Xo, yo).sum()

    v, h = w.reshape(-1), 1e-6
    numeric = np.array([(f(v + h * e) - f(v - h * e)) / (2 * h) for e in np.eye(v.size)])
    np.testing.assert_allclose(st.loss_gradient_direction(w, Xo, yo, Xn, yn), numeric, atol=1e-7)


def test_lda_direction_is_the_fisher_discriminant():
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(30, 3)) @ np.diag([1, 2, 3]) + 1.0, rng.normal(size=(40, 3))
    centred = np.concatenate([A - A.mean(0), B - B.mean(0)])
    pooled = centred.T @ centred / (70 - 2)
    np.testing.assert_allclose(st.lda_direction(A, B, shrinkage=0.0),
                               np.linalg.solve(pooled, A.mean(0) - B.mean(0)), rtol=1e-10)
    shrunk = 0.7 * pooled + 0.3 * np.trace(pooled) / 3 * np.eye(3)
    np.testing.assert_allclose(st.lda_direction(A, B, shrinkage=0.3),
                               np.linalg.solve(shrunk, A.mean(0) - B.mean(0)), rtol=1e-10)
    np.testing.assert_allclose(st.mean_difference_direction(A, B), A.mean(0) - B.mean(0))
    np.testing.assert_allclose(st.project(A, [1, 0, 0]), A[:, 0])
    with pytest.raises(ValueError, match="allowed"):
        st.project(A, [1, 0])
    with pytest.raises(ValueError, match="allowed"):
        st.lda_direction(A, B, shrinkage=2)


# ---------------------------------------------------------------- two-sample distances
@pytest.mark.parametrize("m1,s1,m2,s2", [(0, 1, 1, 1), (0, 1, 0.5, 2), (1, 0.3, -1, 1.5), (2, 1, 2, 1)])
def test_gaussian_tv_and_renyi_match_quadrature(m1, s1, m2, s2):
    p, q = stats.norm(m1, s1).pdf, stats.norm(m2, s2).pdf
    lo, hi = min(m1, m2) - 12 * max(s1, s2), max(m1, m2) + 12 * max(s1, s2)
    tv = 0.5 * integrate.quad(lambda x: abs(p(x) - q(x)), lo, hi, limit=400)[0]
    assert st.gaussian_tv(m1, s1, m2, s2) == pytest.approx(tv, abs=1e-7)
    for alpha in (1.5, 2.0, 4.0):
        if alpha * s2 ** 2 + (1 - alpha) * s1 ** 2 <= 0:
            assert st.gaussian_renyi(alpha, m1, s1, m2, s2) == math.inf
            continue
        mass = integrate.quad(lambda x: p(x) ** alpha * q(x) ** (1 - alpha), lo, hi, limit=400)[0]
        assert st.gaussian_renyi(alpha, m1, s1, m2, s2) == pytest.approx(math.log(mass) / (alpha - 1), abs=1e-7)


def test_two_sample_distances_on_gaussian_samples():
    rng = np.random.default_rng(0)
    mu, delta = 2.0, 0.01
    d = st.two_sample_distances(rng.normal(mu, 1, 20000), rng.normal(0, 1, 20000), delta=delta)
    assert d["mean_gap_sd"] == pytest.approx(mu, abs=0.05)
    assert d["tv_gauss"] == pytest.approx(2 * stats.norm.cdf(mu / 2) - 1, abs=0.02)
    assert d["ks"] == pytest.approx(2 * stats.norm.cdf(mu / 2) - 1, abs=0.03)   # KS = TV for a shift
    assert d["renyi_gauss"] == pytest.approx(2 * mu ** 2 / 2, rel=0.06)           # D_2 = alpha mu^2 / 2
    assert d["gdp_eps"] == pytest.approx(st.gdp_epsilon(mu, delta), rel=0.05)
    assert d["ks_pvalue"] < 1e-10
    same = st.two_sample_distances(rng.normal(size=500), rng.normal(size=500), delta=delta)
    assert same["ks_pvalue"] > 1e-3 and same["mean_gap_sd"] < 0.3
    with pytest.raises(ValueError, match="allowed"):
        st.two_sample_distances([1.0], [1.0, 2.0], delta=delta)


# ---------------------------------------------------------------- audit.py on DIGITS
RUN = ("LMC", "DIGITS", "audit")
FAST = ["--dataset", "DIGITS", "--sigma", "0.01", "--S", "10", "--burn_in", "auto", "--seed", "0"]


@pytest.fixture
def quiet(monkeypatch):
    monkeypatch.setenv("UNLEARN_NO_PROGRESS", "1")


def _consts(lam=1e-4):
    from utils import data
    ds = data.load_dataset("DIGITS")
    return accountant.make_constants(n=ds.n, lam=lam, M=1.0, d=ds.d)


def _folder(tmp_path):
    return results.resolve_run_dir(os.path.join(str(tmp_path), *RUN))  # the run `latest` names


def _read(folder):
    with open(os.path.join(folder, "metrics.json")) as fh:
        metrics = json.loads(fh.read())     # strict JSON (no NaN / Infinity tokens)
    with np.load(os.path.join(folder, "arrays.npz")) as z:
        arrays = {k: z[k] for k in z.files}
    return metrics, arrays


def test_audit_on_digits_positive_at_zero_falls_with_K_and_stays_below_the_certificate(tmp_path, quiet):
    import audit

    Ks = [0, 10, 100]
    assert audit.main(FAST + ["--trials", "200", "--K", *map(str, Ks), "--result_dir", str(tmp_path)]) == 0
    folder = _folder(tmp_path)
    for name in ("config.json", "metrics.json", "arrays.npz", "figure.png", "figure.pdf", "log.txt"):
        assert os.path.exists(os.path.join(folder, name)), name
    metrics, arrays = _read(folder)
    lower = {int(k): v for k, v in metrics["empirical_eps_lower"].items()}
    cert = {int(k): v for k, v in metrics["certified_eps"].items()}
    consts = _consts()
    for K in Ks:   # the certificate is the accountant's
        assert cert[K] == pytest.approx(accountant.dp_epsilon_unlearn(K=K, S=10, sigma=0.01, consts=consts)[0])
    assert cert[0] == pytest.approx(accountant.dp_epsilon_learn(S=10, sigma=0.01, consts=consts)[0])
    # (1) no unlearning: the replaced rows are clearly visible
    assert lower[0] > 1.0
    # (2) unlearning erases them: the bound falls toward 0
    assert lower[100] < 0.3 and lower[100] < lower[0] - 1.0
    assert metrics["distances"]["0"]["ks"] > metrics["distances"]["100"]["ks"] + 0.3
    # (3) never above the certificate
    assert all(lower[K] <= cert[K] for K in Ks) and metrics["violations"] == [] and metrics["warnings"] == []
    # metrics agree with arrays and with their own counts
    np.testing.assert_allclose(arrays["empirical_eps_lower"], [lower[K] for K in Ks])
    np.testing.assert_allclose(arrays["certified_eps"], [cert[K] for K in Ks])
    assert arrays["K"].tolist() == Ks and arrays["acc_unlearned"].shape == (3, 200)
    for i, K in enumerate(Ks):
        a = metrics["attack"][str(K)]
        assert a["n_pos"] == a["n_neg"] == 100
        lo, hi = st.eps_interval(a["tp"], 100, a["fp"], 100, delta=consts.delta, confidence=0.95)
        assert lo == pytest.approx(lower[K]) and metrics["empirical_eps_ci"][str(K)][0] == pytest.approx(lo)
        assert metrics["accuracy"]["unlearned"][str(K)]["mean"] == pytest.approx(arrays["acc_unlearned"][i].mean())
        d = st.two_sample_distances(arrays["holdout_scores_unlearned"][i], arrays["holdout_scores_retrained"][i],
                                    delta=consts.delta)
        assert metrics["distances"][str(K)]["ks"] == pytest.approx(d["ks"])
    # burn-in auto and the settings are recorded; the figure redraws from the folder
    assert metrics["settings"]["T"] == accountant.burn_in_auto(sigma=0.01, m=consts.m, M=1.0, eta=consts.eta,
                                                               dim=64)[0]
    assert metrics["chain_steps"] == 2 * 200 * (metrics["settings"]["T"] + 100)
    from utils import plots
    assert len(plots.draw(folder)) == 2


def test_plan_only_writes_the_certificates_without_chains(tmp_path, quiet):
    import audit

    assert audit.main(FAST + ["--K", "0", "5", "50", "--plan_only", "--result_dir", str(tmp_path)]) == 0
    metrics, arrays = _read(_folder(tmp_path))
    assert metrics["plan_only"] is True and "empirical_eps_lower" not in metrics
    consts = _consts()
    for K in (0, 5, 50):
        eps, alpha = accountant.dp_epsilon_unlearn(K=K, S=10, sigma=0.01, consts=consts)
        assert metrics["certified_eps"][str(K)] == pytest.approx(eps)
        assert metrics["certified_alpha"][str(K)] == pytest.approx(alpha)
    assert [c["K"] for c in metrics["certificates"] if c["bound_mode"] == "paper"] == [0, 5, 50]
    assert [c["K"] for c in metrics["certificates"] if c["bound_mode"] == "best"] == [0, 5, 50]
    assert metrics["settings"]["trials"] == 1000                    # the audit's own default
    assert not os.path.exists(os.path.join(str(tmp_path), "cache"))  # no chain ran
    assert os.path.exists(os.path.join(_folder(tmp_path), "figure.png"))


@pytest.mark.parametrize("flags,message", [
    (["--sigma", "0"], "sigma"),
    (["--K", "0", "5", "5"], "repeats"),
    (["--K", "-1"], "-1"),
    (["--trials", "3"], "at least 2"),
    (["--confidence", "1.5"], "1.5"),
    (["--S", "267"], "267"),
    (["--n", "1000"], "--plan_only"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, quiet, capsys, flags, message):
    import audit

    assert audit.main(FAST + ["--result_dir", str(tmp_path / "r")] + flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0] and message in err[0]
    assert not os.path.exists(os.path.join(str(tmp_path / "r"), *RUN))


def test_interrupted_run_resumes_to_the_same_result(tmp_path, quiet, monkeypatch):
    import audit
    from utils import experiments

    flags = FAST + ["--trials", "40", "--K", "0", "3", "8", "--no_cache"]
    assert audit.main(flags + ["--result_dir", str(tmp_path / "whole")]) == 0
    whole = _read(_folder(tmp_path / "whole"))[1]

    # two accuracy calls per K: the 3rd stops during K = 3, after its chains were saved
    real = interrupt_at_call(monkeypatch, experiments.Lab, "accuracy", 3)
    assert audit.main(flags + ["--result_dir", str(tmp_path / "cut")]) == 130
    parts = os.listdir(os.path.join(results.run_dirs(os.path.join(str(tmp_path / "cut"), *RUN))[0], "parts"))
    assert sorted(parts) == ["K0.npz", "K3.npz"]
    monkeypatch.setattr(experiments.Lab, "accuracy", real)
    assert audit.main(flags + ["--result_dir", str(tmp_path / "cut"), "--resume"]) == 0
    resumed = _read(_folder(tmp_path / "cut"))[1]
    for key in ("empirical_eps_lower", "acc_unlearned", "holdout_scores_unlearned", "holdout_scores_retrained"):
        np.testing.assert_array_equal(resumed[key], whole[key])
