"""What the neural surrogates share: unit-cube inputs, standardized outputs, and a posterior
formed from a finite set of sampled functions (ensemble members or HMC draws)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from stochopt._checks import check_int, check_real, show
from stochopt.bayesopt._validate import (
    NotReadyError,
    check_data,
    check_generator,
    check_points,
    real_tensor,
)
from stochopt.bayesopt.posterior import Posterior

__all__ = ["SampledFunctions", "posterior_from_samples"]


def check_network(owner: str, widths: Sequence[int], dtype: Any, lr: float,
                  steps: dict[str, int]) -> tuple[int, ...]:
    """The settings every network surrogate shares: ``widths`` a non-empty sequence of
    integers >= 1, ``dtype`` a floating torch dtype, ``lr`` finite > 0, and each of ``steps``
    an integer >= 0; returns ``widths`` as a tuple."""
    if isinstance(widths, str | bytes) or not isinstance(widths, Sequence) or not widths:
        raise TypeError(f"{owner}: widths must be a non-empty sequence of integers, got "
                        f"{show(widths)}")
    widths = tuple(check_int(owner, f"widths[{i}]", w) for i, w in enumerate(widths))
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{owner}: dtype must be a floating torch dtype (torch.float32 or "
                        f"torch.float64), got {show(dtype)}")
    check_real(owner, "lr", lr)
    for name, value in steps.items():
        check_int(owner, name, value, low=0)
    return widths


def posterior_from_samples(F: Tensor, noise: float = 0.0, covariance: bool = False
                           ) -> Posterior:
    """The Gaussian summary of ``S`` function draws at ``m`` points (``F``: ``(S, m)``):
    sample mean and unbiased sample (co)variance."""
    F = real_tensor("posterior_from_samples", "F", F)
    if F.ndim != 2 or F.shape[0] < 1:
        raise ValueError(f"posterior_from_samples: F must have shape (S, m) with S >= 1, got "
                         f"{tuple(F.shape)}")
    mean = F.mean(0)
    D = F - mean
    scale = 1.0 / max(F.shape[0] - 1, 1)
    cov = D.T @ D * scale if covariance else None
    return Posterior(mean, D.square().sum(0) * scale, cov, noise)


class SampledFunctions:
    """Base class: subclasses set ``self.noise`` (standardized units) in ``fit`` and
    implement ``_draws(U)`` returning ``(S, m)`` standardized outputs at unit inputs.

    The networks run in float32 by default (``dtype``): on CPUs this halves the cost of the
    thousands of training or leapfrog steps per fit, while the posterior is float64."""

    noise: float

    def _check_fit(self, X: Tensor, y: Tensor, bounds: Tensor,
                   generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor,
                                                               torch.Generator]:
        """``fit``'s arguments checked (data as float64), with the default generator."""
        owner = f"{type(self).__name__}.fit"
        X, y, bounds = check_data(owner, X, y, bounds)
        generator = check_generator(owner, generator) or torch.Generator().manual_seed(0)
        return X, y, bounds, generator

    def _set_data(self, X: Tensor, y: Tensor, bounds: Tensor) -> None:
        self.bounds = bounds.to(torch.float64)
        y = y.to(torch.float64)
        self.y_mean = float(y.mean())
        self.y_std = float(y.std()) if len(y) > 1 and y.std() > 0 else 1.0
        self.U = self._to_unit(X)
        self.z = (y - self.y_mean) / self.y_std

    def _to_unit(self, X: Tensor) -> Tensor:
        low, high = self.bounds[:, 0], self.bounds[:, 1]
        return (X.to(torch.float64) - low) / (high - low)

    def _draws(self, U: Tensor) -> Tensor:
        raise NotImplementedError

    def posterior(self, X: Tensor, covariance: bool = False) -> Posterior:
        """The posterior of the latent function at ``X`` ``(m, d)`` (original units),
        differentiable with respect to ``X``."""
        owner = f"{type(self).__name__}.posterior"
        if not hasattr(self, "params"):
            raise NotReadyError(f"{owner}: fit the model first")
        X = check_points(owner, "X", X, self.bounds.shape[0])
        F = self._draws(self._to_unit(X)).to(torch.float64) * self.y_std + self.y_mean
        return posterior_from_samples(F, self.noise * self.y_std**2, covariance)
