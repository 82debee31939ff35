"""Method configurations: which optimizer, which learning rate, which options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from stochopt import optim

__all__ = ["OPTIMIZERS", "Method"]


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

    def lr_for(self, task: str) -> float:
        return self.lr[task] if isinstance(self.lr, dict) else self.lr

    def build(self, params: list[torch.nn.Parameter], task: str) -> torch.optim.Optimizer:
        return OPTIMIZERS[self.optimizer](params, lr=self.lr_for(task), **self.options)

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "optimizer": self.optimizer, "lr": self.lr,
                "options": dict(self.options)}
