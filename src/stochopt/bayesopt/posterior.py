"""The posterior interface every surrogate returns, so any acquisition works with any model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from stochopt.bayesopt._linalg import robust_cholesky

__all__ = ["Posterior"]


@dataclass(frozen=True)
class Posterior:
    """The predictive distribution of the latent function at ``m`` points.

    Attributes:
        mean: ``(m,)``.
        covariance: ``(m, m)``, or ``None`` when only the marginal variances were asked for.
        variance: ``(m,)``.
        noise: the observation-noise variance (to predict observations rather than f).
    """

    mean: Tensor
    variance: Tensor
    covariance: Tensor | None = None
    noise: float = 0.0

    @property
    def stddev(self) -> Tensor:
        return self.variance.clamp(min=0.0).sqrt()

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Joint samples of the latent function, ``(n, m)`` (needs the covariance)."""
        if self.covariance is None:
            raise ValueError("Posterior.sample needs the joint covariance; ask the model for "
                             "posterior(X, covariance=True)")
        L = robust_cholesky(self.covariance)
        z = torch.randn(self.mean.shape[0], n, generator=generator, dtype=self.mean.dtype)
        return (self.mean[:, None] + L @ z.to(self.mean.device)).T
