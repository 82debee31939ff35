"""What the neural surrogates share: unit-cube inputs, standardized outputs, and a posterior
formed from a finite set of sampled functions (ensemble members or HMC draws)."""

from __future__ import annotations

import torch
from torch import Tensor

from stochopt.bayesopt.posterior import Posterior

__all__ = ["SampledFunctions", "posterior_from_samples"]


def posterior_from_samples(F: Tensor, noise: float = 0.0, covariance: bool = False
                           ) -> Posterior:
    """The Gaussian summary of ``S`` function draws at ``m`` points (``F``: ``(S, m)``):
    sample mean and unbiased sample (co)variance."""
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
        F = self._draws(self._to_unit(X)).to(torch.float64) * self.y_std + self.y_mean
        return posterior_from_samples(F, self.noise * self.y_std**2, covariance)
