import os
import sys
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# Hypothesis keeps no example database in the checkout (tests write only under tmp_path).
from hypothesis import settings  # noqa: E402

settings.register_profile("project", database=None, deadline=None)
settings.load_profile("project")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def quiet_single_thread(monkeypatch):
    """No progress bars; one torch thread: the tests' problems are tiny, and on a busy machine a second
    thread only waits (up to 100x slower per product). Torch is not imported here for tests that never use it."""
    monkeypatch.setenv("UNLEARN_NO_PROGRESS", "1")
    monkeypatch.setenv("UNLEARN_NO_CALIBRATION", "1")  # --plan_only's speed measurement: tested on its own
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- data a fresh machine may lack
FASHION_HOWTO = ("Fashion-MNIST absent: install the Debian package dataset-fashion-mnist "
                 "(sudo apt-get install dataset-fashion-mnist, as .ci/run does) or copy the four IDX files "
                 "to data/FashionMNIST/raw/")


def fashion_available() -> bool:
    """Whether load_dataset("FASHION") finds its files without a download (the folders it reads first)."""
    from utils import data as data_mod  # no torch

    return any(data_mod._find_idx(Path(folder)) for folder in (os.path.join(ROOT, "data", "FashionMNIST", "raw"),
                                                               os.path.join("data", "FashionMNIST", "raw"),
                                                               data_mod.SYSTEM_FASHION_DIR))


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_fashion: reads the real Fashion-MNIST files; skipped, with how "
                                       "to get them, where they are absent")


def pytest_runtest_setup(item):
    if item.get_closest_marker("needs_fashion") is not None and not fashion_available():
        pytest.skip(FASHION_HOWTO)
