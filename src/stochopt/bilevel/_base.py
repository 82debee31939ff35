"""What every bilevel method shares: its iterates, its own random generator, batch sampling
and argument checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from stochopt.bilevel.problem import BilevelProblem

__all__ = ["Solver", "check_positive", "check_unit"]


def check_positive(owner: str, name: str, value: float, *, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{owner}: {name} must be {'an integer' if integer else 'a real number'}"
                        f", got {value!r}")
    if not value > 0:
        raise ValueError(f"{owner}: {name} must be > 0, got {value!r}")


def check_unit(owner: str, name: str, value: float) -> None:
    """``value`` in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ValueError(f"{owner}: {name} must be in [0, 1), got {value!r}")


class Solver:
    """A bilevel method's loop state: ``x`` (upper), ``y`` (lower), a generator for batches.

    Args:
        problem: the bilevel problem.
        x0, y0: starting points (copied; float tensors).
        batch_size: samples per stochastic oracle (``None``: the exact objectives).
        seed: seed of the batches (default 0).
    """

    def __init__(self, problem: BilevelProblem, x0: Tensor, y0: Tensor, *,
                 batch_size: int | None, seed: int) -> None:
        if batch_size is not None:
            check_positive(type(self).__name__, "batch_size", batch_size, integer=True)
        self.problem = problem
        self.x, self.y = x0.detach().clone(), y0.detach().clone()
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.iteration = 0

    def batch(self, level: str) -> Any:
        return self.problem.sample(level, self.generator, self.batch_size)

    def step(self) -> None:
        """One outer iteration (one update of ``x``)."""
        raise NotImplementedError

    def run(self, steps: int, callback: Callable[[Solver], Any] | None = None) -> Solver:
        """``steps`` iterations; ``callback(self)`` after each (return True to stop early)."""
        for _ in range(steps):
            self.step()
            self.iteration += 1
            if callback is not None and callback(self):
                break
        return self
