"""Standard Bayesian-optimization test functions (minimization form) with known optima.

Each checks what it is given (see :class:`~stochopt.tasks.functions.TestFunction`): ``dim``
when built (fixed for Branin and Hartmann-6, an integer >= 1 for the others), points of shape
``(..., dim)`` when called (a ``ValueError`` naming the function otherwise, never a reshape;
integer points are evaluated in float64), and a finite noise standard deviation >= 0 in
``observe``. NaN coordinates give NaN values, as torch's operations do.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from stochopt._checks import check_int
from stochopt.tasks.functions import TestFunction

__all__ = ["Ackley", "Branin", "Hartmann6", "Levy", "Michalewicz"]


@dataclass(frozen=True)
class Branin(TestFunction):
    r""":math:`(x_2 - \tfrac{5.1}{4\pi^2}x_1^2 + \tfrac5\pi x_1 - 6)^2 +
    10(1 - \tfrac1{8\pi})\cos x_1 + 10` on :math:`[-5, 10] \times [0, 15]`; minimum
    0.397887 at three points, e.g. :math:`(\pi, 2.275)`."""

    dim: int = 2
    name: ClassVar[str] = "branin"
    fixed_dim: ClassVar[int | None] = 2

    def __call__(self, x: Tensor) -> Tensor:
        x = self.check_points(x)
        x1, x2 = x[..., 0], x[..., 1]
        b, c = 5.1 / (4 * math.pi**2), 5 / math.pi
        return ((x2 - b * x1**2 + c * x1 - 6) ** 2
                + 10 * (1 - 1 / (8 * math.pi)) * torch.cos(x1) + 10)

    @property
    def bounds(self) -> Tensor:
        return torch.tensor([[-5.0, 10.0], [0.0, 15.0]], dtype=torch.float64)

    @property
    def minimizer(self) -> Tensor:
        return torch.tensor([math.pi, 2.275], dtype=torch.float64)

    @property
    def minimizers(self) -> Tensor:
        """All three global minimizers, shape ``(3, 2)``."""
        return torch.tensor([[-math.pi, 12.275], [math.pi, 2.275], [9.42478, 2.475]],
                            dtype=torch.float64)

    @property
    def minimum(self) -> float:
        return 5 / (4 * math.pi)  # 0.397887...: the cosine term at x1 = pi, the square at 0


_HARTMANN_A = torch.tensor([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                            [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]],
                           dtype=torch.float64)
_HARTMANN_P = 1e-4 * torch.tensor([[1312, 1696, 5569, 124, 8283, 5886],
                                   [2329, 4135, 8307, 3736, 1004, 9991],
                                   [2348, 1451, 3522, 2883, 3047, 6650],
                                   [4047, 8828, 8732, 5743, 1091, 381]], dtype=torch.float64)
_HARTMANN_ALPHA = torch.tensor([1.0, 1.2, 3.0, 3.2], dtype=torch.float64)


@dataclass(frozen=True)
class Hartmann6(TestFunction):
    r""":math:`-\sum_i \alpha_i \exp(-\sum_j A_{ij}(x_j - P_{ij})^2)` on :math:`[0, 1]^6`;
    minimum -3.32237."""

    dim: int = 6
    name: ClassVar[str] = "hartmann6"
    fixed_dim: ClassVar[int | None] = 6

    def __call__(self, x: Tensor) -> Tensor:
        x = self.check_points(x)
        A, P = _HARTMANN_A.to(x), _HARTMANN_P.to(x)
        inner = (A * (x[..., None, :] - P) ** 2).sum(-1)  # (..., 4)
        return -(_HARTMANN_ALPHA.to(x) * torch.exp(-inner)).sum(-1)

    @property
    def bounds(self) -> Tensor:
        return torch.tensor([[0.0, 1.0]] * 6, dtype=torch.float64)

    @property
    def minimizer(self) -> Tensor:
        return torch.tensor([0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573],
                            dtype=torch.float64)

    @property
    def minimum(self) -> float:
        return -3.32237


@dataclass(frozen=True)
class Ackley(TestFunction):
    r""":math:`-20 e^{-0.2\sqrt{\overline{x^2}}} - e^{\overline{\cos 2\pi x}} + 20 + e` on
    :math:`[-32.768, 32.768]^d`; minimum 0 at 0."""

    dim: int = 5
    name: ClassVar[str] = "ackley"

    def __call__(self, x: Tensor) -> Tensor:
        x = self.check_points(x)
        return (-20 * torch.exp(-0.2 * x.square().mean(-1).sqrt())
                - torch.exp(torch.cos(2 * math.pi * x).mean(-1)) + 20 + math.e)

    @property
    def bounds(self) -> Tensor:
        return torch.tensor([[-32.768, 32.768]] * self.dim, dtype=torch.float64)

    @property
    def minimizer(self) -> Tensor:
        return torch.zeros(self.dim, dtype=torch.float64)


@dataclass(frozen=True)
class Levy(TestFunction):
    r"""Levy's function with :math:`w = 1 + (x - 1)/4` on :math:`[-10, 10]^d`; minimum 0 at 1."""

    dim: int = 4
    name: ClassVar[str] = "levy"

    def __call__(self, x: Tensor) -> Tensor:
        x = self.check_points(x)
        w = 1 + (x - 1) / 4
        head, last = w[..., :-1], w[..., -1]
        return (torch.sin(math.pi * w[..., 0]) ** 2
                + ((head - 1) ** 2 * (1 + 10 * torch.sin(math.pi * head + 1) ** 2)).sum(-1)
                + (last - 1) ** 2 * (1 + torch.sin(2 * math.pi * last) ** 2))

    @property
    def bounds(self) -> Tensor:
        return torch.tensor([[-10.0, 10.0]] * self.dim, dtype=torch.float64)

    @property
    def minimizer(self) -> Tensor:
        return torch.ones(self.dim, dtype=torch.float64)


@functools.cache
def _michalewicz_coordinate(i: int, m: int) -> float:
    """The minimizer on [0, pi] of -sin(x) sin^(2m)(i x^2 / pi): a dense grid, then a
    golden-section search in the best cell's neighbourhood."""
    grid = torch.linspace(0, math.pi, 200_001, dtype=torch.float64)
    term = -torch.sin(grid) * torch.sin(i * grid**2 / math.pi) ** (2 * m)
    k = int(term.argmin())
    lo, hi = float(grid[max(k - 1, 0)]), float(grid[min(k + 1, len(grid) - 1)])
    for _ in range(100):  # golden-section search on the bracketing cell
        a, b = lo + 0.382 * (hi - lo), lo + 0.618 * (hi - lo)
        fa = -math.sin(a) * math.sin(i * a * a / math.pi) ** (2 * m)
        fb = -math.sin(b) * math.sin(i * b * b / math.pi) ** (2 * m)
        lo, hi = (lo, b) if fa < fb else (a, hi)
    return (lo + hi) / 2


@dataclass(frozen=True)
class Michalewicz(TestFunction):
    r""":math:`-\sum_i \sin x_i \sin^{2m}(i x_i^2/\pi)` on :math:`[0, \pi]^d` (``m = 10``).

    It is separable, so its minimizer is found coordinate by coordinate (a local search in
    ``d`` dimensions does not reach it); minima -1.801303 (d = 2), -4.687658 (5),
    -9.660152 (10).
    """

    dim: int = 5
    m: int = 10
    name: ClassVar[str] = "michalewicz"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("Michalewicz", "m", self.m, high=2**31)  # the exponent 2m stays an int64

    def __call__(self, x: Tensor) -> Tensor:
        x = self.check_points(x)
        i = torch.arange(1, self.dim + 1, dtype=x.dtype, device=x.device)
        return -(torch.sin(x) * torch.sin(i * x**2 / math.pi) ** (2 * self.m)).sum(-1)

    @property
    def bounds(self) -> Tensor:
        return torch.tensor([[0.0, math.pi]] * self.dim, dtype=torch.float64)

    @property
    def minimizer(self) -> Tensor:
        return torch.tensor([_michalewicz_coordinate(i, self.m) for i in range(1, self.dim + 1)],
                            dtype=torch.float64)

    @property
    def minimum(self) -> float:
        return float(self(self.minimizer))
