"""Bayesian optimization: surrogates behind one posterior interface and acquisition functions.

Work in progress (issue #7): the exact GP and expected improvement exist; noisy EI, knowledge
gradient, neural surrogates and the ``minimize`` entry point come next.
"""

from __future__ import annotations

from stochopt.bayesopt._linalg import NumericalError, robust_cholesky
from stochopt.bayesopt.acquisition import (
    expected_improvement,
    log_expected_improvement,
    log_h,
)
from stochopt.bayesopt.gp import GP, Hyperparameters
from stochopt.bayesopt.kernels import matern52, rbf
from stochopt.bayesopt.posterior import Posterior

__all__ = [
    "GP",
    "Hyperparameters",
    "NumericalError",
    "Posterior",
    "expected_improvement",
    "log_expected_improvement",
    "log_h",
    "matern52",
    "rbf",
    "robust_cholesky",
]
