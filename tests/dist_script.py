"""Run a project script under torchrun for tests/test_distributed.py, optionally making one rank fail.

``python -m torch.distributed.run ... tests/dist_script.py SCRIPT.py ARGS...``; with UNLEARN_TEST_FAIL_RANK=r
and UNLEARN_TEST_FAIL_AFTER=k, rank r's (k+1)-th call of engine.run_chains raises (a device error stand-in);
with UNLEARN_TEST_BEATS=PATH the ranks but 0 log their waits and the heartbeats they receive to PATH.<rank>.
Not collected by pytest (no test_ prefix); never used outside the tests.
"""
import os
import runpy
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

if os.environ.get("UNLEARN_TEST_FAIL_RANK") == os.environ.get("RANK"):
    from utils import engine

    real, calls = engine.run_chains, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > int(os.environ.get("UNLEARN_TEST_FAIL_AFTER", "0")):
            raise engine.DivergenceError(f"simulated failure of rank {os.environ['RANK']}")
        return real(*args, **kwargs)

    engine.run_chains = failing

if os.environ.get("UNLEARN_TEST_BEATS") and os.environ.get("RANK") != "0":
    # the waiting ranks record when they start waiting for rank 0's job and each heartbeat they receive
    # (monotonic clock, one line each): what the lock test waits on instead of a fixed sleep
    import time

    from utils import distributed

    real_broadcast, beats = distributed.broadcast, os.environ["UNLEARN_TEST_BEATS"] + "." + os.environ["RANK"]

    def recording(obj=None, *args, **kwargs):
        if obj is None:
            with open(beats, "a") as fh:
                fh.write(f"wait {time.monotonic()}\n")
        got = real_broadcast(obj, *args, **kwargs)
        if isinstance(got, str) and got == distributed.WAITING:
            with open(beats, "a") as fh:
                fh.write(f"beat {time.monotonic()}\n")
        return got

    distributed.broadcast = recording

script = os.path.join(ROOT, sys.argv[1])
sys.argv = [script, *sys.argv[2:]]
runpy.run_path(script, run_name="__main__")
