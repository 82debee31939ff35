"""Acquisition functions (minimization form): functions of a :class:`Posterior`."""

from __future__ import annotations

from stochopt.bayesopt.acquisition.analytic import (
    expected_improvement,
    log_expected_improvement,
    log_h,
)

__all__ = ["expected_improvement", "log_expected_improvement", "log_h"]
