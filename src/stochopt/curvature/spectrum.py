"""Spectra of symmetric operators given only by matrix-vector products (e.g. a Hessian):
power iteration, Lanczos with full reorthogonalization, and stochastic Lanczos quadrature.

An operator is a function ``(n,) -> (n,)``; :func:`stochopt.curvature.hvp_operator` makes one
from a loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Lanczos", "SpectralDensity", "lanczos", "power_iteration", "spectral_density"]

Operator = Callable[[Tensor], Tensor]


def _unit(n: int, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    v = torch.randn(n, generator=generator, dtype=torch.float64).to(dtype)
    return v / v.norm()


def power_iteration(operator: Operator, n: int, *, generator: torch.Generator,
                    iterations: int = 100, tol: float = 1e-6,
                    dtype: torch.dtype = torch.float64) -> tuple[float, Tensor]:
    """The eigenvalue of largest magnitude and its unit eigenvector, shape ``(n,)``.

    Stops when the Rayleigh quotient changes by less than ``tol`` (relative).
    """
    v = _unit(n, generator, dtype)
    value = 0.0
    for _ in range(iterations):
        w = operator(v)
        new_value = float(torch.dot(v, w))
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


def lanczos(operator: Operator, n: int, steps: int, *, generator: torch.Generator,
            start: Tensor | None = None, dtype: torch.dtype = torch.float64) -> Lanczos:
    """``steps`` Lanczos iterations from a random (or given) unit vector, reorthogonalizing
    every new vector against all previous ones (stable in floating point).

    Stops early, with fewer steps, if the Krylov space is exhausted.

    References:
        Lanczos, 1950; Golub & Van Loan, "Matrix Computations", 4th ed., §10.1.
    """
    if not 1 <= steps <= n:
        raise ValueError(f"lanczos: steps must be in [1, n={n}], got {steps}")
    q = _unit(n, generator, dtype) if start is None else (start / start.norm()).to(dtype)
    basis, alpha, beta = [q], [], []
    for j in range(steps):
        w = operator(basis[j]).to(dtype)
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


@dataclass(frozen=True)
class SpectralDensity:
    """Stochastic Lanczos quadrature: nodes (Ritz values) and weights of the spectral
    measure, averaged over random start vectors; the weights sum to 1."""

    nodes: Tensor  # (k,)
    weights: Tensor  # (k,)

    def smoothed(self, grid: Tensor, width: float) -> Tensor:
        """The density convolved with a Gaussian of standard deviation ``width`` on ``grid``."""
        z = (grid[:, None] - self.nodes[None, :]) / width
        kernel = torch.exp(-0.5 * z**2) / (width * math.sqrt(2 * math.pi))
        return kernel @ self.weights


def spectral_density(operator: Operator, n: int, steps: int, *, vectors: int,
                     generator: torch.Generator) -> SpectralDensity:
    """Estimate the eigenvalue distribution of a symmetric operator by stochastic Lanczos
    quadrature with ``vectors`` random starts of ``steps`` steps each.

    References:
        Ubaru, Chen & Saad, "Fast Estimation of tr(f(A)) via Stochastic Lanczos Quadrature",
        SIAM J. Matrix Anal. Appl. 2017; Ghorbani, Krishnan & Xiao, "An Investigation into
        Neural Net Optimization via Hessian Eigenvalue Density", ICML 2019.
    """
    nodes, weights = [], []
    for _ in range(vectors):
        values, w = lanczos(operator, n, steps, generator=generator).ritz()
        nodes.append(values)
        weights.append(w / vectors)
    return SpectralDensity(torch.cat(nodes), torch.cat(weights))
