"""The surrogate protocol and the context an acquisition function is built from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from stochopt.bayesopt.posterior import Posterior

__all__ = ["Context", "Surrogate"]


class Surrogate(Protocol):
    """What the loop needs from a model: fit on data, then a posterior at any points."""

    def fit(self, X: Tensor, y: Tensor, bounds: Tensor,
            generator: torch.Generator | None = None) -> Surrogate: ...

    def posterior(self, X: Tensor, covariance: bool = False) -> Posterior: ...


@dataclass
class Context:
    """Everything an acquisition may use: the fitted model, the evaluated points (original
    units), the box, a generator for its own randomness, and the constraint models."""

    model: Surrogate
    X: Tensor
    y: Tensor
    bounds: Tensor
    generator: torch.Generator
    constraint_models: list[Surrogate] = field(default_factory=list)
    feasible: Tensor | None = None

    def to_original(self, U: Tensor) -> Tensor:
        low, high = self.bounds[:, 0], self.bounds[:, 1]
        return low + U * (high - low)

    @property
    def best(self) -> Tensor | None:
        """The smallest feasible observation, or ``None`` before a feasible one."""
        y = self.y if self.feasible is None else self.y[self.feasible]
        return y.min() if len(y) else None
