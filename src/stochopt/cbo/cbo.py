r"""Consensus-based optimization (CBO): Euler-Maruyama steps of interacting particles.

Each particle drifts towards the consensus point and diffuses in proportion to its distance
from it:

.. math::
    X^i \leftarrow X^i - \lambda\, \Delta t\, (X^i - x_\alpha)
        + \sigma \sqrt{\Delta t}\, D(X^i - x_\alpha)\, \xi^i,
    \qquad \xi^i \sim \mathcal N(0, I_d),

with :math:`D(v) = \|v\|_2 I_d` (isotropic noise) or :math:`D(v) = \mathrm{diag}(|v|)`
(anisotropic noise), and :math:`x_\alpha` the consensus point of the particles before the step.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from stochopt._checks import check_real, show
from stochopt.cbo._base import ConsensusMethod
from stochopt.cbo.schedules import AlphaSchedule

__all__ = ["CBO", "Noise", "cbo_update"]

Noise = Literal["isotropic", "anisotropic"]


def cbo_update(x: Tensor, consensus: Tensor, xi: Tensor, *, dt: float, lamda: float,
               sigma: float, noise: Noise) -> Tensor:
    r""":math:`X^i - \lambda \Delta t (X^i - x_\alpha) + \sigma\sqrt{\Delta t}\,
    D(X^i - x_\alpha)\,\xi^i` for every particle.

    Args:
        x: particles :math:`X^i`, shape ``(M, N, d)``.
        consensus: :math:`x_\alpha`, shape ``(M, d)``.
        xi: standard normal draws :math:`\xi^i`, shape ``(M, N, d)``.
        dt: :math:`\Delta t`.
        lamda: :math:`\lambda` (spelled as in CBXpy; ``lambda`` is a Python keyword).
        sigma: :math:`\sigma`.
        noise: ``"isotropic"`` (:math:`\|X^i - x_\alpha\|_2`) or ``"anisotropic"``
            (:math:`|X^i - x_\alpha|` per coordinate).

    Returns:
        The particles after the step, shape ``(M, N, d)``.
    """
    _check_update(x, consensus, xi, dt, lamda, sigma, noise)
    return _update(x, consensus, xi, dt, lamda, sigma, noise)


def _update(x: Tensor, consensus: Tensor, xi: Tensor, dt: float, lamda: float, sigma: float,
            noise: Noise) -> Tensor:
    """:func:`cbo_update` on checked arguments."""
    drift = x - consensus.unsqueeze(-2)  # X^i - x_alpha, (M, N, d)
    if noise == "isotropic":
        scale = torch.linalg.vector_norm(drift, dim=-1, keepdim=True)  # (M, N, 1)
    else:
        scale = drift.abs()  # (M, N, d)
    return x - lamda * dt * drift + sigma * math.sqrt(dt) * scale * xi


def _check_update(x: Tensor, consensus: Tensor, xi: Tensor, dt: float, lamda: float,
                  sigma: float, noise: Noise) -> None:
    """:func:`cbo_update`'s arguments: shapes that match, the constants' ranges."""
    owner = "cbo_update"
    check_real(owner, "dt", dt)
    check_real(owner, "lamda", lamda)
    check_real(owner, "sigma", sigma, low_open=False)
    if noise not in ("isotropic", "anisotropic"):
        raise ValueError(f"{owner}: noise must be 'isotropic' or 'anisotropic', got "
                         f"{show(noise)}")
    for name, value in (("x", x), ("consensus", consensus), ("xi", xi)):
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise TypeError(f"{owner}: {name} must be a floating-point tensor, got "
                            f"{show(value)}")
    if x.ndim < 2 or consensus.shape != x.shape[:-2] + x.shape[-1:] or xi.shape != x.shape:
        raise ValueError(f"{owner}: need x of shape (..., N, d), consensus (..., d) and xi "
                         f"the shape of x, got {tuple(x.shape)}, {tuple(consensus.shape)} and "
                         f"{tuple(xi.shape)}")


class CBO(ConsensusMethod):
    r"""Consensus-based optimization with isotropic or anisotropic noise.

    Symbols: :math:`\Delta t` = ``dt``, :math:`\lambda` = ``lamda``, :math:`\sigma` =
    ``sigma``, :math:`\alpha` = ``alpha``, :math:`D` = ``noise``; the number of particles
    :math:`N` and of independent runs :math:`M` come from the particles' shape ``(M, N, d)``.
    One iteration (:meth:`step`) evaluates :math:`f` at the :math:`N` particles of every run,
    forms :math:`x_\alpha` (:func:`~stochopt.cbo.consensus_point`) and applies
    :func:`cbo_update` with fresh draws :math:`\xi \sim \mathcal N(0, I)` from the generator.
    Use it through :func:`~stochopt.cbo.minimize`.

    Args:
        dt: :math:`\Delta t > 0` (default 0.01).
        lamda: :math:`\lambda > 0`, drift towards the consensus point (default 1).
        sigma: :math:`\sigma \ge 0`, noise strength (default 1).
        alpha: :math:`\alpha`: a float for a constant value (default 100), or an
            :class:`~stochopt.cbo.schedules.AlphaSchedule`.
        noise: ``"isotropic"`` (default) or ``"anisotropic"``.

    Example:
        >>> from stochopt.cbo import minimize, gaussian_particles
        >>> from stochopt.tasks import Ackley
        >>> x0 = gaussian_particles(torch.full((3,), 2.0), 2.0, 50, runs=4, seed=0)
        >>> result = minimize(Ackley(dim=3), x0, CBO(dt=0.1, sigma=1.0), max_iterations=300,
        ...                   seed=0)
        >>> bool((result.x.norm(dim=-1) < 0.1).all())
        True

    References:
        Pinnau, Totzeck, Tse & Martin, "A consensus-based model for global optimization and its
        mean-field limit", Math. Models Methods Appl. Sci. 27(1), 2017, arXiv:1604.05648.
        Carrillo, Jin, Li & Zhu, "A consensus-based global optimization method for high
        dimensional machine learning problems", ESAIM: COCV 27, 2021, arXiv:1909.09249
        (anisotropic noise).
        Riedl, Klock, Geldhauser & Fornasier, "Gradient is All You Need? How Consensus-Based
        Optimization can be Interpreted as a Stochastic Relaxation of Gradient Descent", 2023,
        arXiv:2306.09778 (the update as written, following its code ``CBO_update.m``).

    Note:
        The update is that of ``CBO_update.m`` and of CBXpy's ``CBO`` without drift
        correction or batching; CBXpy's default :math:`\sigma` is 5.1 and its default
        :math:`\alpha` schedule multiplies by 1.05 per step
        (:class:`~stochopt.cbo.schedules.MultiplicativeAlpha`), while here a float
        :math:`\alpha` stays constant, as in Riedl et al.'s experiments. For anisotropic
        noise CBXpy multiplies :math:`\xi^i` by the signed :math:`X^i - x_\alpha`, the
        official code and this one by its absolute value: the same law (:math:`\xi` is
        symmetric), different paths for the same draws.
    """

    def __init__(self, *, dt: float = 0.01, lamda: float = 1.0, sigma: float = 1.0,
                 alpha: float | AlphaSchedule = 100.0, noise: Noise = "isotropic") -> None:
        super().__init__(alpha=alpha)
        self.dt = check_real("CBO", "dt", dt)
        self.lamda = check_real("CBO", "lamda", lamda)
        self.sigma = check_real("CBO", "sigma", sigma, low_open=False)
        if noise not in ("isotropic", "anisotropic"):
            raise ValueError(f"CBO: noise must be 'isotropic' or 'anisotropic', got "
                             f"{show(noise)}")
        self.noise: Noise = noise

    def _move(self, x: Tensor, consensus: Tensor, generator: torch.Generator) -> Tensor:
        """One Euler-Maruyama step of every particle (:func:`cbo_update`)."""
        xi = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        return _update(x, consensus, xi, self.dt, self.lamda, self.sigma, self.noise)

    def __repr__(self) -> str:
        return (f"CBO(dt={self.dt}, lamda={self.lamda}, sigma={self.sigma}, "
                f"alpha={self.alpha!r}, noise={self.noise!r})")
