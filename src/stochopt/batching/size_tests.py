"""Adaptive batch-size tests (Byrd et al., 2012; Bollapragada et al., 2018; Lau et al., 2024):
from per-sample gradients, the smallest batch whose mean gradient is accurate enough.

Each test takes the per-sample gradients of the current batch as a matrix ``(B, P)`` and
returns the batch size it asks for; :class:`stochopt.batching.GrowingBatchSampler` grows the
batch to it (never shrinking, capped).

The gradients must be a finite floating-point matrix with ``B >= 2`` rows (a NaN would ask
for a meaningless size), and the tolerances (``eta``, ``theta``, ``nu``) finite reals > 0.
No variance asks for no growth (0); variance with a zero mean asks for an unbounded batch,
reported as ``2**62``, the largest size any test returns.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from stochopt._checks import check_int, check_real, show

__all__ = ["augmented_test", "coordinate_test", "inner_product_test", "norm_test"]


def _check(owner: str, grads: Any, **tolerances: float) -> Tensor:
    """The per-sample gradients as float64, after checking them and the tolerances."""
    if not isinstance(grads, Tensor):
        raise TypeError(f"{owner}: grads must be a tensor of per-sample gradients (B, P), got "
                        f"{show(grads)}")
    if grads.ndim != 2 or grads.shape[0] < 2 or grads.shape[1] < 1:
        raise ValueError(f"{owner}: batch-size tests need per-sample gradients grads of shape "
                         f"(B >= 2, P), got {tuple(grads.shape)} (at least two examples and "
                         f"one parameter)")
    if not grads.is_floating_point():
        raise TypeError(f"{owner}: grads must be a floating-point tensor, got dtype "
                        f"{grads.dtype}")
    if not bool(torch.isfinite(grads).all()):
        raise ValueError(f"{owner}: grads must be finite, got a NaN or infinite entry")
    for name, value in tolerances.items():
        check_real(owner, name, value)
    return grads.double()


def _size(numerator: Tensor, denominator: Tensor) -> int:
    """``ceil(numerator / denominator)``: 0 without variance, at most ``2**62`` (also for an
    unbounded ratio)."""
    if float(numerator) == 0:
        return 0
    value = float(numerator / denominator)
    return 0 if value == 0 else min(math.ceil(value), 2**62) if math.isfinite(value) else 2**62


def norm_test(grads: Tensor, eta: float) -> int:
    r"""The norm test: the batch size :math:`\lceil \lVert s^2 \rVert_1 /
    (\eta^2 \lVert \bar g \rVert^2) \rceil`, with :math:`s^2_j` the unbiased per-coordinate
    variance of the per-sample gradients and :math:`\bar g` their mean.

    It approximates :math:`E\lVert \bar g - \nabla F \rVert^2 \le \eta^2 \lVert \nabla F
    \rVert^2`. Identical per-sample gradients ask for no growth (0).

    References:
        Byrd, Chin, Nocedal & Wu, "Sample size selection in optimization methods for machine
        learning", Math. Program. 2012; Lau, Liu & Kolar, "AdAdaGrad", 2024, arXiv:2402.11215.
    """
    g = _check("norm_test", grads, eta=eta)
    mean = g.mean(dim=0)
    return _size(g.var(dim=0, correction=1).sum(), (eta * eta) * mean.square().sum())


def inner_product_test(grads: Tensor, theta: float) -> int:
    r""":math:`\lceil \operatorname{Var}_i(\langle g_i, \bar g\rangle) / (\theta^2 \lVert
    \bar g \rVert^4) \rceil` (Bollapragada, Byrd & Nocedal, SIAM J. Optim. 2018)."""
    g = _check("inner_product_test", grads, theta=theta)
    mean = g.mean(dim=0)
    return _size((g @ mean).var(correction=1), (theta * theta) * mean.square().sum() ** 2)


def augmented_test(grads: Tensor, theta: float, nu: float) -> int:
    r"""The inner-product test and the orthogonality test together: also
    :math:`\lceil \sum_j \operatorname{Var}_i(g_i - \mathrm{proj}_{\bar g} g_i)_j /
    (\nu^2 \lVert \bar g \rVert^2) \rceil`; the larger of the two sizes."""
    g = _check("augmented_test", grads, theta=theta, nu=nu)
    mean = g.mean(dim=0)
    norm_sq = mean.square().sum()
    along = torch.where(norm_sq > 0, g @ mean / norm_sq, 0.0)  # no projection on a zero mean
    orthogonal = g - along[:, None] * mean[None, :]
    ortho = _size(orthogonal.var(dim=0, correction=1).sum(), (nu * nu) * norm_sq)
    return max(inner_product_test(grads, theta), ortho)


def coordinate_test(grads: Tensor, eta: float, max_size: int) -> int:
    r"""The coordinate-wise norm test: :math:`\max_j \lceil s^2_j / (\eta^2 \bar g_j^2)
    \rceil`, capped at ``max_size`` (a coordinate with :math:`\bar g_j \approx 0` would ask
    for an infinite batch)."""
    g = _check("coordinate_test", grads, eta=eta)
    max_size = check_int("coordinate_test", "max_size", max_size, low=1)
    mean = g.mean(dim=0)
    variance = g.var(dim=0, correction=1)
    ratios = torch.where(variance == 0, 0.0, variance / ((eta * eta) * mean.square()))
    return min(max_size, _size(ratios.max(), torch.ones((), dtype=ratios.dtype)))
