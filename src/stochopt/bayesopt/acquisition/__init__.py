"""Acquisition functions (minimization form): functions of a :class:`Posterior`."""

from __future__ import annotations

from stochopt.bayesopt.acquisition.analytic import (
    expected_improvement,
    log_expected_improvement,
    log_h,
)
from stochopt.bayesopt.acquisition.entropy import max_value_entropy_search, sample_minimum_values
from stochopt.bayesopt.acquisition.knowledge_gradient import (
    expected_max_of_lines,
    knowledge_gradient,
    knowledge_gradient_batch,
    noisy_expected_improvement,
    noisy_expected_improvement_batch,
)
from stochopt.bayesopt.acquisition.monte_carlo import normal_base_samples, q_expected_improvement

__all__ = [
    "expected_improvement",
    "expected_max_of_lines",
    "knowledge_gradient",
    "knowledge_gradient_batch",
    "log_expected_improvement",
    "log_h",
    "max_value_entropy_search",
    "noisy_expected_improvement",
    "noisy_expected_improvement_batch",
    "normal_base_samples",
    "q_expected_improvement",
    "sample_minimum_values",
]
