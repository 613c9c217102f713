"""The cost of future requests: the K each of the next requests would need, against retraining (priced
by ``retraining_steps``, T + sum K per request, as every certificate is) and against learning afresh (T).

The bound is a parameter: ``next_K(Ks, sizes)`` returns the K the accountant's chosen bound gives the
last request of ``sizes`` when the earlier requests used ``Ks`` (unlearn.py passes its plan_request).
K grows with the number of requests under the sequential bounds (docs/METHOD.md §3.3, §4.4), so a
stream that starts cheap can cost more than retraining from scratch after a few requests.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from utils.accountant import InfeasibleTargetError

DEFAULT_COUNT = 10


def retraining_steps(T: int, Ks: Sequence[int]) -> int:
    """What retraining from scratch at each request would have cost: request j's certificate compares with
    chains retrained on the current data for T + K_1 + ... + K_j steps (docs/METHOD.md §6.1), so the stream
    of requests costs the sum of those over j. The one rule for pricing retraining (remove, learn, status)."""
    total, cumulative = 0, 0
    for K in Ks:
        cumulative += int(K)
        total += int(T) + cumulative
    return total


@dataclass(frozen=True)
class Future:
    """One future request: its number in the stream, its rows, the K it needs (None: infeasible)."""
    request: int
    S: int
    K: int | None
    cumulative: int | None     # K summed over every request up to this one, past ones included
    why: str = ""              # why K is None
    retrain: int | None = None  # retraining_steps over every request up to this one, past ones included


def future_requests(next_K: Callable[[list, list], int], *, Ks: Sequence[int], sizes: Sequence[int], S: int,
                    T: int, n: int, count: int = DEFAULT_COUNT) -> list[Future]:
    """K of the next ``count`` requests of S rows each after the past ones (Ks, sizes), stopping after the
    first one whose K exceeds the retraining cost T, when the rows would run out (n), or when infeasible."""
    Ks, sizes, out = [int(k) for k in Ks], [int(s) for s in sizes], []
    for _ in range(count):
        s = len(sizes) + 1
        if sum(sizes) + S >= n:
            out.append(Future(s, S, None, None, f"{sum(sizes) + S} removed rows would reach n={n}"))
            break
        try:
            K = int(next_K(list(Ks), sizes + [S]))
        except InfeasibleTargetError as exc:
            out.append(Future(s, S, None, None, str(exc).splitlines()[0]))
            break
        Ks.append(K)
        sizes.append(S)
        out.append(Future(s, S, K, sum(Ks), retrain=retraining_steps(T, Ks)))
        if K > T:
            break
    return out


def first_over(rows: Sequence[Future], T: int):
    """The first future request whose K exceeds T (retraining from scratch is cheaper), or None."""
    return next((r for r in rows if r.K is not None and r.K > T), None)


def table(rows: Sequence[Future], *, T: int, unit: str, eps: float, bound: str) -> list[str]:
    """Printed lines: one per request, then where K overtakes retraining."""
    if not rows:
        return []
    S = rows[0].S
    lines = [f"future requests of {S} row(s) at eps={eps:g} ({bound}); retraining from scratch at each request "
             f"costs T + sum K {unit} (T={T}), learning afresh T:",
             f"  {'request':>7} {'K':>8} {'total K':>9} {'retrain total':>14}"]
    for r in rows:
        if r.K is None:
            lines.append(f"  {r.request:>7} {'-':>8}  not possible: {r.why}")
        else:
            lines.append(f"  {r.request:>7} {r.K:>8} {r.cumulative:>9} {r.retrain:>14}"
                         + (f"   <- K > T: learning afresh ({T} {unit}) is cheaper from here" if r.K > T else ""))
    over = first_over(rows, T)
    if over is None and rows[-1].K is not None:
        lines.append(f"  K stays <= T={T} for these {len(rows)} requests")
    return lines
