"""The privacy accountant: pure math for certified unlearning (numpy / scipy only, no torch).

"A" = Langevin unlearning (PNGD), arXiv 2401.10371; "B" = certified unlearning via noisy SGD (PNSGD),
arXiv 2403.17105; "D2D" = Descent-to-Delete, arXiv 2007.02923. The method is docs/METHOD.md.

    validation    what each symbol may be (n >= 2, 1 <= S < n, 0 < delta < 1, alpha > 1, ...)
    conversion    RDP -> (eps, delta), basic and improved; minimisation over alpha (§5.1)
    calibration   ONE generic smallest_sigma / minimal_K for any bound given as a callable (§5.2)
    certificates  Constants / make_constants, the certificate record, burn_in_auto (§1.3, §2.6, §6.1)
    pngd          paper A: learning, unlearning, sequential (§3)
    pnsgd         paper B: Z recursion, loose / tight / non-convergent (§4)
    best          per request the smaller of the Gaussian-DP certificate and the per-order Renyi minimum (§7, §12)
    gdp           Gaussian DP by shifted interpolation: mu, the exact conversion, its searches (§12)
    d2d           Descent-to-Delete noise and iteration counts (§8)
    finetune      noisy fine-tuning of any model, a network's included (arXiv 2506.06985; §13)

Every public name is re-exported here: ``from utils import accountant as A; A.dp_epsilon_unlearn(...)``.
Bound functions take raw numbers (pure formulas); searches take a ``Constants``.
"""
from utils.accountant.best import (dp_epsilon_best, minimal_K_best, next_K_best, rdp_best,
                                   sequential_K_list_best, smallest_sigma_best)
from utils.accountant.calibration import InfeasibleTargetError, minimal_K, smallest_sigma
from utils.accountant.certificates import (Constants, burn_in_auto, certificate, check_given_L,
                                           data_smoothness_lambda_max, gdp_fields, make_constants, retraining_comparison)
from utils.accountant.conversion import (AlphaRangeWarning, dp_epsilon_chains, minimize_over_alpha,
                                         optimal_alpha_linear, rdp_to_dp)
from utils.accountant.gdp import (dp_epsilon_gdp, gdp_chains, gdp_delta, gdp_epsilon, gdp_mu, gdp_power, gdp_rdp,
                                  minimal_K_gdp, mu_stream, next_K_gdp, sequential_K_list_gdp, shift_allocation,
                                  smallest_sigma_gdp)
from utils.accountant.finetune import (FinetuneConstants, default_steps_finetune, dp_epsilon_finetune,
                                       finetune_certificate, make_finetune_constants, minimal_steps_finetune,
                                       smallest_sigma_finetune)
from utils.accountant.d2d import d2d_I_min, d2d_sequential_K_list, d2d_sigma_1, d2d_sigma_2, d2d_term2
from utils.accountant.pngd import (dp_epsilon_learn, dp_epsilon_sequential, dp_epsilon_sequential_sizes,
                                   dp_epsilon_unlearn, epsilon0, epsilon_sequential, epsilon_sequential_sizes,
                                   epsilon_unlearn, epsilon_unlearn_lsi, lsi_constant, minimal_K_pngd,
                                   next_K_sequential_pngd, sequential_K_list_pngd, smallest_sigma_pngd)
from utils.accountant.pnsgd import (Z_B, Z_sequential, Z_stream, dp_epsilon_pnsgd, dp_epsilon_pnsgd_nonconvergent,
                                    epsilon_pnsgd_loose, epsilon_pnsgd_nonconvergent, epsilon_pnsgd_tight,
                                    minimal_K_pnsgd, minimal_K_pnsgd_nonconvergent, sequential_K_list_pnsgd,
                                    smallest_sigma_pnsgd, smallest_sigma_pnsgd_nonconvergent)
from utils.accountant.validation import CONVERSIONS, PNSGD_FORMS, SEQUENTIAL_FORMS

__all__ = [
    "InfeasibleTargetError", "AlphaRangeWarning", "Constants", "make_constants",
    "data_smoothness_lambda_max", "check_given_L", "certificate", "gdp_fields", "retraining_comparison", "burn_in_auto",
    "minimal_K", "smallest_sigma",
    "epsilon0", "lsi_constant", "epsilon_unlearn_lsi", "epsilon_unlearn", "epsilon_sequential",
    "rdp_to_dp", "optimal_alpha_linear", "minimize_over_alpha", "dp_epsilon_chains",
    "dp_epsilon_learn", "dp_epsilon_unlearn", "dp_epsilon_sequential",
    "minimal_K_pngd", "smallest_sigma_pngd", "sequential_K_list_pngd",
    "epsilon_sequential_sizes", "dp_epsilon_sequential_sizes", "next_K_sequential_pngd", "Z_stream",
    "Z_B", "Z_sequential", "epsilon_pnsgd_loose", "epsilon_pnsgd_tight", "epsilon_pnsgd_nonconvergent",
    "dp_epsilon_pnsgd", "dp_epsilon_pnsgd_nonconvergent", "minimal_K_pnsgd",
    "minimal_K_pnsgd_nonconvergent", "smallest_sigma_pnsgd", "smallest_sigma_pnsgd_nonconvergent",
    "sequential_K_list_pnsgd",
    "rdp_best", "dp_epsilon_best", "next_K_best", "minimal_K_best", "sequential_K_list_best", "smallest_sigma_best",
    "gdp_mu", "mu_stream", "shift_allocation", "gdp_delta", "gdp_epsilon", "gdp_rdp", "gdp_chains", "gdp_power",
    "dp_epsilon_gdp", "next_K_gdp", "minimal_K_gdp", "sequential_K_list_gdp", "smallest_sigma_gdp",
    "d2d_sigma_1", "d2d_sigma_2", "d2d_I_min", "d2d_term2", "d2d_sequential_K_list",
    "SEQUENTIAL_FORMS", "CONVERSIONS", "PNSGD_FORMS",
    "FinetuneConstants", "make_finetune_constants", "dp_epsilon_finetune", "minimal_steps_finetune",
    "smallest_sigma_finetune", "default_steps_finetune", "finetune_certificate",
]
