"""Covariance functions on inputs scaled to the unit cube; shapes ``(n, d), (m, d) -> (n, m)``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["matern52", "nngp_relu", "nngp_relu_diagonal", "rbf", "scaled_sq_distance"]


def _check(owner: str, X1: Tensor, X2: Tensor, lengthscales: Tensor | None = None) -> None:
    """Shapes ``(n, d)``, ``(m, d)`` and ``(d,)`` (or a single lengthscale for all inputs)."""
    tensors = (X1, X2) if lengthscales is None else (X1, X2, lengthscales)
    ok = all(isinstance(t, Tensor) for t in tensors) and X1.ndim == X2.ndim == 2 \
        and X1.shape[1] == X2.shape[1]
    if ok and lengthscales is not None:
        ok = lengthscales.shape in ((), (1,), (X1.shape[1],))
    if not ok:
        shapes = ", ".join(str(tuple(t.shape)) if isinstance(t, Tensor) else type(t).__name__
                           for t in tensors)
        raise ValueError(f"{owner}: need tensors X1 (n, d), X2 (m, d)"
                         f"{'' if lengthscales is None else ', lengthscales (d,)'}; got {shapes}")


def scaled_sq_distance(X1: Tensor, X2: Tensor, lengthscales: Tensor) -> Tensor:
    r""":math:`\sum_k ((x_k - x'_k)/\ell_k)^2` for every pair, ``(n, m)`` (never negative)."""
    A, B = X1 / lengthscales, X2 / lengthscales
    sq = A.square().sum(-1)[:, None] + B.square().sum(-1)[None, :] - 2 * A @ B.T
    return sq.clamp(min=0.0)


def matern52(X1: Tensor, X2: Tensor, lengthscales: Tensor, outputscale: Tensor) -> Tensor:
    r"""Matérn-5/2 with ARD: :math:`\sigma^2 (1 + \sqrt5 r + \tfrac53 r^2) e^{-\sqrt5 r}`."""
    _check("matern52", X1, X2, lengthscales)
    r = scaled_sq_distance(X1, X2, lengthscales).clamp(min=1e-36).sqrt()
    s = math.sqrt(5) * r
    return outputscale * (1 + s + s.square() / 3) * torch.exp(-s)


def rbf(X1: Tensor, X2: Tensor, lengthscales: Tensor, outputscale: Tensor) -> Tensor:
    r"""Squared exponential with ARD: :math:`\sigma^2 e^{-r^2/2}`."""
    _check("rbf", X1, X2, lengthscales)
    return outputscale * torch.exp(-0.5 * scaled_sq_distance(X1, X2, lengthscales))


def _nngp_input(X1: Tensor, X2: Tensor, weight_var: float, bias_var: float) -> Tensor:
    return bias_var + weight_var * (X1 @ X2.T) / X1.shape[-1]


def nngp_relu_diagonal(X: Tensor, weight_var: float = 10.0, bias_var: float = 1.3,
                       depth: int = 3) -> Tensor:
    r""":math:`K^L(x, x)` of :func:`nngp_relu`: the ReLU recursion at :math:`\theta = 0`,
    :math:`K^l = \sigma_b^2 + \tfrac12\sigma_w^2 K^{l-1}`; shape ``(n,)``."""
    K = bias_var + weight_var * X.square().sum(-1) / X.shape[-1]
    for _ in range(depth):
        K = bias_var + 0.5 * weight_var * K
    return K


def nngp_relu(X1: Tensor, X2: Tensor, weight_var: float = 10.0, bias_var: float = 1.3,
              depth: int = 3) -> Tensor:
    r"""The covariance of an infinitely wide ReLU network with ``depth`` hidden layers,
    weights :math:`N(0, \sigma_w^2/\text{fan-in})` and biases :math:`N(0, \sigma_b^2)`:

    .. math:: K^0 = \sigma_b^2 + \sigma_w^2\,x\cdot x'/d, \qquad
        K^l = \sigma_b^2 + \frac{\sigma_w^2}{2\pi}\sqrt{K^{l-1}_{xx}K^{l-1}_{x'x'}}
        \big(\sin\theta + (\pi - \theta)\cos\theta\big),

    with :math:`\cos\theta = K^{l-1}_{xx'}/\sqrt{K^{l-1}_{xx}K^{l-1}_{x'x'}}` (the
    arc-cosine expectation :math:`E[\mathrm{relu}(u)\mathrm{relu}(v)]`). Defaults are the BNN
    study's (:math:`\sigma_w^2 = 10`, :math:`\sigma_b^2 = 1.3`, depth 3); nothing is learned.

    References:
        Lee et al., "Deep Neural Networks as Gaussian Processes", ICLR 2018; Cho & Saul,
        "Kernel Methods for Deep Learning", NeurIPS 2009; Li, Rudner & Wilson, "A Study of
        Bayesian Neural Network Surrogates for Bayesian Optimization", ICLR 2024 (I-BNN).
    """
    _check("nngp_relu", X1, X2)
    K = _nngp_input(X1, X2, weight_var, bias_var)
    K1 = bias_var + weight_var * X1.square().sum(-1) / X1.shape[-1]
    K2 = bias_var + weight_var * X2.square().sum(-1) / X2.shape[-1]
    for _ in range(depth):
        norms = (K1[:, None] * K2[None, :]).sqrt()
        theta = torch.arccos((K / norms).clamp(-1 + 1e-12, 1 - 1e-12))  # finite gradients
        K = bias_var + weight_var / (2 * math.pi) * norms * (
            torch.sin(theta) + (math.pi - theta) * torch.cos(theta))
        K1, K2 = bias_var + 0.5 * weight_var * K1, bias_var + 0.5 * weight_var * K2
    return K
