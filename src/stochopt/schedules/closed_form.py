"""Learning-rate schedules as pure, closed-form functions of the step.

A schedule is any callable ``step -> learning rate`` (``step`` counts from 0); the ones here
are small frozen dataclasses, so they print, compare and pickle. :class:`ScheduleLR` drives a
torch optimizer with one.

Every schedule checks its arguments at construction (``TypeError``/``ValueError`` naming
the argument): rates are finite reals >= 0 (``mu`` > 0), counts are integers, so a schedule
never returns an infinite or NaN learning rate; it is called with an integer step >= 0.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from stochopt._checks import check_int, check_real, show

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


def _positive_int(owner: str, name: str, value: Any) -> None:
    """``value`` is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be a positive integer, got {show(value)}")
    if value < 1:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")


def _rate(owner: str, name: str, value: Any, *, positive: bool = False) -> None:
    """``value`` is a finite real >= 0 (> 0 if ``positive``)."""
    check_real(owner, name, value, low=0.0, low_open=positive)


def _cap(owner: str, value: Any) -> None:
    """A cap on the learning rate: a real > 0, ``inf`` for none."""
    check_real(owner, "cap", value, low=0.0, high=math.inf, high_open=False)


def check_step(owner: str, step: Any) -> None:
    """A schedule's step: an integer >= 0."""
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise TypeError(f"{owner}: step must be an integer >= 0, got {show(step)}")
    if step < 0:
        raise ValueError(f"{owner}: step must be an integer >= 0, got {step!r}")


@dataclass(frozen=True)
class Constant:
    """:math:`\\eta_t = \\eta`."""

    lr: float

    def __post_init__(self) -> None:
        _rate("Constant", "lr", self.lr)

    def __call__(self, step: int) -> float:
        check_step("Constant", step)
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
        _rate("LinearDecay", "peak", self.peak)
        _positive_int("LinearDecay", "total_steps", self.total_steps)

    def __call__(self, step: int) -> float:
        check_step("LinearDecay", step)
        return self.peak * max(0.0, 1.0 - step / self.total_steps)


@dataclass(frozen=True)
class Cosine:
    r""":math:`\eta_t = \eta_{final} + \tfrac12(\eta_{peak} - \eta_{final})(1 + \cos(\pi t/T))`."""

    peak: float
    total_steps: int
    final: float = 0.0

    def __post_init__(self) -> None:
        _rate("Cosine", "peak", self.peak)
        _positive_int("Cosine", "total_steps", self.total_steps)
        _rate("Cosine", "final", self.final)

    def __call__(self, step: int) -> float:
        check_step("Cosine", step)
        progress = min(step, self.total_steps) / self.total_steps
        return self.final + 0.5 * (self.peak - self.final) * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class StepDecay:
    """:math:`\\eta_t = \\eta_{peak} \\gamma^{k}`, ``k`` the number of milestones passed."""

    peak: float
    milestones: Sequence[int]
    gamma: float = 0.1

    def __post_init__(self) -> None:
        _rate("StepDecay", "peak", self.peak)
        milestones = self.milestones
        if isinstance(milestones, str) or not isinstance(milestones, Sequence):
            raise TypeError(f"StepDecay: milestones must be a list of integer steps, got "
                            f"{show(milestones)}")
        for i, m in enumerate(milestones):
            check_int("StepDecay", f"milestones[{i}]", m, low=0)
        _rate("StepDecay", "gamma", self.gamma)
        try:
            last = self.peak * self.gamma ** len(milestones)  # the largest rate if gamma > 1
        except OverflowError:
            last = math.inf
        if not math.isfinite(last):
            raise ValueError(f"StepDecay: peak * gamma**len(milestones) must be finite, got "
                             f"peak={self.peak!r}, gamma={self.gamma!r} and "
                             f"{len(milestones)} milestones")
        object.__setattr__(self, "milestones", tuple(int(m) for m in milestones))

    def __call__(self, step: int) -> float:
        check_step("StepDecay", step)
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

    def __post_init__(self) -> None:
        _rate("InverseSqrt", "eta", self.eta)
        if self.horizon is not None:
            _positive_int("InverseSqrt", "horizon", self.horizon)
        _cap("InverseSqrt", self.cap)

    def __call__(self, step: int) -> float:
        check_step("InverseSqrt", step)
        denominator = self.horizon if self.horizon is not None else step + 1
        return min(self.cap, self.eta / math.sqrt(denominator))


@dataclass(frozen=True)
class InverseTime:
    r""":math:`1/(\mu (t + 1))`, capped at ``cap``: the strongly convex step size (Liu & Zhou,
    2024, arXiv:2312.08531)."""

    mu: float
    cap: float = math.inf

    def __post_init__(self) -> None:
        _rate("InverseTime", "mu", self.mu, positive=True)
        if math.isinf(1.0 / self.mu):
            raise ValueError(f"InverseTime: mu must be large enough that 1/mu is finite, got "
                             f"{self.mu!r}")
        _cap("InverseTime", self.cap)

    def __call__(self, step: int) -> float:
        check_step("InverseTime", step)
        return min(self.cap, 1.0 / (self.mu * (step + 1)))


@dataclass(frozen=True)
class Warmup:
    """Linear warm-up over ``steps`` steps into ``schedule`` (which then sees ``t - steps``):
    :math:`\\eta_t = \\eta^{inner}_0 (t + 1)/(w + 1)` for :math:`t < w`."""

    schedule: Schedule
    steps: int

    def __post_init__(self) -> None:
        if not callable(self.schedule):
            raise TypeError(f"Warmup: schedule must be a callable step -> learning rate, got "
                            f"{show(self.schedule)}")
        check_int("Warmup", "steps", self.steps, low=0)

    def __call__(self, step: int) -> float:
        check_step("Warmup", step)
        if step < self.steps:
            return self.schedule(0) * (step + 1) / (self.steps + 1)
        return self.schedule(step - self.steps)


class ScheduleLR(torch.optim.lr_scheduler.LRScheduler):
    """Set the param groups' ``lr`` from ``schedule(t)`` at step ``t`` (closed form: no
    chained updates, so resuming from a state dict lands on exactly the same value).

    The schedule gives the learning rate of the optimizer's ``lr`` (its ``defaults["lr"]``);
    a group with a base learning rate of its own keeps its ratio to it, as with torch's
    schedulers, which scale each group's ``initial_lr``: group ``i`` gets
    ``schedule(t) * base_lr_i / defaults["lr"]``, so a group at the optimizer's ``lr`` gets
    ``schedule(t)`` exactly. The ratios (``lr_scales``) are fixed at construction and saved in
    the state dict.

    Each value is checked before any group changes: a schedule that returns something other
    than a finite real >= 0 raises ``ValueError`` naming the step, and the scheduler and the
    optimizer are left as they were.

    Example:
        >>> model = torch.nn.Linear(2, 1)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.0)
        >>> sched = ScheduleLR(opt, LinearDecay(peak=0.1, total_steps=10))
        >>> opt.param_groups[0]["lr"]
        0.1
        >>> opt.step(); sched.step(); round(opt.param_groups[0]["lr"], 6)
        0.09
        >>> w, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
        >>> opt = torch.optim.SGD([{"params": [w]}, {"params": [b], "lr": 1e-3}], lr=1e-2)
        >>> sched = ScheduleLR(opt, Constant(3e-3))
        >>> [round(g["lr"], 6) for g in opt.param_groups]
        [0.003, 0.0003]

    Args:
        optimizer: a ``torch.optim.Optimizer``.
        schedule: a callable ``step -> learning rate``.
        last_epoch: the last step taken, ``-1`` for a fresh run (default); a resumed one needs
            the optimizer's groups to hold ``initial_lr`` (load the optimizer's state first).

    Raises:
        ValueError: a group has a base learning rate other than the optimizer's ``lr`` of 0
            (its ratio to the schedule is undefined).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Schedule,
                 last_epoch: int = -1) -> None:
        owner = "ScheduleLR"
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"{owner}: optimizer must be a torch.optim.Optimizer, got "
                            f"{show(optimizer)}")
        if not callable(schedule):
            raise TypeError(f"{owner}: schedule must be a callable step -> learning rate, got "
                            f"{show(schedule)}")
        last_epoch = check_int(owner, "last_epoch", last_epoch, low=-1)
        missing = [i for i, g in enumerate(optimizer.param_groups) if "initial_lr" not in g]
        if last_epoch >= 0 and missing:
            raise ValueError(f"{owner}: last_epoch={last_epoch} resumes a run, but param groups "
                             f"{missing} have no 'initial_lr'; load the optimizer's state dict "
                             f"first, or pass last_epoch=-1 for a fresh run")
        self.schedule = schedule
        self._value(last_epoch + 1)  # the first value, checked before the optimizer changes
        self.lr_scales = _lr_scales(owner, optimizer, last_epoch)
        super().__init__(optimizer, last_epoch)

    def _value(self, step: int) -> float:
        """``schedule(step)``, checked: a finite real >= 0."""
        value = self.schedule(step)
        if isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
            value = float(value.detach().reshape(()))
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
                math.isfinite(value) and value >= 0):
            raise ValueError(f"ScheduleLR: schedule({step}) must be a finite learning rate "
                             f">= 0, got {show(value)}")
        return value

    def get_lr(self) -> list[float]:
        value = self._value(self.last_epoch)
        return [value * scale for scale in self.lr_scales]  # x * 1.0 == x exactly

    def step(self, epoch: int | None = None) -> None:
        """Move to the next step (or to ``epoch``) and set every group's ``lr``; a schedule
        value that raises leaves the scheduler and the optimizer unchanged."""
        if epoch is not None:
            check_int("ScheduleLR.step", "epoch", epoch, low=0)
        saved = (self.last_epoch, self._step_count)
        try:
            super().step(epoch)
        except BaseException:
            self.last_epoch, self._step_count = saved
            raise

    def state_dict(self) -> dict[str, Any]:
        """The step count and torch's bookkeeping; the schedule itself is code, not state."""
        return {k: v for k, v in super().state_dict().items() if k != "schedule"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict saved by :meth:`state_dict`, after checking it: a mapping whose
        ``last_epoch`` is an integer >= -1 and that holds no ``schedule`` or ``optimizer``
        (code and objects are not state)."""
        owner = "ScheduleLR.load_state_dict"
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"{owner}: state_dict must be a dict, got {show(state_dict)}")
        if "last_epoch" not in state_dict:
            raise ValueError(f"{owner}: the state dict has no 'last_epoch' (its keys: "
                             f"{sorted(map(str, state_dict))}); load one saved by "
                             f"ScheduleLR.state_dict()")
        check_int(owner, "state_dict['last_epoch']", state_dict["last_epoch"], low=-1)
        if "_step_count" in state_dict:
            check_int(owner, "state_dict['_step_count']", state_dict["_step_count"], low=0)
        if "lr_scales" in state_dict:  # absent from state dicts saved before it existed
            _check_scales(owner, state_dict["lr_scales"], len(self.optimizer.param_groups))
        foreign = sorted(k for k in ("schedule", "optimizer") if k in state_dict)
        if foreign:
            raise ValueError(f"{owner}: the state dict holds {', '.join(foreign)}, which "
                             f"belong to the code, not the state; load one saved by "
                             f"ScheduleLR.state_dict()")
        super().load_state_dict(dict(state_dict))


def _lr_scales(owner: str, optimizer: torch.optim.Optimizer, last_epoch: int) -> list[float]:
    """Each group's base learning rate (``initial_lr``, or ``lr`` on a fresh run, as torch's
    schedulers take it) over the optimizer's ``lr`` (the first group's base, for an
    optimizer without a default ``lr``): 1.0 where they are equal."""
    bases = [float(group["initial_lr"] if last_epoch >= 0 else group.get("initial_lr", group["lr"]))
             for group in optimizer.param_groups]
    reference = float(optimizer.defaults.get("lr", bases[0] if bases else 0.0))
    scales = []
    for i, base in enumerate(bases):
        if base == reference:
            scales.append(1.0)
        elif reference > 0 and math.isfinite(base / reference):
            scales.append(base / reference)
        else:
            raise ValueError(f"{owner}: param group {i} has base lr {base!r}, but the "
                             f"optimizer's lr is {reference!r}, so its ratio to the schedule "
                             f"(which stands for the optimizer's lr) is undefined; give the "
                             f"optimizer an lr > 0")
    return scales


def _check_scales(owner: str, scales: Any, groups: int) -> None:
    """Saved ``lr_scales``: one finite real >= 0 per param group."""
    if isinstance(scales, str) or not isinstance(scales, Sequence) or len(scales) != groups:
        raise ValueError(f"{owner}: state_dict['lr_scales'] must be a list of {groups} ratios "
                         f"(one per param group of the optimizer), got {show(scales)}")
    for i, scale in enumerate(scales):
        check_real(owner, f"state_dict['lr_scales'][{i}]", scale, low=0.0, low_open=False)
