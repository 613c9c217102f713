"""Small random problems the engine tests share."""
import numpy as np


def unit_rows(k: int, n: int, d: int, seed: int = 0):
    """n random unit-norm rows in d dimensions, labels of k classes (+1/-1 for k = 2, 0..k-1 otherwise)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = rng.integers(0, k, n)
    return X, (2.0 * y - 1 if k == 2 else y)


def state_parts(n: int = 64, d: int = 3, C: int = 2, first_id: int = 100):
    """(meta, arrays) of a consistent unlearn.py state without learning (utils.state's checks accept it):
    X holds row i + 1 everywhere, so a test sees which rows a request replaced."""
    meta = {"dataset": {"name": "toy", "n": n, "d": d, "num_classes": 2, "classes": [0, 1], "fingerprint": "f",
                        "sha256": "0" * 64, "source": "toy"},
            "constants": {"n": n, "lam": 0.01 / n, "m": 0.01, "L": 0.26, "M": 1.0, "eta": 1 / 0.26,
                          "delta": 1.0 / n, "num_classes": 2, "d": d, "smoothness": "bound", "data_dependent": False,
                          "lambda_max": None, "c": 1 - 0.01 / 0.26, "gamma": 0.25 / 0.27, "d2d_step": 2 / 0.27},
            "settings": {"method": "PNGD", "batch_size": "full", "sigma": 0.1, "T": 5, "trials": C, "seed": 1,
                         "dtype": "float64", "eps_default": 1.0, "request_size": 1, "R": 0.0, "bound": "paper"},
            "requests": []}
    arrays = {"w": np.zeros((C, d)), "X": np.arange(1.0, n + 1.0)[:, None] * np.ones((1, d)),
              "y": 2.0 * (np.arange(n) % 2) - 1, "ids": np.arange(first_id, first_id + n), "X_test": np.ones((4, d)),
              "y_test": np.array([-1.0, 1.0, -1.0, 1.0]), "accuracy": np.full(C, 0.5), "removed": np.zeros(n, bool)}
    return meta, arrays


def request_parts(state, ids):
    """(meta, arrays) of ``state`` after a request removing ``ids`` (rows zeroed, K = 1, a certificate that
    names the request): what a commit needs, without the accountant."""
    ids = [int(i) for i in ids]
    rows = sorted(int(np.flatnonzero(state.arrays["ids"] == i)[0]) for i in ids)
    s = len(state.meta["requests"]) + 1
    c, st = state.meta["constants"], state.meta["settings"]
    cert = {"request": s, "K": 1, "S": len(ids), "eps": 1.0, "sigma": st["sigma"], "n": c["n"], "delta": c["delta"]}
    record = {"request": s, "ids": ids, "rows": rows, "S": len(ids), "K": 1, "eps_target": 1.0, "certificate": cert}
    X, removed = state.arrays["X"].copy(), state.arrays["removed"].copy()
    X[rows] = 0.0
    removed[rows] = True
    return dict(state.meta, requests=state.meta["requests"] + [record]), dict(state.arrays, X=X, removed=removed)
