"""Bayesian optimization: surrogates behind one posterior interface and acquisition functions.

Entry points: :func:`minimize` and the ask/tell :class:`Study` (resumable). Acquisitions: EI,
log-EI, Frazier's exact noisy EI, the discretized and the stochastic-gradient knowledge
gradient, max-value entropy search, batch q-EI, constraints by probability of feasibility.
Search spaces (:mod:`~stochopt.bayesopt.space`: ``Float``, ``Int``, ``Categorical``, with log
scales), pending points for asynchronous workers, and failed evaluations: see :class:`Study`.

Bad input is refused where it enters (``ValueError``/``TypeError`` naming the argument, before
anything changes); a damaged checkpoint raises :class:`~stochopt.errors.DamagedFileError`
naming the file. Non-finite values: an objective value, observation or constraint value that
is NaN or infinite told to a :class:`Study` (or returned to :func:`minimize`) records a failed
evaluation; NaN or infinite points, training data given to a surrogate directly, and
incumbents are refused with the value named; inside an acquisition, a NaN posterior gives a
NaN score, which the acquisition optimizer skips.
"""

from __future__ import annotations

from stochopt.bayesopt._linalg import NumericalError, robust_cholesky
from stochopt.bayesopt._validate import NotReadyError
from stochopt.bayesopt.acquisition import (
    expected_improvement,
    expected_max_of_lines,
    knowledge_gradient,
    log_expected_improvement,
    log_h,
    noisy_expected_improvement,
)
from stochopt.bayesopt.gp import GP, Hyperparameters
from stochopt.bayesopt.kernels import matern52, rbf
from stochopt.bayesopt.loop import minimize
from stochopt.bayesopt.posterior import Posterior
from stochopt.bayesopt.space import Categorical, Float, Int, Space
from stochopt.bayesopt.study import Result, Study

__all__ = [
    "GP",
    "Categorical",
    "Float",
    "Hyperparameters",
    "Int",
    "NotReadyError",
    "NumericalError",
    "Posterior",
    "Result",
    "Space",
    "Study",
    "expected_improvement",
    "expected_max_of_lines",
    "knowledge_gradient",
    "log_expected_improvement",
    "log_h",
    "matern52",
    "minimize",
    "noisy_expected_improvement",
    "rbf",
    "robust_cholesky",
]
