"""What consensus-based methods share: the alpha schedule, evaluating the objective on a
batch of particle systems, the consensus point, and the step = evaluate, then move."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from stochopt._checks import check_int, check_real, show
from stochopt.cbo.consensus import _point
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
    """``f(x)`` for particles ``(M, N, d)``, checked to have shape ``(M, N)`` (one value per
    particle); integer or boolean values are converted to the particles' dtype."""
    energy = f(x)
    if not isinstance(energy, Tensor) or energy.shape != x.shape[:-1]:
        shape = tuple(energy.shape) if isinstance(energy, Tensor) else type(energy).__name__
        raise ValueError(f"f must map points of shape (..., d) to values of shape (...): for "
                         f"particles of shape {tuple(x.shape)} it returned {shape}, expected "
                         f"{tuple(x.shape[:-1])}")
    if energy.is_complex():
        raise TypeError(f"f must return real values, got dtype {energy.dtype}")
    return energy if energy.is_floating_point() else energy.to(x.dtype)


def check_particles(owner: str, x: Tensor) -> None:
    """``x`` is a floating-point tensor of particles ``(M, N, d)``, all sizes >= 1."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"{owner}: x must be a floating-point tensor of particles (M, N, d), "
                        f"got {show(x)}")
    if x.ndim != 3 or 0 in x.shape:
        raise ValueError(f"{owner}: x must have shape (M, N, d) with M, N, d >= 1, got "
                         f"{tuple(x.shape)}")


def check_move(owner: str, x: Tensor, consensus: Tensor, generator: torch.Generator) -> None:
    """A move's arguments: particles ``(M, N, d)``, consensus points ``(M, d)``, a generator."""
    check_particles(owner, x)
    want = (x.shape[0], x.shape[2])
    if not isinstance(consensus, Tensor) or consensus.shape != want:
        raise ValueError(f"{owner}: consensus must be a tensor of shape {want} (one point per "
                         f"run), got {show(consensus)}")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"{owner}: generator must be a torch.Generator, got {show(generator)}")


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
        the consensus point (non-finite energies: see :mod:`stochopt.cbo.consensus`)."""
        owner = f"{type(self).__name__}.evaluate"
        check_particles(owner, x)
        check_int(owner, "iteration", iteration, low=0)
        return self._evaluate(f, x, iteration)

    def _evaluate(self, f: Objective, x: Tensor, iteration: int) -> StepInfo:
        """:meth:`evaluate` on checked particles (the schedule's output is still checked)."""
        owner = f"{type(self).__name__}.evaluate"
        energy = evaluate_objective(f, x)
        alpha = self.alpha(iteration, energy)
        if not isinstance(alpha, Tensor) or alpha.shape != energy.shape[:-1] or not bool(
                ((alpha >= 0) & alpha.isfinite()).all()):
            raise ValueError(f"{owner}: the alpha schedule {self.alpha!r} must return finite "
                             f"values >= 0 of shape {tuple(energy.shape[:-1])}, got "
                             f"{show(alpha)}")
        return StepInfo(energy, alpha, _point(x, energy, alpha))

    def move(self, x: Tensor, consensus: Tensor, generator: torch.Generator) -> Tensor:
        """The particles of the next iteration, from particles ``(M, N, d)`` and their
        consensus points ``(M, d)``."""
        check_move(f"{type(self).__name__}.move", x, consensus, generator)
        return self._move(x, consensus, generator)

    def _move(self, x: Tensor, consensus: Tensor, generator: torch.Generator) -> Tensor:
        """:meth:`move` on checked arguments (what a method writes)."""
        raise NotImplementedError

    def step(self, f: Objective, x: Tensor, iteration: int,
             generator: torch.Generator) -> tuple[Tensor, StepInfo]:
        """One iteration: evaluate and average the particles ``x`` ``(M, N, d)``, then move
        them; returns the new particles and what was evaluated."""
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"{type(self).__name__}.step: generator must be a torch.Generator, "
                            f"got {show(generator)}")
        info = self.evaluate(f, x, iteration)
        return self.move(x, info.consensus, generator), info
