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

    Raises:
        ValueError, TypeError: ``spec`` names no schedule kind, lacks a required key, or has a
            value of the wrong type; or its warm-up leaves no step of the run.
    """
    if not isinstance(spec, dict) or spec.get("kind") not in SCHEDULES:
        raise ValueError(f"build_schedule: spec must be a table with kind one of "
                         f"{', '.join(SCHEDULES)}, got {spec!r}")
    if spec["kind"] == "refined" and "shape" not in spec:
        raise ValueError("build_schedule: a refined schedule needs a shape")
    kind, warmup = spec["kind"], _integer(spec.get("warmup", 0), "warmup")
    length = steps - warmup
    if length < 1:
        raise ValueError(f"build_schedule: warmup must be less than the run's {steps} steps, "
                         f"got {warmup}")
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


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"build_schedule: {name} must be an integer, got {value!r}")
    return value


def _optimizers() -> dict[str, type[torch.optim.Optimizer]]:
    """stochopt's optimizers by the names of its factory (:func:`stochopt.optim.available`),
    and a few of torch's, the anchors, as ``torch.<Name>``."""
    found: dict[str, type[torch.optim.Optimizer]] = {
        name: getattr(optim, name) for name in optim.available()}
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

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label:
            raise ValueError(f"Method: label must be a non-empty string, got {self.label!r}")
        if not isinstance(self.optimizer, str) or self.optimizer not in OPTIMIZERS:
            raise ValueError(f"Method: unknown optimizer {self.optimizer!r}; available: "
                             f"{', '.join(OPTIMIZERS)}")
        if not isinstance(self.lr, int | float | dict) or isinstance(self.lr, bool):
            raise TypeError(f"Method: lr must be a number or a dict by task name, got "
                            f"{self.lr!r}")
        if not isinstance(self.options, dict):
            raise TypeError(f"Method: options must be a dict, got {self.options!r}")
        if self.schedule is not None and not isinstance(self.schedule, dict):
            raise TypeError(f"Method: schedule must be None or a dict, got {self.schedule!r}")

    def lr_for(self, task: str) -> float:
        """The learning rate for ``task``.

        Raises:
            ValueError: ``lr`` is a table without an entry for ``task``.
        """
        if not isinstance(self.lr, dict):
            return self.lr
        if task not in self.lr:
            raise ValueError(f"method {self.label}: lr has no entry for task {task!r}; it "
                             f"gives: {', '.join(map(str, self.lr)) or 'nothing'}")
        return self.lr[task]

    def build(self, params: list[torch.nn.Parameter], task: str) -> torch.optim.Optimizer:
        """The optimizer over ``params`` with the learning rate for ``task`` (stochopt's from
        its factory, :func:`stochopt.optim.create`)."""
        if self.optimizer.startswith("torch."):
            return OPTIMIZERS[self.optimizer](params, lr=self.lr_for(task), **self.options)
        return optim.create(self.optimizer, params, lr=self.lr_for(task), **self.options)

    def as_dict(self) -> dict[str, Any]:
        out = {"label": self.label, "optimizer": self.optimizer, "lr": self.lr,
               "options": dict(self.options)}
        if self.schedule is not None:
            out["schedule"] = dict(self.schedule)
        return out
