import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# Hypothesis keeps no example database in the checkout (tests write only under tmp_path).
from hypothesis import settings  # noqa: E402

settings.register_profile("project", database=None, deadline=None)
settings.load_profile("project")
