r"""Bilevel problems with closed-form answers, for tests and small experiments.

* :class:`QuadraticBilevel`: strongly convex quadratic lower level and quadratic upper level,
  so :math:`y^*(x)`, the hypergradient :math:`\nabla\Phi`, the penalty minimizer
  :math:`y^*_\sigma(x)` and :math:`\nabla\psi_\sigma` are all linear algebra; stochastic
  oracles add zero-mean noise to the gradients (and the lower Hessian) of each objective.
* :class:`MultiBlockRidge`: ``m`` ridge-regression tasks sharing per-feature regularization
  :math:`e^{x_j}`; lower level the training loss, upper level the validation loss.

Both are float64 and seeded; ``noise`` scales the oracle noise (0: exact oracles).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from stochopt._checks import SEED_MAX, check_int, check_real, check_seed, show
from stochopt.bilevel.problem import (
    BilevelProblem,
    MultiBlockProblem,
    check_batch,
    check_sample,
)

__all__ = ["MultiBlockQuadratic", "MultiBlockRidge", "QuadraticBilevel",
           "implicit_hypergradient"]


def _spd(d: int, low: float, high: float, gen: torch.Generator) -> Tensor:
    """A symmetric matrix with eigenvalues spread evenly in [low, high]."""
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    return q @ torch.diag(torch.linspace(low, high, d, dtype=torch.float64)) @ q.T


def _check_quadratic(owner: str, dim_x: int, dim_y: int, noise: float, seed: int, *,
                     blocks: int = 1) -> None:
    """The arguments the quadratic problems share (``blocks`` seeds from ``seed`` on)."""
    check_int(owner, "dim_x", dim_x)
    check_int(owner, "dim_y", dim_y)
    check_real(owner, "noise", noise, low_open=False)
    check_seed(owner, "seed", seed)
    if seed + blocks - 1 > SEED_MAX:
        raise ValueError(f"{owner}: seed must be at most 2**63 - m = {SEED_MAX - blocks + 1} "
                         f"(block i uses seed + i), got {seed!r}")


def _block(problem: MultiBlockProblem, where: str, batch: object, kind: type) -> int:
    """The block a multi-block batch names (it must come from ``sample_block``)."""
    if not isinstance(batch, kind):
        raise TypeError(f"{type(problem).__name__}.{where}: batch must come from sample_block "
                        f"(it names the block), got {show(batch)}")
    return batch.block  # type: ignore[attr-defined]


@dataclass
class _Noise:
    """One sample of oracle noise: linear terms for f and g and a symmetric Hessian term."""

    fx: Tensor
    fy: Tensor
    gx: Tensor
    gy: Tensor
    gyy: Tensor


class QuadraticBilevel(BilevelProblem):
    r"""A quadratic bilevel problem with exact answers.

    .. math::
        g(x, y) &= \tfrac12 y^\top H y - y^\top J x + \tfrac12 x^\top K x + c^\top y \\
        f(x, y) &= \tfrac12 y^\top A y + x^\top B y + \tfrac{\rho}2 \|x\|^2 + a^\top y

    with :math:`\mu I \preceq H \preceq L I`, so :math:`y^*(x) = H^{-1}(Jx - c)` and
    :math:`\nabla\Phi(x) = \rho x + B y^* + (H^{-1}J)^\top(A y^* + B^\top x + a)`.
    A batch of size ``b`` adds noise of standard deviation ``noise / sqrt(b)`` to every
    gradient and to :math:`H` (so Hessian-vector products are noisy too).

    Args:
        dim_x, dim_y: dimensions (default 10, 20).
        mu, L: the lower Hessian's eigenvalue range, :math:`0 < \mu \le L < \infty`
            (default 1, 10).
        rho: :math:`\rho \ge 0` (default 1).
        noise: oracle noise scale, :math:`\ge 0` (default 0.0: exact).
        seed: seed of the matrices (default 0).
    """

    dtype = torch.float64

    def __init__(self, dim_x: int = 10, dim_y: int = 20, *, mu: float = 1.0, L: float = 10.0,
                 rho: float = 1.0, noise: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        _check_quadratic("QuadraticBilevel", dim_x, dim_y, noise, seed)
        check_real("QuadraticBilevel", "mu", mu)
        check_real("QuadraticBilevel", "L", L, low=mu, low_open=False)
        check_real("QuadraticBilevel", "rho", rho, low_open=False)
        gen = torch.Generator().manual_seed(seed)
        self.dim_x, self.dim_y, self.rho, self.noise = dim_x, dim_y, rho, noise
        self.H = _spd(dim_y, mu, L, gen)
        self.A = _spd(dim_y, 0.0, 1.0, gen)
        self.K = _spd(dim_x, 0.5, 2.0, gen)
        scale = 1 / dim_x**0.5
        self.J = scale * torch.randn(dim_y, dim_x, generator=gen, dtype=torch.float64)
        self.B = 0.1 * scale * torch.randn(dim_x, dim_y, generator=gen, dtype=torch.float64)
        self.a = torch.randn(dim_y, generator=gen, dtype=torch.float64)
        self.c = torch.randn(dim_y, generator=gen, dtype=torch.float64)

    def f(self, x: Tensor, y: Tensor, batch: _Noise | None = None) -> Tensor:
        check_batch(self, "f", x, y, batch, _Noise)
        value = 0.5 * y @ self.A @ y + x @ self.B @ y + 0.5 * self.rho * x @ x + self.a @ y
        return value if batch is None else value + batch.fx @ x + batch.fy @ y

    def g(self, x: Tensor, y: Tensor, batch: _Noise | None = None) -> Tensor:
        check_batch(self, "g", x, y, batch, _Noise)
        value = 0.5 * y @ self.H @ y - y @ self.J @ x + 0.5 * x @ self.K @ x + self.c @ y
        if batch is None:
            return value
        return value + batch.gx @ x + batch.gy @ y + 0.5 * y @ batch.gyy @ y

    def sample(self, level: str, generator: torch.Generator, size: int | None = None
               ) -> _Noise | None:
        check_sample("QuadraticBilevel.sample", level, generator, size,
                     levels=("upper", "lower", "both"))
        if self.noise == 0 or size is None:  # no batch size: the exact objectives
            return None
        s = self.noise / size**0.5

        def draw(*shape: int) -> Tensor:
            return s * torch.randn(*shape, generator=generator, dtype=torch.float64)

        e = draw(self.dim_y, self.dim_y) / self.dim_y**0.5
        return _Noise(draw(self.dim_x), draw(self.dim_y), draw(self.dim_x), draw(self.dim_y),
                      (e + e.T) / 2)

    def x0(self) -> Tensor:
        """The starting point the tests use: zero."""
        return torch.zeros(self.dim_x, dtype=torch.float64)

    def y0(self) -> Tensor:
        return torch.zeros(self.dim_y, dtype=torch.float64)

    # ------------------------------------------------------------------- closed forms
    def y_star(self, x: Tensor) -> Tensor:
        self.check_point("y_star", x)
        return torch.linalg.solve(self.H, self.J @ x - self.c)

    def hypergradient(self, x: Tensor) -> Tensor:
        """The exact :math:`\\nabla\\Phi(x)`."""
        self.check_point("hypergradient", x)
        y = self.y_star(x)
        dy_dx = torch.linalg.solve(self.H, self.J)
        return self.rho * x + self.B @ y + dy_dx.T @ (self.A @ y + self.B.T @ x + self.a)

    def y_sigma_star(self, x: Tensor, sigma: float) -> Tensor:
        """:math:`\\arg\\min_y \\sigma f + g`."""
        self.check_point("y_sigma_star", x)
        check_real("QuadraticBilevel.y_sigma_star", "sigma", sigma, low_open=False)
        rhs = self.J @ x - self.c - sigma * (self.B.T @ x + self.a)
        return torch.linalg.solve(sigma * self.A + self.H, rhs)

    def penalty_gradient(self, x: Tensor, sigma: float) -> Tensor:
        """:math:`\\nabla\\psi_\\sigma(x) = \\nabla_x f(x, y^*_\\sigma) + (\\nabla_x g(x,
        y^*_\\sigma) - \\nabla_x g(x, y^*)) / \\sigma` (Kwon et al., 2023)."""
        self.check_point("penalty_gradient", x)
        check_real("QuadraticBilevel.penalty_gradient", "sigma", sigma)
        y_s, y = self.y_sigma_star(x, sigma), self.y_star(x)
        grad_x_f = self.rho * x + self.B @ y_s
        return grad_x_f + (-self.J.T @ y_s + self.J.T @ y) / sigma

    def x_star(self) -> Tensor:
        """The minimizer of :math:`\\Phi` (a strongly convex quadratic here)."""
        zero = torch.zeros(self.dim_x, dtype=torch.float64)
        q = self.hypergradient(zero)
        Q = torch.stack([self.hypergradient(e) - q for e in torch.eye(self.dim_x,
                                                                     dtype=torch.float64)], 1)
        return torch.linalg.solve(Q, -q)


@dataclass
class _BlockNoise:
    block: int
    noise: _Noise | None


class MultiBlockQuadratic(MultiBlockProblem):
    """``m`` independent :class:`QuadraticBilevel` blocks (seeds ``seed .. seed + m - 1``)
    sharing ``x``: :math:`F = \\frac1m \\sum_i \\Phi_i`, exact answers by averaging. A
    batch of size ``b`` of block ``i`` is that block's noise at ``noise / sqrt(b)``."""

    dtype = torch.float64

    def __init__(self, m: int = 16, dim_x: int = 5, dim_y: int = 5, *, noise: float = 1.0,
                 seed: int = 0) -> None:
        super().__init__()
        check_int("MultiBlockQuadratic", "m", m)
        _check_quadratic("MultiBlockQuadratic", dim_x, dim_y, noise, seed, blocks=m)
        self.m, self.dim_x, self.dim_y = m, dim_x, dim_y
        self.blocks = [QuadraticBilevel(dim_x, dim_y, noise=noise, seed=seed + i)
                       for i in range(m)]

    def f(self, x: Tensor, y: Tensor, batch: _BlockNoise) -> Tensor:
        return self.blocks[_block(self, "f", batch, _BlockNoise)].f(x, y, batch.noise)

    def g(self, x: Tensor, y: Tensor, batch: _BlockNoise) -> Tensor:
        return self.blocks[_block(self, "g", batch, _BlockNoise)].g(x, y, batch.noise)

    def sample_block(self, block: int, level: str, generator: torch.Generator,
                     size: int | None = None) -> _BlockNoise:
        self.check_block("sample_block", block)
        check_sample("MultiBlockQuadratic.sample_block", level, generator, size,
                     levels=("upper", "lower", "both"))
        noise = None if size is None else self.blocks[block].sample(level, generator, size)
        return _BlockNoise(block, noise)

    def y_star(self, x: Tensor) -> Tensor:
        self.check_point("y_star", x)
        return torch.stack([b.y_star(x) for b in self.blocks])

    def hypergradient(self, x: Tensor) -> Tensor:
        self.check_point("hypergradient", x)
        return torch.stack([b.hypergradient(x) for b in self.blocks]).mean(0)


@dataclass
class _Rows:
    block: int
    rows: Tensor | None  # sampled row indices, or None for all


class MultiBlockRidge(MultiBlockProblem):
    r"""``m`` ridge tasks sharing a per-feature regularization: for task :math:`i`,

    .. math::
        g_i(x, y) = \tfrac1n \|A_i y - b_i\|^2 + \textstyle\sum_j e^{x_j} y_j^2, \qquad
        f_i(x, y) = \tfrac1n \|V_i y - w_i\|^2

    (training and validation sets of ``n`` rows, features ``d``, each task its own true
    weights around a shared one). A batch is ``size`` rows of one task's set.

    Args:
        m: tasks (default 50); d: features (default 10); n: rows per set (default 100).
        seed: seed of the data (default 0).
    """

    dtype = torch.float64

    def __init__(self, m: int = 50, d: int = 10, n: int = 100, *, seed: int = 0) -> None:
        super().__init__()
        for name, value in (("m", m), ("d", d), ("n", n)):
            check_int("MultiBlockRidge", name, value)
        seed = check_seed("MultiBlockRidge", "seed", seed)
        gen = torch.Generator().manual_seed(seed)
        self.m, self.d, self.n = m, d, n
        self.dim_x = self.dim_y = d

        def randn(*shape: int) -> Tensor:
            return torch.randn(*shape, generator=gen, dtype=torch.float64)

        shared = randn(d)
        weights = shared + 0.5 * randn(m, d)
        weights[:, d // 2:] = 0.0  # half the features carry no signal: they want large x_j
        self.A, self.V = randn(m, n, d), randn(m, n, d)
        self.b = torch.einsum("mnd,md->mn", self.A, weights) + 0.5 * randn(m, n)
        self.w = torch.einsum("mnd,md->mn", self.V, weights) + 0.5 * randn(m, n)

    def _rows(self, data: Tensor, target: Tensor, batch: _Rows) -> tuple[Tensor, Tensor]:
        block = _block(self, "f and g", batch, _Rows)
        X, t = data[block], target[block]
        return (X, t) if batch.rows is None else (X[batch.rows], t[batch.rows])

    def g(self, x: Tensor, y: Tensor, batch: _Rows) -> Tensor:
        self.check_point("g", x, y)
        X, t = self._rows(self.A, self.b, batch)
        return (X @ y - t).square().mean() + (x.exp() * y * y).sum()

    def f(self, x: Tensor, y: Tensor, batch: _Rows) -> Tensor:
        self.check_point("f", x, y)
        X, t = self._rows(self.V, self.w, batch)
        return (X @ y - t).square().mean()

    def sample_block(self, block: int, level: str, generator: torch.Generator,
                     size: int | None = None) -> _Rows:
        self.check_block("sample_block", block)
        check_sample("MultiBlockRidge.sample_block", level, generator, size,
                     levels=("upper", "lower", "both"))
        if size is None:
            return _Rows(block, None)
        return _Rows(block, torch.randint(0, self.n, (size,), generator=generator))

    # ------------------------------------------------------------------- closed forms
    def y_star(self, x: Tensor) -> Tensor:
        """Every task's ridge solution, ``(m, d)``."""
        self.check_point("y_star", x)
        gram = self.A.transpose(1, 2) @ self.A / self.n + torch.diag(x.exp())
        rhs = torch.einsum("mnd,mn->md", self.A, self.b) / self.n
        return torch.linalg.solve(gram, rhs.unsqueeze(-1)).squeeze(-1)

    def hypergradient(self, x: Tensor) -> Tensor:
        """The exact :math:`\\nabla F(x)`, averaged over the tasks."""
        self.check_point("hypergradient", x)
        y = self.y_star(x)
        return torch.stack([implicit_hypergradient(self, x, y[i], _Rows(i, None))
                            for i in range(self.m)]).mean(0)

    def objective(self, x: Tensor) -> float:
        """:math:`F(x)`, the mean validation loss at the tasks' ridge solutions."""
        self.check_point("objective", x)
        y = self.y_star(x)
        return float(torch.stack([self.f(x, y[i], _Rows(i, None)) for i in range(self.m)]).mean())


def implicit_hypergradient(problem: BilevelProblem, x: Tensor, y: Tensor,
                           batch: object = None) -> Tensor:
    """:math:`\\nabla_x f - \\nabla^2_{xy} g\\,(\\nabla^2_{yy} g)^{-1} \\nabla_y f` at
    ``(x, y)`` by dense linear algebra (small problems; ``y`` should be :math:`y^*(x)`)."""
    if not isinstance(problem, BilevelProblem):
        raise TypeError(f"implicit_hypergradient: problem must be a BilevelProblem, got "
                        f"{show(problem)}")
    calls = problem.calls.copy()
    fx, fy = problem.grad_f(x, y, batch)
    v = torch.linalg.solve(problem.hessian_yy_g(x, y, batch), fy)
    result = fx - problem.jacobian_xy_g(x, y, batch) @ v
    problem.calls = calls  # a reference computation, not an oracle cost
    return result
