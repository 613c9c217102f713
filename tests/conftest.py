import os
import sys

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
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
