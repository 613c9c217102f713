"""``--bound paper|best|gdp``: the one place that turns the flag into accountant calls (no math here).

paper: each script's published theorem with the papers' conversion (Mironov 2017, Prop. 3):
       full batch = paper A's LSI bound (arXiv 2401.10371), mini-batch = paper B's bound (arXiv 2403.17105).
gdp:   the Gaussian-DP certificate by shifted interpolation (Bok, Su, Altschuler, arXiv 2403.00278) with its
       exact conversion (Dong, Roth, Su, arXiv 1905.02383, Cor. 2.13); docs/METHOD.md §12.
best:  per request the smaller of the gdp certificate and, for every Renyi order, the smallest proven bound that
       applies to the run (A-LSI, B-loose, B-tight at b = n; B-loose, B-tight for mini-batches; GDP's
       alpha mu^2/2), converted with the improved conversion of Canonne, Kamath, Steinke 2020 (arXiv 2004.00010,
       Prop. 12) = Balle et al. 2020 (arXiv 1905.09982, Thm. 21); docs/METHOD.md §7.
best and gdp run with the tight constants (``tight_constants``: softmax L = 1/2 + m, the per-row gradient
bound min(M, G max ||x||); docs/METHOD.md §12.6); paper keeps the papers' constants.
Every function returns, with its number, the short name of the bound that gave it ("A-LSI", "B-loose",
"B-tight", "GDP"), which every certificate records (``fields``). ``T`` is the learning length (steps, epochs for
mini-batches; None: a value that holds for every T), which only the Gaussian-DP certificate reads.
"""
from __future__ import annotations

import math

from utils import accountant

BOUNDS = ("paper", "best", "gdp")
CONVERSION = {"paper": "basic", "best": "improved", "gdp": "exact"}


def _check(bound: str) -> str:
    if bound not in BOUNDS:
        raise ValueError(f"bound={bound!r} is not allowed (allowed: {', '.join(BOUNDS)})")
    return bound


def tight_constants(bound: str) -> bool:
    """Whether the run uses the tight constants (best, gdp) or the papers' (paper)."""
    return _check(bound) != "paper"


def fields(bound: str, name: str, mu: float | None = None) -> dict:
    """The certificate keys naming the bound: bound_mode (paper | best | gdp), bound_name, conversion ("exact"
    when the Gaussian-DP certificate gave the number), and mu when the mode certifies Gaussian DP (best, gdp):
    accountant.certificate reads it in words."""
    out = {"bound_mode": _check(bound), "bound_name": name,
           "conversion": "exact" if name == "GDP" else CONVERSION[bound]}
    if mu is not None:
        out["mu"] = mu
    return out


def order_header(bound: str) -> str:
    """The header of ``order_or_mu``'s column: paper certificates all have an order, best / gdp ones may have mu."""
    return "alpha*" if _check(bound) == "paper" else "alpha*|mu"


def order_or_mu(alpha, mu=None, spec: str = ".4g", named: bool = False) -> str:
    """How eps was reached, for printed tables: alpha* of a Renyi certificate (``alpha*=...`` when ``named``),
    ``mu=...`` of a Gaussian-DP one (which has no order; its alpha is nan), "-" when neither is known."""
    alpha = None if alpha is None else float(alpha)
    if alpha is None or math.isnan(alpha):
        return "-" if mu is None else f"mu={float(mu):.4g}"
    return ("alpha*=" if named else "") + format(alpha, spec)


def stream_fields(bound: str, names, mus=None) -> dict:
    """``fields`` of a stream's certificate: one bound name, one mu (best, gdp) and, for best, one conversion per
    request."""
    out = dict(fields(bound, "", mus), bound_name=list(names))
    if bound == "best":
        out["conversion"] = [fields(bound, name)["conversion"] for name in names]
    return out


def gdp_mu(bound: str, *, Ks, sizes, sigma: float, consts, b=None, T=None) -> float | None:
    """mu of the Gaussian-DP certificate after the requests (best and gdp certify it), None for paper."""
    if _check(bound) == "paper":
        return None
    return accountant.gdp_mu(Ks=Ks, sizes=sizes, sigma=sigma, consts=consts, b=b, T=T)


def _gdp(eps_mu) -> tuple[float, float, str]:
    return eps_mu[0], math.nan, "GDP"


# ---------------------------------------------------------------- full batch (PNGD)
def pngd_eps(bound: str, *, Ks, sizes, sigma: float, consts, form: str = "paper", T=None):
    """(eps, alpha*, name) after requests of sizes[j] rows with Ks[j] steps; paper: A's sequential ``form``."""
    if _check(bound) == "best":
        return accountant.dp_epsilon_best(Ks=Ks, sizes=sizes, sigma=sigma, consts=consts, T=T)
    if bound == "gdp":
        return _gdp(accountant.dp_epsilon_gdp(Ks=Ks, sizes=sizes, sigma=sigma, consts=consts, T=T))
    if len(Ks) == 1:
        eps, alpha = accountant.dp_epsilon_unlearn(K=Ks[0], S=sizes[0], sigma=sigma, consts=consts)
    else:
        eps, alpha = accountant.dp_epsilon_sequential_sizes(Ks=Ks, sizes=sizes, sigma=sigma, consts=consts,
                                                            form=form)
    return eps, alpha, "A-LSI"


def pngd_next_K(bound: str, *, Ks, sizes, sigma: float, eps_target: float, consts, form: str = "paper",
                T=None) -> int:
    """Exact minimal K of request len(sizes), earlier Ks frozen (one request: Ks=[], sizes=[S])."""
    if _check(bound) == "best":
        return accountant.next_K_best(Ks=Ks, sizes=sizes, sigma=sigma, eps_target=eps_target, consts=consts, T=T)
    if bound == "gdp":
        return accountant.next_K_gdp(Ks=Ks, sizes=sizes, sigma=sigma, eps_target=eps_target, consts=consts, T=T)
    if not Ks:
        return accountant.minimal_K_pngd(sigma=sigma, eps_target=eps_target, S=sizes[0], consts=consts)
    return accountant.next_K_sequential_pngd(Ks=Ks, sizes=sizes, sigma=sigma, eps_target=eps_target,
                                             consts=consts, form=form)


def pngd_K_list(bound: str, *, num_requests: int, S: int, sigma: float, eps_target: float, consts,
                form: str = "paper", T=None) -> list[int]:
    """Greedy per-request steps of a stream of S-row requests."""
    if _check(bound) == "best":
        return accountant.sequential_K_list_best(num_requests=num_requests, S=S, sigma=sigma,
                                                 eps_target=eps_target, consts=consts, T=T)
    if bound == "gdp":
        return accountant.sequential_K_list_gdp(num_requests=num_requests, S=S, sigma=sigma,
                                                eps_target=eps_target, consts=consts, T=T)
    return accountant.sequential_K_list_pngd(num_requests=num_requests, S=S, sigma=sigma, eps_target=eps_target,
                                             consts=consts, form=form)


def pngd_smallest_sigma(bound: str, *, K, eps_target: float, S: int, consts, T=None) -> float:
    """Smallest sigma unlearning S rows in K steps at eps_target (conservative side, re-checked)."""
    if _check(bound) == "best":
        return accountant.smallest_sigma_best(K=K, eps_target=eps_target, S=S, consts=consts, T=T)
    if bound == "gdp":
        return accountant.smallest_sigma_gdp(K=K, eps_target=eps_target, S=S, consts=consts, T=T)
    return accountant.smallest_sigma_pngd(K=K, eps_target=eps_target, S=S, consts=consts)


# ---------------------------------------------------------------- mini-batch (PNSGD, converged bound)
def pnsgd_form(Ks, tight_first: bool = False) -> str:
    """Paper B's choice: the loose bound for the first request (tight with tight_first), tight after."""
    return "loose" if not Ks and not tight_first else "tight"


def pnsgd_eps(bound: str, *, Ks, sizes, sigma: float, consts, b=None, R: float = 0.0, tight_first=False, T=None):
    """(eps, alpha*, name) after requests of sizes[j] rows with Ks[j] epochs (Z recursion of B)."""
    if _check(bound) == "best":
        return accountant.dp_epsilon_best(Ks=Ks, sizes=sizes, sigma=sigma, consts=consts, b=b, R=R, T=T)
    if bound == "gdp":
        return _gdp(accountant.dp_epsilon_gdp(Ks=Ks, sizes=sizes, sigma=sigma, consts=consts, b=b, T=T))
    Z = accountant.Z_stream(Ks=Ks[:-1], sizes=sizes, consts=consts, b=b, R=R)[-1]
    form = pnsgd_form(Ks[:-1], tight_first)
    eps, alpha = accountant.dp_epsilon_pnsgd(K=Ks[-1], sigma=sigma, consts=consts, b=b, R=R, Z=Z, form=form)
    return eps, alpha, "B-" + form


def pnsgd_next_K(bound: str, *, Ks, sizes, sigma: float, eps_target: float, consts, b=None, R: float = 0.0,
                 tight_first=False, T=None) -> int:
    """Exact minimal K (epochs) of request len(sizes), earlier Ks frozen."""
    if _check(bound) == "best":
        return accountant.next_K_best(Ks=Ks, sizes=sizes, sigma=sigma, eps_target=eps_target, consts=consts,
                                      b=b, R=R, T=T)
    if bound == "gdp":
        return accountant.next_K_gdp(Ks=Ks, sizes=sizes, sigma=sigma, eps_target=eps_target, consts=consts, b=b,
                                     T=T)
    Z = accountant.Z_stream(Ks=Ks, sizes=sizes, consts=consts, b=b, R=R)[-1]
    return accountant.minimal_K_pnsgd(sigma=sigma, eps_target=eps_target, consts=consts, b=b, R=R, Z=Z,
                                      form=pnsgd_form(Ks, tight_first))


def pnsgd_smallest_sigma(bound: str, *, K, eps_target: float, consts, S: int = 1, b=None, R: float = 0.0,
                         form: str = "loose", T=None) -> float:
    """Smallest sigma unlearning S rows in K epochs at eps_target; paper: B's ``form`` with Z = S Z_B."""
    if _check(bound) == "best":
        return accountant.smallest_sigma_best(K=K, eps_target=eps_target, S=S, consts=consts, b=b, R=R, T=T)
    if bound == "gdp":
        return accountant.smallest_sigma_gdp(K=K, eps_target=eps_target, S=S, consts=consts, b=b, T=T)
    # B depends on Z / sigma only and S rows have Z = S Z_B: scale the one-row sigma.
    return S * accountant.smallest_sigma_pnsgd(K=K, eps_target=eps_target, consts=consts, b=b, R=R, form=form)


# ---------------------------------------------------------------- noisy fine-tuning (networks, docs/METHOD.md §13)
FINETUNE_BOUNDS = ("paper", "best")   # the fine-tuning bounds are Renyi / hockey-stick ones: no Gaussian-DP form yet


def _check_finetune(bound: str) -> str:
    if bound not in FINETUNE_BOUNDS:
        raise ValueError(f"bound={bound!r} is not allowed for a network (allowed: {', '.join(FINETUNE_BOUNDS)})")
    return bound


def finetune_eps(bound: str, *, T: int, sigma: float, fc):
    """(eps, alpha*, name) of T noisy fine-tuning steps (gradient clipping: the bound's conversion; model
    clipping: its (eps, delta) directly, alpha* nan)."""
    eps, alpha = accountant.dp_epsilon_finetune(T=T, sigma=sigma, fc=fc, conversion=CONVERSION[_check_finetune(bound)])
    return eps, alpha, accountant.finetune.NAMES[fc.variant]


def finetune_smallest_sigma(bound: str, *, T: int, eps_target: float, fc) -> float:
    """Smallest sigma certifying eps_target after T noisy fine-tuning steps."""
    return accountant.smallest_sigma_finetune(T=T, eps_target=eps_target, fc=fc, conversion=CONVERSION[_check_finetune(bound)])


def finetune_steps(bound: str, *, sigma: float, eps_target: float, fc) -> int:
    """Fewest noisy fine-tuning steps certifying eps_target at this sigma."""
    return accountant.minimal_steps_finetune(sigma=sigma, eps_target=eps_target, fc=fc,
                                             conversion=CONVERSION[_check_finetune(bound)])
