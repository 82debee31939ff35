"""Learning-rate schedules as pure, closed-form functions of the step.

A schedule is any callable ``step -> learning rate`` (``step`` counts from 0); the ones here
are small frozen dataclasses, so they print, compare and pickle. :class:`ScheduleLR` drives a
torch optimizer with one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "Constant",
    "Cosine",
    "InverseSqrt",
    "InverseTime",
    "LinearDecay",
    "Schedule",
    "ScheduleLR",
    "StepDecay",
    "Warmup",
]

Schedule = Callable[[int], float]


def _positive_int(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class Constant:
    """:math:`\\eta_t = \\eta`."""

    lr: float

    def __call__(self, step: int) -> float:
        return self.lr


@dataclass(frozen=True)
class LinearDecay:
    r""":math:`\eta_t = \eta_{peak} (1 - t/T)`, reaching 0 at ``t = total_steps`` (and after).

    References:
        Defazio, Cutkosky, Mehta & Mishchenko, "When, Why and How Much? Adaptive Learning Rate
        Scheduling by Refinement", 2023, arXiv:2310.07831 (the worst-case optimal schedule
        for the last iterate).
    """

    peak: float
    total_steps: int

    def __post_init__(self) -> None:
        _positive_int("total_steps", self.total_steps)

    def __call__(self, step: int) -> float:
        return self.peak * max(0.0, 1.0 - step / self.total_steps)


@dataclass(frozen=True)
class Cosine:
    r""":math:`\eta_t = \eta_{final} + \tfrac12(\eta_{peak} - \eta_{final})(1 + \cos(\pi t/T))`."""

    peak: float
    total_steps: int
    final: float = 0.0

    def __post_init__(self) -> None:
        _positive_int("total_steps", self.total_steps)

    def __call__(self, step: int) -> float:
        progress = min(step, self.total_steps) / self.total_steps
        return self.final + 0.5 * (self.peak - self.final) * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class StepDecay:
    """:math:`\\eta_t = \\eta_{peak} \\gamma^{k}`, ``k`` the number of milestones passed."""

    peak: float
    milestones: Sequence[int]
    gamma: float = 0.1

    def __call__(self, step: int) -> float:
        return self.peak * self.gamma ** sum(step >= m for m in self.milestones)


@dataclass(frozen=True)
class InverseSqrt:
    r""":math:`\eta/\sqrt{T}` for a known horizon ``T`` (fixed), else :math:`\eta/\sqrt{t+1}`
    (anytime), capped at ``cap`` (e.g. :math:`1/(2L)` for an L-smooth objective).

    References:
        Liu & Zhou, "Revisiting the Last-Iterate Convergence of Stochastic Gradient Methods",
        ICLR 2024, arXiv:2312.08531 (step sizes of the convex cases).
    """

    eta: float
    horizon: int | None = None
    cap: float = math.inf

    def __call__(self, step: int) -> float:
        denominator = self.horizon if self.horizon is not None else step + 1
        return min(self.cap, self.eta / math.sqrt(denominator))


@dataclass(frozen=True)
class InverseTime:
    r""":math:`1/(\mu (t + 1))`, capped at ``cap``: the strongly convex step size (Liu & Zhou,
    2024, arXiv:2312.08531)."""

    mu: float
    cap: float = math.inf

    def __call__(self, step: int) -> float:
        return min(self.cap, 1.0 / (self.mu * (step + 1)))


@dataclass(frozen=True)
class Warmup:
    """Linear warm-up over ``steps`` steps into ``schedule`` (which then sees ``t - steps``):
    :math:`\\eta_t = \\eta^{inner}_0 (t + 1)/(w + 1)` for :math:`t < w`."""

    schedule: Schedule
    steps: int

    def __call__(self, step: int) -> float:
        if step < self.steps:
            return self.schedule(0) * (step + 1) / (self.steps + 1)
        return self.schedule(step - self.steps)


class ScheduleLR(torch.optim.lr_scheduler.LRScheduler):
    """Set every param group's ``lr`` to ``schedule(t)`` at step ``t`` (closed form: no
    chained updates, so resuming from a state dict lands on exactly the same value).

    Example:
        >>> model = torch.nn.Linear(2, 1)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.0)
        >>> sched = ScheduleLR(opt, LinearDecay(peak=0.1, total_steps=10))
        >>> opt.param_groups[0]["lr"]
        0.1
        >>> opt.step(); sched.step(); round(opt.param_groups[0]["lr"], 6)
        0.09
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Schedule,
                 last_epoch: int = -1) -> None:
        self.schedule = schedule
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [self.schedule(self.last_epoch) for _ in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """The step count and torch's bookkeeping; the schedule itself is code, not state."""
        return {k: v for k, v in super().state_dict().items() if k != "schedule"}
