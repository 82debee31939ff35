r"""Schedules for the inverse temperature :math:`\alpha` of the consensus point.

A schedule is called as ``schedule(iteration, energy)`` with the iteration :math:`k = 0, 1,
\dots` and the energies ``(M, N)`` of the points about to be averaged, and returns one
:math:`\alpha` per system, shape ``(M,)``. Three rules:

- :class:`ConstantAlpha`: :math:`\alpha_k = \alpha` (Riedl et al.'s experiments);
- :class:`MultiplicativeAlpha`: :math:`\alpha_k = \min(\alpha_0 r^k, \alpha_\max)` (CBXpy's
  default scheduler, ``r = 1.05``, :math:`\alpha_\max = 10^5`);
- :class:`EffectiveSampleSizeAlpha`: the :math:`\alpha` at which the effective sample size
  of the weights is :math:`\eta N` (CBXpy's ``'effective'`` scheduler, after Carrillo et al.).
"""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass

import torch
from torch import Tensor

from stochopt._checks import check_int, check_real, show
from stochopt.cbo.consensus import _ess, _shifted

__all__ = ["AlphaSchedule", "ConstantAlpha", "EffectiveSampleSizeAlpha", "MultiplicativeAlpha"]


class AlphaSchedule:
    """Base: maps (iteration, energies ``(M, N)``) to :math:`\\alpha` per system ``(M,)``."""

    def __call__(self, iteration: int, energy: Tensor) -> Tensor:
        raise NotImplementedError


def check_call(owner: str, iteration: int, energy: Tensor) -> None:
    """A schedule's arguments: ``iteration`` an integer >= 0, ``energy`` a floating tensor
    ``(..., N)`` with ``N >= 1``."""
    check_int(owner, "iteration", iteration, low=0)
    if not isinstance(energy, Tensor) or not energy.is_floating_point():
        raise TypeError(f"{owner}: energy must be a floating-point tensor, got {show(energy)}")
    if energy.ndim == 0 or energy.shape[-1] == 0:
        raise ValueError(f"{owner}: energy must have shape (..., N) with N >= 1, got "
                         f"{tuple(energy.shape)}")


def _full(energy: Tensor, value: float) -> Tensor:
    return torch.full(energy.shape[:-1], value, dtype=energy.dtype, device=energy.device)


@dataclass(frozen=True)
class ConstantAlpha(AlphaSchedule):
    r""":math:`\alpha_k = \alpha` for every iteration.

    Args:
        alpha: :math:`\alpha \ge 0` (finite).
    """

    alpha: float

    def __post_init__(self) -> None:
        check_real("ConstantAlpha", "alpha", self.alpha, low_open=False)

    def __call__(self, iteration: int, energy: Tensor) -> Tensor:
        check_call("ConstantAlpha", iteration, energy)
        return _full(energy, self.alpha)


@dataclass(frozen=True)
class MultiplicativeAlpha(AlphaSchedule):
    r""":math:`\alpha_k = \min(\alpha_0\, r^k, \alpha_\max)`: multiply by ``factor`` per
    iteration up to a cap.

    This is the closed form of CBXpy's default scheduler (``multiply(factor=1.05)``, which
    multiplies after each step and caps at ``maximum=1e5``): iteration :math:`k` uses
    :math:`\alpha_0 r^k` as long as :math:`\alpha_0 \le \alpha_\max`.

    Args:
        alpha: :math:`\alpha_0 > 0`, the value at iteration 0.
        factor: :math:`r > 0` (default 1.05).
        maximum: :math:`\alpha_\max \ge \alpha_0` (default ``1e5``).
    """

    alpha: float
    _: KW_ONLY
    factor: float = 1.05
    maximum: float = 1e5

    def __post_init__(self) -> None:
        check_real("MultiplicativeAlpha", "alpha", self.alpha)
        check_real("MultiplicativeAlpha", "factor", self.factor)
        check_real("MultiplicativeAlpha", "maximum", self.maximum)
        if self.maximum < self.alpha:
            raise ValueError(f"MultiplicativeAlpha: maximum must be >= alpha, got "
                             f"maximum={self.maximum!r} and alpha={self.alpha!r}")

    def __call__(self, iteration: int, energy: Tensor) -> Tensor:
        check_call("MultiplicativeAlpha", iteration, energy)
        log_alpha = math.log(self.alpha) + iteration * math.log(self.factor)  # no overflow
        return _full(energy, min(math.exp(min(log_alpha, 709.0)), self.maximum))


@dataclass(frozen=True, kw_only=True)
class EffectiveSampleSizeAlpha(AlphaSchedule):
    r"""The :math:`\alpha` that solves :math:`J_\text{eff}(\alpha) = \eta N`, per system.

    :math:`J_\text{eff}(\alpha) = (\sum_i w_i)^2 / \sum_i w_i^2` with
    :math:`w_i = e^{-\alpha f(x_i)}` (:func:`~stochopt.cbo.effective_sample_size`) falls from
    :math:`N` at :math:`\alpha = 0` towards the number of minimal energies as
    :math:`\alpha \to \infty`, so the root is found by bisection, here on :math:`\log\alpha`
    within [``minimum``, ``maximum``] to a relative precision of :math:`10^{-8}`. Where
    :math:`J_\text{eff} > \eta N` even at ``maximum`` (e.g. equal energies), the result is
    ``maximum``; where :math:`J_\text{eff} < \eta N` already at ``minimum``, ``minimum``.

    Args:
        eta: :math:`\eta \in (0, 1]` (default 0.5).
        minimum: smallest :math:`\alpha` (default ``1e-5``).
        maximum: largest :math:`\alpha` (default ``1e5``).

    References:
        Carrillo, Hoffmann, Stuart & Vaes, "Consensus-based sampling", Studies in Applied
        Mathematics 148(3), 2022, arXiv:2106.02519.

    Note:
        CBXpy's ``effective_sample_size`` scheduler bisects on :math:`\alpha` itself (15
        halvings of [1e-5, 1e5], so a resolution near 1.5) and applies the result from the
        next step, with the energies of the step before; here the root is accurate and is
        used for the energies it was solved for.
    """

    eta: float = 0.5
    minimum: float = 1e-5
    maximum: float = 1e5

    def __post_init__(self) -> None:
        check_real("EffectiveSampleSizeAlpha", "eta", self.eta, high=1.0, high_open=False)
        check_real("EffectiveSampleSizeAlpha", "minimum", self.minimum)
        check_real("EffectiveSampleSizeAlpha", "maximum", self.maximum)
        if self.maximum <= self.minimum:
            raise ValueError(f"EffectiveSampleSizeAlpha: maximum must be > minimum, got "
                             f"maximum={self.maximum!r} and minimum={self.minimum!r}")

    def __call__(self, iteration: int, energy: Tensor) -> Tensor:
        check_call("EffectiveSampleSizeAlpha", iteration, energy)
        target = self.eta * energy.shape[-1]
        low = _full(energy, math.log(self.minimum))
        high = _full(energy, math.log(self.maximum))
        shifted = _shifted(energy)  # once for every halving
        halvings = math.ceil(math.log2(math.log(self.maximum / self.minimum) / 1e-8))
        for _ in range(halvings):
            mid = (low + high) / 2
            above = _ess(shifted, mid.exp()) > target  # alpha still too small
            low, high = torch.where(above, mid, low), torch.where(above, high, mid)
        return ((low + high) / 2).exp()
