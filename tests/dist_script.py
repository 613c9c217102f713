"""Run a project script under torchrun for tests/test_distributed.py, optionally making one rank fail.

``python -m torch.distributed.run ... tests/dist_script.py SCRIPT.py ARGS...``; with UNLEARN_TEST_FAIL_RANK=r
and UNLEARN_TEST_FAIL_AFTER=k, rank r's (k+1)-th call of engine.run_chains raises (a device error stand-in);
with UNLEARN_TEST_BEATS=PATH the ranks but 0 log their waits and the heartbeats they receive to PATH.<rank>;
with UNLEARN_TEST_RANK0_AFTER=PATH rank 0 starts only once another rank waits to be stopped after an early failure.
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

if os.environ.get("UNLEARN_TEST_RANK0_AFTER"):
    # rank 0 starts only once another rank, failed before the group formed, waits to be stopped (it writes the
    # file then): rank 0 as slow as a loaded machine can make it. A rank that exits instead gets rank 0 stopped
    # by torchrun while it waits here, before it prints anything.
    import time

    from utils import distributed

    marker = os.environ["UNLEARN_TEST_RANK0_AFTER"]
    if os.environ.get("RANK") == "0":
        deadline = time.monotonic() + 600
        while not os.path.exists(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
    else:
        real_abandon = distributed.abandon

        def marking(code, **kwargs):
            if kwargs.get("wait", 0) > 0:
                open(marker, "a").close()
            return real_abandon(code, **kwargs)

        distributed.abandon = marking

script = os.path.join(ROOT, sys.argv[1])
sys.argv = [script, *sys.argv[2:]]
runpy.run_path(script, run_name="__main__")
