"""Covariance functions on inputs scaled to the unit cube; shapes ``(n, d), (m, d) -> (n, m)``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["matern52", "rbf", "scaled_sq_distance"]


def scaled_sq_distance(X1: Tensor, X2: Tensor, lengthscales: Tensor) -> Tensor:
    r""":math:`\sum_k ((x_k - x'_k)/\ell_k)^2` for every pair, ``(n, m)`` (never negative)."""
    A, B = X1 / lengthscales, X2 / lengthscales
    sq = A.square().sum(-1)[:, None] + B.square().sum(-1)[None, :] - 2 * A @ B.T
    return sq.clamp(min=0.0)


def matern52(X1: Tensor, X2: Tensor, lengthscales: Tensor, outputscale: Tensor) -> Tensor:
    r"""Matérn-5/2 with ARD: :math:`\sigma^2 (1 + \sqrt5 r + \tfrac53 r^2) e^{-\sqrt5 r}`."""
    r = scaled_sq_distance(X1, X2, lengthscales).clamp(min=1e-36).sqrt()
    s = math.sqrt(5) * r
    return outputscale * (1 + s + s.square() / 3) * torch.exp(-s)


def rbf(X1: Tensor, X2: Tensor, lengthscales: Tensor, outputscale: Tensor) -> Tensor:
    r"""Squared exponential with ARD: :math:`\sigma^2 e^{-r^2/2}`."""
    return outputscale * torch.exp(-0.5 * scaled_sq_distance(X1, X2, lengthscales))
