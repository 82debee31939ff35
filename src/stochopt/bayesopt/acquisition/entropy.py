"""Max-value entropy search, the entropy-search member whose information gain has a closed
form given samples of the minimum value. Minimization form."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from stochopt._checks import check_int, show
from stochopt.bayesopt._validate import check_generator
from stochopt.bayesopt.posterior import Posterior

__all__ = ["max_value_entropy_search", "sample_minimum_values"]


def sample_minimum_values(posterior: Posterior, n: int, generator: torch.Generator) -> Tensor:
    """``n`` draws of :math:`f^* = \\min_x f(x)`, each the minimum of a joint posterior sample
    over a finite set (the posterior must carry the set's covariance); ``(n,)``."""
    if not isinstance(posterior, Posterior):
        raise TypeError(f"sample_minimum_values: posterior must be a Posterior, got "
                        f"{show(posterior)}")
    check_int("sample_minimum_values", "n", n)
    check_generator("sample_minimum_values", generator)
    return posterior.sample(n, generator).min(-1).values


def max_value_entropy_search(posterior: Posterior, minima: Tensor) -> Tensor:
    r"""The mutual information between :math:`f(x)` and the minimum value :math:`f^*`,
    averaged over samples of :math:`f^*`:

    .. math:: \alpha(x) = \frac1S\sum_s \Big[\frac{\gamma_s\varphi(\gamma_s)}{2\Phi(\gamma_s)}
        - \log\Phi(\gamma_s)\Big], \qquad \gamma_s = \frac{\mu(x) - f^*_s}{\sigma(x)},

    the entropy of :math:`f(x)` minus that of :math:`f(x)` truncated to :math:`[f^*_s, \infty)`
    (the minimization form of Wang & Jegelka's eq. 6). Stable in the tails: the ratio is
    formed as :math:`\exp(\log\varphi - \log\Phi)`.

    Args:
        posterior: marginals at ``m`` candidates.
        minima: ``(S,)`` samples of :math:`f^*`.

    Returns:
        ``(m,)``, non-negative.

    References:
        Wang & Jegelka, "Max-value Entropy Search for Efficient Bayesian Optimization", ICML
        2017; Frazier, "A Tutorial on Bayesian Optimization", 2018, §4.3 (the entropy-search
        family).
    """
    if not isinstance(posterior, Posterior):
        raise TypeError(f"max_value_entropy_search: posterior must be a Posterior, got "
                        f"{show(posterior)}")
    if not isinstance(minima, Tensor) or minima.ndim != 1 or not len(minima):
        got = tuple(minima.shape) if isinstance(minima, Tensor) else show(minima)
        raise ValueError(f"max_value_entropy_search: minima must be a tensor of shape (S,) "
                         f"with S >= 1, got {got}")
    sigma = posterior.stddev.clamp(min=1e-12)
    gamma = (posterior.mean[:, None] - minima[None, :]) / sigma[:, None]
    log_cdf = torch.special.log_ndtr(gamma)
    log_pdf = -0.5 * gamma.square() - 0.5 * math.log(2 * math.pi)
    gain = 0.5 * gamma * torch.exp(log_pdf - log_cdf) - log_cdf
    return gain.mean(-1).clamp(min=0.0)
