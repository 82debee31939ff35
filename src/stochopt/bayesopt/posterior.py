"""The posterior interface every surrogate returns, so any acquisition works with any model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from stochopt._checks import check_int, check_real, show
from stochopt.bayesopt._linalg import robust_cholesky
from stochopt.bayesopt._validate import check_generator

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

    def __post_init__(self) -> None:
        """Shapes agree (``mean`` ``(m,)``, ``variance`` ``(m,)``, ``covariance`` ``(m, m)``)
        and ``noise`` is a variance: finite and >= 0. Values are not scanned (a NaN mean
        gives NaN acquisition values, which the acquisition optimizer skips)."""
        for name in ("mean", "variance", "covariance"):
            value = getattr(self, name)
            if not isinstance(value, Tensor) and (name != "covariance" or value is not None):
                raise TypeError(f"Posterior: {name} must be a tensor, got {show(value)}")
        m = self.mean.shape[0] if self.mean.ndim == 1 else -1
        if m < 0 or self.variance.shape != (m,) or (
                self.covariance is not None and self.covariance.shape != (m, m)):
            cov = None if self.covariance is None else tuple(self.covariance.shape)
            raise ValueError(f"Posterior: need mean (m,), variance (m,), covariance (m, m) or "
                             f"None; got {tuple(self.mean.shape)}, "
                             f"{tuple(self.variance.shape)}, {cov}")
        noise = float(self.noise) if isinstance(self.noise, Tensor) and \
            self.noise.numel() == 1 else self.noise
        object.__setattr__(self, "noise", check_real("Posterior", "noise", noise, low=0.0,
                                                     low_open=False))

    @property
    def stddev(self) -> Tensor:
        return self.variance.clamp(min=0.0).sqrt()

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Joint samples of the latent function, ``(n, m)`` (needs the covariance)."""
        check_int("Posterior.sample", "n", n)
        check_generator("Posterior.sample", generator)
        if self.covariance is None:
            raise ValueError("Posterior.sample needs the joint covariance; ask the model for "
                             "posterior(X, covariance=True)")
        L = robust_cholesky(self.covariance)
        z = torch.randn(self.mean.shape[0], n, generator=generator, dtype=self.mean.dtype)
        return (self.mean[:, None] + L @ z.to(self.mean.device)).T
