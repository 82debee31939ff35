"""Spectra of symmetric operators given only by matrix-vector products (e.g. a Hessian):
power iteration, Lanczos with full reorthogonalization, and stochastic Lanczos quadrature.

An operator is a function ``(n,) -> (n,)``; :func:`stochopt.curvature.hvp_operator` makes one
from a loss.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from stochopt._checks import check_int, check_real, check_tensor, show
from stochopt.curvature._args import check_callable, check_generator, check_operator_output
from stochopt.errors import StochoptError

__all__ = ["Lanczos", "SpectralDensity", "lanczos", "power_iteration", "spectral_density"]

Operator = Callable[[Tensor], Tensor]


def _check_common(owner: str, operator: Operator, n: int, generator: torch.Generator,
                  dtype: torch.dtype) -> int:
    """The arguments every spectral function shares; ``n`` as an int."""
    check_callable(owner, "operator", operator)
    n = check_int(owner, "n", n, low=1)
    check_generator(owner, generator)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{owner}: dtype must be a floating-point torch.dtype, got {show(dtype)}")
    return n


def _apply(owner: str, operator: Operator, v: Tensor, dtype: torch.dtype) -> Tensor:
    """``operator(v)`` in ``dtype``, checked: shape ``(n,)`` and finite. A torch error
    raised by the operator itself (most often: ``n`` is not its dimension) becomes a
    ``ValueError`` that says so, chained to the original."""
    try:
        w = operator(v)
    except RuntimeError as error:
        if isinstance(error, StochoptError):
            raise
        raise ValueError(f"{owner}: the operator failed on a vector of shape ({v.shape[0]},) "
                         f"({' '.join(str(error).split())[:200]}); is n = {v.shape[0]} its "
                         f"dimension?") from error
    w = check_operator_output(owner, w, v.shape[0]).to(dtype)
    if not bool(torch.isfinite(w).all()):
        raise ValueError(f"{owner}: operator returned a NaN or infinite entry; the operator "
                         f"(e.g. a Hessian at a point where the loss is not finite) must be "
                         f"finite")
    return w


def _unit(n: int, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    v = torch.randn(n, generator=generator, dtype=torch.float64).to(dtype)
    return v / v.norm()


def _rewinds_generator(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Make ``fn`` leave its ``generator`` as it found it when it raises (a failed call
    changes nothing, the draws of its start vectors included)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, generator: torch.Generator, **kwargs: Any) -> Any:
        state = generator.get_state() if isinstance(generator, torch.Generator) else None
        try:
            return fn(*args, generator=generator, **kwargs)
        except BaseException:
            if state is not None:
                generator.set_state(state)
            raise

    return wrapper


@_rewinds_generator
def power_iteration(operator: Operator, n: int, *, generator: torch.Generator,
                    iterations: int = 100, tol: float = 1e-6,
                    dtype: torch.dtype = torch.float64) -> tuple[float, Tensor]:
    """The eigenvalue of largest magnitude and its unit eigenvector, shape ``(n,)``.

    Stops when the Rayleigh quotient changes by less than ``tol`` (relative). An operator
    that maps the iterate to zero has the eigenvalue 0 there: that iterate is returned.

    Raises:
        TypeError, ValueError: a bad argument, or an operator that returns another shape or
            a NaN or infinite entry.
    """
    owner = "power_iteration"
    n = _check_common(owner, operator, n, generator, dtype)
    iterations = check_int(owner, "iterations", iterations, low=1)
    tol = check_real(owner, "tol", tol, low=0.0, low_open=False)
    v = _unit(n, generator, dtype)
    value = 0.0
    for _ in range(iterations):
        w = _apply(owner, operator, v, dtype)
        new_value = float(torch.dot(v, w))
        if not bool(w.any()):
            return 0.0, v
        v = w / w.norm()
        if abs(new_value - value) <= tol * abs(new_value):
            return new_value, v
        value = new_value
    return value, v


@dataclass(frozen=True)
class Lanczos:
    """The tridiagonal matrix :math:`T_m = Q^\\top A Q` of ``m`` Lanczos steps."""

    alpha: Tensor  # (m,) diagonal
    beta: Tensor  # (m - 1,) off-diagonal

    @property
    def tridiagonal(self) -> Tensor:
        return torch.diag(self.alpha) + torch.diag(self.beta, 1) + torch.diag(self.beta, -1)

    def ritz(self) -> tuple[Tensor, Tensor]:
        """Ritz values ``(m,)`` ascending, and the squared first components of their
        eigenvectors (the quadrature weights, summing to 1)."""
        values, vectors = torch.linalg.eigh(self.tridiagonal)
        return values, vectors[0] ** 2


@_rewinds_generator
def lanczos(operator: Operator, n: int, steps: int, *, generator: torch.Generator,
            start: Tensor | None = None, dtype: torch.dtype = torch.float64) -> Lanczos:
    """``steps`` Lanczos iterations from a random (or given) unit vector, reorthogonalizing
    every new vector against all previous ones (stable in floating point).

    Stops early, with fewer steps, if the Krylov space is exhausted.

    Raises:
        TypeError, ValueError: a bad argument (``start`` must be a non-zero finite vector of
            shape ``(n,)``), or an operator that returns another shape or a NaN or infinite
            entry.

    References:
        Lanczos, 1950; Golub & Van Loan, "Matrix Computations", 4th ed., §10.1.
    """
    owner = "lanczos"
    n = _check_common(owner, operator, n, generator, dtype)
    _check_steps(owner, steps, n)
    if start is not None:
        start = check_tensor(owner, "start", start, shape=(n,))
        if not bool(start.any()):
            raise ValueError(f"{owner}: start must be a non-zero vector, got zeros")
    q = _unit(n, generator, dtype) if start is None else (start / start.norm()).to(dtype)
    basis, alpha, beta = [q], [], []
    for j in range(steps):
        w = _apply(owner, operator, basis[j], dtype)
        alpha.append(torch.dot(w, basis[j]))
        Q = torch.stack(basis)  # (j + 1, n)
        w = w - Q.T @ (Q @ w)  # full reorthogonalization, applied twice for safety
        w = w - Q.T @ (Q @ w)
        norm = w.norm()
        if j == steps - 1 or norm <= 1e-10 * math.sqrt(n) * abs(float(alpha[-1]) or 1.0):
            break
        beta.append(norm)
        basis.append(w / norm)
    return Lanczos(torch.stack(alpha), torch.stack(beta) if beta else torch.zeros(0, dtype=dtype))


def _check_steps(owner: str, steps: int, n: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise TypeError(f"{owner}: steps must be an integer, got {show(steps)}")
    if not 1 <= steps <= n:
        raise ValueError(f"{owner}: steps must be in [1, n={n}], got {steps}")


@dataclass(frozen=True)
class SpectralDensity:
    """Stochastic Lanczos quadrature: nodes (Ritz values) and weights of the spectral
    measure, averaged over random start vectors; the weights sum to 1."""

    nodes: Tensor  # (k,)
    weights: Tensor  # (k,)

    def smoothed(self, grid: Tensor, width: float) -> Tensor:
        """The density convolved with a Gaussian of standard deviation ``width`` (> 0) on
        ``grid``, shape ``(g,)``; values in the nodes' dtype, shape ``(g,)``."""
        grid = check_tensor("SpectralDensity.smoothed", "grid", grid, ndim=1)
        width = check_real("SpectralDensity.smoothed", "width", width)
        grid = grid.to(self.nodes.dtype)
        z = (grid[:, None] - self.nodes[None, :]) / width
        kernel = torch.exp(-0.5 * z**2) / (width * math.sqrt(2 * math.pi))
        return kernel @ self.weights


@_rewinds_generator
def spectral_density(operator: Operator, n: int, steps: int, *, vectors: int,
                     generator: torch.Generator) -> SpectralDensity:
    """Estimate the eigenvalue distribution of a symmetric operator by stochastic Lanczos
    quadrature with ``vectors`` random starts of ``steps`` steps each.

    References:
        Ubaru, Chen & Saad, "Fast Estimation of tr(f(A)) via Stochastic Lanczos Quadrature",
        SIAM J. Matrix Anal. Appl. 2017; Ghorbani, Krishnan & Xiao, "An Investigation into
        Neural Net Optimization via Hessian Eigenvalue Density", ICML 2019.

    Raises:
        TypeError, ValueError: a bad argument (``vectors`` and ``steps`` at least 1,
            ``steps <= n``), checked before any start vector is drawn; an operator that
            returns another shape or a NaN or infinite entry.
    """
    owner = "spectral_density"
    vectors = check_int(owner, "vectors", vectors, low=1)
    n = _check_common(owner, operator, n, generator, torch.float64)
    _check_steps(owner, steps, n)
    nodes, weights = [], []
    for _ in range(vectors):
        values, w = lanczos(operator, n, steps, generator=generator).ritz()
        nodes.append(values)
        weights.append(w / vectors)
    return SpectralDensity(torch.cat(nodes), torch.cat(weights))
