"""Expected improvement for minimization, and its logarithm computed without underflow."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from stochopt._checks import show
from stochopt.bayesopt._validate import check_scalar
from stochopt.bayesopt.posterior import Posterior

__all__ = ["expected_improvement", "log_expected_improvement", "log_h"]

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_SQRT_PI_OVER_2 = math.sqrt(math.pi / 2)


def _pdf(z: Tensor) -> Tensor:
    return torch.exp(-0.5 * z.square()) / math.sqrt(2 * math.pi)


def _cdf(z: Tensor) -> Tensor:
    return 0.5 * torch.special.erfc(-z / math.sqrt(2))


def _check(owner: str, posterior: Posterior, best: float | Tensor) -> None:
    """``posterior`` is a :class:`Posterior` and ``best`` a finite number (an incumbent of
    NaN or infinity has no improvement to measure)."""
    if not isinstance(posterior, Posterior):
        raise TypeError(f"{owner}: posterior must be a Posterior, got {show(posterior)}")
    check_scalar(owner, "best", best)


def expected_improvement(posterior: Posterior, best: float | Tensor) -> Tensor:
    r""":math:`E[(f^* - f(x))^+] = \sigma\,h(z)`, :math:`z = (f^* - \mu)/\sigma`,
    :math:`h(z) = z\Phi(z) + \varphi(z)` (minimization form of Frazier's eq. 8).

    Args:
        posterior: the model's posterior at ``m`` points.
        best: the incumbent :math:`f^*` (the smallest value observed).

    Returns:
        ``(m,)``; 0 where the posterior variance is 0 and the mean is no better.

    Raises:
        ValueError: ``best`` is not finite (or not a single number).
    """
    _check("expected_improvement", posterior, best)
    sigma = posterior.stddev
    improvement = best - posterior.mean
    z = improvement / sigma.clamp(min=1e-300)
    ei = sigma * (z * _cdf(z) + _pdf(z))
    return torch.where(sigma > 0, ei, improvement.clamp(min=0.0))


def log_h(z: Tensor) -> Tensor:
    r""":math:`\log h(z) = \log(z\Phi(z) + \varphi(z))`, accurate for every finite ``z``.

    For :math:`z > -1` directly; below, as :math:`\log\varphi(z) + \log(1 - |z| R(|z|))` with
    the Mills ratio :math:`R(t) = \sqrt{\pi/2}\,\mathrm{erfcx}(t/\sqrt2)`; below
    :math:`-1/\sqrt{\epsilon}` (float64: -1e8) by its asymptotic expansion
    :math:`\log\varphi(z) - 2\log|z|`. Finite where :math:`h(z)` underflows (e.g. z = -40).

    References:
        Ament, Daulton, Eriksson, Balandat & Bakshy, "Unexpected Improvements to Expected
        Improvement for Bayesian Optimization", NeurIPS 2023, arXiv:2310.20708.
    """
    if not isinstance(z, Tensor) or not z.is_floating_point():
        raise TypeError(f"log_h: z must be a floating-point tensor, got {show(z)}")
    direct = torch.log(z * _cdf(z) + _pdf(z))
    t = (-z).clamp(min=1.0)
    mills = _SQRT_PI_OVER_2 * torch.special.erfcx(t / math.sqrt(2))
    log_phi = -0.5 * z.square() - _LOG_SQRT_2PI
    middle = log_phi + torch.log1p(-t * mills)
    tail = log_phi - 2 * torch.log(t)
    cut = -1.0 / math.sqrt(torch.finfo(z.dtype).eps)
    return torch.where(z > -1, direct, torch.where(z > cut, middle, tail))


def log_expected_improvement(posterior: Posterior, best: float | Tensor) -> Tensor:
    r""":math:`\log \mathrm{EI} = \log\sigma + \log h(z)`; smooth and finite far from the
    incumbent, where EI's value and gradient underflow to 0 (Ament et al., 2023). ``best``
    must be finite."""
    _check("log_expected_improvement", posterior, best)
    sigma = posterior.stddev.clamp(min=1e-300)
    z = (best - posterior.mean) / sigma
    return sigma.log() + log_h(z)
