"""Data-parallel learning for tests/test_distributed.py: under torchrun, rows of DIGITS / DIGITS_MULTI sharded
across the ranks (distributed.shard_task); rank 0 saves the chains to argv[1] (npz); every rank checks it holds
the same chains. Not collected by pytest; never used outside the tests."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from utils import data, distributed, engine  # noqa: E402

world = distributed.setup("cpu")
out = {}
for name in ("DIGITS", "DIGITS_MULTI"):
    ds = data.load_dataset(name)
    task = distributed.shard_task(ds.X_train, ds.y_train, ds.num_classes, device="cpu", dtype="float32")
    g = lambda: engine.generator_for(0, "rows", name)  # noqa: E731
    w0 = engine.init_chains(C=8, d=ds.d, num_classes=ds.num_classes, sigma=0.05, m=0.1, generator=g())
    w = engine.run_chains(w0, task, steps=50, eta=1.0, sigma=0.05, m=0.1, M=0.5 if ds.num_classes == 2 else 2.0, generator=g())
    assert torch.equal(distributed.broadcast(w), w), "ranks hold different chains"
    out[name] = w.numpy()
if world.main:
    np.savez(sys.argv[1], **out)
