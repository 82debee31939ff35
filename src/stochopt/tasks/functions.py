"""Synthetic test functions with known minima, and tasks that minimize them.

Each :class:`TestFunction` evaluates batches: ``f(x)`` with ``x`` of shape ``(..., dim)``
returns shape ``(...)``, so gradient methods, Bayesian optimization and consensus-based
optimization use the same objects. Points of another dimension are refused (a ``ValueError``
naming the expected shape), never reshaped; a NaN or infinite coordinate gives a NaN or
infinite value (propagated, as torch does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from stochopt._checks import check_int, check_real, check_seed, check_tensor, show
from stochopt.errors import UnsupportedError
from stochopt.tasks._base import Metric, Problem, Task

__all__ = [
    "Beale",
    "FunctionTask",
    "IllConditionedQuadratic",
    "Rastrigin",
    "Rosenbrock",
    "TestFunction",
]


@dataclass(frozen=True)
class TestFunction:
    """Base: a function on a box with a known minimizer and minimum.

    ``dim`` is checked at construction (an integer >= 1, or the fixed dimension of a function
    defined in one, :attr:`fixed_dim`); :meth:`check_points` checks the points a subclass's
    ``__call__`` is given.
    """

    dim: int
    name: ClassVar[str]
    #: the only dimension the function is defined in (None: any)
    fixed_dim: ClassVar[int | None] = None

    def __post_init__(self) -> None:
        owner = type(self).__name__
        check_int(owner, "dim", self.dim)
        if self.fixed_dim is not None and self.dim != self.fixed_dim:
            raise ValueError(f"{owner}: dim must be {self.fixed_dim} (the function is defined "
                             f"in {self.fixed_dim} dimensions), got {self.dim}")

    def check_points(self, x: Any) -> Tensor:
        """``x`` as a tensor of points ``(..., dim)``: ``TypeError`` for another kind of value
        (booleans and complex numbers included), ``ValueError`` for another shape; integer
        points are converted to float64, NaN and infinity pass."""
        owner = type(self).__name__
        x = check_tensor(owner, "x", x, floating=False, finite=False)
        if x.dtype == torch.bool or x.is_complex():
            raise TypeError(f"{owner}: x must hold real numbers, got dtype {x.dtype}")
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise ValueError(f"{owner}: x must hold points of shape (..., {self.dim}), got "
                             f"shape {tuple(x.shape)}")
        return x if x.is_floating_point() else x.to(torch.float64)

    def __call__(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def bounds(self) -> Tensor:
        """The search box, shape ``(dim, 2)`` (lower, upper)."""
        raise NotImplementedError

    @property
    def minimizer(self) -> Tensor:
        """A global minimizer, shape ``(dim,)``."""
        raise NotImplementedError

    @property
    def minimum(self) -> float:
        return 0.0

    def observe(self, x: Tensor, noise_std: float = 0.0,
                generator: torch.Generator | None = None) -> Tensor:
        r"""``f(x)`` plus independent :math:`N(0, \sigma^2)` observation noise, drawn from
        ``generator`` (the noise-free value when ``noise_std`` is 0; ``noise_std`` finite and
        >= 0)."""
        check_real(f"{type(self).__name__}.observe", "noise_std", noise_std, low_open=False)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"{type(self).__name__}.observe: generator must be a "
                            f"torch.Generator or None, got {show(generator)}")
        value = self(x)
        if noise_std == 0:
            return value
        noise = torch.randn(value.shape, generator=generator, dtype=torch.float64)
        return value + noise_std * noise.to(value)


@dataclass(frozen=True)
class Rosenbrock(TestFunction):
    r""":math:`\sum_i b (x_{i+1} - x_i^2)^2 + (a - x_i)^2`; minimum 0 at (1, ..., 1) for
    ``a = 1`` and at :math:`(a, a^2)` in two dimensions (``a`` finite, ``b > 0`` finite)."""

    dim: int = 2
    a: float = 1.0
    b: float = 100.0
    name: ClassVar[str] = "rosenbrock"

    def __post_init__(self) -> None:
        super().__post_init__()
        # stored as floats: a huge int would overflow inside torch at the first call
        object.__setattr__(self, "a", check_real("Rosenbrock", "a", self.a, low=-math.inf))
        object.__setattr__(self, "b", check_real("Rosenbrock", "b", self.b))

    def __call__(self, x: Tensor) -> Tensor:
        x = self.check_points(x)
        head, tail = x[..., :-1], x[..., 1:]
        return (self.b * (tail - head**2) ** 2 + (self.a - head) ** 2).sum(-1)

    @property
    def bounds(self) -> Tensor:
        """The usual box :math:`[-5, 10]^d`."""
        return torch.tensor([[-5.0, 10.0]] * self.dim, dtype=torch.float64)

    @property
    def minimizer(self) -> Tensor:
        if self.a == 1.0:
            return torch.ones(self.dim, dtype=torch.float64)
        if self.dim == 2:
            return torch.tensor([self.a, self.a**2], dtype=torch.float64)
        raise UnsupportedError(f"Rosenbrock: no closed-form minimizer for a={self.a}, "
                               f"dim={self.dim}; use a=1 or dim=2")


@dataclass(frozen=True)
class Beale(TestFunction):
    r"""Beale's function on :math:`[-4.5, 4.5]^2`; minimum 0 at (3, 0.5)."""

    dim: int = 2
    name: ClassVar[str] = "beale"
    fixed_dim: ClassVar[int | None] = 2

    def __call__(self, x: Tensor) -> Tensor:
        x = self.check_points(x)
        u, v = x[..., 0], x[..., 1]
        return ((1.5 - u + u * v) ** 2 + (2.25 - u + u * v**2) ** 2
                + (2.625 - u + u * v**3) ** 2)

    @property
    def bounds(self) -> Tensor:
        return torch.tensor([[-4.5, 4.5]] * 2, dtype=torch.float64)

    @property
    def minimizer(self) -> Tensor:
        return torch.tensor([3.0, 0.5], dtype=torch.float64)


@dataclass(frozen=True)
class Rastrigin(TestFunction):
    r""":math:`\sum_i x_i^2 + A \sum_i (1 - \cos(2\pi x_i))` on :math:`[-5.12, 5.12]^d`; 0 at 0.

    The default ``amplitude`` :math:`A = 10` is the standard
    :math:`10 d + \sum_i x_i^2 - 10 \cos(2\pi x_i)`; :math:`A = 2.5` is the shallower variant
    of Riedl, Klock, Geldhauser & Fornasier ("Gradient is All You Need?", arXiv:2306.09778,
    ``objective_function.m``), whose local minima sit near the integers. For :math:`A \ge 0`
    the minimizer is 0: both sums are nonnegative and vanish only there; ``amplitude`` must be
    finite and :math:`\ge 0`.
    """

    dim: int = 2
    amplitude: float = 10.0
    name: ClassVar[str] = "rastrigin"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "amplitude",
                           check_real("Rastrigin", "amplitude", self.amplitude, low_open=False))

    def __call__(self, x: Tensor) -> Tensor:
        x = self.check_points(x)
        return (x**2 + self.amplitude * (1 - torch.cos(2 * math.pi * x))).sum(-1)

    @property
    def bounds(self) -> Tensor:
        return torch.tensor([[-5.12, 5.12]] * self.dim, dtype=torch.float64)

    @property
    def minimizer(self) -> Tensor:
        return torch.zeros(self.dim, dtype=torch.float64)


@dataclass(frozen=True)
class IllConditionedQuadratic(TestFunction):
    r""":math:`\tfrac12 (x - x^*)^\top A (x - x^*)` with a chosen Hessian spectrum.

    ``A = Q diag(λ) Qᵀ`` with eigenvalues log-spaced from 1 to ``condition`` (finite,
    :math:`\ge 1`) and a random rotation ``Q`` drawn from ``seed``; :math:`x^* = 1`.
    """

    dim: int = 10
    condition: float = 1e3
    seed: int = 0
    name: ClassVar[str] = "quadratic"
    hessian: Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_real("IllConditionedQuadratic", "condition", self.condition, low=1.0,
                   low_open=False)
        check_seed("IllConditionedQuadratic", "seed", self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        q, _ = torch.linalg.qr(torch.randn(self.dim, self.dim, generator=gen, dtype=torch.float64))
        eigenvalues = torch.logspace(0, math.log10(self.condition), self.dim, dtype=torch.float64)
        object.__setattr__(self, "hessian", q @ torch.diag(eigenvalues) @ q.T)

    @property
    def eigenvalues(self) -> Tensor:
        return torch.linalg.eigvalsh(self.hessian)

    def __call__(self, x: Tensor) -> Tensor:
        x = self.check_points(x)
        d = x - self.minimizer.to(x.dtype)
        return 0.5 * (d @ self.hessian.to(x.dtype) * d).sum(-1)

    @property
    def bounds(self) -> Tensor:
        return torch.tensor([[-4.0, 6.0]] * self.dim, dtype=torch.float64)

    @property
    def minimizer(self) -> Tensor:
        return torch.ones(self.dim, dtype=torch.float64)


class _FunctionProblem(Problem):
    def __init__(self, function: TestFunction, start: Tensor, noise: float, seed: int) -> None:
        self.function, self.noise = function, noise
        self.model = nn.ParameterDict({"x": nn.Parameter(start.clone())})
        self.generator = torch.Generator().manual_seed(seed)

    def train_outputs(self) -> tuple[Tensor, Tensor | None]:
        x = self.model["x"]
        if self.noise == 0:
            return self.function(x), None
        # a stochastic gradient: the exact one plus N(0, noise^2) per coordinate
        xi = torch.randn(x.shape, generator=self.generator, dtype=x.dtype) * self.noise
        return self.function(x) + (xi * x).sum(), None

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        gap = self.function(self.model["x"]).item() - self.function.minimum
        return {"val_loss": gap}


class FunctionTask(Task):
    """Minimize a :class:`TestFunction` from a fixed start (plus seeded jitter).

    Args:
        name: the task's name.
        function: the :class:`TestFunction`.
        start: the starting point, ``function.dim`` finite numbers.
        noise: the standard deviation of the gradient noise, finite and >= 0 (default 0).
        jitter: the standard deviation of the seeded jitter of the start, finite and >= 0
            (default 0).
    """

    description: ClassVar[str] = "synthetic test function"
    metric: ClassVar[Metric] = Metric("val_loss", higher_is_better=False, target=1e-3)
    default_steps: ClassVar[int] = 2000
    eval_every: ClassVar[int] = 50

    def __init__(self, name: str, function: TestFunction, start: list[float],
                 noise: float = 0.0, jitter: float = 0.0) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"FunctionTask: name must be a non-empty string, got {show(name)}")
        if not isinstance(function, TestFunction):
            raise TypeError(f"FunctionTask: function must be a TestFunction, got "
                            f"{show(function)}")
        check_real("FunctionTask", "noise", noise, low_open=False)
        check_real("FunctionTask", "jitter", jitter, low_open=False)
        start_tensor = check_tensor("FunctionTask", "start", start, shape=(function.dim,),
                                    floating=False)
        if start_tensor.dtype == torch.bool or start_tensor.is_complex():
            raise TypeError(f"FunctionTask: start must hold real numbers, got {show(start)}")
        self.name = name  # type: ignore[misc]
        where = f"from {start}" if len(start) <= 4 else "from 0"
        self.description = f"{function.name} (dim {function.dim}) {where}"  # type: ignore[misc]
        self.function, self.start = function, start_tensor.to(torch.float64)
        self.noise, self.jitter = noise, jitter

    def build(self, seed: int, batch_size: int | None = None) -> Problem:
        seed, _ = self.check_build(seed, batch_size)
        gen = torch.Generator().manual_seed(seed)
        start = self.start + self.jitter * torch.randn(self.start.shape, generator=gen,
                                                       dtype=torch.float64)
        return _FunctionProblem(self.function, start, self.noise, seed)
