"""Method configurations: which optimizer, which learning rate, which options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from stochopt import optim
from stochopt.schedules import (
    Constant,
    Cosine,
    LinearDecay,
    RefinedSchedule,
    Schedule,
    StepDecay,
    Warmup,
)

__all__ = ["OPTIMIZERS", "SCHEDULES", "Method", "build_schedule"]

#: schedule kinds a suite may name, with the keys each accepts besides ``kind``/``warmup``
SCHEDULES: dict[str, tuple[str, ...]] = {
    "constant": (), "linear": (), "cosine": ("final",), "step": ("milestones", "gamma"),
    "refined": ("shape",),
}


def build_schedule(spec: dict[str, Any], peak: float, steps: int) -> Schedule:
    """The schedule a suite describes, peaking at ``peak`` over a run of ``steps`` steps.

    ``milestones`` of a step schedule are fractions of the run; a ``refined`` schedule's
    ``shape`` (from :func:`stochopt.schedules.refine`) is resampled to the run's length.
    """
    kind, warmup = spec["kind"], int(spec.get("warmup", 0))
    length = steps - warmup
    if kind == "constant":
        schedule: Schedule = Constant(peak)
    elif kind == "linear":
        schedule = LinearDecay(peak, length)
    elif kind == "cosine":
        schedule = Cosine(peak, length, final=float(spec.get("final", 0.0)) * peak)
    elif kind == "step":
        milestones = [round(f * length) for f in spec.get("milestones", (0.5, 0.75))]
        schedule = StepDecay(peak, milestones, float(spec.get("gamma", 0.1)))
    else:  # refined
        shape = np.asarray(spec["shape"], dtype=np.float64)
        resampled = np.interp(np.linspace(0, len(shape) - 1, length), np.arange(len(shape)),
                              shape)
        schedule = RefinedSchedule(tuple(float(v) for v in resampled), peak)
    return Warmup(schedule, warmup) if warmup else schedule


def _optimizers() -> dict[str, type[torch.optim.Optimizer]]:
    """stochopt's optimizers by class name, and a few of torch's as ``torch.<Name>``."""
    found: dict[str, type[torch.optim.Optimizer]] = {}
    for name in optim.__all__:
        cls = getattr(optim, name)
        if (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)
                and cls not in (optim.ElementwiseOptimizer, optim.CurvatureOptimizer)):
            found[name] = cls
    for name in ("SGD", "Adam", "AdamW", "Adagrad"):
        found[f"torch.{name}"] = getattr(torch.optim, name)
    return found


OPTIMIZERS = _optimizers()


@dataclass(frozen=True)
class Method:
    """A labelled optimizer configuration; ``lr`` may differ per task."""

    label: str
    optimizer: str
    lr: float | dict[str, float]
    options: dict[str, Any] = field(default_factory=dict)
    schedule: dict[str, Any] | None = None

    def lr_for(self, task: str) -> float:
        return self.lr[task] if isinstance(self.lr, dict) else self.lr

    def build(self, params: list[torch.nn.Parameter], task: str) -> torch.optim.Optimizer:
        return OPTIMIZERS[self.optimizer](params, lr=self.lr_for(task), **self.options)

    def as_dict(self) -> dict[str, Any]:
        out = {"label": self.label, "optimizer": self.optimizer, "lr": self.lr,
               "options": dict(self.options)}
        if self.schedule is not None:
            out["schedule"] = dict(self.schedule)
        return out
