"""Numerics shared by the surrogates: a Cholesky factorization that survives near-singular
covariance matrices."""

from __future__ import annotations

import torch
from torch import Tensor

from stochopt.errors import StochoptError

__all__ = ["NumericalError", "robust_cholesky"]


class NumericalError(StochoptError):
    """A covariance matrix stayed numerically singular after the allowed jitter."""


def robust_cholesky(K: Tensor, max_tries: int = 6) -> Tensor:
    """Lower Cholesky factor of ``K`` (``(n, n)``), adding jitter to the diagonal if needed.

    Tries ``K`` as it is, then ``K + j I`` with ``j = 1e-8 * mean(diag K)``, growing tenfold
    per try (up to ``1e-3`` relative). Raises :class:`NumericalError` if that is not enough,
    naming the smallest eigenvalue, instead of returning garbage; a matrix with NaN or
    infinite entries raises it at once.
    """
    if not isinstance(K, torch.Tensor) or K.ndim != 2 or K.shape[0] != K.shape[1]:
        shape = tuple(K.shape) if isinstance(K, torch.Tensor) else type(K).__name__
        raise ValueError(f"robust_cholesky: K must be a square matrix (n, n), got {shape}")
    L, info = torch.linalg.cholesky_ex(K)
    if int(info) == 0:
        return L
    if not bool(torch.isfinite(K.detach()).all()):
        raise NumericalError(f"covariance matrix of size {K.shape[0]} has NaN or infinite "
                             f"entries (non-finite data or hyperparameters)")
    scale = float(K.detach().diagonal().mean().abs().clamp(min=1e-300))
    jitter = 1e-8 * scale
    eye = torch.eye(K.shape[0], dtype=K.dtype, device=K.device)
    for _ in range(max_tries):
        L, info = torch.linalg.cholesky_ex(K + jitter * eye)
        if int(info) == 0:
            return L
        jitter *= 10
    smallest = float(torch.linalg.eigvalsh(K.detach())[0])
    raise NumericalError(f"covariance matrix of size {K.shape[0]} is not positive definite even "
                         f"with jitter {jitter / 10:.1e} (smallest eigenvalue {smallest:.3e}); "
                         f"duplicate inputs with zero noise are the usual cause")
