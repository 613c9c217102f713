"""Small random problems the engine tests share."""
import numpy as np


def unit_rows(k: int, n: int, d: int, seed: int = 0):
    """n random unit-norm rows in d dimensions, labels of k classes (+1/-1 for k = 2, 0..k-1 otherwise)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = rng.integers(0, k, n)
    return X, (2.0 * y - 1 if k == 2 else y)
