"""The audit at full strength: worst-case neighbours, white-box statistics, the Gaussian-DP estimate.

Reference values come from first principles: exact (eps, delta) curves of Gaussian shifts by quadrature,
Clopper-Pearson bounds from scipy's beta quantiles, per-point logistic gradients written out by hand.
"""
import json
import math
import os

import numpy as np
import pytest
from scipy import integrate, optimize, special, stats

from utils import audit_stats as st


# ---------------------------------------------------------------- first-principles references
def exact_shift_eps(mu: float, delta: float) -> float:
    """eps of N(mu, 1) against N(0, 1) at delta, from the hockey-stick integral by quadrature (no closed form)."""
    p, q = stats.norm(mu, 1).pdf, stats.norm(0, 1).pdf

    def excess(eps):
        cut = mu / 2 + eps / mu      # p > e^eps q exactly right of this point
        return integrate.quad(lambda x: p(x) - math.exp(eps) * q(x), cut, cut + 40, limit=200)[0] - delta

    return optimize.brentq(excess, 0.0, 60.0, xtol=1e-10)


def gaussian_arms(rng, *, C, d, mu, direction):
    """Linear-Gaussian toy: the stationary law of Langevin dynamics on a quadratic is Gaussian, and
    changing one row's gradient shifts its mean; here unit covariance and a shift of mu along direction."""
    A = rng.normal(size=(C, d)) + mu * direction
    B = rng.normal(size=(C, d))
    return A, B


def neighbours_with(direction, d):
    import audit

    rng = np.random.default_rng(5)
    old, new = rng.normal(size=(1, d)), rng.normal(size=(1, d))
    return audit.Neighbours(kind="worst", rows=np.array([0]), D=None, D_prime=(None, None),
                            old=(old, np.array([1.0])), new=(new, np.array([-1.0])), direction=direction,
                            description="toy")


# ---------------------------------------------------------------- the Gaussian-DP estimate
def test_gdp_mu_lower_is_the_bonferroni_clopper_pearson_formula():
    tp, fp, n = np.array([180, 120, 60]), np.array([40, 10, 2]), 200
    beta = (1 - 0.95) / (2 * 3)            # 2 one-sided bounds per threshold, 3 thresholds
    tpr_lb = stats.beta.ppf(beta, tp, n - tp + 1)
    fpr_ub = stats.beta.ppf(1 - beta, fp + 1, n - fp)
    mus = stats.norm.ppf(1 - fpr_ub) - stats.norm.ppf(1 - tpr_lb)
    mu, i = st.gdp_mu_lower(tp, n, fp, n, confidence=0.95)
    assert mu == pytest.approx(mus.max(), rel=1e-9) and i == int(np.argmax(mus))
    assert st.gdp_mu_lower(np.array([50]), 100, np.array([50]), 100)[0] == 0.0   # a coin flip: floored at 0


@pytest.mark.parametrize("mu", [0.5, 1.5])
def test_gdp_mu_hat_is_a_lower_confidence_value_on_gaussian_shifts(mu):
    # on an exactly Gaussian trade-off curve the estimate's mu exceeds the truth in at most ~5% of runs
    rng = np.random.default_rng(11)
    t = np.quantile(np.r_[rng.normal(mu, 1, 2000), rng.normal(0, 1, 2000)], np.linspace(0.025, 0.975, 20))
    above = sum(st.gdp_estimate(rng.normal(mu, 1, 400), rng.normal(0, 1, 400), sign=1, thresholds=t,
                                delta=1e-3).mu > mu for _ in range(200))
    assert above <= 0.08 * 200


def test_linear_gaussian_toy_bound_below_exact_eps_and_estimate_near_it():
    import audit

    d, mu, delta = 6, 1.5, 1e-3
    u = np.zeros(d)
    u[2] = 1.0
    exact = exact_shift_eps(mu, delta)
    assert st.gdp_epsilon(mu, delta) == pytest.approx(exact, rel=1e-6)
    nb = neighbours_with(u, d)
    rng = np.random.default_rng(0)
    estimates = []
    for _ in range(4):
        A, B = gaussian_arms(rng, C=8000, d=d, mu=mu, direction=u)
        result, (name, g), _, _ = audit.audit_one(A, B, nb, fraction=0.5, delta=delta, confidence=0.95)
        assert result.eps_lower <= exact                      # a bound: below the truth
        assert g.eps <= exact * 1.02                          # mu_hat is a lower confidence value
        assert name in ("shift_projection", "likelihood_ratio", "lda", "mean_difference")
        estimates.append(g.eps)
    # the estimate uses the whole curve: near the exact value, and well above the single-threshold bound
    assert np.mean(estimates) == pytest.approx(exact, rel=0.15)
    assert np.mean(estimates) > 1.3 * result.eps_lower


def test_white_box_statistics_score_along_the_known_direction():
    import audit

    d = 4
    u = np.array([0.0, 0.6, 0.8, 0.0])
    rng = np.random.default_rng(2)
    A, B = gaussian_arms(rng, C=40, d=d, mu=2.0, direction=u)
    cand = audit.candidate_scores(A, B, neighbours_with(u, d), fraction=0.5)
    assert set(audit.WHITE_BOX) <= set(cand)
    np.testing.assert_allclose(cand["shift_projection"][2], A[20:] @ u)
    # held-out likelihood ratio: Gaussian fits of the selection projections, log N(pos) - log N(neg)
    pa, pb = A[:20] @ u, B[:20] @ u
    x = A[20:] @ u
    ref = (stats.norm.logpdf(x, pa.mean(), pa.std(ddof=1)) - stats.norm.logpdf(x, pb.mean(), pb.std(ddof=1)))
    np.testing.assert_allclose(cand["likelihood_ratio"][2], ref, rtol=1e-10)
    # on the selection part each half is scored by the fit to the other half
    qa, qb = A[10:20] @ u, B[10:20] @ u
    y = A[:10] @ u
    ref = (stats.norm.logpdf(y, qa.mean(), qa.std(ddof=1)) - stats.norm.logpdf(y, qb.mean(), qb.std(ddof=1)))
    np.testing.assert_allclose(cand["likelihood_ratio"][0][:10], ref, rtol=1e-10)
    random_nb = neighbours_with(None, d)
    assert not set(audit.WHITE_BOX) & set(audit.candidate_scores(A, B, random_nb, fraction=0.5))


# ---------------------------------------------------------------- worst-case canaries
def _logistic_grad(w, x, y):
    # d/dw log(1 + exp(-y x.w)) = -y x / (1 + exp(y x.w))
    return -y * x / (1.0 + math.exp(y * float(x @ w)))


def test_worst_case_canaries_reach_the_largest_gradient_gap_along_an_empty_direction():
    from utils import data

    ds = data.load_dataset("DIGITS")
    m = 1e-4 * ds.n
    pair = st.worst_case_canaries(ds.X_train, ds.y_train, m=m, M=1.0)
    w = st.fit_reference(ds.X_train, ds.y_train, m=m)
    # the reference fit is the minimiser: its full gradient vanishes
    grad = sum(_logistic_grad(w, x, y) for x, y in zip(ds.X_train, ds.y_train)) / ds.n + m * w
    assert np.linalg.norm(grad) < 1e-6
    for x in (pair.x_old, pair.x_new):
        assert np.linalg.norm(x) == pytest.approx(1.0)
    gap = np.linalg.norm(_logistic_grad(w, pair.x_old, 1.0) - _logistic_grad(w, pair.x_new, 1.0))
    assert pair.gradient_gap == pytest.approx(gap, rel=1e-9)
    # a label flip of one point gives exactly 1 at any w; the angled pair does better, never above 2M
    flip = np.linalg.norm(_logistic_grad(w, pair.x_old, 1.0) - _logistic_grad(w, pair.x_old, -1.0))
    assert flip == pytest.approx(1.0)
    assert 1.2 < gap <= 2.0
    best = -optimize.minimize_scalar(lambda p: -2 * special.expit(np.linalg.norm(w) * math.cos(p)) * math.sin(p),
                                     bounds=(0, math.pi / 2), method="bounded").fun
    assert gap == pytest.approx(best, rel=1e-4)
    # the shift direction carries no data (DIGITS has always-blank pixels) and is unit
    assert np.abs(ds.X_train @ pair.direction).max() < 1e-8
    assert np.linalg.norm(pair.direction) == pytest.approx(1.0)
    assert (pair.x_old - pair.x_new) @ pair.direction > 0


def test_softmax_canary_is_one_point_with_two_labels():
    rng = np.random.default_rng(0)
    X = np.abs(rng.normal(size=(60, 5)))
    X[:, 3] = 0.0
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = rng.integers(0, 3, 60)
    pair = st.worst_case_canaries(X, y, m=0.05, M=2.0, num_classes=3)
    np.testing.assert_allclose(np.abs(pair.x_old), np.eye(5)[3], atol=1e-12)
    assert (pair.y_old, pair.y_new) == (0, 1)
    # logits along the empty direction are 0: p uniform, gradients u (p - e_0) and u (p - e_1)
    assert pair.gradient_gap == pytest.approx(math.sqrt(2.0), rel=1e-6)
    assert pair.direction.shape == (15,) and np.linalg.norm(pair.direction) == pytest.approx(1.0)


# ---------------------------------------------------------------- audit.py on DIGITS
RUN = ("LMC", "DIGITS", "audit")


def _run(tmp_path, name, flags):
    import audit

    out = tmp_path / name
    assert audit.main(["--dataset", "DIGITS", "--seed", "0", "--no_cache", "--result_dir", str(out)] + flags) == 0
    from utils import results

    folder = results.resolve_run_dir(os.path.join(str(out), *RUN))
    with open(os.path.join(folder, "metrics.json")) as fh:
        metrics = json.load(fh)
    with open(os.path.join(folder, "log.txt")) as fh:
        log = fh.read()
    return metrics, log


def test_worst_neighbour_beats_random_at_K0_on_digits_and_nothing_exceeds_the_certificate(tmp_path):
    flags = ["--sigma", "0.01", "--S", "1", "--K", "0", "--trials", "200"]
    rnd, rnd_log = _run(tmp_path, "random", flags)
    worst, worst_log = _run(tmp_path, "worst", flags + ["--neighbour", "worst"])
    assert "random neighbour" in rnd_log and "worst-case neighbour" in worst_log
    assert rnd["settings"]["neighbour"] == "random" and worst["settings"]["neighbour"] == "worst"
    assert worst["empirical_eps_lower"]["0"] > rnd["empirical_eps_lower"]["0"] + 0.5
    assert worst["gdp_estimate"]["0"]["eps"] > rnd["gdp_estimate"]["0"]["eps"]
    for m in (rnd, worst):
        cert = m["certified_eps_by_bound"]["paper"]["0"]
        assert cert == m["certified_eps"]["0"]
        assert m["empirical_eps_lower"]["0"] <= cert and m["gdp_estimate"]["0"]["eps"] <= cert
        assert m["violations"] == [] and m["warnings"] == []
        r = m["ratios"]["0"]["paper"]
        assert r["certified_over_lower"] == pytest.approx(cert / m["empirical_eps_lower"]["0"])
        assert r["certified_over_estimate"] == pytest.approx(cert / m["gdp_estimate"]["0"]["eps"])
    # the held-out counts reproduce the recorded estimate
    g = worst["gdp_estimate"]["0"]
    mu, _ = st.gdp_mu_lower(np.array([g["tp"]]), 100, np.array([g["fp"]]), 100,
                            confidence=1 - 0.05 / g["thresholds"])
    assert g["mu"] == pytest.approx(mu) and g["eps"] == pytest.approx(st.gdp_epsilon(mu, 1 / 267))


def test_target_eps_sets_the_certificate_at_K0(tmp_path):
    from utils import accountant

    metrics, log = _run(tmp_path, "t", ["--target_eps", "--S", "1", "--K", "0", "5", "--trials", "40",
                                        "--neighbour", "worst", "--plan_only"])
    sigma = metrics["settings"]["sigma"]
    assert metrics["settings"]["target_eps"] == 2.0 and "--target_eps 2" in log
    consts = accountant.make_constants(n=267, lam=1e-4, M=1.0, d=64)
    # the paper's learning bound in closed form: min_alpha 4 alpha M^2/(m sigma^2 n^2) + log(1/delta)/(alpha-1)
    a = 4.0 / (consts.m * sigma ** 2 * 267 ** 2)
    assert a + 2 * math.sqrt(a * math.log(267)) == pytest.approx(2.0, rel=1e-6)
    assert metrics["certified_eps"]["0"] <= 2.0 and metrics["certified_eps"]["5"] < 2.0


def test_a_violation_is_reported_loudly(tmp_path, monkeypatch, capsys):
    import audit

    # a second bound plugs in as one entry; a too-small one must be caught, whichever bound it is
    monkeypatch.setitem(audit.BOUNDS, "best", lambda *, K, S, sigma, consts: (1e-3, 2.0, "too-small", None))
    metrics, log = _run(tmp_path, "v", ["--sigma", "0.01", "--S", "10", "--K", "0", "--trials", "60",
                                        "--neighbour", "worst"])
    assert metrics["empirical_eps_lower"]["0"] > 1e-3
    assert set(metrics["certified_eps_by_bound"]) == {"paper", "best", "gdp"}
    assert metrics["violations"] == [0]
    assert any("EXCEEDS THE CERTIFIED EPS" in w for w in metrics["warnings"])
    assert "LOWER BOUND ABOVE THE CERTIFICATE" in log
    assert "EXCEEDS THE CERTIFIED EPS" in capsys.readouterr().err


@pytest.mark.parametrize("flags,message", [
    (["--sigma", "0.1", "--target_eps", "2"], "one of them"),
    (["--target_eps", "0"], "'0'"),
    (["--neighbour", "best"], "best"),
])
def test_bad_audit_flags_are_one_line(tmp_path, capsys, flags, message):
    import audit

    assert audit.main(["--dataset", "DIGITS", "--result_dir", str(tmp_path)] + flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not os.path.exists(os.path.join(str(tmp_path), *RUN))


def test_the_canary_shift_matches_the_gaussian_prediction_on_digits():
    # docs/METHOD.md §9.2: along the empty direction u the chain is AR(1), w_u <- c w_u + eta f + noise with
    # c = 1 - eta m and f = +-gap/(2n), so the two arms' means differ by gap/(n m) and the stationary
    # variance is 2 eta sigma^2 / (1 - c^2) = sigma^2 / (m (1 - eta m / 2)): mu = gap sqrt(1 - eta m/2) / (n sigma sqrt m)
    from utils import accountant, data, engine

    ds = data.load_dataset("DIGITS")
    c = accountant.make_constants(n=ds.n, lam=1e-4, M=1.0, d=ds.d)
    pair = st.worst_case_canaries(ds.X_train, ds.y_train, m=c.m, M=1.0)
    sigma, C, T = 0.02, 400, 80      # c^T < 1e-3: stationary
    proj = []
    for name, x in (("a", pair.x_old), ("b", pair.x_new)):
        X = ds.X_train.copy()
        X[0] = x
        y = ds.y_train.copy()
        y[0] = 1.0
        task = engine.to_task(X, y, 2, device="cpu", dtype="float32")
        w = engine.init_chains(C=C, d=ds.d, num_classes=2, sigma=sigma, m=c.m,
                               generator=engine.generator_for(7, "init", name), dtype="float32")
        w = engine.run_chains(w, task, steps=T, eta=c.eta, sigma=sigma, m=c.m, M=1.0,
                              generator=engine.generator_for(7, "run", name))
        proj.append(w.double().numpy() @ pair.direction)
    a, b = proj
    measured = (a.mean() - b.mean()) / math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    predicted = pair.gradient_gap * math.sqrt(1 - c.eta * c.m / 2) / (ds.n * sigma * math.sqrt(c.m))
    assert measured == pytest.approx(predicted, rel=0.15)          # standard error ~0.08 of mu ~1.5
    assert np.sqrt(a.var(ddof=1)) == pytest.approx(sigma / math.sqrt(c.m * (1 - c.eta * c.m / 2)), rel=0.1)
