"""What every bilevel method shares: its iterates, its own random generator, batch sampling
and argument checks."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from stochopt._checks import check_int, check_real, check_seed, check_tensor, show
from stochopt.bilevel.problem import BilevelProblem, MultiBlockProblem
from stochopt.errors import DivergenceError

__all__ = ["Solver", "check_fraction", "check_positive", "check_run", "check_start",
           "check_unit", "require_finite"]


def check_positive(owner: str, name: str, value: float, *, integer: bool = False,
                   infinite: bool = False) -> None:
    """``value > 0``: an integer if ``integer``, else a real number, finite unless
    ``infinite`` (``TypeError`` for the wrong kind, ``ValueError`` for the wrong value)."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{owner}: {name} must be {'an integer' if integer else 'a real number'}"
                        f", got {show(value)}")
    if not value > 0:  # NaN too
        raise ValueError(f"{owner}: {name} must be > 0, got {value!r}")
    if not integer and not infinite and math.isinf(value):
        raise ValueError(f"{owner}: {name} must be finite, got {value!r}")


def check_unit(owner: str, name: str, value: float) -> None:
    """``value`` in [0, 1)."""
    check_real(owner, name, value, low=0.0, low_open=False, high=1.0)


def check_fraction(owner: str, name: str, value: float) -> None:
    """``value`` in (0, 1]."""
    check_real(owner, name, value, low=0.0, high=1.0, high_open=False)


def check_start(owner: str, problem: BilevelProblem, x0: Any, y0: Any
                ) -> tuple[Tensor, Tensor]:
    """Copies of the starting points, checked against the problem: ``x0`` of shape
    ``(dim_x,)``, ``y0`` of shape ``(dim_y,)`` (``(m, dim_y)`` for a multi-block problem),
    both finite, of the problem's dtype where it has one (else of one floating dtype)."""
    y_shape: tuple[int | None, ...] = (problem.dim_y,)
    if isinstance(problem, MultiBlockProblem):
        y_shape = (problem.m, problem.dim_y)
    x = check_tensor(owner, "x0", x0, shape=(problem.dim_x,))
    y = check_tensor(owner, "y0", y0, shape=y_shape)
    dtype = problem.dtype or x.dtype
    for name, value in (("x0", x), ("y0", y)):
        if value.dtype != dtype:
            whose = "the problem's" if problem.dtype else "x0's"
            raise TypeError(f"{owner}: {name} must have dtype {dtype} ({whose}), got "
                            f"{value.dtype}")
    return x.detach().clone(), y.detach().clone()


def check_run(owner: str, steps: int, callback: Any) -> None:
    """``run``'s arguments: ``steps`` an integer >= 0, ``callback`` callable or None."""
    check_int(owner, "steps", steps, low=0)
    if callback is not None and not callable(callback):
        raise TypeError(f"{owner}.run: callback must be callable or None, got {show(callback)}")


def require_finite(owner: str, iteration: int, *tensors: Tensor) -> None:
    """Raise :class:`~stochopt.errors.DivergenceError` if an iterate is not finite."""
    if not all(bool(torch.isfinite(t).all()) for t in tensors):
        raise DivergenceError(f"{owner}: the iterates are no longer finite at iteration "
                              f"{iteration} (the method diverged, or an oracle returned NaN "
                              f"or infinity); lower the step sizes")


class Solver:
    """A bilevel method's loop state: ``x`` (upper), ``y`` (lower), a generator for batches.

    Non-finite values: :meth:`step` computes with whatever the oracles return (a NaN or
    infinite gradient makes NaN iterates, as in torch); :meth:`run` checks the iterates after
    every step and raises :class:`~stochopt.errors.DivergenceError` at the first that is not
    finite.

    Args:
        problem: the bilevel problem.
        x0, y0: starting points, shapes ``(dim_x,)`` and ``(dim_y,)`` (copied; finite float
            tensors of the problem's dtype).
        batch_size: samples per stochastic oracle (``None``: the exact objectives).
        seed: seed of the batches (default 0), an integer in ``[0, 2**63 - 1]``.
    """

    def __init__(self, problem: BilevelProblem, x0: Tensor, y0: Tensor, *,
                 batch_size: int | None, seed: int) -> None:
        owner = type(self).__name__
        if not isinstance(problem, BilevelProblem):
            raise TypeError(f"{owner}: problem must be a BilevelProblem, got {show(problem)}")
        if batch_size is not None:
            check_positive(owner, "batch_size", batch_size, integer=True)
        seed = check_seed(owner, "seed", seed)
        self.problem = problem
        self.x, self.y = check_start(owner, problem, x0, y0)
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self.iteration = 0

    def batch(self, level: str) -> Any:
        return self.problem.sample(level, self.generator, self.batch_size)

    def step(self) -> None:
        """One outer iteration (one update of ``x``)."""
        raise NotImplementedError

    def run(self, steps: int, callback: Callable[[Solver], Any] | None = None) -> Solver:
        """``steps`` iterations; ``callback(self)`` after each (return True to stop early).

        Raises:
            DivergenceError: an iterate stopped being finite.
        """
        check_run(type(self).__name__, steps, callback)
        for _ in range(steps):
            self.step()
            self.iteration += 1
            require_finite(type(self).__name__, self.iteration, self.x, self.y)
            if callback is not None and callback(self):
                break
        return self
