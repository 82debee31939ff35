"""What consensus-based methods share: the alpha schedule, evaluating the objective on a
batch of particle systems, the consensus point, and the step = evaluate, then move."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from stochopt._checks import check_real
from stochopt.cbo.consensus import consensus_point
from stochopt.cbo.schedules import AlphaSchedule, ConstantAlpha

__all__ = ["ConsensusMethod", "Objective", "StepInfo", "evaluate_objective"]

#: the objective: points ``(..., d)`` -> values ``(...)``
Objective = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class StepInfo:
    """What one iteration evaluated.

    Attributes:
        energy: :math:`f(x_i)` at the particles before the move, shape ``(M, N)``.
        alpha: the :math:`\\alpha` used, shape ``(M,)``.
        consensus: the consensus point :math:`x_\\alpha`, shape ``(M, d)``.
    """

    energy: Tensor
    alpha: Tensor
    consensus: Tensor


def evaluate_objective(f: Objective, x: Tensor) -> Tensor:
    """``f(x)`` for particles ``(M, N, d)``, checked to have shape ``(M, N)``."""
    energy = f(x)
    if not isinstance(energy, Tensor) or energy.shape != x.shape[:-1]:
        shape = tuple(energy.shape) if isinstance(energy, Tensor) else type(energy).__name__
        raise ValueError(f"f must map points of shape (..., d) to values of shape (...): for "
                         f"particles of shape {tuple(x.shape)} it returned {shape}, expected "
                         f"{tuple(x.shape[:-1])}")
    return energy


class ConsensusMethod:
    """Base: a particle method that averages its particles into a consensus point and moves.

    Args:
        alpha: :math:`\\alpha`, a float (constant) or an
            :class:`~stochopt.cbo.schedules.AlphaSchedule`.
    """

    def __init__(self, *, alpha: float | AlphaSchedule) -> None:
        if not isinstance(alpha, AlphaSchedule):
            name = type(self).__name__
            check_real(name, "alpha", alpha, low_open=False)
            alpha = ConstantAlpha(float(alpha))
        self.alpha = alpha

    def evaluate(self, f: Objective, x: Tensor, iteration: int) -> StepInfo:
        """Energies of the particles ``x`` ``(M, N, d)``, :math:`\\alpha` from the schedule and
        the consensus point."""
        energy = evaluate_objective(f, x)
        alpha = self.alpha(iteration, energy)
        return StepInfo(energy, alpha, consensus_point(x, energy, alpha))

    def move(self, x: Tensor, consensus: Tensor, generator: torch.Generator) -> Tensor:
        """The particles of the next iteration."""
        raise NotImplementedError

    def step(self, f: Objective, x: Tensor, iteration: int,
             generator: torch.Generator) -> tuple[Tensor, StepInfo]:
        """One iteration: evaluate and average the particles ``x`` ``(M, N, d)``, then move
        them; returns the new particles and what was evaluated."""
        info = self.evaluate(f, x, iteration)
        return self.move(x, info.consensus, generator), info
